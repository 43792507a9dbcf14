/*
 * cli: the subcommands of the one `mailroute` binary. main() finds `-c FILE`
 * anywhere on the command line (default /etc/mailroute/mailroute.yaml), then
 * calls the subcommand with argv[0] = its name. Exit codes: 0 success,
 * 1 runtime failure, 2 misuse (one line on stderr, via cli_usage()).
 */
#ifndef MR_CLI_H
#define MR_CLI_H

#include "conf/conf.h"

struct cli_ctx {
	const char *config_path;
	struct mr_config *cfg; /* loaded by cli_config(); NULL until then */
};

/* Load the config once; on error prints "file:line:col: message" and exits 2. */
struct mr_config *cli_config(struct cli_ctx *ctx);
/* Print "mailroute: <message>" on stderr and return 2. */
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "mailroute: <message>" on stderr and return 1. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * When run as root, switch to the unprivileged user that owns the state the
 * command touches (cfg->user for directory and queue), so files it creates
 * (SQLite -wal/-shm) stay readable by the roles. No-op when not root.
 */
int cli_drop_privileges(const struct mr_config *cfg, const char *user);

typedef int cli_main_fn(struct cli_ctx *ctx, int argc, char **argv);

#endif
