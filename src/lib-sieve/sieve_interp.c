/*
 * sieve_interp: executes a validated script. All state of a run lives in
 * struct exec (on the caller's stack); the script is read-only. Every
 * command and test costs one step, every value/key comparison a fraction of
 * one, and every string, variable and action is bounded by the limits.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <limits.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib-sieve/sieve_message.h"
#include "lib-sieve/sieve_private.h"
#include "lib/xalloc.h"

struct var {
	char *name;
	struct buf val;
};

struct scope {
	struct var *v;
	size_t n;
};

struct frame {
	const struct sieve_script *script;
	struct scope local;
	char **globals;       /* names declared `global` in this script */
	size_t nglobals;
};

struct strlist {
	char **v;
	size_t *len;
	size_t n;
};

struct exec {
	const struct sieve_msg_view *msg;
	struct sieve_exec_limits lim;
	struct sieve_result *res;
	sieve_trace_fn *trace;
	void *trace_ctx;
	unsigned steps;
	unsigned long work;
	struct sieve_message m;
	bool m_parsed;
	struct buf match[SIEVE_MAX_MATCH_VALUES];
	unsigned nmatch;
	struct scope globals;
	struct frame *fr;
	unsigned depth;
	struct buf flags;              /* internal imap4flags variable */
	char *error;
	bool stop, ret, ts_abort;
	unsigned redirects, notifies, edits;
	char **once;
	const struct sieve_arg *cur_keyarg;   /* key list being matched: precompiled regexes */
	/* foreverypart */
	bool in_part, breaking;
	size_t cur_part;
	char *break_name;
	size_t nonce;
	/* testsuite overrides */
	struct sieve_msg_view ts_msg;
	char *ts_raw, *ts_from, *ts_to, *ts_auth, *ts_orig;
	bool ts_active;
	char *ts_cur_test;
	struct sieve_script *ts_script;  /* test_script_compile */
	struct sieve_result ts_run_res;  /* test_script_run */
	bool ts_use_run;
	struct strlist ts_errors;
	/* test_result_execute: messages "stored" per folder and "sent" by SMTP */
	struct strlist ts_store_folder, ts_store_msg, ts_smtp_msg, ts_smtp_to, ts_smtp_from;
	char *ts_env_to, *ts_env_from;
	struct strlist ts_cfg_key, ts_cfg_val;   /* test_config_set */
	struct strlist ts_mailboxes;             /* test_mailbox_create, fileinto :create */
};

static const struct sieve_testsuite_hooks *ts_hooks;

void sieve_testsuite_set_hooks(const struct sieve_testsuite_hooks *hooks)
{
	ts_hooks = hooks;
}

static void ex_error(struct exec *ex, const struct sieve_node *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void ex_error(struct exec *ex, const struct sieve_node *n, const char *fmt, ...)
{
	if (ex->error != NULL)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	ex->error = xasprintf("%s:%d:%d: %s", ex->fr && ex->fr->script->name ? ex->fr->script->name : "script",
			      n ? n->line : 0, n ? n->col : 0, msg);
	free(msg);
}

static const struct sieve_msg_view *msgv(struct exec *ex)
{
	return ex->ts_active ? &ex->ts_msg : ex->msg;
}

static struct sieve_message *msg(struct exec *ex)
{
	if (!ex->m_parsed) {
		const struct sieve_msg_view *v = msgv(ex);
		sieve_message_parse(&ex->m, v->raw, v->raw_len, 1000);
		ex->m_parsed = true;
	}
	return &ex->m;
}

static bool uses(struct exec *ex, unsigned ext)
{
	return (ex->fr->script->required & ext) != 0;
}

/*
 * Work accounting beyond steps: 1 tick per value/key comparison, header
 * lookup or string expansion, plus 1 per 64 bytes handled (for :matches,
 * value length x key length). The budget is max_steps * 512 ticks, about
 * 300 MB of byte operations at the default, so no script runs for long.
 */
static int work(struct exec *ex, const struct sieve_node *n, unsigned long ticks)
{
	ex->work += ticks;
	if (ex->work > (unsigned long)ex->lim.max_steps * 512UL) {
		ex_error(ex, n, "execution exceeded its work limit (%u steps worth of string operations)",
			 ex->lim.max_steps);
		return -1;
	}
	return 0;
}

/* ---- string lists ---- */

static void sl_add(struct strlist *l, const char *s, size_t len)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->len = xreallocarray(l->len, l->n + 1, sizeof(*l->len));
	l->v[l->n] = xmemdup(s, len); /* copies len bytes, adds a NUL; s need not be terminated */
	l->len[l->n] = len;
	l->n++;
}

static void sl_free(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	free(l->len);
	memset(l, 0, sizeof(*l));
}

/* ---- variables ---- */

static struct var *scope_find(struct scope *sc, const char *name, size_t len)
{
	for (size_t i = 0; i < sc->n; i++)
		if (strlen(sc->v[i].name) == len && strncasecmp(sc->v[i].name, name, len) == 0)
			return &sc->v[i];
	return NULL;
}

static struct scope *scope_for(struct exec *ex, const char *name, size_t len)
{
	for (size_t i = 0; i < ex->fr->nglobals; i++)
		if (strlen(ex->fr->globals[i]) == len && strncasecmp(ex->fr->globals[i], name, len) == 0)
			return &ex->globals;
	return &ex->fr->local;
}

static struct var *var_get(struct exec *ex, const char *name, size_t len, bool create)
{
	struct scope *sc;
	if (len > 7 && strncasecmp(name, "global.", 7) == 0) {
		/* RFC 6609 3.5: the "global" namespace */
		sc = &ex->globals;
		name += 7;
		len -= 7;
	} else {
		sc = scope_for(ex, name, len);
	}
	struct var *v = scope_find(sc, name, len);
	if (v != NULL || !create)
		return v;
	if (sc->n >= ex->lim.max_variables)
		return NULL;
	sc->v = xreallocarray(sc->v, sc->n + 1, sizeof(*sc->v));
	v = &sc->v[sc->n++];
	v->name = xstrndup(name, len);
	/* the buffer allows a string's length; assign_var enforces max_variable_size */
	buf_init(&v->val, ex->lim.max_string_length > ex->lim.max_variable_size ? ex->lim.max_string_length
										  : ex->lim.max_variable_size);
	return v;
}

static void scope_free(struct scope *sc)
{
	for (size_t i = 0; i < sc->n; i++) {
		free(sc->v[i].name);
		buf_deinit(&sc->v[i].val);
	}
	free(sc->v);
	memset(sc, 0, sizeof(*sc));
}

/* Expand ${...} references (RFC 5229 section 3). */
static int expand(struct exec *ex, const struct sieve_str *s, struct buf *out)
{
	buf_reset(out);
	if (!s->vars || !uses(ex, SIEVE_EXT_VARIABLES)) {
		if (buf_append(out, s->s, s->len) < 0)
			return -1;
		return 0;
	}
	size_t i = 0;
	while (i < s->len) {
		if (s->s[i] == '$' && i + 1 < s->len && s->s[i + 1] == '{') {
			size_t j = i + 2;
			while (j < s->len && (isalnum((unsigned char)s->s[j]) || s->s[j] == '_' || s->s[j] == '.'))
				j++;
			if (j < s->len && s->s[j] == '}' && j > i + 2) {
				const char *name = s->s + i + 2;
				size_t nlen = j - i - 2;
				bool numeric = true, dotted = false;
				for (size_t k = 0; k < nlen; k++) {
					if (!isdigit((unsigned char)name[k]))
						numeric = false;
					if (name[k] == '.')
						dotted = true;
				}
				bool valid_ident = (!dotted || (nlen > 7 && strncasecmp(name, "global.", 7) == 0 &&
								uses(ex, SIEVE_EXT_INCLUDE))) &&
						   (isalpha((unsigned char)name[0]) || name[0] == '_');
				if (numeric) {
					unsigned long idx = 0;
					for (size_t k = 0; k < nlen && idx < 100; k++)
						idx = idx * 10 + (unsigned long)(name[k] - '0');
					if (idx < ex->nmatch && idx < SIEVE_MAX_MATCH_VALUES && buf_append(out, ex->match[idx].data,
										   ex->match[idx].len) < 0)
						return -1;
					i = j + 1;
					continue;
				}
				if (valid_ident) {
					struct var *v = var_get(ex, name, nlen, false);
					if (v != NULL && buf_append(out, v->val.data, v->val.len) < 0)
						return -1;
					i = j + 1;
					continue;
				}
			}
		}
		if (buf_append_c(out, s->s[i]) < 0)
			return -1;
		i++;
	}
	return 0;
}

static int get_str(struct exec *ex, const struct sieve_node *n, const struct sieve_arg *a, struct buf *out)
{
	if (expand(ex, &a->strs[0], out) < 0) {
		ex_error(ex, n, "string exceeds the maximum length of %zu bytes", out->max);
		return -1;
	}
	return a->strs[0].vars ? work(ex, n, 1 + out->len / 64) : 0;
}

static char *get_strdup(struct exec *ex, const struct sieve_node *n, const struct sieve_arg *a)
{
	struct buf b;
	buf_init(&b, ex->lim.max_string_length);
	if (get_str(ex, n, a, &b) < 0) {
		buf_deinit(&b);
		return NULL;
	}
	char *s = buf_steal(&b);
	buf_deinit(&b);
	return s;
}

static int get_list(struct exec *ex, const struct sieve_node *n, const struct sieve_arg *a, struct strlist *l)
{
	struct buf b;
	buf_init(&b, ex->lim.max_string_length);
	memset(l, 0, sizeof(*l));
	for (size_t i = 0; i < a->nstrs; i++) {
		if (expand(ex, &a->strs[i], &b) < 0) {
			ex_error(ex, n, "string exceeds the maximum length of %zu bytes", b.max);
			buf_deinit(&b);
			sl_free(l);
			return -1;
		}
		if (a->strs[i].vars && work(ex, n, 1 + b.len / 64) < 0) {
			buf_deinit(&b);
			sl_free(l);
			return -1;
		}
		sl_add(l, b.data, b.len);
	}
	buf_deinit(&b);
	return 0;
}

/* ---- trace ---- */

static void render_arg(const struct sieve_arg *a, struct buf *b)
{
	switch (a->type) {
	case SIEVE_ARG_NUMBER:
		buf_printf(b, " %llu", (unsigned long long)a->number);
		break;
	case SIEVE_ARG_TAG:
		buf_printf(b, " :%s", a->tag);
		break;
	case SIEVE_ARG_STRING:
	case SIEVE_ARG_STRLIST:
		buf_append_str(b, a->type == SIEVE_ARG_STRLIST ? " [" : " ");
		for (size_t i = 0; i < a->nstrs; i++) {
			if (i > 0)
				buf_append_str(b, ", ");
			buf_append_c(b, '"');
			for (size_t k = 0; k < a->strs[i].len && k < 80; k++) {
				char c = a->strs[i].s[k];
				if (c == '"' || c == '\\')
					buf_append_c(b, '\\');
				if (c == '\r' || c == '\n')
					c = ' ';
				buf_append_c(b, c);
			}
			if (a->strs[i].len > 80)
				buf_append_str(b, "...");
			buf_append_c(b, '"');
		}
		if (a->type == SIEVE_ARG_STRLIST)
			buf_append_c(b, ']');
		break;
	}
}

static void render_node(const struct sieve_node *n, struct buf *b)
{
	buf_append_str(b, n->ident);
	for (size_t i = 0; i < n->nargs; i++)
		render_arg(&n->args[i], b);
	if (n->ntests > 0) {
		buf_append_str(b, n->test_list ? " (" : " ");
		for (size_t i = 0; i < n->ntests; i++) {
			if (i > 0)
				buf_append_str(b, ", ");
			render_node(n->tests[i], b);
		}
		if (n->test_list)
			buf_append_c(b, ')');
	}
}

static void trace_node(struct exec *ex, const struct sieve_node *n, const char *suffix)
{
	if (ex->trace == NULL)
		return;
	struct buf b;
	buf_init(&b, 2048);
	render_node(n, &b);
	if (suffix != NULL)
		buf_append_str(&b, suffix);
	ex->trace(ex->trace_ctx, n->line, n->col, b.data);
	buf_deinit(&b);
}

/* ---- matching ---- */

static void set_matches(struct exec *ex, struct buf *caps, unsigned ncaps)
{
	if (!uses(ex, SIEVE_EXT_VARIABLES))
		return;
	for (unsigned i = 0; i < SIEVE_MAX_MATCH_VALUES; i++) {
		buf_reset(&ex->match[i]);
		if (i < ncaps)
			buf_append(&ex->match[i], caps[i].data, caps[i].len);
	}
	ex->nmatch = ncaps;
}

static int regex_match(struct exec *ex, const struct sieve_node *n, const char *val, size_t vlen, const char *pat,
		       size_t plen, bool capture, pcre2_code *pre)
{
	int err;
	PCRE2_SIZE off;
	uint32_t flags = PCRE2_DOTALL | (n->cmp == SIEVE_CMP_CASEMAP ? PCRE2_CASELESS : 0);
	pcre2_code *re = pre != NULL ? pre : pcre2_compile((PCRE2_SPTR)pat, plen, flags, &err, &off, NULL);
	if (re == NULL)
		return 0;
	pcre2_match_context *mc = pcre2_match_context_create(NULL);
	pcre2_set_match_limit(mc, ex->lim.regex_match_limit);
	pcre2_set_depth_limit(mc, 1000);
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
	int rc = pcre2_match(re, (PCRE2_SPTR)val, vlen, 0, 0, md, mc);
	int ret = 0;
	if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT) {
		ex_error(ex, n, "regular expression exceeded its match limit");
		ret = -1;
	} else if (rc > 0) {
		ret = 1;
		if (capture) {
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
			struct buf caps[SIEVE_MAX_MATCH_VALUES];
			unsigned nc = (unsigned)rc < SIEVE_MAX_MATCH_VALUES ? (unsigned)rc : SIEVE_MAX_MATCH_VALUES;
			for (unsigned i = 0; i < SIEVE_MAX_MATCH_VALUES; i++)
				buf_init(&caps[i], ex->lim.max_variable_size);
			for (unsigned i = 0; i < nc; i++)
				if (ov[2 * i] != PCRE2_UNSET)
					buf_append(&caps[i], val + ov[2 * i], ov[2 * i + 1] - ov[2 * i]);
			set_matches(ex, caps, nc);
			for (unsigned i = 0; i < SIEVE_MAX_MATCH_VALUES; i++)
				buf_deinit(&caps[i]);
		}
	}
	pcre2_match_data_free(md);
	pcre2_match_context_free(mc);
	if (re != pre)
		pcre2_code_free(re);
	return ret;
}

/* 1 match, 0 no match, -1 error. count_skip_empty: string test's :count ignores "" */
static int do_match(struct exec *ex, const struct sieve_node *n, const struct strlist *vals,
		    const struct strlist *keys, bool count_skip_empty)
{
	if (n->match == SIEVE_MATCH_COUNT) {
		size_t cnt = 0;
		for (size_t i = 0; i < vals->n; i++)
			if (!count_skip_empty || vals->len[i] > 0)
				cnt++;
		char num[32];
		int nl = snprintf(num, sizeof(num), "%zu", cnt);
		for (size_t k = 0; k < keys->n; k++)
			if (sieve_rel_holds(n->rel, sieve_cmp_order(n->cmp, num, (size_t)nl, keys->v[k], keys->len[k])))
				return 1;
		return 0;
	}
	/* the body test never sets match variables (as in Pigeonhole) */
	bool capture = uses(ex, SIEVE_EXT_VARIABLES) && n->id != TST_BODY;
	struct strlist fv = { 0 }, fk = { 0 };
	if (n->cmp == SIEVE_CMP_UNICODE) {
		struct buf fb;
		buf_init(&fb, ex->lim.max_string_length * 2);
		for (size_t i = 0; i < vals->n; i++) {
			sieve_unicode_fold(vals->v[i], vals->len[i], &fb);
			sl_add(&fv, fb.data, fb.len);
		}
		for (size_t i = 0; i < keys->n; i++) {
			sieve_unicode_fold(keys->v[i], keys->len[i], &fb);
			sl_add(&fk, fb.data, fb.len);
		}
		buf_deinit(&fb);
		struct sieve_node tmp = *n;
		tmp.cmp = SIEVE_CMP_OCTET;
		int r = do_match(ex, &tmp, &fv, &fk, count_skip_empty);
		sl_free(&fv);
		sl_free(&fk);
		return r;
	}
	for (size_t i = 0; i < vals->n; i++) {
		for (size_t k = 0; k < keys->n; k++) {
			if (work(ex, n, 1 + (vals->len[i] + keys->len[k]) / 64) < 0)
				return -1;
			const char *v = vals->v[i], *key = keys->v[k];
			size_t vl = vals->len[i], kl = keys->len[k];
			switch (n->match) {
			case SIEVE_MATCH_IS:
				if (sieve_cmp_equal(n->cmp, v, vl, key, kl))
					return 1;
				break;
			case SIEVE_MATCH_CONTAINS:
				if (sieve_cmp_contains(n->cmp, v, vl, key, kl))
					return 1;
				break;
			case SIEVE_MATCH_VALUE:
				if (sieve_rel_holds(n->rel, sieve_cmp_order(n->cmp, v, vl, key, kl)))
					return 1;
				break;
			case SIEVE_MATCH_MATCHES: {
				if (work(ex, n, (unsigned long)((double)vl * (double)(kl + 1) / 64.0)) < 0)
					return -1;
				struct buf caps[SIEVE_MAX_MATCH_VALUES];
				unsigned nc = 0;
				if (capture)
					for (int c = 0; c < SIEVE_MAX_MATCH_VALUES; c++)
						buf_init(&caps[c], ex->lim.max_variable_size);
				bool ok = sieve_match_wildcard(v, vl, key, kl, n->cmp, capture ? caps : NULL, &nc);
				if (ok && capture)
					set_matches(ex, caps, nc);
				if (capture)
					for (int c = 0; c < SIEVE_MAX_MATCH_VALUES; c++)
						buf_deinit(&caps[c]);
				if (ok)
					return 1;
				break;
			}
			case SIEVE_MATCH_REGEX: {
				const struct sieve_arg *ka = ex->cur_keyarg;
				pcre2_code *pre = ka != NULL && ka->regex != NULL && keys->n == ka->nstrs && !ka->strs[k].vars
						  ? ka->regex[k] : NULL;
				int r = regex_match(ex, n, v, vl, key, kl, capture, pre);
				if (r != 0)
					return r;
				break;
			}
			default:
				break;
			}
		}
	}
	return 0;
}

/* ---- header/address value collection ---- */

/* :type/:subtype/:contenttype/:param of a MIME structured header value */
static void mime_option_values(struct exec *ex, const struct sieve_node *n, const char *v, struct strlist *out)
{
	size_t ctl = strcspn(v, ";");
	while (ctl > 0 && (v[ctl - 1] == ' ' || v[ctl - 1] == '\t'))
		ctl--;
	const char *slash = memchr(v, '/', ctl);
	if (n->tag[TAG_TYPE] != NULL) {
		sl_add(out, v, slash ? (size_t)(slash - v) : ctl);
	} else if (n->tag[TAG_SUBTYPE] != NULL) {
		if (slash != NULL)
			sl_add(out, slash + 1, ctl - (size_t)(slash + 1 - v));
		else
			sl_add(out, "", 0);
	} else if (n->tag[TAG_CONTENTTYPE] != NULL) {
		sl_add(out, v, ctl);
	} else {
		struct strlist names;
		if (get_list(ex, n, n->tag[TAG_PARAM], &names) < 0)
			return;
		for (size_t i = 0; i < names.n; i++) {
			char *pv = sieve_mime_param(v, names.v[i]);
			if (pv != NULL) {
				sl_add(out, pv, strlen(pv));
				free(pv);
			}
		}
		sl_free(&names);
	}
}

static void mime_header_values(struct exec *ex, const struct sieve_node *n, const char *name, bool decoded,
			       struct strlist *out)
{
	struct sieve_message *m = msg(ex);
	sieve_message_parse_parts(m, ex->lim.max_mime_parts, ex->lim.max_body_size);
	size_t cur = ex->in_part ? ex->cur_part : 0;
	size_t last = cur;
	if (n->tag[TAG_ANYCHILD] != NULL && cur < m->nparts)
		last = m->parts[cur].end;
	bool opt = n->tag[TAG_TYPE] || n->tag[TAG_SUBTYPE] || n->tag[TAG_CONTENTTYPE] || n->tag[TAG_PARAM];
	for (size_t p = cur; p <= last; p++) {
		const struct sieve_hdr *h = p == 0 || p >= m->nparts ? m->hdrs : m->parts[p].hdrs;
		size_t nh = p == 0 || p >= m->nparts ? m->nhdrs : m->parts[p].nhdrs;
		if (work(ex, n, 1 + nh / 16) < 0)
			return;
		for (size_t i = 0; i < nh; i++) {
			if (h[i].deleted || strcasecmp(h[i].name, name) != 0)
				continue;
			const char *v = decoded && !opt ? h[i].decoded : h[i].raw;
			if (opt)
				mime_option_values(ex, n, v, out);
			else
				sl_add(out, v, strlen(v));
		}
		if (m->nparts == 0)
			break;
	}
}

static void header_values(struct exec *ex, const struct sieve_node *n, const char *name, bool decoded,
			  struct strlist *out)
{
	if (n != NULL && n->tag[TAG_MIME_] != NULL) {
		mime_header_values(ex, n, name, decoded, out);
		return;
	}
	struct sieve_message *m = msg(ex);
	if (work(ex, n, 1 + m->nhdrs / 16) < 0)
		return;
	size_t total = 0;
	for (size_t i = 0; i < m->nhdrs; i++)
		if (!m->hdrs[i].deleted && strcasecmp(m->hdrs[i].name, name) == 0)
			total++;
	size_t want = 0;
	if (n != NULL && n->tag[TAG_INDEX] != NULL) {
		uint64_t idx = n->tag[TAG_INDEX]->number;
		if (idx > total)
			return;
		want = n->tag[TAG_LAST] != NULL ? total - (size_t)idx + 1 : (size_t)idx;
	}
	size_t seen = 0;
	for (size_t i = 0; i < m->nhdrs; i++) {
		if (m->hdrs[i].deleted || strcasecmp(m->hdrs[i].name, name) != 0)
			continue;
		seen++;
		if (want != 0 && seen != want)
			continue;
		const char *v = decoded ? m->hdrs[i].decoded : m->hdrs[i].raw;
		sl_add(out, v, strlen(v));
	}
}

static const char *ts_config(struct exec *ex, const char *key);

static const char *subaddress_seps(struct exec *ex)
{
	const char *s = ex->ts_active ? ts_config(ex, "recipient_delimiter") : NULL;
	if (s == NULL)
		s = msgv(ex)->subaddress_separators;
	return s != NULL && *s != '\0' ? s : "+";
}

static void add_addr_part(const struct sieve_address *a, int part, struct strlist *out, const char *seps)
{
	if (a->local == NULL)
		return;
	if (a->domain == NULL || *a->local == '\0') {
		/* not a valid address: only :all sees it, as written (RFC 5228 5.1) */
		if (part == SIEVE_ADDR_ALL)
			sl_add(out, a->local, strlen(a->local));
		return;
	}
	const char *local = a->local, *dom = a->domain ? a->domain : "";
	char tmp[1024];
	switch (part) {
	case SIEVE_ADDR_ALL:
		if (a->domain != NULL) {
			int l = snprintf(tmp, sizeof(tmp), "%s@%s", local, dom);
			sl_add(out, tmp, (size_t)l < sizeof(tmp) ? (size_t)l : sizeof(tmp) - 1);
		} else {
			sl_add(out, local, strlen(local));
		}
		break;
	case SIEVE_ADDR_LOCALPART:
		sl_add(out, local, strlen(local));
		break;
	case SIEVE_ADDR_DOMAIN:
		sl_add(out, dom, strlen(dom));
		break;
	case SIEVE_ADDR_USER: {
		size_t at = strcspn(local, seps);
		sl_add(out, local, at);
		break;
	}
	case SIEVE_ADDR_DETAIL: {
		size_t at = strcspn(local, seps);
		if (local[at] != '\0')
			sl_add(out, local + at + 1, strlen(local + at + 1));
		break;
	}
	}
}

/* ---- tests ---- */

static int eval_test(struct exec *ex, const struct sieve_node *n);

static int step(struct exec *ex, const struct sieve_node *n)
{
	if (ex->error != NULL)
		return -1;
	if (++ex->steps > ex->lim.max_steps) {
		ex_error(ex, n, "execution exceeded the limit of %u steps", ex->lim.max_steps);
		return -1;
	}
	return 0;
}

static int test_match_values(struct exec *ex, const struct sieve_node *n, struct strlist *vals,
			     const struct sieve_arg *keyarg, bool skip_empty)
{
	struct strlist keys;
	if (get_list(ex, n, keyarg, &keys) < 0) {
		sl_free(vals);
		return -1;
	}
	ex->cur_keyarg = keyarg;
	int r = do_match(ex, n, vals, &keys, skip_empty);
	ex->cur_keyarg = NULL;
	sl_free(&keys);
	sl_free(vals);
	return r;
}

static const char *env_from(struct exec *ex)
{
	return msgv(ex)->envelope_from;
}

static bool path_domain(const char *p, const char *e)
{
	if (p >= e)
		return false;
	if (*p == '[')
		return e[-1] == ']' && e - p > 2;
	bool label_start = true;
	for (; p < e; p++) {
		if (*p == '.') {
			if (label_start)
				return false;
			label_start = true;
		} else if (isalnum((unsigned char)*p) || *p == '-' || *p == '_') {
			label_start = false;
		} else {
			return false;
		}
	}
	return !label_start;
}

static bool atext(char c)
{
	return isalnum((unsigned char)c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~.", c) != NULL) ||
	       (unsigned char)c >= 0x80;
}

/* RFC 5321 path: "<local@domain>", "local@domain", source routes, or "<>"; 1 ok, 0 null, -1 invalid. */
static int sieve_envelope_path_parse(const char *s, struct sieve_address *a)
{
	a->local = a->domain = NULL;
	size_t len = strlen(s);
	const char *p = s;
	if (len > 0 && p[0] == '<') {
		if (len < 2 || p[len - 1] != '>')
			return -1;
		p++;
		len -= 2;
	}
	if (len == 0)
		return 0;
	const char *e = p + len;
	if (*p == '@') {
		/* source route: @d1,@d2:mailbox */
		for (;;) {
			p++; /* the '@' */
			const char *d = p;
			while (p < e && *p != ',' && *p != ':')
				p++;
			if (p >= e || !path_domain(d, p))
				return -1;
			if (*p == ':') {
				p++;
				break;
			}
			p++; /* the ',' */
			if (p >= e || *p != '@')
				return -1;
		}
	}
	const char *lp = p;
	if (p < e && *p == '"') {
		p++;
		while (p < e && *p != '"') {
			if (*p == '\\')
				p++;
			p++;
		}
		if (p >= e)
			return -1;
		p++;
	} else {
		while (p < e && atext(*p))
			p++;
	}
	if (p == e && p > lp && lp == (*s == '<' ? s + 1 : s)) {
		/* a local part alone, like <MAILER-DAEMON> */
		a->local = xstrndup(lp, (size_t)(p - lp));
		return 1;
	}
	if (p == lp || p >= e || *p != '@' || !path_domain(p + 1, e))
		return -1;
	a->local = xstrndup(lp, (size_t)(p - lp));
	a->domain = xstrndup(p + 1, (size_t)(e - p - 1));
	return 1;
}

static int test_envelope(struct exec *ex, const struct sieve_node *n)
{
	struct strlist parts, vals = { 0 };
	if (get_list(ex, n, n->pos[0], &parts) < 0)
		return -1;
	const struct sieve_msg_view *v = msgv(ex);
	for (size_t i = 0; i < parts.n; i++) {
		const char *src = NULL;
		if (strcasecmp(parts.v[i], "from") == 0)
			src = env_from(ex);
		else if (strcasecmp(parts.v[i], "to") == 0)
			src = v->envelope_to;
		else if (strcasecmp(parts.v[i], "auth") == 0)
			src = v->auth_user;
		else if (strcasecmp(parts.v[i], "orig_to") == 0 || strcasecmp(parts.v[i], "original-to") == 0)
			src = v->original_to ? v->original_to : v->envelope_to;
		if (src == NULL)
			continue;
		struct sieve_address a;
		bool auth = strcasecmp(parts.v[i], "auth") == 0;
		int r = auth ? sieve_address_parse_path(src, &a) : sieve_envelope_path_parse(src, &a);
		if (r == 0) {
			/* null reverse-path: only :all (and :localpart/:domain) see "" */
			if (n->addrpart != SIEVE_ADDR_USER && n->addrpart != SIEVE_ADDR_DETAIL)
				sl_add(&vals, "", 0);
		} else if (r > 0) {
			add_addr_part(&a, n->addrpart, &vals, subaddress_seps(ex));
		}
		sieve_address_free(&a);
	}
	sl_free(&parts);
	return test_match_values(ex, n, &vals, n->pos[1], false);
}

static int test_address(struct exec *ex, const struct sieve_node *n)
{
	struct strlist names, vals = { 0 };
	if (get_list(ex, n, n->pos[0], &names) < 0)
		return -1;
	for (size_t i = 0; i < names.n; i++) {
		struct strlist hv = { 0 };
		header_values(ex, n, names.v[i], false, &hv);
		for (size_t j = 0; j < hv.n; j++) {
			struct sieve_address addrs[64];
			size_t na = sieve_address_parse_list(hv.v[j], addrs, 64);
			/* nothing parsed: "" (empty field) or the text as written, but an empty group is no address */
			bool empty_group = hv.len[j] > 0 && hv.v[j][hv.len[j] - 1] == ';' && strchr(hv.v[j], ':') != NULL;
			if (na == 0 && n->addrpart == SIEVE_ADDR_ALL && !empty_group)
				sl_add(&vals, hv.v[j], hv.len[j]);
			for (size_t k = 0; k < na; k++) {
				add_addr_part(&addrs[k], n->addrpart, &vals, subaddress_seps(ex));
				sieve_address_free(&addrs[k]);
			}
		}
		sl_free(&hv);
	}
	sl_free(&names);
	return test_match_values(ex, n, &vals, n->pos[1], false);
}

static int test_header(struct exec *ex, const struct sieve_node *n)
{
	struct strlist names, vals = { 0 };
	if (get_list(ex, n, n->pos[0], &names) < 0)
		return -1;
	for (size_t i = 0; i < names.n; i++)
		header_values(ex, n, names.v[i], true, &vals);
	sl_free(&names);
	return test_match_values(ex, n, &vals, n->pos[1], false);
}

/* body :text of text/html: the text without markup (tags dropped, basic entities decoded) */
static char *html_to_text(const char *s, size_t len)
{
	struct buf b;
	buf_init(&b, len + 1);
	static const struct { const char *ent; char c; } ents[] = {
		{ "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' }, { "&quot;", '"' }, { "&nbsp;", ' ' }, { "&#39;", '\'' },
	};
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '<') {
			const char *close = memchr(s + i, '>', len - i);
			if (close == NULL)
				break;
			i = (size_t)(close - s);
			continue;
		}
		if (s[i] == '&') {
			bool done = false;
			for (size_t k = 0; k < sizeof(ents) / sizeof(ents[0]) && !done; k++) {
				size_t el = strlen(ents[k].ent);
				if (len - i >= el && strncasecmp(s + i, ents[k].ent, el) == 0) {
					buf_append_c(&b, ents[k].c);
					i += el - 1;
					done = true;
				}
			}
			if (done)
				continue;
		}
		buf_append_c(&b, s[i]);
	}
	char *r = buf_steal(&b);
	buf_deinit(&b);
	return r;
}

static bool content_type_matches(const char *type, const char *want)
{
	if (*want == '\0')
		return true;
	const char *slash = strchr(want, '/');
	if (slash != NULL && (strchr(slash + 1, '/') != NULL || slash == want || slash[1] == '\0'))
		return false;
	if (strchr(want, '/') != NULL)
		return strcasecmp(type, want) == 0;
	size_t l = strlen(want);
	return strncasecmp(type, want, l) == 0 && type[l] == '/';
}

static int test_body(struct exec *ex, const struct sieve_node *n)
{
	struct sieve_message *m = msg(ex);
	struct strlist vals = { 0 };
	size_t maxb = ex->lim.max_body_size;
	if (!m->has_body) {
		/* header only: every body test is false */
	} else if (n->tag[TAG_RAW] != NULL) {
		sl_add(&vals, m->body, m->body_len < maxb ? m->body_len : maxb);
	} else {
		sieve_message_parse_parts(m, ex->lim.max_mime_parts, maxb);
		struct strlist types = { 0 };
		if (n->tag[TAG_CONTENT] != NULL) {
			if (get_list(ex, n, n->tag[TAG_CONTENT], &types) < 0)
				return -1;
		}
		for (size_t i = 0; i < m->nparts; i++) {
			const struct sieve_part *p = &m->parts[i];
			if (n->tag[TAG_CONTENT] != NULL) {
				bool ok = false;
				for (size_t t = 0; t < types.n; t++)
					if (content_type_matches(p->type, types.v[t]))
						ok = true;
				if (!ok)
					continue;
				if (p->multipart && strcmp(p->type, "message/rfc822") != 0) {
					/* RFC 5173 5.2: a multipart's own content is its prologue and epilogue */
					if (p->prologue != NULL)
						sl_add(&vals, p->prologue, strlen(p->prologue));
					if (p->epilogue != NULL)
						sl_add(&vals, p->epilogue, strlen(p->epilogue));
					continue;
				}
				if (p->text != NULL)
					sl_add(&vals, p->text, p->text_len);
				else
					sl_add(&vals, p->raw, p->raw_len);
			} else if (p->text != NULL && !p->multipart) {
				if (strcmp(p->type, "text/html") == 0 || strcmp(p->type, "application/xhtml+xml") == 0) {
					char *t = html_to_text(p->text, p->text_len);
					sl_add(&vals, t, strlen(t));
					free(t);
				} else {
					sl_add(&vals, p->text, p->text_len);
				}
			}
		}
		sl_free(&types);
	}
	return test_match_values(ex, n, &vals, n->pos[0], false);
}

static void flags_split(const char *s, size_t len, struct strlist *out)
{
	size_t i = 0;
	while (i < len) {
		while (i < len && s[i] == ' ')
			i++;
		size_t st = i;
		while (i < len && s[i] != ' ')
			i++;
		if (i > st) {
			bool dup = false;
			for (size_t k = 0; k < out->n; k++)
				if (out->len[k] == i - st && strncasecmp(out->v[k], s + st, i - st) == 0)
					dup = true;
			if (!dup)
				sl_add(out, s + st, i - st);
		}
	}
}

static int test_hasflag(struct exec *ex, const struct sieve_node *n)
{
	struct strlist vals = { 0 };
	const struct sieve_arg *keyarg = n->npos == 2 ? n->pos[1] : n->pos[0];
	if (n->npos == 2) {
		struct strlist names;
		if (get_list(ex, n, n->pos[0], &names) < 0)
			return -1;
		for (size_t i = 0; i < names.n; i++) {
			struct var *v = var_get(ex, names.v[i], names.len[i], false);
			if (v != NULL)
				flags_split(v->val.data, v->val.len, &vals);
		}
		sl_free(&names);
	} else {
		flags_split(ex->flags.data, ex->flags.len, &vals);
	}
	struct strlist keys, keyflags = { 0 };
	if (get_list(ex, n, keyarg, &keys) < 0) {
		sl_free(&vals);
		return -1;
	}
	for (size_t i = 0; i < keys.n; i++)
		flags_split(keys.v[i], keys.len[i], &keyflags);
	sl_free(&keys);
	int r = do_match(ex, n, &vals, &keyflags, false);
	sl_free(&vals);
	sl_free(&keyflags);
	return r;
}

static int local_zone(struct exec *ex, time_t t)
{
	const struct sieve_msg_view *v = msgv(ex);
	if (v->zone_set)
		return v->zone_minutes;
	struct tm tm;
	localtime_r(&t, &tm);
	return (int)(tm.tm_gmtoff / 60);
}

static int parse_zone(const char *s)
{
	int z = ((s[1] - '0') * 10 + (s[2] - '0')) * 60 + (s[3] - '0') * 10 + (s[4] - '0');
	return s[0] == '-' ? -z : z;
}

static int test_date(struct exec *ex, const struct sieve_node *n)
{
	struct strlist vals = { 0 };
	struct buf part, zone;
	buf_init(&part, 64);
	buf_init(&zone, 64);
	const struct sieve_arg *partarg = n->id == TST_DATE ? n->pos[1] : n->pos[0];
	const struct sieve_arg *keyarg = n->id == TST_DATE ? n->pos[2] : n->pos[1];
	int ret = 0;
	if (get_str(ex, n, partarg, &part) < 0 ||
	    (n->tag[TAG_ZONE] != NULL && get_str(ex, n, n->tag[TAG_ZONE], &zone) < 0)) {
		ret = -1;
		goto out;
	}
	time_t t = 0;
	int orig_zone = 0;
	bool have = false;
	if (n->id == TST_CURRENTDATE) {
		t = msgv(ex)->now ? msgv(ex)->now : time(NULL);
		orig_zone = local_zone(ex, t);
		have = true;
	} else {
		struct buf hname;
		buf_init(&hname, 1024);
		if (get_str(ex, n, n->pos[0], &hname) < 0) {
			buf_deinit(&hname);
			ret = -1;
			goto out;
		}
		struct strlist hv = { 0 };
		header_values(ex, n, hname.data, false, &hv);
		buf_deinit(&hname);
		const char *dv = NULL;
		if (hv.n > 0) {
			dv = hv.v[0];
			/* Received: the date follows the last ';' */
			const char *semi = strrchr(dv, ';');
			if (strcasecmp(n->pos[0]->strs[0].s, "received") == 0 && semi != NULL)
				dv = semi + 1;
		}
		if (dv != NULL && sieve_date_parse(dv, &t, &orig_zone) == 0)
			have = true;
		sl_free(&hv);
	}
	if (have) {
		int z;
		if (n->tag[TAG_ZONE] != NULL) {
			if (zone.len != 5 || (zone.data[0] != '+' && zone.data[0] != '-') ||
			    strspn(zone.data + 1, "0123456789") != 4 || (zone.data[3] - '0') > 5) {
				ret = 0;
				goto out;
			}
			z = parse_zone(zone.data);
		} else if (n->tag[TAG_ORIGINALZONE] != NULL) {
			z = orig_zone;
		} else {
			z = local_zone(ex, t);
		}
		struct buf dv;
		buf_init(&dv, 128);
		if (sieve_date_part(t, z, part.data, &dv) == 0)
			sl_add(&vals, dv.data, dv.len);
		buf_deinit(&dv);
	}
	ret = test_match_values(ex, n, &vals, keyarg, false);
out:
	buf_deinit(&part);
	buf_deinit(&zone);
	return ret;
}

/* RFC 6068 mailto: each recipient (percent-decoded) must be local@domain; header names must be tokens. */
static bool mailto_pct_decode(const char *s, size_t len, struct buf *out)
{
	buf_reset(out);
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '%') {
			if (i + 2 >= len || !isxdigit((unsigned char)s[i + 1]) || !isxdigit((unsigned char)s[i + 2]))
				return false;
			char hex[3] = { s[i + 1], s[i + 2], 0 };
			c = (char)strtol(hex, NULL, 16);
			i += 2;
		}
		if (buf_append_c(out, c) < 0)
			return false;
	}
	return true;
}

static bool mailto_recipients(const char *s, size_t len, unsigned *count)
{
	struct buf b;
	buf_init(&b, 4096);
	bool ok = mailto_pct_decode(s, len, &b);
	const char *p = b.data, *e = b.data + b.len;
	while (ok && p < e) {
		const char *c = memchr(p, ',', (size_t)(e - p));
		const char *ae = c ? c : e;
		while (p < ae && *p == ' ')
			p++;
		const char *at = NULL;
		for (const char *q = p; q < ae; q++) {
			if (*q == '@')
				at = q;
			if ((unsigned char)*q <= 32 || *q == '<' || *q == '>' || *q == '"' || *q == '(' || *q == ')')
				ok = false;
		}
		if (at == NULL || at == p || at + 1 >= ae)
			ok = false;
		(*count)++;
		p = c ? c + 1 : e;
	}
	buf_deinit(&b);
	return ok;
}

static bool valid_mailto(const char *uri)
{
	if (strncasecmp(uri, "mailto:", 7) != 0)
		return false;
	const char *p = uri + 7;
	size_t l = strcspn(p, "?");
	unsigned count = 0;
	if (l > 0 && !mailto_recipients(p, l, &count))
		return false;
	if (p[l] == '?') {
		const char *q = p + l + 1;
		while (*q) {
			size_t fl = strcspn(q, "&");
			const char *eq = memchr(q, '=', fl);
			if (eq == NULL || eq == q)
				return false;
			for (const char *h = q; h < eq; h++)
				if (!(isalnum((unsigned char)*h) || *h == '-' || *h == '_' || *h == '.'))
					return false;
			if ((size_t)(eq - q) == 2 && strncasecmp(q, "to", 2) == 0 &&
			    !mailto_recipients(eq + 1, fl - (size_t)(eq + 1 - q), &count))
				return false;
			q += fl;
			if (*q == '&')
				q++;
		}
	}
	return count > 0;
}

static int test_environment(struct exec *ex, const struct sieve_node *n)
{
	struct buf name;
	buf_init(&name, 256);
	if (get_str(ex, n, n->pos[0], &name) < 0) {
		buf_deinit(&name);
		return -1;
	}
	const struct sieve_msg_view *v = msgv(ex);
	const char *val = NULL;
	if (strcasecmp(name.data, "domain") == 0)
		val = v->domain;
	else if (strcasecmp(name.data, "host") == 0)
		val = v->host;
	else if (strcasecmp(name.data, "location") == 0)
		val = "MTA";
	else if (strcasecmp(name.data, "name") == 0)
		val = "mailroute";
	else if (strcasecmp(name.data, "phase") == 0)
		val = v->phase ? v->phase : "during";
	else if (strcasecmp(name.data, "remote-ip") == 0)
		val = v->client_ip;
	else if (strcasecmp(name.data, "remote-host") == 0)
		val = v->client_helo;
	else if (strcasecmp(name.data, "version") == 0)
		val = MR_VERSION;
	buf_deinit(&name);
	if (val == NULL)
		return 0; /* unknown items never match, not even with :count */
	struct strlist vals = { 0 };
	sl_add(&vals, val, strlen(val));
	return test_match_values(ex, n, &vals, n->pos[1], false);
}

static void ts_reset_result(struct sieve_result *res);
static void ts_reset_message(struct exec *ex);

/* The message as it is now (header edits applied), for test_result_execute. */
static char *ts_current_message(struct exec *ex, const struct sieve_result *res, size_t *len_r)
{
	const struct sieve_msg_view *v = msgv(ex);
	struct buf b;
	buf_init(&b, v->raw_len * 2 + 65536);
	if (res != ex->res && res->edited_header != NULL) {
		buf_append_str(&b, res->edited_header);
		buf_append(&b, "\r\n", 2);
		if (res->body_offset <= v->raw_len)
			buf_append(&b, v->raw + res->body_offset, v->raw_len - res->body_offset);
	} else if (res == ex->res && ex->edits > 0 && ex->m_parsed) {
		char *h = sieve_message_header_text(&ex->m);
		buf_append_str(&b, h);
		free(h);
		buf_append(&b, "\r\n", 2);
		buf_append(&b, ex->m.body, ex->m.body_len);
	} else if (v->raw != NULL) {
		buf_append(&b, v->raw, v->raw_len);
	}
	*len_r = b.len;
	char *r = buf_steal(&b);
	buf_deinit(&b);
	return r;
}

static const char *ts_config(struct exec *ex, const char *key)
{
	for (size_t i = ex->ts_cfg_key.n; i > 0; i--)
		if (strcmp(ex->ts_cfg_key.v[i - 1], key) == 0)
			return ex->ts_cfg_val.v[i - 1];
	return NULL;
}

static bool ts_mailbox_exists(struct exec *ex, const char *name)
{
	if (strcasecmp(name, "INBOX") == 0)
		return true;
	for (size_t i = 0; i < ex->ts_mailboxes.n; i++)
		if (strcmp(ex->ts_mailboxes.v[i], name) == 0)
			return true;
	return false;
}

/* 1 executed, 0 failed (fileinto a mailbox that does not exist, without :create) */
static int ts_execute_result(struct exec *ex)
{
	int ok = 1;
	const struct sieve_result *res = ex->ts_use_run ? &ex->ts_run_res : ex->res;
	size_t len;
	char *m = ts_current_message(ex, res, &len);
	bool kept = false;
	sl_free(&ex->ts_smtp_msg);
	sl_free(&ex->ts_smtp_to);
	sl_free(&ex->ts_smtp_from);
	for (size_t i = 0; i < res->count; i++) {
		const struct sieve_action *a = &res->actions[i];
		char *am = m;
		size_t al = len;
		if (a->header != NULL && !a->implicit) {
			struct buf b;
			buf_init(&b, strlen(a->header) + msg(ex)->body_len + 16);
			buf_append_str(&b, a->header);
			buf_append(&b, "\r\n", 2);
			buf_append(&b, msg(ex)->body, msg(ex)->body_len);
			al = b.len;
			am = buf_steal(&b);
			buf_deinit(&b);
		}
		if (a->type == SIEVE_ACT_FILEINTO && (strstr(a->target, "//") != NULL || a->target[0] == '/')) {
			char *e = xasprintf("result:0:0: failed to store into mailbox '%s': invalid name", a->target);
			sl_add(&ex->ts_errors, e, strlen(e));
			free(e);
			ok = 0;
			if (am != m)
				free(am);
			continue;
		}
		if (a->type == SIEVE_ACT_FILEINTO && !ts_mailbox_exists(ex, a->target)) {
			if (!a->create) {
				char *e = xasprintf("result:0:0: failed to store into mailbox '%s': mailbox does not exist", a->target);
				sl_add(&ex->ts_errors, e, strlen(e));
				free(e);
				ok = 0;
				if (am != m)
					free(am);
				continue;
			}
			sl_add(&ex->ts_mailboxes, a->target, strlen(a->target));
		}
		if (a->type == SIEVE_ACT_KEEP || a->type == SIEVE_ACT_FILEINTO) {
			const char *folder = a->type == SIEVE_ACT_KEEP ? "INBOX" : a->target;
			sl_add(&ex->ts_store_folder, folder, strlen(folder));
			sl_add(&ex->ts_store_msg, am, al);
			kept = kept || a->type == SIEVE_ACT_KEEP;
		} else if (a->type == SIEVE_ACT_REDIRECT) {
			sl_add(&ex->ts_smtp_msg, am, al);
			sl_add(&ex->ts_smtp_to, a->target, strlen(a->target));
			const char *ef = msgv(ex)->envelope_from ? msgv(ex)->envelope_from : "";
			sl_add(&ex->ts_smtp_from, ef, strlen(ef));
		} else if (a->type == SIEVE_ACT_VACATION || a->type == SIEVE_ACT_REJECT) {
			const char *cr = ts_config(ex, "sieve_vacation_check_recipient");
			const char *uo = ts_config(ex, "sieve_vacation_use_original_recipient");
			struct sieve_reply_options ro = {
				.hostname = "testsuite.example",
				.check_recipient = cr == NULL || strcmp(cr, "no") != 0,
				.user_address = ts_config(ex, "sieve_user_email"),
			};
			/* the recipient is known only when the test set it */
			struct sieve_msg_view rv = *msgv(ex);
			rv.envelope_to = ex->ts_to;
			/* no envelope sender set: the message's Return-Path, Sender or From stands in */
			char *derived = NULL;
			if (rv.envelope_from == NULL) {
				static const char *sh[] = { "return-path", "sender", "from", NULL };
				for (int k = 0; sh[k] && derived == NULL; k++) {
					struct strlist hv = { 0 };
					header_values(ex, NULL, sh[k], false, &hv);
					struct sieve_address one[1];
					if (hv.n > 0 && sieve_address_parse_list(hv.v[0], one, 1) == 1) {
						if (one[0].domain != NULL)
							derived = xasprintf("%s@%s", one[0].local, one[0].domain);
						sieve_address_free(&one[0]);
					}
					sl_free(&hv);
				}
				rv.envelope_from = derived;
			}
			rv.original_to = uo != NULL && strcmp(uo, "yes") == 0 ? ex->ts_orig : NULL;
			struct sieve_reply rep;
			const char *why;
			int r = a->type == SIEVE_ACT_VACATION ? sieve_vacation_compose(a, &rv, &ro, &rep, &why)
							      : sieve_reject_compose(a, &rv, &ro, &rep, &why);
			if (r > 0) {
				sl_add(&ex->ts_smtp_msg, rep.data, rep.len);
				sl_add(&ex->ts_smtp_to, rep.rcpt_to, strlen(rep.rcpt_to));
				sl_add(&ex->ts_smtp_from, "", 0);
			}
			sieve_reply_free(&rep);
			free(derived);
		} else if (a->type == SIEVE_ACT_NOTIFY) {
			struct sieve_reply_options ro = { .hostname = "testsuite.example" };
			struct sieve_reply *reps;
			size_t nrep;
			const char *why;
			if (sieve_notify_compose(a, msgv(ex), &ro, &reps, &nrep, &why) > 0) {
				for (size_t k = 0; k < nrep; k++) {
					sl_add(&ex->ts_smtp_msg, reps[k].data, reps[k].len);
					sl_add(&ex->ts_smtp_to, reps[k].rcpt_to, strlen(reps[k].rcpt_to));
					sl_add(&ex->ts_smtp_from, reps[k].mail_from, strlen(reps[k].mail_from));
					sieve_reply_free(&reps[k]);
				}
				free(reps);
			}
		}
		if (am != m)
			free(am);
	}
	if (!kept && !res->keep_cancelled && res == ex->res) {
		sl_add(&ex->ts_store_folder, "INBOX", 5);
		sl_add(&ex->ts_store_msg, m, len);
	}
	free(m);
	return ok;
}

/* test_message :folder NAME N | :smtp N: make that message the current one */
static int ts_message(struct exec *ex, const struct sieve_node *n)
{
	uint64_t want = n->pos[0]->number, seen = 0;
	const char *found = NULL;
	size_t flen = 0;
	if (n->tag[TAG_FOLDER] != NULL) {
		char *folder = get_strdup(ex, n, n->tag[TAG_FOLDER]);
		if (folder == NULL)
			return -1;
		for (size_t i = 0; i < ex->ts_store_folder.n && found == NULL; i++)
			if (strcmp(ex->ts_store_folder.v[i], folder) == 0 && seen++ == want) {
				found = ex->ts_store_msg.v[i];
				flen = ex->ts_store_msg.len[i];
			}
		free(folder);
	} else if (want < ex->ts_smtp_msg.n) {
		found = ex->ts_smtp_msg.v[want];
		flen = ex->ts_smtp_msg.len[want];
		free(ex->ts_env_to);
		ex->ts_env_to = xstrdup(ex->ts_smtp_to.v[want]);
		ex->ts_msg.envelope_to = ex->ts_env_to;
		free(ex->ts_env_from);
		ex->ts_env_from = xstrdup(ex->ts_smtp_from.v[want]);
		ex->ts_msg.envelope_from = ex->ts_env_from;
	}
	if (found == NULL)
		return 0;
	char *copy = xmemdup(found, flen);
	free(ex->ts_raw);
	ex->ts_raw = copy;
	ex->ts_msg.raw = copy;
	ex->ts_msg.raw_len = flen;
	ex->ts_msg.size = 0;
	ts_reset_message(ex);
	ex->edits = 0;
	return 1;
}

/* vnd.dovecot.testsuite result and script tests (test builds only) */
static int test_testsuite(struct exec *ex, const struct sieve_node *n)
{
	if (n->id == TST_TS_EXECUTE)
		return ts_execute_result(ex);
	if (n->id == TST_TS_MESSAGE)
		return ts_message(ex, n);
	if (n->id == TST_TS_COMPILE) {
		char *path = get_strdup(ex, n, n->pos[0]);
		if (path == NULL)
			return -1;
		sieve_script_free(&ex->ts_script);
		sl_free(&ex->ts_errors);
		char *src = NULL, *err = NULL;
		size_t len = 0;
		if (ts_hooks == NULL || ts_hooks->load(ts_hooks->ctx, path, &src, &len) <= 0) {
			char *m = xasprintf("%s:0:0: cannot load script", path);
			sl_add(&ex->ts_errors, m, strlen(m));
			free(m);
			free(path);
			return 0;
		}
		struct sieve_compile_options opt = {
			.extensions = SIEVE_EXT_USER_DEFAULT,
			.include_resolver = ts_hooks->resolver,
			.include_ctx = ts_hooks->ctx,
		};
		struct sieve_error_list errs = { .n = 0 };
		sieve_error_sink = &errs;
		ex->ts_script = sieve_compile(src, len, path, &opt, &err);
		sieve_error_sink = NULL;
		free(src);
		if (ex->ts_script == NULL) {
			if (errs.n == 0) {
				sl_add(&ex->ts_errors, err, strlen(err));
			} else {
				for (size_t i = 0; i < errs.n; i++) {
					char *m = xasprintf("%s:%s", path, errs.msg[i]);
					sl_add(&ex->ts_errors, m, strlen(m));
					free(m);
				}
				/* like Pigeonhole, which ends the list with "validation failed" */
				char *m = xasprintf("%s:0:0: validation failed", path);
				sl_add(&ex->ts_errors, m, strlen(m));
				free(m);
			}
			free(err);
		}
		for (size_t i = 0; i < errs.n; i++)
			free(errs.msg[i]);
		free(path);
		return ex->ts_script != NULL ? 1 : 0;
	}
	if (n->id == TST_TS_RUN) {
		if (ex->ts_script == NULL)
			return 0;
		sl_free(&ex->ts_errors);
		char *err = NULL;
		struct sieve_result tmp;
		sieve_result_init(&tmp);
		int r = sieve_execute(ex->ts_script, msgv(ex), &ex->lim, &tmp, NULL, NULL, &err);
		if (n->tag[TAG_APPEND_RESULT] == NULL || !ex->ts_use_run)
			ts_reset_result(&ex->ts_run_res);
		/* move the actions over (multiscript: :append_result keeps the earlier ones) */
		for (size_t i = 0; i < tmp.count; i++) {
			struct sieve_result *res = &ex->ts_run_res;
			if (res->count == res->alloc) {
				res->alloc = res->alloc ? res->alloc * 2 : 8;
				res->actions = xreallocarray(res->actions, res->alloc, sizeof(*res->actions));
			}
			res->actions[res->count++] = tmp.actions[i];
		}
		tmp.count = 0;
		sieve_result_deinit(&tmp);
		ex->ts_use_run = true;
		if (r < 0) {
			sl_add(&ex->ts_errors, err, strlen(err));
			free(err);
			return 0;
		}
		return 1;
	}
	struct strlist vals = { 0 };
	if (n->id == TST_TS_ERROR) {
		for (size_t i = 0; i < ex->ts_errors.n; i++) {
			/* the message without "name:line:col: " */
			const char *m = ex->ts_errors.v[i];
			const char *p = strstr(m, ": ");
			p = p != NULL ? p + 2 : m;
			sl_add(&vals, p, strlen(p));
		}
	} else {
		const struct sieve_result *res = ex->ts_use_run ? &ex->ts_run_res : ex->res;
		for (size_t i = 0; i < res->count; i++) {
			enum sieve_action_type t = res->actions[i].type;
			/* like Pigeonhole: the implicit keep is not part of the script's result yet */
			if (t == SIEVE_ACT_ADDHEADER || t == SIEVE_ACT_DELETEHEADER || t == SIEVE_ACT_DUPLICATE_TRACK ||
			    res->actions[i].implicit)
				continue;
			const char *name = t == SIEVE_ACT_FILEINTO ? "store" : sieve_action_name(t);
			sl_add(&vals, name, strlen(name));
		}
	}
	if (n->tag[TAG_INDEX] != NULL) {
		uint64_t idx = n->tag[TAG_INDEX]->number;
		struct strlist one = { 0 };
		if (idx >= 1 && idx <= vals.n)
			sl_add(&one, vals.v[idx - 1], vals.len[idx - 1]);
		sl_free(&vals);
		vals = one;
	}
	return test_match_values(ex, n, &vals, n->pos[0], false);
}

static int eval_test_inner(struct exec *ex, const struct sieve_node *n)
{
	switch (n->id) {
	case TST_TRUE: return 1;
	case TST_FALSE: return 0;
	case TST_NOT: {
		int r = eval_test(ex, n->tests[0]);
		return r < 0 ? r : !r;
	}
	case TST_ALLOF:
	case TST_ANYOF:
		for (size_t i = 0; i < n->ntests; i++) {
			int r = eval_test(ex, n->tests[i]);
			if (r < 0)
				return r;
			/* explain: which member of allof/anyof decided */
			trace_node(ex, n->tests[i], r ? " -> true" : " -> false");
			if (n->id == TST_ALLOF && r == 0)
				return 0;
			if (n->id == TST_ANYOF && r == 1)
				return 1;
		}
		return n->id == TST_ALLOF ? 1 : 0;
	case TST_EXISTS: {
		struct strlist names;
		if (get_list(ex, n, n->pos[0], &names) < 0)
			return -1;
		int r = 1;
		for (size_t i = 0; i < names.n && r; i++) {
			struct strlist hv = { 0 };
			header_values(ex, n, names.v[i], false, &hv);
			if (hv.n == 0)
				r = 0;
			sl_free(&hv);
		}
		sl_free(&names);
		return r;
	}
	case TST_SIZE: {
		const struct sieve_msg_view *v = msgv(ex);
		uint64_t size = v->size ? v->size : v->raw_len;
		if (ex->edits > 0 && ex->m_parsed) {
			/* RFC 5293 5: later tests see the edited message */
			char *h = sieve_message_header_text(&ex->m);
			uint64_t orig_header = ex->m.body_offset;
			uint64_t edited = strlen(h) + 2;
			free(h);
			size = size - (orig_header < size ? orig_header : size) + edited;
		}
		if (n->tag[TAG_OVER] != NULL)
			return size > n->tag[TAG_OVER]->number;
		return size < n->tag[TAG_UNDER]->number;
	}
	case TST_HEADER: return test_header(ex, n);
	case TST_ADDRESS: return test_address(ex, n);
	case TST_ENVELOPE: return test_envelope(ex, n);
	case TST_STRING: {
		struct strlist vals;
		if (get_list(ex, n, n->pos[0], &vals) < 0)
			return -1;
		return test_match_values(ex, n, &vals, n->pos[1], true);
	}
	case TST_BODY: return test_body(ex, n);
	case TST_HASFLAG: return test_hasflag(ex, n);
	case TST_DATE:
	case TST_CURRENTDATE: return test_date(ex, n);
	case TST_MAILBOXEXISTS: {
		struct strlist names;
		if (get_list(ex, n, n->pos[0], &names) < 0)
			return -1;
		const struct sieve_msg_view *v = msgv(ex);
		int r = 1;
		for (size_t i = 0; i < names.n && r; i++)
			r = v->mailbox_exists != NULL ? v->mailbox_exists(v->ctx, names.v[i]) > 0
			    : ex->ts_active ? ts_mailbox_exists(ex, names.v[i]) : 0;
		sl_free(&names);
		return r;
	}
	case TST_DUPLICATE: {
		struct buf id;
		buf_init(&id, ex->lim.max_string_length);
		if (n->tag[TAG_HANDLE] != NULL) {
			if (get_str(ex, n, n->tag[TAG_HANDLE], &id) < 0) {
				buf_deinit(&id);
				return -1;
			}
		}
		buf_append_c(&id, '\n');
		size_t pre = id.len;
		struct buf val;
		buf_init(&val, ex->lim.max_string_length);
		if (n->tag[TAG_UNIQUEID] != NULL) {
			if (get_str(ex, n, n->tag[TAG_UNIQUEID], &val) < 0) {
				buf_deinit(&id);
				buf_deinit(&val);
				return -1;
			}
			buf_append(&id, val.data, val.len);
		} else {
			const char *hn = "message-id";
			if (n->tag[TAG_HEADER] != NULL) {
				if (get_str(ex, n, n->tag[TAG_HEADER], &val) < 0) {
					buf_deinit(&id);
					buf_deinit(&val);
					return -1;
				}
				hn = val.data;
			}
			struct strlist hv = { 0 };
			header_values(ex, NULL, hn, false, &hv);
			if (hv.n > 0)
				buf_append_str(&id, hv.v[0]);
			sl_free(&hv);
		}
		buf_deinit(&val);
		if (id.len == pre) {
			buf_deinit(&id);
			return 0;
		}
		unsigned secs = n->tag[TAG_SECONDS] != NULL ? (unsigned)(n->tag[TAG_SECONDS]->number > 86400u * 365
			? 86400u * 365 : n->tag[TAG_SECONDS]->number) : 86400u * 14;
		const struct sieve_msg_view *v = msgv(ex);
		int r = v->duplicate_check != NULL ? v->duplicate_check(v->ctx, id.data, id.len, secs) : 0;
		/* record for the host to commit after a successful delivery */
		struct sieve_result *res = ex->res;
		if (res->count < ex->lim.max_actions * 2) {
			if (res->count == res->alloc) {
				res->alloc = res->alloc ? res->alloc * 2 : 8;
				res->actions = xreallocarray(res->actions, res->alloc, sizeof(*res->actions));
			}
			struct sieve_action *a = &res->actions[res->count++];
			memset(a, 0, sizeof(*a));
			a->type = SIEVE_ACT_DUPLICATE_TRACK;
			a->line = n->line;
			a->col = n->col;
			a->text = xmemdup(id.data, id.len);
			a->seconds = secs;
			a->last = n->tag[TAG_LAST] != NULL;
		}
		buf_deinit(&id);
		return r > 0 ? 1 : 0;
	}
	case TST_VALID_NOTIFY_METHOD: {
		struct strlist uris;
		if (get_list(ex, n, n->pos[0], &uris) < 0)
			return -1;
		int r = 1;
		for (size_t i = 0; i < uris.n; i++)
			if (!valid_mailto(uris.v[i]))
				r = 0;
		sl_free(&uris);
		return r;
	}
	case TST_NOTIFY_METHOD_CAPABILITY: {
		struct buf uri, cap;
		buf_init(&uri, ex->lim.max_string_length);
		buf_init(&cap, 256);
		int r = 0;
		if (get_str(ex, n, n->pos[0], &uri) < 0 || get_str(ex, n, n->pos[1], &cap) < 0) {
			r = -1;
		} else if (valid_mailto(uri.data) && strcasecmp(cap.data, "online") == 0) {
			struct strlist vals = { 0 };
			sl_add(&vals, "maybe", 5);
			r = test_match_values(ex, n, &vals, n->pos[2], false);
		}
		buf_deinit(&uri);
		buf_deinit(&cap);
		return r;
	}
	case TST_ENVIRONMENT: return test_environment(ex, n);
	case TST_TS_COMPILE:
	case TST_TS_RUN:
	case TST_TS_ERROR:
	case TST_TS_ACTION:
	case TST_TS_EXECUTE:
	case TST_TS_MESSAGE: return test_testsuite(ex, n);
	case TST_IHAVE: return n->ihave_ok ? 1 : 0;
	default:
		ex_error(ex, n, "unsupported test '%s'", n->ident);
		return -1;
	}
}

static int eval_test(struct exec *ex, const struct sieve_node *n)
{
	if (step(ex, n) < 0)
		return -1;
	int r = eval_test_inner(ex, n);
	return ex->error != NULL ? -1 : r;
}

/* ---- actions ---- */

static struct sieve_action *add_action(struct exec *ex, const struct sieve_node *n, enum sieve_action_type t)
{
	struct sieve_result *res = ex->res;
	size_t real = 0;
	for (size_t i = 0; i < res->count; i++)
		if (res->actions[i].type != SIEVE_ACT_DUPLICATE_TRACK)
			real++;
	if (real >= ex->lim.max_actions) {
		ex_error(ex, n, "total number of actions exceeds policy limit (%u)", ex->lim.max_actions);
		return NULL;
	}
	if (res->count == res->alloc) {
		res->alloc = res->alloc ? res->alloc * 2 : 8;
		res->actions = xreallocarray(res->actions, res->alloc, sizeof(*res->actions));
	}
	struct sieve_action *a = &res->actions[res->count++];
	memset(a, 0, sizeof(*a));
	a->type = t;
	a->line = n ? n->line : 0;
	a->col = n ? n->col : 0;
	return a;
}

static struct sieve_action *find_action(struct exec *ex, enum sieve_action_type t, const char *target)
{
	for (size_t i = 0; i < ex->res->count; i++) {
		struct sieve_action *a = &ex->res->actions[i];
		if (a->type != t)
			continue;
		if (target == NULL || (a->target != NULL && strcmp(a->target, target) == 0))
			return a;
	}
	return NULL;
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void set_action_flags(struct exec *ex, const struct sieve_node *n, struct sieve_action *a)
{
	struct strlist fl = { 0 };
	if (n != NULL && n->tag[TAG_FLAGS] != NULL) {
		struct strlist raw;
		if (get_list(ex, n, n->tag[TAG_FLAGS], &raw) < 0)
			return;
		for (size_t i = 0; i < raw.n; i++)
			flags_split(raw.v[i], raw.len[i], &fl);
		sl_free(&raw);
	} else if (ex->fr == NULL || uses(ex, SIEVE_EXT_IMAP4FLAGS) || ex->flags.len > 0) {
		flags_split(ex->flags.data, ex->flags.len, &fl);
	}
	free_strv(a->flags, a->flags_count);
	a->flags = xreallocarray(NULL, fl.n + 1, sizeof(char *));
	for (size_t i = 0; i < fl.n; i++)
		a->flags[i] = xstrdup(fl.v[i]);
	a->flags[fl.n] = NULL;
	a->flags_count = fl.n;
	sl_free(&fl);
}

static struct sieve_action *find_reject(struct exec *ex)
{
	struct sieve_action *a = find_action(ex, SIEVE_ACT_REJECT, NULL);
	if (a == NULL)
		a = find_action(ex, SIEVE_ACT_EREJECT, NULL);
	if (a == NULL)
		a = find_action(ex, SIEVE_ACT_REJECT_CODE, NULL);
	return a;
}

static bool valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		size_t n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2 : (*p & 0xf8) == 0xf0 ? 3 : 9;
		if (n == 9 || (n == 1 && *p < 0xc2))
			return false;
		p++;
		for (size_t i = 0; i < n; i++, p++)
			if ((*p & 0xc0) != 0x80)
				return false;
	}
	return true;
}

/*
 * RFC 5429 2.1/2.2: reject and ereject cannot be combined with a delivery
 * (keep, fileinto, redirect), in either order; the run fails and the host
 * keeps the message.
 */
static int reject_conflict(struct exec *ex, const struct sieve_node *n, const char *what)
{
	struct sieve_action *r = find_action(ex, SIEVE_ACT_REJECT, NULL);
	if (r == NULL)
		r = find_action(ex, SIEVE_ACT_EREJECT, NULL);
	if (r != NULL) {
		ex_error(ex, n, "%s conflicts with the earlier %s action (line %d)", what, sieve_action_name(r->type),
			 r->line);
		return -1;
	}
	return 0;
}

static bool dot_atom(const char *s)
{
	if (*s == '\0' || *s == '.')
		return false;
	for (const char *p = s; *p; p++) {
		if (*p == '.' && (p[1] == '.' || p[1] == '\0'))
			return false;
		if (!(isalnum((unsigned char)*p) || strchr("!#$%&'*+-/=?^_`{|}~.", *p) != NULL || (unsigned char)*p >= 0x80))
			return false;
	}
	return true;
}

/*
 * The redirect target as one mailbox ("addr", "<addr>" or "Name <addr>"),
 * normalized to local@domain with the local part quoted only when it must be;
 * NULL when it is not exactly one valid address.
 */
static char *redirect_address(const char *s)
{
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 32)
			return NULL;
	struct sieve_address a[2];
	size_t n = sieve_address_parse_list(s, a, 2);
	char *r = NULL;
	if (n == 1 && a[0].local != NULL && a[0].domain != NULL && *a[0].local != '\0' && *a[0].domain != '\0' &&
	    strchr(s, ';') == NULL && strchr(s, ':') == NULL) {
		if (dot_atom(a[0].local)) {
			r = xasprintf("%s@%s", a[0].local, a[0].domain);
		} else {
			struct buf b;
			buf_init(&b, strlen(a[0].local) * 2 + strlen(a[0].domain) + 8);
			buf_append_c(&b, '"');
			for (const char *p = a[0].local; *p; p++) {
				if (*p == '"' || *p == '\\')
					buf_append_c(&b, '\\');
				buf_append_c(&b, *p);
			}
			buf_printf(&b, "\"@%s", a[0].domain);
			r = buf_steal(&b);
			buf_deinit(&b);
		}
	}
	for (size_t i = 0; i < n; i++)
		sieve_address_free(&a[i]);
	return r;
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
	for (; s != NULL && *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h ^ 0xff;
}

static char **strlist_steal(struct strlist *l, size_t *count)
{
	char **v = xreallocarray(NULL, l->n + 1, sizeof(char *));
	for (size_t i = 0; i < l->n; i++)
		v[i] = l->v[i];
	v[l->n] = NULL;
	*count = l->n;
	free(l->v);
	free(l->len);
	memset(l, 0, sizeof(*l));
	return v;
}

static int cmd_vacation(struct exec *ex, const struct sieve_node *n)
{
	if (find_action(ex, SIEVE_ACT_VACATION, NULL) != NULL) {
		ex_error(ex, n, "duplicate vacation action");
		return -1;
	}
	if (find_reject(ex) != NULL) {
		ex_error(ex, n, "vacation conflicts with an earlier reject action");
		return -1;
	}
	struct sieve_action *a = add_action(ex, n, SIEVE_ACT_VACATION);
	if (a == NULL)
		return -1;
	if (n->tag[TAG_SECONDS] != NULL)
		a->seconds = (unsigned long)n->tag[TAG_SECONDS]->number;
	else if (n->tag[TAG_DAYS] != NULL)
		a->seconds = (unsigned long)(n->tag[TAG_DAYS]->number ? n->tag[TAG_DAYS]->number : 1) * 86400UL;
	else
		a->seconds = 7UL * 86400UL;
	if (a->seconds > 365UL * 86400UL)
		a->seconds = 365UL * 86400UL;
	if ((a->text = get_strdup(ex, n, n->pos[0])) == NULL)
		return -1;
	if (n->tag[TAG_SUBJECT] != NULL && (a->subject = get_strdup(ex, n, n->tag[TAG_SUBJECT])) == NULL)
		return -1;
	if (n->tag[TAG_FROM] != NULL && (a->from = get_strdup(ex, n, n->tag[TAG_FROM])) == NULL)
		return -1;
	if (n->tag[TAG_HANDLE] != NULL) {
		if ((a->handle = get_strdup(ex, n, n->tag[TAG_HANDLE])) == NULL)
			return -1;
	}
	if (n->tag[TAG_ADDRESSES] != NULL) {
		struct strlist l;
		if (get_list(ex, n, n->tag[TAG_ADDRESSES], &l) < 0)
			return -1;
		a->addresses = strlist_steal(&l, &a->addresses_count);
	}
	a->mime = n->tag[TAG_MIME] != NULL;
	if (a->handle == NULL) {
		/* RFC 5230 4.2: the default handle depends on the reason and the other arguments */
		uint64_t h = 1469598103934665603ULL;
		h = fnv1a(h, a->text);
		h = fnv1a(h, a->subject);
		h = fnv1a(h, a->from);
		h = fnv1a(h, a->mime ? "mime" : "");
		for (size_t i = 0; i < a->addresses_count; i++)
			h = fnv1a(h, a->addresses[i]);
		a->handle = xasprintf("%016llx", (unsigned long long)h);
	}
	return 0;
}

static int cmd_notify(struct exec *ex, const struct sieve_node *n)
{
	char *uri = get_strdup(ex, n, n->pos[0]);
	if (uri == NULL)
		return -1;
	if (!valid_mailto(uri)) {
		ex_error(ex, n, "invalid notification method URI '%s'", uri);
		free(uri);
		return -1;
	}
	if (find_action(ex, SIEVE_ACT_NOTIFY, uri) != NULL) {
		free(uri);
		return 0;
	}
	if (++ex->notifies > ex->lim.max_notifies) {
		free(uri);
		ex_error(ex, n, "too many notify actions (the limit is %u)", ex->lim.max_notifies);
		return -1;
	}
	struct sieve_action *a = add_action(ex, n, SIEVE_ACT_NOTIFY);
	if (a == NULL) {
		free(uri);
		return -1;
	}
	a->target = uri;
	if (n->tag[TAG_FROM] != NULL && (a->from = get_strdup(ex, n, n->tag[TAG_FROM])) == NULL)
		return -1;
	if (n->tag[TAG_MESSAGE] != NULL && (a->text = get_strdup(ex, n, n->tag[TAG_MESSAGE])) == NULL)
		return -1;
	a->importance = n->tag[TAG_IMPORTANCE] != NULL ? get_strdup(ex, n, n->tag[TAG_IMPORTANCE]) : xstrdup("2");
	if (a->importance == NULL)
		return -1;
	if (strcmp(a->importance, "1") != 0 && strcmp(a->importance, "2") != 0 && strcmp(a->importance, "3") != 0) {
		free(a->importance);
		a->importance = xstrdup("2");
	}
	if (n->tag[TAG_OPTIONS] != NULL) {
		struct strlist l;
		if (get_list(ex, n, n->tag[TAG_OPTIONS], &l) < 0)
			return -1;
		a->options = strlist_steal(&l, &a->options_count);
	}
	return 0;
}

static bool protected_header(const char *name)
{
	return strcasecmp(name, "received") == 0 || strcasecmp(name, "auto-submitted") == 0;
}

static int cmd_addheader(struct exec *ex, const struct sieve_node *n, bool mailroute_tag)
{
	char *name = get_strdup(ex, n, n->pos[0]);
	if (name == NULL)
		return -1;
	char *value = get_strdup(ex, n, n->pos[1]);
	if (value == NULL) {
		free(name);
		return -1;
	}
	bool ok = *name != '\0';
	for (const char *p = name; *p; p++)
		if ((unsigned char)*p <= 32 || (unsigned char)*p >= 127 || *p == ':')
			ok = false;
	/* line breaks in the value become folds: CRLF plus the whitespace that follows, or one space */
	struct buf fv;
	buf_init(&fv, strlen(value) * 2 + 16);
	for (const char *p = value; *p; p++) {
		if (*p == '\r' || *p == '\n') {
			if (*p == '\r' && p[1] == '\n')
				p++;
			while (p[1] == '\r' || p[1] == '\n')
				p++;
			if (p[1] == '\0')
				break;
			buf_append(&fv, "\r\n", 2);
			if (p[1] != ' ' && p[1] != '\t')
				buf_append_c(&fv, ' ');
			continue;
		}
		if ((unsigned char)*p < 32 && *p != '\t')
			ok = false;
		buf_append_c(&fv, *p);
	}
	free(value);
	value = buf_steal(&fv);
	buf_deinit(&fv);
	if (!ok) {
		ex_error(ex, n, "invalid header field for %s: '%s'", n->ident, name);
		free(name);
		free(value);
		return -1;
	}
	if (protected_header(name)) {
		/* RFC 5293 6: silently ignored */
		free(name);
		free(value);
		return 0;
	}
	if (++ex->edits > ex->lim.max_header_edits) {
		ex_error(ex, n, "too many header edits (the limit is %u)", ex->lim.max_header_edits);
		free(name);
		free(value);
		return -1;
	}
	bool last = n->tag[TAG_LAST] != NULL || mailroute_tag;
	sieve_message_add_header(msg(ex), name, value, last);
	struct sieve_action *a = add_action(ex, n, SIEVE_ACT_ADDHEADER);
	if (a == NULL) {
		free(name);
		free(value);
		return -1;
	}
	a->target = name;
	a->text = value;
	a->last = last;
	return 0;
}

static int cmd_deleteheader(struct exec *ex, const struct sieve_node *n)
{
	char *name = get_strdup(ex, n, n->pos[0]);
	if (name == NULL)
		return -1;
	if (protected_header(name)) {
		free(name);
		return 0;
	}
	if (++ex->edits > ex->lim.max_header_edits) {
		ex_error(ex, n, "too many header edits (the limit is %u)", ex->lim.max_header_edits);
		free(name);
		return -1;
	}
	struct strlist pats = { 0 };
	if (n->npos > 1 && get_list(ex, n, n->pos[1], &pats) < 0) {
		free(name);
		return -1;
	}
	struct sieve_message *m = msg(ex);
	size_t total = 0;
	for (size_t i = 0; i < m->nhdrs; i++)
		if (!m->hdrs[i].deleted && strcasecmp(m->hdrs[i].name, name) == 0)
			total++;
	size_t want = 0;
	if (n->tag[TAG_INDEX] != NULL) {
		uint64_t idx = n->tag[TAG_INDEX]->number;
		want = idx > total ? (size_t)-1 : n->tag[TAG_LAST] != NULL ? total - (size_t)idx + 1 : (size_t)idx;
	}
	size_t seen = 0;
	int ret = 0;
	for (size_t i = 0; i < m->nhdrs && want != (size_t)-1; i++) {
		struct sieve_hdr *h = &m->hdrs[i];
		if (h->deleted || strcasecmp(h->name, name) != 0)
			continue;
		seen++;
		if (want != 0 && seen != want)
			continue;
		if (n->npos > 1) {
			struct strlist v = { 0 };
			sl_add(&v, h->decoded, strlen(h->decoded));
			int r = do_match(ex, n, &v, &pats, false);
			sl_free(&v);
			if (r < 0) {
				ret = -1;
				break;
			}
			if (r == 0)
				continue;
		}
		h->deleted = true;
	}
	if (ret == 0) {
		struct sieve_action *a = add_action(ex, n, SIEVE_ACT_DELETEHEADER);
		if (a == NULL) {
			ret = -1;
		} else {
			a->target = name;
			name = NULL;
			a->index = n->tag[TAG_INDEX] != NULL ? (unsigned)n->tag[TAG_INDEX]->number : 0;
			a->last = n->tag[TAG_LAST] != NULL;
			a->match = n->match == SIEVE_MATCH_CONTAINS ? 'c' : n->match == SIEVE_MATCH_MATCHES ? 'm'
				 : n->match == SIEVE_MATCH_REGEX ? 'r' : n->match == SIEVE_MATCH_VALUE ? 'v'
				 : n->match == SIEVE_MATCH_COUNT ? 'n' : 'i';
			a->comparator = xstrdup(n->cmp == SIEVE_CMP_OCTET ? "i;octet" : n->cmp == SIEVE_CMP_NUMERIC
						? "i;ascii-numeric" : "i;ascii-casemap");
			if (pats.n > 0)
				a->options = strlist_steal(&pats, &a->options_count);
		}
	}
	sl_free(&pats);
	free(name);
	return ret;
}

/* imap4flags: setflag/addflag/removeflag on a variable or the internal variable */
static int cmd_flags(struct exec *ex, const struct sieve_node *n)
{
	struct buf *target = &ex->flags;
	if (n->npos == 2) {
		struct buf name;
		buf_init(&name, 256);
		if (get_str(ex, n, n->pos[0], &name) < 0) {
			buf_deinit(&name);
			return -1;
		}
		struct var *v = var_get(ex, name.data, name.len, true);
		buf_deinit(&name);
		if (v == NULL) {
			ex_error(ex, n, "too many variables (the limit is %u)", ex->lim.max_variables);
			return -1;
		}
		target = &v->val;
	}
	struct strlist args, add = { 0 }, cur = { 0 };
	if (get_list(ex, n, n->npos == 2 ? n->pos[1] : n->pos[0], &args) < 0)
		return -1;
	for (size_t i = 0; i < args.n; i++)
		flags_split(args.v[i], args.len[i], &add);
	sl_free(&args);
	if (n->id != CMD_SETFLAG)
		flags_split(target->data, target->len, &cur);
	if (n->id == CMD_REMOVEFLAG) {
		struct strlist keep = { 0 };
		for (size_t i = 0; i < cur.n; i++) {
			bool rm = false;
			for (size_t k = 0; k < add.n; k++)
				if (strcasecmp(cur.v[i], add.v[k]) == 0)
					rm = true;
			if (!rm)
				sl_add(&keep, cur.v[i], cur.len[i]);
		}
		sl_free(&cur);
		cur = keep;
	} else {
		for (size_t k = 0; k < add.n; k++) {
			bool dup = false;
			for (size_t i = 0; i < cur.n; i++)
				if (strcasecmp(cur.v[i], add.v[k]) == 0)
					dup = true;
			if (!dup)
				sl_add(&cur, add.v[k], add.len[k]);
		}
	}
	buf_reset(target);
	for (size_t i = 0; i < cur.n; i++) {
		if (target->len + 1 + cur.len[i] > ex->lim.max_variable_size)
			break; /* whole flags only, within the variable size limit */
		if ((i > 0 && buf_append_c(target, ' ') < 0) || buf_append(target, cur.v[i], cur.len[i]) < 0)
			break;
	}
	sl_free(&cur);
	sl_free(&add);
	return 0;
}

static size_t utf8_count(const char *s, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			n++;
	return n;
}

/* Apply the set modifiers of n to val and store it in variable name; frees val. */
static int assign_var(struct exec *ex, const struct sieve_node *n, const char *name, size_t nlen, struct buf val)
{
	struct buf tmp;
	buf_init(&tmp, ex->lim.max_string_length * 2 + 16);
	unsigned mods = n->modifiers;
#define MOD(t) (mods & (1u << ((t) - TAG_LOWER)))
	if (MOD(TAG_LOWER) || MOD(TAG_UPPER))
		for (size_t i = 0; i < val.len; i++)
			val.data[i] = (char)(MOD(TAG_LOWER) ? tolower((unsigned char)val.data[i])
							    : toupper((unsigned char)val.data[i]));
	if (val.len > 0 && MOD(TAG_LOWERFIRST))
		val.data[0] = (char)tolower((unsigned char)val.data[0]);
	if (val.len > 0 && MOD(TAG_UPPERFIRST))
		val.data[0] = (char)toupper((unsigned char)val.data[0]);
	if (MOD(TAG_QUOTEWILDCARD) || MOD(TAG_QUOTEREGEX)) {
		const char *special = MOD(TAG_QUOTEWILDCARD) ? "*?\\" : "\\^$.[]|()?*+{}";
		buf_reset(&tmp);
		for (size_t i = 0; i < val.len; i++) {
			if (strchr(special, val.data[i]) != NULL && val.data[i] != '\0')
				buf_append_c(&tmp, '\\');
			buf_append_c(&tmp, val.data[i]);
		}
		buf_reset(&val);
		buf_append(&val, tmp.data, tmp.len < val.max ? tmp.len : val.max);
	}
	if (MOD(TAG_ENCODEURL)) {
		buf_reset(&tmp);
		for (size_t i = 0; i < val.len; i++) {
			unsigned char c = (unsigned char)val.data[i];
			if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
				buf_append_c(&tmp, (char)c);
			else
				buf_printf(&tmp, "%%%02X", c);
		}
		buf_reset(&val);
		buf_append(&val, tmp.data, tmp.len < val.max ? tmp.len : val.max);
	}
	if (MOD(TAG_LENGTH)) {
		size_t l = utf8_count(val.data, val.len);
		buf_reset(&val);
		buf_printf(&val, "%zu", l);
	}
#undef MOD
	struct var *v = var_get(ex, name, nlen, true);
	if (v == NULL) {
		ex_error(ex, n, "too many variables (the limit is %u)", ex->lim.max_variables);
		buf_deinit(&val);
		buf_deinit(&tmp);
		return -1;
	}
	buf_reset(&v->val);
	size_t max = v->val.max < ex->lim.max_variable_size ? v->val.max : ex->lim.max_variable_size;
	size_t l = val.len < max ? val.len : max;
	/* truncate on a UTF-8 boundary, and not inside a %XX of :encodeurl */
	while (l > 0 && l < val.len && ((unsigned char)val.data[l] & 0xc0) == 0x80)
		l--;
	if (l < val.len && (mods & (1u << (TAG_ENCODEURL - TAG_LOWER)))) {
		if (l >= 1 && val.data[l - 1] == '%')
			l -= 1;
		else if (l >= 2 && val.data[l - 2] == '%')
			l -= 2;
	}
	if (l < val.len && (mods & ((1u << (TAG_QUOTEWILDCARD - TAG_LOWER)) | (1u << (TAG_QUOTEREGEX - TAG_LOWER))))) {
		/* not between a backslash and the character it quotes */
		size_t bs = 0;
		while (bs < l && val.data[l - 1 - bs] == '\\')
			bs++;
		if (bs % 2 == 1)
			l--;
	}
	buf_append(&v->val, val.data, l);
	buf_deinit(&val);
	buf_deinit(&tmp);
	return 0;
}

static int cmd_set(struct exec *ex, const struct sieve_node *n)
{
	struct buf val;
	buf_init(&val, ex->lim.max_string_length);
	if (get_str(ex, n, n->pos[1], &val) < 0) {
		buf_deinit(&val);
		return -1;
	}
	return assign_var(ex, n, n->pos[0]->strs[0].s, n->pos[0]->strs[0].len, val);
}

/* RFC 5703 extracttext: the decoded text of the current part */
static int cmd_extracttext(struct exec *ex, const struct sieve_node *n)
{
	struct buf val;
	buf_init(&val, ex->lim.max_string_length);
	struct sieve_message *m = msg(ex);
	sieve_message_parse_parts(m, ex->lim.max_mime_parts, ex->lim.max_body_size);
	size_t cur = ex->in_part ? ex->cur_part : 0;
	if (cur < m->nparts && m->parts[cur].text != NULL && !m->parts[cur].multipart) {
		const struct sieve_part *p = &m->parts[cur];
		bool html = strcmp(p->type, "text/html") == 0 || strcmp(p->type, "application/xhtml+xml") == 0;
		char *plain = html ? html_to_text(p->text, p->text_len) : NULL;
		const char *text = plain != NULL ? plain : p->text;
		size_t len = plain != NULL ? strlen(plain) : p->text_len;
		if (n->tag[TAG_FIRST] != NULL) {
			uint64_t want = n->tag[TAG_FIRST]->number, chars = 0;
			size_t i = 0;
			for (; i < len; i++) {
				if (((unsigned char)text[i] & 0xc0) != 0x80 && chars++ == want)
					break;
			}
			len = i;
		}
		buf_append(&val, text, len < val.max ? len : val.max);
		free(plain);
	}
	return assign_var(ex, n, n->pos[0]->strs[0].s, n->pos[0]->strs[0].len, val);
}

static int exec_block(struct exec *ex, struct sieve_node *const *cmds, size_t n);

/* RFC 5703 foreverypart: the whole message and every part below it, depth first */
static int cmd_foreverypart(struct exec *ex, const struct sieve_node *n)
{
	struct sieve_message *m = msg(ex);
	sieve_message_parse_parts(m, ex->lim.max_mime_parts, ex->lim.max_body_size);
	size_t first = 0, last;
	if (m->nparts == 0)
		return 0;
	if (ex->in_part) {
		first = ex->cur_part + 1;
		last = m->parts[ex->cur_part].end;
	} else {
		last = m->nparts - 1;
	}
	char *name = n->tag[TAG_NAME] != NULL ? get_strdup(ex, n, n->tag[TAG_NAME]) : NULL;
	if (n->tag[TAG_NAME] != NULL && name == NULL)
		return -1;
	bool saved_in = ex->in_part;
	size_t saved_cur = ex->cur_part;
	int r = 0;
	for (size_t i = first; i <= last && i < m->nparts; i++) {
		ex->in_part = true;
		ex->cur_part = i;
		r = exec_block(ex, n->block, n->nblock);
		if (r < 0 || ex->stop || ex->ret)
			break;
		if (ex->breaking) {
			if (ex->break_name == NULL || (name != NULL && strcmp(name, ex->break_name) == 0)) {
				ex->breaking = false;
				free(ex->break_name);
				ex->break_name = NULL;
			}
			break;
		}
	}
	ex->in_part = saved_in;
	ex->cur_part = saved_cur;
	free(name);
	return r;
}

static int run_script(struct exec *ex, const struct sieve_script *s)
{
	struct frame fr = { .script = s };
	struct frame *saved = ex->fr;
	ex->fr = &fr;
	int r = exec_block(ex, s->cmds, s->ncmds);
	ex->ret = false;
	scope_free(&fr.local);
	free_strv(fr.globals, fr.nglobals);
	ex->fr = saved;
	return r;
}

static void ts_reset_message(struct exec *ex)
{
	sieve_message_free(&ex->m);
	ex->m_parsed = false;
}

static int cmd_testsuite(struct exec *ex, const struct sieve_node *n)
{
	if (n->id == CMD_TS_TEST) {
		char *name = get_strdup(ex, n, n->pos[0]);
		if (name == NULL)
			return -1;
		ex->res->ts_tests++;
		free(ex->ts_cur_test);
		ex->ts_cur_test = name;
		ts_reset_result(ex->res);
		ex->ts_use_run = false;
		ex->redirects = ex->notifies = 0;
		ex->ts_abort = false;
		int r = exec_block(ex, n->block, n->nblock);
		ex->stop = false;
		if (r < 0 && !ex->ts_abort) {
			/* a runtime error fails the test, it does not end the suite */
			ex->res->ts_failed++;
			if (ex->res->ts_first_failure == NULL)
				ex->res->ts_first_failure = xasprintf("%s: %s", name, ex->error);
			free(ex->error);
			ex->error = NULL;
		}
		ex->ts_abort = false;
		return 0;
	}
	if (n->id == CMD_TS_RESET && strcasecmp(n->ident, "test_result_print") == 0)
		return 0;
	if (n->id == CMD_TS_MESSAGE)
		return ts_message(ex, n) < 0 ? -1 : 0;
	if (n->id == CMD_TS_CONFIG) {
		/* no binaries here: the compiled script stays as it is */
		if (strcasecmp(n->ident, "test_config_reload") == 0 || strncasecmp(n->ident, "test_binary_", 12) == 0)
			return 0;
		if (strcasecmp(n->ident, "test_mailbox_create") == 0) {
			char *mb = get_strdup(ex, n, n->pos[0]);
			if (mb == NULL)
				return -1;
			if (!ts_mailbox_exists(ex, mb) && ex->ts_mailboxes.n < 1024)
				sl_add(&ex->ts_mailboxes, mb, strlen(mb));
			free(mb);
			return 0;
		}
		char *key = get_strdup(ex, n, n->pos[0]);
		char *val = n->npos > 1 ? get_strdup(ex, n, n->pos[1]) : xstrdup("");
		/* the one setting that maps onto our limits (up to max_string_length) */
		if (key != NULL && val != NULL && (strcmp(key, "sieve_variables_max_variable_size") == 0 ||
						   strcmp(key, "sieve_variables_max_value_size") == 0)) {
			unsigned long vs = strtoul(val, NULL, 10);
			if (vs > 0 && vs <= ex->lim.max_string_length)
				ex->lim.max_variable_size = vs;
		}
		if (key != NULL && val != NULL && strcmp(key, "sieve_notify_max_notifications") == 0) {
			unsigned long vs = strtoul(val, NULL, 10);
			ex->lim.max_notifies = vs == 0 ? UINT_MAX : (unsigned)vs; /* 0: unlimited */
		}
		if (key != NULL && val != NULL && ex->ts_cfg_key.n < 256) {
			sl_add(&ex->ts_cfg_key, key, strlen(key));
			sl_add(&ex->ts_cfg_val, val, strlen(val));
		}
		free(key);
		free(val);
		return 0;
	}
	if (n->id == CMD_TS_RESET) {
		ex->redirects = ex->notifies = 0;
		ts_reset_result(ex->res);
		ts_reset_result(&ex->ts_run_res);
		ex->ts_use_run = false;
		return 0;
	}
	if (n->id == CMD_TS_FAIL) {
		char *m = get_strdup(ex, n, n->pos[0]);
		ex->res->ts_failed++;
		if (ex->res->ts_first_failure == NULL)
			ex->res->ts_first_failure = xasprintf("%s: %d: %s", ex->ts_cur_test ? ex->ts_cur_test : "(top)",
							      n->line, m ? m : "");
		free(m);
		ex->ts_abort = true;
		return -1;
	}
	/* test_set */
	char *what = get_strdup(ex, n, n->pos[0]);
	char *val = what ? get_strdup(ex, n, n->pos[1]) : NULL;
	if (what == NULL || val == NULL) {
		free(what);
		return -1;
	}
	if (strcmp(what, "message") == 0) {
		free(ex->ts_raw);
		ex->ts_raw = val;
		ex->ts_msg.raw = val;
		ex->ts_msg.raw_len = strlen(val);
		ex->ts_msg.size = 0;
		ts_reset_message(ex);
		ex->edits = 0;
		/* a new message gets back the envelope test_message :smtp replaced */
		ex->ts_msg.envelope_from = ex->ts_from != NULL ? ex->ts_from : ex->msg->envelope_from;
		ex->ts_msg.envelope_to = ex->ts_to != NULL ? ex->ts_to : ex->msg->envelope_to;
		val = NULL;
	} else if (strcmp(what, "envelope.from") == 0) {
		free(ex->ts_from);
		ex->ts_msg.envelope_from = ex->ts_from = val;
		val = NULL;
	} else if (strcmp(what, "envelope.to") == 0) {
		free(ex->ts_to);
		ex->ts_msg.envelope_to = ex->ts_to = val;
		val = NULL;
	} else if (strcmp(what, "envelope.auth") == 0) {
		free(ex->ts_auth);
		ex->ts_msg.auth_user = ex->ts_auth = val;
		val = NULL;
	} else if (strcmp(what, "envelope.orig_to") == 0) {
		free(ex->ts_orig);
		ex->ts_msg.original_to = ex->ts_orig = val;
		val = NULL;
	} else {
		ex_error(ex, n, "test_set: unknown item '%s'", what);
		free(what);
		free(val);
		return -1;
	}
	free(what);
	free(val);
	return 0;
}

/* delivery actions remember the header as edited so far */
static void snapshot_header(struct exec *ex, struct sieve_action *a)
{
	if (ex->edits > 0 && ex->m_parsed && a != NULL && a->header == NULL)
		a->header = sieve_message_header_text(&ex->m);
}

static int exec_cmd(struct exec *ex, const struct sieve_node *n, bool *cond_done)
{
	if (step(ex, n) < 0)
		return -1;
	switch (n->id) {
	case CMD_REQUIRE:
		return 0;
	case CMD_IF:
	case CMD_ELSIF:
	case CMD_ELSE: {
		if (n->id != CMD_IF && *cond_done)
			return 0;
		int r = 1;
		if (n->id != CMD_ELSE) {
			r = eval_test(ex, n->tests[0]);
			if (r < 0)
				return -1;
			trace_node(ex, n, r ? " -> true" : " -> false");
		} else {
			trace_node(ex, n, NULL);
		}
		*cond_done = r == 1;
		if (r == 1)
			return exec_block(ex, n->block, n->nblock);
		return 0;
	}
	default:
		break;
	}
	trace_node(ex, n, NULL);
	struct sieve_action *a;
	switch (n->id) {
	case CMD_STOP:
		ex->stop = true;
		return 0;
	case CMD_RETURN:
		ex->ret = true;
		return 0;
	case CMD_KEEP:
		if (reject_conflict(ex, n, "keep") < 0)
			return -1;
		a = find_action(ex, SIEVE_ACT_KEEP, NULL);
		if (a == NULL && (a = add_action(ex, n, SIEVE_ACT_KEEP)) == NULL)
			return -1;
		set_action_flags(ex, n, a);
		snapshot_header(ex, a);
		ex->res->keep_cancelled = true;
		return 0;
	case CMD_DISCARD:
		if (find_action(ex, SIEVE_ACT_DISCARD, NULL) == NULL && add_action(ex, n, SIEVE_ACT_DISCARD) == NULL)
			return -1;
		ex->res->keep_cancelled = true;
		return 0;
	case CMD_REDIRECT: {
		char *given = get_strdup(ex, n, n->pos[0]);
		if (given == NULL)
			return -1;
		char *addr = redirect_address(given);
		if (addr == NULL) {
			ex_error(ex, n, "invalid redirect address '%s'", given);
			free(given);
			return -1;
		}
		free(given);
		if (reject_conflict(ex, n, "redirect") < 0) {
			free(addr);
			return -1;
		}
		bool copy = n->tag[TAG_COPY] != NULL;
		if ((a = find_action(ex, SIEVE_ACT_REDIRECT, addr)) != NULL) {
			a->copy = a->copy && copy;
			free(addr);
		} else {
			if (++ex->redirects > ex->lim.max_redirects) {
				ex_error(ex, n, "number of redirect actions exceeds policy limit (%u)", ex->lim.max_redirects);
				free(addr);
				return -1;
			}
			if ((a = add_action(ex, n, SIEVE_ACT_REDIRECT)) == NULL) {
				free(addr);
				return -1;
			}
			a->target = addr;
			a->copy = copy;
			snapshot_header(ex, a);
		}
		if (!copy)
			ex->res->keep_cancelled = true;
		return 0;
	}
	case CMD_FILEINTO: {
		char *folder = get_strdup(ex, n, n->pos[0]);
		if (folder == NULL)
			return -1;
		if (*folder == '\0' || !valid_utf8(folder)) {
			char q[128];
			size_t ql = 0;
			for (const unsigned char *c = (const unsigned char *)folder; *c && ql + 5 < sizeof(q); c++) {
				if (*c >= 0x20 && *c < 0x7f && *c != '"' && *c != '\\')
					q[ql++] = (char)*c;
				else
					ql += (size_t)snprintf(q + ql, sizeof(q) - ql, "\\x%02x", *c);
			}
			q[ql] = '\0';
			ex_error(ex, n, "invalid folder name \"%s\" (empty or not UTF-8)", q);
			free(folder);
			return -1;
		}
		if (reject_conflict(ex, n, "fileinto") < 0) {
			free(folder);
			return -1;
		}
		bool copy = n->tag[TAG_COPY] != NULL;
		if (strcasecmp(folder, "INBOX") == 0 && (a = find_action(ex, SIEVE_ACT_KEEP, NULL)) != NULL) {
			free(folder);
		} else if ((a = find_action(ex, SIEVE_ACT_FILEINTO, folder)) != NULL) {
			a->copy = a->copy && copy;
			a->create = a->create || n->tag[TAG_CREATE] != NULL;
			free(folder);
		} else {
			if ((a = add_action(ex, n, SIEVE_ACT_FILEINTO)) == NULL) {
				free(folder);
				return -1;
			}
			a->target = folder;
			a->copy = copy;
			a->create = n->tag[TAG_CREATE] != NULL;
			snapshot_header(ex, a);
		}
		set_action_flags(ex, n, a);
		if (!copy)
			ex->res->keep_cancelled = true;
		return 0;
	}
	case CMD_REJECT:
	case CMD_EREJECT:
	case CMD_REJECT_CODE: {
		if (find_reject(ex) != NULL) {
			ex_error(ex, n, "duplicate reject action");
			return -1;
		}
		if (find_action(ex, SIEVE_ACT_VACATION, NULL) != NULL) {
			ex_error(ex, n, "reject conflicts with an earlier vacation action");
			return -1;
		}
		if (n->id != CMD_REJECT_CODE) {
			static const enum sieve_action_type deliv[] = { SIEVE_ACT_KEEP, SIEVE_ACT_FILEINTO, SIEVE_ACT_REDIRECT };
			for (size_t k = 0; k < 3; k++) {
				struct sieve_action *d = find_action(ex, deliv[k], NULL);
				if (d != NULL && !d->implicit) {
					ex_error(ex, n, "%s conflicts with the earlier %s action (line %d)", n->ident,
						 sieve_action_name(d->type), d->line);
					return -1;
				}
			}
		}
		char *text = get_strdup(ex, n, n->pos[n->id == CMD_REJECT_CODE ? 2 : 0]);
		if (text == NULL)
			return -1;
		a = add_action(ex, n, n->id == CMD_REJECT ? SIEVE_ACT_REJECT : n->id == CMD_EREJECT ? SIEVE_ACT_EREJECT
							   : SIEVE_ACT_REJECT_CODE);
		if (a == NULL) {
			free(text);
			return -1;
		}
		a->text = text;
		if (n->id == CMD_REJECT_CODE) {
			snprintf(a->smtp_code, sizeof(a->smtp_code), "%s", n->pos[0]->strs[0].s);
			snprintf(a->enhanced_code, sizeof(a->enhanced_code), "%s", n->pos[1]->strs[0].s);
		}
		ex->res->keep_cancelled = true;
		return 0;
	}
	case CMD_SET:
		return cmd_set(ex, n);
	case CMD_EXTRACTTEXT:
		return cmd_extracttext(ex, n);
	case CMD_ERROR: {
		/* RFC 5463 5: end the script with an error; the host keeps the message */
		char *m = get_strdup(ex, n, n->pos[0]);
		if (m != NULL)
			ex_error(ex, n, "error: %s", m);
		free(m);
		return -1;
	}
	case CMD_FOREVERYPART:
		return cmd_foreverypart(ex, n);
	case CMD_BREAK:
		free(ex->break_name);
		ex->break_name = NULL;
		if (n->tag[TAG_NAME] != NULL && (ex->break_name = get_strdup(ex, n, n->tag[TAG_NAME])) == NULL)
			return -1;
		ex->breaking = true;
		return 0;
	case CMD_VACATION:
		return cmd_vacation(ex, n);
	case CMD_SETFLAG:
	case CMD_ADDFLAG:
	case CMD_REMOVEFLAG:
		return cmd_flags(ex, n);
	case CMD_ADDHEADER:
		return cmd_addheader(ex, n, false);
	case CMD_TAG:
		return cmd_addheader(ex, n, true);
	case CMD_DELETEHEADER:
		return cmd_deleteheader(ex, n);
	case CMD_NOTIFY:
		return cmd_notify(ex, n);
	case CMD_GLOBAL: {
		struct strlist l;
		if (get_list(ex, n, n->pos[0], &l) < 0)
			return -1;
		for (size_t i = 0; i < l.n; i++) {
			bool have = false;
			for (size_t k = 0; k < ex->fr->nglobals; k++)
				if (strcasecmp(ex->fr->globals[k], l.v[i]) == 0)
					have = true;
			if (have)
				continue;
			if (ex->fr->nglobals >= ex->lim.max_variables) {
				sl_free(&l);
				ex_error(ex, n, "too many global variables");
				return -1;
			}
			ex->fr->globals = xreallocarray(ex->fr->globals, ex->fr->nglobals + 1, sizeof(char *));
			ex->fr->globals[ex->fr->nglobals++] = xstrdup(l.v[i]);
		}
		sl_free(&l);
		return 0;
	}
	case CMD_INCLUDE: {
		const struct sieve_script *sub = n->included;
		if (sub == NULL)
			return 0; /* :optional and missing */
		char *key = xasprintf("%c%s", n->tag[TAG_GLOBAL] != NULL ? 'g' : 'p', sub->name);
		bool seen = false;
		for (size_t i = 0; i < ex->nonce; i++)
			if (strcmp(ex->once[i], key) == 0)
				seen = true;
		if (seen && n->tag[TAG_ONCE] != NULL) {
			free(key);
			return 0;
		}
		if (!seen && ex->nonce < 1024) {
			ex->once = xreallocarray(ex->once, ex->nonce + 1, sizeof(*ex->once));
			ex->once[ex->nonce++] = key;
		} else {
			free(key);
		}
		if (ex->depth + 1 > ex->lim.max_include_depth) {
			ex_error(ex, n, "include nesting is deeper than %u levels", ex->lim.max_include_depth);
			return -1;
		}
		ex->depth++;
		int r = run_script(ex, sub);
		ex->depth--;
		return r;
	}
	case CMD_ROUTE: {
		char *name = get_strdup(ex, n, n->pos[0]);
		if (name == NULL)
			return -1;
		enum sieve_action_type t = n->tag[TAG_TRANSPORT] != NULL ? SIEVE_ACT_ROUTE_TRANSPORT
									 : SIEVE_ACT_ROUTE_RELAY;
		/* the last route wins: replace an earlier one */
		a = find_action(ex, SIEVE_ACT_ROUTE_RELAY, NULL);
		if (a == NULL)
			a = find_action(ex, SIEVE_ACT_ROUTE_TRANSPORT, NULL);
		if (a == NULL && (a = add_action(ex, n, t)) == NULL) {
			free(name);
			return -1;
		}
		free(a->target);
		a->type = t;
		a->target = name;
		a->line = n->line;
		a->col = n->col;
		return 0;
	}
	case CMD_WEBHOOK: {
		char *name = get_strdup(ex, n, n->pos[0]);
		if (name == NULL)
			return -1;
		if (find_action(ex, SIEVE_ACT_WEBHOOK, name) != NULL) {
			free(name);
			return 0;
		}
		if ((a = add_action(ex, n, SIEVE_ACT_WEBHOOK)) == NULL) {
			free(name);
			return -1;
		}
		a->target = name;
		return 0;
	}
	case CMD_QUARANTINE: {
		char *reason = n->npos > 0 ? get_strdup(ex, n, n->pos[0]) : xstrdup("");
		if (reason == NULL)
			return -1;
		if ((a = find_action(ex, SIEVE_ACT_QUARANTINE, NULL)) != NULL) {
			free(a->text);
			a->text = reason;
		} else if ((a = add_action(ex, n, SIEVE_ACT_QUARANTINE)) == NULL) {
			free(reason);
			return -1;
		} else {
			a->text = reason;
		}
		ex->res->keep_cancelled = true;
		return 0;
	}
	case CMD_TS_TEST:
	case CMD_TS_FAIL:
	case CMD_TS_SET:
	case CMD_TS_RESET:
	case CMD_TS_MESSAGE:
	case CMD_TS_CONFIG:
		return cmd_testsuite(ex, n);
	default:
		ex_error(ex, n, "unsupported command '%s'", n->ident);
		return -1;
	}
}

static int exec_block(struct exec *ex, struct sieve_node *const *cmds, size_t n)
{
	bool cond_done = false;
	for (size_t i = 0; i < n; i++) {
		if (ex->stop || ex->ret || ex->breaking)
			return 0;
		const struct sieve_node *c = cmds[i];
		if (c->id != CMD_ELSIF && c->id != CMD_ELSE)
			cond_done = false;
		if (exec_cmd(ex, c, &cond_done) < 0)
			return -1;
	}
	return 0;
}

void sieve_exec_limits_default(struct sieve_exec_limits *lim)
{
	memset(lim, 0, sizeof(*lim));
	lim->max_steps = 10000;
	lim->max_actions = 32;
	lim->max_redirects = 4;
	lim->max_header_edits = 64;
	lim->max_variables = 255;
	lim->max_variable_size = 4096;
	lim->max_string_length = 65536;
	lim->regex_match_limit = 100000;
	lim->max_body_size = 1024 * 1024;
	lim->max_mime_parts = 64;
	lim->max_include_depth = 5;
	lim->max_notifies = 4;
}

static void fill_limits(struct sieve_exec_limits *dst, const struct sieve_exec_limits *src)
{
	sieve_exec_limits_default(dst);
	if (src == NULL)
		return;
#define L(f) if (src->f) dst->f = src->f
	L(max_steps); L(max_actions); L(max_redirects); L(max_header_edits); L(max_variables);
	L(max_variable_size); L(max_string_length); L(regex_match_limit); L(max_body_size);
	L(max_mime_parts); L(max_include_depth); L(max_notifies);
#undef L
}

static void action_free(struct sieve_action *a)
{
	free(a->header);
	free(a->target);
	free(a->text);
	free_strv(a->flags, a->flags_count);
	free(a->subject);
	free(a->from);
	free(a->handle);
	free_strv(a->addresses, a->addresses_count);
	free(a->importance);
	free_strv(a->options, a->options_count);
	free(a->comparator);
}

/* testsuite: drop the actions but keep the counters */
static void ts_reset_result(struct sieve_result *res)
{
	for (size_t i = 0; i < res->count; i++)
		action_free(&res->actions[i]);
	res->count = 0;
	res->keep_cancelled = false;
	res->implicit_keep = false;
}

void sieve_result_init(struct sieve_result *res)
{
	memset(res, 0, sizeof(*res));
}

void sieve_result_deinit(struct sieve_result *res)
{
	for (size_t i = 0; i < res->count; i++)
		action_free(&res->actions[i]);
	free(res->actions);
	free(res->ts_first_failure);
	free(res->edited_header);
	memset(res, 0, sizeof(*res));
}

static void add_implicit_keep(struct exec *ex)
{
	struct sieve_result *res = ex->res;
	if (res->count == res->alloc) {
		res->alloc = res->alloc ? res->alloc * 2 : 8;
		res->actions = xreallocarray(res->actions, res->alloc, sizeof(*res->actions));
	}
	struct sieve_action *a = &res->actions[res->count++];
	memset(a, 0, sizeof(*a));
	a->type = SIEVE_ACT_KEEP;
	a->implicit = true;
	struct frame *saved = ex->fr;
	ex->fr = NULL;
	set_action_flags(ex, NULL, a);
	ex->fr = saved;
	res->implicit_keep = true;
}

int sieve_execute(const struct sieve_script *s, const struct sieve_msg_view *mv,
		  const struct sieve_exec_limits *lim, struct sieve_result *res, sieve_trace_fn *trace,
		  void *trace_ctx, char **error_r)
{
	struct exec ex;
	memset(&ex, 0, sizeof(ex));
	static const struct sieve_msg_view empty = { .envelope_from = NULL };
	ex.msg = mv != NULL ? mv : &empty;
	fill_limits(&ex.lim, lim);
	sieve_result_deinit(res);
	ex.res = res;
	ex.trace = trace;
	ex.trace_ctx = trace_ctx;
	for (int i = 0; i < SIEVE_MAX_MATCH_VALUES; i++)
		buf_init(&ex.match[i], ex.lim.max_variable_size);
	buf_init(&ex.flags, ex.lim.max_variable_size);
	if (s->required & SIEVE_EXT_TESTSUITE) {
		ex.ts_active = true;
		ex.ts_msg = *ex.msg;
	}
	int r = run_script(&ex, s);
	if (r < 0 && ex.ts_abort) {
		/* test_fail outside a test block */
		r = 0;
		free(ex.error);
		ex.error = NULL;
	}
	if (r < 0) {
		sieve_result_deinit(res);
		add_implicit_keep(&ex);
		*error_r = ex.error != NULL ? ex.error : xstrdup("runtime error");
		ex.error = NULL;
	} else if (!res->keep_cancelled) {
		add_implicit_keep(&ex);
	}
	if (r >= 0 && ex.edits > 0 && ex.m_parsed) {
		res->edited_header = sieve_message_header_text(&ex.m);
		res->body_offset = ex.m.body_offset;
	}
	for (int i = 0; i < SIEVE_MAX_MATCH_VALUES; i++)
		buf_deinit(&ex.match[i]);
	buf_deinit(&ex.flags);
	scope_free(&ex.globals);
	sieve_message_free(&ex.m);
	free_strv(ex.once, ex.nonce);
	free(ex.ts_raw);
	free(ex.ts_from);
	free(ex.ts_to);
	free(ex.ts_auth);
	free(ex.ts_orig);
	free(ex.ts_cur_test);
	free(ex.break_name);
	sieve_script_free(&ex.ts_script);
	sl_free(&ex.ts_store_folder);
	sl_free(&ex.ts_store_msg);
	sl_free(&ex.ts_smtp_msg);
	sl_free(&ex.ts_smtp_to);
	sl_free(&ex.ts_smtp_from);
	sl_free(&ex.ts_cfg_key);
	sl_free(&ex.ts_mailboxes);
	sl_free(&ex.ts_cfg_val);
	free(ex.ts_env_to);
	free(ex.ts_env_from);
	sieve_result_deinit(&ex.ts_run_res);
	sl_free(&ex.ts_errors);
	free(ex.error);
	return r < 0 ? -1 : 1;
}
