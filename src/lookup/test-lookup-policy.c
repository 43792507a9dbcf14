#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib-auth/srs.h"
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

static void test_srs_config(void **state)
{
	(void)state;
	char *old[] = { "old-secret-0123456789", "older-secret-0123456789" };
	struct mr_config off = { .hostname = "mx.a.test" };
	struct mr_config on = { .hostname = "mx.a.test", .srs = { .secret = "new-secret-0123456789", .secrets = old,
	                                                          .secrets_count = 2, .max_age_days = 5 } };
	struct mr_config only_old = { .hostname = "mx.a.test", .srs = { .secrets = old, .secrets_count = 1,
	                                                                .domain = "srs.a.test" } };
	struct srs_config sc;
	assert_false(lookup_srs_config(&off, &sc));
	assert_true(lookup_srs_config(&on, &sc));
	assert_string_equal(sc.secrets[0], "new-secret-0123456789");
	assert_string_equal(sc.secrets[1], "old-secret-0123456789");
	assert_string_equal(sc.secrets[2], "older-secret-0123456789");
	assert_null(sc.secrets[3]);
	assert_string_equal(sc.domain, "mx.a.test"); /* domain defaults to the hostname */
	assert_int_equal(sc.max_age_days, 5);
	assert_true(lookup_srs_config(&only_old, &sc));
	assert_string_equal(sc.secrets[0], "old-secret-0123456789");
	assert_null(sc.secrets[1]);
	assert_string_equal(sc.domain, "srs.a.test");
}

/* Forward with one config, reverse with another: what a bounce meets at RCPT. */
static void test_srs_reverse(void **state)
{
	(void)state;
	char *old[] = { "old-secret-0123456789" };
	struct mr_config cur = { .hostname = "mx.a.test", .srs = { .secret = "new-secret-0123456789", .secrets = old,
	                                                           .secrets_count = 1, .domain = "srs.a.test" } };
	struct mr_config prev = { .hostname = "mx.a.test", .srs = { .secret = "old-secret-0123456789", .domain = "srs.a.test" } };
	struct mr_config other = { .hostname = "mx.a.test", .srs = { .secret = "another-secret-0123456789",
	                                                             .domain = "srs.a.test" } };
	struct mr_config off = { .hostname = "mx.a.test", .srs = { .domain = "srs.a.test" } };
	time_t now = time(NULL);
	const struct {
		const struct mr_config *signer;
		int age_days;
		const struct mr_config *checker;
		const char *mangle; /* replace the domain part with this, or NULL */
		bool upper;         /* uppercase the whole address (MTAs change case) */
		int want;
	} cases[] = {
		{ &cur, 0, &cur, NULL, false, 1 },
		{ &cur, 0, &cur, NULL, true, 1 },
		{ &prev, 0, &cur, NULL, false, 1 },      /* rotated: the old secret still verifies */
		{ &other, 0, &cur, NULL, false, -1 },    /* forged: a secret we never had */
		{ &cur, 30, &cur, NULL, false, -1 },     /* expired: older than 21 days */
		{ &cur, 20, &cur, NULL, false, 1 },
		{ &cur, 0, &cur, "elsewhere.test", false, 0 }, /* not our SRS domain: not ours to judge */
		{ &cur, 0, &off, NULL, false, 0 },       /* SRS off */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct srs_config sc;
		assert_true(lookup_srs_config(cases[i].signer, &sc));
		char *fwd = NULL;
		const char *why = NULL;
		assert_int_equal(srs_forward(&sc, "bob@remote.test", now - cases[i].age_days * 86400, &fwd, &why), 1);
		char addr[600];
		if (cases[i].mangle != NULL)
			snprintf(addr, sizeof(addr), "%.*s@%s", (int)(strrchr(fwd, '@') - fwd), fwd, cases[i].mangle);
		else
			snprintf(addr, sizeof(addr), "%s", fwd);
		if (cases[i].upper)
			for (char *p = addr; *p; p++)
				if (*p >= 'a' && *p <= 'z')
					*p = (char)(*p - 'a' + 'A');
		char *orig = NULL;
		int r = lookup_srs_reverse(cases[i].checker, addr, &orig, &why);
		if (r != cases[i].want)
			fail_msg("case %zu: %s gave %d, want %d", i, addr, r, cases[i].want);
		if (r == 1) {
			assert_non_null(orig);
			if (strcasecmp(orig, "bob@remote.test") != 0)
				fail_msg("case %zu: reversed to %s", i, orig);
		} else {
			assert_null(orig);
		}
		free(orig);
		free(fwd);
	}
	/* A bad hash in an otherwise well-formed address. */
	struct srs_config sc;
	lookup_srs_config(&cur, &sc);
	char *fwd = NULL;
	const char *why = NULL;
	assert_int_equal(srs_forward(&sc, "bob@remote.test", now, &fwd, &why), 1);
	fwd[5] = fwd[5] == 'A' ? 'B' : 'A';
	char *orig = NULL;
	assert_int_equal(lookup_srs_reverse(&cur, fwd, &orig, &why), -1);
	assert_null(orig);
	free(fwd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_maildir_path),
		cmocka_unit_test(test_srs_config),
		cmocka_unit_test(test_srs_reverse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
