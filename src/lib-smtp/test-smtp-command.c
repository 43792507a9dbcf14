#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "lib-smtp/smtp_address.h"
#include "lib-smtp/smtp_command.h"
#include "lib-smtp/smtp_line.h"
#include "test-smtp-common.h"

/* expect: "ERR code enh" or a rendering of the fields that verb fills (see render()). */
struct cmd_case {
	const char *line;
	size_t len; /* 0: strlen */
	const char *expect;
};

static const struct cmd_case cmd_cases[] = {
	/* verbs, case-insensitive */
	{ .line = "EHLO mail.example.test", .expect = "EHLO d=mail.example.test valid" },
	{ .line = "ehlo mail.example.test", .expect = "EHLO d=mail.example.test valid" },
	{ .line = "HeLo [192.0.2.1]", .expect = "HELO d=[192.0.2.1] valid" },
	{ .line = "EHLO bad_name", .expect = "EHLO d=bad_name invalid" },
	{ .line = "EHLO a b", .expect = "EHLO d=a b invalid" },
	{ .line = "EHLO x.test   ", .expect = "EHLO d=x.test valid" },
	{ .line = "EHLO", .expect = "ERR 501 5.5.4" },
	{ .line = "EHLO ", .expect = "ERR 501 5.5.4" },
	{ .line = "EHLO  x.test", .expect = "ERR 501 5.5.4" },
	{ .line = "HELO", .expect = "ERR 501 5.5.4" },
	{ .line = "EHLO \xc3\xa9.test", .expect = "ERR 501 5.5.2" },
	{ .line = "DATA", .expect = "DATA" },
	{ .line = "data ", .expect = "DATA" },
	{ .line = "DATA x", .expect = "ERR 501 5.5.4" },
	{ .line = "RSET", .expect = "RSET" },
	{ .line = "RSET now", .expect = "ERR 501 5.5.4" },
	{ .line = "QUIT", .expect = "QUIT" },
	{ .line = "STARTTLS", .expect = "STARTTLS" },
	{ .line = "STARTTLS x", .expect = "ERR 501 5.5.4" },
	{ .line = "NOOP", .expect = "NOOP arg=" },
	{ .line = "NOOP hello there", .expect = "NOOP arg=hello there" },
	{ .line = "HELP", .expect = "HELP arg=" },
	{ .line = "HELP MAIL", .expect = "HELP arg=MAIL" },
	{ .line = "VRFY postmaster", .expect = "VRFY arg=postmaster" },
	{ .line = "VRFY", .expect = "ERR 501 5.5.4" },
	{ .line = "EXPN list", .expect = "EXPN arg=list" },
	{ .line = "EXPN j\xc3\xb6rg", .expect = "EXPN arg=j\\xc3\\xb6rg" },
	/* unknown and malformed verbs */
	{ .line = "", .expect = "ERR 500 5.5.1" },
	{ .line = " QUIT", .expect = "ERR 500 5.5.1" },
	{ .line = "QUITX", .expect = "ERR 500 5.5.1" },
	{ .line = "QUI", .expect = "ERR 500 5.5.1" },
	{ .line = "GET / HTTP/1.1", .expect = "ERR 500 5.5.1" },
	{ .line = "XCLIENT ADDR=1.2.3.4", .expect = "ERR 500 5.5.1" },
	{ .line = "QU\xc3\x8fT", .expect = "ERR 500 5.5.1" },
	{ .line = "QUIT\tx", .expect = "ERR 500 5.5.1" },
	/* NUL and control characters */
	{ .line = "QUIT\0", .len = 5, .expect = "ERR 500 5.5.2" },
	{ .line = "MAIL FROM:<a@b.test>\0", .len = 21, .expect = "ERR 500 5.5.2" },
	{ .line = "\0QUIT", .len = 5, .expect = "ERR 500 5.5.2" },
	{ .line = "NOOP a\tb", .expect = "ERR 501 5.5.2" },
	{ .line = "NOOP a\x7f", .expect = "ERR 501 5.5.2" },
	{ .line = "NOOP \xff", .expect = "ERR 501 5.5.2" },
	/* MAIL */
	{ .line = "MAIL FROM:<a@b.test>", .expect = "MAIL p=<a@b.test>" },
	{ .line = "mail from:<a@b.test>", .expect = "MAIL p=<a@b.test>" },
	{ .line = "MAIL FROM:<>", .expect = "MAIL p=<>" },
	{ .line = "MAIL FROM: <a@b.test>", .expect = "MAIL p=<a@b.test>" },
	{ .line = "MAIL FROM:   <a@b.test>  SIZE=10", .expect = "MAIL p=<a@b.test> size=10" },
	{ .line = "MAIL FROM:<\"a > b\"@b.test> SIZE=1", .expect = "MAIL p=<\"a > b\"@b.test> size=1" },
	{ .line = "MAIL FROM:<\"a\\\"> b\"@b.test>", .expect = "MAIL p=<\"a\\x5c\"> b\"@b.test>" },
	{ .line = "MAIL FROM:<j\xc3\xb6rg@b.test> SMTPUTF8", .expect = "MAIL p=<j\\xc3\\xb6rg@b.test> utf8" },
	{ .line = "MAIL FROM:a@b.test", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test", .expect = "ERR 501 5.1.3" },
	{ .line = "MAIL FROM:<a@b.test>>", .expect = "ERR 501 5.1.3" },
	{ .line = "MAIL FROM:<a@b.test>SIZE=1", .expect = "ERR 501 5.1.3" },
	{ .line = "MAIL FROM <a@b.test>", .expect = "ERR 501 5.5.2" },
	{ .line = "MAIL  FROM:<a@b.test>", .expect = "ERR 501 5.5.2" },
	{ .line = "MAIL TO:<a@b.test>", .expect = "ERR 501 5.5.2" },
	{ .line = "MAIL", .expect = "ERR 501 5.5.2" },
	{ .line = "MAIL FROM:\t<a@b.test>", .expect = "ERR 501 5.5.2" },
	{ .line = "MAIL FROM:<a@b.test> SIZE=12345 BODY=8bitmime RET=HDRS ENVID=QQ+2B1 AUTH=<>",
	  .expect = "MAIL p=<a@b.test> size=12345 body=2 ret=2 envid=QQ+1 auth=<>" },
	{ .line = "MAIL FROM:<a@b.test> body=BINARYMIME", .expect = "MAIL p=<a@b.test> body=3" },
	{ .line = "MAIL FROM:<a@b.test> BODY=7BIT ret=full", .expect = "MAIL p=<a@b.test> body=1 ret=1" },
	{ .line = "MAIL FROM:<a@b.test> AUTH=user+2Bx@example.test", .expect = "MAIL p=<a@b.test> auth=user+2Bx@example.test" },
	{ .line = "MAIL FROM:<a@b.test> SIZE=18446744073709551615", .expect = "MAIL p=<a@b.test> size=18446744073709551615" },
	{ .line = "MAIL FROM:<a@b.test> SIZE=18446744073709551616", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> SIZE=000000000000000000001", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> SIZE=-1", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> SIZE=", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> SIZE", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> SIZE=1 SIZE=2", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> SIZE=1 size=1", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> BODY=9BIT", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> SMTPUTF8=yes", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> SMTPUTF8 SMTPUTF8", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> RET=ALL", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> ENVID=a+2", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> ENVID=a+0A", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> ENVID=a+ZZ", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> ENVID=a=b", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> ENVID="
		  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
	  .expect = "MAIL p=<a@b.test> envid="
		    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789" },
	{ .line = "MAIL FROM:<a@b.test> ENVID="
		  "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789x",
	  .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> AUTH=a+", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> =1", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> -X=1", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> X_Y=1", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> SIZE=1\xc3\xa9", .expect = "ERR 501 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> REQUIRETLS", .expect = "ERR 555 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> X-FOO=bar", .expect = "ERR 555 5.5.4" },
	{ .line = "MAIL FROM:<a@b.test> NOTIFY=NEVER", .expect = "ERR 555 5.5.4" },
	/* RCPT */
	{ .line = "RCPT TO:<c@d.test>", .expect = "RCPT p=<c@d.test>" },
	{ .line = "rcpt to: <Postmaster>", .expect = "RCPT p=<Postmaster>" },
	{ .line = "RCPT TO:<@a,@b:c@d.test>", .expect = "RCPT p=<@a,@b:c@d.test>" },
	{ .line = "RCPT TO:<c@d.test> NOTIFY=NEVER", .expect = "RCPT p=<c@d.test> notify=1" },
	{ .line = "RCPT TO:<c@d.test> NOTIFY=success,FAILURE,Delay", .expect = "RCPT p=<c@d.test> notify=14" },
	{ .line = "RCPT TO:<c@d.test> NOTIFY=FAILURE ORCPT=rfc822;c+40d.test",
	  .expect = "RCPT p=<c@d.test> notify=4 orcpt=rfc822;c@d.test" },
	{ .line = "RCPT TO:<c@d.test> NOTIFY=NEVER,SUCCESS", .expect = "ERR 501 5.5.4" },
	{ .line = "RCPT TO:<c@d.test> NOTIFY=SUCCESS,SUCCESS", .expect = "ERR 501 5.5.4" },
	{ .line = "RCPT TO:<c@d.test> NOTIFY=SUCCESS,", .expect = "ERR 501 5.5.4" },
	{ .line = "RCPT TO:<c@d.test> NOTIFY=", .expect = "ERR 501 5.5.4" },
	{ .line = "RCPT TO:<c@d.test> NOTIFY=SOMETIMES", .expect = "ERR 501 5.5.4" },
	{ .line = "RCPT TO:<c@d.test> NOTIFY=DELAY NOTIFY=DELAY", .expect = "ERR 501 5.5.4" },
	{ .line = "RCPT TO:<c@d.test> ORCPT=rfc822", .expect = "ERR 501 5.5.4" },
	{ .line = "RCPT TO:<c@d.test> ORCPT=;a@b", .expect = "ERR 501 5.5.4" },
	{ .line = "RCPT TO:<c@d.test> ORCPT=rfc822;", .expect = "ERR 501 5.5.4" },
	{ .line = "RCPT TO:<c@d.test> ORCPT=rfc822;a+4", .expect = "ERR 501 5.5.4" },
	{ .line = "RCPT TO:<c@d.test> ORCPT=rf.c;a", .expect = "ERR 501 5.5.4" },
	{ .line = "RCPT TO:<c@d.test> SIZE=1", .expect = "ERR 555 5.5.4" },
	{ .line = "RCPT TO:<c@d.test> SMTPUTF8", .expect = "ERR 555 5.5.4" },
	{ .line = "RCPT TO:c@d.test", .expect = "ERR 501 5.5.4" },
	{ .line = "RCPT FROM:<c@d.test>", .expect = "ERR 501 5.5.2" },
	{ .line = "RCPT TO:<c@d.test", .expect = "ERR 501 5.1.3" },
	{ .line = "RCPT TO:<\"c@d.test>", .expect = "ERR 501 5.1.3" },
	/* BDAT */
	{ .line = "BDAT 1000", .expect = "BDAT n=1000" },
	{ .line = "BDAT 0 LAST", .expect = "BDAT n=0 last" },
	{ .line = "bdat 10 last", .expect = "BDAT n=10 last" },
	{ .line = "BDAT 18446744073709551615 LAST", .expect = "BDAT n=18446744073709551615 last" },
	{ .line = "BDAT 18446744073709551616", .expect = "ERR 501 5.5.4" },
	{ .line = "BDAT 99999999999999999999", .expect = "ERR 501 5.5.4" },
	{ .line = "BDAT 123456789012345678901", .expect = "ERR 501 5.5.4" },
	{ .line = "BDAT", .expect = "ERR 501 5.5.4" },
	{ .line = "BDAT -1", .expect = "ERR 501 5.5.4" },
	{ .line = "BDAT 0x10", .expect = "ERR 501 5.5.4" },
	{ .line = "BDAT 10 FIRST", .expect = "ERR 501 5.5.4" },
	{ .line = "BDAT 10 LAST LAST", .expect = "ERR 501 5.5.4" },
	/* AUTH */
	{ .line = "AUTH PLAIN", .expect = "AUTH m=PLAIN" },
	{ .line = "AUTH PLAIN AHVzZXIAcGFzcw==", .expect = "AUTH m=PLAIN ir=AHVzZXIAcGFzcw==" },
	{ .line = "auth plain =", .expect = "AUTH m=plain ir==" },
	{ .line = "AUTH SCRAM-SHA-256", .expect = "AUTH m=SCRAM-SHA-256" },
	{ .line = "AUTH", .expect = "ERR 501 5.5.4" },
	{ .line = "AUTH PLAIN abc def", .expect = "ERR 501 5.5.4" },
	{ .line = "AUTH PLAIN ab=c", .expect = "ERR 501 5.5.4" },
	{ .line = "AUTH PLAIN abc===", .expect = "ERR 501 5.5.4" },
	{ .line = "AUTH PL*IN", .expect = "ERR 501 5.5.4" },
	{ .line = "AUTH ABCDEFGHIJKLMNOPQRSTU", .expect = "ERR 501 5.5.4" },
};

static void render_view(struct buf *b, const char *key, struct smtp_view v)
{
	if (v.data == NULL)
		return;
	buf_printf(b, " %s=", key);
	test_escape(b, v.data, v.len);
}

static void render(struct buf *b, int ret, const struct smtp_command *c, const struct smtp_parse_error *err)
{
	buf_reset(b);
	if (ret < 0) {
		assert_int_equal(ret, -1);
		assert_non_null(err->text);
		buf_printf(b, "ERR %d %s", err->code, err->enhanced);
		return;
	}
	assert_int_equal(ret, 0);
	buf_append_str(b, c->verb_name);
	switch (c->verb) {
	case SMTP_VERB_EHLO:
	case SMTP_VERB_HELO:
		render_view(b, "d", c->domain);
		buf_append_str(b, c->domain_valid ? " valid" : " invalid");
		break;
	case SMTP_VERB_MAIL:
	case SMTP_VERB_RCPT:
		render_view(b, "p", c->path);
		if (c->mail.has_size)
			buf_printf(b, " size=%llu", (unsigned long long)c->mail.size);
		if (c->mail.body != SMTP_BODY_NONE)
			buf_printf(b, " body=%d", (int)c->mail.body);
		if (c->mail.smtputf8)
			buf_append_str(b, " utf8");
		if (c->mail.ret != SMTP_RET_NONE)
			buf_printf(b, " ret=%d", (int)c->mail.ret);
		if (c->mail.has_envid) {
			assert_int_equal(strlen(c->mail.envid), c->mail.envid_len);
			buf_append_str(b, " envid=");
			test_escape(b, c->mail.envid, c->mail.envid_len);
		}
		render_view(b, "auth", c->mail.auth);
		if (c->rcpt.notify != 0)
			buf_printf(b, " notify=%u", c->rcpt.notify);
		if (c->rcpt.has_orcpt) {
			render_view(b, "orcpt", c->rcpt.orcpt_type);
			buf_append_c(b, ';');
			test_escape(b, c->rcpt.orcpt, c->rcpt.orcpt_len);
		}
		break;
	case SMTP_VERB_BDAT:
		buf_printf(b, " n=%llu%s", (unsigned long long)c->bdat_size, c->bdat_last ? " last" : "");
		break;
	case SMTP_VERB_AUTH:
		render_view(b, "m", c->auth_mech);
		render_view(b, "ir", c->auth_initial);
		break;
	case SMTP_VERB_NOOP:
	case SMTP_VERB_HELP:
	case SMTP_VERB_VRFY:
	case SMTP_VERB_EXPN:
		render_view(b, "arg", c->arg);
		break;
	default:
		assert_int_equal(c->arg.len, 0);
		break;
	}
}

static size_t case_len(const struct cmd_case *c)
{
	return c->len != 0 ? c->len : strlen(c->line);
}

static void test_command_table(void **state)
{
	struct buf b;
	buf_init(&b, 4096);
	for (size_t i = 0; i < sizeof(cmd_cases) / sizeof(cmd_cases[0]); i++) {
		const struct cmd_case *c = &cmd_cases[i];
		struct smtp_command cmd;
		struct smtp_parse_error err = { 0 };
		int ret = smtp_command_parse(c->line, case_len(c), &cmd, &err);
		render(&b, ret, &cmd, &err);
		if (strcmp(b.data, c->expect) != 0)
			fail_msg("case %zu '%s': got '%s' want '%s'", i, c->line, b.data, c->expect);
	}
	buf_deinit(&b);
}

/*
 * Trickle: every case as one CRLF-terminated line of a single pipelined stream,
 * through smtp_line then smtp_command, fed whole and one byte at a time.
 */
static void run_stream(const char *stream, size_t len, size_t chunk, struct buf *b)
{
	struct smtp_line_reader r;
	smtp_line_reader_init(&r, 1000);
	size_t pos = 0, idx = 0;
	while (pos < len) {
		size_t n = len - pos < chunk ? len - pos : chunk;
		size_t used;
		struct smtp_line line;
		int ret = smtp_line_reader_feed(&r, stream + pos, n, &used, &line);
		pos += used;
		if (ret == SMTP_LINE_AGAIN)
			continue;
		assert_int_equal(ret, SMTP_LINE_OK);
		struct smtp_command cmd;
		struct smtp_parse_error err;
		int pr = smtp_command_parse(line.data, line.len, &cmd, &err);
		render(b, pr, &cmd, &err);
		if (strcmp(b->data, cmd_cases[idx].expect) != 0)
			fail_msg("stream case %zu chunk %zu: got '%s' want '%s'", idx, chunk, b->data,
				 cmd_cases[idx].expect);
		idx++;
	}
	assert_int_equal(idx, sizeof(cmd_cases) / sizeof(cmd_cases[0]));
	smtp_line_reader_deinit(&r);
}

static void test_command_trickle(void **state)
{
	struct buf stream, b;
	buf_init(&stream, 1 << 20);
	buf_init(&b, 4096);
	for (size_t i = 0; i < sizeof(cmd_cases) / sizeof(cmd_cases[0]); i++) {
		assert_int_equal(buf_append(&stream, cmd_cases[i].line, case_len(&cmd_cases[i])), 0);
		assert_int_equal(buf_append(&stream, "\r\n", 2), 0);
	}
	run_stream(stream.data, stream.len, SIZE_MAX, &b);
	run_stream(stream.data, stream.len, 1, &b);
	run_stream(stream.data, stream.len, 7, &b);
	buf_deinit(&stream);
	buf_deinit(&b);
}

static void test_xtext(void **state)
{
	char out[8];
	assert_int_equal(smtp_xtext_decode("a+2Bb", 5, out, sizeof(out)), 3);
	assert_string_equal(out, "a+b");
	assert_int_equal(smtp_xtext_decode("", 0, out, sizeof(out)), 0);
	assert_int_equal(smtp_xtext_decode("abcdefgh", 8, out, sizeof(out)), -1);
	assert_int_equal(smtp_xtext_decode("abcdefg", 7, out, sizeof(out)), 7);
	assert_int_equal(smtp_xtext_decode("a b", 3, out, sizeof(out)), -1);
	assert_int_equal(smtp_xtext_decode("+4", 2, out, sizeof(out)), -1);
}

/*
 * The way the session uses both parsers: command line -> path -> address, with
 * SMTPUTF8 from the MAIL parameters. expect: "ERR code enh" from whichever
 * parser refused, else the canonical address.
 */
struct session_case {
	const char *line;
	const char *expect;
};

static const struct session_case session_cases[] = {
	{ "MAIL FROM:<>", "" },
	{ "RCPT TO:<>", "ERR 501 5.1.3" },
	{ "RCPT TO:<postmaster>", "postmaster" },
	{ "MAIL FROM:<postmaster>", "ERR 501 5.1.3" },
	{ "RCPT TO:<@relay.test:user@example.test>", "user@example.test" },
	{ "RCPT TO:<user%evil.test@example.test>", "user%evil.test@example.test" },
	{ "RCPT TO:<evil.test!user@example.test>", "evil.test!user@example.test" },
	{ "RCPT TO:<\"user@evil.test\"@example.test>", "\"user@evil.test\"@example.test" },
	{ "RCPT TO:<user@evil.test.>", "user@evil.test" },
	{ "RCPT TO:<user@[127.0.0.1]>", "user@[127.0.0.1]" },
	{ "RCPT TO:<USER@EXAMPLE.TEST>", "USER@example.test" },
	{ "RCPT TO:<user@-bad.test>", "ERR 501 5.1.3" },
	{ "RCPT TO:<user@a..b>", "ERR 501 5.1.3" },
	{ "RCPT TO:user@example.test", "ERR 501 5.5.4" },
	{ "RCPT TO:<user@example.test", "ERR 501 5.1.3" },
	{ "RCPT TO:<<user@example.test>", "ERR 501 5.1.3" },
	{ "MAIL FROM:<j\xc3\xb6rg@example.test>", "ERR 553 5.6.7" },
	{ "MAIL FROM:<j\xc3\xb6rg@example.test> SMTPUTF8", "j\xc3\xb6rg@example.test" },
	{ "MAIL FROM:<j\xc3\xb6rg@example.test> SMTPUTF8=x", "ERR 501 5.5.4" },
};

static void test_command_with_address(void **state)
{
	for (size_t i = 0; i < sizeof(session_cases) / sizeof(session_cases[0]); i++) {
		const struct session_case *c = &session_cases[i];
		struct smtp_command cmd;
		struct smtp_address addr;
		struct smtp_parse_error err;
		char got[SMTP_ADDRESS_FORMAT_MAX + 32];
		if (smtp_command_parse(c->line, strlen(c->line), &cmd, &err) == 0) {
			unsigned flags = cmd.verb == SMTP_VERB_MAIL ? SMTP_ADDRESS_ALLOW_NULL
								    : SMTP_ADDRESS_ALLOW_POSTMASTER;
			if (cmd.mail.smtputf8)
				flags |= SMTP_ADDRESS_ALLOW_UTF8;
			if (smtp_address_parse(cmd.path.data, cmd.path.len, flags, &addr, &err) == 0) {
				assert_true(smtp_address_format(&addr, got, sizeof(got)) >= 0);
				goto check;
			}
		}
		snprintf(got, sizeof(got), "ERR %d %s", err.code, err.enhanced);
check:
		if (strcmp(got, c->expect) != 0)
			fail_msg("session case '%s': got '%s' want '%s'", c->line, got, c->expect);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_command_table),
		cmocka_unit_test(test_command_trickle),
		cmocka_unit_test(test_xtext),
		cmocka_unit_test(test_command_with_address),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
