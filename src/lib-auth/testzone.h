/*
 * testzone: an in-memory DNS zone served through authdns, for tests only.
 * Names compare case-insensitively, a trailing dot is ignored, CNAMEs are
 * followed (a loop or a chain over 8 is TEMPFAIL), a name with a TIMEOUT
 * entry answers TEMPFAIL for the types it has no records of. A name with
 * records of other types
 * only is NODATA; an unknown name is NXDOMAIN.
 */
#ifndef MR_TESTZONE_H
#define MR_TESTZONE_H

#include <stddef.h>
#include <stdint.h>

#include "lib-auth/authdns.h"

struct testzone;

struct testzone *testzone_new(void);
void testzone_free(struct testzone **z);
/* type: "TXT" (data = concatenated strings, len), "A"/"AAAA" (data = text
   address), "MX" (data = exchange, pref), "PTR", "CNAME" (data = name),
   "TIMEOUT". Returns -1 if an address does not parse. */
int testzone_add(struct testzone *z, const char *name, const char *type, const void *data,
		 size_t len, uint16_t pref);
void testzone_authdns(struct testzone *z, struct authdns *dns_r);
/* Number of queries answered so far. */
size_t testzone_queries(const struct testzone *z);

#endif
