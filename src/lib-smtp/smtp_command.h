/*
 * smtp_command: parse one SMTP command line (RFC 5321 with the ESMTP
 * extensions SIZE, 8BITMIME, BINARYMIME/CHUNKING, SMTPUTF8, DSN, AUTH,
 * STARTTLS). The line is given without its CRLF (as smtp_line hands it out).
 *
 * Lifetime: struct smtp_command holds non-owning views (struct smtp_view) into
 * the line, valid as long as the line is (for smtp_line: until the next feed).
 * Decoded values (ENVID, ORCPT) are copied into fixed arrays inside the struct
 * and live as long as the struct. No allocation.
 *
 * Grammar, strict unless noted:
 *   - The verb is case-insensitive; unknown or malformed -> 500 5.5.1.
 *   - A NUL byte anywhere -> 500 5.5.2; other control characters -> 501 5.5.2;
 *     8-bit bytes are allowed only inside the MAIL/RCPT path (smtp_address then
 *     decides, depending on SMTPUTF8) and the VRFY/EXPN argument; elsewhere
 *     501 5.5.2. Trailing spaces on the line are ignored (lenient, harmless).
 *   - Exactly one SP separates the verb from its argument.
 *   - "MAIL FROM:" / "RCPT TO:" (any case), then zero or more SP (Postfix
 *     tolerates them, so do we), then "<path>" — brackets required, a missing
 *     "<" is 501 5.5.4, an unterminated or trailing-garbage path 501 5.1.3.
 *     The path is NOT parsed here: pass cmd->path to smtp_address_parse() with
 *     SMTP_ADDRESS_ALLOW_UTF8 when the transaction has SMTPUTF8.
 *   - Parameters: one or more SP between them; keyword per RFC 5321
 *     (alnum and '-', case-insensitive), value 1*(%d33-60 / %d62-126).
 *     Unknown keyword -> 555 5.5.4; duplicate or bad value -> 501 5.5.4.
 *     MAIL: SIZE=digits (<= 20, fits uint64), BODY=7BIT|8BITMIME|BINARYMIME,
 *     SMTPUTF8 (no value), RET=FULL|HDRS, ENVID=xtext (<= 100 chars, decoded
 *     must be printable ASCII), AUTH=xtext (kept raw, "<>" allowed).
 *     RCPT: NOTIFY=NEVER | list of SUCCESS,FAILURE,DELAY (NEVER exclusive, no
 *     repeats), ORCPT=addr-type;xtext (decoded, <= 500 chars).
 *   - EHLO/HELO need an argument (501 5.5.4 if missing); whether it is a valid
 *     domain or address literal is reported in domain_valid, not enforced, so
 *     policy can choose (many real clients send bad HELO names).
 *   - DATA RSET QUIT STARTTLS take no argument (501 5.5.4); NOOP and HELP
 *     take any optional text; VRFY and EXPN need one.
 *   - BDAT size [LAST]: size 1-20 digits fitting uint64, else 501 5.5.4.
 *   - AUTH mechanism [initial-response]: mechanism 1-20 of [A-Za-z0-9_-],
 *     initial response base64 characters or "=".
 */
#ifndef MR_SMTP_COMMAND_H
#define MR_SMTP_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib-smtp/smtp_parse.h"

enum smtp_verb {
	SMTP_VERB_NONE = 0,
	SMTP_VERB_EHLO,
	SMTP_VERB_HELO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
};

enum smtp_body { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };
enum smtp_ret { SMTP_RET_NONE = 0, SMTP_RET_FULL, SMTP_RET_HDRS };
enum smtp_notify {
	SMTP_NOTIFY_NEVER = 1u << 0,
	SMTP_NOTIFY_SUCCESS = 1u << 1,
	SMTP_NOTIFY_FAILURE = 1u << 2,
	SMTP_NOTIFY_DELAY = 1u << 3,
};

#define SMTP_ENVID_MAX 100
#define SMTP_ORCPT_MAX 500

struct smtp_mail_params {
	bool has_size;
	uint64_t size;
	enum smtp_body body;
	bool smtputf8;
	enum smtp_ret ret;
	bool has_envid;
	size_t envid_len;
	char envid[SMTP_ENVID_MAX + 1]; /* xtext-decoded, NUL-terminated */
	struct smtp_view auth;          /* raw xtext of AUTH=; data NULL when absent */
};

struct smtp_rcpt_params {
	unsigned notify; /* enum smtp_notify bits; 0 when not given */
	bool has_orcpt;
	struct smtp_view orcpt_type;    /* e.g. "rfc822" (view into the line) */
	size_t orcpt_len;
	char orcpt[SMTP_ORCPT_MAX + 1]; /* xtext-decoded address, NUL-terminated */
};

struct smtp_command {
	enum smtp_verb verb;
	const char *verb_name;   /* canonical upper-case name, static */
	struct smtp_view arg;    /* text after "VERB " without trailing spaces; len 0 if none */
	/* EHLO / HELO */
	struct smtp_view domain;
	bool domain_valid;
	/* MAIL / RCPT */
	struct smtp_view path;   /* "<...>" including the brackets */
	struct smtp_mail_params mail;
	struct smtp_rcpt_params rcpt;
	/* BDAT */
	uint64_t bdat_size;
	bool bdat_last;
	/* AUTH */
	struct smtp_view auth_mech;
	struct smtp_view auth_initial; /* data NULL when absent */
};

/* Returns 0 (cmd filled) or -1 (err filled; cmd->verb set when the verb was known). */
int smtp_command_parse(const char *line, size_t len, struct smtp_command *cmd,
		       struct smtp_parse_error *err);

/* Decode RFC 3461 xtext into dst (size includes the NUL). Returns the decoded
 * length or -1 on bad syntax or when dst is too small. */
int smtp_xtext_decode(const char *s, size_t len, char *dst, size_t size);

#endif
