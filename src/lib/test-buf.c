#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "lib/buf.h"
#include "lib/log.h"

static void test_buf_max(void **state)
{
	struct buf b;
	buf_init(&b, 8);
	assert_int_equal(buf_append_str(&b, "abcd"), 0);
	assert_int_equal(buf_append_str(&b, "efgh"), 0);
	assert_int_equal(buf_append_c(&b, 'x'), -1);
	assert_int_equal(b.len, 8);
	assert_string_equal(b.data, "abcdefgh");
	buf_consume(&b, 3);
	assert_string_equal(b.data, "defgh");
	assert_int_equal(buf_printf(&b, "%d", 123), 0);
	assert_int_equal(buf_printf(&b, "%d", 1), -1);
	assert_string_equal(b.data, "defgh123");
	buf_deinit(&b);
}

static void test_log_q(void **state)
{
	char q[32];
	assert_string_equal(log_q(q, sizeof(q), "plain"), "plain");
	assert_string_equal(log_q(q, sizeof(q), "a b"), "\"a b\"");
	assert_string_equal(log_q(q, sizeof(q), "x\r\n\"y"), "\"x\\x0d\\x0a\\\"y\"");
	assert_string_equal(log_q(q, sizeof(q), ""), "\"\"");
	assert_string_equal(log_q(q, 8, "abcdefghijkl"), "\"abcde\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_max),
		cmocka_unit_test(test_log_q),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
