#include "queue/queue_id.h"

#include <pthread.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static const char queue_id_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static pthread_mutex_t queue_id_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t queue_id_last_us;
static uint16_t queue_id_counter;

void queue_id_new(char out[QUEUE_ID_SIZE])
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	uint64_t us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;

	pthread_mutex_lock(&queue_id_lock);
	/* Never go backwards in one process, even if the clock does. */
	if (us < queue_id_last_us)
		us = queue_id_last_us;
	if (us == queue_id_last_us && queue_id_counter == UINT16_MAX) {
		us++;	/* 65536 IDs in one microsecond: borrow the next one */
		queue_id_counter = 0;
	} else if (us == queue_id_last_us) {
		queue_id_counter++;
	} else {
		queue_id_counter = 0;
	}
	queue_id_last_us = us;
	uint16_t counter = queue_id_counter;
	pthread_mutex_unlock(&queue_id_lock);

	uint64_t hi = us & ((UINT64_C(1) << 52) - 1);
	uint64_t pid = (uint64_t)getpid() & 0xfff;
	/* 80 bits: hi (52) | pid (12) | counter (16); emit 5 bits at a time, MSB first. */
	uint64_t top = hi >> 12;                                  /* upper 40 bits */
	uint64_t low = ((hi & 0xfff) << 28) | (pid << 16) | counter; /* lower 40 bits */
	for (int i = 0; i < 8; i++) {
		out[7 - i] = queue_id_alphabet[top & 31];
		top >>= 5;
		out[15 - i] = queue_id_alphabet[low & 31];
		low >>= 5;
	}
	out[QUEUE_ID_LEN] = '\0';
}

static int queue_id_digit(char c)
{
	const char *p = c == '\0' ? NULL : strchr(queue_id_alphabet, c);
	return p == NULL ? -1 : (int)(p - queue_id_alphabet);
}

bool queue_id_is_valid(const char *s)
{
	if (s == NULL)
		return false;
	for (int i = 0; i < QUEUE_ID_LEN; i++)
		if (queue_id_digit(s[i]) < 0)
			return false;
	return s[QUEUE_ID_LEN] == '\0';
}

uint64_t queue_id_time_us(const char *id)
{
	uint64_t v = 0;
	/* The first 52 bits: 10 full digits (50 bits) + the top 2 bits of the 11th. */
	for (int i = 0; i < 10; i++)
		v = (v << 5) | (uint64_t)queue_id_digit(id[i]);
	return (v << 2) | ((uint64_t)queue_id_digit(id[10]) >> 3);
}
