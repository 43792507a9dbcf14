/* fuzz-from-address: the From: address extractor of the submission check
   (lookup_from_address) on any bytes, with a small and a large output buffer. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lookup/lookup_mailauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	char small[4], big[512];
	size_t a = lookup_from_address((const char *)data, size, small, sizeof(small));
	size_t b = lookup_from_address((const char *)data, size, big, sizeof(big));
	/* the count does not depend on the output buffer; the small one is a prefix */
	if (a != b || strncmp(small, big, sizeof(small) - 1) != 0 || strlen(big) >= sizeof(big))
		__builtin_trap();
	return 0;
}
