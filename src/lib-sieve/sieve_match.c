/*
 * sieve_match: comparators (RFC 4790: i;octet, i;ascii-casemap,
 * i;ascii-numeric) and the :is/:contains/:matches primitives. The wildcard
 * matcher is iterative with backtracking to the last '*' only, so it runs in
 * O(len(value) * len(pattern)) and cannot blow up on hostile patterns.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "lib-sieve/sieve_private.h"
#include "lib/xalloc.h"

int sieve_cmp_lookup(const char *name, unsigned required)
{
	if (strcmp(name, "i;octet") == 0)
		return SIEVE_CMP_OCTET;
	if (strcmp(name, "i;ascii-casemap") == 0)
		return SIEVE_CMP_CASEMAP;
	if (strcmp(name, "i;ascii-numeric") == 0 && (required & SIEVE_EXT_CMP_NUMERIC))
		return SIEVE_CMP_NUMERIC;
	if (strcmp(name, "i;unicode-casemap") == 0)
		return SIEVE_CMP_UNICODE;
	return -1;
}

int sieve_rel_lookup(const char *s, size_t len)
{
	static const char *ops[] = { "gt", "ge", "lt", "le", "eq", "ne" };
	if (len != 2)
		return -1;
	for (int i = 0; i < 6; i++)
		if (strncasecmp(s, ops[i], 2) == 0)
			return i;
	return -1;
}

bool sieve_rel_holds(int rel, int order)
{
	switch (rel) {
	case SIEVE_REL_GT: return order > 0;
	case SIEVE_REL_GE: return order >= 0;
	case SIEVE_REL_LT: return order < 0;
	case SIEVE_REL_LE: return order <= 0;
	case SIEVE_REL_EQ: return order == 0;
	case SIEVE_REL_NE: return order != 0;
	}
	return false;
}

static inline int fold(int cmp, unsigned char c)
{
	return cmp == SIEVE_CMP_CASEMAP && c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* i;ascii-numeric: leading digits; a string not starting with a digit is +infinity. */
static int numeric_order(const char *a, size_t alen, const char *b, size_t blen)
{
	bool ainf = alen == 0 || !isdigit((unsigned char)a[0]);
	bool binf = blen == 0 || !isdigit((unsigned char)b[0]);
	if (ainf || binf)
		return ainf && binf ? 0 : ainf ? 1 : -1;
	size_t ai = 0, bi = 0, ae, be;
	while (ai < alen && a[ai] == '0')
		ai++;
	while (bi < blen && b[bi] == '0')
		bi++;
	ae = ai;
	while (ae < alen && isdigit((unsigned char)a[ae]))
		ae++;
	be = bi;
	while (be < blen && isdigit((unsigned char)b[be]))
		be++;
	if (ae - ai != be - bi)
		return ae - ai < be - bi ? -1 : 1;
	int c = memcmp(a + ai, b + bi, ae - ai);
	return c < 0 ? -1 : c > 0 ? 1 : 0;
}

int sieve_cmp_order(int cmp, const char *a, size_t alen, const char *b, size_t blen)
{
	if (cmp == SIEVE_CMP_NUMERIC)
		return numeric_order(a, alen, b, blen);
	size_t n = alen < blen ? alen : blen;
	for (size_t i = 0; i < n; i++) {
		int x = fold(cmp, (unsigned char)a[i]), y = fold(cmp, (unsigned char)b[i]);
		if (x != y)
			return x < y ? -1 : 1;
	}
	return alen == blen ? 0 : alen < blen ? -1 : 1;
}

bool sieve_cmp_equal(int cmp, const char *a, size_t alen, const char *b, size_t blen)
{
	if (cmp == SIEVE_CMP_NUMERIC)
		return numeric_order(a, alen, b, blen) == 0;
	if (alen != blen)
		return false;
	return sieve_cmp_order(cmp, a, alen, b, blen) == 0;
}

/* Linear time (memmem is two-way in glibc): fold both sides first for i;ascii-casemap. */
bool sieve_cmp_contains(int cmp, const char *hay, size_t hlen, const char *needle, size_t nlen)
{
	if (nlen == 0)
		return true;
	if (nlen > hlen)
		return false;
	if (cmp != SIEVE_CMP_CASEMAP)
		return memmem(hay, hlen, needle, nlen) != NULL;
	char *h = xmalloc(hlen), *nd = xmalloc(nlen);
	for (size_t i = 0; i < hlen; i++)
		h[i] = (char)fold(cmp, (unsigned char)hay[i]);
	for (size_t i = 0; i < nlen; i++)
		nd[i] = (char)fold(cmp, (unsigned char)needle[i]);
	bool r = memmem(h, hlen, nd, nlen) != NULL;
	free(h);
	free(nd);
	return r;
}

/*
 * Wildcard match with '*' (any run), '?' (one character, UTF-8 aware) and
 * '\' escaping. Matches are non-greedy left to right (RFC 5229 3.2), which is
 * what the backtracking order below gives. When caps is non-NULL, caps[1..]
 * receive the text matched by each wildcard and caps[0] the whole value.
 */
static size_t utf8_len(const char *s, size_t left)
{
	unsigned char c = (unsigned char)s[0];
	size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 1;
	if (n > left)
		n = 1;
	for (size_t i = 1; i < n; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			return 1;
	return n;
}

#define MAX_WILD 64

bool sieve_match_wildcard(const char *val, size_t vlen, const char *pat, size_t plen, int cmp,
			  struct buf *caps, unsigned *ncaps)
{
	/* record of each wildcard position: start in val and length */
	size_t wstart[MAX_WILD], wlen[MAX_WILD];
	unsigned nw = 0;
	size_t v = 0, p = 0;
	/* backtracking point: pattern index after the last '*', its wildcard slot, and value index */
	size_t bt_p = (size_t)-1, bt_v = 0;
	unsigned bt_nw = 0;

	while (v < vlen || p < plen) {
		if (p < plen) {
			char c = pat[p];
			if (c == '*') {
				if (nw < MAX_WILD) {
					wstart[nw] = v;
					wlen[nw] = 0;
				}
				nw++;
				p++;
				bt_p = p;
				bt_v = v;
				bt_nw = nw;
				continue;
			}
			if (c == '?' && v < vlen) {
				size_t n = utf8_len(val + v, vlen - v);
				if (nw < MAX_WILD) {
					wstart[nw] = v;
					wlen[nw] = n;
				}
				nw++;
				p++;
				v += n;
				continue;
			}
			if (c != '?' && v < vlen) {
				if (c == '\\' && p + 1 < plen)
					c = pat[p + 1];
				if (fold(cmp, (unsigned char)c) == fold(cmp, (unsigned char)val[v])) {
					p += pat[p] == '\\' && p + 1 < plen ? 2 : 1;
					v++;
					continue;
				}
			}
		}
		/* mismatch: extend the last '*' by one character */
		if (bt_p == (size_t)-1 || bt_v >= vlen)
			return false;
		bt_v += utf8_len(val + bt_v, vlen - bt_v);
		v = bt_v;
		p = bt_p;
		nw = bt_nw;
		if (nw - 1 < MAX_WILD)
			wlen[nw - 1] = v - wstart[nw - 1];
	}
	if (caps != NULL) {
		unsigned n = nw < SIEVE_MAX_MATCH_VALUES - 1 ? nw : SIEVE_MAX_MATCH_VALUES - 1;
		buf_reset(&caps[0]);
		buf_append(&caps[0], val, vlen);
		for (unsigned i = 0; i < n; i++) {
			buf_reset(&caps[i + 1]);
			if (i < MAX_WILD)
				buf_append(&caps[i + 1], val + wstart[i], wlen[i]);
		}
		*ncaps = n + 1;
	}
	return true;
}

void sieve_unicode_fold(const char *s, size_t len, struct buf *out)
{
	buf_reset(out);
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80) {
			buf_append_c(out, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c));
			i++;
			continue;
		}
		size_t n = utf8_len(s + i, len - i);
		if (n == 2) {
			unsigned cp = ((c & 0x1fu) << 6) | ((unsigned char)s[i + 1] & 0x3fu);
			if ((cp >= 0xc0 && cp <= 0xde && cp != 0xd7) || (cp >= 0x391 && cp <= 0x3ab && cp != 0x3a2) ||
			    (cp >= 0x410 && cp <= 0x42f))
				cp += 0x20;
			else if (cp >= 0x400 && cp <= 0x40f)
				cp += 0x50;
			else if (cp >= 0x100 && cp <= 0x17f && cp != 0x130 && cp != 0x131 && cp != 0x138 && cp != 0x149 &&
				 cp != 0x17f && ((cp < 0x139 || cp > 0x148) && (cp < 0x179 || cp > 0x17e)))
				cp |= 1u;
			else if (((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17e)) && (cp & 1u))
				cp += 1;
			char u[2] = { (char)(0xc0 | (cp >> 6)), (char)(0x80 | (cp & 0x3f)) };
			buf_append(out, u, 2);
		} else {
			buf_append(out, s + i, n);
		}
		i += n;
	}
}
