/*
 * check-config: load and validate the configuration; errors as file:line:col: message.
 * Beyond conf_load, the files the server will read (tls.cert, tls.key, rules)
 * must exist (errors at 0:0, as they are not tied to a place in the file).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "lookup/lookup_rules.h"

int cli_check_config_main(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc > 1) {
		if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
			printf("usage: mailroute check-config -c FILE\n");
			return 0;
		}
		return cli_usage("check-config takes no arguments besides -c FILE");
	}
	char *error = NULL;
	struct mr_config *cfg = conf_load(ctx->config_path, &error);
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", error);
		free(error);
		return 2;
	}
	const struct { const char *key, *path; } files[] = {
		{ "tls.cert", cfg->tls_cert },
		{ "tls.key", cfg->tls_key },
		{ "rules", cfg->rules },
	};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct stat st;
		if (files[i].path == NULL)
			continue;
		const char *why = stat(files[i].path, &st) < 0 ? strerror(errno)
				  : !S_ISREG(st.st_mode) ? "not a regular file" : NULL;
		if (why != NULL) {
			fprintf(stderr, "%s:0:0: %s: %s: %s\n", ctx->config_path, files[i].key, files[i].path, why);
			conf_free(&cfg);
			return 2;
		}
	}
	if (cfg->rules != NULL) {
		/* The system rules must compile: errors as rules-file:line:col: message. */
		struct sieve_script *rules = rules_load(cfg->rules, &error);
		if (rules == NULL) {
			fprintf(stderr, "%s\n", error);
			free(error);
			conf_free(&cfg);
			return 2;
		}
		sieve_script_free(&rules);
	}
	conf_free(&cfg);
	printf("ok: %s\n", ctx->config_path);
	return 0;
}
