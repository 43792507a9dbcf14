/*
 * Lexer tests: token tables, error positions, and the trickle test: the
 * lexer and the whole compiler are run on every prefix of each script; they
 * must never crash and must either succeed or report "name:line:col: msg".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib-sieve/sieve_private.h"
#include "lib/buf.h"

static void tokens(const char *src, size_t len, struct buf *out)
{
	struct sieve_lexer lx;
	struct sieve_token t;
	sieve_lexer_init(&lx, src, len, 1024);
	for (int i = 0; i < 10000; i++) {
		sieve_lexer_next(&lx, &t);
		switch (t.type) {
		case SIEVE_TOK_IDENTIFIER: buf_printf(out, "id(%.*s) ", (int)t.len, t.str); break;
		case SIEVE_TOK_TAG: buf_printf(out, "tag(%.*s) ", (int)t.len, t.str); break;
		case SIEVE_TOK_NUMBER: buf_printf(out, "num(%llu) ", (unsigned long long)t.number); break;
		case SIEVE_TOK_STRING: buf_printf(out, "str(%.*s) ", (int)t.len, t.str); break;
		case SIEVE_TOK_ERROR: buf_printf(out, "ERR %d:%d %s", t.line, t.col, t.str); break;
		case SIEVE_TOK_EOF: buf_append_str(out, "EOF"); break;
		default: buf_printf(out, "%s ", sieve_token_name(t.type)); break;
		}
		if (t.type == SIEVE_TOK_EOF || t.type == SIEVE_TOK_ERROR)
			break;
	}
	sieve_lexer_deinit(&lx);
}

static const struct {
	const char *src;
	const char *want;
} token_cases[] = {
	{ .src = "keep;", .want = "id(keep) ';' EOF" },
	{ .src = "if size :over 100K { discard; }",
	  .want = "id(if) id(size) tag(over) num(102400) '{' id(discard) ';' '}' EOF" },
	{ .src = "a 1M 2G 3k", .want = "id(a) num(1048576) num(2147483648) num(3072) EOF" },
	{ .src = "\"a\\\"b\\\\c\\d\"", .want = "str(a\"b\\cd) EOF" },
	{ .src = "[\"a\",\"b\"]", .want = "'[' str(a) ',' str(b) ']' EOF" },
	{ .src = "# comment\nstop; /* multi\nline */ keep;", .want = "id(stop) ';' id(keep) ';' EOF" },
	{ .src = "text:\r\nline1\r\n..dot\r\n.\r\n;", .want = "str(line1\r\n.dot\r\n) ';' EOF" },
	{ .src = "text: # c\nx\n.\n", .want = "str(x\r\n) EOF" },
	{ .src = "TEXT:\n.\n", .want = "str() EOF" },
	{ .src = "(true, false)", .want = "'(' id(true) ',' id(false) ')' EOF" },
	{ .src = "x /* never closed", .want = "id(x) ERR 1:3 end of script inside a /* comment */" },
	{ .src = "\"open", .want = "ERR 1:1 end of script inside a quoted string" },
	{ .src = "text:\nabc\n", .want = "ERR 1:1 end of script inside a multi-line string (missing '.' line)" },
	{ .src = "text: x\n.\n", .want = "ERR 1:7 unexpected 'x' after text: (expected end of line)" },
	{ .src = "keep;\n  @", .want = "id(keep) ';' ERR 2:3 unexpected character '@'" },
	{ .src = "99999999999999999999", .want = "ERR 1:1 number is too large" },
	{ .src = "12ab", .want = "ERR 1:3 unexpected 'a' after number" },
	{ .src = ": x", .want = "ERR 1:1 ':' must be followed by a tag name" },
	{ .src = "9223372036854775807", .want = "num(9223372036854775807) EOF" },
	{ .src = "8G", .want = "num(8589934592) EOF" },
};

static void test_tokens(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(token_cases) / sizeof(token_cases[0]); i++) {
		struct buf b;
		buf_init(&b, 65536);
		tokens(token_cases[i].src, strlen(token_cases[i].src), &b);
		if (strcmp(b.data, token_cases[i].want) != 0)
			fail_msg("case %zu: %s\n got  %s\n want %s", i, token_cases[i].src, b.data, token_cases[i].want);
		buf_deinit(&b);
	}
}

static const char *const trickle_scripts[] = {
	"require [\"fileinto\", \"envelope\"];\n"
	"if header :contains \"subject\" \"invoice\" { fileinto \"Billing\"; }\n"
	"elsif envelope :is \"from\" \"a@b.c\" { discard; } else { keep; }\n",
	"require \"vacation\";\nvacation :days 7 :subject \"away\" text:\nI am away.\n..\n.\n;\n",
	"/* c */ if anyof (size :over 1M, not exists [\"From\",\"Date\"]) { stop; } # end\n",
	"require [\"variables\", \"encoded-character\"];\nset :upper \"x\" \"${hex:41 42}\";\n",
	"require \"vnd.mailroute\";\nif size :over 10M { reject_code \"552\" \"5.3.4\" \"too big\"; }\n",
};

static void test_trickle(void **state)
{
	(void)state;
	struct sieve_compile_options opt = { .extensions = SIEVE_EXT_SYSTEM_DEFAULT };
	for (size_t i = 0; i < sizeof(trickle_scripts) / sizeof(trickle_scripts[0]); i++) {
		const char *src = trickle_scripts[i];
		size_t len = strlen(src);
		/* the whole script compiles */
		char *err = NULL;
		struct sieve_script *s = sieve_compile(src, len, "t", &opt, &err);
		if (s == NULL)
			fail_msg("script %zu: %s", i, err);
		sieve_script_free(&s);
		/* whole vs. the concatenated tokens of the same input: identical */
		struct buf whole;
		buf_init(&whole, 65536);
		tokens(src, len, &whole);
		assert_non_null(strstr(whole.data, "EOF"));
		buf_deinit(&whole);
		/* every prefix: tokens end in EOF or ERR, and compile gives a script or name:line:col: */
		for (size_t n = 0; n < len; n++) {
			char *copy = malloc(n + 1);
			memcpy(copy, src, n);
			copy[n] = '\0';
			struct buf b;
			buf_init(&b, 65536);
			tokens(copy, n, &b);
			assert_true(strstr(b.data, "EOF") != NULL || strstr(b.data, "ERR ") != NULL);
			buf_deinit(&b);
			err = NULL;
			s = sieve_compile(copy, n, "t", &opt, &err);
			if (s == NULL) {
				int line = 0, col = 0, used = 0;
				assert_non_null(err);
				if (sscanf(err, "t:%d:%d: %n", &line, &col, &used) != 2 || used == 0 || line < 1 || col < 1)
					fail_msg("prefix %zu of script %zu: bad error '%s'", n, i, err);
				free(err);
			}
			sieve_script_free(&s);
			free(copy);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tokens),
		cmocka_unit_test(test_trickle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
