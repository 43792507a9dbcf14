/*
 * managesieve_parser: the client side of the ManageSieve grammar (RFC 5804 §4), fed
 * incrementally. A command is an atom followed by arguments separated by one SP:
 * quoted strings ("..." with \" and \\ escapes, no CR/LF/NUL, at most 1024 octets),
 * literals ({N+} CRLF or {N} CRLF followed by N octets; no continuation is sent for
 * either), numbers (1*DIGIT, at most 2^32-1) and atoms; CRLF ends the command. In
 * "bare" mode (a SASL response) the line holds only arguments, no command atom.
 *
 * Contract:
 * - managesieve_parser_feed() consumes bytes and returns 1 when a whole command is
 *   parsed (*used_r tells how many bytes it took; the rest belongs to the next
 *   command), 0 when all bytes were consumed and more are needed, -1 on an error.
 * - Errors are reported after the rest of the bad line has been consumed (up to LF; a
 *   literal announced before the error is skipped by count, never stored), so the
 *   caller can answer NO and go on with the next command. error_code is NULL or an
 *   RFC 5804 response code ("QUOTA/MAXSIZE" for a literal above max_literal).
 *   A fatal error (fatal=true: line longer than max_line, bad literal length) is
 *   returned at once; the caller must close the connection.
 * - Memory is bounded: non-literal bytes of a line by max_line, one literal by
 *   max_literal, arguments by MANAGESIEVE_MAX_ARGS (more is an error).
 * - After 1 or -1, call managesieve_parser_next() before feeding the next command.
 */
#ifndef MR_MANAGESIEVE_PARSER_H
#define MR_MANAGESIEVE_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define MANAGESIEVE_MAX_ARGS 8
#define MANAGESIEVE_MAX_ATOM 32
#define MANAGESIEVE_MAX_QUOTED 1024

enum managesieve_arg_type {
	MANAGESIEVE_ARG_ATOM,
	MANAGESIEVE_ARG_NUMBER, /* also in str as digits */
	MANAGESIEVE_ARG_STRING, /* quoted or literal */
};

struct managesieve_arg {
	enum managesieve_arg_type type;
	bool literal;
	size_t off, len; /* bytes in the parser's data buffer; a NUL follows each */
	uint32_t num;
};

struct managesieve_parser {
	int state;
	bool bare;                 /* the next line has no command atom */
	size_t max_line, max_literal;
	char name[MANAGESIEVE_MAX_ATOM + 1]; /* the command, uppercased */
	size_t name_len;
	struct managesieve_arg args[MANAGESIEVE_MAX_ARGS];
	size_t nargs;
	struct buf data;           /* argument bytes */
	size_t line_len;           /* non-literal bytes of this line so far */
	uint64_t lit_len, lit_left;
	bool lit_skip;             /* the literal is being discarded (after an error) */
	unsigned lit_digits;
	int skip_kind;             /* a "{N}" seen while skipping a bad line */
	const char *error;         /* set on -1 */
	const char *error_code;
	bool fatal;
};

/* max_line: non-literal bytes per line (at least 1100); max_literal: bytes of one literal. */
void managesieve_parser_init(struct managesieve_parser *p, size_t max_line, size_t max_literal);
void managesieve_parser_deinit(struct managesieve_parser *p);
int managesieve_parser_feed(struct managesieve_parser *p, const char *data, size_t len, size_t *used_r);
/* Ready for the next command (bare=true: a SASL response line follows). */
void managesieve_parser_next(struct managesieve_parser *p, bool bare);
/* Argument i as a NUL-terminated string (strings may hold NULs: use len). */
const char *managesieve_parser_arg(const struct managesieve_parser *p, size_t i);

#endif
