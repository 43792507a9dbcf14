#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "pop3/pop3_parser.h"

static const struct {
	const char *line;
	int result;
	const char *verb, *a0, *a1;
	size_t nargs;
} cases[] = {
	{ "QUIT", 1, "QUIT", NULL, NULL, 0 },
	{ "quit", 1, "QUIT", NULL, NULL, 0 },
	{ "USER joe@x.test", 1, "USER", "joe@x.test", NULL, 1 },
	{ "PASS my secret pass", 1, "PASS", "my secret pass", NULL, 1 },
	{ "TOP 1 10", 1, "TOP", "1", "10", 2 },
	{ "AUTH PLAIN AGpvZQBzZWNyZXQ=", 1, "AUTH", "PLAIN", "AGpvZQBzZWNyZXQ=", 2 },
	{ .line = "TOP 1 10 x", .result = -1 },
	{ .line = "LIST  1", .result = -1 },
	{ .line = "LIST 1 ", .result = -1 },
	{ .line = "XY", .result = -1 },
	{ .line = "TOOLONG", .result = -1 },
	{ .line = "", .result = -1 },
	{ .line = "RETR 1\x01", .result = -1 },
	{ .line = "USER j\xc3\xa9", .result = -1 },
	{ .line = "1234", .result = -1 },
};

static void test_parse(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pop3_command c;
		int r = pop3_parse_command(cases[i].line, strlen(cases[i].line), &c);
		if (r != cases[i].result)
			fail_msg("case %zu '%s': %d", i, cases[i].line, r);
		if (r < 0)
			continue;
		assert_string_equal(c.verb, cases[i].verb);
		assert_int_equal(c.nargs, cases[i].nargs);
		if (cases[i].a0)
			assert_string_equal(c.arg[0], cases[i].a0);
		if (cases[i].a1)
			assert_string_equal(c.arg[1], cases[i].a1);
	}
	assert_int_equal(pop3_parse_number("12"), 12);
	assert_int_equal(pop3_parse_number("0"), 0);
	assert_int_equal(pop3_parse_number("-1"), 0);
	assert_int_equal(pop3_parse_number("1x"), 0);
	assert_int_equal(pop3_parse_number("99999999999"), 0);
}

/* Feed a stream whole, then a byte at a time: the same lines come out. */
static void test_reader_trickle(void **state)
{
	const char in[] = "USER a\r\nPASS b c\nNOOP\r\n";
	const char *want[] = { "USER a", "PASS b c", "NOOP" };
	for (size_t chunk = sizeof(in) - 1; chunk >= 1; chunk = chunk == 1 ? 0 : 1) {
		struct pop3_line_reader r;
		pop3_line_reader_init(&r);
		size_t off = 0, got = 0;
		while (off < sizeof(in) - 1) {
			size_t n = sizeof(in) - 1 - off < chunk ? sizeof(in) - 1 - off : chunk;
			size_t used;
			int res = pop3_line_reader_feed(&r, in + off, n, &used);
			off += used;
			if (res == 1) {
				assert_true(got < 3);
				assert_string_equal(r.line.data, want[got]);
				got++;
				pop3_line_reader_next(&r);
			}
			assert_int_not_equal(res, -1);
		}
		assert_int_equal(got, 3);
		pop3_line_reader_deinit(&r);
		if (chunk == 1)
			break;
	}
}

static void test_reader_overflow(void **state)
{
	struct pop3_line_reader r;
	pop3_line_reader_init(&r);
	char big[POP3_LINE_MAX + 10];
	memset(big, 'a', sizeof(big));
	size_t used;
	assert_int_equal(pop3_line_reader_feed(&r, big, sizeof(big), &used), -1);
	assert_int_equal(used, sizeof(big));
	/* the rest of the long line is skipped, the next line is read */
	assert_int_equal(pop3_line_reader_feed(&r, "aaa\r\n", 5, &used), 0);
	assert_int_equal(pop3_line_reader_feed(&r, "NOOP\r\n", 6, &used), 1);
	assert_string_equal(r.line.data, "NOOP");
	pop3_line_reader_deinit(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_reader_trickle),
		cmocka_unit_test(test_reader_overflow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
