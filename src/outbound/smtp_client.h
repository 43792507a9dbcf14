/*
 * smtp_client: the asynchronous outbound SMTP engine (RFC 5321 client side) on
 * the caller's libevent base. One call delivers one message to one destination
 * (a domain's MX hosts, or explicit relay hosts) and reports one result per
 * recipient through a callback that runs later on the loop, exactly once,
 * unless the delivery is cancelled first. It is not the queue scheduler: retry
 * timing, bouncing and DSN generation belong to the caller.
 *
 * Within one delivery every MX host (in preference order, equal preferences
 * shuffled) and each of its addresses (A first, then AAAA) is tried in order;
 * a connection failure, timeout, malformed reply or a 4xx/5xx before MAIL, or
 * a 4xx at MAIL or after DATA moves the recipients still undecided to the next
 * address. A 5xx at RCPT fails that recipient only; a 4xx at RCPT defers it.
 * Recipients never get a final result from a host that did not answer them.
 *
 * Protocol: banner, EHLO (HELO fallback on 5xx), STARTTLS when offered and the
 * policy is not NONE (REQUIRE: never MAIL in clear, defer instead; MAY: a failed
 * handshake retries that address once without TLS), AUTH PLAIN/LOGIN only inside
 * TLS, PIPELINING (MAIL+RCPTs in one batch), SIZE (peer limit too small →
 * permanent 552 5.3.4), 8BITMIME (8-bit body without it → quoted-printable or 554 5.6.3),
 * SMTPUTF8 (needed but missing → permanent 553 5.6.7), DSN (NOTIFY/ORCPT/RET/ENVID
 * passed on only when offered), DATA with dot-stuffing and CRLF normalization,
 * or BDAT chunks (RFC 3030, opt-in with settings.chunking) when CHUNKING is offered.
 * 8-bit single-part messages are downgraded to quoted-printable for a peer
 * without 8BITMIME (see mime7bit.h). Every wait has a timeout (RFC 5321 4.5.3.2
 * defaults, configurable). Replies are parsed by lib-smtp's smtp_reply (CRLF
 * only, line length, line count and text limits); anything malformed - bare LF,
 * endless multiline, garbage - is a temporary failure of that session (421
 * 4.5.0 with the parser's reason), never a crash or a stuck state.
 *
 * Sessions can be reused: after a successful transaction the connection is
 * parked in a per-client pool keyed by destination (MX domain or relay host
 * list, TLS policy, AUTH user) for idle_ms; the next delivery to the same key
 * starts with RSET on it, and falls back to a fresh connection if that fails.
 *
 * The process must ignore SIGPIPE (writes to a peer that closed).
 *
 * Memory: smtp_deliver copies the envelope and destination; the caller keeps
 * only the fd open (read with pread from offset 0; not closed by us) until the
 * callback. The result passed to the callback lives only during the call.
 */
/*
 * How the queue scheduler uses it (one client per deliver process, on its loop):
 *
 *   struct smtp_client_settings set = { .helo_name = cfg->hostname, .dns = resolver,
 *                                       .idle_ms = 30000, .own_names = names, ... };
 *   client = smtp_client_new(base, &set, &err);
 *   ...
 *   struct smtp_destination dest = { .domain = "example.org", .tls = SMTP_TLS_MAY };
 *       (or .relays = hosts, .relay_count = n from relay_group_order(), .auth_user...)
 *   struct smtp_envelope env = { .queue_id = id, .sender = from, .rcpts = r, .rcpt_count = n,
 *                                .envid = ..., .ret = ..., .smtputf8 = ..., .body_8bit = ... };
 *   d = smtp_deliver(client, &env, spool_fd, &dest, done_cb, job);
 *   done_cb(job, res): for each res->rcpts[i]: DELIVERED → done; TEMPFAIL → retry later;
 *       PERMFAIL → bounce with code/enh/text ("Diagnostic-Code: smtp; <code> <enh> <text>" when
 *       remote); relay groups: relay_report_delivery(group, order, n, res, now_ms).
 *   Close spool_fd after done_cb (or after smtp_delivery_cancel).
 *
 * One delivery = one destination: group recipients by domain (MX) or by route (relay)
 * before calling. Concurrency limits per destination are the scheduler's.
 */
#ifndef MR_SMTP_CLIENT_H
#define MR_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

struct event_base;
struct dns_resolver;
struct smtp_client;
struct smtp_delivery;

enum smtp_tls_policy {
	SMTP_TLS_NONE,    /* never STARTTLS */
	SMTP_TLS_MAY,     /* STARTTLS when offered (opportunistic, no verification unless tls_verify) */
	SMTP_TLS_REQUIRE, /* defer rather than send in clear */
};

/* All in milliseconds; 0 selects the RFC 5321 default shown. */
struct smtp_client_timeouts {
	unsigned connect;    /* 30 s */
	unsigned banner;     /* 5 min */
	unsigned helo;       /* 5 min (EHLO, STARTTLS, AUTH, RSET, TLS handshake) */
	unsigned mail;       /* 5 min */
	unsigned rcpt;       /* 5 min */
	unsigned data_init;  /* 2 min */
	unsigned data_block; /* 3 min without write progress */
	unsigned data_final; /* 10 min */
	unsigned quit;       /* 10 s; QUIT's reply is not waited for longer */
};

struct smtp_client_settings {
	const char *helo_name;           /* required: our hostname */
	struct dns_resolver *dns;        /* required for MX destinations and host names */
	SSL_CTX *tls_ctx;                /* client context; NULL = create one (system CAs) */
	const char *tls_ca_file;         /* extra CA file when tls_ctx is NULL (tests) */
	struct smtp_client_timeouts timeouts;
	unsigned mx_port;                /* port for MX delivery; default 25 (tests override) */
	unsigned max_mx_hosts;           /* default 5 */
	unsigned max_addresses;          /* addresses tried per delivery; default 10 */
	unsigned max_reply_lines;        /* 0 = lib-smtp default (100) */
	size_t max_reply_line;           /* bytes incl. CRLF; 0 = lib-smtp default (1000) */
	unsigned idle_ms;                /* pooled session lifetime; 0 = no reuse */
	unsigned max_reuse;              /* transactions per connection; default 100 */
	bool chunking;                   /* send with BDAT when the peer offers CHUNKING (RFC 3030) */
	/* our names and addresses: in any MX list (a backup-MX domain's too) only hosts with a better
	   preference than ours are used; when we are the best, "mail loops back to myself" (5.4.6) */
	const char *const *own_names;    /* our hostnames, for MX loop detection */
	size_t own_name_count;
	const char *const *own_addrs;    /* our IP addresses (text), for MX loop detection */
	size_t own_addr_count;
	/* Outbound TLS policy for MX delivery (not relays), see dane.h, mta_sts.h, tlsrpt.h:
	   DANE (RFC 7672): when the MX lookup, the host's addresses and its TLSA records
	   (_<port>._tcp.<host>) are all DNSSEC-secure and some record is usable, that host needs
	   STARTTLS and a certificate matching a record (OpenSSL DANE); a failure defers to the
	   next host, never a fallback to clear text. A secure TLSA set of only unusable records:
	   TLS required without authentication. A failed/bogus TLSA lookup: the host is skipped.
	   MTA-STS (RFC 8461), consulted before the MX lookup: enforce → only MX hosts matching
	   the policy, TLS required and verified (PKIX + name); testing → failures only recorded.
	   DANE wins over MTA-STS for a host where it applies. */
	bool dane;                       /* needs dns with a trust anchor */
	struct mta_sts *mta_sts;         /* NULL: no MTA-STS; owned by the caller */
	const char *tlsrpt_dir;          /* TLS failures as JSON lines (tlsrpt.h); NULL: logged only */
};

struct smtp_client *smtp_client_new(struct event_base *base, const struct smtp_client_settings *set,
                                    char **error_r);
/* Cancels pending deliveries (no callbacks) and closes pooled sessions. May be called from a
   delivery callback. */
void smtp_client_free(struct smtp_client **c);
/* Number of parked sessions (tests, metrics). */
size_t smtp_client_idle_count(const struct smtp_client *c);

struct smtp_relay_host {
	const char *host;   /* name, IPv4/IPv6 literal ("[::1]" allowed) */
	unsigned port;      /* 0 = 25 */
};

struct smtp_destination {
	const char *domain;                    /* MX delivery when relays == NULL */
	const struct smtp_relay_host *relays;  /* explicit hosts, tried in order (no MX lookup) */
	size_t relay_count;
	enum smtp_tls_policy tls;
	bool tls_verify;                       /* verify the chain and the host name */
	const char *auth_user;                 /* AUTH PLAIN/LOGIN, only ever inside TLS */
	const char *auth_pass;
};

struct smtp_envelope_rcpt {
	const char *address;   /* without <> */
	const char *notify;    /* DSN NOTIFY value ("SUCCESS,FAILURE", "NEVER") or NULL */
	const char *orcpt;     /* DSN ORCPT value ("rfc822;x@y", xtext) or NULL */
};

struct smtp_envelope {
	const char *queue_id;  /* for log lines; may be NULL */
	const char *sender;    /* "" for the null reverse-path */
	const char *envid;     /* DSN ENVID (xtext) or NULL */
	const char *ret;       /* DSN RET: "FULL" / "HDRS" or NULL */
	bool smtputf8;         /* the content (headers) needs SMTPUTF8. Envelope addresses are checked
	                          here: a UTF-8 domain with an ASCII local part is sent as its A-label
	                          (no SMTPUTF8 needed), a UTF-8 local part needs SMTPUTF8 */
	bool body_8bit;        /* body has 8-bit octets: needs BODY=8BITMIME */
	off_t size;            /* message size; 0 = fstat(fd) */
	const struct smtp_envelope_rcpt *rcpts;
	size_t rcpt_count;
};

enum smtp_rcpt_status {
	SMTP_RCPT_DELIVERED = 1, /* 2xx after the end of data */
	SMTP_RCPT_TEMPFAIL,      /* 4xx, connection failure, timeout: retry later */
	SMTP_RCPT_PERMFAIL,      /* 5xx (or a local permanent condition): bounce */
};

struct smtp_rcpt_result {
	enum smtp_rcpt_status status;
	int code;              /* the reply code, or a synthesized one (4xx/5xx) for local conditions */
	const char *enh;       /* enhanced status code "5.1.1" (synthesized when the peer sent none) */
	const char *text;      /* the peer's reply text (lines joined by '\n') or our diagnostic */
	bool remote;           /* true when code/text came from the peer (DSN Diagnostic-Code: smtp;) */
	const char *host;      /* the host that answered, or the last one tried ("" if none) */
	const char *addr;      /* its address "ip" or "" */
	bool dsn_passed;       /* DELIVERED to a peer with DSN: NOTIFY/ORCPT went along. When false and
	                          NOTIFY had SUCCESS, RFC 3461 4.1 wants a "relayed" DSN from us */
};

enum smtp_host_state {
	SMTP_HOST_NOT_TRIED,
	SMTP_HOST_FAILED,      /* no address of it got through EHLO/HELO (connect, banner, TLS, timeout...) */
	SMTP_HOST_REACHED,     /* it spoke SMTP with us: EHLO/HELO accepted on some address */
};

struct smtp_delivery_result {
	const struct smtp_rcpt_result *rcpts; /* same order as the envelope's */
	size_t rcpt_count;
	unsigned delivered, tempfail, permfail;
	bool tls;              /* the last session used TLS */
	/* per destination host (relays in the given order, or the MX hosts used): for relay health */
	const enum smtp_host_state *hosts;
	size_t host_count;
};

typedef void smtp_delivery_cb(void *arg, const struct smtp_delivery_result *res);

/*
 * Start delivering. Never calls cb before returning. Returns a handle valid until
 * cb runs or smtp_delivery_cancel. env->rcpt_count must be >= 1.
 */
struct smtp_delivery *smtp_deliver(struct smtp_client *c, const struct smtp_envelope *env, int fd,
                                   const struct smtp_destination *dest, smtp_delivery_cb *cb, void *arg);
/* Abort: the session is closed, cb never runs. Sets *d to NULL. */
void smtp_delivery_cancel(struct smtp_delivery **d);

const char *smtp_rcpt_status_name(enum smtp_rcpt_status st);

#endif
