#include "filters/clamd_client.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib-milter/filter_conn.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#define CLAMD_CHUNK 65536
#define CLAMD_REPLY_MAX 1024
#define CLAMD_DEFAULT_TIMEOUT 30000

struct clamd_scan {
	struct filter_conn *conn;
	struct event *ev_skip;
	int fd;
	uint64_t size, sent;
	unsigned timeout_ms;
	bool terminated;   /* zero chunk queued */
	clamd_callback *cb;
	void *arg;
	char chunk[4 + CLAMD_CHUNK];
};

const char *clamd_status_name(enum clamd_status status)
{
	switch (status) {
	case CLAMD_CLEAN: return "clean";
	case CLAMD_INFECTED: return "infected";
	case CLAMD_ERROR: return "error";
	case CLAMD_SKIPPED: return "skipped";
	}
	return "?";
}

static void set_name(char *name_buf, size_t name_size, const char *p, size_t n)
{
	if (n >= name_size)
		n = name_size - 1;
	memcpy(name_buf, p, n);
	name_buf[n] = '\0';
	/* keep it printable: it goes to logs and SMTP replies */
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)name_buf[i];
		if (ch < 0x20 || ch > 0x7e)
			name_buf[i] = '?';
	}
}

void clamd_reply_parse(const char *reply, size_t len, struct clamd_result *res, char *name_buf,
                       size_t name_size)
{
	memset(res, 0, sizeof(*res));
	const char *nul = memchr(reply, '\0', len);
	if (nul != NULL)
		len = (size_t)(nul - reply);
	while (len > 0 && (reply[len - 1] == '\n' || reply[len - 1] == '\r'))
		len--;
	/* "stream: " (INSTREAM), or "N: " with IDSESSION; take what follows the first ": " */
	const char *colon = NULL;
	for (size_t i = 0; i + 1 < len; i++) {
		if (reply[i] == ':' && reply[i + 1] == ' ') {
			colon = reply + i;
			break;
		}
	}
	if (colon == NULL) {
		res->status = CLAMD_ERROR;
		set_name(name_buf, name_size, reply, len);
		res->error = len == 0 ? "empty reply" : name_buf;
		return;
	}
	const char *v = colon + 2;
	size_t vlen = len - (size_t)(v - reply);
	if (vlen == 2 && memcmp(v, "OK", 2) == 0) {
		res->status = CLAMD_CLEAN;
		return;
	}
	if (vlen > 6 && memcmp(v + vlen - 6, " FOUND", 6) == 0) {
		res->status = CLAMD_INFECTED;
		set_name(name_buf, name_size, v, vlen - 6);
		res->virus = name_buf;
		return;
	}
	res->status = CLAMD_ERROR;
	set_name(name_buf, name_size, v, vlen);
	res->error = name_buf;
}

static void scan_finish(struct clamd_scan *s, const struct clamd_result *res)
{
	clamd_callback *cb = s->cb;
	void *arg = s->arg;
	clamd_scan_cancel(&s);
	cb(arg, res);
}

static void scan_error(struct clamd_scan *s, const char *error)
{
	struct clamd_result res = {.status = CLAMD_ERROR, .error = error};
	scan_finish(s, &res);
}

static void scan_reply(struct clamd_scan *s, bool eof)
{
	struct buf *in = filter_conn_input(s->conn);
	char name[256];
	struct clamd_result res;

	if (memchr(in->data, '\0', in->len) == NULL && !eof)
		return; /* need more */
	if (in->len == 0) {
		scan_error(s, "connection closed without a reply");
		return;
	}
	clamd_reply_parse(in->data, in->len, &res, name, sizeof(name));
	scan_finish(s, &res);
}

/* Queue the next chunk (or the terminating zero chunk). 0 ok, -1 finished with an error. */
static int scan_pump(struct clamd_scan *s)
{
	if (s->terminated)
		return 0;
	if (s->sent == s->size) {
		static const unsigned char zero[4];
		filter_conn_write(s->conn, zero, sizeof(zero));
		s->terminated = true;
		return 0;
	}
	uint64_t left = s->size - s->sent;
	size_t n = left < CLAMD_CHUNK ? (size_t)left : CLAMD_CHUNK;
	ssize_t r;
	do {
		r = pread(s->fd, s->chunk + 4, n, (off_t)s->sent);
	} while (r < 0 && errno == EINTR);
	if (r <= 0) {
		scan_error(s, r < 0 ? "spool read error" : "spool file shorter than expected");
		return -1;
	}
	uint32_t len = (uint32_t)r;
	s->chunk[0] = (char)(len >> 24);
	s->chunk[1] = (char)(len >> 16);
	s->chunk[2] = (char)(len >> 8);
	s->chunk[3] = (char)len;
	filter_conn_write(s->conn, s->chunk, 4 + (size_t)r);
	s->sent += (uint64_t)r;
	return 0;
}

static void scan_conn_cb(void *arg, enum filter_conn_event ev, const char *error)
{
	struct clamd_scan *s = arg;
	char msg[200];

	switch (ev) {
	case FILTER_CONN_DRAINED:
		filter_conn_set_timeout(s->conn, s->timeout_ms);
		(void)scan_pump(s);
		return;
	case FILTER_CONN_READ:
		scan_reply(s, false);
		return;
	case FILTER_CONN_EOF:
		scan_reply(s, true);
		return;
	case FILTER_CONN_ERROR:
		snprintf(msg, sizeof(msg), "clamd: %s", error);
		scan_error(s, msg);
		return;
	case FILTER_CONN_TIMEOUT:
		scan_error(s, "clamd: timeout");
		return;
	}
}

static void scan_skip_cb(evutil_socket_t fd, short what, void *arg)
{
	struct clamd_result res = {.status = CLAMD_SKIPPED, .error = "message larger than max_size: not scanned"};
	scan_finish(arg, &res);
}

struct clamd_scan *clamd_scan_start(struct event_base *base, const struct clamd_settings *set, int fd,
                                    uint64_t size, clamd_callback *cb, void *arg)
{
	struct clamd_scan *s = xcalloc(1, sizeof(*s));
	s->fd = fd;
	s->size = size;
	s->timeout_ms = set->timeout_ms > 0 ? set->timeout_ms : CLAMD_DEFAULT_TIMEOUT;
	s->cb = cb;
	s->arg = arg;
	if (set->max_size > 0 && size > set->max_size) {
		s->ev_skip = event_new(base, -1, 0, scan_skip_cb, s);
		if (s->ev_skip == NULL)
			abort();
		event_active(s->ev_skip, EV_TIMEOUT, 0);
		return s;
	}
	s->conn = filter_conn_new(base, set->address, CLAMD_REPLY_MAX, s->timeout_ms, scan_conn_cb, s);
	filter_conn_write(s->conn, "zINSTREAM", 10); /* with its NUL */
	return s;
}

void clamd_scan_cancel(struct clamd_scan **sp)
{
	struct clamd_scan *s = *sp;
	if (s == NULL)
		return;
	*sp = NULL;
	filter_conn_free(&s->conn);
	if (s->ev_skip != NULL)
		event_free(s->ev_skip);
	free(s);
}
