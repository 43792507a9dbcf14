#include "queue/queue_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/xalloc.h"
#include "queue/queue_store.h"

#define QUEUE_CLI_MAX_HEADER 65536

struct queue_cli_cmd {
	const char *name;
	int min_args, max_args; /* after the subcommand name */
};

static const struct queue_cli_cmd queue_cli_cmds[] = {
	{ "list", 0, 0 },   { "show", 1, 1 },  { "delete", 1, 1 }, { "hold", 1, 1 },
	{ "release", 1, 1 }, { "flush", 0, 1 }, { "stats", 0, 0 },  { "bounce", 1, 1 },
};
static const struct queue_cli_cmd quarantine_cli_cmds[] = {
	{ "list", 0, 0 }, { "show", 1, 1 }, { "release", 1, 1 }, { "delete", 1, 1 },
};

static const char queue_cli_usage[] = "usage: mailroute queue list | show ID | flush [ID] | hold ID | "
				      "release ID | delete ID | bounce ID | stats";
static const char quarantine_cli_usage[] = "usage: mailroute quarantine list | show ID | release ID | "
					   "delete ID";

static bool queue_cli_is_quarantine(char **argv)
{
	return argv[0] != NULL && strcmp(argv[0], "quarantine") == 0;
}

int queue_cli_check(int argc, char **argv, FILE *err)
{
	bool qr = argc > 0 && queue_cli_is_quarantine(argv);
	const char *family = qr ? "quarantine" : "queue";
	const char *usage = qr ? quarantine_cli_usage : queue_cli_usage;
	const struct queue_cli_cmd *cmds = qr ? quarantine_cli_cmds : queue_cli_cmds;
	size_t ncmds = qr ? sizeof(quarantine_cli_cmds) / sizeof(quarantine_cli_cmds[0])
			  : sizeof(queue_cli_cmds) / sizeof(queue_cli_cmds[0]);
	if (argc < 2) {
		fprintf(err, "mailroute: %s\n", usage);
		return 0;
	}
	for (size_t i = 0; i < ncmds; i++) {
		const struct queue_cli_cmd *c = &cmds[i];
		if (strcmp(argv[1], c->name) != 0)
			continue;
		int n = argc - 2;
		if (n < c->min_args || n > c->max_args) {
			fprintf(err, "mailroute: %s %s: wrong number of arguments (%s)\n", family, c->name,
				usage);
			return 0;
		}
		return 1;
	}
	fprintf(err, "mailroute: %s: unknown command '%s' (%s)\n", family, argv[1], usage);
	return 0;
}

/* "45s", "12m", "3h05m", "2d04h" */
static void queue_cli_duration(char *out, size_t size, long long secs)
{
	if (secs < 0)
		secs = 0;
	if (secs < 60)
		snprintf(out, size, "%llds", secs);
	else if (secs < 3600)
		snprintf(out, size, "%lldm", secs / 60);
	else if (secs < 86400)
		snprintf(out, size, "%lldh%02lldm", secs / 3600, secs % 3600 / 60);
	else
		snprintf(out, size, "%lldd%02lldh", secs / 86400, secs % 86400 / 3600);
}

/* Printable on one line: control characters and tabs become spaces. */
static void queue_cli_print_clean(FILE *out, const char *s, size_t max)
{
	for (size_t i = 0; s[i] != '\0' && i < max; i++) {
		unsigned char ch = (unsigned char)s[i];
		fputc(ch < 0x20 || ch == 0x7f ? ' ' : ch, out);
	}
}

struct queue_cli_list_ctx {
	FILE *out;
	time_t now;
	bool quarantine_only;
};

static void queue_cli_list_line(void *ctx, const struct queue_list_entry *e)
{
	struct queue_cli_list_ctx *lc = ctx;
	char age[32], next[40];
	if (lc->quarantine_only && e->state != QUEUE_STATE_QUARANTINE)
		return;
	queue_cli_duration(age, sizeof(age), (long long)(lc->now - e->arrival));
	if (e->pending_count == 0 || e->state != QUEUE_STATE_ACTIVE) {
		snprintf(next, sizeof(next), "-");
	} else if (e->next_attempt <= lc->now) {
		snprintf(next, sizeof(next), "now");
	} else {
		char d[32];
		queue_cli_duration(d, sizeof(d), (long long)(e->next_attempt - lc->now));
		snprintf(next, sizeof(next), "in %s", d);
	}
	fprintf(lc->out, "%s\t%s\t%llu\t<", e->id, age, (unsigned long long)e->size);
	queue_cli_print_clean(lc->out, e->sender, 512);
	fprintf(lc->out, ">\t%u\t%s\t%s\t", e->rcpt_count, queue_state_name(e->state), next);
	if (e->last_error != NULL)
		queue_cli_print_clean(lc->out, e->last_error, 512);
	else
		fputc('-', lc->out);
	fputc('\t', lc->out);
	queue_cli_print_clean(lc->out, e->pending_rcpts[0] != '\0' ? e->pending_rcpts : "-", 4096);
	if (e->pending_count > 10)
		fprintf(lc->out, ",...(%u more)", e->pending_count - 10);
	fputc('\n', lc->out);
}

static void queue_cli_time(char *out, size_t size, time_t t)
{
	struct tm tm;
	if (t == 0 || gmtime_r(&t, &tm) == NULL) {
		snprintf(out, size, "-");
		return;
	}
	strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void queue_cli_opt(FILE *out, const char *key, const char *value)
{
	if (value == NULL)
		return;
	fprintf(out, "%s: ", key);
	queue_cli_print_clean(out, value, 1024);
	fputc('\n', out);
}

/* The header section of the spool file (up to the first empty line, at most 64 KiB). */
static void queue_cli_show_headers(struct queue_store *q, const char *id, FILE *out, FILE *err)
{
	int fd = queue_store_open_spool(q, id);
	if (fd < 0) {
		fprintf(err, "mailroute: %s: cannot open the spool file\n", id);
		return;
	}
	char *buf = xmalloc(QUEUE_CLI_MAX_HEADER + 1);
	size_t len = 0;
	while (len < QUEUE_CLI_MAX_HEADER) {
		ssize_t n = pread(fd, buf + len, QUEUE_CLI_MAX_HEADER - len, (off_t)len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	size_t end = len;
	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '\n' && (i + 1 == len || buf[i + 1] == '\n' ||
				       (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n'))) {
			end = i + 1;
			break;
		}
	}
	fputs("headers:\n", out);
	for (size_t i = 0; i < end; i++) {
		unsigned char ch = (unsigned char)buf[i];
		if (ch == '\r')
			continue;
		fputc((ch < 0x20 && ch != '\n' && ch != '\t') || ch == 0x7f ? '?' : ch, out);
	}
	if (end > 0 && buf[end - 1] != '\n')
		fputc('\n', out);
	free(buf);
}

static int queue_cli_show(struct queue_store *q, const char *id, FILE *out, FILE *err)
{
	struct queue_envelope *env;
	char *error = NULL;
	int ret = queue_store_get(q, id, &env, &error);
	if (ret < 0) {
		fprintf(err, "mailroute: %s\n", error);
		free(error);
		return 1;
	}
	if (ret == 0) {
		fprintf(err, "mailroute: no message %s in the queue\n", id);
		return 1;
	}
	static const char *const rets[] = { "-", "FULL", "HDRS" };
	static const char *const bodies[] = { "-", "7BIT", "8BITMIME", "BINARYMIME" };
	char t[64], age[32];
	time_t now = time(NULL);
	queue_cli_time(t, sizeof(t), env->arrival);
	queue_cli_duration(age, sizeof(age), (long long)(now - env->arrival));
	fprintf(out, "id: %s\narrival: %s (%s ago)\nsize: %llu\nstate: %s%s\nsender: <", env->id, t, age,
		(unsigned long long)env->size, queue_state_name(env->state),
		env->bounce_requested ? " (bounce requested)" : "");
	queue_cli_print_clean(out, env->sender, 1024);
	fputs(">\n", out);
	queue_cli_opt(out, "envid", env->envid);
	fprintf(out, "ret: %s\nbody: %s\nsmtputf8: %s\n", rets[env->ret <= QUEUE_RET_HDRS ? env->ret : 0],
		bodies[env->body_type <= QUEUE_BODY_BINARYMIME ? env->body_type : 0],
		env->smtputf8 ? "yes" : "no");
	queue_cli_opt(out, "helo", env->helo);
	queue_cli_opt(out, "client_ip", env->client_ip);
	queue_cli_opt(out, "auth_user", env->auth_user);
	fprintf(out, "recipients: %zu\n", env->rcpt_count);
	for (size_t i = 0; i < env->rcpt_count; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];
		char next[64], last[64];
		if (r->status == QUEUE_RCPT_PENDING && r->next_attempt <= now)
			snprintf(next, sizeof(next), "now");
		else
			queue_cli_time(next, sizeof(next), r->status == QUEUE_RCPT_PENDING ? r->next_attempt : 0);
		queue_cli_time(last, sizeof(last), r->last_attempt);
		fprintf(out, "  %u <", r->idx);
		queue_cli_print_clean(out, r->address, 1024);
		fprintf(out, "> status=%s kind=%s target=", queue_rcpt_status_name(r->status),
			queue_rcpt_kind_name(r->kind));
		queue_cli_print_clean(out, r->target[0] != '\0' ? r->target : "-", 1024);
		if (r->folder != NULL) {
			fputs(" folder=", out);
			queue_cli_print_clean(out, r->folder, 256);
		}
		if (r->orcpt != NULL) {
			fputs(" orcpt=", out);
			queue_cli_print_clean(out, r->orcpt, 1024);
		}
		fprintf(out, " notify=0x%x attempts=%u next=%s last=%s", r->notify, r->attempts, next, last);
		if (r->last_error != NULL) {
			fputs(" error=", out);
			queue_cli_print_clean(out, r->last_error, 1024);
		}
		fputc('\n', out);
	}
	queue_cli_show_headers(q, id, out, err);
	queue_envelope_free(&env);
	return 0;
}

static int queue_cli_stats(struct queue_store *q, FILE *out, FILE *err)
{
	struct queue_store_stats s;
	char *error = NULL;
	if (queue_store_stats(q, &s, &error) < 0) {
		fprintf(err, "mailroute: %s\n", error);
		free(error);
		return 1;
	}
	char age[32] = "-";
	if (s.oldest_arrival != 0)
		queue_cli_duration(age, sizeof(age), (long long)(time(NULL) - s.oldest_arrival));
	fprintf(out, "messages: %u\nactive: %u\nhold: %u\nquarantine: %u\nrecipients_pending: %u\n"
		     "bytes: %llu\noldest: %s\n",
		s.messages, s.active, s.hold, s.quarantine, s.rcpts_pending, (unsigned long long)s.bytes, age);
	return 0;
}

/* 1 when id is in the queue and (for the quarantine commands) quarantined, 0 not, -1 error. */
static int queue_cli_find(struct queue_store *q, const char *id, bool quarantine, char **error_r)
{
	struct queue_envelope *env = NULL;
	int ret = queue_store_get(q, id, &env, error_r);
	if (ret > 0 && quarantine && env->state != QUEUE_STATE_QUARANTINE)
		ret = 0;
	queue_envelope_free(&env);
	return ret;
}

int queue_cli_run(const char *dir, int argc, char **argv, FILE *out, FILE *err)
{
	if (!queue_cli_check(argc, argv, err))
		return 2;
	bool qr = queue_cli_is_quarantine(argv);
	const char *where = qr ? "in quarantine" : "in the queue";
	const char *cmd = argv[1];
	const char *id = argc > 2 ? argv[2] : NULL;
	if (id != NULL && !queue_id_is_valid(id)) {
		fprintf(err, "mailroute: no message %s %s\n", id, where);
		return 1;
	}
	char *error = NULL;
	struct stat st;
	if (stat(dir, &st) < 0 && errno == ENOENT) {
		/* no queue yet (server never started): empty, and nothing is created */
		if (strcmp(cmd, "list") == 0)
			fputs("ID\tAGE\tSIZE\tSENDER\tRCPTS\tSTATE\tNEXT\tLAST_ERROR\tPENDING\n", out);
		else if (strcmp(cmd, "stats") == 0)
			fputs("messages: 0\nactive: 0\nhold: 0\nquarantine: 0\nrecipients_pending: 0\n"
			      "bytes: 0\noldest: -\n", out);
		else if (strcmp(cmd, "flush") == 0 && id == NULL)
			fputs("0 message(s) scheduled for immediate delivery\n", out);
		else {
			fprintf(err, "mailroute: no message %s %s\n", id != NULL ? id : "", where);
			return 1;
		}
		return 0;
	}
	struct queue_store *q = queue_store_open(dir, &error);
	if (q == NULL) {
		fprintf(err, "mailroute: %s\n", error);
		free(error);
		return 1;
	}
	int ret = 0, found = 1;
	if (qr && id != NULL)
		found = queue_cli_find(q, id, true, &error);
	if (found <= 0) {
		/* reported below */
	} else if (strcmp(cmd, "list") == 0) {
		struct queue_cli_list_ctx lc = { .out = out, .now = time(NULL), .quarantine_only = qr };
		fputs("ID\tAGE\tSIZE\tSENDER\tRCPTS\tSTATE\tNEXT\tLAST_ERROR\tPENDING\n", out);
		found = queue_store_list(q, queue_cli_list_line, &lc, &error) < 0 ? -1 : 1;
	} else if (strcmp(cmd, "show") == 0) {
		ret = queue_cli_show(q, id, out, err);
	} else if (strcmp(cmd, "stats") == 0) {
		ret = queue_cli_stats(q, out, err);
	} else if (strcmp(cmd, "delete") == 0) {
		found = queue_store_delete(q, id, &error);
	} else if (strcmp(cmd, "hold") == 0) {
		found = queue_store_set_state(q, id, QUEUE_STATE_HOLD, &error);
	} else if (strcmp(cmd, "release") == 0) {
		found = queue_store_set_state(q, id, QUEUE_STATE_ACTIVE, &error);
	} else if (strcmp(cmd, "bounce") == 0) {
		found = queue_store_bounce(q, id, time(NULL), &error);
	} else if (strcmp(cmd, "flush") == 0) {
		found = queue_store_flush(q, id, time(NULL), &error);
		if (found >= 0 && id == NULL) {
			fprintf(out, "%d message(s) scheduled for immediate delivery\n", found);
			found = 1;
		}
	}
	if (found < 0) {
		fprintf(err, "mailroute: %s\n", error != NULL ? error : "queue error");
		ret = 1;
	} else if (found == 0) {
		fprintf(err, "mailroute: no message %s %s\n", id != NULL ? id : "", where);
		ret = 1;
	}
	free(error);
	queue_store_close(&q);
	return ret;
}

/* ---- mailq (Postfix's output format) ---- */

struct queue_cli_ids {
	char (*ids)[QUEUE_ID_SIZE];
	size_t count, alloc;
};

static void queue_cli_collect(void *ctx, const struct queue_list_entry *e)
{
	struct queue_cli_ids *l = ctx;
	if (l->count == l->alloc) {
		l->alloc = l->alloc == 0 ? 64 : l->alloc * 2;
		l->ids = xreallocarray(l->ids, l->alloc, QUEUE_ID_SIZE);
	}
	memcpy(l->ids[l->count++], e->id, QUEUE_ID_SIZE);
}

int queue_cli_mailq(const char *dir, FILE *out, FILE *err)
{
	struct stat st;
	if (stat(dir, &st) < 0 && errno == ENOENT) {
		fputs("Mail queue is empty\n", out);
		return 0;
	}
	char *error = NULL;
	struct queue_store *q = queue_store_open(dir, &error);
	if (q == NULL) {
		fprintf(err, "mailroute: %s\n", error);
		free(error);
		return 1;
	}
	struct queue_cli_ids l = { 0 };
	if (queue_store_list(q, queue_cli_collect, &l, &error) < 0) {
		fprintf(err, "mailroute: %s\n", error);
		free(error);
		queue_store_close(&q);
		return 1;
	}
	uint64_t bytes = 0;
	size_t shown = 0;
	for (size_t i = 0; i < l.count; i++) {
		struct queue_envelope *env = NULL;
		if (queue_store_get(q, l.ids[i], &env, NULL) <= 0)
			continue; /* delivered meanwhile */
		if (shown++ == 0)
			fprintf(out, "%-17s %8s %-20s  %s\n", "-Queue ID-", "--Size--", "----Arrival Time----",
				"-Sender/Recipient-------");
		char t[32] = "";
		struct tm tm;
		if (localtime_r(&env->arrival, &tm) != NULL)
			strftime(t, sizeof(t), "%a %b %e %H:%M:%S", &tm);
		char flag = env->state == QUEUE_STATE_ACTIVE ? ' ' : '!';
		fprintf(out, "%s%c %8llu %-20s  ", env->id, flag, (unsigned long long)env->size, t);
		queue_cli_print_clean(out, env->sender[0] != '\0' ? env->sender : "MAILER-DAEMON", 512);
		fputc('\n', out);
		const char *last_reason = NULL;
		for (size_t k = 0; k < env->rcpt_count; k++) {
			const struct queue_rcpt *r = &env->rcpts[k];
			if (r->status != QUEUE_RCPT_PENDING)
				continue;
			if (r->last_error != NULL && (last_reason == NULL || strcmp(last_reason, r->last_error) != 0)) {
				fputs("(", out);
				queue_cli_print_clean(out, r->last_error, 512);
				fputs(")\n", out);
				last_reason = r->last_error;
			}
			fprintf(out, "%49s", "");
			queue_cli_print_clean(out, r->address, 512);
			fputc('\n', out);
		}
		fputc('\n', out);
		bytes += env->size;
		queue_envelope_free(&env);
	}
	if (shown == 0)
		fputs("Mail queue is empty\n", out);
	else
		fprintf(out, "-- %llu Kbytes in %zu Request%s.\n", (unsigned long long)((bytes + 1023) / 1024), shown,
			shown == 1 ? "" : "s");
	free(l.ids);
	queue_store_close(&q);
	return 0;
}
