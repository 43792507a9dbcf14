/*
 * queue_store: the durable queue (DESIGN.md §3). Under dir (= <data_dir>/queue/):
 *   spool/<ID>   one file per message body, written once by the smtp process
 *                through the fd from queue_spool_create(), fsynced at commit,
 *                never modified afterwards, unlinked when the message is done;
 *   queue.db     SQLite (WAL, synchronous=FULL, busy_timeout 10 s): the
 *                envelope (table messages) and per-recipient delivery state
 *                (table recipients), with a partial index on next_attempt of
 *                pending recipients for the "due now" scans.
 *
 * Durability contract: a message is acknowledged (250) only after its commit
 * returned success, i.e. after the spool file was fdatasync'ed, the spool
 * directory fsync'ed and the SQLite transaction holding the envelope committed
 * (WAL fsync). A spool file without a row was never acknowledged and is
 * removed by queue_store_recover() at startup. A message row exists as long as
 * at least one recipient is pending; when the last one is finished the row is
 * deleted first (DB commit), then the spool file unlinked, so a crash in
 * between leaves only an orphan file that recovery removes.
 *
 * Threads: a struct queue_store is one SQLite connection and must be used by
 * one thread at a time (the role's event loop thread). The group committer
 * (queue_committer.h) opens its own store for its worker thread. Several
 * processes (the server and the CLI) may open the same dir concurrently.
 * Every call below may block on disk I/O (and the write calls on one fsync).
 *
 * Returns follow STYLE.md: -1 error (*error_r allocated, caller frees),
 * 0 not found, 1 done. error_r may be NULL.
 */
#ifndef MR_QUEUE_STORE_H
#define MR_QUEUE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "queue/queue_envelope.h"
#include "queue/queue_id.h"

struct queue_store;

/* Open (creating dir, dir/spool and the schema as needed, mode 0700). */
struct queue_store *queue_store_open(const char *dir, char **error_r);
void queue_store_close(struct queue_store **q);
/* The directory given to open (absolute or as given). */
const char *queue_store_dir(const struct queue_store *q);

/*
 * Create spool/<new ID> (O_RDWR|O_CREAT|O_EXCL|O_CLOEXEC, 0600) and return its
 * fd, to be passed to the smtp process that writes the body. The file is not
 * durable and not queued until committed; queue_spool_remove() it when the
 * transaction is aborted. 1 ok, -1 error.
 */
int queue_spool_create(struct queue_store *q, char id_r[QUEUE_ID_SIZE], int *fd_r, char **error_r);
/* Unlink an uncommitted spool file (aborted DATA). 1 removed, 0 absent, -1 error. */
int queue_spool_remove(struct queue_store *q, const char *id, char **error_r);
/* Open a queued message's spool file read-only (O_CLOEXEC). fd, or -1 with errno set. */
int queue_store_open_spool(struct queue_store *q, const char *id);

/*
 * Synchronous commit of a batch (what the committer's worker thread runs; tools
 * and tests may call it directly). For each item: fstat + fdatasync(fd), then
 * one fsync of spool/, then one transaction inserting every envelope (each in
 * its own savepoint, so one bad envelope fails alone). Afterwards each item has
 * result 1 (durable) or -1 with error set (allocated) and its spool file
 * unlinked. The fds are closed, the envelopes are not freed. env->size 0 is
 * replaced by the file size; a nonzero size that differs from the file fails the
 * item. env->arrival 0 becomes now. Returns the number of committed items.
 */
struct queue_commit_item {
	struct queue_envelope *env;
	int fd;
	int result;
	char *error;
};
size_t queue_store_commit_batch(struct queue_store *q, struct queue_commit_item *items, size_t n);
/*
 * How commit_batch makes the bodies durable:
 *  QUEUE_SYNC_FILES (default): writeback of every file started, fdatasync of
 *    each, one fsync of spool/. Touches only our files; costs one device flush
 *    per message.
 *  QUEUE_SYNC_FS: one syncfs() of the spool's file system per batch (one journal
 *    commit, one flush, however many messages). Much faster under load (see
 *    bench-queue-commit -S), but also writes back whatever else is dirty on that
 *    file system: use it when the spool has its own file system or the machine
 *    does little else. Refused (-1) on kernels before 5.8, whose syncfs() did not
 *    report write errors.
 */
enum queue_sync_method { QUEUE_SYNC_FILES = 0, QUEUE_SYNC_FS };
int queue_store_set_sync_method(struct queue_store *q, enum queue_sync_method method);
/*
 * SQLite's automatic WAL checkpoint threshold for this connection (default 1000
 * pages). A checkpoint writes and fsyncs queue.db in the thread that commits;
 * queue_committer_new() raises the loop store's threshold to 10000 pages so the
 * committer's worker normally does them off the loop thread. 0 or -1.
 */
int queue_store_set_wal_autocheckpoint(struct queue_store *q, unsigned pages, char **error_r);
/* Number of fsync/fdatasync calls made by this store (including one per commit for the WAL). */
uint64_t queue_store_fsync_count(const struct queue_store *q);
/* Microseconds spent by commit_batch in: spool file syncs, the spool/ fsync, the DB transaction. */
void queue_store_commit_times(const struct queue_store *q, uint64_t *file_sync_us_r,
			      uint64_t *dir_sync_us_r, uint64_t *db_us_r);

/*
 * Startup recovery; call before accepting mail (it cannot tell an orphan from a
 * spool file a live session is still writing). Removes spool files without a
 * message row (never acknowledged); logs an error for every row whose spool
 * file is missing or does not have the committed size (must not happen) and
 * puts that message on hold with last_error "spool file missing" / "spool file
 * size mismatch", so it is visible in `queue list` and never delivered damaged.
 */
struct queue_recover_stats {
	unsigned messages;         /* message rows */
	unsigned orphans_removed;  /* spool files without a row, unlinked */
	unsigned missing_spool;    /* rows without a spool file (now on hold) */
	unsigned bad_size;         /* rows whose spool file has another size (now on hold) */
	unsigned ignored;          /* other names in spool/ (left alone, logged) */
};
int queue_store_recover(struct queue_store *q, struct queue_recover_stats *stats_r, char **error_r);

/*
 * Scheduler: pending recipients with next_attempt <= now of messages in state
 * active, ordered by next_attempt, id, idx; at most limit of them. The rows are
 * read first and cb is called afterwards, so cb may call back into the store.
 * The strings are valid during the callback. Returns the count or -1.
 */
struct queue_due {
	const char *id;
	unsigned idx;
	enum queue_rcpt_kind kind;
	const char *target;
	const char *address;
	unsigned attempts;
	time_t next_attempt;
	time_t arrival;
	bool bounce_requested; /* `mailroute queue bounce`: send a DSN, record BOUNCED, don't deliver */
};
typedef void queue_due_cb(void *ctx, const struct queue_due *due);
int queue_store_due(struct queue_store *q, time_t now, unsigned limit, queue_due_cb *cb, void *ctx,
		    char **error_r);
/*
 * 1 when another connection (the CLI: flush, hold, release, delete; or the
 * committer) committed a change since the previous call, else 0; -1 on error.
 * Cheap (PRAGMA data_version reads shared memory): poll it from a timer, e.g.
 * every second, and rescan when it returns 1. The first call returns 1.
 */
int queue_store_changed(struct queue_store *q, char **error_r);
/* Earliest next_attempt of a pending recipient of an active message: 1 (*next_r set), 0 none, -1. */
int queue_store_next_due_time(struct queue_store *q, time_t *next_r, char **error_r);

enum queue_result {
	QUEUE_RESULT_DONE,     /* delivered */
	QUEUE_RESULT_FAILED,   /* permanent failure, no DSN */
	QUEUE_RESULT_BOUNCED,  /* permanent failure, DSN already queued */
	QUEUE_RESULT_DEFERRED, /* temporary failure: stays pending until next_attempt */
};
/*
 * Record one delivery attempt of a pending recipient (attempts+1, last_attempt =
 * now, last_error = error_text or NULL). next_attempt is used for DEFERRED only.
 * When no recipient stays pending the message row is deleted (commit) and then
 * its spool file unlinked; *finished_r (may be NULL) tells which happened.
 * 1 recorded, 0 no such pending recipient (e.g. deleted meanwhile), -1 error.
 */
int queue_store_rcpt_result(struct queue_store *q, const char *id, unsigned idx,
			    enum queue_result result, const char *error_text, time_t next_attempt,
			    bool *finished_r, char **error_r);

/*
 * The same for many results in ONE transaction (one WAL fsync): the queue role
 * can collect the results that arrive in one loop iteration. Per update, ret is
 * 1 recorded / 0 no such pending recipient, finished as above. Updates of the
 * same message are applied in order. Returns 1, or -1 (nothing recorded, every
 * ret -1) on a database error.
 */
struct queue_rcpt_update {
	const char *id;
	unsigned idx;
	enum queue_result result;
	const char *error_text;
	time_t next_attempt;
	int ret;        /* out */
	bool finished;  /* out: the message is gone */
};
int queue_store_rcpt_results(struct queue_store *q, struct queue_rcpt_update *updates, size_t n,
			     char **error_r);

/* Envelope with every recipient and its state; *env_r freed with queue_envelope_free. 1/0/-1. */
int queue_store_get(struct queue_store *q, const char *id, struct queue_envelope **env_r,
		    char **error_r);
/* hold = QUEUE_STATE_HOLD, release = QUEUE_STATE_ACTIVE, quarantine. 1/0/-1. */
int queue_store_set_state(struct queue_store *q, const char *id, enum queue_state state,
			  char **error_r);
/* Remove a message without any bounce: row first, then the spool file. 1/0/-1. */
int queue_store_delete(struct queue_store *q, const char *id, char **error_r);
/* next_attempt = now for the pending recipients of id (or of every message when id is NULL).
 * Returns the number of messages affected (0 = id not in the queue) or -1. */
int queue_store_flush(struct queue_store *q, const char *id, time_t now, char **error_r);

/*
 * `mailroute queue bounce ID`: flag the message so the scheduler returns it to
 * the sender: the message becomes active, its pending recipients due at now,
 * and queue_store_due() reports them with bounce_requested; the queue role then
 * queues a DSN ("5.0.0 bounced by the administrator") and records
 * QUEUE_RESULT_BOUNCED instead of delivering. 1/0/-1.
 */
int queue_store_bounce(struct queue_store *q, const char *id, time_t now, char **error_r);

/* One line of `mailroute queue list`. */
struct queue_list_entry {
	const char *id;
	time_t arrival;
	uint64_t size;
	const char *sender;
	unsigned rcpt_count;
	unsigned pending_count;
	enum queue_state state;
	time_t next_attempt;      /* earliest of the pending recipients, 0 if none */
	const char *last_error;   /* most recent attempt's error of any recipient, or NULL */
	const char *pending_rcpts; /* the first 10 pending recipients, comma-separated */
};
typedef void queue_list_cb(void *ctx, const struct queue_list_entry *e);
/* Every message in id (= arrival) order; cb must not call into the store. Count or -1. */
int queue_store_list(struct queue_store *q, queue_list_cb *cb, void *ctx, char **error_r);

struct queue_store_stats {
	unsigned messages, active, hold, quarantine;
	unsigned rcpts_pending;
	uint64_t bytes;
	time_t oldest_arrival;    /* 0 when empty */
};
int queue_store_stats(struct queue_store *q, struct queue_store_stats *stats_r, char **error_r);

/*
 * Exponential backoff: seconds to wait after the attempts-th failed attempt:
 * retry_min * 2^(attempts-1), capped at retry_max (attempts 0 and 1 give
 * retry_min). Never 0 unless retry_min is 0; overflow-safe.
 */
unsigned queue_retry_delay(unsigned attempts, unsigned retry_min, unsigned retry_max);

#endif
