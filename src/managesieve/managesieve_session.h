/*
 * managesieve_session: one ManageSieve connection (RFC 5804). Commands: AUTHENTICATE
 * "PLAIN" (initial response or one continuation; refused outside TLS unless
 * allow_plaintext), STARTTLS (pipelined plaintext after it is discarded; the
 * capabilities are sent again inside TLS), LOGOUT, CAPABILITY, HAVESPACE, PUTSCRIPT,
 * LISTSCRIPTS, SETACTIVE, GETSCRIPT, DELETESCRIPT, RENAMESCRIPT, CHECKSCRIPT, NOOP,
 * UNAUTHENTICATE. Scripts live in the sieve store (lib-sieve/sieve_store.h) of the
 * authenticated user under data_dir. Uploads are compiled with the user extensions and
 * missing_includes_ok; SETACTIVE compiles strictly. Compiler errors are answered as
 * NO "LINE:COL: message". Limits: max_line (non-literal bytes of a command),
 * max_script_size (also the literal limit: NO (QUOTA/MAXSIZE)), max_scripts per user
 * (NO (QUOTA/MAXSCRIPTS)), max_errors bad commands before BYE, timeout_secs idle.
 * A line too long or a bad literal length gets BYE and the connection is closed.
 * Passwords are never logged.
 */
#ifndef MR_MANAGESIEVE_SESSION_H
#define MR_MANAGESIEVE_SESSION_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib-mailbox/mail_auth.h"

struct event_base;

struct managesieve_settings {
	const char *data_dir;     /* the sieve store lives under <data_dir>/sieve */
	bool allow_plaintext;     /* AUTHENTICATE outside TLS (tests only) */
	SSL_CTX *tls;             /* NULL: no STARTTLS */
	struct mail_auth auth;
	unsigned timeout_secs;    /* default 600 */
	unsigned max_errors;      /* default 10 */
	size_t max_line;          /* default 8192 */
	size_t max_script_size;   /* default SIEVE_STORE_MAX_SIZE */
	unsigned max_scripts;     /* per user; default 50 */
};

struct managesieve_session;

struct managesieve_session *managesieve_session_new(struct event_base *base, int fd,
                                                    const struct managesieve_settings *set, bool implicit_tls,
                                                    const char *client_ip);
unsigned managesieve_session_count(void);
/* Send BYE to every session and free them (SIGTERM). */
void managesieve_sessions_shutdown(void);

#endif
