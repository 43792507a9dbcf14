#include "filters/dnsbl.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib-dns/dns_resolver.h"
#include "lib/buf.h"
#include "lib/xalloc.h"

struct dnsbl_query {
	struct dnsbl_check *check;
	struct dns_query *q;
	size_t zone_index;
	bool done;
};

struct dnsbl_check {
	const struct dnsbl_settings *set;
	struct dnsbl_query *queries;
	size_t count, pending;
	struct event *ev_done;
	int score;
	unsigned tempfails;
	const char *first_zone;
	struct buf hits;
	dnsbl_callback *cb;
	void *arg;
};

int dnsbl_query_name(const char *ip, const char *zone, char *out, size_t size)
{
	struct in_addr a4;
	struct in6_addr a6;
	int n;

	if (inet_pton(AF_INET, ip, &a4) == 1) {
		const unsigned char *b = (const unsigned char *)&a4;
		n = snprintf(out, size, "%u.%u.%u.%u.%s", b[3], b[2], b[1], b[0], zone);
	} else if (inet_pton(AF_INET6, ip, &a6) == 1) {
		char tmp[64 + 1];
		size_t k = 0;
		for (int i = 15; i >= 0; i--) {
			static const char hex[] = "0123456789abcdef";
			tmp[k++] = hex[a6.s6_addr[i] & 0xf];
			tmp[k++] = '.';
			tmp[k++] = hex[a6.s6_addr[i] >> 4];
			tmp[k++] = '.';
		}
		tmp[k] = '\0';
		n = snprintf(out, size, "%s%s", tmp, zone);
	} else {
		return -1;
	}
	return n > 0 && (size_t)n < size && n <= 253 ? 1 : -1;
}

int dnsbl_rhs_query_name(const char *domain, const char *zone, char *out, size_t size)
{
	size_t dl = strlen(domain);
	while (dl > 0 && domain[dl - 1] == '.')
		dl--;
	if (dl == 0)
		return -1;
	for (size_t i = 0; i < dl; i++) {
		unsigned char ch = (unsigned char)domain[i];
		if (ch <= 0x20 || ch >= 0x7f || ch == '\\')
			return -1;
	}
	int n = snprintf(out, size, "%.*s.%s", (int)dl, domain, zone);
	return n > 0 && (size_t)n < size && n <= 253 ? 1 : -1;
}

bool dnsbl_answer_counts(const struct in_addr *a, const char *codes)
{
	const unsigned char *b = (const unsigned char *)a;
	if (b[0] != 127)
		return false;
	if (b[1] == 255 && b[2] == 255)
		return false; /* error codes (Spamhaus 127.255.255.252-255 and friends) */
	if (codes == NULL || *codes == '\0')
		return true;
	char text[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, a, text, sizeof(text));
	size_t tl = strlen(text);
	for (const char *p = codes; *p != '\0';) {
		while (*p == ',' || *p == ' ')
			p++;
		size_t l = strcspn(p, ", ");
		if (l == tl && memcmp(p, text, l) == 0)
			return true;
		p += l;
	}
	return false;
}

static void check_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dnsbl_check *c = arg;
	int threshold = c->set->threshold > 0 ? c->set->threshold : 1;
	char hits[1024];
	snprintf(hits, sizeof(hits), "%s", c->hits.data);
	struct dnsbl_result res = {.score = c->score,
	                           .listed = c->score >= threshold,
	                           .hits = hits,
	                           .first_zone = c->first_zone,
	                           .tempfail_zones = c->tempfails};
	dnsbl_callback *cb = c->cb;
	void *cbarg = c->arg;
	dnsbl_check_cancel(&c);
	cb(cbarg, &res); /* first_zone points into the caller's settings: still valid */
}

static void query_cb(void *arg, const struct dns_result *r)
{
	struct dnsbl_query *q = arg;
	struct dnsbl_check *c = q->check;
	const struct dnsbl_zone *z = &c->set->zones[q->zone_index];

	q->q = NULL;
	q->done = true;
	if (r->status == DNS_TEMPFAIL) {
		c->tempfails++;
	} else if (r->status == DNS_OK) {
		for (size_t i = 0; i < r->count; i++) {
			if (r->addr[i].family != AF_INET || !dnsbl_answer_counts(&r->addr[i].u.v4, z->codes))
				continue;
			char text[INET_ADDRSTRLEN];
			inet_ntop(AF_INET, &r->addr[i].u.v4, text, sizeof(text));
			c->score += z->weight;
			if (c->first_zone == NULL && z->weight > 0)
				c->first_zone = z->zone;
			(void)buf_printf(&c->hits, "%s%s=%s", c->hits.len ? " " : "", z->zone, text);
			break; /* one hit per zone */
		}
	}
	if (--c->pending == 0)
		event_active(c->ev_done, EV_TIMEOUT, 0);
}

struct dnsbl_check *dnsbl_check_start(struct event_base *base, struct dns_resolver *r,
                                      const struct dnsbl_settings *set, const char *ip, const char *domain,
                                      dnsbl_callback *cb, void *arg)
{
	struct dnsbl_check *c = xcalloc(1, sizeof(*c));
	c->set = set;
	c->cb = cb;
	c->arg = arg;
	buf_init(&c->hits, 900);
	c->ev_done = event_new(base, -1, 0, check_done_cb, c);
	if (c->ev_done == NULL)
		abort();
	c->queries = set->zone_count ? xcalloc(set->zone_count, sizeof(*c->queries)) : NULL;
	for (size_t i = 0; i < set->zone_count; i++) {
		const struct dnsbl_zone *z = &set->zones[i];
		char name[300];
		int ok = z->rhsbl ? (domain != NULL ? dnsbl_rhs_query_name(domain, z->zone, name, sizeof(name)) : -1)
		                  : (ip != NULL ? dnsbl_query_name(ip, z->zone, name, sizeof(name)) : -1);
		if (ok < 0)
			continue;
		struct dnsbl_query *q = &c->queries[c->count++];
		q->check = c;
		q->zone_index = i;
		c->pending++;
		q->q = dns_lookup_a(r, name, query_cb, q);
	}
	if (c->pending == 0)
		event_active(c->ev_done, EV_TIMEOUT, 0);
	return c;
}

void dnsbl_check_cancel(struct dnsbl_check **cp)
{
	struct dnsbl_check *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	for (size_t i = 0; i < c->count; i++)
		dns_query_cancel(&c->queries[i].q);
	free(c->queries);
	event_free(c->ev_done);
	buf_deinit(&c->hits);
	free(c);
}
