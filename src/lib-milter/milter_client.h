/*
 * milter_client: the MTA side of the Sendmail milter protocol (version 6) on
 * the caller's libevent base, one milter_session per SMTP session and milter.
 *
 * milter_session_new connects and negotiates at once (OPTNEG: every action we
 * can apply, every skip/no-reply flag we honour). Then the SMTP session calls
 * one function per stage, in SMTP order, never two at a time:
 *   milter_connect -> milter_helo -> { milter_mail -> milter_rcpt* -> milter_data
 *   -> milter_message (headers, EOH, body chunks <= 64 KiB, EOM from the spool fd)
 *   | milter_abort }* ; milter_session_free.
 * Each call's callback runs exactly once, later on the loop (never inside the
 * call), unless the session is freed first. Stages the filter asked to skip
 * (SMFIP_NO*) answer CONTINUE without I/O; stages it asked not to answer
 * (SMFIP_NR_*) answer CONTINUE once the command is queued.
 *
 * Decisions: CONTINUE, ACCEPT (stop filtering: the message at MAIL..EOM, the
 * whole session at CONNECT/HELO), REJECT / TEMPFAIL (reply text in
 * result.reply: the filter's custom SMFIR_REPLYCODE or a default), DISCARD.
 * At RCPT, REJECT/TEMPFAIL concern that recipient only. After a message-level
 * ACCEPT/REJECT/DISCARD the remaining message stages answer the same without
 * I/O until milter_abort or the next milter_mail.
 *
 * Failures (connect refused, timeout, close mid-reply, malformed packets,
 * oversized replies) end the session's use of that filter: this and every
 * later call answers the configured default (TEMPFAIL or ACCEPT) with
 * result.failed set. Limits: replies 1 MiB per packet, replaced bodies
 * max_body bytes, 1000 modifications per message, header section 1 MiB.
 *
 * milter_message's result carries the modifications (EOM only) for the caller
 * to apply in order; they and every string in a result live until the next
 * call on the session (or its free).
 */
#ifndef MR_MILTER_CLIENT_H
#define MR_MILTER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct milter_session;

enum milter_decision {
	MILTER_CONTINUE,
	MILTER_ACCEPT,
	MILTER_REJECT,
	MILTER_TEMPFAIL,
	MILTER_DISCARD,
};

enum milter_mod_type {
	MILTER_MOD_ADD_HEADER,     /* append name: value */
	MILTER_MOD_INSERT_HEADER,  /* insert at index (0 = before the first header) */
	MILTER_MOD_CHANGE_HEADER,  /* index-th (1-based) occurrence of name; value "" = delete it */
	MILTER_MOD_ADD_RCPT,       /* name = address; value = ESMTP args or NULL */
	MILTER_MOD_DEL_RCPT,       /* name = address */
	MILTER_MOD_CHANGE_FROM,    /* name = address; value = ESMTP args or NULL */
	MILTER_MOD_REPLACE_BODY,   /* body/body_len = the whole new body (chunks joined) */
	MILTER_MOD_QUARANTINE,     /* value = reason */
};

struct milter_mod {
	enum milter_mod_type type;
	uint32_t index;
	char *name;
	char *value;
	char *body;
	size_t body_len;
	const char *milter;        /* the settings name of the milter that asked */
};

struct milter_result {
	enum milter_decision decision;
	int code;                  /* REJECT/TEMPFAIL: 5xx/4xx */
	const char *reply;         /* REJECT/TEMPFAIL: "550 5.7.1 text" (may hold CRLF for multi-line) */
	bool failed;               /* the milter failed; decision is its configured default */
	const char *error;         /* failed: why */
	const char *milter;        /* settings name */
	const struct milter_mod *mods; /* milter_message only */
	size_t mod_count;
};

typedef void milter_callback(void *arg, const struct milter_result *res);

struct milter_settings {
	const char *name;          /* for logs and results */
	const char *address;       /* "127.0.0.1:8891", "[::1]:8891" or "inet:8891@127.0.0.1" */
	unsigned connect_timeout_ms; /* connect + negotiation; 0 means 5000 */
	unsigned timeout_ms;       /* each command's reply; 0 means 10000 */
	unsigned eom_timeout_ms;   /* end of message (progress rearms it); 0 means 60000 */
	enum milter_decision on_failure; /* MILTER_TEMPFAIL or MILTER_ACCEPT */
	size_t max_body;           /* replaced body limit; 0 means 64 MiB */
};

struct milter_conn_info {
	const char *my_hostname;   /* macro j */
	const char *daemon_name;   /* {daemon_name}, e.g. "smtp" / "submission" */
	const char *client_name;   /* verified PTR name, or NULL: "[ip]" is sent */
	const char *client_ip;     /* text; NULL for an unknown family */
	unsigned client_port;
};

/* Connects and negotiates now (settings are copied). Never NULL. */
struct milter_session *milter_session_new(struct event_base *base, const struct milter_settings *set);
/* Closes the connection (the filter sees the close as an abort); no callback runs after. */
void milter_session_free(struct milter_session **s);

void milter_connect(struct milter_session *s, const struct milter_conn_info *info, milter_callback *cb,
                    void *arg);
/* tls_version: NULL without TLS. */
void milter_helo(struct milter_session *s, const char *helo, const char *tls_version, milter_callback *cb,
                 void *arg);
/* from: "" for <>; auth_user: NULL unless authenticated (sent as {auth_authen} only then). */
void milter_mail(struct milter_session *s, const char *from, const char *const *args, size_t nargs,
                 const char *auth_user, milter_callback *cb, void *arg);
void milter_rcpt(struct milter_session *s, const char *rcpt, const char *const *args, size_t nargs,
                 milter_callback *cb, void *arg);
void milter_data(struct milter_session *s, const char *queue_id, milter_callback *cb, void *arg);
/* Headers, EOH, body and EOM from bytes [0, size) of the spool fd (pread; keep it open). */
void milter_message(struct milter_session *s, int fd, uint64_t size, const char *queue_id, milter_callback *cb,
                    void *arg);
/* End the transaction (RSET, a refused message, or after the message is done). No callback. */
void milter_abort(struct milter_session *s);

const char *milter_decision_name(enum milter_decision d);
/* Negotiated flags (tests, logs): 0 before negotiation. */
uint32_t milter_session_protocol(const struct milter_session *s);

#endif
