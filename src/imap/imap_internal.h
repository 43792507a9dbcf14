/*
 * imap_internal: what the IMAP command files share (not used outside src/imap).
 */
#ifndef MR_IMAP_INTERNAL_H
#define MR_IMAP_INTERNAL_H

#include <stdint.h>
#include <time.h>

#include "imap/imap_session.h"
#include "lib-imap/imap_parser.h"
#include "lib-mailbox/mbox.h"
#include "lib/buf.h"

#define IMAP_OUT_HIGH (256 * 1024)
#define IMAP_OUT_LOW (64 * 1024)
#define IMAP_IN_HIGH (256 * 1024)
#define IMAP_SPOOL_THRESHOLD (256 * 1024) /* APPEND literals this big go to a file */

enum imap_state { IMAP_STATE_NOTAUTH, IMAP_STATE_AUTH, IMAP_STATE_SELECTED, IMAP_STATE_LOGOUT };

struct imap_fetch;
struct idle_watch;
struct append_job;

struct imap_session {
	struct event_base *base;
	struct bufferevent *bev;
	const struct imap_settings *set;
	struct imap_reader reader;
	enum imap_state state;
	bool tls, closing, busy, idling, sasl_wait, out_blocked, freeing, auth_pending;
	char sid[24];
	char ip[64];
	char *user, *root;
	void *auth_req;
	char *async_tag;            /* tag of LOGIN/AUTHENTICATE/IDLE in progress */
	char *auth_user;            /* the name being checked, for the log line */
	struct event *resume_ev;
	unsigned errors;
	/* selected mailbox */
	struct mbox *mbox;
	char *mbox_name;
	bool readonly;
	uint32_t *uids;             /* the session's view: UID of sequence number i+1 */
	size_t count, cap;
	uint64_t seen_modseq;       /* flag changes up to here were reported */
	bool expunge_pending;       /* expunges seen but not yet reported */
	uint32_t recent_from;       /* UIDs >= this are \Recent for this session */
	bool condstore, qresync, rev2, utf8;
	/* IDLE */
	struct idle_watch *watch;   /* shared inotify watches of the selected folder */
	struct event *idle_timer;
	/* SEARCH RETURN (SAVE) result: sorted UIDs */
	uint32_t *saved;
	size_t nsaved;
	/* an APPEND literal being spooled to <root>/tmp/ */
	int spool_fd;
	char *spool_path;
	size_t spool_written;
	bool spool_failed;
	/* an APPEND waiting for its fsync on the work pool */
	struct append_job *append_job;
	/* a FETCH waiting for the client to read */
	struct imap_fetch *fetch;
	struct imap_session *prev, *next;
};

/* output */
void imap_send(struct imap_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void imap_send_raw(struct imap_session *s, const void *data, size_t len);
size_t imap_out_pending(struct imap_session *s);
/* Send pending mailbox updates, then "<tag> <text>". allow_expunge: EXPUNGE responses allowed now. */
void imap_complete(struct imap_session *s, const char *tag, bool allow_expunge, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Report changes made by others (EXISTS, EXPUNGE/VANISHED, FETCH FLAGS). */
void imap_sync_view(struct imap_session *s, bool allow_expunge);
/* Remove a UID from the view and tell the client. */
void imap_view_expunged(struct imap_session *s, uint32_t uid);
/* Resume reading commands after an asynchronous step finished. */
void imap_resume(struct imap_session *s);
void imap_capability_string(struct imap_session *s, struct buf *out);
/* Remove an APPEND spool file that no command consumed. */
void imap_spool_drop(struct imap_session *s);

/* helpers */
struct seqset {
	struct { uint32_t lo, hi; } *r;
	size_t n;
	bool dollar;                /* "$": the saved SEARCH result (RFC 5182) */
	const uint32_t *saved;      /* bound by imap_seqset_bind: sorted UIDs */
	size_t nsaved;
};
int seqset_parse(const char *s, struct seqset *set);
/* Let "$" refer to the session's saved search result. */
void imap_seqset_bind(struct imap_session *s, struct seqset *set);
void seqset_free(struct seqset *set);
/* v is a sequence number or UID; for "$" it must be a UID. */
bool seqset_has(const struct seqset *set, uint32_t v, uint32_t star);
/* Every sequence number of a (non-UID) set exists in the view. */
bool imap_seqset_in_range(struct imap_session *s, const struct seqset *set);
/* Sequence numbers (0-based view indexes) selected by a set; allocated. */
size_t imap_select_msgs(struct imap_session *s, const struct seqset *set, bool uid, size_t **idx_r);
/* Compress a sorted UID list as "1:3,7". */
void imap_uidset_append(struct buf *out, const uint32_t *uids, size_t n);
ssize_t imap_view_find(struct imap_session *s, uint32_t uid);
void imap_append_flags(struct imap_session *s, struct buf *out, const struct mbox_msg *m);
void imap_format_date(struct buf *out, time_t t);
time_t imap_parse_datetime(const char *s, bool date_only);
/* Parse a flag list or single flag; -1 on invalid flag. keywords: allocated space-separated. */
int imap_parse_flags(const struct imap_arg *args, size_t count, unsigned *flags_r, char **keywords_r);

/* commands (imap_cmds.c, imap_fetch.c, imap_search.c) */
typedef void imap_cmd_fn(struct imap_session *s, struct imap_command *c, bool uid);
imap_cmd_fn cmd_select, cmd_create, cmd_delete, cmd_rename, cmd_subscribe, cmd_unsubscribe, cmd_list, cmd_lsub,
	cmd_status, cmd_append, cmd_close, cmd_unselect, cmd_expunge, cmd_store, cmd_copy, cmd_namespace,
	cmd_check, cmd_fetch, cmd_search;
void imap_unselect(struct imap_session *s);
/* The session goes away: a pending APPEND finishes without it. */
void imap_append_detach(struct imap_session *s);
/* continue a suspended FETCH; true when finished */
bool imap_fetch_continue(struct imap_session *s);
void imap_fetch_free(struct imap_fetch **f);

#endif
