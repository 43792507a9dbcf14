#include "lib-sieve/sieve_message.h"

#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/xalloc.h"

#define MAX_MIME_DEPTH 8

static char *trim_dup(const char *s, size_t len)
{
	while (len > 0 && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	return xstrndup(s, len);
}

/* Unfold a header value: drop CR/LF that precede whitespace. */
static char *unfold(const char *s, size_t len)
{
	struct buf b;
	buf_init(&b, len + 1);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r' || s[i] == '\n')
			continue;
		buf_append_c(&b, s[i]);
	}
	char *t = trim_dup(b.data, b.len);
	buf_deinit(&b);
	return t;
}

/*
 * Parse a header block. Returns the offset of the body (after the empty line),
 * or len when there is none. Calls add for every field.
 */
static size_t parse_header_block_end(const char *raw, size_t len, size_t max,
				     void (*add)(void *ctx, const char *name, size_t nlen, const char *val, size_t vlen),
				     void *ctx, bool *ended)
{
	size_t i = 0, count = 0;
	*ended = false;
	while (i < len) {
		/* empty line: end of header */
		if (raw[i] == '\n') {
			*ended = true;
			return i + 1;
		}
		if (raw[i] == '\r' && i + 1 < len && raw[i + 1] == '\n') {
			*ended = true;
			return i + 2;
		}
		size_t start = i;
		/* find end of the field including continuation lines */
		size_t end = i;
		for (;;) {
			const char *nl = memchr(raw + end, '\n', len - end);
			if (nl == NULL) {
				end = len;
				break;
			}
			end = (size_t)(nl - raw) + 1;
			if (end < len && (raw[end] == ' ' || raw[end] == '\t'))
				continue;
			break;
		}
		const char *colon = memchr(raw + start, ':', end - start);
		if (colon != NULL && count < max) {
			size_t nlen = (size_t)(colon - (raw + start));
			while (nlen > 0 && (raw[start + nlen - 1] == ' ' || raw[start + nlen - 1] == '\t'))
				nlen--;
			bool ok = nlen > 0;
			for (size_t k = 0; k < nlen; k++)
				if ((unsigned char)raw[start + k] <= 32 || (unsigned char)raw[start + k] >= 127)
					ok = false;
			if (ok) {
				add(ctx, raw + start, nlen, colon + 1, (size_t)(raw + end - (colon + 1)));
				count++;
			}
		}
		i = end;
	}
	return len;
}

static size_t parse_header_block(const char *raw, size_t len, size_t max,
				 void (*add)(void *ctx, const char *name, size_t nlen, const char *val, size_t vlen),
				 void *ctx)
{
	bool ended;
	return parse_header_block_end(raw, len, max, add, ctx, &ended);
}

/*
 * An added field as it goes on the wire (RFC 5293 section 5): a value with
 * non-ASCII bytes becomes RFC 2047 "B" encoded words of UTF-8, folded
 * between words so no line passes 78 characters.
 */
static char *encode_field(const char *name, size_t nlen, const char *val, size_t vlen)
{
	bool ascii = true;
	for (size_t i = 0; i < vlen; i++)
		if ((unsigned char)val[i] >= 0x80)
			ascii = false;
	if (ascii)
		return xasprintf("%.*s: %.*s", (int)nlen, name, (int)vlen, val);
	char *unf = unfold(val, vlen);
	val = unf;
	vlen = strlen(unf);
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	struct buf b;
	buf_init(&b, nlen + vlen * 3 + 64);
	buf_append(&b, name, nlen);
	buf_append_c(&b, ':');
	size_t i = 0;
	bool first = true;
	while (i < vlen) {
		/* up to 45 input bytes per word, not splitting a UTF-8 sequence */
		size_t n = vlen - i < 45 ? vlen - i : 45;
		while (n > 1 && i + n < vlen && ((unsigned char)val[i + n] & 0xc0) == 0x80)
			n--;
		buf_append_str(&b, first ? " =?UTF-8?B?" : "\r\n =?UTF-8?B?");
		first = false;
		for (size_t k = 0; k < n; k += 3) {
			unsigned c0 = (unsigned char)val[i + k];
			unsigned c1 = k + 1 < n ? (unsigned char)val[i + k + 1] : 0;
			unsigned c2 = k + 2 < n ? (unsigned char)val[i + k + 2] : 0;
			char q[4] = { b64[c0 >> 2], b64[((c0 & 3) << 4) | (c1 >> 4)],
				      k + 1 < n ? b64[((c1 & 15) << 2) | (c2 >> 6)] : '=', k + 2 < n ? b64[c2 & 63] : '=' };
			buf_append(&b, q, 4);
		}
		buf_append_str(&b, "?=");
		i += n;
	}
	free(unf);
	char *r = buf_steal(&b);
	buf_deinit(&b);
	return r;
}

char *sieve_header_encode(const char *name, const char *value)
{
	return encode_field(name, strlen(name), value, strlen(value));
}

static void msg_add(void *ctx, const char *name, size_t nlen, const char *val, size_t vlen)
{
	struct sieve_message *m = ctx;
	if (m->nhdrs == m->alloc) {
		m->alloc = m->alloc ? m->alloc * 2 : 16;
		m->hdrs = xreallocarray(m->hdrs, m->alloc, sizeof(*m->hdrs));
	}
	struct sieve_hdr *h = &m->hdrs[m->nhdrs++];
	h->name = xstrndup(name, nlen);
	h->raw = unfold(val, vlen);
	if (m->adding) {
		h->orig = encode_field(name, nlen, val, vlen);
	} else {
		size_t ol = (size_t)(val + vlen - name);
		while (ol > 0 && (name[ol - 1] == '\r' || name[ol - 1] == '\n'))
			ol--;
		h->orig = xstrndup(name, ol);
	}
	struct buf b;
	buf_init(&b, strlen(h->raw) * 4 + 16);
	sieve_rfc2047_decode(h->raw, strlen(h->raw), &b);
	h->decoded = buf_steal(&b);
	buf_deinit(&b);
	h->deleted = false;
}

void sieve_message_parse(struct sieve_message *m, const char *raw, size_t len, size_t max_headers)
{
	memset(m, 0, sizeof(*m));
	if (raw == NULL) {
		m->body = "";
		return;
	}
	bool ended = false;
	size_t off = parse_header_block_end(raw, len, max_headers ? max_headers : 1000, msg_add, m, &ended);
	m->body = raw + off;
	m->body_len = len - off;
	m->has_body = ended;
	m->body_offset = off;
}

void sieve_message_add_header(struct sieve_message *m, const char *name, const char *value, bool last)
{
	m->adding = true;
	msg_add(m, name, strlen(name), value, strlen(value));
	m->adding = false;
	if (!last && m->nhdrs > 1) {
		struct sieve_hdr h = m->hdrs[m->nhdrs - 1];
		memmove(&m->hdrs[1], &m->hdrs[0], (m->nhdrs - 1) * sizeof(h));
		m->hdrs[0] = h;
	}
}

void sieve_message_free(struct sieve_message *m)
{
	for (size_t i = 0; i < m->nhdrs; i++) {
		free(m->hdrs[i].name);
		free(m->hdrs[i].raw);
		free(m->hdrs[i].decoded);
		free(m->hdrs[i].orig);
	}
	free(m->hdrs);
	for (size_t i = 0; i < m->nparts; i++) {
		free(m->parts[i].type);
		free(m->parts[i].raw);
		free(m->parts[i].text);
		free(m->parts[i].prologue);
		free(m->parts[i].epilogue);
		for (size_t k = 0; k < m->parts[i].nhdrs; k++) {
			free(m->parts[i].hdrs[k].name);
			free(m->parts[i].hdrs[k].raw);
			free(m->parts[i].hdrs[k].decoded);
			free(m->parts[i].hdrs[k].orig);
		}
		free(m->parts[i].hdrs);
	}
	free(m->parts);
	memset(m, 0, sizeof(*m));
}

char *sieve_message_header_text(const struct sieve_message *m)
{
	size_t total = 1;
	for (size_t i = 0; i < m->nhdrs; i++)
		if (!m->hdrs[i].deleted)
			total += strlen(m->hdrs[i].orig) + 2;
	struct buf b;
	buf_init(&b, total);
	for (size_t i = 0; i < m->nhdrs; i++) {
		if (m->hdrs[i].deleted)
			continue;
		buf_append_str(&b, m->hdrs[i].orig);
		buf_append(&b, "\r\n", 2);
	}
	char *r = buf_steal(&b);
	buf_deinit(&b);
	return r;
}

/* ---- transfer encodings and charsets ---- */

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

static void base64_decode(const char *s, size_t len, struct buf *out)
{
	unsigned acc = 0;
	int bits = 0;
	for (size_t i = 0; i < len; i++) {
		int v = b64val((unsigned char)s[i]);
		if (v < 0) {
			if (s[i] == '=')
				break;
			continue;
		}
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (buf_append_c(out, (char)((acc >> bits) & 0xff)) < 0)
				return;
		}
	}
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static void qp_decode(const char *s, size_t len, bool q_word, struct buf *out)
{
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '=' && i + 2 < len + 0 && hexval((unsigned char)s[i + 1]) >= 0 &&
		    hexval((unsigned char)s[i + 2]) >= 0) {
			c = (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
			i += 2;
		} else if (c == '=' && !q_word) {
			/* soft line break: =CRLF or =LF (with trailing whitespace) */
			size_t j = i + 1;
			while (j < len && (s[j] == ' ' || s[j] == '\t'))
				j++;
			if (j < len && s[j] == '\r')
				j++;
			if (j < len && s[j] == '\n') {
				i = j;
				continue;
			}
			if (j >= len) {
				i = j;
				continue;
			}
		} else if (c == '_' && q_word) {
			c = ' ';
		}
		if (buf_append_c(out, c) < 0)
			return;
	}
}

int sieve_charset_to_utf8(const char *charset, const char *s, size_t len, struct buf *out)
{
	if (charset == NULL || *charset == '\0' || strcasecmp(charset, "utf-8") == 0 ||
	    strcasecmp(charset, "utf8") == 0 || strcasecmp(charset, "us-ascii") == 0) {
		buf_append(out, s, len);
		return 0;
	}
	iconv_t cd = iconv_open("UTF-8", charset);
	if (cd == (iconv_t)-1) {
		buf_append(out, s, len);
		return -1;
	}
	char tmp[1024];
	char *in = (char *)s;
	size_t inleft = len;
	int ret = 0;
	while (inleft > 0) {
		char *o = tmp;
		size_t oleft = sizeof(tmp);
		size_t r = iconv(cd, &in, &inleft, &o, &oleft);
		if (buf_append(out, tmp, sizeof(tmp) - oleft) < 0)
			break;
		if (r == (size_t)-1 && errno != E2BIG) {
			/* invalid byte: emit U+FFFD and skip it */
			if (inleft > 0) {
				buf_append(out, "\xef\xbf\xbd", 3);
				in++;
				inleft--;
			}
			ret = -1;
			if (errno == EINVAL)
				break;
		}
	}
	iconv_close(cd);
	return ret;
}

void sieve_rfc2047_decode(const char *s, size_t len, struct buf *out)
{
	size_t i = 0;
	bool last_was_word = false;
	size_t pending_ws_start = 0, pending_ws_len = 0;
	while (i < len) {
		if (s[i] == '=' && i + 1 < len && s[i + 1] == '?') {
			/* =?charset?X?text?= */
			const char *p = s + i + 2, *e = s + len;
			const char *q1 = memchr(p, '?', (size_t)(e - p));
			if (q1 != NULL && q1 + 2 < e && q1[2] == '?') {
				char enc = (char)toupper((unsigned char)q1[1]);
				const char *text = q1 + 3;
				const char *end = NULL;
				for (const char *t = text; t + 1 < e; t++)
					if (t[0] == '?' && t[1] == '=') {
						end = t;
						break;
					}
				if (end != NULL && (enc == 'B' || enc == 'Q') && q1 > p && q1 - p < 64) {
					char cs[64];
					memcpy(cs, p, (size_t)(q1 - p));
					cs[q1 - p] = '\0';
					char *star = strchr(cs, '*');
					if (star != NULL)
						*star = '\0';
					struct buf dec;
					buf_init(&dec, (size_t)(end - text) + 16);
					if (enc == 'B')
						base64_decode(text, (size_t)(end - text), &dec);
					else
						qp_decode(text, (size_t)(end - text), true, &dec);
					/* whitespace between two encoded words is dropped */
					if (!last_was_word && pending_ws_len > 0)
						buf_append(out, s + pending_ws_start, pending_ws_len);
					pending_ws_len = 0;
					sieve_charset_to_utf8(cs, dec.data, dec.len, out);
					buf_deinit(&dec);
					i = (size_t)(end - s) + 2;
					last_was_word = true;
					continue;
				}
			}
		}
		if (s[i] == ' ' || s[i] == '\t') {
			if (pending_ws_len == 0)
				pending_ws_start = i;
			pending_ws_len++;
			i++;
			continue;
		}
		if (pending_ws_len > 0) {
			buf_append(out, s + pending_ws_start, pending_ws_len);
			pending_ws_len = 0;
		}
		last_was_word = false;
		buf_append_c(out, s[i]);
		i++;
	}
	if (pending_ws_len > 0)
		buf_append(out, s + pending_ws_start, pending_ws_len);
}

/* ---- MIME ---- */

/* Percent-decode s[0..len) into out (RFC 2231 extended values). */
static void pct_decode(const char *s, size_t len, struct buf *out)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%' && i + 2 < len && hexval((unsigned char)s[i + 1]) >= 0 &&
		    hexval((unsigned char)s[i + 2]) >= 0) {
			buf_append_c(out, (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2])));
			i += 2;
		} else {
			buf_append_c(out, s[i]);
		}
	}
}

#define MAX_PARAM_SEGMENTS 32

/*
 * A parameter of a Content-Type style value (allocated) or NULL. Handles
 * RFC 2231 continuations (name*0, name*1...) and encoded values
 * (name*=charset'lang'%xx), converting to UTF-8.
 */
char *sieve_mime_param(const char *v, const char *name)
{
	size_t nlen = strlen(name);
	char *seg[MAX_PARAM_SEGMENTS] = { NULL };
	bool seg_enc[MAX_PARAM_SEGMENTS] = { false };
	const char *p = strchr(v, ';');
	char *direct = NULL;
	while (p != NULL && direct == NULL) {
		p++;
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		const char *k = p;
		while (*p && *p != '=' && *p != ';')
			p++;
		size_t kl = (size_t)(p - k);
		while (kl > 0 && (k[kl - 1] == ' ' || k[kl - 1] == '\t'))
			kl--;
		if (*p != '=') {
			p = *p == ';' ? p : NULL;
			continue;
		}
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		char *val;
		if (*p == '"') {
			p++;
			struct buf b;
			buf_init(&b, strlen(p) + 1);
			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				buf_append_c(&b, *p++);
			}
			if (*p == '"')
				p++;
			val = buf_steal(&b);
			buf_deinit(&b);
		} else {
			size_t l = strcspn(p, "; \t");
			val = xstrndup(p, l);
			p += l;
		}
		if (kl == nlen && strncasecmp(k, name, nlen) == 0) {
			direct = val;
			break;
		}
		if (kl > nlen && strncasecmp(k, name, nlen) == 0 && k[nlen] == '*') {
			const char *r = k + nlen + 1;
			size_t rl = kl - nlen - 1;
			unsigned idx = 0;
			bool enc = false;
			if (rl == 0) {
				enc = true;
			} else {
				size_t d = 0;
				while (d < rl && isdigit((unsigned char)r[d]) && idx < 1000)
					idx = idx * 10 + (unsigned)(r[d++] - '0');
				if (d == 0 || (d < rl && !(d + 1 == rl && r[d] == '*')))
					idx = MAX_PARAM_SEGMENTS;
				enc = d < rl;
			}
			if (idx < MAX_PARAM_SEGMENTS && seg[idx] == NULL) {
				seg[idx] = val;
				seg_enc[idx] = enc;
				val = NULL;
			}
		}
		free(val);
		p = strchr(p, ';');
	}
	if (direct != NULL) {
		for (int i = 0; i < MAX_PARAM_SEGMENTS; i++)
			free(seg[i]);
		return direct;
	}
	if (seg[0] == NULL) {
		for (int i = 0; i < MAX_PARAM_SEGMENTS; i++)
			free(seg[i]);
		return NULL;
	}
	struct buf raw;
	buf_init(&raw, 65536);
	char charset[64] = "";
	for (int i = 0; i < MAX_PARAM_SEGMENTS && seg[i] != NULL; i++) {
		const char *sv = seg[i];
		if (i == 0 && seg_enc[0]) {
			const char *q1 = strchr(sv, '\'');
			const char *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
			if (q2 != NULL) {
				size_t cl = (size_t)(q1 - sv);
				if (cl < sizeof(charset)) {
					memcpy(charset, sv, cl);
					charset[cl] = '\0';
				}
				sv = q2 + 1;
			}
		}
		if (seg_enc[i])
			pct_decode(sv, strlen(sv), &raw);
		else
			buf_append_str(&raw, sv);
	}
	for (int i = 0; i < MAX_PARAM_SEGMENTS; i++)
		free(seg[i]);
	struct buf out;
	buf_init(&out, raw.len * 3 + 16);
	sieve_charset_to_utf8(charset, raw.data, raw.len, &out);
	buf_deinit(&raw);
	char *r = buf_steal(&out);
	buf_deinit(&out);
	return r;
}

struct part_hdrs {
	char *ctype;
	char *cte;
	struct sieve_message hm;   /* all fields of the part, moved into the part */
	bool borrowed;             /* ctype/cte point into the message (top level) */
};

static void part_hdrs_free(struct part_hdrs *ph)
{
	if (!ph->borrowed) {
		free(ph->ctype);
		free(ph->cte);
	}
	sieve_message_free(&ph->hm);
}

static void part_add(void *ctx, const char *name, size_t nlen, const char *val, size_t vlen)
{
	struct part_hdrs *ph = ctx;
	if (ph->hm.nhdrs < 100)
		msg_add(&ph->hm, name, nlen, val, vlen);
	if (nlen == 12 && strncasecmp(name, "content-type", 12) == 0) {
		free(ph->ctype);
		ph->ctype = unfold(val, vlen);
	} else if (nlen == 25 && strncasecmp(name, "content-transfer-encoding", 25) == 0) {
		free(ph->cte);
		ph->cte = unfold(val, vlen);
	}
}

struct mime_ctx {
	struct sieve_message *m;
	unsigned max_parts;
	size_t max_body;
};

static void add_part(struct mime_ctx *mc, struct part_hdrs *ph, const char *default_type, const char *body,
		     size_t len, unsigned depth);

static const char *find_boundary(const char *s, size_t len, const char *b, size_t blen, bool *final)
{
	/* boundary lines: "--" b at the start of a line */
	size_t i = 0;
	while (i + 2 + blen <= len) {
		if ((i == 0 || s[i - 1] == '\n') && s[i] == '-' && s[i + 1] == '-' && memcmp(s + i + 2, b, blen) == 0) {
			*final = i + 4 + blen <= len && s[i + 2 + blen] == '-' && s[i + 3 + blen] == '-';
			return s + i;
		}
		const char *nl = memchr(s + i, '\n', len - i);
		if (nl == NULL)
			break;
		i = (size_t)(nl - s) + 1;
	}
	return NULL;
}

static char *trimmed_text(const char *s, size_t len)
{
	while (len > 0 && (s[len - 1] == '\r' || s[len - 1] == '\n'))
		len--;
	return len > 0 ? xstrndup(s, len) : NULL;
}

static void add_multipart(struct mime_ctx *mc, size_t self, const char *boundary, const char *subdefault,
			  const char *body, size_t len, unsigned depth)
{
	size_t blen = strlen(boundary);
	bool final = false;
	const char *p = find_boundary(body, len, boundary, blen, &final);
	mc->m->parts[self].prologue = trimmed_text(body, p != NULL ? (size_t)(p - body) : len);
	while (p != NULL && !final && mc->m->nparts < mc->max_parts) {
		const char *start = memchr(p, '\n', (size_t)(body + len - p));
		if (start == NULL)
			return;
		start++;
		bool fin2 = false;
		const char *next = find_boundary(start, (size_t)(body + len - start), boundary, blen, &fin2);
		size_t plen = next ? (size_t)(next - start) : (size_t)(body + len - start);
		/* the CRLF before a boundary belongs to the boundary */
		if (next != NULL && plen > 0 && start[plen - 1] == '\n')
			plen--;
		if (next != NULL && plen > 0 && start[plen - 1] == '\r')
			plen--;
		struct part_hdrs ph;
		memset(&ph, 0, sizeof(ph));
		size_t off = parse_header_block(start, plen, 100, part_add, &ph);
		add_part(mc, &ph, subdefault, start + off, plen - off, depth + 1);
		part_hdrs_free(&ph);
		p = next;
		final = fin2;
	}
	if (p != NULL && final) {
		const char *ep = memchr(p, '\n', (size_t)(body + len - p));
		if (ep != NULL)
			mc->m->parts[self].epilogue = trimmed_text(ep + 1, (size_t)(body + len - ep - 1));
	}
}

static void add_part(struct mime_ctx *mc, struct part_hdrs *ph, const char *default_type, const char *body,
		     size_t len, unsigned depth)
{
	struct sieve_message *m = mc->m;
	if (m->nparts >= mc->max_parts || depth > MAX_MIME_DEPTH)
		return;
	char type[128];
	if (ph->ctype != NULL) {
		size_t l = strcspn(ph->ctype, "; \t");
		if (l >= sizeof(type))
			l = sizeof(type) - 1;
		for (size_t i = 0; i < l; i++)
			type[i] = (char)tolower((unsigned char)ph->ctype[i]);
		type[l] = '\0';
		char *slash = strchr(type, '/');
		if (slash == NULL)
			snprintf(type, sizeof(type), "%s", default_type);
		else if (strchr(slash + 1, '/') != NULL || slash == type || slash[1] == '\0')
			snprintf(type, sizeof(type), "application/octet-stream");
	} else {
		snprintf(type, sizeof(type), "%s", default_type);
	}
	if (len > mc->max_body)
		len = mc->max_body;
	m->parts = xreallocarray(m->parts, m->nparts + 1, sizeof(*m->parts));
	size_t self = m->nparts;
	struct sieve_part *pt = &m->parts[m->nparts++];
	memset(pt, 0, sizeof(*pt));
	pt->end = self;
	pt->depth = depth;
	/* the part's own header fields (the top level uses the message's) */
	pt->hdrs = ph->hm.hdrs;
	pt->nhdrs = ph->hm.nhdrs;
	ph->hm.hdrs = NULL;
	ph->hm.nhdrs = ph->hm.alloc = 0;
	pt->type = xstrdup(type);
	pt->raw = xmemdup(body, len);
	pt->raw_len = len;
	if (strncmp(type, "multipart/", 10) == 0) {
		pt->multipart = true;
		char *boundary = ph->ctype ? sieve_mime_param(ph->ctype, "boundary") : NULL;
		if (boundary != NULL && *boundary != '\0')
			add_multipart(mc, self, boundary, strcmp(type, "multipart/digest") == 0 ? "message/rfc822" : "text/plain",
				      body, len, depth);
		free(boundary);
		m->parts[self].end = m->nparts - 1;
		return;
	}
	if (strcmp(type, "message/rfc822") == 0) {
		struct part_hdrs sub;
		memset(&sub, 0, sizeof(sub));
		size_t off = parse_header_block(body, len, 100, part_add, &sub);
		/* RFC 5173 5.2: the content of a message/rfc822 part is its header */
		size_t hl = off;
		if (hl >= 2 && body[hl - 2] == '\r' && body[hl - 1] == '\n')
			hl -= 2;
		else if (hl >= 1 && body[hl - 1] == '\n')
			hl -= 1;
		pt->text = xmemdup(body, hl);
		pt->text_len = hl;
		pt->multipart = true; /* not text: only :content "message" sees it */
		add_part(mc, &sub, "text/plain", body + off, len - off, depth + 1);
		part_hdrs_free(&sub);
		m->parts[self].end = m->nparts - 1;
		return;
	}
	const char *cte = ph->cte;
	bool known_cte = cte == NULL || strncasecmp(cte, "7bit", 4) == 0 || strncasecmp(cte, "8bit", 4) == 0 ||
			 strncasecmp(cte, "binary", 6) == 0 || strncasecmp(cte, "base64", 6) == 0 ||
			 strncasecmp(cte, "quoted-printable", 16) == 0;
	/* an unknown transfer encoding cannot be decoded: the part is not searchable text */
	if (known_cte && (strncmp(type, "text/", 5) == 0 || strcmp(type, "application/xhtml+xml") == 0)) {
		struct buf dec, utf;
		buf_init(&dec, len + 16);
		if (cte != NULL && strncasecmp(cte, "base64", 6) == 0)
			base64_decode(body, len, &dec);
		else if (cte != NULL && strncasecmp(cte, "quoted-printable", 16) == 0)
			qp_decode(body, len, false, &dec);
		else
			buf_append(&dec, body, len);
		char *cs = ph->ctype ? sieve_mime_param(ph->ctype, "charset") : NULL;
		buf_init(&utf, dec.len * 3 + 16);
		sieve_charset_to_utf8(cs, dec.data, dec.len, &utf);
		free(cs);
		pt->text_len = utf.len;
		pt->text = buf_steal(&utf);
		buf_deinit(&utf);
		buf_deinit(&dec);
	}
}

void sieve_message_parse_parts(struct sieve_message *m, unsigned max_parts, size_t max_body)
{
	if (m->parts_parsed)
		return;
	m->parts_parsed = true;
	struct mime_ctx mc = { m, max_parts ? max_parts : 64, max_body ? max_body : 1024 * 1024 };
	struct part_hdrs ph;
	memset(&ph, 0, sizeof(ph));
	ph.borrowed = true;
	for (size_t i = 0; i < m->nhdrs; i++) {
		if (strcasecmp(m->hdrs[i].name, "content-type") == 0 && ph.ctype == NULL)
			ph.ctype = m->hdrs[i].raw;
		else if (strcasecmp(m->hdrs[i].name, "content-transfer-encoding") == 0 && ph.cte == NULL)
			ph.cte = m->hdrs[i].raw;
	}
	add_part(&mc, &ph, "text/plain", m->body, m->body_len, 0);
}

/* ---- addresses ---- */

void sieve_address_free(struct sieve_address *a)
{
	free(a->local);
	free(a->domain);
	a->local = a->domain = NULL;
}

/* Remove comments and whitespace outside quoted strings; unquote quoted parts. */
static char *addr_clean(const char *s, size_t len)
{
	struct buf b;
	buf_init(&b, len + 1);
	int depth = 0;
	bool inq = false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (inq) {
			if (c == '\\' && i + 1 < len) {
				buf_append_c(&b, s[++i]);
				continue;
			}
			if (c == '"') {
				inq = false;
				continue;
			}
			buf_append_c(&b, c);
			continue;
		}
		if (depth > 0) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			continue;
		}
		if (c == '(') {
			depth++;
		} else if (c == '"') {
			inq = true;
		} else if (!isspace((unsigned char)c)) {
			buf_append_c(&b, c);
		}
	}
	char *r = buf_steal(&b);
	buf_deinit(&b);
	return r;
}

static bool split_addr(const char *spec, size_t len, struct sieve_address *out)
{
	char *c = addr_clean(spec, len);
	if (*c == '\0') {
		free(c);
		return false;
	}
	/* drop an obsolete source route @a,@b: */
	char *colon = c[0] == '@' ? strchr(c, ':') : NULL;
	char *start = colon ? colon + 1 : c;
	char *at = strrchr(start, '@');
	if (at != NULL && at != start && at[1] != '\0') {
		out->local = xstrndup(start, (size_t)(at - start));
		out->domain = xstrdup(at + 1);
	} else {
		out->local = xstrdup(start);
		out->domain = NULL;
	}
	free(c);
	return true;
}

size_t sieve_address_parse_list(const char *s, struct sieve_address *out, size_t max)
{
	size_t n = 0, len = strlen(s), i = 0;
	while (i < len && n < max) {
		/* find the end of this address: a ',' or ';' at top level */
		size_t st = i;
		int depth = 0;
		bool inq = false, inangle = false;
		size_t group_colon = (size_t)-1, angle_open = (size_t)-1, angle_close = (size_t)-1;
		for (; i < len; i++) {
			char c = s[i];
			if (inq) {
				if (c == '\\')
					i++;
				else if (c == '"')
					inq = false;
				continue;
			}
			if (depth > 0) {
				if (c == '\\')
					i++;
				else if (c == '(')
					depth++;
				else if (c == ')')
					depth--;
				continue;
			}
			if (c == '"')
				inq = true;
			else if (c == '(')
				depth++;
			else if (c == '<' && !inangle) {
				inangle = true;
				angle_open = i;
				angle_close = (size_t)-1;
			} else if (c == '>' && inangle) {
				inangle = false;
				angle_close = i;
			} else if (c == ':' && !inangle && group_colon == (size_t)-1 && angle_open == (size_t)-1) {
				group_colon = i;
			} else if ((c == ',' || c == ';') && !inangle) {
				break;
			}
		}
		size_t en = i < len ? i : len;
		if (i < len)
			i++;
		if (group_colon != (size_t)-1 && group_colon >= st)
			st = group_colon + 1;
		struct sieve_address a = { NULL, NULL };
		bool ok;
		if (angle_open != (size_t)-1 && angle_open >= st) {
			size_t ae = angle_close != (size_t)-1 && angle_close > angle_open ? angle_close : en;
			ok = ae > angle_open && split_addr(s + angle_open + 1, ae - angle_open - 1, &a);
		} else {
			ok = split_addr(s + st, en - st, &a);
		}
		if (ok)
			out[n++] = a;
	}
	return n;
}

int sieve_address_parse_path(const char *s, struct sieve_address *out)
{
	out->local = out->domain = NULL;
	size_t len = strlen(s);
	while (len > 0 && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	if (len > 0 && s[0] == '<') {
		s++;
		len--;
		if (len > 0 && s[len - 1] == '>')
			len--;
	}
	if (len == 0)
		return 0;
	return split_addr(s, len, out) ? 1 : -1;
}

/* ---- dates ---- */

static const char *months[] = { "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec" };
static const char *wdays[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char *mnames[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

static void skip_cfws(const char **p)
{
	for (;;) {
		while (**p == ' ' || **p == '\t' || **p == '\r' || **p == '\n')
			(*p)++;
		if (**p == '(') {
			int d = 0;
			while (**p) {
				if (**p == '(')
					d++;
				else if (**p == ')' && --d == 0) {
					(*p)++;
					break;
				}
				(*p)++;
			}
			continue;
		}
		break;
	}
}

static bool read_num(const char **p, int mind, int maxd, long *v)
{
	int n = 0;
	*v = 0;
	while (isdigit((unsigned char)**p) && n < maxd) {
		*v = *v * 10 + (**p - '0');
		(*p)++;
		n++;
	}
	return n >= mind && !isdigit((unsigned char)**p);
}

int sieve_date_parse(const char *s, time_t *t, int *zone_minutes)
{
	const char *p = s;
	skip_cfws(&p);
	if (isalpha((unsigned char)*p)) {
		/* day-of-week "," */
		while (isalpha((unsigned char)*p))
			p++;
		skip_cfws(&p);
		if (*p != ',')
			return -1;
		p++;
		skip_cfws(&p);
	}
	long day, year, hour, min, sec = 0;
	if (!read_num(&p, 1, 2, &day))
		return -1;
	skip_cfws(&p);
	int mon = -1;
	for (int i = 0; i < 12; i++)
		if (strncasecmp(p, months[i], 3) == 0)
			mon = i;
	if (mon < 0)
		return -1;
	p += 3;
	skip_cfws(&p);
	const char *ys = p;
	if (!read_num(&p, 2, 4, &year))
		return -1;
	if (p - ys == 2)
		year += year < 50 ? 2000 : 1900;
	else if (p - ys == 3)
		year += 1900;
	skip_cfws(&p);
	if (!read_num(&p, 1, 2, &hour) || *p != ':')
		return -1;
	p++;
	if (!read_num(&p, 1, 2, &min))
		return -1;
	if (*p == ':') {
		p++;
		if (!read_num(&p, 1, 2, &sec))
			return -1;
	}
	skip_cfws(&p);
	int zone = 0;
	if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1;
		p++;
		long z;
		const char *zs = p;
		if (!read_num(&p, 4, 4, &z) || p - zs != 4)
			return -1;
		zone = sign * (int)((z / 100) * 60 + z % 100);
	} else if (isalpha((unsigned char)*p)) {
		static const struct { const char *n; int off; } zones[] = {
			{ "UT", 0 }, { "GMT", 0 }, { "UTC", 0 }, { "EST", -300 }, { "EDT", -240 }, { "CST", -360 },
			{ "CDT", -300 }, { "MST", -420 }, { "MDT", -360 }, { "PST", -480 }, { "PDT", -420 },
		};
		size_t l = 0;
		while (isalpha((unsigned char)p[l]))
			l++;
		zone = 0;
		for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
			if (strlen(zones[i].n) == l && strncasecmp(zones[i].n, p, l) == 0)
				zone = zones[i].off;
	} else {
		return -1;
	}
	if (day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60 || year < 1900 || year > 9999)
		return -1;
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = (int)year - 1900;
	tm.tm_mon = mon;
	tm.tm_mday = (int)day;
	tm.tm_hour = (int)hour;
	tm.tm_min = (int)min;
	tm.tm_sec = (int)(sec == 60 ? 59 : sec);
	time_t ut = timegm(&tm);
	*t = ut - (time_t)zone * 60;
	*zone_minutes = zone;
	return 0;
}

int sieve_date_part(time_t t, int zone, const char *part, struct buf *out)
{
	time_t lt = t + (time_t)zone * 60;
	struct tm tm;
	if (gmtime_r(&lt, &tm) == NULL)
		return -1;
	int za = zone < 0 ? -zone : zone;
	char zs[32];
	snprintf(zs, sizeof(zs), "%c%02d%02d", zone < 0 ? '-' : '+', za / 60, za % 60);
	if (strcasecmp(part, "year") == 0)
		return buf_printf(out, "%04d", tm.tm_year + 1900);
	if (strcasecmp(part, "month") == 0)
		return buf_printf(out, "%02d", tm.tm_mon + 1);
	if (strcasecmp(part, "day") == 0)
		return buf_printf(out, "%02d", tm.tm_mday);
	if (strcasecmp(part, "date") == 0)
		return buf_printf(out, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
	if (strcasecmp(part, "julian") == 0) {
		/* Modified Julian Day: days since 1858-11-17 */
		long long days = (long long)(lt >= 0 ? lt / 86400 : (lt - 86399) / 86400);
		return buf_printf(out, "%lld", days + 40587);
	}
	if (strcasecmp(part, "hour") == 0)
		return buf_printf(out, "%02d", tm.tm_hour);
	if (strcasecmp(part, "minute") == 0)
		return buf_printf(out, "%02d", tm.tm_min);
	if (strcasecmp(part, "second") == 0)
		return buf_printf(out, "%02d", tm.tm_sec);
	if (strcasecmp(part, "time") == 0)
		return buf_printf(out, "%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (strcasecmp(part, "iso8601") == 0)
		return buf_printf(out, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
				  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, zone < 0 ? '-' : '+', za / 60, za % 60);
	if (strcasecmp(part, "std11") == 0)
		return buf_printf(out, "%s, %d %s %04d %02d:%02d:%02d %s", wdays[tm.tm_wday], tm.tm_mday,
				  mnames[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, zs);
	if (strcasecmp(part, "zone") == 0)
		return buf_append_str(out, zs);
	if (strcasecmp(part, "weekday") == 0)
		return buf_printf(out, "%d", tm.tm_wday);
	return -1;
}
