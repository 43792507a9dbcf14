#include "lib/ipc_client.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/xalloc.h"

struct ipc_call {
	struct ipc_call *prev, *next;
	struct ipc_client *cl;
	uint32_t reqid;
	ipc_reply_cb *cb;
	void *arg;
	struct ipc_msg *held; /* a copy while the peer is unreachable (see retry_ev) */
};

/* A restarting role is unreachable for a moment: hold calls this long before failing them. */
#define IPC_RETRY_INTERVAL_MS 100
#define IPC_RETRY_MAX_MS 5000

struct ipc_client {
	struct event_base *base;
	char *name;
	struct ipc_conn *conn;
	struct ipc_call *calls;
	struct event *fail_ev; /* delivers failures outside the caller's stack */
	struct ipc_call *failed;
	struct ipc_call *held;   /* waiting for the peer to come back */
	struct event *retry_ev;
	unsigned retry_ms;
	struct ipc_conn *dead[4]; /* closed conns, freed outside their own callbacks */
	uint32_t next_id;
};

static void call_unlink(struct ipc_call *c, struct ipc_call **head)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		*head = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

static void call_link(struct ipc_call *c, struct ipc_call **head)
{
	c->prev = NULL;
	c->next = *head;
	if (*head != NULL)
		(*head)->prev = c;
	*head = c;
}

static void call_free(struct ipc_call *c)
{
	if (c->held != NULL) {
		ipc_msg_deinit(c->held);
		free(c->held);
	}
	free(c);
}

static void on_fail_ev(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_client *cl = arg;
	for (size_t i = 0; i < 4; i++)
		ipc_conn_free(&cl->dead[i]);
	while (cl->failed != NULL) {
		struct ipc_call *c = cl->failed;
		call_unlink(c, &cl->failed);
		c->cb(c->arg, NULL, -1);
		call_free(c);
	}
}

static void fail_all(struct ipc_client *cl)
{
	while (cl->calls != NULL) {
		struct ipc_call *c = cl->calls;
		call_unlink(c, &cl->calls);
		call_link(c, &cl->failed);
	}
	if (cl->failed != NULL)
		event_active(cl->fail_ev, EV_READ, 0);
}

static void on_msg(struct ipc_conn *conn, struct ipc_reader *r, int fd, void *arg)
{
	struct ipc_client *cl = arg;
	for (struct ipc_call *c = cl->calls; c != NULL; c = c->next) {
		if (c->reqid == r->reqid) {
			call_unlink(c, &cl->calls);
			c->cb(c->arg, r, fd);
			call_free(c);
			return;
		}
	}
	/* Reply to a cancelled call. */
	if (fd >= 0)
		close(fd);
}

static void on_close(struct ipc_conn *conn, void *arg)
{
	struct ipc_client *cl = arg;
	log_warn("event=ipc_disconnected peer=%s", cl->name);
	fail_all(cl);
	event_active(cl->fail_ev, EV_READ, 0);
}

static int ensure_conn(struct ipc_client *cl);

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_client *cl = arg;
	cl->retry_ms += IPC_RETRY_INTERVAL_MS;
	bool up = ensure_conn(cl) == 0;
	if (!up && cl->retry_ms < IPC_RETRY_MAX_MS) {
		struct timeval tv = { 0, IPC_RETRY_INTERVAL_MS * 1000 };
		evtimer_add(cl->retry_ev, &tv);
		return;
	}
	cl->retry_ms = 0;
	while (cl->held != NULL) {
		struct ipc_call *c = cl->held;
		call_unlink(c, &cl->held);
		if (up && ipc_send(cl->conn, c->held) == 0) {
			ipc_msg_deinit(c->held);
			free(c->held);
			c->held = NULL;
			call_link(c, &cl->calls);
		} else {
			call_link(c, &cl->failed);
			event_active(cl->fail_ev, EV_READ, 0);
		}
	}
}

struct ipc_client *ipc_client_new(struct event_base *base, const char *name)
{
	struct ipc_client *cl = xcalloc(1, sizeof(*cl));
	cl->base = base;
	cl->name = xstrdup(name);
	cl->fail_ev = event_new(base, -1, 0, on_fail_ev, cl);
	cl->retry_ev = evtimer_new(base, on_retry, cl);
	cl->next_id = 1;
	return cl;
}

static int ensure_conn(struct ipc_client *cl)
{
	if (cl->conn != NULL && ipc_conn_is_open(cl->conn))
		return 0;
	if (cl->conn != NULL) {
		/* We may be inside its callbacks: free it later from fail_ev. */
		size_t i = 0;
		while (i < 3 && cl->dead[i] != NULL)
			i++;
		ipc_conn_free(&cl->dead[i]); /* only when all 4 are taken: the oldest is long idle */
		cl->dead[i] = cl->conn;
		cl->conn = NULL;
		event_active(cl->fail_ev, EV_READ, 0);
	}
	cl->conn = ipc_connect(cl->base, cl->name, on_msg, on_close, cl);
	return cl->conn != NULL ? 0 : -1;
}

struct ipc_call *ipc_client_call(struct ipc_client *cl, struct ipc_msg *m, ipc_reply_cb *cb, void *arg)
{
	struct ipc_call *c = xcalloc(1, sizeof(*c));
	c->cl = cl;
	c->cb = cb;
	c->arg = arg;
	c->reqid = cl->next_id++;
	if (cl->next_id == 0)
		cl->next_id = 1;
	memcpy(m->b.data + 4, (uint8_t[4]){ c->reqid & 0xff, (c->reqid >> 8) & 0xff, (c->reqid >> 16) & 0xff,
	                                   c->reqid >> 24 }, 4);
	if (cl->held == NULL && ensure_conn(cl) == 0 && ipc_send(cl->conn, m) == 0) {
		call_link(c, &cl->calls);
		return c;
	}
	/* The peer is not there (a role restarting): hold the call and retry for a while. */
	c->held = xmalloc(sizeof(*c->held));
	buf_init(&c->held->b, IPC_MAX_MSG);
	buf_append(&c->held->b, m->b.data, m->b.len);
	c->held->fd = -1;
	if (m->fd >= 0) {
		/* Calls that pass a descriptor are not held: fail them now. */
		call_link(c, &cl->failed);
		event_active(cl->fail_ev, EV_READ, 0);
		return c;
	}
	call_link(c, &cl->held);
	if (!evtimer_pending(cl->retry_ev, NULL)) {
		struct timeval tv = { 0, IPC_RETRY_INTERVAL_MS * 1000 };
		evtimer_add(cl->retry_ev, &tv);
	}
	return c;
}

int ipc_client_send(struct ipc_client *cl, struct ipc_msg *m)
{
	if (ensure_conn(cl) < 0)
		return -1;
	return ipc_send(cl->conn, m);
}

void ipc_call_cancel(struct ipc_call **cp)
{
	struct ipc_call *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	struct ipc_client *cl = c->cl;
	/* It is in exactly one of the three lists. */
	struct ipc_call **list = &cl->failed;
	for (struct ipc_call *x = cl->calls; x != NULL; x = x->next)
		if (x == c)
			list = &cl->calls;
	for (struct ipc_call *x = cl->held; x != NULL; x = x->next)
		if (x == c)
			list = &cl->held;
	call_unlink(c, list);
	call_free(c);
}

void ipc_client_free(struct ipc_client **clp)
{
	struct ipc_client *cl = *clp;
	if (cl == NULL)
		return;
	*clp = NULL;
	while (cl->calls != NULL) {
		struct ipc_call *c = cl->calls;
		call_unlink(c, &cl->calls);
		free(c);
	}
	while (cl->failed != NULL) {
		struct ipc_call *c = cl->failed;
		call_unlink(c, &cl->failed);
		call_free(c);
	}
	while (cl->held != NULL) {
		struct ipc_call *c = cl->held;
		call_unlink(c, &cl->held);
		call_free(c);
	}
	event_free(cl->retry_ev);
	ipc_conn_free(&cl->conn);
	for (size_t i = 0; i < 4; i++)
		ipc_conn_free(&cl->dead[i]);
	event_free(cl->fail_ev);
	free(cl->name);
	free(cl);
}
