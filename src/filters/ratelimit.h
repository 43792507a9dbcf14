/*
 * ratelimit: token buckets per (rule, key) in memory, for the smtp process
 * (each process counts its own clients; shared counters across processes or
 * hosts are a later backend behind the same calls).
 *
 * A rule allows `limit` events per `per` seconds with bursts up to `limit`:
 * the bucket holds at most `limit` tokens and refills at limit/per tokens a
 * second. ratelimit_take takes n tokens (a connection: 1, a message: 1, its
 * recipients: n) or none: when short, it answers "limited" and how many
 * seconds until n tokens are there. Keys are opaque strings (client IP, its
 * /64, an authenticated user); rule names keep rules apart. At most max_keys
 * buckets are kept; when full, the least recently used goes (it forgets a
 * client, which can only make the limit more lenient, never block wrongly).
 * Time is passed in (monotonic seconds) so tests need no clock.
 */
#ifndef MR_RATELIMIT_H
#define MR_RATELIMIT_H

#include <stddef.h>

struct ratelimit;

struct ratelimit *ratelimit_new(size_t max_keys);
void ratelimit_free(struct ratelimit **rl);

/*
 * 1 allowed (tokens taken), 0 limited (nothing taken; *retry_after_r seconds,
 * rounded up, may be NULL), -1 bad arguments (limit or per 0, n > limit).
 */
int ratelimit_take(struct ratelimit *rl, const char *rule, const char *key, unsigned limit, unsigned per,
                   unsigned n, double now, unsigned *retry_after_r);
size_t ratelimit_count(const struct ratelimit *rl);

#endif
