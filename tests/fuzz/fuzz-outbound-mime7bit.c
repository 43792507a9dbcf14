/* libFuzzer harness: 8BITMIME downgrade (src/outbound/mime7bit.c): header rewrite and QP encoder. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "outbound/mime7bit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf out;
	size_t off = 0;
	const char *why;
	const char *p = (const char *)data;

	buf_init(&out, MIME7BIT_MAX_HEADER + 256);
	if (mime7bit_header(p, size, &out, &off, &why) == 1 && off > size)
		__builtin_trap();
	buf_deinit(&out);

	/* encode in uneven chunks; the output must stay 7-bit with short lines */
	struct mime7bit_qp q;
	buf_init(&out, size * 4 + 64);
	mime7bit_qp_init(&q);
	for (size_t i = 0; i < size;) {
		size_t n = 1 + (data[i] % 13);
		if (n > size - i)
			n = size - i;
		if (mime7bit_qp_feed(&q, p + i, n, &out) < 0)
			__builtin_trap();
		i += n;
	}
	if (mime7bit_qp_finish(&q, &out) < 0)
		__builtin_trap();
	size_t col = 0;
	for (size_t i = 0; i < out.len; i++) {
		if ((unsigned char)out.data[i] >= 0x80)
			__builtin_trap();
		col = out.data[i] == '\n' ? 0 : col + 1;
		if (col > 77)
			__builtin_trap();
	}
	buf_deinit(&out);
	return 0;
}
