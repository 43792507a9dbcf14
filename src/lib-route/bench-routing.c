/*
 * bench-routing: routing decisions per second (route_resolve, as at RCPT time)
 * against a directory of 100,000 users and 10,000 aliases (100 of them
 * regex), and the time per message of a 200-rule system script (rules_apply,
 * as at commit time). Not a test: bench/routing runs it and prints the numbers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib-route/directory.h"
#include "lib-route/route.h"
#include "lib/buf.h"
#include "lib/xalloc.h"
#include "lookup/lookup_rules.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check(int r, char *error, const char *what)
{
	if (r < 0) {
		fprintf(stderr, "bench-routing: %s: %s\n", what, error ? error : "?");
		exit(1);
	}
	free(error);
}

int main(int argc, char **argv)
{
	unsigned users = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 100000;
	unsigned aliases = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 10000;
	unsigned regexes = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 100;
	unsigned lookups = argc > 4 ? (unsigned)strtoul(argv[4], NULL, 10) : 200000;
	char path[] = "/tmp/mr-bench-routing-XXXXXX";
	if (mkdtemp(path) == NULL)
		return 1;
	char *db = xasprintf("%s/directory.db", path);
	char *error = NULL;
	struct directory *d = directory_open(db, false, &error);
	if (d == NULL) {
		fprintf(stderr, "bench-routing: %s\n", error);
		return 1;
	}
	double t0 = now();
	check(directory_begin(d, &error), error, "begin");
	error = NULL;
	struct directory_domain dom = { .name = "example.test", .type = DIRECTORY_DOMAIN_LOCAL };
	check(directory_domain_add(d, &dom, &error), error, "domain");
	error = NULL;
	for (unsigned i = 0; i < users; i++) {
		char a[64];
		snprintf(a, sizeof(a), "user%u@example.test", i);
		check(directory_user_add(d, a, "$y$j9T$x$y", &error), error, "user");
		error = NULL;
	}
	for (unsigned i = 0; i < aliases - regexes; i++) {
		char a[64], t1[64], t2[64];
		snprintf(a, sizeof(a), "team%u@example.test", i);
		snprintf(t1, sizeof(t1), "user%u@example.test", (i * 7) % users);
		snprintf(t2, sizeof(t2), "user%u@example.test", (i * 13 + 1) % users);
		const char *targets[2] = { t1, t2 };
		check(directory_alias_add(d, a, false, targets, 2, &error), error, "alias");
		error = NULL;
	}
	for (unsigned i = 0; i < regexes; i++) {
		char p[96];
		snprintf(p, sizeof(p), "^dept%u-(.+)@example\\.test$", i);
		const char *targets[1] = { "$1@example.test" };
		check(directory_alias_add(d, p, true, targets, 1, &error), error, "regex alias");
		error = NULL;
	}
	check(directory_commit(d, &error), error, "commit");
	error = NULL;
	double t1 = now();
	fprintf(stderr, "directory: %u users, %u aliases (%u regex) built in %.1f s\n", users, aliases, regexes, t1 - t0);

	struct route_options opt = { .subaddress_separator = '+' };
	/* A realistic mix: users, users+tag, aliases, regex aliases, unknown users. */
	unsigned kinds[5] = { 0 };
	double start = now();
	for (unsigned i = 0; i < lookups; i++) {
		char a[96];
		unsigned k = i % 5;
		switch (k) {
		case 0: snprintf(a, sizeof(a), "user%u@example.test", (i * 31) % users); break;
		case 1: snprintf(a, sizeof(a), "user%u+tag@example.test", (i * 17) % users); break;
		case 2: snprintf(a, sizeof(a), "team%u@example.test", (i * 11) % (aliases - regexes)); break;
		case 3: snprintf(a, sizeof(a), "dept%u-user%u@example.test", i % regexes, i % users); break;
		default: snprintf(a, sizeof(a), "nobody%u@example.test", i); break;
		}
		struct route_result res;
		if (route_resolve(d, &opt, a, &res, &error) < 0) {
			fprintf(stderr, "bench-routing: %s\n", error);
			return 1;
		}
		if (res.status == ROUTE_OK)
			kinds[k]++;
		route_result_deinit(&res);
	}
	double elapsed = now() - start;
	printf("routing: %u decisions in %.3f s: %.0f decisions/s, %.1f us each (found: user %u, +tag %u, alias %u, "
	       "regex %u, unknown %u)\n",
	       lookups, elapsed, lookups / elapsed, elapsed / lookups * 1e6, kinds[0], kinds[1], kinds[2], kinds[3],
	       kinds[4]);

	/* 200 rules, as a system script. */
	struct buf script;
	buf_init(&script, 1 << 20);
	buf_printf(&script, "require [\"vnd.mailroute\", \"fileinto\", \"envelope\", \"body\"];\n");
	for (unsigned i = 0; i < 200; i++) {
		switch (i % 4) {
		case 0: buf_printf(&script, "if header :contains \"subject\" \"keyword%u\" { fileinto \"F%u\"; }\n", i, i); break;
		case 1: buf_printf(&script, "if envelope :domain :is \"from\" \"sender%u.example\" { tag \"X-R%u\" \"yes\"; }\n", i, i); break;
		case 2: buf_printf(&script, "if address :is \"to\" \"user%u@example.test\" { webhook \"hook%u\"; }\n", i, i); break;
		default: buf_printf(&script, "if size :over %uK { tag \"X-Big%u\" \"1\"; }\n", 1000 + i, i); break;
		}
	}
	char *rules_path = xasprintf("%s/rules.sieve", path);
	FILE *f = fopen(rules_path, "w");
	fwrite(script.data, 1, script.len, f);
	fclose(f);
	struct sieve_script *rules = rules_load(rules_path, &error);
	if (rules == NULL) {
		fprintf(stderr, "bench-routing: %s\n", error);
		return 1;
	}
	const char *msg = "From: a@sender7.example\r\nTo: user5@example.test\r\nSubject: hello there\r\n"
	                  "Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\n"
	                  "A short body of a normal message.\r\n";
	unsigned runs = 20000;
	start = now();
	for (unsigned i = 0; i < runs; i++) {
		struct rules_input in = { .sender = "a@sender7.example", .rcpt = "user5@example.test", .raw = msg,
			                  .raw_len = strlen(msg), .hostname = "mx.example.test" };
		struct rules_outcome o;
		rules_apply(rules, &in, false, &o);
		rules_outcome_deinit(&o);
	}
	elapsed = now() - start;
	printf("rules: 200-rule system script, %u messages in %.3f s: %.1f us per message\n", runs, elapsed,
	       elapsed / runs * 1e6);
	sieve_script_free(&rules);
	buf_deinit(&script);
	directory_close(&d);
	char *cmd = xasprintf("rm -rf %s", path);
	if (system(cmd) != 0)
		fprintf(stderr, "bench-routing: could not remove %s\n", path);
	free(cmd);
	free(db);
	free(rules_path);
	return 0;
}
