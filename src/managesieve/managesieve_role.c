#include "managesieve/managesieve_role.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "lib-sieve/sieve_store.h"
#include "lib/log.h"
#include "lookup/lookup_client.h"
#include "managesieve/managesieve_session.h"

static struct managesieve_settings settings;
static unsigned max_connections;

static void *auth_begin(void *ctx, const char *service, const char *user, const char *password,
                        const char *client_ip, mail_auth_cb *cb, void *arg)
{
	return lookup_client_auth(ctx, service, user, password, client_ip, cb, arg);
}

static void auth_cancel(void *ctx, void *req)
{
	(void)ctx;
	struct lookup_req *r = req;
	lookup_req_cancel(&r);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	(void)len;
	const struct role_listener *rl = arg;
	if (managesieve_session_count() >= max_connections) {
		static const char msg[] = "BYE (TRYLATER) \"Too many connections\"\r\n";
		ssize_t w = write(fd, msg, sizeof(msg) - 1);
		(void)w;
		close(fd);
		return;
	}
	char ip[64] = "";
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
	evutil_make_socket_nonblocking(fd);
	managesieve_session_new(evconnlistener_get_base(l), fd, &settings, rl->implicit_tls, ip);
}

/* accept() failed (EMFILE...): pause the listener briefly instead of spinning */
static void reenable_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	evconnlistener_enable(arg);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	(void)arg;
	int err = EVUTIL_SOCKET_ERROR();
	log_warn("event=msieve_accept_error error=\"%s\"", evutil_socket_error_to_string(err));
	evconnlistener_disable(l);
	struct timeval tv = { 0, 200000 };
	event_base_once(evconnlistener_get_base(l), -1, EV_TIMEOUT, reenable_cb, l, &tv);
}

static void sigterm_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	managesieve_sessions_shutdown();
	event_base_loopexit(arg, NULL);
}

void managesieve_role_run(struct role_env *env)
{
	log_set_role("managesieve");
	const struct mr_config *cfg = env->cfg;
	struct lookup_client *lc = lookup_client_new(env->base, env->ipc_prefix);
	settings.data_dir = cfg->data_dir;
	settings.allow_plaintext = cfg->auth_allow_plaintext;
	settings.tls = env->tls;
	settings.timeout_secs = cfg->limits.command_timeout > 0 ? cfg->limits.command_timeout * 2 : 600;
	settings.max_errors = cfg->limits.max_errors ? cfg->limits.max_errors : 10;
	settings.max_line = cfg->limits.max_line_length > 8192 ? cfg->limits.max_line_length : 8192;
	settings.max_script_size = SIEVE_STORE_MAX_SIZE;
	settings.max_scripts = 50;
	settings.auth.begin = auth_begin;
	settings.auth.cancel = auth_cancel;
	settings.auth.ctx = lc;
	max_connections = cfg->limits.max_connections ? cfg->limits.max_connections : 1000;
	signal(SIGPIPE, SIG_IGN);
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	size_t serving = 0;
	for (size_t i = 0; i < env->listener_count; i++) {
		struct role_listener *rl = &env->listeners[i];
		if (rl->kind != LISTEN_MANAGESIEVE)
			continue;
		struct evconnlistener *l =
			evconnlistener_new(env->base, accept_cb, rl, LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_CLOSE_ON_FREE, -1, rl->fd);
		if (l == NULL)
			log_fatal("event=msieve_listen_failed fd=%d", rl->fd);
		evconnlistener_set_error_cb(l, accept_error_cb);
		serving++;
	}
	struct event *term = evsignal_new(env->base, SIGTERM, sigterm_cb, env->base);
	event_add(term, NULL);
	log_info("event=msieve_role_started listeners=%zu tls=%d", serving, env->tls != NULL);
	event_base_dispatch(env->base);
	event_free(term);
	lookup_client_free(&lc);
}
