/*
 * Fuzz the milter reply framing and decoder (milter_packet_parse,
 * milter_reply_decode) as the client sees a filter's byte stream.
 * Property: the sequence of decoded replies is the same whether the stream is
 * framed from one buffer or accumulated a byte at a time; decoded strings stay
 * inside their packet.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib-milter/milter_proto.h"

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static uint64_t digest(const struct milter_reply *r, const struct milter_packet *pkt)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	const char *end = pkt->data + pkt->len;
	h = mix(h, &r->cmd, 1);
	h = mix(h, &r->code, sizeof(r->code));
	h = mix(h, &r->index, sizeof(r->index));
	const char *strs[] = {r->name, r->value, r->text};
	for (size_t i = 0; i < 3; i++) {
		if (strs[i] == NULL)
			continue;
		if (strs[i] < pkt->data || strs[i] >= end)
			abort();
		size_t l = strlen(strs[i]);
		if (strs[i] + l >= end + 1)
			abort();
		h = mix(h, strs[i], l);
	}
	if (r->body != NULL)
		h = mix(h, r->body, r->body_len);
	return h;
}

/* Frame from a buffer that grows by `step` bytes; returns a digest of every outcome. */
static uint64_t run(const uint8_t *data, size_t size, size_t step)
{
	uint64_t h = 0;
	size_t off = 0, avail = 0;
	for (;;) {
		avail = avail + step > size ? size : avail + step;
		for (;;) {
			struct milter_packet pkt;
			struct milter_reply r;
			size_t used;
			const char *error;
			int ret = milter_packet_parse((const char *)data + off, avail - off, 4096, &pkt, &used, &error);
			if (ret < 0)
				return h ^ 1;
			if (ret == 0)
				break;
			if (milter_reply_decode(&pkt, &r, &error) < 0)
				h = mix(h, "E", 1);
			else
				h = mix(h, &(uint64_t){digest(&r, &pkt)}, 8);
			off += used;
		}
		if (avail == size)
			return h;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	uint64_t whole = run(data, size, size ? size : 1);
	uint64_t trickle = run(data, size, 1);
	if (whole != trickle)
		abort();
	return 0;
}
