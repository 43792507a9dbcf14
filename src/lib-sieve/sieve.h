/*
 * sieve: an RFC 5228 Sieve implementation structured like Dovecot Pigeonhole:
 * lexer -> parser -> AST -> validator -> program (the validated AST with every
 * command, tag, comparator and match type resolved) -> interpreter.
 *
 * Contract:
 * - sieve_compile() parses and validates a script. Errors come back as one
 *   allocated line "NAME:LINE:COL: message" (caller frees; every error, one
 *   per line, with opt->all_errors). Compiling is thread-safe. The script is
 *   immutable afterwards and may be executed many times, from several threads
 *   at once (execution state lives in the caller's struct sieve_result and on
 *   the stack). Included scripts are resolved and compiled at compile time
 *   through opt->include_resolver and owned by the returned script.
 * - sieve_execute() runs a script against a message view and fills an ordered
 *   action list. It never performs an action: the host (delivery, SMTP rules,
 *   `mailroute explain`) does. Every loop is bounded by struct
 *   sieve_exec_limits, so a hostile script cannot burn CPU or memory: on a
 *   limit or runtime error it returns -1 with *error_r set, and the host must
 *   apply the implicit keep (res is left holding a single keep action).
 * - Pointers inside a result live until sieve_result_deinit().
 * - Extensions are opt-in per compile: a user script must not be given
 *   SIEVE_EXT_MAILROUTE (system rules only); see docs/sieve.md.
 * - Pure helpers for the host: sieve_vacation_allowed (RFC 3834 rules) and
 *   the composers of the messages it sends for vacation, reject and notify.
 * - The users' scripts on disk: lib-sieve/sieve_store.h.
 */
#ifndef MR_SIEVE_H
#define MR_SIEVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Extension bits for struct sieve_compile_options.extensions. */
enum sieve_ext {
	SIEVE_EXT_FILEINTO = 1u << 0,
	SIEVE_EXT_REJECT = 1u << 1,        /* reject and ereject (RFC 5429) */
	SIEVE_EXT_ENVELOPE = 1u << 2,
	SIEVE_EXT_ENCODED_CHARACTER = 1u << 3,
	SIEVE_EXT_VARIABLES = 1u << 4,
	SIEVE_EXT_COPY = 1u << 5,
	SIEVE_EXT_BODY = 1u << 6,
	SIEVE_EXT_RELATIONAL = 1u << 7,
	SIEVE_EXT_SUBADDRESS = 1u << 8,
	SIEVE_EXT_IMAP4FLAGS = 1u << 9,
	SIEVE_EXT_VACATION = 1u << 10,     /* vacation and vacation-seconds */
	SIEVE_EXT_DATE = 1u << 11,
	SIEVE_EXT_INDEX = 1u << 12,
	SIEVE_EXT_EDITHEADER = 1u << 13,
	SIEVE_EXT_MAILBOX = 1u << 14,
	SIEVE_EXT_INCLUDE = 1u << 15,
	SIEVE_EXT_DUPLICATE = 1u << 16,
	SIEVE_EXT_REGEX = 1u << 17,
	SIEVE_EXT_ENOTIFY = 1u << 18,
	SIEVE_EXT_CMP_NUMERIC = 1u << 19,  /* comparator-i;ascii-numeric */
	SIEVE_EXT_ENVIRONMENT = 1u << 20,
	SIEVE_EXT_IHAVE = 1u << 21,
	SIEVE_EXT_MIME = 1u << 22,         /* RFC 5703 :mime/:anychild on header/address/exists */
	SIEVE_EXT_FOREVERYPART = 1u << 23, /* RFC 5703 foreverypart/break */
	SIEVE_EXT_EXTRACTTEXT = 1u << 24,  /* RFC 5703 extracttext */
	SIEVE_EXT_MAILROUTE = 1u << 25,    /* vnd.mailroute: system rules only */
	SIEVE_EXT_TESTSUITE = 1u << 26,    /* vnd.dovecot.testsuite subset: tests only */
};
/* What a user's script may require (everything but vnd.mailroute and the testsuite). */
#define SIEVE_EXT_USER_DEFAULT ((unsigned)(SIEVE_EXT_MAILROUTE - 1))
/* What the system rules script may require. */
#define SIEVE_EXT_SYSTEM_DEFAULT (SIEVE_EXT_USER_DEFAULT | SIEVE_EXT_MAILROUTE)

/*
 * Supplies the text of another script for `include`. personal: :personal
 * (default) or :global. Return 1 found (*src_r allocated with malloc, the
 * library frees it), 0 not found, -1 error (*error_r allocated, optional).
 */
typedef int sieve_include_resolver_fn(void *ctx, const char *name, bool global,
				      char **src_r, size_t *len_r, char **error_r);

struct sieve_compile_options {
	unsigned extensions;             /* 0 means SIEVE_EXT_USER_DEFAULT */
	sieve_include_resolver_fn *include_resolver;
	void *include_ctx;
	unsigned max_include_depth;      /* default 5 */
	unsigned max_includes;           /* scripts in total; default 32 */
	size_t max_script_size;          /* bytes; default 1 MiB */
	unsigned max_nesting;            /* block/test nesting; default 32 */
	size_t max_string_length;        /* one literal; default 64 KiB */
	size_t max_list_length;          /* items of a string list; default 1024 */
	/* Uploads (ManageSieve PUTSCRIPT, `sieve put`): an included script that does not exist yet
	   is accepted (as if :optional); delivery compiles again without this flag. */
	bool missing_includes_ok;
	/* *error_r lists every validation error, one "NAME:LINE:COL: message" per line
	   (`mailroute sieve check`); default: the first error only */
	bool all_errors;
};

/* --- the message, as the host shows it --- */

/*
 * Duplicate tracking (RFC 7352): return 1 if id was seen within `seconds`,
 * 0 if not, -1 on error. The library never records: a successful run lists a
 * SIEVE_ACT_DUPLICATE_TRACK action the host commits after delivery.
 */
typedef int sieve_duplicate_check_fn(void *ctx, const char *id, size_t id_len, unsigned seconds);
/* mailboxexists (RFC 5490): 1 exists, 0 not. */
typedef int sieve_mailbox_exists_fn(void *ctx, const char *mailbox);

struct sieve_msg_view {
	const char *envelope_from;   /* "" for the null sender <>; NULL unknown */
	const char *envelope_to;     /* the current recipient */
	const char *original_to;     /* before alias expansion (NULL = envelope_to) */
	const char *auth_user;       /* NULL when not authenticated */
	const char *client_ip;
	const char *client_helo;
	uint64_t size;               /* 0 = raw_len */
	/*
	 * The message (header, blank line, body). Headers are parsed by the
	 * library: tests see unfolded values with RFC 2047 words decoded; body
	 * tests decode base64/quoted-printable and convert charsets with iconv.
	 */
	const char *raw;
	size_t raw_len;
	time_t now;                  /* currentdate; 0 = time(NULL) */
	int zone_minutes;            /* local zone offset for currentdate/date */
	bool zone_set;               /* false: use the host's local zone */
	const char *domain;          /* environment "domain" */
	const char *host;            /* environment "host" */
	const char *phase;           /* environment "phase": "during" by default */
	const char *subaddress_separators; /* :user/:detail split at the first of these; NULL = "+" */
	sieve_duplicate_check_fn *duplicate_check;
	sieve_mailbox_exists_fn *mailbox_exists;
	void *ctx;                   /* passed to the callbacks */
};

struct sieve_exec_limits {
	unsigned max_steps;          /* commands + tests evaluated; default 10000 */
	unsigned max_actions;        /* default 32 */
	unsigned max_redirects;      /* default 4 */
	unsigned max_header_edits;   /* addheader/deleteheader; default 64 */
	unsigned max_variables;      /* per scope; default 255 */
	size_t max_variable_size;    /* bytes; default 4096 */
	size_t max_string_length;    /* expanded strings; default 64 KiB */
	uint32_t regex_match_limit;  /* PCRE2 match limit; default 100000 */
	size_t max_body_size;        /* bytes of body examined; default 1 MiB */
	unsigned max_mime_parts;     /* default 64 */
	unsigned max_include_depth;  /* runtime nesting; default 5 */
	unsigned max_notifies;       /* default 4 */
};

/* --- the result --- */

enum sieve_action_type {
	SIEVE_ACT_KEEP,
	SIEVE_ACT_FILEINTO,
	SIEVE_ACT_REDIRECT,
	SIEVE_ACT_DISCARD,
	SIEVE_ACT_REJECT,
	SIEVE_ACT_EREJECT,
	SIEVE_ACT_VACATION,
	SIEVE_ACT_NOTIFY,
	SIEVE_ACT_ADDHEADER,
	SIEVE_ACT_DELETEHEADER,
	SIEVE_ACT_DUPLICATE_TRACK, /* commit after delivery: id in text, period in seconds, last = :last */
	/* vnd.mailroute */
	SIEVE_ACT_ROUTE_RELAY,
	SIEVE_ACT_ROUTE_TRANSPORT,
	SIEVE_ACT_WEBHOOK,
	SIEVE_ACT_QUARANTINE,
	SIEVE_ACT_REJECT_CODE,
};

struct sieve_action {
	enum sieve_action_type type;
	int line, col;             /* where in the script; 0 for the implicit keep */
	bool implicit;             /* the implicit keep */
	bool copy;                 /* :copy (fileinto, redirect) */
	bool create;               /* fileinto :create */
	char *target;              /* fileinto folder, redirect address, relay/transport/webhook name,
				      notify method URI, addheader/deleteheader field name */
	char *text;                /* reject/ereject/quarantine reason, vacation reason, notify message,
				      addheader value, reject_code text */
	char **flags;              /* keep/fileinto imap4flags; NULL-terminated list or NULL */
	size_t flags_count;
	/* vacation */
	unsigned long seconds;     /* :days converted to seconds, or :seconds */
	char *subject, *from, *handle;
	char **addresses;
	size_t addresses_count;
	bool mime;
	/* notify */
	char *importance;          /* "1".."3" */
	char **options;
	size_t options_count;
	/* deleteheader (already applied to edited_header/header; listed for the record): field name in
	   target; value patterns in options; index 0 = all; last = count from the end; match 'i' :is,
	   'c' :contains, 'm' :matches, 'r' :regex, 'v' :value, 'n' :count */
	unsigned index;
	bool last;
	char match;
	char *comparator;
	/* keep/fileinto/redirect after header edits: the header block as it was when the action ran
	   (RFC 5293: later edits do not change it); NULL = the unedited header */
	char *header;
	/* reject_code */
	char smtp_code[4];
	char enhanced_code[16];
};

struct sieve_result {
	struct sieve_action *actions;
	size_t count, alloc;
	bool implicit_keep;        /* true when the implicit keep was applied */
	bool keep_cancelled;
	/*
	 * After addheader/deleteheader/tag: the message's new header block
	 * (fields each ending in CRLF, without the empty line). The host writes
	 * edited_header, CRLF, then raw[body_offset..]. NULL when unchanged.
	 */
	char *edited_header;
	size_t body_offset;
	/* testsuite (tests only) */
	unsigned ts_tests, ts_failed;
	char *ts_first_failure;
};

typedef void sieve_trace_fn(void *ctx, int line, int col, const char *text);

struct sieve_script;

struct sieve_script *sieve_compile(const char *src, size_t len, const char *name,
				   const struct sieve_compile_options *opt, char **error_r);
void sieve_script_free(struct sieve_script **s);
/* Extensions the script requires (SIEVE_EXT_* bits), for the host's checks. */
unsigned sieve_script_extensions(const struct sieve_script *s);

void sieve_exec_limits_default(struct sieve_exec_limits *lim);
void sieve_result_init(struct sieve_result *res);
void sieve_result_deinit(struct sieve_result *res);

/*
 * Run the script. res must be initialized (sieve_result_init); it is reset
 * first. lim NULL = defaults. trace may be NULL. Returns 1 success, -1 runtime
 * error (*error_r allocated "NAME:LINE:COL: message"; res then holds only the
 * implicit keep).
 */
int sieve_execute(const struct sieve_script *s, const struct sieve_msg_view *msg,
		  const struct sieve_exec_limits *lim, struct sieve_result *res,
		  sieve_trace_fn *trace, void *trace_ctx, char **error_r);

/* Short name of an action type ("keep", "fileinto", ...). */
const char *sieve_action_name(enum sieve_action_type t);
/* One-line human description of an action, e.g. fileinto "Billing" :copy (allocated). */
char *sieve_action_describe(const struct sieve_action *a);

/*
 * RFC 3834 / RFC 5230 section 4.5 rules the host should apply before sending
 * a vacation reply: 0 (no) for the null sender, MAILER-DAEMON/owner-/-request
 * style senders, List-Id or List-* headers, Precedence bulk/list/junk,
 * Auto-Submitted other than "no"; 1 (yes) otherwise. Once-per-period tracking
 * stays with the host.
 */
int sieve_vacation_allowed(const struct sieve_msg_view *msg);

/*
 * The messages the host sends for vacation and reject actions (envelope
 * sender <>, recipient rcpt_to). sieve_vacation_compose applies
 * sieve_vacation_allowed, refuses replies to the recipient's own addresses
 * and, with check_recipient, replies only when the recipient (or one of
 * :addresses) is in To/Cc/Bcc (RFC 5230 4.5). Its From is :from, else the
 * matching header address, else the recipient; Subject is :subject or
 * "Auto: " + the original subject (RFC 2047-encoded when needed); it carries
 * In-Reply-To/References and Auto-Submitted: auto-replied. The reject
 * notice is an RFC 3798 MDN (disposition "deleted") from MAILER-DAEMON.
 * Return 1 composed, 0 must not be sent (*why_r says why), -1 wrong action.
 */
struct sieve_reply_options {
	const char *hostname;        /* for Message-ID and the MDN */
	bool check_recipient;        /* RFC 5230 4.5 To/Cc check (true for real delivery); skipped when
					msg has no envelope_to/original_to to check against */
	const char *user_address;    /* the user's primary address, also "mine" (recipient may be an alias) */
	time_t now;                  /* 0 = time(NULL) */
};
struct sieve_reply {
	char *mail_from;             /* envelope sender: "" (<>) for vacation and reject */
	char *rcpt_to;               /* the original envelope sender (a notify recipient) */
	char *data;                  /* the whole message, CRLF line ends */
	size_t len;
};
int sieve_vacation_compose(const struct sieve_action *a, const struct sieve_msg_view *msg,
			   const struct sieve_reply_options *opt, struct sieve_reply *reply, const char **why_r);
int sieve_reject_compose(const struct sieve_action *a, const struct sieve_msg_view *msg,
			 const struct sieve_reply_options *opt, struct sieve_reply *reply, const char **why_r);
/*
 * enotify mailto (RFC 5436): one message per distinct recipient of the URI
 * (path, to=, cc=, bcc=), none when the original is auto-submitted. Envelope
 * sender: <> when the original's was <>, else :from, else postmaster@hostname.
 * Headers: To/Cc from the URI (duplicates dropped), Subject from the URI, else
 * :message, else "[SIEVE] New mail notification"; Auto-Submitted:
 * auto-notified; X-Sieve; X-Priority/Importance from :importance. Unsafe URI
 * header fields are ignored. *replies_r is allocated (free each with
 * sieve_reply_free, then the array). 1 composed, 0 nothing to send, -1 error.
 */
int sieve_notify_compose(const struct sieve_action *a, const struct sieve_msg_view *msg,
			 const struct sieve_reply_options *opt, struct sieve_reply **replies_r, size_t *count_r,
			 const char **why_r);
void sieve_reply_free(struct sieve_reply *reply);

/* The capability string for ManageSieve's SIEVE capability, for the given extensions. */
char *sieve_capabilities(unsigned extensions);

#endif
