#include "filters/test_peers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char eicar[] = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

int test_peer_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		close(fd);
		return -1;
	}
	close(fd);
	return ntohs(sin.sin_port);
}

static int write_file(const char *path, const char *content)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fputs(content, f);
	return fclose(f) == 0 ? 0 : -1;
}

static int connect_port(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Send req, read the answer; 1 if it contains expect. */
static int probe(int port, const char *req, size_t req_len, const char *expect)
{
	int fd = connect_port(port);
	char ans[4096];
	size_t got = 0;
	if (fd < 0)
		return 0;
	if (send(fd, req, req_len, MSG_NOSIGNAL) != (ssize_t)req_len) {
		close(fd);
		return 0;
	}
	for (;;) {
		ssize_t n = recv(fd, ans + got, sizeof(ans) - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
		ans[got] = '\0';
		if (memmem(ans, got, expect, strlen(expect)) != NULL) {
			close(fd);
			return 1;
		}
		if (got == sizeof(ans) - 1)
			break;
	}
	close(fd);
	return 0;
}

static pid_t spawn(char *const argv[], const char *logpath)
{
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, 0);
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphans when a test crashes */
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static bool alive(pid_t pid)
{
	return waitpid(pid, NULL, WNOHANG) == 0;
}

static int wait_ready(struct test_peer *p, const char *req, size_t req_len, const char *expect,
                      unsigned max_s)
{
	time_t end = time(NULL) + max_s;
	while (time(NULL) < end) {
		if (!alive(p->pid)) {
			p->pid = 0;
			return -1;
		}
		if (probe(p->port, req, req_len, expect))
			return 0;
		usleep(100 * 1000);
	}
	return -1;
}

int test_clamd_start(struct test_peer *p, const char *stream_max)
{
	char path[128], conf[1024], hex[sizeof(eicar) * 2 + 1];

	memset(p, 0, sizeof(*p));
	if (access("/usr/sbin/clamd", X_OK) != 0) {
		fprintf(stderr, "test_clamd_start: /usr/sbin/clamd missing\n");
		return -1;
	}
	snprintf(p->dir, sizeof(p->dir), "/tmp/mr-clamd-XXXXXX");
	if (mkdtemp(p->dir) == NULL)
		return -1;
	for (size_t i = 0; i < sizeof(eicar) - 1; i++)
		snprintf(hex + 2 * i, 3, "%02x", (unsigned char)eicar[i]);
	snprintf(path, sizeof(path), "%s/db", p->dir);
	mkdir(path, 0755);
	/* pitfall 7: one signature, one hex line */
	snprintf(conf, sizeof(conf), "Eicar-Test-Signature:0:*:%s\n", hex);
	snprintf(path, sizeof(path), "%s/db/test.ndb", p->dir);
	if (write_file(path, conf) < 0)
		return -1;
	p->port = test_peer_free_port();
	snprintf(conf, sizeof(conf),
	         "TCPSocket %d\nTCPAddr 127.0.0.1\nForeground yes\nDatabaseDirectory %s/db\n"
	         "LogFile %s/clamd.log\nStreamMaxLength %s\nMaxThreads 2\nBytecode no\n",
	         p->port, p->dir, p->dir, stream_max);
	snprintf(path, sizeof(path), "%s/clamd.conf", p->dir);
	if (write_file(path, conf) < 0)
		return -1;
	char logpath[128];
	snprintf(logpath, sizeof(logpath), "%s/stderr.log", p->dir);
	char *argv[] = {"/usr/sbin/clamd", "-c", path, NULL};
	p->pid = spawn(argv, logpath);
	snprintf(p->address, sizeof(p->address), "127.0.0.1:%d", p->port);
	if (wait_ready(p, "zPING", 6, "PONG", 60) < 0) {
		fprintf(stderr, "test_clamd_start: clamd did not answer (see %s)\n", p->dir);
		test_peer_stop(p);
		return -1;
	}
	return 0;
}

int test_rspamd_start(struct test_peer *p)
{
	char path[256], conf[4096];

	memset(p, 0, sizeof(*p));
	if (access("/usr/bin/rspamd", X_OK) != 0) {
		fprintf(stderr, "test_rspamd_start: /usr/bin/rspamd missing\n");
		return -1;
	}
	snprintf(p->dir, sizeof(p->dir), "/tmp/mr-rspamd-XXXXXX");
	if (mkdtemp(p->dir) == NULL)
		return -1;
	chmod(p->dir, 0777); /* rspamd drops privileges to _rspamd */
	snprintf(path, sizeof(path), "%s/db", p->dir);
	mkdir(path, 0777);
	chmod(path, 0777);
	p->port = test_peer_free_port();
	/* a private top-level config: only the normal worker, no controller/proxy/fuzzy, no redis,
	 * DNS pointed at a closed port (no network) */
	snprintf(conf, sizeof(conf),
	         ".include \"$CONFDIR/common.conf\"\n"
	         "options {\n pidfile = \"%s/rspamd.pid\";\n .include \"$CONFDIR/options.inc\"\n"
	         " dns { nameserver = [\"127.0.0.1:1\"]; timeout = 0.2s; retransmits = 1; }\n}\n"
	         "logging { type = \"file\"; filename = \"%s/rspamd.log\"; level = \"notice\"; }\n"
	         "worker \"normal\" {\n bind_socket = \"127.0.0.1:%d\";\n"
	         " .include \"$CONFDIR/worker-normal.inc\"\n count = 1;\n}\n",
	         p->dir, p->dir, p->port);
	snprintf(path, sizeof(path), "%s/rspamd.conf", p->dir);
	if (write_file(path, conf) < 0)
		return -1;
	char logpath[128], localdir[128], dbdir[128], rundir[128];
	snprintf(logpath, sizeof(logpath), "%s/stderr.log", p->dir);
	snprintf(localdir, sizeof(localdir), "LOCAL_CONFDIR=%s", p->dir);
	snprintf(dbdir, sizeof(dbdir), "DBDIR=%s/db", p->dir);
	snprintf(rundir, sizeof(rundir), "RUNDIR=%s", p->dir);
	/* as root rspamd must drop privileges (-u/-g); as another user it runs as that user */
	char *argv_root[] = {"/usr/bin/rspamd", "-f", "-u", "_rspamd", "-g", "_rspamd", "-c", path,
	                     "--var", localdir, "--var", dbdir, "--var", rundir, NULL};
	char *argv_user[] = {"/usr/bin/rspamd", "-f", "-c", path, "--var", localdir, "--var", dbdir,
	                     "--var", rundir, NULL};
	char **argv = geteuid() == 0 ? argv_root : argv_user;
	p->pid = spawn(argv, logpath);
	snprintf(p->address, sizeof(p->address), "127.0.0.1:%d", p->port);
	static const char ping[] = "GET /ping HTTP/1.0\r\n\r\n";
	if (wait_ready(p, ping, sizeof(ping) - 1, "pong", 120) < 0) {
		fprintf(stderr, "test_rspamd_start: rspamd did not answer (see %s)\n", p->dir);
		test_peer_stop(p);
		return -1;
	}
	return 0;
}

void test_peer_stop(struct test_peer *p)
{
	if (p->pid > 0) {
		kill(-p->pid, SIGTERM);
		kill(p->pid, SIGTERM);
		for (int i = 0; i < 50; i++) {
			if (waitpid(p->pid, NULL, WNOHANG) != 0)
				break;
			usleep(100 * 1000);
			if (i == 30) {
				kill(-p->pid, SIGKILL);
				kill(p->pid, SIGKILL);
			}
		}
		p->pid = 0;
	}
	if (p->dir[0] != '\0' && getenv("MR_KEEP_PEER_DIR") == NULL) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "test_peer_stop: could not remove %s\n", p->dir);
		p->dir[0] = '\0';
	}
}

int test_fake_peer_start(struct test_peer *p, enum test_fake_mode mode, const void *reply, size_t len)
{
	memset(p, 0, sizeof(*p));
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t slen = sizeof(sin);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(lfd, 4) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &slen) < 0)
		return -1;
	p->port = ntohs(sin.sin_port);
	snprintf(p->address, sizeof(p->address), "127.0.0.1:%d", p->port);
	p->pid = fork();
	if (p->pid < 0)
		return -1;
	if (p->pid > 0) {
		close(lfd);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	int fd = accept(lfd, NULL, NULL);
	char tmp[65536];
	if (fd < 0)
		_exit(1);
	if (mode == TEST_FAKE_HANG) {
		while (recv(fd, tmp, sizeof(tmp), 0) > 0)
			;
		pause();
		_exit(0);
	}
	(void)recv(fd, tmp, sizeof(tmp), 0);
	if (mode == TEST_FAKE_REPLY && len > 0)
		(void)send(fd, reply, len, MSG_NOSIGNAL);
	shutdown(fd, SHUT_RDWR);
	close(fd);
	_exit(0);
}

int test_spool_fd(const void *data, size_t len)
{
	char path[] = "/tmp/mr-spool-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	unlink(path);
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n <= 0) {
			close(fd);
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return fd;
}
