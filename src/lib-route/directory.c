/* directory: the SQLite backend of the directory contract (directory.h). */
#include "lib-route/directory.h"

#include <errno.h>
#include <idn2.h>
#include <pwd.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "lib/xalloc.h"

enum directory_stmt {
	ST_DATA_VERSION,
	ST_DOMAIN_ADD,
	ST_DOMAIN_DEL,
	ST_DOMAIN_GET,
	ST_DOMAIN_LIST,
	ST_USER_ADD,
	ST_USER_DEL,
	ST_USER_GET,
	ST_USER_PASSWD,
	ST_USER_LIST,
	ST_USER_COUNT,
	ST_ALIAS_POS,
	ST_ALIAS_ADD,
	ST_ALIAS_DEL,
	ST_ALIAS_LIST,
	ST_ALIAS_LOOKUP,
	ST_ALIAS_REGEX,
	ST_BEGIN,
	ST_COMMIT,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_DATA_VERSION] = "PRAGMA data_version",
	[ST_DOMAIN_ADD] = "INSERT OR IGNORE INTO domains(name, type, relay, alias_of, created) VALUES (?1, ?2, ?3, ?4, ?5)",
	[ST_DOMAIN_DEL] = "DELETE FROM domains WHERE name = ?1",
	[ST_DOMAIN_GET] = "SELECT name, type, relay, alias_of FROM domains WHERE name = ?1",
	[ST_DOMAIN_LIST] = "SELECT name, type, relay, alias_of FROM domains ORDER BY name",
	[ST_USER_ADD] = "INSERT OR IGNORE INTO users(address, domain, password_hash, created) VALUES (?1, ?2, ?3, ?4)",
	[ST_USER_DEL] = "DELETE FROM users WHERE address = ?1",
	[ST_USER_GET] = "SELECT password_hash FROM users WHERE address = ?1",
	[ST_USER_PASSWD] = "UPDATE users SET password_hash = ?2 WHERE address = ?1",
	[ST_USER_LIST] = "SELECT address, created FROM users ORDER BY domain, address",
	[ST_USER_COUNT] = "SELECT count(*) FROM users WHERE domain = ?1",
	[ST_ALIAS_POS] = "SELECT coalesce(max(position), 0) FROM aliases WHERE address = ?1 AND is_regex = ?2",
	[ST_ALIAS_ADD] = "INSERT OR IGNORE INTO aliases(address, is_regex, target, position) VALUES (?1, ?2, ?3, ?4)",
	[ST_ALIAS_DEL] = "DELETE FROM aliases WHERE address = ?1",
	[ST_ALIAS_LIST] = "SELECT address, is_regex, target FROM aliases a ORDER BY is_regex, "
			  "CASE WHEN is_regex THEN (SELECT min(id) FROM aliases b WHERE b.address = a.address "
			  "AND b.is_regex = 1) ELSE 0 END, address, position",
	[ST_ALIAS_LOOKUP] = "SELECT address, is_regex, target FROM aliases WHERE address = ?1 AND is_regex = 0 "
			    "ORDER BY position",
	[ST_ALIAS_REGEX] = "SELECT address, is_regex, target FROM aliases a WHERE is_regex = 1 ORDER BY "
			   "(SELECT min(id) FROM aliases b WHERE b.address = a.address AND b.is_regex = 1), position",
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
};

static const char schema_sql[] =
	"CREATE TABLE IF NOT EXISTS domains("
	" name TEXT PRIMARY KEY,"
	" type TEXT NOT NULL CHECK (type IN ('local', 'relay', 'backup')),"
	" relay TEXT,"
	" alias_of TEXT,"
	" created INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS users("
	" address TEXT PRIMARY KEY,"
	" domain TEXT NOT NULL,"
	" password_hash TEXT NOT NULL,"
	" created INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS users_domain ON users(domain, address);"
	"CREATE TABLE IF NOT EXISTS aliases("
	" id INTEGER PRIMARY KEY,"
	" address TEXT NOT NULL,"
	" is_regex INTEGER NOT NULL DEFAULT 0,"
	" target TEXT NOT NULL,"
	" position INTEGER NOT NULL,"
	" UNIQUE (address, is_regex, target));"
	"CREATE INDEX IF NOT EXISTS aliases_lookup ON aliases(address, is_regex, position);"
	"CREATE TABLE IF NOT EXISTS transports("
	" domain TEXT PRIMARY KEY,"
	" relay TEXT NOT NULL);"
	"PRAGMA user_version = 1;";

struct directory {
	sqlite3 *db;
	sqlite3_stmt *stmt[ST_COUNT];
	bool readonly;
	bool in_transaction;
	int64_t generation;
	int64_t last_data_version;
	void *cache;
	void (*cache_free)(void *cache);
};

char *directory_path(const struct mr_config *cfg)
{
	return conf_path(cfg, DIRECTORY_PATH);
}

static int make_dir(const char *path, mode_t mode, char **error_r)
{
	if (mkdir(path, mode) == 0 || errno == EEXIST) {
		struct stat st;
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			return 0;
		*error_r = xasprintf("%s exists and is not a directory", path);
		return -1;
	}
	*error_r = xasprintf("cannot create %s: %s", path, strerror(errno));
	return -1;
}

int directory_prepare(const struct mr_config *cfg, const char *owner_user, char **error_r)
{
	*error_r = NULL;
	/* data_dir's parents: created like mkdir -p, 0755. */
	char *p = xstrdup(cfg->data_dir);
	for (char *slash = strchr(p + 1, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			*error_r = xasprintf("cannot create %s: %s", p, strerror(errno));
			free(p);
			return -1;
		}
		*slash = '/';
	}
	free(p);
	if (make_dir(cfg->data_dir, 0755, error_r) < 0)
		return -1;
	char *dir = conf_path(cfg, DIRECTORY_DIR);
	int ret = make_dir(dir, 0750, error_r);
	if (ret == 0 && geteuid() == 0 && owner_user != NULL) {
		struct passwd *pw = getpwnam(owner_user);
		if (pw == NULL) {
			*error_r = xasprintf("user %s does not exist (run scripts/install-deps)", owner_user);
			ret = -1;
		} else {
			static const char *const files[] = { "", "/directory.db", "/directory.db-wal", "/directory.db-shm" };
			for (size_t i = 0; i < sizeof(files) / sizeof(files[0]) && ret == 0; i++) {
				char *f = xasprintf("%s%s", dir, files[i]);
				if (lchown(f, pw->pw_uid, pw->pw_gid) < 0 && errno != ENOENT) {
					*error_r = xasprintf("cannot chown %s: %s", f, strerror(errno));
					ret = -1;
				}
				free(f);
			}
		}
	}
	free(dir);
	return ret;
}

static int db_error(struct directory *d, char **error_r, const char *what)
{
	*error_r = xasprintf("directory: %s: %s", what, sqlite3_errmsg(d->db));
	return -1;
}

static sqlite3_stmt *stmt_get(struct directory *d, enum directory_stmt id, char **error_r)
{
	if (d->stmt[id] == NULL) {
		if (sqlite3_prepare_v3(d->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &d->stmt[id], NULL) != SQLITE_OK) {
			db_error(d, error_r, "prepare");
			return NULL;
		}
	}
	sqlite3_reset(d->stmt[id]);
	sqlite3_clear_bindings(d->stmt[id]);
	return d->stmt[id];
}

struct directory *directory_open(const char *path, bool readonly, char **error_r)
{
	struct directory *d = xcalloc(1, sizeof(*d));
	int flags = readonly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	char *err = NULL;

	*error_r = NULL;
	d->readonly = readonly;
	if (sqlite3_open_v2(path, &d->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		*error_r = xasprintf("directory: cannot open %s: %s", path,
				     d->db != NULL ? sqlite3_errmsg(d->db) : "out of memory");
		directory_close(&d);
		return NULL;
	}
	sqlite3_busy_timeout(d->db, 5000);
	sqlite3_extended_result_codes(d->db, 1);
	/* Never unlink -wal/-shm on close: other processes (roles, CLI) may have them open. */
	int persist = 1;
	sqlite3_file_control(d->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
	const char *setup = readonly ? "PRAGMA query_only = 1;"
				     : "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;";
	if (sqlite3_exec(d->db, setup, NULL, NULL, &err) != SQLITE_OK ||
	    (!readonly && sqlite3_exec(d->db, schema_sql, NULL, NULL, &err) != SQLITE_OK)) {
		*error_r = xasprintf("directory: %s: %s", path, err != NULL ? err : sqlite3_errmsg(d->db));
		sqlite3_free(err);
		directory_close(&d);
		return NULL;
	}
	if (readonly) {
		/* Fail now, not at the first lookup, if the file is not a directory. */
		sqlite3_stmt *st = stmt_get(d, ST_DOMAIN_LIST, error_r);
		if (st == NULL) {
			char *e = *error_r;
			*error_r = xasprintf("%s (%s)", e, path);
			free(e);
			directory_close(&d);
			return NULL;
		}
	}
	d->generation = 1;
	d->last_data_version = -1;
	return d;
}

void directory_close(struct directory **dp)
{
	struct directory *d = *dp;
	if (d == NULL)
		return;
	if (d->cache_free != NULL)
		d->cache_free(d->cache);
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(d->stmt[i]);
	sqlite3_close(d->db);
	free(d);
	*dp = NULL;
}

int64_t directory_generation(struct directory *d)
{
	char *error = NULL;
	sqlite3_stmt *st = stmt_get(d, ST_DATA_VERSION, &error);
	if (st == NULL) {
		free(error);
		return -1;
	}
	if (sqlite3_step(st) != SQLITE_ROW)
		return -1;
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (v != d->last_data_version) {
		if (d->last_data_version != -1)
			d->generation++;
		d->last_data_version = v;
	}
	return d->generation;
}

struct sqlite3 *directory_sqlite(struct directory *d)
{
	return d->db;
}

void *directory_cache(struct directory *d)
{
	return d->cache;
}

void directory_set_cache(struct directory *d, void *cache, void (*free_fn)(void *cache))
{
	if (d->cache_free != NULL && d->cache != cache)
		d->cache_free(d->cache);
	d->cache = cache;
	d->cache_free = free_fn;
}

/* Our own commits don't move data_version: count them here. */
static void directory_changed(struct directory *d)
{
	d->generation++;
}

static const char *const domain_type_names[] = {
	[DIRECTORY_DOMAIN_LOCAL] = "local",
	[DIRECTORY_DOMAIN_RELAY] = "relay",
	[DIRECTORY_DOMAIN_BACKUP] = "backup",
};

const char *directory_domain_type_name(enum directory_domain_type type)
{
	if ((unsigned)type > DIRECTORY_DOMAIN_BACKUP)
		return "unknown";
	return domain_type_names[type];
}

bool directory_domain_type_parse(const char *name, enum directory_domain_type *type_r)
{
	for (unsigned i = 0; i <= DIRECTORY_DOMAIN_BACKUP; i++) {
		if (strcmp(name, domain_type_names[i]) == 0) {
			*type_r = (enum directory_domain_type)i;
			return true;
		}
	}
	return false;
}

/* ---- syntax ---- */

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool domain_check(const char *s, size_t len, const char **why_r)
{
	size_t label = 0;
	if (len == 0 || len > 253) {
		*why_r = "domain must be 1-253 characters";
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0) {
				*why_r = "empty label in domain";
				return false;
			}
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_')) {
			*why_r = "domain may contain only letters, digits, '-', '_' and '.'";
			return false;
		}
		if (++label > 63) {
			*why_r = "domain label longer than 63 characters";
			return false;
		}
	}
	if (label == 0) {
		*why_r = "domain ends with '.'";
		return false;
	}
	return true;
}

static bool has_8bit(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

/* U-labels to A-labels (IDNA2008 with UTS #46 non-transitional mapping); NULL if impossible. */
static char *domain_to_ascii(const char *in, size_t len)
{
	if (len > 1024)
		return NULL;
	char *copy = xstrndup(in, len), *out = NULL;
	int rc = idn2_to_ascii_8z(copy, &out, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
	free(copy);
	if (rc != IDN2_OK)
		return NULL;
	char *ret = xstrdup(out);
	idn2_free(out);
	return ret;
}

bool directory_domain_normalize(const char *in, char *out, size_t size, const char **why_r)
{
	size_t len = strlen(in);
	if (has_8bit(in, len)) {
		char *ascii = domain_to_ascii(in, len);
		if (ascii == NULL) {
			*why_r = "not a valid internationalized domain name";
			return false;
		}
		bool ok = !has_8bit(ascii, strlen(ascii)) && directory_domain_normalize(ascii, out, size, why_r);
		free(ascii);
		return ok;
	}
	if (!domain_check(in, len, why_r))
		return false;
	if (len + 1 > size) {
		*why_r = "too long";
		return false;
	}
	for (size_t i = 0; i <= len; i++)
		out[i] = ascii_lower(in[i]);
	return true;
}

bool directory_address_normalize(const char *in, bool allow_catchall, char *out, size_t size,
				 const char **why_r)
{
	const char *at = strrchr(in, '@');
	if (at == NULL) {
		*why_r = "address needs an '@'";
		return false;
	}
	size_t local_len = (size_t)(at - in), len = strlen(in);
	if (local_len == 0 && !allow_catchall) {
		*why_r = "empty local part";
		return false;
	}
	if (local_len > 64) {
		*why_r = "local part longer than 64 characters";
		return false;
	}
	for (size_t i = 0; i < local_len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c <= ' ' || c == 0x7f || strchr("@<>\"(),:;[\\]", c) != NULL) {
			*why_r = "bad character in local part";
			return false;
		}
	}
	if (local_len > 0 && (in[0] == '.' || in[local_len - 1] == '.' || memmem(in, local_len, "..", 2) != NULL)) {
		*why_r = "misplaced '.' in local part";
		return false;
	}
	if (has_8bit(at + 1, len - local_len - 1)) {
		char *ascii = domain_to_ascii(at + 1, len - local_len - 1);
		if (ascii == NULL || has_8bit(ascii, strlen(ascii))) {
			free(ascii);
			*why_r = "not a valid internationalized domain name";
			return false;
		}
		char *again = xasprintf("%.*s@%s", (int)local_len, in, ascii);
		free(ascii);
		bool ok = directory_address_normalize(again, allow_catchall, out, size, why_r);
		free(again);
		return ok;
	}
	if (!domain_check(at + 1, len - local_len - 1, why_r))
		return false;
	if (len > DIRECTORY_MAX_ADDRESS || len + 1 > size) {
		*why_r = "address too long";
		return false;
	}
	for (size_t i = 0; i <= len; i++)
		out[i] = ascii_lower(in[i]);
	return true;
}

bool directory_target_check(const char *target, const char **why_r)
{
	size_t len = strlen(target);
	if (len == 0 || len > DIRECTORY_MAX_TARGET) {
		*why_r = "target must be 1-1024 characters";
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)target[i];
		if (c <= ' ' || c == 0x7f) {
			*why_r = "space or control character in target";
			return false;
		}
	}
	if (strchr(target, '@') != NULL) {
		/* Regex targets may hold $1..$9: checked after substitution. */
		if (strchr(target, '$') != NULL)
			return true;
		char buf[DIRECTORY_MAX_ADDRESS + 1];
		return directory_address_normalize(target, false, buf, sizeof(buf), why_r);
	}
	const char *colon = strchr(target, ':');
	if (colon == NULL || colon == target || colon[1] == '\0') {
		*why_r = "target must be an address or a named target KIND:NAME (webhook:x, pipe:x)";
		return false;
	}
	for (const char *p = target; p < colon; p++) {
		if (!(*p >= 'a' && *p <= 'z')) {
			*why_r = "named target kind must be lowercase letters (webhook, pipe)";
			return false;
		}
	}
	return true;
}

/* ---- domains ---- */

static char *column_dup(sqlite3_stmt *st, int col)
{
	const unsigned char *v = sqlite3_column_text(st, col);
	return v != NULL ? xstrdup((const char *)v) : NULL;
}

static int step_done(struct directory *d, sqlite3_stmt *st, char **error_r)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_error(d, error_r, "write");
	int changes = sqlite3_changes(d->db);
	if (changes > 0)
		directory_changed(d);
	return changes > 0 ? 1 : 0;
}

int directory_domain_add(struct directory *d, const struct directory_domain *dom, char **error_r)
{
	char name[256], alias_of[256];
	const char *why;
	sqlite3_stmt *st;

	*error_r = NULL;
	if (!directory_domain_normalize(dom->name, name, sizeof(name), &why)) {
		*error_r = xasprintf("bad domain '%s': %s", dom->name, why);
		return -1;
	}
	if (dom->alias_of != NULL) {
		if (!directory_domain_normalize(dom->alias_of, alias_of, sizeof(alias_of), &why)) {
			*error_r = xasprintf("bad domain '%s': %s", dom->alias_of, why);
			return -1;
		}
		if (strcmp(name, alias_of) == 0) {
			*error_r = xasprintf("domain %s cannot be an alias of itself", name);
			return -1;
		}
	}
	if ((st = stmt_get(d, ST_DOMAIN_ADD, error_r)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, directory_domain_type_name(dom->type), -1, SQLITE_STATIC);
	if (dom->relay != NULL)
		sqlite3_bind_text(st, 3, dom->relay, -1, SQLITE_TRANSIENT);
	if (dom->alias_of != NULL)
		sqlite3_bind_text(st, 4, alias_of, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)time(NULL));
	return step_done(d, st, error_r);
}

int directory_domain_del(struct directory *d, const char *name, char **error_r)
{
	char n[256];
	const char *why;
	sqlite3_stmt *st;

	*error_r = NULL;
	if (!directory_domain_normalize(name, n, sizeof(n), &why))
		return 0;
	if ((st = stmt_get(d, ST_DOMAIN_DEL, error_r)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, n, -1, SQLITE_TRANSIENT);
	return step_done(d, st, error_r);
}

static void domain_from_row(sqlite3_stmt *st, struct directory_domain *dom)
{
	const char *type = (const char *)sqlite3_column_text(st, 1);
	dom->name = column_dup(st, 0);
	if (type == NULL || !directory_domain_type_parse(type, &dom->type))
		dom->type = DIRECTORY_DOMAIN_LOCAL;
	dom->relay = column_dup(st, 2);
	dom->alias_of = column_dup(st, 3);
}

int directory_domain_get(struct directory *d, const char *name, struct directory_domain *dom_r, char **error_r)
{
	char n[256];
	const char *why;
	sqlite3_stmt *st;

	*error_r = NULL;
	memset(dom_r, 0, sizeof(*dom_r));
	if (!directory_domain_normalize(name, n, sizeof(n), &why))
		return 0;
	if ((st = stmt_get(d, ST_DOMAIN_GET, error_r)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, n, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		domain_from_row(st, dom_r);
		sqlite3_reset(st);
		return 1;
	}
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return 0;
	return db_error(d, error_r, "read");
}

void directory_domain_deinit(struct directory_domain *dom)
{
	xfree(&dom->name);
	xfree(&dom->relay);
	xfree(&dom->alias_of);
}

int directory_domain_list(struct directory *d, directory_domain_cb *cb, void *ctx, char **error_r)
{
	sqlite3_stmt *st;
	int rc;

	*error_r = NULL;
	if ((st = stmt_get(d, ST_DOMAIN_LIST, error_r)) == NULL)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct directory_domain dom;
		domain_from_row(st, &dom);
		int stop = cb(&dom, ctx);
		directory_domain_deinit(&dom);
		if (stop != 0)
			break;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_error(d, error_r, "read");
	return 1;
}

/* ---- users ---- */

static int address_arg(const char *in, char *out, char **error_r)
{
	const char *why;
	if (!directory_address_normalize(in, false, out, DIRECTORY_MAX_ADDRESS + 1, &why)) {
		*error_r = xasprintf("bad address '%s': %s", in, why);
		return -1;
	}
	return 0;
}

int directory_user_add(struct directory *d, const char *address, const char *password_hash, char **error_r)
{
	char a[DIRECTORY_MAX_ADDRESS + 1];
	struct directory_domain dom;
	sqlite3_stmt *st;

	*error_r = NULL;
	if (address_arg(address, a, error_r) < 0)
		return -1;
	const char *domain = strrchr(a, '@') + 1;
	int ret = directory_domain_get(d, domain, &dom, error_r);
	if (ret < 0)
		return -1;
	if (ret == 0) {
		*error_r = xasprintf("domain %s does not exist (add it first: mailroute domain add %s)", domain, domain);
		return -1;
	}
	bool local = dom.type == DIRECTORY_DOMAIN_LOCAL && dom.alias_of == NULL;
	if (!local) {
		*error_r = dom.alias_of != NULL
			? xasprintf("domain %s is an alias of %s: add the user there", domain, dom.alias_of)
			: xasprintf("domain %s is of type %s, not local", domain, directory_domain_type_name(dom.type));
		directory_domain_deinit(&dom);
		return -1;
	}
	directory_domain_deinit(&dom);
	if ((st = stmt_get(d, ST_USER_ADD, error_r)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, domain, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 3, password_hash, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
	return step_done(d, st, error_r);
}

int directory_user_del(struct directory *d, const char *address, char **error_r)
{
	char a[DIRECTORY_MAX_ADDRESS + 1];
	sqlite3_stmt *st;

	*error_r = NULL;
	if (address_arg(address, a, error_r) < 0) {
		xfree(error_r);
		return 0;
	}
	if ((st = stmt_get(d, ST_USER_DEL, error_r)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
	return step_done(d, st, error_r);
}

int directory_user_get(struct directory *d, const char *address, char **hash_r, char **error_r)
{
	char a[DIRECTORY_MAX_ADDRESS + 1];
	const char *why;
	sqlite3_stmt *st;

	*error_r = NULL;
	if (hash_r != NULL)
		*hash_r = NULL;
	if (!directory_address_normalize(address, false, a, sizeof(a), &why))
		return 0;
	if ((st = stmt_get(d, ST_USER_GET, error_r)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (hash_r != NULL)
			*hash_r = column_dup(st, 0);
		sqlite3_reset(st);
		return 1;
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_error(d, error_r, "read");
}

int directory_user_set_password(struct directory *d, const char *address, const char *password_hash,
				char **error_r)
{
	char a[DIRECTORY_MAX_ADDRESS + 1];
	sqlite3_stmt *st;

	*error_r = NULL;
	if (address_arg(address, a, error_r) < 0) {
		xfree(error_r);
		return 0;
	}
	if ((st = stmt_get(d, ST_USER_PASSWD, error_r)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, password_hash, -1, SQLITE_TRANSIENT);
	return step_done(d, st, error_r);
}

int directory_user_list(struct directory *d, directory_user_cb *cb, void *ctx, char **error_r)
{
	sqlite3_stmt *st;
	int rc;

	*error_r = NULL;
	if ((st = stmt_get(d, ST_USER_LIST, error_r)) == NULL)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *a = (const char *)sqlite3_column_text(st, 0);
		if (cb(a != NULL ? a : "", sqlite3_column_int64(st, 1), ctx) != 0)
			break;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_error(d, error_r, "read");
	return 1;
}

int64_t directory_user_count(struct directory *d, const char *domain, char **error_r)
{
	char n[256];
	const char *why;
	sqlite3_stmt *st;

	*error_r = NULL;
	if (!directory_domain_normalize(domain, n, sizeof(n), &why))
		return 0;
	if ((st = stmt_get(d, ST_USER_COUNT, error_r)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, n, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		return db_error(d, error_r, "read");
	}
	int64_t count = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return count;
}

/* ---- aliases ---- */

static int alias_key(const char *address, bool is_regex, char *out, size_t size, char **error_r)
{
	const char *why;
	if (is_regex) {
		size_t len = strlen(address);
		if (len == 0 || len >= size) {
			*error_r = xasprintf("regex pattern must be 1-%zu bytes", size - 1);
			return -1;
		}
		memcpy(out, address, len + 1);
		return 0;
	}
	if (!directory_address_normalize(address, true, out, size, &why)) {
		*error_r = xasprintf("bad alias address '%s': %s", address, why);
		return -1;
	}
	return 0;
}

int directory_alias_add(struct directory *d, const char *address, bool is_regex,
			const char *const *targets, size_t count, char **error_r)
{
	char key[DIRECTORY_MAX_TARGET + 1];
	const char *why;
	sqlite3_stmt *st;
	int added = 0;

	*error_r = NULL;
	if (alias_key(address, is_regex, key, sizeof(key), error_r) < 0)
		return -1;
	if (count == 0) {
		*error_r = xstrdup("an alias needs at least one target");
		return -1;
	}
	for (size_t i = 0; i < count; i++) {
		if (!directory_target_check(targets[i], &why)) {
			*error_r = xasprintf("bad target '%s': %s", targets[i], why);
			return -1;
		}
	}
	bool own_tx = !d->in_transaction;
	if (own_tx && directory_begin(d, error_r) < 0)
		return -1;
	if ((st = stmt_get(d, ST_ALIAS_POS, error_r)) == NULL)
		goto fail;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 2, is_regex);
	if (sqlite3_step(st) != SQLITE_ROW) {
		db_error(d, error_r, "read");
		goto fail;
	}
	int64_t pos = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	for (size_t i = 0; i < count; i++) {
		char target[DIRECTORY_MAX_TARGET + 1];
		size_t len = strlen(targets[i]);
		memcpy(target, targets[i], len + 1);
		/* Addresses are stored lowercase like everything else; named targets and regex templates as written. */
		if (strchr(target, '@') != NULL && strchr(target, '$') == NULL)
			for (size_t j = 0; j < len; j++)
				target[j] = ascii_lower(target[j]);
		if ((st = stmt_get(d, ST_ALIAS_ADD, error_r)) == NULL)
			goto fail;
		sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 2, is_regex);
		sqlite3_bind_text(st, 3, target, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 4, pos + 1);
		int ret = step_done(d, st, error_r);
		if (ret < 0)
			goto fail;
		if (ret > 0) {
			pos++;
			added = 1;
		}
	}
	if (own_tx && directory_commit(d, error_r) < 0)
		goto fail;
	return added;
fail:
	if (own_tx) {
		sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
		d->in_transaction = false;
	}
	return -1;
}

int directory_alias_del(struct directory *d, const char *address, char **error_r)
{
	char key[DIRECTORY_MAX_TARGET + 1];
	sqlite3_stmt *st;

	*error_r = NULL;
	size_t len = strlen(address);
	if (len == 0 || len >= sizeof(key))
		return 0;
	/* An exact alias is stored lowercase; a regex pattern as written: try both. */
	const char *why;
	if (!directory_address_normalize(address, true, key, sizeof(key), &why))
		memcpy(key, address, len + 1);
	if ((st = stmt_get(d, ST_ALIAS_DEL, error_r)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
	int ret = step_done(d, st, error_r);
	if (ret == 0 && strcmp(key, address) != 0) {
		if ((st = stmt_get(d, ST_ALIAS_DEL, error_r)) == NULL)
			return -1;
		sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
		ret = step_done(d, st, error_r);
	}
	return ret;
}

static int alias_rows(struct directory *d, sqlite3_stmt *st, directory_alias_cb *cb, void *ctx, char **error_r)
{
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *a = (const char *)sqlite3_column_text(st, 0);
		const char *t = (const char *)sqlite3_column_text(st, 2);
		if (cb(a != NULL ? a : "", sqlite3_column_int(st, 1) != 0, t != NULL ? t : "", ctx) != 0)
			break;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_error(d, error_r, "read");
	return 1;
}

int directory_alias_list(struct directory *d, directory_alias_cb *cb, void *ctx, char **error_r)
{
	sqlite3_stmt *st;
	*error_r = NULL;
	if ((st = stmt_get(d, ST_ALIAS_LIST, error_r)) == NULL)
		return -1;
	return alias_rows(d, st, cb, ctx, error_r);
}

int directory_alias_lookup(struct directory *d, const char *address, directory_alias_cb *cb, void *ctx,
			   char **error_r)
{
	sqlite3_stmt *st;
	*error_r = NULL;
	if ((st = stmt_get(d, ST_ALIAS_LOOKUP, error_r)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	return alias_rows(d, st, cb, ctx, error_r);
}

int directory_alias_regex_list(struct directory *d, directory_alias_cb *cb, void *ctx, char **error_r)
{
	sqlite3_stmt *st;
	*error_r = NULL;
	if ((st = stmt_get(d, ST_ALIAS_REGEX, error_r)) == NULL)
		return -1;
	return alias_rows(d, st, cb, ctx, error_r);
}

int directory_begin(struct directory *d, char **error_r)
{
	sqlite3_stmt *st;
	*error_r = NULL;
	if ((st = stmt_get(d, ST_BEGIN, error_r)) == NULL)
		return -1;
	if (sqlite3_step(st) != SQLITE_DONE) {
		sqlite3_reset(st);
		return db_error(d, error_r, "begin");
	}
	sqlite3_reset(st);
	d->in_transaction = true;
	return 1;
}

int directory_commit(struct directory *d, char **error_r)
{
	sqlite3_stmt *st;
	*error_r = NULL;
	if ((st = stmt_get(d, ST_COMMIT, error_r)) == NULL)
		return -1;
	if (sqlite3_step(st) != SQLITE_DONE) {
		sqlite3_reset(st);
		return db_error(d, error_r, "commit");
	}
	sqlite3_reset(st);
	d->in_transaction = false;
	directory_changed(d);
	return 1;
}
