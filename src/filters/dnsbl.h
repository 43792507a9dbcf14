/*
 * dnsbl: DNS block lists with weights and a threshold, on dns_resolver
 * (lib-dns, the caller's event loop).
 *
 * An IP list (DNSBL) is asked for the client address reversed under the zone
 * (1.2.0.192.zone for 192.0.2.1; 32 nibbles for IPv6); a domain list (RHSBL)
 * for the domain itself under the zone (example.com.zone). A name that
 * resolves to an A record in 127.0.0.0/8 is a hit, except 127.255.255.0/24,
 * which block lists use for errors (query refused, rate limited): ignored.
 * With `codes` set, only those answers count (e.g. "127.0.0.2,127.0.0.4").
 * NXDOMAIN/NODATA is "not listed"; a DNS failure counts as not listed and is
 * reported in result.tempfail_zones so the caller may log it.
 *
 * The score is the sum of the weights of the zones that listed; listed is
 * score >= threshold. The callback runs once after every query answered (each
 * bounded by the resolver's timeout), later on the loop, unless cancelled;
 * the check is freed before it runs; the result lives only during it.
 */
#ifndef MR_DNSBL_H
#define MR_DNSBL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct dns_resolver;
struct dnsbl_check;

struct dnsbl_zone {
	const char *zone;    /* "zen.spamhaus.org" */
	int weight;          /* may be negative (allow lists) */
	bool rhsbl;          /* domain list (sender/HELO domain) instead of IP */
	const char *codes;   /* optional comma-separated answers that count; NULL: any 127.x */
};

struct dnsbl_settings {
	const struct dnsbl_zone *zones;
	size_t zone_count;
	int threshold;       /* listed when score >= threshold; <= 0 means 1 */
};

struct dnsbl_result {
	int score;
	bool listed;
	const char *hits;           /* "zone=127.0.0.2 zone2=127.0.0.3" (for logs/replies) or "" */
	const char *first_zone;     /* the first listing zone (reply text), NULL if none */
	unsigned tempfail_zones;    /* queries that failed */
};

typedef void dnsbl_callback(void *arg, const struct dnsbl_result *res);

/*
 * ip: the client address (text); domain: for RHSBL zones (the envelope sender's
 * or HELO domain), NULL skips them. Never NULL; with no applicable zone the
 * callback still runs later with score 0.
 */
struct dnsbl_check *dnsbl_check_start(struct event_base *base, struct dns_resolver *r,
                                      const struct dnsbl_settings *set, const char *ip, const char *domain,
                                      dnsbl_callback *cb, void *arg);
void dnsbl_check_cancel(struct dnsbl_check **c);

/* "1.2.0.192.zone" / nibbles for IPv6 / "domain.zone". 1 ok, -1 bad ip or too long. */
int dnsbl_query_name(const char *ip, const char *zone, char *out, size_t size);
int dnsbl_rhs_query_name(const char *domain, const char *zone, char *out, size_t size);
/* Does this A answer count? (127.0.0.0/8, not 127.255.255.0/24, in codes if set) */
bool dnsbl_answer_counts(const struct in_addr *a, const char *codes);

#endif
