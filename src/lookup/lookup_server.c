/*
 * The lookup role: owns the directory (domains, users, aliases, password
 * hashes) and answers the other roles: AUTH checks (hash verified on a worker
 * thread, failures delayed and throttled per client IP) and RCPT checks
 * (recipient resolution and relay control).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "filters/dnsbl.h"
#include "filters/greylist.h"
#include "lib-auth/password.h"
#include "lib-dns/dns_resolver.h"
#include "lib-route/directory.h"
#include "lib-route/route.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/workpool.h"
#include "lib/xalloc.h"
#include "lookup/lookup_client.h"
#include "lookup/lookup_mailauth.h"
#include "lookup/lookup_policy.h"
#include "master/proto.h"
#include "master/roles.h"

#define FAIL_SLOTS 1024
#define FAIL_WINDOW 300      /* seconds a failure is remembered */
#define FAIL_LOCKOUT 10      /* failures per IP in the window before we stop checking */

struct lookup {
	const struct mr_config *cfg;
	struct event_base *base;
	struct directory *dir;
	struct workpool *pool;
	struct route_options ropt;
	struct dns_resolver *dns;      /* DNSBL; NULL without zones or when it could not start */
	struct dnsbl_zone *ip_zones, *rhs_zones;
	struct dnsbl_settings ip_set, rhs_set;
	sqlite3 *grey;                 /* <data_dir>/db/greylist.db; NULL when off or unusable */
	struct greylist_settings grey_set;
	struct event *grey_timer;      /* hourly greylist_expire */
	struct {
		uint32_t hash;
		unsigned count;
		time_t last;
	} fails[FAIL_SLOTS];
};

static struct lookup L;

struct auth_job {
	struct ipc_conn *conn;
	uint32_t reqid;
	char *user, *password, *hash, *ip, *service;
	bool ok;
	bool tempfail;      /* the directory could not answer: 454, not a wrong password */
	struct event *delay_ev;
};

static uint32_t ip_hash(const char *ip)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *s = (const unsigned char *)ip; *s; s++)
		h = (h ^ *s) * 16777619u;
	return h;
}

static unsigned *fail_counter(const char *ip, time_t now)
{
	uint32_t h = ip_hash(ip);
	unsigned slot = h % FAIL_SLOTS;
	if (L.fails[slot].hash != h || now - L.fails[slot].last > FAIL_WINDOW) {
		L.fails[slot].hash = h;
		L.fails[slot].count = 0;
	}
	L.fails[slot].last = now;
	return &L.fails[slot].count;
}

/* Connections are freed only by their close callback, so a job keeps a plain pointer. */
static struct ipc_conn *live_conns[256];

static bool conn_alive(struct ipc_conn *c)
{
	for (size_t i = 0; i < 256; i++)
		if (live_conns[i] == c)
			return true;
	return false;
}

static void auth_reply(struct auth_job *j)
{
	if (conn_alive(j->conn)) {
		struct ipc_msg m;
		ipc_msg_init(&m, PROTO_LOOKUP_AUTH_R, j->reqid);
		ipc_put_u32(&m, (uint32_t)((j->ok ? LOOKUP_OK : j->tempfail ? LOOKUP_TEMPFAIL : LOOKUP_DENIED) + 1));
		char *maildir = NULL;
		if (j->ok)
			maildir = lookup_maildir_path(L.cfg, j->user);
		ipc_put_str(&m, j->ok ? j->user : NULL);
		ipc_put_str(&m, maildir);
		ipc_send(j->conn, &m);
		ipc_msg_deinit(&m);
		free(maildir);
	}
	char q[300];
	log_info("event=auth service=%s user=%s ip=%s result=%s", j->service, log_q(q, sizeof(q), j->user), j->ip,
	         j->ok ? "ok" : "failed");
	if (j->delay_ev != NULL)
		event_free(j->delay_ev);
	free(j->user);
	secret_free(j->password);
	free(j->hash);
	free(j->ip);
	free(j->service);
	free(j);
}

static void on_auth_delay(evutil_socket_t fd, short what, void *arg)
{
	auth_reply(arg);
}

static void auth_work(void *arg)
{
	struct auth_job *j = arg;
	/* Unknown users cost the same as known ones. */
	static const char dummy[] = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9NBCL6WvJfk0hnMd8zEnvJGjd5YX2lD";
	j->ok = password_verify(j->password, j->hash != NULL ? j->hash : dummy) && j->hash != NULL;
}

static void auth_done(void *arg)
{
	struct auth_job *j = arg;
	time_t now = time(NULL);
	unsigned *fails = fail_counter(j->ip, now);
	if (j->ok || j->tempfail) {
		if (j->ok)
			*fails = 0;
		auth_reply(j);
		return;
	}
	(*fails)++;
	/* Slow down guessing: 1 s, growing with the failures from this IP, at most 8 s. */
	unsigned delay = *fails < 8 ? *fails : 8;
	j->delay_ev = evtimer_new(L.base, on_auth_delay, j);
	struct timeval tv = { delay, 0 };
	evtimer_add(j->delay_ev, &tv);
}

static void handle_auth(struct ipc_conn *c, struct ipc_reader *r)
{
	struct auth_job *j = xcalloc(1, sizeof(*j));
	j->conn = c;
	j->reqid = r->reqid;
	j->service = ipc_get_strdup(r);
	j->user = ipc_get_strdup(r);
	j->password = ipc_get_strdup(r);
	j->ip = ipc_get_strdup(r);
	if (ipc_reader_end(r) < 0 || j->service == NULL || j->user == NULL || j->password == NULL || j->ip == NULL)
		log_panic("event=ipc_malformed type=auth");
	for (char *p = j->user; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	time_t now = time(NULL);
	if (*fail_counter(j->ip, now) >= FAIL_LOCKOUT) {
		/* Too many failures from this IP: refuse without checking, after the maximum delay. */
		log_warn("event=auth_throttled ip=%s", j->ip);
		j->ok = false;
		auth_done(j);
		return;
	}
	char *error = NULL;
	if (directory_user_get(L.dir, j->user, &j->hash, &error) < 0) {
		log_warn("event=directory_error error=\"%s\"", error);
		free(error);
		j->tempfail = true;
		auth_done(j);
		return;
	}
	workpool_submit(L.pool, auth_work, auth_done, j);
}

static void rcpt_reply(struct ipc_conn *c, uint32_t reqid, int code, const char *enhanced, const char *text)
{
	struct ipc_msg m;
	ipc_msg_init(&m, PROTO_LOOKUP_RCPT_R, reqid);
	ipc_put_u32(&m, (uint32_t)code);
	ipc_put_str(&m, enhanced);
	ipc_put_str(&m, text);
	ipc_send(c, &m);
	ipc_msg_deinit(&m);
}

static void handle_rcpt(struct ipc_conn *c, struct ipc_reader *r)
{
	char *address = ipc_get_strdup(r);
	char *ip = ipc_get_strdup(r);
	char *auth_user = ipc_get_strdup(r);
	uint32_t kind = ipc_get_u32(r);
	char *sender = ipc_get_strdup(r);
	if (ipc_reader_end(r) < 0 || address == NULL || ip == NULL)
		log_panic("event=ipc_malformed type=rcpt");
	struct lookup_rcpt_decision d;
	lookup_policy_rcpt(L.dir, L.cfg, &L.ropt, address, ip, auth_user, (int)kind, &d);
	/* Greylisting after the recipient itself was accepted: inbound, unauthenticated, untrusted. */
	if (d.code == 250 && L.grey != NULL && sender != NULL && kind == LISTEN_MX && auth_user == NULL &&
	    !lookup_policy_trusted(L.cfg, ip)) {
		unsigned retry = 0;
		enum greylist_verdict v = greylist_check(L.grey, &L.grey_set, ip, sender, address, time(NULL), &retry);
		char q1[300], q2[300];
		if (v == GREYLIST_DEFER) {
			char text[128];
			snprintf(text, sizeof(text), "Greylisted, try again in %u seconds", retry);
			log_info("event=greylisted ip=%s from=%s to=%s retry_in=%u", ip, log_q(q1, sizeof(q1), sender),
			         log_q(q2, sizeof(q2), address), retry);
			rcpt_reply(c, r->reqid, 451, "4.7.1", text);
			goto out;
		}
		if (v == GREYLIST_ERROR)
			log_warn("event=greylist_error ip=%s action=pass", ip);
	}
	rcpt_reply(c, r->reqid, d.code, d.enhanced, d.text);
out:
	free(address);
	free(ip);
	free(auth_user);
	free(sender);
}

/* ---- DNSBL / RHSBL (cfg->dnsbl) ---- */

struct dnsbl_job {
	struct ipc_conn *conn;
	uint32_t reqid;
	struct dnsbl_check *check;
};

static void dnsbl_reply(struct ipc_conn *c, uint32_t reqid, int score, const char *first, const char *hits,
                        unsigned failed)
{
	char h[1000];
	snprintf(h, sizeof(h), "%s", hits != NULL ? hits : "");
	struct ipc_msg m;
	ipc_msg_init(&m, PROTO_LOOKUP_DNSBL_R, reqid);
	ipc_put_u32(&m, (uint32_t)score);
	ipc_put_str(&m, first != NULL && strlen(first) < 250 ? first : NULL);
	ipc_put_str(&m, h);
	ipc_put_u32(&m, failed);
	ipc_send(c, &m);
	ipc_msg_deinit(&m);
}

static void on_dnsbl_done(void *arg, const struct dnsbl_result *res)
{
	struct dnsbl_job *j = arg;
	if (conn_alive(j->conn))
		dnsbl_reply(j->conn, j->reqid, res->score, res->first_zone, res->hits, res->tempfail_zones);
	free(j);
}

static void handle_dnsbl(struct ipc_conn *c, struct ipc_reader *r)
{
	char ip[64] = "";
	ipc_get_str(r, ip, sizeof(ip));
	char *domain = ipc_get_strdup(r);
	if (ipc_reader_end(r) < 0)
		log_panic("event=ipc_malformed type=dnsbl");
	const struct dnsbl_settings *set = domain != NULL ? &L.rhs_set : &L.ip_set;
	if (L.dns == NULL || set->zone_count == 0) {
		dnsbl_reply(c, r->reqid, 0, NULL, "", L.dns == NULL && set->zone_count > 0 ? 1 : 0);
		free(domain);
		return;
	}
	struct dnsbl_job *j = xcalloc(1, sizeof(*j));
	j->conn = c;
	j->reqid = r->reqid;
	j->check = dnsbl_check_start(L.base, L.dns, set, ip, domain, on_dnsbl_done, j);
	free(domain);
}

static void dnsbl_init(const struct mr_config *cfg)
{
	const struct conf_dnsbl *d = &cfg->dnsbl;
	if (d->zones_count == 0)
		return;
	L.ip_zones = xcalloc(d->zones_count, sizeof(*L.ip_zones));
	L.rhs_zones = xcalloc(d->zones_count, sizeof(*L.rhs_zones));
	for (size_t i = 0; i < d->zones_count; i++) {
		struct dnsbl_zone z = { .zone = d->zones[i].zone, .weight = d->zones[i].weight,
			                .rhsbl = d->zones[i].rhsbl, .codes = d->zones[i].codes };
		if (z.rhsbl)
			L.rhs_zones[L.rhs_set.zone_count++] = z;
		else
			L.ip_zones[L.ip_set.zone_count++] = z;
	}
	L.ip_set.zones = L.ip_zones;
	L.rhs_set.zones = L.rhs_zones;
	L.ip_set.threshold = L.rhs_set.threshold = (int)d->threshold;
	char *error = NULL;
	struct dns_resolver_settings rs = { .timeout_ms = 5000, .use_resolv_conf = true };
	L.dns = dns_resolver_new_with(L.base, (const char *const *)cfg->dns_forward, cfg->dns_forward_count, &rs,
	                              &error);
	if (L.dns == NULL) {
		log_warn("event=dnsbl_resolver_failed error=\"%s\"", error ? error : "?");
		free(error);
	}
}

/* ---- greylisting ---- */

static void on_grey_timer(evutil_socket_t fd, short what, void *arg)
{
	int n = greylist_expire(L.grey, &L.grey_set, time(NULL));
	if (n != 0)
		log_info("event=greylist_expire removed=%d", n);
}

static void greylist_open(const struct mr_config *cfg)
{
	if (!cfg->greylisting.enabled)
		return;
	L.grey_set = (struct greylist_settings){ .delay = cfg->greylisting.delay,
		                                 .retry_window = cfg->greylisting.retry_window,
		                                 .pass_ttl = cfg->greylisting.pass_ttl };
	char *path = conf_path(cfg, "db/greylist.db");
	const char *error = NULL;
	if (sqlite3_open_v2(path, &L.grey, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK ||
	    sqlite3_busy_timeout(L.grey, 2000) != SQLITE_OK || greylist_init(L.grey, &error) < 0) {
		log_warn("event=greylist_open_failed path=%s error=\"%s\" action=greylisting_off", path,
		         error ? error : L.grey ? sqlite3_errmsg(L.grey) : "out of memory");
		sqlite3_close(L.grey);
		L.grey = NULL;
		free(path);
		return;
	}
	(void)sqlite3_exec(L.grey, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL);
	free(path);
	L.grey_timer = event_new(L.base, -1, EV_PERSIST, on_grey_timer, NULL);
	struct timeval tv = { 3600, 0 };
	evtimer_add(L.grey_timer, &tv);
}

static void on_msg(struct ipc_conn *c, struct ipc_reader *r, int fd, void *arg)
{
	if (r->type == PROTO_LOOKUP_MAILAUTH) {
		lookup_mailauth_msg(c, r, fd); /* takes the spool fd */
		return;
	}
	if (fd >= 0)
		close(fd);
	switch (r->type) {
	case PROTO_LOOKUP_AUTH: handle_auth(c, r); break;
	case PROTO_LOOKUP_RCPT: handle_rcpt(c, r); break;
	case PROTO_LOOKUP_SPF: lookup_spf_msg(c, r); break;
	case PROTO_LOOKUP_SENDER: lookup_sender_msg(c, r); break;
	case PROTO_LOOKUP_DNSBL: handle_dnsbl(c, r); break;
	default: log_panic("event=ipc_unknown_type type=%u", r->type);
	}
}

static void on_close(struct ipc_conn *c, void *arg)
{
	for (size_t i = 0; i < 256; i++)
		if (live_conns[i] == c)
			live_conns[i] = NULL;
	ipc_conn_free_later(&c);
}

static void on_accept(struct ipc_server *s, int fd, uid_t uid, void *arg)
{
	size_t i = 0;
	while (i < 256 && live_conns[i] != NULL)
		i++;
	if (i == 256) {
		log_warn("event=too_many_ipc_clients");
		close(fd);
		return;
	}
	live_conns[i] = ipc_conn_new(L.base, fd, on_msg, on_close, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopexit(L.base, NULL);
}

void lookup_role_run(struct role_env *env)
{
	L.cfg = env->cfg;
	L.base = env->base;
	L.ropt.subaddress_separator = env->cfg->subaddress_separator;
	char *error = NULL;
	char *path = directory_path(env->cfg);
	L.dir = directory_open(path, false, &error);
	if (L.dir == NULL)
		log_fatal("event=directory_open_failed path=%s error=\"%s\"", path, error);
	free(path);
	L.pool = workpool_new(env->base, 2);
	lookup_mailauth_init(env->base, env->cfg, L.dir, &L.ropt, conn_alive);
	dnsbl_init(env->cfg);
	greylist_open(env->cfg);
	char *name = xasprintf("%s/lookup", env->ipc_prefix);
	uid_t allowed[2] = { env->uid, env->vuid };
	struct ipc_server *srv = ipc_server_new(env->base, name, allowed, 2, on_accept, NULL, &error);
	for (int tries = 0; srv == NULL && tries < 50; tries++) {
		/* A previous lookup process may still hold the name for a moment. */
		free(error);
		usleep(100000);
		srv = ipc_server_new(env->base, name, allowed, 2, on_accept, NULL, &error);
	}
	if (srv == NULL)
		log_fatal("event=ipc_listen_failed error=\"%s\"", error);
	free(name);
	struct event *st = evsignal_new(env->base, SIGTERM, on_signal, NULL);
	struct event *sh = evsignal_new(env->base, SIGHUP, on_signal, NULL);
	evsignal_add(st, NULL);
	evsignal_add(sh, NULL);
	log_info("event=ready");
	event_base_dispatch(env->base);
	ipc_server_free(&srv);
	workpool_free(&L.pool);
	lookup_mailauth_deinit();
	if (L.grey_timer != NULL)
		event_free(L.grey_timer);
	sqlite3_close(L.grey);
	dns_resolver_free(&L.dns);
	free(L.ip_zones);
	free(L.rhs_zones);
	directory_close(&L.dir);
	exit(0);
}
