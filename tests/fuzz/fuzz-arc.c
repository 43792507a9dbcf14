/* fuzz-arc: ARC set collection, header parsing and chain validation over a
   small zone, and sealing of the input message. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib-auth/arc.h"
#include "lib-auth/testzone.h"
#include "lib/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char key_pem[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
	"-----END PRIVATE KEY-----\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	struct testzone *z = testzone_new();
	static const char rsa[] =
		"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";
	testzone_add(z, "dummy._domainkey.example.org", "TXT", rsa, strlen(rsa), 0);
	struct authdns dns;
	testzone_authdns(z, &dns);
	struct arc_verify_result r;
	arc_verify((const char *)data, size, &dns, NULL, &r);
	struct arc_sign_options so = {
		.domain = "example.org", .selector = "s", .key_pem = key_pem,
		.authres = "example.org; spf=pass", .now = 12345,
	};
	char *fields = NULL;
	const char *err;
	if (arc_sign((const char *)data, size, &so, r.cv, &fields, &err) == 1)
		free(fields);
	arc_verify_result_free(&r);
	testzone_free(&z);
	return 0;
}
