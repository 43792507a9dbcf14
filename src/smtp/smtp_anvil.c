#include "smtp/smtp_anvil.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "lib/log.h"

static _Atomic uint16_t *anvil_rows;
static unsigned anvil_procs;

void smtp_anvil_setup(unsigned max_procs)
{
	anvil_procs = max_procs ? max_procs : 1;
	size_t size = (size_t)anvil_procs * ANVIL_SLOTS * sizeof(uint16_t);
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		log_fatal("event=anvil_mmap_failed size=%zu", size);
	anvil_rows = p;
}

static unsigned anvil_slot(const char *ip)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (const unsigned char *s = (const unsigned char *)ip; *s; s++)
		h = (h ^ *s) * 16777619u;
	return h % ANVIL_SLOTS;
}

unsigned smtp_anvil_connect(int proc, const char *ip)
{
	if (anvil_rows == NULL || proc < 0 || (unsigned)proc >= anvil_procs)
		return 1;
	unsigned slot = anvil_slot(ip);
	atomic_fetch_add(&anvil_rows[(size_t)proc * ANVIL_SLOTS + slot], 1);
	unsigned total = 0;
	for (unsigned p = 0; p < anvil_procs; p++)
		total += atomic_load(&anvil_rows[(size_t)p * ANVIL_SLOTS + slot]);
	return total;
}

void smtp_anvil_disconnect(int proc, const char *ip)
{
	if (anvil_rows == NULL || proc < 0 || (unsigned)proc >= anvil_procs)
		return;
	_Atomic uint16_t *c = &anvil_rows[(size_t)proc * ANVIL_SLOTS + anvil_slot(ip)];
	if (atomic_load(c) > 0)
		atomic_fetch_sub(c, 1);
}

void smtp_anvil_forget(int proc)
{
	if (anvil_rows == NULL || proc < 0 || (unsigned)proc >= anvil_procs)
		return;
	for (unsigned i = 0; i < ANVIL_SLOTS; i++)
		atomic_store(&anvil_rows[(size_t)proc * ANVIL_SLOTS + i], 0);
}
