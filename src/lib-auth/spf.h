/*
 * spf: Sender Policy Framework (RFC 7208) evaluation, synchronous over the
 * authdns interface (run it off the event loop). No global state; thread-safe.
 *
 * spf_check_host() is the RFC's check_host(): ip, the domain to check, the
 * sender (local@domain, used for %{s} %{l} %{o}) and the HELO name (%{h}).
 * spf_check_mailfrom() and spf_check_helo() build those arguments for the two
 * identities (an empty MAIL FROM uses postmaster@<helo>).
 *
 * Limits: 10 DNS mechanisms/redirects, 2 void lookups, 10 MX names, 10 PTR
 * names, SPF_MAX_QUERIES queries in all (%{p} is resolved once per domain),
 * records of at most AUTHDNS_MAX_TXT bytes and SPF_MAX_TERMS terms,
 * macro expansions of at most SPF_MAX_EXPAND bytes, recursion depth
 * SPF_MAX_DEPTH. Anything over a limit is permerror, never a crash.
 *
 * The outcome owns heap strings freed by spf_outcome_free().
 */
#ifndef MR_SPF_H
#define MR_SPF_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "lib-auth/authdns.h"

#define SPF_MAX_DNS_MECH 10
#define SPF_MAX_VOID 2
#define SPF_MAX_TERMS 512
#define SPF_MAX_EXPAND 2048
#define SPF_MAX_DEPTH 20
#define SPF_MAX_QUERIES 200  /* all DNS queries of one check (MX/PTR/%{p} included) */

enum spf_result {
	SPF_RESULT_NONE = 0,
	SPF_RESULT_NEUTRAL,
	SPF_RESULT_PASS,
	SPF_RESULT_FAIL,
	SPF_RESULT_SOFTFAIL,
	SPF_RESULT_TEMPERROR,
	SPF_RESULT_PERMERROR,
};

struct spf_ip {
	int family;        /* AF_INET or AF_INET6 */
	uint8_t addr[16];  /* network order; 4 bytes used for AF_INET */
};

struct spf_outcome {
	enum spf_result result;
	char *explanation;  /* expanded exp= text on fail, else NULL (use a default) */
	char *mechanism;    /* the term that matched ("-all", "redirect=..."), or NULL */
	char *problem;      /* why temperror/permerror/none, or NULL */
	unsigned dns_mechanisms;
	unsigned void_lookups;
};

/* Optional extras for macros; NULL fields/zero mean defaults. */
struct spf_options {
	const char *receiver;  /* %{r}: our host name; default "unknown" */
	time_t now;            /* %{t}; 0 = time(NULL) */
};

/* Parse an IPv4 or IPv6 literal; an IPv4-mapped IPv6 address becomes IPv4.
   Returns 1 on success, -1 if malformed. */
int spf_ip_parse(const char *s, struct spf_ip *ip_r);

/* RFC 7208 check_host(). domain: the domain to evaluate; sender: the
   MAIL FROM address (or postmaster@helo); helo: the HELO/EHLO name. Fills *out
   (call spf_outcome_free after) and returns out->result. */
enum spf_result spf_check_host(const struct spf_ip *ip, const char *domain, const char *sender,
			       const char *helo, const struct authdns *dns, struct spf_outcome *out);
enum spf_result spf_check_host_opts(const struct spf_ip *ip, const char *domain, const char *sender,
				    const char *helo, const struct authdns *dns,
				    const struct spf_options *opts, struct spf_outcome *out);

/* MAIL FROM identity: mailfrom may be "" (null reverse path: the HELO is
   checked as postmaster@helo) or lack a local part ("postmaster" is used). */
enum spf_result spf_check_mailfrom(const struct spf_ip *ip, const char *mailfrom, const char *helo,
				   const struct authdns *dns, const struct spf_options *opts,
				   struct spf_outcome *out);
/* HELO identity. */
enum spf_result spf_check_helo(const struct spf_ip *ip, const char *helo, const struct authdns *dns,
			       const struct spf_options *opts, struct spf_outcome *out);

void spf_outcome_free(struct spf_outcome *out);
/* "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror" */
const char *spf_result_name(enum spf_result r);

/* Macro expansion, exposed for tests and the fuzzer: expands macro string s
   (exp: allow c, r, t and spaces) for the given context. Returns 1 and a heap
   string in *out_r, or -1 on a syntax error / over SPF_MAX_EXPAND. */
int spf_macro_expand(const char *s, bool exp, const struct spf_ip *ip, const char *sender,
		     const char *domain, const char *helo, const struct spf_options *opts,
		     char **out_r);
/* Syntax-check a whole SPF record (starting "v=spf1"): 1 valid, -1 invalid
   with a static reason in *error_r. */
int spf_record_check(const char *record, const char **error_r);

#endif
