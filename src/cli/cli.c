#include "cli/cli.h"

#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct mr_config *cli_config(struct cli_ctx *ctx)
{
	if (ctx->cfg != NULL)
		return ctx->cfg;
	char *error = NULL;
	ctx->cfg = conf_load(ctx->config_path, &error);
	if (ctx->cfg == NULL) {
		fprintf(stderr, "%s\n", error);
		free(error);
		exit(2);
	}
	return ctx->cfg;
}

static void cli_vprint(const char *fmt, va_list ap)
{
	fputs("mailroute: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

int cli_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cli_vprint(fmt, ap);
	va_end(ap);
	return 2;
}

int cli_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cli_vprint(fmt, ap);
	va_end(ap);
	return 1;
}

int cli_drop_privileges(const struct mr_config *cfg, const char *user)
{
	(void)cfg;
	if (geteuid() != 0)
		return 0;
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		fprintf(stderr, "mailroute: user %s does not exist (run scripts/install-deps)\n", user);
		return -1;
	}
	if (setgroups(1, &pw->pw_gid) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0) {
		perror("mailroute: dropping privileges");
		return -1;
	}
	return 0;
}
