/*
 * smtp_line: resumable reader of SMTP command lines (RFC 5321 2.3.8, 4.5.3.1.4).
 *
 * The caller feeds whatever bytes arrived; the reader stops after every
 * complete line (or line-level error) and tells in *consumed_r how many input
 * bytes it used, so the caller keeps the rest: pipelined commands, and the
 * plaintext after STARTTLS, which the caller must discard (CVE-2011-0411).
 *
 * Results (enum smtp_line_result):
 *   SMTP_LINE_OK        a line ended by CRLF; line_r is its content without CRLF.
 *   SMTP_LINE_AGAIN     all input consumed, no complete line yet.
 *   SMTP_LINE_TOO_LONG  the line (counting its CRLF) exceeded max_line. Reported
 *                       once, when its LF has been consumed; the bytes in between
 *                       are discarded without buffering (r->discarding is true
 *                       and r->discarded counts them meanwhile, so the caller can
 *                       drop a peer that never sends LF). line_r is empty.
 *   SMTP_LINE_BARE_LF   the line ended with LF not preceded by CR.
 *   SMTP_LINE_BARE_CR   the line contained a CR not followed by LF.
 * Precedence when several apply: TOO_LONG, then BARE_CR, then BARE_LF. For every
 * error the offending line is consumed through its LF, so the server can answer
 * 500 and go on with the next line. For BARE_LF/BARE_CR, line_r still holds the
 * content (without the final LF and a CR just before it) for logging.
 *
 * line_r->data points into the caller's input (zero copy, when the line arrived
 * in one piece) or into the reader's own buffer. It is valid until the next
 * feed/deinit call and, in the first case, as long as the caller keeps its input.
 * The line may contain NUL bytes; it is not NUL-terminated.
 *
 * Memory: one buffer of max_line bytes, allocated at init. No other allocation.
 */
#ifndef MR_SMTP_LINE_H
#define MR_SMTP_LINE_H

#include <stdbool.h>
#include <stddef.h>

enum smtp_line_result {
	SMTP_LINE_BARE_CR = -3,
	SMTP_LINE_BARE_LF = -2,
	SMTP_LINE_TOO_LONG = -1,
	SMTP_LINE_AGAIN = 0,
	SMTP_LINE_OK = 1,
};

/* RFC 5321 4.5.3.1.4: a command line is at most 512 octets including CRLF. */
#define SMTP_LINE_MAX_DEFAULT 512

struct smtp_line {
	const char *data;
	size_t len;
};

struct smtp_line_reader {
	char *buf;        /* partial line, max bytes */
	size_t len;
	size_t max;
	bool discarding;  /* inside an over-long line, skipping to LF */
	size_t discarded; /* bytes skipped so far in the current over-long line */
};

/* max_line counts the CRLF; it must be >= 2. */
void smtp_line_reader_init(struct smtp_line_reader *r, size_t max_line);
void smtp_line_reader_deinit(struct smtp_line_reader *r);
/* Forget a partial line (e.g. after STARTTLS, or after a DATA transaction). */
void smtp_line_reader_reset(struct smtp_line_reader *r);
/* True when a partial line is buffered (bytes received but no LF yet). */
bool smtp_line_reader_pending(const struct smtp_line_reader *r);

/* Returns an enum smtp_line_result; see above. consumed_r and line_r are always set. */
int smtp_line_reader_feed(struct smtp_line_reader *r, const char *data, size_t len,
			  size_t *consumed_r, struct smtp_line *line_r);

#endif
