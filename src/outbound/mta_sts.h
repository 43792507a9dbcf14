/*
 * mta_sts: MTA-STS (RFC 8461) for outbound MX delivery.
 *
 * Pure part: the policy parser (3.2), the TXT record parser (3.1) and MX
 * pattern matching (4.1: "*." matches exactly one leftmost label).
 *
 * Async part (on the caller's loop): mta_sts_get(domain) looks up the TXT
 * record _mta-sts.<domain>; when the id equals the cached policy's and that
 * policy has not expired, the cached one is used; otherwise the policy is
 * fetched from https://mta-sts.<domain>/.well-known/mta-sts.txt with libcurl on
 * a workpool thread (the loop never blocks): the host's address comes from our
 * resolver (CURLOPT_CONNECT_TO, so certificate and Host: stay mta-sts.<domain>),
 * no redirects, at most 64 KiB, HTTP 200 with text/plain, verified against the
 * system CAs or ca_file. A fetched policy is cached in memory and in
 * <cache_dir>/<domain>.policy (a header line "mailroute-sts id=ID fetched=UNIXTIME"
 * then the policy text), which is read when the memory has no entry (restart).
 * Failures (no TXT and nothing cached: "no policy"; fetch or parse errors:
 * the unexpired cached policy is used if any, RFC 8461 5.1) are recorded for
 * TLS-RPT (sts-policy-fetch-error, sts-policy-invalid, sts-webpki-invalid).
 * The callback runs later on the loop, exactly once, unless cancelled.
 * The process must have called evthread_use_pthreads() before creating the base.
 */
#ifndef MR_MTA_STS_H
#define MR_MTA_STS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define MTA_STS_MAX_MX 32
#define MTA_STS_MAX_POLICY 65536
#define MTA_STS_MAX_AGE 31557600

enum mta_sts_mode { MTA_STS_MODE_NONE, MTA_STS_MODE_TESTING, MTA_STS_MODE_ENFORCE };

struct mta_sts_policy {
	enum mta_sts_mode mode;
	unsigned long max_age;        /* seconds */
	char *mx[MTA_STS_MAX_MX];     /* lowercase patterns, no trailing dot */
	size_t mx_count;
	char *id;                     /* the TXT id it was fetched under (async part) */
	time_t fetched;
};

/* 1 parsed into p (zeroed by the caller; mta_sts_policy_clear after), -1 invalid (*error_r static). */
int mta_sts_policy_parse(const char *text, size_t len, struct mta_sts_policy *p, const char **error_r);
void mta_sts_policy_clear(struct mta_sts_policy *p);
void mta_sts_policy_copy(struct mta_sts_policy *dst, const struct mta_sts_policy *src);
const char *mta_sts_mode_name(enum mta_sts_mode m);

/* Case-insensitive, trailing dots ignored; "*.example.com" matches "mx.example.com" only. */
bool mta_sts_mx_match(const char *pattern, const char *host);
/* Some mx pattern of p matches host. */
bool mta_sts_policy_allows(const struct mta_sts_policy *p, const char *host);

/* One TXT record: 1 "v=STSv1; id=ID" (id copied), 0 not an STS record, -1 an STS record without a valid id. */
int mta_sts_txt_parse(const char *txt, char *id, size_t id_size);

struct event_base;
struct dns_resolver;
struct mta_sts;
struct mta_sts_req;

struct mta_sts_settings {
	struct dns_resolver *dns;  /* required */
	const char *cache_dir;     /* NULL: memory only */
	const char *ca_file;       /* NULL: system CAs */
	unsigned port;             /* HTTPS port of mta-sts.<domain>; 0 = 443 (tests use another) */
	unsigned timeout_ms;       /* whole fetch; 0 = 60000 */
	const char *tlsrpt_dir;    /* NULL: failures are only logged */
};

/* NULL policy: none applies (callback gets a policy valid only during the call). */
typedef void mta_sts_cb(void *arg, const struct mta_sts_policy *policy);

struct mta_sts *mta_sts_new(struct event_base *base, const struct mta_sts_settings *set);
/* Pending requests are dropped without callbacks. */
void mta_sts_free(struct mta_sts **s);
struct mta_sts_req *mta_sts_get(struct mta_sts *s, const char *domain, mta_sts_cb *cb, void *arg);
void mta_sts_req_cancel(struct mta_sts_req **r);

#endif
