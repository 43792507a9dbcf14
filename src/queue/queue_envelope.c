#include "queue/queue_envelope.h"

#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

struct queue_envelope *queue_envelope_new(const char *sender)
{
	struct queue_envelope *env = xcalloc(1, sizeof(*env));
	env->sender = xstrdup(sender == NULL ? "" : sender);
	return env;
}

static void queue_rcpt_deinit(struct queue_rcpt *r)
{
	free(r->address);
	free(r->orcpt);
	free(r->target);
	free(r->folder);
	free(r->last_error);
}

void queue_envelope_free(struct queue_envelope **envp)
{
	struct queue_envelope *env = *envp;
	if (env == NULL)
		return;
	*envp = NULL;
	for (size_t i = 0; i < env->rcpt_count; i++)
		queue_rcpt_deinit(&env->rcpts[i]);
	free(env->rcpts);
	free(env->sender);
	free(env->envid);
	free(env->helo);
	free(env->client_ip);
	free(env->auth_user);
	free(env->headers);
	free(env);
}

void queue_envelope_set_str(char **field, const char *value)
{
	free(*field);
	*field = value == NULL ? NULL : xstrdup(value);
}

struct queue_rcpt *queue_envelope_add_rcpt(struct queue_envelope *env, const char *address,
					   const char *orcpt, unsigned notify,
					   enum queue_rcpt_kind kind, const char *target,
					   const char *folder)
{
	if (env->rcpt_count >= QUEUE_ENVELOPE_MAX_RCPTS)
		return NULL;
	if (env->rcpt_count == env->rcpt_alloc) {
		env->rcpt_alloc = env->rcpt_alloc == 0 ? 4 : env->rcpt_alloc * 2;
		env->rcpts = xreallocarray(env->rcpts, env->rcpt_alloc, sizeof(*env->rcpts));
	}
	struct queue_rcpt *r = &env->rcpts[env->rcpt_count];
	memset(r, 0, sizeof(*r));
	r->idx = (unsigned)env->rcpt_count;
	r->address = xstrdup(address == NULL ? "" : address);
	r->orcpt = orcpt == NULL ? NULL : xstrdup(orcpt);
	r->notify = notify;
	r->kind = kind;
	r->target = xstrdup(target == NULL ? "" : target);
	r->folder = folder == NULL || folder[0] == '\0' ? NULL : xstrdup(folder);
	env->rcpt_count++;
	return r;
}

static const char *const queue_state_names[] = { "active", "hold", "quarantine" };
static const char *const queue_kind_names[] = { "local", "remote", "other" };
static const char *const queue_status_names[] = { "pending", "done", "failed", "bounced" };

static int queue_name_parse(const char *const *names, size_t n, const char *name, int *r)
{
	for (size_t i = 0; i < n; i++) {
		if (name != NULL && strcmp(names[i], name) == 0) {
			*r = (int)i;
			return 1;
		}
	}
	return 0;
}

#define QUEUE_NAMES(arr, v) ((unsigned)(v) < sizeof(arr) / sizeof(arr[0]) ? arr[v] : "unknown")

const char *queue_state_name(enum queue_state state)
{
	return QUEUE_NAMES(queue_state_names, state);
}

int queue_state_parse(const char *name, enum queue_state *state_r)
{
	int v;
	if (!queue_name_parse(queue_state_names, 3, name, &v))
		return 0;
	*state_r = (enum queue_state)v;
	return 1;
}

const char *queue_rcpt_kind_name(enum queue_rcpt_kind kind)
{
	return QUEUE_NAMES(queue_kind_names, kind);
}

int queue_rcpt_kind_parse(const char *name, enum queue_rcpt_kind *kind_r)
{
	int v;
	if (!queue_name_parse(queue_kind_names, 3, name, &v))
		return 0;
	*kind_r = (enum queue_rcpt_kind)v;
	return 1;
}

const char *queue_rcpt_status_name(enum queue_rcpt_status status)
{
	return QUEUE_NAMES(queue_status_names, status);
}

int queue_rcpt_status_parse(const char *name, enum queue_rcpt_status *status_r)
{
	int v;
	if (!queue_name_parse(queue_status_names, 4, name, &v))
		return 0;
	*status_r = (enum queue_rcpt_status)v;
	return 1;
}
