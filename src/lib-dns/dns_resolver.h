/*
 * dns_resolver: asynchronous DNS on the caller's libevent base, through
 * libunbound in event mode (no threads, no forked helper). Optional forwarders
 * "IP" or "IP@PORT" (config dns.forward); without them unbound recurses itself.
 *
 * Every lookup takes a callback that runs later on the event loop, exactly
 * once, never from inside the dns_lookup_* call, unless the query is cancelled
 * first (dns_query_cancel; do that when the requester goes away). The result
 * passed to the callback lives only during the call (dns_result_dup to keep it).
 *
 * Names may be internationalized (UTF-8): they are looked up in their A-label
 * (xn--) form (IDNA2008 non-transitional, libidn2).
 *
 * Results are classified OK / NXDOMAIN / NODATA / TEMPFAIL (plus NULL_MX for
 * MX). MX lookups are sorted by preference with equal preferences shuffled on
 * every delivery; a domain without MX gets the implicit MX (the domain itself,
 * preference 0, implicit_mx set). Each query is bounded by a timeout
 * (TEMPFAIL "timeout"). Positive answers are cached for their TTL (capped by
 * max_ttl), negative ones for the SOA minimum (capped), TEMPFAIL never; the
 * cache holds at most cache_max entries (least recently used evicted).
 */
#ifndef MR_DNS_RESOLVER_H
#define MR_DNS_RESOLVER_H

#include <stddef.h>
#include <stdint.h>

#include "lib-dns/dns_packet.h"

struct event_base;
struct dns_resolver;
struct dns_query;

typedef void dns_callback(void *arg, const struct dns_result *res);

struct dns_resolver_settings {
	unsigned timeout_ms; /* per query; default 10000 */
	size_t cache_max;    /* entries; default 10000; 0 keeps the default, use cache_off to disable */
	bool cache_off;
	uint32_t max_ttl;    /* seconds; default 86400 */
	const char *trust_anchor_file; /* optional: enables DNSSEC "secure" results */
	bool use_resolv_conf;          /* without forwarders: use /etc/resolv.conf's servers instead of
	                                  recursing from the root */
};

/*
 * forwarders: n strings "IP" or "IP@PORT" (NULL/0: full recursion). Returns
 * NULL with an allocated *error_r on a bad forwarder or a libunbound error.
 */
struct dns_resolver *dns_resolver_new(struct event_base *base, const char *const *forwarders, size_t n,
                                      char **error_r);
struct dns_resolver *dns_resolver_new_with(struct event_base *base, const char *const *forwarders,
                                           size_t n, const struct dns_resolver_settings *set,
                                           char **error_r);
/* Pending callbacks are dropped (never called). Not from inside a dns callback. */
void dns_resolver_free(struct dns_resolver **r);

/* Generic lookup of qtype (one of DNS_TYPE_*). name: a domain, trailing dot optional. */
struct dns_query *dns_lookup(struct dns_resolver *r, const char *name, uint16_t qtype, dns_callback *cb,
                             void *arg);
struct dns_query *dns_lookup_mx(struct dns_resolver *r, const char *domain, dns_callback *cb, void *arg);
struct dns_query *dns_lookup_a(struct dns_resolver *r, const char *name, dns_callback *cb, void *arg);
struct dns_query *dns_lookup_aaaa(struct dns_resolver *r, const char *name, dns_callback *cb, void *arg);
struct dns_query *dns_lookup_txt(struct dns_resolver *r, const char *name, dns_callback *cb, void *arg);
/* TLSA for port/proto/host: "_25._tcp.host"; res->secure tells whether DNSSEC validated it. */
struct dns_query *dns_lookup_tlsa(struct dns_resolver *r, const char *host, unsigned port,
                                  dns_callback *cb, void *arg);
/* Reverse lookup of an IPv4/IPv6 address in text form; NULL if ip does not parse. */
struct dns_query *dns_lookup_ptr(struct dns_resolver *r, const char *ip, dns_callback *cb, void *arg);

/* Cancel a pending query: its callback will not run. Sets *q to NULL; NULL is a no-op. */
void dns_query_cancel(struct dns_query **q);

/* Cache statistics (tests, metrics). */
size_t dns_resolver_cache_count(const struct dns_resolver *r);
unsigned long dns_resolver_cache_hits(const struct dns_resolver *r);

/*
 * Blocking variant for worker threads (SPF, DKIM): its own libunbound context,
 * not shared with the event loop. One dns_sync per thread. Returns the result
 * (caller frees with dns_result_free); never NULL (TEMPFAIL on errors). Same
 * classification, MX sorting, implicit MX and null MX as the async lookups.
 */
struct dns_sync;
struct dns_sync *dns_sync_new(const char *const *forwarders, size_t n, unsigned timeout_ms, char **error_r);
void dns_sync_free(struct dns_sync **s);
struct dns_result *dns_sync_lookup(struct dns_sync *s, const char *name, uint16_t qtype);

/* "IP@PORT"/"IP" syntax check (config validation). 1 ok, -1 bad. */
int dns_forwarder_check(const char *fwd, const char **error_r);

#endif
