/* test-mailauth: the one-call inbound check over a zone: SPF, DKIM, ARC,
   DMARC verdicts and the Authentication-Results field, forged A-R detection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib-auth/mailauth.h"
#include "lib-auth/testzone.h"
#include "lib/xalloc.h"

static const char body_msg[] =
	"Authentication-Results: mx.example.test; spf=pass; dkim=pass; dmarc=pass\r\n"
	"From: Alice <alice@example.com>\r\n"
	"To: bob@example.test\r\n"
	"Subject: hello\r\n"
	"Date: Thu, 26 Nov 2026 09:00:00 +0000\r\n"
	"Message-ID: <1@example.com>\r\n"
	"\r\n"
	"Hello Bob.\r\n";

static void add_txt(struct testzone *z, const char *name, const char *txt)
{
	testzone_add(z, name, "TXT", txt, strlen(txt), 0);
}

struct case_ {
	const char *ip;
	const char *mailfrom;
	bool sign;
	const char *from_override; /* replaces the From line */
	enum spf_result spf;
	enum dkim_result dkim;
	enum dmarc_result dmarc;
	enum dmarc_policy disposition;
	const char *expect_in_ar;
};

static const struct case_ cases[] = {
	/* aligned SPF and DKIM */
	{ "192.0.2.10", "bounce@example.com", true, NULL, SPF_RESULT_PASS, DKIM_RESULT_PASS, DMARC_RESULT_PASS, DMARC_POLICY_NONE,
	  "dmarc=pass (p=reject dis=none) header.from=example.com" },
	/* wrong IP, DKIM still aligned: DMARC passes */
	{ "198.51.100.7", "bounce@example.com", true, NULL, SPF_RESULT_FAIL, DKIM_RESULT_PASS, DMARC_RESULT_PASS, DMARC_POLICY_NONE,
	  "spf=fail smtp.mailfrom=bounce@example.com" },
	/* wrong IP, unsigned: reject */
	{ "198.51.100.7", "bounce@example.com", false, NULL, SPF_RESULT_FAIL, DKIM_RESULT_NONE, DMARC_RESULT_FAIL, DMARC_POLICY_REJECT,
	  "dkim=none" },
	/* SPF passes for another domain: not aligned */
	{ "192.0.2.20", "x@other.example", false, NULL, SPF_RESULT_PASS, DKIM_RESULT_NONE, DMARC_RESULT_FAIL, DMARC_POLICY_REJECT,
	  "dmarc=fail (p=reject dis=reject) header.from=example.com" },
	/* null sender: HELO identity */
	{ "192.0.2.10", "", true, NULL, SPF_RESULT_PASS, DKIM_RESULT_PASS, DMARC_RESULT_PASS, DMARC_POLICY_NONE,
	  "spf=pass smtp.helo=mail.example.com" },
	/* two From fields: no DMARC */
	{ "192.0.2.10", "bounce@example.com", false, "From: a@example.com\r\nFrom: b@evil.example\r\n", SPF_RESULT_PASS,
	  DKIM_RESULT_NONE, DMARC_RESULT_NONE, DMARC_POLICY_UNSPECIFIED, "arc=none" },
};

static void test_check(void **state)
{
	char *pem, *txt;
	const char *err;
	assert_int_equal(dkim_keygen("ed25519", &pem, &txt, &err), 1);
	struct testzone *z = testzone_new();
	add_txt(z, "example.com", "v=spf1 ip4:192.0.2.0/28 -all");
	add_txt(z, "other.example", "v=spf1 ip4:192.0.2.20 -all");
	add_txt(z, "mail.example.com", "v=spf1 a -all");
	testzone_add(z, "mail.example.com", "A", "192.0.2.10", 10, 0);
	add_txt(z, "_dmarc.example.com", "v=DMARC1; p=reject");
	add_txt(z, "sel._domainkey.example.com", txt);
	struct authdns dns;
	testzone_authdns(z, &dns);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct case_ *c = &cases[i];
		char *msg = xstrdup(body_msg);
		if (c->from_override != NULL) {
			char *p = strstr(msg, "From: Alice <alice@example.com>\r\n");
			*p = '\0';
			char *n = xasprintf("%s%s%s", msg, c->from_override, p + strlen("From: Alice <alice@example.com>\r\n"));
			free(msg);
			msg = n;
		}
		if (c->sign) {
			struct dkim_sign_options so = { .domain = "example.com", .selector = "sel", .key_pem = pem };
			char *h;
			assert_int_equal(dkim_sign(msg, strlen(msg), &so, &h, &err), 1);
			char *n = xasprintf("%s%s", h, msg);
			free(h);
			free(msg);
			msg = n;
		}
		struct mailauth_request req = {
			.ip = c->ip, .helo = "mail.example.com", .mailfrom = c->mailfrom,
			.authserv_id = "mx.example.test", .msg = msg, .len = strlen(msg),
		};
		struct mailauth_result r;
		assert_int_equal(mailauth_check(&req, &dns, &r, &err), 1);
		if (r.spf.result != c->spf || r.dkim.result != c->dkim || r.dmarc.result != c->dmarc ||
		    (c->dmarc == DMARC_RESULT_FAIL && r.dmarc.disposition != c->disposition) ||
		    strstr(r.authres_field, c->expect_in_ar) == NULL)
			fail_msg("case %zu: spf=%s dkim=%s dmarc=%s\n%s", i, spf_result_name(r.spf.result),
				 dkim_result_name(r.dkim.result), dmarc_result_name(r.dmarc.result), r.authres_field);
		assert_true(strncmp(r.authres_field, "Authentication-Results: mx.example.test;\r\n", 42) == 0);
		assert_true(strncmp(r.authres_value, "mx.example.test;\r\n", 18) == 0);
		/* the message's own A-R claiming our id is reported */
		assert_int_equal(r.nforged, 1);
		if (i == 0)
			printf("%s", r.authres_field);
		mailauth_result_free(&r);
		free(msg);
	}
	/* forwarder: check, then seal with our verdicts; the next hop sees arc=pass */
	{
		add_txt(z, "arc._domainkey.example.test", txt);
		struct mailauth_request req = {
			.ip = "192.0.2.10", .helo = "mail.example.com", .mailfrom = "bounce@example.com",
			.authserv_id = "mx.example.test", .msg = body_msg, .len = strlen(body_msg),
		};
		struct mailauth_result r1;
		assert_int_equal(mailauth_check(&req, &dns, &r1, &err), 1);
		struct arc_sign_options ao = {
			.domain = "example.test", .selector = "arc", .key_pem = pem, .authres = r1.authres_value,
		};
		char *fields;
		assert_int_equal(arc_sign(body_msg, strlen(body_msg), &ao, r1.arc.cv, &fields, &err), 1);
		char *sealed = xasprintf("%s%s", fields, body_msg);
		req.msg = sealed;
		req.len = strlen(sealed);
		req.authserv_id = "next.example.net";
		struct mailauth_result r2;
		assert_int_equal(mailauth_check(&req, &dns, &r2, &err), 1);
		assert_int_equal(r2.arc.cv, ARC_RESULT_PASS);
		assert_non_null(strstr(r2.authres_field, "arc=pass (i=1)"));
		mailauth_result_free(&r1);
		mailauth_result_free(&r2);
		free(sealed);
		free(fields);
	}
	struct mailauth_request bad = { .ip = "not-an-ip", .msg = "", .len = 0 };
	struct mailauth_result r;
	assert_int_equal(mailauth_check(&bad, &dns, &r, &err), -1);
	mailauth_result_free(&r);
	free(pem);
	free(txt);
	testzone_free(&z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
