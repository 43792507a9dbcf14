#include "lib-mailbox/maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/xalloc.h"

static const struct {
	char letter;
	unsigned flag;
} flag_letters[] = {
	{ 'D', MAIL_DRAFT }, { 'F', MAIL_FLAGGED }, { 'P', MAIL_FORWARDED },
	{ 'R', MAIL_ANSWERED }, { 'S', MAIL_SEEN }, { 'T', MAIL_DELETED },
};

unsigned maildir_flags_from_name(const char *fname)
{
	const char *p = strstr(fname, ":2,");
	if (p == NULL)
		return 0;
	unsigned flags = 0;
	for (p += 3; *p; p++)
		for (size_t i = 0; i < sizeof(flag_letters) / sizeof(flag_letters[0]); i++)
			if (*p == flag_letters[i].letter)
				flags |= flag_letters[i].flag;
	return flags;
}

void maildir_flags_letters(unsigned flags, char out[8])
{
	size_t n = 0;
	for (size_t i = 0; i < sizeof(flag_letters) / sizeof(flag_letters[0]); i++)
		if (flags & flag_letters[i].flag)
			out[n++] = flag_letters[i].letter;
	out[n] = '\0';
}

size_t maildir_base_len(const char *fname)
{
	const char *p = strchr(fname, ':');
	return p != NULL ? (size_t)(p - fname) : strlen(fname);
}

bool maildir_name_is_inbox(const char *name)
{
	return strcasecmp(name, "INBOX") == 0;
}

int maildir_name_map(const char *root, const char *name, char **canon_r, char **path_r, const char **error_r)
{
	size_t len = strlen(name);
	if (len == 0 || len > MAILDIR_NAME_MAX) {
		*error_r = "Invalid mailbox name length";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c < 0x20 || c >= 0x7f || c == '/' || c == '\\' || c == '%' || c == '*') {
			*error_r = "Invalid character in mailbox name";
			return -1;
		}
		if (c == MAILDIR_DELIM && (i == 0 || i == len - 1 || name[i + 1] == MAILDIR_DELIM)) {
			*error_r = "Empty hierarchy level in mailbox name";
			return -1;
		}
	}
	char *canon = xstrdup(name);
	if (strncasecmp(canon, "INBOX", 5) == 0 && (canon[5] == '\0' || canon[5] == MAILDIR_DELIM))
		memcpy(canon, "INBOX", 5);
	*canon_r = canon;
	if (path_r != NULL) {
		if (strcmp(canon, "INBOX") == 0)
			*path_r = xstrdup(root);
		else
			*path_r = xasprintf("%s/.%s", root, canon);
	}
	return 1;
}

int maildir_make_dirs(const char *path, bool folder)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -1;
	static const char *const subs[] = { "cur", "new", "tmp" };
	for (size_t i = 0; i < 3; i++) {
		char *p = xasprintf("%s/%s", path, subs[i]);
		int r = mkdir(p, 0700);
		free(p);
		if (r < 0 && errno != EEXIST)
			return -1;
	}
	if (folder) {
		char *p = xasprintf("%s/maildirfolder", path);
		int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		free(p);
		if (fd >= 0)
			close(fd);
	}
	return 0;
}

static int mkdir_parents(const char *path)
{
	char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s == '/') {
			*s = '\0';
			if (mkdir(p, 0700) < 0 && errno != EEXIST) {
				free(p);
				return -1;
			}
			*s = '/';
		}
	}
	free(p);
	return 0;
}

static const char *const special_names[] = { NULL, "Sent", "Drafts", "Trash", "Junk", "Archive" };
static const char *const special_attrs[] = { NULL, "\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive" };

enum mailbox_special maildir_special(const char *canon_name)
{
	for (int i = 1; i <= MAILBOX_SPECIAL_ARCHIVE; i++)
		if (strcmp(canon_name, special_names[i]) == 0)
			return (enum mailbox_special)i;
	return MAILBOX_SPECIAL_NONE;
}

const char *maildir_special_attr(enum mailbox_special s)
{
	return special_attrs[s];
}

int maildir_ensure_root(const char *root, const char **error_r)
{
	struct stat st;
	bool fresh = stat(root, &st) < 0;
	if (fresh && mkdir_parents(root) < 0) {
		*error_r = "Cannot create mail root";
		return -1;
	}
	if (maildir_make_dirs(root, false) < 0) {
		*error_r = "Cannot create mail root";
		return -1;
	}
	char *marker = xasprintf("%s/mailroute-subscriptions", root);
	bool first = stat(marker, &st) < 0;
	free(marker);
	if (first) {
		for (int i = 1; i <= MAILBOX_SPECIAL_ARCHIVE; i++) {
			const char *err;
			char *path = xasprintf("%s/.%s", root, special_names[i]);
			if (stat(path, &st) < 0 && maildir_create(root, special_names[i], &err) < 0) {
				free(path);
				*error_r = err;
				return -1;
			}
			free(path);
			maildir_subscribe(root, special_names[i], true);
		}
		maildir_subscribe(root, "INBOX", true);
	}
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int maildir_list(const char *root, char ***names_r, size_t *count_r)
{
	DIR *d = opendir(root);
	if (d == NULL)
		return -1;
	size_t count = 1, cap = 16;
	char **names = xcalloc(cap, sizeof(*names));
	names[0] = xstrdup("INBOX");
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.' || de->d_name[1] == '\0' || strcmp(de->d_name, "..") == 0)
			continue;
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		char *canon;
		const char *err;
		if (maildir_name_map(root, de->d_name + 1, &canon, NULL, &err) < 0)
			continue;
		if (strcmp(canon, de->d_name + 1) != 0 || strcmp(canon, "INBOX") == 0) {
			free(canon);
			continue;
		}
		if (de->d_type == DT_UNKNOWN) {
			struct stat st;
			char *p = xasprintf("%s/%s", root, de->d_name);
			int r = stat(p, &st);
			free(p);
			if (r < 0 || !S_ISDIR(st.st_mode)) {
				free(canon);
				continue;
			}
		}
		if (count == cap) {
			cap *= 2;
			names = xreallocarray(names, cap, sizeof(*names));
		}
		names[count++] = canon;
	}
	closedir(d);
	qsort(names + 1, count - 1, sizeof(*names), name_cmp);
	*names_r = names;
	*count_r = count;
	return 0;
}

void maildir_names_free(char **names, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
}

int maildir_create(const char *root, const char *name, const char **error_r)
{
	char *canon, *path;
	if (maildir_name_map(root, name, &canon, &path, error_r) < 0)
		return -1;
	int ret = 1;
	struct stat st;
	if (strcmp(canon, "INBOX") == 0 || stat(path, &st) == 0) {
		*error_r = "[ALREADYEXISTS] Mailbox already exists";
		ret = -1;
	} else if (maildir_make_dirs(path, true) < 0) {
		*error_r = "[SERVERBUG] Cannot create mailbox";
		ret = -1;
	}
	free(canon);
	free(path);
	return ret;
}

/* Remove the files of one level of directory (no recursion into unknown subdirectories). */
static int rm_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return errno == ENOENT ? 0 : -1;
	struct dirent *de;
	int fd = dirfd(d);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(fd, de->d_name, 0) < 0 && errno == EISDIR)
			continue;
	}
	closedir(d);
	return 0;
}

int maildir_delete(const char *root, const char *name, const char **error_r)
{
	char *canon, *path;
	if (maildir_name_map(root, name, &canon, &path, error_r) < 0)
		return -1;
	int ret = 1;
	struct stat st;
	if (strcmp(canon, "INBOX") == 0) {
		*error_r = "[CANNOT] INBOX cannot be deleted";
		ret = -1;
	} else if (stat(path, &st) < 0) {
		*error_r = "[NONEXISTENT] No such mailbox";
		ret = -1;
	}
	/* children stay; the name lives on as their \Noselect parent (RFC 9051 6.3.5) */
	if (ret > 0) {
		static const char *const subs[] = { "cur", "new", "tmp" };
		for (size_t i = 0; i < 3; i++) {
			char *p = xasprintf("%s/%s", path, subs[i]);
			rm_files(p);
			rmdir(p);
			free(p);
		}
		rm_files(path);
		if (rmdir(path) < 0) {
			*error_r = "[SERVERBUG] Cannot remove mailbox directory";
			ret = -1;
		}
		maildir_subscribe(root, canon, false);
	}
	free(canon);
	free(path);
	return ret;
}

int maildir_rename(const char *root, const char *from, const char *to, const char **error_r)
{
	char *fc, *fp, *tc, *tp;
	if (maildir_name_map(root, from, &fc, &fp, error_r) < 0)
		return -1;
	if (maildir_name_map(root, to, &tc, &tp, error_r) < 0) {
		free(fc);
		free(fp);
		return -1;
	}
	int ret = 1;
	struct stat st;
	size_t fl = strlen(fc);
	if (strcmp(tc, "INBOX") == 0) {
		*error_r = "[ALREADYEXISTS] INBOX exists";
		ret = -1;
	} else if (strcmp(fc, "INBOX") == 0) {
		/* RFC 9051 6.3.6: move INBOX's messages to the new folder, INBOX stays (empty) */
		if (maildir_create(root, tc, error_r) < 0) {
			ret = -1;
		} else {
			static const char *const subs[] = { "cur", "new" };
			for (size_t i = 0; i < 2; i++) {
				char *src = xasprintf("%s/%s", root, subs[i]);
				DIR *d = opendir(src);
				struct dirent *de;
				while (d != NULL && (de = readdir(d)) != NULL) {
					if (de->d_name[0] == '.')
						continue;
					char *a = xasprintf("%s/%s", src, de->d_name);
					char *b = xasprintf("%s/%s/%s", tp, subs[i], de->d_name);
					if (rename(a, b) < 0)
						ret = -1;
					free(a);
					free(b);
				}
				if (d != NULL)
					closedir(d);
				free(src);
			}
			if (ret < 0)
				*error_r = "[SERVERBUG] Some messages could not be moved";
		}
	} else if (stat(fp, &st) < 0) {
		*error_r = "[NONEXISTENT] No such mailbox";
		ret = -1;
	} else if (stat(tp, &st) == 0) {
		*error_r = "[ALREADYEXISTS] Target mailbox exists";
		ret = -1;
	} else if (strncmp(tc, fc, fl) == 0 && tc[fl] == MAILDIR_DELIM) {
		*error_r = "[CANNOT] Cannot move a mailbox under itself";
		ret = -1;
	} else {
		char **names;
		size_t count;
		if (maildir_list(root, &names, &count) < 0) {
			*error_r = "[SERVERBUG] Cannot list mailboxes";
			ret = -1;
		} else {
			for (size_t i = 0; i < count && ret > 0; i++) {
				if (strcmp(names[i], fc) != 0 && !(strncmp(names[i], fc, fl) == 0 && names[i][fl] == MAILDIR_DELIM))
					continue;
				char *src = xasprintf("%s/.%s", root, names[i]);
				char *dst = xasprintf("%s/.%s%s", root, tc, names[i] + fl);
				if (strlen(tc) + strlen(names[i] + fl) > MAILDIR_NAME_MAX || rename(src, dst) < 0) {
					*error_r = "[SERVERBUG] Rename failed";
					ret = -1;
				} else {
					char *nn = xasprintf("%s%s", tc, names[i] + fl);
					maildir_subscribe(root, names[i], false);
					maildir_subscribe(root, nn, true);
					free(nn);
				}
				free(src);
				free(dst);
			}
			maildir_names_free(names, count);
		}
	}
	free(fc);
	free(fp);
	free(tc);
	free(tp);
	return ret;
}

int maildir_subscriptions(const char *root, char ***names_r, size_t *count_r)
{
	char *p = xasprintf("%s/mailroute-subscriptions", root);
	FILE *f = fopen(p, "re");
	free(p);
	size_t count = 0, cap = 8;
	char **names = xcalloc(cap, sizeof(*names));
	if (f != NULL) {
		char line[MAILDIR_NAME_MAX + 4];
		while (fgets(line, sizeof(line), f) != NULL) {
			line[strcspn(line, "\r\n")] = '\0';
			if (line[0] == '\0')
				continue;
			if (count == cap) {
				cap *= 2;
				names = xreallocarray(names, cap, sizeof(*names));
			}
			names[count++] = xstrdup(line);
		}
		fclose(f);
	}
	*names_r = names;
	*count_r = count;
	return 0;
}

int maildir_subscribe(const char *root, const char *canon, bool on)
{
	char **names;
	size_t count;
	maildir_subscriptions(root, &names, &count);
	struct buf out;
	buf_init(&out, 1024 * 1024);
	bool found = false;
	for (size_t i = 0; i < count; i++) {
		if (strcmp(names[i], canon) == 0) {
			found = true;
			if (!on)
				continue;
		}
		buf_printf(&out, "%s\n", names[i]);
	}
	if (on && !found)
		buf_printf(&out, "%s\n", canon);
	maildir_names_free(names, count);
	char *tmp = xasprintf("%s/tmp/.mailroute-subscriptions.%d", root, (int)getpid());
	char *dst = xasprintf("%s/mailroute-subscriptions", root);
	int ret = -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0) {
		if (write(fd, out.data, out.len) == (ssize_t)out.len && rename(tmp, dst) == 0)
			ret = 0;
		close(fd);
		if (ret < 0)
			unlink(tmp);
	}
	free(tmp);
	free(dst);
	buf_deinit(&out);
	return ret;
}

static bool match_at(const char *p, const char *n)
{
	for (; *p; p++) {
		if (*p == '*') {
			for (const char *s = n;; s++) {
				if (match_at(p + 1, s))
					return true;
				if (*s == '\0')
					return false;
			}
		}
		if (*p == '%') {
			for (const char *s = n;; s++) {
				if (match_at(p + 1, s))
					return true;
				if (*s == '\0' || *s == MAILDIR_DELIM)
					return false;
			}
		}
		if (*p != *n)
			return false;
		n++;
	}
	return *n == '\0';
}

bool maildir_pattern_match(const char *pattern, const char *name)
{
	/* INBOX is case-insensitive in patterns too */
	if (strncasecmp(pattern, "INBOX", 5) == 0 && strncmp(name, "INBOX", 5) == 0) {
		char *p = xstrdup(pattern);
		memcpy(p, "INBOX", 5);
		bool r = match_at(p, name);
		free(p);
		return r;
	}
	return match_at(pattern, name);
}
