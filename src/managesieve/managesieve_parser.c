#include "managesieve/managesieve_parser.h"

#include <string.h>

enum {
	S_NAME,    /* the command atom */
	S_SEP,     /* after a token: SP, CR or LF */
	S_ARG,     /* the start of an argument */
	S_QUOTED,
	S_QESC,
	S_LITLEN,
	S_LITPLUS, /* after '+' */
	S_LITCR,   /* after '}' */
	S_LITLF,   /* after '}' CR */
	S_LITDATA,
	S_NUMBER,
	S_ATOM,
	S_CR,      /* after CR: LF must follow */
	S_SKIP,    /* an error happened: discard up to LF (and skip a trailing literal) */
};

/* skip-mode tracking of a "{N}" or "{N+}" that ends the bad line */
enum { K_NONE, K_DIGITS, K_PLUS, K_CLOSED };

static bool atom_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '%' && c != '*' && c != '"' &&
	       c != '\\' && c != ']';
}

void managesieve_parser_init(struct managesieve_parser *p, size_t max_line, size_t max_literal)
{
	memset(p, 0, sizeof(*p));
	p->max_line = max_line < 1100 ? 1100 : max_line;
	p->max_literal = max_literal;
	buf_init(&p->data, p->max_line + max_literal + 64);
	managesieve_parser_next(p, false);
}

void managesieve_parser_deinit(struct managesieve_parser *p)
{
	buf_deinit(&p->data);
}

void managesieve_parser_next(struct managesieve_parser *p, bool bare)
{
	p->bare = bare;
	p->state = bare ? S_ARG : S_NAME;
	p->name[0] = '\0';
	p->name_len = 0;
	p->nargs = 0;
	buf_reset(&p->data);
	p->line_len = 0;
	p->lit_len = p->lit_left = 0;
	p->lit_skip = false;
	p->error = NULL;
	p->error_code = NULL;
	p->fatal = false;
}

const char *managesieve_parser_arg(const struct managesieve_parser *p, size_t i)
{
	return i < p->nargs ? p->data.data + p->args[i].off : "";
}

static void set_error(struct managesieve_parser *p, const char *error, const char *code)
{
	if (p->error == NULL) {
		p->error = error;
		p->error_code = code;
	}
	p->state = S_SKIP;
	p->skip_kind = K_NONE;
}

static int begin_arg(struct managesieve_parser *p, enum managesieve_arg_type type, bool literal)
{
	if (p->nargs >= MANAGESIEVE_MAX_ARGS) {
		set_error(p, "Too many arguments", NULL);
		return -1;
	}
	struct managesieve_arg *a = &p->args[p->nargs];
	memset(a, 0, sizeof(*a));
	a->type = type;
	a->literal = literal;
	a->off = p->data.len;
	return 0;
}

static int end_arg(struct managesieve_parser *p)
{
	struct managesieve_arg *a = &p->args[p->nargs];
	a->len = p->data.len - a->off;
	if (buf_append_c(&p->data, '\0') < 0) {
		set_error(p, "Command too long", NULL);
		return -1;
	}
	p->nargs++;
	p->state = S_SEP;
	return 0;
}

static int add_byte(struct managesieve_parser *p, char c)
{
	if (buf_append_c(&p->data, c) < 0) {
		set_error(p, "Command too long", NULL);
		return -1;
	}
	return 0;
}

static void start_literal(struct managesieve_parser *p)
{
	p->lit_left = p->lit_len;
	if (p->state != S_SKIP) {
		if (p->lit_len > p->max_literal || p->data.len + p->lit_len + 1 > p->data.max) {
			set_error(p, "Literal too large", "QUOTA/MAXSIZE");
			p->lit_skip = true;
		} else {
			p->lit_skip = false;
			p->line_len = 0; /* a line limit counts the bytes between literals */
		}
	} else {
		p->lit_skip = true;
	}
	if (p->lit_left == 0) {
		if (!p->lit_skip)
			end_arg(p);
		return;
	}
	if (!p->lit_skip)
		p->state = S_LITDATA;
}

int managesieve_parser_feed(struct managesieve_parser *p, const char *data, size_t len, size_t *used_r)
{
	size_t i = 0;
	while (i < len) {
		/* literal bytes, stored or skipped, in bulk */
		if (p->lit_left > 0) {
			size_t n = len - i;
			if (n > p->lit_left)
				n = (size_t)p->lit_left;
			if (!p->lit_skip && p->state == S_LITDATA && buf_append(&p->data, data + i, n) < 0) {
				set_error(p, "Literal too large", "QUOTA/MAXSIZE");
				p->lit_skip = true;
			}
			p->lit_left -= n;
			i += n;
			if (p->lit_left == 0) {
				if (p->lit_skip) {
					if (p->state != S_SKIP)
						set_error(p, "Literal too large", "QUOTA/MAXSIZE");
					p->skip_kind = K_NONE;
					p->line_len = 0;
				} else {
					end_arg(p);
				}
			}
			continue;
		}
		unsigned char c = (unsigned char)data[i];
		if (p->line_len >= p->max_line) {
			p->error = "Line too long";
			p->error_code = NULL;
			p->fatal = true;
			*used_r = i + 1;
			return -1;
		}
		switch (p->state) {
		case S_NAME:
			if (atom_char(c)) {
				if (p->name_len >= MANAGESIEVE_MAX_ATOM) {
					set_error(p, "Unknown command", NULL);
					continue;
				}
				p->name[p->name_len++] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
				p->name[p->name_len] = '\0';
			} else if (p->name_len > 0 && c == ' ') {
				p->state = S_ARG;
			} else if (p->name_len > 0 && (c == '\r' || c == '\n')) {
				p->state = S_SEP;
				continue; /* handled by S_SEP */
			} else {
				set_error(p, p->name_len == 0 ? "Expected a command" : "Invalid character in command", NULL);
				continue;
			}
			break;
		case S_SEP:
			if (c == ' ') {
				p->state = S_ARG;
			} else if (c == '\r') {
				p->state = S_CR;
			} else if (c == '\n') {
				*used_r = i + 1;
				return p->error ? -1 : 1;
			} else {
				set_error(p, "Expected SP or CRLF after an argument", NULL);
				continue;
			}
			break;
		case S_ARG:
			if (c == '"') {
				if (begin_arg(p, MANAGESIEVE_ARG_STRING, false) < 0)
					continue;
				p->state = S_QUOTED;
			} else if (c == '{') {
				if (begin_arg(p, MANAGESIEVE_ARG_STRING, true) < 0)
					continue;
				p->lit_len = 0;
				p->lit_digits = 0;
				p->state = S_LITLEN;
			} else if (c >= '0' && c <= '9') {
				if (begin_arg(p, MANAGESIEVE_ARG_NUMBER, false) < 0)
					continue;
				p->state = S_NUMBER;
				continue;
			} else if (atom_char(c)) {
				if (begin_arg(p, MANAGESIEVE_ARG_ATOM, false) < 0)
					continue;
				p->state = S_ATOM;
				continue;
			} else {
				set_error(p, "Expected an argument", NULL);
				continue;
			}
			break;
		case S_QUOTED:
			if (c == '\\') {
				p->state = S_QESC;
			} else if (c == '"') {
				end_arg(p);
			} else if (c == '\r' || c == '\n' || c == '\0') {
				set_error(p, "Invalid character in a quoted string", NULL);
				continue;
			} else if (p->data.len - p->args[p->nargs].off >= MANAGESIEVE_MAX_QUOTED) {
				set_error(p, "Quoted string too long (use a literal)", NULL);
				continue;
			} else {
				add_byte(p, (char)c);
			}
			break;
		case S_QESC:
			if (c == '"' || c == '\\') {
				add_byte(p, (char)c);
				p->state = S_QUOTED;
			} else {
				set_error(p, "Invalid escape in a quoted string", NULL);
				continue;
			}
			break;
		case S_LITLEN:
			if (c >= '0' && c <= '9') {
				p->lit_len = p->lit_len * 10 + (c - '0');
				p->lit_digits++;
				if (p->lit_len > UINT32_MAX) {
					p->error = "Literal length too large";
					p->error_code = NULL;
					p->fatal = true;
					*used_r = i + 1;
					return -1;
				}
			} else if (p->lit_digits > 0 && (c == '+' || c == '}')) {
				p->state = c == '+' ? S_LITPLUS : S_LITCR;
			} else {
				set_error(p, "Invalid literal", NULL);
				continue;
			}
			break;
		case S_LITPLUS:
			if (c == '}') {
				p->state = S_LITCR;
			} else {
				set_error(p, "Invalid literal", NULL);
				continue;
			}
			break;
		case S_LITCR:
			if (c == '\r') {
				p->state = S_LITLF;
			} else if (c == '\n') {
				start_literal(p);
			} else {
				set_error(p, "Literal must be followed by CRLF", NULL);
				continue;
			}
			break;
		case S_LITLF:
			if (c == '\n') {
				start_literal(p);
			} else {
				set_error(p, "Literal must be followed by CRLF", NULL);
				continue;
			}
			break;
		case S_LITDATA:
			/* unreachable: lit_left > 0 is handled above */
			break;
		case S_NUMBER:
			if (c >= '0' && c <= '9') {
				struct managesieve_arg *a = &p->args[p->nargs];
				uint64_t v = (uint64_t)a->num * 10 + (c - '0');
				if (v > UINT32_MAX) {
					set_error(p, "Number too large", NULL);
					continue;
				}
				a->num = (uint32_t)v;
				add_byte(p, (char)c);
			} else if (c == ' ' || c == '\r' || c == '\n') {
				end_arg(p);
				continue;
			} else {
				set_error(p, "Invalid number", NULL);
				continue;
			}
			break;
		case S_ATOM:
			if (atom_char(c)) {
				if (p->data.len - p->args[p->nargs].off >= MANAGESIEVE_MAX_QUOTED) {
					set_error(p, "Atom too long", NULL);
					continue;
				}
				add_byte(p, (char)c);
			} else if (c == ' ' || c == '\r' || c == '\n') {
				end_arg(p);
				continue;
			} else {
				set_error(p, "Invalid character in an atom", NULL);
				continue;
			}
			break;
		case S_CR:
			if (c == '\n') {
				*used_r = i + 1;
				return p->error ? -1 : 1;
			}
			set_error(p, "Bare CR", NULL);
			continue;
		case S_SKIP:
			if (c == '\n') {
				if (p->skip_kind == K_CLOSED && p->lit_len > 0) {
					/* the bad line announced a literal: its bytes are not a command */
					p->lit_skip = true;
					p->lit_left = p->lit_len;
					p->skip_kind = K_NONE;
					p->lit_len = 0;
					break;
				}
				*used_r = i + 1;
				return -1;
			}
			if (c == '{') {
				p->skip_kind = K_DIGITS;
				p->lit_len = 0;
			} else if (p->skip_kind == K_DIGITS && c >= '0' && c <= '9') {
				p->lit_len = p->lit_len * 10 + (c - '0');
				if (p->lit_len > UINT32_MAX) {
					p->error = "Literal length too large";
					p->error_code = NULL;
					p->fatal = true;
					*used_r = i + 1;
					return -1;
				}
			} else if (p->skip_kind == K_DIGITS && c == '+') {
				p->skip_kind = K_PLUS;
			} else if ((p->skip_kind == K_DIGITS || p->skip_kind == K_PLUS) && c == '}') {
				p->skip_kind = K_CLOSED;
			} else if (p->skip_kind == K_CLOSED && c == '\r') {
				/* keep K_CLOSED: CRLF may follow */
			} else {
				p->skip_kind = K_NONE;
			}
			break;
		}
		p->line_len++;
		i++;
	}
	*used_r = len;
	return 0;
}
