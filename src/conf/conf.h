/*
 * conf: the YAML configuration (INTERFACE.md "Config keys"), loaded once by the
 * master (and by every CLI command) into a struct mr_config that is then
 * read-only and inherited by the roles over fork(). Relative paths are made
 * absolute against the working directory at load time, because roles chroot or
 * chdir. Errors are reported as "file:line:col: message" (allocated, caller
 * frees) and the CLI exits 2 on them. Lines and columns are 1-based; errors that
 * are not tied to a place (missing file, tls cert without key) use 0:0.
 *
 * YAML details: a null value (`key:` or `~`) keeps the default (for
 * subaddress_separator it disables subaddressing, like ""). Numbers are plain
 * decimal integers; sizes (limits.max_line_length, limits.max_message_size)
 * also take a k, M or G suffix (x1024). Booleans: true/false/yes/no.
 */
#ifndef MR_CONF_H
#define MR_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

enum listen_kind {
	LISTEN_MX,          /* port 25: inbound from the Internet, no AUTH needed for local domains */
	LISTEN_SUBMISSION,  /* 587: STARTTLS, AUTH required before MAIL */
	LISTEN_SUBMISSIONS, /* 465: implicit TLS, AUTH required */
	LISTEN_IMAP,
	LISTEN_IMAPS,
	LISTEN_POP3,
	LISTEN_POP3S,
	LISTEN_MANAGESIEVE,
	LISTEN_KIND_COUNT
};

struct conf_listen {
	enum listen_kind kind;
	char *address;                /* as written: "127.0.0.1:2525", "[::1]:25", "*:25" */
	struct sockaddr_storage addr; /* parsed */
	socklen_t addr_len;
	int line, col;                /* where it was declared, for bind errors */
};

struct conf_limits {
	size_t max_line_length;       /* command line incl. CRLF; default 2048 */
	size_t max_message_size;      /* bytes; default 52428800 (50 MiB), advertised in SIZE */
	unsigned max_recipients;      /* per message; default 1000 */
	unsigned max_errors;          /* bad commands before 421 and close; default 10 */
	unsigned max_connections;     /* per smtp process; default 1000 */
	unsigned max_connections_per_ip; /* default 20 */
	unsigned command_timeout;     /* seconds, RFC 5321 4.5.3.2: default 300 */
	unsigned data_timeout;        /* seconds per DATA block; default 180 */
};

struct conf_queue {
	unsigned retry_min;           /* seconds before the first retry; default 300 */
	unsigned retry_max;           /* cap of the exponential backoff; default 14400 */
	unsigned max_age;             /* give up (bounce) after; default 432000 (5 days) */
	unsigned delay_warning;       /* 0 = off; default 0 */
	unsigned commit_delay_us;     /* extra wait to gather a commit batch; default 0 (a batch forms
	                                 anyway while the previous one syncs) */
	char *sync;                   /* "fs": one syncfs() per batch (default); "files": fdatasync each file */
};

/* Sender authentication (SPF, DKIM, DMARC; src/lookup/lookup_mailauth.c). */
struct conf_mailauth {
	bool verify;                  /* mail_auth: check SPF/DKIM/ARC/DMARC on mx listeners; default false */
	bool spf_reject_fail;         /* spf.reject_fail: 550 5.7.23 at MAIL on SPF fail; default true */
	bool dmarc_enforce;           /* dmarc.enforce: apply p=reject/quarantine; default true */
	bool dkim_sign;               /* dkim.sign: sign mail of authenticated senders; default true */
	char *dkim_selector;          /* dkim.selector: NULL = the newest .pem in <data_dir>/dkim/<domain>/ */
};

/*
 * SRS for forwarded mail (queue_outbound.c rewrites, lookup_policy.c reverses).
 * On when a secret is given: `srs: { secret: S, secrets: [OLD...], domain: D }`.
 * secret signs; secret and secrets all verify (rotation); at most 4 in all
 * (SRS_MAX_SECRETS), each at least 16 characters.
 */
struct conf_srs {
	char *secret;                 /* srs.secret: the signing secret; NULL = SRS off unless secrets given */
	char **secrets;               /* srs.secrets: verify-only (older) secrets; with no secret, [0] signs */
	size_t secrets_count;
	char *domain;                 /* srs.domain: domain of SRS addresses; default: hostname */
	unsigned max_age_days;        /* srs.max_age_days: SRS addresses expire; default 21 */
};

struct conf_outbound {
	unsigned mx_port;             /* port of MX hosts; default 25 (tests use another) */
	char *tls;                    /* none|may|require for MX delivery; default "may" */
	unsigned connect_timeout;     /* seconds; default 30 */
	unsigned command_timeout;     /* seconds for each reply (RFC 5321 4.5.3.2 uses 300); default 300 */
	unsigned data_timeout;        /* seconds for the final reply; default 600 */
	unsigned max_concurrency;     /* deliveries in flight; default 50 */
	unsigned relay_fail_threshold;/* consecutive failures before a relay is taken out; default 3 */
	unsigned relay_cooldown;      /* seconds out before a probe; default 60 */
	char *tls_ca_file;            /* extra CA file to verify relays and MTA-STS hosts (tests); or NULL */
	bool dane;                    /* DANE (RFC 7672) for MX delivery; default false; needs the anchor */
	char *dnssec_trust_anchor;    /* trust anchor file (DS/DNSKEY lines) for DNSSEC validation; or NULL */
	bool mta_sts;                 /* MTA-STS (RFC 8461) for MX delivery; default false */
	unsigned mta_sts_port;        /* port of the mta-sts.<domain> HTTPS host; default 443 (tests) */
};

/* Content filters reached over TCP from the smtp role (it is chrooted: numeric addresses). */
struct conf_filter {
	char *address;                /* clamd "IP:PORT"; rspamd URL "http://IP:PORT"; NULL = off */
	unsigned timeout;             /* seconds per stage; default 30 */
	bool on_error_accept;         /* filter down or confused: accept (true) or 451 (false, default) */
	bool quarantine;              /* clamd: hold infected mail in quarantine instead of 554 */
	size_t max_size;              /* larger messages are not scanned; default 25 MiB */
};

/*
 * Queue-fed delivery targets (src/queued/queue_triggers.c), chosen by a
 * recipient target "webhook:NAME", "pipe:NAME" or "autoreply:NAME".
 */
struct conf_webhook {
	char *name;                   /* required; letters, digits, '-', '_', '.' */
	char *url;                    /* required; http:// or https:// */
	char *secret;                 /* HMAC-SHA256 key for X-Mailroute-Signature; NULL = unsigned */
	unsigned timeout;             /* seconds for the whole request; default 30 */
	char *tls_ca_file;            /* extra CA file for https (tests); NULL = system store */
};

struct conf_pipe {
	char *name;                   /* required */
	char **command;               /* required: argv, command[0] absolute; executed without a shell */
	size_t command_count;
	unsigned timeout;             /* seconds, then the process group is killed; default 60 */
	char *user;                   /* run as; NULL = the queue role's own user (see queue_triggers.h) */
};

struct conf_autoreply {
	char *name;                   /* required */
	char *from;                   /* required: From: address of the answer */
	char *subject;                /* default "Auto: " + the original subject */
	char *text;                   /* required: body; ${sender} is replaced by the envelope sender */
	unsigned period;              /* seconds between two replies to one sender; default 604800 (7 days) */
};

/* milters: [{name, address, timeout, on_error}] (src/lib-milter), run in order. */
struct conf_milter {
	char *name;                   /* required; for logs */
	char *address;                /* required; numeric "IP:PORT", "[IPv6]:PORT" or "inet:PORT@IP" */
	unsigned timeout;             /* seconds for each reply (end of message: 6x); default 10 */
	char *on_error;               /* "tempfail" (default) or "accept" as written */
	bool on_error_accept;         /* folded from on_error */
};

/* dnsbl.zones[] */
struct conf_dnsbl_zone {
	char *zone;                   /* required: "zen.spamhaus.org" */
	int weight;                   /* default 1; negative for allow lists */
	bool rhsbl;                   /* a domain list: checked at MAIL with the sender domain */
	char *codes;                  /* optional "127.0.0.2,127.0.0.4": only these answers count */
};

/* dnsbl: { zones, threshold, action } (mx listener only; the lookup role asks DNS). */
struct conf_dnsbl {
	struct conf_dnsbl_zone *zones;
	size_t zones_count;
	unsigned threshold;           /* listed when the sum of weights >= threshold; default 1 */
	char *action;                 /* "reject" (default) or "tag" as written */
	bool tag;                     /* folded: add X-DNSBL instead of refusing */
};

/* greylisting (lookup role, <data_dir>/db/greylist.db) */
struct conf_greylisting {
	bool enabled;                 /* default false */
	unsigned delay;               /* seconds; default 300 */
	unsigned retry_window;        /* seconds; default 172800 (2 days) */
	unsigned pass_ttl;            /* seconds; default 3024000 (35 days) */
};

/* One rate: `limit` events per `per` seconds ("N/SECONDS" in the file); limit 0 = off. */
struct conf_rate {
	unsigned limit;
	unsigned per;
};

/* rate_limits (smtp role, counted per smtp process) */
struct conf_rate_limits {
	char *connections_per_ip_s, *messages_per_ip_s, *recipients_per_ip_s, *messages_per_user_s,
		*recipients_per_user_s; /* as written */
	struct conf_rate connections_per_ip, messages_per_ip, recipients_per_ip, messages_per_user,
		recipients_per_user;
};

struct mr_config {
	char *path;                   /* the file this came from */
	char *hostname;               /* default: gethostname() */
	char *data_dir;               /* absolute; default /var/lib/mailroute */
	struct conf_listen *listen;
	size_t listen_count;
	char *tls_cert;               /* absolute or NULL */
	char *tls_key;
	char **dns_forward;           /* "127.0.0.1@5353" */
	size_t dns_forward_count;
	char *rules;                  /* system Sieve script, absolute or NULL */
	char **trusted_networks;      /* CIDRs that may relay without AUTH; default none */
	size_t trusted_networks_count;
	char *user;                   /* unprivileged user for network roles; default "mailroute" */
	char *vmail_user;             /* owner of mailboxes; default "vmail" */
	unsigned smtp_processes;      /* 0 = one per core */
	char *log_file;               /* optional, in addition to stderr */
	char *log_level;              /* debug|info|warn; default info */
	char subaddress_separator;    /* default '+'; 0 disables */
	bool auth_allow_plaintext;    /* allow AUTH outside TLS (tests only); default false */
	struct conf_limits limits;
	struct conf_queue queue;
	struct conf_outbound outbound;
	struct conf_filter clamd;
	struct conf_filter rspamd;
	char *clamd_on_error, *clamd_action, *rspamd_on_error; /* as written; folded into the structs */
	char *authserv_id;            /* Authentication-Results id; default: hostname */
	struct conf_mailauth mailauth;
	struct conf_srs srs;
	struct conf_webhook *webhooks;
	size_t webhooks_count;
	struct conf_pipe *pipes;
	size_t pipes_count;
	struct conf_autoreply *autoreplies;
	size_t autoreplies_count;
	struct conf_milter *milters;
	size_t milters_count;
	bool milters_on_submission;   /* also run the milters on submission listeners; default false */
	struct conf_dnsbl dnsbl;
	struct conf_greylisting greylisting;
	struct conf_rate_limits rate_limits;
};

/* "N/SECONDS" (N 1-1000000, SECONDS 1-31536000). 0, or -1 with a static reason. */
int conf_parse_rate(const char *s, struct conf_rate *rate_r, const char **why_r);

/*
 * Load and validate a config file. Returns NULL and sets *error_r to an
 * allocated "file:line:col: message" on any error (unknown key, wrong type,
 * bad address, missing file...).
 */
struct mr_config *conf_load(const char *path, char **error_r);
void conf_free(struct mr_config **cfg);

/* Same from a buffer (len bytes, need not be NUL-terminated); name is used in errors. */
struct mr_config *conf_load_buffer(const char *name, const char *data, size_t len, char **error_r);

const char *conf_listen_kind_name(enum listen_kind kind);
/* "mx" -> LISTEN_MX...; false for an unknown name. */
bool conf_listen_kind_parse(const char *name, enum listen_kind *kind_r);
/* submissions, imaps, pop3s: TLS from the first byte (conf_load requires tls for them). */
bool conf_listen_kind_implicit_tls(enum listen_kind kind);
/* Paths under data_dir, allocated: conf_path(cfg, "queue") = "<data_dir>/queue". */
char *conf_path(const struct mr_config *cfg, const char *rel);

/*
 * Value parsers shared with other modules. conf_parse_address accepts
 * "127.0.0.1:2525", "[::1]:2525", "*:25" (any IPv4), "[::]:25"; port 1-65535.
 * Returns 0, or -1 with a static reason in *why_r.
 */
int conf_parse_address(const char *s, struct sockaddr_storage *ss, socklen_t *len_r, const char **why_r);
/* "10.0.0.0/8", "::1/128" or a bare address (a single host). */
bool conf_check_cidr(const char *s, const char **why_r);
bool conf_check_hostname(const char *s, const char **why_r);

#endif
