#include "lib/workpool.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "lib/xalloc.h"

struct job {
	struct job *next;
	workpool_fn *work, *done;
	void *arg;
};

struct workpool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *todo_head, *todo_tail;
	struct job *done_head;
	struct event *done_ev;
	pthread_t *threads;
	unsigned nthreads;
	bool stopping;
};

static void *workpool_thread(void *arg)
{
	struct workpool *wp = arg;
	pthread_mutex_lock(&wp->lock);
	for (;;) {
		while (wp->todo_head == NULL && !wp->stopping)
			pthread_cond_wait(&wp->cond, &wp->lock);
		if (wp->stopping)
			break;
		struct job *j = wp->todo_head;
		wp->todo_head = j->next;
		if (wp->todo_head == NULL)
			wp->todo_tail = NULL;
		pthread_mutex_unlock(&wp->lock);
		j->work(j->arg);
		pthread_mutex_lock(&wp->lock);
		j->next = wp->done_head;
		wp->done_head = j;
		event_active(wp->done_ev, EV_READ, 0);
	}
	pthread_mutex_unlock(&wp->lock);
	return NULL;
}

static void workpool_on_done(evutil_socket_t fd, short what, void *arg)
{
	struct workpool *wp = arg;
	pthread_mutex_lock(&wp->lock);
	struct job *list = wp->done_head;
	wp->done_head = NULL;
	pthread_mutex_unlock(&wp->lock);
	/* Reverse to completion order. */
	struct job *rev = NULL;
	while (list != NULL) {
		struct job *n = list->next;
		list->next = rev;
		rev = list;
		list = n;
	}
	while (rev != NULL) {
		struct job *n = rev->next;
		rev->done(rev->arg);
		free(rev);
		rev = n;
	}
}

struct workpool *workpool_new(struct event_base *base, unsigned threads)
{
	struct workpool *wp = xcalloc(1, sizeof(*wp));
	pthread_mutex_init(&wp->lock, NULL);
	pthread_cond_init(&wp->cond, NULL);
	wp->done_ev = event_new(base, -1, 0, workpool_on_done, wp);
	wp->nthreads = threads ? threads : 1;
	wp->threads = xcalloc(wp->nthreads, sizeof(pthread_t));
	for (unsigned i = 0; i < wp->nthreads; i++)
		pthread_create(&wp->threads[i], NULL, workpool_thread, wp);
	return wp;
}

void workpool_submit(struct workpool *wp, workpool_fn *work, workpool_fn *done, void *arg)
{
	struct job *j = xmalloc(sizeof(*j));
	j->next = NULL;
	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&wp->lock);
	if (wp->todo_tail != NULL)
		wp->todo_tail->next = j;
	else
		wp->todo_head = j;
	wp->todo_tail = j;
	pthread_cond_signal(&wp->cond);
	pthread_mutex_unlock(&wp->lock);
}

void workpool_free(struct workpool **wpp)
{
	struct workpool *wp = *wpp;
	if (wp == NULL)
		return;
	*wpp = NULL;
	pthread_mutex_lock(&wp->lock);
	wp->stopping = true;
	pthread_cond_broadcast(&wp->cond);
	pthread_mutex_unlock(&wp->lock);
	for (unsigned i = 0; i < wp->nthreads; i++)
		pthread_join(wp->threads[i], NULL);
	for (struct job *j = wp->todo_head, *n; j != NULL; j = n) {
		n = j->next;
		free(j);
	}
	for (struct job *j = wp->done_head, *n; j != NULL; j = n) {
		n = j->next;
		free(j);
	}
	event_free(wp->done_ev);
	free(wp->threads);
	free(wp);
}
