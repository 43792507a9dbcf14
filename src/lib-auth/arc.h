/*
 * arc: Authenticated Received Chain (RFC 8617) verification and sealing.
 * Synchronous over authdns (run it off the event loop).
 *
 * arc_verify() collects the ARC sets (ARC-Seal, ARC-Message-Signature,
 * ARC-Authentication-Results, each with i=1..50), checks the structure,
 * the cv= values, the latest ARC-Message-Signature and every ARC-Seal, and
 * returns the chain validation status none/pass/fail.
 *
 * arc_sign() adds a set: it returns the three new header fields (to be
 * prepended to the message, in the order returned) with instance N+1 and the
 * cv= the caller passes (normally the result of arc_verify on the message as
 * received; a chain that already failed is sealed with cv=fail).
 *
 * Limits: at most ARC_MAX_INSTANCES sets; more, gaps or duplicates are fail.
 * Results own their strings: arc_verify_result_free().
 */
#ifndef MR_ARC_H
#define MR_ARC_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "lib-auth/authdns.h"
#include "lib-auth/dkim.h"

#define ARC_MAX_INSTANCES 50

enum arc_result {
	ARC_RESULT_NONE = 0,
	ARC_RESULT_PASS,
	ARC_RESULT_FAIL,
};

struct arc_verify_result {
	enum arc_result cv;
	unsigned instances;     /* N, the highest instance seen (0 = no chain) */
	unsigned failed_instance; /* instance whose check failed, 0 if none/unknown */
	char *problem;          /* why fail, or NULL */
	char *domain;           /* d= of the latest ARC-Seal, or NULL */
	bool temporary;         /* the failure was a DNS temperror */
};

struct arc_verify_options {
	time_t now;             /* for x= on AMS; 0 = time(NULL) */
};

/* Returns out->cv. */
enum arc_result arc_verify(const char *msg, size_t len, const struct authdns *dns,
			   const struct arc_verify_options *opts, struct arc_verify_result *out);
void arc_verify_result_free(struct arc_verify_result *r);
const char *arc_result_name(enum arc_result r);

struct arc_sign_options {
	const char *domain;       /* d= */
	const char *selector;     /* s= */
	const char *key_pem;      /* RSA >= 1024 bits or Ed25519 private key, PEM */
	const char *authres;      /* value for ARC-Authentication-Results after "i=N; ":
				     "authserv-id; method=result ..." */
	const char *headers;      /* colon list for the AMS h=; NULL = DKIM's default list */
	time_t now;               /* t=; 0 = time(NULL) */
};

/* Seal: 1 with *fields_r = "ARC-Seal: ...\r\nARC-Message-Signature: ...\r\n
   ARC-Authentication-Results: ...\r\n" (heap); 0 with *fields_r = NULL when
   the latest existing ARC-Seal already has cv=fail (a dead chain gets no new
   set); -1 with *error_r (bad key, chain already at ARC_MAX_INSTANCES,
   unparsable message). The ARC fields are written unfolded, tags in
   alphabetical order, one space after each ';' (the layout the ARC test
   suite standardizes, so our seals are reproducible). */
int arc_sign(const char *msg, size_t len, const struct arc_sign_options *opts, enum arc_result cv,
	     char **fields_r, const char **error_r);

#endif
