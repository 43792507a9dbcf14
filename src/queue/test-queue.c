#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/xalloc.h"
#include "queue/queue_cli.h"
#include "queue/queue_committer.h"
#include "queue/queue_id.h"
#include "queue/queue_store.h"

static char base[64];
static char *qdir;

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	snprintf(base, sizeof(base), "/tmp/test-queue-XXXXXX");
	assert_non_null(mkdtemp(base));
	qdir = xasprintf("%s/queue", base);
	return 0;
}

static int teardown(void **state)
{
	char *mnt = xasprintf("%s/small", base);
	(void)umount2(mnt, MNT_DETACH); /* test_full_disk's tmpfs, should it have failed midway */
	free(mnt);
	nftw(base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(qdir);
	return 0;
}

static struct queue_store *open_store(void)
{
	char *error = NULL;
	struct queue_store *q = queue_store_open(qdir, &error);
	if (q == NULL)
		fail_msg("open: %s", error);
	return q;
}

static bool spool_exists(const char *id)
{
	char *p = xasprintf("%s/spool/%s", qdir, id);
	bool r = access(p, F_OK) == 0;
	free(p);
	return r;
}

/* A spool file with body and an envelope with nrcpt recipients. */
static struct queue_envelope *make_msg(struct queue_store *q, const char *body, unsigned nrcpt, int *fd_r)
{
	struct queue_envelope *env = queue_envelope_new("sender@example.org");
	char *error = NULL;
	assert_int_equal(queue_spool_create(q, env->id, fd_r, &error), 1);
	assert_int_equal(write(*fd_r, body, strlen(body)), (ssize_t)strlen(body));
	for (unsigned i = 0; i < nrcpt; i++) {
		char addr[64];
		snprintf(addr, sizeof(addr), "rcpt%u@example.test", i);
		assert_non_null(queue_envelope_add_rcpt(env, addr, NULL, 0, QUEUE_RCPT_LOCAL, "/m/x", NULL));
	}
	return env;
}

/* The same with a spool file from the committer's pool. */
static struct queue_envelope *make_msg_pool(struct queue_committer *c, const char *body, unsigned nrcpt,
					    int *fd_r)
{
	struct queue_envelope *env = queue_envelope_new("sender@example.org");
	char *error = NULL;
	assert_int_equal(queue_committer_spool_create(c, env->id, fd_r, &error), 1);
	assert_int_equal(write(*fd_r, body, strlen(body)), (ssize_t)strlen(body));
	for (unsigned i = 0; i < nrcpt; i++)
		assert_non_null(queue_envelope_add_rcpt(env, "r@example.test", NULL, 0, QUEUE_RCPT_LOCAL, "/m/x", NULL));
	return env;
}

static unsigned count_spool_files(void)
{
	char *spool = xasprintf("%s/spool", qdir);
	DIR *d = opendir(spool);
	assert_non_null(d);
	unsigned files = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			files++;
	closedir(d);
	free(spool);
	return files;
}

static void commit_one(struct queue_store *q, struct queue_envelope *env, int fd)
{
	struct queue_commit_item it = { .env = env, .fd = fd };
	assert_int_equal(queue_store_commit_batch(q, &it, 1), 1);
	assert_int_equal(it.result, 1);
	assert_null(it.error);
}

static int run_cli(char **out_r, char **err_r, int argc, ...);

/* ---- ids ---- */

static void test_ids(void **state)
{
	enum { N = 20000 };
	char (*ids)[QUEUE_ID_SIZE] = xcalloc(N, QUEUE_ID_SIZE);
	struct timeval tv;
	gettimeofday(&tv, NULL);
	uint64_t before = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
	for (int i = 0; i < N; i++) {
		queue_id_new(ids[i]);
		assert_int_equal(strlen(ids[i]), QUEUE_ID_LEN);
		assert_true(queue_id_is_valid(ids[i]));
		if (i > 0)
			assert_true(strcmp(ids[i - 1], ids[i]) < 0); /* unique and sortable */
	}
	gettimeofday(&tv, NULL);
	uint64_t after = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
	assert_true(queue_id_time_us(ids[0]) >= before);
	assert_true(queue_id_time_us(ids[N - 1]) <= after + N); /* may borrow future microseconds */
	free(ids);

	static const struct { const char *s; bool ok; } cases[] = {
		{ .s = "0123456789ABCDEF", .ok = true },
		{ .s = "0123456789ABCDEFG", .ok = false },
		{ .s = "0123456789ABCDE", .ok = false },
		{ .s = "0123456789abcdef", .ok = false },
		{ .s = "0123456789ABCDEI", .ok = false },
		{ .s = "0123456789ABCDEU", .ok = false },
		{ .s = "../../etc/passwd", .ok = false },
		{ .s = "", .ok = false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(queue_id_is_valid(cases[i].s), cases[i].ok);
	assert_false(queue_id_is_valid(NULL));
}

/* ---- store round trip ---- */

static void test_roundtrip(void **state)
{
	struct queue_store *q = open_store();
	int fd;
	struct queue_envelope *env = queue_envelope_new("");
	char *error = NULL;
	assert_int_equal(queue_spool_create(q, env->id, &fd, &error), 1);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	char *dbp = xasprintf("%s/queue.db", qdir);
	assert_int_equal(stat(dbp, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	free(dbp);
	const char *body = "From: a@b\r\nSubject: round trip\r\n\r\nbody\r\n";
	assert_int_equal(write(fd, body, strlen(body)), (ssize_t)strlen(body));
	env->arrival = 1700000000;
	queue_envelope_set_str(&env->envid, "ENV-1");
	env->ret = QUEUE_RET_HDRS;
	queue_envelope_set_str(&env->helo, "client.example");
	queue_envelope_set_str(&env->client_ip, "192.0.2.1");
	queue_envelope_set_str(&env->auth_user, "demo@example.test");
	env->body_type = QUEUE_BODY_8BITMIME;
	env->smtputf8 = true;
	queue_envelope_add_rcpt(env, "u1@example.test", "rfc822;u1@example.test",
				QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE, QUEUE_RCPT_LOCAL,
				"/var/mail/example.test/u1", "Junk");
	queue_envelope_add_rcpt(env, "x@remote.example", NULL, QUEUE_NOTIFY_NEVER, QUEUE_RCPT_REMOTE, NULL, NULL);
	queue_envelope_add_rcpt(env, "hook@example.test", NULL, 0, QUEUE_RCPT_OTHER, "webhook:crm", "");
	char id[QUEUE_ID_SIZE];
	memcpy(id, env->id, sizeof(id));
	commit_one(q, env, fd);
	assert_int_equal(env->size, strlen(body)); /* taken from the file */
	queue_envelope_free(&env);

	struct queue_envelope *got = NULL;
	assert_int_equal(queue_store_get(q, id, &got, &error), 1);
	assert_string_equal(got->id, id);
	assert_string_equal(got->sender, "");
	assert_int_equal(got->arrival, 1700000000);
	assert_int_equal(got->size, strlen(body));
	assert_string_equal(got->envid, "ENV-1");
	assert_int_equal(got->ret, QUEUE_RET_HDRS);
	assert_string_equal(got->helo, "client.example");
	assert_string_equal(got->client_ip, "192.0.2.1");
	assert_string_equal(got->auth_user, "demo@example.test");
	assert_int_equal(got->body_type, QUEUE_BODY_8BITMIME);
	assert_true(got->smtputf8);
	assert_int_equal(got->state, QUEUE_STATE_ACTIVE);
	assert_int_equal(got->rcpt_count, 3);
	assert_string_equal(got->rcpts[0].address, "u1@example.test");
	assert_string_equal(got->rcpts[0].orcpt, "rfc822;u1@example.test");
	assert_int_equal(got->rcpts[0].notify, QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE);
	assert_int_equal(got->rcpts[0].kind, QUEUE_RCPT_LOCAL);
	assert_string_equal(got->rcpts[0].target, "/var/mail/example.test/u1");
	assert_string_equal(got->rcpts[0].folder, "Junk");
	assert_int_equal(got->rcpts[0].status, QUEUE_RCPT_PENDING);
	assert_int_equal(got->rcpts[1].kind, QUEUE_RCPT_REMOTE);
	assert_string_equal(got->rcpts[1].target, "");
	assert_null(got->rcpts[1].orcpt);
	assert_null(got->rcpts[1].folder);
	assert_int_equal(got->rcpts[2].kind, QUEUE_RCPT_OTHER);
	assert_string_equal(got->rcpts[2].target, "webhook:crm");
	assert_null(got->rcpts[2].folder);
	assert_int_equal(got->rcpts[2].idx, 2);
	queue_envelope_free(&got);

	/* the body through a read-only fd */
	int rfd = queue_store_open_spool(q, id);
	assert_true(rfd >= 0);
	char buf[256];
	ssize_t n = read(rfd, buf, sizeof(buf));
	assert_int_equal(n, (ssize_t)strlen(body));
	assert_memory_equal(buf, body, (size_t)n);
	assert_int_equal(write(rfd, "x", 1), -1);
	close(rfd);
	assert_int_equal(queue_store_open_spool(q, "../queue.db"), -1);

	/* a store opened again sees the same (persistence, schema reuse) */
	queue_store_close(&q);
	assert_null(q);
	q = open_store();
	assert_int_equal(queue_store_get(q, id, &got, &error), 1);
	queue_envelope_free(&got);
	assert_int_equal(queue_store_get(q, "0000000000000000", &got, &error), 0);
	assert_null(got);
	assert_int_equal(queue_store_delete(q, id, &error), 1);
	assert_false(spool_exists(id));
	assert_int_equal(queue_store_delete(q, id, &error), 0);
	queue_store_close(&q);
}

static void test_commit_failures(void **state)
{
	struct queue_store *q = open_store();
	struct queue_commit_item items[4];
	int fds[4];
	struct queue_envelope *envs[4];
	for (int i = 0; i < 4; i++)
		envs[i] = make_msg(q, "Subject: x\r\n\r\nx\r\n", 1, &fds[i]);
	envs[1]->size = 9999;   /* smtp claims another size than the file has */
	envs[2]->rcpt_count = 0; /* no recipients (rcpt memory still owned, freed below) */
	char id0[QUEUE_ID_SIZE];
	memcpy(id0, envs[0]->id, sizeof(id0));
	for (int i = 0; i < 4; i++)
		items[i] = (struct queue_commit_item){ .env = envs[i], .fd = fds[i] };
	assert_int_equal(queue_store_commit_batch(q, items, 4), 2);
	assert_int_equal(items[0].result, 1);
	assert_int_equal(items[1].result, -1);
	assert_non_null(strstr(items[1].error, "9999"));
	assert_int_equal(items[2].result, -1);
	assert_int_equal(items[3].result, 1);
	assert_true(spool_exists(envs[0]->id));
	assert_false(spool_exists(envs[1]->id)); /* never acknowledged: removed */
	assert_false(spool_exists(envs[2]->id));
	assert_true(spool_exists(envs[3]->id));
	envs[2]->rcpt_count = 1;
	for (int i = 0; i < 4; i++) {
		free(items[i].error);
		queue_envelope_free(&envs[i]);
	}

	/* a duplicate ID fails alone and must not remove the committed message's body */
	int fd;
	struct queue_envelope *dup = make_msg(q, "y", 1, &fd);
	struct queue_envelope *other = make_msg(q, "z", 1, &fds[0]);
	char dup_spool[QUEUE_ID_SIZE];
	memcpy(dup_spool, dup->id, sizeof(dup_spool));
	memcpy(dup->id, id0, sizeof(dup->id));
	struct queue_commit_item two[2] = { { .env = dup, .fd = fd }, { .env = other, .fd = fds[0] } };
	assert_int_equal(queue_store_commit_batch(q, two, 2), 1);
	assert_int_equal(two[0].result, -1);
	assert_int_equal(two[1].result, 1);
	assert_true(spool_exists(id0));
	struct queue_envelope *got = NULL;
	assert_int_equal(queue_store_get(q, other->id, &got, NULL), 1);
	queue_envelope_free(&got);
	free(two[0].error);
	queue_spool_remove(q, dup_spool, NULL);
	queue_envelope_free(&dup);
	queue_envelope_free(&other);
	queue_store_close(&q);
}

/* ---- group commit ---- */

struct gc_ctx {
	struct queue_store *q;
	struct queue_committer *c;
	struct event_base *base;
	int submitted, done, failed, remaining_per_session[20];
	int max_outstanding, outstanding;
};

struct gc_session {
	struct gc_ctx *g;
	int n;
	bool pool; /* take spool files from the committer's pool */
};

static void gc_submit(struct gc_session *s);

static void gc_done(void *arg, int result, const char *error)
{
	struct gc_session *s = arg;
	s->g->done++;
	s->g->outstanding--;
	if (result < 0) {
		s->g->failed++;
		print_error("commit failed: %s\n", error);
	}
	if (s->n > 0)
		gc_submit(s);
	else if (queue_committer_pending(s->g->c) == 0)
		event_base_loopbreak(s->g->base);
}

static void gc_submit(struct gc_session *s)
{
	int fd;
	/* half of the sessions take pre-created files from the committer's pool */
	struct queue_envelope *env = !s->pool
		? make_msg(s->g->q, "Subject: gc\r\n\r\nhello\r\n", 2, &fd)
		: make_msg_pool(s->g->c, "Subject: gc\r\n\r\nhello\r\n", 2, &fd);
	s->n--;
	s->g->submitted++;
	if (++s->g->outstanding > s->g->max_outstanding)
		s->g->max_outstanding = s->g->outstanding;
	queue_committer_submit(s->g->c, env, fd, gc_done, s);
}

static void test_group_commit(void **state)
{
	enum { SESSIONS = 20, PER_SESSION = 10 };
	struct gc_ctx g = { 0 };
	g.q = open_store();
	g.base = event_base_new();
	char *error = NULL;
	g.c = queue_committer_new(g.q, g.base, 1000, &error);
	assert_non_null(g.c);
	struct gc_session sessions[SESSIONS];
	for (int i = 0; i < SESSIONS; i++) {
		sessions[i] = (struct gc_session){ .g = &g, .n = PER_SESSION, .pool = i % 2 == 1 };
		gc_submit(&sessions[i]);
	}
	assert_int_equal(event_base_dispatch(g.base), 0);
	assert_int_equal(g.done, SESSIONS * PER_SESSION);
	assert_int_equal(g.failed, 0);
	struct queue_committer_stats st;
	queue_committer_get_stats(g.c, &st);
	assert_int_equal(st.messages, SESSIONS * PER_SESSION);
	assert_true(st.batches < st.messages / 4);
	assert_true(st.max_batch > 1);
	/* fsyncs: one per file, plus two per batch (spool dir, WAL) */
	assert_int_equal(st.fsyncs, st.messages + 2 * st.batches);
	print_message("group commit: %llu messages in %llu batches (max %llu)\n",
		      (unsigned long long)st.messages, (unsigned long long)st.batches,
		      (unsigned long long)st.max_batch);
	struct queue_store_stats ss;
	assert_int_equal(queue_store_stats(g.q, &ss, NULL), 1);
	assert_int_equal(ss.messages, SESSIONS * PER_SESSION);
	assert_int_equal(ss.rcpts_pending, 2 * SESSIONS * PER_SESSION);

	/* free() commits what is still pending and runs its callbacks */
	sessions[0].n = 0;
	g.done = 0;
	gc_submit(&sessions[0]);
	gc_submit(&sessions[1]);
	queue_committer_free(&g.c);
	assert_null(g.c);
	assert_int_equal(g.done, 2);
	assert_int_equal(g.failed, 0);
	/* the unused pre-created pool files are gone: one spool file per message */
	assert_int_equal(count_spool_files(), SESSIONS * PER_SESSION + 2);
	event_base_free(g.base);
	/* clean the queue for the next tests */
	assert_int_equal(queue_store_flush(g.q, NULL, 0, NULL), SESSIONS * PER_SESSION + 2);
	queue_store_close(&g.q);
	nftw(qdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void gc_fail_cb(void *arg, int result, const char *error)
{
	int *r = arg;
	*r = result;
	assert_non_null(error);
}

static void test_group_commit_syncfs(void **state)
{
	enum { SESSIONS = 10, PER_SESSION = 5 };
	struct gc_ctx g = { 0 };
	g.q = open_store();
	g.base = event_base_new();
	g.c = queue_committer_new(g.q, g.base, 0, NULL);
	assert_non_null(g.c);
	if (queue_committer_set_sync_method(g.c, QUEUE_SYNC_FS) < 0) {
		queue_committer_free(&g.c);
		event_base_free(g.base);
		queue_store_close(&g.q);
		skip(); /* kernel before 5.8 */
	}
	struct gc_session sessions[SESSIONS];
	for (int i = 0; i < SESSIONS; i++) {
		sessions[i] = (struct gc_session){ .g = &g, .n = PER_SESSION, .pool = i % 2 == 1 };
		gc_submit(&sessions[i]);
	}
	assert_int_equal(event_base_dispatch(g.base), 0);
	assert_int_equal(g.done, SESSIONS * PER_SESSION);
	assert_int_equal(g.failed, 0);
	struct queue_committer_stats st;
	queue_committer_get_stats(g.c, &st);
	assert_int_equal(st.messages, SESSIONS * PER_SESSION);
	assert_int_equal(st.fsyncs, 2 * st.batches); /* one syncfs + one WAL commit per batch */
	queue_committer_free(&g.c);
	event_base_free(g.base);
	struct queue_recover_stats rs;
	assert_int_equal(queue_store_recover(g.q, &rs, NULL), 0);
	assert_int_equal(rs.messages, SESSIONS * PER_SESSION);
	assert_int_equal(rs.missing_spool + rs.bad_size + rs.orphans_removed, 0);
	queue_store_close(&g.q);
}

static void gc_fail_cb_any(void *arg, int result, const char *error)
{
	int *r = arg;
	*r = result;
	if (result < 0)
		assert_non_null(error);
}

static void test_group_commit_failure(void **state)
{
	struct queue_store *q = open_store();
	struct event_base *evb = event_base_new();
	struct queue_committer *c = queue_committer_new(q, evb, 0, NULL);
	assert_non_null(c);
	int fd;
	struct queue_envelope *env = make_msg(q, "x", 1, &fd);
	char id[QUEUE_ID_SIZE];
	memcpy(id, env->id, sizeof(id));
	/* not a spool file but a pipe: the commit fails with an error */
	int p[2];
	assert_int_equal(pipe(p), 0);
	close(fd);
	close(p[1]);
	int result = 0;
	queue_committer_submit(c, env, p[0], gc_fail_cb, &result);
	while (result == 0)
		event_base_loop(evb, EVLOOP_ONCE);
	assert_int_equal(result, -1);
	assert_false(spool_exists(id)); /* not acknowledged: body removed */
	struct queue_committer_stats st;
	queue_committer_get_stats(c, &st);
	assert_int_equal(st.failures, 1);
	assert_int_equal(st.messages, 0);
	queue_committer_free(&c);
	event_base_free(evb);
	queue_store_close(&q);
}

/* ---- kill -9 while committing: every acknowledged message survives ---- */

struct crash_session {
	struct queue_store *q;
	struct queue_committer *c;
	int ack_fd;
	char id[QUEUE_ID_SIZE];
};

static void crash_submit(struct crash_session *s);

static void crash_done(void *arg, int result, const char *error)
{
	struct crash_session *s = arg;
	if (result != 1)
		_exit(3);
	/* acknowledged: tell the parent (the "250") */
	if (write(s->ack_fd, s->id, QUEUE_ID_LEN) != QUEUE_ID_LEN)
		_exit(4);
	crash_submit(s);
}

static void crash_submit(struct crash_session *s)
{
	int fd;
	struct queue_envelope *env = queue_envelope_new("crash@example.org");
	/* pre-created pool files are left behind by the crash too: recovery removes them */
	if (queue_committer_spool_create(s->c, env->id, &fd, NULL) != 1)
		_exit(5);
	memcpy(s->id, env->id, QUEUE_ID_SIZE);
	char body[128];
	int n = snprintf(body, sizeof(body), "Subject: %s\r\n\r\nbody of %s\r\n", env->id, env->id);
	if (write(fd, body, (size_t)n) != n)
		_exit(6);
	queue_envelope_add_rcpt(env, "r@example.test", NULL, 0, QUEUE_RCPT_LOCAL, "/m/r", NULL);
	queue_committer_submit(s->c, env, fd, crash_done, s);
}

static void test_kill9(void **state)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		struct queue_store *q = queue_store_open(qdir, NULL);
		struct event_base *evb = event_base_new();
		struct queue_committer *c = q == NULL ? NULL : queue_committer_new(q, evb, 0, NULL);
		if (c == NULL)
			_exit(2);
		struct crash_session sessions[8];
		for (int i = 0; i < 8; i++) {
			sessions[i] = (struct crash_session){ .q = q, .c = c, .ack_fd = p[1] };
			crash_submit(&sessions[i]);
		}
		event_base_dispatch(evb);
		_exit(7);
	}
	close(p[1]);
	/* let it acknowledge a good number of messages, then kill it mid-flight */
	size_t cap = 4096, n = 0;
	char (*acked)[QUEUE_ID_SIZE] = xcalloc(cap, QUEUE_ID_SIZE);
	char id[QUEUE_ID_LEN];
	while (n < 150 && read(p[0], id, QUEUE_ID_LEN) == QUEUE_ID_LEN) {
		memcpy(acked[n], id, QUEUE_ID_LEN);
		acked[n++][QUEUE_ID_LEN] = '\0';
	}
	assert_int_equal(kill(pid, SIGKILL), 0);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	while (n < cap && read(p[0], id, QUEUE_ID_LEN) == QUEUE_ID_LEN) {
		memcpy(acked[n], id, QUEUE_ID_LEN);
		acked[n++][QUEUE_ID_LEN] = '\0';
	}
	close(p[0]);
	assert_true(n >= 150);

	struct queue_store *q = open_store();
	struct queue_recover_stats rs;
	assert_int_equal(queue_store_recover(q, &rs, NULL), 0);
	assert_int_equal(rs.missing_spool, 0);
	assert_true(rs.messages >= n);
	for (size_t i = 0; i < n; i++) {
		struct queue_envelope *env = NULL;
		assert_int_equal(queue_store_get(q, acked[i], &env, NULL), 1);
		assert_int_equal(env->rcpt_count, 1);
		int fd = queue_store_open_spool(q, acked[i]);
		assert_true(fd >= 0);
		char want[128], got[128];
		int wn = snprintf(want, sizeof(want), "Subject: %s\r\n\r\nbody of %s\r\n", acked[i], acked[i]);
		assert_int_equal(read(fd, got, sizeof(got)), wn);
		assert_memory_equal(got, want, (size_t)wn);
		assert_int_equal(env->size, (uint64_t)wn);
		close(fd);
		queue_envelope_free(&env);
	}
	/* after recovery every spool file belongs to a row */
	char *spool = xasprintf("%s/spool", qdir);
	DIR *d = opendir(spool);
	assert_non_null(d);
	unsigned files = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			files++;
	closedir(d);
	assert_int_equal(files, rs.messages);
	print_message("kill -9: %zu acknowledged, %u rows, %u orphans removed\n", n, rs.messages,
		      rs.orphans_removed);
	free(spool);
	free(acked);
	queue_store_close(&q);
}

/* ---- full disk: the batch fails with an error, bodies removed, acknowledged mail intact ---- */

static void test_full_disk(void **state)
{
	char *mnt = xasprintf("%s/small", base);
	assert_int_equal(mkdir(mnt, 0700), 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=384k") < 0) {
		free(mnt);
		skip(); /* not allowed to mount here */
	}
	free(qdir);
	qdir = xasprintf("%s/queue", mnt);
	struct queue_store *q = open_store();
	struct event_base *evb = event_base_new();
	struct queue_committer *c = queue_committer_new(q, evb, 0, NULL);
	assert_non_null(c);
	int fd, result = 0;
	struct queue_envelope *env = make_msg(q, "Subject: kept\r\n\r\nkept\r\n", 1, &fd);
	char kept[QUEUE_ID_SIZE];
	memcpy(kept, env->id, sizeof(kept));
	queue_committer_submit(c, env, fd, gc_fail_cb_any, &result);
	while (result == 0)
		event_base_loop(evb, EVLOOP_ONCE);
	assert_int_equal(result, 1);

	/* bodies written, then the disk fills up before the commit */
	enum { N = 5 };
	int fds[N], results[N] = { 0 };
	struct queue_envelope *envs[N];
	char ids[N][QUEUE_ID_SIZE];
	char big[16384];
	memset(big, 'x', sizeof(big));
	for (int i = 0; i < N; i++) {
		envs[i] = make_msg(q, "Subject: doomed\r\n\r\n", 40, &fds[i]);
		memcpy(ids[i], envs[i]->id, QUEUE_ID_SIZE);
	}
	char *filler = xasprintf("%s/filler", mnt);
	int ffd = open(filler, O_WRONLY | O_CREAT, 0600);
	assert_true(ffd >= 0);
	while (write(ffd, big, sizeof(big)) > 0)
		;
	assert_int_equal(errno, ENOSPC);
	for (int i = 0; i < N; i++)
		queue_committer_submit(c, envs[i], fds[i], gc_fail_cb_any, &results[i]);
	for (int i = 0; i < N; i++)
		while (results[i] == 0)
			event_base_loop(evb, EVLOOP_ONCE);
	for (int i = 0; i < N; i++) {
		assert_int_equal(results[i], -1);
		assert_false(spool_exists(ids[i]));
	}
	/* space again: the earlier message is intact and new ones commit */
	close(ffd);
	unlink(filler);
	free(filler);
	struct queue_envelope *got = NULL;
	assert_int_equal(queue_store_get(q, kept, &got, NULL), 1);
	queue_envelope_free(&got);
	assert_true(spool_exists(kept));
	for (int i = 0; i < N; i++)
		assert_int_equal(queue_store_get(q, ids[i], &got, NULL), 0);
	result = 0;
	env = make_msg(q, "Subject: after\r\n\r\n", 1, &fd);
	queue_committer_submit(c, env, fd, gc_fail_cb_any, &result);
	while (result == 0)
		event_base_loop(evb, EVLOOP_ONCE);
	assert_int_equal(result, 1);
	queue_committer_free(&c);
	event_base_free(evb);
	queue_store_close(&q);
	assert_int_equal(umount2(mnt, MNT_DETACH), 0);
	free(mnt);
}

/* ---- recovery ---- */

static void test_recover(void **state)
{
	struct queue_store *q = open_store();
	int fd;
	struct queue_envelope *kept = make_msg(q, "kept", 1, &fd);
	commit_one(q, kept, fd);
	struct queue_envelope *lost = make_msg(q, "lost", 1, &fd);
	commit_one(q, lost, fd);
	/* never committed (crash between DATA and commit) */
	char orphan[QUEUE_ID_SIZE];
	assert_int_equal(queue_spool_create(q, orphan, &fd, NULL), 1);
	close(fd);
	char orphan2[QUEUE_ID_SIZE];
	assert_int_equal(queue_spool_create(q, orphan2, &fd, NULL), 1);
	close(fd);
	char *junk = xasprintf("%s/spool/not-an-id", qdir);
	fd = open(junk, O_CREAT | O_WRONLY, 0600);
	close(fd);
	/* must not happen: a row whose body vanished, one whose body was truncated */
	char *lost_path = xasprintf("%s/spool/%s", qdir, lost->id);
	assert_int_equal(unlink(lost_path), 0);
	struct queue_envelope *cut = make_msg(q, "truncated later", 1, &fd);
	commit_one(q, cut, fd);
	char *cut_path = xasprintf("%s/spool/%s", qdir, cut->id);
	assert_int_equal(truncate(cut_path, 3), 0);

	struct queue_recover_stats rs;
	char *error = NULL;
	assert_int_equal(queue_store_recover(q, &rs, &error), 0);
	assert_int_equal(rs.messages, 3);
	assert_int_equal(rs.orphans_removed, 2);
	assert_int_equal(rs.missing_spool, 1);
	assert_int_equal(rs.bad_size, 1);
	assert_int_equal(rs.ignored, 1);
	assert_false(spool_exists(orphan));
	assert_false(spool_exists(orphan2));
	assert_true(spool_exists(kept->id));
	assert_int_equal(access(junk, F_OK), 0);
	struct queue_envelope *got;
	assert_int_equal(queue_store_get(q, lost->id, &got, NULL), 1);
	assert_int_equal(got->state, QUEUE_STATE_HOLD);
	assert_string_equal(got->rcpts[0].last_error, "spool file missing");
	queue_envelope_free(&got);
	assert_int_equal(queue_store_get(q, cut->id, &got, NULL), 1);
	assert_int_equal(got->state, QUEUE_STATE_HOLD);
	assert_string_equal(got->rcpts[0].last_error, "spool file size mismatch");
	queue_envelope_free(&got);
	assert_true(spool_exists(cut->id)); /* kept for the administrator */
	queue_store_delete(q, cut->id, NULL);
	free(cut_path);
	queue_envelope_free(&cut);
	/* idempotent */
	assert_int_equal(queue_store_recover(q, &rs, &error), 0);
	assert_int_equal(rs.orphans_removed, 0);
	queue_store_delete(q, kept->id, NULL);
	queue_store_delete(q, lost->id, NULL);
	unlink(junk);
	free(junk);
	free(lost_path);
	queue_envelope_free(&kept);
	queue_envelope_free(&lost);
	queue_store_close(&q);
}

/* ---- scheduler ---- */

struct due_list {
	char ids[16][QUEUE_ID_SIZE];
	unsigned idx[16];
	time_t next[16];
	int n;
};

static void due_cb(void *ctx, const struct queue_due *d)
{
	struct due_list *l = ctx;
	assert_true(l->n < 16);
	memcpy(l->ids[l->n], d->id, QUEUE_ID_SIZE);
	l->idx[l->n] = d->idx;
	l->next[l->n] = d->next_attempt;
	assert_false(d->bounce_requested);
	l->n++;
}

static void due_cb_bounce(void *ctx, const struct queue_due *d)
{
	struct due_list *l = ctx;
	assert_true(d->bounce_requested);
	l->n++;
}

static void test_due_and_results(void **state)
{
	struct queue_store *q = open_store();
	char ids[3][QUEUE_ID_SIZE];
	for (int i = 0; i < 3; i++) {
		int fd;
		struct queue_envelope *env = make_msg(q, "m", 2, &fd);
		memcpy(ids[i], env->id, QUEUE_ID_SIZE);
		commit_one(q, env, fd);
		queue_envelope_free(&env);
	}
	char *error = NULL;
	time_t now = 1000000;
	/* all 6 due at 0, in id/idx order */
	struct due_list l = { 0 };
	assert_int_equal(queue_store_due(q, now, 100, due_cb, &l, &error), 6);
	for (int i = 0; i < 6; i++) {
		assert_string_equal(l.ids[i], ids[i / 2]);
		assert_int_equal(l.idx[i], (unsigned)(i % 2));
	}
	/* defer: m0r0 to now+50, m0r1 to now+10, m1r0 to now-5 */
	assert_int_equal(queue_store_rcpt_result(q, ids[0], 0, QUEUE_RESULT_DEFERRED, "451 later", now + 50, NULL, &error), 1);
	assert_int_equal(queue_store_rcpt_result(q, ids[0], 1, QUEUE_RESULT_DEFERRED, "451 later", now + 10, NULL, &error), 1);
	assert_int_equal(queue_store_rcpt_result(q, ids[1], 0, QUEUE_RESULT_DEFERRED, NULL, now - 5, NULL, &error), 1);
	memset(&l, 0, sizeof(l));
	assert_int_equal(queue_store_due(q, now, 100, due_cb, &l, &error), 4);
	/* next_attempt order: m1r1(0), m2r0(0), m2r1(0), m1r0(now-5) */
	assert_string_equal(l.ids[0], ids[1]); assert_int_equal(l.idx[0], 1);
	assert_string_equal(l.ids[1], ids[2]); assert_int_equal(l.idx[1], 0);
	assert_string_equal(l.ids[2], ids[2]); assert_int_equal(l.idx[2], 1);
	assert_string_equal(l.ids[3], ids[1]); assert_int_equal(l.idx[3], 0);
	assert_int_equal(l.next[3], now - 5);
	/* limit */
	memset(&l, 0, sizeof(l));
	assert_int_equal(queue_store_due(q, now, 2, due_cb, &l, &error), 2);
	/* held messages are not due */
	assert_int_equal(queue_store_set_state(q, ids[2], QUEUE_STATE_HOLD, &error), 1);
	memset(&l, 0, sizeof(l));
	assert_int_equal(queue_store_due(q, now, 100, due_cb, &l, &error), 2);
	time_t next;
	assert_int_equal(queue_store_next_due_time(q, &next, &error), 1);
	assert_int_equal(next, 0);
	assert_int_equal(queue_store_set_state(q, ids[2], QUEUE_STATE_ACTIVE, &error), 1);
	assert_int_equal(queue_store_set_state(q, "0000000000000000", QUEUE_STATE_HOLD, &error), 0);

	/* finishing: m1 r1 done, r0 bounced -> message gone with its spool file */
	bool finished = true;
	assert_int_equal(queue_store_rcpt_result(q, ids[1], 1, QUEUE_RESULT_DONE, NULL, 0, &finished, &error), 1);
	assert_false(finished);
	assert_int_equal(queue_store_rcpt_result(q, ids[1], 1, QUEUE_RESULT_DONE, NULL, 0, &finished, &error), 0);
	assert_true(spool_exists(ids[1]));
	assert_int_equal(queue_store_rcpt_result(q, ids[1], 0, QUEUE_RESULT_BOUNCED, "550 no", 0, &finished, &error), 1);
	assert_true(finished);
	assert_false(spool_exists(ids[1]));
	struct queue_envelope *got;
	assert_int_equal(queue_store_get(q, ids[1], &got, &error), 0);
	assert_int_equal(queue_store_rcpt_result(q, ids[1], 0, QUEUE_RESULT_DONE, NULL, 0, &finished, &error), 0);
	/* attempts and errors recorded */
	assert_int_equal(queue_store_get(q, ids[0], &got, &error), 1);
	assert_int_equal(got->rcpts[0].attempts, 1);
	assert_string_equal(got->rcpts[0].last_error, "451 later");
	assert_int_equal(got->rcpts[0].next_attempt, now + 50);
	assert_true(got->rcpts[0].last_attempt > 0);
	queue_envelope_free(&got);
	/* next due among the rest: m2 at 0 */
	assert_int_equal(queue_store_next_due_time(q, &next, &error), 1);
	assert_int_equal(next, 0);
	assert_int_equal(queue_store_rcpt_result(q, ids[2], 0, QUEUE_RESULT_DONE, NULL, 0, NULL, &error), 1);
	assert_int_equal(queue_store_rcpt_result(q, ids[2], 1, QUEUE_RESULT_FAILED, "550", 0, NULL, &error), 1);
	assert_int_equal(queue_store_next_due_time(q, &next, &error), 1);
	assert_int_equal(next, now + 10);
	/* several results in one transaction */
	{
		int fd;
		struct queue_envelope *e2 = make_msg(q, "m", 3, &fd);
		char id2[QUEUE_ID_SIZE];
		memcpy(id2, e2->id, sizeof(id2));
		commit_one(q, e2, fd);
		queue_envelope_free(&e2);
		struct queue_rcpt_update u[] = {
			{ .id = id2, .idx = 0, .result = QUEUE_RESULT_DONE },
			{ .id = id2, .idx = 1, .result = QUEUE_RESULT_DEFERRED, .error_text = "421", .next_attempt = now + 99 },
			{ .id = id2, .idx = 7, .result = QUEUE_RESULT_DONE },          /* no such recipient */
			{ .id = "bad", .idx = 0, .result = QUEUE_RESULT_DONE },        /* invalid id */
			{ .id = id2, .idx = 1, .result = QUEUE_RESULT_DONE },          /* same rcpt again, in order */
			{ .id = id2, .idx = 2, .result = QUEUE_RESULT_FAILED, .error_text = "550" },
		};
		assert_int_equal(queue_store_rcpt_results(q, u, 6, &error), 1);
		static const int want_ret[] = { 1, 1, 0, 0, 1, 1 };
		static const bool want_fin[] = { false, false, false, false, false, true };
		for (int i = 0; i < 6; i++) {
			assert_int_equal(u[i].ret, want_ret[i]);
			assert_int_equal(u[i].finished, want_fin[i]);
		}
		assert_false(spool_exists(id2));
		assert_int_equal(queue_store_rcpt_results(q, u, 0, &error), 1);
	}
	/* another connection (the CLI) changes something: visible through queue_store_changed */
	assert_int_equal(queue_store_changed(q, &error), 1);
	assert_int_equal(queue_store_changed(q, &error), 0);
	assert_int_equal(queue_store_flush(q, NULL, now, &error), 1); /* own change: not reported */
	assert_int_equal(queue_store_changed(q, &error), 0);
	struct queue_store *other = open_store();
	assert_int_equal(queue_store_set_state(other, ids[0], QUEUE_STATE_HOLD, &error), 1);
	assert_int_equal(queue_store_set_state(other, ids[0], QUEUE_STATE_ACTIVE, &error), 1);
	queue_store_close(&other);
	assert_int_equal(queue_store_changed(q, &error), 1);
	assert_int_equal(queue_store_changed(q, &error), 0);
	/* flush one message: due now */
	assert_int_equal(queue_store_flush(q, ids[0], now, &error), 1);
	assert_int_equal(queue_store_next_due_time(q, &next, &error), 1);
	assert_int_equal(next, now);
	assert_int_equal(queue_store_flush(q, ids[2], now, &error), 0); /* gone */
	assert_int_equal(queue_store_delete(q, ids[0], &error), 1);
	assert_int_equal(queue_store_next_due_time(q, &next, &error), 0);
	queue_store_close(&q);
}

static void test_bounce_request(void **state)
{
	struct queue_store *q = open_store();
	int fd;
	struct queue_envelope *env = make_msg(q, "m", 2, &fd);
	char id[QUEUE_ID_SIZE];
	memcpy(id, env->id, sizeof(id));
	env->state = QUEUE_STATE_HOLD;
	commit_one(q, env, fd);
	queue_envelope_free(&env);
	time_t now = 5000;
	assert_int_equal(queue_store_rcpt_result(q, id, 0, QUEUE_RESULT_DEFERRED, "451", now + 900, NULL, NULL), 1);
	struct due_list l = { 0 };
	assert_int_equal(queue_store_due(q, now, 10, due_cb_bounce, &l, NULL), 0);
	assert_int_equal(queue_store_bounce(q, id, now, NULL), 1);
	assert_int_equal(queue_store_bounce(q, "0000000000000000", now, NULL), 0);
	/* released, due now, flagged */
	assert_int_equal(queue_store_due(q, now, 10, due_cb_bounce, &l, NULL), 2);
	assert_int_equal(l.n, 2);
	struct queue_envelope *got;
	assert_int_equal(queue_store_get(q, id, &got, NULL), 1);
	assert_true(got->bounce_requested);
	assert_int_equal(got->state, QUEUE_STATE_ACTIVE);
	queue_envelope_free(&got);
	queue_store_close(&q);
	char *out, *err;
	assert_int_equal(run_cli(&out, &err, 3, "queue", "show", id), 0);
	assert_non_null(strstr(out, "state: active (bounce requested)"));
	free(out); free(err);
	assert_int_equal(run_cli(&out, &err, 3, "queue", "bounce", "0000000000000000"), 1);
	free(out); free(err);
}

static void test_schema_upgrade(void **state)
{
	/* a version 1 database (before the bounce column) is upgraded in place */
	assert_int_equal(mkdir(qdir, 0700), 0);
	char *dbp = xasprintf("%s/queue.db", qdir);
	static const char v1[] =
		"CREATE TABLE messages (id TEXT PRIMARY KEY NOT NULL, arrival INTEGER NOT NULL,"
		" sender TEXT NOT NULL, size INTEGER NOT NULL, envid TEXT, ret INTEGER NOT NULL DEFAULT 0,"
		" helo TEXT, client_ip TEXT, auth_user TEXT, body_type INTEGER NOT NULL DEFAULT 0,"
		" smtputf8 INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'active');"
		"CREATE TABLE recipients (msg_id TEXT NOT NULL, idx INTEGER NOT NULL, address TEXT NOT NULL,"
		" orcpt TEXT, notify INTEGER NOT NULL DEFAULT 0, kind TEXT NOT NULL, target TEXT NOT NULL DEFAULT '',"
		" folder TEXT, status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,"
		" next_attempt INTEGER NOT NULL DEFAULT 0, last_error TEXT, last_attempt INTEGER NOT NULL DEFAULT 0,"
		" PRIMARY KEY (msg_id, idx));"
		"INSERT INTO messages (id, arrival, sender, size) VALUES ('0123456789ABCDEF', 1, 'a@b', 0);"
		"PRAGMA user_version=1;";
	sqlite3 *db;
	assert_int_equal(sqlite3_open(dbp, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	struct queue_store *q = open_store();
	struct queue_envelope *got;
	assert_int_equal(queue_store_get(q, "0123456789ABCDEF", &got, NULL), 1);
	assert_false(got->bounce_requested);
	queue_envelope_free(&got);
	assert_int_equal(queue_store_bounce(q, "0123456789ABCDEF", 1, NULL), 1);
	queue_store_close(&q);
	/* and a newer one is refused */
	assert_int_equal(sqlite3_open(dbp, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	char *error = NULL;
	assert_null(queue_store_open(qdir, &error));
	assert_non_null(strstr(error, "newer than this build"));
	free(error);
	free(dbp);
}

static void test_retry_delay(void **state)
{
	static const struct { unsigned attempts, min, max, want; } cases[] = {
		{ 0, 300, 14400, 300 }, { 1, 300, 14400, 300 }, { 2, 300, 14400, 600 },
		{ 3, 300, 14400, 1200 }, { 6, 300, 14400, 9600 }, { 7, 300, 14400, 14400 },
		{ 1000000, 300, 14400, 14400 }, { 4000000000u, 300, 14400, 14400 },
		{ 5, 0, 100, 0 }, { 3, 500, 100, 500 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(queue_retry_delay(cases[i].attempts, cases[i].min, cases[i].max), cases[i].want);
}

/* ---- CLI ---- */

static int run_cli(char **out_r, char **err_r, int argc, ...)
{
	char *argv[8];
	va_list ap;
	va_start(ap, argc);
	for (int i = 0; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	argv[argc] = NULL;
	size_t olen, elen;
	FILE *out = open_memstream(out_r, &olen);
	FILE *err = open_memstream(err_r, &elen);
	int r = queue_cli_run(qdir, argc, argv, out, err);
	fclose(out);
	fclose(err);
	return r;
}

static void test_cli_quarantine(void **state)
{
	struct queue_store *q = open_store();
	char ids[2][QUEUE_ID_SIZE];
	for (int i = 0; i < 2; i++) {
		int fd;
		struct queue_envelope *env = make_msg(q, "Subject: q\r\n\r\n", 1, &fd);
		memcpy(ids[i], env->id, QUEUE_ID_SIZE);
		if (i == 1)
			env->state = QUEUE_STATE_QUARANTINE; /* decided by the rules before commit */
		commit_one(q, env, fd);
		queue_envelope_free(&env);
	}
	queue_store_close(&q);
	char *out, *err;
	assert_int_equal(run_cli(&out, &err, 2, "quarantine", "list"), 0);
	assert_null(strstr(out, ids[0]));
	assert_non_null(strstr(out, ids[1]));
	assert_non_null(strstr(out, "\tquarantine\t-\t"));
	free(out); free(err);
	/* an active message is not in quarantine */
	static const char *const cmds[] = { "show", "release", "delete" };
	for (int i = 0; i < 3; i++) {
		assert_int_equal(run_cli(&out, &err, 3, "quarantine", cmds[i], ids[0]), 1);
		char *want = xasprintf("mailroute: no message %s in quarantine\n", ids[0]);
		assert_string_equal(err, want);
		free(want); free(out); free(err);
	}
	assert_int_equal(run_cli(&out, &err, 3, "quarantine", "show", ids[1]), 0);
	assert_non_null(strstr(out, "state: quarantine"));
	free(out); free(err);
	assert_int_equal(run_cli(&out, &err, 3, "quarantine", "release", ids[1]), 0);
	free(out); free(err);
	assert_int_equal(run_cli(&out, &err, 3, "quarantine", "release", ids[1]), 1);
	free(out); free(err);
	assert_int_equal(run_cli(&out, &err, 2, "queue", "list"), 0);
	assert_non_null(strstr(out, ids[1]));
	assert_null(strstr(out, "quarantine"));
	free(out); free(err);
	assert_int_equal(run_cli(&out, &err, 2, "quarantine", "stats"), 2);
	assert_non_null(strstr(err, "mailroute: quarantine: unknown command 'stats'"));
	free(out); free(err);
	assert_int_equal(run_cli(&out, &err, 3, "queue", "hold", ids[0]), 0);
	free(out); free(err);
	assert_int_equal(run_cli(&out, &err, 3, "quarantine", "delete", ids[0]), 1);
	free(out); free(err);
	assert_true(spool_exists(ids[0]));
}

static void test_mailq(void **state)
{
	size_t len;
	char *out, *err;
	FILE *o = open_memstream(&out, &len), *e = open_memstream(&err, &len);
	assert_int_equal(queue_cli_mailq(qdir, o, e), 0);
	fclose(o);
	fclose(e);
	assert_string_equal(out, "Mail queue is empty\n");
	free(out); free(err);

	struct queue_store *q = open_store();
	int fd;
	struct queue_envelope *env = make_msg(q, "Subject: mailq\r\n\r\n", 2, &fd);
	char id[QUEUE_ID_SIZE];
	memcpy(id, env->id, sizeof(id));
	commit_one(q, env, fd);
	queue_envelope_free(&env);
	assert_int_equal(queue_store_rcpt_result(q, id, 1, QUEUE_RESULT_DEFERRED, "connect to x: refused", 0, NULL, NULL), 1);
	env = make_msg(q, "x", 1, &fd);
	env->state = QUEUE_STATE_HOLD;
	queue_envelope_set_str(&env->sender, "");
	char id2[QUEUE_ID_SIZE];
	memcpy(id2, env->id, sizeof(id2));
	commit_one(q, env, fd);
	queue_envelope_free(&env);
	queue_store_close(&q);

	o = open_memstream(&out, &len);
	e = open_memstream(&err, &len);
	assert_int_equal(queue_cli_mailq(qdir, o, e), 0);
	fclose(o);
	fclose(e);
	assert_true(strncmp(out, "-Queue ID-", 10) == 0);
	char *line = xasprintf("%s        18 ", id);
	assert_non_null(strstr(out, line));
	free(line);
	line = xasprintf("%s!        1 ", id2);
	assert_non_null(strstr(out, line));
	free(line);
	assert_non_null(strstr(out, "  sender@example.org\n"));
	assert_non_null(strstr(out, "  MAILER-DAEMON\n"));
	assert_non_null(strstr(out, "\n(connect to x: refused)\n"));
	assert_non_null(strstr(out, "rcpt1@example.test\n"));
	assert_non_null(strstr(out, "\n-- 1 Kbytes in 2 Requests.\n"));
	free(out); free(err);
}

static void test_cli_no_queue(void **state)
{
	/* the server never ran: read-only commands see an empty queue and create nothing */
	char *out, *err;
	assert_int_equal(run_cli(&out, &err, 2, "queue", "list"), 0);
	assert_string_equal(out, "ID\tAGE\tSIZE\tSENDER\tRCPTS\tSTATE\tNEXT\tLAST_ERROR\tPENDING\n");
	free(out); free(err);
	assert_int_equal(run_cli(&out, &err, 2, "queue", "stats"), 0);
	assert_non_null(strstr(out, "messages: 0\n"));
	free(out); free(err);
	assert_int_equal(run_cli(&out, &err, 3, "queue", "show", "0123456789ABCDEF"), 1);
	assert_string_equal(err, "mailroute: no message 0123456789ABCDEF in the queue\n");
	free(out); free(err);
	assert_int_equal(access(qdir, F_OK), -1);
}

static void test_cli(void **state)
{
	struct queue_store *q = open_store();
	int fd;
	struct queue_envelope *env = make_msg(q, "Subject: cli test\r\nX-A: b\r\n\r\nsecret body\r\n", 2, &fd);
	char id[QUEUE_ID_SIZE];
	memcpy(id, env->id, sizeof(id));
	commit_one(q, env, fd);
	queue_envelope_free(&env);
	assert_int_equal(queue_store_rcpt_result(q, id, 0, QUEUE_RESULT_DEFERRED, "451 4.2.0\tbusy", time(NULL) + 600, NULL, NULL), 1);
	queue_store_close(&q);

	char *out, *err;
	assert_int_equal(run_cli(&out, &err, 2, "queue", "list"), 0);
	assert_true(strncmp(out, "ID\tAGE\tSIZE\tSENDER\tRCPTS\tSTATE\tNEXT\tLAST_ERROR\tPENDING\n", 55) == 0);
	assert_non_null(strstr(out, id));
	assert_non_null(strstr(out, "\t<sender@example.org>\t2\tactive\tnow\t451 4.2.0 busy\t"
				    "rcpt0@example.test,rcpt1@example.test\n"));
	free(out); free(err);

	/* many recipients: the first 10 are listed */
	q = open_store();
	struct queue_envelope *many = make_msg(q, "x", 12, &fd);
	commit_one(q, many, fd);
	queue_envelope_free(&many);
	queue_store_close(&q);
	assert_int_equal(run_cli(&out, &err, 2, "queue", "list"), 0);
	assert_non_null(strstr(out, "\t12\tactive\tnow\t-\trcpt0@example.test,rcpt1@example.test,"));
	assert_non_null(strstr(out, ",rcpt9@example.test,...(2 more)\n"));
	assert_null(strstr(out, "rcpt10@"));
	free(out); free(err);

	assert_int_equal(run_cli(&out, &err, 3, "queue", "show", id), 0);
	assert_non_null(strstr(out, "sender: <sender@example.org>"));
	assert_non_null(strstr(out, "0 <rcpt0@example.test> status=pending kind=local"));
	assert_non_null(strstr(out, "error=451 4.2.0 busy"));
	assert_non_null(strstr(out, "headers:\nSubject: cli test\nX-A: b\n"));
	assert_null(strstr(out, "secret body"));
	free(out); free(err);

	assert_int_equal(run_cli(&out, &err, 3, "queue", "hold", id), 0);
	free(out); free(err);
	assert_int_equal(run_cli(&out, &err, 2, "queue", "list"), 0);
	assert_non_null(strstr(out, "\thold\t-\t"));
	free(out); free(err);
	assert_int_equal(run_cli(&out, &err, 3, "queue", "release", id), 0);
	free(out); free(err);
	assert_int_equal(run_cli(&out, &err, 2, "queue", "stats"), 0);
	assert_non_null(strstr(out, "messages: 2\nactive: 2\nhold: 0\n"));
	free(out); free(err);
	assert_int_equal(run_cli(&out, &err, 2, "queue", "flush"), 0);
	free(out); free(err);

	static const struct { int argc; const char *a1, *a2, *a3; int code; const char *err; } cases[] = {
		{ 3, "show", "0000000000000000", NULL, 1, "mailroute: no message 0000000000000000 in the queue\n" },
		{ 3, "delete", "nonsense", NULL, 1, "mailroute: no message nonsense in the queue\n" },
		{ 3, "hold", "0000000000000000", NULL, 1, "mailroute: no message 0000000000000000 in the queue\n" },
		{ 3, "flush", "0000000000000000", NULL, 1, "mailroute: no message 0000000000000000 in the queue\n" },
		{ 2, "show", NULL, NULL, 2, "mailroute: queue show: wrong number" },
		{ 4, "delete", "a", "b", 2, "mailroute: queue delete: wrong number" },
		{ 2, "frobnicate", NULL, NULL, 2, "mailroute: queue: unknown command 'frobnicate'" },
		{ 1, NULL, NULL, NULL, 2, "mailroute: usage" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = run_cli(&out, &err, cases[i].argc, "queue", cases[i].a1, cases[i].a2, cases[i].a3);
		assert_int_equal(r, cases[i].code);
		assert_true(strncmp(err, cases[i].err, strlen(cases[i].err)) == 0);
		free(out); free(err);
	}

	assert_int_equal(run_cli(&out, &err, 3, "queue", "delete", id), 0);
	free(out); free(err);
	assert_false(spool_exists(id));
	assert_int_equal(run_cli(&out, &err, 3, "queue", "delete", id), 1);
	free(out); free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_syncfs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill9, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_due_and_results, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_delay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bounce_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema_upgrade, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cli_no_queue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cli_quarantine, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mailq, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
