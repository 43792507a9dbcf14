/*
 * workpool: a small pool of threads for slow work that must not block an event
 * loop (password hashing, DNS-bound evaluations). work() runs on a pool thread
 * and must touch only its own arg; done() then runs on the loop thread of the
 * base given at creation. The loop must have called evthread_use_pthreads()
 * before the base was created.
 */
#ifndef MR_WORKPOOL_H
#define MR_WORKPOOL_H

struct event_base;
struct workpool;

typedef void workpool_fn(void *arg);

struct workpool *workpool_new(struct event_base *base, unsigned threads);
/* Drains pending jobs (their done callbacks do not run) and joins the threads. */
void workpool_free(struct workpool **wp);
void workpool_submit(struct workpool *wp, workpool_fn *work, workpool_fn *done, void *arg);

#endif
