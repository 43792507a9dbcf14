/* check-config: load and validate the configuration; errors as file:line:col: message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"

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
	conf_free(&cfg);
	printf("ok: %s\n", ctx->config_path);
	return 0;
}
