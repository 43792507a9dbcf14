#include "outbound/mta_sts.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib-dns/dns_resolver.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/workpool.h"
#include "lib/xalloc.h"
#include "outbound/tlsrpt.h"

#define MAX_CACHE 1000

/* ------------------------------------------------------------------ pure part */

const char *mta_sts_mode_name(enum mta_sts_mode m)
{
	switch (m) {
	case MTA_STS_MODE_ENFORCE: return "enforce";
	case MTA_STS_MODE_TESTING: return "testing";
	case MTA_STS_MODE_NONE: return "none";
	}
	return "?";
}

void mta_sts_policy_clear(struct mta_sts_policy *p)
{
	for (size_t i = 0; i < p->mx_count; i++)
		free(p->mx[i]);
	free(p->id);
	memset(p, 0, sizeof(*p));
}

void mta_sts_policy_copy(struct mta_sts_policy *dst, const struct mta_sts_policy *src)
{
	*dst = *src;
	for (size_t i = 0; i < src->mx_count; i++)
		dst->mx[i] = xstrdup(src->mx[i]);
	dst->id = src->id != NULL ? xstrdup(src->id) : NULL;
}

static bool is_ws(char c) { return c == ' ' || c == '\t'; }

/* RFC 8461 3.2: sts-policy-mx-value: a domain name, optionally "*." first. */
static bool mx_pattern_ok(const char *v, size_t n)
{
	if (n >= 2 && v[0] == '*' && v[1] == '.') {
		v += 2;
		n -= 2;
	}
	if (n == 0 || n > 253)
		return false;
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c == '.') {
			if (label == 0 && i + 1 != n)
				return false;
			label = 0;
			continue;
		}
		if (!(isalnum(c) || c == '-' || c == '_' || c >= 0x80))
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

int mta_sts_policy_parse(const char *text, size_t len, struct mta_sts_policy *p, const char **error_r)
{
	bool have_version = false, have_mode = false, have_age = false;
	size_t pos = 0;

	if (len > MTA_STS_MAX_POLICY) {
		*error_r = "policy too large";
		return -1;
	}
	while (pos < len) {
		size_t end = pos;
		while (end < len && text[end] != '\n')
			end++;
		size_t lend = end;
		if (lend > pos && text[lend - 1] == '\r')
			lend--;
		const char *line = text + pos;
		size_t ll = lend - pos;
		pos = end < len ? end + 1 : end;
		if (ll == 0)
			continue;
		const char *colon = memchr(line, ':', ll);
		if (colon == NULL) {
			*error_r = "line without ':'";
			goto fail;
		}
		size_t kl = (size_t)(colon - line);
		const char *v = colon + 1;
		size_t vl = ll - kl - 1;
		while (vl > 0 && is_ws(*v)) {
			v++;
			vl--;
		}
		while (vl > 0 && is_ws(v[vl - 1]))
			vl--;
		for (size_t i = 0; i < vl; i++) {
			if ((unsigned char)v[i] < 0x20 && v[i] != '\t') {
				*error_r = "control character in a value";
				goto fail;
			}
		}
		if (kl == 7 && memcmp(line, "version", 7) == 0) {
			if (have_version)
				continue; /* the first one counts */
			if (vl != 5 || memcmp(v, "STSv1", 5) != 0) {
				*error_r = "version is not STSv1";
				goto fail;
			}
			have_version = true;
		} else if (kl == 4 && memcmp(line, "mode", 4) == 0) {
			if (have_mode)
				continue;
			if (vl == 7 && memcmp(v, "enforce", 7) == 0)
				p->mode = MTA_STS_MODE_ENFORCE;
			else if (vl == 7 && memcmp(v, "testing", 7) == 0)
				p->mode = MTA_STS_MODE_TESTING;
			else if (vl == 4 && memcmp(v, "none", 4) == 0)
				p->mode = MTA_STS_MODE_NONE;
			else {
				*error_r = "unknown mode";
				goto fail;
			}
			have_mode = true;
		} else if (kl == 7 && memcmp(line, "max_age", 7) == 0) {
			if (have_age)
				continue;
			unsigned long a = 0;
			if (vl == 0 || vl > 10) {
				*error_r = "bad max_age";
				goto fail;
			}
			for (size_t i = 0; i < vl; i++) {
				if (!isdigit((unsigned char)v[i])) {
					*error_r = "bad max_age";
					goto fail;
				}
				a = a * 10 + (unsigned long)(v[i] - '0');
			}
			if (a > MTA_STS_MAX_AGE)
				a = MTA_STS_MAX_AGE;
			p->max_age = a;
			have_age = true;
		} else if (kl == 2 && memcmp(line, "mx", 2) == 0) {
			if (!mx_pattern_ok(v, vl)) {
				*error_r = "bad mx pattern";
				goto fail;
			}
			if (p->mx_count >= MTA_STS_MAX_MX) {
				*error_r = "too many mx patterns";
				goto fail;
			}
			char *m = xstrndup(v, vl);
			for (char *q = m; *q != '\0'; q++)
				*q = (char)tolower((unsigned char)*q);
			size_t ml = strlen(m);
			if (ml > 0 && m[ml - 1] == '.')
				m[ml - 1] = '\0';
			p->mx[p->mx_count++] = m;
		}
		/* other fields: ignored (extensions) */
	}
	if (!have_version || !have_mode || !have_age) {
		*error_r = !have_version ? "no version" : !have_mode ? "no mode" : "no max_age";
		goto fail;
	}
	if (p->mode != MTA_STS_MODE_NONE && p->mx_count == 0) {
		*error_r = "no mx";
		goto fail;
	}
	return 1;
fail:
	mta_sts_policy_clear(p);
	return -1;
}

static size_t name_len(const char *s)
{
	size_t n = strlen(s);
	if (n > 0 && s[n - 1] == '.')
		n--;
	return n;
}

bool mta_sts_mx_match(const char *pattern, const char *host)
{
	size_t pl = name_len(pattern), hl = name_len(host);
	if (pl >= 2 && pattern[0] == '*' && pattern[1] == '.') {
		/* exactly one label in place of '*' */
		const char *dot = memchr(host, '.', hl);
		if (dot == NULL || dot == host)
			return false;
		size_t rest = hl - (size_t)(dot + 1 - host);
		return rest == pl - 2 && rest > 0 && strncasecmp(dot + 1, pattern + 2, rest) == 0;
	}
	return pl == hl && pl > 0 && strncasecmp(pattern, host, pl) == 0;
}

bool mta_sts_policy_allows(const struct mta_sts_policy *p, const char *host)
{
	for (size_t i = 0; i < p->mx_count; i++)
		if (mta_sts_mx_match(p->mx[i], host))
			return true;
	return false;
}

int mta_sts_txt_parse(const char *txt, char *id, size_t id_size)
{
	const char *p = txt;
	if (strncmp(p, "v=STSv1", 7) != 0)
		return 0;
	p += 7;
	if (*p != ';' && *p != ' ' && *p != '\t' && *p != '\0')
		return 0;
	bool got = false;
	/* fields "name=value" separated by ';' with optional spaces */
	while (*p != '\0') {
		while (*p == ';' || is_ws(*p))
			p++;
		if (*p == '\0')
			break;
		const char *eq = strchr(p, '=');
		const char *semi = strchr(p, ';');
		if (semi == NULL)
			semi = p + strlen(p);
		if (eq == NULL || eq > semi)
			return -1;
		const char *v = eq + 1;
		size_t vl = (size_t)(semi - v);
		while (vl > 0 && is_ws(v[vl - 1]))
			vl--;
		if (eq - p == 2 && strncmp(p, "id", 2) == 0 && !got) {
			if (vl == 0 || vl > 32 || vl >= id_size)
				return -1;
			for (size_t i = 0; i < vl; i++)
				if (!isalnum((unsigned char)v[i]))
					return -1;
			memcpy(id, v, vl);
			id[vl] = '\0';
			got = true;
		}
		p = semi;
	}
	return got ? 1 : -1;
}

/* ------------------------------------------------------------------ async part */

struct cache_entry {
	char *domain;
	struct mta_sts_policy policy;
	struct cache_entry *next;
};

struct fetch_job {
	struct mta_sts_req *req;   /* NULL when the request went away */
	struct mta_sts *s;
	struct fetch_job *prev, *next; /* in mta_sts.jobs until its done callback ran */
	/* inputs */
	char *url, *connect_to, *ca_file;
	unsigned timeout_ms;
	/* outputs */
	struct buf body;
	bool too_big;
	long http_code;
	char *content_type;
	int curl_rc;
	long ssl_verify;
	char err[CURL_ERROR_SIZE];
};

struct mta_sts_req {
	struct mta_sts *s;
	struct mta_sts_req *prev, *next;
	char *domain;
	char id[40];
	bool tried_aaaa;           /* mta-sts.<domain> had no A: AAAA asked */
	mta_sts_cb *cb;
	void *arg;
	struct dns_query *q;
	struct fetch_job *job;
	struct event *done_ev;
	struct mta_sts_policy result;
	bool have_result;
};

struct mta_sts {
	struct event_base *base;
	struct mta_sts_settings set;
	struct workpool *pool;
	struct cache_entry *cache;
	size_t cache_count;
	struct mta_sts_req *reqs;
	struct fetch_job *jobs;
};

struct mta_sts *mta_sts_new(struct event_base *base, const struct mta_sts_settings *set)
{
	struct mta_sts *s = xcalloc(1, sizeof(*s));
	s->base = base;
	s->set = *set;
	s->set.cache_dir = set->cache_dir != NULL ? xstrdup(set->cache_dir) : NULL;
	s->set.ca_file = set->ca_file != NULL ? xstrdup(set->ca_file) : NULL;
	s->set.tlsrpt_dir = set->tlsrpt_dir != NULL ? xstrdup(set->tlsrpt_dir) : NULL;
	if (s->set.port == 0)
		s->set.port = 443;
	if (s->set.timeout_ms == 0)
		s->set.timeout_ms = 60000;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	s->pool = workpool_new(base, 1);
	return s;
}

static void req_free(struct mta_sts_req *r);
static void job_free(struct fetch_job *j);
static void job_unlink(struct mta_sts *s, struct fetch_job *j);

void mta_sts_free(struct mta_sts **sp)
{
	struct mta_sts *s = *sp;
	if (s == NULL)
		return;
	*sp = NULL;
	while (s->reqs != NULL)
		req_free(s->reqs);
	workpool_free(&s->pool);
	/* jobs whose done callback never ran (drained or running at free): the threads are gone */
	while (s->jobs != NULL) {
		struct fetch_job *j = s->jobs;
		job_unlink(s, j);
		job_free(j);
	}
	while (s->cache != NULL) {
		struct cache_entry *e = s->cache;
		s->cache = e->next;
		free(e->domain);
		mta_sts_policy_clear(&e->policy);
		free(e);
	}
	free((char *)s->set.cache_dir);
	free((char *)s->set.ca_file);
	free((char *)s->set.tlsrpt_dir);
	free(s);
}

static void job_unlink(struct mta_sts *s, struct fetch_job *j)
{
	if (j->prev != NULL)
		j->prev->next = j->next;
	else if (s->jobs == j)
		s->jobs = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
	j->prev = j->next = NULL;
}

static void job_free(struct fetch_job *j)
{
	free(j->url);
	free(j->connect_to);
	free(j->ca_file);
	free(j->content_type);
	buf_deinit(&j->body);
	free(j);
}

static void req_free(struct mta_sts_req *r)
{
	struct mta_sts *s = r->s;
	if (r->prev != NULL)
		r->prev->next = r->next;
	else if (s->reqs == r)
		s->reqs = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	dns_query_cancel(&r->q);
	if (r->job != NULL)
		r->job->req = NULL; /* the pool thread finishes it; done frees it */
	if (r->done_ev != NULL)
		event_free(r->done_ev);
	mta_sts_policy_clear(&r->result);
	free(r->domain);
	free(r);
}

void mta_sts_req_cancel(struct mta_sts_req **rp)
{
	if (*rp == NULL)
		return;
	req_free(*rp);
	*rp = NULL;
}

/* A file name for the domain, or false when it has characters we do not put in paths. */
static bool cache_path(const struct mta_sts *s, const char *domain, char *out, size_t size)
{
	if (s->set.cache_dir == NULL || domain[0] == '.' || domain[0] == '\0')
		return false;
	for (const char *p = domain; *p != '\0'; p++)
		if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == '_'))
			return false;
	return (size_t)snprintf(out, size, "%s/%s.policy", s->set.cache_dir, domain) < size;
}

static struct cache_entry *cache_find(struct mta_sts *s, const char *domain)
{
	for (struct cache_entry *e = s->cache; e != NULL; e = e->next)
		if (strcasecmp(e->domain, domain) == 0)
			return e;
	return NULL;
}

static void cache_store(struct mta_sts *s, const char *domain, const struct mta_sts_policy *p, bool to_disk,
                        const char *text, size_t text_len)
{
	struct cache_entry *e = cache_find(s, domain);
	if (e == NULL) {
		if (s->cache_count >= MAX_CACHE) {
			/* drop the oldest (the list tail) */
			struct cache_entry **pp = &s->cache;
			while ((*pp)->next != NULL)
				pp = &(*pp)->next;
			free((*pp)->domain);
			mta_sts_policy_clear(&(*pp)->policy);
			free(*pp);
			*pp = NULL;
			s->cache_count--;
		}
		e = xcalloc(1, sizeof(*e));
		e->domain = xstrdup(domain);
		e->next = s->cache;
		s->cache = e;
		s->cache_count++;
	} else {
		mta_sts_policy_clear(&e->policy);
	}
	mta_sts_policy_copy(&e->policy, p);
	char path[4096], tmp[4200];
	if (!to_disk || !cache_path(s, domain, path, sizeof(path)))
		return;
	if (mkdir(s->set.cache_dir, 0700) < 0 && errno != EEXIST)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "we");
	if (f == NULL)
		return;
	fprintf(f, "mailroute-sts id=%s fetched=%lld\n", p->id != NULL ? p->id : "", (long long)p->fetched);
	fwrite(text, 1, text_len, f);
	if (fclose(f) == 0)
		(void)rename(tmp, path);
	else
		unlink(tmp);
}

/* The memory entry, else the file (after a restart). NULL if none. */
static const struct mta_sts_policy *cache_get(struct mta_sts *s, const char *domain)
{
	struct cache_entry *e = cache_find(s, domain);
	if (e != NULL)
		return &e->policy;
	char path[4096];
	if (!cache_path(s, domain, path, sizeof(path)))
		return NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct buf b;
	buf_init(&b, MTA_STS_MAX_POLICY + 200);
	char chunk[4096];
	ssize_t n;
	bool ok = true;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		ok &= buf_append(&b, chunk, (size_t)n) >= 0;
	close(fd);
	const struct mta_sts_policy *ret = NULL;
	char idbuf[40];
	long long fetched = 0;
	const char *nl = ok && b.len > 0 ? memchr(b.data, '\n', b.len) : NULL;
	if (nl != NULL && sscanf(b.data, "mailroute-sts id=%39[A-Za-z0-9] fetched=%lld", idbuf, &fetched) == 2) {
		struct mta_sts_policy p = { 0 };
		const char *err;
		size_t off = (size_t)(nl + 1 - b.data);
		if (mta_sts_policy_parse(b.data + off, b.len - off, &p, &err) == 1) {
			p.id = xstrdup(idbuf);
			p.fetched = (time_t)fetched;
			cache_store(s, domain, &p, false, NULL, 0);
			mta_sts_policy_clear(&p);
			ret = &cache_find(s, domain)->policy;
		}
	}
	buf_deinit(&b);
	return ret;
}

static bool policy_fresh(const struct mta_sts_policy *p)
{
	return p->fetched + (time_t)p->max_age > time(NULL);
}

static void done_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mta_sts_req *r = arg;
	(void)fd;
	(void)what;
	mta_sts_cb *cb = r->cb;
	void *cbarg = r->arg;
	struct mta_sts_policy p = r->result;
	bool have = r->have_result;
	memset(&r->result, 0, sizeof(r->result));
	req_free(r);
	cb(cbarg, have ? &p : NULL);
	mta_sts_policy_clear(&p);
}

/* Finish with p (copied) or none; always from a callback, so never inside mta_sts_get. */
static void req_finish(struct mta_sts_req *r, const struct mta_sts_policy *p)
{
	if (p != NULL) {
		mta_sts_policy_copy(&r->result, p);
		r->have_result = true;
		log_debug("mta-sts event=policy domain=%s mode=%s id=%s", r->domain, mta_sts_mode_name(p->mode),
		          p->id != NULL ? p->id : "-");
	}
	r->done_ev = evtimer_new(r->s->base, done_ev_cb, r);
	struct timeval tv = { 0, 0 };
	evtimer_add(r->done_ev, &tv);
}

/* A fetch failed: the cached, unexpired policy still applies (RFC 8461 5.1). */
static void req_fail(struct mta_sts_req *r, const char *result_type, const char *reason)
{
	log_warn("mta-sts event=fetch-failed domain=%s result=%s error=\"%.200s\"", r->domain, result_type, reason);
	tlsrpt_record(r->s->set.tlsrpt_dir, "sts", r->domain, NULL, NULL, result_type, reason, NULL);
	const struct mta_sts_policy *c = cache_get(r->s, r->domain);
	req_finish(r, c != NULL && policy_fresh(c) ? c : NULL);
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct fetch_job *j = arg;
	size_t n = size * nmemb;
	if (buf_append(&j->body, ptr, n) < 0) {
		j->too_big = true;
		return 0;
	}
	return n;
}

static void fetch_work(void *arg)
{
	struct fetch_job *j = arg;
	CURL *h = curl_easy_init();
	struct curl_slist *ct = NULL;
	if (h == NULL) {
		j->curl_rc = CURLE_FAILED_INIT;
		return;
	}
	ct = curl_slist_append(ct, j->connect_to);
	curl_easy_setopt(h, CURLOPT_URL, j->url);
	curl_easy_setopt(h, CURLOPT_CONNECT_TO, ct);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)j->timeout_ms);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "mailroute-mta-sts");
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (j->ca_file != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, j->ca_file);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, j);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, j->err);
	j->curl_rc = (int)curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &j->http_code);
	curl_easy_getinfo(h, CURLINFO_SSL_VERIFYRESULT, &j->ssl_verify);
	char *ctype = NULL;
	if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ctype) == CURLE_OK && ctype != NULL)
		j->content_type = xstrdup(ctype);
	curl_easy_cleanup(h);
	curl_slist_free_all(ct);
}

static void fetch_done(void *arg)
{
	struct fetch_job *j = arg;
	struct mta_sts_req *r = j->req;
	job_unlink(j->s, j);
	if (r == NULL) {
		job_free(j);
		return;
	}
	r->job = NULL;
	char msg[600];
	if (j->curl_rc != CURLE_OK) {
		bool pki = j->curl_rc == CURLE_PEER_FAILED_VERIFICATION || j->curl_rc == CURLE_SSL_CACERT_BADFILE;
		snprintf(msg, sizeof(msg), "%s: %s", curl_easy_strerror((CURLcode)j->curl_rc), j->err);
		req_fail(r, pki ? "sts-webpki-invalid" : "sts-policy-fetch-error", msg);
	} else if (j->http_code != 200) {
		snprintf(msg, sizeof(msg), "HTTP status %ld", j->http_code);
		req_fail(r, "sts-policy-fetch-error", msg);
	} else if (j->content_type == NULL || strncasecmp(j->content_type, "text/plain", 10) != 0) {
		snprintf(msg, sizeof(msg), "content type %.100s is not text/plain",
		         j->content_type != NULL ? j->content_type : "(none)");
		req_fail(r, "sts-policy-invalid", msg);
	} else {
		struct mta_sts_policy p = { 0 };
		const char *err;
		if (mta_sts_policy_parse(j->body.data != NULL ? j->body.data : "", j->body.len, &p, &err) < 0) {
			req_fail(r, "sts-policy-invalid", err);
		} else {
			p.id = xstrdup(r->id);
			p.fetched = time(NULL);
			log_info("mta-sts event=fetched domain=%s id=%s mode=%s max_age=%lu mx=%zu", r->domain, r->id,
			         mta_sts_mode_name(p.mode), p.max_age, p.mx_count);
			cache_store(r->s, r->domain, &p, true, j->body.data, j->body.len);
			req_finish(r, &p);
			mta_sts_policy_clear(&p);
		}
	}
	job_free(j);
}

static void addr_cb(void *arg, const struct dns_result *res)
{
	struct mta_sts_req *r = arg;
	struct mta_sts *s = r->s;
	char ip[INET6_ADDRSTRLEN + 2], tmp[INET6_ADDRSTRLEN];
	r->q = NULL;
	if ((res->status != DNS_OK || res->count == 0) && !r->tried_aaaa) {
		char name[300];
		r->tried_aaaa = true;
		snprintf(name, sizeof(name), "mta-sts.%s", r->domain);
		r->q = dns_lookup_aaaa(s->set.dns, name, addr_cb, r);
		return;
	}
	int fam = res->count > 0 ? res->addr[0].family : AF_INET;
	if (res->status != DNS_OK || res->count == 0 ||
	    inet_ntop(fam, fam == AF_INET ? (const void *)&res->addr[0].u.v4 : (const void *)&res->addr[0].u.v6, tmp,
	              sizeof(tmp)) == NULL) {
		req_fail(r, "sts-policy-fetch-error", "mta-sts host has no address");
		return;
	}
	snprintf(ip, sizeof(ip), fam == AF_INET6 ? "[%s]" : "%s", tmp);
	struct fetch_job *j = xcalloc(1, sizeof(*j));
	j->req = r;
	j->s = s;
	j->next = s->jobs;
	if (s->jobs != NULL)
		s->jobs->prev = j;
	s->jobs = j;
	j->url = xasprintf("https://mta-sts.%s/.well-known/mta-sts.txt", r->domain);
	j->connect_to = xasprintf("::%s:%u", ip, s->set.port);
	j->ca_file = s->set.ca_file != NULL ? xstrdup(s->set.ca_file) : NULL;
	j->timeout_ms = s->set.timeout_ms;
	buf_init(&j->body, MTA_STS_MAX_POLICY);
	r->job = j;
	workpool_submit(s->pool, fetch_work, fetch_done, j);
}

static void txt_cb(void *arg, const struct dns_result *res)
{
	struct mta_sts_req *r = arg;
	struct mta_sts *s = r->s;
	r->q = NULL;
	int found = 0;
	if (res->status == DNS_OK) {
		for (size_t i = 0; i < res->count; i++) {
			char id[40];
			int k = mta_sts_txt_parse(res->txt[i], id, sizeof(id));
			if (k != 0) {
				found = found == 0 && k == 1 ? 1 : -1; /* more than one, or broken: none */
				if (found == 1)
					snprintf(r->id, sizeof(r->id), "%s", id);
			}
		}
	}
	const struct mta_sts_policy *c = cache_get(s, r->domain);
	if (found != 1) {
		/* no (usable) record: a cached unexpired policy still holds (RFC 8461 5.1) */
		req_finish(r, c != NULL && policy_fresh(c) ? c : NULL);
		return;
	}
	if (c != NULL && policy_fresh(c) && c->id != NULL && strcmp(c->id, r->id) == 0) {
		req_finish(r, c);
		return;
	}
	char name[300];
	snprintf(name, sizeof(name), "mta-sts.%s", r->domain);
	r->q = dns_lookup_a(s->set.dns, name, addr_cb, r);
}

struct mta_sts_req *mta_sts_get(struct mta_sts *s, const char *domain, mta_sts_cb *cb, void *arg)
{
	struct mta_sts_req *r = xcalloc(1, sizeof(*r));
	char name[300];
	r->s = s;
	r->domain = xstrdup(domain);
	for (char *p = r->domain; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	r->cb = cb;
	r->arg = arg;
	r->next = s->reqs;
	if (s->reqs != NULL)
		s->reqs->prev = r;
	s->reqs = r;
	snprintf(name, sizeof(name), "_mta-sts.%s", r->domain);
	r->q = dns_lookup_txt(s->set.dns, name, txt_cb, r);
	return r;
}
