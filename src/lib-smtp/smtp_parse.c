#include "lib-smtp/smtp_parse.h"

#include <string.h>

int smtp_parse_fail(struct smtp_parse_error *err, int code, const char *enhanced, const char *text)
{
	if (err != NULL) {
		err->code = code;
		err->enhanced = enhanced;
		err->text = text;
	}
	return -1;
}

static inline unsigned char ascii_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

bool smtp_view_eq_icase(struct smtp_view v, const char *s)
{
	size_t n = strlen(s);
	if (v.len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (ascii_lower((unsigned char)v.data[i]) != ascii_lower((unsigned char)s[i]))
			return false;
	}
	return true;
}
