/*
 * Fuzz the command path: smtp_line_reader over the input (max line from the
 * first byte), every line through smtp_command_parse, every MAIL/RCPT path
 * through smtp_address_parse. Property: the same results whether the input is
 * fed whole or one byte at a time (trickle), and every error has a 5xx code.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib-smtp/smtp_address.h"
#include "lib-smtp/smtp_command.h"
#include "lib-smtp/smtp_line.h"

/* A running digest of results, compared between the two feeding modes. */
static uint64_t mix(uint64_t h, uint64_t v)
{
	return (h ^ v) * 0x100000001b3ULL;
}

static uint64_t run(const char *in, size_t len, size_t max_line, size_t chunk)
{
	struct smtp_line_reader r;
	uint64_t h = 0xcbf29ce484222325ULL;
	smtp_line_reader_init(&r, max_line);
	size_t pos = 0;
	while (pos < len) {
		size_t n = len - pos < chunk ? len - pos : chunk;
		size_t used;
		struct smtp_line line;
		int ret = smtp_line_reader_feed(&r, in + pos, n, &used, &line);
		if (used > n || (ret == SMTP_LINE_AGAIN && used != n) || (ret != SMTP_LINE_AGAIN && used == 0))
			abort();
		pos += used;
		if (ret == SMTP_LINE_AGAIN)
			continue;
		h = mix(h, (uint64_t)(ret + 10));
		h = mix(h, pos);
		if (ret != SMTP_LINE_OK)
			continue;
		struct smtp_command cmd;
		struct smtp_parse_error err;
		if (smtp_command_parse(line.data, line.len, &cmd, &err) < 0) {
			if (err.code < 500 || err.code > 555 || err.text == NULL)
				abort();
			h = mix(h, (uint64_t)err.code);
			continue;
		}
		h = mix(h, (uint64_t)cmd.verb);
		if (cmd.verb == SMTP_VERB_MAIL || cmd.verb == SMTP_VERB_RCPT) {
			if (cmd.path.data < line.data || cmd.path.data + cmd.path.len > line.data + line.len)
				abort();
			struct smtp_address a;
			unsigned fl = cmd.mail.smtputf8 ? SMTP_ADDRESS_ALLOW_UTF8 : 0;
			int ar = smtp_address_parse(cmd.path.data, cmd.path.len,
						    fl | SMTP_ADDRESS_ALLOW_NULL | SMTP_ADDRESS_ALLOW_POSTMASTER,
						    &a, &err);
			h = mix(h, (uint64_t)(ar + 2));
			if (ar == 0)
				h = mix(h, a.local_len * 1000 + a.domain_len);
		}
	}
	h = mix(h, r.len);
	h = mix(h, r.discarding);
	smtp_line_reader_deinit(&r);
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t max_line = 2 + data[0] * 4u;
	const char *in = (const char *)data + 1;
	size_t len = size - 1;
	if (run(in, len, max_line, SIZE_MAX) != run(in, len, max_line, 1))
		abort();
	return 0;
}
