#include "lib-mailbox/mbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "lib-mailbox/maildir.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#define MBOX_STMT_CACHE 40

struct mbox {
	char *path;
	sqlite3 *db;
	uint32_t uidvalidity;
	bool scanned;
	struct timespec mt_new, mt_cur; /* directory mtimes seen by the last scan */
	struct timespec scanned_at;     /* when that scan started */
	bool verify;                    /* mt_cur was advanced past our own change: scan once more */
	/* handles are shared by the sessions of a process (one event loop, no interleaved
	 * transactions): refs counts the users; dev/ino identify the index file it opened */
	unsigned refs;
	dev_t dev;
	ino_t ino;
	struct mbox *next;
	/* prepared statements kept for the life of the handle, keyed by their SQL text's address
	 * (every caller passes a string literal): FETCH of 10,000 messages no longer parses SQL
	 * 20,000 times */
	struct {
		const char *sql;
		sqlite3_stmt *st;
	} stmts[MBOX_STMT_CACHE];
};

static struct mbox *open_boxes;

static bool index_identity(const char *path, dev_t *dev, ino_t *ino)
{
	char *f = xasprintf("%s/%s", path, MBOX_INDEX_NAME);
	struct stat st;
	int r = stat(f, &st);
	free(f);
	if (r < 0)
		return false;
	*dev = st.st_dev;
	*ino = st.st_ino;
	return true;
}

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS msg(uid INTEGER PRIMARY KEY, base TEXT NOT NULL UNIQUE, fname TEXT NOT NULL,"
	" flags INTEGER NOT NULL, keywords TEXT NOT NULL DEFAULT '', modseq INTEGER NOT NULL,"
	" idate INTEGER NOT NULL, size INTEGER NOT NULL, cache_env TEXT, cache_bs TEXT);"
	"CREATE TABLE IF NOT EXISTS expunged(uid INTEGER PRIMARY KEY, modseq INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS msg_modseq ON msg(modseq);"
	/* ENVELOPE/BODYSTRUCTURE strings live in their own table (msg.cache_* are left empty):
	 * msg rows stay ~100 bytes, so the whole-table reads of SELECT (UIDs, counters,
	 * keywords) and of every sync touch a fifth of the pages */
	"CREATE TABLE IF NOT EXISTS cache(uid INTEGER PRIMARY KEY, env TEXT, bs TEXT);"
	"CREATE TRIGGER IF NOT EXISTS msg_cache_gone AFTER DELETE ON msg BEGIN"
	" DELETE FROM cache WHERE uid = old.uid; END;";

static int exec(struct mbox *mb, const char *sql)
{
	char *err = NULL;
	if (sqlite3_exec(mb->db, sql, NULL, NULL, &err) != SQLITE_OK) {
		log_warn("event=mbox_sql_error path=%s error=\"%s\"", mb->path, err ? err : "?");
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

/*
 * A statement for sql (a string literal): the handle's cached one when it is not in use,
 * else a fresh one. Give it back with unprep() (reset, or finalized when not cached).
 */
static sqlite3_stmt *prep(struct mbox *mb, const char *sql)
{
	size_t free_slot = MBOX_STMT_CACHE;
	for (size_t i = 0; i < MBOX_STMT_CACHE; i++) {
		if (mb->stmts[i].sql == sql) {
			if (!sqlite3_stmt_busy(mb->stmts[i].st)) {
				sqlite3_clear_bindings(mb->stmts[i].st);
				return mb->stmts[i].st;
			}
			free_slot = MBOX_STMT_CACHE; /* in use (nested): a one-off statement */
			break;
		}
		if (mb->stmts[i].sql == NULL && free_slot == MBOX_STMT_CACHE)
			free_slot = i;
	}
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v3(mb->db, sql, -1, free_slot < MBOX_STMT_CACHE ? SQLITE_PREPARE_PERSISTENT : 0, &st,
	                       NULL) != SQLITE_OK) {
		log_warn("event=mbox_sql_error path=%s error=\"%s\"", mb->path, sqlite3_errmsg(mb->db));
		sqlite3_finalize(st);
		return NULL;
	}
	if (free_slot < MBOX_STMT_CACHE) {
		mb->stmts[free_slot].sql = sql;
		mb->stmts[free_slot].st = st;
	}
	return st;
}

static void unprep(struct mbox *mb, sqlite3_stmt *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i < MBOX_STMT_CACHE && mb->stmts[i].sql != NULL; i++) {
		if (mb->stmts[i].st == st) {
			sqlite3_reset(st);
			return;
		}
	}
	unprep(mb, st);
}

/* Finalize every cached statement (before the connection closes). */
static void stmts_drop(struct mbox *mb)
{
	for (size_t i = 0; i < MBOX_STMT_CACHE; i++) {
		sqlite3_finalize(mb->stmts[i].st);
		mb->stmts[i].sql = NULL;
		mb->stmts[i].st = NULL;
	}
}

static int64_t meta_get(struct mbox *mb, const char *k, int64_t def)
{
	sqlite3_stmt *st = prep(mb, "SELECT v FROM meta WHERE k=?");
	if (st == NULL)
		return def;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	int64_t v = def;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	unprep(mb, st);
	return v;
}

static int meta_set(struct mbox *mb, const char *k, int64_t v)
{
	sqlite3_stmt *st = prep(mb, "INSERT OR REPLACE INTO meta(k, v) VALUES(?, ?)");
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, v);
	int r = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	unprep(mb, st);
	return r;
}

static int db_open(struct mbox *mb)
{
	char *file = xasprintf("%s/%s", mb->path, MBOX_INDEX_NAME);
	/* a handle is only ever used by its process's event loop thread (the work pool touches
	 * spool files only): no per-call connection mutex (every sqlite3_column_* took it) */
	int rc = sqlite3_open_v2(file, &mb->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	free(file);
	if (rc != SQLITE_OK) {
		sqlite3_close(mb->db);
		mb->db = NULL;
		return -1;
	}
	sqlite3_busy_timeout(mb->db, 10000);
	/* one connection per selected mailbox per session: keep its memory small (the default
	 * lookaside alone is ~120 KB) */
	sqlite3_db_config(mb->db, SQLITE_DBCONFIG_LOOKASIDE, NULL, 64, 16);
	if (exec(mb, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-32;") < 0 ||
	    exec(mb, schema) < 0)
		return -1;
	if (exec(mb, "BEGIN IMMEDIATE") < 0)
		return -1;
	int64_t v = meta_get(mb, "uidvalidity", 0);
	if (v == 0) {
		/* a folder deleted and re-created (or an index rebuilt) must not reuse the old
		 * UIDVALIDITY: the clock, but never twice the same value from this process */
		static uint32_t last_validity;
		struct timeval tv;
		gettimeofday(&tv, NULL);
		uint32_t nv = (uint32_t)tv.tv_sec;
		if (nv <= last_validity)
			nv = last_validity + 1;
		last_validity = nv;
		v = (int64_t)nv;
		if (meta_set(mb, "uidvalidity", v) < 0 || meta_set(mb, "uidnext", 1) < 0 ||
		    meta_set(mb, "highestmodseq", 1) < 0 || meta_set(mb, "recent", 1) < 0) {
			exec(mb, "ROLLBACK");
			return -1;
		}
	}
	/* an index written before the cache table existed: move its strings over once */
	int moved = 0;
	if (meta_get(mb, "cache_table", 0) == 0) {
		if (exec(mb, "INSERT OR REPLACE INTO cache(uid, env, bs) SELECT uid, cache_env, cache_bs FROM msg"
		             " WHERE cache_env IS NOT NULL OR cache_bs IS NOT NULL;"
		             "UPDATE msg SET cache_env = NULL, cache_bs = NULL"
		             " WHERE cache_env IS NOT NULL OR cache_bs IS NOT NULL;") < 0) {
			exec(mb, "ROLLBACK");
			return -1;
		}
		moved = sqlite3_changes(mb->db);
		if (meta_set(mb, "cache_table", 1) < 0) {
			exec(mb, "ROLLBACK");
			return -1;
		}
	}
	if (exec(mb, "COMMIT") < 0)
		return -1;
	/* the emptied msg pages are only given back by a rewrite (best effort: another
	 * process's open read transaction makes it fail, which costs only speed) */
	if (moved > 0)
		exec(mb, "VACUUM");
	mb->uidvalidity = (uint32_t)v;
	return 0;
}

struct mbox *mbox_open(const char *path, const char **error_r)
{
	struct stat st;
	char *cur = xasprintf("%s/cur", path);
	int r = stat(cur, &st);
	free(cur);
	if (r < 0) {
		*error_r = "[NONEXISTENT] No such mailbox";
		return NULL;
	}
	dev_t dev;
	ino_t ino;
	if (index_identity(path, &dev, &ino)) {
		for (struct mbox *o = open_boxes; o != NULL; o = o->next) {
			if (o->dev == dev && o->ino == ino && strcmp(o->path, path) == 0) {
				if (mbox_sync(o, false, error_r) < 0)
					return NULL;
				o->refs++;
				return o;
			}
		}
	}
	/* folders made by other programs may lack new/ or tmp/ */
	static const char *const subs[] = { "new", "tmp" };
	for (size_t i = 0; i < 2; i++) {
		char *d = xasprintf("%s/%s", path, subs[i]);
		mkdir(d, 0700);
		free(d);
	}
	struct mbox *mb = xcalloc(1, sizeof(*mb));
	mb->path = xstrdup(path);
	mb->refs = 1;
	int dr;
	/* another process creating the same index at this moment (WAL set-up, schema) can make
	 * the open fail with "locked": that is no reason to move its index aside */
	for (int tries = 0; (dr = db_open(mb)) < 0 && tries < 50 && mb->db != NULL &&
	                    ((sqlite3_errcode(mb->db) & 0xff) == SQLITE_BUSY ||
	                     (sqlite3_errcode(mb->db) & 0xff) == SQLITE_LOCKED);
	     tries++) {
		stmts_drop(mb);
		sqlite3_close(mb->db);
		mb->db = NULL;
		usleep(20 * 1000);
	}
	if (dr < 0) {
		/* unreadable index: move it aside and rebuild from the Maildir */
		stmts_drop(mb);
		sqlite3_close(mb->db);
		mb->db = NULL;
		static const char *const sfx[] = { "", "-wal", "-shm" };
		for (size_t i = 0; i < 3; i++) {
			char *f = xasprintf("%s/%s%s", path, MBOX_INDEX_NAME, sfx[i]);
			char *t = xasprintf("%s/%s.broken%s", path, MBOX_INDEX_NAME, sfx[i]);
			rename(f, t);
			free(f);
			free(t);
		}
		log_warn("event=mbox_index_rebuild path=%s", path);
		if (db_open(mb) < 0) {
			*error_r = "[SERVERBUG] Cannot open mailbox index";
			mbox_close(&mb);
			return NULL;
		}
	}
	if (mbox_sync(mb, false, error_r) < 0) {
		mbox_close(&mb);
		return NULL;
	}
	if (index_identity(path, &mb->dev, &mb->ino)) {
		mb->next = open_boxes;
		open_boxes = mb;
	}
	return mb;
}

void mbox_close(struct mbox **mbp)
{
	struct mbox *mb = *mbp;
	if (mb == NULL)
		return;
	*mbp = NULL;
	if (--mb->refs > 0)
		return;
	for (struct mbox **pp = &open_boxes; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == mb) {
			*pp = mb->next;
			break;
		}
	}
	stmts_drop(mb);
	if (mb->db != NULL)
		sqlite3_close(mb->db);
	free(mb->path);
	free(mb);
}

const char *mbox_path(const struct mbox *mb)
{
	return mb->path;
}

uint32_t mbox_uidvalidity(const struct mbox *mb)
{
	return mb->uidvalidity;
}

/* ---- sync ---- */

struct disk_ent {
	char *name;   /* "cur/xxx:2,S" or "new/xxx" */
	char *base;
};

static int ent_cmp(const void *a, const void *b)
{
	return strverscmp(((const struct disk_ent *)a)->base, ((const struct disk_ent *)b)->base);
}

static int scan_dir(const char *path, const char *sub, struct disk_ent **ents, size_t *count, size_t *cap)
{
	char *dir = xasprintf("%s/%s", path, sub);
	DIR *d = opendir(dir);
	free(dir);
	if (d == NULL)
		return -1;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (*count == *cap) {
			*cap = *cap ? *cap * 2 : 256;
			*ents = xreallocarray(*ents, *cap, sizeof(**ents));
		}
		struct disk_ent *e = &(*ents)[(*count)++];
		e->name = xasprintf("%s/%s", sub, de->d_name);
		e->base = xstrndup(de->d_name, maildir_base_len(de->d_name));
	}
	closedir(d);
	return 0;
}

/* Size with CRLF line ends. */
static int file_crlf_size(const char *file, uint64_t *size_r, time_t *mtime_r)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -1;
	}
	*mtime_r = st.st_mtime;
	uint64_t size = 0;
	char buf[16384];
	char prev = 0;
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		const char *end = buf + n, *q;
		for (const char *p = buf; (q = memchr(p, '\n', (size_t)(end - p))) != NULL; p = q + 1)
			if ((q > buf ? q[-1] : prev) != '\r')
				size++;
		prev = buf[n - 1];
		size += (uint64_t)n;
	}
	close(fd);
	*size_r = size;
	return n < 0 ? -1 : 0;
}

static int64_t ms_since(const struct timespec *now, const struct timespec *t)
{
	return (int64_t)(now->tv_sec - t->tv_sec) * 1000 + (now->tv_nsec - t->tv_nsec) / 1000000;
}

static bool ts_eq(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/*
 * Our own renames/unlinks in cur/ change its mtime; rescanning the whole folder after each
 * one makes bulk STOREs quadratic. When cur/ was unchanged since our last scan just before
 * the operation, we take the new mtime as ours and only mark the folder for one verifying
 * scan (which catches a foreign change that landed in the same clock tick) once the burst
 * of our changes is 100 ms old.
 */
static bool cur_mtime(struct mbox *mb, struct timespec *t)
{
	char *d = xasprintf("%s/cur", mb->path);
	struct stat st;
	int r = stat(d, &st);
	free(d);
	if (r < 0)
		return false;
	*t = st.st_mtim;
	return true;
}

static void own_change_end(struct mbox *mb, bool in_sync)
{
	struct timespec t;
	if (in_sync && cur_mtime(mb, &t)) {
		mb->mt_cur = t;
		mb->verify = true;
	}
}

static bool own_change_begin(struct mbox *mb)
{
	struct timespec t;
	return mb->scanned && cur_mtime(mb, &t) && ts_eq(&t, &mb->mt_cur);
}

struct row {
	uint32_t uid;
	char *base;
	char *fname;
	unsigned flags;
};

static int row_cmp(const void *a, const void *b)
{
	return strverscmp(((const struct row *)a)->base, ((const struct row *)b)->base);
}

static int do_scan(struct mbox *mb)
{
	struct disk_ent *ents = NULL;
	size_t count = 0, cap = 0;
	struct row *rows = NULL;
	size_t nrows = 0, rcap = 0;
	int ret = -1;
	if (scan_dir(mb->path, "new", &ents, &count, &cap) < 0 || scan_dir(mb->path, "cur", &ents, &count, &cap) < 0)
		goto out;
	if (count > 0)
		qsort(ents, count, sizeof(*ents), ent_cmp);
	sqlite3_stmt *st = prep(mb, "SELECT uid, base, fname, flags FROM msg");
	if (st == NULL)
		goto out;
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (nrows == rcap) {
			rcap = rcap ? rcap * 2 : 256;
			rows = xreallocarray(rows, rcap, sizeof(*rows));
		}
		struct row *r = &rows[nrows++];
		r->uid = (uint32_t)sqlite3_column_int64(st, 0);
		r->base = xstrdup((const char *)sqlite3_column_text(st, 1));
		r->fname = xstrdup((const char *)sqlite3_column_text(st, 2));
		r->flags = (unsigned)sqlite3_column_int(st, 3);
	}
	unprep(mb, st);
	if (nrows > 0)
		qsort(rows, nrows, sizeof(*rows), row_cmp);

	int64_t uidnext = meta_get(mb, "uidnext", 1);
	int64_t hms = meta_get(mb, "highestmodseq", 1);
	int64_t hms0 = hms, uidnext0 = uidnext;
	sqlite3_stmt *ins = prep(mb, "INSERT INTO msg(uid, base, fname, flags, keywords, modseq, idate, size)"
	                             " VALUES(?, ?, ?, ?, '', ?, ?, ?)");
	sqlite3_stmt *del = prep(mb, "DELETE FROM msg WHERE uid=?");
	sqlite3_stmt *exp = prep(mb, "INSERT OR REPLACE INTO expunged(uid, modseq) VALUES(?, ?)");
	sqlite3_stmt *upd = prep(mb, "UPDATE msg SET fname=?, flags=(flags & ~63) | ?, modseq=? WHERE uid=?");
	sqlite3_stmt *updn = prep(mb, "UPDATE msg SET fname=? WHERE uid=?");
	if (ins == NULL || del == NULL || exp == NULL || upd == NULL || updn == NULL)
		goto fin;
	size_t i = 0, j = 0;
	const char *prev_base = NULL;
	while (i < count || j < nrows) {
		int c;
		if (i >= count)
			c = 1;
		else if (j >= nrows)
			c = -1;
		else
			c = strverscmp(ents[i].base, rows[j].base);
		if (c < 0) {
			struct disk_ent *e = &ents[i++];
			if (prev_base != NULL && strcmp(prev_base, e->base) == 0)
				continue; /* same message in new/ and cur/: keep the first */
			prev_base = e->base;
			char *name = e->name;
			char *moved = NULL;
			if (strncmp(name, "new/", 4) == 0) {
				const char *tail = name + 4;
				moved = strchr(tail, ':') != NULL ? xasprintf("cur/%s", tail) : xasprintf("cur/%s:2,", tail);
				char *from = xasprintf("%s/%s", mb->path, name);
				char *to = xasprintf("%s/%s", mb->path, moved);
				int rr = rename(from, to);
				free(from);
				free(to);
				if (rr < 0) {
					free(moved);
					continue; /* gone meanwhile; the next scan sees it */
				}
				name = moved;
			}
			char *file = xasprintf("%s/%s", mb->path, name);
			uint64_t size;
			time_t mtime;
			int fr = file_crlf_size(file, &size, &mtime);
			free(file);
			if (fr == 0) {
				sqlite3_reset(ins);
				sqlite3_bind_int64(ins, 1, uidnext);
				sqlite3_bind_text(ins, 2, e->base, -1, SQLITE_STATIC);
				sqlite3_bind_text(ins, 3, name, -1, SQLITE_STATIC);
				sqlite3_bind_int(ins, 4, (int)maildir_flags_from_name(name));
				sqlite3_bind_int64(ins, 5, ++hms);
				sqlite3_bind_int64(ins, 6, (int64_t)mtime);
				sqlite3_bind_int64(ins, 7, (int64_t)size);
				if (sqlite3_step(ins) == SQLITE_DONE)
					uidnext++;
			}
			free(moved);
		} else if (c > 0) {
			struct row *r = &rows[j++];
			sqlite3_reset(del);
			sqlite3_bind_int64(del, 1, r->uid);
			sqlite3_step(del);
			sqlite3_reset(exp);
			sqlite3_bind_int64(exp, 1, r->uid);
			sqlite3_bind_int64(exp, 2, ++hms);
			sqlite3_step(exp);
		} else {
			struct disk_ent *e = &ents[i++];
			struct row *r = &rows[j++];
			prev_base = e->base;
			/* skip the duplicate of this base in the other directory */
			while (i < count && strcmp(ents[i].base, e->base) == 0)
				i++;
			char *name = e->name;
			char *moved = NULL;
			if (strncmp(name, "new/", 4) == 0) {
				moved = xasprintf("cur/%s:2,", name + 4);
				char *from = xasprintf("%s/%s", mb->path, name);
				char *to = xasprintf("%s/%s", mb->path, moved);
				if (rename(from, to) == 0)
					name = moved;
				free(from);
				free(to);
			}
			unsigned df = maildir_flags_from_name(name);
			if (df != (r->flags & MAIL_FLAGS_ALL)) {
				sqlite3_reset(upd);
				sqlite3_bind_text(upd, 1, name, -1, SQLITE_STATIC);
				sqlite3_bind_int(upd, 2, (int)df);
				sqlite3_bind_int64(upd, 3, ++hms);
				sqlite3_bind_int64(upd, 4, r->uid);
				sqlite3_step(upd);
			} else if (strcmp(name, r->fname) != 0) {
				sqlite3_reset(updn);
				sqlite3_bind_text(updn, 1, name, -1, SQLITE_STATIC);
				sqlite3_bind_int64(updn, 2, r->uid);
				sqlite3_step(updn);
			}
			free(moved);
		}
	}
	if ((hms != hms0 && meta_set(mb, "highestmodseq", hms) < 0) ||
	    (uidnext != uidnext0 && meta_set(mb, "uidnext", uidnext) < 0))
		goto fin;
	ret = 0;
fin:
	unprep(mb, ins);
	unprep(mb, del);
	unprep(mb, exp);
	unprep(mb, upd);
	unprep(mb, updn);
out:
	for (size_t k = 0; k < count; k++) {
		free(ents[k].name);
		free(ents[k].base);
	}
	free(ents);
	for (size_t k = 0; k < nrows; k++) {
		free(rows[k].base);
		free(rows[k].fname);
	}
	free(rows);
	return ret;
}

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

static struct timespec ns_ts(int64_t v)
{
	struct timespec t = { .tv_sec = (time_t)(v / 1000000000), .tv_nsec = (long)(v % 1000000000) };
	return t;
}

/*
 * What a scan saw (the directory mtimes and when it started) is stored with its result, in
 * the same transaction: a handle opened later (a new session after the last one closed, or
 * another process) skips the scan of 10,000 names when the folder has not changed since.
 */
static int scan_state_save(struct mbox *mb, const struct timespec *at, const struct timespec *mt_new,
                           const struct timespec *mt_cur)
{
	return meta_set(mb, "scan_at", ts_ns(at)) < 0 || meta_set(mb, "scan_mt_new", ts_ns(mt_new)) < 0 ||
	               meta_set(mb, "scan_mt_cur", ts_ns(mt_cur)) < 0
	       ? -1
	       : 0;
}

static void scan_state_load(struct mbox *mb)
{
	int64_t at = meta_get(mb, "scan_at", -1), mn = meta_get(mb, "scan_mt_new", -1),
		mc = meta_get(mb, "scan_mt_cur", -1);
	if (at <= 0 || mn <= 0 || mc <= 0)
		return;
	mb->scanned_at = ns_ts(at);
	mb->mt_new = ns_ts(mn);
	mb->mt_cur = ns_ts(mc);
	mb->verify = false;
	mb->scanned = true;
}

int mbox_sync(struct mbox *mb, bool force, const char **error_r)
{
	struct stat sn, sc;
	struct timespec before;
	clock_gettime(CLOCK_REALTIME, &before);
	char *dn = xasprintf("%s/new", mb->path);
	char *dc = xasprintf("%s/cur", mb->path);
	int r1 = stat(dn, &sn), r2 = stat(dc, &sc);
	free(dn);
	free(dc);
	if (r1 < 0 || r2 < 0) {
		*error_r = "[NONEXISTENT] Mailbox was deleted";
		return -1;
	}
	/* a handle's first sync starts from the last scan of any process (kept in the index) */
	if (!force && !mb->scanned)
		scan_state_load(mb);
	/*
	 * Unchanged mtimes mean nothing happened, unless our last scan ran so soon after the
	 * change it saw that a later change could carry the same (clock-tick granular)
	 * timestamp: then scan again.
	 */
	if (!force && mb->scanned && ts_eq(&sn.st_mtim, &mb->mt_new) && ts_eq(&sc.st_mtim, &mb->mt_cur)) {
		bool new_settled = ms_since(&mb->scanned_at, &sn.st_mtim) > 100;
		bool cur_settled = mb->verify ? ms_since(&before, &sc.st_mtim) <= 100 /* verify once our burst is over */
		                              : ms_since(&mb->scanned_at, &sc.st_mtim) > 100;
		if (new_settled && cur_settled)
			return 0;
	}
	if (exec(mb, "BEGIN IMMEDIATE") < 0) {
		*error_r = "[UNAVAILABLE] Mailbox index busy";
		return -1;
	}
	if (do_scan(mb) < 0 || scan_state_save(mb, &before, &sn.st_mtim, &sc.st_mtim) < 0) {
		exec(mb, "ROLLBACK");
		*error_r = "[SERVERBUG] Mailbox sync failed";
		return -1;
	}
	if (exec(mb, "COMMIT") < 0) {
		exec(mb, "ROLLBACK");
		*error_r = "[SERVERBUG] Mailbox sync failed";
		return -1;
	}
	mb->scanned = true;
	mb->verify = false;
	mb->scanned_at = before;
	mb->mt_new = sn.st_mtim;
	mb->mt_cur = sc.st_mtim;
	return 0;
}

int mbox_get_status(struct mbox *mb, struct mbox_status *s)
{
	memset(s, 0, sizeof(*s));
	sqlite3_stmt *st = prep(mb, "SELECT COUNT(*), SUM((flags & 1) = 0), SUM((flags & 8) != 0), SUM(size),"
	                            " SUM(uid >= (SELECT v FROM meta WHERE k='recent')) FROM msg");
	if (st == NULL)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW) {
		s->messages = (uint32_t)sqlite3_column_int64(st, 0);
		s->unseen = (uint32_t)sqlite3_column_int64(st, 1);
		s->deleted = (uint32_t)sqlite3_column_int64(st, 2);
		s->size = (uint64_t)sqlite3_column_int64(st, 3);
		s->recent = (uint32_t)sqlite3_column_int64(st, 4);
	}
	unprep(mb, st);
	s->uidnext = (uint32_t)meta_get(mb, "uidnext", 1);
	s->highestmodseq = (uint64_t)meta_get(mb, "highestmodseq", 1);
	s->uidvalidity = mb->uidvalidity;
	return 0;
}

uint64_t mbox_highestmodseq(struct mbox *mb)
{
	return (uint64_t)meta_get(mb, "highestmodseq", 1);
}

int mbox_uids(struct mbox *mb, uint32_t **uids_r, size_t *count_r)
{
	sqlite3_stmt *st = prep(mb, "SELECT uid FROM msg ORDER BY uid");
	if (st == NULL)
		return -1;
	size_t count = 0, cap = 64;
	uint32_t *uids = xmalloc(cap * sizeof(*uids));
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (count == cap) {
			cap *= 2;
			uids = xreallocarray(uids, cap, sizeof(*uids));
		}
		uids[count++] = (uint32_t)sqlite3_column_int64(st, 0);
	}
	unprep(mb, st);
	*uids_r = uids;
	*count_r = count;
	return 0;
}

#define MSG_COLS "uid, flags, keywords, modseq, idate, size, fname, base"
#define MSG_COLS_M "m.uid, m.flags, m.keywords, m.modseq, m.idate, m.size, m.fname, m.base"

static void msg_from_row(sqlite3_stmt *st, struct mbox_msg *m)
{
	m->uid = (uint32_t)sqlite3_column_int64(st, 0);
	m->flags = (unsigned)sqlite3_column_int(st, 1);
	m->keywords = xstrdup((const char *)sqlite3_column_text(st, 2));
	m->modseq = (uint64_t)sqlite3_column_int64(st, 3);
	m->internaldate = (time_t)sqlite3_column_int64(st, 4);
	m->size = (uint64_t)sqlite3_column_int64(st, 5);
	m->fname = xstrdup((const char *)sqlite3_column_text(st, 6));
	m->base = xstrdup((const char *)sqlite3_column_text(st, 7));
}

int mbox_msg_get(struct mbox *mb, uint32_t uid, struct mbox_msg *m)
{
	memset(m, 0, sizeof(*m));
	sqlite3_stmt *st = prep(mb, "SELECT " MSG_COLS " FROM msg WHERE uid=?");
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, uid);
	int r = 0;
	if (sqlite3_step(st) == SQLITE_ROW) {
		msg_from_row(st, m);
		r = 1;
	}
	unprep(mb, st);
	return r;
}

void mbox_msg_clear(struct mbox_msg *m)
{
	free(m->keywords);
	free(m->fname);
	free(m->base);
	memset(m, 0, sizeof(*m));
}

int mbox_changed_since(struct mbox *mb, uint64_t modseq, mbox_msg_cb *cb, void *arg)
{
	sqlite3_stmt *st = prep(mb, "SELECT " MSG_COLS " FROM msg WHERE modseq > ? ORDER BY uid");
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, (int64_t)modseq);
	while (sqlite3_step(st) == SQLITE_ROW) {
		struct mbox_msg m;
		msg_from_row(st, &m);
		cb(arg, &m);
		mbox_msg_clear(&m);
	}
	unprep(mb, st);
	return 0;
}

int mbox_expunged_since(struct mbox *mb, uint64_t modseq, uint32_t **uids_r, size_t *count_r)
{
	sqlite3_stmt *st = prep(mb, "SELECT uid FROM expunged WHERE modseq > ? ORDER BY uid");
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, (int64_t)modseq);
	size_t count = 0, cap = 16;
	uint32_t *uids = xmalloc(cap * sizeof(*uids));
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (count == cap) {
			cap *= 2;
			uids = xreallocarray(uids, cap, sizeof(*uids));
		}
		uids[count++] = (uint32_t)sqlite3_column_int64(st, 0);
	}
	unprep(mb, st);
	*uids_r = uids;
	*count_r = count;
	return 0;
}

int mbox_store(struct mbox *mb, uint32_t uid, unsigned flags, const char *keywords, uint64_t unchanged_since,
               uint64_t *modseq_r)
{
	if (exec(mb, "BEGIN IMMEDIATE") < 0)
		return -1;
	struct mbox_msg m;
	int r = mbox_msg_get(mb, uid, &m);
	if (r <= 0) {
		exec(mb, "ROLLBACK");
		return r;
	}
	*modseq_r = m.modseq;
	if (unchanged_since != 0 && m.modseq > unchanged_since) {
		mbox_msg_clear(&m);
		exec(mb, "ROLLBACK");
		return 0;
	}
	flags &= MAIL_FLAGS_ALL;
	if (flags == (m.flags & MAIL_FLAGS_ALL) && strcmp(keywords, m.keywords) == 0) {
		mbox_msg_clear(&m);
		exec(mb, "ROLLBACK");
		return 1;
	}
	char letters[8];
	maildir_flags_letters(flags, letters);
	char *newname = xasprintf("cur/%s:2,%s", m.base, letters);
	int ret = -1;
	if (strcmp(newname, m.fname) != 0) {
		char *from = xasprintf("%s/%s", mb->path, m.fname);
		char *to = xasprintf("%s/%s", mb->path, newname);
		bool in_sync = own_change_begin(mb);
		int rr = rename(from, to);
		int saved = errno;
		free(from);
		free(to);
		if (rr < 0) {
			ret = saved == ENOENT ? 0 : -1;
			goto fail;
		}
		own_change_end(mb, in_sync);
	}
	uint64_t hms = (uint64_t)meta_get(mb, "highestmodseq", 1) + 1;
	sqlite3_stmt *st = prep(mb, "UPDATE msg SET fname=?, flags=?, keywords=?, modseq=? WHERE uid=?");
	if (st == NULL)
		goto fail;
	sqlite3_bind_text(st, 1, newname, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, (int)flags);
	sqlite3_bind_text(st, 3, keywords, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (int64_t)hms);
	sqlite3_bind_int64(st, 5, uid);
	int sr = sqlite3_step(st);
	unprep(mb, st);
	if (sr != SQLITE_DONE || meta_set(mb, "highestmodseq", (int64_t)hms) < 0 || exec(mb, "COMMIT") < 0)
		goto fail;
	*modseq_r = hms;
	free(newname);
	mbox_msg_clear(&m);
	return 1;
fail:
	exec(mb, "ROLLBACK");
	free(newname);
	mbox_msg_clear(&m);
	return ret;
}

int mbox_expunge(struct mbox *mb, uint32_t uid)
{
	if (exec(mb, "BEGIN IMMEDIATE") < 0)
		return -1;
	struct mbox_msg m;
	int r = mbox_msg_get(mb, uid, &m);
	if (r <= 0) {
		exec(mb, "ROLLBACK");
		return r;
	}
	char *file = xasprintf("%s/%s", mb->path, m.fname);
	bool in_sync = own_change_begin(mb);
	if (unlink(file) < 0 && errno != ENOENT) {
		free(file);
		mbox_msg_clear(&m);
		exec(mb, "ROLLBACK");
		return -1;
	}
	free(file);
	own_change_end(mb, in_sync);
	mbox_msg_clear(&m);
	int64_t hms = meta_get(mb, "highestmodseq", 1) + 1;
	sqlite3_stmt *st = prep(mb, "DELETE FROM msg WHERE uid=?");
	sqlite3_stmt *st2 = prep(mb, "INSERT OR REPLACE INTO expunged(uid, modseq) VALUES(?, ?)");
	int ok = st != NULL && st2 != NULL;
	if (ok) {
		sqlite3_bind_int64(st, 1, uid);
		sqlite3_bind_int64(st2, 1, uid);
		sqlite3_bind_int64(st2, 2, hms);
		ok = sqlite3_step(st) == SQLITE_DONE && sqlite3_step(st2) == SQLITE_DONE;
	}
	unprep(mb, st);
	unprep(mb, st2);
	if (!ok || meta_set(mb, "highestmodseq", hms) < 0 || exec(mb, "COMMIT") < 0) {
		exec(mb, "ROLLBACK");
		return -1;
	}
	return 1;
}

char *mbox_unique_name(void)
{
	static unsigned counter;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	char host[256];
	if (gethostname(host, sizeof(host)) < 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	for (char *p = host; *p; p++)
		if (*p == '/' || *p == ':' || *p == '.')
			*p = '_';
	return xasprintf("%ld.M%ldP%dQ%u.%s", (long)tv.tv_sec, (long)tv.tv_usec, (int)getpid(), ++counter,
	                 host[0] ? host : "localhost");
}

/* Move tmp/<unique> into cur/ and give it the next UID, inside one transaction. */
static int commit_new(struct mbox *mb, const char *unique, unsigned flags, const char *keywords, time_t idate,
                      uint64_t size, uint32_t *uid_r, const char **error_r)
{
	char letters[8];
	maildir_flags_letters(flags & MAIL_FLAGS_ALL, letters);
	char *tmp = xasprintf("%s/tmp/%s", mb->path, unique);
	char *name = xasprintf("cur/%s:2,%s", unique, letters);
	char *dst = xasprintf("%s/%s", mb->path, name);
	int ret = -1;
	if (exec(mb, "BEGIN IMMEDIATE") < 0) {
		*error_r = "[UNAVAILABLE] Mailbox index busy";
		unlink(tmp);
		goto out;
	}
	int64_t uid = meta_get(mb, "uidnext", 1);
	int64_t hms = meta_get(mb, "highestmodseq", 1) + 1;
	bool in_sync = own_change_begin(mb);
	if (rename(tmp, dst) < 0) {
		exec(mb, "ROLLBACK");
		unlink(tmp);
		*error_r = "[SERVERBUG] Cannot store message";
		goto out;
	}
	own_change_end(mb, in_sync);
	sqlite3_stmt *st = prep(mb, "INSERT INTO msg(uid, base, fname, flags, keywords, modseq, idate, size)"
	                            " VALUES(?, ?, ?, ?, ?, ?, ?, ?)");
	int ok = st != NULL;
	if (ok) {
		sqlite3_bind_int64(st, 1, uid);
		sqlite3_bind_text(st, 2, unique, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 4, (int)(flags & MAIL_FLAGS_ALL));
		sqlite3_bind_text(st, 5, keywords ? keywords : "", -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 6, hms);
		sqlite3_bind_int64(st, 7, (int64_t)idate);
		sqlite3_bind_int64(st, 8, (int64_t)size);
		ok = sqlite3_step(st) == SQLITE_DONE;
	}
	unprep(mb, st);
	if (!ok || meta_set(mb, "uidnext", uid + 1) < 0 || meta_set(mb, "highestmodseq", hms) < 0 ||
	    exec(mb, "COMMIT") < 0) {
		exec(mb, "ROLLBACK");
		unlink(dst);
		*error_r = "[SERVERBUG] Cannot index message";
		goto out;
	}
	*uid_r = (uint32_t)uid;
	ret = 1;
out:
	free(tmp);
	free(name);
	free(dst);
	return ret;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int mbox_append(struct mbox *mb, const char *data, size_t len, unsigned flags, const char *keywords, time_t date,
                uint32_t *uid_r, const char **error_r)
{
	char *unique = mbox_unique_name();
	char *tmp = xasprintf("%s/tmp/%s", mb->path, unique);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int ret = -1;
	if (fd < 0) {
		*error_r = "[SERVERBUG] Cannot create message file";
		goto out;
	}
	if (write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		close(fd);
		unlink(tmp);
		*error_r = "[OVERQUOTA] Cannot write message";
		goto out;
	}
	close(fd);
	if (date == 0)
		date = time(NULL);
	struct timespec ts[2] = { { .tv_sec = date }, { .tv_sec = date } };
	utimensat(AT_FDCWD, tmp, ts, 0);
	uint64_t size = len;
	for (size_t i = 0; i < len; i++)
		if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
			size++;
	ret = commit_new(mb, unique, flags, keywords, date, size, uid_r, error_r);
out:
	free(unique);
	free(tmp);
	return ret;
}

int mbox_spool_prepare(const char *path, bool reject_nul, uint64_t *size_r, const char **error_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*error_r = "[SERVERBUG] Cannot read the spooled message";
		return -1;
	}
	uint64_t size = 0;
	bool nul = false;
	char rb[16384];
	char prev = 0;
	ssize_t n;
	while ((n = read(fd, rb, sizeof(rb))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (rb[i] == '\n' && prev != '\r')
				size++;
			else if (rb[i] == '\0')
				nul = true;
			prev = rb[i];
		}
		size += (uint64_t)n;
	}
	int synced = n == 0 ? fsync(fd) : -1;
	close(fd);
	if (n < 0 || synced < 0) {
		*error_r = "[SERVERBUG] Cannot read the spooled message";
		return -1;
	}
	if (nul && reject_nul) {
		*error_r = "Message contains NUL; use a literal8";
		return -1;
	}
	*size_r = size;
	return 0;
}

int mbox_append_prepared(struct mbox *mb, const char *path, unsigned flags, const char *keywords, time_t date,
                         uint64_t size, uint32_t *uid_r, const char **error_r)
{
	char *unique = mbox_unique_name();
	char *tmp = xasprintf("%s/tmp/%s", mb->path, unique);
	int ret = -1;
	if (rename(path, tmp) < 0) {
		*error_r = "[SERVERBUG] Cannot store message";
	} else {
		if (date == 0)
			date = time(NULL);
		struct timespec ts[2] = { { .tv_sec = date }, { .tv_sec = date } };
		utimensat(AT_FDCWD, tmp, ts, 0);
		ret = commit_new(mb, unique, flags, keywords, date, size, uid_r, error_r);
	}
	free(unique);
	free(tmp);
	return ret;
}

int mbox_append_file(struct mbox *mb, const char *path, unsigned flags, const char *keywords, time_t date,
                     bool reject_nul, uint32_t *uid_r, const char **error_r)
{
	uint64_t size;
	if (mbox_spool_prepare(path, reject_nul, &size, error_r) < 0)
		return -1;
	return mbox_append_prepared(mb, path, flags, keywords, date, size, uid_r, error_r);
}

void mbox_ref(struct mbox *mb)
{
	mb->refs++;
}

int mbox_copy(struct mbox *src, uint32_t uid, struct mbox *dst, uint32_t *uid_r, const char **error_r)
{
	struct mbox_msg m;
	int r = mbox_msg_get(src, uid, &m);
	if (r <= 0) {
		*error_r = "[EXPUNGEISSUED] Message was expunged";
		return r < 0 ? -1 : 0;
	}
	char *unique = mbox_unique_name();
	char *from = xasprintf("%s/%s", src->path, m.fname);
	char *tmp = xasprintf("%s/tmp/%s", dst->path, unique);
	int ret = -1;
	if (link(from, tmp) < 0) {
		struct buf b;
		buf_init(&b, (size_t)m.size + 1);
		int rr = mbox_msg_read(src, &m, &b);
		if (rr <= 0) {
			buf_deinit(&b);
			*error_r = rr == 0 ? "[EXPUNGEISSUED] Message was expunged" : "[SERVERBUG] Cannot read message";
			ret = rr == 0 ? 0 : -1;
			goto out;
		}
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 || write_all(fd, b.data, b.len) < 0 || fsync(fd) < 0) {
			if (fd >= 0)
				close(fd);
			unlink(tmp);
			buf_deinit(&b);
			*error_r = "[SERVERBUG] Cannot write message";
			goto out;
		}
		close(fd);
		buf_deinit(&b);
		struct timespec ts[2] = { { .tv_sec = m.internaldate }, { .tv_sec = m.internaldate } };
		utimensat(AT_FDCWD, tmp, ts, 0);
	}
	ret = commit_new(dst, unique, m.flags, m.keywords, m.internaldate, m.size, uid_r, error_r);
out:
	free(unique);
	free(from);
	free(tmp);
	mbox_msg_clear(&m);
	return ret;
}

static int msg_read(struct mbox *mb, const struct mbox_msg *m, struct buf *out, bool header_only)
{
	char *file = xasprintf("%s/%s", mb->path, m->fname);
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	free(file);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	char rb[16384];
	char prev = 0;
	ssize_t n;
	int ret = 1;
	size_t base = out->len;
	while ((n = read(fd, rb, sizeof(rb))) > 0) {
		size_t start = 0;
		size_t before = out->len;
		const char *nl;
		for (size_t i = 0; i < (size_t)n && (nl = memchr(rb + i, '\n', (size_t)n - i)) != NULL; i++) {
			i = (size_t)(nl - rb);
			if ((i > 0 ? rb[i - 1] : prev) != '\r') {
				if (buf_append(out, rb + start, i - start) < 0 || buf_append(out, "\r\n", 2) < 0) {
					ret = -1;
					break;
				}
				start = i + 1;
			}
		}
		if (ret < 0 || buf_append(out, rb + start, (size_t)n - start) < 0) {
			ret = -1;
			break;
		}
		prev = rb[n - 1];
		if (header_only) {
			/* stop after the blank line that ends the header */
			if (out->len - base >= 2 && memcmp(out->data + base, "\r\n", 2) == 0) {
				out->len = base + 2;
				out->data[out->len] = '\0';
				break;
			}
			size_t from = before - base >= 3 ? before - 3 : base;
			const char *e = memmem(out->data + from, out->len - from, "\r\n\r\n", 4);
			if (e != NULL) {
				out->len = (size_t)(e - out->data) + 4;
				out->data[out->len] = '\0';
				break;
			}
		}
	}
	if (n < 0)
		ret = -1;
	close(fd);
	return ret;
}

int mbox_msg_read(struct mbox *mb, const struct mbox_msg *m, struct buf *out)
{
	return msg_read(mb, m, out, false);
}

int mbox_msg_read_header(struct mbox *mb, const struct mbox_msg *m, struct buf *out)
{
	return msg_read(mb, m, out, true);
}

uint32_t mbox_take_recent(struct mbox *mb)
{
	if (exec(mb, "BEGIN IMMEDIATE") < 0)
		return UINT32_MAX;
	int64_t r = meta_get(mb, "recent", 1);
	int64_t next = meta_get(mb, "uidnext", 1);
	meta_set(mb, "recent", next);
	if (exec(mb, "COMMIT") < 0) {
		exec(mb, "ROLLBACK");
		return UINT32_MAX;
	}
	return (uint32_t)r;
}

char *mbox_cache_get(struct mbox *mb, uint32_t uid, const char *field)
{
	const char *sql;
	if (strcmp(field, "env") == 0)
		sql = "SELECT env FROM cache WHERE uid=?";
	else if (strcmp(field, "bs") == 0)
		sql = "SELECT bs FROM cache WHERE uid=?";
	else
		return NULL;
	sqlite3_stmt *st = prep(mb, sql);
	if (st == NULL)
		return NULL;
	sqlite3_bind_int64(st, 1, uid);
	char *v = NULL;
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT)
		v = xstrdup((const char *)sqlite3_column_text(st, 0));
	unprep(mb, st);
	return v;
}

void mbox_cache_set(struct mbox *mb, uint32_t uid, const char *field, const char *value)
{
	const char *sql;
	if (strcmp(field, "env") == 0)
		sql = "INSERT INTO cache(uid, env) SELECT ?2, ?1 WHERE EXISTS (SELECT 1 FROM msg WHERE uid = ?2)"
		      " ON CONFLICT(uid) DO UPDATE SET env = excluded.env";
	else if (strcmp(field, "bs") == 0)
		sql = "INSERT INTO cache(uid, bs) SELECT ?2, ?1 WHERE EXISTS (SELECT 1 FROM msg WHERE uid = ?2)"
		      " ON CONFLICT(uid) DO UPDATE SET bs = excluded.bs";
	else
		return;
	sqlite3_stmt *st = prep(mb, sql);
	if (st == NULL)
		return;
	sqlite3_bind_text(st, 1, value, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, uid);
	sqlite3_step(st);
	unprep(mb, st);
}

static void row_fill(sqlite3_stmt *st, struct mbox_msg_row *r)
{
	msg_from_row(st, &r->m);
	if (sqlite3_column_type(st, 8) == SQLITE_TEXT)
		r->env = xstrdup((const char *)sqlite3_column_text(st, 8));
	if (sqlite3_column_type(st, 9) == SQLITE_TEXT)
		r->bs = xstrdup((const char *)sqlite3_column_text(st, 9));
	r->found = true;
}

int mbox_msg_get_batch(struct mbox *mb, const uint32_t *uids, size_t n, bool want_env, bool want_bs,
                       struct mbox_msg_row *rows)
{
	memset(rows, 0, n * sizeof(*rows));
	if (n == 0)
		return 0;
	/* the cache table is only joined (and a column only read) when asked for */
	static const char range_sql[] = "SELECT " MSG_COLS ", NULL, NULL FROM msg WHERE uid BETWEEN ?1 AND ?2 ORDER BY uid";
	static const char range_c_sql[] =
		"SELECT " MSG_COLS_M ", CASE WHEN ?3 THEN c.env END, CASE WHEN ?4 THEN c.bs END"
		" FROM msg m LEFT JOIN cache c ON c.uid = m.uid WHERE m.uid BETWEEN ?1 AND ?2 ORDER BY m.uid";
	static const char one_sql[] = "SELECT " MSG_COLS ", NULL, NULL FROM msg WHERE uid=?1";
	static const char one_c_sql[] = "SELECT " MSG_COLS_M ", CASE WHEN ?2 THEN c.env END, CASE WHEN ?3 THEN c.bs END"
	                                " FROM msg m LEFT JOIN cache c ON c.uid = m.uid WHERE m.uid=?1";
	bool cached = want_env || want_bs;
	uint32_t lo = uids[0], hi = uids[n - 1];
	if (hi >= lo && (uint64_t)(hi - lo) < 4 * (uint64_t)n + 64) {
		/* dense: walk the range once, merging with the (ascending) wanted UIDs */
		sqlite3_stmt *st = prep(mb, cached ? range_c_sql : range_sql);
		if (st == NULL)
			return -1;
		sqlite3_bind_int64(st, 1, lo);
		sqlite3_bind_int64(st, 2, hi);
		if (cached) {
			sqlite3_bind_int(st, 3, want_env);
			sqlite3_bind_int(st, 4, want_bs);
		}
		size_t i = 0;
		while (i < n && sqlite3_step(st) == SQLITE_ROW) {
			uint32_t uid = (uint32_t)sqlite3_column_int64(st, 0);
			while (i < n && uids[i] < uid)
				i++;
			if (i < n && uids[i] == uid)
				row_fill(st, &rows[i++]);
		}
		unprep(mb, st);
		return 0;
	}
	/* sparse: one lookup per UID, in one read transaction when none is open */
	bool txn = sqlite3_get_autocommit(mb->db) && exec(mb, "BEGIN") == 0;
	int ret = 0;
	for (size_t i = 0; i < n; i++) {
		sqlite3_stmt *st = prep(mb, cached ? one_c_sql : one_sql);
		if (st == NULL) {
			ret = -1;
			break;
		}
		sqlite3_bind_int64(st, 1, uids[i]);
		if (cached) {
			sqlite3_bind_int(st, 2, want_env);
			sqlite3_bind_int(st, 3, want_bs);
		}
		if (sqlite3_step(st) == SQLITE_ROW)
			row_fill(st, &rows[i]);
		unprep(mb, st);
	}
	if (txn)
		exec(mb, "COMMIT");
	return ret;
}

void mbox_msg_batch_clear(struct mbox_msg_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		mbox_msg_clear(&rows[i].m);
		free(rows[i].env);
		free(rows[i].bs);
		rows[i].env = rows[i].bs = NULL;
		rows[i].found = false;
	}
}

void mbox_cache_set_batch(struct mbox *mb, const char *field, const uint32_t *uids, char *const *values, size_t n)
{
	if (n == 0)
		return;
	if (n == 1) {
		mbox_cache_set(mb, uids[0], field, values[0]);
		return;
	}
	/* a cache is only a cache: when the index is busy, the next FETCH computes it again */
	bool txn = sqlite3_get_autocommit(mb->db) && exec(mb, "BEGIN IMMEDIATE") == 0;
	for (size_t i = 0; i < n; i++)
		mbox_cache_set(mb, uids[i], field, values[i]);
	if (txn && exec(mb, "COMMIT") < 0)
		exec(mb, "ROLLBACK");
}

char *mbox_all_keywords(struct mbox *mb)
{
	sqlite3_stmt *st = prep(mb, "SELECT DISTINCT keywords FROM msg WHERE keywords != ''");
	struct buf out;
	buf_init(&out, 64 * 1024);
	while (st != NULL && sqlite3_step(st) == SQLITE_ROW) {
		char *kw = xstrdup((const char *)sqlite3_column_text(st, 0));
		char *save = NULL;
		for (char *w = strtok_r(kw, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save)) {
			/* dedupe against what we have */
			bool dup = false;
			size_t wl = strlen(w);
			for (const char *p = out.data; *p && !dup;) {
				const char *e = strchr(p, ' ');
				size_t l = e ? (size_t)(e - p) : strlen(p);
				dup = l == wl && strncasecmp(p, w, l) == 0;
				p = e ? e + 1 : p + l;
			}
			if (!dup) {
				if (out.len > 0)
					buf_append_c(&out, ' ');
				buf_append_str(&out, w);
			}
		}
		free(kw);
	}
	unprep(mb, st);
	char *r = buf_steal(&out);
	buf_deinit(&out);
	return r;
}

uint32_t mbox_first_unseen(struct mbox *mb)
{
	sqlite3_stmt *st = prep(mb, "SELECT MIN(uid) FROM msg WHERE (flags & 1) = 0");
	uint32_t uid = 0;
	if (st != NULL && sqlite3_step(st) == SQLITE_ROW)
		uid = (uint32_t)sqlite3_column_int64(st, 0);
	unprep(mb, st);
	return uid;
}
