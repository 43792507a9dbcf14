/*
 * route: recipient resolution against the directory (DESIGN.md 4.2), used by
 * the lookup role at RCPT time and by `mailroute explain`.
 *
 * Order for one address (after lowercasing it):
 *   domain: unknown, relay or backup -> ROUTE_NOT_LOCAL (the caller decides
 *     whether to relay); a domain alias rewrites the domain (chains allowed,
 *     up to 5 hops) and resolution continues;
 *   1. exact user            -> a LOCAL recipient
 *   2. alias                 -> each target resolved in turn (nested)
 *   3. regex alias           -> first matching pattern, in the order added;
 *                               $1..$9 in targets are the captures, $$ is '$'
 *   4. subaddress user+tag   -> "user" resolved by 1-3, the tag becomes the
 *                               folder of the LOCAL recipients it produces
 *   5. catch-all "@domain"   -> its targets
 *   6. ROUTE_UNKNOWN_USER (550 5.1.1).
 * A target whose domain is not local (unknown, relay or backup domain) is a
 * REMOTE recipient; a target "kind:name" (webhook:x, pipe:x) is a NAMED one.
 * Each final recipient appears once (first occurrence wins). A cycle, or
 * nesting deeper than max_depth, gives ROUTE_LOOP (550 5.4.6); so does an
 * expansion that needs more than max_expansions steps. An alias target that
 * resolves to nothing (unknown user) is skipped and noted in the trace; if
 * nothing at all remains the result is ROUTE_UNKNOWN_USER.
 *
 * Regex aliases are compiled once per directory generation (cached on the
 * struct directory, rebuilt when directory_generation() moves), JIT-compiled,
 * and matched with PCRE2 match/depth limits so a bad pattern cannot hang the
 * lookup role.
 */
#ifndef MR_ROUTE_H
#define MR_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "lib-route/directory.h"

enum route_status {
	ROUTE_OK,            /* rcpt[] holds the final recipients */
	ROUTE_UNKNOWN_USER,  /* 550 5.1.1 */
	ROUTE_NOT_LOCAL,     /* domain not local: see domain/domain_type/relay */
	ROUTE_LOOP,          /* 550 5.4.6 alias loop */
	ROUTE_BAD_ADDRESS,   /* 501 5.1.3 bad recipient address syntax */
};

enum route_kind {
	ROUTE_LOCAL,   /* a mailbox: address is the user, folder the subaddress tag or NULL */
	ROUTE_REMOTE,  /* forward to address (another domain) */
	ROUTE_NAMED,   /* a named target "webhook:x" / "pipe:x", in address */
};

struct route_recipient {
	enum route_kind kind;
	char *address;
	char *folder;
};

struct route_options {
	char subaddress_separator;  /* cfg->subaddress_separator; 0 = off */
	unsigned max_depth;         /* 0 = default 10 */
	unsigned max_recipients;    /* 0 = default 1000; beyond it res->truncated is set */
	unsigned max_expansions;    /* 0 = default 10000 lookups per resolution */
	bool trace;                 /* fill res->trace (explain) */
};

struct route_result {
	enum route_status status;
	int smtp_code;              /* 250, 550, 501 (ROUTE_NOT_LOCAL: 0, the caller decides) */
	const char *enhanced;       /* "2.1.5", "5.1.1", "5.4.6", "5.1.3" */
	const char *message;        /* static reply text */
	char *address;              /* the normalized input address */
	struct route_recipient *rcpt; /* only on ROUTE_OK */
	size_t rcpt_count;
	bool truncated;             /* more than max_recipients: the rest were dropped */
	/* ROUTE_NOT_LOCAL: the domain (after domain alias rewriting) and what we know of it. */
	char *domain;
	bool domain_known;          /* false: not in the directory at all */
	enum directory_domain_type domain_type;
	char *relay;                /* the domain's relay "host[:port]" or NULL */
	char **trace;               /* with opt->trace: one line per decision */
	size_t trace_count;
};

/*
 * Resolve one recipient. Returns 1 with res filled (see res->status), -1 on a
 * directory error (*error_r allocated; the SMTP layer answers 451 4.3.0).
 * res must be released with route_result_deinit() in both cases.
 */
int route_resolve(struct directory *d, const struct route_options *opt, const char *address,
		  struct route_result *res, char **error_r);
void route_result_deinit(struct route_result *res);

const char *route_status_name(enum route_status status);
const char *route_kind_name(enum route_kind kind);

/*
 * Validate a regex alias before storing it: the pattern compiles under
 * PCRE2, and targets reference only captures that exist ($N <= capture count).
 * Returns 0, or -1 with an allocated message.
 */
int route_regex_check(const char *pattern, const char *const *targets, size_t count, char **error_r);

#endif
