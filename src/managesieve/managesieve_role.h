/*
 * managesieve_role: the ManageSieve role process (RFC 5804), forked by the master as
 * user vmail with the listeners of kind managesieve. Passwords are checked through the
 * lookup role (lookup_client_auth, service "managesieve"); scripts are kept in
 * <data_dir>/sieve (lib-sieve/sieve_store.h). Serves sessions until SIGTERM, then
 * returns (the caller exits).
 */
#ifndef MR_MANAGESIEVE_ROLE_H
#define MR_MANAGESIEVE_ROLE_H

#include "master/role.h"

void managesieve_role_run(struct role_env *env);

#endif
