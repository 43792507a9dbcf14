/*
 * dmarc: Domain-based Message Authentication, Reporting and Conformance
 * (RFC 7489): the record parser, policy discovery (_dmarc.<From domain>, then
 * the organizational domain from the Public Suffix List via libpsl),
 * identifier alignment and the policy decision with pct sampling.
 *
 * The evaluator is synchronous over authdns (run it off the event loop). The
 * PSL is loaded once per process (psl_latest: the newer of the system list
 * and libpsl's built-in one) and is read-only afterwards, so everything here is
 * thread-safe. The random source for pct= is injectable for tests.
 * Results own their strings; free with dmarc_outcome_free / dmarc_record_free.
 */
#ifndef MR_DMARC_H
#define MR_DMARC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib-auth/authdns.h"
#include "lib-auth/dkim.h"
#include "lib-auth/spf.h"

#define DMARC_MAX_URIS 8

enum dmarc_policy {
	DMARC_POLICY_UNSPECIFIED = 0,
	DMARC_POLICY_NONE,
	DMARC_POLICY_QUARANTINE,
	DMARC_POLICY_REJECT,
};

struct dmarc_record {
	enum dmarc_policy p;
	enum dmarc_policy sp;     /* = p when absent */
	bool adkim_strict;        /* adkim=s */
	bool aspf_strict;         /* aspf=s */
	unsigned pct;             /* 0..100, default 100 */
	char *rua[DMARC_MAX_URIS];
	size_t rua_count;
	char *ruf[DMARC_MAX_URIS];
	size_t ruf_count;
	char fo[16];              /* default "0" */
	bool rf_afrf;             /* rf=afrf (the only format defined) */
	uint32_t ri;              /* default 86400 */
	bool p_implied;           /* no valid p=, but a valid rua=: treated as p=none (6.6.3) */
};

/* Parse a TXT record. 1 on success; -1 with *error_r one of "empty",
   "bad version", "bad value", "no p=" ("syntax" for tag-list errors). */
int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *r, const char **error_r);
void dmarc_record_free(struct dmarc_record *r);
const char *dmarc_policy_name(enum dmarc_policy p);

/* Organizational domain (RFC 7489 3.2) of a domain: its registrable domain
   per the PSL, lowercased; the domain itself when it is a public suffix or
   unlisted. Heap string, or NULL if the domain is empty/malformed. */
char *dmarc_org_domain(const char *domain);
/* Registrable domain per the PSL (lowercased), or NULL when the name is a
   public suffix itself, unlisted single label, or starts with a dot. */
char *dmarc_registrable_domain(const char *domain);
/* Identifier alignment: strict = equal, relaxed = same organizational domain.
   Leading/trailing dots ignored, case-insensitive. */
bool dmarc_aligned(const char *from_domain, const char *other_domain, bool strict);
/* Domain of the (first) address in a From: header value: heap, lowercased;
   NULL if none. *count_r (optional) = number of addresses seen. */
char *dmarc_from_domain(const char *from_value, size_t *count_r);

enum dmarc_result {
	DMARC_RESULT_NONE = 0,   /* no policy published (or From unusable) */
	DMARC_RESULT_PASS,
	DMARC_RESULT_FAIL,
	DMARC_RESULT_TEMPERROR,  /* policy lookup failed temporarily */
	DMARC_RESULT_PERMERROR,  /* e.g. malformed From domain */
};

struct dmarc_dkim_input {
	const char *domain;      /* d= */
	enum dkim_result result;
};

struct dmarc_input {
	const char *from_domain;         /* RFC5322.From domain */
	const char *spf_domain;          /* MAIL FROM domain (HELO for the null sender), or NULL */
	enum spf_result spf_result;
	const struct dmarc_dkim_input *dkim;
	size_t dkim_count;
	/* pct sampling: returns a uniform value in 0..99; NULL = getrandom() */
	unsigned (*random_percent)(void *ctx);
	void *random_ctx;
};

struct dmarc_outcome {
	enum dmarc_result result;
	enum dmarc_policy policy;        /* published policy that applies (p or sp) */
	enum dmarc_policy disposition;   /* what to do after pct sampling (NONE on pass) */
	bool sampled_out;                /* pct excluded this message: disposition lowered */
	bool spf_aligned;
	bool dkim_aligned;
	char *dkim_domain;               /* the aligned passing d=, or NULL */
	char *record_domain;             /* where the record was found (_dmarc. stripped) */
	char *org_domain;
	struct dmarc_record record;      /* valid when record_domain != NULL */
	char *problem;
};

/* Discover the policy and evaluate. Returns out->result. */
enum dmarc_result dmarc_evaluate(const struct dmarc_input *in, const struct authdns *dns,
				 struct dmarc_outcome *out);
void dmarc_outcome_free(struct dmarc_outcome *out);
const char *dmarc_result_name(enum dmarc_result r);

#endif
