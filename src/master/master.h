/*
 * master: the root process of `mailroute serve` (DESIGN.md §2). It loads the
 * config, prepares data_dir, binds every listener, loads the TLS context, forks
 * the roles (lookup, queue, deliver, smtp x N, imap, pop3), drops their
 * privileges, restarts a role that dies (with backoff), reloads on SIGHUP and
 * stops everything on SIGTERM/SIGINT.
 */
#ifndef MR_MASTER_H
#define MR_MASTER_H

#include <stddef.h>

#include "conf/conf.h"

int master_run(struct mr_config *cfg);

/*
 * The prefix of the abstract socket names of the roles ("mailroute/<hash of
 * data_dir>"), so the CLI (sendmail, queue flush) can reach a running server.
 * Only one server runs per data_dir (the master holds <data_dir>/master.lock).
 */
void master_ipc_prefix(const struct mr_config *cfg, char *out, size_t size);

/* Build the server TLS context (TLS 1.2+); NULL with *error_r on failure. */
struct ssl_ctx_st;
struct ssl_ctx_st *master_tls_ctx(const struct mr_config *cfg, char **error_r);

#endif
