/*
 * test-spf-suite: runs the RFC 7208 SPF test suite (openspf/pyspf, JSON
 * expansion of rfc7208-tests.yml) with each scenario's zone served through
 * authdns, and the older RFC 4408 suite (reported, not asserted).
 * Explanations are compared case-insensitively (the suite writes ip6 nibbles
 * in upper case where RFC 7208 7.3 shows lower case); "DEFAULT" means no exp=
 * explanation was produced.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <jansson.h>

#include "lib-auth/spf.h"
#include "lib-auth/testzone.h"
#include "lib/xalloc.h"

/* jansson gives UTF-8; the suite's strings are bytes mapped to U+0000..U+00FF. */
static char *latin1n(const char *utf8, size_t n, size_t *len_r)
{
	size_t o = 0;
	char *out = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)utf8[i];
		if (ch >= 0xc0 && ch < 0xe0 && i + 1 < n) {
			unsigned cp = ((ch & 0x1fu) << 6) | ((unsigned char)utf8[i + 1] & 0x3fu);
			if (cp < 256) {
				out[o++] = (char)cp;
				i++;
				continue;
			}
		}
		out[o++] = (char)ch;
	}
	out[o] = '\0';
	*len_r = o;
	return out;
}

static char *latin1(const char *utf8, size_t *len_r)
{
	return latin1n(utf8, strlen(utf8), len_r);
}

static char *latin1j(json_t *s, size_t *len_r)
{
	return latin1n(json_string_value(s), json_string_length(s), len_r);
}

static void load_zone(struct testzone *z, json_t *zone)
{
	const char *name;
	json_t *rrs;
	json_object_foreach(zone, name, rrs) {
		size_t nlen;
		char *lname = latin1(name, &nlen);
		size_t i;
		json_t *rr;
		json_array_foreach(rrs, i, rr) {
			if (json_is_string(rr)) {
				if (strcmp(json_string_value(rr), "TIMEOUT") == 0)
					testzone_add(z, lname, "TIMEOUT", NULL, 0, 0);
				continue;
			}
			const char *type = json_string_value(json_array_get(rr, 0));
			json_t *val = json_array_get(rr, 1);
			if (type == NULL || strcmp(type, "SPF") == 0)
				continue;
			if (strcmp(type, "TXT") == 0) {
				char buf[AUTHDNS_MAX_TXT + 1];
				size_t blen = 0, j;
				json_t *s;
				if (json_is_string(val)) {
					size_t l;
					char *t = latin1j(val, &l);
					testzone_add(z, lname, "TXT", t, l, 0);
					free(t);
					continue;
				}
				json_array_foreach(val, j, s) {
					size_t l;
					char *t = latin1j(s, &l);
					if (blen + l <= AUTHDNS_MAX_TXT) {
						memcpy(buf + blen, t, l);
						blen += l;
					}
					free(t);
				}
				testzone_add(z, lname, "TXT", buf, blen, 0);
			} else if (strcmp(type, "MX") == 0) {
				const char *ex = json_string_value(json_array_get(val, 1));
				testzone_add(z, lname, "MX", ex, strlen(ex),
					     (uint16_t)json_integer_value(json_array_get(val, 0)));
			} else if (json_is_string(val)) {
				const char *v = json_string_value(val);
				testzone_add(z, lname, type, v, strlen(v), 0);
			}
		}
		free(lname);
	}
}

static int run_suite(const char *file, int *passed_r, int *failed_r, bool verbose)
{
	json_error_t jerr;
	json_t *root = json_load_file(file, JSON_ALLOW_NUL, &jerr);
	if (root == NULL) {
		fprintf(stderr, "cannot load %s: %s\n", file, jerr.text);
		return -1;
	}
	int passed = 0, failed = 0;
	size_t si;
	json_t *sc;
	json_array_foreach(json_object_get(root, "scenarios"), si, sc) {
		struct testzone *z = testzone_new();
		load_zone(z, json_object_get(sc, "zone"));
		struct authdns dns;
		testzone_authdns(z, &dns);
		size_t ti;
		json_t *t;
		json_array_foreach(json_object_get(sc, "tests"), ti, t) {
			const char *id = json_string_value(json_object_get(t, "id"));
			size_t l;
			char *mailfrom = latin1(json_string_value(json_object_get(t, "mailfrom")), &l);
			char *helo = latin1(json_string_value(json_object_get(t, "helo")), &l);
			const char *host = json_string_value(json_object_get(t, "host"));
			const char *expl = json_string_value(json_object_get(t, "explanation"));
			struct spf_ip ip;
			struct spf_outcome out = {0};
			bool ok = false;
			if (spf_ip_parse(host, &ip) == 1) {
				spf_check_mailfrom(&ip, mailfrom, helo, &dns, NULL, &out);
				size_t ri;
				json_t *r;
				json_array_foreach(json_object_get(t, "result"), ri, r) {
					if (strcmp(json_string_value(r), spf_result_name(out.result)) == 0)
						ok = true;
				}
				if (ok && expl != NULL) {
					if (strcmp(expl, "DEFAULT") == 0)
						ok = out.explanation == NULL;
					else
						ok = out.explanation != NULL && strcasecmp(out.explanation, expl) == 0;
				}
			}
			if (ok) {
				passed++;
			} else {
				failed++;
				if (verbose)
					fprintf(stderr, "FAIL %s: got %s expl=%s problem=%s\n", id,
						spf_result_name(out.result),
						out.explanation ? out.explanation : "-",
						out.problem ? out.problem : "-");
			}
			spf_outcome_free(&out);
			free(mailfrom);
			free(helo);
		}
		testzone_free(&z);
	}
	json_decref(root);
	*passed_r = passed;
	*failed_r = failed;
	return 0;
}

static const char *shared_dir(void)
{
	const char *d = getenv("MR_SHARED_DIR");
	return d != NULL ? d : "../shared";
}

static void test_rfc7208(void **state)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/corpora/spf/rfc7208-tests.json", shared_dir());
	int p = 0, f = 0;
	assert_int_equal(run_suite(path, &p, &f, true), 0);
	printf("RFC 7208 suite: %d passed, %d failed\n", p, f);
	assert_int_equal(p, 203);
	assert_int_equal(f, 0);
}

static void test_rfc4408(void **state)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/corpora/spf/rfc4408-tests.json", shared_dir());
	int p = 0, f = 0;
	assert_int_equal(run_suite(path, &p, &f, getenv("SPF_4408_VERBOSE") != NULL), 0);
	printf("RFC 4408 suite (report only): %d passed, %d failed\n", p, f);
	assert_true(p > 0);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc7208),
		cmocka_unit_test(test_rfc4408),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
