/*
 * The queue role: owns the spool and the queue database (DESIGN.md §3).
 *  - smtp asks for a spool file (OPEN): we create it and pass the descriptor;
 *    smtp writes the body, then sends the recipients and COMMIT. We resolve each
 *    recipient to its delivery targets (the router), and hand the envelope and
 *    file to the group committer: fsync of the file and one SQLite transaction
 *    for the whole batch. Only then does smtp get "ok" and answer 250.
 *  - The scheduler hands due recipients to the deliver role and records the
 *    results: done, deferred with exponential backoff, or failed.
 */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib-route/directory.h"
#include "lib-route/route.h"
#include "lib/fileio.h"
#include "lib/ipc.h"
#include "lib/ipc_client.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "lookup/lookup_policy.h"
#include "lookup/lookup_rules.h"
#include "queue/dsn.h"
#include "queued/queue_outbound.h"
#include "queued/queue_triggers.h"
#include "master/proto.h"
#include "master/roles.h"
#include "queue/queue_committer.h"
#include "queue/queue_envelope.h"
#include "queue/queue_store.h"

#define MAX_INFLIGHT 64
#define MAX_PENDING_RCPTS 100000

typedef void queue_inject_cb(void *arg, bool ok, const char *id_or_error);
void queue_inject(const char *sender, char *const *rcpts, size_t n, int content_fd, const char *headers,
                  queue_inject_cb *cb, void *arg, struct ipc_conn *conn, uint32_t reqid);

struct raw_rcpt {
	char *address, *orcpt;
	unsigned notify;
	/* set by the system rules */
	bool rules_drop;     /* discarded: no delivery to its own targets */
	bool named;          /* address is a named target ("webhook:x"), not routed */
	char *rules_folder;  /* fileinto */
	char *rules_relay;   /* route :relay */
};

struct pending {
	struct pending *next;
	time_t created;
	char id[QUEUE_ID_SIZE];
	int fd;
	struct ipc_conn *conn;
	struct raw_rcpt *rcpts;
	size_t count, alloc;
};

struct commit_ctx {
	struct ipc_conn *conn;
	uint32_t reqid;
	char id[QUEUE_ID_SIZE];
};

struct inflight {
	struct inflight *next;
	char id[QUEUE_ID_SIZE];
	unsigned idx;
	unsigned attempts;
	time_t arrival;
	struct ipc_call *call;
};

static struct {
	const struct mr_config *cfg;
	struct event_base *base;
	struct queue_store *store;
	struct queue_committer *committer;
	struct directory *dir;
	struct route_options ropt;
	struct pending *pending;
	struct ipc_client *deliver;
	struct inflight *inflight;
	unsigned inflight_count;
	struct event *sched_ev, *tick_ev;
	struct ipc_conn *conns[256];
	const struct sieve_script *rules; /* system rules, compiled by the master */
	struct queue_outbound *outbound;
	struct queue_triggers *triggers; /* webhook:, pipe:, autoreply: targets */
	bool stopping;
} Q;

static bool conn_alive(struct ipc_conn *c)
{
	for (size_t i = 0; i < 256; i++)
		if (Q.conns[i] == c)
			return true;
	return false;
}

static void kick(void)
{
	event_active(Q.sched_ev, EV_READ, 0);
}

/* ---- intake ---- */

static struct pending *pending_find(struct ipc_conn *c, const char *id)
{
	for (struct pending *p = Q.pending; p != NULL; p = p->next)
		if (p->conn == c && strcmp(p->id, id) == 0)
			return p;
	return NULL;
}

static void pending_free(struct pending *p, bool remove_file)
{
	struct pending **pp = &Q.pending;
	while (*pp != NULL && *pp != p)
		pp = &(*pp)->next;
	if (*pp == p)
		*pp = p->next;
	if (p->fd >= 0)
		close(p->fd);
	if (remove_file) {
		char *error = NULL;
		if (queue_spool_remove(Q.store, p->id, &error) < 0) {
			log_warn("event=spool_remove_failed id=%s error=\"%s\"", p->id, error);
			free(error);
		}
	}
	for (size_t i = 0; i < p->count; i++) {
		free(p->rcpts[i].address);
		free(p->rcpts[i].orcpt);
		free(p->rcpts[i].rules_folder);
		free(p->rcpts[i].rules_relay);
	}
	free(p->rcpts);
	free(p);
}

static void handle_open(struct ipc_conn *c, struct ipc_reader *r)
{
	if (ipc_reader_end(r) < 0)
		log_panic("event=ipc_malformed type=open");
	struct ipc_msg m;
	ipc_msg_init(&m, PROTO_QUEUE_OPEN_R, r->reqid);
	struct pending *p = xcalloc(1, sizeof(*p));
	char *error = NULL;
	if (queue_committer_spool_create(Q.committer, p->id, &p->fd, &error) < 0) {
		log_warn("event=spool_create_failed error=\"%s\"", error);
		ipc_put_u32(&m, 0);
		ipc_put_str(&m, error);
		free(error);
		free(p);
	} else {
		p->conn = c;
		p->created = time(NULL);
		p->next = Q.pending;
		Q.pending = p;
		ipc_put_u32(&m, 1);
		ipc_put_str(&m, p->id);
		m.fd = p->fd;
	}
	ipc_send(c, &m);
	ipc_msg_deinit(&m);
}

static void handle_rcpt(struct ipc_conn *c, struct ipc_reader *r)
{
	char id[QUEUE_ID_SIZE];
	ipc_get_str(r, id, sizeof(id));
	char *address = ipc_get_strdup(r);
	char *orcpt = ipc_get_strdup(r);
	unsigned notify = ipc_get_u32(r);
	if (ipc_reader_end(r) < 0 || address == NULL)
		log_panic("event=ipc_malformed type=rcpt");
	struct pending *p = pending_find(c, id);
	if (p == NULL || p->count >= MAX_PENDING_RCPTS) {
		free(address);
		free(orcpt);
		return;
	}
	if (p->count == p->alloc) {
		p->alloc = p->alloc ? p->alloc * 2 : 4;
		p->rcpts = xreallocarray(p->rcpts, p->alloc, sizeof(*p->rcpts));
	}
	p->rcpts[p->count++] = (struct raw_rcpt){ .address = address, .orcpt = orcpt, .notify = notify };
}

static void commit_reply(struct ipc_conn *c, uint32_t reqid, bool ok, const char *error)
{
	if (!conn_alive(c))
		return;
	struct ipc_msg m;
	ipc_msg_init(&m, PROTO_QUEUE_COMMIT_R, reqid);
	ipc_put_u32(&m, ok ? 1 : 0);
	ipc_put_str(&m, error ? error : "");
	ipc_put_u32(&m, ok ? 250 : 451);
	ipc_put_str(&m, ok ? "2.0.0" : "4.3.0");
	ipc_send(c, &m);
	ipc_msg_deinit(&m);
}

/* A refusal with the code the rules chose (the smtp session answers it as is). */
static void commit_reply_code(struct ipc_conn *c, uint32_t reqid, int code, const char *enhanced, const char *text)
{
	if (!conn_alive(c))
		return;
	struct ipc_msg m;
	ipc_msg_init(&m, PROTO_QUEUE_COMMIT_R, reqid);
	ipc_put_u32(&m, 0);
	/* The text goes into an SMTP reply line: no control characters. */
	char clean[400];
	snprintf(clean, sizeof(clean), "%s", text ? text : "Message rejected");
	for (char *q = clean; *q; q++)
		if ((unsigned char)*q < ' ' || *q == 0x7f)
			*q = ' ';
	ipc_put_str(&m, clean);
	ipc_put_u32(&m, (uint32_t)code);
	ipc_put_str(&m, enhanced);
	ipc_send(c, &m);
	ipc_msg_deinit(&m);
}

static void on_committed(void *arg, int result, const char *error)
{
	struct commit_ctx *cc = arg;
	if (result < 0)
		log_warn("event=commit_failed id=%s error=\"%s\"", cc->id, error ? error : "?");
	commit_reply(cc->conn, cc->reqid, result >= 0, error);
	free(cc);
	if (result >= 0)
		kick();
}

/* The router (lookup_route_targets, shared with `mailroute explain`): one SMTP recipient becomes its targets. */
static int route_rcpt(struct queue_envelope *env, const struct raw_rcpt *rr, char **error_r)
{
	if (rr->rules_drop)
		return 0;
	if (rr->named) {
		queue_envelope_add_rcpt(env, rr->address, rr->orcpt, 0, QUEUE_RCPT_OTHER, rr->address, NULL);
		return 0;
	}
	struct route_result res;
	struct lookup_target *t;
	size_t n;
	if (lookup_route_targets(Q.dir, Q.cfg, &Q.ropt, rr->address, &res, &t, &n, error_r) < 0) {
		route_result_deinit(&res);
		return -1;
	}
	char *orcpt = rr->orcpt ? xstrdup(rr->orcpt) : xasprintf("rfc822;%s", rr->address);
	static const enum queue_rcpt_kind kinds[] = {
		[LOOKUP_TARGET_LOCAL] = QUEUE_RCPT_LOCAL,
		[LOOKUP_TARGET_REMOTE] = QUEUE_RCPT_REMOTE,
		[LOOKUP_TARGET_NAMED] = QUEUE_RCPT_OTHER,
		[LOOKUP_TARGET_UNROUTABLE] = QUEUE_RCPT_OTHER,
	};
	for (size_t i = 0; i < n; i++) {
		const char *target = t[i].target, *folder = t[i].folder;
		if (t[i].kind == LOOKUP_TARGET_LOCAL && rr->rules_folder != NULL)
			folder = rr->rules_folder;
		if (t[i].kind == LOOKUP_TARGET_REMOTE && rr->rules_relay != NULL)
			target = rr->rules_relay;
		queue_envelope_add_rcpt(env, t[i].address, orcpt, rr->notify, kinds[t[i].kind], target, folder);
	}
	lookup_targets_free(t, n);
	route_result_deinit(&res);
	free(orcpt);
	return 0;
}

/* ---- system rules ---- */

#define RULES_MAX_MESSAGE (32u << 20)

struct rules_verdict {
	int code;
	char enhanced[16];
	char *text;
};


/*
 * Run the system rules once per SMTP recipient (rules_apply, the same function
 * `mailroute explain` runs) and fold the outcomes into the pending recipient
 * list and the envelope. -1 with *v filled: refuse the message.
 */
static int rules_for_message(struct pending *p, struct queue_envelope *env, struct rules_verdict *v)
{
	size_t len = 0;
	/* rules on a huge message see its beginning (the header and the start of the body) */
	char *raw = fd_read_prefix(p->fd, RULES_MAX_MESSAGE, &len, NULL);
	if (raw == NULL)
		return 0;
	size_t n = p->count;
	for (size_t i = 0; i < n; i++) {
		struct rules_input in = {
			.sender = env->sender, .rcpt = p->rcpts[i].address, .auth_user = env->auth_user,
			.client_ip = env->client_ip, .helo = env->helo, .hostname = Q.cfg->hostname,
			.raw = raw, .raw_len = len,
		};
		struct rules_outcome o;
		rules_apply(Q.rules, &in, false, &o);
		if (o.error != NULL)
			log_warn("event=rules_runtime_error id=%s rcpt=%s error=\"%s\" action=implicit_keep", env->id,
			         p->rcpts[i].address, o.error);
		if (o.reject) {
			v->code = o.code;
			snprintf(v->enhanced, sizeof(v->enhanced), "%s", o.enhanced);
			v->text = xstrdup(o.text);
			rules_outcome_deinit(&o);
			free(raw);
			return -1;
		}
		if (o.quarantine) {
			env->state = QUEUE_STATE_QUARANTINE;
			log_info("event=quarantined id=%s reason=\"%s\"", env->id, o.quarantine_reason ? o.quarantine_reason : "");
		}
		if (o.headers != NULL && (env->headers == NULL || strstr(env->headers, o.headers) == NULL)) {
			char *h = xasprintf("%s%s", env->headers ? env->headers : "", o.headers);
			free(env->headers);
			env->headers = h;
		}
		p->rcpts[i].rules_drop = !o.keep;
		if (o.folder != NULL)
			p->rcpts[i].rules_folder = xstrdup(o.folder);
		if (o.relay != NULL)
			p->rcpts[i].rules_relay = xstrdup(o.relay);
		/* Copies and webhooks become recipients of their own. */
		for (size_t k = 0; k < o.copy_count + o.webhook_count; k++) {
			if (p->count == p->alloc) {
				p->alloc = p->alloc ? p->alloc * 2 : 4;
				p->rcpts = xreallocarray(p->rcpts, p->alloc, sizeof(*p->rcpts));
			}
			bool copy = k < o.copy_count;
			/* ORCPT: the SMTP recipient the rule ran for (a copy to the outside is a forward). */
			p->rcpts[p->count++] = (struct raw_rcpt){
				.address = copy ? xstrdup(o.copies[k]) : xasprintf("webhook:%s", o.webhooks[k - o.copy_count]),
				.orcpt = xasprintf("rfc822;%s", p->rcpts[i].address),
				.named = !copy,
			};
		}
		rules_outcome_deinit(&o);
	}
	free(raw);
	return 0;
}

static void handle_commit(struct ipc_conn *c, struct ipc_reader *r)
{
	char id[QUEUE_ID_SIZE];
	ipc_get_str(r, id, sizeof(id));
	char *sender = ipc_get_strdup(r);
	uint64_t size = ipc_get_u64(r);
	char *envid = ipc_get_strdup(r);
	uint32_t ret = ipc_get_u32(r);
	char *helo = ipc_get_strdup(r);
	char *ip = ipc_get_strdup(r);
	char *auth = ipc_get_strdup(r);
	uint32_t utf8 = ipc_get_u32(r);
	uint32_t body = ipc_get_u32(r);
	char *headers = ipc_get_strdup(r);
	uint32_t flags = ipc_get_u32(r);
	if (ipc_reader_end(r) < 0 || sender == NULL)
		log_panic("event=ipc_malformed type=commit");
	struct pending *p = pending_find(c, id);
	if (p == NULL || p->count == 0) {
		commit_reply(c, r->reqid, false, "unknown spool file or no recipients");
		if (p != NULL)
			pending_free(p, true);
		goto out;
	}
	struct queue_envelope *env = queue_envelope_new(sender);
	memcpy(env->id, p->id, sizeof(env->id));
	env->size = size;
	queue_envelope_set_str(&env->envid, envid);
	env->ret = ret == 1 ? QUEUE_RET_FULL : ret == 2 ? QUEUE_RET_HDRS : QUEUE_RET_DEFAULT;
	queue_envelope_set_str(&env->helo, helo);
	queue_envelope_set_str(&env->client_ip, ip);
	queue_envelope_set_str(&env->auth_user, auth);
	env->smtputf8 = utf8 != 0;
	queue_envelope_set_str(&env->headers, headers);
	env->body_type = body == 1 ? QUEUE_BODY_7BIT : body == 2 ? QUEUE_BODY_8BITMIME
	                                         : body == 3 ? QUEUE_BODY_BINARYMIME : QUEUE_BODY_DEFAULT;
	char *error = NULL;
	struct rules_verdict rv = { 0 };
	if (Q.rules != NULL && rules_for_message(p, env, &rv) < 0) {
		commit_reply_code(c, r->reqid, rv.code, rv.enhanced, rv.text);
		log_info("event=rejected_by_rules id=%s code=%d", id, rv.code);
		free(rv.text);
		queue_envelope_free(&env);
		pending_free(p, true);
		goto out;
	}
	for (size_t i = 0; i < p->count; i++) {
		if (route_rcpt(env, &p->rcpts[i], &error) < 0) {
			log_warn("event=route_failed id=%s error=\"%s\"", id, error ? error : "?");
			commit_reply(c, r->reqid, false, "routing failed");
			free(error);
			queue_envelope_free(&env);
			pending_free(p, true);
			goto out;
		}
	}
	if (env->rcpt_count == 0) {
		/* Every recipient discarded by the rules: accepted, and dropped. */
		log_info("event=discarded_by_rules id=%s", id);
		commit_reply(c, r->reqid, true, NULL);
		queue_envelope_free(&env);
		pending_free(p, true);
		goto out;
	}
	if (flags & PROTO_COMMIT_F_QUARANTINE) {
		env->state = QUEUE_STATE_QUARANTINE;
		log_info("event=quarantined id=%s reason=content_filter", id);
	}
	if (flags & PROTO_COMMIT_F_JUNK) {
		/* DMARC quarantine: local mailboxes get it in their Junk folder. */
		for (size_t i = 0; i < env->rcpt_count; i++)
			if (env->rcpts[i].kind == QUEUE_RCPT_LOCAL)
				queue_envelope_set_str(&env->rcpts[i].folder, "Junk");
		log_info("event=quarantine id=%s folder=Junk", id);
	}
	struct commit_ctx *cc = xcalloc(1, sizeof(*cc));
	cc->conn = c;
	cc->reqid = r->reqid;
	memcpy(cc->id, p->id, sizeof(cc->id));
	int fd = p->fd;
	p->fd = -1; /* the committer owns it now */
	pending_free(p, false);
	queue_committer_submit(Q.committer, env, fd, on_committed, cc);
out:
	free(headers);
	free(sender);
	free(envid);
	free(helo);
	free(ip);
	free(auth);
}

static void handle_abort(struct ipc_conn *c, struct ipc_reader *r)
{
	char id[QUEUE_ID_SIZE];
	ipc_get_str(r, id, sizeof(id));
	if (ipc_reader_end(r) < 0)
		log_panic("event=ipc_malformed type=abort");
	struct pending *p = pending_find(c, id);
	if (p != NULL)
		pending_free(p, true);
}

/* ---- messages made inside: redirects, vacation replies, bounces, sendmail ---- */

struct inject_ctx {
	struct ipc_conn *conn; /* NULL: internal */
	uint32_t reqid;
	char id[QUEUE_ID_SIZE];
	queue_inject_cb *cb;
	void *arg;
};

static void inject_reply(struct inject_ctx *ic, bool ok, const char *text)
{
	if (ic->conn != NULL && conn_alive(ic->conn)) {
		struct ipc_msg m;
		ipc_msg_init(&m, PROTO_QUEUE_SUBMIT_R, ic->reqid);
		ipc_put_u32(&m, ok ? 1 : 0);
		ipc_put_str(&m, text);
		ipc_send(ic->conn, &m);
		ipc_msg_deinit(&m);
	}
	if (ic->cb != NULL)
		ic->cb(ic->arg, ok, text);
	free(ic);
}

static void on_injected(void *arg, int result, const char *error)
{
	struct inject_ctx *ic = arg;
	if (result < 0)
		log_warn("event=inject_failed id=%s error=\"%s\"", ic->id, error ? error : "?");
	else
		kick();
	inject_reply(ic, result >= 0, result >= 0 ? ic->id : (error ? error : "commit failed"));
}

/* Copy all of src_fd (from offset 0) into dst_fd. */
static int copy_fd(int src_fd, int dst_fd)
{
	char buf[65536];
	off_t off = 0;
	for (;;) {
		ssize_t n = pread(src_fd, buf, sizeof(buf), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		for (ssize_t w = 0; w < n;) {
			ssize_t k = write(dst_fd, buf + w, (size_t)(n - w));
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				return -1;
			w += k;
		}
		off += n;
	}
}

/* orcpt: the ORCPT of every recipient (a forward by a user's rule: "rfc822;<the user>"), or NULL. */
static void queue_inject_orcpt(const char *sender, char *const *rcpts, size_t n, int content_fd, const char *headers,
                               const char *orcpt, queue_inject_cb *cb, void *arg, struct ipc_conn *conn,
                               uint32_t reqid)
{
	struct inject_ctx *ic = xcalloc(1, sizeof(*ic));
	ic->conn = conn;
	ic->reqid = reqid;
	ic->cb = cb;
	ic->arg = arg;
	char *error = NULL;
	int fd = -1;
	if (n == 0) {
		inject_reply(ic, false, "no recipients");
		return;
	}
	if (queue_committer_spool_create(Q.committer, ic->id, &fd, &error) < 0) {
		inject_reply(ic, false, error);
		free(error);
		return;
	}
	if (copy_fd(content_fd, fd) < 0) {
		char *e = xasprintf("copying the message: %s", strerror(errno));
		close(fd);
		queue_spool_remove(Q.store, ic->id, NULL);
		inject_reply(ic, false, e);
		free(e);
		return;
	}
	struct queue_envelope *env = queue_envelope_new(sender);
	memcpy(env->id, ic->id, sizeof(env->id));
	queue_envelope_set_str(&env->headers, headers);
	queue_envelope_set_str(&env->helo, Q.cfg->hostname);
	for (size_t i = 0; i < n; i++) {
		struct raw_rcpt rr = { .address = rcpts[i], .orcpt = (char *)orcpt };
		if (route_rcpt(env, &rr, &error) < 0) {
			log_warn("event=inject_route_failed id=%s error=\"%s\"", ic->id, error ? error : "?");
			free(error);
			queue_envelope_free(&env);
			close(fd);
			queue_spool_remove(Q.store, ic->id, NULL);
			inject_reply(ic, false, "routing failed");
			return;
		}
	}
	char q[300];
	log_info("event=injected id=%s from=%s rcpts=%zu", ic->id, log_q(q, sizeof(q), sender), n);
	queue_committer_submit(Q.committer, env, fd, on_injected, ic);
}

void queue_inject(const char *sender, char *const *rcpts, size_t n, int content_fd, const char *headers,
                  queue_inject_cb *cb, void *arg, struct ipc_conn *conn, uint32_t reqid)
{
	queue_inject_orcpt(sender, rcpts, n, content_fd, headers, NULL, cb, arg, conn, reqid);
}

static bool has_ctl(const char *s)
{
	for (; s != NULL && *s; s++)
		if ((unsigned char)*s < ' ' || *s == 0x7f)
			return true;
	return false;
}

static void handle_submit(struct ipc_conn *c, struct ipc_reader *r, int fd)
{
	char *sender = ipc_get_strdup(r);
	uint32_t n = ipc_get_u32(r);
	if (n > 1000)
		log_panic("event=ipc_malformed type=submit rcpts=%u", n);
	char **rcpts = xcalloc(n ? n : 1, sizeof(char *));
	for (uint32_t i = 0; i < n; i++)
		rcpts[i] = ipc_get_strdup(r);
	char *headers = ipc_get_strdup(r);
	char *orcpt = ipc_get_strdup(r);
	if (ipc_reader_end(r) < 0 || sender == NULL || fd < 0)
		log_panic("event=ipc_malformed type=submit");
	for (uint32_t i = 0; i < n; i++)
		if (rcpts[i] == NULL)
			log_panic("event=ipc_malformed type=submit");
	/* Addresses end up in header fields (Return-Path, Delivered-To): no control characters. */
	bool clean = !has_ctl(sender) && !has_ctl(orcpt);
	for (uint32_t i = 0; i < n && clean; i++)
		clean = !has_ctl(rcpts[i]);
	if (!clean) {
		struct inject_ctx *ic = xcalloc(1, sizeof(*ic));
		ic->conn = c;
		ic->reqid = r->reqid;
		inject_reply(ic, false, "control characters in an address");
		goto out;
	}
	queue_inject_orcpt(sender, rcpts, n, fd, headers, orcpt, NULL, NULL, c, r->reqid);
out:
	close(fd);
	free(orcpt);
	for (uint32_t i = 0; i < n; i++)
		free(rcpts[i]);
	free(rcpts);
	free(sender);
	free(headers);
}

/* ---- scheduler ---- */

static void fail_rcpt(const char *id, unsigned idx, const char *status, const char *diagnostic,
                      const char *remote_mta);

/*
 * Results are written in batches: one SQLite transaction (one fsync) for every
 * result that came in during one turn of the event loop, instead of one each.
 * The scheduler flushes before it scans, so it never sees a stale state.
 */
#define MAX_UPDATES 4096
static struct {
	struct queue_rcpt_update u[MAX_UPDATES];
	char *ids[MAX_UPDATES];
	char *texts[MAX_UPDATES];
	size_t n;
	struct event *ev;
} U;

static void on_flush_retry(evutil_socket_t fd, short what, void *arg);

/* True while a result for this recipient waits to be written: it must not be dispatched again. */
static bool update_pending(const char *id, unsigned idx)
{
	for (size_t i = 0; i < U.n; i++)
		if (U.u[i].idx == idx && strcmp(U.ids[i], id) == 0)
			return true;
	return false;
}

static void flush_updates(void)
{
	if (U.n == 0)
		return;
	char *error = NULL;
	if (queue_store_rcpt_results(Q.store, U.u, U.n, &error) < 0) {
		/* Keep them (the scheduler skips these recipients meanwhile) and try again soon. */
		log_warn("event=queue_update_failed count=%zu error=\"%s\" action=retry", U.n, error ? error : "?");
		free(error);
		static struct event *retry;
		if (retry == NULL)
			retry = evtimer_new(Q.base, on_flush_retry, NULL);
		struct timeval tv = { 0, 200000 };
		evtimer_add(retry, &tv);
		return;
	}
	for (size_t i = 0; i < U.n; i++) {
		if (U.u[i].finished)
			log_info("event=removed id=%s", U.ids[i]);
		free(U.ids[i]);
		free(U.texts[i]);
	}
	U.n = 0;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	flush_updates();
}

static void on_flush_retry(evutil_socket_t fd, short what, void *arg)
{
	flush_updates();
}

static void store_result(const char *id, unsigned idx, enum queue_result result, const char *text, time_t next)
{
	if (U.n == MAX_UPDATES)
		flush_updates();
	if (U.n == MAX_UPDATES) {
		log_warn("event=queue_update_dropped id=%s rcpt=%u reason=database_unavailable", id, idx);
		return; /* the recipient stays pending and is tried again: a duplicate at worst, never a loss */
	}
	U.ids[U.n] = xstrdup(id);
	U.texts[U.n] = text ? xstrdup(text) : NULL;
	U.u[U.n] = (struct queue_rcpt_update){ .id = U.ids[U.n], .idx = idx, .result = result,
		                                  .error_text = U.texts[U.n], .next_attempt = next };
	U.n++;
	event_active(U.ev, EV_READ, 0);
}

/* Record one attempt. A temporary failure past queue.max_age becomes a bounce. */
static void record(const char *id, unsigned idx, enum queue_result result, const char *text, unsigned attempts,
                   time_t arrival)
{
	time_t now = time(NULL);
	time_t next = 0;
	if (result == QUEUE_RESULT_DEFERRED) {
		if (Q.cfg->queue.max_age > 0 && now - arrival > (time_t)Q.cfg->queue.max_age) {
			log_warn("event=expired id=%s rcpt=%u error=\"%s\"", id, idx, text ? text : "");
			char *diag = xasprintf("X-Mailroute; delivery time expired: %s", text ? text : "");
			fail_rcpt(id, idx, "4.4.7", diag, NULL);
			free(diag);
			return;
		}
		next = now + queue_retry_delay(attempts + 1, Q.cfg->queue.retry_min, Q.cfg->queue.retry_max);
	}
	store_result(id, idx, result, text, next);
}

/* The sender of double bounces: a failed message from it is dropped, never bounced again. */
static char *double_bounce_sender(void)
{
	return xasprintf("double-bounce@%s", Q.cfg->hostname);
}

/*
 * A bounce is recorded only once its DSN is durable in the queue (its commit
 * answered): a crash or a failed commit in between leaves the recipient pending,
 * so the failure is reported again later, never lost. Meanwhile the scheduler
 * leaves the recipient alone.
 */
struct dsn_wait {
	struct dsn_wait *next;
	char id[QUEUE_ID_SIZE];
	unsigned idx;
	bool record;   /* a failure (bounce) to record; false for success notices */
	char *diag;
};
static struct dsn_wait *dsn_waiting;

static bool dsn_pending(const char *id, unsigned idx)
{
	for (const struct dsn_wait *w = dsn_waiting; w != NULL; w = w->next)
		if (w->record && w->idx == idx && strcmp(w->id, id) == 0)
			return true;
	return false;
}

static void on_dsn_queued(void *arg, bool ok, const char *text)
{
	struct dsn_wait *w = arg;
	for (struct dsn_wait **pp = &dsn_waiting; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	if (ok)
		log_info("event=dsn_queued for=%s dsn_id=%s", w->id, text);
	else
		log_warn("event=dsn_failed for=%s error=\"%s\" action=%s", w->id, text, w->record ? "retry" : "none");
	if (w->record) {
		if (ok)
			store_result(w->id, w->idx, QUEUE_RESULT_BOUNCED, w->diag, 0);
		else
			store_result(w->id, w->idx, QUEUE_RESULT_DEFERRED, w->diag,
			             time(NULL) + Q.cfg->queue.retry_min);
	}
	free(w->diag);
	free(w);
}

/*
 * Queue a delivery status notification about recipient idx of message id
 * (RFC 3464): to the envelope sender; a failed message with the null sender
 * gets a double bounce to the postmaster; never a bounce for a double bounce.
 * Returns true when a DSN was queued.
 */
static bool send_dsn(const struct queue_envelope *env, const struct queue_rcpt *rc, enum dsn_action action,
                     const char *status, const char *diagnostic, const char *remote_mta)
{
	char *dbl = double_bounce_sender();
	bool is_double = strcasecmp(env->sender, dbl) == 0;
	const char *to = env->sender;
	char *postmaster = NULL;
	if (env->sender[0] == '\0') {
		if (action != DSN_FAILED) {
			free(dbl);
			return false;
		}
		postmaster = xasprintf("postmaster@%s", Q.cfg->hostname);
		to = postmaster;
	}
	if (is_double || (rc->notify & QUEUE_NOTIFY_NEVER) ||
	    (rc->notify != 0 && action == DSN_FAILED && !(rc->notify & QUEUE_NOTIFY_FAILURE))) {
		log_info("event=dsn_skipped id=%s rcpt=%u reason=%s", env->id, rc->idx,
		         is_double ? "double_bounce" : "notify");
		free(dbl);
		free(postmaster);
		return false;
	}
	char *final = xasprintf("rfc822;%s", rc->address);
	struct dsn_rcpt dr = {
		.final_rcpt = final, .orcpt = rc->orcpt, .action = action, .status = status,
		.remote_mta = remote_mta, .diagnostic = diagnostic, .last_attempt = time(NULL),
	};
	int fd = queue_store_open_spool(Q.store, env->id);
	struct dsn_request req = {
		.reporting_mta = Q.cfg->hostname, .envid = env->envid, .sender = to, .queue_id = env->id,
		.arrival = env->arrival, .return_full = env->ret == QUEUE_RET_FULL, .rcpts = &dr, .rcpt_count = 1,
		.original_fd = fd, .max_full = 10u << 20, .now = time(NULL),
	};
	char *msg = NULL, *error = NULL;
	size_t len = 0;
	bool sent = false;
	if (dsn_build(&req, &msg, &len, &error) < 0) {
		log_warn("event=dsn_build_failed id=%s error=\"%s\"", env->id, error ? error : "?");
		free(error);
	} else {
		int mfd = memfd_create("mailroute-dsn", MFD_CLOEXEC);
		if (mfd >= 0 && write(mfd, msg, len) == (ssize_t)len) {
			char *rcpts[1] = { (char *)to };
			struct dsn_wait *w = xcalloc(1, sizeof(*w));
			memcpy(w->id, env->id, sizeof(w->id));
			w->idx = rc->idx;
			w->record = action == DSN_FAILED;
			w->diag = diagnostic ? xstrdup(diagnostic) : NULL;
			w->next = dsn_waiting;
			dsn_waiting = w;
			queue_inject(env->sender[0] == '\0' ? dbl : "", rcpts, 1, mfd, NULL, on_dsn_queued, w, NULL, 0);
			sent = true;
		}
		if (mfd >= 0)
			close(mfd);
		free(msg);
	}
	if (fd >= 0)
		close(fd);
	free(final);
	free(dbl);
	free(postmaster);
	return sent;
}

/* A permanent failure: bounce (DSN) and record it. */
static void fail_rcpt(const char *id, unsigned idx, const char *status, const char *diagnostic,
                      const char *remote_mta)
{
	struct queue_envelope *env = NULL;
	char *error = NULL;
	bool dsn = false;
	if (queue_store_get(Q.store, id, &env, &error) > 0) {
		for (size_t i = 0; i < env->rcpt_count; i++)
			if (env->rcpts[i].idx == idx)
				dsn = send_dsn(env, &env->rcpts[i], DSN_FAILED, status, diagnostic, remote_mta);
	} else {
		free(error);
		error = NULL;
	}
	queue_envelope_free(&env);
	log_warn("event=bounced id=%s rcpt=%u status=%s dsn=%s diagnostic=\"%s\"", id, idx, status, dsn ? "yes" : "no",
	         diagnostic ? diagnostic : "");
	free(error);
	/* With a DSN on its way, on_dsn_queued records the bounce once the DSN is committed. */
	if (!dsn)
		store_result(id, idx, QUEUE_RESULT_FAILED, diagnostic, 0);
}

/* NOTIFY=SUCCESS: a "delivered" (local) or "relayed" (a peer without DSN) notice. */
static void success_dsn(const char *id, unsigned idx, enum dsn_action action, const char *remote_mta)
{
	struct queue_envelope *env = NULL;
	char *error = NULL;
	if (queue_store_get(Q.store, id, &env, &error) > 0) {
		for (size_t i = 0; i < env->rcpt_count; i++)
			if (env->rcpts[i].idx == idx && (env->rcpts[i].notify & QUEUE_NOTIFY_SUCCESS))
				send_dsn(env, &env->rcpts[i], action, "2.0.0", NULL, remote_mta);
	}
	free(error);
	queue_envelope_free(&env);
}

static void inflight_remove(struct inflight *f)
{
	struct inflight **pp = &Q.inflight;
	while (*pp != NULL && *pp != f)
		pp = &(*pp)->next;
	if (*pp == f)
		*pp = f->next;
	Q.inflight_count--;
	free(f);
}

static void on_delivered(void *arg, struct ipc_reader *r, int fd)
{
	struct inflight *f = arg;
	f->call = NULL;
	if (fd >= 0)
		close(fd);
	if (r == NULL) {
		/* The deliver role went away: the next scheduler run tries again. */
		inflight_remove(f);
		return;
	}
	uint32_t result = ipc_get_u32(r);
	char text[1024];
	ipc_get_str(r, text, sizeof(text));
	if (ipc_reader_end(r) < 0 || r->type != PROTO_DELIVER_R)
		log_panic("event=ipc_malformed type=deliver_r");
	if (result == 1 || result == 0) {
		log_info("event=delivered id=%s rcpt=%u duplicate=%s", f->id, f->idx, result == 0 ? "yes" : "no");
		if (result == 1)
			success_dsn(f->id, f->idx, DSN_DELIVERED, NULL);
		record(f->id, f->idx, QUEUE_RESULT_DONE, NULL, f->attempts, f->arrival);
	} else if (result == 2) {
		log_warn("event=deferred id=%s rcpt=%u error=\"%s\"", f->id, f->idx, text);
		record(f->id, f->idx, QUEUE_RESULT_DEFERRED, text, f->attempts, f->arrival);
	} else {
		log_warn("event=failed id=%s rcpt=%u error=\"%s\"", f->id, f->idx, text);
		char *diag = xasprintf("X-Mailroute; local delivery failed: %s", text);
		fail_rcpt(f->id, f->idx, "5.2.0", diag, NULL);
		free(diag);
	}
	inflight_remove(f);
	kick();
}

static bool is_inflight(const char *id, unsigned idx)
{
	for (struct inflight *f = Q.inflight; f != NULL; f = f->next)
		if (f->idx == idx && strcmp(f->id, id) == 0)
			return true;
	return false;
}

static void dispatch_local(const struct queue_due *due)
{
	struct queue_envelope *env = NULL;
	char *error = NULL;
	if (queue_store_get(Q.store, due->id, &env, &error) <= 0) {
		log_warn("event=queue_read_failed id=%s error=\"%s\"", due->id, error ? error : "missing");
		free(error);
		record(due->id, due->idx, QUEUE_RESULT_DEFERRED, "4.3.0 queue read failed", due->attempts, due->arrival);
		return;
	}
	const struct queue_rcpt *rc = NULL;
	for (size_t i = 0; i < env->rcpt_count; i++)
		if (env->rcpts[i].idx == due->idx)
			rc = &env->rcpts[i];
	int fd = queue_store_open_spool(Q.store, due->id);
	if (rc == NULL || fd < 0) {
		log_warn("event=spool_missing id=%s error=\"%s\"", due->id, strerror(errno));
		queue_envelope_free(&env);
		if (fd >= 0)
			close(fd);
		record(due->id, due->idx, QUEUE_RESULT_DEFERRED, "4.3.0 spool file unreadable", due->attempts,
		       due->arrival);
		return;
	}
	char *prepend = xasprintf("Return-Path: <%s>\r\nDelivered-To: %s\r\n%s", env->sender, rc->address,
	                          env->headers ? env->headers : "");
	char *unique = xasprintf("%lld.Q%sR%u.%s", (long long)env->arrival, due->id, due->idx, Q.cfg->hostname);
	for (char *p = unique; *p; p++)
		if (*p == '/' || *p == ':')
			*p = '_';
	struct inflight *f = xcalloc(1, sizeof(*f));
	memcpy(f->id, due->id, sizeof(f->id));
	f->idx = due->idx;
	f->attempts = due->attempts;
	f->arrival = env->arrival;
	f->next = Q.inflight;
	Q.inflight = f;
	Q.inflight_count++;
	struct ipc_msg m;
	ipc_msg_init(&m, PROTO_DELIVER_LOCAL, 0);
	ipc_put_str(&m, due->id);
	ipc_put_u32(&m, due->idx);
	ipc_put_str(&m, rc->target);
	ipc_put_str(&m, rc->folder);
	ipc_put_str(&m, unique);
	ipc_put_str(&m, prepend);
	ipc_put_str(&m, rc->address);
	ipc_put_str(&m, env->sender);
	ipc_put_str(&m, rc->orcpt);
	m.fd = fd;
	f->call = ipc_client_call(Q.deliver, &m, on_delivered, f);
	ipc_msg_deinit(&m);
	close(fd);
	free(prepend);
	free(unique);
	queue_envelope_free(&env);
}

/* Results of a webhook, pipe or auto-reply (queue_triggers.c). */
static void on_trigger_result(void *ctx, const char *id, unsigned idx, unsigned attempts, time_t arrival,
                              enum queue_trigger_result r, const char *status, const char *text)
{
	if (r == QUEUE_TRIGGER_FAILED)
		fail_rcpt(id, idx, status, text, NULL);
	else /* a dead letter is finished here: the dead-letter directory has it, no bounce */
		record(id, idx, r == QUEUE_TRIGGER_DEFERRED ? QUEUE_RESULT_DEFERRED : QUEUE_RESULT_DONE, text, attempts, arrival);
	kick();
}

static void on_due(void *ctx, const struct queue_due *due)
{
	if (Q.inflight_count >= MAX_INFLIGHT || is_inflight(due->id, due->idx) || update_pending(due->id, due->idx) ||
	    dsn_pending(due->id, due->idx) ||
	    queue_outbound_busy(Q.outbound, due->id, due->idx) || queue_triggers_busy(Q.triggers, due->id, due->idx))
		return;
	if (due->bounce_requested) {
		fail_rcpt(due->id, due->idx, "5.0.0", "X-Mailroute; returned to the sender by the administrator", NULL);
		return;
	}
	switch (due->kind) {
	case QUEUE_RCPT_LOCAL:
		dispatch_local(due);
		break;
	case QUEUE_RCPT_REMOTE:
		queue_outbound_collect(Q.outbound, due);
		break;
	default:
		if (strcmp(due->target, "unroutable") == 0)
			fail_rcpt(due->id, due->idx, "5.1.1", "X-Mailroute; the recipient no longer exists", NULL);
		else if (queue_triggers_handles(due->target))
			queue_triggers_dispatch(Q.triggers, due);
		else
			record(due->id, due->idx, QUEUE_RESULT_DEFERRED, "4.3.0 target type not available in this build",
			       due->attempts, due->arrival);
		break;
	}
}

/* Results of one outbound delivery, per recipient. */
static void on_outbound_result(void *ctx, const char *id, unsigned idx, unsigned attempts, time_t arrival,
                               const struct smtp_rcpt_result *r)
{
	char remote[300] = "";
	if (r->host != NULL && r->host[0] != '\0')
		snprintf(remote, sizeof(remote), "dns;%s", r->host);
	char text[1200];
	snprintf(text, sizeof(text), "%d %s %s", r->code, r->enh ? r->enh : "", r->text ? r->text : "");
	for (char *p = text; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	switch (r->status) {
	case SMTP_RCPT_DELIVERED:
		log_info("event=relayed id=%s rcpt=%u host=%s addr=%s reply=\"%s\"", id, idx, r->host ? r->host : "",
		         r->addr ? r->addr : "", text);
		if (!r->dsn_passed)
			success_dsn(id, idx, DSN_RELAYED, remote[0] ? remote : NULL);
		record(id, idx, QUEUE_RESULT_DONE, NULL, attempts, arrival);
		break;
	case SMTP_RCPT_TEMPFAIL:
		log_warn("event=deferred id=%s rcpt=%u host=%s error=\"%s\"", id, idx, r->host ? r->host : "", text);
		record(id, idx, QUEUE_RESULT_DEFERRED, text, attempts, arrival);
		break;
	case SMTP_RCPT_PERMFAIL: {
		char *diag = xasprintf("%s; %s", r->remote ? "smtp" : "X-Mailroute", text);
		fail_rcpt(id, idx, r->enh && r->enh[0] ? r->enh : "5.0.0", diag, remote[0] ? remote : NULL);
		free(diag);
		break;
	}
	}
	kick();
}

/*
 * A spool file whose session went away without COMMIT or ABORT (the smtp
 * process cancelled the OPEN it was waiting for): never acknowledged, removed
 * once no DATA can still be running for it.
 */
static void expire_pending(void)
{
	time_t now = time(NULL);
	time_t limit = (time_t)Q.cfg->limits.data_timeout * 4 + 600;
	for (struct pending *p = Q.pending, *next; p != NULL; p = next) {
		next = p->next;
		if (now - p->created > limit) {
			log_info("event=spool_abandoned id=%s", p->id);
			pending_free(p, true);
		}
	}
}

static void on_sched(evutil_socket_t fd, short what, void *arg)
{
	flush_updates();
	expire_pending();
	if (Q.stopping)
		return;
	char *error = NULL;
	if (queue_store_due(Q.store, time(NULL), 256, on_due, NULL, &error) < 0) {
		log_warn("event=queue_scan_failed error=\"%s\"", error);
		free(error);
	}
	queue_outbound_dispatch(Q.outbound, Q.store);
}

/* ---- ipc plumbing ---- */

static void on_msg(struct ipc_conn *c, struct ipc_reader *r, int fd, void *arg)
{
	if (r->type == PROTO_QUEUE_SUBMIT) {
		handle_submit(c, r, fd);
		return;
	}
	if (fd >= 0)
		close(fd);
	switch (r->type) {
	case PROTO_QUEUE_OPEN: handle_open(c, r); break;
	case PROTO_QUEUE_RCPT: handle_rcpt(c, r); break;
	case PROTO_QUEUE_COMMIT: handle_commit(c, r); break;
	case PROTO_QUEUE_ABORT: handle_abort(c, r); break;
	case PROTO_QUEUE_KICK: kick(); break;
	default: log_panic("event=ipc_unknown_type type=%u", r->type);
	}
}

static void on_close(struct ipc_conn *c, void *arg)
{
	/* Its uncommitted spool files were never acknowledged: remove them. */
	for (struct pending *p = Q.pending, *next; p != NULL; p = next) {
		next = p->next;
		if (p->conn == c)
			pending_free(p, true);
	}
	for (size_t i = 0; i < 256; i++)
		if (Q.conns[i] == c)
			Q.conns[i] = NULL;
	ipc_conn_free_later(&c);
}

static void on_accept(struct ipc_server *s, int fd, uid_t uid, void *arg)
{
	size_t i = 0;
	while (i < 256 && Q.conns[i] != NULL)
		i++;
	if (i == 256) {
		close(fd);
		return;
	}
	Q.conns[i] = ipc_conn_new(Q.base, fd, on_msg, on_close, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	Q.stopping = true;
	/* Let commits in flight finish: their clients are waiting for the answer. */
	if (queue_committer_pending(Q.committer) == 0)
		event_base_loopexit(Q.base, NULL);
	else {
		struct timeval tv = { 0, 20000 };
		event_base_loopexit(Q.base, &tv);
	}
}

void queue_role_run(struct role_env *env)
{
	Q.cfg = env->cfg;
	Q.base = env->base;
	Q.ropt.subaddress_separator = env->cfg->subaddress_separator;
	Q.rules = env->rules;
	char *error = NULL;
	char *qdir = conf_path(env->cfg, "queue");
	Q.store = queue_store_open(qdir, &error);
	if (Q.store == NULL)
		log_fatal("event=queue_open_failed dir=%s error=\"%s\"", qdir, error);
	free(qdir);
	struct queue_recover_stats rs;
	if (queue_store_recover(Q.store, &rs, &error) < 0)
		log_fatal("event=queue_recover_failed error=\"%s\"", error);
	Q.committer = queue_committer_new(Q.store, env->base, env->cfg->queue.commit_delay_us, &error);
	if (Q.committer == NULL)
		log_fatal("event=committer_failed error=\"%s\"", error);
	/* One syncfs() per batch instead of one fdatasync per file (see src/queue/README.md for the numbers). */
	if (strcmp(env->cfg->queue.sync, "fs") == 0 && queue_committer_set_sync_method(Q.committer, QUEUE_SYNC_FS) < 0)
		log_warn("event=syncfs_unavailable action=fdatasync_each_file");
	char *dpath = directory_path(env->cfg);
	Q.dir = directory_open(dpath, false, &error);
	if (Q.dir == NULL)
		log_fatal("event=directory_open_failed path=%s error=\"%s\"", dpath, error);
	free(dpath);
	Q.outbound = queue_outbound_new(env->base, env->cfg, Q.dir, on_outbound_result, NULL, &error);
	if (Q.outbound == NULL)
		log_fatal("event=outbound_init_failed error=\"%s\"", error);
	Q.triggers = queue_triggers_new(env->base, env->cfg, Q.store, on_trigger_result, queue_inject, NULL, &error);
	if (Q.triggers == NULL)
		log_fatal("event=triggers_init_failed error=\"%s\"", error);
	char *dname = xasprintf("%s/deliver", env->ipc_prefix);
	Q.deliver = ipc_client_new(env->base, dname);
	free(dname);

	char *name = xasprintf("%s/queue", env->ipc_prefix);
	/* smtp (cfg->user) hands in mail; deliver (vmail_user) hands in redirects and replies. */
	uid_t allowed[2] = { env->uid, env->vuid };
	struct ipc_server *srv = ipc_server_new(env->base, name, allowed, 2, on_accept, NULL, &error);
	for (int tries = 0; srv == NULL && tries < 50; tries++) {
		free(error);
		usleep(100000);
		srv = ipc_server_new(env->base, name, allowed, 2, on_accept, NULL, &error);
	}
	if (srv == NULL)
		log_fatal("event=ipc_listen_failed error=\"%s\"", error);
	free(name);

	Q.sched_ev = event_new(env->base, -1, 0, on_sched, NULL);
	U.ev = event_new(env->base, -1, 0, on_flush, NULL);
	Q.tick_ev = event_new(env->base, -1, EV_PERSIST, on_sched, NULL);
	struct timeval tick = { 1, 0 };
	evtimer_add(Q.tick_ev, &tick);
	struct event *st = evsignal_new(env->base, SIGTERM, on_signal, NULL);
	struct event *sh = evsignal_new(env->base, SIGHUP, on_signal, NULL);
	evsignal_add(st, NULL);
	evsignal_add(sh, NULL);
	log_info("event=ready recovered_messages=%u orphans_removed=%u", rs.messages, rs.orphans_removed);
	kick();
	event_base_dispatch(env->base);
	flush_updates();
	queue_triggers_free(&Q.triggers); /* running pipe commands are killed: retried after the restart */
	queue_committer_free(&Q.committer);
	ipc_server_free(&srv);
	exit(0);
}
