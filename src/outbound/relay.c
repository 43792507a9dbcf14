#include "outbound/relay.h"

#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

struct relay_group {
	char *name;
	unsigned fail_threshold;
	unsigned cooldown_ms;
	struct relay_entry relays[RELAY_GROUP_MAX];
	size_t count;
};

struct relay_group *relay_group_new(const char *name, unsigned fail_threshold, unsigned cooldown_ms)
{
	struct relay_group *g = xcalloc(1, sizeof(*g));
	g->name = xstrdup(name != NULL ? name : "");
	g->fail_threshold = fail_threshold != 0 ? fail_threshold : 3;
	g->cooldown_ms = cooldown_ms != 0 ? cooldown_ms : 60000;
	return g;
}

void relay_group_free(struct relay_group **gp)
{
	struct relay_group *g = *gp;
	if (g == NULL)
		return;
	for (size_t i = 0; i < g->count; i++) {
		free(g->relays[i].name);
		free(g->relays[i].host);
	}
	free(g->name);
	free(g);
	*gp = NULL;
}

int relay_group_add(struct relay_group *g, const char *name, const char *host, unsigned port, unsigned weight,
                    enum smtp_tls_policy tls)
{
	if (g->count >= RELAY_GROUP_MAX || weight == 0 || weight > 1000000)
		return -1;
	struct relay_entry *r = &g->relays[g->count];
	memset(r, 0, sizeof(*r));
	r->name = xstrdup(name);
	r->host = xstrdup(host);
	r->port = port != 0 ? port : 25;
	r->weight = weight;
	r->tls = tls;
	r->health = RELAY_UP;
	return (int)g->count++;
}

size_t relay_group_count(const struct relay_group *g) { return g->count; }
const char *relay_group_name(const struct relay_group *g) { return g->name; }

const struct relay_entry *relay_group_get(const struct relay_group *g, size_t idx)
{
	return idx < g->count ? &g->relays[idx] : NULL;
}

static void refresh(struct relay_group *g, uint64_t now_ms)
{
	for (size_t i = 0; i < g->count; i++) {
		struct relay_entry *r = &g->relays[i];
		if (r->health == RELAY_DOWN && now_ms >= r->down_until_ms) {
			r->health = RELAY_PROBING;
			r->probe_out = false;
		}
	}
}

int relay_group_pick(struct relay_group *g, uint64_t now_ms)
{
	refresh(g, now_ms);
	/* a relay whose cool-down is over gets its single probe first */
	for (size_t i = 0; i < g->count; i++) {
		struct relay_entry *r = &g->relays[i];
		if (r->health == RELAY_PROBING && !r->probe_out) {
			r->probe_out = true;
			r->picks++;
			return (int)i;
		}
	}
	long total = 0;
	struct relay_entry *best = NULL;
	int best_i = -1;
	for (size_t i = 0; i < g->count; i++) {
		struct relay_entry *r = &g->relays[i];
		if (r->health != RELAY_UP)
			continue;
		r->current += r->weight;
		total += r->weight;
		if (best == NULL || r->current > best->current) {
			best = r;
			best_i = (int)i;
		}
	}
	if (best == NULL)
		return -1;
	best->current -= total;
	best->picks++;
	return best_i;
}

void relay_report(struct relay_group *g, size_t idx, bool ok, uint64_t now_ms)
{
	if (idx >= g->count)
		return;
	struct relay_entry *r = &g->relays[idx];
	if (ok) {
		r->successes++;
		r->consecutive_failures = 0;
		if (r->health != RELAY_UP) {
			r->health = RELAY_UP;
			r->current = 0;
		}
		r->probe_out = false;
		return;
	}
	r->failures++;
	r->consecutive_failures++;
	if (r->health == RELAY_PROBING || r->consecutive_failures >= g->fail_threshold) {
		r->health = RELAY_DOWN;
		r->down_until_ms = now_ms + g->cooldown_ms;
		r->probe_out = false;
		r->current = 0;
	}
}

uint64_t relay_group_retry_at(const struct relay_group *g, uint64_t now_ms)
{
	uint64_t best = UINT64_MAX;
	for (size_t i = 0; i < g->count; i++) {
		const struct relay_entry *r = &g->relays[i];
		if (r->health == RELAY_UP || (r->health == RELAY_PROBING && !r->probe_out))
			return 0;
		if (r->health == RELAY_DOWN && r->down_until_ms < best)
			best = r->down_until_ms <= now_ms ? 0 : r->down_until_ms;
	}
	return best == UINT64_MAX ? 0 : best;
}

size_t relay_group_order(struct relay_group *g, uint64_t now_ms, size_t *order, size_t max)
{
	if (max == 0)
		return 0;
	int first = relay_group_pick(g, now_ms);
	if (first < 0)
		return 0;
	size_t n = 0;
	order[n++] = (size_t)first;
	/* the rest by weight, heavier first (stable on index) */
	while (n < max) {
		int best = -1;
		for (size_t i = 0; i < g->count; i++) {
			bool used = false;
			for (size_t k = 0; k < n; k++)
				used |= order[k] == i;
			if (used || g->relays[i].health != RELAY_UP)
				continue;
			if (best < 0 || g->relays[i].weight > g->relays[best].weight)
				best = (int)i;
		}
		if (best < 0)
			break;
		order[n++] = (size_t)best;
	}
	return n;
}

void relay_report_delivery(struct relay_group *g, const size_t *order, size_t n,
                           const struct smtp_delivery_result *res, uint64_t now_ms)
{
	for (size_t i = 0; i < n && i < res->host_count; i++) {
		if (res->hosts[i] == SMTP_HOST_REACHED)
			relay_report(g, order[i], true, now_ms);
		else if (res->hosts[i] == SMTP_HOST_FAILED)
			relay_report(g, order[i], false, now_ms);
	}
}
