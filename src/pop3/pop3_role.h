/*
 * pop3_role: the POP3 role process (DESIGN.md §2), forked by the master as user vmail
 * with the listeners of kinds pop3 and pop3s. Serves sessions until SIGTERM, then returns
 * (the caller exits).
 */
#ifndef MR_POP3_ROLE_H
#define MR_POP3_ROLE_H

#include "master/role.h"

void pop3_role_run(struct role_env *env);

#endif
