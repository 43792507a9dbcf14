#include "lib-dns/test-dns-server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int test_free_port(void)
{
	for (int tries = 0; tries < 20; tries++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof(sin);
		if (fd < 0)
			return -1;
		if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
		    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
			close(fd);
			return -1;
		}
		close(fd);
		int port = ntohs(sin.sin_port);
		/* the UDP side must be free too */
		int u = socket(AF_INET, SOCK_DGRAM, 0);
		int ok = bind(u, (struct sockaddr *)&sin, sizeof(sin)) == 0;
		close(u);
		if (ok)
			return port;
	}
	return -1;
}

static int wait_tcp(int port, int ms)
{
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	for (int waited = 0; waited < ms; waited += 20) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
			                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int r = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
		close(fd);
		if (r == 0)
			return 0;
		nanosleep(&ts, NULL);
	}
	return -1;
}

int test_dns_server_start(struct test_dns_server *s, const char *const *records)
{
	char path[128];
	FILE *f;

	memset(s, 0, sizeof(*s));
	snprintf(s->dir, sizeof(s->dir), "/tmp/mr-unbound-XXXXXX");
	if (mkdtemp(s->dir) == NULL) {
		perror("mkdtemp");
		return -1;
	}
	s->port = test_free_port();
	if (s->port < 0)
		return -1;
	snprintf(s->fwd, sizeof(s->fwd), "127.0.0.1@%d", s->port);
	snprintf(path, sizeof(path), "%s/unbound.conf", s->dir);
	f = fopen(path, "w");
	if (f == NULL) {
		perror(path);
		return -1;
	}
	fprintf(f,
	        "server:\n"
	        "  interface: 127.0.0.1@%d\n"
	        "  port: %d\n"
	        "  do-ip6: no\n"
	        "  do-not-query-localhost: no\n"
	        "  chroot: \"\"\n"
	        "  username: \"\"\n"
	        "  pidfile: \"\"\n"
	        "  directory: \"%s\"\n"
	        "  logfile: \"%s/unbound.log\"\n"
	        "  use-syslog: no\n"
	        "  verbosity: 1\n"
	        "  num-threads: 1\n"
	        "  so-reuseport: no\n"
	        "  module-config: \"iterator\"\n"
	        "  access-control: 127.0.0.0/8 allow\n"
	        "  local-zone: \"test.\" static\n"
	        "  local-data: \"test. 300 IN SOA ns.test. admin.test. 1 3600 600 86400 30\"\n",
	        s->port, s->port, s->dir, s->dir);
	for (size_t i = 0; records != NULL && records[i] != NULL; i++)
		fprintf(f, "  local-data: '%s'\n", records[i]);
	fprintf(f, "remote-control:\n  control-enable: no\n");
	fclose(f);

	s->pid = fork();
	if (s->pid < 0)
		return -1;
	if (s->pid == 0) {
		int devnull = open("/dev/null", O_RDWR);
		if (devnull >= 0) {
			dup2(devnull, 0);
			dup2(devnull, 1);
		}
		execl("/usr/sbin/unbound", "unbound", "-d", "-c", path, (char *)NULL);
		_exit(127);
	}
	if (wait_tcp(s->port, 5000) < 0) {
		fprintf(stderr, "unbound did not start on port %d (see %s/unbound.log)\n", s->port, s->dir);
		test_dns_server_stop(s);
		return -1;
	}
	return 0;
}

void test_dns_server_stop(struct test_dns_server *s)
{
	char path[160];
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
	}
	if (s->dir[0] != '\0') {
		snprintf(path, sizeof(path), "%s/unbound.conf", s->dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/unbound.log", s->dir);
		unlink(path);
		rmdir(s->dir);
		s->dir[0] = '\0';
	}
}
