/*
 * `mailroute queue ...`, `mailroute quarantine ...` and `mailq`: loads the config, drops to cfg->user (the owner of the
 * queue files) when run as root, then runs src/queue/queue_cli.c on
 * <data_dir>/queue.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "queue/queue_cli.h"

int cli_queue_main(struct cli_ctx *ctx, int argc, char **argv)
{
	if (!queue_cli_check(argc, argv, stderr))
		return 2;
	struct mr_config *cfg = cli_config(ctx);
	if (cli_drop_privileges(cfg, cfg->user) < 0)
		return 1;
	char *dir = conf_path(cfg, "queue");
	int ret = queue_cli_run(dir, argc, argv, stdout, stderr);
	free(dir);
	return ret;
}

int cli_quarantine_main(struct cli_ctx *ctx, int argc, char **argv)
{
	return cli_queue_main(ctx, argc, argv); /* queue_cli dispatches on argv[0] */
}

/* `mailq` and `mailroute mailq`: the queue in Postfix's format (options ignored, like Postfix's -v). */
int cli_mailq_main(struct cli_ctx *ctx, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	struct mr_config *cfg = cli_config(ctx);
	if (cli_drop_privileges(cfg, cfg->user) < 0)
		return 1;
	char *dir = conf_path(cfg, "queue");
	int ret = queue_cli_mailq(dir, stdout, stderr);
	free(dir);
	return ret;
}
