#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "lib-mailbox/maildir.h"
#include "lib-mailbox/mbox.h"
#include "lib/xalloc.h"

static char root[256];

static int setup(void **state)
{
	snprintf(root, sizeof(root), "/tmp/mr-test-mailbox-XXXXXX");
	if (mkdtemp(root) == NULL)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	char *cmd = xasprintf("rm -rf '%s'", root);
	int r = system(cmd);
	free(cmd);
	return r == 0 ? 0 : -1;
}

static const struct {
	const char *fname;
	unsigned flags;
	const char *letters;
} flag_cases[] = {
	{ .fname = "123.abc:2,S", .flags = MAIL_SEEN, .letters = "S" },
	{ .fname = "123.abc:2,DFPRST", .flags = MAIL_FLAGS_ALL, .letters = "DFPRST" },
	{ .fname = "123.abc:2,", .flags = 0, .letters = "" },
	{ .fname = "123.abc", .flags = 0, .letters = "" },
	{ .fname = "123.abc:2,RSa", .flags = MAIL_SEEN | MAIL_ANSWERED, .letters = "RS" },
	{ .fname = "123.abc:2,TF", .flags = MAIL_DELETED | MAIL_FLAGGED, .letters = "FT" },
};

static void test_flags(void **state)
{
	for (size_t i = 0; i < sizeof(flag_cases) / sizeof(flag_cases[0]); i++) {
		assert_int_equal(maildir_flags_from_name(flag_cases[i].fname), flag_cases[i].flags);
		char l[8];
		maildir_flags_letters(flag_cases[i].flags, l);
		assert_string_equal(l, flag_cases[i].letters);
		assert_int_equal(maildir_base_len(flag_cases[i].fname), 7);
	}
}

static const struct {
	const char *name;
	const char *canon;   /* NULL: must be rejected */
	const char *path;    /* relative to root, "" = root */
} name_cases[] = {
	{ .name = "INBOX", .canon = "INBOX", .path = "" },
	{ .name = "inbox", .canon = "INBOX", .path = "" },
	{ .name = "Inbox.Sub", .canon = "INBOX.Sub", .path = "/.INBOX.Sub" },
	{ .name = "Work.2024", .canon = "Work.2024", .path = "/.Work.2024" },
	{ .name = "Sent Items", .canon = "Sent Items", .path = "/.Sent Items" },
	{ .name = "../other", .canon = NULL },
	{ .name = "..", .canon = NULL },
	{ .name = ".hidden", .canon = NULL },
	{ .name = "a..b", .canon = NULL },
	{ .name = "trailing.", .canon = NULL },
	{ .name = "/etc/passwd", .canon = NULL },
	{ .name = "a/b", .canon = NULL },
	{ .name = "%", .canon = NULL },
	{ .name = "*", .canon = NULL },
	{ .name = "caf\xc3\xa9", .canon = NULL },
	{ .name = "", .canon = NULL },
	{ .name = "tab\there", .canon = NULL },
	{ .name = "back\\slash", .canon = NULL },
};

static void test_names(void **state)
{
	for (size_t i = 0; i < sizeof(name_cases) / sizeof(name_cases[0]); i++) {
		char *canon = NULL, *path = NULL;
		const char *err = NULL;
		int r = maildir_name_map("/r", name_cases[i].name, &canon, &path, &err);
		if (name_cases[i].canon == NULL) {
			if (r != -1)
				fail_msg("name '%s' accepted", name_cases[i].name);
			assert_non_null(err);
			continue;
		}
		assert_int_equal(r, 1);
		assert_string_equal(canon, name_cases[i].canon);
		char *want = xasprintf("/r%s", name_cases[i].path);
		assert_string_equal(path, want);
		free(want);
		free(canon);
		free(path);
	}
}

static const struct {
	const char *pattern, *name;
	bool match;
} pattern_cases[] = {
	{ "*", "INBOX", true }, { "%", "Work.2024", false }, { "Work.%", "Work.2024", true },
	{ "Work*", "Work.2024.x", true }, { "Work.%", "Work.2024.x", false }, { "inbox", "INBOX", true },
	{ "S%", "Sent", true }, { "", "INBOX", false }, { "T*h", "Trash", true },
};

static void test_patterns(void **state)
{
	for (size_t i = 0; i < sizeof(pattern_cases) / sizeof(pattern_cases[0]); i++)
		if (maildir_pattern_match(pattern_cases[i].pattern, pattern_cases[i].name) != pattern_cases[i].match)
			fail_msg("pattern %s name %s", pattern_cases[i].pattern, pattern_cases[i].name);
}

static void write_file(const char *path, const char *content)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static void test_folders(void **state)
{
	const char *err;
	char *user = xasprintf("%s/folders", root);
	assert_int_equal(maildir_ensure_root(user, &err), 0);
	char **names;
	size_t count;
	assert_int_equal(maildir_list(user, &names, &count), 0);
	assert_int_equal(count, 6);
	assert_string_equal(names[0], "INBOX");
	assert_string_equal(names[1], "Archive");
	maildir_names_free(names, count);
	assert_int_equal(maildir_create(user, "Work", &err), 1);
	assert_int_equal(maildir_create(user, "Work.Sub", &err), 1);
	assert_int_equal(maildir_create(user, "Work", &err), -1);
	assert_int_equal(maildir_rename(user, "Work", "Job", &err), 1);
	char *p = xasprintf("%s/.Job.Sub/cur", user);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	free(p);
	/* a parent can go; its child stays */
	assert_int_equal(maildir_delete(user, "Job", &err), 1);
	p = xasprintf("%s/.Job.Sub/cur", user);
	assert_int_equal(stat(p, &st), 0);
	free(p);
	assert_int_equal(maildir_delete(user, "Job", &err), -1);
	assert_int_equal(maildir_delete(user, "Job.Sub", &err), 1);
	assert_int_equal(maildir_delete(user, "INBOX", &err), -1);
	assert_int_equal(maildir_delete(user, "../x", &err), -1);
	/* renaming INBOX moves its messages */
	char *msgf = xasprintf("%s/cur/1.x.host:2,S", user);
	write_file(msgf, "Subject: x\n\nx\n");
	assert_int_equal(maildir_rename(user, "INBOX", "Old", &err), 1);
	assert_int_equal(stat(msgf, &st), -1);
	free(msgf);
	msgf = xasprintf("%s/.Old/cur/1.x.host:2,S", user);
	assert_int_equal(stat(msgf, &st), 0);
	free(msgf);
	assert_int_equal(maildir_rename(user, "INBOX", "Old", &err), -1);
	assert_int_equal(maildir_rename(user, "Old", "INBOX", &err), -1);
	assert_int_equal(maildir_subscriptions(user, &names, &count), 0);
	assert_int_equal(count, 6);
	maildir_names_free(names, count);
	free(user);
}

static void test_index(void **state)
{
	const char *err;
	char *user = xasprintf("%s/idx", root);
	assert_int_equal(maildir_ensure_root(user, &err), 0);
	char *f1 = xasprintf("%s/new/1000.a.host", user);
	char *f2 = xasprintf("%s/new/1001.b.host", user);
	char *f3 = xasprintf("%s/cur/999.c.host:2,S", user);
	write_file(f1, "Subject: one\n\nbody\n");
	write_file(f2, "Subject: two\r\n\r\nbody\r\n");
	write_file(f3, "Subject: zero\n\nold\n");
	struct mbox *mb = mbox_open(user, &err);
	assert_non_null(mb);
	uint32_t uidvalidity = mbox_uidvalidity(mb);
	struct mbox_status s;
	assert_int_equal(mbox_get_status(mb, &s), 0);
	assert_int_equal(s.messages, 3);
	assert_int_equal(s.uidnext, 4);
	assert_int_equal(s.unseen, 2);
	/* new/ was emptied into cur/ */
	struct stat st;
	assert_int_equal(stat(f1, &st), -1);
	struct mbox_msg m;
	assert_int_equal(mbox_msg_get(mb, 2, &m), 1); /* sorted by base: 1000.a is UID 2 */
	assert_string_equal(m.base, "1000.a.host");
	assert_int_equal(m.size, 19 + 3);             /* LF -> CRLF */
	struct buf b;
	buf_init(&b, 1000);
	assert_int_equal(mbox_msg_read(mb, &m, &b), 1);
	assert_string_equal(b.data, "Subject: one\r\n\r\nbody\r\n");
	buf_reset(&b);
	assert_int_equal(mbox_msg_read_header(mb, &m, &b), 1);
	assert_string_equal(b.data, "Subject: one\r\n\r\n");
	buf_deinit(&b);
	uint64_t ms0 = mbox_highestmodseq(mb);
	uint64_t modseq;
	assert_int_equal(mbox_store(mb, 2, MAIL_SEEN | MAIL_FLAGGED, "$Label1", 0, &modseq), 1);
	assert_true(modseq > ms0);
	mbox_msg_clear(&m);
	assert_int_equal(mbox_msg_get(mb, 2, &m), 1);
	assert_string_equal(m.fname, "cur/1000.a.host:2,FS");
	assert_string_equal(m.keywords, "$Label1");
	/* UNCHANGEDSINCE below the message's MODSEQ fails */
	assert_int_equal(mbox_store(mb, 2, 0, "", ms0, &modseq), 0);
	/* another program changes flags and deletes a file */
	char *old = xasprintf("%s/%s", user, m.fname);
	char *nw = xasprintf("%s/cur/1000.a.host:2,RS", user);
	assert_int_equal(rename(old, nw), 0);
	mbox_msg_clear(&m);
	assert_int_equal(unlink(f3 + 0), 0);
	assert_int_equal(mbox_sync(mb, true, &err), 0);
	assert_int_equal(mbox_msg_get(mb, 2, &m), 1);
	assert_int_equal(m.flags, MAIL_SEEN | MAIL_ANSWERED);
	assert_string_equal(m.keywords, "$Label1");
	mbox_msg_clear(&m);
	assert_int_equal(mbox_msg_get(mb, 1, &m), 0);
	uint32_t *uids;
	size_t n;
	assert_int_equal(mbox_expunged_since(mb, ms0, &uids, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(uids[0], 1);
	free(uids);
	/* append, copy, expunge */
	uint32_t uid;
	assert_int_equal(mbox_append(mb, "Subject: app\r\n\r\nx\r\n", 19, MAIL_DRAFT, "", 1700000000, &uid, &err), 1);
	assert_int_equal(uid, 4);
	assert_int_equal(maildir_create(user, "Other", &err), 1);
	char *op = xasprintf("%s/.Other", user);
	struct mbox *mb2 = mbox_open(op, &err);
	assert_non_null(mb2);
	assert_int_equal(mbox_copy(mb, 4, mb2, &uid, &err), 1);
	assert_int_equal(uid, 1);
	assert_int_equal(mbox_msg_get(mb2, 1, &m), 1);
	assert_int_equal(m.flags, MAIL_DRAFT);
	assert_int_equal(m.internaldate, 1700000000);
	mbox_msg_clear(&m);
	assert_int_equal(mbox_expunge(mb, 4), 1);
	assert_int_equal(mbox_expunge(mb, 4), 0);
	assert_int_equal(mbox_uids(mb, &uids, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(uids[0], 2);
	assert_int_equal(uids[1], 3);
	free(uids);
	/* a second handle sees the same state */
	struct mbox *mb3 = mbox_open(user, &err);
	assert_non_null(mb3);
	assert_int_equal(mbox_uidvalidity(mb3), uidvalidity);
	assert_int_equal(mbox_get_status(mb3, &s), 0);
	assert_int_equal(s.messages, 2);
	assert_int_equal(s.uidnext, 5);
	mbox_close(&mb3);
	mbox_close(&mb);
	mbox_close(&mb2);
	/* lost index: rebuilt from the files */
	char *idx = xasprintf("%s/%s", user, MBOX_INDEX_NAME);
	char *cmd = xasprintf("rm -f '%s'*", idx);
	assert_int_equal(system(cmd), 0);
	mb = mbox_open(user, &err);
	assert_non_null(mb);
	assert_int_equal(mbox_get_status(mb, &s), 0);
	assert_int_equal(s.messages, 2);
	assert_int_equal(s.unseen, 1);
	mbox_close(&mb);
	/* corrupt index: moved aside and rebuilt */
	cmd = (free(cmd), xasprintf("rm -f '%s'-wal '%s'-shm", idx, idx));
	assert_int_equal(system(cmd), 0);
	write_file(idx, "this is not an sqlite database, not at all, no no no no no no no no no no no no no no");
	mb = mbox_open(user, &err);
	assert_non_null(mb);
	assert_int_equal(mbox_get_status(mb, &s), 0);
	assert_int_equal(s.messages, 2);
	mbox_close(&mb);
	free(cmd);
	free(idx);
	free(op);
	free(old);
	free(nw);
	free(f1);
	free(f2);
	free(f3);
	free(user);
}

/* Our own flag changes do not cost a rescan each, but a foreign change made in the same
 * moment is still found once our burst is 100 ms old. */
static void test_own_changes_and_foreign_change(void **state)
{
	const char *err;
	char *user = xasprintf("%s/own", root);
	assert_int_equal(maildir_ensure_root(user, &err), 0);
	for (int i = 0; i < 3; i++) {
		char *f = xasprintf("%s/new/%d.own%d.host", user, 1700000000 + i, i);
		write_file(f, "Subject: x\n\nbody\n");
		free(f);
	}
	struct mbox *mb = mbox_open(user, &err);
	assert_non_null(mb);
	usleep(150 * 1000);
	assert_int_equal(mbox_sync(mb, false, &err), 0);
	uint64_t modseq;
	assert_int_equal(mbox_store(mb, 1, MAIL_SEEN, "", 0, &modseq), 1);
	/* another program flags message 3 right away */
	struct mbox_msg m;
	assert_int_equal(mbox_msg_get(mb, 3, &m), 1);
	char *from = xasprintf("%s/%s", user, m.fname);
	char *to = xasprintf("%s/cur/%s:2,F", user, m.base);
	assert_int_equal(rename(from, to), 0);
	mbox_msg_clear(&m);
	usleep(150 * 1000);
	assert_int_equal(mbox_sync(mb, false, &err), 0);
	assert_int_equal(mbox_msg_get(mb, 3, &m), 1);
	assert_int_equal(m.flags, MAIL_FLAGGED);
	mbox_msg_clear(&m);
	assert_int_equal(mbox_msg_get(mb, 1, &m), 1);
	assert_int_equal(m.flags, MAIL_SEEN);
	mbox_msg_clear(&m);
	mbox_close(&mb);
	free(from);
	free(to);
	free(user);
}

/* A handle opened later starts from the last scan stored in the index: an unchanged folder
 * is not scanned again (seen here by a rename hidden behind the old cur/ mtime), a changed
 * one is. */
static void test_reopen_skips_unchanged_scan(void **state)
{
	const char *err;
	char *user = xasprintf("%s/reopen", root);
	assert_int_equal(maildir_ensure_root(user, &err), 0);
	for (int i = 0; i < 3; i++) {
		char *f = xasprintf("%s/cur/%d.re%d.host:2,", user, 1700000000 + i, i);
		write_file(f, "Subject: x\n\nbody\n");
		free(f);
	}
	struct timespec old = { 1700000000, 0 };
	struct timespec times[2] = { old, old };
	char *cur = xasprintf("%s/cur", user);
	char *nw = xasprintf("%s/new", user);
	assert_int_equal(utimensat(AT_FDCWD, cur, times, 0), 0);
	assert_int_equal(utimensat(AT_FDCWD, nw, times, 0), 0);
	struct mbox *mb = mbox_open(user, &err);
	assert_non_null(mb);
	mbox_close(&mb);
	/* rename behind the index's back, then put cur/'s mtime back */
	char *from = xasprintf("%s/cur/1700000001.re1.host:2,", user);
	char *to = xasprintf("%s/cur/1700000001.re1.host:2,S", user);
	assert_int_equal(rename(from, to), 0);
	assert_int_equal(utimensat(AT_FDCWD, cur, times, 0), 0);
	mb = mbox_open(user, &err);
	assert_non_null(mb);
	struct mbox_msg m;
	assert_int_equal(mbox_msg_get(mb, 2, &m), 1);
	assert_int_equal(m.flags, 0); /* not scanned */
	mbox_msg_clear(&m);
	mbox_close(&mb);
	/* a real change (new mtime) is scanned on the next open */
	char *f = xasprintf("%s/new/1700000009.re9.host", user);
	write_file(f, "Subject: y\n\nbody\n");
	free(f);
	mb = mbox_open(user, &err);
	assert_non_null(mb);
	assert_int_equal(mbox_msg_get(mb, 2, &m), 1);
	assert_int_equal(m.flags, MAIL_SEEN);
	mbox_msg_clear(&m);
	assert_int_equal(mbox_msg_get(mb, 4, &m), 1);
	assert_string_equal(m.base, "1700000009.re9.host");
	mbox_msg_clear(&m);
	/* batch reads: dense range, sparse set, missing UIDs; cached strings when asked */
	uint32_t ids[] = { 1, 2, 4 };
	char *vals[] = { "(env1)", "(env2)", "(env4)" };
	mbox_cache_set_batch(mb, "env", ids, vals, 3);
	struct mbox_msg_row rows[4];
	uint32_t want[] = { 1, 3, 4, 7 };
	assert_int_equal(mbox_msg_get_batch(mb, want, 4, true, false, rows), 0);
	assert_true(rows[0].found && rows[1].found && rows[2].found && !rows[3].found);
	assert_string_equal(rows[0].env, "(env1)");
	assert_null(rows[1].env);
	assert_string_equal(rows[2].env, "(env4)");
	assert_null(rows[2].bs);
	assert_int_equal(rows[2].m.uid, 4);
	mbox_msg_batch_clear(rows, 4);
	uint32_t sparse[] = { 2, 100000 };
	assert_int_equal(mbox_msg_get_batch(mb, sparse, 2, false, false, rows), 0);
	assert_true(rows[0].found && !rows[1].found);
	assert_null(rows[0].env); /* not asked for */
	assert_string_equal(rows[0].m.fname, "cur/1700000001.re1.host:2,S");
	mbox_msg_batch_clear(rows, 2);
	/* no cache entry for a message that does not exist; an expunge drops the entry */
	mbox_cache_set(mb, 99, "env", "(x)");
	assert_null(mbox_cache_get(mb, 99, "env"));
	assert_int_equal(mbox_expunge(mb, 4), 1);
	assert_null(mbox_cache_get(mb, 4, "env"));
	char *e1 = mbox_cache_get(mb, 1, "env");
	assert_string_equal(e1, "(env1)");
	free(e1);
	mbox_close(&mb);
	/* an index from before the cache table (strings in msg.cache_*) is converted once */
	char *db = xasprintf("%s/%s", user, MBOX_INDEX_NAME);
	sqlite3 *h;
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h, "DELETE FROM cache; DELETE FROM meta WHERE k='cache_table';"
	                                 "UPDATE msg SET cache_env='(old2)', cache_bs='(bs2)' WHERE uid=2;",
	                              NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
	free(db);
	mb = mbox_open(user, &err);
	assert_non_null(mb);
	char *e2 = mbox_cache_get(mb, 2, "env"), *b2 = mbox_cache_get(mb, 2, "bs");
	assert_string_equal(e2, "(old2)");
	assert_string_equal(b2, "(bs2)");
	free(e2);
	free(b2);
	assert_null(mbox_cache_get(mb, 1, "env"));
	mbox_close(&mb);
	free(from);
	free(to);
	free(cur);
	free(nw);
	free(user);
}

/* Two processes append to one folder at once: every message gets its own UID. */
static void test_concurrent_processes(void **state)
{
	const char *err;
	char *user = xasprintf("%s/conc", root);
	assert_int_equal(maildir_ensure_root(user, &err), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	struct mbox *mb = mbox_open(user, &err);
	if (mb == NULL)
		_exit(3);
	for (int i = 0; i < 40; i++) {
		uint32_t uid;
		char m[64];
		int n = snprintf(m, sizeof(m), "Subject: %s %d\r\n\r\nx\r\n", pid == 0 ? "child" : "parent", i);
		if (mbox_append(mb, m, (size_t)n, 0, "", 0, &uid, &err) < 0) {
			if (pid == 0)
				_exit(4);
			fail_msg("append: %s", err);
		}
	}
	mbox_close(&mb);
	if (pid == 0)
		_exit(0);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	mb = mbox_open(user, &err);
	uint32_t *uids;
	size_t n;
	assert_int_equal(mbox_uids(mb, &uids, &n), 0);
	assert_int_equal(n, 80);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(uids[i], i + 1);
	free(uids);
	/* a second open in this process shares the handle */
	struct mbox *again = mbox_open(user, &err);
	assert_ptr_equal(again, mb);
	mbox_close(&again);
	assert_null(again);
	struct mbox_status st;
	assert_int_equal(mbox_get_status(mb, &st), 0);
	assert_int_equal(st.messages, 80);
	mbox_close(&mb);
	free(user);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_patterns),
		cmocka_unit_test(test_folders),
		cmocka_unit_test(test_index),
		cmocka_unit_test(test_concurrent_processes),
		cmocka_unit_test(test_own_changes_and_foreign_change),
		cmocka_unit_test(test_reopen_skips_unchanged_scan),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
