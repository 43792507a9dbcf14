/* Fuzz the IMAP command reader and parser: arbitrary bytes, fed in two chunks. */
#include <stddef.h>
#include <stdint.h>

#include "lib-imap/imap_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_reader r;
	imap_reader_init(&r, 512, 4096, 65536);
	size_t split = size > 0 ? data[0] % (size + 1) : 0;
	const char *p = (const char *)data;
	size_t off = 0;
	size_t ends[2] = { split, size };
	for (int k = 0; k < 2; k++) {
		while (off < ends[k]) {
			size_t used = 0;
			enum imap_read_result rr = imap_reader_feed(&r, p + off, ends[k] - off, &used);
			off += used;
			if (rr == IMAP_READ_COMMAND) {
				struct imap_command cmd;
				const char *err;
				if (imap_parse_command(r.cmd.data, r.cmd.len, &cmd, &err) < 0)
					(void)err;
				imap_command_free(&cmd);
				imap_reader_reset(&r);
			} else if (rr == IMAP_READ_FATAL) {
				imap_reader_deinit(&r);
				return 0;
			} else if (rr == IMAP_READ_MORE) {
				break;
			}
		}
	}
	imap_reader_deinit(&r);
	return 0;
}
