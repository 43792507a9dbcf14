#include "pop3/pop3_parser.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

void pop3_line_reader_init(struct pop3_line_reader *r)
{
	buf_init(&r->line, POP3_LINE_MAX);
	r->overflow = false;
}

void pop3_line_reader_deinit(struct pop3_line_reader *r)
{
	buf_deinit(&r->line);
}

int pop3_line_reader_feed(struct pop3_line_reader *r, const char *data, size_t len, size_t *consumed_r)
{
	const char *nl = memchr(data, '\n', len);
	size_t chunk = nl ? (size_t)(nl - data) : len;
	if (r->overflow) {
		*consumed_r = nl ? chunk + 1 : len;
		if (nl)
			r->overflow = false;
		return 0;
	}
	if (buf_append(&r->line, data, chunk) < 0) {
		buf_reset(&r->line);
		r->overflow = nl == NULL;
		*consumed_r = nl ? chunk + 1 : len;
		return -1;
	}
	if (nl == NULL) {
		*consumed_r = len;
		return 0;
	}
	*consumed_r = chunk + 1;
	if (r->line.len > 0 && r->line.data[r->line.len - 1] == '\r') {
		r->line.len--;
		r->line.data[r->line.len] = '\0';
	}
	return 1;
}

void pop3_line_reader_next(struct pop3_line_reader *r)
{
	buf_reset(&r->line);
}

int pop3_parse_command(const char *line, size_t len, struct pop3_command *cmd)
{
	memset(cmd, 0, sizeof(*cmd) - sizeof(cmd->storage));
	if (len > POP3_LINE_MAX)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c < 0x20 || c >= 0x7f)
			return -1;
	}
	memcpy(cmd->storage, line, len);
	cmd->storage[len] = '\0';
	char *p = cmd->storage;
	size_t v = 0;
	while (v < len && isalpha((unsigned char)p[v]))
		v++;
	if (v < 3 || v > 4 || (v < len && p[v] != ' '))
		return -1;
	for (size_t i = 0; i < v; i++)
		cmd->verb[i] = (char)toupper((unsigned char)p[i]);
	cmd->verb[v] = '\0';
	if (v == len)
		return 1;
	char *rest = p + v + 1;
	if (strcmp(cmd->verb, "PASS") == 0) {
		cmd->arg[0] = rest;
		cmd->nargs = 1;
		return 1;
	}
	while (*rest) {
		if (*rest == ' ')
			return -1; /* empty argument */
		if (cmd->nargs == 2)
			return -1;
		cmd->arg[cmd->nargs++] = rest;
		char *sp = strchr(rest, ' ');
		if (sp == NULL)
			break;
		*sp = '\0';
		rest = sp + 1;
		if (*rest == '\0')
			return -1; /* trailing space */
	}
	return 1;
}

unsigned long pop3_parse_number(const char *s)
{
	if (s == NULL || !isdigit((unsigned char)*s) || strlen(s) > 9)
		return 0;
	char *end;
	unsigned long n = strtoul(s, &end, 10);
	return *end == '\0' ? n : 0;
}
