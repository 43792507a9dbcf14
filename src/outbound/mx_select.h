/*
 * mx_select: pure helpers for choosing MX hosts (no I/O).
 *
 * Loop detection (RFC 5321 5.1): when one of our own names or addresses is in a
 * domain's MX list, only hosts with a strictly better (lower) preference than
 * our best entry may be used; when none is better, mail for the domain "loops
 * back to myself" (a configuration error: bounce, as Postfix does). The same
 * rule serves backup-MX domains, where we hold mail for the primaries.
 */
#ifndef MR_MX_SELECT_H
#define MR_MX_SELECT_H

#include <stdbool.h>
#include <stddef.h>

#include "lib-dns/dns_packet.h"

/* Case-insensitive host name compare ignoring one trailing dot. */
bool mx_name_equal(const char *a, const char *b);
bool mx_name_is_self(const char *host, const char *const *own, size_t own_count);
/* addr matches one of own_addrs (text IPv4/IPv6), or is an unspecified address (0.0.0.0, ::). */
bool mx_addr_is_self(const struct dns_addr *addr, const char *const *own_addrs, size_t own_count);

/*
 * mx: sorted by preference. Returns how many leading entries may be used. *self_r
 * tells whether we are in the list; a return of 0 with *self_r set is a mail loop.
 */
size_t mx_self_cut(const struct dns_mx *mx, size_t n, const char *const *own, size_t own_count, bool *self_r);

#endif
