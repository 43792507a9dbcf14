#include "imap/imap_session.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "imap/imap_internal.h"
#include "lib-mailbox/maildir.h"
#include "lib/base64.h"
#include "lib/log.h"
#include "lib/xalloc.h"

static struct imap_session *sessions;
static unsigned session_count;
static unsigned session_serial;

static void session_free(struct imap_session *s);
static void process_input(struct imap_session *s);
static void idle_stop(struct imap_session *s);

unsigned imap_session_count(void)
{
	return session_count;
}

/* ---- output ---- */

void imap_send(struct imap_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
}

void imap_send_raw(struct imap_session *s, const void *data, size_t len)
{
	evbuffer_add(bufferevent_get_output(s->bev), data, len);
}

size_t imap_out_pending(struct imap_session *s)
{
	size_t n = evbuffer_get_length(bufferevent_get_output(s->bev));
	/* after STARTTLS the bytes sit in the underlying socket bufferevent too */
	struct bufferevent *under = bufferevent_get_underlying(s->bev);
	if (under != NULL)
		n += evbuffer_get_length(bufferevent_get_output(under));
	return n;
}

void imap_complete(struct imap_session *s, const char *tag, bool allow_expunge, const char *fmt, ...)
{
	if (s->state == IMAP_STATE_SELECTED)
		imap_sync_view(s, allow_expunge);
	imap_send(s, "%s ", tag);
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
	imap_send(s, "\r\n");
}

static void close_after_flush(struct imap_session *s)
{
	s->closing = true;
	bufferevent_disable(s->bev, EV_READ);
	event_active(s->resume_ev, EV_TIMEOUT, 0);
}

void imap_resume(struct imap_session *s)
{
	event_active(s->resume_ev, EV_TIMEOUT, 0);
}

void imap_capability_string(struct imap_session *s, struct buf *out)
{
	buf_append_str(out, "IMAP4rev1 IMAP4rev2 SASL-IR LITERAL+ ID ENABLE IDLE");
	if (s->state == IMAP_STATE_NOTAUTH) {
		if (!s->tls && s->set->tls != NULL)
			buf_append_str(out, " STARTTLS");
		if (s->tls || s->set->allow_plaintext)
			buf_append_str(out, " AUTH=PLAIN");
		else
			buf_append_str(out, " LOGINDISABLED");
	} else {
		buf_append_str(out, " NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN LIST-EXTENDED LIST-STATUS SPECIAL-USE"
		                    " CONDSTORE QRESYNC ESEARCH SEARCHRES STATUS=SIZE BINARY UTF8=ACCEPT");
	}
}

/* ---- APPEND spool ---- */

static int spool_begin(void *ctx, size_t size)
{
	struct imap_session *s = ctx;
	if (s->root == NULL || s->spool_fd >= 0)
		return -1;
	char *u = mbox_unique_name();
	s->spool_path = xasprintf("%s/tmp/%s.append", s->root, u);
	free(u);
	s->spool_fd = open(s->spool_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (s->spool_fd < 0) {
		log_warn("event=imap_spool_failed sid=%s error=\"%s\"", s->sid, strerror(errno));
		xfree(&s->spool_path);
		return -1;
	}
	s->spool_written = 0;
	s->spool_failed = false;
	return 0;
}

static void spool_write(void *ctx, const char *data, size_t len)
{
	struct imap_session *s = ctx;
	while (!s->spool_failed && len > 0) {
		ssize_t w = write(s->spool_fd, data, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			s->spool_failed = true;
			break;
		}
		data += w;
		len -= (size_t)w;
		s->spool_written += (size_t)w;
	}
}

void imap_spool_drop(struct imap_session *s)
{
	if (s->spool_fd >= 0)
		close(s->spool_fd);
	s->spool_fd = -1;
	if (s->spool_path != NULL)
		unlink(s->spool_path);
	xfree(&s->spool_path);
}

/* ---- helpers shared by the command files ---- */

int seqset_parse(const char *s, struct seqset *set)
{
	memset(set, 0, sizeof(*set));
	size_t cap = 0;
	const char *p = s;
	if (*p == '\0')
		return -1;
	if (strcmp(p, "$") == 0) {
		set->dollar = true;
		return 0;
	}
	for (;;) {
		uint32_t v[2];
		int nv = 0;
		for (;;) {
			uint32_t x;
			if (*p == '*') {
				x = UINT32_MAX;
				p++;
			} else if (*p >= '1' && *p <= '9') {
				uint64_t acc = 0;
				while (isdigit((unsigned char)*p)) {
					acc = acc * 10 + (uint64_t)(*p++ - '0');
					if (acc > UINT32_MAX - 1)
						goto bad;
				}
				x = (uint32_t)acc;
			} else {
				goto bad;
			}
			v[nv++] = x;
			if (*p == ':' && nv == 1) {
				p++;
				continue;
			}
			break;
		}
		if (nv == 1)
			v[1] = v[0];
		if (set->n == cap) {
			cap = cap ? cap * 2 : 4;
			set->r = xreallocarray(set->r, cap, sizeof(*set->r));
		}
		set->r[set->n].lo = v[0] < v[1] ? v[0] : v[1];
		set->r[set->n].hi = v[0] < v[1] ? v[1] : v[0];
		set->n++;
		if (*p == '\0')
			return 0;
		if (*p != ',')
			goto bad;
		p++;
	}
bad:
	seqset_free(set);
	return -1;
}

void seqset_free(struct seqset *set)
{
	free(set->r);
	set->r = NULL;
	set->n = 0;
}

void imap_seqset_bind(struct imap_session *s, struct seqset *set)
{
	set->saved = s->saved;
	set->nsaved = s->nsaved;
}

bool seqset_has(const struct seqset *set, uint32_t v, uint32_t star)
{
	if (set->dollar) {
		size_t lo = 0, hi = set->nsaved;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (set->saved[mid] == v)
				return true;
			if (set->saved[mid] < v)
				lo = mid + 1;
			else
				hi = mid;
		}
		return false;
	}
	for (size_t i = 0; i < set->n; i++) {
		uint32_t lo = set->r[i].lo == UINT32_MAX ? star : set->r[i].lo;
		uint32_t hi = set->r[i].hi == UINT32_MAX ? star : set->r[i].hi;
		if (lo > hi) {
			uint32_t t = lo;
			lo = hi;
			hi = t;
		}
		if (v >= lo && v <= hi)
			return true;
	}
	return false;
}

bool imap_seqset_in_range(struct imap_session *s, const struct seqset *set)
{
	for (size_t i = 0; i < set->n; i++)
		if ((set->r[i].lo != UINT32_MAX && set->r[i].lo > s->count) ||
		    (set->r[i].hi != UINT32_MAX && set->r[i].hi > s->count))
			return false;
	return true;
}

size_t imap_select_msgs(struct imap_session *s, const struct seqset *set, bool uid, size_t **idx_r)
{
	size_t *idx = xmalloc((s->count ? s->count : 1) * sizeof(*idx));
	size_t n = 0;
	uint32_t star = uid ? (s->count ? s->uids[s->count - 1] : 0) : (uint32_t)s->count;
	struct seqset bound = *set;
	if (bound.dollar)
		imap_seqset_bind(s, &bound);
	for (size_t i = 0; i < s->count; i++)
		if (seqset_has(&bound, uid || bound.dollar ? s->uids[i] : (uint32_t)(i + 1), star))
			idx[n++] = i;
	*idx_r = idx;
	return n;
}

void imap_uidset_append(struct buf *out, const uint32_t *uids, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j + 1 < n && uids[j + 1] == uids[j] + 1)
			j++;
		if (i > 0)
			buf_append_c(out, ',');
		if (j > i)
			buf_printf(out, "%u:%u", uids[i], uids[j]);
		else
			buf_printf(out, "%u", uids[i]);
		i = j + 1;
	}
}

ssize_t imap_view_find(struct imap_session *s, uint32_t uid)
{
	size_t lo = 0, hi = s->count;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->uids[mid] == uid)
			return (ssize_t)mid;
		if (s->uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

void imap_append_flags(struct imap_session *s, struct buf *out, const struct mbox_msg *m)
{
	static const struct {
		unsigned f;
		const char *name;
	} names[] = { { MAIL_SEEN, "\\Seen" }, { MAIL_ANSWERED, "\\Answered" }, { MAIL_FLAGGED, "\\Flagged" },
		      { MAIL_DELETED, "\\Deleted" }, { MAIL_DRAFT, "\\Draft" }, { MAIL_FORWARDED, "$Forwarded" } };
	/* once per message of a FETCH FLAGS: plain appends, no printf */
	size_t start = out->len;
	buf_append_c(out, '(');
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (m->flags & names[i].f) {
			if (out->len > start + 1)
				buf_append_c(out, ' ');
			buf_append_str(out, names[i].name);
		}
	}
	if (m->keywords != NULL && m->keywords[0] != '\0') {
		if (out->len > start + 1)
			buf_append_c(out, ' ');
		buf_append_str(out, m->keywords);
	}
	if (!s->rev2 && m->uid >= s->recent_from) {
		if (out->len > start + 1)
			buf_append_c(out, ' ');
		buf_append_str(out, "\\Recent");
	}
	buf_append_c(out, ')');
}

static const char *const month_names[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

void imap_format_date(struct buf *out, time_t t)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	buf_printf(out, "\"%2d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday, month_names[tm.tm_mon], tm.tm_year + 1900,
	           tm.tm_hour, tm.tm_min, tm.tm_sec);
}

time_t imap_parse_datetime(const char *s, bool date_only)
{
	const char *p = s;
	while (*p == ' ')
		p++;
	char *end;
	long day = strtol(p, &end, 10);
	if (end == p || day < 1 || day > 31 || *end != '-')
		return (time_t)-1;
	p = end + 1;
	int mon = -1;
	for (int i = 0; i < 12; i++)
		if (strncasecmp(p, month_names[i], 3) == 0)
			mon = i;
	if (mon < 0 || p[3] != '-')
		return (time_t)-1;
	p += 4;
	long year = strtol(p, &end, 10);
	if (end - p != 4)
		return (time_t)-1;
	p = end;
	struct tm tm = { .tm_year = (int)year - 1900, .tm_mon = mon, .tm_mday = (int)day };
	if (date_only)
		return *p == '\0' ? timegm(&tm) : (time_t)-1;
	int hh, mm, ss, zone;
	char sign;
	if (sscanf(p, " %2d:%2d:%2d %c%4d", &hh, &mm, &ss, &sign, &zone) != 5 || (sign != '+' && sign != '-'))
		return (time_t)-1;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	long off = (zone / 100) * 3600 + (zone % 100) * 60;
	return timegm(&tm) - (sign == '+' ? off : -off);
}

static bool valid_keyword(const char *k)
{
	if (*k == '\0' || strlen(k) > 64)
		return false;
	for (const char *p = k; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return false;
	}
	return true;
}

int imap_parse_flags(const struct imap_arg *args, size_t count, unsigned *flags_r, char **keywords_r)
{
	static const struct {
		const char *name;
		unsigned f;
	} sys[] = { { "\\Seen", MAIL_SEEN }, { "\\Answered", MAIL_ANSWERED }, { "\\Flagged", MAIL_FLAGGED },
		    { "\\Deleted", MAIL_DELETED }, { "\\Draft", MAIL_DRAFT }, { "$Forwarded", MAIL_FORWARDED } };
	unsigned flags = 0;
	struct buf kw;
	buf_init(&kw, 4096);
	size_t nkw = 0;
	for (size_t i = 0; i < count; i++) {
		const struct imap_arg *a = &args[i];
		if (a->type != IMAP_ARG_ATOM)
			goto bad;
		bool found = false;
		for (size_t k = 0; k < sizeof(sys) / sizeof(sys[0]); k++)
			if (strcasecmp(a->str, sys[k].name) == 0) {
				flags |= sys[k].f;
				found = true;
			}
		if (found || strcasecmp(a->str, "\\Recent") == 0)
			continue;
		if (a->str[0] == '\\' || !valid_keyword(a->str))
			goto bad;
		/* dedupe */
		bool dup = false;
		size_t wl = strlen(a->str);
		for (const char *p = kw.data; *p && !dup;) {
			const char *e = strchr(p, ' ');
			size_t l = e ? (size_t)(e - p) : strlen(p);
			dup = l == wl && strncasecmp(p, a->str, l) == 0;
			p = e ? e + 1 : p + l;
		}
		if (dup)
			continue;
		if (++nkw > 50 || buf_printf(&kw, "%s%s", kw.len ? " " : "", a->str) < 0)
			goto bad;
	}
	*flags_r = flags;
	*keywords_r = buf_steal(&kw);
	buf_deinit(&kw);
	return 0;
bad:
	buf_deinit(&kw);
	return -1;
}

/* ---- view synchronisation ---- */

void imap_view_expunged(struct imap_session *s, uint32_t uid)
{
	ssize_t i = imap_view_find(s, uid);
	if (i < 0)
		return;
	memmove(s->uids + i, s->uids + i + 1, (s->count - (size_t)i - 1) * sizeof(*s->uids));
	s->count--;
	if (s->qresync)
		imap_send(s, "* VANISHED %u\r\n", uid);
	else
		imap_send(s, "* %zd EXPUNGE\r\n", i + 1);
}

struct flag_report {
	struct imap_session *s;
	uint32_t max_uid;
};

static void report_flags(void *arg, const struct mbox_msg *m)
{
	struct flag_report *r = arg;
	struct imap_session *s = r->s;
	if (m->uid > r->max_uid)
		return;
	ssize_t i = imap_view_find(s, m->uid);
	if (i < 0)
		return;
	struct buf b;
	buf_init(&b, 8192);
	buf_printf(&b, "* %zd FETCH (UID %u FLAGS ", i + 1, m->uid);
	imap_append_flags(s, &b, m);
	if (s->condstore)
		buf_printf(&b, " MODSEQ (%llu)", (unsigned long long)m->modseq);
	buf_append_str(&b, ")\r\n");
	imap_send_raw(s, b.data, b.len);
	buf_deinit(&b);
}

void imap_sync_view(struct imap_session *s, bool allow_expunge)
{
	if (s->mbox == NULL)
		return;
	const char *err;
	if (mbox_sync(s->mbox, false, &err) < 0) {
		imap_send(s, "* BYE %s\r\n", err);
		close_after_flush(s);
		return;
	}
	uint64_t hms = mbox_highestmodseq(s->mbox);
	if (hms == s->seen_modseq && !s->expunge_pending)
		return;
	uint32_t *uids;
	size_t n;
	if (mbox_uids(s->mbox, &uids, &n) < 0)
		return;
	/* expunges: view UIDs the index no longer has */
	bool all_done = true;
	if (s->count > 0) {
		size_t j = 0;
		uint32_t *gone = xmalloc(s->count * sizeof(*gone));
		size_t ngone = 0;
		for (size_t i = 0; i < s->count; i++) {
			while (j < n && uids[j] < s->uids[i])
				j++;
			if (j >= n || uids[j] != s->uids[i])
				gone[ngone++] = s->uids[i];
		}
		if (ngone > 0 && allow_expunge) {
			if (s->qresync) {
				struct buf b;
				buf_init(&b, 16 * ngone + 64);
				buf_append_str(&b, "* VANISHED ");
				imap_uidset_append(&b, gone, ngone);
				buf_append_str(&b, "\r\n");
				imap_send_raw(s, b.data, b.len);
				buf_deinit(&b);
				size_t w = 0;
				for (size_t i = 0, g = 0; i < s->count; i++) {
					if (g < ngone && s->uids[i] == gone[g]) {
						g++;
						continue;
					}
					s->uids[w++] = s->uids[i];
				}
				s->count = w;
			} else {
				for (size_t g = 0; g < ngone; g++)
					imap_view_expunged(s, gone[g]);
			}
		} else if (ngone > 0) {
			all_done = false;
		}
		free(gone);
	}
	/* new messages */
	uint32_t last = s->count > 0 ? s->uids[s->count - 1] : 0;
	uint32_t max_known = last;
	size_t added = 0;
	for (size_t j = 0; j < n; j++) {
		if (uids[j] <= last)
			continue;
		if (s->count == s->cap) {
			s->cap = s->cap ? s->cap * 2 : 64;
			s->uids = xreallocarray(s->uids, s->cap, sizeof(*s->uids));
		}
		s->uids[s->count++] = uids[j];
		added++;
	}
	free(uids);
	if (added > 0) {
		imap_send(s, "* %zu EXISTS\r\n", s->count);
		if (!s->rev2) {
			size_t recent = 0;
			for (size_t i = 0; i < s->count; i++)
				if (s->uids[i] >= s->recent_from)
					recent++;
			imap_send(s, "* %zu RECENT\r\n", recent);
		}
	}
	/* flag changes of messages the client already knew */
	struct flag_report fr = { .s = s, .max_uid = max_known };
	mbox_changed_since(s->mbox, s->seen_modseq, report_flags, &fr);
	s->seen_modseq = hms;
	s->expunge_pending = !all_done;
}

/* ---- connection ---- */

/*
 * A STARTTLS filter bufferevent hands its output to the socket bufferevent below it and
 * does not call us back when that one drains, so while output waits there we poll.
 */
static void poll_output_later(struct imap_session *s)
{
	if (bufferevent_get_underlying(s->bev) != NULL) {
		struct timeval tv = { 0, 10000 };
		event_add(s->resume_ev, &tv);
	}
}

/* Continue a suspended FETCH or reading commands once the client has read enough. */
static void continue_output(struct imap_session *s)
{
	if (s->fetch != NULL) {
		if (imap_out_pending(s) > IMAP_OUT_HIGH) {
			poll_output_later(s);
			return;
		}
		if (!imap_fetch_continue(s)) {
			poll_output_later(s);
			return;
		}
		s->busy = false;
		s->out_blocked = true;
	}
	if (s->out_blocked) {
		if (imap_out_pending(s) > IMAP_OUT_HIGH) {
			poll_output_later(s);
			return;
		}
		s->out_blocked = false;
	}
	process_input(s);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct imap_session *s = arg;
	if (s->closing) {
		if (imap_out_pending(s) == 0)
			session_free(s);
		else
			poll_output_later(s);
		return;
	}
	continue_output(s);
	if (s->closing && imap_out_pending(s) == 0)
		session_free(s);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct imap_session *s = arg;
	process_input(s);
	if (s->closing && imap_out_pending(s) == 0)
		session_free(s);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct imap_session *s = arg;
	if (s->closing) {
		if (imap_out_pending(s) == 0)
			session_free(s);
		return;
	}
	if (s->fetch != NULL || s->out_blocked)
		continue_output(s);
	if (s->closing && imap_out_pending(s) == 0)
		session_free(s);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct imap_session *s = arg;
	if (what & BEV_EVENT_TIMEOUT) {
		if (!s->closing) {
			bufferevent_disable(s->bev, EV_READ);
			imap_send(s, "* BYE Autologout; idle for too long\r\n");
			s->closing = true;
			bufferevent_set_timeouts(s->bev, NULL, NULL);
			struct timeval tv = { 5, 0 };
			bufferevent_set_timeouts(s->bev, NULL, &tv);
			bufferevent_enable(s->bev, EV_WRITE);
			return;
		}
	}
	if (what & BEV_EVENT_CONNECTED)
		return;
	log_info("event=imap_disconnect sid=%s user=%s reason=%s", s->sid, s->user ? s->user : "-",
	         (what & BEV_EVENT_EOF) ? "eof" : (what & BEV_EVENT_TIMEOUT) ? "timeout" : "error");
	session_free(s);
}

static void setup_bev(struct imap_session *s)
{
	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	bufferevent_setwatermark(s->bev, EV_WRITE, IMAP_OUT_LOW, 0);
	/* unprocessed input (while we wait for the client to read, or for a login check) stays
	 * in the socket, not in our memory */
	bufferevent_setwatermark(s->bev, EV_READ, 0, IMAP_IN_HIGH);
	struct timeval tv = { s->set->timeout_secs ? s->set->timeout_secs : 1800, 0 };
	/* an unauthenticated connection gets a short leash */
	if (s->state == IMAP_STATE_NOTAUTH && tv.tv_sec > 120)
		tv.tv_sec = 120;
	/* output that nobody reads for 10 minutes ends the session */
	struct timeval wtv = { tv.tv_sec < 600 ? tv.tv_sec : 600, 0 };
	bufferevent_set_timeouts(s->bev, &tv, &wtv);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static SSL *new_ssl(struct imap_session *s)
{
	SSL *ssl = SSL_new(s->set->tls);
	if (ssl != NULL) {
		SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
		SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS); /* idle TLS sessions keep no record buffers */
	}
	return ssl;
}

struct imap_session *imap_session_new(struct event_base *base, int fd, const struct imap_settings *set,
                                      bool implicit_tls, const char *client_ip)
{
	struct imap_session *s = xcalloc(1, sizeof(*s));
	s->base = base;
	s->set = set;
	snprintf(s->sid, sizeof(s->sid), "i%x%04x", (unsigned)getpid(), ++session_serial & 0xffff);
	snprintf(s->ip, sizeof(s->ip), "%s", client_ip ? client_ip : "");
	/* before login APPEND is refused anyway: its literals get the small limit until then */
	size_t lit_max = set->literal_max ? set->literal_max : 65536;
	imap_reader_init(&s->reader, set->line_max ? set->line_max : 65536, lit_max, lit_max);
	s->resume_ev = event_new(base, -1, 0, resume_cb, s);
	s->spool_fd = -1;
	struct imap_literal_sink sink = { .threshold = IMAP_SPOOL_THRESHOLD, .begin = spool_begin,
		                          .write = spool_write, .ctx = s };
	imap_reader_set_sink(&s->reader, &sink);
	if (implicit_tls) {
		SSL *ssl = set->tls != NULL ? new_ssl(s) : NULL;
		if (ssl == NULL) {
			close(fd);
			imap_reader_deinit(&s->reader);
			event_free(s->resume_ev);
			free(s);
			return NULL;
		}
		s->bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
		                                        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
		s->tls = true;
	} else {
		s->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	}
	setup_bev(s);
	s->next = sessions;
	if (sessions != NULL)
		sessions->prev = s;
	sessions = s;
	session_count++;
	struct buf caps;
	buf_init(&caps, 1024);
	imap_capability_string(s, &caps);
	imap_send(s, "* OK [CAPABILITY %s] mailroute IMAP ready\r\n", caps.data);
	buf_deinit(&caps);
	log_info("event=imap_connect sid=%s ip=%s tls=%d", s->sid, s->ip, s->tls);
	return s;
}

void imap_unselect(struct imap_session *s)
{
	mbox_close(&s->mbox);
	xfree(&s->mbox_name);
	xfree(&s->uids);
	xfree(&s->saved);
	s->nsaved = 0;
	s->count = s->cap = 0;
	s->seen_modseq = 0;
	if (s->state == IMAP_STATE_SELECTED)
		s->state = IMAP_STATE_AUTH;
}

static void session_free(struct imap_session *s)
{
	if (s->freeing)
		return;
	s->freeing = true;
	if (s->auth_req != NULL && s->set->auth.cancel != NULL)
		s->set->auth.cancel(s->set->auth.ctx, s->auth_req);
	idle_stop(s);
	imap_fetch_free(&s->fetch);
	imap_append_detach(s);
	imap_spool_drop(s);
	imap_unselect(s);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	session_count--;
	bufferevent_free(s->bev);
	event_free(s->resume_ev);
	imap_reader_deinit(&s->reader);
	free(s->user);
	free(s->root);
	free(s->async_tag);
	free(s->auth_user);
	free(s);
}

void imap_sessions_shutdown(void)
{
	while (sessions != NULL) {
		struct imap_session *s = sessions;
		imap_send(s, "* BYE Server shutting down\r\n");
		bufferevent_flush(s->bev, EV_WRITE, BEV_FLUSH);
		session_free(s);
	}
}

/* ---- authentication ---- */

static void auth_done(void *arg, enum lookup_status status, const char *user, const char *maildir)
{
	struct imap_session *s = arg;
	s->auth_req = NULL;
	s->auth_pending = false;
	s->busy = false;
	const char *tag = s->async_tag ? s->async_tag : "*";
	if (status == LOOKUP_OK && user != NULL && maildir != NULL && maildir[0] == '/') {
		const char *err;
		if (maildir_ensure_root(maildir, &err) < 0) {
			log_warn("event=imap_login_fail sid=%s user=%s reason=maildir error=\"%s\"", s->sid, user, err);
			imap_send(s, "%s NO [SERVERBUG] Mailbox unavailable\r\n", tag);
		} else {
			s->user = xstrdup(user);
			s->root = xstrdup(maildir);
			s->state = IMAP_STATE_AUTH;
			imap_reader_set_append_max(&s->reader, s->set->append_max ? s->set->append_max : 50 * 1024 * 1024);
			setup_bev(s); /* the full autologout timer */
			struct buf caps;
			buf_init(&caps, 1024);
			imap_capability_string(s, &caps);
			imap_send(s, "%s OK [CAPABILITY %s] Logged in\r\n", tag, caps.data);
			buf_deinit(&caps);
			log_info("event=imap_login sid=%s user=%s ip=%s", s->sid, user, s->ip);
		}
	} else if (status == LOOKUP_TEMPFAIL) {
		imap_send(s, "%s NO [UNAVAILABLE] Authentication temporarily unavailable\r\n", tag);
	} else {
		imap_send(s, "%s NO [AUTHENTICATIONFAILED] Authentication failed\r\n", tag);
		char q[128];
		log_info("event=imap_login_fail sid=%s ip=%s user=%s", s->sid, s->ip,
		         log_q(q, sizeof(q), s->auth_user ? s->auth_user : ""));
	}
	xfree(&s->auth_user);
	xfree(&s->async_tag);
	imap_resume(s);
}

static void start_auth(struct imap_session *s, const char *tag, const char *user, const char *pass)
{
	if (s->set->auth.begin == NULL) {
		imap_send(s, "%s NO [UNAVAILABLE] No authenticator\r\n", tag);
		return;
	}
	s->async_tag = xstrdup(tag);
	free(s->auth_user);
	s->auth_user = xstrdup(user);
	s->busy = true;
	s->auth_pending = true;
	void *req = s->set->auth.begin(s->set->auth.ctx, "imap", user, pass, s->ip, auth_done, s);
	if (s->auth_pending)
		s->auth_req = req;
}

static bool plaintext_ok(struct imap_session *s)
{
	return s->tls || s->set->allow_plaintext;
}

static void cmd_login(struct imap_session *s, struct imap_command *c, bool uid)
{
	const char *user = c->count == 2 ? imap_arg_astring(&c->args[0]) : NULL;
	const char *pass = c->count == 2 ? imap_arg_astring(&c->args[1]) : NULL;
	if (user == NULL || pass == NULL) {
		imap_send(s, "%s BAD Usage: LOGIN user password\r\n", c->tag);
		return;
	}
	if (!plaintext_ok(s)) {
		imap_send(s, "%s NO [PRIVACYREQUIRED] Use STARTTLS first\r\n", c->tag);
		return;
	}
	start_auth(s, c->tag, user, pass);
	secret_zero(c->args[1].str, c->args[1].len);
}

/* SASL PLAIN response (base64); returns true when auth was started. */
static void sasl_plain(struct imap_session *s, const char *tag, const char *b64, size_t len)
{
	if (len == 1 && b64[0] == '=')
		len = 0;
	unsigned char *raw = xmalloc(len / 4 * 3 + 4);
	long n = base64_decode(b64, len, raw);
	if (n < 0 || (len == 0)) {
		imap_send(s, "%s BAD Invalid base64\r\n", tag);
		free(raw);
		return;
	}
	/* authzid \0 authcid \0 password */
	const char *authz = (const char *)raw;
	const char *p1 = memchr(raw, '\0', (size_t)n);
	const char *p2 = p1 ? memchr(p1 + 1, '\0', (size_t)n - (size_t)(p1 + 1 - (const char *)raw)) : NULL;
	if (p1 == NULL || p2 == NULL || memchr(p2 + 1, '\0', (size_t)n - (size_t)(p2 + 1 - (const char *)raw)) != NULL) {
		imap_send(s, "%s BAD Invalid PLAIN response\r\n", tag);
	} else {
		char *user = xstrndup(p1 + 1, (size_t)(p2 - p1 - 1));
		char *pass = xstrndup(p2 + 1, (size_t)n - (size_t)(p2 + 1 - (const char *)raw));
		if (authz[0] != '\0' && strcmp(authz, user) != 0)
			imap_send(s, "%s NO [AUTHORIZATIONFAILED] Proxy authentication not supported\r\n", tag);
		else
			start_auth(s, tag, user, pass);
		free(user);
		secret_free(pass);
	}
	secret_zero(raw, (size_t)n);
	free(raw);
}

static void cmd_authenticate(struct imap_session *s, struct imap_command *c, bool uid)
{
	if (c->count < 1 || c->count > 2 || c->args[0].type != IMAP_ARG_ATOM) {
		imap_send(s, "%s BAD Usage: AUTHENTICATE mechanism [initial-response]\r\n", c->tag);
		return;
	}
	if (strcasecmp(c->args[0].str, "PLAIN") != 0) {
		imap_send(s, "%s NO [CANNOT] Unsupported mechanism\r\n", c->tag);
		return;
	}
	if (!plaintext_ok(s)) {
		imap_send(s, "%s NO [PRIVACYREQUIRED] Use STARTTLS first\r\n", c->tag);
		return;
	}
	if (c->count == 2) {
		if (c->args[1].type != IMAP_ARG_ATOM) {
			imap_send(s, "%s BAD Invalid initial response\r\n", c->tag);
			return;
		}
		sasl_plain(s, c->tag, c->args[1].str, c->args[1].len);
		secret_zero(c->args[1].str, c->args[1].len);
		return;
	}
	s->async_tag = xstrdup(c->tag);
	s->sasl_wait = true;
	imap_send(s, "+ \r\n");
}

static void sasl_line(struct imap_session *s, char *line, size_t len)
{
	s->sasl_wait = false;
	char *tag = s->async_tag;
	s->async_tag = NULL;
	if (len == 1 && line[0] == '*')
		imap_send(s, "%s BAD Authentication cancelled\r\n", tag);
	else
		sasl_plain(s, tag, line, len);
	free(tag);
}

static void cmd_starttls(struct imap_session *s, struct imap_command *c, bool uid)
{
	if (s->tls || s->set->tls == NULL) {
		imap_send(s, "%s BAD TLS not available\r\n", c->tag);
		return;
	}
	SSL *ssl = new_ssl(s);
	if (ssl == NULL) {
		imap_send(s, "%s NO [UNAVAILABLE] TLS failed\r\n", c->tag);
		return;
	}
	imap_send(s, "%s OK Begin TLS negotiation now\r\n", c->tag);
	/* plaintext pipelined after STARTTLS must not be executed inside TLS */
	struct evbuffer *in = bufferevent_get_input(s->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	imap_reader_reset(&s->reader);
	struct bufferevent *under = s->bev;
	bufferevent_disable(under, EV_READ);
	s->bev = bufferevent_openssl_filter_new(s->base, under, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	bufferevent_enable(under, EV_READ | EV_WRITE);
	s->tls = true;
	setup_bev(s);
}

/* ---- simple commands ---- */

static void cmd_capability(struct imap_session *s, struct imap_command *c, bool uid)
{
	struct buf caps;
	buf_init(&caps, 1024);
	imap_capability_string(s, &caps);
	imap_send(s, "* CAPABILITY %s\r\n", caps.data);
	buf_deinit(&caps);
	imap_complete(s, c->tag, true, "OK Capability completed");
}

static void cmd_noop(struct imap_session *s, struct imap_command *c, bool uid)
{
	imap_complete(s, c->tag, true, "OK NOOP completed");
}

static void cmd_logout(struct imap_session *s, struct imap_command *c, bool uid)
{
	imap_send(s, "* BYE Logging out\r\n%s OK Logout completed\r\n", c->tag);
	log_info("event=imap_logout sid=%s user=%s", s->sid, s->user ? s->user : "-");
	s->state = IMAP_STATE_LOGOUT;
	close_after_flush(s);
}

static void cmd_id(struct imap_session *s, struct imap_command *c, bool uid)
{
	imap_send(s, "* ID (\"name\" \"mailroute\" \"version\" \"%s\")\r\n", MR_VERSION);
	imap_complete(s, c->tag, true, "OK ID completed");
}

static void cmd_enable(struct imap_session *s, struct imap_command *c, bool uid)
{
	if (c->count == 0) {
		imap_send(s, "%s BAD Usage: ENABLE capability...\r\n", c->tag);
		return;
	}
	struct buf out;
	buf_init(&out, 1024);
	for (size_t i = 0; i < c->count; i++) {
		if (c->args[i].type != IMAP_ARG_ATOM)
			continue;
		const char *cap = c->args[i].str;
		if (strcasecmp(cap, "CONDSTORE") == 0 && !s->condstore) {
			s->condstore = true;
			buf_append_str(&out, " CONDSTORE");
		} else if (strcasecmp(cap, "QRESYNC") == 0 && !s->qresync) {
			s->qresync = true;
			s->condstore = true;
			buf_append_str(&out, " QRESYNC");
		} else if (strcasecmp(cap, "IMAP4rev2") == 0 && !s->rev2) {
			s->rev2 = true;
			buf_append_str(&out, " IMAP4rev2");
		} else if (strcasecmp(cap, "UTF8=ACCEPT") == 0 && !s->utf8) {
			/* RFC 6855: UTF-8 mailbox names and quoted strings; messages are stored as sent */
			s->utf8 = true;
			buf_append_str(&out, " UTF8=ACCEPT");
		}
	}
	imap_send(s, "* ENABLED%s\r\n", out.data);
	buf_deinit(&out);
	imap_complete(s, c->tag, true, "OK Enabled");
}

/* ---- IDLE ---- */

static void idle_changed(struct imap_session *s)
{
	/* a client that idles but never reads: stop feeding it */
	if (imap_out_pending(s) > 16 * IMAP_OUT_HIGH) {
		log_info("event=imap_disconnect sid=%s reason=output_not_read", s->sid);
		close_after_flush(s);
		return;
	}
	imap_sync_view(s, true);
}

/*
 * One inotify instance per process (the default per-user limit is 128 instances), with one
 * pair of watches (new/, cur/) per folder, shared by the sessions idling on it.
 */
struct idle_watch {
	char *path;
	int wd[2];
	unsigned refs;
	bool dirty;
	struct idle_watch *next;
};

static int ino_fd = -1;
static struct event *ino_ev;
static struct idle_watch *watches;

static void ino_cb(evutil_socket_t fd, short what, void *arg)
{
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p + sizeof(struct inotify_event) <= buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			for (struct idle_watch *w = watches; w != NULL; w = w->next)
				if (w->wd[0] == ev->wd || w->wd[1] == ev->wd)
					w->dirty = true;
			p += sizeof(*ev) + ev->len;
		}
	}
	/* idle_changed never frees a session (closing ones are freed from their resume event) */
	for (struct imap_session *s = sessions; s != NULL; s = s->next)
		if (s->idling && s->watch != NULL && s->watch->dirty)
			idle_changed(s);
	for (struct idle_watch *w = watches; w != NULL; w = w->next)
		w->dirty = false;
}

static struct idle_watch *watch_get(struct imap_session *s, const char *path)
{
	for (struct idle_watch *w = watches; w != NULL; w = w->next)
		if (strcmp(w->path, path) == 0) {
			w->refs++;
			return w;
		}
	if (ino_fd < 0) {
		ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (ino_fd < 0) {
			log_warn("event=imap_inotify_failed error=\"%s\"", strerror(errno));
			return NULL;
		}
		ino_ev = event_new(s->base, ino_fd, EV_READ | EV_PERSIST, ino_cb, NULL);
		event_add(ino_ev, NULL);
	}
	struct idle_watch *w = xcalloc(1, sizeof(*w));
	w->path = xstrdup(path);
	w->refs = 1;
	uint32_t mask = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE;
	static const char *const subs[2] = { "new", "cur" };
	for (int i = 0; i < 2; i++) {
		char *d = xasprintf("%s/%s", path, subs[i]);
		w->wd[i] = inotify_add_watch(ino_fd, d, mask);
		free(d);
	}
	w->next = watches;
	watches = w;
	return w;
}

static void watch_put(struct idle_watch *w)
{
	if (w == NULL || --w->refs > 0)
		return;
	for (struct idle_watch **pp = &watches; *pp != NULL; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	for (int i = 0; i < 2; i++)
		if (w->wd[i] >= 0)
			inotify_rm_watch(ino_fd, w->wd[i]);
	free(w->path);
	free(w);
	if (watches == NULL && ino_fd >= 0) {
		event_free(ino_ev);
		ino_ev = NULL;
		close(ino_fd);
		ino_fd = -1;
	}
}

static void idle_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct imap_session *s = arg;
	idle_changed(s);
	if (s->closing && imap_out_pending(s) == 0)
		session_free(s);
}

static void idle_stop(struct imap_session *s)
{
	watch_put(s->watch);
	s->watch = NULL;
	if (s->idle_timer != NULL)
		event_free(s->idle_timer);
	s->idle_timer = NULL;
	s->idling = false;
}

static void cmd_idle(struct imap_session *s, struct imap_command *c, bool uid)
{
	s->async_tag = xstrdup(c->tag);
	s->idling = true;
	if (s->state == IMAP_STATE_SELECTED)
		imap_sync_view(s, true);
	imap_send(s, "+ idling\r\n");
	if (s->mbox != NULL) {
		s->watch = watch_get(s, mbox_path(s->mbox));
		/* keyword-only changes touch only the index, and inotify may be unavailable: poll too */
		s->idle_timer = event_new(s->base, -1, EV_PERSIST, idle_timer_cb, s);
		struct timeval tv = { 2, 0 };
		event_add(s->idle_timer, &tv);
	}
}

static void idle_line(struct imap_session *s, const char *line)
{
	idle_stop(s);
	char *tag = s->async_tag;
	s->async_tag = NULL;
	if (strcasecmp(line, "DONE") == 0)
		imap_complete(s, tag, true, "OK IDLE terminated");
	else
		imap_send(s, "%s BAD Expected DONE\r\n", tag);
	free(tag);
}

/* ---- dispatch ---- */

enum {
	CMD_NOTAUTH = 1 << 0, /* allowed before login */
	CMD_AUTH = 1 << 1,    /* allowed after login */
	CMD_SELECTED = 1 << 2, /* needs a selected mailbox */
	CMD_UID = 1 << 3,     /* has a UID variant */
	CMD_ONLY_NOTAUTH = 1 << 4,
	CMD_NO_EXPUNGE = 1 << 5,
};

static const struct {
	const char *name;
	imap_cmd_fn *fn;
	unsigned flags;
} commands[] = {
	{ "CAPABILITY", cmd_capability, CMD_NOTAUTH | CMD_AUTH },
	{ "NOOP", cmd_noop, CMD_NOTAUTH | CMD_AUTH },
	{ "LOGOUT", cmd_logout, CMD_NOTAUTH | CMD_AUTH },
	{ "ID", cmd_id, CMD_NOTAUTH | CMD_AUTH },
	{ "STARTTLS", cmd_starttls, CMD_NOTAUTH | CMD_ONLY_NOTAUTH },
	{ "LOGIN", cmd_login, CMD_NOTAUTH | CMD_ONLY_NOTAUTH },
	{ "AUTHENTICATE", cmd_authenticate, CMD_NOTAUTH | CMD_ONLY_NOTAUTH },
	{ "ENABLE", cmd_enable, CMD_AUTH },
	{ "SELECT", cmd_select, CMD_AUTH },
	{ "EXAMINE", cmd_select, CMD_AUTH },
	{ "CREATE", cmd_create, CMD_AUTH },
	{ "DELETE", cmd_delete, CMD_AUTH },
	{ "RENAME", cmd_rename, CMD_AUTH },
	{ "SUBSCRIBE", cmd_subscribe, CMD_AUTH },
	{ "UNSUBSCRIBE", cmd_unsubscribe, CMD_AUTH },
	{ "LIST", cmd_list, CMD_AUTH },
	{ "LSUB", cmd_lsub, CMD_AUTH },
	{ "STATUS", cmd_status, CMD_AUTH },
	{ "APPEND", cmd_append, CMD_AUTH },
	{ "NAMESPACE", cmd_namespace, CMD_AUTH },
	{ "IDLE", cmd_idle, CMD_AUTH },
	{ "CHECK", cmd_check, CMD_AUTH | CMD_SELECTED },
	{ "CLOSE", cmd_close, CMD_AUTH | CMD_SELECTED },
	{ "UNSELECT", cmd_unselect, CMD_AUTH | CMD_SELECTED },
	{ "EXPUNGE", cmd_expunge, CMD_AUTH | CMD_SELECTED | CMD_UID },
	{ "FETCH", cmd_fetch, CMD_AUTH | CMD_SELECTED | CMD_UID | CMD_NO_EXPUNGE },
	{ "STORE", cmd_store, CMD_AUTH | CMD_SELECTED | CMD_UID | CMD_NO_EXPUNGE },
	{ "SEARCH", cmd_search, CMD_AUTH | CMD_SELECTED | CMD_UID | CMD_NO_EXPUNGE },
	{ "COPY", cmd_copy, CMD_AUTH | CMD_SELECTED | CMD_UID | CMD_NO_EXPUNGE },
	{ "MOVE", cmd_copy, CMD_AUTH | CMD_SELECTED | CMD_UID },
};

static void bad_command(struct imap_session *s, const char *tag, const char *text)
{
	imap_send(s, "%s BAD %s\r\n", tag, text);
	if (++s->errors >= (s->set->max_errors ? s->set->max_errors : 20)) {
		imap_send(s, "* BYE Too many invalid commands\r\n");
		close_after_flush(s);
	}
}

static void handle_command(struct imap_session *s)
{
	struct imap_command c;
	const char *err = NULL;
	if (imap_parse_command(s->reader.cmd.data, s->reader.cmd.len, &c, &err) < 0) {
		bad_command(s, c.tag ? c.tag : "*", err ? err : "Syntax error");
		imap_command_free(&c);
		return;
	}
	bool uid = false;
	const char *name = c.name;
	if (strcmp(name, "UID") == 0) {
		if (c.count == 0 || c.args[0].type != IMAP_ARG_ATOM) {
			bad_command(s, c.tag, "Usage: UID command args");
			imap_command_free(&c);
			return;
		}
		uid = true;
		/* shift the sub-command into place */
		free(c.name);
		c.name = c.args[0].str;
		for (char *q = c.name; *q; q++)
			*q = (char)toupper((unsigned char)*q);
		c.args[0].str = NULL;
		memmove(c.args, c.args + 1, (c.count - 1) * sizeof(*c.args));
		c.count--;
		name = c.name;
	}
	size_t i;
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			break;
	if (i == sizeof(commands) / sizeof(commands[0]) || (uid && !(commands[i].flags & CMD_UID))) {
		bad_command(s, c.tag, "Unknown command");
	} else if (s->state == IMAP_STATE_NOTAUTH && !(commands[i].flags & CMD_NOTAUTH)) {
		bad_command(s, c.tag, "Log in first");
	} else if (s->state != IMAP_STATE_NOTAUTH && (commands[i].flags & CMD_ONLY_NOTAUTH)) {
		bad_command(s, c.tag, "Already logged in");
	} else if ((commands[i].flags & CMD_SELECTED) && s->state != IMAP_STATE_SELECTED) {
		bad_command(s, c.tag, "No mailbox selected");
	} else {
		if (strcmp(name, "LOGIN") != 0 && strcmp(name, "AUTHENTICATE") != 0) {
			char q[64];
			log_debug("event=imap_command sid=%s cmd=%s", s->sid, log_q(q, sizeof(q), name));
		}
		commands[i].fn(s, &c, uid);
	}
	/* passwords and literals are not kept around */
	if (strcmp(name, "LOGIN") == 0 || strcmp(name, "AUTHENTICATE") == 0)
		secret_zero(s->reader.cmd.data, s->reader.cmd.len);
	imap_command_free(&c);
}

/* Read one CRLF line from input (IDLE DONE, SASL response); NULL when incomplete. */
static char *read_line(struct imap_session *s, size_t *len_r)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	char *line = evbuffer_readln(in, len_r, EVBUFFER_EOL_CRLF);
	if (line == NULL && evbuffer_get_length(in) > (s->set->line_max ? s->set->line_max : 65536)) {
		imap_send(s, "* BYE Line too long\r\n");
		close_after_flush(s);
	}
	return line;
}

static void process_input(struct imap_session *s)
{
	while (!s->busy && !s->closing && !s->freeing) {
		if (imap_out_pending(s) > IMAP_OUT_HIGH) {
			s->out_blocked = true;
			poll_output_later(s);
			break;
		}
		struct evbuffer *in = bufferevent_get_input(s->bev);
		if (s->idling || s->sasl_wait) {
			size_t len;
			char *line = read_line(s, &len);
			if (line == NULL)
				break;
			if (s->idling)
				idle_line(s, line);
			else
				sasl_line(s, line, len);
			secret_zero(line, len);
			free(line);
			continue;
		}
		if (evbuffer_get_length(in) == 0)
			break;
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		size_t used = 0;
		enum imap_read_result r = imap_reader_feed(&s->reader, v.iov_base, v.iov_len, &used);
		evbuffer_drain(in, used);
		switch (r) {
		case IMAP_READ_MORE:
			break;
		case IMAP_READ_CONTINUE:
			imap_send(s, "+ OK\r\n");
			break;
		case IMAP_READ_BAD:
			imap_spool_drop(s);
			if (s->reader.is_append)
				imap_send(s, "%s NO [TOOBIG] Message too large\r\n", s->reader.tag);
			else
				bad_command(s, s->reader.tag, s->reader.error);
			imap_reader_reset(&s->reader);
			break;
		case IMAP_READ_FATAL:
			imap_send(s, "* BYE %s\r\n", s->reader.error);
			close_after_flush(s);
			break;
		case IMAP_READ_COMMAND:
			handle_command(s);
			imap_spool_drop(s);
			imap_reader_reset(&s->reader);
			break;
		}
	}
}
