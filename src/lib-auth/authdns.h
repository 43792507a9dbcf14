/*
 * authdns: the small synchronous DNS interface the mail-authentication
 * evaluators (SPF, DKIM, DMARC, ARC) call. The same evaluator code runs on the
 * real resolver (an adapter over libunbound, called from a worker thread, off
 * the event loop) and in tests on zone data.
 *
 * Contract for an adapter: each lookup function fills *ans (already cleared by
 * the caller with authdns_answer_init) and returns its status, also stored in
 * ans->status. CNAMEs are followed by the adapter (a CNAME loop is TEMPFAIL).
 * Records are added with authdns_answer_add(), which enforces the caps
 * (AUTHDNS_MAX_RECORDS records, AUTHDNS_MAX_TXT bytes per TXT record after the
 * character-strings are concatenated); if it returns -1 the adapter stops
 * adding and the answer becomes PERMFAIL. Names are given without a trailing
 * dot, and compared case-insensitively. The caller owns *ans and frees it with
 * authdns_answer_clear().
 *
 * Record data by type:
 *   TXT:  the character-strings concatenated (may contain any byte; len given)
 *   A:    4 bytes network order;  AAAA: 16 bytes
 *   MX:   the exchange name (NUL-terminated, no trailing dot), pref = preference
 *   PTR:  the target name (NUL-terminated, no trailing dot)
 */
#ifndef MR_AUTHDNS_H
#define MR_AUTHDNS_H

#include <stddef.h>
#include <stdint.h>

#define AUTHDNS_MAX_RECORDS 64
#define AUTHDNS_MAX_TXT 8192
#define AUTHDNS_MAX_NAME 255

enum authdns_status {
	AUTHDNS_OK = 0,    /* one or more records (count > 0) */
	AUTHDNS_NXDOMAIN,  /* the name does not exist */
	AUTHDNS_NODATA,    /* the name exists but has no record of that type */
	AUTHDNS_TEMPFAIL,  /* timeout, SERVFAIL, CNAME loop: try again later */
	AUTHDNS_PERMFAIL,  /* malformed answer or query, over a cap */
};

struct authdns_record {
	char *data;   /* heap, NUL-terminated after len */
	size_t len;
	uint16_t pref; /* MX preference */
};

struct authdns_answer {
	enum authdns_status status;
	uint32_t ttl;  /* smallest TTL of the records, 0 if unknown */
	size_t count;
	struct authdns_record rr[AUTHDNS_MAX_RECORDS];
};

typedef int authdns_lookup_fn(void *ctx, const char *name, struct authdns_answer *ans);

struct authdns {
	void *ctx;
	authdns_lookup_fn *txt;
	authdns_lookup_fn *a;
	authdns_lookup_fn *aaaa;
	authdns_lookup_fn *mx;
	authdns_lookup_fn *ptr;
};

void authdns_answer_init(struct authdns_answer *ans);
/* Free the records and reset to an empty answer. */
void authdns_answer_clear(struct authdns_answer *ans);
/* Append one record (copied); -1 when over a cap (answer unchanged). On success
   status becomes AUTHDNS_OK. */
int authdns_answer_add(struct authdns_answer *ans, const void *data, size_t len, uint16_t pref);
const char *authdns_status_name(enum authdns_status st);

/* Call one of the lookup functions with checks: a NULL function or a name
   longer than AUTHDNS_MAX_NAME gives PERMFAIL; a status of OK with no record
   becomes NODATA. Returns ans->status. */
enum authdns_status authdns_query(const struct authdns *dns, authdns_lookup_fn *fn,
				  const char *name, struct authdns_answer *ans);

/* RR type numbers for authdns_answer_from_rdata. */
enum authdns_rrtype {
	AUTHDNS_RR_A = 1,
	AUTHDNS_RR_PTR = 12,
	AUTHDNS_RR_MX = 15,
	AUTHDNS_RR_TXT = 16,
	AUTHDNS_RR_AAAA = 28,
};

/* For resolver adapters (e.g. libunbound's struct ub_result: data[], len[],
   ttl): append count records of rrtype given as wire-format RDATA with
   uncompressed names. TXT character-strings are concatenated; MX/PTR names
   become dotted text without the final dot (special characters as \DDD).
   Returns 0, or -1 on malformed RDATA or over a cap (ans->status is then
   PERMFAIL). A count of 0 leaves the answer NODATA. */
int authdns_answer_from_rdata(struct authdns_answer *ans, int rrtype, char *const *data, const int *len,
			      size_t count, uint32_t ttl);

#endif
