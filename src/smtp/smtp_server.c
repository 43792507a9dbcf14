#include "smtp/smtp_server.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/ipc_client.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "lookup/lookup_client.h"
#include "master/roles.h"

struct listener_ctx {
	struct smtp_server *srv;
	struct role_listener *l;
	struct evconnlistener *evl;
};

static struct smtp_server S;
static struct listener_ctx *listeners;
static size_t listener_count;

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct listener_ctx *lc = arg;
	smtp_session_start(lc->srv, fd, lc->l, sa, salen);
}

static void on_accept_error(struct evconnlistener *evl, void *arg)
{
	int e = EVUTIL_SOCKET_ERROR();
	if (e == EMFILE || e == ENFILE)
		log_warn("event=accept_error error=\"%s\"", strerror(e));
}

static void stop_listening(void)
{
	for (size_t i = 0; i < listener_count; i++) {
		if (listeners[i].evl != NULL) {
			evconnlistener_free(listeners[i].evl);
			listeners[i].evl = NULL;
		}
	}
}

void smtp_server_session_gone(struct smtp_server *srv)
{
	if ((srv->draining || srv->stopping) && srv->session_count == 0)
		event_base_loopexit(srv->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct smtp_server *srv = arg;
	if (sig == SIGHUP) {
		/* Reload: the master starts fresh smtp processes; we finish our sessions. */
		log_info("event=draining sessions=%u", srv->session_count);
		srv->draining = true;
		stop_listening();
	} else {
		log_info("event=stopping sessions=%u", srv->session_count);
		srv->stopping = true;
		stop_listening();
		smtp_sessions_shutdown_all(srv);
	}
	smtp_server_session_gone(srv);
}

void smtp_role_run(struct role_env *env)
{
	S.cfg = env->cfg;
	S.env = env;
	S.base = env->base;
	S.lookup = lookup_client_new(env->base, env->ipc_prefix);
	char *qname = xasprintf("%s/queue", env->ipc_prefix);
	S.queue = ipc_client_new(env->base, qname);
	free(qname);

	listeners = xcalloc(env->listener_count ? env->listener_count : 1, sizeof(*listeners));
	listener_count = env->listener_count;
	for (size_t i = 0; i < env->listener_count; i++) {
		listeners[i].srv = &S;
		listeners[i].l = &env->listeners[i];
		listeners[i].evl = evconnlistener_new(env->base, on_accept, &listeners[i], LEV_OPT_CLOSE_ON_EXEC, -1,
		                                      env->listeners[i].fd);
		if (listeners[i].evl == NULL)
			log_fatal("event=listener_failed fd=%d", env->listeners[i].fd);
		evconnlistener_set_error_cb(listeners[i].evl, on_accept_error);
	}
	struct event *sterm = evsignal_new(env->base, SIGTERM, on_signal, &S);
	struct event *shup = evsignal_new(env->base, SIGHUP, on_signal, &S);
	evsignal_add(sterm, NULL);
	evsignal_add(shup, NULL);
	log_info("event=ready listeners=%zu", env->listener_count);
	event_base_dispatch(env->base);
	/* Shutdown: give replies a moment, then exit. */
	log_info("event=exit");
	exit(0);
}
