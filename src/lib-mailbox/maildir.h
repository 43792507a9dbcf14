/*
 * maildir: the Maildir++ tree of one user (INTERFACE.md: <data_dir>/mail/<domain>/<localpart>/).
 *
 * Naming: the IMAP hierarchy delimiter is "." (the Maildir++ on-disk separator), with no
 * namespace prefix. "INBOX" (any case) is the root; "Work.2024" is the directory ".Work.2024/".
 * Names are validated before any path is built: 1..255 printable ASCII bytes (8-bit names must
 * arrive as modified UTF-7), no "/", "\", "%", "*", no control bytes, no empty component (so no
 * leading/trailing/doubled "." and no ".."). A name therefore always maps to exactly one
 * directory directly inside the root, never elsewhere.
 *
 * Flags live in file names ("unique:2,FRS", letters sorted): D=\Draft F=\Flagged P=$Forwarded
 * R=\Answered S=\Seen T=\Deleted. Keywords are kept only in the index (mbox.h).
 */
#ifndef MR_MAILDIR_H
#define MR_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>

#define MAILDIR_DELIM '.'
#define MAILDIR_NAME_MAX 255

enum mail_flag {
	MAIL_SEEN = 1 << 0,
	MAIL_ANSWERED = 1 << 1,
	MAIL_FLAGGED = 1 << 2,
	MAIL_DELETED = 1 << 3,
	MAIL_DRAFT = 1 << 4,
	MAIL_FORWARDED = 1 << 5, /* $Forwarded keyword <-> 'P' */
};
#define MAIL_FLAGS_ALL 0x3f

enum mailbox_special {
	MAILBOX_SPECIAL_NONE = 0,
	MAILBOX_SPECIAL_SENT,
	MAILBOX_SPECIAL_DRAFTS,
	MAILBOX_SPECIAL_TRASH,
	MAILBOX_SPECIAL_JUNK,
	MAILBOX_SPECIAL_ARCHIVE,
};

/* Flags from a file name ("...:2,RS"); unknown letters are ignored. */
unsigned maildir_flags_from_name(const char *fname);
/* The letters for flags, sorted, NUL-terminated (out needs 8 bytes). */
void maildir_flags_letters(unsigned flags, char out[8]);
/* Length of the unique part of a file name (before ":2,"). */
size_t maildir_base_len(const char *fname);

/*
 * Validate an IMAP name. On success *canon_r (allocated) is the canonical name ("INBOX"
 * uppercased, also as a first component) and *path_r (allocated) the directory.
 */
int maildir_name_map(const char *root, const char *name, char **canon_r, char **path_r, const char **error_r);
bool maildir_name_is_inbox(const char *name);

/* Create root/{cur,new,tmp} (and root itself) when missing, and the special-use folders
 * Sent Drafts Trash Junk Archive (subscribed) the first time. */
int maildir_ensure_root(const char *root, const char **error_r);
/* Create cur/ new/ tmp/ under an existing or new folder directory. */
int maildir_make_dirs(const char *path, bool folder);

/* Every mailbox name (INBOX first, then folders sorted). Free with maildir_names_free. */
int maildir_list(const char *root, char ***names_r, size_t *count_r);
void maildir_names_free(char **names, size_t count);
enum mailbox_special maildir_special(const char *canon_name);
const char *maildir_special_attr(enum mailbox_special s);

int maildir_create(const char *root, const char *name, const char **error_r);
/* 1 deleted, -1 error. Refuses INBOX; children of the folder stay. */
int maildir_delete(const char *root, const char *name, const char **error_r);
/* Renames the folder and its children. Refuses INBOX as source. */
int maildir_rename(const char *root, const char *from, const char *to, const char **error_r);

/* Subscriptions: a file "mailroute-subscriptions" in the root, one canonical name a line. */
int maildir_subscriptions(const char *root, char ***names_r, size_t *count_r);
int maildir_subscribe(const char *root, const char *canon, bool on);

/* IMAP LIST pattern match ("*" any, "%" any except the delimiter); case-sensitive except INBOX. */
bool maildir_pattern_match(const char *pattern, const char *name);

#endif
