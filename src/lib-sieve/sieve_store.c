#include "lib-sieve/sieve_store.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/xalloc.h"

bool sieve_store_valid_name(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > 64 || name[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!(isalnum((unsigned char)name[i]) || name[i] == '.' || name[i] == '_' || name[i] == '-'))
			return false;
	return true;
}

int sieve_store_user_dir(const char *data_dir, const char *user, char **dir_r, char **error_r)
{
	const char *at = strrchr(user, '@');
	if (at == NULL || at == user || at[1] == '\0' || strlen(user) > 320) {
		*error_r = xasprintf("invalid user '%s' (expected localpart@domain)", user);
		return -1;
	}
	size_t ll = (size_t)(at - user);
	for (size_t i = 0; i < ll; i++)
		if (user[i] == '/' || (unsigned char)user[i] <= 32 || user[i] == 127) {
			*error_r = xasprintf("invalid user '%s'", user);
			return -1;
		}
	if (user[0] == '.') {
		*error_r = xasprintf("invalid user '%s'", user);
		return -1;
	}
	char *dom = xstrdup(at + 1);
	for (char *p = dom; *p; p++) {
		*p = (char)tolower((unsigned char)*p);
		if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '.' || (unsigned char)*p >= 0x80) || dom[0] == '.') {
			*error_r = xasprintf("invalid domain in user '%s'", user);
			free(dom);
			return -1;
		}
	}
	*dir_r = xasprintf("%s/sieve/%s/%.*s", data_dir, dom, (int)ll, user);
	free(dom);
	return 1;
}

static int mkdirs(const char *path, char **error_r)
{
	char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0750) < 0 && errno != EEXIST) {
			*error_r = xasprintf("mkdir %s: %s", p, strerror(errno));
			free(p);
			return -1;
		}
		*s = '/';
	}
	if (mkdir(p, 0750) < 0 && errno != EEXIST) {
		*error_r = xasprintf("mkdir %s: %s", p, strerror(errno));
		free(p);
		return -1;
	}
	free(p);
	return 0;
}

int sieve_store_read_file(const char *path, size_t max, char **src_r, size_t *len_r, char **error_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		*error_r = xasprintf("open %s: %s", path, strerror(errno));
		return -1;
	}
	size_t cap = 4096, len = 0;
	char *buf = xmalloc(cap + 1);
	for (;;) {
		if (len == cap) {
			if (cap >= max + 1) {
				*error_r = xasprintf("%s is larger than %zu bytes", path, max);
				free(buf);
				close(fd);
				return -1;
			}
			cap *= 2;
			buf = xrealloc(buf, cap + 1);
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = xasprintf("read %s: %s", path, strerror(errno));
			free(buf);
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len > max) {
		*error_r = xasprintf("%s is larger than %zu bytes", path, max);
		free(buf);
		return -1;
	}
	buf[len] = '\0';
	*src_r = buf;
	*len_r = len;
	return 1;
}

static int write_atomic(const char *dir, const char *file, const char *data, size_t len, char **error_r)
{
	char *tmp = xasprintf("%s/.tmp.%s.%ld", dir, file, (long)getpid());
	char *dst = xasprintf("%s/%s", dir, file);
	int ret = -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0) {
		*error_r = xasprintf("create %s: %s", tmp, strerror(errno));
		goto out;
	}
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = xasprintf("write %s: %s", tmp, strerror(errno));
			close(fd);
			unlink(tmp);
			goto out;
		}
		off += (size_t)n;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		*error_r = xasprintf("fsync %s: %s", tmp, strerror(errno));
		unlink(tmp);
		goto out;
	}
	if (rename(tmp, dst) < 0) {
		*error_r = xasprintf("rename %s: %s", dst, strerror(errno));
		unlink(tmp);
		goto out;
	}
	ret = 1;
out:
	free(tmp);
	free(dst);
	return ret;
}

static int check_name(const char *name, char **error_r)
{
	if (!sieve_store_valid_name(name)) {
		*error_r = xasprintf("invalid script name '%s' (1-64 of A-Z a-z 0-9 . _ -, not starting with '.')", name);
		return -1;
	}
	return 0;
}

int sieve_store_put(const char *data_dir, const char *user, const char *name, const char *src, size_t len,
		    char **error_r)
{
	char *dir;
	if (check_name(name, error_r) < 0 || sieve_store_user_dir(data_dir, user, &dir, error_r) < 0)
		return -1;
	if (len > SIEVE_STORE_MAX_SIZE) {
		*error_r = xasprintf("script is larger than %d bytes", SIEVE_STORE_MAX_SIZE);
		free(dir);
		return -1;
	}
	int ret = -1;
	if (mkdirs(dir, error_r) == 0) {
		char *file = xasprintf("%s.sieve", name);
		ret = write_atomic(dir, file, src, len, error_r);
		free(file);
	}
	free(dir);
	return ret;
}

int sieve_store_get(const char *data_dir, const char *user, const char *name, char **src_r, size_t *len_r,
		    char **error_r)
{
	char *dir;
	if (check_name(name, error_r) < 0 || sieve_store_user_dir(data_dir, user, &dir, error_r) < 0)
		return -1;
	char *path = xasprintf("%s/%s.sieve", dir, name);
	int r = sieve_store_read_file(path, SIEVE_STORE_MAX_SIZE, src_r, len_r, error_r);
	free(path);
	free(dir);
	return r;
}

/* The active script's name from the `active` link, or NULL. */
static char *active_name(const char *dir)
{
	char *link = xasprintf("%s/active", dir);
	char target[512];
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	free(link);
	if (n <= 6)
		return NULL;
	target[n] = '\0';
	const char *base = strrchr(target, '/');
	base = base ? base + 1 : target;
	size_t bl = strlen(base);
	if (bl <= 6 || strcmp(base + bl - 6, ".sieve") != 0)
		return NULL;
	char *name = xstrndup(base, bl - 6);
	if (!sieve_store_valid_name(name)) {
		free(name);
		return NULL;
	}
	return name;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int sieve_store_list(const char *data_dir, const char *user, char ***names_r, size_t *count_r, char **active_r,
		     char **error_r)
{
	char *dir;
	*names_r = NULL;
	*count_r = 0;
	*active_r = NULL;
	if (sieve_store_user_dir(data_dir, user, &dir, error_r) < 0)
		return -1;
	DIR *d = opendir(dir);
	if (d == NULL) {
		int e = errno;
		free(dir);
		if (e == ENOENT)
			return 1;
		*error_r = xasprintf("opendir: %s", strerror(e));
		return -1;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL && *count_r < 10000) {
		size_t l = strlen(de->d_name);
		if (l <= 6 || strcmp(de->d_name + l - 6, ".sieve") != 0)
			continue;
		char *name = xstrndup(de->d_name, l - 6);
		if (!sieve_store_valid_name(name)) {
			free(name);
			continue;
		}
		*names_r = xreallocarray(*names_r, *count_r + 1, sizeof(char *));
		(*names_r)[(*count_r)++] = name;
	}
	closedir(d);
	if (*count_r > 0)
		qsort(*names_r, *count_r, sizeof(char *), cmp_str);
	*active_r = active_name(dir);
	free(dir);
	return 1;
}

void sieve_store_list_free(char **names, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
}

int sieve_store_activate(const char *data_dir, const char *user, const char *name, char **error_r)
{
	char *dir;
	if ((name != NULL && check_name(name, error_r) < 0) || sieve_store_user_dir(data_dir, user, &dir, error_r) < 0)
		return -1;
	char *link = xasprintf("%s/active", dir);
	int ret = -1;
	if (name == NULL) {
		ret = unlink(link) == 0 || errno == ENOENT ? 1 : -1;
		if (ret < 0)
			*error_r = xasprintf("unlink %s: %s", link, strerror(errno));
		goto out;
	}
	char *path = xasprintf("%s/%s.sieve", dir, name);
	struct stat st;
	if (stat(path, &st) < 0) {
		free(path);
		ret = 0;
		goto out;
	}
	free(path);
	char *target = xasprintf("%s.sieve", name);
	char *tmp = xasprintf("%s/.tmp.active.%ld", dir, (long)getpid());
	unlink(tmp);
	if (symlink(target, tmp) < 0 || rename(tmp, link) < 0) {
		*error_r = xasprintf("activate %s: %s", name, strerror(errno));
		unlink(tmp);
	} else {
		ret = 1;
	}
	free(target);
	free(tmp);
out:
	free(link);
	free(dir);
	return ret;
}

int sieve_store_delete(const char *data_dir, const char *user, const char *name, char **error_r)
{
	char *dir;
	if (check_name(name, error_r) < 0 || sieve_store_user_dir(data_dir, user, &dir, error_r) < 0)
		return -1;
	char *active = active_name(dir);
	int ret;
	if (active != NULL && strcmp(active, name) == 0) {
		*error_r = xasprintf("script '%s' is active (deactivate it first)", name);
		ret = -1;
	} else {
		char *path = xasprintf("%s/%s.sieve", dir, name);
		if (unlink(path) == 0) {
			ret = 1;
		} else if (errno == ENOENT) {
			ret = 0;
		} else {
			*error_r = xasprintf("unlink %s: %s", path, strerror(errno));
			ret = -1;
		}
		free(path);
	}
	free(active);
	free(dir);
	return ret;
}

int sieve_store_get_active(const char *data_dir, const char *user, char **name_r, char **src_r, size_t *len_r,
			   char **error_r)
{
	char *dir;
	if (sieve_store_user_dir(data_dir, user, &dir, error_r) < 0)
		return -1;
	char *name = active_name(dir);
	free(dir);
	if (name == NULL)
		return 0;
	int r = sieve_store_get(data_dir, user, name, src_r, len_r, error_r);
	if (r > 0)
		*name_r = name;
	else
		free(name);
	return r;
}

int sieve_store_include_resolver(void *ctx, const char *name, bool global, char **src_r, size_t *len_r,
				 char **error_r)
{
	const struct sieve_store_ctx *sc = ctx;
	if (!sieve_store_valid_name(name))
		return 0;
	if (global) {
		char *path = xasprintf("%s/sieve/.global/%s.sieve", sc->data_dir, name);
		int r = sieve_store_read_file(path, SIEVE_STORE_MAX_SIZE, src_r, len_r, error_r);
		free(path);
		return r;
	}
	if (sc->user == NULL)
		return 0;
	return sieve_store_get(sc->data_dir, sc->user, name, src_r, len_r, error_r);
}
