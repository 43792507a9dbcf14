/*
 * dsn: build a delivery status notification (RFC 3464 message/delivery-status
 * inside an RFC 6522 multipart/report, RFC 3461 RET/ENVID/ORCPT semantics).
 * A pure function: the only I/O is pread() of the original message from
 * original_fd (the spool file, read from offset 0; the fd's offset is not moved).
 *
 * The result is one complete RFC 5322 message with CRLF line ends:
 *   From: "Mail Delivery System" <MAILER-DAEMON@reporting_mta>
 *   To: <sender>, Subject by the most serious action present (failed >
 *   delayed > delivered/relayed/expanded), Date (UTC), Message-ID,
 *   Auto-Submitted: auto-replied, MIME-Version, Content-Type: multipart/report;
 *   report-type=delivery-status; boundary=...
 *   part 1 text/plain (us-ascii): a human explanation, one paragraph per recipient
 *   part 2 message/delivery-status: Reporting-MTA: dns; host, X-Mailroute-Queue-ID
 *          (if queue_id), Original-Envelope-Id (if envid), Arrival-Date (if arrival);
 *          then per recipient Original-Recipient (if orcpt), Final-Recipient,
 *          Action, Status, Remote-MTA (if any), Diagnostic-Code (if any),
 *          Last-Attempt-Date (if last_attempt), Will-Retry-Until (delayed, if set)
 *   part 3 message/rfc822 (the whole original) when return_full and the original
 *          is at most max_full bytes (max_full 0 = no limit), else
 *          text/rfc822-headers (its header block); no part 3 when original_fd < 0.
 *          Content-Transfer-Encoding is 8bit when the returned bytes hold any
 *          byte >= 0x80 (then the top level says 8bit too), else 7bit. Bare LF
 *          and bare CR in the original are written as CRLF.
 *
 * Values from the caller are never trusted as header text: CR, LF and other
 * controls become spaces, bytes >= 0x80 in generated parts become '?', each
 * value is capped at DSN_MAX_VALUE bytes and long fields are folded. A
 * "type;value" field given without a type gets one ("rfc822;" for recipients,
 * "dns;" for Remote-MTA, "smtp;" for Diagnostic-Code). A status that is not
 * "[245].d{1,3}.d{1,3}" is an error; NULL status means 5.0.0 / 4.0.0 / 2.0.0 by
 * action. The boundary is derived from queue_id and now, and changed until it
 * occurs in no part's content.
 *
 * Never builds a DSN for the null sender (NULL, "" or "<>"): returns -1 with
 * "null sender" - the caller decides about double bounces.
 */
#ifndef MR_DSN_H
#define MR_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define DSN_MAX_VALUE 1000          /* per caller-supplied string */
#define DSN_MAX_HEADERS (1024 * 1024) /* header block returned in headers-only mode */
#define DSN_MAX_RCPTS 10000

enum dsn_action { DSN_FAILED, DSN_DELAYED, DSN_DELIVERED, DSN_RELAYED, DSN_EXPANDED };

struct dsn_rcpt {
	const char *final_rcpt;       /* "rfc822;x@y" */
	const char *orcpt;            /* ORCPT ("rfc822;x@y", xtext-decoded by the caller), or NULL */
	enum dsn_action action;
	const char *status;           /* "5.1.1", or NULL for the action's default */
	const char *remote_mta;       /* "dns;mx.example" or NULL */
	const char *diagnostic;       /* "smtp; 550 5.1.1 no such user" or NULL */
	time_t last_attempt;          /* 0: field omitted */
	time_t will_retry_until;      /* delayed only; 0: field omitted */
};

struct dsn_request {
	const char *reporting_mta;    /* our hostname */
	const char *envid;            /* ENVID (xtext-decoded by the caller) or NULL */
	const char *sender;           /* original envelope sender: the DSN's recipient */
	const char *queue_id;         /* or NULL */
	time_t arrival;               /* 0: Arrival-Date omitted */
	bool return_full;             /* RET=FULL; false = RET=HDRS (the default for failures) */
	const struct dsn_rcpt *rcpts;
	size_t rcpt_count;            /* 1..DSN_MAX_RCPTS */
	int original_fd;              /* spool file, pread from 0; -1: no original part */
	size_t max_full;              /* originals above this size: headers only (0 = no limit) */
	time_t now;
};

/*
 * Builds the complete message (headers + multipart/report body) with CRLF line
 * ends. 0 and *msg_r (allocated, NUL-terminated, *len_r bytes) on success;
 * -1 and *error_r (allocated) on error.
 */
int dsn_build(const struct dsn_request *req, char **msg_r, size_t *len_r, char **error_r);

/* "failed", "delayed", "delivered", "relayed", "expanded" (RFC 3464 Action values). */
const char *dsn_action_name(enum dsn_action action);
/* RFC 5322 date-time in UTC ("Thu, 26 Nov 2026 09:59:36 +0000") into out (size >= 32). */
void dsn_date(time_t t, char *out, size_t size);

#endif
