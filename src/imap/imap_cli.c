/*
 * `mailroute mailbox`: look at and re-scan a user's Maildir++ folders and their indexes.
 *
 *   mailroute mailbox list ADDRESS            one line per folder with its counters
 *   mailroute mailbox sync ADDRESS [FOLDER]   re-scan the files into the index (safe while
 *                                             the server runs)
 *   mailroute mailbox rebuild ADDRESS FOLDER  discard the folder's index and rebuild it from
 *                                             the files (new UIDVALIDITY; stop imap/pop3 first)
 *
 * Runs as the mailbox owner (cfg->vmail_user) when started as root.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib-mailbox/maildir.h"
#include "lib-mailbox/mbox.h"
#include "lib/xalloc.h"

int cli_mailbox_main(struct cli_ctx *ctx, int argc, char **argv);

static char *user_root(const struct mr_config *cfg, const char *address)
{
	const char *at = strrchr(address, '@');
	if (at == NULL || at == address || at[1] == '\0' || strchr(address, '/') != NULL ||
	    strstr(address, "..") != NULL)
		return NULL;
	char *r = xasprintf("%s/mail/%s/%.*s", cfg->data_dir, at + 1, (int)(at - address), address);
	for (char *p = r + strlen(cfg->data_dir); *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return r;
}

/* sync: re-scan the files even when the directory mtimes look unchanged */
static int print_folder(const char *root, const char *name, bool sync)
{
	char *canon, *path;
	const char *err;
	if (maildir_name_map(root, name, &canon, &path, &err) < 0) {
		fprintf(stderr, "mailroute: %s: %s\n", name, err);
		return -1;
	}
	struct mbox *mb = mbox_open(path, &err);
	int ret = 0;
	if (mb == NULL) {
		fprintf(stderr, "mailroute: %s: %s\n", canon, err);
		ret = -1;
	} else if (sync && mbox_sync(mb, true, &err) < 0) {
		fprintf(stderr, "mailroute: %s: %s\n", canon, err);
		mbox_close(&mb);
		ret = -1;
	} else {
		struct mbox_status st;
		mbox_get_status(mb, &st);
		printf("%s messages=%u unseen=%u deleted=%u size=%llu uidvalidity=%u uidnext=%u highestmodseq=%llu\n",
		       canon, st.messages, st.unseen, st.deleted, (unsigned long long)st.size, st.uidvalidity,
		       st.uidnext, (unsigned long long)st.highestmodseq);
		mbox_close(&mb);
	}
	free(canon);
	free(path);
	return ret;
}

int cli_mailbox_main(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 3 || (strcmp(argv[1], "list") != 0 && strcmp(argv[1], "sync") != 0 && strcmp(argv[1], "rebuild") != 0))
		return cli_usage("usage: mailbox list ADDRESS | sync ADDRESS [FOLDER] | rebuild ADDRESS FOLDER");
	if ((strcmp(argv[1], "list") == 0 && argc != 3) || (strcmp(argv[1], "sync") == 0 && argc > 4) ||
	    (strcmp(argv[1], "rebuild") == 0 && argc != 4))
		return cli_usage("usage: mailbox list ADDRESS | sync ADDRESS [FOLDER] | rebuild ADDRESS FOLDER");
	struct mr_config *cfg = cli_config(ctx);
	char *root = user_root(cfg, argv[2]);
	if (root == NULL)
		return cli_usage("invalid address: %s", argv[2]);
	if (cli_drop_privileges(cfg, cfg->vmail_user) < 0) {
		free(root);
		return 1;
	}
	if (access(root, F_OK) < 0) {
		int r = cli_fail("no mailbox for %s (%s)", argv[2], root);
		free(root);
		return r;
	}
	int ret = 0;
	if (strcmp(argv[1], "rebuild") == 0) {
		char *canon, *path;
		const char *err;
		if (maildir_name_map(root, argv[3], &canon, &path, &err) < 0) {
			free(root);
			return cli_usage("%s: %s", argv[3], err);
		}
		static const char *const sfx[] = { "", "-wal", "-shm" };
		for (size_t i = 0; i < 3; i++) {
			char *f = xasprintf("%s/%s%s", path, MBOX_INDEX_NAME, sfx[i]);
			unlink(f);
			free(f);
		}
		ret = print_folder(root, canon, false) < 0 ? 1 : 0;
		free(canon);
		free(path);
	} else if (argc == 4) {
		ret = print_folder(root, argv[3], true) < 0 ? 1 : 0;
	} else {
		char **names;
		size_t n;
		if (maildir_list(root, &names, &n) < 0) {
			free(root);
			return cli_fail("cannot list folders of %s", argv[2]);
		}
		for (size_t i = 0; i < n; i++)
			if (print_folder(root, names[i], strcmp(argv[1], "sync") == 0) < 0)
				ret = 1;
		maildir_names_free(names, n);
	}
	free(root);
	return ret;
}
