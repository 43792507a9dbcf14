/*
 * mbox: one open Maildir folder and its index (DESIGN.md §3).
 *
 * The index is an SQLite file "mailroute-index.db" (WAL) inside the folder directory. It
 * holds UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and one row per message: UID, the file's unique
 * base name, its current file name (relative: "cur/..."), system flags, keywords, MODSEQ,
 * INTERNALDATE and the size with CRLF line ends. The Maildir is the truth: mbox_sync() scans
 * new/ and cur/ and brings the index in line (new files get UIDs and move to cur/, missing
 * files are expunged, flag letters changed by another program update flags and MODSEQ).
 * A lost or unreadable index is rebuilt from the files with a new UIDVALIDITY.
 *
 * Several processes share one folder: every write happens in a BEGIN IMMEDIATE transaction,
 * so UIDs are never handed out twice. Strings in struct mbox_msg are owned by the struct;
 * free with mbox_msg_clear().
 */
#ifndef MR_MBOX_H
#define MR_MBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/buf.h"

#define MBOX_INDEX_NAME "mailroute-index.db"

struct mbox;

struct mbox_msg {
	uint32_t uid;
	unsigned flags;          /* enum mail_flag */
	char *keywords;          /* space-separated, "" when none */
	uint64_t modseq;
	time_t internaldate;
	uint64_t size;           /* RFC822.SIZE: bytes with CRLF line ends */
	char *fname;             /* "cur/<base>:2,<flags>" relative to the folder */
	char *base;
};

struct mbox_status {
	uint32_t messages, uidnext, uidvalidity, unseen, recent, deleted;
	uint64_t highestmodseq;
	uint64_t size;
};

/* Open (creating or rebuilding the index when needed) the folder at path. */
struct mbox *mbox_open(const char *path, const char **error_r);
void mbox_close(struct mbox **mb);
const char *mbox_path(const struct mbox *mb);
uint32_t mbox_uidvalidity(const struct mbox *mb);

/*
 * Bring the index in line with the directory. Cheap when nothing changed (directory
 * mtimes are compared). force: scan even if the mtimes look unchanged.
 */
int mbox_sync(struct mbox *mb, bool force, const char **error_r);
/* Current counters (reads the index). */
int mbox_get_status(struct mbox *mb, struct mbox_status *st);
uint64_t mbox_highestmodseq(struct mbox *mb);

/* All UIDs in ascending order (allocated array). */
int mbox_uids(struct mbox *mb, uint32_t **uids_r, size_t *count_r);
/* 1 found, 0 not found, -1 error. */
int mbox_msg_get(struct mbox *mb, uint32_t uid, struct mbox_msg *m);
void mbox_msg_clear(struct mbox_msg *m);
/* Call cb for each message whose MODSEQ > modseq, ascending UID. */
typedef void mbox_msg_cb(void *arg, const struct mbox_msg *m);
int mbox_changed_since(struct mbox *mb, uint64_t modseq, mbox_msg_cb *cb, void *arg);
/* UIDs expunged with MODSEQ > modseq (QRESYNC VANISHED); allocated array. */
int mbox_expunged_since(struct mbox *mb, uint64_t modseq, uint32_t **uids_r, size_t *count_r);

/*
 * Replace flags/keywords of a message; renames the file. unchanged_since (CONDSTORE):
 * 0 = no condition; otherwise fails with 0 when the message's MODSEQ is higher.
 * Returns 1 changed (or nothing to change), 0 condition failed or message gone, -1 error.
 */
int mbox_store(struct mbox *mb, uint32_t uid, unsigned flags, const char *keywords, uint64_t unchanged_since,
               uint64_t *modseq_r);
/* Remove a message (file and row). 1 done, 0 already gone, -1 error. */
int mbox_expunge(struct mbox *mb, uint32_t uid);
/* Deliver bytes as a new message (tmp -> fsync -> cur); returns its UID. */
int mbox_append(struct mbox *mb, const char *data, size_t len, unsigned flags, const char *keywords, time_t date,
                uint32_t *uid_r, const char **error_r);
/*
 * Deliver a message already written to a file on the same filesystem (an APPEND spooled by
 * the session): fsync, move into the folder, index. The file is consumed on success; on
 * failure the caller removes it.
 */
int mbox_append_file(struct mbox *mb, const char *path, unsigned flags, const char *keywords, time_t date,
                     bool reject_nul, uint32_t *uid_r, const char **error_r);
/* The two halves of mbox_append_file: prepare (read, CRLF size, NUL check, fsync) touches
 * only the file and may run on a worker thread; prepared moves and indexes it (loop thread). */
int mbox_spool_prepare(const char *path, bool reject_nul, uint64_t *size_r, const char **error_r);
int mbox_append_prepared(struct mbox *mb, const char *path, unsigned flags, const char *keywords, time_t date,
                         uint64_t size, uint32_t *uid_r, const char **error_r);
/* Take another reference to an open handle (release with mbox_close). */
void mbox_ref(struct mbox *mb);
/* Copy a message from src into dst (hard link when possible); returns the new UID. */
int mbox_copy(struct mbox *src, uint32_t uid, struct mbox *dst, uint32_t *uid_r, const char **error_r);

/*
 * Read a message into out with every line ending as CRLF. 1 read, 0 gone, -1 error
 * (out's maximum too small, I/O).
 */
int mbox_msg_read(struct mbox *mb, const struct mbox_msg *m, struct buf *out);
/* Only the header, up to and including the blank line that ends it. */
int mbox_msg_read_header(struct mbox *mb, const struct mbox_msg *m, struct buf *out);

/* Lowest UID without \Seen, 0 when all are seen. */
uint32_t mbox_first_unseen(struct mbox *mb);
/* Every keyword used in the folder, space-separated (allocated). */
char *mbox_all_keywords(struct mbox *mb);

/* \Recent bookkeeping: the first UID not yet announced as recent; set it to uidnext. */
uint32_t mbox_take_recent(struct mbox *mb);

/* Cached, IMAP-formatted ENVELOPE/BODYSTRUCTURE strings. get: allocated or NULL. */
char *mbox_cache_get(struct mbox *mb, uint32_t uid, const char *field);
void mbox_cache_set(struct mbox *mb, uint32_t uid, const char *field, const char *value);

/*
 * Many messages in one index read (FETCH): for each of the n UIDs (ascending), found tells
 * whether it exists; m is filled as by mbox_msg_get, env/bs with the cached strings when
 * asked for and present (else NULL). Free with mbox_msg_batch_clear. 0 done, -1 error.
 */
struct mbox_msg_row {
	struct mbox_msg m;
	char *env, *bs;
	bool found;
};
int mbox_msg_get_batch(struct mbox *mb, const uint32_t *uids, size_t n, bool want_env, bool want_bs,
                       struct mbox_msg_row *rows);
void mbox_msg_batch_clear(struct mbox_msg_row *rows, size_t n);
/* Store cached strings of several messages in one transaction (values[i] for uids[i]). */
void mbox_cache_set_batch(struct mbox *mb, const char *field, const uint32_t *uids, char *const *values,
                          size_t n);

/* The current process's unique file name part (time.MpidPcounterR.hostname). */
char *mbox_unique_name(void);

#endif
