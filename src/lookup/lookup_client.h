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
/*
 * sender: the envelope sender ("" for <>) for greylisting (greylisting.enabled,
 * mx listener, unauthenticated, not from trusted_networks): a new triplet is
 * answered 451 4.7.1 "Greylisted, try again in N seconds" after the recipient
 * itself was accepted; NULL skips greylisting.
 */
struct lookup_req *lookup_client_rcpt(struct lookup_client *lc, const char *address, const char *client_ip,
                                      const char *auth_user, int listen_kind, const char *sender,
                                      lookup_rcpt_cb *cb, void *arg);

/*
 * DNS block lists (cfg->dnsbl), asked by the lookup role. domain NULL: the IP
 * zones for client_ip (at connect); domain set: the RHSBL zones for it (at
 * MAIL). score is the sum of the weights of the zones that listed;
 * first_zone the first listing zone (or NULL), hits "zone=127.0.0.2 ..." for
 * logs, failed the number of DNS queries that failed (they count as not
 * listed). When the lookup role is unreachable: score 0, failed 1.
 */
typedef void lookup_dnsbl_cb(void *arg, int score, const char *first_zone, const char *hits, unsigned failed);
struct lookup_req *lookup_client_dnsbl(struct lookup_client *lc, const char *client_ip, const char *domain,
                                       lookup_dnsbl_cb *cb, void *arg);

/*
 * SPF at MAIL time (mx listener): the lookup role evaluates the MAIL FROM
 * identity (the HELO one for the null sender). code 250 means go on; anything
 * else is the reply to give (550 5.7.23 on fail when spf.reject_fail is set).
 * result is the SPF result name ("pass", "fail", ..., "temperror" when the
 * lookup role is unreachable); authres the A-R fragment ("spf=pass ...").
 */
typedef void lookup_spf_cb(void *arg, const char *result, int code, const char *enhanced, const char *text,
                           const char *authres);
struct lookup_req *lookup_client_spf(struct lookup_client *lc, const char *client_ip, const char *helo,
                                     const char *mailfrom, lookup_spf_cb *cb, void *arg);

/*
 * Sender check on submission: may auth_user use this envelope sender (their
 * own address or an address that resolves to them)? 250 = yes, else the reply
 * (553 5.7.1; 451 4.3.0 on trouble).
 */
struct lookup_req *lookup_client_sender(struct lookup_client *lc, const char *auth_user, const char *sender,
                                        lookup_rcpt_cb *cb, void *arg);

/*
 * The end-of-data check (SPF, DKIM, ARC, DMARC; DKIM signing and the From
 * check for authenticated senders). spool_fd is the message (our Received:
 * first); it is duplicated into the message, the caller keeps its own. headers
 * are the fields to prepend at delivery (Authentication-Results,
 * DKIM-Signature), or NULL. On LOOKUP_MAILAUTH_REJECT code/enhanced/text are
 * the reply. LOOKUP_MAILAUTH_UNCHECKED: the lookup role could not be asked
 * (the caller decides: inbound mail is accepted untagged, submission gets 451).
 */
enum lookup_mailauth_action {
	LOOKUP_MAILAUTH_ACCEPT = 0,
	LOOKUP_MAILAUTH_REJECT = 1,
	LOOKUP_MAILAUTH_QUARANTINE = 2,
	LOOKUP_MAILAUTH_UNCHECKED = 3, /* never sent by the lookup role */
};
typedef void lookup_mailauth_cb(void *arg, enum lookup_mailauth_action action, int code, const char *enhanced,
                                const char *text, const char *headers);
struct lookup_req *lookup_client_mailauth(struct lookup_client *lc, const char *client_ip, const char *helo,
                                          const char *mailfrom, const char *auth_user, int listen_kind,
                                          int spool_fd, lookup_mailauth_cb *cb, void *arg);

/* Cancel a pending request: its callback will not run. Sets *req to NULL. */
void lookup_req_cancel(struct lookup_req **req);

#endif
