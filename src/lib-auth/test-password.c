#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib-auth/password.h"

struct verify_case {
	const char *password;
	const char *hash;
	bool ok;
};

static const struct verify_case verify_cases[] = {
	/* Vectors made by other implementations (python crypt / openssl passwd). */
	{ "demo", "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$1MUQcJhwFWeCUqO3XKU8qDXr7SCWMrv4jrApW6AFrf8", true },
	{ "Demo", "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$1MUQcJhwFWeCUqO3XKU8qDXr7SCWMrv4jrApW6AFrf8", false },
	{ "demo", "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$1MUQcJhwFWeCUqO3XKU8qDXr7SCWMrv4jrApW6AFrf9", false },
	{ "demo", "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$1MUQcJhwFWeCUqO3XKU8qDXr7SCWMrv4jrApW6AFrf", false },
	{ "Hello world!", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1", true },
	{ "Hello world", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1", false },
	{ "p\xc3\xa4ssw\xc3\xb6rd", "$6$abcdefgh$qlUjQo8xiC5dmwOr49rtm.DQdv9onQYoWr0dgDR2SqMkw1296.hIZnRd/ltg71cpfDQGxCw0Bli1kXypCoIxg0", true },
	{ "secret", "$2b$04$X6R6v44fy3XDmbl1BZKuSeMieKU2CNmyxUnqxKzaPtLDOg6RO4L0e", true },
	{ "secreT", "$2b$04$X6R6v44fy3XDmbl1BZKuSeMieKU2CNmyxUnqxKzaPtLDOg6RO4L0e", false },
	/* Unsupported or malformed hashes never verify. */
	{ "", "", false },
	{ "x", "*", false },
	{ "x", "!$6$saltstring$abc", false },
	{ "demo", "$1$abcdefgh$kx4P8C.rf3.1WmsQ0b9/M0", false }, /* MD5-crypt: refused */
	{ "demo", "ab01FAX.bQRSU", false },                      /* DES: refused */
	{ "demo", "$y$", false },
	{ "demo", "$6$", false },
};

static void test_verify(void **state)
{
	for (size_t i = 0; i < sizeof(verify_cases) / sizeof(verify_cases[0]); i++) {
		const struct verify_case *c = &verify_cases[i];
		if (password_verify(c->password, c->hash) != c->ok)
			fail_msg("case %zu: %s / %s: expected %d", i, c->password, c->hash, c->ok);
	}
	assert_false(password_verify("demo", NULL));
}

static void test_hash(void **state)
{
	char *h = password_hash("demo");
	assert_non_null(h);
	assert_memory_equal(h, "$y$", 3);
	assert_true(password_verify("demo", h));
	assert_false(password_verify("demo ", h));
	assert_false(password_verify("", h));
	char *h2 = password_hash("demo");
	assert_non_null(h2);
	assert_string_not_equal(h, h2); /* fresh salt each time */
	free(h);
	free(h2);

	assert_null(password_hash(""));
	char *long_pw = malloc(PASSWORD_MAX_LENGTH + 2);
	memset(long_pw, 'a', PASSWORD_MAX_LENGTH + 1);
	long_pw[PASSWORD_MAX_LENGTH + 1] = '\0';
	assert_null(password_hash(long_pw));
	assert_false(password_verify(long_pw, "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$1MUQcJhwFWeCUqO3XKU8qDXr7SCWMrv4jrApW6AFrf8"));
	free(long_pw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_hash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
