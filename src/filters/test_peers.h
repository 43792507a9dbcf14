/*
 * test_peers: test-only helpers that start the real peers of the content
 * filters (clamd, rspamd) with private configs on free 127.0.0.1 ports, and a
 * forked fake peer for failure cases. Every process is stopped by its PID.
 * Not part of any library a daemon links.
 */
#ifndef MR_TEST_PEERS_H
#define MR_TEST_PEERS_H

#include <stddef.h>
#include <sys/types.h>

struct test_peer {
	pid_t pid;
	int port;
	char dir[64];
	char address[32];  /* "127.0.0.1:PORT" */
};

/* A free TCP port on 127.0.0.1 (racy but fine for tests). */
int test_peer_free_port(void);
/* clamd with an offline .ndb EICAR signature; stream_max e.g. "1M". 0 ok, -1 failed (skip). */
int test_clamd_start(struct test_peer *p, const char *stream_max);
/* rspamd normal worker only, no redis; waits until /checkv2 answers. 0 ok, -1 failed. */
int test_rspamd_start(struct test_peer *p);
/* Kill by PID, reap, remove the temp dir. */
void test_peer_stop(struct test_peer *p);

enum test_fake_mode {
	TEST_FAKE_REPLY,      /* read once, write reply, close */
	TEST_FAKE_HANG,       /* accept, read forever, never answer */
	TEST_FAKE_CLOSE,      /* accept, read once, close without a reply */
};
/* Fork a one-connection fake server; p->pid/port/address set. 0 ok. */
int test_fake_peer_start(struct test_peer *p, enum test_fake_mode mode, const void *reply, size_t len);

/* A temp file holding data, opened for reading; returns the fd (unlinked). */
int test_spool_fd(const void *data, size_t len);

#endif
