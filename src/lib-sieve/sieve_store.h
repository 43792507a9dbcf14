/*
 * sieve_store: users' Sieve scripts on disk, shared by `mailroute sieve`,
 * ManageSieve and local delivery.
 *
 * Layout (under the config's data_dir):
 *   <data_dir>/sieve/<domain>/<localpart>/NAME.sieve   one file per script
 *   <data_dir>/sieve/<domain>/<localpart>/active       symlink to the active NAME.sieve
 *   <data_dir>/sieve/.global/NAME.sieve                scripts for `include :global`
 * The domain is lowercased; the local part is kept as given. Script names are
 * 1-64 characters of [A-Za-z0-9._-] not starting with '.'. Writes go to a
 * temporary file, are fsynced and renamed, so a reader sees the old or the
 * new script, never half of one; the `active` link is replaced by rename too.
 * Scripts are at most SIEVE_STORE_MAX_SIZE bytes.
 *
 * Returns follow STYLE.md: -1 error (*error_r allocated), 0 not found, 1 done.
 */
#ifndef MR_SIEVE_STORE_H
#define MR_SIEVE_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "lib-sieve/sieve.h"

#define SIEVE_STORE_MAX_SIZE (1024 * 1024)

bool sieve_store_valid_name(const char *name);
/* "<data_dir>/sieve/<domain>/<localpart>" for user "localpart@domain". */
int sieve_store_user_dir(const char *data_dir, const char *user, char **dir_r, char **error_r);

int sieve_store_put(const char *data_dir, const char *user, const char *name, const char *src, size_t len,
		    char **error_r);
int sieve_store_get(const char *data_dir, const char *user, const char *name, char **src_r, size_t *len_r,
		    char **error_r);
/* Names sorted; *active_r the active name or NULL. Free with sieve_store_list_free. */
int sieve_store_list(const char *data_dir, const char *user, char ***names_r, size_t *count_r, char **active_r,
		     char **error_r);
void sieve_store_list_free(char **names, size_t count);
/* name NULL deactivates. 0 when the script does not exist. */
int sieve_store_activate(const char *data_dir, const char *user, const char *name, char **error_r);
/* Refuses (-1) to delete the active script, like ManageSieve DELETESCRIPT. */
int sieve_store_delete(const char *data_dir, const char *user, const char *name, char **error_r);
/* The active script: 1 with name and source, 0 when none is active. */
int sieve_store_get_active(const char *data_dir, const char *user, char **name_r, char **src_r, size_t *len_r,
			   char **error_r);

/* An include resolver over the store: ctx is a struct sieve_store_ctx. */
struct sieve_store_ctx {
	const char *data_dir;
	const char *user;      /* NULL: only :global includes resolve */
};
int sieve_store_include_resolver(void *ctx, const char *name, bool global, char **src_r, size_t *len_r,
				 char **error_r);

/* Read a whole file, at most max bytes: 1 ok, 0 ENOENT, -1 error. */
int sieve_store_read_file(const char *path, size_t max, char **src_r, size_t *len_r, char **error_r);

#endif
