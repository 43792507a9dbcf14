#include "outbound/dane.h"

#include <stdio.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

bool dane_tlsa_usable(const struct dns_tlsa *t)
{
	if (t->usage != 2 && t->usage != 3)
		return false;
	if (t->selector > 1)
		return false;
	switch (t->mtype) {
	case 0: return t->data_len > 0;
	case 1: return t->data_len == 32;
	case 2: return t->data_len == 64;
	default: return false;
	}
}

size_t dane_usable_count(const struct dns_tlsa *t, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += dane_tlsa_usable(&t[i]) ? 1 : 0;
	return k;
}

int dane_arm(SSL *ssl, const char *host, const char *domain, const struct dns_tlsa *t, size_t n,
             const char **error_r)
{
	if (dane_usable_count(t, n) == 0)
		return 0;
	SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
	if (SSL_CTX_dane_enable(ctx) <= 0) {
		*error_r = "SSL_CTX_dane_enable failed";
		return -1;
	}
	if (SSL_dane_enable(ssl, host) <= 0) {
		*error_r = "SSL_dane_enable failed";
		return -1;
	}
	if (domain != NULL && strcasecmp(domain, host) != 0 && SSL_add1_host(ssl, domain) != 1) {
		*error_r = "SSL_add1_host failed";
		return -1;
	}
	/* RFC 7672 3.1.1: DANE-EE matches the key, not the names */
	SSL_dane_set_flags(ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
	int added = 0;
	for (size_t i = 0; i < n; i++) {
		if (!dane_tlsa_usable(&t[i]))
			continue;
		int r = SSL_dane_tlsa_add(ssl, t[i].usage, t[i].selector, t[i].mtype, t[i].data, t[i].data_len);
		if (r > 0)
			added++;
		else if (r < 0)
			ERR_clear_error(); /* a malformed record: unusable, not fatal */
	}
	if (added == 0)
		return 0;
	SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
	return added;
}

void dane_tlsa_text(const struct dns_tlsa *t, char *out, size_t size)
{
	size_t off;
	int w = snprintf(out, size, "%u %u %u ", t->usage, t->selector, t->mtype);
	if (w < 0 || (size_t)w >= size)
		return;
	off = (size_t)w;
	for (size_t i = 0; i < t->data_len && off + 3 <= size; i++) {
		snprintf(out + off, size - off, "%02x", t->data[i]);
		off += 2;
	}
}
