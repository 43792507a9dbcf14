/*
 * Fuzz smtp_address_parse: the first byte selects the parse flags, the rest is
 * the path. Properties: no crash/UB; a parsed address formats within
 * SMTP_ADDRESS_FORMAT_MAX and the canonical form parses back to the same
 * local part and domain (so relay decisions on either agree).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib-smtp/smtp_address.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned flags = data[0] & 7u;
	const char *s = (const char *)data + 1;
	size_t len = size - 1;
	struct smtp_address a, b;
	struct smtp_parse_error err;

	(void)smtp_address_domain_valid(s, len, flags);
	if (smtp_address_parse(s, len, flags, &a, &err) != 0) {
		if (err.code != 501 && err.code != 553)
			abort();
		return 0;
	}
	if (strlen(a.local) != a.local_len || strlen(a.domain) != a.domain_len)
		abort();
	char fmt[SMTP_ADDRESS_FORMAT_MAX + 2];
	fmt[0] = '<';
	int n = smtp_address_format(&a, fmt + 1, SMTP_ADDRESS_FORMAT_MAX);
	if (n < 0)
		abort();
	fmt[n + 1] = '>';
	if (smtp_address_parse(fmt, (size_t)n + 2, flags, &b, &err) != 0)
		abort();
	if (strcmp(a.local, b.local) != 0 || strcmp(a.domain, b.domain) != 0 ||
	    (a.flags & ~(unsigned)(SMTP_ADDRESS_F_ROUTE_DROPPED | SMTP_ADDRESS_F_QUOTED)) !=
		    (b.flags & ~(unsigned)(SMTP_ADDRESS_F_ROUTE_DROPPED | SMTP_ADDRESS_F_QUOTED)))
		abort();
	return 0;
}
