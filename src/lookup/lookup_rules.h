/*
 * lookup_rules: the system rules (the config's `rules:` Sieve script with the
 * vnd.mailroute extension) applied to one SMTP recipient of one message. The
 * queue role runs this at commit time, before the message is acknowledged, and
 * `mailroute explain` runs the very same function with a trace.
 *
 * The outcome is plain data; the caller applies it: reject the message with a
 * code, drop the recipient (discard), hold the message (quarantine), add
 * header fields, set the folder of local deliveries, choose a relay for remote
 * ones, add copies (redirect :copy) and webhook targets. A runtime error (a
 * step or action limit) is logged by the caller and means the implicit keep.
 */
#ifndef MR_LOOKUP_RULES_H
#define MR_LOOKUP_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include "lib-sieve/sieve.h"

struct rules_outcome {
	bool reject;               /* refuse the whole message */
	int code;                  /* with reject: 5xx (or 4xx) */
	char enhanced[16];
	char *text;
	bool keep;                 /* deliver to the recipient's own targets */
	bool quarantine;
	char *quarantine_reason;
	char *folder;              /* fileinto for local targets, or NULL */
	char *relay;               /* route :relay / :transport for remote targets, or NULL */
	char **copies;             /* redirect targets (each a new recipient) */
	size_t copy_count;
	char **webhooks;           /* webhook names */
	size_t webhook_count;
	char *headers;             /* fields to prepend (addheader / tag), CRLF-terminated, or NULL */
	char *error;               /* a runtime error (implicit keep applied) */
	char **trace;              /* with trace on: what fired, "line N: ..." */
	size_t trace_count;
};

/* Compile a system rules file; NULL with *error_r "path:line:col: message". */
struct sieve_script *rules_load(const char *path, char **error_r);

struct rules_input {
	const char *sender, *rcpt, *auth_user, *client_ip, *helo, *hostname;
	const char *raw;           /* the message (header, blank line, body) */
	size_t raw_len;
};

void rules_apply(const struct sieve_script *script, const struct rules_input *in, bool trace,
                 struct rules_outcome *out);
void rules_outcome_deinit(struct rules_outcome *out);

#endif
