/*
 * mailauth: the whole inbound check in one synchronous call (run it in the
 * thread pool, off the event loop): SPF for MAIL FROM (and HELO), every
 * DKIM signature, ARC chain validation, DMARC for the RFC5322.From domain,
 * and the Authentication-Results field to prepend. It also lists existing
 * Authentication-Results fields that claim our authserv-id, which the caller
 * must remove (RFC 8601 5).
 *
 * The result owns everything; free with mailauth_result_free().
 */
#ifndef MR_MAILAUTH_H
#define MR_MAILAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "lib-auth/arc.h"
#include "lib-auth/authdns.h"
#include "lib-auth/dkim.h"
#include "lib-auth/dmarc.h"
#include "lib-auth/spf.h"

#define MAILAUTH_MAX_FORGED 16

struct mailauth_request {
	const char *ip;           /* client address, text (IPv4 or IPv6) */
	const char *helo;         /* HELO/EHLO name */
	const char *mailfrom;     /* MAIL FROM address without <>, "" = null sender */
	const char *authserv_id;  /* our name in Authentication-Results */
	const char *msg;          /* the whole message, header and body */
	size_t len;
	time_t now;               /* 0 = time(NULL) */
	/* DMARC pct= sampling; NULL = getrandom() */
	unsigned (*random_percent)(void *ctx);
	void *random_ctx;
};

struct mailauth_result {
	struct spf_outcome spf;          /* MAIL FROM identity (HELO when null sender) */
	enum spf_result spf_helo;        /* HELO identity */
	struct dkim_verify_result dkim;
	struct arc_verify_result arc;
	struct dmarc_outcome dmarc;      /* result NONE when From is missing/multiple */
	char *from_domain;               /* RFC5322.From domain, or NULL */
	char *authres_field;             /* "Authentication-Results: ...\r\n" */
	char *authres_value;             /* the same value alone (no name, no CRLF): what
					    arc_sign() wants as arc_sign_options.authres */
	size_t forged[MAILAUTH_MAX_FORGED]; /* header indexes (0-based, message order) of
					       A-R fields claiming authserv_id */
	size_t nforged;
};

/* 1 on success (results filled even when checks fail), -1 if the request is
   unusable (bad IP); *error_r says why. */
int mailauth_check(const struct mailauth_request *req, const struct authdns *dns,
		   struct mailauth_result *out, const char **error_r);
void mailauth_result_free(struct mailauth_result *r);

#endif
