#include "deliver/maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "lib/xalloc.h"

#define MAILDIR_COPY_BUF 65536
#define MAILDIR_UNIQUE_MAX 200

/* Sets *error_r and errno = err; returns -1. */
static int maildir_fail(char **error_r, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int maildir_fail(char **error_r, int err, const char *fmt, ...)
{
	if (error_r != NULL) {
		va_list ap;
		va_start(ap, fmt);
		char *msg = xvasprintf(fmt, ap);
		va_end(ap);
		*error_r = xasprintf("maildir: %s: %s", msg, strerror(err));
		free(msg);
	}
	errno = err;
	return -1;
}

bool maildir_error_is_temporary(int err)
{
	switch (err) {
	case EINVAL:
	case ENAMETOOLONG:
	case EFBIG:
		return false;
	default:
		return true;
	}
}

static bool maildir_folder_valid(const char *folder)
{
	size_t len = strlen(folder);
	if (len == 0 || len > MAILDIR_FOLDER_MAX)
		return false;
	if (folder[0] == '.' || folder[0] == '/' || folder[len - 1] == '.' || folder[len - 1] == '/')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)folder[i];
		if (c < 0x20 || c == 0x7f || c == '\\' || c == '%' || c == '*')
			return false;
		bool sep = c == '.' || c == '/';
		bool next_sep = i + 1 < len && (folder[i + 1] == '.' || folder[i + 1] == '/');
		if (sep && next_sep) /* "..", "//", "./", "/." : empty or parent levels */
			return false;
	}
	return true;
}

/* Next code point of UTF-8 s (advancing *i); -1 on invalid UTF-8. */
static long maildir_utf8_next(const unsigned char *s, size_t len, size_t *i)
{
	unsigned char c = s[*i];
	int n;
	long cp;
	if (c < 0x80) {
		(*i)++;
		return c;
	} else if (c >= 0xc2 && c <= 0xdf) {
		n = 1;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 2;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3;
		cp = c & 0x07;
	} else {
		return -1;
	}
	if (*i + (size_t)n >= len)
		return -1;
	for (int k = 1; k <= n; k++) {
		unsigned char cc = s[*i + (size_t)k];
		if ((cc & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (cc & 0x3f);
	}
	if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*i += (size_t)n + 1;
	return cp;
}

static void maildir_b64_flush(char *out, size_t *o, const unsigned char *u16, size_t n)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
	out[(*o)++] = '&';
	for (size_t k = 0; k < n; k += 3) {
		unsigned v = (unsigned)u16[k] << 16;
		if (k + 1 < n)
			v |= (unsigned)u16[k + 1] << 8;
		if (k + 2 < n)
			v |= u16[k + 2];
		out[(*o)++] = b64[(v >> 18) & 63];
		out[(*o)++] = b64[(v >> 12) & 63];
		if (k + 1 < n)
			out[(*o)++] = b64[(v >> 6) & 63];
		if (k + 2 < n)
			out[(*o)++] = b64[v & 63];
	}
	out[(*o)++] = '-';
}

/*
 * UTF-8 name -> IMAP modified UTF-7 (RFC 3501 5.1.3), the on-disk form the IMAP
 * side (lib-mailbox) uses; '/' becomes the '.' delimiter. NULL on invalid UTF-8.
 */
static char *maildir_folder_encode(const char *folder)
{
	size_t len = strlen(folder);
	const unsigned char *s = (const unsigned char *)folder;
	/* worst case: every char a 4-byte sequence -> 2 UTF-16 units -> ~6 b64 chars + "&-" */
	char *out = xmalloc(len * 4 + 8);
	unsigned char *u16 = xmalloc(len * 2 + 4);
	size_t o = 0, nu = 0, i = 0;
	while (i < len) {
		long cp = maildir_utf8_next(s, len, &i);
		if (cp < 0) {
			free(out);
			free(u16);
			return NULL;
		}
		if (cp >= 0x20 && cp <= 0x7e) {
			if (nu > 0)
				maildir_b64_flush(out, &o, u16, nu);
			nu = 0;
			if (cp == '&') {
				out[o++] = '&';
				out[o++] = '-';
			} else {
				out[o++] = cp == '/' ? '.' : (char)cp;
			}
			continue;
		}
		if (cp >= 0x10000) {
			long v = cp - 0x10000;
			unsigned hi = 0xd800u | (unsigned)(v >> 10), lo = 0xdc00u | (unsigned)(v & 0x3ff);
			u16[nu++] = (unsigned char)(hi >> 8);
			u16[nu++] = (unsigned char)hi;
			u16[nu++] = (unsigned char)(lo >> 8);
			u16[nu++] = (unsigned char)lo;
		} else {
			u16[nu++] = (unsigned char)(cp >> 8);
			u16[nu++] = (unsigned char)cp;
		}
	}
	if (nu > 0)
		maildir_b64_flush(out, &o, u16, nu);
	out[o] = '\0';
	free(u16);
	return out;
}

int maildir_folder_path(const char *root, const char *folder, char **path_r, char **error_r)
{
	if (folder == NULL || folder[0] == '\0' || strcasecmp(folder, "INBOX") == 0) {
		*path_r = xstrdup(root);
		return 0;
	}
	if (!maildir_folder_valid(folder))
		return maildir_fail(error_r, EINVAL, "invalid folder name");
	char *enc = maildir_folder_encode(folder);
	if (enc == NULL)
		return maildir_fail(error_r, EINVAL, "folder name is not UTF-8");
	if (strlen(enc) > MAILDIR_FOLDER_MAX) {
		free(enc);
		return maildir_fail(error_r, ENAMETOOLONG, "folder name too long");
	}
	size_t rlen = strlen(root);
	while (rlen > 1 && root[rlen - 1] == '/')
		rlen--;
	*path_r = xasprintf("%.*s/.%s", (int)rlen, root, enc);
	free(enc);
	return 0;
}

static void maildir_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

/* mkdir -p with 0700, fsyncing the parent of every directory it creates. 0 or -1 (errno). */
static int maildir_mkdir_p(const char *path)
{
	struct stat st;
	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return 0;
		errno = ENOTDIR;
		return -1;
	}
	if (errno != ENOENT)
		return -1;
	char *copy = xstrdup(path);
	size_t len = strlen(copy);
	while (len > 1 && copy[len - 1] == '/')
		copy[--len] = '\0';
	char *slash = strrchr(copy, '/');
	char *parent = NULL;
	if (slash != NULL) {
		parent = slash == copy ? xstrdup("/") : xstrndup(copy, (size_t)(slash - copy));
		if (maildir_mkdir_p(parent) < 0) {
			int e = errno;
			free(parent);
			free(copy);
			errno = e;
			return -1;
		}
	}
	int ret = 0;
	if (mkdir(copy, 0700) == 0) {
		maildir_fsync_dir(parent != NULL ? parent : ".");
	} else if (errno == EEXIST && stat(copy, &st) == 0 && S_ISDIR(st.st_mode)) {
		ret = 0; /* a concurrent delivery created it */
	} else {
		if (errno == EEXIST)
			errno = ENOTDIR;
		ret = -1;
	}
	int e = errno;
	free(parent);
	free(copy);
	errno = e;
	return ret;
}

/* dir/{tmp,new,cur} (+ maildirfolder for a folder). 0 or -1 with *error_r. */
static int maildir_ensure(const char *dir, bool is_folder, char **error_r)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	if (maildir_mkdir_p(dir) < 0)
		return maildir_fail(error_r, errno, "mkdir %s", dir);
	for (size_t i = 0; i < 3; i++) {
		char *p = xasprintf("%s/%s", dir, subs[i]);
		int r = maildir_mkdir_p(p);
		int e = errno;
		if (r < 0) {
			maildir_fail(error_r, e, "mkdir %s", p);
			free(p);
			return -1;
		}
		free(p);
	}
	if (is_folder) {
		char *p = xasprintf("%s/maildirfolder", dir);
		if (access(p, F_OK) < 0) {
			int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
			if (fd < 0) {
				maildir_fail(error_r, errno, "create %s", p);
				free(p);
				return -1;
			}
			close(fd);
			maildir_fsync_dir(dir);
		}
		free(p);
	}
	return 0;
}

static bool maildir_unique_valid(const char *u)
{
	size_t len = strlen(u);
	if (len == 0 || len > MAILDIR_UNIQUE_MAX || u[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)u[i];
		if (c <= 0x20 || c == 0x7f || c == '/' || c == ':')
			return false;
	}
	return true;
}

static char *maildir_unique_new(void)
{
	static atomic_uint counter;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	char host[256] = "localhost";
	(void)gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	char clean[256 * 4 + 1];
	size_t n = 0;
	for (size_t i = 0; host[i] != '\0' && n + 5 < sizeof(clean); i++) {
		if (host[i] == '/')
			n += (size_t)snprintf(clean + n, sizeof(clean) - n, "\\057");
		else if (host[i] == ':')
			n += (size_t)snprintf(clean + n, sizeof(clean) - n, "\\072");
		else
			clean[n++] = host[i];
	}
	clean[n] = '\0';
	return xasprintf("%lld.M%ldP%ldQ%u.%s", (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(),
			 atomic_fetch_add(&counter, 1), clean);
}

/* Is "<unique>" (followed by end, ':' or ',') in cur/? A small cur/ is scanned whole
 * (a few syscalls); a large one gets cheap probes of the usual flag suffixes. */
static bool maildir_in_cur(const char *dir, const char *unique)
{
	static const char *const probes[] = { ":2,", ":2,S", ":2,RS", ":2,FS", ":2,ST", ":2,T", ":2,FRS" };
	char *cur = xasprintf("%s/cur", dir);
	struct stat st;
	bool found = false;
	if (stat(cur, &st) == 0 && (long long)st.st_size <= MAILDIR_CUR_SCAN_MAX) {
		DIR *d = opendir(cur);
		size_t ulen = strlen(unique);
		struct dirent *de;
		while (d != NULL && (de = readdir(d)) != NULL) {
			if (strncmp(de->d_name, unique, ulen) == 0 &&
			    (de->d_name[ulen] == '\0' || de->d_name[ulen] == ':' || de->d_name[ulen] == ',')) {
				found = true;
				break;
			}
		}
		if (d != NULL) {
			closedir(d);
			free(cur);
			return found;
		}
	}
	free(cur);
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		char *p = xasprintf("%s/cur/%s%s", dir, unique, probes[i]);
		found = access(p, F_OK) == 0;
		free(p);
		if (found)
			return true;
	}
	return false;
}

static int maildir_write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (w == 0) {
			errno = ENOSPC;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Write prepend + the message into fd, fsync, close. 0 or -1 with *error_r/errno. */
static int maildir_write_file(int fd, const char *tmp_path, int msg_fd, const char *prepend,
			      size_t prepend_len, char **error_r)
{
	if (prepend != NULL && prepend_len > 0 && maildir_write_all(fd, prepend, prepend_len) < 0)
		return maildir_fail(error_r, errno, "write %s", tmp_path);
	char *buf = xmalloc(MAILDIR_COPY_BUF);
	off_t off = 0;
	for (;;) {
		ssize_t n = pread(msg_fd, buf, MAILDIR_COPY_BUF, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(buf);
			return maildir_fail(error_r, e, "read message");
		}
		if (n == 0)
			break;
		if ((uint64_t)off + (uint64_t)n > MAILDIR_MAX_SIZE) {
			free(buf);
			return maildir_fail(error_r, EFBIG, "message larger than %zu bytes", MAILDIR_MAX_SIZE);
		}
		if (maildir_write_all(fd, buf, (size_t)n) < 0) {
			int e = errno;
			free(buf);
			return maildir_fail(error_r, e, "write %s", tmp_path);
		}
		off += n;
	}
	free(buf);
	if (fsync(fd) < 0)
		return maildir_fail(error_r, errno, "fsync %s", tmp_path);
	return 0;
}

/* fsync dir/new. 0 or -1 with *error_r/errno. */
static int maildir_sync_new(const char *dir, char **error_r)
{
	char *new_dir = xasprintf("%s/new", dir);
	int dfd = open(new_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret = 0;
	if (dfd < 0 || fsync(dfd) < 0)
		ret = maildir_fail(error_r, errno, "fsync %s", new_dir);
	if (dfd >= 0)
		close(dfd);
	free(new_dir);
	return ret;
}

int maildir_deliver(const char *root, const char *folder, int msg_fd, const char *prepend,
		    size_t prepend_len, const char *unique_base, char **error_r)
{
	if (root == NULL || root[0] == '\0')
		return maildir_fail(error_r, EINVAL, "empty mailbox root");
	if (unique_base != NULL && !maildir_unique_valid(unique_base))
		return maildir_fail(error_r, EINVAL, "invalid unique name");
	char *dir = NULL;
	if (maildir_folder_path(root, folder, &dir, error_r) < 0)
		return -1;
	bool is_folder = strcmp(dir, root) != 0;
	char *unique = unique_base != NULL ? xstrdup(unique_base) : maildir_unique_new();
	char *tmp_path = xasprintf("%s/tmp/%s", dir, unique);
	char *new_path = xasprintf("%s/new/%s", dir, unique);
	int ret = -1, err = 0, fd = -1;
	bool tmp_created = false;

	if (is_folder && maildir_ensure(root, false, error_r) < 0)
		goto out;
	if (maildir_ensure(dir, is_folder, error_r) < 0)
		goto out;
	if (unique_base != NULL && access(new_path, F_OK) == 0) {
		/* A previous attempt renamed it; its new/ fsync may have failed: redo it. */
		ret = maildir_sync_new(dir, error_r) < 0 ? -1 : 0;
		goto out;
	}
	if (unique_base != NULL && maildir_in_cur(dir, unique)) {
		ret = 0;
		goto out;
	}
	fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EEXIST) {
		/* left over by an interrupted earlier attempt: never renamed, so never delivered */
		(void)unlink(tmp_path);
		fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	}
	if (fd < 0) {
		maildir_fail(error_r, errno, "create %s", tmp_path);
		goto out;
	}
	tmp_created = true;
	if (maildir_write_file(fd, tmp_path, msg_fd, prepend, prepend_len, error_r) < 0)
		goto out;
	int cfd = fd;
	fd = -1;
	if (close(cfd) < 0) {
		maildir_fail(error_r, errno, "close %s", tmp_path);
		goto out;
	}
	/* Never replace an existing file: EEXIST means a concurrent/previous delivery won. */
	if (renameat2(AT_FDCWD, tmp_path, AT_FDCWD, new_path, RENAME_NOREPLACE) < 0) {
		if (errno == EINVAL || errno == ENOSYS) {
			if (link(tmp_path, new_path) < 0) {
				if (errno == EEXIST) {
					ret = 0;
					goto out;
				}
				maildir_fail(error_r, errno, "link %s", new_path);
				goto out;
			}
			(void)unlink(tmp_path);
		} else if (errno == EEXIST) {
			ret = 0;
			goto out;
		} else {
			maildir_fail(error_r, errno, "rename to %s", new_path);
			goto out;
		}
	}
	tmp_created = false;
	/* If this fails the file is in new/ but maybe not durable: a temporary error;
	 * the retry finds it in new/, syncs again and returns 0. */
	if (maildir_sync_new(dir, error_r) < 0)
		goto out;
	ret = 1;
out:
	err = errno;
	if (fd >= 0)
		close(fd);
	if (tmp_created)
		(void)unlink(tmp_path);
	free(tmp_path);
	free(new_path);
	free(unique);
	free(dir);
	errno = err;
	return ret;
}
