#include "lib-auth/authdns.h"

#include <stdio.h>
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

/* wire-format name at p[0..len) -> text; returns bytes consumed or -1 */
static int wire_name(const unsigned char *p, size_t len, char *out, size_t outsize)
{
	size_t i = 0, o = 0;
	for (;;) {
		if (i >= len)
			return -1;
		unsigned l = p[i++];
		if (l == 0)
			break;
		if (l > 63 || i + l > len)
			return -1; /* compression pointers are not expected here */
		if (o > 0) {
			if (o + 1 >= outsize)
				return -1;
			out[o++] = '.';
		}
		for (unsigned k = 0; k < l; k++) {
			unsigned char ch = p[i + k];
			if (ch > 32 && ch < 127 && ch != '.' && ch != '\\') {
				if (o + 1 >= outsize)
					return -1;
				out[o++] = (char)ch;
			} else {
				if (o + 4 >= outsize)
					return -1;
				snprintf(out + o, outsize - o, "\\%03u", ch);
				o += 4;
			}
		}
		i += l;
	}
	out[o] = '\0';
	return (int)i;
}

int authdns_answer_from_rdata(struct authdns_answer *ans, int rrtype, char *const *data, const int *len,
			      size_t count, uint32_t ttl)
{
	for (size_t r = 0; r < count; r++) {
		const unsigned char *p = (const unsigned char *)data[r];
		size_t n = len[r] > 0 ? (size_t)len[r] : 0;
		char name[AUTHDNS_MAX_NAME * 4 + 1];
		int rc = 0;
		switch (rrtype) {
		case AUTHDNS_RR_A:
		case AUTHDNS_RR_AAAA:
			if (n != (rrtype == AUTHDNS_RR_A ? 4u : 16u))
				rc = -1;
			else
				rc = authdns_answer_add(ans, p, n, 0);
			break;
		case AUTHDNS_RR_TXT: {
			char txt[AUTHDNS_MAX_TXT];
			size_t o = 0, i = 0;
			while (i < n && rc == 0) {
				size_t l = p[i++];
				if (i + l > n || o + l > sizeof(txt))
					rc = -1;
				else {
					memcpy(txt + o, p + i, l);
					o += l;
					i += l;
				}
			}
			if (rc == 0)
				rc = authdns_answer_add(ans, txt, o, 0);
			break;
		}
		case AUTHDNS_RR_MX:
			if (n < 3 || wire_name(p + 2, n - 2, name, sizeof(name)) != (int)(n - 2))
				rc = -1;
			else
				rc = authdns_answer_add(ans, name, strlen(name), (uint16_t)(p[0] << 8 | p[1]));
			break;
		case AUTHDNS_RR_PTR:
			if (wire_name(p, n, name, sizeof(name)) != (int)n)
				rc = -1;
			else
				rc = authdns_answer_add(ans, name, strlen(name), 0);
			break;
		default:
			rc = -1;
		}
		if (rc < 0) {
			ans->status = AUTHDNS_PERMFAIL;
			return -1;
		}
	}
	if (count > 0 && (ans->ttl == 0 || ttl < ans->ttl))
		ans->ttl = ttl;
	return 0;
}
