/*
 * pop3_session: one POP3 connection (RFC 1939 with CAPA, STLS, SASL PLAIN, UIDL, TOP).
 * The maildrop is the user's INBOX (Maildir root). A session in TRANSACTION state holds
 * an exclusive flock on "<root>/mailroute-pop3.lock", so only one session at a time can
 * mark messages deleted; deletions are applied only at QUIT. USER/PASS and AUTH are
 * refused outside TLS unless allow_plaintext. Passwords are never logged.
 */
#ifndef MR_POP3_SESSION_H
#define MR_POP3_SESSION_H

#include <openssl/ssl.h>
#include <stdbool.h>

#include "lib-mailbox/mail_auth.h"

struct event_base;

struct pop3_settings {
	const char *hostname;
	bool allow_plaintext;
	SSL_CTX *tls;
	struct mail_auth auth;
	unsigned timeout_secs;   /* default 600 (RFC 1939: at least 10 minutes) */
	unsigned max_errors;     /* default 10 */
};

struct pop3_session;

struct pop3_session *pop3_session_new(struct event_base *base, int fd, const struct pop3_settings *set,
                                      bool implicit_tls, const char *client_ip);
unsigned pop3_session_count(void);
void pop3_sessions_shutdown(void);

#endif
