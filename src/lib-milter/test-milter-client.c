/* milter_proto tables (framing trickle, reply decoding) and milter_client against the libmilter test milter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <libmilter/mfdef.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "filters/test_peers.h"
#include "lib-milter/milter_chain.h"
#include "lib-milter/milter_client.h"
#include "lib-milter/milter_proto.h"
#include "lib/buf.h"

_Static_assert(MILTER_VERSION == SMFI_PROT_VERSION, "version");
_Static_assert(MILTER_ACT_ALL == SMFI_CURR_ACTS, "actions");
_Static_assert(MILTER_P_NR_BODY == SMFIP_NR_BODY && MILTER_P_NOHDRS == SMFIP_NOHDRS && MILTER_P_SKIP == SMFIP_SKIP,
               "protocol flags");
_Static_assert(MILTER_P_HDR_LEADSPC == SMFIP_HDR_LEADSPC && MILTER_P_NR_CONN == SMFIP_NR_CONN, "protocol flags");
_Static_assert(MILTER_CHUNK_MAX == MILTER_CHUNK_SIZE, "chunk");
_Static_assert(MILTER_REPLY_REPLYCODE == SMFIR_REPLYCODE && MILTER_REPLY_INSHEADER == SMFIR_INSHEADER, "replies");
_Static_assert(MILTER_CMD_BODYEOB == SMFIC_BODYEOB && MILTER_CMD_OPTNEG == SMFIC_OPTNEG, "commands");

/* ---- protocol ---- */

static void test_packet_parse(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		int ret;
		char cmd;
		size_t data_len;
	} cases[] = {
		{"\0\0\0\1c", 5, 1, 'c', 0},
		{"\0\0\0\3hab", 8, 1, 'h', 2},
		{"\0\0\0\3hab+extra", 14, 1, 'h', 2},
		{"\0\0\0\0", 4, -1, 0, 0},
		{"\0\x20\0\0h", 5, -1, 0, 0}, /* 2 MiB > max */
		{"\0\0\0\5hab", 8, 0, 0, 0},
		{"\0\0", 2, 0, 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct milter_packet pkt;
		size_t used = 0;
		const char *error = NULL;
		int r = milter_packet_parse(cases[i].in, cases[i].len, MILTER_PACKET_MAX, &pkt, &used, &error);
		assert_int_equal(r, cases[i].ret);
		if (r == 1) {
			assert_int_equal(pkt.cmd, cases[i].cmd);
			assert_int_equal(pkt.len, cases[i].data_len);
			assert_int_equal(used, 5 + cases[i].data_len);
			/* trickle: every shorter prefix needs more */
			for (size_t n = 0; n < used; n++)
				assert_int_equal(milter_packet_parse(cases[i].in, n, MILTER_PACKET_MAX, &pkt, &used, &error), 0);
		}
		if (r < 0)
			assert_non_null(error);
	}
}

static void test_reply_decode(void **state)
{
	static const struct {
		char cmd;
		const char *data;
		size_t len;
		int ret;
		const char *name, *value;
		int code;
		uint32_t index;
	} cases[] = {
		{'a', "", 0, 1, NULL, NULL, 0, 0},
		{'c', "junk", 4, 1, NULL, NULL, 0, 0},
		{'y', "550 5.7.1 no\0", 13, 1, NULL, NULL, 550, 0},
		{'y', "451\0", 4, 1, NULL, NULL, 451, 0},
		{'y', "250 ok\0", 7, -1, NULL, NULL, 0, 0},
		{'y', "550 no", 6, -1, NULL, NULL, 0, 0},
		{'y', "55x\0", 4, -1, NULL, NULL, 0, 0},
		{'y', "550 a\x01\0", 7, -1, NULL, NULL, 0, 0},
		{'h', "X-A\0v\0", 6, 1, "X-A", "v", 0, 0},
		{'h', "X-A\0v", 5, -1, NULL, NULL, 0, 0},
		{'h', "\0v\0", 3, -1, NULL, NULL, 0, 0},
		{'i', "\0\0\0\2X-B\0w\0", 10, 1, "X-B", "w", 0, 2},
		{'m', "\0\0\0\1Subject\0\0", 13, 1, "Subject", "", 0, 1},
		{'m', "\0\0\1", 3, -1, NULL, NULL, 0, 0},
		{'+', "<x@y>\0", 6, 1, "<x@y>", NULL, 0, 0},
		{'2', "<x@y>\0NOTIFY=NEVER\0", 19, 1, "<x@y>", "NOTIFY=NEVER", 0, 0},
		{'-', "", 0, -1, NULL, NULL, 0, 0},
		{'e', "<s@y>\0", 6, 1, "<s@y>", NULL, 0, 0},
		{'b', "body", 4, 1, NULL, NULL, 0, 0},
		{'q', "why\0", 4, 1, NULL, NULL, 0, 0},
		{'q', "why", 3, -1, NULL, NULL, 0, 0},
		{'O', "\0\0\0\6\0\0\0\1\0\0\0\2", 12, 1, NULL, NULL, 0, 0},
		{'O', "\0\0\0\6", 4, -1, NULL, NULL, 0, 0},
		{'l', "", 0, -1, NULL, NULL, 0, 0},
		{'Z', "", 0, -1, NULL, NULL, 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct milter_packet pkt = {.cmd = cases[i].cmd, .data = cases[i].data, .len = cases[i].len};
		struct milter_reply r;
		const char *error = NULL;
		int ret = milter_reply_decode(&pkt, &r, &error);
		if (ret != cases[i].ret)
			fail_msg("case %zu: %d (%s)", i, ret, error ? error : "");
		if (ret < 0) {
			assert_non_null(error);
			continue;
		}
		if (cases[i].name)
			assert_string_equal(r.name, cases[i].name);
		if (cases[i].value)
			assert_string_equal(r.value, cases[i].value);
		else if (cases[i].cmd == '2' || cases[i].cmd == 'e')
			assert_null(r.value);
		assert_int_equal(r.code, cases[i].code);
		assert_int_equal(r.index, cases[i].index);
	}
}

static void test_encode(void **state)
{
	struct buf b;
	buf_init(&b, 64);
	assert_int_equal(milter_encode_optneg(&b, 6, 0x1ff, MILTER_P_OFFERED), 0);
	assert_int_equal(b.len, 17);
	assert_memory_equal(b.data, "\0\0\0\x0dO\0\0\0\6\0\0\1\xff\0\x0f\xf7\xff", 17);
	buf_reset(&b);
	const char *names[] = {"i", "{x}"};
	const char *values[] = {"Q1", NULL};
	assert_int_equal(milter_encode_macros(&b, 'E', names, values, 2), 0);
	assert_memory_equal(b.data, "\0\0\0\7DEi\0Q1\0", 10);
	buf_reset(&b);
	assert_int_equal(milter_encode_connect(&b, "[1.2.3.4]", '4', 25, "1.2.3.4"), 0);
	assert_memory_equal(b.data, "\0\0\0\x16" "C[1.2.3.4]\0" "4\0\x19" "1.2.3.4\0", 26);
	buf_reset(&b);
	char big[100];
	memset(big, 'x', sizeof(big));
	assert_int_equal(milter_encode(&b, 'B', big, sizeof(big)), -1); /* over the buf max */
	assert_int_equal(b.len, 0);
	buf_deinit(&b);
}

/* ---- against the libmilter test milter ---- */

struct peer {
	pid_t pid;
	int port;
	char address[40];
};

static struct peer milter_start(const char *mode)
{
	struct peer p = {0};
	p.port = test_peer_free_port();
	snprintf(p.address, sizeof(p.address), "127.0.0.1:%d", p.port);
	char port[8];
	snprintf(port, sizeof(port), "%d", p.port);
	p.pid = fork();
	if (p.pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphans when a test crashes */
		execl(MR_TEST_MILTER_BIN, MR_TEST_MILTER_BIN, port, mode, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p.port),
		                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
		close(fd);
		if (ok)
			return p;
		usleep(50 * 1000);
	}
	fail_msg("test milter did not start");
	return p;
}

static void milter_stop(struct peer *p)
{
	kill(p->pid, SIGKILL);
	waitpid(p->pid, NULL, 0);
}

struct outcome {
	bool done;
	enum milter_decision decision;
	int code;
	bool failed;
	char reply[256];
	char mods[2048]; /* "type:name=value;" */
	size_t mod_count;
};

static void result_cb(void *arg, const struct milter_result *res)
{
	struct outcome *o = arg;
	memset(o, 0, sizeof(*o));
	o->done = true;
	o->decision = res->decision;
	o->code = res->code;
	o->failed = res->failed;
	snprintf(o->reply, sizeof(o->reply), "%s", res->reply ? res->reply : "");
	o->mod_count = res->mod_count;
	for (size_t i = 0; i < res->mod_count; i++) {
		const struct milter_mod *m = &res->mods[i];
		size_t l = strlen(o->mods);
		if (m->type == MILTER_MOD_REPLACE_BODY)
			snprintf(o->mods + l, sizeof(o->mods) - l, "%d:body=%.*s;", m->type, (int)m->body_len, m->body);
		else
			snprintf(o->mods + l, sizeof(o->mods) - l, "%d:%u:%s=%s;", m->type, m->index, m->name ? m->name : "",
			         m->value ? m->value : "");
	}
}

static struct event_base *base;

static struct outcome wait_result(struct outcome *o)
{
	assert_false(o->done); /* never synchronous */
	while (!o->done)
		assert_true(event_base_loop(base, EVLOOP_ONCE) >= 0);
	return *o;
}

#define STAGE(call)                                                                                                   \
	({                                                                                                            \
		struct outcome o_ = {0};                                                                              \
		call;                                                                                                 \
		wait_result(&o_);                                                                                     \
	})

static const struct milter_conn_info info = {.my_hostname = "mx.test", .daemon_name = "smtp",
                                             .client_ip = "192.0.2.7", .client_port = 40000};

static struct outcome send_message(struct milter_session *s, const char *msg)
{
	int fd = test_spool_fd(msg, strlen(msg));
	assert_true(fd >= 0);
	struct outcome o = STAGE(milter_message(s, fd, strlen(msg), "Q1", result_cb, &o_));
	close(fd);
	return o;
}

static const char msg_plain[] = "From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n"
                                "X-Folded: one\r\n two\r\n\r\nhello\r\n";

static void full_flow(const char *mode, bool auth)
{
	struct peer p = milter_start(mode);
	struct milter_settings set = {.name = "test", .address = p.address, .timeout_ms = 5000};
	struct milter_session *s = milter_session_new(base, &set);
	struct outcome o;
	bool skip = strcmp(mode, "skip") == 0;

	o = STAGE(milter_connect(s, &info, result_cb, &o_));
	assert_int_equal(o.decision, MILTER_CONTINUE);
	o = STAGE(milter_helo(s, "client.test", NULL, result_cb, &o_));
	assert_int_equal(o.decision, MILTER_CONTINUE);
	o = STAGE(milter_mail(s, "a@example.test", NULL, 0, auth ? "alice" : NULL, result_cb, &o_));
	assert_int_equal(o.decision, MILTER_CONTINUE);
	o = STAGE(milter_rcpt(s, "b@example.test", NULL, 0, result_cb, &o_));
	assert_int_equal(o.decision, MILTER_CONTINUE);
	o = STAGE(milter_rcpt(s, "blocked@example.test", NULL, 0, result_cb, &o_));
	assert_int_equal(o.decision, MILTER_REJECT);
	assert_int_equal(o.code, 550);
	assert_string_equal(o.reply, "550 5.1.1 Blocked by the test milter");
	o = STAGE(milter_data(s, "Q1", result_cb, &o_));
	assert_int_equal(o.decision, MILTER_CONTINUE);
	o = send_message(s, msg_plain);
	assert_int_equal(o.decision, MILTER_ACCEPT);
	assert_false(o.failed);
	char expect[512];
	snprintf(expect, sizeof(expect),
	         "0:0:X-Test-Milter=seen;0:0:X-Test-Milter-Info=headers=4 rcpts=1 auth=%s from=<a@example.test>;",
	         auth ? "yes" : "no");
	assert_string_equal(o.mods, expect);

	/* second transaction on the same session: REJECTME */
	milter_abort(s);
	o = STAGE(milter_mail(s, "c@example.test", NULL, 0, NULL, result_cb, &o_));
	assert_int_equal(o.decision, MILTER_CONTINUE);
	o = STAGE(milter_rcpt(s, "b@example.test", NULL, 0, result_cb, &o_));
	o = send_message(s, "Subject: x\r\n\r\nplease REJECTME now\r\n");
	if (skip) {
		/* the filter asked for no body: it never sees the keyword */
		assert_int_equal(o.decision, MILTER_ACCEPT);
		assert_int_not_equal(milter_session_protocol(s) & MILTER_P_NOBODY, 0);
		assert_int_not_equal(milter_session_protocol(s) & MILTER_P_NOHELO, 0);
	} else {
		assert_int_equal(o.decision, MILTER_REJECT);
		assert_int_equal(o.code, 550);
		assert_string_equal(o.reply, "550 5.7.1 Rejected by the test milter");
		/* the message is decided: later message stages answer the same without I/O */
		o = send_message(s, "Subject: x\r\n\r\nok\r\n");
		assert_int_equal(o.decision, MILTER_REJECT);
	}
	if (strcmp(mode, "nr") == 0)
		assert_int_not_equal(milter_session_protocol(s) & MILTER_P_NR_HDR, 0);

	/* third: a big multi-chunk body with the keyword at the end */
	milter_abort(s);
	o = STAGE(milter_mail(s, "c@example.test", NULL, 0, NULL, result_cb, &o_));
	o = STAGE(milter_rcpt(s, "b@example.test", NULL, 0, result_cb, &o_)); /* libmilter wants a RCPT */
	size_t biglen = 300 * 1024;
	char *big = malloc(biglen + 64);
	int n = snprintf(big, 64, "Subject: big\r\n\r\n");
	memset(big + n, 'z', biglen - (size_t)n);
	memcpy(big + biglen, "REJECTME\r\n", 11);
	o = send_message(s, big);
	free(big);
	assert_int_equal(o.decision, skip ? MILTER_ACCEPT : MILTER_REJECT);

	milter_session_free(&s);
	assert_null(s);
	milter_stop(&p);
}

static void test_flow_plain(void **state)
{
	full_flow("plain", false);
}

static void test_flow_auth(void **state)
{
	full_flow("plain", true);
}

static void test_flow_noreply(void **state)
{
	full_flow("nr", false);
}

static void test_flow_skip(void **state)
{
	full_flow("skip", false);
}

static void test_modifications(void **state)
{
	struct peer p = milter_start("plain");
	struct milter_settings set = {.name = "mods", .address = p.address};
	struct milter_session *s = milter_session_new(base, &set);
	struct outcome o;
	/* message stages before connect/helo work too (no NOCONNECT needed) */
	o = STAGE(milter_connect(s, &info, result_cb, &o_));
	o = STAGE(milter_mail(s, "a@example.test", NULL, 0, NULL, result_cb, &o_));
	o = STAGE(milter_rcpt(s, "b@example.test", NULL, 0, result_cb, &o_));
	o = send_message(s, "Subject: hi\r\nX-Remove-Me: 1\r\n\r\nCHGSUBJECT DELHDR INSHDR ADDRCPT DELRCPT REPLBODY "
	                    "QUARANTINE\r\n");
	assert_int_equal(o.decision, MILTER_ACCEPT);
	assert_string_equal(o.mods, "0:0:X-Test-Milter=seen;"
	                            "0:0:X-Test-Milter-Info=headers=2 rcpts=1 auth=no from=<a@example.test>;"
	                            "2:1:Subject=changed;2:1:X-Remove-Me=;1:0:X-Inserted=top;"
	                            "3:0:<added@example.test>=;4:0:<b@example.test>=;7:0:=test reason;"
	                            "6:body=replaced body\r\n;");

	milter_abort(s);
	o = STAGE(milter_mail(s, "a@example.test", NULL, 0, NULL, result_cb, &o_));
	o = STAGE(milter_rcpt(s, "b@example.test", NULL, 0, result_cb, &o_));
	o = send_message(s, "Subject: hi\r\n\r\nTEMPFAILME\r\n");
	assert_int_equal(o.decision, MILTER_TEMPFAIL);
	assert_int_equal(o.code, 451);
	milter_abort(s);
	o = STAGE(milter_mail(s, "a@example.test", NULL, 0, NULL, result_cb, &o_));
	o = STAGE(milter_rcpt(s, "b@example.test", NULL, 0, result_cb, &o_));
	o = send_message(s, "Subject: hi\r\n\r\nDISCARDME\r\n");
	assert_int_equal(o.decision, MILTER_DISCARD);
	assert_int_equal(o.mod_count, 0);
	/* progress keeps a slow filter alive past the EOM timeout */
	milter_session_free(&s);
	set.eom_timeout_ms = 1200;
	s = milter_session_new(base, &set);
	o = STAGE(milter_mail(s, "a@example.test", NULL, 0, NULL, result_cb, &o_));
	o = STAGE(milter_rcpt(s, "b@example.test", NULL, 0, result_cb, &o_));
	o = send_message(s, "Subject: hi\r\n\r\nSLOWME\r\n");
	assert_int_equal(o.decision, MILTER_ACCEPT);
	assert_false(o.failed);
	milter_session_free(&s);
	milter_stop(&p);
}

static void test_failures(void **state)
{
	struct outcome o;
	struct milter_session *s;
	struct test_peer tp;

	/* nothing listening: the default, failed; later calls too */
	char addr[40];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", test_peer_free_port());
	struct milter_settings set = {.name = "down", .address = addr, .on_failure = MILTER_ACCEPT};
	s = milter_session_new(base, &set);
	o = STAGE(milter_connect(s, &info, result_cb, &o_));
	assert_int_equal(o.decision, MILTER_ACCEPT);
	assert_true(o.failed);
	o = send_message(s, msg_plain);
	assert_int_equal(o.decision, MILTER_ACCEPT);
	assert_true(o.failed);
	milter_session_free(&s);

	set.on_failure = MILTER_TEMPFAIL;
	set.address = "not-an-address";
	s = milter_session_new(base, &set);
	o = STAGE(milter_connect(s, &info, result_cb, &o_));
	assert_int_equal(o.decision, MILTER_TEMPFAIL);
	assert_int_equal(o.code, 451);
	assert_true(o.failed);
	milter_session_free(&s);

	/* garbage, close, oversized packet, wrong negotiation */
	static const struct {
		enum test_fake_mode mode;
		const char *reply;
		size_t len;
	} fakes[] = {
		{TEST_FAKE_REPLY, "HTTP/1.0 200 OK\r\n\r\n", 19},
		{TEST_FAKE_CLOSE, NULL, 0},
		{TEST_FAKE_REPLY, "\x7f\0\0\0O", 5},
		{TEST_FAKE_REPLY, "\0\0\0\1c", 5},                              /* not an OPTNEG */
		{TEST_FAKE_REPLY, "\0\0\0\x0dO\0\0\0\1\0\0\0\0\0\0\0\0", 17},     /* version 1 */
		{TEST_FAKE_REPLY, "\0\0\0\x0dO\0\0\0\6\0\0\0\0\0\0\0\0\0\0\0\3h", 23}, /* then a truncated packet */
	};
	for (size_t i = 0; i < sizeof(fakes) / sizeof(fakes[0]); i++) {
		assert_int_equal(test_fake_peer_start(&tp, fakes[i].mode, fakes[i].reply, fakes[i].len), 0);
		set.address = tp.address;
		s = milter_session_new(base, &set);
		o = STAGE(milter_connect(s, &info, result_cb, &o_));
		if (!o.failed)
			fail_msg("fake %zu did not fail", i);
		assert_int_equal(o.decision, MILTER_TEMPFAIL);
		milter_session_free(&s);
		test_peer_stop(&tp);
	}

	/* a filter that hangs on HELO: per-stage timeout */
	struct peer p = milter_start("plain");
	set.address = p.address;
	set.timeout_ms = 300;
	s = milter_session_new(base, &set);
	o = STAGE(milter_connect(s, &info, result_cb, &o_));
	assert_false(o.failed);
	o = STAGE(milter_helo(s, "hang.test", NULL, result_cb, &o_));
	assert_true(o.failed);
	assert_int_equal(o.decision, MILTER_TEMPFAIL);
	o = STAGE(milter_mail(s, "a@example.test", NULL, 0, NULL, result_cb, &o_));
	assert_true(o.failed);
	milter_session_free(&s);

	/* freeing with a call pending: no callback afterwards */
	set.timeout_ms = 5000;
	s = milter_session_new(base, &set);
	struct outcome never = {0};
	milter_connect(s, &info, result_cb, &never);
	milter_session_free(&s);
	struct timeval tv = {.tv_usec = 100000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_false(never.done);
	milter_stop(&p);
}

static void test_chain(void **state)
{
	struct peer p1 = milter_start("plain"), p2 = milter_start("nr");
	char down[40];
	snprintf(down, sizeof(down), "127.0.0.1:%d", test_peer_free_port());
	struct milter_settings set[] = {
		{.name = "down", .address = down, .on_failure = MILTER_ACCEPT},
		{.name = "one", .address = p1.address},
		{.name = "two", .address = p2.address},
	};
	struct milter_chain *c = milter_chain_new(base, set, 3);
	struct outcome o;
	o = STAGE(milter_chain_connect(c, &info, result_cb, &o_));
	assert_int_equal(o.decision, MILTER_CONTINUE);
	assert_true(o.failed); /* "down" failed, its default is accept: skipped */
	o = STAGE(milter_chain_helo(c, "client.test", "TLSv1.3", result_cb, &o_));
	o = STAGE(milter_chain_mail(c, "a@example.test", NULL, 0, NULL, result_cb, &o_));
	assert_int_equal(o.decision, MILTER_CONTINUE);
	o = STAGE(milter_chain_rcpt(c, "blocked@example.test", NULL, 0, result_cb, &o_));
	assert_int_equal(o.decision, MILTER_REJECT);
	assert_string_equal(o.reply, "550 5.1.1 Blocked by the test milter");
	o = STAGE(milter_chain_rcpt(c, "b@example.test", NULL, 0, result_cb, &o_));
	assert_int_equal(o.decision, MILTER_CONTINUE);
	o = STAGE(milter_chain_data(c, "Q1", result_cb, &o_));
	int fd = test_spool_fd(msg_plain, strlen(msg_plain));
	o = STAGE(milter_chain_message(c, fd, strlen(msg_plain), "Q1", result_cb, &o_));
	close(fd);
	assert_int_equal(o.decision, MILTER_ACCEPT);
	assert_int_equal(o.mod_count, 4); /* two from each working milter, in chain order */
	assert_non_null(strstr(o.mods, "X-Test-Milter=seen;0:0:X-Test-Milter-Info=headers=4 rcpts=1 auth=no from=<a@example.test>;"
	                               "0:0:X-Test-Milter=seen;"));

	milter_chain_abort(c);
	o = STAGE(milter_chain_mail(c, "a@example.test", NULL, 0, "bob", result_cb, &o_));
	o = STAGE(milter_chain_rcpt(c, "b@example.test", NULL, 0, result_cb, &o_));
	static const char rej[] = "Subject: x\r\n\r\nREJECTME\r\n";
	fd = test_spool_fd(rej, strlen(rej));
	o = STAGE(milter_chain_message(c, fd, strlen(rej), "Q2", result_cb, &o_));
	close(fd);
	assert_int_equal(o.decision, MILTER_REJECT);
	assert_int_equal(o.code, 550);
	milter_chain_free(&c);

	/* an empty chain */
	c = milter_chain_new(base, NULL, 0);
	o = STAGE(milter_chain_connect(c, &info, result_cb, &o_));
	assert_int_equal(o.decision, MILTER_CONTINUE);
	milter_chain_free(&c);

	/* a failed milter with default tempfail stops the chain */
	set[0].on_failure = MILTER_TEMPFAIL;
	c = milter_chain_new(base, set, 3);
	o = STAGE(milter_chain_connect(c, &info, result_cb, &o_));
	assert_int_equal(o.decision, MILTER_TEMPFAIL);
	assert_true(o.failed);
	milter_chain_free(&c);
	milter_stop(&p1);
	milter_stop(&p2);
}

static int setup(void **state)
{
	base = event_base_new();
	return base == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	event_base_free(base);
	return 0;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_packet_parse),
		cmocka_unit_test(test_reply_decode),
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_flow_plain),
		cmocka_unit_test(test_flow_auth),
		cmocka_unit_test(test_flow_noreply),
		cmocka_unit_test(test_flow_skip),
		cmocka_unit_test(test_modifications),
		cmocka_unit_test(test_failures),
		cmocka_unit_test(test_chain),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
