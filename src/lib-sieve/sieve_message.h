/*
 * sieve_message: what the interpreter needs from a raw RFC 5322 message:
 * the header list (unfolded; RFC 2047 decoded copy), MIME parts with decoded
 * text, address lists and dates. Everything is bounded: header count,
 * MIME depth and part count, decoded size. Internal to lib-sieve.
 */
#ifndef MR_SIEVE_MESSAGE_H
#define MR_SIEVE_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "lib/buf.h"

struct sieve_hdr {
	char *name;
	char *raw;       /* unfolded value, leading/trailing whitespace trimmed */
	char *decoded;   /* RFC 2047 decoded to UTF-8 */
	char *orig;      /* the field as written (name, colon, folded value), without the final CRLF */
	bool deleted;
};

struct sieve_part {
	char *type;      /* "text/plain" lowercased; default text/plain */
	char *raw;       /* undecoded body of this part */
	size_t raw_len;
	char *text;      /* decoded + converted to UTF-8 (NULL if not text/) */
	size_t text_len;
	bool multipart;
	char *prologue, *epilogue;   /* multipart only (may be NULL) */
	struct sieve_hdr *hdrs;      /* the part's header fields; NULL for part 0 (the message's) */
	size_t nhdrs;
	size_t end;                  /* index of the last part in this part's subtree */
	unsigned depth;
};

struct sieve_message {
	struct sieve_hdr *hdrs;
	bool adding;
	size_t nhdrs, alloc;
	const char *body;
	size_t body_len;
	bool has_body;   /* false: header only, no empty line (RFC 5173: body tests fail) */
	struct sieve_part *parts;
	size_t nparts;
	bool parts_parsed;
	size_t body_offset;   /* offset of the body in the raw message */
};

void sieve_message_parse(struct sieve_message *m, const char *raw, size_t len, size_t max_headers);
void sieve_message_free(struct sieve_message *m);
/* Parse MIME structure once (lazily); bounded by max_parts and max_body. */
void sieve_message_parse_parts(struct sieve_message *m, unsigned max_parts, size_t max_body);
void sieve_message_add_header(struct sieve_message *m, const char *name, const char *value, bool last);
/* "Name: value" ready for the wire (RFC 2047 words for non-ASCII, line breaks folded). */
char *sieve_header_encode(const char *name, const char *value);
/* The header block after edits: every remaining field + CRLF (no final empty line). */
char *sieve_message_header_text(const struct sieve_message *m);

/* A parameter of a Content-Type/Content-Disposition style value (allocated), or NULL. */
char *sieve_mime_param(const char *value, const char *name);

/* Decode RFC 2047 encoded words into out (UTF-8). */
void sieve_rfc2047_decode(const char *s, size_t len, struct buf *out);
/* Convert bytes in charset to UTF-8 (bounded by out->max); returns 0 or -1 (copied raw). */
int sieve_charset_to_utf8(const char *charset, const char *s, size_t len, struct buf *out);

struct sieve_address {
	char *local;     /* NULL for a group name or unparsable */
	char *domain;    /* may be NULL */
};
/* Parse an address list header value; returns count (bounded by max). */
size_t sieve_address_parse_list(const char *s, struct sieve_address *out, size_t max);
/* Parse a single envelope path ("<a@b>" or "a@b"). 1 ok, 0 null path, -1 invalid. */
int sieve_address_parse_path(const char *s, struct sieve_address *out);
void sieve_address_free(struct sieve_address *a);

/* RFC 5322 date-time; 0 ok (*t UTC, *zone_minutes), -1 invalid. */
int sieve_date_parse(const char *s, time_t *t, int *zone_minutes);
/* Format a date part (RFC 5260) of time t shown in zone into out. */
int sieve_date_part(time_t t, int zone_minutes, const char *part, struct buf *out);

#endif
