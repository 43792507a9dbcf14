/*
 * dns_packet: parse a DNS response in wire format (RFC 1035) into a typed
 * dns_result for one query type. The parser is defensive: every length is
 * checked against the packet, compression pointers may only point backwards
 * and chains are bounded, so any byte string yields either a result or -1.
 *
 * A dns_result owns all its memory (dns_result_free). Only answer records of
 * the asked type are collected (any owner name, so a CNAME chain is followed
 * implicitly); the minimum TTL of those records is reported. For a negative
 * answer the TTL is the SOA minimum of the authority section (RFC 2308), capped.
 */
#ifndef MR_DNS_PACKET_H
#define MR_DNS_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#define DNS_TYPE_A 1
#define DNS_TYPE_PTR 12
#define DNS_TYPE_MX 15
#define DNS_TYPE_TXT 16
#define DNS_TYPE_AAAA 28
#define DNS_TYPE_TLSA 52

/* Hard limits on what one answer may produce. */
#define DNS_MAX_RECORDS 64
#define DNS_MAX_TXT_LEN 8192      /* one TXT record, strings concatenated */
#define DNS_MAX_TLSA_DATA 1024
#define DNS_NEG_TTL_MAX 3600

enum dns_status {
	DNS_OK = 1,
	DNS_NXDOMAIN,  /* the name does not exist */
	DNS_NODATA,    /* the name exists, no record of this type */
	DNS_TEMPFAIL,  /* SERVFAIL, timeout, unparseable answer, resolver error */
	DNS_NULL_MX,   /* MX lookups only: RFC 7505 "0 ." - the domain accepts no mail */
};

struct dns_mx {
	uint16_t pref;
	char *host;    /* lowercase, no trailing dot */
};

struct dns_addr {
	int family;    /* AF_INET or AF_INET6 */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} u;
};

struct dns_tlsa {
	uint8_t usage, selector, mtype;
	uint8_t *data;
	size_t data_len;
};

struct dns_result {
	enum dns_status status;
	uint16_t qtype;
	uint32_t ttl;
	bool secure;        /* DNSSEC validated (only meaningful with a trust anchor) */
	bool bogus;
	bool implicit_mx;   /* MX: no MX records, the domain itself was used (RFC 5321 5.1) */
	size_t count;
	/* exactly one of these is set, by qtype */
	struct dns_mx *mx;     /* sorted by preference (see dns_result_sort_mx) */
	struct dns_addr *addr; /* A and AAAA */
	char **txt;            /* TXT: character-strings of one record concatenated; PTR: names */
	struct dns_tlsa *tlsa;
	char *error;           /* TEMPFAIL: why (allocated) or NULL */
};

/*
 * Parse a response to a query of qtype. Fills res (zeroed by the caller or
 * reused after dns_result_clear). Returns 1 on a parsed answer (status OK,
 * NODATA or NXDOMAIN from the header rcode; other rcodes give TEMPFAIL), -1 on
 * a malformed packet (with error_r).
 */
int dns_packet_parse(const uint8_t *pkt, size_t len, uint16_t qtype, struct dns_result *res,
                     const char **error_r);

/* Deep copy. */
struct dns_result *dns_result_dup(const struct dns_result *res);
void dns_result_clear(struct dns_result *res);
void dns_result_free(struct dns_result **res);
/* Sort MX by preference; equal preferences are put in random order. */
void dns_result_sort_mx(struct dns_result *res);
const char *dns_status_name(enum dns_status status);

#endif
