/*
 * test-dns-server: test-only helper that starts a real unbound (/usr/sbin/unbound)
 * on a free 127.0.0.1 port with a generated config serving local-data records
 * in the zone "test.", and stops it by PID. Used by the lib-dns and outbound
 * unit tests. Not part of any library a daemon links.
 */
#ifndef MR_TEST_DNS_SERVER_H
#define MR_TEST_DNS_SERVER_H

#include <sys/types.h>

struct test_dns_server {
	pid_t pid;
	int port;
	char dir[64];      /* temp directory with unbound.conf and the log */
	char fwd[32];      /* "127.0.0.1@PORT" for dns_resolver_new */
};

/*
 * records: NULL-terminated list of local-data RR strings, e.g. "mx.test. 300 IN MX 10 a.test.".
 * Returns 0 when the server answers, -1 on failure (message on stderr).
 */
int test_dns_server_start(struct test_dns_server *s, const char *const *records);
void test_dns_server_stop(struct test_dns_server *s);
/* A free TCP+UDP port on 127.0.0.1 (racy but fine for tests). */
int test_free_port(void);

#endif
