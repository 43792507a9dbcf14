/* relays: outbound relays, groups and transports in the directory database (relays.h). */
#include "lib-route/relays.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib-route/directory.h"
#include "lib/xalloc.h"

static const char schema_sql[] =
	"CREATE TABLE IF NOT EXISTS relays("
	" name TEXT PRIMARY KEY,"
	" host TEXT NOT NULL,"
	" port INTEGER NOT NULL,"
	" grp TEXT,"
	" weight INTEGER NOT NULL DEFAULT 1,"
	" tls TEXT NOT NULL DEFAULT 'may' CHECK (tls IN ('none', 'may', 'require')),"
	" auth_user TEXT,"
	" auth_pass TEXT,"
	" created INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS relays_grp ON relays(grp, name);"
	"CREATE TABLE IF NOT EXISTS transports("
	" domain TEXT PRIMARY KEY,"
	" relay TEXT NOT NULL);";

#define RELAY_COLUMNS "name, host, port, grp, weight, tls, auth_user, auth_pass"

static int db_error(sqlite3 *db, char **error_r, const char *what)
{
	*error_r = xasprintf("directory: %s: %s", what, sqlite3_errmsg(db));
	return -1;
}

/*
 * 1 when the relays table is there (created on a writable connection when
 * create is set), 0 when it is not (read-only, never written), -1 error.
 */
static int schema(sqlite3 *db, bool create, char **error_r)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'relays'", -1, &st,
			       NULL) != SQLITE_OK)
		return db_error(db, error_r, "prepare");
	int r = sqlite3_step(st);
	sqlite3_finalize(st);
	if (r == SQLITE_ROW)
		return 1;
	if (r != SQLITE_DONE)
		return db_error(db, error_r, "schema");
	if (!create || sqlite3_db_readonly(db, "main") == 1)
		return 0;
	char *err = NULL;
	if (sqlite3_exec(db, schema_sql, NULL, NULL, &err) != SQLITE_OK) {
		*error_r = xasprintf("directory: relays schema: %s", err != NULL ? err : sqlite3_errmsg(db));
		sqlite3_free(err);
		return -1;
	}
	return 1;
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql, char **error_r)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		db_error(db, error_r, "prepare");
		sqlite3_finalize(st);
		return NULL;
	}
	return st;
}

static int exec(sqlite3 *db, const char *sql, char **error_r)
{
	char *err = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		*error_r = xasprintf("directory: %s", err != NULL ? err : sqlite3_errmsg(db));
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

static char *col_str(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);
	return s != NULL ? xstrdup((const char *)s) : NULL;
}

static void row_to_info(sqlite3_stmt *st, struct relay_info *r)
{
	r->name = col_str(st, 0);
	r->host = col_str(st, 1);
	r->port = (unsigned)sqlite3_column_int(st, 2);
	r->group = col_str(st, 3);
	r->weight = (unsigned)sqlite3_column_int(st, 4);
	r->tls = col_str(st, 5);
	r->auth_user = col_str(st, 6);
	r->auth_pass = col_str(st, 7);
}

void relay_info_deinit(struct relay_info *r)
{
	free(r->name);
	free(r->host);
	free(r->group);
	free(r->tls);
	free(r->auth_user);
	if (r->auth_pass != NULL)
		secret_free(r->auth_pass);
	memset(r, 0, sizeof(*r));
}

void relays_group_free(struct relay_info **list, size_t n)
{
	if (*list == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		relay_info_deinit(&(*list)[i]);
	free(*list);
	*list = NULL;
}

/* ---- syntax ---- */

bool relays_name_check(const char *name, const char **why_r)
{
	size_t n = strlen(name);
	if (n == 0 || n > RELAYS_MAX_NAME) {
		*why_r = "a name must be 1-64 characters";
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-')) {
			*why_r = "a name may contain only letters, digits, '.', '_' and '-'";
			return false;
		}
	}
	if (name[0] == '-') {
		*why_r = "a name cannot start with '-'";
		return false;
	}
	return true;
}

bool relays_tls_check(const char *tls)
{
	return strcmp(tls, "none") == 0 || strcmp(tls, "may") == 0 || strcmp(tls, "require") == 0;
}

static bool port_parse(const char *p, unsigned *port_r)
{
	unsigned long v = 0;
	if (*p == '\0' || strlen(p) > 5)
		return false;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v < 1 || v > 65535)
		return false;
	*port_r = (unsigned)v;
	return true;
}

static bool ipv6_check(const char *s, size_t n)
{
	if (n < 2 || n > 45)
		return false;
	size_t colons = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == ':')
			colons++;
		else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.'))
			return false;
	}
	return colons >= 2;
}

bool relays_hostport_parse(const char *in, char *host, size_t size, unsigned *port_r, const char **why_r)
{
	const char *port = NULL;
	*port_r = RELAYS_DEFAULT_PORT;
	if (size < RELAYS_MAX_HOST + 1) {
		*why_r = "buffer too small";
		return false;
	}
	if (in[0] == '[') {
		const char *end = strchr(in, ']');
		if (end == NULL || !ipv6_check(in + 1, (size_t)(end - in - 1))) {
			*why_r = "bad IPv6 address";
			return false;
		}
		if (end[1] == ':')
			port = end + 2;
		else if (end[1] != '\0') {
			*why_r = "expected HOST:PORT";
			return false;
		}
		size_t n = (size_t)(end - in - 1);
		for (size_t i = 0; i < n; i++)
			host[i] = in[1 + i] >= 'A' && in[1 + i] <= 'F' ? (char)(in[1 + i] - 'A' + 'a') : in[1 + i];
		host[n] = '\0';
	} else {
		const char *colon = strchr(in, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL) {
			*why_r = "write an IPv6 address as [ADDRESS]:PORT";
			return false;
		}
		size_t n = colon != NULL ? (size_t)(colon - in) : strlen(in);
		char buf[RELAYS_MAX_HOST + 1];
		if (n == 0 || n > RELAYS_MAX_HOST) {
			*why_r = "host must be 1-255 characters";
			return false;
		}
		memcpy(buf, in, n);
		buf[n] = '\0';
		if (!directory_domain_normalize(buf, host, size, why_r))
			return false;
		port = colon != NULL ? colon + 1 : NULL;
	}
	if (port != NULL && !port_parse(port, port_r)) {
		*why_r = "port must be 1-65535";
		return false;
	}
	return true;
}

char *relays_hostport(const struct relay_info *r)
{
	if (strchr(r->host, ':') != NULL)
		return xasprintf("[%s]:%u", r->host, r->port);
	return xasprintf("%s:%u", r->host, r->port);
}

static bool secret_check(const char *s, const char *what, char **error_r)
{
	size_t n = strlen(s);
	if (n == 0 || n > RELAYS_MAX_SECRET) {
		*error_r = xasprintf("%s must be 1-%d bytes", what, RELAYS_MAX_SECRET);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			*error_r = xasprintf("%s has control characters", what);
			return false;
		}
	}
	return true;
}

/* ---- relays ---- */

/* 1 when a row matches sql with ?1 = a (and ?2 = b when b is set), 0 none, -1 error. */
static int exists(sqlite3 *db, const char *sql, const char *a, const char *b, char **error_r)
{
	sqlite3_stmt *st = prepare(db, sql, error_r);
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
	if (b != NULL)
		sqlite3_bind_text(st, 2, b, -1, SQLITE_TRANSIENT);
	int r = sqlite3_step(st);
	int ret = r == SQLITE_ROW ? 1 : r == SQLITE_DONE ? 0 : db_error(db, error_r, "query");
	sqlite3_finalize(st);
	return ret;
}

int relays_add(struct directory *d, const struct relay_info *r, char **error_r)
{
	sqlite3 *db = directory_sqlite(d);
	const char *why;
	char host[RELAYS_MAX_HOST + 1];
	unsigned port;

	*error_r = NULL;
	if (!relays_name_check(r->name, &why)) {
		*error_r = xasprintf("bad relay name '%s': %s", r->name, why);
		return -1;
	}
	if (r->group != NULL && !relays_name_check(r->group, &why)) {
		*error_r = xasprintf("bad group name '%s': %s", r->group, why);
		return -1;
	}
	bool host_ok;
	if (r->host == NULL) {
		host_ok = false;
		why = "missing";
	} else if (r->port == 0) {
		host_ok = relays_hostport_parse(r->host, host, sizeof(host), &port, &why);
	} else if (strchr(r->host, '[') != NULL) {
		host_ok = false;
		why = "expected a bare host with a port";
	} else if (strchr(r->host, ':') != NULL) {
		/* a bare IPv6 address */
		char *b = xasprintf("[%s]", r->host);
		host_ok = relays_hostport_parse(b, host, sizeof(host), &port, &why);
		free(b);
	} else {
		host_ok = relays_hostport_parse(r->host, host, sizeof(host), &port, &why);
	}
	if (!host_ok) {
		*error_r = xasprintf("bad host '%s': %s", r->host != NULL ? r->host : "", why);
		return -1;
	}
	if (r->port != 0)
		port = r->port;
	if (port > 65535) {
		*error_r = xstrdup("port must be 1-65535");
		return -1;
	}
	unsigned weight = r->weight == 0 ? 1 : r->weight;
	if (weight > RELAYS_MAX_WEIGHT) {
		*error_r = xasprintf("weight must be 1-%d", RELAYS_MAX_WEIGHT);
		return -1;
	}
	const char *tls = r->tls != NULL ? r->tls : "may";
	if (!relays_tls_check(tls)) {
		*error_r = xasprintf("bad tls '%s' (expected none, may or require)", tls);
		return -1;
	}
	if ((r->auth_user == NULL) != (r->auth_pass == NULL)) {
		*error_r = xstrdup("auth needs both a user and a password");
		return -1;
	}
	if (r->auth_user != NULL && (!secret_check(r->auth_user, "auth user", error_r) ||
				     !secret_check(r->auth_pass, "auth password", error_r)))
		return -1;
	if (schema(db, true, error_r) < 0)
		return -1;
	int ret = exists(db, "SELECT 1 FROM relays WHERE name = ?1", r->name, NULL, error_r);
	if (ret != 0)
		return ret < 0 ? -1 : 0;
	/* One namespace for relays and groups (a transport names either). */
	if ((r->group == NULL || strcmp(r->group, r->name) != 0) &&
	    (ret = exists(db, "SELECT 1 FROM relays WHERE grp = ?1", r->name, NULL, error_r)) != 0) {
		if (ret > 0)
			*error_r = xasprintf("'%s' is the name of a group: choose another relay name", r->name);
		return -1;
	}
	if (r->group != NULL && strcmp(r->group, r->name) != 0 &&
	    (ret = exists(db, "SELECT 1 FROM relays WHERE name = ?1 AND (grp IS NULL OR grp <> ?1)", r->group, NULL,
			  error_r)) != 0) {
		if (ret > 0)
			*error_r = xasprintf("'%s' is the name of a relay outside that group: choose another group name",
					     r->group);
		return -1;
	}
	sqlite3_stmt *st = prepare(db, "INSERT OR IGNORE INTO relays(" RELAY_COLUMNS ", created) "
				       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)", error_r);
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, r->name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, host, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 3, (int)port);
	if (r->group != NULL)
		sqlite3_bind_text(st, 4, r->group, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 5, (int)weight);
	sqlite3_bind_text(st, 6, tls, -1, SQLITE_TRANSIENT);
	if (r->auth_user != NULL) {
		sqlite3_bind_text(st, 7, r->auth_user, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 8, r->auth_pass, -1, SQLITE_TRANSIENT);
	}
	sqlite3_bind_int64(st, 9, (sqlite3_int64)time(NULL));
	int s = sqlite3_step(st);
	sqlite3_finalize(st);
	if (s != SQLITE_DONE)
		return db_error(db, error_r, "relay add");
	return sqlite3_changes(db) > 0 ? 1 : 0;
}

int relays_del(struct directory *d, const char *name, char **error_r)
{
	sqlite3 *db = directory_sqlite(d);
	*error_r = NULL;
	int ret = schema(db, true, error_r);
	if (ret <= 0)
		return ret;
	if (exec(db, "SAVEPOINT relays_del", error_r) < 0)
		return -1;
	sqlite3_stmt *st = prepare(db, "DELETE FROM relays WHERE name = ?1", error_r);
	if (st != NULL) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(st) != SQLITE_DONE)
			ret = db_error(db, error_r, "relay del");
		else
			ret = sqlite3_changes(db) > 0 ? 1 : 0;
		sqlite3_finalize(st);
	} else {
		ret = -1;
	}
	/* A transport must keep naming a relay or a group. */
	if (ret > 0 && (st = prepare(db, "SELECT domain, relay FROM transports t WHERE NOT EXISTS "
					  "(SELECT 1 FROM relays WHERE name = t.relay OR grp = t.relay) "
					  "ORDER BY domain LIMIT 1", error_r)) != NULL) {
		int s = sqlite3_step(st);
		if (s == SQLITE_ROW) {
			*error_r = xasprintf("transport %s uses %s, which would be left without relays: "
					     "delete or change the transport first",
					     (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1));
			ret = -1;
		} else if (s != SQLITE_DONE) {
			ret = db_error(db, error_r, "relay del");
		}
		sqlite3_finalize(st);
	} else if (ret > 0) {
		ret = -1;
	}
	char *e2 = NULL;
	if (ret < 0) {
		if (exec(db, "ROLLBACK TO relays_del; RELEASE relays_del", &e2) < 0)
			free(e2);
	} else if (exec(db, "RELEASE relays_del", &e2) < 0) {
		*error_r = e2;
		ret = -1;
	}
	return ret;
}

int relays_get(struct directory *d, const char *name, struct relay_info *r, char **error_r)
{
	sqlite3 *db = directory_sqlite(d);
	*error_r = NULL;
	memset(r, 0, sizeof(*r));
	int ret = schema(db, false, error_r);
	if (ret <= 0)
		return ret;
	sqlite3_stmt *st = prepare(db, "SELECT " RELAY_COLUMNS " FROM relays WHERE name = ?1", error_r);
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW) {
		row_to_info(st, r);
		ret = 1;
	} else {
		ret = s == SQLITE_DONE ? 0 : db_error(db, error_r, "relay get");
	}
	sqlite3_finalize(st);
	return ret;
}

/* Run a relay query (?1 = arg when set), calling cb for each row. */
static int relay_query(sqlite3 *db, const char *sql, const char *arg, relays_cb *cb, void *ctx, char **error_r)
{
	sqlite3_stmt *st = prepare(db, sql, error_r);
	if (st == NULL)
		return -1;
	if (arg != NULL)
		sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
	int s, ret = 1;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		struct relay_info r;
		row_to_info(st, &r);
		int stop = cb(&r, ctx);
		relay_info_deinit(&r);
		if (stop != 0)
			break;
	}
	if (s != SQLITE_ROW && s != SQLITE_DONE)
		ret = db_error(db, error_r, "relay list");
	sqlite3_finalize(st);
	return ret;
}

struct group_ctx {
	struct relay_info *list;
	size_t n, cap;
};

static int group_add(const struct relay_info *r, void *ctx)
{
	struct group_ctx *g = ctx;
	if (g->n == g->cap) {
		g->cap = g->cap == 0 ? 4 : g->cap * 2;
		g->list = xreallocarray(g->list, g->cap, sizeof(*g->list));
	}
	struct relay_info *c = &g->list[g->n++];
	c->name = xstrdup(r->name);
	c->host = xstrdup(r->host);
	c->port = r->port;
	c->group = r->group != NULL ? xstrdup(r->group) : NULL;
	c->weight = r->weight;
	c->tls = xstrdup(r->tls);
	c->auth_user = r->auth_user != NULL ? xstrdup(r->auth_user) : NULL;
	c->auth_pass = r->auth_pass != NULL ? xstrdup(r->auth_pass) : NULL;
	return 0;
}

int relays_group(struct directory *d, const char *group, struct relay_info **list_r, size_t *n_r, char **error_r)
{
	sqlite3 *db = directory_sqlite(d);
	struct group_ctx g = { 0 };
	*error_r = NULL;
	*list_r = NULL;
	*n_r = 0;
	int ret = schema(db, false, error_r);
	if (ret <= 0)
		return ret;
	ret = relay_query(db, "SELECT " RELAY_COLUMNS " FROM relays WHERE grp = ?1 ORDER BY name", group, group_add, &g,
			  error_r);
	if (ret > 0 && g.n == 0)
		ret = relay_query(db, "SELECT " RELAY_COLUMNS " FROM relays WHERE name = ?1", group, group_add, &g,
				  error_r);
	if (ret < 0) {
		relays_group_free(&g.list, g.n);
		return -1;
	}
	*list_r = g.list;
	*n_r = g.n;
	return g.n > 0 ? 1 : 0;
}

int relays_list(struct directory *d, relays_cb *cb, void *ctx, char **error_r)
{
	sqlite3 *db = directory_sqlite(d);
	*error_r = NULL;
	int ret = schema(db, false, error_r);
	if (ret <= 0)
		return ret;
	return relay_query(db, "SELECT " RELAY_COLUMNS " FROM relays ORDER BY name", NULL, cb, ctx, error_r);
}

/* ---- transports ---- */

bool transport_key_normalize(const char *in, char *out, size_t size, const char **why_r)
{
	if (strcmp(in, "*") == 0) {
		if (size < 2) {
			*why_r = "buffer too small";
			return false;
		}
		memcpy(out, "*", 2);
		return true;
	}
	bool sub = in[0] == '.';
	if (size < 2 || !directory_domain_normalize(in + (sub ? 1 : 0), out + (sub ? 1 : 0), size - 1, why_r))
		return false;
	if (sub)
		out[0] = '.';
	return true;
}

int transport_set(struct directory *d, const char *key, const char *relay_or_group, char **error_r)
{
	sqlite3 *db = directory_sqlite(d);
	char norm[DIRECTORY_MAX_ADDRESS + 2];
	const char *why;
	*error_r = NULL;
	if (!transport_key_normalize(key, norm, sizeof(norm), &why)) {
		*error_r = xasprintf("bad transport domain '%s': %s", key, why);
		return -1;
	}
	if (schema(db, true, error_r) < 0)
		return -1;
	int ret = exists(db, "SELECT 1 FROM relays WHERE name = ?1 OR grp = ?1", relay_or_group, NULL, error_r);
	if (ret <= 0)
		return ret;
	sqlite3_stmt *st = prepare(db, "INSERT OR REPLACE INTO transports(domain, relay) VALUES (?1, ?2)", error_r);
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, norm, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, relay_or_group, -1, SQLITE_TRANSIENT);
	ret = sqlite3_step(st) == SQLITE_DONE ? 1 : db_error(db, error_r, "transport set");
	sqlite3_finalize(st);
	return ret;
}

int transport_del(struct directory *d, const char *key, char **error_r)
{
	sqlite3 *db = directory_sqlite(d);
	char norm[DIRECTORY_MAX_ADDRESS + 2];
	const char *why;
	*error_r = NULL;
	if (!transport_key_normalize(key, norm, sizeof(norm), &why))
		return 0;
	if (schema(db, true, error_r) < 0)
		return -1;
	sqlite3_stmt *st = prepare(db, "DELETE FROM transports WHERE domain = ?1", error_r);
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, norm, -1, SQLITE_TRANSIENT);
	int ret = sqlite3_step(st) == SQLITE_DONE ? (sqlite3_changes(db) > 0 ? 1 : 0)
						  : db_error(db, error_r, "transport del");
	sqlite3_finalize(st);
	return ret;
}

int transport_get(struct directory *d, const char *domain, char **relay_or_group_r, char **error_r)
{
	sqlite3 *db = directory_sqlite(d);
	char norm[DIRECTORY_MAX_ADDRESS + 2];
	const char *why;
	*error_r = NULL;
	*relay_or_group_r = NULL;
	/* The transports table may be missing in a read-only database never written by this version. */
	int ret = exists(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", "transports", NULL,
			 error_r);
	if (ret <= 0)
		return ret;
	sqlite3_stmt *st = prepare(db, "SELECT relay FROM transports WHERE domain = ?1", error_r);
	if (st == NULL)
		return -1;
	/* An unusable domain (an address literal) can still take the default. */
	bool have_domain = domain[0] != '.' && domain[0] != '*' &&
			   directory_domain_normalize(domain, norm + 1, sizeof(norm) - 1, &why);
	const char *key = have_domain ? norm + 1 : "*";
	ret = 0;
	for (;;) {
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
		int s = sqlite3_step(st);
		if (s == SQLITE_ROW) {
			*relay_or_group_r = xstrdup((const char *)sqlite3_column_text(st, 0));
			ret = 1;
			break;
		}
		if (s != SQLITE_DONE) {
			ret = db_error(db, error_r, "transport get");
			break;
		}
		if (strcmp(key, "*") == 0)
			break;
		/* "a.b.c" -> ".b.c" -> ".c" -> "*" */
		const char *dot = strchr(key + 1, '.');
		key = dot != NULL ? dot : "*";
	}
	sqlite3_finalize(st);
	return ret;
}

int transport_list(struct directory *d, transport_cb *cb, void *ctx, char **error_r)
{
	sqlite3 *db = directory_sqlite(d);
	*error_r = NULL;
	int ret = exists(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", "transports", NULL,
			 error_r);
	if (ret <= 0)
		return ret;
	/* "*" last; otherwise by domain. */
	sqlite3_stmt *st = prepare(db, "SELECT domain, relay FROM transports ORDER BY domain = '*', domain", error_r);
	if (st == NULL)
		return -1;
	int s;
	ret = 1;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		if (cb((const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1), ctx) != 0)
			break;
	}
	if (s != SQLITE_ROW && s != SQLITE_DONE)
		ret = db_error(db, error_r, "transport list");
	sqlite3_finalize(st);
	return ret;
}

/* ---- health file ---- */

int relay_status_write(const char *path, const struct relay_status *list, size_t n, char **error_r)
{
	*error_r = NULL;
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:I}", "name", list[i].name, "state", list[i].state,
						     "failures", (json_int_t)list[i].failures, "until",
						     (json_int_t)list[i].until));
	}
	json_t *root = json_pack("{s:o}", "relays", arr);
	char *text = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	if (text == NULL) {
		*error_r = xstrdup("relay status: cannot encode");
		return -1;
	}
	char *tmp = xasprintf("%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int ret = -1;
	if (fd < 0) {
		*error_r = xasprintf("cannot create %s: %s", tmp, strerror(errno));
	} else {
		size_t len = strlen(text), off = 0;
		while (off < len) {
			ssize_t w = write(fd, text + off, len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			off += (size_t)w;
		}
		if (off != len || write(fd, "\n", 1) != 1 || fsync(fd) < 0)
			*error_r = xasprintf("cannot write %s: %s", tmp, strerror(errno));
		else
			ret = 0;
		if (close(fd) < 0 && ret == 0) {
			*error_r = xasprintf("cannot write %s: %s", tmp, strerror(errno));
			ret = -1;
		}
		if (ret == 0 && rename(tmp, path) < 0) {
			*error_r = xasprintf("cannot rename %s: %s", tmp, strerror(errno));
			ret = -1;
		}
		if (ret < 0)
			unlink(tmp);
	}
	free(tmp);
	free(text);
	return ret;
}

void relay_status_free(struct relay_status **list, size_t n)
{
	if (*list == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free((*list)[i].name);
		free((*list)[i].state);
	}
	free(*list);
	*list = NULL;
}

int relay_status_read(const char *path, struct relay_status **list_r, size_t *n_r, char **error_r)
{
	*error_r = NULL;
	*list_r = NULL;
	*n_r = 0;
	json_error_t jerr;
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		if (errno == ENOENT)
			return 0;
		*error_r = xasprintf("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	json_t *root = json_loadf(f, 0, &jerr);
	fclose(f);
	if (root == NULL) {
		*error_r = xasprintf("%s:%d: %s", path, jerr.line, jerr.text);
		return -1;
	}
	json_t *arr = json_object_get(root, "relays");
	if (!json_is_array(arr)) {
		json_decref(root);
		*error_r = xasprintf("%s: no \"relays\" array", path);
		return -1;
	}
	size_t n = json_array_size(arr);
	struct relay_status *list = xcalloc(n > 0 ? n : 1, sizeof(*list));
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(arr, i);
		const char *name = json_string_value(json_object_get(e, "name"));
		const char *state = json_string_value(json_object_get(e, "state"));
		json_t *fail = json_object_get(e, "failures"), *until = json_object_get(e, "until");
		if (name == NULL || state == NULL || (fail != NULL && !json_is_integer(fail)) ||
		    (until != NULL && !json_is_integer(until))) {
			*error_r = xasprintf("%s: relays[%zu]: needs \"name\" and \"state\" strings, integer "
					     "\"failures\" and \"until\"", path, i);
			relay_status_free(&list, i);
			json_decref(root);
			return -1;
		}
		list[i].name = xstrdup(name);
		list[i].state = xstrdup(state);
		json_int_t fv = fail != NULL ? json_integer_value(fail) : 0;
		list[i].failures = fv < 0 ? 0 : fv > (json_int_t)UINT32_MAX ? UINT32_MAX : (unsigned)fv;
		list[i].until = until != NULL ? (int64_t)json_integer_value(until) : 0;
	}
	json_decref(root);
	*list_r = list;
	*n_r = n;
	return 1;
}
