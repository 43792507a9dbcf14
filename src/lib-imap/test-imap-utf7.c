#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "lib-imap/imap_utf7.h"

static const struct {
	const char *utf8, *mutf7;
} pairs[] = {
	{ "INBOX", "INBOX" },
	{ "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "~peter/mail/&U,BTFw-/&ZeVnLIqe-" },
	{ "Caf\xc3\xa9", "Caf&AOk-" },
	{ "A&B", "A&-B" },
	{ "\xf0\x9f\x93\xa7 Mail", "&2D3c5w- Mail" },
	{ "Entw\xc3\xbcrfe", "Entw&APw-rfe" },
};

static void test_round_trip(void **state)
{
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		struct buf b;
		buf_init(&b, 1024);
		assert_int_equal(imap_utf8_to_mutf7(pairs[i].utf8, &b), 0);
		assert_string_equal(b.data, pairs[i].mutf7);
		buf_reset(&b);
		assert_int_equal(imap_mutf7_to_utf8(pairs[i].mutf7, &b), 0);
		assert_string_equal(b.data, pairs[i].utf8);
		buf_deinit(&b);
	}
}

static void test_invalid(void **state)
{
	static const char *const bad7[] = { "&", "&AOk", "&,,,-", "&AE-", "&Jjo!-", "&2D3-", "&3fc-", "a\xc3\xa9", "&AGE-" };
	static const char *const bad8[] = { "\xc3", "\xff", "\xed\xa0\x80", "\xc0\xaf" };
	for (size_t i = 0; i < sizeof(bad7) / sizeof(bad7[0]); i++) {
		struct buf b;
		buf_init(&b, 1024);
		if (imap_mutf7_to_utf8(bad7[i], &b) != -1)
			fail_msg("accepted mutf7 '%s'", bad7[i]);
		buf_deinit(&b);
	}
	for (size_t i = 0; i < sizeof(bad8) / sizeof(bad8[0]); i++) {
		struct buf b;
		buf_init(&b, 1024);
		assert_int_equal(imap_utf8_to_mutf7(bad8[i], &b), -1);
		buf_deinit(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_invalid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
