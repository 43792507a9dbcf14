#include "pop3/pop3_session.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <unistd.h>

#include "lib-mailbox/maildir.h"
#include "lib-mailbox/mbox.h"
#include "lib/base64.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "pop3/pop3_parser.h"

#define POP3_OUT_HIGH (256 * 1024)
#define POP3_OUT_LOW (64 * 1024)

enum pop3_state { POP3_AUTHORIZATION, POP3_TRANSACTION };

struct pop3_msg {
	uint32_t uid;
	uint64_t size;
	char uidl[72];
	bool deleted;
};

struct pop3_session {
	struct event_base *base;
	struct bufferevent *bev;
	const struct pop3_settings *set;
	struct pop3_line_reader reader;
	enum pop3_state state;
	bool tls, closing, busy, freeing, out_blocked, sasl_wait, auth_pending;
	char sid[24];
	char ip[64];
	char *user_arg;   /* USER given, waiting for PASS */
	char *user;
	char *auth_user;  /* the name being checked, for the log line */
	void *auth_req;
	struct event *resume_ev;
	unsigned errors;
	struct mbox *mbox;
	int lock_fd;
	struct pop3_msg *msgs;
	size_t count;
	struct pop3_session *prev, *next;
};

static struct pop3_session *sessions;
static unsigned session_count;
static unsigned session_serial;

static void session_free(struct pop3_session *s);
static void process_input(struct pop3_session *s);

unsigned pop3_session_count(void)
{
	return session_count;
}

static void send_fmt(struct pop3_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_fmt(struct pop3_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
}

static size_t out_pending(struct pop3_session *s)
{
	size_t n = evbuffer_get_length(bufferevent_get_output(s->bev));
	struct bufferevent *under = bufferevent_get_underlying(s->bev);
	if (under != NULL)
		n += evbuffer_get_length(bufferevent_get_output(under));
	return n;
}

static void close_after_flush(struct pop3_session *s)
{
	s->closing = true;
	bufferevent_disable(s->bev, EV_READ);
	event_active(s->resume_ev, EV_TIMEOUT, 0);
}

static void poll_output_later(struct pop3_session *s)
{
	if (bufferevent_get_underlying(s->bev) != NULL) {
		struct timeval tv = { 0, 10000 };
		event_add(s->resume_ev, &tv); /* a STARTTLS filter does not call back when the socket drains */
	}
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pop3_session *s = arg;
	if (!s->closing) {
		if (s->out_blocked && out_pending(s) <= POP3_OUT_HIGH)
			s->out_blocked = false;
		if (!s->out_blocked)
			process_input(s);
		else
			poll_output_later(s);
	}
	if (s->closing) {
		if (out_pending(s) == 0) {
			session_free(s);
		} else {
			struct timeval tv = { 0, 20000 };
			event_add(s->resume_ev, &tv); /* the TLS filter does not call back when the socket drains */
		}
	}
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct pop3_session *s = arg;
	process_input(s);
	if (s->closing && out_pending(s) == 0)
		session_free(s);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct pop3_session *s = arg;
	if (s->closing) {
		if (out_pending(s) == 0)
			session_free(s);
		return;
	}
	if (s->out_blocked) {
		s->out_blocked = false;
		process_input(s);
		if (s->closing && out_pending(s) == 0)
			session_free(s);
	}
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct pop3_session *s = arg;
	if (what & BEV_EVENT_CONNECTED)
		return;
	if ((what & BEV_EVENT_TIMEOUT) && !s->closing) {
		send_fmt(s, "-ERR Autologout; idle for too long\r\n");
		s->closing = true;
		bufferevent_disable(s->bev, EV_READ);
		struct timeval tv = { 5, 0 };
		bufferevent_set_timeouts(s->bev, NULL, &tv);
		bufferevent_enable(s->bev, EV_WRITE);
		return;
	}
	log_info("event=pop3_disconnect sid=%s user=%s", s->sid, s->user ? s->user : "-");
	session_free(s);
}

static void setup_bev(struct pop3_session *s)
{
	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	bufferevent_setwatermark(s->bev, EV_WRITE, POP3_OUT_LOW, 0);
	bufferevent_setwatermark(s->bev, EV_READ, 0, 64 * 1024);
	struct timeval tv = { s->set->timeout_secs ? s->set->timeout_secs : 600, 0 };
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static SSL *new_ssl(struct pop3_session *s)
{
	SSL *ssl = SSL_new(s->set->tls);
	if (ssl != NULL) {
		SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
		SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
	}
	return ssl;
}

struct pop3_session *pop3_session_new(struct event_base *base, int fd, const struct pop3_settings *set,
                                      bool implicit_tls, const char *client_ip)
{
	struct pop3_session *s = xcalloc(1, sizeof(*s));
	s->base = base;
	s->set = set;
	s->lock_fd = -1;
	snprintf(s->sid, sizeof(s->sid), "p%x%04x", (unsigned)getpid(), ++session_serial & 0xffff);
	snprintf(s->ip, sizeof(s->ip), "%s", client_ip ? client_ip : "");
	pop3_line_reader_init(&s->reader);
	s->resume_ev = event_new(base, -1, 0, resume_cb, s);
	if (implicit_tls) {
		SSL *ssl = set->tls ? new_ssl(s) : NULL;
		if (ssl == NULL) {
			close(fd);
			pop3_line_reader_deinit(&s->reader);
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
	if (sessions)
		sessions->prev = s;
	sessions = s;
	session_count++;
	send_fmt(s, "+OK mailroute POP3 ready\r\n");
	log_info("event=pop3_connect sid=%s ip=%s tls=%d", s->sid, s->ip, s->tls);
	return s;
}

static void drop_maildrop(struct pop3_session *s)
{
	mbox_close(&s->mbox);
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* releases the flock */
	s->lock_fd = -1;
	xfree(&s->msgs);
	s->count = 0;
}

static void session_free(struct pop3_session *s)
{
	if (s->freeing)
		return;
	s->freeing = true;
	if (s->auth_req && s->set->auth.cancel)
		s->set->auth.cancel(s->set->auth.ctx, s->auth_req);
	drop_maildrop(s);
	if (s->prev)
		s->prev->next = s->next;
	else
		sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	session_count--;
	bufferevent_free(s->bev);
	event_free(s->resume_ev);
	pop3_line_reader_deinit(&s->reader);
	if (s->user_arg)
		secret_free(s->user_arg);
	free(s->user);
	free(s->auth_user);
	free(s);
}

void pop3_sessions_shutdown(void)
{
	while (sessions) {
		struct pop3_session *s = sessions;
		send_fmt(s, "-ERR Server shutting down\r\n");
		bufferevent_flush(s->bev, EV_WRITE, BEV_FLUSH);
		session_free(s);
	}
}

/* ---- maildrop ---- */

static void make_uidl(struct pop3_msg *pm, const char *base, uint32_t uidvalidity)
{
	size_t l = strlen(base);
	bool ok = l > 0 && l <= 70;
	for (size_t i = 0; ok && i < l; i++)
		ok = base[i] > 0x20 && base[i] < 0x7f;
	if (ok)
		memcpy(pm->uidl, base, l + 1);
	else
		snprintf(pm->uidl, sizeof(pm->uidl), "%u.%u", uidvalidity, pm->uid);
}

/* Lock and load the maildrop; -1 with an -ERR text. */
static int open_maildrop(struct pop3_session *s, const char *root, const char **err_r)
{
	const char *err;
	if (maildir_ensure_root(root, &err) < 0) {
		*err_r = "[SYS/TEMP] Maildrop unavailable";
		return -1;
	}
	char *lock = xasprintf("%s/mailroute-pop3.lock", root);
	s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	free(lock);
	if (s->lock_fd < 0) {
		*err_r = "[SYS/TEMP] Cannot lock maildrop";
		return -1;
	}
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		close(s->lock_fd);
		s->lock_fd = -1;
		*err_r = "[IN-USE] Maildrop is locked by another session";
		return -1;
	}
	s->mbox = mbox_open(root, &err);
	if (s->mbox == NULL) {
		drop_maildrop(s);
		*err_r = "[SYS/TEMP] Cannot open maildrop";
		return -1;
	}
	uint32_t *uids;
	size_t n;
	if (mbox_uids(s->mbox, &uids, &n) < 0) {
		drop_maildrop(s);
		*err_r = "[SYS/TEMP] Cannot read maildrop";
		return -1;
	}
	s->msgs = xcalloc(n ? n : 1, sizeof(*s->msgs));
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		struct mbox_msg m;
		if (mbox_msg_get(s->mbox, uids[i], &m) <= 0)
			continue;
		s->msgs[k].uid = m.uid;
		s->msgs[k].size = m.size;
		make_uidl(&s->msgs[k], m.base, mbox_uidvalidity(s->mbox));
		k++;
		mbox_msg_clear(&m);
	}
	s->count = k;
	free(uids);
	return 0;
}

static void auth_done(void *arg, enum lookup_status status, const char *user, const char *maildir)
{
	struct pop3_session *s = arg;
	s->auth_req = NULL;
	s->auth_pending = false;
	s->busy = false;
	if (status == LOOKUP_OK && user && maildir && maildir[0] == '/') {
		const char *err;
		if (open_maildrop(s, maildir, &err) < 0) {
			send_fmt(s, "-ERR %s\r\n", err);
			log_info("event=pop3_login_fail sid=%s user=%s reason=maildrop", s->sid, user);
		} else {
			s->user = xstrdup(user);
			s->state = POP3_TRANSACTION;
			send_fmt(s, "+OK Logged in, %zu messages\r\n", s->count);
			log_info("event=pop3_login sid=%s user=%s ip=%s messages=%zu", s->sid, user, s->ip, s->count);
		}
	} else if (status == LOOKUP_TEMPFAIL) {
		send_fmt(s, "-ERR [SYS/TEMP] Authentication temporarily unavailable\r\n");
	} else {
		send_fmt(s, "-ERR [AUTH] Authentication failed\r\n");
		char q[128];
		log_info("event=pop3_login_fail sid=%s ip=%s user=%s", s->sid, s->ip,
		         log_q(q, sizeof(q), s->auth_user ? s->auth_user : ""));
	}
	xfree(&s->auth_user);
	event_active(s->resume_ev, EV_TIMEOUT, 0);
}

static void start_auth(struct pop3_session *s, const char *user, const char *pass)
{
	if (s->set->auth.begin == NULL) {
		send_fmt(s, "-ERR [SYS/TEMP] No authenticator\r\n");
		return;
	}
	free(s->auth_user);
	s->auth_user = xstrdup(user);
	s->busy = true;
	s->auth_pending = true;
	void *req = s->set->auth.begin(s->set->auth.ctx, "pop3", user, pass, s->ip, auth_done, s);
	if (s->auth_pending)
		s->auth_req = req;
}

static bool plaintext_ok(struct pop3_session *s)
{
	return s->tls || s->set->allow_plaintext;
}

static void sasl_plain(struct pop3_session *s, const char *b64)
{
	size_t len = strlen(b64);
	unsigned char *raw = xmalloc(len / 4 * 3 + 4);
	long n = base64_decode(b64, len, raw);
	const char *p1 = n > 0 ? memchr(raw, '\0', (size_t)n) : NULL;
	const char *p2 = p1 ? memchr(p1 + 1, '\0', (size_t)n - (size_t)(p1 + 1 - (const char *)raw)) : NULL;
	if (p2 == NULL || memchr(p2 + 1, '\0', (size_t)n - (size_t)(p2 + 1 - (const char *)raw)) != NULL) {
		send_fmt(s, "-ERR Invalid PLAIN response\r\n");
	} else {
		char *user = xstrndup(p1 + 1, (size_t)(p2 - p1 - 1));
		char *pass = xstrndup(p2 + 1, (size_t)n - (size_t)(p2 + 1 - (const char *)raw));
		if (raw[0] != '\0' && strcmp((const char *)raw, user) != 0)
			send_fmt(s, "-ERR [AUTH] Proxy authentication not supported\r\n");
		else
			start_auth(s, user, pass);
		free(user);
		secret_free(pass);
	}
	if (n > 0)
		secret_zero(raw, (size_t)n);
	free(raw);
}

/* ---- commands ---- */

static void cmd_capa(struct pop3_session *s)
{
	send_fmt(s, "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
	if (s->state == POP3_AUTHORIZATION) {
		if (plaintext_ok(s))
			send_fmt(s, "USER\r\nSASL PLAIN\r\n");
		if (!s->tls && s->set->tls)
			send_fmt(s, "STLS\r\n");
	}
	send_fmt(s, "IMPLEMENTATION mailroute\r\n.\r\n");
}

static void cmd_stls(struct pop3_session *s)
{
	if (s->tls || s->set->tls == NULL) {
		send_fmt(s, "-ERR TLS not available\r\n");
		return;
	}
	SSL *ssl = new_ssl(s);
	if (ssl == NULL) {
		send_fmt(s, "-ERR TLS failed\r\n");
		return;
	}
	send_fmt(s, "+OK Begin TLS negotiation\r\n");
	struct evbuffer *in = bufferevent_get_input(s->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	pop3_line_reader_next(&s->reader);
	if (s->user_arg)
		secret_free(s->user_arg);
	s->user_arg = NULL;
	struct bufferevent *under = s->bev;
	bufferevent_disable(under, EV_READ);
	s->bev = bufferevent_openssl_filter_new(s->base, under, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	bufferevent_enable(under, EV_READ | EV_WRITE);
	s->tls = true;
	setup_bev(s);
}

static struct pop3_msg *get_msg(struct pop3_session *s, const char *arg)
{
	unsigned long n = pop3_parse_number(arg);
	if (n == 0 || n > s->count) {
		send_fmt(s, "-ERR No such message\r\n");
		return NULL;
	}
	struct pop3_msg *pm = &s->msgs[n - 1];
	if (pm->deleted) {
		send_fmt(s, "-ERR Message is deleted\r\n");
		return NULL;
	}
	return pm;
}

/* Send a message (dot-stuffed); lines < 0: whole message, else header + that many body lines. */
static void send_message(struct pop3_session *s, struct pop3_msg *pm, long lines)
{
	struct mbox_msg m;
	struct buf b;
	if (mbox_msg_get(s->mbox, pm->uid, &m) <= 0) {
		send_fmt(s, "-ERR [SYS/TEMP] Message vanished\r\n");
		return;
	}
	buf_init(&b, (size_t)m.size + 1);
	int r = mbox_msg_read(s->mbox, &m, &b);
	if (r <= 0) {
		const char *err;
		mbox_sync(s->mbox, true, &err);
		mbox_msg_clear(&m);
		buf_reset(&b);
		if (mbox_msg_get(s->mbox, pm->uid, &m) > 0)
			r = mbox_msg_read(s->mbox, &m, &b);
	}
	if (r <= 0) {
		buf_deinit(&b);
		mbox_msg_clear(&m);
		send_fmt(s, "-ERR [SYS/TEMP] Cannot read message\r\n");
		return;
	}
	struct evbuffer *out = bufferevent_get_output(s->bev);
	if (lines < 0)
		send_fmt(s, "+OK %zu octets\r\n", b.len);
	else
		send_fmt(s, "+OK Top of message follows\r\n");
	bool in_body = false;
	long body_lines = 0;
	size_t i = 0;
	while (i < b.len) {
		const char *line = b.data + i;
		const char *nl = memchr(line, '\n', b.len - i);
		size_t ll = nl ? (size_t)(nl - line) + 1 : b.len - i;
		if (in_body && lines >= 0 && body_lines++ >= lines)
			break;
		if (line[0] == '.')
			evbuffer_add(out, ".", 1);
		evbuffer_add(out, line, ll);
		if (!in_body && (ll == 2 && line[0] == '\r'))
			in_body = true;
		i += ll;
	}
	if (b.len > 0 && b.data[b.len - 1] != '\n' && (lines < 0 || !in_body || body_lines <= lines))
		evbuffer_add(out, "\r\n", 2);
	evbuffer_add(out, ".\r\n", 3);
	buf_deinit(&b);
	mbox_msg_clear(&m);
}

static void cmd_quit(struct pop3_session *s)
{
	if (s->state == POP3_TRANSACTION) {
		size_t deleted = 0, failed = 0;
		for (size_t i = 0; i < s->count; i++) {
			if (!s->msgs[i].deleted)
				continue;
			if (mbox_expunge(s->mbox, s->msgs[i].uid) < 0)
				failed++;
			else
				deleted++;
		}
		log_info("event=pop3_quit sid=%s user=%s deleted=%zu", s->sid, s->user, deleted);
		if (failed)
			send_fmt(s, "-ERR [SYS/TEMP] Some deleted messages were not removed\r\n");
		else
			send_fmt(s, "+OK Logging out, %zu messages deleted\r\n", deleted);
		drop_maildrop(s);
	} else {
		send_fmt(s, "+OK Bye\r\n");
	}
	close_after_flush(s);
}

static void bad(struct pop3_session *s, const char *text)
{
	send_fmt(s, "-ERR %s\r\n", text);
	if (++s->errors >= (s->set->max_errors ? s->set->max_errors : 10)) {
		send_fmt(s, "-ERR Too many errors\r\n");
		close_after_flush(s);
	}
}

static void handle_line(struct pop3_session *s, const char *line, size_t len)
{
	if (s->sasl_wait) {
		s->sasl_wait = false;
		if (strcmp(line, "*") == 0)
			send_fmt(s, "-ERR Authentication cancelled\r\n");
		else
			sasl_plain(s, line);
		return;
	}
	struct pop3_command c;
	if (pop3_parse_command(line, len, &c) < 0) {
		bad(s, "Invalid command");
		return;
	}
	const char *v = c.verb;
	if (strcmp(v, "QUIT") == 0 && c.nargs == 0) {
		cmd_quit(s);
	} else if (strcmp(v, "CAPA") == 0 && c.nargs == 0) {
		cmd_capa(s);
	} else if (strcmp(v, "NOOP") == 0 && c.nargs == 0) {
		send_fmt(s, "+OK\r\n");
	} else if (s->state == POP3_AUTHORIZATION) {
		if (strcmp(v, "STLS") == 0 && c.nargs == 0) {
			cmd_stls(s);
		} else if (strcmp(v, "USER") == 0 && c.nargs == 1) {
			if (!plaintext_ok(s)) {
				send_fmt(s, "-ERR [AUTH] Plaintext authentication disallowed without TLS\r\n");
				return;
			}
			if (s->user_arg)
				secret_free(s->user_arg);
			s->user_arg = xstrdup(c.arg[0]);
			send_fmt(s, "+OK Send PASS\r\n");
		} else if (strcmp(v, "PASS") == 0 && c.nargs == 1) {
			if (!plaintext_ok(s)) {
				send_fmt(s, "-ERR [AUTH] Plaintext authentication disallowed without TLS\r\n");
			} else if (s->user_arg == NULL) {
				bad(s, "USER first");
			} else {
				char *u = s->user_arg;
				s->user_arg = NULL;
				start_auth(s, u, c.arg[0]);
				secret_free(u);
			}
		} else if (strcmp(v, "AUTH") == 0) {
			if (c.nargs == 0) {
				send_fmt(s, "+OK\r\nPLAIN\r\n.\r\n");
			} else if (strcasecmp(c.arg[0], "PLAIN") != 0) {
				send_fmt(s, "-ERR Unsupported mechanism\r\n");
			} else if (!plaintext_ok(s)) {
				send_fmt(s, "-ERR [AUTH] Plaintext authentication disallowed without TLS\r\n");
			} else if (c.nargs == 2) {
				sasl_plain(s, c.arg[1]);
			} else {
				s->sasl_wait = true;
				send_fmt(s, "+ \r\n");
			}
		} else if (strcmp(v, "STAT") == 0 || strcmp(v, "LIST") == 0 || strcmp(v, "RETR") == 0 ||
		           strcmp(v, "DELE") == 0 || strcmp(v, "RSET") == 0 || strcmp(v, "TOP") == 0 ||
		           strcmp(v, "UIDL") == 0) {
			bad(s, "Log in first");
		} else {
			bad(s, "Unknown command");
		}
		secret_zero(c.storage, sizeof(c.storage));
	} else if (strcmp(v, "STAT") == 0 && c.nargs == 0) {
		size_t n = 0;
		uint64_t size = 0;
		for (size_t i = 0; i < s->count; i++)
			if (!s->msgs[i].deleted) {
				n++;
				size += s->msgs[i].size;
			}
		send_fmt(s, "+OK %zu %llu\r\n", n, (unsigned long long)size);
	} else if ((strcmp(v, "LIST") == 0 || strcmp(v, "UIDL") == 0) && c.nargs <= 1) {
		bool uidl = v[0] == 'U';
		if (c.nargs == 1) {
			struct pop3_msg *pm = get_msg(s, c.arg[0]);
			if (pm == NULL)
				return;
			if (uidl)
				send_fmt(s, "+OK %s %s\r\n", c.arg[0], pm->uidl);
			else
				send_fmt(s, "+OK %s %llu\r\n", c.arg[0], (unsigned long long)pm->size);
			return;
		}
		send_fmt(s, "+OK\r\n");
		for (size_t i = 0; i < s->count; i++) {
			if (s->msgs[i].deleted)
				continue;
			if (uidl)
				send_fmt(s, "%zu %s\r\n", i + 1, s->msgs[i].uidl);
			else
				send_fmt(s, "%zu %llu\r\n", i + 1, (unsigned long long)s->msgs[i].size);
		}
		send_fmt(s, ".\r\n");
	} else if (strcmp(v, "RETR") == 0 && c.nargs == 1) {
		struct pop3_msg *pm = get_msg(s, c.arg[0]);
		if (pm != NULL)
			send_message(s, pm, -1);
	} else if (strcmp(v, "TOP") == 0 && c.nargs == 2) {
		struct pop3_msg *pm = get_msg(s, c.arg[0]);
		unsigned long n = strcmp(c.arg[1], "0") == 0 ? 0 : pop3_parse_number(c.arg[1]);
		if (pm == NULL)
			return;
		if (n == 0 && strcmp(c.arg[1], "0") != 0) {
			bad(s, "Invalid line count");
			return;
		}
		send_message(s, pm, (long)n);
	} else if (strcmp(v, "DELE") == 0 && c.nargs == 1) {
		struct pop3_msg *pm = get_msg(s, c.arg[0]);
		if (pm != NULL) {
			pm->deleted = true;
			send_fmt(s, "+OK Message deleted\r\n");
		}
	} else if (strcmp(v, "RSET") == 0 && c.nargs == 0) {
		for (size_t i = 0; i < s->count; i++)
			s->msgs[i].deleted = false;
		send_fmt(s, "+OK\r\n");
	} else {
		bad(s, "Unknown command or wrong arguments");
	}
}

static void process_input(struct pop3_session *s)
{
	while (!s->busy && !s->closing && !s->freeing) {
		if (out_pending(s) > POP3_OUT_HIGH) {
			s->out_blocked = true;
			poll_output_later(s);
			break;
		}
		struct evbuffer *in = bufferevent_get_input(s->bev);
		if (evbuffer_get_length(in) == 0)
			break;
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		size_t used = 0;
		int r = pop3_line_reader_feed(&s->reader, v.iov_base, v.iov_len, &used);
		evbuffer_drain(in, used);
		if (r < 0) {
			bad(s, "Line too long");
		} else if (r > 0) {
			handle_line(s, s->reader.line.data, s->reader.line.len);
			secret_zero(s->reader.line.data, s->reader.line.len);
			pop3_line_reader_next(&s->reader);
		}
	}
}
