/* route: recipient resolution (route.h). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "lib-route/route.h"

#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#define ROUTE_DEFAULT_MAX_DEPTH 10
#define ROUTE_DEFAULT_MAX_RECIPIENTS 1000
#define ROUTE_DEFAULT_MAX_EXPANSIONS 10000
#define ROUTE_MAX_DOMAIN_ALIAS_HOPS 5
#define ROUTE_MAX_TRACE 2000
#define ROUTE_REGEX_MATCH_LIMIT 100000
#define ROUTE_REGEX_DEPTH_LIMIT 1000
#define ROUTE_REGEX_HEAP_LIMIT_KIB 1024
#define ROUTE_REGEX_OPTIONS (PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_CASELESS)

/* ---- regex cache ---- */

struct route_regex {
	char *pattern;
	pcre2_code *code;
	pcre2_match_data *md;
	char **targets;
	size_t target_count;
};

struct route_cache {
	int64_t generation;
	struct route_regex *re;
	size_t count;
	pcre2_match_context *mctx;
};

static void route_cache_free(void *p)
{
	struct route_cache *cache = p;
	for (size_t i = 0; i < cache->count; i++) {
		struct route_regex *r = &cache->re[i];
		free(r->pattern);
		pcre2_code_free(r->code);
		pcre2_match_data_free(r->md);
		for (size_t j = 0; j < r->target_count; j++)
			free(r->targets[j]);
		free(r->targets);
	}
	free(cache->re);
	pcre2_match_context_free(cache->mctx);
	free(cache);
}

static pcre2_code *regex_compile(const char *pattern, char **error_r)
{
	int errcode;
	PCRE2_SIZE offset;
	pcre2_code *code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, ROUTE_REGEX_OPTIONS,
					 &errcode, &offset, NULL);
	if (code == NULL) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(errcode, msg, sizeof(msg));
		*error_r = xasprintf("bad regex '%s' at offset %zu: %s", pattern, (size_t)offset, (const char *)msg);
		return NULL;
	}
	return code;
}

static int cache_row(const char *address, bool is_regex, const char *target, void *ctx)
{
	struct route_cache *cache = ctx;
	struct route_regex *r = cache->count > 0 ? &cache->re[cache->count - 1] : NULL;
	if (r == NULL || strcmp(r->pattern, address) != 0) {
		cache->re = xreallocarray(cache->re, cache->count + 1, sizeof(*cache->re));
		r = &cache->re[cache->count++];
		memset(r, 0, sizeof(*r));
		r->pattern = xstrdup(address);
	}
	r->targets = xreallocarray(r->targets, r->target_count + 1, sizeof(char *));
	r->targets[r->target_count++] = xstrdup(target);
	return 0;
}

static struct route_cache *route_cache_get(struct directory *d, char **error_r)
{
	int64_t gen = directory_generation(d);
	struct route_cache *cache = directory_cache(d);
	if (gen < 0) {
		*error_r = xstrdup("directory: cannot read data_version");
		return NULL;
	}
	if (cache != NULL && cache->generation == gen)
		return cache;

	struct route_cache *fresh = xcalloc(1, sizeof(*fresh));
	fresh->generation = gen;
	if (directory_alias_regex_list(d, cache_row, fresh, error_r) < 0) {
		route_cache_free(fresh);
		return NULL;
	}
	fresh->mctx = pcre2_match_context_create(NULL);
	if (fresh->mctx == NULL)
		abort();
	pcre2_set_match_limit(fresh->mctx, ROUTE_REGEX_MATCH_LIMIT);
	pcre2_set_depth_limit(fresh->mctx, ROUTE_REGEX_DEPTH_LIMIT);
	pcre2_set_heap_limit(fresh->mctx, ROUTE_REGEX_HEAP_LIMIT_KIB);
	for (size_t i = 0; i < fresh->count; i++) {
		struct route_regex *r = &fresh->re[i];
		char *error = NULL;
		r->code = regex_compile(r->pattern, &error);
		if (r->code == NULL) {
			/* Only possible if the database was edited by hand: skip it, loudly. */
			log_warn("route: regex alias skipped: %s", error);
			free(error);
			continue;
		}
		(void)pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
		r->md = pcre2_match_data_create_from_pattern(r->code, NULL);
		if (r->md == NULL)
			abort();
	}
	directory_set_cache(d, fresh, route_cache_free);
	return fresh;
}

/* Expand $1..$9 and $$ of template; false if the result does not fit. */
static bool regex_substitute(const char *template, const char *subject, pcre2_match_data *md, int rc,
			     char *out, size_t size)
{
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
	size_t n = 0;
	for (const char *p = template; *p != '\0'; p++) {
		const char *add = p;
		size_t len = 1;
		if (p[0] == '$' && p[1] == '$') {
			p++;
		} else if (p[0] == '$' && p[1] >= '1' && p[1] <= '9') {
			int g = p[1] - '0';
			p++;
			len = 0;
			if (g < rc && ov[2 * g] != PCRE2_UNSET) {
				add = subject + ov[2 * g];
				len = ov[2 * g + 1] - ov[2 * g];
			}
		}
		if (n + len + 1 > size)
			return false;
		memcpy(out + n, add, len);
		n += len;
	}
	out[n] = '\0';
	return true;
}

int route_regex_check(const char *pattern, const char *const *targets, size_t count, char **error_r)
{
	const char *why;
	uint32_t captures = 0;

	*error_r = NULL;
	if (*pattern == '\0' || strlen(pattern) > DIRECTORY_MAX_TARGET) {
		*error_r = xasprintf("regex pattern must be 1-%d bytes", DIRECTORY_MAX_TARGET);
		return -1;
	}
	pcre2_code *code = regex_compile(pattern, error_r);
	if (code == NULL)
		return -1;
	pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &captures);
	pcre2_code_free(code);
	for (size_t i = 0; i < count; i++) {
		if (!directory_target_check(targets[i], &why)) {
			*error_r = xasprintf("bad target '%s': %s", targets[i], why);
			return -1;
		}
		for (const char *p = targets[i]; *p != '\0'; p++) {
			if (p[0] == '$' && p[1] == '$') {
				p++;
			} else if (p[0] == '$' && p[1] >= '1' && p[1] <= '9') {
				if ((uint32_t)(p[1] - '0') > captures) {
					*error_r = xasprintf("target '%s' uses $%c but the pattern has %u capture group%s",
							     targets[i], p[1], captures, captures == 1 ? "" : "s");
					return -1;
				}
				p++;
			}
		}
	}
	return 0;
}

/* ---- resolution ---- */

struct route_ctx {
	struct directory *d;
	struct route_result *res;
	char **error_r;
	struct route_cache *cache;
	bool trace;
	char sep;
	unsigned max_depth, max_recipients, max_expansions;
	unsigned expansions;
	const char **path; /* addresses being expanded, [0, depth) */
	bool error;        /* a directory error: *error_r is set */
};

/* What resolve() returns besides -1 (loop or error: see c->error) */
enum { R_NOTHING = 0, R_FOUND = 1, R_NOT_LOCAL = 2 };

static void trace(struct route_ctx *c, unsigned depth, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void trace(struct route_ctx *c, unsigned depth, const char *fmt, ...)
{
	if (!c->trace || c->res->trace_count >= ROUTE_MAX_TRACE)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	struct route_result *res = c->res;
	res->trace = xreallocarray(res->trace, res->trace_count + 1, sizeof(char *));
	res->trace[res->trace_count++] = xasprintf("%*s%s", (int)(depth * 2), "", msg);
	free(msg);
}

static int set_status(struct route_ctx *c, enum route_status status)
{
	static const struct { int code; const char *enhanced, *message; } replies[] = {
		[ROUTE_OK] = { 250, "2.1.5", "Recipient ok" },
		[ROUTE_UNKNOWN_USER] = { 550, "5.1.1", "No such user here" },
		[ROUTE_NOT_LOCAL] = { 0, "", "Domain not local" },
		[ROUTE_LOOP] = { 550, "5.4.6", "Alias loop" },
		[ROUTE_BAD_ADDRESS] = { 501, "5.1.3", "Bad recipient address syntax" },
	};
	c->res->status = status;
	if (status != ROUTE_OK) {
		/* Recipients are only meaningful on ROUTE_OK. */
		for (size_t i = 0; i < c->res->rcpt_count; i++) {
			free(c->res->rcpt[i].address);
			free(c->res->rcpt[i].folder);
		}
		xfree(&c->res->rcpt);
		c->res->rcpt_count = 0;
	}
	c->res->smtp_code = replies[status].code;
	c->res->enhanced = replies[status].enhanced;
	c->res->message = replies[status].message;
	return -1;
}

static void add_recipient(struct route_ctx *c, unsigned depth, enum route_kind kind, const char *address,
			  const char *folder)
{
	struct route_result *res = c->res;
	for (size_t i = 0; i < res->rcpt_count; i++) {
		if (res->rcpt[i].kind == kind && strcmp(res->rcpt[i].address, address) == 0) {
			trace(c, depth, "%s %s: already a recipient", route_kind_name(kind), address);
			return;
		}
	}
	if (res->rcpt_count >= c->max_recipients) {
		if (!res->truncated)
			trace(c, depth, "more than %u recipients: the rest are dropped", c->max_recipients);
		res->truncated = true;
		return;
	}
	res->rcpt = xreallocarray(res->rcpt, res->rcpt_count + 1, sizeof(*res->rcpt));
	struct route_recipient *r = &res->rcpt[res->rcpt_count++];
	r->kind = kind;
	r->address = xstrdup(address);
	r->folder = folder != NULL ? xstrdup(folder) : NULL;
	if (folder != NULL)
		trace(c, depth, "=> %s %s (folder %s)", route_kind_name(kind), address, folder);
	else
		trace(c, depth, "=> %s %s", route_kind_name(kind), address);
}

/* Resolving the base of a subaddress: steps 1-3 only. */
#define RESOLVE_BASE_ONLY 1u

static int resolve(struct route_ctx *c, const char *address, const char *folder, unsigned depth,
		   unsigned flags);

struct target_list {
	char **items;
	size_t count;
};

static int collect_target(const char *address, bool is_regex, const char *target, void *ctx)
{
	struct target_list *l = ctx;
	l->items = xreallocarray(l->items, l->count + 1, sizeof(char *));
	l->items[l->count++] = xstrdup(target);
	return 0;
}

static void target_list_free(struct target_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->count = 0;
}

/* Resolve each target of an alias; R_FOUND if any produced a recipient. */
static int expand_targets(struct route_ctx *c, char *const *targets, size_t count, const char *folder,
			  unsigned depth)
{
	int found = R_NOTHING;
	for (size_t i = 0; i < count; i++) {
		const char *t = targets[i], *why;
		if (strchr(t, '@') == NULL) {
			if (!directory_target_check(t, &why)) {
				trace(c, depth + 1, "target '%s' skipped: %s", t, why);
				continue;
			}
			add_recipient(c, depth + 1, ROUTE_NAMED, t, NULL);
			found = R_FOUND;
			continue;
		}
		char norm[DIRECTORY_MAX_ADDRESS + 1];
		if (!directory_address_normalize(t, false, norm, sizeof(norm), &why)) {
			trace(c, depth + 1, "target '%s' skipped: %s", t, why);
			continue;
		}
		int r = resolve(c, norm, folder, depth + 1, 0);
		if (r < 0)
			return -1;
		if (r == R_FOUND)
			found = R_FOUND;
		else
			trace(c, depth + 1, "target %s resolves to nothing: skipped", norm);
	}
	return found;
}

static int expand_alias(struct route_ctx *c, const char *key, const char *what, const char *folder,
			unsigned depth)
{
	struct target_list l = { 0 };
	if (directory_alias_lookup(c->d, key, collect_target, &l, c->error_r) < 0) {
		c->error = true;
		target_list_free(&l);
		return -1;
	}
	if (l.count == 0)
		return R_NOTHING;
	trace(c, depth, "%s %s: %zu target%s", what, key, l.count, l.count == 1 ? "" : "s");
	int r = expand_targets(c, l.items, l.count, folder, depth);
	target_list_free(&l);
	/* A matched alias ends the search even if all its targets were dead. */
	return r < 0 ? -1 : (r == R_FOUND ? R_FOUND : 3);
}

static int expand_regex(struct route_ctx *c, const char *address, const char *folder, unsigned depth)
{
	size_t len = strlen(address);
	for (size_t i = 0; i < c->cache->count; i++) {
		struct route_regex *re = &c->cache->re[i];
		if (re->code == NULL)
			continue;
		int rc = pcre2_match(re->code, (PCRE2_SPTR)address, len, 0, 0, re->md, c->cache->mctx);
		if (rc == PCRE2_ERROR_NOMATCH)
			continue;
		if (rc < 0) {
			/* Match limit hit or similar: treat as no match, note it. */
			trace(c, depth, "regex '%s': match error %d, ignored", re->pattern, rc);
			continue;
		}
		if (rc == 0)
			rc = (int)pcre2_get_ovector_count(re->md);
		trace(c, depth, "regex '%s' matches %s", re->pattern, address);
		char **targets = xcalloc(re->target_count, sizeof(char *));
		size_t n = 0;
		for (size_t j = 0; j < re->target_count; j++) {
			char out[DIRECTORY_MAX_TARGET + 1];
			if (!regex_substitute(re->targets[j], address, re->md, rc, out, sizeof(out))) {
				trace(c, depth + 1, "target '%s' skipped: too long after substitution", re->targets[j]);
				continue;
			}
			if (strcmp(out, re->targets[j]) != 0)
				trace(c, depth + 1, "%s -> %s", re->targets[j], out);
			targets[n++] = xstrdup(out);
		}
		int r = expand_targets(c, targets, n, folder, depth);
		for (size_t j = 0; j < n; j++)
			free(targets[j]);
		free(targets);
		return r < 0 ? -1 : (r == R_FOUND ? R_FOUND : 3);
	}
	return R_NOTHING;
}

/*
 * Rewrite the domain through domain aliases; returns 1 local (domain_r set to the
 * final domain), 0 not local (res fields describe it), -1 error.
 */
static int resolve_domain(struct route_ctx *c, const char *domain, unsigned depth, char *domain_r,
			  size_t size, struct directory_domain *dom_r)
{
	char cur[256];
	snprintf(cur, sizeof(cur), "%s", domain);
	for (unsigned hop = 0;; hop++) {
		int ret = directory_domain_get(c->d, cur, dom_r, c->error_r);
		if (ret < 0) {
			c->error = true;
			return -1;
		}
		if (ret == 0) {
			trace(c, depth, "domain %s is not in the directory", cur);
			break;
		}
		if (dom_r->alias_of == NULL) {
			if (dom_r->type == DIRECTORY_DOMAIN_LOCAL) {
				snprintf(domain_r, size, "%s", cur);
				return 1;
			}
			trace(c, depth, "domain %s is a %s domain%s%s", cur, directory_domain_type_name(dom_r->type),
			      dom_r->relay != NULL ? " via " : "", dom_r->relay != NULL ? dom_r->relay : "");
			break;
		}
		if (hop >= ROUTE_MAX_DOMAIN_ALIAS_HOPS) {
			trace(c, depth, "domain alias chain longer than %d at %s", ROUTE_MAX_DOMAIN_ALIAS_HOPS, cur);
			directory_domain_deinit(dom_r);
			set_status(c, ROUTE_LOOP);
			return -1;
		}
		trace(c, depth, "domain %s is an alias of %s", cur, dom_r->alias_of);
		snprintf(cur, sizeof(cur), "%s", dom_r->alias_of);
		directory_domain_deinit(dom_r);
	}
	snprintf(domain_r, size, "%s", cur);
	return 0;
}

static int resolve(struct route_ctx *c, const char *address, const char *folder, unsigned depth,
		   unsigned flags)
{
	if (++c->expansions > c->max_expansions) {
		trace(c, depth, "more than %u lookups: giving up", c->max_expansions);
		return set_status(c, ROUTE_LOOP);
	}
	if (depth > c->max_depth) {
		trace(c, depth, "%s: aliases nested deeper than %u", address, c->max_depth);
		return set_status(c, ROUTE_LOOP);
	}

	const char *at = strrchr(address, '@');
	char domain[256], addr[DIRECTORY_MAX_ADDRESS + 1];
	struct directory_domain dom;
	size_t local_len = (size_t)(at - address);
	int ret = resolve_domain(c, at + 1, depth, domain, sizeof(domain), &dom);
	if (ret < 0)
		return -1;
	if (ret == 0) {
		if (depth == 0) {
			c->res->domain = xstrdup(domain);
			c->res->domain_known = dom.name != NULL;
			c->res->domain_type = dom.type;
			c->res->relay = dom.relay != NULL ? xstrdup(dom.relay) : NULL;
			directory_domain_deinit(&dom);
			return R_NOT_LOCAL;
		}
		directory_domain_deinit(&dom);
		snprintf(addr, sizeof(addr), "%.*s@%s", (int)local_len, address, domain);
		add_recipient(c, depth, ROUTE_REMOTE, addr, NULL);
		return R_FOUND;
	}
	directory_domain_deinit(&dom);
	if ((size_t)snprintf(addr, sizeof(addr), "%.*s@%s", (int)local_len, address, domain) >= sizeof(addr)) {
		trace(c, depth, "%.*s@%s: too long", (int)local_len, address, domain);
		return R_NOTHING;
	}
	if (strcmp(addr, address) != 0)
		trace(c, depth, "%s -> %s", address, addr);

	for (unsigned i = 0; i < depth; i++) {
		if (strcmp(c->path[i], addr) == 0) {
			trace(c, depth, "%s: alias loop", addr);
			return set_status(c, ROUTE_LOOP);
		}
	}
	c->path[depth] = addr;

	/* 1. exact user */
	ret = directory_user_get(c->d, addr, NULL, c->error_r);
	if (ret < 0) {
		c->error = true;
		return -1;
	}
	if (ret > 0) {
		trace(c, depth, "user %s", addr);
		add_recipient(c, depth, ROUTE_LOCAL, addr, folder);
		return R_FOUND;
	}
	/* 2. alias */
	ret = expand_alias(c, addr, "alias", folder, depth);
	if (ret != R_NOTHING)
		return ret == 3 ? R_NOTHING : ret;
	/* 3. regex alias */
	ret = expand_regex(c, addr, folder, depth);
	if (ret != R_NOTHING)
		return ret == 3 ? R_NOTHING : ret;
	if ((flags & RESOLVE_BASE_ONLY) != 0)
		return R_NOTHING;
	/* 4. subaddress */
	const char *sep = c->sep != '\0' && folder == NULL ? memchr(addr, c->sep, local_len) : NULL;
	if (sep != NULL && sep > addr && sep + 1 < addr + local_len) {
		char base[DIRECTORY_MAX_ADDRESS + 1], tag[DIRECTORY_MAX_ADDRESS + 1];
		snprintf(base, sizeof(base), "%.*s@%s", (int)(sep - addr), addr, domain);
		snprintf(tag, sizeof(tag), "%.*s", (int)(addr + local_len - sep - 1), sep + 1);
		trace(c, depth, "subaddress: %s with tag '%s'", base, tag);
		ret = resolve(c, base, tag, depth, RESOLVE_BASE_ONLY);
		if (ret != R_NOTHING)
			return ret;
		c->path[depth] = addr;
	}
	/* 5. catch-all */
	char catchall[256 + 1];
	snprintf(catchall, sizeof(catchall), "@%s", domain);
	ret = expand_alias(c, catchall, "catch-all", folder, depth);
	if (ret != R_NOTHING)
		return ret == 3 ? R_NOTHING : ret;
	trace(c, depth, "%s: no user, alias or catch-all", addr);
	return R_NOTHING;
}

int route_resolve(struct directory *d, const struct route_options *opt, const char *address,
		  struct route_result *res, char **error_r)
{
	char norm[DIRECTORY_MAX_ADDRESS + 1];
	const char *why;
	struct route_ctx c = {
		.d = d,
		.res = res,
		.error_r = error_r,
		.trace = opt->trace,
		.sep = opt->subaddress_separator,
		.max_depth = opt->max_depth != 0 ? opt->max_depth : ROUTE_DEFAULT_MAX_DEPTH,
		.max_recipients = opt->max_recipients != 0 ? opt->max_recipients : ROUTE_DEFAULT_MAX_RECIPIENTS,
		.max_expansions = opt->max_expansions != 0 ? opt->max_expansions : ROUTE_DEFAULT_MAX_EXPANSIONS,
	};

	*error_r = NULL;
	memset(res, 0, sizeof(*res));
	if (!directory_address_normalize(address, false, norm, sizeof(norm), &why)) {
		trace(&c, 0, "bad address: %s", why);
		set_status(&c, ROUTE_BAD_ADDRESS);
		return 1;
	}
	res->address = xstrdup(norm);
	c.cache = route_cache_get(d, error_r);
	if (c.cache == NULL)
		return -1;
	c.path = xcalloc(c.max_depth + 2, sizeof(char *));
	int ret = resolve(&c, norm, NULL, 0, 0);
	free(c.path);
	if (c.error)
		return -1;
	if (ret < 0)
		return 1; /* status already set (loop) */
	if (ret == R_NOT_LOCAL) {
		set_status(&c, ROUTE_NOT_LOCAL);
		return 1;
	}
	if (ret == R_FOUND && res->rcpt_count > 0) {
		set_status(&c, ROUTE_OK);
		return 1;
	}
	set_status(&c, ROUTE_UNKNOWN_USER);
	return 1;
}

void route_result_deinit(struct route_result *res)
{
	for (size_t i = 0; i < res->rcpt_count; i++) {
		free(res->rcpt[i].address);
		free(res->rcpt[i].folder);
	}
	free(res->rcpt);
	for (size_t i = 0; i < res->trace_count; i++)
		free(res->trace[i]);
	free(res->trace);
	free(res->address);
	free(res->domain);
	free(res->relay);
	memset(res, 0, sizeof(*res));
}

const char *route_status_name(enum route_status status)
{
	switch (status) {
	case ROUTE_OK: return "ok";
	case ROUTE_UNKNOWN_USER: return "unknown-user";
	case ROUTE_NOT_LOCAL: return "not-local";
	case ROUTE_LOOP: return "loop";
	case ROUTE_BAD_ADDRESS: return "bad-address";
	}
	return "unknown";
}

const char *route_kind_name(enum route_kind kind)
{
	switch (kind) {
	case ROUTE_LOCAL: return "local";
	case ROUTE_REMOTE: return "remote";
	case ROUTE_NAMED: return "named";
	}
	return "unknown";
}
