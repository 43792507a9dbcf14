/*
 * fuzz-sieve-parser: compile arbitrary scripts with every extension, and run
 * the ones that compile against a small message (so the interpreter's limits
 * are fuzzed too); the actions are described and the replies composed, with
 * script-controlled parameters.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib-sieve/sieve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int resolver(void *ctx, const char *name, bool global, char **src_r, size_t *len_r, char **error_r)
{
	(void)ctx;
	(void)global;
	(void)error_r;
	if (strcmp(name, "inc") != 0)
		return 0;
	*src_r = strdup("require \"include\"; keep; include :once \"inc\";");
	*len_r = strlen(*src_r);
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sieve_compile_options opt = {
		.extensions = SIEVE_EXT_SYSTEM_DEFAULT,
		.include_resolver = resolver,
	};
	char *err = NULL;
	struct sieve_script *s = sieve_compile((const char *)data, size, "fuzz", &opt, &err);
	if (s == NULL) {
		free(err);
		return 0;
	}
	static const char msg[] = "From: a@example.com\r\nTo: b@example.net\r\nSubject: =?utf-8?b?aGk=?=\r\n"
				  "Date: Tue, 1 Apr 1997 09:06:31 -0800\r\n"
				  "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
				  "hello\r\n--b--\r\n";
	struct sieve_msg_view mv = {
		.envelope_from = "a@example.com",
		.envelope_to = "b+tag@example.net",
		.raw = msg,
		.raw_len = sizeof(msg) - 1,
		.now = 1700000000,
		.zone_set = true,
	};
	struct sieve_result res;
	sieve_result_init(&res);
	if (sieve_execute(s, &mv, NULL, &res, NULL, NULL, &err) < 0)
		free(err);
	for (size_t i = 0; i < res.count; i++) {
		const struct sieve_action *a = &res.actions[i];
		free(sieve_action_describe(a));
		struct sieve_reply_options ro = { .hostname = "fuzz.example", .check_recipient = true, .now = 1 };
		struct sieve_reply rep, *reps;
		size_t n;
		const char *why;
		if (a->type == SIEVE_ACT_VACATION && sieve_vacation_compose(a, &mv, &ro, &rep, &why) >= 0)
			sieve_reply_free(&rep);
		if ((a->type == SIEVE_ACT_REJECT || a->type == SIEVE_ACT_EREJECT) &&
		    sieve_reject_compose(a, &mv, &ro, &rep, &why) >= 0)
			sieve_reply_free(&rep);
		if (a->type == SIEVE_ACT_NOTIFY && sieve_notify_compose(a, &mv, &ro, &reps, &n, &why) > 0) {
			for (size_t k = 0; k < n; k++)
				sieve_reply_free(&reps[k]);
			free(reps);
		}
	}
	sieve_result_deinit(&res);
	sieve_script_free(&s);
	return 0;
}
