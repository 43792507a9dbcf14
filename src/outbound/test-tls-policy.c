/*
 * Outbound TLS policy pieces: the MTA-STS policy and TXT parsers, MX pattern
 * matching, TLSA usability and the TLSA → OpenSSL DANE conversion (a real
 * handshake over memory BIOs against a generated certificate), TLS-RPT lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "outbound/dane.h"
#include "outbound/mta_sts.h"
#include "outbound/tlsrpt.h"

/* ------------------------------------------------------------------ MTA-STS policy parser */

struct policy_case {
	const char *name;
	const char *text;
	int ret;
	enum mta_sts_mode mode;
	unsigned long max_age;
	size_t mx_count;
	const char *mx0;
};

static const struct policy_case policy_cases[] = {
	{ "rfc example", "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
	                 "mx: backupmx.example.com\r\nmax_age: 604800\r\n", 1, MTA_STS_MODE_ENFORCE, 604800, 3,
	  "mail.example.com" },
	{ "lf only, spaces", "version:STSv1\nmode:   testing  \nmx: MX.Example.ORG.\nmax_age: 86400", 1,
	  MTA_STS_MODE_TESTING, 86400, 1, "mx.example.org" },
	{ "mode none without mx", "version: STSv1\nmode: none\nmax_age: 1\n", 1, MTA_STS_MODE_NONE, 1, 0, NULL },
	{ "unknown field ignored", "version: STSv1\nmode: enforce\nfoo: bar\nmx: a.test\nmax_age: 5\n", 1,
	  MTA_STS_MODE_ENFORCE, 5, 1, "a.test" },
	{ "first mode wins", "version: STSv1\nmode: testing\nmode: enforce\nmx: a.test\nmax_age: 5\n", 1,
	  MTA_STS_MODE_TESTING, 5, 1, "a.test" },
	{ "max_age capped", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 9999999999\n", 1,
	  MTA_STS_MODE_ENFORCE, MTA_STS_MAX_AGE, 1, "a.test" },
	{ "no version", "mode: enforce\nmx: a.test\nmax_age: 5\n", -1, 0, 0, 0, NULL },
	{ "wrong version", "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 5\n", -1, 0, 0, 0, NULL },
	{ "bad mode", "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 5\n", -1, 0, 0, 0, NULL },
	{ "no max_age", "version: STSv1\nmode: enforce\nmx: a.test\n", -1, 0, 0, 0, NULL },
	{ "bad max_age", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1d\n", -1, 0, 0, 0, NULL },
	{ "enforce without mx", "version: STSv1\nmode: enforce\nmax_age: 5\n", -1, 0, 0, 0, NULL },
	{ "bad mx", "version: STSv1\nmode: enforce\nmx: a..test\nmax_age: 5\n", -1, 0, 0, 0, NULL },
	{ "mx wildcard in the middle", "version: STSv1\nmode: enforce\nmx: a.*.test\nmax_age: 5\n", -1, 0, 0, 0,
	  NULL },
	{ "line without colon", "version: STSv1\nmode enforce\nmx: a.test\nmax_age: 5\n", -1, 0, 0, 0, NULL },
	{ "control character", "version: STSv1\nmode: enforce\nmx: a.test\x01\nmax_age: 5\n", -1, 0, 0, 0, NULL },
	{ "empty", "", -1, 0, 0, 0, NULL },
	{ "html", "<html><body>Not found</body></html>", -1, 0, 0, 0, NULL },
};

static void test_policy_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(policy_cases) / sizeof(policy_cases[0]); i++) {
		const struct policy_case *c = &policy_cases[i];
		struct mta_sts_policy p = { 0 };
		const char *err = NULL;
		int r = mta_sts_policy_parse(c->text, strlen(c->text), &p, &err);
		if (r != c->ret)
			fail_msg("case %s: ret %d (%s)", c->name, r, err != NULL ? err : "");
		if (r == 1) {
			if (p.mode != c->mode || p.max_age != c->max_age || p.mx_count != c->mx_count)
				fail_msg("case %s: mode %d age %lu mx %zu", c->name, p.mode, p.max_age, p.mx_count);
			if (c->mx0 != NULL && strcmp(p.mx[0], c->mx0) != 0)
				fail_msg("case %s: mx0 %s", c->name, p.mx[0]);
		} else if (err == NULL || p.mx_count != 0) {
			fail_msg("case %s: no error text or not cleared", c->name);
		}
		mta_sts_policy_clear(&p);
	}
}

/* Every prefix of a valid policy parses or fails cleanly (ASan watches), and the whole one parses. */
static void test_policy_prefixes(void **state)
{
	(void)state;
	const char *t = policy_cases[0].text;
	size_t n = strlen(t);
	int ok = 0;
	for (size_t len = 0; len <= n; len++) {
		char *copy = malloc(len + 1); /* exact size: no reading past len */
		memcpy(copy, t, len);
		struct mta_sts_policy p = { 0 };
		const char *err;
		ok += mta_sts_policy_parse(copy, len, &p, &err) == 1;
		mta_sts_policy_clear(&p);
		free(copy);
	}
	/* complete from "max_age: 604800" on (the last field), in all its lengths */
	assert_true(ok >= 7);
	char *big = calloc(1, MTA_STS_MAX_POLICY + 2);
	memset(big, '\n', MTA_STS_MAX_POLICY + 1);
	struct mta_sts_policy p = { 0 };
	const char *err;
	assert_int_equal(mta_sts_policy_parse(big, MTA_STS_MAX_POLICY + 1, &p, &err), -1);
	free(big);
}

/* ------------------------------------------------------------------ MX patterns, TXT */

static void test_mx_match(void **state)
{
	(void)state;
	static const struct {
		const char *pattern, *host;
		bool match;
	} cases[] = {
		{ "mail.example.com", "mail.example.com", true },
		{ "mail.example.com", "MAIL.Example.COM.", true },
		{ "mail.example.com.", "mail.example.com", true },
		{ "mail.example.com", "mail.example.co", false },
		{ "mail.example.com", "xmail.example.com", false },
		{ "*.example.net", "mx1.example.net", true },
		{ "*.example.net", "MX1.EXAMPLE.NET.", true },
		{ "*.example.net", "example.net", false },
		{ "*.example.net", "a.b.example.net", false },
		{ "*.example.net", ".example.net", false },
		{ "*.example.net", "mx1.example.network", false },
		{ "*.example.net", "mx1.xexample.net", false },
		{ "", "", false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (mta_sts_mx_match(cases[i].pattern, cases[i].host) != cases[i].match)
			fail_msg("case %zu: %s vs %s", i, cases[i].pattern, cases[i].host);
	}
	struct mta_sts_policy p = { 0 };
	const char *err;
	const char *t = "version: STSv1\nmode: enforce\nmx: mx.a.test\nmx: *.b.test\nmax_age: 60\n";
	assert_int_equal(mta_sts_policy_parse(t, strlen(t), &p, &err), 1);
	assert_true(mta_sts_policy_allows(&p, "mx.a.test"));
	assert_true(mta_sts_policy_allows(&p, "x.b.test"));
	assert_false(mta_sts_policy_allows(&p, "mx.c.test"));
	struct mta_sts_policy q;
	mta_sts_policy_copy(&q, &p);
	mta_sts_policy_clear(&p);
	assert_true(mta_sts_policy_allows(&q, "x.b.test"));
	mta_sts_policy_clear(&q);
}

static void test_txt_parse(void **state)
{
	(void)state;
	static const struct {
		const char *txt;
		int ret;
		const char *id;
	} cases[] = {
		{ "v=STSv1; id=20160831085700Z;", 1, "20160831085700Z" },
		{ "v=STSv1;id=abc", 1, "abc" },
		{ "v=STSv1; id=abc ; ext=1", 1, "abc" },
		{ "v=STSv1; ext=1; id=x1", 1, "x1" },
		{ "v=spf1 -all", 0, NULL },
		{ "v=STSv10; id=a", 0, NULL },
		{ "v=STSv1", -1, NULL },
		{ "v=STSv1; id=", -1, NULL },
		{ "v=STSv1; id=a-b", -1, NULL },
		{ "v=STSv1; id=123456789012345678901234567890123", -1, NULL },
		{ "v=STSv1; junk", -1, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char id[40] = "";
		int r = mta_sts_txt_parse(cases[i].txt, id, sizeof(id));
		if (r != cases[i].ret || (cases[i].id != NULL && strcmp(id, cases[i].id) != 0))
			fail_msg("case %s: ret %d id %s", cases[i].txt, r, id);
	}
}

/* ------------------------------------------------------------------ DANE */

static void test_tlsa_usable(void **state)
{
	(void)state;
	uint8_t d32[32] = { 1 }, d64[64] = { 2 }, d5[5] = { 3 };
	static const struct {
		uint8_t u, s, m;
		int len; /* 32, 64 or 5 */
		bool usable;
	} cases[] = {
		{ 3, 1, 1, 32, true },  { 3, 0, 1, 32, true },  { 2, 1, 2, 64, true }, { 2, 0, 0, 5, true },
		{ 1, 1, 1, 32, false }, { 0, 0, 1, 32, false }, { 4, 1, 1, 32, false }, { 3, 2, 1, 32, false },
		{ 3, 1, 3, 32, false }, { 3, 1, 1, 64, false }, { 3, 1, 2, 32, false },
	};
	struct dns_tlsa all[sizeof(cases) / sizeof(cases[0])];
	size_t expect = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dns_tlsa t = { cases[i].u, cases[i].s, cases[i].m,
		                      cases[i].len == 32 ? d32 : cases[i].len == 64 ? d64 : d5, (size_t)cases[i].len };
		all[i] = t;
		expect += cases[i].usable;
		if (dane_tlsa_usable(&t) != cases[i].usable)
			fail_msg("case %zu: %u %u %u len %d", i, t.usage, t.selector, t.mtype, cases[i].len);
	}
	assert_int_equal(dane_usable_count(all, sizeof(all) / sizeof(all[0])), expect);
	char text[200];
	struct dns_tlsa t = { 3, 1, 1, d5, 2 };
	dane_tlsa_text(&t, text, sizeof(text));
	assert_string_equal(text, "3 1 1 0300");
}

static EVP_PKEY *make_key(void)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(k);
	return k;
}

static X509 *make_cert(EVP_PKEY *key, EVP_PKEY *signer, const char *cn, const char *issuer_cn, bool ca)
{
	X509 *x = X509_new();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), ca ? 1 : 2);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_NAME *in = X509_NAME_new();
	X509_NAME_add_entry_by_txt(in, "CN", MBSTRING_ASC, (const unsigned char *)issuer_cn, -1, -1, 0);
	X509_set_issuer_name(x, in);
	X509_NAME_free(in);
	if (ca) {
		X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
	return x;
}

/* SHA-256 of the SubjectPublicKeyInfo (selector 1, matching type 1) or of the whole cert (0, 1). */
static void cert_digest(X509 *x, int selector, uint8_t out[32])
{
	unsigned char *der = NULL;
	int len = selector == 1 ? i2d_PUBKEY(X509_get0_pubkey(x), &der) : i2d_X509(x, &der);
	assert_true(len > 0);
	SHA256(der, (size_t)len, out);
	OPENSSL_free(der);
}

/*
 * Client armed with tlsa against a server presenting leaf (+ chain ca). Returns the verify
 * result (X509_V_OK on success); *armed_r what dane_arm returned; *done_r handshake completed.
 */
static long handshake(X509 *leaf, EVP_PKEY *leaf_key, X509 *ca, const struct dns_tlsa *tlsa, size_t n,
                      const char *host, const char *domain, int *armed_r, bool *done_r)
{
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	assert_int_equal(SSL_CTX_use_certificate(sctx, leaf), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(sctx, leaf_key), 1);
	if (ca != NULL) {
		X509_up_ref(ca);
		SSL_CTX_add_extra_chain_cert(sctx, ca);
	}
	SSL *srv = SSL_new(sctx), *cli = SSL_new(cctx);
	BIO *b1, *b2;
	assert_int_equal(BIO_new_bio_pair(&b1, 0, &b2, 0), 1);
	SSL_set_bio(srv, b1, b1);
	SSL_set_bio(cli, b2, b2);
	SSL_set_accept_state(srv);
	SSL_set_connect_state(cli);
	const char *err = NULL;
	*armed_r = dane_arm(cli, host, domain, tlsa, n, &err);
	bool cdone = false, sdone = false, failed = false;
	for (int i = 0; i < 50 && !(cdone && sdone) && !failed; i++) {
		if (!cdone) {
			int r = SSL_do_handshake(cli);
			if (r == 1)
				cdone = true;
			else if (SSL_get_error(cli, r) != SSL_ERROR_WANT_READ && SSL_get_error(cli, r) != SSL_ERROR_WANT_WRITE)
				failed = true;
		}
		if (!sdone && !failed) {
			int r = SSL_do_handshake(srv);
			if (r == 1)
				sdone = true;
			else if (SSL_get_error(srv, r) != SSL_ERROR_WANT_READ && SSL_get_error(srv, r) != SSL_ERROR_WANT_WRITE)
				failed = true;
		}
	}
	*done_r = cdone && !failed;
	long v = SSL_get_verify_result(cli);
	SSL_free(cli);
	SSL_free(srv);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	return v;
}

static void test_dane_handshake(void **state)
{
	(void)state;
	EVP_PKEY *ca_key = make_key(), *leaf_key = make_key(), *other_key = make_key();
	X509 *ca = make_cert(ca_key, ca_key, "Test CA", "Test CA", true);
	X509 *leaf = make_cert(leaf_key, ca_key, "mx.dane.test", "Test CA", false);
	X509 *selfsigned = make_cert(leaf_key, leaf_key, "not-the-name.test", "not-the-name.test", false);
	X509 *other = make_cert(other_key, other_key, "mx.dane.test", "mx.dane.test", false);
	uint8_t spki[32], full[32], ca_spki[32], wrong[32];
	cert_digest(leaf, 1, spki);
	cert_digest(leaf, 0, full);
	cert_digest(ca, 1, ca_spki);
	memcpy(wrong, spki, 32);
	wrong[0] ^= 0xff;

	static const char *const names[] = { "3 1 1", "3 0 1", "3 1 1 wrong", "2 1 1 (CA)", "2 1 1 wrong CA name",
	                                     "1 1 1 only (PKIX: unusable)", "wrong + right", "3 1 1 other key",
	                                     "3 1 1 self-signed, other name", "2 1 1 CA, name is the next-hop domain" };
	struct dns_tlsa sets[][2] = {
		{ { 3, 1, 1, spki, 32 } },
		{ { 3, 0, 1, full, 32 } },
		{ { 3, 1, 1, wrong, 32 } },
		{ { 2, 1, 1, ca_spki, 32 } },
		{ { 2, 1, 1, ca_spki, 32 } },
		{ { 1, 1, 1, spki, 32 } },
		{ { 3, 1, 1, wrong, 32 }, { 3, 1, 1, spki, 32 } },
		{ { 3, 1, 1, spki, 32 } },
		{ { 3, 1, 1, spki, 32 } },
		{ { 2, 1, 1, ca_spki, 32 } },
	};
	static const size_t counts[] = { 1, 1, 1, 1, 1, 1, 2, 1, 1, 1 };
	X509 *leaves[] = { leaf, leaf, leaf, leaf, leaf, leaf, leaf, other, selfsigned, leaf };
	EVP_PKEY *keys[] = { leaf_key, leaf_key, leaf_key, leaf_key,  leaf_key,
	                     leaf_key, leaf_key, other_key, leaf_key, leaf_key };
	X509 *chains[] = { NULL, NULL, NULL, ca, ca, NULL, NULL, NULL, NULL, ca };
	const char *hosts[] = { "mx.dane.test", "mx.dane.test", "mx.dane.test", "mx.dane.test", "other.dane.test",
	                        "mx.dane.test", "mx.dane.test", "mx.dane.test", "mx.dane.test", "mx9.other.test" };
	const char *domains[] = { NULL, NULL, NULL, NULL, "x.dane.test", NULL, NULL, NULL, NULL, "mx.dane.test" };
	static const int want_armed[] = { 1, 1, 1, 1, 1, 0, 2, 1, 1, 1 };
	static const bool want_ok[] = { true, true, false, true, false, false, true, false, true, true };
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		int armed;
		bool done;
		long v = handshake(leaves[i], keys[i], chains[i], sets[i], counts[i], hosts[i], domains[i], &armed, &done);
		if (armed != want_armed[i])
			fail_msg("case %s: armed %d", names[i], armed);
		if (armed > 0 && (done != want_ok[i] || (v == X509_V_OK) != want_ok[i]))
			fail_msg("case %s: done %d verify %ld (%s)", names[i], done, v, X509_verify_cert_error_string(v));
		if (armed > 0 && !want_ok[i] && strcmp(tlsrpt_result_for_verify(v), "") == 0)
			fail_msg("case %s: no result type", names[i]);
	}
	X509_free(ca);
	X509_free(leaf);
	X509_free(selfsigned);
	X509_free(other);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(leaf_key);
	EVP_PKEY_free(other_key);
}

/* ------------------------------------------------------------------ TLS-RPT */

static void test_tlsrpt(void **state)
{
	(void)state;
	char dir[] = "/tmp/mr-test-tlsrpt-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char sub[256];
	snprintf(sub, sizeof(sub), "%s/tlsrpt", dir);
	assert_int_equal(tlsrpt_record(sub, "tlsa", "dane.test", "mx.dane.test", "192.0.2.1", "validation-failure",
	                               "bad \"quote\"\n\xff", "Q1"), 1);
	assert_int_equal(tlsrpt_record(sub, "sts", "sts.test", NULL, NULL, "sts-policy-fetch-error", "x", NULL), 1);
	assert_int_equal(tlsrpt_record(NULL, "sts", "a", NULL, NULL, "x", NULL, NULL), 1);
	char day[16], path[400];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(day, sizeof(day), "%Y-%m-%d", &tm);
	snprintf(path, sizeof(path), "%s/%s.jsonl", sub, day);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[2000];
	int n = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		json_error_t e;
		json_t *o = json_loads(line, 0, &e);
		if (o == NULL)
			fail_msg("line %d not JSON: %s", n, line);
		if (n == 0) {
			assert_string_equal(json_string_value(json_object_get(o, "policy_type")), "tlsa");
			assert_string_equal(json_string_value(json_object_get(o, "receiving_mx_hostname")), "mx.dane.test");
			assert_string_equal(json_string_value(json_object_get(o, "result_type")), "validation-failure");
			assert_string_equal(json_string_value(json_object_get(o, "failure_reason")), "bad \"quote\"??");
		} else {
			assert_null(json_object_get(o, "receiving_mx_hostname"));
			assert_string_equal(json_string_value(json_object_get(o, "policy_domain")), "sts.test");
		}
		json_decref(o);
		n++;
	}
	fclose(f);
	assert_int_equal(n, 2);
	assert_string_equal(tlsrpt_result_for_verify(X509_V_ERR_HOSTNAME_MISMATCH), "certificate-host-mismatch");
	assert_string_equal(tlsrpt_result_for_verify(X509_V_ERR_CERT_HAS_EXPIRED), "certificate-expired");
	assert_string_equal(tlsrpt_result_for_verify(X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT), "certificate-not-trusted");
	assert_string_equal(tlsrpt_result_for_verify(X509_V_ERR_DANE_NO_MATCH), "validation-failure");
	unlink(path);
	rmdir(sub);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_parse), cmocka_unit_test(test_policy_prefixes),
		cmocka_unit_test(test_mx_match),     cmocka_unit_test(test_txt_parse),
		cmocka_unit_test(test_tlsa_usable),  cmocka_unit_test(test_dane_handshake),
		cmocka_unit_test(test_tlsrpt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
