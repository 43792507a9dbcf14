/* FETCH and UID FETCH: items, sections, partials, CONDSTORE/QRESYNC modifiers. Output is produced
 * message by message and suspended while the client has IMAP_OUT_HIGH bytes unread. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_internal.h"
#include "imap/imap_msg.h"
#include "lib-mailbox/maildir.h"
#include "lib/xalloc.h"

enum sec_kind { SEC_BODY, SEC_BINARY, SEC_BINARY_SIZE, SEC_RFC822, SEC_RFC822_HEADER, SEC_RFC822_TEXT };

struct fetch_sec {
	enum sec_kind kind;
	bool peek, partial;
	char *section;
	uint64_t off, len;
};

struct imap_fetch {
	char *tag;
	bool uid;
	bool f_uid, f_flags, f_idate, f_size, f_env, f_body, f_bs, f_modseq;
	struct fetch_sec *secs;
	size_t nsecs;
	uint64_t changedsince;
	uint32_t *uids;  /* targets */
	size_t *seqs;
	size_t n, pos;
	bool unknown_cte;
	struct buf out;             /* responses not yet handed to the bufferevent */
	struct mbox_msg_row *rows;  /* index rows of the messages being produced */
	/* computed ENVELOPE/BODYSTRUCTURE strings, stored in the index in one transaction */
	uint32_t *env_uids, *bs_uids;
	char **env_vals, **bs_vals;
	size_t nenv, nbs;
};

#define FETCH_BATCH 128          /* messages read from the index at once */
#define FETCH_FLUSH (32 * 1024)  /* response bytes collected before one evbuffer_add */

static void pending_free(char **vals, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(vals[i]);
}

void imap_fetch_free(struct imap_fetch **fp)
{
	struct imap_fetch *f = *fp;
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->nsecs; i++)
		free(f->secs[i].section);
	free(f->secs);
	free(f->uids);
	free(f->seqs);
	free(f->tag);
	buf_deinit(&f->out);
	free(f->rows);
	pending_free(f->env_vals, f->nenv);
	pending_free(f->bs_vals, f->nbs);
	free(f->env_uids);
	free(f->env_vals);
	free(f->bs_uids);
	free(f->bs_vals);
	free(f);
	*fp = NULL;
}

static int add_section(struct imap_fetch *f, const char *item)
{
	const char *br = strchr(item, '[');
	size_t plen = (size_t)(br - item);
	struct fetch_sec sec = { 0 };
	if (plen == 4 && strncasecmp(item, "BODY", 4) == 0)
		sec.kind = SEC_BODY;
	else if (plen == 9 && strncasecmp(item, "BODY.PEEK", 9) == 0)
		sec.kind = SEC_BODY, sec.peek = true;
	else if (plen == 6 && strncasecmp(item, "BINARY", 6) == 0)
		sec.kind = SEC_BINARY;
	else if (plen == 11 && strncasecmp(item, "BINARY.PEEK", 11) == 0)
		sec.kind = SEC_BINARY, sec.peek = true;
	else if (plen == 11 && strncasecmp(item, "BINARY.SIZE", 11) == 0)
		sec.kind = SEC_BINARY_SIZE, sec.peek = true;
	else
		return -1;
	const char *close = strrchr(item, ']');
	if (close == NULL || close < br)
		return -1;
	sec.section = xstrndup(br + 1, (size_t)(close - br - 1));
	for (char *p = sec.section; *p && *p != '('; p++)
		*p = (char)toupper((unsigned char)*p);
	const char *rest = close + 1;
	if (*rest == '<') {
		char *end;
		unsigned long long o = strtoull(rest + 1, &end, 10);
		if (end == rest + 1 || *end != '.')
			goto bad;
		const char *l = end + 1;
		unsigned long long n = strtoull(l, &end, 10);
		if (end == l || *end != '>' || end[1] != '\0' || n == 0 || sec.kind == SEC_BINARY_SIZE)
			goto bad;
		sec.partial = true;
		sec.off = o;
		sec.len = n;
	} else if (*rest != '\0') {
		goto bad;
	}
	f->secs = xreallocarray(f->secs, f->nsecs + 1, sizeof(*f->secs));
	f->secs[f->nsecs++] = sec;
	return 0;
bad:
	free(sec.section);
	return -1;
}

static int add_item(struct imap_fetch *f, const struct imap_arg *a)
{
	if (a->type != IMAP_ARG_ATOM)
		return -1;
	const char *s = a->str;
	if (strchr(s, '[') != NULL)
		return add_section(f, s);
	if (strcasecmp(s, "ALL") == 0)
		f->f_flags = f->f_idate = f->f_size = f->f_env = true;
	else if (strcasecmp(s, "FAST") == 0)
		f->f_flags = f->f_idate = f->f_size = true;
	else if (strcasecmp(s, "FULL") == 0)
		f->f_flags = f->f_idate = f->f_size = f->f_env = f->f_body = true;
	else if (strcasecmp(s, "UID") == 0)
		f->f_uid = true;
	else if (strcasecmp(s, "FLAGS") == 0)
		f->f_flags = true;
	else if (strcasecmp(s, "INTERNALDATE") == 0)
		f->f_idate = true;
	else if (strcasecmp(s, "RFC822.SIZE") == 0)
		f->f_size = true;
	else if (strcasecmp(s, "ENVELOPE") == 0)
		f->f_env = true;
	else if (strcasecmp(s, "BODY") == 0)
		f->f_body = true;
	else if (strcasecmp(s, "BODYSTRUCTURE") == 0)
		f->f_bs = true;
	else if (strcasecmp(s, "MODSEQ") == 0)
		f->f_modseq = true;
	else if (strcasecmp(s, "RFC822") == 0 || strcasecmp(s, "RFC822.HEADER") == 0 || strcasecmp(s, "RFC822.TEXT") == 0) {
		struct fetch_sec sec = { .section = xstrdup("") };
		sec.kind = strcasecmp(s, "RFC822") == 0 ? SEC_RFC822
		         : strcasecmp(s, "RFC822.HEADER") == 0 ? SEC_RFC822_HEADER : SEC_RFC822_TEXT;
		sec.peek = sec.kind == SEC_RFC822_HEADER;
		f->secs = xreallocarray(f->secs, f->nsecs + 1, sizeof(*f->secs));
		f->secs[f->nsecs++] = sec;
	} else
		return -1;
	return 0;
}

/* Big literals go straight to the output instead of through the response buffer (one copy). */
static struct imap_session *lit_session;

static void append_literal(struct buf *b, const char *data, size_t len, bool binary)
{
	bool nul = binary && memchr(data, '\0', len) != NULL;
	buf_printf(b, "%s{%zu}\r\n", nul ? "~" : "", len);
	if (len > 65536 && lit_session != NULL) {
		imap_send_raw(lit_session, b->data, b->len);
		buf_reset(b);
		imap_send_raw(lit_session, data, len);
		return;
	}
	buf_append(b, data, len);
}

static void pending_add(uint32_t **uids, char ***vals, size_t *n, uint32_t uid, char *val)
{
	if ((*n & (*n - 1)) == 0) { /* 0 or a power of two: grow */
		*uids = xreallocarray(*uids, *n ? *n * 2 : 16, sizeof(**uids));
		*vals = xreallocarray(*vals, *n ? *n * 2 : 16, sizeof(**vals));
	}
	(*uids)[*n] = uid;
	(*vals)[(*n)++] = val;
}

static void pending_store(struct imap_session *s, struct imap_fetch *f)
{
	mbox_cache_set_batch(s->mbox, "env", f->env_uids, f->env_vals, f->nenv);
	mbox_cache_set_batch(s->mbox, "bs", f->bs_uids, f->bs_vals, f->nbs);
	pending_free(f->env_vals, f->nenv);
	pending_free(f->bs_vals, f->nbs);
	f->nenv = f->nbs = 0;
}

static void out_flush(struct imap_session *s, struct imap_fetch *f)
{
	if (f->out.len > 0)
		imap_send_raw(s, f->out.data, f->out.len);
	buf_reset(&f->out);
}

/* Append one message's response to f->out; nothing when the message is gone. row: its index
 * row (taken over). */
static void fetch_one(struct imap_session *s, struct imap_fetch *f, uint32_t uid, size_t seq,
                      struct mbox_msg_row *row)
{
	if (!row->found)
		return;
	struct mbox_msg m = row->m;
	memset(&row->m, 0, sizeof(row->m));
	char *env = row->env, *bs = row->bs;
	row->env = row->bs = NULL;
	if (f->changedsince && m.modseq <= f->changedsince) {
		free(env);
		free(bs);
		mbox_msg_clear(&m);
		return;
	}
	bool set_seen = false;
	for (size_t i = 0; i < f->nsecs; i++)
		if (!f->secs[i].peek)
			set_seen = true;
	bool show_flags = f->f_flags;
	if (set_seen && !s->readonly && !(m.flags & MAIL_SEEN)) {
		uint64_t modseq;
		if (mbox_store(s->mbox, uid, m.flags | MAIL_SEEN, m.keywords, 0, &modseq) > 0) {
			if (modseq == s->seen_modseq + 1)
				s->seen_modseq = modseq;
			m.flags |= MAIL_SEEN;
			m.modseq = modseq;
			show_flags = true;
		}
	}
	bool need_content = f->nsecs > 0 || f->f_body || (f->f_env && env == NULL) || (f->f_bs && bs == NULL);
	/* a client listing headers must not make us read every attachment */
	bool header_only = !f->f_body && !(f->f_bs && bs == NULL);
	for (size_t i = 0; i < f->nsecs && header_only; i++)
		header_only = f->secs[i].kind == SEC_RFC822_HEADER ||
		              (f->secs[i].kind == SEC_BODY && strncmp(f->secs[i].section, "HEADER", 6) == 0);
	int (*read_fn)(struct mbox *, const struct mbox_msg *, struct buf *) =
		header_only ? mbox_msg_read_header : mbox_msg_read;
	struct buf content;
	struct imap_msg msg;
	bool have_msg = false;
	buf_init(&content, (size_t)m.size + 1);
	if (need_content) {
		if (read_fn(s->mbox, &m, &content) <= 0) {
			/* renamed by someone else meanwhile: resync once and retry */
			const char *err;
			mbox_sync(s->mbox, true, &err);
			mbox_msg_clear(&m);
			buf_reset(&content);
			if (mbox_msg_get(s->mbox, uid, &m) <= 0 || read_fn(s->mbox, &m, &content) <= 0) {
				buf_deinit(&content);
				free(env);
				free(bs);
				mbox_msg_clear(&m);
				return;
			}
		}
		imap_msg_parse(&msg, content.data, content.len);
		have_msg = true;
	}
	/* f->out holds earlier messages' responses: this one may add its own maximum */
	struct buf b = f->out;
	b.max = b.len + (size_t)m.size * 2 + 1024 * 1024;
	buf_printf(&b, "* %zu FETCH (", seq + 1);
	size_t start = b.len;
	bool any = false; /* an item was written (b may have been flushed) */
	lit_session = s;
#define SEP() do { if (any) buf_append_c(&b, ' '); any = true; } while (0)
	if (f->f_uid || f->uid) {
		SEP();
		buf_printf(&b, "UID %u", uid);
	}
	if (show_flags) {
		SEP();
		buf_append_str(&b, "FLAGS ");
		imap_append_flags(s, &b, &m);
	}
	if (f->f_modseq || f->changedsince || (s->condstore && show_flags && f->f_modseq)) {
		SEP();
		buf_printf(&b, "MODSEQ (%llu)", (unsigned long long)m.modseq);
	}
	if (f->f_idate) {
		SEP();
		buf_append_str(&b, "INTERNALDATE ");
		imap_format_date(&b, m.internaldate);
	}
	if (f->f_size) {
		SEP();
		buf_printf(&b, "RFC822.SIZE %llu", (unsigned long long)m.size);
	}
	if (f->f_env) {
		SEP();
		buf_append_str(&b, "ENVELOPE ");
		if (env == NULL) {
			struct buf e;
			buf_init(&e, 1024 * 1024);
			imap_msg_envelope(&msg.root, &e);
			buf_append(&b, e.data, e.len);
			pending_add(&f->env_uids, &f->env_vals, &f->nenv, uid, buf_steal(&e));
			buf_deinit(&e);
		} else {
			buf_append_str(&b, env);
		}
	}
	if (f->f_body) {
		SEP();
		buf_append_str(&b, "BODY ");
		imap_msg_bodystructure(&msg.root, &b, false);
	}
	if (f->f_bs) {
		SEP();
		buf_append_str(&b, "BODYSTRUCTURE ");
		if (bs == NULL) {
			struct buf e;
			buf_init(&e, 4 * 1024 * 1024);
			imap_msg_bodystructure(&msg.root, &e, true);
			buf_append(&b, e.data, e.len);
			pending_add(&f->bs_uids, &f->bs_vals, &f->nbs, uid, buf_steal(&e));
			buf_deinit(&e);
		} else {
			buf_append_str(&b, bs);
		}
	}
	for (size_t i = 0; i < f->nsecs; i++) {
		struct fetch_sec *sec = &f->secs[i];
		struct buf data;
		buf_init(&data, content.len + 16);
		int r;
		SEP();
		switch (sec->kind) {
		case SEC_RFC822:
			buf_append_str(&b, "RFC822 ");
			append_literal(&b, content.data, content.len, false);
			break;
		case SEC_RFC822_HEADER:
			buf_append_str(&b, "RFC822.HEADER ");
			append_literal(&b, msg.root.hdr, msg.root.hdr_len, false);
			break;
		case SEC_RFC822_TEXT:
			buf_append_str(&b, "RFC822.TEXT ");
			append_literal(&b, msg.root.body, msg.root.body_len, false);
			break;
		case SEC_BODY:
		case SEC_BINARY:
		case SEC_BINARY_SIZE:
			r = sec->kind == SEC_BODY ? imap_msg_section(&msg, sec->section, &data)
			                          : imap_msg_binary(&msg, sec->section, &data);
			if (r == 0 && sec->kind != SEC_BODY)
				f->unknown_cte = true;
			if (r <= 0)
				buf_reset(&data);
			if (sec->kind == SEC_BINARY_SIZE) {
				buf_printf(&b, "BINARY.SIZE[%s] %zu", sec->section, data.len);
				break;
			}
			buf_printf(&b, "%s[%s]", sec->kind == SEC_BODY ? "BODY" : "BINARY", sec->section);
			const char *p = data.data;
			size_t l = data.len;
			if (sec->partial) {
				buf_printf(&b, "<%llu>", (unsigned long long)sec->off);
				if (sec->off >= l) {
					p = "";
					l = 0;
				} else {
					p += sec->off;
					l -= (size_t)sec->off;
					if (l > sec->len)
						l = (size_t)sec->len;
				}
			}
			buf_append_c(&b, ' ');
			append_literal(&b, p, l, sec->kind == SEC_BINARY);
			break;
		}
		buf_deinit(&data);
	}
#undef SEP
	(void)start;
	lit_session = NULL;
	buf_append_str(&b, ")\r\n");
	b.max = f->out.max;
	f->out = b;
	if (have_msg)
		imap_msg_free(&msg);
	buf_deinit(&content);
	free(env);
	free(bs);
	mbox_msg_clear(&m);
}

bool imap_fetch_continue(struct imap_session *s)
{
	struct imap_fetch *f = s->fetch;
	bool suspend = false;
	if (f->rows == NULL)
		f->rows = xcalloc(FETCH_BATCH, sizeof(*f->rows));
	/* rows are read per batch and never kept across a suspension (other sessions of this
	 * process may change the index meanwhile) */
	while (f->pos < f->n && !suspend) {
		size_t cnt = f->n - f->pos < FETCH_BATCH ? f->n - f->pos : FETCH_BATCH;
		mbox_msg_get_batch(s->mbox, f->uids + f->pos, cnt, f->f_env, f->f_bs, f->rows);
		for (size_t k = 0; k < cnt && !suspend; k++) {
			uint32_t uid = f->uids[f->pos++];
			ssize_t seq = imap_view_find(s, uid);
			if (seq >= 0)
				fetch_one(s, f, uid, (size_t)seq, &f->rows[k]);
			if (f->out.len >= FETCH_FLUSH)
				out_flush(s, f);
			if (imap_out_pending(s) + f->out.len > IMAP_OUT_HIGH && f->pos < f->n)
				suspend = true;
		}
		mbox_msg_batch_clear(f->rows, cnt);
	}
	out_flush(s, f);
	pending_store(s, f);
	if (suspend)
		return false;
	if (f->unknown_cte)
		imap_complete(s, f->tag, f->uid, "NO [UNKNOWN-CTE] Cannot decode a part's content transfer encoding");
	else
		imap_complete(s, f->tag, f->uid, "OK Fetch completed");
	imap_fetch_free(&s->fetch);
	return true;
}

void cmd_fetch(struct imap_session *s, struct imap_command *c, bool uid)
{
	struct seqset set;
	if (c->count < 2 || c->args[0].type != IMAP_ARG_ATOM || seqset_parse(c->args[0].str, &set) < 0) {
		imap_send(s, "%s BAD Usage: FETCH set items\r\n", c->tag);
		return;
	}
	if (!uid && !imap_seqset_in_range(s, &set)) {
		seqset_free(&set);
		imap_send(s, "%s BAD Invalid message sequence number\r\n", c->tag);
		return;
	}
	struct imap_fetch *f = xcalloc(1, sizeof(*f));
	f->uid = uid;
	buf_init(&f->out, 1024 * 1024);
	int bad = 0;
	const struct imap_arg *items = &c->args[1];
	if (items->type == IMAP_ARG_LIST) {
		for (size_t i = 0; i < items->count && !bad; i++)
			bad = add_item(f, &items->list[i]) < 0;
		if (items->count == 0)
			bad = 1;
	} else {
		bad = add_item(f, items) < 0;
	}
	bool vanished = false;
	if (!bad && c->count == 3) {
		const struct imap_arg *mods = &c->args[2];
		if (mods->type != IMAP_ARG_LIST)
			bad = 1;
		for (size_t i = 0; !bad && i < mods->count; i++) {
			if (imap_arg_atom_eq(&mods->list[i], "CHANGEDSINCE") && i + 1 < mods->count &&
			    mods->list[i + 1].type == IMAP_ARG_ATOM) {
				f->changedsince = strtoull(mods->list[++i].str, NULL, 10);
				s->condstore = true;
			} else if (imap_arg_atom_eq(&mods->list[i], "VANISHED") && uid && s->qresync) {
				vanished = true;
			} else {
				bad = 1;
			}
		}
		if (vanished && f->changedsince == 0)
			bad = 1;
	} else if (c->count > 3) {
		bad = 1;
	}
	if (bad) {
		seqset_free(&set);
		imap_fetch_free(&f);
		imap_send(s, "%s BAD Invalid FETCH items\r\n", c->tag);
		return;
	}
	if (f->f_modseq)
		s->condstore = true;
	if (vanished) {
		uint32_t *ex;
		size_t nex;
		if (mbox_expunged_since(s->mbox, f->changedsince, &ex, &nex) == 0) {
			size_t w = 0;
			for (size_t i = 0; i < nex; i++)
				if (seqset_has(&set, ex[i], UINT32_MAX - 1))
					ex[w++] = ex[i];
			if (w > 0) {
				struct buf b;
				buf_init(&b, 16 * w + 64);
				buf_append_str(&b, "* VANISHED (EARLIER) ");
				imap_uidset_append(&b, ex, w);
				buf_append_str(&b, "\r\n");
				imap_send_raw(s, b.data, b.len);
				buf_deinit(&b);
			}
			free(ex);
		}
	}
	size_t *idx;
	f->n = imap_select_msgs(s, &set, uid, &idx);
	seqset_free(&set);
	f->uids = xmalloc((f->n ? f->n : 1) * sizeof(*f->uids));
	for (size_t i = 0; i < f->n; i++)
		f->uids[i] = s->uids[idx[i]];
	free(idx);
	f->tag = xstrdup(c->tag);
	s->fetch = f;
	if (!imap_fetch_continue(s)) {
		s->busy = true;
		imap_resume(s); /* re-checks the output (and polls below a STARTTLS filter) */
	}
}
