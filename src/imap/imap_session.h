/*
 * imap_session: one IMAP connection (RFC 9051 / RFC 3501) on a libevent bufferevent.
 * The role (imap_role.c) and the test daemon (imap-testd.c) create sessions from accepted
 * sockets; a session owns its socket and frees itself when the connection ends.
 *
 * Settings are shared by all sessions and must outlive them. Passwords go only to
 * settings->auth and are zeroed after use; they are never logged.
 *
 * Limits: command lines up to line_max bytes, literals up to literal_max (APPEND:
 * append_max); output is produced only while less than IMAP_OUT_HIGH bytes wait to be
 * sent, so a client that never reads holds at most about one message of output, and the
 * idle timeout then closes it.
 */
#ifndef MR_IMAP_SESSION_H
#define MR_IMAP_SESSION_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib-mailbox/mail_auth.h"

struct event_base;
struct workpool;

struct imap_settings {
	const char *hostname;
	size_t line_max;          /* default 65536 */
	size_t literal_max;       /* non-APPEND literals; default 65536 */
	size_t append_max;        /* APPEND literal; default 50 MiB */
	bool allow_plaintext;     /* LOGIN/AUTHENTICATE outside TLS */
	unsigned timeout_secs;    /* autologout; default 1800 */
	SSL_CTX *tls;             /* NULL: no STARTTLS / implicit TLS */
	struct mail_auth auth;
	unsigned max_errors;      /* BAD commands before BYE; default 20 */
	struct workpool *pool;    /* APPEND's fsync runs there; NULL: inline */
};

struct imap_session;

struct imap_session *imap_session_new(struct event_base *base, int fd, const struct imap_settings *set,
                                      bool implicit_tls, const char *client_ip);
/* Sessions alive in this process. */
unsigned imap_session_count(void);
/* Send "* BYE" to every session and close them (role shutdown). */
void imap_sessions_shutdown(void);

#endif
