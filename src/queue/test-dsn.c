/*
 * dsn_build: each case builds a DSN, checks its framing in C (CRLF only, short
 * lines, the boundary only on delimiter lines) and has Python's email package
 * parse it: the dump it prints (headers, part types, every delivery-status
 * field, the returned original) is compared exactly.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/xalloc.h"
#include "queue/dsn.h"

#define NOW 1700000000
#define PYTHON "/usr/bin/python3"

static char tmpdir[] = "/tmp/test-dsn-XXXXXX";

/* Prints a canonical dump of the message in argv[1]. */
static const char py_dump[] =
	"import sys, email, email.utils, re\n"
	"data = open(sys.argv[1], 'rb').read()\n"
	"m = email.message_from_bytes(data)\n"
	"out = []\n"
	"for part in m.walk():\n"
	"    for d in part.defects:\n"
	"        out.append('DEFECT %s %s' % (part.get_content_type(), type(d).__name__))\n"
	"norm = lambda v: ' '.join(str(v).split())\n"
	"for h in ('From', 'To', 'Subject', 'Auto-Submitted', 'MIME-Version', 'Content-Transfer-Encoding'):\n"
	"    out.append('%s: %s' % (h, norm(m[h])))\n"
	"out.append('date-ok: %s' % (email.utils.parsedate_to_datetime(m['Date']).timestamp() == int(sys.argv[2])))\n"
	"out.append('msgid-ok: %s' % bool(re.fullmatch(r'<[^<>@ ]+@[^<>@ ]+>', m['Message-ID'])))\n"
	"out.append('type: %s report-type=%s' % (m.get_content_type(), m.get_param('report-type')))\n"
	"parts = m.get_payload()\n"
	"out.append('parts: ' + ' '.join(p.get_content_type() for p in parts))\n"
	"for i, blk in enumerate(parts[1].get_payload()):\n"
	"    out.append('[%d]' % i)\n"
	"    for k, v in blk.items():\n"
	"        out.append('%s: %s' % (k, norm(v)))\n"
	"if len(parts) > 2:\n"
	"    p3 = parts[2]\n"
	"    out.append('part3: cte=%s' % p3['Content-Transfer-Encoding'])\n"
	"    if p3.get_content_type() == 'message/rfc822':\n"
	"        inner = p3.get_payload()[0]\n"
	"        out.append('subject: %s' % inner['Subject'])\n"
	"        out.append('body: %r' % inner.get_payload(decode=True))\n"
	"    else:\n"
	"        raw = p3.get_payload(decode=True)\n"
	"        h = email.message_from_bytes(raw)\n"
	"        out.append('subject: %s' % h['Subject'])\n"
	"        out.append('headers: %r' % raw)\n"
	"print('\\n'.join(out))\n";

struct dsn_case {
	const char *name;
	struct dsn_request req;
	struct dsn_rcpt rcpts[3];
	const char *original;      /* written to a file for original_fd; NULL: original_fd -1 */
	const char *want;          /* the Python dump */
	const char *text_has[4];   /* lines expected in the human-readable part */
	const char *boundary;      /* expected boundary, when the case is about it */
};

#define ORIG_8BIT \
	"Received: from client.example (client.example [192.0.2.1])\r\n" \
	"\tby mx.example.test with ESMTP id Q1\r\n" \
	"From: Alice <alice@example.net>\r\nTo: bob@example.org\r\nSubject: hello\r\n\r\n" \
	"caf\xc3\xa9 body\r\nline 2\r\n"

static const struct dsn_case cases[] = {
	{ .name = "failure, RET=HDRS, two recipients",
	  .req = { .reporting_mta = "mx.example.test", .envid = "env-1", .sender = "alice@example.net",
		   .queue_id = "Q1", .arrival = NOW - 10000, .return_full = false, .rcpt_count = 2, .now = NOW },
	  .rcpts = { { .final_rcpt = "rfc822;bob@example.org", .orcpt = "rfc822;Bob@Example.org",
		       .action = DSN_FAILED, .status = "5.1.1", .remote_mta = "dns;mx.example.org",
		       .diagnostic = "smtp; 550 5.1.1 no such user", .last_attempt = NOW - 5 },
		     { .final_rcpt = "carol@example.org", .action = DSN_FAILED, .status = "5.4.4",
		       .diagnostic = "X-Mailroute; no MX for example.org" } },
	  .original = ORIG_8BIT,
	  .want = "From: \"Mail Delivery System\" <MAILER-DAEMON@mx.example.test>\n"
		  "To: <alice@example.net>\n"
		  "Subject: Undelivered Mail Returned to Sender\n"
		  "Auto-Submitted: auto-replied\n"
		  "MIME-Version: 1.0\n"
		  "Content-Transfer-Encoding: 7bit\n"
		  "date-ok: True\nmsgid-ok: True\n"
		  "type: multipart/report report-type=delivery-status\n"
		  "parts: text/plain message/delivery-status text/rfc822-headers\n"
		  "[0]\n"
		  "Reporting-MTA: dns; mx.example.test\n"
		  "X-Mailroute-Queue-ID: Q1\n"
		  "Original-Envelope-Id: env-1\n"
		  "Arrival-Date: Tue, 14 Nov 2023 19:26:40 +0000\n"
		  "[1]\n"
		  "Original-Recipient: rfc822;Bob@Example.org\n"
		  "Final-Recipient: rfc822;bob@example.org\n"
		  "Action: failed\n"
		  "Status: 5.1.1\n"
		  "Remote-MTA: dns;mx.example.org\n"
		  "Diagnostic-Code: smtp; 550 5.1.1 no such user\n"
		  "Last-Attempt-Date: Tue, 14 Nov 2023 22:13:15 +0000\n"
		  "[2]\n"
		  "Final-Recipient: rfc822;carol@example.org\n"
		  "Action: failed\n"
		  "Status: 5.4.4\n"
		  "Diagnostic-Code: X-Mailroute; no MX for example.org\n"
		  "part3: cte=7bit\n"
		  "subject: hello\n"
		  "headers: b'Received: from client.example (client.example [192.0.2.1])\\r\\n\\tby mx.example.test "
		  "with ESMTP id Q1\\r\\nFrom: Alice <alice@example.net>\\r\\nTo: bob@example.org\\r\\nSubject: hello\\r\\n'\n",
	  .text_has = { "<bob@example.org>: failed (5.1.1)\r\n", "    remote server: mx.example.org\r\n",
			"    550 5.1.1 no such user\r\n", "The headers of your message are attached.\r\n" } },

	{ .name = "delay, RET=FULL, 8-bit original returned whole",
	  .req = { .reporting_mta = "mx.example.test", .sender = "<alice@example.net>", .queue_id = "Q2",
		   .arrival = NOW - 10000, .return_full = true, .rcpt_count = 1, .now = NOW },
	  .rcpts = { { .final_rcpt = "rfc822;bob@example.org", .action = DSN_DELAYED, .status = "4.4.1",
		       .remote_mta = "mx.example.org", .diagnostic = "connection refused",
		       .last_attempt = NOW - 60, .will_retry_until = NOW + 400000 } },
	  .original = ORIG_8BIT,
	  .want = "From: \"Mail Delivery System\" <MAILER-DAEMON@mx.example.test>\n"
		  "To: <alice@example.net>\n"
		  "Subject: Delayed Mail (still being retried)\n"
		  "Auto-Submitted: auto-replied\n"
		  "MIME-Version: 1.0\n"
		  "Content-Transfer-Encoding: 8bit\n"
		  "date-ok: True\nmsgid-ok: True\n"
		  "type: multipart/report report-type=delivery-status\n"
		  "parts: text/plain message/delivery-status message/rfc822\n"
		  "[0]\n"
		  "Reporting-MTA: dns; mx.example.test\n"
		  "X-Mailroute-Queue-ID: Q2\n"
		  "Arrival-Date: Tue, 14 Nov 2023 19:26:40 +0000\n"
		  "[1]\n"
		  "Final-Recipient: rfc822;bob@example.org\n"
		  "Action: delayed\n"
		  "Status: 4.4.1\n"
		  "Remote-MTA: dns;mx.example.org\n"
		  "Diagnostic-Code: smtp;connection refused\n"
		  "Last-Attempt-Date: Tue, 14 Nov 2023 22:12:20 +0000\n"
		  "Will-Retry-Until: Sun, 19 Nov 2023 13:20:00 +0000\n"
		  "part3: cte=8bit\n"
		  "subject: hello\n"
		  "body: b'caf\\xc3\\xa9 body\\r\\nline 2\\r\\n'\n",
	  .text_has = { "<bob@example.org>: delayed (4.4.1)\r\n", "    will be retried until Sun, 19 Nov 2023 13:20:00 +0000\r\n",
			"A copy of your message is attached.\r\n" } },

	{ .name = "success, RET=FULL above max_full: headers only; bare LF made CRLF",
	  .req = { .reporting_mta = "mx.example.test", .sender = "a b@example.net", .queue_id = "Q3",
		   .return_full = true, .max_full = 20, .rcpt_count = 2, .now = NOW },
	  .rcpts = { { .final_rcpt = "rfc822;bob@example.org", .action = DSN_DELIVERED },
		     { .final_rcpt = "rfc822;list@example.org", .action = DSN_RELAYED, .status = "2.0.0",
		       .remote_mta = "dns; relay.example.org", .diagnostic = "smtp; 250 2.0.0 ok" } },
	  .original = "Subject: big\nX-A: 1\n\nbody that makes the message larger than twenty bytes\n",
	  .want = "From: \"Mail Delivery System\" <MAILER-DAEMON@mx.example.test>\n"
		  "To: <\"a b\"@example.net>\n"
		  "Subject: Successful Mail Delivery Report\n"
		  "Auto-Submitted: auto-replied\n"
		  "MIME-Version: 1.0\n"
		  "Content-Transfer-Encoding: 7bit\n"
		  "date-ok: True\nmsgid-ok: True\n"
		  "type: multipart/report report-type=delivery-status\n"
		  "parts: text/plain message/delivery-status text/rfc822-headers\n"
		  "[0]\n"
		  "Reporting-MTA: dns; mx.example.test\n"
		  "X-Mailroute-Queue-ID: Q3\n"
		  "[1]\n"
		  "Final-Recipient: rfc822;bob@example.org\n"
		  "Action: delivered\n"
		  "Status: 2.0.0\n"
		  "[2]\n"
		  "Final-Recipient: rfc822;list@example.org\n"
		  "Action: relayed\n"
		  "Status: 2.0.0\n"
		  "Remote-MTA: dns; relay.example.org\n"
		  "Diagnostic-Code: smtp; 250 2.0.0 ok\n"
		  "part3: cte=7bit\n"
		  "subject: big\n"
		  "headers: b'Subject: big\\r\\nX-A: 1\\r\\n'\n",
	  .text_has = { "<bob@example.org>: delivered (2.0.0)\r\n", "<list@example.org>: relayed (2.0.0)\r\n",
			"The headers of your message are attached (the whole message was too large to\r\n" } },

	{ .name = "the derived boundary occurs in the original: another one is chosen",
	  .req = { .reporting_mta = "mx.example.test", .sender = "alice@example.net", .queue_id = "Q4",
		   .return_full = true, .rcpt_count = 1, .now = NOW },
	  .rcpts = { { .final_rcpt = "rfc822;bob@example.org", .action = DSN_FAILED } },
	  .original = "Subject: trap\r\n\r\n--=_mr_Q4_1700000000_0\r\nContent-Type: text/plain\r\n\r\n"
		      "=_mr_Q4_1700000000_1--\r\n",
	  .want = "From: \"Mail Delivery System\" <MAILER-DAEMON@mx.example.test>\n"
		  "To: <alice@example.net>\n"
		  "Subject: Undelivered Mail Returned to Sender\n"
		  "Auto-Submitted: auto-replied\n"
		  "MIME-Version: 1.0\n"
		  "Content-Transfer-Encoding: 7bit\n"
		  "date-ok: True\nmsgid-ok: True\n"
		  "type: multipart/report report-type=delivery-status\n"
		  "parts: text/plain message/delivery-status message/rfc822\n"
		  "[0]\n"
		  "Reporting-MTA: dns; mx.example.test\n"
		  "X-Mailroute-Queue-ID: Q4\n"
		  "[1]\n"
		  "Final-Recipient: rfc822;bob@example.org\n"
		  "Action: failed\n"
		  "Status: 5.0.0\n"
		  "part3: cte=7bit\n"
		  "subject: trap\n"
		  "body: b'--=_mr_Q4_1700000000_0\\r\\nContent-Type: text/plain\\r\\n\\r\\n=_mr_Q4_1700000000_1--\\r\\n'\n",
	  .boundary = "=_mr_Q4_1700000000_2" },

	{ .name = "hostile values: CRLF injection, 8-bit, a long diagnostic folded; no original",
	  .req = { .reporting_mta = "mx.example.test", .sender = "alice@example.net",
		   .envid = "e\r\nX-Evil: 1", .rcpt_count = 1, .original_fd = -1, .now = NOW },
	  .rcpts = { { .final_rcpt = "rfc822;bob@example.org\r\nAction: delivered", .action = DSN_FAILED,
		       .diagnostic = "smtp; 550 5.7.1 r\xc3\xa9jected\r\n\r\nStatus: 2.0.0 "
				     "aaaaaaaaaa bbbbbbbbbb cccccccccc dddddddddd eeeeeeeeee ffffffffff gggggggggg "
				     "hhhhhhhhhh iiiiiiiiii jjjjjjjjjj kkkkkkkkkk llllllllll" } },
	  .want = "From: \"Mail Delivery System\" <MAILER-DAEMON@mx.example.test>\n"
		  "To: <alice@example.net>\n"
		  "Subject: Undelivered Mail Returned to Sender\n"
		  "Auto-Submitted: auto-replied\n"
		  "MIME-Version: 1.0\n"
		  "Content-Transfer-Encoding: 7bit\n"
		  "date-ok: True\nmsgid-ok: True\n"
		  "type: multipart/report report-type=delivery-status\n"
		  "parts: text/plain message/delivery-status\n"
		  "[0]\n"
		  "Reporting-MTA: dns; mx.example.test\n"
		  "Original-Envelope-Id: e X-Evil: 1\n"
		  "[1]\n"
		  "Final-Recipient: rfc822;bob@example.org Action: delivered\n"
		  "Action: failed\n"
		  "Status: 5.0.0\n"
		  "Diagnostic-Code: smtp; 550 5.7.1 r??jected Status: 2.0.0 aaaaaaaaaa bbbbbbbbbb cccccccccc "
		  "dddddddddd eeeeeeeeee ffffffffff gggggggggg hhhhhhhhhh iiiiiiiiii jjjjjjjjjj kkkkkkkkkk llllllllll\n",
	  .text_has = { "    550 5.7.1 r??jected Status: 2.0.0 aaaaaaaaaa bbbbbbbbbb cccccccccc\r\n" } },
};

static char *write_temp(const char *name, const char *data, size_t len)
{
	char *path = xasprintf("%s/%s", tmpdir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

static char *run_python(const char *script, const char *file, long now)
{
	char *script_path = write_temp("dump.py", script, strlen(script));
	char *cmd = xasprintf(PYTHON " '%s' '%s' %ld 2>&1", script_path, file, now);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	char *out = xcalloc(1, 65536);
	size_t n = fread(out, 1, 65535, p);
	out[n] = '\0';
	int status = pclose(p);
	if (status != 0)
		fprintf(stderr, "python failed (%d):\n%s\n", status, out);
	assert_int_equal(status, 0);
	free(cmd);
	free(script_path);
	return out;
}

static size_t count(const char *hay, size_t len, const char *needle)
{
	size_t n = 0, nl = strlen(needle);
	for (const char *p = hay; (p = memmem(p, len - (size_t)(p - hay), needle, nl)) != NULL; p += nl)
		n++;
	return n;
}

/* CRLF line ends only, no line above 998 bytes, the boundary only where it belongs. */
static void check_framing(const char *msg, size_t len, const char *want_boundary, bool has_original)
{
	size_t line = 0;
	for (size_t i = 0; i < len; i++) {
		if (msg[i] == '\n')
			assert_true(i > 0 && msg[i - 1] == '\r');
		if (msg[i] == '\r')
			assert_true(i + 1 < len && msg[i + 1] == '\n');
		line = msg[i] == '\n' ? 0 : line + 1;
		assert_true(line <= 998);
	}
	const char *b = strstr(msg, "boundary=\"");
	assert_non_null(b);
	b += strlen("boundary=\"");
	const char *e = strchr(b, '"');
	char *boundary = xstrndup(b, (size_t)(e - b));
	if (want_boundary != NULL)
		assert_string_equal(boundary, want_boundary);
	/* Once in Content-Type, once per part delimiter, once closing. */
	assert_int_equal(count(msg, len, boundary), 1 + (has_original ? 3 : 2) + 1);
	char *close = xasprintf("\r\n--%s--\r\n", boundary);
	assert_true(len >= strlen(close) && memcmp(msg + len - strlen(close), close, strlen(close)) == 0);
	free(close);
	free(boundary);
}

static void test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct dsn_case *c = &cases[i];
		struct dsn_request req = c->req;
		req.rcpts = c->rcpts;
		req.original_fd = -1;
		if (c->original != NULL) {
			char *path = write_temp("original", c->original, strlen(c->original));
			req.original_fd = open(path, O_RDONLY);
			assert_true(req.original_fd >= 0);
			free(path);
		}
		char *msg = NULL, *error = NULL;
		size_t len = 0;
		int ret = dsn_build(&req, &msg, &len, &error);
		if (ret != 0)
			fprintf(stderr, "case %zu (%s): %s\n", i, c->name, error);
		assert_int_equal(ret, 0);
		assert_int_equal(strlen(msg), len);
		if (req.original_fd >= 0)
			close(req.original_fd);
		check_framing(msg, len, c->boundary, c->original != NULL);
		for (size_t t = 0; t < 4 && c->text_has[t] != NULL; t++) {
			if (strstr(msg, c->text_has[t]) == NULL) {
				fprintf(stderr, "case %zu (%s): no \"%s\" in\n%s\n", i, c->name, c->text_has[t], msg);
				fail();
			}
		}
		char *file = write_temp("dsn.eml", msg, len);
		char *dump = run_python(py_dump, file, NOW);
		if (strcmp(dump, c->want) != 0) {
			fprintf(stderr, "case %zu (%s):\n--- got:\n%s--- want:\n%s--- message:\n%s\n", i, c->name, dump,
				c->want, msg);
			fail();
		}
		free(dump);
		free(file);
		free(msg);
	}
}

struct error_case {
	const char *name;
	const char *sender;
	const char *status;
	size_t rcpt_count;
	const char *error;
};

static const struct error_case error_cases[] = {
	{ "NULL sender", NULL, NULL, 1, "null sender" },
	{ "empty sender", "", NULL, 1, "null sender" },
	{ "<> sender", "<>", NULL, 1, "null sender" },
	{ "no recipients", "a@b.example", NULL, 0, "a DSN needs 1 to 10000 recipients" },
	{ "bad status", "a@b.example", "5.1", 1, "recipient 0: bad status '5.1'" },
	{ "bad status class", "a@b.example", "3.1.1", 1, "recipient 0: bad status '3.1.1'" },
	{ "status too long", "a@b.example", "5.1111.1", 1, "recipient 0: bad status '5.1111.1'" },
	{ "sender with a line end", "a@b.example\r\nBcc: x@y", NULL, 1, "sender has control characters" },
	{ "sender with a bad domain", "a@b <c>", NULL, 1, "sender has a bad domain" },
	{ "bad reporting MTA", "a@b.example", NULL, 1, "bad reporting MTA" },
};

static void test_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
		const struct error_case *c = &error_cases[i];
		struct dsn_rcpt rcpt = { .final_rcpt = "rfc822;x@y.example", .action = DSN_FAILED, .status = c->status };
		const char *mta = strcmp(c->error, "bad reporting MTA") == 0 ? "mx.example.test\r\nBcc: x@y" : "mx.example.test";
		struct dsn_request req = { .reporting_mta = mta, .sender = c->sender, .rcpts = &rcpt,
					   .rcpt_count = c->rcpt_count, .original_fd = -1, .now = NOW };
		char *msg = (char *)"x", *error = NULL;
		size_t len = 1;
		int ret = dsn_build(&req, &msg, &len, &error);
		if (ret != -1 || error == NULL || strcmp(error, c->error) != 0) {
			fprintf(stderr, "error case %zu (%s): ret %d error %s\n", i, c->name, ret, error);
			fail();
		}
		assert_null(msg);
		free(error);
	}
}

/* A header block bigger than one read chunk, split CRLF across chunks; and a message without a body. */
static void test_headers_only_large(void **state)
{
	(void)state;
	/* 15 + 3276 * 20 = 65535 bytes of headers: the empty line's CR is the chunk's last byte. */
	size_t cap = 65535 + 64, len = 0;
	char *orig = xmalloc(cap);
	len += (size_t)snprintf(orig, cap, "Subject: abcd\r\n");
	for (size_t i = 0; i < 3276; i++)
		len += (size_t)snprintf(orig + len, cap - len, "X-Pad: %011zu\r\n", i);
	assert_int_equal(len, 65535);
	memcpy(orig + len, "\r\nbody\r\n", 8);
	len += 8;
	char *path = write_temp("big", orig, len);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct dsn_rcpt rcpt = { .final_rcpt = "rfc822;x@y.example", .action = DSN_FAILED };
	struct dsn_request req = { .reporting_mta = "mx.example.test", .sender = "a@b.example", .rcpts = &rcpt,
				   .rcpt_count = 1, .original_fd = fd, .now = NOW };
	char *msg = NULL, *error = NULL;
	size_t mlen = 0;
	assert_int_equal(dsn_build(&req, &msg, &mlen, &error), 0);
	close(fd);
	/* The header block is returned whole, without the empty line or the body. */
	char *part = strstr(msg, "Content-Type: text/rfc822-headers");
	assert_non_null(part);
	char *start = strstr(part, "\r\n\r\n") + 4;
	assert_memory_equal(start, orig, 65535);
	assert_memory_equal(start + 65535, "\r\n--", 4);
	assert_null(strstr(msg, "body\r\n"));
	free(msg);

	/* No empty line at all: everything is headers. */
	const char *nobody = "Subject: x\r\nX-B: 2\r\n";
	free(path);
	path = write_temp("nobody", nobody, strlen(nobody));
	fd = open(path, O_RDONLY);
	req.original_fd = fd;
	assert_int_equal(dsn_build(&req, &msg, &mlen, &error), 0);
	close(fd);
	assert_non_null(strstr(msg, "Content-Transfer-Encoding: 7bit\r\n\r\nSubject: x\r\nX-B: 2\r\n\r\n--"));
	free(msg);
	free(path);
	free(orig);
}

static void test_date(void **state)
{
	(void)state;
	char d[64];
	dsn_date(0, d, sizeof(d));
	assert_string_equal(d, "Thu, 01 Jan 1970 00:00:00 +0000");
	dsn_date(1700000000, d, sizeof(d));
	assert_string_equal(d, "Tue, 14 Nov 2023 22:13:20 +0000");
	dsn_date(951782400, d, sizeof(d)); /* leap day */
	assert_string_equal(d, "Tue, 29 Feb 2000 00:00:00 +0000");
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char *cmd = xasprintf("rm -rf '%s'", tmpdir);
	int r = system(cmd);
	free(cmd);
	return r == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_headers_only_large),
		cmocka_unit_test(test_date),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
