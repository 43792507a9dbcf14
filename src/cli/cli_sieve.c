/*
 * sieve: mailroute sieve check FILE [--system]
 *        mailroute sieve put USER NAME FILE|-   (compiled first; refused on errors)
 *        mailroute sieve get USER NAME | list USER | activate USER NAME
 *        mailroute sieve deactivate USER | delete USER NAME
 *        mailroute sieve test FILE [--system] [--from A] [--to A] [--auth U] [--ip IP] < MESSAGE
 *            runs the script on a message without side effects: prints the trace
 *            ("line N: ...") and the resulting actions, one per line.
 * Scripts live under <data_dir>/sieve/<domain>/<localpart>/ (lib-sieve/sieve_store.h).
 * check needs no config; it prints "FILE: ok" or the first error as
 * FILE:LINE:COL: message and exits 1. --system allows vnd.mailroute (the
 * system rules script); user scripts never get it.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "lib-sieve/sieve.h"
#include "lib-sieve/sieve_store.h"
#include "lib/xalloc.h"

#define SIEVE_USAGE "sieve check FILE [--system] | test FILE [--system] [--from A] [--to A] [--auth U] [--ip IP] " \
		    "< MESSAGE | put USER NAME FILE | get USER NAME | list USER | activate USER NAME | " \
		    "deactivate USER | delete USER NAME"

static int read_input(const char *path, char **src_r, size_t *len_r, char **error_r)
{
	if (strcmp(path, "-") == 0) {
		size_t cap = 4096, len = 0;
		char *buf = xmalloc(cap + 1);
		for (;;) {
			if (len == cap) {
				if (cap > SIEVE_STORE_MAX_SIZE) {
					free(buf);
					*error_r = xasprintf("script on stdin is larger than %d bytes", SIEVE_STORE_MAX_SIZE);
					return -1;
				}
				cap *= 2;
				buf = xrealloc(buf, cap + 1);
			}
			ssize_t n = read(STDIN_FILENO, buf + len, cap - len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			len += (size_t)n;
		}
		buf[len] = '\0';
		*src_r = buf;
		*len_r = len;
		return 1;
	}
	int r = sieve_store_read_file(path, SIEVE_STORE_MAX_SIZE, src_r, len_r, error_r);
	if (r == 0)
		*error_r = xasprintf("%s: no such file", path);
	return r > 0 ? 1 : -1;
}

/* Includes of a checked file resolve beside it: NAME.sieve in its directory. */
static int file_resolver(void *ctx, const char *name, bool global, char **src_r, size_t *len_r, char **error_r)
{
	(void)global;
	if (!sieve_store_valid_name(name))
		return 0;
	char *path = xasprintf("%s/%s.sieve", (const char *)ctx, name);
	int r = sieve_store_read_file(path, SIEVE_STORE_MAX_SIZE, src_r, len_r, error_r);
	free(path);
	return r;
}

static int cmd_check(int argc, char **argv)
{
	const char *file = NULL;
	bool system = false;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--system") == 0)
			system = true;
		else if (file == NULL)
			file = argv[i];
		else
			return cli_usage("usage: " SIEVE_USAGE);
	}
	if (file == NULL)
		return cli_usage("usage: " SIEVE_USAGE);
	char *src, *err = NULL;
	size_t len;
	if (read_input(file, &src, &len, &err) < 0) {
		int r = cli_fail("%s", err);
		free(err);
		return r;
	}
	char *dir = xstrdup(strcmp(file, "-") == 0 ? "." : file);
	char *slash = strrchr(dir, '/');
	if (slash != NULL)
		*slash = '\0';
	else {
		free(dir);
		dir = xstrdup(".");
	}
	struct sieve_compile_options opt = {
		.extensions = system ? SIEVE_EXT_SYSTEM_DEFAULT : SIEVE_EXT_USER_DEFAULT,
		.include_resolver = file_resolver,
		.include_ctx = dir,
		.all_errors = true,
	};
	struct sieve_script *s = sieve_compile(src, len, file, &opt, &err);
	free(src);
	free(dir);
	if (s == NULL) {
		fprintf(stderr, "%s\n", err);
		free(err);
		return 1;
	}
	sieve_script_free(&s);
	printf("%s: ok\n", file);
	return 0;
}

static void print_trace(void *ctx, int line, int col, const char *text)
{
	(void)ctx;
	(void)col;
	printf("line %d: %s\n", line, text);
}

static int cmd_test(int argc, char **argv)
{
	const char *file = NULL, *from = "", *to = "recipient@localhost", *auth = NULL, *ip = NULL;
	bool system = false;
	for (int i = 2; i < argc; i++) {
		const char **opt = strcmp(argv[i], "--from") == 0 ? &from : strcmp(argv[i], "--to") == 0 ? &to
				 : strcmp(argv[i], "--auth") == 0 ? &auth : strcmp(argv[i], "--ip") == 0 ? &ip : NULL;
		if (opt != NULL) {
			if (i + 1 >= argc)
				return cli_usage("%s needs a value", argv[i]);
			*opt = argv[++i];
		} else if (strcmp(argv[i], "--system") == 0) {
			system = true;
		} else if (file == NULL) {
			file = argv[i];
		} else {
			return cli_usage("usage: " SIEVE_USAGE);
		}
	}
	if (file == NULL || strcmp(file, "-") == 0)
		return cli_usage("usage: " SIEVE_USAGE);
	char *src, *msg, *err = NULL;
	size_t len, mlen;
	if (read_input(file, &src, &len, &err) < 0 || read_input("-", &msg, &mlen, &err) < 0) {
		int r = cli_fail("%s", err);
		free(err);
		return r;
	}
	char *dir = xstrdup(file);
	char *slash = strrchr(dir, '/');
	if (slash != NULL) {
		*slash = '\0';
	} else {
		free(dir);
		dir = xstrdup(".");
	}
	struct sieve_compile_options opt = {
		.extensions = system ? SIEVE_EXT_SYSTEM_DEFAULT : SIEVE_EXT_USER_DEFAULT,
		.include_resolver = file_resolver,
		.include_ctx = dir,
	};
	struct sieve_script *s = sieve_compile(src, len, file, &opt, &err);
	free(src);
	free(dir);
	if (s == NULL) {
		fprintf(stderr, "%s\n", err);
		free(err);
		free(msg);
		return 1;
	}
	struct sieve_msg_view mv = {
		.envelope_from = from,
		.envelope_to = to,
		.auth_user = auth,
		.client_ip = ip,
		.raw = msg,
		.raw_len = mlen,
	};
	struct sieve_result res;
	sieve_result_init(&res);
	int r = sieve_execute(s, &mv, NULL, &res, print_trace, NULL, &err);
	if (r < 0) {
		printf("error: %s\n", err);
		free(err);
	}
	for (size_t i = 0; i < res.count; i++) {
		char *d = sieve_action_describe(&res.actions[i]);
		printf("action: %s\n", d);
		free(d);
	}
	if (res.edited_header != NULL)
		printf("edited header:\n%s", res.edited_header);
	int vac = 0;
	for (size_t i = 0; i < res.count; i++)
		if (res.actions[i].type == SIEVE_ACT_VACATION)
			vac = 1;
	if (vac)
		printf("vacation reply allowed by RFC 3834 rules: %s\n", sieve_vacation_allowed(&mv) ? "yes" : "no");
	sieve_result_deinit(&res);
	sieve_script_free(&s);
	free(msg);
	return r < 0 ? 1 : 0;
}

/* As root, create <data_dir>/sieve owned by the mailbox user, then become that user. */
static int become_vmail(const struct mr_config *cfg)
{
	if (geteuid() != 0)
		return 0;
	const char *user = cfg->vmail_user != NULL ? cfg->vmail_user : "vmail";
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		fprintf(stderr, "mailroute: user %s does not exist (run scripts/install-deps)\n", user);
		return -1;
	}
	char *dir = xasprintf("%s/sieve", cfg->data_dir);
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		fprintf(stderr, "mailroute: mkdir %s: %s\n", dir, strerror(errno));
		free(dir);
		return -1;
	}
	if (chown(dir, pw->pw_uid, pw->pw_gid) < 0) {
		fprintf(stderr, "mailroute: chown %s: %s\n", dir, strerror(errno));
		free(dir);
		return -1;
	}
	free(dir);
	return cli_drop_privileges(cfg, user);
}

static int store_cmd(const char *dd, const char *sub, const char *user, const char *name, char **argv);

static int store_result(int r, char *err, const char *what)
{
	if (r < 0) {
		r = cli_fail("%s", err ? err : "error");
		free(err);
		return r;
	}
	if (r == 0)
		return cli_fail("%s", what);
	return 0;
}

int cli_sieve_main(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage("usage: " SIEVE_USAGE);
	const char *sub = argv[1];
	if (strcmp(sub, "check") == 0)
		return cmd_check(argc, argv);
	if (strcmp(sub, "test") == 0)
		return cmd_test(argc, argv);

	struct { const char *name; int args; } subs[] = {
		{ "put", 3 }, { "get", 2 }, { "list", 1 }, { "activate", 2 }, { "deactivate", 1 }, { "delete", 2 },
	};
	int want = -1;
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if (strcmp(subs[i].name, sub) == 0)
			want = subs[i].args;
	if (want < 0)
		return cli_usage("unknown sieve command '%s'; usage: " SIEVE_USAGE, sub);
	if (argc != want + 2)
		return cli_usage("usage: " SIEVE_USAGE);
	const char *user = argv[2];
	const char *name = argc > 3 ? argv[3] : NULL;
	if (name != NULL && !sieve_store_valid_name(name))
		return cli_usage("invalid script name '%s' (1-64 of A-Z a-z 0-9 . _ -, not starting with '.')", name);

	struct mr_config *cfg = cli_config(ctx);
	int rc = become_vmail(cfg) < 0 ? 1 : store_cmd(cfg->data_dir, sub, user, name, argv);
	conf_free(&ctx->cfg);
	return rc;
}

static int store_cmd(const char *dd, const char *sub, const char *user, const char *name, char **argv)
{
	char *err = NULL;

	if (strcmp(sub, "put") == 0) {
		char *src;
		size_t len;
		if (read_input(argv[4], &src, &len, &err) < 0)
			return store_result(-1, err, NULL);
		struct sieve_store_ctx sc = { .data_dir = dd, .user = user };
		struct sieve_compile_options opt = {
			.extensions = SIEVE_EXT_USER_DEFAULT,
			.include_resolver = sieve_store_include_resolver,
			.include_ctx = &sc,
			.missing_includes_ok = true,
			.all_errors = true,
		};
		struct sieve_script *s = sieve_compile(src, len, name, &opt, &err);
		if (s == NULL) {
			fprintf(stderr, "%s\n", err);
			free(err);
			free(src);
			return 1;
		}
		sieve_script_free(&s);
		int r = sieve_store_put(dd, user, name, src, len, &err);
		free(src);
		return store_result(r, err, "write failed");
	}
	if (strcmp(sub, "get") == 0) {
		char *src;
		size_t len;
		int r = sieve_store_get(dd, user, name, &src, &len, &err);
		if (r <= 0) {
			char *what = xasprintf("no script '%s' for %s", name, user);
			int rc = store_result(r, err, what);
			free(what);
			return rc;
		}
		fwrite(src, 1, len, stdout);
		free(src);
		return 0;
	}
	if (strcmp(sub, "list") == 0) {
		char **names, *active;
		size_t n;
		int r = sieve_store_list(dd, user, &names, &n, &active, &err);
		if (r < 0)
			return store_result(r, err, NULL);
		for (size_t i = 0; i < n; i++)
			printf("%s%s\n", names[i], active && strcmp(active, names[i]) == 0 ? " (active)" : "");
		sieve_store_list_free(names, n);
		free(active);
		return 0;
	}
	if (strcmp(sub, "activate") == 0 || strcmp(sub, "deactivate") == 0) {
		int r = sieve_store_activate(dd, user, name, &err);
		char *what = xasprintf("no script '%s' for %s", name ? name : "", user);
		int rc = store_result(r, err, what);
		free(what);
		return rc;
	}
	/* delete */
	int r = sieve_store_delete(dd, user, name, &err);
	char *what = xasprintf("no script '%s' for %s", name, user);
	int rc = store_result(r, err, what);
	free(what);
	return rc;
}
