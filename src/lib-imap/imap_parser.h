/*
 * imap_parser: IMAP command input in two stages.
 *
 * 1. imap_reader collects one complete command from a byte stream: the command
 *    line plus every literal ({N} synchronizing, {N+} non-synchronizing,
 *    RFC 7888 LITERAL+). It is resumable: feed it whatever arrived, it says how
 *    much it consumed and whether the caller must send a "+" continuation.
 *    Limits: line_max per line (excluding literals), literal_max per literal,
 *    append_literal_max for APPEND's literals. A line over the limit or a
 *    non-synchronizing literal over the limit is fatal (the caller sends BYE and
 *    closes, because the stream can no longer be resynchronised); a
 *    synchronizing literal over the limit is a recoverable BAD.
 * 2. imap_parse_command turns the collected bytes into a tree of arguments.
 *    8-bit bytes or controls in atoms, unbalanced parentheses, nesting deeper
 *    than IMAP_PARSER_MAX_DEPTH, or garbage give -1 and an error text (the
 *    session answers BAD). The tree owns copies of its strings, except literals
 *    larger than IMAP_LITERAL_COPY_MAX, which point into the parsed bytes
 *    ("borrowed"); free it with imap_command_free().
 *
 * Atoms keep "[...]" sections whole (BODY[HEADER.FIELDS (A B)]<0.10> is one atom),
 * and may contain '*' and '%' (sequence sets, LIST patterns).
 */
#ifndef MR_IMAP_PARSER_H
#define MR_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

#define IMAP_PARSER_MAX_DEPTH 16
#define IMAP_LITERAL_COPY_MAX 65536

enum imap_read_result {
	IMAP_READ_MORE = 0,        /* all input consumed, command incomplete */
	IMAP_READ_COMMAND = 1,     /* a complete command is in reader->cmd */
	IMAP_READ_CONTINUE = 2,    /* send "+ ..." now (synchronizing literal), then feed the rest */
	IMAP_READ_BAD = -1,        /* recoverable: answer "<tag> BAD <error>" (tag and is_append kept; reset the reader) */
	IMAP_READ_FATAL = -2,      /* answer "* BYE <error>" and close */
};

/*
 * Where APPEND literals of at least `threshold` bytes go instead of memory (the session
 * spools them to a file). begin() returns 0 to accept, -1 to refuse (the command then fails
 * like an oversized literal); write() gets every byte of the literal in order.
 */
struct imap_literal_sink {
	size_t threshold;
	int (*begin)(void *ctx, size_t size);
	void (*write)(void *ctx, const char *data, size_t len);
	void *ctx;
};

struct imap_reader {
	struct buf cmd;            /* the command so far: lines (LF-terminated, CR removed) and literal bytes */
	size_t line_max;
	size_t literal_max;
	size_t append_literal_max;
	size_t line_start;         /* offset in cmd of the current line */
	size_t literal_left;
	bool in_literal;
	bool first_line_done;
	bool is_append;
	char tag[64];              /* tag of the current command, for a BAD reply ("*" when unknown) */
	struct imap_literal_sink sink;
	bool spooling;             /* the current literal goes to the sink */
	const char *error;         /* static text for BAD/FATAL */
};

void imap_reader_init(struct imap_reader *r, size_t line_max, size_t literal_max, size_t append_literal_max);
/* Install a sink for big APPEND literals (NULL begin: none). */
void imap_reader_set_sink(struct imap_reader *r, const struct imap_literal_sink *sink);
/* Change the APPEND literal limit (e.g. at login); call between commands. */
void imap_reader_set_append_max(struct imap_reader *r, size_t append_literal_max);
void imap_reader_deinit(struct imap_reader *r);
/* Forget the current command (after it was handled); releases a large buffer. */
void imap_reader_reset(struct imap_reader *r);
/*
 * Consume input. *consumed_r says how many bytes were used; call again with the
 * remainder after handling IMAP_READ_CONTINUE or IMAP_READ_COMMAND.
 */
enum imap_read_result imap_reader_feed(struct imap_reader *r, const char *data, size_t len, size_t *consumed_r);

enum imap_arg_type {
	IMAP_ARG_ATOM,
	IMAP_ARG_QUOTED,
	IMAP_ARG_LITERAL,
	IMAP_ARG_NIL,
	IMAP_ARG_LIST,
};

struct imap_arg {
	enum imap_arg_type type;
	char *str;                 /* NUL-terminated copy (literals may hold NULs: use len); NULL for LIST */
	size_t len;
	struct imap_arg *list;     /* LIST children */
	size_t count;
	bool literal8;             /* ~{N} (BINARY APPEND) */
	bool spooled;              /* an APPEND literal that went to the reader's sink: no data
	                            * here (str is ""), len is its size */
	bool borrowed;             /* str points into the command bytes (literals over
	                            * IMAP_LITERAL_COPY_MAX; not NUL-terminated): valid until the
	                            * reader is reset */
};

struct imap_command {
	char *tag;
	char *name;                /* upper-cased */
	struct imap_arg *args;
	size_t count;
};

/* Parse a collected command (reader->cmd.data, reader->cmd.len). 1 ok, -1 error. */
int imap_parse_command(const char *data, size_t len, struct imap_command *cmd, const char **error_r);
void imap_command_free(struct imap_command *cmd);

/* Helpers for command handlers. */
bool imap_arg_is_string(const struct imap_arg *a);   /* quoted or literal */
bool imap_arg_is_astring(const struct imap_arg *a);  /* atom, quoted or literal */
/* astring value or NULL */
const char *imap_arg_astring(const struct imap_arg *a);
bool imap_arg_atom_eq(const struct imap_arg *a, const char *upper);

/* Append s as an IMAP string: quoted when safe, literal otherwise. NULL gives NIL. */
void imap_append_string(struct buf *out, const char *s, size_t len);
void imap_append_nstring(struct buf *out, const char *s);
/* astring: atom when possible. */
void imap_append_astring(struct buf *out, const char *s);

#endif
