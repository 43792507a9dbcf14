/*
 * lib-sieve unit tests: tables of (script, message, envelope) -> the exact
 * action list, and (script) -> the exact "name:line:col: message" error.
 * Examples come from each RFC's examples section where it has one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib-sieve/sieve.h"

/* short positional rows in the error and include tables */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include "lib/buf.h"
#include "lib/xalloc.h"

#define MSG1                                                                                      \
	"Date: Tue, 1 Apr 1997 09:06:31 -0800 (PST)\r\n"                                          \
	"From: coyote@desert.example.org\r\n"                                                     \
	"To: roadrunner@acme.example.com\r\n"                                                     \
	"Cc: Wile <wile+frop@example.com>, \"Bugs\" <bugs@example.com>\r\n"                      \
	"Subject: I have a present for you\r\n"                                                   \
	"X-Caffeine: C8H10N4O2\r\n"                                                               \
	"Message-ID: <1@example.org>\r\n"                                                         \
	"\r\n"                                                                                    \
	"Look, I'm sorry about the whole anvil thing, and I really\r\n"                           \
	"didn't mean to try and drop it on you from the top of the\r\n"                           \
	"cliff.  I want to try to make it up to you.  I've got some\r\n"                          \
	"great birdseed over here at my place--top of the line\r\n"                               \
	"stuff--and if you come by, I'll have it all wrapped up\r\n"                              \
	"for you.  I'm really sorry for all the problems I've caused.\r\n"                        \
	"    Wile E. Coyote\r\n"

#define MSG_MIME                                                                                  \
	"From: a@example.com\r\n"                                                                 \
	"To: b@example.net\r\n"                                                                   \
	"Subject: =?utf-8?q?Caf=C3=A9_invoice?=\r\n"                                              \
	"MIME-Version: 1.0\r\n"                                                                   \
	"Content-Type: multipart/mixed; boundary=\"XX\"\r\n"                                      \
	"\r\n"                                                                                    \
	"preamble\r\n"                                                                            \
	"--XX\r\n"                                                                                \
	"Content-Type: text/plain; charset=iso-8859-1\r\n"                                        \
	"Content-Transfer-Encoding: quoted-printable\r\n"                                         \
	"\r\n"                                                                                    \
	"Gr=FC=DFe, please pay the invoice=\r\n"                                                  \
	" today\r\n"                                                                              \
	"--XX\r\n"                                                                                \
	"Content-Type: text/html; charset=utf-8\r\n"                                              \
	"Content-Transfer-Encoding: base64\r\n"                                                   \
	"\r\n"                                                                                    \
	"PGI+c2VjcmV0IGtleXdvcmQ8L2I+\r\n"                                                        \
	"--XX\r\n"                                                                                \
	"Content-Type: application/octet-stream\r\n"                                              \
	"\r\n"                                                                                    \
	"binaryblob\r\n"                                                                          \
	"--XX--\r\n"

struct run_case {
	const char *name;
	const char *script;
	const char *msg;          /* NULL: MSG1 */
	const char *from, *to;    /* NULL: defaults */
	const char *auth;
	uint64_t size;
	const char *want;         /* actions joined by "; " */
	const char *want_error;   /* runtime error substring */
	unsigned ext;             /* 0: SIEVE_EXT_SYSTEM_DEFAULT */
	bool mailboxes;           /* host knows mailbox "Partners" */
	const char *seps;         /* subaddress separators */
};

static int mbox_exists(void *ctx, const char *name)
{
	(void)ctx;
	return strcmp(name, "Partners") == 0;
}

static const struct run_case run_cases[] = {
	/* ---- RFC 5228 core ---- */
	{ .name = "empty script keeps", .script = "", .want = "keep (implicit)" },
	{ .name = "explicit keep", .script = "keep;", .want = "keep" },
	{ .name = "discard", .script = "discard;", .want = "discard" },
	{ .name = "stop before discard", .script = "stop; discard;", .want = "keep (implicit)" },
	{ .name = "redirect", .script = "redirect \"bob@example.com\";", .want = "redirect \"bob@example.com\"" },
	{ .name = "redirect twice merges", .script = "redirect \"bob@example.com\"; redirect \"bob@example.com\";",
	  .want = "redirect \"bob@example.com\"" },
	{ .name = "redirect normalizes and merges",
	  .script = "redirect \"Bob <bob@example.com>\";\nredirect \"bob@example.com\";\n"
		    "redirect \"\\\"Sirius\\\"@example.net\";\nredirect \"\\\"S[r]us\\\"@example.net\";",
	  .want = "redirect \"bob@example.com\"; redirect \"Sirius@example.net\"; redirect \"\\\"S[r]us\\\"@example.net\"" },
	{ .name = "redirect two addresses", .script = "redirect \"a@example.com, b@example.com\";",
	  .want_error = "t:1:1: invalid redirect address 'a@example.com, b@example.com'" },
	{ .name = "redirect bad address", .script = "redirect \"not an address\";",
	  .want_error = "t:1:1: invalid redirect address 'not an address'" },
	{ .name = "if/elsif/else 1",
	  .script = "require \"fileinto\";\n"
		    "if header :contains \"subject\" \"present\" { fileinto \"A\"; }\n"
		    "elsif true { fileinto \"B\"; } else { fileinto \"C\"; }",
	  .want = "fileinto \"A\"" },
	{ .name = "if/elsif/else 2",
	  .script = "require \"fileinto\";\n"
		    "if false { fileinto \"A\"; } elsif header :is \"x-caffeine\" \"C8H10N4O2\" { fileinto \"B\"; }"
		    " else { fileinto \"C\"; }",
	  .want = "fileinto \"B\"" },
	{ .name = "if/elsif/else 3",
	  .script = "require \"fileinto\";\nif false { fileinto \"A\"; } elsif false { fileinto \"B\"; }"
		    " else { fileinto \"C\"; }",
	  .want = "fileinto \"C\"" },
	{ .name = "fileinto twice merges", .script = "require \"fileinto\"; fileinto \"A\"; fileinto \"A\";",
	  .want = "fileinto \"A\"" },
	{ .name = "keep twice merges", .script = "keep; keep;", .want = "keep" },
	/* RFC 5228 section 9 example */
	{ .name = "rfc5228 9 example (coyote)",
	  .script = "require \"fileinto\";\n"
		    "if header :is \"Sender\" \"owner-ietf-mta-filters@imc.org\" { fileinto \"filter\"; }\n"
		    "elsif address :DOMAIN :is [\"From\", \"To\"] \"example.com\" { keep; }\n"
		    "elsif anyof (NOT address :all :contains [\"To\", \"Cc\", \"Bcc\"] \"me@example.com\",\n"
		    "             header :matches \"subject\" [\"*make*money*fast*\", \"*university*dipl*mas*\"]) {\n"
		    "  fileinto \"spam\";\n"
		    "} else { fileinto \"personal\"; }\n",
	  .want = "fileinto \"spam\"" },
	{ .name = "address :localpart", .script = "if address :localpart \"from\" \"coyote\" { discard; }",
	  .want = "discard" },
	{ .name = "address :domain cc list",
	  .script = "if address :domain :is \"cc\" \"example.com\" { discard; }", .want = "discard" },
	{ .name = "address :all in display name",
	  .script = "if address :is \"cc\" \"bugs@example.com\" { discard; }", .want = "discard" },
	{ .name = "header :matches ?",
	  .script = "if header :matches \"x-caffeine\" \"C?H10N4O?\" { discard; }", .want = "discard" },
	{ .name = "header octet case", .script =
	  "if header :comparator \"i;octet\" :is \"x-caffeine\" \"c8h10n4o2\" { discard; }",
	  .want = "keep (implicit)" },
	{ .name = "header casemap", .script = "if header :is \"X-CAFFEINE\" \"c8h10n4o2\" { discard; }",
	  .want = "discard" },
	{ .name = "exists", .script = "if exists [\"From\",\"Date\"] { discard; }", .want = "discard" },
	{ .name = "exists missing", .script = "if exists [\"From\",\"X-None\"] { discard; }",
	  .want = "keep (implicit)" },
	{ .name = "size over", .script = "if size :over 1K { discard; }", .size = 2048, .want = "discard" },
	{ .name = "size under", .script = "if size :under 1K { discard; }", .size = 2048,
	  .want = "keep (implicit)" },
	{ .name = "allof", .script = "if allof (true, exists \"from\") { discard; }", .want = "discard" },
	{ .name = "allof false", .script = "if allof (true, false) { discard; }", .want = "keep (implicit)" },
	{ .name = "anyof", .script = "if anyof (false, true) { discard; }", .want = "discard" },
	{ .name = "not", .script = "if not false { discard; }", .want = "discard" },
	{ .name = "envelope from", .script = "require \"envelope\";\n"
					     "if envelope :domain :is \"from\" \"example.org\" { discard; }",
	  .from = "someone@example.org", .want = "discard" },
	{ .name = "envelope null sender", .script = "require \"envelope\";\n"
						    "if envelope :is \"from\" \"\" { discard; }",
	  .from = "", .want = "discard" },
	{ .name = "envelope to localpart", .script = "require \"envelope\";\n"
						     "if envelope :localpart :is \"to\" \"rcpt\" { discard; }",
	  .to = "rcpt@example.net", .want = "discard" },
	{ .name = "ascii-numeric", .script = "require [\"relational\", \"comparator-i;ascii-numeric\"];\n"
					    "if header :value \"gt\" :comparator \"i;ascii-numeric\" \"x-n\" \"9\" "
					    "{ discard; }",
	  .msg = "X-N: 10\r\n\r\n", .want = "discard" },
	/* ---- copy (RFC 3894) ---- */
	{ .name = "redirect :copy keeps", .script = "require \"copy\"; redirect :copy \"a@example.com\";",
	  .want = "redirect :copy \"a@example.com\"; keep (implicit)" },
	{ .name = "fileinto :copy keeps", .script = "require [\"copy\",\"fileinto\"]; fileinto :copy \"X\";",
	  .want = "fileinto :copy \"X\"; keep (implicit)" },
	/* ---- variables (RFC 5229) ---- */
	{ .name = "rfc5229 set/modifiers",
	  .script = "require [\"variables\", \"fileinto\"];\n"
		    "set \"honorific\" \"Mr\"; set \"first_name\" \"Wile\"; set \"last_name\" \"Coyote\";\n"
		    "set \"vacation\" text:\nDear ${HONORIFIC} ${last_name},\n.\n;\n"
		    "set :length \"n\" \"${vacation}\";\n"
		    "set :upperfirst \"u\" \"abc\"; set :lower :upperfirst \"l\" \"ABC\";\n"
		    "fileinto \"${n}-${u}-${l}-${unknown}\";",
	  .want = "fileinto \"17-Abc-Abc-\"" },
	{ .name = "rfc5229 match variables",
	  .script = "require [\"variables\", \"fileinto\"];\n"
		    "if header :matches \"From\" \"*@*.example.org\" { fileinto \"${2}/${1}\"; }",
	  .want = "fileinto \"desert/coyote\"" },
	{ .name = "rfc5229 list example",
	  .script = "require [\"variables\", \"fileinto\"];\n"
		    "if header :matches \"Subject\" \"I have * for *\" { fileinto \"INBOX.${1}.${2}\"; }",
	  .want = "fileinto \"INBOX.a present.you\"" },
	{ .name = "string test + quotewildcard",
	  .script = "require \"variables\";\nset :quotewildcard \"q\" \"a*b?\";\n"
		    "if string :is \"${q}\" \"a\\\\*b\\\\?\" { discard; }",
	  .want = "discard" },
	{ .name = "string :count skips empty",
	  .script = "require [\"variables\",\"relational\",\"comparator-i;ascii-numeric\"];\n"
		    "if string :count \"eq\" :comparator \"i;ascii-numeric\" [\"a\",\"\",\"b\"] \"2\" { discard; }",
	  .want = "discard" },
	/* ---- imap4flags (RFC 5232) ---- */
	{ .name = "imap4flags internal variable",
	  .script = "require [\"imap4flags\", \"fileinto\"];\n"
		    "addflag \"\\\\Seen\"; addflag [\"$Work\", \"\\\\seen\"]; removeflag \"$Work\";\n"
		    "if hasflag :is \"\\\\SEEN\" { fileinto \"Read\"; }",
	  .want = "fileinto :flags [\"\\Seen\"] \"Read\"" },
	{ .name = "imap4flags :flags on keep",
	  .script = "require \"imap4flags\";\nkeep :flags [\"\\\\Flagged\", \"\\\\Answered\"];",
	  .want = "keep :flags [\"\\Flagged\", \"\\Answered\"]" },
	{ .name = "imap4flags implicit keep carries flags",
	  .script = "require \"imap4flags\";\nsetflag \"\\\\Deleted\";",
	  .want = "keep (implicit) :flags [\"\\Deleted\"]" },
	{ .name = "imap4flags variable form",
	  .script = "require [\"imap4flags\",\"variables\"];\nsetflag \"f\" \"a b\"; addflag \"f\" \"c\";"
		    "if hasflag \"f\" \"c\" { if string \"${f}\" \"a b c\" { discard; } }",
	  .want = "discard" },
	/* ---- subaddress (RFC 5233) ---- */
	{ .name = "subaddress user/detail",
	  .script = "require [\"subaddress\",\"fileinto\"];\n"
		    "if address :detail \"cc\" \"frop\" { if address :user \"cc\" \"wile\" { fileinto \"ok\"; } }",
	  .want = "fileinto \"ok\"" },
	{ .name = "subaddress envelope detail",
	  .script = "require [\"subaddress\",\"envelope\",\"variables\",\"fileinto\"];\n"
		    "if envelope :detail :matches \"to\" \"*\" { fileinto \"box-${1}\"; }",
	  .to = "user+lists@example.net", .want = "fileinto \"box-lists\"" },
	{ .name = "subaddress configured separators",
	  .script = "require [\"subaddress\",\"envelope\",\"variables\",\"fileinto\"];\n"
		    "if envelope :user :matches \"to\" \"*\" { set \"u\" \"${1}\"; }\n"
		    "if envelope :detail :matches \"to\" \"*\" { fileinto \"${u}/${1}\"; }",
	  .to = "user-lists+x@example.net", .seps = "-+", .want = "fileinto \"user/lists+x\"" },
	{ .name = "subaddress no detail fails",
	  .script = "require [\"subaddress\",\"envelope\"];\nif envelope :detail :matches \"to\" \"*\" { discard; }",
	  .to = "user@example.net", .want = "keep (implicit)" },
	/* ---- relational (RFC 5231) ---- */
	{ .name = "rfc5231 :count header",
	  .script = "require [\"relational\",\"comparator-i;ascii-numeric\"];\n"
		    "if address :count \"ge\" :comparator \"i;ascii-numeric\" [\"to\", \"cc\"] [\"3\"] { discard; }",
	  .want = "discard" },
	{ .name = "rfc5231 :value lt",
	  .script = "require \"relational\";\nif header :value \"lt\" \"x-caffeine\" \"D\" { discard; }",
	  .want = "discard" },
	/* ---- body (RFC 5173) ---- */
	{ .name = "body :text decodes qp + latin1",
	  .script = "require \"body\";\nif body :contains \"Grüße\" { discard; }", .msg = MSG_MIME,
	  .want = "discard" },
	{ .name = "body :text qp soft break",
	  .script = "require \"body\";\nif body :contains \"invoice today\" { discard; }", .msg = MSG_MIME,
	  .want = "discard" },
	{ .name = "body :content text/html base64",
	  .script = "require \"body\";\nif body :content \"text/html\" :contains \"secret keyword\" { discard; }",
	  .msg = MSG_MIME, .want = "discard" },
	{ .name = "body :raw sees base64",
	  .script = "require \"body\";\nif body :raw :contains \"PGI+c2VjcmV0\" { discard; }", .msg = MSG_MIME,
	  .want = "discard" },
	{ .name = "body :text skips application",
	  .script = "require \"body\";\nif body :text :contains \"binaryblob\" { discard; }", .msg = MSG_MIME,
	  .want = "keep (implicit)" },
	{ .name = "header RFC 2047 decoded",
	  .script = "if header :contains \"subject\" \"Café\" { discard; }", .msg = MSG_MIME, .want = "discard" },
	/* ---- reject/ereject (RFC 5429) ---- */
	{ .name = "reject", .script = "require \"reject\";\nreject \"go away\";", .want = "reject \"go away\"" },
	{ .name = "ereject", .script = "require \"ereject\";\nereject \"no\";", .want = "ereject \"no\"" },
	{ .name = "reject twice", .script = "require \"reject\";\nreject \"a\";\nreject \"b\";",
	  .want_error = "t:3:1: duplicate reject action" },
	{ .name = "reject + fileinto", .script = "require [\"reject\",\"fileinto\"];\nreject \"a\";\nfileinto \"b\";",
	  .want_error = "t:3:1: fileinto conflicts with the earlier reject action (line 2)" },
	{ .name = "keep + ereject", .script = "require \"ereject\";\nkeep;\nereject \"a\";",
	  .want_error = "t:3:1: ereject conflicts with the earlier keep action (line 2)" },
	{ .name = "redirect :copy + reject", .script = "require [\"reject\",\"copy\"];\nredirect :copy \"x@y.z\";\nreject \"a\";",
	  .want_error = "t:3:1: reject conflicts with the earlier redirect action (line 2)" },
	{ .name = "reject_code may follow an archive copy",
	  .script = "require \"vnd.mailroute\";\nredirect :copy \"x@y.z\";\nreject_code \"550\" \"5.7.1\" \"no\";",
	  .want = "redirect :copy \"x@y.z\"; reject_code \"550\" \"5.7.1\" \"no\"" },
	{ .name = "fileinto bad UTF-8", .script = "require [\"fileinto\",\"encoded-character\"];\nfileinto \"a${hex:ff}\";",
	  .want_error = "t:2:1: invalid folder name \"a\\xff\" (empty or not UTF-8)" },
	{ .name = "reject + vacation", .script = "require [\"reject\",\"vacation\"];\nvacation \"x\";\nreject \"b\";",
	  .want_error = "reject conflicts with an earlier vacation action" },
	/* ---- vacation (RFC 5230) ---- */
	{ .name = "vacation params",
	  .script = "require \"vacation\";\n"
		    "vacation :days 3 :subject \"Out\" :from \"me@example.com\" :addresses [\"a@x.org\"] :mime "
		    ":handle \"h1\" \"I'm away\";",
	  .want = "vacation :seconds 259200 :subject \"Out\" :from \"me@example.com\" :mime \"I'm away\"; "
		  "keep (implicit)" },
	{ .name = "vacation-seconds", .script = "require \"vacation-seconds\";\nvacation :seconds 60 \"x\";",
	  .want = "vacation :seconds 60 \"x\"; keep (implicit)" },
	{ .name = "vacation default 7 days", .script = "require \"vacation\";\nvacation \"x\";",
	  .want = "vacation :seconds 604800 \"x\"; keep (implicit)" },
	{ .name = "vacation twice", .script = "require \"vacation\";\nvacation \"x\";\nvacation \"y\";",
	  .want_error = "t:3:1: duplicate vacation action" },
	/* ---- date/index (RFC 5260) ---- */
	{ .name = "date :originalzone",
	  .script = "require \"date\";\nif date :originalzone \"date\" \"hour\" \"09\" { discard; }",
	  .want = "discard" },
	{ .name = "date :zone",
	  .script = "require \"date\";\nif date :zone \"+0000\" \"date\" \"time\" \"17:06:31\" { discard; }",
	  .want = "discard" },
	{ .name = "date weekday/julian",
	  .script = "require \"date\";\nif allof(date :zone \"-0800\" \"date\" \"weekday\" \"2\","
		    " date :zone \"-0800\" \"date\" \"julian\" \"50539\") { discard; }",
	  .want = "discard" },
	{ .name = "currentdate",
	  .script = "require [\"date\",\"relational\"];\nif currentdate :zone \"+0000\" :value \"ge\" \"date\" "
		    "\"2020-01-01\" { discard; }",
	  .want = "discard" },
	{ .name = "index :last",
	  .script = "require \"index\";\nif header :index 1 :last :is \"received\" \"first\" { discard; }",
	  .msg = "Received: first\r\nReceived: second\r\n\r\n", .want = "keep (implicit)" },
	{ .name = "index 2",
	  .script = "require \"index\";\nif header :index 2 :is \"received\" \"second\" { discard; }",
	  .msg = "Received: first\r\nReceived: second\r\n\r\n", .want = "discard" },
	/* ---- editheader (RFC 5293) ---- */
	{ .name = "addheader then test",
	  .script = "require \"editheader\";\naddheader \"X-Hello\" \"World\";\n"
		    "if header :is \"x-hello\" \"World\" { discard; }",
	  .want = "addheader \"X-Hello\" \"World\"; discard" },
	{ .name = "deleteheader",
	  .script = "require \"editheader\";\ndeleteheader \"X-Caffeine\";\n"
		    "if not exists \"x-caffeine\" { discard; }",
	  .want = "deleteheader \"X-Caffeine\"; discard" },
	{ .name = "deleteheader protected Received",
	  .script = "require \"editheader\";\ndeleteheader \"Received\";\nif exists \"received\" { discard; }",
	  .msg = "Received: x\r\n\r\n", .want = "discard" },
	/* ---- mailbox (RFC 5490) ---- */
	{ .name = "fileinto :create", .script = "require [\"fileinto\",\"mailbox\"];\nfileinto :create \"New\";",
	  .want = "fileinto :create \"New\"" },
	{ .name = "mailboxexists without host", .script = "require \"mailbox\";\n"
							  "if mailboxexists \"INBOX\" { discard; }",
	  .want = "keep (implicit)" },
	/* ---- duplicate (RFC 7352) ---- */
	{ .name = "duplicate records", .script = "require \"duplicate\";\nif duplicate { discard; }",
	  .want = "duplicate :seconds 1209600; keep (implicit)" },
	/* ---- regex ---- */
	{ .name = "regex captures",
	  .script = "require [\"regex\",\"variables\",\"fileinto\"];\n"
		    "if header :regex \"subject\" \"^I have (.*) for (you)$\" { fileinto \"${1}|${2}\"; }",
	  .want = "fileinto \"a present|you\"" },
	{ .name = "regex catastrophic pattern is bounded",
	  .script = "require \"regex\";\nif header :regex \"x-a\" \"(a+)+$\" { discard; }",
	  .msg = "X-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\r\n\r\n",
	  .want_error = "regular expression exceeded its match limit" },
	/* ---- enotify (RFC 5435) ---- */
	{ .name = "notify mailto",
	  .script = "require \"enotify\";\nnotify :importance \"1\" :message \"hi\" \"mailto:a@example.com\";",
	  .want = "notify :importance \"1\" :message \"hi\" \"mailto:a@example.com\"; keep (implicit)" },
	{ .name = "valid_notify_method",
	  .script = "require \"enotify\";\nif valid_notify_method \"mailto:x@y.org\" { discard; }",
	  .want = "discard" },
	/* ---- encoded-character (RFC 5228 2.4.2.4) ---- */
	{ .name = "encoded-character",
	  .script = "require [\"encoded-character\",\"fileinto\"];\nfileinto \"${hex:42 43}${unicode:263a}\";",
	  .want = "fileinto \"BC\xe2\x98\xba\"" },
	/* ---- include (RFC 6609) is tested in test_include ---- */
	/* ---- vnd.mailroute ---- */
	{ .name = "mailroute route relay",
	  .script = "require [\"vnd.mailroute\",\"envelope\"];\n"
		    "if envelope :domain :is \"to\" \"partner.example\" { route :relay \"partner-smarthost\"; }",
	  .to = "x@partner.example", .want = "route :relay \"partner-smarthost\"; keep (implicit)" },
	{ .name = "mailroute route transport last wins",
	  .script = "require \"vnd.mailroute\";\nroute :relay \"a\";\nroute :transport \"b\";",
	  .want = "route :transport \"b\"; keep (implicit)" },
	{ .name = "mailroute webhook + tag",
	  .script = "require \"vnd.mailroute\";\n"
		    "if header :contains \"subject\" \"present\" { webhook \"crm\"; tag \"X-Tag\" \"gift\"; }\n"
		    "if header :is \"x-tag\" \"gift\" { webhook \"crm\"; }",
	  .want = "webhook \"crm\"; addheader :last \"X-Tag\" \"gift\"; keep (implicit)" },
	{ .name = "mailroute quarantine",
	  .script = "require \"vnd.mailroute\";\nif size :over 1M { quarantine \"too big\"; }", .size = 2000000,
	  .want = "quarantine \"too big\"" },
	{ .name = "mailroute reject_code",
	  .script = "require [\"vnd.mailroute\", \"body\"];\n"
		    "if body :contains \"anvil\" { reject_code \"550\" \"5.7.1\" \"no anvils\"; }",
	  .ext = SIEVE_EXT_SYSTEM_DEFAULT, .want = "reject_code \"550\" \"5.7.1\" \"no anvils\"" },
	{ .name = "mailroute archive copy",
	  .script = "require \"vnd.mailroute\";\nredirect :copy \"archive@example.com\";",
	  .want = "redirect :copy \"archive@example.com\"; keep (implicit)" },
	{ .name = "mailroute sender routing",
	  .script = "require [\"vnd.mailroute\",\"envelope\"];\n"
		    "if envelope :domain :is \"from\" \"bulk.example\" { route :transport \"slow\"; }",
	  .from = "news@bulk.example", .want = "route :transport \"slow\"; keep (implicit)" },

	/* ---- more RFC examples ---- */
	{ .name = "rfc5230 example",
	  .script = "require \"vacation\";\nif header :contains \"subject\" \"cyrus\" {\n"
		    "  vacation \"I'm out -- send mail to cyrus-bugs\";\n} else {\n"
		    "  vacation \"I'm out -- call me at +1 304 555 0123\";\n}",
	  .want = "vacation :seconds 604800 \"I'm out -- call me at +1 304 555 0123\"; keep (implicit)" },
	{ .name = "rfc5230 :addresses/:subject example",
	  .script = "require [\"vacation\", \"variables\"];\n"
		    "if header :matches \"subject\" \"*\" { set \"subjwas\" \": ${1}\"; }\n"
		    "vacation :days 23 :addresses [\"tjs@example.edu\", \"ts4z@landru.example.edu\"]\n"
		    " :subject \"Out of office${subjwas}\" \"I'm away\";",
	  .want = "vacation :seconds 1987200 :subject \"Out of office: I have a present for you\" \"I'm away\"; "
		  "keep (implicit)" },
	{ .name = "rfc5260 boss during office hours",
	  .script = "require [\"date\", \"relational\", \"fileinto\"];\n"
		    "if allof(header :is \"from\" \"coyote@desert.example.org\",\n"
		    "         date :value \"ge\" :originalzone \"date\" \"hour\" \"09\",\n"
		    "         date :value \"lt\" :originalzone \"date\" \"hour\" \"17\") { fileinto \"urgent\"; }",
	  .want = "fileinto \"urgent\"" },
	{ .name = "rfc5260 weekend",
	  .script = "require [\"date\", \"fileinto\"];\n"
		    "if anyof(date :is \"received\" \"weekday\" \"0\", date :is \"received\" \"weekday\" \"6\")"
		    " { fileinto \"weekend\"; }",
	  .msg = "Received: from a by b; Sat, 18 Nov 2023 10:00:00 +0000\r\n\r\n", .want = "fileinto \"weekend\"" },
	{ .name = "rfc5260 currentdate month-year",
	  .script = "require [\"date\", \"variables\", \"fileinto\"];\n"
		    "if currentdate :matches \"month\" \"*\" { set \"month\" \"${1}\"; }\n"
		    "if currentdate :matches \"year\" \"*\" { set \"year\" \"${1}\"; }\n"
		    "fileinto \"${month}-${year}\";",
	  .want = "fileinto \"11-2023\"" },
	{ .name = "rfc5260 date iso8601/std11",
	  .script = "require [\"date\", \"variables\", \"fileinto\"];\n"
		    "if date :zone \"+0100\" :matches \"date\" \"iso8601\" \"*\" { set \"i\" \"${1}\"; }\n"
		    "if date :originalzone :matches \"date\" \"std11\" \"*\" { set \"s\" \"${1}\"; }\n"
		    "fileinto \"${i}|${s}\";",
	  .want = "fileinto \"1997-04-01T18:06:31+01:00|Tue, 1 Apr 1997 09:06:31 -0800\"" },
	{ .name = "rfc5293 subject rewrite",
	  .script = "require [\"editheader\", \"variables\"];\n"
		    "if header :matches \"Subject\" \"*\" {\n  deleteheader \"Subject\";\n"
		    "  addheader \"Subject\" \"[SPAM] ${1}\";\n}\n"
		    "if header :is \"subject\" \"[SPAM] I have a present for you\" { discard; }",
	  .want = "deleteheader \"Subject\"; addheader \"Subject\" \"[SPAM] I have a present for you\"; discard" },
	{ .name = "rfc5293 deleteheader :index :last with value",
	  .script = "require [\"editheader\", \"index\"];\ndeleteheader :index 1 :last \"X-A\";\n"
		    "if header :is \"x-a\" \"one\" { if not header :is \"x-a\" \"two\" { discard; } }",
	  .msg = "X-A: one\r\nX-A: two\r\n\r\n", .want = "deleteheader :index 1 :last \"X-A\"; discard" },
	{ .name = "rfc5293 deleteheader value patterns",
	  .script = "require \"editheader\";\ndeleteheader :contains \"X-A\" [\"tw\"];\n"
		    "if header :is \"x-a\" \"one\" { if not header :is \"x-a\" \"two\" { discard; } }",
	  .msg = "X-A: one\r\nX-A: two\r\n\r\n", .want = "deleteheader \"X-A\"; discard" },
	{ .name = "rfc5435 boss notify",
	  .script = "require [\"enotify\", \"fileinto\", \"variables\"];\n"
		    "if header :contains \"from\" \"coyote@desert.example.org\" {\n"
		    "  notify :importance \"1\" :message \"This is probably very important\" \"mailto:alm@example.com\";\n"
		    "  stop;\n}",
	  .want = "notify :importance \"1\" :message \"This is probably very important\" \"mailto:alm@example.com\"; "
		  "keep (implicit)" },
	{ .name = "rfc5435 encodeurl",
	  .script = "require [\"enotify\", \"variables\"];\n"
		    "set :encodeurl \"body_param\" \"Safe body&evil=evilbody\";\n"
		    "notify \"mailto:tim@example.com?body=${body_param}\";",
	  .want = "notify :importance \"2\" \"mailto:tim@example.com?body=Safe%20body%26evil%3Devilbody\"; "
		  "keep (implicit)" },
	{ .name = "rfc5435 bad method at runtime",
	  .script = "require [\"enotify\", \"variables\"];\nset \"m\" \"mailto:\";\nnotify \"${m}\";",
	  .want_error = "t:3:1: invalid notification method URI 'mailto:'" },
	{ .name = "rfc7352 duplicate :uniqueid",
	  .script = "require [\"duplicate\", \"variables\"];\n"
		    "if header :matches \"subject\" \"I have *\" {\n"
		    "  if duplicate :seconds 60 :uniqueid \"${1}\" { discard; }\n}",
	  .want = "duplicate :seconds 60; keep (implicit)" },
	{ .name = "rfc5490 mailboxexists",
	  .script = "require [\"fileinto\", \"mailbox\", \"reject\"];\n"
		    "if mailboxexists \"Partners\" { fileinto \"Partners\"; } else { reject \"no\"; }",
	  .mailboxes = true, .want = "fileinto \"Partners\"" },
	{ .name = "rfc5429 ereject example",
	  .script = "require [\"ereject\"];\nif address :is \"from\" \"coyote@desert.example.org\" {\n"
		    "  ereject \"I no longer accept mail from this address\";\n}",
	  .want = "ereject \"I no longer accept mail from this address\"" },
	{ .name = "rfc5232 flag variable",
	  .script = "require [\"imap4flags\", \"fileinto\", \"variables\"];\n"
		    "if header :contains \"from\" \"coyote\" {\n  setflag \"flagvar\" \"\\\\Flagged\";\n"
		    "  fileinto :flags \"${flagvar}\" \"INBOX.From Boss\";\n}",
	  .want = "fileinto :flags [\"\\Flagged\"] \"INBOX.From Boss\"" },
	{ .name = "rfc5229 string state",
	  .script = "require [\"variables\", \"fileinto\"];\nset \"state\" \"${state} pending\";\n"
		    "if string :matches \" ${state} \" \"* pending *\" { fileinto \"p\"; }",
	  .want = "fileinto \"p\"" },
	{ .name = "rfc5231 :value lt numeric",
	  .script = "require [\"relational\", \"comparator-i;ascii-numeric\", \"fileinto\"];\n"
		    "if header :value \"lt\" :comparator \"i;ascii-numeric\" [\"x-priority\"] [\"3\"] { fileinto \"hi\"; }",
	  .msg = "X-Priority: 1 (Highest)\r\n\r\n", .want = "fileinto \"hi\"" },
	{ .name = "rfc5231 numeric infinity",
	  .script = "require [\"relational\", \"comparator-i;ascii-numeric\"];\n"
		    "if header :value \"gt\" :comparator \"i;ascii-numeric\" \"x-priority\" \"99999\" { discard; }",
	  .msg = "X-Priority: high\r\n\r\n", .want = "discard" },
	{ .name = "rfc5173 content text",
	  .script = "require [\"body\", \"fileinto\"];\n"
		    "if body :content \"text\" :contains [\"missile\", \"invoice\"] { fileinto \"secrets\"; }",
	  .msg = MSG_MIME, .want = "fileinto \"secrets\"" },
	{ .name = "rfc5173 no body part of type",
	  .script = "require \"body\";\nif body :content \"audio/mpeg\" :matches \"*\" { discard; }",
	  .msg = MSG_MIME, .want = "keep (implicit)" },
	{ .name = "rfc3894 copy to two folders",
	  .script = "require [\"copy\", \"fileinto\"];\nfileinto :copy \"incoming\";\nfileinto \"archive\";",
	  .want = "fileinto :copy \"incoming\"; fileinto \"archive\"" },
	{ .name = "rfc5228 fileinto INBOX merges with keep",
	  .script = "require \"fileinto\";\nkeep;\nfileinto \"INBOX\";", .want = "keep" },
	{ .name = "rfc5228 discard + keep",
	  .script = "discard;\nkeep;", .want = "discard; keep" },
	{ .name = "rfc5228 :matches escapes",
	  .script = "if header :matches \"subject\" \"I have a present for you\\\\?\" { discard; }",
	  .want = "keep (implicit)" },
	{ .name = "rfc5228 address group syntax",
	  .script = "if address :is :domain \"to\" \"example.net\" { discard; }",
	  .msg = "To: undisclosed: a@example.org, \"q, x\" <b@example.net>;\r\n\r\n", .want = "discard" },
	{ .name = "address with two angle pairs (fuzz regression)",
	  .script = "if address :is :domain \"to\" \"c.example\" { discard; }",
	  .msg = "To: Name <x@y.example> junk <b@c.example>, <>, <, a>\r\n\r\n", .want = "discard" },
	{ .name = "empty group has no address",
	  .script = "if address :all :matches \"to\" \"*\" { discard; }",
	  .msg = "To: undisclosed-recipients:;\r\n\r\n", .want = "keep (implicit)" },
	{ .name = "envelope-only run (no message yet)",
	  .script = "require [\"envelope\", \"vnd.mailroute\", \"body\"];\n"
		    "if body :contains \"x\" { discard; }\nif exists \"subject\" { discard; }\n"
		    "if envelope :domain \"to\" \"partner.example\" { route :relay \"p\"; }",
	  .msg = "", .to = "a@partner.example", .want = "route :relay \"p\"; keep (implicit)" },
	{ .name = "environment",
	  .script = "require [\"environment\", \"fileinto\", \"variables\"];\n"
		    "if environment :matches \"location\" \"*\" { fileinto \"${1}\"; }",
	  .want = "fileinto \"MTA\"" },
	{ .name = "ihave error command",
	  .script = "require \"ihave\";\nif not ihave \"frobnicate\" { error \"needs frobnicate\"; }",
	  .want_error = "t:2:29: error: needs frobnicate" },
	{ .name = "ihave skips the block of a missing capability",
	  .script = "require \"ihave\";\nif ihave \"nonsense\" { nonsense_command \"x\"; }\ndiscard;",
	  .want = "discard" },
	{ .name = "ihave enables a capability in its block",
	  .script = "require \"ihave\";\nif ihave \"fileinto\" { fileinto \"F\"; }",
	  .want = "fileinto \"F\"" },
	{ .name = "ihave",
	  .script = "require \"ihave\";\nif ihave \"fileinto\" { discard; }", .want = "discard" },
	{ .name = "vnd.mailroute not for users",
	  .script = "keep;", .ext = SIEVE_EXT_USER_DEFAULT, .want = "keep" },
	/* ---- mime / foreverypart / extracttext (RFC 5703) ---- */
	{ .name = "foreverypart types",
	  .script = "require [\"foreverypart\", \"mime\", \"variables\", \"fileinto\"];\nset \"t\" \"\";\n"
		    "foreverypart {\n  if header :mime :contenttype \"content-type\" \"*\" { }\n"
		    "  if header :mime :matches :contenttype \"content-type\" \"*\" { set \"t\" \"${t}${1},\"; }\n}\n"
		    "fileinto \"${t}\";",
	  .msg = MSG_MIME, .want = "fileinto \"multipart/mixed,text/plain,text/html,application/octet-stream,\"" },
	{ .name = "foreverypart break :name",
	  .script = "require [\"foreverypart\", \"mime\", \"variables\", \"fileinto\"];\nset \"n\" \"\";\n"
		    "foreverypart :name \"outer\" {\n  set \"n\" \"${n}x\";\n"
		    "  if header :mime :type \"content-type\" \"text\" { break :name \"outer\"; }\n}\n"
		    "fileinto \"${n}\";",
	  .msg = MSG_MIME, .want = "fileinto \"xx\"" },
	{ .name = "mime :param and :anychild",
	  .script = "require [\"mime\"];\n"
		    "if header :mime :anychild :param \"charset\" \"content-type\" \"iso-8859-1\" { discard; }",
	  .msg = MSG_MIME, .want = "discard" },
	{ .name = "extracttext :first",
	  .script = "require [\"foreverypart\", \"extracttext\", \"variables\", \"mime\", \"fileinto\"];\n"
		    "foreverypart { if header :mime :subtype \"content-type\" \"html\" { extracttext :first 6 \"x\"; } }\n"
		    "fileinto \"${x}\";",
	  .msg = MSG_MIME, .want = "fileinto \"secret\"" },
	/* ---- limits ---- */
	{ .name = "action limit",
	  .script = "require [\"fileinto\"];\nfileinto \"1\"; fileinto \"2\"; fileinto \"3\"; fileinto \"4\";"
		    "fileinto \"5\"; fileinto \"6\"; fileinto \"7\"; fileinto \"8\"; fileinto \"9\"; fileinto \"10\";"
		    "fileinto \"11\"; fileinto \"12\"; fileinto \"13\"; fileinto \"14\"; fileinto \"15\";"
		    "fileinto \"16\"; fileinto \"17\"; fileinto \"18\"; fileinto \"19\"; fileinto \"20\";"
		    "fileinto \"21\"; fileinto \"22\"; fileinto \"23\"; fileinto \"24\"; fileinto \"25\";"
		    "fileinto \"26\"; fileinto \"27\"; fileinto \"28\"; fileinto \"29\"; fileinto \"30\";"
		    "fileinto \"31\"; fileinto \"32\"; fileinto \"33\";",
	  .want_error = "t:2:466: total number of actions exceeds policy limit (32)" },
	{ .name = "redirect limit",
	  .script = "redirect \"a@x.org\"; redirect \"b@x.org\"; redirect \"c@x.org\"; redirect \"d@x.org\";\n"
		    "redirect \"e@x.org\";",
	  .want_error = "t:2:1: number of redirect actions exceeds policy limit (4)" },
	{ .name = "variable size limit",
	  .script = "require \"variables\";\nset \"a\" \"0123456789012345678901234567890123456789\";\n"
		    "set \"a\" \"${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}\";\n"
		    "set \"a\" \"${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}\";\n"
		    "set :length \"l\" \"${a}\";\nif string \"${l}\" \"4096\" { discard; }",
	  .want = "discard" },
};

static char *describe(const struct sieve_result *res)
{
	struct buf b;
	buf_init(&b, 65536);
	for (size_t i = 0; i < res->count; i++) {
		char *d = sieve_action_describe(&res->actions[i]);
		if (i > 0)
			buf_append_str(&b, "; ");
		buf_append_str(&b, d);
		free(d);
	}
	char *s = buf_steal(&b);
	buf_deinit(&b);
	return s;
}

static void test_run_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(run_cases) / sizeof(run_cases[0]); i++) {
		const struct run_case *c = &run_cases[i];
		struct sieve_compile_options opt = { .extensions = c->ext ? c->ext : SIEVE_EXT_SYSTEM_DEFAULT };
		char *err = NULL;
		struct sieve_script *s = sieve_compile(c->script, strlen(c->script), "t", &opt, &err);
		if (s == NULL)
			fail_msg("%s: compile: %s", c->name, err);
		struct sieve_msg_view mv = {
			.envelope_from = c->from ? c->from : "coyote@desert.example.org",
			.envelope_to = c->to ? c->to : "roadrunner@acme.example.com",
			.auth_user = c->auth,
			.raw = c->msg ? c->msg : MSG1,
			.size = c->size,
			.now = 1700000000,
			.zone_set = true,
			.mailbox_exists = c->mailboxes ? mbox_exists : NULL,
			.subaddress_separators = c->seps,
		};
		mv.raw_len = strlen(mv.raw);
		struct sieve_result res;
		sieve_result_init(&res);
		int r = sieve_execute(s, &mv, NULL, &res, NULL, NULL, &err);
		if (c->want_error != NULL) {
			if (r != -1 || strstr(err, c->want_error) == NULL)
				fail_msg("%s: want error '%s', got %d '%s'", c->name, c->want_error, r, r < 0 ? err : "");
			/* the host applies the implicit keep: the result says so */
			assert_int_equal(res.count, 1);
			assert_true(res.actions[0].implicit);
			free(err);
		} else {
			if (r != 1)
				fail_msg("%s: runtime error %s", c->name, err);
			char *d = describe(&res);
			if (strcmp(d, c->want) != 0)
				fail_msg("%s:\n got  %s\n want %s", c->name, d, c->want);
			free(d);
		}
		sieve_result_deinit(&res);
		sieve_script_free(&s);
	}
}

struct error_case {
	const char *script;
	const char *want;
	unsigned ext;
};

static const struct error_case error_cases[] = {
	{ "fileint \"x\";", "t:1:1: unknown command 'fileint'" },
	{ "keep;\n\n  fileinto \"x\";", "t:3:3: unknown command 'fileinto' (missing require \"fileinto\")" },
	{ "require \"frobnicate\";", "t:1:9: unknown Sieve capability 'frobnicate'" },
	{ "keep;\nrequire \"fileinto\";", "t:2:1: require must come before any other command, at the top level" },
	{ "if true { require \"fileinto\"; }", "t:1:11: require must come before any other command, at the top level" },
	{ "elsif true { keep; }", "t:1:1: elsif without a preceding if or elsif" },
	{ "keep; else { keep; }", "t:1:7: else without a preceding if or elsif" },
	{ "if foo { keep; }", "t:1:4: unknown test 'foo'" },
	{ "header \"a\" \"b\";", "t:1:1: 'header' is a test, not a command" },
	{ "if keep { }", "t:1:4: 'keep' is a command, not a test" },
	{ "if true keep;", "t:1:1: the if command needs a block" },
	{ "if true { keep; } keep", "t:1:23: expected ';' or '{' after 'keep', found end of script" },
	{ "if true { keep; ", "t:1:17: end of script inside a block (missing '}')" },
	{ "keep }", "t:1:6: expected ';' or '{' after 'keep', found '}'" },
	{ "}", "t:1:1: unexpected '}' outside a block" },
	{ "if true { keep; }\n}", "t:2:1: unexpected '}' outside a block" },
	{ "if header :frob \"a\" \"b\" { }", "t:1:11: unknown tagged argument ':frob' for the header test" },
	{ "if header :is :contains \"a\" \"b\" { }", "t:1:15: multiple match types specified for the header test" },
	{ "if header :comparator \"i;frob\" \"a\" \"b\" { }", "t:1:23: unknown comparator 'i;frob'" },
	{ "if header :comparator \"i;ascii-numeric\" \"a\" \"b\" { }",
	  "t:1:23: unknown comparator 'i;ascii-numeric'" },
	{ "require \"comparator-i;ascii-numeric\";\nif header :contains :comparator \"i;ascii-numeric\" \"a\" \"b\" {}",
	  "t:2:4: comparator 'i;ascii-numeric' does not support the :contains match type" },
	{ "if header :comparator 5 \"a\" \"b\" { }", "t:1:11: the :comparator tag of the header test needs a string argument" },
	{ "if header \"a\" { }", "t:1:4: the header test expects 2 arguments, found 1" },
	{ "if header \"a\" \"b\" \"c\" { }", "t:1:19: too many arguments for the header test (expected 2)" },
	{ "redirect 5;", "t:1:10: argument 1 of the redirect command must be a string, not a number" },
	{ "redirect [\"a\",\"b\"];", "t:1:10: argument 1 of the redirect command must be a string, not a string list" },
	{ "if size 100 { }", "t:1:9: too many arguments for the size test (expected 0)" },
	{ "if size :under 1 :over 2 { }", "t:1:18: multiple options specified for the size test" },
	{ "if size { }", "t:1:4: the size test needs exactly one of :over or :under" },
	{ "if true { }\nif not (true, false) { }", "t:2:4: the not test needs exactly one test, not a test list" },
	{ "if allof true { }", "t:1:4: the allof test needs a test list" },
	{ "keep { }", "t:1:1: the keep command takes no block" },
	{ "if true;", "t:1:1: the if command needs a block" },
	{ "require \"relational\";\nif header :value \"xx\" \"a\" \"b\" {}", "t:2:18: invalid relational match 'xx'" },
	{ "if header :value \"gt\" \"a\" \"b\" {}", "t:1:11: unknown tagged argument ':value' for the header test" },
	{ "require \"variables\";\nset \"1a\" \"x\";", "t:2:5: invalid variable name '1a'" },
	{ "require \"regex\";\nif header :regex \"a\" \"(\" {}",
	  "t:2:22: invalid regular expression '(': missing closing parenthesis" },
	{ "require \"date\";\nif date \"date\" \"fortnight\" \"x\" {}", "t:2:16: invalid date part 'fortnight'" },
	{ "require \"date\";\nif date :zone \"PST\" \"date\" \"year\" \"x\" {}", "t:2:15: invalid time zone 'PST'" },
	{ "require \"editheader\";\naddheader \"Bad Name\" \"x\";", "t:2:11: invalid header field name 'Bad Name'" },
	{ "require \"index\";\nif header :last \"a\" \"b\" {}", "t:2:11: the :last tag needs :index" },
	{ "require \"enotify\";\nnotify :importance \"4\" \"mailto:a@b.c\";",
	  "t:2:20: invalid :importance '4' (must be \"1\", \"2\" or \"3\")" },
	{ "require \"enotify\";\nnotify \"xmpp:a@b.c\";", "t:2:8: unsupported notification method 'xmpp:a@b.c'" },
	{ "require \"include\";\ninclude \"other\";", "t:2:9: included script 'other' not found (no include resolver)" },
	{ "require \"vnd.mailroute\";", "t:1:9: unknown Sieve capability 'vnd.mailroute'", SIEVE_EXT_USER_DEFAULT },
	{ "require \"vnd.mailroute\";\nreject_code \"250\" \"2.0.0\" \"x\";",
	  "t:2:13: reject_code needs a 4xx or 5xx reply code, not '250'" },
	{ "require \"vnd.mailroute\";\nreject_code \"550\" \"4.7.1\" \"x\";",
	  "t:2:19: reject_code needs an enhanced status code of the same class, not '4.7.1'" },
	{ "require \"vnd.dovecot.testsuite\";", "t:1:9: unknown Sieve capability 'vnd.dovecot.testsuite'" },
	{ "keep;\n\"str\";", "t:2:1: expected a command, found string" },
	{ "require \"vacation\";\nvacation :days \"7\" \"x\";",
	  "t:2:10: the :days tag of the vacation command needs a number argument" },
	{ "require \"vacation\";\nvacation :days 1 :seconds 5 \"x\";",
	  "t:2:18: multiple options specified for the vacation command" },
	{ "require \"vacation\";\nvacation;", "t:2:1: the vacation command expects 1 argument, found 0" },
	{ "require \"duplicate\";\nif duplicate :header \"a\" :uniqueid \"b\" {}",
	  "t:2:26: multiple options specified for the duplicate test" },
	{ "require \"body\";\nif body :raw :text \"x\" {}", "t:2:14: multiple body transforms specified for the body test" },
	{ "require \"body\";\nif body :content \"x\" {}", "t:2:4: the body test expects 1 argument, found 0" },
	{ "require \"imap4flags\";\nsetflag \"v\" \"\\\\Seen\";",
	  "t:2:9: the variable argument of the setflag command needs require \"variables\"" },
	{ "require [\"imap4flags\", \"variables\"];\nsetflag \"1v\" \"x\";", "t:2:9: invalid variable name '1v'" },
	{ "require \"subaddress\";\nif address :user :detail \"to\" \"x\" {}",
	  "t:2:18: multiple address parts specified for the address test" },
	{ "if address :detail \"to\" \"x\" {}", "t:1:12: unknown tagged argument ':detail' for the address test" },
	{ "require \"mailbox\";\nif mailboxexists 5 {}",
	  "t:2:18: argument 1 of the mailboxexists test must be a string list, not a number" },
	{ "require \"include\";\ninclude \"../etc/passwd\";", "t:2:9: invalid script name '../etc/passwd' for include" },
	{ "require \"include\";\nglobal \"x\";", "t:2:1: the global command needs require \"variables\"" },
	{ "require \"editheader\";\ndeleteheader :last \"x\";", "t:2:14: the :last tag needs :index" },
	{ "require \"encoded-character\";\nkeep; redirect \"${unicode:D800}\";",
	  "t:2:16: invalid unicode character 0xd800 in encoded character" },
	{ "if address \"subject\" \"a@b.c\" {}", "t:1:12: the address test needs an address header, not 'subject'" },
	{ "require \"envelope\";\nif envelope \"frop\" \"a@b.c\" {}", "t:2:13: unknown envelope part 'frop'" },
	{ "require \"foreverypart\";\nbreak;", "t:2:1: the break command is not inside a foreverypart loop" },
	{ "require \"mime\";\nif header :type \"content-type\" \"text\" {}",
	  "t:2:4: the header test uses MIME options without :mime" },
	{ "if anyof (true,) {}", "t:1:16: expected a test in the test list, found ')'" },
	{ "redirect [\"a\" \"b\"];", "t:1:15: expected ',' or ']' in the string list, found string" },
	{ "redirect [];", "t:1:11: expected a string in the string list, found ']'" },
	{ "redirect :copy \"a@b.c\";", "t:1:10: unknown tagged argument ':copy' for the redirect command" },
	{ "require \"fileinto\";\nfileinto :copy :copy \"x\";", "t:2:10: unknown tagged argument ':copy' for the fileinto command" },
	{ "require [\"fileinto\",\"copy\"];\nfileinto :copy :copy \"x\";", "t:2:16: tagged argument ':copy' specified more than once" },
	{ "require \"variables\";\nset :lower :upper \"a\" \"b\";",
	  "t:2:12: modifier ':upper' conflicts with an earlier modifier of the same precedence" },
};

static void test_error_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
		const struct error_case *c = &error_cases[i];
		struct sieve_compile_options opt = { .extensions = c->ext ? c->ext : SIEVE_EXT_SYSTEM_DEFAULT };
		char *err = NULL;
		struct sieve_script *s = sieve_compile(c->script, strlen(c->script), "t", &opt, &err);
		if (s != NULL)
			fail_msg("case %zu compiled: %s", i, c->script);
		if (strcmp(err, c->want) != 0)
			fail_msg("case %zu: %s\n got  %s\n want %s", i, c->script, err, c->want);
		free(err);
	}
}

static void test_all_errors(void **state)
{
	(void)state;
	const char *src = "require \"fileinto\";\nfileint \"a\";\nif header :frob \"a\" \"b\" { keep; }\n"
			  "if true { fileinto 5; }\nkeep;";
	struct sieve_compile_options opt = { .all_errors = true };
	char *err = NULL;
	assert_null(sieve_compile(src, strlen(src), "t", &opt, &err));
	assert_string_equal(err, "t:2:1: unknown command 'fileint'\n"
				 "t:3:11: unknown tagged argument ':frob' for the header test\n"
				 "t:4:20: argument 1 of the fileinto command must be a string, not a number");
	free(err);
	/* without the option: the first only */
	opt.all_errors = false;
	assert_null(sieve_compile(src, strlen(src), "t", &opt, &err));
	assert_string_equal(err, "t:2:1: unknown command 'fileint'");
	free(err);
}

static void test_nesting_limit(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 1 << 20);
	buf_append_str(&b, "if ");
	for (int i = 0; i < 5000; i++)
		buf_append_str(&b, "not ");
	buf_append_str(&b, "true { keep; }");
	char *err = NULL;
	struct sieve_script *s = sieve_compile(b.data, b.len, "t", NULL, &err);
	assert_null(s);
	assert_non_null(strstr(err, "test nesting is deeper than 32 levels"));
	free(err);
	buf_reset(&b);
	for (int i = 0; i < 5000; i++)
		buf_append_str(&b, "if true {");
	s = sieve_compile(b.data, b.len, "t", NULL, &err);
	assert_null(s);
	assert_non_null(strstr(err, "nesting is deeper than 32 levels"));
	free(err);
	buf_deinit(&b);
}

/* a hostile :matches on a big value stops on the work limit, quickly */
static void test_work_limit(void **state)
{
	(void)state;
	struct buf msgb, scr;
	buf_init(&msgb, 1 << 20);
	buf_init(&scr, 1 << 20);
	buf_append_str(&msgb, "X-Big: ");
	for (int i = 0; i < 60000; i++)
		buf_append_c(&msgb, 'a');
	buf_append_str(&msgb, "\r\n\r\n");
	buf_append_str(&scr, "require \"variables\";\n");
	for (int i = 0; i < 200; i++)
		buf_append_str(&scr, "if header :matches \"x-big\" \"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b\" { keep; }\n");
	char *err = NULL;
	struct sieve_script *s = sieve_compile(scr.data, scr.len, "t", NULL, &err);
	assert_non_null(s);
	struct sieve_msg_view mv = { .raw = msgb.data, .raw_len = msgb.len };
	struct sieve_result res;
	sieve_result_init(&res);
	assert_int_equal(sieve_execute(s, &mv, NULL, &res, NULL, NULL, &err), -1);
	assert_non_null(strstr(err, "work limit"));
	free(err);
	sieve_result_deinit(&res);
	sieve_script_free(&s);
	buf_deinit(&msgb);
	buf_deinit(&scr);
}

static void test_edited_header(void **state)
{
	(void)state;
	const char *src = "require [\"editheader\", \"vnd.mailroute\"];\n"
			  "deleteheader \"x-caffeine\";\naddheader \"X-First\" \"1\";\ntag \"X-Tag\" \"t\";";
	const char *raw = "Subject: folded\r\n continued\r\nX-Caffeine: C8\r\nTo: a@b.c\r\n\r\nbody\r\n";
	char *err = NULL;
	struct sieve_compile_options opt = { .extensions = SIEVE_EXT_SYSTEM_DEFAULT };
	struct sieve_script *s = sieve_compile(src, strlen(src), "t", &opt, &err);
	assert_non_null(s);
	struct sieve_msg_view mv = { .raw = raw, .raw_len = strlen(raw) };
	struct sieve_result res;
	sieve_result_init(&res);
	assert_int_equal(sieve_execute(s, &mv, NULL, &res, NULL, NULL, &err), 1);
	assert_non_null(res.edited_header);
	assert_string_equal(res.edited_header, "X-First: 1\r\nSubject: folded\r\n continued\r\nTo: a@b.c\r\nX-Tag: t\r\n");
	assert_string_equal(raw + res.body_offset, "body\r\n");
	sieve_result_deinit(&res);
	/* non-ASCII values are sent as RFC 2047 words, and read back decoded */
	sieve_script_free(&s);
	const char *src2 = "require \"editheader\";\naddheader :last \"X-U\" \"Grüße\";\n"
			   "if header :is \"x-u\" \"Grüße\" { discard; }";
	s = sieve_compile(src2, strlen(src2), "t", &opt, &err);
	assert_non_null(s);
	sieve_result_init(&res);
	assert_int_equal(sieve_execute(s, &mv, NULL, &res, NULL, NULL, &err), 1);
	assert_string_equal(res.edited_header, "Subject: folded\r\n continued\r\nX-Caffeine: C8\r\nTo: a@b.c\r\n"
					       "X-U: =?UTF-8?B?R3LDvMOfZQ==?=\r\n");
	assert_int_equal(res.count, 2);
	assert_int_equal(res.actions[1].type, SIEVE_ACT_DISCARD);
	sieve_result_deinit(&res);
	/* actions keep the header as it was when they ran; line breaks in values become folds */
	sieve_script_free(&s);
	const char *src3 = "require [\"editheader\", \"fileinto\"];\naddheader \"X-A\" \"one\ntwo\";\n"
			   "redirect \"r@example.com\";\ndeleteheader \"X-A\";\nfileinto \"F\";";
	s = sieve_compile(src3, strlen(src3), "t", &opt, &err);
	if (s == NULL)
		fail_msg("%s", err);
	sieve_result_init(&res);
	assert_int_equal(sieve_execute(s, &mv, NULL, &res, NULL, NULL, &err), 1);
	assert_int_equal(res.count, 4);
	assert_int_equal(res.actions[1].type, SIEVE_ACT_REDIRECT);
	assert_string_equal(res.actions[1].header, "X-A: one\r\n two\r\nSubject: folded\r\n continued\r\n"
						   "X-Caffeine: C8\r\nTo: a@b.c\r\n");
	assert_int_equal(res.actions[3].type, SIEVE_ACT_FILEINTO);
	assert_string_equal(res.actions[3].header, "Subject: folded\r\n continued\r\nX-Caffeine: C8\r\nTo: a@b.c\r\n");
	assert_string_equal(res.edited_header, res.actions[3].header);
	sieve_result_deinit(&res);
	/* no edits: no new header */
	sieve_script_free(&s);
	s = sieve_compile("keep;", 5, "t", NULL, &err);
	sieve_result_init(&res);
	assert_int_equal(sieve_execute(s, &mv, NULL, &res, NULL, NULL, &err), 1);
	assert_null(res.edited_header);
	sieve_result_deinit(&res);
	sieve_script_free(&s);
}

/* the raw message is not NUL-terminated (an exact-size heap copy: ASan sees any overread) */
static void test_unterminated_message(void **state)
{
	(void)state;
	const char *src = "require [\"body\", \"variables\"];\n"
			  "if body :raw :matches \"*\" { set \"a\" \"${1}\"; }\n"
			  "if body :text :contains \"x\" { keep; }\nif header :contains \"subject\" \"s\" { keep; }";
	char *err = NULL;
	struct sieve_script *s = sieve_compile(src, strlen(src), "t", NULL, &err);
	assert_non_null(s);
	static const char *const msgs[] = { MSG_MIME, "Content-Type: text/html;iso-8859-1\n\n", "Subject: s", "" };
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		size_t len = strlen(msgs[i]);
		char *raw = xmalloc(len ? len : 1);
		memcpy(raw, msgs[i], len);
		struct sieve_msg_view mv = { .raw = raw, .raw_len = len, .envelope_from = "a@example.com" };
		struct sieve_result res;
		sieve_result_init(&res);
		assert_int_equal(sieve_execute(s, &mv, NULL, &res, NULL, NULL, &err), 1);
		assert_int_equal(sieve_vacation_allowed(&mv), 1);
		sieve_result_deinit(&res);
		free(raw);
	}
	sieve_script_free(&s);
}

static void test_step_limit(void **state)
{
	(void)state;
	/* 4000 x (if + test + keep) = 12000 steps */
	struct buf b;
	buf_init(&b, 1 << 20);
	for (int i = 0; i < 4000; i++)
		buf_append_str(&b, "if true { keep; }\n");
	char *err = NULL;
	struct sieve_script *s = sieve_compile(b.data, b.len, "t", NULL, &err);
	assert_non_null(s);
	struct sieve_exec_limits lim;
	sieve_exec_limits_default(&lim);
	struct sieve_result res;
	sieve_result_init(&res);
	assert_int_equal(sieve_execute(s, NULL, &lim, &res, NULL, NULL, &err), -1);
	assert_non_null(strstr(err, "execution exceeded the limit of 10000 steps"));
	free(err);
	sieve_result_deinit(&res);
	sieve_script_free(&s);
	buf_deinit(&b);
}

/* ---- include (RFC 6609) ---- */

static int resolver(void *ctx, const char *name, bool global, char **src_r, size_t *len_r, char **error_r)
{
	(void)ctx;
	static const struct {
		const char *name;
		bool global;
		const char *src;
	} scripts[] = {
		{ "spam", true, "require [\"fileinto\"];\nif header :contains \"subject\" \"present\" "
				"{ fileinto \"Spam\"; stop; }" },
		{ "vars", false, "require [\"include\",\"variables\"];\nglobal \"who\";\nset \"who\" \"inner\";\n"
				 "set \"local\" \"x\";\nreturn;\nset \"who\" \"after return\";" },
		{ "loop", false, "require \"include\";\ninclude \"loop\";" },
		{ "bad", false, "require \"fileinto\";\nfileint \"x\";" },
	};
	for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
		if (strcmp(scripts[i].name, name) == 0 && scripts[i].global == global) {
			*src_r = xstrdup(scripts[i].src);
			*len_r = strlen(scripts[i].src);
			return 1;
		}
	}
	return 0;
}

static const struct {
	const char *script;
	const char *want;
	const char *want_error;
} include_cases[] = {
	{ "require \"include\";\ninclude :global \"spam\";\ndiscard;", "fileinto \"Spam\"", NULL },
	{ "require [\"include\",\"variables\",\"fileinto\"];\nglobal \"who\";\ninclude \"vars\";\n"
	  "fileinto \"${who}-${local}\";", "fileinto \"inner-\"", NULL },
	{ "require \"include\";\ninclude \"nope\";", NULL, "t:2:9: included personal script 'nope' does not exist" },
	{ "require \"include\";\ninclude :optional \"nope\";\nkeep;", "keep", NULL },
	{ "require \"include\";\ninclude \"nope-upload\";\nkeep;", "keep", NULL },
	{ "require \"include\";\ninclude \"loop\";", NULL, "circular include of script 'loop'" },
	{ "require \"include\";\ninclude \"loop.sieve\";", NULL, "circular include of script 'loop'" },
	{ "require \"include\";\ninclude \"bad\";", NULL,
	  "t:2:9: failed to compile included script 'bad': 2:1: unknown command 'fileint'" },
	{ "require \"include\";\ninclude :personal :global \"x\";", NULL,
	  "t:2:19: multiple options specified for the include command" },
};

static void test_include(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(include_cases) / sizeof(include_cases[0]); i++) {
		struct sieve_compile_options opt = { .include_resolver = resolver };
		/* an upload may name a script that is not there yet */
		opt.missing_includes_ok = strstr(include_cases[i].script, "nope-upload") != NULL;
		char *err = NULL;
		struct sieve_script *s = sieve_compile(include_cases[i].script, strlen(include_cases[i].script), "t", &opt,
						       &err);
		if (include_cases[i].want_error != NULL) {
			if (s != NULL || strstr(err, include_cases[i].want_error) == NULL)
				fail_msg("include case %zu: got '%s'", i, s ? "(compiled)" : err);
			free(err);
			continue;
		}
		if (s == NULL)
			fail_msg("include case %zu: %s", i, err);
		struct sieve_msg_view mv = { .raw = MSG1, .raw_len = strlen(MSG1), .envelope_from = "a@b.c" };
		struct sieve_result res;
		sieve_result_init(&res);
		assert_int_equal(sieve_execute(s, &mv, NULL, &res, NULL, NULL, &err), 1);
		char *d = describe(&res);
		if (strcmp(d, include_cases[i].want) != 0)
			fail_msg("include case %zu: got %s want %s", i, d, include_cases[i].want);
		free(d);
		sieve_result_deinit(&res);
		sieve_script_free(&s);
	}
}

/* ---- trace ---- */

static void trace_fn(void *ctx, int line, int col, const char *text)
{
	struct buf *b = ctx;
	buf_printf(b, "line %d: %s\n", line, text);
	(void)col;
}

static void test_trace_nested(void **state)
{
	(void)state;
	const char *src = "if anyof (false,\n  header :is \"x-caffeine\" \"C8H10N4O2\",\n  true) {\n  discard;\n}\n"
			  "else { keep; }";
	char *err = NULL;
	struct sieve_script *s = sieve_compile(src, strlen(src), "t", NULL, &err);
	assert_non_null(s);
	struct sieve_msg_view mv = { .raw = MSG1, .raw_len = strlen(MSG1) };
	struct sieve_result res;
	sieve_result_init(&res);
	struct buf b;
	buf_init(&b, 4096);
	assert_int_equal(sieve_execute(s, &mv, NULL, &res, trace_fn, &b, &err), 1);
	assert_string_equal(b.data, "line 1: false -> false\n"
				    "line 2: header :is \"x-caffeine\" \"C8H10N4O2\" -> true\n"
				    "line 1: if anyof (false, header :is \"x-caffeine\" \"C8H10N4O2\", true) -> true\n"
				    "line 4: discard\n");
	buf_deinit(&b);
	sieve_result_deinit(&res);
	sieve_script_free(&s);
}

static void test_trace(void **state)
{
	(void)state;
	const char *src = "require \"fileinto\";\n"
			  "if header :contains \"subject\" \"present\" {\n"
			  "  fileinto \"Billing\";\n"
			  "}\n";
	char *err = NULL;
	struct sieve_script *s = sieve_compile(src, strlen(src), "t", NULL, &err);
	assert_non_null(s);
	struct sieve_msg_view mv = { .raw = MSG1, .raw_len = strlen(MSG1) };
	struct sieve_result res;
	sieve_result_init(&res);
	struct buf b;
	buf_init(&b, 4096);
	assert_int_equal(sieve_execute(s, &mv, NULL, &res, trace_fn, &b, &err), 1);
	assert_string_equal(b.data, "line 2: if header :contains \"subject\" \"present\" -> true\n"
				    "line 3: fileinto \"Billing\"\n");
	buf_deinit(&b);
	sieve_result_deinit(&res);
	sieve_script_free(&s);
}

/* ---- vacation rules (RFC 3834) ---- */

static const struct {
	const char *from;
	const char *msg;
	int want;
} vacation_cases[] = {
	{ "user@example.com", "Subject: hi\r\n\r\n", 1 },
	{ "", "Subject: hi\r\n\r\n", 0 },
	{ NULL, "Subject: hi\r\n\r\n", 0 },
	{ "MAILER-DAEMON@example.com", "Subject: hi\r\n\r\n", 0 },
	{ "owner-list@example.com", "Subject: hi\r\n\r\n", 0 },
	{ "list-request@example.com", "Subject: hi\r\n\r\n", 0 },
	{ "user@example.com", "List-Id: <x.example.com>\r\n\r\n", 0 },
	{ "user@example.com", "List-Unsubscribe: <mailto:x@y>\r\n\r\n", 0 },
	{ "user@example.com", "Precedence: bulk\r\n\r\n", 0 },
	{ "user@example.com", "Precedence: junk\r\n\r\n", 0 },
	{ "user@example.com", "Precedence: first-class\r\n\r\n", 1 },
	{ "user@example.com", "Auto-Submitted: auto-replied\r\n\r\n", 0 },
	{ "user@example.com", "Auto-Submitted: no\r\n\r\n", 1 },
	{ "user@example.com", "Auto-Submitted: No (comment)\r\n\r\n", 1 },
};

static void test_vacation_allowed(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(vacation_cases) / sizeof(vacation_cases[0]); i++) {
		struct sieve_msg_view mv = { .envelope_from = vacation_cases[i].from, .raw = vacation_cases[i].msg };
		mv.raw_len = strlen(mv.raw);
		if (sieve_vacation_allowed(&mv) != vacation_cases[i].want)
			fail_msg("vacation case %zu", i);
	}
}

static int dup_seen(void *ctx, const char *id, size_t len, unsigned secs)
{
	(void)ctx;
	(void)secs;
	return len > 0 && strstr(id, "<1@example.org>") != NULL;
}

static void test_duplicate_callback(void **state)
{
	(void)state;
	const char *src = "require \"duplicate\";\nif duplicate :seconds 60 { discard; }";
	char *err = NULL;
	struct sieve_script *s = sieve_compile(src, strlen(src), "t", NULL, &err);
	assert_non_null(s);
	struct sieve_msg_view mv = { .raw = MSG1, .raw_len = strlen(MSG1), .duplicate_check = dup_seen };
	struct sieve_result res;
	sieve_result_init(&res);
	assert_int_equal(sieve_execute(s, &mv, NULL, &res, NULL, NULL, &err), 1);
	char *d = describe(&res);
	assert_string_equal(d, "duplicate :seconds 60; discard");
	free(d);
	sieve_result_deinit(&res);
	sieve_script_free(&s);
}

/* vacation replies and reject notices (the host sends them) */
static const struct {
	const char *script;
	const char *from, *to, *msg;
	bool check;
	int want;
	const char *want_parts[6];   /* substrings of the composed message */
	const char *want_rcpt;
} reply_cases[] = {
	{ "require \"vacation\"; vacation :subject \"Away\" \"gone\";", "s@example.org", "me@example.net",
	  "From: s@example.org\r\nTo: me@example.net\r\nSubject: hi\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n", true, 1,
	  { "From: me@example.net\r\n", "To: s@example.org\r\n", "Subject: Away\r\n", "In-Reply-To: <1@x>\r\n",
	    "Auto-Submitted: auto-replied", "\r\n\r\ngone\r\n" }, "s@example.org" },
	{ "require \"vacation\"; vacation \"gone\";", "s@example.org", "me@example.net",
	  "To: other@example.net\r\nSubject: Grüße\r\n\r\n", true, 0, { NULL }, NULL },
	{ "require \"vacation\"; vacation \"gone\";", "s@example.org", "me@example.net",
	  "To: other@example.net\r\nSubject: Grüße\r\n\r\n", false, 1,
	  { "Subject: =?UTF-8?B?QXV0bzogR3LDvMOfZQ==?=\r\n", "From: me@example.net" }, "s@example.org" },
	{ "require \"vacation\"; vacation :addresses \"alias@example.net\" \"gone\";", "s@example.org", "me@example.net",
	  "Cc: Alias <alias@example.net>\r\n\r\n", true, 1, { "From: alias@example.net\r\n" }, "s@example.org" },
	{ "require \"vacation\"; vacation \"gone\";", "", "me@example.net", "To: me@example.net\r\n\r\n", true, 0,
	  { NULL }, NULL },
	{ "require \"vacation\"; vacation \"gone\";", "me@example.net", "me@example.net",
	  "To: me@example.net\r\n\r\n", true, 0, { NULL }, NULL },
	{ "require \"vacation\"; vacation :mime \"Content-Type: text/html\\r\\n\\r\\n<b>x</b>\";", "s@example.org",
	  "me@example.net", "To: me@example.net\r\n\r\n", true, 1,
	  { "MIME-Version: 1.0\r\nContent-Type: text/html" }, "s@example.org" },
	{ "require \"reject\"; reject \"not here\";", "s@example.org", "me@example.net",
	  "Subject: x\r\nMessage-ID: <2@y>\r\n\r\nbody", true, 1,
	  { "From: Postmaster <MAILER-DAEMON@mx.example.test>\r\n", "report-type=disposition-notification",
	    "not here", "Disposition: automatic-action/MDN-sent-automatically; deleted",
	    "Original-Message-ID: <2@y>", "Content-Type: text/rfc822-headers\r\n\r\nSubject: x" }, "s@example.org" },
	{ "require \"reject\"; reject \"not here\";", "<>", "me@example.net", "Subject: x\r\n\r\n", true, 0,
	  { NULL }, NULL },
};

static void test_reply_compose(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++) {
		char *err = NULL;
		struct sieve_script *s = sieve_compile(reply_cases[i].script, strlen(reply_cases[i].script), "t", NULL, &err);
		if (s == NULL)
			fail_msg("reply case %zu: %s", i, err);
		struct sieve_msg_view mv = { .envelope_from = reply_cases[i].from, .envelope_to = reply_cases[i].to,
					     .raw = reply_cases[i].msg, .raw_len = strlen(reply_cases[i].msg) };
		struct sieve_result res;
		sieve_result_init(&res);
		assert_int_equal(sieve_execute(s, &mv, NULL, &res, NULL, NULL, &err), 1);
		struct sieve_reply_options ro = { .hostname = "mx.example.test", .check_recipient = reply_cases[i].check,
						  .now = 1700000000 };
		struct sieve_reply rep;
		const char *why = NULL;
		int r = res.actions[0].type == SIEVE_ACT_VACATION ? sieve_vacation_compose(&res.actions[0], &mv, &ro, &rep, &why)
								  : sieve_reject_compose(&res.actions[0], &mv, &ro, &rep, &why);
		if (r != reply_cases[i].want)
			fail_msg("reply case %zu: got %d (%s)", i, r, why ? why : "");
		if (r == 0)
			assert_non_null(why);
		for (int k = 0; k < 6 && reply_cases[i].want_parts[k] != NULL; k++)
			if (strstr(rep.data, reply_cases[i].want_parts[k]) == NULL)
				fail_msg("reply case %zu: no '%s' in:\n%s", i, reply_cases[i].want_parts[k], rep.data);
		if (reply_cases[i].want_rcpt != NULL)
			assert_string_equal(rep.rcpt_to, reply_cases[i].want_rcpt);
		sieve_reply_free(&rep);
		sieve_result_deinit(&res);
		sieve_script_free(&s);
	}
}

static void test_notify_compose(void **state)
{
	(void)state;
	const char *src = "require \"enotify\";\n"
			  "notify :importance \"1\" :from \"Me <me@example.net>\" :message \"hi\" "
			  "\"mailto:a@example.com%2cb@example.com?cc=b@example.com,c@example.com&subject=New%20mail"
			  "&from=evil@example.com&body=see%20it\";";
	char *err = NULL;
	struct sieve_script *s = sieve_compile(src, strlen(src), "t", NULL, &err);
	if (s == NULL)
		fail_msg("%s", err);
	const char *raw = "From: x@example.org\r\nSubject: s\r\n\r\nbody\r\n";
	struct sieve_msg_view mv = { .envelope_from = "x@example.org", .envelope_to = "me@example.net", .raw = raw,
				     .raw_len = strlen(raw) };
	struct sieve_result res;
	sieve_result_init(&res);
	assert_int_equal(sieve_execute(s, &mv, NULL, &res, NULL, NULL, &err), 1);
	struct sieve_reply_options ro = { .hostname = "mx.example.test", .now = 1700000000 };
	struct sieve_reply *reps;
	size_t n;
	const char *why;
	assert_int_equal(sieve_notify_compose(&res.actions[0], &mv, &ro, &reps, &n, &why), 1);
	assert_int_equal(n, 3); /* a, b, c: b only once */
	assert_string_equal(reps[0].rcpt_to, "a@example.com");
	assert_string_equal(reps[1].rcpt_to, "b@example.com");
	assert_string_equal(reps[2].rcpt_to, "c@example.com");
	assert_string_equal(reps[0].mail_from, "me@example.net");
	static const char *const want[] = { "From: Me <me@example.net>\r\n", "To: <a@example.com>,\r\n <b@example.com>\r\n",
					    "Cc: <c@example.com>\r\n", "Subject: New mail\r\n", "Auto-Submitted: auto-notified",
					    "X-Priority: 1 (Highest)\r\nImportance: high\r\n", "\r\n\r\nsee it\r\n" };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (strstr(reps[0].data, want[i]) == NULL)
			fail_msg("notify: no '%s' in\n%s", want[i], reps[0].data);
	assert_null(strstr(reps[0].data, "evil"));
	for (size_t i = 0; i < n; i++)
		sieve_reply_free(&reps[i]);
	free(reps);
	/* nothing about auto-submitted mail */
	const char *auto_raw = "Auto-Submitted: auto-replied\r\n\r\n";
	mv.raw = auto_raw;
	mv.raw_len = strlen(auto_raw);
	assert_int_equal(sieve_notify_compose(&res.actions[0], &mv, &ro, &reps, &n, &why), 0);
	assert_non_null(why);
	sieve_result_deinit(&res);
	sieve_script_free(&s);
}

static void test_capabilities(void **state)
{
	(void)state;
	char *u = sieve_capabilities(SIEVE_EXT_USER_DEFAULT);
	char *sys = sieve_capabilities(SIEVE_EXT_SYSTEM_DEFAULT);
	assert_non_null(strstr(u, "fileinto reject ereject envelope encoded-character variables"));
	assert_non_null(strstr(u, " vacation vacation-seconds "));
	assert_non_null(strstr(u, "comparator-i;ascii-numeric"));
	assert_null(strstr(u, "vnd.mailroute"));
	assert_null(strstr(u, "testsuite"));
	assert_non_null(strstr(sys, "vnd.mailroute"));
	free(u);
	free(sys);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_run_cases),
		cmocka_unit_test(test_error_cases),
		cmocka_unit_test(test_nesting_limit),
		cmocka_unit_test(test_all_errors),
		cmocka_unit_test(test_step_limit),
		cmocka_unit_test(test_work_limit),
		cmocka_unit_test(test_unterminated_message),
		cmocka_unit_test(test_edited_header),
		cmocka_unit_test(test_include),
		cmocka_unit_test(test_trace),
		cmocka_unit_test(test_trace_nested),
		cmocka_unit_test(test_vacation_allowed),
		cmocka_unit_test(test_duplicate_callback),
		cmocka_unit_test(test_capabilities),
		cmocka_unit_test(test_reply_compose),
		cmocka_unit_test(test_notify_compose),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
