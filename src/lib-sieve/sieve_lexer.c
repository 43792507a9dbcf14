/*
 * sieve_lexer: RFC 5228 section 8.1 tokens over a complete script in memory.
 * Never reads past end; every string is bounded by max_string. Lines count
 * from 1, columns from 1 (bytes).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lib-sieve/sieve_private.h"

void sieve_lexer_init(struct sieve_lexer *lx, const char *src, size_t len, size_t max_string)
{
	lx->p = src;
	lx->end = src + len;
	lx->line = 1;
	lx->col = 1;
	buf_init(&lx->str, max_string ? max_string : 65536);
	lx->errbuf[0] = '\0';
}

void sieve_lexer_deinit(struct sieve_lexer *lx)
{
	buf_deinit(&lx->str);
}

const char *sieve_token_name(enum sieve_token_type t)
{
	switch (t) {
	case SIEVE_TOK_EOF: return "end of script";
	case SIEVE_TOK_ERROR: return "error";
	case SIEVE_TOK_IDENTIFIER: return "identifier";
	case SIEVE_TOK_TAG: return "tag";
	case SIEVE_TOK_NUMBER: return "number";
	case SIEVE_TOK_STRING: return "string";
	case SIEVE_TOK_LBRACKET: return "'['";
	case SIEVE_TOK_RBRACKET: return "']'";
	case SIEVE_TOK_LPAREN: return "'('";
	case SIEVE_TOK_RPAREN: return "')'";
	case SIEVE_TOK_LBRACE: return "'{'";
	case SIEVE_TOK_RBRACE: return "'}'";
	case SIEVE_TOK_SEMICOLON: return "';'";
	case SIEVE_TOK_COMMA: return "','";
	}
	return "?";
}

static void lx_adv(struct sieve_lexer *lx)
{
	if (*lx->p == '\n') {
		lx->line++;
		lx->col = 1;
	} else {
		lx->col++;
	}
	lx->p++;
}

static void lx_error(struct sieve_lexer *lx, struct sieve_token *tok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void lx_error(struct sieve_lexer *lx, struct sieve_token *tok, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(lx->errbuf, sizeof(lx->errbuf), fmt, ap);
	va_end(ap);
	tok->type = SIEVE_TOK_ERROR;
	tok->str = lx->errbuf;
	tok->len = strlen(lx->errbuf);
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static const char *printable(char c, char *tmp, size_t n)
{
	if ((unsigned char)c >= 0x21 && (unsigned char)c < 0x7f)
		snprintf(tmp, n, "'%c'", c);
	else
		snprintf(tmp, n, "0x%02x", (unsigned char)c);
	return tmp;
}

/* Skip whitespace and comments; 0 ok, -1 unterminated comment (error set). */
static int lx_skip(struct sieve_lexer *lx, struct sieve_token *tok)
{
	while (lx->p < lx->end) {
		char c = *lx->p;
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			lx_adv(lx);
		} else if (c == '#') {
			while (lx->p < lx->end && *lx->p != '\n')
				lx_adv(lx);
		} else if (c == '/' && lx->p + 1 < lx->end && lx->p[1] == '*') {
			int line = lx->line, col = lx->col;
			lx_adv(lx);
			lx_adv(lx);
			for (;;) {
				if (lx->p >= lx->end) {
					tok->line = line;
					tok->col = col;
					lx_error(lx, tok, "end of script inside a /* comment */");
					return -1;
				}
				if (*lx->p == '*' && lx->p + 1 < lx->end && lx->p[1] == '/') {
					lx_adv(lx);
					lx_adv(lx);
					break;
				}
				lx_adv(lx);
			}
		} else {
			break;
		}
	}
	return 0;
}

static void lx_string_too_long(struct sieve_lexer *lx, struct sieve_token *tok)
{
	lx_error(lx, tok, "string exceeds the maximum length of %zu bytes", lx->str.max);
}

static void lx_quoted(struct sieve_lexer *lx, struct sieve_token *tok)
{
	buf_reset(&lx->str);
	lx_adv(lx); /* opening quote */
	for (;;) {
		if (lx->p >= lx->end) {
			lx_error(lx, tok, "end of script inside a quoted string");
			return;
		}
		char c = *lx->p;
		if (c == '"') {
			lx_adv(lx);
			break;
		}
		if (c == '\\') {
			lx_adv(lx);
			if (lx->p >= lx->end) {
				lx_error(lx, tok, "end of script inside a quoted string");
				return;
			}
			c = *lx->p;
		}
		/* line breaks inside a quoted string are CRLF, like in multi-line strings */
		if (c == '\n' && (lx->str.len == 0 || lx->str.data[lx->str.len - 1] != '\r') &&
		    buf_append_c(&lx->str, '\r') < 0) {
			lx_string_too_long(lx, tok);
			return;
		}
		if (buf_append_c(&lx->str, c) < 0) {
			lx_string_too_long(lx, tok);
			return;
		}
		lx_adv(lx);
	}
	tok->type = SIEVE_TOK_STRING;
	tok->str = lx->str.data;
	tok->len = lx->str.len;
	tok->multiline = false;
}

static void lx_multiline(struct sieve_lexer *lx, struct sieve_token *tok)
{
	buf_reset(&lx->str);
	/* after "text:": optional whitespace, then a hash comment or CRLF */
	while (lx->p < lx->end && (*lx->p == ' ' || *lx->p == '\t'))
		lx_adv(lx);
	if (lx->p < lx->end && *lx->p == '#') {
		while (lx->p < lx->end && *lx->p != '\n')
			lx_adv(lx);
	}
	if (lx->p < lx->end && *lx->p == '\r')
		lx_adv(lx);
	if (lx->p >= lx->end) {
		lx_error(lx, tok, "end of script inside a multi-line string");
		return;
	}
	if (*lx->p != '\n') {
		char tmp[16];
		tok->line = lx->line;
		tok->col = lx->col;
		lx_error(lx, tok, "unexpected %s after text: (expected end of line)",
			 printable(*lx->p, tmp, sizeof(tmp)));
		return;
	}
	lx_adv(lx);
	for (;;) {
		/* at the start of a line */
		if (lx->p >= lx->end) {
			lx_error(lx, tok, "end of script inside a multi-line string (missing '.' line)");
			return;
		}
		if (*lx->p == '.') {
			const char *q = lx->p + 1;
			if (q < lx->end && *q == '\r')
				q++;
			if (q >= lx->end || *q == '\n') {
				/* terminator */
				while (lx->p < q)
					lx_adv(lx);
				if (lx->p < lx->end)
					lx_adv(lx);
				break;
			}
			/* dot-stuffing: ".." at the start of a line stands for "." */
			if (q < lx->end && *q == '.')
				lx_adv(lx);
		}
		while (lx->p < lx->end && *lx->p != '\n') {
			if (*lx->p == '\r' && lx->p + 1 < lx->end && lx->p[1] == '\n') {
				lx_adv(lx);
				continue;
			}
			if (buf_append_c(&lx->str, *lx->p) < 0) {
				lx_string_too_long(lx, tok);
				return;
			}
			lx_adv(lx);
		}
		if (lx->p >= lx->end) {
			lx_error(lx, tok, "end of script inside a multi-line string (missing '.' line)");
			return;
		}
		if (buf_append(&lx->str, "\r\n", 2) < 0) {
			lx_string_too_long(lx, tok);
			return;
		}
		lx_adv(lx);
	}
	tok->type = SIEVE_TOK_STRING;
	tok->str = lx->str.data;
	tok->len = lx->str.len;
	tok->multiline = true;
}

void sieve_lexer_next(struct sieve_lexer *lx, struct sieve_token *tok)
{
	memset(tok, 0, sizeof(*tok));
	tok->line = lx->line;
	tok->col = lx->col;
	if (lx_skip(lx, tok) < 0)
		return;
	tok->line = lx->line;
	tok->col = lx->col;
	if (lx->p >= lx->end) {
		tok->type = SIEVE_TOK_EOF;
		return;
	}
	char c = *lx->p;
	switch (c) {
	case '[': tok->type = SIEVE_TOK_LBRACKET; lx_adv(lx); return;
	case ']': tok->type = SIEVE_TOK_RBRACKET; lx_adv(lx); return;
	case '(': tok->type = SIEVE_TOK_LPAREN; lx_adv(lx); return;
	case ')': tok->type = SIEVE_TOK_RPAREN; lx_adv(lx); return;
	case '{': tok->type = SIEVE_TOK_LBRACE; lx_adv(lx); return;
	case '}': tok->type = SIEVE_TOK_RBRACE; lx_adv(lx); return;
	case ';': tok->type = SIEVE_TOK_SEMICOLON; lx_adv(lx); return;
	case ',': tok->type = SIEVE_TOK_COMMA; lx_adv(lx); return;
	case '"': lx_quoted(lx, tok); return;
	default: break;
	}
	if (is_digit(c)) {
		uint64_t v = 0;
		bool overflow = false;
		while (lx->p < lx->end && is_digit(*lx->p)) {
			unsigned d = (unsigned)(*lx->p - '0');
			if (v > (UINT64_MAX - d) / 10)
				overflow = true;
			else
				v = v * 10 + d;
			lx_adv(lx);
		}
		uint64_t mul = 1;
		if (lx->p < lx->end) {
			switch (*lx->p) {
			case 'K': case 'k': mul = 1024; break;
			case 'M': case 'm': mul = 1024 * 1024; break;
			case 'G': case 'g': mul = 1024 * 1024 * 1024; break;
			default: break;
			}
			if (mul != 1)
				lx_adv(lx);
		}
		if (!overflow && v > UINT64_MAX / mul)
			overflow = true;
		/* Sieve numbers are at least 31 bits (RFC 5228 2.4.1); we allow up to 2^63-1. */
		if (overflow || v * mul > (uint64_t)INT64_MAX) {
			lx_error(lx, tok, "number is too large");
			return;
		}
		if (lx->p < lx->end && is_alpha(*lx->p)) {
			char tmp[16];
			tok->line = lx->line;
			tok->col = lx->col;
			lx_error(lx, tok, "unexpected %s after number", printable(*lx->p, tmp, sizeof(tmp)));
			return;
		}
		tok->type = SIEVE_TOK_NUMBER;
		tok->number = v * mul;
		return;
	}
	if (c == ':' || is_alpha(c)) {
		bool tag = c == ':';
		if (tag) {
			lx_adv(lx);
			if (lx->p >= lx->end || !is_alpha(*lx->p)) {
				lx_error(lx, tok, "':' must be followed by a tag name");
				return;
			}
		}
		buf_reset(&lx->str);
		while (lx->p < lx->end && (is_alpha(*lx->p) || is_digit(*lx->p))) {
			if (buf_append_c(&lx->str, *lx->p) < 0) {
				lx_error(lx, tok, "identifier is too long");
				return;
			}
			lx_adv(lx);
		}
		if (!tag && lx->str.len == 4 && strncasecmp(lx->str.data, "text", 4) == 0 &&
		    lx->p < lx->end && *lx->p == ':') {
			lx_adv(lx);
			lx_multiline(lx, tok);
			return;
		}
		tok->type = tag ? SIEVE_TOK_TAG : SIEVE_TOK_IDENTIFIER;
		tok->str = lx->str.data;
		tok->len = lx->str.len;
		return;
	}
	char tmp[16];
	lx_error(lx, tok, "unexpected character %s", printable(c, tmp, sizeof(tmp)));
}
