/* Optional roles: compiled in when their module exists (see the top-level CMakeLists.txt). */
#include "master/roles.h"

#ifdef MR_HAVE_IMAP
void imap_role_run(struct role_env *env);
#endif
#ifdef MR_HAVE_POP3
void pop3_role_run(struct role_env *env);
#endif
#ifdef MR_HAVE_MANAGESIEVE
void managesieve_role_run(struct role_env *env);
#endif

bool roles_imap_available(void)
{
#ifdef MR_HAVE_IMAP
	return true;
#else
	return false;
#endif
}

bool roles_pop3_available(void)
{
#ifdef MR_HAVE_POP3
	return true;
#else
	return false;
#endif
}

void roles_imap_run(struct role_env *env)
{
#ifdef MR_HAVE_IMAP
	imap_role_run(env);
#else
	(void)env;
#endif
}

void roles_pop3_run(struct role_env *env)
{
#ifdef MR_HAVE_POP3
	pop3_role_run(env);
#else
	(void)env;
#endif
}

bool roles_managesieve_available(void)
{
#ifdef MR_HAVE_MANAGESIEVE
	return true;
#else
	return false;
#endif
}

void roles_managesieve_run(struct role_env *env)
{
#ifdef MR_HAVE_MANAGESIEVE
	managesieve_role_run(env);
#else
	(void)env;
#endif
}
