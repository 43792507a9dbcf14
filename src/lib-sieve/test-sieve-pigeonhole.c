/*
 * Driver over Dovecot Pigeonhole's Sieve test suite (../shared/corpora/sieve).
 * Each .svtest is compiled with a test-only subset of vnd.dovecot.testsuite
 * (test, test_fail, test_set) and run; every `test "..." { }` block counts.
 * Prints "N passed, M failed" over every block of every file listed in the
 * classification json, and asserts only the files listed in expect_pass[]
 * (the ones this implementation passes reliably).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib-sieve/sieve.h"
#include "lib-sieve/sieve_private.h"
#include "lib/xalloc.h"

/* Files whose every block must pass; grow this list as the implementation grows. */
static const char *const expect_pass[] = {
#include "test-sieve-pigeonhole.expect"
	NULL,
};

static char *read_all(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	size_t cap = 4096, len = 0;
	char *buf = xmalloc(cap);
	size_t n;
	while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap) {
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
	}
	fclose(f);
	buf = xrealloc(buf, len + 1);
	buf[len] = '\0';
	*len_r = len;
	return buf;
}

static const char *suite_dir(void)
{
	static char dir[1024];
	const char *shared = getenv("MR_SHARED_DIR");
	snprintf(dir, sizeof(dir), "%s/corpora/sieve", shared ? shared : "../shared");
	return dir;
}

struct resolver_ctx {
	char dir[2048];
};

static int resolver(void *ctx, const char *name, bool global, char **src_r, size_t *len_r, char **error_r)
{
	struct resolver_ctx *rc = ctx;
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s/%s.sieve", rc->dir, global ? "included-global" : "included", name);
	*src_r = read_all(path, len_r);
	return *src_r != NULL ? 1 : 0;
}

static int load_script(void *ctx, const char *path, char **src_r, size_t *len_r)
{
	struct resolver_ctx *rc = ctx;
	char full[4096];
	snprintf(full, sizeof(full), "%s/%s", rc->dir, path);
	*src_r = read_all(full, len_r);
	return *src_r != NULL ? 1 : 0;
}

struct file_result {
	unsigned blocks, passed;
	char *why;
};

static void run_file(const char *rel, unsigned blocks, struct file_result *fr)
{
	char path[2048];
	snprintf(path, sizeof(path), "%s/pigeonhole-tests/%s", suite_dir(), rel);
	memset(fr, 0, sizeof(*fr));
	fr->blocks = blocks;
	size_t len;
	char *src = read_all(path, &len);
	if (src == NULL) {
		fr->why = xasprintf("cannot read %s", path);
		return;
	}
	struct resolver_ctx rc;
	snprintf(rc.dir, sizeof(rc.dir), "%s", path);
	char *slash = strrchr(rc.dir, '/');
	if (slash != NULL)
		*slash = '\0';
	struct sieve_testsuite_hooks hooks = { .load = load_script, .resolver = resolver, .ctx = &rc };
	sieve_testsuite_set_hooks(&hooks);
	struct sieve_compile_options opt = {
		.extensions = SIEVE_EXT_USER_DEFAULT | SIEVE_EXT_TESTSUITE,
		.include_resolver = resolver,
		.include_ctx = &rc,
	};
	char *err = NULL;
	struct sieve_script *s = sieve_compile(src, len, rel, &opt, &err);
	free(src);
	if (s == NULL) {
		fr->why = err;
		return;
	}
	struct sieve_msg_view mv = {
		/* no envelope unless a test sets one (as in Pigeonhole's testsuite) */
		.raw = "From: sender@example.com\r\nTo: recipient@example.net\r\nSubject: test\r\n\r\nTest!\r\n",
		.zone_set = true,
		.zone_minutes = 0,
	};
	mv.raw_len = strlen(mv.raw);
	struct sieve_result res;
	sieve_result_init(&res);
	int r = sieve_execute(s, &mv, NULL, &res, NULL, NULL, &err);
	if (r < 0) {
		fr->why = err;
	} else {
		fr->passed = res.ts_tests >= res.ts_failed ? res.ts_tests - res.ts_failed : 0;
		if (fr->passed > blocks)
			fr->passed = blocks;
		if (res.ts_first_failure != NULL)
			fr->why = xstrdup(res.ts_first_failure);
		else if (res.ts_tests < blocks)
			fr->why = xasprintf("ran %u of %u blocks", res.ts_tests, blocks);
	}
	sieve_result_deinit(&res);
	sieve_script_free(&s);
	sieve_testsuite_set_hooks(NULL);
}

static void test_pigeonhole(void **state)
{
	(void)state;
	char path[1200];
	snprintf(path, sizeof(path), "%s/pigeonhole-tests-classification.json", suite_dir());
	json_error_t jerr;
	json_t *root = json_load_file(path, 0, &jerr);
	if (root == NULL) {
		fprintf(stderr, "pigeonhole: cannot load %s: %s (skipped)\n", path, jerr.text);
		skip();
	}
	json_t *files = json_object_get(root, "files");
	size_t i;
	json_t *f;
	unsigned passed = 0, failed = 0, expected_bad = 0;
	bool verbose = getenv("SIEVE_PH_VERBOSE") != NULL;
	json_array_foreach(files, i, f) {
		const char *rel = json_string_value(json_object_get(f, "file"));
		unsigned blocks = (unsigned)json_integer_value(json_object_get(f, "test_blocks"));
		const char *tier = json_string_value(json_object_get(f, "tier"));
		if (rel == NULL)
			continue;
		struct file_result fr;
		run_file(rel, blocks, &fr);
		passed += fr.passed;
		failed += blocks - fr.passed;
		bool expected = false;
		for (const char *const *e = expect_pass; *e; e++)
			if (strcmp(*e, rel) == 0)
				expected = true;
		bool all = fr.passed == blocks && (fr.why == NULL || blocks == 0);
		if (expected && !all) {
			fprintf(stderr, "pigeonhole: REGRESSION %s: %u/%u: %s\n", rel, fr.passed, blocks,
				fr.why ? fr.why : "");
			expected_bad++;
		}
		if (verbose)
			fprintf(stderr, "%-4s %-20s %-50s %u/%u %s\n", all ? "ok" : "FAIL", tier ? tier : "", rel,
				fr.passed, blocks, fr.why ? fr.why : "");
		free(fr.why);
	}
	json_decref(root);
	printf("pigeonhole: %u passed, %u failed\n", passed, failed);
	fprintf(stderr, "pigeonhole: %u passed, %u failed\n", passed, failed);
	assert_int_equal(expected_bad, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pigeonhole),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
