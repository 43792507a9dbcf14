/* arc: RFC 8617 chain validation and sealing, on top of dkim.c's pieces. */
#include "lib-auth/arc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "lib/xalloc.h"

enum { ARC_AAR = 0, ARC_AMS = 1, ARC_AS = 2 };

static const char *const arc_names[3] = {
	"ARC-Authentication-Results", "ARC-Message-Signature", "ARC-Seal",
};

struct arc_sets {
	size_t idx[ARC_MAX_INSTANCES + 1][3]; /* header index + 1; 0 = missing */
	unsigned n;
};

const char *arc_result_name(enum arc_result r)
{
	switch (r) {
	case ARC_RESULT_NONE: return "none";
	case ARC_RESULT_PASS: return "pass";
	case ARC_RESULT_FAIL: return "fail";
	}
	return "?";
}

void arc_verify_result_free(struct arc_verify_result *r)
{
	free(r->problem);
	free(r->domain);
	memset(r, 0, sizeof(*r));
}

static int arc_type(const struct dkim_header *h)
{
	for (int t = 0; t < 3; t++) {
		size_t l = strlen(arc_names[t]);
		if (h->name_len == l && strncasecmp(h->name, arc_names[t], l) == 0)
			return t;
	}
	return -1;
}

static const char *field_value(const struct dkim_header *h, size_t *len_r)
{
	const char *colon = memchr(h->raw, ':', h->raw_len);
	size_t off = (size_t)(colon - h->raw) + 1;
	*len_r = h->raw_len - off;
	return h->raw + off;
}

/* 1..50 from a decimal string, else 0 */
static unsigned parse_instance(const char *s, size_t len)
{
	if (len == 0 || len > 2)
		return 0;
	unsigned v = 0;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return 0;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	return v >= 1 && v <= ARC_MAX_INSTANCES ? v : 0;
}

/* Instance of one ARC header field; 0 if missing or invalid. */
static unsigned header_instance(const struct dkim_header *h, int type)
{
	size_t len;
	const char *v = field_value(h, &len);
	if (type == ARC_AAR) {
		/* "i=N;" first */
		size_t i = 0;
		while (i < len && isspace((unsigned char)v[i]))
			i++;
		if (i + 2 > len || v[i] != 'i')
			return 0;
		i++;
		while (i < len && isspace((unsigned char)v[i]))
			i++;
		if (i >= len || v[i] != '=')
			return 0;
		i++;
		while (i < len && isspace((unsigned char)v[i]))
			i++;
		size_t s = i;
		while (i < len && isdigit((unsigned char)v[i]))
			i++;
		size_t e = i;
		while (i < len && isspace((unsigned char)v[i]))
			i++;
		if (i >= len || v[i] != ';')
			return 0;
		return parse_instance(v + s, e - s);
	}
	struct dkim_taglist tl;
	const char *err;
	unsigned inst = 0;
	if (dkim_taglist_parse(v, len, &tl, &err) == 1) {
		const char *iv = dkim_taglist_get(&tl, "i");
		if (iv != NULL)
			inst = parse_instance(iv, strlen(iv));
	}
	dkim_taglist_free(&tl);
	return inst;
}

/* Collect the sets. 1 ok (n may be 0), -1 malformed with *problem. */
static int collect(const struct dkim_msg *m, struct arc_sets *s, const char **problem)
{
	memset(s, 0, sizeof(*s));
	bool any = false;
	unsigned maxi = 0;
	for (size_t k = 0; k < m->nhdrs; k++) {
		int t = arc_type(&m->hdrs[k]);
		if (t < 0)
			continue;
		any = true;
		unsigned i = header_instance(&m->hdrs[k], t);
		if (i == 0) {
			*problem = "ARC header field with a missing or invalid i=";
			return -1;
		}
		if (s->idx[i][t] != 0) {
			*problem = "duplicate ARC header field for one instance";
			return -1;
		}
		s->idx[i][t] = k + 1;
		if (i > maxi)
			maxi = i;
	}
	if (!any)
		return 1;
	for (unsigned i = 1; i <= maxi; i++) {
		for (int t = 0; t < 3; t++) {
			if (s->idx[i][t] == 0) {
				*problem = "incomplete ARC set";
				return -1;
			}
		}
	}
	s->n = maxi;
	return 1;
}

static int parse_alg(const char *a, bool *ed)
{
	if (a == NULL)
		return -1;
	if (strcmp(a, "rsa-sha256") == 0)
		*ed = false;
	else if (strcmp(a, "ed25519-sha256") == 0)
		*ed = true;
	else
		return -1;
	return 0;
}

/* Seal hash input for instance i: sets 1..i, AS(i) with an empty b=. */
static int seal_input(const struct dkim_msg *m, const struct arc_sets *s, unsigned upto, struct buf *out)
{
	for (unsigned j = 1; j <= upto; j++) {
		for (int t = 0; t < 3; t++) {
			const struct dkim_header *h = &m->hdrs[s->idx[j][t] - 1];
			if (t == ARC_AS && j == upto) {
				size_t sl;
				char *stripped = dkim_strip_b_value(h->raw, h->raw_len, &sl);
				struct buf tmp;
				buf_init(&tmp, 1 << 20);
				int rc = dkim_canon_header(&tmp, stripped, sl, true);
				free(stripped);
				if (rc == 0 && tmp.len >= 2)
					rc = buf_append(out, tmp.data, tmp.len - 2);
				buf_deinit(&tmp);
				if (rc < 0)
					return -1;
			} else if (dkim_canon_header(out, h->raw, h->raw_len, true) < 0) {
				return -1;
			}
		}
	}
	return 0;
}

static void fail_at(struct arc_verify_result *out, unsigned inst, const char *problem)
{
	out->cv = ARC_RESULT_FAIL;
	out->failed_instance = inst;
	free(out->problem);
	out->problem = xstrdup(problem);
}

/* Verify the ARC-Seal of instance i. */
static bool verify_seal(const struct dkim_msg *m, const struct arc_sets *s, unsigned i, const struct authdns *dns,
			struct arc_verify_result *out)
{
	size_t len;
	const char *v = field_value(&m->hdrs[s->idx[i][ARC_AS] - 1], &len);
	struct dkim_taglist tl;
	const char *err;
	bool ok = false;
	EVP_PKEY *key = NULL;
	unsigned char *sig = NULL;
	struct buf data;
	buf_init(&data, 64u * 1024 * 1024);
	if (dkim_taglist_parse(v, len, &tl, &err) < 0) {
		fail_at(out, i, "ARC-Seal syntax error");
		goto out;
	}
	const char *a = dkim_taglist_get(&tl, "a"), *b = dkim_taglist_get(&tl, "b");
	const char *cv = dkim_taglist_get(&tl, "cv"), *d = dkim_taglist_get(&tl, "d");
	const char *sel = dkim_taglist_get(&tl, "s");
	bool ed;
	if (b == NULL || cv == NULL || d == NULL || sel == NULL || parse_alg(a, &ed) < 0) {
		fail_at(out, i, "ARC-Seal missing tag or bad algorithm");
		goto out;
	}
	if (dkim_taglist_get(&tl, "h") != NULL) {
		fail_at(out, i, "ARC-Seal must not have h=");
		goto out;
	}
	if (strcasecmp(cv, i == 1 ? "none" : "pass") != 0) {
		fail_at(out, i, "ARC-Seal cv= does not match its instance");
		goto out;
	}
	if (i == s->n && out->domain == NULL)
		out->domain = xstrdup(d);
	const char *problem;
	bool testing, strict;
	unsigned bits;
	enum dkim_result kr = dkim_key_lookup(dns, sel, d, ed, &key, &bits, &testing, &strict, &problem);
	if (kr != DKIM_RESULT_PASS) {
		fail_at(out, i, problem);
		out->temporary = kr == DKIM_RESULT_TEMPERROR;
		goto out;
	}
	size_t siglen;
	sig = dkim_base64_decode(b, strlen(b), &siglen);
	if (sig == NULL || siglen == 0 || seal_input(m, s, i, &data) < 0) {
		fail_at(out, i, "ARC-Seal b= malformed");
		goto out;
	}
	if (!dkim_crypto_verify(key, ed, data.data, data.len, sig, siglen)) {
		fail_at(out, i, "ARC-Seal signature did not verify");
		goto out;
	}
	ok = true;
out:
	free(sig);
	EVP_PKEY_free(key);
	buf_deinit(&data);
	dkim_taglist_free(&tl);
	return ok;
}

enum arc_result arc_verify(const char *msg, size_t len, const struct authdns *dns,
			   const struct arc_verify_options *opts, struct arc_verify_result *out)
{
	memset(out, 0, sizeof(*out));
	struct dkim_msg m;
	const char *problem;
	if (dkim_msg_parse(msg, len, &m, &problem) < 0) {
		/* an unparsable message with ARC fields cannot be validated */
		fail_at(out, 0, problem);
		dkim_msg_free(&m);
		return out->cv;
	}
	struct arc_sets s;
	if (collect(&m, &s, &problem) < 0) {
		fail_at(out, 0, problem);
		goto done;
	}
	out->instances = s.n;
	if (s.n == 0) {
		out->cv = ARC_RESULT_NONE;
		goto done;
	}
	/* the latest seal already says fail: the chain is broken */
	{
		size_t vl;
		const char *v = field_value(&m.hdrs[s.idx[s.n][ARC_AS] - 1], &vl);
		struct dkim_taglist tl;
		const char *err;
		if (dkim_taglist_parse(v, vl, &tl, &err) == 1) {
			const char *cv = dkim_taglist_get(&tl, "cv");
			if (cv != NULL && strcasecmp(cv, "fail") == 0) {
				dkim_taglist_free(&tl);
				fail_at(out, s.n, "chain already failed (cv=fail)");
				goto done;
			}
		}
		dkim_taglist_free(&tl);
	}
	/* the latest AMS must verify, and must not cover ARC-Seal fields */
	{
		size_t vl;
		const char *v = field_value(&m.hdrs[s.idx[s.n][ARC_AMS] - 1], &vl);
		struct dkim_taglist tl;
		const char *err;
		bool covers_seal = false;
		if (dkim_taglist_parse(v, vl, &tl, &err) == 1) {
			const char *h = dkim_taglist_get(&tl, "h");
			char *hc = xstrdup(h != NULL ? h : ""), *save = NULL;
			for (char *t = strtok_r(hc, ":", &save); t != NULL; t = strtok_r(NULL, ":", &save)) {
				while (isspace((unsigned char)*t))
					t++;
				size_t tl2 = strlen(t);
				while (tl2 > 0 && isspace((unsigned char)t[tl2 - 1]))
					t[--tl2] = '\0';
				if (strcasecmp(t, "arc-seal") == 0)
					covers_seal = true;
			}
			free(hc);
		}
		dkim_taglist_free(&tl);
		if (covers_seal) {
			fail_at(out, s.n, "ARC-Message-Signature h= includes ARC-Seal");
			goto done;
		}
	}
	struct dkim_verify_options dopts = { .now = opts != NULL ? opts->now : 0 };
	struct dkim_sig_result r;
	dkim_verify_one(&m, s.idx[s.n][ARC_AMS] - 1, true, dns, &dopts, &r);
	if (r.result != DKIM_RESULT_PASS) {
		char *p = xasprintf("ARC-Message-Signature i=%u: %s", s.n, r.problem ? r.problem : "failed");
		fail_at(out, s.n, p);
		free(p);
		out->temporary = r.result == DKIM_RESULT_TEMPERROR;
	}
	free(r.domain);
	free(r.selector);
	free(r.identity);
	free(r.algorithm);
	free(r.b_prefix);
	free(r.problem);
	if (out->cv == ARC_RESULT_FAIL)
		goto done;
	for (unsigned i = s.n; i >= 1; i--)
		if (!verify_seal(&m, &s, i, dns, out))
			goto done;
	out->cv = ARC_RESULT_PASS;
done:
	dkim_msg_free(&m);
	return out->cv;
}

int arc_sign(const char *msg, size_t len, const struct arc_sign_options *opts, enum arc_result cv,
	     char **fields_r, const char **error_r)
{
	*fields_r = NULL;
	if (opts->key_pem == NULL || opts->domain == NULL || opts->selector == NULL || opts->authres == NULL) {
		*error_r = "ARC signing needs a key, domain, selector and authres";
		return -1;
	}
	bool ed;
	EVP_PKEY *key = dkim_private_key_load(opts->key_pem, &ed, error_r);
	if (key == NULL)
		return -1;
	struct dkim_msg m;
	struct arc_sets s;
	char *ams = NULL, *aar = NULL, *b64 = NULL;
	struct buf data, as;
	buf_init(&data, 64u * 1024 * 1024);
	buf_init(&as, 256 * 1024);
	int ret = -1;
	const char *problem;
	if (dkim_msg_parse(msg, len, &m, error_r) < 0)
		goto out;
	unsigned n = 0;
	int crc = collect(&m, &s, &problem);
	if (crc == 1 && s.n > 0) {
		/* the latest seal says fail: the chain is dead, add nothing (RFC 8617 5.1.2) */
		size_t vl;
		const char *v = field_value(&m.hdrs[s.idx[s.n][ARC_AS] - 1], &vl);
		struct dkim_taglist tl;
		const char *err;
		bool dead = false;
		if (dkim_taglist_parse(v, vl, &tl, &err) == 1) {
			const char *cvv = dkim_taglist_get(&tl, "cv");
			dead = cvv != NULL && strcasecmp(cvv, "fail") == 0;
		}
		dkim_taglist_free(&tl);
		if (dead) {
			ret = 0;
			goto out;
		}
	}
	if (crc < 0) {
		/* a broken chain: seal after the highest instance present, with cv=fail */
		cv = ARC_RESULT_FAIL;
		for (size_t k = 0; k < m.nhdrs; k++) {
			int t = arc_type(&m.hdrs[k]);
			unsigned i = t >= 0 ? header_instance(&m.hdrs[k], t) : 0;
			if (i > n)
				n = i;
		}
	} else {
		n = s.n;
	}
	if (n >= ARC_MAX_INSTANCES) {
		*error_r = "ARC chain already has 50 instances";
		goto out;
	}
	unsigned i = n + 1;
	const char *ar = opts->authres;
	while (*ar == ' ' || *ar == '\t')
		ar++;
	aar = xasprintf("ARC-Authentication-Results: i=%u; %s\r\n", i, ar);
	struct dkim_sign_options so = {
		.domain = opts->domain, .selector = opts->selector, .headers = opts->headers, .now = opts->now,
	};
	if (dkim_sign_field(&m, key, ed, &so, i, &ams, error_r) < 0)
		goto out;
	long long now = (long long)(opts->now != 0 ? opts->now : time(NULL));
	const char *cvs = cv == ARC_RESULT_FAIL ? "fail" : i == 1 ? "none" : "pass";
	char *suffix = xasprintf("; cv=%s; d=%s; i=%u; s=%s; t=%lld", cvs, opts->domain, i, opts->selector, now);
	/* seal input: previous sets (when the chain is intact), then the new one */
	if (cv != ARC_RESULT_FAIL && n > 0) {
		for (unsigned j = 1; j <= n; j++)
			for (int t = 0; t < 3; t++) {
				const struct dkim_header *h = &m.hdrs[s.idx[j][t] - 1];
				dkim_canon_header(&data, h->raw, h->raw_len, true);
			}
	}
	dkim_canon_header(&data, aar, strlen(aar), true);
	dkim_canon_header(&data, ams, strlen(ams), true);
	char *empty = xasprintf("ARC-Seal: a=%s; b=%s\r\n", ed ? "ed25519-sha256" : "rsa-sha256", suffix);
	struct buf tmp;
	buf_init(&tmp, 64 * 1024);
	dkim_canon_header(&tmp, empty, strlen(empty), true);
	int rc = tmp.len >= 2 ? buf_append(&data, tmp.data, tmp.len - 2) : -1;
	buf_deinit(&tmp);
	free(empty);
	if (rc < 0 || dkim_crypto_sign(key, ed, data.data, data.len, &b64) < 0) {
		free(suffix);
		*error_r = "ARC sealing failed";
		goto out;
	}
	buf_printf(&as, "ARC-Seal: a=%s; b=", ed ? "ed25519-sha256" : "rsa-sha256");
	buf_append_str(&as, b64);
	buf_printf(&as, "%s\r\n%s%s", suffix, ams, aar);
	free(suffix);
	*fields_r = buf_steal(&as);
	ret = 1;
out:
	free(ams);
	free(aar);
	free(b64);
	buf_deinit(&data);
	buf_deinit(&as);
	dkim_msg_free(&m);
	EVP_PKEY_free(key);
	return ret;
}
