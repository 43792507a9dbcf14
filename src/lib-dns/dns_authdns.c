#include "lib-dns/dns_authdns.h"

#include <string.h>

static int convert(struct dns_sync *s, const char *name, uint16_t qtype, struct authdns_answer *ans)
{
	struct dns_result *res = dns_sync_lookup(s, name, qtype);
	enum authdns_status st;

	switch (res->status) {
	case DNS_OK:
		st = AUTHDNS_OK;
		break;
	case DNS_NXDOMAIN:
		st = AUTHDNS_NXDOMAIN;
		break;
	case DNS_NODATA:
	case DNS_NULL_MX:
		st = AUTHDNS_NODATA;
		break;
	default:
		st = AUTHDNS_TEMPFAIL;
		break;
	}
	if (st == AUTHDNS_OK && res->implicit_mx)
		st = AUTHDNS_NODATA;
	ans->status = st;
	if (st == AUTHDNS_OK) {
		ans->ttl = res->ttl;
		for (size_t i = 0; i < res->count; i++) {
			int r = 0;
			switch (qtype) {
			case DNS_TYPE_A:
				r = authdns_answer_add(ans, &res->addr[i].u.v4, 4, 0);
				break;
			case DNS_TYPE_AAAA:
				r = authdns_answer_add(ans, &res->addr[i].u.v6, 16, 0);
				break;
			case DNS_TYPE_MX:
				r = authdns_answer_add(ans, res->mx[i].host, strlen(res->mx[i].host), res->mx[i].pref);
				break;
			default: /* TXT, PTR */
				r = authdns_answer_add(ans, res->txt[i], strlen(res->txt[i]), 0);
				break;
			}
			if (r < 0) {
				ans->status = AUTHDNS_PERMFAIL;
				break;
			}
		}
		if (ans->status == AUTHDNS_OK && ans->count == 0)
			ans->status = AUTHDNS_NODATA;
	}
	dns_result_free(&res);
	return ans->status;
}

static int lk_txt(void *ctx, const char *name, struct authdns_answer *ans)
{
	return convert(ctx, name, DNS_TYPE_TXT, ans);
}

static int lk_a(void *ctx, const char *name, struct authdns_answer *ans)
{
	return convert(ctx, name, DNS_TYPE_A, ans);
}

static int lk_aaaa(void *ctx, const char *name, struct authdns_answer *ans)
{
	return convert(ctx, name, DNS_TYPE_AAAA, ans);
}

static int lk_mx(void *ctx, const char *name, struct authdns_answer *ans)
{
	return convert(ctx, name, DNS_TYPE_MX, ans);
}

static int lk_ptr(void *ctx, const char *name, struct authdns_answer *ans)
{
	return convert(ctx, name, DNS_TYPE_PTR, ans);
}

void dns_authdns_init(struct authdns *dns, struct dns_sync *sync)
{
	memset(dns, 0, sizeof(*dns));
	dns->ctx = sync;
	dns->txt = lk_txt;
	dns->a = lk_a;
	dns->aaaa = lk_aaaa;
	dns->mx = lk_mx;
	dns->ptr = lk_ptr;
}
