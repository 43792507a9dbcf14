/*
 * client_reply: the outbound client's minimal SMTP reply assembler (RFC 5321
 * 4.2), fed one line at a time (without its line ending). A stand-in with a
 * narrow interface until lib-smtp's smtp_reply parser is integrated.
 *
 * Limits: at most max_lines lines per reply (an endless multiline reply is an
 * error), text kept up to CLIENT_REPLY_TEXT_MAX bytes (the rest is counted, not
 * stored). All lines of one reply must carry the same code.
 */
#ifndef MR_CLIENT_REPLY_H
#define MR_CLIENT_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

#define CLIENT_REPLY_TEXT_MAX 8192
#define CLIENT_REPLY_MAX_LINES_DEFAULT 100

struct client_reply {
	int code;            /* 200..599 once a line was accepted */
	char enh[16];        /* enhanced status code of the first line ("5.1.1"), or "" */
	struct buf text;     /* lines after "NNN-"/"NNN " joined by '\n' */
	unsigned lines;
	unsigned max_lines;
	bool done;
};

void client_reply_init(struct client_reply *r, unsigned max_lines);
void client_reply_deinit(struct client_reply *r);
/* Start a new reply (keeps the allocation). */
void client_reply_reset(struct client_reply *r);
/* 1 complete, 0 need more lines, -1 malformed / too many lines (error_r static). */
int client_reply_feed_line(struct client_reply *r, const char *line, size_t len, const char **error_r);
/* The i-th text line (i < lines) into out (NUL-terminated, truncated to size). */
bool client_reply_line(const struct client_reply *r, unsigned i, char *out, size_t size);

#endif
