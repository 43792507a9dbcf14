/*
 * sieve_parser: recursive descent over the RFC 5228 section 8.2 grammar into
 * the AST of sieve_private.h. Nesting is bounded by opt->max_nesting so a
 * script of ten thousand '(' cannot exhaust the stack.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "lib-sieve/sieve_private.h"
#include "lib/xalloc.h"

struct parser {
	struct sieve_lexer lx;
	struct sieve_token tok;
	char *error;
	unsigned depth, max_depth;
	size_t max_list;
};

static void p_error(struct parser *p, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void p_error(struct parser *p, int line, int col, const char *fmt, ...)
{
	if (p->error != NULL)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	p->error = xasprintf("%d:%d: %s", line, col, msg);
	free(msg);
}

static void p_next(struct parser *p)
{
	sieve_lexer_next(&p->lx, &p->tok);
	if (p->tok.type == SIEVE_TOK_ERROR)
		p_error(p, p->tok.line, p->tok.col, "%s", p->tok.str);
}

void sieve_node_free(struct sieve_node *n)
{
	if (n == NULL)
		return;
	free(n->ident);
	for (size_t i = 0; i < n->nargs; i++) {
		struct sieve_arg *a = &n->args[i];
		free(a->tag);
		for (size_t j = 0; j < a->nstrs; j++)
			free(a->strs[j].s);
		free(a->strs);
		if (a->regex != NULL) {
			for (size_t j = 0; j < a->nstrs; j++)
				pcre2_code_free(a->regex[j]);
			free(a->regex);
		}
	}
	free(n->args);
	for (size_t i = 0; i < n->ntests; i++)
		sieve_node_free(n->tests[i]);
	free(n->tests);
	for (size_t i = 0; i < n->nblock; i++)
		sieve_node_free(n->block[i]);
	free(n->block);
	free(n);
}

static void push_str(struct sieve_arg *a, const char *s, size_t len)
{
	a->strs = xreallocarray(a->strs, a->nstrs + 1, sizeof(*a->strs));
	a->strs[a->nstrs].s = xmemdup(s, len);
	a->strs[a->nstrs].len = len;
	a->strs[a->nstrs].vars = false;
	a->nstrs++;
}

static struct sieve_node *parse_test(struct parser *p);

/* arguments = *argument [ test / test-list ] */
static int parse_arguments(struct parser *p, struct sieve_node *n, bool in_test)
{
	for (;;) {
		struct sieve_arg a;
		memset(&a, 0, sizeof(a));
		a.line = p->tok.line;
		a.col = p->tok.col;
		switch (p->tok.type) {
		case SIEVE_TOK_NUMBER:
			a.type = SIEVE_ARG_NUMBER;
			a.number = p->tok.number;
			p_next(p);
			break;
		case SIEVE_TOK_TAG:
			a.type = SIEVE_ARG_TAG;
			a.tag = xstrndup(p->tok.str, p->tok.len);
			p_next(p);
			break;
		case SIEVE_TOK_STRING:
			a.type = SIEVE_ARG_STRING;
			push_str(&a, p->tok.str, p->tok.len);
			p_next(p);
			break;
		case SIEVE_TOK_LBRACKET:
			a.type = SIEVE_ARG_STRLIST;
			p_next(p);
			for (;;) {
				if (p->tok.type != SIEVE_TOK_STRING) {
					p_error(p, p->tok.line, p->tok.col,
						"expected a string in the string list, found %s",
						sieve_token_name(p->tok.type));
					break;
				}
				if (a.nstrs >= p->max_list) {
					p_error(p, p->tok.line, p->tok.col,
						"string list has more than %zu items", p->max_list);
					break;
				}
				push_str(&a, p->tok.str, p->tok.len);
				p_next(p);
				if (p->tok.type == SIEVE_TOK_COMMA) {
					p_next(p);
					continue;
				}
				if (p->tok.type == SIEVE_TOK_RBRACKET) {
					p_next(p);
					break;
				}
				p_error(p, p->tok.line, p->tok.col,
					"expected ',' or ']' in the string list, found %s",
					sieve_token_name(p->tok.type));
				break;
			}
			break;
		default:
			goto done;
		}
		n->args = xreallocarray(n->args, n->nargs + 1, sizeof(*n->args));
		n->args[n->nargs++] = a;
		if (p->error != NULL)
			return -1;
	}
done:
	if (p->error != NULL)
		return -1;
	if (p->tok.type == SIEVE_TOK_IDENTIFIER) {
		struct sieve_node *t = parse_test(p);
		if (t == NULL)
			return -1;
		n->tests = xmalloc(sizeof(*n->tests));
		n->tests[0] = t;
		n->ntests = 1;
	} else if (p->tok.type == SIEVE_TOK_LPAREN) {
		int line = p->tok.line, col = p->tok.col;
		n->test_list = true;
		if (++p->depth > p->max_depth) {
			p_error(p, line, col, "test nesting is deeper than %u levels", p->max_depth);
			return -1;
		}
		p_next(p);
		for (;;) {
			if (p->tok.type != SIEVE_TOK_IDENTIFIER) {
				p_error(p, p->tok.line, p->tok.col, "expected a test in the test list, found %s",
					sieve_token_name(p->tok.type));
				return -1;
			}
			struct sieve_node *t = parse_test(p);
			if (t == NULL)
				return -1;
			n->tests = xreallocarray(n->tests, n->ntests + 1, sizeof(*n->tests));
			n->tests[n->ntests++] = t;
			if (p->tok.type == SIEVE_TOK_COMMA) {
				p_next(p);
				continue;
			}
			if (p->tok.type == SIEVE_TOK_RPAREN) {
				p_next(p);
				break;
			}
			p_error(p, p->tok.line, p->tok.col, "expected ',' or ')' in the test list, found %s",
				sieve_token_name(p->tok.type));
			return -1;
		}
		p->depth--;
	}
	(void)in_test;
	return p->error != NULL ? -1 : 0;
}

static struct sieve_node *new_node(struct parser *p)
{
	struct sieve_node *n = xcalloc(1, sizeof(*n));
	n->ident = xstrndup(p->tok.str, p->tok.len);
	n->line = p->tok.line;
	n->col = p->tok.col;
	return n;
}

static struct sieve_node *parse_test(struct parser *p)
{
	if (++p->depth > p->max_depth) {
		p_error(p, p->tok.line, p->tok.col, "test nesting is deeper than %u levels", p->max_depth);
		return NULL;
	}
	struct sieve_node *n = new_node(p);
	p_next(p);
	if (p->error == NULL)
		parse_arguments(p, n, true);
	p->depth--;
	if (p->error != NULL) {
		sieve_node_free(n);
		return NULL;
	}
	return n;
}

static int parse_commands(struct parser *p, struct sieve_node ***cmds, size_t *ncmds, bool in_block);

static struct sieve_node *parse_command(struct parser *p)
{
	struct sieve_node *n = new_node(p);
	p_next(p);
	if (p->error == NULL && parse_arguments(p, n, false) == 0) {
		if (p->tok.type == SIEVE_TOK_SEMICOLON) {
			p_next(p);
		} else if (p->tok.type == SIEVE_TOK_LBRACE) {
			if (++p->depth > p->max_depth) {
				p_error(p, p->tok.line, p->tok.col, "block nesting is deeper than %u levels",
					p->max_depth);
			} else {
				n->has_block = true;
				p_next(p);
				if (p->error == NULL && parse_commands(p, &n->block, &n->nblock, true) == 0) {
					if (p->tok.type != SIEVE_TOK_RBRACE)
						p_error(p, p->tok.line, p->tok.col,
							"expected '}' to close the block of '%s', found %s",
							n->ident, sieve_token_name(p->tok.type));
					else
						p_next(p);
				}
				p->depth--;
			}
		} else if (p->error == NULL) {
			p_error(p, p->tok.line, p->tok.col, "expected ';' or '{' after '%s', found %s",
				n->ident, sieve_token_name(p->tok.type));
		}
	}
	if (p->error != NULL) {
		sieve_node_free(n);
		return NULL;
	}
	return n;
}

static int parse_commands(struct parser *p, struct sieve_node ***cmds, size_t *ncmds, bool in_block)
{
	for (;;) {
		if (p->error != NULL)
			return -1;
		if (p->tok.type == SIEVE_TOK_EOF) {
			if (in_block) {
				p_error(p, p->tok.line, p->tok.col, "end of script inside a block (missing '}')");
				return -1;
			}
			return 0;
		}
		if (p->tok.type == SIEVE_TOK_RBRACE) {
			if (!in_block) {
				p_error(p, p->tok.line, p->tok.col, "unexpected '}' outside a block");
				return -1;
			}
			return 0;
		}
		if (p->tok.type != SIEVE_TOK_IDENTIFIER) {
			p_error(p, p->tok.line, p->tok.col, "expected a command, found %s",
				sieve_token_name(p->tok.type));
			return -1;
		}
		struct sieve_node *n = parse_command(p);
		if (n == NULL)
			return -1;
		*cmds = xreallocarray(*cmds, *ncmds + 1, sizeof(**cmds));
		(*cmds)[(*ncmds)++] = n;
	}
}

int sieve_parse(const char *src, size_t len, const struct sieve_compile_options *opt,
		struct sieve_node ***cmds_r, size_t *ncmds_r, char **error_r)
{
	struct parser p;
	memset(&p, 0, sizeof(p));
	p.max_depth = opt != NULL && opt->max_nesting ? opt->max_nesting : 32;
	p.max_list = opt != NULL && opt->max_list_length ? opt->max_list_length : 1024;
	sieve_lexer_init(&p.lx, src, len, opt != NULL && opt->max_string_length ? opt->max_string_length : 65536);
	*cmds_r = NULL;
	*ncmds_r = 0;
	p_next(&p);
	int ret = parse_commands(&p, cmds_r, ncmds_r, false);
	sieve_lexer_deinit(&p.lx);
	if (ret < 0 || p.error != NULL) {
		for (size_t i = 0; i < *ncmds_r; i++)
			sieve_node_free((*cmds_r)[i]);
		free(*cmds_r);
		*cmds_r = NULL;
		*ncmds_r = 0;
		*error_r = p.error != NULL ? p.error : xstrdup("0:0: parse error");
		return -1;
	}
	return 0;
}
