/*
 * greylist: triplet greylisting (client network, sender, recipient) in
 * SQLite, as pure functions on a database handle so the role that owns the
 * database (lookup) can run them; no event loop, no global state.
 *
 * The client network is the /24 of an IPv4 address or the /64 of an IPv6
 * one (senders retry from pools of neighbouring addresses). A new triplet is
 * deferred (451 4.7.1) for `delay` seconds; a retry after the delay and
 * within `retry_window` passes and pass-lists the whole client network for
 * `pass_ttl` seconds (further mail from it is not greylisted); a retry after
 * the window starts over. Addresses are compared case-insensitively.
 * Rows older than their use are removed by greylist_expire (call it from a
 * timer, e.g. hourly).
 */
#ifndef MR_GREYLIST_H
#define MR_GREYLIST_H

#include <sqlite3.h>
#include <stddef.h>
#include <time.h>

struct greylist_settings {
	unsigned delay;        /* seconds before a retry passes; default 300 */
	unsigned retry_window; /* seconds a retry is accepted after first seen; default 2 days */
	unsigned pass_ttl;     /* seconds a network stays pass-listed; default 35 days */
};

enum greylist_verdict {
	GREYLIST_PASS,
	GREYLIST_DEFER,   /* answer 451 4.7.1 "Greylisted, try again in N seconds" */
	GREYLIST_ERROR,   /* database error: let the message through (fail open) and log */
};

/* Create the tables if missing. 0 ok, -1 with error_r. */
int greylist_init(sqlite3 *db, const char **error_r);
/* retry_in_r (may be NULL): DEFER: seconds until a retry would pass. */
enum greylist_verdict greylist_check(sqlite3 *db, const struct greylist_settings *set, const char *ip,
                                     const char *sender, const char *rcpt, time_t now, unsigned *retry_in_r);
/* Delete expired triplets and pass entries. Returns rows removed or -1. */
int greylist_expire(sqlite3 *db, const struct greylist_settings *set, time_t now);
/* "192.0.2.0/24" / "2001:db8:1:2::/64". 1 ok, -1 bad address. */
int greylist_network(const char *ip, char *out, size_t size);

#endif
