/*
 * The one `mailroute` binary: finds -c FILE anywhere on the command line and
 * dispatches to a subcommand (src/cli/cli.h). Invoked as `sendmail` or `mailq`
 * it behaves like Postfix's entry points.
 */
#include <libgen.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"

#define DEFAULT_CONFIG "/etc/mailroute/mailroute.yaml"

struct command {
	const char *name;
	cli_main_fn *fn;
	const char *usage;
};

static const struct command commands[] = {
#define MR_COMMAND(name, fn, usage) { name, fn, usage },
#include "cli/commands.def"
#undef MR_COMMAND
};

static void usage(FILE *out)
{
	fprintf(out, "usage: mailroute [-c FILE] COMMAND [ARGS...]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %s\n", commands[i].usage);
	fprintf(out, "\n-c FILE defaults to %s\n", DEFAULT_CONFIG);
}

int main(int argc, char **argv)
{
	struct cli_ctx ctx = { .config_path = DEFAULT_CONFIG };
	char *args[argc + 1];
	int n = 0;

	for (int i = 0; i < argc; i++) {
		if (i > 0 && (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0)) {
			if (i + 1 >= argc)
				return cli_usage("-c needs a FILE");
			ctx.config_path = argv[++i];
		} else if (i > 0 && strncmp(argv[i], "--config=", 9) == 0) {
			ctx.config_path = argv[i] + 9;
		} else {
			args[n++] = argv[i];
		}
	}
	args[n] = NULL;

	const char *self = basename(argv[0]);
	if (strcmp(self, "sendmail") == 0 || strcmp(self, "mailq") == 0) {
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
			if (strcmp(commands[i].name, self) == 0)
				return commands[i].fn(&ctx, n, args);
		return cli_usage("%s is not available in this build", self);
	}
	if (n < 2)
		return usage(stderr), 2;
	if (strcmp(args[1], "help") == 0 || strcmp(args[1], "--help") == 0 || strcmp(args[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(args[1], "--version") == 0 || strcmp(args[1], "version") == 0) {
		printf("mailroute %s\n", MR_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, args[1]) == 0)
			return commands[i].fn(&ctx, n - 1, args + 1);
	return cli_usage("unknown command '%s' (see 'mailroute help')", args[1]);
}
