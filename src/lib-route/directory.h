/*
 * directory: domains, users (with password hashes) and aliases, managed by the
 * CLI and read by the lookup role. The store is SQLite (WAL, synchronous=FULL,
 * busy_timeout 5000 ms) at DIRECTORY_PATH under data_dir, i.e.
 * `<data_dir>/db/directory.db`; `<data_dir>/db/` is owned by cfg->user (mode
 * 0750) so the -wal/-shm files are too. The functions below are the whole
 * contract: a PostgreSQL backend implements the same set behind struct
 * directory (the SQL is plain and portable).
 *
 * Names: domains and addresses are stored lowercase (ASCII); the local part
 * is therefore compared case-insensitively ("Joe@X" and "joe@x" are one user).
 * A catch-all is the alias "@domain". Regex aliases store the PCRE2 pattern as
 * written; route.c matches it against the lowercased address.
 *
 * Returns (STYLE.md): -1 error with an allocated *error_r, 0 not found /
 * already exists / nothing to do, 1 done. Strings handed to callbacks are valid
 * during the callback only; a callback returning non-zero stops the iteration.
 */
#ifndef MR_DIRECTORY_H
#define MR_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mr_config;

#define DIRECTORY_DIR "db"
#define DIRECTORY_PATH "db/directory.db"
#define DIRECTORY_MAX_ADDRESS 320   /* 64 local + @ + 255 domain */
#define DIRECTORY_MAX_TARGET 1024

enum directory_domain_type {
	DIRECTORY_DOMAIN_LOCAL,   /* we host the mailboxes */
	DIRECTORY_DOMAIN_RELAY,   /* accept and forward to relay (or MX if no relay) */
	DIRECTORY_DOMAIN_BACKUP,  /* lower-priority MX: hold and forward to the primary */
};

struct directory_domain {
	char *name;
	enum directory_domain_type type;
	char *relay;     /* "host[:port]" or NULL */
	char *alias_of;  /* domain alias: addresses are rewritten to this domain; or NULL */
};

struct directory;

/* "<data_dir>/db/directory.db", allocated. */
char *directory_path(const struct mr_config *cfg);
/*
 * Make sure `<data_dir>` (0755) and `<data_dir>/db` (0750) exist. When run as
 * root, <data_dir>/db and any existing directory.db, -wal and -shm files are
 * given to owner_user (cfg->user), so the CLI can then drop privileges to it
 * and the lookup role can open the database. Returns 0 or -1 with *error_r.
 */
int directory_prepare(const struct mr_config *cfg, const char *owner_user, char **error_r);
/* path may be ":memory:" (tests). A writable open creates the file and schema. */
struct directory *directory_open(const char *path, bool readonly, char **error_r);
void directory_close(struct directory **d);

/*
 * Changes whenever the directory's content may have changed (a commit by this
 * or another connection): caches keyed on it (route.c's compiled regexes) are
 * rebuilt when it moves. Monotonic. -1 on error.
 */
int64_t directory_generation(struct directory *d);

const char *directory_domain_type_name(enum directory_domain_type type);
bool directory_domain_type_parse(const char *name, enum directory_domain_type *type_r);

/*
 * Normalize into out (size >= DIRECTORY_MAX_ADDRESS + 1): lowercase, checked
 * syntax; an internationalized domain (UTF-8) is converted to its A-labels
 * ("bücher.example" -> "xn--bcher-kva.example"), the local part is kept. Domain names: letters, digits, '-', '.', '_' labels. Addresses:
 * dot-atom-ish local part (no spaces, controls, '@', '<>', '"', ',', ';', '\\'),
 * 1-64 bytes, '@', a domain. allow_catchall also accepts "@domain".
 * Returns false with a static reason.
 */
bool directory_domain_normalize(const char *in, char *out, size_t size, const char **why_r);
bool directory_address_normalize(const char *in, bool allow_catchall, char *out, size_t size, const char **why_r);
/* An alias target: an address, or a named target "kind:name" (webhook:x, pipe:x). */
bool directory_target_check(const char *target, const char **why_r);

/* domains */
int directory_domain_add(struct directory *d, const struct directory_domain *dom, char **error_r);
int directory_domain_del(struct directory *d, const char *name, char **error_r);
/* On 1, *dom_r holds allocated strings: directory_domain_deinit(). */
int directory_domain_get(struct directory *d, const char *name, struct directory_domain *dom_r, char **error_r);
void directory_domain_deinit(struct directory_domain *dom);
typedef int directory_domain_cb(const struct directory_domain *dom, void *ctx);
int directory_domain_list(struct directory *d, directory_domain_cb *cb, void *ctx, char **error_r);

/* users: address already normalized or not (it is normalized again). */
int directory_user_add(struct directory *d, const char *address, const char *password_hash, char **error_r);
int directory_user_del(struct directory *d, const char *address, char **error_r);
/* 1 and *hash_r (allocated, may be NULL if hash_r is NULL: existence check) when the user exists. */
int directory_user_get(struct directory *d, const char *address, char **hash_r, char **error_r);
int directory_user_set_password(struct directory *d, const char *address, const char *password_hash, char **error_r);
typedef int directory_user_cb(const char *address, int64_t created, void *ctx);
int directory_user_list(struct directory *d, directory_user_cb *cb, void *ctx, char **error_r);
/* Number of users in a domain (domain del refuses a domain that still has users). */
int64_t directory_user_count(struct directory *d, const char *domain, char **error_r);

/*
 * aliases: address is a normalized address, "@domain" (catch-all) or, with
 * is_regex, a PCRE2 pattern (validated by the caller: route_regex_check()).
 * Adding to an existing alias appends targets; a target already present is
 * skipped. Returns 1 if at least one target was added, 0 if all existed.
 */
int directory_alias_add(struct directory *d, const char *address, bool is_regex,
			const char *const *targets, size_t count, char **error_r);
/* Deletes every target of address (or of the regex pattern). */
int directory_alias_del(struct directory *d, const char *address, char **error_r);
typedef int directory_alias_cb(const char *address, bool is_regex, const char *target, void *ctx);
/* Exact aliases first (by address, then position), then regex aliases in the order they were added. */
int directory_alias_list(struct directory *d, directory_alias_cb *cb, void *ctx, char **error_r);
/* Targets of one exact alias (or "@domain"), in position order. */
int directory_alias_lookup(struct directory *d, const char *address, directory_alias_cb *cb, void *ctx,
			   char **error_r);
/* Regex aliases only, grouped by pattern, patterns in the order first added (route.c compiles them). */
int directory_alias_regex_list(struct directory *d, directory_alias_cb *cb, void *ctx, char **error_r);

/* One opaque cache slot for route.c (compiled regex aliases); free_fn runs at close or replacement. */
void *directory_cache(struct directory *d);
void directory_set_cache(struct directory *d, void *cache, void (*free_fn)(void *cache));

/*
 * The SQLite connection, for modules that keep their own tables in the
 * directory database (relays.c). Valid until directory_close.
 */
struct sqlite3;
struct sqlite3 *directory_sqlite(struct directory *d);

/* Run several changes in one transaction (bulk imports, tests with 100k users). */
int directory_begin(struct directory *d, char **error_r);
int directory_commit(struct directory *d, char **error_r);

#endif
