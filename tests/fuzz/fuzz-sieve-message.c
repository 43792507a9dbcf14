/*
 * fuzz-sieve-message: arbitrary bytes as the message (network input) under a
 * fixed script that touches every message accessor: header (RFC 2047),
 * address lists, envelope, body (MIME, base64, quoted-printable, iconv),
 * date parsing, editheader, the vacation rules and the vacation reply.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib-sieve/sieve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char script[] =
	"require [\"body\", \"envelope\", \"date\", \"index\", \"relational\", \"variables\", \"editheader\",\n"
	"         \"subaddress\", \"regex\", \"comparator-i;ascii-numeric\", \"fileinto\", \"vacation\"];\n"
	"if header :contains \"subject\" \"x\" { keep; }\n"
	"if address :all :matches [\"from\", \"to\", \"cc\"] \"*@*\" { set \"d\" \"${2}\"; }\n"
	"if address :detail \"to\" \"tag\" { keep; }\n"
	"if body :text :contains \"hello\" { keep; }\n"
	"if body :content \"text\" :regex \"h(.)llo\" { set \"r\" \"${1}\"; }\n"
	"if body :content [\"multipart\", \"message/rfc822\"] :contains \"x\" { keep; }\n"
	"if body :raw :matches \"*a*b*\" { keep; }\n"
	"if date :originalzone \"date\" \"iso8601\" \"x\" { keep; }\n"
	"if date :index 1 :last \"received\" \"julian\" \"1\" { keep; }\n"
	"if header :count \"gt\" :comparator \"i;ascii-numeric\" \"received\" \"3\" { keep; }\n"
	"deleteheader :index 1 \"received\";\n"
	"addheader \"X-Fuzz\" \"${d}\";\n"
	"fileinto \"${d}${r}\";\n"
	"vacation :addresses [\"b@example.net\"] \"away\";\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sieve_script *s;
	if (s == NULL) {
		struct sieve_compile_options opt = { .extensions = SIEVE_EXT_USER_DEFAULT };
		char *err = NULL;
		s = sieve_compile(script, sizeof(script) - 1, "fuzz", &opt, &err);
		if (s == NULL)
			abort();
	}
	struct sieve_msg_view mv = {
		.envelope_from = "a@example.com",
		.envelope_to = "b+tag@example.net",
		.raw = (const char *)data,
		.raw_len = size,
		.now = 1700000000,
		.zone_set = true,
	};
	struct sieve_result res;
	char *err = NULL;
	sieve_result_init(&res);
	if (sieve_execute(s, &mv, NULL, &res, NULL, NULL, &err) < 0)
		free(err);
	for (size_t i = 0; i < res.count; i++) {
		struct sieve_reply_options ro = { .hostname = "fuzz.example", .check_recipient = true, .now = 1 };
		struct sieve_reply rep;
		const char *why;
		if (res.actions[i].type == SIEVE_ACT_VACATION) {
			if (sieve_vacation_compose(&res.actions[i], &mv, &ro, &rep, &why) >= 0)
				sieve_reply_free(&rep);
			struct sieve_action rej = { .type = SIEVE_ACT_REJECT, .text = (char *)"no" };
			if (sieve_reject_compose(&rej, &mv, &ro, &rep, &why) >= 0)
				sieve_reply_free(&rep);
		}
	}
	sieve_result_deinit(&res);
	(void)sieve_vacation_allowed(&mv);
	return 0;
}
