/*
 * proto: the message types between roles (DESIGN.md §2) and the fields of each,
 * in order. Every message is built with ipc_put_* in exactly this order and read
 * back with ipc_get_* followed by ipc_reader_end(); a mismatch is a bug.
 * Abstract socket names: "<ipc_prefix>/lookup", "<ipc_prefix>/queue",
 * "<ipc_prefix>/deliver".
 */
#ifndef MR_PROTO_H
#define MR_PROTO_H

enum proto_type {
	/* -> lookup */
	PROTO_LOOKUP_AUTH = 1,      /* service, user, password, client_ip */
	PROTO_LOOKUP_AUTH_R = 2,    /* u32 status(lookup_status+1), user, maildir */
	PROTO_LOOKUP_RCPT = 3,      /* address, client_ip, auth_user, u32 listen_kind, sender (NULL: no
	                               greylisting; "" = the null reverse-path) */
	PROTO_LOOKUP_RCPT_R = 4,    /* u32 code, enhanced, text  (code 250 = accepted; 451 4.7.1 greylisted) */
	PROTO_LOOKUP_SPF = 5,       /* ip, helo, mailfrom  (mx listener, at MAIL) */
	PROTO_LOOKUP_SPF_R = 6,     /* result name, u32 code (250 = go on), enhanced, text, A-R fragment */
	PROTO_LOOKUP_MAILAUTH = 7,  /* ip, helo, mailfrom, auth_user, u32 listen_kind  + fd = spool file
	                               (read with pread from offset 0; starts with our Received:) */
	PROTO_LOOKUP_MAILAUTH_R = 8, /* u32 action (0 accept, 1 reject, 2 quarantine), u32 code,
	                                enhanced, text, headers to prepend (or NULL) */
	PROTO_LOOKUP_SENDER = 9,    /* auth_user, sender  (submission, at MAIL) */
	PROTO_LOOKUP_SENDER_R = 10, /* u32 code (250 = allowed), enhanced, text */

	/* smtp -> queue */
	PROTO_QUEUE_OPEN = 20,      /* (nothing) */
	PROTO_QUEUE_OPEN_R = 21,    /* u32 ok, id-or-error  + fd when ok */
	PROTO_QUEUE_RCPT = 22,      /* id, address, orcpt, u32 notify  (no reply) */
	PROTO_QUEUE_COMMIT = 23,    /* id, sender, u64 size, envid, u32 ret, helo, client_ip, auth_user,
	                               u32 smtputf8, u32 body, headers (to prepend at delivery, or NULL),
	                               u32 flags (PROTO_COMMIT_F_*) */
	PROTO_QUEUE_COMMIT_R = 24,  /* u32 ok, error text, u32 code, enhanced (the reply to give) */
	PROTO_QUEUE_ABORT = 25,     /* id  (no reply) */
	PROTO_QUEUE_KICK = 26,      /* id or NULL: run the scheduler now (from the CLI) */
	PROTO_QUEUE_SUBMIT = 27,    /* sender, u32 n, n x rcpt, headers, orcpt (or NULL)  + fd (the message):
	                               a new message from inside (redirect, vacation, sendmail) */
	PROTO_QUEUE_SUBMIT_R = 28,  /* u32 ok, id-or-error */

	/* queue -> deliver (fd = spool file) */
	PROTO_DELIVER_LOCAL = 40,   /* id, u32 idx, maildir, folder, unique, prepend, user, sender, orig_rcpt */
	PROTO_DELIVER_R = 41,       /* u32 result (1 delivered, 0 duplicate, -1+2 temp=2, perm=3), text */

	/* smtp -> lookup: DNS block lists (the smtp role has no DNS) */
	PROTO_LOOKUP_DNSBL = 50,    /* ip, domain (NULL: the IP zones at connect; set: the RHSBL zones at MAIL) */
	PROTO_LOOKUP_DNSBL_R = 51,  /* u32 score (int32), first listing zone or NULL, hits ("zone=a.b.c.d ..."),
	                               u32 failed queries */
};

/* PROTO_QUEUE_COMMIT flags */
#define PROTO_COMMIT_F_JUNK 1u  /* deliver local recipients into the "Junk" folder (DMARC quarantine) */
#define PROTO_COMMIT_F_QUARANTINE 2u /* hold the message in quarantine (content filters) */

#endif
