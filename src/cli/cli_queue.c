/*
 * `mailroute queue ...`, `mailroute quarantine ...` and `mailq`: loads the config,
 * drops to cfg->user (the owner of the queue files) when run as root, then runs
 * src/queue/queue_cli.c on <data_dir>/queue.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "queue/queue_cli.h"

/* Run a queue command (or mailq) on <data_dir>/queue as cfg->user. */
static int cli_queue_run(struct cli_ctx *ctx, int argc, char **argv, bool mailq)
{
	if (!mailq && !queue_cli_check(argc, argv, stderr))
		return 2;
	struct mr_config *cfg = cli_config(ctx);
	int ret = 1;
	if (cli_drop_privileges(cfg, cfg->user) == 0) {
		char *dir = conf_path(cfg, "queue");
		ret = mailq ? queue_cli_mailq(dir, stdout, stderr) : queue_cli_run(dir, argc, argv, stdout, stderr);
		free(dir);
	}
	conf_free(&ctx->cfg);
	if (fflush(stdout) != 0 && ret == 0)
		ret = cli_fail("write error on stdout");
	return ret;
}

int cli_queue_main(struct cli_ctx *ctx, int argc, char **argv)
{
	return cli_queue_run(ctx, argc, argv, false);
}

int cli_quarantine_main(struct cli_ctx *ctx, int argc, char **argv)
{
	return cli_queue_run(ctx, argc, argv, false); /* queue_cli dispatches on argv[0] */
}

/* `mailq` and `mailroute mailq`: the queue in Postfix's format (options ignored). */
int cli_mailq_main(struct cli_ctx *ctx, int argc, char **argv)
{
	return cli_queue_run(ctx, argc, argv, true);
}
