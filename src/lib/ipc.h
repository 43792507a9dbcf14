/*
 * ipc: typed, versioned messages between mailroute's role processes over
 * SOCK_SEQPACKET unix sockets in the abstract namespace (so chrooted roles can
 * still reach each other; the peer's uid is checked with SO_PEERCRED).
 *
 * One message = one datagram of at most IPC_MAX_MSG bytes: a header
 * {u16 version, u16 type, u32 reqid} and fields written with ipc_put_*. At most
 * one file descriptor travels with a message (SCM_RIGHTS); bodies travel that
 * way, never through the socket. The decoder is strict: a short field or
 * leftover bytes make ipc_reader_end() fail, and a role treats that as a bug
 * (DESIGN.md §2: malformed messages stop the receiver).
 *
 * Ownership: a struct ipc_conn owns its fd. Callbacks get a reader whose data
 * lives only during the call; a received fd belongs to the callback.
 */
#ifndef MR_IPC_H
#define MR_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/buf.h"

#define IPC_VERSION 1
#define IPC_MAX_MSG 65536

struct event_base;
struct ipc_conn;
struct ipc_server;

struct ipc_msg {
	struct buf b;
	int fd; /* -1, or an fd to pass (not closed by ipc) */
};

struct ipc_reader {
	const uint8_t *p;
	size_t len, off;
	bool error;
	uint16_t type;
	uint32_t reqid;
};

void ipc_msg_init(struct ipc_msg *m, uint16_t type, uint32_t reqid);
void ipc_msg_deinit(struct ipc_msg *m);
void ipc_put_u32(struct ipc_msg *m, uint32_t v);
void ipc_put_u64(struct ipc_msg *m, uint64_t v);
/* NULL is encoded as "absent" and read back as NULL. */
void ipc_put_str(struct ipc_msg *m, const char *s);
void ipc_put_data(struct ipc_msg *m, const void *p, size_t n);

uint32_t ipc_get_u32(struct ipc_reader *r);
uint64_t ipc_get_u64(struct ipc_reader *r);
/* Returns a NUL-terminated copy owned by the caller (xmalloc), or NULL when absent. */
char *ipc_get_strdup(struct ipc_reader *r);
/* Fills a caller buffer; fails the reader when the string does not fit. */
void ipc_get_str(struct ipc_reader *r, char *out, size_t size);
/* 0 when every byte was consumed and no field failed; -1 otherwise. */
int ipc_reader_end(struct ipc_reader *r);

typedef void ipc_msg_cb(struct ipc_conn *c, struct ipc_reader *r, int fd, void *arg);
typedef void ipc_close_cb(struct ipc_conn *c, void *arg);

/* Wrap a connected SOCK_SEQPACKET fd. */
struct ipc_conn *ipc_conn_new(struct event_base *base, int fd, ipc_msg_cb *on_msg, ipc_close_cb *on_close,
                              void *arg);
/*
 * Peers an ipc_connect() client accepts besides root and its own uid (the role
 * users). Set once per process before connecting.
 */
void ipc_set_trusted_peers(const uid_t *uids, size_t n);
/* Connect to the abstract socket @name (the peer must be trusted); NULL with errno on failure. */
struct ipc_conn *ipc_connect(struct event_base *base, const char *name, ipc_msg_cb *on_msg,
                             ipc_close_cb *on_close, void *arg);
void ipc_conn_free(struct ipc_conn **c);
/*
 * For servers whose jobs keep connection pointers: close now, but keep the
 * memory for two minutes so the address cannot come back as a new connection
 * while an answer for the old one is pending (compare pointers, then ipc_send
 * fails on the closed one).
 */
void ipc_conn_free_later(struct ipc_conn **c);
/* Queue a message; -1 if the connection is closed or the message too big. */
int ipc_send(struct ipc_conn *c, const struct ipc_msg *m);
uid_t ipc_conn_peer_uid(const struct ipc_conn *c);
bool ipc_conn_is_open(const struct ipc_conn *c);
void ipc_conn_set_arg(struct ipc_conn *c, void *arg);

typedef void ipc_accept_cb(struct ipc_server *s, int fd, uid_t peer_uid, void *arg);
/* Listen on the abstract socket @name; only peers with uid root or in allowed[] are accepted. */
struct ipc_server *ipc_server_new(struct event_base *base, const char *name, const uid_t *allowed, size_t n,
                                  ipc_accept_cb *cb, void *arg, char **error_r);
void ipc_server_free(struct ipc_server **s);

#endif
