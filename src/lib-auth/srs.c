/* srs: SRS0/SRS1 forward and reverse, HMAC-SHA256 truncated, base32. */
#include "lib-auth/srs.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lib/xalloc.h"

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static unsigned max_age(const struct srs_config *c)
{
	return c->max_age_days != 0 ? c->max_age_days : 21;
}

static char sep(const struct srs_config *c)
{
	return c->separator != 0 ? c->separator : '=';
}

static unsigned today(time_t now)
{
	return (unsigned)((now != 0 ? now : time(NULL)) / 86400) % 1024;
}

/* HMAC over the parts joined (lowercased), as SRS_HASH_CHARS base32 chars. */
static bool srs_hash(const char *secret, const char *const *parts, size_t nparts, char out[SRS_HASH_CHARS + 1])
{
	char data[SRS_MAX_ADDRESS * 2];
	size_t o = 0;
	for (size_t i = 0; i < nparts; i++) {
		for (const char *p = parts[i]; *p != '\0'; p++) {
			if (o >= sizeof(data))
				return false;
			data[o++] = (char)tolower((unsigned char)*p);
		}
		if (o >= sizeof(data))
			return false;
		data[o++] = '\0'; /* unambiguous join */
	}
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mlen = 0;
	if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)data, o, mac, &mlen) == NULL)
		return false;
	/* 5 bits per character from the first bytes */
	unsigned bitpos = 0;
	for (int i = 0; i < SRS_HASH_CHARS; i++) {
		unsigned byte = bitpos / 8, off = bitpos % 8;
		unsigned v = ((unsigned)mac[byte] << 8 | mac[byte + 1]) >> (11 - off);
		out[i] = b32[v & 31];
		bitpos += 5;
	}
	out[SRS_HASH_CHARS] = '\0';
	return true;
}

static bool hash_ok(const struct srs_config *c, const char *given, size_t glen, const char *const *parts,
		    size_t nparts)
{
	if (glen != SRS_HASH_CHARS)
		return false;
	char up[SRS_HASH_CHARS];
	for (size_t i = 0; i < glen; i++)
		up[i] = (char)toupper((unsigned char)given[i]);
	for (size_t k = 0; k < SRS_MAX_SECRETS && c->secrets[k] != NULL; k++) {
		char h[SRS_HASH_CHARS + 1];
		if (srs_hash(c->secrets[k], parts, nparts, h) && CRYPTO_memcmp(h, up, SRS_HASH_CHARS) == 0)
			return true;
	}
	return false;
}

static bool is_sep(char ch)
{
	return ch == '=' || ch == '+' || ch == '-';
}

/* "SRS0" or "SRS1" followed by a separator, case-insensitively */
static int srs_kind(const char *local)
{
	if (strncasecmp(local, "SRS0", 4) == 0 && is_sep(local[4]))
		return 0;
	if (strncasecmp(local, "SRS1", 4) == 0 && is_sep(local[4]))
		return 1;
	return -1;
}

int srs_forward(const struct srs_config *c, const char *address, time_t now, char **out_r,
		const char **error_r)
{
	*out_r = NULL;
	if (c->secrets[0] == NULL || c->domain == NULL) {
		*error_r = "SRS needs a secret and a domain";
		return -1;
	}
	if (address == NULL || *address == '\0')
		return 0;
	if (strlen(address) > SRS_MAX_ADDRESS) {
		*error_r = "address too long";
		return -1;
	}
	const char *at = strrchr(address, '@');
	if (at == NULL || at == address || at[1] == '\0') {
		*error_r = "address without local part or domain";
		return -1;
	}
	char *local = xstrndup(address, (size_t)(at - address));
	const char *domain = at + 1;
	int kind = srs_kind(local);
	if (kind < 0 && strcasecmp(domain, c->domain) == 0) {
		free(local);
		return 0;
	}
	char h[SRS_HASH_CHARS + 1];
	char *out = NULL;
	if (kind == 0) {
		/* SRS0=...@hop -> SRS1=H=hop==...@us; rest keeps the separator after SRS0 */
		const char *rest = local + 4;
		const char *parts[] = {domain, rest};
		if (srs_hash(c->secrets[0], parts, 2, h))
			out = xasprintf("SRS1%c%s=%s=%s@%s", sep(c), h, domain, rest, c->domain);
	} else if (kind == 1) {
		/* SRS1=H=hop==...@prev -> rehash for us, keep the first hop */
		const char *p = local + 5;
		const char *e1 = strchr(p, '=');
		const char *hop = e1 != NULL ? e1 + 1 : NULL;
		const char *e2 = hop != NULL ? strchr(hop, '=') : NULL;
		if (e2 == NULL) {
			free(local);
			*error_r = "malformed SRS1 address";
			return -1;
		}
		char *hopd = xstrndup(hop, (size_t)(e2 - hop));
		const char *rest = e2 + 1;
		const char *parts[] = {hopd, rest};
		if (srs_hash(c->secrets[0], parts, 2, h))
			out = xasprintf("SRS1%c%s=%s=%s@%s", sep(c), h, hopd, rest, c->domain);
		free(hopd);
	} else {
		char ts[3] = {b32[today(now) >> 5], b32[today(now) & 31], 0};
		const char *parts[] = {ts, domain, local};
		if (srs_hash(c->secrets[0], parts, 3, h))
			out = xasprintf("SRS0%c%s=%s=%s=%s@%s", sep(c), h, ts, domain, local, c->domain);
	}
	free(local);
	if (out == NULL || strlen(out) > SRS_MAX_ADDRESS) {
		free(out);
		*error_r = "rewritten address too long";
		return -1;
	}
	*out_r = out;
	return 1;
}

static int b32val(char ch)
{
	const char *p = strchr(b32, toupper((unsigned char)ch));
	return ch != '\0' && p != NULL ? (int)(p - b32) : -1;
}

int srs_reverse(const struct srs_config *c, const char *address, time_t now, char **out_r,
		const char **error_r)
{
	*out_r = NULL;
	if (address == NULL || strlen(address) > SRS_MAX_ADDRESS)
		return 0;
	const char *at = strrchr(address, '@');
	if (at == NULL)
		return 0;
	char *local = xstrndup(address, (size_t)(at - address));
	int kind = srs_kind(local);
	int ret = -1;
	*error_r = "malformed SRS address";
	if (kind < 0) {
		ret = 0;
	} else if (kind == 0) {
		/* SRS0 H TT domain local; separators: one after SRS0, '=' after the rest */
		char *p = local + 5;
		char *f[4];
		int n = 0;
		f[n++] = p;
		while (n < 4 && (p = strchr(p, '=')) != NULL) {
			*p++ = '\0';
			f[n++] = p;
		}
		if (n == 4 && strlen(f[1]) == 2 && b32val(f[1][0]) >= 0 && b32val(f[1][1]) >= 0 && *f[2] != '\0' &&
		    *f[3] != '\0') {
			const char *parts[] = {f[1], f[2], f[3]};
			if (!hash_ok(c, f[0], strlen(f[0]), parts, 3)) {
				*error_r = "SRS hash does not verify";
			} else {
				unsigned ts = (unsigned)(b32val(f[1][0]) << 5 | b32val(f[1][1]));
				unsigned age = (today(now) + 1024 - ts) % 1024;
				if (age > max_age(c)) {
					*error_r = "SRS address expired";
				} else {
					*out_r = xasprintf("%s@%s", f[3], f[2]);
					ret = 1;
				}
			}
		}
	} else {
		/* SRS1 H hop = rest(=separator + SRS0 fields) */
		char *p = local + 5;
		char *e1 = strchr(p, '=');
		char *hop = e1 != NULL ? e1 + 1 : NULL;
		char *e2 = hop != NULL ? strchr(hop, '=') : NULL;
		if (e2 != NULL && e2 > hop && e2[1] != '\0') {
			*e1 = '\0';
			*e2 = '\0';
			const char *rest = e2 + 1;
			const char *parts[] = {hop, rest};
			if (!hash_ok(c, p, strlen(p), parts, 2)) {
				*error_r = "SRS hash does not verify";
			} else {
				*out_r = xasprintf("SRS0%s@%s", rest, hop);
				ret = 1;
			}
		}
	}
	free(local);
	return ret;
}
