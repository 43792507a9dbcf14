/*
 * smtp_client against a scriptable Python receiver (tests/outbound/smtp_receiver.py)
 * and a real unbound for MX data, all on loopback with free ports.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib-dns/dns_resolver.h"
#include "lib-dns/test-dns-server.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "outbound/smtp_client.h"

static struct test_dns_server dns_server;
static char tmpdir[64];
static char cert_path[128], key_path[128];
static int port; /* the one port every receiver of a test listens on (MX tests need it fixed) */

struct receiver {
	pid_t pid;
	int port;
	char log[160];
};

/* every receiver started, so that the group teardown can stop those a failed test left behind */
static pid_t started[256];
static size_t started_count;

static const char *source_dir(void)
{
	const char *d = getenv("MR_SOURCE_DIR");
	return d != NULL ? d : ".";
}

/* Start the receiver on host:port with extra args (NULL-terminated); waits for READY. */
static void receiver_start(struct receiver *r, const char *host, int p, const char *const *extra)
{
	static unsigned seq;
	char script[512], portstr[16];
	const char *argv[300];
	size_t n = 0;
	int fds[2];

	snprintf(script, sizeof(script), "%s/tests/outbound/smtp_receiver.py", source_dir());
	snprintf(portstr, sizeof(portstr), "%d", p);
	snprintf(r->log, sizeof(r->log), "%s/recv-%u.log", tmpdir, ++seq);
	unlink(r->log);
	argv[n++] = "/usr/bin/python3";
	argv[n++] = script;
	argv[n++] = "--host";
	argv[n++] = host;
	argv[n++] = "--port";
	argv[n++] = portstr;
	argv[n++] = "--log";
	argv[n++] = r->log;
	for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
		assert_true(n < sizeof(argv) / sizeof(argv[0]) - 1);
		argv[n++] = extra[i];
	}
	argv[n] = NULL;
	assert_int_equal(pipe(fds), 0);
	r->pid = fork();
	assert_true(r->pid >= 0);
	if (r->pid == 0) {
		char errlog[200];
		snprintf(errlog, sizeof(errlog), "%s.stderr", r->log);
		int efd = open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (efd >= 0)
			dup2(efd, 2);
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	if (started_count < sizeof(started) / sizeof(started[0]))
		started[started_count++] = r->pid;
	char line[64] = { 0 };
	size_t got = 0;
	struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
	while (got < sizeof(line) - 1 && strchr(line, '\n') == NULL) {
		if (poll(&pfd, 1, 5000) <= 0)
			break;
		ssize_t k = read(fds[0], line + got, sizeof(line) - 1 - got);
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	close(fds[0]);
	if (sscanf(line, "READY %d", &r->port) != 1)
		fail_msg("receiver did not start: '%s'", line);
}

static void receiver_stop(struct receiver *r)
{
	if (r->pid > 0) {
		kill(r->pid, SIGTERM);
		waitpid(r->pid, NULL, 0);
		for (size_t i = 0; i < started_count; i++)
			if (started[i] == r->pid)
				started[i] = 0;
		r->pid = 0;
	}
}

static char *receiver_log(const struct receiver *r)
{
	char *buf = xcalloc(1, 1 << 20);
	int fd = open(r->log, O_RDONLY);
	if (fd >= 0) {
		ssize_t n = read(fd, buf, (1 << 20) - 1);
		(void)n;
		close(fd);
	}
	return buf;
}

static int count_str(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

static int message_fd(const char *content)
{
	int fd = memfd_create("msg", 0);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	return fd;
}

/* ---- running one delivery ---- */

struct rcpt_copy {
	enum smtp_rcpt_status status;
	int code;
	char enh[16];
	char text[512];
	char host[128];
	bool remote;
	bool dsn_passed;
};

struct outcome {
	struct event_base *base;
	bool done;
	int calls;
	struct rcpt_copy r[8];
	size_t n;
	bool tls;
	enum smtp_host_state hosts[4];
	size_t host_count;
	double elapsed;
};

static void outcome_cb(void *arg, const struct smtp_delivery_result *res)
{
	struct outcome *o = arg;
	o->calls++;
	o->done = true;
	o->n = res->rcpt_count;
	o->tls = res->tls;
	o->host_count = res->host_count;
	for (size_t i = 0; i < res->host_count && i < 4; i++)
		o->hosts[i] = res->hosts[i];
	for (size_t i = 0; i < res->rcpt_count && i < 8; i++) {
		o->r[i].status = res->rcpts[i].status;
		o->r[i].code = res->rcpts[i].code;
		o->r[i].remote = res->rcpts[i].remote;
		o->r[i].dsn_passed = res->rcpts[i].dsn_passed;
		snprintf(o->r[i].enh, sizeof(o->r[i].enh), "%s", res->rcpts[i].enh);
		snprintf(o->r[i].text, sizeof(o->r[i].text), "%s", res->rcpts[i].text);
		snprintf(o->r[i].host, sizeof(o->r[i].host), "%s", res->rcpts[i].host);
	}
	event_base_loopbreak(o->base);
}

static void safety_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

static void run_until_done(struct outcome *o, int max_ms)
{
	struct timespec t0, t1;
	struct event *safety = evtimer_new(o->base, safety_cb, o->base);
	struct timeval tv = { max_ms / 1000, (max_ms % 1000) * 1000 };
	evtimer_add(safety, &tv);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!o->done) {
		event_base_dispatch(o->base);
		if (!evtimer_pending(safety, NULL))
			break;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	event_free(safety);
	o->elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (!o->done)
		fail_msg("delivery did not finish within %d ms", max_ms);
}

/* Let deferred bufferevent callbacks and finalizers run before the base goes away. */
static void base_free(struct event_base *base)
{
	for (int i = 0; i < 3; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_free(base);
}

static const char *const own_names[] = { "self.example.test" };
static const char *const own_addrs[] = { "127.0.0.10" };

static bool use_chunking;

static struct smtp_client *client_new_ca(struct event_base *base, struct dns_resolver *dns, unsigned tmo_ms,
                                         unsigned idle_ms, const char *ca)
{
	struct smtp_client_settings set = {
		.helo_name = "client.test",
		.dns = dns,
		.timeouts = { .connect = tmo_ms, .banner = tmo_ms, .helo = tmo_ms, .mail = tmo_ms, .rcpt = tmo_ms,
		              .data_init = tmo_ms, .data_block = tmo_ms, .data_final = tmo_ms, .quit = 200 },
		.mx_port = (unsigned)port,
		.idle_ms = idle_ms,
		.own_names = own_names,
		.own_name_count = 1,
		.own_addrs = own_addrs,
		.own_addr_count = 1,
		.tls_ca_file = ca,
		.chunking = use_chunking,
	};
	char *error = NULL;
	struct smtp_client *c = smtp_client_new(base, &set, &error);
	if (c == NULL)
		fail_msg("%s", error);
	return c;
}

static struct smtp_client *client_new(struct event_base *base, struct dns_resolver *dns, unsigned tmo_ms,
                                      unsigned idle_ms)
{
	return client_new_ca(base, dns, tmo_ms, idle_ms, NULL);
}

static const char *const msg_text = "Subject: test\n\nhello\n.leading dot\nlast line without newline";

struct deliver_case {
	const char *name;
	const char *recv_args[8];    /* receiver misbehaviour */
	bool no_receiver;
	enum smtp_tls_policy tls;
	const char *auth;            /* "user:pass" */
	const char *msg;             /* message text; default msg_text */
	bool verify;                 /* tls_verify */
	bool ca;                     /* the client trusts the receiver's certificate */
	bool chunking;               /* client setting chunking */
	int connects;                /* connections the receiver saw (0: don't check) */
	const char *rcpts[3];
	bool smtputf8, body_8bit;
	off_t size;
	unsigned tmo_ms;
	/* expectations */
	enum smtp_rcpt_status st[3];
	int code[3];
	const char *enh[3];
	const char *text_has;        /* in rcpt 0's text */
	int messages;                /* messages the receiver got */
	int mail_cmds;               /* MAIL commands the receiver saw (-1: don't check) */
	bool expect_tls;
	const char *log_has;
	double max_seconds;
};

static void run_relay_case(const struct deliver_case *c)
{
	struct event_base *base = event_base_new();
	use_chunking = c->chunking;
	struct smtp_client *cl = client_new_ca(base, NULL, c->tmo_ms != 0 ? c->tmo_ms : 3000, 0,
	                                       c->ca ? cert_path : NULL);
	use_chunking = false;
	struct receiver r = { 0 };
	const char *args[16];
	size_t na = 0;
	char auth_arg[64];

	for (size_t i = 0; c->recv_args[i] != NULL; i++)
		args[na++] = c->recv_args[i];
	if (c->tls != SMTP_TLS_NONE || c->auth != NULL) {
		bool no_cert = false;
		for (size_t i = 0; i < na; i++)
			no_cert |= strcmp(args[i], "--plain-only") == 0;
		if (!no_cert) {
			args[na++] = "--tls-cert";
			args[na++] = cert_path;
			args[na++] = "--tls-key";
			args[na++] = key_path;
		}
	}
	bool recv_auth = false;
	for (size_t i = 0; i < na; i++)
		recv_auth |= strcmp(args[i], "--auth") == 0;
	if (c->auth != NULL && !recv_auth) {
		snprintf(auth_arg, sizeof(auth_arg), "%s", c->auth);
		args[na++] = "--auth";
		args[na++] = auth_arg;
	}
	/* "--plain-only" is ours, not the receiver's */
	size_t k = 0;
	for (size_t i = 0; i < na; i++)
		if (strcmp(args[i], "--plain-only") != 0)
			args[k++] = args[i];
	args[k] = NULL;
	if (!c->no_receiver)
		receiver_start(&r, "127.0.0.1", 0, args);

	struct smtp_relay_host relay = { "127.0.0.1", c->no_receiver ? (unsigned)test_free_port() : (unsigned)r.port };
	struct smtp_destination dest = { .relays = &relay, .relay_count = 1, .tls = c->tls,
		                         .tls_verify = c->verify };
	char user[32] = "", pass[32] = "";
	if (c->auth != NULL) {
		sscanf(c->auth, "%31[^:]:%31s", user, pass);
		dest.auth_user = user;
		dest.auth_pass = pass;
	}
	struct smtp_envelope_rcpt rc[3];
	size_t nr = 0;
	for (; nr < 3 && c->rcpts[nr] != NULL; nr++)
		rc[nr] = (struct smtp_envelope_rcpt){ .address = c->rcpts[nr] };
	struct smtp_envelope env = { .queue_id = c->name, .sender = "sender@client.test", .rcpts = rc,
		                     .rcpt_count = nr, .smtputf8 = c->smtputf8, .body_8bit = c->body_8bit,
		                     .size = c->size };
	int fd = message_fd(c->msg != NULL ? c->msg : msg_text);
	struct outcome o = { .base = base };
	struct smtp_delivery *d = smtp_deliver(cl, &env, fd, &dest, outcome_cb, &o);
	assert_non_null(d);
	assert_int_equal(o.calls, 0);
	run_until_done(&o, 15000);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.n, nr);
	for (size_t i = 0; i < nr; i++) {
		if (o.r[i].status != c->st[i] || (c->code[i] != 0 && o.r[i].code != c->code[i]))
			fail_msg("case %s rcpt %zu: %s %d %s '%s', expected %s %d", c->name, i,
			         smtp_rcpt_status_name(o.r[i].status), o.r[i].code, o.r[i].enh, o.r[i].text,
			         smtp_rcpt_status_name(c->st[i]), c->code[i]);
		if (c->enh[i] != NULL && strcmp(o.r[i].enh, c->enh[i]) != 0)
			fail_msg("case %s rcpt %zu: enh %s, expected %s", c->name, i, o.r[i].enh, c->enh[i]);
	}
	if (c->text_has != NULL && strstr(o.r[0].text, c->text_has) == NULL)
		fail_msg("case %s: text '%s' lacks '%s'", c->name, o.r[0].text, c->text_has);
	if (c->max_seconds > 0 && o.elapsed > c->max_seconds)
		fail_msg("case %s: took %.2f s", c->name, o.elapsed);
	assert_int_equal(o.tls, c->expect_tls);
	/* let the QUIT exchange finish before looking at the receiver's log */
	smtp_client_free(&cl);
	if (!c->no_receiver) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		receiver_stop(&r);
		char *log = receiver_log(&r);
		int messages = count_str(log, "\"event\": \"message\"");
		if (messages != c->messages)
			fail_msg("case %s: receiver got %d messages, expected %d\n%s", c->name, messages, c->messages,
			         log);
		if (c->mail_cmds >= 0 && count_str(log, "\"line\": \"MAIL FROM") != c->mail_cmds)
			fail_msg("case %s: MAIL commands %d, expected %d\n%s", c->name,
			         count_str(log, "\"line\": \"MAIL FROM"), c->mail_cmds, log);
		if (c->connects != 0 && count_str(log, "\"event\": \"connect\"") != c->connects)
			fail_msg("case %s: %d connections, expected %d\n%s", c->name,
			         count_str(log, "\"event\": \"connect\""), c->connects, log);
		if (c->log_has != NULL && strstr(log, c->log_has) == NULL)
			fail_msg("case %s: receiver log lacks %s\n%s", c->name, c->log_has, log);
		free(log);
	}
	close(fd);
	base_free(base);
}

static void test_relay_cases(void **state)
{
	static const struct deliver_case cases[] = {
		{ .name = "success-pipelining",
		  .rcpts = { "a@dest.test", "b@dest.test" },
		  .st = { SMTP_RCPT_DELIVERED, SMTP_RCPT_DELIVERED }, .code = { 250, 250 }, .enh = { "2.0.0" },
		  .text_has = "queued as 42", .messages = 1, .mail_cmds = 1,
		  /* dot-stuffed, CRLF line ends, final CRLF added */
		  .log_has = "hello\\r\\n..leading dot\\r\\nlast line without newline\\r\\n\"" },
		{ .name = "no-pipelining", .recv_args = { "--no-pipelining" },
		  .rcpts = { "a@dest.test", "b@dest.test", "c@dest.test" },
		  .st = { SMTP_RCPT_DELIVERED, SMTP_RCPT_DELIVERED, SMTP_RCPT_DELIVERED }, .messages = 1,
		  .mail_cmds = 1 },
		{ .name = "rcpt-5xx-only-that-one", .recv_args = { "--rcpt-reply", "b@dest.test=550 5.1.1 no such user" },
		  .rcpts = { "a@dest.test", "b@dest.test" },
		  .st = { SMTP_RCPT_DELIVERED, SMTP_RCPT_PERMFAIL }, .code = { 250, 550 }, .enh = { NULL, "5.1.1" },
		  .messages = 1, .mail_cmds = 1 },
		{ .name = "rcpt-4xx", .recv_args = { "--rcpt-reply", "a@dest.test=450 4.2.0 greylisted" },
		  .rcpts = { "a@dest.test" },
		  .st = { SMTP_RCPT_TEMPFAIL }, .code = { 450 }, .enh = { "4.2.0" }, .text_has = "greylisted",
		  .messages = 0, .mail_cmds = 1 },
		{ .name = "rcpt-421-is-session-level", .recv_args = { "--rcpt-reply", "b@dest.test=421 4.3.2 shutting down" },
		  .rcpts = { "a@dest.test", "b@dest.test" }, .st = { SMTP_RCPT_TEMPFAIL, SMTP_RCPT_TEMPFAIL },
		  .code = { 421, 421 }, .text_has = "shutting down", .messages = 0, .mail_cmds = 1 },
		{ .name = "data-250-instead-of-354", .recv_args = { "--data-reply", "250 2.0.0 sure" },
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_TEMPFAIL }, .code = { 421 },
		  .text_has = "unexpected reply 250 to DATA", .messages = 0, .mail_cmds = 1 },
		{ .name = "data-554", .recv_args = { "--data-reply", "554 5.7.1 no thanks" },
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_PERMFAIL }, .code = { 554 }, .enh = { "5.7.1" },
		  .messages = 0, .mail_cmds = 1 },
		{ .name = "mail-4xx", .recv_args = { "--mail-reply", "451 4.3.0 try later" },
		  .rcpts = { "a@dest.test", "b@dest.test" },
		  .st = { SMTP_RCPT_TEMPFAIL, SMTP_RCPT_TEMPFAIL }, .code = { 451, 451 }, .enh = { "4.3.0" },
		  .text_has = "try later", .messages = 0, .mail_cmds = 1 },
		{ .name = "mail-5xx", .recv_args = { "--mail-reply", "553 5.7.1 sender rejected" },
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_PERMFAIL }, .code = { 553 }, .messages = 0,
		  .mail_cmds = 1 },
		{ .name = "banner-554", .recv_args = { "--banner", "554 5.7.1 go away" },
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_TEMPFAIL }, .code = { 451 },
		  .text_has = "go away", .messages = 0, .mail_cmds = 0 },
		{ .name = "dot-5xx", .recv_args = { "--dot-reply", "554 5.7.1 spam" },
		  .rcpts = { "a@dest.test", "b@dest.test" }, .st = { SMTP_RCPT_PERMFAIL, SMTP_RCPT_PERMFAIL },
		  .code = { 554, 554 }, .messages = 1, .mail_cmds = 1 },
		{ .name = "dot-4xx", .recv_args = { "--dot-reply", "451 4.3.0 disk full" },
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_TEMPFAIL }, .code = { 451 }, .text_has = "disk full",
		  .messages = 1, .mail_cmds = 1 },
		{ .name = "helo-fallback", .recv_args = { "--ehlo-reply", "502 5.5.2 what" },
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_DELIVERED }, .messages = 1, .mail_cmds = 1,
		  .log_has = "HELO client.test" },
		/* replies must end in CRLF (lib-smtp's parser): a bare-LF peer is a temporary failure */
		{ .name = "bare-lf-replies", .recv_args = { "--bare-lf" },
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_TEMPFAIL }, .code = { 421 }, .text_has = "bare LF",
		  .messages = 0, .mail_cmds = 0, .max_seconds = 4 },
		{ .name = "tls-required-not-offered", .tls = SMTP_TLS_REQUIRE, .recv_args = { "--plain-only" },
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_TEMPFAIL }, .code = { 454 }, .enh = { "4.7.4" },
		  .text_has = "TLS is required", .messages = 0, .mail_cmds = 0 },
		{ .name = "starttls-offered", .tls = SMTP_TLS_MAY,
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_DELIVERED }, .messages = 1, .mail_cmds = 1,
		  .expect_tls = true, .log_has = "\"tls\": true}" },
		{ .name = "starttls-required", .tls = SMTP_TLS_REQUIRE,
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_DELIVERED }, .messages = 1, .mail_cmds = 1,
		  .expect_tls = true },
		{ .name = "starttls-broken-may-retries-in-clear", .tls = SMTP_TLS_MAY,
		  .recv_args = { "--starttls-garbage" }, .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_DELIVERED },
		  .messages = 1, .mail_cmds = 1, .connects = 2, .log_has = "tls-garbage" },
		{ .name = "starttls-broken-require-defers", .tls = SMTP_TLS_REQUIRE,
		  .recv_args = { "--starttls-garbage" }, .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_TEMPFAIL },
		  .code = { 454 }, .text_has = "TLS handshake failed", .messages = 0, .mail_cmds = 0, .connects = 1 },
		{ .name = "verify-trusted", .tls = SMTP_TLS_REQUIRE, .verify = true, .ca = true,
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_DELIVERED }, .messages = 1, .mail_cmds = 1,
		  .expect_tls = true },
		{ .name = "verify-untrusted", .tls = SMTP_TLS_REQUIRE, .verify = true,
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_TEMPFAIL }, .code = { 454 },
		  .text_has = "certificate verify failed", .messages = 0, .mail_cmds = 0 },
		{ .name = "bdat", .chunking = true, .recv_args = { "--chunking" },
		  .rcpts = { "a@dest.test", "b@dest.test" }, .st = { SMTP_RCPT_DELIVERED, SMTP_RCPT_DELIVERED },
		  .messages = 1, .mail_cmds = 1,
		  /* no dot-stuffing with BDAT, CRLF still normalized */
		  .log_has = "hello\\r\\n.leading dot\\r\\nlast line without newline\\r\\n\", \"tls\": false, \"bdat\": 2}" },
		{ .name = "bdat-not-offered", .chunking = true,
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_DELIVERED }, .messages = 1, .mail_cmds = 1,
		  .log_has = "..leading dot" },
		{ .name = "bdat-last-5xx", .chunking = true, .recv_args = { "--chunking", "--dot-reply", "554 5.6.0 bad" },
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_PERMFAIL }, .code = { 554 }, .enh = { "5.6.0" },
		  .messages = 1, .mail_cmds = 1 },
		{ .name = "bdat-8bit-downgrade", .chunking = true, .body_8bit = true,
		  .recv_args = { "--chunking", "--no-8bitmime" },
		  .msg = "Subject: x\n\ncaf\xc3\xa9\n",
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_DELIVERED }, .messages = 1, .mail_cmds = 1,
		  .log_has = "quoted-printable\\r\\n\\r\\ncaf=C3=A9\\r\\n\"" },
		{ .name = "tls-none-ignores-starttls", .tls = SMTP_TLS_NONE,
		  .recv_args = { "--tls-cert", cert_path, "--tls-key", key_path },
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_DELIVERED }, .messages = 1, .mail_cmds = 1 },
		{ .name = "auth-plain-in-tls", .tls = SMTP_TLS_REQUIRE, .auth = "user:secret",
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_DELIVERED }, .messages = 1, .mail_cmds = 1,
		  .expect_tls = true, .log_has = "\"event\": \"auth\", \"ok\": true" },
		{ .name = "auth-bad-password", .tls = SMTP_TLS_REQUIRE, .auth = "user:wrong",
		  .recv_args = { "--auth", "user:secret" },
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_TEMPFAIL }, .messages = 0, .mail_cmds = 0 },
		{ .name = "size-too-big", .recv_args = { "--size", "100" }, .size = 5000,
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_PERMFAIL }, .code = { 552 }, .enh = { "5.3.4" },
		  .messages = 0, .mail_cmds = 0 },
		{ .name = "smtputf8-missing", .smtputf8 = true,
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_PERMFAIL }, .code = { 553 }, .enh = { "5.6.7" },
		  .messages = 0, .mail_cmds = 0 },
		{ .name = "smtputf8-offered", .smtputf8 = true, .recv_args = { "--smtputf8" },
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_DELIVERED }, .messages = 1, .mail_cmds = 1,
		  .log_has = "SMTPUTF8" },
		{ .name = "idn-domain-as-alabel", .rcpts = { "user@b\xc3\xbc" "cher.test" },
		  .st = { SMTP_RCPT_DELIVERED }, .messages = 1, .mail_cmds = 1,
		  .log_has = "\"RCPT TO:<user@xn--bcher-kva.test>\"" },
		{ .name = "utf8-localpart-needs-smtputf8", .rcpts = { "j\xc3\xb6rg@dest.test", "a@dest.test" },
		  .st = { SMTP_RCPT_PERMFAIL, SMTP_RCPT_PERMFAIL }, .code = { 553, 553 }, .enh = { "5.6.7" },
		  .messages = 0, .mail_cmds = 0 },
		{ .name = "utf8-localpart-smtputf8-peer", .recv_args = { "--smtputf8" },
		  .rcpts = { "j\xc3\xb6rg@dest.test" }, .st = { SMTP_RCPT_DELIVERED }, .messages = 1, .mail_cmds = 1,
		  .log_has = "RCPT TO:<j\\u00f6rg@dest.test>\"" },
		{ .name = "8bit-downgraded-to-qp", .body_8bit = true, .recv_args = { "--no-8bitmime" },
		  .msg = "Subject: x\nContent-Type: text/plain; charset=utf-8\n\ncaf\xc3\xa9 =\n.dot\n",
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_DELIVERED }, .messages = 1, .mail_cmds = 1,
		  .log_has = "Content-Transfer-Encoding: quoted-printable\\r\\n\\r\\ncaf=C3=A9 =3D\\r\\n..dot\\r\\n\"" },
		{ .name = "8bit-multipart-not-convertible", .body_8bit = true, .recv_args = { "--no-8bitmime" },
		  .msg = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\ncaf\xc3\xa9\n--b--\n",
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_PERMFAIL }, .code = { 554 }, .enh = { "5.6.3" },
		  .text_has = "cannot be converted", .messages = 0, .mail_cmds = 0 },
		{ .name = "8bit-with-8bitmime", .body_8bit = true,
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_DELIVERED }, .messages = 1, .mail_cmds = 1,
		  .log_has = "BODY=8BITMIME" },
		{ .name = "stall-banner", .recv_args = { "--stall", "banner" }, .tmo_ms = 400,
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_TEMPFAIL }, .code = { 421 }, .enh = { "4.4.2" },
		  .text_has = "timeout while waiting for banner", .messages = 0, .mail_cmds = 0, .max_seconds = 4 },
		{ .name = "stall-rcpt", .recv_args = { "--stall", "rcpt" }, .tmo_ms = 400,
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_TEMPFAIL }, .text_has = "timeout",
		  .messages = 0, .mail_cmds = 1, .max_seconds = 4 },
		{ .name = "stall-dot", .recv_args = { "--stall", "dot" }, .tmo_ms = 400,
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_TEMPFAIL }, .text_has = "end of data",
		  .messages = 1, .mail_cmds = 1, .max_seconds = 4 },
		{ .name = "endless-multiline", .recv_args = { "--endless-multiline" },
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_TEMPFAIL }, .text_has = "too many lines",
		  .messages = 0, .mail_cmds = 0, .max_seconds = 5 },
		{ .name = "connection-refused", .no_receiver = true,
		  .rcpts = { "a@dest.test" }, .st = { SMTP_RCPT_TEMPFAIL }, .code = { 421 }, .text_has = "connect",
		  .max_seconds = 4 },
		{ .name = "invalid-recipient", .rcpts = { "a@dest.test", "bad\r\nRSET@x" },
		  .st = { SMTP_RCPT_DELIVERED, SMTP_RCPT_PERMFAIL }, .code = { 250, 553 }, .messages = 1,
		  .mail_cmds = 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_relay_case(&cases[i]);
}

/* ---- MX destinations through unbound ---- */

static const char *const dns_records[] = {
	"example.test. 300 IN MX 10 mx1.example.test.",
	"example.test. 300 IN MX 20 mx2.example.test.",
	"mx1.example.test. 300 IN A 127.0.0.2",
	"mx2.example.test. 300 IN A 127.0.0.3",
	"single.test. 300 IN A 127.0.0.3",
	"nullmx.test. 300 IN MX 0 .",
	"loop.test. 300 IN MX 10 self.example.test.",
	"loop.test. 300 IN MX 20 mx2.example.test.",
	"backup.test. 300 IN MX 10 mx2.example.test.",
	"backup.test. 300 IN MX 20 self.example.test.",
	"self.example.test. 300 IN A 127.0.0.9",
	"noaddr.test. 300 IN TXT \"nothing here\"",
	"v6.test. 300 IN MX 10 mx6.v6.test.",
	"mx6.v6.test. 300 IN AAAA ::1",
	"addrloop.test. 300 IN MX 10 mxa.addrloop.test.",
	"mxa.addrloop.test. 300 IN A 127.0.0.10",
	"addrbackup.test. 300 IN MX 10 mx1.example.test.",
	"addrbackup.test. 300 IN MX 20 mxa.addrloop.test.",
	"addrbackup.test. 300 IN MX 30 mx2.example.test.",
	"dual.test. 300 IN MX 10 mx.dual.test.",
	"mx.dual.test. 300 IN A 127.0.0.2",
	"mx.dual.test. 300 IN AAAA ::1",
	NULL,
};

struct mx_case {
	const char *name;
	const char *domain;
	enum smtp_rcpt_status st;
	int code;
	const char *enh;
	const char *host;     /* the host that answered */
	const char *text_has;
};

static void test_mx_cases(void **state)
{
	static const struct mx_case cases[] = {
		{ "primary-down-secondary-up", "example.test", SMTP_RCPT_DELIVERED, 250, "2.0.0", "mx2.example.test",
		  NULL },
		{ "implicit-mx", "single.test", SMTP_RCPT_DELIVERED, 250, NULL, "single.test", NULL },
		{ "null-mx", "nullmx.test", SMTP_RCPT_PERMFAIL, 556, "5.1.10", NULL, "null MX" },
		{ "nxdomain", "nonexistent.test", SMTP_RCPT_PERMFAIL, 550, "5.1.2", NULL, "not found" },
		{ "loops-back", "loop.test", SMTP_RCPT_PERMFAIL, 554, "5.4.6", NULL, "loops back to myself" },
		{ "backup-mx-uses-better", "backup.test", SMTP_RCPT_DELIVERED, 250, NULL, "mx2.example.test", NULL },
		{ "no-address", "noaddr.test", SMTP_RCPT_PERMFAIL, 550, "5.4.4", NULL, "no MX and no address" },
		{ "address-loops-back", "addrloop.test", SMTP_RCPT_PERMFAIL, 554, "5.4.6", NULL, "loops back" },
		/* we are the backup (by address): the worse mx2 must not be used while mx1 is down */
		{ "address-backup", "addrbackup.test", SMTP_RCPT_TEMPFAIL, 421, NULL, "mx1.example.test", "connect" },
		{ "ipv6-only-mx", "v6.test", SMTP_RCPT_DELIVERED, 250, NULL, "mx6.v6.test", NULL },
		{ "a-down-aaaa-up", "dual.test", SMTP_RCPT_DELIVERED, 250, NULL, "mx.dual.test", NULL },
	};
	struct event_base *base = event_base_new();
	const char *fwd[] = { dns_server.fwd };
	char *error = NULL;
	struct dns_resolver *dns = dns_resolver_new(base, fwd, 1, &error);
	assert_non_null(dns);
	struct receiver r = { 0 }, r6 = { 0 };
	receiver_start(&r, "127.0.0.3", port, NULL);
	receiver_start(&r6, "::1", port, NULL);
	struct smtp_client *cl = client_new(base, dns, 2000, 0);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct mx_case *c = &cases[i];
		char addr[64];
		snprintf(addr, sizeof(addr), "user@%s", c->domain);
		struct smtp_envelope_rcpt rc = { .address = addr };
		struct smtp_envelope env = { .queue_id = c->name, .sender = "", .rcpts = &rc, .rcpt_count = 1 };
		struct smtp_destination dest = { .domain = c->domain, .tls = SMTP_TLS_MAY };
		int fd = message_fd(msg_text);
		struct outcome o = { .base = base };
		smtp_deliver(cl, &env, fd, &dest, outcome_cb, &o);
		run_until_done(&o, 10000);
		if (o.r[0].status != c->st || o.r[0].code != c->code)
			fail_msg("case %s: %s %d %s '%s'", c->name, smtp_rcpt_status_name(o.r[0].status), o.r[0].code,
			         o.r[0].enh, o.r[0].text);
		if (c->enh != NULL)
			assert_string_equal(o.r[0].enh, c->enh);
		if (c->host != NULL)
			assert_string_equal(o.r[0].host, c->host);
		if (i == 0) {
			/* mx1 never answered, mx2 did */
			assert_int_equal(o.host_count, 2);
			assert_int_equal(o.hosts[0], SMTP_HOST_FAILED);
			assert_int_equal(o.hosts[1], SMTP_HOST_REACHED);
		}
		if (c->text_has != NULL && strstr(o.r[0].text, c->text_has) == NULL)
			fail_msg("case %s: text '%s'", c->name, o.r[0].text);
		close(fd);
	}
	smtp_client_free(&cl);
	receiver_stop(&r);
	receiver_stop(&r6);
	char *log6 = receiver_log(&r6);
	assert_int_equal(count_str(log6, "\"event\": \"message\""), 2);
	free(log6);
	char *log = receiver_log(&r);
	/* the null sender was sent as <> */
	assert_true(strstr(log, "MAIL FROM:<>") != NULL);
	free(log);
	dns_resolver_free(&dns);
	base_free(base);
}

/* ---- reuse, DSN, cancel ---- */

static void test_session_reuse(void **state)
{
	struct event_base *base = event_base_new();
	struct smtp_client *cl = client_new(base, NULL, 3000, 5000);
	struct receiver r = { 0 };
	const char *args[] = { "--dsn", NULL };
	receiver_start(&r, "127.0.0.1", 0, args);
	struct smtp_relay_host relay = { "127.0.0.1", (unsigned)r.port };
	struct smtp_destination dest = { .relays = &relay, .relay_count = 1 };
	struct smtp_envelope_rcpt rc = { .address = "a@dest.test", .notify = "SUCCESS,FAILURE",
		                         .orcpt = "rfc822;a@dest.test" };
	struct smtp_envelope env = { .sender = "s@client.test", .envid = "ENV1", .ret = "HDRS", .rcpts = &rc,
		                     .rcpt_count = 1 };
	int fd = message_fd(msg_text);
	for (int i = 0; i < 3; i++) {
		struct outcome o = { .base = base };
		smtp_deliver(cl, &env, fd, &dest, outcome_cb, &o);
		run_until_done(&o, 5000);
		assert_int_equal(o.r[0].status, SMTP_RCPT_DELIVERED);
		assert_true(o.r[0].dsn_passed);
		assert_int_equal(smtp_client_idle_count(cl), 1);
	}
	smtp_client_free(&cl);
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	receiver_stop(&r);
	char *log = receiver_log(&r);
	assert_int_equal(count_str(log, "\"event\": \"connect\""), 1);
	assert_int_equal(count_str(log, "\"event\": \"message\""), 3);
	assert_int_equal(count_str(log, "RSET"), 2);
	assert_non_null(strstr(log, "MAIL FROM:<s@client.test> SIZE=59 RET=HDRS ENVID=ENV1"));
	assert_non_null(strstr(log, "RCPT TO:<a@dest.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@dest.test"));
	free(log);
	close(fd);
	base_free(base);
}

static void test_reuse_after_peer_closed(void **state)
{
	/* the parked session dies (receiver restarted): the next delivery reconnects without blame */
	struct event_base *base = event_base_new();
	struct smtp_client *cl = client_new(base, NULL, 3000, 5000);
	struct receiver r = { 0 };
	receiver_start(&r, "127.0.0.1", 0, NULL);
	struct smtp_relay_host relay = { "127.0.0.1", (unsigned)r.port };
	struct smtp_destination dest = { .relays = &relay, .relay_count = 1 };
	struct smtp_envelope_rcpt rc = { .address = "a@dest.test" };
	struct smtp_envelope env = { .sender = "s@client.test", .rcpts = &rc, .rcpt_count = 1 };
	int fd = message_fd(msg_text);
	struct outcome o = { .base = base };
	smtp_deliver(cl, &env, fd, &dest, outcome_cb, &o);
	run_until_done(&o, 5000);
	assert_int_equal(o.r[0].status, SMTP_RCPT_DELIVERED);
	assert_false(o.r[0].dsn_passed);
	int p = r.port;
	receiver_stop(&r);
	/* same port again; the old connection is gone */
	struct receiver r2 = { 0 };
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%d", p);
	receiver_start(&r2, "127.0.0.1", p, NULL);
	struct outcome o2 = { .base = base };
	smtp_deliver(cl, &env, fd, &dest, outcome_cb, &o2);
	run_until_done(&o2, 5000);
	assert_int_equal(o2.r[0].status, SMTP_RCPT_DELIVERED);
	smtp_client_free(&cl);
	receiver_stop(&r2);
	close(fd);
	base_free(base);
}

static void test_cancel(void **state)
{
	struct event_base *base = event_base_new();
	struct smtp_client *cl = client_new(base, NULL, 3000, 0);
	struct receiver r = { 0 };
	const char *args[] = { "--stall", "rcpt", NULL };
	receiver_start(&r, "127.0.0.1", 0, args);
	struct smtp_relay_host relay = { "127.0.0.1", (unsigned)r.port };
	struct smtp_destination dest = { .relays = &relay, .relay_count = 1 };
	struct smtp_envelope_rcpt rc = { .address = "a@dest.test" };
	struct smtp_envelope env = { .sender = "s@client.test", .rcpts = &rc, .rcpt_count = 1 };
	int fd = message_fd(msg_text);
	struct outcome o = { .base = base };
	struct smtp_delivery *d = smtp_deliver(cl, &env, fd, &dest, outcome_cb, &o);
	struct timeval tv = { 0, 300 * 1000 };
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	smtp_delivery_cancel(&d);
	assert_null(d);
	tv.tv_usec = 100 * 1000;
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_int_equal(o.calls, 0);
	/* a pending delivery when the client is freed: no callback either */
	smtp_deliver(cl, &env, fd, &dest, outcome_cb, &o);
	smtp_client_free(&cl);
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_int_equal(o.calls, 0);
	receiver_stop(&r);
	close(fd);
	base_free(base);
}


static void large_message(bool bdat)
{
	/* several chunks: exercises the write watermark path, dot-stuffing across chunk borders */
	struct event_base *base = event_base_new();
	use_chunking = bdat;
	struct smtp_client *cl = client_new(base, NULL, 3000, 0);
	use_chunking = false;
	struct receiver r = { 0 };
	const char *args[] = { bdat ? "--chunking" : NULL, NULL };
	receiver_start(&r, "127.0.0.1", 0, args);
	struct smtp_relay_host relay = { "127.0.0.1", (unsigned)r.port };
	struct smtp_destination dest = { .relays = &relay, .relay_count = 1 };
	struct smtp_envelope_rcpt rc = { .address = "a@dest.test" };
	struct smtp_envelope env = { .sender = "s@client.test", .rcpts = &rc, .rcpt_count = 1 };
	int fd = memfd_create("big", 0);
	char line[128];
	assert_int_equal(write(fd, "Subject: big\n\n", 14), 14);
	for (int i = 0; i < 4000; i++) {
		int n = snprintf(line, sizeof(line), "%sline %05d %s\n", i % 7 == 0 ? "." : "", i,
		                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
		assert_int_equal(write(fd, line, (size_t)n), n);
	}
	assert_int_equal(write(fd, "END-OF-MESSAGE", 14), 14);
	struct outcome o = { .base = base };
	smtp_deliver(cl, &env, fd, &dest, outcome_cb, &o);
	run_until_done(&o, 10000);
	assert_int_equal(o.r[0].status, SMTP_RCPT_DELIVERED);
	smtp_client_free(&cl);
	receiver_stop(&r);
	char *log = receiver_log(&r);
	if (bdat) {
		assert_int_equal(count_str(log, "\\r\\n.line "), 4000 / 7 + 1);
		assert_null(strstr(log, "\\r\\n..line "));
		assert_null(strstr(log, "\"bdat\": 1}"));
	} else {
		assert_int_equal(count_str(log, "\\r\\n..line "), 4000 / 7 + 1);
	}
	assert_int_equal(count_str(log, "\\r\\nline "), 4000 - (4000 / 7 + 1));
	assert_non_null(strstr(log, "line 03999 "));
	assert_non_null(strstr(log, "END-OF-MESSAGE\\r\\n\""));
	free(log);
	close(fd);
	base_free(base);
}

/*
 * Robustness matrix: at every step the peer answers with something odd (or
 * answers and hangs up). The delivery must end exactly once, quickly, with a
 * temporary or permanent result per recipient and never "delivered" unless the
 * end of data was acknowledged.
 */
static void test_odd_replies(void **state)
{
	static const char *const steps[] = { "banner", "ehlo", "mail", "rcpt", "data", "dot" };
	static const char *const replies[] = {
		"221 bye\\r\\n",          /* closing reply */
		"354 what\\r\\n",         /* wrong intermediate */
		"250\\r\\n",              /* bare code */
		"25",                     /* truncated, then silence or close */
		"250-more\\r\\n",         /* unfinished multiline */
		"\\r\\n",                 /* empty line */
		"hello there\\r\\n",      /* not a reply */
		"250 ok\\r\\n250 extra\\r\\n", /* an extra reply */
		"599 5.9.9 odd\\r\\n",    /* odd 5xx */
		"250 ok\\x00\\r\\n",      /* NUL */
	};
	enum { NSTEPS = 6, NREPLIES = 10, NRUNS = NSTEPS * NREPLIES * 2 };
	/* one receiver plays every scenario, one per connection, in order */
	static char specs[NRUNS][96];
	const char *args[2 * NRUNS + 1];
	size_t na = 0;
	for (int k = 0; k < NRUNS; k++) {
		int st = k / (NREPLIES * 2), rp = (k / 2) % NREPLIES, close_after = k % 2;
		snprintf(specs[k], sizeof(specs[k]), "#%d%s:%s=%s", k, close_after ? "!" : "", steps[st], replies[rp]);
		args[na++] = "--raw";
		args[na++] = specs[k];
	}
	args[na] = NULL;
	struct receiver r = { 0 };
	receiver_start(&r, "127.0.0.1", 0, args);
	struct event_base *base = event_base_new();
	struct smtp_client *cl = client_new(base, NULL, 150, 0); /* a stalled step costs its timeout */
	int fd = message_fd(msg_text);
	for (int k = 0; k < NRUNS; k++) {
		int st = k / (NREPLIES * 2), rp = (k / 2) % NREPLIES, close_after = k % 2;
		struct smtp_relay_host relay = { "127.0.0.1", (unsigned)r.port };
		struct smtp_destination dest = { .relays = &relay, .relay_count = 1 };
		struct smtp_envelope_rcpt rc[2] = { { .address = "a@dest.test" }, { .address = "b@dest.test" } };
		char qid[16];
		snprintf(qid, sizeof(qid), "run%d", k);
		struct smtp_envelope env = { .queue_id = qid, .sender = "s@client.test", .rcpts = rc, .rcpt_count = 2 };
		struct outcome o = { .base = base };
		smtp_deliver(cl, &env, fd, &dest, outcome_cb, &o);
		run_until_done(&o, 5000);
		assert_int_equal(o.calls, 1);
		/* a complete 250 lets the exchange go on; after a close only the end of data counts */
		bool full250 = strncmp(replies[rp], "250 ok\\r\\n", 10) == 0 || strcmp(replies[rp], "250\\r\\n") == 0;
		bool may_deliver = full250 && st != 0 && (!close_after || st == 5);
		for (size_t i = 0; i < 2; i++) {
			if (o.r[i].status == SMTP_RCPT_DELIVERED && !may_deliver)
				fail_msg("run %d step %s reply '%s' close %d: delivered? %d %s", k, steps[st], replies[rp],
				         close_after, o.r[i].code, o.r[i].text);
			assert_true(o.r[i].code >= 200 && o.r[i].code < 600);
		}
		if (o.elapsed > 4.0)
			fail_msg("step %s reply '%s': %.2f s", steps[st], replies[rp], o.elapsed);
		char *lg = receiver_log(&r);
		if (count_str(lg, "\"event\": \"connect\"") != k + 1)
			fail_msg("run %d: %d connections\n%s", k, count_str(lg, "\"event\": \"connect\""), lg);
		free(lg);
	}
	smtp_client_free(&cl);
	receiver_stop(&r);
	char *log = receiver_log(&r);
	assert_int_equal(count_str(log, "\"event\": \"connect\""), NRUNS);
	free(log);
	close(fd);
	base_free(base);
}

struct free_in_cb {
	struct smtp_client *cl;
	struct event_base *base;
	int calls;
};

static void free_client_cb(void *arg, const struct smtp_delivery_result *res)
{
	struct free_in_cb *f = arg;
	f->calls++;
	smtp_client_free(&f->cl);
	event_base_loopbreak(f->base);
}

static void test_free_client_in_callback(void **state)
{
	struct event_base *base = event_base_new();
	struct free_in_cb f = { .cl = client_new(base, NULL, 3000, 5000), .base = base };
	struct receiver r = { 0 };
	receiver_start(&r, "127.0.0.1", 0, NULL);
	struct smtp_relay_host relay = { "127.0.0.1", (unsigned)r.port };
	struct smtp_destination dest = { .relays = &relay, .relay_count = 1 };
	struct smtp_envelope_rcpt rc = { .address = "a@dest.test" };
	struct smtp_envelope env = { .sender = "s@client.test", .rcpts = &rc, .rcpt_count = 1 };
	int fd = message_fd(msg_text);
	smtp_deliver(f.cl, &env, fd, &dest, free_client_cb, &f);
	struct timeval tv = { 5, 0 };
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_int_equal(f.calls, 1);
	assert_null(f.cl);
	receiver_stop(&r);
	close(fd);
	base_free(base);
}

static void test_large_message(void **state)
{
	large_message(false);
	large_message(true);
}

static int setup(void **state)
{
	char cmd[512];
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mr-outbound-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", tmpdir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", tmpdir);
	snprintf(cmd, sizeof(cmd),
	         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
	         "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
	         "-keyout %s -out %s >/dev/null 2>&1",
	         key_path, cert_path);
	if (system(cmd) != 0)
		return -1;
	port = test_free_port();
	log_set_level(LOG_LEVEL_WARN);
	signal(SIGPIPE, SIG_IGN);
	return test_dns_server_start(&dns_server, dns_records);
}

static int teardown(void **state)
{
	char cmd[128];
	for (size_t i = 0; i < started_count; i++) {
		if (started[i] > 0) {
			kill(started[i], SIGTERM);
			waitpid(started[i], NULL, 0);
		}
	}
	test_dns_server_stop(&dns_server);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		return -1;
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_relay_cases),
		cmocka_unit_test(test_mx_cases),
		cmocka_unit_test(test_session_reuse),
		cmocka_unit_test(test_reuse_after_peer_closed),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_large_message),
		cmocka_unit_test(test_free_client_in_callback),
		cmocka_unit_test(test_odd_replies),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
