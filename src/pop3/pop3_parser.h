/*
 * pop3_parser: POP3 command lines (RFC 1939, 2449). pop3_line_reader splits a byte stream
 * into CRLF (or LF) lines with a hard maximum (POP3_LINE_MAX, longer lines are an error
 * the session answers with -ERR and a close). pop3_parse_command splits a line into an
 * upper-cased keyword of 3-4 letters and up to two arguments; for PASS the argument is
 * the rest of the line (passwords may contain spaces). Views point into the line.
 */
#ifndef MR_POP3_PARSER_H
#define MR_POP3_PARSER_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

#define POP3_LINE_MAX 1024 /* SASL responses exceed RFC 2449's 255 */

struct pop3_line_reader {
	struct buf line;
	bool overflow;   /* discarding the rest of a too-long line */
};

void pop3_line_reader_init(struct pop3_line_reader *r);
void pop3_line_reader_deinit(struct pop3_line_reader *r);
/*
 * Feed bytes. Returns 1 when a complete line is in r->line (without CRLF; call
 * pop3_line_reader_next before feeding again), 0 need more, -1 line too long (the reader
 * skips to the next line end on the following feeds). *consumed_r tells how much was used.
 */
int pop3_line_reader_feed(struct pop3_line_reader *r, const char *data, size_t len, size_t *consumed_r);
void pop3_line_reader_next(struct pop3_line_reader *r);

struct pop3_command {
	char verb[5];
	const char *arg[2];   /* NUL-terminated copies inside the command; NULL when absent */
	size_t nargs;
	char storage[POP3_LINE_MAX + 1];
};

/* 1 parsed, -1 invalid (unknown shape, 8-bit or control bytes, too many arguments). */
int pop3_parse_command(const char *line, size_t len, struct pop3_command *cmd);

/* Parse a message number argument: 1..max, else 0. */
unsigned long pop3_parse_number(const char *s);

#endif
