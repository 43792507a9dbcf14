#include "outbound/tlsrpt.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"

static void set_str(json_t *o, const char *key, const char *v)
{
	char tmp[1001];
	size_t n;
	if (v == NULL)
		return;
	/* peer text may be anything: keep printable ASCII only */
	for (n = 0; v[n] != '\0' && n < sizeof(tmp) - 1; n++)
		tmp[n] = v[n] >= 0x20 && v[n] < 0x7f ? v[n] : '?';
	json_object_set_new(o, key, json_stringn(tmp, n));
}

int tlsrpt_record(const char *dir, const char *policy_type, const char *domain, const char *mx_host,
                  const char *ip, const char *result_type, const char *reason, const char *queue_id)
{
	if (dir == NULL)
		return 1;
	time_t now = time(NULL);
	struct tm tm;
	char stamp[32], day[16], path[4096];
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	strftime(day, sizeof(day), "%Y-%m-%d", &tm);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		log_warn("tlsrpt event=error path=%s error=\"%s\"", dir, strerror(errno));
		return -1;
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/%s.jsonl", dir, day) >= sizeof(path))
		return -1;
	json_t *o = json_object();
	set_str(o, "time", stamp);
	set_str(o, "policy_type", policy_type);
	set_str(o, "policy_domain", domain);
	set_str(o, "receiving_mx_hostname", mx_host);
	set_str(o, "receiving_ip", ip);
	set_str(o, "result_type", result_type);
	set_str(o, "failure_reason", reason);
	set_str(o, "queue_id", queue_id);
	char *line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(o);
	if (line == NULL)
		return -1;
	size_t len = strlen(line);
	line[len] = '\n';
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	int ret = 1;
	if (fd < 0 || write(fd, line, len + 1) != (ssize_t)(len + 1)) {
		log_warn("tlsrpt event=error path=%s error=\"%s\"", path, strerror(errno));
		ret = -1;
	}
	if (fd >= 0)
		close(fd);
	free(line);
	return ret;
}

const char *tlsrpt_result_for_verify(long v)
{
	switch (v) {
	case X509_V_ERR_HOSTNAME_MISMATCH:
		return "certificate-host-mismatch";
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return "certificate-expired";
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_CERT_UNTRUSTED:
		return "certificate-not-trusted";
	default:
		return "validation-failure";
	}
}
