/*
 * lookup_client: the asynchronous client side of the lookup role (DESIGN.md §2),
 * used by the smtp, imap, pop3 and managesieve roles. The lookup role owns the
 * directory and the password hashes; clients never see a hash.
 *
 * Every request takes a callback that runs later on the caller's event loop,
 * exactly once, unless the request is cancelled first (do that when the session
 * that asked goes away). Strings passed to a callback live only during the call.
 * When the lookup role is down, requests fail with LOOKUP_TEMPFAIL (reconnection
 * is automatic).
 */
#ifndef MR_LOOKUP_CLIENT_H
#define MR_LOOKUP_CLIENT_H

#include <stdbool.h>

struct event_base;
struct lookup_client;
struct lookup_req;

enum lookup_status {
	LOOKUP_OK = 1,
	LOOKUP_DENIED = 0,    /* wrong password / unknown user / refused recipient */
	LOOKUP_TEMPFAIL = -1, /* lookup role unreachable or internal error: answer 4xx / NO [UNAVAILABLE] */
};

struct lookup_client *lookup_client_new(struct event_base *base, const char *ipc_prefix);
void lookup_client_free(struct lookup_client **lc);

/*
 * Check a password. service is "smtp", "imap", "pop3" or "managesieve". On
 * LOOKUP_OK, user is the canonical address (lowercase) and maildir the absolute
 * Maildir++ root of the user (<data_dir>/mail/<domain>/<localpart>). Failed
 * logins are delayed and rate limited per user and per client IP by the lookup
 * role itself.
 */
typedef void lookup_auth_cb(void *arg, enum lookup_status status, const char *user, const char *maildir);
struct lookup_req *lookup_client_auth(struct lookup_client *lc, const char *service, const char *user,
                                      const char *password, const char *client_ip, lookup_auth_cb *cb,
                                      void *arg);

/*
 * Recipient check at RCPT time: resolution and relay control happen in the
 * lookup role. code 250 means accepted; otherwise code/enhanced/text are the
 * SMTP reply to give (550 5.1.1 unknown user, 554 5.7.1 relay denied, 451 on
 * trouble). auth_user is NULL for unauthenticated sessions.
 */
typedef void lookup_rcpt_cb(void *arg, int code, const char *enhanced, const char *text);
struct lookup_req *lookup_client_rcpt(struct lookup_client *lc, const char *address, const char *client_ip,
                                      const char *auth_user, int listen_kind, lookup_rcpt_cb *cb, void *arg);

/* Cancel a pending request: its callback will not run. Sets *req to NULL. */
void lookup_req_cancel(struct lookup_req **req);

#endif
