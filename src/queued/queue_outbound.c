#include "queued/queue_outbound.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib-dns/dns_resolver.h"
#include "lib-route/directory.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "outbound/mta_sts.h"
#include "outbound/relay.h"
#include "queue/queue_envelope.h"
#include "queued/queue_forward.h"

#if __has_include("lib-route/relays.h")
#include "lib-route/relays.h"
#define HAVE_RELAYS 1
#endif

#define MAX_BATCH_RCPTS 100
/* Deliveries in flight to one destination (a domain's MX hosts or one relay route). */
#define MAX_PER_DESTINATION 20
#define MAX_GROUPS 256

struct pending_rcpt {
	unsigned idx;
	unsigned attempts;
};

struct batch {
	struct batch *next;
	char id[QUEUE_ID_SIZE];
	char *key;        /* destination: "mx:<domain>" or "relay:<name-or-host>" */
	char *domain;     /* the recipients' domain (MX delivery) */
	char *relay;      /* relay name/host or NULL */
	time_t arrival;
	struct pending_rcpt rcpts[MAX_BATCH_RCPTS];
	size_t count;
	/* while in flight */
	struct queue_outbound *ob;
	struct smtp_delivery *delivery;
	int fd;
	struct relay_group *group; /* when delivered through a relay group */
	size_t order[RELAY_GROUP_MAX];
	size_t order_count;
	struct queue_envelope *env;
};

struct queue_outbound {
	const struct mr_config *cfg;
	struct directory *dir;
	struct dns_resolver *dns;
	struct mta_sts *sts;          /* outbound.mta_sts (TLS policy, src/outbound/mta_sts.h) */
	char *tlsrpt_dir;
	struct smtp_client *client;
	queue_outbound_result_fn *fn;
	void *ctx;
	struct batch *collected;
	struct batch *inflight;
	unsigned inflight_count;
	struct relay_group *groups[MAX_GROUPS];
	size_t group_count;
	char *status_path;
};

static uint64_t now_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static enum smtp_tls_policy tls_policy(const char *s)
{
	if (s != NULL && strcmp(s, "none") == 0)
		return SMTP_TLS_NONE;
	if (s != NULL && strcmp(s, "require") == 0)
		return SMTP_TLS_REQUIRE;
	return SMTP_TLS_MAY;
}

struct queue_outbound *queue_outbound_new(struct event_base *base, const struct mr_config *cfg,
                                          struct directory *dir, queue_outbound_result_fn *fn, void *ctx,
                                          char **error_r)
{
	struct queue_outbound *ob = xcalloc(1, sizeof(*ob));
	ob->cfg = cfg;
	ob->dir = dir;
	ob->fn = fn;
	ob->ctx = ctx;
	struct dns_resolver_settings ds = { .use_resolv_conf = true,
	                                    .trust_anchor_file = cfg->outbound.dnssec_trust_anchor };
	ob->dns = dns_resolver_new_with(base, (const char *const *)cfg->dns_forward, cfg->dns_forward_count, &ds,
	                                error_r);
	if (ob->dns == NULL) {
		free(ob);
		return NULL;
	}
	/* Our own names and addresses: an MX list that leads back to us is a loop. */
	static const char *own_addrs[64];
	size_t nown = 0;
	static char addr_text[64][INET6_ADDRSTRLEN];
	for (size_t i = 0; i < cfg->listen_count && nown < 64; i++) {
		const struct sockaddr_storage *ss = &cfg->listen[i].addr;
		const void *a = ss->ss_family == AF_INET ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
		                                         : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
		if (inet_ntop(ss->ss_family, a, addr_text[nown], sizeof(addr_text[nown])) != NULL &&
		    strcmp(addr_text[nown], "0.0.0.0") != 0 && strcmp(addr_text[nown], "::") != 0) {
			own_addrs[nown] = addr_text[nown];
			nown++;
		}
	}
	static const char *own_names[1];
	own_names[0] = cfg->hostname;
	struct smtp_client_settings set = {
		.helo_name = cfg->hostname,
		.dns = ob->dns,
		.tls_ca_file = cfg->outbound.tls_ca_file,
		.timeouts = {
			.connect = cfg->outbound.connect_timeout * 1000,
			.banner = cfg->outbound.command_timeout * 1000,
			.helo = cfg->outbound.command_timeout * 1000,
			.mail = cfg->outbound.command_timeout * 1000,
			.rcpt = cfg->outbound.command_timeout * 1000,
			.data_init = cfg->outbound.command_timeout * 1000,
			.data_block = cfg->outbound.command_timeout * 1000,
			.data_final = cfg->outbound.data_timeout * 1000,
		},
		.mx_port = cfg->outbound.mx_port,
		.idle_ms = 5000,
		.own_names = own_names,
		.own_name_count = 1,
		.own_addrs = own_addrs,
		.own_addr_count = nown,
		.dane = cfg->outbound.dane,
	};
	/* TLS policy: DANE, MTA-STS, TLS-RPT records (src/outbound: dane.h, mta_sts.h, tlsrpt.h) */
	ob->tlsrpt_dir = xasprintf("%s/queue/tlsrpt", cfg->data_dir);
	set.tlsrpt_dir = ob->tlsrpt_dir;
	if (cfg->outbound.mta_sts) {
		char *sts_dir = xasprintf("%s/queue/mta-sts", cfg->data_dir);
		struct mta_sts_settings ss = { .dns = ob->dns, .cache_dir = sts_dir, .ca_file = cfg->outbound.tls_ca_file,
		                               .port = cfg->outbound.mta_sts_port, .tlsrpt_dir = ob->tlsrpt_dir,
		                               .timeout_ms = cfg->outbound.connect_timeout * 2000 };
		ob->sts = mta_sts_new(base, &ss);
		free(sts_dir);
		set.mta_sts = ob->sts;
	}
	ob->client = smtp_client_new(base, &set, error_r);
	if (ob->client == NULL) {
		mta_sts_free(&ob->sts);
		free(ob->tlsrpt_dir);
		dns_resolver_free(&ob->dns);
		free(ob);
		return NULL;
	}
	ob->status_path = xasprintf("%s/queue/relay-status.json", cfg->data_dir);
	return ob;
}

void queue_outbound_free(struct queue_outbound **obp)
{
	struct queue_outbound *ob = *obp;
	if (ob == NULL)
		return;
	*obp = NULL;
	smtp_client_free(&ob->client);
	mta_sts_free(&ob->sts);
	free(ob->tlsrpt_dir);
	dns_resolver_free(&ob->dns);
	for (size_t i = 0; i < ob->group_count; i++)
		relay_group_free(&ob->groups[i]);
	free(ob->status_path);
	free(ob);
}

bool queue_outbound_busy(const struct queue_outbound *ob, const char *id, unsigned idx)
{
	for (const struct batch *b = ob->inflight; b != NULL; b = b->next)
		if (strcmp(b->id, id) == 0)
			for (size_t i = 0; i < b->count; i++)
				if (b->rcpts[i].idx == idx)
					return true;
	for (const struct batch *b = ob->collected; b != NULL; b = b->next)
		if (strcmp(b->id, id) == 0)
			for (size_t i = 0; i < b->count; i++)
				if (b->rcpts[i].idx == idx)
					return true;
	return false;
}

static void batch_free(struct batch *b)
{
	if (b->fd >= 0)
		close(b->fd);
	queue_envelope_free(&b->env);
	free(b->key);
	free(b->domain);
	free(b->relay);
	free(b);
}

void queue_outbound_collect(struct queue_outbound *ob, const struct queue_due *due)
{
	const char *at = strrchr(due->address, '@');
	const char *domain = at ? at + 1 : "";
	char *relay = NULL;
	if (due->target[0] != '\0') {
		relay = xstrdup(due->target);
	} else {
#ifdef HAVE_RELAYS
		char *error = NULL;
		if (transport_get(ob->dir, domain, &relay, &error) < 0) {
			log_warn("event=transport_lookup_failed domain=%s error=\"%s\"", domain, error);
			free(error);
			relay = NULL;
		}
#endif
	}
	char *key = relay ? xasprintf("relay:%s", relay) : xasprintf("mx:%s", domain);
	struct batch *b = ob->collected;
	while (b != NULL && !(strcmp(b->id, due->id) == 0 && strcasecmp(b->key, key) == 0 && b->count < MAX_BATCH_RCPTS))
		b = b->next;
	if (b == NULL) {
		b = xcalloc(1, sizeof(*b));
		memcpy(b->id, due->id, sizeof(b->id));
		b->key = key;
		b->domain = xstrdup(domain);
		b->relay = relay;
		b->arrival = due->arrival;
		b->fd = -1;
		b->next = ob->collected;
		ob->collected = b;
	} else {
		free(key);
		free(relay);
	}
	b->rcpts[b->count++] = (struct pending_rcpt){ .idx = due->idx, .attempts = due->attempts };
}

/* ---- relay groups ---- */

static void write_status(struct queue_outbound *ob)
{
#ifdef HAVE_RELAYS
	static const char *const names[] = { "up", "down", "probing" };
	struct relay_status list[256];
	size_t n = 0;
	for (size_t g = 0; g < ob->group_count; g++) {
		for (size_t i = 0; i < relay_group_count(ob->groups[g]) && n < 256; i++) {
			const struct relay_entry *e = relay_group_get(ob->groups[g], i);
			list[n++] = (struct relay_status){ .name = e->name, .state = (char *)names[e->health],
				                           .failures = e->consecutive_failures,
				                           .until = (int64_t)(e->down_until_ms / 1000) };
		}
	}
	char *error = NULL;
	if (relay_status_write(ob->status_path, list, n, &error) < 0) {
		log_warn("event=relay_status_write_failed error=\"%s\"", error ? error : "?");
		free(error);
	}
#else
	(void)ob;
#endif
}

/* "host[:port]" or "[v6]:port" into a relay host. */
static void parse_hostport(const char *s, char *host, size_t size, unsigned *port)
{
	*port = 25;
	if (s[0] == '[') {
		const char *e = strchr(s, ']');
		size_t n = e ? (size_t)(e - s - 1) : strlen(s + 1);
		snprintf(host, size, "%.*s", (int)n, s + 1);
		if (e != NULL && e[1] == ':')
			*port = (unsigned)strtoul(e + 2, NULL, 10);
		return;
	}
	const char *c = strrchr(s, ':');
	if (c != NULL && strchr(s, ':') == c) {
		snprintf(host, size, "%.*s", (int)(c - s), s);
		*port = (unsigned)strtoul(c + 1, NULL, 10);
	} else {
		snprintf(host, size, "%s", s);
	}
	if (*port == 0 || *port > 65535)
		*port = 25;
}

static struct relay_group *group_for(struct queue_outbound *ob, const char *name)
{
	for (size_t i = 0; i < ob->group_count; i++)
		if (strcmp(relay_group_name(ob->groups[i]), name) == 0)
			return ob->groups[i];
	if (ob->group_count == MAX_GROUPS)
		return NULL;
	struct relay_group *g = relay_group_new(name, ob->cfg->outbound.relay_fail_threshold,
	                                        ob->cfg->outbound.relay_cooldown * 1000);
#ifdef HAVE_RELAYS
	struct relay_info *list = NULL;
	size_t n = 0;
	char *error = NULL;
	if (relays_group(ob->dir, name, &list, &n, &error) > 0) {
		for (size_t i = 0; i < n; i++)
			relay_group_add(g, list[i].name, list[i].host, list[i].port ? list[i].port : 25,
			                list[i].weight ? list[i].weight : 1, tls_policy(list[i].tls));
		for (size_t i = 0; i < n; i++)
			relay_info_deinit(&list[i]);
		free(list);
	}
	free(error);
#endif
	if (relay_group_count(g) == 0) {
		/* Not a configured relay: a literal "host[:port]" (domain add --relay). */
		char host[256];
		unsigned port;
		parse_hostport(name, host, sizeof(host), &port);
		relay_group_add(g, name, host, port, 1, tls_policy(ob->cfg->outbound.tls));
	}
	ob->groups[ob->group_count++] = g;
	return g;
}

/* ---- delivery ---- */

static void on_result(void *arg, const struct smtp_delivery_result *res)
{
	struct batch *b = arg;
	struct queue_outbound *ob = b->ob;
	b->delivery = NULL;
	if (b->group != NULL) {
		relay_report_delivery(b->group, b->order, b->order_count, res, now_ms());
		write_status(ob);
	}
	/* Unlink from in-flight first: the callback may start new work. */
	struct batch **pp = &ob->inflight;
	while (*pp != NULL && *pp != b)
		pp = &(*pp)->next;
	if (*pp == b)
		*pp = b->next;
	ob->inflight_count--;
	for (size_t i = 0; i < b->count && i < res->rcpt_count; i++)
		ob->fn(ob->ctx, b->id, b->rcpts[i].idx, b->rcpts[i].attempts, b->arrival, &res->rcpts[i]);
	batch_free(b);
}

static void fail_batch(struct queue_outbound *ob, struct batch *b, int code, const char *enh, const char *text)
{
	struct smtp_rcpt_result r = { .status = code >= 500 ? SMTP_RCPT_PERMFAIL : SMTP_RCPT_TEMPFAIL, .code = code,
		                      .enh = enh, .text = text, .host = "", .addr = "" };
	for (size_t i = 0; i < b->count; i++)
		ob->fn(ob->ctx, b->id, b->rcpts[i].idx, b->rcpts[i].attempts, b->arrival, &r);
	batch_free(b);
}

static void start(struct queue_outbound *ob, struct queue_store *store, struct batch *b)
{
	char *error = NULL;
	if (queue_store_get(store, b->id, &b->env, &error) <= 0) {
		log_warn("event=queue_read_failed id=%s error=\"%s\"", b->id, error ? error : "missing");
		free(error);
		fail_batch(ob, b, 451, "4.3.0", "queue read failed");
		return;
	}
	b->fd = queue_store_open_spool(store, b->id);
	if (b->fd < 0) {
		log_warn("event=spool_missing id=%s error=\"%s\"", b->id, strerror(errno));
		fail_batch(ob, b, 451, "4.3.0", "spool file unreadable");
		return;
	}
	struct smtp_envelope_rcpt rc[MAX_BATCH_RCPTS];
	char notify[MAX_BATCH_RCPTS][40];
	size_t n = 0;
	bool forward = false; /* a recipient forwarded from one of our addresses: SRS and ARC */
	for (size_t i = 0; i < b->count; i++) {
		const struct queue_rcpt *q = NULL;
		for (size_t k = 0; k < b->env->rcpt_count; k++)
			if (b->env->rcpts[k].idx == b->rcpts[i].idx)
				q = &b->env->rcpts[k];
		if (q == NULL)
			continue;
		notify[n][0] = '\0';
		if (q->notify & QUEUE_NOTIFY_NEVER)
			snprintf(notify[n], sizeof(notify[n]), "NEVER");
		else if (q->notify != 0)
			snprintf(notify[n], sizeof(notify[n]), "%s%s%s%s%s", q->notify & QUEUE_NOTIFY_SUCCESS ? "SUCCESS" : "",
			         (q->notify & QUEUE_NOTIFY_SUCCESS) && (q->notify & (QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY)) ? "," : "",
			         q->notify & QUEUE_NOTIFY_FAILURE ? "FAILURE" : "",
			         (q->notify & QUEUE_NOTIFY_FAILURE) && (q->notify & QUEUE_NOTIFY_DELAY) ? "," : "",
			         q->notify & QUEUE_NOTIFY_DELAY ? "DELAY" : "");
		forward = forward || queue_forward_is_forward(ob->cfg, ob->dir, b->env->sender, q->orcpt);
		rc[n] = (struct smtp_envelope_rcpt){ .address = q->address, .notify = notify[n][0] ? notify[n] : NULL,
			                             .orcpt = q->orcpt };
		b->rcpts[n] = b->rcpts[i];
		n++;
	}
	b->count = n;
	if (n == 0) {
		batch_free(b);
		return;
	}
	char *srs_sender = forward ? queue_forward_srs_sender(ob->cfg, b->env->sender) : NULL;
	struct smtp_envelope env = {
		.queue_id = b->id,
		.sender = srs_sender != NULL ? srs_sender : b->env->sender,
		.envid = b->env->envid,
		.ret = b->env->ret == QUEUE_RET_FULL ? "FULL" : b->env->ret == QUEUE_RET_HDRS ? "HDRS" : NULL,
		.smtputf8 = b->env->smtputf8,
		.body_8bit = b->env->body_type == QUEUE_BODY_8BITMIME,
		.rcpts = rc,
		.rcpt_count = n,
	};
	struct smtp_destination dest = { .domain = b->domain, .tls = tls_policy(ob->cfg->outbound.tls) };
	struct smtp_relay_host hosts[RELAY_GROUP_MAX];
	if (b->relay != NULL) {
		b->group = group_for(ob, b->relay);
		b->order_count = b->group ? relay_group_order(b->group, now_ms(), b->order, RELAY_GROUP_MAX) : 0;
		if (b->order_count == 0) {
			fail_batch(ob, b, 451, "4.4.1", "no relay of the group is available (all in cool-down)");
			free(srs_sender);
			return;
		}
		enum smtp_tls_policy tls = SMTP_TLS_MAY;
		for (size_t i = 0; i < b->order_count; i++) {
			const struct relay_entry *e = relay_group_get(b->group, b->order[i]);
			hosts[i] = (struct smtp_relay_host){ .host = e->host, .port = e->port };
			if (i == 0)
				tls = e->tls;
		}
		dest.relays = hosts;
		dest.relay_count = b->order_count;
		dest.tls = tls;
	}
	/* Forwarded: an ARC set over exactly what goes out (our header fields + the spool file). */
	int ffd = forward ? queue_forward_memfd(ob->cfg, b->id, b->env->headers, b->fd) : -1;
	if (ffd >= 0) {
		close(b->fd);
		b->fd = ffd;
	}
	/* The transaction carries our prepended header fields too: send them with a memfd copy. */
	if (ffd < 0 && b->env->headers != NULL && b->env->headers[0] != '\0') {
		int mfd = memfd_create("mailroute-out", MFD_CLOEXEC);
		size_t hl = strlen(b->env->headers);
		bool ok = mfd >= 0 && write(mfd, b->env->headers, hl) == (ssize_t)hl;
		char buf[65536];
		off_t off = 0;
		ssize_t r = 0;
		while (ok && (r = pread(b->fd, buf, sizeof(buf), off)) > 0) {
			if (write(mfd, buf, (size_t)r) != r)
				ok = false;
			off += r;
		}
		if (!ok || r < 0) {
			/* Never send a truncated message: try again later. */
			if (mfd >= 0)
				close(mfd);
			free(srs_sender);
			fail_batch(ob, b, 451, "4.3.0", "could not prepare the message for sending");
			return;
		}
		close(b->fd);
		b->fd = mfd;
	}
	b->ob = ob;
	b->next = ob->inflight;
	ob->inflight = b;
	ob->inflight_count++;
	log_info("event=outbound_start id=%s rcpts=%zu destination=%s%s%s", b->id, n, b->key,
	         srs_sender != NULL ? " srs_sender=" : "", srs_sender != NULL ? srs_sender : "");
	b->delivery = smtp_deliver(ob->client, &env, b->fd, &dest, on_result, b);
	free(srs_sender);
}

static unsigned inflight_to(const struct queue_outbound *ob, const char *key)
{
	unsigned n = 0;
	for (const struct batch *b = ob->inflight; b != NULL; b = b->next)
		if (strcasecmp(b->key, key) == 0)
			n++;
	return n;
}

void queue_outbound_dispatch(struct queue_outbound *ob, struct queue_store *store)
{
	struct batch *list = ob->collected;
	ob->collected = NULL;
	while (list != NULL) {
		struct batch *b = list;
		list = b->next;
		b->next = NULL;
		if (ob->inflight_count >= ob->cfg->outbound.max_concurrency ||
		    inflight_to(ob, b->key) >= MAX_PER_DESTINATION) {
			batch_free(b); /* picked up again by a later scan */
			continue;
		}
		start(ob, store, b);
	}
}
