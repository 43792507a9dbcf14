/* clamd_client: reply parser table, failure cases against fake peers, real clamd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filters/clamd_client.h"
#include "filters/test_peers.h"
#include "lib-milter/filter_conn.h"

static const char eicar[] = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

struct outcome {
	bool done;
	enum clamd_status status;
	char text[256];
};

static void scan_cb(void *arg, const struct clamd_result *res)
{
	struct outcome *o = arg;
	o->done = true;
	o->status = res->status;
	const char *t = res->status == CLAMD_INFECTED ? res->virus : res->error;
	snprintf(o->text, sizeof(o->text), "%s", t != NULL ? t : "");
}

static struct outcome run_scan(const char *address, const void *msg, size_t len, unsigned timeout_ms)
{
	struct event_base *base = event_base_new();
	struct outcome o = {0};
	int fd = test_spool_fd(msg, len);
	assert_true(fd >= 0);
	struct clamd_settings set = {.address = address, .timeout_ms = timeout_ms};
	struct clamd_scan *scan = clamd_scan_start(base, &set, fd, len, scan_cb, &o);
	assert_non_null(scan);
	assert_false(o.done); /* never synchronous */
	while (!o.done)
		assert_true(event_base_loop(base, EVLOOP_ONCE) >= 0);
	close(fd);
	event_base_free(base);
	return o;
}

static void test_reply_parse(void **state)
{
	static const struct {
		const char *in;
		size_t len; /* 0: strlen */
		enum clamd_status status;
		const char *text;
	} cases[] = {
		{.in = "stream: OK", .status = CLAMD_CLEAN, .text = ""},
		{.in = "stream: OK\0", .len = 11, .status = CLAMD_CLEAN, .text = ""},
		{.in = "stream: OK\n", .status = CLAMD_CLEAN, .text = ""},
		{.in = "stream: Eicar-Test-Signature FOUND", .status = CLAMD_INFECTED, .text = "Eicar-Test-Signature"},
		{.in = "1: Win.Test.EICAR_HDB-1 FOUND\0", .len = 30, .status = CLAMD_INFECTED, .text = "Win.Test.EICAR_HDB-1"},
		{.in = "INSTREAM size limit exceeded. ERROR", .status = CLAMD_ERROR, .text = "INSTREAM size limit exceeded. ERROR"},
		{.in = "stream: Can't allocate memory ERROR", .status = CLAMD_ERROR, .text = "Can't allocate memory ERROR"},
		{.in = "", .status = CLAMD_ERROR, .text = "empty reply"},
		{.in = "garbage", .status = CLAMD_ERROR, .text = "garbage"},
		{.in = "stream: FOUND", .status = CLAMD_ERROR, .text = "FOUND"},
		{.in = "stream: \x01\xff FOUND", .status = CLAMD_INFECTED, .text = "??"},
		{.in = "stream: OKAY", .status = CLAMD_ERROR, .text = "OKAY"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct clamd_result res;
		char name[64];
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
		clamd_reply_parse(cases[i].in, len, &res, name, sizeof(name));
		assert_int_equal(res.status, cases[i].status);
		const char *t = res.status == CLAMD_INFECTED ? res.virus : res.error;
		assert_string_equal(t != NULL ? t : "", cases[i].text);
	}
}

static void test_address_parse(void **state)
{
	static const struct {
		const char *in;
		int ret;
		int family;
	} cases[] = {
		{"127.0.0.1:3310", 1, AF_INET},   {"[::1]:3310", 1, AF_INET6},  {"inet:8891@127.0.0.1", 1, AF_INET},
		{"inet6:8891@[::1]", 1, AF_INET6}, {"::1:3310", -1, 0},         {"localhost:3310", -1, 0},
		{"127.0.0.1", -1, 0},              {"127.0.0.1:0", -1, 0},       {"127.0.0.1:65536", -1, 0},
		{"127.0.0.1:x", -1, 0},            {"", -1, 0},                  {"inet:@127.0.0.1", -1, 0},
		{"127.0.0.1:-1", -1, 0},           {"[::1:3310", -1, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len;
		const char *error = NULL;
		int ret = filter_conn_parse_address(cases[i].in, &ss, &len, &error);
		if (ret != cases[i].ret)
			fail_msg("%s: got %d", cases[i].in, ret);
		if (ret == 1)
			assert_int_equal(ss.ss_family, cases[i].family);
		else
			assert_non_null(error);
	}
}

static void test_failures(void **state)
{
	static const char msg[] = "Subject: x\r\n\r\nhello\r\n";
	struct test_peer p;
	struct outcome o;

	/* nothing listening */
	int port = test_peer_free_port();
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	o = run_scan(addr, msg, sizeof(msg) - 1, 2000);
	assert_int_equal(o.status, CLAMD_ERROR);
	assert_non_null(strstr(o.text, "connect"));

	/* bad address: still asynchronous */
	o = run_scan("nowhere", msg, sizeof(msg) - 1, 2000);
	assert_int_equal(o.status, CLAMD_ERROR);
	assert_non_null(strstr(o.text, "bad address"));

	/* garbage */
	assert_int_equal(test_fake_peer_start(&p, TEST_FAKE_REPLY, "HTTP/1.0 200 OK\r\n\r\n", 19), 0);
	o = run_scan(p.address, msg, sizeof(msg) - 1, 2000);
	assert_int_equal(o.status, CLAMD_ERROR);
	test_peer_stop(&p);

	/* closes without a reply */
	assert_int_equal(test_fake_peer_start(&p, TEST_FAKE_CLOSE, NULL, 0), 0);
	o = run_scan(p.address, msg, sizeof(msg) - 1, 2000);
	assert_int_equal(o.status, CLAMD_ERROR);
	test_peer_stop(&p);

	/* hangs: the stage timeout ends it */
	assert_int_equal(test_fake_peer_start(&p, TEST_FAKE_HANG, NULL, 0), 0);
	o = run_scan(p.address, msg, sizeof(msg) - 1, 300);
	assert_int_equal(o.status, CLAMD_ERROR);
	assert_string_equal(o.text, "clamd: timeout");
	test_peer_stop(&p);

	/* a reply longer than the 1 KiB limit without a NUL */
	char big[3000];
	memset(big, 'A', sizeof(big));
	assert_int_equal(test_fake_peer_start(&p, TEST_FAKE_REPLY, big, sizeof(big)), 0);
	o = run_scan(p.address, msg, sizeof(msg) - 1, 2000);
	assert_int_equal(o.status, CLAMD_ERROR);
	test_peer_stop(&p);
}

static void never_cb(void *arg, const struct clamd_result *res)
{
	fail_msg("callback after cancel");
}

static void test_cancel(void **state)
{
	struct event_base *base = event_base_new();
	struct clamd_settings set = {.address = "127.0.0.1:1", .timeout_ms = 100};
	int fd = test_spool_fd("x", 1);
	struct clamd_scan *scan = clamd_scan_start(base, &set, fd, 1, never_cb, NULL);
	clamd_scan_cancel(&scan);
	assert_null(scan);
	clamd_scan_cancel(&scan);
	struct timeval tv = {.tv_usec = 200000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	close(fd);
	event_base_free(base);
}

static void test_real_clamd(void **state)
{
	struct test_peer p;
	if (test_clamd_start(&p, "1M") < 0)
		fail_msg("clamd did not start (scripts/install-deps installs clamav-daemon)");

	char infected[512];
	int n = snprintf(infected, sizeof(infected),
	                 "From: a@example.test\r\nSubject: test\r\n\r\nhello\r\n%s\r\nbye\r\n", eicar);
	struct outcome o = run_scan(p.address, infected, (size_t)n, 10000);
	assert_int_equal(o.status, CLAMD_INFECTED);
	assert_true(strncmp(o.text, "Eicar-Test-Signature", 20) == 0);

	static const char clean[] = "From: a@example.test\r\nSubject: test\r\n\r\nhello world\r\n";
	o = run_scan(p.address, clean, sizeof(clean) - 1, 10000);
	assert_int_equal(o.status, CLAMD_CLEAN);

	/* bigger than StreamMaxLength: clamd answers the limit and closes; no SIGPIPE */
	size_t biglen = 3 * 1024 * 1024;
	char *big = malloc(biglen);
	assert_non_null(big);
	memcpy(big, clean, sizeof(clean) - 1);
	memset(big + sizeof(clean) - 1, 'a', biglen - (sizeof(clean) - 1));
	o = run_scan(p.address, big, biglen, 10000);
	assert_int_equal(o.status, CLAMD_ERROR);
	assert_non_null(strstr(o.text, "size limit"));
	free(big);

	/* over max_size: not scanned, no connection made */
	{
		struct event_base *b2 = event_base_new();
		struct outcome o2 = {0};
		int fd = test_spool_fd(infected, (size_t)n);
		struct clamd_settings set = {.address = "127.0.0.1:1", .max_size = 10};
		struct clamd_scan *sc = clamd_scan_start(b2, &set, fd, (size_t)n, scan_cb, &o2);
		assert_non_null(sc);
		while (!o2.done)
			event_base_loop(b2, EVLOOP_ONCE);
		assert_int_equal(o2.status, CLAMD_SKIPPED);
		close(fd);
		event_base_free(b2);
	}

	/* an EICAR in a multi-chunk message (> 64 KiB before it) */
	biglen = 200 * 1024;
	big = malloc(biglen + sizeof(infected));
	memcpy(big, clean, sizeof(clean) - 1);
	memset(big + sizeof(clean) - 1, 'b', biglen - (sizeof(clean) - 1));
	memcpy(big + biglen, eicar, sizeof(eicar) - 1);
	o = run_scan(p.address, big, biglen + sizeof(eicar) - 1, 10000);
	assert_int_equal(o.status, CLAMD_INFECTED);
	free(big);

	int port = p.port;
	test_peer_stop(&p);
	/* clamd down */
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	o = run_scan(addr, clean, sizeof(clean) - 1, 2000);
	assert_int_equal(o.status, CLAMD_ERROR);
}

int main(void)
{
	/* deliberately NOT ignoring SIGPIPE: the client must use MSG_NOSIGNAL */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_parse),
		cmocka_unit_test(test_address_parse),
		cmocka_unit_test(test_failures),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_real_clamd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
