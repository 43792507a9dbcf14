/*
 * mime7bit: downgrade an 8-bit message to 7 bits for a peer without 8BITMIME
 * (RFC 6152 3: convert or bounce). Only the simple, common case is converted:
 * a single-part message (Content-Type absent or not multipart/... or
 * message/...) whose header is 7-bit and whose body is 8bit/7bit-labelled; its
 * body is re-encoded as quoted-printable (RFC 2045 6.7) and the header gets
 * Content-Transfer-Encoding: quoted-printable (MIME-Version and, for a non-MIME
 * message, Content-Type: text/plain; charset=unknown-8bit are added when
 * missing). Anything else is reported as not convertible (the caller bounces
 * with 554 5.6.3).
 *
 * The encoder is streaming: feed any chunking, output lines end in CRLF and are
 * at most 76 characters plus CRLF.
 */
#ifndef MR_MIME7BIT_H
#define MR_MIME7BIT_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

#define MIME7BIT_MAX_HEADER (256 * 1024)

/*
 * hdr: the message start (at least the whole header section if it exists).
 * Returns 1 with *body_off_r (offset of the body in the message) and the new
 * header section including its empty line appended to out; 0 when the message
 * cannot be converted (*reason_r static text).
 */
int mime7bit_header(const char *hdr, size_t len, struct buf *out, size_t *body_off_r, const char **reason_r);

struct mime7bit_qp {
	unsigned col;
	char pending_ws;   /* a SP/TAB not yet known to be trailing */
	bool pending_cr;
};

void mime7bit_qp_init(struct mime7bit_qp *q);
/* Append the encoding of in to out; -1 if out's maximum was hit (out then partial). */
int mime7bit_qp_feed(struct mime7bit_qp *q, const char *in, size_t len, struct buf *out);
int mime7bit_qp_finish(struct mime7bit_qp *q, struct buf *out);

#endif
