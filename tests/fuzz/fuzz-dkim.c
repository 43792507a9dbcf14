/* fuzz-dkim: DKIM tag-list parser, message splitter, both canonicalizations,
   b= stripping and the whole verifier over a small zone. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib-auth/dkim.h"
#include "lib-auth/testzone.h"
#include "lib/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	const char *s = (const char *)data;
	struct dkim_taglist tl;
	const char *err;
	dkim_taglist_parse(s, size, &tl, &err);
	dkim_taglist_free(&tl);

	struct dkim_msg m;
	if (dkim_msg_parse(s, size, &m, &err) == 1) {
		struct buf b;
		buf_init(&b, 1 << 20);
		for (size_t i = 0; i < m.nhdrs; i++) {
			dkim_canon_header(&b, m.hdrs[i].raw, m.hdrs[i].raw_len, true);
			dkim_canon_header(&b, m.hdrs[i].raw, m.hdrs[i].raw_len, false);
			size_t l;
			free(dkim_strip_b_value(m.hdrs[i].raw, m.hdrs[i].raw_len, &l));
		}
		buf_reset(&b);
		dkim_canon_body(&b, m.body, m.body_len, true);
		buf_reset(&b);
		dkim_canon_body(&b, m.body, m.body_len, false);
		buf_deinit(&b);
	}
	dkim_msg_free(&m);

	struct testzone *z = testzone_new();
	static const char key[] =
		"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";
	static const char edkey[] = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
	testzone_add(z, "test._domainkey.football.example.com", "TXT", key, strlen(key), 0);
	testzone_add(z, "brisbane._domainkey.football.example.com", "TXT", edkey, strlen(edkey), 0);
	struct authdns dns;
	testzone_authdns(z, &dns);
	struct dkim_verify_result r;
	struct dkim_verify_options o = { .now = 1528637909 };
	dkim_verify(s, size, &dns, &o, &r);
	dkim_verify_result_free(&r);
	testzone_free(&z);
	return 0;
}
