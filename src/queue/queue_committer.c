#include "queue/queue_committer.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/xalloc.h"
#include "queue/queue_store.h"

struct queue_submission {
	struct queue_submission *next;
	struct queue_envelope *env;
	int fd;
	queue_commit_cb *cb;
	void *arg;
	int result;
	char *error;
};

struct queue_committer {
	struct queue_store *store; /* the worker's own connection */
	struct event_base *base;
	struct event *ev;
	int efd;
	unsigned window_us;

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* protected by lock: */
	struct queue_submission *pending, **pending_tail;
	struct queue_submission *done, **done_tail;
	unsigned pending_count, in_flight, done_count;
	struct timespec first_submit; /* CLOCK_MONOTONIC, of the oldest pending submission */
	bool stopping;
	enum queue_sync_method sync_method;
	struct queue_committer_stats stats;

	/* Pre-created empty spool files, made by the pool thread so that file
	 * creation (which can wait for a journal commit) stays off the loop thread. */
	pthread_t pool_thread;
	bool pool_started;
	pthread_cond_t pool_cond;
	struct queue_pool_entry {
		char id[QUEUE_ID_SIZE];
		int fd;
	} pool[QUEUE_COMMITTER_POOL];
	unsigned pool_count;
	bool pool_failed; /* last refill hit an error: don't spin, the loop falls back */
};

static void queue_committer_deadline(struct timespec *ts, const struct timespec *from, unsigned us)
{
	*ts = *from;
	ts->tv_sec += us / 1000000u;
	ts->tv_nsec += (long)(us % 1000000u) * 1000;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static bool queue_timespec_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void queue_committer_run_batch(struct queue_committer *c, struct queue_submission *list,
				      unsigned n)
{
	struct queue_commit_item *items = xcalloc(n, sizeof(*items));
	struct queue_submission *s = list;
	for (unsigned i = 0; i < n; i++, s = s->next) {
		items[i].env = s->env;
		items[i].fd = s->fd;
	}
	uint64_t fsyncs_before = queue_store_fsync_count(c->store);
	size_t ok = queue_store_commit_batch(c->store, items, n);
	uint64_t fsyncs = queue_store_fsync_count(c->store) - fsyncs_before;
	s = list;
	for (unsigned i = 0; i < n; i++, s = s->next) {
		s->fd = -1;
		s->result = items[i].result;
		s->error = items[i].error;
		if (s->result < 0) {
			char qbuf[256];
			log_warn("event=queue_commit_failed id=%s error=%s", s->env->id,
				 log_q(qbuf, sizeof(qbuf), s->error != NULL ? s->error : "?"));
		}
	}
	free(items);

	pthread_mutex_lock(&c->lock);
	c->stats.batches++;
	c->stats.messages += ok;
	c->stats.failures += n - ok;
	c->stats.fsyncs += fsyncs;
	if (n > c->stats.max_batch)
		c->stats.max_batch = n;
	queue_store_commit_times(c->store, &c->stats.file_sync_us, &c->stats.dir_sync_us,
				 &c->stats.db_us);
	*c->done_tail = list;
	while (*c->done_tail != NULL)
		c->done_tail = &(*c->done_tail)->next;
	c->done_count += n;
	c->in_flight = 0;
	pthread_mutex_unlock(&c->lock);

	uint64_t one = 1;
	while (write(c->efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static void *queue_committer_thread(void *arg)
{
	struct queue_committer *c = arg;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (c->pending == NULL && !c->stopping)
			pthread_cond_wait(&c->cond, &c->lock);
		if (c->pending == NULL)
			break; /* stopping and drained */
		if (c->window_us > 0 && !c->stopping) {
			struct timespec deadline, now;
			queue_committer_deadline(&deadline, &c->first_submit, c->window_us);
			for (;;) {
				clock_gettime(CLOCK_MONOTONIC, &now);
				if (c->stopping || !queue_timespec_before(&now, &deadline))
					break;
				pthread_cond_timedwait(&c->cond, &c->lock, &deadline);
			}
		}
		struct queue_submission *list = c->pending;
		unsigned n = c->pending_count;
		c->pending = NULL;
		c->pending_tail = &c->pending;
		c->pending_count = 0;
		c->in_flight = n;
		enum queue_sync_method method = c->sync_method;
		pthread_mutex_unlock(&c->lock);
		(void)queue_store_set_sync_method(c->store, method); /* validated by the setter */
		queue_committer_run_batch(c, list, n);
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static void *queue_committer_pool_thread(void *arg)
{
	struct queue_committer *c = arg;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (!c->stopping && (c->pool_count > QUEUE_COMMITTER_POOL / 2 || c->pool_failed))
			pthread_cond_wait(&c->pool_cond, &c->lock);
		if (c->stopping)
			break;
		unsigned want = QUEUE_COMMITTER_POOL - c->pool_count;
		pthread_mutex_unlock(&c->lock);
		struct queue_pool_entry fresh[QUEUE_COMMITTER_POOL];
		unsigned made = 0;
		bool failed = false;
		while (made < want) {
			char *error = NULL;
			if (queue_spool_create(c->store, fresh[made].id, &fresh[made].fd, &error) < 0) {
				log_warn("event=queue_pool_refill_failed error=\"%s\"", error);
				free(error);
				failed = true;
				break;
			}
			made++;
		}
		pthread_mutex_lock(&c->lock);
		for (unsigned i = 0; i < made; i++)
			c->pool[c->pool_count++] = fresh[i];
		c->pool_failed = failed;
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

int queue_committer_spool_create(struct queue_committer *c, char id_r[QUEUE_ID_SIZE], int *fd_r,
				 char **error_r)
{
	pthread_mutex_lock(&c->lock);
	if (c->pool_count > 0) {
		/* oldest first, so IDs still roughly follow arrival order */
		struct queue_pool_entry e = c->pool[0];
		memmove(&c->pool[0], &c->pool[1], (c->pool_count - 1) * sizeof(c->pool[0]));
		c->pool_count--;
		if (c->pool_count <= QUEUE_COMMITTER_POOL / 2)
			pthread_cond_signal(&c->pool_cond);
		pthread_mutex_unlock(&c->lock);
		memcpy(id_r, e.id, QUEUE_ID_SIZE);
		*fd_r = e.fd;
		return 1;
	}
	c->pool_failed = false; /* let the pool thread try again */
	pthread_cond_signal(&c->pool_cond);
	pthread_mutex_unlock(&c->lock);
	/* openat() of one file in spool/ only: safe next to the worker's use of the store */
	return queue_spool_create(c->store, id_r, fd_r, error_r);
}

/* Run the callbacks of finished submissions (loop thread, or free()). */
static void queue_committer_deliver(struct queue_committer *c)
{
	pthread_mutex_lock(&c->lock);
	struct queue_submission *list = c->done;
	c->done = NULL;
	c->done_tail = &c->done;
	c->done_count = 0;
	pthread_mutex_unlock(&c->lock);
	while (list != NULL) {
		struct queue_submission *s = list;
		list = s->next;
		if (s->cb != NULL)
			s->cb(s->arg, s->result, s->result < 0 ? (s->error != NULL ? s->error : "queue: commit failed")
								 : NULL);
		queue_envelope_free(&s->env);
		free(s->error);
		free(s);
	}
}

static void queue_committer_event(evutil_socket_t fd, short what, void *arg)
{
	struct queue_committer *c = arg;
	uint64_t v;
	(void)what;
	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	queue_committer_deliver(c);
}

struct queue_committer *queue_committer_new(struct queue_store *q, struct event_base *base,
					    unsigned window_us, char **error_r)
{
	struct queue_store *store = queue_store_open(queue_store_dir(q), error_r);
	if (store == NULL)
		return NULL;
	(void)queue_store_set_wal_autocheckpoint(q, 10000, NULL);
	struct queue_committer *c = xcalloc(1, sizeof(*c));
	c->store = store;
	c->base = base;
	c->window_us = window_us > 1000000u ? 1000000u : window_us;
	c->pending_tail = &c->pending;
	c->done_tail = &c->done;
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &attr);
	pthread_cond_init(&c->pool_cond, NULL);
	pthread_condattr_destroy(&attr);
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->efd < 0) {
		if (error_r != NULL)
			*error_r = xasprintf("queue committer: eventfd: %s", strerror(errno));
		goto fail;
	}
	c->ev = event_new(base, c->efd, EV_READ | EV_PERSIST, queue_committer_event, c);
	if (c->ev == NULL || event_add(c->ev, NULL) < 0) {
		if (error_r != NULL)
			*error_r = xstrdup("queue committer: event_new failed");
		goto fail;
	}
	int err = pthread_create(&c->thread, NULL, queue_committer_thread, c);
	if (err != 0) {
		if (error_r != NULL)
			*error_r = xasprintf("queue committer: pthread_create: %s", strerror(err));
		goto fail;
	}
	c->thread_started = true;
	err = pthread_create(&c->pool_thread, NULL, queue_committer_pool_thread, c);
	if (err != 0) {
		if (error_r != NULL)
			*error_r = xasprintf("queue committer: pthread_create: %s", strerror(err));
		goto fail;
	}
	c->pool_started = true;
	return c;
fail:
	queue_committer_free(&c);
	return NULL;
}

void queue_committer_free(struct queue_committer **cp)
{
	struct queue_committer *c = *cp;
	if (c == NULL)
		return;
	if (c->thread_started || c->pool_started) {
		pthread_mutex_lock(&c->lock);
		c->stopping = true;
		pthread_cond_signal(&c->cond);
		pthread_cond_signal(&c->pool_cond);
		pthread_mutex_unlock(&c->lock);
		if (c->thread_started)
			pthread_join(c->thread, NULL);
		if (c->pool_started)
			pthread_join(c->pool_thread, NULL);
	}
	/* unused pre-created files were never handed out: remove them */
	for (unsigned i = 0; i < c->pool_count; i++) {
		close(c->pool[i].fd);
		(void)queue_spool_remove(c->store, c->pool[i].id, NULL);
	}
	c->pool_count = 0;
	queue_committer_deliver(c); /* callbacks may still query c, not submit */
	*cp = NULL;
	if (c->ev != NULL)
		event_free(c->ev);
	if (c->efd >= 0)
		close(c->efd);
	pthread_cond_destroy(&c->cond);
	pthread_cond_destroy(&c->pool_cond);
	pthread_mutex_destroy(&c->lock);
	queue_store_close(&c->store);
	free(c);
}

void queue_committer_submit(struct queue_committer *c, struct queue_envelope *env, int spool_fd,
			    queue_commit_cb *cb, void *arg)
{
	struct queue_submission *s = xcalloc(1, sizeof(*s));
	s->env = env;
	s->fd = spool_fd;
	s->cb = cb;
	s->arg = arg;
	pthread_mutex_lock(&c->lock);
	if (c->pending == NULL)
		clock_gettime(CLOCK_MONOTONIC, &c->first_submit);
	*c->pending_tail = s;
	c->pending_tail = &s->next;
	c->pending_count++;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

int queue_committer_set_sync_method(struct queue_committer *c, enum queue_sync_method method)
{
	/* validate on a scratch store-independent check: the store setter only refuses old kernels */
	if (method == QUEUE_SYNC_FS) {
		struct utsname u;
		int ma = 0, mi = 0;
		if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2 || ma < 5 || (ma == 5 && mi < 8))
			return -1;
	}
	pthread_mutex_lock(&c->lock);
	c->sync_method = method;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

unsigned queue_committer_pending(struct queue_committer *c)
{
	pthread_mutex_lock(&c->lock);
	unsigned n = c->pending_count + c->in_flight + c->done_count;
	pthread_mutex_unlock(&c->lock);
	return n;
}

void queue_committer_get_stats(struct queue_committer *c, struct queue_committer_stats *stats_r)
{
	pthread_mutex_lock(&c->lock);
	*stats_r = c->stats;
	pthread_mutex_unlock(&c->lock);
}
