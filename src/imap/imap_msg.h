/*
 * imap_msg: the MIME structure of one message held in memory (CRLF line ends), for FETCH
 * (ENVELOPE, BODYSTRUCTURE, BODY[section], BINARY) and SEARCH. The tree points into the
 * caller's message bytes, which must outlive it. Nesting is capped at IMAP_MSG_MAX_DEPTH
 * and the number of parts at IMAP_MSG_MAX_PARTS; deeper content is treated as opaque.
 */
#ifndef MR_IMAP_MSG_H
#define MR_IMAP_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "lib/buf.h"

#define IMAP_MSG_MAX_DEPTH 20
#define IMAP_MSG_MAX_PARTS 2000

struct imap_msg_part {
	const char *hdr;          /* header block, including the blank line that ends it */
	size_t hdr_len;
	const char *body;
	size_t body_len;
	char *type, *subtype;     /* lowercase; default text/plain (message/rfc822 in multipart/digest) */
	char *params;             /* IMAP list "(\"charset\" \"utf-8\")" or "NIL" */
	char *charset;            /* the charset parameter as given, or NULL */
	struct imap_msg_part *children; /* multipart */
	size_t nchildren;
	struct imap_msg_part *inner;    /* message/rfc822 */
};

struct imap_msg {
	struct imap_msg_part root;
	size_t parts;
};

void imap_msg_parse(struct imap_msg *m, const char *data, size_t len);
void imap_msg_free(struct imap_msg *m);

/* The first header field with this name in a header block, unfolded; allocated or NULL. */
char *imap_msg_header(const char *hdr, size_t hdr_len, const char *name);
void imap_msg_envelope(const struct imap_msg_part *p, struct buf *out);
void imap_msg_bodystructure(const struct imap_msg_part *p, struct buf *out, bool extended);

/*
 * Resolve a BODY[] section ("", "HEADER", "TEXT", "1.2", "1.2.MIME", "HEADER.FIELDS (A B)",
 * "HEADER.FIELDS.NOT (A B)"). The bytes are appended to out. -1 when the section is
 * malformed; a part that does not exist gives empty content (RFC 9051 6.4.5).
 */
int imap_msg_section(const struct imap_msg *m, const char *section, struct buf *out);
/* BINARY[section]: decoded content of a leaf part. -1 malformed, 0 unknown encoding, 1 ok. */
int imap_msg_binary(const struct imap_msg *m, const char *section, struct buf *out);

/*
 * SEARCH matching (RFC 9051 6.4.4: case-insensitive substring). Body text is decoded
 * (base64, quoted-printable) and converted to UTF-8 from its charset (iconv); header text
 * has its RFC 2047 encoded words decoded. Folding covers ASCII, Latin-1, Latin Extended-A,
 * Greek and Cyrillic capitals.
 */
bool imap_msg_body_search(const struct imap_msg *m, const char *needle);
bool imap_msg_text_search(const char *text, size_t len, const char *needle);
void imap_msg_decode_words(const char *in, size_t len, struct buf *out);
void imap_msg_fold(const char *in, size_t len, struct buf *out);
/* Case-insensitive substring search (ASCII folding). */
bool imap_msg_contains(const char *hay, size_t len, const char *needle);
/* RFC 5322 Date: header to time_t, 0 when unparseable. */
time_t imap_msg_parse_date(const char *s);

#endif
