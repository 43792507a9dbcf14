/*
 * alias: mailroute alias add ADDRESS TARGET...        (ADDRESS "@domain" = catch-all)
 *        mailroute alias add --regex PATTERN TARGET... (captures as $1..$9 in targets)
 *        mailroute alias list | del ADDRESS | del --regex PATTERN
 * A TARGET is an address or a named target KIND:NAME (webhook:x, pipe:x).
 * list prints KIND<TAB>ADDRESS<TAB>TARGET, KIND being alias, catchall or regex.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "lib-route/directory.h"
#include "lib-route/route.h"
#include "lib/xalloc.h"

/* Defined in cli_domain.c. */
struct directory *cli_directory_open(struct cli_ctx *ctx, bool readonly, int *exit_r);

static int alias_add(struct cli_ctx *ctx, int argc, char **argv)
{
	bool is_regex = false;
	int first = 2;
	char key[DIRECTORY_MAX_ADDRESS + 1], *error = NULL;
	const char *why;

	if (argc > 2 && strcmp(argv[2], "--regex") == 0) {
		is_regex = true;
		first = 3;
	}
	if (argc - first < 2)
		return cli_usage("usage: alias add ADDRESS TARGET... | alias add --regex PATTERN TARGET...");
	const char *address = argv[first];
	const char *const *targets = (const char *const *)argv + first + 1;
	size_t count = (size_t)(argc - first - 1);
	for (size_t i = 0; i < count; i++)
		if (!directory_target_check(targets[i], &why))
			return cli_usage("bad target '%s': %s", targets[i], why);
	if (is_regex) {
		if (route_regex_check(address, targets, count, &error) < 0) {
			int code = cli_usage("%s", error);
			free(error);
			return code;
		}
	} else {
		if (!directory_address_normalize(address, true, key, sizeof(key), &why))
			return cli_usage("bad alias address '%s': %s", address, why);
		for (size_t i = 0; i < count; i++)
			if (strchr(targets[i], '$') != NULL)
				return cli_usage("target '%s': $N captures need --regex", targets[i]);
	}

	int code;
	struct directory *d = cli_directory_open(ctx, false, &code);
	if (d == NULL)
		return code;
	int ret = 0;
	if (!is_regex) {
		/* An alias of a domain we don't handle, or shadowed by a user, would never be used. */
		const char *domain = strrchr(key, '@') + 1;
		struct directory_domain dom;
		ret = directory_domain_get(d, domain, &dom, &error);
		if (ret == 0) {
			directory_close(&d);
			return cli_fail("domain %s does not exist (add it first: mailroute domain add %s)", domain, domain);
		}
		if (ret > 0) {
			bool local = dom.type == DIRECTORY_DOMAIN_LOCAL && dom.alias_of == NULL;
			directory_domain_deinit(&dom);
			if (!local) {
				directory_close(&d);
				return cli_fail("domain %s is not a local domain: aliases there are never used", domain);
			}
			if (key[0] != '@')
				ret = directory_user_get(d, key, NULL, &error);
			else
				ret = 0;
			if (ret > 0) {
				directory_close(&d);
				return cli_fail("%s is a user: an alias with that address would never be used", key);
			}
		}
	}
	if (ret == 0)
		ret = directory_alias_add(d, is_regex ? address : key, is_regex, targets, count, &error);
	directory_close(&d);
	if (ret < 0) {
		code = cli_fail("%s", error);
		free(error);
		return code;
	}
	if (ret == 0)
		fprintf(stderr, "mailroute: alias %s already has %s\n", is_regex ? address : key,
			count == 1 ? "this target" : "these targets");
	return 0;
}

static int alias_print(const char *address, bool is_regex, const char *target, void *ctx)
{
	printf("%s\t%s\t%s\n", is_regex ? "regex" : address[0] == '@' ? "catchall" : "alias", address, target);
	return 0;
}

static int alias_list(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc != 2)
		return cli_usage("alias list takes no arguments");
	int code;
	struct directory *d = cli_directory_open(ctx, true, &code);
	if (d == NULL)
		return code;
	char *error = NULL;
	int ret = directory_alias_list(d, alias_print, NULL, &error);
	directory_close(&d);
	if (ret < 0) {
		code = cli_fail("%s", error);
		free(error);
		return code;
	}
	return fflush(stdout) == 0 ? 0 : cli_fail("write error on stdout");
}

static int alias_del(struct cli_ctx *ctx, int argc, char **argv)
{
	int first = argc > 2 && strcmp(argv[2], "--regex") == 0 ? 3 : 2;
	if (argc != first + 1)
		return cli_usage("usage: alias del ADDRESS | alias del --regex PATTERN");
	int code;
	struct directory *d = cli_directory_open(ctx, false, &code);
	if (d == NULL)
		return code;
	char *error = NULL;
	int ret = directory_alias_del(d, argv[first], &error);
	directory_close(&d);
	if (ret < 0) {
		code = cli_fail("%s", error);
		free(error);
		return code;
	}
	return ret == 0 ? cli_fail("no alias %s", argv[first]) : 0;
}

static int alias_dispatch(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage("usage: alias add [--regex] ADDRESS TARGET... | list | del ADDRESS");
	if (strcmp(argv[1], "add") == 0)
		return alias_add(ctx, argc, argv);
	if (strcmp(argv[1], "list") == 0)
		return alias_list(ctx, argc, argv);
	if (strcmp(argv[1], "del") == 0)
		return alias_del(ctx, argc, argv);
	return cli_usage("alias: unknown subcommand '%s' (add, list, del)", argv[1]);
}

int cli_alias_main(struct cli_ctx *ctx, int argc, char **argv)
{
	int ret = alias_dispatch(ctx, argc, argv);
	/* Nothing runs after a subcommand: free the config here so leak checkers stay quiet. */
	conf_free(&ctx->cfg);
	return ret;
}
