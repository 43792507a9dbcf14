#include "lib-milter/milter_chain.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

enum chain_stage { CS_CONNECT, CS_HELO, CS_MAIL, CS_RCPT, CS_DATA, CS_MESSAGE };

struct milter_chain {
	struct milter_session **sessions;
	size_t n;
	struct event *ev_done;
	/* the running stage */
	enum chain_stage stage;
	size_t next;
	milter_callback *cb;
	void *arg;
	struct milter_conn_info info;
	char *s1, *s2, *s3;          /* copied string arguments */
	char **args;
	size_t nargs;
	int fd;
	uint64_t size;
	/* the result */
	struct milter_result res;
	char *reply, *error;
	const char *milter;
	struct milter_mod *mods;
	size_t mod_count;
	bool failed;
};

static void args_clear(struct milter_chain *c)
{
	free(c->s1);
	free(c->s2);
	free(c->s3);
	c->s1 = c->s2 = c->s3 = NULL;
	for (size_t i = 0; i < c->nargs; i++)
		free(c->args[i]);
	free(c->args);
	c->args = NULL;
	c->nargs = 0;
}

static void result_clear(struct milter_chain *c)
{
	for (size_t i = 0; i < c->mod_count; i++) {
		free(c->mods[i].name);
		free(c->mods[i].value);
		free(c->mods[i].body);
	}
	free(c->mods);
	c->mods = NULL;
	c->mod_count = 0;
	free(c->reply);
	free(c->error);
	c->reply = c->error = NULL;
	c->failed = false;
	memset(&c->res, 0, sizeof(c->res));
}

static char *dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static void chain_run(struct milter_chain *c);

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct milter_chain *c = arg;
	milter_callback *cb = c->cb;
	c->cb = NULL;
	args_clear(c);
	cb(c->arg, &c->res); /* last: cb may free c */
}

static void chain_finish(struct milter_chain *c, enum milter_decision d)
{
	c->res.decision = d;
	c->res.reply = c->reply;
	c->res.failed = c->failed;
	c->res.error = c->error;
	c->res.milter = c->milter;
	c->res.mods = c->mods;
	c->res.mod_count = c->mod_count;
	if (c->reply != NULL)
		c->res.code = (c->reply[0] - '0') * 100 + (c->reply[1] - '0') * 10 + (c->reply[2] - '0');
	event_active(c->ev_done, EV_TIMEOUT, 0);
}

static void stage_cb(void *arg, const struct milter_result *r)
{
	struct milter_chain *c = arg;
	if (r->failed) {
		c->failed = true;
		if (c->error == NULL)
			c->error = dup_or_null(r->error);
	}
	for (size_t i = 0; i < r->mod_count; i++) {
		c->mods = xreallocarray(c->mods, c->mod_count + 1, sizeof(*c->mods));
		struct milter_mod *m = &c->mods[c->mod_count++];
		*m = r->mods[i];
		m->name = dup_or_null(r->mods[i].name);
		m->value = dup_or_null(r->mods[i].value);
		m->body = r->mods[i].body != NULL ? xmemdup(r->mods[i].body, r->mods[i].body_len) : NULL;
		m->milter = r->milter; /* the session (and its name) lives as long as the chain */
	}
	if (r->decision == MILTER_REJECT || r->decision == MILTER_TEMPFAIL || r->decision == MILTER_DISCARD) {
		c->reply = dup_or_null(r->reply);
		c->milter = r->milter;
		chain_finish(c, r->decision);
		return;
	}
	chain_run(c);
}

static void chain_run(struct milter_chain *c)
{
	if (c->next >= c->n) {
		chain_finish(c, c->stage == CS_MESSAGE ? MILTER_ACCEPT : MILTER_CONTINUE);
		return;
	}
	struct milter_session *s = c->sessions[c->next++];
	const char *const *args = (const char *const *)c->args;
	switch (c->stage) {
	case CS_CONNECT:
		milter_connect(s, &c->info, stage_cb, c);
		return;
	case CS_HELO:
		milter_helo(s, c->s1, c->s2, stage_cb, c);
		return;
	case CS_MAIL:
		milter_mail(s, c->s1, args, c->nargs, c->s2, stage_cb, c);
		return;
	case CS_RCPT:
		milter_rcpt(s, c->s1, args, c->nargs, stage_cb, c);
		return;
	case CS_DATA:
		milter_data(s, c->s1, stage_cb, c);
		return;
	case CS_MESSAGE:
		milter_message(s, c->fd, c->size, c->s1, stage_cb, c);
		return;
	}
}

static void chain_start(struct milter_chain *c, enum chain_stage stage, milter_callback *cb, void *arg)
{
	result_clear(c);
	c->stage = stage;
	c->next = 0;
	c->cb = cb;
	c->arg = arg;
	chain_run(c);
}

static void copy_args(struct milter_chain *c, const char *const *args, size_t nargs)
{
	if (nargs == 0)
		return;
	c->args = xcalloc(nargs, sizeof(*c->args));
	for (size_t i = 0; i < nargs; i++)
		c->args[i] = xstrdup(args[i]);
	c->nargs = nargs;
}

struct milter_chain *milter_chain_new(struct event_base *base, const struct milter_settings *set, size_t n)
{
	struct milter_chain *c = xcalloc(1, sizeof(*c));
	c->n = n;
	c->sessions = n ? xcalloc(n, sizeof(*c->sessions)) : NULL;
	for (size_t i = 0; i < n; i++)
		c->sessions[i] = milter_session_new(base, &set[i]);
	c->ev_done = event_new(base, -1, 0, done_cb, c);
	if (c->ev_done == NULL)
		abort();
	return c;
}

void milter_chain_free(struct milter_chain **cp)
{
	struct milter_chain *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	for (size_t i = 0; i < c->n; i++)
		milter_session_free(&c->sessions[i]);
	free(c->sessions);
	event_free(c->ev_done);
	args_clear(c);
	result_clear(c);
	free(c);
}

void milter_chain_connect(struct milter_chain *c, const struct milter_conn_info *info, milter_callback *cb,
                          void *arg)
{
	c->s1 = dup_or_null(info->my_hostname);
	c->s2 = dup_or_null(info->daemon_name);
	c->s3 = dup_or_null(info->client_name);
	c->args = xcalloc(1, sizeof(*c->args));
	c->args[0] = dup_or_null(info->client_ip);
	c->nargs = 1;
	c->info = (struct milter_conn_info){.my_hostname = c->s1, .daemon_name = c->s2, .client_name = c->s3,
	                                    .client_ip = c->args[0], .client_port = info->client_port};
	chain_start(c, CS_CONNECT, cb, arg);
}

void milter_chain_helo(struct milter_chain *c, const char *helo, const char *tls_version, milter_callback *cb,
                       void *arg)
{
	c->s1 = xstrdup(helo);
	c->s2 = dup_or_null(tls_version);
	chain_start(c, CS_HELO, cb, arg);
}

void milter_chain_mail(struct milter_chain *c, const char *from, const char *const *args, size_t nargs,
                       const char *auth_user, milter_callback *cb, void *arg)
{
	c->s1 = xstrdup(from);
	c->s2 = dup_or_null(auth_user);
	copy_args(c, args, nargs);
	chain_start(c, CS_MAIL, cb, arg);
}

void milter_chain_rcpt(struct milter_chain *c, const char *rcpt, const char *const *args, size_t nargs,
                       milter_callback *cb, void *arg)
{
	c->s1 = xstrdup(rcpt);
	copy_args(c, args, nargs);
	chain_start(c, CS_RCPT, cb, arg);
}

void milter_chain_data(struct milter_chain *c, const char *queue_id, milter_callback *cb, void *arg)
{
	c->s1 = dup_or_null(queue_id);
	chain_start(c, CS_DATA, cb, arg);
}

void milter_chain_message(struct milter_chain *c, int fd, uint64_t size, const char *queue_id,
                          milter_callback *cb, void *arg)
{
	c->s1 = dup_or_null(queue_id);
	c->fd = fd;
	c->size = size;
	chain_start(c, CS_MESSAGE, cb, arg);
}

void milter_chain_abort(struct milter_chain *c)
{
	if (c->cb != NULL) {
		/* a stage in progress: the running session is aborted, no callback */
		c->cb = NULL;
		event_del(c->ev_done);
		args_clear(c);
	}
	for (size_t i = 0; i < c->n; i++)
		milter_abort(c->sessions[i]);
}
