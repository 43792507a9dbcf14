#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "lib-route/route.h"
#include "lib/buf.h"
#include "lib/xalloc.h"

static void must(int ret, char *error)
{
	if (ret < 0)
		fail_msg("%s", error != NULL ? error : "error");
	free(error);
}

static void domain(struct directory *d, const char *name, enum directory_domain_type type, const char *relay,
		   const char *alias_of)
{
	char *error = NULL;
	struct directory_domain dom = { .name = (char *)name, .type = type, .relay = (char *)relay,
					.alias_of = (char *)alias_of };
	must(directory_domain_add(d, &dom, &error), error);
}

static void user(struct directory *d, const char *address)
{
	char *error = NULL;
	must(directory_user_add(d, address, "$y$x", &error), error);
}

static void alias(struct directory *d, const char *address, bool is_regex, const char *targets)
{
	char *error = NULL, *copy = xstrdup(targets), *save = NULL;
	const char *list[16];
	size_t n = 0;
	for (char *t = strtok_r(copy, " ", &save); t != NULL && n < 16; t = strtok_r(NULL, " ", &save))
		list[n++] = t;
	if (is_regex && route_regex_check(address, list, n, &error) < 0)
		fail_msg("%s", error);
	must(directory_alias_add(d, address, is_regex, list, n, &error), error);
	free(copy);
}

static struct directory *fixture(void)
{
	char *error = NULL;
	struct directory *d = directory_open(":memory:", false, &error);
	if (d == NULL)
		fail_msg("%s", error);
	domain(d, "example.com", DIRECTORY_DOMAIN_LOCAL, NULL, NULL);
	domain(d, "example.org", DIRECTORY_DOMAIN_LOCAL, NULL, "example.com");
	domain(d, "example.net", DIRECTORY_DOMAIN_LOCAL, NULL, "example.org");
	domain(d, "sales.example.com", DIRECTORY_DOMAIN_LOCAL, NULL, NULL);
	domain(d, "relay.test", DIRECTORY_DOMAIN_RELAY, "smart.relay.test:25", NULL);
	domain(d, "backup.test", DIRECTORY_DOMAIN_BACKUP, NULL, NULL);
	domain(d, "ping.test", DIRECTORY_DOMAIN_LOCAL, NULL, "pong.test");
	domain(d, "pong.test", DIRECTORY_DOMAIN_LOCAL, NULL, "ping.test");
	user(d, "alice@example.com");
	user(d, "bob@example.com");
	user(d, "carol@example.com");
	user(d, "joe@sales.example.com");
	user(d, "bob+lists@example.com"); /* an exact user wins over the subaddress */
	domain(d, "b\xc3\xbc" "cher.example", DIRECTORY_DOMAIN_LOCAL, NULL, NULL);
	user(d, "j\xc3\xb6rg@xn--bcher-kva.example");
	alias(d, "support@example.com", false, "alice@example.com team@example.com webhook:tickets");
	alias(d, "team@example.com", false, "bob@example.com carol@example.com ALICE@example.com");
	alias(d, "loop1@example.com", false, "loop2@example.com");
	alias(d, "loop2@example.com", false, "alice@example.com loop1@example.com");
	for (int i = 0; i < 11; i++) {
		char a[64], t[64];
		snprintf(a, sizeof(a), "d%d@example.com", i);
		snprintf(t, sizeof(t), "d%d@example.com", i + 1);
		alias(d, a, false, t);
	}
	alias(d, "d11@example.com", false, "alice@example.com");
	alias(d, "ext@example.com", false, "someone@remote.test bob@example.org x@relay.test");
	alias(d, "dead@example.com", false, "nobody@example.com");
	alias(d, "half@example.com", false, "nobody@example.com carol@example.com");
	alias(d, "^(.+)-sales@example\\.com$", true, "$1@sales.example.com");
	alias(d, "^([a-z]+)\\.([a-z]+)@example\\.com$", true, "$2@example.com");
	alias(d, "^(a+)+b@example\\.com$", true, "alice@example.com"); /* catastrophic backtracking */
	alias(d, "@sales.example.com", false, "joe@sales.example.com");
	return d;
}

struct route_case {
	const char *address;
	enum route_status status;
	const char *rcpts;      /* "kind:address[/folder] ..." */
	const char *sep;        /* separator; NULL = "+", "" = off */
	const char *relay;      /* ROUTE_NOT_LOCAL */
};

static const struct route_case route_cases[] = {
	{ .address = "alice@example.com", .status = ROUTE_OK, .rcpts = "local:alice@example.com" },
	{ .address = "Alice@EXAMPLE.com", .status = ROUTE_OK, .rcpts = "local:alice@example.com" },
	{ .address = "support@example.com", .status = ROUTE_OK, .rcpts = "local:alice@example.com local:bob@example.com local:carol@example.com named:webhook:tickets" },
	{ .address = "support@example.org", .status = ROUTE_OK, .rcpts = "local:alice@example.com local:bob@example.com local:carol@example.com named:webhook:tickets" },
	{ .address = "alice@example.org", .status = ROUTE_OK, .rcpts = "local:alice@example.com" },
	{ .address = "alice@example.net", .status = ROUTE_OK, .rcpts = "local:alice@example.com" },       /* alias of an alias domain */
	{ .address = "x@ping.test", .status = ROUTE_LOOP, .rcpts = "" },                                   /* domain alias cycle */
	{ .address = "loop1@example.com", .status = ROUTE_LOOP, .rcpts = "" },
	{ .address = "loop2@example.com", .status = ROUTE_LOOP, .rcpts = "" },
	{ .address = "d0@example.com", .status = ROUTE_LOOP, .rcpts = "" },                                /* 12 levels */
	{ .address = "d2@example.com", .status = ROUTE_OK, .rcpts = "local:alice@example.com" },           /* 10 levels */
	{ .address = "joe-sales@example.com", .status = ROUTE_OK, .rcpts = "local:joe@sales.example.com" },
	{ .address = "first.bob@example.com", .status = ROUTE_OK, .rcpts = "local:bob@example.com" },
	{ .address = "nobody-sales@example.com", .status = ROUTE_OK, .rcpts = "local:joe@sales.example.com" }, /* regex then catch-all */
	{ .address = "anything@sales.example.com", .status = ROUTE_OK, .rcpts = "local:joe@sales.example.com" },
	{ .address = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac@example.com", .status = ROUTE_UNKNOWN_USER, .rcpts = "" },
	{ .address = "aaab@example.com", .status = ROUTE_OK, .rcpts = "local:alice@example.com" },
	{ .address = "bob+news@example.com", .status = ROUTE_OK, .rcpts = "local:bob@example.com/news" },
	{ .address = "Bob+News@example.com", .status = ROUTE_OK, .rcpts = "local:bob@example.com/news" },
	{ .address = "bob+lists@example.com", .status = ROUTE_OK, .rcpts = "local:bob+lists@example.com" },
	{ .address = "bob+a+b@example.com", .status = ROUTE_OK, .rcpts = "local:bob@example.com/a+b" },
	{ .address = "support+urgent@example.com", .status = ROUTE_OK, .rcpts = "local:alice@example.com/urgent local:bob@example.com/urgent local:carol@example.com/urgent named:webhook:tickets" },
	{ .address = "bob+@example.com", .status = ROUTE_UNKNOWN_USER, .rcpts = "" },
	{ .address = "+bob@example.com", .status = ROUTE_UNKNOWN_USER, .rcpts = "" },
	{ .address = "bob-news@example.com", .status = ROUTE_UNKNOWN_USER, .rcpts = "" },                /* '-' is not the separator */
	{ .address = "bob-news@example.com", .status = ROUTE_OK, .rcpts = "local:bob@example.com/news", .sep = "-" },
	{ .address = "bob+news@example.com", .status = ROUTE_UNKNOWN_USER, .rcpts = "", .sep = "" },             /* subaddressing off */
	{ .address = "nobody+x@sales.example.com", .status = ROUTE_OK, .rcpts = "local:joe@sales.example.com" }, /* catch-all, tag not a folder */
	{ .address = "nobody@example.com", .status = ROUTE_UNKNOWN_USER, .rcpts = "" },
	{ .address = "dead@example.com", .status = ROUTE_UNKNOWN_USER, .rcpts = "" },
	{ .address = "half@example.com", .status = ROUTE_OK, .rcpts = "local:carol@example.com" },
	{ .address = "ext@example.com", .status = ROUTE_OK, .rcpts = "remote:someone@remote.test local:bob@example.com remote:x@relay.test" },
	{ .address = "x@remote.test", .status = ROUTE_NOT_LOCAL, .rcpts = "" },
	{ .address = "x@relay.test", .status = ROUTE_NOT_LOCAL, .rcpts = "", .sep = NULL, .relay = "smart.relay.test:25" },
	{ .address = "x@backup.test", .status = ROUTE_NOT_LOCAL, .rcpts = "" },
	{ .address = "not an address", .status = ROUTE_BAD_ADDRESS, .rcpts = "" },
	{ .address = "@example.com", .status = ROUTE_BAD_ADDRESS, .rcpts = "" },
	{ .address = "", .status = ROUTE_BAD_ADDRESS, .rcpts = "" },
	/* IDN: the U-label form reaches the A-label domain; UTF-8 local parts are kept (SMTPUTF8). */
	{ .address = "J\xc3\xb6rg@B\xc3\xbc" "cher.example", .status = ROUTE_OK, .rcpts = "local:j\xc3\xb6rg@xn--bcher-kva.example" },
	{ .address = "j\xc3\xb6rg@XN--BCHER-KVA.example", .status = ROUTE_OK, .rcpts = "local:j\xc3\xb6rg@xn--bcher-kva.example" },
	{ .address = "x@\xff\xfe.example", .status = ROUTE_BAD_ADDRESS, .rcpts = "" },
};

static void format_rcpts(const struct route_result *res, struct buf *b)
{
	buf_reset(b);
	for (size_t i = 0; i < res->rcpt_count; i++) {
		const struct route_recipient *r = &res->rcpt[i];
		buf_printf(b, "%s%s:%s%s%s", i == 0 ? "" : " ", route_kind_name(r->kind), r->address,
			   r->folder != NULL ? "/" : "", r->folder != NULL ? r->folder : "");
	}
}

static void test_resolve(void **state)
{
	struct directory *d = fixture();
	struct buf b;
	buf_init(&b, 4096);
	for (size_t i = 0; i < sizeof(route_cases) / sizeof(route_cases[0]); i++) {
		const struct route_case *c = &route_cases[i];
		struct route_options opt = { .subaddress_separator = c->sep != NULL ? c->sep[0] : '+', .trace = true };
		struct route_result res;
		char *error = NULL;
		int ret = route_resolve(d, &opt, c->address, &res, &error);
		format_rcpts(&res, &b);
		bool ok = ret == 1 && res.status == c->status && strcmp(b.data, c->rcpts) == 0;
		if (ok && c->relay != NULL)
			ok = res.relay != NULL && strcmp(res.relay, c->relay) == 0 && res.domain_type == DIRECTORY_DOMAIN_RELAY;
		if (!ok) {
			fprintf(stderr, "case %zu %s: ret %d status %s rcpts '%s' error %s\n", i, c->address, ret,
				route_status_name(res.status), b.data, error != NULL ? error : "-");
			for (size_t j = 0; j < res.trace_count; j++)
				fprintf(stderr, "  %s\n", res.trace[j]);
			fail();
		}
		route_result_deinit(&res);
	}
	buf_deinit(&b);
	directory_close(&d);
}

static void test_replies_and_trace(void **state)
{
	struct directory *d = fixture();
	struct route_options opt = { .subaddress_separator = '+', .trace = true };
	struct route_result res;
	char *error = NULL;

	assert_int_equal(route_resolve(d, &opt, "nobody@example.com", &res, &error), 1);
	assert_int_equal(res.smtp_code, 550);
	assert_string_equal(res.enhanced, "5.1.1");
	route_result_deinit(&res);
	assert_int_equal(route_resolve(d, &opt, "loop1@example.com", &res, &error), 1);
	assert_int_equal(res.smtp_code, 550);
	assert_string_equal(res.enhanced, "5.4.6");
	route_result_deinit(&res);
	assert_int_equal(route_resolve(d, &opt, "x@remote.test", &res, &error), 1);
	assert_string_equal(res.domain, "remote.test");
	assert_false(res.domain_known);
	route_result_deinit(&res);

	assert_int_equal(route_resolve(d, &opt, "Support@Example.ORG", &res, &error), 1);
	assert_string_equal(res.address, "support@example.org");
	assert_int_equal(res.smtp_code, 250);
	static const char *const expect[] = {
		"domain example.org is an alias of example.com",
		"support@example.org -> support@example.com",
		"alias support@example.com: 3 targets",
		"  user alice@example.com",
		"  => local alice@example.com",
		"  alias team@example.com: 3 targets",
		"    user bob@example.com",
		"    => local bob@example.com",
		"    user carol@example.com",
		"    => local carol@example.com",
		"    user alice@example.com",
		"    local alice@example.com: already a recipient",
		"  => named webhook:tickets",
	};
	assert_int_equal(res.trace_count, sizeof(expect) / sizeof(expect[0]));
	for (size_t i = 0; i < res.trace_count; i++)
		assert_string_equal(res.trace[i], expect[i]);
	route_result_deinit(&res);

	opt.trace = false;
	assert_int_equal(route_resolve(d, &opt, "support@example.com", &res, &error), 1);
	assert_int_equal(res.trace_count, 0);
	assert_int_equal(res.rcpt_count, 4);
	route_result_deinit(&res);
	opt.max_recipients = 2;
	assert_int_equal(route_resolve(d, &opt, "support@example.com", &res, &error), 1);
	assert_int_equal(res.rcpt_count, 2);
	assert_true(res.truncated);
	route_result_deinit(&res);
	directory_close(&d);
}

static void test_regex_cache(void **state)
{
	struct directory *d = fixture();
	struct route_options opt = { .subaddress_separator = '+' };
	struct route_result res;
	char *error = NULL;

	assert_int_equal(route_resolve(d, &opt, "help@example.com", &res, &error), 1);
	assert_int_equal(res.status, ROUTE_UNKNOWN_USER);
	route_result_deinit(&res);
	alias(d, "^(help|info)@example\\.com$", true, "carol@example.com");
	assert_int_equal(route_resolve(d, &opt, "help@example.com", &res, &error), 1);
	assert_int_equal(res.status, ROUTE_OK);
	assert_string_equal(res.rcpt[0].address, "carol@example.com");
	route_result_deinit(&res);
	assert_int_equal(directory_alias_del(d, "^(help|info)@example\\.com$", &error), 1);
	assert_int_equal(route_resolve(d, &opt, "help@example.com", &res, &error), 1);
	assert_int_equal(res.status, ROUTE_UNKNOWN_USER);
	route_result_deinit(&res);
	directory_close(&d);
}

static void test_regex_check(void **state)
{
	static const struct { const char *pattern; const char *targets; const char *error; } cases[] = {
		{ "^(.+)-sales@example\\.com$", "$1@sales.example.com", NULL },
		{ "^(a)(b)$", "$2@x.test $1@y.test $$@z.test", NULL },
		{ "^(a$", "x@y.test", "bad regex '^(a$' at offset 4: missing closing parenthesis" },
		{ "^(a)$", "$2@y.test", "target '$2@y.test' uses $2 but the pattern has 1 capture group" },
		{ "^a$", "$1@y.test", "target '$1@y.test' uses $1 but the pattern has 0 capture groups" },
		{ "^a$", "nothing", "bad target 'nothing': target must be an address or a named target KIND:NAME (webhook:x, pipe:x)" },
		{ "", "a@b.test", "regex pattern must be 1-1024 bytes" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *copy = xstrdup(cases[i].targets), *save = NULL, *error = NULL;
		const char *list[8];
		size_t n = 0;
		for (char *t = strtok_r(copy, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save))
			list[n++] = t;
		int ret = route_regex_check(cases[i].pattern, list, n, &error);
		if (cases[i].error == NULL ? ret != 0 : (ret != -1 || strcmp(error, cases[i].error) != 0))
			fail_msg("case %zu: %d %s", i, ret, error != NULL ? error : "-");
		free(error);
		free(copy);
	}
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* 100k users and 10k aliases: resolution must stay index-bound (< 50 µs in a release build). */
static void test_scale(void **state)
{
	char *error = NULL;
	struct directory *d = directory_open(":memory:", false, &error);
	assert_non_null(d);
	domain(d, "big.test", DIRECTORY_DOMAIN_LOCAL, NULL, NULL);
	must(directory_begin(d, &error), error);
	for (int i = 0; i < 100000; i++) {
		char a[64];
		snprintf(a, sizeof(a), "user%d@big.test", i);
		user(d, a);
	}
	for (int i = 0; i < 10000; i++) {
		char a[64], t1[64], t2[64];
		snprintf(a, sizeof(a), "alias%d@big.test", i);
		snprintf(t1, sizeof(t1), "user%d@big.test", i * 7 % 100000);
		snprintf(t2, sizeof(t2), "user%d@big.test", i * 13 % 100000);
		const char *t[] = { t1, t2 };
		must(directory_alias_add(d, a, false, t, 2, &error), error);
	}
	must(directory_commit(d, &error), error);

	struct route_options opt = { .subaddress_separator = '+' };
	const int n = 3000;
	double start = now_us();
	for (int i = 0; i < n; i++) {
		char a[64];
		if (i % 3 == 0)
			snprintf(a, sizeof(a), "user%d@big.test", i * 31 % 100000);
		else if (i % 3 == 1)
			snprintf(a, sizeof(a), "alias%d@big.test", i * 17 % 10000);
		else
			snprintf(a, sizeof(a), "user%d+tag@big.test", i);
		struct route_result res;
		assert_int_equal(route_resolve(d, &opt, a, &res, &error), 1);
		assert_int_equal(res.status, ROUTE_OK);
		route_result_deinit(&res);
	}
	double per = (now_us() - start) / n;
	fprintf(stderr, "route_resolve: %.1f us per resolution (100k users, 10k aliases)\n", per);
	/* Generous for sanitizer builds; a missing index makes this milliseconds. */
	assert_true(per < 500.0);
	directory_close(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resolve),
		cmocka_unit_test(test_replies_and_trace),
		cmocka_unit_test(test_regex_cache),
		cmocka_unit_test(test_regex_check),
		cmocka_unit_test(test_scale),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
