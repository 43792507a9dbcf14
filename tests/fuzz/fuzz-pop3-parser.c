/* Fuzz the POP3 line reader and command parser. */
#include <stddef.h>
#include <stdint.h>

#include "pop3/pop3_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pop3_line_reader r;
	pop3_line_reader_init(&r);
	size_t off = 0;
	while (off < size) {
		size_t used = 0;
		int res = pop3_line_reader_feed(&r, (const char *)data + off, size - off, &used);
		off += used;
		if (res == 1) {
			struct pop3_command c;
			(void)pop3_parse_command(r.line.data, r.line.len, &c);
			pop3_line_reader_next(&r);
		}
		if (used == 0)
			break;
	}
	pop3_line_reader_deinit(&r);
	return 0;
}
