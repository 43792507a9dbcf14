#include "lookup/lookup_policy.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib-auth/srs.h"
#include "lib/log.h"
#include "lib/xalloc.h"

bool lookup_cidr_match(const char *cidr, const char *ip)
{
	char net[64];
	const char *slash = strchr(cidr, '/');
	size_t n = slash ? (size_t)(slash - cidr) : strlen(cidr);
	if (n >= sizeof(net))
		return false;
	memcpy(net, cidr, n);
	net[n] = '\0';
	unsigned char a[16], b[16];
	int fam = strchr(net, ':') ? AF_INET6 : AF_INET;
	int ipfam = strchr(ip, ':') ? AF_INET6 : AF_INET;
	if (inet_pton(fam, net, a) != 1 || inet_pton(ipfam, ip, b) != 1)
		return false;
	if (fam != ipfam) {
		/* An IPv4-mapped IPv6 client against an IPv4 network. */
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		if (fam == AF_INET && ipfam == AF_INET6 && memcmp(b, mapped, 12) == 0)
			memmove(b, b + 12, 4);
		else
			return false;
	}
	int bits = fam == AF_INET ? 32 : 128;
	int prefix = bits;
	if (slash != NULL) {
		char *end;
		long v = strtol(slash + 1, &end, 10);
		if (*end != '\0' || v < 0 || v > bits)
			return false;
		prefix = (int)v;
	}
	for (int i = 0; i < prefix; i++) {
		int byte = i / 8, bit = 7 - i % 8;
		if (((a[byte] >> bit) & 1) != ((b[byte] >> bit) & 1))
			return false;
	}
	return true;
}

bool lookup_policy_trusted(const struct mr_config *cfg, const char *ip)
{
	for (size_t i = 0; i < cfg->trusted_networks_count; i++)
		if (lookup_cidr_match(cfg->trusted_networks[i], ip))
			return true;
	return false;
}

char *lookup_maildir_path(const struct mr_config *cfg, const char *address)
{
	const char *at = strrchr(address, '@');
	if (at == NULL)
		return xasprintf("%s/mail/%s", cfg->data_dir, address);
	return xasprintf("%s/mail/%s/%.*s", cfg->data_dir, at + 1, (int)(at - address), address);
}

static void decide(struct lookup_rcpt_decision *d, int code, const char *enhanced, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void decide(struct lookup_rcpt_decision *d, int code, const char *enhanced, const char *fmt, ...)
{
	d->code = code;
	snprintf(d->enhanced, sizeof(d->enhanced), "%s", enhanced);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->text, sizeof(d->text), fmt, ap);
	va_end(ap);
}

bool lookup_srs_config(const struct mr_config *cfg, struct srs_config *out)
{
	memset(out, 0, sizeof(*out));
	size_t n = 0;
	if (cfg->srs.secret != NULL)
		out->secrets[n++] = cfg->srs.secret;
	for (size_t i = 0; i < cfg->srs.secrets_count && n < SRS_MAX_SECRETS; i++)
		out->secrets[n++] = cfg->srs.secrets[i];
	out->domain = cfg->srs.domain != NULL ? cfg->srs.domain : cfg->hostname;
	out->max_age_days = cfg->srs.max_age_days;
	return n > 0 && out->domain != NULL;
}

int lookup_srs_reverse(const struct mr_config *cfg, const char *address, char **orig_r, const char **error_r)
{
	*orig_r = NULL;
	struct srs_config sc;
	const char *at = strrchr(address, '@');
	if (at == NULL || !lookup_srs_config(cfg, &sc) || strcasecmp(at + 1, sc.domain) != 0)
		return 0;
	return srs_reverse(&sc, address, 0, orig_r, error_r);
}

void lookup_policy_rcpt(struct directory *dir, const struct mr_config *cfg, const struct route_options *ropt,
                        const char *address, const char *client_ip, const char *auth_user, int listen_kind,
                        struct lookup_rcpt_decision *d)
{
	struct route_result res;
	char *error = NULL;
	memset(&res, 0, sizeof(res));
	const char *at = strrchr(address, '@');
	bool literal = at != NULL && at[1] == '[';
	/* A bounce to one of our SRS addresses: decided for the original sender, who
	   may be anywhere (the hash is the authorization to relay back). */
	char *orig = NULL;
	const char *why = NULL;
	int srs = literal ? 0 : lookup_srs_reverse(cfg, address, &orig, &why);
	if (srs < 0) {
		log_info("event=srs_invalid address=%s error=\"%s\"", address, why);
		d->status = ROUTE_UNKNOWN_USER;
		decide(d, 550, "5.1.1", "<%s>: Recipient address rejected: invalid SRS address", address);
		return;
	}
	if (srs > 0) {
		lookup_policy_rcpt(dir, cfg, ropt, orig, client_ip, auth_user, listen_kind, d);
		if (d->code == 554 && d->status == ROUTE_NOT_LOCAL)
			decide(d, 250, "2.1.5", "Ok");
		free(orig);
		return;
	}
	int r = literal ? 1 : route_resolve(dir, ropt, address, &res, &error);
	if (literal)
		res.status = ROUTE_NOT_LOCAL;
	d->status = res.status;
	if (r < 0) {
		log_warn("event=route_error address=%s error=\"%s\"", address, error ? error : "?");
		free(error);
		decide(d, 451, "4.3.0", "<%s>: Temporary lookup failure", address);
		route_result_deinit(&res);
		return;
	}
	switch (res.status) {
	case ROUTE_OK:
		decide(d, 250, "2.1.5", "Ok");
		break;
	case ROUTE_UNKNOWN_USER:
		decide(d, 550, "5.1.1", "<%s>: Recipient address rejected: User unknown", address);
		break;
	case ROUTE_LOOP:
		decide(d, 550, "5.4.6", "<%s>: Recipient address rejected: alias loop", address);
		break;
	case ROUTE_BAD_ADDRESS:
		decide(d, 501, "5.1.3", "<%s>: Bad recipient address syntax", address);
		break;
	case ROUTE_NOT_LOCAL:
		if (!literal && res.domain_known) {
			/* relay and backup domains: we are an MX for them */
			decide(d, 250, "2.1.5", "Ok");
		} else if (auth_user != NULL || lookup_policy_trusted(cfg, client_ip)) {
			decide(d, 250, "2.1.5", "Ok");
		} else {
			decide(d, 554, "5.7.1", "<%s>: Relay access denied", address);
		}
		break;
	}
	route_result_deinit(&res);
}

/* The configured relay of the address's domain when it is one of our relay/backup domains, else NULL. */
static char *remote_relay(struct directory *dir, const char *address)
{
	const char *at = strrchr(address, '@');
	if (at == NULL || at[1] == '[')
		return NULL;
	struct directory_domain dom;
	memset(&dom, 0, sizeof(dom));
	char *error = NULL, *relay = NULL;
	if (directory_domain_get(dir, at + 1, &dom, &error) > 0 && dom.relay != NULL && dom.relay[0] != '\0')
		relay = xstrdup(dom.relay);
	directory_domain_deinit(&dom);
	free(error);
	return relay;
}

static void add_target(struct lookup_target **t, size_t *n, enum lookup_target_kind kind, const char *address,
                       const char *target, const char *folder)
{
	*t = xreallocarray(*t, *n + 1, sizeof(**t));
	(*t)[*n] = (struct lookup_target){
		.kind = kind,
		.address = xstrdup(address),
		.target = xstrdup(target ? target : ""),
		.folder = folder ? xstrdup(folder) : NULL,
	};
	(*n)++;
}

int lookup_route_targets(struct directory *dir, const struct mr_config *cfg, const struct route_options *ropt,
                         const char *address, struct route_result *res, struct lookup_target **targets_r,
                         size_t *count_r, char **error_r)
{
	*targets_r = NULL;
	*count_r = 0;
	memset(res, 0, sizeof(*res));
	const char *at = strrchr(address, '@');
	bool literal = at != NULL && at[1] == '[';
	char *orig = NULL;
	const char *why = NULL;
	int srs = literal ? 0 : lookup_srs_reverse(cfg, address, &orig, &why);
	if (srs > 0) {
		/* SRS: the original sender's route (local mailbox or remote), traced first. */
		int r = lookup_route_targets(dir, cfg, ropt, orig, res, targets_r, count_r, error_r);
		if (r == 0 && ropt != NULL && ropt->trace) {
			res->trace = xreallocarray(res->trace, res->trace_count + 1, sizeof(*res->trace));
			memmove(res->trace + 1, res->trace, res->trace_count * sizeof(*res->trace));
			res->trace[0] = xasprintf("srs: %s reverses to %s", address, orig);
			res->trace_count++;
		}
		free(orig);
		return r;
	}
	if (srs < 0) {
		res->status = ROUTE_UNKNOWN_USER;
		add_target(targets_r, count_r, LOOKUP_TARGET_UNROUTABLE, address, "unroutable", NULL);
		return 0;
	}
	if (literal) {
		res->status = ROUTE_NOT_LOCAL;
	} else if (route_resolve(dir, ropt, address, res, error_r) < 0) {
		return -1;
	}
	switch (res->status) {
	case ROUTE_OK:
		for (size_t i = 0; i < res->rcpt_count; i++) {
			const struct route_recipient *rc = &res->rcpt[i];
			if (rc->kind == ROUTE_LOCAL) {
				char *maildir = lookup_maildir_path(cfg, rc->address);
				add_target(targets_r, count_r, LOOKUP_TARGET_LOCAL, rc->address, maildir, rc->folder);
				free(maildir);
			} else if (rc->kind == ROUTE_REMOTE) {
				/* An alias target in one of our relay/backup domains goes through that domain's relay. */
				char *relay = remote_relay(dir, rc->address);
				add_target(targets_r, count_r, LOOKUP_TARGET_REMOTE, rc->address, relay ? relay : "", NULL);
				free(relay);
			} else {
				add_target(targets_r, count_r, LOOKUP_TARGET_NAMED, rc->address, rc->address, NULL);
			}
		}
		break;
	case ROUTE_NOT_LOCAL:
		add_target(targets_r, count_r, LOOKUP_TARGET_REMOTE, address, res->relay ? res->relay : "", NULL);
		break;
	default:
		add_target(targets_r, count_r, LOOKUP_TARGET_UNROUTABLE, address, "unroutable", NULL);
		break;
	}
	return 0;
}

void lookup_targets_free(struct lookup_target *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(t[i].address);
		free(t[i].target);
		free(t[i].folder);
	}
	free(t);
}

const char *lookup_target_kind_name(enum lookup_target_kind kind)
{
	switch (kind) {
	case LOOKUP_TARGET_LOCAL: return "mailbox";
	case LOOKUP_TARGET_REMOTE: return "remote";
	case LOOKUP_TARGET_NAMED: return "named";
	case LOOKUP_TARGET_UNROUTABLE: return "unroutable";
	}
	return "?";
}
