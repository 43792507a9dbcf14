/*
 * POP3 session transcripts over a socketpair with a stub authenticator: a table of
 * (client bytes, expected reply regex), sent whole and then a byte at a time.
 */
#include <event2/event.h>
#include <fcntl.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/buf.h"
#include "lib/xalloc.h"
#include "pop3/pop3_session.h"

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
	struct stub *r = p;
	char *md = xasprintf("%s/joe", root);
	r->cb(r->arg, r->ok ? LOOKUP_OK : LOOKUP_DENIED, r->ok ? "joe@example.test" : NULL, r->ok ? md : NULL);
	free(md);
	event_free(r->ev);
	free(r);
}

static void *stub_begin(void *ctx, const char *service, const char *user, const char *password,
                        const char *ip, mail_auth_cb *cb, void *arg)
{
	struct stub *r = xcalloc(1, sizeof(*r));
	r->cb = cb;
	r->arg = arg;
	r->ok = strcmp(user, "joe") == 0 && strcmp(password, "p w") == 0 && strcmp(service, "pop3") == 0;
	r->ev = event_new(base, -1, 0, stub_fire, r);
	struct timeval tv = { 0, 0 };
	event_add(r->ev, &tv);
	return r;
}

static void stub_cancel(void *ctx, void *req)
{
	struct stub *r = req;
	event_free(r->ev);
	free(r);
}

struct step {
	const char *send;
	const char *expect; /* extended regex over the reply */
	const char *until;  /* the reply is complete when it ends with this */
};

static const struct step steps[] = {
	{ "", "^\\+OK mailroute POP3 ready\r\n$", "\r\n" },
	{ "CAPA\r\n", "^\\+OK.*\r\nTOP\r\nUIDL\r\n.*USER\r\nSASL PLAIN\r\n.*\\.\r\n$", "\r\n.\r\n" },
	{ "STAT\r\n", "^-ERR Log in first\r\n$", "\r\n" },
	{ "PASS x\r\n", "^-ERR USER first\r\n$", "\r\n" },
	{ "USER joe\r\n", "^\\+OK", "\r\n" },
	{ "PASS wrong\r\n", "^-ERR \\[AUTH\\]", "\r\n" },
	{ "USER joe\r\nPASS p w\r\n", "^\\+OK Send PASS\r\n\\+OK Logged in, 2 messages\r\n$", "messages\r\n" },
	{ "STAT\r\n", "^\\+OK 2 [0-9]+\r\n$", "\r\n" },
	{ "LIST\r\n", "^\\+OK\r\n1 [0-9]+\r\n2 [0-9]+\r\n\\.\r\n$", "\r\n.\r\n" },
	{ "UIDL 2\r\n", "^\\+OK 2 1700000001\\.b\\.host\r\n$", "\r\n" },
	{ "RETR 1\r\n", "^\\+OK [0-9]+ octets\r\nSubject: one\r\n\r\n\\.\\.dot\r\nend\r\n\\.\r\n$", "\r\n.\r\n" },
	{ "TOP 2 0\r\n", "^\\+OK Top of message follows\r\nSubject: two\r\n\r\n\\.\r\n$", "\r\n.\r\n" },
	{ "DELE 1\r\n", "^\\+OK", "\r\n" },
	{ "RETR 1\r\n", "^-ERR Message is deleted\r\n$", "\r\n" },
	{ "STAT\r\n", "^\\+OK 1 ", "\r\n" },
	{ "RSET\r\n", "^\\+OK", "\r\n" },
	{ "DELE 2\r\n", "^\\+OK", "\r\n" },
	{ "RETR 3\r\n", "^-ERR No such message\r\n$", "\r\n" },
	{ "TOP 1\r\n", "^-ERR", "\r\n" },
	{ "NOOP\r\n", "^\\+OK\r\n$", "\r\n" },
	{ "QUIT\r\n", "^\\+OK Logging out, 1 messages deleted\r\n$", "\r\n" },
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

static void write_msg(const char *name, const char *content)
{
	char *p = xasprintf("%s/joe/new/%s", root, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
	free(p);
}

static void run_transcript(bool trickle)
{
	char *cmd = xasprintf("rm -rf '%s/joe' && mkdir -p '%s/joe/new' '%s/joe/cur' '%s/joe/tmp'", root, root, root, root);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	write_msg("1700000000.a.host", "Subject: one\n\n.dot\nend\n");
	write_msg("1700000001.b.host", "Subject: two\n\nbody\n");
	base = event_base_new();
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	client_fd = sv[1];
	struct pop3_settings set = {
		.hostname = "test", .allow_plaintext = true, .timeout_secs = 60, .max_errors = 100,
		.auth = { .begin = stub_begin, .cancel = stub_cancel },
	};
	assert_non_null(pop3_session_new(base, sv[0], &set, false, "127.0.0.1"));
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		const char *p = steps[i].send;
		for (size_t k = 0, len = strlen(p); k < len;) {
			size_t n = trickle ? 1 : len - k;
			ssize_t w = write(client_fd, p + k, n);
			assert_true(w > 0);
			k += (size_t)w;
			if (trickle)
				event_base_loop(base, EVLOOP_NONBLOCK);
		}
		char *got = wait_reply(steps[i].until);
		regex_t re;
		assert_int_equal(regcomp(&re, steps[i].expect, REG_EXTENDED), 0);
		if (regexec(&re, got, 0, NULL, 0) != 0)
			fail_msg("step %zu (%s) trickle=%d: got '%s'", i, steps[i].send, trickle, got);
		regfree(&re);
		free(got);
	}
	for (int spins = 0; spins < 2000 && pop3_session_count() > 0; spins++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(100);
	}
	assert_int_equal(pop3_session_count(), 0);
	close(client_fd);
	event_base_free(base);
	/* DELE 2 was applied at QUIT, message 1 (RSET) kept */
	char *cur = xasprintf("%s/joe/cur", root);
	char *ls = xasprintf("ls '%s' | grep -c host | grep -qx 1", cur);
	assert_int_equal(system(ls), 0);
	free(ls);
	free(cur);
}

static void test_transcript_whole(void **state)
{
	run_transcript(false);
}

static void test_transcript_trickle(void **state)
{
	run_transcript(true);
}

static int setup(void **state)
{
	snprintf(root, sizeof(root), "/tmp/mr-test-pop3-session-XXXXXX");
	return mkdtemp(root) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	char *cmd = xasprintf("rm -rf '%s'", root);
	int r = system(cmd);
	free(cmd);
	return r == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transcript_whole),
		cmocka_unit_test(test_transcript_trickle),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
