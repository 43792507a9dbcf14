/*
 * webhook: mailroute webhook list | replay NAME | replay --all
 * The dead letters of webhooks (documents whose delivery kept failing until
 * queue.max_age), kept by the queue role under <data_dir>/queue/deadletter/.
 *
 * list:   NAME TAB WEBHOOK TAB CREATED (RFC 3339 UTC) TAB LAST_ERROR
 *         (NAME is QUEUEID-RCPTINDEX, also the Idempotency-Key sent)
 * replay: POSTs the document again from this process (libcurl, signed with a
 *         fresh timestamp, same Idempotency-Key) and removes the dead letter
 *         on a 2xx answer. Exit 0 when every replay succeeded, 1 otherwise,
 *         1 also for an unknown NAME.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/commands.h"
#include "lib/xalloc.h"
#include "queued/queue_triggers.h"

#define WEBHOOK_USAGE "usage: webhook list | replay NAME | replay --all"

static void print_one(void *ctx, const struct queue_deadletter *d)
{
	char when[40];
	struct tm tm;
	gmtime_r(&d->created, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%s\t%s\t%s\t%s\n", d->name, d->webhook, when, d->last_error);
}

struct names {
	char **v;
	size_t n, alloc;
};

static void collect(void *ctx, const struct queue_deadletter *d)
{
	struct names *ns = ctx;
	if (ns->n == ns->alloc) {
		ns->alloc = ns->alloc ? ns->alloc * 2 : 16;
		ns->v = xreallocarray(ns->v, ns->alloc, sizeof(char *));
	}
	ns->v[ns->n++] = xstrdup(d->name);
}

static int replay_one(const struct mr_config *cfg, const char *name)
{
	char *error = NULL;
	int r = queue_deadletter_replay(cfg, name, &error);
	if (r > 0) {
		printf("%s\tdelivered\n", name);
		return 0;
	}
	if (r == 0)
		fprintf(stderr, "mailroute: no dead letter %s\n", name);
	else
		fprintf(stderr, "mailroute: %s: %s\n", name, error ? error : "failed");
	free(error);
	return 1;
}

static int webhook_dispatch(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage(WEBHOOK_USAGE);
	const char *sub = argv[1];
	bool list = strcmp(sub, "list") == 0 && argc == 2;
	bool replay = strcmp(sub, "replay") == 0 && argc == 3;
	if (!list && !replay)
		return cli_usage(WEBHOOK_USAGE);
	struct mr_config *cfg = cli_config(ctx);
	if (cli_drop_privileges(cfg, cfg->user) < 0)
		return cli_fail("cannot switch to user %s", cfg->user);
	char *error = NULL;
	if (list) {
		if (queue_deadletter_list(cfg, print_one, NULL, &error) < 0) {
			int r = cli_fail("%s", error);
			free(error);
			return r;
		}
		return 0;
	}
	if (strcmp(argv[2], "--all") != 0)
		return replay_one(cfg, argv[2]);
	struct names ns = { 0 };
	if (queue_deadletter_list(cfg, collect, &ns, &error) < 0) {
		int r = cli_fail("%s", error);
		free(error);
		return r;
	}
	int ret = 0;
	for (size_t i = 0; i < ns.n; i++) {
		if (replay_one(cfg, ns.v[i]) != 0)
			ret = 1;
		free(ns.v[i]);
	}
	free(ns.v);
	return ret;
}

int cli_webhook_main(struct cli_ctx *ctx, int argc, char **argv)
{
	int ret = webhook_dispatch(ctx, argc, argv);
	conf_free(&ctx->cfg);
	return ret;
}
