/*
 * ipc_client: request/response calls over an ipc_conn to a named role, with
 * request ids, cancellation, and reconnection on the next call after the peer
 * went away. A reply callback runs exactly once per call unless cancelled: with
 * the reply reader, or with r == NULL when the peer stays unreachable for 5 s
 * (a call is held and retried while a role restarts), or the
 * connection dropped before the reply (the caller answers a temporary error).
 */
#ifndef MR_IPC_CLIENT_H
#define MR_IPC_CLIENT_H

#include "lib/ipc.h"

struct ipc_client;
struct ipc_call;

typedef void ipc_reply_cb(void *arg, struct ipc_reader *r, int fd);

struct ipc_client *ipc_client_new(struct event_base *base, const char *name);
void ipc_client_free(struct ipc_client **cl);
/* Send m (its reqid is overwritten). Never fails synchronously: errors reach cb. */
struct ipc_call *ipc_client_call(struct ipc_client *cl, struct ipc_msg *m, ipc_reply_cb *cb, void *arg);
/* Fire and forget; -1 when the peer is unreachable (not held: the caller decides). */
int ipc_client_send(struct ipc_client *cl, struct ipc_msg *m);
void ipc_call_cancel(struct ipc_call **call);

#endif
