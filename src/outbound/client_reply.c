#include "outbound/client_reply.h"

#include <ctype.h>
#include <string.h>

void client_reply_init(struct client_reply *r, unsigned max_lines)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->text, CLIENT_REPLY_TEXT_MAX);
	r->max_lines = max_lines != 0 ? max_lines : CLIENT_REPLY_MAX_LINES_DEFAULT;
}

void client_reply_deinit(struct client_reply *r)
{
	buf_deinit(&r->text);
}

void client_reply_reset(struct client_reply *r)
{
	buf_reset(&r->text);
	r->code = 0;
	r->enh[0] = '\0';
	r->lines = 0;
	r->done = false;
}

/* "x.y.z" with x in 2,4,5, y 1-3 digits, z 1-3 digits, followed by SP or end. */
static size_t parse_enh(const char *p, size_t len, char *out, size_t outsize)
{
	size_t i = 0;
	if (len < 5 || (p[0] != '2' && p[0] != '4' && p[0] != '5') || p[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;
		while (i < len && isdigit((unsigned char)p[i]) && i - start < 3)
			i++;
		if (i == start)
			return 0;
		if (part == 0) {
			if (i >= len || p[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && p[i] != ' ')
		return 0;
	if (i >= outsize)
		return 0;
	memcpy(out, p, i);
	out[i] = '\0';
	return i;
}

int client_reply_feed_line(struct client_reply *r, const char *line, size_t len, const char **error_r)
{
	if (r->done)
		client_reply_reset(r);
	if (len < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]) || line[0] < '2' || line[0] > '5' ||
	    (len > 3 && line[3] != ' ' && line[3] != '-')) {
		*error_r = "malformed reply line";
		return -1;
	}
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->lines > 0 && code != r->code) {
		*error_r = "reply code changed inside a multiline reply";
		return -1;
	}
	if (++r->lines > r->max_lines) {
		*error_r = "too many lines in reply";
		return -1;
	}
	r->code = code;
	const char *text = len > 4 ? line + 4 : "";
	size_t tlen = len > 4 ? len - 4 : 0;
	if (r->lines == 1)
		(void)parse_enh(text, tlen, r->enh, sizeof(r->enh));
	if (r->lines > 1)
		(void)buf_append_c(&r->text, '\n');
	/* over the cap the text is dropped, the reply itself stays valid */
	for (size_t i = 0; i < tlen; i++) {
		unsigned char c = (unsigned char)text[i];
		(void)buf_append_c(&r->text, (c < 0x20 || c == 0x7f) ? '?' : (char)c);
	}
	if (len == 3 || line[3] == ' ') {
		r->done = true;
		return 1;
	}
	return 0;
}

bool client_reply_line(const struct client_reply *r, unsigned i, char *out, size_t size)
{
	const char *p = r->text.data, *end = r->text.data + r->text.len;
	for (unsigned k = 0; k < i; k++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			return false;
		p = nl + 1;
	}
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	size_t n = (size_t)((nl != NULL ? nl : end) - p);
	if (n >= size)
		n = size - 1;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}
