/*
 * IMAP session transcripts over a socketpair: a table of (client bytes, expected reply
 * regex), run once with each command sent whole and once a byte at a time (trickle).
 */
#include <errno.h>
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
#include <unistd.h>
#include <cmocka.h>

#include "imap/imap_session.h"
#include "lib/buf.h"
#include "lib/xalloc.h"

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
	r->ok = strcmp(user, "joe") == 0 && strcmp(password, "pw") == 0 && strcmp(service, "imap") == 0;
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
	const char *expect; /* extended regex over everything received up to the tagged reply */
	const char *tag;    /* wait until a line starting with this arrives ("* OK" for greeting) */
};

static const struct step steps[] = {
	{ .send = "", .expect = "^\\* OK \\[CAPABILITY IMAP4rev1 [^]]*AUTH=PLAIN", .tag = "* OK" },
	{ .send = "a1 CAPABILITY\r\n", .expect = "^\\* CAPABILITY IMAP4rev1 .*\r\na1 OK", .tag = "a1 " },
	{ .send = "a2 SELECT INBOX\r\n", .expect = "^a2 BAD Log in first", .tag = "a2 " },
	{ .send = "a2a APPEND INBOX {100000}\r\n", .expect = "^a2a NO \\[TOOBIG\\]", .tag = "a2a " },
	{ .send = "a3 LOGIN joe wrong\r\n", .expect = "^a3 NO \\[AUTHENTICATIONFAILED\\]", .tag = "a3 " },
	{ .send = "a4 LOGIN {3}\r\njoe {2}\r\npw\r\n", .expect = "^\\+ OK\r\n\\+ OK\r\na4 OK \\[CAPABILITY .*IDLE", .tag = "a4 " },
	{ .send = "a5 LOGIN joe pw\r\n", .expect = "^a5 BAD Already logged in", .tag = "a5 " },
	{ .send = "a6 SELECT INBOX\r\n", .expect = "\\* 0 EXISTS\r\n.*UIDVALIDITY [0-9]+.*a6 OK \\[READ-WRITE\\]", .tag = "a6 " },
	{ .send = "a7 APPEND INBOX (\\Flagged) {23+}\r\nSubject: t1\r\n\r\nhello\r\n\r\n",
	  .expect = "\\* 1 EXISTS.*a7 OK \\[APPENDUID [0-9]+ 1\\]", .tag = "a7 " },
	{ .send = "a8 FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)] RFC822.SIZE)\r\n",
	  .expect = "^\\* 1 FETCH \\(FLAGS \\(\\\\Flagged \\\\Recent\\) RFC822.SIZE 23 BODY\\[HEADER.FIELDS \\(SUBJECT\\)\\] \\{15\\}\r\nSubject: t1\r\n\r\n\\)\r\na8 OK",
	  .tag = "a8 " },
	{ .send = "a9 STORE 1 +FLAGS.SILENT (\\Seen)\r\n", .expect = "^a9 OK", .tag = "a9 " },
	{ .send = "b1 SEARCH SEEN FLAGGED SUBJECT t1 BODY hello\r\n", .expect = "^\\* SEARCH 1\r\nb1 OK", .tag = "b1 " },
	{ .send = "b2 UID SEARCH NOT SEEN\r\n", .expect = "^\\* SEARCH\r\nb2 OK", .tag = "b2 " },
	{ .send = "b2a SEARCH RETURN (SAVE) SUBJECT t1\r\n", .expect = "^b2a OK", .tag = "b2a " },
	{ .send = "b2b FETCH $ (UID)\r\n", .expect = "^\\* 1 FETCH \\(UID 1\\)\r\nb2b OK", .tag = "b2b " },
	{ .send = "b2c UID SEARCH RETURN (COUNT) $\r\n", .expect = "^\\* ESEARCH \\(TAG \"b2c\"\\) UID COUNT 1\r\nb2c OK", .tag = "b2c " },
	{ .send = "b3 FETCH 1 (FLAGS\r\n", .expect = "^b3 BAD", .tag = "b3 " },
	{ .send = "b3a SEARCH\r\n", .expect = "^b3a BAD", .tag = "b3a " },
	{ .send = "b3j FETCH 2 FLAGS\r\n", .expect = "^b3j BAD Invalid message sequence", .tag = "b3j " },
	{ .send = "b3k UID FETCH 2:* FLAGS\r\n", .expect = "^\\* 1 FETCH \\(UID 1 FLAGS.*\r\nb3k OK", .tag = "b3k " },
	{ .send = "b3b UID SEARCH RETURN (MIN) CHARSET UTF-8\r\n", .expect = "^b3b BAD", .tag = "b3b " },
	{ .send = "b3c STORE 1 +FLAGS ()\r\n", .expect = "b3c OK", .tag = "b3c " },
	{ .send = "b3d FETCH 1 ()\r\n", .expect = "^b3d BAD", .tag = "b3d " },
	{ .send = "b3e LIST () \"\" ()\r\n", .expect = "b3e OK", .tag = "b3e " },
	{ .send = "b3f STATUS INBOX ()\r\n", .expect = "^b3f BAD", .tag = "b3f " },
	{ .send = "b3g SEARCH ()\r\n", .expect = "^b3g BAD", .tag = "b3g " },
	{ .send = "b3h ENABLE\r\n", .expect = "^b3h BAD", .tag = "b3h " },
	{ .send = "b3i APPEND INBOX ()\r\n", .expect = "^b3i BAD", .tag = "b3i " },
	{ .send = "b4 SELECT ../../etc\r\n", .expect = "NO \\[CANNOT\\]", .tag = "b4 " },
	{ .send = "b5 CREATE \"a/b\"\r\n", .expect = "^b5 NO", .tag = "b5 " },
	/* the failed SELECT left no mailbox selected (RFC 9051 6.3.2) */
	{ .send = "b5a FETCH 1 FLAGS\r\n", .expect = "^b5a BAD No mailbox selected", .tag = "b5a " },
	{ .send = "b5b EXAMINE INBOX\r\n", .expect = "b5b OK \\[READ-ONLY\\]", .tag = "b5b " },
	{ .send = "b5c STORE 1 +FLAGS (\\Deleted)\r\n", .expect = "^b5c NO \\[READ-ONLY\\]", .tag = "b5c " },
	{ .send = "b5d SELECT INBOX\r\n", .expect = "b5d OK \\[READ-WRITE\\]", .tag = "b5d " },
	{ .send = "b6 LIST \"\" %\r\n", .expect = "\\* LIST \\(\\\\HasNoChildren\\) \"\\.\" INBOX.*\\\\Trash\\) \"\\.\" Trash\r\nb6 OK", .tag = "b6 " },
	{ .send = "b7 STATUS INBOX (MESSAGES UNSEEN UIDNEXT)\r\n", .expect = "^\\* STATUS INBOX \\(MESSAGES 1 UIDNEXT 2 UNSEEN 0\\)\r\nb7 OK", .tag = "b7 " },
	{ .send = "b8 UID STORE 1 FLAGS (\\Deleted)\r\n", .expect = "^\\* 1 FETCH \\(UID 1 FLAGS \\(\\\\Deleted( \\\\Recent)?\\)\\)\r\nb8 OK", .tag = "b8 " },
	{ .send = "b9 EXPUNGE\r\n", .expect = "^\\* 1 EXPUNGE\r\nb9 OK", .tag = "b9 " },
	{ .send = "c0 APPEND INBOX {2000000}\r\n", .expect = "^c0 NO \\[TOOBIG\\]", .tag = "c0 " },
	{ .send = "c0a STATUS INBOX {99999}\r\n", .expect = "^c0a BAD Literal too large", .tag = "c0a " },
	{ .send = "c1 IDLE\r\n", .expect = "^\\+ idling", .tag = "+ " },
	{ .send = "DONE\r\n", .expect = "^c1 OK IDLE terminated", .tag = "c1 " },
	{ .send = "c2 NOOP caf\xc3\xa9\r\n", .expect = "^c2 BAD", .tag = "c2 " },
	{ .send = "c3 LOGOUT\r\n", .expect = "^\\* BYE .*\r\nc3 OK", .tag = "c3 " },
};

static int client_fd;

static bool has_line(const char *data, const char *tag)
{
	for (const char *p = data; *p;) {
		const char *e = strstr(p, "\r\n");
		if (e == NULL)
			return false;
		if (strncmp(p, tag, strlen(tag)) == 0)
			return true;
		p = e + 2;
	}
	return false;
}

/* Run the loop until a line starting with tag has arrived; returns everything received. */
static char *wait_for(const char *tag)
{
	struct buf got;
	buf_init(&got, 1 << 20);
	for (int spins = 0; spins < 20000 && !has_line(got.data, tag); spins++) {
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

static void send_bytes(const char *p, size_t len, bool trickle)
{
	for (size_t i = 0; i < len;) {
		size_t n = trickle ? 1 : len - i;
		ssize_t w = write(client_fd, p + i, n);
		assert_true(w > 0);
		i += (size_t)w;
		if (trickle)
			event_base_loop(base, EVLOOP_NONBLOCK);
	}
}

static void run_transcript(bool trickle)
{
	char *cmd = xasprintf("rm -rf '%s/joe'", root);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	base = event_base_new();
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	client_fd = sv[1];
	struct imap_settings set = {
		.hostname = "test", .allow_plaintext = true, .line_max = 8192, .literal_max = 8192,
		.append_max = 1 << 20, .timeout_secs = 60, .max_errors = 100,
		.auth = { .begin = stub_begin, .cancel = stub_cancel },
	};
	assert_non_null(imap_session_new(base, sv[0], &set, false, "127.0.0.1"));
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		const struct step *st = &steps[i];
		send_bytes(st->send, strlen(st->send), trickle);
		char *got = wait_for(st->tag);
		regex_t re;
		assert_int_equal(regcomp(&re, st->expect, REG_EXTENDED), 0);
		if (regexec(&re, got, 0, NULL, 0) != 0)
			fail_msg("step %zu (%s) trickle=%d: got '%s'", i, st->send, trickle, got);
		regfree(&re);
		free(got);
	}
	/* after LOGOUT the server closes the connection and frees the session */
	for (int spins = 0; spins < 2000 && imap_session_count() > 0; spins++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(100);
	}
	assert_int_equal(imap_session_count(), 0);
	close(client_fd);
	event_base_free(base);
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
	snprintf(root, sizeof(root), "/tmp/mr-test-imap-session-XXXXXX");
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
