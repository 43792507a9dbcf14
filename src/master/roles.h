/* Entry points of the role processes (each never returns). */
#ifndef MR_ROLES_H
#define MR_ROLES_H

#include <stdbool.h>

#include "master/role.h"

void lookup_role_run(struct role_env *env) __attribute__((noreturn));
void queue_role_run(struct role_env *env) __attribute__((noreturn));
void deliver_role_run(struct role_env *env) __attribute__((noreturn));
void smtp_role_run(struct role_env *env) __attribute__((noreturn));

/* IMAP, POP3 and ManageSieve roles are optional modules: these say whether this build has them. */
bool roles_imap_available(void);
bool roles_pop3_available(void);
bool roles_managesieve_available(void);
void roles_imap_run(struct role_env *env);
void roles_pop3_run(struct role_env *env);
void roles_managesieve_run(struct role_env *env);

/* Shared per-IP connection counts of all smtp processes (src/smtp/smtp_anvil.c). */
void smtp_anvil_setup(unsigned max_procs);
void smtp_anvil_forget(int proc_index);

#endif
