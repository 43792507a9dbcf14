#include "lib-smtp/smtp_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define E_SYNTAX_CODE 501
#define E_SYNTAX_ENH "5.1.3"

static int bad(struct smtp_parse_error *err, const char *text)
{
	return smtp_parse_fail(err, E_SYNTAX_CODE, E_SYNTAX_ENH, text);
}

static inline bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static inline unsigned char to_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* RFC 5322 atext. */
static inline bool is_atext(unsigned char c)
{
	if (is_alpha(c) || is_digit(c))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

bool smtp_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < len) {
		unsigned char c = p[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n;
		unsigned int cp;
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i - 1 < n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			unsigned char cc = p[i + k];
			if ((cc & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (cc & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

/*
 * Hostname: LDH labels (non-ASCII bytes allowed in labels when utf8), one
 * trailing dot dropped. Writes the lowercased result to out when out != NULL.
 */
static bool parse_hostname(const char *s, size_t len, bool utf8, char *out, size_t *out_len)
{
	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return false;
	size_t start = 0;
	bool all_digits = true;
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)s[i] : '.';
		if (c == '.') {
			size_t l = i - start;
			if (l == 0 || l > 63 || s[start] == '-' || s[i - 1] == '-')
				return false;
			if (i < len)
				all_digits = true;
			start = i + 1;
			continue;
		}
		if (is_digit(c))
			continue;
		all_digits = false;
		if (is_alpha(c) || c == '-' || (utf8 && c >= 0x80))
			continue;
		return false;
	}
	/* A last label of digits only is no TLD: "user@10.0.0.1" must use a literal. */
	if (all_digits)
		return false;
	if (out != NULL) {
		for (size_t i = 0; i < len; i++)
			out[i] = (char)to_lower((unsigned char)s[i]);
		out[len] = '\0';
		*out_len = len;
	}
	return true;
}

/* "[...]" with brackets; canonical text to out (size SMTP_ADDRESS_DOMAIN_MAX + 1). */
static bool parse_literal(const char *s, size_t len, struct smtp_address *addr)
{
	char tmp[INET6_ADDRSTRLEN + 8];
	unsigned char bin[16];
	if (len < 3 || s[0] != '[' || s[len - 1] != ']')
		return false;
	const char *in = s + 1;
	size_t n = len - 2;
	int family;
	const char *prefix;
	if (n > 5 && smtp_view_eq_icase((struct smtp_view){ in, 5 }, "IPv6:")) {
		family = AF_INET6;
		prefix = "[IPv6:";
		in += 5;
		n -= 5;
	} else {
		family = AF_INET;
		prefix = "[";
	}
	if (n == 0 || n >= sizeof(tmp))
		return false;
	memcpy(tmp, in, n);
	tmp[n] = '\0';
	if (memchr(tmp, '\0', n) != NULL || inet_pton(family, tmp, bin) != 1)
		return false;
	if (inet_ntop(family, bin, tmp, sizeof(tmp)) == NULL)
		return false;
	if (addr != NULL) {
		size_t pl = strlen(prefix), tl = strlen(tmp);
		memcpy(addr->domain, prefix, pl);
		memcpy(addr->domain + pl, tmp, tl);
		addr->domain[pl + tl] = ']';
		addr->domain[pl + tl + 1] = '\0';
		addr->domain_len = pl + tl + 1;
		addr->literal_family = family;
		memset(addr->literal_addr, 0, sizeof(addr->literal_addr));
		memcpy(addr->literal_addr, bin, family == AF_INET ? 4 : 16);
		addr->flags |= SMTP_ADDRESS_F_LITERAL;
	}
	return true;
}

static bool parse_domain(const char *s, size_t len, bool utf8, struct smtp_address *addr)
{
	if (len > 0 && s[0] == '[')
		return parse_literal(s, len, addr);
	return parse_hostname(s, len, utf8, addr != NULL ? addr->domain : NULL,
			      addr != NULL ? &addr->domain_len : NULL);
}

bool smtp_address_domain_valid(const char *s, size_t len, unsigned flags)
{
	bool utf8 = (flags & SMTP_ADDRESS_ALLOW_UTF8) != 0;
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)s[i] >= 0x80) {
			if (!utf8 || !smtp_utf8_valid(s, len))
				return false;
			break;
		}
	}
	return parse_domain(s, len, utf8, NULL);
}

/* Length of an At-domain ("@" domain) starting at p[0] == '@'; 0 when invalid. */
static size_t route_domain_len(const char *p, size_t n, bool utf8)
{
	size_t i = 1;
	if (i < n && p[i] == '[') {
		const char *end = memchr(p + i, ']', n - i);
		if (end == NULL)
			return 0;
		i = (size_t)(end - p) + 1;
	} else {
		while (i < n && p[i] != ',' && p[i] != ':')
			i++;
	}
	if (!parse_domain(p + 1, i - 1, utf8, NULL))
		return 0;
	return i;
}

static bool has_8bit(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)s[i] >= 0x80)
			return true;
	}
	return false;
}

static void address_clear(struct smtp_address *addr)
{
	addr->flags = 0;
	addr->local_len = 0;
	addr->domain_len = 0;
	addr->local[0] = '\0';
	addr->domain[0] = '\0';
	addr->literal_family = 0;
}

static int parse_fail(struct smtp_address *addr, struct smtp_parse_error *err, const char *text)
{
	address_clear(addr);
	return bad(err, text);
}

int smtp_address_parse(const char *s, size_t len, unsigned flags, struct smtp_address *addr,
		       struct smtp_parse_error *err)
{
	address_clear(addr);
	if (len > SMTP_ADDRESS_PATH_MAX)
		return bad(err, "Path too long");
	if (len < 2 || s[0] != '<' || s[len - 1] != '>')
		return bad(err, "Bad address syntax (angle brackets required)");
	const char *p = s + 1;
	size_t n = len - 2;

	bool has8 = false;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)p[i] >= 0x80) {
			has8 = true;
			break;
		}
	}
	bool utf8 = (flags & SMTP_ADDRESS_ALLOW_UTF8) != 0;
	if (has8) {
		if (!utf8)
			return smtp_parse_fail(err, 553, "5.6.7",
					       "Non-ASCII address requires SMTPUTF8");
		if (!smtp_utf8_valid(p, n))
			return bad(err, "Bad address syntax (invalid UTF-8)");
	}

	if (n == 0) {
		if ((flags & SMTP_ADDRESS_ALLOW_NULL) == 0)
			return bad(err, "Null address not allowed here");
		addr->flags = SMTP_ADDRESS_F_NULL;
		return 0;
	}

	size_t i = 0;
	if (p[0] == '@') {
		/* A-d-l ":" — checked, then dropped. */
		for (;;) {
			size_t dl = route_domain_len(p + i, n - i, utf8);
			if (dl == 0)
				return bad(err, "Bad address syntax (source route)");
			i += dl;
			if (i < n && p[i] == ',' && i + 1 < n && p[i + 1] == '@') {
				i++;
				continue;
			}
			if (i < n && p[i] == ':') {
				i++;
				break;
			}
			return bad(err, "Bad address syntax (source route)");
		}
		addr->flags |= SMTP_ADDRESS_F_ROUTE_DROPPED;
	}

	size_t local_start = i;
	size_t out = 0;
	if (i < n && p[i] == '"') {
		i++;
		for (;;) {
			if (i >= n)
				return parse_fail(addr, err, "Bad address syntax (unterminated quote)");
			unsigned char c = (unsigned char)p[i];
			if (c == '"')
				break;
			if (c == '\\') {
				if (i + 1 >= n)
					return parse_fail(addr, err, "Bad address syntax (quoted pair)");
				c = (unsigned char)p[i + 1];
				if (c < 32 || c > 126)
					return parse_fail(addr, err, "Bad address syntax (quoted pair)");
				i++;
			} else if (!(c == 32 || c == 33 || (c >= 35 && c <= 91) ||
				     (c >= 93 && c <= 126) || c >= 0x80)) {
				return parse_fail(addr, err, "Bad address syntax (quoted string)");
			}
			if (out >= SMTP_ADDRESS_LOCAL_MAX)
				return parse_fail(addr, err, "Local part too long");
			addr->local[out++] = (char)c;
			i++;
		}
		i++; /* closing quote */
		addr->flags |= SMTP_ADDRESS_F_QUOTED;
		if (out == 0)
			return parse_fail(addr, err, "Bad address syntax (empty local part)");
	} else {
		bool dot_ok = false; /* a dot may follow only an atext char */
		while (i < n && p[i] != '@') {
			unsigned char c = (unsigned char)p[i];
			if (c == '.') {
				if (!dot_ok)
					return parse_fail(addr, err, "Bad address syntax (dots in local part)");
				dot_ok = false;
			} else if (is_atext(c) || c >= 0x80) {
				dot_ok = true;
			} else {
				return parse_fail(addr, err, "Bad address syntax (local part)");
			}
			if (out >= SMTP_ADDRESS_LOCAL_MAX)
				return parse_fail(addr, err, "Local part too long");
			addr->local[out++] = (char)c;
			i++;
		}
		if (out == 0)
			return parse_fail(addr, err, "Bad address syntax (empty local part)");
		if (!dot_ok)
			return parse_fail(addr, err, "Bad address syntax (dots in local part)");
	}
	if (i - local_start > SMTP_ADDRESS_LOCAL_MAX)
		return parse_fail(addr, err, "Local part too long");
	addr->local[out] = '\0';
	addr->local_len = out;

	if (i == n) {
		if ((flags & SMTP_ADDRESS_ALLOW_POSTMASTER) != 0 &&
		    (addr->flags & SMTP_ADDRESS_F_QUOTED) == 0 &&
		    smtp_view_eq_icase((struct smtp_view){ addr->local, out }, "postmaster")) {
			addr->flags |= SMTP_ADDRESS_F_POSTMASTER;
			return 0;
		}
		return parse_fail(addr, err, "Bad address syntax (domain required)");
	}
	if (p[i] != '@')
		return parse_fail(addr, err, "Bad address syntax");
	i++;
	if (!parse_domain(p + i, n - i, utf8, addr))
		return parse_fail(addr, err, "Bad address syntax (domain)");
	if (has8 && (has_8bit(addr->local, addr->local_len) ||
		     has_8bit(addr->domain, addr->domain_len)))
		addr->flags |= SMTP_ADDRESS_F_UTF8;
	return 0;
}

static bool local_is_dot_string(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (s[i - 1] == '.')
				return false;
		} else if (!is_atext(c) && c < 0x80) {
			return false;
		}
	}
	return true;
}

int smtp_address_format(const struct smtp_address *addr, char *dst, size_t size)
{
	size_t o = 0;
#define PUT(ch)                                  \
	do {                                         \
		if (o + 1 >= size)                       \
			goto too_small;                      \
		dst[o++] = (ch);                         \
	} while (0)
	if (size == 0)
		return -1;
	if ((addr->flags & SMTP_ADDRESS_F_NULL) != 0) {
		dst[0] = '\0';
		return 0;
	}
	if (local_is_dot_string(addr->local, addr->local_len)) {
		for (size_t i = 0; i < addr->local_len; i++)
			PUT(addr->local[i]);
	} else {
		PUT('"');
		for (size_t i = 0; i < addr->local_len; i++) {
			char c = addr->local[i];
			if (c == '"' || c == '\\')
				PUT('\\');
			PUT(c);
		}
		PUT('"');
	}
	if (addr->domain_len > 0) {
		PUT('@');
		for (size_t i = 0; i < addr->domain_len; i++)
			PUT(addr->domain[i]);
	}
	dst[o] = '\0';
	return (int)o;
too_small:
	dst[0] = '\0';
	return -1;
#undef PUT
}
