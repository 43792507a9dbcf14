/*
 * deliver_sieve: local delivery of one message to one user, through the
 * user's active Sieve script when there is one (issue: user rules). Runs on a
 * worker thread of the deliver role: it only touches its own job and the file
 * system. What must leave the process (redirects, vacation replies, reject
 * notices) is returned as outgoing messages for the role's loop to hand to the
 * queue.
 *
 * Without a script the message goes to the folder routing chose (subaddress
 * tag) or INBOX. With one: keep/fileinto deliver (folders are created),
 * discard drops, redirect/vacation/reject produce outgoing messages,
 * addheader/deleteheader change the delivered copy. A script that fails to
 * compile or run gets the implicit keep and a log line.
 */
#ifndef MR_DELIVER_SIEVE_H
#define MR_DELIVER_SIEVE_H

#include <stddef.h>

struct mr_config;

struct deliver_out {
	char *sender;      /* "" = null sender */
	char *rcpt;
	char *orcpt;       /* redirect: "rfc822;<the mailbox owner>" (a forward), else NULL */
	char *data;        /* the whole message */
	size_t len;
};

struct deliver_job {
	/* in */
	const struct mr_config *cfg;
	int fd;            /* spool file (pread from 0) */
	char *id, *maildir, *folder, *unique, *prepend, *user, *sender, *orig_rcpt;
	unsigned idx;
	/* out */
	int result;        /* 1 delivered, 0 duplicate, 2 temporary failure, 3 permanent */
	char *error;
	char *log;         /* what the rules did, for the log line */
	struct deliver_out *out;
	size_t out_count;
};

void deliver_job_run(struct deliver_job *j);
void deliver_job_free_outputs(struct deliver_job *j);

#endif
