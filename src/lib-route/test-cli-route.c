/*
 * The directory subcommands (check-config, domain, user, alias) run as the
 * mailroute binary would run them: each in a child process (they may drop
 * privileges), with stdin given and stdout/stderr compared (fnmatch patterns).
 */
#include <fcntl.h>
#include <fnmatch.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <pwd.h>
#include <unistd.h>
#include <cmocka.h>

#include "cli/commands.h"
#include "lib-auth/password.h"
#include "lib-route/directory.h"
#include "lib/xalloc.h"

static char tmpdir[] = "/tmp/test-cli-route-XXXXXX";
static char *config_path;
static const char *role_user;

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char *buf = xcalloc(1, 65536);
	size_t n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* Verify a password the way the lookup role would (in the child: privileges dropped). */
static int check_password_main(struct cli_ctx *ctx, int argc, char **argv)
{
	struct mr_config *cfg = cli_config(ctx);
	char *error = NULL, *hash = NULL;
	if (cli_drop_privileges(cfg, cfg->user) < 0)
		return 1;
	char *path = directory_path(cfg);
	struct directory *d = directory_open(path, true, &error);
	free(path);
	if (d == NULL)
		return 1;
	int ret = directory_user_get(d, argv[1], &hash, &error);
	bool ok = ret == 1 && password_verify(argv[2], hash);
	printf("%s\n", ok ? "match" : "mismatch");
	free(hash);
	directory_close(&d);
	return 0;
}

/* Exact comparison, or fnmatch() when the pattern has a '*'. */
static bool output_matches(const char *pattern, const char *text)
{
	if (pattern == NULL)
		pattern = "";
	if (strchr(pattern, '*') == NULL)
		return strcmp(pattern, text) == 0;
	return fnmatch(pattern, text, 0) == 0;
}

struct cli_case {
	cli_main_fn *fn;
	const char *args[8];
	const char *stdin_text;
	int exit_code;
	const char *out;  /* exact, or an fnmatch pattern if it has a '*' */
	const char *err;
};

static void run(const struct cli_case *c, size_t index)
{
	char in_path[256], out_path[256], err_path[256];
	snprintf(in_path, sizeof(in_path), "%s/stdin", tmpdir);
	snprintf(out_path, sizeof(out_path), "%s/stdout", tmpdir);
	snprintf(err_path, sizeof(err_path), "%s/stderr", tmpdir);
	FILE *f = fopen(in_path, "w");
	assert_non_null(f);
	fputs(c->stdin_text != NULL ? c->stdin_text : "", f);
	fclose(f);
	fflush(stdout);
	fflush(stderr);

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int in = open(in_path, O_RDONLY);
		int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
			_exit(99);
		char *argv[9];
		int argc = 0;
		while (argc < 8 && c->args[argc] != NULL) {
			argv[argc] = (char *)c->args[argc];
			argc++;
		}
		argv[argc] = NULL;
		struct cli_ctx ctx = { .config_path = config_path };
		int code = c->fn(&ctx, argc, argv);
		conf_free(&ctx.cfg);
		fflush(stdout);
		fflush(stderr);
		exit(code);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	char *out = slurp(out_path), *err = slurp(err_path);
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	bool ok = code == c->exit_code && output_matches(c->out, out) && output_matches(c->err, err);
	if (!ok) {
		fprintf(stderr, "case %zu (%s %s): exit %d (want %d)\n--- stdout:\n%s--- want:\n%s\n--- stderr:\n%s--- want:\n%s\n",
			index, c->args[0], c->args[1] != NULL ? c->args[1] : "", code, c->exit_code, out,
			c->out != NULL ? c->out : "", err, c->err != NULL ? c->err : "");
		fail();
	}
	free(out);
	free(err);
}

#define D cli_domain_main
#define U cli_user_main
#define A cli_alias_main

static const struct cli_case cases[] = {
	{ D, { "domain", "list" }, .exit_code = 0 },
	{ U, { "user", "list" }, .exit_code = 0 },
	{ D, { "domain", "add", "example.test" }, .exit_code = 0 },
	{ D, { "domain", "add", "Example.TEST" }, .exit_code = 1, .err = "mailroute: domain example.test already exists\n" },
	{ D, { "domain", "add", "relay.test", "--type", "relay", "--relay", "smtp.relay.test:2525" }, .exit_code = 0 },
	{ D, { "domain", "add", "--type=backup", "backup.test" }, .exit_code = 0 },
	{ D, { "domain", "add", "x.test", "--relay", "a:1" }, .exit_code = 2,
	  .err = "mailroute: --relay needs --type relay or backup\n" },
	{ D, { "domain", "add", "x.test", "--type", "relay", "--relay", "a:99999" }, .exit_code = 2,
	  .err = "mailroute: bad --relay 'a:99999' (expected HOST[:PORT])\n" },
	{ D, { "domain", "add", "x.test", "--type", "foo" }, .exit_code = 2,
	  .err = "mailroute: bad --type 'foo' (expected local, relay or backup)\n" },
	{ D, { "domain", "add", "x.test", "--type" }, .exit_code = 2, .err = "mailroute: --type needs local, relay or backup\n" },
	{ D, { "domain", "add", "x.test", "--frob" }, .exit_code = 2, .err = "mailroute: domain add: unknown option '--frob'\n" },
	{ D, { "domain", "add", "bad_domain!" }, .exit_code = 2,
	  .err = "mailroute: bad domain 'bad_domain!': domain may contain only letters, digits, '-', '_' and '.'\n" },
	{ D, { "domain", "add", "example.org", "--alias-of", "example.test" }, .exit_code = 0 },
	{ D, { "domain", "add", "b.test", "--alias-of", "nope.test" }, .exit_code = 1,
	  .err = "mailroute: domain nope.test does not exist: add it before its alias\n" },
	{ D, { "domain", "list" }, .exit_code = 0,
	  .out = "backup.test\tbackup\t-\t-\n"
		 "example.org\talias\t-\texample.test\n"
		 "example.test\tlocal\t-\t-\n"
		 "relay.test\trelay\tsmtp.relay.test:2525\t-\n" },
	{ D, { "domain", "frob" }, .exit_code = 2, .err = "mailroute: domain: unknown subcommand 'frob' (add, list, del)\n" },
	{ D, { "domain" }, .exit_code = 2, .err = "mailroute: usage: domain add*" },

	{ U, { "user", "add", "Demo@Example.test" }, .stdin_text = "demo\r\n", .exit_code = 0 },
	{ U, { "user", "add", "demo@example.test" }, .stdin_text = "x\n", .exit_code = 1,
	  .err = "mailroute: user demo@example.test already exists (to change the password: mailroute user passwd demo@example.test)\n" },
	{ U, { "user", "add", "x@nope.test" }, .stdin_text = "pw\n", .exit_code = 1,
	  .err = "mailroute: domain nope.test does not exist (add it first: mailroute domain add nope.test)\n" },
	{ U, { "user", "add", "x@relay.test" }, .stdin_text = "pw\n", .exit_code = 1,
	  .err = "mailroute: domain relay.test is not a local domain: users live in local domains only\n" },
	{ U, { "user", "add", "x@example.org" }, .stdin_text = "pw\n", .exit_code = 1,
	  .err = "mailroute: domain example.org is not a local domain: users live in local domains only\n" },
	{ U, { "user", "add", "e@example.test" }, .stdin_text = "", .exit_code = 2,
	  .err = "mailroute: empty password (give it as the first line of stdin)\n" },
	{ U, { "user", "add", "e@example.test" }, .stdin_text = "\nsecond\n", .exit_code = 2,
	  .err = "mailroute: empty password (give it as the first line of stdin)\n" },
	{ U, { "user", "add", "nodomain" }, .exit_code = 2, .err = "mailroute: bad address 'nodomain': address needs an '@'\n" },
	{ U, { "user", "add" }, .exit_code = 2, .err = "mailroute: usage: user add ADDRESS (password on stdin)\n" },
	{ U, { "user", "add", "bob@example.test" }, .stdin_text = "bob pw", .exit_code = 0 },
	{ U, { "user", "list" }, .exit_code = 0,
	  .out = "bob@example.test\t20[0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z\n"
		 "demo@example.test\t20*Z\n" },
	{ check_password_main, { "check", "demo@example.test", "demo" }, .exit_code = 0, .out = "match\n" },
	{ check_password_main, { "check", "bob@example.test", "bob pw" }, .exit_code = 0, .out = "match\n" },
	{ U, { "user", "passwd", "DEMO@example.test" }, .stdin_text = "new secret\n", .exit_code = 0 },
	{ check_password_main, { "check", "demo@example.test", "demo" }, .exit_code = 0, .out = "mismatch\n" },
	{ check_password_main, { "check", "demo@example.test", "new secret" }, .exit_code = 0, .out = "match\n" },
	{ U, { "user", "passwd", "nobody@example.test" }, .stdin_text = "x\n", .exit_code = 1,
	  .err = "mailroute: no user nobody@example.test\n" },

	{ A, { "alias", "add", "Support@example.test", "demo@example.test", "webhook:tickets" }, .exit_code = 0 },
	{ A, { "alias", "add", "support@example.test", "demo@example.test" }, .exit_code = 0,
	  .err = "mailroute: alias support@example.test already has this target\n" },
	{ A, { "alias", "add", "demo@example.test", "x@y.test" }, .exit_code = 1,
	  .err = "mailroute: demo@example.test is a user: an alias with that address would never be used\n" },
	{ A, { "alias", "add", "@example.test", "demo@example.test" }, .exit_code = 0 },
	{ A, { "alias", "add", "--regex", "^(.+)-sales@example\\.test$", "$1@example.test" }, .exit_code = 0 },
	{ A, { "alias", "add", "--regex", "^(a$", "x@y.test" }, .exit_code = 2,
	  .err = "mailroute: bad regex '^(a$' at offset 4: missing closing parenthesis\n" },
	{ A, { "alias", "add", "--regex", "^a$", "$1@x.test" }, .exit_code = 2,
	  .err = "mailroute: target '$1@x.test' uses $1 but the pattern has 0 capture groups\n" },
	{ A, { "alias", "add", "x@example.test", "$1@x.test" }, .exit_code = 2,
	  .err = "mailroute: target '$1@x.test': $N captures need --regex\n" },
	{ A, { "alias", "add", "x@example.test", "tickets" }, .exit_code = 2,
	  .err = "mailroute: bad target 'tickets': target must be an address or a named target KIND:NAME (webhook:x, pipe:x)\n" },
	{ A, { "alias", "add", "x@nope.test", "a@b.test" }, .exit_code = 1,
	  .err = "mailroute: domain nope.test does not exist (add it first: mailroute domain add nope.test)\n" },
	{ A, { "alias", "add", "x@example.test" }, .exit_code = 2, .err = "mailroute: usage: alias add*" },
	{ A, { "alias", "list" }, .exit_code = 0,
	  .out = "catchall\t@example.test\tdemo@example.test\n"
		 "alias\tsupport@example.test\tdemo@example.test\n"
		 "alias\tsupport@example.test\twebhook:tickets\n"
		 "regex\t^(.+)-sales@example\\.test$\t$1@example.test\n" },
	{ A, { "alias", "del", "support@example.test" }, .exit_code = 0 },
	{ A, { "alias", "del", "support@example.test" }, .exit_code = 1, .err = "mailroute: no alias support@example.test\n" },
	{ A, { "alias", "del", "--regex", "^(.+)-sales@example\\.test$" }, .exit_code = 0 },
	{ A, { "alias", "list", "x" }, .exit_code = 2, .err = "mailroute: alias list takes no arguments\n" },

	{ D, { "domain", "del", "example.test" }, .exit_code = 1,
	  .err = "mailroute: domain example.test still has 2 users: delete them first\n" },
	{ U, { "user", "del", "demo@example.test" }, .exit_code = 0 },
	{ U, { "user", "del", "demo@example.test" }, .exit_code = 1, .err = "mailroute: no user demo@example.test\n" },
	{ U, { "user", "del", "bob@example.test" }, .exit_code = 0 },
	{ D, { "domain", "del", "example.test" }, .exit_code = 0 },
	{ D, { "domain", "del", "example.test" }, .exit_code = 1, .err = "mailroute: no domain example.test\n" },
	{ U, { "user", "list" }, .exit_code = 0 },
	{ U, { "user", "frob" }, .exit_code = 2, .err = "mailroute: user: unknown subcommand 'frob' (add, list, del, passwd)\n" },
};

static void test_commands(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run(&cases[i], i);

	if (geteuid() == 0) {
		/* The database directory belongs to the role user, so the lookup role can use it. */
		struct passwd *pw = getpwnam(role_user);
		char *db = xasprintf("%s/var/db", tmpdir), *file = xasprintf("%s/var/db/directory.db", tmpdir);
		struct stat st;
		assert_non_null(pw);
		assert_int_equal(stat(db, &st), 0);
		assert_int_equal(st.st_uid, pw->pw_uid);
		assert_int_equal(st.st_mode & 0777, 0750);
		assert_int_equal(stat(file, &st), 0);
		assert_int_equal(st.st_uid, pw->pw_uid);
		free(db);
		free(file);
	}
}

static void test_check_config(void **state)
{
	char *bad = xasprintf("%s/bad.yaml", tmpdir);
	FILE *f = fopen(bad, "w");
	assert_non_null(f);
	fputs("hostname: x\nlisten:\n  - { kind: smtp, address: \"*:25\" }\n", f);
	fclose(f);
	char *ok_out = xasprintf("ok: %s\n", config_path);
	char *bad_err = xasprintf("%s:3:13: listen[0].kind: unknown kind 'smtp' (expected mx, submission, submissions, imap, imaps, pop3, pop3s or managesieve)\n", bad);
	const struct cli_case ok = { cli_check_config_main, { "check-config" }, .exit_code = 0, .out = ok_out };
	run(&ok, 0);
	const char *saved = config_path;
	config_path = bad;
	const struct cli_case fail_case = { cli_check_config_main, { "check-config" }, .exit_code = 2, .err = bad_err };
	run(&fail_case, 1);
	char *tls = xasprintf("%s/tls.yaml", tmpdir);
	f = fopen(tls, "w");
	assert_non_null(f);
	fprintf(f, "tls: { cert: %s, key: %s/missing.pem }\n", config_path, tmpdir);
	fclose(f);
	char *tls_err = xasprintf("%s:0:0: tls.key: %s/missing.pem: No such file or directory\n", tls, tmpdir);
	config_path = tls;
	const struct cli_case tls_case = { cli_check_config_main, { "check-config" }, .exit_code = 2, .err = tls_err };
	run(&tls_case, 4);
	free(tls_err);
	free(tls);
	config_path = "/nonexistent.yaml";
	const struct cli_case missing = { cli_check_config_main, { "check-config" }, .exit_code = 2,
					  .err = "/nonexistent.yaml:0:0: cannot open: No such file or directory\n" };
	run(&missing, 2);
	const struct cli_case extra = { cli_check_config_main, { "check-config", "x" }, .exit_code = 2,
					.err = "mailroute: check-config takes no arguments besides -c FILE\n" };
	run(&extra, 3);
	config_path = (char *)saved;
	free(ok_out);
	free(bad_err);
	free(bad);
}

static int setup(void **state)
{
	assert_non_null(mkdtemp(tmpdir));
	chmod(tmpdir, 0755); /* the role user must reach <data_dir> */
	config_path = xasprintf("%s/mailroute.yaml", tmpdir);
	FILE *f = fopen(config_path, "w");
	assert_non_null(f);
	/* As root the commands drop to the role user: mailroute (scripts/install-deps), else root itself. */
	role_user = geteuid() == 0 && getpwnam("mailroute") == NULL ? "root" : "mailroute";
	fprintf(f, "hostname: mail.example.test\ndata_dir: %s/var\nuser: %s\n", tmpdir, role_user);
	fclose(f);
	return 0;
}

static int teardown(void **state)
{
	char *cmd = xasprintf("rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	free(cmd);
	free(config_path);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_check_config),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
