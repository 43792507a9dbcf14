/*
 * filter_conn: one TCP connection to a local content filter (milter, rspamd,
 * clamd) on the caller's libevent base. The smtp role is chrooted, so peers
 * are numeric "IP:PORT" or "[IPv6]:PORT" addresses only (no name lookups).
 *
 * Writes go out with send(MSG_NOSIGNAL) (clamd closes the socket mid-stream
 * when a stream exceeds its limit: that must be an error, never a SIGPIPE).
 * Input accumulates in a buf with a hard maximum (in_max); exceeding it is an
 * error. One timer covers the current stage: filter_conn_set_timeout rearms it.
 *
 * Events go to one callback. It may free the connection (filter_conn_free)
 * from inside the callback; the connection never touches itself after calling
 * it. The callback is never called from inside filter_conn_new or
 * filter_conn_write: a bad address or a failed connect() is reported later on
 * the loop as FILTER_CONN_ERROR.
 */
#ifndef MR_FILTER_CONN_H
#define MR_FILTER_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "lib/buf.h"

struct event_base;
struct filter_conn;

enum filter_conn_event {
	FILTER_CONN_READ,    /* new bytes in filter_conn_input() */
	FILTER_CONN_DRAINED, /* everything written so far has been sent */
	FILTER_CONN_EOF,     /* the peer closed its side (input may still hold bytes) */
	FILTER_CONN_ERROR,   /* connect/read/write failure or input over in_max; error set */
	FILTER_CONN_TIMEOUT, /* the stage timer expired */
};

typedef void filter_conn_callback(void *arg, enum filter_conn_event ev, const char *error);

/* Parse "IP:PORT" / "[IPv6]:PORT" (also "inet:PORT@IP"). 1 ok, -1 with error_r. */
int filter_conn_parse_address(const char *address, struct sockaddr_storage *ss, socklen_t *len_r,
                              const char **error_r);

/* Starts connecting at once; timeout_ms (0: none) covers the connect stage. Never NULL. */
struct filter_conn *filter_conn_new(struct event_base *base, const char *address, size_t in_max,
                                    unsigned timeout_ms, filter_conn_callback *cb, void *arg);
/* Frees, closes, cancels every pending event; NULL is a no-op; sets *c to NULL. */
void filter_conn_free(struct filter_conn **c);

/* Queue bytes for sending (unbounded queue: producers check filter_conn_out_pending). */
void filter_conn_write(struct filter_conn *c, const void *p, size_t n);
size_t filter_conn_out_pending(const struct filter_conn *c);
/* Stop sending what is queued (e.g. the peer answered early); reading goes on. */
void filter_conn_drop_output(struct filter_conn *c);
/* Rearm the stage timer (0: no timeout). */
void filter_conn_set_timeout(struct filter_conn *c, unsigned timeout_ms);
/* Received bytes; the caller consumes what it parsed (buf_consume). */
struct buf *filter_conn_input(struct filter_conn *c);
bool filter_conn_connected(const struct filter_conn *c);

#endif
