/*
 * queue_envelope: the SMTP envelope of one queued message and its recipients,
 * as stored in the queue database. Every string is owned by the envelope
 * (copied by the setters/builders, freed by queue_envelope_free). NULL means
 * "not given" for the optional strings; sender is "" for the null sender <>.
 * Limits: QUEUE_ENVELOPE_MAX_RCPTS recipients (the SMTP layer enforces its own
 * lower configured limit).
 */
#ifndef MR_QUEUE_ENVELOPE_H
#define MR_QUEUE_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "queue/queue_id.h"

#define QUEUE_ENVELOPE_MAX_RCPTS 100000

/* RFC 3461 RET= */
enum queue_ret { QUEUE_RET_DEFAULT = 0, QUEUE_RET_FULL, QUEUE_RET_HDRS };
/* RFC 6152 / RFC 3030 BODY= */
enum queue_body_type { QUEUE_BODY_DEFAULT = 0, QUEUE_BODY_7BIT, QUEUE_BODY_8BITMIME, QUEUE_BODY_BINARYMIME };
enum queue_state { QUEUE_STATE_ACTIVE = 0, QUEUE_STATE_HOLD, QUEUE_STATE_QUARANTINE };

/* RFC 3461 NOTIFY= flags; 0 = not given (default: FAILURE, and DELAY at our discretion). */
#define QUEUE_NOTIFY_NEVER   0x01u
#define QUEUE_NOTIFY_SUCCESS 0x02u
#define QUEUE_NOTIFY_FAILURE 0x04u
#define QUEUE_NOTIFY_DELAY   0x08u

/* How the recipient gets delivered (decided by the router before commit). */
enum queue_rcpt_kind {
	QUEUE_RCPT_LOCAL = 0, /* target: the Maildir++ root of the mailbox */
	QUEUE_RCPT_REMOTE,    /* target: relay/transport name, or "" for direct MX */
	QUEUE_RCPT_OTHER,     /* target: webhook/pipe target name, etc. */
};

enum queue_rcpt_status {
	QUEUE_RCPT_PENDING = 0,
	QUEUE_RCPT_DONE,
	QUEUE_RCPT_FAILED,  /* permanent failure, no DSN sent (yet) */
	QUEUE_RCPT_BOUNCED, /* permanent failure, DSN queued */
};

struct queue_rcpt {
	unsigned idx;            /* position in the envelope, 0-based; set by add_rcpt */
	char *address;           /* forward-path as received (without <>) */
	char *orcpt;             /* RFC 3461 ORCPT= as received ("rfc822;x@y"), or NULL */
	unsigned notify;         /* QUEUE_NOTIFY_* flags */
	enum queue_rcpt_kind kind;
	char *target;            /* see enum queue_rcpt_kind; never NULL ("" if none) */
	char *folder;            /* Maildir folder chosen by routing/rules, or NULL for INBOX */
	/* Delivery state: filled by queue_store_get(); ignored on commit (starts pending). */
	enum queue_rcpt_status status;
	unsigned attempts;
	time_t next_attempt;     /* commit: 0 = due immediately */
	time_t last_attempt;     /* 0 = never */
	char *last_error;        /* NULL = none */
};

struct queue_envelope {
	char id[QUEUE_ID_SIZE];  /* the spool file's ID (from queue_spool_create) */
	time_t arrival;          /* 0 on commit = now */
	char *sender;            /* reverse-path without <>; "" = null sender */
	uint64_t size;           /* body bytes in the spool file; 0 on commit = take from the file */
	char *envid;             /* RFC 3461 ENVID= or NULL */
	enum queue_ret ret;
	char *helo;
	char *client_ip;
	char *auth_user;         /* NULL when not authenticated */
	enum queue_body_type body_type;
	bool smtputf8;
	enum queue_state state;  /* commit: ACTIVE, or HOLD/QUARANTINE decided by rules */
	char *headers;           /* header fields (CRLF-terminated) that delivery puts in front of the
	                            spool file's content: Authentication-Results, rule tags; or NULL */
	bool bounce_requested;   /* set by `queue bounce` (read by queue_store_get; not committed) */
	struct queue_rcpt *rcpts;
	size_t rcpt_count;
	size_t rcpt_alloc;
};

/* sender: "" for the null sender; copied. */
struct queue_envelope *queue_envelope_new(const char *sender);
void queue_envelope_free(struct queue_envelope **env);
/* Replace one of the envelope's optional strings (old value freed, NULL allowed). */
void queue_envelope_set_str(char **field, const char *value);
/*
 * Append a recipient (strings copied; orcpt, target, folder may be NULL).
 * Returns the new recipient (valid until the next add) or NULL when the
 * envelope already has QUEUE_ENVELOPE_MAX_RCPTS recipients.
 */
struct queue_rcpt *queue_envelope_add_rcpt(struct queue_envelope *env, const char *address,
					   const char *orcpt, unsigned notify,
					   enum queue_rcpt_kind kind, const char *target,
					   const char *folder);

/* Names as stored in the database and shown by the CLI ("active", "local", "pending"...). */
const char *queue_state_name(enum queue_state state);
int queue_state_parse(const char *name, enum queue_state *state_r); /* 1 ok, 0 unknown */
const char *queue_rcpt_kind_name(enum queue_rcpt_kind kind);
int queue_rcpt_kind_parse(const char *name, enum queue_rcpt_kind *kind_r);
const char *queue_rcpt_status_name(enum queue_rcpt_status status);
int queue_rcpt_status_parse(const char *name, enum queue_rcpt_status *status_r);

#endif
