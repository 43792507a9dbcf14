/*
 * smtp_reply: resumable parser of SMTP replies for the client side
 * (RFC 5321 4.2, RFC 2034 enhanced status codes), plus an EHLO reply reader.
 *
 * Feed whatever the server sent; the parser stops after each complete reply
 * (*consumed_r tells how much input it used, so pipelined replies are taken one
 * at a time). Results (enum smtp_reply_result):
 *   SMTP_REPLY_OK       *reply_r is a complete reply. It is owned by the
 *                       parser and valid until the next feed/deinit call.
 *   SMTP_REPLY_AGAIN    all input consumed, reply not complete yet.
 *   SMTP_REPLY_INVALID  *error_r (static text) says why; sticky: the client
 *                       should close the connection (a confused peer, or one
 *                       trying to make us buffer without bound).
 *                       *consumed_r then only says how far it read.
 * Rules: every line is "ddd" [("-" / SP) text] CRLF, first digit 2-5, second
 * 0-5; all lines of a reply carry the same code; "ddd-" continues, "ddd " or
 * "ddd" ends. A line ends with CRLF only (bare LF or a stray CR is invalid), is
 * at most max_line octets including CRLF (checked as the bytes arrive, not
 * when the LF comes), has no NUL; a reply has at most max_lines lines (the
 * "endless multiline" defence) and its joined text at most max_text octets.
 *
 * The text of each line, after the code and separator and after an enhanced
 * status code "c.s.d" whose class equals the reply's first digit (c in 2,4,5,
 * s and d 1-3 digits, followed by SP or the end), is joined with '\n' in
 * reply.text. reply.enhanced holds the first enhanced code seen ("" if none).
 *
 * Memory: the line buffer (max_line) and the text buffer (grows to max_text)
 * are allocated by init/first use; nothing per byte.
 */
#ifndef MR_SMTP_REPLY_H
#define MR_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib-smtp/smtp_line.h"

enum smtp_reply_result {
	SMTP_REPLY_INVALID = -1,
	SMTP_REPLY_AGAIN = 0,
	SMTP_REPLY_OK = 1,
};

#define SMTP_REPLY_MAX_LINE_DEFAULT 1000
#define SMTP_REPLY_MAX_LINES_DEFAULT 100
#define SMTP_REPLY_MAX_TEXT_DEFAULT (64 * 1024)

struct smtp_reply {
	int code;          /* 200..559 */
	char enhanced[16]; /* "2.1.0" or "" */
	struct buf text;   /* lines joined with '\n', NUL-terminated, no trailing '\n' */
	unsigned lines;
};

struct smtp_reply_parser {
	struct smtp_line_reader line;
	unsigned max_lines;
	struct smtp_reply reply;
	bool complete;      /* reply was handed out; reset at the next feed */
	const char *error;  /* sticky */
};

/* 0 for any limit selects its default. */
void smtp_reply_parser_init(struct smtp_reply_parser *p, size_t max_line, unsigned max_lines,
			    size_t max_text);
void smtp_reply_parser_deinit(struct smtp_reply_parser *p);
int smtp_reply_parser_feed(struct smtp_reply_parser *p, const char *data, size_t len,
			   size_t *consumed_r, const struct smtp_reply **reply_r, const char **error_r);

/* EHLO capabilities (RFC 5321 4.1.1.1 and the extensions we use). */
enum smtp_ehlo_cap {
	SMTP_EHLO_PIPELINING = 1u << 0,
	SMTP_EHLO_SIZE = 1u << 1,
	SMTP_EHLO_8BITMIME = 1u << 2,
	SMTP_EHLO_SMTPUTF8 = 1u << 3,
	SMTP_EHLO_STARTTLS = 1u << 4,
	SMTP_EHLO_AUTH = 1u << 5,
	SMTP_EHLO_ENHANCEDSTATUSCODES = 1u << 6,
	SMTP_EHLO_DSN = 1u << 7,
	SMTP_EHLO_CHUNKING = 1u << 8,
	SMTP_EHLO_BINARYMIME = 1u << 9,
	SMTP_EHLO_REQUIRETLS = 1u << 10,
};

struct smtp_ehlo {
	unsigned caps;        /* enum smtp_ehlo_cap bits */
	uint64_t size;        /* SIZE value; 0 = none declared or no limit */
	char auth[256];       /* AUTH mechanisms, upper-case, space-separated ("AUTH=" lines too) */
	char domain[256];     /* first word of the greeting line (the server's name) */
};

/*
 * Read the capabilities out of a complete 250 reply to EHLO: keywords are
 * case-insensitive, unknown ones are ignored, over-long values truncated at a
 * word boundary. Returns 0, or -1 when the reply is not a 250.
 */
int smtp_reply_ehlo_parse(const struct smtp_reply *reply, struct smtp_ehlo *ehlo);

#endif
