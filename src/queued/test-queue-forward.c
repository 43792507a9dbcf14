#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib-auth/arc.h"
#include "lib-auth/dkim.h"
#include "lib-auth/testzone.h"
#include "lib/xalloc.h"
#include "queued/queue_forward.h"

static void test_our_authres(void **state)
{
	(void)state;
	static const struct {
		const char *block;
		const char *want; /* NULL = none */
	} cases[] = {
		{ "Authentication-Results: mx.a.test;\r\n\tspf=pass smtp.mailfrom=b@r.test;\r\n\tarc=none\r\n",
		  "mx.a.test;\tspf=pass smtp.mailfrom=b@r.test;\tarc=none" },
		{ "X-Tag: 1\r\nAuthentication-Results: other.test; spf=fail\r\n"
		  "authentication-results:   mx.a.test; dkim=pass\r\nX-After: 2\r\n",
		  "mx.a.test; dkim=pass" },
		{ "Authentication-Results: other.test; spf=pass\r\n", NULL },
		{ "Authentication-Results: (comment) mx.a.test; arc=pass", "(comment) mx.a.test; arc=pass" },
		{ "X-Authentication-Results: mx.a.test; spf=pass\r\n", NULL },
		{ "", NULL },
		{ NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *v = queue_forward_our_authres(cases[i].block, "mx.a.test");
		if (cases[i].want == NULL) {
			if (v != NULL)
				fail_msg("case %zu: got '%s'", i, v);
		} else {
			if (v == NULL || strcmp(v, cases[i].want) != 0)
				fail_msg("case %zu: got '%s', want '%s'", i, v ? v : "(null)", cases[i].want);
		}
		free(v);
	}
}

static const char body_msg[] =
	"Received: from a by b; Thu, 1 Jan 2026 00:00:00 +0000\r\n"
	"From: Bob <bob@remote.test>\r\n"
	"To: alias@a.test\r\n"
	"Subject: forwarded\r\n"
	"Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n"
	"Message-ID: <1@remote.test>\r\n"
	"\r\n"
	"Hello.\r\n";

/* Seal header_block + body_msg, prepend, return the new whole message. */
static char *seal(const char *header_block, const char *prev, const char *pem, int want_r, char **fields_out)
{
	char *msg = xasprintf("%s%s", header_block, prev);
	char *fields = NULL;
	const char *why = NULL;
	int r = queue_forward_arc_seal(msg, strlen(msg), header_block, "mx.a.test", "srs.a.test", "sel", pem, 0, &fields,
	                               &why);
	if (r != want_r)
		fail_msg("seal gave %d (%s), want %d", r, why ? why : "", want_r);
	char *out = r == 1 ? xasprintf("%s%s", fields, msg) : NULL;
	if (fields_out != NULL)
		*fields_out = fields;
	else
		free(fields);
	free(msg);
	return out;
}

static void test_arc_seal(void **state)
{
	(void)state;
	char *pem = NULL, *txt = NULL;
	const char *err = NULL;
	assert_int_equal(dkim_keygen("ed25519", &pem, &txt, &err), 1);
	struct testzone *z = testzone_new();
	testzone_add(z, "sel._domainkey.srs.a.test", "TXT", txt, strlen(txt), 0);
	struct authdns dns;
	testzone_authdns(z, &dns);

	/* Hop 1: no chain yet: cv=none, the AAR carries our A-R. */
	const char *block1 = "Authentication-Results: mx.a.test;\r\n\tspf=pass smtp.mailfrom=bob@remote.test;\r\n\tarc=none\r\n";
	char *fields = NULL;
	char *m1 = seal(block1, body_msg, pem, 1, &fields);
	assert_non_null(strstr(fields, "ARC-Seal: a=ed25519-sha256; b="));
	assert_non_null(strstr(fields, "cv=none; d=srs.a.test; i=1; s=sel;"));
	assert_non_null(strstr(fields, "ARC-Authentication-Results: i=1; mx.a.test;\tspf=pass smtp.mailfrom=bob@remote.test;\tarc=none\r\n"));
	free(fields);
	struct arc_verify_result vr;
	memset(&vr, 0, sizeof(vr));
	assert_int_equal(arc_verify(m1, strlen(m1), &dns, NULL, &vr), ARC_RESULT_PASS);
	assert_int_equal(vr.instances, 1);
	arc_verify_result_free(&vr);

	/* Hop 2: the chain passed at receipt (our A-R says arc=pass): cv=pass, i=2. */
	const char *block2 = "Authentication-Results: mx.a.test; arc=pass (i=1)\r\n";
	char *m2 = seal(block2, m1, pem, 1, &fields);
	assert_non_null(strstr(fields, "cv=pass; d=srs.a.test; i=2;"));
	free(fields);
	memset(&vr, 0, sizeof(vr));
	assert_int_equal(arc_verify(m2, strlen(m2), &dns, NULL, &vr), ARC_RESULT_PASS);
	assert_int_equal(vr.instances, 2);
	arc_verify_result_free(&vr);

	/* A chain with no verdict of ours (mail_auth off, or a forged A-R inside the message): not sealed. */
	assert_null(seal("", m1, pem, 0, NULL));
	assert_null(seal("Authentication-Results: other.test; arc=pass\r\n", m1, pem, 0, NULL));
	/* No chain and no A-R: cv=none with "id; none". */
	char *m3 = seal("", body_msg, pem, 1, &fields);
	assert_non_null(strstr(fields, "ARC-Authentication-Results: i=1; mx.a.test; none\r\n"));
	free(fields);
	free(m3);

	/* The chain failed at receipt: sealed with cv=fail, and the result fails. */
	char *m4 = seal("Authentication-Results: mx.a.test; arc=fail (bad seal)\r\n", m1, pem, 1, &fields);
	assert_non_null(strstr(fields, "cv=fail;"));
	free(fields);
	memset(&vr, 0, sizeof(vr));
	assert_int_equal(arc_verify(m4, strlen(m4), &dns, NULL, &vr), ARC_RESULT_FAIL);
	arc_verify_result_free(&vr);
	/* A dead chain gets no new set. */
	assert_null(seal("Authentication-Results: mx.a.test; arc=pass\r\n", m4, pem, 0, NULL));
	free(m4);

	/* A bad key is an error. */
	char *fl = NULL;
	const char *why = NULL;
	assert_int_equal(queue_forward_arc_seal(body_msg, strlen(body_msg), NULL, "mx.a.test", "srs.a.test", "sel",
	                                        "not a key", 0, &fl, &why), -1);
	assert_null(fl);

	free(m2);
	free(m1);
	testzone_free(&z);
	free(txt);
	free(pem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_our_authres),
		cmocka_unit_test(test_arc_seal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
