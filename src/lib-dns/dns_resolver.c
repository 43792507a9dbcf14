#include "lib-dns/dns_resolver.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <idn2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unbound-event.h>
#include <unbound.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#define DNS_DEFAULT_TIMEOUT_MS 10000
#define DNS_DEFAULT_CACHE_MAX 10000
#define DNS_DEFAULT_MAX_TTL 86400
#define DNS_MAX_NAME 253

struct dns_cache_entry {
	char *key;                 /* "<qtype>/<name>" */
	struct dns_result *res;
	uint64_t expires;          /* monotonic seconds */
	struct dns_cache_entry *hnext;
	struct dns_cache_entry *lru_prev, *lru_next; /* head = most recent */
};

struct dns_query {
	struct dns_resolver *r;
	char *name;                /* normalized: lowercase, no trailing dot */
	uint16_t qtype;
	dns_callback *cb;
	void *arg;
	struct event *ev;          /* timeout while waiting, then zero-delay delivery */
	struct dns_result *res;    /* result to deliver */
	struct dns_query *prev, *next;
	bool ub_pending;           /* libunbound still holds a pointer to us */
	bool user_done;            /* delivered or cancelled: the handle is gone */
	bool from_cache;
};

struct dns_resolver {
	struct event_base *base;
	struct ub_ctx *ub;
	struct dns_resolver_settings set;
	struct dns_query *queries; /* every live struct dns_query */
	struct dns_cache_entry **buckets;
	size_t nbuckets;
	size_t cache_count;
	unsigned long cache_hits;
	struct dns_cache_entry *lru_head, *lru_tail;
};

static uint64_t now_sec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

static size_t hash_str(const char *s)
{
	size_t h = 5381;
	for (; *s != '\0'; s++)
		h = h * 33 + (unsigned char)*s;
	return h;
}

int dns_forwarder_check(const char *fwd, const char **error_r)
{
	char ip[INET6_ADDRSTRLEN + 1];
	const char *at = strchr(fwd, '@');
	size_t iplen = at != NULL ? (size_t)(at - fwd) : strlen(fwd);
	unsigned char tmp[sizeof(struct in6_addr)];

	if (iplen == 0 || iplen >= sizeof(ip)) {
		*error_r = "bad forwarder address";
		return -1;
	}
	memcpy(ip, fwd, iplen);
	ip[iplen] = '\0';
	if (inet_pton(AF_INET, ip, tmp) != 1 && inet_pton(AF_INET6, ip, tmp) != 1) {
		*error_r = "forwarder is not an IP address";
		return -1;
	}
	if (at != NULL) {
		char *end;
		errno = 0;
		long port = strtol(at + 1, &end, 10);
		if (errno != 0 || *end != '\0' || end == at + 1 || port < 1 || port > 65535) {
			*error_r = "bad forwarder port";
			return -1;
		}
	}
	return 1;
}

struct dns_resolver *dns_resolver_new(struct event_base *base, const char *const *forwarders, size_t n,
                                      char **error_r)
{
	return dns_resolver_new_with(base, forwarders, n, NULL, error_r);
}

struct dns_resolver *dns_resolver_new_with(struct event_base *base, const char *const *forwarders,
                                           size_t n, const struct dns_resolver_settings *set,
                                           char **error_r)
{
	struct dns_resolver *r = xcalloc(1, sizeof(*r));
	const char *err;
	int ret;

	r->base = base;
	if (set != NULL)
		r->set = *set;
	if (r->set.timeout_ms == 0)
		r->set.timeout_ms = DNS_DEFAULT_TIMEOUT_MS;
	if (r->set.cache_max == 0)
		r->set.cache_max = DNS_DEFAULT_CACHE_MAX;
	if (r->set.max_ttl == 0)
		r->set.max_ttl = DNS_DEFAULT_MAX_TTL;
	r->nbuckets = 64;
	while (r->nbuckets < r->set.cache_max && r->nbuckets < (1u << 20))
		r->nbuckets <<= 1;
	r->buckets = xcalloc(r->nbuckets, sizeof(*r->buckets));

	for (size_t i = 0; i < n; i++) {
		if (dns_forwarder_check(forwarders[i], &err) < 0) {
			*error_r = xasprintf("dns forwarder %s: %s", forwarders[i], err);
			goto fail;
		}
	}
	r->ub = ub_ctx_create_event(base);
	if (r->ub == NULL) {
		*error_r = xstrdup("ub_ctx_create_event failed");
		goto fail;
	}
	if ((ret = ub_ctx_set_option(r->ub, "do-not-query-localhost:", "no")) != 0 ||
	    (ret = ub_ctx_set_option(r->ub, "use-syslog:", "no")) != 0) {
		*error_r = xasprintf("unbound option: %s", ub_strerror(ret));
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		if ((ret = ub_ctx_set_fwd(r->ub, forwarders[i])) != 0) {
			*error_r = xasprintf("dns forwarder %s: %s", forwarders[i], ub_strerror(ret));
			goto fail;
		}
	}
	if (r->set.use_resolv_conf && n == 0 && (ret = ub_ctx_resolvconf(r->ub, NULL)) != 0) {
		*error_r = xasprintf("resolv.conf: %s", ub_strerror(ret));
		goto fail;
	}
	if (r->set.trust_anchor_file != NULL &&
	    (ret = ub_ctx_add_ta_file(r->ub, r->set.trust_anchor_file)) != 0) {
		*error_r = xasprintf("trust anchor %s: %s", r->set.trust_anchor_file, ub_strerror(ret));
		goto fail;
	}
	/* libunbound answers .test itself otherwise (DEPENDENCIES.md pitfall 4); after other options */
	(void)ub_ctx_zone_remove(r->ub, "test.");
	return r;
fail:
	dns_resolver_free(&r);
	return NULL;
}

static void query_free(struct dns_query *q)
{
	struct dns_resolver *r = q->r;
	if (q->prev != NULL)
		q->prev->next = q->next;
	else
		r->queries = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	if (q->ev != NULL)
		event_free(q->ev);
	dns_result_free(&q->res);
	free(q->name);
	free(q);
}

static void cache_unlink(struct dns_resolver *r, struct dns_cache_entry *e)
{
	struct dns_cache_entry **pp = &r->buckets[hash_str(e->key) & (r->nbuckets - 1)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->lru_prev != NULL)
		e->lru_prev->lru_next = e->lru_next;
	else
		r->lru_head = e->lru_next;
	if (e->lru_next != NULL)
		e->lru_next->lru_prev = e->lru_prev;
	else
		r->lru_tail = e->lru_prev;
	r->cache_count--;
	dns_result_free(&e->res);
	free(e->key);
	free(e);
}

void dns_resolver_free(struct dns_resolver **rp)
{
	struct dns_resolver *r = *rp;
	if (r == NULL)
		return;
	/* deleting the context drops every pending libunbound callback */
	if (r->ub != NULL)
		ub_ctx_delete(r->ub);
	while (r->queries != NULL)
		query_free(r->queries);
	while (r->lru_head != NULL)
		cache_unlink(r, r->lru_head);
	free(r->buckets);
	free(r);
	*rp = NULL;
}

static char *cache_key(const char *name, uint16_t qtype)
{
	return xasprintf("%u/%s", qtype, name);
}

static struct dns_cache_entry *cache_get(struct dns_resolver *r, const char *key)
{
	struct dns_cache_entry *e = r->buckets[hash_str(key) & (r->nbuckets - 1)];
	for (; e != NULL; e = e->hnext) {
		if (strcmp(e->key, key) != 0)
			continue;
		if (e->expires <= now_sec()) {
			cache_unlink(r, e);
			return NULL;
		}
		/* move to the front */
		if (e != r->lru_head) {
			e->lru_prev->lru_next = e->lru_next;
			if (e->lru_next != NULL)
				e->lru_next->lru_prev = e->lru_prev;
			else
				r->lru_tail = e->lru_prev;
			e->lru_prev = NULL;
			e->lru_next = r->lru_head;
			r->lru_head->lru_prev = e;
			r->lru_head = e;
		}
		return e;
	}
	return NULL;
}

static void cache_put(struct dns_resolver *r, const char *name, const struct dns_result *res)
{
	if (r->set.cache_off || res->status == DNS_TEMPFAIL || res->ttl == 0)
		return;
	char *key = cache_key(name, res->qtype);
	struct dns_cache_entry *old = cache_get(r, key);
	if (old != NULL)
		cache_unlink(r, old);
	while (r->cache_count >= r->set.cache_max && r->lru_tail != NULL)
		cache_unlink(r, r->lru_tail);
	struct dns_cache_entry *e = xcalloc(1, sizeof(*e));
	uint32_t ttl = res->ttl < r->set.max_ttl ? res->ttl : r->set.max_ttl;
	e->key = key;
	e->res = dns_result_dup(res);
	e->expires = now_sec() + ttl;
	size_t b = hash_str(key) & (r->nbuckets - 1);
	e->hnext = r->buckets[b];
	r->buckets[b] = e;
	e->lru_next = r->lru_head;
	if (r->lru_head != NULL)
		r->lru_head->lru_prev = e;
	r->lru_head = e;
	if (r->lru_tail == NULL)
		r->lru_tail = e;
	r->cache_count++;
}

size_t dns_resolver_cache_count(const struct dns_resolver *r) { return r->cache_count; }
unsigned long dns_resolver_cache_hits(const struct dns_resolver *r) { return r->cache_hits; }

static struct dns_result *result_tempfail(uint16_t qtype, const char *why)
{
	struct dns_result *res = xcalloc(1, sizeof(*res));
	res->qtype = qtype;
	res->status = DNS_TEMPFAIL;
	res->error = xstrdup(why);
	return res;
}

/* RFC 5321 5.1: no MX records but the name exists: the domain is its own MX. */
static void apply_implicit_mx(struct dns_result *res, const char *name)
{
	if (res->qtype != DNS_TYPE_MX || res->status != DNS_NODATA)
		return;
	res->status = DNS_OK;
	res->implicit_mx = true;
	res->mx = xcalloc(1, sizeof(*res->mx));
	res->mx[0].pref = 0;
	res->mx[0].host = xstrdup(name);
	res->count = 1;
}

static void deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_query *q = arg;
	struct dns_result *res = q->res;

	if (res == NULL) {
		/* the timer fired before libunbound answered */
		res = q->res = result_tempfail(q->qtype, "timeout");
	}
	if (res->qtype == DNS_TYPE_MX)
		dns_result_sort_mx(res);
	q->user_done = true;
	q->cb(q->arg, res);
	if (!q->ub_pending)
		query_free(q);
	else
		dns_result_free(&q->res);
}

static void schedule_delivery(struct dns_query *q)
{
	struct timeval tv = { 0, 0 };
	evtimer_add(q->ev, &tv);
}

static void ub_cb(void *arg, int rcode, void *packet, int packet_len, int sec, char *why_bogus,
                  int was_ratelimited)
{
	struct dns_query *q = arg;
	struct dns_resolver *r = q->r;
	struct dns_result *res = xcalloc(1, sizeof(*res));
	const char *err;

	q->ub_pending = false;
	res->qtype = q->qtype;
	if (packet != NULL && packet_len > 0 && (rcode == 0 || rcode == 3)) {
		if (dns_packet_parse(packet, (size_t)packet_len, q->qtype, res, &err) < 0) {
			res->status = DNS_TEMPFAIL;
			res->error = xstrdup(err);
		}
	} else {
		res->status = rcode == 3 ? DNS_NXDOMAIN : DNS_TEMPFAIL;
		if (res->status == DNS_TEMPFAIL)
			res->error = xasprintf("resolver: rcode %d%s%s", rcode, why_bogus != NULL ? " " : "",
			                       why_bogus != NULL ? why_bogus : "");
		res->ttl = 60;
	}
	res->secure = sec == 2;
	res->bogus = sec == 1;
	apply_implicit_mx(res, q->name);
	cache_put(r, q->name, res);

	if (q->user_done) {
		/* cancelled or timed out already */
		dns_result_free(&res);
		query_free(q);
		return;
	}
	dns_result_free(&q->res);
	q->res = res;
	schedule_delivery(q);
}

static int normalize_name(const char *name, char *out, size_t outsize)
{
	char *alabel = NULL;
	for (const char *p = name; *p != '\0'; p++) {
		if ((unsigned char)*p >= 0x80) {
			/* an internationalized domain (SMTPUTF8): look up its A-label form */
			if (idn2_to_ascii_8z(name, &alabel, IDN2_NONTRANSITIONAL) != IDN2_OK)
				return -1;
			break;
		}
	}
	if (alabel != NULL) {
		int r = normalize_name(alabel, out, outsize);
		idn2_free(alabel);
		return r;
	}
	size_t len = strlen(name);
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_MAX_NAME || len >= outsize)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= 0x20 || c >= 0x7f)
			return -1;
		out[i] = (char)tolower(c);
	}
	out[len] = '\0';
	if (strstr(out, "..") != NULL || out[0] == '.')
		return -1;
	return 0;
}

struct dns_query *dns_lookup(struct dns_resolver *r, const char *name, uint16_t qtype, dns_callback *cb,
                             void *arg)
{
	struct dns_query *q = xcalloc(1, sizeof(*q));
	char norm[DNS_MAX_NAME + 2];

	q->r = r;
	q->qtype = qtype;
	q->cb = cb;
	q->arg = arg;
	q->ev = evtimer_new(r->base, deliver_cb, q);
	q->next = r->queries;
	if (r->queries != NULL)
		r->queries->prev = q;
	r->queries = q;

	if (normalize_name(name, norm, sizeof(norm)) < 0) {
		q->name = xstrdup("");
		q->res = xcalloc(1, sizeof(*q->res));
		q->res->qtype = qtype;
		q->res->status = DNS_NXDOMAIN;
		q->res->error = xstrdup("invalid domain name");
		schedule_delivery(q);
		return q;
	}
	q->name = xstrdup(norm);

	char *key = cache_key(q->name, qtype);
	struct dns_cache_entry *e = cache_get(r, key);
	free(key);
	if (e != NULL) {
		r->cache_hits++;
		q->res = dns_result_dup(e->res);
		q->from_cache = true;
		schedule_delivery(q);
		return q;
	}

	int id = 0;
	q->ub_pending = true;
	int ret = ub_resolve_event(r->ub, q->name, qtype, 1, q, ub_cb, &id);
	if (ret != 0) {
		q->ub_pending = false;
		dns_result_free(&q->res);
		q->res = result_tempfail(qtype, ub_strerror(ret));
		schedule_delivery(q);
		return q;
	}
	if (q->res == NULL) {
		/* not answered synchronously: arm the timeout */
		struct timeval tv = { r->set.timeout_ms / 1000, (r->set.timeout_ms % 1000) * 1000 };
		evtimer_add(q->ev, &tv);
	}
	return q;
}

void dns_query_cancel(struct dns_query **qp)
{
	struct dns_query *q = *qp;
	if (q == NULL)
		return;
	*qp = NULL;
	q->user_done = true;
	evtimer_del(q->ev);
	if (!q->ub_pending)
		query_free(q);
}

struct dns_query *dns_lookup_mx(struct dns_resolver *r, const char *domain, dns_callback *cb, void *arg)
{
	return dns_lookup(r, domain, DNS_TYPE_MX, cb, arg);
}

struct dns_query *dns_lookup_a(struct dns_resolver *r, const char *name, dns_callback *cb, void *arg)
{
	return dns_lookup(r, name, DNS_TYPE_A, cb, arg);
}

struct dns_query *dns_lookup_aaaa(struct dns_resolver *r, const char *name, dns_callback *cb, void *arg)
{
	return dns_lookup(r, name, DNS_TYPE_AAAA, cb, arg);
}

struct dns_query *dns_lookup_txt(struct dns_resolver *r, const char *name, dns_callback *cb, void *arg)
{
	return dns_lookup(r, name, DNS_TYPE_TXT, cb, arg);
}

struct dns_query *dns_lookup_tlsa(struct dns_resolver *r, const char *host, unsigned port,
                                  dns_callback *cb, void *arg)
{
	char name[DNS_MAX_NAME + 32];
	snprintf(name, sizeof(name), "_%u._tcp.%s", port, host);
	return dns_lookup(r, name, DNS_TYPE_TLSA, cb, arg);
}

struct dns_query *dns_lookup_ptr(struct dns_resolver *r, const char *ip, dns_callback *cb, void *arg)
{
	unsigned char a[16];
	char name[80];
	struct buf b;

	buf_init(&b, sizeof(name) - 1);
	if (inet_pton(AF_INET, ip, a) == 1) {
		buf_printf(&b, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
	} else if (inet_pton(AF_INET6, ip, a) == 1) {
		for (int i = 15; i >= 0; i--)
			buf_printf(&b, "%x.%x.", a[i] & 0xf, a[i] >> 4);
		buf_append_str(&b, "ip6.arpa");
	} else {
		buf_deinit(&b);
		return NULL;
	}
	snprintf(name, sizeof(name), "%s", b.data);
	buf_deinit(&b);
	return dns_lookup(r, name, DNS_TYPE_PTR, cb, arg);
}

/* ---- blocking variant: a private event base driven until the answer arrives ---- */

struct dns_sync {
	struct event_base *base;
	struct dns_resolver *r;
};

struct dns_sync *dns_sync_new(const char *const *forwarders, size_t n, unsigned timeout_ms, char **error_r)
{
	struct dns_sync *s = xcalloc(1, sizeof(*s));
	struct dns_resolver_settings set = { .timeout_ms = timeout_ms };

	s->base = event_base_new();
	if (s->base == NULL) {
		*error_r = xstrdup("event_base_new failed");
		free(s);
		return NULL;
	}
	s->r = dns_resolver_new_with(s->base, forwarders, n, &set, error_r);
	if (s->r == NULL) {
		event_base_free(s->base);
		free(s);
		return NULL;
	}
	return s;
}

void dns_sync_free(struct dns_sync **sp)
{
	struct dns_sync *s = *sp;
	if (s == NULL)
		return;
	dns_resolver_free(&s->r);
	event_base_free(s->base);
	free(s);
	*sp = NULL;
}

static void sync_cb(void *arg, const struct dns_result *res)
{
	struct dns_result **out = arg;
	*out = dns_result_dup(res);
}

struct dns_result *dns_sync_lookup(struct dns_sync *s, const char *name, uint16_t qtype)
{
	struct dns_result *res = NULL;
	struct dns_query *q = dns_lookup(s->r, name, qtype, sync_cb, &res);
	while (res != NULL ? false : true) {
		if (event_base_loop(s->base, EVLOOP_ONCE) < 0)
			break;
	}
	if (res == NULL) {
		dns_query_cancel(&q);
		res = result_tempfail(qtype, "event loop failure");
	}
	return res;
}
