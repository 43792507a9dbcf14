/*
 * clamd_client: scan a spooled message with clamd over TCP (zINSTREAM).
 *
 * The message is read from the spool fd with pread (the caller keeps the fd
 * open and unchanged until the callback or a cancel) and sent in chunks of at
 * most 64 KiB, each prefixed with its 4-byte big-endian length, then a zero
 * chunk. Writes use MSG_NOSIGNAL (clamd closes the socket when a stream
 * exceeds StreamMaxLength; its reply "INSTREAM size limit exceeded" is read
 * if it arrives, otherwise the close is an error).
 *
 * Every stage (connect, each chunk's progress, the reply) is bounded by
 * timeout_ms; the reply by 1 KiB. The callback runs exactly once, later on the
 * loop (never inside clamd_scan_start), unless the scan is cancelled first.
 * The scan object is freed before the callback runs: forget the handle in the
 * callback. Strings in the result live only during the callback.
 */
#ifndef MR_CLAMD_CLIENT_H
#define MR_CLAMD_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct clamd_scan;

enum clamd_status {
	CLAMD_CLEAN,
	CLAMD_INFECTED,
	CLAMD_ERROR,    /* clamd down, timeout, garbage, size limit...: apply the configured default */
	CLAMD_SKIPPED,  /* larger than max_size: not scanned (deliver as clean; log it) */
};

struct clamd_result {
	enum clamd_status status;
	const char *virus;  /* INFECTED: signature name, e.g. "Eicar-Test-Signature" */
	const char *error;  /* ERROR: why */
};

typedef void clamd_callback(void *arg, const struct clamd_result *res);

struct clamd_settings {
	const char *address;  /* "127.0.0.1:3310" (numeric; the smtp role is chrooted) */
	unsigned timeout_ms;  /* per stage; 0 means 30000 */
	uint64_t max_size;    /* larger messages are not scanned (CLAMD_SKIPPED); 0: no limit.
	                         Keep it <= clamd's StreamMaxLength (else clamd answers a size error) */
};

/* Scan bytes [0, size) of fd. Never NULL. */
struct clamd_scan *clamd_scan_start(struct event_base *base, const struct clamd_settings *set, int fd,
                                    uint64_t size, clamd_callback *cb, void *arg);
/* Drop a pending scan: its callback will not run. Sets *scan to NULL; NULL is a no-op. */
void clamd_scan_cancel(struct clamd_scan **scan);

/*
 * Parse one clamd reply ("stream: OK", "stream: NAME FOUND", "... ERROR"),
 * with or without its terminating NUL/newline. Always fills res (ERROR for
 * anything unexpected); res->virus/error point into name_buf (size >= 2).
 */
void clamd_reply_parse(const char *reply, size_t len, struct clamd_result *res, char *name_buf,
                       size_t name_size);

const char *clamd_status_name(enum clamd_status status);

#endif
