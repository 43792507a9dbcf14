/* fuzz-sieve-lexer: the Sieve lexer alone, over arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "lib-sieve/sieve_private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sieve_lexer lx;
	struct sieve_token t;
	sieve_lexer_init(&lx, (const char *)data, size, 4096);
	for (size_t i = 0; i <= size; i++) {
		sieve_lexer_next(&lx, &t);
		if (t.type == SIEVE_TOK_EOF || t.type == SIEVE_TOK_ERROR)
			break;
	}
	sieve_lexer_deinit(&lx);
	return 0;
}
