#include "outbound/smtp_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <idn2.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib-dns/dns_resolver.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "lib-smtp/smtp_reply.h"
#include "outbound/dane.h"
#include "outbound/mime7bit.h"
#include "outbound/mta_sts.h"
#include "outbound/mx_select.h"
#include "outbound/tlsrpt.h"

#define CAP_PIPELINING 0x01
#define CAP_SIZE 0x02
#define CAP_8BITMIME 0x04
#define CAP_SMTPUTF8 0x08
#define CAP_DSN 0x10
#define CAP_STARTTLS 0x20
#define CAP_AUTH 0x40
#define CAP_ENHANCED 0x80
#define CAP_CHUNKING 0x100

#define AUTH_PLAIN 0x1
#define AUTH_LOGIN 0x2

#define BODY_CHUNK 32768
#define BODY_HIGH_WATER 65536
#define BODY_LOW_WATER 16384

enum sess_state {
	S_CONNECTING,
	S_BANNER,
	S_EHLO,
	S_HELO,
	S_STARTTLS,
	S_TLS_HANDSHAKE,
	S_AUTH,
	S_RSET,
	S_MAIL,
	S_RCPT,
	S_DATA,
	S_BODY,
	S_DOT,
	S_BDAT,      /* a BDAT chunk sent, waiting for its reply */
	S_BDAT_LAST, /* BDAT ... LAST sent: the final reply */
	S_IDLE,    /* transaction finished, owned by a delivery or parked in the pool */
	S_QUIT,    /* closing: waiting for QUIT's reply or the timer */
};

static const char *const state_names[] = {
	"connect", "banner", "EHLO", "HELO", "STARTTLS", "TLS handshake", "AUTH", "RSET",
	"MAIL FROM", "RCPT TO", "DATA", "message body", "end of data", "BDAT", "BDAT LAST", "idle", "QUIT",
};

struct rcpt_state {
	char *address, *notify, *orcpt;
	enum smtp_rcpt_status status;
	bool final;
	bool accepted;   /* RCPT accepted in the current transaction */
	int code;
	char enh[16];
	char *text;
	bool remote;
	bool dsn_passed;   /* delivered to a peer that announced DSN */
	char *host, *addr;
};

struct target_host {
	char *name;
	unsigned port;
	uint16_t pref;
};

struct addr_entry {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[INET6_ADDRSTRLEN];
};

struct smtp_session;

struct smtp_delivery {
	struct smtp_client *c;
	struct smtp_delivery *prev, *next;
	smtp_delivery_cb *cb;
	void *arg;
	int fd;
	off_t size;
	char *queue_id, *sender, *envid, *ret;
	bool smtputf8, body_8bit;
	struct rcpt_state *rcpts;
	size_t rcpt_count;

	char *domain;           /* MX destination or NULL */
	bool implicit_mx;
	struct target_host *hosts;
	size_t host_count, host_idx;
	enum smtp_tls_policy tls;
	bool tls_verify;
	char *auth_user, *auth_pass;
	char *key;

	struct addr_entry *addrs;
	size_t addr_count, addr_idx;
	unsigned addrs_tried;
	struct dns_query *q_mx, *q_a, *q_aaaa;
	struct dns_result *res_a, *res_aaaa;
	unsigned hosts_unresolvable; /* hosts with NXDOMAIN/NODATA for both families */
	enum smtp_host_state *host_state; /* host_count entries */
	bool no_tls;            /* MAY: retry this address without TLS after a failed handshake */
	/* TLS policy (see smtp_client.h) */
	struct mta_sts_req *sts_req;
	bool sts_done, sts_have;
	struct mta_sts_policy sts;   /* the domain's policy when sts_have (mode testing/enforce) */
	bool mx_secure;              /* the MX answer was DNSSEC-secure */
	bool addr_secure;            /* the current host's address answers were secure */
	struct dns_query *q_tlsa;
	struct dns_result *tlsa;     /* current host: secure TLSA set with usable records (DANE on) */
	bool dane_unauth;            /* current host: secure TLSA set, none usable: TLS without auth */

	struct smtp_session *s;
	size_t *tx;             /* indices of recipients sent in this transaction */
	size_t tx_count, tx_sent, tx_replied;

	int last_code;
	char last_enh[16];
	char *last_text;
	bool last_remote;
	char *last_host, *last_addr;

	bool downgrade;         /* this transaction sends the body converted to quoted-printable */
	struct buf conv_hdr;    /* the rewritten header for the downgrade */
	size_t body_off;
	struct mime7bit_qp qp;

	bool last_tls;
	bool detached;          /* in or after its callback: no longer in c->deliveries */
	bool reused_session;    /* d->s came from the pool */
	struct event *done_ev;
	bool finished;
};

struct smtp_session {
	struct smtp_client *c;
	struct smtp_session *prev, *next; /* in c->sessions */
	struct smtp_delivery *d;          /* NULL when parked or closing */
	struct bufferevent *bev;
	struct event *timer;
	struct smtp_reply_parser parser;
	const struct smtp_reply *rep; /* the reply being handled; valid until the next feed */
	char *key;
	char *host;
	char addr[INET6_ADDRSTRLEN];
	unsigned port;
	size_t host_idx;                  /* index in the delivery's host list that opened it */
	enum sess_state state;
	bool tls;
	unsigned caps;
	unsigned long long peer_size;
	unsigned auth_mechs;
	int auth_step;
	unsigned uses;
	bool parked;
	bool busy;   /* inside session_read_cb: freeing is deferred */
	bool dead;
	/* body transfer */
	off_t data_off;
	size_t hdr_off;      /* downgrade: how much of the rewritten header was produced */
	bool data_bol, data_prev_cr, data_eof;
	bool stuff_bol;      /* dot-stuffing: at the start of a line */
	bool bdat;           /* this transaction uses BDAT */
};

struct smtp_client {
	struct event_base *base;
	struct smtp_client_settings set;
	char *helo_name;
	SSL_CTX *ssl_ctx;
	bool own_ctx;
	struct smtp_delivery *deliveries;
	struct smtp_session *sessions;
};

static void session_read_cb(struct bufferevent *bev, void *arg);
static void session_write_cb(struct bufferevent *bev, void *arg);
static void session_event_cb(struct bufferevent *bev, short what, void *arg);
static void session_timer_cb(evutil_socket_t fd, short what, void *arg);
static void delivery_next_host(struct smtp_delivery *d);
static void delivery_try_addr(struct smtp_delivery *d);
static void delivery_finish(struct smtp_delivery *d);
static void delivery_start_fresh(struct smtp_delivery *d);
static void session_close(struct smtp_session *s, bool quit);
static void start_transaction(struct smtp_session *s);
static void after_helo(struct smtp_session *s);

static unsigned deftime(unsigned v, unsigned def) { return v != 0 ? v : def; }

/* The policy for the current host: DANE makes TLS mandatory. */
static enum smtp_tls_policy eff_tls(const struct smtp_delivery *d)
{
	if (d->tlsa != NULL || d->dane_unauth)
		return SMTP_TLS_REQUIRE;
	return d->tls;
}

static const char *policy_type(const struct smtp_delivery *d)
{
	if (d->tlsa != NULL || d->dane_unauth)
		return "tlsa";
	if (d->sts_have)
		return "sts";
	return "no-policy-found";
}

static void tls_report(const struct smtp_delivery *d, const char *host, const char *addr, const char *result,
                       const char *reason)
{
	if (d->domain == NULL)
		return; /* relays: no policy domain to report to */
	tlsrpt_record(d->c->set.tlsrpt_dir, policy_type(d), d->domain, host, addr, result, reason, d->queue_id);
}

const char *smtp_rcpt_status_name(enum smtp_rcpt_status st)
{
	switch (st) {
	case SMTP_RCPT_DELIVERED: return "delivered";
	case SMTP_RCPT_TEMPFAIL: return "deferred";
	case SMTP_RCPT_PERMFAIL: return "bounced";
	}
	return "unknown";
}

struct smtp_client *smtp_client_new(struct event_base *base, const struct smtp_client_settings *set,
                                    char **error_r)
{
	struct smtp_client *c = xcalloc(1, sizeof(*c));
	struct smtp_client_timeouts *t;

	c->base = base;
	c->set = *set;
	c->helo_name = xstrdup(set->helo_name != NULL ? set->helo_name : "localhost");
	c->set.helo_name = c->helo_name;
	t = &c->set.timeouts;
	t->connect = deftime(t->connect, 30000);
	t->banner = deftime(t->banner, 300000);
	t->helo = deftime(t->helo, 300000);
	t->mail = deftime(t->mail, 300000);
	t->rcpt = deftime(t->rcpt, 300000);
	t->data_init = deftime(t->data_init, 120000);
	t->data_block = deftime(t->data_block, 180000);
	t->data_final = deftime(t->data_final, 600000);
	t->quit = deftime(t->quit, 10000);
	c->set.mx_port = deftime(c->set.mx_port, 25);
	c->set.max_mx_hosts = deftime(c->set.max_mx_hosts, 5);
	c->set.max_addresses = deftime(c->set.max_addresses, 10);
	/* 0 keeps lib-smtp's defaults */
	c->set.max_reuse = deftime(c->set.max_reuse, 100);
	/* the string arrays stay the caller's: they must outlive the client */

	if (set->tls_ctx != NULL) {
		c->ssl_ctx = set->tls_ctx;
	} else {
		c->ssl_ctx = SSL_CTX_new(TLS_client_method());
		if (c->ssl_ctx == NULL) {
			*error_r = xstrdup("SSL_CTX_new failed");
			smtp_client_free(&c);
			return NULL;
		}
		c->own_ctx = true;
		SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
		/* DEPENDENCIES.md pitfall 2 */
		SSL_CTX_set_options(c->ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
		SSL_CTX_set_default_verify_paths(c->ssl_ctx);
		if (set->tls_ca_file != NULL &&
		    SSL_CTX_load_verify_locations(c->ssl_ctx, set->tls_ca_file, NULL) != 1) {
			*error_r = xasprintf("cannot load CA file %s", set->tls_ca_file);
			smtp_client_free(&c);
			return NULL;
		}
	}
	return c;
}

static void delivery_free(struct smtp_delivery *d);

void smtp_client_free(struct smtp_client **cp)
{
	struct smtp_client *c = *cp;
	if (c == NULL)
		return;
	while (c->deliveries != NULL)
		delivery_free(c->deliveries);
	while (c->sessions != NULL)
		session_close(c->sessions, false);
	if (c->own_ctx)
		SSL_CTX_free(c->ssl_ctx);
	free(c->helo_name);
	free(c);
	*cp = NULL;
}

size_t smtp_client_idle_count(const struct smtp_client *c)
{
	size_t n = 0;
	for (const struct smtp_session *s = c->sessions; s != NULL; s = s->next)
		if (s->parked)
			n++;
	return n;
}

/* ------------------------------------------------------------------ helpers */

static bool envelope_string_ok(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x21 || ch == 0x7f || ch == '<' || ch == '>')
			return false;
	}
	return true;
}

/*
 * RFC 6531 without SMTPUTF8 where possible: an address whose only non-ASCII
 * part is the domain is rewritten with the domain's A-label. Returns the
 * address to use (allocated) and sets *utf8_r when it still needs SMTPUTF8.
 */
static char *address_alabel(const char *addr, bool *utf8_r)
{
	bool ascii = true;
	for (const char *p = addr; *p != '\0'; p++)
		ascii &= (unsigned char)*p < 0x80;
	if (ascii)
		return xstrdup(addr);
	const char *at = strrchr(addr, '@');
	if (at != NULL) {
		bool local_ascii = true;
		for (const char *p = addr; p < at; p++)
			local_ascii &= (unsigned char)*p < 0x80;
		char *alabel = NULL;
		if (local_ascii && idn2_to_ascii_8z(at + 1, &alabel, IDN2_NONTRANSITIONAL) == IDN2_OK) {
			char *r = xasprintf("%.*s@%s", (int)(at - addr), addr, alabel);
			idn2_free(alabel);
			return r;
		}
	}
	*utf8_r = true;
	return xstrdup(addr);
}

static void rcpt_set(struct smtp_delivery *d, struct rcpt_state *r, enum smtp_rcpt_status st, bool final,
                     int code, const char *enh, const char *text, bool remote)
{
	r->status = st;
	r->final = final;
	r->code = code;
	snprintf(r->enh, sizeof(r->enh), "%s", enh);
	free(r->text);
	r->text = xstrdup(text);
	r->remote = remote;
	free(r->host);
	free(r->addr);
	r->host = xstrdup(d->s != NULL ? d->s->host : (d->last_host != NULL ? d->last_host : ""));
	r->addr = xstrdup(d->s != NULL ? d->s->addr : (d->last_addr != NULL ? d->last_addr : ""));
}

/* A synthesized or remote error that applies to every undecided recipient if nothing better comes. */
static void set_last_error(struct smtp_delivery *d, int code, const char *enh, const char *text, bool remote)
{
	d->last_code = code;
	snprintf(d->last_enh, sizeof(d->last_enh), "%s", enh);
	free(d->last_text);
	d->last_text = xstrdup(text);
	d->last_remote = remote;
	if (d->s != NULL) {
		free(d->last_host);
		free(d->last_addr);
		d->last_host = xstrdup(d->s->host);
		d->last_addr = xstrdup(d->s->addr);
	}
}

/* Enhanced code from the reply, or a default by class. */
static const char *reply_enh(const struct smtp_reply *r, const char *def4, const char *def5)
{
	if (r->enhanced[0] != '\0' && r->enhanced[0] == '0' + r->code / 100)
		return r->enhanced;
	return r->code >= 500 ? def5 : def4;
}

static void fail_all_pending(struct smtp_delivery *d, enum smtp_rcpt_status st, int code, const char *enh,
                             const char *text, bool remote)
{
	for (size_t i = 0; i < d->rcpt_count; i++) {
		if (!d->rcpts[i].final)
			rcpt_set(d, &d->rcpts[i], st, true, code, enh, text, remote);
	}
}

/* ------------------------------------------------------------------ sessions */

static void session_timer(struct smtp_session *s, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(s->timer, &tv);
}

static void session_send(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void session_send(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
}

static void session_unlink(struct smtp_session *s)
{
	struct smtp_client *c = s->c;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else if (c->sessions == s)
		c->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
}

static void session_free(struct smtp_session *s)
{
	if (s->d != NULL && s->d->s == s)
		s->d->s = NULL;
	s->d = NULL;
	if (s->busy) {
		/* session_read_cb is on the stack: it frees when the handler returns */
		s->dead = true;
		if (s->timer != NULL)
			evtimer_del(s->timer);
		if (s->bev != NULL)
			bufferevent_disable(s->bev, EV_READ | EV_WRITE);
		return;
	}
	session_unlink(s);
	if (s->d != NULL && s->d->s == s)
		s->d->s = NULL;
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	if (s->timer != NULL)
		event_free(s->timer);
	smtp_reply_parser_deinit(&s->parser);
	free(s->key);
	free(s->host);
	free(s);
}

/* Detach from its delivery and close, politely (QUIT) when quit and the peer is in a sane state. */
static void session_close(struct smtp_session *s, bool quit)
{
	if (s->d != NULL && s->d->s == s)
		s->d->s = NULL;
	s->d = NULL;
	s->parked = false;
	if (!quit || s->bev == NULL || s->state == S_CONNECTING || s->state == S_TLS_HANDSHAKE ||
	    s->state == S_BODY || s->state == S_QUIT) {
		session_free(s);
		return;
	}
	s->state = S_QUIT;
	session_send(s, "QUIT\r\n");
	session_timer(s, s->c->set.timeouts.quit);
}

static struct smtp_session *session_new(struct smtp_delivery *d, const struct addr_entry *a)
{
	struct smtp_client *c = d->c;
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	s->c = c;
	s->d = d;
	s->key = xstrdup(d->key);
	s->host = xstrdup(d->hosts[d->host_idx].name);
	s->port = d->hosts[d->host_idx].port;
	s->host_idx = d->host_idx;
	snprintf(s->addr, sizeof(s->addr), "%s", a->text);
	smtp_reply_parser_init(&s->parser, c->set.max_reply_line, c->set.max_reply_lines, 0);
	s->timer = evtimer_new(c->base, session_timer_cb, s);
	s->next = c->sessions;
	if (c->sessions != NULL)
		c->sessions->prev = s;
	c->sessions = s;
	return s;
}

/*
 * The current host/address failed at session level: remember why, give back
 * the recipients accepted in this transaction, close, and try the next address.
 */
static void session_fail(struct smtp_session *s, int code, const char *enh, const char *text, bool remote)
{
	struct smtp_delivery *d = s->d;
	char msg[512];

	if (d == NULL) {
		session_close(s, false);
		return;
	}
	if (d->reused_session) {
		/* a pooled connection went bad: one fresh start, no blame on the host */
		d->reused_session = false;
		session_close(s, false);
		delivery_start_fresh(d);
		return;
	}
	if (remote) {
		snprintf(msg, sizeof(msg), "%s", text);
	} else {
		snprintf(msg, sizeof(msg), "%s[%s]:%u: %s", s->host, s->addr, s->port, text);
	}
	set_last_error(d, code, enh, msg, remote);
	for (size_t i = 0; i < d->rcpt_count; i++)
		d->rcpts[i].accepted = false;
	log_info("outbound event=session-failed id=%s host=%s addr=%s state=%s code=%d error=\"%.200s\"",
	         d->queue_id != NULL ? d->queue_id : "-", s->host, s->addr, state_names[s->state], code, text);
	/* 421 here means timeout, connection or protocol trouble: no QUIT then */
	bool polite = remote || code != 421;
	session_close(s, polite);
	d->s = NULL;
	d->no_tls = false;
	d->addr_idx++;
	delivery_try_addr(d);
}

static void session_fail_reply(struct smtp_session *s, const char *def4, const char *def5)
{
	/* any 5xx before a transaction is still a reason to try the next host (RFC 5321 5.1) */
	session_fail(s, s->rep->code, reply_enh(s->rep, def4, def5), s->rep->text.data, true);
}

static void session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	char msg[128];

	if (s->state == S_QUIT || s->parked) {
		session_close(s, s->parked);
		return;
	}
	snprintf(msg, sizeof(msg), "timeout while waiting for %s", state_names[s->state]);
	session_fail(s, 421, "4.4.2", msg, false);
}

/* ------------------------------------------------------------------ protocol steps */

static void parse_ehlo(struct smtp_session *s)
{
	static const struct { unsigned from, to; } map[] = {
		{ SMTP_EHLO_PIPELINING, CAP_PIPELINING }, { SMTP_EHLO_SIZE, CAP_SIZE },
		{ SMTP_EHLO_8BITMIME, CAP_8BITMIME },     { SMTP_EHLO_SMTPUTF8, CAP_SMTPUTF8 },
		{ SMTP_EHLO_DSN, CAP_DSN },               { SMTP_EHLO_STARTTLS, CAP_STARTTLS },
		{ SMTP_EHLO_AUTH, CAP_AUTH },             { SMTP_EHLO_ENHANCEDSTATUSCODES, CAP_ENHANCED },
		{ SMTP_EHLO_CHUNKING, CAP_CHUNKING },
	};
	struct smtp_ehlo e;
	s->caps = 0;
	s->peer_size = 0;
	s->auth_mechs = 0;
	if (smtp_reply_ehlo_parse(s->rep, &e) < 0)
		return;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (e.caps & map[i].from)
			s->caps |= map[i].to;
	s->peer_size = e.size;
	char *save = NULL;
	for (char *m = strtok_r(e.auth, " ", &save); m != NULL; m = strtok_r(NULL, " ", &save)) {
		if (strcmp(m, "PLAIN") == 0)
			s->auth_mechs |= AUTH_PLAIN;
		else if (strcmp(m, "LOGIN") == 0)
			s->auth_mechs |= AUTH_LOGIN;
	}
	if (s->auth_mechs != 0)
		s->caps |= CAP_AUTH;
}

static void send_ehlo(struct smtp_session *s)
{
	s->state = S_EHLO;
	session_send(s, "EHLO %s\r\n", s->c->helo_name);
	session_timer(s, s->c->set.timeouts.helo);
}

static void tls_event_cb(struct bufferevent *bev, short what, void *arg);

static void start_tls(struct smtp_session *s)
{
	struct smtp_delivery *d = s->d;
	SSL *ssl = SSL_new(s->c->ssl_ctx);
	struct bufferevent *tbev;

	/* DEPENDENCIES.md pitfall 3: anything the peer sent after 220 is not trusted */
	evbuffer_drain(bufferevent_get_input(s->bev), evbuffer_get_length(bufferevent_get_input(s->bev)));
	if (ssl == NULL) {
		session_fail(s, 454, "4.7.0", "cannot create TLS session", false);
		return;
	}
	if (inet_pton(AF_INET, s->host, &(struct in6_addr){ 0 }) != 1 &&
	    inet_pton(AF_INET6, s->host, &(struct in6_addr){ 0 }) != 1)
		SSL_set_tlsext_host_name(ssl, s->host);
	const char *derr = NULL;
	int armed = d->tlsa != NULL ? dane_arm(ssl, s->host, d->domain, d->tlsa->tlsa, d->tlsa->count, &derr) : 0;
	if (armed < 0) {
		SSL_free(ssl);
		session_fail(s, 454, "4.7.5", derr, false);
		return;
	}
	if (armed > 0) {
		/* DANE decides (dane_arm set SSL_VERIFY_PEER) */
	} else if (d->tls_verify) {
		SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		SSL_set1_host(ssl, s->host);
	} else if (d->sts_have && d->sts.mode == MTA_STS_MODE_TESTING) {
		/* report only: verified, the result read after the handshake */
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		SSL_set1_host(ssl, s->host);
	} else {
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
	}
	tbev = bufferevent_openssl_filter_new(s->c->base, s->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                      BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (tbev == NULL) {
		SSL_free(ssl);
		session_fail(s, 454, "4.7.0", "cannot start TLS", false);
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tbev, 1);
	s->bev = tbev;
	s->state = S_TLS_HANDSHAKE;
	bufferevent_setcb(tbev, session_read_cb, session_write_cb, tls_event_cb, s);
	bufferevent_enable(tbev, EV_READ | EV_WRITE);
	session_timer(s, s->c->set.timeouts.helo);
}

static void tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;
	if (s->state == S_TLS_HANDSHAKE && (what & BEV_EVENT_CONNECTED) != 0) {
		SSL *ssl = bufferevent_openssl_get_ssl(bev);
		log_info("outbound event=tls id=%s host=%s addr=%s protocol=%s cipher=%s verified=%s",
		         s->d != NULL && s->d->queue_id != NULL ? s->d->queue_id : "-", s->host, s->addr,
		         ssl != NULL ? SSL_get_version(ssl) : "?",
		         ssl != NULL ? SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)) : "?",
		         s->d != NULL && s->d->tlsa != NULL ? "dane" : s->d != NULL && s->d->tls_verify ? "yes" : "no");
		if (s->d != NULL && s->d->tlsa == NULL && !s->d->tls_verify && s->d->sts_have && ssl != NULL &&
		    SSL_get_verify_result(ssl) != X509_V_OK) {
			long v = SSL_get_verify_result(ssl);
			log_info("outbound event=mta-sts-testing id=%s host=%s verify=\"%s\"",
			         s->d->queue_id != NULL ? s->d->queue_id : "-", s->host, X509_verify_cert_error_string(v));
			tls_report(s->d, s->host, s->addr, tlsrpt_result_for_verify(v), X509_verify_cert_error_string(v));
		}
		s->tls = true;
		s->caps = 0; /* forget everything learnt in clear */
		smtp_reply_parser_deinit(&s->parser);
		smtp_reply_parser_init(&s->parser, s->c->set.max_reply_line, s->c->set.max_reply_lines, 0);
		send_ehlo(s);
		return;
	}
	if (s->state == S_TLS_HANDSHAKE && (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) != 0) {
		struct smtp_delivery *d = s->d;
		char msg[256];
		unsigned long e = bufferevent_get_openssl_error(bev);
		snprintf(msg, sizeof(msg), "TLS handshake failed: %s",
		         e != 0 ? ERR_reason_error_string(e) != NULL ? ERR_reason_error_string(e) : "error"
		                : "connection closed");
		if (d != NULL) {
			SSL *fssl = bufferevent_openssl_get_ssl(bev);
			long v = fssl != NULL ? SSL_get_verify_result(fssl) : X509_V_OK;
			if (v != X509_V_OK) {
				size_t ml = strlen(msg);
				snprintf(msg + ml, sizeof(msg) - ml, " (%s%s)", d->tlsa != NULL ? "DANE: " : "",
				         X509_verify_cert_error_string(v));
			}
			tls_report(d, s->host, s->addr, v != X509_V_OK ? tlsrpt_result_for_verify(v) : "validation-failure",
			           msg);
		}
		if (d != NULL && eff_tls(d) == SMTP_TLS_MAY && !d->no_tls) {
			/* opportunistic: same address again, in clear */
			set_last_error(d, 454, "4.7.0", msg, false);
			d->no_tls = true;
			session_close(s, false);
			delivery_try_addr(d);
			return;
		}
		session_fail(s, 454, "4.7.0", msg, false);
		return;
	}
	session_event_cb(bev, what, arg);
}

static void base64_encode(struct buf *out, const unsigned char *in, size_t len)
{
	char *tmp = xmalloc(4 * ((len + 2) / 3) + 1);
	int n = EVP_EncodeBlock((unsigned char *)tmp, in, (int)len);
	buf_append(out, tmp, (size_t)n);
	secret_zero(tmp, (size_t)n);
	free(tmp);
}

static void send_auth(struct smtp_session *s)
{
	struct smtp_delivery *d = s->d;
	struct buf b;
	buf_init(&b, 4096);
	if (s->auth_mechs & AUTH_PLAIN) {
		size_t ul = strlen(d->auth_user), pl = strlen(d->auth_pass);
		unsigned char *raw = xmalloc(ul + pl + 2);
		raw[0] = 0;
		memcpy(raw + 1, d->auth_user, ul);
		raw[1 + ul] = 0;
		memcpy(raw + 2 + ul, d->auth_pass, pl);
		buf_append_str(&b, "AUTH PLAIN ");
		base64_encode(&b, raw, ul + pl + 2);
		buf_append_str(&b, "\r\n");
		secret_zero(raw, ul + pl + 2);
		free(raw);
		s->auth_step = 10;
	} else {
		buf_append_str(&b, "AUTH LOGIN\r\n");
		s->auth_step = 0;
	}
	evbuffer_add(bufferevent_get_output(s->bev), b.data, b.len);
	secret_zero(b.data, b.len);
	buf_deinit(&b);
	s->state = S_AUTH;
	session_timer(s, s->c->set.timeouts.helo);
}

static void auth_reply(struct smtp_session *s)
{
	struct smtp_delivery *d = s->d;
	int code = s->rep->code;
	if (code == 235) {
		after_helo(s);
		return;
	}
	if (code == 334 && s->auth_step < 2) {
		struct buf b;
		const char *v = s->auth_step == 0 ? d->auth_user : d->auth_pass;
		buf_init(&b, 4096);
		base64_encode(&b, (const unsigned char *)v, strlen(v));
		buf_append_str(&b, "\r\n");
		evbuffer_add(bufferevent_get_output(s->bev), b.data, b.len);
		secret_zero(b.data, b.len);
		buf_deinit(&b);
		s->auth_step++;
		session_timer(s, s->c->set.timeouts.helo);
		return;
	}
	if (code == 334) {
		session_fail(s, 454, "4.7.0", "unexpected AUTH challenge", false);
		return;
	}
	/* a rejected login is a configuration problem: defer, try the other hosts */
	session_fail(s, code >= 500 ? 454 : code, code >= 500 ? "4.7.8" : reply_enh(s->rep, "4.7.0", "5.7.8"),
	             s->rep->text.data, true);
}

/* Called once EHLO/HELO (and TLS) is done, or again after AUTH succeeded. */
static void after_helo(struct smtp_session *s)
{
	struct smtp_delivery *d = s->d;
	if (eff_tls(d) == SMTP_TLS_REQUIRE && !s->tls) {
		tls_report(d, s->host, s->addr, "starttls-not-supported", "STARTTLS not offered");
		session_fail(s, 454, "4.7.4",
		             d->tlsa != NULL || d->dane_unauth ? "TLS is required (DANE) but was not offered"
		                                              : "TLS is required but was not offered", false);
		return;
	}
	if (d->auth_user != NULL && s->state != S_AUTH) {
		if (!s->tls) {
			session_fail(s, 454, "4.7.0", "not sending credentials without TLS", false);
			return;
		}
		if ((s->caps & CAP_AUTH) == 0 || (s->auth_mechs & (AUTH_PLAIN | AUTH_LOGIN)) == 0) {
			session_fail(s, 454, "4.7.0", "AUTH PLAIN/LOGIN not offered", false);
			return;
		}
		send_auth(s);
		return;
	}
	start_transaction(s);
}

static void body_fill(struct smtp_session *s);
static void body_init(struct smtp_session *s);
static void bdat_next(struct smtp_session *s);

static void send_rcpt(struct smtp_session *s, size_t tx_i)
{
	struct smtp_delivery *d = s->d;
	struct rcpt_state *r = &d->rcpts[d->tx[tx_i]];
	struct evbuffer *out = bufferevent_get_output(s->bev);
	evbuffer_add_printf(out, "RCPT TO:<%s>", r->address);
	if (s->caps & CAP_DSN) {
		if (r->notify != NULL)
			evbuffer_add_printf(out, " NOTIFY=%s", r->notify);
		if (r->orcpt != NULL)
			evbuffer_add_printf(out, " ORCPT=%s", r->orcpt);
	}
	evbuffer_add(out, "\r\n", 2);
}

static void start_transaction(struct smtp_session *s)
{
	struct smtp_delivery *d = s->d;
	char msg[256];

	if ((s->caps & CAP_SIZE) && s->peer_size > 0 && (unsigned long long)d->size > s->peer_size) {
		snprintf(msg, sizeof(msg), "message size %lld exceeds the limit of %s (%llu)", (long long)d->size,
		         s->host, s->peer_size);
		fail_all_pending(d, SMTP_RCPT_PERMFAIL, 552, "5.3.4", msg, false);
		delivery_finish(d);
		return;
	}
	if (d->smtputf8 && (s->caps & CAP_SMTPUTF8) == 0) {
		snprintf(msg, sizeof(msg), "%s does not support SMTPUTF8, needed by this message", s->host);
		fail_all_pending(d, SMTP_RCPT_PERMFAIL, 553, "5.6.7", msg, false);
		delivery_finish(d);
		return;
	}
	d->downgrade = false;
	if (d->body_8bit && (s->caps & CAP_8BITMIME) == 0) {
		/* RFC 6152 3: convert to 7 bits when we can, else bounce */
		const char *why = "cannot read the message";
		char *head = xmalloc(MIME7BIT_MAX_HEADER);
		ssize_t n = pread(d->fd, head, MIME7BIT_MAX_HEADER, 0);
		buf_reset(&d->conv_hdr);
		if (n < 0 || mime7bit_header(head, (size_t)n, &d->conv_hdr, &d->body_off, &why) != 1) {
			free(head);
			snprintf(msg, sizeof(msg),
			         "%s does not support 8BITMIME and the 8-bit message cannot be converted: %s", s->host,
			         why);
			fail_all_pending(d, SMTP_RCPT_PERMFAIL, 554, "5.6.3", msg, false);
			delivery_finish(d);
			return;
		}
		free(head);
		d->downgrade = true;
	}

	d->tx_count = d->tx_sent = d->tx_replied = 0;
	for (size_t i = 0; i < d->rcpt_count; i++) {
		d->rcpts[i].accepted = false;
		if (!d->rcpts[i].final)
			d->tx[d->tx_count++] = i;
	}
	if (d->tx_count == 0) {
		delivery_finish(d);
		return;
	}
	struct evbuffer *out = bufferevent_get_output(s->bev);
	evbuffer_add_printf(out, "MAIL FROM:<%s>", d->sender);
	if (s->caps & CAP_SIZE)
		evbuffer_add_printf(out, " SIZE=%lld", (long long)d->size);
	if (d->body_8bit && !d->downgrade)
		evbuffer_add_printf(out, " BODY=8BITMIME");
	if (d->smtputf8)
		evbuffer_add_printf(out, " SMTPUTF8");
	if (s->caps & CAP_DSN) {
		if (d->ret != NULL)
			evbuffer_add_printf(out, " RET=%s", d->ret);
		if (d->envid != NULL)
			evbuffer_add_printf(out, " ENVID=%s", d->envid);
	}
	evbuffer_add(out, "\r\n", 2);
	if (s->caps & CAP_PIPELINING) {
		for (size_t i = 0; i < d->tx_count; i++)
			send_rcpt(s, i);
		d->tx_sent = d->tx_count;
	}
	s->uses++;
	s->state = S_MAIL;
	session_timer(s, s->c->set.timeouts.mail);
}

static void send_data_or_finish(struct smtp_session *s)
{
	struct smtp_delivery *d = s->d;
	bool any = false;
	for (size_t i = 0; i < d->tx_count; i++)
		any |= d->rcpts[d->tx[i]].accepted;
	if (!any) {
		/* every recipient has a final answer; the session stays usable (RSET on reuse) */
		s->state = S_IDLE;
		evtimer_del(s->timer);
		delivery_finish(d);
		return;
	}
	if ((s->caps & CAP_CHUNKING) && s->c->set.chunking) {
		body_init(s);
		bdat_next(s);
		return;
	}
	s->state = S_DATA;
	session_send(s, "DATA\r\n");
	session_timer(s, s->c->set.timeouts.data_init);
}

static void rcpt_reply(struct smtp_session *s)
{
	struct smtp_delivery *d = s->d;
	struct rcpt_state *r = &d->rcpts[d->tx[d->tx_replied++]];
	int code = s->rep->code;

	if (code == 421) {
		/* the server is going away: a session failure, not this recipient's */
		session_fail_reply(s, "4.0.0", "5.0.0");
		return;
	}
	if (code >= 200 && code < 300) {
		r->accepted = true;
	} else if (code < 500) {
		rcpt_set(d, r, SMTP_RCPT_TEMPFAIL, true, code, reply_enh(s->rep, "4.0.0", "5.0.0"),
		         s->rep->text.data, true);
	} else {
		rcpt_set(d, r, SMTP_RCPT_PERMFAIL, true, code, reply_enh(s->rep, "4.0.0", "5.0.0"),
		         s->rep->text.data, true);
	}
	if (d->tx_replied < d->tx_count) {
		if (d->tx_sent < d->tx_replied + 1) {
			send_rcpt(s, d->tx_sent++);
		}
		session_timer(s, s->c->set.timeouts.rcpt);
		return;
	}
	send_data_or_finish(s);
}

static void mail_reply(struct smtp_session *s)
{
	struct smtp_delivery *d = s->d;
	int code = s->rep->code;
	if (code >= 200 && code < 300) {
		s->state = S_RCPT;
		if (d->tx_sent == 0)
			send_rcpt(s, d->tx_sent++);
		session_timer(s, s->c->set.timeouts.rcpt);
		return;
	}
	if (code >= 500) {
		fail_all_pending(d, SMTP_RCPT_PERMFAIL, code, reply_enh(s->rep, "4.0.0", "5.0.0"),
		                 s->rep->text.data, true);
		session_close(s, true);
		delivery_finish(d);
		return;
	}
	session_fail_reply(s, "4.0.0", "5.0.0");
}

static void data_end_reply(struct smtp_session *s, bool final)
{
	struct smtp_delivery *d = s->d;
	int code = s->rep->code;
	if (code >= 400 && code < 500) {
		session_fail_reply(s, "4.0.0", "5.0.0");
		return;
	}
	if (code < 200 || (code >= 300 && code < 400)) {
		session_fail(s, 421, "4.5.0", "unexpected reply code after DATA", false);
		return;
	}
	for (size_t i = 0; i < d->tx_count; i++) {
		struct rcpt_state *r = &d->rcpts[d->tx[i]];
		if (!r->accepted)
			continue;
		r->accepted = false;
		if (code >= 200 && code < 300 && final) {
			rcpt_set(d, r, SMTP_RCPT_DELIVERED, true, code, reply_enh(s->rep, "2.0.0", "2.0.0"),
			         s->rep->text.data, true);
			r->dsn_passed = (s->caps & CAP_DSN) != 0;
		}
		else
			rcpt_set(d, r, SMTP_RCPT_PERMFAIL, true, code, reply_enh(s->rep, "4.0.0", "5.0.0"),
			         s->rep->text.data, true);
	}
	s->state = S_IDLE;
	evtimer_del(s->timer);
	delivery_finish(d);
}

#define CANON_MAX (BODY_CHUNK * 5 + 64) /* QP (< 3.2x) then CRLF (< 1.5x of that): bounded */

/* Bare LF → CRLF across pieces; tracks whether the output ends a line. */
static size_t canon(struct smtp_session *s, const char *in, size_t n, char *out)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = in[i];
		if (ch == '\n' && !s->data_prev_cr)
			out[k++] = '\r';
		out[k++] = ch;
		s->data_prev_cr = ch == '\r';
		s->data_bol = ch == '\n';
	}
	return k;
}

/*
 * The next piece of the message in canonical form (CRLF line ends, the 8-bit
 * downgrade applied, a final CRLF added). Returns its length (0 only at EOF,
 * with *eof_r set), or -1 on a read error.
 */
static ssize_t body_produce(struct smtp_session *s, char *out, bool *eof_r)
{
	struct smtp_delivery *d = s->d;
	char *in;
	size_t k = 0;

	*eof_r = false;
	if (d->downgrade && s->hdr_off < d->conv_hdr.len) {
		size_t n = d->conv_hdr.len - s->hdr_off < BODY_CHUNK ? d->conv_hdr.len - s->hdr_off : BODY_CHUNK;
		k = canon(s, d->conv_hdr.data + s->hdr_off, n, out);
		s->hdr_off += n;
		if (s->hdr_off == d->conv_hdr.len) {
			s->data_off = (off_t)d->body_off;
			mime7bit_qp_init(&d->qp);
		}
		return (ssize_t)k;
	}
	in = xmalloc(BODY_CHUNK);
	ssize_t n;
	do {
		n = pread(d->fd, in, BODY_CHUNK, s->data_off);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		free(in);
		return -1;
	}
	struct buf qp;
	buf_init(&qp, BODY_CHUNK * 4 + 64);
	if (n == 0) {
		*eof_r = true;
		s->data_eof = true;
		if (d->downgrade) {
			(void)mime7bit_qp_finish(&d->qp, &qp);
			k = canon(s, qp.data, qp.len, out);
		}
		if (!s->data_bol)
			k += canon(s, "\n", 1, out + k);
	} else if (d->downgrade) {
		(void)mime7bit_qp_feed(&d->qp, in, (size_t)n, &qp); /* sized for the worst case */
		k = canon(s, qp.data, qp.len, out);
	} else {
		k = canon(s, in, (size_t)n, out);
	}
	s->data_off += n;
	buf_deinit(&qp);
	free(in);
	return (ssize_t)k;
}

static void body_read_failed(struct smtp_session *s)
{
	struct smtp_delivery *d = s->d;
	/* our own problem, not the peer's: defer everything, drop the connection mid-DATA */
	set_last_error(d, 451, "4.3.0", "cannot read the queued message", false);
	fail_all_pending(d, SMTP_RCPT_TEMPFAIL, 451, "4.3.0", "cannot read the queued message", false);
	session_close(s, false);
	delivery_finish(d);
}

/* DATA: append pieces, dot-stuffed (RFC 5321 4.5.2), until the high-water mark; the end marker at EOF. */
static void body_fill(struct smtp_session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	char *c = xmalloc(CANON_MAX);
	char *o = xmalloc(CANON_MAX * 2);
	bool eof = false;

	while (!eof && evbuffer_get_length(out) < BODY_HIGH_WATER) {
		ssize_t n = body_produce(s, c, &eof);
		if (n < 0) {
			free(c);
			free(o);
			body_read_failed(s);
			return;
		}
		size_t k = 0;
		for (ssize_t i = 0; i < n; i++) {
			if (s->stuff_bol && c[i] == '.')
				o[k++] = '.';
			o[k++] = c[i];
			s->stuff_bol = c[i] == '\n';
		}
		evbuffer_add(out, o, k);
	}
	free(c);
	free(o);
	if (eof) {
		evbuffer_add(out, ".\r\n", 3);
		bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
		s->state = S_DOT;
		session_timer(s, s->c->set.timeouts.data_final);
	}
}

/* BDAT (RFC 3030): one chunk per command, each answered before the next; LAST after EOF. */
static void bdat_next(struct smtp_session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	char *c = xmalloc(CANON_MAX);
	bool eof = false;
	ssize_t n = body_produce(s, c, &eof);
	if (n < 0) {
		free(c);
		body_read_failed(s);
		return;
	}
	evbuffer_add_printf(out, "BDAT %zd%s\r\n", n, eof ? " LAST" : "");
	evbuffer_add(out, c, (size_t)n);
	free(c);
	s->state = eof ? S_BDAT_LAST : S_BDAT;
	session_timer(s, eof ? s->c->set.timeouts.data_final : s->c->set.timeouts.data_block);
}

static void body_init(struct smtp_session *s)
{
	s->data_off = 0;
	s->hdr_off = 0;
	s->data_bol = true;
	s->data_prev_cr = false;
	s->data_eof = false;
	s->stuff_bol = true;
}

static void start_body(struct smtp_session *s)
{
	body_init(s);
	s->state = S_BODY;
	bufferevent_setwatermark(s->bev, EV_WRITE, BODY_LOW_WATER, 0);
	session_timer(s, s->c->set.timeouts.data_block);
	body_fill(s);
}

static void session_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	if (s->state == S_BODY) {
		session_timer(s, s->c->set.timeouts.data_block);
		body_fill(s);
	}
}

static void mark_reached(struct smtp_session *s)
{
	struct smtp_delivery *d = s->d;
	if (d->host_state != NULL && s->host_idx < d->host_count)
		d->host_state[s->host_idx] = SMTP_HOST_REACHED;
}

/* The one positive reply each step accepts (RFC 5321 4.3.2); 0 where several are handled. */
static int success_code(enum sess_state st)
{
	switch (st) {
	case S_BANNER:
	case S_STARTTLS: return 220;
	case S_DATA: return 354;
	case S_AUTH: return 0;
	default: return 250;
	}
}

/* One complete reply arrived. */
static void handle_reply(struct smtp_session *s)
{
	struct smtp_delivery *d = s->d;
	int code = s->rep->code;
	enum sess_state st = s->state;

	if (st == S_QUIT) {
		session_free(s);
		return;
	}
	if (d == NULL || st == S_IDLE || st == S_CONNECTING || st == S_TLS_HANDSHAKE || st == S_BODY) {
		/* unsolicited (e.g. 421 on an idle connection, or a reply in the middle of DATA) */
		if (d != NULL) {
			session_fail(s, code >= 400 && code < 500 ? code : 421, "4.4.2",
			             "unexpected reply from the server", false);
		} else {
			session_close(s, false);
		}
		return;
	}
	if (code < 400 && success_code(st) != 0 && code != success_code(st) && !(st == S_RCPT && code == 251)) {
		/* a positive reply of the wrong kind: the peer is confused or we are out of step */
		char msg[96];
		snprintf(msg, sizeof(msg), "unexpected reply %d to %s", code, state_names[st]);
		session_fail(s, 421, "4.5.0", msg, false);
		return;
	}
	switch (st) {
	case S_BANNER:
		if (code >= 200 && code < 300)
			send_ehlo(s);
		else
			session_fail_reply(s, "4.0.0", "5.0.0");
		break;
	case S_EHLO:
		if (code >= 200 && code < 300) {
			mark_reached(s);
			parse_ehlo(s);
			if (!s->tls && eff_tls(d) != SMTP_TLS_NONE && !d->no_tls && (s->caps & CAP_STARTTLS)) {
				s->state = S_STARTTLS;
				session_send(s, "STARTTLS\r\n");
				session_timer(s, s->c->set.timeouts.helo);
			} else {
				after_helo(s);
			}
		} else if (code >= 500 && code != 554) {
			s->state = S_HELO;
			session_send(s, "HELO %s\r\n", s->c->helo_name);
			session_timer(s, s->c->set.timeouts.helo);
		} else {
			session_fail_reply(s, "4.0.0", "5.0.0");
		}
		break;
	case S_HELO:
		if (code >= 200 && code < 300) {
			mark_reached(s);
			s->caps = 0;
			after_helo(s);
		} else {
			session_fail_reply(s, "4.0.0", "5.0.0");
		}
		break;
	case S_STARTTLS:
		if (code == 220)
			start_tls(s);
		else if (eff_tls(d) == SMTP_TLS_REQUIRE) {
			tls_report(d, s->host, s->addr, "starttls-not-supported", s->rep->text.data);
			session_fail_reply(s, "4.7.0", "5.7.0");
		}
		else
			after_helo(s);
		break;
	case S_AUTH:
		auth_reply(s);
		break;
	case S_RSET:
		if (code >= 200 && code < 300) {
			start_transaction(s);
		} else {
			/* a reused session that went bad: start over on a fresh one, no blame */
			d->reused_session = false;
			session_close(s, false);
			delivery_start_fresh(d);
		}
		break;
	case S_MAIL:
		mail_reply(s);
		break;
	case S_RCPT:
		rcpt_reply(s);
		break;
	case S_DATA:
		if (code == 354)
			start_body(s);
		else
			data_end_reply(s, false);
		break;
	case S_DOT:
	case S_BDAT_LAST:
		data_end_reply(s, true);
		break;
	case S_BDAT:
		if (code >= 200 && code < 300)
			bdat_next(s);
		else
			data_end_reply(s, false);
		break;
	default:
		break;
	}
}

static void session_read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (evbuffer_get_length(in) > 0) {
		size_t avail = evbuffer_get_contiguous_space(in), consumed = 0;
		const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)avail);
		const struct smtp_reply *reply = NULL;
		const char *err = NULL;

		if (s->parked) {
			/* the peer talks to an idle connection (usually 421): drop it */
			session_close(s, false);
			return;
		}
		int r = smtp_reply_parser_feed(&s->parser, data, avail, &consumed, &reply, &err);
		evbuffer_drain(in, consumed);
		if (r == SMTP_REPLY_INVALID) {
			if (s->state == S_QUIT)
				session_free(s);
			else if (s->d != NULL)
				session_fail(s, 421, "4.5.0", err != NULL ? err : "invalid reply", false);
			else
				session_close(s, false);
			return;
		}
		if (r == SMTP_REPLY_AGAIN)
			continue;
		/*
		 * A complete reply. Handling it may close s (freeing is deferred
		 * while busy), park it, or start TLS (a new bev: whatever is left in
		 * the old input was dropped).
		 */
		s->rep = reply;
		s->busy = true;
		handle_reply(s);
		s->busy = false;
		s->rep = NULL;
		if (s->dead) {
			s->d = NULL;
			session_free(s);
			return;
		}
		if (s->bev != bev)
			return;
	}
}

static void session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;
	char msg[256];

	if (what & BEV_EVENT_CONNECTED) {
		s->state = S_BANNER;
		session_timer(s, s->c->set.timeouts.banner);
		return;
	}
	if (s->state == S_QUIT || s->d == NULL) {
		session_free(s);
		return;
	}
	int err = EVUTIL_SOCKET_ERROR();
	if (s->state == S_CONNECTING)
		snprintf(msg, sizeof(msg), "connect failed: %s", err != 0 ? strerror(err) : "error");
	else if (what & BEV_EVENT_EOF)
		snprintf(msg, sizeof(msg), "connection closed by the server while waiting for %s",
		         state_names[s->state]);
	else
		snprintf(msg, sizeof(msg), "connection error while waiting for %s: %s", state_names[s->state],
		         err != 0 ? strerror(err) : "error");
	session_fail(s, 421, "4.4.1", msg, false);
}

/* ------------------------------------------------------------------ delivery */

static void delivery_unlink(struct smtp_delivery *d)
{
	struct smtp_client *c = d->c;
	if (d->prev != NULL)
		d->prev->next = d->next;
	else if (c->deliveries == d)
		c->deliveries = d->next;
	if (d->next != NULL)
		d->next->prev = d->prev;
	d->prev = d->next = NULL;
}

static void delivery_free(struct smtp_delivery *d)
{
	if (!d->detached)
		delivery_unlink(d);
	if (d->s != NULL)
		session_close(d->s, false);
	dns_query_cancel(&d->q_mx);
	dns_query_cancel(&d->q_a);
	dns_query_cancel(&d->q_aaaa);
	dns_query_cancel(&d->q_tlsa);
	mta_sts_req_cancel(&d->sts_req);
	mta_sts_policy_clear(&d->sts);
	dns_result_free(&d->tlsa);
	dns_result_free(&d->res_a);
	dns_result_free(&d->res_aaaa);
	for (size_t i = 0; i < d->rcpt_count; i++) {
		struct rcpt_state *r = &d->rcpts[i];
		free(r->address);
		free(r->notify);
		free(r->orcpt);
		free(r->text);
		free(r->host);
		free(r->addr);
	}
	free(d->rcpts);
	for (size_t i = 0; i < d->host_count; i++)
		free(d->hosts[i].name);
	free(d->hosts);
	free(d->host_state);
	free(d->addrs);
	free(d->tx);
	free(d->queue_id);
	free(d->sender);
	free(d->envid);
	free(d->ret);
	free(d->domain);
	free(d->auth_user);
	if (d->auth_pass != NULL)
		secret_free(d->auth_pass);
	free(d->key);
	buf_deinit(&d->conv_hdr);
	free(d->last_text);
	free(d->last_host);
	free(d->last_addr);
	if (d->done_ev != NULL)
		event_free(d->done_ev);
	free(d);
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_delivery *d = arg;
	struct smtp_delivery_result res = { 0 };
	struct smtp_rcpt_result *rr = xcalloc(d->rcpt_count, sizeof(*rr));
	char q[600];

	for (size_t i = 0; i < d->rcpt_count; i++) {
		struct rcpt_state *r = &d->rcpts[i];
		rr[i].status = r->status;
		rr[i].code = r->code;
		rr[i].enh = r->enh;
		rr[i].text = r->text != NULL ? r->text : "";
		rr[i].remote = r->remote;
		rr[i].host = r->host != NULL ? r->host : "";
		rr[i].addr = r->addr != NULL ? r->addr : "";
		rr[i].dsn_passed = r->dsn_passed;
		switch (r->status) {
		case SMTP_RCPT_DELIVERED: res.delivered++; break;
		case SMTP_RCPT_TEMPFAIL: res.tempfail++; break;
		case SMTP_RCPT_PERMFAIL: res.permfail++; break;
		}
		log_info("outbound event=result id=%s to=%s relay=%s addr=%s status=%s code=%d dsn=%s reply=%s",
		         d->queue_id != NULL ? d->queue_id : "-", r->address, rr[i].host[0] ? rr[i].host : "none",
		         rr[i].addr[0] ? rr[i].addr : "-", smtp_rcpt_status_name(r->status), r->code, r->enh,
		         log_q(q, sizeof(q), rr[i].text));
	}
	res.rcpts = rr;
	res.rcpt_count = d->rcpt_count;
	res.tls = d->last_tls;
	res.hosts = d->host_state;
	res.host_count = d->host_state != NULL ? d->host_count : 0;
	/* detached: the callback may free the client or start new deliveries */
	delivery_unlink(d);
	d->detached = true;
	d->cb(d->arg, &res);
	free(rr);
	delivery_free(d);
}

/* Every recipient that is still undecided gets the last error; hand the session to the pool. */
static void delivery_finish(struct smtp_delivery *d)
{
	struct smtp_client *c = d->c;
	if (d->finished)
		return;
	d->finished = true;
	for (size_t i = 0; i < d->rcpt_count; i++) {
		struct rcpt_state *r = &d->rcpts[i];
		if (r->final)
			continue;
		if (d->last_text != NULL) {
			int code = d->last_code >= 400 && d->last_code < 500 ? d->last_code : 451;
			const char *enh = d->last_enh[0] == '4' ? d->last_enh : "4.4.0";
			rcpt_set(d, r, SMTP_RCPT_TEMPFAIL, true, code, enh, d->last_text, d->last_remote);
		} else {
			rcpt_set(d, r, SMTP_RCPT_TEMPFAIL, true, 451, "4.4.0", "no server could be reached", false);
		}
	}
	struct smtp_session *s = d->s;
	if (s != NULL) {
		d->last_tls = s->tls;
		d->s = NULL;
		s->d = NULL;
		if (s->state == S_IDLE && c->set.idle_ms > 0 && s->uses < c->set.max_reuse) {
			s->parked = true;
			session_timer(s, c->set.idle_ms);
		} else {
			session_close(s, true);
		}
	}
	dns_query_cancel(&d->q_mx);
	dns_query_cancel(&d->q_a);
	dns_query_cancel(&d->q_aaaa);
	dns_query_cancel(&d->q_tlsa);
	mta_sts_req_cancel(&d->sts_req);
	d->done_ev = evtimer_new(c->base, done_cb, d);
	struct timeval tv = { 0, 0 };
	evtimer_add(d->done_ev, &tv);
}

static void connect_addr(struct smtp_delivery *d, const struct addr_entry *a)
{
	struct smtp_client *c = d->c;
	struct smtp_session *s = session_new(d, a);
	d->s = s;
	d->addrs_tried++;
	if (d->host_state != NULL && d->host_state[d->host_idx] == SMTP_HOST_NOT_TRIED)
		d->host_state[d->host_idx] = SMTP_HOST_FAILED;
	s->state = S_CONNECTING;
	s->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb, session_event_cb, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	session_timer(s, c->set.timeouts.connect);
	log_debug("outbound event=connect id=%s host=%s addr=%s port=%u", d->queue_id ? d->queue_id : "-",
	          s->host, s->addr, s->port);
	if (bufferevent_socket_connect(s->bev, (const struct sockaddr *)&a->ss, (int)a->len) < 0) {
		char msg[160];
		snprintf(msg, sizeof(msg), "connect failed: %s", strerror(errno));
		session_fail(s, 421, "4.4.1", msg, false);
	}
}

static void delivery_try_addr(struct smtp_delivery *d)
{
	if (d->finished)
		return;
	if (d->addr_idx >= d->addr_count || d->addrs_tried >= d->c->set.max_addresses) {
		d->no_tls = false;
		if (d->addrs_tried >= d->c->set.max_addresses) {
			delivery_finish(d);
			return;
		}
		d->host_idx++;
		delivery_next_host(d);
		return;
	}
	connect_addr(d, &d->addrs[d->addr_idx]);
}

static void add_addr(struct smtp_delivery *d, const struct dns_addr *a, unsigned port)
{
	struct addr_entry *e;
	d->addrs = xreallocarray(d->addrs, d->addr_count + 1, sizeof(*d->addrs));
	e = &d->addrs[d->addr_count++];
	memset(e, 0, sizeof(*e));
	if (a->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&e->ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		sin->sin_addr = a->u.v4;
		e->len = sizeof(*sin);
		inet_ntop(AF_INET, &a->u.v4, e->text, sizeof(e->text));
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&e->ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		sin6->sin6_addr = a->u.v6;
		e->len = sizeof(*sin6);
		inet_ntop(AF_INET6, &a->u.v6, e->text, sizeof(e->text));
	}
}

static void tlsa_cb(void *arg, const struct dns_result *res)
{
	struct smtp_delivery *d = arg;
	struct target_host *h = &d->hosts[d->host_idx];
	char msg[300];
	d->q_tlsa = NULL;
	if (res->status == DNS_TEMPFAIL || res->bogus) {
		/* RFC 7672 2.2.1: the TLSA records of a secure host cannot be known: skip it */
		snprintf(msg, sizeof(msg), "%s: TLSA lookup failed (%s)", h->name,
		         res->bogus ? "DNSSEC bogus" : res->error != NULL ? res->error : "temporary failure");
		tls_report(d, h->name, NULL, "dnssec-invalid", msg);
		set_last_error(d, 451, "4.7.5", msg, false);
		d->host_idx++;
		delivery_next_host(d);
		return;
	}
	if (res->status == DNS_OK && res->secure) {
		if (dane_usable_count(res->tlsa, res->count) > 0)
			d->tlsa = dns_result_dup(res);
		else
			d->dane_unauth = true;
		log_info("outbound event=dane id=%s host=%s tlsa=%zu usable=%zu", d->queue_id != NULL ? d->queue_id : "-",
		         h->name, res->count, dane_usable_count(res->tlsa, res->count));
	}
	delivery_try_addr(d);
}

static void host_addrs_done(struct smtp_delivery *d)
{
	struct target_host *h = &d->hosts[d->host_idx];
	const struct dns_result *rs[2] = { d->res_a, d->res_aaaa };
	bool temp = false;
	char msg[300];

	d->addr_secure = false;
	for (int k = 0; k < 2; k++) {
		const struct dns_result *r = rs[k];
		if (r == NULL)
			continue;
		if (r->status == DNS_OK && r->secure)
			d->addr_secure = true;
		if (r->status == DNS_TEMPFAIL)
			temp = true;
		if (r->status != DNS_OK)
			continue;
		for (size_t i = 0; i < r->count; i++) {
			if (d->domain != NULL &&
			    mx_addr_is_self(&r->addr[i], d->c->set.own_addrs, d->c->set.own_addr_count)) {
				/* this MX is us: only better preferences may be used */
				bool better_tried = false;
				for (size_t j = 0; j < d->host_idx; j++)
					better_tried |= d->hosts[j].pref < h->pref;
				dns_result_free(&d->res_a);
				dns_result_free(&d->res_aaaa);
				if (!better_tried) {
					snprintf(msg, sizeof(msg), "mail for %s loops back to myself", d->domain);
					fail_all_pending(d, SMTP_RCPT_PERMFAIL, 554, "5.4.6", msg, false);
				}
				delivery_finish(d);
				return;
			}
			add_addr(d, &r->addr[i], h->port);
		}
	}
	dns_result_free(&d->res_a);
	dns_result_free(&d->res_aaaa);
	if (d->addr_count == 0) {
		snprintf(msg, sizeof(msg), "%s: %s", h->name,
		         temp ? "temporary failure looking up the address" : "host has no address");
		set_last_error(d, 451, temp ? "4.4.3" : "4.4.4", msg, false);
		if (!temp)
			d->hosts_unresolvable++;
		d->host_idx++;
		delivery_next_host(d);
		return;
	}
	/* RFC 7672 2.2: DANE only for a secure MX whose address records are secure too */
	if (d->c->set.dane && d->domain != NULL && d->mx_secure && d->addr_secure && d->c->set.dns != NULL) {
		d->q_tlsa = dns_lookup_tlsa(d->c->set.dns, h->name, h->port, tlsa_cb, d);
		return;
	}
	delivery_try_addr(d);
}

static void addr_cb(void *arg, const struct dns_result *res)
{
	struct smtp_delivery *d = arg;
	if (res->qtype == DNS_TYPE_A) {
		d->q_a = NULL;
		d->res_a = dns_result_dup(res);
	} else {
		d->q_aaaa = NULL;
		d->res_aaaa = dns_result_dup(res);
	}
	if (d->q_a == NULL && d->q_aaaa == NULL)
		host_addrs_done(d);
}

static bool parse_literal(const char *host, struct dns_addr *a)
{
	char tmp[INET6_ADDRSTRLEN + 2];
	size_t len = strlen(host);
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof(tmp)) {
		memcpy(tmp, host + 1, len - 2);
		tmp[len - 2] = '\0';
		if (strncasecmp(tmp, "IPv6:", 5) == 0)
			memmove(tmp, tmp + 5, strlen(tmp + 5) + 1);
	} else if (len < sizeof(tmp)) {
		memcpy(tmp, host, len + 1);
	} else {
		return false;
	}
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, tmp, &a->u.v4) == 1) {
		a->family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, tmp, &a->u.v6) == 1) {
		a->family = AF_INET6;
		return true;
	}
	return false;
}

static void delivery_next_host(struct smtp_delivery *d)
{
	if (d->finished)
		return;
	free(d->addrs);
	d->addrs = NULL;
	d->addr_count = d->addr_idx = 0;
	d->no_tls = false;
	dns_result_free(&d->tlsa);
	d->dane_unauth = false;
	if (d->host_idx >= d->host_count) {
		if (d->domain != NULL && d->implicit_mx && d->hosts_unresolvable == d->host_count) {
			char msg[300];
			snprintf(msg, sizeof(msg), "domain %s has no MX and no address", d->domain);
			fail_all_pending(d, SMTP_RCPT_PERMFAIL, 550, "5.4.4", msg, false);
		}
		delivery_finish(d);
		return;
	}
	struct target_host *h = &d->hosts[d->host_idx];
	struct dns_addr lit;
	if (parse_literal(h->name, &lit)) {
		add_addr(d, &lit, h->port);
		delivery_try_addr(d);
		return;
	}
	if (d->c->set.dns == NULL) {
		set_last_error(d, 451, "4.3.5", "no DNS resolver configured", false);
		delivery_finish(d);
		return;
	}
	d->q_a = dns_lookup_a(d->c->set.dns, h->name, addr_cb, d);
	d->q_aaaa = dns_lookup_aaaa(d->c->set.dns, h->name, addr_cb, d);
}

static void mx_cb(void *arg, const struct dns_result *res)
{
	struct smtp_delivery *d = arg;
	struct smtp_client *c = d->c;
	char msg[300];

	d->q_mx = NULL;
	switch (res->status) {
	case DNS_NULL_MX:
		snprintf(msg, sizeof(msg), "domain %s does not accept mail (null MX)", d->domain);
		fail_all_pending(d, SMTP_RCPT_PERMFAIL, 556, "5.1.10", msg, false);
		delivery_finish(d);
		return;
	case DNS_NXDOMAIN:
	case DNS_NODATA: /* NODATA cannot happen for MX (implicit MX), kept for safety */
		snprintf(msg, sizeof(msg), "domain %s not found", d->domain);
		fail_all_pending(d, SMTP_RCPT_PERMFAIL, 550, "5.1.2", msg, false);
		delivery_finish(d);
		return;
	case DNS_TEMPFAIL:
		snprintf(msg, sizeof(msg), "temporary failure looking up MX of %s: %s", d->domain,
		         res->error != NULL ? res->error : "");
		set_last_error(d, 451, "4.4.3", msg, false);
		delivery_finish(d);
		return;
	case DNS_OK:
		break;
	}
	bool self = false;
	size_t keep = mx_self_cut(res->mx, res->count, c->set.own_names, c->set.own_name_count, &self);
	if (keep == 0 && self) {
		snprintf(msg, sizeof(msg), "mail for %s loops back to myself", d->domain);
		fail_all_pending(d, SMTP_RCPT_PERMFAIL, 554, "5.4.6", msg, false);
		delivery_finish(d);
		return;
	}
	if (keep > c->set.max_mx_hosts)
		keep = c->set.max_mx_hosts;
	d->implicit_mx = res->implicit_mx;
	d->mx_secure = res->secure;
	d->hosts = xcalloc(keep + 1, sizeof(*d->hosts));
	size_t used = 0;
	for (size_t i = 0; i < keep; i++) {
		if (d->sts_have && !mta_sts_policy_allows(&d->sts, res->mx[i].host)) {
			snprintf(msg, sizeof(msg), "MX host %s of %s does not match its MTA-STS policy (%s)", res->mx[i].host,
			         d->domain, mta_sts_mode_name(d->sts.mode));
			log_info("outbound event=mta-sts-mismatch id=%s host=%s mode=%s", d->queue_id ? d->queue_id : "-",
			         res->mx[i].host, mta_sts_mode_name(d->sts.mode));
			tls_report(d, res->mx[i].host, NULL, "validation-failure", msg);
			if (d->sts.mode == MTA_STS_MODE_ENFORCE) {
				set_last_error(d, 451, "4.7.5", msg, false);
				continue;
			}
		}
		d->hosts[used].name = xstrdup(res->mx[i].host);
		d->hosts[used].pref = res->mx[i].pref;
		d->hosts[used].port = c->set.mx_port;
		used++;
	}
	keep = used;
	d->host_count = keep;
	if (keep == 0) {
		delivery_finish(d); /* every MX excluded by the MTA-STS policy: deferred with that reason */
		return;
	}
	d->host_state = xcalloc(keep + 1, sizeof(*d->host_state));
	d->host_idx = 0;
	delivery_next_host(d);
}

static void sts_cb(void *arg, const struct mta_sts_policy *p)
{
	struct smtp_delivery *d = arg;
	d->sts_req = NULL;
	d->sts_done = true;
	if (p != NULL && p->mode != MTA_STS_MODE_NONE) {
		mta_sts_policy_clear(&d->sts);
		mta_sts_policy_copy(&d->sts, p);
		d->sts_have = true;
		if (p->mode == MTA_STS_MODE_ENFORCE) {
			d->tls = SMTP_TLS_REQUIRE;
			d->tls_verify = true;
		}
	}
	delivery_start_fresh(d);
}

static void delivery_start_fresh(struct smtp_delivery *d)
{
	if (d->host_count > 0 || d->domain == NULL) {
		d->host_idx = 0;
		delivery_next_host(d);
		return;
	}
	if (d->c->set.dns == NULL) {
		set_last_error(d, 451, "4.3.5", "no DNS resolver configured", false);
		delivery_finish(d);
		return;
	}
	if (d->c->set.mta_sts != NULL && !d->sts_done) {
		d->sts_req = mta_sts_get(d->c->set.mta_sts, d->domain, sts_cb, d);
		return;
	}
	d->q_mx = dns_lookup_mx(d->c->set.dns, d->domain, mx_cb, d);
}

static char *dest_key(const struct smtp_destination *dest)
{
	struct buf b;
	buf_init(&b, 8192);
	if (dest->relays != NULL) {
		buf_append_str(&b, "relay:");
		for (size_t i = 0; i < dest->relay_count; i++)
			buf_printf(&b, "%s:%u,", dest->relays[i].host,
			           dest->relays[i].port != 0 ? dest->relays[i].port : 25);
	} else {
		buf_printf(&b, "mx:%s", dest->domain != NULL ? dest->domain : "");
	}
	buf_printf(&b, "|tls=%d%s|auth=%s", (int)dest->tls, dest->tls_verify ? "v" : "",
	           dest->auth_user != NULL ? dest->auth_user : "");
	for (size_t i = 0; i < b.len; i++)
		b.data[i] = (char)tolower((unsigned char)b.data[i]);
	char *k = buf_steal(&b);
	buf_deinit(&b);
	return k;
}

struct smtp_delivery *smtp_deliver(struct smtp_client *c, const struct smtp_envelope *env, int fd,
                                   const struct smtp_destination *dest, smtp_delivery_cb *cb, void *arg)
{
	struct smtp_delivery *d = xcalloc(1, sizeof(*d));

	d->c = c;
	d->cb = cb;
	d->arg = arg;
	d->fd = fd;
	d->next = c->deliveries;
	if (c->deliveries != NULL)
		c->deliveries->prev = d;
	c->deliveries = d;

	d->queue_id = env->queue_id != NULL ? xstrdup(env->queue_id) : NULL;
	bool need_utf8 = false;
	d->sender = address_alabel(env->sender != NULL ? env->sender : "", &need_utf8);
	d->envid = env->envid != NULL ? xstrdup(env->envid) : NULL;
	d->ret = env->ret != NULL ? xstrdup(env->ret) : NULL;
	d->smtputf8 = env->smtputf8;
	d->body_8bit = env->body_8bit;
	d->size = env->size;
	if (d->size == 0) {
		struct stat st;
		if (fstat(fd, &st) == 0)
			d->size = st.st_size;
	}
	d->rcpt_count = env->rcpt_count;
	d->rcpts = xcalloc(d->rcpt_count + 1, sizeof(*d->rcpts));
	d->tx = xcalloc(d->rcpt_count + 1, sizeof(*d->tx));
	for (size_t i = 0; i < d->rcpt_count; i++) {
		d->rcpts[i].address = address_alabel(env->rcpts[i].address, &need_utf8);
		d->rcpts[i].notify = env->rcpts[i].notify != NULL ? xstrdup(env->rcpts[i].notify) : NULL;
		d->rcpts[i].orcpt = env->rcpts[i].orcpt != NULL ? xstrdup(env->rcpts[i].orcpt) : NULL;
		if (!envelope_string_ok(d->rcpts[i].address) || d->rcpts[i].address[0] == '\0' ||
		    (d->rcpts[i].notify != NULL && !envelope_string_ok(d->rcpts[i].notify)) ||
		    (d->rcpts[i].orcpt != NULL && !envelope_string_ok(d->rcpts[i].orcpt)))
			rcpt_set(d, &d->rcpts[i], SMTP_RCPT_PERMFAIL, true, 553, "5.1.3",
			         "invalid recipient address", false);
	}
	/* UTF-8 left in the envelope needs SMTPUTF8 whatever the caller said about the content */
	d->smtputf8 |= need_utf8;
	d->tls = dest->tls;
	d->tls_verify = dest->tls_verify;
	d->auth_user = dest->auth_user != NULL ? xstrdup(dest->auth_user) : NULL;
	d->auth_pass = dest->auth_pass != NULL ? xstrdup(dest->auth_pass) : NULL;
	if (d->auth_user != NULL && d->auth_pass == NULL)
		d->auth_pass = xstrdup("");
	d->key = dest_key(dest);
	buf_init(&d->conv_hdr, MIME7BIT_MAX_HEADER + 256);
	if (dest->relays != NULL) {
		d->hosts = xcalloc(dest->relay_count + 1, sizeof(*d->hosts));
		for (size_t i = 0; i < dest->relay_count; i++) {
			d->hosts[i].name = xstrdup(dest->relays[i].host);
			d->hosts[i].port = dest->relays[i].port != 0 ? dest->relays[i].port : 25;
		}
		d->host_count = dest->relay_count;
		d->host_state = xcalloc(d->host_count + 1, sizeof(*d->host_state));
	} else {
		d->domain = xstrdup(dest->domain != NULL ? dest->domain : "");
	}

	if (!envelope_string_ok(d->sender) ||
	    (d->envid != NULL && !envelope_string_ok(d->envid)) || (d->ret != NULL && !envelope_string_ok(d->ret))) {
		fail_all_pending(d, SMTP_RCPT_PERMFAIL, 553, "5.1.7", "invalid sender or DSN parameters", false);
		delivery_finish(d);
		return d;
	}
	if ((d->domain != NULL && d->domain[0] == '\0') || (dest->relays != NULL && dest->relay_count == 0)) {
		fail_all_pending(d, SMTP_RCPT_PERMFAIL, 554, "5.4.4", "no destination", false);
		delivery_finish(d);
		return d;
	}
	bool any = false;
	for (size_t i = 0; i < d->rcpt_count; i++)
		any |= !d->rcpts[i].final;
	if (!any) {
		delivery_finish(d);
		return d;
	}

	/* a parked session to the same destination: RSET on it first */
	for (struct smtp_session *s = c->sessions; s != NULL; s = s->next) {
		if (!s->parked || strcmp(s->key, d->key) != 0)
			continue;
		s->parked = false;
		s->d = d;
		d->s = s;
		d->reused_session = true;
		s->state = S_RSET;
		session_send(s, "RSET\r\n");
		session_timer(s, c->set.timeouts.helo);
		/* the host list is still needed if RSET fails: only relays have one ready */
		return d;
	}
	/* defer the start so that nothing can call back before we return */
	delivery_start_fresh(d);
	return d;
}

void smtp_delivery_cancel(struct smtp_delivery **dp)
{
	struct smtp_delivery *d = *dp;
	if (d == NULL)
		return;
	*dp = NULL;
	delivery_free(d);
}
