/* fuzz-dmarc: DMARC record parser, From-domain extraction and alignment. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib-auth/dmarc.h"
#include "lib/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 16384)
		return 0;
	struct dmarc_record r;
	const char *err;
	if (dmarc_record_parse((const char *)data, size, &r, &err) == 1)
		dmarc_record_free(&r);
	char *s = xstrndup((const char *)data, size);
	size_t n;
	char *d = dmarc_from_domain(s, &n);
	if (d != NULL) {
		(void)dmarc_aligned(d, "example.com", false);
		free(dmarc_org_domain(d));
		free(d);
	}
	free(s);
	return 0;
}
