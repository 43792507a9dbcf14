/*
 * dns_authdns: the authdns interface (src/lib-auth/authdns.h, synchronous, for
 * SPF/DKIM/DMARC/ARC evaluators on worker threads) on top of dns_sync. One
 * struct dns_sync per thread; the authdns struct borrows it (ctx) and must not
 * outlive it.
 *
 * Mapping: OK/NXDOMAIN/NODATA/TEMPFAIL as is. MX answers are the raw records:
 * the implicit MX and a null MX ("0 .") are both reported as NODATA, because
 * SPF's "mx" mechanism must not use the implicit MX (RFC 7208 5.4). TXT
 * records are the concatenated character-strings (up to an embedded NUL).
 * CNAME chains are followed by the resolver. Over a cap → PERMFAIL.
 */
#ifndef MR_DNS_AUTHDNS_H
#define MR_DNS_AUTHDNS_H

#include "lib-auth/authdns.h"
#include "lib-dns/dns_resolver.h"

void dns_authdns_init(struct authdns *dns, struct dns_sync *sync);

#endif
