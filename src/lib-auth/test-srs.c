/* test-srs: SRS0/SRS1 forward and reverse, case-insensitivity, expiry,
   forgery, key rotation, malformed input. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "lib-auth/srs.h"
#include "lib/xalloc.h"

#define DAY 86400
static const time_t now = 1700000000;

static void test_roundtrip(void **state)
{
	struct srs_config a = { .secrets = {"secret-a"}, .domain = "fwd-a.example" };
	struct srs_config b = { .secrets = {"secret-b"}, .domain = "fwd-b.example" };
	const char *err;
	char *s0, *s1, *r1, *r0;
	assert_int_equal(srs_forward(&a, "user+tag=x@origin.example", now, &s0, &err), 1);
	assert_true(strncmp(s0, "SRS0=", 5) == 0);
	assert_non_null(strstr(s0, "=origin.example=user+tag=x@fwd-a.example"));
	/* second hop makes SRS1 and keeps the first hop */
	assert_int_equal(srs_forward(&b, s0, now, &s1, &err), 1);
	assert_true(strncmp(s1, "SRS1=", 5) == 0);
	assert_non_null(strstr(s1, "=fwd-a.example=="));
	assert_true(strlen(s1) > 0 && strcmp(strrchr(s1, '@'), "@fwd-b.example") == 0);
	/* bounce: b reverses to a's SRS0, a reverses to the original */
	assert_int_equal(srs_reverse(&b, s1, now, &r1, &err), 1);
	assert_string_equal(r1, s0);
	assert_int_equal(srs_reverse(&a, r1, now + 3 * DAY, &r0, &err), 1);
	assert_string_equal(r0, "user+tag=x@origin.example");
	free(r0);
	/* case-insensitive: an MTA lowercased the whole address */
	char *lower = xstrdup(s0);
	for (char *p = lower; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	assert_int_equal(srs_reverse(&a, lower, now, &r0, &err), 1);
	assert_string_equal(r0, "user+tag=x@origin.example");
	free(r0);
	free(lower);
	/* a third hop rewrites SRS1 again, still reversible to a's SRS0 */
	struct srs_config c = { .secrets = {"secret-c"}, .domain = "fwd-c.example" };
	char *s1b, *r1b;
	assert_int_equal(srs_forward(&c, s1, now, &s1b, &err), 1);
	assert_int_equal(srs_reverse(&c, s1b, now, &r1b, &err), 1);
	assert_string_equal(r1b, s0);
	free(s1b);
	free(r1b);
	free(s0);
	free(s1);
	free(r1);
}

static void test_errors(void **state)
{
	struct srs_config a = { .secrets = {"new", "old"}, .domain = "fwd.example", .max_age_days = 10 };
	struct srs_config old = { .secrets = {"old"}, .domain = "fwd.example" };
	const char *err;
	char *s, *r;
	/* no rewrite: null sender, our own domain */
	assert_int_equal(srs_forward(&a, "", now, &s, &err), 0);
	assert_int_equal(srs_forward(&a, "me@FWD.example", now, &s, &err), 0);
	assert_int_equal(srs_forward(&a, "nodomain", now, &s, &err), -1);
	assert_int_equal(srs_forward(&a, "@x.example", now, &s, &err), -1);
	struct srs_config nokey = { .domain = "fwd.example" };
	assert_int_equal(srs_forward(&nokey, "a@b.example", now, &s, &err), -1);
	/* rotation: signed with the old secret still verifies */
	assert_int_equal(srs_forward(&old, "a@b.example", now, &s, &err), 1);
	assert_int_equal(srs_reverse(&a, s, now, &r, &err), 1);
	assert_string_equal(r, "a@b.example");
	free(r);
	/* expired */
	assert_int_equal(srs_reverse(&a, s, now + 11 * DAY, &r, &err), -1);
	assert_string_equal(err, "SRS address expired");
	/* forged: change one hash character, or the target */
	char *forged = xstrdup(s);
	forged[5] = forged[5] == 'A' ? 'B' : 'A';
	assert_int_equal(srs_reverse(&a, forged, now, &r, &err), -1);
	assert_string_equal(err, "SRS hash does not verify");
	free(forged);
	char *retarget = xstrdup(s);
	char *d = strstr(retarget, "=b.example=");
	d[1] = 'c';
	assert_int_equal(srs_reverse(&a, retarget, now, &r, &err), -1);
	free(retarget);
	free(s);
	/* malformed SRS addresses and non-SRS */
	static const char *const bad[] = {
		"SRS0=@fwd.example", "SRS0=AAAAAAAA=Z@fwd.example", "SRS0=AAAAAAAA=AA=dom@fwd.example",
		"SRS1=AAAAAAAA@fwd.example", "SRS1=AAAAAAAA==x@fwd.example", "srs0=x=y=z=w@fwd.example",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = NULL;
		if (srs_reverse(&a, bad[i], now, &r, &err) != -1)
			fail_msg("bad %zu accepted: %s", i, r ? r : "");
	}
	assert_int_equal(srs_reverse(&a, "plain@fwd.example", now, &r, &err), 0);
	assert_int_equal(srs_reverse(&a, "SRS2=x@fwd.example", now, &r, &err), 0);
	/* too long */
	char big[SRS_MAX_ADDRESS + 10];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[10] = '@';
	assert_int_equal(srs_forward(&a, big, now, &s, &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
