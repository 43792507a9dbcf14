/* Helpers shared by the lib-smtp tests (header-only, test code only). */
#ifndef MR_TEST_SMTP_COMMON_H
#define MR_TEST_SMTP_COMMON_H

#include <stdio.h>
#include <string.h>

#include "lib/buf.h"

/* Append bytes to b, printable ASCII as is, anything else as \xNN. */
static inline void test_escape(struct buf *b, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c >= 0x20 && c < 0x7f && c != '\\')
			buf_append_c(b, (char)c);
		else
			buf_printf(b, "\\x%02x", c);
	}
}

/* Length of a test input: explicit len when given (inputs with NUL), else strlen. */
static inline size_t test_len(const char *s, size_t len)
{
	return len != 0 ? len : strlen(s);
}

#endif
