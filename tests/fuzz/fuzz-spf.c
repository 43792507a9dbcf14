/* fuzz-spf: SPF record parser, macro expander and evaluator over a small
   zone whose main TXT record is the fuzz input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib-auth/spf.h"
#include "lib-auth/testzone.h"
#include "lib/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 16384)
		return 0;
	char *s = xstrndup((const char *)data, size);
	const char *err;
	(void)spf_record_check(s, &err);

	struct spf_ip ip;
	spf_ip_parse("192.0.2.3", &ip);
	char *out = NULL;
	if (spf_macro_expand(s, true, &ip, "l-p+x@example.com", "example.com", "helo.example.com",
			     NULL, &out) == 1)
		free(out);

	struct testzone *z = testzone_new();
	testzone_add(z, "example.com", "TXT", data, size, 0);
	testzone_add(z, "example.com", "A", "192.0.2.3", 9, 0);
	testzone_add(z, "example.com", "MX", "mx.example.com", 14, 10);
	testzone_add(z, "mx.example.com", "A", "192.0.2.4", 9, 0);
	testzone_add(z, "3.2.0.192.in-addr.arpa", "PTR", "example.com", 11, 0);
	testzone_add(z, "inc.example.com", "TXT", "v=spf1 include:example.com", 26, 0);
	testzone_add(z, "timeout.example.com", "TIMEOUT", NULL, 0, 0);
	struct authdns dns;
	testzone_authdns(z, &dns);
	struct spf_outcome o;
	spf_check_mailfrom(&ip, "l-p+x@example.com", "helo.example.com", &dns, NULL, &o);
	spf_outcome_free(&o);
	testzone_free(&z);
	free(s);
	return 0;
}
