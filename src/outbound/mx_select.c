#include "outbound/mx_select.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

bool mx_name_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	return la == lb && la > 0 && strncasecmp(a, b, la) == 0;
}

bool mx_name_is_self(const char *host, const char *const *own, size_t own_count)
{
	for (size_t i = 0; i < own_count; i++) {
		if (own[i] != NULL && mx_name_equal(host, own[i]))
			return true;
	}
	return false;
}

bool mx_addr_is_self(const struct dns_addr *addr, const char *const *own_addrs, size_t own_count)
{
	static const uint8_t zero[16];
	if (addr->family == AF_INET && addr->u.v4.s_addr == 0)
		return true;
	if (addr->family == AF_INET6 && memcmp(&addr->u.v6, zero, 16) == 0)
		return true;
	for (size_t i = 0; i < own_count; i++) {
		uint8_t buf[16];
		if (addr->family == AF_INET && inet_pton(AF_INET, own_addrs[i], buf) == 1 &&
		    memcmp(buf, &addr->u.v4, 4) == 0)
			return true;
		if (addr->family == AF_INET6 && inet_pton(AF_INET6, own_addrs[i], buf) == 1 &&
		    memcmp(buf, &addr->u.v6, 16) == 0)
			return true;
	}
	return false;
}

size_t mx_self_cut(const struct dns_mx *mx, size_t n, const char *const *own, size_t own_count, bool *self_r)
{
	*self_r = false;
	for (size_t i = 0; i < n; i++) {
		if (!mx_name_is_self(mx[i].host, own, own_count))
			continue;
		*self_r = true;
		/* keep only strictly better preferences */
		size_t keep = 0;
		while (keep < n && mx[keep].pref < mx[i].pref)
			keep++;
		return keep;
	}
	return n;
}
