#include "queue/queue_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/xalloc.h"

#define QUEUE_SCHEMA_VERSION 3
#define QUEUE_STMT_CACHE 48

struct queue_store {
	char *dir;
	char *spool_path;
	int spool_fd; /* O_DIRECTORY fd of spool/, for *at() calls and the directory fsync */
	sqlite3 *db;
	uint64_t fsyncs;
	uint64_t file_sync_us, dir_sync_us, db_us; /* time spent in commit_batch phases */
	int64_t data_version; /* last PRAGMA data_version seen; -1 = never */
	enum queue_sync_method sync_method;
	/* Prepared statements kept for reuse, keyed by the address of their SQL literal:
	 * preparing costs more CPU than running most of these statements. */
	struct queue_stmt_slot {
		const char *sql;
		sqlite3_stmt *st;
		bool in_use;
	} stmts[QUEUE_STMT_CACHE];
	unsigned stmt_count;
};

static const char queue_schema[] =
	"CREATE TABLE IF NOT EXISTS messages ("
	" id TEXT PRIMARY KEY NOT NULL,"
	" arrival INTEGER NOT NULL,"
	" sender TEXT NOT NULL,"
	" size INTEGER NOT NULL,"
	" envid TEXT,"
	" ret INTEGER NOT NULL DEFAULT 0,"
	" helo TEXT,"
	" client_ip TEXT,"
	" auth_user TEXT,"
	" body_type INTEGER NOT NULL DEFAULT 0,"
	" smtputf8 INTEGER NOT NULL DEFAULT 0,"
	" bounce INTEGER NOT NULL DEFAULT 0,"
	" headers TEXT,"
	" state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active','hold','quarantine'))"
	");"
	"CREATE TABLE IF NOT EXISTS recipients ("
	" msg_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
	" idx INTEGER NOT NULL,"
	" address TEXT NOT NULL,"
	" orcpt TEXT,"
	" notify INTEGER NOT NULL DEFAULT 0,"
	" kind TEXT NOT NULL CHECK (kind IN ('local','remote','other')),"
	" target TEXT NOT NULL DEFAULT '',"
	" folder TEXT,"
	" status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','done','failed','bounced')),"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" next_attempt INTEGER NOT NULL DEFAULT 0,"
	" last_error TEXT,"
	" last_attempt INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY (msg_id, idx)"
	");"
	"CREATE INDEX IF NOT EXISTS recipients_due ON recipients(next_attempt) WHERE status = 'pending';"
	"CREATE INDEX IF NOT EXISTS messages_state ON messages(state) WHERE state <> 'active';";

static void queue_set_error(char **error_r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void queue_set_error(char **error_r, const char *fmt, ...)
{
	if (error_r == NULL)
		return;
	va_list ap;
	va_start(ap, fmt);
	*error_r = xvasprintf(fmt, ap);
	va_end(ap);
}

static int queue_db_error(struct queue_store *q, char **error_r, const char *what)
{
	queue_set_error(error_r, "queue database: %s: %s", what, sqlite3_errmsg(q->db));
	return -1;
}

static int queue_exec(struct queue_store *q, const char *sql, char **error_r)
{
	char *msg = NULL;
	if (sqlite3_exec(q->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		queue_set_error(error_r, "queue database: %s: %s", sql, msg != NULL ? msg : "error");
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/*
 * A statement for sql, which must be a string literal (its address is the cache key):
 * the cached one when it is free, else a fresh one. Give it back with queue_finalize().
 */
static sqlite3_stmt *queue_prepare(struct queue_store *q, const char *sql, char **error_r)
{
	struct queue_stmt_slot *slot = NULL;
	for (unsigned i = 0; i < q->stmt_count; i++) {
		if (q->stmts[i].sql == sql) {
			if (q->stmts[i].in_use)
				break; /* nested use of the same statement: a fresh one */
			q->stmts[i].in_use = true;
			return q->stmts[i].st;
		}
	}
	bool cache = q->stmt_count < QUEUE_STMT_CACHE;
	for (unsigned i = 0; i < q->stmt_count && cache; i++)
		if (q->stmts[i].sql == sql)
			cache = false;
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v3(q->db, sql, -1, cache ? SQLITE_PREPARE_PERSISTENT : 0, &st, NULL) != SQLITE_OK) {
		queue_db_error(q, error_r, "prepare");
		sqlite3_finalize(st);
		return NULL;
	}
	if (cache && st != NULL) {
		slot = &q->stmts[q->stmt_count++];
		slot->sql = sql;
		slot->st = st;
		slot->in_use = true;
	}
	return st;
}

/* Give back a statement from queue_prepare(): a cached one is reset for reuse. */
static void queue_finalize(struct queue_store *q, sqlite3_stmt *st)
{
	if (st == NULL)
		return;
	for (unsigned i = 0; i < q->stmt_count; i++) {
		if (q->stmts[i].st == st) {
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			q->stmts[i].in_use = false;
			return;
		}
	}
	sqlite3_finalize(st);
}

/* Run one cached statement without results (BEGIN, COMMIT, SAVEPOINT...). 0 or -1. */
static int queue_exec_cached(struct queue_store *q, const char *sql, char **error_r)
{
	sqlite3_stmt *st = queue_prepare(q, sql, error_r);
	if (st == NULL)
		return -1;
	int rc = sqlite3_step(st);
	int ret = 0;
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		queue_set_error(error_r, "queue database: %s: %s", sql, sqlite3_errmsg(q->db));
		ret = -1;
	}
	queue_finalize(q, st);
	return ret;
}

static void queue_rollback(struct queue_store *q)
{
	if (!sqlite3_get_autocommit(q->db))
		(void)sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
}

static int queue_fsync_fd(struct queue_store *q, int fd, bool data_only)
{
	q->fsyncs++;
	return data_only ? fdatasync(fd) : fsync(fd);
}

/* mkdir with 0700 unless it exists; fsync the parent when created. 0 ok, -1 errno. */
static int queue_mkdir(const char *path)
{
	if (mkdir(path, 0700) == 0) {
		char *parent = xstrdup(path);
		char *slash = strrchr(parent, '/');
		if (slash != NULL) {
			if (slash == parent)
				slash[1] = '\0';
			else
				*slash = '\0';
			int fd = open(slash == NULL ? "." : parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fd >= 0) {
				(void)fsync(fd);
				close(fd);
			}
		}
		free(parent);
		return 0;
	}
	if (errno != EEXIST)
		return -1;
	struct stat st;
	if (stat(path, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

/* PRAGMA user_version; -1 with *error_r on error or when newer than this build. */
static int queue_schema_version(struct queue_store *q, char **error_r)
{
	sqlite3_stmt *st = queue_prepare(q, "PRAGMA user_version", error_r);
	if (st == NULL)
		return -1;
	int version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
	queue_finalize(q, st);
	if (version < 0)
		return queue_db_error(q, error_r, "user_version");
	if (version > QUEUE_SCHEMA_VERSION) {
		queue_set_error(error_r, "queue: %s/queue.db has schema version %d, newer than this build (%d)",
				q->dir, version, QUEUE_SCHEMA_VERSION);
		return -1;
	}
	return version;
}

struct queue_store *queue_store_open(const char *dir, char **error_r)
{
	struct queue_store *q = xcalloc(1, sizeof(*q));
	q->spool_fd = -1;
	q->data_version = -1;
	q->dir = xstrdup(dir);
	q->spool_path = xasprintf("%s/spool", dir);

	if (queue_mkdir(dir) < 0) {
		queue_set_error(error_r, "queue: mkdir %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (queue_mkdir(q->spool_path) < 0) {
		queue_set_error(error_r, "queue: mkdir %s: %s", q->spool_path, strerror(errno));
		goto fail;
	}
	q->spool_fd = open(q->spool_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (q->spool_fd < 0) {
		queue_set_error(error_r, "queue: open %s: %s", q->spool_path, strerror(errno));
		goto fail;
	}
	char *db_path = xasprintf("%s/queue.db", dir);
	/* Envelopes are private: create the file 0600 (SQLite gives -wal/-shm the same mode). */
	int dbfd = open(db_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (dbfd >= 0)
		close(dbfd);
	int rc = sqlite3_open_v2(db_path, &q->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		queue_set_error(error_r, "queue: open %s: %s", db_path,
				q->db != NULL ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
		free(db_path);
		goto fail;
	}
	free(db_path);
	sqlite3_busy_timeout(q->db, 10000);
	sqlite3_extended_result_codes(q->db, 1);
	/*
	 * Keep the -wal/-shm files when a connection closes: with several processes
	 * (roles, CLI) a closing one must never unlink files another has open, or
	 * that one goes on reading an orphaned WAL and misses every later commit.
	 */
	int persist = 1;
	sqlite3_file_control(q->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
	if (queue_exec(q, "PRAGMA journal_mode=WAL", error_r) < 0 ||
	    queue_exec(q, "PRAGMA synchronous=FULL", error_r) < 0 ||
	    queue_exec(q, "PRAGMA foreign_keys=ON", error_r) < 0)
		goto fail;

	int version = queue_schema_version(q, error_r);
	if (version < 0)
		goto fail;
	if (version < QUEUE_SCHEMA_VERSION) {
		if (queue_exec(q, "BEGIN IMMEDIATE", error_r) < 0)
			goto fail;
		/* again under the write lock: another process may have just done it */
		version = queue_schema_version(q, error_r);
		if (version < 0 ||
		    (version == 0 && queue_exec(q, queue_schema, error_r) < 0) ||
		    (version == 1 && queue_exec(q, "ALTER TABLE messages ADD COLUMN bounce INTEGER NOT NULL"
						   " DEFAULT 0", error_r) < 0) ||
		    (version >= 1 && version <= 2 &&
		     queue_exec(q, "ALTER TABLE messages ADD COLUMN headers TEXT", error_r) < 0) ||
		    queue_exec(q, "PRAGMA user_version=3", error_r) < 0 ||
		    queue_exec(q, "COMMIT", error_r) < 0) {
			queue_rollback(q);
			goto fail;
		}
	}
	/* the directory entries of queue.db and spool/ (SQLite syncs the directory for its -wal) */
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return q;
fail:
	queue_store_close(&q);
	return NULL;
}

void queue_store_close(struct queue_store **qp)
{
	struct queue_store *q = *qp;
	if (q == NULL)
		return;
	*qp = NULL;
	for (unsigned i = 0; i < q->stmt_count; i++)
		sqlite3_finalize(q->stmts[i].st);
	q->stmt_count = 0;
	if (q->db != NULL)
		sqlite3_close_v2(q->db);
	if (q->spool_fd >= 0)
		close(q->spool_fd);
	free(q->spool_path);
	free(q->dir);
	free(q);
}

const char *queue_store_dir(const struct queue_store *q)
{
	return q->dir;
}

uint64_t queue_store_fsync_count(const struct queue_store *q)
{
	return q->fsyncs;
}

static bool queue_kernel_at_least(int major, int minor)
{
	struct utsname u;
	int ma = 0, mi = 0;
	if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
		return false;
	return ma > major || (ma == major && mi >= minor);
}

int queue_store_set_wal_autocheckpoint(struct queue_store *q, unsigned pages, char **error_r)
{
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA wal_autocheckpoint=%u", pages);
	return queue_exec(q, sql, error_r);
}

int queue_store_set_sync_method(struct queue_store *q, enum queue_sync_method method)
{
	/* Before 5.8 syncfs() did not report writeback errors: not safe for acknowledgements. */
	if (method == QUEUE_SYNC_FS && !queue_kernel_at_least(5, 8))
		return -1;
	q->sync_method = method;
	return 0;
}

void queue_store_commit_times(const struct queue_store *q, uint64_t *file_sync_us_r,
			      uint64_t *dir_sync_us_r, uint64_t *db_us_r)
{
	*file_sync_us_r = q->file_sync_us;
	*dir_sync_us_r = q->dir_sync_us;
	*db_us_r = q->db_us;
}

static uint64_t queue_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- spool ---- */

int queue_spool_create(struct queue_store *q, char id_r[QUEUE_ID_SIZE], int *fd_r, char **error_r)
{
	for (int tries = 0; tries < 8; tries++) {
		queue_id_new(id_r);
		int fd = openat(q->spool_fd, id_r, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0) {
			*fd_r = fd;
			return 1;
		}
		if (errno != EEXIST) {
			queue_set_error(error_r, "queue: create %s/%s: %s", q->spool_path, id_r,
					strerror(errno));
			return -1;
		}
	}
	queue_set_error(error_r, "queue: create %s: too many ID collisions", q->spool_path);
	return -1;
}

int queue_spool_remove(struct queue_store *q, const char *id, char **error_r)
{
	if (!queue_id_is_valid(id)) {
		queue_set_error(error_r, "queue: invalid ID");
		return -1;
	}
	if (unlinkat(q->spool_fd, id, 0) < 0) {
		if (errno == ENOENT)
			return 0;
		queue_set_error(error_r, "queue: unlink %s/%s: %s", q->spool_path, id, strerror(errno));
		return -1;
	}
	return 1;
}

int queue_store_open_spool(struct queue_store *q, const char *id)
{
	if (!queue_id_is_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	return openat(q->spool_fd, id, O_RDONLY | O_CLOEXEC);
}

/* ---- commit ---- */

static void queue_bind_text(sqlite3_stmt *st, int col, const char *s)
{
	if (s == NULL)
		sqlite3_bind_null(st, col);
	else
		sqlite3_bind_text(st, col, s, -1, SQLITE_STATIC);
}

static int queue_insert_envelope(struct queue_store *q, sqlite3_stmt *msg_st, sqlite3_stmt *rcpt_st,
				 const struct queue_envelope *env, char **error_r)
{
	sqlite3_reset(msg_st);
	sqlite3_clear_bindings(msg_st);
	queue_bind_text(msg_st, 1, env->id);
	sqlite3_bind_int64(msg_st, 2, (sqlite3_int64)env->arrival);
	queue_bind_text(msg_st, 3, env->sender != NULL ? env->sender : "");
	sqlite3_bind_int64(msg_st, 4, (sqlite3_int64)env->size);
	queue_bind_text(msg_st, 5, env->envid);
	sqlite3_bind_int(msg_st, 6, (int)env->ret);
	queue_bind_text(msg_st, 7, env->helo);
	queue_bind_text(msg_st, 8, env->client_ip);
	queue_bind_text(msg_st, 9, env->auth_user);
	sqlite3_bind_int(msg_st, 10, (int)env->body_type);
	sqlite3_bind_int(msg_st, 11, env->smtputf8 ? 1 : 0);
	queue_bind_text(msg_st, 12, queue_state_name(env->state));
	queue_bind_text(msg_st, 13, env->headers);
	if (sqlite3_step(msg_st) != SQLITE_DONE)
		return queue_db_error(q, error_r, "insert message");
	for (size_t i = 0; i < env->rcpt_count; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];
		sqlite3_reset(rcpt_st);
		sqlite3_clear_bindings(rcpt_st);
		queue_bind_text(rcpt_st, 1, env->id);
		sqlite3_bind_int64(rcpt_st, 2, (sqlite3_int64)i);
		queue_bind_text(rcpt_st, 3, r->address != NULL ? r->address : "");
		queue_bind_text(rcpt_st, 4, r->orcpt);
		sqlite3_bind_int(rcpt_st, 5, (int)r->notify);
		queue_bind_text(rcpt_st, 6, queue_rcpt_kind_name(r->kind));
		queue_bind_text(rcpt_st, 7, r->target != NULL ? r->target : "");
		queue_bind_text(rcpt_st, 8, r->folder);
		sqlite3_bind_int64(rcpt_st, 9, (sqlite3_int64)r->next_attempt);
		if (sqlite3_step(rcpt_st) != SQLITE_DONE)
			return queue_db_error(q, error_r, "insert recipient");
	}
	return 0;
}

/* 1 a message row with this id exists, 0 not, -1 error. */
static int queue_row_exists(struct queue_store *q, const char *id)
{
	sqlite3_stmt *st = queue_prepare(q, "SELECT 1 FROM messages WHERE id = ?", NULL);
	if (st == NULL)
		return -1;
	queue_bind_text(st, 1, id);
	int rc = sqlite3_step(st);
	queue_finalize(q, st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static void queue_item_fail(struct queue_commit_item *it, char *error)
{
	it->result = -1;
	if (it->error == NULL)
		it->error = error;
	else
		free(error);
}

size_t queue_store_commit_batch(struct queue_store *q, struct queue_commit_item *items, size_t n)
{
	time_t now = time(NULL);
	size_t live = 0;

	/* 1. the bodies: checks, then one fdatasync per file */
	for (size_t i = 0; i < n; i++) {
		struct queue_commit_item *it = &items[i];
		struct queue_envelope *env = it->env;
		struct stat st;
		it->result = 0;
		it->error = NULL;
		if (env == NULL || !queue_id_is_valid(env->id)) {
			queue_item_fail(it, xstrdup("queue: commit without a valid ID"));
			continue;
		}
		if (env->rcpt_count == 0) {
			queue_item_fail(it, xstrdup("queue: commit without recipients"));
			continue;
		}
		if (it->fd < 0 || fstat(it->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			queue_item_fail(it, xasprintf("queue: %s: bad spool fd", env->id));
			continue;
		}
		if (env->size != 0 && (uint64_t)st.st_size != env->size) {
			queue_item_fail(it, xasprintf("queue: %s: spool file has %lld bytes, envelope says %llu",
						      env->id, (long long)st.st_size,
						      (unsigned long long)env->size));
			continue;
		}
		env->size = (uint64_t)st.st_size;
		if (env->arrival == 0)
			env->arrival = now;
		/* Start writeback of every file first, so their block allocations land in
		 * one journal transaction and the fdatasyncs below mostly wait on one commit. */
		if (q->sync_method == QUEUE_SYNC_FILES)
			(void)sync_file_range(it->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		live++;
	}
	uint64_t t0 = queue_now_us();
	for (size_t i = 0; i < n && q->sync_method == QUEUE_SYNC_FILES; i++) {
		struct queue_commit_item *it = &items[i];
		if (it->result != 0)
			continue;
		if (queue_fsync_fd(q, it->fd, true) < 0) {
			queue_item_fail(it, xasprintf("queue: fdatasync %s: %s", it->env->id, strerror(errno)));
			live--;
		}
	}

	uint64_t t1 = queue_now_us();
	q->file_sync_us += t1 - t0;

	/* 2. the directory entries of the new files (with SYNCFS: everything at once) */
	if (live > 0) {
		int r;
		if (q->sync_method == QUEUE_SYNC_FS) {
			q->fsyncs++;
			r = syncfs(q->spool_fd);
		} else {
			r = queue_fsync_fd(q, q->spool_fd, false);
		}
		if (r < 0) {
			int e = errno;
			for (size_t i = 0; i < n; i++)
				if (items[i].result == 0)
					queue_item_fail(&items[i], xasprintf("queue: %s %s: %s",
						q->sync_method == QUEUE_SYNC_FS ? "syncfs" : "fsync", q->spool_path,
						strerror(e)));
			live = 0;
		}
	}

	uint64_t t2 = queue_now_us();
	q->dir_sync_us += t2 - t1;

	/* 3. the envelopes, in one transaction (one WAL fsync) */
	if (live > 0) {
		char *error = NULL;
		sqlite3_stmt *msg_st = NULL, *rcpt_st = NULL;
		if (queue_exec_cached(q, "BEGIN IMMEDIATE", &error) == 0 &&
		    (msg_st = queue_prepare(q, "INSERT INTO messages (id, arrival, sender, size, envid, ret,"
					       " helo, client_ip, auth_user, body_type, smtputf8, state, headers)"
					       " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", &error)) != NULL &&
		    (rcpt_st = queue_prepare(q, "INSERT INTO recipients (msg_id, idx, address, orcpt, notify,"
						"  kind, target, folder, next_attempt) VALUES (?,?,?,?,?,?,?,?,?)",
					     &error)) != NULL) {
			for (size_t i = 0; i < n; i++) {
				struct queue_commit_item *it = &items[i];
				if (it->result != 0)
					continue;
				char *e = NULL;
				if (queue_exec_cached(q, "SAVEPOINT env", &e) < 0 ||
				    queue_insert_envelope(q, msg_st, rcpt_st, it->env, &e) < 0) {
					queue_item_fail(it, e);
					(void)sqlite3_exec(q->db, "ROLLBACK TO env; RELEASE env", NULL, NULL, NULL);
					live--;
					continue;
				}
				(void)queue_exec_cached(q, "RELEASE env", NULL);
			}
			queue_finalize(q, msg_st);
			queue_finalize(q, rcpt_st);
			msg_st = rcpt_st = NULL;
			if (live > 0) {
				q->fsyncs++;
				if (queue_exec_cached(q, "COMMIT", &error) < 0)
					live = 0;
			} else {
				queue_rollback(q);
			}
		} else {
			live = 0;
		}
		queue_finalize(q, msg_st);
		queue_finalize(q, rcpt_st);
		if (live == 0) {
			queue_rollback(q);
			for (size_t i = 0; i < n; i++)
				if (items[i].result == 0)
					queue_item_fail(&items[i], xstrdup(error != NULL ? error
									   : "queue: commit failed"));
		}
		free(error);
	}

	q->db_us += queue_now_us() - t2;

	/* 4. results; failed items never were acknowledged: remove their files */
	size_t ok = 0;
	for (size_t i = 0; i < n; i++) {
		struct queue_commit_item *it = &items[i];
		if (it->result == 0) {
			it->result = 1;
			ok++;
		} else if (it->env != NULL && queue_id_is_valid(it->env->id) &&
			   queue_row_exists(q, it->env->id) == 0) {
			/* never unlink the body of a committed message (a duplicate submit) */
			(void)unlinkat(q->spool_fd, it->env->id, 0);
		}
		if (it->fd >= 0)
			close(it->fd);
		it->fd = -1;
	}
	return ok;
}

/* ---- recovery ---- */

int queue_store_recover(struct queue_store *q, struct queue_recover_stats *stats_r, char **error_r)
{
	struct queue_recover_stats stats = { 0 };
	int dfd = dup(q->spool_fd);
	DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
	if (d == NULL) {
		queue_set_error(error_r, "queue: opendir %s: %s", q->spool_path, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return -1;
	}
	rewinddir(d);
	struct dirent *de;
	int ret = 0;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char qbuf[128];
		if (!queue_id_is_valid(de->d_name)) {
			log_warn("event=queue_recover_ignored path=%s/%s", q->spool_path,
				 log_q(qbuf, sizeof(qbuf), de->d_name));
			stats.ignored++;
			continue;
		}
		int exists = queue_row_exists(q, de->d_name);
		if (exists < 0) {
			ret = queue_db_error(q, error_r, "recover");
			break;
		}
		if (exists == 0) {
			if (unlinkat(q->spool_fd, de->d_name, 0) < 0 && errno != ENOENT) {
				queue_set_error(error_r, "queue: unlink %s/%s: %s", q->spool_path, de->d_name,
						strerror(errno));
				ret = -1;
				break;
			}
			log_info("event=queue_orphan_removed id=%s", de->d_name);
			stats.orphans_removed++;
		}
	}
	closedir(d);
	if (ret < 0)
		return -1;

	sqlite3_stmt *st = queue_prepare(q, "SELECT id, size FROM messages", error_r);
	if (st == NULL)
		return -1;
	struct queue_bad { char *id; const char *reason; } *bad = NULL;
	size_t bad_count = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(st, 0);
		uint64_t size = (uint64_t)sqlite3_column_int64(st, 1);
		stats.messages++;
		struct stat sb;
		if (id == NULL || !queue_id_is_valid(id))
			continue;
		const char *reason;
		if (fstatat(q->spool_fd, id, &sb, 0) < 0) {
			reason = "spool file missing";
			stats.missing_spool++;
		} else if ((uint64_t)sb.st_size != size) {
			reason = "spool file size mismatch";
			stats.bad_size++;
		} else {
			continue;
		}
		log_warn("event=queue_spool_damaged id=%s error=\"%s; put on hold\"", id, reason);
		bad = xreallocarray(bad, bad_count + 1, sizeof(*bad));
		bad[bad_count].id = xstrdup(id);
		bad[bad_count++].reason = reason;
	}
	if (rc != SQLITE_DONE)
		ret = queue_db_error(q, error_r, "recover scan");
	queue_finalize(q, st);
	for (size_t i = 0; i < bad_count && ret == 0; i++) {
		st = queue_prepare(q, "UPDATE messages SET state = 'hold' WHERE id = ?1", error_r);
		sqlite3_stmt *st2 = queue_prepare(q, "UPDATE recipients SET last_error = ?2"
						     " WHERE msg_id = ?1 AND status = 'pending'", error_r);
		if (st == NULL || st2 == NULL) {
			ret = -1;
		} else {
			queue_bind_text(st, 1, bad[i].id);
			queue_bind_text(st2, 1, bad[i].id);
			queue_bind_text(st2, 2, bad[i].reason);
			if (sqlite3_step(st) != SQLITE_DONE || sqlite3_step(st2) != SQLITE_DONE)
				ret = queue_db_error(q, error_r, "recover hold");
		}
		queue_finalize(q, st);
		queue_finalize(q, st2);
	}
	for (size_t i = 0; i < bad_count; i++)
		free(bad[i].id);
	free(bad);
	if (stats_r != NULL)
		*stats_r = stats;
	return ret;
}

/* ---- scheduler ---- */

struct queue_due_row {
	char id[QUEUE_ID_SIZE];
	struct queue_due due;
	char *target;
	char *address;
};

int queue_store_due(struct queue_store *q, time_t now, unsigned limit, queue_due_cb *cb, void *ctx,
		    char **error_r)
{
	sqlite3_stmt *st = queue_prepare(q,
		"SELECT r.msg_id, r.idx, r.kind, r.target, r.address, r.attempts, r.next_attempt, m.arrival,"
		" m.bounce FROM recipients r JOIN messages m ON m.id = r.msg_id"
		" WHERE r.status = 'pending' AND r.next_attempt <= ?1 AND m.state = 'active'"
		" ORDER BY r.next_attempt, r.msg_id, r.idx LIMIT ?2", error_r);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)now);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
	struct queue_due_row *rows = NULL;
	size_t count = 0, alloc = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(st, 0);
		if (id == NULL || !queue_id_is_valid(id))
			continue;
		if (count == alloc) {
			alloc = alloc == 0 ? 16 : alloc * 2;
			rows = xreallocarray(rows, alloc, sizeof(*rows));
		}
		struct queue_due_row *r = &rows[count++];
		memcpy(r->id, id, QUEUE_ID_SIZE);
		const char *kind = (const char *)sqlite3_column_text(st, 2);
		const char *target = (const char *)sqlite3_column_text(st, 3);
		const char *address = (const char *)sqlite3_column_text(st, 4);
		r->target = xstrdup(target != NULL ? target : "");
		r->address = xstrdup(address != NULL ? address : "");
		r->due = (struct queue_due){
			.idx = (unsigned)sqlite3_column_int64(st, 1),
			.kind = QUEUE_RCPT_OTHER,
			.attempts = (unsigned)sqlite3_column_int64(st, 5),
			.next_attempt = (time_t)sqlite3_column_int64(st, 6),
			.arrival = (time_t)sqlite3_column_int64(st, 7),
			.bounce_requested = sqlite3_column_int(st, 8) != 0,
		};
		(void)queue_rcpt_kind_parse(kind, &r->due.kind);
	}
	int ret = (int)count;
	if (rc != SQLITE_DONE)
		ret = queue_db_error(q, error_r, "due");
	queue_finalize(q, st);
	for (size_t i = 0; i < count; i++) {
		if (ret >= 0) {
			rows[i].due.id = rows[i].id;
			rows[i].due.target = rows[i].target;
			rows[i].due.address = rows[i].address;
			cb(ctx, &rows[i].due);
		}
		free(rows[i].target);
		free(rows[i].address);
	}
	free(rows);
	return ret;
}

int queue_store_changed(struct queue_store *q, char **error_r)
{
	sqlite3_stmt *st = queue_prepare(q, "PRAGMA data_version", error_r);
	if (st == NULL)
		return -1;
	int rc = sqlite3_step(st);
	int64_t v = rc == SQLITE_ROW ? (int64_t)sqlite3_column_int64(st, 0) : -1;
	queue_finalize(q, st);
	if (v < 0)
		return queue_db_error(q, error_r, "data_version");
	int changed = v != q->data_version;
	q->data_version = v;
	return changed;
}

int queue_store_next_due_time(struct queue_store *q, time_t *next_r, char **error_r)
{
	sqlite3_stmt *st = queue_prepare(q,
		"SELECT MIN(r.next_attempt) FROM recipients r JOIN messages m ON m.id = r.msg_id"
		" WHERE r.status = 'pending' AND m.state = 'active'", error_r);
	if (st == NULL)
		return -1;
	int ret;
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		ret = queue_db_error(q, error_r, "next due");
	} else if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
		ret = 0;
	} else {
		*next_r = (time_t)sqlite3_column_int64(st, 0);
		ret = 1;
	}
	queue_finalize(q, st);
	return ret;
}

/* Delete the message row in the open transaction. -1 on error. */
static int queue_delete_row(struct queue_store *q, const char *id, char **error_r)
{
	sqlite3_stmt *st = queue_prepare(q, "DELETE FROM recipients WHERE msg_id = ?1", error_r);
	if (st == NULL)
		return -1;
	queue_bind_text(st, 1, id);
	int rc = sqlite3_step(st);
	queue_finalize(q, st);
	if (rc != SQLITE_DONE)
		return queue_db_error(q, error_r, "delete recipients");
	st = queue_prepare(q, "DELETE FROM messages WHERE id = ?1", error_r);
	if (st == NULL)
		return -1;
	queue_bind_text(st, 1, id);
	rc = sqlite3_step(st);
	queue_finalize(q, st);
	if (rc != SQLITE_DONE)
		return queue_db_error(q, error_r, "delete message");
	return sqlite3_changes(q->db) > 0 ? 1 : 0;
}

static void queue_unlink_spool(struct queue_store *q, const char *id)
{
	if (unlinkat(q->spool_fd, id, 0) < 0 && errno != ENOENT)
		log_warn("event=queue_unlink_failed id=%s error=\"%s\"", id, strerror(errno));
}

/* One update inside the open transaction: 1 recorded, 0 no such pending recipient, -1 error. */
static int queue_rcpt_update_one(struct queue_store *q, struct queue_rcpt_update *u, time_t now,
				 char **error_r)
{
	u->ret = 0;
	u->finished = false;
	if (!queue_id_is_valid(u->id))
		return 0;
	const char *status = u->result == QUEUE_RESULT_DONE ? "done"
			     : u->result == QUEUE_RESULT_FAILED ? "failed"
			     : u->result == QUEUE_RESULT_BOUNCED ? "bounced" : "pending";
	sqlite3_stmt *st = queue_prepare(q,
		"UPDATE recipients SET status = ?1, attempts = attempts + 1, last_error = ?2,"
		" last_attempt = ?3, next_attempt = CASE WHEN ?1 = 'pending' THEN ?4 ELSE next_attempt END"
		" WHERE msg_id = ?5 AND idx = ?6 AND status = 'pending'", error_r);
	if (st == NULL)
		return -1;
	queue_bind_text(st, 1, status);
	queue_bind_text(st, 2, u->error_text);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)now);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)u->next_attempt);
	queue_bind_text(st, 5, u->id);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)u->idx);
	int rc = sqlite3_step(st);
	queue_finalize(q, st);
	if (rc != SQLITE_DONE)
		return queue_db_error(q, error_r, "update recipient");
	if (sqlite3_changes(q->db) == 0)
		return 0;
	u->ret = 1;
	if (u->result == QUEUE_RESULT_DEFERRED)
		return 1;
	st = queue_prepare(q, "SELECT 1 FROM recipients WHERE msg_id = ?1 AND status = 'pending' LIMIT 1",
			   error_r);
	if (st == NULL)
		return -1;
	queue_bind_text(st, 1, u->id);
	rc = sqlite3_step(st);
	queue_finalize(q, st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return queue_db_error(q, error_r, "pending check");
	if (rc == SQLITE_DONE) {
		if (queue_delete_row(q, u->id, error_r) < 0)
			return -1;
		u->finished = true;
	}
	return 1;
}

int queue_store_rcpt_results(struct queue_store *q, struct queue_rcpt_update *updates, size_t n,
			     char **error_r)
{
	for (size_t i = 0; i < n; i++) {
		updates[i].ret = 0;
		updates[i].finished = false;
	}
	if (n == 0)
		return 1;
	if (queue_exec_cached(q, "BEGIN IMMEDIATE", error_r) < 0)
		return -1;
	time_t now = time(NULL);
	for (size_t i = 0; i < n; i++) {
		if (queue_rcpt_update_one(q, &updates[i], now, error_r) < 0)
			goto fail;
	}
	q->fsyncs++;
	if (queue_exec_cached(q, "COMMIT", error_r) < 0)
		goto fail;
	/* DB first, then the file: a crash in between leaves an orphan that recovery removes. */
	for (size_t i = 0; i < n; i++)
		if (updates[i].finished)
			queue_unlink_spool(q, updates[i].id);
	return 1;
fail:
	queue_rollback(q);
	for (size_t i = 0; i < n; i++) {
		updates[i].ret = -1;
		updates[i].finished = false;
	}
	return -1;
}

int queue_store_rcpt_result(struct queue_store *q, const char *id, unsigned idx,
			    enum queue_result result, const char *error_text, time_t next_attempt,
			    bool *finished_r, char **error_r)
{
	struct queue_rcpt_update u = {
		.id = id, .idx = idx, .result = result, .error_text = error_text,
		.next_attempt = next_attempt,
	};
	int ret = queue_store_rcpt_results(q, &u, 1, error_r);
	if (finished_r != NULL)
		*finished_r = u.finished;
	return ret < 0 ? -1 : u.ret;
}

static char *queue_column_strdup(sqlite3_stmt *st, int col)
{
	const char *s = (const char *)sqlite3_column_text(st, col);
	return s == NULL ? NULL : xstrdup(s);
}

int queue_store_get(struct queue_store *q, const char *id, struct queue_envelope **env_r,
		    char **error_r)
{
	*env_r = NULL;
	if (!queue_id_is_valid(id))
		return 0;
	sqlite3_stmt *st = queue_prepare(q,
		"SELECT arrival, sender, size, envid, ret, helo, client_ip, auth_user, body_type,"
		" smtputf8, state, bounce, headers FROM messages WHERE id = ?1", error_r);
	if (st == NULL)
		return -1;
	queue_bind_text(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		queue_finalize(q, st);
		return rc == SQLITE_DONE ? 0 : queue_db_error(q, error_r, "get");
	}
	const char *sender = (const char *)sqlite3_column_text(st, 1);
	struct queue_envelope *env = queue_envelope_new(sender);
	memcpy(env->id, id, QUEUE_ID_SIZE);
	env->arrival = (time_t)sqlite3_column_int64(st, 0);
	env->size = (uint64_t)sqlite3_column_int64(st, 2);
	env->envid = queue_column_strdup(st, 3);
	env->ret = (enum queue_ret)sqlite3_column_int(st, 4);
	env->helo = queue_column_strdup(st, 5);
	env->client_ip = queue_column_strdup(st, 6);
	env->auth_user = queue_column_strdup(st, 7);
	env->body_type = (enum queue_body_type)sqlite3_column_int(st, 8);
	env->smtputf8 = sqlite3_column_int(st, 9) != 0;
	(void)queue_state_parse((const char *)sqlite3_column_text(st, 10), &env->state);
	env->bounce_requested = sqlite3_column_int(st, 11) != 0;
	env->headers = queue_column_strdup(st, 12);
	queue_finalize(q, st);

	st = queue_prepare(q,
		"SELECT idx, address, orcpt, notify, kind, target, folder, status, attempts,"
		" next_attempt, last_error, last_attempt FROM recipients WHERE msg_id = ?1 ORDER BY idx",
		error_r);
	if (st == NULL) {
		queue_envelope_free(&env);
		return -1;
	}
	queue_bind_text(st, 1, id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		enum queue_rcpt_kind kind = QUEUE_RCPT_OTHER;
		(void)queue_rcpt_kind_parse((const char *)sqlite3_column_text(st, 4), &kind);
		struct queue_rcpt *r = queue_envelope_add_rcpt(env,
			(const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2),
			(unsigned)sqlite3_column_int(st, 3), kind, (const char *)sqlite3_column_text(st, 5),
			(const char *)sqlite3_column_text(st, 6));
		if (r == NULL)
			break;
		r->idx = (unsigned)sqlite3_column_int64(st, 0);
		(void)queue_rcpt_status_parse((const char *)sqlite3_column_text(st, 7), &r->status);
		r->attempts = (unsigned)sqlite3_column_int64(st, 8);
		r->next_attempt = (time_t)sqlite3_column_int64(st, 9);
		r->last_error = queue_column_strdup(st, 10);
		r->last_attempt = (time_t)sqlite3_column_int64(st, 11);
	}
	queue_finalize(q, st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		queue_envelope_free(&env);
		return queue_db_error(q, error_r, "get recipients");
	}
	*env_r = env;
	return 1;
}

int queue_store_set_state(struct queue_store *q, const char *id, enum queue_state state,
			  char **error_r)
{
	if (!queue_id_is_valid(id))
		return 0;
	sqlite3_stmt *st = queue_prepare(q, "UPDATE messages SET state = ?1 WHERE id = ?2", error_r);
	if (st == NULL)
		return -1;
	queue_bind_text(st, 1, queue_state_name(state));
	queue_bind_text(st, 2, id);
	int rc = sqlite3_step(st);
	queue_finalize(q, st);
	if (rc != SQLITE_DONE)
		return queue_db_error(q, error_r, "set state");
	q->fsyncs++;
	return sqlite3_changes(q->db) > 0 ? 1 : 0;
}

int queue_store_delete(struct queue_store *q, const char *id, char **error_r)
{
	if (!queue_id_is_valid(id))
		return 0;
	if (queue_exec(q, "BEGIN IMMEDIATE", error_r) < 0)
		return -1;
	int ret = queue_delete_row(q, id, error_r);
	if (ret < 0 || (q->fsyncs++, queue_exec(q, "COMMIT", error_r) < 0)) {
		queue_rollback(q);
		return -1;
	}
	if (ret > 0)
		queue_unlink_spool(q, id);
	return ret;
}

int queue_store_flush(struct queue_store *q, const char *id, time_t now, char **error_r)
{
	if (id != NULL && !queue_id_is_valid(id))
		return 0;
	if (queue_exec(q, "BEGIN IMMEDIATE", error_r) < 0)
		return -1;
	sqlite3_stmt *st = queue_prepare(q,
		"SELECT COUNT(*) FROM messages WHERE ?1 IS NULL OR id = ?1", error_r);
	if (st == NULL)
		goto fail;
	queue_bind_text(st, 1, id);
	int rc = sqlite3_step(st);
	int count = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
	queue_finalize(q, st);
	if (count < 0) {
		queue_db_error(q, error_r, "flush");
		goto fail;
	}
	st = queue_prepare(q, "UPDATE recipients SET next_attempt = ?2"
			      " WHERE status = 'pending' AND next_attempt > ?2 AND (?1 IS NULL OR msg_id = ?1)",
			   error_r);
	if (st == NULL)
		goto fail;
	queue_bind_text(st, 1, id);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)now);
	rc = sqlite3_step(st);
	queue_finalize(q, st);
	if (rc != SQLITE_DONE) {
		queue_db_error(q, error_r, "flush");
		goto fail;
	}
	q->fsyncs++;
	if (queue_exec(q, "COMMIT", error_r) < 0)
		goto fail;
	return count;
fail:
	queue_rollback(q);
	return -1;
}

int queue_store_bounce(struct queue_store *q, const char *id, time_t now, char **error_r)
{
	if (!queue_id_is_valid(id))
		return 0;
	if (queue_exec(q, "BEGIN IMMEDIATE", error_r) < 0)
		return -1;
	sqlite3_stmt *st = queue_prepare(q, "UPDATE messages SET bounce = 1, state = 'active' WHERE id = ?1",
					 error_r);
	if (st == NULL)
		goto fail;
	queue_bind_text(st, 1, id);
	int rc = sqlite3_step(st);
	queue_finalize(q, st);
	if (rc != SQLITE_DONE) {
		queue_db_error(q, error_r, "bounce");
		goto fail;
	}
	int found = sqlite3_changes(q->db) > 0;
	st = queue_prepare(q, "UPDATE recipients SET next_attempt = ?2"
			      " WHERE msg_id = ?1 AND status = 'pending' AND next_attempt > ?2", error_r);
	if (st == NULL)
		goto fail;
	queue_bind_text(st, 1, id);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)now);
	rc = sqlite3_step(st);
	queue_finalize(q, st);
	if (rc != SQLITE_DONE) {
		queue_db_error(q, error_r, "bounce");
		goto fail;
	}
	q->fsyncs++;
	if (queue_exec(q, "COMMIT", error_r) < 0)
		goto fail;
	return found;
fail:
	queue_rollback(q);
	return -1;
}

int queue_store_list(struct queue_store *q, queue_list_cb *cb, void *ctx, char **error_r)
{
	sqlite3_stmt *st = queue_prepare(q,
		"SELECT m.id, m.arrival, m.size, m.sender, m.state,"
		" (SELECT COUNT(*) FROM recipients r WHERE r.msg_id = m.id),"
		" (SELECT COUNT(*) FROM recipients r WHERE r.msg_id = m.id AND r.status = 'pending'),"
		" (SELECT MIN(next_attempt) FROM recipients r WHERE r.msg_id = m.id AND r.status = 'pending'),"
		" (SELECT last_error FROM recipients r WHERE r.msg_id = m.id AND r.last_error IS NOT NULL"
		"   ORDER BY last_attempt DESC LIMIT 1),"
		" (SELECT group_concat(address, ',') FROM (SELECT address FROM recipients r"
		"   WHERE r.msg_id = m.id AND r.status = 'pending' ORDER BY idx LIMIT 10))"
		" FROM messages m ORDER BY m.id", error_r);
	if (st == NULL)
		return -1;
	int count = 0, rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct queue_list_entry e = {
			.id = (const char *)sqlite3_column_text(st, 0),
			.arrival = (time_t)sqlite3_column_int64(st, 1),
			.size = (uint64_t)sqlite3_column_int64(st, 2),
			.sender = (const char *)sqlite3_column_text(st, 3),
			.rcpt_count = (unsigned)sqlite3_column_int64(st, 5),
			.pending_count = (unsigned)sqlite3_column_int64(st, 6),
			.next_attempt = (time_t)sqlite3_column_int64(st, 7),
			.last_error = (const char *)sqlite3_column_text(st, 8),
			.pending_rcpts = (const char *)sqlite3_column_text(st, 9),
		};
		if (e.pending_rcpts == NULL)
			e.pending_rcpts = "";
		if (e.id == NULL)
			continue;
		if (e.sender == NULL)
			e.sender = "";
		(void)queue_state_parse((const char *)sqlite3_column_text(st, 4), &e.state);
		cb(ctx, &e);
		count++;
	}
	if (rc != SQLITE_DONE)
		count = queue_db_error(q, error_r, "list");
	queue_finalize(q, st);
	return count;
}

int queue_store_stats(struct queue_store *q, struct queue_store_stats *stats_r, char **error_r)
{
	memset(stats_r, 0, sizeof(*stats_r));
	sqlite3_stmt *st = queue_prepare(q,
		"SELECT COUNT(*), COALESCE(SUM(state = 'active'), 0), COALESCE(SUM(state = 'hold'), 0),"
		" COALESCE(SUM(state = 'quarantine'), 0), COALESCE(SUM(size), 0), COALESCE(MIN(arrival), 0),"
		" (SELECT COUNT(*) FROM recipients WHERE status = 'pending') FROM messages", error_r);
	if (st == NULL)
		return -1;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		stats_r->messages = (unsigned)sqlite3_column_int64(st, 0);
		stats_r->active = (unsigned)sqlite3_column_int64(st, 1);
		stats_r->hold = (unsigned)sqlite3_column_int64(st, 2);
		stats_r->quarantine = (unsigned)sqlite3_column_int64(st, 3);
		stats_r->bytes = (uint64_t)sqlite3_column_int64(st, 4);
		stats_r->oldest_arrival = (time_t)sqlite3_column_int64(st, 5);
		stats_r->rcpts_pending = (unsigned)sqlite3_column_int64(st, 6);
	}
	queue_finalize(q, st);
	return rc == SQLITE_ROW ? 1 : queue_db_error(q, error_r, "stats");
}

unsigned queue_retry_delay(unsigned attempts, unsigned retry_min, unsigned retry_max)
{
	if (retry_max < retry_min)
		retry_max = retry_min;
	uint64_t d = retry_min;
	if (d == 0)
		return 0;
	for (unsigned i = 1; i < attempts && d < retry_max; i++)
		d *= 2;
	return d > retry_max ? retry_max : (unsigned)d;
}
