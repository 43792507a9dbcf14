/*
 * milter_chain: several milters in configured order for one SMTP session.
 * Same stage functions and contract as milter_client (one call at a time,
 * callback exactly once, later on the loop, never after milter_chain_free).
 *
 * Each stage runs the milters one after another. The first REJECT, TEMPFAIL
 * or DISCARD ends the stage with that result (later milters are not asked);
 * CONTINUE and ACCEPT go on to the next milter (a milter's ACCEPT only ends
 * that milter's part, as in Postfix). The chain's result is CONTINUE at
 * connect..data and ACCEPT at end of message when nobody refused. A failed
 * milter whose default is accept is skipped (result.failed set, error kept).
 * Every milter sees the original message; the modifications of all milters
 * are returned in chain order (result.mods, each with its milter's name).
 */
#ifndef MR_MILTER_CHAIN_H
#define MR_MILTER_CHAIN_H

#include "lib-milter/milter_client.h"

struct milter_chain;

/* n settings (copied); n may be 0 (every stage answers CONTINUE/ACCEPT). */
struct milter_chain *milter_chain_new(struct event_base *base, const struct milter_settings *set, size_t n);
void milter_chain_free(struct milter_chain **c);

void milter_chain_connect(struct milter_chain *c, const struct milter_conn_info *info, milter_callback *cb,
                          void *arg);
void milter_chain_helo(struct milter_chain *c, const char *helo, const char *tls_version, milter_callback *cb,
                       void *arg);
void milter_chain_mail(struct milter_chain *c, const char *from, const char *const *args, size_t nargs,
                       const char *auth_user, milter_callback *cb, void *arg);
void milter_chain_rcpt(struct milter_chain *c, const char *rcpt, const char *const *args, size_t nargs,
                       milter_callback *cb, void *arg);
void milter_chain_data(struct milter_chain *c, const char *queue_id, milter_callback *cb, void *arg);
void milter_chain_message(struct milter_chain *c, int fd, uint64_t size, const char *queue_id,
                          milter_callback *cb, void *arg);
void milter_chain_abort(struct milter_chain *c);

#endif
