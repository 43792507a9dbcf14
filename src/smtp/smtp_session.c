/*
 * One SMTP session: a state machine driven by the bytes in the bufferevent's
 * input. Commands are handled one at a time; a command that needs another role
 * (RCPT -> lookup, DATA/BDAT -> queue, AUTH -> lookup) sets `waiting`, which
 * stops processing (pipelined input stays buffered) until the answer arrives.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base64.h"
#include "lib/buf.h"
#include "lib/ipc_client.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "filters/clamd_client.h"
#include "filters/ratelimit.h"
#include "filters/rspamd_client.h"
#include "lib-milter/milter_chain.h"
#include "lib-smtp/smtp_address.h"
#include "lib-smtp/smtp_command.h"
#include "lib-smtp/smtp_data.h"
#include "lib-smtp/smtp_line.h"
#include "lookup/lookup_client.h"
#include "master/proto.h"
#include "smtp/smtp_anvil.h"
#include "smtp/smtp_server.h"

#define SPOOL_FLUSH 65536
#define MAX_HOPS 50
#define ADDR_MAX SMTP_ADDRESS_FORMAT_MAX

enum session_state {
	ST_CMD,
	ST_AUTH_PLAIN,  /* waiting for the PLAIN response line */
	ST_AUTH_LOGIN_USER,
	ST_AUTH_LOGIN_PASS,
	ST_DATA,        /* reading DATA content */
	ST_BDAT,        /* reading a BDAT chunk */
	ST_CLOSING,
};

struct rcpt {
	char address[ADDR_MAX];
	char *orcpt;
	unsigned notify;
};

struct smtp_session {
	struct smtp_session *prev, *next;
	struct smtp_server *srv;
	const struct mr_config *cfg;
	struct bufferevent *bev;
	struct event *close_timer;
	enum listen_kind kind;
	char sid[32];
	char ip[INET6_ADDRSTRLEN];
	bool tls;
	bool ehlo;          /* EHLO (not HELO) was given */
	char helo[256];
	char *auth_user;
	char *auth_login_user;
	unsigned errors;
	unsigned commands;
	unsigned messages;
	enum session_state state;
	bool waiting;
	bool close_after_reply;
	struct smtp_line_reader lr;
	struct buf cmd;     /* the current command line, copied out of the input */
	unsigned close_ticks;
	bool output_blocked;    /* reading paused until the client takes our replies */
	struct spool_edit *edits; /* header changes asked by filters, applied before the commit */
	size_t edit_count;
	char *new_body;         /* a filter's replacement body (milter REPLACE_BODY), or NULL */
	size_t new_body_len;
	bool skip_to_crlf;  /* after a bare LF: the rest of the line up to CRLF is part of the bad line */
	time_t line_start;  /* when the partial command line began (trickle defence) */

	/* transaction */
	bool in_mail;
	char sender[ADDR_MAX];
	struct smtp_mail_params mail;
	struct rcpt *rcpts;
	size_t rcpt_count, rcpt_alloc;
	char pending_rcpt[ADDR_MAX]; /* RCPT waiting for lookup */
	char *pending_orcpt;
	unsigned pending_notify;

	/* message content */
	char qid[64];
	int spool_fd;
	struct buf spool_out;
	struct buf add_headers; /* fields to prepend at delivery (Authentication-Results, filter tags) */
	uint32_t commit_flags;  /* PROTO_COMMIT_F_* sent with the COMMIT (set by session_authcheck) */
	uint64_t msg_size;
	bool too_big;
	bool write_failed;
	bool bad_content;
	struct smtp_data_reader dr;
	uint64_t bdat_remaining;
	bool bdat_used;         /* this transaction uses BDAT: DATA is refused */
	bool bdat_last;
	bool bdat_discard;      /* consume the chunk, then answer bdat_code */
	int bdat_code;
	const char *bdat_text;
	unsigned hops;          /* Received: headers seen */
	int hdr_state;          /* BDAT header scan: 0 line start, 1 in line, 2 body */
	char hdr_prefix[10];
	size_t hdr_prefix_len;
	char bdat_prev;         /* last byte of the previous chunk (bare CR/LF check) */

	struct lookup_req *lreq;
	struct ipc_call *qcall;
	struct clamd_scan *cscan;     /* content filters in flight */
	struct rspamd_check *rcheck;

	/* connection-time defences and milters */
	unsigned client_port;
	struct milter_chain *milters; /* NULL when no milter applies to this listener */
	bool milter_tx;               /* milter_chain_mail was called: abort at the end of the transaction */
	bool milter_data_done;        /* the DATA stage ran (before 354); BDAT runs it at the end */
	bool milter_discard;          /* a milter said DISCARD: answer 250, deliver nothing */
	char *refuse_reply;           /* a milter refused at connect/HELO: the reply to every later command */
	bool banner_refused;          /* 554 at the greeting (DNSBL): only QUIT is served */
	int dnsbl_score;              /* IP zones at connect */
	char *dnsbl_tag;              /* action tag: the X-DNSBL value for every message */
	char mail_args[512];          /* ESMTP parameters of MAIL / the pending RCPT, for the milters */
	char rcpt_args[512];
};

static void session_process(struct smtp_session *s);
static void session_free(struct smtp_session *s);
static void edits_clear(struct smtp_session *s);
static void session_install_callbacks(struct smtp_session *s);
static void session_auth_plain(struct smtp_session *s, const char *p, size_t n);
static void session_auth_login(struct smtp_session *s, const char *p, size_t n);
static void edit_add(struct smtp_session *s, const char *name, uint32_t index, const char *value);

/* ---- output ---- */

static void reply(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	struct evbuffer *out = bufferevent_get_output(s->bev);
	evbuffer_add_vprintf(out, fmt, ap);
	evbuffer_add(out, "\r\n", 2);
	va_end(ap);
}

static bool output_empty(struct smtp_session *s)
{
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
		return false;
	struct bufferevent *under = bufferevent_get_underlying(s->bev);
	return under == NULL || evbuffer_get_length(bufferevent_get_output(under)) == 0;
}

static void on_close_timer(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	/* Give a peer that does not read 5 s to take our last reply. */
	if (output_empty(s) || ++s->close_ticks > 100)
		session_free(s);
}

/* Stop reading, let the output drain, then free the session. */
static void session_close(struct smtp_session *s)
{
	if (s->state == ST_CLOSING)
		return;
	s->state = ST_CLOSING;
	bufferevent_disable(s->bev, EV_READ);
	if (s->close_timer != NULL)
		event_free(s->close_timer);
	s->close_timer = event_new(s->srv->base, -1, EV_PERSIST, on_close_timer, s);
	struct timeval tv = { 0, 50000 };
	evtimer_add(s->close_timer, &tv);
}

static void count_error(struct smtp_session *s)
{
	if (++s->errors >= s->cfg->limits.max_errors) {
		reply(s, "421 4.7.0 %s Error: too many errors", s->cfg->hostname);
		log_info("event=too_many_errors sid=%s ip=%s errors=%u", s->sid, s->ip, s->errors);
		session_close(s);
	}
}

/* ---- transaction ---- */

static void spool_abort(struct smtp_session *s)
{
	if (s->spool_fd >= 0) {
		close(s->spool_fd);
		s->spool_fd = -1;
	}
	if (s->qid[0] != '\0') {
		struct ipc_msg m;
		ipc_msg_init(&m, PROTO_QUEUE_ABORT, 0);
		ipc_put_str(&m, s->qid);
		ipc_client_send(s->srv->queue, &m);
		ipc_msg_deinit(&m);
		s->qid[0] = '\0';
	}
}

static void tx_reset(struct smtp_session *s)
{
	spool_abort(s);
	if (s->milter_tx && s->milters != NULL)
		milter_chain_abort(s->milters);
	s->milter_tx = s->milter_data_done = s->milter_discard = false;
	s->in_mail = false;
	s->sender[0] = '\0';
	memset(&s->mail, 0, sizeof(s->mail));
	for (size_t i = 0; i < s->rcpt_count; i++)
		free(s->rcpts[i].orcpt);
	s->rcpt_count = 0;
	/* An idle session keeps little memory: give back the big message buffer. */
	if (s->spool_out.cap > 8192) {
		size_t max = s->spool_out.max;
		buf_deinit(&s->spool_out);
		buf_init(&s->spool_out, max);
	}
	buf_reset(&s->spool_out);
	buf_reset(&s->add_headers);
	edits_clear(s);
	s->msg_size = 0;
	s->too_big = s->write_failed = s->bad_content = false;
	s->bdat_remaining = 0;
	s->bdat_last = s->bdat_discard = s->bdat_used = false;
	s->hops = 0;
	s->hdr_state = 0;
	s->hdr_prefix_len = 0;
	s->bdat_prev = '\n';
}

static void spool_flush(struct smtp_session *s)
{
	size_t off = 0;
	while (off < s->spool_out.len && !s->write_failed) {
		ssize_t n = write(s->spool_fd, s->spool_out.data + off, s->spool_out.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_warn("event=spool_write_failed sid=%s id=%s error=\"%s\"", s->sid, s->qid, strerror(errno));
			s->write_failed = true;
			break;
		}
		off += (size_t)n;
	}
	buf_reset(&s->spool_out);
}

static void spool_add(struct smtp_session *s, const char *p, size_t n)
{
	s->msg_size += n;
	if (s->msg_size > s->cfg->limits.max_message_size)
		s->too_big = true;
	if (s->too_big || s->write_failed)
		return;
	if (buf_append(&s->spool_out, p, n) < 0) {
		spool_flush(s);
		if (n >= s->spool_out.max) {
			s->spool_out.len = 0;
			buf_reset(&s->spool_out);
			/* Larger than the buffer: write through. */
			struct buf tmp = { .data = (char *)p, .len = n, .cap = n, .max = n };
			struct buf saved = s->spool_out;
			s->spool_out = tmp;
			spool_flush(s);
			s->spool_out = saved;
			buf_reset(&s->spool_out);
			return;
		}
		buf_append(&s->spool_out, p, n);
	}
	if (s->spool_out.len >= SPOOL_FLUSH)
		spool_flush(s);
}

static void write_received(struct smtp_session *s)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	const char *proto = s->ehlo ? (s->tls ? (s->auth_user ? "ESMTPSA" : "ESMTPS") : (s->auth_user ? "ESMTPA" : "ESMTP"))
	                            : "SMTP";
	if (s->mail.smtputf8 && s->ehlo)
		proto = s->tls ? (s->auth_user ? "UTF8SMTPSA" : "UTF8SMTPS") : (s->auth_user ? "UTF8SMTPA" : "UTF8SMTP");
	struct buf h;
	buf_init(&h, 4096);
	buf_printf(&h, "Received: from %s ([%s])\r\n", s->helo[0] ? s->helo : "unknown", s->ip);
	if (s->tls) {
		SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
		buf_printf(&h, "\t(using %s with cipher %s)\r\n", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
	}
	buf_printf(&h, "\tby %s (mailroute) with %s id %s", s->cfg->hostname, proto, s->qid);
	if (s->rcpt_count == 1)
		buf_printf(&h, "\r\n\tfor <%s>", s->rcpts[0].address);
	buf_printf(&h, ";\r\n\t%s\r\n", date);
	/* Our own header does not count against the size limit. */
	buf_append(&s->spool_out, h.data, h.len);
	buf_deinit(&h);
}

/* ---- async answers ---- */

static void resume(struct smtp_session *s)
{
	s->waiting = false;
	if (s->state == ST_CLOSING)
		return;
	bufferevent_enable(s->bev, EV_READ);
	session_process(s);
}

static struct rcpt *rcpt_append(struct smtp_session *s, const char *address, char *orcpt, unsigned notify)
{
	if (s->rcpt_count == s->rcpt_alloc) {
		s->rcpt_alloc = s->rcpt_alloc ? s->rcpt_alloc * 2 : 4;
		s->rcpts = xreallocarray(s->rcpts, s->rcpt_alloc, sizeof(*s->rcpts));
	}
	struct rcpt *r = &s->rcpts[s->rcpt_count++];
	snprintf(r->address, sizeof(r->address), "%s", address);
	r->orcpt = orcpt;
	r->notify = notify;
	return r;
}

static void rcpt_add_pending(struct smtp_session *s)
{
	rcpt_append(s, s->pending_rcpt, s->pending_orcpt, s->pending_notify);
	s->pending_orcpt = NULL;
	reply(s, "250 2.1.5 Ok");
}

/* Is this a milter refusal (REJECT/TEMPFAIL with a reply)? Logs failures. */
static bool milter_refused(struct smtp_session *s, const char *stage, const struct milter_result *res)
{
	if (res->failed)
		log_warn("event=milter_error sid=%s stage=%s milter=%s error=\"%s\" action=%s", s->sid, stage,
		         res->milter ? res->milter : "?", res->error ? res->error : "?",
		         milter_decision_name(res->decision));
	if (res->decision != MILTER_REJECT && res->decision != MILTER_TEMPFAIL)
		return false;
	char q[300];
	log_info("event=milter_refused sid=%s stage=%s milter=%s reply=%s", s->sid, stage,
	         res->milter ? res->milter : "?", log_q(q, sizeof(q), res->reply ? res->reply : ""));
	return true;
}

static const char *milter_reply(const struct milter_result *res)
{
	if (res->reply != NULL && res->reply[0] != '\0') {
		/* A filter's reply goes out as one SMTP reply line: keep its first line, no control bytes. */
		static char one[512];
		size_t n = strcspn(res->reply, "\r\n");
		if (n >= sizeof(one))
			n = sizeof(one) - 1;
		memcpy(one, res->reply, n);
		one[n] = '\0';
		for (char *p = one; *p; p++)
			if ((unsigned char)*p < ' ' || *p == 0x7f)
				*p = ' ';
		if (n >= 4 && (one[0] == '4' || one[0] == '5') && one[3] == ' ')
			return one;
	}
	return res->decision == MILTER_REJECT ? "550 5.7.1 Command rejected" : "451 4.7.1 Service unavailable - try again later";
}

/* Split saved ESMTP parameters (modified in place) into args; returns the count. */
static size_t split_args(char *p, const char **args, size_t max)
{
	size_t n = 0;
	for (char *tok = p; *tok != '\0' && n < max;) {
		while (*tok == ' ')
			*tok++ = '\0';
		if (*tok == '\0')
			break;
		args[n++] = tok;
		while (*tok != '\0' && *tok != ' ')
			tok++;
	}
	return n;
}

static void on_milter_rcpt(void *arg, const struct milter_result *res)
{
	struct smtp_session *s = arg;
	if (s->state == ST_CLOSING) {
		s->waiting = false;
		return;
	}
	if (milter_refused(s, "rcpt", res)) {
		xfree(&s->pending_orcpt);
		reply(s, "%s", milter_reply(res));
	} else {
		if (res->decision == MILTER_DISCARD)
			s->milter_discard = true;
		rcpt_add_pending(s);
	}
	resume(s);
}

static void on_rcpt_checked(void *arg, int code, const char *enhanced, const char *text)
{
	struct smtp_session *s = arg;
	s->lreq = NULL;
	char q[300];
	log_info("event=rcpt sid=%s to=%s result=%d", s->sid, log_q(q, sizeof(q), s->pending_rcpt), code);
	if (code == 250 && s->milters != NULL) {
		char tmp[sizeof(s->rcpt_args)];
		const char *args[32];
		memcpy(tmp, s->rcpt_args, sizeof(tmp));
		size_t n = split_args(tmp, args, 32);
		milter_chain_rcpt(s->milters, s->pending_rcpt, args, n, on_milter_rcpt, s);
		return; /* still waiting */
	}
	if (code == 250) {
		rcpt_add_pending(s);
	} else {
		xfree(&s->pending_orcpt);
		reply(s, "%d %s %s", code, enhanced, text);
		if (code >= 500)
			count_error(s);
	}
	resume(s);
}

static void on_auth_checked(void *arg, enum lookup_status status, const char *user, const char *maildir)
{
	struct smtp_session *s = arg;
	s->lreq = NULL;
	char q[300];
	if (status == LOOKUP_OK) {
		s->auth_user = xstrdup(user);
		log_info("event=auth sid=%s user=%s result=ok", s->sid, log_q(q, sizeof(q), user));
		reply(s, "235 2.7.0 Authentication successful");
	} else if (status == LOOKUP_DENIED) {
		log_info("event=auth sid=%s result=failed", s->sid);
		reply(s, "535 5.7.8 Error: authentication failed");
		count_error(s);
	} else {
		reply(s, "454 4.7.0 Temporary authentication failure");
	}
	resume(s);
}

static void start_auth(struct smtp_session *s, const char *user, const char *pass)
{
	s->waiting = true;
	bufferevent_disable(s->bev, EV_READ);
	s->lreq = lookup_client_auth(s->srv->lookup, "smtp", user, pass, s->ip, on_auth_checked, s);
}

static void on_committed(void *arg, struct ipc_reader *r, int fd)
{
	struct smtp_session *s = arg;
	s->qcall = NULL;
	if (fd >= 0)
		close(fd);
	bool ok = false;
	char error[512] = "queue unavailable", enhanced[16] = "4.3.0";
	int code = 451;
	if (r != NULL) {
		ok = ipc_get_u32(r) == 1;
		ipc_get_str(r, error, sizeof(error));
		code = (int)ipc_get_u32(r);
		ipc_get_str(r, enhanced, sizeof(enhanced));
		if (ipc_reader_end(r) < 0 || r->type != PROTO_QUEUE_COMMIT_R)
			log_panic("event=ipc_malformed type=%u", r->type);
	}
	if (s->state == ST_CLOSING) {
		/* 421 already sent (timeout): the answer has nobody to go to; never reopen the session. */
		log_info("event=commit_after_close sid=%s id=%s ok=%s", s->sid, s->qid, ok ? "yes" : "no");
		s->qid[0] = '\0';
		s->waiting = false;
		return;
	}
	char q[300];
	if (ok) {
		s->messages++;
		log_info("event=queued sid=%s id=%s from=%s size=%llu rcpts=%zu", s->sid, s->qid,
		         log_q(q, sizeof(q), s->sender), (unsigned long long)s->msg_size, s->rcpt_count);
		reply(s, "250 2.0.0 Ok: queued as %s", s->qid);
		s->qid[0] = '\0'; /* committed: nothing to abort */
	} else if (code >= 400 && code <= 599 && !(code == 451 && strcmp(enhanced, "4.3.0") == 0)) {
		/* Refused by the system rules, with their code and text. */
		log_info("event=rejected sid=%s id=%s code=%d text=%s", s->sid, s->qid, code, log_q(q, sizeof(q), error));
		reply(s, "%d %s %s", code, enhanced, error);
	} else {
		log_warn("event=queue_failed sid=%s id=%s error=%s", s->sid, s->qid, log_q(q, sizeof(q), error));
		reply(s, "451 4.3.0 Error: queue file write error");
	}
	tx_reset(s);
	s->state = ST_CMD;
	if (s->srv->stopping) {
		reply(s, "421 4.3.2 %s Service shutting down", s->cfg->hostname);
		session_close(s);
		return;
	}
	resume(s);
}

static void commit_message(struct smtp_session *s);
static void session_filters(struct smtp_session *s);

static void on_authchecked(void *arg, enum lookup_mailauth_action action, int code, const char *enhanced,
                           const char *text, const char *headers)
{
	struct smtp_session *s = arg;
	s->lreq = NULL;
	if (s->state == ST_CLOSING || s->spool_fd < 0) {
		/* shut down (421) while the check ran: the transaction is gone */
		s->waiting = false;
		return;
	}
	if (action == LOOKUP_MAILAUTH_UNCHECKED) {
		log_warn("event=mailauth_unavailable sid=%s id=%s", s->sid, s->qid);
		if (s->auth_user != NULL)
			action = LOOKUP_MAILAUTH_REJECT; /* 451: the From: check must not be skipped */
		else
			headers = NULL; /* inbound: accept untagged rather than lose or delay it */
	}
	if (action == LOOKUP_MAILAUTH_REJECT) {
		char q[300];
		log_info("event=mailauth_rejected sid=%s id=%s from=%s code=%d", s->sid, s->qid,
		         log_q(q, sizeof(q), s->sender), code);
		reply(s, "%d %s %s", code, enhanced, text);
		tx_reset(s);
		resume(s);
		return;
	}
	if (action == LOOKUP_MAILAUTH_QUARANTINE)
		s->commit_flags |= PROTO_COMMIT_F_JUNK;
	if (headers != NULL && buf_append(&s->add_headers, headers, strlen(headers)) < 0)
		log_warn("event=add_headers_full sid=%s id=%s", s->sid, s->qid);
	session_filters(s);
}

/* ---- content filters: clamd, then rspamd, then the queue ---- */

static void filter_rspamd(struct smtp_session *s);
static void filter_milters(struct smtp_session *s);

static uint64_t spool_size(struct smtp_session *s)
{
	struct stat st;
	return fstat(s->spool_fd, &st) == 0 && st.st_size > 0 ? (uint64_t)st.st_size : 0;
}

/* A filter that failed: accept or 451, as configured. Returns true when the message goes on. */
static bool filter_failed(struct smtp_session *s, const char *name, bool accept, const char *why)
{
	log_warn("event=filter_error sid=%s id=%s filter=%s error=\"%s\" action=%s", s->sid, s->qid, name,
	         why ? why : "?", accept ? "accept" : "tempfail");
	if (accept)
		return true;
	reply(s, "451 4.7.0 Error: message could not be checked (%s unavailable), try again later", name);
	tx_reset(s);
	resume(s);
	return false;
}

static void on_clamd(void *arg, const struct clamd_result *res)
{
	struct smtp_session *s = arg;
	s->cscan = NULL;
	if (s->state == ST_CLOSING || s->spool_fd < 0) {
		s->waiting = false;
		return;
	}
	if (res->status == CLAMD_ERROR) {
		if (!filter_failed(s, "clamd", s->cfg->clamd.on_error_accept, res->error))
			return;
	} else if (res->status == CLAMD_INFECTED) {
		char q[300];
		log_info("event=virus sid=%s id=%s virus=%s action=%s", s->sid, s->qid, log_q(q, sizeof(q), res->virus),
		         s->cfg->clamd.quarantine ? "quarantine" : "reject");
		if (!s->cfg->clamd.quarantine) {
			reply(s, "554 5.7.1 Error: message rejected: virus found (%s)", log_q(q, sizeof(q), res->virus));
			tx_reset(s);
			resume(s);
			return;
		}
		s->commit_flags |= PROTO_COMMIT_F_QUARANTINE;
		char *h = xasprintf("X-Virus: %s\r\n", res->virus ? res->virus : "found");
		buf_append_str(&s->add_headers, h);
		free(h);
	}
	filter_rspamd(s);
}

static void on_rspamd(void *arg, const struct rspamd_result *res)
{
	struct smtp_session *s = arg;
	s->rcheck = NULL;
	if (s->state == ST_CLOSING || s->spool_fd < 0) {
		s->waiting = false;
		return;
	}
	char q[512];
	log_info("event=rspamd sid=%s id=%s verdict=%s score=%.2f required=%.2f symbols=%s", s->sid, s->qid,
	         rspamd_verdict_name(res->verdict), res->score, res->required_score,
	         log_q(q, sizeof(q), res->symbols ? res->symbols : ""));
	switch (res->verdict) {
	case RSPAMD_ERROR:
		if (!filter_failed(s, "rspamd", s->cfg->rspamd.on_error_accept, res->error))
			return;
		break;
	case RSPAMD_REJECT:
	case RSPAMD_SOFT_REJECT:
	case RSPAMD_GREYLIST: {
		bool perm = res->verdict == RSPAMD_REJECT;
		const char *text = res->smtp_text && res->smtp_text[0] ? res->smtp_text
		                   : perm ? "Spam message rejected" : "Try again later";
		char clean[300];
		snprintf(clean, sizeof(clean), "%s", text);
		for (char *p = clean; *p; p++)
			if ((unsigned char)*p < ' ')
				*p = ' ';
		reply(s, "%d %s %s", res->smtp_code ? res->smtp_code : perm ? 554 : 451,
		      res->smtp_enhanced ? res->smtp_enhanced : perm ? "5.7.1" : "4.7.1", clean);
		tx_reset(s);
		resume(s);
		return;
	}
	case RSPAMD_SPAM:
	case RSPAMD_REWRITE_SUBJECT:
		if (res->verdict == RSPAMD_REWRITE_SUBJECT && res->subject != NULL)
			edit_add(s, "Subject", 1, res->subject);
		s->commit_flags |= PROTO_COMMIT_F_JUNK;
		buf_printf(&s->add_headers, "X-Spam: Yes\r\nX-Spam-Score: %.2f / %.2f\r\n", res->score, res->required_score);
		break;
	case RSPAMD_ACCEPT:
		break;
	}
	for (size_t i = 0; i < res->remove_count; i++)
		edit_add(s, res->remove_headers[i].name, (uint32_t)res->remove_headers[i].order, NULL);
	for (size_t i = 0; i < res->add_count; i++) {
		const struct rspamd_header *h = &res->add_headers[i];
		if (h->name == NULL || h->value == NULL || strpbrk(h->name, ": \r\n") != NULL)
			continue;
		char *line = xasprintf("%s: %s\r\n", h->name, h->value);
		for (char *p = line; p[2] != '\0'; p++)
			if (*p == '\r' || *p == '\n')
				*p = ' ';
		buf_append_str(&s->add_headers, line);
		free(line);
	}
	filter_milters(s);
}

static void filter_rspamd(struct smtp_session *s)
{
	if (s->cfg->rspamd.address == NULL) {
		filter_milters(s);
		return;
	}
	const char *rcpts[1024];
	size_t n = 0;
	for (size_t i = 0; i < s->rcpt_count && n < 1024; i++)
		rcpts[n++] = s->rcpts[i].address;
	struct rspamd_settings set = { .url = s->cfg->rspamd.address, .timeout_ms = s->cfg->rspamd.timeout * 1000,
		                       .max_size = s->cfg->rspamd.max_size };
	struct rspamd_request req = { .ip = s->ip, .helo = s->helo, .from = s->sender, .rcpts = rcpts,
		                      .rcpt_count = n, .queue_id = s->qid, .user = s->auth_user };
	s->waiting = true;
	bufferevent_disable(s->bev, EV_READ);
	s->rcheck = rspamd_check_start(s->srv->base, &set, &req, s->spool_fd, spool_size(s), on_rspamd, s);
}

/* "<a@b>" or "a@b" -> a@b into out. false when it does not fit or holds CR/LF/space/brackets. */
static bool milter_address(const char *in, char *out, size_t size)
{
	if (in == NULL)
		return false;
	size_t n = strlen(in);
	if (n >= 2 && in[0] == '<' && in[n - 1] == '>') {
		in++;
		n -= 2;
	}
	if (n >= size || memchr(in, '\r', n) || memchr(in, '\n', n) || memchr(in, ' ', n) || memchr(in, '<', n) ||
	    memchr(in, '>', n))
		return false;
	memcpy(out, in, n);
	out[n] = '\0';
	return true;
}

/* A header field from a milter into add_headers: LF line breaks become CRLF folds. */
static void milter_add_header(struct smtp_session *s, const char *name, const char *value)
{
	if (name == NULL || name[0] == '\0' || strpbrk(name, ": \t\r\n") != NULL || value == NULL) {
		log_warn("event=milter_bad_header sid=%s id=%s", s->sid, s->qid);
		return;
	}
	struct buf h;
	buf_init(&h, 65536);
	bool ok = buf_printf(&h, "%s: ", name) == 0;
	for (const char *p = value; *p != '\0' && ok; p++) {
		if (*p == '\r')
			continue;
		if (*p == '\n') {
			ok = buf_append(&h, "\r\n", 2) == 0;
			if (ok && p[1] != ' ' && p[1] != '\t')
				ok = buf_append_c(&h, '\t') == 0;
			continue;
		}
		ok = buf_append_c(&h, *p) == 0;
	}
	if (ok)
		ok = buf_append(&h, "\r\n", 2) == 0;
	if (!ok || buf_append(&s->add_headers, h.data, h.len) < 0)
		log_warn("event=add_headers_full sid=%s id=%s", s->sid, s->qid);
	buf_deinit(&h);
}

/*
 * Apply a milter's end-of-message modifications that need no rewrite of the
 * spool: header additions (prepended at delivery), recipients, sender,
 * quarantine. Header changes/deletions and body replacement are logged as
 * unsupported.
 */
static void milter_apply(struct smtp_session *s, const struct milter_result *res)
{
	char q[300], addr[ADDR_MAX];
	for (size_t i = 0; i < res->mod_count; i++) {
		const struct milter_mod *m = &res->mods[i];
		const char *who = m->milter ? m->milter : "?";
		switch (m->type) {
		case MILTER_MOD_ADD_HEADER:
		case MILTER_MOD_INSERT_HEADER:
			milter_add_header(s, m->name, m->value);
			break;
		case MILTER_MOD_ADD_RCPT:
			if (!milter_address(m->name, addr, sizeof(addr)) || addr[0] == '\0') {
				log_warn("event=milter_bad_rcpt sid=%s id=%s milter=%s", s->sid, s->qid, who);
				break;
			}
			log_info("event=milter_add_rcpt sid=%s id=%s milter=%s to=%s", s->sid, s->qid, who,
			         log_q(q, sizeof(q), addr));
			rcpt_append(s, addr, NULL, 0);
			break;
		case MILTER_MOD_DEL_RCPT:
			if (!milter_address(m->name, addr, sizeof(addr)))
				break;
			for (size_t j = 0; j < s->rcpt_count; j++) {
				if (strcasecmp(s->rcpts[j].address, addr) != 0)
					continue;
				log_info("event=milter_del_rcpt sid=%s id=%s milter=%s to=%s", s->sid, s->qid, who,
				         log_q(q, sizeof(q), addr));
				free(s->rcpts[j].orcpt);
				memmove(&s->rcpts[j], &s->rcpts[j + 1], (s->rcpt_count - j - 1) * sizeof(*s->rcpts));
				s->rcpt_count--;
				j--;
			}
			break;
		case MILTER_MOD_CHANGE_FROM:
			if (!milter_address(m->name, addr, sizeof(addr))) {
				log_warn("event=milter_bad_sender sid=%s id=%s milter=%s", s->sid, s->qid, who);
				break;
			}
			log_info("event=milter_change_from sid=%s id=%s milter=%s from=%s", s->sid, s->qid, who,
			         log_q(q, sizeof(q), addr));
			snprintf(s->sender, sizeof(s->sender), "%s", addr);
			break;
		case MILTER_MOD_QUARANTINE:
			log_info("event=milter_quarantine sid=%s id=%s milter=%s reason=%s", s->sid, s->qid, who,
			         log_q(q, sizeof(q), m->value ? m->value : ""));
			s->commit_flags |= PROTO_COMMIT_F_QUARANTINE;
			break;
		case MILTER_MOD_CHANGE_HEADER:
			/* index 0 from a milter means the first occurrence (libmilter counts from 1) */
			edit_add(s, m->name, m->index ? m->index : 1, m->value);
			break;
		case MILTER_MOD_REPLACE_BODY:
			free(s->new_body);
			s->new_body = xmemdup(m->body ? m->body : "", m->body_len);
			s->new_body_len = m->body_len;
			break;
		}
	}
}

static void on_milter_message(void *arg, const struct milter_result *res)
{
	struct smtp_session *s = arg;
	if (s->state == ST_CLOSING || s->spool_fd < 0) {
		s->waiting = false;
		return;
	}
	if (milter_refused(s, "message", res)) {
		reply(s, "%s", milter_reply(res));
		tx_reset(s);
		resume(s);
		return;
	}
	if (res->decision != MILTER_DISCARD && !s->milter_discard)
		milter_apply(s, res);
	if (res->decision == MILTER_DISCARD || s->milter_discard || s->rcpt_count == 0) {
		log_info("event=discarded sid=%s id=%s milter=%s", s->sid, s->qid, res->milter ? res->milter : "?");
		reply(s, "250 2.0.0 Ok: discarded");
		tx_reset(s);
		resume(s);
		return;
	}
	commit_message(s);
}

static void on_milter_late_data(void *arg, const struct milter_result *res)
{
	struct smtp_session *s = arg;
	if (s->state == ST_CLOSING || s->spool_fd < 0) {
		s->waiting = false;
		return;
	}
	if (milter_refused(s, "data", res)) {
		reply(s, "%s", milter_reply(res));
		tx_reset(s);
		resume(s);
		return;
	}
	if (res->decision == MILTER_DISCARD)
		s->milter_discard = true;
	s->milter_data_done = true;
	filter_milters(s);
}

/* End of data, after clamd and rspamd: the milters' DATA (BDAT only) and message stages, then commit. */
static void filter_milters(struct smtp_session *s)
{
	if (s->milters == NULL) {
		commit_message(s);
		return;
	}
	s->waiting = true;
	bufferevent_disable(s->bev, EV_READ);
	if (!s->milter_data_done) {
		milter_chain_data(s->milters, s->qid, on_milter_late_data, s);
		return;
	}
	milter_chain_message(s->milters, s->spool_fd, spool_size(s), s->qid, on_milter_message, s);
}

/* The chain after sender authentication: clamd, rspamd, the milters, then commit_message(). */
static void session_filters(struct smtp_session *s)
{
	if (s->cfg->clamd.address == NULL) {
		filter_rspamd(s);
		return;
	}
	struct clamd_settings set = { .address = s->cfg->clamd.address, .timeout_ms = s->cfg->clamd.timeout * 1000,
		                      .max_size = s->cfg->clamd.max_size };
	s->waiting = true;
	bufferevent_disable(s->bev, EV_READ);
	s->cscan = clamd_scan_start(s->srv->base, &set, s->spool_fd, spool_size(s), on_clamd, s);
}

/*
 * Sender authentication at the end of data (issue 6), in the lookup role:
 * inbound (mx listener, mail_auth on): SPF, DKIM, ARC, DMARC -> reject,
 * quarantine (Junk) or accept with Authentication-Results; authenticated
 * senders: the From: check (553 5.7.1) and DKIM signing. Then commit_message().
 * Content filters chain after this one (call them instead of commit_message).
 */
static void session_authcheck(struct smtp_session *s)
{
	s->commit_flags = 0;
	if (s->dnsbl_tag != NULL)
		buf_printf(&s->add_headers, "X-DNSBL: %s\r\n", s->dnsbl_tag);
	bool inbound = s->kind == LISTEN_MX && s->cfg->mailauth.verify;
	if (s->auth_user == NULL && !inbound) {
		session_filters(s);
		return;
	}
	s->waiting = true;
	bufferevent_disable(s->bev, EV_READ);
	s->lreq = lookup_client_mailauth(s->srv->lookup, s->ip, s->helo, s->sender, s->auth_user, (int)s->kind,
	                                 s->spool_fd, on_authchecked, s);
}

/* The content is complete: commit it or refuse it. */
static void finish_message(struct smtp_session *s)
{
	s->state = ST_CMD;
	if (s->bad_content) {
		reply(s, "554 5.6.0 Error: message contains bare CR or LF");
		tx_reset(s);
		return;
	}
	if (s->too_big) {
		reply(s, "552 5.3.4 Error: message too big (limit %zu bytes)", s->cfg->limits.max_message_size);
		tx_reset(s);
		return;
	}
	if (s->hops > MAX_HOPS) {
		reply(s, "554 5.4.6 Error: too many hops (%u Received headers): mail loop?", s->hops);
		tx_reset(s);
		return;
	}
	spool_flush(s);
	if (s->write_failed) {
		reply(s, "451 4.3.0 Error: queue file write error");
		tx_reset(s);
		return;
	}
	session_authcheck(s);
}

/* The content is accepted: hand the recipients and the envelope to the queue. */
/* ---- spool edits asked by filters (milter header changes and body replacement, rspamd) ---- */

struct spool_edit {
	char *name;      /* header field name */
	uint32_t index;  /* 1-based occurrence; 0 = every occurrence */
	char *value;     /* new value; NULL or "" = delete the field */
};

static void edit_add(struct smtp_session *s, const char *name, uint32_t index, const char *value)
{
	if (s->edit_count >= 64 || name == NULL || strpbrk(name, ": \r\n") != NULL)
		return;
	s->edits = xreallocarray(s->edits, s->edit_count + 1, sizeof(*s->edits));
	s->edits[s->edit_count++] = (struct spool_edit){ .name = xstrdup(name), .index = index,
		                                          .value = value && value[0] ? xstrdup(value) : NULL };
}

static void edits_clear(struct smtp_session *s)
{
	for (size_t i = 0; i < s->edit_count; i++) {
		free(s->edits[i].name);
		free(s->edits[i].value);
	}
	xfree(&s->edits);
	s->edit_count = 0;
	xfree(&s->new_body);
	s->new_body_len = 0;
}

/*
 * Rewrite the spool file in place with the filters' edits: the session still
 * holds the descriptor and nothing is acknowledged yet (the queue syncs the
 * file at commit). Header fields are matched by name and occurrence in the
 * file as the filters saw it (our Received: first). -1 on an I/O error.
 */
static int spool_rewrite(struct smtp_session *s)
{
	struct stat st;
	if (fstat(s->spool_fd, &st) < 0 || (uint64_t)st.st_size > s->cfg->limits.max_message_size + (1u << 20))
		return -1;
	size_t len = (size_t)st.st_size;
	char *old = xmalloc(len + 1);
	size_t off = 0;
	while (off < len) {
		ssize_t r = pread(s->spool_fd, old + off, len - off, (off_t)off);
		if (r <= 0) {
			free(old);
			return -1;
		}
		off += (size_t)r;
	}
	old[len] = '\0';
	char *end = strstr(old, "\r\n\r\n");
	size_t hlen = end ? (size_t)(end - old) + 2 : len; /* header fields incl. the last CRLF */
	struct buf out;
	buf_init(&out, len + s->new_body_len + 65536 + s->cfg->limits.max_message_size);
	uint32_t seen[64] = { 0 };
	for (size_t i = 0; i < hlen;) {
		size_t e = i;
		do {
			char *nl = memchr(old + e, '\n', hlen - e);
			e = nl ? (size_t)(nl - old) + 1 : hlen;
		} while (e < hlen && (old[e] == ' ' || old[e] == '\t'));
		const char *colon = memchr(old + i, ':', e - i);
		bool dropped = false;
		for (size_t k = 0; colon != NULL && k < s->edit_count && !dropped; k++) {
			const struct spool_edit *ed = &s->edits[k];
			size_t nl = strlen(ed->name);
			if ((size_t)(colon - (old + i)) != nl || strncasecmp(old + i, ed->name, nl) != 0)
				continue;
			seen[k]++;
			if (ed->index != 0 && ed->index != seen[k])
				continue;
			dropped = true;
			if (ed->value != NULL)
				buf_printf(&out, "%s: %s\r\n", ed->name, ed->value);
		}
		if (!dropped)
			buf_append(&out, old + i, e - i);
		i = e;
	}
	if (s->new_body != NULL) {
		buf_append(&out, "\r\n", 2);
		buf_append(&out, s->new_body, s->new_body_len);
		if (s->new_body_len >= 2 && memcmp(s->new_body + s->new_body_len - 2, "\r\n", 2) != 0)
			buf_append(&out, "\r\n", 2);
	} else if (hlen < len) {
		buf_append(&out, old + hlen, len - hlen);
	}
	free(old);
	int rc = 0;
	if (ftruncate(s->spool_fd, 0) < 0)
		rc = -1;
	for (size_t w = 0; rc == 0 && w < out.len;) {
		ssize_t n = pwrite(s->spool_fd, out.data + w, out.len - w, (off_t)w);
		if (n <= 0)
			rc = -1;
		else
			w += (size_t)n;
	}
	log_info("event=spool_edited sid=%s id=%s edits=%zu body_replaced=%s size=%zu", s->sid, s->qid,
	         s->edit_count, s->new_body ? "yes" : "no", out.len);
	buf_deinit(&out);
	return rc;
}

static void commit_message(struct smtp_session *s)
{
	if ((s->edit_count > 0 || s->new_body != NULL) && spool_rewrite(s) < 0) {
		log_warn("event=spool_edit_failed sid=%s id=%s error=\"%s\"", s->sid, s->qid, strerror(errno));
		reply(s, "451 4.3.0 Error: queue file write error");
		tx_reset(s);
		resume(s);
		return;
	}
	edits_clear(s);
	close(s->spool_fd);
	s->spool_fd = -1;
	for (size_t i = 0; i < s->rcpt_count; i++) {
		struct ipc_msg m;
		ipc_msg_init(&m, PROTO_QUEUE_RCPT, 0);
		ipc_put_str(&m, s->qid);
		ipc_put_str(&m, s->rcpts[i].address);
		ipc_put_str(&m, s->rcpts[i].orcpt);
		ipc_put_u32(&m, s->rcpts[i].notify);
		ipc_client_send(s->srv->queue, &m);
		ipc_msg_deinit(&m);
	}
	struct ipc_msg m;
	ipc_msg_init(&m, PROTO_QUEUE_COMMIT, 0);
	ipc_put_str(&m, s->qid);
	ipc_put_str(&m, s->sender);
	ipc_put_u64(&m, 0); /* the queue takes the size from the spool file */
	ipc_put_str(&m, s->mail.envid[0] ? s->mail.envid : NULL);
	ipc_put_u32(&m, (uint32_t)s->mail.ret);
	ipc_put_str(&m, s->helo);
	ipc_put_str(&m, s->ip);
	ipc_put_str(&m, s->auth_user);
	ipc_put_u32(&m, s->mail.smtputf8);
	ipc_put_u32(&m, (uint32_t)s->mail.body);
	ipc_put_str(&m, s->add_headers.len > 0 ? s->add_headers.data : NULL);
	ipc_put_u32(&m, s->commit_flags);
	s->waiting = true;
	bufferevent_disable(s->bev, EV_READ);
	s->qcall = ipc_client_call(s->srv->queue, &m, on_committed, s);
	ipc_msg_deinit(&m);
}

static void data_start(struct smtp_session *s)
{
	smtp_data_reader_init(&s->dr);
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
	struct timeval tv = { s->cfg->limits.data_timeout, 0 };
	bufferevent_set_timeouts(s->bev, &tv, &tv);
}

static void on_milter_data(void *arg, const struct milter_result *res)
{
	struct smtp_session *s = arg;
	if (s->state == ST_CLOSING || s->spool_fd < 0) {
		s->waiting = false;
		return;
	}
	s->milter_data_done = true;
	if (milter_refused(s, "data", res)) {
		reply(s, "%s", milter_reply(res));
		tx_reset(s);
		s->state = ST_CMD;
	} else {
		if (res->decision == MILTER_DISCARD)
			s->milter_discard = true;
		data_start(s);
	}
	resume(s);
}

static void on_spool_opened(void *arg, struct ipc_reader *r, int fd)
{
	struct smtp_session *s = arg;
	s->qcall = NULL;
	bool ok = false;
	char id[64] = "";
	if (r != NULL) {
		ok = ipc_get_u32(r) == 1;
		ipc_get_str(r, id, sizeof(id));
		if (ipc_reader_end(r) < 0 || r->type != PROTO_QUEUE_OPEN_R)
			log_panic("event=ipc_malformed type=%u", r->type);
	}
	if (s->state == ST_CLOSING) {
		/* The session ended while the spool file was being made: give it back. */
		if (fd >= 0)
			close(fd);
		if (ok) {
			memcpy(s->qid, id, sizeof(s->qid));
			spool_abort(s);
		}
		s->waiting = false;
		return;
	}
	if (!ok || fd < 0) {
		if (fd >= 0)
			close(fd);
		log_warn("event=spool_open_failed sid=%s error=\"%s\"", s->sid, id);
		if (s->state == ST_BDAT) {
			s->bdat_discard = true;
			s->bdat_code = 451;
			s->bdat_text = "4.3.0 Error: queue file write error";
		} else {
			reply(s, "451 4.3.0 Error: queue file write error");
			s->state = ST_CMD;
		}
		resume(s);
		return;
	}
	memcpy(s->qid, id, sizeof(s->qid));
	s->spool_fd = fd;
	write_received(s);
	if (s->state == ST_DATA && s->milters != NULL) {
		milter_chain_data(s->milters, s->qid, on_milter_data, s);
		return; /* 354 after the milters */
	}
	if (s->state == ST_DATA)
		data_start(s);
	resume(s);
}

static void open_spool(struct smtp_session *s)
{
	struct ipc_msg m;
	ipc_msg_init(&m, PROTO_QUEUE_OPEN, 0);
	s->waiting = true;
	bufferevent_disable(s->bev, EV_READ);
	s->qcall = ipc_client_call(s->srv->queue, &m, on_spool_opened, s);
	ipc_msg_deinit(&m);
}

/* ---- commands ---- */

static bool auth_allowed(struct smtp_session *s)
{
	return (s->kind == LISTEN_SUBMISSION || s->kind == LISTEN_SUBMISSIONS) &&
	       (s->tls || s->cfg->auth_allow_plaintext);
}

static bool starttls_allowed(struct smtp_session *s)
{
	return !s->tls && s->srv->env->tls != NULL;
}

static void on_milter_helo(void *arg, const struct milter_result *res);
static void ehlo_reply(struct smtp_session *s);

static void cmd_ehlo(struct smtp_session *s, const struct smtp_command *c, bool ehlo)
{
	tx_reset(s);
	size_t n = c->arg.len < sizeof(s->helo) - 1 ? c->arg.len : sizeof(s->helo) - 1;
	memcpy(s->helo, c->arg.data, n);
	s->helo[n] = '\0';
	s->ehlo = ehlo;
	if (s->milters != NULL) {
		s->waiting = true;
		bufferevent_disable(s->bev, EV_READ);
		milter_chain_helo(s->milters, s->helo, s->tls ? SSL_get_version(bufferevent_openssl_get_ssl(s->bev)) : NULL,
		                  on_milter_helo, s);
		return;
	}
	ehlo_reply(s);
}

static void on_milter_helo(void *arg, const struct milter_result *res)
{
	struct smtp_session *s = arg;
	if (s->state == ST_CLOSING) {
		s->waiting = false;
		return;
	}
	if (milter_refused(s, "helo", res)) {
		/* Refused at HELO: this and every later command get the milter's reply. */
		s->refuse_reply = xstrdup(milter_reply(res));
		reply(s, "%s", s->refuse_reply);
	} else {
		ehlo_reply(s);
	}
	resume(s);
}

static void ehlo_reply(struct smtp_session *s)
{
	if (!s->ehlo) {
		reply(s, "250 %s", s->cfg->hostname);
		return;
	}
	reply(s, "250-%s", s->cfg->hostname);
	reply(s, "250-PIPELINING");
	reply(s, "250-SIZE %zu", s->cfg->limits.max_message_size);
	if (starttls_allowed(s))
		reply(s, "250-STARTTLS");
	if (auth_allowed(s) && s->auth_user == NULL)
		reply(s, "250-AUTH PLAIN LOGIN");
	reply(s, "250-ENHANCEDSTATUSCODES");
	reply(s, "250-8BITMIME");
	reply(s, "250-DSN");
	reply(s, "250-SMTPUTF8");
	reply(s, "250 CHUNKING");
}

static void cmd_starttls(struct smtp_session *s)
{
	if (!starttls_allowed(s)) {
		reply(s, s->tls ? "554 5.5.1 Error: TLS already active" : "502 5.5.1 Error: command not implemented");
		count_error(s);
		return;
	}
	if (s->in_mail) {
		reply(s, "503 5.5.1 Error: MAIL transaction in progress");
		count_error(s);
		return;
	}
	SSL *ssl = SSL_new(s->srv->env->tls);
	if (ssl == NULL) {
		reply(s, "454 4.7.0 TLS not available due to temporary reason");
		return;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
	/* Anything pipelined after STARTTLS was sent in clear: discard it (CVE-2011-0411). */
	struct evbuffer *in = bufferevent_get_input(s->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	smtp_line_reader_reset(&s->lr);
	/* From now on the TLS filter keeps the time; a timeout left on the socket would cut it off. */
	bufferevent_set_timeouts(s->bev, NULL, NULL);
	struct bufferevent *tlsbev = bufferevent_openssl_filter_new(s->srv->base, s->bev, ssl,
	                                                            BUFFEREVENT_SSL_ACCEPTING,
	                                                            BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (tlsbev == NULL) {
		session_close(s);
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tlsbev, 1);
	s->bev = tlsbev;
	session_install_callbacks(s);
	s->tls = true;
	/* RFC 3207: forget everything learnt before TLS. */
	xfree(&s->auth_user);
	s->helo[0] = '\0';
	s->ehlo = false;
	tx_reset(s);
}

static void cmd_auth(struct smtp_session *s, const struct smtp_command *c)
{
	if (!(s->kind == LISTEN_SUBMISSION || s->kind == LISTEN_SUBMISSIONS)) {
		reply(s, "503 5.5.1 Error: authentication not enabled");
		count_error(s);
		return;
	}
	if (!s->tls && !s->cfg->auth_allow_plaintext) {
		reply(s, "538 5.7.11 Encryption required for requested authentication mechanism");
		count_error(s);
		return;
	}
	if (s->auth_user != NULL) {
		reply(s, "503 5.5.1 Error: already authenticated");
		count_error(s);
		return;
	}
	if (s->in_mail) {
		reply(s, "503 5.5.1 Error: MAIL transaction in progress");
		count_error(s);
		return;
	}
	if (smtp_view_eq_icase(c->auth_mech, "PLAIN")) {
		if (c->auth_initial.data == NULL) {
			s->state = ST_AUTH_PLAIN;
			reply(s, "334 ");
			return;
		}
		session_auth_plain(s, c->auth_initial.data, c->auth_initial.len);
	} else if (smtp_view_eq_icase(c->auth_mech, "LOGIN")) {
		if (c->auth_initial.data != NULL) {
			s->state = ST_AUTH_LOGIN_USER;
			session_auth_login(s, c->auth_initial.data, c->auth_initial.len);
			return;
		}
		s->state = ST_AUTH_LOGIN_USER;
		reply(s, "334 VXNlcm5hbWU6");
	} else {
		reply(s, "504 5.5.4 Error: unsupported authentication mechanism");
		count_error(s);
	}
}

static char *decode_b64(const char *p, size_t n, size_t *len_r)
{
	if (n > 4096)
		return NULL;
	char *out = xmalloc(n / 4 * 3 + 1);
	long r = base64_decode(p, n, (unsigned char *)out);
	if (r < 0) {
		free(out);
		return NULL;
	}
	*len_r = (size_t)r;
	return out;
}

static void session_auth_plain(struct smtp_session *s, const char *p, size_t n)
{
	s->state = ST_CMD;
	if (n == 1 && p[0] == '*') {
		reply(s, "501 5.7.0 Authentication aborted");
		count_error(s);
		return;
	}
	size_t len;
	char *d = decode_b64(p, n, &len);
	if (d == NULL) {
		reply(s, "501 5.5.2 Error: invalid base64 data");
		count_error(s);
		return;
	}
	/* authzid NUL authcid NUL passwd */
	char *authcid = memchr(d, '\0', len);
	char *pass = authcid ? memchr(authcid + 1, '\0', len - (size_t)(authcid + 1 - d)) : NULL;
	if (authcid == NULL || pass == NULL || memchr(pass + 1, '\0', len - (size_t)(pass + 1 - d)) != NULL) {
		secret_zero(d, len);
		free(d);
		reply(s, "501 5.5.2 Error: malformed PLAIN response");
		count_error(s);
		return;
	}
	authcid++;
	pass++;
	if (d[0] != '\0' && strcasecmp(d, authcid) != 0) {
		secret_zero(d, len);
		free(d);
		reply(s, "535 5.7.8 Error: authorization identity not allowed");
		count_error(s);
		return;
	}
	start_auth(s, authcid, pass);
	secret_zero(d, len);
	free(d);
}

static void session_auth_login(struct smtp_session *s, const char *p, size_t n)
{
	if (n == 1 && p[0] == '*') {
		s->state = ST_CMD;
		secret_free(s->auth_login_user);
		s->auth_login_user = NULL;
		reply(s, "501 5.7.0 Authentication aborted");
		count_error(s);
		return;
	}
	size_t len;
	char *d = decode_b64(p, n, &len);
	if (d == NULL || memchr(d, '\0', len) != NULL) {
		s->state = ST_CMD;
		if (d != NULL)
			secret_free(d);
		secret_free(s->auth_login_user);
		s->auth_login_user = NULL;
		reply(s, "501 5.5.2 Error: invalid base64 data");
		count_error(s);
		return;
	}
	if (s->state == ST_AUTH_LOGIN_USER) {
		s->auth_login_user = d;
		s->state = ST_AUTH_LOGIN_PASS;
		reply(s, "334 UGFzc3dvcmQ6");
		return;
	}
	s->state = ST_CMD;
	start_auth(s, s->auth_login_user, d);
	secret_free(d);
	secret_free(s->auth_login_user);
	s->auth_login_user = NULL;
}

static void mail_ok(struct smtp_session *s)
{
	s->in_mail = true;
	char q[300];
	log_info("event=mail sid=%s from=%s", s->sid, log_q(q, sizeof(q), s->sender));
	reply(s, "250 2.1.0 Ok");
}

static void mail_refused(struct smtp_session *s, int code, const char *enhanced, const char *text)
{
	char q[300];
	log_info("event=mail_refused sid=%s from=%s code=%d", s->sid, log_q(q, sizeof(q), s->sender), code);
	s->sender[0] = '\0';
	memset(&s->mail, 0, sizeof(s->mail));
	if (enhanced != NULL)
		reply(s, "%d %s %s", code, enhanced, text);
	else
		reply(s, "%s", text); /* a whole reply (milters) */
	if (code >= 500)
		count_error(s);
}

static void on_milter_mail(void *arg, const struct milter_result *res)
{
	struct smtp_session *s = arg;
	if (s->state == ST_CLOSING) {
		s->waiting = false;
		return;
	}
	if (milter_refused(s, "mail", res)) {
		mail_refused(s, res->code, NULL, milter_reply(res));
		milter_chain_abort(s->milters);
		s->milter_tx = false;
	} else {
		if (res->decision == MILTER_DISCARD)
			s->milter_discard = true;
		mail_ok(s);
	}
	resume(s);
}

/* The milters' MAIL stage. true: done now (the reply is given); false: waiting for the chain. */
static bool mail_stage_milter(struct smtp_session *s)
{
	if (s->milters == NULL) {
		mail_ok(s);
		return true;
	}
	char tmp[sizeof(s->mail_args)];
	const char *args[32];
	memcpy(tmp, s->mail_args, sizeof(tmp));
	size_t n = split_args(tmp, args, 32);
	s->milter_tx = true;
	s->waiting = true;
	bufferevent_disable(s->bev, EV_READ);
	milter_chain_mail(s->milters, s->sender, args, n, s->auth_user, on_milter_mail, s);
	return false;
}

static void on_rhsbl_checked(void *arg, int score, const char *first_zone, const char *hits, unsigned failed)
{
	struct smtp_session *s = arg;
	s->lreq = NULL;
	char q[300];
	int total = s->dnsbl_score + score;
	log_info("event=rhsbl sid=%s ip=%s from=%s score=%d total=%d hits=%s failed=%u", s->sid, s->ip,
	         log_q(q, sizeof(q), s->sender), score, total, hits, failed);
	if (score > 0 && first_zone != NULL && total >= (int)s->cfg->dnsbl.threshold) {
		if (!s->cfg->dnsbl.tag) {
			char text[400];
			snprintf(text, sizeof(text), "Service unavailable; sender domain listed at %s", first_zone);
			mail_refused(s, 554, "5.7.1", text);
			resume(s);
			return;
		}
		char *old = s->dnsbl_tag;
		if (old == NULL || (strstr(old, hits) == NULL && strlen(old) < 1000)) {
			s->dnsbl_tag = xasprintf("%s%s%s (score %d)", old ? old : "", old ? "; " : "", hits, total);
			free(old);
		}
	}
	if (mail_stage_milter(s))
		resume(s);
}

/*
 * MAIL passed the sender checks: RHSBL (mx, unauthenticated) and the milters.
 * true: the reply is given now; false: a check is running (waiting is set).
 */
static bool mail_accepted(struct smtp_session *s)
{
	bool rhs = false;
	for (size_t i = 0; i < s->cfg->dnsbl.zones_count; i++)
		rhs |= s->cfg->dnsbl.zones[i].rhsbl;
	const char *at = strrchr(s->sender, '@');
	const char *domain = at != NULL ? at + 1 : strchr(s->helo, '.') != NULL && s->helo[0] != '[' ? s->helo : NULL;
	if (rhs && s->kind == LISTEN_MX && s->auth_user == NULL && domain != NULL && domain[0] != '\0') {
		s->waiting = true;
		bufferevent_disable(s->bev, EV_READ);
		s->lreq = lookup_client_dnsbl(s->srv->lookup, s->ip, domain, on_rhsbl_checked, s);
		return false;
	}
	return mail_stage_milter(s);
}

static void on_sender_checked(void *arg, int code, const char *enhanced, const char *text)
{
	struct smtp_session *s = arg;
	s->lreq = NULL;
	if (code == 250) {
		if (!mail_accepted(s))
			return;
	} else {
		mail_refused(s, code, enhanced, text);
	}
	resume(s);
}

static void on_spf_checked(void *arg, const char *result, int code, const char *enhanced, const char *text,
                           const char *authres)
{
	struct smtp_session *s = arg;
	s->lreq = NULL;
	if (code == 250) {
		if (!mail_accepted(s))
			return;
	} else {
		mail_refused(s, code, enhanced, text);
	}
	resume(s);
}

/* ---- rate limits (per smtp process) ---- */

static struct ratelimit *session_ratelimit(void)
{
	static struct ratelimit *rl;
	if (rl == NULL)
		rl = ratelimit_new(100000);
	return rl;
}

/* true: allowed (or no limit); false: limited, *retry_r seconds to wait. */
static bool rate_take(struct smtp_session *s, const char *rule, const char *key, const struct conf_rate *rate,
                      unsigned *retry_r)
{
	*retry_r = 0;
	if (rate->limit == 0)
		return true;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	if (ratelimit_take(session_ratelimit(), rule, key, rate->limit, rate->per, 1, now, retry_r) != 0)
		return true;
	char q[300];
	log_info("event=rate_limited sid=%s ip=%s rule=%s key=%s limit=%u/%u retry_in=%u", s->sid, s->ip, rule,
	         log_q(q, sizeof(q), key), rate->limit, rate->per, *retry_r);
	return false;
}

/* Copy the ESMTP parameters after the path of MAIL/RCPT (for the milters). */
static void save_args(const struct smtp_command *c, char *out, size_t size)
{
	out[0] = '\0';
	const char *p = c->path.data + c->path.len, *end = c->arg.data + c->arg.len;
	if (c->path.data == NULL || p < c->arg.data || p > end)
		return;
	while (p < end && *p == ' ')
		p++;
	size_t n = (size_t)(end - p);
	if (n >= size)
		n = 0; /* too long for the milters: none rather than a cut one */
	memcpy(out, p, n);
	out[n] = '\0';
}

static void cmd_mail(struct smtp_session *s, const struct smtp_command *c)
{
	if (s->helo[0] == '\0') {
		reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		count_error(s);
		return;
	}
	if (s->in_mail) {
		reply(s, "503 5.5.1 Error: nested MAIL command");
		count_error(s);
		return;
	}
	if ((s->kind == LISTEN_SUBMISSION || s->kind == LISTEN_SUBMISSIONS) && s->auth_user == NULL) {
		reply(s, "530 5.7.0 Authentication required");
		count_error(s);
		return;
	}
	if (!s->ehlo && (c->mail.has_size || c->mail.body || c->mail.smtputf8 || c->mail.ret || c->mail.has_envid || c->mail.auth.data)) {
		reply(s, "555 5.5.4 Error: ESMTP parameters need EHLO");
		count_error(s);
		return;
	}
	if (c->mail.has_size && c->mail.size > s->cfg->limits.max_message_size) {
		reply(s, "552 5.3.4 Error: message size exceeds fixed limit");
		return;
	}
	struct smtp_address addr;
	struct smtp_parse_error err;
	unsigned flags = SMTP_ADDRESS_ALLOW_NULL | (c->mail.smtputf8 ? SMTP_ADDRESS_ALLOW_UTF8 : 0);
	if (smtp_address_parse(c->path.data, c->path.len, flags, &addr, &err) < 0) {
		reply(s, "%d %s %s", err.code, err.enhanced, err.text);
		count_error(s);
		return;
	}
	unsigned retry;
	if (s->auth_user != NULL ? !rate_take(s, "msg-user", s->auth_user, &s->cfg->rate_limits.messages_per_user, &retry)
	                         : !rate_take(s, "msg-ip", s->ip, &s->cfg->rate_limits.messages_per_ip, &retry)) {
		reply(s, "451 4.7.1 Error: too many messages, try again in %u seconds", retry);
		return;
	}
	smtp_address_format(&addr, s->sender, sizeof(s->sender));
	save_args(c, s->mail_args, sizeof(s->mail_args));
	s->mail = c->mail;
	if (s->auth_user != NULL) {
		/* Submission: the envelope sender must belong to the user. */
		s->waiting = true;
		bufferevent_disable(s->bev, EV_READ);
		s->lreq = lookup_client_sender(s->srv->lookup, s->auth_user, s->sender, on_sender_checked, s);
		return;
	}
	if (s->kind == LISTEN_MX && s->cfg->mailauth.verify && s->cfg->mailauth.spf_reject_fail) {
		s->waiting = true;
		bufferevent_disable(s->bev, EV_READ);
		s->lreq = lookup_client_spf(s->srv->lookup, s->ip, s->helo, s->sender, on_spf_checked, s);
		return;
	}
	mail_accepted(s);
}

static void cmd_rcpt(struct smtp_session *s, const struct smtp_command *c)
{
	if (!s->in_mail) {
		reply(s, "503 5.5.1 Error: need MAIL command");
		count_error(s);
		return;
	}
	if (s->rcpt_count >= s->cfg->limits.max_recipients) {
		reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	struct smtp_address addr;
	struct smtp_parse_error err;
	unsigned flags = SMTP_ADDRESS_ALLOW_POSTMASTER | (s->mail.smtputf8 ? SMTP_ADDRESS_ALLOW_UTF8 : 0);
	if (smtp_address_parse(c->path.data, c->path.len, flags, &addr, &err) < 0) {
		reply(s, "%d %s %s", err.code, err.enhanced, err.text);
		count_error(s);
		return;
	}
	unsigned retry;
	if (s->auth_user != NULL ? !rate_take(s, "rcpt-user", s->auth_user, &s->cfg->rate_limits.recipients_per_user, &retry)
	                         : !rate_take(s, "rcpt-ip", s->ip, &s->cfg->rate_limits.recipients_per_ip, &retry)) {
		reply(s, "452 4.7.1 Error: too many recipients, try again in %u seconds", retry);
		return;
	}
	save_args(c, s->rcpt_args, sizeof(s->rcpt_args));
	if (addr.flags & SMTP_ADDRESS_F_POSTMASTER)
		snprintf(s->pending_rcpt, sizeof(s->pending_rcpt), "postmaster@%s", s->cfg->hostname);
	else
		smtp_address_format(&addr, s->pending_rcpt, sizeof(s->pending_rcpt));
	s->pending_orcpt = c->rcpt.has_orcpt ? xasprintf("%.*s;%s", (int)c->rcpt.orcpt_type.len, c->rcpt.orcpt_type.data, c->rcpt.orcpt) : NULL;
	s->pending_notify = c->rcpt.notify;
	s->waiting = true;
	bufferevent_disable(s->bev, EV_READ);
	s->lreq = lookup_client_rcpt(s->srv->lookup, s->pending_rcpt, s->ip, s->auth_user, (int)s->kind,
	                             s->kind == LISTEN_MX && s->auth_user == NULL ? s->sender : NULL, on_rcpt_checked,
	                             s);
}

static void cmd_data(struct smtp_session *s)
{
	if (!s->in_mail) {
		reply(s, "503 5.5.1 Error: need MAIL command");
		count_error(s);
		return;
	}
	if (s->rcpt_count == 0) {
		reply(s, "554 5.5.1 Error: no valid recipients");
		count_error(s);
		return;
	}
	if (s->bdat_used) {
		reply(s, "503 5.5.1 Error: DATA after BDAT in the same transaction");
		count_error(s);
		return;
	}
	if (s->mail.body == SMTP_BODY_BINARYMIME) {
		reply(s, "503 5.5.1 Error: BINARYMIME needs BDAT");
		count_error(s);
		return;
	}
	s->state = ST_DATA;
	open_spool(s);
}

static void cmd_bdat(struct smtp_session *s, const struct smtp_command *c)
{
	s->bdat_remaining = c->bdat_size;
	s->bdat_last = c->bdat_last;
	s->bdat_used = true;
	s->state = ST_BDAT;
	if (!s->in_mail || s->rcpt_count == 0) {
		s->bdat_discard = true;
		s->bdat_code = !s->in_mail ? 503 : 554;
		s->bdat_text = !s->in_mail ? "5.5.1 Error: need MAIL command" : "5.5.1 Error: no valid recipients";
	}
	if (!s->bdat_discard && s->spool_fd < 0 && s->qid[0] == '\0')
		open_spool(s);
	if (s->bdat_remaining == 0 && !s->waiting)
		session_process(s);
}

static void handle_command(struct smtp_session *s, const char *line, size_t len)
{
	struct smtp_command c;
	struct smtp_parse_error err;
	s->commands++;
	if (smtp_command_parse(line, len, &c, &err) < 0) {
		reply(s, "%d %s %s", err.code, err.enhanced, err.text);
		count_error(s);
		return;
	}
	if ((s->banner_refused || s->refuse_reply != NULL) && c.verb != SMTP_VERB_QUIT && c.verb != SMTP_VERB_NOOP &&
	    c.verb != SMTP_VERB_RSET) {
		/* Refused at the greeting (DNSBL: RFC 5321 3.1, only QUIT) or by a milter at connect/HELO. */
		if (s->banner_refused)
			reply(s, "503 5.5.1 Error: service unavailable, send QUIT");
		else
			reply(s, "%s", s->refuse_reply);
		if (s->banner_refused || s->refuse_reply[0] == '5')
			count_error(s);
		return;
	}
	switch (c.verb) {
	case SMTP_VERB_EHLO: cmd_ehlo(s, &c, true); break;
	case SMTP_VERB_HELO: cmd_ehlo(s, &c, false); break;
	case SMTP_VERB_MAIL: cmd_mail(s, &c); break;
	case SMTP_VERB_RCPT: cmd_rcpt(s, &c); break;
	case SMTP_VERB_DATA: cmd_data(s); break;
	case SMTP_VERB_BDAT: cmd_bdat(s, &c); break;
	case SMTP_VERB_RSET: tx_reset(s); reply(s, "250 2.0.0 Ok"); break;
	case SMTP_VERB_NOOP: reply(s, "250 2.0.0 Ok"); break;
	case SMTP_VERB_QUIT:
		reply(s, "221 2.0.0 Bye");
		session_close(s);
		break;
	case SMTP_VERB_VRFY: reply(s, "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery"); break;
	case SMTP_VERB_EXPN: reply(s, "502 5.5.1 Error: command not implemented"); break;
	case SMTP_VERB_HELP: reply(s, "214 2.0.0 See RFC 5321 (mailroute)"); break;
	case SMTP_VERB_STARTTLS: cmd_starttls(s); break;
	case SMTP_VERB_AUTH: cmd_auth(s, &c); break;
	default:
		reply(s, "502 5.5.2 Error: command not recognized");
		count_error(s);
		break;
	}
}

/* BDAT content: scan for bare CR/LF and count Received: headers. */
static void bdat_scan(struct smtp_session *s, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		char prev = i > 0 ? p[i - 1] : s->bdat_prev;
		if ((ch == '\n' && prev != '\r') || (prev == '\r' && ch != '\n' && !(i == 0 && s->msg_size == 0)))
			s->bad_content = true;
		if (s->hdr_state == 2)
			continue;
		if (s->hdr_state == 0) {
			if (ch == '\r' || ch == '\n') {
				if (ch == '\n')
					s->hdr_state = 2; /* empty line: end of header */
				continue;
			}
			s->hdr_state = 1;
			s->hdr_prefix_len = 0;
		}
		if (ch == '\n') {
			s->hdr_state = 0;
			continue;
		}
		if (s->hdr_prefix_len < 9) {
			s->hdr_prefix[s->hdr_prefix_len++] = ch;
			if (s->hdr_prefix_len == 9 && strncasecmp(s->hdr_prefix, "received:", 9) == 0)
				s->hops++;
		}
	}
	if (n > 0)
		s->bdat_prev = p[n - 1];
}

static void bdat_chunk_done(struct smtp_session *s)
{
	if (s->bdat_discard) {
		reply(s, "%d %s", s->bdat_code, s->bdat_text);
		if (s->bdat_code >= 500)
			count_error(s);
		tx_reset(s);
		s->state = ST_CMD;
		return;
	}
	if (s->bdat_last) {
		if (s->bdat_prev == '\r')
			s->bad_content = true;
		finish_message(s);
		return;
	}
	reply(s, "250 2.0.0 %llu octets received", (unsigned long long)s->msg_size);
	s->state = ST_CMD;
}

/* A client that pipelines commands but does not read our replies: stop reading until it does. */
#define OUTPUT_HIGH (64 * 1024)

static void session_process(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	while (!s->waiting && s->state != ST_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > OUTPUT_HIGH) {
			s->output_blocked = true;
			bufferevent_disable(s->bev, EV_READ);
			break;
		}
		if (s->state == ST_BDAT && s->bdat_remaining == 0) {
			bdat_chunk_done(s);
			continue;
		}
		size_t avail = evbuffer_get_length(in);
		if (avail == 0)
			break;
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		const char *p = v.iov_base;
		size_t n = v.iov_len;
		size_t consumed = 0;

		if (s->state == ST_DATA) {
			/* Keep room in spool_out: the reader writes at most n+2 bytes. */
			size_t room = s->spool_out.max - s->spool_out.len;
			if (room < 16) {
				spool_flush(s);
				room = s->spool_out.max - s->spool_out.len;
			}
			if (n > room - 8)
				n = room - 8;
			int r = smtp_data_reader_feed(&s->dr, p, n, &consumed, &s->spool_out);
			/* The data reader appended to spool_out directly; account for it. */
			s->msg_size = s->dr.content_bytes;
			if (s->msg_size > s->cfg->limits.max_message_size) {
				s->too_big = true;
				buf_reset(&s->spool_out);
			} else if (s->spool_out.len >= SPOOL_FLUSH) {
				spool_flush(s);
			}
			evbuffer_drain(in, consumed);
			if (r == SMTP_DATA_DONE) {
				s->hops = s->dr.received_count;
				struct timeval tv = { s->cfg->limits.command_timeout, 0 };
				bufferevent_set_timeouts(s->bev, &tv, &tv);
				finish_message(s);
			} else if (r == SMTP_DATA_BARE_LF || r == SMTP_DATA_BARE_CR) {
				log_info("event=smuggling_refused sid=%s ip=%s reason=%s", s->sid, s->ip,
				         r == SMTP_DATA_BARE_LF ? "bare_lf" : "bare_cr");
				reply(s, "554 5.5.2 Error: bare %s received in DATA", r == SMTP_DATA_BARE_LF ? "<LF>" : "<CR>");
				tx_reset(s);
				session_close(s);
			}
			continue;
		}
		if (s->state == ST_BDAT) {
			size_t take = n < s->bdat_remaining ? n : (size_t)s->bdat_remaining;
			if (!s->bdat_discard) {
				bdat_scan(s, p, take);
				spool_add(s, p, take);
			}
			evbuffer_drain(in, take);
			s->bdat_remaining -= take;
			continue;
		}

		struct smtp_line line;
		if (!smtp_line_reader_pending(&s->lr))
			s->line_start = time(NULL);
		int r = smtp_line_reader_feed(&s->lr, p, n, &consumed, &line);
		if (r == SMTP_LINE_AGAIN) {
			evbuffer_drain(in, consumed);
			/* A client trickling one line forever is timed out like an idle one. */
			if (time(NULL) - s->line_start > (time_t)s->cfg->limits.command_timeout) {
				log_info("event=timeout sid=%s ip=%s state=partial_line", s->sid, s->ip);
				reply(s, "421 4.4.2 %s Error: timeout exceeded", s->cfg->hostname);
				tx_reset(s);
				session_close(s);
			}
			continue;
		}
		if (s->skip_to_crlf) {
			/* The tail of a line broken by a bare LF: never a command of its own. */
			evbuffer_drain(in, consumed);
			s->skip_to_crlf = r == SMTP_LINE_BARE_LF;
			continue;
		}
		/* line may point into the evbuffer: copy it out, then drain. */
		buf_reset(&s->cmd);
		if (r == SMTP_LINE_OK)
			buf_append(&s->cmd, line.data, line.len);
		evbuffer_drain(in, consumed);
		if (r == SMTP_LINE_OK) {
			switch (s->state) {
			case ST_AUTH_PLAIN: session_auth_plain(s, s->cmd.data, s->cmd.len); break;
			case ST_AUTH_LOGIN_USER:
			case ST_AUTH_LOGIN_PASS: session_auth_login(s, s->cmd.data, s->cmd.len); break;
			default: handle_command(s, s->cmd.data, s->cmd.len); break;
			}
			secret_zero(s->cmd.data, s->cmd.len);
		} else if (r == SMTP_LINE_TOO_LONG) {
			reply(s, "500 5.5.2 Error: line too long");
			count_error(s);
		} else {
			log_info("event=bare_newline_in_command sid=%s ip=%s", s->sid, s->ip);
			s->skip_to_crlf = r == SMTP_LINE_BARE_LF;
			reply(s, "500 5.5.2 Error: bare %s received in command", r == SMTP_LINE_BARE_LF ? "<LF>" : "<CR>");
			count_error(s);
		}
		/* STARTTLS replaces the bufferevent. */
		in = bufferevent_get_input(s->bev);
	}
	if (s->state != ST_CLOSING && s->lr.discarding && s->lr.discarded > 10 * s->cfg->limits.max_line_length) {
		reply(s, "500 5.5.2 Error: line too long");
		session_close(s);
	}
}

/* ---- events ---- */

static void on_read(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	session_process(s);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	if (s->state == ST_CLOSING && output_empty(s)) {
		session_free(s); /* the last reply is out: no need to wait for the close timer */
		return;
	}
	/* Called when the output fell to the low watermark: the client reads again. */
	if (s->output_blocked && s->state != ST_CLOSING && !s->waiting) {
		s->output_blocked = false;
		bufferevent_enable(s->bev, EV_READ);
		session_process(s);
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;
	if (what & BEV_EVENT_TIMEOUT) {
		if (s->state != ST_CLOSING) {
			log_info("event=timeout sid=%s ip=%s state=%d", s->sid, s->ip, (int)s->state);
			/* libevent disabled the timed-out direction; a TLS filter needs both to flush our reply. */
			bufferevent_enable(s->bev, EV_READ | EV_WRITE);
			reply(s, "421 4.4.2 %s Error: timeout exceeded", s->cfg->hostname);
			tx_reset(s);
			session_close(s);
		}
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (what & BEV_EVENT_ERROR) {
			unsigned long e = bufferevent_get_openssl_error(bev);
			if (e != 0) {
				char buf[256];
				ERR_error_string_n(e, buf, sizeof(buf));
				log_info("event=tls_error sid=%s ip=%s error=\"%s\"", s->sid, s->ip, buf);
			}
		}
		session_free(s);
		return;
	}
	if (what & BEV_EVENT_CONNECTED)
		return;
}

static void session_install_callbacks(struct smtp_session *s)
{
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	bufferevent_setwatermark(s->bev, EV_WRITE, OUTPUT_HIGH / 4, 0);
	struct timeval tv = { s->cfg->limits.command_timeout, 0 };
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static void session_free(struct smtp_session *s)
{
	struct smtp_server *srv = s->srv;
	log_info("event=disconnect sid=%s ip=%s commands=%u messages=%u errors=%u", s->sid, s->ip, s->commands,
	         s->messages, s->errors);
	lookup_req_cancel(&s->lreq);
	ipc_call_cancel(&s->qcall);
	clamd_scan_cancel(&s->cscan);
	rspamd_check_cancel(&s->rcheck);
	milter_chain_free(&s->milters);
	tx_reset(s);
	free(s->refuse_reply);
	free(s->dnsbl_tag);
	free(s->rcpts);
	xfree(&s->pending_orcpt);
	free(s->auth_user);
	secret_free(s->auth_login_user);
	buf_deinit(&s->spool_out);
	buf_deinit(&s->cmd);
	buf_deinit(&s->add_headers);
	smtp_line_reader_deinit(&s->lr);
	if (s->close_timer != NULL)
		event_free(s->close_timer);
	bufferevent_free(s->bev);
	smtp_anvil_disconnect(srv->env->index, s->ip);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	srv->session_count--;
	free(s);
	smtp_server_session_gone(srv);
}

void smtp_sessions_shutdown_all(struct smtp_server *srv)
{
	for (struct smtp_session *s = srv->sessions; s != NULL; s = s->next) {
		if (s->state == ST_CLOSING)
			continue;
		if (s->qcall != NULL && s->spool_fd < 0 && s->qid[0] != '\0')
			continue; /* a commit is in flight: its answer comes first (on_committed) */
		reply(s, "421 4.3.2 %s Service shutting down", s->cfg->hostname);
		tx_reset(s);
		session_close(s);
	}
}

/* ---- the greeting: DNSBL (lookup role), the milters' connect stage, then 220 ---- */

static void greet(struct smtp_session *s)
{
	reply(s, "220 %s ESMTP mailroute", s->cfg->hostname);
	resume(s);
}

static void on_milter_connect(void *arg, const struct milter_result *res)
{
	struct smtp_session *s = arg;
	if (s->state == ST_CLOSING) {
		s->waiting = false;
		return;
	}
	/* Refused at connect: greet, then answer every command with the milter's reply (as Postfix). */
	if (milter_refused(s, "connect", res))
		s->refuse_reply = xstrdup(milter_reply(res));
	greet(s);
}

/* One milter chain per session: mx listeners, and submission with milters_on_submission. */
static void greet_milters(struct smtp_session *s)
{
	const struct mr_config *cfg = s->cfg;
	bool applies = cfg->milters_count > 0 &&
	               (s->kind == LISTEN_MX || (cfg->milters_on_submission &&
	                                         (s->kind == LISTEN_SUBMISSION || s->kind == LISTEN_SUBMISSIONS)));
	if (!applies) {
		greet(s);
		return;
	}
	struct milter_settings set[cfg->milters_count];
	for (size_t i = 0; i < cfg->milters_count; i++) {
		const struct conf_milter *m = &cfg->milters[i];
		set[i] = (struct milter_settings){ .name = m->name, .address = m->address,
			                           .connect_timeout_ms = m->timeout * 1000,
			                           .timeout_ms = m->timeout * 1000,
			                           .eom_timeout_ms = m->timeout * 6000,
			                           .on_failure = m->on_error_accept ? MILTER_ACCEPT : MILTER_TEMPFAIL };
	}
	s->milters = milter_chain_new(s->srv->base, set, cfg->milters_count);
	struct milter_conn_info info = { .my_hostname = s->cfg->hostname,
		                         .daemon_name = conf_listen_kind_name(s->kind),
		                         .client_name = NULL,
		                         .client_ip = strcmp(s->ip, "unknown") != 0 ? s->ip : NULL,
		                         .client_port = s->client_port };
	milter_chain_connect(s->milters, &info, on_milter_connect, s);
}

static void on_dnsbl_checked(void *arg, int score, const char *first_zone, const char *hits, unsigned failed)
{
	struct smtp_session *s = arg;
	s->lreq = NULL;
	if (s->state == ST_CLOSING) {
		s->waiting = false;
		return;
	}
	s->dnsbl_score = score;
	bool listed = first_zone != NULL && score >= (int)s->cfg->dnsbl.threshold;
	log_info("event=dnsbl sid=%s ip=%s score=%d listed=%s hits=%s failed=%u", s->sid, s->ip, score,
	         listed ? "yes" : "no", hits, failed);
	if (listed && !s->cfg->dnsbl.tag) {
		/* RFC 5321 3.1: a 554 greeting, then only QUIT (503 to anything else). */
		s->banner_refused = true;
		reply(s, "554 5.7.1 Service unavailable; client [%s] listed at %s", s->ip, first_zone);
		resume(s);
		return;
	}
	if (listed)
		s->dnsbl_tag = xasprintf("%s (score %d)", hits, score);
	greet_milters(s);
}

void smtp_session_start(struct smtp_server *srv, int fd, const struct role_listener *l, const struct sockaddr *sa,
                        int salen)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	s->cfg = srv->cfg;
	s->kind = l->kind;
	s->spool_fd = -1;
	s->bdat_prev = '\n';
	snprintf(s->sid, sizeof(s->sid), "%lx%05lx", (unsigned long)getpid(), srv->next_sid++);
	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, s->ip, sizeof(s->ip));
		s->client_port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, s->ip, sizeof(s->ip));
		s->client_port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	} else
		snprintf(s->ip, sizeof(s->ip), "unknown");
	smtp_line_reader_init(&s->lr, s->cfg->limits.max_line_length);
	buf_init(&s->spool_out, 4 * SPOOL_FLUSH);
	buf_init(&s->cmd, s->cfg->limits.max_line_length);
	buf_init(&s->add_headers, 16384);
	s->next = srv->sessions;
	if (s->next != NULL)
		s->next->prev = s;
	srv->sessions = s;
	srv->session_count++;

	evutil_make_socket_nonblocking(fd);
	if (l->implicit_tls && srv->env->tls != NULL) {
		SSL *ssl = SSL_new(srv->env->tls);
		s->bev = bufferevent_openssl_socket_new(srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
		                                        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
		s->tls = true;
	} else {
		s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	}
	session_install_callbacks(s);
	unsigned per_ip = smtp_anvil_connect(srv->env->index, s->ip);
	log_info("event=connect sid=%s ip=%s listener=%s tls=%s", s->sid, s->ip, conf_listen_kind_name(l->kind),
	         s->tls ? "yes" : "no");
	if (srv->session_count > s->cfg->limits.max_connections) {
		reply(s, "421 4.7.0 %s Error: too many connections", s->cfg->hostname);
		session_close(s);
		return;
	}
	if (per_ip > s->cfg->limits.max_connections_per_ip) {
		log_info("event=too_many_connections_from_ip sid=%s ip=%s count=%u", s->sid, s->ip, per_ip);
		reply(s, "421 4.7.0 %s Error: too many connections from %s", s->cfg->hostname, s->ip);
		session_close(s);
		return;
	}
	unsigned retry;
	if (!rate_take(s, "conn-ip", s->ip, &s->cfg->rate_limits.connections_per_ip, &retry)) {
		reply(s, "421 4.7.0 %s Error: too many connections from %s, try again in %u seconds", s->cfg->hostname,
		      s->ip, retry);
		session_close(s);
		return;
	}
	/* The greeting waits for the DNSBL answer and the milters' connect stage. */
	s->waiting = true;
	bufferevent_disable(s->bev, EV_READ);
	bool ip_zones = false;
	for (size_t i = 0; i < s->cfg->dnsbl.zones_count; i++)
		ip_zones |= !s->cfg->dnsbl.zones[i].rhsbl;
	if (ip_zones && s->kind == LISTEN_MX) {
		s->lreq = lookup_client_dnsbl(srv->lookup, s->ip, NULL, on_dnsbl_checked, s);
		return;
	}
	greet_milters(s);
}
