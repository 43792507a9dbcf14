/*
 * sieve_validator: checks the AST against the command/test/tag tables, with
 * `require` deciding what is known, and resolves everything the interpreter
 * needs (command ids, positional arguments, tags, comparator, match type,
 * address part). Also decodes encoded-character strings and marks strings
 * with variable references. Reports the first error as "line:col: message".
 */
#include <ctype.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib-sieve/sieve_private.h"
#include "lib/xalloc.h"

enum tag_group { G_NONE, G_MATCH, G_CMP, G_ADDR, G_BODY, G_ZONE, G_DAYS, G_DUPID, G_ROUTE, G_LOC, G_MOD, G_MIMEOPT };

struct tag_def {
	const char *name;
	enum sieve_tag_id id;
	unsigned ext;
	char param;      /* 0, 's' string, 'l' string list, 'n' number */
	uint8_t group;
	uint8_t prec;    /* set modifiers: precedence */
};

static const struct tag_def tag_defs[] = {
	{ "is", TAG_IS, 0, 0, G_MATCH, 0 },
	{ "contains", TAG_CONTAINS, 0, 0, G_MATCH, 0 },
	{ "matches", TAG_MATCHES, 0, 0, G_MATCH, 0 },
	{ "regex", TAG_REGEX, SIEVE_EXT_REGEX, 0, G_MATCH, 0 },
	{ "value", TAG_VALUE, SIEVE_EXT_RELATIONAL, 's', G_MATCH, 0 },
	{ "count", TAG_COUNT, SIEVE_EXT_RELATIONAL, 's', G_MATCH, 0 },
	{ "comparator", TAG_COMPARATOR, 0, 's', G_CMP, 0 },
	{ "all", TAG_ALL, 0, 0, G_ADDR, 0 },
	{ "localpart", TAG_LOCALPART, 0, 0, G_ADDR, 0 },
	{ "domain", TAG_DOMAIN, 0, 0, G_ADDR, 0 },
	{ "user", TAG_USER, SIEVE_EXT_SUBADDRESS, 0, G_ADDR, 0 },
	{ "detail", TAG_DETAIL, SIEVE_EXT_SUBADDRESS, 0, G_ADDR, 0 },
	{ "copy", TAG_COPY, SIEVE_EXT_COPY, 0, G_NONE, 0 },
	{ "flags", TAG_FLAGS, SIEVE_EXT_IMAP4FLAGS, 'l', G_NONE, 0 },
	{ "create", TAG_CREATE, SIEVE_EXT_MAILBOX, 0, G_NONE, 0 },
	{ "days", TAG_DAYS, 0, 'n', G_DAYS, 0 },
	{ "seconds", TAG_SECONDS, 0, 'n', G_DAYS, 0 },
	{ "subject", TAG_SUBJECT, 0, 's', G_NONE, 0 },
	{ "from", TAG_FROM, 0, 's', G_NONE, 0 },
	{ "addresses", TAG_ADDRESSES, 0, 'l', G_NONE, 0 },
	{ "mime", TAG_MIME, 0, 0, G_NONE, 0 },
	{ "handle", TAG_HANDLE, 0, 's', G_NONE, 0 },
	{ "raw", TAG_RAW, 0, 0, G_BODY, 0 },
	{ "content", TAG_CONTENT, 0, 'l', G_BODY, 0 },
	{ "text", TAG_TEXT, 0, 0, G_BODY, 0 },
	{ "over", TAG_OVER, 0, 'n', G_DAYS, 0 },
	{ "under", TAG_UNDER, 0, 'n', G_DAYS, 0 },
	{ "zone", TAG_ZONE, 0, 's', G_ZONE, 0 },
	{ "originalzone", TAG_ORIGINALZONE, 0, 0, G_ZONE, 0 },
	{ "index", TAG_INDEX, SIEVE_EXT_INDEX, 'n', G_NONE, 0 },
	{ "last", TAG_LAST, 0, 0, G_NONE, 0 },
	{ "lower", TAG_LOWER, 0, 0, G_MOD, 40 },
	{ "upper", TAG_UPPER, 0, 0, G_MOD, 40 },
	{ "lowerfirst", TAG_LOWERFIRST, 0, 0, G_MOD, 30 },
	{ "upperfirst", TAG_UPPERFIRST, 0, 0, G_MOD, 30 },
	{ "quotewildcard", TAG_QUOTEWILDCARD, 0, 0, G_MOD, 20 },
	{ "quoteregex", TAG_QUOTEREGEX, SIEVE_EXT_REGEX, 0, G_MOD, 20 },
	{ "encodeurl", TAG_ENCODEURL, SIEVE_EXT_ENOTIFY, 0, G_MOD, 15 },
	{ "length", TAG_LENGTH, 0, 0, G_MOD, 10 },
	{ "importance", TAG_IMPORTANCE, 0, 's', G_NONE, 0 },
	{ "options", TAG_OPTIONS, 0, 'l', G_NONE, 0 },
	{ "message", TAG_MESSAGE, 0, 's', G_NONE, 0 },
	{ "personal", TAG_PERSONAL, 0, 0, G_LOC, 0 },
	{ "global", TAG_GLOBAL, 0, 0, G_LOC, 0 },
	{ "once", TAG_ONCE, 0, 0, G_NONE, 0 },
	{ "optional", TAG_OPTIONAL, 0, 0, G_NONE, 0 },
	{ "header", TAG_HEADER, 0, 's', G_DUPID, 0 },
	{ "uniqueid", TAG_UNIQUEID, 0, 's', G_DUPID, 0 },
	{ "relay", TAG_RELAY, 0, 0, G_ROUTE, 0 },
	{ "mime", TAG_MIME_, SIEVE_EXT_MIME, 0, G_NONE, 0 },
	{ "anychild", TAG_ANYCHILD, SIEVE_EXT_MIME, 0, G_NONE, 0 },
	{ "type", TAG_TYPE, SIEVE_EXT_MIME, 0, G_MIMEOPT, 0 },
	{ "subtype", TAG_SUBTYPE, SIEVE_EXT_MIME, 0, G_MIMEOPT, 0 },
	{ "contenttype", TAG_CONTENTTYPE, SIEVE_EXT_MIME, 0, G_MIMEOPT, 0 },
	{ "param", TAG_PARAM, SIEVE_EXT_MIME, 'l', G_MIMEOPT, 0 },
	{ "name", TAG_NAME, 0, 's', G_NONE, 0 },
	{ "append_result", TAG_APPEND_RESULT, 0, 0, G_NONE, 0 },
	{ "folder", TAG_FOLDER, 0, 's', G_MIMEOPT, 0 },
	{ "smtp", TAG_SMTP, 0, 0, G_MIMEOPT, 0 },
	{ "extension", TAG_EXTENSION, 0, 's', G_NONE, 0 },
	{ "first", TAG_FIRST, 0, 'n', G_NONE, 0 },
	{ "transport", TAG_TRANSPORT, 0, 0, G_ROUTE, 0 },
};

#define MATCH_TAGS TAG_IS, TAG_CONTAINS, TAG_MATCHES, TAG_REGEX, TAG_VALUE, TAG_COUNT, TAG_COMPARATOR
#define ADDR_TAGS TAG_ALL, TAG_LOCALPART, TAG_DOMAIN, TAG_USER, TAG_DETAIL
#define MIME_TAGS TAG_MIME_, TAG_ANYCHILD

static const uint8_t t_none[] = { TAG_NONE };
static const uint8_t t_keep[] = { TAG_FLAGS, TAG_NONE };
static const uint8_t t_redirect[] = { TAG_COPY, TAG_NONE };
static const uint8_t t_fileinto[] = { TAG_COPY, TAG_FLAGS, TAG_CREATE, TAG_NONE };
static const uint8_t t_set[] = { TAG_LOWER, TAG_UPPER, TAG_LOWERFIRST, TAG_UPPERFIRST, TAG_QUOTEWILDCARD,
				 TAG_QUOTEREGEX, TAG_ENCODEURL, TAG_LENGTH, TAG_NONE };
static const uint8_t t_vacation[] = { TAG_DAYS, TAG_SECONDS, TAG_SUBJECT, TAG_FROM, TAG_ADDRESSES, TAG_MIME,
				      TAG_HANDLE, TAG_NONE };
static const uint8_t t_addheader[] = { TAG_LAST, TAG_NONE };
static const uint8_t t_deleteheader[] = { MATCH_TAGS, TAG_INDEX, TAG_LAST, TAG_NONE };
static const uint8_t t_include[] = { TAG_PERSONAL, TAG_GLOBAL, TAG_ONCE, TAG_OPTIONAL, TAG_NONE };
static const uint8_t t_notify[] = { TAG_FROM, TAG_IMPORTANCE, TAG_OPTIONS, TAG_MESSAGE, TAG_NONE };
static const uint8_t t_route[] = { TAG_RELAY, TAG_TRANSPORT, TAG_NONE };
static const uint8_t t_address[] = { MATCH_TAGS, ADDR_TAGS, TAG_INDEX, TAG_LAST, MIME_TAGS, TAG_NONE };
static const uint8_t t_envelope[] = { MATCH_TAGS, ADDR_TAGS, TAG_NONE };
static const uint8_t t_header[] = { MATCH_TAGS, TAG_INDEX, TAG_LAST, MIME_TAGS, TAG_TYPE, TAG_SUBTYPE,
				     TAG_CONTENTTYPE, TAG_PARAM, TAG_NONE };
static const uint8_t t_exists[] = { MIME_TAGS, TAG_NONE };
static const uint8_t t_foreverypart[] = { TAG_NAME, TAG_NONE };
static const uint8_t t_extracttext[] = { TAG_FIRST, TAG_LOWER, TAG_UPPER, TAG_LOWERFIRST, TAG_UPPERFIRST,
					  TAG_QUOTEWILDCARD, TAG_QUOTEREGEX, TAG_ENCODEURL, TAG_LENGTH, TAG_NONE };
static const uint8_t t_match[] = { MATCH_TAGS, TAG_NONE };
static const uint8_t t_size[] = { TAG_OVER, TAG_UNDER, TAG_NONE };
static const uint8_t t_body[] = { MATCH_TAGS, TAG_RAW, TAG_CONTENT, TAG_TEXT, TAG_NONE };
static const uint8_t t_date[] = { MATCH_TAGS, TAG_ZONE, TAG_ORIGINALZONE, TAG_INDEX, TAG_LAST, TAG_NONE };
static const uint8_t t_currentdate[] = { MATCH_TAGS, TAG_ZONE, TAG_NONE };
static const uint8_t t_tsmessage[] = { TAG_FOLDER, TAG_SMTP, TAG_NONE };
static const uint8_t t_tsreload[] = { TAG_EXTENSION, TAG_NONE };
static const uint8_t t_tsrun[] = { TAG_APPEND_RESULT, TAG_NONE };
static const uint8_t t_tsmatch[] = { MATCH_TAGS, TAG_INDEX, TAG_NONE };
static const uint8_t t_duplicate[] = { TAG_HANDLE, TAG_HEADER, TAG_UNIQUEID, TAG_SECONDS, TAG_LAST, TAG_NONE };

enum { NO_TESTS, ONE_TEST, TEST_LIST };

struct sieve_cmd_def {
	const char *name;
	enum sieve_cmd_id id;
	bool test;
	unsigned ext;
	const char *sig;    /* s string, l string list, n number; after '?' optional; 'F' flag form */
	uint8_t tests;
	bool block;
	const uint8_t *tags;
};

static const struct sieve_cmd_def cmd_defs[] = {
	{ "require", CMD_REQUIRE, false, 0, "l", NO_TESTS, false, t_none },
	{ "if", CMD_IF, false, 0, "", ONE_TEST, true, t_none },
	{ "elsif", CMD_ELSIF, false, 0, "", ONE_TEST, true, t_none },
	{ "else", CMD_ELSE, false, 0, "", NO_TESTS, true, t_none },
	{ "stop", CMD_STOP, false, 0, "", NO_TESTS, false, t_none },
	{ "keep", CMD_KEEP, false, 0, "", NO_TESTS, false, t_keep },
	{ "discard", CMD_DISCARD, false, 0, "", NO_TESTS, false, t_none },
	{ "redirect", CMD_REDIRECT, false, 0, "s", NO_TESTS, false, t_redirect },
	{ "fileinto", CMD_FILEINTO, false, SIEVE_EXT_FILEINTO, "s", NO_TESTS, false, t_fileinto },
	{ "reject", CMD_REJECT, false, SIEVE_EXT_REJECT, "s", NO_TESTS, false, t_none },
	{ "ereject", CMD_EREJECT, false, SIEVE_EXT_REJECT, "s", NO_TESTS, false, t_none },
	{ "set", CMD_SET, false, SIEVE_EXT_VARIABLES, "ss", NO_TESTS, false, t_set },
	{ "vacation", CMD_VACATION, false, SIEVE_EXT_VACATION, "s", NO_TESTS, false, t_vacation },
	{ "setflag", CMD_SETFLAG, false, SIEVE_EXT_IMAP4FLAGS, "F", NO_TESTS, false, t_none },
	{ "addflag", CMD_ADDFLAG, false, SIEVE_EXT_IMAP4FLAGS, "F", NO_TESTS, false, t_none },
	{ "removeflag", CMD_REMOVEFLAG, false, SIEVE_EXT_IMAP4FLAGS, "F", NO_TESTS, false, t_none },
	{ "addheader", CMD_ADDHEADER, false, SIEVE_EXT_EDITHEADER, "ss", NO_TESTS, false, t_addheader },
	{ "deleteheader", CMD_DELETEHEADER, false, SIEVE_EXT_EDITHEADER, "s?l", NO_TESTS, false, t_deleteheader },
	{ "include", CMD_INCLUDE, false, SIEVE_EXT_INCLUDE, "s", NO_TESTS, false, t_include },
	{ "return", CMD_RETURN, false, SIEVE_EXT_INCLUDE, "", NO_TESTS, false, t_none },
	{ "global", CMD_GLOBAL, false, SIEVE_EXT_INCLUDE, "l", NO_TESTS, false, t_none },
	{ "notify", CMD_NOTIFY, false, SIEVE_EXT_ENOTIFY, "s", NO_TESTS, false, t_notify },
	{ "error", CMD_ERROR, false, SIEVE_EXT_IHAVE, "s", NO_TESTS, false, t_none },
	{ "foreverypart", CMD_FOREVERYPART, false, SIEVE_EXT_FOREVERYPART, "", NO_TESTS, true, t_foreverypart },
	{ "break", CMD_BREAK, false, SIEVE_EXT_FOREVERYPART, "", NO_TESTS, false, t_foreverypart },
	{ "extracttext", CMD_EXTRACTTEXT, false, SIEVE_EXT_EXTRACTTEXT, "s", NO_TESTS, false, t_extracttext },
	{ "route", CMD_ROUTE, false, SIEVE_EXT_MAILROUTE, "s", NO_TESTS, false, t_route },
	{ "webhook", CMD_WEBHOOK, false, SIEVE_EXT_MAILROUTE, "s", NO_TESTS, false, t_none },
	{ "quarantine", CMD_QUARANTINE, false, SIEVE_EXT_MAILROUTE, "?s", NO_TESTS, false, t_none },
	{ "tag", CMD_TAG, false, SIEVE_EXT_MAILROUTE, "ss", NO_TESTS, false, t_none },
	{ "reject_code", CMD_REJECT_CODE, false, SIEVE_EXT_MAILROUTE, "sss", NO_TESTS, false, t_none },
	{ "test", CMD_TS_TEST, false, SIEVE_EXT_TESTSUITE, "s", NO_TESTS, true, t_none },
	{ "test_fail", CMD_TS_FAIL, false, SIEVE_EXT_TESTSUITE, "s", NO_TESTS, false, t_none },
	{ "test_set", CMD_TS_SET, false, SIEVE_EXT_TESTSUITE, "ss", NO_TESTS, false, t_none },
	{ "test_result_reset", CMD_TS_RESET, false, SIEVE_EXT_TESTSUITE, "", NO_TESTS, false, t_none },
	{ "test_message", CMD_TS_MESSAGE, false, SIEVE_EXT_TESTSUITE, "n", NO_TESTS, false, t_tsmessage },
	{ "test_message", TST_TS_MESSAGE, true, SIEVE_EXT_TESTSUITE, "n", NO_TESTS, false, t_tsmessage },
	{ "test_binary_save", CMD_TS_CONFIG, false, SIEVE_EXT_TESTSUITE, "s", NO_TESTS, false, t_none },
	{ "test_binary_load", CMD_TS_CONFIG, false, SIEVE_EXT_TESTSUITE, "s", NO_TESTS, false, t_none },
	{ "test_mailbox_create", CMD_TS_CONFIG, false, SIEVE_EXT_TESTSUITE, "s", NO_TESTS, false, t_none },
	{ "test_config_set", CMD_TS_CONFIG, false, SIEVE_EXT_TESTSUITE, "ss", NO_TESTS, false, t_none },
	{ "test_config_unset", CMD_TS_CONFIG, false, SIEVE_EXT_TESTSUITE, "s", NO_TESTS, false, t_none },
	{ "test_config_reload", CMD_TS_CONFIG, false, SIEVE_EXT_TESTSUITE, "", NO_TESTS, false, t_tsreload },
	{ "test_result_print", CMD_TS_RESET, false, SIEVE_EXT_TESTSUITE, "", NO_TESTS, false, t_none },
	{ "test_script_compile", TST_TS_COMPILE, true, SIEVE_EXT_TESTSUITE, "s", NO_TESTS, false, t_none },
	{ "test_script_run", TST_TS_RUN, true, SIEVE_EXT_TESTSUITE, "", NO_TESTS, false, t_tsrun },
	{ "test_error", TST_TS_ERROR, true, SIEVE_EXT_TESTSUITE, "l", NO_TESTS, false, t_tsmatch },
	{ "test_result_action", TST_TS_ACTION, true, SIEVE_EXT_TESTSUITE, "l", NO_TESTS, false, t_tsmatch },
	{ "test_result_execute", TST_TS_EXECUTE, true, SIEVE_EXT_TESTSUITE, "", NO_TESTS, false, t_none },

	{ "address", TST_ADDRESS, true, 0, "ll", NO_TESTS, false, t_address },
	{ "allof", TST_ALLOF, true, 0, "", TEST_LIST, false, t_none },
	{ "anyof", TST_ANYOF, true, 0, "", TEST_LIST, false, t_none },
	{ "envelope", TST_ENVELOPE, true, SIEVE_EXT_ENVELOPE, "ll", NO_TESTS, false, t_envelope },
	{ "exists", TST_EXISTS, true, 0, "l", NO_TESTS, false, t_exists },
	{ "false", TST_FALSE, true, 0, "", NO_TESTS, false, t_none },
	{ "true", TST_TRUE, true, 0, "", NO_TESTS, false, t_none },
	{ "header", TST_HEADER, true, 0, "ll", NO_TESTS, false, t_header },
	{ "not", TST_NOT, true, 0, "", ONE_TEST, false, t_none },
	{ "size", TST_SIZE, true, 0, "", NO_TESTS, false, t_size },
	{ "string", TST_STRING, true, SIEVE_EXT_VARIABLES, "ll", NO_TESTS, false, t_match },
	{ "body", TST_BODY, true, SIEVE_EXT_BODY, "l", NO_TESTS, false, t_body },
	{ "hasflag", TST_HASFLAG, true, SIEVE_EXT_IMAP4FLAGS, "F", NO_TESTS, false, t_match },
	{ "date", TST_DATE, true, SIEVE_EXT_DATE, "ssl", NO_TESTS, false, t_date },
	{ "currentdate", TST_CURRENTDATE, true, SIEVE_EXT_DATE, "sl", NO_TESTS, false, t_currentdate },
	{ "mailboxexists", TST_MAILBOXEXISTS, true, SIEVE_EXT_MAILBOX, "l", NO_TESTS, false, t_none },
	{ "duplicate", TST_DUPLICATE, true, SIEVE_EXT_DUPLICATE, "", NO_TESTS, false, t_duplicate },
	{ "valid_notify_method", TST_VALID_NOTIFY_METHOD, true, SIEVE_EXT_ENOTIFY, "l", NO_TESTS, false, t_none },
	{ "notify_method_capability", TST_NOTIFY_METHOD_CAPABILITY, true, SIEVE_EXT_ENOTIFY, "ssl", NO_TESTS,
	  false, t_match },
	{ "environment", TST_ENVIRONMENT, true, SIEVE_EXT_ENVIRONMENT, "sl", NO_TESTS, false, t_match },
	{ "ihave", TST_IHAVE, true, SIEVE_EXT_IHAVE, "l", NO_TESTS, false, t_none },
};

/* Extensions that make a tag available on a command beyond its own ext. */
static unsigned tag_ext_for(const struct sieve_cmd_def *d, const struct tag_def *t)
{
	if (t->id == TAG_LAST && (d->id == TST_ADDRESS || d->id == TST_HEADER || d->id == TST_DATE))
		return SIEVE_EXT_INDEX;
	if (t->id == TAG_SECONDS && d->id == TST_DUPLICATE)
		return 0;
	if (t->id == TAG_INDEX && (d->id == TST_TS_ERROR || d->id == TST_TS_ACTION || d->id == CMD_DELETEHEADER))
		return 0;
	return t->ext;
}

static const struct {
	const char *name;
	unsigned ext;
} ext_names[] = {
	{ "fileinto", SIEVE_EXT_FILEINTO },
	{ "reject", SIEVE_EXT_REJECT },
	{ "ereject", SIEVE_EXT_REJECT },
	{ "envelope", SIEVE_EXT_ENVELOPE },
	{ "encoded-character", SIEVE_EXT_ENCODED_CHARACTER },
	{ "variables", SIEVE_EXT_VARIABLES },
	{ "copy", SIEVE_EXT_COPY },
	{ "body", SIEVE_EXT_BODY },
	{ "relational", SIEVE_EXT_RELATIONAL },
	{ "subaddress", SIEVE_EXT_SUBADDRESS },
	{ "imap4flags", SIEVE_EXT_IMAP4FLAGS },
	{ "vacation", SIEVE_EXT_VACATION },
	{ "vacation-seconds", SIEVE_EXT_VACATION },
	{ "date", SIEVE_EXT_DATE },
	{ "index", SIEVE_EXT_INDEX },
	{ "editheader", SIEVE_EXT_EDITHEADER },
	{ "mailbox", SIEVE_EXT_MAILBOX },
	{ "include", SIEVE_EXT_INCLUDE },
	{ "duplicate", SIEVE_EXT_DUPLICATE },
	{ "regex", SIEVE_EXT_REGEX },
	{ "enotify", SIEVE_EXT_ENOTIFY },
	{ "comparator-i;ascii-numeric", SIEVE_EXT_CMP_NUMERIC },
	{ "comparator-i;octet", 0 },
	{ "comparator-i;ascii-casemap", 0 },
	{ "environment", SIEVE_EXT_ENVIRONMENT },
	{ "ihave", SIEVE_EXT_IHAVE },
	{ "mime", SIEVE_EXT_MIME },
	{ "foreverypart", SIEVE_EXT_FOREVERYPART },
	{ "extracttext", SIEVE_EXT_EXTRACTTEXT },
	{ "vnd.mailroute", SIEVE_EXT_MAILROUTE },
	{ "vnd.dovecot.testsuite", SIEVE_EXT_TESTSUITE },
};

/* bit 31 marks "known, needs nothing" (the built-in comparators) */
#define EXT_BUILTIN (1u << 31)

unsigned sieve_ext_lookup(const char *name)
{
	for (size_t i = 0; i < sizeof(ext_names) / sizeof(ext_names[0]); i++)
		if (strcmp(ext_names[i].name, name) == 0)
			return ext_names[i].ext ? ext_names[i].ext : EXT_BUILTIN;
	return 0;
}

char *sieve_capabilities(unsigned extensions)
{
	struct buf b;
	buf_init(&b, 4096);
	for (size_t i = 0; i < sizeof(ext_names) / sizeof(ext_names[0]); i++) {
		unsigned e = ext_names[i].ext;
		if (e == SIEVE_EXT_TESTSUITE || e == 0 || (extensions & e) == 0)
			continue;
		if (b.len > 0)
			buf_append_c(&b, ' ');
		buf_append_str(&b, ext_names[i].name);
	}
	char *r = buf_steal(&b);
	buf_deinit(&b);
	return r;
}

struct validator {
	struct sieve_script *s;
	const struct sieve_compile_options *opt;
	unsigned depth;
	unsigned *include_count;
	char *error;
	bool seen_non_require;
	unsigned loop_depth;       /* foreverypart nesting */
};

static void v_error(struct validator *v, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
_Thread_local struct sieve_error_list *sieve_error_sink;

static void v_error(struct validator *v, int line, int col, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	char *full = xasprintf("%d:%d: %s", line, col, msg);
	free(msg);
	if (sieve_error_sink != NULL && sieve_error_sink->n < 64 && v->depth == 0)
		sieve_error_sink->msg[sieve_error_sink->n++] = xstrdup(full);
	if (v->error == NULL)
		v->error = full;
	else
		free(full);
}

static const char *kind(const struct sieve_node *n)
{
	return n->def != NULL && n->def->test ? "test" : "command";
}

static const char *arg_type_name(const struct sieve_arg *a)
{
	switch (a->type) {
	case SIEVE_ARG_NUMBER: return "a number";
	case SIEVE_ARG_STRING: return "a string";
	case SIEVE_ARG_STRLIST: return "a string list";
	case SIEVE_ARG_TAG: return "a tag";
	}
	return "?";
}

static bool arg_is(const struct sieve_arg *a, char want)
{
	switch (want) {
	case 's': return a->type == SIEVE_ARG_STRING;
	case 'l': return a->type == SIEVE_ARG_STRING || a->type == SIEVE_ARG_STRLIST;
	case 'n': return a->type == SIEVE_ARG_NUMBER;
	}
	return false;
}

static const char *want_name(char want)
{
	switch (want) {
	case 's': return "a string";
	case 'l': return "a string list";
	case 'n': return "a number";
	}
	return "?";
}

/* encoded-character (RFC 5228 2.4.2.4): decode ${hex:..} and ${unicode:..} in place. */
static int decode_encoded(struct validator *v, const struct sieve_arg *a, struct sieve_str *str)
{
	if (memchr(str->s, '$', str->len) == NULL)
		return 0;
	struct buf out;
	buf_init(&out, str->len * 4 + 16);
	size_t i = 0;
	while (i < str->len) {
		const char *p = str->s + i;
		size_t rest = str->len - i;
		bool hex = rest >= 6 && strncasecmp(p, "${hex:", 6) == 0;
		bool uni = rest >= 10 && strncasecmp(p, "${unicode:", 10) == 0;
		if (!hex && !uni) {
			buf_append_c(&out, *p);
			i++;
			continue;
		}
		size_t j = hex ? 6 : 10;
		const char *close = memchr(p + j, '}', rest - j);
		if (close == NULL) {
			buf_append_c(&out, *p);
			i++;
			continue;
		}
		size_t body_len = (size_t)(close - (p + j));
		const char *q = p + j, *qe = close;
		struct buf dec;
		buf_init(&dec, body_len * 4 + 4);
		bool ok = true, any = false;
		while (q < qe) {
			while (q < qe && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
				q++;
			if (q >= qe)
				break;
			const char *st = q;
			unsigned long val = 0;
			while (q < qe && isxdigit((unsigned char)*q)) {
				if (val > 0x10ffffUL * 16)
					ok = false;
				val = val * 16 + (unsigned long)(isdigit((unsigned char)*q) ? *q - '0'
						: (tolower((unsigned char)*q) - 'a' + 10));
				q++;
			}
			if (q == st || (q < qe && *q != ' ' && *q != '\t' && *q != '\r' && *q != '\n')) {
				ok = false;
				break;
			}
			any = true;
			if (hex) {
				if (q - st > 2) {
					ok = false;
					break;
				}
				buf_append_c(&dec, (char)val);
			} else {
				if (!ok || val > 0x10ffff || (val >= 0xd800 && val <= 0xdfff)) {
					v_error(v, a->line, a->col, "invalid unicode character 0x%lx in encoded character",
						val);
					buf_deinit(&dec);
					buf_deinit(&out);
					return -1;
				}
				char u[4];
				size_t n;
				if (val < 0x80) { u[0] = (char)val; n = 1; }
				else if (val < 0x800) { u[0] = (char)(0xc0 | (val >> 6)); u[1] = (char)(0x80 | (val & 0x3f)); n = 2; }
				else if (val < 0x10000) { u[0] = (char)(0xe0 | (val >> 12)); u[1] = (char)(0x80 | ((val >> 6) & 0x3f)); u[2] = (char)(0x80 | (val & 0x3f)); n = 3; }
				else { u[0] = (char)(0xf0 | (val >> 18)); u[1] = (char)(0x80 | ((val >> 12) & 0x3f)); u[2] = (char)(0x80 | ((val >> 6) & 0x3f)); u[3] = (char)(0x80 | (val & 0x3f)); n = 4; }
				buf_append(&dec, u, n);
			}
		}
		if (!any)
			ok = false;
		if (!ok) {
			/* not a valid encoding: left as is (RFC 5228 2.4.2.4) */
			buf_append_c(&out, *p);
			i++;
			buf_deinit(&dec);
			continue;
		}
		buf_append(&out, dec.data, dec.len);
		buf_deinit(&dec);
		i += (size_t)(close - p) + 1;
	}
	free(str->s);
	str->len = out.len;
	str->s = buf_steal(&out);
	buf_deinit(&out);
	return 0;
}

static bool valid_identifier(const char *s, size_t len)
{
	if (len == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return false;
	return true;
}

/* Does the string contain a syntactically plausible ${...} reference? */
static bool has_var_ref(const char *s, size_t len)
{
	for (size_t i = 0; i + 2 < len; i++) {
		if (s[i] == '$' && s[i + 1] == '{') {
			size_t j = i + 2;
			while (j < len && (isalnum((unsigned char)s[j]) || s[j] == '_' || s[j] == '.'))
				j++;
			if (j < len && s[j] == '}' && j > i + 2)
				return true;
		}
	}
	return false;
}

static int process_strings(struct validator *v, struct sieve_node *n)
{
	for (size_t i = 0; i < n->nargs; i++) {
		struct sieve_arg *a = &n->args[i];
		for (size_t j = 0; j < a->nstrs; j++) {
			if ((v->s->required & SIEVE_EXT_ENCODED_CHARACTER) && decode_encoded(v, a, &a->strs[j]) < 0)
				return -1;
			if ((v->s->required & SIEVE_EXT_VARIABLES) && has_var_ref(a->strs[j].s, a->strs[j].len))
				a->strs[j].vars = true;
		}
	}
	return 0;
}

/* A name may be both a command and a test (test_message): prefer the kind asked for. */
static const struct sieve_cmd_def *find_def(const char *name, bool as_test)
{
	const struct sieve_cmd_def *any = NULL;
	for (size_t i = 0; i < sizeof(cmd_defs) / sizeof(cmd_defs[0]); i++) {
		if (strcasecmp(cmd_defs[i].name, name) != 0)
			continue;
		if (cmd_defs[i].test == as_test)
			return &cmd_defs[i];
		if (any == NULL)
			any = &cmd_defs[i];
	}
	return any;
}

static bool tag_allowed(const struct sieve_cmd_def *d, enum sieve_tag_id id);

/* Tag names are not unique across commands (:mime of vacation and of header): prefer one the command takes. */
static const struct tag_def *find_tag_for(const struct sieve_cmd_def *d, const char *name)
{
	const struct tag_def *any = NULL;
	for (size_t i = 0; i < sizeof(tag_defs) / sizeof(tag_defs[0]); i++) {
		if (strcasecmp(tag_defs[i].name, name) != 0)
			continue;
		if (tag_allowed(d, tag_defs[i].id))
			return &tag_defs[i];
		if (any == NULL)
			any = &tag_defs[i];
	}
	return any;
}

static bool tag_allowed(const struct sieve_cmd_def *d, enum sieve_tag_id id)
{
	for (const uint8_t *t = d->tags; *t != TAG_NONE; t++)
		if (*t == id)
			return true;
	return false;
}

static const char *ext_name_of(unsigned ext)
{
	for (size_t i = 0; i < sizeof(ext_names) / sizeof(ext_names[0]); i++)
		if (ext_names[i].ext == ext)
			return ext_names[i].name;
	return "?";
}

/* Compile constant :regex keys once (with JIT where available); the script keeps them. */
static bool regex_ok(struct validator *v, struct sieve_arg *a, int cmp)
{
	if (a->regex == NULL && cmp != SIEVE_CMP_UNICODE)
		a->regex = xcalloc(a->nstrs, sizeof(*a->regex));
	for (size_t i = 0; i < a->nstrs; i++) {
		if (a->strs[i].vars)
			continue;
		int err;
		PCRE2_SIZE off;
		uint32_t flags = PCRE2_DOTALL | (cmp == SIEVE_CMP_CASEMAP ? PCRE2_CASELESS : 0);
		pcre2_code *re = pcre2_compile((PCRE2_SPTR)a->strs[i].s, a->strs[i].len, flags, &err, &off, NULL);
		if (re == NULL) {
			PCRE2_UCHAR msg[128];
			pcre2_get_error_message(err, msg, sizeof(msg));
			v_error(v, a->line, a->col, "invalid regular expression '%s': %s", a->strs[i].s, (char *)msg);
			return false;
		}
		if (a->regex != NULL && a->regex[i] == NULL) {
			(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
			a->regex[i] = re;
		} else {
			pcre2_code_free(re);
		}
	}
	return true;
}

static const char *date_parts[] = { "year", "month", "day", "date", "julian", "hour", "minute", "second",
				    "time", "iso8601", "std11", "zone", "weekday", NULL };

static bool valid_zone(const char *s, size_t len)
{
	if (len != 5 || (s[0] != '+' && s[0] != '-'))
		return false;
	for (int i = 1; i < 5; i++)
		if (!isdigit((unsigned char)s[i]))
			return false;
	return true;
}

static bool valid_header_name(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 32 || (unsigned char)s[i] >= 127 || s[i] == ':')
			return false;
	return true;
}

static int validate_commands(struct validator *v, struct sieve_node **cmds, size_t n, bool top);
static int validate_node(struct validator *v, struct sieve_node *n, bool as_test);

static int compile_include(struct validator *v, struct sieve_node *n);

static int validate_tags_and_args(struct validator *v, struct sieve_node *n)
{
	const struct sieve_cmd_def *d = n->def;
	struct sieve_arg *pos[8];
	size_t npos = 0;
	uint8_t groups_seen[16] = { 0 };
	unsigned mod_prec_seen = 0;

	for (size_t i = 0; i < n->nargs; i++) {
		struct sieve_arg *a = &n->args[i];
		if (a->type != SIEVE_ARG_TAG) {
			if (npos >= 8) {
				v_error(v, a->line, a->col, "too many arguments for the %s %s", d->name, kind(n));
				return -1;
			}
			pos[npos++] = a;
			continue;
		}
		const struct tag_def *t = find_tag_for(d, a->tag);
		if (t == NULL || !tag_allowed(d, t->id) ||
		    (tag_ext_for(d, t) != 0 && (v->s->required & tag_ext_for(d, t)) == 0 &&
		     !(d->id == CMD_SET && t->id == TAG_QUOTEREGEX))) {
			v_error(v, a->line, a->col, "unknown tagged argument ':%s' for the %s %s", a->tag, d->name,
				kind(n));
			return -1;
		}
		if (t->id == TAG_QUOTEREGEX && (v->s->required & SIEVE_EXT_REGEX) == 0) {
			v_error(v, a->line, a->col, "unknown tagged argument ':%s' for the %s %s", a->tag, d->name,
				kind(n));
			return -1;
		}
		if (n->tag[t->id] != NULL) {
			v_error(v, a->line, a->col, "tagged argument ':%s' specified more than once", a->tag);
			return -1;
		}
		if (t->group == G_MOD) {
			if (mod_prec_seen & (1u << (t->prec / 5))) {
				v_error(v, a->line, a->col, "modifier ':%s' conflicts with an earlier modifier of the same precedence",
					a->tag);
				return -1;
			}
			mod_prec_seen |= 1u << (t->prec / 5);
			n->modifiers |= 1u << (t->id - TAG_LOWER);
		} else if (t->group != G_NONE) {
			if (groups_seen[t->group]) {
				const char *what = t->group == G_MATCH ? "match type" : t->group == G_CMP ? "comparator"
					: t->group == G_ADDR ? "address part" : t->group == G_BODY ? "body transform"
					: "option";
				v_error(v, a->line, a->col, "multiple %ss specified for the %s %s", what, d->name, kind(n));
				return -1;
			}
			groups_seen[t->group] = 1;
		}
		n->tag[t->id] = a;
		if (t->param != 0) {
			if (i + 1 >= n->nargs || !arg_is(&n->args[i + 1], t->param)) {
				v_error(v, a->line, a->col, "the :%s tag of the %s %s needs %s argument", t->name, d->name,
					kind(n), want_name(t->param));
				return -1;
			}
			n->tag[t->id] = &n->args[++i];
			n->args[i].used = true;
		}
	}

	/* positional arguments */
	const char *sig = d->sig;
	if (strcmp(sig, "F") == 0) {
		/* imap4flags: [variable-name] list-of-flags; hasflag: [variable-list] list-of-flags */
		if (npos < 1 || npos > 2) {
			v_error(v, n->line, n->col, "the %s %s expects %s arguments", d->name, kind(n),
				npos < 1 ? "more" : "fewer");
			return -1;
		}
		for (size_t i = 0; i < npos; i++) {
			char want = (i == 0 && npos == 2 && d->id != TST_HASFLAG) ? 's' : 'l';
			if (!arg_is(pos[i], want)) {
				v_error(v, pos[i]->line, pos[i]->col, "argument %zu of the %s %s must be %s, not %s", i + 1,
					d->name, kind(n), want_name(want), arg_type_name(pos[i]));
				return -1;
			}
		}
		if (npos == 2 && (v->s->required & SIEVE_EXT_VARIABLES) == 0) {
			v_error(v, pos[0]->line, pos[0]->col, "the variable argument of the %s %s needs require \"variables\"",
				d->name, kind(n));
			return -1;
		}
	} else {
		size_t req = 0, max = 0;
		bool opt = false;
		for (const char *c = sig; *c; c++) {
			if (*c == '?') {
				opt = true;
				continue;
			}
			max++;
			if (!opt)
				req++;
		}
		if (npos < req) {
			v_error(v, n->line, n->col, "the %s %s expects %zu argument%s, found %zu", d->name, kind(n),
				req, req == 1 ? "" : "s", npos);
			return -1;
		}
		if (npos > max) {
			v_error(v, pos[max]->line, pos[max]->col, "too many arguments for the %s %s (expected %zu)",
				d->name, kind(n), max);
			return -1;
		}
		size_t k = 0;
		for (const char *c = sig; *c && k < npos; c++) {
			if (*c == '?')
				continue;
			if (!arg_is(pos[k], *c)) {
				v_error(v, pos[k]->line, pos[k]->col, "argument %zu of the %s %s must be %s, not %s", k + 1,
					d->name, kind(n), want_name(*c), arg_type_name(pos[k]));
				return -1;
			}
			k++;
		}
	}
	for (size_t i = 0; i < npos && i < 4; i++)
		n->pos[i] = pos[i];
	n->npos = npos;

	/* tests and blocks */
	if (d->tests == NO_TESTS && n->ntests > 0) {
		v_error(v, n->tests[0]->line, n->tests[0]->col, "the %s %s takes no tests", d->name, kind(n));
		return -1;
	}
	if (d->tests == ONE_TEST && (n->ntests != 1 || n->test_list)) {
		v_error(v, n->line, n->col, "the %s %s needs exactly one test%s", d->name, kind(n),
			n->test_list ? ", not a test list" : "");
		return -1;
	}
	if (d->tests == TEST_LIST && !n->test_list) {
		v_error(v, n->line, n->col, "the %s test needs a test list", d->name);
		return -1;
	}
	if (!d->test) {
		if (d->block && !n->has_block) {
			v_error(v, n->line, n->col, "the %s command needs a block", d->name);
			return -1;
		}
		if (!d->block && n->has_block) {
			v_error(v, n->line, n->col, "the %s command takes no block", d->name);
			return -1;
		}
	}
	return 0;
}

static int resolve_match(struct validator *v, struct sieve_node *n)
{
	n->match = SIEVE_MATCH_IS;
	n->cmp = SIEVE_CMP_CASEMAP;
	if (n->tag[TAG_COMPARATOR] != NULL) {
		struct sieve_arg *a = n->tag[TAG_COMPARATOR];
		int c = sieve_cmp_lookup(a->strs[0].s, v->s->required);
		if (c < 0) {
			v_error(v, a->line, a->col, "unknown comparator '%s'", a->strs[0].s);
			return -1;
		}
		n->cmp = (uint8_t)c;
	}
	static const struct { enum sieve_tag_id t; enum sieve_match m; } mt[] = {
		{ TAG_CONTAINS, SIEVE_MATCH_CONTAINS }, { TAG_MATCHES, SIEVE_MATCH_MATCHES },
		{ TAG_REGEX, SIEVE_MATCH_REGEX }, { TAG_VALUE, SIEVE_MATCH_VALUE }, { TAG_COUNT, SIEVE_MATCH_COUNT },
	};
	for (size_t i = 0; i < sizeof(mt) / sizeof(mt[0]); i++) {
		if (n->tag[mt[i].t] != NULL)
			n->match = (uint8_t)mt[i].m;
	}
	if (n->match == SIEVE_MATCH_VALUE || n->match == SIEVE_MATCH_COUNT) {
		struct sieve_arg *a = n->tag[n->match == SIEVE_MATCH_VALUE ? TAG_VALUE : TAG_COUNT];
		int r = sieve_rel_lookup(a->strs[0].s, a->strs[0].len);
		if (r < 0) {
			v_error(v, a->line, a->col, "invalid relational match '%s'", a->strs[0].s);
			return -1;
		}
		n->rel = (uint8_t)r;
	}
	if (n->cmp == SIEVE_CMP_NUMERIC &&
	    (n->match == SIEVE_MATCH_CONTAINS || n->match == SIEVE_MATCH_MATCHES || n->match == SIEVE_MATCH_REGEX)) {
		v_error(v, n->line, n->col, "comparator 'i;ascii-numeric' does not support the :%s match type",
			n->match == SIEVE_MATCH_CONTAINS ? "contains" : n->match == SIEVE_MATCH_MATCHES ? "matches" : "regex");
		return -1;
	}
	n->addrpart = SIEVE_ADDR_ALL;
	static const enum sieve_tag_id at[] = { TAG_ALL, TAG_LOCALPART, TAG_DOMAIN, TAG_USER, TAG_DETAIL };
	for (size_t i = 0; i < 5; i++)
		if (n->tag[at[i]] != NULL)
			n->addrpart = (uint8_t)i;
	return 0;
}

/* the key list argument of a matching test, for regex checks */
static struct sieve_arg *key_list(struct sieve_node *n)
{
	switch (n->id) {
	case TST_ADDRESS: case TST_ENVELOPE: case TST_HEADER: case TST_STRING: case TST_ENVIRONMENT:
		return n->pos[1];
	case TST_BODY: return n->pos[0];
	case TST_HASFLAG: return n->npos == 2 ? n->pos[1] : n->pos[0];
	case TST_TS_ERROR: case TST_TS_ACTION: return n->pos[0];
	case TST_DATE: case TST_NOTIFY_METHOD_CAPABILITY: return n->pos[2];
	case TST_CURRENTDATE: return n->pos[1];
	case CMD_DELETEHEADER: return n->npos > 1 ? n->pos[1] : NULL;
	default: return NULL;
	}
}


/* RFC 5228 5.1: the address test is restricted to headers that hold addresses */
static bool address_header(const char *name)
{
	/* RFC 5322, RFC 2076 and draft-palme-mailext-headers (as Pigeonhole) */
	static const char *h[] = { "from", "to", "cc", "bcc", "sender", "reply-to", "resent-from", "resent-to",
				   "resent-cc", "resent-bcc", "resent-sender", "resent-reply-to", "return-path",
				   "errors-to", "delivered-to", "envelope-to", "x-original-to", "x-envelope-to",
				   "disposition-notification-to", "mail-followup-to", "mail-reply-to", "apparently-to",
				   "original-recipient", "x-sender", "x-beenthere", "list-post", "for-approval",
				   "for-handling", "for-comment", "abuse-reports-to", "read-receipt-to",
				   "registered-mail-reply-requested-by", "return-receipt-requested", "return-receipt-to",
				   "x-admin", "x-complaints-to", "x-confirm-reading-to", "x-original-from",
				   "x-report-abuse-to", "x-loop", NULL };
	for (int i = 0; h[i]; i++)
		if (strcasecmp(h[i], name) == 0)
			return true;
	return false;
}

static int validate_specific(struct validator *v, struct sieve_node *n)
{
	struct sieve_arg *a;
	switch (n->id) {
	case TST_ADDRESS:
		a = n->pos[0];
		for (size_t i = 0; i < a->nstrs; i++) {
			if (!a->strs[i].vars && n->tag[TAG_MIME_] == NULL && !address_header(a->strs[i].s)) {
				v_error(v, a->line, a->col, "the address test needs an address header, not '%s'",
					a->strs[i].s);
				return -1;
			}
		}
		break;
	case TST_ENVELOPE:
		a = n->pos[0];
		for (size_t i = 0; i < a->nstrs; i++) {
			const char *p = a->strs[i].s;
			if (!a->strs[i].vars && strcasecmp(p, "from") != 0 && strcasecmp(p, "to") != 0 &&
			    strcasecmp(p, "auth") != 0 && strcasecmp(p, "orig_to") != 0 && strcasecmp(p, "original-to") != 0) {
				v_error(v, a->line, a->col, "unknown envelope part '%s'", p);
				return -1;
			}
		}
		break;
	case CMD_REQUIRE:
		a = n->pos[0];
		for (size_t i = 0; i < a->nstrs; i++) {
			unsigned e = sieve_ext_lookup(a->strs[i].s);
			if (e == 0 || (e != EXT_BUILTIN && (v->s->allowed & e) == 0)) {
				v_error(v, a->line, a->col, "unknown Sieve capability '%s'", a->strs[i].s);
				return -1;
			}
			if (e != EXT_BUILTIN)
				v->s->required |= e;
			/* vnd.mailroute brings redirect :copy for archive copies */
			if (e == SIEVE_EXT_MAILROUTE)
				v->s->required |= SIEVE_EXT_COPY;
		}
		return 0;
	case CMD_SET:
		a = n->pos[0];
		if (!valid_identifier(a->strs[0].s, a->strs[0].len) &&
		    !((v->s->required & SIEVE_EXT_INCLUDE) && a->strs[0].len > 7 &&
		      strncasecmp(a->strs[0].s, "global.", 7) == 0 && valid_identifier(a->strs[0].s + 7, a->strs[0].len - 7))) {
			v_error(v, a->line, a->col, "invalid variable name '%s'", a->strs[0].s);
			return -1;
		}
		return 0;
	case CMD_SETFLAG: case CMD_ADDFLAG: case CMD_REMOVEFLAG:
		if (n->npos == 2 && !valid_identifier(n->pos[0]->strs[0].s, n->pos[0]->strs[0].len)) {
			v_error(v, n->pos[0]->line, n->pos[0]->col, "invalid variable name '%s'", n->pos[0]->strs[0].s);
			return -1;
		}
		return 0;
	case CMD_GLOBAL:
		a = n->pos[0];
		for (size_t i = 0; i < a->nstrs; i++)
			if (!valid_identifier(a->strs[i].s, a->strs[i].len)) {
				v_error(v, a->line, a->col, "invalid variable name '%s'", a->strs[i].s);
				return -1;
			}
		if ((v->s->required & SIEVE_EXT_VARIABLES) == 0) {
			v_error(v, n->line, n->col, "the global command needs require \"variables\"");
			return -1;
		}
		return 0;
	case TST_SIZE:
		if ((n->tag[TAG_OVER] == NULL) == (n->tag[TAG_UNDER] == NULL)) {
			v_error(v, n->line, n->col, "the size test needs exactly one of :over or :under");
			return -1;
		}
		return 0;
	case CMD_VACATION:
		if (n->tag[TAG_SECONDS] != NULL && !(v->s->required & SIEVE_EXT_VACATION)) {
			v_error(v, n->line, n->col, "the :seconds tag needs require \"vacation-seconds\"");
			return -1;
		}
		return 0;
	case TST_DATE:
	case TST_CURRENTDATE: {
		struct sieve_arg *part = n->id == TST_DATE ? n->pos[1] : n->pos[0];
		if (!part->strs[0].vars) {
			bool ok = false;
			for (int i = 0; date_parts[i]; i++)
				if (strcasecmp(date_parts[i], part->strs[0].s) == 0)
					ok = true;
			if (!ok) {
				v_error(v, part->line, part->col, "invalid date part '%s'", part->strs[0].s);
				return -1;
			}
		}
		a = n->tag[TAG_ZONE];
		if (a != NULL && !a->strs[0].vars && !valid_zone(a->strs[0].s, a->strs[0].len)) {
			v_error(v, a->line, a->col, "invalid time zone '%s'", a->strs[0].s);
			return -1;
		}
		break;
	}
	case CMD_ADDHEADER:
	case CMD_DELETEHEADER:
		a = n->pos[0];
		if (!a->strs[0].vars && !valid_header_name(a->strs[0].s, a->strs[0].len)) {
			v_error(v, a->line, a->col, "invalid header field name '%s'", a->strs[0].s);
			return -1;
		}
		if (n->id == CMD_DELETEHEADER && n->tag[TAG_LAST] != NULL && n->tag[TAG_INDEX] == NULL) {
			v_error(v, n->tag[TAG_LAST]->line, n->tag[TAG_LAST]->col, "the :last tag needs :index");
			return -1;
		}
		break;
	case CMD_INCLUDE:
		return compile_include(v, n);
	case CMD_BREAK:
		if (v->loop_depth == 0) {
			v_error(v, n->line, n->col, "the break command is not inside a foreverypart loop");
			return -1;
		}
		return 0;
	case CMD_EXTRACTTEXT:
		if (v->loop_depth == 0) {
			v_error(v, n->line, n->col, "the extracttext command is not inside a foreverypart loop");
			return -1;
		}
		if ((v->s->required & SIEVE_EXT_VARIABLES) == 0) {
			v_error(v, n->line, n->col, "the extracttext command needs require \"variables\"");
			return -1;
		}
		if (!valid_identifier(n->pos[0]->strs[0].s, n->pos[0]->strs[0].len)) {
			v_error(v, n->pos[0]->line, n->pos[0]->col, "invalid variable name '%s'", n->pos[0]->strs[0].s);
			return -1;
		}
		return 0;
	case CMD_FOREVERYPART:
		return 0;
	case CMD_NOTIFY:
		a = n->tag[TAG_IMPORTANCE];
		if (a != NULL && !a->strs[0].vars &&
		    !(a->strs[0].len == 1 && a->strs[0].s[0] >= '1' && a->strs[0].s[0] <= '3')) {
			v_error(v, a->line, a->col, "invalid :importance '%s' (must be \"1\", \"2\" or \"3\")", a->strs[0].s);
			return -1;
		}
		a = n->pos[0];
		if (!a->strs[0].vars && strncasecmp(a->strs[0].s, "mailto:", 7) != 0) {
			v_error(v, a->line, a->col, "unsupported notification method '%s'", a->strs[0].s);
			return -1;
		}
		return 0;
	case CMD_REJECT_CODE: {
		const struct sieve_str *code = &n->pos[0]->strs[0], *enh = &n->pos[1]->strs[0];
		if (code->len != 3 || (code->s[0] != '4' && code->s[0] != '5') || !isdigit((unsigned char)code->s[1]) ||
		    !isdigit((unsigned char)code->s[2])) {
			v_error(v, n->pos[0]->line, n->pos[0]->col, "reject_code needs a 4xx or 5xx reply code, not '%s'",
				code->s);
			return -1;
		}
		unsigned c1, c2, c3;
		char extra;
		if (enh->len >= sizeof(((struct sieve_action *)0)->enhanced_code) ||
		    sscanf(enh->s, "%u.%u.%u%c", &c1, &c2, &c3, &extra) != 3 || c1 != (unsigned)(code->s[0] - '0') ||
		    c2 > 999 || c3 > 999) {
			v_error(v, n->pos[1]->line, n->pos[1]->col,
				"reject_code needs an enhanced status code of the same class, not '%s'", enh->s);
			return -1;
		}
		return 0;
	}
	case CMD_TAG:
		a = n->pos[0];
		if (!a->strs[0].vars && !valid_header_name(a->strs[0].s, a->strs[0].len)) {
			v_error(v, a->line, a->col, "invalid header field name '%s'", a->strs[0].s);
			return -1;
		}
		return 0;
	case TST_DUPLICATE:
		if (n->tag[TAG_SECONDS] == NULL)
			break;
		break;
	case TST_IHAVE:
		n->ihave_ok = true;
		a = n->pos[0];
		for (size_t i = 0; i < a->nstrs; i++) {
			unsigned e = sieve_ext_lookup(a->strs[i].s);
			if (e == 0 || (e != EXT_BUILTIN && (v->s->allowed & e) == 0) ||
			    e == SIEVE_EXT_ENCODED_CHARACTER || e == SIEVE_EXT_VARIABLES)
				n->ihave_ok = false;
		}
		return 0;
	default:
		break;
	}
	if ((n->tag[TAG_ANYCHILD] || n->tag[TAG_TYPE] || n->tag[TAG_SUBTYPE] || n->tag[TAG_CONTENTTYPE] ||
	     n->tag[TAG_PARAM]) && n->tag[TAG_MIME_] == NULL) {
		v_error(v, n->line, n->col, "the %s test uses MIME options without :mime", n->def->name);
		return -1;
	}
	if (n->def->test || n->id == CMD_DELETEHEADER) {
		if (resolve_match(v, n) < 0)
			return -1;
		if (n->match == SIEVE_MATCH_REGEX) {
			struct sieve_arg *keys = key_list(n);
			if (keys != NULL && !regex_ok(v, keys, n->cmp))
				return -1;
		}
		if (n->tag[TAG_LAST] != NULL && n->tag[TAG_INDEX] == NULL && n->id != TST_DUPLICATE) {
			v_error(v, n->tag[TAG_LAST]->line, n->tag[TAG_LAST]->col, "the :last tag needs :index");
			return -1;
		}
		if (n->tag[TAG_INDEX] != NULL && n->tag[TAG_INDEX]->number == 0) {
			v_error(v, n->tag[TAG_INDEX]->line, n->tag[TAG_INDEX]->col, "the :index must be 1 or more");
			return -1;
		}
	}
	return 0;
}

static int validate_node(struct validator *v, struct sieve_node *n, bool as_test)
{
	const struct sieve_cmd_def *d = find_def(n->ident, as_test);
	if (d == NULL || d->test != as_test) {
		if (d != NULL && d->test)
			v_error(v, n->line, n->col, "'%s' is a test, not a command", n->ident);
		else if (d != NULL)
			v_error(v, n->line, n->col, "'%s' is a command, not a test", n->ident);
		else
			v_error(v, n->line, n->col, "unknown %s '%s'", as_test ? "test" : "command", n->ident);
		return -1;
	}
	if (d->ext != 0 && (v->s->required & d->ext) == 0) {
		v_error(v, n->line, n->col, "unknown %s '%s' (missing require \"%s\")", as_test ? "test" : "command",
			n->ident, ext_name_of(d->ext));
		return -1;
	}
	n->def = d;
	n->id = d->id;
	/* collecting every error: a bad command still has its tests and block checked */
	bool collect = sieve_error_sink != NULL && v->depth == 0;
	int ret = 0;
	if (n->id != CMD_REQUIRE && process_strings(v, n) < 0)
		return -1;
	if (validate_tags_and_args(v, n) < 0 || validate_specific(v, n) < 0) {
		if (!collect || n->id == CMD_REQUIRE)
			return -1;
		ret = -1;
	}
	for (size_t i = 0; i < n->ntests; i++) {
		if (validate_node(v, n->tests[i], true) < 0) {
			if (!collect)
				return -1;
			ret = -1;
		}
	}
	if (n->id == CMD_FOREVERYPART)
		v->loop_depth++;
	/*
	 * RFC 5463 4: the block of `if ihave [...]` is not checked when a capability is
	 * missing (it never runs), and may use the capabilities when they are there.
	 */
	unsigned saved_required = v->s->required;
	bool skip_block = false;
	if ((n->id == CMD_IF || n->id == CMD_ELSIF) && n->ntests == 1 && n->tests[0]->id == TST_IHAVE) {
		const struct sieve_node *t = n->tests[0];
		if (!t->ihave_ok) {
			skip_block = true;
		} else {
			for (size_t i = 0; i < t->pos[0]->nstrs; i++) {
				unsigned e = sieve_ext_lookup(t->pos[0]->strs[i].s);
				if (e != EXT_BUILTIN)
					v->s->required |= e;
			}
		}
	}
	int br = n->has_block && !skip_block ? validate_commands(v, n->block, n->nblock, false) : 0;
	v->s->required = saved_required;
	if (n->id == CMD_FOREVERYPART)
		v->loop_depth--;
	if (br < 0)
		return -1;
	return ret;
}

static int validate_commands(struct validator *v, struct sieve_node **cmds, size_t n, bool top)
{
	enum sieve_cmd_id prev = CMD_UNKNOWN;
	bool failed = false;
	for (size_t i = 0; i < n; i++) {
		struct sieve_node *c = cmds[i];
		bool is_require = strcasecmp(c->ident, "require") == 0;
		if (is_require && (!top || v->seen_non_require)) {
			v_error(v, c->line, c->col, "require must come before any other command, at the top level");
			return -1;
		}
		if (!is_require)
			v->seen_non_require = true;
		if (validate_node(v, c, false) < 0) {
			/* the testsuite counts errors: go on with the next command */
			if (sieve_error_sink == NULL || v->depth != 0)
				return -1;
			failed = true;
			prev = CMD_UNKNOWN;
			continue;
		}
		if ((c->id == CMD_ELSIF || c->id == CMD_ELSE) && prev != CMD_IF && prev != CMD_ELSIF) {
			v_error(v, c->line, c->col, "%s without a preceding if or elsif", c->def->name);
			return -1;
		}
		prev = c->id;
	}
	return failed ? -1 : 0;
}

/* The include stack for loop detection lives in the options copy chain. */
struct include_frame {
	const char *name;
	bool global;
	const struct include_frame *up;
};
static _Thread_local const struct include_frame *include_stack;

/* A script's name for includes: the base name without a ".sieve" suffix ("x.sieve" and "x" are one script). */
static char *script_key(const char *name)
{
	const char *base = strrchr(name, '/');
	base = base != NULL ? base + 1 : name;
	size_t l = strlen(base);
	if (l > 6 && strcmp(base + l - 6, ".sieve") == 0)
		l -= 6;
	return xstrndup(base, l);
}

static int compile_include_named(struct validator *v, struct sieve_node *n, const char *name);

static int compile_include(struct validator *v, struct sieve_node *n)
{
	char *key = script_key(n->pos[0]->strs[0].s);
	int r = compile_include_named(v, n, key);
	free(key);
	return r;
}

static int compile_include_named(struct validator *v, struct sieve_node *n, const char *name)
{
	struct sieve_arg *a = n->pos[0];
	bool global = n->tag[TAG_GLOBAL] != NULL;
	if (a->strs[0].vars || name[0] == '\0' || strchr(a->strs[0].s, '/') != NULL || strcmp(name, "..") == 0) {
		v_error(v, a->line, a->col, "invalid script name '%s' for include", a->strs[0].s);
		return -1;
	}
	if (v->opt == NULL || v->opt->include_resolver == NULL) {
		if (n->tag[TAG_OPTIONAL] != NULL)
			return 0;
		v_error(v, a->line, a->col, "included script '%s' not found (no include resolver)", name);
		return -1;
	}
	unsigned max_depth = v->opt->max_include_depth ? v->opt->max_include_depth : 5;
	unsigned max_inc = v->opt->max_includes ? v->opt->max_includes : 32;
	for (const struct include_frame *f = include_stack; f != NULL; f = f->up) {
		if (f->global == global && strcmp(f->name, name) == 0) {
			/* include :once of a script already being included is a no-op at runtime */
			if (n->tag[TAG_ONCE] != NULL)
				return 0;
			v_error(v, a->line, a->col, "circular include of script '%s'", name);
			return -1;
		}
	}
	if (v->depth + 1 > max_depth) {
		v_error(v, a->line, a->col, "include nesting is deeper than %u levels", max_depth);
		return -1;
	}
	if (++*v->include_count > max_inc) {
		v_error(v, a->line, a->col, "more than %u included scripts", max_inc);
		return -1;
	}
	char *src = NULL, *err = NULL;
	size_t len = 0;
	int r = v->opt->include_resolver(v->opt->include_ctx, name, global, &src, &len, &err);
	if (r < 0) {
		v_error(v, a->line, a->col, "failed to include script '%s': %s", name, err ? err : "error");
		free(err);
		free(src);
		return -1;
	}
	free(err);
	if (r == 0) {
		if (n->tag[TAG_OPTIONAL] != NULL || v->opt->missing_includes_ok)
			return 0;
		v_error(v, a->line, a->col, "included %s script '%s' does not exist", global ? "global" : "personal",
			name);
		return -1;
	}
	struct include_frame fr = { .name = name, .global = global, .up = include_stack };
	const struct include_frame *saved = include_stack;
	include_stack = &fr;

	struct sieve_script *sub = xcalloc(1, sizeof(*sub));
	sub->name = xstrdup(name);
	sub->allowed = v->s->allowed;
	char *perr = NULL;
	int ret = 0;
	if (sieve_parse(src, len, v->opt, &sub->cmds, &sub->ncmds, &perr) < 0 ||
	    sieve_validate(sub, v->opt, v->depth + 1, v->include_count, &perr) < 0) {
		v_error(v, a->line, a->col, "failed to compile included script '%s': %s", name, perr);
		sieve_script_free(&sub);
		ret = -1;
	} else {
		n->included = sub;
		v->s->includes = xreallocarray(v->s->includes, v->s->nincludes + 1, sizeof(*v->s->includes));
		v->s->includes[v->s->nincludes++] = sub;
	}
	free(perr);
	free(src);
	include_stack = saved;
	return ret;
}

int sieve_validate(struct sieve_script *s, const struct sieve_compile_options *opt, unsigned depth,
		   unsigned *include_count, char **error_r)
{
	struct validator v = { .s = s, .opt = opt, .depth = depth, .include_count = include_count };
	const struct include_frame *saved = include_stack;
	char *top_key = script_key(s->name);
	struct include_frame top = { .name = top_key, .global = false, .up = include_stack };
	if (depth == 0)
		include_stack = &top;
	int ret = validate_commands(&v, s->cmds, s->ncmds, true);
	free(top_key);
	include_stack = saved;
	if (ret < 0) {
		*error_r = v.error != NULL ? v.error : xstrdup("0:0: validation failed");
		return -1;
	}
	return 0;
}
