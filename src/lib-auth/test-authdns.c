/* test-authdns: answer caps, authdns_query's checks, and RDATA conversion
   for resolver adapters (table of cases). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib-auth/authdns.h"

struct rdata_case {
	int type;
	const char *rdata;
	int len;
	int ret;
	const char *text;  /* expected record data (names/txt) */
	size_t text_len;
	uint16_t pref;
};

static const struct rdata_case cases[] = {
	{ AUTHDNS_RR_A, "\xc0\x00\x02\x01", 4, 0, "\xc0\x00\x02\x01", 4, 0 },
	{ AUTHDNS_RR_A, "\xc0\x00\x02", 3, -1, NULL, 0, 0 },
	{ AUTHDNS_RR_TXT, "\x06v=spf1\x05 -all", 13, 0, "v=spf1 -all", 11, 0 },
	{ AUTHDNS_RR_TXT, "\x00", 1, 0, "", 0, 0 },
	{ AUTHDNS_RR_TXT, "\x09short", 6, -1, NULL, 0, 0 },
	{ AUTHDNS_RR_MX, "\x00\x0a\x02mx\x07" "example\x03" "com\x00", 18, 0, "mx.example.com", 14, 10 },
	{ AUTHDNS_RR_MX, "\x00\x0a\x02mx\xc0\x0c", 7, -1, NULL, 0, 0 },
	{ AUTHDNS_RR_PTR, "\x03" "a.b\x07" "example\x00", 13, 0, "a\\046b.example", 14, 0 },
	{ AUTHDNS_RR_PTR, "\x03" "abc", 4, -1, NULL, 0, 0 },
	{ AUTHDNS_RR_PTR, "\x00", 1, 0, "", 0, 0 },
	{ 99, "x", 1, -1, NULL, 0, 0 },
};

static void test_rdata(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct rdata_case *c = &cases[i];
		struct authdns_answer ans;
		authdns_answer_init(&ans);
		char *data[1] = { (char *)c->rdata };
		int len[1] = { c->len };
		int r = authdns_answer_from_rdata(&ans, c->type, data, len, 1, 300);
		if (r != c->ret)
			fail_msg("rdata case %zu: got %d", i, r);
		if (r == 0) {
			assert_int_equal(ans.status, AUTHDNS_OK);
			assert_int_equal(ans.count, 1);
			assert_int_equal(ans.rr[0].len, c->text_len);
			assert_memory_equal(ans.rr[0].data, c->text, c->text_len);
			assert_int_equal(ans.rr[0].pref, c->pref);
			assert_int_equal(ans.ttl, 300);
		} else {
			assert_int_equal(ans.status, AUTHDNS_PERMFAIL);
		}
		authdns_answer_clear(&ans);
	}
}

static int fake_many(void *ctx, const char *name, struct authdns_answer *ans)
{
	for (int i = 0; i < AUTHDNS_MAX_RECORDS + 5; i++)
		if (authdns_answer_add(ans, "x", 1, 0) < 0)
			return AUTHDNS_PERMFAIL;
	return AUTHDNS_OK;
}

static int fake_empty_ok(void *ctx, const char *name, struct authdns_answer *ans)
{
	return AUTHDNS_OK;
}

static int fake_bogus(void *ctx, const char *name, struct authdns_answer *ans)
{
	return 42;
}

static void test_query(void **state)
{
	struct authdns dns = { .txt = fake_many, .a = fake_empty_ok, .aaaa = fake_bogus };
	struct authdns_answer ans;
	authdns_answer_init(&ans);
	assert_int_equal(authdns_query(&dns, dns.txt, "example.com", &ans), AUTHDNS_PERMFAIL);
	assert_int_equal(ans.count, 0);
	assert_int_equal(authdns_query(&dns, dns.a, "example.com", &ans), AUTHDNS_NODATA);
	assert_int_equal(authdns_query(&dns, dns.aaaa, "example.com", &ans), AUTHDNS_TEMPFAIL);
	assert_int_equal(authdns_query(&dns, dns.mx, "example.com", &ans), AUTHDNS_PERMFAIL);
	char longname[300];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(authdns_query(&dns, dns.a, longname, &ans), AUTHDNS_PERMFAIL);
	char big[AUTHDNS_MAX_TXT + 1];
	memset(big, 'x', sizeof(big));
	assert_int_equal(authdns_answer_add(&ans, big, sizeof(big), 0), -1);
	assert_int_equal(authdns_answer_add(&ans, big, AUTHDNS_MAX_TXT, 0), 0);
	authdns_answer_clear(&ans);
	assert_string_equal(authdns_status_name(AUTHDNS_NXDOMAIN), "nxdomain");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rdata),
		cmocka_unit_test(test_query),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
