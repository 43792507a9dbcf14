#include "lib-milter/milter_proto.h"

#include <string.h>

#include "lib/buf.h"

static uint32_t get32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static void put32(char *p, uint32_t v)
{
	p[0] = (char)(v >> 24);
	p[1] = (char)(v >> 16);
	p[2] = (char)(v >> 8);
	p[3] = (char)v;
}

int milter_packet_parse(const char *data, size_t len, size_t max, struct milter_packet *pkt, size_t *consumed,
                        const char **error_r)
{
	if (len < 4)
		return 0;
	uint32_t plen = get32(data);
	if (plen == 0) {
		*error_r = "milter packet with zero length";
		return -1;
	}
	if (plen > max) {
		*error_r = "milter packet too large";
		return -1;
	}
	if (len - 4 < plen)
		return 0;
	pkt->cmd = data[4];
	pkt->data = data + 5;
	pkt->len = plen - 1;
	*consumed = 4 + (size_t)plen;
	return 1;
}

/* A NUL-terminated string at *p within [*p, end): returns it and advances, NULL if none. */
static const char *take_str(const char **p, const char *end)
{
	const char *s = *p;
	if (s >= end)
		return NULL;
	const char *nul = memchr(s, '\0', (size_t)(end - s));
	if (nul == NULL)
		return NULL;
	*p = nul + 1;
	return s;
}

static int bad(const char **error_r, const char *why)
{
	*error_r = why;
	return -1;
}

int milter_reply_decode(const struct milter_packet *pkt, struct milter_reply *r, const char **error_r)
{
	const char *p = pkt->data, *end = pkt->data + pkt->len;

	memset(r, 0, sizeof(*r));
	r->cmd = pkt->cmd;
	switch (pkt->cmd) {
	case MILTER_REPLY_ACCEPT:
	case MILTER_REPLY_CONTINUE:
	case MILTER_REPLY_DISCARD:
	case MILTER_REPLY_REJECT:
	case MILTER_REPLY_TEMPFAIL:
	case MILTER_REPLY_SKIP:
	case MILTER_REPLY_PROGRESS:
	case MILTER_REPLY_CONN_FAIL:
	case MILTER_REPLY_SHUTDOWN:
		return 1; /* any data is ignored */
	case MILTER_REPLY_OPTNEG:
		if (pkt->len < 12)
			return bad(error_r, "short OPTNEG reply");
		r->version = get32(p);
		r->actions = get32(p + 4);
		r->protocol = get32(p + 8);
		r->symlists = p + 12;
		r->symlists_len = pkt->len - 12;
		return 1;
	case MILTER_REPLY_REPLYCODE: {
		const char *s = take_str(&p, end);
		if (s == NULL)
			return bad(error_r, "REPLYCODE not NUL-terminated");
		size_t sl = strlen(s);
		if (sl < 3 || (s[0] != '4' && s[0] != '5') || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9' ||
		    (sl > 3 && s[3] != ' ' && s[3] != '-'))
			return bad(error_r, "REPLYCODE without a 4xx/5xx code");
		for (size_t i = 0; i < sl; i++) {
			/* multi-line replies use CRLF between lines; other controls are refused */
			unsigned char ch = (unsigned char)s[i];
			if (ch < 0x20 && ch != '\r' && ch != '\n' && ch != '\t')
				return bad(error_r, "REPLYCODE with control characters");
		}
		r->code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
		r->text = s;
		return 1;
	}
	case MILTER_REPLY_ADDHEADER:
		r->name = take_str(&p, end);
		r->value = take_str(&p, end);
		if (r->name == NULL || r->value == NULL || r->name[0] == '\0')
			return bad(error_r, "malformed ADDHEADER");
		return 1;
	case MILTER_REPLY_INSHEADER:
	case MILTER_REPLY_CHGHEADER:
		if (pkt->len < 4)
			return bad(error_r, "short header change");
		r->index = get32(p);
		p += 4;
		r->name = take_str(&p, end);
		r->value = take_str(&p, end);
		if (r->name == NULL || r->value == NULL || r->name[0] == '\0')
			return bad(error_r, "malformed header change");
		return 1;
	case MILTER_REPLY_ADDRCPT:
	case MILTER_REPLY_DELRCPT:
		r->name = take_str(&p, end);
		if (r->name == NULL || r->name[0] == '\0')
			return bad(error_r, "malformed recipient change");
		return 1;
	case MILTER_REPLY_ADDRCPT_PAR:
	case MILTER_REPLY_CHGFROM:
		r->name = take_str(&p, end);
		if (r->name == NULL || r->name[0] == '\0')
			return bad(error_r, "malformed envelope change");
		if (p < end) {
			r->value = take_str(&p, end);
			if (r->value == NULL)
				return bad(error_r, "malformed envelope change arguments");
		}
		return 1;
	case MILTER_REPLY_REPLBODY:
		r->body = p;
		r->body_len = pkt->len;
		return 1;
	case MILTER_REPLY_QUARANTINE:
		r->text = take_str(&p, end);
		if (r->text == NULL)
			return bad(error_r, "malformed QUARANTINE");
		return 1;
	case MILTER_REPLY_SETSYMLIST:
		return bad(error_r, "SETSYMLIST outside negotiation");
	default:
		return bad(error_r, "unknown milter reply");
	}
}

int milter_encode(struct buf *out, char cmd, const void *data, size_t len)
{
	char head[5];
	if (len >= UINT32_MAX || out->len + 5 + len > out->max)
		return -1;
	put32(head, (uint32_t)(len + 1));
	head[4] = cmd;
	if (buf_append(out, head, 5) < 0)
		return -1;
	if (len > 0 && buf_append(out, data, len) < 0) {
		out->len -= 5;
		out->data[out->len] = '\0';
		return -1;
	}
	return 0;
}

int milter_encode_optneg(struct buf *out, uint32_t version, uint32_t actions, uint32_t protocol)
{
	char d[12];
	put32(d, version);
	put32(d + 4, actions);
	put32(d + 8, protocol);
	return milter_encode(out, MILTER_CMD_OPTNEG, d, sizeof(d));
}

/* Build the data of a packet in a scratch buf, then frame it. */
static int frame(struct buf *out, char cmd, struct buf *tmp)
{
	int r = milter_encode(out, cmd, tmp->data, tmp->len);
	buf_deinit(tmp);
	return r;
}

int milter_encode_macros(struct buf *out, char for_cmd, const char *const *names, const char *const *values,
                         size_t n)
{
	struct buf tmp;
	buf_init(&tmp, MILTER_CHUNK_MAX);
	if (buf_append_c(&tmp, for_cmd) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if (values[i] == NULL)
			continue;
		if (buf_append(&tmp, names[i], strlen(names[i]) + 1) < 0 ||
		    buf_append(&tmp, values[i], strlen(values[i]) + 1) < 0)
			goto fail;
	}
	return frame(out, MILTER_CMD_MACRO, &tmp);
fail:
	buf_deinit(&tmp);
	return -1;
}

int milter_encode_connect(struct buf *out, const char *hostname, char family, unsigned port, const char *addr)
{
	struct buf tmp;
	char pb[2] = {(char)(port >> 8), (char)port};
	buf_init(&tmp, MILTER_CHUNK_MAX);
	if (buf_append(&tmp, hostname, strlen(hostname) + 1) < 0 || buf_append_c(&tmp, family) < 0)
		goto fail;
	if (family != 'U') {
		if (buf_append(&tmp, pb, 2) < 0 || buf_append(&tmp, addr, strlen(addr) + 1) < 0)
			goto fail;
	}
	return frame(out, MILTER_CMD_CONNECT, &tmp);
fail:
	buf_deinit(&tmp);
	return -1;
}

int milter_encode_envelope(struct buf *out, char cmd, const char *address, const char *const *args, size_t nargs)
{
	struct buf tmp;
	buf_init(&tmp, MILTER_CHUNK_MAX);
	if (buf_printf(&tmp, "<%s>", address) < 0 || buf_append_c(&tmp, '\0') < 0)
		goto fail;
	for (size_t i = 0; i < nargs; i++) {
		if (buf_append(&tmp, args[i], strlen(args[i]) + 1) < 0)
			goto fail;
	}
	return frame(out, cmd, &tmp);
fail:
	buf_deinit(&tmp);
	return -1;
}

int milter_encode_strings(struct buf *out, char cmd, const char *a, const char *b)
{
	struct buf tmp;
	buf_init(&tmp, MILTER_CHUNK_MAX);
	if (buf_append(&tmp, a, strlen(a) + 1) < 0 || (b != NULL && buf_append(&tmp, b, strlen(b) + 1) < 0)) {
		buf_deinit(&tmp);
		return -1;
	}
	return frame(out, cmd, &tmp);
}
