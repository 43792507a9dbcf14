/* Pure logic of the outbound module: MX loop rules, relay groups, 8BITMIME downgrade. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "outbound/mime7bit.h"
#include "outbound/mx_select.h"
#include "outbound/relay.h"

struct cut_case {
	const char *name;
	struct dns_mx mx[4];
	size_t n;
	size_t keep;
	bool self;
};

static void test_mx_self_cut(void **state)
{
	static const char *const own[] = { "mx2.example.test", "ME.example.test." };
	static const struct cut_case cases[] = {
		{ "not us", { { 10, "a.test" }, { 20, "b.test" } }, 2, 2, false },
		{ "we are backup", { { 10, "a.test" }, { 20, "mx2.example.test" }, { 30, "c.test" } }, 3, 1, true },
		{ "we are best", { { 10, "me.example.test" }, { 20, "b.test" } }, 2, 0, true },
		{ "tie with us", { { 10, "a.test" }, { 10, "mx2.example.test." }, { 20, "c.test" } }, 3, 0, true },
		{ "two better", { { 5, "a.test" }, { 6, "b.test" }, { 9, "Me.Example.Test" } }, 3, 2, true },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct cut_case *c = &cases[i];
		bool self;
		size_t keep = mx_self_cut(c->mx, c->n, own, 2, &self);
		if (keep != c->keep || self != c->self)
			fail_msg("case %s: keep %zu self %d", c->name, keep, self);
	}
	assert_true(mx_name_equal("A.test.", "a.TEST"));
	assert_false(mx_name_equal("a.test", "a.test.x"));
	assert_false(mx_name_equal(".", ""));

	static const char *const addrs[] = { "192.0.2.1", "2001:db8::1" };
	struct dns_addr a = { .family = AF_INET };
	inet_pton(AF_INET, "192.0.2.1", &a.u.v4);
	assert_true(mx_addr_is_self(&a, addrs, 2));
	inet_pton(AF_INET, "192.0.2.2", &a.u.v4);
	assert_false(mx_addr_is_self(&a, addrs, 2));
	a.u.v4.s_addr = 0;
	assert_true(mx_addr_is_self(&a, addrs, 2));
	struct dns_addr b = { .family = AF_INET6 };
	inet_pton(AF_INET6, "2001:db8::1", &b.u.v6);
	assert_true(mx_addr_is_self(&b, addrs, 2));
}

static void test_relay_weights(void **state)
{
	struct relay_group *g = relay_group_new("g", 3, 1000);
	assert_int_equal(relay_group_add(g, "r1", "h1", 25, 1, SMTP_TLS_MAY), 0);
	assert_int_equal(relay_group_add(g, "r2", "h2", 25, 1, SMTP_TLS_MAY), 1);
	assert_int_equal(relay_group_add(g, "r3", "h3", 0, 2, SMTP_TLS_MAY), 2);
	assert_int_equal(relay_group_add(g, "bad", "h", 25, 0, SMTP_TLS_MAY), -1);
	assert_int_equal(relay_group_get(g, 2)->port, 25);
	unsigned counts[3] = { 0 };
	int last = -1, repeats = 0;
	for (int i = 0; i < 1000; i++) {
		int k = relay_group_pick(g, 0);
		assert_true(k >= 0 && k < 3);
		counts[k]++;
		if (k == last && k != 2)
			repeats++;
		last = k;
	}
	/* smooth WRR is exact over full rounds: 250/250/500 */
	assert_true(counts[0] >= 240 && counts[0] <= 260);
	assert_true(counts[1] >= 240 && counts[1] <= 260);
	assert_true(counts[2] >= 490 && counts[2] <= 510);
	/* interleaved: the weight-1 relays never get two picks in a row */
	assert_int_equal(repeats, 0);
	relay_group_free(&g);
	assert_null(g);
}

static void test_relay_health(void **state)
{
	struct relay_group *g = relay_group_new("g", 3, 1000);
	relay_group_add(g, "r1", "h1", 25, 1, SMTP_TLS_NONE);
	relay_group_add(g, "r2", "h2", 25, 1, SMTP_TLS_NONE);
	uint64_t now = 10000;
	/* r1 fails three times in a row: out */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(relay_group_get(g, 0)->health, RELAY_UP);
		relay_report(g, 0, false, now);
	}
	assert_int_equal(relay_group_get(g, 0)->health, RELAY_DOWN);
	unsigned counts[2] = { 0 };
	for (int i = 0; i < 100; i++)
		counts[relay_group_pick(g, now + 10)]++;
	assert_int_equal(counts[0], 0);
	assert_int_equal(counts[1], 100);
	/* both down: nothing to pick, retry time is the earliest cool-down end */
	for (int i = 0; i < 3; i++)
		relay_report(g, 1, false, now + 500);
	assert_int_equal(relay_group_pick(g, now + 600), -1);
	assert_int_equal(relay_group_retry_at(g, now + 600), now + 1000);
	/* cool-down over: exactly one probe for r1 */
	assert_int_equal(relay_group_pick(g, now + 1000), 0);
	assert_int_equal(relay_group_get(g, 0)->health, RELAY_PROBING);
	assert_int_equal(relay_group_pick(g, now + 1001), -1);
	/* the probe fails: down again for a full cool-down */
	relay_report(g, 0, false, now + 1002);
	assert_int_equal(relay_group_get(g, 0)->health, RELAY_DOWN);
	assert_int_equal(relay_group_pick(g, now + 1100), -1);
	/* r2's probe succeeds: back in rotation */
	assert_int_equal(relay_group_pick(g, now + 1500), 1);
	relay_report(g, 1, true, now + 1501);
	assert_int_equal(relay_group_get(g, 1)->health, RELAY_UP);
	assert_int_equal(relay_group_pick(g, now + 1502), 1);
	/* success resets the failure count: two failures keep it up */
	relay_report(g, 1, false, now + 1503);
	relay_report(g, 1, false, now + 1504);
	relay_report(g, 1, true, now + 1505);
	relay_report(g, 1, false, now + 1506);
	relay_report(g, 1, false, now + 1507);
	assert_int_equal(relay_group_get(g, 1)->health, RELAY_UP);
	relay_group_free(&g);
}


struct qp_case {
	const char *name;
	const char *in;
	const char *out;
};

static void qp_run(const char *in, size_t len, size_t step, struct buf *out)
{
	struct mime7bit_qp q;
	mime7bit_qp_init(&q);
	for (size_t i = 0; i < len; i += step)
		assert_int_equal(mime7bit_qp_feed(&q, in + i, len - i < step ? len - i : step, out), 0);
	assert_int_equal(mime7bit_qp_finish(&q, out), 0);
}

static void test_qp_table(void **state)
{
	static const struct qp_case cases[] = {
		{ "ascii", "hello\n", "hello\r\n" },
		{ "crlf", "a\r\nb\r\n", "a\r\nb\r\n" },
		{ "8bit", "caf\xc3\xa9\n", "caf=C3=A9\r\n" },
		{ "equals", "a=b\n", "a=3Db\r\n" },
		{ "trailing space", "a \nb\t\n", "a=20\r\nb=09\r\n" },
		{ "inner space", "a b\n", "a b\r\n" },
		{ "space at eof", "a ", "a=20" },
		{ "bare cr", "a\rb\n", "a=0Db\r\n" },
		{ "cr at eof", "a\r", "a=0D" },
		{ "space then cr", "a \rb", "a =0Db" },
		{ "long line",
		  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890\n",
		  "012345678901234567890123456789012345678901234567890123456789012345678901234=\r\n"
		  "5678901234567890\r\n" },
		{ "hex near break",
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xff\n",
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=\r\n=FF\r\n" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct qp_case *c = &cases[i];
		/* whole, then trickled one byte at a time: same output */
		for (size_t step = 0; step < 2; step++) {
			struct buf out;
			buf_init(&out, 4096);
			qp_run(c->in, strlen(c->in), step == 0 ? strlen(c->in) : 1, &out);
			if (strcmp(out.data, c->out) != 0)
				fail_msg("case %s (step %zu): '%s'", c->name, step, out.data);
			/* every output line fits in 76 characters + CRLF, and is 7-bit */
			size_t col = 0;
			for (size_t k = 0; k < out.len; k++) {
				assert_true((unsigned char)out.data[k] < 0x80);
				col = out.data[k] == '\n' ? 0 : col + 1;
				assert_true(col <= 77);
			}
			buf_deinit(&out);
		}
	}
}

struct hdr_case {
	const char *name;
	const char *msg;
	int ret;
	const char *out;     /* the new header, when ret == 1 */
	size_t body_off;
};

static void test_mime7bit_header(void **state)
{
	static const struct hdr_case cases[] = {
		{ "plain", "Subject: x\nContent-Type: text/plain; charset=utf-8\nMIME-Version: 1.0\n\nbody", 1,
		  "Subject: x\nContent-Type: text/plain; charset=utf-8\nMIME-Version: 1.0\n"
		  "Content-Transfer-Encoding: quoted-printable\r\n\r\n", 70 },
		{ "drop old cte", "Subject: x\r\nContent-Transfer-Encoding: 8bit\r\n (folded)\r\n\r\nb", 1,
		  "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=unknown-8bit\r\n"
		  "Content-Transfer-Encoding: quoted-printable\r\n\r\n", 58 },
		{ "multipart", "Content-Type: Multipart/Mixed; boundary=x\n\nb", 0, NULL, 0 },
		{ "message", "Content-Type: message/rfc822\n\nb", 0, NULL, 0 },
		{ "base64", "Content-Transfer-Encoding: BASE64\n\nb", 0, NULL, 0 },
		{ "8bit header", "Subject: caf\xc3\xa9\n\nb", 0, NULL, 0 },
		{ "no separator", "Subject: x\n", 0, NULL, 0 },
		{ "empty header", "\nbody", 1,
		  "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=unknown-8bit\r\n"
		  "Content-Transfer-Encoding: quoted-printable\r\n\r\n", 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct hdr_case *c = &cases[i];
		struct buf out;
		size_t off = 0;
		const char *why = NULL;
		buf_init(&out, 4096);
		int ret = mime7bit_header(c->msg, strlen(c->msg), &out, &off, &why);
		if (ret != c->ret)
			fail_msg("case %s: ret %d (%s)", c->name, ret, why ? why : "");
		if (ret == 1) {
			if (strcmp(out.data, c->out) != 0)
				fail_msg("case %s: header '%s'", c->name, out.data);
			assert_int_equal(off, c->body_off);
		} else {
			assert_non_null(why);
		}
		buf_deinit(&out);
	}
}

static void test_relay_order_and_report(void **state)
{
	struct relay_group *g = relay_group_new("g", 2, 1000);
	relay_group_add(g, "light", "h1", 25, 1, SMTP_TLS_MAY);
	relay_group_add(g, "heavy", "h2", 25, 5, SMTP_TLS_MAY);
	relay_group_add(g, "mid", "h3", 25, 3, SMTP_TLS_MAY);
	size_t order[8];
	size_t n = relay_group_order(g, 0, order, 8);
	assert_int_equal(n, 3);
	assert_int_equal(order[0], 1); /* the weighted pick: heavy */
	assert_int_equal(order[1], 2);
	assert_int_equal(order[2], 0);
	assert_int_equal(relay_group_order(g, 0, order, 1), 1);

	/* heavy failed twice at connection level, mid answered: heavy goes down */
	enum smtp_host_state hs[3] = { SMTP_HOST_FAILED, SMTP_HOST_REACHED, SMTP_HOST_NOT_TRIED };
	struct smtp_delivery_result res = { .hosts = hs, .host_count = 3 };
	size_t o2[3] = { 1, 2, 0 };
	relay_report_delivery(g, o2, 3, &res, 10);
	relay_report_delivery(g, o2, 3, &res, 11);
	assert_int_equal(relay_group_get(g, 1)->health, RELAY_DOWN);
	assert_int_equal(relay_group_get(g, 2)->health, RELAY_UP);
	assert_int_equal(relay_group_get(g, 2)->successes, 2);
	assert_int_equal(relay_group_get(g, 0)->failures + relay_group_get(g, 0)->successes, 0);
	n = relay_group_order(g, 20, order, 8);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++)
		assert_int_not_equal(order[i], 1);
	relay_group_free(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mx_self_cut),
		cmocka_unit_test(test_relay_weights),
		cmocka_unit_test(test_relay_health),
		cmocka_unit_test(test_relay_order_and_report),
		cmocka_unit_test(test_qp_table),
		cmocka_unit_test(test_mime7bit_header),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
