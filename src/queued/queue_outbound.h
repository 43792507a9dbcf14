/*
 * queue_outbound: the queue role's remote deliveries. During a scheduler scan
 * the due remote recipients are collected and grouped by message and
 * destination (the recipient domain's MX hosts, a relay or relay group chosen by
 * the domain, a transport or a rule); then each group is one smtp_deliver()
 * call. Results come back per recipient through the callback, which records
 * them (done, deferred, bounced). Relay groups keep their health (weights,
 * failures, cool-down) for the life of the process and write it to
 * <data_dir>/queue/relay-status.json for `mailroute relay status`.
 */
#ifndef MR_QUEUE_OUTBOUND_H
#define MR_QUEUE_OUTBOUND_H

#include <stdbool.h>
#include <time.h>

#include "conf/conf.h"
#include "outbound/smtp_client.h"
#include "queue/queue_store.h"

struct event_base;
struct directory;
struct queue_outbound;

typedef void queue_outbound_result_fn(void *ctx, const char *id, unsigned idx, unsigned attempts, time_t arrival,
                                      const struct smtp_rcpt_result *r);

struct queue_outbound *queue_outbound_new(struct event_base *base, const struct mr_config *cfg,
                                          struct directory *dir, queue_outbound_result_fn *fn, void *ctx,
                                          char **error_r);
void queue_outbound_free(struct queue_outbound **ob);
/* During a scan: remember one due remote recipient. */
void queue_outbound_collect(struct queue_outbound *ob, const struct queue_due *due);
/* After the scan: start one delivery per (message, destination). */
void queue_outbound_dispatch(struct queue_outbound *ob, struct queue_store *store);
/* True while recipient idx of id is being delivered. */
bool queue_outbound_busy(const struct queue_outbound *ob, const char *id, unsigned idx);

#endif
