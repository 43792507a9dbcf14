/*
 * smtp_server: the smtp role (DESIGN.md §2). One process per core accepts on
 * the inherited mx/submission/submissions listeners and runs every session on
 * one libevent loop. It has no file system access (chroot into an empty dir):
 * recipients are checked by the lookup role, AUTH by the lookup role, and the
 * message body is written into a spool file whose descriptor the queue role
 * hands over; the queue fsyncs and records the envelope before we answer 250.
 */
#ifndef MR_SMTP_SERVER_H
#define MR_SMTP_SERVER_H

#include <stdbool.h>

#include "master/role.h"

struct lookup_client;
struct ipc_client;
struct smtp_session;

struct smtp_server {
	const struct mr_config *cfg;
	struct role_env *env;
	struct event_base *base;
	struct lookup_client *lookup;
	struct ipc_client *queue;
	struct smtp_session *sessions; /* doubly linked */
	unsigned session_count;
	unsigned long next_sid;
	bool draining;                 /* SIGHUP: finish sessions, accept no more */
	bool stopping;                 /* SIGTERM: 421 to everyone and exit */
};

/* Start a session on an accepted socket (takes the fd). */
void smtp_session_start(struct smtp_server *srv, int fd, const struct role_listener *l,
                        const struct sockaddr *sa, int salen);
/* Send 421 to every session and close them (server shutdown). */
void smtp_sessions_shutdown_all(struct smtp_server *srv);
/* Called by the session when it is gone, so the server can exit when draining. */
void smtp_server_session_gone(struct smtp_server *srv);

#endif
