/*
 * relays: outbound relays (smarthosts), their groups, and transports (which
 * relay or group carries mail for a destination domain), kept in the
 * directory database (directory.h) beside domains and users, managed by
 * `mailroute relay` / `mailroute transport` and read by the queue role.
 *
 * Tables: relays(name PK, host, port, grp, weight, tls, auth_user, auth_pass,
 * created) and transports(domain PK, relay). A writable directory creates the
 * relays table on first use; on a read-only directory a missing table reads
 * as empty. auth_pass is the client credential for AUTH at the relay, stored
 * as given (it must be sent in clear to the relay); directory.db is mode 0640
 * in a 0750 directory owned by the role user (the CLI enforces the 0640).
 *
 * Names: a relay name and a group name share one namespace, since a
 * transport names either: relays_group(X) is the relays whose group is X, or
 * else the relay named X alone. relays_add refuses a name that would make
 * that ambiguous (a relay named like an existing group it is not in, or a
 * group named like another relay). Names are 1-64 of [A-Za-z0-9._-].
 *
 * Transport keys: "example.com" (that domain only), ".example.com" (its
 * subdomains), "*" (the default). transport_get tries the exact domain, then
 * each parent as ".parent", then "*".
 *
 * Returns (STYLE.md): -1 error with an allocated *error_r, 0 not found /
 * already exists, 1 done. Structs filled on 1 hold allocated strings:
 * relay_info_deinit(). Callbacks get values valid during the call only.
 */
#ifndef MR_RELAYS_H
#define MR_RELAYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct directory;

#define RELAYS_MAX_NAME 64
#define RELAYS_MAX_HOST 255
#define RELAYS_MAX_WEIGHT 1000
#define RELAYS_MAX_SECRET 1024   /* auth_user and auth_pass */
#define RELAYS_DEFAULT_PORT 25
#define RELAYS_STATUS_PATH "queue/relay-status.json" /* under data_dir */

struct relay_info {
	char *name, *host;      /* host: a name, IPv4 or IPv6 address (no brackets) */
	unsigned port;
	char *group;            /* NULL: no group */
	unsigned weight;        /* 1..RELAYS_MAX_WEIGHT */
	char *tls;              /* "none"|"may"|"require" */
	char *auth_user, *auth_pass; /* NULL: no AUTH */
};

/* Frees the strings (the password zeroed first) and zeroes *r. */
void relay_info_deinit(struct relay_info *r);

/* Syntax checks: false with a static reason. */
bool relays_name_check(const char *name, const char **why_r);
bool relays_tls_check(const char *tls);
/*
 * "host", "host:port", "[v6]", "[v6]:port", "1.2.3.4:port" -> host (without
 * brackets, lowercased, IDN converted) into host (size >= RELAYS_MAX_HOST + 1)
 * and *port_r (RELAYS_DEFAULT_PORT when absent).
 */
bool relays_hostport_parse(const char *in, char *host, size_t size, unsigned *port_r, const char **why_r);
/* "host:port", "[v6]:port" for display, allocated. */
char *relays_hostport(const struct relay_info *r);

/*
 * Add a relay (all fields checked; weight 0 means 1, tls NULL means "may").
 * With port 0 the host may carry the port: HOST[:PORT] or [V6][:PORT]
 * (default 25); with a port, host is bare (a name, IPv4 or IPv6 address).
 * auth_user and auth_pass: both or neither.
 * 1 added, 0 a relay of that name exists, -1 error (also a name conflict).
 */
int relays_add(struct directory *d, const struct relay_info *r, char **error_r);
/*
 * Delete a relay. Refused (-1) when a transport would be left naming no
 * relay or group (the last member of its group, or the relay it names).
 */
int relays_del(struct directory *d, const char *name, char **error_r);
int relays_get(struct directory *d, const char *name, struct relay_info *r, char **error_r);
/*
 * Members of a group, ordered by name, in an allocated array of n entries
 * (free each with relay_info_deinit, then the array); a lone relay named
 * group is a group of one. 1 found, 0 neither a group nor a relay, -1 error.
 */
int relays_group(struct directory *d, const char *group, struct relay_info **list_r, size_t *n_r, char **error_r);
void relays_group_free(struct relay_info **list, size_t n);
typedef int relays_cb(const struct relay_info *r, void *ctx);
/* Every relay, by name. */
int relays_list(struct directory *d, relays_cb *cb, void *ctx, char **error_r);

/* A transport key normalized into out (size >= 256 + 2): "*", ".domain" or "domain". */
bool transport_key_normalize(const char *in, char *out, size_t size, const char **why_r);
/* Set (or replace) a transport. 1 set, 0 no relay or group of that name, -1 error. */
int transport_set(struct directory *d, const char *key, const char *relay_or_group, char **error_r);
int transport_del(struct directory *d, const char *key, char **error_r);
/* 1 and *relay_or_group_r (allocated): exact domain, then ".parent" keys, then "*". */
int transport_get(struct directory *d, const char *domain, char **relay_or_group_r, char **error_r);
typedef int transport_cb(const char *key, const char *relay_or_group, void *ctx);
int transport_list(struct directory *d, transport_cb *cb, void *ctx, char **error_r);

/*
 * The health file the queue role writes and `relay status` reads:
 * {"relays":[{"name":"r1","state":"up|down|probing","failures":N,"until":UNIX_SECONDS}]}
 * ("until": end of the current DOWN cool-down, 0 when none).
 */
struct relay_status {
	char *name;
	char *state;            /* "up" | "down" | "probing" */
	unsigned failures;      /* consecutive failures */
	int64_t until;
};
/* Written to path.tmp, fsynced, renamed over path. 0 / -1. */
int relay_status_write(const char *path, const struct relay_status *list, size_t n, char **error_r);
/* 1 read, 0 no file, -1 unreadable or malformed. Free with relay_status_free. */
int relay_status_read(const char *path, struct relay_status **list_r, size_t *n_r, char **error_r);
void relay_status_free(struct relay_status **list, size_t n);

#endif
