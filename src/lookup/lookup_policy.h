/*
 * lookup_policy: the RCPT-time decision, shared by the lookup role and
 * `mailroute explain` (same code path): recipient resolution, then relay
 * control. Never an open relay: a recipient outside our domains is accepted
 * only for an authenticated session or a client in trusted_networks; relay and
 * backup domains are accepted from anyone (that is what they are for).
 */
#ifndef MR_LOOKUP_POLICY_H
#define MR_LOOKUP_POLICY_H

#include <stdbool.h>

#include "conf/conf.h"
#include "lib-route/route.h"

struct lookup_rcpt_decision {
	int code;            /* 250 accept, else the SMTP reply */
	char enhanced[16];
	char text[512];
	enum route_status status;
};

void lookup_policy_rcpt(struct directory *dir, const struct mr_config *cfg, const struct route_options *ropt,
                        const char *address, const char *client_ip, const char *auth_user, int listen_kind,
                        struct lookup_rcpt_decision *d);

/*
 * The router: where one accepted SMTP recipient goes. The queue role calls this
 * at commit time and `mailroute explain` prints it, so both follow the same
 * path. Fills *targets_r (free with lookup_targets_free); res keeps the trace
 * when ropt->trace is set (release it with route_result_deinit). -1 on a
 * directory error.
 */
enum lookup_target_kind {
	LOOKUP_TARGET_LOCAL,      /* a mailbox: target = its Maildir++ root, folder or NULL */
	LOOKUP_TARGET_REMOTE,     /* outbound: target = relay "host[:port]" or "" for MX */
	LOOKUP_TARGET_NAMED,      /* a named target "webhook:x", "pipe:x" in target */
	LOOKUP_TARGET_UNROUTABLE, /* accepted earlier, unknown now (the directory changed) */
};
struct lookup_target {
	enum lookup_target_kind kind;
	char *address;
	char *target;
	char *folder;
};
int lookup_route_targets(struct directory *dir, const struct mr_config *cfg, const struct route_options *ropt,
                         const char *address, struct route_result *res, struct lookup_target **targets_r,
                         size_t *count_r, char **error_r);
void lookup_targets_free(struct lookup_target *t, size_t n);
const char *lookup_target_kind_name(enum lookup_target_kind kind);

/*
 * SRS (cfg->srs). lookup_srs_config fills *out with pointers into cfg (secret
 * first, then secrets) and returns false when SRS is off (no secret).
 * lookup_srs_reverse: 0 when address is not an SRS address in cfg->srs.domain
 * (or SRS is off); 1 with *orig_r (heap) when it verifies; -1 with a static
 * *error_r when it is SRS in our domain but forged, expired or malformed.
 * lookup_policy_rcpt accepts a valid one (even though the SRS domain need not
 * be in the directory) and refuses the rest with 550 5.1.1 "invalid SRS
 * address"; lookup_route_targets routes it to the original sender.
 */
struct srs_config;
bool lookup_srs_config(const struct mr_config *cfg, struct srs_config *out);
int lookup_srs_reverse(const struct mr_config *cfg, const char *address, char **orig_r, const char **error_r);

/* True when ip (text) is inside one of cfg->trusted_networks. */
bool lookup_policy_trusted(const struct mr_config *cfg, const char *ip);
/* True when ip (text) is inside cidr ("10.0.0.0/8", "::1/128", "127.0.0.1"). */
bool lookup_cidr_match(const char *cidr, const char *ip);
/* "<data_dir>/mail/<domain>/<localpart>" of a canonical address, allocated. */
char *lookup_maildir_path(const struct mr_config *cfg, const char *address);

#endif
