#include "lib/ipc.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/xalloc.h"

#define IPC_HDR 8

struct ipc_out {
	struct ipc_out *next;
	size_t len;
	int fd;
	uint8_t data[];
};

struct ipc_conn {
	int fd;
	struct event *rev, *wev;
	struct ipc_out *out_head, *out_tail;
	ipc_msg_cb *on_msg;
	ipc_close_cb *on_close;
	void *arg;
	uid_t peer_uid;
	bool closed;
	unsigned depth;    /* inside our own callbacks: freeing is deferred to the way out */
	bool free_pending;
};

/* Peers a client accepts besides root (ipc_set_trusted_peers); empty = only our own uid and root. */
static uid_t trusted_peers[8];
static size_t trusted_peer_count;

void ipc_set_trusted_peers(const uid_t *uids, size_t n)
{
	trusted_peer_count = 0;
	for (size_t i = 0; i < n && i < 8; i++)
		trusted_peers[trusted_peer_count++] = uids[i];
}

static bool peer_trusted(uid_t uid)
{
	if (uid == 0 || uid == geteuid())
		return true;
	for (size_t i = 0; i < trusted_peer_count; i++)
		if (trusted_peers[i] == uid)
			return true;
	return false;
}

static void ipc_conn_destroy(struct ipc_conn *c);

struct ipc_server {
	int fd;
	struct event *ev;
	uid_t allowed[8];
	size_t allowed_count;
	ipc_accept_cb *cb;
	void *arg;
};

void ipc_msg_init(struct ipc_msg *m, uint16_t type, uint32_t reqid)
{
	buf_init(&m->b, IPC_MAX_MSG);
	m->fd = -1;
	uint8_t h[IPC_HDR] = { IPC_VERSION & 0xff, IPC_VERSION >> 8, type & 0xff, type >> 8,
		               reqid & 0xff, (reqid >> 8) & 0xff, (reqid >> 16) & 0xff, reqid >> 24 };
	buf_append(&m->b, h, sizeof(h));
}

void ipc_msg_deinit(struct ipc_msg *m)
{
	buf_deinit(&m->b);
}

static void ipc_put(struct ipc_msg *m, const void *p, size_t n)
{
	if (buf_append(&m->b, p, n) < 0)
		log_panic("event=ipc_message_too_big size=%zu", m->b.len + n);
}

void ipc_put_u32(struct ipc_msg *m, uint32_t v)
{
	uint8_t b[4] = { v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24 };
	ipc_put(m, b, 4);
}

void ipc_put_u64(struct ipc_msg *m, uint64_t v)
{
	ipc_put_u32(m, (uint32_t)v);
	ipc_put_u32(m, (uint32_t)(v >> 32));
}

void ipc_put_data(struct ipc_msg *m, const void *p, size_t n)
{
	ipc_put_u32(m, (uint32_t)n);
	ipc_put(m, p, n);
}

void ipc_put_str(struct ipc_msg *m, const char *s)
{
	if (s == NULL) {
		ipc_put_u32(m, UINT32_MAX);
		return;
	}
	ipc_put_data(m, s, strlen(s));
}

static const uint8_t *ipc_take(struct ipc_reader *r, size_t n)
{
	if (r->error || n > r->len - r->off) {
		r->error = true;
		return NULL;
	}
	const uint8_t *p = r->p + r->off;
	r->off += n;
	return p;
}

uint32_t ipc_get_u32(struct ipc_reader *r)
{
	const uint8_t *b = ipc_take(r, 4);
	if (b == NULL)
		return 0;
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

uint64_t ipc_get_u64(struct ipc_reader *r)
{
	uint64_t lo = ipc_get_u32(r);
	uint64_t hi = ipc_get_u32(r);
	return lo | hi << 32;
}

char *ipc_get_strdup(struct ipc_reader *r)
{
	uint32_t n = ipc_get_u32(r);
	if (n == UINT32_MAX || r->error)
		return NULL;
	const uint8_t *p = ipc_take(r, n);
	if (p == NULL)
		return NULL;
	if (memchr(p, '\0', n) != NULL) {
		r->error = true;
		return NULL;
	}
	return xmemdup(p, n);
}

void ipc_get_str(struct ipc_reader *r, char *out, size_t size)
{
	out[0] = '\0';
	uint32_t n = ipc_get_u32(r);
	if (n == UINT32_MAX || r->error)
		return;
	const uint8_t *p = ipc_take(r, n);
	if (p == NULL)
		return;
	if (n >= size || memchr(p, '\0', n) != NULL) {
		r->error = true;
		return;
	}
	memcpy(out, p, n);
	out[n] = '\0';
}

int ipc_reader_end(struct ipc_reader *r)
{
	return r->error || r->off != r->len ? -1 : 0;
}

static void ipc_conn_fail(struct ipc_conn *c)
{
	if (c->closed)
		return;
	c->closed = true;
	event_del(c->rev);
	event_del(c->wev);
	if (c->on_close != NULL)
		c->on_close(c, c->arg);
}

static int ipc_flush(struct ipc_conn *c)
{
	while (c->out_head != NULL) {
		struct ipc_out *o = c->out_head;
		struct iovec iov = { .iov_base = o->data, .iov_len = o->len };
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} u;
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (o->fd >= 0) {
			mh.msg_control = u.buf;
			mh.msg_controllen = sizeof(u.buf);
			struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &o->fd, sizeof(int));
		}
		ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				event_add(c->wev, NULL);
				return 0;
			}
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (o->fd >= 0)
			close(o->fd);
		c->out_head = o->next;
		if (c->out_head == NULL)
			c->out_tail = NULL;
		free(o);
	}
	return 0;
}

int ipc_send(struct ipc_conn *c, const struct ipc_msg *m)
{
	if (c == NULL || c->closed)
		return -1;
	struct ipc_out *o = xmalloc(sizeof(*o) + m->b.len);
	o->next = NULL;
	o->len = m->b.len;
	o->fd = -1;
	if (m->fd >= 0) {
		/* Keep our own copy: the caller may close its fd as soon as we return. */
		o->fd = fcntl(m->fd, F_DUPFD_CLOEXEC, 0);
		if (o->fd < 0) {
			free(o);
			return -1;
		}
	}
	memcpy(o->data, m->b.data, m->b.len);
	bool was_empty = c->out_head == NULL;
	if (c->out_tail != NULL)
		c->out_tail->next = o;
	else
		c->out_head = o;
	c->out_tail = o;
	if (was_empty && ipc_flush(c) < 0) {
		ipc_conn_fail(c);
		return -1;
	}
	return 0;
}

static void ipc_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_conn *c = arg;
	c->depth++;
	if (ipc_flush(c) < 0)
		ipc_conn_fail(c);
	c->depth--;
	if (c->free_pending)
		ipc_conn_destroy(c);
}

static void ipc_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_conn *c = arg;
	static uint8_t data[IPC_MAX_MSG + 1];

	for (int round = 0; round < 64 && !c->closed; round++) {
		union {
			char buf[CMSG_SPACE(sizeof(int) * 4)];
			struct cmsghdr align;
		} u;
		struct iovec iov = { .iov_base = data, .iov_len = sizeof(data) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			             .msg_controllen = sizeof(u.buf) };
		ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ipc_conn_fail(c);
			return;
		}
		int passed = -1;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
				size_t nfds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
				for (size_t i = 0; i < nfds; i++) {
					int f;
					memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
					if (passed < 0)
						passed = f;
					else
						close(f);
				}
			}
		}
		if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || n < IPC_HDR ||
		    (data[0] | data[1] << 8) != IPC_VERSION)
			log_panic("event=ipc_malformed len=%zd flags=%d", n, mh.msg_flags);
		struct ipc_reader r = {
			.p = data, .len = (size_t)n, .off = IPC_HDR,
			.type = (uint16_t)(data[2] | data[3] << 8),
			.reqid = (uint32_t)data[4] | (uint32_t)data[5] << 8 | (uint32_t)data[6] << 16 |
			         (uint32_t)data[7] << 24,
		};
		c->depth++;
		c->on_msg(c, &r, passed, c->arg);
		c->depth--;
		if (c->free_pending) {
			/* The callback closed and freed it: finish the job now that we are out. */
			ipc_conn_destroy(c);
			return;
		}
	}
}

struct ipc_conn *ipc_conn_new(struct event_base *base, int fd, ipc_msg_cb *on_msg, ipc_close_cb *on_close,
                              void *arg)
{
	struct ipc_conn *c = xcalloc(1, sizeof(*c));
	c->fd = fd;
	c->on_msg = on_msg;
	c->on_close = on_close;
	c->arg = arg;
	c->peer_uid = (uid_t)-1;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
		c->peer_uid = cred.uid;
	evutil_make_socket_nonblocking(fd);
	c->rev = event_new(base, fd, EV_READ | EV_PERSIST, ipc_on_read, c);
	c->wev = event_new(base, fd, EV_WRITE, ipc_on_write, c);
	event_add(c->rev, NULL);
	return c;
}

static socklen_t ipc_sockaddr(struct sockaddr_un *sun, const char *name)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	size_t n = strlen(name);
	if (n > sizeof(sun->sun_path) - 2)
		n = sizeof(sun->sun_path) - 2;
	memcpy(sun->sun_path + 1, name, n); /* sun_path[0] = 0: abstract namespace */
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

struct ipc_conn *ipc_connect(struct event_base *base, const char *name, ipc_msg_cb *on_msg,
                             ipc_close_cb *on_close, void *arg)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	struct sockaddr_un sun;
	socklen_t len = ipc_sockaddr(&sun, name);
	if (connect(fd, (struct sockaddr *)&sun, len) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return NULL;
	}
	/*
	 * The abstract names are public: refuse a peer that is not one of our roles
	 * (someone squatting the name while a role restarts must not get our mail).
	 */
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 || !peer_trusted(cred.uid)) {
		log_warn("event=ipc_untrusted_peer name=%s uid=%ld", name, clen == sizeof(cred) ? (long)cred.uid : -1L);
		close(fd);
		errno = EPERM;
		return NULL;
	}
	return ipc_conn_new(base, fd, on_msg, on_close, arg);
}

static void ipc_conn_destroy(struct ipc_conn *c)
{
	event_free(c->rev);
	event_free(c->wev);
	while (c->out_head != NULL) {
		struct ipc_out *o = c->out_head;
		c->out_head = o->next;
		if (o->fd >= 0)
			close(o->fd);
		free(o);
	}
	close(c->fd);
	free(c);
}

/*
 * Roles remember connections by pointer in jobs that outlive them (a delayed
 * AUTH answer, a DNS-bound check): keep the memory of a closed connection for a
 * while so a new connection can never get the same address meanwhile and
 * receive an answer meant for the old one.
 */
#define IPC_GRAVE_SECONDS 120

struct ipc_grave {
	struct ipc_grave *next;
	struct ipc_conn *c;
	time_t until;
};
static struct ipc_grave *graveyard;

void ipc_conn_free_later(struct ipc_conn **cp)
{
	struct ipc_conn *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	time_t now = time(NULL);
	/* Bury the old ones first (no timer needed: connections come and go all the time). */
	for (struct ipc_grave **g = &graveyard; *g != NULL;) {
		if ((*g)->until <= now && (*g)->c->depth == 0) {
			struct ipc_grave *dead = *g;
			*g = dead->next;
			ipc_conn_destroy(dead->c);
			free(dead);
		} else {
			g = &(*g)->next;
		}
	}
	c->closed = true;
	event_del(c->rev);
	event_del(c->wev);
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	struct ipc_grave *g = xmalloc(sizeof(*g));
	g->c = c;
	g->until = now + IPC_GRAVE_SECONDS;
	g->next = graveyard;
	graveyard = g;
}

void ipc_conn_free(struct ipc_conn **cp)
{
	struct ipc_conn *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	if (c->depth > 0) {
		/* Called from inside one of its own callbacks (e.g. on_close during a reply): later. */
		c->closed = true;
		event_del(c->rev);
		event_del(c->wev);
		c->free_pending = true;
		return;
	}
	ipc_conn_destroy(c);
}

bool ipc_conn_is_open(const struct ipc_conn *c)
{
	return !c->closed;
}

uid_t ipc_conn_peer_uid(const struct ipc_conn *c)
{
	return c->peer_uid;
}

void ipc_conn_set_arg(struct ipc_conn *c, void *arg)
{
	c->arg = arg;
}

static void ipc_on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_server *s = arg;
	for (;;) {
		int cfd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (cfd < 0)
			return;
		struct ucred cred;
		socklen_t len = sizeof(cred);
		bool ok = false;
		if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
			ok = cred.uid == 0;
			for (size_t i = 0; i < s->allowed_count && !ok; i++)
				ok = cred.uid == s->allowed[i];
		}
		if (!ok) {
			log_warn("event=ipc_peer_refused uid=%ld", (long)cred.uid);
			close(cfd);
			continue;
		}
		s->cb(s, cfd, cred.uid, s->arg);
	}
}

struct ipc_server *ipc_server_new(struct event_base *base, const char *name, const uid_t *allowed, size_t n,
                                  ipc_accept_cb *cb, void *arg, char **error_r)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		*error_r = xasprintf("socket: %s", strerror(errno));
		return NULL;
	}
	struct sockaddr_un sun;
	socklen_t len = ipc_sockaddr(&sun, name);
	if (bind(fd, (struct sockaddr *)&sun, len) < 0 || listen(fd, 128) < 0) {
		*error_r = xasprintf("bind @%s: %s", name, strerror(errno));
		close(fd);
		return NULL;
	}
	struct ipc_server *s = xcalloc(1, sizeof(*s));
	s->fd = fd;
	s->cb = cb;
	s->arg = arg;
	for (size_t i = 0; i < n && i < 8; i++)
		s->allowed[s->allowed_count++] = allowed[i];
	s->ev = event_new(base, fd, EV_READ | EV_PERSIST, ipc_on_accept, s);
	event_add(s->ev, NULL);
	return s;
}

void ipc_server_free(struct ipc_server **sp)
{
	struct ipc_server *s = *sp;
	if (s == NULL)
		return;
	*sp = NULL;
	event_free(s->ev);
	close(s->fd);
	free(s);
}
