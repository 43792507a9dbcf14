/*
 * Fuzz smtp_data_reader: the input is fed whole into a large out buf, then one
 * byte at a time into a tiny out buf that is drained on OUT_FULL. Properties:
 * same result, same consumed count, same content and counters; DONE only right
 * after CRLF "." CRLF (or "." CRLF at the very start).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib-smtp/smtp_data.h"

struct outcome {
	int ret;
	size_t consumed;
	struct smtp_data_reader r;
};

static void run(const char *in, size_t len, size_t chunk, size_t out_max, struct buf *all,
		struct outcome *o)
{
	struct buf out;
	buf_init(&out, out_max);
	smtp_data_reader_init(&o->r);
	size_t pos = 0;
	int ret = SMTP_DATA_AGAIN;
	while (pos < len) {
		size_t n = len - pos < chunk ? len - pos : chunk;
		size_t used;
		size_t before = out.len;
		ret = smtp_data_reader_feed(&o->r, in + pos, n, &used, &out);
		if (used > n || out.len - before > used + 1)
			abort();
		pos += used;
		if (ret == SMTP_DATA_OUT_FULL) {
			if (used == n)
				abort();
			if (buf_append(all, out.data, out.len) < 0)
				abort();
			buf_reset(&out);
			continue;
		}
		if (ret != SMTP_DATA_AGAIN)
			break;
		if (used != n)
			abort();
	}
	if (buf_append(all, out.data, out.len) < 0)
		abort();
	buf_deinit(&out);
	o->ret = ret;
	o->consumed = pos;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct buf a, b;
	struct outcome oa, ob;
	buf_init(&a, size + 16);
	buf_init(&b, size + 16);
	run(in, size, SIZE_MAX, size + 16, &a, &oa);
	run(in, size, 1, 3, &b, &ob);
	if (oa.ret != ob.ret || oa.consumed != ob.consumed || a.len != b.len ||
	    memcmp(a.data, b.data, a.len) != 0 || oa.r.content_bytes != a.len ||
	    oa.r.header_lines != ob.r.header_lines || oa.r.received_count != ob.r.received_count ||
	    oa.r.nul_count != ob.r.nul_count || oa.r.longest_line != ob.r.longest_line ||
	    oa.r.header_done != ob.r.header_done)
		abort();
	if (oa.ret == SMTP_DATA_DONE) {
		size_t c = oa.consumed;
		if (c < 3 || memcmp(in + c - 3, ".\r\n", 3) != 0)
			abort();
		if (c > 3 && (c < 5 || memcmp(in + c - 5, "\r\n", 2) != 0))
			abort();
		/* The content never holds a bare CR or LF. */
		for (size_t i = 0; i < a.len; i++) {
			if (a.data[i] == '\r' && (i + 1 >= a.len || a.data[i + 1] != '\n'))
				abort();
			if (a.data[i] == '\n' && (i == 0 || a.data[i - 1] != '\r'))
				abort();
		}
	}
	buf_deinit(&a);
	buf_deinit(&b);
	return 0;
}
