#include "master/master.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "master/role.h"
#include "master/roles.h"
#include "lookup/lookup_rules.h"

enum role_id { ROLE_LOOKUP, ROLE_QUEUE, ROLE_DELIVER, ROLE_SMTP, ROLE_IMAP, ROLE_POP3, ROLE_MANAGESIEVE, ROLE_COUNT };

static const char *const role_names[ROLE_COUNT] = { "lookup", "queue", "deliver", "smtp", "imap", "pop3",
                                                    "managesieve" };

struct child {
	enum role_id role;
	int index;        /* smtp process number */
	pid_t pid;
	unsigned gen;     /* config generation it runs */
	time_t started;
	unsigned fast_deaths;
	bool reloading;   /* told to exit by a reload: restart at once, no backoff */
	struct event *restart_ev;
};

/* smtp processes of an old generation finishing their sessions after a reload. */
#define MAX_DRAINING 128

struct master {
	struct mr_config *cfg;
	struct event_base *base;
	struct role_listener *listeners;
	size_t listener_count;
	SSL_CTX *tls;
	char ipc_prefix[64];
	struct child *children;
	size_t child_count;
	unsigned gen;
	bool stopping;
	pid_t draining[MAX_DRAINING];
	uid_t uid, vuid;
	gid_t gid, vgid;
	bool privileged;
	struct event *stop_timer;
	struct sieve_script *rules; /* compiled system rules of the running config */
	int lock_fd;                /* master.lock, held by the master only */
};

static struct master M;

/* ---- preparation ---- */

void master_ipc_prefix(const struct mr_config *cfg, char *out, size_t size)
{
	uint32_t h = 2166136261u; /* FNV-1a of the data_dir: the CLI finds the same names */
	for (const unsigned char *p = (const unsigned char *)cfg->data_dir; *p; p++)
		h = (h ^ *p) * 16777619u;
	snprintf(out, size, "mailroute/%08x", h);
}

SSL_CTX *master_tls_ctx(const struct mr_config *cfg, char **error_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*error_r = xstrdup("SSL_CTX_new failed");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	                             SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"mailroute", 9);
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		char e[256];
		ERR_error_string_n(ERR_get_error(), e, sizeof(e));
		*error_r = xasprintf("TLS certificate %s / key %s: %s", cfg->tls_cert, cfg->tls_key, e);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static int mkdir_owned(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
	if (mkdir(path, mode) < 0 && errno != EEXIST) {
		log_warn("event=mkdir_failed path=%s error=\"%s\"", path, strerror(errno));
		return -1;
	}
	if (M.privileged && chown(path, uid, gid) < 0)
		return -1;
	return chmod(path, mode);
}

/* Every ancestor of data_dir must be searchable by the unprivileged users. */
static int check_traversable(const char *dir)
{
	if (!M.privileged)
		return 0;
	char *p = xstrdup(dir);
	for (char *s = strrchr(p, '/'); s != NULL && s != p; s = strrchr(p, '/')) {
		*s = '\0';
		struct stat st;
		if (stat(p, &st) == 0 && !(st.st_mode & S_IXOTH)) {
			log_msg(LOG_LEVEL_FATAL,
			        "event=config_error error=\"data_dir %s is not reachable by the unprivileged users: %s has mode %03o (needs o+x)\"",
			        dir, p, (unsigned)(st.st_mode & 0777));
			free(p);
			return -1;
		}
	}
	free(p);
	return 0;
}

static int prepare_data_dir(const struct mr_config *cfg)
{
	if (check_traversable(cfg->data_dir) < 0)
		return -1;
	if (mkdir_owned(cfg->data_dir, 0755, 0, 0) < 0)
		return -1;
	char *db = conf_path(cfg, "db"), *queue = conf_path(cfg, "queue"), *mail = conf_path(cfg, "mail"),
	     *empty = conf_path(cfg, "empty"), *sieve = conf_path(cfg, "sieve");
	int r = 0;
	if (mkdir_owned(db, 0750, M.uid, M.gid) < 0 || mkdir_owned(queue, 0700, M.uid, M.gid) < 0 ||
	    mkdir_owned(mail, 0700, M.vuid, M.vgid) < 0 || mkdir_owned(empty, 0555, 0, 0) < 0 ||
	    mkdir_owned(sieve, 0750, M.vuid, M.vgid) < 0)
		r = -1;
	free(db);
	free(queue);
	free(mail);
	free(empty);
	free(sieve);
	return r;
}

static bool kind_is_tls(enum listen_kind k)
{
	return k == LISTEN_SUBMISSIONS || k == LISTEN_IMAPS || k == LISTEN_POP3S;
}

static int open_listener(const struct conf_listen *l)
{
	int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l->addr.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&l->addr, l->addr_len) < 0 || listen(fd, 1024) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Open listeners for cfg, reusing fds of an identical address in old[]. */
static int open_listeners(const struct mr_config *cfg, struct role_listener **out, size_t *count,
                          const struct mr_config *oldcfg, struct role_listener *old, size_t oldn)
{
	struct role_listener *ls = xcalloc(cfg->listen_count ? cfg->listen_count : 1, sizeof(*ls));
	for (size_t i = 0; i < cfg->listen_count; i++) {
		const struct conf_listen *l = &cfg->listen[i];
		ls[i].kind = l->kind;
		ls[i].implicit_tls = kind_is_tls(l->kind);
		ls[i].fd = -1;
		for (size_t j = 0; oldcfg != NULL && j < oldn; j++) {
			if (old[j].fd >= 0 && oldcfg->listen[j].addr_len == l->addr_len &&
			    memcmp(&oldcfg->listen[j].addr, &l->addr, l->addr_len) == 0) {
				ls[i].fd = old[j].fd;
				old[j].fd = -1;
				break;
			}
		}
		if (ls[i].fd < 0)
			ls[i].fd = open_listener(l);
		if (ls[i].fd < 0) {
			fprintf(stderr, "%s:%d:%d: cannot listen on %s (%s): %s\n", cfg->path, l->line, l->col, l->address,
			        conf_listen_kind_name(l->kind), strerror(errno));
			for (size_t k = 0; k < i; k++)
				close(ls[k].fd);
			free(ls);
			return -1;
		}
	}
	*out = ls;
	*count = cfg->listen_count;
	return 0;
}

/* ---- children ---- */

static void drop_privileges(enum role_id role)
{
	if (!M.privileged)
		return;
	bool vmail = role == ROLE_DELIVER || role == ROLE_IMAP || role == ROLE_POP3 || role == ROLE_MANAGESIEVE;
	uid_t uid = vmail ? M.vuid : M.uid;
	gid_t gid = vmail ? M.vgid : M.gid;
	if (role == ROLE_SMTP) {
		/* The network-facing SMTP role sees an empty, read-only root. */
		char *empty = conf_path(M.cfg, "empty");
		if (chroot(empty) < 0 || chdir("/") < 0)
			log_fatal("event=chroot_failed path=%s error=\"%s\"", empty, strerror(errno));
		free(empty);
	}
	if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
		log_fatal("event=setuid_failed error=\"%s\"", strerror(errno));
	if (setresuid(0, 0, 0) == 0)
		log_panic("event=privileges_not_dropped");
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

static void child_main(struct child *c)
{
	log_set_role(role_names[c->role]);
	/* Only the master holds the data_dir lock: a role left behind must not keep a new server out. */
	if (M.lock_fd > 0)
		close(M.lock_fd);
	/*
	 * The master's loop is not ours. Its epoll instance is shared with the master
	 * across fork, so re-create the backend first (event_reinit) and only then free
	 * it: freeing directly would unregister the master's own events.
	 */
	if (M.base != NULL) {
		event_reinit(M.base);
		event_base_free(M.base);
		M.base = NULL;
	}
	/* Signals: back to defaults; the role's own loop installs what it needs. */
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGINT, SIG_IGN); /* the master handles ^C and stops us with SIGTERM */
	signal(SIGCHLD, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);

	/* Keep only the listeners this role serves. */
	struct role_listener mine[32];
	size_t n = 0;
	for (size_t i = 0; i < M.listener_count; i++) {
		enum listen_kind k = M.listeners[i].kind;
		bool want = (c->role == ROLE_SMTP && (k == LISTEN_MX || k == LISTEN_SUBMISSION || k == LISTEN_SUBMISSIONS)) ||
		            (c->role == ROLE_IMAP && (k == LISTEN_IMAP || k == LISTEN_IMAPS)) ||
		            (c->role == ROLE_POP3 && (k == LISTEN_POP3 || k == LISTEN_POP3S)) ||
		            (c->role == ROLE_MANAGESIEVE && k == LISTEN_MANAGESIEVE);
		if (want && n < 32)
			mine[n++] = M.listeners[i];
		else
			close(M.listeners[i].fd);
	}
	drop_privileges(c->role);
	evthread_use_pthreads();
	struct event_base *base = event_base_new();
	if (base == NULL)
		log_fatal("event=event_base_failed");
	struct role_env env = {
		.cfg = M.cfg, .base = base, .listeners = mine, .listener_count = n,
		.tls = M.tls, .ipc_prefix = M.ipc_prefix,
		.uid = M.uid, .vuid = M.vuid, .index = c->index, .rules = M.rules,
	};
	switch (c->role) {
	case ROLE_LOOKUP: lookup_role_run(&env); break;
	case ROLE_QUEUE: queue_role_run(&env); break;
	case ROLE_DELIVER: deliver_role_run(&env); break;
	case ROLE_SMTP: smtp_role_run(&env); break;
	case ROLE_IMAP: roles_imap_run(&env); break;
	case ROLE_POP3: roles_pop3_run(&env); break;
	case ROLE_MANAGESIEVE: roles_managesieve_run(&env); break;
	default: break;
	}
	_exit(0);
}

static void start_child(struct child *c)
{
	pid_t pid = fork();
	if (pid < 0) {
		log_warn("event=fork_failed role=%s error=\"%s\"", role_names[c->role], strerror(errno));
		return;
	}
	if (pid == 0)
		child_main(c);
	c->pid = pid;
	c->gen = M.gen;
	c->started = time(NULL);
	log_info("event=role_started role=%s index=%d pid=%ld", role_names[c->role], c->index, (long)pid);
}

static void on_restart(evutil_socket_t fd, short what, void *arg)
{
	struct child *c = arg;
	if (!M.stopping && c->pid == 0)
		start_child(c);
}

static void reap(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (size_t i = 0; i < MAX_DRAINING; i++) {
			if (M.draining[i] == pid) {
				M.draining[i] = 0;
				log_info("event=drained role=smtp pid=%ld", (long)pid);
			}
		}
		for (size_t i = 0; i < M.child_count; i++) {
			struct child *c = &M.children[i];
			if (c->pid != pid)
				continue;
			c->pid = 0;
			if (c->role == ROLE_SMTP)
				smtp_anvil_forget(c->index);
			if (WIFSIGNALED(status))
				log_msg(M.stopping ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, "event=role_exited role=%s pid=%ld signal=%d",
				        role_names[c->role], (long)pid, WTERMSIG(status));
			else
				log_msg(M.stopping || WEXITSTATUS(status) == 0 ? LOG_LEVEL_INFO : LOG_LEVEL_WARN,
				        "event=role_exited role=%s pid=%ld status=%d", role_names[c->role], (long)pid,
				        WEXITSTATUS(status));
			if (M.stopping)
				break;
			/* Back off when a role keeps dying right after its start. */
			time_t now = time(NULL);
			c->fast_deaths = now - c->started < 10 && !c->reloading ? c->fast_deaths + 1 : 0;
			c->reloading = false;
			unsigned delay = c->fast_deaths == 0 ? 0 : 1u << (c->fast_deaths < 5 ? c->fast_deaths : 5);
			struct timeval tv = { .tv_sec = delay, .tv_usec = delay == 0 ? 100000 : 0 };
			evtimer_add(c->restart_ev, &tv);
			break;
		}
	}
}

static void signal_children(int sig)
{
	for (size_t i = 0; i < M.child_count; i++)
		if (M.children[i].pid > 0)
			kill(M.children[i].pid, sig);
	for (size_t i = 0; i < MAX_DRAINING; i++)
		if (M.draining[i] > 0)
			kill(M.draining[i], sig);
}

static bool children_alive(void)
{
	for (size_t i = 0; i < M.child_count; i++)
		if (M.children[i].pid > 0)
			return true;
	for (size_t i = 0; i < MAX_DRAINING; i++)
		if (M.draining[i] > 0)
			return true;
	return false;
}

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
	static int ticks;
	if (!children_alive()) {
		event_base_loopbreak(M.base);
		return;
	}
	if (++ticks == 100) { /* 10 s */
		log_warn("event=stop_timeout action=kill");
		signal_children(SIGKILL);
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	if (sig == SIGCHLD) {
		reap();
		return;
	}
	if (sig == SIGTERM || sig == SIGINT) {
		if (M.stopping)
			return;
		log_info("event=stopping signal=%d", (int)sig);
		M.stopping = true;
		signal_children(SIGTERM);
		struct timeval tv = { 0, 100000 };
		M.stop_timer = event_new(M.base, -1, EV_PERSIST, on_stop_timer, NULL);
		evtimer_add(M.stop_timer, &tv);
		return;
	}
	if (sig == SIGHUP) {
		if (M.stopping)
			return; /* no new generation while everything is going down */
		char *error = NULL;
		struct mr_config *ncfg = conf_load(M.cfg->path, &error);
		if (ncfg == NULL) {
			log_warn("event=reload_failed error=\"%s\" action=keep_running_config", error);
			free(error);
			return;
		}
		struct role_listener *nls;
		size_t nn;
		if (open_listeners(ncfg, &nls, &nn, M.cfg, M.listeners, M.listener_count) < 0) {
			log_warn("event=reload_failed error=\"cannot bind new listeners\" action=keep_running_config");
			conf_free(&ncfg);
			return;
		}
		struct sieve_script *nrules = NULL;
		if (ncfg->rules != NULL && (nrules = rules_load(ncfg->rules, &error)) == NULL) {
			log_warn("event=reload_failed error=\"%s\" action=keep_running_config_and_rules", error);
			free(error);
			for (size_t i = 0; i < nn; i++)
				close(nls[i].fd);
			free(nls);
			conf_free(&ncfg);
			return;
		}
		SSL_CTX *ntls = NULL;
		if (ncfg->tls_cert != NULL && (ntls = master_tls_ctx(ncfg, &error)) == NULL) {
			sieve_script_free(&nrules);
			log_warn("event=reload_failed error=\"%s\" action=keep_running_config", error);
			free(error);
			for (size_t i = 0; i < nn; i++)
				close(nls[i].fd);
			free(nls);
			conf_free(&ncfg);
			return;
		}
		for (size_t i = 0; i < M.listener_count; i++)
			if (M.listeners[i].fd >= 0)
				close(M.listeners[i].fd);
		free(M.listeners);
		M.listeners = nls;
		M.listener_count = nn;
		if (M.tls != NULL)
			SSL_CTX_free(M.tls);
		M.tls = ntls;
		/* Old rules stay allocated like the old config: draining children may still use them. */
		M.rules = nrules;
		/* The old config stays allocated: children forked from it may still be running. */
		M.cfg = ncfg;
		M.gen++;
		log_info("event=reloaded config=%s generation=%u", ncfg->path, M.gen);
		/* Roles exit (smtp after finishing its sessions) and are started again from the new config. */
		for (size_t i = 0; i < M.child_count; i++) {
			struct child *c = &M.children[i];
			if (c->pid <= 0)
				continue;
			if (c->role == ROLE_SMTP) {
				/* The old process finishes its sessions; a new one accepts from now on. */
				size_t k = 0;
				while (k < MAX_DRAINING && M.draining[k] != 0)
					k++;
				kill(c->pid, SIGHUP);
				if (k < MAX_DRAINING)
					M.draining[k] = c->pid;
				else
					kill(c->pid, SIGTERM);
				c->pid = 0;
				start_child(c);
			} else {
				c->reloading = true;
				kill(c->pid, SIGHUP);
			}
		}
	}
}

static void add_child(enum role_id role, int index)
{
	M.children = xreallocarray(M.children, M.child_count + 1, sizeof(*M.children));
	struct child *c = &M.children[M.child_count++];
	memset(c, 0, sizeof(*c));
	c->role = role;
	c->index = index;
}

static int lookup_users(const struct mr_config *cfg)
{
	M.privileged = geteuid() == 0;
	if (!M.privileged) {
		M.uid = M.vuid = getuid();
		M.gid = M.vgid = getgid();
		log_warn("event=unprivileged note=\"not started as root: every role runs as uid %ld, no chroot\"",
		         (long)M.uid);
		return 0;
	}
	struct passwd *pw = getpwnam(cfg->user);
	if (pw == NULL) {
		fprintf(stderr, "mailroute: user '%s' does not exist (scripts/install-deps creates it)\n", cfg->user);
		return -1;
	}
	M.uid = pw->pw_uid;
	M.gid = pw->pw_gid;
	pw = getpwnam(cfg->vmail_user);
	if (pw == NULL) {
		fprintf(stderr, "mailroute: user '%s' does not exist (scripts/install-deps creates it)\n", cfg->vmail_user);
		return -1;
	}
	M.vuid = pw->pw_uid;
	M.vgid = pw->pw_gid;
	return 0;
}

int master_run(struct mr_config *cfg)
{
	M.cfg = cfg;
	log_set_role("master");
	if (cfg->log_level != NULL)
		log_set_level(strcmp(cfg->log_level, "debug") == 0 ? LOG_LEVEL_DEBUG
		              : strcmp(cfg->log_level, "warn") == 0 ? LOG_LEVEL_WARN : LOG_LEVEL_INFO);
	if (cfg->log_file != NULL && log_open_file(cfg->log_file) < 0)
		fprintf(stderr, "mailroute: cannot open log_file %s: %s\n", cfg->log_file, strerror(errno));
	if (lookup_users(cfg) < 0)
		return 1;
	if (prepare_data_dir(cfg) < 0)
		return 1;
	/* One server per data_dir: a second one would corrupt the queue. */
	char *lock = conf_path(cfg, "master.lock");
	int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	/* The processes of a server that was just killed may take a moment to go: wait up to 5 s. */
	int locked = lfd >= 0 ? flock(lfd, LOCK_EX | LOCK_NB) : -1;
	for (int tries = 0; locked < 0 && lfd >= 0 && errno == EWOULDBLOCK && tries < 50; tries++) {
		usleep(100000);
		locked = flock(lfd, LOCK_EX | LOCK_NB);
	}
	if (lfd < 0 || locked < 0) {
		fprintf(stderr, "mailroute: %s: %s\n", lock,
		        errno == EWOULDBLOCK ? "another mailroute server runs on this data_dir" : strerror(errno));
		free(lock);
		return 1;
	}
	free(lock);
	M.lock_fd = lfd;
	char pid[32];
	int pn = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(lfd, 0) == 0 && write(lfd, pid, (size_t)pn) < 0)
		log_warn("event=lock_write_failed");

	if (cfg->tls_cert != NULL) {
		char *error = NULL;
		M.tls = master_tls_ctx(cfg, &error);
		if (M.tls == NULL) {
			fprintf(stderr, "mailroute: %s\n", error);
			free(error);
			return 1;
		}
	}
	if (cfg->rules != NULL) {
		char *error = NULL;
		M.rules = rules_load(cfg->rules, &error);
		if (M.rules == NULL) {
			fprintf(stderr, "%s\n", error);
			free(error);
			return 2;
		}
	}
	if (open_listeners(cfg, &M.listeners, &M.listener_count, NULL, NULL, 0) < 0)
		return 1;
	master_ipc_prefix(cfg, M.ipc_prefix, sizeof(M.ipc_prefix));
	/* Role clients accept only our role users on the other end of a socket. */
	uid_t peers[2] = { M.uid, M.vuid };
	ipc_set_trusted_peers(peers, 2);
	signal(SIGPIPE, SIG_IGN);

	bool has[LISTEN_KIND_COUNT] = { false };
	for (size_t i = 0; i < cfg->listen_count; i++)
		has[cfg->listen[i].kind] = true;
	add_child(ROLE_LOOKUP, 0);
	add_child(ROLE_QUEUE, 0);
	add_child(ROLE_DELIVER, 0);
	if (has[LISTEN_MX] || has[LISTEN_SUBMISSION] || has[LISTEN_SUBMISSIONS]) {
		long n = cfg->smtp_processes ? (long)cfg->smtp_processes : sysconf(_SC_NPROCESSORS_ONLN);
		if (n < 1)
			n = 1;
		if (n > 64)
			n = 64;
		for (long i = 0; i < n; i++)
			add_child(ROLE_SMTP, (int)i);
	}
	if ((has[LISTEN_IMAP] || has[LISTEN_IMAPS]) && roles_imap_available())
		add_child(ROLE_IMAP, 0);
	if ((has[LISTEN_POP3] || has[LISTEN_POP3S]) && roles_pop3_available())
		add_child(ROLE_POP3, 0);
	if (has[LISTEN_MANAGESIEVE] && roles_managesieve_available())
		add_child(ROLE_MANAGESIEVE, 0);

	M.base = event_base_new();
	int sigs[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP };
	struct event *sev[4];
	for (int i = 0; i < 4; i++) {
		sev[i] = evsignal_new(M.base, sigs[i], on_signal, NULL);
		evsignal_add(sev[i], NULL);
	}
	smtp_anvil_setup((unsigned)M.child_count);
	for (size_t i = 0; i < M.child_count; i++)
		M.children[i].restart_ev = evtimer_new(M.base, on_restart, &M.children[i]);
	log_info("event=starting version=%s config=%s data_dir=%s listeners=%zu privileged=%s", MR_VERSION, cfg->path,
	         cfg->data_dir, M.listener_count, M.privileged ? "yes" : "no");
	for (size_t i = 0; i < M.child_count; i++)
		start_child(&M.children[i]);
	event_base_dispatch(M.base);
	log_info("event=stopped");
	for (int i = 0; i < 4; i++)
		event_free(sev[i]);
	return 0;
}
