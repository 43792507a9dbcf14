/*
 * dkim-tool: a small driver for the dkimpy interoperability test
 * (test-dkim-interop.py); not installed.
 *   dkim-tool keygen rsa|ed25519 PRIVFILE   writes the key, prints the TXT record
 *   dkim-tool sign PRIVFILE DOMAIN SELECTOR  stdin message -> stdout signed message
 *   dkim-tool verify NAME TXT                stdin message -> per-signature results;
 *                                            exit 0 if the message result is pass
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib-auth/dkim.h"
#include "lib-auth/testzone.h"
#include "lib/xalloc.h"

static char *slurp(FILE *f, size_t *len_r)
{
	struct buf b;
	buf_init(&b, 32 * 1024 * 1024);
	char tmp[8192];
	size_t n;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		if (buf_append(&b, tmp, n) < 0)
			break;
	*len_r = b.len;
	char *s = buf_steal(&b);
	buf_deinit(&b);
	return s;
}

int main(int argc, char **argv)
{
	const char *err = "usage";
	if (argc == 4 && strcmp(argv[1], "keygen") == 0) {
		char *pem, *txt;
		if (dkim_keygen(argv[2], &pem, &txt, &err) < 0)
			goto fail;
		FILE *f = fopen(argv[3], "w");
		if (f == NULL)
			goto fail;
		fputs(pem, f);
		fclose(f);
		printf("%s\n", txt);
		free(pem);
		free(txt);
		return 0;
	}
	if (argc == 5 && strcmp(argv[1], "sign") == 0) {
		FILE *f = fopen(argv[2], "r");
		if (f == NULL)
			goto fail;
		size_t klen, mlen;
		char *pem = slurp(f, &klen);
		fclose(f);
		char *msg = slurp(stdin, &mlen);
		struct dkim_sign_options so = { .domain = argv[3], .selector = argv[4], .key_pem = pem };
		char *hdr;
		if (dkim_sign(msg, mlen, &so, &hdr, &err) < 0)
			goto fail;
		fputs(hdr, stdout);
		fwrite(msg, 1, mlen, stdout);
		free(hdr);
		free(msg);
		free(pem);
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "verify") == 0) {
		size_t mlen;
		char *msg = slurp(stdin, &mlen);
		struct testzone *z = testzone_new();
		testzone_add(z, argv[2], "TXT", argv[3], strlen(argv[3]), 0);
		struct authdns dns;
		testzone_authdns(z, &dns);
		struct dkim_verify_result r;
		dkim_verify(msg, mlen, &dns, NULL, &r);
		for (size_t i = 0; i < r.count; i++)
			printf("%s %s\n", dkim_result_name(r.sigs[i].result), r.sigs[i].problem ? r.sigs[i].problem : "");
		int rc = r.result == DKIM_RESULT_PASS ? 0 : 1;
		dkim_verify_result_free(&r);
		testzone_free(&z);
		free(msg);
		return rc;
	}
fail:
	fprintf(stderr, "dkim-tool: %s\n", err);
	return 2;
}
