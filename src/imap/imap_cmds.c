/* Mailbox-level IMAP commands: SELECT EXAMINE CREATE DELETE RENAME (UN)SUBSCRIBE LIST LSUB STATUS
 * APPEND CLOSE UNSELECT EXPUNGE STORE COPY MOVE NAMESPACE CHECK. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "imap/imap_internal.h"
#include "lib-imap/imap_utf7.h"
#include "lib-mailbox/maildir.h"
#include "lib/log.h"
#include "lib/workpool.h"
#include "lib/xalloc.h"

/*
 * A mailbox name argument. Clients that enabled IMAP4rev2 or UTF8=ACCEPT send UTF-8; names are kept in
 * modified UTF-7 (on disk and towards IMAP4rev1 clients), so convert in place.
 */
static const char *name_arg(struct imap_session *s, struct imap_arg *a)
{
	const char *v = imap_arg_astring(a);
	if (v == NULL || !(s->rev2 || s->utf8))
		return v;
	struct buf b;
	buf_init(&b, 4 * a->len + 16);
	if (imap_utf8_to_mutf7(v, &b) < 0) {
		buf_deinit(&b);
		return NULL;
	}
	free(a->str);
	a->len = b.len;
	a->str = buf_steal(&b);
	buf_deinit(&b);
	return a->str;
}

#define arg_name(c, i) ((i) < (c)->count ? name_arg(s, &(c)->args[i]) : NULL)

/* A mailbox name in a response, in the client's form. */
static void append_name(struct imap_session *s, struct buf *out, const char *name)
{
	if (s->rev2 || s->utf8) {
		struct buf u;
		buf_init(&u, 4 * strlen(name) + 16);
		if (imap_mutf7_to_utf8(name, &u) == 0) {
			imap_append_astring(out, u.data);
			buf_deinit(&u);
			return;
		}
		buf_deinit(&u);
	}
	imap_append_astring(out, name);
}

/* Open a mailbox by IMAP name; NULL with a response text in *err_r. */
static struct mbox *open_box(struct imap_session *s, const char *name, char **canon_r, const char **err_r)
{
	char *canon, *path;
	if (maildir_name_map(s->root, name, &canon, &path, err_r) < 0) {
		*err_r = "[CANNOT] Invalid mailbox name";
		return NULL;
	}
	struct mbox *mb = mbox_open(path, err_r);
	free(path);
	if (mb == NULL) {
		free(canon);
		return NULL;
	}
	if (canon_r != NULL)
		*canon_r = canon;
	else
		free(canon);
	return mb;
}

static void send_qresync_changes(struct imap_session *s, uint64_t modseq, const char *known)
{
	uint32_t *uids;
	size_t n;
	struct seqset ks = { 0 };
	bool have_known = known != NULL && seqset_parse(known, &ks) == 0;
	if (mbox_expunged_since(s->mbox, modseq, &uids, &n) == 0) {
		size_t w = 0;
		for (size_t i = 0; i < n; i++)
			if (!have_known || seqset_has(&ks, uids[i], UINT32_MAX - 1))
				uids[w++] = uids[i];
		if (w > 0) {
			struct buf b;
			buf_init(&b, 16 * w + 64);
			buf_append_str(&b, "* VANISHED (EARLIER) ");
			imap_uidset_append(&b, uids, w);
			buf_append_str(&b, "\r\n");
			imap_send_raw(s, b.data, b.len);
			buf_deinit(&b);
		}
		free(uids);
	}
	seqset_free(&ks);
	for (size_t i = 0; i < s->count; i++) {
		struct mbox_msg m;
		if (mbox_msg_get(s->mbox, s->uids[i], &m) <= 0)
			continue;
		if (m.modseq > modseq) {
			struct buf b;
			buf_init(&b, 8192);
			buf_printf(&b, "* %zu FETCH (UID %u FLAGS ", i + 1, m.uid);
			imap_append_flags(s, &b, &m);
			buf_printf(&b, " MODSEQ (%llu))\r\n", (unsigned long long)m.modseq);
			imap_send_raw(s, b.data, b.len);
			buf_deinit(&b);
		}
		mbox_msg_clear(&m);
	}
}

void cmd_select(struct imap_session *s, struct imap_command *c, bool uid)
{
	bool examine = strcmp(c->name, "EXAMINE") == 0;
	const char *name = arg_name(c, 0);
	if (name == NULL || c->count > 2 || (c->count == 2 && c->args[1].type != IMAP_ARG_LIST)) {
		imap_send(s, "%s BAD Usage: %s mailbox [(params)]\r\n", c->tag, c->name);
		return;
	}
	uint64_t qr_modseq = 0;
	uint32_t qr_validity = 0;
	const char *qr_known = NULL;
	bool condstore = false;
	if (c->count == 2) {
		const struct imap_arg *p = &c->args[1];
		for (size_t i = 0; i < p->count; i++) {
			if (imap_arg_atom_eq(&p->list[i], "CONDSTORE")) {
				condstore = true;
			} else if (imap_arg_atom_eq(&p->list[i], "QRESYNC") && i + 1 < p->count &&
			           p->list[i + 1].type == IMAP_ARG_LIST && s->qresync) {
				const struct imap_arg *q = &p->list[++i];
				if (q->count < 2 || q->list[0].type != IMAP_ARG_ATOM || q->list[1].type != IMAP_ARG_ATOM) {
					imap_send(s, "%s BAD Invalid QRESYNC parameters\r\n", c->tag);
					return;
				}
				qr_validity = (uint32_t)strtoul(q->list[0].str, NULL, 10);
				qr_modseq = strtoull(q->list[1].str, NULL, 10);
				if (q->count >= 3 && q->list[2].type == IMAP_ARG_ATOM)
					qr_known = q->list[2].str;
			} else {
				imap_send(s, "%s BAD Unknown SELECT parameter\r\n", c->tag);
				return;
			}
		}
	}
	if (s->state == IMAP_STATE_SELECTED) {
		imap_unselect(s);
		if (s->qresync)
			imap_send(s, "* OK [CLOSED] Previous mailbox closed\r\n");
	}
	const char *err;
	char *canon;
	struct mbox *mb = open_box(s, name, &canon, &err);
	if (mb == NULL) {
		imap_send(s, "%s NO %s\r\n", c->tag, err);
		return;
	}
	if (condstore)
		s->condstore = true;
	s->mbox = mb;
	s->mbox_name = canon;
	s->readonly = examine;
	s->state = IMAP_STATE_SELECTED;
	s->recent_from = examine ? UINT32_MAX : mbox_take_recent(mb);
	if (mbox_uids(mb, &s->uids, &s->count) < 0) {
		imap_unselect(s);
		imap_send(s, "%s NO [SERVERBUG] Cannot read mailbox\r\n", c->tag);
		return;
	}
	s->cap = s->count;
	struct mbox_status st;
	mbox_get_status(mb, &st);
	s->seen_modseq = st.highestmodseq;
	char *kw = mbox_all_keywords(mb);
	const char *sp = kw[0] ? " " : "";
	imap_send(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded%s%s)\r\n", sp, kw);
	if (examine)
		imap_send(s, "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
	else
		imap_send(s, "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded%s%s \\*)] Flags permitted\r\n",
		          sp, kw);
	free(kw);
	imap_send(s, "* %zu EXISTS\r\n", s->count);
	if (!s->rev2) {
		size_t recent = 0;
		for (size_t i = 0; i < s->count; i++)
			if (s->uids[i] >= s->recent_from)
				recent++;
		imap_send(s, "* %zu RECENT\r\n", recent);
		uint32_t fu = mbox_first_unseen(mb);
		ssize_t seq = fu ? imap_view_find(s, fu) : -1;
		if (seq >= 0)
			imap_send(s, "* OK [UNSEEN %zd] First unseen\r\n", seq + 1);
	}
	imap_send(s, "* OK [UIDVALIDITY %u] UIDs valid\r\n", st.uidvalidity);
	imap_send(s, "* OK [UIDNEXT %u] Predicted next UID\r\n", st.uidnext);
	imap_send(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n", (unsigned long long)st.highestmodseq);
	if (s->rev2) {
		struct buf b;
		buf_init(&b, 1024);
		buf_append_str(&b, "* LIST () \".\" ");
		append_name(s, &b, canon);
		imap_send(s, "%s\r\n", b.data);
		buf_deinit(&b);
	}
	if (qr_validity != 0 && qr_validity == st.uidvalidity)
		send_qresync_changes(s, qr_modseq, qr_known);
	imap_send(s, "%s OK [%s] %s completed\r\n", c->tag, examine ? "READ-ONLY" : "READ-WRITE", c->name);
}

void cmd_create(struct imap_session *s, struct imap_command *c, bool uid)
{
	const char *name = arg_name(c, 0);
	if (name == NULL || c->count < 1) {
		imap_send(s, "%s BAD Usage: CREATE mailbox\r\n", c->tag);
		return;
	}
	char *n = xstrdup(name);
	size_t l = strlen(n);
	if (l > 1 && n[l - 1] == MAILDIR_DELIM)
		n[l - 1] = '\0';
	const char *err = NULL;
	char *canon, *path;
	if (maildir_name_map(s->root, n, &canon, &path, &err) < 0) {
		imap_send(s, "%s NO [CANNOT] %s\r\n", c->tag, err);
		free(n);
		return;
	}
	/* create missing parents so the hierarchy lists */
	for (char *d = strchr(canon, MAILDIR_DELIM); d != NULL; d = strchr(d + 1, MAILDIR_DELIM)) {
		*d = '\0';
		const char *e2;
		if (strcmp(canon, "INBOX") != 0)
			maildir_create(s->root, canon, &e2);
		*d = MAILDIR_DELIM;
	}
	if (maildir_create(s->root, canon, &err) < 0)
		imap_complete(s, c->tag, true, "NO %s", err);
	else
		imap_complete(s, c->tag, true, "OK Create completed");
	free(canon);
	free(path);
	free(n);
}

void cmd_delete(struct imap_session *s, struct imap_command *c, bool uid)
{
	const char *name = arg_name(c, 0);
	if (name == NULL || c->count != 1) {
		imap_send(s, "%s BAD Usage: DELETE mailbox\r\n", c->tag);
		return;
	}
	char *canon, *path;
	const char *err;
	if (maildir_name_map(s->root, name, &canon, &path, &err) < 0) {
		imap_send(s, "%s NO [CANNOT] %s\r\n", c->tag, err);
		return;
	}
	if (s->mbox_name != NULL && strcmp(s->mbox_name, canon) == 0 && strcmp(canon, "INBOX") != 0)
		imap_unselect(s);
	if (maildir_delete(s->root, canon, &err) < 0)
		imap_complete(s, c->tag, true, "NO %s", err);
	else
		imap_complete(s, c->tag, true, "OK Delete completed");
	free(canon);
	free(path);
}

void cmd_rename(struct imap_session *s, struct imap_command *c, bool uid)
{
	const char *from = arg_name(c, 0), *to = arg_name(c, 1);
	if (from == NULL || to == NULL || c->count != 2) {
		imap_send(s, "%s BAD Usage: RENAME from to\r\n", c->tag);
		return;
	}
	const char *err;
	if (maildir_rename(s->root, from, to, &err) < 0)
		imap_complete(s, c->tag, true, "NO %s", err);
	else
		imap_complete(s, c->tag, true, "OK Rename completed");
}

static void subscribe(struct imap_session *s, struct imap_command *c, bool on)
{
	const char *name = arg_name(c, 0);
	if (name == NULL || c->count != 1) {
		imap_send(s, "%s BAD Usage: %s mailbox\r\n", c->tag, c->name);
		return;
	}
	char *canon, *path;
	const char *err;
	if (maildir_name_map(s->root, name, &canon, &path, &err) < 0) {
		imap_send(s, "%s NO [CANNOT] %s\r\n", c->tag, err);
		return;
	}
	if (maildir_subscribe(s->root, canon, on) < 0)
		imap_complete(s, c->tag, true, "NO [SERVERBUG] Cannot update subscriptions");
	else
		imap_complete(s, c->tag, true, "OK %s completed", c->name);
	free(canon);
	free(path);
}

void cmd_subscribe(struct imap_session *s, struct imap_command *c, bool uid)
{
	subscribe(s, c, true);
}

void cmd_unsubscribe(struct imap_session *s, struct imap_command *c, bool uid)
{
	subscribe(s, c, false);
}

enum status_item { ST_MESSAGES = 1, ST_RECENT = 2, ST_UIDNEXT = 4, ST_UIDVALIDITY = 8, ST_UNSEEN = 16,
	           ST_SIZE = 32, ST_HIGHESTMODSEQ = 64, ST_DELETED = 128 };

static int parse_status_items(const struct imap_arg *list, unsigned *items_r)
{
	static const struct {
		const char *name;
		unsigned v;
	} names[] = { { "MESSAGES", ST_MESSAGES }, { "RECENT", ST_RECENT }, { "UIDNEXT", ST_UIDNEXT },
		      { "UIDVALIDITY", ST_UIDVALIDITY }, { "UNSEEN", ST_UNSEEN }, { "SIZE", ST_SIZE },
		      { "HIGHESTMODSEQ", ST_HIGHESTMODSEQ }, { "DELETED", ST_DELETED } };
	if (list->type != IMAP_ARG_LIST || list->count == 0)
		return -1;
	unsigned items = 0;
	for (size_t i = 0; i < list->count; i++) {
		size_t k;
		for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (imap_arg_atom_eq(&list->list[i], names[k].name))
				break;
		if (k == sizeof(names) / sizeof(names[0]))
			return -1;
		items |= names[k].v;
	}
	*items_r = items;
	return 0;
}

/* "* STATUS name (...)"; -1 with err when the mailbox cannot be opened */
static int send_status(struct imap_session *s, const char *name, unsigned items, const char **err_r)
{
	struct mbox *own = NULL;
	struct mbox *mb;
	char *canon = NULL;
	if (s->mbox_name != NULL && maildir_name_map(s->root, name, &canon, NULL, err_r) > 0 &&
	    strcmp(canon, s->mbox_name) == 0) {
		mb = s->mbox;
	} else {
		free(canon);
		canon = NULL;
		mb = own = open_box(s, name, &canon, err_r);
		if (mb == NULL)
			return -1;
	}
	struct mbox_status st;
	mbox_get_status(mb, &st);
	struct buf b;
	buf_init(&b, 2048);
	buf_append_str(&b, "* STATUS ");
	append_name(s, &b, canon);
	buf_append_str(&b, " (");
	size_t start = b.len;
#define ITEM(flag, fmt, val)                                                   \
	if (items & (flag))                                                        \
		buf_printf(&b, "%s" fmt, b.len > start ? " " : "", val)
	ITEM(ST_MESSAGES, "MESSAGES %u", st.messages);
	ITEM(ST_RECENT, "RECENT %u", st.recent);
	ITEM(ST_UIDNEXT, "UIDNEXT %u", st.uidnext);
	ITEM(ST_UIDVALIDITY, "UIDVALIDITY %u", st.uidvalidity);
	ITEM(ST_UNSEEN, "UNSEEN %u", st.unseen);
	ITEM(ST_SIZE, "SIZE %llu", (unsigned long long)st.size);
	ITEM(ST_HIGHESTMODSEQ, "HIGHESTMODSEQ %llu", (unsigned long long)st.highestmodseq);
	ITEM(ST_DELETED, "DELETED %u", st.deleted);
#undef ITEM
	buf_append_str(&b, ")\r\n");
	imap_send_raw(s, b.data, b.len);
	buf_deinit(&b);
	free(canon);
	mbox_close(&own);
	return 0;
}

void cmd_status(struct imap_session *s, struct imap_command *c, bool uid)
{
	const char *name = arg_name(c, 0);
	unsigned items;
	if (name == NULL || c->count != 2 || parse_status_items(&c->args[1], &items) < 0) {
		imap_send(s, "%s BAD Usage: STATUS mailbox (items)\r\n", c->tag);
		return;
	}
	const char *err;
	if (send_status(s, name, items, &err) < 0)
		imap_complete(s, c->tag, true, "NO %s", err);
	else
		imap_complete(s, c->tag, true, "OK Status completed");
}

struct list_opts {
	bool subscribed_only, special_only, ret_subscribed, ret_children, ret_special, ret_status;
	unsigned status_items;
	bool lsub;
};

static bool name_in(char **names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

static void do_list(struct imap_session *s, const char *tag, const char *ref, char **patterns, size_t npat,
                    const struct list_opts *o)
{
	if (npat == 1 && patterns[0][0] == '\0' && !o->lsub) {
		imap_send(s, "* LIST (\\Noselect) \".\" \"\"\r\n");
		imap_complete(s, tag, true, "OK List completed");
		return;
	}
	char **names, **subs;
	size_t count, nsubs;
	if (maildir_list(s->root, &names, &count) < 0) {
		imap_complete(s, tag, true, "NO [SERVERBUG] Cannot list mailboxes");
		return;
	}
	maildir_subscriptions(s->root, &subs, &nsubs);
	/* folders made by other programs (".A.B" without ".A") imply a \Noselect parent */
	size_t real = count;
	for (size_t i = 1; i < real; i++) {
		for (char *d = strchr(names[i], MAILDIR_DELIM); d != NULL; d = strchr(d + 1, MAILDIR_DELIM)) {
			char *parent = xstrndup(names[i], (size_t)(d - names[i]));
			if (strcmp(parent, "INBOX") == 0 || name_in(names, count, parent)) {
				free(parent);
				continue;
			}
			names = xreallocarray(names, count + 1, sizeof(*names));
			names[count++] = parent;
		}
	}
	for (size_t i = 0; i < count; i++) {
		bool noselect = i >= real;
		bool match = false;
		for (size_t p = 0; p < npat && !match; p++) {
			char *full = xasprintf("%s%s", ref, patterns[p]);
			match = maildir_pattern_match(full, names[i]);
			free(full);
		}
		if (!match)
			continue;
		bool subscribed = name_in(subs, nsubs, names[i]);
		if ((o->subscribed_only || o->lsub) && !subscribed)
			continue;
		enum mailbox_special sp = maildir_special(names[i]);
		if (o->special_only && sp == MAILBOX_SPECIAL_NONE)
			continue;
		size_t nl = strlen(names[i]);
		bool children = false;
		for (size_t k = 0; k < count && !children; k++)
			children = strncmp(names[k], names[i], nl) == 0 && names[k][nl] == MAILDIR_DELIM;
		struct buf b;
		buf_init(&b, 2048);
		buf_printf(&b, "* %s (", o->lsub ? "LSUB" : "LIST");
		size_t start = b.len;
		if (noselect && !o->lsub)
			buf_append_str(&b, "\\Noselect ");
		if (!o->lsub)
			buf_append_str(&b, children ? "\\HasChildren" : "\\HasNoChildren");
		if (sp != MAILBOX_SPECIAL_NONE && !o->lsub)
			buf_printf(&b, "%s%s", b.len > start ? " " : "", maildir_special_attr(sp));
		if (subscribed && (o->ret_subscribed || o->subscribed_only))
			buf_printf(&b, "%s\\Subscribed", b.len > start ? " " : "");
		buf_append_str(&b, ") \".\" ");
		append_name(s, &b, names[i]);
		buf_append_str(&b, "\r\n");
		imap_send_raw(s, b.data, b.len);
		buf_deinit(&b);
		if (o->ret_status && !noselect) {
			const char *err;
			send_status(s, names[i], o->status_items, &err);
		}
	}
	maildir_names_free(names, count);
	maildir_names_free(subs, nsubs);
	imap_complete(s, tag, true, "OK %s completed", o->lsub ? "Lsub" : "List");
}

static bool too_many_wildcards(const char *p)
{
	int n = 0;
	for (; *p; p++)
		if (*p == '*' || *p == '%')
			n++;
	return n > 8;
}

void cmd_list(struct imap_session *s, struct imap_command *c, bool uid)
{
	struct list_opts o = { 0 };
	size_t i = 0;
	if (c->count > 0 && c->args[0].type == IMAP_ARG_LIST) {
		const struct imap_arg *sel = &c->args[0];
		for (size_t k = 0; k < sel->count; k++) {
			if (imap_arg_atom_eq(&sel->list[k], "SUBSCRIBED"))
				o.subscribed_only = o.ret_subscribed = true;
			else if (imap_arg_atom_eq(&sel->list[k], "SPECIAL-USE"))
				o.special_only = true;
			else if (!imap_arg_atom_eq(&sel->list[k], "REMOTE") && !imap_arg_atom_eq(&sel->list[k], "RECURSIVEMATCH")) {
				imap_send(s, "%s BAD Unknown LIST selection option\r\n", c->tag);
				return;
			}
		}
		i++;
	}
	const char *ref = arg_name(c, i);
	if (ref == NULL || i + 1 >= c->count) {
		imap_send(s, "%s BAD Usage: LIST reference pattern\r\n", c->tag);
		return;
	}
	struct imap_arg *pat = &c->args[i + 1];
	char **patterns;
	size_t npat = 0;
	if (pat->type == IMAP_ARG_LIST) {
		patterns = xcalloc(pat->count + 1, sizeof(*patterns));
		for (size_t k = 0; k < pat->count; k++) {
			const char *p = name_arg(s, &pat->list[k]);
			if (p == NULL) {
				free(patterns);
				imap_send(s, "%s BAD Invalid pattern\r\n", c->tag);
				return;
			}
			patterns[npat++] = (char *)p;
		}
	} else {
		const char *p = name_arg(s, pat);
		if (p == NULL) {
			imap_send(s, "%s BAD Invalid pattern\r\n", c->tag);
			return;
		}
		patterns = xcalloc(1, sizeof(*patterns));
		patterns[npat++] = (char *)p;
	}
	i += 2;
	if (i < c->count) {
		if (!imap_arg_atom_eq(&c->args[i], "RETURN") || i + 1 >= c->count || c->args[i + 1].type != IMAP_ARG_LIST) {
			free(patterns);
			imap_send(s, "%s BAD Invalid LIST arguments\r\n", c->tag);
			return;
		}
		const struct imap_arg *r = &c->args[i + 1];
		for (size_t k = 0; k < r->count; k++) {
			if (imap_arg_atom_eq(&r->list[k], "SUBSCRIBED"))
				o.ret_subscribed = true;
			else if (imap_arg_atom_eq(&r->list[k], "CHILDREN"))
				o.ret_children = true;
			else if (imap_arg_atom_eq(&r->list[k], "SPECIAL-USE"))
				o.ret_special = true;
			else if (imap_arg_atom_eq(&r->list[k], "STATUS") && k + 1 < r->count &&
			         parse_status_items(&r->list[k + 1], &o.status_items) == 0) {
				o.ret_status = true;
				k++;
			} else {
				free(patterns);
				imap_send(s, "%s BAD Unknown LIST return option\r\n", c->tag);
				return;
			}
		}
	}
	for (size_t k = 0; k < npat; k++)
		if (too_many_wildcards(patterns[k]) || strlen(ref) + strlen(patterns[k]) > 1024) {
			free(patterns);
			imap_send(s, "%s BAD Pattern too complex\r\n", c->tag);
			return;
		}
	do_list(s, c->tag, ref, patterns, npat, &o);
	free(patterns);
}

void cmd_lsub(struct imap_session *s, struct imap_command *c, bool uid)
{
	const char *ref = arg_name(c, 0), *pat = arg_name(c, 1);
	if (ref == NULL || pat == NULL || c->count != 2 || too_many_wildcards(pat)) {
		imap_send(s, "%s BAD Usage: LSUB reference pattern\r\n", c->tag);
		return;
	}
	struct list_opts o = { .lsub = true };
	char *p = (char *)pat;
	do_list(s, c->tag, ref, &p, 1, &o);
}

void cmd_namespace(struct imap_session *s, struct imap_command *c, bool uid)
{
	imap_send(s, "* NAMESPACE ((\"\" \".\")) NIL NIL\r\n");
	imap_complete(s, c->tag, true, "OK Namespace completed");
}

void cmd_check(struct imap_session *s, struct imap_command *c, bool uid)
{
	imap_complete(s, c->tag, true, "OK Check completed");
}

/* ---- APPEND with its fsync on the work pool ---- */

struct append_job {
	struct imap_session *s; /* NULL once the session is gone */
	char *tag, *canon, *kw, *path;
	struct mbox *mb;        /* our own reference */
	unsigned flags;
	time_t date;
	bool reject_nul;
	size_t len;
	/* worker results */
	int result;
	uint64_t size;
	const char *error;
};

static void append_work(void *arg)
{
	struct append_job *j = arg;
	j->result = mbox_spool_prepare(j->path, j->reject_nul, &j->size, &j->error);
}

static void append_job_free(struct append_job *j)
{
	if (j->path != NULL)
		unlink(j->path);
	mbox_close(&j->mb);
	free(j->tag);
	free(j->canon);
	free(j->kw);
	free(j->path);
	free(j);
}

static void append_done(void *arg)
{
	struct append_job *j = arg;
	struct imap_session *s = j->s;
	if (s != NULL) {
		s->append_job = NULL;
		s->busy = false;
		uint32_t newuid = 0;
		const char *err = j->error;
		int r = j->result;
		if (r == 0) {
			r = mbox_append_prepared(j->mb, j->path, j->flags, j->kw, j->date, j->size, &newuid, &err);
			if (r > 0)
				xfree(&j->path); /* consumed */
		}
		if (r < 0)
			imap_complete(s, j->tag, true, "NO %s", err);
		else
			imap_complete(s, j->tag, true, "OK [APPENDUID %u %u] Append completed", mbox_uidvalidity(j->mb), newuid);
		log_info("event=imap_append sid=%s user=%s mailbox=%s size=%zu", s->sid, s->user, j->canon, j->len);
		imap_resume(s);
	}
	append_job_free(j);
}

void imap_append_detach(struct imap_session *s)
{
	if (s->append_job != NULL)
		s->append_job->s = NULL;
	s->append_job = NULL;
}

/* An in-memory APPEND literal as a spool file (written, not yet synced); NULL on error. */
static char *spool_from_memory(struct imap_session *s, const char *data, size_t len)
{
	char *u = mbox_unique_name();
	char *path = xasprintf("%s/tmp/%s.append", s->root, u);
	free(u);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	bool ok = fd >= 0;
	while (ok && len > 0) {
		ssize_t w = write(fd, data, len);
		if (w < 0 && errno == EINTR)
			continue;
		ok = w > 0;
		if (ok) {
			data += w;
			len -= (size_t)w;
		}
	}
	if (fd >= 0)
		close(fd);
	if (!ok) {
		unlink(path);
		xfree(&path);
	}
	return path;
}

void cmd_append(struct imap_session *s, struct imap_command *c, bool uid)
{
	const char *name = arg_name(c, 0);
	if (name == NULL || c->count < 2) {
		imap_send(s, "%s BAD Usage: APPEND mailbox [flags] [date] literal\r\n", c->tag);
		return;
	}
	size_t i = 1;
	unsigned flags = 0;
	char *kw = NULL;
	time_t date = 0;
	if (i < c->count && c->args[i].type == IMAP_ARG_LIST) {
		if (imap_parse_flags(c->args[i].list, c->args[i].count, &flags, &kw) < 0) {
			imap_send(s, "%s BAD Invalid flags\r\n", c->tag);
			return;
		}
		i++;
	}
	if (i < c->count && c->args[i].type == IMAP_ARG_QUOTED) {
		date = imap_parse_datetime(c->args[i].str, false);
		if (date == (time_t)-1) {
			free(kw);
			imap_send(s, "%s BAD Invalid date-time\r\n", c->tag);
			return;
		}
		i++;
	}
	const struct imap_arg *msg = i < c->count ? &c->args[i] : NULL;
	if (msg != NULL && imap_arg_atom_eq(msg, "UTF8") && i + 1 < c->count && c->args[i + 1].type == IMAP_ARG_LIST &&
	    c->args[i + 1].count == 1) {
		msg = &c->args[i + 1].list[0];
		i++;
	}
	if (msg == NULL || msg->type != IMAP_ARG_LITERAL || i + 1 != c->count) {
		free(kw);
		imap_send(s, "%s BAD Message literal expected\r\n", c->tag);
		return;
	}
	if (msg->len == 0) {
		free(kw);
		imap_send(s, "%s NO Empty message\r\n", c->tag);
		return;
	}
	if (!msg->spooled && !msg->literal8 && memchr(msg->str, '\0', msg->len) != NULL) {
		free(kw);
		imap_send(s, "%s NO Message contains NUL; use a literal8\r\n", c->tag);
		return;
	}
	const char *err;
	char *canon = NULL;
	struct mbox *own = NULL, *mb;
	if (s->mbox_name != NULL && maildir_name_map(s->root, name, &canon, NULL, &err) > 0 &&
	    strcmp(canon, s->mbox_name) == 0) {
		mb = s->mbox;
	} else {
		free(canon);
		canon = NULL;
		mb = own = open_box(s, name, &canon, &err);
	}
	if (mb == NULL) {
		free(kw);
		imap_complete(s, c->tag, true, "NO [TRYCREATE] %s", err);
		return;
	}
	if (s->set->pool != NULL) {
		char *path = NULL;
		if (msg->spooled && s->spool_fd >= 0 && !s->spool_failed && s->spool_written == msg->len) {
			close(s->spool_fd);
			s->spool_fd = -1;
			path = s->spool_path;
			s->spool_path = NULL;
		} else if (!msg->spooled) {
			path = spool_from_memory(s, msg->str, msg->len);
		}
		if (path != NULL) {
			struct append_job *j = xcalloc(1, sizeof(*j));
			j->s = s;
			j->tag = xstrdup(c->tag);
			j->canon = canon;
			j->kw = kw ? kw : xstrdup("");
			j->path = path;
			if (own != NULL) {
				j->mb = own; /* the job keeps the handle */
			} else {
				mbox_ref(mb);
				j->mb = mb;
			}
			j->flags = flags;
			j->date = date;
			j->reject_nul = msg->spooled && !msg->literal8;
			j->len = msg->len;
			s->append_job = j;
			s->busy = true;
			workpool_submit(s->set->pool, append_work, append_done, j);
			return;
		}
	}
	uint32_t newuid;
	int ar;
	if (msg->spooled) {
		/* the message went to a file while it arrived (imap_session.c spool_*) */
		if (s->spool_fd < 0 || s->spool_failed || s->spool_written != msg->len) {
			ar = -1;
			err = "[SERVERBUG] Cannot store the message";
		} else {
			close(s->spool_fd);
			s->spool_fd = -1;
			ar = mbox_append_file(mb, s->spool_path, flags, kw ? kw : "", date, !msg->literal8, &newuid, &err);
			if (ar > 0)
				xfree(&s->spool_path);
		}
	} else {
		ar = mbox_append(mb, msg->str, msg->len, flags, kw ? kw : "", date, &newuid, &err);
	}
	if (ar < 0)
		imap_complete(s, c->tag, true, "NO %s", err);
	else
		imap_complete(s, c->tag, true, "OK [APPENDUID %u %u] Append completed", mbox_uidvalidity(mb), newuid);
	log_info("event=imap_append sid=%s user=%s mailbox=%s size=%zu", s->sid, s->user, canon, msg->len);
	free(canon);
	free(kw);
	mbox_close(&own);
}

static void expunge_deleted(struct imap_session *s, const struct seqset *only, bool silent)
{
	/* walk backwards so sequence numbers of the rest stay valid while we report */
	uint32_t *targets = xmalloc((s->count ? s->count : 1) * sizeof(*targets));
	size_t n = 0;
	uint32_t star = s->count ? s->uids[s->count - 1] : 0;
	struct seqset bound = { 0 };
	if (only != NULL) {
		bound = *only;
		imap_seqset_bind(s, &bound);
		only = &bound;
	}
	for (size_t i = 0; i < s->count; i++) {
		if (only != NULL && !seqset_has(only, s->uids[i], star))
			continue;
		struct mbox_msg m;
		if (mbox_msg_get(s->mbox, s->uids[i], &m) > 0 && (m.flags & MAIL_DELETED))
			targets[n++] = s->uids[i];
		mbox_msg_clear(&m);
	}
	for (size_t i = 0; i < n; i++) {
		if (mbox_expunge(s->mbox, targets[i]) < 0)
			continue;
		if (!silent)
			imap_view_expunged(s, targets[i]);
	}
	free(targets);
}

void cmd_expunge(struct imap_session *s, struct imap_command *c, bool uid)
{
	if (s->readonly) {
		imap_send(s, "%s NO [READ-ONLY] Mailbox is read-only\r\n", c->tag);
		return;
	}
	struct seqset set = { 0 };
	if (uid && (c->count != 1 || c->args[0].type != IMAP_ARG_ATOM || seqset_parse(c->args[0].str, &set) < 0)) {
		imap_send(s, "%s BAD Usage: UID EXPUNGE uid-set\r\n", c->tag);
		return;
	}
	if (!uid && c->count != 0) {
		imap_send(s, "%s BAD Usage: EXPUNGE\r\n", c->tag);
		return;
	}
	expunge_deleted(s, uid ? &set : NULL, false);
	seqset_free(&set);
	if (s->condstore)
		imap_complete(s, c->tag, true, "OK [HIGHESTMODSEQ %llu] Expunge completed",
		              (unsigned long long)mbox_highestmodseq(s->mbox));
	else
		imap_complete(s, c->tag, true, "OK Expunge completed");
}

void cmd_close(struct imap_session *s, struct imap_command *c, bool uid)
{
	if (!s->readonly)
		expunge_deleted(s, NULL, true);
	imap_unselect(s);
	imap_send(s, "%s OK Close completed\r\n", c->tag);
}

void cmd_unselect(struct imap_session *s, struct imap_command *c, bool uid)
{
	imap_unselect(s);
	imap_send(s, "%s OK Unselect completed\r\n", c->tag);
}

/* Merge keyword lists: op '+' union, '-' remove, '=' replace. */
static char *kw_merge(const char *cur, const char *chg, char op)
{
	if (op == '=')
		return xstrdup(chg);
	struct buf out;
	buf_init(&out, 8192);
	char *a = xstrdup(cur), *save = NULL;
	for (char *w = strtok_r(a, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		bool in_chg = false;
		char *b = xstrdup(chg), *s2 = NULL;
		for (char *v = strtok_r(b, " ", &s2); v && !in_chg; v = strtok_r(NULL, " ", &s2))
			in_chg = strcasecmp(v, w) == 0;
		free(b);
		if (op == '-' && in_chg)
			continue;
		if (op == '+' && in_chg)
			continue; /* re-added below */
		buf_printf(&out, "%s%s", out.len ? " " : "", w);
	}
	free(a);
	if (op == '+' && chg[0])
		buf_printf(&out, "%s%s", out.len ? " " : "", chg);
	char *r = buf_steal(&out);
	buf_deinit(&out);
	return r;
}

void cmd_store(struct imap_session *s, struct imap_command *c, bool uid)
{
	struct seqset set;
	size_t i = 1;
	uint64_t unchanged = 0;
	if (c->count < 3 || c->args[0].type != IMAP_ARG_ATOM || seqset_parse(c->args[0].str, &set) < 0) {
		imap_send(s, "%s BAD Usage: STORE set item flags\r\n", c->tag);
		return;
	}
	if (!uid && !imap_seqset_in_range(s, &set)) {
		seqset_free(&set);
		imap_send(s, "%s BAD Invalid message sequence number\r\n", c->tag);
		return;
	}
	if (c->args[1].type == IMAP_ARG_LIST) {
		const struct imap_arg *m = &c->args[1];
		if (m->count != 2 || !imap_arg_atom_eq(&m->list[0], "UNCHANGEDSINCE") || m->list[1].type != IMAP_ARG_ATOM) {
			seqset_free(&set);
			imap_send(s, "%s BAD Invalid STORE modifier\r\n", c->tag);
			return;
		}
		unchanged = strtoull(m->list[1].str, NULL, 10);
		if (unchanged == 0)
			unchanged = 1; /* UNCHANGEDSINCE 0 always fails for existing messages */
		s->condstore = true;
		i++;
	}
	const struct imap_arg *item = &c->args[i];
	if (i + 1 >= c->count || item->type != IMAP_ARG_ATOM) {
		seqset_free(&set);
		imap_send(s, "%s BAD Usage: STORE set item flags\r\n", c->tag);
		return;
	}
	char op;
	const char *it = item->str;
	if (*it == '+' || *it == '-')
		op = *it++;
	else
		op = '=';
	bool silent;
	if (strcasecmp(it, "FLAGS") == 0)
		silent = false;
	else if (strcasecmp(it, "FLAGS.SILENT") == 0)
		silent = true;
	else {
		seqset_free(&set);
		imap_send(s, "%s BAD Unknown STORE item\r\n", c->tag);
		return;
	}
	unsigned flags;
	char *kw;
	const struct imap_arg *fl = &c->args[i + 1];
	int pr = fl->type == IMAP_ARG_LIST ? imap_parse_flags(fl->list, fl->count, &flags, &kw)
	                                   : imap_parse_flags(fl, c->count - i - 1, &flags, &kw);
	if (pr < 0) {
		seqset_free(&set);
		imap_send(s, "%s BAD Invalid flags\r\n", c->tag);
		return;
	}
	if (s->readonly) {
		seqset_free(&set);
		free(kw);
		imap_send(s, "%s NO [READ-ONLY] Mailbox is read-only\r\n", c->tag);
		return;
	}
	size_t *idx;
	size_t n = imap_select_msgs(s, &set, uid, &idx);
	uint32_t *modified = xmalloc((n ? n : 1) * sizeof(*modified));
	size_t nmod = 0;
	for (size_t k = 0; k < n; k++) {
		uint32_t u = s->uids[idx[k]];
		struct mbox_msg m;
		if (mbox_msg_get(s->mbox, u, &m) <= 0)
			continue;
		unsigned nf = op == '=' ? flags : op == '+' ? (m.flags | flags) : (m.flags & ~flags);
		char *nk = kw_merge(m.keywords, kw, op);
		uint64_t modseq = 0;
		int r = mbox_store(s->mbox, u, nf, nk, unchanged, &modseq);
		free(nk);
		mbox_msg_clear(&m);
		if (r == 0) {
			if (mbox_msg_get(s->mbox, u, &m) > 0)
				modified[nmod++] = uid ? u : (uint32_t)(idx[k] + 1);
			mbox_msg_clear(&m);
			continue;
		}
		if (r < 0)
			continue;
		/* our own change: no need to report it again as someone else's */
		if (modseq == s->seen_modseq + 1)
			s->seen_modseq = modseq;
		if (silent && !(unchanged && s->condstore))
			continue;
		if (mbox_msg_get(s->mbox, u, &m) <= 0)
			continue;
		struct buf b;
		buf_init(&b, 8192);
		buf_printf(&b, "* %zu FETCH (", idx[k] + 1);
		if (uid)
			buf_printf(&b, "UID %u ", u);
		if (!silent) {
			buf_append_str(&b, "FLAGS ");
			imap_append_flags(s, &b, &m);
		}
		if (s->condstore)
			buf_printf(&b, "%sMODSEQ (%llu)", silent ? "" : " ", (unsigned long long)m.modseq);
		buf_append_str(&b, ")\r\n");
		imap_send_raw(s, b.data, b.len);
		buf_deinit(&b);
		mbox_msg_clear(&m);
	}
	if (nmod > 0) {
		struct buf b;
		buf_init(&b, 16 * nmod + 64);
		imap_uidset_append(&b, modified, nmod);
		imap_complete(s, c->tag, uid, "OK [MODIFIED %s] Conditional STORE failed", b.data);
		buf_deinit(&b);
	} else {
		imap_complete(s, c->tag, uid, "OK Store completed");
	}
	free(modified);
	free(idx);
	free(kw);
	seqset_free(&set);
}

void cmd_copy(struct imap_session *s, struct imap_command *c, bool uid)
{
	bool move = strcmp(c->name, "MOVE") == 0;
	struct seqset set;
	const char *name = arg_name(c, 1);
	if (c->count != 2 || name == NULL || c->args[0].type != IMAP_ARG_ATOM || seqset_parse(c->args[0].str, &set) < 0) {
		imap_send(s, "%s BAD Usage: %s set mailbox\r\n", c->tag, c->name);
		return;
	}
	if (!uid && !imap_seqset_in_range(s, &set)) {
		seqset_free(&set);
		imap_send(s, "%s BAD Invalid message sequence number\r\n", c->tag);
		return;
	}
	if (move && s->readonly) {
		seqset_free(&set);
		imap_send(s, "%s NO [READ-ONLY] Mailbox is read-only\r\n", c->tag);
		return;
	}
	const char *err;
	char *canon = NULL;
	struct mbox *own = NULL, *dst;
	if (maildir_name_map(s->root, name, &canon, NULL, &err) > 0 && strcmp(canon, s->mbox_name) == 0) {
		dst = s->mbox;
	} else {
		free(canon);
		canon = NULL;
		dst = own = open_box(s, name, &canon, &err);
	}
	if (dst == NULL) {
		seqset_free(&set);
		imap_complete(s, c->tag, !move ? uid : true, "NO [TRYCREATE] %s", err);
		return;
	}
	size_t *idx;
	size_t n = imap_select_msgs(s, &set, uid, &idx);
	uint32_t *src = xmalloc((n ? n : 1) * sizeof(*src));
	uint32_t *dsts = xmalloc((n ? n : 1) * sizeof(*dsts));
	size_t done = 0;
	bool failed = false;
	for (size_t k = 0; k < n; k++) {
		uint32_t nu;
		int r = mbox_copy(s->mbox, s->uids[idx[k]], dst, &nu, &err);
		if (r < 0) {
			failed = true;
			break;
		}
		if (r == 0)
			continue;
		src[done] = s->uids[idx[k]];
		dsts[done++] = nu;
	}
	struct buf b;
	buf_init(&b, 32 * done + 128);
	if (done > 0) {
		buf_printf(&b, "[COPYUID %u ", mbox_uidvalidity(dst));
		imap_uidset_append(&b, src, done);
		buf_append_c(&b, ' ');
		imap_uidset_append(&b, dsts, done);
		buf_append_str(&b, "] ");
	}
	if (failed) {
		imap_complete(s, c->tag, false, "NO %s", err);
	} else if (move) {
		if (done > 0)
			imap_send(s, "* OK %sMoved\r\n", b.data);
		for (size_t k = 0; k < done; k++)
			if (mbox_expunge(s->mbox, src[k]) > 0)
				imap_view_expunged(s, src[k]);
		imap_complete(s, c->tag, true, "OK Move completed");
	} else {
		imap_complete(s, c->tag, uid, "OK %sCopy completed", b.data);
	}
	buf_deinit(&b);
	free(src);
	free(dsts);
	free(idx);
	free(canon);
	seqset_free(&set);
	mbox_close(&own);
}
