/*
 * dmarc: RFC 7489 record parsing, discovery, alignment and policy.
 */
#include "lib-auth/dmarc.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <libpsl.h>

#include "lib/xalloc.h"

const char *dmarc_policy_name(enum dmarc_policy p)
{
	switch (p) {
	case DMARC_POLICY_UNSPECIFIED: return "unspecified";
	case DMARC_POLICY_NONE: return "none";
	case DMARC_POLICY_QUARANTINE: return "quarantine";
	case DMARC_POLICY_REJECT: return "reject";
	}
	return "?";
}

const char *dmarc_result_name(enum dmarc_result r)
{
	switch (r) {
	case DMARC_RESULT_NONE: return "none";
	case DMARC_RESULT_PASS: return "pass";
	case DMARC_RESULT_FAIL: return "fail";
	case DMARC_RESULT_TEMPERROR: return "temperror";
	case DMARC_RESULT_PERMERROR: return "permerror";
	}
	return "?";
}

void dmarc_record_free(struct dmarc_record *r)
{
	for (size_t i = 0; i < r->rua_count; i++)
		free(r->rua[i]);
	for (size_t i = 0; i < r->ruf_count; i++)
		free(r->ruf[i]);
	memset(r, 0, sizeof(*r));
}

static bool parse_policy(const char *v, enum dmarc_policy *p)
{
	if (strcasecmp(v, "none") == 0)
		*p = DMARC_POLICY_NONE;
	else if (strcasecmp(v, "quarantine") == 0)
		*p = DMARC_POLICY_QUARANTINE;
	else if (strcasecmp(v, "reject") == 0)
		*p = DMARC_POLICY_REJECT;
	else
		return false;
	return true;
}

static bool parse_mode(const char *v, bool *strict)
{
	if (strcasecmp(v, "r") == 0)
		*strict = false;
	else if (strcasecmp(v, "s") == 0)
		*strict = true;
	else
		return false;
	return true;
}

static bool parse_u32(const char *v, uint32_t max, uint32_t *out)
{
	if (!isdigit((unsigned char)*v) || strlen(v) > 10)
		return false;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (*end != '\0' || errno != 0 || x > max)
		return false;
	*out = (uint32_t)x;
	return true;
}

/* dmarc-uri *(*WSP "," *WSP dmarc-uri); a URI needs a scheme ("x:"). */
static bool parse_uris(const char *v, char **out, size_t *count)
{
	const char *p = v;
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t')
			p++;
		const char *s = p;
		while (*p != '\0' && *p != ',')
			p++;
		const char *e = p;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (*p == ',')
			p++;
		/* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" */
		const char *q = s;
		if (q == e || !isalpha((unsigned char)*q))
			return false;
		while (q < e && (isalnum((unsigned char)*q) || *q == '+' || *q == '-' || *q == '.'))
			q++;
		if (q == e || *q != ':' || q + 1 == e)
			return false;
		for (const char *c = s; c < e; c++)
			if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
				return false;
		if (*count < DMARC_MAX_URIS)
			out[(*count)++] = xstrndup(s, (size_t)(e - s));
	}
	return *count > 0;
}

static bool parse_colon_list(const char *v, const char *const *allowed)
{
	char *c = xstrdup(v), *save = NULL;
	bool ok = true, any = false;
	for (char *t = strtok_r(c, ":", &save); t != NULL && ok; t = strtok_r(NULL, ":", &save)) {
		while (*t == ' ' || *t == '\t')
			t++;
		size_t l = strlen(t);
		while (l > 0 && (t[l - 1] == ' ' || t[l - 1] == '\t'))
			t[--l] = '\0';
		bool found = false;
		for (size_t i = 0; allowed[i] != NULL; i++)
			if (strcasecmp(t, allowed[i]) == 0)
				found = true;
		ok = found;
		any = true;
	}
	free(c);
	return ok && any;
}

int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *r, const char **error_r)
{
	memset(r, 0, sizeof(*r));
	r->pct = 100;
	r->ri = 86400;
	snprintf(r->fo, sizeof(r->fo), "0");
	r->rf_afrf = true;
	size_t n = 0;
	while (n < len && (txt[n] == ' ' || txt[n] == '\t'))
		n++;
	if (n == len) {
		*error_r = "empty";
		return -1;
	}
	struct dkim_taglist tl;
	if (dkim_taglist_parse(txt, len, &tl, error_r) < 0) {
		dkim_taglist_free(&tl);
		/* a record that does not even start with v=DMARC1 is a version error */
		*error_r = len - n >= 8 && memcmp(txt + n, "v=DMARC1", 8) == 0 ? "syntax" : "bad version";
		return -1;
	}
	int ret = -1;
	if (tl.count == 0 || strcmp(tl.tags[0].name, "v") != 0 || strcmp(tl.tags[0].value, "DMARC1") != 0) {
		*error_r = "bad version";
		goto out;
	}
	bool have_p = false, bad_p = false, have_sp = false;
	static const char *const rf_ok[] = {"afrf", "iodef", NULL};
	static const char *const fo_ok[] = {"0", "1", "d", "s", NULL};
	for (size_t i = 1; i < tl.count; i++) {
		const char *name = tl.tags[i].name, *v = tl.tags[i].value;
		bool ok = true;
		if (strcmp(name, "p") == 0) {
			ok = parse_policy(v, &r->p);
			have_p = ok;
			bad_p = !ok;
			ok = true; /* decided below (6.6.3) */
		} else if (strcmp(name, "sp") == 0) {
			ok = parse_policy(v, &r->sp);
			have_sp = ok;
		} else if (strcmp(name, "adkim") == 0) {
			ok = parse_mode(v, &r->adkim_strict);
		} else if (strcmp(name, "aspf") == 0) {
			ok = parse_mode(v, &r->aspf_strict);
		} else if (strcmp(name, "pct") == 0) {
			uint32_t x;
			ok = parse_u32(v, 100, &x);
			r->pct = x;
		} else if (strcmp(name, "ri") == 0) {
			ok = parse_u32(v, UINT32_MAX, &r->ri);
		} else if (strcmp(name, "rf") == 0) {
			ok = parse_colon_list(v, rf_ok);
		} else if (strcmp(name, "fo") == 0) {
			ok = parse_colon_list(v, fo_ok) && strlen(v) < sizeof(r->fo);
			if (ok)
				snprintf(r->fo, sizeof(r->fo), "%s", v);
		} else if (strcmp(name, "rua") == 0) {
			ok = parse_uris(v, r->rua, &r->rua_count);
		} else if (strcmp(name, "ruf") == 0) {
			ok = parse_uris(v, r->ruf, &r->ruf_count);
		}
		/* unknown tags are ignored (RFC 7489 6.3) */
		if (!ok) {
			*error_r = "bad value";
			goto out;
		}
	}
	if (!have_p) {
		/* 6.6.3 step 6: without a valid p= but with a valid rua=, act as p=none */
		if (r->rua_count > 0) {
			r->p = DMARC_POLICY_NONE;
			r->p_implied = true;
		} else {
			*error_r = bad_p ? "bad value" : "no p=";
			goto out;
		}
	}
	if (!have_sp)
		r->sp = r->p;
	ret = 1;
out:
	dkim_taglist_free(&tl);
	if (ret < 0)
		dmarc_record_free(r);
	return ret;
}

/* ---- organizational domain ---- */

static pthread_once_t psl_once = PTHREAD_ONCE_INIT;
static psl_ctx_t *psl_ctx;

static void psl_load(void)
{
	psl_ctx = psl_latest(NULL);
	if (psl_ctx == NULL)
		psl_ctx = (psl_ctx_t *)psl_builtin();
}

/* Lowercased copy without leading/trailing dots; NULL if empty. */
static char *domain_norm(const char *d)
{
	while (*d == '.')
		d++;
	size_t n = strlen(d);
	while (n > 0 && d[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return NULL;
	char *s = xstrndup(d, n);
	for (char *p = s; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return s;
}

char *dmarc_registrable_domain(const char *domain)
{
	if (domain == NULL || domain[0] == '.')
		return NULL;
	char *d = domain_norm(domain);
	if (d == NULL)
		return NULL;
	pthread_once(&psl_once, psl_load);
	char *lower = NULL;
	if (psl_str_to_utf8lower(d, NULL, NULL, &lower) != PSL_SUCCESS)
		lower = NULL;
	const char *reg = psl_ctx != NULL ? psl_registrable_domain(psl_ctx, lower != NULL ? lower : d) : NULL;
	char *ret = reg != NULL ? xstrdup(reg) : NULL;
	psl_free_string(lower);
	free(d);
	return ret;
}

char *dmarc_org_domain(const char *domain)
{
	char *d = domain_norm(domain);
	if (d == NULL)
		return NULL;
	char *reg = dmarc_registrable_domain(d);
	if (reg != NULL) {
		free(d);
		return reg;
	}
	return d;
}

bool dmarc_aligned(const char *from_domain, const char *other_domain, bool strict)
{
	if (from_domain == NULL || other_domain == NULL)
		return false;
	char *a = domain_norm(from_domain), *b = domain_norm(other_domain);
	bool ok = false;
	if (a != NULL && b != NULL) {
		if (strcmp(a, b) == 0) {
			ok = true;
		} else if (!strict) {
			char *oa = dmarc_org_domain(a), *ob = dmarc_org_domain(b);
			ok = oa != NULL && ob != NULL && strcmp(oa, ob) == 0;
			free(oa);
			free(ob);
		}
	}
	free(a);
	free(b);
	return ok;
}

/* ---- From: domain ---- */

char *dmarc_from_domain(const char *v, size_t *count_r)
{
	char *first = NULL;
	size_t count = 0;
	const char *p = v;
	while (*p != '\0') {
		if (*p == '"') {
			for (p++; *p != '\0' && *p != '"'; p++)
				if (*p == '\\' && p[1] != '\0')
					p++;
			if (*p == '"')
				p++;
			continue;
		}
		if (*p == '(') {
			int depth = 0;
			for (; *p != '\0'; p++) {
				if (*p == '\\' && p[1] != '\0')
					p++;
				else if (*p == '(')
					depth++;
				else if (*p == ')' && --depth == 0) {
					p++;
					break;
				}
			}
			continue;
		}
		if (*p == '@') {
			const char *s = ++p;
			while (*p != '\0' && strchr(">,; \t\r\n()\"<", *p) == NULL)
				p++;
			char *raw = xstrndup(s, (size_t)(p - s));
			char *d = domain_norm(raw);
			free(raw);
			if (d != NULL) {
				count++;
				if (first == NULL)
					first = d;
				else
					free(d);
			}
			continue;
		}
		p++;
	}
	if (count_r != NULL)
		*count_r = count;
	return first;
}

/* ---- evaluation ---- */

void dmarc_outcome_free(struct dmarc_outcome *out)
{
	free(out->dkim_domain);
	free(out->record_domain);
	free(out->org_domain);
	free(out->problem);
	dmarc_record_free(&out->record);
	memset(out, 0, sizeof(*out));
}

/* "v" *WSP "=" *WSP "DMARC1" *WSP (";" / end): RFC 7489 6.4 */
static bool is_dmarc_record(const char *t, size_t l)
{
	size_t i = 0;
	if (l == 0 || t[0] != 'v')
		return false;
	i = 1;
	while (i < l && (t[i] == ' ' || t[i] == '\t'))
		i++;
	if (i >= l || t[i] != '=')
		return false;
	i++;
	while (i < l && (t[i] == ' ' || t[i] == '\t'))
		i++;
	if (l - i < 6 || memcmp(t + i, "DMARC1", 6) != 0)
		return false;
	i += 6;
	while (i < l && (t[i] == ' ' || t[i] == '\t'))
		i++;
	return i == l || t[i] == ';';
}

/* Fetch and parse the record at _dmarc.<domain>: 1 found, 0 none, -1 tempfail. */
static int fetch_record(const struct authdns *dns, const char *domain, struct dmarc_record *r, char **problem)
{
	char *name = xasprintf("_dmarc.%s", domain);
	struct authdns_answer ans;
	authdns_answer_init(&ans);
	enum authdns_status st = authdns_query(dns, dns->txt, name, &ans);
	free(name);
	int ret = 0;
	if (st == AUTHDNS_TEMPFAIL) {
		ret = -1;
		goto out;
	}
	if (st != AUTHDNS_OK)
		goto out;
	size_t found = 0, idx = 0;
	for (size_t i = 0; i < ans.count; i++) {
		const char *t = ans.rr[i].data;
		size_t l = ans.rr[i].len;
		if (is_dmarc_record(t, l)) {
			found++;
			idx = i;
		}
	}
	if (found != 1) {
		if (found > 1) {
			free(*problem);
			*problem = xasprintf("multiple DMARC records at %s", domain);
		}
		goto out;
	}
	const char *err;
	if (dmarc_record_parse(ans.rr[idx].data, ans.rr[idx].len, r, &err) < 0) {
		free(*problem);
		*problem = xasprintf("invalid DMARC record at %s: %s", domain, err);
		goto out;
	}
	ret = 1;
out:
	authdns_answer_clear(&ans);
	return ret;
}

static unsigned default_random_percent(void *ctx)
{
	uint32_t x = 0;
	for (;;) {
		if (getrandom(&x, sizeof(x), 0) != (ssize_t)sizeof(x))
			return 0;
		if (x < 4294967200u) /* largest multiple of 100 below 2^32: no bias */
			return x % 100;
	}
}

enum dmarc_result dmarc_evaluate(const struct dmarc_input *in, const struct authdns *dns,
				 struct dmarc_outcome *out)
{
	memset(out, 0, sizeof(*out));
	char *from = in->from_domain != NULL ? domain_norm(in->from_domain) : NULL;
	if (from == NULL) {
		out->problem = xstrdup("no usable RFC5322.From domain");
		out->result = DMARC_RESULT_PERMERROR;
		return out->result;
	}
	out->org_domain = dmarc_org_domain(from);
	int rc = fetch_record(dns, from, &out->record, &out->problem);
	bool at_org = false;
	if (rc == 0 && out->org_domain != NULL && strcmp(out->org_domain, from) != 0) {
		rc = fetch_record(dns, out->org_domain, &out->record, &out->problem);
		at_org = true;
	}
	if (rc < 0) {
		free(out->problem);
		out->problem = xstrdup("DMARC record lookup failed temporarily");
		out->result = DMARC_RESULT_TEMPERROR;
		free(from);
		return out->result;
	}
	if (rc == 0) {
		out->result = DMARC_RESULT_NONE;
		free(from);
		return out->result;
	}
	out->record_domain = xstrdup(at_org ? out->org_domain : from);
	out->policy = at_org ? out->record.sp : out->record.p;

	out->spf_aligned = in->spf_result == SPF_RESULT_PASS && in->spf_domain != NULL &&
			   dmarc_aligned(from, in->spf_domain, out->record.aspf_strict);
	for (size_t i = 0; i < in->dkim_count && !out->dkim_aligned; i++) {
		if (in->dkim[i].result == DKIM_RESULT_PASS &&
		    dmarc_aligned(from, in->dkim[i].domain, out->record.adkim_strict)) {
			out->dkim_aligned = true;
			out->dkim_domain = xstrdup(in->dkim[i].domain);
		}
	}
	if (out->spf_aligned || out->dkim_aligned) {
		out->result = DMARC_RESULT_PASS;
		out->disposition = DMARC_POLICY_NONE;
	} else {
		out->result = DMARC_RESULT_FAIL;
		out->disposition = out->policy;
		if (out->policy > DMARC_POLICY_NONE && out->record.pct < 100) {
			unsigned r = in->random_percent != NULL ? in->random_percent(in->random_ctx)
								: default_random_percent(NULL);
			if (r >= out->record.pct) {
				/* 6.6.4: apply the next less strict policy */
				out->sampled_out = true;
				out->disposition = out->policy == DMARC_POLICY_REJECT ? DMARC_POLICY_QUARANTINE
										      : DMARC_POLICY_NONE;
			}
		}
	}
	free(from);
	return out->result;
}
