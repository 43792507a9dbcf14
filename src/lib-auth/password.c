#include "lib-auth/password.h"

#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

char *password_hash(const char *password)
{
	size_t len = strlen(password);
	if (len == 0 || len > PASSWORD_MAX_LENGTH)
		return NULL;
	char *setting = crypt_gensalt_ra("$y$", 0, NULL, 0);
	if (setting == NULL)
		return NULL;
	struct crypt_data *data = xcalloc(1, sizeof(*data));
	char *out = crypt_rn(password, setting, data, (int)sizeof(*data));
	char *hash = NULL;
	if (out != NULL && strncmp(out, "$y$", 3) == 0)
		hash = xstrdup(out);
	free(setting);
	secret_zero(data, sizeof(*data));
	free(data);
	return hash;
}

static bool hash_supported(const char *hash)
{
	static const char *const prefixes[] = { "$y$", "$2b$", "$2a$", "$2y$", "$6$" };
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (strncmp(hash, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}

bool password_verify(const char *password, const char *hash)
{
	if (hash == NULL || !hash_supported(hash) || strlen(password) > PASSWORD_MAX_LENGTH)
		return false;
	size_t hlen = strlen(hash);
	if (hlen >= CRYPT_OUTPUT_SIZE)
		return false;
	struct crypt_data *data = xcalloc(1, sizeof(*data));
	const char *out = crypt_rn(password, hash, data, (int)sizeof(*data));
	bool ok = false;
	if (out != NULL && out[0] != '*' && strlen(out) == hlen) {
		/* Constant time over the whole length, whatever the first difference. */
		unsigned char diff = 0;
		for (size_t i = 0; i < hlen; i++)
			diff |= (unsigned char)(out[i] ^ hash[i]);
		ok = diff == 0;
	}
	secret_zero(data, sizeof(*data));
	free(data);
	return ok;
}
