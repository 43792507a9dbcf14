/* libFuzzer harness: MTA-STS policy parser, TXT record parser and MX pattern matching (src/outbound/mta_sts.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "outbound/mta_sts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mta_sts_policy p = { 0 };
	const char *err;
	if (mta_sts_policy_parse((const char *)data, size, &p, &err) == 1) {
		if (p.mode != MTA_STS_MODE_NONE && p.mx_count == 0)
			__builtin_trap();
		if (p.max_age > MTA_STS_MAX_AGE)
			__builtin_trap();
		for (size_t i = 0; i < p.mx_count; i++)
			(void)mta_sts_policy_allows(&p, p.mx[i][0] == '*' ? p.mx[i] + 1 : p.mx[i]);
	}
	mta_sts_policy_clear(&p);

	/* the same bytes as a NUL-terminated TXT record and as pattern/host pairs */
	char *s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	char id[40];
	if (mta_sts_txt_parse(s, id, sizeof(id)) == 1 && strlen(id) > 32)
		__builtin_trap();
	char *nl = memchr(s, '\n', strlen(s));
	if (nl != NULL) {
		*nl = '\0';
		(void)mta_sts_mx_match(s, nl + 1);
	}
	free(s);
	return 0;
}
