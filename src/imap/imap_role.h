/*
 * imap_role: the IMAP role process (DESIGN.md §2). The master forks it as user vmail with
 * the listeners of kinds imap and imaps; it serves sessions until SIGTERM.
 */
#ifndef MR_IMAP_ROLE_H
#define MR_IMAP_ROLE_H

#include "master/role.h"

void imap_role_run(struct role_env *env) __attribute__((noreturn));

#endif
