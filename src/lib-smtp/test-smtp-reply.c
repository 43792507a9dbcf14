#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "lib-smtp/smtp_reply.h"
#include "test-smtp-common.h"

/*
 * expect: each complete reply as "code|enhanced|text|lines;", then
 * "INVALID:<reason>" if the stream is rejected, or "again" when input ran out
 * inside a reply.
 */
struct reply_case {
	const char *name;
	const char *in;
	size_t in_len;
	size_t max_line;
	unsigned max_lines;
	size_t max_text;
	const char *expect;
};

static const struct reply_case reply_cases[] = {
	{ .name = "greeting", .in = "220 mail.example.test ESMTP\r\n", .expect = "220||mail.example.test ESMTP|1;" },
	{ .name = "enhanced", .in = "250 2.1.0 Ok\r\n", .expect = "250|2.1.0|Ok|1;" },
	{ .name = "multiline", .in = "250-2.1.0 a\r\n250-b\r\n250 2.1.5 c\r\n", .expect = "250|2.1.0|a\\x0ab\\x0ac|3;" },
	{ .name = "reject", .in = "550 5.1.1 <x@y.test>: Recipient address rejected\r\n",
	  .expect = "550|5.1.1|<x@y.test>: Recipient address rejected|1;" },
	{ .name = "354 not stripped", .in = "354 3.0.0 End data with <CR><LF>.<CR><LF>\r\n",
	  .expect = "354||3.0.0 End data with <CR><LF>.<CR><LF>|1;" },
	{ .name = "code only", .in = "250\r\n", .expect = "250|||1;" },
	{ .name = "empty texts", .in = "250-\r\n250 \r\n", .expect = "250||\\x0a|2;" },
	{ .name = "enhanced only", .in = "250 2.0.0\r\n", .expect = "250|2.0.0||1;" },
	{ .name = "class mismatch", .in = "250 5.0.0 x\r\n", .expect = "250||5.0.0 x|1;" },
	{ .name = "enhanced glued", .in = "250 2.0.0x\r\n", .expect = "250||2.0.0x|1;" },
	{ .name = "enhanced too long", .in = "250 2.0.1234 x\r\n", .expect = "250||2.0.1234 x|1;" },
	{ .name = "enhanced 3 digits", .in = "451 4.123.456 later\r\n", .expect = "451|4.123.456|later|1;" },
	{ .name = "pipelined", .in = "250 2.1.0 ok\r\n250 2.1.5 ok2\r\n354 go\r\n",
	  .expect = "250|2.1.0|ok|1;250|2.1.5|ok2|1;354||go|1;" },
	{ .name = "partial", .in = "250-a\r\n250", .expect = "again" },
	{ .name = "partial cr", .in = "250 a\r", .expect = "again" },
	{ .name = "utf8 text", .in = "250 2.0.0 \xc3\xa9t\xc3\xa9\r\n", .expect = "250|2.0.0|\\xc3\\xa9t\\xc3\\xa9|1;" },
	/* invalid */
	{ .name = "code changes", .in = "250-a\r\n251 b\r\n", .expect = "INVALID:reply code changed within a multiline reply" },
	{ .name = "bare lf", .in = "250 ok\n", .expect = "INVALID:reply line ends with bare LF" },
	{ .name = "bare lf after ok", .in = "250 ok\r\n250 ok\n", .expect = "250||ok|1;INVALID:reply line ends with bare LF" },
	{ .name = "bare cr", .in = "250 o\rk\r\n", .expect = "INVALID:bare CR in reply line" },
	{ .name = "short code", .in = "25 ok\r\n", .expect = "INVALID:bad reply code" },
	{ .name = "code 650", .in = "650 ok\r\n", .expect = "INVALID:bad reply code" },
	{ .name = "code 160", .in = "160 ok\r\n", .expect = "INVALID:bad reply code" },
	{ .name = "code 260", .in = "260 ok\r\n", .expect = "INVALID:bad reply code" },
	{ .name = "code 2x0", .in = "2x0 ok\r\n", .expect = "INVALID:bad reply code" },
	{ .name = "separator", .in = "250x ok\r\n", .expect = "INVALID:bad reply code separator" },
	{ .name = "text only", .in = "ok\r\n", .expect = "INVALID:bad reply code" },
	{ .name = "empty line", .in = "\r\n", .expect = "INVALID:bad reply code" },
	{ .name = "nul", .in = "250 a\0b\r\n", .in_len = 9, .expect = "INVALID:NUL in reply" },
	{ .name = "line too long unfinished", .in = "250 abcdefghijklmnopqrstuvwxyz", .max_line = 10,
	  .expect = "INVALID:reply line too long" },
	{ .name = "line too long", .in = "250 abcdefghijklmnopqrstuvwxyz\r\n", .max_line = 10,
	  .expect = "INVALID:reply line too long" },
	{ .name = "line at max", .in = "250 abcd\r\n", .max_line = 10, .expect = "250||abcd|1;" },
	{ .name = "line max plus one", .in = "250 abcde\r\n", .max_line = 10, .expect = "INVALID:reply line too long" },
	{ .name = "too many lines", .in = "250-a\r\n250-b\r\n250-c\r\n250-d\r\n250 e\r\n", .max_lines = 3,
	  .expect = "INVALID:too many lines in reply" },
	{ .name = "lines at max", .in = "250-a\r\n250-b\r\n250 c\r\n", .max_lines = 3, .expect = "250||a\\x0ab\\x0ac|3;" },
	{ .name = "text too long", .in = "250-abc\r\n250 def\r\n", .max_text = 6, .expect = "INVALID:reply text too long" },
	{ .name = "text at max", .in = "250-abc\r\n250 de\r\n", .max_text = 6, .expect = "250||abc\\x0ade|2;" },
};

static void run_reply(const struct reply_case *c, size_t chunk, struct buf *res)
{
	struct smtp_reply_parser p;
	size_t len = test_len(c->in, c->in_len);
	smtp_reply_parser_init(&p, c->max_line, c->max_lines, c->max_text);
	buf_reset(res);
	size_t pos = 0;
	bool in_reply = false;
	while (pos < len) {
		size_t n = len - pos < chunk ? len - pos : chunk;
		size_t used;
		const struct smtp_reply *reply;
		const char *error;
		int ret = smtp_reply_parser_feed(&p, c->in + pos, n, &used, &reply, &error);
		assert_true(used <= n);
		pos += used;
		if (ret == SMTP_REPLY_AGAIN) {
			assert_int_equal(used, n);
			in_reply = true;
			continue;
		}
		if (ret == SMTP_REPLY_INVALID) {
			assert_non_null(error);
			buf_printf(res, "INVALID:%s", error);
			/* sticky */
			assert_int_equal(smtp_reply_parser_feed(&p, "250 ok\r\n", 8, &used, &reply, &error),
					 SMTP_REPLY_INVALID);
			assert_int_equal(used, 0);
			in_reply = false;
			break;
		}
		assert_int_equal(ret, SMTP_REPLY_OK);
		assert_int_equal(c->in[pos - 1], '\n');
		assert_int_equal(strlen(reply->text.data), reply->text.len);
		buf_printf(res, "%d|%s|", reply->code, reply->enhanced);
		test_escape(res, reply->text.data, reply->text.len);
		buf_printf(res, "|%u;", reply->lines);
		in_reply = false;
	}
	if (in_reply)
		buf_append_str(res, "again");
	smtp_reply_parser_deinit(&p);
}

static void test_reply_table(void **state)
{
	static const size_t chunks[] = { SIZE_MAX, 1, 3 };
	struct buf res;
	buf_init(&res, 1 << 16);
	for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++) {
		for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
			run_reply(&reply_cases[i], chunks[k], &res);
			if (strcmp(res.data, reply_cases[i].expect) != 0)
				fail_msg("case '%s' chunk %zu: got '%s' want '%s'", reply_cases[i].name, chunks[k],
					 res.data, reply_cases[i].expect);
		}
	}
	buf_deinit(&res);
}

/* An endless multiline reply is cut at max_lines even when fed in one piece. */
static void test_reply_endless(void **state)
{
	struct buf in;
	buf_init(&in, 1 << 20);
	for (int i = 0; i < 1000; i++)
		buf_append_str(&in, "250-AAAA\r\n");
	struct smtp_reply_parser p;
	size_t used;
	const struct smtp_reply *reply;
	const char *error;
	smtp_reply_parser_init(&p, 0, 0, 0);
	assert_int_equal(smtp_reply_parser_feed(&p, in.data, in.len, &used, &reply, &error), SMTP_REPLY_INVALID);
	assert_string_equal(error, "too many lines in reply");
	assert_int_equal(used, 101 * 10);
	smtp_reply_parser_deinit(&p);
	buf_deinit(&in);
}

static void test_reply_ehlo(void **state)
{
	static const char in[] =
		"250-mx.example.test Hello client [192.0.2.1]\r\n"
		"250-PIPELINING\r\n"
		"250-SIZE 10240000\r\n"
		"250-auth PLAIN login\r\n"
		"250-AUTH=LOGIN CRAM-MD5\r\n"
		"250-8BITMIME\r\n"
		"250-SMTPUTF8\r\n"
		"250-STARTTLS\r\n"
		"250-ENHANCEDSTATUSCODES\r\n"
		"250-DSN\r\n"
		"250-X-UNKNOWN something\r\n"
		"250 CHUNKING\r\n";
	struct smtp_reply_parser p;
	size_t used;
	const struct smtp_reply *reply;
	const char *error;
	struct smtp_ehlo ehlo;
	smtp_reply_parser_init(&p, 0, 0, 0);
	assert_int_equal(smtp_reply_parser_feed(&p, in, sizeof(in) - 1, &used, &reply, &error), SMTP_REPLY_OK);
	assert_int_equal(used, sizeof(in) - 1);
	assert_int_equal(smtp_reply_ehlo_parse(reply, &ehlo), 0);
	assert_string_equal(ehlo.domain, "mx.example.test");
	assert_int_equal(ehlo.caps, SMTP_EHLO_PIPELINING | SMTP_EHLO_SIZE | SMTP_EHLO_AUTH | SMTP_EHLO_8BITMIME |
					    SMTP_EHLO_SMTPUTF8 | SMTP_EHLO_STARTTLS |
					    SMTP_EHLO_ENHANCEDSTATUSCODES | SMTP_EHLO_DSN | SMTP_EHLO_CHUNKING);
	assert_int_equal(ehlo.size, 10240000);
	assert_string_equal(ehlo.auth, "PLAIN LOGIN CRAM-MD5");

	/* a minimal EHLO reply and a non-250 one */
	assert_int_equal(smtp_reply_parser_feed(&p, "250 tiny\r\n", 10, &used, &reply, &error), SMTP_REPLY_OK);
	assert_int_equal(smtp_reply_ehlo_parse(reply, &ehlo), 0);
	assert_string_equal(ehlo.domain, "tiny");
	assert_int_equal(ehlo.caps, 0);
	assert_int_equal(smtp_reply_parser_feed(&p, "250-x\r\n250 SIZE 99999999999999999999999\r\n", 41, &used,
						&reply, &error), SMTP_REPLY_OK);
	assert_int_equal(smtp_reply_ehlo_parse(reply, &ehlo), 0);
	assert_int_equal(ehlo.caps, SMTP_EHLO_SIZE);
	assert_int_equal(ehlo.size, 0);
	assert_int_equal(smtp_reply_parser_feed(&p, "502 5.5.1 no\r\n", 14, &used, &reply, &error), SMTP_REPLY_OK);
	assert_int_equal(smtp_reply_ehlo_parse(reply, &ehlo), -1);
	smtp_reply_parser_deinit(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_table),
		cmocka_unit_test(test_reply_endless),
		cmocka_unit_test(test_reply_ehlo),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
