#include "lib-smtp/smtp_line.h"

#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

void smtp_line_reader_init(struct smtp_line_reader *r, size_t max_line)
{
	if (max_line < 2)
		max_line = 2;
	r->buf = xmalloc(max_line);
	r->len = 0;
	r->max = max_line;
	r->discarding = false;
	r->discarded = 0;
}

void smtp_line_reader_deinit(struct smtp_line_reader *r)
{
	xfree(&r->buf);
	r->len = 0;
}

void smtp_line_reader_reset(struct smtp_line_reader *r)
{
	r->len = 0;
	r->discarding = false;
	r->discarded = 0;
}

bool smtp_line_reader_pending(const struct smtp_line_reader *r)
{
	return r->len > 0 || r->discarding;
}

int smtp_line_reader_feed(struct smtp_line_reader *r, const char *data, size_t len,
			  size_t *consumed_r, struct smtp_line *line_r)
{
	line_r->data = NULL;
	line_r->len = 0;
	*consumed_r = 0;
	if (len == 0)
		return SMTP_LINE_AGAIN;

	const char *lf = memchr(data, '\n', len);
	size_t n = lf != NULL ? (size_t)(lf - data) + 1 : len;

	if (r->discarding) {
		*consumed_r = n;
		if (lf == NULL) {
			r->discarded += n;
			return SMTP_LINE_AGAIN;
		}
		smtp_line_reader_reset(r);
		return SMTP_LINE_TOO_LONG;
	}
	if (n > r->max - r->len) {
		*consumed_r = n;
		if (lf == NULL) {
			r->discarding = true;
			r->discarded = r->len + n;
			r->len = 0;
			return SMTP_LINE_AGAIN;
		}
		smtp_line_reader_reset(r);
		return SMTP_LINE_TOO_LONG;
	}
	*consumed_r = n;
	if (lf == NULL) {
		memcpy(r->buf + r->len, data, n);
		r->len += n;
		return SMTP_LINE_AGAIN;
	}

	const char *line;
	size_t total;
	if (r->len == 0) {
		line = data;
		total = n;
	} else {
		memcpy(r->buf + r->len, data, n);
		total = r->len + n;
		line = r->buf;
		r->len = 0;
	}
	/* total >= 1 and line[total - 1] == '\n' */
	size_t content = total - 1;
	bool crlf = content > 0 && line[content - 1] == '\r';
	if (crlf)
		content--;
	line_r->data = line;
	line_r->len = content;
	if (memchr(line, '\r', content) != NULL)
		return SMTP_LINE_BARE_CR;
	return crlf ? SMTP_LINE_OK : SMTP_LINE_BARE_LF;
}
