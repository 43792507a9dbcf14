/* sieve_store: put/get/list/activate/delete on a temporary data_dir, and the include resolver. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib-sieve/sieve_store.h"
#include "lib/xalloc.h"

static char dd[256];

static int setup(void **state)
{
	(void)state;
	snprintf(dd, sizeof(dd), "/tmp/test-sieve-store.XXXXXX");
	return mkdtemp(dd) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char *cmd = xasprintf("rm -rf '%s'", dd);
	int r = system(cmd);
	free(cmd);
	return r == 0 ? 0 : -1;
}

static void test_names(void **state)
{
	(void)state;
	static const struct { const char *name; bool ok; } cases[] = {
		{ "main", true }, { "my-rules_2.v1", true }, { "", false }, { ".hidden", false }, { "a/b", false },
		{ "..", false }, { "sp ace", false },
		{ "0123456789012345678901234567890123456789012345678901234567890123", true },
		{ "01234567890123456789012345678901234567890123456789012345678901234", false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (sieve_store_valid_name(cases[i].name) != cases[i].ok)
			fail_msg("name case %zu '%s'", i, cases[i].name);
	char *dir = NULL, *err = NULL;
	assert_int_equal(sieve_store_user_dir("/d", "Joe@Example.TEST", &dir, &err), 1);
	assert_string_equal(dir, "/d/sieve/example.test/Joe");
	free(dir);
	assert_int_equal(sieve_store_user_dir("/d", "nodomain", &dir, &err), -1);
	free(err);
	assert_int_equal(sieve_store_user_dir("/d", "../x@example.test", &dir, &err), -1);
	free(err);
	assert_int_equal(sieve_store_user_dir("/d", "a@../../etc", &dir, &err), -1);
	free(err);
}

static void test_lifecycle(void **state)
{
	(void)state;
	const char *u = "demo@example.test";
	char *err = NULL, *src = NULL, *name = NULL, *active = NULL, **names = NULL;
	size_t len, n;
	assert_int_equal(sieve_store_get_active(dd, u, &name, &src, &len, &err), 0);
	assert_int_equal(sieve_store_put(dd, u, "main", "keep;", 5, &err), 1);
	assert_int_equal(sieve_store_put(dd, u, "other", "discard;", 8, &err), 1);
	assert_int_equal(sieve_store_get(dd, u, "main", &src, &len, &err), 1);
	assert_string_equal(src, "keep;");
	free(src);
	assert_int_equal(sieve_store_get(dd, u, "none", &src, &len, &err), 0);
	assert_int_equal(sieve_store_activate(dd, u, "none", &err), 0);
	assert_int_equal(sieve_store_activate(dd, u, "main", &err), 1);
	assert_int_equal(sieve_store_list(dd, u, &names, &n, &active, &err), 1);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "main");
	assert_string_equal(names[1], "other");
	assert_string_equal(active, "main");
	sieve_store_list_free(names, n);
	free(active);
	assert_int_equal(sieve_store_get_active(dd, u, &name, &src, &len, &err), 1);
	assert_string_equal(name, "main");
	assert_string_equal(src, "keep;");
	free(name);
	free(src);
	/* the active script cannot be deleted */
	assert_int_equal(sieve_store_delete(dd, u, "main", &err), -1);
	assert_non_null(strstr(err, "is active"));
	free(err);
	assert_int_equal(sieve_store_delete(dd, u, "other", &err), 1);
	assert_int_equal(sieve_store_delete(dd, u, "other", &err), 0);
	assert_int_equal(sieve_store_activate(dd, u, NULL, &err), 1);
	assert_int_equal(sieve_store_get_active(dd, u, &name, &src, &len, &err), 0);
	assert_int_equal(sieve_store_delete(dd, u, "main", &err), 1);
	/* size cap */
	char *big = xcalloc(1, SIEVE_STORE_MAX_SIZE + 2);
	memset(big, '#', SIEVE_STORE_MAX_SIZE + 1);
	assert_int_equal(sieve_store_put(dd, u, "big", big, SIEVE_STORE_MAX_SIZE + 1, &err), -1);
	free(err);
	free(big);
}

static void test_include_from_store(void **state)
{
	(void)state;
	const char *u = "inc@example.test";
	char *err = NULL;
	assert_int_equal(sieve_store_put(dd, u, "lib", "require \"fileinto\"; fileinto \"Lib\";", 35, &err), 1);
	char *gdir = xasprintf("%s/sieve/.global", dd);
	mkdir(gdir, 0750);
	char *gpath = xasprintf("%s/spam.sieve", gdir);
	FILE *f = fopen(gpath, "w");
	assert_non_null(f);
	fputs("discard;", f);
	fclose(f);
	struct sieve_store_ctx sc = { .data_dir = dd, .user = u };
	struct sieve_compile_options opt = { .include_resolver = sieve_store_include_resolver, .include_ctx = &sc };
	const char *src = "require \"include\";\ninclude \"lib\";\ninclude :global \"spam\";";
	struct sieve_script *s = sieve_compile(src, strlen(src), "main", &opt, &err);
	if (s == NULL)
		fail_msg("%s", err);
	struct sieve_result res;
	sieve_result_init(&res);
	assert_int_equal(sieve_execute(s, NULL, NULL, &res, NULL, NULL, &err), 1);
	assert_int_equal(res.count, 2);
	assert_int_equal(res.actions[0].type, SIEVE_ACT_FILEINTO);
	assert_int_equal(res.actions[1].type, SIEVE_ACT_DISCARD);
	sieve_result_deinit(&res);
	sieve_script_free(&s);
	free(gpath);
	free(gdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_include_from_store),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
