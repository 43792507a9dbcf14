#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "imap/imap_internal.h"
#include "imap/imap_msg.h"

static const char simple[] =
	"From: \"Joe Q. Public\" <john.q.public@example.com>\r\n"
	"To: Mary Smith <mary@x.test>, jdoe@one.test\r\n"
	"Cc: undisclosed-recipients:;\r\n"
	"Subject: Hello\r\n"
	"  world\r\n"
	"Date: Fri, 21 Nov 1997 09:55:06 -0600\r\n"
	"Message-ID: <1234@local.machine.example>\r\n"
	"\r\n"
	"This is a message just to say hello.\r\n"
	"So, \"Hello\".\r\n";

static const char multi[] =
	"From: a@b.test\r\n"
	"Subject: mp\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
	"\r\n"
	"preamble\r\n"
	"--XX\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"\r\n"
	"part one\r\n"
	"--XX\r\n"
	"Content-Type: application/octet-stream; name=x.bin\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"Content-Disposition: attachment; filename=x.bin\r\n"
	"\r\n"
	"aGVsbG8=\r\n"
	"--XX\r\n"
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"Subject: inner\r\n"
	"From: c@d.test\r\n"
	"\r\n"
	"inner body\r\n"
	"--XX--\r\n"
	"epilogue\r\n";

struct section_case {
	const char *msg;
	const char *section;
	int result;
	const char *want;
};

static const struct section_case section_cases[] = {
	{ simple, "HEADER.FIELDS (SUBJECT)", 1, "Subject: Hello\r\n  world\r\n\r\n" },
	{ simple, "HEADER.FIELDS (Message-ID TO)", 1,
	  "To: Mary Smith <mary@x.test>, jdoe@one.test\r\nMessage-ID: <1234@local.machine.example>\r\n\r\n" },
	{ simple, "TEXT", 1, "This is a message just to say hello.\r\nSo, \"Hello\".\r\n" },
	{ simple, "1", 1, "This is a message just to say hello.\r\nSo, \"Hello\".\r\n" },
	{ simple, "2", 1, "" },
	{ multi, "1", 1, "part one" },
	{ multi, "1.MIME", 1, "Content-Type: text/plain; charset=utf-8\r\n\r\n" },
	{ multi, "2", 1, "aGVsbG8=" },
	{ multi, "3.HEADER.FIELDS (subject)", 1, "Subject: inner\r\n\r\n" },
	{ multi, "3.TEXT", 1, "inner body" },
	{ multi, "3.1", 1, "inner body" },
	{ multi, "4", 1, "" },
	{ multi, "HEADER.FIELDS.NOT (From MIME-Version Content-Type)", 1, "Subject: mp\r\n\r\n" },
	{ multi, "BOGUS", -1, NULL },
	{ multi, "HEADER.FIELDS", -1, NULL },
	{ multi, "HEADER.FIELDS ()", -1, NULL },
};

static void test_sections(void **state)
{
	for (size_t i = 0; i < sizeof(section_cases) / sizeof(section_cases[0]); i++) {
		const struct section_case *c = &section_cases[i];
		struct imap_msg m;
		imap_msg_parse(&m, c->msg, strlen(c->msg));
		struct buf out;
		buf_init(&out, 65536);
		int r = imap_msg_section(&m, c->section, &out);
		if (r != c->result || (c->want != NULL && strcmp(out.data, c->want) != 0))
			fail_msg("case %zu [%s]: %d '%s'", i, c->section, r, out.data);
		buf_deinit(&out);
		imap_msg_free(&m);
	}
}

static void test_envelope_bodystructure(void **state)
{
	struct imap_msg m;
	struct buf out;
	buf_init(&out, 65536);
	imap_msg_parse(&m, simple, strlen(simple));
	imap_msg_envelope(&m.root, &out);
	assert_string_equal(out.data,
		"(\"Fri, 21 Nov 1997 09:55:06 -0600\" \"Hello  world\" ((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\"))"
		" ((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\")) ((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\"))"
		" ((\"Mary Smith\" NIL \"mary\" \"x.test\")(NIL NIL \"jdoe\" \"one.test\"))"
		" ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL NIL \"<1234@local.machine.example>\")");
	buf_reset(&out);
	imap_msg_bodystructure(&m.root, &out, false);
	assert_string_equal(out.data, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 52 2)");
	imap_msg_free(&m);
	buf_reset(&out);
	imap_msg_parse(&m, multi, strlen(multi));
	imap_msg_bodystructure(&m.root, &out, true);
	assert_string_equal(out.data,
		"((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 8 1 NIL NIL NIL NIL)"
		"(\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"x.bin\") NIL NIL \"BASE64\" 8 NIL (\"ATTACHMENT\" (\"FILENAME\" \"x.bin\")) NIL NIL)"
		"(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 44 (NIL \"inner\" ((NIL NIL \"c\" \"d.test\")) ((NIL NIL \"c\" \"d.test\"))"
		" ((NIL NIL \"c\" \"d.test\")) NIL NIL NIL NIL NIL) (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 10 1 NIL NIL NIL NIL) 4"
		" NIL NIL NIL NIL)"
		" \"MIXED\" (\"BOUNDARY\" \"XX\") NIL NIL NIL)");
	buf_reset(&out);
	assert_int_equal(imap_msg_binary(&m, "2", &out), 1);
	assert_string_equal(out.data, "hello");
	imap_msg_free(&m);
	buf_deinit(&out);
}

static void test_seqset(void **state)
{
	struct seqset s;
	assert_int_equal(seqset_parse("1:3,7,9:*", &s), 0);
	assert_true(seqset_has(&s, 2, 20));
	assert_false(seqset_has(&s, 5, 20));
	assert_true(seqset_has(&s, 20, 20));
	seqset_free(&s);
	assert_int_equal(seqset_parse("*:4", &s), 0);
	assert_true(seqset_has(&s, 3, 3)); /* 3:4 with star = 3 */
	seqset_free(&s);
	static const char *const bad[] = { "", "0", "1:", ",1", "1,,2", "a", "1:2:3", "99999999999" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(seqset_parse(bad[i], &s), -1);
	struct buf b;
	buf_init(&b, 100);
	uint32_t uids[] = { 1, 2, 3, 5, 7, 8 };
	imap_uidset_append(&b, uids, 6);
	assert_string_equal(b.data, "1:3,5,7:8");
	buf_deinit(&b);
}

static void test_dates(void **state)
{
	assert_int_equal(imap_parse_datetime("17-Jul-1996 02:44:25 -0700", false), 837596665);
	assert_int_equal(imap_parse_datetime(" 7-Jul-1996 02:44:25 +0000", false), 836707465);
	assert_int_equal(imap_parse_datetime("1-Feb-1994", true), 760060800);
	assert_int_equal(imap_parse_datetime("1-Fob-1994", true), -1);
	assert_int_equal(imap_parse_datetime("1-Feb-94", true), -1);
	assert_int_equal(imap_msg_parse_date("Fri, 21 Nov 1997 09:55:06 -0600"), 880127706);
	struct buf b;
	buf_init(&b, 100);
	imap_format_date(&b, 836707465);
	assert_string_equal(b.data, "\" 7-Jul-1996 02:44:25 +0000\"");
	buf_deinit(&b);
}

static const char encoded[] =
	"Subject: =?ISO-8859-1?Q?Caf=E9_cr=E8me?= =?UTF-8?B?w4lDT0xF?=\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/alternative; boundary=b\r\n"
	"\r\n"
	"--b\r\n"
	"Content-Type: text/plain; charset=iso-8859-1\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"Gr=FC=DFe aus M=FCnchen, soft=\r\nbreak\r\n"
	"--b\r\n"
	"Content-Type: text/html; charset=utf-8\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"PHA+0J/RgNC40LLQtdGCINC80LjRgDwvcD4=\r\n"
	"--b--\r\n";

static const struct {
	const char *needle;
	bool in_body, in_subject;
} search_cases[] = {
	{ "münchen", true, false },   /* QP + Latin-1, case folded */
	{ "MÜNCHEN", true, false },
	{ "softbreak", true, false },  /* soft line break removed */
	{ "привет", true, false },     /* base64 + UTF-8 */
	{ "ПРИВЕТ МИР", true, false },
	{ "café crème", false, true }, /* encoded words, Latin-1 */
	{ "crèmeÉcole", false, true }, /* whitespace between adjacent encoded words vanishes */
	{ "école", false, true },
	{ "PHA+", false, false },      /* raw base64 is not text */
	{ "nothing", false, false },
};

static void test_search_decoding(void **state)
{
	struct imap_msg m;
	imap_msg_parse(&m, encoded, strlen(encoded));
	char *subj = imap_msg_header(m.root.hdr, m.root.hdr_len, "Subject");
	for (size_t i = 0; i < sizeof(search_cases) / sizeof(search_cases[0]); i++) {
		bool b = imap_msg_body_search(&m, search_cases[i].needle);
		bool h = imap_msg_text_search(subj, strlen(subj), search_cases[i].needle);
		if (b != search_cases[i].in_body || h != search_cases[i].in_subject)
			fail_msg("case %zu '%s': body %d subject %d", i, search_cases[i].needle, b, h);
	}
	free(subj);
	imap_msg_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sections),
		cmocka_unit_test(test_envelope_bodystructure),
		cmocka_unit_test(test_seqset),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_search_decoding),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
