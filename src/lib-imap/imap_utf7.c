#include "lib-imap/imap_utf7.h"

#include <stdint.h>
#include <string.h>

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* Decode one UTF-8 code point; 0 on error. */
static size_t utf8_next(const unsigned char *p, uint32_t *cp)
{
	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	size_t n;
	uint32_t v;
	if ((p[0] & 0xe0) == 0xc0) {
		n = 2;
		v = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 3;
		v = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 4;
		v = p[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (p[i] & 0x3f);
	}
	static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };
	if (v < min[n] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

int imap_utf8_to_mutf7(const char *in, struct buf *out)
{
	const unsigned char *p = (const unsigned char *)in;
	while (*p) {
		if (*p >= 0x20 && *p < 0x7f) {
			if (*p == '&')
				buf_append_str(out, "&-");
			else
				buf_append_c(out, (char)*p);
			p++;
			continue;
		}
		/* a run of non-printable-ASCII characters as base64 of UTF-16BE */
		buf_append_c(out, '&');
		uint32_t acc = 0;
		int bits = 0;
		while (*p && !(*p >= 0x20 && *p < 0x7f)) {
			uint32_t cp;
			size_t n = utf8_next(p, &cp);
			if (n == 0)
				return -1;
			p += n;
			uint16_t units[2];
			int nu = 1;
			if (cp >= 0x10000) {
				cp -= 0x10000;
				units[0] = (uint16_t)(0xd800 | (cp >> 10));
				units[1] = (uint16_t)(0xdc00 | (cp & 0x3ff));
				nu = 2;
			} else {
				units[0] = (uint16_t)cp;
			}
			for (int u = 0; u < nu; u++) {
				acc = (acc << 16) | units[u];
				bits += 16;
				while (bits >= 6) {
					bits -= 6;
					buf_append_c(out, b64chars[(acc >> bits) & 0x3f]);
				}
			}
		}
		if (bits > 0)
			buf_append_c(out, b64chars[(acc << (6 - bits)) & 0x3f]);
		buf_append_c(out, '-');
	}
	return 0;
}

static int b64v(unsigned char c)
{
	const char *q = c ? strchr(b64chars, c) : NULL;
	return q ? (int)(q - b64chars) : -1;
}

static void put_utf8(struct buf *out, uint32_t cp)
{
	char b[4];
	size_t n;
	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	buf_append(out, b, n);
}

int imap_mutf7_to_utf8(const char *in, struct buf *out)
{
	const unsigned char *p = (const unsigned char *)in;
	while (*p) {
		if (*p != '&') {
			if (*p < 0x20 || *p >= 0x7f)
				return -1;
			buf_append_c(out, (char)*p++);
			continue;
		}
		p++;
		if (*p == '-') {
			buf_append_c(out, '&');
			p++;
			continue;
		}
		uint32_t acc = 0;
		int bits = 0;
		uint32_t high = 0;
		size_t nchars = 0;
		while (*p && *p != '-') {
			int v = b64v(*p);
			if (v < 0)
				return -1;
			p++;
			nchars++;
			acc = (acc << 6) | (uint32_t)v;
			bits += 6;
			if (bits >= 16) {
				bits -= 16;
				uint32_t u = (acc >> bits) & 0xffff;
				if (u >= 0xd800 && u <= 0xdbff) {
					if (high)
						return -1;
					high = u;
				} else if (u >= 0xdc00 && u <= 0xdfff) {
					if (!high)
						return -1;
					put_utf8(out, 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00));
					high = 0;
				} else {
					if (high || (u >= 0x20 && u < 0x7f))
						return -1; /* printable ASCII must not be encoded */
					put_utf8(out, u);
				}
			}
		}
		if (*p != '-' || nchars == 0 || high || (acc & ((1u << bits) - 1)) != 0)
			return -1;
		p++;
	}
	return 0;
}
