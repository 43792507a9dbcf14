/*
 * fuzz-route: any bytes as a recipient address, resolved against a small fixed
 * directory (in memory) with aliases, nesting, a loop, regex aliases, a
 * catch-all, a domain alias and subaddressing. Must never crash or leak, and
 * recipients appear only on ROUTE_OK, each once.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib-route/route.h"

static struct directory *dir;

static void add_alias(const char *address, bool is_regex, const char *t1, const char *t2)
{
	char *error = NULL;
	const char *t[] = { t1, t2 };
	if (directory_alias_add(dir, address, is_regex, t, t2 != NULL ? 2 : 1, &error) < 0)
		abort();
}

static void setup(void)
{
	char *error = NULL;
	dir = directory_open(":memory:", false, &error);
	if (dir == NULL)
		abort();
	struct directory_domain doms[] = {
		{ .name = "example.com" },
		{ .name = "example.org", .alias_of = "example.com" },
		{ .name = "relay.test", .type = DIRECTORY_DOMAIN_RELAY, .relay = "smart:25" },
	};
	for (size_t i = 0; i < sizeof(doms) / sizeof(doms[0]); i++)
		if (directory_domain_add(dir, &doms[i], &error) < 0)
			abort();
	const char *users[] = { "alice@example.com", "bob@example.com", "a+b@example.com" };
	for (size_t i = 0; i < 3; i++)
		if (directory_user_add(dir, users[i], "$y$x", &error) < 0)
			abort();
	add_alias("support@example.com", false, "alice@example.com", "team@example.com");
	add_alias("team@example.com", false, "bob@example.com", "alice@example.com");
	add_alias("l1@example.com", false, "l2@example.com", "webhook:x");
	add_alias("l2@example.com", false, "l1@example.com", NULL);
	add_alias("^(.*)-(.*)@example\\.com$", true, "$2@example.com", "$1@remote.test");
	add_alias("^(x+x+)+y@example\\.com$", true, "alice@example.com", NULL);
	add_alias("@example.com", false, "bob@example.com", NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (dir == NULL)
		setup();
	if (size > 2048)
		return 0;
	char *address = malloc(size + 1);
	memcpy(address, data, size);
	address[size] = '\0';
	struct route_options opt = { .subaddress_separator = size > 0 ? (char)data[0] : '+', .trace = (size & 1) != 0 };
	if (opt.subaddress_separator == '@' || opt.subaddress_separator == '\0')
		opt.subaddress_separator = '+';
	struct route_result res;
	char *error = NULL;
	int ret = route_resolve(dir, &opt, address, &res, &error);
	if (ret != 1)
		abort();
	if (res.status != ROUTE_OK && res.rcpt_count != 0)
		abort();
	for (size_t i = 0; i < res.rcpt_count; i++)
		for (size_t j = i + 1; j < res.rcpt_count; j++)
			if (res.rcpt[i].kind == res.rcpt[j].kind && strcmp(res.rcpt[i].address, res.rcpt[j].address) == 0)
				abort();
	route_result_deinit(&res);
	free(address);
	return 0;
}
