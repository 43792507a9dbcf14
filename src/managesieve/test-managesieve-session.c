/*
 * ManageSieve session transcripts over a socketpair with a stub authenticator and a
 * sieve store in a temporary data_dir: a table of (client bytes, expected reply regex),
 * sent whole and then a byte at a time.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/buf.h"
#include "lib/xalloc.h"
#include "managesieve/managesieve_session.h"

static char root[128];
static struct event_base *base;

struct stub {
	mail_auth_cb *cb;
	void *arg;
	bool ok;
	struct event *ev;
};

static void stub_fire(evutil_socket_t fd, short what, void *p)
{
	(void)fd;
	(void)what;
	struct stub *r = p;
	r->cb(r->arg, r->ok ? LOOKUP_OK : LOOKUP_DENIED, r->ok ? "joe@example.test" : NULL, r->ok ? "/nonexistent" : NULL);
	event_free(r->ev);
	free(r);
}

static void *stub_begin(void *ctx, const char *service, const char *user, const char *password, const char *ip,
                        mail_auth_cb *cb, void *arg)
{
	(void)ctx;
	(void)ip;
	struct stub *r = xcalloc(1, sizeof(*r));
	r->cb = cb;
	r->arg = arg;
	r->ok = strcmp(user, "joe@example.test") == 0 && strcmp(password, "pw") == 0 &&
	        strcmp(service, "managesieve") == 0;
	r->ev = event_new(base, -1, 0, stub_fire, r);
	struct timeval tv = { 0, 0 };
	event_add(r->ev, &tv);
	return r;
}

static void stub_cancel(void *ctx, void *req)
{
	(void)ctx;
	struct stub *r = req;
	event_free(r->ev);
	free(r);
}

struct step {
	const char *send;
	const char *expect; /* extended regex over the reply */
	const char *until;  /* the reply is complete when it ends with this */
};

#define OKL "\r\n$", "OK\r\n"
#define S70 "0123456789012345678901234567890123456789012345678901234567890123456789"

static const struct step steps[] = {
	{ "", "^\"IMPLEMENTATION\" \"mailroute\"\r\n\"SASL\" \"PLAIN\"\r\n\"SIEVE\" \"[^\"]*fileinto[^\"]*\"\r\n"
	      ".*\"VERSION\" \"1.0\"\r\nOK \"mailroute ManageSieve ready\"\r\n$", "ready\"\r\n" },
	{ "LISTSCRIPTS\r\n", "^NO \"Authenticate first\"\r\n$", "\r\n" },
	{ "AUTHENTICATE \"PLAIN\" \"AGpvZUBleGFtcGxlLnRlc3QAYmFk\"\r\n", "^NO \"Authentication failed\"\r\n$", "\r\n" },
	{ "AUTHENTICATE \"DIGEST-MD5\"\r\n", "^NO \"Unsupported SASL mechanism\"\r\n$", "\r\n" },
	{ "AUTHENTICATE \"PLAIN\" \"b3RoZXIAam9lQGV4YW1wbGUudGVzdABwdw==\"\r\n", "^NO \"Proxy", "\r\n" },
	{ "AUTHENTICATE \"PLAIN\"\r\n", "^\"\"\r\n$", "\"\"\r\n" },
	{ "\"*\"\r\n", "^NO \"Authentication aborted\"\r\n$", "\r\n" },
	{ "AUTHENTICATE \"PLAIN\"\r\n{28+}\r\nAGpvZUBleGFtcGxlLnRlc3QAcHc=\r\n", "^\"\"\r\nOK \"Logged in\"\r\n$",
	  "in\"\r\n" },
	{ "CAPABILITY\r\n", "^\"IMPLEMENTATION\" \"mailroute\"\r\n\"SASL\" \"\"\r\n.*\"OWNER\" \"joe@example.test\"\r\n.*OK\r\n$",
	  "OK\r\n" },
	{ "AUTHENTICATE \"PLAIN\" \"AGpvZUBleGFtcGxlLnRlc3QAcHc=\"\r\n", "^NO \"Already authenticated\"\r\n$", "\r\n" },
	{ "LISTSCRIPTS\r\n", "^OK\r\n$", "OK\r\n" },
	{ "PUTSCRIPT \"s1\" \"require \\\"fileinto\\\"; fileinto \\\"F\\\";\"\r\n", "^OK\r\n$", "\r\n" },
	{ "PUTSCRIPT \"s2\" {6+}\r\nkeep;\n\r\n", "^OK\r\n$", "\r\n" },
	{ "PUTSCRIPT \"bad\" {9}\r\nkeep;\nfoo\r\n", "^NO \"2:[0-9]+: [^\"]+\"\r\n$", "\r\n" },
	{ "PUTSCRIPT \"inc\" \"require \\\"include\\\"; include \\\"later\\\";\"\r\n", "^OK\r\n$", "\r\n" },
	{ "SETACTIVE \"inc\"\r\n", "^NO \"[0-9]+:[0-9]+: [^\"]*later", "\r\n" },
	{ "SETACTIVE \"s1\"\r\n", "^OK" OKL },
	/* the active script is replaced only by one whose includes exist */
	{ "PUTSCRIPT \"s1\" \"require \\\"include\\\"; include \\\"later\\\";\"\r\n", "^NO \"[0-9]+:[0-9]+: [^\"]*later", "\r\n" },
	{ "SETACTIVE \"\"\r\n", "^OK", "\r\n" },
	{ "DELETESCRIPT \"inc\"\r\n", "^OK" OKL },
	{ "LISTSCRIPTS\r\n", "^\"s1\"\r\n\"s2\"\r\nOK" OKL },
	{ "SETACTIVE \"s1\"\r\n", "^OK" OKL },
	{ "LISTSCRIPTS\r\n", "^\"s1\" ACTIVE\r\n\"s2\"\r\nOK" OKL },
	{ "DELETESCRIPT \"s1\"\r\n", "^NO \\(ACTIVE\\) \"[^\"]+\"\r\n$", "\r\n" },
	{ "DELETESCRIPT \"nope\"\r\n", "^NO \\(NONEXISTENT\\) \"[^\"]+\"\r\n$", "\r\n" },
	{ "GETSCRIPT \"s2\"\r\n", "^\\{6\\}\r\nkeep;\n\r\nOK" OKL },
	{ "GETSCRIPT \"nope\"\r\n", "^NO \\(NONEXISTENT\\)", "\r\n" },
	{ "RENAMESCRIPT \"s2\" \"s1\"\r\n", "^NO \\(ALREADYEXISTS\\)", "\r\n" },
	{ "RENAMESCRIPT \"nope\" \"s9\"\r\n", "^NO \\(NONEXISTENT\\)", "\r\n" },
	{ "RENAMESCRIPT \"s1\" \"s3\"\r\n", "^OK" OKL },
	{ "LISTSCRIPTS\r\n", "^\"s2\"\r\n\"s3\" ACTIVE\r\nOK" OKL },
	{ "HAVESPACE \"s9\" 65\r\n", "^NO \\(QUOTA/MAXSIZE\\)", "\r\n" },
	{ "HAVESPACE \"s9\" 64\r\n", "^OK" OKL },
	{ "PUTSCRIPT \"s4\" \"stop;\"\r\n", "^OK" OKL },
	{ "HAVESPACE \"s5\" 10\r\n", "^NO \\(QUOTA/MAXSCRIPTS\\)", "\r\n" },
	{ "PUTSCRIPT \"s5\" \"stop;\"\r\n", "^NO \\(QUOTA/MAXSCRIPTS\\)", "\r\n" },
	{ "PUTSCRIPT \"s4\" \"keep;\"\r\n", "^OK" OKL },
	{ "PUTSCRIPT \"big\" {70+}\r\n" S70 "\r\n", "^NO \\(QUOTA/MAXSIZE\\) \"Literal too large\"\r\n$", "\r\n" },
	{ "CHECKSCRIPT \"foo;\"\r\n", "^NO \"1:1: [^\"]+\"\r\n$", "\r\n" },
	{ "CHECKSCRIPT {5+}\r\nkeep;\r\n", "^OK" OKL },
	{ "SETACTIVE \"nope\"\r\n", "^NO \\(NONEXISTENT\\)", "\r\n" },
	{ "PUTSCRIPT \"../x\" \"keep;\"\r\n", "^NO \"Invalid script name", "\r\n" },
	{ "NOOP \"tag1\"\r\n", "^OK \\(TAG \"tag1\"\\) \"Done\"\r\n$", "\r\n" },
	{ "NOOP \"a\\x\"\r\n", "^NO \"Invalid escape in a quoted string\"\r\n$", "\r\n" },
	{ "SETACTIVE \"\"\r\n", "^OK", "\r\n" },
	{ "LISTSCRIPTS\r\n", "^\"s2\"\r\n\"s3\"\r\n\"s4\"\r\nOK" OKL },
	{ "UNAUTHENTICATE\r\n", "^OK" OKL },
	{ "LISTSCRIPTS\r\n", "^NO \"Authenticate first\"\r\n$", "\r\n" },
	{ "STARTTLS\r\n", "^NO \"STARTTLS not available\"\r\n$", "\r\n" },
	{ "FOO\r\n", "^NO \"Unknown command", "\r\n" },
	{ "LOGOUT\r\n", "^OK \"Logout completed\"\r\n$", "\r\n" },
};

/* errors before close, and a fatal line */
static const struct step steps_errors[] = {
	{ "", "OK \"mailroute ManageSieve ready\"\r\n$", "ready\"\r\n" },
	{ "FOO\r\nBAR\r\n", "^NO \"Unknown command or wrong arguments\"\r\nNO \"Unknown command or wrong arguments\"\r\n$",
	  "arguments\"\r\nNO \"Unknown command or wrong arguments\"\r\n" },
	{ "BAZ\r\nNOOP\r\n", "^NO \"Unknown command or wrong arguments\"\r\nBYE \"Too many errors\"\r\n$", "errors\"\r\n" },
};

static const struct step steps_fatal[] = {
	{ "", "OK \"mailroute ManageSieve ready\"\r\n$", "ready\"\r\n" },
	{ "PUTSCRIPT \"a\" {99999999999+}\r\nNOOP\r\n", "^BYE \"Literal length too large\"\r\n$", "\r\n" },
};

static int client_fd;

static bool ends_with(const struct buf *b, const char *sfx)
{
	size_t l = strlen(sfx);
	return b->len >= l && memcmp(b->data + b->len - l, sfx, l) == 0;
}

static char *wait_reply(const char *until)
{
	struct buf got;
	buf_init(&got, 1 << 20);
	for (int spins = 0; spins < 20000 && !ends_with(&got, until); spins++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		char tmp[4096];
		ssize_t n = read(client_fd, tmp, sizeof(tmp));
		if (n > 0)
			buf_append(&got, tmp, (size_t)n);
		else
			usleep(100);
	}
	char *r = buf_steal(&got);
	buf_deinit(&got);
	return r;
}

static void run_transcript(const struct step *st, size_t n_steps, unsigned max_errors, bool trickle)
{
	char *cmd = xasprintf("rm -rf '%s/sieve'", root);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	base = event_base_new();
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	client_fd = sv[1];
	struct managesieve_settings set = {
		.data_dir = root, .allow_plaintext = true, .timeout_secs = 60, .max_errors = max_errors,
		.max_script_size = 64, .max_scripts = 3,
		.auth = { .begin = stub_begin, .cancel = stub_cancel },
	};
	assert_non_null(managesieve_session_new(base, sv[0], &set, false, "127.0.0.1"));
	for (size_t i = 0; i < n_steps; i++) {
		const char *p = st[i].send;
		for (size_t k = 0, len = strlen(p); k < len;) {
			size_t n = trickle ? 1 : len - k;
			ssize_t w = write(client_fd, p + k, n);
			if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
				break; /* the server closed after BYE: the rest is never read */
			assert_true(w > 0);
			k += (size_t)w;
			if (trickle)
				event_base_loop(base, EVLOOP_NONBLOCK);
		}
		char *got = wait_reply(st[i].until);
		regex_t re;
		assert_int_equal(regcomp(&re, st[i].expect, REG_EXTENDED), 0);
		if (regexec(&re, got, 0, NULL, 0) != 0)
			fail_msg("step %zu (%s) trickle=%d: got '%s'", i, st[i].send, trickle, got);
		regfree(&re);
		free(got);
	}
	/* the server closes after LOGOUT / BYE */
	for (int spins = 0; spins < 5000 && managesieve_session_count() > 0; spins++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(100);
	}
	assert_int_equal(managesieve_session_count(), 0);
	char tmp[64];
	assert_int_equal(read(client_fd, tmp, sizeof(tmp)), 0);
	close(client_fd);
	event_base_free(base);
}

static void test_transcript(void **state)
{
	(void)state;
	for (int trickle = 0; trickle < 2; trickle++) {
		run_transcript(steps, sizeof(steps) / sizeof(steps[0]), 100, trickle);
		/* the store holds what the transcript left: s3 was renamed from s1 and s4 replaced */
		char *p = xasprintf("%s/sieve/example.test/joe/s3.sieve", root);
		struct stat st;
		assert_int_equal(stat(p, &st), 0);
		free(p);
		p = xasprintf("%s/sieve/example.test/joe/s1.sieve", root);
		assert_int_equal(stat(p, &st), -1);
		free(p);
		p = xasprintf("%s/sieve/example.test/joe/active", root);
		assert_int_equal(lstat(p, &st), -1);
		free(p);
	}
}

static void test_errors_close(void **state)
{
	(void)state;
	for (int trickle = 0; trickle < 2; trickle++) {
		run_transcript(steps_errors, sizeof(steps_errors) / sizeof(steps_errors[0]), 3, trickle);
		run_transcript(steps_fatal, sizeof(steps_fatal) / sizeof(steps_fatal[0]), 100, trickle);
	}
}

static int setup(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/tmp/mr-test-msieve-session-XXXXXX");
	return mkdtemp(root) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char *cmd = xasprintf("rm -rf '%s'", root);
	int r = system(cmd);
	free(cmd);
	return r == 0 ? 0 : -1;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transcript),
		cmocka_unit_test(test_errors_close),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
