/*
 * srs: Sender Rewriting Scheme (Shevek's SRS0/SRS1, as in postsrsd), so a
 * forwarded message's envelope sender is in our domain and bounces come back
 * to us to be reversed.
 *
 *   SRS0=HHHHHHHH=TT=orig-domain=orig-local@our-domain
 *   SRS1=HHHHHHHH=first-hop==HHHHHHHH=TT=orig-domain=orig-local@our-domain
 *
 * HHHHHHHH: HMAC-SHA256 over the lowercased data, truncated to
 * SRS_HASH_CHARS base32 characters (40 bits); TT: day number mod 1024 in two
 * base32 characters. Base32 makes the whole address case-insensitive, since
 * MTAs are known to change the case of local parts. The first secret signs;
 * every secret verifies (rotation). Returned strings are heap, owned by the
 * caller. No global state.
 */
#ifndef MR_SRS_H
#define MR_SRS_H

#include <stddef.h>
#include <time.h>

#define SRS_HASH_CHARS 8
#define SRS_MAX_ADDRESS 512
#define SRS_MAX_SECRETS 4

struct srs_config {
	const char *secrets[SRS_MAX_SECRETS]; /* [0] signs; NULL-terminated if fewer */
	const char *domain;                   /* our domain for rewritten addresses */
	unsigned max_age_days;                /* 0 = 21 */
	char separator;                       /* '=', '+' or '-'; 0 = '=' */
};

/* Rewrite address (local@domain) for forwarding. 1 with *out_r; 0 when no
   rewriting is needed (null sender, or the address is already in our domain
   and not SRS), *out_r = NULL; -1 with *error_r (malformed, too long,
   no secret). now = 0 means time(NULL). */
int srs_forward(const struct srs_config *c, const char *address, time_t now, char **out_r,
		const char **error_r);

/* Reverse an SRS address (a bounce to us). 1 with *out_r (for SRS1 this is the
   SRS0 address at the first hop); 0 if the address is not SRS; -1 with
   *error_r if it is SRS but forged, expired or malformed. */
int srs_reverse(const struct srs_config *c, const char *address, time_t now, char **out_r,
		const char **error_r);

#endif
