#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "lib-smtp/smtp_address.h"
#include "test-smtp-common.h"

#define NUL_OK SMTP_ADDRESS_ALLOW_NULL
#define UTF8 SMTP_ADDRESS_ALLOW_UTF8
#define PM SMTP_ADDRESS_ALLOW_POSTMASTER

/*
 * expect: "ERR 501 5.1.3" for an error, else "L=<local> D=<domain> F=<flags> S=<format>"
 * with flags as letters: N null, Q quoted, L literal, U utf8, R route dropped, P postmaster.
 */
struct addr_case {
	const char *in;
	size_t in_len;
	unsigned flags;
	const char *expect;
};

static const struct addr_case addr_cases[] = {
	/* plain */
	{ .in = "<user@example.test>", .expect = "L=user D=example.test F= S=user@example.test" },
	{ .in = "<USER@EXAMPLE.TEST>", .expect = "L=USER D=example.test F= S=USER@example.test" },
	{ .in = "<first.last+tag@sub.example.test>",
	  .expect = "L=first.last+tag D=sub.example.test F= S=first.last+tag@sub.example.test" },
	{ .in = "<a!#$%&'*+-/=?^_`{|}~@x.test>",
	  .expect = "L=a!#$%&'*+-/=?^_`{|}~ D=x.test F= S=a!#$%&'*+-/=?^_`{|}~@x.test" },
	{ .in = "<u@xn--bcher-kva.test>", .expect = "L=u D=xn--bcher-kva.test F= S=u@xn--bcher-kva.test" },
	{ .in = "<u@a-b.c1>", .expect = "L=u D=a-b.c1 F= S=u@a-b.c1" },
	{ .in = "<u@localhost>", .expect = "L=u D=localhost F= S=u@localhost" },
	/* null path and postmaster */
	{ .in = "<>", .flags = NUL_OK, .expect = "L= D= F=N S=" },
	{ .in = "<>", .expect = "ERR 501 5.1.3" },
	{ .in = "<Postmaster>", .flags = PM, .expect = "L=Postmaster D= F=P S=Postmaster" },
	{ .in = "<postmaster>", .expect = "ERR 501 5.1.3" },
	{ .in = "<\"postmaster\">", .flags = PM, .expect = "ERR 501 5.1.3" },
	{ .in = "<user>", .flags = PM, .expect = "ERR 501 5.1.3" },
	/* relay tricks: source routes are dropped */
	{ .in = "<@a:b@c.test>", .expect = "L=b D=c.test F=R S=b@c.test" },
	{ .in = "<@a.test,@b.test:user@c.test>", .expect = "L=user D=c.test F=R S=user@c.test" },
	{ .in = "<@[192.0.2.1],@[IPv6:::1]:user@c.test>", .expect = "L=user D=c.test F=R S=user@c.test" },
	{ .in = "<@a:@b:user@c.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<@a,b:user@c.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<@:user@c.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<@a:>", .expect = "ERR 501 5.1.3" },
	{ .in = "<@-a:u@c.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<@a.test>", .expect = "ERR 501 5.1.3" },
	/* relay tricks: % and ! are plain characters, quoted @ stays in the local part */
	{ .in = "<user%evil.com@example.test>",
	  .expect = "L=user%evil.com D=example.test F= S=user%evil.com@example.test" },
	{ .in = "<evil.com!user@example.test>",
	  .expect = "L=evil.com!user D=example.test F= S=evil.com!user@example.test" },
	{ .in = "<\"user@evil.com\"@example.test>",
	  .expect = "L=user@evil.com D=example.test F=Q S=\"user@evil.com\"@example.test" },
	{ .in = "<\"user%evil.com\"@example.test>",
	  .expect = "L=user%evil.com D=example.test F=Q S=user%evil.com@example.test" },
	{ .in = "<\"a\\\"b\\\\c\"@x.test>", .expect = "L=a\"b\\x5cc D=x.test F=Q S=\"a\\x5c\"b\\x5c\\x5cc\"@x.test" },
	{ .in = "<\"a b\"@x.test>", .expect = "L=a b D=x.test F=Q S=\"a b\"@x.test" },
	{ .in = "<\"\\a\"@x.test>", .expect = "L=a D=x.test F=Q S=a@x.test" },
	{ .in = "<\"a..b\"@x.test>", .expect = "L=a..b D=x.test F=Q S=\"a..b\"@x.test" },
	{ .in = "<\"\"@x.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<\"a\"b@x.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<\"ab@x.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<\"a\tb\"@x.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<\"a\\\tb\"@x.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<\"a\0b\"@x.test>", .in_len = 14, .expect = "ERR 501 5.1.3" },
	{ .in = "<user@evil.com@example.test>", .expect = "ERR 501 5.1.3" },
	/* domains */
	{ .in = "<user@evil.com.>", .expect = "L=user D=evil.com F= S=user@evil.com" },
	{ .in = "<user@evil.com..>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@.>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@-bad.com>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@bad-.com>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@a..b>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@.a.b>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@a_b.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@a b.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@10.0.0.1>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@a.123>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@123.a>", .expect = "L=user D=123.a F= S=user@123.a" },
	{ .in = "<user@0123456789012345678901234567890123456789012345678901234567890123.test>",
	  .expect = "ERR 501 5.1.3" },
	{ .in = "<user@012345678901234567890123456789012345678901234567890123456789012.test>",
	  .expect = "L=user D=012345678901234567890123456789012345678901234567890123456789012.test F= "
		    "S=user@012345678901234567890123456789012345678901234567890123456789012.test" },
	/* address literals */
	{ .in = "<user@[127.0.0.1]>", .expect = "L=user D=[127.0.0.1] F=L S=user@[127.0.0.1]" },
	{ .in = "<user@[IPv6:2001:DB8:0:0::1]>", .expect = "L=user D=[IPv6:2001:db8::1] F=L S=user@[IPv6:2001:db8::1]" },
	{ .in = "<user@[ipv6:::ffff:127.0.0.1]>", .expect = "L=user D=[IPv6:::ffff:127.0.0.1] F=L S=user@[IPv6:::ffff:127.0.0.1]" },
	{ .in = "<user@[127.0.0.01]>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@[127.1]>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@[256.0.0.1]>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@[::1]>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@[IPv6:1.2.3.4]>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@[x400:foo]>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@[]>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@[127.0.0.1>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@[127.0.0.1].x>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@[ 127.0.0.1]>", .expect = "ERR 501 5.1.3" },
	/* local part syntax */
	{ .in = "<.user@x.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user.@x.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<us..er@x.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<us er@x.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<us(er@x.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<us\\er@x.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<@x.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<u\0@x.test>", .in_len = 10, .expect = "ERR 501 5.1.3" },
	{ .in = "<0123456789012345678901234567890123456789012345678901234567890123@x.test>",
	  .expect = "L=0123456789012345678901234567890123456789012345678901234567890123 D=x.test F= "
		    "S=0123456789012345678901234567890123456789012345678901234567890123@x.test" },
	{ .in = "<01234567890123456789012345678901234567890123456789012345678901234@x.test>",
	  .expect = "ERR 501 5.1.3" },
	{ .in = "<\"0123456789012345678901234567890123456789012345678901234567890123\"@x.test>",
	  .expect = "ERR 501 5.1.3" },
	/* brackets */
	{ .in = "user@example.test", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@example.test", .expect = "ERR 501 5.1.3" },
	{ .in = "user@example.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<<user@example.test>>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@example.test>>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user<@example.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "< user@example.test>", .expect = "ERR 501 5.1.3" },
	{ .in = "<user@example.test >", .expect = "ERR 501 5.1.3" },
	{ .in = "<", .expect = "ERR 501 5.1.3" },
	{ .in = "", .in_len = 0, .expect = "ERR 501 5.1.3" },
	/* 8-bit */
	{ .in = "<j\xc3\xb6rg@example.test>", .expect = "ERR 553 5.6.7" },
	{ .in = "<user@\xc3\xa9xample.test>", .expect = "ERR 553 5.6.7" },
	{ .in = "<j\xc3\xb6rg@\xc3\x89XAMPLE.test>", .flags = UTF8,
	  .expect = "L=j\\xc3\\xb6rg D=\\xc3\\x89xample.test F=U S=j\\xc3\\xb6rg@\\xc3\\x89xample.test" },
	{ .in = "<\"j\xc3\xb6 rg\"@x.test>", .flags = UTF8,
	  .expect = "L=j\\xc3\\xb6 rg D=x.test F=QU S=\"j\\xc3\\xb6 rg\"@x.test" },
	{ .in = "<@\xc3\xa9.test:u@x.test>", .flags = UTF8, .expect = "L=u D=x.test F=R S=u@x.test" },
	{ .in = "<j\xc3@x.test>", .flags = UTF8, .expect = "ERR 501 5.1.3" },
	{ .in = "<j\xc0\xaf@x.test>", .flags = UTF8, .expect = "ERR 501 5.1.3" },
	{ .in = "<j\xed\xa0\x80@x.test>", .flags = UTF8, .expect = "ERR 501 5.1.3" },
	{ .in = "<j\xf4\x90\x80\x80@x.test>", .flags = UTF8, .expect = "ERR 501 5.1.3" },
	{ .in = "<j\xff@x.test>", .flags = UTF8, .expect = "ERR 501 5.1.3" },
	{ .in = "<\"a\\\xc3\xb6\"@x.test>", .flags = UTF8, .expect = "ERR 501 5.1.3" },
};

static void render(struct buf *b, int ret, const struct smtp_address *a, const struct smtp_parse_error *err)
{
	buf_reset(b);
	if (ret < 0) {
		buf_printf(b, "ERR %d %s", err->code, err->enhanced);
		assert_non_null(err->text);
		assert_int_equal(a->flags, 0);
		assert_int_equal(a->local_len, 0);
		assert_int_equal(a->domain_len, 0);
		return;
	}
	assert_int_equal(strlen(a->local), a->local_len);
	assert_int_equal(strlen(a->domain), a->domain_len);
	buf_append_str(b, "L=");
	test_escape(b, a->local, a->local_len);
	buf_append_str(b, " D=");
	test_escape(b, a->domain, a->domain_len);
	buf_append_str(b, " F=");
	static const char letters[] = "NQLURP";
	for (unsigned i = 0; i < 6; i++) {
		if ((a->flags & (1u << i)) != 0)
			buf_append_c(b, letters[i]);
	}
	char fmt[SMTP_ADDRESS_FORMAT_MAX];
	int n = smtp_address_format(a, fmt, sizeof(fmt));
	assert_true(n >= 0);
	buf_append_str(b, " S=");
	test_escape(b, fmt, (size_t)n);
}

static void test_address_table(void **state)
{
	struct buf b;
	buf_init(&b, 4096);
	for (size_t i = 0; i < sizeof(addr_cases) / sizeof(addr_cases[0]); i++) {
		const struct addr_case *c = &addr_cases[i];
		struct smtp_address a;
		struct smtp_parse_error err = { 0 };
		size_t len = c->in_len != 0 ? c->in_len : strlen(c->in);
		memset(&a, 0x5a, sizeof(a));
		int ret = smtp_address_parse(c->in, len, c->flags, &a, &err);
		render(&b, ret, &a, &err);
		if (strcmp(b.data, c->expect) != 0)
			fail_msg("case %zu '%s': got '%s' want '%s'", i, c->in, b.data, c->expect);
		if (ret == 0 && (a.flags & SMTP_ADDRESS_F_NULL) == 0) {
			/* The canonical form parses back to the same address. */
			char fmt[SMTP_ADDRESS_FORMAT_MAX + 2];
			fmt[0] = '<';
			int n = smtp_address_format(&a, fmt + 1, sizeof(fmt) - 2);
			assert_true(n > 0);
			fmt[n + 1] = '>';
			struct smtp_address a2;
			if (smtp_address_parse(fmt, (size_t)n + 2, c->flags, &a2, &err) != 0)
				fail_msg("case %zu: canonical '%s' does not parse", i, fmt);
			assert_string_equal(a.local, a2.local);
			assert_string_equal(a.domain, a2.domain);
		}
	}
	buf_deinit(&b);
}

static size_t make_path(char *path, size_t domain_len)
{
	size_t n = 0;
	memcpy(path, "<u@", 3);
	n = 3;
	for (size_t i = 0; i < domain_len; i++)
		path[n++] = i % 5 == 4 ? '.' : 'a';
	path[n++] = '>';
	return n;
}

static void test_address_path_max(void **state)
{
	/* 256 octets is the limit for the whole path including brackets. */
	char path[300];
	struct smtp_address a;
	struct smtp_parse_error err;
	size_t n = make_path(path, 252);
	assert_int_equal(n, 256);
	assert_int_equal(smtp_address_parse(path, n, 0, &a, &err), 0);
	assert_int_equal(a.domain_len, 252);
	n = make_path(path, 253);
	assert_int_equal(smtp_address_parse(path, n, 0, &a, &err), -1);
	assert_int_equal(err.code, 501);
	assert_string_equal(err.text, "Path too long");
	/* a domain is at most 253 octets */
	make_path(path, 253);
	assert_true(smtp_address_domain_valid(path + 3, 253, 0));
	make_path(path, 254);
	assert_false(smtp_address_domain_valid(path + 3, 254, 0));
}

static void test_address_literal_bytes(void **state)
{
	struct smtp_address a;
	struct smtp_parse_error err;
	assert_int_equal(smtp_address_parse("<u@[10.1.2.3]>", 14, 0, &a, &err), 0);
	assert_int_equal(a.literal_family, 2 /* AF_INET */);
	assert_memory_equal(a.literal_addr, "\x0a\x01\x02\x03", 4);
}

static void test_address_format_small(void **state)
{
	struct smtp_address a;
	struct smtp_parse_error err;
	char dst[8];
	assert_int_equal(smtp_address_parse("<abc@x.test>", 12, 0, &a, &err), 0);
	assert_int_equal(smtp_address_format(&a, dst, sizeof(dst)), -1);
	assert_string_equal(dst, "");
	char dst2[11];
	assert_int_equal(smtp_address_format(&a, dst2, sizeof(dst2)), 10);
	assert_string_equal(dst2, "abc@x.test");
	assert_int_equal(smtp_address_format(&a, dst2, 10), -1);
}

static void test_domain_valid(void **state)
{
	assert_true(smtp_address_domain_valid("mail.example.test", 17, 0));
	assert_true(smtp_address_domain_valid("[192.0.2.1]", 11, 0));
	assert_true(smtp_address_domain_valid("[IPv6:::1]", 10, 0));
	assert_false(smtp_address_domain_valid("", 0, 0));
	assert_false(smtp_address_domain_valid("a_b", 3, 0));
	assert_false(smtp_address_domain_valid("192.0.2.1", 9, 0));
	assert_false(smtp_address_domain_valid("\xc3\xa9.test", 7, 0));
	assert_true(smtp_address_domain_valid("\xc3\xa9.test", 7, UTF8));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_address_table),
		cmocka_unit_test(test_address_path_max),
		cmocka_unit_test(test_address_literal_bytes),
		cmocka_unit_test(test_address_format_small),
		cmocka_unit_test(test_domain_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
