#include "filters/greylist.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

#define GL_ADDR_MAX 512

static void set_defaults(const struct greylist_settings *in, struct greylist_settings *out)
{
	*out = *in;
	if (out->delay == 0)
		out->delay = 300;
	if (out->retry_window == 0)
		out->retry_window = 2 * 86400;
	if (out->pass_ttl == 0)
		out->pass_ttl = 35 * 86400;
}

int greylist_network(const char *ip, char *out, size_t size)
{
	struct in_addr a4;
	struct in6_addr a6;
	char text[INET6_ADDRSTRLEN];
	if (inet_pton(AF_INET, ip, &a4) == 1) {
		((unsigned char *)&a4)[3] = 0;
		inet_ntop(AF_INET, &a4, text, sizeof(text));
		return snprintf(out, size, "%s/24", text) < (int)size ? 1 : -1;
	}
	if (inet_pton(AF_INET6, ip, &a6) == 1) {
		memset(a6.s6_addr + 8, 0, 8);
		inet_ntop(AF_INET6, &a6, text, sizeof(text));
		return snprintf(out, size, "%s/64", text) < (int)size ? 1 : -1;
	}
	return -1;
}

int greylist_init(sqlite3 *db, const char **error_r)
{
	static const char sql[] =
		"CREATE TABLE IF NOT EXISTS greylist_triplet (net TEXT NOT NULL, sender TEXT NOT NULL, "
		"rcpt TEXT NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, "
		"passed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (net, sender, rcpt)) WITHOUT ROWID;"
		"CREATE TABLE IF NOT EXISTS greylist_pass (net TEXT PRIMARY KEY, until INTEGER NOT NULL) WITHOUT ROWID;";
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		*error_r = sqlite3_errmsg(db);
		return -1;
	}
	return 0;
}

static void lower_copy(char *dst, size_t size, const char *src)
{
	size_t i = 0;
	for (; src[i] != '\0' && i + 1 < size; i++)
		dst[i] = (char)tolower((unsigned char)src[i]);
	dst[i] = '\0';
}

/* Run one statement with text/int binds ("t" / "i" per parameter). Returns the step result. */
static int run(sqlite3 *db, const char *sql, const char *types, const char *const *texts, const sqlite3_int64 *ints,
               sqlite3_int64 *col0, sqlite3_int64 *col1, sqlite3_int64 *col2)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return SQLITE_ERROR;
	for (int i = 0; types[i] != '\0'; i++) {
		if (types[i] == 't')
			sqlite3_bind_text(st, i + 1, texts[i], -1, SQLITE_STATIC);
		else
			sqlite3_bind_int64(st, i + 1, ints[i]);
	}
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (col0)
			*col0 = sqlite3_column_int64(st, 0);
		if (col1)
			*col1 = sqlite3_column_int64(st, 1);
		if (col2)
			*col2 = sqlite3_column_int64(st, 2);
	}
	sqlite3_finalize(st);
	return rc;
}

enum greylist_verdict greylist_check(sqlite3 *db, const struct greylist_settings *in, const char *ip,
                                     const char *sender, const char *rcpt, time_t now, unsigned *retry_in_r)
{
	struct greylist_settings set;
	char net[64], s[GL_ADDR_MAX], r[GL_ADDR_MAX];
	sqlite3_int64 until = 0, first = 0, passed = 0;
	unsigned dummy;

	if (retry_in_r == NULL)
		retry_in_r = &dummy;
	*retry_in_r = 0;
	set_defaults(in, &set);
	if (greylist_network(ip, net, sizeof(net)) < 0)
		return GREYLIST_ERROR;
	lower_copy(s, sizeof(s), sender ? sender : "");
	lower_copy(r, sizeof(r), rcpt ? rcpt : "");

	const char *t1[] = {net, NULL};
	sqlite3_int64 i1[] = {0, (sqlite3_int64)now};
	int rc = run(db, "SELECT until FROM greylist_pass WHERE net = ?1 AND until > ?2", "ti", t1, i1, &until,
	             NULL, NULL);
	if (rc == SQLITE_ROW)
		return GREYLIST_PASS;
	if (rc != SQLITE_DONE)
		return GREYLIST_ERROR;

	const char *t3[] = {net, s, r, NULL};
	sqlite3_int64 i3[] = {0, 0, 0, (sqlite3_int64)now};
	rc = run(db, "SELECT first_seen, passed FROM greylist_triplet WHERE net = ?1 AND sender = ?2 AND rcpt = ?3",
	         "ttt", t3, i3, &first, &passed, NULL);
	if (rc == SQLITE_DONE || (rc == SQLITE_ROW && !passed && now - first > (time_t)set.retry_window)) {
		/* new, or the retry came too late: start over */
		rc = run(db, "INSERT OR REPLACE INTO greylist_triplet (net, sender, rcpt, first_seen, last_seen, passed) "
		             "VALUES (?1, ?2, ?3, ?4, ?4, 0)", "ttti", t3, i3, NULL, NULL, NULL);
		if (rc != SQLITE_DONE)
			return GREYLIST_ERROR;
		*retry_in_r = set.delay;
		return GREYLIST_DEFER;
	}
	if (rc != SQLITE_ROW)
		return GREYLIST_ERROR;
	if (passed) {
		(void)run(db, "UPDATE greylist_triplet SET last_seen = ?4 WHERE net = ?1 AND sender = ?2 AND rcpt = ?3",
		          "ttti", t3, i3, NULL, NULL, NULL);
		return GREYLIST_PASS;
	}
	if (now - first < (time_t)set.delay) {
		*retry_in_r = (unsigned)(set.delay - (now - first));
		return GREYLIST_DEFER;
	}
	/* a successful retry: pass the triplet and the client network */
	rc = run(db, "UPDATE greylist_triplet SET passed = 1, last_seen = ?4 WHERE net = ?1 AND sender = ?2 AND rcpt = ?3",
	         "ttti", t3, i3, NULL, NULL, NULL);
	if (rc != SQLITE_DONE)
		return GREYLIST_ERROR;
	sqlite3_int64 i2[] = {0, (sqlite3_int64)now + set.pass_ttl};
	rc = run(db, "INSERT OR REPLACE INTO greylist_pass (net, until) VALUES (?1, ?2)", "ti", t1, i2, NULL, NULL,
	         NULL);
	return rc == SQLITE_DONE ? GREYLIST_PASS : GREYLIST_ERROR;
}

int greylist_expire(sqlite3 *db, const struct greylist_settings *in, time_t now)
{
	struct greylist_settings set;
	set_defaults(in, &set);
	const char *t[] = {NULL, NULL};
	sqlite3_int64 i1[] = {(sqlite3_int64)now};
	if (run(db, "DELETE FROM greylist_pass WHERE until <= ?1", "i", t, i1, NULL, NULL, NULL) != SQLITE_DONE)
		return -1;
	int n = sqlite3_changes(db);
	sqlite3_int64 i2[] = {(sqlite3_int64)now - set.retry_window, (sqlite3_int64)now - set.pass_ttl};
	if (run(db, "DELETE FROM greylist_triplet WHERE (passed = 0 AND first_seen < ?1) OR "
	            "(passed = 1 AND last_seen < ?2)", "ii", t, i2, NULL, NULL, NULL) != SQLITE_DONE)
		return -1;
	return n + sqlite3_changes(db);
}
