/*
 * queue_id: identifiers of queued messages. An ID is 16 characters of
 * Crockford base32 (0-9 A-Z without I L O U) encoding 80 bits:
 *   52 bits microseconds since the epoch | 12 bits pid | 16 bits counter.
 * IDs therefore sort by creation time (string order = numeric order), are safe
 * as file names, and are unique within a process (the timestamp never goes
 * backwards in one process, the counter separates IDs of the same microsecond)
 * and, with overwhelming probability, across processes and restarts. The spool
 * creates files with O_EXCL, so a collision is detected and a new ID drawn.
 * Thread-safe.
 */
#ifndef MR_QUEUE_ID_H
#define MR_QUEUE_ID_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define QUEUE_ID_LEN 16
#define QUEUE_ID_SIZE (QUEUE_ID_LEN + 1)

/* Write a new NUL-terminated ID into out. */
void queue_id_new(char out[QUEUE_ID_SIZE]);
/* True when s is exactly one well-formed ID (16 chars of the alphabet). */
bool queue_id_is_valid(const char *s);
/* The creation time encoded in a valid ID, in microseconds since the epoch. */
uint64_t queue_id_time_us(const char *id);

#endif
