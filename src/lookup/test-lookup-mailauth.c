/* lookup_mailauth: the From: address extractor and the sender ownership rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib-route/directory.h"
#include "lookup/lookup_mailauth.h"

static void test_from_address(void **state)
{
	static const struct {
		const char *value;
		size_t count;
		const char *addr;
	} cases[] = {
		{ " alice@example.test", 1, "alice@example.test" },
		{ " <alice@example.test>", 1, "alice@example.test" },
		{ " Alice <alice@example.test>", 1, "alice@example.test" },
		{ " \"Smith, Alice\" <alice@example.test>", 1, "alice@example.test" },
		{ " \"a <b@evil.test>\" <alice@example.test>", 1, "alice@example.test" },
		{ " alice@example.test (Alice <bob@example.test>)", 1, "alice@example.test" },
		{ " (comment, with comma) <alice@example.test>", 1, "alice@example.test" },
		{ " Alice\r\n\t<alice@example.test>\r\n", 1, "alice@example.test" },
		{ " <alice@example.test>, <bob@example.test>", 2, "alice@example.test" },
		{ " alice@example.test,bob@example.test", 2, "alice@example.test" },
		{ " ", 0, "" },
		{ " <>", 0, "" },
		{ " (only a comment)", 0, "" },
		{ " \"unterminated <bob@example.test>", 1, "\"unterminated <bob@example.test>" },
		{ " \"x <alice@example.test>\" <bob@example.test>", 1, "bob@example.test" },
		{ " <alice@example.test> <bob@example.test>", 2, "alice@example.test" },
		{ " a@b, <c@d, e@f>", 2, "a@b" },
		{ " <alice@example.test", 1, "alice@example.test" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[512];
		size_t n = lookup_from_address(cases[i].value, strlen(cases[i].value), out, sizeof(out));
		if (n != cases[i].count || strcmp(out, cases[i].addr) != 0)
			fail_msg("case %zu: got %zu '%s', expected %zu '%s'", i, n, out, cases[i].count, cases[i].addr);
	}
	/* a small output buffer truncates, never overflows */
	char small[8];
	assert_int_equal(lookup_from_address(" <alice@example.test>", 21, small, sizeof(small)), 1);
	assert_string_equal(small, "alice@e");
}

static void must(int ret, char *error)
{
	if (ret < 0)
		fail_msg("%s", error != NULL ? error : "error");
	free(error);
}

static void test_sender_allowed(void **state)
{
	char *error = NULL;
	struct directory *d = directory_open(":memory:", false, &error);
	if (d == NULL)
		fail_msg("%s", error);
	struct directory_domain dom = { .name = "example.test", .type = DIRECTORY_DOMAIN_LOCAL };
	must(directory_domain_add(d, &dom, &error), error);
	struct directory_domain rel = { .name = "relay.test", .type = DIRECTORY_DOMAIN_RELAY, .relay = "smart:25" };
	must(directory_domain_add(d, &rel, &error), error);
	must(directory_user_add(d, "alice@example.test", "$y$x", &error), error);
	must(directory_user_add(d, "bob@example.test", "$y$x", &error), error);
	const char *sales[] = { "alice@example.test" };
	must(directory_alias_add(d, "sales@example.test", false, sales, 1, &error), error);
	const char *team[] = { "bob@example.test", "alice@example.test" };
	must(directory_alias_add(d, "team@example.test", false, team, 2, &error), error);
	const char *fwd[] = { "alice@remote.test" };
	must(directory_alias_add(d, "away@example.test", false, fwd, 1, &error), error);
	struct route_options ropt = { .subaddress_separator = '+' };
	static const struct {
		const char *user, *sender;
		int allowed;
	} cases[] = {
		{ "alice@example.test", "alice@example.test", 1 },
		{ "alice@example.test", "Alice@Example.TEST", 1 },
		{ "alice@example.test", "", 1 },
		{ "alice@example.test", "sales@example.test", 1 },
		{ "alice@example.test", "team@example.test", 1 },     /* a list she is on */
		{ "alice@example.test", "alice+news@example.test", 1 },
		{ "alice@example.test", "bob@example.test", 0 },
		{ "bob@example.test", "sales@example.test", 0 },
		{ "alice@example.test", "away@example.test", 0 },     /* resolves elsewhere */
		{ "alice@example.test", "nobody@example.test", 0 },
		{ "alice@example.test", "alice@remote.test", 0 },
		{ "alice@example.test", "alice@relay.test", 0 },
		{ "alice@example.test", "not an address", 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = lookup_sender_allowed(d, &ropt, cases[i].user, cases[i].sender, &error);
		if (r != cases[i].allowed)
			fail_msg("case %zu: %s as %s: got %d (%s)", i, cases[i].user, cases[i].sender, r,
			         error != NULL ? error : "");
		free(error);
		error = NULL;
	}
	directory_close(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_from_address),
		cmocka_unit_test(test_sender_allowed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
