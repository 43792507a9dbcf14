#include "lib-dns/dns_packet.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/buf.h"
#include "lib/xalloc.h"

#define DNS_HDR_LEN 12
#define DNS_MAX_NAME_TEXT 1100 /* 255 wire bytes, each possibly escaped as \DDD */
#define DNS_MAX_PTR_HOPS 32

struct dns_reader {
	const uint8_t *pkt;
	size_t len;
	size_t pos;
};

static uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static uint32_t rd32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/*
 * Read a possibly compressed name at *pos; on success *pos is advanced past the
 * name as stored at that position. With out != NULL the name is written as
 * lowercase text without the trailing dot ("" for the root).
 */
static int read_name(const uint8_t *pkt, size_t len, size_t *pos, struct buf *out)
{
	size_t p = *pos, end_pos = 0, wire_len = 0;
	unsigned hops = 0;
	bool jumped = false;

	if (out != NULL)
		buf_reset(out);
	for (;;) {
		if (p >= len)
			return -1;
		uint8_t l = pkt[p];
		if ((l & 0xc0) == 0xc0) {
			if (p + 1 >= len)
				return -1;
			size_t target = ((size_t)(l & 0x3f) << 8) | pkt[p + 1];
			/* only backwards pointers: no loops */
			if (target >= p || ++hops > DNS_MAX_PTR_HOPS)
				return -1;
			if (!jumped) {
				end_pos = p + 2;
				jumped = true;
			}
			p = target;
			continue;
		}
		if ((l & 0xc0) != 0)
			return -1; /* extended label types */
		p++;
		wire_len += (size_t)l + 1;
		if (wire_len > 255)
			return -1;
		if (l == 0)
			break;
		if (p + l > len)
			return -1;
		if (out != NULL) {
			if (out->len > 0 && buf_append_c(out, '.') < 0)
				return -1;
			for (size_t i = 0; i < l; i++) {
				uint8_t c = pkt[p + i];
				int r;
				if (c >= 'A' && c <= 'Z')
					r = buf_append_c(out, (char)(c + 32));
				else if (c > 0x20 && c < 0x7f && c != '.' && c != '\\' && c != '"' && c != ';')
					r = buf_append_c(out, (char)c);
				else
					r = buf_printf(out, "\\%03u", c);
				if (r < 0)
					return -1;
			}
		}
		p += l;
	}
	*pos = jumped ? end_pos : p;
	return 0;
}

const char *dns_status_name(enum dns_status status)
{
	switch (status) {
	case DNS_OK: return "ok";
	case DNS_NXDOMAIN: return "nxdomain";
	case DNS_NODATA: return "nodata";
	case DNS_TEMPFAIL: return "tempfail";
	case DNS_NULL_MX: return "null-mx";
	}
	return "unknown";
}

static int add_record(struct dns_result *res, struct dns_reader *r, size_t rdpos, uint16_t rdlen,
                      struct buf *name)
{
	const uint8_t *rd = r->pkt + rdpos;
	size_t i = res->count;

	switch (res->qtype) {
	case DNS_TYPE_A:
		if (rdlen != 4)
			return -1;
		res->addr = xreallocarray(res->addr, i + 1, sizeof(*res->addr));
		memset(&res->addr[i], 0, sizeof(res->addr[i]));
		res->addr[i].family = AF_INET;
		memcpy(&res->addr[i].u.v4, rd, 4);
		break;
	case DNS_TYPE_AAAA:
		if (rdlen != 16)
			return -1;
		res->addr = xreallocarray(res->addr, i + 1, sizeof(*res->addr));
		memset(&res->addr[i], 0, sizeof(res->addr[i]));
		res->addr[i].family = AF_INET6;
		memcpy(&res->addr[i].u.v6, rd, 16);
		break;
	case DNS_TYPE_MX: {
		if (rdlen < 3)
			return -1;
		size_t p = rdpos + 2;
		if (read_name(r->pkt, r->len, &p, name) < 0 || p > rdpos + rdlen)
			return -1;
		res->mx = xreallocarray(res->mx, i + 1, sizeof(*res->mx));
		res->mx[i].pref = rd16(rd);
		res->mx[i].host = xstrdup(name->data);
		break;
	}
	case DNS_TYPE_PTR: {
		size_t p = rdpos;
		if (read_name(r->pkt, r->len, &p, name) < 0 || p > rdpos + rdlen)
			return -1;
		res->txt = xreallocarray(res->txt, i + 1, sizeof(*res->txt));
		res->txt[i] = xstrdup(name->data);
		break;
	}
	case DNS_TYPE_TXT: {
		struct buf t;
		buf_init(&t, DNS_MAX_TXT_LEN);
		size_t p = 0;
		while (p < rdlen) {
			uint8_t sl = rd[p++];
			if (p + sl > rdlen || buf_append(&t, rd + p, sl) < 0) {
				buf_deinit(&t);
				return -1;
			}
			p += sl;
		}
		res->txt = xreallocarray(res->txt, i + 1, sizeof(*res->txt));
		/* a NUL inside a TXT string truncates the C string: harmless */
		res->txt[i] = buf_steal(&t);
		buf_deinit(&t);
		break;
	}
	case DNS_TYPE_TLSA:
		if (rdlen < 3 || rdlen - 3 > DNS_MAX_TLSA_DATA)
			return -1;
		res->tlsa = xreallocarray(res->tlsa, i + 1, sizeof(*res->tlsa));
		res->tlsa[i].usage = rd[0];
		res->tlsa[i].selector = rd[1];
		res->tlsa[i].mtype = rd[2];
		res->tlsa[i].data_len = rdlen - 3u;
		res->tlsa[i].data = xmalloc(rdlen - 3u + 1u);
		memcpy(res->tlsa[i].data, rd + 3, rdlen - 3u);
		res->tlsa[i].data[rdlen - 3u] = 0;
		break;
	default:
		return 0;
	}
	res->count++;
	return 0;
}

int dns_packet_parse(const uint8_t *pkt, size_t len, uint16_t qtype, struct dns_result *res,
                     const char **error_r)
{
	struct dns_reader r = { .pkt = pkt, .len = len, .pos = DNS_HDR_LEN };
	struct buf name;
	uint32_t min_ttl = UINT32_MAX, neg_ttl = 0;
	bool have_neg_ttl = false;

	res->qtype = qtype;
	res->count = 0;
	if (len < DNS_HDR_LEN) {
		*error_r = "short packet";
		return -1;
	}
	unsigned rcode = pkt[3] & 0x0f;
	unsigned qd = rd16(pkt + 4), an = rd16(pkt + 6), ns = rd16(pkt + 8);
	if ((pkt[2] & 0x80) == 0) {
		*error_r = "not a response";
		return -1;
	}
	buf_init(&name, DNS_MAX_NAME_TEXT);
	for (unsigned i = 0; i < qd; i++) {
		if (read_name(pkt, len, &r.pos, NULL) < 0 || r.pos + 4 > len)
			goto bad;
		r.pos += 4;
	}
	for (unsigned sect = 0; sect < 2; sect++) {
		unsigned n = sect == 0 ? an : ns;
		for (unsigned i = 0; i < n; i++) {
			if (read_name(pkt, len, &r.pos, NULL) < 0 || r.pos + 10 > len)
				goto bad;
			uint16_t type = rd16(pkt + r.pos), klass = rd16(pkt + r.pos + 2);
			uint32_t ttl = rd32(pkt + r.pos + 4);
			uint16_t rdlen = rd16(pkt + r.pos + 8);
			r.pos += 10;
			if (r.pos + rdlen > len)
				goto bad;
			if (ttl > 0x7fffffff)
				ttl = 0; /* RFC 2181 8 */
			if (sect == 0 && type == qtype && klass == 1 && rcode == 0) {
				if (res->count >= DNS_MAX_RECORDS) {
					r.pos += rdlen;
					continue;
				}
				if (add_record(res, &r, r.pos, rdlen, &name) < 0)
					goto bad;
				if (ttl < min_ttl)
					min_ttl = ttl;
			} else if (sect == 1 && type == 6 /* SOA */ && !have_neg_ttl) {
				/* skip mname, rname; minimum is the last field */
				size_t p = r.pos;
				if (read_name(pkt, len, &p, NULL) < 0 || read_name(pkt, len, &p, NULL) < 0 ||
				    p + 20 > r.pos + rdlen)
					goto bad;
				uint32_t min = rd32(pkt + p + 16);
				neg_ttl = min < ttl ? min : ttl;
				have_neg_ttl = true;
			}
			r.pos += rdlen;
		}
	}
	buf_deinit(&name);

	if (rcode == 3) {
		res->status = DNS_NXDOMAIN;
	} else if (rcode != 0) {
		res->status = DNS_TEMPFAIL;
		res->error = xasprintf("rcode %u", rcode);
	} else if (res->count == 0) {
		res->status = DNS_NODATA;
	} else {
		res->status = DNS_OK;
	}
	if (res->status == DNS_OK) {
		res->ttl = min_ttl;
	} else {
		res->ttl = have_neg_ttl ? neg_ttl : 60;
		if (res->ttl > DNS_NEG_TTL_MAX)
			res->ttl = DNS_NEG_TTL_MAX;
	}
	if (qtype == DNS_TYPE_MX && res->status == DNS_OK) {
		/* RFC 7505: "0 ." means no mail; ignore stray "." among real MX hosts */
		size_t out = 0;
		for (size_t i = 0; i < res->count; i++) {
			if (res->mx[i].host[0] == '\0')
				free(res->mx[i].host);
			else
				res->mx[out++] = res->mx[i];
		}
		if (out == 0)
			res->status = DNS_NULL_MX;
		res->count = out;
		dns_result_sort_mx(res);
	}
	return 1;
bad:
	buf_deinit(&name);
	dns_result_clear(res);
	*error_r = "malformed packet";
	return -1;
}

void dns_result_clear(struct dns_result *res)
{
	for (size_t i = 0; i < res->count; i++) {
		if (res->mx != NULL)
			free(res->mx[i].host);
		if (res->txt != NULL)
			free(res->txt[i]);
		if (res->tlsa != NULL)
			free(res->tlsa[i].data);
	}
	free(res->mx);
	free(res->addr);
	free(res->txt);
	free(res->tlsa);
	free(res->error);
	uint16_t qtype = res->qtype;
	memset(res, 0, sizeof(*res));
	res->qtype = qtype;
}

void dns_result_free(struct dns_result **res)
{
	if (*res == NULL)
		return;
	dns_result_clear(*res);
	xfree(res);
}

struct dns_result *dns_result_dup(const struct dns_result *res)
{
	struct dns_result *d = xmalloc(sizeof(*d));
	*d = *res;
	d->mx = NULL;
	d->addr = NULL;
	d->txt = NULL;
	d->tlsa = NULL;
	d->error = res->error != NULL ? xstrdup(res->error) : NULL;
	if (res->mx != NULL) {
		d->mx = xreallocarray(NULL, res->count + 1, sizeof(*d->mx));
		for (size_t i = 0; i < res->count; i++) {
			d->mx[i].pref = res->mx[i].pref;
			d->mx[i].host = xstrdup(res->mx[i].host);
		}
	}
	if (res->addr != NULL)
		d->addr = (struct dns_addr *)(void *)xmemdup(res->addr, res->count * sizeof(*d->addr));
	if (res->txt != NULL) {
		d->txt = xreallocarray(NULL, res->count + 1, sizeof(*d->txt));
		for (size_t i = 0; i < res->count; i++)
			d->txt[i] = xstrdup(res->txt[i]);
	}
	if (res->tlsa != NULL) {
		d->tlsa = xreallocarray(NULL, res->count + 1, sizeof(*d->tlsa));
		for (size_t i = 0; i < res->count; i++) {
			d->tlsa[i] = res->tlsa[i];
			d->tlsa[i].data = (uint8_t *)xmemdup(res->tlsa[i].data, res->tlsa[i].data_len + 1);
		}
	}
	return d;
}

static int mx_cmp(const void *a, const void *b)
{
	const struct dns_mx *x = a, *y = b;
	return (int)x->pref - (int)y->pref;
}

void dns_result_sort_mx(struct dns_result *res)
{
	if (res->mx == NULL || res->count < 2)
		return;
	/* shuffle first, then a stable sort keeps the random order within a preference */
	for (size_t i = res->count - 1; i > 0; i--) {
		size_t j = arc4random_uniform((uint32_t)i + 1);
		struct dns_mx t = res->mx[i];
		res->mx[i] = res->mx[j];
		res->mx[j] = t;
	}
	/* insertion sort: stable, count <= DNS_MAX_RECORDS */
	for (size_t i = 1; i < res->count; i++) {
		struct dns_mx t = res->mx[i];
		size_t j = i;
		while (j > 0 && mx_cmp(&res->mx[j - 1], &t) > 0) {
			res->mx[j] = res->mx[j - 1];
			j--;
		}
		res->mx[j] = t;
	}
}
