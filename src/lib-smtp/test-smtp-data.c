#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "lib-smtp/smtp_data.h"
#include "test-smtp-common.h"

/*
 * expect: "<RESULT> c=<consumed> out=<content> h=<header lines> r=<Received count>
 * hd=<header done> nul=<NULs> ll=<longest line>"; content escaped (\x0d\x0a for CRLF).
 */
struct data_case {
	const char *name;
	const char *in;
	size_t in_len;
	const char *expect;
};

#define CRLF "\\x0d\\x0a"

static const struct data_case data_cases[] = {
	{ .name = "simple", .in = "Subject: x\r\n\r\nbody\r\n.\r\n",
	  .expect = "DONE c=23 out=Subject: x" CRLF CRLF "body" CRLF " h=1 r=0 hd=1 nul=0 ll=10" },
	{ .name = "empty message", .in = ".\r\n", .expect = "DONE c=3 out= h=0 r=0 hd=0 nul=0 ll=0" },
	{ .name = "only empty line", .in = "\r\n.\r\n", .expect = "DONE c=5 out=" CRLF " h=0 r=0 hd=1 nul=0 ll=0" },
	{ .name = "dot stuffed", .in = "..\r\n..foo\r\n.bar\r\n.\r\n",
	  .expect = "DONE c=20 out=." CRLF ".foo" CRLF "bar" CRLF " h=3 r=0 hd=0 nul=0 ll=4" },
	{ .name = "pipelined after end", .in = "a\r\n.\r\nQUIT\r\n",
	  .expect = "DONE c=6 out=a" CRLF " h=1 r=0 hd=0 nul=0 ll=1" },
	{ .name = "unfinished", .in = "abc", .expect = "AGAIN c=3 out=abc h=0 r=0 hd=0 nul=0 ll=0" },
	{ .name = "unfinished dot", .in = "a\r\n.", .expect = "AGAIN c=4 out=a" CRLF " h=1 r=0 hd=0 nul=0 ll=1" },
	{ .name = "unfinished dot cr", .in = "a\r\n.\r", .expect = "AGAIN c=5 out=a" CRLF " h=1 r=0 hd=0 nul=0 ll=1" },
	{ .name = "space dot", .in = " .\r\n", .expect = "AGAIN c=4 out= ." CRLF " h=1 r=0 hd=0 nul=0 ll=2" },
	{ .name = "dot space", .in = ". \r\n.\r\n", .expect = "DONE c=7 out= " CRLF " h=1 r=0 hd=0 nul=0 ll=1" },
	/* SMTP smuggling variants: only CRLF.CRLF ends, anything else bare is an error */
	{ .name = "lf dot lf", .in = "a\n.\nMAIL FROM:<x@y>\r\n", .expect = "BARE_LF c=2 out=a h=0 r=0 hd=0 nul=0 ll=0" },
	{ .name = "lf dot crlf", .in = "a\n.\r\nMAIL", .expect = "BARE_LF c=2 out=a h=0 r=0 hd=0 nul=0 ll=0" },
	{ .name = "crlf dot lf", .in = "a\r\n.\nMAIL", .expect = "BARE_LF c=5 out=a" CRLF " h=1 r=0 hd=0 nul=0 ll=1" },
	{ .name = "cr dot cr", .in = "a\r.\rMAIL", .expect = "BARE_CR c=3 out=a h=0 r=0 hd=0 nul=0 ll=0" },
	{ .name = "crlf dot cr", .in = "a\r\n.\rMAIL", .expect = "BARE_CR c=6 out=a" CRLF " h=1 r=0 hd=0 nul=0 ll=1" },
	{ .name = "cr dot crlf", .in = "a\r.\r\nMAIL", .expect = "BARE_CR c=3 out=a h=0 r=0 hd=0 nul=0 ll=0" },
	{ .name = "crlf dot cr cr lf", .in = "a\r\n.\r\r\n", .expect = "BARE_CR c=6 out=a" CRLF " h=1 r=0 hd=0 nul=0 ll=1" },
	{ .name = "lf at start", .in = "\n.\r\n", .expect = "BARE_LF c=1 out= h=0 r=0 hd=0 nul=0 ll=0" },
	{ .name = "dot lf at start", .in = ".\n", .expect = "BARE_LF c=2 out= h=0 r=0 hd=0 nul=0 ll=0" },
	{ .name = "cr at start", .in = "\r.\r\n", .expect = "BARE_CR c=2 out= h=0 r=0 hd=0 nul=0 ll=0" },
	{ .name = "cr cr lf", .in = "a\r\r\n", .expect = "BARE_CR c=3 out=a h=0 r=0 hd=0 nul=0 ll=0" },
	{ .name = "bare cr mid", .in = "ab\rcd\r\n", .expect = "BARE_CR c=4 out=ab h=0 r=0 hd=0 nul=0 ll=0" },
	{ .name = "bare lf mid", .in = "Subject: a\r\nab\ncd\r\n", .expect = "BARE_LF c=15 out=Subject: a" CRLF "ab h=1 r=0 hd=0 nul=0 ll=10" },
	{ .name = "dot cr dot", .in = "x\r\n.\r.\r\n", .expect = "BARE_CR c=6 out=x" CRLF " h=1 r=0 hd=0 nul=0 ll=1" },
	{ .name = "nul dot is content", .in = "a\r\n\0.\r\n.\r\n", .in_len = 10,
	  .expect = "DONE c=10 out=a" CRLF "\\x00." CRLF " h=2 r=0 hd=0 nul=1 ll=2" },
	{ .name = "nul before crlf dot", .in = "a\0\r\n.\r\n", .in_len = 7,
	  .expect = "DONE c=7 out=a\\x00" CRLF " h=1 r=0 hd=0 nul=1 ll=2" },
	{ .name = "dot nul", .in = ".\0\r\n.\r\n", .in_len = 7,
	  .expect = "DONE c=7 out=\\x00" CRLF " h=1 r=0 hd=0 nul=1 ll=1" },
	/* header section accounting */
	{ .name = "received", .in = "Received: a\r\nreceived:b\r\nRECEIVED:\r\n X-Received: c\r\nReceived\r\n"
				   "Receivedx: y\r\n.Received: z\r\nReceive\r\n\r\nReceived: body\r\n.\r\n",
	  .expect = "DONE c=120 out=Received: a" CRLF "received:b" CRLF "RECEIVED:" CRLF " X-Received: c" CRLF
		    "Received" CRLF "Receivedx: y" CRLF "Received: z" CRLF "Receive" CRLF CRLF "Received: body" CRLF
		    " h=8 r=4 hd=1 nul=0 ll=14" },
};

static const char *result_name(int ret)
{
	switch (ret) {
	case SMTP_DATA_DONE: return "DONE";
	case SMTP_DATA_AGAIN: return "AGAIN";
	case SMTP_DATA_OUT_FULL: return "OUT_FULL";
	case SMTP_DATA_BARE_LF: return "BARE_LF";
	case SMTP_DATA_BARE_CR: return "BARE_CR";
	}
	return "?";
}

/* Feed in chunks through an out buf of max out_max, draining it into all. */
static void run_data(const char *in, size_t len, size_t chunk, size_t out_max, struct buf *res)
{
	struct smtp_data_reader r;
	struct buf out, all;
	smtp_data_reader_init(&r);
	buf_init(&out, out_max);
	buf_init(&all, 1 << 16);
	size_t pos = 0;
	int ret = SMTP_DATA_AGAIN;
	while (pos < len) {
		size_t n = len - pos < chunk ? len - pos : chunk;
		size_t used;
		size_t before = out.len;
		ret = smtp_data_reader_feed(&r, in + pos, n, &used, &out);
		assert_true(used <= n);
		assert_true(out.len - before <= used + 1);
		pos += used;
		if (ret == SMTP_DATA_OUT_FULL) {
			assert_true(used < n);
			buf_append(&all, out.data, out.len);
			buf_reset(&out);
			continue;
		}
		if (ret == SMTP_DATA_AGAIN) {
			assert_int_equal(used, n);
			continue;
		}
		break;
	}
	buf_append(&all, out.data, out.len);
	assert_int_equal(r.content_bytes, all.len);
	buf_reset(res);
	buf_printf(res, "%s c=%zu out=", result_name(ret), pos);
	test_escape(res, all.data, all.len);
	buf_printf(res, " h=%llu r=%llu hd=%d nul=%llu ll=%zu", (unsigned long long)r.header_lines,
		   (unsigned long long)r.received_count, r.header_done ? 1 : 0,
		   (unsigned long long)r.nul_count, r.longest_line);
	/* Results are sticky: feeding more gives the same answer and consumes nothing. */
	if (ret != SMTP_DATA_AGAIN) {
		size_t used = 99;
		assert_int_equal(smtp_data_reader_feed(&r, "x\r\n", 3, &used, &out), ret);
		assert_int_equal(used, 0);
	}
	buf_deinit(&out);
	buf_deinit(&all);
}

static void test_data_table(void **state)
{
	static const size_t chunks[] = { SIZE_MAX, 1, 2, 3 };
	static const size_t out_maxes[] = { 65536, 2, 3, 5 };
	struct buf res;
	buf_init(&res, 1 << 16);
	for (size_t i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
		const struct data_case *c = &data_cases[i];
		size_t len = test_len(c->in, c->in_len);
		for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
			for (size_t m = 0; m < sizeof(out_maxes) / sizeof(out_maxes[0]); m++) {
				run_data(c->in, len, chunks[k], out_maxes[m], &res);
				if (strcmp(res.data, c->expect) != 0)
					fail_msg("case '%s' chunk %zu outmax %zu:\n got '%s'\nwant '%s'", c->name,
						 chunks[k], out_maxes[m], res.data, c->expect);
			}
		}
	}
	buf_deinit(&res);
}

/* A full out buf stops the reader without losing or consuming anything. */
static void test_data_out_full(void **state)
{
	struct smtp_data_reader r;
	struct buf out;
	size_t used;
	smtp_data_reader_init(&r);
	buf_init(&out, 4);
	assert_int_equal(smtp_data_reader_feed(&r, "abcdef\r\n.\r\n", 11, &used, &out), SMTP_DATA_OUT_FULL);
	assert_int_equal(used, 4);
	assert_string_equal(out.data, "abcd");
	assert_int_equal(smtp_data_reader_feed(&r, "ef\r\n.\r\n", 7, &used, &out), SMTP_DATA_OUT_FULL);
	assert_int_equal(used, 0);
	buf_reset(&out);
	assert_int_equal(smtp_data_reader_feed(&r, "ef\r\n.\r\n", 7, &used, &out), SMTP_DATA_DONE);
	assert_int_equal(used, 7);
	assert_string_equal(out.data, "ef\r\n");
	/* a held CR needs room for the whole CRLF */
	smtp_data_reader_init(&r);
	buf_reset(&out);
	assert_int_equal(smtp_data_reader_feed(&r, "abc\r\n", 5, &used, &out), SMTP_DATA_OUT_FULL);
	assert_int_equal(used, 4);
	assert_string_equal(out.data, "abc");
	buf_reset(&out);
	assert_int_equal(smtp_data_reader_feed(&r, "\n", 1, &used, &out), SMTP_DATA_AGAIN);
	assert_int_equal(used, 1);
	assert_string_equal(out.data, "\r\n");
	buf_deinit(&out);
}

/* A long body: many lines, big chunk, checks the memchr fast path and counters. */
static void test_data_bulk(void **state)
{
	struct buf in, res;
	buf_init(&in, 1 << 20);
	buf_init(&res, 1 << 21);
	buf_append_str(&in, "Received: from a\r\nReceived: from b\r\nSubject: bulk\r\n\r\n");
	for (int i = 0; i < 2000; i++)
		buf_printf(&in, "%sline %d of the body, some text to make it longer\r\n", i % 7 == 0 ? "." : "", i);
	buf_append_str(&in, ".\r\nQUIT\r\n");
	struct smtp_data_reader r;
	struct buf out;
	size_t used;
	smtp_data_reader_init(&r);
	buf_init(&out, 1 << 20);
	assert_int_equal(smtp_data_reader_feed(&r, in.data, in.len, &used, &out), SMTP_DATA_DONE);
	assert_int_equal(used, in.len - 6);
	assert_int_equal(r.received_count, 2);
	assert_int_equal(r.header_lines, 3);
	assert_true(r.header_done);
	assert_int_equal(r.content_bytes, out.len);
	assert_int_equal(out.len, in.len - 6 - 3 - (2000 + 6) / 7);
	assert_null(strstr(out.data, "\r\n.line"));
	buf_deinit(&out);
	buf_deinit(&in);
	buf_deinit(&res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_data_table),
		cmocka_unit_test(test_data_out_full),
		cmocka_unit_test(test_data_bulk),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
