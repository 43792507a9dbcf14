/*
 * dkim: RFC 6376 / 8301 / 8463. Parsing is separate from evaluation: a
 * signature's tag-list is parsed and checked completely before any DNS query
 * or hashing.
 */
#include "lib-auth/dkim.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "lib/xalloc.h"

#define DKIM_MAX_CANON (64u * 1024 * 1024)

/* buf_steal copies; the buf itself is released here. */
static char *steal(struct buf *b)
{
	char *s = buf_steal(b);
	buf_deinit(b);
	return s;
}

const char *dkim_result_name(enum dkim_result r)
{
	switch (r) {
	case DKIM_RESULT_NONE: return "none";
	case DKIM_RESULT_PASS: return "pass";
	case DKIM_RESULT_FAIL: return "fail";
	case DKIM_RESULT_NEUTRAL: return "neutral";
	case DKIM_RESULT_POLICY: return "policy";
	case DKIM_RESULT_TEMPERROR: return "temperror";
	case DKIM_RESULT_PERMERROR: return "permerror";
	}
	return "?";
}

/* ---- base64 ---- */

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

unsigned char *dkim_base64_decode(const char *s, size_t len, size_t *len_r)
{
	unsigned char *out = xmalloc(len / 4 * 3 + 4);
	size_t o = 0;
	unsigned acc = 0;
	int bits = 0, pad = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		if (c == '=') {
			pad++;
			continue;
		}
		int v = b64val(c);
		if (v < 0 || pad > 0) {
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (pad > 2 || bits >= 6) {
		free(out);
		return NULL;
	}
	*len_r = o;
	return out;
}

char *dkim_base64_encode(const unsigned char *data, size_t len)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = xmalloc((len + 2) / 3 * 4 + 1);
	size_t o = 0, i = 0;
	while (i + 2 < len) {
		unsigned v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8 | data[i + 2];
		out[o++] = tbl[v >> 18];
		out[o++] = tbl[(v >> 12) & 63];
		out[o++] = tbl[(v >> 6) & 63];
		out[o++] = tbl[v & 63];
		i += 3;
	}
	if (i < len) {
		unsigned v = (unsigned)data[i] << 16 | (i + 1 < len ? (unsigned)data[i + 1] << 8 : 0);
		out[o++] = tbl[v >> 18];
		out[o++] = tbl[(v >> 12) & 63];
		out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return out;
}

/* ---- tag-list ---- */

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

void dkim_taglist_free(struct dkim_taglist *tl)
{
	for (size_t i = 0; i < tl->count; i++) {
		free(tl->tags[i].name);
		free(tl->tags[i].value);
	}
	tl->count = 0;
}

const char *dkim_taglist_get(const struct dkim_taglist *tl, const char *name)
{
	for (size_t i = 0; i < tl->count; i++)
		if (strcmp(tl->tags[i].name, name) == 0)
			return tl->tags[i].value;
	return NULL;
}

int dkim_taglist_parse(const char *s, size_t len, struct dkim_taglist *tl, const char **error_r)
{
	tl->count = 0;
	size_t i = 0;
	while (i < len) {
		while (i < len && is_fws(s[i]))
			i++;
		if (i == len)
			break; /* trailing ";" or empty list */
		size_t ns = i;
		if (!isalpha((unsigned char)s[i])) {
			*error_r = "bad tag name";
			return -1;
		}
		while (i < len && (isalnum((unsigned char)s[i]) || s[i] == '_'))
			i++;
		size_t ne = i;
		while (i < len && is_fws(s[i]))
			i++;
		if (i == len || s[i] != '=') {
			*error_r = "missing = after tag name";
			return -1;
		}
		i++;
		while (i < len && is_fws(s[i]))
			i++;
		size_t vs = i;
		while (i < len && s[i] != ';') {
			unsigned char c = (unsigned char)s[i];
			if (!(is_fws((char)c) || (c >= 0x21 && c <= 0x7e) || c >= 0x80)) {
				*error_r = "bad character in tag value";
				return -1;
			}
			i++;
		}
		size_t ve = i;
		while (ve > vs && is_fws(s[ve - 1]))
			ve--;
		if (i < len)
			i++; /* ';' */
		if (tl->count >= DKIM_MAX_TAGS) {
			*error_r = "too many tags";
			return -1;
		}
		char *name = xstrndup(s + ns, ne - ns);
		if (dkim_taglist_get(tl, name) != NULL) {
			free(name);
			*error_r = "duplicate tag";
			return -1;
		}
		tl->tags[tl->count].name = name;
		tl->tags[tl->count].value = xstrndup(s + vs, ve - vs);
		tl->count++;
	}
	return 1;
}

/* ---- message ---- */

void dkim_msg_free(struct dkim_msg *m)
{
	free(m->data);
	free(m->hdrs);
	memset(m, 0, sizeof(*m));
}

int dkim_msg_parse(const char *msg, size_t len, struct dkim_msg *m, const char **error_r)
{
	memset(m, 0, sizeof(*m));
	/* normalize bare LF to CRLF */
	size_t extra = 0;
	for (size_t i = 0; i < len; i++)
		if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r'))
			extra++;
	m->data = xmalloc(len + extra + 1);
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r'))
			m->data[o++] = '\r';
		m->data[o++] = msg[i];
	}
	m->data[o] = '\0';
	m->len = o;
	const char *d = m->data;
	size_t pos = 0, alloc = 0;
	while (pos < m->len) {
		if (pos + 1 < m->len && d[pos] == '\r' && d[pos + 1] == '\n') {
			pos += 2; /* end of header */
			m->body = d + pos;
			m->body_len = m->len - pos;
			return 1;
		}
		if (pos > DKIM_MAX_HEADER_BYTES || m->nhdrs >= DKIM_MAX_HEADERS) {
			*error_r = "header too large";
			return -1;
		}
		size_t start = pos;
		size_t colon = 0;
		bool have_colon = false;
		/* a field runs until CRLF not followed by WSP */
		while (pos < m->len) {
			if (!have_colon && d[pos] == ':') {
				have_colon = true;
				colon = pos;
			}
			if (d[pos] == '\r' && pos + 1 < m->len && d[pos + 1] == '\n') {
				pos += 2;
				if (pos < m->len && is_wsp(d[pos]))
					continue;
				break;
			}
			pos++;
		}
		if (!have_colon || colon == start) {
			*error_r = "header field without name";
			return -1;
		}
		size_t nlen = colon - start;
		while (nlen > 0 && is_wsp(d[start + nlen - 1]))
			nlen--;
		for (size_t k = 0; k < nlen; k++) {
			unsigned char c = (unsigned char)d[start + k];
			if (c < 33 || c > 126) {
				*error_r = "bad header field name";
				return -1;
			}
		}
		if (m->nhdrs == alloc) {
			alloc = alloc ? alloc * 2 : 32;
			m->hdrs = xreallocarray(m->hdrs, alloc, sizeof(*m->hdrs));
		}
		m->hdrs[m->nhdrs++] = (struct dkim_header){
			.name = d + start, .name_len = nlen, .raw = d + start, .raw_len = pos - start,
		};
	}
	/* no body separator: header only */
	m->body = d + m->len;
	m->body_len = 0;
	return 1;
}

int dkim_canon_header(struct buf *out, const char *raw, size_t len, bool relaxed)
{
	if (!relaxed)
		return buf_append(out, raw, len);
	const char *colon = memchr(raw, ':', len);
	if (colon == NULL)
		return -1;
	size_t nlen = (size_t)(colon - raw);
	while (nlen > 0 && is_wsp(raw[nlen - 1]))
		nlen--;
	for (size_t i = 0; i < nlen; i++)
		if (buf_append_c(out, (char)tolower((unsigned char)raw[i])) < 0)
			return -1;
	if (buf_append_c(out, ':') < 0)
		return -1;
	/* value: unfold, collapse WSP runs, trim both ends */
	size_t i = (size_t)(colon - raw) + 1;
	size_t end = len;
	if (end >= 2 && raw[end - 2] == '\r' && raw[end - 1] == '\n')
		end -= 2;
	bool pending_sp = false, started = false;
	for (; i < end; i++) {
		char c = raw[i];
		if (c == '\r' || c == '\n')
			continue;
		if (is_wsp(c)) {
			pending_sp = started;
			continue;
		}
		if (pending_sp && buf_append_c(out, ' ') < 0)
			return -1;
		pending_sp = false;
		started = true;
		if (buf_append_c(out, c) < 0)
			return -1;
	}
	return buf_append(out, "\r\n", 2);
}

typedef int canon_emit_fn(void *ctx, const char *p, size_t n);

/* Body canonicalization as a stream of emitted pieces: no copy of the body.
   Empty lines (after relaxed reduction) are held back and only emitted when
   content follows, which drops them at the end. */
static int canon_body_emit(const char *body, size_t len, bool relaxed, canon_emit_fn *emit, void *ctx)
{
	size_t pending = 0, i = 0;
	bool any = false;
	while (i < len) {
		size_t ls = i, le;
		const char *p = body + i;
		for (;;) {
			const char *cr = memchr(p, '\r', len - (size_t)(p - body));
			if (cr == NULL) {
				le = len;
				i = len;
				break;
			}
			if ((size_t)(cr - body) + 1 < len && cr[1] == '\n') {
				le = (size_t)(cr - body);
				i = le + 2;
				break;
			}
			p = cr + 1;
		}
		/* is the line empty (relaxed: only WSP)? */
		size_t ce = le;
		if (relaxed)
			while (ce > ls && is_wsp(body[ce - 1]))
				ce--;
		if (ce == ls) {
			pending++;
			continue;
		}
		for (; pending > 0; pending--)
			if (emit(ctx, "\r\n", 2) < 0)
				return -1;
		if (!relaxed) {
			if (emit(ctx, body + ls, le - ls) < 0)
				return -1;
		} else {
			size_t k = ls;
			while (k < ce) {
				size_t run = k;
				while (run < ce && !is_wsp(body[run]))
					run++;
				if (run > k && emit(ctx, body + k, run - k) < 0)
					return -1;
				if (run == ce)
					break;
				while (run < ce && is_wsp(body[run]))
					run++;
				if (emit(ctx, " ", 1) < 0)
					return -1;
				k = run;
			}
		}
		if (emit(ctx, "\r\n", 2) < 0)
			return -1;
		any = true;
	}
	if (!any && !relaxed)
		return emit(ctx, "\r\n", 2);
	return 0;
}

static int emit_buf(void *ctx, const char *p, size_t n)
{
	return buf_append(ctx, p, n);
}

int dkim_canon_body(struct buf *out, const char *body, size_t len, bool relaxed)
{
	return canon_body_emit(body, len, relaxed, emit_buf, out);
}

struct body_hash {
	EVP_MD_CTX *md;
	unsigned long long total;  /* canonical length */
	unsigned long long limit;  /* bytes to hash (l=) */
};

static int emit_hash(void *ctx, const char *p, size_t n)
{
	struct body_hash *h = ctx;
	if (h->total < h->limit) {
		unsigned long long take = h->limit - h->total;
		if (take > n)
			take = n;
		if (EVP_DigestUpdate(h->md, p, (size_t)take) != 1)
			return -1;
	}
	h->total += n;
	return 0;
}

/* SHA-256 of the canonical body, at most limit bytes; *total_r = canonical length. */
static bool body_hash(const char *body, size_t len, bool relaxed, unsigned long long limit, unsigned char out[32],
		      unsigned long long *total_r)
{
	struct body_hash h = { .md = EVP_MD_CTX_new(), .limit = limit };
	unsigned int olen = 0;
	bool ok = h.md != NULL && EVP_DigestInit_ex(h.md, EVP_sha256(), NULL) == 1 &&
		  canon_body_emit(body, len, relaxed, emit_hash, &h) == 0 &&
		  EVP_DigestFinal_ex(h.md, out, &olen) == 1 && olen == 32;
	EVP_MD_CTX_free(h.md);
	*total_r = h.total;
	return ok;
}

char *dkim_strip_b_value(const char *raw, size_t len, size_t *len_r)
{
	struct buf b;
	buf_init(&b, len + 1);
	const char *colon = memchr(raw, ':', len);
	size_t i = colon != NULL ? (size_t)(colon - raw) + 1 : len;
	buf_append(&b, raw, i);
	while (i < len) {
		/* at the start of a tag-spec */
		size_t ts = i;
		while (i < len && is_fws(raw[i]))
			i++;
		size_t ns = i;
		while (i < len && (isalnum((unsigned char)raw[i]) || raw[i] == '_'))
			i++;
		bool is_b = i - ns == 1 && raw[ns] == 'b';
		while (i < len && is_fws(raw[i]))
			i++;
		if (is_b && i < len && raw[i] == '=') {
			i++;
			buf_append(&b, raw + ts, i - ts);
			size_t ve = i;
			while (ve < len && raw[ve] != ';')
				ve++;
			/* keep the final CRLF of the field if the b= tag is last */
			if (ve == len && len >= 2 && raw[len - 2] == '\r' && raw[len - 1] == '\n')
				buf_append(&b, "\r\n", 2);
			i = ve;
			continue;
		}
		while (i < len && raw[i] != ';')
			i++;
		if (i < len)
			i++;
		buf_append(&b, raw + ts, i - ts);
	}
	*len_r = b.len;
	return steal(&b);
}

/* ---- keys ---- */

static EVP_PKEY *rsa_key_from_der(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);
	if (k != NULL)
		return k;
	p = der;
	return d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)len);
}

/* Parse a key record for signature algorithm (ed = ed25519). Returns the key,
   or NULL with *problem_r and *perm (false = try the next record). */
static EVP_PKEY *key_record_parse(const char *txt, size_t len, bool ed, bool *testing_r, bool *strict_r,
				  unsigned *bits_r, const char **problem_r)
{
	struct dkim_taglist tl;
	const char *err;
	EVP_PKEY *key = NULL;
	*testing_r = *strict_r = false;
	if (dkim_taglist_parse(txt, len, &tl, &err) < 0) {
		*problem_r = "key record syntax error";
		goto out;
	}
	const char *v = dkim_taglist_get(&tl, "v");
	if (v != NULL && (strcmp(v, "DKIM1") != 0 || strcmp(tl.tags[0].name, "v") != 0)) {
		*problem_r = "key record has a bad v=";
		goto out;
	}
	const char *k = dkim_taglist_get(&tl, "k");
	if (k == NULL)
		k = "rsa";
	if (strcmp(k, ed ? "ed25519" : "rsa") != 0) {
		*problem_r = "key type does not match the signature algorithm";
		goto out;
	}
	const char *h = dkim_taglist_get(&tl, "h");
	if (h != NULL) {
		bool ok = false;
		char *hc = xstrdup(h), *save = NULL;
		for (char *t = strtok_r(hc, ":", &save); t != NULL; t = strtok_r(NULL, ":", &save)) {
			while (is_fws(*t))
				t++;
			size_t tlen = strlen(t);
			while (tlen > 0 && is_fws(t[tlen - 1]))
				t[--tlen] = '\0';
			if (strcmp(t, "sha256") == 0)
				ok = true;
		}
		free(hc);
		if (!ok) {
			*problem_r = "key h= does not allow sha256";
			goto out;
		}
	}
	const char *s = dkim_taglist_get(&tl, "s");
	if (s != NULL) {
		bool ok = false;
		char *sc = xstrdup(s), *save = NULL;
		for (char *t = strtok_r(sc, ":", &save); t != NULL; t = strtok_r(NULL, ":", &save)) {
			while (is_fws(*t))
				t++;
			size_t tlen = strlen(t);
			while (tlen > 0 && is_fws(t[tlen - 1]))
				t[--tlen] = '\0';
			if (strcmp(t, "*") == 0 || strcmp(t, "email") == 0)
				ok = true;
		}
		free(sc);
		if (!ok) {
			*problem_r = "key service type excludes email";
			goto out;
		}
	}
	const char *t = dkim_taglist_get(&tl, "t");
	if (t != NULL) {
		char *tc = xstrdup(t), *save = NULL;
		for (char *f = strtok_r(tc, ":", &save); f != NULL; f = strtok_r(NULL, ":", &save)) {
			while (is_fws(*f))
				f++;
			if (f[0] == 'y' && (f[1] == '\0' || is_fws(f[1])))
				*testing_r = true;
			if (f[0] == 's' && (f[1] == '\0' || is_fws(f[1])))
				*strict_r = true;
		}
		free(tc);
	}
	const char *p = dkim_taglist_get(&tl, "p");
	if (p == NULL) {
		*problem_r = "key record without p=";
		goto out;
	}
	if (*p == '\0') {
		*problem_r = "key revoked";
		goto out;
	}
	size_t dlen;
	unsigned char *der = dkim_base64_decode(p, strlen(p), &dlen);
	if (der == NULL) {
		*problem_r = "key p= is not base64";
		goto out;
	}
	if (ed) {
		if (dlen == 32)
			key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, dlen);
		if (key == NULL)
			*problem_r = "bad ed25519 key";
	} else {
		key = rsa_key_from_der(der, dlen);
		if (key == NULL || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
			EVP_PKEY_free(key);
			key = NULL;
			*problem_r = "bad RSA key";
		}
	}
	free(der);
	if (key != NULL) {
		*bits_r = (unsigned)EVP_PKEY_get_bits(key);
		if (!ed && *bits_r < DKIM_MIN_RSA_BITS) {
			*problem_r = "RSA key shorter than 1024 bits (RFC 8301)";
			EVP_PKEY_free(key);
			key = NULL;
		}
	}
out:
	dkim_taglist_free(&tl);
	return key;
}

/* ---- verification ---- */

static bool domain_syntax_ok(const char *d)
{
	if (*d == '\0' || strlen(d) > 253)
		return false;
	size_t label = 0;
	for (const char *p = d; *p != '\0'; p++) {
		if (*p == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (isalnum((unsigned char)*p) || *p == '-' || *p == '_' || (unsigned char)*p >= 0x80) {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return label > 0;
}

/* dkim-quoted-printable decode (for i= and z=) */
static char *qp_decode(const char *s)
{
	struct buf b;
	buf_init(&b, strlen(s) + 1);
	for (const char *p = s; *p != '\0'; p++) {
		if (is_fws(*p))
			continue;
		if (*p == '=' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
			char hex[3] = {p[1], p[2], 0};
			buf_append_c(&b, (char)strtol(hex, NULL, 16));
			p += 2;
			continue;
		}
		buf_append_c(&b, *p);
	}
	return steal(&b);
}

static bool parse_uint(const char *s, unsigned long long *v)
{
	if (!isdigit((unsigned char)*s))
		return false;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (*end != '\0' || errno != 0 || strlen(s) > 19)
		return false;
	*v = x;
	return true;
}

static bool name_eq_n(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && strncasecmp(a, b, alen) == 0;
}

static void set_result(struct dkim_sig_result *out, enum dkim_result r, const char *problem)
{
	out->result = r;
	free(out->problem);
	out->problem = problem != NULL ? xstrdup(problem) : NULL;
}

/* Hash input for the header: selected fields plus the signature field. */
int dkim_header_hash_input(const struct dkim_msg *m, size_t sig_index, const char *hlist, bool relaxed,
			   struct buf *out)
{
	bool *used = xcalloc(m->nhdrs + 1, sizeof(bool));
	char *hc = xstrdup(hlist), *save = NULL;
	int ret = 0;
	for (char *t = strtok_r(hc, ":", &save); t != NULL && ret == 0; t = strtok_r(NULL, ":", &save)) {
		while (is_fws(*t))
			t++;
		size_t tl = strlen(t);
		while (tl > 0 && is_fws(t[tl - 1]))
			tl--;
		for (size_t k = m->nhdrs; k-- > 0;) {
			if (used[k] || k == sig_index)
				continue;
			if (!name_eq_n(m->hdrs[k].name, m->hdrs[k].name_len, t, tl))
				continue;
			used[k] = true;
			if (dkim_canon_header(out, m->hdrs[k].raw, m->hdrs[k].raw_len, relaxed) < 0)
				ret = -1;
			break;
		}
	}
	free(hc);
	free(used);
	if (ret < 0)
		return -1;
	size_t slen;
	char *stripped = dkim_strip_b_value(m->hdrs[sig_index].raw, m->hdrs[sig_index].raw_len, &slen);
	struct buf tmp;
	buf_init(&tmp, DKIM_MAX_CANON);
	ret = dkim_canon_header(&tmp, stripped, slen, relaxed);
	free(stripped);
	if (ret == 0) {
		size_t n = tmp.len;
		if (n >= 2 && tmp.data[n - 2] == '\r' && tmp.data[n - 1] == '\n')
			n -= 2;
		ret = buf_append(out, tmp.data, n);
	}
	buf_deinit(&tmp);
	return ret;
}

static bool sha256(const void *data, size_t len, unsigned char out[32])
{
	unsigned int olen = 0;
	return EVP_Digest(data, len, out, &olen, EVP_sha256(), NULL) == 1 && olen == 32;
}

bool dkim_crypto_verify(EVP_PKEY *key, bool ed, const void *data, size_t len, const unsigned char *sig,
			size_t siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = false;
	if (ed) {
		unsigned char h[32];
		if (sha256(data, len, h) && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1)
			ok = EVP_DigestVerify(ctx, sig, siglen, h, sizeof(h)) == 1;
	} else {
		if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1)
			ok = EVP_DigestVerify(ctx, sig, siglen, data, len) == 1;
	}
	EVP_MD_CTX_free(ctx);
	return ok;
}

enum dkim_result dkim_key_lookup(const struct authdns *dns, const char *selector, const char *domain, bool ed,
				 EVP_PKEY **key_r, unsigned *bits_r, bool *testing_r, bool *strict_r,
				 const char **problem_r)
{
	*key_r = NULL;
	*testing_r = *strict_r = false;
	struct authdns_answer ans;
	authdns_answer_init(&ans);
	char *qname = xasprintf("%s._domainkey.%s", selector, domain);
	enum authdns_status st = authdns_query(dns, dns->txt, qname, &ans);
	free(qname);
	if (st == AUTHDNS_TEMPFAIL) {
		*problem_r = "key lookup failed temporarily";
		return DKIM_RESULT_TEMPERROR;
	}
	if (st != AUTHDNS_OK) {
		*problem_r = "no key record";
		authdns_answer_clear(&ans);
		return DKIM_RESULT_PERMERROR;
	}
	*problem_r = "no usable key record";
	for (size_t k = 0; k < ans.count && *key_r == NULL; k++)
		*key_r = key_record_parse(ans.rr[k].data, ans.rr[k].len, ed, testing_r, strict_r, bits_r, problem_r);
	authdns_answer_clear(&ans);
	return *key_r != NULL ? DKIM_RESULT_PASS : DKIM_RESULT_PERMERROR;
}

void dkim_verify_one(const struct dkim_msg *m, size_t sig_index, bool arc, const struct authdns *dns,
		     const struct dkim_verify_options *opts, struct dkim_sig_result *out)
{
	memset(out, 0, sizeof(*out));
	const struct dkim_header *hdr = &m->hdrs[sig_index];
	const char *colon = memchr(hdr->raw, ':', hdr->raw_len);
	size_t vstart = (size_t)(colon - hdr->raw) + 1;
	struct dkim_taglist tl;
	const char *err = NULL;
	EVP_PKEY *key = NULL;
	unsigned char *bh = NULL, *b = NULL;
	struct buf hdata;
	buf_init(&hdata, DKIM_MAX_CANON);
	const char *kproblem = NULL;
	bool strict = false;

	if (dkim_taglist_parse(hdr->raw + vstart, hdr->raw_len - vstart, &tl, &err) < 0) {
		set_result(out, DKIM_RESULT_PERMERROR, err);
		goto done;
	}
	const char *v = dkim_taglist_get(&tl, "v");
	const char *a = dkim_taglist_get(&tl, "a");
	const char *bv = dkim_taglist_get(&tl, "b");
	const char *bhv = dkim_taglist_get(&tl, "bh");
	const char *d = dkim_taglist_get(&tl, "d");
	const char *h = dkim_taglist_get(&tl, "h");
	const char *s = dkim_taglist_get(&tl, "s");
	const char *c = dkim_taglist_get(&tl, "c");
	const char *q = dkim_taglist_get(&tl, "q");
	const char *i = dkim_taglist_get(&tl, "i");
	const char *l = dkim_taglist_get(&tl, "l");
	const char *t = dkim_taglist_get(&tl, "t");
	const char *x = dkim_taglist_get(&tl, "x");
	if (d != NULL)
		out->domain = xstrdup(d);
	if (s != NULL)
		out->selector = xstrdup(s);
	if (a != NULL)
		out->algorithm = xstrdup(a);
	if (bv != NULL) {
		char pre[13];
		size_t k = 0;
		for (const char *p = bv; *p != '\0' && k < 12; p++)
			if (!is_fws(*p))
				pre[k++] = *p;
		pre[k] = '\0';
		out->b_prefix = xstrdup(pre);
	}
	if ((!arc && v == NULL) || a == NULL || bv == NULL || bhv == NULL || d == NULL || h == NULL || s == NULL) {
		set_result(out, DKIM_RESULT_PERMERROR, "required tag missing");
		goto done;
	}
	if (!arc && strcmp(v, "1") != 0) {
		set_result(out, DKIM_RESULT_PERMERROR, "unsupported v=");
		goto done;
	}
	bool ed, sha1 = false;
	if (strcmp(a, "rsa-sha256") == 0)
		ed = false;
	else if (strcmp(a, "ed25519-sha256") == 0)
		ed = true;
	else if (strcmp(a, "rsa-sha1") == 0)
		ed = false, sha1 = true; /* rejected after the key lookup (a DNS failure is temperror) */
	else {
		set_result(out, DKIM_RESULT_PERMERROR, "unsupported algorithm");
		goto done;
	}
	bool hrelaxed = false, brelaxed = false;
	if (c != NULL) {
		const char *slash = strchr(c, '/');
		size_t hl = slash != NULL ? (size_t)(slash - c) : strlen(c);
		if (hl == 7 && strncmp(c, "relaxed", 7) == 0)
			hrelaxed = true;
		else if (!(hl == 6 && strncmp(c, "simple", 6) == 0)) {
			set_result(out, DKIM_RESULT_PERMERROR, "unsupported c=");
			goto done;
		}
		if (slash != NULL) {
			if (strcmp(slash + 1, "relaxed") == 0)
				brelaxed = true;
			else if (strcmp(slash + 1, "simple") != 0) {
				set_result(out, DKIM_RESULT_PERMERROR, "unsupported c=");
				goto done;
			}
		}
	}
	if (q != NULL && strcmp(q, "dns/txt") != 0) {
		set_result(out, DKIM_RESULT_PERMERROR, "unsupported q=");
		goto done;
	}
	if (!domain_syntax_ok(d) || strchr(s, '.') == s || !domain_syntax_ok(s)) {
		set_result(out, DKIM_RESULT_PERMERROR, "bad d= or s=");
		goto done;
	}
	/* h= must include From */
	{
		bool from = false;
		char *hc = xstrdup(h), *save = NULL;
		for (char *tok = strtok_r(hc, ":", &save); tok != NULL; tok = strtok_r(NULL, ":", &save)) {
			while (is_fws(*tok))
				tok++;
			size_t tlen = strlen(tok);
			while (tlen > 0 && is_fws(tok[tlen - 1]))
				tlen--;
			if (tlen == 4 && strncasecmp(tok, "from", 4) == 0)
				from = true;
		}
		free(hc);
		if (!from && !arc) {
			set_result(out, DKIM_RESULT_PERMERROR, "h= does not include From");
			goto done;
		}
	}
	/* i= */
	if (!arc && i != NULL) {
		out->identity = qp_decode(i);
		const char *at = strrchr(out->identity, '@');
		if (at == NULL) {
			set_result(out, DKIM_RESULT_PERMERROR, "bad i=");
			goto done;
		}
		const char *idom = at + 1;
		size_t il = strlen(idom), dl = strlen(d);
		if (!(il == dl && strcasecmp(idom, d) == 0) &&
		    !(il > dl && idom[il - dl - 1] == '.' && strcasecmp(idom + il - dl, d) == 0)) {
			set_result(out, DKIM_RESULT_PERMERROR, "i= domain is not d= or a subdomain");
			goto done;
		}
	} else if (!arc) {
		out->identity = xasprintf("@%s", d);
	}
	unsigned long long lval = 0, tval = 0, xval = 0;
	if (l != NULL && !parse_uint(l, &lval)) {
		set_result(out, DKIM_RESULT_PERMERROR, "bad l=");
		goto done;
	}
	if (t != NULL && !parse_uint(t, &tval)) {
		set_result(out, DKIM_RESULT_PERMERROR, "bad t=");
		goto done;
	}
	if (x != NULL) {
		if (!parse_uint(x, &xval) || (t != NULL && xval < tval)) {
			set_result(out, DKIM_RESULT_PERMERROR, "bad x=");
			goto done;
		}
		time_t now = opts != NULL && opts->now != 0 ? opts->now : time(NULL);
		unsigned skew = opts != NULL ? opts->skew_seconds : 0;
		if ((unsigned long long)now > xval + skew) {
			set_result(out, DKIM_RESULT_PERMERROR, "signature expired");
			goto done;
		}
	}
	size_t bhlen, blen;
	bh = dkim_base64_decode(bhv, strlen(bhv), &bhlen);
	b = dkim_base64_decode(bv, strlen(bv), &blen);
	if (bh == NULL || b == NULL || blen == 0) {
		set_result(out, DKIM_RESULT_PERMERROR, "bad base64 in b= or bh=");
		goto done;
	}

	/* key lookup */
	{
		enum dkim_result kr = dkim_key_lookup(dns, s, d, ed, &key, &out->key_bits, &out->testing,
						      &strict, &kproblem);
		if (kr == DKIM_RESULT_TEMPERROR) {
			set_result(out, DKIM_RESULT_TEMPERROR, kproblem);
			goto done;
		}
		if (sha1) {
			set_result(out, DKIM_RESULT_PERMERROR, "rsa-sha1 is not accepted (RFC 8301)");
			goto done;
		}
		if (kr != DKIM_RESULT_PASS) {
			set_result(out, DKIM_RESULT_PERMERROR, kproblem);
			goto done;
		}
	}
	if (strict && !arc) {
		const char *at = strrchr(out->identity, '@');
		if (at == NULL || strcasecmp(at + 1, d) != 0) {
			set_result(out, DKIM_RESULT_PERMERROR, "key t=s requires i= domain equal to d=");
			goto done;
		}
	}

	/* body hash */
	unsigned char digest[32];
	unsigned long long canon_len = 0;
	if (!body_hash(m->body, m->body_len, brelaxed, l != NULL ? lval : ~0ULL, digest, &canon_len)) {
		set_result(out, DKIM_RESULT_PERMERROR, "body hash failed");
		goto done;
	}
	if (l != NULL && lval > canon_len) {
		set_result(out, DKIM_RESULT_FAIL, "l= larger than the body");
		goto done;
	}
	if (bhlen != 32 || memcmp(digest, bh, 32) != 0) {
		set_result(out, DKIM_RESULT_FAIL, "body hash did not verify");
		goto done;
	}
	if (dkim_header_hash_input(m, sig_index, h, hrelaxed, &hdata) < 0) {
		set_result(out, DKIM_RESULT_PERMERROR, "header too large");
		goto done;
	}
	if (!dkim_crypto_verify(key, ed, hdata.data, hdata.len, b, blen)) {
		set_result(out, DKIM_RESULT_FAIL, "signature did not verify");
		goto done;
	}
	set_result(out, DKIM_RESULT_PASS, NULL);
done:
	EVP_PKEY_free(key);
	free(bh);
	free(b);
	buf_deinit(&hdata);
	dkim_taglist_free(&tl);
}

static void sig_result_free(struct dkim_sig_result *s)
{
	free(s->domain);
	free(s->selector);
	free(s->identity);
	free(s->algorithm);
	free(s->b_prefix);
	free(s->problem);
}

void dkim_verify_result_free(struct dkim_verify_result *r)
{
	for (size_t i = 0; i < r->count; i++)
		sig_result_free(&r->sigs[i]);
	free(r->sigs);
	memset(r, 0, sizeof(*r));
}

static int result_rank(enum dkim_result r)
{
	switch (r) {
	case DKIM_RESULT_PASS: return 6;
	case DKIM_RESULT_FAIL: return 5;
	case DKIM_RESULT_TEMPERROR: return 4;
	case DKIM_RESULT_PERMERROR: return 3;
	case DKIM_RESULT_POLICY: return 2;
	case DKIM_RESULT_NEUTRAL: return 1;
	case DKIM_RESULT_NONE: return 0;
	}
	return 0;
}

int dkim_verify(const char *msg, size_t len, const struct authdns *dns,
		const struct dkim_verify_options *opts, struct dkim_verify_result *out)
{
	memset(out, 0, sizeof(*out));
	struct dkim_msg m;
	const char *err;
	if (dkim_msg_parse(msg, len, &m, &err) < 0) {
		dkim_msg_free(&m);
		out->result = DKIM_RESULT_PERMERROR;
		return -1;
	}
	size_t nsig = 0;
	for (size_t i = 0; i < m.nhdrs; i++)
		if (name_eq_n(m.hdrs[i].name, m.hdrs[i].name_len, "DKIM-Signature", 14))
			nsig++;
	if (nsig > 0)
		out->sigs = xcalloc(nsig, sizeof(*out->sigs));
	for (size_t i = 0; i < m.nhdrs; i++) {
		if (!name_eq_n(m.hdrs[i].name, m.hdrs[i].name_len, "DKIM-Signature", 14))
			continue;
		struct dkim_sig_result *r = &out->sigs[out->count++];
		if (out->count > DKIM_MAX_SIGNATURES) {
			memset(r, 0, sizeof(*r));
			set_result(r, DKIM_RESULT_PERMERROR, "too many signatures");
		} else {
			dkim_verify_one(&m, i, false, dns, opts, r);
		}
		if (result_rank(r->result) > result_rank(out->result))
			out->result = r->result;
	}
	dkim_msg_free(&m);
	return 1;
}

/* ---- signing ---- */

static const char *const default_sign_headers =
	"from:to:cc:subject:date:message-id:reply-to:in-reply-to:references:mime-version:"
	"content-type:content-transfer-encoding:list-id:list-unsubscribe:sender";

EVP_PKEY *dkim_private_key_load(const char *pem, bool *ed_r, const char **error_r)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (key == NULL) {
		*error_r = "cannot read the private key";
		return NULL;
	}
	int id = EVP_PKEY_get_base_id(key);
	if (id == EVP_PKEY_ED25519) {
		*ed_r = true;
	} else if (id == EVP_PKEY_RSA && EVP_PKEY_get_bits(key) >= DKIM_MIN_RSA_BITS) {
		*ed_r = false;
	} else {
		EVP_PKEY_free(key);
		*error_r = "key must be RSA >= 1024 bits or Ed25519";
		return NULL;
	}
	return key;
}

int dkim_crypto_sign(EVP_PKEY *key, bool ed, const void *data, size_t len, char **b64_r)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[2048];
	size_t siglen = sizeof(sig);
	bool ok;
	if (ed) {
		unsigned char h[32];
		ok = sha256(data, len, h) && EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1 &&
		     EVP_DigestSign(ctx, sig, &siglen, h, 32) == 1;
	} else {
		ok = EVP_PKEY_get_size(key) <= (int)sizeof(sig) &&
		     EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
		     EVP_DigestSign(ctx, sig, &siglen, data, len) == 1;
	}
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	*b64_r = dkim_base64_encode(sig, siglen);
	return 1;
}

void dkim_append_folded(struct buf *b, const char *b64)
{
	/* 70 characters after "b=", then lines of 72 (the layout common signers
	   use; it matters because a later ARC-Seal covers this text) */
	size_t n = strlen(b64), pos = 0, chunk = 70;
	while (pos < n) {
		if (pos > 0)
			buf_append_str(b, "\r\n\t");
		size_t take = n - pos < chunk ? n - pos : chunk;
		buf_append(b, b64 + pos, take);
		pos += take;
		chunk = 72;
	}
}

int dkim_sign_field(const struct dkim_msg *m, EVP_PKEY *key, bool ed, const struct dkim_sign_options *opts,
		    unsigned arc_instance, char **header_r, const char **error_r)
{
	*header_r = NULL;
	if (opts->domain == NULL || opts->selector == NULL || !domain_syntax_ok(opts->domain) ||
	    !domain_syntax_ok(opts->selector)) {
		*error_r = "missing or bad domain or selector";
		return -1;
	}
	/* h=: names present in the message (as many times as present), plus an
	   extra From to oversign */
	struct buf hl;
	buf_init(&hl, 64 * 1024);
	const char *list = opts->headers != NULL ? opts->headers : default_sign_headers;
	bool oversign = opts->headers == NULL || opts->oversign_from;
	char *lc = xstrdup(list), *save = NULL;
	for (char *t = strtok_r(lc, ":", &save); t != NULL; t = strtok_r(NULL, ":", &save)) {
		while (is_fws(*t))
			t++;
		size_t tl = strlen(t);
		while (tl > 0 && is_fws(t[tl - 1]))
			t[--tl] = '\0';
		if (tl == 0)
			continue;
		size_t n = 0;
		for (size_t k = 0; k < m->nhdrs; k++)
			if (name_eq_n(m->hdrs[k].name, m->hdrs[k].name_len, t, tl))
				n++;
		if (strcasecmp(t, "from") == 0 && oversign)
			n++;
		for (size_t k = 0; k < n; k++)
			buf_printf(&hl, "%s%s", hl.len > 0 ? ":" : "", t);
	}
	free(lc);
	int ret = -1;
	char *b64 = NULL, *bhv = NULL;
	struct buf prefix, suffix, hdata, field;
	buf_init(&prefix, 64 * 1024);
	buf_init(&suffix, 128 * 1024);
	buf_init(&hdata, DKIM_MAX_CANON);
	buf_init(&field, 256 * 1024);
	unsigned char digest[32];
	unsigned long long canon_len;
	if (!body_hash(m->body, m->body_len, true, ~0ULL, digest, &canon_len)) {
		*error_r = "body too large";
		goto out;
	}
	bhv = dkim_base64_encode(digest, 32);
	long long now = (long long)(opts->now != 0 ? opts->now : time(NULL));
	const char *alg = ed ? "ed25519-sha256" : "rsa-sha256";
	if (arc_instance > 0) {
		/* ARC-Message-Signature, tags in alphabetical order */
		buf_printf(&prefix, "ARC-Message-Signature: a=%s; b=", alg);
		buf_printf(&suffix, "; bh=%s; c=relaxed/relaxed; d=%s; h=%s; i=%u; s=%s; t=%lld",
			   bhv, opts->domain, hl.data, arc_instance, opts->selector, now);
	} else {
		buf_printf(&prefix, "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed; d=%s; s=%s;\r\n\tt=%lld;", alg,
			   opts->domain, opts->selector, now);
		if (opts->expire_seconds > 0)
			buf_printf(&prefix, " x=%lld;", now + (long long)opts->expire_seconds);
		if (opts->identity != NULL)
			buf_printf(&prefix, " i=%s;", opts->identity);
		buf_printf(&prefix, "\r\n\th=%s;\r\n\tbh=%s;\r\n\tb=", hl.data, bhv);
	}
	/* hash input: selected headers + this field with an empty b= */
	buf_printf(&field, "%s%s\r\n", prefix.data, suffix.data);
	struct dkim_msg m2 = *m;
	m2.hdrs = xcalloc(m->nhdrs + 1, sizeof(*m2.hdrs));
	if (m->nhdrs > 0)
		memcpy(m2.hdrs, m->hdrs, m->nhdrs * sizeof(*m->hdrs));
	m2.hdrs[m->nhdrs] = (struct dkim_header){
		.name = field.data, .name_len = (size_t)(strchr(field.data, ':') - field.data),
		.raw = field.data, .raw_len = field.len,
	};
	m2.nhdrs = m->nhdrs + 1;
	int hrc = dkim_header_hash_input(&m2, m->nhdrs, hl.data, true, &hdata);
	free(m2.hdrs);
	if (hrc < 0) {
		*error_r = "header too large";
		goto out;
	}
	if (dkim_crypto_sign(key, ed, hdata.data, hdata.len, &b64) < 0) {
		*error_r = "signing failed";
		goto out;
	}
	buf_reset(&field);
	buf_append(&field, prefix.data, prefix.len);
	if (arc_instance > 0)
		buf_append_str(&field, b64); /* unfolded: the layout the ARC test suite standardizes */
	else
		dkim_append_folded(&field, b64);
	buf_append(&field, suffix.data, suffix.len);
	if (buf_append_str(&field, "\r\n") < 0) {
		*error_r = "signature field too large";
		goto out;
	}
	*header_r = steal(&field);
	ret = 1;
out:
	free(b64);
	free(bhv);
	buf_deinit(&field);
	buf_deinit(&hdata);
	buf_deinit(&prefix);
	buf_deinit(&suffix);
	buf_deinit(&hl);
	return ret;
}

int dkim_sign(const char *msg, size_t len, const struct dkim_sign_options *opts, char **header_r,
	      const char **error_r)
{
	*header_r = NULL;
	if (opts->key_pem == NULL) {
		*error_r = "no key";
		return -1;
	}
	bool ed;
	EVP_PKEY *key = dkim_private_key_load(opts->key_pem, &ed, error_r);
	if (key == NULL)
		return -1;
	struct dkim_msg m;
	int ret = dkim_msg_parse(msg, len, &m, error_r);
	if (ret > 0)
		ret = dkim_sign_field(&m, key, ed, opts, 0, header_r, error_r);
	dkim_msg_free(&m);
	EVP_PKEY_free(key);
	return ret;
}

int dkim_keygen(const char *type, char **private_pem_r, char **dns_txt_r, const char **error_r)
{
	bool ed = strcmp(type, "ed25519") == 0;
	if (!ed && strcmp(type, "rsa") != 0) {
		*error_r = "key type must be rsa or ed25519";
		return -1;
	}
	EVP_PKEY *key = ed ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519") : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	if (key == NULL) {
		*error_r = "key generation failed";
		return -1;
	}
	BIO *bio = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
	char *p;
	long n = BIO_get_mem_data(bio, &p);
	*private_pem_r = xstrndup(p, (size_t)n);
	BIO_free(bio);
	unsigned char *der = NULL;
	size_t dlen = 0;
	if (ed) {
		der = xmalloc(32);
		dlen = 32;
		EVP_PKEY_get_raw_public_key(key, der, &dlen);
	} else {
		int l = i2d_PUBKEY(key, &der);
		dlen = l > 0 ? (size_t)l : 0;
	}
	char *b64 = dkim_base64_encode(der, dlen);
	*dns_txt_r = xasprintf("v=DKIM1; k=%s; p=%s", ed ? "ed25519" : "rsa", b64);
	free(b64);
	if (ed)
		free(der);
	else
		OPENSSL_free(der);
	EVP_PKEY_free(key);
	return 1;
}
