/*
 * imap-testd: a test-only daemon (never installed) that serves IMAP and POP3 sessions with a
 * stub password check, so the protocol code can be tested end to end before and apart from
 * the master and lookup roles.
 *
 *   imap-testd --mail-root DIR --user ADDR:PASS [--user ...] [--cert PEM --key PEM] [--plaintext]
 *
 * Listens on 127.0.0.1 ephemeral ports and prints one line
 *   "imap=P1 imaps=P2 pop3=P3 pop3s=P4"
 * on stdout (imaps/pop3s are 0 without a certificate). A user's Maildir is
 * DIR/<domain>/<localpart>. The password "tempfail" makes the stub answer LOOKUP_TEMPFAIL.
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "imap/imap_session.h"
#include "lib/log.h"
#include "lib/workpool.h"
#include "lib/xalloc.h"
#include "pop3/pop3_session.h"

struct stub_user {
	char *addr, *pass;
};
static struct stub_user users[16];
static size_t nusers;
static const char *mail_root;
static struct event_base *base;

struct stub_req {
	mail_auth_cb *cb;
	void *arg;
	enum lookup_status status;
	char *user, *maildir;
	struct event *ev;
};

static void stub_fire(evutil_socket_t fd, short what, void *p)
{
	struct stub_req *r = p;
	r->cb(r->arg, r->status, r->user, r->maildir);
	event_free(r->ev);
	free(r->user);
	free(r->maildir);
	free(r);
}

static void *stub_begin(void *ctx, const char *service, const char *user, const char *password,
                        const char *client_ip, mail_auth_cb *cb, void *arg)
{
	struct stub_req *r = xcalloc(1, sizeof(*r));
	r->cb = cb;
	r->arg = arg;
	r->status = LOOKUP_DENIED;
	if (strcmp(password, "tempfail") == 0)
		r->status = LOOKUP_TEMPFAIL;
	for (size_t i = 0; i < nusers; i++) {
		if (strcasecmp(users[i].addr, user) == 0 && strcmp(users[i].pass, password) == 0) {
			const char *at = strchr(users[i].addr, '@');
			r->status = LOOKUP_OK;
			r->user = xstrdup(users[i].addr);
			r->maildir = at ? xasprintf("%s/%s/%.*s", mail_root, at + 1, (int)(at - users[i].addr), users[i].addr)
			                : xasprintf("%s/%s", mail_root, users[i].addr);
		}
	}
	/* answer asynchronously, like the lookup role (with its failure delay shortened) */
	r->ev = event_new(base, -1, 0, stub_fire, r);
	struct timeval tv = { 0, r->status == LOOKUP_OK ? 1000 : 50000 };
	event_add(r->ev, &tv);
	return r;
}

static void stub_cancel(void *ctx, void *req)
{
	struct stub_req *r = req;
	event_free(r->ev);
	free(r->user);
	free(r->maildir);
	free(r);
}

static struct imap_settings iset;
static struct pop3_settings pset;

struct lst {
	bool pop3, tls;
};

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	const struct lst *k = arg;
	char ip[64] = "";
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
	evutil_make_socket_nonblocking(fd);
	if (k->pop3)
		pop3_session_new(base, fd, &pset, k->tls, ip);
	else
		imap_session_new(base, fd, &iset, k->tls, ip);
}

static struct evconnlistener *listeners[4];
static size_t nlisteners;

static int listen_on(struct lst *k)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct evconnlistener *l = evconnlistener_new_bind(base, accept_cb, k, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE,
	                                                   64, (struct sockaddr *)&sin, sizeof(sin));
	if (l == NULL) {
		perror("bind");
		exit(1);
	}
	listeners[nlisteners++] = l;
	struct sockaddr_in got;
	socklen_t gl = sizeof(got);
	getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&got, &gl);
	return ntohs(got.sin_port);
}

static void sig_cb(evutil_socket_t sig, short what, void *arg)
{
	imap_sessions_shutdown();
	pop3_sessions_shutdown();
	event_base_loopexit(base, NULL);
}

int main(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL;
	bool plaintext = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--mail-root") == 0 && i + 1 < argc) {
			mail_root = argv[++i];
		} else if (strcmp(argv[i], "--user") == 0 && i + 1 < argc && nusers < 16) {
			char *u = xstrdup(argv[++i]);
			char *c = strrchr(u, ':');
			if (c == NULL)
				return 2;
			*c = '\0';
			users[nusers].addr = u;
			users[nusers++].pass = c + 1;
		} else if (strcmp(argv[i], "--cert") == 0 && i + 1 < argc) {
			cert = argv[++i];
		} else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
			key = argv[++i];
		} else if (strcmp(argv[i], "--plaintext") == 0) {
			plaintext = true;
		} else {
			fprintf(stderr, "usage: imap-testd --mail-root DIR --user ADDR:PASS [--cert F --key F] [--plaintext]\n");
			return 2;
		}
	}
	if (mail_root == NULL)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	log_set_role("imap-testd");
	signal(SIGPIPE, SIG_IGN);
	evthread_use_pthreads();
	base = event_base_new();
	struct workpool *pool = getenv("IMAP_TESTD_INLINE") ? NULL : workpool_new(base, 2);
	SSL_CTX *ctx = NULL;
	if (cert != NULL && key != NULL) {
		ctx = SSL_CTX_new(TLS_server_method());
		if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 || SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
			fprintf(stderr, "imap-testd: cannot load certificate\n");
			return 1;
		}
	}
	struct mail_auth auth = { .begin = stub_begin, .cancel = stub_cancel };
	iset = (struct imap_settings){ .hostname = "testd.example", .allow_plaintext = plaintext, .tls = ctx,
		                       .auth = auth, .line_max = 65536, .literal_max = 65536,
		                       .append_max = 10 * 1024 * 1024, .timeout_secs = 60, .pool = pool };
	pset = (struct pop3_settings){ .hostname = "testd.example", .allow_plaintext = plaintext, .tls = ctx,
		                       .auth = auth, .timeout_secs = 60 };
	static struct lst k_imap = { false, false }, k_imaps = { false, true }, k_pop3 = { true, false },
	                  k_pop3s = { true, true };
	int p1 = listen_on(&k_imap), p3 = listen_on(&k_pop3);
	int p2 = ctx ? listen_on(&k_imaps) : 0, p4 = ctx ? listen_on(&k_pop3s) : 0;
	printf("imap=%d imaps=%d pop3=%d pop3s=%d\n", p1, p2, p3, p4);
	struct event *t = evsignal_new(base, SIGTERM, sig_cb, NULL);
	struct event *in = evsignal_new(base, SIGINT, sig_cb, NULL);
	event_add(t, NULL);
	event_add(in, NULL);
	event_base_dispatch(base);
	event_free(t);
	event_free(in);
	for (size_t i = 0; i < nlisteners; i++)
		evconnlistener_free(listeners[i]);
	workpool_free(&pool);
	event_base_free(base);
	if (ctx)
		SSL_CTX_free(ctx);
	return 0;
}
