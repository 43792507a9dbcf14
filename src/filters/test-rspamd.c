/* rspamd_client: request format, HTTP and JSON parsers (tables, trickle), failures, real rspamd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filters/rspamd_client.h"
#include "filters/test_peers.h"
#include "lib/buf.h"

static void test_request_format(void **state)
{
	const char *rcpts[] = {"b@example.test", "c@example.test", "evil@x\r\nUser: admin"};
	struct rspamd_request req = {.ip = "192.0.2.1", .helo = "mx.example.test", .from = "",
	                             .rcpts = rcpts, .rcpt_count = 3, .queue_id = "Q1"};
	struct buf b;
	buf_init(&b, 4096);
	assert_int_equal(rspamd_request_format(&b, "127.0.0.1:11333", "/checkv2", &req, 123), 0);
	assert_string_equal(b.data, "POST /checkv2 HTTP/1.1\r\nHost: 127.0.0.1:11333\r\nConnection: close\r\n"
	                            "Content-Length: 123\r\nIP: 192.0.2.1\r\nHelo: mx.example.test\r\n"
	                            "From: <>\r\nRcpt: b@example.test\r\nRcpt: c@example.test\r\n"
	                            "Queue-Id: Q1\r\n\r\n");
	/* pitfall 6: User only when authenticated */
	assert_null(strstr(b.data, "User:"));
	buf_reset(&b);
	req.user = "alice";
	req.rcpt_count = 1;
	assert_int_equal(rspamd_request_format(&b, "h", "/checkv2", &req, 0), 0);
	assert_non_null(strstr(b.data, "\r\nUser: alice\r\n"));
	buf_reset(&b);
	req.user = "";
	assert_int_equal(rspamd_request_format(&b, "h", "/checkv2", &req, 0), 0);
	assert_null(strstr(b.data, "User:"));
	buf_deinit(&b);
}

static const struct {
	const char *in;
	int ret_eof;   /* result with eof = true */
	int ret_more;  /* result with eof = false */
	int status;
	const char *body;
} http_cases[] = {
	{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 1, 1, 200, "{}"},
	{"HTTP/1.1 200 OK\r\ncontent-length:2\r\nServer: x\r\n\r\n{}extra", 1, 1, 200, "{}"},
	{"HTTP/1.0 200 OK\r\n\r\n{\"a\":1}", 1, 0, 200, "{\"a\":1}"},
	{"HTTP/1.1 500 Internal\r\nContent-Length: 0\r\n\r\n", 1, 1, 500, ""},
	{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", -1, 0, 0, NULL},
	{"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n{}", -1, -1, 0, NULL},
	{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", -1, -1, 0, NULL},
	{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", -1, 0, 0, NULL},
	{"SMTP 220 hi\r\n\r\n", -1, -1, 0, NULL},
	{"HTTP/1.1 2x0 OK\r\n\r\n", -1, -1, 0, NULL},
	{"", -1, 0, 0, NULL},
};

static void test_http_parse(void **state)
{
	for (size_t i = 0; i < sizeof(http_cases) / sizeof(http_cases[0]); i++) {
		const char *in = http_cases[i].in, *body, *error;
		size_t len = strlen(in), blen;
		int status = 0;
		int r = rspamd_http_parse(in, len, true, &status, &body, &blen, &error);
		if (r != http_cases[i].ret_eof)
			fail_msg("case %zu eof: got %d", i, r);
		if (r == 1) {
			assert_int_equal(status, http_cases[i].status);
			assert_int_equal(blen, strlen(http_cases[i].body));
			assert_memory_equal(body, http_cases[i].body, blen);
		}
		r = rspamd_http_parse(in, len, false, &status, &body, &blen, &error);
		if (r != http_cases[i].ret_more)
			fail_msg("case %zu more: got %d", i, r);
		/* trickle: no prefix may give a different complete answer */
		for (size_t n = 0; n < len; n++) {
			char *copy = malloc(n + 1);
			memcpy(copy, in, n);
			int rr = rspamd_http_parse(copy, n, false, &status, &body, &blen, &error);
			if (rr == 1 && http_cases[i].ret_more == 1) {
				assert_int_equal(blen, strlen(http_cases[i].body));
			} else if (rr == 1) {
				fail_msg("case %zu prefix %zu complete", i, n);
			}
			free(copy);
		}
	}
}

static void test_reply_parse(void **state)
{
	static const struct {
		const char *json;
		enum rspamd_verdict verdict;
		int code;
		const char *text;
		const char *subject;
		size_t add_count, remove_count;
		const char *first_add;
	} cases[] = {
		{"{\"score\":15,\"required_score\":15,\"action\":\"reject\",\"messages\":{\"smtp_message\":\"Gtube pattern\"}}",
		 RSPAMD_REJECT, 554, "Gtube pattern", NULL, 0, 0, NULL},
		{"{\"action\":\"reject\"}", RSPAMD_REJECT, 554, "Message rejected as spam", NULL, 0, 0, NULL},
		{"{\"action\":\"reject\",\"messages\":{\"smtp_message\":\"a\\r\\n554 fake\"}}", RSPAMD_REJECT, 554,
		 "Message rejected as spam", NULL, 0, 0, NULL},
		{"{\"action\":\"soft reject\"}", RSPAMD_SOFT_REJECT, 451, "Try again later", NULL, 0, 0, NULL},
		{"{\"action\":\"greylist\"}", RSPAMD_GREYLIST, 451, "Greylisted, try again later", NULL, 0, 0, NULL},
		{"{\"action\":\"add header\",\"score\":7.5,\"required_score\":15}", RSPAMD_SPAM, 0, NULL, NULL, 2, 0, "X-Spam"},
		{"{\"action\":\"add header\",\"milter\":{\"add_headers\":{\"X-Spamd-Bar\":{\"value\":\"+++\",\"order\":0},"
		 "\"X-Spam\":\"Yes\"},\"remove_headers\":{\"X-Spam\":0}}}",
		 RSPAMD_SPAM, 0, NULL, NULL, 3, 1, "X-Spamd-Bar"},
		{"{\"action\":\"rewrite subject\",\"subject\":\"*** SPAM *** hi\"}", RSPAMD_REWRITE_SUBJECT, 0, NULL,
		 "*** SPAM *** hi", 2, 0, "X-Spam"},
		{"{\"action\":\"rewrite subject\"}", RSPAMD_SPAM, 0, NULL, NULL, 2, 0, "X-Spam"},
		{"{\"action\":\"no action\",\"score\":-0.1,\"milter\":{\"remove_headers\":{\"X-Spam\":0}}}",
		 RSPAMD_ACCEPT, 0, NULL, NULL, 0, 1, NULL},
		{"{\"action\":\"no action\",\"milter\":{\"add_headers\":{\"Bad Name\":\"x\",\"X-A\":[{\"value\":\"1\"},"
		 "{\"value\":\"2\"}],\"X-B\":\"a\\nb\"}}}",
		 RSPAMD_ACCEPT, 0, NULL, NULL, 2, 0, "X-A"},
		{"{\"action\":\"discard\"}", RSPAMD_ERROR, 0, NULL, NULL, 0, 0, NULL},
		{"{\"error\":\"bad request\"}", RSPAMD_ERROR, 0, NULL, NULL, 0, 0, NULL},
		{"[1,2]", RSPAMD_ERROR, 0, NULL, NULL, 0, 0, NULL},
		{"{\"action\":\"reject\",\"action\":\"no action\"}", RSPAMD_ERROR, 0, NULL, NULL, 0, 0, NULL},
		{"not json", RSPAMD_ERROR, 0, NULL, NULL, 0, 0, NULL},
		{"", RSPAMD_ERROR, 0, NULL, NULL, 0, 0, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rspamd_result res;
		int r = rspamd_reply_parse(cases[i].json, strlen(cases[i].json), &res);
		if (res.verdict != cases[i].verdict)
			fail_msg("case %zu: verdict %s", i, rspamd_verdict_name(res.verdict));
		assert_int_equal(r, cases[i].verdict == RSPAMD_ERROR ? -1 : 1);
		if (r < 0)
			assert_non_null(res.error);
		assert_int_equal(res.smtp_code, cases[i].code);
		if (cases[i].text != NULL)
			assert_string_equal(res.smtp_text, cases[i].text);
		if (cases[i].subject != NULL)
			assert_string_equal(res.subject, cases[i].subject);
		if (res.add_count != cases[i].add_count)
			fail_msg("case %zu: add_count %zu", i, res.add_count);
		assert_int_equal(res.remove_count, cases[i].remove_count);
		if (cases[i].first_add != NULL)
			assert_string_equal(res.add_headers[0].name, cases[i].first_add);
		assert_int_equal(res.spam, cases[i].verdict == RSPAMD_SPAM || cases[i].verdict == RSPAMD_REWRITE_SUBJECT);
		rspamd_result_clear(&res);
	}
}

struct outcome {
	bool done;
	enum rspamd_verdict verdict;
	int code;
	char text[256];
	char action[64];
	char symbols[2048];
	size_t add_count, remove_count;
};

static void check_cb(void *arg, const struct rspamd_result *res)
{
	struct outcome *o = arg;
	o->done = true;
	o->verdict = res->verdict;
	o->code = res->smtp_code;
	snprintf(o->text, sizeof(o->text), "%s", res->error ? res->error : res->smtp_text ? res->smtp_text : "");
	snprintf(o->action, sizeof(o->action), "%s", res->action ? res->action : "");
	snprintf(o->symbols, sizeof(o->symbols), "%s", res->symbols ? res->symbols : "");
	o->add_count = res->add_count;
	o->remove_count = res->remove_count;
}

static const char *check_ip = "192.0.2.1";

static struct outcome run_check(const char *url, const char *msg, unsigned timeout_ms, uint64_t max_size)
{
	struct event_base *base = event_base_new();
	struct outcome o = {0};
	size_t len = strlen(msg);
	int fd = test_spool_fd(msg, len);
	const char *rcpts[] = {"b@example.test"};
	struct rspamd_request req = {.ip = check_ip, .helo = "mx.example.test", .from = "a@example.test",
	                             .rcpts = rcpts, .rcpt_count = 1, .queue_id = "TESTQ1"};
	struct rspamd_settings set = {.url = url, .timeout_ms = timeout_ms, .max_size = max_size};
	assert_true(fd >= 0);
	struct rspamd_check *c = rspamd_check_start(base, &set, &req, fd, len, check_cb, &o);
	assert_non_null(c);
	assert_false(o.done);
	while (!o.done)
		assert_true(event_base_loop(base, EVLOOP_ONCE) >= 0);
	close(fd);
	event_base_free(base);
	return o;
}

static const char ham[] = "From: a@example.test\r\nTo: b@example.test\r\nSubject: lunch\r\n"
                          "Message-ID: <2@example.test>\r\nDate: Thu, 26 Nov 2026 09:00:00 +0000\r\n\r\n"
                          "Just a normal message about lunch.\r\n";
static const char gtube[] = "From: a@example.test\r\nTo: b@example.test\r\nSubject: test\r\n"
                            "Message-ID: <1@example.test>\r\nDate: Thu, 26 Nov 2026 09:00:00 +0000\r\n\r\n"
                            "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";

static void test_failures(void **state)
{
	struct test_peer p;
	struct outcome o;
	char url[64];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d", test_peer_free_port());
	o = run_check(url, ham, 2000, 0);
	assert_int_equal(o.verdict, RSPAMD_ERROR);
	assert_non_null(strstr(o.text, "connect"));

	o = run_check("http://localhost:11333", ham, 2000, 0);
	assert_int_equal(o.verdict, RSPAMD_ERROR);

	/* too big: not sent, accepted */
	o = run_check("http://127.0.0.1:1", ham, 2000, 10);
	assert_int_equal(o.verdict, RSPAMD_ACCEPT);

	static const char http500[] = "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n";
	assert_int_equal(test_fake_peer_start(&p, TEST_FAKE_REPLY, http500, sizeof(http500) - 1), 0);
	o = run_check(p.address, ham, 2000, 0);
	assert_int_equal(o.verdict, RSPAMD_ERROR);
	assert_non_null(strstr(o.text, "500"));
	test_peer_stop(&p);

	static const char garbage[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{{{{{";
	assert_int_equal(test_fake_peer_start(&p, TEST_FAKE_REPLY, garbage, sizeof(garbage) - 1), 0);
	o = run_check(p.address, ham, 2000, 0);
	assert_int_equal(o.verdict, RSPAMD_ERROR);
	test_peer_stop(&p);

	static const char cut[] = "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"action\":";
	assert_int_equal(test_fake_peer_start(&p, TEST_FAKE_REPLY, cut, sizeof(cut) - 1), 0);
	o = run_check(p.address, ham, 2000, 0);
	assert_int_equal(o.verdict, RSPAMD_ERROR);
	test_peer_stop(&p);

	assert_int_equal(test_fake_peer_start(&p, TEST_FAKE_CLOSE, NULL, 0), 0);
	o = run_check(p.address, ham, 2000, 0);
	assert_int_equal(o.verdict, RSPAMD_ERROR);
	test_peer_stop(&p);

	assert_int_equal(test_fake_peer_start(&p, TEST_FAKE_HANG, NULL, 0), 0);
	o = run_check(p.address, ham, 300, 0);
	assert_int_equal(o.verdict, RSPAMD_ERROR);
	assert_string_equal(o.text, "rspamd: timeout");
	test_peer_stop(&p);

	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 24\r\n\r\n{\"action\":\"greylist\"}   ";
	assert_int_equal(test_fake_peer_start(&p, TEST_FAKE_REPLY, ok, sizeof(ok) - 1), 0);
	o = run_check(p.address, ham, 2000, 0);
	assert_int_equal(o.verdict, RSPAMD_GREYLIST);
	assert_int_equal(o.code, 451);
	test_peer_stop(&p);
}

static void test_real_rspamd(void **state)
{
	struct test_peer p;
	const char *existing = getenv("MR_TEST_RSPAMD"); /* reuse a running one while developing */
	char url[64];

	if (existing != NULL) {
		snprintf(url, sizeof(url), "%s", existing);
		p.pid = 0;
	} else {
		if (test_rspamd_start(&p) < 0)
			fail_msg("rspamd did not start (scripts/install-deps installs rspamd)");
		snprintf(url, sizeof(url), "http://%s/checkv2", p.address);
	}
	/* rspamd 3.4's default for GTUBE is the reject action (score = reject threshold) */
	struct outcome o = run_check(url, gtube, 20000, 0);
	assert_int_equal(o.verdict, RSPAMD_REJECT);
	assert_int_equal(o.code, 554);
	assert_string_equal(o.action, "reject");
	assert_non_null(strstr(o.symbols, "GTUBE"));

	/* from a local address (no network in tests: an unknown remote IP scores RDNS_NONE etc.) */
	check_ip = "127.0.0.1";
	o = run_check(url, ham, 20000, 0);
	check_ip = "192.0.2.1";
	if (o.verdict != RSPAMD_ACCEPT)
		fail_msg("ham: %s %s %s", rspamd_verdict_name(o.verdict), o.action, o.symbols);
	assert_string_equal(o.action, "no action");
	if (existing == NULL)
		test_peer_stop(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_format),
		cmocka_unit_test(test_http_parse),
		cmocka_unit_test(test_reply_parse),
		cmocka_unit_test(test_failures),
		cmocka_unit_test(test_real_rspamd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
