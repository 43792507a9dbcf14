/* dns_authdns against a real unbound: the authdns contract (status mapping, raw MX, caps). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "lib-dns/dns_authdns.h"
#include "lib-dns/test-dns-server.h"

static struct test_dns_server server;

static const char *const records[] = {
	"spf.test. 300 IN TXT \"v=spf1 \" \"mx -all\"",
	"spf.test. 300 IN MX 10 mx.spf.test.",
	"mx.spf.test. 300 IN A 127.0.0.5",
	"mx.spf.test. 300 IN AAAA 2001:db8::5",
	"noemx.test. 300 IN A 127.0.0.6",
	"nullmx.test. 300 IN MX 0 .",
	"4.3.2.1.in-addr.arpa. 300 IN PTR mx.spf.test.",
	NULL,
};

struct case_ {
	const char *name;
	int which; /* 0 txt 1 a 2 aaaa 3 mx 4 ptr */
	enum authdns_status st;
	size_t count;
	const char *data;
	size_t len;
	uint16_t pref;
};

static void test_authdns(void **state)
{
	static const struct case_ cases[] = {
		{ "spf.test", 0, AUTHDNS_OK, 1, "v=spf1 mx -all", 14, 0 },
		{ "spf.test", 3, AUTHDNS_OK, 1, "mx.spf.test", 11, 10 },
		{ "mx.spf.test", 1, AUTHDNS_OK, 1, "\x7f\x00\x00\x05", 4, 0 },
		{ "mx.spf.test", 2, AUTHDNS_OK, 1, NULL, 16, 0 },
		{ "noemx.test", 3, AUTHDNS_NODATA, 0, NULL, 0, 0 },  /* no implicit MX for SPF */
		{ "nullmx.test", 3, AUTHDNS_NODATA, 0, NULL, 0, 0 },
		{ "missing.test", 0, AUTHDNS_NXDOMAIN, 0, NULL, 0, 0 },
		{ "noemx.test", 0, AUTHDNS_NODATA, 0, NULL, 0, 0 },
		{ "4.3.2.1.in-addr.arpa", 4, AUTHDNS_OK, 1, "mx.spf.test", 11, 0 },
	};
	const char *fwd[] = { server.fwd };
	char *error = NULL;
	struct dns_sync *s = dns_sync_new(fwd, 1, 2000, &error);
	assert_non_null(s);
	struct authdns dns;
	dns_authdns_init(&dns, s);
	authdns_lookup_fn *fns[] = { dns.txt, dns.a, dns.aaaa, dns.mx, dns.ptr };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct case_ *c = &cases[i];
		struct authdns_answer ans;
		authdns_answer_init(&ans);
		enum authdns_status st = authdns_query(&dns, fns[c->which], c->name, &ans);
		if (st != c->st || ans.count != c->count)
			fail_msg("case %s/%d: %s count %zu", c->name, c->which, authdns_status_name(st), ans.count);
		if (c->count > 0) {
			assert_int_equal(ans.rr[0].len, c->len);
			if (c->data != NULL)
				assert_memory_equal(ans.rr[0].data, c->data, c->len);
			assert_int_equal(ans.rr[0].pref, c->pref);
			assert_true(ans.ttl > 0 && ans.ttl <= 300);
		}
		authdns_answer_clear(&ans);
	}
	dns_sync_free(&s);
}

static int setup(void **state) { return test_dns_server_start(&server, records); }
static int teardown(void **state)
{
	test_dns_server_stop(&server);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_authdns) };
	return cmocka_run_group_tests(tests, setup, teardown);
}
