/*
 * The deliver role (runs as the mailbox owner): takes one delivery request at a
 * time per worker thread from the queue role, with the spool file descriptor,
 * and writes the message into the recipient's Maildir++ (tmp, fsync, rename).
 * It answers 1 delivered, 0 duplicate (already there), 2 temporary failure,
 * 3 permanent failure.
 */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deliver/maildir.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/workpool.h"
#include "lib/xalloc.h"
#include "master/proto.h"
#include "master/roles.h"

struct job {
	struct ipc_conn *conn;
	uint32_t reqid;
	int fd;
	char id[64];
	unsigned idx;
	char *maildir, *folder, *unique, *prepend;
	int result;
	char *error;
};

static struct {
	struct event_base *base;
	struct workpool *pool;
	struct ipc_conn *conns[16];
} D;

static bool conn_alive(struct ipc_conn *c)
{
	for (size_t i = 0; i < 16; i++)
		if (D.conns[i] == c)
			return true;
	return false;
}

static void work(void *arg)
{
	struct job *j = arg;
	errno = 0;
	int r = maildir_deliver(j->maildir, j->folder, j->fd, j->prepend, strlen(j->prepend), j->unique, &j->error);
	if (r >= 0)
		j->result = r;
	else
		j->result = maildir_error_is_temporary(errno) ? 2 : 3;
}

static void done(void *arg)
{
	struct job *j = arg;
	if (conn_alive(j->conn)) {
		struct ipc_msg m;
		ipc_msg_init(&m, PROTO_DELIVER_R, j->reqid);
		ipc_put_u32(&m, (uint32_t)j->result);
		ipc_put_str(&m, j->error ? j->error : "");
		ipc_send(j->conn, &m);
		ipc_msg_deinit(&m);
	}
	if (j->result >= 2)
		log_warn("event=delivery_failed id=%s rcpt=%u maildir=%s temporary=%s error=\"%s\"", j->id, j->idx,
		         j->maildir, j->result == 2 ? "yes" : "no", j->error ? j->error : "");
	close(j->fd);
	free(j->maildir);
	free(j->folder);
	free(j->unique);
	free(j->prepend);
	free(j->error);
	free(j);
}

static void on_msg(struct ipc_conn *c, struct ipc_reader *r, int fd, void *arg)
{
	if (r->type != PROTO_DELIVER_LOCAL)
		log_panic("event=ipc_unknown_type type=%u", r->type);
	struct job *j = xcalloc(1, sizeof(*j));
	j->conn = c;
	j->reqid = r->reqid;
	j->fd = fd;
	ipc_get_str(r, j->id, sizeof(j->id));
	j->idx = ipc_get_u32(r);
	j->maildir = ipc_get_strdup(r);
	j->folder = ipc_get_strdup(r);
	j->unique = ipc_get_strdup(r);
	j->prepend = ipc_get_strdup(r);
	if (ipc_reader_end(r) < 0 || fd < 0 || j->maildir == NULL || j->unique == NULL || j->prepend == NULL)
		log_panic("event=ipc_malformed type=deliver");
	workpool_submit(D.pool, work, done, j);
}

static void on_close(struct ipc_conn *c, void *arg)
{
	for (size_t i = 0; i < 16; i++)
		if (D.conns[i] == c)
			D.conns[i] = NULL;
	ipc_conn_free(&c);
}

static void on_accept(struct ipc_server *s, int fd, uid_t uid, void *arg)
{
	size_t i = 0;
	while (i < 16 && D.conns[i] != NULL)
		i++;
	if (i == 16) {
		close(fd);
		return;
	}
	D.conns[i] = ipc_conn_new(D.base, fd, on_msg, on_close, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopexit(D.base, NULL);
}

void deliver_role_run(struct role_env *env)
{
	D.base = env->base;
	D.pool = workpool_new(env->base, 4);
	char *error = NULL;
	char *name = xasprintf("%s/deliver", env->ipc_prefix);
	uid_t allowed[1] = { env->uid };
	struct ipc_server *srv = ipc_server_new(env->base, name, allowed, 1, on_accept, NULL, &error);
	for (int tries = 0; srv == NULL && tries < 50; tries++) {
		free(error);
		usleep(100000);
		srv = ipc_server_new(env->base, name, allowed, 1, on_accept, NULL, &error);
	}
	if (srv == NULL)
		log_fatal("event=ipc_listen_failed error=\"%s\"", error);
	free(name);
	struct event *st = evsignal_new(env->base, SIGTERM, on_signal, NULL);
	struct event *sh = evsignal_new(env->base, SIGHUP, on_signal, NULL);
	evsignal_add(st, NULL);
	evsignal_add(sh, NULL);
	log_info("event=ready");
	event_base_dispatch(env->base);
	/* Let running deliveries finish (their results are lost; the queue retries, duplicates are detected). */
	workpool_free(&D.pool);
	ipc_server_free(&srv);
	exit(0);
}
