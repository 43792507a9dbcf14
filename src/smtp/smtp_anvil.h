/*
 * smtp_anvil: connection counts per client IP shared by all smtp processes
 * (Postfix's anvil, without a process): one row of counters per smtp process in
 * a MAP_SHARED mapping made by the master before fork. A process only writes
 * its own row; the total for an IP is the sum over rows. When an smtp process
 * dies the master zeroes its row (smtp_anvil_forget), so counts never leak.
 * IPs are hashed into ANVIL_SLOTS buckets: a collision makes the limit
 * stricter for both addresses, never looser.
 */
#ifndef MR_SMTP_ANVIL_H
#define MR_SMTP_ANVIL_H

#include "master/roles.h"

#define ANVIL_SLOTS 8192

/* Count a new connection of proc; returns the total count for ip including it. */
unsigned smtp_anvil_connect(int proc, const char *ip);
void smtp_anvil_disconnect(int proc, const char *ip);

#endif
