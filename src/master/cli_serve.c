#include <stdio.h>

#include "cli/cli.h"
#include "master/master.h"

int cli_serve_main(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc > 1)
		return cli_usage("serve takes no arguments besides -c FILE (got '%s')", argv[1]);
	struct mr_config *cfg = cli_config(ctx);
	return master_run(cfg);
}
