/* libFuzzer harness: DNS response parser (src/lib-dns/dns_packet.c) for every query type we use. */
#include <stddef.h>
#include <stdint.h>

#include "lib-dns/dns_packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t types[] = { DNS_TYPE_A, DNS_TYPE_AAAA, DNS_TYPE_MX,
		                          DNS_TYPE_TXT, DNS_TYPE_PTR, DNS_TYPE_TLSA };
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct dns_result res = { 0 };
		const char *err;
		if (dns_packet_parse(data, size, types[i], &res, &err) == 1 && types[i] == DNS_TYPE_MX) {
			struct dns_result *d = dns_result_dup(&res);
			dns_result_free(&d);
		}
		dns_result_clear(&res);
	}
	return 0;
}
