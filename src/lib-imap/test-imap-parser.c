#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "lib-imap/imap_parser.h"

static void render(struct buf *out, const struct imap_arg *args, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		const struct imap_arg *a = &args[i];
		if (i > 0)
			buf_append_c(out, ' ');
		switch (a->type) {
		case IMAP_ARG_ATOM: buf_printf(out, "A:%s", a->str); break;
		case IMAP_ARG_NIL: buf_append_str(out, "NIL"); break;
		case IMAP_ARG_QUOTED: buf_printf(out, "Q:%s", a->str); break;
		case IMAP_ARG_LITERAL:
			buf_printf(out, "L%zu:", a->len);
			buf_append(out, a->str, a->len);
			break;
		case IMAP_ARG_LIST:
			buf_append_c(out, '(');
			render(out, a->list, a->count);
			buf_append_c(out, ')');
			break;
		}
	}
}

struct parse_case {
	const char *in;
	int result;              /* 1 parsed, -1 parse error, IMAP_READ_BAD/FATAL from the reader */
	const char *tree;        /* "TAG NAME args" */
	int continuations;       /* number of "+" the reader asked for */
};

static const struct parse_case cases[] = {
	{ .in = "a1 NOOP\r\n", .result = 1, .tree = "a1 NOOP" },
	{ .in = "a1 noop\n", .result = 1, .tree = "a1 NOOP" },
	{ .in = "a2 LOGIN joe \"se\\\"cret\"\r\n", .result = 1, .tree = "a2 LOGIN A:joe Q:se\"cret" },
	{ .in = "a3 LOGIN {3}\r\njoe {6+}\r\nsecret\r\n", .result = 1, .tree = "a3 LOGIN L3:joe L6:secret",
	  .continuations = 1 },
	{ .in = "a4 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100>)\r\n", .result = 1,
	  .tree = "a4 FETCH A:1:* (A:FLAGS A:BODY.PEEK[HEADER.FIELDS (From To)]<0.100>)" },
	{ .in = "a5 LIST \"\" *\r\n", .result = 1, .tree = "a5 LIST Q: A:*" },
	{ .in = "a6 STORE 1 +FLAGS (\\Seen \\Deleted)\r\n", .result = 1,
	  .tree = "a6 STORE A:1 A:+FLAGS (A:\\Seen A:\\Deleted)" },
	{ .in = "a7 APPEND INBOX (\\Seen) {5}\r\nhello\r\n", .result = 1, .tree = "a7 APPEND A:INBOX (A:\\Seen) L5:hello",
	  .continuations = 1 },
	{ .in = "a8 X ((a (b)) nil)\r\n", .result = 1, .tree = "a8 X ((A:a (A:b)) NIL)" },
	{ .in = "a9 X {0}\r\n\r\n", .result = 1, .tree = "a9 X L0:", .continuations = 1 },
	{ .in = "b1 X (a\r\n", .result = -1 },
	{ .in = "b2 X a)\r\n", .result = -1 },
	{ .in = "b3 X \"unterminated\r\n", .result = -1 },
	{ .in = "b4 X caf\xc3\xa9\r\n", .result = -1 },
	{ .in = "b5 X a  b\r\n", .result = -1 },
	{ .in = "b6 X a \r\n", .result = -1 },
	{ .in = "\r\n", .result = -1 },
	{ .in = "b8\r\n", .result = -1 },
	{ .in = "b9 X \"a\\b\"\r\n", .result = -1 },
	{ .in = "* NOOP\r\n", .result = -1 },
	{ .in = "a% NOOP\r\n", .result = -1 },
	{ .in = "c1 X ((((((((((((((((((((a))))))))))))))))))))\r\n", .result = -1 },
	{ .in = "c2 X {999999}\r\n", .result = IMAP_READ_BAD },
	{ .in = "c3 X {999999+}\r\n", .result = IMAP_READ_FATAL },
	{ .in = "c4 APPEND INBOX {999999+}\r\n", .result = IMAP_READ_FATAL },
	{ .in = "c5 APPEND INBOX {99999+}\r\n", .result = IMAP_READ_MORE },
	{ .in = "c6 X aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
	  .result = IMAP_READ_FATAL },
	{ .in = "c7 X x[a\r\n", .result = -1 },
	{ .in = "c8 X \"caf\xc3\xa9\"\r\n", .result = 1, .tree = "c8 X Q:caf\xc3\xa9" },
	{ .in = "c9 X {2}\r\nab{3}\r\nxyz\r\n", .result = -1, .continuations = 2 },
	{ .in = "d1 X {1}\r\n\0\r\n", .result = 1, .tree = "d1 X L1:", .continuations = 1 },
};

/* Run one case with a given chunk size; returns the final outcome and fills tree. */
static int run_case(const struct parse_case *c, size_t in_len, size_t chunk, struct buf *tree, int *conts)
{
	struct imap_reader r;
	imap_reader_init(&r, 100, 1000, 100000);
	size_t off = 0;
	int outcome = IMAP_READ_MORE;
	*conts = 0;
	while (off < in_len) {
		size_t n = in_len - off < chunk ? in_len - off : chunk;
		size_t used = 0;
		enum imap_read_result rr = imap_reader_feed(&r, c->in + off, n, &used);
		assert_true(used <= n);
		off += used;
		if (rr == IMAP_READ_MORE) {
			assert_int_equal(used, n);
			continue;
		}
		if (rr == IMAP_READ_CONTINUE) {
			(*conts)++;
			continue;
		}
		if (rr == IMAP_READ_BAD || rr == IMAP_READ_FATAL) {
			assert_non_null(r.error);
			outcome = rr;
			break;
		}
		struct imap_command cmd;
		const char *err = NULL;
		int pr = imap_parse_command(r.cmd.data, r.cmd.len, &cmd, &err);
		if (pr > 0) {
			buf_printf(tree, "%s %s", cmd.tag, cmd.name);
			if (cmd.count > 0)
				buf_append_c(tree, ' ');
			render(tree, cmd.args, cmd.count);
		} else {
			assert_non_null(err);
		}
		imap_command_free(&cmd);
		outcome = pr;
		break;
	}
	imap_reader_deinit(&r);
	return outcome;
}

static void test_parse_table(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct parse_case *c = &cases[i];
		size_t in_len = strlen(c->in);
		if (strncmp(c->in, "d1", 2) == 0)
			in_len = 13;
		size_t chunks[] = { in_len ? in_len : 1, 1, 2, 3, 7 };
		for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
			struct buf tree;
			buf_init(&tree, 4096);
			int conts = 0;
			int got = run_case(c, in_len, chunks[k], &tree, &conts);
			if (got != c->result || (c->tree != NULL && strcmp(tree.data, c->tree) != 0) ||
			    (got == 1 && conts != c->continuations))
				fail_msg("case %zu (%s) chunk %zu: result %d tree '%s' conts %d", i, c->in, chunks[k], got,
				         tree.data, conts);
			buf_deinit(&tree);
		}
	}
}

/* A literal split at every byte offset must parse to the same tree. */
static void test_literal_split_everywhere(void **state)
{
	const char *in = "t1 APPEND Box (\\Seen) {12}\r\nHello\r\nWorld\r\n";
	size_t len = strlen(in);
	for (size_t split = 0; split <= len; split++) {
		struct imap_reader r;
		imap_reader_init(&r, 200, 100, 1000);
		size_t off = 0, used = 0;
		enum imap_read_result rr = IMAP_READ_MORE;
		size_t parts[2][2] = { { 0, split }, { split, len } };
		for (int p = 0; p < 2; p++) {
			off = parts[p][0];
			while (off < parts[p][1]) {
				rr = imap_reader_feed(&r, in + off, parts[p][1] - off, &used);
				off += used;
				if (rr == IMAP_READ_COMMAND)
					break;
				assert_true(rr == IMAP_READ_MORE || rr == IMAP_READ_CONTINUE);
			}
		}
		assert_int_equal(rr, IMAP_READ_COMMAND);
		struct imap_command cmd;
		const char *err;
		int pr = imap_parse_command(r.cmd.data, r.cmd.len, &cmd, &err);
		if (pr != 1)
			fail_msg("split %zu: %s [%s]", split, err, r.cmd.data);
		assert_int_equal(cmd.count, 3);
		assert_int_equal(cmd.args[2].type, IMAP_ARG_LITERAL);
		assert_int_equal(cmd.args[2].len, 12);
		assert_memory_equal(cmd.args[2].str, "Hello\r\nWorld", 12);
		imap_command_free(&cmd);
		imap_reader_deinit(&r);
	}
}

static void test_pipelined_and_reset(void **state)
{
	const char *in = "a NOOP\r\nb CAPABILITY\r\n";
	struct imap_reader r;
	imap_reader_init(&r, 100, 100, 100);
	size_t used;
	assert_int_equal(imap_reader_feed(&r, in, strlen(in), &used), IMAP_READ_COMMAND);
	assert_int_equal(used, 8);
	assert_string_equal(r.tag, "a");
	imap_reader_reset(&r);
	assert_int_equal(imap_reader_feed(&r, in + used, strlen(in) - used, &used), IMAP_READ_COMMAND);
	assert_string_equal(r.tag, "b");
	imap_reader_deinit(&r);
}

static void test_big_literal_borrowed(void **state)
{
	struct buf in;
	buf_init(&in, 200000);
	buf_printf(&in, "z APPEND INBOX {%d+}\r\n", 100000);
	for (int i = 0; i < 100000; i++)
		buf_append_c(&in, (char)('a' + i % 26));
	buf_append_str(&in, "\r\n");
	struct imap_reader r;
	imap_reader_init(&r, 100, 100, 150000);
	size_t used;
	assert_int_equal(imap_reader_feed(&r, in.data, in.len, &used), IMAP_READ_COMMAND);
	struct imap_command cmd;
	const char *err;
	assert_int_equal(imap_parse_command(r.cmd.data, r.cmd.len, &cmd, &err), 1);
	assert_int_equal(cmd.count, 2);
	assert_true(cmd.args[1].borrowed);
	assert_int_equal(cmd.args[1].len, 100000);
	assert_memory_equal(cmd.args[1].str, "abcdef", 6);
	assert_null(imap_arg_astring(&cmd.args[1]));
	imap_command_free(&cmd);
	imap_reader_deinit(&r);
	buf_deinit(&in);
}

struct sink_state {
	struct buf data;
	int begun;
	size_t announced;
};

static int sink_begin(void *ctx, size_t size)
{
	struct sink_state *st = ctx;
	st->begun++;
	st->announced = size;
	return 0;
}

static void sink_write(void *ctx, const char *data, size_t len)
{
	struct sink_state *st = ctx;
	buf_append(&st->data, data, len);
}

/* A big APPEND literal goes to the sink, split at every byte; the tree marks it spooled. */
static void test_spooled_literal(void **state)
{
	const char *in = "s1 APPEND Box (\\Seen) {20+}\r\n0123456789abcdefghij\r\n";
	size_t len = strlen(in);
	for (size_t split = 0; split <= len; split++) {
		struct sink_state st = { 0 };
		buf_init(&st.data, 100);
		struct imap_reader r;
		imap_reader_init(&r, 200, 10, 1000);
		struct imap_literal_sink sink = { .threshold = 16, .begin = sink_begin, .write = sink_write, .ctx = &st };
		imap_reader_set_sink(&r, &sink);
		size_t off = 0, used = 0;
		enum imap_read_result rr = IMAP_READ_MORE;
		size_t ends[2] = { split, len };
		for (int p = 0; p < 2; p++) {
			while (off < ends[p]) {
				rr = imap_reader_feed(&r, in + off, ends[p] - off, &used);
				off += used;
				if (rr == IMAP_READ_COMMAND)
					break;
			}
		}
		assert_int_equal(rr, IMAP_READ_COMMAND);
		assert_int_equal(st.begun, 1);
		assert_int_equal(st.announced, 20);
		assert_string_equal(st.data.data, "0123456789abcdefghij");
		assert_true(r.cmd.len < 40); /* the message is not in memory */
		struct imap_command cmd;
		const char *err;
		assert_int_equal(imap_parse_command(r.cmd.data, r.cmd.len, &cmd, &err), 1);
		assert_int_equal(cmd.count, 3);
		assert_true(cmd.args[2].spooled);
		assert_int_equal(cmd.args[2].len, 20);
		assert_null(imap_arg_astring(&cmd.args[2]));
		imap_command_free(&cmd);
		imap_reader_deinit(&r);
		buf_deinit(&st.data);
	}
	/* a client cannot forge the spool marker */
	struct imap_command cmd;
	const char *err;
	const char *forged[] = { "f APPEND Box {20!}", "f APPEND Box {20!}\n", "f APPEND Box {20+!} x" };
	for (size_t i = 0; i < 3; i++) {
		struct imap_reader r;
		imap_reader_init(&r, 200, 10, 1000);
		size_t used;
		char line[64];
		snprintf(line, sizeof(line), "%s\r\n", forged[i]);
		enum imap_read_result rr = imap_reader_feed(&r, line, strlen(line), &used);
		if (rr == IMAP_READ_COMMAND) {
			if (imap_parse_command(r.cmd.data, r.cmd.len, &cmd, &err) > 0 && cmd.count >= 2)
				for (size_t k = 0; k < cmd.count; k++)
					assert_false(cmd.args[k].spooled);
			imap_command_free(&cmd);
		}
		imap_reader_deinit(&r);
	}
}

static void test_quote_output(void **state)
{
	struct buf b;
	buf_init(&b, 1000);
	imap_append_astring(&b, "INBOX");
	buf_append_c(&b, ' ');
	imap_append_astring(&b, "a b");
	buf_append_c(&b, ' ');
	imap_append_astring(&b, "q\"\\");
	buf_append_c(&b, ' ');
	imap_append_nstring(&b, NULL);
	buf_append_c(&b, ' ');
	imap_append_string(&b, "x\r\ny", 4);
	buf_append_c(&b, ' ');
	imap_append_astring(&b, "nil");
	assert_string_equal(b.data, "INBOX \"a b\" \"q\\\"\\\\\" NIL {4}\r\nx\r\ny \"nil\"");
	buf_deinit(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_literal_split_everywhere),
		cmocka_unit_test(test_pipelined_and_reset),
		cmocka_unit_test(test_quote_output),
		cmocka_unit_test(test_big_literal_borrowed),
		cmocka_unit_test(test_spooled_literal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
