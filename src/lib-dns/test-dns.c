#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib-dns/dns_resolver.h"
#include "lib-dns/test-dns-server.h"
#include "lib/xalloc.h"

/* ---------------- packet parser (no network) ---------------- */

/* Header + question "mx.test" MX, then one MX answer with a compressed name. */
static const uint8_t pkt_mx[] = {
	0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0,
	2, 'm', 'x', 4, 't', 'e', 's', 't', 0, 0, 15, 0, 1,
	0xc0, 12, 0, 15, 0, 1, 0, 0, 1, 0x2c, 0, 6, 0, 20, 1, 'B', 0xc0, 15,
	0xc0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 6, 0, 10, 1, 'a', 0xc0, 15,
};

static const uint8_t pkt_loop[] = {
	0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
	0xc0, 12, 0, 15, 0, 1,
};

static const uint8_t pkt_nullmx[] = {
	0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
	1, 'n', 4, 't', 'e', 's', 't', 0, 0, 15, 0, 1,
	0xc0, 12, 0, 15, 0, 1, 0, 0, 1, 0x2c, 0, 3, 0, 0, 0,
};

static const uint8_t pkt_nx[] = {
	0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 1, 0, 0,
	1, 'n', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1,
	0xc0, 14, 0, 6, 0, 1, 0, 0, 1, 0x2c, 0, 29,
	2, 'n', 's', 0xc0, 14, 1, 'h', 0xc0, 14, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 45,
};

static const uint8_t pkt_txt[] = {
	0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
	1, 't', 0, 0, 16, 0, 1,
	0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 10, 0, 9, 3, 'a', 'b', 'c', 4, 'd', 'e', 'f', 'g',
};

struct parse_case {
	const char *name;
	const uint8_t *pkt;
	size_t len;
	uint16_t qtype;
	int ret;
	enum dns_status status;
	size_t count;
	const char *first; /* first MX host / TXT */
	uint32_t ttl;
};

static void test_packet_table(void **state)
{
	static const struct parse_case cases[] = {
		{ .name = "mx", .pkt = pkt_mx, .len = sizeof(pkt_mx), .qtype = DNS_TYPE_MX, .ret = 1,
		  .status = DNS_OK, .count = 2, .first = "a.test", .ttl = 60 },
		{ .name = "loop", .pkt = pkt_loop, .len = sizeof(pkt_loop), .qtype = DNS_TYPE_MX, .ret = -1 },
		{ .name = "nullmx", .pkt = pkt_nullmx, .len = sizeof(pkt_nullmx), .qtype = DNS_TYPE_MX, .ret = 1,
		  .status = DNS_NULL_MX, .count = 0 },
		{ .name = "nx", .pkt = pkt_nx, .len = sizeof(pkt_nx), .qtype = DNS_TYPE_A, .ret = 1,
		  .status = DNS_NXDOMAIN, .count = 0, .ttl = 45 },
		{ .name = "txt", .pkt = pkt_txt, .len = sizeof(pkt_txt), .qtype = DNS_TYPE_TXT, .ret = 1,
		  .status = DNS_OK, .count = 1, .first = "abcdefg", .ttl = 10 },
		{ .name = "mx-as-a", .pkt = pkt_mx, .len = sizeof(pkt_mx), .qtype = DNS_TYPE_A, .ret = 1,
		  .status = DNS_NODATA, .count = 0 },
		{ .name = "short", .pkt = pkt_mx, .len = 5, .qtype = DNS_TYPE_MX, .ret = -1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct parse_case *c = &cases[i];
		struct dns_result res = { 0 };
		const char *err = NULL;
		int ret = dns_packet_parse(c->pkt, c->len, c->qtype, &res, &err);
		if (ret != c->ret)
			fail_msg("case %s: ret %d", c->name, ret);
		if (ret == 1) {
			assert_int_equal(res.status, c->status);
			assert_int_equal(res.count, c->count);
			if (c->first != NULL)
				assert_string_equal(c->qtype == DNS_TYPE_MX ? res.mx[0].host : res.txt[0], c->first);
			if (c->ttl != 0)
				assert_int_equal(res.ttl, c->ttl);
		} else {
			assert_non_null(err);
		}
		dns_result_clear(&res);
	}
}

/* Every truncation and every single-byte corruption of valid packets must parse or fail cleanly. */
static void test_packet_mutations(void **state)
{
	const uint8_t *pkts[] = { pkt_mx, pkt_nullmx, pkt_nx, pkt_txt };
	const size_t lens[] = { sizeof(pkt_mx), sizeof(pkt_nullmx), sizeof(pkt_nx), sizeof(pkt_txt) };
	int ok = 0, bad = 0;
	for (size_t p = 0; p < 4; p++) {
		uint8_t copy[128];
		for (size_t n = 0; n < lens[p]; n++) {
			struct dns_result res = { 0 };
			const char *err;
			if (dns_packet_parse(pkts[p], n, DNS_TYPE_MX, &res, &err) == 1)
				ok++;
			else
				bad++;
			dns_result_clear(&res);
		}
		for (size_t i = 0; i < lens[p]; i++) {
			for (unsigned v = 0; v < 256; v += 37) {
				struct dns_result res = { 0 };
				const char *err;
				memcpy(copy, pkts[p], lens[p]);
				copy[i] = (uint8_t)v;
				if (dns_packet_parse(copy, lens[p], p == 3 ? DNS_TYPE_TXT : DNS_TYPE_MX, &res, &err) == 1)
					ok++;
				else
					bad++;
				dns_result_clear(&res);
			}
		}
	}
	assert_true(bad > 0);
	assert_true(ok > 0);
}

static void test_forwarder_check(void **state)
{
	const char *err;
	assert_int_equal(dns_forwarder_check("127.0.0.1@5353", &err), 1);
	assert_int_equal(dns_forwarder_check("::1", &err), 1);
	assert_int_equal(dns_forwarder_check("127.0.0.1@", &err), -1);
	assert_int_equal(dns_forwarder_check("127.0.0.1@70000", &err), -1);
	assert_int_equal(dns_forwarder_check("localhost", &err), -1);
	char *error = NULL;
	struct event_base *base = event_base_new();
	const char *bad[] = { "nope@53" };
	assert_null(dns_resolver_new(base, bad, 1, &error));
	assert_non_null(error);
	free(error);
	event_base_free(base);
}

/* ---------------- against a real unbound ---------------- */

static struct test_dns_server server;

static const char *const records[] = {
	"mx.test. 300 IN MX 20 c.test.",
	"mx.test. 300 IN MX 10 a.test.",
	"mx.test. 300 IN MX 10 b.test.",
	"mx.test. 300 IN MX 30 d.test.",
	"a.test. 300 IN A 127.0.0.2",
	"a.test. 300 IN AAAA 2001:db8::25",
	"host.test. 300 IN A 127.0.0.3",
	"nullmx.test. 300 IN MX 0 .",
	"txt.test. 300 IN TXT \"v=spf1 \" \"ip4:127.0.0.1 -all\"",
	"_25._tcp.a.test. 300 IN TLSA 3 1 1 0123456789abcdef",
	"4.3.2.1.in-addr.arpa. 300 IN PTR host.test.",
	"xn--bcher-kva.test. 300 IN MX 5 mx.xn--bcher-kva.test.",
	NULL,
};

static int setup_server(void **state)
{
	return test_dns_server_start(&server, records);
}

static int teardown_server(void **state)
{
	test_dns_server_stop(&server);
	return 0;
}

struct waiter {
	struct event_base *base;
	int pending;
	struct dns_result *res[8];
	int n;
};

static void wait_cb(void *arg, const struct dns_result *res)
{
	struct waiter *w = arg;
	if (w->n < 8)
		w->res[w->n++] = dns_result_dup(res);
	if (--w->pending == 0)
		event_base_loopexit(w->base, NULL);
}

static void waiter_run(struct waiter *w)
{
	struct timeval tv = { 5, 0 };
	event_base_loopexit(w->base, &tv); /* safety net */
	event_base_dispatch(w->base);
	/* only the safety net can leave pending > 0 */
	assert_int_equal(w->pending, 0);
}

static void waiter_clear(struct waiter *w)
{
	for (int i = 0; i < w->n; i++)
		dns_result_free(&w->res[i]);
	w->n = 0;
}

static struct dns_resolver *new_resolver(struct event_base *base, bool cache)
{
	const char *fwd[] = { server.fwd };
	struct dns_resolver_settings set = { .timeout_ms = 3000, .cache_off = !cache, .cache_max = 4 };
	char *error = NULL;
	struct dns_resolver *r = dns_resolver_new_with(base, fwd, 1, &set, &error);
	if (r == NULL)
		fail_msg("%s", error);
	return r;
}

struct lookup_case {
	const char *name;
	uint16_t qtype;
	enum dns_status status;
	size_t count;
	const char *first;
	bool implicit;
};

static void check_first(const struct lookup_case *c, const struct dns_result *res)
{
	char ip[INET6_ADDRSTRLEN];
	const char *got = NULL;
	switch (c->qtype) {
	case DNS_TYPE_MX: got = res->mx[0].host; break;
	case DNS_TYPE_TXT:
	case DNS_TYPE_PTR: got = res->txt[0]; break;
	case DNS_TYPE_A: got = inet_ntop(AF_INET, &res->addr[0].u.v4, ip, sizeof(ip)); break;
	case DNS_TYPE_AAAA: got = inet_ntop(AF_INET6, &res->addr[0].u.v6, ip, sizeof(ip)); break;
	case DNS_TYPE_TLSA:
		assert_int_equal(res->tlsa[0].usage, 3);
		assert_int_equal(res->tlsa[0].data_len, 8);
		assert_int_equal(res->tlsa[0].data[0], 0x01);
		return;
	}
	if (got == NULL || strcmp(got, c->first) != 0)
		fail_msg("case %s/%u: first %s, expected %s", c->name, c->qtype, got ? got : "(null)", c->first);
}

static void test_lookups(void **state)
{
	static const struct lookup_case cases[] = {
		{ "mx.test", DNS_TYPE_MX, DNS_OK, 4, NULL, false },
		{ "host.test", DNS_TYPE_MX, DNS_OK, 1, "host.test", true },
		{ "Host.Test.", DNS_TYPE_MX, DNS_OK, 1, "host.test", true },
		{ "nullmx.test", DNS_TYPE_MX, DNS_NULL_MX, 0, NULL, false },
		{ "nonexistent.test", DNS_TYPE_MX, DNS_NXDOMAIN, 0, NULL, false },
		{ "nonexistent.test", DNS_TYPE_A, DNS_NXDOMAIN, 0, NULL, false },
		{ "a.test", DNS_TYPE_A, DNS_OK, 1, "127.0.0.2", false },
		{ "a.test", DNS_TYPE_AAAA, DNS_OK, 1, "2001:db8::25", false },
		{ "host.test", DNS_TYPE_AAAA, DNS_NODATA, 0, NULL, false },
		{ "txt.test", DNS_TYPE_TXT, DNS_OK, 1, "v=spf1 ip4:127.0.0.1 -all", false },
		{ "_25._tcp.a.test", DNS_TYPE_TLSA, DNS_OK, 1, "", false },
		{ "4.3.2.1.in-addr.arpa", DNS_TYPE_PTR, DNS_OK, 1, "host.test", false },
		{ "bad..name", DNS_TYPE_A, DNS_NXDOMAIN, 0, NULL, false },
		{ "b\xc3\xbc" "cher.test", DNS_TYPE_MX, DNS_OK, 1, "mx.xn--bcher-kva.test", false },
		{ "B\xc3\x9c" "CHER.test", DNS_TYPE_MX, DNS_OK, 1, "mx.xn--bcher-kva.test", false },
		{ "bad\xff.test", DNS_TYPE_A, DNS_NXDOMAIN, 0, NULL, false },
	};
	struct event_base *base = event_base_new();
	struct dns_resolver *r = new_resolver(base, true);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct lookup_case *c = &cases[i];
		struct waiter w = { .base = base, .pending = 1 };
		assert_non_null(dns_lookup(r, c->name, c->qtype, wait_cb, &w));
		/* never delivered synchronously */
		assert_int_equal(w.n, 0);
		waiter_run(&w);
		const struct dns_result *res = w.res[0];
		if (res->status != c->status || res->count != c->count)
			fail_msg("case %s/%u: status %s count %zu, expected %s %zu (%s)", c->name, c->qtype,
			         dns_status_name(res->status), res->count, dns_status_name(c->status), c->count,
			         res->error ? res->error : "");
		assert_int_equal(res->implicit_mx, c->implicit);
		if (c->first != NULL)
			check_first(c, res);
		waiter_clear(&w);
	}
	/* typed wrappers */
	struct waiter w = { .base = base, .pending = 6 };
	dns_lookup_mx(r, "mx.test", wait_cb, &w);
	dns_lookup_a(r, "a.test", wait_cb, &w);
	dns_lookup_aaaa(r, "a.test", wait_cb, &w);
	dns_lookup_txt(r, "txt.test", wait_cb, &w);
	dns_lookup_tlsa(r, "a.test", 25, wait_cb, &w);
	assert_non_null(dns_lookup_ptr(r, "1.2.3.4", wait_cb, &w));
	assert_null(dns_lookup_ptr(r, "not-an-ip", wait_cb, &w));
	waiter_run(&w);
	for (int i = 0; i < w.n; i++)
		assert_int_equal(w.res[i]->status, DNS_OK);
	waiter_clear(&w);
	dns_resolver_free(&r);
	event_base_free(base);
}

static void test_mx_order_shuffle(void **state)
{
	struct event_base *base = event_base_new();
	struct dns_resolver *r = new_resolver(base, true);
	int a_first = 0, b_first = 0;

	for (int i = 0; i < 40; i++) {
		struct waiter w = { .base = base, .pending = 1 };
		dns_lookup_mx(r, "mx.test", wait_cb, &w);
		waiter_run(&w);
		const struct dns_result *res = w.res[0];
		assert_int_equal(res->status, DNS_OK);
		assert_int_equal(res->count, 4);
		assert_int_equal(res->mx[0].pref, 10);
		assert_int_equal(res->mx[1].pref, 10);
		assert_string_equal(res->mx[2].host, "c.test");
		assert_int_equal(res->mx[2].pref, 20);
		assert_string_equal(res->mx[3].host, "d.test");
		if (strcmp(res->mx[0].host, "a.test") == 0)
			a_first++;
		else if (strcmp(res->mx[0].host, "b.test") == 0)
			b_first++;
		waiter_clear(&w);
	}
	/* equal preferences are shuffled on every delivery, cached or not */
	assert_int_equal(a_first + b_first, 40);
	assert_true(a_first > 0);
	assert_true(b_first > 0);
	assert_true(dns_resolver_cache_hits(r) >= 39);
	dns_resolver_free(&r);
	event_base_free(base);
}

static void test_cache_cap_and_cancel(void **state)
{
	struct event_base *base = event_base_new();
	struct dns_resolver *r = new_resolver(base, true); /* cache_max 4 */
	const char *names[] = { "a.test", "host.test", "mx.test", "txt.test", "nullmx.test", "b.test" };
	struct waiter w = { .base = base, .pending = 6 };
	for (size_t i = 0; i < 6; i++)
		dns_lookup_a(r, names[i], wait_cb, &w);
	waiter_run(&w);
	waiter_clear(&w);
	assert_true(dns_resolver_cache_count(r) <= 4);
	assert_true(dns_resolver_cache_count(r) >= 1);

	/* a cancelled query never calls back, neither from the network nor from the cache */
	struct waiter never = { .base = base, .pending = 1 };
	struct dns_query *q1 = dns_lookup_a(r, "uncached.test", wait_cb, &never);
	struct dns_query *q2 = dns_lookup_a(r, "b.test", wait_cb, &never);
	dns_query_cancel(&q1);
	dns_query_cancel(&q2);
	assert_null(q1);
	struct waiter w2 = { .base = base, .pending = 1 };
	dns_lookup_a(r, "uncached2.test", wait_cb, &w2);
	waiter_run(&w2);
	waiter_clear(&w2);
	assert_int_equal(never.n, 0);
	/* free with a pending query: no callback, no leak */
	dns_lookup_a(r, "pending.test", wait_cb, &never);
	dns_resolver_free(&r);
	assert_int_equal(never.n, 0);
	event_base_free(base);
}

static void test_timeout(void **state)
{
	/* a forwarder that swallows queries, and one where nothing listens */
	int sink = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	assert_int_equal(bind(sink, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(sink, (struct sockaddr *)&sin, &len), 0);
	char fwd_sink[40], fwd_closed[40];
	snprintf(fwd_sink, sizeof(fwd_sink), "127.0.0.1@%u", ntohs(sin.sin_port));
	snprintf(fwd_closed, sizeof(fwd_closed), "127.0.0.1@%d", test_free_port());

	const char *fwds[2] = { fwd_sink, fwd_closed };
	for (int i = 0; i < 2; i++) {
		struct event_base *base = event_base_new();
		struct dns_resolver_settings set = { .timeout_ms = 700 };
		char *error = NULL;
		struct dns_resolver *r = dns_resolver_new_with(base, &fwds[i], 1, &set, &error);
		assert_non_null(r);
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		struct waiter w = { .base = base, .pending = 1 };
		dns_lookup_mx(r, "mx.test", wait_cb, &w);
		waiter_run(&w);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		assert_int_equal(w.res[0]->status, DNS_TEMPFAIL);
		double elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		if (elapsed > 3.0) /* 0.7 s timeout; generous for loaded CI machines */
			fail_msg("tempfail after %.2f s", elapsed);
		waiter_clear(&w);
		dns_resolver_free(&r);
		event_base_free(base);
	}
	close(sink);
}

static void test_sync(void **state)
{
	const char *fwd[] = { server.fwd };
	char *error = NULL;
	struct dns_sync *s = dns_sync_new(fwd, 1, 2000, &error);
	assert_non_null(s);
	struct dns_result *res = dns_sync_lookup(s, "mx.test", DNS_TYPE_MX);
	assert_int_equal(res->status, DNS_OK);
	assert_int_equal(res->count, 4);
	dns_result_free(&res);
	res = dns_sync_lookup(s, "nonexistent.test", DNS_TYPE_TXT);
	assert_int_equal(res->status, DNS_NXDOMAIN);
	dns_result_free(&res);
	res = dns_sync_lookup(s, "txt.test", DNS_TYPE_TXT);
	assert_string_equal(res->txt[0], "v=spf1 ip4:127.0.0.1 -all");
	dns_result_free(&res);
	dns_sync_free(&s);
}

int main(void)
{
	const struct CMUnitTest offline[] = {
		cmocka_unit_test(test_packet_table),
		cmocka_unit_test(test_packet_mutations),
		cmocka_unit_test(test_forwarder_check),
		cmocka_unit_test(test_timeout),
	};
	const struct CMUnitTest live[] = {
		cmocka_unit_test(test_lookups),
		cmocka_unit_test(test_mx_order_shuffle),
		cmocka_unit_test(test_cache_cap_and_cancel),
		cmocka_unit_test(test_sync),
	};
	int failed = cmocka_run_group_tests_name("dns-offline", offline, NULL, NULL);
	failed += cmocka_run_group_tests_name("dns-unbound", live, setup_server, teardown_server);
	return failed;
}
