/* SEARCH and UID SEARCH: every RFC 9051 key, CHARSET UTF-8/US-ASCII, ESEARCH RETURN options,
 * MODSEQ (CONDSTORE). Header keys match on the text with RFC 2047 words decoded, body keys
 * on the decoded parts converted to UTF-8 (imap_msg.h), case-insensitively. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_internal.h"
#include "imap/imap_msg.h"
#include "lib-mailbox/maildir.h"
#include "lib/xalloc.h"

enum skind {
	SK_ALL, SK_AND, SK_OR, SK_NOT, SK_FLAG, SK_UNFLAG, SK_KEYWORD, SK_UNKEYWORD, SK_NEW, SK_OLD, SK_RECENT,
	SK_LARGER, SK_SMALLER, SK_BEFORE, SK_ON, SK_SINCE, SK_SENTBEFORE, SK_SENTON, SK_SENTSINCE, SK_HEADER,
	SK_BODY, SK_TEXT, SK_SEQ, SK_UID, SK_MODSEQ,
};

struct skey {
	enum skind kind;
	struct skey *sub;     /* AND children / NOT / OR operands (linked by next) */
	struct skey *next;
	unsigned flag;
	char *str, *hdr;
	uint64_t num;
	time_t date;
	struct seqset set;
};

static void skey_free(struct skey *k)
{
	while (k != NULL) {
		struct skey *n = k->next;
		skey_free(k->sub);
		free(k->str);
		free(k->hdr);
		seqset_free(&k->set);
		free(k);
		k = n;
	}
}

struct sparse {
	const struct imap_arg *args;
	size_t count, pos;
	int depth;
	bool modseq;
};

static struct skey *parse_key(struct sparse *p);

static const char *next_str(struct sparse *p)
{
	if (p->pos >= p->count)
		return NULL;
	const struct imap_arg *a = &p->args[p->pos];
	if (!imap_arg_is_astring(a) || a->type == IMAP_ARG_NIL)
		return NULL;
	p->pos++;
	return a->str;
}

static struct skey *new_key(enum skind kind)
{
	struct skey *k = xcalloc(1, sizeof(*k));
	k->kind = kind;
	return k;
}

/* Parse keys until the end of this argument list; returns an AND node. */
static struct skey *parse_list(struct sparse *p)
{
	struct skey *and = new_key(SK_AND);
	struct skey **tail = &and->sub;
	while (p->pos < p->count) {
		struct skey *k = parse_key(p);
		if (k == NULL) {
			skey_free(and);
			return NULL;
		}
		*tail = k;
		tail = &k->next;
	}
	if (and->sub == NULL) {
		skey_free(and);
		return NULL;
	}
	return and;
}

static struct skey *parse_key(struct sparse *p)
{
	if (p->pos >= p->count || p->depth > 32)
		return NULL;
	const struct imap_arg *a = &p->args[p->pos++];
	if (a->type == IMAP_ARG_LIST) {
		struct sparse sub = { .args = a->list, .count = a->count, .depth = p->depth + 1 };
		struct skey *k = parse_list(&sub);
		p->modseq |= sub.modseq;
		return k;
	}
	if (a->type != IMAP_ARG_ATOM)
		return NULL;
	const char *w = a->str;
	static const struct {
		const char *name;
		enum skind kind;
		unsigned flag;
	} simple[] = {
		{ "ALL", SK_ALL, 0 }, { "ANSWERED", SK_FLAG, MAIL_ANSWERED }, { "DELETED", SK_FLAG, MAIL_DELETED },
		{ "DRAFT", SK_FLAG, MAIL_DRAFT }, { "FLAGGED", SK_FLAG, MAIL_FLAGGED }, { "SEEN", SK_FLAG, MAIL_SEEN },
		{ "UNANSWERED", SK_UNFLAG, MAIL_ANSWERED }, { "UNDELETED", SK_UNFLAG, MAIL_DELETED },
		{ "UNDRAFT", SK_UNFLAG, MAIL_DRAFT }, { "UNFLAGGED", SK_UNFLAG, MAIL_FLAGGED },
		{ "UNSEEN", SK_UNFLAG, MAIL_SEEN }, { "NEW", SK_NEW, 0 }, { "OLD", SK_OLD, 0 }, { "RECENT", SK_RECENT, 0 },
	};
	for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
		if (strcasecmp(w, simple[i].name) == 0) {
			struct skey *k = new_key(simple[i].kind);
			k->flag = simple[i].flag;
			return k;
		}
	static const struct {
		const char *name;
		enum skind kind;
	} dates[] = { { "BEFORE", SK_BEFORE }, { "ON", SK_ON }, { "SINCE", SK_SINCE },
		      { "SENTBEFORE", SK_SENTBEFORE }, { "SENTON", SK_SENTON }, { "SENTSINCE", SK_SENTSINCE } };
	for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++)
		if (strcasecmp(w, dates[i].name) == 0) {
			const char *d = next_str(p);
			time_t t = d ? imap_parse_datetime(d, true) : (time_t)-1;
			if (t == (time_t)-1)
				return NULL;
			struct skey *k = new_key(dates[i].kind);
			k->date = t;
			return k;
		}
	static const struct {
		const char *name;
		const char *hdr;
		enum skind kind;
	} strs[] = { { "BCC", "Bcc", SK_HEADER }, { "CC", "Cc", SK_HEADER }, { "FROM", "From", SK_HEADER },
		     { "SUBJECT", "Subject", SK_HEADER }, { "TO", "To", SK_HEADER }, { "BODY", NULL, SK_BODY },
		     { "TEXT", NULL, SK_TEXT }, { "KEYWORD", NULL, SK_KEYWORD }, { "UNKEYWORD", NULL, SK_UNKEYWORD } };
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (strcasecmp(w, strs[i].name) == 0) {
			const char *v = next_str(p);
			if (v == NULL)
				return NULL;
			struct skey *k = new_key(strs[i].kind);
			k->str = xstrdup(v);
			if (strs[i].hdr)
				k->hdr = xstrdup(strs[i].hdr);
			if (k->kind == SK_KEYWORD || k->kind == SK_UNKEYWORD) {
				/* system flags named as keywords */
				if (strcasecmp(v, "$Forwarded") == 0) {
					k->kind = k->kind == SK_KEYWORD ? SK_FLAG : SK_UNFLAG;
					k->flag = MAIL_FORWARDED;
				}
			}
			return k;
		}
	if (strcasecmp(w, "HEADER") == 0) {
		const char *h = next_str(p);
		const char *v = h ? next_str(p) : NULL;
		if (v == NULL)
			return NULL;
		struct skey *k = new_key(SK_HEADER);
		k->hdr = xstrdup(h);
		k->str = xstrdup(v);
		return k;
	}
	if (strcasecmp(w, "LARGER") == 0 || strcasecmp(w, "SMALLER") == 0) {
		const char *v = next_str(p);
		char *end;
		if (v == NULL || !isdigit((unsigned char)v[0]))
			return NULL;
		struct skey *k = new_key(toupper((unsigned char)w[0]) == 'L' ? SK_LARGER : SK_SMALLER);
		k->num = strtoull(v, &end, 10);
		if (*end != '\0') {
			skey_free(k);
			return NULL;
		}
		return k;
	}
	if (strcasecmp(w, "MODSEQ") == 0) {
		/* MODSEQ [entry-name entry-type] n */
		if (p->pos + 2 < p->count && p->args[p->pos].type == IMAP_ARG_QUOTED)
			p->pos += 2;
		const char *v = next_str(p);
		if (v == NULL || !isdigit((unsigned char)v[0]))
			return NULL;
		struct skey *k = new_key(SK_MODSEQ);
		k->num = strtoull(v, NULL, 10);
		p->modseq = true;
		return k;
	}
	if (strcasecmp(w, "NOT") == 0) {
		p->depth++;
		struct skey *s = parse_key(p);
		p->depth--;
		if (s == NULL)
			return NULL;
		struct skey *k = new_key(SK_NOT);
		k->sub = s;
		return k;
	}
	if (strcasecmp(w, "OR") == 0) {
		p->depth++;
		struct skey *a1 = parse_key(p);
		struct skey *a2 = a1 ? parse_key(p) : NULL;
		p->depth--;
		if (a2 == NULL) {
			skey_free(a1);
			return NULL;
		}
		struct skey *k = new_key(SK_OR);
		k->sub = a1;
		a1->next = a2;
		return k;
	}
	if (strcasecmp(w, "UID") == 0) {
		const char *v = next_str(p);
		struct skey *k = new_key(SK_UID);
		if (v == NULL || seqset_parse(v, &k->set) < 0) {
			skey_free(k);
			return NULL;
		}
		return k;
	}
	struct skey *k = new_key(SK_SEQ);
	if (seqset_parse(w, &k->set) < 0) {
		skey_free(k);
		return NULL;
	}
	return k;
}

/* ---- evaluation ---- */

struct seval {
	struct imap_session *s;
	struct mbox_msg m;
	size_t seq;
	bool loaded, parsed;
	struct buf content;
	struct imap_msg msg;
};

static bool load(struct seval *e)
{
	if (!e->loaded) {
		e->loaded = true;
		buf_init(&e->content, (size_t)e->m.size + 1);
		if (mbox_msg_read(e->s->mbox, &e->m, &e->content) > 0) {
			imap_msg_parse(&e->msg, e->content.data, e->content.len);
			e->parsed = true;
		}
	}
	return e->parsed;
}

static time_t day_of(time_t t)
{
	return t - (t % 86400 + 86400) % 86400;
}

static bool has_keyword(const char *list, const char *kw)
{
	size_t kl = strlen(kw);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ' ');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == kl && strncasecmp(p, kw, l) == 0)
			return true;
		p = e ? e + 1 : p + l;
	}
	return false;
}

static bool header_has(struct seval *e, const char *name, const char *needle)
{
	if (!load(e))
		return false;
	/* every occurrence of the field */
	const char *hdr = e->msg.root.hdr;
	size_t len = e->msg.root.hdr_len;
	size_t nl = strlen(name);
	for (size_t i = 0; i < len;) {
		const char *line = hdr + i;
		const char *end = memchr(line, '\n', len - i);
		size_t ll = end ? (size_t)(end - line) + 1 : len - i;
		if (ll > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			/* collect the field with its continuation lines */
			size_t fl = ll;
			while (i + fl < len && (hdr[i + fl] == ' ' || hdr[i + fl] == '\t')) {
				const char *e2 = memchr(hdr + i + fl, '\n', len - i - fl);
				fl = e2 ? (size_t)(e2 - hdr) + 1 - i : len - i;
			}
			if (needle[0] == '\0' || imap_msg_text_search(line + nl + 1, fl - nl - 1, needle))
				return true;
			i += fl;
			continue;
		}
		i += ll;
	}
	return false;
}

static bool eval(struct seval *e, const struct skey *k)
{
	struct imap_session *s = e->s;
	const struct mbox_msg *m = &e->m;
	switch (k->kind) {
	case SK_ALL:
		return true;
	case SK_AND:
		for (const struct skey *c = k->sub; c; c = c->next)
			if (!eval(e, c))
				return false;
		return true;
	case SK_OR:
		return eval(e, k->sub) || eval(e, k->sub->next);
	case SK_NOT:
		return !eval(e, k->sub);
	case SK_FLAG:
		return (m->flags & k->flag) != 0;
	case SK_UNFLAG:
		return (m->flags & k->flag) == 0;
	case SK_KEYWORD:
		return has_keyword(m->keywords, k->str);
	case SK_UNKEYWORD:
		return !has_keyword(m->keywords, k->str);
	case SK_NEW:
		return m->uid >= s->recent_from && !(m->flags & MAIL_SEEN);
	case SK_OLD:
		return m->uid < s->recent_from;
	case SK_RECENT:
		return m->uid >= s->recent_from;
	case SK_LARGER:
		return m->size > k->num;
	case SK_SMALLER:
		return m->size < k->num;
	case SK_BEFORE:
		return day_of(m->internaldate) < k->date;
	case SK_ON:
		return day_of(m->internaldate) == k->date;
	case SK_SINCE:
		return day_of(m->internaldate) >= k->date;
	case SK_SENTBEFORE:
	case SK_SENTON:
	case SK_SENTSINCE: {
		if (!load(e))
			return false;
		char *d = imap_msg_header(e->msg.root.hdr, e->msg.root.hdr_len, "Date");
		time_t t = imap_msg_parse_date(d);
		free(d);
		if (t == 0)
			t = m->internaldate;
		t = day_of(t);
		return k->kind == SK_SENTBEFORE ? t < k->date : k->kind == SK_SENTON ? t == k->date : t >= k->date;
	}
	case SK_HEADER:
		return header_has(e, k->hdr, k->str);
	case SK_BODY:
		return load(e) && imap_msg_body_search(&e->msg, k->str);
	case SK_TEXT:
		return load(e) && (imap_msg_text_search(e->msg.root.hdr, e->msg.root.hdr_len, k->str) ||
		                   imap_msg_body_search(&e->msg, k->str));
	case SK_SEQ:
		if (k->set.dollar)
			return seqset_has(&k->set, m->uid, 0);
		return seqset_has(&k->set, (uint32_t)e->seq, (uint32_t)s->count);
	case SK_UID:
		return seqset_has(&k->set, m->uid, s->count ? s->uids[s->count - 1] : 0);
	case SK_MODSEQ:
		return m->modseq >= k->num;
	}
	return false;
}

static void bind_sets(struct imap_session *s, struct skey *k)
{
	for (; k != NULL; k = k->next) {
		if (k->set.dollar)
			imap_seqset_bind(s, &k->set);
		bind_sets(s, k->sub);
	}
}

enum { RET_MIN = 1, RET_MAX = 2, RET_ALL = 4, RET_COUNT = 8, RET_SAVE = 16 };

void cmd_search(struct imap_session *s, struct imap_command *c, bool uid)
{
	size_t i = 0;
	unsigned ret = 0;
	bool esearch = false;
	if (i < c->count && imap_arg_atom_eq(&c->args[i], "RETURN")) {
		if (i + 1 >= c->count || c->args[i + 1].type != IMAP_ARG_LIST) {
			imap_send(s, "%s BAD Invalid RETURN\r\n", c->tag);
			return;
		}
		const struct imap_arg *r = &c->args[i + 1];
		for (size_t k = 0; k < r->count; k++) {
			if (imap_arg_atom_eq(&r->list[k], "MIN"))
				ret |= RET_MIN;
			else if (imap_arg_atom_eq(&r->list[k], "MAX"))
				ret |= RET_MAX;
			else if (imap_arg_atom_eq(&r->list[k], "ALL"))
				ret |= RET_ALL;
			else if (imap_arg_atom_eq(&r->list[k], "COUNT"))
				ret |= RET_COUNT;
			else if (imap_arg_atom_eq(&r->list[k], "SAVE"))
				ret |= RET_SAVE;
			else {
				imap_send(s, "%s BAD Unknown RETURN option\r\n", c->tag);
				return;
			}
		}
		if (ret == 0)
			ret = RET_ALL;
		esearch = true;
		i += 2;
	}
	if (i < c->count && imap_arg_atom_eq(&c->args[i], "CHARSET")) {
		const char *cs = i + 1 < c->count ? imap_arg_astring(&c->args[i + 1]) : NULL;
		if (cs == NULL) {
			imap_send(s, "%s BAD Missing charset\r\n", c->tag);
			return;
		}
		if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
			imap_send(s, "%s NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n", c->tag);
			return;
		}
		i += 2;
	}
	if (s->rev2 && !esearch) {
		esearch = true;
		ret = RET_ALL;
	}
	if (i >= c->count) {
		imap_send(s, "%s BAD Missing search criteria\r\n", c->tag);
		return;
	}
	struct sparse p = { .args = c->args + i, .count = c->count - i };
	struct skey *key = parse_list(&p);
	if (key == NULL) {
		imap_send(s, "%s BAD Invalid search criteria\r\n", c->tag);
		return;
	}
	bind_sets(s, key);
	uint32_t *hits = xmalloc((s->count ? s->count : 1) * sizeof(*hits));
	uint32_t *hit_uids = xmalloc((s->count ? s->count : 1) * sizeof(*hit_uids));
	size_t nh = 0;
	uint64_t maxmod = 0;
	for (size_t k = 0; k < s->count; k++) {
		struct seval e = { .s = s, .seq = k + 1 };
		if (mbox_msg_get(s->mbox, s->uids[k], &e.m) <= 0)
			continue;
		if (eval(&e, key)) {
			hit_uids[nh] = s->uids[k];
			hits[nh++] = uid ? s->uids[k] : (uint32_t)(k + 1);
			if (e.m.modseq > maxmod)
				maxmod = e.m.modseq;
		}
		if (e.loaded) {
			if (e.parsed)
				imap_msg_free(&e.msg);
			buf_deinit(&e.content);
		}
		mbox_msg_clear(&e.m);
	}
	if (ret & RET_SAVE) {
		free(s->saved);
		s->saved = hit_uids;
		s->nsaved = nh;
		hit_uids = NULL;
	}
	free(hit_uids);
	struct buf b;
	buf_init(&b, 16 * nh + 256);
	if (esearch && ret == RET_SAVE) {
		/* SAVE alone: no ESEARCH response (RFC 5182 2.4) */
	} else if (esearch) {
		buf_printf(&b, "* ESEARCH (TAG \"%s\")%s", c->tag, uid ? " UID" : "");
		if (nh > 0 && (ret & RET_MIN))
			buf_printf(&b, " MIN %u", hits[0]);
		if (nh > 0 && (ret & RET_MAX))
			buf_printf(&b, " MAX %u", hits[nh - 1]);
		if (ret & RET_COUNT)
			buf_printf(&b, " COUNT %zu", nh);
		if (nh > 0 && (ret & RET_ALL)) {
			buf_append_str(&b, " ALL ");
			imap_uidset_append(&b, hits, nh);
		}
		if (p.modseq && nh > 0)
			buf_printf(&b, " MODSEQ %llu", (unsigned long long)maxmod);
	} else {
		buf_append_str(&b, "* SEARCH");
		for (size_t k = 0; k < nh; k++)
			buf_printf(&b, " %u", hits[k]);
		if (p.modseq && nh > 0)
			buf_printf(&b, " (MODSEQ %llu)", (unsigned long long)maxmod);
	}
	if (b.len > 0) {
		buf_append_str(&b, "\r\n");
		imap_send_raw(s, b.data, b.len);
	}
	buf_deinit(&b);
	free(hits);
	skey_free(key);
	imap_complete(s, c->tag, uid, "OK Search completed");
}
