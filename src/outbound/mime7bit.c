#include "outbound/mime7bit.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* The end of the header section: offset just past the empty line, or 0 if none in len. */
static size_t header_end(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] != '\n')
			continue;
		if (i + 1 < len && p[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && p[i + 1] == '\r' && p[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

static bool field_is(const char *line, size_t len, const char *name)
{
	size_t n = strlen(name);
	return len > n && strncasecmp(line, name, n) == 0 && line[n] == ':';
}

/* The first token of a field's value (after the colon), lowercased, up to ';' or space. */
static void field_token(const char *line, size_t len, char *out, size_t size)
{
	const char *p = memchr(line, ':', len), *end = line + len;
	size_t k = 0;
	if (p == NULL) {
		out[0] = '\0';
		return;
	}
	p++;
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	while (p < end && *p != ';' && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n' && *p != '(' &&
	       k + 1 < size)
		out[k++] = (char)tolower((unsigned char)*p++);
	out[k] = '\0';
}

int mime7bit_header(const char *hdr, size_t len, struct buf *out, size_t *body_off_r, const char **reason_r)
{
	size_t end = header_end(hdr, len);
	bool have_mime = false, have_ct = false;
	char tok[64];

	if (len > 0 && hdr[0] == '\n')
		end = 1;
	else if (len > 1 && hdr[0] == '\r' && hdr[1] == '\n')
		end = 2;
	if (end == 0) {
		*reason_r = "no header/body separator within the header size limit";
		return 0;
	}
	/* a header is one field plus its continuation lines */
	size_t pos = 0, hdr_len = end;
	/* the empty line itself */
	size_t sep_len = end >= 2 && hdr[end - 2] == '\r' ? 2 : 1;
	hdr_len = end - sep_len;
	for (size_t i = 0; i < hdr_len; i++) {
		if ((unsigned char)hdr[i] >= 0x80) {
			*reason_r = "8-bit characters in the header";
			return 0;
		}
	}
	while (pos < hdr_len) {
		size_t fend = pos;
		/* field ends at a LF not followed by SP/TAB */
		for (;;) {
			const char *nl = memchr(hdr + fend, '\n', hdr_len - fend);
			fend = nl != NULL ? (size_t)(nl - hdr) + 1 : hdr_len;
			if (fend >= hdr_len || (hdr[fend] != ' ' && hdr[fend] != '\t'))
				break;
		}
		const char *f = hdr + pos;
		size_t flen = fend - pos;
		bool drop = false;
		if (field_is(f, flen, "Content-Type")) {
			have_ct = true;
			field_token(f, flen, tok, sizeof(tok));
			if (strncmp(tok, "multipart/", 10) == 0 || strncmp(tok, "message/", 8) == 0) {
				*reason_r = "multipart or message/* content cannot be downgraded";
				return 0;
			}
		} else if (field_is(f, flen, "Content-Transfer-Encoding")) {
			field_token(f, flen, tok, sizeof(tok));
			if (strcmp(tok, "base64") == 0 || strcmp(tok, "quoted-printable") == 0 ||
			    strcmp(tok, "binary") == 0) {
				*reason_r = "8-bit data under a base64/quoted-printable/binary encoding";
				return 0;
			}
			drop = true;
		} else if (field_is(f, flen, "MIME-Version")) {
			have_mime = true;
		}
		if (!drop && buf_append(out, f, flen) < 0)
			goto toolong;
		if (!drop && (flen == 0 || f[flen - 1] != '\n') && buf_append_str(out, "\r\n") < 0)
			goto toolong;
		pos = fend;
	}
	if (!have_mime && buf_append_str(out, "MIME-Version: 1.0\r\n") < 0)
		goto toolong;
	if (!have_ct && buf_append_str(out, "Content-Type: text/plain; charset=unknown-8bit\r\n") < 0)
		goto toolong;
	if (buf_append_str(out, "Content-Transfer-Encoding: quoted-printable\r\n\r\n") < 0)
		goto toolong;
	*body_off_r = end;
	return 1;
toolong:
	*reason_r = "header too long";
	return 0;
}

void mime7bit_qp_init(struct mime7bit_qp *q)
{
	memset(q, 0, sizeof(*q));
}

static int emit(struct mime7bit_qp *q, struct buf *out, const char *s, size_t n)
{
	/* keep room for the soft break "=": at most 75 characters before it */
	if (q->col + n > 75) {
		if (buf_append_str(out, "=\r\n") < 0)
			return -1;
		q->col = 0;
	}
	q->col += (unsigned)n;
	return buf_append(out, s, n);
}

static int emit_hex(struct mime7bit_qp *q, struct buf *out, unsigned char c)
{
	static const char hex[] = "0123456789ABCDEF";
	char e[3] = { '=', hex[c >> 4], hex[c & 15] };
	return emit(q, out, e, 3);
}

static int flush_ws(struct mime7bit_qp *q, struct buf *out, bool at_eol)
{
	if (q->pending_ws == 0)
		return 0;
	char c = q->pending_ws;
	q->pending_ws = 0;
	return at_eol ? emit_hex(q, out, (unsigned char)c) : emit(q, out, &c, 1);
}

static int line_end(struct mime7bit_qp *q, struct buf *out)
{
	if (flush_ws(q, out, true) < 0 || buf_append_str(out, "\r\n") < 0)
		return -1;
	q->col = 0;
	return 0;
}

int mime7bit_qp_feed(struct mime7bit_qp *q, const char *in, size_t len, struct buf *out)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (q->pending_cr) {
			q->pending_cr = false;
			if (c == '\n') {
				if (line_end(q, out) < 0)
					return -1;
				continue;
			}
			if (flush_ws(q, out, false) < 0 || emit_hex(q, out, '\r') < 0)
				return -1;
		}
		int r;
		if (c == '\r') {
			q->pending_cr = true;
			continue;
		} else if (c == '\n') {
			r = line_end(q, out);
		} else if (c == ' ' || c == '\t') {
			r = flush_ws(q, out, false);
			q->pending_ws = (char)c;
		} else if (c >= 33 && c <= 126 && c != '=') {
			char ch = (char)c;
			r = flush_ws(q, out, false);
			if (r == 0)
				r = emit(q, out, &ch, 1);
		} else {
			r = flush_ws(q, out, false);
			if (r == 0)
				r = emit_hex(q, out, c);
		}
		if (r < 0)
			return -1;
	}
	return 0;
}

int mime7bit_qp_finish(struct mime7bit_qp *q, struct buf *out)
{
	if (q->pending_cr) {
		q->pending_cr = false;
		if (flush_ws(q, out, false) < 0 || emit_hex(q, out, '\r') < 0)
			return -1;
	}
	return flush_ws(q, out, true);
}
