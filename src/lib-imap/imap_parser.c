#include "lib-imap/imap_parser.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/xalloc.h"

#define IMAP_CMD_SLACK (64 * 1024)

void imap_reader_init(struct imap_reader *r, size_t line_max, size_t literal_max, size_t append_literal_max)
{
	memset(r, 0, sizeof(*r));
	r->line_max = line_max;
	r->literal_max = literal_max;
	r->append_literal_max = append_literal_max;
	buf_init(&r->cmd, append_literal_max + IMAP_CMD_SLACK);
	r->tag[0] = '*';
	r->tag[1] = '\0';
}

void imap_reader_set_sink(struct imap_reader *r, const struct imap_literal_sink *sink)
{
	r->sink = *sink;
}

void imap_reader_set_append_max(struct imap_reader *r, size_t append_literal_max)
{
	r->append_literal_max = append_literal_max;
	r->cmd.max = append_literal_max + IMAP_CMD_SLACK;
}

void imap_reader_deinit(struct imap_reader *r)
{
	buf_deinit(&r->cmd);
}

void imap_reader_reset(struct imap_reader *r)
{
	size_t max = r->cmd.max;
	if (r->cmd.cap > 4096) {
		buf_deinit(&r->cmd);
		buf_init(&r->cmd, max);
	} else {
		buf_reset(&r->cmd);
	}
	r->line_start = 0;
	r->literal_left = 0;
	r->in_literal = false;
	r->spooling = false;
	r->first_line_done = false;
	r->is_append = false;
	r->tag[0] = '*';
	r->tag[1] = '\0';
	r->error = NULL;
}

static bool is_atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("(){\"\\", c) == NULL;
}

/* Remember the tag and whether the command is APPEND, from the first line. */
static void reader_first_line(struct imap_reader *r, const char *line, size_t len)
{
	size_t i = 0;
	while (i < len && i < sizeof(r->tag) - 1 && is_atom_char((unsigned char)line[i]) && line[i] != '+')
		i++;
	if (i > 0 && i < sizeof(r->tag) - 1 && (i == len || line[i] == ' ')) {
		memcpy(r->tag, line, i);
		r->tag[i] = '\0';
	}
	if (i < len && line[i] == ' ') {
		const char *w = line + i + 1;
		size_t wl = len - i - 1;
		if (wl >= 7 && strncasecmp(w, "APPEND ", 7) == 0)
			r->is_append = true;
	}
	r->first_line_done = true;
}

/* Does the line end in {N}, {N+} or ~{N}? Returns 1 and fills size/sync. */
static int line_literal(const char *line, size_t len, uint64_t *size_r, bool *sync_r)
{
	if (len < 3 || line[len - 1] != '}')
		return 0;
	size_t end = len - 1;
	bool sync = true;
	if (line[end - 1] == '+' || line[end - 1] == '-') {
		/* LITERAL- ({N-}) is not advertised; treat like + is wrong, so only accept '+' */
		if (line[end - 1] == '-')
			return 0;
		sync = false;
		end--;
	}
	size_t start = end;
	while (start > 0 && isdigit((unsigned char)line[start - 1]))
		start--;
	if (start == end || start == 0 || line[start - 1] != '{')
		return 0;
	if (end - start > 12)
		return -1;
	uint64_t n = 0;
	for (size_t i = start; i < end; i++)
		n = n * 10 + (uint64_t)(line[i] - '0');
	*size_r = n;
	*sync_r = sync;
	return 1;
}

enum imap_read_result imap_reader_feed(struct imap_reader *r, const char *data, size_t len, size_t *consumed_r)
{
	size_t i = 0;
	while (i < len) {
		if (r->in_literal) {
			size_t n = len - i < r->literal_left ? len - i : r->literal_left;
			if (r->spooling) {
				r->sink.write(r->sink.ctx, data + i, n);
			} else if (buf_append(&r->cmd, data + i, n) < 0) {
				*consumed_r = i;
				r->error = "Command too large";
				return IMAP_READ_FATAL;
			}
			i += n;
			r->literal_left -= n;
			if (r->literal_left == 0) {
				r->in_literal = false;
				r->spooling = false;
				r->line_start = r->cmd.len;
			}
			continue;
		}
		const char *nl = memchr(data + i, '\n', len - i);
		size_t chunk = nl != NULL ? (size_t)(nl - (data + i)) : len - i;
		size_t cur = r->cmd.len - r->line_start;
		if (cur + chunk > r->line_max) {
			*consumed_r = i;
			r->error = "Command line too long";
			return IMAP_READ_FATAL;
		}
		if (buf_append(&r->cmd, data + i, chunk) < 0) {
			*consumed_r = i;
			r->error = "Command too large";
			return IMAP_READ_FATAL;
		}
		i += chunk;
		if (nl == NULL)
			break;
		i++; /* the LF */
		/* drop one CR before the LF */
		if (r->cmd.len > r->line_start && r->cmd.data[r->cmd.len - 1] == '\r') {
			r->cmd.len--;
			r->cmd.data[r->cmd.len] = '\0';
		}
		const char *line = r->cmd.data + r->line_start;
		size_t line_len = r->cmd.len - r->line_start;
		if (!r->first_line_done)
			reader_first_line(r, line, line_len);
		uint64_t lit = 0;
		bool sync = true;
		int lr = line_literal(line, line_len, &lit, &sync);
		if (lr == 0) {
			*consumed_r = i;
			return IMAP_READ_COMMAND;
		}
		size_t max = r->is_append ? r->append_literal_max : r->literal_max;
		bool spool = lr > 0 && r->is_append && r->sink.begin != NULL && lit >= r->sink.threshold && lit <= max;
		if (spool && r->sink.begin(r->sink.ctx, (size_t)lit) < 0)
			lr = -1; /* refused: fail like an oversized literal */
		if (lr < 0 || lit > max || (!spool && lit > r->cmd.max - r->cmd.len - 1)) {
			*consumed_r = i;
			if (!sync) {
				r->error = "Literal too large";
				return IMAP_READ_FATAL;
			}
			char tag[sizeof(r->tag)];
			bool append = r->is_append;
			memcpy(tag, r->tag, sizeof(tag));
			imap_reader_reset(r);
			memcpy(r->tag, tag, sizeof(tag));
			r->is_append = append; /* so the caller can answer NO [TOOBIG]; reset again after */
			r->error = "Literal too large";
			return IMAP_READ_BAD;
		}
		/* a spooled literal is marked "{N!}" / "{N+!}": a client cannot write that, since a
		 * line ending so is no literal to line_literal() and the last line keeps no LF */
		if ((spool && (r->cmd.data[--r->cmd.len] = '\0', buf_append_str(&r->cmd, "!}") < 0)) ||
		    buf_append_c(&r->cmd, '\n') < 0) {
			*consumed_r = i;
			r->error = "Command too large";
			return IMAP_READ_FATAL;
		}
		r->spooling = spool;
		r->literal_left = (size_t)lit;
		r->in_literal = lit > 0;
		r->line_start = r->cmd.len;
		if (sync) {
			*consumed_r = i;
			return IMAP_READ_CONTINUE;
		}
	}
	*consumed_r = i;
	return IMAP_READ_MORE;
}

/* ---- stage 2: the argument tree ---- */

struct parse_ctx {
	const char *p;
	const char *end;
	const char *error;
};

static void args_push(struct imap_arg **list, size_t *count, size_t *cap, const struct imap_arg *a)
{
	if (*count == *cap) {
		*cap = *cap ? *cap * 2 : 4;
		*list = xreallocarray(*list, *cap, sizeof(**list));
	}
	(*list)[(*count)++] = *a;
}

static void args_free(struct imap_arg *list, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		if (!list[i].borrowed)
			free(list[i].str);
		args_free(list[i].list, list[i].count);
	}
	free(list);
}

static int parse_list(struct parse_ctx *c, struct imap_arg **list_r, size_t *count_r, int depth, bool top);

static int parse_quoted(struct parse_ctx *c, struct imap_arg *a)
{
	struct buf b;
	buf_init(&b, (size_t)(c->end - c->p));
	c->p++; /* opening quote */
	while (c->p < c->end && *c->p != '"') {
		unsigned char ch = (unsigned char)*c->p;
		if (ch == '\\') {
			c->p++;
			if (c->p >= c->end || (*c->p != '\\' && *c->p != '"')) {
				c->error = "Invalid escape in quoted string";
				buf_deinit(&b);
				return -1;
			}
			ch = (unsigned char)*c->p;
		} else if (ch == '\r' || ch == '\n' || ch == '\0') {
			c->error = "Invalid character in quoted string";
			buf_deinit(&b);
			return -1;
		}
		buf_append_c(&b, (char)ch);
		c->p++;
	}
	if (c->p >= c->end) {
		c->error = "Unterminated quoted string";
		buf_deinit(&b);
		return -1;
	}
	c->p++;
	a->type = IMAP_ARG_QUOTED;
	a->len = b.len;
	a->str = buf_steal(&b);
	buf_deinit(&b);
	return 0;
}

static int parse_literal(struct parse_ctx *c, struct imap_arg *a)
{
	if (*c->p == '~') {
		a->literal8 = true;
		c->p++;
	}
	c->p++; /* { */
	uint64_t n = 0;
	const char *start = c->p;
	while (c->p < c->end && isdigit((unsigned char)*c->p) && c->p - start < 13)
		n = n * 10 + (uint64_t)(*c->p++ - '0');
	if (c->p == start || c->p >= c->end) {
		c->error = "Invalid literal";
		return -1;
	}
	if (*c->p == '+')
		c->p++;
	bool spooled = false;
	if (c->p < c->end && *c->p == '!') {
		spooled = true;
		c->p++;
	}
	if (c->p + 2 > c->end || c->p[0] != '}' || c->p[1] != '\n') {
		c->error = "Invalid literal";
		return -1;
	}
	c->p += 2;
	if (spooled) {
		a->type = IMAP_ARG_LITERAL;
		a->spooled = true;
		a->borrowed = true;
		a->str = (char *)"";
		a->len = (size_t)n;
		return 0;
	}
	if (n > (uint64_t)(c->end - c->p)) {
		c->error = "Literal shorter than announced";
		return -1;
	}
	a->type = IMAP_ARG_LITERAL;
	if (n > IMAP_LITERAL_COPY_MAX) {
		/* a message for APPEND: point into the command buffer instead of copying it */
		a->str = (char *)c->p;
		a->borrowed = true;
	} else {
		a->str = xmemdup(c->p, (size_t)n);
	}
	a->len = (size_t)n;
	c->p += n;
	return 0;
}

static int parse_atom(struct parse_ctx *c, struct imap_arg *a)
{
	const char *start = c->p;
	if (*c->p == '\\')
		c->p++; /* flag: "\\" atom */
	while (c->p < c->end) {
		unsigned char ch = (unsigned char)*c->p;
		if (ch == '[') {
			/* section: up to the matching ']' with spaces and parens allowed */
			int depth = 0;
			while (c->p < c->end) {
				ch = (unsigned char)*c->p;
				if (ch == '[')
					depth++;
				else if (ch == ']' && --depth == 0)
					break;
				else if (ch < 0x20 || ch >= 0x7f) {
					c->error = "Invalid character in atom";
					return -1;
				}
				c->p++;
			}
			if (c->p >= c->end) {
				c->error = "Missing ']'";
				return -1;
			}
			c->p++;
			continue;
		}
		if (ch >= 0x80 || (ch < 0x20 && ch != '\n')) {
			c->error = "Invalid character in atom";
			return -1;
		}
		if (!is_atom_char(ch))
			break;
		c->p++;
	}
	if (c->p == start) {
		c->error = "Invalid argument";
		return -1;
	}
	a->len = (size_t)(c->p - start);
	a->str = xmemdup(start, a->len);
	if (a->len == 3 && strncasecmp(start, "NIL", 3) == 0)
		a->type = IMAP_ARG_NIL;
	else
		a->type = IMAP_ARG_ATOM;
	return 0;
}

static int parse_list(struct parse_ctx *c, struct imap_arg **list_r, size_t *count_r, int depth, bool top)
{
	struct imap_arg *list = NULL;
	size_t count = 0, cap = 0;
	if (depth > IMAP_PARSER_MAX_DEPTH) {
		c->error = "Too deeply nested";
		return -1;
	}
	bool need_space = false;
	for (;;) {
		if (c->p >= c->end) {
			if (!top) {
				c->error = "Missing ')'";
				goto fail;
			}
			break;
		}
		if (*c->p == ')') {
			if (top) {
				c->error = "Unexpected ')'";
				goto fail;
			}
			c->p++;
			break;
		}
		if (need_space) {
			if (*c->p != ' ') {
				c->error = "Missing space between arguments";
				goto fail;
			}
			c->p++;
			if (c->p >= c->end || *c->p == ')') {
				c->error = "Trailing space";
				goto fail;
			}
		}
		struct imap_arg a = { 0 };
		char ch = *c->p;
		int r;
		if (ch == '(') {
			c->p++;
			a.type = IMAP_ARG_LIST;
			r = parse_list(c, &a.list, &a.count, depth + 1, false);
		} else if (ch == '"') {
			r = parse_quoted(c, &a);
		} else if (ch == '{' || (ch == '~' && c->p + 1 < c->end && c->p[1] == '{')) {
			r = parse_literal(c, &a);
		} else {
			r = parse_atom(c, &a);
		}
		if (r < 0) {
			args_free(a.list, a.count);
			free(a.str);
			goto fail;
		}
		args_push(&list, &count, &cap, &a);
		need_space = true;
	}
	*list_r = list;
	*count_r = count;
	return 0;
fail:
	args_free(list, count);
	return -1;
}

int imap_parse_command(const char *data, size_t len, struct imap_command *cmd, const char **error_r)
{
	memset(cmd, 0, sizeof(*cmd));
	const char *end = data + len;
	const char *p = data;
	const char *t = p;
	while (p < end && is_atom_char((unsigned char)*p) && strchr("+[]*%", *p) == NULL)
		p++;
	if (p == t || p >= end || *p != ' ') {
		if (p > t && p - t < 64)
			cmd->tag = xstrndup(t, (size_t)(p - t));
		*error_r = p == t ? "Missing tag" : "Missing command";
		return -1;
	}
	cmd->tag = xstrndup(t, (size_t)(p - t));
	p++;
	const char *n = p;
	while (p < end && isalnum((unsigned char)*p))
		p++;
	if (p == n || (p < end && *p != ' ')) {
		*error_r = "Invalid command name";
		return -1;
	}
	cmd->name = xstrndup(n, (size_t)(p - n));
	for (char *q = cmd->name; *q; q++)
		*q = (char)toupper((unsigned char)*q);
	if (p < end) {
		p++;
		if (p >= end) {
			*error_r = "Trailing space";
			return -1;
		}
	}
	struct parse_ctx c = { .p = p, .end = end };
	if (parse_list(&c, &cmd->args, &cmd->count, 0, true) < 0) {
		*error_r = c.error;
		return -1;
	}
	return 1;
}

void imap_command_free(struct imap_command *cmd)
{
	free(cmd->tag);
	free(cmd->name);
	args_free(cmd->args, cmd->count);
	memset(cmd, 0, sizeof(*cmd));
}

bool imap_arg_is_string(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_QUOTED || a->type == IMAP_ARG_LITERAL;
}

bool imap_arg_is_astring(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_QUOTED || a->type == IMAP_ARG_LITERAL ||
	       a->type == IMAP_ARG_NIL;
}

const char *imap_arg_astring(const struct imap_arg *a)
{
	if (a == NULL || !imap_arg_is_astring(a) || a->borrowed)
		return NULL;
	/* a string with a NUL inside cannot be a name or password */
	if (strlen(a->str) != a->len)
		return NULL;
	return a->str;
}

bool imap_arg_atom_eq(const struct imap_arg *a, const char *upper)
{
	return a != NULL && (a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_NIL) && strcasecmp(a->str, upper) == 0;
}

void imap_append_string(struct buf *out, const char *s, size_t len)
{
	if (s == NULL) {
		buf_append_str(out, "NIL");
		return;
	}
	bool quotable = len <= 1024;
	for (size_t i = 0; quotable && i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r' || c == '\n' || c == '\0' || c >= 0x80)
			quotable = false;
	}
	if (!quotable) {
		buf_printf(out, "{%zu}\r\n", len);
		buf_append(out, s, len);
		return;
	}
	/* runs between the characters to escape go in one append each */
	buf_append_c(out, '"');
	size_t start = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\') {
			buf_append(out, s + start, i - start);
			buf_append_c(out, '\\');
			start = i;
		}
	}
	buf_append(out, s + start, len - start);
	buf_append_c(out, '"');
}

void imap_append_nstring(struct buf *out, const char *s)
{
	imap_append_string(out, s, s != NULL ? strlen(s) : 0);
}

void imap_append_astring(struct buf *out, const char *s)
{
	size_t len = strlen(s);
	bool atom = len > 0 && !(len == 3 && strcasecmp(s, "NIL") == 0);
	for (size_t i = 0; atom && i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!is_atom_char(c) || c == '%' || c == '*' || c == ']')
			atom = false;
	}
	if (atom)
		buf_append(out, s, len);
	else
		imap_append_string(out, s, len);
}
