/* authres: RFC 8601 Authentication-Results generation and forgery detection. */
#include "lib-auth/authres.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/xalloc.h"

void authres_init(struct authres *a, const char *authserv_id)
{
	buf_init(&a->b, AUTHRES_MAX);
	a->results = 0;
	buf_append_str(&a->b, authserv_id != NULL && *authserv_id != '\0' ? authserv_id : "localhost");
}

void authres_deinit(struct authres *a)
{
	buf_deinit(&a->b);
}

/* RFC 2045 token chars */
static bool is_token_char(unsigned char c)
{
	return c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* value = token / quoted-string; addresses local@domain pass if both halves are tokens */
static void append_value(struct buf *b, const char *v)
{
	bool plain = *v != '\0';
	int ats = 0;
	for (const char *p = v; *p != '\0'; p++) {
		if (*p == '@' && ++ats == 1)
			continue;
		if (!is_token_char((unsigned char)*p))
			plain = false;
	}
	if (plain) {
		buf_append_str(b, v);
		return;
	}
	buf_append_c(b, '"');
	for (const char *p = v; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 32 || c == 127)
			continue;
		if (c == '"' || c == '\\')
			buf_append_c(b, '\\');
		buf_append_c(b, (char)c);
	}
	buf_append_c(b, '"');
}

static void append_comment(struct buf *b, const char *s)
{
	buf_append_str(b, " (");
	for (const char *p = s; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 32 || c >= 127)
			continue;
		if (c == '(' || c == ')' || c == '\\')
			buf_append_c(b, '\\');
		buf_append_c(b, (char)c);
	}
	buf_append_c(b, ')');
}

/* Append one result atomically: if it does not fit, the field is unchanged. */
static void commit(struct authres *a, struct buf *r)
{
	size_t before = a->b.len;
	if (buf_append(&a->b, ";\r\n\t", 4) < 0 || buf_append(&a->b, r->data, r->len) < 0) {
		a->b.len = before;
		a->b.data[before] = '\0';
	} else {
		a->results++;
	}
	buf_deinit(r);
}

void authres_add(struct authres *a, const char *method, const char *result, const char *reason,
		 const char *props)
{
	struct buf r;
	buf_init(&r, AUTHRES_MAX);
	buf_printf(&r, "%s=%s", method, result);
	if (reason != NULL && *reason != '\0')
		append_comment(&r, reason);
	if (props != NULL && *props != '\0')
		buf_printf(&r, " %s", props);
	commit(a, &r);
}

void authres_add_spf(struct authres *a, enum spf_result res, const char *mailfrom, const char *helo,
		     const char *reason)
{
	struct buf r;
	buf_init(&r, AUTHRES_MAX);
	buf_printf(&r, "spf=%s", spf_result_name(res));
	if (reason != NULL && *reason != '\0')
		append_comment(&r, reason);
	if (mailfrom != NULL && *mailfrom != '\0') {
		buf_append_str(&r, " smtp.mailfrom=");
		append_value(&r, mailfrom);
	} else if (helo != NULL && *helo != '\0') {
		buf_append_str(&r, " smtp.helo=");
		append_value(&r, helo);
	}
	commit(a, &r);
}

void authres_add_dkim(struct authres *a, const struct dkim_sig_result *s)
{
	struct buf r;
	buf_init(&r, AUTHRES_MAX);
	buf_printf(&r, "dkim=%s", dkim_result_name(s->result));
	if (s->problem != NULL)
		append_comment(&r, s->problem);
	static const char *const names[] = {"header.d=", "header.i=", "header.s=", "header.a=", "header.b="};
	const char *vals[] = {s->domain, s->identity, s->selector, s->algorithm, s->b_prefix};
	for (size_t i = 0; i < 5; i++) {
		if (vals[i] == NULL || *vals[i] == '\0')
			continue;
		buf_printf(&r, " %s", names[i]);
		append_value(&r, vals[i]);
	}
	commit(a, &r);
}

void authres_add_dkim_none(struct authres *a)
{
	authres_add(a, "dkim", "none", NULL, NULL);
}

void authres_add_dmarc(struct authres *a, const struct dmarc_outcome *o, const char *from_domain)
{
	struct buf r;
	buf_init(&r, AUTHRES_MAX);
	buf_printf(&r, "dmarc=%s", dmarc_result_name(o->result));
	if (o->record_domain != NULL)
		buf_printf(&r, " (p=%s dis=%s)", dmarc_policy_name(o->policy),
			   dmarc_policy_name(o->result == DMARC_RESULT_FAIL ? o->disposition : DMARC_POLICY_NONE));
	if (from_domain != NULL && *from_domain != '\0') {
		buf_append_str(&r, " header.from=");
		append_value(&r, from_domain);
	}
	commit(a, &r);
}

void authres_add_arc(struct authres *a, const struct arc_verify_result *r)
{
	char comment[32] = "";
	if (r->cv == ARC_RESULT_PASS)
		snprintf(comment, sizeof(comment), "i=%u", r->instances);
	authres_add(a, "arc", arc_result_name(r->cv), r->cv == ARC_RESULT_FAIL ? r->problem : comment, NULL);
}

char *authres_value(struct authres *a)
{
	if (a->results == 0)
		buf_append_str(&a->b, "; none");
	char *s = buf_steal(&a->b);
	a->results = 0;
	return s;
}

char *authres_finish(struct authres *a)
{
	char *v = authres_value(a);
	char *s = xasprintf("Authentication-Results: %s\r\n", v);
	free(v);
	return s;
}

/* skip CFWS (comments may nest) */
static size_t skip_cfws(const char *s, size_t i, size_t len)
{
	for (;;) {
		while (i < len && isspace((unsigned char)s[i]))
			i++;
		if (i < len && s[i] == '(') {
			int depth = 0;
			for (; i < len; i++) {
				if (s[i] == '\\' && i + 1 < len)
					i++;
				else if (s[i] == '(')
					depth++;
				else if (s[i] == ')' && --depth == 0) {
					i++;
					break;
				}
			}
			continue;
		}
		return i;
	}
}

bool authres_claims(const char *v, size_t len, const char *authserv_id)
{
	size_t i = skip_cfws(v, 0, len);
	char id[256];
	size_t n = 0;
	if (i < len && v[i] == '"') {
		for (i++; i < len && v[i] != '"' && n < sizeof(id) - 1; i++) {
			if (v[i] == '\\' && i + 1 < len)
				i++;
			id[n++] = v[i];
		}
	} else {
		while (i < len && n < sizeof(id) - 1 && v[i] != ';' && v[i] != '(' && !isspace((unsigned char)v[i]))
			id[n++] = v[i++];
	}
	id[n] = '\0';
	return n > 0 && strcasecmp(id, authserv_id) == 0;
}

size_t authres_find_claiming(const struct dkim_msg *m, const char *authserv_id, size_t *idx, size_t max)
{
	size_t found = 0;
	static const char name[] = "Authentication-Results";
	for (size_t i = 0; i < m->nhdrs; i++) {
		const struct dkim_header *h = &m->hdrs[i];
		if (h->name_len != sizeof(name) - 1 || strncasecmp(h->name, name, h->name_len) != 0)
			continue;
		const char *colon = memchr(h->raw, ':', h->raw_len);
		size_t off = (size_t)(colon - h->raw) + 1;
		if (!authres_claims(h->raw + off, h->raw_len - off, authserv_id))
			continue;
		if (found < max)
			idx[found] = i;
		found++;
	}
	return found;
}
