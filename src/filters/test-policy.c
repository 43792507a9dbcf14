/* dnsbl (against a real unbound serving a test zone), greylist (SQLite in memory), ratelimit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/dnsbl.h"
#include "filters/greylist.h"
#include "filters/ratelimit.h"
#include "lib-dns/dns_resolver.h"
#include "lib-dns/test-dns-server.h"

static void test_dnsbl_names(void **state)
{
	static const struct {
		const char *ip, *zone;
		int ret;
		const char *out;
	} cases[] = {
		{"192.0.2.1", "bl.test", 1, "1.2.0.192.bl.test"},
		{"127.0.0.2", "zen.spamhaus.org", 1, "2.0.0.127.zen.spamhaus.org"},
		{"2001:db8::1", "bl.test", 1,
		 "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test"},
		{"::ffff:1.2.3.4", "x", 1, "4.0.3.0.2.0.1.0.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.x"},
		{"1.2.3", "bl.test", -1, NULL},
		{"example.com", "bl.test", -1, NULL},
		{"", "bl.test", -1, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[300];
		int r = dnsbl_query_name(cases[i].ip, cases[i].zone, out, sizeof(out));
		assert_int_equal(r, cases[i].ret);
		if (r == 1)
			assert_string_equal(out, cases[i].out);
	}
	char out[300];
	assert_int_equal(dnsbl_rhs_query_name("Example.COM.", "dbl.test", out, sizeof(out)), 1);
	assert_string_equal(out, "Example.COM.dbl.test");
	assert_int_equal(dnsbl_rhs_query_name("", "dbl.test", out, sizeof(out)), -1);
	assert_int_equal(dnsbl_rhs_query_name("a b", "dbl.test", out, sizeof(out)), -1);
	char small[8];
	assert_int_equal(dnsbl_query_name("192.0.2.1", "bl.test", small, sizeof(small)), -1);

	static const struct {
		const char *a, *codes;
		bool counts;
	} answers[] = {
		{"127.0.0.2", NULL, true},         {"127.0.0.10", "", true},
		{"127.255.255.254", NULL, false},  {"127.255.255.252", NULL, false},
		{"10.0.0.2", NULL, false},         {"127.0.0.4", "127.0.0.2, 127.0.0.4", true},
		{"127.0.0.3", "127.0.0.2,127.0.0.4", false}, {"127.0.0.2", "127.0.0.20", false},
	};
	for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
		struct in_addr a;
		inet_pton(AF_INET, answers[i].a, &a);
		if (dnsbl_answer_counts(&a, answers[i].codes) != answers[i].counts)
			fail_msg("answer %s codes %s", answers[i].a, answers[i].codes ? answers[i].codes : "-");
	}
}

struct outcome {
	bool done;
	int score;
	bool listed;
	char hits[512];
	char first[64];
	unsigned tempfails;
};

static void dnsbl_cb(void *arg, const struct dnsbl_result *res)
{
	struct outcome *o = arg;
	o->done = true;
	o->score = res->score;
	o->listed = res->listed;
	o->tempfails = res->tempfail_zones;
	snprintf(o->hits, sizeof(o->hits), "%s", res->hits);
	snprintf(o->first, sizeof(o->first), "%s", res->first_zone ? res->first_zone : "");
}

static void test_dnsbl_unbound(void **state)
{
	static const char *const records[] = {
		"2.2.0.192.bl1.test. 300 IN A 127.0.0.2",
		"2.2.0.192.bl2.test. 300 IN A 127.0.0.4",
		"3.2.0.192.bl1.test. 300 IN A 127.255.255.254", /* an error code: ignored */
		"4.2.0.192.bl1.test. 300 IN A 127.0.0.3",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl1.test. 300 IN A 127.0.0.2",
		"2.2.0.192.allow.test. 300 IN A 127.0.0.2",
		"spammer.example.dbl.test. 300 IN A 127.0.1.2",
		NULL,
	};
	struct test_dns_server srv;
	if (test_dns_server_start(&srv, records) < 0)
		fail_msg("unbound did not start");
	struct event_base *base = event_base_new();
	char *error = NULL;
	const char *fwd[] = {srv.fwd};
	struct dns_resolver_settings dset = {.timeout_ms = 3000};
	struct dns_resolver *r = dns_resolver_new_with(base, fwd, 1, &dset, &error);
	assert_non_null(r);

	const struct dnsbl_zone zones[] = {
		{.zone = "bl1.test", .weight = 2},
		{.zone = "bl2.test", .weight = 1, .codes = "127.0.0.4"},
		{.zone = "allow.test", .weight = -5, .codes = "127.0.0.9"},
		{.zone = "dbl.test", .weight = 3, .rhsbl = true},
	};
	struct dnsbl_settings set = {.zones = zones, .zone_count = 4, .threshold = 3};
	static const struct {
		const char *ip, *domain;
		int score;
		bool listed;
		const char *hits;
	} cases[] = {
		{"192.0.2.2", NULL, 3, true, "bl1.test=127.0.0.2 bl2.test=127.0.0.4"},
		{"192.0.2.3", NULL, 0, false, ""},
		{"192.0.2.4", NULL, 2, false, "bl1.test=127.0.0.3"},
		{"192.0.2.5", "spammer.example", 3, true, "dbl.test=127.0.1.2"},
		{"192.0.2.5", "good.example", 0, false, ""},
		{"2001:db8::1", NULL, 2, false, "bl1.test=127.0.0.2"},
		{"not-an-ip", NULL, 0, false, ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct outcome o = {0};
		struct dnsbl_check *c = dnsbl_check_start(base, r, &set, cases[i].ip, cases[i].domain, dnsbl_cb, &o);
		assert_non_null(c);
		assert_false(o.done);
		while (!o.done)
			event_base_loop(base, EVLOOP_ONCE);
		if (o.score != cases[i].score)
			fail_msg("case %zu: score %d hits %s", i, o.score, o.hits);
		assert_int_equal(o.listed, cases[i].listed);
		assert_string_equal(o.hits, cases[i].hits);
		assert_int_equal(o.tempfails, 0);
	}
	/* cancel: no callback */
	struct outcome never = {0};
	struct dnsbl_check *c = dnsbl_check_start(base, r, &set, "192.0.2.2", NULL, dnsbl_cb, &never);
	dnsbl_check_cancel(&c);
	assert_null(c);
	struct timeval tv = {.tv_usec = 200000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_false(never.done);

	dns_resolver_free(&r);
	test_dns_server_stop(&srv);

	/* resolver pointing at nothing: tempfails, not listed */
	char dead[32];
	snprintf(dead, sizeof(dead), "127.0.0.1@%d", test_free_port());
	const char *fwd2[] = {dead};
	dset.timeout_ms = 500;
	r = dns_resolver_new_with(base, fwd2, 1, &dset, &error);
	assert_non_null(r);
	struct outcome o = {0};
	c = dnsbl_check_start(base, r, &set, "192.0.2.2", NULL, dnsbl_cb, &o);
	while (!o.done)
		event_base_loop(base, EVLOOP_ONCE);
	assert_false(o.listed);
	assert_int_equal(o.tempfails, 3);
	dns_resolver_free(&r);
	event_base_free(base);
}

static void test_greylist(void **state)
{
	sqlite3 *db;
	const char *error;
	assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
	assert_int_equal(greylist_init(db, &error), 0);
	assert_int_equal(greylist_init(db, &error), 0); /* idempotent */
	struct greylist_settings set = {.delay = 300, .retry_window = 3600, .pass_ttl = 86400};
	unsigned retry;
	static const struct {
		const char *ip, *from, *to;
		time_t t;
		enum greylist_verdict v;
		unsigned retry;
	} steps[] = {
		{"192.0.2.10", "a@x.test", "b@y.test", 1000, GREYLIST_DEFER, 300},   /* new */
		{"192.0.2.10", "a@x.test", "b@y.test", 1100, GREYLIST_DEFER, 200},   /* too early */
		{"192.0.2.10", "A@X.test", "c@y.test", 1100, GREYLIST_DEFER, 300},   /* other triplet */
		{"192.0.2.99", "a@x.test", "b@y.test", 1301, GREYLIST_PASS, 0},      /* same /24, after delay */
		{"192.0.2.10", "z@z.test", "q@y.test", 1302, GREYLIST_PASS, 0},      /* the network is pass-listed */
		{"192.0.3.10", "a@x.test", "b@y.test", 1302, GREYLIST_DEFER, 300},   /* another network */
		{"192.0.3.10", "a@x.test", "b@y.test", 9000, GREYLIST_DEFER, 300},   /* retried after the window */
		{"192.0.3.10", "a@x.test", "b@y.test", 9300, GREYLIST_PASS, 0},
		{"2001:db8:1:2::5", "", "b@y.test", 100, GREYLIST_DEFER, 300},       /* null sender, IPv6 */
		{"2001:db8:1:2:ffff::9", "", "b@y.test", 500, GREYLIST_PASS, 0},     /* same /64 */
		{"192.0.2.99", "a@x.test", "b@y.test", 1302 + 86400, GREYLIST_PASS, 0}, /* pass-list expired, triplet passed */
		{"192.0.2.10", "z@z.test", "q@y.test", 1302 + 86400, GREYLIST_DEFER, 300}, /* never seen as a triplet */
		{"bogus", "a", "b", 1, GREYLIST_ERROR, 0},
	};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		enum greylist_verdict v = greylist_check(db, &set, steps[i].ip, steps[i].from, steps[i].to, steps[i].t, &retry);
		if (v != steps[i].v)
			fail_msg("step %zu: verdict %d", i, v);
		assert_int_equal(retry, steps[i].retry);
	}
	/* expiry removes old pass entries and stale triplets */
	assert_true(greylist_expire(db, &set, 1302 + 3 * 86400) > 0);
	assert_int_equal(greylist_check(db, &set, "192.0.2.10", "new@x.test", "b@y.test", 1302 + 3 * 86400, &retry),
	                 GREYLIST_DEFER);
	char net[64];
	assert_int_equal(greylist_network("10.1.2.3", net, sizeof(net)), 1);
	assert_string_equal(net, "10.1.2.0/24");
	assert_int_equal(greylist_network("2001:db8:1:2:3:4:5:6", net, sizeof(net)), 1);
	assert_string_equal(net, "2001:db8:1:2::/64");
	sqlite3_close(db);
}

static void test_ratelimit(void **state)
{
	struct ratelimit *rl = ratelimit_new(3);
	unsigned retry = 0;
	/* 3 messages per 60 s */
	for (int i = 0; i < 3; i++)
		assert_int_equal(ratelimit_take(rl, "msg", "192.0.2.1", 3, 60, 1, 0.0, &retry), 1);
	assert_int_equal(ratelimit_take(rl, "msg", "192.0.2.1", 3, 60, 1, 0.0, &retry), 0);
	assert_int_equal(retry, 20);
	assert_int_equal(ratelimit_take(rl, "msg", "192.0.2.1", 3, 60, 1, 19.0, &retry), 0);
	assert_int_equal(retry, 1);
	assert_int_equal(ratelimit_take(rl, "msg", "192.0.2.1", 3, 60, 1, 20.0, &retry), 1);
	/* other keys and rules are separate */
	assert_int_equal(ratelimit_take(rl, "msg", "192.0.2.2", 3, 60, 1, 20.0, &retry), 1);
	assert_int_equal(ratelimit_take(rl, "rcpt", "192.0.2.1", 10, 60, 10, 20.0, &retry), 1);
	/* recipients: n at once, all or nothing */
	assert_int_equal(ratelimit_take(rl, "rcpt", "192.0.2.1", 10, 60, 5, 21.0, &retry), 0);
	assert_int_equal(retry, 29); /* 1/6 token after 1 s, refill 1 per 6 s: (5 - 1/6) * 6 = 29 s */
	assert_int_equal(ratelimit_take(rl, "x", "k", 0, 60, 1, 0, &retry), -1);
	assert_int_equal(ratelimit_take(rl, "x", "k", 2, 60, 3, 0, &retry), -1);
	/* at most 3 keys: the least recently used is forgotten */
	assert_int_equal(ratelimit_count(rl), 3);
	assert_int_equal(ratelimit_take(rl, "user", "alice", 1, 3600, 1, 30.0, &retry), 1);
	assert_int_equal(ratelimit_count(rl), 3);
	assert_int_equal(ratelimit_take(rl, "user", "alice", 1, 3600, 1, 31.0, &retry), 0);
	/* "msg 192.0.2.1" was the oldest: forgotten, so it starts full again */
	assert_int_equal(ratelimit_take(rl, "msg", "192.0.2.1", 3, 60, 3, 31.0, &retry), 1);
	ratelimit_free(&rl);
	assert_null(rl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dnsbl_names),
		cmocka_unit_test(test_dnsbl_unbound),
		cmocka_unit_test(test_greylist),
		cmocka_unit_test(test_ratelimit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
