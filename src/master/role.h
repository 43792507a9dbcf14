/*
 * role: what the master hands to each role process it forks (DESIGN.md §2).
 * The role entry points never return; they run their event loop until told to
 * stop (SIGTERM) and then exit. Privileges are already dropped when they run.
 */
#ifndef MR_ROLE_H
#define MR_ROLE_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <sys/types.h>

#include "conf/conf.h"

struct event_base;
struct sieve_script;

struct role_listener {
	enum listen_kind kind;
	int fd;            /* listening socket, non-blocking, inherited from the master */
	bool implicit_tls; /* submissions, imaps, pop3s */
};

struct role_env {
	const struct mr_config *cfg;
	struct event_base *base;
	struct role_listener *listeners; /* only the kinds this role serves */
	size_t listener_count;
	SSL_CTX *tls;                    /* server context, or NULL when no cert configured */
	const char *ipc_prefix;          /* abstract socket name prefix of this instance */
	uid_t uid;                       /* cfg->user's uid (or ours when not started as root) */
	uid_t vuid;                      /* cfg->vmail_user's uid */
	int index;                       /* process number within its role (smtp has several) */
	const struct sieve_script *rules;/* the system rules, compiled by the master, or NULL */
};

#endif
