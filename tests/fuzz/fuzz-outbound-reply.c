/* libFuzzer harness: the outbound client's reply assembler (src/outbound/client_reply.c), fed line by line. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "outbound/client_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct client_reply r;
	char out[64];
	const char *err;
	const char *p = (const char *)data, *end = p + size;
	client_reply_init(&r, 20);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl != NULL ? nl : end) - p);
		if (client_reply_feed_line(&r, p, n, &err) < 0)
			client_reply_reset(&r);
		if (r.done)
			for (unsigned i = 0; i < r.lines; i++)
				(void)client_reply_line(&r, i, out, sizeof(out));
		p += n + 1;
	}
	client_reply_deinit(&r);
	return 0;
}
