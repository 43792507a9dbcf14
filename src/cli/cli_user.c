/*
 * user: mailroute user add ADDRESS | list | del ADDRESS | passwd ADDRESS
 * The password is the first line of stdin (CR/LF stripped); on a terminal it
 * is asked for twice without echo.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "lib-auth/password.h"
#include "lib-route/directory.h"
#include "lib/xalloc.h"

/* Defined in cli_domain.c. */
struct directory *cli_directory_open(struct cli_ctx *ctx, bool readonly, int *exit_r);

/* One line from fd 0 without stdio buffering, at most PASSWORD_MAX_LENGTH bytes. */
static int read_line(char *buf, size_t size, bool *too_long_r)
{
	size_t n = 0;
	*too_long_r = false;
	for (;;) {
		char c;
		ssize_t r = read(STDIN_FILENO, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0 || c == '\n')
			break;
		if (n + 1 >= size) {
			*too_long_r = true;
			continue;
		}
		buf[n++] = c;
	}
	while (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	return 0;
}

static int prompt(const char *text, char *buf, size_t size, bool *too_long_r)
{
	struct termios old, noecho;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	if (tty) {
		fputs(text, stderr);
		fflush(stderr);
		noecho = old;
		noecho.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho);
	}
	int ret = read_line(buf, size, too_long_r);
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	return ret;
}

/* The hash of the password given on stdin, or NULL with the exit code in *exit_r. */
static char *read_password_hash(int *exit_r)
{
	char pw[PASSWORD_MAX_LENGTH + 2], again[PASSWORD_MAX_LENGTH + 2];
	bool too_long;

	*exit_r = 1;
	if (prompt("Password: ", pw, sizeof(pw), &too_long) < 0) {
		cli_fail("cannot read the password from stdin: %s", strerror(errno));
		return NULL;
	}
	if (too_long) {
		secret_zero(pw, sizeof(pw));
		*exit_r = cli_usage("password longer than %d bytes", PASSWORD_MAX_LENGTH);
		return NULL;
	}
	if (pw[0] == '\0') {
		*exit_r = cli_usage("empty password (give it as the first line of stdin)");
		return NULL;
	}
	if (isatty(STDIN_FILENO)) {
		if (prompt("Retype password: ", again, sizeof(again), &too_long) < 0 || strcmp(pw, again) != 0) {
			secret_zero(pw, sizeof(pw));
			secret_zero(again, sizeof(again));
			*exit_r = cli_usage("passwords do not match");
			return NULL;
		}
		secret_zero(again, sizeof(again));
	}
	char *hash = password_hash(pw);
	secret_zero(pw, sizeof(pw));
	if (hash == NULL)
		cli_fail("cannot hash the password");
	return hash;
}

static int user_add(struct cli_ctx *ctx, int argc, char **argv)
{
	char norm[DIRECTORY_MAX_ADDRESS + 1], *error = NULL;
	const char *why;
	int code, ret;

	if (argc != 3 || argv[2][0] == '-')
		return cli_usage("usage: user add ADDRESS (password on stdin)");
	if (!directory_address_normalize(argv[2], false, norm, sizeof(norm), &why))
		return cli_usage("bad address '%s': %s", argv[2], why);
	struct directory *d = cli_directory_open(ctx, false, &code);
	if (d == NULL)
		return code;
	/* Check before asking for the password. */
	ret = directory_user_get(d, norm, NULL, &error);
	if (ret > 0) {
		directory_close(&d);
		return cli_fail("user %s already exists (to change the password: mailroute user passwd %s)", norm, norm);
	}
	struct directory_domain dom;
	const char *domain = strrchr(norm, '@') + 1;
	if (ret == 0)
		ret = directory_domain_get(d, domain, &dom, &error);
	if (ret < 0)
		goto fail;
	if (ret == 0) {
		directory_close(&d);
		return cli_fail("domain %s does not exist (add it first: mailroute domain add %s)", domain, domain);
	}
	bool local = dom.type == DIRECTORY_DOMAIN_LOCAL && dom.alias_of == NULL;
	directory_domain_deinit(&dom);
	if (!local) {
		directory_close(&d);
		return cli_fail("domain %s is not a local domain: users live in local domains only", domain);
	}
	char *hash = read_password_hash(&code);
	if (hash == NULL) {
		directory_close(&d);
		return code;
	}
	ret = directory_user_add(d, norm, hash, &error);
	free(hash);
	if (ret < 0)
		goto fail;
	directory_close(&d);
	if (ret == 0)
		return cli_fail("user %s already exists", norm);
	return 0;
fail:
	directory_close(&d);
	code = cli_fail("%s", error);
	free(error);
	return code;
}

static int user_passwd(struct cli_ctx *ctx, int argc, char **argv)
{
	char *error = NULL;
	int code;

	if (argc != 3 || argv[2][0] == '-')
		return cli_usage("usage: user passwd ADDRESS (password on stdin)");
	struct directory *d = cli_directory_open(ctx, false, &code);
	if (d == NULL)
		return code;
	int ret = directory_user_get(d, argv[2], NULL, &error);
	if (ret == 0) {
		directory_close(&d);
		return cli_fail("no user %s", argv[2]);
	}
	if (ret > 0) {
		char *hash = read_password_hash(&code);
		if (hash == NULL) {
			directory_close(&d);
			return code;
		}
		ret = directory_user_set_password(d, argv[2], hash, &error);
		free(hash);
	}
	directory_close(&d);
	if (ret < 0) {
		code = cli_fail("%s", error);
		free(error);
		return code;
	}
	return ret == 0 ? cli_fail("no user %s", argv[2]) : 0;
}

static int user_print(const char *address, int64_t created, void *ctx)
{
	char when[32] = "-";
	time_t t = (time_t)created;
	struct tm tm;
	if (gmtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%s\t%s\n", address, when);
	return 0;
}

static int user_list(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc != 2)
		return cli_usage("user list takes no arguments");
	int code;
	struct directory *d = cli_directory_open(ctx, true, &code);
	if (d == NULL)
		return code;
	char *error = NULL;
	int ret = directory_user_list(d, user_print, NULL, &error);
	directory_close(&d);
	if (ret < 0) {
		code = cli_fail("%s", error);
		free(error);
		return code;
	}
	return fflush(stdout) == 0 ? 0 : cli_fail("write error on stdout");
}

static int user_del(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc != 3 || argv[2][0] == '-')
		return cli_usage("usage: user del ADDRESS");
	int code;
	struct directory *d = cli_directory_open(ctx, false, &code);
	if (d == NULL)
		return code;
	char *error = NULL;
	int ret = directory_user_del(d, argv[2], &error);
	directory_close(&d);
	if (ret < 0) {
		code = cli_fail("%s", error);
		free(error);
		return code;
	}
	/* The mailbox under <data_dir>/mail/ is left in place on purpose. */
	return ret == 0 ? cli_fail("no user %s", argv[2]) : 0;
}

static int user_dispatch(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage("usage: user add ADDRESS | list | del ADDRESS | passwd ADDRESS");
	if (strcmp(argv[1], "add") == 0)
		return user_add(ctx, argc, argv);
	if (strcmp(argv[1], "list") == 0)
		return user_list(ctx, argc, argv);
	if (strcmp(argv[1], "del") == 0)
		return user_del(ctx, argc, argv);
	if (strcmp(argv[1], "passwd") == 0)
		return user_passwd(ctx, argc, argv);
	return cli_usage("user: unknown subcommand '%s' (add, list, del, passwd)", argv[1]);
}

int cli_user_main(struct cli_ctx *ctx, int argc, char **argv)
{
	int ret = user_dispatch(ctx, argc, argv);
	/* Nothing runs after a subcommand: free the config here so leak checkers stay quiet. */
	conf_free(&ctx->cfg);
	return ret;
}
