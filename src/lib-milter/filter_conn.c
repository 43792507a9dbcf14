#include "lib-milter/filter_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/xalloc.h"

struct filter_conn {
	struct event_base *base;
	int fd;
	bool connected;
	bool failed;        /* an error was reported: no more events */
	bool eof;
	struct event *ev_rd, *ev_wr, *ev_timer, *ev_fail;
	struct evbuffer *out;
	struct buf in;
	char error[160];
	filter_conn_callback *cb;
	void *arg;
};

static int fill_addr(const char *host, const char *port_s, struct sockaddr_storage *ss, socklen_t *len_r,
                     const char **error_r)
{
	char *end;
	if (*port_s < '0' || *port_s > '9') {
		*error_r = "bad port";
		return -1;
	}
	unsigned long port = strtoul(port_s, &end, 10);
	if (*end != '\0' || port == 0 || port > 65535) {
		*error_r = "bad port";
		return -1;
	}
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len_r = sizeof(*sin);
		return 1;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len_r = sizeof(*sin6);
		return 1;
	}
	*error_r = "host is not a numeric IP address";
	return -1;
}

/* Copy [p, p+n) into dst (size dstsize), dropping one pair of [] around it. */
static int copy_part(char *dst, size_t dstsize, const char *p, size_t n)
{
	if (n >= 2 && p[0] == '[' && p[n - 1] == ']') {
		p++;
		n -= 2;
	}
	if (n == 0 || n >= dstsize)
		return -1;
	memcpy(dst, p, n);
	dst[n] = '\0';
	return 0;
}

int filter_conn_parse_address(const char *address, struct sockaddr_storage *ss, socklen_t *len_r,
                              const char **error_r)
{
	char host[INET6_ADDRSTRLEN + 2], port[8];

	if (address == NULL || *address == '\0') {
		*error_r = "empty address";
		return -1;
	}
	if (strncmp(address, "inet:", 5) == 0 || strncmp(address, "inet6:", 6) == 0) {
		/* milter convention: inet:PORT@IP */
		const char *p = strchr(address, ':') + 1;
		const char *at = strchr(p, '@');
		if (at == NULL || copy_part(port, sizeof(port), p, (size_t)(at - p)) < 0 ||
		    copy_part(host, sizeof(host), at + 1, strlen(at + 1)) < 0) {
			*error_r = "expected inet:PORT@IP";
			return -1;
		}
		return fill_addr(host, port, ss, len_r, error_r);
	}
	const char *colon = strrchr(address, ':');
	if (colon == NULL || (address[0] != '[' && strchr(address, ':') != colon) ||
	    (address[0] == '[' && colon[-1] != ']') ||
	    copy_part(host, sizeof(host), address, (size_t)(colon - address)) < 0 ||
	    copy_part(port, sizeof(port), colon + 1, strlen(colon + 1)) < 0) {
		*error_r = "expected IP:PORT or [IPv6]:PORT";
		return -1;
	}
	return fill_addr(host, port, ss, len_r, error_r);
}

static void conn_stop(struct filter_conn *c)
{
	event_del(c->ev_rd);
	event_del(c->ev_wr);
	event_del(c->ev_timer);
}

/* Report an error from inside an event handler: last thing the handler does. */
static void conn_fail_now(struct filter_conn *c, const char *prefix, const char *detail)
{
	c->failed = true;
	conn_stop(c);
	snprintf(c->error, sizeof(c->error), "%s%s", prefix, detail);
	c->cb(c->arg, FILTER_CONN_ERROR, c->error);
}

static void conn_fail_cb(evutil_socket_t fd, short what, void *arg)
{
	struct filter_conn *c = arg;
	c->cb(c->arg, FILTER_CONN_ERROR, c->error);
}

/* Report an error later on the loop (from the API functions). */
static void conn_fail_later(struct filter_conn *c, const char *prefix, const char *detail)
{
	if (c->failed)
		return;
	c->failed = true;
	conn_stop(c);
	snprintf(c->error, sizeof(c->error), "%s%s", prefix, detail);
	event_active(c->ev_fail, EV_TIMEOUT, 0);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct filter_conn *c = arg;
	if (c->failed)
		return;
	c->cb(c->arg, FILTER_CONN_TIMEOUT, "timeout");
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct filter_conn *c = arg;
	char tmp[16384];

	if (c->failed)
		return;
	size_t room = c->in.max - c->in.len;
	if (room == 0) {
		conn_fail_now(c, "", "reply too long");
		return;
	}
	ssize_t n = recv(c->fd, tmp, room < sizeof(tmp) ? room : sizeof(tmp), 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		conn_fail_now(c, "read: ", strerror(errno));
		return;
	}
	if (n == 0) {
		c->eof = true;
		event_del(c->ev_rd);
		c->cb(c->arg, FILTER_CONN_EOF, NULL);
		return;
	}
	(void)buf_append(&c->in, tmp, (size_t)n); /* fits: n <= room */
	c->cb(c->arg, FILTER_CONN_READ, NULL);
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct filter_conn *c = arg;

	if (c->failed)
		return;
	if (!c->connected) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err != 0) {
			conn_fail_now(c, "connect: ", strerror(err));
			return;
		}
		c->connected = true;
		event_add(c->ev_rd, NULL);
	}
	while (evbuffer_get_length(c->out) > 0) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(c->out, -1, NULL, &v, 1) < 1)
			break;
		ssize_t n = send(c->fd, v.iov_base, v.iov_len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			if (errno == EPIPE || errno == ECONNRESET) {
				/* the peer may have answered before closing (clamd size limit):
				 * stop writing and let the reader see the reply or EOF */
				evbuffer_drain(c->out, evbuffer_get_length(c->out));
				event_del(c->ev_wr);
				if (c->eof) {
					conn_fail_now(c, "write: ", strerror(errno));
				}
				return;
			}
			conn_fail_now(c, "write: ", strerror(errno));
			return;
		}
		evbuffer_drain(c->out, (size_t)n);
	}
	event_del(c->ev_wr);
	c->cb(c->arg, FILTER_CONN_DRAINED, NULL);
}

struct filter_conn *filter_conn_new(struct event_base *base, const char *address, size_t in_max,
                                    unsigned timeout_ms, filter_conn_callback *cb, void *arg)
{
	struct filter_conn *c = xcalloc(1, sizeof(*c));
	struct sockaddr_storage ss;
	socklen_t sslen = 0;
	const char *error;

	c->base = base;
	c->cb = cb;
	c->arg = arg;
	c->fd = -1;
	buf_init(&c->in, in_max);
	c->out = evbuffer_new();
	if (c->out == NULL)
		abort();
	c->ev_timer = evtimer_new(base, conn_timer_cb, c);
	c->ev_fail = event_new(base, -1, 0, conn_fail_cb, c);
	if (c->ev_timer == NULL || c->ev_fail == NULL)
		abort();
	if (filter_conn_parse_address(address, &ss, &sslen, &error) < 0) {
		c->ev_rd = event_new(base, -1, 0, conn_read_cb, c);
		c->ev_wr = event_new(base, -1, 0, conn_write_cb, c);
		conn_fail_later(c, "bad address: ", error);
		return c;
	}
	c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->ev_rd = event_new(base, c->fd, EV_READ | EV_PERSIST, conn_read_cb, c);
	c->ev_wr = event_new(base, c->fd, EV_WRITE | EV_PERSIST, conn_write_cb, c);
	if (c->ev_rd == NULL || c->ev_wr == NULL)
		abort();
	if (c->fd < 0) {
		conn_fail_later(c, "socket: ", strerror(errno));
		return c;
	}
	if (connect(c->fd, (struct sockaddr *)&ss, sslen) < 0 && errno != EINPROGRESS) {
		conn_fail_later(c, "connect: ", strerror(errno));
		return c;
	}
	event_add(c->ev_wr, NULL);
	filter_conn_set_timeout(c, timeout_ms);
	return c;
}

void filter_conn_free(struct filter_conn **cp)
{
	struct filter_conn *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	event_free(c->ev_rd);
	event_free(c->ev_wr);
	event_free(c->ev_timer);
	event_free(c->ev_fail);
	evbuffer_free(c->out);
	buf_deinit(&c->in);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

void filter_conn_write(struct filter_conn *c, const void *p, size_t n)
{
	if (c->failed || n == 0)
		return;
	if (evbuffer_add(c->out, p, n) < 0)
		abort();
	if (c->connected)
		event_add(c->ev_wr, NULL);
}

size_t filter_conn_out_pending(const struct filter_conn *c)
{
	return evbuffer_get_length(c->out);
}

void filter_conn_drop_output(struct filter_conn *c)
{
	evbuffer_drain(c->out, evbuffer_get_length(c->out));
}

void filter_conn_set_timeout(struct filter_conn *c, unsigned timeout_ms)
{
	if (c->failed)
		return;
	event_del(c->ev_timer);
	if (timeout_ms > 0) {
		struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
		event_add(c->ev_timer, &tv);
	}
}

struct buf *filter_conn_input(struct filter_conn *c)
{
	return &c->in;
}

bool filter_conn_connected(const struct filter_conn *c)
{
	return c->connected;
}
