/*
 * test-dkim: the DKIM verification vectors (/work/shared/corpora/dkim/
 * verify-vectors.json: RFC 6376 + RFC 8301 + RFC 8463 accepted results), the
 * RFC 6376 canonicalization example, tag-list cases (with a trickle test),
 * sign/verify round trips with RSA and Ed25519, and the limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "lib-auth/dkim.h"
#include "lib-auth/testzone.h"
#include "lib/xalloc.h"

static const char *shared_dir(void)
{
	const char *d = getenv("MR_SHARED_DIR");
	return d != NULL ? d : "../shared";
}

static char *read_file(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	struct buf b;
	buf_init(&b, 16 * 1024 * 1024);
	char tmp[8192];
	size_t n;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_append(&b, tmp, n);
	fclose(f);
	*len_r = b.len;
	char *s = buf_steal(&b);
	buf_deinit(&b);
	return s;
}

static void zone_from_set(struct testzone *z, json_t *set)
{
	const char *name;
	json_t *val;
	json_object_foreach(set, name, val) {
		if (json_is_string(val)) {
			const char *s = json_string_value(val);
			if (strcmp(s, "TIMEOUT") == 0 || strcmp(s, "SERVFAIL") == 0)
				testzone_add(z, name, "TIMEOUT", NULL, 0, 0);
			else
				testzone_add(z, name, "TXT", s, strlen(s), 0);
		} else if (json_is_array(val)) {
			size_t i;
			json_t *e;
			json_array_foreach(val, i, e) {
				const char *s = json_string_value(e);
				testzone_add(z, name, "TXT", s, strlen(s), 0);
			}
		}
	}
}

static void test_vectors(void **state)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/corpora/dkim/verify-vectors.json", shared_dir());
	json_error_t jerr;
	json_t *root = json_load_file(path, 0, &jerr);
	assert_non_null(root);
	json_t *sets = json_object_get(root, "dns_sets");
	int passed = 0, failed = 0, skipped = 0, dk_failed = 0;
	size_t vi;
	json_t *v;
	json_array_foreach(json_object_get(root, "vectors"), vi, v) {
		const char *id = json_string_value(json_object_get(v, "id"));
		if (json_object_get(v, "skip") != NULL) {
			skipped++;
			continue;
		}
		snprintf(path, sizeof(path), "%s/corpora/dkim/%s", shared_dir(),
			 json_string_value(json_object_get(v, "msg")));
		size_t len;
		char *msg = read_file(path, &len);
		assert_non_null(msg);
		struct testzone *z = testzone_new();
		zone_from_set(z, json_object_get(sets, json_string_value(json_object_get(v, "dns"))));
		struct authdns dns;
		testzone_authdns(z, &dns);
		struct dkim_verify_result r;
		dkim_verify(msg, len, &dns, NULL, &r);
		bool ok = false;
		size_t ai;
		json_t *a;
		json_array_foreach(json_object_get(v, "accept"), ai, a) {
			if (strcmp(json_string_value(a), dkim_result_name(r.result)) == 0)
				ok = true;
		}
		json_t *per = json_object_get(v, "per_signature");
		if (ok && per != NULL) {
			if (json_array_size(per) != r.count)
				ok = false;
			for (size_t k = 0; ok && k < r.count; k++)
				if (strcmp(json_string_value(json_array_get(per, k)),
					   dkim_result_name(r.sigs[k].result)) != 0)
					ok = false;
		}
		if (ok) {
			passed++;
		} else if (json_is_true(json_object_get(v, "domainkeys")) && r.count == 0) {
			dk_failed++;
		} else {
			failed++;
			fprintf(stderr, "FAIL %s: got %s", id, dkim_result_name(r.result));
			for (size_t k = 0; k < r.count; k++)
				fprintf(stderr, " [%s %s]", dkim_result_name(r.sigs[k].result),
					r.sigs[k].problem ? r.sigs[k].problem : "");
			fprintf(stderr, "\n");
		}
		dkim_verify_result_free(&r);
		testzone_free(&z);
		free(msg);
	}
	json_decref(root);
	printf("DKIM verify vectors: %d passed, %d failed, %d DomainKeys-only (not implemented), %d skipped (no DNS data)\n",
	       passed, failed, dk_failed, skipped);
	assert_int_equal(failed, 0);
	assert_true(passed >= 70);
}

static void test_canon_example(void **state)
{
	char path[1024];
	static const char *const names[4] = {
		"simple-header", "relaxed-header", "simple-body", "relaxed-body",
	};
	snprintf(path, sizeof(path), "%s/corpora/dkim/rfc6376/canon-example.eml", shared_dir());
	size_t len;
	char *msg = read_file(path, &len);
	assert_non_null(msg);
	struct dkim_msg m;
	const char *err;
	assert_int_equal(dkim_msg_parse(msg, len, &m, &err), 1);
	assert_int_equal(m.nhdrs, 2);
	for (int k = 0; k < 4; k++) {
		struct buf b;
		buf_init(&b, 4096);
		bool relaxed = k % 2 == 1;
		if (k < 2) {
			for (size_t i = 0; i < m.nhdrs; i++)
				assert_int_equal(dkim_canon_header(&b, m.hdrs[i].raw, m.hdrs[i].raw_len, relaxed), 0);
		} else {
			assert_int_equal(dkim_canon_body(&b, m.body, m.body_len, relaxed), 0);
		}
		snprintf(path, sizeof(path), "%s/corpora/dkim/rfc6376/canon-example.%s.bin", shared_dir(), names[k]);
		size_t elen;
		char *exp = read_file(path, &elen);
		assert_non_null(exp);
		if (elen != b.len || memcmp(exp, b.data, elen) != 0)
			fail_msg("canonicalization %s differs", names[k]);
		free(exp);
		buf_deinit(&b);
	}
	/* empty body: simple gives CRLF, relaxed gives nothing */
	struct buf b;
	buf_init(&b, 64);
	assert_int_equal(dkim_canon_body(&b, "", 0, false), 0);
	assert_string_equal(b.data, "\r\n");
	buf_reset(&b);
	assert_int_equal(dkim_canon_body(&b, "\r\n\r\n", 4, true), 0);
	assert_int_equal(b.len, 0);
	/* table of small bodies */
	static const struct {
		const char *in;
		bool relaxed;
		const char *out;
	} bodies[] = {
		{ "abc\r\n   ", true, "abc\r\n" },
		{ "abc\r\n   ", false, "abc\r\n   \r\n" },
		{ "a \t b \t\r\n\r\n\r\nc\r\n\r\n", true, "a b\r\n\r\n\r\nc\r\n" },
		{ "a \t b \t\r\n\r\n", false, "a \t b \t\r\n" },
		{ "x\ry\r\n", false, "x\ry\r\n" },
		{ "no-newline", true, "no-newline\r\n" },
		{ " \r\n \r\n", true, "" },
		{ " \r\n \r\n", false, " \r\n \r\n" },
	};
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		buf_reset(&b);
		assert_int_equal(dkim_canon_body(&b, bodies[i].in, strlen(bodies[i].in), bodies[i].relaxed), 0);
		if (strcmp(b.data, bodies[i].out) != 0)
			fail_msg("body case %zu", i);
	}
	buf_deinit(&b);
	dkim_msg_free(&m);
	free(msg);
}

struct tag_case {
	const char *in;
	int ret;
	size_t count;
	const char *name0, *value0;
};

static const struct tag_case tag_cases[] = {
	{ .in = "v=1; a=rsa-sha256", .ret = 1, .count = 2, .name0 = "v", .value0 = "1" },
	{ .in = " v = 1 ;", .ret = 1, .count = 1, .name0 = "v", .value0 = "1" },
	{ .in = "b=abc\r\n def ; d=x", .ret = 1, .count = 2, .name0 = "b", .value0 = "abc\r\n def" },
	{ .in = "", .ret = 1, .count = 0 },
	{ .in = "v=", .ret = 1, .count = 1, .name0 = "v", .value0 = "" },
	{ .in = "v=1; v=2", .ret = -1 },
	{ .in = "=1", .ret = -1 },
	{ .in = "v", .ret = -1 },
	{ .in = "1a=b", .ret = -1 },
	{ .in = "a_b=c", .ret = 1, .count = 1, .name0 = "a_b", .value0 = "c" },
};

/* RFC 8463 A.3: Ed25519 signatures are deterministic, so signing the
   example's hash input with the example key must give the printed b=. */
static void test_rfc8463_sign(void **state)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/corpora/dkim/rfc8463/signed.eml", shared_dir());
	size_t len, klen;
	char *msg = read_file(path, &len);
	assert_non_null(msg);
	snprintf(path, sizeof(path), "%s/corpora/dkim/rfc8463/ed25519.private.b64", shared_dir());
	char *kb64 = read_file(path, &klen);
	assert_non_null(kb64);
	size_t seedlen;
	unsigned char *seed = dkim_base64_decode(kb64, klen, &seedlen);
	assert_non_null(seed);
	assert_int_equal(seedlen, 32);
	EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, seedlen);
	assert_non_null(key);
	struct dkim_msg m;
	const char *err;
	assert_int_equal(dkim_msg_parse(msg, len, &m, &err), 1);
	const char *colon = memchr(m.hdrs[0].raw, ':', m.hdrs[0].raw_len);
	struct dkim_taglist tl;
	assert_int_equal(dkim_taglist_parse(colon + 1, m.hdrs[0].raw_len - (size_t)(colon + 1 - m.hdrs[0].raw), &tl, &err), 1);
	assert_string_equal(dkim_taglist_get(&tl, "a"), "ed25519-sha256");
	struct buf data;
	buf_init(&data, 1 << 20);
	assert_int_equal(dkim_header_hash_input(&m, 0, dkim_taglist_get(&tl, "h"), true, &data), 0);
	char *b64;
	assert_int_equal(dkim_crypto_sign(key, true, data.data, data.len, &b64), 1);
	char expect[256];
	size_t o = 0;
	for (const char *p = dkim_taglist_get(&tl, "b"); *p != '\0' && o < sizeof(expect) - 1; p++)
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			expect[o++] = *p;
	expect[o] = '\0';
	assert_string_equal(b64, expect);
	free(b64);
	buf_deinit(&data);
	dkim_taglist_free(&tl);
	dkim_msg_free(&m);
	EVP_PKEY_free(key);
	free(seed);
	free(kb64);
	free(msg);
}

static void test_taglist(void **state)
{
	for (size_t i = 0; i < sizeof(tag_cases) / sizeof(tag_cases[0]); i++) {
		const struct tag_case *c = &tag_cases[i];
		struct dkim_taglist tl;
		const char *err;
		int r = dkim_taglist_parse(c->in, strlen(c->in), &tl, &err);
		if (r != c->ret)
			fail_msg("tag case %zu: got %d", i, r);
		if (r == 1) {
			assert_int_equal(tl.count, c->count);
			if (c->count > 0) {
				assert_string_equal(tl.tags[0].name, c->name0);
				assert_string_equal(tl.tags[0].value, c->value0);
			}
		}
		dkim_taglist_free(&tl);
	}
	/* trickle: every prefix of a valid list parses or fails cleanly */
	const char *full = "v=1; a=rsa-sha256; d=example.com; s=sel; h=from:to; bh=YWJj; b=ZGVm";
	for (size_t n = 0; n <= strlen(full); n++) {
		struct dkim_taglist tl;
		const char *err;
		int r = dkim_taglist_parse(full, n, &tl, &err);
		assert_true(r == 1 || r == -1);
		dkim_taglist_free(&tl);
	}
	/* too many tags */
	struct buf b;
	buf_init(&b, 4096);
	for (int i = 0; i < DKIM_MAX_TAGS + 1; i++)
		buf_printf(&b, "t%d=x;", i);
	struct dkim_taglist tl;
	const char *err;
	assert_int_equal(dkim_taglist_parse(b.data, b.len, &tl, &err), -1);
	dkim_taglist_free(&tl);
	buf_deinit(&b);
}

static void test_msg_prefixes(void **state)
{
	const char *full = "From: a@example.com\r\nSubject: x\r\n y\r\nTo: b@example.com\r\n\r\nbody\r\n";
	for (size_t n = 0; n <= strlen(full); n++) {
		struct dkim_msg m;
		const char *err;
		int r = dkim_msg_parse(full, n, &m, &err);
		assert_true(r == 1 || r == -1);
		dkim_msg_free(&m);
	}
	struct dkim_msg m;
	const char *err;
	assert_int_equal(dkim_msg_parse(full, strlen(full), &m, &err), 1);
	assert_int_equal(m.nhdrs, 3);
	assert_int_equal(m.hdrs[1].raw_len, strlen("Subject: x\r\n y\r\n"));
	assert_int_equal(m.body_len, 6);
	dkim_msg_free(&m);
	assert_int_equal(dkim_msg_parse("no colon\r\n\r\n", 12, &m, &err), -1);
	dkim_msg_free(&m);
}

static const char test_msg[] =
	"From: Joe SixPack <joe@football.example.com>\r\n"
	"To: Suzie Q <suzie@shopping.example.net>\r\n"
	"Subject: Is dinner ready?\r\n"
	"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
	"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
	"\r\n"
	"Hi.\r\n"
	"\r\n"
	"We lost the game.  Are you hungry yet?\r\n"
	"\r\n"
	"Joe.\r\n";

static void roundtrip(const char *type)
{
	char *pem, *txt;
	const char *err;
	assert_int_equal(dkim_keygen(type, &pem, &txt, &err), 1);
	struct testzone *z = testzone_new();
	testzone_add(z, "sel._domainkey.football.example.com", "TXT", txt, strlen(txt), 0);
	struct authdns dns;
	testzone_authdns(z, &dns);
	struct dkim_sign_options so = {
		.domain = "football.example.com", .selector = "sel", .key_pem = pem,
	};
	char *hdr;
	assert_int_equal(dkim_sign(test_msg, strlen(test_msg), &so, &hdr, &err), 1);
	char *signed_msg = xasprintf("%s%s", hdr, test_msg);
	struct dkim_verify_result r;
	assert_int_equal(dkim_verify(signed_msg, strlen(signed_msg), &dns, NULL, &r), 1);
	assert_int_equal(r.count, 1);
	if (r.result != DKIM_RESULT_PASS)
		fail_msg("%s roundtrip: %s %s", type, dkim_result_name(r.result), r.sigs[0].problem);
	assert_string_equal(r.sigs[0].domain, "football.example.com");
	dkim_verify_result_free(&r);
	/* a changed body fails, an added From fails (From is oversigned) */
	char *tampered = xasprintf("%s%s", hdr, test_msg);
	char *p = strstr(tampered, "hungry");
	p[0] = 'H';
	dkim_verify(tampered, strlen(tampered), &dns, NULL, &r);
	assert_int_equal(r.result, DKIM_RESULT_FAIL);
	dkim_verify_result_free(&r);
	char *twofrom = xasprintf("%sFrom: evil@example.org\r\n%s", hdr, test_msg);
	dkim_verify(twofrom, strlen(twofrom), &dns, NULL, &r);
	assert_int_equal(r.result, DKIM_RESULT_FAIL);
	dkim_verify_result_free(&r);
	/* LF-only line ends verify the same */
	struct buf lf;
	buf_init(&lf, 1 << 20);
	for (const char *q = signed_msg; *q != '\0'; q++)
		if (*q != '\r')
			buf_append_c(&lf, *q);
	dkim_verify(lf.data, lf.len, &dns, NULL, &r);
	assert_int_equal(r.result, DKIM_RESULT_PASS);
	dkim_verify_result_free(&r);
	buf_deinit(&lf);
	free(tampered);
	free(twofrom);
	free(signed_msg);
	free(hdr);
	free(pem);
	free(txt);
	testzone_free(&z);
}

static void test_roundtrip_rsa(void **state)
{
	roundtrip("rsa");
}

static void test_roundtrip_ed25519(void **state)
{
	roundtrip("ed25519");
}

static void test_limits(void **state)
{
	struct testzone *z = testzone_new();
	struct authdns dns;
	testzone_authdns(z, &dns);
	struct dkim_verify_result r;
	/* many signatures: only DKIM_MAX_SIGNATURES evaluated */
	struct buf b;
	buf_init(&b, 1 << 20);
	for (int i = 0; i < 30; i++)
		buf_printf(&b, "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s%d; h=from; bh=YQ==; b=YQ==\r\n", i);
	buf_append_str(&b, "From: a@example.com\r\n\r\nbody\r\n");
	assert_int_equal(dkim_verify(b.data, b.len, &dns, NULL, &r), 1);
	assert_int_equal(r.count, 30);
	assert_int_equal(r.result, DKIM_RESULT_PERMERROR);
	assert_string_equal(r.sigs[29].problem, "too many signatures");
	assert_true(testzone_queries(z) <= DKIM_MAX_SIGNATURES);
	dkim_verify_result_free(&r);
	/* malformed signatures and keys */
	static const char *const bad[] = {
		"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s; h=to; bh=YQ==; b=YQ==\r\n",
		"DKIM-Signature: v=2; a=rsa-sha256; d=example.com; s=s; h=from; bh=YQ==; b=YQ==\r\n",
		"DKIM-Signature: v=1; a=rsa-sha1; d=example.com; s=s; h=from; bh=YQ==; b=YQ==\r\n",
		"DKIM-Signature: v=1; a=rsa-sha256; d=exa(mple.com; s=s; h=from; bh=YQ==; b=YQ==\r\n",
		"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s; h=from; bh=Y!Q==; b=YQ==\r\n",
		"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s; h=from; bh=YQ==; b=YQ==; i=@other.com\r\n",
		"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s; h=from; bh=YQ==; b=YQ==; x=5\r\n",
		"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=nokey; h=from; bh=YQ==; b=YQ==\r\n",
		"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=badkey; h=from; bh=YQ==; b=YQ==\r\n",
		"DKIM-Signature: v=1; a=ed25519-sha256; d=example.com; s=badkey; h=from; bh=YQ==; b=YQ==\r\n",
		"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=revoked; h=from; bh=YQ==; b=YQ==\r\n",
		"DKIM-Signature: v=1; v=1; a=rsa-sha256\r\n",
		"DKIM-Signature: \r\n",
	};
	testzone_add(z, "badkey._domainkey.example.com", "TXT", "v=DKIM1; p=AAAA", 15, 0);
	testzone_add(z, "revoked._domainkey.example.com", "TXT", "v=DKIM1; p=", 11, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *msg = xasprintf("%sFrom: a@example.com\r\n\r\nbody\r\n", bad[i]);
		dkim_verify(msg, strlen(msg), &dns, NULL, &r);
		if (r.result != DKIM_RESULT_PERMERROR)
			fail_msg("bad case %zu: %s", i, dkim_result_name(r.result));
		dkim_verify_result_free(&r);
		free(msg);
	}
	/* no signature */
	dkim_verify("From: a@b\r\n\r\n", 13, &dns, NULL, &r);
	assert_int_equal(r.result, DKIM_RESULT_NONE);
	dkim_verify_result_free(&r);
	/* temperror */
	testzone_add(z, "t._domainkey.example.com", "TIMEOUT", NULL, 0, 0);
	const char *tm = "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=t; h=from; bh=YQ==; b=YQ==\r\nFrom: a@example.com\r\n\r\n";
	dkim_verify(tm, strlen(tm), &dns, NULL, &r);
	assert_int_equal(r.result, DKIM_RESULT_TEMPERROR);
	dkim_verify_result_free(&r);
	buf_deinit(&b);
	testzone_free(&z);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_canon_example),
		cmocka_unit_test(test_rfc8463_sign),
		cmocka_unit_test(test_taglist),
		cmocka_unit_test(test_msg_prefixes),
		cmocka_unit_test(test_roundtrip_rsa),
		cmocka_unit_test(test_roundtrip_ed25519),
		cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
