/*
 * Fuzz smtp_reply_parser (limits from the first byte) and smtp_reply_ehlo_parse.
 * Property: the sequence of replies (code, enhanced code, text, line count,
 * end offset) and the final verdict are the same whether the input is fed whole or one
 * byte at a time.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib-smtp/smtp_reply.h"

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static uint64_t run(const char *in, size_t len, size_t chunk, size_t max_line, unsigned max_lines,
		    size_t max_text)
{
	struct smtp_reply_parser p;
	uint64_t h = 0xcbf29ce484222325ULL;
	smtp_reply_parser_init(&p, max_line, max_lines, max_text);
	size_t pos = 0;
	while (pos < len) {
		size_t n = len - pos < chunk ? len - pos : chunk;
		size_t used;
		const struct smtp_reply *reply;
		const char *error;
		int ret = smtp_reply_parser_feed(&p, in + pos, n, &used, &reply, &error);
		if (used > n)
			abort();
		pos += used;
		if (ret == SMTP_REPLY_AGAIN) {
			if (used != n)
				abort();
			continue;
		}
		if (ret == SMTP_REPLY_INVALID) {
			/* where it stopped reading may differ (a too-long line is seen
			 * early when trickled); the verdict may not */
			h = mix(h, error, strlen(error));
			break;
		}
		h = mix(h, &pos, sizeof(pos));
		if (reply->code < 200 || reply->code > 559 || reply->lines == 0 || reply->lines > p.max_lines ||
		    strlen(reply->text.data) != reply->text.len)
			abort();
		h = mix(h, &reply->code, sizeof(reply->code));
		h = mix(h, reply->enhanced, strlen(reply->enhanced));
		h = mix(h, reply->text.data, reply->text.len);
		h = mix(h, &reply->lines, sizeof(reply->lines));
		struct smtp_ehlo ehlo;
		if (smtp_reply_ehlo_parse(reply, &ehlo) == 0) {
			if (strlen(ehlo.auth) >= sizeof(ehlo.auth) || strlen(ehlo.domain) >= sizeof(ehlo.domain))
				abort();
			h = mix(h, &ehlo.caps, sizeof(ehlo.caps));
		}
	}
	smtp_reply_parser_deinit(&p);
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t max_line = 4 + (data[0] & 0x3f) * 4u;
	unsigned max_lines = 1 + ((data[0] >> 6) & 3u) * 3u;
	const char *in = (const char *)data + 1;
	size_t len = size - 1;
	if (run(in, len, SIZE_MAX, max_line, max_lines, 200) != run(in, len, 1, max_line, max_lines, 200))
		abort();
	return 0;
}
