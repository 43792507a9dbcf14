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
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "deliver/maildir.h"
#include "deliverd/deliver_sieve.h"
#include "lib/ipc_client.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/workpool.h"
#include "lib/xalloc.h"
#include "master/proto.h"
#include "master/roles.h"

static struct {
	const struct mr_config *cfg;
	struct event_base *base;
	struct workpool *pool;
	struct ipc_client *queue;
	struct ipc_conn *conns[16];
} D;

struct job {
	struct deliver_job dj;
	struct ipc_conn *conn;
	uint32_t reqid;
	unsigned submits_pending; /* messages made by rules, handed to the queue, not yet confirmed */
	bool submit_failed;
};

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
	deliver_job_run(&j->dj);
}

static void job_finish(struct job *j);

/*
 * Messages made by the user's rules (redirects, vacation replies, reject
 * notices) are handed to the queue BEFORE the delivery is reported done: if one
 * cannot be queued, the delivery is reported as a temporary failure and tried
 * again, so a redirect-only rule never loses an accepted message.
 */
static void on_submitted(void *arg, struct ipc_reader *r, int fd)
{
	struct job *j = arg;
	if (fd >= 0)
		close(fd);
	char text[256] = "queue unreachable";
	bool ok = false;
	if (r != NULL) {
		ok = ipc_get_u32(r) == 1;
		ipc_get_str(r, text, sizeof(text));
		if (ipc_reader_end(r) < 0)
			log_panic("event=ipc_malformed type=submit_r");
	}
	if (ok) {
		log_info("event=submitted what=rules-of-%s id=%s", j->dj.id, text);
	} else {
		log_warn("event=submit_failed what=rules-of-%s error=\"%s\"", j->dj.id, text);
		j->submit_failed = true;
	}
	if (--j->submits_pending == 0)
		job_finish(j);
}

static bool submit(struct job *j, const struct deliver_out *o)
{
	int fd = memfd_create("mailroute-out", MFD_CLOEXEC);
	if (fd < 0 || write(fd, o->data, o->len) != (ssize_t)o->len) {
		log_warn("event=submit_failed id=%s error=\"memfd: %s\"", j->dj.id, strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	struct ipc_msg m;
	ipc_msg_init(&m, PROTO_QUEUE_SUBMIT, 0);
	ipc_put_str(&m, o->sender);
	ipc_put_u32(&m, 1);
	ipc_put_str(&m, o->rcpt);
	ipc_put_str(&m, NULL);
	ipc_put_str(&m, o->orcpt);
	m.fd = fd;
	j->submits_pending++;
	ipc_client_call(D.queue, &m, on_submitted, j);
	ipc_msg_deinit(&m);
	close(fd);
	return true;
}

/* Report the delivery to the queue and release the job. */
static void job_finish(struct job *j)
{
	struct deliver_job *d = &j->dj;
	if (j->submit_failed && d->result < 2) {
		d->result = 2;
		free(d->error);
		d->error = xstrdup("could not queue the messages made by the user's rules");
	}
	if (conn_alive(j->conn)) {
		struct ipc_msg m;
		ipc_msg_init(&m, PROTO_DELIVER_R, j->reqid);
		ipc_put_u32(&m, (uint32_t)d->result);
		ipc_put_str(&m, d->error ? d->error : "");
		ipc_send(j->conn, &m);
		ipc_msg_deinit(&m);
	}
	if (d->result >= 2)
		log_warn("event=delivery_failed id=%s rcpt=%u maildir=%s temporary=%s error=\"%s\"", d->id, d->idx,
		         d->maildir, d->result == 2 ? "yes" : "no", d->error ? d->error : "");
	deliver_job_free_outputs(d);
	close(d->fd);
	free(d->id);
	free(d->maildir);
	free(d->folder);
	free(d->unique);
	free(d->prepend);
	free(d->user);
	free(d->sender);
	free(d->orig_rcpt);
	free(d->error);
	free(d->log);
	free(j);
}

static void done(void *arg)
{
	struct job *j = arg;
	struct deliver_job *d = &j->dj;
	if (d->result < 2) {
		if (d->log != NULL) {
			char q[1024];
			log_info("event=sieve id=%s rcpt=%u user=%s actions=%s", d->id, d->idx, d->user,
			         log_q(q, sizeof(q), d->log));
		}
		for (size_t i = 0; i < d->out_count; i++)
			if (!submit(j, &d->out[i]))
				j->submit_failed = true;
	}
	if (j->submits_pending == 0)
		job_finish(j);
}

static void on_msg(struct ipc_conn *c, struct ipc_reader *r, int fd, void *arg)
{
	if (r->type != PROTO_DELIVER_LOCAL)
		log_panic("event=ipc_unknown_type type=%u", r->type);
	struct job *j = xcalloc(1, sizeof(*j));
	struct deliver_job *d = &j->dj;
	j->conn = c;
	j->reqid = r->reqid;
	d->cfg = D.cfg;
	d->fd = fd;
	d->id = ipc_get_strdup(r);
	d->idx = ipc_get_u32(r);
	d->maildir = ipc_get_strdup(r);
	d->folder = ipc_get_strdup(r);
	d->unique = ipc_get_strdup(r);
	d->prepend = ipc_get_strdup(r);
	d->user = ipc_get_strdup(r);
	d->sender = ipc_get_strdup(r);
	d->orig_rcpt = ipc_get_strdup(r);
	if (ipc_reader_end(r) < 0 || fd < 0 || d->id == NULL || d->maildir == NULL || d->unique == NULL ||
	    d->prepend == NULL || d->sender == NULL)
		log_panic("event=ipc_malformed type=deliver");
	/* ORCPT is "rfc822;addr": the rules want the address. */
	if (d->orig_rcpt != NULL && strncasecmp(d->orig_rcpt, "rfc822;", 7) == 0)
		memmove(d->orig_rcpt, d->orig_rcpt + 7, strlen(d->orig_rcpt + 7) + 1);
	workpool_submit(D.pool, work, done, j);
}

static void on_close(struct ipc_conn *c, void *arg)
{
	for (size_t i = 0; i < 16; i++)
		if (D.conns[i] == c)
			D.conns[i] = NULL;
	ipc_conn_free_later(&c);
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
	D.cfg = env->cfg;
	D.base = env->base;
	D.pool = workpool_new(env->base, 4);
	char *qname = xasprintf("%s/queue", env->ipc_prefix);
	D.queue = ipc_client_new(env->base, qname);
	free(qname);
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
