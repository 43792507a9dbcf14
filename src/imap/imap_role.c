#include "imap/imap_role.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imap/imap_session.h"
#include "lib/log.h"
#include "lib/workpool.h"
#include "lookup/lookup_client.h"

static struct imap_settings settings;
static unsigned max_connections;

static void *auth_begin(void *ctx, const char *service, const char *user, const char *password,
                        const char *client_ip, mail_auth_cb *cb, void *arg)
{
	return lookup_client_auth(ctx, service, user, password, client_ip, cb, arg);
}

static void auth_cancel(void *ctx, void *req)
{
	struct lookup_req *r = req;
	lookup_req_cancel(&r);
}

static void addr_string(const struct sockaddr *sa, char *out, size_t size)
{
	out[0] = '\0';
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)size);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)size);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	const struct role_listener *rl = arg;
	if (imap_session_count() >= max_connections) {
		static const char msg[] = "* BYE Too many connections\r\n";
		ssize_t w = write(fd, msg, sizeof(msg) - 1);
		(void)w;
		close(fd);
		return;
	}
	char ip[64];
	addr_string(sa, ip, sizeof(ip));
	evutil_make_socket_nonblocking(fd);
	imap_session_new(evconnlistener_get_base(l), fd, &settings, rl->implicit_tls, ip);
}

/* accept() failed (EMFILE...): pause the listener briefly instead of spinning */
static void reenable_cb(evutil_socket_t fd, short what, void *arg)
{
	evconnlistener_enable(arg);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	log_warn("event=%s_accept_error error=\"%s\"", "imap", evutil_socket_error_to_string(err));
	evconnlistener_disable(l);
	struct timeval tv = { 0, 200000 };
	event_base_once(evconnlistener_get_base(l), -1, EV_TIMEOUT, reenable_cb, l, &tv);
}

static void sigterm_cb(evutil_socket_t sig, short what, void *arg)
{
	struct event_base *base = arg;
	imap_sessions_shutdown();
	event_base_loopexit(base, NULL);
}

void imap_role_run(struct role_env *env)
{
	log_set_role("imap");
	const struct mr_config *cfg = env->cfg;
	struct lookup_client *lc = lookup_client_new(env->base, env->ipc_prefix);
	settings.hostname = cfg->hostname;
	settings.line_max = cfg->limits.max_line_length > 65536 ? cfg->limits.max_line_length : 65536;
	settings.literal_max = 65536;
	settings.append_max = cfg->limits.max_message_size ? cfg->limits.max_message_size : 50 * 1024 * 1024;
	settings.allow_plaintext = cfg->auth_allow_plaintext;
	settings.timeout_secs = 1800;
	settings.tls = env->tls;
	settings.max_errors = cfg->limits.max_errors > 0 ? cfg->limits.max_errors * 2 : 20;
	settings.auth.begin = auth_begin;
	settings.auth.cancel = auth_cancel;
	settings.auth.ctx = lc;
	/* APPEND's fsync must not stall every session of the process */
	settings.pool = workpool_new(env->base, 2);
	max_connections = cfg->limits.max_connections ? cfg->limits.max_connections : 1000;
	signal(SIGPIPE, SIG_IGN);
	/* a socket per session (plus index files): use all the descriptors we may */
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	for (size_t i = 0; i < env->listener_count; i++) {
		struct role_listener *rl = &env->listeners[i];
		if (rl->kind != LISTEN_IMAP && rl->kind != LISTEN_IMAPS)
			continue;
		if (rl->implicit_tls && env->tls == NULL) {
			log_warn("event=imap_listener_skipped reason=no_tls_certificate");
			continue;
		}
		struct evconnlistener *l =
			evconnlistener_new(env->base, accept_cb, rl, LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_CLOSE_ON_FREE, -1, rl->fd);
		if (l == NULL)
			log_fatal("event=imap_listen_failed fd=%d", rl->fd);
		evconnlistener_set_error_cb(l, accept_error_cb);
	}
	struct event *term = evsignal_new(env->base, SIGTERM, sigterm_cb, env->base);
	event_add(term, NULL);
	log_info("event=imap_role_started listeners=%zu", env->listener_count);
	event_base_dispatch(env->base);
	event_free(term);
	workpool_free(&settings.pool);
	lookup_client_free(&lc);
	exit(0);
}
