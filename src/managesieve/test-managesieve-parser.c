/*
 * ManageSieve parser: a table of byte streams and the commands (or errors) they give,
 * each fed whole, a byte at a time, and split in two at every offset (a literal split
 * at every byte).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "lib/buf.h"
#include "managesieve/managesieve_parser.h"

struct pcase {
	const char *in;
	size_t len;       /* 0: strlen(in) */
	bool bare;
	const char *want; /* commands joined by '|' */
};

#define BIN(s) s, sizeof(s) - 1

static const struct pcase cases[] = {
	{ "LOGOUT\r\n", 0, false, "LOGOUT" },
	{ "logout\r\n", 0, false, "LOGOUT" },
	{ "NOOP\n", 0, false, "NOOP" },
	{ "CAPABILITY\r\nNOOP \"t1\"\r\n", 0, false, "CAPABILITY|NOOP q:t1" },
	{ "HAVESPACE \"myscript\" 999999\r\n", 0, false, "HAVESPACE q:myscript n:999999" },
	{ "PUTSCRIPT \"foo\" {12+}\r\nkeep;\r\nstop;\r\nNOOP\r\n", 0, false,
	  "PUTSCRIPT q:foo l:keep;\\r\\nstop;|NOOP" },
	{ "PUTSCRIPT \"foo\" {3}\r\nabc\r\n", 0, false, "PUTSCRIPT q:foo l:abc" },
	{ "PUTSCRIPT {1+}\r\nx {0+}\r\n\r\n", 0, false, "PUTSCRIPT l:x l:" },
	{ "RENAMESCRIPT {1+}\r\na \"b\"\r\n", 0, false, "RENAMESCRIPT l:a q:b" },
	{ BIN("PUTSCRIPT \"n\" {3+}\r\na\0b\r\n"), false, "PUTSCRIPT q:n l:a\\0b" },
	{ "NOOP \"a\\\"b\\\\c\"\r\n", 0, false, "NOOP q:a\"b\\c" },
	{ "AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHB3\"\r\n", 0, false, "AUTHENTICATE q:PLAIN q:AGFsaWNlAHB3" },
	{ "SETACTIVE \"\"\r\n", 0, false, "SETACTIVE q:" },
	{ "X-ATOM arg1 2\r\n", 0, false, "X-ATOM a:arg1 n:2" },
	/* SASL responses: no command atom */
	{ "\"AGFsaWNlAHB3\"\r\n", 0, true, " q:AGFsaWNlAHB3" },
	{ "{4+}\r\nAGE=\r\n", 0, true, " l:AGE=" },
	{ "\"*\"\r\n", 0, true, " q:*" },
	{ "\r\n", 0, true, "E:Expected an argument" },
	/* errors: the rest of the line is skipped, the next command parses */
	{ "\r\nNOOP\r\n", 0, false, "E:Expected a command|NOOP" },
	{ "NOOP \"a\\x\"\r\nNOOP\r\n", 0, false, "E:Invalid escape in a quoted string|NOOP" },
	{ "NOOP \"a\rb\"\r\nLOGOUT\r\n", 0, false, "E:Invalid character in a quoted string|LOGOUT" },
	{ "NOOP  \"a\"\r\nNOOP\r\n", 0, false, "E:Expected an argument|NOOP" },
	{ "NOOP \"a\"x\r\nNOOP\r\n", 0, false, "E:Expected SP or CRLF after an argument|NOOP" },
	{ "NOOP\rX\r\nNOOP\r\n", 0, false, "E:Bare CR|NOOP" },
	{ "HAVESPACE \"a\" 99999999999\r\nNOOP\r\n", 0, false, "E:Number too large|NOOP" },
	{ "HAVESPACE \"a\" 12x\r\nNOOP\r\n", 0, false, "E:Invalid number|NOOP" },
	{ "PUTSCRIPT \"a\" {x}\r\nNOOP\r\n", 0, false, "E:Invalid literal|NOOP" },
	{ "PUTSCRIPT \"a\" {}\r\nNOOP\r\n", 0, false, "E:Invalid literal|NOOP" },
	{ "PUTSCRIPT \"a\" {3+} x\r\nNOOP\r\n", 0, false, "E:Literal must be followed by CRLF|NOOP" },
	{ "A a a a a a a a a a\r\nNOOP\r\n", 0, false, "E:Too many arguments|NOOP" },
	{ "NO(OP\r\nNOOP\r\n", 0, false, "E:Invalid character in command|NOOP" },
	/* an error before a literal: the literal's bytes are skipped, not run as commands */
	{ "PUTSCRIPT \"a\" ( {7+}\r\nLOGOUT\n\r\nNOOP\r\n", 0, false, "E:Expected an argument|NOOP" },
	{ "PUTSCRIPT ( {6}\r\nLOGOUT\r\nNOOP\r\n", 0, false, "E:Expected an argument|NOOP" },
	/* a literal above the limit (64 here) is skipped by count and answered QUOTA/MAXSIZE */
	{ "PUTSCRIPT \"a\" {70+}\r\n"
	  "LOGOUT\r\nLOGOUT\r\nLOGOUT\r\nLOGOUT\r\nLOGOUT\r\nLOGOUT\r\nLOGOUT\r\nLOGOUT\r\nLOGOUT" /* 70 */
	  "\r\nNOOP\r\n",
	  0, false, "E(QUOTA/MAXSIZE):Literal too large|NOOP" },
	/* fatal: a literal length above 2^32-1 */
	{ "PUTSCRIPT \"a\" {99999999999+}\r\nNOOP\r\n", 0, false, "F:Literal length too large" },
};

static void render(struct buf *b, const struct managesieve_parser *p, int r)
{
	if (b->len > 0)
		buf_append_c(b, '|');
	if (r < 0) {
		if (p->error_code)
			buf_printf(b, "%s(%s):%s", p->fatal ? "F" : "E", p->error_code, p->error);
		else
			buf_printf(b, "%s:%s", p->fatal ? "F" : "E", p->error);
		return;
	}
	buf_append_str(b, p->name);
	for (size_t i = 0; i < p->nargs; i++) {
		const struct managesieve_arg *a = &p->args[i];
		char kind = a->type == MANAGESIEVE_ARG_ATOM ? 'a' : a->type == MANAGESIEVE_ARG_NUMBER ? 'n'
		                                                  : a->literal                           ? 'l'
		                                                                                         : 'q';
		buf_printf(b, " %c:", kind);
		const char *s = managesieve_parser_arg(p, i);
		for (size_t k = 0; k < a->len; k++) {
			if (s[k] == '\r')
				buf_append_str(b, "\\r");
			else if (s[k] == '\n')
				buf_append_str(b, "\\n");
			else if (s[k] == '\0')
				buf_append_str(b, "\\0");
			else
				buf_append_c(b, s[k]);
		}
		if (a->type == MANAGESIEVE_ARG_NUMBER) {
			char tmp[16];
			snprintf(tmp, sizeof(tmp), "%u", a->num);
			assert_string_equal(s, tmp);
		}
	}
}

/* Feed in chunks of `step` bytes (0: whole), or whole but split at `split`. */
static void run(const struct pcase *c, size_t step, size_t split, struct buf *outb)
{
	struct managesieve_parser p;
	managesieve_parser_init(&p, 1100, 64);
	managesieve_parser_next(&p, c->bare);
	size_t len = c->len ? c->len : strlen(c->in);
	size_t off = 0;
	buf_reset(outb);
	while (off < len) {
		size_t n = len - off;
		if (step > 0 && n > step)
			n = step;
		if (split > 0 && off < split && off + n > split)
			n = split - off;
		size_t used = 0;
		int r = managesieve_parser_feed(&p, c->in + off, n, &used);
		assert_true(used <= n);
		off += used;
		if (r == 0) {
			assert_int_equal(used, n);
			continue;
		}
		render(outb, &p, r);
		if (r < 0 && p.fatal)
			break;
		managesieve_parser_next(&p, c->bare);
	}
	managesieve_parser_deinit(&p);
}

static void test_cases(void **state)
{
	(void)state;
	struct buf got;
	buf_init(&got, 1 << 16);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct pcase *c = &cases[i];
		run(c, 0, 0, &got);
		if (strcmp(got.data, c->want) != 0)
			fail_msg("case %zu whole: got '%s' want '%s'", i, got.data, c->want);
		run(c, 1, 0, &got);
		if (strcmp(got.data, c->want) != 0)
			fail_msg("case %zu trickle: got '%s' want '%s'", i, got.data, c->want);
		size_t len = c->len ? c->len : strlen(c->in);
		for (size_t k = 1; k < len; k++) {
			run(c, 0, k, &got);
			if (strcmp(got.data, c->want) != 0)
				fail_msg("case %zu split at %zu: got '%s' want '%s'", i, k, got.data, c->want);
		}
	}
	buf_deinit(&got);
}

/* Line limit: non-literal bytes beyond max_line are fatal; literal bytes do not count. */
static void test_line_limit(void **state)
{
	(void)state;
	struct managesieve_parser p;
	managesieve_parser_init(&p, 1100, 4096);
	char line[1300];
	memset(line, 'A', sizeof(line));
	size_t used = 0;
	int r = managesieve_parser_feed(&p, line, sizeof(line), &used);
	assert_int_equal(r, -1);
	assert_true(p.fatal);
	assert_string_equal(p.error, "Line too long");
	assert_true(used <= 1101);

	/* a 3000-byte literal in a short command is fine */
	managesieve_parser_next(&p, false);
	struct buf in;
	buf_init(&in, 8192);
	buf_append_str(&in, "PUTSCRIPT \"big\" {3000+}\r\n");
	for (int i = 0; i < 3000; i++)
		buf_append_c(&in, (char)('a' + i % 26));
	buf_append_str(&in, "\r\n");
	r = managesieve_parser_feed(&p, in.data, in.len, &used);
	assert_int_equal(r, 1);
	assert_int_equal(used, in.len);
	assert_int_equal(p.nargs, 2);
	assert_int_equal(p.args[1].len, 3000);
	assert_int_equal(managesieve_parser_arg(&p, 1)[2999], 'a' + 2999 % 26);
	buf_deinit(&in);

	/* quoted strings stop at 1024 octets */
	managesieve_parser_next(&p, false);
	char q[1040];
	memset(q, 'b', sizeof(q));
	q[0] = 'N', q[1] = 'O', q[2] = 'O', q[3] = 'P', q[4] = ' ', q[5] = '"';
	r = managesieve_parser_feed(&p, q, sizeof(q), &used);
	assert_int_equal(r, 0);
	r = managesieve_parser_feed(&p, "\"\r\n", 3, &used);
	assert_int_equal(r, -1);
	assert_false(p.fatal);
	assert_string_equal(p.error, "Quoted string too long (use a literal)");
	managesieve_parser_deinit(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_line_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
