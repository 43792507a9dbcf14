/* test-authres: Authentication-Results generation (quoting, caps) and
   detection of fields claiming our authserv-id. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib-auth/authres.h"
#include "lib/xalloc.h"

static void test_generate(void **state)
{
	struct authres a;
	authres_init(&a, "mx.example.test");
	authres_add_spf(&a, SPF_RESULT_PASS, "user@example.com", "helo.example.com", NULL);
	authres_add_spf(&a, SPF_RESULT_NONE, "", "helo.example.com", NULL);
	struct dkim_sig_result s = {
		.result = DKIM_RESULT_FAIL, .domain = "example.com", .identity = "@example.com",
		.selector = "sel", .algorithm = "rsa-sha256", .b_prefix = "abcDEF012345",
		.problem = "body hash did not verify",
	};
	authres_add_dkim(&a, &s);
	struct dmarc_outcome o = {
		.result = DMARC_RESULT_FAIL, .policy = DMARC_POLICY_REJECT,
		.disposition = DMARC_POLICY_QUARANTINE, .record_domain = "example.com",
	};
	authres_add_dmarc(&a, &o, "example.com");
	authres_add_spf(&a, SPF_RESULT_FAIL, "we ird\"(x)@example.com", NULL, "bad (reason)");
	char *h = authres_finish(&a);
	assert_string_equal(h,
		"Authentication-Results: mx.example.test;\r\n"
		"\tspf=pass smtp.mailfrom=user@example.com;\r\n"
		"\tspf=none smtp.helo=helo.example.com;\r\n"
		"\tdkim=fail (body hash did not verify) header.d=example.com header.i=@example.com header.s=sel header.a=rsa-sha256 header.b=abcDEF012345;\r\n"
		"\tdmarc=fail (p=reject dis=quarantine) header.from=example.com;\r\n"
		"\tspf=fail (bad \\(reason\\)) smtp.mailfrom=\"we ird\\\"(x)@example.com\"\r\n");
	free(h);
	authres_deinit(&a);
	authres_init(&a, "mx.example.test");
	h = authres_finish(&a);
	assert_string_equal(h, "Authentication-Results: mx.example.test; none\r\n");
	free(h);
	authres_deinit(&a);
	/* cap: results that do not fit are dropped, the field stays valid */
	authres_init(&a, "mx.example.test");
	char big[600];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (int i = 0; i < 100; i++)
		authres_add(&a, "x-test", "pass", big, NULL);
	assert_true(a.results < 100 && a.results > 5);
	h = authres_finish(&a);
	assert_true(strlen(h) <= AUTHRES_MAX + 40);
	free(h);
	authres_deinit(&a);
}

static void test_claims(void **state)
{
	static const struct {
		const char *v;
		bool claims;
	} cases[] = {
		{ " mx.example.test; spf=pass", true },
		{ " MX.Example.Test;spf=pass", true },
		{ " (comment (nested)) mx.example.test 1; none", true },
		{ " \"mx.example.test\"; none", true },
		{ " mx.example.test.evil; none", false },
		{ " other.example; spf=pass smtp.mailfrom=mx.example.test", false },
		{ "", false },
		{ " (unterminated", false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (authres_claims(cases[i].v, strlen(cases[i].v), "mx.example.test") != cases[i].claims)
			fail_msg("claims case %zu", i);
	const char *msg = "Received: x\r\n"
			  "Authentication-Results: mx.example.test; dkim=pass\r\n"
			  "Authentication-Results: other.example; dkim=pass\r\n"
			  "authentication-results: (c) mx.example.test;\r\n spf=pass\r\n"
			  "\r\nbody\r\n";
	struct dkim_msg m;
	const char *err;
	assert_int_equal(dkim_msg_parse(msg, strlen(msg), &m, &err), 1);
	size_t idx[4];
	assert_int_equal(authres_find_claiming(&m, "mx.example.test", idx, 4), 2);
	assert_int_equal(idx[0], 1);
	assert_int_equal(idx[1], 3);
	dkim_msg_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_claims),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
