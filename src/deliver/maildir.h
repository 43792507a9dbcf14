/*
 * maildir: crash-safe delivery of one message into a Maildir++ mailbox
 * (DESIGN.md §3): tmp/<unique> is written (prepend, then the message), fsynced,
 * renamed into new/<unique> without replacing anything, and new/ is fsynced; so
 * a 1 return means the message is durable in the mailbox.
 *
 * root is the user's Maildir++ root (<data_dir>/mail/<domain>/<localpart>/).
 * folder NULL, "" or "INBOX" (any case) is the root itself; otherwise a UTF-8
 * name (as Sieve fileinto gives it) like "Junk" or "a/b" maps to root/.Junk/
 * and root/.a.b/ ('/' and '.' are both hierarchy separators), non-ASCII and '&'
 * encoded as IMAP modified UTF-7 ("Été" -> ".&AMk-t&AOk-"), the on-disk form
 * lib-mailbox (IMAP) reads. Rejected (EINVAL): invalid UTF-8, "..", a leading
 * or trailing '.' or '/', an empty level ("a//b"), control characters, '\',
 * '%', '*'; ENAMETOOLONG beyond 255 encoded bytes.
 * Missing directories (root and its parents, tmp/ new/ cur/, the folder and its
 * empty maildirfolder file) are created with mode 0700 (files 0600), and their
 * parents fsynced, so an acknowledged delivery never depends on an unsynced mkdir.
 *
 * unique_base names the file in new/. Callers pass a deterministic one per
 * (message, recipient), e.g. "<arrival>.Q<queueid>R<idx>.<host>", so a retried
 * delivery after a crash between rename and the queue update is detected:
 * if new/<unique> exists, or cur/ holds <unique>:2,<flags> (probed for the
 * common flag sets, and found by a scan of cur/ when the directory is small:
 * st_size <= MAILDIR_CUR_SCAN_MAX bytes, i.e. a few thousand entries), nothing
 * is written and 0 is returned. Beyond that size a message already moved to
 * cur/ with unusual flags may be delivered a second time (a rare duplicate,
 * never a loss). unique_base NULL generates a fresh name (no duplicate check).
 * It must not contain '/' or ':' or start with '.'.
 *
 * msg_fd is read with pread from offset 0 (its file offset is neither used nor
 * changed); the message may be at most MAILDIR_MAX_SIZE bytes.
 *
 * Returns 1 delivered, 0 already delivered, -1 error: *error_r (allocated,
 * may be NULL) says what failed and errno holds the cause; the tmp file is
 * removed. maildir_error_is_temporary(errno) tells whether to retry: only
 * invalid arguments (EINVAL, ENAMETOOLONG) and oversize (EFBIG) are permanent;
 * everything the environment can cause (ENOSPC, EDQUOT, EIO, EACCES, EPERM,
 * EROFS, ENOTDIR, ...) is temporary: retried, never dropped.
 */
#ifndef MR_DELIVER_MAILDIR_H
#define MR_DELIVER_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>

#define MAILDIR_MAX_SIZE ((size_t)1 << 31)       /* 2 GiB */
#define MAILDIR_CUR_SCAN_MAX ((long long)256 * 1024)
#define MAILDIR_FOLDER_MAX 255

int maildir_deliver(const char *root, const char *folder, int msg_fd, const char *prepend,
		    size_t prepend_len, const char *unique_base, char **error_r);
bool maildir_error_is_temporary(int err);
/*
 * The directory of folder under root ("root" or "root/.a.b"), allocated.
 * -1 with *error_r when the folder name is invalid.
 */
int maildir_folder_path(const char *root, const char *folder, char **path_r, char **error_r);

#endif
