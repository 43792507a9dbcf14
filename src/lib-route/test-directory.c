#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib-route/directory.h"
#include "lib/buf.h"
#include "lib/xalloc.h"

static struct directory *open_mem(void)
{
	char *error = NULL;
	struct directory *d = directory_open(":memory:", false, &error);
	if (d == NULL)
		fail_msg("%s", error);
	return d;
}

static void add_domain(struct directory *d, const char *name, enum directory_domain_type type,
		       const char *relay, const char *alias_of)
{
	char *error = NULL;
	struct directory_domain dom = { .name = (char *)name, .type = type, .relay = (char *)relay,
					.alias_of = (char *)alias_of };
	int ret = directory_domain_add(d, &dom, &error);
	if (ret != 1)
		fail_msg("domain add %s: %d %s", name, ret, error != NULL ? error : "");
}

static int domain_cb(const struct directory_domain *dom, void *ctx)
{
	struct buf *b = ctx;
	buf_printf(b, "%s %s %s %s\n", dom->name, directory_domain_type_name(dom->type),
		   dom->relay != NULL ? dom->relay : "-", dom->alias_of != NULL ? dom->alias_of : "-");
	return 0;
}

static int user_cb(const char *address, int64_t created, void *ctx)
{
	struct buf *b = ctx;
	assert_true(created > 1000000000);
	buf_printf(b, "%s\n", address);
	return 0;
}

static int alias_cb(const char *address, bool is_regex, const char *target, void *ctx)
{
	struct buf *b = ctx;
	buf_printf(b, "%s%s %s\n", is_regex ? "re:" : "", address, target);
	return 0;
}

static void test_domains(void **state)
{
	struct directory *d = open_mem();
	char *error = NULL;
	struct directory_domain dom;
	struct buf b;

	add_domain(d, "Example.TEST", DIRECTORY_DOMAIN_LOCAL, NULL, NULL);
	add_domain(d, "relay.test", DIRECTORY_DOMAIN_RELAY, "mx.relay.test:2525", NULL);
	add_domain(d, "backup.test", DIRECTORY_DOMAIN_BACKUP, NULL, NULL);
	add_domain(d, "example.org", DIRECTORY_DOMAIN_LOCAL, NULL, "example.test");
	struct directory_domain again = { .name = "example.test" };
	assert_int_equal(directory_domain_add(d, &again, &error), 0);
	struct directory_domain bad = { .name = "bad domain" };
	assert_int_equal(directory_domain_add(d, &bad, &error), -1);
	assert_string_equal(error, "bad domain 'bad domain': domain may contain only letters, digits, '-', '_' and '.'");
	xfree(&error);
	struct directory_domain self = { .name = "a.test", .alias_of = "A.test" };
	assert_int_equal(directory_domain_add(d, &self, &error), -1);
	assert_string_equal(error, "domain a.test cannot be an alias of itself");
	xfree(&error);

	assert_int_equal(directory_domain_get(d, "EXAMPLE.test", &dom, &error), 1);
	assert_string_equal(dom.name, "example.test");
	assert_int_equal(dom.type, DIRECTORY_DOMAIN_LOCAL);
	assert_null(dom.relay);
	directory_domain_deinit(&dom);
	assert_int_equal(directory_domain_get(d, "relay.test", &dom, &error), 1);
	assert_int_equal(dom.type, DIRECTORY_DOMAIN_RELAY);
	assert_string_equal(dom.relay, "mx.relay.test:2525");
	directory_domain_deinit(&dom);
	assert_int_equal(directory_domain_get(d, "nope.test", &dom, &error), 0);
	assert_int_equal(directory_domain_get(d, "bad domain", &dom, &error), 0);

	buf_init(&b, 4096);
	assert_int_equal(directory_domain_list(d, domain_cb, &b, &error), 1);
	assert_string_equal(b.data, "backup.test backup - -\n"
				    "example.org local - example.test\n"
				    "example.test local - -\n"
				    "relay.test relay mx.relay.test:2525 -\n");
	assert_int_equal(directory_domain_del(d, "BACKUP.test", &error), 1);
	assert_int_equal(directory_domain_del(d, "backup.test", &error), 0);
	buf_deinit(&b);
	directory_close(&d);
	assert_null(d);
}

static void test_users(void **state)
{
	struct directory *d = open_mem();
	char *error = NULL, *hash = NULL;
	struct buf b;

	add_domain(d, "example.test", DIRECTORY_DOMAIN_LOCAL, NULL, NULL);
	add_domain(d, "relay.test", DIRECTORY_DOMAIN_RELAY, NULL, NULL);
	add_domain(d, "example.org", DIRECTORY_DOMAIN_LOCAL, NULL, "example.test");

	static const struct { const char *address; int ret; const char *error; } cases[] = {
		{ "Demo@Example.test", 1, NULL },
		{ "demo@example.test", 0, NULL },
		{ "b.c@example.test", 1, NULL },
		{ "x@nope.test", -1, "domain nope.test does not exist (add it first: mailroute domain add nope.test)" },
		{ "x@relay.test", -1, "domain relay.test is of type relay, not local" },
		{ "x@example.org", -1, "domain example.org is an alias of example.test: add the user there" },
		{ "example.test", -1, "bad address 'example.test': address needs an '@'" },
		{ "@example.test", -1, "bad address '@example.test': empty local part" },
		{ "a b@example.test", -1, "bad address 'a b@example.test': bad character in local part" },
		{ ".a@example.test", -1, "bad address '.a@example.test': misplaced '.' in local part" },
		{ "a..b@example.test", -1, "bad address 'a..b@example.test': misplaced '.' in local part" },
		{ "a@", -1, "bad address 'a@': domain must be 1-253 characters" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ret = directory_user_add(d, cases[i].address, "$y$hash", &error);
		if (ret != cases[i].ret || (cases[i].error == NULL) != (error == NULL) ||
		    (error != NULL && strcmp(error, cases[i].error) != 0))
			fail_msg("case %zu %s: %d %s", i, cases[i].address, ret, error != NULL ? error : "(null)");
		xfree(&error);
	}
	assert_int_equal(directory_user_get(d, "DEMO@example.TEST", &hash, &error), 1);
	assert_string_equal(hash, "$y$hash");
	xfree(&hash);
	assert_int_equal(directory_user_get(d, "demo@example.test", NULL, &error), 1);
	assert_int_equal(directory_user_get(d, "demo2@example.test", &hash, &error), 0);
	assert_null(hash);
	assert_int_equal(directory_user_set_password(d, "demo@example.test", "$y$new", &error), 1);
	assert_int_equal(directory_user_set_password(d, "nobody@example.test", "$y$new", &error), 0);
	assert_int_equal(directory_user_get(d, "demo@example.test", &hash, &error), 1);
	assert_string_equal(hash, "$y$new");
	xfree(&hash);
	assert_int_equal(directory_user_count(d, "example.test", &error), 2);
	assert_int_equal(directory_user_count(d, "relay.test", &error), 0);

	buf_init(&b, 4096);
	assert_int_equal(directory_user_list(d, user_cb, &b, &error), 1);
	assert_string_equal(b.data, "b.c@example.test\ndemo@example.test\n");
	assert_int_equal(directory_user_del(d, "b.c@EXAMPLE.test", &error), 1);
	assert_int_equal(directory_user_del(d, "b.c@example.test", &error), 0);
	assert_int_equal(directory_user_del(d, "garbage", &error), 0);
	assert_null(error);
	buf_deinit(&b);
	directory_close(&d);
}

static void test_aliases(void **state)
{
	struct directory *d = open_mem();
	char *error = NULL;
	struct buf b;

	const char *support[] = { "Alice@example.test", "bob@example.test" };
	assert_int_equal(directory_alias_add(d, "Support@example.test", false, support, 2, &error), 1);
	const char *more[] = { "bob@example.test", "team@example.test", "webhook:tickets" };
	assert_int_equal(directory_alias_add(d, "support@example.test", false, more, 3, &error), 1);
	assert_int_equal(directory_alias_add(d, "support@example.test", false, more, 1, &error), 0);
	const char *catchall[] = { "postmaster@example.test" };
	assert_int_equal(directory_alias_add(d, "@example.test", false, catchall, 1, &error), 1);
	const char *re[] = { "$1@sales.example.com" };
	assert_int_equal(directory_alias_add(d, "^(.+)-sales@example\\.com$", true, re, 1, &error), 1);
	assert_int_equal(directory_alias_add(d, "^b$", true, re, 1, &error), 1);

	static const struct { const char *address; bool is_regex; const char *target; const char *error; } bad[] = {
		{ "x@example.test", false, "not an address", "bad target 'not an address': space or control character in target" },
		{ "x@example.test", false, "tickets", "bad target 'tickets': target must be an address or a named target KIND:NAME (webhook:x, pipe:x)" },
		{ "x@example.test", false, "Web:x", "bad target 'Web:x': named target kind must be lowercase letters (webhook, pipe)" },
		{ "x@example.test", false, "a@b@", "bad target 'a@b@': bad character in local part" },
		{ "x", false, "a@b.test", "bad alias address 'x': address needs an '@'" },
		{ "", true, "a@b.test", "regex pattern must be 1-1024 bytes" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *t[] = { bad[i].target };
		assert_int_equal(directory_alias_add(d, bad[i].address, bad[i].is_regex, t, 1, &error), -1);
		if (strcmp(error, bad[i].error) != 0)
			fail_msg("case %zu: %s", i, error);
		xfree(&error);
	}
	assert_int_equal(directory_alias_add(d, "x@example.test", false, NULL, 0, &error), -1);
	xfree(&error);

	buf_init(&b, 4096);
	assert_int_equal(directory_alias_list(d, alias_cb, &b, &error), 1);
	assert_string_equal(b.data, "@example.test postmaster@example.test\n"
				    "support@example.test alice@example.test\n"
				    "support@example.test bob@example.test\n"
				    "support@example.test team@example.test\n"
				    "support@example.test webhook:tickets\n"
				    "re:^(.+)-sales@example\\.com$ $1@sales.example.com\n"
				    "re:^b$ $1@sales.example.com\n");
	buf_reset(&b);
	assert_int_equal(directory_alias_lookup(d, "support@example.test", alias_cb, &b, &error), 1);
	assert_string_equal(b.data, "support@example.test alice@example.test\nsupport@example.test bob@example.test\n"
				    "support@example.test team@example.test\nsupport@example.test webhook:tickets\n");
	buf_reset(&b);
	assert_int_equal(directory_alias_regex_list(d, alias_cb, &b, &error), 1);
	assert_string_equal(b.data, "re:^(.+)-sales@example\\.com$ $1@sales.example.com\nre:^b$ $1@sales.example.com\n");

	assert_int_equal(directory_alias_del(d, "SUPPORT@example.test", &error), 1);
	assert_int_equal(directory_alias_del(d, "support@example.test", &error), 0);
	assert_int_equal(directory_alias_del(d, "^b$", &error), 1);
	assert_int_equal(directory_alias_del(d, "@example.test", &error), 1);
	buf_reset(&b);
	assert_int_equal(directory_alias_list(d, alias_cb, &b, &error), 1);
	assert_string_equal(b.data, "re:^(.+)-sales@example\\.com$ $1@sales.example.com\n");
	buf_deinit(&b);
	directory_close(&d);
}

static void test_file_generation(void **state)
{
	char dir[] = "/tmp/test-directory-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *path = xasprintf("%s/directory.db", dir);
	char *error = NULL;

	assert_null(directory_open(path, true, &error)); /* read-only does not create */
	assert_non_null(error);
	xfree(&error);

	struct directory *w = directory_open(path, false, &error);
	assert_non_null(w);
	struct directory *r = directory_open(path, true, &error);
	if (r == NULL)
		fail_msg("%s", error);
	int64_t g0 = directory_generation(r);
	assert_true(g0 > 0);
	assert_int_equal(directory_generation(r), g0);
	int64_t w0 = directory_generation(w);
	add_domain(w, "example.test", DIRECTORY_DOMAIN_LOCAL, NULL, NULL);
	assert_true(directory_generation(w) > w0);
	assert_true(directory_generation(r) > g0);
	struct directory_domain dom;
	assert_int_equal(directory_domain_get(r, "example.test", &dom, &error), 1);
	directory_domain_deinit(&dom);
	struct directory_domain other = { .name = "other.test" };
	assert_int_equal(directory_domain_add(r, &other, &error), -1); /* read-only */
	xfree(&error);

	directory_close(&r);
	directory_close(&w);
	char *wal = xasprintf("%s-wal", path), *shm = xasprintf("%s-shm", path);
	unlink(wal);
	unlink(shm);
	unlink(path);
	rmdir(dir);
	free(wal);
	free(shm);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_domains),
		cmocka_unit_test(test_users),
		cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_file_generation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
