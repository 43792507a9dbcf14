/*
 * smtp_address: RFC 5321 path parser and normalizer for MAIL FROM / RCPT TO
 * (RFC 6531 for SMTPUTF8). Security critical: relay control decides on the
 * domain this produces, so the grammar is strict and the result unambiguous.
 *
 * Input is the path exactly as it follows "FROM:" / "TO:", angle brackets
 * included ("<user@example.test>"); brackets are required (we are stricter than
 * Postfix). Rules:
 *   - "<>" is the null path, accepted only with SMTP_ADDRESS_ALLOW_NULL.
 *   - A source route "<@a,@b:user@c>" is syntax-checked and dropped (RFC 5321
 *     4.1.1.3, as Postfix does); the result is user@c, flag ROUTE_DROPPED.
 *   - Local part: Dot-string or Quoted-string, stored decoded (unquoted,
 *     unescaped) with flag QUOTED: "\"user@evil\"@example.test" has local part
 *     `user@evil` and domain `example.test`. '%' and '!' are plain characters,
 *     never routing. Case is preserved (local parts are case-sensitive). An
 *     empty local part ("\"\"@x") is refused. At most 64 octets (as sent).
 *   - Domain: hostname of LDH labels (1-63 octets, no leading/trailing hyphen,
 *     at most 253 octets, the last label not all digits), one trailing dot
 *     removed, ASCII lowercased; or an address literal "[192.0.2.1]" /
 *     "[IPv6:2001:db8::1]" checked with inet_pton and stored in canonical
 *     inet_ntop form (flag LITERAL, family and bytes in literal_*).
 *     General address literals ("[tag:...]") are refused.
 *   - 8-bit bytes: without SMTP_ADDRESS_ALLOW_UTF8 -> 553 5.6.7. With it, the
 *     path must be well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF);
 *     non-ASCII is allowed in atoms, quoted strings and domain labels, and the
 *     domain keeps its non-ASCII bytes as-is (only ASCII is lowercased).
 *   - The whole path is at most 256 octets (RFC 5321 4.5.3.1.3).
 *   - "<postmaster>" (any case, no domain) only with SMTP_ADDRESS_ALLOW_POSTMASTER.
 * Errors: 501 5.1.3 (syntax) or 553 5.6.7 (non-ASCII without SMTPUTF8), with a
 * static text in err. On error *addr is left describing no address (flags 0,
 * empty strings).
 *
 * struct smtp_address owns its strings (fixed arrays, NUL-terminated, no
 * malloc); it can be copied by value.
 */
#ifndef MR_SMTP_ADDRESS_H
#define MR_SMTP_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "lib-smtp/smtp_parse.h"

#define SMTP_ADDRESS_PATH_MAX 256
#define SMTP_ADDRESS_LOCAL_MAX 64
#define SMTP_ADDRESS_DOMAIN_MAX 255
/* Enough for smtp_address_format() of any parsed address, NUL included. */
#define SMTP_ADDRESS_FORMAT_MAX (2 * SMTP_ADDRESS_LOCAL_MAX + 3 + SMTP_ADDRESS_DOMAIN_MAX + 1)

/* Parse flags (what the caller allows). */
enum smtp_address_parse_flags {
	SMTP_ADDRESS_ALLOW_NULL = 1u << 0,       /* "<>" (MAIL FROM) */
	SMTP_ADDRESS_ALLOW_UTF8 = 1u << 1,       /* SMTPUTF8 was given */
	SMTP_ADDRESS_ALLOW_POSTMASTER = 1u << 2, /* "<postmaster>" (RCPT TO) */
};

/* Result flags (struct smtp_address.flags). */
enum smtp_address_flags {
	SMTP_ADDRESS_F_NULL = 1u << 0,          /* "<>" */
	SMTP_ADDRESS_F_QUOTED = 1u << 1,        /* local part was a Quoted-string */
	SMTP_ADDRESS_F_LITERAL = 1u << 2,       /* domain is an address literal */
	SMTP_ADDRESS_F_UTF8 = 1u << 3,          /* contains non-ASCII */
	SMTP_ADDRESS_F_ROUTE_DROPPED = 1u << 4, /* a source route was removed */
	SMTP_ADDRESS_F_POSTMASTER = 1u << 5,    /* "<postmaster>" without domain */
};

struct smtp_address {
	unsigned flags;
	size_t local_len;  /* decoded octets */
	size_t domain_len;
	char local[SMTP_ADDRESS_LOCAL_MAX + 1];   /* decoded, NUL-terminated; may contain '@' etc. */
	char domain[SMTP_ADDRESS_DOMAIN_MAX + 1]; /* normalized; literal with brackets, "[IPv6:...]" */
	int literal_family;                       /* AF_INET / AF_INET6 when F_LITERAL, else 0 */
	unsigned char literal_addr[16];           /* network order (4 bytes used for AF_INET) */
};

/* Returns 0 on success, -1 with err filled. */
int smtp_address_parse(const char *s, size_t len, unsigned flags, struct smtp_address *addr,
		       struct smtp_parse_error *err);

/*
 * Write the address in canonical form "local@domain" (no angle brackets; the
 * local part quoted with minimal escapes when it is not a Dot-string; "" for the
 * null path, "postmaster" for F_POSTMASTER) into dst, NUL-terminated. Returns
 * the length without the NUL, or -1 when size is too small (dst then holds "").
 * SMTP_ADDRESS_FORMAT_MAX bytes are always enough.
 */
int smtp_address_format(const struct smtp_address *addr, char *dst, size_t size);

/*
 * True when s (no brackets around the whole) is a valid Domain or address
 * literal by the rules above, e.g. for the EHLO/HELO argument. flags: only
 * SMTP_ADDRESS_ALLOW_UTF8 is used.
 */
bool smtp_address_domain_valid(const char *s, size_t len, unsigned flags);

/* RFC 3629 well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool smtp_utf8_valid(const char *s, size_t len);

#endif
