/*
 * sieve_private: the structures shared by the stages of lib-sieve (lexer,
 * parser/AST, validator, interpreter). Not for use outside src/lib-sieve
 * except by its tests and fuzz targets.
 */
#ifndef MR_SIEVE_PRIVATE_H
#define MR_SIEVE_PRIVATE_H

#include <stdint.h>

#include "lib-sieve/sieve.h"
#include "lib/buf.h"

/* ---- lexer ---- */

enum sieve_token_type {
	SIEVE_TOK_EOF,
	SIEVE_TOK_ERROR,
	SIEVE_TOK_IDENTIFIER,
	SIEVE_TOK_TAG,
	SIEVE_TOK_NUMBER,
	SIEVE_TOK_STRING,      /* quoted or multi-line; value in str */
	SIEVE_TOK_LBRACKET,
	SIEVE_TOK_RBRACKET,
	SIEVE_TOK_LPAREN,
	SIEVE_TOK_RPAREN,
	SIEVE_TOK_LBRACE,
	SIEVE_TOK_RBRACE,
	SIEVE_TOK_SEMICOLON,
	SIEVE_TOK_COMMA,
};

struct sieve_token {
	enum sieve_token_type type;
	int line, col;
	uint64_t number;
	const char *str;       /* identifier, tag (without ':'), string value or error message */
	size_t len;            /* valid until the next sieve_lexer_next() */
	bool multiline;
};

struct sieve_lexer {
	const char *p, *end;
	int line, col;
	struct buf str;        /* token text */
	char errbuf[128];
};

void sieve_lexer_init(struct sieve_lexer *lx, const char *src, size_t len, size_t max_string);
void sieve_lexer_deinit(struct sieve_lexer *lx);
/* Next token; SIEVE_TOK_ERROR carries the message in str and its position. */
void sieve_lexer_next(struct sieve_lexer *lx, struct sieve_token *tok);
const char *sieve_token_name(enum sieve_token_type t);

/* ---- AST ---- */

enum sieve_arg_type { SIEVE_ARG_NUMBER, SIEVE_ARG_STRING, SIEVE_ARG_STRLIST, SIEVE_ARG_TAG };

struct sieve_str {
	char *s;
	size_t len;
	bool vars;             /* contains ${...} references to expand at runtime */
};

struct sieve_arg {
	enum sieve_arg_type type;
	int line, col;
	uint64_t number;
	char *tag;                 /* SIEVE_ARG_TAG: name without ':' */
	struct sieve_str *strs;    /* STRING (1) or STRLIST (n) */
	size_t nstrs;
	bool used;                 /* consumed as a tag parameter */
	void **regex;              /* :regex keys: pcre2_code per constant string (NULL for ${...}) */
};

enum sieve_tag_id {
	TAG_NONE,
	TAG_IS, TAG_CONTAINS, TAG_MATCHES, TAG_REGEX, TAG_VALUE, TAG_COUNT,
	TAG_COMPARATOR,
	TAG_ALL, TAG_LOCALPART, TAG_DOMAIN, TAG_USER, TAG_DETAIL,
	TAG_COPY, TAG_FLAGS, TAG_CREATE,
	TAG_DAYS, TAG_SECONDS, TAG_SUBJECT, TAG_FROM, TAG_ADDRESSES, TAG_MIME, TAG_HANDLE,
	TAG_RAW, TAG_CONTENT, TAG_TEXT,
	TAG_OVER, TAG_UNDER,
	TAG_ZONE, TAG_ORIGINALZONE,
	TAG_INDEX, TAG_LAST,
	TAG_LOWER, TAG_UPPER, TAG_LOWERFIRST, TAG_UPPERFIRST, TAG_QUOTEWILDCARD,
	TAG_QUOTEREGEX, TAG_LENGTH, TAG_ENCODEURL,
	TAG_IMPORTANCE, TAG_OPTIONS, TAG_MESSAGE,
	TAG_PERSONAL, TAG_GLOBAL, TAG_ONCE, TAG_OPTIONAL,
	TAG_HEADER, TAG_UNIQUEID,
	TAG_RELAY, TAG_TRANSPORT,
	TAG_APPEND_RESULT, TAG_FOLDER, TAG_SMTP, TAG_EXTENSION,
	TAG_MIME_, TAG_ANYCHILD, TAG_TYPE, TAG_SUBTYPE, TAG_CONTENTTYPE, TAG_PARAM, TAG_NAME, TAG_FIRST,
	TAG_COUNT_ALL
};

enum sieve_match { SIEVE_MATCH_IS, SIEVE_MATCH_CONTAINS, SIEVE_MATCH_MATCHES, SIEVE_MATCH_REGEX,
		   SIEVE_MATCH_VALUE, SIEVE_MATCH_COUNT };
enum sieve_rel { SIEVE_REL_GT, SIEVE_REL_GE, SIEVE_REL_LT, SIEVE_REL_LE, SIEVE_REL_EQ, SIEVE_REL_NE };
enum sieve_cmp { SIEVE_CMP_OCTET, SIEVE_CMP_CASEMAP, SIEVE_CMP_NUMERIC, SIEVE_CMP_UNICODE };
/* i;unicode-casemap: fold to lower case (ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic) */
void sieve_unicode_fold(const char *s, size_t len, struct buf *out);
enum sieve_addrpart { SIEVE_ADDR_ALL, SIEVE_ADDR_LOCALPART, SIEVE_ADDR_DOMAIN, SIEVE_ADDR_USER,
		      SIEVE_ADDR_DETAIL };

enum sieve_cmd_id {
	CMD_UNKNOWN,
	/* commands */
	CMD_REQUIRE, CMD_IF, CMD_ELSIF, CMD_ELSE, CMD_STOP, CMD_KEEP, CMD_DISCARD, CMD_REDIRECT,
	CMD_FILEINTO, CMD_REJECT, CMD_EREJECT, CMD_SET, CMD_VACATION, CMD_SETFLAG, CMD_ADDFLAG,
	CMD_REMOVEFLAG, CMD_ADDHEADER, CMD_DELETEHEADER, CMD_INCLUDE, CMD_RETURN, CMD_GLOBAL,
	CMD_NOTIFY, CMD_ROUTE, CMD_WEBHOOK, CMD_QUARANTINE, CMD_TAG, CMD_REJECT_CODE,
	CMD_FOREVERYPART, CMD_BREAK, CMD_EXTRACTTEXT, CMD_ERROR,
	CMD_TS_TEST, CMD_TS_FAIL, CMD_TS_SET, CMD_TS_RESET, CMD_TS_MESSAGE, CMD_TS_CONFIG,
	/* tests */
	TST_ADDRESS, TST_ALLOF, TST_ANYOF, TST_ENVELOPE, TST_EXISTS, TST_FALSE, TST_TRUE,
	TST_HEADER, TST_NOT, TST_SIZE, TST_STRING, TST_BODY, TST_HASFLAG, TST_DATE,
	TST_CURRENTDATE, TST_MAILBOXEXISTS, TST_DUPLICATE, TST_VALID_NOTIFY_METHOD,
	TST_NOTIFY_METHOD_CAPABILITY, TST_ENVIRONMENT, TST_IHAVE,
	TST_TS_COMPILE, TST_TS_RUN, TST_TS_ERROR, TST_TS_ACTION, TST_TS_EXECUTE, TST_TS_MESSAGE,
};

struct sieve_cmd_def;
struct sieve_script;

struct sieve_node {
	char *ident;
	int line, col;
	struct sieve_arg *args;
	size_t nargs;
	struct sieve_node **tests;   /* a single test or a test list */
	size_t ntests;
	bool test_list;              /* written as ( ... ) */
	struct sieve_node **block;   /* commands of { ... } */
	size_t nblock;
	bool has_block;
	/* resolved by the validator */
	const struct sieve_cmd_def *def;
	enum sieve_cmd_id id;
	struct sieve_arg *pos[4];
	size_t npos;
	struct sieve_arg *tag[TAG_COUNT_ALL];   /* the tag's parameter, or the tag itself */
	uint8_t match, rel, cmp, addrpart;
	unsigned modifiers;                      /* set: bit per TAG_ modifier */
	struct sieve_script *included;           /* include */
	bool ihave_ok;                           /* ihave: all capabilities known */
};

struct sieve_script {
	char *name;
	struct sieve_node **cmds;
	size_t ncmds;
	unsigned required;           /* SIEVE_EXT_* actually required */
	unsigned allowed;
	struct sieve_script **includes;  /* owned */
	size_t nincludes;
	char *testsuite_name;
};

/* parser: builds the AST; -1 with "line:col: message" in *error_r */
int sieve_parse(const char *src, size_t len, const struct sieve_compile_options *opt,
		struct sieve_node ***cmds_r, size_t *ncmds_r, char **error_r);
void sieve_node_free(struct sieve_node *n);

/* validator */
int sieve_validate(struct sieve_script *s, const struct sieve_compile_options *opt,
		   unsigned depth, unsigned *include_count, char **error_r);
/* Extension bit for a require name; 0 if unknown. */
unsigned sieve_ext_lookup(const char *name);

/* match helpers (sieve_match.c) */
#define SIEVE_MAX_MATCH_VALUES 32
int sieve_cmp_lookup(const char *name, unsigned required);
int sieve_rel_lookup(const char *s, size_t len);
/* Wildcard :matches; captures (up to SIEVE_MAX_MATCH_VALUES) when caps != NULL. */
bool sieve_match_wildcard(const char *val, size_t vlen, const char *pat, size_t plen,
			  int cmp, struct buf *caps, unsigned *ncaps);
bool sieve_cmp_equal(int cmp, const char *a, size_t alen, const char *b, size_t blen);
bool sieve_cmp_contains(int cmp, const char *hay, size_t hlen, const char *needle, size_t nlen);
/* -1/0/1 ordering; numeric treats non-numbers as +infinity */
int sieve_cmp_order(int cmp, const char *a, size_t alen, const char *b, size_t blen);
bool sieve_rel_holds(int rel, int order);

/*
 * Test-only hooks of the vnd.dovecot.testsuite subset: how test_script_compile
 * finds a script (path relative to the test file) and resolves its includes.
 */
struct sieve_testsuite_hooks {
	int (*load)(void *ctx, const char *path, char **src_r, size_t *len_r);
	sieve_include_resolver_fn *resolver;
	void *ctx;
};
void sieve_testsuite_set_hooks(const struct sieve_testsuite_hooks *hooks);

/*
 * When set (per thread), the validator goes on after a command fails and
 * appends every "line:col: message" here (at most 64): the testsuite counts
 * errors like Pigeonhole, and sieve_compile uses it for opt->all_errors.
 */
struct sieve_error_list {
	char *msg[64];
	size_t n;
};
extern _Thread_local struct sieve_error_list *sieve_error_sink;

#endif
