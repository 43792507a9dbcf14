/*
 * authres: the Authentication-Results header field (RFC 8601) we add after
 * checking a message, and detection of fields already in the message that
 * claim our authserv-id (RFC 8601 5: they must be removed before delivery,
 * since a sender could forge our verdicts).
 *
 * Build with authres_init, add one method result at a time, then
 * authres_finish returns "Authentication-Results: id;\r\n\tspf=...;\r\n\t...\r\n"
 * (or "id; none" with no results). Property values that are not RFC 2045
 * tokens (or addresses) are quoted. Output is capped at AUTHRES_MAX bytes;
 * results that do not fit are dropped. Comments (reasons) are sanitized.
 */
#ifndef MR_AUTHRES_H
#define MR_AUTHRES_H

#include <stdbool.h>
#include <stddef.h>

#include "lib-auth/arc.h"
#include "lib-auth/dkim.h"
#include "lib-auth/dmarc.h"
#include "lib-auth/spf.h"
#include "lib/buf.h"

#define AUTHRES_MAX 8192

struct authres {
	struct buf b;
	size_t results;
};

void authres_init(struct authres *a, const char *authserv_id);
void authres_deinit(struct authres *a);
/* spf=RESULT [(reason)] smtp.mailfrom=ADDR, or smtp.helo=NAME when mailfrom is NULL/empty */
void authres_add_spf(struct authres *a, enum spf_result r, const char *mailfrom, const char *helo,
		     const char *reason);
/* dkim=RESULT [(reason)] header.d=D header.i=I header.s=S header.a=A header.b=B */
void authres_add_dkim(struct authres *a, const struct dkim_sig_result *s);
/* dkim=none, when the message had no signature */
void authres_add_dkim_none(struct authres *a);
/* dmarc=RESULT (p=POLICY dis=DISPOSITION) header.from=DOMAIN */
void authres_add_dmarc(struct authres *a, const struct dmarc_outcome *o, const char *from_domain);
/* arc=none|pass|fail, with a comment: "(i=N)" on pass, the problem on fail */
void authres_add_arc(struct authres *a, const struct arc_verify_result *r);
/* Any other method: "METHOD=RESULT [(reason)] [PROPS]" where props is a
   preformatted "ptype.prop=value ..." string (values must be safe). */
void authres_add(struct authres *a, const char *method, const char *result, const char *reason,
		 const char *props);
/* The whole field with CRLF (heap). The builder is left empty; release it
   with authres_deinit. */
char *authres_finish(struct authres *a);
/* Just the value after "Authentication-Results: " (heap, no CRLF), e.g. for
   ARC-Authentication-Results "i=N; " + this. */
char *authres_value(struct authres *a);

/* Does this Authentication-Results field value (after the colon) claim the
   given authserv-id? Case-insensitive; comments skipped. */
bool authres_claims(const char *value, size_t len, const char *authserv_id);
/* Indexes into m->hdrs of Authentication-Results fields claiming
   authserv_id (at most max); returns how many were found in total. */
size_t authres_find_claiming(const struct dkim_msg *m, const char *authserv_id, size_t *idx, size_t max);

#endif
