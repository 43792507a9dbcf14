#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/fs.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "deliver/maildir.h"
#include "lib/xalloc.h"

static char base[64];

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	snprintf(base, sizeof(base), "/tmp/test-maildir-XXXXXX");
	assert_non_null(mkdtemp(base));
	return 0;
}

static int teardown(void **state)
{
	char *mnt = xasprintf("%s/small", base);
	(void)umount2(mnt, MNT_DETACH);
	free(mnt);
	nftw(base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* A message in an unlinked temp file, offset at the end (must not matter). */
static int msg_fd(const char *content, size_t len)
{
	char path[96];
	snprintf(path, sizeof(path), "%s/msg-XXXXXX", base);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	return fd;
}

static char *read_file(const char *path, size_t *len_r)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	char *buf = xmalloc((size_t)st.st_size + 1);
	assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
	buf[st.st_size] = '\0';
	close(fd);
	*len_r = (size_t)st.st_size;
	return buf;
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static bool is_dir_0700(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700;
}

static void test_inbox_delivery(void **state)
{
	char *root = xasprintf("%s/mail/example.test/demo", base);
	const char *body = "Subject: hi\r\n\r\nhello\r\n";
	const char *pre = "Return-Path: <a@b>\r\nDelivered-To: demo@example.test\r\n";
	int fd = msg_fd(body, strlen(body));
	char *error = NULL;
	assert_int_equal(maildir_deliver(root, NULL, fd, pre, strlen(pre), "1700000000.QABCR0.host", &error), 1);
	assert_null(error);
	char *p = xasprintf("%s/new/1700000000.QABCR0.host", root);
	size_t len;
	char *got = read_file(p, &len);
	assert_non_null(got);
	char *want = xasprintf("%s%s", pre, body);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(got, want, len);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	for (const char *sub = "tmp"; sub != NULL; sub = strcmp(sub, "tmp") == 0 ? "new" : strcmp(sub, "new") == 0 ? "cur" : NULL) {
		char *d = xasprintf("%s/%s", root, sub);
		assert_true(is_dir_0700(d));
		free(d);
	}
	char *tmp = xasprintf("%s/tmp", root);
	assert_int_equal(count_entries(tmp), 0);
	assert_true(is_dir_0700(root));
	/* "INBOX" in any case is the root too */
	assert_int_equal(maildir_deliver(root, "inbox", fd, NULL, 0, NULL, &error), 1);
	char *new_dir = xasprintf("%s/new", root);
	assert_int_equal(count_entries(new_dir), 2);
	close(fd);
	free(new_dir); free(tmp); free(want); free(got); free(p); free(root);
}

static void test_folders(void **state)
{
	static const struct { const char *folder; const char *dir; } cases[] = {
		{ .folder = "Junk", .dir = ".Junk" },
		{ .folder = "a/b", .dir = ".a.b" },
		{ .folder = "Archive.2024", .dir = ".Archive.2024" },
		{ .folder = "Sent Items", .dir = ".Sent Items" },
		{ .folder = "R&D", .dir = ".R&-D" },
		{ .folder = "\xc3\x89t\xc3\xa9", .dir = ".&AMk-t&AOk-" },              /* Été */
		{ .folder = "\xe5\x8f\xb0\xe5\x8c\x97/x", .dir = ".&U,BTFw-.x" },    /* 台北/x (RFC 3501) */
		{ .folder = "\xf0\x9f\x93\xa7", .dir = ".&2D3c5w-" },                 /* U+1F4E7 surrogates */
	};
	char *root = xasprintf("%s/u1", base);
	int fd = msg_fd("x\r\n", 3);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *error = NULL;
		assert_int_equal(maildir_deliver(root, cases[i].folder, fd, NULL, 0, NULL, &error), 1);
		char *d = xasprintf("%s/%s", root, cases[i].dir);
		char *n = xasprintf("%s/new", d);
		char *mf = xasprintf("%s/maildirfolder", d);
		assert_true(is_dir_0700(d));
		assert_int_equal(count_entries(n), 1);
		assert_int_equal(access(mf, F_OK), 0);
		free(d); free(n); free(mf);
	}
	/* the root is a complete Maildir as well */
	char *rn = xasprintf("%s/new", root);
	assert_int_equal(count_entries(rn), 0);
	free(rn);
	close(fd);
	free(root);
}

static void test_invalid_folders(void **state)
{
	static const char *const bad[] = { "..", "a/../b", ".hidden", "a/", "/a", "a//b", "a.", "a\nb",
					   "a\x7f", "a./b", "a*", "a%", "a\\b", "\xc3", "\xc3(", "\xed\xa0\x80",
					   "\xe0\x80\xaf", "\xff" };
	char *root = xasprintf("%s/u2", base);
	int fd = msg_fd("x\r\n", 3);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *error = NULL;
		errno = 0;
		assert_int_equal(maildir_deliver(root, bad[i], fd, NULL, 0, NULL, &error), -1);
		assert_int_equal(errno, EINVAL);
		assert_false(maildir_error_is_temporary(errno));
		assert_non_null(error);
		free(error);
	}
	char long_name[300];
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_int_equal(maildir_deliver(root, long_name, fd, NULL, 0, NULL, NULL), -1);
	/* short in UTF-8 (200 bytes) but longer than 255 once encoded */
	char wide[201];
	for (int i = 0; i < 200; i += 2)
		memcpy(wide + i, "\xc3\xa9", 2);
	wide[200] = '\0';
	errno = 0;
	assert_int_equal(maildir_deliver(root, wide, fd, NULL, 0, NULL, NULL), -1);
	assert_int_equal(errno, ENAMETOOLONG);
	/* invalid unique names */
	static const char *const bad_unique[] = { "", "a/b", "a:2,S", ".x", "a b" };
	for (size_t i = 0; i < sizeof(bad_unique) / sizeof(bad_unique[0]); i++) {
		errno = 0;
		assert_int_equal(maildir_deliver(root, NULL, fd, NULL, 0, bad_unique[i], NULL), -1);
		assert_int_equal(errno, EINVAL);
	}
	/* nothing was created for rejected input */
	assert_int_equal(access(root, F_OK), -1);
	close(fd);
	free(root);
}

static void test_duplicates(void **state)
{
	char *root = xasprintf("%s/u3", base);
	int fd = msg_fd("body\r\n", 6);
	const char *u = "1700000001.QXYZR1.host";
	char *error = NULL;
	assert_int_equal(maildir_deliver(root, NULL, fd, NULL, 0, u, &error), 1);
	assert_int_equal(maildir_deliver(root, NULL, fd, NULL, 0, u, &error), 0);
	char *new_dir = xasprintf("%s/new", root);
	assert_int_equal(count_entries(new_dir), 1);

	/* an IMAP client moved it to cur/ with flags: probed names and a scan both find it */
	static const char *const flags[] = { ":2,", ":2,S", ":2,DS", ":2,abc" };
	char *from = xasprintf("%s/new/%s", root, u);
	char *prev = xstrdup(from);
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		char *to = xasprintf("%s/cur/%s%s", root, u, flags[i]);
		assert_int_equal(rename(prev, to), 0);
		assert_int_equal(maildir_deliver(root, NULL, fd, NULL, 0, u, &error), 0);
		free(prev);
		prev = to;
	}
	assert_int_equal(count_entries(new_dir), 0);
	/* a different recipient index is a different message */
	assert_int_equal(maildir_deliver(root, NULL, fd, NULL, 0, "1700000001.QXYZR2.host", &error), 1);
	assert_int_equal(count_entries(new_dir), 1);
	/* a prefix of another name is not a duplicate */
	assert_int_equal(maildir_deliver(root, NULL, fd, NULL, 0, "1700000001.QXYZR", &error), 1);
	assert_int_equal(count_entries(new_dir), 2);
	/* the same in a folder */
	assert_int_equal(maildir_deliver(root, "Junk", fd, NULL, 0, u, &error), 1);
	assert_int_equal(maildir_deliver(root, "Junk", fd, NULL, 0, u, &error), 0);
	assert_null(error);
	free(prev); free(from); free(new_dir);
	close(fd);
	free(root);
}

static void test_stale_tmp_and_large(void **state)
{
	char *root = xasprintf("%s/u4", base);
	size_t len = 300000 + 17; /* several copy buffers, not a multiple */
	char *big = xmalloc(len);
	for (size_t i = 0; i < len; i++)
		big[i] = (char)('a' + i % 26);
	int fd = msg_fd(big, len);
	const char *u = "1700000002.QBIGR0.host";
	char *tmpd = xasprintf("%s/tmp", root);
	assert_int_equal(mkdir(root, 0700), 0);
	assert_int_equal(mkdir(tmpd, 0700), 0);
	char *stale = xasprintf("%s/tmp/%s", root, u);
	int sfd = open(stale, O_WRONLY | O_CREAT, 0600);
	assert_int_equal(write(sfd, "garbage", 7), 7);
	close(sfd);
	char *error = NULL;
	assert_int_equal(maildir_deliver(root, NULL, fd, "H: v\r\n", 6, u, &error), 1);
	char *p = xasprintf("%s/new/%s", root, u);
	size_t got_len;
	char *got = read_file(p, &got_len);
	assert_int_equal(got_len, len + 6);
	assert_memory_equal(got, "H: v\r\n", 6);
	assert_memory_equal(got + 6, big, len);
	assert_int_equal(count_entries(tmpd), 0);
	free(got); free(p); free(stale); free(tmpd); free(big);
	close(fd);
	free(root);
}

static void test_fail_not_a_directory(void **state)
{
	/* root/tmp is a regular file: fails even as root; temporary; nothing left behind */
	char *root = xasprintf("%s/u5", base);
	assert_int_equal(mkdir(root, 0700), 0);
	char *tmp = xasprintf("%s/tmp", root);
	int tfd = open(tmp, O_WRONLY | O_CREAT, 0600);
	assert_true(tfd >= 0);
	close(tfd);
	int fd = msg_fd("x\r\n", 3);
	char *error = NULL;
	errno = 0;
	assert_int_equal(maildir_deliver(root, NULL, fd, NULL, 0, "u.Q1R0.h", &error), -1);
	int e = errno;
	assert_int_equal(e, ENOTDIR);
	assert_true(maildir_error_is_temporary(e));
	assert_non_null(error);
	assert_non_null(strstr(error, "tmp"));
	free(error);
	/* the mail root itself is a file */
	char *root2 = xasprintf("%s/u5/tmp/sub", base);
	assert_int_equal(maildir_deliver(root2, NULL, fd, NULL, 0, NULL, NULL), -1);
	assert_true(maildir_error_is_temporary(errno));
	close(fd);
	free(root2); free(tmp); free(root);
}

static void test_fail_immutable_new(void **state)
{
	/* new/ immutable (chattr +i): the rename fails with EPERM even for root */
	char *root = xasprintf("%s/u6", base);
	int fd = msg_fd("x\r\n", 3);
	assert_int_equal(maildir_deliver(root, NULL, fd, NULL, 0, NULL, NULL), 1);
	char *new_dir = xasprintf("%s/new", root);
	int dfd = open(new_dir, O_RDONLY | O_DIRECTORY);
	assert_true(dfd >= 0);
	int flags = 0;
	if (ioctl(dfd, FS_IOC_GETFLAGS, &flags) < 0) {
		close(dfd);
		free(new_dir); free(root); close(fd);
		skip(); /* file system without attributes */
	}
	int iflags = flags | FS_IMMUTABLE_FL;
	if (ioctl(dfd, FS_IOC_SETFLAGS, &iflags) < 0) {
		close(dfd);
		free(new_dir); free(root); close(fd);
		skip(); /* no CAP_LINUX_IMMUTABLE */
	}
	char *error = NULL;
	errno = 0;
	int r = maildir_deliver(root, NULL, fd, NULL, 0, "u.Q2R0.h", &error);
	int e = errno;
	(void)ioctl(dfd, FS_IOC_SETFLAGS, &flags);
	close(dfd);
	assert_int_equal(r, -1);
	assert_true(e == EPERM || e == EACCES);
	assert_true(maildir_error_is_temporary(e));
	free(error);
	char *tmp = xasprintf("%s/tmp", root);
	assert_int_equal(count_entries(tmp), 0);      /* tmp file removed */
	assert_int_equal(count_entries(new_dir), 1);  /* only the first message */
	/* after the admin fixes it, the retry delivers */
	assert_int_equal(maildir_deliver(root, NULL, fd, NULL, 0, "u.Q2R0.h", NULL), 1);
	close(fd);
	free(tmp); free(new_dir); free(root);
}

static void test_fail_disk_full(void **state)
{
	/* a small tmpfs filled up: the write fails with ENOSPC, temporary, no tmp file left */
	char *mnt = xasprintf("%s/small", base);
	assert_int_equal(mkdir(mnt, 0700), 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=256k") < 0) {
		free(mnt);
		skip(); /* not allowed to mount here */
	}
	char *root = xasprintf("%s/u7", mnt);
	size_t len = 512 * 1024; /* larger than the file system */
	char *big = xcalloc(1, len);
	memset(big, 'y', len);
	int fd = msg_fd(big, len);
	char *error = NULL;
	errno = 0;
	int r = maildir_deliver(root, "Junk", fd, "H: v\r\n", 6, "u.Q3R0.h", &error);
	int e = errno;
	char *tmp = xasprintf("%s/.Junk/tmp", root);
	char *newd = xasprintf("%s/.Junk/new", root);
	int tmp_entries = count_entries(tmp), new_entries = count_entries(newd);
	/* the partial file was removed, so a small message fits again */
	int small = msg_fd("small\r\n", 7);
	int r2 = maildir_deliver(root, "Junk", small, "H: v\r\n", 6, NULL, NULL);
	close(small);
	(void)umount2(mnt, MNT_DETACH);
	assert_int_equal(r, -1);
	assert_int_equal(e, ENOSPC);
	assert_true(maildir_error_is_temporary(e));
	assert_non_null(strstr(error, "write"));
	assert_int_equal(tmp_entries, 0);
	assert_int_equal(new_entries, 0);
	assert_int_equal(r2, 1);
	free(error); free(tmp); free(newd); free(big); free(root); free(mnt);
	close(fd);
}

static void test_temporary_table(void **state)
{
	static const struct { int err; bool temp; } cases[] = {
		{ ENOSPC, true }, { EDQUOT, true }, { EIO, true }, { EACCES, true }, { EPERM, true },
		{ EROFS, true }, { ENOTDIR, true }, { EMFILE, true },
		{ EINVAL, false }, { EFBIG, false }, { ENAMETOOLONG, false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(maildir_error_is_temporary(cases[i].err), cases[i].temp);
}

static void test_folder_path(void **state)
{
	char *p = NULL;
	assert_int_equal(maildir_folder_path("/m/u/", "a/b", &p, NULL), 0);
	assert_string_equal(p, "/m/u/.a.b");
	free(p);
	assert_int_equal(maildir_folder_path("/m/u", "", &p, NULL), 0);
	assert_string_equal(p, "/m/u");
	free(p);
	assert_int_equal(maildir_folder_path("/m/u", "../x", &p, NULL), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inbox_delivery),
		cmocka_unit_test(test_folders),
		cmocka_unit_test(test_invalid_folders),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_stale_tmp_and_large),
		cmocka_unit_test(test_fail_not_a_directory),
		cmocka_unit_test(test_fail_immutable_new),
		cmocka_unit_test(test_fail_disk_full),
		cmocka_unit_test(test_temporary_table),
		cmocka_unit_test(test_folder_path),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
