/*
 * Fuzz a whole POP3 session: log in with USER/PASS (stub authenticator), then feed the
 * input as client bytes over a socketpair and run the event loop until the session is
 * quiet, then hang up. The Maildir (/tmp/fuzz-pop3-session-<pid>) is removed at exit.
 */
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/xalloc.h"
#include "pop3/pop3_session.h"

static char root[128];
static struct event_base *base;

struct stub {
	mail_auth_cb *cb;
	void *arg;
	struct event *ev;
};

static void stub_fire(evutil_socket_t fd, short what, void *p)
{
	struct stub *r = p;
	r->cb(r->arg, LOOKUP_OK, "joe@example.test", root);
	event_free(r->ev);
	free(r);
}

static void *stub_begin(void *ctx, const char *service, const char *user, const char *password,
                        const char *ip, mail_auth_cb *cb, void *arg)
{
	struct stub *r = xcalloc(1, sizeof(*r));
	r->cb = cb;
	r->arg = arg;
	r->ev = event_new(base, -1, 0, stub_fire, r);
	struct timeval tv = { 0, 0 };
	event_add(r->ev, &tv);
	return r;
}

static void stub_cancel(void *ctx, void *req)
{
	struct stub *r = req;
	event_free(r->ev);
	free(r);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void cleanup(void)
{
	char dir[128];
	snprintf(dir, sizeof(dir), "/tmp/fuzz-pop3-session-%d", (int)getpid());
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void seed_mail(void)
{
	static const char *const subs[] = { "", "/new", "/cur", "/tmp" };
	char dir[160];
	snprintf(dir, sizeof(dir), "/tmp/fuzz-pop3-session-%d", (int)getpid());
	mkdir(dir, 0700);
	for (size_t i = 0; i < 4; i++) {
		snprintf(dir, sizeof(dir), "%s%s", root, subs[i]);
		mkdir(dir, 0700);
	}
	for (int i = 0; i < 3; i++) {
		snprintf(dir, sizeof(dir), "%s/new/%d.fuzz%d.host", root, 1700000000 + i, i);
		FILE *f = fopen(dir, "w");
		if (f != NULL) {
			fprintf(f, "Subject: m%d\n\n.line\nbody %d\n", i, i);
			fclose(f);
		}
	}
}

static void drain(int fd)
{
	char tmp[65536];
	while (read(fd, tmp, sizeof(tmp)) > 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (root[0] == '\0') {
		snprintf(root, sizeof(root), "/tmp/fuzz-pop3-session-%d/joe", (int)getpid());
		log_set_level(LOG_LEVEL_WARN);
		seed_mail();
		atexit(cleanup);
	}
	base = event_base_new();
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	struct pop3_settings set = {
		.hostname = "fuzz", .allow_plaintext = true, .timeout_secs = 5, .max_errors = 1000,
		.auth = { .begin = stub_begin, .cancel = stub_cancel },
	};
	pop3_session_new(base, sv[0], &set, false, "127.0.0.1");
	static const char login[] = "USER joe\r\nPASS pw\r\n";
	if (write(sv[1], login, sizeof(login) - 1) < 0)
		abort();
	for (int i = 0; i < 20; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	size_t off = 0;
	for (int spins = 0; spins < 2000 && (off < size || spins < 50); spins++) {
		if (off < size) {
			ssize_t w = write(sv[1], data + off, size - off);
			if (w > 0)
				off += (size_t)w;
		}
		event_base_loop(base, EVLOOP_NONBLOCK);
		drain(sv[1]);
	}
	close(sv[1]);
	for (int spins = 0; spins < 200 && pop3_session_count() > 0; spins++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	if (pop3_session_count() > 0)
		pop3_sessions_shutdown();
	event_base_free(base);
	return 0;
}
