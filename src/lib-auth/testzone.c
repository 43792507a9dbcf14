#include "lib-auth/testzone.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/xalloc.h"

struct testzone_rr {
	char *name;
	char type[8];
	char *data;
	size_t len;
	uint16_t pref;
};

struct testzone {
	struct testzone_rr *rrs;
	size_t count, alloc;
	size_t queries;
};

struct testzone *testzone_new(void)
{
	return xcalloc(1, sizeof(struct testzone));
}

void testzone_free(struct testzone **zp)
{
	struct testzone *z = *zp;
	if (z == NULL)
		return;
	for (size_t i = 0; i < z->count; i++) {
		free(z->rrs[i].name);
		free(z->rrs[i].data);
	}
	free(z->rrs);
	free(z);
	*zp = NULL;
}

static char *strip_dot(const char *s)
{
	size_t n = strlen(s);
	if (n > 0 && s[n - 1] == '.')
		n--;
	return xstrndup(s, n);
}

int testzone_add(struct testzone *z, const char *name, const char *type, const void *data,
		 size_t len, uint16_t pref)
{
	struct testzone_rr rr = {0};
	snprintf(rr.type, sizeof(rr.type), "%s", type);
	if (strcmp(type, "A") == 0 || strcmp(type, "AAAA") == 0) {
		uint8_t a[16];
		char *txt = xstrndup(data, len);
		int ok = inet_pton(strcmp(type, "A") == 0 ? AF_INET : AF_INET6, txt, a);
		free(txt);
		if (ok != 1)
			return -1;
		rr.len = strcmp(type, "A") == 0 ? 4 : 16;
		rr.data = xmemdup(a, rr.len);
	} else if (strcmp(type, "MX") == 0 || strcmp(type, "PTR") == 0 || strcmp(type, "CNAME") == 0) {
		char *txt = xstrndup(data, len);
		rr.data = strip_dot(txt);
		free(txt);
		rr.len = strlen(rr.data);
	} else if (data != NULL) {
		rr.data = xmemdup(data, len);
		rr.len = len;
	}
	rr.pref = pref;
	rr.name = strip_dot(name);
	if (z->count == z->alloc) {
		z->alloc = z->alloc ? z->alloc * 2 : 16;
		z->rrs = xreallocarray(z->rrs, z->alloc, sizeof(*z->rrs));
	}
	z->rrs[z->count++] = rr;
	return 0;
}

static bool name_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

static int lookup(struct testzone *z, const char *qname, const char *type, struct authdns_answer *ans)
{
	z->queries++;
	const char *name = qname;
	for (int hops = 0; hops < 8; hops++) {
		bool exists = false;
		const char *cname = NULL;
		bool timeout = false;
		for (size_t i = 0; i < z->count; i++) {
			struct testzone_rr *rr = &z->rrs[i];
			if (!name_eq(rr->name, name))
				continue;
			exists = true;
			if (strcmp(rr->type, "TIMEOUT") == 0)
				timeout = true;
			if (strcmp(rr->type, "CNAME") == 0)
				cname = rr->data;
		}
		if (!exists) {
			/* an empty non-terminal exists too */
			size_t nl = strlen(name);
			for (size_t i = 0; i < z->count && !exists; i++) {
				size_t rl = strlen(z->rrs[i].name);
				if (rl > nl && z->rrs[i].name[rl - nl - 1] == '.' &&
				    strcasecmp(z->rrs[i].name + rl - nl, name) == 0)
					exists = true;
			}
			return exists ? AUTHDNS_NODATA : AUTHDNS_NXDOMAIN;
		}
		for (size_t i = 0; i < z->count; i++) {
			struct testzone_rr *rr = &z->rrs[i];
			if (!name_eq(rr->name, name) || strcmp(rr->type, type) != 0)
				continue;
			if (authdns_answer_add(ans, rr->data, rr->len, rr->pref) < 0)
				return AUTHDNS_PERMFAIL;
		}
		if (ans->count > 0) {
			ans->ttl = 300;
			return AUTHDNS_OK;
		}
		if (timeout)
			return AUTHDNS_TEMPFAIL;
		if (cname == NULL)
			return AUTHDNS_NODATA;
		name = cname;
	}
	return AUTHDNS_TEMPFAIL;
}

static int q_txt(void *ctx, const char *name, struct authdns_answer *ans) { return lookup(ctx, name, "TXT", ans); }
static int q_a(void *ctx, const char *name, struct authdns_answer *ans) { return lookup(ctx, name, "A", ans); }
static int q_aaaa(void *ctx, const char *name, struct authdns_answer *ans) { return lookup(ctx, name, "AAAA", ans); }
static int q_mx(void *ctx, const char *name, struct authdns_answer *ans) { return lookup(ctx, name, "MX", ans); }
static int q_ptr(void *ctx, const char *name, struct authdns_answer *ans) { return lookup(ctx, name, "PTR", ans); }

void testzone_authdns(struct testzone *z, struct authdns *dns_r)
{
	dns_r->ctx = z;
	dns_r->txt = q_txt;
	dns_r->a = q_a;
	dns_r->aaaa = q_aaaa;
	dns_r->mx = q_mx;
	dns_r->ptr = q_ptr;
}

size_t testzone_queries(const struct testzone *z)
{
	return z->queries;
}
