/*
 * transport: mailroute transport set DOMAIN RELAY_OR_GROUP | list | del DOMAIN
 * DOMAIN: "example.com" (that domain), ".example.com" (its subdomains) or "*"
 * (every other destination). The relay or group must exist (relay add).
 * list: DOMAIN TAB RELAY_OR_GROUP, by domain, "*" last.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "lib-route/directory.h"
#include "lib-route/relays.h"
#include "lib/xalloc.h"

/* Defined in cli_domain.c. */
struct directory *cli_directory_open(struct cli_ctx *ctx, bool readonly, int *exit_r);

#define TRANSPORT_USAGE "usage: transport set DOMAIN RELAY_OR_GROUP | list | del DOMAIN"

static int transport_cmd_set(struct cli_ctx *ctx, int argc, char **argv)
{
	char key[DIRECTORY_MAX_ADDRESS + 2];
	const char *why;
	if (argc != 4 || argv[2][0] == '-' || argv[3][0] == '-')
		return cli_usage("usage: transport set DOMAIN RELAY_OR_GROUP");
	if (!transport_key_normalize(argv[2], key, sizeof(key), &why))
		return cli_usage("bad domain '%s': %s", argv[2], why);
	if (!relays_name_check(argv[3], &why))
		return cli_usage("bad relay or group name '%s': %s", argv[3], why);
	int code;
	struct directory *d = cli_directory_open(ctx, false, &code);
	if (d == NULL)
		return code;
	char *error = NULL;
	int ret = transport_set(d, key, argv[3], &error);
	directory_close(&d);
	if (ret < 0) {
		code = cli_fail("%s", error);
		free(error);
		return code;
	}
	if (ret == 0)
		return cli_fail("no relay or group %s (add it first: mailroute relay add %s --host HOST:PORT)", argv[3],
				argv[3]);
	return 0;
}

static int transport_print(const char *key, const char *relay_or_group, void *ctx)
{
	(void)ctx;
	printf("%s\t%s\n", key, relay_or_group);
	return 0;
}

static int transport_cmd_list(struct cli_ctx *ctx, int argc, char **argv)
{
	(void)argv;
	if (argc != 2)
		return cli_usage("transport list takes no arguments");
	int code;
	struct directory *d = cli_directory_open(ctx, true, &code);
	if (d == NULL)
		return code;
	char *error = NULL;
	int ret = transport_list(d, transport_print, NULL, &error);
	directory_close(&d);
	if (ret < 0) {
		code = cli_fail("%s", error);
		free(error);
		return code;
	}
	return fflush(stdout) == 0 ? 0 : cli_fail("write error on stdout");
}

static int transport_cmd_del(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc != 3 || argv[2][0] == '-')
		return cli_usage("usage: transport del DOMAIN");
	int code;
	struct directory *d = cli_directory_open(ctx, false, &code);
	if (d == NULL)
		return code;
	char *error = NULL;
	int ret = transport_del(d, argv[2], &error);
	directory_close(&d);
	if (ret < 0) {
		code = cli_fail("%s", error);
		free(error);
		return code;
	}
	if (ret == 0)
		return cli_fail("no transport for %s", argv[2]);
	return 0;
}

static int transport_dispatch(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage(TRANSPORT_USAGE);
	if (strcmp(argv[1], "set") == 0)
		return transport_cmd_set(ctx, argc, argv);
	if (strcmp(argv[1], "list") == 0)
		return transport_cmd_list(ctx, argc, argv);
	if (strcmp(argv[1], "del") == 0)
		return transport_cmd_del(ctx, argc, argv);
	return cli_usage("transport: unknown subcommand '%s' (set, list, del)", argv[1]);
}

int cli_transport_main(struct cli_ctx *ctx, int argc, char **argv)
{
	int ret = transport_dispatch(ctx, argc, argv);
	conf_free(&ctx->cfg);
	return ret;
}
