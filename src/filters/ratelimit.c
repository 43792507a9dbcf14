#include "filters/ratelimit.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

struct bucket {
	struct bucket *hnext;          /* hash chain */
	struct bucket *lru_prev, *lru_next;
	uint64_t hash;
	double tokens, last;
	char *id;                      /* "rule\0key" */
	size_t id_len;
};

struct ratelimit {
	struct bucket **table;
	size_t size, count, max;
	struct bucket *lru_head, *lru_tail; /* head = most recent */
};

static uint64_t hash_bytes(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
	return h;
}

struct ratelimit *ratelimit_new(size_t max_keys)
{
	struct ratelimit *rl = xcalloc(1, sizeof(*rl));
	rl->max = max_keys > 0 ? max_keys : 100000;
	rl->size = 1024;
	while (rl->size < rl->max && rl->size < (1u << 20))
		rl->size <<= 1;
	rl->table = xcalloc(rl->size, sizeof(*rl->table));
	return rl;
}

void ratelimit_free(struct ratelimit **rlp)
{
	struct ratelimit *rl = *rlp;
	if (rl == NULL)
		return;
	*rlp = NULL;
	for (struct bucket *b = rl->lru_head, *next; b != NULL; b = next) {
		next = b->lru_next;
		free(b->id);
		free(b);
	}
	free(rl->table);
	free(rl);
}

size_t ratelimit_count(const struct ratelimit *rl)
{
	return rl->count;
}

static void lru_unlink(struct ratelimit *rl, struct bucket *b)
{
	if (b->lru_prev)
		b->lru_prev->lru_next = b->lru_next;
	else
		rl->lru_head = b->lru_next;
	if (b->lru_next)
		b->lru_next->lru_prev = b->lru_prev;
	else
		rl->lru_tail = b->lru_prev;
	b->lru_prev = b->lru_next = NULL;
}

static void lru_push(struct ratelimit *rl, struct bucket *b)
{
	b->lru_next = rl->lru_head;
	b->lru_prev = NULL;
	if (rl->lru_head)
		rl->lru_head->lru_prev = b;
	rl->lru_head = b;
	if (rl->lru_tail == NULL)
		rl->lru_tail = b;
}

static void evict(struct ratelimit *rl)
{
	struct bucket *b = rl->lru_tail;
	if (b == NULL)
		return;
	lru_unlink(rl, b);
	struct bucket **pp = &rl->table[b->hash & (rl->size - 1)];
	while (*pp != b)
		pp = &(*pp)->hnext;
	*pp = b->hnext;
	free(b->id);
	free(b);
	rl->count--;
}

int ratelimit_take(struct ratelimit *rl, const char *rule, const char *key, unsigned limit, unsigned per,
                   unsigned n, double now, unsigned *retry_after_r)
{
	if (limit == 0 || per == 0 || n > limit)
		return -1;
	size_t rl_len = strlen(rule), k_len = strlen(key);
	size_t id_len = rl_len + 1 + k_len;
	char *id = xmalloc(id_len + 1);
	memcpy(id, rule, rl_len + 1);
	memcpy(id + rl_len + 1, key, k_len + 1);
	uint64_t h = hash_bytes(id, id_len);
	struct bucket *b = rl->table[h & (rl->size - 1)];
	while (b != NULL && !(b->hash == h && b->id_len == id_len && memcmp(b->id, id, id_len) == 0))
		b = b->hnext;
	if (b == NULL) {
		if (rl->count >= rl->max)
			evict(rl);
		b = xcalloc(1, sizeof(*b));
		b->hash = h;
		b->id = id;
		b->id_len = id_len;
		b->tokens = limit;
		b->last = now;
		b->hnext = rl->table[h & (rl->size - 1)];
		rl->table[h & (rl->size - 1)] = b;
		rl->count++;
	} else {
		free(id);
		lru_unlink(rl, b);
	}
	lru_push(rl, b);
	double rate = (double)limit / per;
	if (now > b->last) {
		b->tokens += (now - b->last) * rate;
		if (b->tokens > limit)
			b->tokens = limit;
		b->last = now;
	}
	if (b->tokens + 1e-9 >= n) {
		b->tokens -= n;
		return 1;
	}
	if (retry_after_r != NULL)
		*retry_after_r = (unsigned)ceil((n - b->tokens) / rate);
	return 0;
}
