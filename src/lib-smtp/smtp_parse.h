/*
 * smtp_parse: types shared by the mr_smtpproto parsers (src/lib-smtp).
 *
 * struct smtp_parse_error is how a parser tells the server what to answer: a
 * reply code, an RFC 3463 enhanced status code and a short text, all pointing
 * to static strings (never freed, valid forever). struct smtp_view is a
 * non-owning byte range into the caller's input; how long it lives is stated
 * by the function that hands it out.
 *
 * Every parser in this library is pure: no I/O, no logging, no global state,
 * and no allocation per byte or per command (readers allocate once at init).
 */
#ifndef MR_SMTP_PARSE_H
#define MR_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>

struct smtp_parse_error {
	int code;             /* e.g. 501 */
	const char *enhanced; /* e.g. "5.5.4" */
	const char *text;     /* e.g. "Syntax error in parameters" */
};

struct smtp_view {
	const char *data; /* NULL when absent */
	size_t len;
};

/* Fill err (if not NULL) and return -1, so parsers can `return smtp_parse_fail(...)`. */
int smtp_parse_fail(struct smtp_parse_error *err, int code, const char *enhanced, const char *text);

/* True when v equals the NUL-terminated ASCII string s, ignoring ASCII case. */
bool smtp_view_eq_icase(struct smtp_view v, const char *s);

#endif
