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
};

struct ipc_client {
	struct event_base *base;
	char *name;
	struct ipc_conn *conn;
	struct ipc_call *calls;
	struct event *fail_ev; /* delivers failures outside the caller's stack */
	struct ipc_call *failed;
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

static void on_fail_ev(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_client *cl = arg;
	for (size_t i = 0; i < 4; i++)
		ipc_conn_free(&cl->dead[i]);
	while (cl->failed != NULL) {
		struct ipc_call *c = cl->failed;
		call_unlink(c, &cl->failed);
		c->cb(c->arg, NULL, -1);
		free(c);
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
			free(c);
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

struct ipc_client *ipc_client_new(struct event_base *base, const char *name)
{
	struct ipc_client *cl = xcalloc(1, sizeof(*cl));
	cl->base = base;
	cl->name = xstrdup(name);
	cl->fail_ev = event_new(base, -1, 0, on_fail_ev, cl);
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
	if (ensure_conn(cl) < 0 || ipc_send(cl->conn, m) < 0) {
		call_link(c, &cl->failed);
		event_active(cl->fail_ev, EV_READ, 0);
		return c;
	}
	call_link(c, &cl->calls);
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
	/* It is in exactly one of the two lists. */
	bool in_calls = false;
	for (struct ipc_call *x = cl->calls; x != NULL; x = x->next)
		if (x == c)
			in_calls = true;
	call_unlink(c, in_calls ? &cl->calls : &cl->failed);
	free(c);
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
		free(c);
	}
	ipc_conn_free(&cl->conn);
	for (size_t i = 0; i < 4; i++)
		ipc_conn_free(&cl->dead[i]);
	event_free(cl->fail_ev);
	free(cl->name);
	free(cl);
}
