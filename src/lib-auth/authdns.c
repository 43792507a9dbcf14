#include "lib-auth/authdns.h"

#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

void authdns_answer_init(struct authdns_answer *ans)
{
	memset(ans, 0, sizeof(*ans));
	ans->status = AUTHDNS_NODATA;
}

void authdns_answer_clear(struct authdns_answer *ans)
{
	for (size_t i = 0; i < ans->count; i++)
		free(ans->rr[i].data);
	authdns_answer_init(ans);
}

int authdns_answer_add(struct authdns_answer *ans, const void *data, size_t len, uint16_t pref)
{
	if (ans->count >= AUTHDNS_MAX_RECORDS || len > AUTHDNS_MAX_TXT)
		return -1;
	struct authdns_record *r = &ans->rr[ans->count++];
	r->data = xmalloc(len + 1);
	if (len > 0)
		memcpy(r->data, data, len);
	r->data[len] = '\0';
	r->len = len;
	r->pref = pref;
	ans->status = AUTHDNS_OK;
	return 0;
}

const char *authdns_status_name(enum authdns_status st)
{
	switch (st) {
	case AUTHDNS_OK: return "ok";
	case AUTHDNS_NXDOMAIN: return "nxdomain";
	case AUTHDNS_NODATA: return "nodata";
	case AUTHDNS_TEMPFAIL: return "tempfail";
	case AUTHDNS_PERMFAIL: return "permfail";
	}
	return "?";
}

enum authdns_status authdns_query(const struct authdns *dns, authdns_lookup_fn *fn,
				  const char *name, struct authdns_answer *ans)
{
	authdns_answer_clear(ans);
	if (fn == NULL || name == NULL || strlen(name) > AUTHDNS_MAX_NAME) {
		ans->status = AUTHDNS_PERMFAIL;
		return ans->status;
	}
	int st = fn(dns->ctx, name, ans);
	if (st < AUTHDNS_OK || st > AUTHDNS_PERMFAIL)
		st = AUTHDNS_TEMPFAIL;
	ans->status = (enum authdns_status)st;
	if (ans->status == AUTHDNS_OK && ans->count == 0)
		ans->status = AUTHDNS_NODATA;
	if (ans->status != AUTHDNS_OK) {
		for (size_t i = 0; i < ans->count; i++)
			free(ans->rr[i].data);
		ans->count = 0;
	}
	return ans->status;
}
