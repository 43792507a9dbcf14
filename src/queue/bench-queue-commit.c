/*
 * bench-queue-commit: throughput of the group committer (not a test).
 *   bench-queue-commit [-c CONCURRENCY] [-n MESSAGES] [-s SIZE] [-w WINDOW_US] [-d DIR] [-1]
 * CONCURRENCY sessions on one libevent loop each write a SIZE-byte spool file
 * through queue_spool_create() and submit it with 2 recipients; each callback
 * starts the session's next message, like SMTP clients waiting for the 250.
 * -1 commits one message per batch synchronously (no group commit) for comparison;
 * -b N commits synchronously in batches of N (no thread, no event loop).
 * -P takes spool files from the committer's pre-created pool.
 * -F syncs batches with syncfs() (QUEUE_SYNC_FS) instead of per-file fdatasync.
 * -S compares only the body durability of a batch (-b N or -c N messages):
 * one file per message vs. one appended segment (see bench_spool_only).
 * DIR (default a new directory under /tmp) is removed afterwards.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/xalloc.h"
#include "queue/queue_committer.h"
#include "queue/queue_store.h"

static bool use_pool;

struct bench {
	struct queue_store *q;
	struct queue_committer *c;
	struct event_base *base;
	char *body;
	size_t size;
	long to_start, done, failed;
	double lat_sum, lat_max;
};

struct session {
	struct bench *b;
	struct timespec t0;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct queue_envelope *bench_msg(struct bench *b, int *fd_r)
{
	struct queue_envelope *env = queue_envelope_new("sender@example.org");
	char *error = NULL;
	if ((b->c != NULL && use_pool ? queue_committer_spool_create(b->c, env->id, fd_r, &error)
				      : queue_spool_create(b->q, env->id, fd_r, &error)) < 0) {
		fprintf(stderr, "%s\n", error);
		exit(1);
	}
	if (write(*fd_r, b->body, b->size) != (ssize_t)b->size) {
		perror("write");
		exit(1);
	}
	queue_envelope_add_rcpt(env, "a@example.test", NULL, 0, QUEUE_RCPT_LOCAL, "/m/a", NULL);
	queue_envelope_add_rcpt(env, "b@example.net", NULL, 0, QUEUE_RCPT_REMOTE, "", NULL);
	return env;
}

static void session_next(struct session *s);

static void session_done(void *arg, int result, const char *error)
{
	struct session *s = arg;
	struct bench *b = s->b;
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double lat = (double)(t1.tv_sec - s->t0.tv_sec) + (double)(t1.tv_nsec - s->t0.tv_nsec) / 1e9;
	b->lat_sum += lat;
	if (lat > b->lat_max)
		b->lat_max = lat;
	b->done++;
	if (result < 0) {
		b->failed++;
		fprintf(stderr, "commit failed: %s\n", error);
	}
	if (b->to_start > 0)
		session_next(s);
	else if (queue_committer_pending(b->c) == 0)
		event_base_loopbreak(b->base);
}

static void session_next(struct session *s)
{
	struct bench *b = s->b;
	int fd;
	struct queue_envelope *env = bench_msg(b, &fd);
	b->to_start--;
	clock_gettime(CLOCK_MONOTONIC, &s->t0);
	queue_committer_submit(b->c, env, fd, session_done, s);
}

/*
 * -S: only the part where "one file per message" and a log-structured spool
 * differ: making the bodies of a batch durable. (a) N new files, written,
 * writeback started, fdatasync each, one fsync of the directory; (b) N new
 * files and one syncfs() of the whole file system; (c) N bodies appended to
 * one segment file, one fdatasync. The envelope transaction is the
 * same in both designs and left out.
 */
static void bench_spool_only(const char *dir, long messages, long batch, const char *body, size_t size)
{
	char *sdir = xasprintf("%s/spool-only", dir);
	if (mkdir(sdir, 0700) < 0 && errno != EEXIST) {
		perror(sdir);
		exit(1);
	}
	int dfd = open(sdir, O_RDONLY | O_DIRECTORY);
	int *fds = xcalloc((size_t)batch, sizeof(int));
	double t0 = now_s();
	long seq = 0;
	for (long i = 0; i < messages; i += batch) {
		long n = messages - i < batch ? messages - i : batch;
		for (long k = 0; k < n; k++) {
			char name[32];
			snprintf(name, sizeof(name), "f%ld", seq++);
			fds[k] = openat(dfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (fds[k] < 0 || write(fds[k], body, size) != (ssize_t)size) {
				perror("spool-only write");
				exit(1);
			}
			(void)sync_file_range(fds[k], 0, 0, SYNC_FILE_RANGE_WRITE);
		}
		for (long k = 0; k < n; k++) {
			(void)fdatasync(fds[k]);
			close(fds[k]);
		}
		(void)fsync(dfd);
	}
	double files_s = now_s() - t0;
	t0 = now_s();
	for (long i = 0; i < messages; i += batch) {
		long n = messages - i < batch ? messages - i : batch;
		for (long k = 0; k < n; k++) {
			char name[32];
			snprintf(name, sizeof(name), "f%ld", seq++);
			fds[k] = openat(dfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (fds[k] < 0 || write(fds[k], body, size) != (ssize_t)size) {
				perror("spool-only write");
				exit(1);
			}
		}
		(void)syncfs(dfd);
		for (long k = 0; k < n; k++)
			close(fds[k]);
	}
	double syncfs_s = now_s() - t0;
	int seg = openat(dfd, "segment", O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	(void)fsync(dfd);
	t0 = now_s();
	for (long i = 0; i < messages; i += batch) {
		long n = messages - i < batch ? messages - i : batch;
		for (long k = 0; k < n; k++)
			if (write(seg, body, size) != (ssize_t)size) {
				perror("segment write");
				exit(1);
			}
		(void)fdatasync(seg);
	}
	double seg_s = now_s() - t0;
	close(seg);
	close(dfd);
	double nb = (double)messages / (double)batch;
	printf("mode=spool-only batch=%ld size=%zu messages=%ld files_msgs_per_s=%.0f syncfs_msgs_per_s=%.0f "
	       "segment_msgs_per_s=%.0f files_ms_per_batch=%.2f syncfs_ms_per_batch=%.2f "
	       "segment_ms_per_batch=%.2f\n",
	       batch, size, messages, (double)messages / files_s, (double)messages / syncfs_s,
	       (double)messages / seg_s, files_s * 1000 / nb, syncfs_s * 1000 / nb, seg_s * 1000 / nb);
	free(fds);
	free(sdir);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

int main(int argc, char **argv)
{
	long concurrency = 20, messages = 2000, size = 1024, window = 0;
	bool sync_mode = false, spool_only = false, use_syncfs = false;
	long sync_batch = 1;
	const char *dir_arg = NULL;
	int opt;
	while ((opt = getopt(argc, argv, "c:n:s:w:d:1b:SFP")) != -1) {
		switch (opt) {
		case 'c': concurrency = strtol(optarg, NULL, 10); break;
		case 'n': messages = strtol(optarg, NULL, 10); break;
		case 's': size = strtol(optarg, NULL, 10); break;
		case 'w': window = strtol(optarg, NULL, 10); break;
		case 'd': dir_arg = optarg; break;
		case '1': sync_mode = true; break;
		case 'S': spool_only = true; break;
		case 'F': use_syncfs = true; break;
		case 'P': use_pool = true; break;
		case 'b': sync_mode = true; sync_batch = strtol(optarg, NULL, 10); break;
		default:
			fprintf(stderr, "usage: %s [-c N] [-n N] [-s BYTES] [-w US] [-d DIR] [-1] [-b N] [-S] [-F] [-P]\n", argv[0]);
			return 2;
		}
	}
	if (sync_batch < 1 || concurrency < 1 || messages < 1 || size < 0 || window < 0)
		return 2;
	log_set_level(LOG_LEVEL_WARN);
	char tmpl[] = "/tmp/bench-queue-XXXXXX";
	char *root = dir_arg != NULL ? xstrdup(dir_arg) : xstrdup(mkdtemp(tmpl));
	char *dir = xasprintf("%s/queue", root);
	struct bench b = { .size = (size_t)size, .to_start = messages };
	b.body = xmalloc(b.size + 1);
	for (size_t i = 0; i < b.size; i++)
		b.body[i] = (i % 78 == 77) ? '\n' : (char)('a' + i % 26);
	char *error = NULL;
	b.q = queue_store_open(dir, &error);
	if (b.q == NULL) {
		fprintf(stderr, "%s\n", error);
		return 1;
	}
	if (use_syncfs && queue_store_set_sync_method(b.q, QUEUE_SYNC_FS) < 0) {
		fprintf(stderr, "syncfs refused on this kernel\n");
		return 1;
	}
	if (spool_only) {
		if (mkdir(root, 0700) < 0 && errno != EEXIST) {
			perror(root);
			return 1;
		}
		bench_spool_only(root, messages, sync_batch > 1 ? sync_batch : concurrency, b.body, b.size);
		if (dir_arg == NULL)
			nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
		free(dir);
		free(root);
		free(b.body);
		return 0;
	}
	double t0 = now_s();
	struct queue_committer_stats st = { 0 };
	if (sync_mode) {
		struct queue_commit_item *items = xcalloc((size_t)sync_batch, sizeof(*items));
		for (long i = 0; i < messages; i += sync_batch) {
			long n = messages - i < sync_batch ? messages - i : sync_batch;
			for (long k = 0; k < n; k++)
				items[k].env = bench_msg(&b, &items[k].fd);
			double m0 = now_s();
			b.failed += n - (long)queue_store_commit_batch(b.q, items, (size_t)n);
			double lat = now_s() - m0;
			b.lat_sum += lat * (double)n;
			if (lat > b.lat_max)
				b.lat_max = lat;
			for (long k = 0; k < n; k++) {
				free(items[k].error);
				queue_envelope_free(&items[k].env);
			}
			b.done += n;
			st.batches++;
		}
		free(items);
		st.fsyncs = queue_store_fsync_count(b.q);
		queue_store_commit_times(b.q, &st.file_sync_us, &st.dir_sync_us, &st.db_us);
		st.max_batch = (uint64_t)sync_batch;
		st.messages = (uint64_t)(b.done - b.failed);
	} else {
		b.base = event_base_new();
		b.c = queue_committer_new(b.q, b.base, (unsigned)window, &error);
		if (b.c == NULL) {
			fprintf(stderr, "%s\n", error);
			return 1;
		}
		if (use_syncfs)
			(void)queue_committer_set_sync_method(b.c, QUEUE_SYNC_FS);
		struct session *sessions = xcalloc((size_t)concurrency, sizeof(*sessions));
		for (long i = 0; i < concurrency && b.to_start > 0; i++) {
			sessions[i].b = &b;
			session_next(&sessions[i]);
		}
		event_base_dispatch(b.base);
		queue_committer_get_stats(b.c, &st);
		queue_committer_free(&b.c);
		event_base_free(b.base);
		free(sessions);
	}
	double elapsed = now_s() - t0;
	printf("pool=%d sync=%s mode=%s concurrency=%ld size=%ld window_us=%ld messages=%ld failed=%ld seconds=%.3f "
	       "msgs_per_s=%.0f batches=%llu avg_batch=%.1f max_batch=%llu fsyncs=%llu "
	       "lat_avg_ms=%.2f lat_max_ms=%.2f file_sync_ms=%.0f dir_sync_ms=%.0f db_ms=%.0f\n",
	       use_pool, use_syncfs ? "syncfs" : "files", sync_mode ? "sync" : "group", sync_mode ? 1 : concurrency, size, window, b.done, b.failed,
	       elapsed, (double)b.done / elapsed, (unsigned long long)st.batches,
	       st.batches > 0 ? (double)st.messages / (double)st.batches : 0.0,
	       (unsigned long long)st.max_batch, (unsigned long long)st.fsyncs,
	       b.done > 0 ? b.lat_sum / (double)b.done * 1000 : 0.0, b.lat_max * 1000,
	       (double)st.file_sync_us / 1000, (double)st.dir_sync_us / 1000, (double)st.db_us / 1000);
	queue_store_close(&b.q);
	if (dir_arg == NULL)
		nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
	free(root);
	free(b.body);
	return b.failed > 0 ? 1 : 0;
}
