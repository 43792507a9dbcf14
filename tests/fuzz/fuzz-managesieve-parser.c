/* Fuzz the ManageSieve command parser: the input is fed in chunks whose sizes come from
   the first byte, commands and errors are consumed as a session would. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "managesieve/managesieve_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t step = (size_t)(data[0] % 16) + 1;
	bool bare = data[0] & 0x80;
	data++;
	size--;
	struct managesieve_parser p;
	managesieve_parser_init(&p, 1100, 4096);
	managesieve_parser_next(&p, bare);
	size_t off = 0;
	while (off < size) {
		size_t n = size - off;
		if (n > step)
			n = step;
		size_t used = 0;
		int r = managesieve_parser_feed(&p, (const char *)data + off, n, &used);
		if (used > n)
			__builtin_trap();
		off += used;
		if (r == 0)
			continue;
		if (r > 0) {
			for (size_t i = 0; i < p.nargs; i++) {
				const char *a = managesieve_parser_arg(&p, i);
				if (a[p.args[i].len] != '\0')
					__builtin_trap();
			}
		} else if (p.fatal) {
			break;
		}
		managesieve_parser_next(&p, bare);
	}
	managesieve_parser_deinit(&p);
	return 0;
}
