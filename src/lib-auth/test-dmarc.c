/*
 * test-dmarc: OpenDMARC's record-parse, alignment and From-domain tables
 * (/work/shared/corpora/dmarc/opendmarc-test-tables.json), the Public Suffix
 * List test vectors (test_psl.tsv) for the organizational domain, and policy
 * discovery/evaluation over a zone with an injected pct random source.
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

#include "lib-auth/dmarc.h"
#include "lib-auth/testzone.h"
#include "lib/xalloc.h"

static const char *shared_dir(void)
{
	const char *d = getenv("MR_SHARED_DIR");
	return d != NULL ? d : "../shared";
}

static json_t *tables(void)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/corpora/dmarc/opendmarc-test-tables.json", shared_dir());
	json_error_t e;
	json_t *root = json_load_file(path, 0, &e);
	assert_non_null(root);
	return root;
}

static const char *status_name(int rc, const char *err)
{
	if (rc == 1)
		return "OKAY";
	if (strcmp(err, "empty") == 0)
		return "ERROR_EMPTY";
	if (strcmp(err, "bad version") == 0)
		return "ERROR_BAD_VERSION";
	if (strcmp(err, "no p=") == 0)
		return "ERROR_NO_REQUIRED_P";
	return "ERROR_BAD_VALUE";
}

static void test_record_table(void **state)
{
	json_t *root = tables();
	size_t i;
	json_t *c;
	int pass = 0, fail = 0;
	json_array_foreach(json_object_get(json_object_get(root, "dmarc_record_parse"), "cases"), i, c) {
		const char *rec = json_string_value(json_array_get(c, 0));
		const char *exp = json_string_value(json_array_get(c, 1));
		struct dmarc_record r;
		const char *err = "";
		int rc = dmarc_record_parse(rec, strlen(rec), &r, &err);
		const char *got = status_name(rc, err);
		if (strcmp(got, exp) == 0) {
			pass++;
		} else {
			fail++;
			/* the one known deviation: OpenDMARC accepts the abbreviation p=n */
			if (strcmp(rec, "v=DMARC1; p=n;") != 0)
				fail_msg("record '%s': got %s want %s", rec, got, exp);
		}
		if (rc == 1)
			dmarc_record_free(&r);
	}
	printf("DMARC record-parse table: %d passed, %d failed (p=n: RFC 7489 has no abbreviations)\n", pass, fail);
	assert_true(pass >= 18);
	json_decref(root);
}

static void test_record_fields(void **state)
{
	const char *rec = "v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=r; pct=20; "
			  "rua=mailto:a@example.com!10m, mailto:b@example.com; ruf=mailto:f@example.com; fo=1:d; ri=3600";
	struct dmarc_record r;
	const char *err;
	assert_int_equal(dmarc_record_parse(rec, strlen(rec), &r, &err), 1);
	assert_int_equal(r.p, DMARC_POLICY_REJECT);
	assert_int_equal(r.sp, DMARC_POLICY_QUARANTINE);
	assert_true(r.adkim_strict);
	assert_false(r.aspf_strict);
	assert_int_equal(r.pct, 20);
	assert_int_equal(r.rua_count, 2);
	assert_string_equal(r.rua[0], "mailto:a@example.com!10m");
	assert_int_equal(r.ruf_count, 1);
	assert_string_equal(r.fo, "1:d");
	assert_int_equal(r.ri, 3600);
	dmarc_record_free(&r);
	/* no p= but a valid rua=: p=none (RFC 7489 6.6.3) */
	rec = "v=DMARC1; rua=mailto:a@example.com";
	assert_int_equal(dmarc_record_parse(rec, strlen(rec), &r, &err), 1);
	assert_int_equal(r.p, DMARC_POLICY_NONE);
	assert_true(r.p_implied);
	dmarc_record_free(&r);
	/* v= must come first */
	rec = "p=none; v=DMARC1";
	assert_int_equal(dmarc_record_parse(rec, strlen(rec), &r, &err), -1);
	/* trickle: every prefix parses or fails cleanly */
	const char *full = "v=DMARC1; p=quarantine; pct=50; rua=mailto:x@example.com";
	for (size_t n = 0; n <= strlen(full); n++) {
		int rc = dmarc_record_parse(full, n, &r, &err);
		assert_true(rc == 1 || rc == -1);
		if (rc == 1)
			dmarc_record_free(&r);
	}
}

static void test_alignment_table(void **state)
{
	json_t *root = tables();
	size_t i;
	json_t *c;
	int n = 0;
	json_array_foreach(json_object_get(json_object_get(root, "alignment"), "cases"), i, c) {
		const char *a = json_string_value(json_array_get(c, 0));
		const char *b = json_string_value(json_array_get(c, 1));
		bool strict = strcmp(json_string_value(json_array_get(c, 2)), "strict") == 0;
		bool exp = json_integer_value(json_array_get(c, 3)) == 0;
		if (dmarc_aligned(a, b, strict) != exp)
			fail_msg("alignment %s %s %s", a, b, strict ? "strict" : "relaxed");
		n++;
	}
	printf("DMARC alignment table: %d passed\n", n);
	n = 0;
	json_array_foreach(json_object_get(json_object_get(root, "from_header_domain"), "cases"), i, c) {
		const char *in = json_string_value(json_array_get(c, 0));
		const char *exp = json_string_value(json_array_get(c, 1));
		char *d = dmarc_from_domain(in, NULL);
		if (d == NULL || strcmp(d, exp) != 0)
			fail_msg("from domain of '%s': got %s want %s", in, d ? d : "(null)", exp);
		free(d);
		n++;
	}
	printf("DMARC From-domain table: %d passed\n", n);
	/* org domain with OpenDMARC's 2012 list: reported only (the PSL changed) */
	int op = 0, of = 0;
	json_array_foreach(json_object_get(json_object_get(root, "org_domain_with_psl"), "cases"), i, c) {
		char *d = dmarc_org_domain(json_string_value(json_array_get(c, 0)));
		if (d != NULL && strcmp(d, json_string_value(json_array_get(c, 1))) == 0)
			op++;
		else
			of++;
		free(d);
	}
	printf("DMARC org-domain table (2012 PSL, report only): %d passed, %d differ\n", op, of);
	json_decref(root);
}

static void test_psl_vectors(void **state)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/corpora/dmarc/test_psl.tsv", shared_dir());
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[512];
	int pass = 0, fail = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (line[0] == '#')
			continue;
		line[strcspn(line, "\r\n")] = '\0';
		char *tab = strchr(line, '\t');
		if (tab == NULL)
			continue;
		*tab = '\0';
		const char *exp = tab + 1;
		char *d = dmarc_registrable_domain(line);
		bool ok = strcmp(exp, "-") == 0 ? d == NULL : d != NULL && strcmp(d, exp) == 0;
		if (ok) {
			pass++;
		} else {
			fail++;
			fprintf(stderr, "PSL %s: got %s want %s\n", line, d ? d : "(null)", exp);
		}
		free(d);
	}
	fclose(f);
	printf("PSL vectors: %d passed, %d failed\n", pass, fail);
	assert_int_equal(fail, 0);
	assert_true(pass > 60);
}

static unsigned fixed_random(void *ctx)
{
	return *(unsigned *)ctx;
}

struct eval_case {
	const char *from;
	const char *spf_domain;
	enum spf_result spf;
	const char *dkim_domain;
	enum dkim_result dkim;
	unsigned rnd;
	enum dmarc_result result;
	enum dmarc_policy disposition;
	const char *record_domain;
};

static const struct eval_case eval_cases[] = {
	/* relaxed SPF alignment through the org domain */
	{ "example.com", "bounce.example.com", SPF_RESULT_PASS, NULL, 0, 0, DMARC_RESULT_PASS, DMARC_POLICY_NONE, "example.com" },
	/* SPF pass but unaligned, DKIM aligned */
	{ "example.com", "other.net", SPF_RESULT_PASS, "mail.example.com", DKIM_RESULT_PASS, 0, DMARC_RESULT_PASS, DMARC_POLICY_NONE, "example.com" },
	/* nothing aligned: p=reject */
	{ "example.com", "other.net", SPF_RESULT_PASS, "other.net", DKIM_RESULT_PASS, 0, DMARC_RESULT_FAIL, DMARC_POLICY_REJECT, "example.com" },
	/* aligned DKIM that failed does not count */
	{ "example.com", NULL, SPF_RESULT_NONE, "example.com", DKIM_RESULT_FAIL, 0, DMARC_RESULT_FAIL, DMARC_POLICY_REJECT, "example.com" },
	/* subdomain without its own record: org record's sp= */
	{ "sub.example.com", NULL, SPF_RESULT_NONE, NULL, 0, 0, DMARC_RESULT_FAIL, DMARC_POLICY_QUARANTINE, "example.com" },
	/* strict adkim/aspf */
	{ "strict.example.org", "x.strict.example.org", SPF_RESULT_PASS, "x.strict.example.org", DKIM_RESULT_PASS, 0, DMARC_RESULT_FAIL, DMARC_POLICY_REJECT, "strict.example.org" },
	{ "strict.example.org", "strict.example.org", SPF_RESULT_PASS, NULL, 0, 0, DMARC_RESULT_PASS, DMARC_POLICY_NONE, "strict.example.org" },
	/* pct=50: sampled in (r < 50) reject, sampled out quarantine */
	{ "pct.example.net", NULL, SPF_RESULT_FAIL, NULL, 0, 49, DMARC_RESULT_FAIL, DMARC_POLICY_REJECT, "pct.example.net" },
	{ "pct.example.net", NULL, SPF_RESULT_FAIL, NULL, 0, 50, DMARC_RESULT_FAIL, DMARC_POLICY_QUARANTINE, "pct.example.net" },
	/* no record anywhere */
	{ "nodmarc.example", "nodmarc.example", SPF_RESULT_PASS, NULL, 0, 0, DMARC_RESULT_NONE, DMARC_POLICY_UNSPECIFIED, NULL },
	/* two records: no policy */
	{ "two.example.net", NULL, SPF_RESULT_FAIL, NULL, 0, 0, DMARC_RESULT_NONE, DMARC_POLICY_UNSPECIFIED, NULL },
	/* DNS failure */
	{ "tmp.example.net", NULL, SPF_RESULT_FAIL, NULL, 0, 0, DMARC_RESULT_TEMPERROR, DMARC_POLICY_UNSPECIFIED, NULL },
	/* spaces around = are allowed; DMARC10 is not DMARC1 */
	{ "spaced.example", NULL, SPF_RESULT_FAIL, NULL, 0, 0, DMARC_RESULT_FAIL, DMARC_POLICY_QUARANTINE, "spaced.example" },
	{ "v10.example", NULL, SPF_RESULT_FAIL, NULL, 0, 0, DMARC_RESULT_NONE, DMARC_POLICY_UNSPECIFIED, NULL },
	/* public suffix parent not queried for co.uk */
	{ "shop.co.uk", NULL, SPF_RESULT_FAIL, NULL, 0, 0, DMARC_RESULT_NONE, DMARC_POLICY_UNSPECIFIED, NULL },
};

static void add_txt(struct testzone *z, const char *name, const char *txt)
{
	testzone_add(z, name, "TXT", txt, strlen(txt), 0);
}

static void test_evaluate(void **state)
{
	struct testzone *z = testzone_new();
	add_txt(z, "_dmarc.example.com", "v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.com");
	add_txt(z, "_dmarc.example.com", "some other text");
	add_txt(z, "_dmarc.strict.example.org", "v=DMARC1; p=reject; adkim=s; aspf=s");
	add_txt(z, "_dmarc.pct.example.net", "v=DMARC1; p=reject; pct=50");
	add_txt(z, "_dmarc.two.example.net", "v=DMARC1; p=reject");
	add_txt(z, "_dmarc.two.example.net", "v=DMARC1; p=none");
	add_txt(z, "_dmarc.co.uk", "v=DMARC1; p=reject");
	add_txt(z, "_dmarc.spaced.example", "v = DMARC1 ; p = quarantine");
	add_txt(z, "_dmarc.v10.example", "v=DMARC10; p=reject");
	testzone_add(z, "_dmarc.tmp.example.net", "TIMEOUT", NULL, 0, 0);
	struct authdns dns;
	testzone_authdns(z, &dns);
	for (size_t i = 0; i < sizeof(eval_cases) / sizeof(eval_cases[0]); i++) {
		const struct eval_case *c = &eval_cases[i];
		struct dmarc_dkim_input dk = { .domain = c->dkim_domain, .result = c->dkim };
		unsigned rnd = c->rnd;
		struct dmarc_input in = {
			.from_domain = c->from, .spf_domain = c->spf_domain, .spf_result = c->spf,
			.dkim = c->dkim_domain != NULL ? &dk : NULL, .dkim_count = c->dkim_domain != NULL ? 1 : 0,
			.random_percent = fixed_random, .random_ctx = &rnd,
		};
		struct dmarc_outcome out;
		dmarc_evaluate(&in, &dns, &out);
		if (out.result != c->result || out.disposition != c->disposition)
			fail_msg("eval case %zu (%s): got %s/%s want %s/%s", i, c->from, dmarc_result_name(out.result),
				 dmarc_policy_name(out.disposition), dmarc_result_name(c->result),
				 dmarc_policy_name(c->disposition));
		if (c->record_domain == NULL)
			assert_null(out.record_domain);
		else
			assert_string_equal(out.record_domain, c->record_domain);
		dmarc_outcome_free(&out);
	}
	testzone_free(&z);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_table),
		cmocka_unit_test(test_record_fields),
		cmocka_unit_test(test_alignment_table),
		cmocka_unit_test(test_psl_vectors),
		cmocka_unit_test(test_evaluate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
