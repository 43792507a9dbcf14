/*
 * relay: mailroute relay add NAME --host HOST[:PORT] [--group G] [--weight N]
 *                       [--tls none|may|require] [--auth-user U]
 *        mailroute relay list | del NAME | status
 * With --auth-user the relay's password is the first line of stdin (CR/LF
 * stripped; asked for without echo on a terminal). It is a client credential, so it is stored as given; the
 * directory database is kept at mode 0640 (owner: the role user).
 *
 * list:   NAME TAB HOST:PORT TAB GROUP|- TAB WEIGHT TAB TLS TAB AUTH_USER|-
 * status: NAME TAB HOST:PORT TAB GROUP|- TAB WEIGHT TAB STATE TAB FAILURES|- TAB UNTIL|-
 *         from <data_dir>/queue/relay-status.json (written by the queue role);
 *         STATE up|down|probing, or unknown when the queue has not reported it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "lib-route/directory.h"
#include "lib-route/relays.h"
#include "lib/xalloc.h"

/* Defined in cli_domain.c. */
struct directory *cli_directory_open(struct cli_ctx *ctx, bool readonly, int *exit_r);
int cli_option(int argc, char **argv, int *i, const char *name, const char **value_r);

#define RELAY_USAGE \
	"usage: relay add NAME --host HOST[:PORT] [--group G] [--weight N] [--tls none|may|require] " \
	"[--auth-user U] | list | del NAME | status"

/* One line from fd 0 without stdio buffering (nothing past it is consumed). */
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

/* On a terminal: a prompt on stderr and no echo. */
static int read_secret(char *buf, size_t size, bool *too_long_r)
{
	struct termios old, noecho;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	if (tty) {
		fputs("Relay password: ", stderr);
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

/* The password holds a client credential: readable by the role user and its group only. */
static void protect_database(struct cli_ctx *ctx)
{
	static const char *const suffixes[] = { "", "-wal", "-shm" };
	char *path = directory_path(cli_config(ctx));
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		char *f = xasprintf("%s%s", path, suffixes[i]);
		struct stat st;
		if (stat(f, &st) == 0 && (st.st_mode & 0137) != 0)
			chmod(f, st.st_mode & 0640);
		free(f);
	}
	free(path);
}

static bool weight_parse(const char *s, unsigned *w_r)
{
	unsigned long v = 0;
	if (*s == '\0' || strlen(s) > 4)
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	if (v < 1 || v > RELAYS_MAX_WEIGHT)
		return false;
	*w_r = (unsigned)v;
	return true;
}

static int relay_add(struct cli_ctx *ctx, int argc, char **argv)
{
	const char *name = NULL, *hostport = NULL, *group = NULL, *tls = "may", *auth_user = NULL, *why;
	unsigned weight = 1, port;
	char host[RELAYS_MAX_HOST + 1];

	for (int i = 2; i < argc; i++) {
		int r;
		const char *v;
		if ((r = cli_option(argc, argv, &i, "--host", &v)) != 0) {
			if (r < 0)
				return cli_usage("--host needs HOST[:PORT]");
			hostport = v;
		} else if ((r = cli_option(argc, argv, &i, "--group", &v)) != 0) {
			if (r < 0)
				return cli_usage("--group needs a NAME");
			group = v;
		} else if ((r = cli_option(argc, argv, &i, "--weight", &v)) != 0) {
			if (r < 0 || !weight_parse(v, &weight))
				return cli_usage("--weight needs a number from 1 to %d", RELAYS_MAX_WEIGHT);
		} else if ((r = cli_option(argc, argv, &i, "--tls", &v)) != 0) {
			if (r < 0 || !relays_tls_check(v))
				return cli_usage("--tls needs none, may or require");
			tls = v;
		} else if ((r = cli_option(argc, argv, &i, "--auth-user", &v)) != 0) {
			if (r < 0 || v[0] == '\0')
				return cli_usage("--auth-user needs a USER");
			auth_user = v;
		} else if (argv[i][0] == '-') {
			return cli_usage("relay add: unknown option '%s'", argv[i]);
		} else if (name == NULL) {
			name = argv[i];
		} else {
			return cli_usage("relay add takes one NAME");
		}
	}
	if (name == NULL || hostport == NULL)
		return cli_usage(RELAY_USAGE);
	if (!relays_name_check(name, &why))
		return cli_usage("bad relay name '%s': %s", name, why);
	if (group != NULL && !relays_name_check(group, &why))
		return cli_usage("bad group name '%s': %s", group, why);
	if (!relays_hostport_parse(hostport, host, sizeof(host), &port, &why))
		return cli_usage("bad --host '%s': %s", hostport, why);
	for (const char *p = auth_user; p != NULL && *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return cli_usage("bad --auth-user: control characters");
	}

	char pass[RELAYS_MAX_SECRET + 2];
	pass[0] = '\0';
	if (auth_user != NULL) {
		bool too_long;
		if (read_secret(pass, sizeof(pass), &too_long) < 0)
			return cli_fail("cannot read the password from stdin: %s", strerror(errno));
		if (too_long) {
			secret_zero(pass, sizeof(pass));
			return cli_usage("password longer than %d bytes", RELAYS_MAX_SECRET);
		}
		if (pass[0] == '\0')
			return cli_usage("empty password (give it as the first line of stdin)");
	}

	int code;
	struct directory *d = cli_directory_open(ctx, false, &code);
	if (d == NULL) {
		secret_zero(pass, sizeof(pass));
		return code;
	}
	struct relay_info r = { .name = (char *)name, .host = host, .port = port, .group = (char *)group,
				.weight = weight, .tls = (char *)tls, .auth_user = (char *)auth_user,
				.auth_pass = auth_user != NULL ? pass : NULL };
	char *error = NULL;
	int ret = relays_add(d, &r, &error);
	secret_zero(pass, sizeof(pass));
	directory_close(&d);
	protect_database(ctx);
	if (ret < 0) {
		code = cli_fail("%s", error);
		free(error);
		return code;
	}
	if (ret == 0)
		return cli_fail("relay %s already exists", name);
	return 0;
}

static int relay_print(const struct relay_info *r, void *ctx)
{
	(void)ctx;
	char *hp = relays_hostport(r);
	printf("%s\t%s\t%s\t%u\t%s\t%s\n", r->name, hp, r->group != NULL ? r->group : "-", r->weight, r->tls,
	       r->auth_user != NULL ? r->auth_user : "-");
	free(hp);
	return 0;
}

static int relay_list(struct cli_ctx *ctx, int argc, char **argv)
{
	(void)argv;
	if (argc != 2)
		return cli_usage("relay list takes no arguments");
	int code;
	struct directory *d = cli_directory_open(ctx, true, &code);
	if (d == NULL)
		return code;
	char *error = NULL;
	int ret = relays_list(d, relay_print, NULL, &error);
	directory_close(&d);
	if (ret < 0) {
		code = cli_fail("%s", error);
		free(error);
		return code;
	}
	return fflush(stdout) == 0 ? 0 : cli_fail("write error on stdout");
}

static int relay_del(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc != 3 || argv[2][0] == '-')
		return cli_usage("usage: relay del NAME");
	int code;
	struct directory *d = cli_directory_open(ctx, false, &code);
	if (d == NULL)
		return code;
	char *error = NULL;
	int ret = relays_del(d, argv[2], &error);
	directory_close(&d);
	if (ret < 0) {
		code = cli_fail("%s", error);
		free(error);
		return code;
	}
	if (ret == 0)
		return cli_fail("no relay %s", argv[2]);
	return 0;
}

struct status_ctx {
	const struct relay_status *st;
	size_t n;
};

static int status_print(const struct relay_info *r, void *ctx)
{
	const struct status_ctx *s = ctx;
	const struct relay_status *found = NULL;
	for (size_t i = 0; i < s->n && found == NULL; i++) {
		if (strcmp(s->st[i].name, r->name) == 0)
			found = &s->st[i];
	}
	char until[32] = "-", failures[16] = "-";
	if (found != NULL) {
		snprintf(failures, sizeof(failures), "%u", found->failures);
		if (found->until > 0) {
			time_t t = (time_t)found->until;
			struct tm tm;
			if (gmtime_r(&t, &tm) != NULL)
				strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &tm);
		}
	}
	char *hp = relays_hostport(r);
	printf("%s\t%s\t%s\t%u\t%s\t%s\t%s\n", r->name, hp, r->group != NULL ? r->group : "-", r->weight,
	       found != NULL ? found->state : "unknown", failures, until);
	free(hp);
	return 0;
}

static int relay_status(struct cli_ctx *ctx, int argc, char **argv)
{
	(void)argv;
	if (argc != 2)
		return cli_usage("relay status takes no arguments");
	int code;
	struct directory *d = cli_directory_open(ctx, true, &code);
	if (d == NULL)
		return code;
	char *path = conf_path(cli_config(ctx), RELAYS_STATUS_PATH), *error = NULL;
	struct relay_status *st = NULL;
	size_t n = 0;
	int ret = relay_status_read(path, &st, &n, &error);
	free(path);
	if (ret >= 0) {
		struct status_ctx s = { .st = st, .n = n };
		ret = relays_list(d, status_print, &s, &error);
	}
	relay_status_free(&st, n);
	directory_close(&d);
	if (ret < 0) {
		code = cli_fail("%s", error);
		free(error);
		return code;
	}
	return fflush(stdout) == 0 ? 0 : cli_fail("write error on stdout");
}

static int relay_dispatch(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage(RELAY_USAGE);
	if (strcmp(argv[1], "add") == 0)
		return relay_add(ctx, argc, argv);
	if (strcmp(argv[1], "list") == 0)
		return relay_list(ctx, argc, argv);
	if (strcmp(argv[1], "del") == 0)
		return relay_del(ctx, argc, argv);
	if (strcmp(argv[1], "status") == 0)
		return relay_status(ctx, argc, argv);
	return cli_usage("relay: unknown subcommand '%s' (add, list, del, status)", argv[1]);
}

int cli_relay_main(struct cli_ctx *ctx, int argc, char **argv)
{
	int ret = relay_dispatch(ctx, argc, argv);
	conf_free(&ctx->cfg);
	return ret;
}
