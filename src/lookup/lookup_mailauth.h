/*
 * lookup_mailauth: the lookup role's side of sender authentication (issue 6).
 *
 *   PROTO_LOOKUP_SPF       SPF of MAIL FROM at MAIL time (mx listener)
 *   PROTO_LOOKUP_SENDER    may this authenticated user use this envelope sender?
 *   PROTO_LOOKUP_MAILAUTH  end of data: SPF, DKIM, ARC, DMARC (mx listener, when
 *                          cfg->mailauth.verify) -> accept / reject / quarantine
 *                          + Authentication-Results; for authenticated senders the
 *                          From: check (553 5.7.1) and DKIM signing.
 *
 * DNS-bound work runs on this module's own worker threads (so slow DNS never
 * delays password checks) with blocking resolvers (dns_sync, one per running
 * job, kept for reuse) over cfg->dns_forward. Directory lookups stay on the
 * loop thread. DKIM keys are read from <data_dir>/dkim/<domain>/<selector>.pem:
 * the configured selector, else the newest .pem file.
 */
#ifndef MR_LOOKUP_MAILAUTH_H
#define MR_LOOKUP_MAILAUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/conf.h"
#include "lib-route/route.h"

struct event_base;
struct ipc_conn;
struct ipc_reader;

typedef bool lookup_conn_alive_fn(struct ipc_conn *c);

void lookup_mailauth_init(struct event_base *base, const struct mr_config *cfg, struct directory *dir,
                          const struct route_options *ropt, lookup_conn_alive_fn *alive);
void lookup_mailauth_deinit(void);

/* Message handlers (the reader is consumed; fd belongs to the handler). */
void lookup_spf_msg(struct ipc_conn *c, struct ipc_reader *r);
void lookup_sender_msg(struct ipc_conn *c, struct ipc_reader *r);
void lookup_mailauth_msg(struct ipc_conn *c, struct ipc_reader *r, int fd);

/*
 * May auth_user (canonical, lowercase) send as address? Yes for the null
 * sender, the user's own address, and an address that resolves (alias,
 * subaddress, catch-all...) to a local recipient that is the user.
 * 1 yes, 0 no, -1 directory error (*error_r allocated).
 */
int lookup_sender_allowed(struct directory *dir, const struct route_options *ropt, const char *auth_user,
                          const char *address, char **error_r);

/*
 * The address of a From: field value (after the colon): the angle-addr, or
 * the bare addr-spec; quoted strings and comments skipped. Returns the
 * number of addresses seen (0, 1, more) and the first one in out (lowercased
 * domain kept as written), or "" when none.
 */
size_t lookup_from_address(const char *value, size_t len, char *out, size_t size);

#endif
