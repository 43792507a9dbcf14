#include "imap/imap_msg.h"

#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib-imap/imap_parser.h"
#include "lib/xalloc.h"

/* buf_append_c without the call and bounds arithmetic while the allocation has room (the
 * ENVELOPE/BODYSTRUCTURE builders append character by character) */
static inline int put_c(struct buf *b, char c)
{
	if (b->len < b->cap && b->len < b->max) {
		b->data[b->len++] = c;
		b->data[b->len] = '\0';
		return 0;
	}
	return buf_append_c(b, c);
}

/* ---- headers ---- */

static void split_header(const char *data, size_t len, struct imap_msg_part *p)
{
	p->hdr = data;
	if (len >= 2 && data[0] == '\r' && data[1] == '\n') {
		p->hdr_len = 2;
	} else {
		const char *e = memmem(data, len, "\r\n\r\n", 4);
		p->hdr_len = e != NULL ? (size_t)(e - data) + 4 : len;
	}
	p->body = data + p->hdr_len;
	p->body_len = len - p->hdr_len;
}

/* Calls cb(name, namelen, field_start, field_len_with_crlf) for each header field. */
typedef bool field_cb(void *arg, const char *name, size_t nlen, const char *field, size_t flen);

static void each_field(const char *hdr, size_t len, field_cb *cb, void *arg)
{
	size_t i = 0;
	while (i < len) {
		if (hdr[i] == '\r' || hdr[i] == '\n')
			break; /* blank line */
		size_t start = i;
		/* field extends over continuation lines */
		for (;;) {
			const char *nl = memchr(hdr + i, '\n', len - i);
			i = nl != NULL ? (size_t)(nl - hdr) + 1 : len;
			if (i >= len || (hdr[i] != ' ' && hdr[i] != '\t'))
				break;
		}
		const char *colon = memchr(hdr + start, ':', i - start);
		if (colon == NULL)
			continue;
		size_t nlen = (size_t)(colon - (hdr + start));
		while (nlen > 0 && (hdr[start + nlen - 1] == ' ' || hdr[start + nlen - 1] == '\t'))
			nlen--;
		if (!cb(arg, hdr + start, nlen, hdr + start, i - start))
			return;
	}
}

struct find_ctx {
	const char *name;
	char *value;
};

static bool find_cb(void *arg, const char *name, size_t nlen, const char *field, size_t flen)
{
	struct find_ctx *c = arg;
	if (strlen(c->name) != nlen || strncasecmp(c->name, name, nlen) != 0)
		return true;
	const char *v = field + nlen;
	const char *end = field + flen;
	while (v < end && *v != ':')
		v++;
	v++;
	struct buf b;
	buf_init(&b, flen + 1);
	for (; v < end; v++) {
		if (*v == '\r' || *v == '\n')
			continue;
		put_c(&b, *v);
	}
	/* trim */
	size_t s = 0;
	while (s < b.len && (b.data[s] == ' ' || b.data[s] == '\t'))
		s++;
	while (b.len > s && (b.data[b.len - 1] == ' ' || b.data[b.len - 1] == '\t'))
		b.len--;
	c->value = xstrndup(b.data + s, b.len - s);
	buf_deinit(&b);
	return false;
}

char *imap_msg_header(const char *hdr, size_t hdr_len, const char *name)
{
	struct find_ctx c = { .name = name };
	each_field(hdr, hdr_len, find_cb, &c);
	return c.value;
}

/* ---- Content-Type ---- */

static const char *skip_ws(const char *p)
{
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != '(')
			return p;
		int depth = 0;
		while (*p) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '(')
				depth++;
			else if (*p == ')' && --depth == 0) {
				p++;
				break;
			}
			p++;
		}
	}
}

static bool is_token(char c)
{
	return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* token or quoted-string; allocated, NULL when none */
static char *read_value(const char **pp)
{
	const char *p = skip_ws(*pp);
	struct buf b;
	buf_init(&b, 4096);
	bool quoted = *p == '"';
	if (quoted) {
		p++;
		while (*p && *p != '"') {
			if (*p == '\\' && p[1])
				p++;
			put_c(&b, *p++);
		}
		if (*p == '"')
			p++;
	} else {
		while (*p && (is_token(*p) || (unsigned char)*p >= 0x80))
			put_c(&b, *p++);
	}
	*pp = p;
	char *v = b.len > 0 || quoted ? xstrndup(b.data, b.len) : NULL;
	buf_deinit(&b);
	return v;
}

static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* Parse "; a=b; c=d" into an IMAP param list; fills boundary when asked. */
static char *parse_params(const char *p, char **boundary_r, char **charset_r)
{
	struct buf out;
	buf_init(&out, 64 * 1024);
	size_t n = 0;
	for (;;) {
		p = skip_ws(p);
		if (*p != ';')
			break;
		p++;
		p = skip_ws(p);
		const char *ns = p;
		while (*p && is_token(*p))
			p++;
		size_t nl = (size_t)(p - ns);
		p = skip_ws(p);
		if (nl == 0 || *p != '=') {
			while (*p && *p != ';')
				p++;
			continue;
		}
		p++;
		char *v = read_value(&p);
		if (v == NULL)
			continue;
		char *name = xstrndup(ns, nl);
		for (char *q = name; *q; q++)
			*q = (char)toupper((unsigned char)*q);
		if (boundary_r != NULL && strcmp(name, "BOUNDARY") == 0 && *boundary_r == NULL)
			*boundary_r = xstrdup(v);
		if (charset_r != NULL && strcmp(name, "CHARSET") == 0 && *charset_r == NULL)
			*charset_r = xstrdup(v);
		put_c(&out, n++ == 0 ? '(' : ' ');
		imap_append_string(&out, name, strlen(name));
		put_c(&out, ' ');
		imap_append_string(&out, v, strlen(v));
		free(name);
		free(v);
	}
	if (n == 0)
		buf_append_str(&out, "NIL");
	else
		put_c(&out, ')');
	char *r = buf_steal(&out);
	buf_deinit(&out);
	return r;
}

static void parse_part(struct imap_msg *m, struct imap_msg_part *p, const char *data, size_t len, int depth,
                       bool digest_child);

static void parse_multipart(struct imap_msg *m, struct imap_msg_part *p, const char *boundary, int depth)
{
	size_t bl = strlen(boundary);
	const char *body = p->body;
	size_t len = p->body_len;
	size_t cap = 0;
	const char *part_start = NULL;
	size_t i = 0;
	bool first = true;
	while (i < len) {
		/* at line start */
		const char *line = body + i;
		const char *nl = memchr(line, '\n', len - i);
		size_t ll = nl != NULL ? (size_t)(nl - line) + 1 : len - i;
		if (ll >= 2 + bl && line[0] == '-' && line[1] == '-' && memcmp(line + 2, boundary, bl) == 0) {
			bool close = ll >= 4 + bl && line[2 + bl] == '-' && line[3 + bl] == '-';
			if (part_start != NULL) {
				/* the CRLF before the delimiter belongs to the delimiter */
				const char *pe = line;
				if (pe - part_start >= 2 && pe[-2] == '\r' && pe[-1] == '\n')
					pe -= 2;
				else if (pe - part_start >= 1 && pe[-1] == '\n')
					pe -= 1;
				if (pe < part_start)
					pe = part_start;
				if (m->parts < IMAP_MSG_MAX_PARTS) {
					if (p->nchildren == cap) {
						cap = cap ? cap * 2 : 4;
						p->children = xreallocarray(p->children, cap, sizeof(*p->children));
					}
					struct imap_msg_part *c = &p->children[p->nchildren++];
					memset(c, 0, sizeof(*c));
					m->parts++;
					parse_part(m, c, part_start, (size_t)(pe - part_start), depth + 1,
					           strcmp(p->subtype, "digest") == 0);
				}
			}
			first = false;
			if (close)
				return;
			part_start = line + ll;
		}
		(void)first;
		i += ll;
	}
	/* unterminated last part: take it to the end */
	if (part_start != NULL && part_start <= body + len && m->parts < IMAP_MSG_MAX_PARTS) {
		if (p->nchildren == cap) {
			cap = cap ? cap * 2 : 4;
			p->children = xreallocarray(p->children, cap, sizeof(*p->children));
		}
		struct imap_msg_part *c = &p->children[p->nchildren++];
		memset(c, 0, sizeof(*c));
		m->parts++;
		parse_part(m, c, part_start, (size_t)(body + len - part_start), depth + 1, strcmp(p->subtype, "digest") == 0);
	}
}

static void parse_part(struct imap_msg *m, struct imap_msg_part *p, const char *data, size_t len, int depth,
                       bool digest_child)
{
	split_header(data, len, p);
	char *ct = imap_msg_header(p->hdr, p->hdr_len, "Content-Type");
	char *boundary = NULL;
	if (ct != NULL) {
		const char *q = ct;
		char *type = read_value(&q);
		q = skip_ws(q);
		char *sub = NULL;
		if (*q == '/') {
			q++;
			sub = read_value(&q);
		}
		if (type != NULL && sub != NULL && type[0] && sub[0]) {
			lower(type);
			lower(sub);
			p->type = type;
			p->subtype = sub;
			p->params = parse_params(q, &boundary, &p->charset);
		} else {
			free(type);
			free(sub);
		}
	}
	if (p->type == NULL) {
		p->type = xstrdup(digest_child ? "message" : "text");
		p->subtype = xstrdup(digest_child ? "rfc822" : "plain");
		p->params = xstrdup(digest_child ? "NIL" : "(\"CHARSET\" \"us-ascii\")");
	}
	free(ct);
	if (depth < IMAP_MSG_MAX_DEPTH) {
		if (strcmp(p->type, "multipart") == 0 && boundary != NULL && boundary[0] != '\0') {
			parse_multipart(m, p, boundary, depth);
		} else if (strcmp(p->type, "message") == 0 && strcmp(p->subtype, "rfc822") == 0) {
			p->inner = xcalloc(1, sizeof(*p->inner));
			m->parts++;
			parse_part(m, p->inner, p->body, p->body_len, depth + 1, false);
		}
	}
	free(boundary);
}

void imap_msg_parse(struct imap_msg *m, const char *data, size_t len)
{
	memset(m, 0, sizeof(*m));
	parse_part(m, &m->root, data, len, 0, false);
}

static void part_free(struct imap_msg_part *p)
{
	free(p->type);
	free(p->subtype);
	free(p->params);
	free(p->charset);
	for (size_t i = 0; i < p->nchildren; i++)
		part_free(&p->children[i]);
	free(p->children);
	if (p->inner != NULL) {
		part_free(p->inner);
		free(p->inner);
	}
}

void imap_msg_free(struct imap_msg *m)
{
	part_free(&m->root);
	memset(m, 0, sizeof(*m));
}

/* ---- ENVELOPE ---- */

struct addr {
	char *name, *mailbox, *host;
	int group; /* 1 = group start (mailbox = group name), 2 = group end */
};

static void addr_trim(struct buf *b)
{
	size_t s = 0;
	while (s < b->len && (b->data[s] == ' ' || b->data[s] == '\t'))
		s++;
	buf_consume(b, s);
	while (b->len > 0 && (b->data[b->len - 1] == ' ' || b->data[b->len - 1] == '\t'))
		b->len--;
	b->data[b->len] = '\0';
}

static void addr_push(struct addr **list, size_t *n, size_t *cap, struct buf *phrase, struct buf *angle, bool had_angle)
{
	addr_trim(phrase);
	addr_trim(angle);
	const char *spec = had_angle ? angle->data : phrase->data;
	if (spec[0] == '\0' && !had_angle)
		return;
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 4;
		*list = xreallocarray(*list, *cap, sizeof(**list));
	}
	struct addr *a = &(*list)[(*n)++];
	memset(a, 0, sizeof(*a));
	if (had_angle && phrase->len > 0)
		a->name = xstrdup(phrase->data);
	/* drop an obsolete route "@a,@b:" */
	if (spec[0] == '@') {
		const char *c = strchr(spec, ':');
		if (c != NULL)
			spec = c + 1;
	}
	const char *at = strrchr(spec, '@');
	if (at != NULL) {
		a->mailbox = xstrndup(spec, (size_t)(at - spec));
		a->host = xstrdup(at + 1);
	} else {
		a->mailbox = xstrdup(spec);
		a->host = NULL;
	}
	buf_reset(phrase);
	buf_reset(angle);
}

static void parse_addresses(const char *s, struct addr **list_r, size_t *n_r)
{
	struct addr *list = NULL;
	size_t n = 0, cap = 0;
	struct buf phrase, angle;
	size_t max = strlen(s) + 1;
	buf_init(&phrase, max);
	buf_init(&angle, max);
	bool in_angle = false, had_angle = false, in_group = false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		if (c == '(') {
			int depth = 0;
			for (; *p; p++) {
				if (*p == '\\' && p[1])
					p++;
				else if (*p == '(')
					depth++;
				else if (*p == ')' && --depth == 0)
					break;
			}
			if (*p == '\0')
				break;
			continue;
		}
		struct buf *dst = in_angle ? &angle : &phrase;
		if (c == '"') {
			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1])
					p++;
				put_c(dst, *p);
			}
			if (*p == '\0')
				break;
			continue;
		}
		if (c == '<' && !in_angle) {
			in_angle = true;
			had_angle = true;
			continue;
		}
		if (c == '>' && in_angle) {
			in_angle = false;
			continue;
		}
		if (c == ':' && !in_angle && !in_group) {
			addr_trim(&phrase);
			if (n == cap) {
				cap = cap ? cap * 2 : 4;
				list = xreallocarray(list, cap, sizeof(*list));
			}
			memset(&list[n], 0, sizeof(list[n]));
			list[n].group = 1;
			list[n++].mailbox = xstrdup(phrase.data);
			buf_reset(&phrase);
			in_group = true;
			continue;
		}
		if ((c == ',' || c == ';') && !in_angle) {
			addr_push(&list, &n, &cap, &phrase, &angle, had_angle);
			had_angle = false;
			if (c == ';' && in_group) {
				if (n == cap) {
					cap = cap ? cap * 2 : 4;
					list = xreallocarray(list, cap, sizeof(*list));
				}
				memset(&list[n], 0, sizeof(list[n]));
				list[n++].group = 2;
				in_group = false;
			}
			continue;
		}
		if ((c == '\r' || c == '\n'))
			continue;
		put_c(dst, c);
	}
	addr_push(&list, &n, &cap, &phrase, &angle, had_angle);
	if (in_group) {
		if (n == cap) {
			cap = cap ? cap * 2 : 4;
			list = xreallocarray(list, cap, sizeof(*list));
		}
		memset(&list[n], 0, sizeof(list[n]));
		list[n++].group = 2;
	}
	buf_deinit(&phrase);
	buf_deinit(&angle);
	*list_r = list;
	*n_r = n;
}

static void append_addr_list(struct buf *out, const char *value)
{
	if (value == NULL || value[0] == '\0') {
		buf_append_str(out, "NIL");
		return;
	}
	struct addr *list;
	size_t n;
	parse_addresses(value, &list, &n);
	if (n == 0) {
		buf_append_str(out, "NIL");
	} else {
		put_c(out, '(');
		for (size_t i = 0; i < n; i++) {
			struct addr *a = &list[i];
			put_c(out, '(');
			if (a->group == 1) {
				buf_append_str(out, "NIL NIL ");
				imap_append_nstring(out, a->mailbox);
				buf_append_str(out, " NIL");
			} else if (a->group == 2) {
				buf_append_str(out, "NIL NIL NIL NIL");
			} else {
				imap_append_nstring(out, a->name);
				buf_append_str(out, " NIL ");
				imap_append_nstring(out, a->mailbox);
				put_c(out, ' ');
				imap_append_nstring(out, a->host);
			}
			put_c(out, ')');
			free(a->name);
			free(a->mailbox);
			free(a->host);
		}
		put_c(out, ')');
	}
	free(list);
}

void imap_msg_envelope(const struct imap_msg_part *p, struct buf *out)
{
	static const char *const names[] = { "Date", "Subject", "From", "Sender", "Reply-To", "To", "Cc", "Bcc",
	                                     "In-Reply-To", "Message-ID" };
	char *v[10];
	for (size_t i = 0; i < 10; i++)
		v[i] = imap_msg_header(p->hdr, p->hdr_len, names[i]);
	put_c(out, '(');
	imap_append_nstring(out, v[0]);
	put_c(out, ' ');
	imap_append_nstring(out, v[1]);
	for (size_t i = 2; i < 8; i++) {
		put_c(out, ' ');
		const char *val = v[i];
		if ((i == 3 || i == 4) && (val == NULL || val[0] == '\0'))
			val = v[2];
		append_addr_list(out, val);
	}
	put_c(out, ' ');
	imap_append_nstring(out, v[8]);
	put_c(out, ' ');
	imap_append_nstring(out, v[9]);
	put_c(out, ')');
	for (size_t i = 0; i < 10; i++)
		free(v[i]);
}

/* ---- BODYSTRUCTURE ---- */

static size_t count_lines(const char *s, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\n')
			n++;
	if (len > 0 && s[len - 1] != '\n')
		n++;
	return n;
}

static void append_upper_string(struct buf *out, const char *s)
{
	char *u = xstrdup(s);
	for (char *q = u; *q; q++)
		*q = (char)toupper((unsigned char)*q);
	imap_append_string(out, u, strlen(u));
	free(u);
}

static void append_disposition(struct buf *out, const struct imap_msg_part *p)
{
	char *d = imap_msg_header(p->hdr, p->hdr_len, "Content-Disposition");
	if (d == NULL) {
		buf_append_str(out, "NIL");
		return;
	}
	const char *q = d;
	char *type = read_value(&q);
	if (type == NULL || type[0] == '\0') {
		buf_append_str(out, "NIL");
	} else {
		put_c(out, '(');
		append_upper_string(out, type);
		put_c(out, ' ');
		char *params = parse_params(q, NULL, NULL);
		buf_append_str(out, params);
		free(params);
		put_c(out, ')');
	}
	free(type);
	free(d);
}

static void append_ext_tail(struct buf *out, const struct imap_msg_part *p)
{
	put_c(out, ' ');
	append_disposition(out, p);
	char *lang = imap_msg_header(p->hdr, p->hdr_len, "Content-Language");
	char *loc = imap_msg_header(p->hdr, p->hdr_len, "Content-Location");
	put_c(out, ' ');
	imap_append_nstring(out, lang);
	put_c(out, ' ');
	imap_append_nstring(out, loc);
	free(lang);
	free(loc);
}

void imap_msg_bodystructure(const struct imap_msg_part *p, struct buf *out, bool extended)
{
	put_c(out, '(');
	if (p->nchildren > 0) {
		for (size_t i = 0; i < p->nchildren; i++)
			imap_msg_bodystructure(&p->children[i], out, extended);
		put_c(out, ' ');
		append_upper_string(out, p->subtype);
		if (extended) {
			put_c(out, ' ');
			buf_append_str(out, p->params);
			append_ext_tail(out, p);
		}
		put_c(out, ')');
		return;
	}
	if (strcmp(p->type, "multipart") == 0) {
		/* a multipart without parts: describe it as an empty text part (as Dovecot does) */
		buf_append_str(out, "\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)");
		return;
	}
	append_upper_string(out, p->type);
	put_c(out, ' ');
	append_upper_string(out, p->subtype);
	put_c(out, ' ');
	buf_append_str(out, p->params);
	char *id = imap_msg_header(p->hdr, p->hdr_len, "Content-ID");
	char *desc = imap_msg_header(p->hdr, p->hdr_len, "Content-Description");
	char *enc = imap_msg_header(p->hdr, p->hdr_len, "Content-Transfer-Encoding");
	put_c(out, ' ');
	imap_append_nstring(out, id);
	put_c(out, ' ');
	imap_append_nstring(out, desc);
	put_c(out, ' ');
	append_upper_string(out, enc != NULL && enc[0] ? enc : "7BIT");
	buf_printf(out, " %zu", p->body_len);
	free(id);
	free(desc);
	free(enc);
	if (strcmp(p->type, "text") == 0) {
		buf_printf(out, " %zu", count_lines(p->body, p->body_len));
	} else if (p->inner != NULL) {
		put_c(out, ' ');
		imap_msg_envelope(p->inner, out);
		put_c(out, ' ');
		imap_msg_bodystructure(p->inner, out, extended);
		buf_printf(out, " %zu", count_lines(p->body, p->body_len));
	}
	if (extended) {
		char *md5 = imap_msg_header(p->hdr, p->hdr_len, "Content-MD5");
		put_c(out, ' ');
		imap_append_nstring(out, md5);
		free(md5);
		append_ext_tail(out, p);
	}
	put_c(out, ')');
}

/* ---- sections ---- */

struct fields_ctx {
	char **names;
	size_t count;
	bool not;
	struct buf *out;
};

static bool fields_cb(void *arg, const char *name, size_t nlen, const char *field, size_t flen)
{
	struct fields_ctx *c = arg;
	bool match = false;
	for (size_t i = 0; i < c->count && !match; i++)
		match = strlen(c->names[i]) == nlen && strncasecmp(c->names[i], name, nlen) == 0;
	if (match != c->not)
		buf_append(c->out, field, flen);
	return true;
}

/* Parse "(A B C)" of header names. -1 when malformed. */
static int parse_field_list(const char *s, char ***names_r, size_t *count_r)
{
	while (*s == ' ')
		s++;
	if (*s != '(')
		return -1;
	s++;
	size_t n = 0, cap = 4;
	char **names = xcalloc(cap, sizeof(*names));
	for (;;) {
		while (*s == ' ')
			s++;
		if (*s == ')')
			break;
		const char *st = s;
		bool quoted = *s == '"';
		if (quoted) {
			s++;
			st = s;
			while (*s && *s != '"')
				s++;
		} else {
			while (*s && *s != ' ' && *s != ')')
				s++;
		}
		if (*s == '\0' || s == st) {
			for (size_t i = 0; i < n; i++)
				free(names[i]);
			free(names);
			return -1;
		}
		if (n == cap) {
			cap *= 2;
			names = xreallocarray(names, cap, sizeof(*names));
		}
		names[n++] = xstrndup(st, (size_t)(s - st));
		if (quoted)
			s++;
	}
	if (n == 0 || s[1] != '\0') {
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		free(names);
		return -1;
	}
	*names_r = names;
	*count_r = n;
	return 0;
}

static const struct imap_msg_part *resolve(const struct imap_msg *m, const char **sp, int *nums_r)
{
	const struct imap_msg_part *p = &m->root;
	const char *s = *sp;
	int nums = 0;
	while (isdigit((unsigned char)*s)) {
		char *end;
		unsigned long k = strtoul(s, &end, 10);
		if (k == 0 || k > 100000)
			return NULL;
		if (nums > 0 && p->inner != NULL)
			p = p->inner;
		if (p != NULL && p->nchildren > 0) {
			p = k <= p->nchildren ? &p->children[k - 1] : NULL;
		} else if (k != 1) {
			p = NULL;
		}
		nums++;
		s = end;
		if (*s == '.' && isdigit((unsigned char)s[1]))
			s++;
		else if (*s == '.')
			s++;
		else
			break;
		if (p == NULL) {
			/* keep parsing to validate the syntax */
			while (isdigit((unsigned char)*s) || *s == '.')
				s++;
			break;
		}
	}
	*sp = s;
	*nums_r = nums;
	return p;
}

int imap_msg_section(const struct imap_msg *m, const char *section, struct buf *out)
{
	const char *s = section;
	int nums = 0;
	const struct imap_msg_part *p = resolve(m, &s, &nums);
	if (*s == '\0') {
		if (p == NULL)
			return 1;
		if (nums == 0)
			return buf_append(out, m->root.hdr, m->root.hdr_len + m->root.body_len) < 0 ? -1 : 1;
		return buf_append(out, p->body, p->body_len) < 0 ? -1 : 1;
	}
	if (strcasecmp(s, "MIME") == 0) {
		if (nums == 0)
			return -1;
		if (p == NULL)
			return 1;
		return buf_append(out, p->hdr, p->hdr_len) < 0 ? -1 : 1;
	}
	/* HEADER / TEXT / HEADER.FIELDS apply to a message: the root, or a message/rfc822 part */
	const struct imap_msg_part *msg = p;
	if (nums > 0 && p != NULL)
		msg = p->inner;
	bool header = strcasecmp(s, "HEADER") == 0, text = strcasecmp(s, "TEXT") == 0;
	bool fields = strncasecmp(s, "HEADER.FIELDS ", 14) == 0;
	bool fields_not = strncasecmp(s, "HEADER.FIELDS.NOT ", 18) == 0;
	if (!header && !text && !fields && !fields_not)
		return -1;
	char **names = NULL;
	size_t count = 0;
	if ((fields || fields_not) && parse_field_list(s + (fields ? 14 : 18), &names, &count) < 0)
		return -1;
	int ret = 1;
	if (msg != NULL) {
		if (header) {
			ret = buf_append(out, msg->hdr, msg->hdr_len) < 0 ? -1 : 1;
		} else if (text) {
			ret = buf_append(out, msg->body, msg->body_len) < 0 ? -1 : 1;
		} else {
			struct fields_ctx c = { .names = names, .count = count, .not = fields_not, .out = out };
			each_field(msg->hdr, msg->hdr_len, fields_cb, &c);
			buf_append_str(out, "\r\n");
		}
	}
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
	return ret;
}

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (unsigned char)toupper(c);
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode a part's content transfer encoding; 0 for an unknown encoding. */
static int decode_cte(const struct imap_msg_part *p, struct buf *out)
{
	char *enc = imap_msg_header(p->hdr, p->hdr_len, "Content-Transfer-Encoding");
	int ret = 1;
	if (enc == NULL || strcasecmp(enc, "7bit") == 0 || strcasecmp(enc, "8bit") == 0 ||
	    strcasecmp(enc, "binary") == 0) {
		ret = buf_append(out, p->body, p->body_len) < 0 ? -1 : 1;
	} else if (strcasecmp(enc, "base64") == 0) {
		unsigned acc = 0;
		int bits = 0;
		for (size_t i = 0; i < p->body_len; i++) {
			int v = b64val((unsigned char)p->body[i]);
			if (v < 0)
				continue;
			acc = (acc << 6) | (unsigned)v;
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				put_c(out, (char)((acc >> bits) & 0xff));
			}
		}
	} else if (strcasecmp(enc, "quoted-printable") == 0) {
		const char *b = p->body;
		size_t n = p->body_len;
		for (size_t i = 0; i < n; i++) {
			if (b[i] != '=') {
				put_c(out, b[i]);
				continue;
			}
			if (i + 2 < n && hexval((unsigned char)b[i + 1]) >= 0 && hexval((unsigned char)b[i + 2]) >= 0) {
				put_c(out, (char)(hexval((unsigned char)b[i + 1]) * 16 + hexval((unsigned char)b[i + 2])));
				i += 2;
			} else if (i + 2 < n && b[i + 1] == '\r' && b[i + 2] == '\n') {
				i += 2; /* soft line break */
			} else if (i + 1 < n && b[i + 1] == '\n') {
				i += 1;
			} else {
				put_c(out, '=');
			}
		}
	} else {
		ret = 0;
	}
	free(enc);
	return ret;
}

int imap_msg_binary(const struct imap_msg *m, const char *section, struct buf *out)
{
	const char *s = section;
	int nums = 0;
	const struct imap_msg_part *p = resolve(m, &s, &nums);
	if (*s != '\0')
		return -1;
	if (p == NULL)
		return 1;
	if (nums == 0)
		return buf_append(out, m->root.hdr, m->root.hdr_len + m->root.body_len) < 0 ? -1 : 1;
	return decode_cte(p, out);
}

/* ---- search text: charset conversion, encoded words, case folding ---- */

/* Append in (charset cs) to out as UTF-8; bytes that do not convert are kept as they are. */
static void to_utf8(const char *cs, const char *in, size_t len, struct buf *out)
{
	if (cs == NULL || strcasecmp(cs, "utf-8") == 0 || strcasecmp(cs, "us-ascii") == 0 || strcasecmp(cs, "utf8") == 0) {
		buf_append(out, in, len);
		return;
	}
	iconv_t cd = iconv_open("UTF-8", cs);
	if (cd == (iconv_t)-1) {
		buf_append(out, in, len);
		return;
	}
	char tmp[4096];
	char *ip = (char *)in;
	size_t il = len;
	while (il > 0) {
		char *op = tmp;
		size_t ol = sizeof(tmp);
		size_t r = iconv(cd, &ip, &il, &op, &ol);
		if (buf_append(out, tmp, (size_t)(op - tmp)) < 0)
			break;
		if (r == (size_t)-1 && errno != E2BIG) {
			/* invalid or incomplete input: copy one byte and go on */
			put_c(out, *ip);
			ip++;
			il--;
		}
	}
	iconv_close(cd);
}

void imap_msg_decode_words(const char *in, size_t len, struct buf *out)
{
	size_t i = 0;
	bool last_was_word = false;
	size_t ws_start = 0;
	while (i < len) {
		if (in[i] == '=' && i + 1 < len && in[i + 1] == '?') {
			/* =?charset?X?text?= */
			const char *cs = in + i + 2;
			const char *q1 = memchr(cs, '?', len - (size_t)(cs - in));
			if (q1 != NULL && q1 + 2 < in + len && q1[2] == '?') {
				char enc = (char)toupper((unsigned char)q1[1]);
				const char *text = q1 + 3;
				const char *end = NULL;
				for (const char *t = text; t + 1 < in + len; t++)
					if (t[0] == '?' && t[1] == '=') {
						end = t;
						break;
					}
				if (end != NULL && (enc == 'B' || enc == 'Q') && q1 - cs < 64) {
					if (last_was_word)
						out->len = ws_start; /* whitespace between encoded words vanishes */
					char charset[64];
					memcpy(charset, cs, (size_t)(q1 - cs));
					charset[q1 - cs] = '\0';
					char *star = strchr(charset, '*'); /* RFC 2231 language */
					if (star)
						*star = '\0';
					struct buf raw;
					buf_init(&raw, (size_t)(end - text) + 1);
					if (enc == 'B') {
						unsigned acc = 0;
						int bits = 0;
						for (const char *t = text; t < end; t++) {
							int v = b64val((unsigned char)*t);
							if (v < 0)
								continue;
							acc = (acc << 6) | (unsigned)v;
							bits += 6;
							if (bits >= 8) {
								bits -= 8;
								put_c(&raw, (char)((acc >> bits) & 0xff));
							}
						}
					} else {
						for (const char *t = text; t < end; t++) {
							if (*t == '_')
								put_c(&raw, ' ');
							else if (*t == '=' && t + 2 < end && hexval((unsigned char)t[1]) >= 0 &&
							         hexval((unsigned char)t[2]) >= 0) {
								put_c(&raw, (char)(hexval((unsigned char)t[1]) * 16 + hexval((unsigned char)t[2])));
								t += 2;
							} else
								put_c(&raw, *t);
						}
					}
					to_utf8(charset, raw.data, raw.len, out);
					buf_deinit(&raw);
					i = (size_t)(end - in) + 2;
					last_was_word = true;
					ws_start = out->len;
					continue;
				}
			}
		}
		if (in[i] != ' ' && in[i] != '\t' && in[i] != '\r' && in[i] != '\n') {
			last_was_word = false;
		} else if (!last_was_word) {
			ws_start = out->len + 1;
		}
		put_c(out, in[i]);
		i++;
	}
}

/* Lowercase UTF-8 for matching: ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic capitals. */
void imap_msg_fold(const char *in, size_t len, struct buf *out)
{
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)in[i];
		if (c < 0x80) {
			put_c(out, (char)tolower(c));
			i++;
			continue;
		}
		uint32_t cp;
		size_t n;
		if ((c & 0xe0) == 0xc0 && i + 1 < len && ((unsigned char)in[i + 1] & 0xc0) == 0x80) {
			cp = ((uint32_t)(c & 0x1f) << 6) | ((unsigned char)in[i + 1] & 0x3f);
			n = 2;
		} else {
			put_c(out, (char)c); /* 3- and 4-byte sequences and invalid bytes as they are */
			i++;
			continue;
		}
		if ((cp >= 0xc0 && cp <= 0xde && cp != 0xd7) || (cp >= 0x391 && cp <= 0x3a9) || (cp >= 0x410 && cp <= 0x42f))
			cp += 0x20;
		else if (cp >= 0x400 && cp <= 0x40f)
			cp += 0x50;
		else if (cp >= 0x100 && cp <= 0x17f && (cp & 1) == 0 && cp != 0x130 && cp != 0x138)
			cp += 1;
		char enc[2] = { (char)(0xc0 | (cp >> 6)), (char)(0x80 | (cp & 0x3f)) };
		buf_append(out, enc, 2);
		i += n;
	}
}

static bool folded_contains(const char *hay, size_t len, const char *folded_needle, size_t nl)
{
	if (nl == 0)
		return true;
	struct buf f;
	buf_init(&f, len * 2 + 16);
	imap_msg_fold(hay, len, &f);
	bool r = memmem(f.data, f.len, folded_needle, nl) != NULL;
	buf_deinit(&f);
	return r;
}

static bool part_body_contains(const struct imap_msg_part *p, const char *needle, size_t nl, int depth)
{
	if (depth > IMAP_MSG_MAX_DEPTH)
		return false;
	for (size_t i = 0; i < p->nchildren; i++)
		if (part_body_contains(&p->children[i], needle, nl, depth + 1))
			return true;
	if (p->nchildren > 0)
		return false;
	if (p->inner != NULL) {
		/* an attached message: its header and body are text of the outer body */
		struct buf h;
		buf_init(&h, p->inner->hdr_len * 4 + 16);
		imap_msg_decode_words(p->inner->hdr, p->inner->hdr_len, &h);
		bool r = folded_contains(h.data, h.len, needle, nl);
		buf_deinit(&h);
		return r || part_body_contains(p->inner, needle, nl, depth + 1);
	}
	struct buf raw, utf;
	buf_init(&raw, p->body_len + 16);
	if (decode_cte(p, &raw) <= 0) {
		buf_reset(&raw);
		buf_append(&raw, p->body, p->body_len);
	}
	buf_init(&utf, raw.len * 4 + 16);
	to_utf8(strcmp(p->type, "text") == 0 ? p->charset : NULL, raw.data, raw.len, &utf);
	bool r = folded_contains(utf.data, utf.len, needle, nl);
	buf_deinit(&raw);
	buf_deinit(&utf);
	return r;
}

bool imap_msg_body_search(const struct imap_msg *m, const char *needle)
{
	struct buf n;
	buf_init(&n, strlen(needle) * 2 + 16);
	imap_msg_fold(needle, strlen(needle), &n);
	bool r = part_body_contains(&m->root, n.data, n.len, 0);
	buf_deinit(&n);
	return r;
}

bool imap_msg_text_search(const char *text, size_t len, const char *needle)
{
	struct buf d, n;
	buf_init(&d, len * 4 + 16);
	imap_msg_decode_words(text, len, &d);
	buf_init(&n, strlen(needle) * 2 + 16);
	imap_msg_fold(needle, strlen(needle), &n);
	bool r = folded_contains(d.data, d.len, n.data, n.len);
	buf_deinit(&d);
	buf_deinit(&n);
	return r;
}

bool imap_msg_contains(const char *hay, size_t len, const char *needle)
{
	size_t nl = strlen(needle);
	if (nl == 0)
		return true;
	if (nl > len)
		return false;
	unsigned char first = (unsigned char)tolower((unsigned char)needle[0]);
	for (size_t i = 0; i + nl <= len; i++) {
		if ((unsigned char)tolower((unsigned char)hay[i]) != first)
			continue;
		if (strncasecmp(hay + i, needle, nl) == 0) {
			/* strncasecmp stops at NUL in hay: compare byte-wise instead when hay may hold NUL */
			size_t k = 0;
			while (k < nl && tolower((unsigned char)hay[i + k]) == tolower((unsigned char)needle[k]))
				k++;
			if (k == nl)
				return true;
		}
	}
	return false;
}

static const char *const months[] = { "jan", "feb", "mar", "apr", "may", "jun",
	                              "jul", "aug", "sep", "oct", "nov", "dec" };

time_t imap_msg_parse_date(const char *s)
{
	if (s == NULL)
		return 0;
	const char *p = s;
	while (*p == ' ')
		p++;
	if (isalpha((unsigned char)*p)) {
		const char *c = strchr(p, ',');
		if (c == NULL)
			return 0;
		p = c + 1;
	}
	char *end;
	long day = strtol(p, &end, 10);
	if (end == p || day < 1 || day > 31)
		return 0;
	p = end;
	while (*p == ' ')
		p++;
	int mon = -1;
	for (int i = 0; i < 12; i++)
		if (strncasecmp(p, months[i], 3) == 0)
			mon = i;
	if (mon < 0)
		return 0;
	p += 3;
	long year = strtol(p, &end, 10);
	if (end == p)
		return 0;
	if (year < 50)
		year += 2000;
	else if (year < 1000)
		year += 1900;
	p = end;
	long hh = 0, mm = 0, ss = 0;
	hh = strtol(p, &end, 10);
	if (end != p && *end == ':') {
		p = end + 1;
		mm = strtol(p, &end, 10);
		p = end;
		if (*p == ':') {
			p++;
			ss = strtol(p, &end, 10);
			p = end;
		}
	} else {
		hh = 0;
	}
	while (*p == ' ')
		p++;
	long off = 0;
	if (*p == '+' || *p == '-') {
		long z = strtol(p + 1, &end, 10);
		off = (z / 100) * 3600 + (z % 100) * 60;
		if (*p == '-')
			off = -off;
	}
	struct tm tm = { .tm_year = (int)year - 1900, .tm_mon = mon, .tm_mday = (int)day,
		         .tm_hour = (int)hh, .tm_min = (int)mm, .tm_sec = (int)ss };
	time_t t = timegm(&tm);
	return t - off;
}
