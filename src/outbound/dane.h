/*
 * dane: DANE for SMTP (RFC 7672) on top of OpenSSL's DANE verifier.
 *
 * Which TLSA records count: only DANE-TA(2) and DANE-EE(3) usages with
 * selector 0/1 and matching type 0/1/2 (RFC 7672 3.1.3: PKIX-TA(0) and
 * PKIX-EE(1) are unusable for SMTP); a record with a digest of the wrong
 * length is unusable too. The caller decides whether DANE applies at all
 * (secure MX lookup, secure address and secure TLSA answer; see smtp_client.c).
 *
 * With at least one usable record the connection must use TLS and the peer must
 * match one of them (OpenSSL checks; DANE-EE ignores names and dates as RFC 7672
 * 3.1.1 says, DANE-TA checks the names given: the MX host name, and the next-hop
 * domain when given, RFC 7672 3.2.2). A TLSA RRset
 * whose records are all unusable means "TLS required, not authenticated".
 */
#ifndef MR_DANE_H
#define MR_DANE_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "lib-dns/dns_packet.h"

/* A record RFC 7672 lets us use (usage 2/3, known selector and matching type, right digest size). */
bool dane_tlsa_usable(const struct dns_tlsa *t);
/* Number of usable records in the set. */
size_t dane_usable_count(const struct dns_tlsa *t, size_t n);

/*
 * Arm ssl for DANE: SSL_dane_enable(ssl, host) (+ SSL_add1_host(domain) when domain is not
 * NULL) and SSL_dane_tlsa_add for each usable
 * record, SSL_VERIFY_PEER. The SSL_CTX needs SSL_CTX_dane_enable (done here, idempotent).
 * Returns the number of records OpenSSL accepted (>0 armed), 0 when none was usable
 * (ssl unchanged), -1 on an OpenSSL error (*error_r static text).
 */
int dane_arm(SSL *ssl, const char *host, const char *domain, const struct dns_tlsa *t, size_t n,
             const char **error_r);

/* Text "3 1 1 ab12..." for logs; writes at most size bytes. */
void dane_tlsa_text(const struct dns_tlsa *t, char *out, size_t size);

#endif
