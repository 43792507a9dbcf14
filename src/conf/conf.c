/*
 * conf: YAML config loading through libyaml's document API (libcyaml cannot
 * report line/column), mapped onto struct mr_config with a small typed schema
 * table. A new key or section is one line in a table below.
 */
#include "conf/conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "lib/buf.h"
#include "lib/xalloc.h"

#define CONF_MAX_FILE_SIZE (4 * 1024 * 1024)
#define CONF_MAX_LIST 4096
#define CONF_MAX_LISTEN 256

static const char *const listen_kind_names[LISTEN_KIND_COUNT] = {
	[LISTEN_MX] = "mx",
	[LISTEN_SUBMISSION] = "submission",
	[LISTEN_SUBMISSIONS] = "submissions",
	[LISTEN_IMAP] = "imap",
	[LISTEN_IMAPS] = "imaps",
	[LISTEN_POP3] = "pop3",
	[LISTEN_POP3S] = "pop3s",
	[LISTEN_MANAGESIEVE] = "managesieve",
};

const char *conf_listen_kind_name(enum listen_kind kind)
{
	if ((unsigned)kind >= LISTEN_KIND_COUNT)
		return "unknown";
	return listen_kind_names[kind];
}

bool conf_listen_kind_parse(const char *name, enum listen_kind *kind_r)
{
	for (unsigned i = 0; i < LISTEN_KIND_COUNT; i++) {
		if (strcmp(name, listen_kind_names[i]) == 0) {
			*kind_r = (enum listen_kind)i;
			return true;
		}
	}
	return false;
}

bool conf_listen_kind_implicit_tls(enum listen_kind kind)
{
	return kind == LISTEN_SUBMISSIONS || kind == LISTEN_IMAPS || kind == LISTEN_POP3S;
}

char *conf_path(const struct mr_config *cfg, const char *rel)
{
	return xasprintf("%s/%s", cfg->data_dir, rel);
}

/* ---- value checkers (also used by other modules through conf.h) ---- */

/* Parse a port "1".."65535": digits only. */
static bool parse_port(const char *s, uint16_t *port_r)
{
	unsigned long v = 0;
	if (*s == '\0' || strlen(s) > 5)
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v < 1 || v > 65535)
		return false;
	*port_r = (uint16_t)v;
	return true;
}

int conf_parse_address(const char *s, struct sockaddr_storage *ss, socklen_t *len_r,
		       const char **why_r)
{
	const char *colon;
	char host[INET6_ADDRSTRLEN + 1];
	uint16_t port;

	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (end == NULL) {
			*why_r = "missing ']'";
			return -1;
		}
		size_t n = (size_t)(end - s - 1);
		if (n == 0 || n >= sizeof(host)) {
			*why_r = "bad IPv6 address";
			return -1;
		}
		memcpy(host, s + 1, n);
		host[n] = '\0';
		if (end[1] != ':') {
			*why_r = "expected ':PORT' after ']'";
			return -1;
		}
		if (!parse_port(end + 2, &port)) {
			*why_r = "port must be 1-65535";
			return -1;
		}
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			*why_r = "bad IPv6 address";
			return -1;
		}
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len_r = sizeof(*sin6);
		return 0;
	}
	colon = strrchr(s, ':');
	if (colon == NULL) {
		*why_r = "expected IPv4:PORT, [IPv6]:PORT or *:PORT";
		return -1;
	}
	size_t n = (size_t)(colon - s);
	if (n == 0 || n >= sizeof(host) || memchr(s, ':', n) != NULL) {
		*why_r = "expected IPv4:PORT, [IPv6]:PORT or *:PORT";
		return -1;
	}
	memcpy(host, s, n);
	host[n] = '\0';
	if (!parse_port(colon + 1, &port)) {
		*why_r = "port must be 1-65535";
		return -1;
	}
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	if (strcmp(host, "*") == 0) {
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
	} else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
		*why_r = "bad IPv4 address";
		return -1;
	}
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	*len_r = sizeof(*sin);
	return 0;
}

bool conf_check_cidr(const char *s, const char **why_r)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t n = slash != NULL ? (size_t)(slash - s) : strlen(s);
	unsigned char addr[16];
	int family;

	if (n == 0 || n >= sizeof(host)) {
		*why_r = "expected ADDRESS/PREFIX";
		return false;
	}
	memcpy(host, s, n);
	host[n] = '\0';
	if (inet_pton(AF_INET, host, addr) == 1)
		family = AF_INET;
	else if (inet_pton(AF_INET6, host, addr) == 1)
		family = AF_INET6;
	else {
		*why_r = "bad IP address";
		return false;
	}
	if (slash == NULL)
		return true;
	unsigned max = family == AF_INET ? 32 : 128, v = 0;
	const char *p = slash + 1;
	if (*p == '\0' || strlen(p) > 3) {
		*why_r = "bad prefix length";
		return false;
	}
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9') {
			*why_r = "bad prefix length";
			return false;
		}
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (v > max) {
		*why_r = family == AF_INET ? "prefix length must be 0-32" : "prefix length must be 0-128";
		return false;
	}
	return true;
}

static bool check_dns_forward(const char *s, const char **why_r)
{
	char host[INET6_ADDRSTRLEN + 1];
	unsigned char addr[16];
	const char *at = strchr(s, '@');
	size_t n = at != NULL ? (size_t)(at - s) : strlen(s);
	uint16_t port;

	if (n == 0 || n >= sizeof(host)) {
		*why_r = "expected IP or IP@PORT";
		return false;
	}
	memcpy(host, s, n);
	host[n] = '\0';
	if (inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1) {
		*why_r = "expected IP or IP@PORT";
		return false;
	}
	if (at != NULL && !parse_port(at + 1, &port)) {
		*why_r = "port must be 1-65535";
		return false;
	}
	return true;
}

bool conf_check_hostname(const char *s, const char **why_r)
{
	size_t len = strlen(s), label = 0;
	if (len == 0 || len > 253) {
		*why_r = "must be 1-253 characters";
		return false;
	}
	for (const char *p = s; *p != '\0'; p++) {
		char c = *p;
		if (c == '.') {
			if (label == 0) {
				*why_r = "empty label";
				return false;
			}
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_')) {
			*why_r = "only letters, digits, '-', '_' and '.' are allowed";
			return false;
		}
		if (++label > 63) {
			*why_r = "label longer than 63 characters";
			return false;
		}
	}
	return true;
}

static bool check_log_level(const char *s, const char **why_r)
{
	if (strcmp(s, "debug") == 0 || strcmp(s, "info") == 0 || strcmp(s, "warn") == 0)
		return true;
	*why_r = "expected debug, info or warn";
	return false;
}

static bool check_user(const char *s, const char **why_r)
{
	if (*s == '\0' || strlen(s) > 32 || strchr(s, ':') != NULL || strchr(s, '/') != NULL) {
		*why_r = "expected a user name";
		return false;
	}
	return true;
}

static bool parse_uint(const char *v, bool size_suffix, unsigned long long *r);

/* ---- schema ---- */

enum conf_type {
	CT_STRING,    /* char *, validated by check */
	CT_PATH,      /* char *, made absolute against getcwd() */
	CT_UINT,      /* unsigned, digits only, [min, max] */
	CT_SIZE,      /* size_t, digits with optional k/M/G (x1024) suffix */
	CT_BOOL,      /* bool: true/false/yes/no */
	CT_INT,       /* int: optional '-' then digits, -1000000..1000000 */
	CT_CHAR,      /* char: a string of one character, or empty/null = 0 */
	CT_STRLIST,   /* char ** + size_t count, each validated by check */
	CT_LISTEN,    /* the listen list */
	CT_SECTION,   /* a nested mapping with its own table */
	CT_SECLIST,   /* a list of mappings: array of elem_size structs + size_t count, keys relative to one */
};

struct conf_key {
	const char *name;
	enum conf_type type;
	size_t offset;
	size_t count_offset;                          /* CT_STRLIST */
	bool (*check)(const char *value, const char **why_r); /* CT_STRING, CT_STRLIST */
	unsigned long long min, max;                  /* CT_UINT, CT_SIZE */
	const struct conf_key *section;               /* CT_SECTION: NULL-name terminated */
	bool empty_ok;                                /* CT_STRING: "" means unset (NULL) */
	bool required;                                /* the key must be present in its mapping */
	size_t elem_size;                             /* CT_SECLIST */
	void (*elem_defaults)(void *elem);            /* CT_SECLIST: fill defaults of a new element */
};

#define OFF(field) offsetof(struct mr_config, field)
#define K_STR(n, f, c) { .name = n, .type = CT_STRING, .offset = OFF(f), .check = c }
#define K_PATH(n, f) { .name = n, .type = CT_PATH, .offset = OFF(f) }
#define K_UINT(n, f, lo, hi) { .name = n, .type = CT_UINT, .offset = OFF(f), .min = lo, .max = hi }
#define K_SIZE(n, f, lo, hi) { .name = n, .type = CT_SIZE, .offset = OFF(f), .min = lo, .max = hi }
#define K_BOOL(n, f) { .name = n, .type = CT_BOOL, .offset = OFF(f) }
#define K_CHAR(n, f) { .name = n, .type = CT_CHAR, .offset = OFF(f) }
#define K_LIST(n, f, c) { .name = n, .type = CT_STRLIST, .offset = OFF(f), .count_offset = OFF(f##_count), .check = c }
#define K_SECTION(n, t) { .name = n, .type = CT_SECTION, .section = t }
#define K_SECLIST(n, f, t, ty, d) { .name = n, .type = CT_SECLIST, .offset = OFF(f), .count_offset = OFF(f##_count), \
	.section = t, .elem_size = sizeof(ty), .elem_defaults = d }
/* Keys of a list element (struct ty): offsets relative to the element. */
#define E_STR(ty, n, f, c, req) { .name = n, .type = CT_STRING, .offset = offsetof(ty, f), .check = c, .required = req }
#define E_PATH(ty, n, f) { .name = n, .type = CT_PATH, .offset = offsetof(ty, f) }
#define E_BOOL(ty, n, f) { .name = n, .type = CT_BOOL, .offset = offsetof(ty, f) }
#define E_INT(ty, n, f) { .name = n, .type = CT_INT, .offset = offsetof(ty, f) }
#define E_UINT(ty, n, f, lo, hi) { .name = n, .type = CT_UINT, .offset = offsetof(ty, f), .min = lo, .max = hi }
#define E_LIST(ty, n, f, c, req) { .name = n, .type = CT_STRLIST, .offset = offsetof(ty, f), \
	.count_offset = offsetof(ty, f##_count), .check = c, .required = req }

static const struct conf_key tls_keys[] = {
	K_PATH("cert", tls_cert),
	K_PATH("key", tls_key),
	{ 0 },
};

static const struct conf_key dns_keys[] = {
	K_LIST("forward", dns_forward, check_dns_forward),
	{ 0 },
};

static const struct conf_key limits_keys[] = {
	K_SIZE("max_line_length", limits.max_line_length, 512, 1024 * 1024),
	K_SIZE("max_message_size", limits.max_message_size, 1024, (unsigned long long)SIZE_MAX / 2),
	K_UINT("max_recipients", limits.max_recipients, 1, 1000000),
	K_UINT("max_errors", limits.max_errors, 1, 1000000),
	K_UINT("max_connections", limits.max_connections, 1, 1000000),
	K_UINT("max_connections_per_ip", limits.max_connections_per_ip, 1, 1000000),
	K_UINT("command_timeout", limits.command_timeout, 1, 86400),
	K_UINT("data_timeout", limits.data_timeout, 1, 86400),
	{ 0 },
};

static bool check_sync_method(const char *s, const char **why_r)
{
	if (strcmp(s, "fs") == 0 || strcmp(s, "files") == 0)
		return true;
	*why_r = "expected fs or files";
	return false;
}

static const struct conf_key queue_keys[] = {
	K_UINT("retry_min", queue.retry_min, 1, UINT_MAX),
	K_UINT("retry_max", queue.retry_max, 1, UINT_MAX),
	K_UINT("max_age", queue.max_age, 1, UINT_MAX),
	K_UINT("delay_warning", queue.delay_warning, 0, UINT_MAX),
	K_UINT("commit_delay_us", queue.commit_delay_us, 0, 10000000),
	K_STR("sync", queue.sync, check_sync_method),
	{ 0 },
};

static bool check_tls_policy(const char *s, const char **why_r)
{
	if (strcmp(s, "none") == 0 || strcmp(s, "may") == 0 || strcmp(s, "require") == 0)
		return true;
	*why_r = "expected none, may or require";
	return false;
}

static const struct conf_key outbound_keys[] = {
	K_UINT("mx_port", outbound.mx_port, 1, 65535),
	K_STR("tls", outbound.tls, check_tls_policy),
	K_UINT("connect_timeout", outbound.connect_timeout, 1, 3600),
	K_UINT("command_timeout", outbound.command_timeout, 1, 3600),
	K_UINT("data_timeout", outbound.data_timeout, 1, 3600),
	K_UINT("max_concurrency", outbound.max_concurrency, 1, 10000),
	K_UINT("relay_fail_threshold", outbound.relay_fail_threshold, 1, 1000),
	K_UINT("relay_cooldown", outbound.relay_cooldown, 1, 86400),
	K_PATH("tls_ca_file", outbound.tls_ca_file),
	K_BOOL("dane", outbound.dane),
	K_PATH("dnssec_trust_anchor", outbound.dnssec_trust_anchor),
	K_BOOL("mta_sts", outbound.mta_sts),
	K_UINT("mta_sts_port", outbound.mta_sts_port, 1, 65535),
	{ 0 },
};

/* "IP:PORT" or "http://IP:PORT[/path]": numeric, the chrooted smtp role cannot resolve names. */
static bool conf_check_filter_address(const char *s, const char **why_r)
{
	const char *hp = strncmp(s, "http://", 7) == 0 ? s + 7 : s;
	char host[300];
	size_t n = strcspn(hp, "/");
	if (n == 0 || n >= sizeof(host)) {
		*why_r = "expected IP:PORT or http://IP:PORT";
		return false;
	}
	memcpy(host, hp, n);
	host[n] = '\0';
	struct sockaddr_storage ss;
	socklen_t len;
	const char *why = NULL;
	if (conf_parse_address(host, &ss, &len, &why) < 0 || strchr(host, '*') != NULL) {
		*why_r = "expected a numeric IP:PORT (the filters are reached from a chroot without DNS)";
		return false;
	}
	return true;
}

static bool check_on_error(const char *s, const char **why_r)
{
	if (strcmp(s, "tempfail") == 0 || strcmp(s, "accept") == 0)
		return true;
	*why_r = "expected tempfail or accept";
	return false;
}

static bool check_virus_action(const char *s, const char **why_r)
{
	if (strcmp(s, "reject") == 0 || strcmp(s, "quarantine") == 0)
		return true;
	*why_r = "expected reject or quarantine";
	return false;
}

static const struct conf_key clamd_keys[] = {
	K_STR("address", clamd.address, conf_check_filter_address),
	K_UINT("timeout", clamd.timeout, 1, 3600),
	K_STR("on_error", clamd_on_error, check_on_error),
	K_STR("action", clamd_action, check_virus_action),
	K_SIZE("max_size", clamd.max_size, 1, SIZE_MAX),
	{ 0 },
};

static const struct conf_key rspamd_keys[] = {
	K_STR("url", rspamd.address, conf_check_filter_address),
	K_UINT("timeout", rspamd.timeout, 1, 3600),
	K_STR("on_error", rspamd_on_error, check_on_error),
	K_SIZE("max_size", rspamd.max_size, 1, SIZE_MAX),
	{ 0 },
};

static bool check_selector(const char *s, const char **why_r)
{
	if (strlen(s) > 63 || s[0] == '-') {
		*why_r = "expected a DKIM selector (letters, digits, '-', at most 63)";
		return false;
	}
	for (const char *p = s; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-')) {
			*why_r = "expected a DKIM selector (letters, digits, '-', at most 63)";
			return false;
		}
	}
	return true;
}

static const struct conf_key spf_keys[] = {
	K_BOOL("reject_fail", mailauth.spf_reject_fail),
	{ 0 },
};

static const struct conf_key dmarc_keys[] = {
	K_BOOL("enforce", mailauth.dmarc_enforce),
	{ 0 },
};

static const struct conf_key dkim_keys[] = {
	K_BOOL("sign", mailauth.dkim_sign),
	{ .name = "selector", .type = CT_STRING, .offset = OFF(mailauth.dkim_selector), .check = check_selector,
	  .empty_ok = true },
	{ 0 },
};

/* SRS secrets: printable, no spaces, at least 16 characters. */
static bool check_srs_secret(const char *s, const char **why_r)
{
	size_t n = strlen(s);
	for (const char *q = s; *q != '\0'; q++)
		if ((unsigned char)*q <= ' ' || *q == 0x7f)
			n = 0;
	if (n < 16 || n > 256) {
		*why_r = "expected a secret of 16 to 256 printable characters without spaces";
		return false;
	}
	return true;
}

static const struct conf_key srs_keys[] = {
	K_STR("secret", srs.secret, check_srs_secret),
	K_LIST("secrets", srs.secrets, check_srs_secret),
	K_STR("domain", srs.domain, conf_check_hostname),
	K_UINT("max_age_days", srs.max_age_days, 1, 1000),
	{ 0 },
};

/* Names of queue-fed targets ("webhook:NAME"): letters, digits, '-', '_', '.', at most 64. */
static bool check_target_name(const char *s, const char **why_r)
{
	size_t n = strlen(s);
	for (const char *q = s; *q != '\0'; q++)
		if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || *q == '-' ||
		      *q == '_' || *q == '.'))
			n = 0;
	if (n == 0 || n > 64) {
		*why_r = "expected a name of letters, digits, '-', '_' and '.' (at most 64)";
		return false;
	}
	return true;
}

static bool check_http_url(const char *s, const char **why_r)
{
	const char *hp = strncmp(s, "http://", 7) == 0 ? s + 7 : strncmp(s, "https://", 8) == 0 ? s + 8 : NULL;
	if (hp == NULL || *hp == '\0' || *hp == '/') {
		*why_r = "expected an http:// or https:// URL";
		return false;
	}
	for (const char *q = s; *q != '\0'; q++)
		if ((unsigned char)*q <= ' ' || *q == 0x7f) {
			*why_r = "spaces and control characters are not allowed in a URL";
			return false;
		}
	return true;
}

static bool check_argv_item(const char *s, const char **why_r)
{
	(void)s;
	(void)why_r;
	return true;
}

static void webhook_defaults(void *e)
{
	((struct conf_webhook *)e)->timeout = 30;
}

static void pipe_defaults(void *e)
{
	((struct conf_pipe *)e)->timeout = 60;
}

static void autoreply_defaults(void *e)
{
	((struct conf_autoreply *)e)->period = 604800;
}

static const struct conf_key webhook_keys[] = {
	E_STR(struct conf_webhook, "name", name, check_target_name, true),
	E_STR(struct conf_webhook, "url", url, check_http_url, true),
	E_STR(struct conf_webhook, "secret", secret, NULL, false),
	E_UINT(struct conf_webhook, "timeout", timeout, 1, 3600),
	E_PATH(struct conf_webhook, "tls_ca_file", tls_ca_file),
	{ 0 },
};

static const struct conf_key pipe_keys[] = {
	E_STR(struct conf_pipe, "name", name, check_target_name, true),
	E_LIST(struct conf_pipe, "command", command, check_argv_item, true),
	E_UINT(struct conf_pipe, "timeout", timeout, 1, 86400),
	E_STR(struct conf_pipe, "user", user, check_user, false),
	{ 0 },
};

static const struct conf_key autoreply_keys[] = {
	E_STR(struct conf_autoreply, "name", name, check_target_name, true),
	E_STR(struct conf_autoreply, "from", from, NULL, true),
	E_STR(struct conf_autoreply, "subject", subject, NULL, false),
	E_STR(struct conf_autoreply, "text", text, NULL, true),
	E_UINT(struct conf_autoreply, "period", period, 1, UINT_MAX),
	{ 0 },
};

/* Milter addresses: numeric "IP:PORT", "[IPv6]:PORT" or "inet:PORT@IP" (the smtp role is chrooted). */
static bool check_milter_address(const char *s, const char **why_r)
{
	char tmp[300];
	if (strncmp(s, "inet:", 5) == 0 || strncmp(s, "inet6:", 6) == 0) {
		const char *ps = strchr(s, ':') + 1;
		const char *at = strchr(ps, '@');
		if (at == NULL || at == ps || strlen(at + 1) + (size_t)(at - ps) + 4 >= sizeof(tmp)) {
			*why_r = "expected inet:PORT@IP";
			return false;
		}
		bool v6 = strchr(at + 1, ':') != NULL;
		snprintf(tmp, sizeof(tmp), "%s%s%s:%.*s", v6 ? "[" : "", at + 1, v6 ? "]" : "", (int)(at - ps), ps);
		s = tmp;
	}
	struct sockaddr_storage ss;
	socklen_t len;
	const char *why = NULL;
	if (conf_parse_address(s, &ss, &len, &why) < 0 || strchr(s, '*') != NULL) {
		*why_r = "expected a numeric IP:PORT or inet:PORT@IP (milters are reached from a chroot without DNS)";
		return false;
	}
	return true;
}

static void milter_defaults(void *e)
{
	((struct conf_milter *)e)->timeout = 10;
}

static const struct conf_key milter_keys[] = {
	E_STR(struct conf_milter, "name", name, check_target_name, true),
	E_STR(struct conf_milter, "address", address, check_milter_address, true),
	E_UINT(struct conf_milter, "timeout", timeout, 1, 3600),
	E_STR(struct conf_milter, "on_error", on_error, check_on_error, false),
	{ 0 },
};

static bool check_dnsbl_action(const char *s, const char **why_r)
{
	if (strcmp(s, "reject") == 0 || strcmp(s, "tag") == 0)
		return true;
	*why_r = "expected reject or tag";
	return false;
}

static bool check_dnsbl_codes(const char *s, const char **why_r)
{
	char one[INET_ADDRSTRLEN + 1];
	struct in_addr a;
	for (const char *p = s; *p != '\0';) {
		size_t n = strcspn(p, ",");
		while (n > 0 && *p == ' ') {
			p++;
			n--;
		}
		if (n == 0 || n >= sizeof(one)) {
			*why_r = "expected comma-separated IPv4 addresses (127.0.0.2,127.0.0.4)";
			return false;
		}
		memcpy(one, p, n);
		one[n] = '\0';
		if (inet_pton(AF_INET, one, &a) != 1) {
			*why_r = "expected comma-separated IPv4 addresses (127.0.0.2,127.0.0.4)";
			return false;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return true;
}

static void dnsbl_zone_defaults(void *e)
{
	((struct conf_dnsbl_zone *)e)->weight = 1;
}

static const struct conf_key dnsbl_zone_keys[] = {
	E_STR(struct conf_dnsbl_zone, "zone", zone, conf_check_hostname, true),
	E_INT(struct conf_dnsbl_zone, "weight", weight),
	E_BOOL(struct conf_dnsbl_zone, "rhsbl", rhsbl),
	E_STR(struct conf_dnsbl_zone, "codes", codes, check_dnsbl_codes, false),
	{ 0 },
};

static const struct conf_key dnsbl_keys[] = {
	K_SECLIST("zones", dnsbl.zones, dnsbl_zone_keys, struct conf_dnsbl_zone, dnsbl_zone_defaults),
	K_UINT("threshold", dnsbl.threshold, 1, 1000000),
	K_STR("action", dnsbl.action, check_dnsbl_action),
	{ 0 },
};

static const struct conf_key greylisting_keys[] = {
	K_BOOL("enabled", greylisting.enabled),
	K_UINT("delay", greylisting.delay, 0, 31536000),
	K_UINT("retry_window", greylisting.retry_window, 1, 31536000),
	K_UINT("pass_ttl", greylisting.pass_ttl, 1, 315360000),
	{ 0 },
};

int conf_parse_rate(const char *s, struct conf_rate *rate_r, const char **why_r)
{
	const char *slash = strchr(s, '/');
	char n[16];
	unsigned long long limit, per;
	if (slash == NULL || (size_t)(slash - s) >= sizeof(n)) {
		*why_r = "expected N/SECONDS, e.g. 60/60";
		return -1;
	}
	memcpy(n, s, (size_t)(slash - s));
	n[slash - s] = '\0';
	if (!parse_uint(n, false, &limit) || !parse_uint(slash + 1, false, &per)) {
		*why_r = "expected N/SECONDS, e.g. 60/60";
		return -1;
	}
	if (limit < 1 || limit > 1000000 || per < 1 || per > 31536000) {
		*why_r = "N must be 1-1000000 and SECONDS 1-31536000";
		return -1;
	}
	rate_r->limit = (unsigned)limit;
	rate_r->per = (unsigned)per;
	return 0;
}

static bool check_rate(const char *s, const char **why_r)
{
	struct conf_rate r;
	return conf_parse_rate(s, &r, why_r) == 0;
}

static const struct conf_key rate_limits_keys[] = {
	K_STR("connections_per_ip", rate_limits.connections_per_ip_s, check_rate),
	K_STR("messages_per_ip", rate_limits.messages_per_ip_s, check_rate),
	K_STR("recipients_per_ip", rate_limits.recipients_per_ip_s, check_rate),
	K_STR("messages_per_user", rate_limits.messages_per_user_s, check_rate),
	K_STR("recipients_per_user", rate_limits.recipients_per_user_s, check_rate),
	{ 0 },
};

static const struct conf_key root_keys[] = {
	K_STR("hostname", hostname, conf_check_hostname),
	K_PATH("data_dir", data_dir),
	{ .name = "listen", .type = CT_LISTEN },
	K_SECTION("tls", tls_keys),
	K_SECTION("dns", dns_keys),
	K_PATH("rules", rules),
	K_LIST("trusted_networks", trusted_networks, conf_check_cidr),
	K_STR("user", user, check_user),
	K_STR("vmail_user", vmail_user, check_user),
	K_UINT("smtp_processes", smtp_processes, 0, 1024),
	K_PATH("log_file", log_file),
	K_STR("log_level", log_level, check_log_level),
	K_CHAR("subaddress_separator", subaddress_separator),
	K_BOOL("auth_allow_plaintext", auth_allow_plaintext),
	K_SECTION("limits", limits_keys),
	K_SECTION("queue", queue_keys),
	K_SECTION("outbound", outbound_keys),
	K_SECTION("clamd", clamd_keys),
	K_SECTION("rspamd", rspamd_keys),
	K_STR("authserv_id", authserv_id, conf_check_hostname),
	K_BOOL("mail_auth", mailauth.verify),
	K_SECTION("spf", spf_keys),
	K_SECTION("dmarc", dmarc_keys),
	K_SECTION("dkim", dkim_keys),
	K_SECTION("srs", srs_keys),
	K_SECLIST("webhooks", webhooks, webhook_keys, struct conf_webhook, webhook_defaults),
	K_SECLIST("pipes", pipes, pipe_keys, struct conf_pipe, pipe_defaults),
	K_SECLIST("autoreplies", autoreplies, autoreply_keys, struct conf_autoreply, autoreply_defaults),
	K_SECLIST("milters", milters, milter_keys, struct conf_milter, milter_defaults),
	K_BOOL("milters_on_submission", milters_on_submission),
	K_SECTION("dnsbl", dnsbl_keys),
	K_SECTION("greylisting", greylisting_keys),
	K_SECTION("rate_limits", rate_limits_keys),
	{ 0 },
};

/* ---- loading ---- */

struct conf_parse {
	const char *file;
	yaml_document_t doc;
	struct mr_config *cfg;
	char *base;   /* what key offsets are relative to: cfg, or the list element being parsed */
	char *cwd;
	char *error;
};

static int conf_error_at(struct conf_parse *p, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int conf_error_at(struct conf_parse *p, int line, int col, const char *fmt, ...)
{
	if (p->error != NULL)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	p->error = xasprintf("%s:%d:%d: %s", p->file, line, col, msg);
	free(msg);
	return -1;
}

#define NODE_LINE(n) ((int)(n)->start_mark.line + 1)
#define NODE_COL(n) ((int)(n)->start_mark.column + 1)
#define conf_error(p, node, ...) conf_error_at(p, NODE_LINE(node), NODE_COL(node), __VA_ARGS__)

static const char *node_type_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE: return "a scalar";
	case YAML_SEQUENCE_NODE: return "a list";
	case YAML_MAPPING_NODE: return "a mapping";
	default: return "nothing";
	}
}

static bool node_is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *v = (const char *)n->data.scalar.value;
	return *v == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* A scalar's text; NULL (and an error) if the node is not a scalar or holds a NUL byte. */
static const char *scalar(struct conf_parse *p, yaml_node_t *n, const char *key, const char *what)
{
	if (n->type != YAML_SCALAR_NODE) {
		conf_error(p, n, "%s: expected %s, got %s", key, what, node_type_name(n));
		return NULL;
	}
	if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length) {
		conf_error(p, n, "%s: NUL byte in value", key);
		return NULL;
	}
	return (const char *)n->data.scalar.value;
}

static char *make_absolute(const char *cwd, const char *v)
{
	while (v[0] == '.' && v[1] == '/') {
		v += 2;
		while (*v == '/')
			v++;
	}
	char *s;
	if (v[0] == '/')
		s = xstrdup(v);
	else if (v[0] == '\0' || strcmp(v, ".") == 0)
		s = xstrdup(cwd);
	else
		s = xasprintf("%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, v);
	size_t len = strlen(s);
	while (len > 1 && s[len - 1] == '/')
		s[--len] = '\0';
	return s;
}

static bool parse_uint(const char *v, bool size_suffix, unsigned long long *r)
{
	unsigned long long x = 0, mult = 1;
	size_t len = strlen(v);
	if (len == 0)
		return false;
	if (size_suffix) {
		switch (v[len - 1]) {
		case 'k': case 'K': mult = 1024ULL; len--; break;
		case 'm': case 'M': mult = 1024ULL * 1024; len--; break;
		case 'g': case 'G': mult = 1024ULL * 1024 * 1024; len--; break;
		default: break;
		}
		if (len == 0)
			return false;
	}
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		if (x > (ULLONG_MAX - 9) / 10)
			return false;
		x = x * 10 + (unsigned)(v[i] - '0');
	}
	if (x > ULLONG_MAX / mult)
		return false;
	*r = x * mult;
	return true;
}

static void free_strlist(char ***list, size_t *count)
{
	for (size_t i = 0; i < *count; i++)
		free((*list)[i]);
	free(*list);
	*list = NULL;
	*count = 0;
}

static int conf_section(struct conf_parse *p, yaml_node_t *map, const struct conf_key *keys,
			const char *prefix);

static int conf_listen(struct conf_parse *p, yaml_node_t *seq)
{
	struct mr_config *cfg = p->cfg;

	for (size_t i = 0; i < cfg->listen_count; i++)
		free(cfg->listen[i].address);
	xfree(&cfg->listen);
	cfg->listen_count = 0;
	if (node_is_null(seq))
		return 0;
	if (seq->type != YAML_SEQUENCE_NODE)
		return conf_error(p, seq, "listen: expected a list, got %s", node_type_name(seq));

	size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
	if (n > CONF_MAX_LISTEN)
		return conf_error(p, seq, "listen: more than %d entries", CONF_MAX_LISTEN);
	cfg->listen = xcalloc(n == 0 ? 1 : n, sizeof(*cfg->listen));
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = yaml_document_get_node(&p->doc, seq->data.sequence.items.start[i]);
		if (item == NULL)
			return conf_error(p, seq, "listen: broken document");
		if (item->type != YAML_MAPPING_NODE)
			return conf_error(p, item, "listen[%zu]: expected a mapping {kind, address}, got %s",
					  i, node_type_name(item));
		yaml_node_t *kind_node = NULL, *addr_node = NULL;
		for (yaml_node_pair_t *pair = item->data.mapping.pairs.start;
		     pair < item->data.mapping.pairs.top; pair++) {
			yaml_node_t *k = yaml_document_get_node(&p->doc, pair->key);
			yaml_node_t *v = yaml_document_get_node(&p->doc, pair->value);
			if (k == NULL || v == NULL)
				return conf_error(p, item, "listen: broken document");
			const char *name = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : NULL;
			yaml_node_t **slot = NULL;
			if (name != NULL && strcmp(name, "kind") == 0)
				slot = &kind_node;
			else if (name != NULL && strcmp(name, "address") == 0)
				slot = &addr_node;
			if (slot == NULL) {
				if (name == NULL)
					return conf_error(p, k, "listen[%zu]: keys must be scalars", i);
				return conf_error(p, k, "listen[%zu]: unknown key '%s' (allowed: kind, address)", i, name);
			}
			if (*slot != NULL)
				return conf_error(p, k, "listen[%zu]: duplicate key '%s' (first at line %d)",
						  i, name, NODE_LINE(*slot));
			*slot = v;
		}
		struct conf_listen *l = &cfg->listen[cfg->listen_count];
		char key[64];
		snprintf(key, sizeof(key), "listen[%zu].kind", i);
		if (kind_node == NULL)
			return conf_error(p, item, "listen[%zu]: missing key 'kind'", i);
		const char *kind = scalar(p, kind_node, key, "a string");
		if (kind == NULL)
			return -1;
		if (!conf_listen_kind_parse(kind, &l->kind))
			return conf_error(p, kind_node, "%s: unknown kind '%s' (expected mx, submission, submissions, imap, imaps, pop3, pop3s or managesieve)",
					  key, kind);
		snprintf(key, sizeof(key), "listen[%zu].address", i);
		if (addr_node == NULL)
			return conf_error(p, item, "listen[%zu]: missing key 'address'", i);
		const char *addr = scalar(p, addr_node, key, "a string");
		if (addr == NULL)
			return -1;
		const char *why = NULL;
		if (conf_parse_address(addr, &l->addr, &l->addr_len, &why) < 0)
			return conf_error(p, addr_node, "%s: bad address '%s': %s", key, addr, why);
		for (size_t j = 0; j < cfg->listen_count; j++) {
			const struct conf_listen *o = &cfg->listen[j];
			if (o->addr_len == l->addr_len && memcmp(&o->addr, &l->addr, l->addr_len) == 0)
				return conf_error(p, addr_node, "%s: duplicate listen address '%s' (also at line %d)",
						  key, addr, o->line);
		}
		l->address = xstrdup(addr);
		l->line = NODE_LINE(item);
		l->col = NODE_COL(item);
		cfg->listen_count++;
	}
	return 0;
}

static int conf_value(struct conf_parse *p, const struct conf_key *key, yaml_node_t *v,
		      const char *path)
{
	char *base = p->base;
	void *field = base + key->offset;
	const char *s, *why = NULL;
	unsigned long long num;

	switch (key->type) {
	case CT_SECTION:
		if (node_is_null(v))
			return 0;
		if (v->type != YAML_MAPPING_NODE)
			return conf_error(p, v, "%s: expected a mapping, got %s", path, node_type_name(v));
		return conf_section(p, v, key->section, path);
	case CT_LISTEN:
		return conf_listen(p, v);
	case CT_SECLIST: {
		void **arr = field;
		size_t *count = (size_t *)(base + key->count_offset);
		if (*count != 0)
			return conf_error(p, v, "%s: given twice", path);
		if (node_is_null(v))
			return 0;
		if (v->type != YAML_SEQUENCE_NODE)
			return conf_error(p, v, "%s: expected a list, got %s", path, node_type_name(v));
		size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
		if (n > CONF_MAX_LISTEN)
			return conf_error(p, v, "%s: more than %d entries", path, CONF_MAX_LISTEN);
		*arr = xcalloc(n == 0 ? 1 : n, key->elem_size);
		int rc = 0;
		for (size_t i = 0; i < n && rc == 0; i++) {
			yaml_node_t *item = yaml_document_get_node(&p->doc, v->data.sequence.items.start[i]);
			char ipath[160];
			snprintf(ipath, sizeof(ipath), "%s[%zu]", path, i);
			if (item == NULL)
				return conf_error(p, v, "%s: broken document", ipath);
			if (item->type != YAML_MAPPING_NODE)
				return conf_error(p, item, "%s: expected a mapping, got %s", ipath, node_type_name(item));
			char *elem = (char *)*arr + i * key->elem_size;
			if (key->elem_defaults != NULL)
				key->elem_defaults(elem);
			(*count)++; /* counted before parsing: conf_free frees what was set */
			p->base = elem;
			rc = conf_section(p, item, key->section, ipath);
			p->base = base;
		}
		return rc;
	}
	case CT_STRING:
	case CT_PATH: {
		char **dst = field;
		if (node_is_null(v))
			return 0; /* keep the default */
		if ((s = scalar(p, v, path, "a string")) == NULL)
			return -1;
		if (*s == '\0' && key->empty_ok) {
			xfree(dst);
			return 0;
		}
		if (*s == '\0')
			return conf_error(p, v, "%s: must not be empty", path);
		if (key->check != NULL && !key->check(s, &why))
			return conf_error(p, v, "%s: bad value '%s': %s", path, s, why);
		if (strlen(s) > PATH_MAX)
			return conf_error(p, v, "%s: too long", path);
		free(*dst);
		*dst = key->type == CT_PATH ? make_absolute(p->cwd, s) : xstrdup(s);
		return 0;
	}
	case CT_UINT:
	case CT_SIZE:
		if ((s = scalar(p, v, path, "a number")) == NULL)
			return -1;
		if (!parse_uint(s, key->type == CT_SIZE, &num))
			return conf_error(p, v, key->type == CT_SIZE
					  ? "%s: expected a size (an integer, optionally with k, M or G), got '%s'"
					  : "%s: expected a non-negative integer, got '%s'", path, s);
		if (num < key->min || num > key->max)
			return conf_error(p, v, "%s: %llu is out of range (%llu-%llu)", path, num, key->min, key->max);
		if (key->type == CT_SIZE)
			*(size_t *)field = (size_t)num;
		else
			*(unsigned *)field = (unsigned)num;
		return 0;
	case CT_BOOL:
		if ((s = scalar(p, v, path, "true or false")) == NULL)
			return -1;
		if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0)
			*(bool *)field = true;
		else if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0)
			*(bool *)field = false;
		else
			return conf_error(p, v, "%s: expected true or false, got '%s'", path, s);
		return 0;
	case CT_INT: {
		if ((s = scalar(p, v, path, "an integer")) == NULL)
			return -1;
		bool neg = s[0] == '-';
		if (!parse_uint(s + (neg ? 1 : 0), false, &num) || num > 1000000)
			return conf_error(p, v, "%s: expected an integer from -1000000 to 1000000, got '%s'", path, s);
		*(int *)field = neg ? -(int)num : (int)num;
		return 0;
	}
	case CT_CHAR:
		if (node_is_null(v)) {
			*(char *)field = '\0';
			return 0;
		}
		if ((s = scalar(p, v, path, "a string")) == NULL)
			return -1;
		if (strlen(s) > 1 || (s[0] != '\0' && (s[0] <= ' ' || (unsigned char)s[0] >= 0x7f || s[0] == '@')))
			return conf_error(p, v, "%s: expected one printable character (not '@') or \"\", got '%s'", path, s);
		*(char *)field = s[0];
		return 0;
	case CT_STRLIST: {
		char ***list = field;
		size_t *count = (size_t *)(base + key->count_offset);
		free_strlist(list, count);
		if (node_is_null(v))
			return 0;
		if (v->type != YAML_SEQUENCE_NODE)
			return conf_error(p, v, "%s: expected a list, got %s", path, node_type_name(v));
		size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
		if (n > CONF_MAX_LIST)
			return conf_error(p, v, "%s: more than %d entries", path, CONF_MAX_LIST);
		*list = xcalloc(n == 0 ? 1 : n, sizeof(char *));
		for (size_t i = 0; i < n; i++) {
			yaml_node_t *item = yaml_document_get_node(&p->doc, v->data.sequence.items.start[i]);
			char ipath[160]; /* path (< 128) + "[index]" */
			snprintf(ipath, sizeof(ipath), "%s[%zu]", path, i);
			if (item == NULL)
				return conf_error(p, v, "%s: broken document", ipath);
			if ((s = scalar(p, item, ipath, "a string")) == NULL)
				return -1;
			if (key->check != NULL && !key->check(s, &why))
				return conf_error(p, item, "%s: bad value '%s': %s", ipath, s, why);
			(*list)[(*count)++] = xstrdup(s);
		}
		return 0;
	}
	}
	return conf_error(p, v, "%s: internal error", path);
}

static void allowed_keys(const struct conf_key *keys, char *out, size_t size)
{
	struct buf b;
	buf_init(&b, size - 1);
	for (const struct conf_key *k = keys; k->name != NULL; k++)
		(void)buf_printf(&b, "%s%s", k == keys ? "" : ", ", k->name);
	snprintf(out, size, "%s", b.data);
	buf_deinit(&b);
}

static int conf_section(struct conf_parse *p, yaml_node_t *map, const struct conf_key *keys,
			const char *prefix)
{
	size_t nkeys = 0;
	while (keys[nkeys].name != NULL)
		nkeys++;
	yaml_node_t *seen[nkeys];
	memset(seen, 0, sizeof(seen));

	for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = yaml_document_get_node(&p->doc, pair->key);
		yaml_node_t *v = yaml_document_get_node(&p->doc, pair->value);
		if (k == NULL || v == NULL)
			return conf_error(p, map, "broken document");
		if (k->type != YAML_SCALAR_NODE)
			return conf_error(p, k, "%s%skeys must be scalars", prefix, *prefix != '\0' ? ": " : "");
		const char *name = (const char *)k->data.scalar.value;
		size_t i;
		for (i = 0; i < nkeys; i++)
			if (strcmp(keys[i].name, name) == 0)
				break;
		if (i == nkeys) {
			char allowed[1024];
			allowed_keys(keys, allowed, sizeof(allowed));
			char shown[80];
			snprintf(shown, sizeof(shown), "%s", name);
			if (*prefix != '\0')
				return conf_error(p, k, "unknown key '%s' in %s (allowed: %s)", shown, prefix, allowed);
			return conf_error(p, k, "unknown key '%s' (allowed: %s)", shown, allowed);
		}
		char path[128];
		snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix != '\0' ? "." : "", name);
		if (seen[i] != NULL)
			return conf_error(p, k, "%s: duplicate key (first at line %d)", path, NODE_LINE(seen[i]));
		seen[i] = k;
		if (conf_value(p, &keys[i], v, path) < 0)
			return -1;
	}
	for (size_t i = 0; i < nkeys; i++)
		if (keys[i].required && seen[i] == NULL)
			return conf_error(p, map, "%s%smissing key '%s'", prefix, *prefix != '\0' ? ": " : "", keys[i].name);
	return 0;
}

static void conf_defaults(struct mr_config *cfg)
{
	cfg->data_dir = xstrdup("/var/lib/mailroute");
	cfg->user = xstrdup("mailroute");
	cfg->vmail_user = xstrdup("vmail");
	cfg->log_level = xstrdup("info");
	cfg->subaddress_separator = '+';
	cfg->limits = (struct conf_limits){
		.max_line_length = 2048,
		.max_message_size = 52428800,
		.max_recipients = 1000,
		.max_errors = 10,
		.max_connections = 1000,
		.max_connections_per_ip = 20,
		.command_timeout = 300,
		.data_timeout = 180,
	};
	cfg->queue = (struct conf_queue){
		.retry_min = 300,
		.retry_max = 14400,
		.max_age = 432000,
		.delay_warning = 0,
		.commit_delay_us = 0,
		.sync = xstrdup("fs"),
	};
	cfg->clamd = (struct conf_filter){ .timeout = 30, .max_size = 25u << 20 };
	cfg->rspamd = (struct conf_filter){ .timeout = 30, .max_size = 25u << 20 };
	cfg->outbound = (struct conf_outbound){
		.mx_port = 25,
		.tls = xstrdup("may"),
		.connect_timeout = 30,
		.command_timeout = 300,
		.data_timeout = 600,
		.max_concurrency = 50,
		.relay_fail_threshold = 3,
		.relay_cooldown = 60,
		.mta_sts_port = 443,
	};
	cfg->mailauth = (struct conf_mailauth){
		.verify = false,
		.spf_reject_fail = true,
		.dmarc_enforce = true,
		.dkim_sign = true,
	};
	cfg->srs.max_age_days = 21;
	cfg->dnsbl.threshold = 1;
	cfg->greylisting = (struct conf_greylisting){
		.enabled = false,
		.delay = 300,
		.retry_window = 172800,
		.pass_ttl = 3024000,
	};
}

/* Line and column (1-based) of a byte offset, for reader errors that carry no mark. */
static void offset_position(const char *data, size_t len, size_t offset, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < offset && i < len; i++) {
		if (data[i] == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

static int conf_yaml_error(struct conf_parse *p, yaml_parser_t *parser, const char *data, size_t len)
{
	const char *problem = parser->problem != NULL ? parser->problem : "cannot parse";
	if (parser->error == YAML_READER_ERROR) {
		int line, col;
		offset_position(data, len, parser->problem_offset, &line, &col);
		return conf_error_at(p, line, col, "YAML error: %s", problem);
	}
	if (parser->error == YAML_MEMORY_ERROR)
		return conf_error_at(p, 0, 0, "YAML error: out of memory");
	int line = (int)parser->problem_mark.line + 1, col = (int)parser->problem_mark.column + 1;
	if (parser->context != NULL)
		return conf_error_at(p, line, col, "YAML syntax error: %s (%s at line %d)", problem,
				     parser->context, (int)parser->context_mark.line + 1);
	return conf_error_at(p, line, col, "YAML syntax error: %s", problem);
}

static int conf_finish(struct conf_parse *p)
{
	{
		struct mr_config *c = p->cfg;
		c->clamd.on_error_accept = c->clamd_on_error != NULL && strcmp(c->clamd_on_error, "accept") == 0;
		c->clamd.quarantine = c->clamd_action != NULL && strcmp(c->clamd_action, "quarantine") == 0;
		c->rspamd.on_error_accept = c->rspamd_on_error != NULL && strcmp(c->rspamd_on_error, "accept") == 0;
		for (size_t i = 0; i < c->milters_count; i++)
			c->milters[i].on_error_accept =
				c->milters[i].on_error != NULL && strcmp(c->milters[i].on_error, "accept") == 0;
		c->dnsbl.tag = c->dnsbl.action != NULL && strcmp(c->dnsbl.action, "tag") == 0;
		const char *why;
		struct conf_rate_limits *rl = &c->rate_limits;
		const struct { const char *s; struct conf_rate *r; } rates[] = {
			{ rl->connections_per_ip_s, &rl->connections_per_ip },
			{ rl->messages_per_ip_s, &rl->messages_per_ip },
			{ rl->recipients_per_ip_s, &rl->recipients_per_ip },
			{ rl->messages_per_user_s, &rl->messages_per_user },
			{ rl->recipients_per_user_s, &rl->recipients_per_user },
		};
		for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++)
			if (rates[i].s != NULL)
				(void)conf_parse_rate(rates[i].s, rates[i].r, &why);
	}
	struct mr_config *cfg = p->cfg;

	if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL))
		return conf_error_at(p, 0, 0, "tls: cert and key must be given together");
	for (size_t i = 0; i < cfg->listen_count; i++) {
		const struct conf_listen *l = &cfg->listen[i];
		if (conf_listen_kind_implicit_tls(l->kind) && cfg->tls_cert == NULL)
			return conf_error_at(p, l->line, l->col, "listen[%zu]: kind %s needs tls.cert and tls.key",
					     i, conf_listen_kind_name(l->kind));
	}
	if (cfg->outbound.dane && cfg->outbound.dnssec_trust_anchor == NULL)
		return conf_error_at(p, 0, 0, "outbound.dane needs outbound.dnssec_trust_anchor (DNSSEC validation)");
	if (cfg->queue.retry_max < cfg->queue.retry_min)
		return conf_error_at(p, 0, 0, "queue.retry_max (%u) is smaller than queue.retry_min (%u)",
				     cfg->queue.retry_max, cfg->queue.retry_min);
	if (cfg->hostname == NULL) {
		char host[256] = "";
		const char *why;
		if (gethostname(host, sizeof(host) - 1) < 0 || !conf_check_hostname(host, &why))
			return conf_error_at(p, 0, 0, "hostname: not set and gethostname() gave no usable name");
		cfg->hostname = xstrdup(host);
	}
	if (cfg->authserv_id == NULL)
		cfg->authserv_id = xstrdup(cfg->hostname);
	if (cfg->srs.domain == NULL)
		cfg->srs.domain = xstrdup(cfg->hostname);
	if ((cfg->srs.secret != NULL ? 1 : 0) + cfg->srs.secrets_count > 4)
		return conf_error_at(p, 0, 0, "srs: at most 4 secrets (secret and secrets together)");
	/* Target names are unique within their kind; a pipe runs an absolute path. */
	for (size_t i = 0; i < cfg->webhooks_count; i++)
		for (size_t j = 0; j < i; j++)
			if (strcmp(cfg->webhooks[i].name, cfg->webhooks[j].name) == 0)
				return conf_error_at(p, 0, 0, "webhooks[%zu]: duplicate name '%s'", i, cfg->webhooks[i].name);
	for (size_t i = 0; i < cfg->pipes_count; i++) {
		for (size_t j = 0; j < i; j++)
			if (strcmp(cfg->pipes[i].name, cfg->pipes[j].name) == 0)
				return conf_error_at(p, 0, 0, "pipes[%zu]: duplicate name '%s'", i, cfg->pipes[i].name);
		if (cfg->pipes[i].command_count == 0 || cfg->pipes[i].command[0][0] != '/')
			return conf_error_at(p, 0, 0, "pipes[%zu].command: expected a list [ABSOLUTE_PATH, ARGS...]", i);
	}
	for (size_t i = 0; i < cfg->autoreplies_count; i++)
		for (size_t j = 0; j < i; j++)
			if (strcmp(cfg->autoreplies[i].name, cfg->autoreplies[j].name) == 0)
				return conf_error_at(p, 0, 0, "autoreplies[%zu]: duplicate name '%s'", i,
						     cfg->autoreplies[i].name);
	for (size_t i = 0; i < cfg->milters_count; i++)
		for (size_t j = 0; j < i; j++)
			if (strcmp(cfg->milters[i].name, cfg->milters[j].name) == 0)
				return conf_error_at(p, 0, 0, "milters[%zu]: duplicate name '%s'", i, cfg->milters[i].name);
	if (cfg->greylisting.retry_window <= cfg->greylisting.delay)
		return conf_error_at(p, 0, 0, "greylisting.retry_window (%u) must be larger than greylisting.delay (%u)",
				     cfg->greylisting.retry_window, cfg->greylisting.delay);
	return 0;
}

struct mr_config *conf_load_buffer(const char *name, const char *data, size_t len, char **error_r)
{
	struct conf_parse p = { .file = name };
	yaml_parser_t parser;
	char cwd[PATH_MAX];

	*error_r = NULL;
	if (getcwd(cwd, sizeof(cwd)) == NULL) {
		*error_r = xasprintf("%s:0:0: getcwd: %s", name, strerror(errno));
		return NULL;
	}
	p.cwd = cwd;
	p.cfg = xcalloc(1, sizeof(*p.cfg));
	p.cfg->path = xstrdup(name);
	p.base = (char *)p.cfg;
	conf_defaults(p.cfg);

	if (!yaml_parser_initialize(&parser))
		abort(); /* only fails on allocation failure */
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
	if (!yaml_parser_load(&parser, &p.doc)) {
		conf_yaml_error(&p, &parser, data, len);
		yaml_parser_delete(&parser);
		goto fail;
	}
	yaml_node_t *root = yaml_document_get_root_node(&p.doc);
	if (root != NULL && !node_is_null(root)) {
		if (root->type != YAML_MAPPING_NODE)
			conf_error(&p, root, "expected a mapping of keys at the top, got %s", node_type_name(root));
		else
			conf_section(&p, root, root_keys, "");
	}
	if (p.error == NULL) {
		/* Only one document: a second one is probably a mistake. */
		yaml_document_t second;
		if (!yaml_parser_load(&parser, &second)) {
			conf_yaml_error(&p, &parser, data, len);
		} else {
			if (yaml_document_get_root_node(&second) != NULL)
				conf_error_at(&p, (int)second.start_mark.line + 1, (int)second.start_mark.column + 1,
					      "only one YAML document is allowed");
			yaml_document_delete(&second);
		}
	}
	yaml_document_delete(&p.doc);
	yaml_parser_delete(&parser);
	if (p.error == NULL)
		conf_finish(&p);
	if (p.error == NULL)
		return p.cfg;
fail:
	conf_free(&p.cfg);
	*error_r = p.error;
	return NULL;
}

struct mr_config *conf_load(const char *path, char **error_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	*error_r = NULL;
	if (fd < 0) {
		*error_r = xasprintf("%s:0:0: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		*error_r = xasprintf("%s:0:0: cannot open: not a regular file", path);
		close(fd);
		return NULL;
	}
	if (st.st_size > CONF_MAX_FILE_SIZE) {
		*error_r = xasprintf("%s:0:0: file larger than %d bytes", path, CONF_MAX_FILE_SIZE);
		close(fd);
		return NULL;
	}
	size_t size = (size_t)st.st_size, len = 0;
	char *data = xmalloc(size + 1);
	while (len < size) {
		ssize_t n = read(fd, data + len, size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = xasprintf("%s:0:0: cannot read: %s", path, strerror(errno));
			close(fd);
			free(data);
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	data[len] = '\0';
	struct mr_config *cfg = conf_load_buffer(path, data, len, error_r);
	free(data);
	return cfg;
}

/* Free the strings and string lists of one mapping described by keys. */
static void free_keys(char *base, const struct conf_key *keys)
{
	for (const struct conf_key *k = keys; k->name != NULL; k++) {
		if (k->type == CT_STRING || k->type == CT_PATH)
			xfree((char **)(base + k->offset));
		else if (k->type == CT_STRLIST)
			free_strlist((char ***)(base + k->offset), (size_t *)(base + k->count_offset));
	}
}

static void free_seclist(char *base, const struct conf_key *key)
{
	char **arr = (char **)(base + key->offset);
	size_t *count = (size_t *)(base + key->count_offset);
	for (size_t i = 0; i < *count; i++)
		free_keys(*arr + i * key->elem_size, key->section);
	xfree(arr);
	*count = 0;
}

void conf_free(struct mr_config **cfgp)
{
	struct mr_config *cfg = *cfgp;
	if (cfg == NULL)
		return;
	free(cfg->path);
	free(cfg->hostname);
	free(cfg->data_dir);
	for (size_t i = 0; i < cfg->listen_count; i++)
		free(cfg->listen[i].address);
	free(cfg->listen);
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free_strlist(&cfg->dns_forward, &cfg->dns_forward_count);
	free(cfg->rules);
	free_strlist(&cfg->trusted_networks, &cfg->trusted_networks_count);
	free(cfg->user);
	free(cfg->vmail_user);
	free(cfg->log_file);
	free(cfg->log_level);
	free(cfg->authserv_id);
	free(cfg->mailauth.dkim_selector);
	free(cfg->srs.secret);
	free_strlist(&cfg->srs.secrets, &cfg->srs.secrets_count);
	free(cfg->srs.domain);
	free(cfg->outbound.tls);
	free(cfg->queue.sync);
	free(cfg->clamd.address);
	free(cfg->rspamd.address);
	free(cfg->clamd_on_error);
	free(cfg->clamd_action);
	free(cfg->rspamd_on_error);
	free(cfg->outbound.tls_ca_file);
	free(cfg->outbound.dnssec_trust_anchor);
	free_seclist((char *)cfg, &dnsbl_keys[0]);
	free(cfg->dnsbl.action);
	free(cfg->rate_limits.connections_per_ip_s);
	free(cfg->rate_limits.messages_per_ip_s);
	free(cfg->rate_limits.recipients_per_ip_s);
	free(cfg->rate_limits.messages_per_user_s);
	free(cfg->rate_limits.recipients_per_user_s);
	for (const struct conf_key *k = root_keys; k->name != NULL; k++)
		if (k->type == CT_SECLIST)
			free_seclist((char *)cfg, k);
	free(cfg);
	*cfgp = NULL;
}
