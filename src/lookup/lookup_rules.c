#include "lookup/lookup_rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib-sieve/sieve_store.h"
#include "lib/xalloc.h"

struct sieve_script *rules_load(const char *path, char **error_r)
{
	char *src = NULL, *error = NULL;
	size_t len = 0;
	int r = sieve_store_read_file(path, SIEVE_STORE_MAX_SIZE, &src, &len, &error);
	if (r <= 0) {
		*error_r = r == 0 ? xasprintf("%s:0:0: cannot open: No such file", path)
		                  : xasprintf("%s:0:0: %s", path, error ? error : "cannot read");
		free(error);
		return NULL;
	}
	struct sieve_compile_options opt = { .extensions = SIEVE_EXT_SYSTEM_DEFAULT };
	struct sieve_script *s = sieve_compile(src, len, path, &opt, error_r);
	free(src);
	return s;
}

/* "550" -> 550; anything odd -> 550. */
static int atoi_safe_code(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	return *end == '\0' && v >= 400 && v <= 599 ? (int)v : 550;
}

static void push(char ***list, size_t *n, const char *s)
{
	*list = xreallocarray(*list, *n + 1, sizeof(char *));
	(*list)[(*n)++] = xstrdup(s);
}

static void on_trace(void *ctx, int line, int col, const char *text)
{
	struct rules_outcome *out = ctx;
	if (out->trace_count >= 500)
		return;
	char *t = xasprintf("line %d: %s", line, text);
	out->trace = xreallocarray(out->trace, out->trace_count + 1, sizeof(char *));
	out->trace[out->trace_count++] = t;
}

void rules_apply(const struct sieve_script *script, const struct rules_input *in, bool trace,
                 struct rules_outcome *out)
{
	memset(out, 0, sizeof(*out));
	out->keep = true;
	if (script == NULL)
		return;
	const char *at = in->rcpt ? strrchr(in->rcpt, '@') : NULL;
	struct sieve_msg_view mv = {
		.envelope_from = in->sender,
		.envelope_to = in->rcpt,
		.auth_user = in->auth_user,
		.client_ip = in->client_ip,
		.client_helo = in->helo,
		.raw = in->raw,
		.raw_len = in->raw_len,
		.domain = at ? at + 1 : NULL,
		.host = in->hostname,
	};
	struct sieve_result res;
	sieve_result_init(&res);
	char *error = NULL;
	if (sieve_execute(script, &mv, NULL, &res, trace ? on_trace : NULL, out, &error) < 0) {
		out->error = error;
		sieve_result_deinit(&res);
		return;
	}
	bool kept = false;
	struct { char *p; size_t n; } hdr = { NULL, 0 };
	for (size_t i = 0; i < res.count; i++) {
		const struct sieve_action *a = &res.actions[i];
		switch (a->type) {
		case SIEVE_ACT_KEEP:
			kept = true;
			break;
		case SIEVE_ACT_FILEINTO:
			kept = true;
			free(out->folder);
			out->folder = xstrdup(a->target);
			break;
		case SIEVE_ACT_DISCARD:
			break;
		case SIEVE_ACT_REDIRECT:
			push(&out->copies, &out->copy_count, a->target);
			break;
		case SIEVE_ACT_REJECT:
		case SIEVE_ACT_EREJECT:
			out->reject = true;
			out->code = 550;
			snprintf(out->enhanced, sizeof(out->enhanced), "5.7.1");
			free(out->text);
			out->text = xstrdup(a->text ? a->text : "Message rejected by policy");
			break;
		case SIEVE_ACT_REJECT_CODE:
			out->reject = true;
			out->code = atoi_safe_code(a->smtp_code);
			snprintf(out->enhanced, sizeof(out->enhanced), "%s", a->enhanced_code);
			free(out->text);
			out->text = xstrdup(a->text ? a->text : "Message rejected by policy");
			break;
		case SIEVE_ACT_QUARANTINE:
			kept = true;
			out->quarantine = true;
			free(out->quarantine_reason);
			out->quarantine_reason = a->text ? xstrdup(a->text) : NULL;
			break;
		case SIEVE_ACT_ROUTE_RELAY:
		case SIEVE_ACT_ROUTE_TRANSPORT:
			free(out->relay);
			out->relay = xstrdup(a->target);
			break;
		case SIEVE_ACT_WEBHOOK:
			push(&out->webhooks, &out->webhook_count, a->target);
			break;
		case SIEVE_ACT_ADDHEADER: {
			char *line = xasprintf("%s%s: %s\r\n", hdr.p ? hdr.p : "", a->target, a->text ? a->text : "");
			free(hdr.p);
			hdr.p = line;
			break;
		}
		default:
			/* vacation, notify, deleteheader: not what a system rule at the MTA does */
			break;
		}
	}
	out->keep = kept || res.implicit_keep;
	out->headers = hdr.p;
	sieve_result_deinit(&res);
}

void rules_outcome_deinit(struct rules_outcome *out)
{
	free(out->text);
	free(out->quarantine_reason);
	free(out->folder);
	free(out->relay);
	for (size_t i = 0; i < out->copy_count; i++)
		free(out->copies[i]);
	free(out->copies);
	for (size_t i = 0; i < out->webhook_count; i++)
		free(out->webhooks[i]);
	free(out->webhooks);
	free(out->headers);
	free(out->error);
	for (size_t i = 0; i < out->trace_count; i++)
		free(out->trace[i]);
	free(out->trace);
	memset(out, 0, sizeof(*out));
}
