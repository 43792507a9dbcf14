/*
 * imap_utf7: modified UTF-7 mailbox names (RFC 3501 5.1.3), the form stored on disk and
 * spoken to IMAP4rev1 clients, and UTF-8, spoken to clients that enabled IMAP4rev2.
 * Both return -1 (out unchanged beyond what was appended) on malformed input.
 */
#ifndef MR_IMAP_UTF7_H
#define MR_IMAP_UTF7_H

#include "lib/buf.h"

int imap_utf8_to_mutf7(const char *in, struct buf *out);
int imap_mutf7_to_utf8(const char *in, struct buf *out);

#endif
