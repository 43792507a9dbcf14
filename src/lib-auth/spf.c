/*
 * spf: RFC 7208 check_host(). The record is parsed completely (syntax errors
 * anywhere are permerror before any mechanism is evaluated), then the terms
 * are evaluated left to right. Macro strings are validated at parse time and
 * expanded at evaluation time.
 */
#include "lib-auth/spf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "lib/buf.h"
#include "lib/xalloc.h"

enum spf_mech {
	SPF_MECH_ALL,
	SPF_MECH_INCLUDE,
	SPF_MECH_A,
	SPF_MECH_MX,
	SPF_MECH_PTR,
	SPF_MECH_IP4,
	SPF_MECH_IP6,
	SPF_MECH_EXISTS,
};

struct spf_term {
	enum spf_mech mech;
	char qual;         /* '+', '-', '~', '?' */
	char *spec;        /* domain-spec (points into the record copy), or NULL */
	int cidr4, cidr6;  /* -1 = not given */
	uint8_t net[16];
	const char *text;  /* the whole term, for out->mechanism */
};

struct spf_record {
	char *copy;  /* record split in place */
	char *texts; /* second copy for term texts */
	struct spf_term *terms;
	size_t nterms;
	char *redirect;
	char *exp;
	bool has_all;
};

struct spf_ctx {
	const struct authdns *dns;
	struct spf_ip ip;
	const char *sender;
	const char *helo;
	struct spf_options opts;
	unsigned dns_mech;
	unsigned voids;
	char *problem;
	char *mechanism;
	unsigned queries;  /* every DNS query of this evaluation */
	char *p_domain;    /* %{p} cache: the value for this <domain> */
	char *p_value;
};

/* All queries go through here: a hard cap on the total, so %{p} in many
   macros or other tricks cannot turn one check into thousands of queries. */
static enum authdns_status spf_query(struct spf_ctx *c, authdns_lookup_fn *fn, const char *name,
				     struct authdns_answer *ans)
{
	if (++c->queries > SPF_MAX_QUERIES) {
		authdns_answer_clear(ans);
		ans->status = AUTHDNS_PERMFAIL;
		return ans->status;
	}
	return authdns_query(c->dns, fn, name, ans);
}

const char *spf_result_name(enum spf_result r)
{
	switch (r) {
	case SPF_RESULT_NONE: return "none";
	case SPF_RESULT_NEUTRAL: return "neutral";
	case SPF_RESULT_PASS: return "pass";
	case SPF_RESULT_FAIL: return "fail";
	case SPF_RESULT_SOFTFAIL: return "softfail";
	case SPF_RESULT_TEMPERROR: return "temperror";
	case SPF_RESULT_PERMERROR: return "permerror";
	}
	return "?";
}

void spf_outcome_free(struct spf_outcome *out)
{
	xfree(&out->explanation);
	xfree(&out->mechanism);
	xfree(&out->problem);
}

static void set_problem(struct spf_ctx *c, const char *msg, const char *arg)
{
	if (c->problem != NULL)
		return;
	c->problem = xasprintf("%s%s%s", msg, arg != NULL ? " " : "", arg != NULL ? arg : "");
}

/* ---- IP helpers ---- */

int spf_ip_parse(const char *s, struct spf_ip *ip_r)
{
	memset(ip_r, 0, sizeof(*ip_r));
	if (s == NULL)
		return -1;
	if (inet_pton(AF_INET, s, ip_r->addr) == 1) {
		ip_r->family = AF_INET;
		return 1;
	}
	uint8_t a6[16];
	if (inet_pton(AF_INET6, s, a6) != 1)
		return -1;
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (memcmp(a6, mapped, 12) == 0) {
		ip_r->family = AF_INET;
		memcpy(ip_r->addr, a6 + 12, 4);
		return 1;
	}
	ip_r->family = AF_INET6;
	memcpy(ip_r->addr, a6, 16);
	return 1;
}

static bool ip_match(const struct spf_ip *ip, int family, const uint8_t *net, int cidr)
{
	if (ip->family != family)
		return false;
	int bits = family == AF_INET ? 32 : 128;
	if (cidr < 0 || cidr > bits)
		cidr = bits;
	int full = cidr / 8, rem = cidr % 8;
	if (memcmp(ip->addr, net, (size_t)full) != 0)
		return false;
	if (rem == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rem));
	return (ip->addr[full] & mask) == (net[full] & mask);
}

/* ---- names ---- */

/* RFC 7208 4.3: multi-label, labels 1..63, at most 253 (trailing dot ignored). */
static bool domain_valid(const char *d)
{
	size_t len = strlen(d);
	if (len > 0 && d[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return false;
	size_t label = 0, labels = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)d[i];
		if (ch == '.') {
			if (label == 0)
				return false;
			labels++;
			label = 0;
		} else {
			if (ch == '\0')
				return false;
			if (++label > 63)
				return false;
		}
	}
	if (label == 0)
		return false;
	labels++;
	return labels >= 2;
}

/* Copy without trailing dot, for queries. */
static char *name_for_query(const char *d)
{
	size_t len = strlen(d);
	if (len > 0 && d[len - 1] == '.')
		len--;
	return xstrndup(d, len);
}

static bool name_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

/* name equals suffix or ends with "." suffix */
static bool name_under(const char *name, const char *suffix)
{
	size_t ln = strlen(name), ls = strlen(suffix);
	if (ln > 0 && name[ln - 1] == '.')
		ln--;
	if (ls > 0 && suffix[ls - 1] == '.')
		ls--;
	if (ls == 0)
		return false;
	if (ln == ls)
		return strncasecmp(name, suffix, ls) == 0;
	if (ln > ls && name[ln - ls - 1] == '.')
		return strncasecmp(name + ln - ls, suffix, ls) == 0;
	return false;
}

/* ---- macros ---- */

static bool is_delim(char ch)
{
	return ch != '\0' && strchr(".-+,/_=", ch) != NULL;
}

static bool macro_letter_ok(char ch, bool exp)
{
	ch = (char)tolower((unsigned char)ch);
	if (strchr("slodiphv", ch) != NULL)
		return ch != '\0';
	if (exp && (ch == 'c' || ch == 'r' || ch == 't'))
		return true;
	return false;
}

/* Syntax check of a macro-string (exp: explain-string, which also allows SP). */
static bool macro_syntax_ok(const char *s, bool exp)
{
	for (const char *p = s; *p != '\0'; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '%') {
			p++;
			if (*p == '%' || *p == '_' || *p == '-')
				continue;
			if (*p != '{')
				return false;
			p++;
			if (!macro_letter_ok(*p, exp))
				return false;
			p++;
			while (isdigit((unsigned char)*p))
				p++;
			if (*p == 'r' || *p == 'R')
				p++;
			while (is_delim(*p))
				p++;
			if (*p != '}')
				return false;
		} else if (ch == ' ') {
			if (!exp)
				return false;
		} else if (ch < 0x21 || ch > 0x7e) {
			return false;
		}
	}
	return true;
}

static void ip_dotted(const struct spf_ip *ip, char *out, size_t size, bool nibbles)
{
	if (ip->family == AF_INET) {
		snprintf(out, size, "%u.%u.%u.%u", ip->addr[0], ip->addr[1], ip->addr[2], ip->addr[3]);
		return;
	}
	if (!nibbles) {
		inet_ntop(AF_INET6, ip->addr, out, (socklen_t)size);
		return;
	}
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (int i = 0; i < 16 && o + 4 < size; i++) {
		out[o++] = hex[ip->addr[i] >> 4];
		out[o++] = '.';
		out[o++] = hex[ip->addr[i] & 15];
		if (i < 15)
			out[o++] = '.';
	}
	out[o] = '\0';
}

struct macro_env {
	const struct spf_ip *ip;
	const char *sender;
	const char *domain;
	const char *helo;
	const struct spf_options *opts;
	struct spf_ctx *ctx;  /* for %{p} lookups; may be NULL (then "unknown") */
};

static char *validated_ptr(struct spf_ctx *c, const char *domain);

/* Value of one macro letter (lowercase), heap. */
static char *macro_value(const struct macro_env *e, char letter)
{
	char tmp[128];
	const char *at;
	switch (letter) {
	case 's':
		return xstrdup(e->sender);
	case 'l':
		at = strrchr(e->sender, '@');
		if (at == NULL || at == e->sender)
			return xstrdup("postmaster");
		return xstrndup(e->sender, (size_t)(at - e->sender));
	case 'o':
		at = strrchr(e->sender, '@');
		return xstrdup(at != NULL ? at + 1 : e->sender);
	case 'd':
		return xstrdup(e->domain);
	case 'i':
		ip_dotted(e->ip, tmp, sizeof(tmp), true);
		return xstrdup(tmp);
	case 'c':
		ip_dotted(e->ip, tmp, sizeof(tmp), false);
		return xstrdup(tmp);
	case 'v':
		return xstrdup(e->ip->family == AF_INET ? "in-addr" : "ip6");
	case 'h':
		return xstrdup(e->helo != NULL ? e->helo : "");
	case 'r':
		return xstrdup(e->opts != NULL && e->opts->receiver != NULL ? e->opts->receiver : "unknown");
	case 't':
		snprintf(tmp, sizeof(tmp), "%lld",
			 (long long)(e->opts != NULL && e->opts->now != 0 ? e->opts->now : time(NULL)));
		return xstrdup(tmp);
	case 'p':
		if (e->ctx == NULL)
			return xstrdup("unknown");
		return validated_ptr(e->ctx, e->domain);
	}
	return xstrdup("");
}

static int macro_expand_env(const char *s, bool exp, const struct macro_env *e, char **out_r)
{
	struct buf b;
	buf_init(&b, SPF_MAX_EXPAND);
	*out_r = NULL;
	if (!macro_syntax_ok(s, exp))
		goto fail;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p != '%') {
			if (buf_append_c(&b, *p) < 0)
				goto fail;
			continue;
		}
		p++;
		if (*p == '%' || *p == '_' || *p == '-') {
			const char *lit = *p == '%' ? "%" : *p == '_' ? " " : "%20";
			if (buf_append_str(&b, lit) < 0)
				goto fail;
			continue;
		}
		p++; /* '{' */
		char letter = *p++;
		bool upper = isupper((unsigned char)letter) != 0;
		letter = (char)tolower((unsigned char)letter);
		unsigned long keep = 0;
		bool have_digits = false;
		while (isdigit((unsigned char)*p)) {
			have_digits = true;
			if (keep < 1000)
				keep = keep * 10 + (unsigned long)(*p - '0');
			p++;
		}
		if (have_digits && keep == 0)
			goto fail;
		bool reverse = false;
		if (*p == 'r' || *p == 'R') {
			reverse = true;
			p++;
		}
		char delims[8] = "";
		size_t nd = 0;
		while (is_delim(*p)) {
			if (nd < sizeof(delims) - 1 && strchr(delims, *p) == NULL)
				delims[nd++] = *p;
			p++;
		}
		delims[nd] = '\0';
		if (nd == 0)
			delims[0] = '.', delims[1] = '\0';
		/* *p == '}' (checked by macro_syntax_ok) */
		char *val = macro_value(e, letter);
		/* split into parts */
		size_t vlen = strlen(val);
		size_t nparts = 1;
		for (size_t i = 0; i < vlen; i++)
			if (strchr(delims, val[i]) != NULL)
				nparts++;
		const char **parts = xcalloc(nparts, sizeof(*parts));
		size_t *plen = xcalloc(nparts, sizeof(*plen));
		size_t k = 0, start = 0;
		for (size_t i = 0; i <= vlen; i++) {
			if (i == vlen || strchr(delims, val[i]) != NULL) {
				parts[k] = val + start;
				plen[k] = i - start;
				k++;
				start = i + 1;
			}
		}
		if (reverse) {
			for (size_t i = 0; i < nparts / 2; i++) {
				const char *tp = parts[i];
				size_t tl = plen[i];
				parts[i] = parts[nparts - 1 - i];
				plen[i] = plen[nparts - 1 - i];
				parts[nparts - 1 - i] = tp;
				plen[nparts - 1 - i] = tl;
			}
		}
		size_t first = 0;
		if (have_digits && keep < nparts)
			first = nparts - keep;
		struct buf v;
		buf_init(&v, SPF_MAX_EXPAND);
		int rc = 0;
		for (size_t i = first; i < nparts && rc == 0; i++) {
			if (i > first)
				rc = buf_append_c(&v, '.');
			if (rc == 0)
				rc = buf_append(&v, parts[i], plen[i]);
		}
		free(parts);
		free(plen);
		free(val);
		if (rc == 0 && upper) {
			for (size_t i = 0; i < v.len && rc == 0; i++) {
				unsigned char ch = (unsigned char)v.data[i];
				if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~')
					rc = buf_append_c(&b, (char)ch);
				else
					rc = buf_printf(&b, "%%%02X", ch);
			}
		} else if (rc == 0) {
			rc = buf_append(&b, v.data, v.len);
		}
		buf_deinit(&v);
		if (rc < 0)
			goto fail;
	}
	*out_r = buf_steal(&b);
	buf_deinit(&b);
	return 1;
fail:
	buf_deinit(&b);
	return -1;
}

int spf_macro_expand(const char *s, bool exp, const struct spf_ip *ip, const char *sender,
		     const char *domain, const char *helo, const struct spf_options *opts,
		     char **out_r)
{
	struct macro_env e = {
		.ip = ip, .sender = sender, .domain = domain, .helo = helo, .opts = opts, .ctx = NULL,
	};
	return macro_expand_env(s, exp, &e, out_r);
}

/* RFC 7208 7.3: an expanded domain over 253 characters loses left labels. */
static void truncate_domain(char *d)
{
	size_t len = strlen(d);
	char *p = d;
	while (len > 253) {
		char *dot = strchr(p, '.');
		if (dot == NULL)
			break;
		len -= (size_t)(dot + 1 - p);
		p = dot + 1;
	}
	if (p != d)
		memmove(d, p, strlen(p) + 1);
}

/* ---- record parsing ---- */

static void record_free(struct spf_record *r)
{
	free(r->copy);
	free(r->texts);
	free(r->terms);
	memset(r, 0, sizeof(*r));
}

static bool is_alnum_str(const char *s, size_t n, bool *has_alpha)
{
	*has_alpha = false;
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char)s[i]))
			return false;
		if (isalpha((unsigned char)s[i]))
			*has_alpha = true;
	}
	return true;
}

static bool toplabel_ok(const char *s, size_t n)
{
	if (n == 0)
		return false;
	bool alpha;
	if (is_alnum_str(s, n, &alpha))
		return alpha;
	/* 1*alphanum "-" *( alphanum / "-" ) alphanum */
	if (!isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-')
			return false;
	return true;
}

/* domain-spec = macro-string domain-end */
static bool domain_spec_ok(const char *s)
{
	if (*s == '\0' || !macro_syntax_ok(s, false))
		return false;
	size_t len = strlen(s);
	/* ends with a macro-expand? */
	if (s[len - 1] == '}')
		return true;
	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len > 0 && s[len - 1] == '}')
		return true;
	/* "." toplabel */
	size_t end = len, startl = len;
	while (startl > 0 && s[startl - 1] != '.' && s[startl - 1] != '}')
		startl--;
	if (startl == 0 || s[startl - 1] != '.')
		return false;
	/* a '%' inside the toplabel would be a literal escape: reject */
	for (size_t i = startl; i < end; i++)
		if (s[i] == '%')
			return false;
	return toplabel_ok(s + startl, end - startl);
}

/* cidr: "0" / %x31-39 0*1DIGIT (ip4) or up to 3 digits (ip6); no leading zeros */
static int parse_cidr(const char *s, size_t n, int max)
{
	if (n == 0 || n > 3)
		return -1;
	if (s[0] == '0' && n > 1)
		return -1;
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v <= max ? v : -1;
}

/* strict dotted quad: no leading zeros */
static bool parse_ip4(const char *s, uint8_t *out)
{
	int parts = 0;
	const char *p = s;
	while (parts < 4) {
		if (!isdigit((unsigned char)*p))
			return false;
		const char *q = p;
		int v = 0;
		while (isdigit((unsigned char)*q) && q - p < 4)
			v = v * 10 + (*q++ - '0');
		if (q - p > 3 || v > 255 || (q - p > 1 && *p == '0'))
			return false;
		out[parts++] = (uint8_t)v;
		p = q;
		if (parts < 4) {
			if (*p != '.')
				return false;
			p++;
		}
	}
	return *p == '\0';
}

static size_t trailing_digits(const char *s, size_t len)
{
	size_t n = 0;
	while (n < len && s[len - 1 - n] >= '0' && s[len - 1 - n] <= '9')
		n++;
	return n;
}

/* Strip a dual-cidr-length suffix ("/N", "//M", "/N//M") from arg; a '/'
   followed by anything else belongs to the domain-spec. -1 if malformed. */
static int split_dual_cidr(char *arg, struct spf_term *t)
{
	size_t len = strlen(arg);
	size_t d = trailing_digits(arg, len);
	if (d > 0 && len >= d + 2 && arg[len - d - 1] == '/' && arg[len - d - 2] == '/') {
		t->cidr6 = parse_cidr(arg + len - d, d, 128);
		if (t->cidr6 < 0)
			return -1;
		len -= d + 2;
		arg[len] = '\0';
		d = trailing_digits(arg, len);
	}
	if (d > 0 && len >= d + 1 && arg[len - d - 1] == '/') {
		t->cidr4 = parse_cidr(arg + len - d, d, 32);
		if (t->cidr4 < 0)
			return -1;
		arg[len - d - 1] = '\0';
	}
	return 0;
}

static bool modifier_name(const char *s, size_t *namelen_r)
{
	size_t i = 0;
	if (!isalpha((unsigned char)s[0]))
		return false;
	while (isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '_' || s[i] == '.')
		i++;
	if (s[i] != '=')
		return false;
	*namelen_r = i;
	return true;
}

/* Parse a record already known to start with "v=spf1". -1 with error_r. */
static int record_parse(const char *text, size_t len, struct spf_record *r, const char **error_r)
{
	memset(r, 0, sizeof(*r));
	if (len > AUTHDNS_MAX_TXT) {
		*error_r = "record too long";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)text[i];
		if (ch < 0x20 || ch > 0x7e) {
			*error_r = "invalid character in record";
			return -1;
		}
	}
	r->copy = xstrndup(text, len);
	r->texts = xstrndup(text, len);
	r->terms = xcalloc(SPF_MAX_TERMS, sizeof(*r->terms));
	char *p = r->copy + 6; /* after v=spf1 */
	while (*p != '\0') {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		char *term = p;
		while (*p != '\0' && *p != ' ')
			p++;
		r->texts[p - r->copy] = '\0';
		if (*p == ' ')
			*p++ = '\0';
		const char *termtext = r->texts + (term - r->copy);
		size_t nlen;
		if (modifier_name(term, &nlen)) {
			char *val = term + nlen + 1;
			if (nlen == 8 && strncasecmp(term, "redirect", 8) == 0) {
				if (r->redirect != NULL || !domain_spec_ok(val)) {
					*error_r = "bad or repeated redirect=";
					return -1;
				}
				r->redirect = val;
			} else if (nlen == 3 && strncasecmp(term, "exp", 3) == 0) {
				if (r->exp != NULL || !domain_spec_ok(val)) {
					*error_r = "bad or repeated exp=";
					return -1;
				}
				r->exp = val;
			} else if (!macro_syntax_ok(val, false)) {
				*error_r = "bad modifier value";
				return -1;
			}
			continue;
		}
		if (r->nterms >= SPF_MAX_TERMS) {
			*error_r = "too many terms";
			return -1;
		}
		struct spf_term *t = &r->terms[r->nterms];
		t->text = termtext;
		t->qual = '+';
		t->cidr4 = t->cidr6 = -1;
		if (strchr("+-~?", *term) != NULL)
			t->qual = *term++;
		size_t n = 0;
		while (isalnum((unsigned char)term[n]))
			n++;
		char *arg = term + n;
		bool colon = *arg == ':';
#define IS(name) (n == sizeof(name) - 1 && strncasecmp(term, name, n) == 0)
		if (IS("all")) {
			if (*arg != '\0')
				goto bad;
			t->mech = SPF_MECH_ALL;
			r->has_all = true;
		} else if (IS("include") || IS("exists")) {
			t->mech = IS("include") ? SPF_MECH_INCLUDE : SPF_MECH_EXISTS;
			if (!colon || !domain_spec_ok(arg + 1))
				goto bad;
			t->spec = arg + 1;
		} else if (IS("a") || IS("mx")) {
			t->mech = IS("a") ? SPF_MECH_A : SPF_MECH_MX;
			if (*arg != '\0' && *arg != ':' && *arg != '/')
				goto bad;
			if (split_dual_cidr(arg, t) < 0)
				goto bad;
			if (colon) {
				if (!domain_spec_ok(arg + 1))
					goto bad;
				t->spec = arg + 1;
			} else if (*arg != '\0') {
				goto bad;
			}
		} else if (IS("ptr")) {
			t->mech = SPF_MECH_PTR;
			if (colon) {
				if (!domain_spec_ok(arg + 1))
					goto bad;
				t->spec = arg + 1;
			} else if (*arg != '\0') {
				goto bad;
			}
		} else if (IS("ip4")) {
			t->mech = SPF_MECH_IP4;
			if (!colon)
				goto bad;
			char *net = arg + 1;
			char *slash = strchr(net, '/');
			if (slash != NULL) {
				*slash = '\0';
				t->cidr4 = parse_cidr(slash + 1, strlen(slash + 1), 32);
				if (t->cidr4 < 0)
					goto bad;
			}
			if (!parse_ip4(net, t->net))
				goto bad;
		} else if (IS("ip6")) {
			t->mech = SPF_MECH_IP6;
			if (!colon)
				goto bad;
			char *net = arg + 1;
			char *slash = strchr(net, '/');
			if (slash != NULL) {
				*slash = '\0';
				t->cidr6 = parse_cidr(slash + 1, strlen(slash + 1), 128);
				if (t->cidr6 < 0)
					goto bad;
			}
			if (strchr(net, ':') == NULL || inet_pton(AF_INET6, net, t->net) != 1)
				goto bad;
		} else {
			goto bad;
		}
#undef IS
		r->nterms++;
		continue;
bad:
		*error_r = "invalid term";
		return -1;
	}
	return 1;
}

/* Does this TXT start with "v=spf1" followed by SP or end? */
static bool is_spf_record(const char *s, size_t len)
{
	return len >= 6 && strncasecmp(s, "v=spf1", 6) == 0 && (len == 6 || s[6] == ' ');
}

int spf_record_check(const char *record, const char **error_r)
{
	struct spf_record r;
	size_t len = strlen(record);
	if (!is_spf_record(record, len)) {
		*error_r = "not an SPF record";
		return -1;
	}
	int ret = record_parse(record, len, &r, error_r);
	record_free(&r);
	return ret;
}

/* ---- evaluation ---- */

static enum spf_result check_host(struct spf_ctx *c, const char *domain, unsigned depth, char **expl_r);

/* Count a DNS-querying term; false when over the limit (permerror). */
static bool count_dns_mech(struct spf_ctx *c)
{
	if (++c->dns_mech > SPF_MAX_DNS_MECH) {
		set_problem(c, "more than 10 DNS-querying terms", NULL);
		return false;
	}
	return true;
}

/* Account a void lookup; false when over the limit. */
static bool count_void(struct spf_ctx *c, enum authdns_status st)
{
	if (st != AUTHDNS_NXDOMAIN && st != AUTHDNS_NODATA)
		return true;
	if (++c->voids > SPF_MAX_VOID) {
		set_problem(c, "more than 2 void lookups", NULL);
		return false;
	}
	return true;
}

/* Address lookup of name (A or AAAA per ip family, or A when force4), match
   against ip with cidr. Returns 1 match, 0 no match, -1 temperror, -2 permerror. */
static int addr_match(struct spf_ctx *c, const char *name, bool force4, int cidr4, int cidr6,
		      bool count_voids)
{
	if (!domain_valid(name))
		return 0;
	struct authdns_answer ans;
	authdns_answer_init(&ans);
	bool v4 = force4 || c->ip.family == AF_INET;
	char *q = name_for_query(name);
	enum authdns_status st = spf_query(c, v4 ? c->dns->a : c->dns->aaaa, q, &ans);
	free(q);
	int ret = 0;
	if (st == AUTHDNS_TEMPFAIL) {
		set_problem(c, "DNS temporary failure for", name);
		ret = -1;
	} else if (st == AUTHDNS_OK) {
		if (force4) {
			ret = 1; /* exists: any A record matches */
		} else {
			for (size_t i = 0; i < ans.count && ret == 0; i++) {
				if (ans.rr[i].len != (v4 ? 4u : 16u))
					continue;
				if (ip_match(&c->ip, v4 ? AF_INET : AF_INET6, (const uint8_t *)ans.rr[i].data,
					     v4 ? cidr4 : cidr6))
					ret = 1;
			}
		}
	} else if (count_voids && !count_void(c, st)) {
		ret = -2;
	}
	authdns_answer_clear(&ans);
	return ret;
}

/* PTR names of the client ip that resolve back to it (at most 10 tried).
   Returns the count stored in names[] (heap strings). */
static size_t validated_names(struct spf_ctx *c, char **names, size_t max, bool *tempfail_r)
{
	char rev[80];
	struct authdns_answer ans;
	authdns_answer_init(&ans);
	size_t n = 0;
	if (tempfail_r != NULL)
		*tempfail_r = false;
	if (c->ip.family == AF_INET) {
		snprintf(rev, sizeof(rev), "%u.%u.%u.%u.in-addr.arpa", c->ip.addr[3], c->ip.addr[2],
			 c->ip.addr[1], c->ip.addr[0]);
	} else {
		static const char hex[] = "0123456789abcdef";
		size_t o = 0;
		for (int i = 15; i >= 0; i--) {
			rev[o++] = hex[c->ip.addr[i] & 15];
			rev[o++] = '.';
			rev[o++] = hex[c->ip.addr[i] >> 4];
			rev[o++] = '.';
		}
		memcpy(rev + o, "ip6.arpa", 9);
	}
	enum authdns_status st = spf_query(c, c->dns->ptr, rev, &ans);
	if (st == AUTHDNS_TEMPFAIL && tempfail_r != NULL)
		*tempfail_r = true;
	if (st != AUTHDNS_OK) {
		authdns_answer_clear(&ans);
		return 0;
	}
	size_t tries = ans.count < 10 ? ans.count : 10;
	for (size_t i = 0; i < tries && n < max; i++) {
		const char *name = ans.rr[i].data;
		if (!domain_valid(name))
			continue;
		int m = addr_match(c, name, false, -1, -1, false);
		if (m == 1)
			names[n++] = name_for_query(name);
	}
	authdns_answer_clear(&ans);
	return n;
}

static char *validated_ptr_uncached(struct spf_ctx *c, const char *domain);

static char *validated_ptr(struct spf_ctx *c, const char *domain)
{
	if (c->p_domain == NULL || strcasecmp(c->p_domain, domain) != 0) {
		free(c->p_domain);
		free(c->p_value);
		c->p_domain = xstrdup(domain);
		c->p_value = validated_ptr_uncached(c, domain);
	}
	return xstrdup(c->p_value);
}

static char *validated_ptr_uncached(struct spf_ctx *c, const char *domain)
{
	char *names[10];
	size_t n = validated_names(c, names, 10, NULL);
	char *best = NULL;
	for (size_t i = 0; i < n && best == NULL; i++)
		if (name_eq(names[i], domain))
			best = names[i];
	for (size_t i = 0; i < n && best == NULL; i++)
		if (name_under(names[i], domain))
			best = names[i];
	if (best == NULL && n > 0)
		best = names[0];
	char *ret = xstrdup(best != NULL ? best : "unknown");
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	return ret;
}

/* Expand a domain-spec (or default to domain); NULL on a macro error. */
static char *target_name(struct spf_ctx *c, const char *spec, const char *domain)
{
	if (spec == NULL)
		return xstrdup(domain);
	struct macro_env e = {
		.ip = &c->ip, .sender = c->sender, .domain = domain, .helo = c->helo,
		.opts = &c->opts, .ctx = c,
	};
	char *out;
	if (macro_expand_env(spec, false, &e, &out) < 0)
		return NULL;
	truncate_domain(out);
	return out;
}

static char *explanation(struct spf_ctx *c, const char *exp_spec, const char *domain)
{
	char *name = target_name(c, exp_spec, domain);
	if (name == NULL)
		return NULL;
	if (!domain_valid(name)) {
		free(name);
		return NULL;
	}
	struct authdns_answer ans;
	authdns_answer_init(&ans);
	char *q = name_for_query(name);
	free(name);
	enum authdns_status st = spf_query(c, c->dns->txt, q, &ans);
	free(q);
	char *ret = NULL;
	if (st == AUTHDNS_OK && ans.count == 1 && strlen(ans.rr[0].data) == ans.rr[0].len) {
		struct macro_env e = {
			.ip = &c->ip, .sender = c->sender, .domain = domain, .helo = c->helo,
			.opts = &c->opts, .ctx = c,
		};
		if (macro_expand_env(ans.rr[0].data, true, &e, &ret) < 0)
			ret = NULL;
	}
	authdns_answer_clear(&ans);
	if (ret != NULL) {
		for (const char *p = ret; *p != '\0'; p++) {
			if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) {
				xfree(&ret);
				break;
			}
		}
	}
	return ret;
}

static enum spf_result qual_result(char q)
{
	switch (q) {
	case '-': return SPF_RESULT_FAIL;
	case '~': return SPF_RESULT_SOFTFAIL;
	case '?': return SPF_RESULT_NEUTRAL;
	default: return SPF_RESULT_PASS;
	}
}

/* Evaluate one mechanism: 1 match, 0 no match, or a negative error:
   -1 temperror, -2 permerror. */
static int eval_mech(struct spf_ctx *c, const struct spf_term *t, const char *domain, unsigned depth)
{
	char *target = NULL;
	int ret = 0;
	switch (t->mech) {
	case SPF_MECH_ALL:
		return 1;
	case SPF_MECH_IP4:
		return ip_match(&c->ip, AF_INET, t->net, t->cidr4) ? 1 : 0;
	case SPF_MECH_IP6:
		return ip_match(&c->ip, AF_INET6, t->net, t->cidr6) ? 1 : 0;
	case SPF_MECH_INCLUDE: {
		if (!count_dns_mech(c))
			return -2;
		target = target_name(c, t->spec, domain);
		if (target == NULL)
			return -2;
		enum spf_result r = check_host(c, target, depth + 1, NULL);
		free(target);
		switch (r) {
		case SPF_RESULT_PASS: return 1;
		case SPF_RESULT_FAIL:
		case SPF_RESULT_SOFTFAIL:
		case SPF_RESULT_NEUTRAL: return 0;
		case SPF_RESULT_TEMPERROR: return -1;
		default:
			set_problem(c, "include target has no valid record", NULL);
			return -2;
		}
	}
	case SPF_MECH_A:
	case SPF_MECH_EXISTS:
		if (!count_dns_mech(c))
			return -2;
		target = target_name(c, t->spec, domain);
		if (target == NULL)
			return -2;
		ret = addr_match(c, target, t->mech == SPF_MECH_EXISTS, t->cidr4, t->cidr6, true);
		free(target);
		return ret;
	case SPF_MECH_MX: {
		if (!count_dns_mech(c))
			return -2;
		target = target_name(c, t->spec, domain);
		if (target == NULL)
			return -2;
		if (!domain_valid(target)) {
			free(target);
			return 0;
		}
		struct authdns_answer ans;
		authdns_answer_init(&ans);
		char *q = name_for_query(target);
		free(target);
		enum authdns_status st = spf_query(c, c->dns->mx, q, &ans);
		free(q);
		if (st == AUTHDNS_TEMPFAIL) {
			set_problem(c, "DNS temporary failure (MX)", NULL);
			ret = -1;
		} else if (st == AUTHDNS_OK) {
			if (ans.count > 10) {
				set_problem(c, "more than 10 MX names", NULL);
				ret = -2;
			}
			for (size_t i = 0; i < ans.count && ret == 0; i++) {
				int m = addr_match(c, ans.rr[i].data, false, t->cidr4, t->cidr6, true);
				if (m != 0)
					ret = m;
			}
		} else if (!count_void(c, st)) {
			ret = -2;
		}
		authdns_answer_clear(&ans);
		return ret;
	}
	case SPF_MECH_PTR: {
		if (!count_dns_mech(c))
			return -2;
		target = target_name(c, t->spec, domain);
		if (target == NULL)
			return -2;
		char *names[10];
		size_t n = validated_names(c, names, 10, NULL);
		for (size_t i = 0; i < n; i++) {
			if (ret == 0 && name_under(names[i], target))
				ret = 1;
			free(names[i]);
		}
		free(target);
		return ret;
	}
	}
	return 0;
}

static enum spf_result check_host(struct spf_ctx *c, const char *domain, unsigned depth, char **expl_r)
{
	if (depth > SPF_MAX_DEPTH) {
		set_problem(c, "recursion too deep", NULL);
		return SPF_RESULT_PERMERROR;
	}
	if (!domain_valid(domain)) {
		set_problem(c, "malformed domain", domain);
		return SPF_RESULT_NONE;
	}
	struct authdns_answer ans;
	authdns_answer_init(&ans);
	char *q = name_for_query(domain);
	enum authdns_status st = spf_query(c, c->dns->txt, q, &ans);
	free(q);
	if (st == AUTHDNS_TEMPFAIL) {
		set_problem(c, "DNS temporary failure for", domain);
		authdns_answer_clear(&ans);
		return SPF_RESULT_TEMPERROR;
	}
	if (st == AUTHDNS_PERMFAIL) {
		set_problem(c, "DNS answer malformed for", domain);
		authdns_answer_clear(&ans);
		return SPF_RESULT_PERMERROR;
	}
	int found = -1;
	for (size_t i = 0; i < ans.count; i++) {
		if (!is_spf_record(ans.rr[i].data, ans.rr[i].len))
			continue;
		if (found >= 0) {
			set_problem(c, "more than one SPF record at", domain);
			authdns_answer_clear(&ans);
			return SPF_RESULT_PERMERROR;
		}
		found = (int)i;
	}
	if (found < 0) {
		set_problem(c, "no SPF record at", domain);
		authdns_answer_clear(&ans);
		return SPF_RESULT_NONE;
	}
	struct spf_record rec;
	const char *err = NULL;
	int prc = record_parse(ans.rr[found].data, ans.rr[found].len, &rec, &err);
	authdns_answer_clear(&ans);
	if (prc < 0) {
		set_problem(c, "syntax error", err);
		record_free(&rec);
		return SPF_RESULT_PERMERROR;
	}

	enum spf_result result = SPF_RESULT_NEUTRAL;
	bool matched = false;
	for (size_t i = 0; i < rec.nterms; i++) {
		int m = eval_mech(c, &rec.terms[i], domain, depth);
		if (m == -1) {
			result = SPF_RESULT_TEMPERROR;
			matched = true;
			break;
		}
		if (m == -2) {
			result = SPF_RESULT_PERMERROR;
			matched = true;
			break;
		}
		if (m == 1) {
			result = qual_result(rec.terms[i].qual);
			matched = true;
			if (depth == 0 || expl_r != NULL) {
				free(c->mechanism);
				c->mechanism = xstrdup(rec.terms[i].text);
			}
			break;
		}
	}
	if (!matched && rec.redirect != NULL && !rec.has_all) {
		if (!count_dns_mech(c)) {
			result = SPF_RESULT_PERMERROR;
		} else {
			char *target = target_name(c, rec.redirect, domain);
			if (target == NULL) {
				result = SPF_RESULT_PERMERROR;
			} else {
				if (expl_r != NULL) {
					free(c->mechanism);
					c->mechanism = xasprintf("redirect=%s", target);
				}
				result = check_host(c, target, depth + 1, expl_r);
				if (result == SPF_RESULT_NONE) {
					set_problem(c, "redirect target has no SPF record:", target);
					result = SPF_RESULT_PERMERROR;
				}
				free(target);
			}
		}
		record_free(&rec);
		return result;
	}
	if (result == SPF_RESULT_FAIL && expl_r != NULL && rec.exp != NULL) {
		free(*expl_r);
		*expl_r = explanation(c, rec.exp, domain);
	}
	record_free(&rec);
	return result;
}

enum spf_result spf_check_host_opts(const struct spf_ip *ip, const char *domain, const char *sender,
				    const char *helo, const struct authdns *dns,
				    const struct spf_options *opts, struct spf_outcome *out)
{
	memset(out, 0, sizeof(*out));
	struct spf_ctx c = {
		.dns = dns, .ip = *ip, .sender = sender != NULL ? sender : "", .helo = helo,
	};
	if (opts != NULL)
		c.opts = *opts;
	char *expl = NULL;
	out->result = check_host(&c, domain != NULL ? domain : "", 0, &expl);
	if (out->result == SPF_RESULT_FAIL)
		out->explanation = expl;
	else
		free(expl);
	out->mechanism = c.mechanism;
	if (out->result == SPF_RESULT_PASS || out->result == SPF_RESULT_FAIL ||
	    out->result == SPF_RESULT_SOFTFAIL || out->result == SPF_RESULT_NEUTRAL)
		xfree(&c.problem);
	out->problem = c.problem;
	free(c.p_domain);
	free(c.p_value);
	out->dns_mechanisms = c.dns_mech;
	out->void_lookups = c.voids;
	return out->result;
}

enum spf_result spf_check_host(const struct spf_ip *ip, const char *domain, const char *sender,
			       const char *helo, const struct authdns *dns, struct spf_outcome *out)
{
	return spf_check_host_opts(ip, domain, sender, helo, dns, NULL, out);
}

enum spf_result spf_check_mailfrom(const struct spf_ip *ip, const char *mailfrom, const char *helo,
				   const struct authdns *dns, const struct spf_options *opts,
				   struct spf_outcome *out)
{
	if (mailfrom == NULL || *mailfrom == '\0')
		return spf_check_helo(ip, helo, dns, opts, out);
	const char *at = strrchr(mailfrom, '@');
	char *sender;
	const char *domain;
	if (at == NULL) {
		sender = xasprintf("postmaster@%s", mailfrom);
		domain = mailfrom;
	} else if (at == mailfrom) {
		sender = xasprintf("postmaster%s", mailfrom);
		domain = at + 1;
	} else {
		sender = xstrdup(mailfrom);
		domain = at + 1;
	}
	enum spf_result r = spf_check_host_opts(ip, domain, sender, helo, dns, opts, out);
	free(sender);
	return r;
}

enum spf_result spf_check_helo(const struct spf_ip *ip, const char *helo, const struct authdns *dns,
			       const struct spf_options *opts, struct spf_outcome *out)
{
	const char *h = helo != NULL ? helo : "";
	char *sender = xasprintf("postmaster@%s", h);
	enum spf_result r = spf_check_host_opts(ip, h, sender, h, dns, opts, out);
	free(sender);
	return r;
}
