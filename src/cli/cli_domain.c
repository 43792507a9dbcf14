/*
 * domain: mailroute domain add NAME [--type local|relay|backup] [--relay HOST[:PORT]] [--alias-of DOMAIN]
 *         mailroute domain list | del NAME
 * Also the helper the directory subcommands (domain, user, alias) share.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "lib-route/directory.h"
#include "lib/xalloc.h"

struct directory *cli_directory_open(struct cli_ctx *ctx, bool readonly, int *exit_r);
int cli_option(int argc, char **argv, int *i, const char *name, const char **value_r);

/*
 * Open the directory for a subcommand: load the config, prepare <data_dir>/db
 * (as root: owned by cfg->user), drop privileges to cfg->user, open. NULL with
 * *exit_r = 1 on failure, or *exit_r = 0 when readonly and there is no
 * database yet (nothing to list).
 */
struct directory *cli_directory_open(struct cli_ctx *ctx, bool readonly, int *exit_r)
{
	struct mr_config *cfg = cli_config(ctx);
	char *error = NULL;

	*exit_r = 1;
	if (!readonly && directory_prepare(cfg, cfg->user, &error) < 0) {
		cli_fail("%s", error);
		free(error);
		return NULL;
	}
	if (cli_drop_privileges(cfg, cfg->user) < 0)
		return NULL;
	char *path = directory_path(cfg);
	if (readonly && access(path, F_OK) < 0) {
		free(path);
		*exit_r = 0;
		return NULL;
	}
	struct directory *d = directory_open(path, readonly, &error);
	free(path);
	if (d == NULL) {
		cli_fail("%s", error);
		free(error);
	}
	return d;
}

/*
 * "--name VALUE" or "--name=VALUE" at argv[*i]: 1 and *value_r set (and *i
 * advanced past a separate value), 0 if argv[*i] is not this option, -1 if
 * the value is missing.
 */
int cli_option(int argc, char **argv, int *i, const char *name, const char **value_r)
{
	size_t len = strlen(name);
	const char *a = argv[*i];
	if (strncmp(a, name, len) != 0)
		return 0;
	if (a[len] == '=') {
		*value_r = a + len + 1;
		return 1;
	}
	if (a[len] != '\0')
		return 0;
	if (*i + 1 >= argc)
		return -1;
	*value_r = argv[++*i];
	return 1;
}

/* "host", "host:port", "[v6]:port", "1.2.3.4:port" */
static bool relay_check(const char *relay)
{
	const char *host = relay, *port = NULL;
	size_t host_len;
	if (relay[0] == '[') {
		const char *end = strchr(relay, ']');
		if (end == NULL || end == relay + 1)
			return false;
		if (end[1] == ':')
			port = end + 2;
		else if (end[1] != '\0')
			return false;
		host_len = 0;
	} else {
		const char *colon = strchr(relay, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			return false;
		host_len = colon != NULL ? (size_t)(colon - relay) : strlen(relay);
		port = colon != NULL ? colon + 1 : NULL;
		char buf[256];
		const char *why;
		if (host_len == 0 || host_len >= sizeof(buf))
			return false;
		memcpy(buf, host, host_len);
		buf[host_len] = '\0';
		if (!directory_domain_normalize(buf, buf, sizeof(buf), &why))
			return false;
	}
	if (port != NULL) {
		unsigned long v = 0;
		if (*port == '\0' || strlen(port) > 5)
			return false;
		for (const char *p = port; *p != '\0'; p++) {
			if (*p < '0' || *p > '9')
				return false;
			v = v * 10 + (unsigned long)(*p - '0');
		}
		if (v < 1 || v > 65535)
			return false;
	}
	return true;
}

static int domain_add(struct cli_ctx *ctx, int argc, char **argv)
{
	const char *name = NULL, *type_name = "local", *relay = NULL, *alias_of = NULL, *why;
	enum directory_domain_type type;
	char norm[256];

	for (int i = 2; i < argc; i++) {
		int r;
		const char *v;
		if ((r = cli_option(argc, argv, &i, "--type", &v)) != 0) {
			if (r < 0)
				return cli_usage("--type needs local, relay or backup");
			type_name = v;
		} else if ((r = cli_option(argc, argv, &i, "--relay", &v)) != 0) {
			if (r < 0)
				return cli_usage("--relay needs HOST[:PORT]");
			relay = v;
		} else if ((r = cli_option(argc, argv, &i, "--alias-of", &v)) != 0) {
			if (r < 0)
				return cli_usage("--alias-of needs a DOMAIN");
			alias_of = v;
		} else if (argv[i][0] == '-') {
			return cli_usage("domain add: unknown option '%s'", argv[i]);
		} else if (name == NULL) {
			name = argv[i];
		} else {
			return cli_usage("domain add takes one NAME");
		}
	}
	if (name == NULL)
		return cli_usage("usage: domain add NAME [--type local|relay|backup] [--relay HOST[:PORT]] [--alias-of DOMAIN]");
	if (!directory_domain_normalize(name, norm, sizeof(norm), &why))
		return cli_usage("bad domain '%s': %s", name, why);
	if (!directory_domain_type_parse(type_name, &type))
		return cli_usage("bad --type '%s' (expected local, relay or backup)", type_name);
	if (relay != NULL && type == DIRECTORY_DOMAIN_LOCAL)
		return cli_usage("--relay needs --type relay or backup");
	if (relay != NULL && !relay_check(relay))
		return cli_usage("bad --relay '%s' (expected HOST[:PORT])", relay);
	if (alias_of != NULL && (type != DIRECTORY_DOMAIN_LOCAL || relay != NULL))
		return cli_usage("--alias-of cannot be combined with --type or --relay");

	int code;
	struct directory *d = cli_directory_open(ctx, false, &code);
	if (d == NULL)
		return code;
	char *error = NULL;
	int ret;
	if (alias_of != NULL) {
		struct directory_domain target;
		ret = directory_domain_get(d, alias_of, &target, &error);
		if (ret == 0) {
			directory_close(&d);
			return cli_fail("domain %s does not exist: add it before its alias", alias_of);
		}
		if (ret > 0)
			directory_domain_deinit(&target);
	}
	struct directory_domain dom = { .name = norm, .type = type, .relay = (char *)relay, .alias_of = (char *)alias_of };
	ret = error == NULL ? directory_domain_add(d, &dom, &error) : -1;
	directory_close(&d);
	if (ret < 0) {
		code = cli_fail("%s", error);
		free(error);
		return code;
	}
	if (ret == 0)
		return cli_fail("domain %s already exists", norm);
	return 0;
}

static int domain_print(const struct directory_domain *dom, void *ctx)
{
	printf("%s\t%s\t%s\t%s\n", dom->name, dom->alias_of != NULL ? "alias" : directory_domain_type_name(dom->type),
	       dom->relay != NULL ? dom->relay : "-", dom->alias_of != NULL ? dom->alias_of : "-");
	return 0;
}

static int domain_list(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc != 2)
		return cli_usage("domain list takes no arguments");
	int code;
	struct directory *d = cli_directory_open(ctx, true, &code);
	if (d == NULL)
		return code;
	char *error = NULL;
	int ret = directory_domain_list(d, domain_print, NULL, &error);
	directory_close(&d);
	if (ret < 0) {
		code = cli_fail("%s", error);
		free(error);
		return code;
	}
	return fflush(stdout) == 0 ? 0 : cli_fail("write error on stdout");
}

static int domain_del(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc != 3 || argv[2][0] == '-')
		return cli_usage("usage: domain del NAME");
	int code;
	struct directory *d = cli_directory_open(ctx, false, &code);
	if (d == NULL)
		return code;
	char *error = NULL;
	int64_t users = directory_user_count(d, argv[2], &error);
	int ret = -1;
	if (users > 0) {
		directory_close(&d);
		return cli_fail("domain %s still has %lld user%s: delete them first", argv[2], (long long)users,
				users == 1 ? "" : "s");
	}
	if (users == 0)
		ret = directory_domain_del(d, argv[2], &error);
	directory_close(&d);
	if (ret < 0) {
		code = cli_fail("%s", error);
		free(error);
		return code;
	}
	if (ret == 0)
		return cli_fail("no domain %s", argv[2]);
	return 0;
}

static int domain_dispatch(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage("usage: domain add NAME [--type local|relay|backup] [--relay HOST[:PORT]] | list | del NAME");
	if (strcmp(argv[1], "add") == 0)
		return domain_add(ctx, argc, argv);
	if (strcmp(argv[1], "list") == 0)
		return domain_list(ctx, argc, argv);
	if (strcmp(argv[1], "del") == 0)
		return domain_del(ctx, argc, argv);
	return cli_usage("domain: unknown subcommand '%s' (add, list, del)", argv[1]);
}

int cli_domain_main(struct cli_ctx *ctx, int argc, char **argv)
{
	int ret = domain_dispatch(ctx, argc, argv);
	/* Nothing runs after a subcommand: free the config here so leak checkers stay quiet. */
	conf_free(&ctx->cfg);
	return ret;
}
