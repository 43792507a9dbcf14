#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#include "lookup/lookup_policy.h"

static void test_cidr(void **state)
{
	static const struct {
		const char *cidr, *ip;
		bool match;
	} cases[] = {
		{ "127.0.0.0/8", "127.0.0.1", true },
		{ "127.0.0.0/8", "128.0.0.1", false },
		{ "10.1.2.3", "10.1.2.3", true },
		{ "10.1.2.3", "10.1.2.4", false },
		{ "10.1.2.0/31", "10.1.2.1", true },
		{ "10.1.2.0/31", "10.1.2.2", false },
		{ "0.0.0.0/0", "192.0.2.1", true },
		{ "::1/128", "::1", true },
		{ "::1/128", "::2", false },
		{ "2001:db8::/32", "2001:db8:1::5", true },
		{ "2001:db8::/32", "2001:db9::5", false },
		{ "127.0.0.0/8", "::ffff:127.0.0.1", true },
		{ "127.0.0.0/33", "127.0.0.1", false },
		{ "127.0.0.0/x", "127.0.0.1", false },
		{ "garbage", "127.0.0.1", false },
		{ "127.0.0.1", "::1", false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (lookup_cidr_match(cases[i].cidr, cases[i].ip) != cases[i].match)
			fail_msg("case %zu: %s vs %s", i, cases[i].cidr, cases[i].ip);
	}
}

static void test_maildir_path(void **state)
{
	struct mr_config cfg = { .data_dir = "/srv/mr" };
	char *p = lookup_maildir_path(&cfg, "alice@example.test");
	assert_string_equal(p, "/srv/mr/mail/example.test/alice");
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_maildir_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
