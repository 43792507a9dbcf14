/* sieve: compile entry point, script lifetime, action helpers, vacation rules. */
#include "lib-sieve/sieve.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib-sieve/sieve_message.h"
#include "lib-sieve/sieve_private.h"
#include "lib/xalloc.h"

struct sieve_script *sieve_compile(const char *src, size_t len, const char *name,
				   const struct sieve_compile_options *opt, char **error_r)
{
	struct sieve_compile_options o;
	memset(&o, 0, sizeof(o));
	if (opt != NULL)
		o = *opt;
	if (o.extensions == 0)
		o.extensions = SIEVE_EXT_USER_DEFAULT;
	if (name == NULL)
		name = "script";
	size_t max = o.max_script_size ? o.max_script_size : 1024 * 1024;
	if (len > max) {
		*error_r = xasprintf("%s:1:1: script is larger than %zu bytes", name, max);
		return NULL;
	}
	struct sieve_script *s = xcalloc(1, sizeof(*s));
	s->name = xstrdup(name);
	s->allowed = o.extensions;
	char *err = NULL;
	unsigned count = 0;
	struct sieve_error_list all = { .n = 0 };
	struct sieve_error_list *saved_sink = sieve_error_sink;
	if (o.all_errors)
		sieve_error_sink = &all;
	if (sieve_parse(src, len, &o, &s->cmds, &s->ncmds, &err) < 0 ||
	    sieve_validate(s, &o, 0, &count, &err) < 0) {
		if (o.all_errors && all.n > 0) {
			struct buf b;
			buf_init(&b, 64 * 1024);
			for (size_t i = 0; i < all.n; i++)
				buf_printf(&b, "%s%s:%s", i ? "\n" : "", name, all.msg[i]);
			*error_r = buf_steal(&b);
			buf_deinit(&b);
		} else {
			*error_r = xasprintf("%s:%s", name, err);
		}
		free(err);
		sieve_script_free(&s);
		s = NULL;
	}
	sieve_error_sink = saved_sink;
	for (size_t i = 0; i < all.n; i++)
		free(all.msg[i]);
	return s;
}

void sieve_script_free(struct sieve_script **sp)
{
	struct sieve_script *s = *sp;
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->ncmds; i++)
		sieve_node_free(s->cmds[i]);
	free(s->cmds);
	for (size_t i = 0; i < s->nincludes; i++)
		sieve_script_free(&s->includes[i]);
	free(s->includes);
	free(s->name);
	free(s->testsuite_name);
	free(s);
	*sp = NULL;
}

unsigned sieve_script_extensions(const struct sieve_script *s)
{
	return s->required;
}

const char *sieve_action_name(enum sieve_action_type t)
{
	switch (t) {
	case SIEVE_ACT_KEEP: return "keep";
	case SIEVE_ACT_FILEINTO: return "fileinto";
	case SIEVE_ACT_REDIRECT: return "redirect";
	case SIEVE_ACT_DISCARD: return "discard";
	case SIEVE_ACT_REJECT: return "reject";
	case SIEVE_ACT_EREJECT: return "ereject";
	case SIEVE_ACT_VACATION: return "vacation";
	case SIEVE_ACT_NOTIFY: return "notify";
	case SIEVE_ACT_ADDHEADER: return "addheader";
	case SIEVE_ACT_DELETEHEADER: return "deleteheader";
	case SIEVE_ACT_DUPLICATE_TRACK: return "duplicate";
	case SIEVE_ACT_ROUTE_RELAY: return "route-relay";
	case SIEVE_ACT_ROUTE_TRANSPORT: return "route-transport";
	case SIEVE_ACT_WEBHOOK: return "webhook";
	case SIEVE_ACT_QUARANTINE: return "quarantine";
	case SIEVE_ACT_REJECT_CODE: return "reject_code";
	}
	return "?";
}

static void q(struct buf *b, const char *s)
{
	buf_append_str(b, " \"");
	for (; s != NULL && *s; s++) {
		if (*s == '"' || *s == '\\')
			buf_append_c(b, '\\');
		buf_append_c(b, *s == '\r' || *s == '\n' ? ' ' : *s);
	}
	buf_append_c(b, '"');
}

char *sieve_action_describe(const struct sieve_action *a)
{
	struct buf b;
	buf_init(&b, 4096);
	switch (a->type) {
	case SIEVE_ACT_ROUTE_RELAY: buf_append_str(&b, "route :relay"); break;
	case SIEVE_ACT_ROUTE_TRANSPORT: buf_append_str(&b, "route :transport"); break;
	default: buf_append_str(&b, sieve_action_name(a->type)); break;
	}
	if (a->implicit)
		buf_append_str(&b, " (implicit)");
	if (a->copy)
		buf_append_str(&b, " :copy");
	if (a->create)
		buf_append_str(&b, " :create");
	if (a->flags_count > 0) {
		buf_append_str(&b, " :flags [");
		for (size_t i = 0; i < a->flags_count; i++)
			buf_printf(&b, "%s\"%s\"", i ? ", " : "", a->flags[i]);
		buf_append_c(&b, ']');
	}
	switch (a->type) {
	case SIEVE_ACT_VACATION:
		buf_printf(&b, " :seconds %lu", a->seconds);
		if (a->subject)
			buf_append_str(&b, " :subject"), q(&b, a->subject);
		if (a->from)
			buf_append_str(&b, " :from"), q(&b, a->from);
		if (a->mime)
			buf_append_str(&b, " :mime");
		q(&b, a->text);
		break;
	case SIEVE_ACT_NOTIFY:
		buf_printf(&b, " :importance \"%s\"", a->importance ? a->importance : "2");
		if (a->text)
			buf_append_str(&b, " :message"), q(&b, a->text);
		q(&b, a->target);
		break;
	case SIEVE_ACT_REJECT_CODE:
		buf_printf(&b, " \"%s\" \"%s\"", a->smtp_code, a->enhanced_code);
		q(&b, a->text);
		break;
	case SIEVE_ACT_DELETEHEADER:
		if (a->index)
			buf_printf(&b, " :index %u%s", a->index, a->last ? " :last" : "");
		q(&b, a->target);
		break;
	case SIEVE_ACT_ADDHEADER:
		if (a->last)
			buf_append_str(&b, " :last");
		q(&b, a->target);
		q(&b, a->text);
		break;
	case SIEVE_ACT_DUPLICATE_TRACK:
		buf_printf(&b, " :seconds %lu", a->seconds);
		break;
	default:
		if (a->target)
			q(&b, a->target);
		if (a->text)
			q(&b, a->text);
		break;
	}
	char *r = buf_steal(&b);
	buf_deinit(&b);
	return r;
}

/* ---- vacation (RFC 5230 4.5, RFC 3834 2) ---- */

static bool ci_prefix(const char *s, const char *p)
{
	return strncasecmp(s, p, strlen(p)) == 0;
}

int sieve_vacation_allowed(const struct sieve_msg_view *mv)
{
	if (mv->envelope_from == NULL)
		return 0;
	struct sieve_address a;
	int r = sieve_address_parse_path(mv->envelope_from, &a);
	if (r <= 0) {
		sieve_address_free(&a);
		return 0;
	}
	const char *lp = a.local ? a.local : "";
	size_t ll = strlen(lp);
	static const char *bad[] = { "mailer-daemon", "postmaster", "listserv", "majordomo", "mailer", "owner-",
				     "noreply", "no-reply", "no_reply", "do-not-reply", "donotreply", NULL };
	bool no = false;
	for (int i = 0; bad[i]; i++) {
		if (bad[i][strlen(bad[i]) - 1] == '-' ? ci_prefix(lp, bad[i]) : strcasecmp(lp, bad[i]) == 0)
			no = true;
	}
	if (ll >= 8 && strcasecmp(lp + ll - 8, "-request") == 0)
		no = true;
	if (ll >= 6 && strcasecmp(lp + ll - 6, "-owner") == 0)
		no = true;
	sieve_address_free(&a);
	if (no)
		return 0;
	struct sieve_message m;
	sieve_message_parse(&m, mv->raw, mv->raw_len, 1000);
	int ret = 1;
	for (size_t i = 0; i < m.nhdrs && ret; i++) {
		const char *n = m.hdrs[i].name, *v = m.hdrs[i].raw;
		if (ci_prefix(n, "list-"))
			ret = 0;
		else if (strcasecmp(n, "precedence") == 0 &&
			 (strcasecmp(v, "bulk") == 0 || strcasecmp(v, "list") == 0 || strcasecmp(v, "junk") == 0))
			ret = 0;
		else if (strcasecmp(n, "auto-submitted") == 0) {
			size_t l = strcspn(v, " \t;(");
			if (!(l == 2 && strncasecmp(v, "no", 2) == 0))
				ret = 0;
		} else if (strcasecmp(n, "x-auto-response-suppress") == 0 &&
			   (strcasestr(v, "oof") != NULL || strcasestr(v, "all") != NULL))
			ret = 0;
	}
	sieve_message_free(&m);
	return ret;
}
