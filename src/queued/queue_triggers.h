/*
 * queue_triggers: the queue role's deliveries to named targets, fed by the
 * durable queue like every other recipient. A recipient of kind
 * QUEUE_RCPT_OTHER whose target is "webhook:NAME", "pipe:NAME" or
 * "autoreply:NAME" (chosen by an alias or by the system rules) is handed to
 * queue_triggers_dispatch() by the scheduler; the outcome comes back once,
 * through the result callback, from the event loop:
 *
 *  - webhook (config `webhooks:`): an HTTP(S) POST of a JSON document about
 *    the message (queue_triggers_webhook_json), signed with HMAC-SHA256 over
 *    "<timestamp>.<body>" (X-Mailroute-Timestamp, X-Mailroute-Signature:
 *    sha256=<hex>), with Idempotency-Key: <queue id>-<recipient index>.
 *    libcurl multi on the role's libevent loop; http/https only, at most 3
 *    redirects (POST kept), response body capped at 64 KiB, the configured
 *    timeout. 2xx = done; anything else = deferred with the queue's backoff;
 *    past queue.max_age the document goes to <data_dir>/queue/deadletter/
 *    (QUEUE_TRIGGER_DEADLETTER: the recipient is finished, no bounce) for
 *    `mailroute webhook list|replay`.
 *  - pipe (config `pipes:`): the message (Return-Path, Delivered-To and the
 *    envelope's added header fields in front) on stdin of command[] run with
 *    execve (no shell) in its own process group, envelope in the environment
 *    (SENDER, RECIPIENT, ORIGINAL_RECIPIENT, QUEUE_ID). Exit 0 = done,
 *    EX_TEMPFAIL (75), a signal or the timeout (the group is killed) =
 *    deferred, any other status = bounced with 5.3.0 and the tail of the
 *    command's output (stdout and stderr) in the diagnostic. The queue role
 *    runs as `user` (mailroute), so a pipe can only run as that user: a
 *    different `user:` works only when the role runs as root, otherwise the
 *    delivery is deferred with an error saying so.
 *  - autoreply (config `autoreplies:`): a text answer to the envelope sender
 *    through the injector, with the null sender and RFC 3834 headers, at most
 *    once per sender and period (marker files under
 *    <data_dir>/queue/autoreply/NAME/), and never when
 *    sieve_vacation_allowed() says no (null sender, List-*, Precedence
 *    bulk/list/junk, Auto-Submitted other than no, MAILER-DAEMON...) or the
 *    sender is the reply's own From. A suppressed reply is done.
 */
#ifndef MR_QUEUE_TRIGGERS_H
#define MR_QUEUE_TRIGGERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "conf/conf.h"
#include "queue/queue_store.h"

struct event_base;
struct ipc_conn;
struct queue_triggers;

enum queue_trigger_result {
	QUEUE_TRIGGER_DONE,
	QUEUE_TRIGGER_DEFERRED,   /* text: the reason (4.x.x ...) */
	QUEUE_TRIGGER_FAILED,     /* bounce: status (5.x.x) and diagnostic text */
	QUEUE_TRIGGER_DEADLETTER, /* expired webhook, kept in the dead-letter directory: finished, no bounce */
};

typedef void queue_triggers_result_fn(void *ctx, const char *id, unsigned idx, unsigned attempts, time_t arrival,
                                      enum queue_trigger_result result, const char *status, const char *text);
/* The queue role's injector (queue_inject in queue_role.c), used for auto-replies. */
typedef void queue_inject_cb(void *arg, bool ok, const char *id_or_error);
typedef void queue_triggers_inject_fn(const char *sender, char *const *rcpts, size_t n, int content_fd,
                                      const char *headers, queue_inject_cb *cb, void *arg, struct ipc_conn *conn,
                                      uint32_t reqid);

struct queue_triggers *queue_triggers_new(struct event_base *base, const struct mr_config *cfg,
                                          struct queue_store *store, queue_triggers_result_fn *fn,
                                          queue_triggers_inject_fn *inject, void *ctx, char **error_r);
void queue_triggers_free(struct queue_triggers **t);
/* True for a target this module handles ("webhook:", "pipe:", "autoreply:"). */
bool queue_triggers_handles(const char *target);
/* Start one delivery; the result callback runs later (never from inside this call). */
void queue_triggers_dispatch(struct queue_triggers *t, const struct queue_due *due);
/* True while recipient idx of id is in flight here. */
bool queue_triggers_busy(const struct queue_triggers *t, const char *id, unsigned idx);

/* ---- pieces, public for the tests and the CLI ---- */

struct queue_trigger_envelope {
	const char *webhook;      /* name */
	const char *queue_id;
	unsigned idx;
	const char *sender;       /* "" = null sender */
	const char *recipient;
	const char *original_recipient; /* may be NULL */
	time_t arrival;
};
#define QUEUE_TRIGGERS_MAX_TEXT (256u << 10)   /* each of text and html, decoded */
/*
 * The webhook document (compact JSON, allocated): {"webhook", "queue_id",
 * "recipient_index", "idempotency_key", "envelope": {sender, recipient,
 * original_recipient, arrival (RFC 3339 UTC)}, "headers": {from, to, cc,
 * subject, date, message_id} (RFC 2047 decoded; absent ones null),
 * "authentication_results" (null if none), "text", "html" (the first such
 * part, decoded, capped; null if none), "truncated": {text, html},
 * "attachments": [{filename, content_type, size}]}. raw is the message
 * (header fields, blank line, body).
 */
char *queue_triggers_webhook_json(const struct queue_trigger_envelope *e, const char *raw, size_t len);
/* "sha256=" + hex HMAC-SHA256(secret, timestamp "." body) (allocated). */
char *queue_triggers_signature(const char *secret, const char *timestamp, const char *body, size_t len);
/*
 * Pipe exit status (from waitpid) to a result, Postfix pipe(8) style: 0 done,
 * 75 / signal / timed_out deferred, anything else failed with 5.3.0.
 */
enum queue_trigger_result queue_triggers_exit_result(int wstatus, bool timed_out, const char **status_r);
/* RFC 3834 suppression for the auto-reply: 1 send, 0 don't (why_r says why). */
int queue_triggers_autoreply_allowed(const char *sender, const char *from, const char *raw, size_t len,
                                     const char **why_r);
/* The reply message (CRLF lines, allocated); text's ${sender} is replaced. */
char *queue_triggers_autoreply_build(const struct conf_autoreply *ar, const char *sender, const char *hostname,
                                     const char *raw, size_t len, time_t now);

/* ---- dead letters (<data_dir>/queue/deadletter/ID-IDX.json) ---- */

struct queue_deadletter {
	char name[96];            /* "ID-IDX" */
	char *webhook;
	char *body;               /* the JSON document that was POSTed */
	char *last_error;
	time_t created;
};
typedef void queue_deadletter_cb(void *ctx, const struct queue_deadletter *d);
/* Every dead letter (in name order); 0 ok, -1 error. */
int queue_deadletter_list(const struct mr_config *cfg, queue_deadletter_cb *cb, void *ctx, char **error_r);
/*
 * POST dead letter name again (blocking, signed with a fresh timestamp) and
 * remove it on 2xx: 1 delivered, 0 not found, -1 failed (*error_r).
 */
int queue_deadletter_replay(const struct mr_config *cfg, const char *name, char **error_r);

#endif
