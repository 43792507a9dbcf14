/*
 * mail_auth: how the IMAP and POP3 sessions check a password. The session holds this
 * function table; the role fills it with a wrapper around lookup_client_auth (src/lookup),
 * the test daemons with a stub. begin() returns an opaque request handle (or NULL when the
 * callback already ran); the callback runs exactly once unless cancel() is called first.
 * Strings passed to the callback live only during the call.
 */
#ifndef MR_MAIL_AUTH_H
#define MR_MAIL_AUTH_H

#include "lookup/lookup_client.h"

typedef void mail_auth_cb(void *arg, enum lookup_status status, const char *user, const char *maildir);

struct mail_auth {
	void *(*begin)(void *ctx, const char *service, const char *user, const char *password,
	               const char *client_ip, mail_auth_cb *cb, void *arg);
	void (*cancel)(void *ctx, void *req);
	void *ctx;
};

#endif
