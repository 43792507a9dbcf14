/*
 * relay: relay groups for outbound delivery (DESIGN.md §4.5), pure logic with
 * the clock passed in (no I/O, no timers), so the scheduler owns time.
 *
 * Selection is smooth weighted round robin (nginx): over any window the picks
 * follow the weights, interleaved rather than in bursts. Health: after
 * fail_threshold consecutive failures a relay is DOWN for cooldown_ms; then it
 * is PROBING: exactly one pick is handed out (the probe) until its result is
 * reported - success brings it back UP, failure sends it DOWN for another
 * cool-down. A DOWN relay gets no traffic; when every relay is down, pick
 * returns -1 and relay_group_retry_at tells when the next one comes back.
 *
 * Strings passed in are copied. Indices are stable for the group's lifetime.
 */
#ifndef MR_RELAY_H
#define MR_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "outbound/smtp_client.h"

#define RELAY_GROUP_MAX 64

enum relay_health { RELAY_UP, RELAY_DOWN, RELAY_PROBING };

struct relay_entry {
	char *name;
	char *host;
	unsigned port;
	unsigned weight;            /* >= 1 */
	enum smtp_tls_policy tls;
	/* state */
	long current;               /* smooth WRR accumulator */
	unsigned consecutive_failures;
	enum relay_health health;
	uint64_t down_until_ms;
	bool probe_out;             /* the probe pick has been handed out */
	unsigned long picks, failures, successes;
};

struct relay_group;

/* fail_threshold 0 = 3, cooldown_ms 0 = 60000. */
struct relay_group *relay_group_new(const char *name, unsigned fail_threshold, unsigned cooldown_ms);
void relay_group_free(struct relay_group **g);
/* Returns the new index, or -1 when the group is full or weight is 0. */
int relay_group_add(struct relay_group *g, const char *name, const char *host, unsigned port, unsigned weight,
                    enum smtp_tls_policy tls);
size_t relay_group_count(const struct relay_group *g);
const char *relay_group_name(const struct relay_group *g);
const struct relay_entry *relay_group_get(const struct relay_group *g, size_t idx);

/* Choose the relay for the next delivery: an index, or -1 when none is available now. */
int relay_group_pick(struct relay_group *g, uint64_t now_ms);
/* Report the outcome of a delivery attempt through relay idx (connection-level success/failure). */
void relay_report(struct relay_group *g, size_t idx, bool ok, uint64_t now_ms);
/*
 * A failover order for one delivery: the weighted pick first, then the other
 * relays that are UP, heavier first. Fills up to max indices into order and
 * returns how many (0: none available now). Use it to build the relays[] of an
 * smtp_destination, then feed the result back with relay_report_delivery.
 */
size_t relay_group_order(struct relay_group *g, uint64_t now_ms, size_t *order, size_t max);
/*
 * Report one delivery made with relays[i] = relay order[i]: REACHED counts as a
 * success, FAILED as a failure, NOT_TRIED as nothing.
 */
void relay_report_delivery(struct relay_group *g, const size_t *order, size_t n,
                           const struct smtp_delivery_result *res, uint64_t now_ms);
/* Earliest time a DOWN relay becomes eligible again (0 when one is available now). */
uint64_t relay_group_retry_at(const struct relay_group *g, uint64_t now_ms);

#endif
