#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "lib-smtp/smtp_line.h"
#include "test-smtp-common.h"

/*
 * Each case: input fed to one reader; the events (every non-AGAIN result with
 * its line) are rendered as "OK:line|TOO_LONG|..." and then "rest=N" for bytes
 * left in a partial line. The same rendering is required whole and trickled.
 */
struct line_case {
	const char *name;
	const char *in;
	size_t in_len; /* 0: strlen */
	size_t max;    /* 0: 512 */
	const char *expect;
};

static const struct line_case line_cases[] = {
	{ .name = "simple", .in = "EHLO x\r\n", .expect = "OK:EHLO x|" },
	{ .name = "pipelined", .in = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
	  .expect = "OK:MAIL FROM:<a@b>|OK:RCPT TO:<c@d>|OK:DATA|" },
	{ .name = "empty line", .in = "\r\n", .expect = "OK:|" },
	{ .name = "partial", .in = "NOOP\r\nQUI", .expect = "OK:NOOP|rest=3" },
	{ .name = "partial cr", .in = "QUIT\r", .expect = "rest=5" },
	{ .name = "bare lf", .in = "QUIT\nNOOP\r\n", .expect = "BARE_LF:QUIT|OK:NOOP|" },
	{ .name = "lone lf", .in = "\n", .expect = "BARE_LF:|" },
	{ .name = "bare cr inside", .in = "QU\rIT\r\nNOOP\r\n", .expect = "BARE_CR:QU\\x0dIT|OK:NOOP|" },
	{ .name = "cr cr lf", .in = "QUIT\r\r\n", .expect = "BARE_CR:QUIT\\x0d|" },
	{ .name = "bare cr and bare lf", .in = "A\rB\n", .expect = "BARE_CR:A\\x0dB|" },
	{ .name = "nul kept", .in = "NO\0OP\r\n", .in_len = 7, .expect = "OK:NO\\x00OP|" },
	{ .name = "8bit kept", .in = "EHLO \xc3\xa9\r\n", .expect = "OK:EHLO \\xc3\\xa9|" },
	{ .name = "exact max", .in = "abcd\r\nx\r\n", .max = 6, .expect = "OK:abcd|OK:x|" },
	{ .name = "max plus one", .in = "abcde\r\nx\r\n", .max = 6, .expect = "TOO_LONG|OK:x|" },
	{ .name = "too long bare lf", .in = "abcdef\nx\r\n", .max = 6, .expect = "TOO_LONG|OK:x|" },
	{ .name = "too long reported once", .in = "0123456789012345678901234567890123456789\r\nNOOP\r\n",
	  .max = 8, .expect = "TOO_LONG|OK:NOOP|" },
	{ .name = "too long unfinished", .in = "0123456789012345678901234567890123456789", .max = 8,
	  .expect = "discarding=40" },
	{ .name = "too long with bare cr", .in = "abc\rdefghij\r\n", .max = 6, .expect = "TOO_LONG|" },
	{ .name = "smtp max", .in =
	  "EHLO 0123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345\r\nQUIT\r\n", .expect = "TOO_LONG|OK:QUIT|" },
};

static void render_event(struct buf *out, int ret, const struct smtp_line *line)
{
	switch (ret) {
	case SMTP_LINE_OK: buf_append_str(out, "OK:"); break;
	case SMTP_LINE_TOO_LONG: buf_append_str(out, "TOO_LONG"); break;
	case SMTP_LINE_BARE_LF: buf_append_str(out, "BARE_LF:"); break;
	case SMTP_LINE_BARE_CR: buf_append_str(out, "BARE_CR:"); break;
	default: buf_printf(out, "?%d", ret); break;
	}
	if (ret != SMTP_LINE_TOO_LONG)
		test_escape(out, line->data, line->len);
	else
		assert_int_equal(line->len, 0);
	buf_append_c(out, '|');
}

static void run_line(const struct line_case *c, size_t chunk, struct buf *out)
{
	struct smtp_line_reader r;
	size_t len = test_len(c->in, c->in_len);
	smtp_line_reader_init(&r, c->max != 0 ? c->max : SMTP_LINE_MAX_DEFAULT);
	buf_reset(out);
	size_t pos = 0;
	while (pos < len) {
		size_t n = len - pos < chunk ? len - pos : chunk;
		size_t used;
		struct smtp_line line;
		int ret = smtp_line_reader_feed(&r, c->in + pos, n, &used, &line);
		assert_true(used <= n);
		pos += used;
		if (ret == SMTP_LINE_AGAIN) {
			assert_int_equal(used, n);
			continue;
		}
		/* A complete line always ends at an LF. */
		assert_int_equal(c->in[pos - 1], '\n');
		render_event(out, ret, &line);
	}
	if (r.discarding)
		buf_printf(out, "discarding=%zu", r.discarded);
	else if (r.len > 0)
		buf_printf(out, "rest=%zu", r.len);
	smtp_line_reader_deinit(&r);
}

static void test_line_table(void **state)
{
	struct buf out;
	buf_init(&out, 65536);
	for (size_t i = 0; i < sizeof(line_cases) / sizeof(line_cases[0]); i++) {
		const struct line_case *c = &line_cases[i];
		run_line(c, SIZE_MAX, &out);
		if (strcmp(out.data, c->expect) != 0)
			fail_msg("case '%s' whole: got '%s' want '%s'", c->name, out.data, c->expect);
		run_line(c, 1, &out);
		if (strcmp(out.data, c->expect) != 0)
			fail_msg("case '%s' trickle: got '%s' want '%s'", c->name, out.data, c->expect);
		run_line(c, 3, &out);
		if (strcmp(out.data, c->expect) != 0)
			fail_msg("case '%s' chunk3: got '%s' want '%s'", c->name, out.data, c->expect);
	}
	buf_deinit(&out);
}

/* After STARTTLS the reader must stop so the caller can drop the pipelined plaintext. */
static void test_line_starttls_stops(void **state)
{
	static const char in[] = "STARTTLS\r\nMAIL FROM:<evil@x>\r\n";
	struct smtp_line_reader r;
	struct smtp_line line;
	size_t used;
	smtp_line_reader_init(&r, 512);
	assert_int_equal(smtp_line_reader_feed(&r, in, sizeof(in) - 1, &used, &line), SMTP_LINE_OK);
	assert_int_equal(used, 10);
	assert_int_equal(line.len, 8);
	assert_memory_equal(line.data, "STARTTLS", 8);
	assert_false(smtp_line_reader_pending(&r));
	/* zero copy when the line came in one piece */
	assert_ptr_equal(line.data, in);
	smtp_line_reader_reset(&r);
	assert_int_equal(smtp_line_reader_feed(&r, "", 0, &used, &line), SMTP_LINE_AGAIN);
	assert_int_equal(used, 0);
	smtp_line_reader_deinit(&r);
}

/* A partial line is buffered and pending; reset forgets it. */
static void test_line_reset(void **state)
{
	struct smtp_line_reader r;
	struct smtp_line line;
	size_t used;
	smtp_line_reader_init(&r, 512);
	assert_int_equal(smtp_line_reader_feed(&r, "MAIL FR", 7, &used, &line), SMTP_LINE_AGAIN);
	assert_true(smtp_line_reader_pending(&r));
	smtp_line_reader_reset(&r);
	assert_false(smtp_line_reader_pending(&r));
	assert_int_equal(smtp_line_reader_feed(&r, "QUIT\r\n", 6, &used, &line), SMTP_LINE_OK);
	assert_int_equal(line.len, 4);
	assert_memory_equal(line.data, "QUIT", 4);
	smtp_line_reader_deinit(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_table),
		cmocka_unit_test(test_line_starttls_stops),
		cmocka_unit_test(test_line_reset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
