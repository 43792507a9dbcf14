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

/* True when ip (text) is inside one of cfg->trusted_networks. */
bool lookup_policy_trusted(const struct mr_config *cfg, const char *ip);
/* True when ip (text) is inside cidr ("10.0.0.0/8", "::1/128", "127.0.0.1"). */
bool lookup_cidr_match(const char *cidr, const char *ip);
/* "<data_dir>/mail/<domain>/<localpart>" of a canonical address, allocated. */
char *lookup_maildir_path(const struct mr_config *cfg, const char *address);

#endif
