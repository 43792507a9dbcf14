/* test-spf: macro expansion (RFC 7208 7.4 examples), record syntax and the
   processing limits (lookup loops, void lookups, macro bombs, oversized TXT). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib-auth/spf.h"
#include "lib-auth/testzone.h"
#include "lib/buf.h"
#include "lib/xalloc.h"

struct macro_case {
	const char *in;
	const char *ip;
	bool exp;
	const char *out; /* NULL = syntax error */
};

static const struct macro_case macro_cases[] = {
	/* RFC 7208 7.4, sender strong-bad@email.example.com, ip 192.0.2.3 */
	{ .in = "%{s}", .ip = "192.0.2.3", .out = "strong-bad@email.example.com" },
	{ .in = "%{o}", .ip = "192.0.2.3", .out = "email.example.com" },
	{ .in = "%{d}", .ip = "192.0.2.3", .out = "email.example.com" },
	{ .in = "%{d4}", .ip = "192.0.2.3", .out = "email.example.com" },
	{ .in = "%{d3}", .ip = "192.0.2.3", .out = "email.example.com" },
	{ .in = "%{d2}", .ip = "192.0.2.3", .out = "example.com" },
	{ .in = "%{d1}", .ip = "192.0.2.3", .out = "com" },
	{ .in = "%{dr}", .ip = "192.0.2.3", .out = "com.example.email" },
	{ .in = "%{d2r}", .ip = "192.0.2.3", .out = "example.email" },
	{ .in = "%{l}", .ip = "192.0.2.3", .out = "strong-bad" },
	{ .in = "%{l-}", .ip = "192.0.2.3", .out = "strong.bad" },
	{ .in = "%{lr}", .ip = "192.0.2.3", .out = "strong-bad" },
	{ .in = "%{lr-}", .ip = "192.0.2.3", .out = "bad.strong" },
	{ .in = "%{l1r-}", .ip = "192.0.2.3", .out = "strong" },
	{ .in = "%{ir}.%{v}._spf.%{d2}", .ip = "192.0.2.3", .out = "3.2.0.192.in-addr._spf.example.com" },
	{ .in = "%{lr-}.lp._spf.%{d2}", .ip = "192.0.2.3", .out = "bad.strong.lp._spf.example.com" },
	{ .in = "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", .ip = "192.0.2.3",
	  .out = "bad.strong.lp.3.2.0.192.in-addr._spf.example.com" },
	{ .in = "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", .ip = "192.0.2.3",
	  .out = "3.2.0.192.in-addr.strong.lp._spf.example.com" },
	{ .in = "%{d2}.trusted-domains.example.net", .ip = "192.0.2.3",
	  .out = "example.com.trusted-domains.example.net" },
	{ .in = "%{ir}.%{v}._spf.%{d2}", .ip = "2001:db8::cb01",
	  .out = "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com" },
	{ .in = "%%%_%-", .ip = "192.0.2.3", .out = "% %20" },
	{ .in = "%{L}", .ip = "192.0.2.3", .out = "strong-bad" },
	{ .in = "%{S}", .ip = "192.0.2.3", .out = "strong-bad%40email.example.com" },
	{ .in = "%{c}", .ip = "2001:db8::cb01", .exp = true, .out = "2001:db8::cb01" },
	{ .in = "%{r} %{c}", .ip = "192.0.2.3", .exp = true, .out = "unknown 192.0.2.3" },
	{ .in = "%{c}", .ip = "192.0.2.3", .out = NULL },   /* c only in exp */
	{ .in = "%{x}", .ip = "192.0.2.3", .out = NULL },
	{ .in = "%{d0}", .ip = "192.0.2.3", .out = NULL },
	{ .in = "%{d", .ip = "192.0.2.3", .out = NULL },
	{ .in = "%a", .ip = "192.0.2.3", .out = NULL },
	{ .in = "50%", .ip = "192.0.2.3", .out = NULL },
	{ .in = "a b", .ip = "192.0.2.3", .out = NULL },
	{ .in = "%{d999999999999999}", .ip = "192.0.2.3", .out = "email.example.com" },
};

static void test_macros(void **state)
{
	for (size_t i = 0; i < sizeof(macro_cases) / sizeof(macro_cases[0]); i++) {
		const struct macro_case *c = &macro_cases[i];
		struct spf_ip ip;
		assert_int_equal(spf_ip_parse(c->ip, &ip), 1);
		char *out = NULL;
		int r = spf_macro_expand(c->in, c->exp, &ip, "strong-bad@email.example.com",
					 "email.example.com", "mx.example.org", NULL, &out);
		if (c->out == NULL) {
			if (r != -1)
				fail_msg("case %zu %s: expected error, got %s", i, c->in, out);
		} else {
			if (r != 1 || strcmp(out, c->out) != 0)
				fail_msg("case %zu %s: got %s want %s", i, c->in, out ? out : "(err)", c->out);
		}
		free(out);
	}
}

static void test_macro_bomb(void **state)
{
	/* every %{s} doubles nothing but a long string of them must stop at the cap */
	char in[4000];
	size_t o = 0;
	while (o + 4 < sizeof(in)) {
		memcpy(in + o, "%{s}", 4);
		o += 4;
	}
	in[o] = '\0';
	struct spf_ip ip;
	spf_ip_parse("192.0.2.3", &ip);
	char *out = NULL;
	assert_int_equal(spf_macro_expand(in, false, &ip, "a@b.example", "b.example", "h", NULL, &out), -1);
	assert_null(out);
}

struct record_case {
	const char *rec;
	bool ok;
};

static const struct record_case record_cases[] = {
	{ "v=spf1", true },
	{ "v=spf1 -all", true },
	{ "v=spf1 a mx ptr ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all", true },
	{ "v=spf1 a/24//64 mx:example.com//0 -all", true },
	{ "v=spf1 include:_spf.example.com exists:%{ir}.bl.example.com ?all", true },
	{ "v=spf1 redirect=_spf.example.com", true },
	{ "v=spf1 foo=bar -all", true },
	{ "v=spf1 ip4:192.0.2.0/33", false },
	{ "v=spf1 ip4:192.0.2.0/024", false },
	{ "v=spf1 ip4:192.0.02.1", false },
	{ "v=spf1 ip6:::1/129", false },
	{ "v=spf1 a:example.com/", false },
	{ "v=spf1 include", false },
	{ "v=spf1 all:x", false },
	{ "v=spf1 frob", false },
	{ "v=spf1 redirect=a.example.com redirect=b.example.com", false },
	{ "v=spf1 exp=", false },
	{ "v=spf1 a:museum", false },
	{ "v=spf1 a:foo.123", false },
	{ "v=spf1 -all\r", false },
};

static void test_records(void **state)
{
	for (size_t i = 0; i < sizeof(record_cases) / sizeof(record_cases[0]); i++) {
		const char *err = NULL;
		int r = spf_record_check(record_cases[i].rec, &err);
		if ((r == 1) != record_cases[i].ok)
			fail_msg("record %zu '%s': got %d (%s)", i, record_cases[i].rec, r, err ? err : "");
	}
}

/* trickle: every prefix of valid records is checked without crashing, and
   the full records stay valid */
static void test_record_prefixes(void **state)
{
	for (size_t i = 0; i < sizeof(record_cases) / sizeof(record_cases[0]); i++) {
		const char *rec = record_cases[i].rec;
		for (size_t n = 0; n <= strlen(rec); n++) {
			char *p = xstrndup(rec, n);
			const char *err;
			int r = spf_record_check(p, &err);
			assert_true(r == 1 || r == -1);
			free(p);
		}
	}
}

static enum spf_result eval(struct testzone *z, const char *ipstr, const char *mailfrom,
			    struct spf_outcome *out)
{
	struct authdns dns;
	struct spf_ip ip;
	testzone_authdns(z, &dns);
	assert_int_equal(spf_ip_parse(ipstr, &ip), 1);
	return spf_check_mailfrom(&ip, mailfrom, "helo.example.org", &dns, NULL, out);
}

static void add_txt(struct testzone *z, const char *name, const char *txt)
{
	testzone_add(z, name, "TXT", txt, strlen(txt), 0);
}

static void test_limits(void **state)
{
	struct testzone *z = testzone_new();
	struct spf_outcome out;
	/* include loop: stops at the 10-lookup limit */
	add_txt(z, "loop.example.com", "v=spf1 include:loop.example.com -all");
	assert_int_equal(eval(z, "192.0.2.1", "a@loop.example.com", &out), SPF_RESULT_PERMERROR);
	assert_true(out.dns_mechanisms > 10);
	spf_outcome_free(&out);
	/* redirect loop */
	add_txt(z, "r1.example.com", "v=spf1 redirect=r2.example.com");
	add_txt(z, "r2.example.com", "v=spf1 redirect=r1.example.com");
	assert_int_equal(eval(z, "192.0.2.1", "a@r1.example.com", &out), SPF_RESULT_PERMERROR);
	spf_outcome_free(&out);
	/* three void lookups */
	add_txt(z, "void.example.com", "v=spf1 a:n1.example.com a:n2.example.com a:n3.example.com -all");
	assert_int_equal(eval(z, "192.0.2.1", "a@void.example.com", &out), SPF_RESULT_PERMERROR);
	assert_int_equal(out.void_lookups, 3);
	spf_outcome_free(&out);
	/* two are fine */
	add_txt(z, "void2.example.com", "v=spf1 a:n1.example.com a:n2.example.com -all");
	assert_int_equal(eval(z, "192.0.2.1", "a@void2.example.com", &out), SPF_RESULT_FAIL);
	assert_string_equal(out.mechanism, "-all");
	spf_outcome_free(&out);
	/* oversized TXT answer is refused by the zone (cap) -> permerror, never a crash */
	char *big = xmalloc(AUTHDNS_MAX_TXT + 100);
	memcpy(big, "v=spf1 ", 7);
	memset(big + 7, 'a', AUTHDNS_MAX_TXT + 92);
	big[AUTHDNS_MAX_TXT + 99] = '\0';
	add_txt(z, "big.example.com", big);
	free(big);
	assert_int_equal(eval(z, "192.0.2.1", "a@big.example.com", &out), SPF_RESULT_PERMERROR);
	spf_outcome_free(&out);
	/* pass with explanation absent, mechanism reported */
	add_txt(z, "ok.example.com", "v=spf1 ip4:192.0.2.0/24 -all exp=why.example.com");
	add_txt(z, "why.example.com", "%{i} is not one of %{d}'s designated mail servers.");
	assert_int_equal(eval(z, "192.0.2.9", "a@ok.example.com", &out), SPF_RESULT_PASS);
	assert_string_equal(out.mechanism, "ip4:192.0.2.0/24");
	assert_null(out.explanation);
	spf_outcome_free(&out);
	assert_int_equal(eval(z, "198.51.100.1", "a@ok.example.com", &out), SPF_RESULT_FAIL);
	assert_string_equal(out.explanation, "198.51.100.1 is not one of ok.example.com's designated mail servers.");
	spf_outcome_free(&out);
	/* %{p} in many macros: resolved once, total queries capped */
	struct buf pb;
	buf_init(&pb, 4096);
	buf_append_str(&pb, "v=spf1");
	for (int i = 0; i < 2; i++) /* two void lookups are allowed */
		buf_append_str(&pb, " exists:%{p}.%{p}.%{p}.%{p}.%{p}.%{p}.%{p}.%{p}.%{p}.%{p}.x.example.com");
	buf_append_str(&pb, " -all");
	add_txt(z, "pbomb.example.com", pb.data);
	buf_deinit(&pb);
	for (int i = 0; i < 12; i++) {
		char n[64];
		snprintf(n, sizeof(n), "p%d.example.com", i);
		testzone_add(z, "1.2.0.192.in-addr.arpa", "PTR", n, strlen(n), 0);
		testzone_add(z, n, "A", "192.0.2.1", 9, 0);
	}
	size_t q0 = testzone_queries(z);
	assert_int_equal(eval(z, "192.0.2.1", "a@pbomb.example.com", &out), SPF_RESULT_FAIL);
	assert_true(testzone_queries(z) - q0 < 40);
	spf_outcome_free(&out);
	/* HELO identity */
	struct authdns dns;
	struct spf_ip ip;
	testzone_authdns(z, &dns);
	spf_ip_parse("192.0.2.77", &ip);
	assert_int_equal(spf_check_helo(&ip, "ok.example.com", &dns, NULL, &out), SPF_RESULT_PASS);
	spf_outcome_free(&out);
	testzone_free(&z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_macros),
		cmocka_unit_test(test_macro_bomb),
		cmocka_unit_test(test_records),
		cmocka_unit_test(test_record_prefixes),
		cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
