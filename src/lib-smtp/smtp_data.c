#include "lib-smtp/smtp_data.h"

#include <string.h>

enum {
	S_BOL,    /* at the start of a line */
	S_TEXT,   /* inside a line */
	S_CR,     /* saw CR, LF must follow */
	S_DOT,    /* saw "." at the start of a line */
	S_DOT_CR, /* saw ".\r" at the start of a line */
};

static const char received[] = "received:";
#define RECEIVED_LEN (sizeof(received) - 1)

void smtp_data_reader_init(struct smtp_data_reader *r)
{
	memset(r, 0, sizeof(*r));
	r->state = S_BOL;
	r->received_match = true;
}

static void emit(struct smtp_data_reader *r, struct buf *out, const char *p, size_t n)
{
	if (n == 0)
		return;
	if (!r->header_done && r->received_match && r->line_len < RECEIVED_LEN) {
		size_t k = RECEIVED_LEN - r->line_len;
		if (k > n)
			k = n;
		for (size_t i = 0; i < k; i++) {
			unsigned char c = (unsigned char)p[i];
			if (c >= 'A' && c <= 'Z')
				c = (unsigned char)(c + 32);
			if (c != (unsigned char)received[r->line_len + i]) {
				r->received_match = false;
				break;
			}
		}
		if (r->received_match && r->line_len + k == RECEIVED_LEN) {
			r->received_count++;
			r->received_match = false;
		}
	}
	for (const char *q = p, *end = p + n; (q = memchr(q, '\0', (size_t)(end - q))) != NULL; q++)
		r->nul_count++;
	r->line_len += n;
	r->content_bytes += n;
	/* Cannot fail: feed checked the room first. */
	(void)buf_append(out, p, n);
}

static void end_line(struct smtp_data_reader *r, struct buf *out)
{
	(void)buf_append(out, "\r\n", 2);
	r->content_bytes += 2;
	if (!r->header_done) {
		if (r->line_len == 0)
			r->header_done = true;
		else
			r->header_lines++;
	}
	if (r->line_len > r->longest_line)
		r->longest_line = r->line_len;
	r->line_len = 0;
	r->received_match = true;
	r->state = S_BOL;
}

static int fail(struct smtp_data_reader *r, int result, size_t i, size_t *consumed_r)
{
	r->error = result;
	*consumed_r = i;
	return result;
}

/* Not sticky: the caller drains out and feeds the rest again. */
static int out_full(size_t i, size_t *consumed_r)
{
	*consumed_r = i;
	return SMTP_DATA_OUT_FULL;
}

int smtp_data_reader_feed(struct smtp_data_reader *r, const char *in, size_t len,
			  size_t *consumed_r, struct buf *out)
{
	*consumed_r = 0;
	if (r->error != 0)
		return r->error;
	size_t i = 0, n = len;
	while (i < n) {
		char c = in[i];
		switch (r->state) {
		case S_BOL:
			if (c == '.') {
				r->state = S_DOT;
				i++;
			} else if (c == '\r') {
				r->state = S_CR;
				i++;
			} else if (c == '\n') {
				return fail(r, SMTP_DATA_BARE_LF, i + 1, consumed_r);
			} else {
				r->state = S_TEXT;
			}
			break;
		case S_TEXT: {
			const char *p = in + i;
			size_t rem = n - i;
			size_t avail = out->max - out->len;
			if (avail == 0)
				return out_full(i, consumed_r);
			if (rem > avail)
				rem = avail;
			const char *cr = memchr(p, '\r', rem);
			size_t run = cr != NULL ? (size_t)(cr - p) : rem;
			const char *lf = memchr(p, '\n', run);
			if (lf != NULL) {
				emit(r, out, p, (size_t)(lf - p));
				return fail(r, SMTP_DATA_BARE_LF, i + (size_t)(lf - p) + 1, consumed_r);
			}
			emit(r, out, p, run);
			i += run;
			if (cr != NULL) {
				r->state = S_CR;
				i++;
			}
			break;
		}
		case S_CR:
			if (c != '\n')
				return fail(r, SMTP_DATA_BARE_CR, i + 1, consumed_r);
			if (out->max - out->len < 2)
				return out_full(i, consumed_r);
			end_line(r, out);
			i++;
			break;
		case S_DOT:
			if (c == '\r') {
				r->state = S_DOT_CR;
				i++;
			} else if (c == '\n') {
				return fail(r, SMTP_DATA_BARE_LF, i + 1, consumed_r);
			} else {
				/* RFC 5321 4.5.2: drop the leading dot, keep the rest. */
				r->state = S_TEXT;
			}
			break;
		case S_DOT_CR:
			if (c != '\n')
				return fail(r, SMTP_DATA_BARE_CR, i + 1, consumed_r);
			return fail(r, SMTP_DATA_DONE, i + 1, consumed_r);
		}
	}
	*consumed_r = i;
	return SMTP_DATA_AGAIN;
}
