#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <limits.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "conf/conf.h"
#include "lib/xalloc.h"

#define ALL_KEYS "hostname, data_dir, listen, tls, dns, rules, trusted_networks, user, vmail_user, " \
	"smtp_processes, log_file, log_level, subaddress_separator, auth_allow_plaintext, limits, queue, " \
	"outbound, clamd, rspamd, authserv_id, mail_auth, spf, dmarc, dkim, srs, webhooks, pipes, autoreplies, " \
	"milters, milters_on_submission, dnsbl, greylisting, rate_limits"

struct error_case {
	const char *yaml;
	const char *error;
};

static const struct error_case error_cases[] = {
	{ "milters:\n  - { name: a, address: \"localhost:8891\" }\n",
	  "t.yaml:2:25: milters[0].address: bad value 'localhost:8891': expected a numeric IP:PORT or inet:PORT@IP "
	  "(milters are reached from a chroot without DNS)" },
	{ "milters:\n  - { name: a, address: \"inet:8891@localhost\" }\n",
	  "t.yaml:2:25: milters[0].address: bad value 'inet:8891@localhost': expected a numeric IP:PORT or "
	  "inet:PORT@IP (milters are reached from a chroot without DNS)" },
	{ "milters:\n  - { name: a, address: \"127.0.0.1:1\", on_error: drop }\n",
	  "t.yaml:2:50: milters[0].on_error: bad value 'drop': expected tempfail or accept" },
	{ "milters:\n  - { name: a, address: \"127.0.0.1:1\" }\n  - { name: a, address: \"127.0.0.1:2\" }\n",
	  "t.yaml:0:0: milters[1]: duplicate name 'a'" },
	{ "dnsbl:\n  zones:\n    - { zone: bl.test, weight: x }\n",
	  "t.yaml:3:32: dnsbl.zones[0].weight: expected an integer from -1000000 to 1000000, got 'x'" },
	{ "dnsbl:\n  zones:\n    - { zone: bl.test, codes: \"127.0.0\" }\n",
	  "t.yaml:3:31: dnsbl.zones[0].codes: bad value '127.0.0': expected comma-separated IPv4 addresses "
	  "(127.0.0.2,127.0.0.4)" },
	{ "dnsbl:\n  action: drop\n", "t.yaml:2:11: dnsbl.action: bad value 'drop': expected reject or tag" },
	{ "rate_limits:\n  connections_per_ip: 10\n",
	  "t.yaml:2:23: rate_limits.connections_per_ip: bad value '10': expected N/SECONDS, e.g. 60/60" },
	{ "rate_limits:\n  messages_per_ip: 0/60\n",
	  "t.yaml:2:20: rate_limits.messages_per_ip: bad value '0/60': N must be 1-1000000 and SECONDS 1-31536000" },
	{ "rate_limits:\n  messages_per_user: \"5/\"\n",
	  "t.yaml:2:22: rate_limits.messages_per_user: bad value '5/': expected N/SECONDS, e.g. 60/60" },
	{ "greylisting:\n  delay: 600\n  retry_window: 300\n",
	  "t.yaml:0:0: greylisting.retry_window (300) must be larger than greylisting.delay (600)" },
	{ "hostnme: x\n", "t.yaml:1:1: unknown key 'hostnme' (allowed: " ALL_KEYS ")" },
	{ "hostname: a\nlimits:\n  max_foo: 1\n",
	  "t.yaml:3:3: unknown key 'max_foo' in limits (allowed: max_line_length, max_message_size, "
	  "max_recipients, max_errors, max_connections, max_connections_per_ip, command_timeout, data_timeout)" },
	{ "hostname: [a]\n", "t.yaml:1:11: hostname: expected a string, got a list" },
	{ "hostname: {a: b}\n", "t.yaml:1:11: hostname: expected a string, got a mapping" },
	{ "hostname: \"bad host\"\n",
	  "t.yaml:1:11: hostname: bad value 'bad host': only letters, digits, '-', '_' and '.' are allowed" },
	{ "- a\n", "t.yaml:1:1: expected a mapping of keys at the top, got a list" },
	{ "hostname: a\nhostname: b\n", "t.yaml:2:1: hostname: duplicate key (first at line 1)" },
	{ "listen:\n  - { kind: smtp, address: \"127.0.0.1:25\" }\n",
	  "t.yaml:2:13: listen[0].kind: unknown kind 'smtp' (expected mx, submission, submissions, imap, imaps, pop3, pop3s or managesieve)" },
	{ "listen:\n  - { kind: mx, address: \"127.0.0.1:0\" }\n",
	  "t.yaml:2:26: listen[0].address: bad address '127.0.0.1:0': port must be 1-65535" },
	{ "listen:\n  - { kind: mx, address: \"127.0.0.1:65536\" }\n",
	  "t.yaml:2:26: listen[0].address: bad address '127.0.0.1:65536': port must be 1-65535" },
	{ "listen:\n  - { kind: mx, address: \"localhost:25\" }\n",
	  "t.yaml:2:26: listen[0].address: bad address 'localhost:25': bad IPv4 address" },
	{ "listen:\n  - { kind: mx, address: \"::1:25\" }\n",
	  "t.yaml:2:26: listen[0].address: bad address '::1:25': expected IPv4:PORT, [IPv6]:PORT or *:PORT" },
	{ "listen:\n  - { kind: mx, address: \"[::1]25\" }\n",
	  "t.yaml:2:26: listen[0].address: bad address '[::1]25': expected ':PORT' after ']'" },
	{ "listen:\n  - { kind: mx, address: \"[::g]:25\" }\n",
	  "t.yaml:2:26: listen[0].address: bad address '[::g]:25': bad IPv6 address" },
	{ "listen:\n  - { kind: mx, address: \"127.0.0.1:2525\" }\n"
	  "  - { kind: submission, address: \"127.0.0.1:2525\" }\n",
	  "t.yaml:3:34: listen[1].address: duplicate listen address '127.0.0.1:2525' (also at line 2)" },
	{ "listen:\n  - { kind: mx }\n", "t.yaml:2:5: listen[0]: missing key 'address'" },
	{ "listen:\n  - kind: mx\n    address: \"*:25\"\n    port: 3\n",
	  "t.yaml:4:5: listen[0]: unknown key 'port' (allowed: kind, address)" },
	{ "listen: \"*:25\"\n", "t.yaml:1:9: listen: expected a list, got a scalar" },
	{ "listen:\n  - \"*:25\"\n", "t.yaml:2:5: listen[0]: expected a mapping {kind, address}, got a scalar" },
	{ "listen:\n  - { kind: imaps, address: \"*:993\" }\n", "t.yaml:2:5: listen[0]: kind imaps needs tls.cert and tls.key" },
	{ "tls: { cert: a.pem }\n", "t.yaml:0:0: tls: cert and key must be given together" },
	{ "tls: a.pem\n", "t.yaml:1:6: tls: expected a mapping, got a scalar" },
	{ "limits:\n  max_recipients: ten\n", "t.yaml:2:19: limits.max_recipients: expected a non-negative integer, got 'ten'" },
	{ "limits:\n  max_recipients: -1\n", "t.yaml:2:19: limits.max_recipients: expected a non-negative integer, got '-1'" },
	{ "limits:\n  max_recipients: 0\n", "t.yaml:2:19: limits.max_recipients: 0 is out of range (1-1000000)" },
	{ "limits:\n  max_message_size: 10X\n",
	  "t.yaml:2:21: limits.max_message_size: expected a size (an integer, optionally with k, M or G), got '10X'" },
	{ "limits:\n  max_message_size: M\n",
	  "t.yaml:2:21: limits.max_message_size: expected a size (an integer, optionally with k, M or G), got 'M'" },
	{ "limits: { max_line_length: 100 }\n", "t.yaml:1:28: limits.max_line_length: 100 is out of range (512-1048576)" },
	{ "queue:\n  retry_min: 99999999999999999999999\n",
	  "t.yaml:2:14: queue.retry_min: expected a non-negative integer, got '99999999999999999999999'" },
	{ "queue: { retry_min: 600, retry_max: 300 }\n", "t.yaml:0:0: queue.retry_max (300) is smaller than queue.retry_min (600)" },
	{ "outbound: { dane: true }\n", "t.yaml:0:0: outbound.dane needs outbound.dnssec_trust_anchor (DNSSEC validation)" },
	{ "outbound: { mta_sts: yes please }\n", "t.yaml:1:22: outbound.mta_sts: expected true or false, got 'yes please'" },
	{ "outbound: { mta_sts_port: 0 }\n", "t.yaml:1:27: outbound.mta_sts_port: 0 is out of range (1-65535)" },
	{ "auth_allow_plaintext: maybe\n", "t.yaml:1:23: auth_allow_plaintext: expected true or false, got 'maybe'" },
	{ "subaddress_separator: \"+-\"\n",
	  "t.yaml:1:23: subaddress_separator: expected one printable character (not '@') or \"\", got '+-'" },
	{ "trusted_networks: [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n",
	  "t.yaml:1:34: trusted_networks[1]: bad value '10.0.0.0/33': prefix length must be 0-32" },
	{ "trusted_networks: [\"fe80::/129\"]\n",
	  "t.yaml:1:20: trusted_networks[0]: bad value 'fe80::/129': prefix length must be 0-128" },
	{ "trusted_networks: [\"example.com/8\"]\n",
	  "t.yaml:1:20: trusted_networks[0]: bad value 'example.com/8': bad IP address" },
	{ "dns:\n  forward: [\"127.0.0.1@0\"]\n", "t.yaml:2:13: dns.forward[0]: bad value '127.0.0.1@0': port must be 1-65535" },
	{ "dns:\n  forward: [\"resolver\"]\n", "t.yaml:2:13: dns.forward[0]: bad value 'resolver': expected IP or IP@PORT" },
	{ "log_level: verbose\n", "t.yaml:1:12: log_level: bad value 'verbose': expected debug, info or warn" },
	{ "data_dir: \"\"\n", "t.yaml:1:11: data_dir: must not be empty" },
	{ "smtp_processes: 5000\n", "t.yaml:1:17: smtp_processes: 5000 is out of range (0-1024)" },
	{ "spf: { reject: true }\n", "t.yaml:1:8: unknown key 'reject' in spf (allowed: reject_fail)" },
	{ "spf:\n  reject_fail: sometimes\n", "t.yaml:2:16: spf.reject_fail: expected true or false, got 'sometimes'" },
	{ "dmarc: { enforce: 1 }\n", "t.yaml:1:19: dmarc.enforce: expected true or false, got '1'" },
	{ "dkim: { selector: \"a.b\" }\n",
	  "t.yaml:1:19: dkim.selector: bad value 'a.b': expected a DKIM selector (letters, digits, '-', at most 63)" },
	{ "dkim: { sign: true, key: x }\n", "t.yaml:1:21: unknown key 'key' in dkim (allowed: sign, selector)" },
	{ "authserv_id: \"\"\n", "t.yaml:1:14: authserv_id: must not be empty" },
	{ "authserv_id: \"a b\"\n",
	  "t.yaml:1:14: authserv_id: bad value 'a b': only letters, digits, '-', '_' and '.' are allowed" },
	{ "mail_auth: [true]\n", "t.yaml:1:12: mail_auth: expected true or false, got a list" },
	{ "srs: { secret: short }\n",
	  "t.yaml:1:16: srs.secret: bad value 'short': expected a secret of 16 to 256 printable characters without spaces" },
	{ "srs: { key: x }\n", "t.yaml:1:8: unknown key 'key' in srs (allowed: secret, secrets, domain, max_age_days)" },
	{ "srs: { secret: 0123456789abcdef, domain: \"a b\" }\n",
	  "t.yaml:1:42: srs.domain: bad value 'a b': only letters, digits, '-', '_' and '.' are allowed" },
	{ "srs: { max_age_days: 0 }\n", "t.yaml:1:22: srs.max_age_days: 0 is out of range (1-1000)" },
	{ "hostname: h\nsrs:\n  secret: 0123456789abcdef\n  secrets: [1123456789abcdef, 2123456789abcdef, "
	  "3123456789abcdef, 4123456789abcdef]\n",
	  "t.yaml:0:0: srs: at most 4 secrets (secret and secrets together)" },
	/* YAML syntax errors carry libyaml's problem mark. */
	{ "hostname: [a\n", "t.yaml:2:1: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence at line 1)" },
	{ "a: b\n c: d\n", "t.yaml:2:3: YAML syntax error: mapping values are not allowed in this context" },
	{ "hostname: \"abc\n", "t.yaml:2:1: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar at line 1)" },
	{ "hostname: a\n---\nhostname: b\n", "t.yaml:2:1: only one YAML document is allowed" },
	{ "hostname: \"\xff\"\n", "t.yaml:1:12: YAML error: invalid leading UTF-8 octet" },
	/* Lists of sections: webhooks, pipes, autoreplies. */
	{ "webhooks: {name: a}\n", "t.yaml:1:11: webhooks: expected a list, got a mapping" },
	{ "webhooks:\n  - x\n", "t.yaml:2:5: webhooks[0]: expected a mapping, got a scalar" },
	{ "webhooks:\n  - {name: a}\n", "t.yaml:2:5: webhooks[0]: missing key 'url'" },
	{ "webhooks:\n  - {name: a, url: \"ftp://x\"}\n",
	  "t.yaml:2:20: webhooks[0].url: bad value 'ftp://x': expected an http:// or https:// URL" },
	{ "webhooks:\n  - {name: a, url: \"http://x\", tmeout: 3}\n",
	  "t.yaml:2:32: unknown key 'tmeout' in webhooks[0] (allowed: name, url, secret, timeout, tls_ca_file)" },
	{ "webhooks:\n  - {name: a, url: \"http://x\", timeout: 0}\n",
	  "t.yaml:2:41: webhooks[0].timeout: 0 is out of range (1-3600)" },
	{ "webhooks:\n  - {name: \"a b\", url: \"http://x\"}\n",
	  "t.yaml:2:12: webhooks[0].name: bad value 'a b': expected a name of letters, digits, '-', '_' and '.' (at most 64)" },
	{ "webhooks:\n  - {name: a, url: \"http://x\"}\n  - {name: a, url: \"http://y\"}\n",
	  "t.yaml:0:0: webhooks[1]: duplicate name 'a'" },
	{ "pipes:\n  - {name: p, command: /bin/cat}\n", "t.yaml:2:24: pipes[0].command: expected a list, got a scalar" },
	{ "pipes:\n  - {name: p, command: [cat]}\n",
	  "t.yaml:0:0: pipes[0].command: expected a list [ABSOLUTE_PATH, ARGS...]" },
	{ "pipes:\n  - {name: p, command: [], timeout: 5}\n",
	  "t.yaml:0:0: pipes[0].command: expected a list [ABSOLUTE_PATH, ARGS...]" },
	{ "pipes:\n  - {command: [/bin/cat]}\n", "t.yaml:2:5: pipes[0]: missing key 'name'" },
	{ "autoreplies:\n  - {name: r, from: a@b.test}\n", "t.yaml:2:5: autoreplies[0]: missing key 'text'" },
	{ "autoreplies:\n  - {name: r, from: a@b.test, text: hi, period: -1}\n",
	  "t.yaml:2:49: autoreplies[0].period: expected a non-negative integer, got '-1'" },
};

static void test_errors(void **state)
{
	for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
		const struct error_case *c = &error_cases[i];
		char *error = NULL;
		struct mr_config *cfg = conf_load_buffer("t.yaml", c->yaml, strlen(c->yaml), &error);
		if (cfg != NULL || error == NULL || strcmp(error, c->error) != 0) {
			fprintf(stderr, "case %zu: %s\n  expected: %s\n  got:      %s\n", i, c->yaml, c->error,
				error != NULL ? error : "(success)");
			fail();
		}
		free(error);
	}
}

static const char demo[] =
	"hostname: mx.example.test\n"
	"data_dir: var\n"
	"listen:\n"
	"  - { kind: mx,          address: \"127.0.0.1:2525\" }\n"
	"  - { kind: submission,  address: \"127.0.0.1:2587\" }\n"
	"  - { kind: submissions, address: \"127.0.0.1:2465\" }\n"
	"  - { kind: imap,        address: \"127.0.0.1:2143\" }\n"
	"  - { kind: imaps,       address: \"127.0.0.1:2993\" }\n"
	"  - { kind: pop3,        address: \"127.0.0.1:2110\" }\n"
	"  - { kind: pop3s,       address: \"127.0.0.1:2995\" }\n"
	"  - { kind: managesieve, address: \"127.0.0.1:4190\" }\n"
	"  - { kind: mx,          address: \"[::1]:2525\" }\n"
	"  - { kind: mx,          address: \"*:2526\" }\n"
	"tls: { cert: var/tls/cert.pem, key: /etc/ssl/key.pem }\n"
	"dns:\n"
	"  forward: [\"127.0.0.1@5353\", \"::1\"]   # comment\n"
	"rules: ./var/rules.sieve\n"
	"trusted_networks: [10.0.0.0/8, \"::1/128\", 192.0.2.1]\n"
	"subaddress_separator: \"-\"\n"
	"auth_allow_plaintext: true\n"
	"limits: { max_message_size: 10M, max_line_length: 4k, max_recipients: 50 }\n"
	"queue:\n"
	"  retry_min: 60\n"
	"  commit_delay_us: 0\n";

static void test_demo(void **state)
{
	char cwd[PATH_MAX], *error = NULL, *expect;
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	struct mr_config *cfg = conf_load_buffer("demo.yaml", demo, strlen(demo), &error);
	if (cfg == NULL)
		fprintf(stderr, "%s\n", error);
	assert_non_null(cfg);
	assert_string_equal(cfg->path, "demo.yaml");
	assert_string_equal(cfg->hostname, "mx.example.test");
	expect = xasprintf("%s/var", cwd);
	assert_string_equal(cfg->data_dir, expect);
	free(expect);
	assert_int_equal(cfg->listen_count, 10);
	static const enum listen_kind kinds[] = { LISTEN_MX, LISTEN_SUBMISSION, LISTEN_SUBMISSIONS, LISTEN_IMAP,
		LISTEN_IMAPS, LISTEN_POP3, LISTEN_POP3S, LISTEN_MANAGESIEVE, LISTEN_MX, LISTEN_MX };
	for (size_t i = 0; i < 10; i++)
		assert_int_equal(cfg->listen[i].kind, kinds[i]);
	assert_string_equal(conf_listen_kind_name(cfg->listen[6].kind), "pop3s");
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg->listen[0].addr;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 2525);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	assert_int_equal(cfg->listen[0].addr_len, sizeof(struct sockaddr_in));
	assert_string_equal(cfg->listen[0].address, "127.0.0.1:2525");
	assert_int_equal(cfg->listen[0].line, 4);
	assert_int_equal(cfg->listen[0].col, 5);
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&cfg->listen[8].addr;
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(sin6->sin6_port), 2525);
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	sin = (const struct sockaddr_in *)&cfg->listen[9].addr;
	assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));
	assert_int_equal(ntohs(sin->sin_port), 2526);
	expect = xasprintf("%s/var/tls/cert.pem", cwd);
	assert_string_equal(cfg->tls_cert, expect);
	free(expect);
	assert_string_equal(cfg->tls_key, "/etc/ssl/key.pem");
	expect = xasprintf("%s/var/rules.sieve", cwd);
	assert_string_equal(cfg->rules, expect);
	free(expect);
	assert_int_equal(cfg->dns_forward_count, 2);
	assert_string_equal(cfg->dns_forward[0], "127.0.0.1@5353");
	assert_string_equal(cfg->dns_forward[1], "::1");
	assert_int_equal(cfg->trusted_networks_count, 3);
	assert_string_equal(cfg->trusted_networks[1], "::1/128");
	assert_int_equal(cfg->subaddress_separator, '-');
	assert_true(cfg->auth_allow_plaintext);
	assert_int_equal(cfg->limits.max_message_size, 10 * 1024 * 1024);
	assert_int_equal(cfg->limits.max_line_length, 4096);
	assert_int_equal(cfg->limits.max_recipients, 50);
	assert_int_equal(cfg->limits.max_errors, 10); /* default kept inside a given section */
	assert_int_equal(cfg->queue.retry_min, 60);
	assert_int_equal(cfg->queue.retry_max, 14400);
	assert_int_equal(cfg->queue.commit_delay_us, 0);
	char *q = conf_path(cfg, "queue");
	expect = xasprintf("%s/var/queue", cwd);
	assert_string_equal(q, expect);
	free(q);
	free(expect);
	conf_free(&cfg);
	assert_null(cfg);
}

static void test_defaults(void **state)
{
	static const char *const texts[] = { "", "# only a comment\n", "---\n", "hostname: h\nlisten:\nrules: ~\n" };
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		char *error = NULL;
		struct mr_config *cfg = conf_load_buffer("d.yaml", texts[i], strlen(texts[i]), &error);
		if (cfg == NULL)
			fprintf(stderr, "%s\n", error);
		assert_non_null(cfg);
		assert_non_null(cfg->hostname);
		assert_string_equal(cfg->data_dir, "/var/lib/mailroute");
		assert_int_equal(cfg->listen_count, 0);
		assert_null(cfg->tls_cert);
		assert_null(cfg->tls_key);
		assert_null(cfg->rules);
		assert_null(cfg->log_file);
		assert_int_equal(cfg->dns_forward_count, 0);
		assert_int_equal(cfg->trusted_networks_count, 0);
		assert_string_equal(cfg->user, "mailroute");
		assert_string_equal(cfg->vmail_user, "vmail");
		assert_string_equal(cfg->log_level, "info");
		assert_int_equal(cfg->smtp_processes, 0);
		assert_int_equal(cfg->subaddress_separator, '+');
		assert_false(cfg->auth_allow_plaintext);
		assert_int_equal(cfg->limits.max_line_length, 2048);
		assert_int_equal(cfg->limits.max_message_size, 52428800);
		assert_int_equal(cfg->limits.max_recipients, 1000);
		assert_int_equal(cfg->limits.max_errors, 10);
		assert_int_equal(cfg->limits.max_connections, 1000);
		assert_int_equal(cfg->limits.max_connections_per_ip, 20);
		assert_int_equal(cfg->limits.command_timeout, 300);
		assert_int_equal(cfg->limits.data_timeout, 180);
		assert_int_equal(cfg->queue.retry_min, 300);
		assert_int_equal(cfg->queue.retry_max, 14400);
		assert_int_equal(cfg->queue.max_age, 432000);
		assert_int_equal(cfg->queue.delay_warning, 0);
		assert_int_equal(cfg->queue.commit_delay_us, 0);
		assert_string_equal(cfg->authserv_id, cfg->hostname);
		assert_false(cfg->mailauth.verify);
		assert_true(cfg->mailauth.spf_reject_fail);
		assert_true(cfg->mailauth.dmarc_enforce);
		assert_true(cfg->mailauth.dkim_sign);
		assert_null(cfg->mailauth.dkim_selector);
		char *q = conf_path(cfg, "queue");
		assert_string_equal(q, "/var/lib/mailroute/queue");
		free(q);
		conf_free(&cfg);
	}
}

struct mailauth_case {
	const char *yaml;
	const char *authserv_id;
	bool verify, reject_fail, enforce, sign;
	const char *selector;
};

static const struct mailauth_case mailauth_cases[] = {
	{ "hostname: mx.a.test\n", "mx.a.test", false, true, true, true, NULL },
	{ "hostname: mx.a.test\nauthserv_id: auth.a.test\nmail_auth: yes\n", "auth.a.test", true, true, true, true, NULL },
	{ "hostname: h\nspf: { reject_fail: false }\ndmarc: { enforce: no }\ndkim: { sign: false, selector: s2024 }\n",
	  "h", false, false, false, false, "s2024" },
	{ "hostname: h\ndkim: { selector: \"\" }\nspf:\ndmarc: ~\n", "h", false, true, true, true, NULL },
	{ "hostname: h\ndkim:\n  selector: sel-1\n  sign: true\n", "h", false, true, true, true, "sel-1" },
	{ "hostname: h\nauthserv_id: ~\n", "h", false, true, true, true, NULL },
};

static void test_mailauth(void **state)
{
	for (size_t i = 0; i < sizeof(mailauth_cases) / sizeof(mailauth_cases[0]); i++) {
		const struct mailauth_case *c = &mailauth_cases[i];
		char *error = NULL;
		struct mr_config *cfg = conf_load_buffer("m.yaml", c->yaml, strlen(c->yaml), &error);
		if (cfg == NULL)
			fprintf(stderr, "case %zu: %s\n", i, error);
		assert_non_null(cfg);
		assert_string_equal(cfg->authserv_id, c->authserv_id);
		assert_int_equal(cfg->mailauth.verify, c->verify);
		assert_int_equal(cfg->mailauth.spf_reject_fail, c->reject_fail);
		assert_int_equal(cfg->mailauth.dmarc_enforce, c->enforce);
		assert_int_equal(cfg->mailauth.dkim_sign, c->sign);
		if (c->selector == NULL)
			assert_null(cfg->mailauth.dkim_selector);
		else
			assert_string_equal(cfg->mailauth.dkim_selector, c->selector);
		conf_free(&cfg);
	}
}

struct srs_case {
	const char *yaml;
	const char *secret;   /* NULL = none */
	size_t secrets;       /* count of srs.secrets */
	const char *first_old;
	const char *domain;
	unsigned max_age_days;
};

static const struct srs_case srs_cases[] = {
	{ "hostname: mx.a.test\n", NULL, 0, NULL, "mx.a.test", 21 },
	{ "hostname: mx.a.test\nsrs: { secret: 0123456789abcdef }\n", "0123456789abcdef", 0, NULL, "mx.a.test", 21 },
	{ "hostname: h\nsrs:\n  secret: 0123456789abcdef\n  secrets: [fedcba9876543210]\n  domain: srs.a.test\n"
	  "  max_age_days: 7\n",
	  "0123456789abcdef", 1, "fedcba9876543210", "srs.a.test", 7 },
	{ "hostname: h\nsrs:\n  secrets: [fedcba9876543210, 0123456789abcdef]\n", NULL, 2, "fedcba9876543210", "h", 21 },
	{ "hostname: h\nsrs:\n", NULL, 0, NULL, "h", 21 },
};

static void test_srs(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(srs_cases) / sizeof(srs_cases[0]); i++) {
		const struct srs_case *c = &srs_cases[i];
		char *error = NULL;
		struct mr_config *cfg = conf_load_buffer("s.yaml", c->yaml, strlen(c->yaml), &error);
		if (cfg == NULL)
			fprintf(stderr, "case %zu: %s\n", i, error);
		assert_non_null(cfg);
		if (c->secret == NULL)
			assert_null(cfg->srs.secret);
		else
			assert_string_equal(cfg->srs.secret, c->secret);
		assert_int_equal(cfg->srs.secrets_count, c->secrets);
		if (c->first_old != NULL)
			assert_string_equal(cfg->srs.secrets[0], c->first_old);
		assert_string_equal(cfg->srs.domain, c->domain);
		assert_int_equal(cfg->srs.max_age_days, c->max_age_days);
		conf_free(&cfg);
	}
}

static void test_triggers(void **state)
{
	static const char yaml[] =
		"webhooks:\n"
		"  - { name: crm, url: \"https://127.0.0.1:8443/hook\", secret: s3cret, tls_ca_file: ca.pem }\n"
		"  - { name: b, url: \"http://127.0.0.1/\", timeout: 5 }\n"
		"pipes:\n"
		"  - name: tickets\n"
		"    command: [/usr/bin/tee, -a, /tmp/x]\n"
		"autoreplies:\n"
		"  - { name: info, from: info@example.test, text: \"Thanks ${sender}\" }\n";
	char *error = NULL;
	struct mr_config *cfg = conf_load_buffer("t.yaml", yaml, strlen(yaml), &error);
	if (cfg == NULL)
		fprintf(stderr, "%s\n", error);
	assert_non_null(cfg);
	assert_int_equal(cfg->webhooks_count, 2);
	assert_string_equal(cfg->webhooks[0].name, "crm");
	assert_string_equal(cfg->webhooks[0].secret, "s3cret");
	assert_int_equal(cfg->webhooks[0].timeout, 30);
	assert_true(cfg->webhooks[0].tls_ca_file[0] == '/');
	assert_int_equal(cfg->webhooks[1].timeout, 5);
	assert_null(cfg->webhooks[1].secret);
	assert_int_equal(cfg->pipes_count, 1);
	assert_int_equal(cfg->pipes[0].command_count, 3);
	assert_string_equal(cfg->pipes[0].command[2], "/tmp/x");
	assert_int_equal(cfg->pipes[0].timeout, 60);
	assert_int_equal(cfg->autoreplies_count, 1);
	assert_int_equal(cfg->autoreplies[0].period, 604800);
	assert_null(cfg->autoreplies[0].subject);
	conf_free(&cfg);
}

static void test_content_filters(void **state)
{
	static const char yaml[] =
		"milters:\n"
		"  - { name: one, address: \"127.0.0.1:8891\" }\n"
		"  - { name: two, address: \"inet:8892@127.0.0.1\", timeout: 3, on_error: accept }\n"
		"milters_on_submission: true\n"
		"dnsbl:\n"
		"  zones:\n"
		"    - { zone: bl.test, weight: 2 }\n"
		"    - { zone: white.test, weight: -5, codes: \"127.0.0.2, 127.0.0.3\" }\n"
		"    - { zone: dbl.test, rhsbl: true }\n"
		"  threshold: 2\n"
		"  action: tag\n"
		"greylisting: { enabled: true, delay: 2 }\n"
		"rate_limits:\n"
		"  connections_per_ip: 3/10\n"
		"  recipients_per_user: 1000/86400\n";
	char *error = NULL;
	struct mr_config *cfg = conf_load_buffer("t.yaml", yaml, strlen(yaml), &error);
	if (cfg == NULL)
		fprintf(stderr, "%s\n", error);
	assert_non_null(cfg);
	assert_int_equal(cfg->milters_count, 2);
	assert_int_equal(cfg->milters[0].timeout, 10);
	assert_false(cfg->milters[0].on_error_accept);
	assert_int_equal(cfg->milters[1].timeout, 3);
	assert_true(cfg->milters[1].on_error_accept);
	assert_true(cfg->milters_on_submission);
	assert_int_equal(cfg->dnsbl.zones_count, 3);
	assert_int_equal(cfg->dnsbl.zones[0].weight, 2);
	assert_int_equal(cfg->dnsbl.zones[1].weight, -5);
	assert_int_equal(cfg->dnsbl.zones[2].weight, 1);
	assert_true(cfg->dnsbl.zones[2].rhsbl);
	assert_string_equal(cfg->dnsbl.zones[1].codes, "127.0.0.2, 127.0.0.3");
	assert_int_equal(cfg->dnsbl.threshold, 2);
	assert_true(cfg->dnsbl.tag);
	assert_true(cfg->greylisting.enabled);
	assert_int_equal(cfg->greylisting.delay, 2);
	assert_int_equal(cfg->greylisting.retry_window, 172800);
	assert_int_equal(cfg->greylisting.pass_ttl, 3024000);
	assert_int_equal(cfg->rate_limits.connections_per_ip.limit, 3);
	assert_int_equal(cfg->rate_limits.connections_per_ip.per, 10);
	assert_int_equal(cfg->rate_limits.messages_per_ip.limit, 0);
	assert_int_equal(cfg->rate_limits.recipients_per_user.limit, 1000);
	assert_int_equal(cfg->rate_limits.recipients_per_user.per, 86400);
	conf_free(&cfg);

	cfg = conf_load_buffer("t.yaml", "hostname: a\n", 12, &error);
	assert_non_null(cfg);
	assert_int_equal(cfg->milters_count, 0);
	assert_false(cfg->milters_on_submission);
	assert_int_equal(cfg->dnsbl.zones_count, 0);
	assert_int_equal(cfg->dnsbl.threshold, 1);
	assert_false(cfg->dnsbl.tag);
	assert_false(cfg->greylisting.enabled);
	assert_int_equal(cfg->greylisting.delay, 300);
	conf_free(&cfg);
}

static void test_separator(void **state)
{
	static const struct { const char *yaml; char sep; } cases[] = {
		{ "subaddress_separator: \"\"\n", 0 },
		{ "subaddress_separator:\n", 0 },
		{ "subaddress_separator: \"+\"\n", '+' },
		{ "subaddress_separator: _\n", '_' },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *error = NULL;
		struct mr_config *cfg = conf_load_buffer("s.yaml", cases[i].yaml, strlen(cases[i].yaml), &error);
		assert_non_null(cfg);
		assert_int_equal(cfg->subaddress_separator, cases[i].sep);
		conf_free(&cfg);
	}
}

static void test_file(void **state)
{
	char *error = NULL;
	struct mr_config *cfg = conf_load("/nonexistent/mailroute.yaml", &error);
	assert_null(cfg);
	assert_string_equal(error, "/nonexistent/mailroute.yaml:0:0: cannot open: No such file or directory");
	free(error);

	char path[] = "/tmp/test-conf-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	static const char text[] = "hostname: f.example\nlimits:\n  max_errors: x\n";
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
	close(fd);
	cfg = conf_load(path, &error);
	assert_null(cfg);
	char *expect = xasprintf("%s:3:15: limits.max_errors: expected a non-negative integer, got 'x'", path);
	assert_string_equal(error, expect);
	free(expect);
	free(error);

	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, 28), 28);
	close(fd);
	cfg = conf_load(path, &error);
	assert_non_null(cfg);
	assert_string_equal(cfg->path, path);
	assert_string_equal(cfg->hostname, "f.example");
	conf_free(&cfg);
	unlink(path);
}

static void test_address(void **state)
{
	static const struct { const char *s; int family; uint16_t port; bool ok; } cases[] = {
		{ "127.0.0.1:1", AF_INET, 1, true },
		{ "[::]:65535", AF_INET6, 65535, true },
		{ "*:25", AF_INET, 25, true },
		{ "[::ffff:1.2.3.4]:25", AF_INET6, 25, true },
		{ "127.0.0.1:", 0, 0, false },
		{ "127.0.0.1:+25", 0, 0, false },
		{ ":25", 0, 0, false },
		{ "[]:25", 0, 0, false },
		{ "[::1:25", 0, 0, false },
		{ "1.2.3:25", 0, 0, false },
		{ "127.0.0.1:025000", 0, 0, false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len;
		const char *why = NULL;
		int ret = conf_parse_address(cases[i].s, &ss, &len, &why);
		assert_int_equal(ret, cases[i].ok ? 0 : -1);
		if (!cases[i].ok) {
			assert_non_null(why);
			continue;
		}
		assert_int_equal(ss.ss_family, cases[i].family);
		uint16_t port = ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
							: ((struct sockaddr_in6 *)&ss)->sin6_port;
		assert_int_equal(ntohs(port), cases[i].port);
	}
}

/*
 * The loader is not incremental, so the "trickle" test feeds every prefix of
 * the demo config: each loads or fails with a located error that points inside
 * the prefix (never past its end).
 */
static void test_prefixes(void **state)
{
	size_t len = strlen(demo);
	int ok = 0, failed = 0;
	for (size_t n = 0; n <= len; n++) {
		char *error = NULL;
		struct mr_config *cfg = conf_load_buffer("p.yaml", demo, n, &error);
		if (cfg != NULL) {
			assert_null(error);
			conf_free(&cfg);
			ok++;
			continue;
		}
		failed++;
		int line = -1, col = -1, lines = 1;
		for (size_t i = 0; i < n; i++)
			lines += demo[i] == '\n';
		if (sscanf(error, "p.yaml:%d:%d: ", &line, &col) != 2 || line < 0 || line > lines + 1)
			fail_msg("prefix %zu: %s", n, error);
		free(error);
	}
	assert_int_equal(ok + failed, (int)len + 1);
	assert_true(ok > 20);     /* cut at a line end: a shorter valid config */
	assert_true(failed > 20); /* cut inside a flow mapping or a quoted string */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_demo),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_separator),
		cmocka_unit_test(test_triggers),
		cmocka_unit_test(test_content_filters),
		cmocka_unit_test(test_mailauth),
		cmocka_unit_test(test_srs),
		cmocka_unit_test(test_file),
		cmocka_unit_test(test_address),
		cmocka_unit_test(test_prefixes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
