/*
 * queue_forward: what remote delivery (queue_outbound.c start()) does for a
 * forwarded message, so that it keeps passing SPF/DMARC downstream:
 *
 *  - forwarding = a remote recipient whose original recipient (ORCPT,
 *    "rfc822;addr", which the router sets to the RCPT the message came in
 *    for) is in one of our local domains, while the envelope sender is not
 *    null and not in one of our local domains (nor the SRS domain);
 *  - SRS: the MAIL FROM becomes srs_forward(sender) (config `srs:`);
 *  - ARC (RFC 8617): one ARC set is prepended, sealed with our DKIM key for
 *    the SRS domain, else the hostname, else the hostname's parent domain
 *    (<data_dir>/dkim/<domain>/<selector>.pem, the configured dkim.selector or
 *    the newest .pem). No key: no ARC (logged once).
 *
 * cv= comes from the ARC validation the lookup role ran at receipt
 * (arc_verify inside mailauth_check, recorded as "arc=..." in OUR
 * Authentication-Results field in the envelope's header block): no earlier
 * ARC-Seal in the message is cv=none; a chain with arc=pass is pass; any other
 * verdict is fail. A chain with no verdict of ours (mail_auth off) is not
 * sealed: the queue role does not run DNS lookups on its event loop. Only
 * the envelope header block (which we wrote) is searched for our A-R: a
 * field claiming our authserv-id inside the message itself could be forged.
 * The ARC-Authentication-Results value is our A-R value (unfolded), or
 * "<authserv_id>; none" when there is none.
 */
#ifndef MR_QUEUE_FORWARD_H
#define MR_QUEUE_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct directory;
struct mr_config;

/* Is domain one of our local domains (a LOCAL directory domain, or an alias
   of one)? Directory errors count as "no". */
bool queue_forward_domain_local(struct directory *dir, const char *domain);

/* Is this recipient forwarded mail (see above)? orcpt may be NULL. */
bool queue_forward_is_forward(const struct mr_config *cfg, struct directory *dir, const char *sender,
                              const char *orcpt);

/* The SRS-rewritten sender (heap), or NULL to keep the sender (SRS off, null
   sender, nothing to rewrite, or an error, which is logged). */
char *queue_forward_srs_sender(const struct mr_config *cfg, const char *sender);

/*
 * Pure: the ARC set for msg (the exact bytes that go out, our header block
 * first). header_block is the envelope's header block (searched for our A-R;
 * may be NULL). Returns 1 with *fields_r (heap, to prepend), 0 when no set is
 * to be added (*why_r says why: a dead chain, an unverified chain), -1 with
 * *why_r on an error.
 */
int queue_forward_arc_seal(const char *msg, size_t len, const char *header_block, const char *authserv_id,
                           const char *domain, const char *selector, const char *key_pem, time_t now,
                           char **fields_r, const char **why_r);

/* The A-R value claiming authserv_id in header_block (heap, unfolded), or NULL. */
char *queue_forward_our_authres(const char *header_block, const char *authserv_id);

/*
 * Find our ARC key: 1 with *domain_r, *selector_r, *pem_r (heap; the key is
 * wiped by the caller with queue_forward_key_free), 0 if there is none.
 */
int queue_forward_key(const struct mr_config *cfg, char **domain_r, char **selector_r, char **pem_r);
void queue_forward_key_free(char **domain, char **selector, char **pem);

/* The whole step for start(): msg/len is what goes out. Returns the ARC
   fields to prepend (heap) or NULL (logged). */
char *queue_forward_arc(const struct mr_config *cfg, const char *queue_id, const char *msg, size_t len,
                        const char *header_block);

/* For a forwarded message: a memfd (MFD_CLOEXEC, offset 0) holding the ARC
   fields (when sealed), then header_block (may be NULL), then the spool
   file's content; -1 on an error (logged; the caller sends as before). */
int queue_forward_memfd(const struct mr_config *cfg, const char *queue_id, const char *header_block,
                        int spool_fd);

#endif
