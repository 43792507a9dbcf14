/* queue_triggers: the webhook document, its signature, pipe exit codes, auto-reply rules and message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <cmocka.h>
#include <jansson.h>

#include "queued/queue_triggers.h"

#define CRLF "\r\n"

static const char multipart[] =
	"Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=client.test" CRLF
	"From: =?UTF-8?Q?J=C3=BCrgen?= <j@client.test>" CRLF
	"To: info@example.test" CRLF
	"Cc: b@example.test" CRLF
	"Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= and more" CRLF
	"Date: Mon, 2 Nov 2026 10:00:00 +0000" CRLF
	"Message-ID: <m1@client.test>" CRLF
	"MIME-Version: 1.0" CRLF
	"Content-Type: multipart/mixed; boundary=\"b1\"" CRLF
	CRLF
	"--b1" CRLF
	"Content-Type: multipart/alternative; boundary=\"b2\"" CRLF
	CRLF
	"--b2" CRLF
	"Content-Type: text/plain; charset=utf-8" CRLF
	"Content-Transfer-Encoding: quoted-printable" CRLF
	CRLF
	"Hello =C3=A9" CRLF
	"--b2" CRLF
	"Content-Type: text/html; charset=utf-8" CRLF
	CRLF
	"<p>Hello</p>" CRLF
	"--b2--" CRLF
	"--b1" CRLF
	"Content-Type: application/pdf; name=\"x.pdf\"" CRLF
	"Content-Disposition: attachment; filename=\"invoice.pdf\"" CRLF
	"Content-Transfer-Encoding: base64" CRLF
	CRLF
	"AAECAwQFBgcICQ==" CRLF
	"--b1--" CRLF;

struct json_case {
	const char *name;
	const char *raw;
	const char *path[4];   /* keys from the root; NULL-terminated */
	const char *expect;    /* string value; NULL = JSON null; "#N" = integer N; "[N" = array of N */
};

static const struct json_case json_cases[] = {
	{ "sender", multipart, { "envelope", "sender" }, "j@client.test" },
	{ "recipient", multipart, { "envelope", "recipient" }, "info@example.test" },
	{ "orcpt", multipart, { "envelope", "original_recipient" }, "info@example.test" },
	{ "arrival", multipart, { "envelope", "arrival" }, "2023-11-14T22:13:20Z" },
	{ "from decoded", multipart, { "headers", "from" }, "J\xc3\xbcrgen <j@client.test>" },
	{ "subject latin1", multipart, { "headers", "subject" }, "Gr\xc3\xbc\xc3\x9f" "e and more" },
	{ "cc", multipart, { "headers", "cc" }, "b@example.test" },
	{ "message id", multipart, { "headers", "message_id" }, "<m1@client.test>" },
	{ "text qp", multipart, { "text" }, "Hello \xc3\xa9" },
	{ "html", multipart, { "html" }, "<p>Hello</p>" },
	{ "attachments", multipart, { "attachments" }, "[1" },
	{ "attachment name", multipart, { "attachments", "0", "filename" }, "invoice.pdf" },
	{ "attachment type", multipart, { "attachments", "0", "content_type" }, "application/pdf" },
	{ "attachment size", multipart, { "attachments", "0", "size" }, "#10" },
	{ "auth results", multipart, { "authentication_results" }, "mx.example.test; spf=pass smtp.mailfrom=client.test" },
	{ "webhook", multipart, { "webhook" }, "crm" },
	{ "idempotency", multipart, { "idempotency_key" }, "Q123-2" },
	{ "plain text", "Subject: hi" CRLF CRLF "body" CRLF, { "text" }, "body" CRLF },
	{ "no html", "Subject: hi" CRLF CRLF "body" CRLF, { "html" }, NULL },
	{ "no cc", "Subject: hi" CRLF CRLF "body" CRLF, { "headers", "cc" }, NULL },
	{ "no auth results", "Subject: hi" CRLF CRLF "body" CRLF, { "authentication_results" }, NULL },
	{ "no attachments", "Subject: hi" CRLF CRLF "body" CRLF, { "attachments" }, "[0" },
	/* Bytes that are not UTF-8 must still give valid JSON. */
	{ "bad utf8", "Subject: a\xff" "b" CRLF CRLF "x\xc3" CRLF, { "headers", "subject" }, "a\xef\xbf\xbd" "b" },
	{ "header only", "Subject: only", { "headers", "subject" }, "only" },
	{ "empty", "", { "headers", "from" }, NULL },
};

static void test_json(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(json_cases) / sizeof(json_cases[0]); i++) {
		const struct json_case *c = &json_cases[i];
		struct queue_trigger_envelope e = {
			.webhook = "crm", .queue_id = "Q123", .idx = 2, .sender = "j@client.test",
			.recipient = "info@example.test", .original_recipient = "info@example.test", .arrival = 1700000000,
		};
		char *s = queue_triggers_webhook_json(&e, c->raw, strlen(c->raw));
		json_error_t je;
		json_t *root = json_loads(s, JSON_REJECT_DUPLICATES, &je);
		if (root == NULL)
			fprintf(stderr, "case %s: invalid JSON (%s): %s\n", c->name, je.text, s);
		assert_non_null(root);
		json_t *v = root;
		for (int k = 0; k < 4 && c->path[k] != NULL; k++)
			v = json_is_array(v) ? json_array_get(v, (size_t)strtoul(c->path[k], NULL, 10)) : json_object_get(v, c->path[k]);
		if (v == NULL)
			fprintf(stderr, "case %s: missing\n%s\n", c->name, s);
		assert_non_null(v);
		if (c->expect == NULL) {
			if (!json_is_null(v))
				fprintf(stderr, "case %s: expected null\n%s\n", c->name, s);
			assert_true(json_is_null(v));
		} else if (c->expect[0] == '#') {
			assert_true(json_is_integer(v));
			assert_int_equal(json_integer_value(v), strtol(c->expect + 1, NULL, 10));
		} else if (c->expect[0] == '[') {
			assert_true(json_is_array(v));
			assert_int_equal(json_array_size(v), strtol(c->expect + 1, NULL, 10));
		} else {
			if (!json_is_string(v) || strcmp(json_string_value(v), c->expect) != 0)
				fprintf(stderr, "case %s: got %s\n", c->name, json_is_string(v) ? json_string_value(v) : "?");
			assert_true(json_is_string(v));
			assert_string_equal(json_string_value(v), c->expect);
		}
		json_decref(root);
		free(s);
	}
}

static void test_text_cap(void **state)
{
	(void)state;
	size_t n = QUEUE_TRIGGERS_MAX_TEXT + 1000;
	char *raw = malloc(n + 64);
	int h = snprintf(raw, 64, "Subject: big\r\n\r\n");
	/* two-byte characters: the cut must not split one */
	for (size_t i = 0; i < n; i += 2) {
		raw[h + i] = (char)0xc3;
		raw[h + i + 1] = (char)0xa9;
	}
	struct queue_trigger_envelope e = { .webhook = "w", .queue_id = "Q", .sender = "", .recipient = "r@x.test" };
	char *s = queue_triggers_webhook_json(&e, raw, (size_t)h + n);
	json_error_t je;
	json_t *root = json_loads(s, JSON_REJECT_DUPLICATES, &je);
	assert_non_null(root);
	const char *text = json_string_value(json_object_get(root, "text"));
	assert_non_null(text);
	assert_true(strlen(text) <= QUEUE_TRIGGERS_MAX_TEXT);
	assert_null(strstr(text, "\xef\xbf\xbd"));
	assert_true(json_is_true(json_object_get(json_object_get(root, "truncated"), "text")));
	json_decref(root);
	free(s);
	free(raw);
}

static void test_signature(void **state)
{
	(void)state;
	/* Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test */
	static const struct { const char *secret, *ts, *body, *sig; } cases[] = {
		{ "whsec_test", "1700000000", "{\"a\":1}",
		  "sha256=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789" },
		{ "Jefe", "1700000000", "what do ya want for nothing?",
		  "sha256=1cdd0650c8be1cb0974b1788d458b1e781206cfef59b85faafc582d2e182c57e" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = queue_triggers_signature(cases[i].secret, cases[i].ts, cases[i].body, strlen(cases[i].body));
		assert_string_equal(s, cases[i].sig);
		free(s);
	}
	/* a different timestamp gives a different signature */
	char *a = queue_triggers_signature("k", "1", "b", 1), *b = queue_triggers_signature("k", "2", "b", 1);
	assert_string_not_equal(a, b);
	free(a);
	free(b);
}

#define EXITED(n) ((n) << 8)
#define SIGNALED(s) (s)

static void test_exit_codes(void **state)
{
	(void)state;
	static const struct { int wstatus; bool timed_out; enum queue_trigger_result r; const char *status; } cases[] = {
		{ EXITED(0), false, QUEUE_TRIGGER_DONE, "2.0.0" },
		{ EXITED(75), false, QUEUE_TRIGGER_DEFERRED, "4.3.0" },   /* EX_TEMPFAIL */
		{ SIGNALED(9), false, QUEUE_TRIGGER_DEFERRED, "4.3.0" },
		{ SIGNALED(15), false, QUEUE_TRIGGER_DEFERRED, "4.3.0" },
		{ SIGNALED(9), true, QUEUE_TRIGGER_DEFERRED, "4.3.0" },   /* killed by our timeout */
		{ EXITED(0), true, QUEUE_TRIGGER_DEFERRED, "4.3.0" },     /* finished as the timeout fired */
		{ EXITED(64), false, QUEUE_TRIGGER_FAILED, "5.3.0" },     /* EX_USAGE */
		{ EXITED(67), false, QUEUE_TRIGGER_FAILED, "5.3.0" },     /* EX_NOUSER */
		{ EXITED(69), false, QUEUE_TRIGGER_FAILED, "5.3.0" },     /* EX_UNAVAILABLE */
		{ EXITED(78), false, QUEUE_TRIGGER_FAILED, "5.3.0" },     /* EX_CONFIG */
		{ EXITED(1), false, QUEUE_TRIGGER_FAILED, "5.3.0" },
		{ EXITED(255), false, QUEUE_TRIGGER_FAILED, "5.3.0" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *st = NULL;
		enum queue_trigger_result r = queue_triggers_exit_result(cases[i].wstatus, cases[i].timed_out, &st);
		if (r != cases[i].r)
			fprintf(stderr, "case %zu\n", i);
		assert_int_equal(r, cases[i].r);
		assert_string_equal(st, cases[i].status);
	}
}

static void test_autoreply_rules(void **state)
{
	(void)state;
	static const struct { const char *sender, *raw; int allowed; } cases[] = {
		{ "bob@client.test", "Subject: hi" CRLF CRLF "x" CRLF, 1 },
		{ "", "Subject: hi" CRLF CRLF "x" CRLF, 0 },
		{ "bob@client.test", "List-Id: <l.client.test>" CRLF "Subject: hi" CRLF CRLF "x" CRLF, 0 },
		{ "bob@client.test", "List-Unsubscribe: <mailto:u@client.test>" CRLF CRLF "x" CRLF, 0 },
		{ "bob@client.test", "Precedence: bulk" CRLF CRLF "x" CRLF, 0 },
		{ "bob@client.test", "Precedence: list" CRLF CRLF "x" CRLF, 0 },
		{ "bob@client.test", "Precedence: junk" CRLF CRLF "x" CRLF, 0 },
		{ "bob@client.test", "Precedence: first-class" CRLF CRLF "x" CRLF, 1 },
		{ "bob@client.test", "Auto-Submitted: auto-replied" CRLF CRLF "x" CRLF, 0 },
		{ "bob@client.test", "Auto-Submitted: auto-generated" CRLF CRLF "x" CRLF, 0 },
		{ "bob@client.test", "Auto-Submitted: no" CRLF CRLF "x" CRLF, 1 },
		{ "MAILER-DAEMON@client.test", "Subject: x" CRLF CRLF "x" CRLF, 0 },
		{ "info@example.test", "Subject: x" CRLF CRLF "x" CRLF, 0 },  /* our own From */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *why = NULL;
		int r = queue_triggers_autoreply_allowed(cases[i].sender, "Info <info@example.test>", cases[i].raw,
		                                         strlen(cases[i].raw), &why);
		if (r != cases[i].allowed)
			fprintf(stderr, "case %zu: got %d (%s)\n", i, r, why ? why : "");
		assert_int_equal(r, cases[i].allowed);
		if (r == 0)
			assert_non_null(why);
	}
}

static void test_autoreply_build(void **state)
{
	(void)state;
	struct conf_autoreply ar = { .name = "info", .from = "Info <info@example.test>", .subject = NULL,
		                     .text = "Hello ${sender},\nthanks.\n", .period = 60 };
	const char raw[] = "Subject: Question" CRLF "Message-ID: <q1@client.test>" CRLF "References: <q0@client.test>"
	                   CRLF CRLF "x" CRLF;
	char *m = queue_triggers_autoreply_build(&ar, "bob@client.test", "mx.example.test", raw, strlen(raw), 1700000000);
	assert_non_null(strstr(m, "From: Info <info@example.test>\r\n"));
	assert_non_null(strstr(m, "To: <bob@client.test>\r\n"));
	assert_non_null(strstr(m, "Subject: Auto: Question\r\n"));
	assert_non_null(strstr(m, "Auto-Submitted: auto-replied\r\n"));
	assert_non_null(strstr(m, "In-Reply-To: <q1@client.test>\r\n"));
	assert_non_null(strstr(m, "References: <q0@client.test>\r\n <q1@client.test>\r\n"));
	assert_non_null(strstr(m, "\r\n\r\nHello bob@client.test,\r\nthanks.\r\n"));
	assert_null(strstr(m, "${sender}"));
	free(m);
	/* a configured subject; a sender with a line break cannot add a header */
	ar.subject = "Re: your mail";
	m = queue_triggers_autoreply_build(&ar, "x@y.test\r\nBcc: z@z.test", "h", "", 0, 0);
	assert_non_null(strstr(m, "Subject: Re: your mail\r\n"));
	assert_null(strstr(m, "\r\nBcc:"));
	assert_null(strstr(m, "In-Reply-To"));
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_text_cap),
		cmocka_unit_test(test_signature),
		cmocka_unit_test(test_exit_codes),
		cmocka_unit_test(test_autoreply_rules),
		cmocka_unit_test(test_autoreply_build),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
