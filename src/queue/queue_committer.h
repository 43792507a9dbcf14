/*
 * queue_committer: group commit of received messages (DESIGN.md §3). The event
 * loop thread submits (envelope, spool fd) pairs; one worker thread takes every
 * submission pending at that moment as one batch and runs
 * queue_store_commit_batch() on its own store connection: one fdatasync per
 * spool file, one fsync of spool/, one SQLite transaction (one WAL fsync) for
 * the whole batch. While a batch is in flight new submissions queue up for the
 * next one; window_us > 0 additionally holds a batch open until window_us after
 * its first submission to gather more (bounded extra latency).
 *
 * Callbacks run on the event loop thread (woken through an eventfd, so this
 * does not need evthread_use_pthreads()), in submission order within a batch:
 * result 1 = the message is durable, answer 250; -1 = not queued (error says
 * why, valid during the call; the spool file was removed), answer 451.
 *
 * Ownership: submit takes env and spool_fd in every case (freed/closed after
 * the callback). queue_committer_free() waits for the batch in flight and the
 * pending submissions to be committed, stops the worker, then runs their
 * callbacks on the calling thread (they may query but must not submit). Use
 * one committer per process, and only from the loop thread of base.
 */
#ifndef MR_QUEUE_COMMITTER_H
#define MR_QUEUE_COMMITTER_H

#include <stdint.h>

#include "queue/queue_envelope.h"
#include "queue/queue_store.h"

struct event_base;
struct queue_committer;

typedef void queue_commit_cb(void *arg, int result, const char *error);

struct queue_committer_stats {
	uint64_t batches;    /* commit_batch runs */
	uint64_t messages;   /* submissions committed successfully */
	uint64_t failures;   /* submissions answered with -1 */
	uint64_t fsyncs;     /* fsync/fdatasync calls incl. one per WAL commit */
	uint64_t max_batch;  /* largest batch so far */
	uint64_t file_sync_us, dir_sync_us, db_us; /* time in the commit phases */
};

/*
 * Opens its own connection to the store directory of q (q stays the loop
 * thread's; its WAL autocheckpoint threshold is raised to 10000 pages so that
 * checkpoints normally run in the worker, after a batch). NULL and *error_r on error.
 */
struct queue_committer *queue_committer_new(struct queue_store *q, struct event_base *base,
					    unsigned window_us, char **error_r);
void queue_committer_free(struct queue_committer **c);
/*
 * Like queue_spool_create() (same contract), but hands out one of up to
 * QUEUE_COMMITTER_POOL empty spool files pre-created by a helper thread, so the
 * loop thread does not wait for a file creation stuck behind a journal commit;
 * creates one synchronously when the pool is empty. Unused pool files are
 * removed by queue_committer_free() (and, after a crash, by recovery: they have
 * no row). IDs then reflect creation, not DATA, time (still roughly ordered).
 */
#define QUEUE_COMMITTER_POOL 32
int queue_committer_spool_create(struct queue_committer *c, char id_r[QUEUE_ID_SIZE], int *fd_r,
				 char **error_r);
/* Choose how batches are synced (queue_store.h); takes effect from the next batch. 0, or -1 refused. */
int queue_committer_set_sync_method(struct queue_committer *c, enum queue_sync_method method);
void queue_committer_submit(struct queue_committer *c, struct queue_envelope *env, int spool_fd,
			    queue_commit_cb *cb, void *arg);
/* Submissions not yet answered (pending + in flight). */
unsigned queue_committer_pending(struct queue_committer *c);
void queue_committer_get_stats(struct queue_committer *c, struct queue_committer_stats *stats_r);

#endif
