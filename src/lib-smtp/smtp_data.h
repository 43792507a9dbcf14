/*
 * smtp_data: reader for the DATA content after the 354 reply (RFC 5321 4.5.2
 * dot-unstuffing), hardened against SMTP smuggling.
 *
 * The ONLY end of data is CRLF "." CRLF, where the first CRLF is the end of
 * the previous line or the 354 (the data starts at a line start, so an
 * immediate ".\r\n" is an empty message). A bare LF, or a CR not followed by
 * LF, anywhere in the content (this covers "\n.\n", "\n.\r\n", "\r\n.\n",
 * "\r.\r", "\r\n.\r", "\r.\r\n") is an error reported at the point of
 * detection: the caller answers 5xx and closes the connection, so no
 * downstream MTA ever sees an ambiguous end. NUL bytes are kept as content
 * (counted in nul_count): "\r\n\0.\r\n" is content, not an end.
 *
 * Feeding: the reader appends the unstuffed content to out (lines keep their
 * CRLF; the final ".\r\n" is not written) and consumes input until
 *   SMTP_DATA_DONE     the terminating CRLF.CRLF was consumed; *consumed_r is
 *                      exactly where it ended, the bytes after it are the next
 *                      pipelined command.
 *   SMTP_DATA_AGAIN    all input consumed, need more.
 *   SMTP_DATA_OUT_FULL out is full (out->max reached, or fewer than the 2
 *                      bytes a CRLF needs): *consumed_r bytes were used; drain
 *                      out (write it to the spool, buf_reset) and feed the
 *                      rest again. out->max must be >= 2.
 *   SMTP_DATA_BARE_LF / SMTP_DATA_BARE_CR  smuggling defence, see above;
 *                      *consumed_r includes the offending byte.
 * DONE and the errors are sticky: later calls return them again, consuming 0.
 * A call writes at most len + 1 bytes to out and never more than out has room
 * for, so a caller that drains out whenever it passes a threshold keeps memory
 * bounded. content_bytes counts everything written (for the SIZE limit).
 *
 * Header section (up to the first empty line): header_lines counts its lines
 * and received_count those starting with "Received:" (ASCII case-insensitive),
 * for mail-loop detection (RFC 5321 6.3: reject at > 50 hops); header_done
 * tells the empty line was seen. longest_line is the longest content line in
 * octets without CRLF (RFC 5321 4.5.3.1.6 allows 998; policy decides).
 *
 * No allocation; the struct is plain state and can be reinitialized at will.
 */
#ifndef MR_SMTP_DATA_H
#define MR_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

enum smtp_data_result {
	SMTP_DATA_BARE_CR = -2,
	SMTP_DATA_BARE_LF = -1,
	SMTP_DATA_AGAIN = 0,
	SMTP_DATA_DONE = 1,
	SMTP_DATA_OUT_FULL = 2,
};

struct smtp_data_reader {
	int state;            /* internal */
	int error;            /* sticky result once an error or DONE happened, else 0 */
	bool header_done;
	bool received_match;  /* internal: current line may still start with "Received:" */
	size_t line_len;      /* content octets in the current line so far */
	uint64_t content_bytes;
	uint64_t header_lines;
	uint64_t received_count;
	uint64_t nul_count;
	size_t longest_line;
};

void smtp_data_reader_init(struct smtp_data_reader *r);
/* Returns an enum smtp_data_result; *consumed_r is always set. */
int smtp_data_reader_feed(struct smtp_data_reader *r, const char *in, size_t len,
			  size_t *consumed_r, struct buf *out);

#endif
