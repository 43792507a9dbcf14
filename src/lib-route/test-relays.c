/*
 * relays: the library (relays, groups, transports, the health file) on an
 * in-memory directory, then `mailroute relay|transport` run as the binary
 * would run them (forked, privileges dropped, stdout/stderr compared).
 */
#include <fcntl.h>
#include <fnmatch.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "cli/commands.h"
#include "lib-route/directory.h"
#include "lib-route/relays.h"
#include "lib/xalloc.h"

static char tmpdir[] = "/tmp/test-relays-XXXXXX";
static char *config_path;
static const char *role_user;

static struct directory *open_memory(void)
{
	char *error = NULL;
	struct directory *d = directory_open(":memory:", false, &error);
	assert_non_null(d);
	return d;
}

struct add_case {
	struct relay_info r;
	int ret;
	const char *error;
};

#define RI(...) { __VA_ARGS__ }

static const struct add_case add_cases[] = {
	{ RI(.name = "r1", .host = "Smtp.Example.TEST:587", .group = "g", .weight = 3, .tls = "require",
	     .auth_user = "u1", .auth_pass = "p w\"1"), 1, NULL },
	{ RI(.name = "r2", .host = "[2001:DB8::1]:2525", .group = "g"), 1, NULL },
	{ RI(.name = "r3", .host = "2001:db8::2", .port = 26, .group = "g", .weight = 2, .tls = "none"), 1, NULL },
	{ RI(.name = "solo", .host = "192.0.2.1"), 1, NULL },
	{ RI(.name = "self", .host = "self.example", .group = "self"), 1, NULL },
	{ RI(.name = "r1", .host = "other.example"), 0, NULL },
	{ RI(.name = "g", .host = "x.example"), -1, "'g' is the name of a group: choose another relay name" },
	{ RI(.name = "x", .host = "x.example", .group = "solo"), -1,
	  "'solo' is the name of a relay outside that group: choose another group name" },
	{ RI(.name = "x", .host = "x.example", .group = "self"), 1, NULL },
	{ RI(.name = "bad name", .host = "x.example"), -1,
	  "bad relay name 'bad name': a name may contain only letters, digits, '.', '_' and '-'" },
	{ RI(.name = "-x", .host = "x.example"), -1, "bad relay name '-x': a name cannot start with '-'" },
	{ RI(.name = "y", .host = "x.example", .group = ""), -1, "bad group name '': a name must be 1-64 characters" },
	{ RI(.name = "y", .host = "x.example:0"), -1, "bad host 'x.example:0': port must be 1-65535" },
	{ RI(.name = "y", .host = "x.example:65536"), -1, "bad host 'x.example:65536': port must be 1-65535" },
	{ RI(.name = "y", .host = "a:b:c"), -1, "bad host 'a:b:c': write an IPv6 address as [ADDRESS]:PORT" },
	{ RI(.name = "y", .host = "[zz::1]:25"), -1, "bad host '[zz::1]:25': bad IPv6 address" },
	{ RI(.name = "y", .host = "[::1]:25", .port = 25), -1, "bad host '[::1]:25': expected a bare host with a port" },
	{ RI(.name = "y", .host = "bad host"), -1,
	  "bad host 'bad host': domain may contain only letters, digits, '-', '_' and '.'" },
	{ RI(.name = "y", .host = NULL), -1, "bad host '': missing" },
	{ RI(.name = "y", .host = "x.example", .weight = 1001), -1, "weight must be 1-1000" },
	{ RI(.name = "y", .host = "x.example", .tls = "yes"), -1, "bad tls 'yes' (expected none, may or require)" },
	{ RI(.name = "y", .host = "x.example", .auth_user = "u"), -1, "auth needs both a user and a password" },
	{ RI(.name = "y", .host = "x.example", .auth_user = "u", .auth_pass = "a\nb"), -1,
	  "auth password has control characters" },
};

static void test_add_get(void **state)
{
	(void)state;
	struct directory *d = open_memory();
	for (size_t i = 0; i < sizeof(add_cases) / sizeof(add_cases[0]); i++) {
		const struct add_case *c = &add_cases[i];
		char *error = NULL;
		int ret = relays_add(d, &c->r, &error);
		if (ret != c->ret || (c->error == NULL) != (error == NULL) ||
		    (error != NULL && strcmp(error, c->error) != 0)) {
			fprintf(stderr, "add case %zu (%s): ret %d (want %d) error '%s' (want '%s')\n", i, c->r.name, ret,
				c->ret, error, c->error);
			fail();
		}
		free(error);
	}

	struct relay_info r;
	char *error = NULL;
	assert_int_equal(relays_get(d, "r1", &r, &error), 1);
	assert_string_equal(r.host, "smtp.example.test");
	assert_int_equal(r.port, 587);
	assert_string_equal(r.group, "g");
	assert_int_equal(r.weight, 3);
	assert_string_equal(r.tls, "require");
	assert_string_equal(r.auth_user, "u1");
	assert_string_equal(r.auth_pass, "p w\"1");
	char *hp = relays_hostport(&r);
	assert_string_equal(hp, "smtp.example.test:587");
	free(hp);
	relay_info_deinit(&r);
	assert_null(r.name);

	assert_int_equal(relays_get(d, "r2", &r, &error), 1);
	assert_string_equal(r.host, "2001:db8::1");
	assert_int_equal(r.port, 2525);
	assert_int_equal(r.weight, 1);
	assert_string_equal(r.tls, "may");
	assert_null(r.auth_user);
	assert_null(r.auth_pass);
	hp = relays_hostport(&r);
	assert_string_equal(hp, "[2001:db8::1]:2525");
	free(hp);
	relay_info_deinit(&r);

	assert_int_equal(relays_get(d, "r3", &r, &error), 1);
	assert_string_equal(r.host, "2001:db8::2");
	assert_int_equal(r.port, 26);
	relay_info_deinit(&r);

	assert_int_equal(relays_get(d, "solo", &r, &error), 1);
	assert_string_equal(r.host, "192.0.2.1");
	assert_int_equal(r.port, 25);
	assert_null(r.group);
	relay_info_deinit(&r);

	assert_int_equal(relays_get(d, "nope", &r, &error), 0);
	assert_null(error);
	directory_close(&d);
}

struct group_case {
	const char *group;
	int ret;
	const char *members; /* space-separated names */
};

static const struct group_case group_cases[] = {
	{ "g", 1, "r1 r2 r3" },
	{ "solo", 1, "solo" },        /* a lone relay is a group of one */
	{ "self", 1, "self x" },      /* a relay in the group of its own name */
	{ "r1", 1, "r1" },            /* a group member is also a group of one by name */
	{ "nope", 0, "" },
};

static void test_groups(void **state)
{
	(void)state;
	struct directory *d = open_memory();
	char *error = NULL;
	for (size_t i = 0; i < 9; i++) {
		if (add_cases[i].ret == 1)
			assert_int_equal(relays_add(d, &add_cases[i].r, &error), 1);
	}
	for (size_t i = 0; i < sizeof(group_cases) / sizeof(group_cases[0]); i++) {
		const struct group_case *c = &group_cases[i];
		struct relay_info *list = NULL;
		size_t n = 99;
		int ret = relays_group(d, c->group, &list, &n, &error);
		char names[256] = "";
		for (size_t k = 0; k < n && ret > 0; k++) {
			size_t len = strlen(names);
			snprintf(names + len, sizeof(names) - len, "%s%s", k > 0 ? " " : "", list[k].name);
		}
		if (ret != c->ret || strcmp(names, c->members) != 0) {
			fprintf(stderr, "group case %zu (%s): ret %d names '%s'\n", i, c->group, ret, names);
			fail();
		}
		if (ret == 0)
			assert_int_equal(n, 0);
		relays_group_free(&list, n);
		assert_null(list);
	}
	/* relays_list: by name, with the password. */
	directory_close(&d);
}

static int count_cb(const struct relay_info *r, void *ctx)
{
	(void)r;
	(*(int *)ctx)++;
	return 0;
}

struct get_case {
	const char *domain;
	int ret;
	const char *target;
};

static void check_gets(struct directory *d, const struct get_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *target = NULL, *error = NULL;
		int ret = transport_get(d, cases[i].domain, &target, &error);
		if (ret != cases[i].ret || (ret == 1 && strcmp(target, cases[i].target) != 0)) {
			fprintf(stderr, "transport_get(%s): ret %d target %s error %s\n", cases[i].domain, ret, target, error);
			fail();
		}
		free(target);
		free(error);
	}
}

static void test_transports(void **state)
{
	(void)state;
	struct directory *d = open_memory();
	char *error = NULL;
	for (size_t i = 0; i < 9; i++) {
		if (add_cases[i].ret == 1)
			assert_int_equal(relays_add(d, &add_cases[i].r, &error), 1);
	}
	/* no transports at all */
	static const struct get_case none[] = { { "example.org", 0, NULL }, { "*", 0, NULL } };
	check_gets(d, none, 1);

	assert_int_equal(transport_set(d, "Example.ORG", "g", &error), 1);
	assert_int_equal(transport_set(d, ".example.org", "solo", &error), 1);
	assert_int_equal(transport_set(d, ".deep.example.org", "r2", &error), 1);
	assert_int_equal(transport_set(d, "bücher.example", "self", &error), 1);
	assert_int_equal(transport_set(d, "x.example", "nope", &error), 0);
	assert_null(error);
	assert_int_equal(transport_set(d, "bad domain", "g", &error), -1);
	assert_string_equal(error, "bad transport domain 'bad domain': domain may contain only letters, digits, '-', '_' and '.'");
	free(error);
	error = NULL;

	static const struct get_case before_default[] = {
		{ "example.org", 1, "g" },
		{ "EXAMPLE.org", 1, "g" },
		{ "a.example.org", 1, "solo" },
		{ "a.b.example.org", 1, "solo" },
		{ "deep.example.org", 1, "solo" },   /* ".deep.example.org" is for its subdomains only */
		{ "x.deep.example.org", 1, "r2" },
		{ "xn--bcher-kva.example", 1, "self" },
		{ "bücher.example", 1, "self" },
		{ "example.com", 0, NULL },
		{ "org", 0, NULL },
		{ "[192.0.2.1]", 0, NULL },
	};
	check_gets(d, before_default, sizeof(before_default) / sizeof(before_default[0]));

	assert_int_equal(transport_set(d, "*", "r1", &error), 1);
	assert_int_equal(transport_set(d, "example.org", "r3", &error), 1); /* replaces */
	static const struct get_case with_default[] = {
		{ "example.org", 1, "r3" },
		{ "a.example.org", 1, "solo" },
		{ "example.com", 1, "r1" },
		{ "[192.0.2.1]", 1, "r1" },
		{ "", 1, "r1" },
	};
	check_gets(d, with_default, sizeof(with_default) / sizeof(with_default[0]));

	/* A transport keeps naming something: deleting the last relay it names is refused. */
	assert_int_equal(relays_del(d, "solo", &error), -1);
	assert_string_equal(error, "transport .example.org uses solo, which would be left without relays: "
				   "delete or change the transport first");
	free(error);
	error = NULL;
	struct relay_info r;
	assert_int_equal(relays_get(d, "solo", &r, &error), 1); /* rolled back */
	relay_info_deinit(&r);
	assert_int_equal(relays_del(d, "r2", &error), -1);    /* .deep.example.org names r2 itself */
	free(error);
	error = NULL;
	assert_int_equal(transport_del(d, ".deep.example.org", &error), 1);
	assert_int_equal(transport_del(d, ".deep.example.org", &error), 0);
	assert_int_equal(relays_del(d, "r2", &error), 1);     /* group g keeps r1 and r3 */
	assert_int_equal(relays_get(d, "r2", &r, &error), 0);
	char *target = NULL;
	assert_int_equal(transport_get(d, "example.org", &target, &error), 1);
	assert_string_equal(target, "r3");
	free(target);
	assert_int_equal(relays_del(d, "nope", &error), 0);
	assert_int_equal(transport_del(d, ".example.org", &error), 1);
	assert_int_equal(relays_del(d, "solo", &error), 1);
	/* x is not the last of group "self": fine; self then is (transport bücher) */
	assert_int_equal(relays_del(d, "x", &error), 1);
	assert_int_equal(relays_del(d, "self", &error), -1);
	free(error);
	error = NULL;
	int n = 0;
	assert_int_equal(relays_list(d, count_cb, &n, &error), 1);
	assert_int_equal(n, 3); /* r1 r3 self */
	directory_close(&d);
}

/* A read-only directory that never saw a relay: everything reads as empty. */
static void test_readonly(void **state)
{
	(void)state;
	char *path = xasprintf("%s/ro.db", tmpdir), *error = NULL;
	struct directory *d = directory_open(path, false, &error);
	assert_non_null(d);
	directory_close(&d);
	d = directory_open(path, true, &error);
	assert_non_null(d);
	struct relay_info r, *list = NULL;
	size_t n = 5;
	char *target = NULL;
	int count = 0;
	assert_int_equal(relays_get(d, "r1", &r, &error), 0);
	assert_int_equal(relays_group(d, "g", &list, &n, &error), 0);
	assert_int_equal(n, 0);
	assert_int_equal(relays_list(d, count_cb, &count, &error), 0);
	assert_int_equal(count, 0);
	assert_int_equal(transport_get(d, "example.org", &target, &error), 0);
	assert_null(error);
	/* writes fail cleanly */
	struct relay_info add = { .name = "r", .host = "x.example" };
	assert_int_equal(relays_add(d, &add, &error), -1);
	assert_non_null(error);
	free(error);
	directory_close(&d);
	free(path);
}

static void test_status_file(void **state)
{
	(void)state;
	char *path = xasprintf("%s/relay-status.json", tmpdir), *error = NULL;
	struct relay_status *list = NULL;
	size_t n = 7;
	assert_int_equal(relay_status_read(path, &list, &n, &error), 0);
	assert_int_equal(n, 0);
	struct relay_status in[] = { { .name = "r1", .state = "up", .failures = 0, .until = 0 },
				     { .name = "r2", .state = "down", .failures = 3, .until = 1700000060 } };
	assert_int_equal(relay_status_write(path, in, 2, &error), 0);
	assert_int_equal(relay_status_read(path, &list, &n, &error), 1);
	assert_int_equal(n, 2);
	assert_string_equal(list[1].name, "r2");
	assert_string_equal(list[1].state, "down");
	assert_int_equal(list[1].failures, 3);
	assert_int_equal(list[1].until, 1700000060);
	assert_int_equal(list[0].failures, 0);
	relay_status_free(&list, n);
	assert_null(list);

	static const char *const bad[] = {
		"{\"relays\": [{\"name\": \"r1\"}]}",
		"{\"relays\": {}}",
		"{\"relays\": [{\"name\": \"r1\", \"state\": \"up\", \"failures\": \"x\"}]}",
		"[1, 2",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		fputs(bad[i], f);
		fclose(f);
		assert_int_equal(relay_status_read(path, &list, &n, &error), -1);
		assert_non_null(error);
		free(error);
		error = NULL;
	}
	unlink(path);
	free(path);
}

/* ---- the commands ---- */

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

/* Print a relay with its password the way the queue role reads it (privileges dropped, read-only). */
static int show_relay_main(struct cli_ctx *ctx, int argc, char **argv)
{
	(void)argc;
	struct mr_config *cfg = cli_config(ctx);
	char *error = NULL;
	if (cli_drop_privileges(cfg, cfg->user) < 0)
		return 1;
	char *path = directory_path(cfg);
	struct directory *d = directory_open(path, true, &error);
	free(path);
	if (d == NULL)
		return 1;
	struct relay_info r;
	int ret = relays_get(d, argv[1], &r, &error);
	if (ret == 1)
		printf("%s %s %u %s %s\n", r.host, r.tls, r.weight, r.auth_user != NULL ? r.auth_user : "-",
		       r.auth_pass != NULL ? r.auth_pass : "-");
	relay_info_deinit(&r);
	char *target = NULL;
	if (argv[2] != NULL && transport_get(d, argv[2], &target, &error) == 1)
		printf("transport %s\n", target);
	free(target);
	directory_close(&d);
	return ret == 1 ? 0 : 1;
}

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
	const char *args[16];
	const char *stdin_text;
	int exit_code;
	const char *out;
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
		char *argv[17];
		int argc = 0;
		while (argc < 16 && c->args[argc] != NULL) {
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
	if (code != c->exit_code || !output_matches(c->out, out) || !output_matches(c->err, err)) {
		fprintf(stderr, "case %zu (%s %s): exit %d (want %d)\n--- stdout:\n%s--- want:\n%s\n--- stderr:\n%s--- want:\n%s\n",
			index, c->args[0], c->args[1] != NULL ? c->args[1] : "", code, c->exit_code, out,
			c->out != NULL ? c->out : "", err, c->err != NULL ? c->err : "");
		fail();
	}
	free(out);
	free(err);
}

#define R cli_relay_main
#define T cli_transport_main
#define S show_relay_main

static const struct cli_case cases[] = {
	{ R, { "relay", "list" }, .exit_code = 0 },
	{ T, { "transport", "list" }, .exit_code = 0 },
	{ R, { "relay", "status" }, .exit_code = 0 },
	{ R, { "relay", "add", "r1", "--host", "smtp.example.test:587", "--group", "g", "--weight", "3", "--tls",
	       "require", "--auth-user", "me@example.test" },
	  .stdin_text = "s3cret pass\r\nignored\n", .exit_code = 0 },
	{ R, { "relay", "add", "r2", "--host=[2001:db8::1]:2525", "--group=g" }, .exit_code = 0 },
	{ R, { "relay", "add", "solo", "--host", "192.0.2.1" }, .exit_code = 0 },
	{ R, { "relay", "add", "r1", "--host", "x.example" }, .exit_code = 1, .err = "mailroute: relay r1 already exists\n" },
	{ R, { "relay", "add", "g", "--host", "x.example" }, .exit_code = 1,
	  .err = "mailroute: 'g' is the name of a group: choose another relay name\n" },
	{ R, { "relay", "add", "x", "--host", "x.example", "--group", "solo" }, .exit_code = 1,
	  .err = "mailroute: 'solo' is the name of a relay outside that group: choose another group name\n" },
	{ R, { "relay", "add", "x" }, .exit_code = 2, .err = "mailroute: usage: relay add NAME --host*" },
	{ R, { "relay", "add", "x", "--host" }, .exit_code = 2, .err = "mailroute: --host needs HOST[:PORT]\n" },
	{ R, { "relay", "add", "x", "--host", "a:99999" }, .exit_code = 2,
	  .err = "mailroute: bad --host 'a:99999': port must be 1-65535\n" },
	{ R, { "relay", "add", "x", "--host", "a", "--weight", "0" }, .exit_code = 2,
	  .err = "mailroute: --weight needs a number from 1 to 1000\n" },
	{ R, { "relay", "add", "x", "--host", "a", "--tls", "on" }, .exit_code = 2,
	  .err = "mailroute: --tls needs none, may or require\n" },
	{ R, { "relay", "add", "x", "--host", "a", "--auth-user", "u" }, .stdin_text = "\n", .exit_code = 2,
	  .err = "mailroute: empty password (give it as the first line of stdin)\n" },
	{ R, { "relay", "add", "x", "y", "--host", "a" }, .exit_code = 2, .err = "mailroute: relay add takes one NAME\n" },
	{ R, { "relay", "add", "x!", "--host", "a" }, .exit_code = 2,
	  .err = "mailroute: bad relay name 'x!': a name may contain only letters, digits, '.', '_' and '-'\n" },
	{ R, { "relay", "add", "x", "--host", "a", "--frob" }, .exit_code = 2,
	  .err = "mailroute: relay add: unknown option '--frob'\n" },
	{ R, { "relay", "list" }, .exit_code = 0,
	  .out = "r1\tsmtp.example.test:587\tg\t3\trequire\tme@example.test\n"
		 "r2\t[2001:db8::1]:2525\tg\t1\tmay\t-\n"
		 "solo\t192.0.2.1:25\t-\t1\tmay\t-\n" },
	{ S, { "show", "r1" }, .exit_code = 0, .out = "smtp.example.test require 3 me@example.test s3cret pass\n" },
	{ R, { "relay", "status" }, .exit_code = 0,
	  .out = "r1\tsmtp.example.test:587\tg\t3\tunknown\t-\t-\n"
		 "r2\t[2001:db8::1]:2525\tg\t1\tunknown\t-\t-\n"
		 "solo\t192.0.2.1:25\t-\t1\tunknown\t-\t-\n" },
	{ T, { "transport", "set", "Example.ORG", "g" }, .exit_code = 0 },
	{ T, { "transport", "set", ".example.org", "solo" }, .exit_code = 0 },
	{ T, { "transport", "set", "*", "r1" }, .exit_code = 0 },
	{ T, { "transport", "set", "x.example", "nope" }, .exit_code = 1,
	  .err = "mailroute: no relay or group nope (add it first: mailroute relay add nope --host HOST:PORT)\n" },
	{ T, { "transport", "set", "bad domain", "g" }, .exit_code = 2,
	  .err = "mailroute: bad domain 'bad domain': domain may contain only letters, digits, '-', '_' and '.'\n" },
	{ T, { "transport", "set", "x.example" }, .exit_code = 2,
	  .err = "mailroute: usage: transport set DOMAIN RELAY_OR_GROUP\n" },
	{ T, { "transport", "list" }, .exit_code = 0, .out = ".example.org\tsolo\nexample.org\tg\n*\tr1\n" },
	{ S, { "show", "solo", "a.example.org" }, .exit_code = 0,
	  .out = "192.0.2.1 may 1 - -\ntransport solo\n" },
	{ S, { "show", "solo", "elsewhere.example" }, .exit_code = 0,
	  .out = "192.0.2.1 may 1 - -\ntransport r1\n" },
	{ R, { "relay", "del", "solo" }, .exit_code = 1,
	  .err = "mailroute: transport .example.org uses solo, which would be left without relays: "
		 "delete or change the transport first\n" },
	{ R, { "relay", "del", "r2" }, .exit_code = 0 },
	{ R, { "relay", "del", "r2" }, .exit_code = 1, .err = "mailroute: no relay r2\n" },
	{ R, { "relay", "del" }, .exit_code = 2, .err = "mailroute: usage: relay del NAME\n" },
	{ T, { "transport", "del", ".example.org" }, .exit_code = 0 },
	{ T, { "transport", "del", ".example.org" }, .exit_code = 1, .err = "mailroute: no transport for .example.org\n" },
	{ R, { "relay", "del", "solo" }, .exit_code = 0 },
	{ T, { "transport", "frob" }, .exit_code = 2, .err = "mailroute: transport: unknown subcommand 'frob' (set, list, del)\n" },
	{ R, { "relay", "frob" }, .exit_code = 2,
	  .err = "mailroute: relay: unknown subcommand 'frob' (add, list, del, status)\n" },
	{ R, { "relay" }, .exit_code = 2, .err = "mailroute: usage: relay add*" },
};

static void test_commands(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run(&cases[i], i);

	/* The relay password lives in directory.db: owner (the role user) and group only. */
	char *file = xasprintf("%s/var/db/directory.db", tmpdir);
	struct stat st;
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	if (geteuid() == 0) {
		struct passwd *pw = getpwnam(role_user);
		assert_non_null(pw);
		assert_int_equal(st.st_uid, pw->pw_uid);
	}
	free(file);

	/* relay status with the queue role's health file */
	char *qdir = xasprintf("%s/var/queue", tmpdir), *path = xasprintf("%s/relay-status.json", qdir), *error = NULL;
	assert_true(mkdir(qdir, 0755) == 0);
	struct relay_status hs[] = { { .name = "r1", .state = "down", .failures = 4, .until = 1700000060 },
				     { .name = "gone", .state = "up" } };
	assert_int_equal(relay_status_write(path, hs, 2, &error), 0);
	const struct cli_case status = { R, { "relay", "status" }, .exit_code = 0,
					 .out = "r1\tsmtp.example.test:587\tg\t3\tdown\t4\t2023-11-14T22:14:20Z\n" };
	run(&status, 100);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\"relays\": 3}", f);
	fclose(f);
	const struct cli_case broken = { R, { "relay", "status" }, .exit_code = 1,
					 .err = "mailroute: *relay-status.json: no \"relays\" array\n" };
	run(&broken, 101);
	free(path);
	free(qdir);
}

static int setup(void **state)
{
	(void)state;
	assert_non_null(mkdtemp(tmpdir));
	chmod(tmpdir, 0755); /* the role user must reach <data_dir> */
	config_path = xasprintf("%s/mailroute.yaml", tmpdir);
	FILE *f = fopen(config_path, "w");
	assert_non_null(f);
	role_user = geteuid() == 0 && getpwnam("mailroute") == NULL ? "root" : "mailroute";
	if (geteuid() != 0) {
		struct passwd *pw = getpwuid(geteuid());
		role_user = pw != NULL ? xstrdup(pw->pw_name) : "mailroute";
	}
	fprintf(f, "hostname: mail.example.test\ndata_dir: %s/var\nuser: %s\n", tmpdir, role_user);
	fclose(f);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
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
		cmocka_unit_test(test_add_get),
		cmocka_unit_test(test_groups),
		cmocka_unit_test(test_transports),
		cmocka_unit_test(test_readonly),
		cmocka_unit_test(test_status_file),
		cmocka_unit_test(test_commands),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
