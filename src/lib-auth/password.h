/*
 * password: hashing and verifying user passwords with libxcrypt.
 * New hashes are yescrypt ("$y$", libxcrypt's default cost); verification
 * accepts yescrypt, bcrypt ("$2b$", also "$2a$"/"$2y$") and SHA-512 crypt
 * ("$6$"), so imported directories keep working. Other prefixes (DES, MD5,
 * "*", "!", empty) never verify. Both calls are slow on purpose (tens of ms):
 * run them off the event loop. Thread-safe (crypt_rn with a private buffer).
 */
#ifndef MR_PASSWORD_H
#define MR_PASSWORD_H

#include <stdbool.h>

/* Maximum accepted password length in bytes (longer ones are refused). */
#define PASSWORD_MAX_LENGTH 1024

/* An allocated "$y$..." hash, or NULL on failure (no entropy, empty or too long password). */
char *password_hash(const char *password);
/* True when password matches hash; false on mismatch or an unsupported/malformed hash. */
bool password_verify(const char *password, const char *hash);

#endif
