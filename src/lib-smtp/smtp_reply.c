#include "lib-smtp/smtp_reply.h"

#include <string.h>

#include "lib-smtp/smtp_parse.h"

static void reply_reset(struct smtp_reply *r)
{
	r->code = 0;
	r->enhanced[0] = '\0';
	r->lines = 0;
	buf_reset(&r->text);
}

void smtp_reply_parser_init(struct smtp_reply_parser *p, size_t max_line, unsigned max_lines,
			    size_t max_text)
{
	smtp_line_reader_init(&p->line, max_line != 0 ? max_line : SMTP_REPLY_MAX_LINE_DEFAULT);
	p->max_lines = max_lines != 0 ? max_lines : SMTP_REPLY_MAX_LINES_DEFAULT;
	buf_init(&p->reply.text, max_text != 0 ? max_text : SMTP_REPLY_MAX_TEXT_DEFAULT);
	reply_reset(&p->reply);
	p->complete = false;
	p->error = NULL;
}

void smtp_reply_parser_deinit(struct smtp_reply_parser *p)
{
	smtp_line_reader_deinit(&p->line);
	buf_deinit(&p->reply.text);
}

static inline bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Length of "c.s.d" at the start of s (followed by SP or the end), else 0. */
static size_t enhanced_len(const char *s, size_t len, char cls)
{
	if (len < 5 || s[0] != cls || s[1] != '.')
		return 0;
	size_t i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;
		while (i < len && is_digit(s[i]) && i - start < 4)
			i++;
		if (i == start || i - start > 3)
			return 0;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && s[i] != ' ')
		return 0;
	return i;
}

/* Returns 1 when the line ended the reply, 0 when more lines follow, -1 with *error_r. */
static int reply_line(struct smtp_reply_parser *p, const char *s, size_t len, const char **error_r)
{
	struct smtp_reply *r = &p->reply;
	if (memchr(s, '\0', len) != NULL) {
		*error_r = "NUL in reply";
		return -1;
	}
	if (len < 3 || s[0] < '2' || s[0] > '5' || s[1] < '0' || s[1] > '5' || !is_digit(s[2])) {
		*error_r = "bad reply code";
		return -1;
	}
	bool last;
	if (len == 3 || s[3] == ' ')
		last = true;
	else if (s[3] == '-')
		last = false;
	else {
		*error_r = "bad reply code separator";
		return -1;
	}
	int code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
	if (r->lines > 0 && code != r->code) {
		*error_r = "reply code changed within a multiline reply";
		return -1;
	}
	if (r->lines >= p->max_lines) {
		*error_r = "too many lines in reply";
		return -1;
	}
	r->code = code;
	const char *text = len > 4 ? s + 4 : s + len;
	size_t tl = len > 4 ? len - 4 : 0;
	size_t el = s[0] == '3' ? 0 : enhanced_len(text, tl, s[0]);
	if (el > 0) {
		if (r->enhanced[0] == '\0' && el < sizeof(r->enhanced)) {
			memcpy(r->enhanced, text, el);
			r->enhanced[el] = '\0';
		}
		text += el;
		tl -= el;
		if (tl > 0) {
			text++;
			tl--;
		}
	}
	if ((r->lines > 0 && buf_append_c(&r->text, '\n') < 0) || buf_append(&r->text, text, tl) < 0) {
		*error_r = "reply text too long";
		return -1;
	}
	r->lines++;
	return last ? 1 : 0;
}

static int fail(struct smtp_reply_parser *p, const char *error, size_t consumed, size_t *consumed_r,
		const char **error_r)
{
	p->error = error;
	*consumed_r = consumed;
	*error_r = error;
	return SMTP_REPLY_INVALID;
}

int smtp_reply_parser_feed(struct smtp_reply_parser *p, const char *data, size_t len,
			   size_t *consumed_r, const struct smtp_reply **reply_r, const char **error_r)
{
	*consumed_r = 0;
	*reply_r = NULL;
	*error_r = NULL;
	if (p->error != NULL) {
		*error_r = p->error;
		return SMTP_REPLY_INVALID;
	}
	if (p->complete) {
		reply_reset(&p->reply);
		p->complete = false;
	}
	size_t total = 0;
	while (total < len) {
		size_t used;
		struct smtp_line line;
		int ret = smtp_line_reader_feed(&p->line, data + total, len - total, &used, &line);
		total += used;
		switch (ret) {
		case SMTP_LINE_AGAIN:
			if (p->line.discarding)
				return fail(p, "reply line too long", total, consumed_r, error_r);
			continue;
		case SMTP_LINE_TOO_LONG:
			return fail(p, "reply line too long", total, consumed_r, error_r);
		case SMTP_LINE_BARE_LF:
			return fail(p, "reply line ends with bare LF", total, consumed_r, error_r);
		case SMTP_LINE_BARE_CR:
			return fail(p, "bare CR in reply line", total, consumed_r, error_r);
		default:
			break;
		}
		const char *err;
		int lr = reply_line(p, line.data, line.len, &err);
		if (lr < 0)
			return fail(p, err, total, consumed_r, error_r);
		if (lr == 1) {
			p->complete = true;
			*consumed_r = total;
			*reply_r = &p->reply;
			return SMTP_REPLY_OK;
		}
	}
	*consumed_r = total;
	return SMTP_REPLY_AGAIN;
}

/* ---- EHLO ---- */

static void append_word(char *dst, size_t size, const char *w, size_t wl)
{
	size_t cur = strlen(dst);
	size_t need = wl + (cur > 0 ? 1 : 0);
	if (need >= size - cur)
		return;
	if (cur > 0)
		dst[cur++] = ' ';
	for (size_t i = 0; i < wl; i++) {
		char c = w[i];
		dst[cur++] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
	}
	dst[cur] = '\0';
}

static bool has_word_icase(const char *dst, const char *w, size_t wl)
{
	const char *d = dst;
	while (*d != '\0') {
		const char *e = strchr(d, ' ');
		size_t dl = e != NULL ? (size_t)(e - d) : strlen(d);
		/* dst words are upper-case already */
		if (dl == wl) {
			size_t k = 0;
			while (k < wl) {
				char c = w[k];
				if (c >= 'a' && c <= 'z')
					c = (char)(c - 32);
				if (c != d[k])
					break;
				k++;
			}
			if (k == wl)
				return true;
		}
		if (e == NULL)
			break;
		d = e + 1;
	}
	return false;
}

/* Add the space-separated words of v to dst (upper-cased), skipping duplicates. */
static void add_words(char *dst, size_t size, const char *v, size_t vl)
{
	size_t i = 0;
	while (i < vl) {
		while (i < vl && v[i] == ' ')
			i++;
		size_t start = i;
		while (i < vl && v[i] != ' ')
			i++;
		if (i > start && !has_word_icase(dst, v + start, i - start))
			append_word(dst, size, v + start, i - start);
	}
}

int smtp_reply_ehlo_parse(const struct smtp_reply *reply, struct smtp_ehlo *ehlo)
{
	memset(ehlo, 0, sizeof(*ehlo));
	if (reply->code != 250)
		return -1;
	const char *s = reply->text.data;
	size_t len = reply->text.len;
	size_t pos = 0;
	for (unsigned n = 0; pos <= len; n++) {
		const char *nl = memchr(s + pos, '\n', len - pos);
		size_t ll = nl != NULL ? (size_t)(nl - (s + pos)) : len - pos;
		const char *l = s + pos;
		pos += ll + 1;
		if (n == 0) {
			size_t w = 0;
			while (w < ll && l[w] != ' ')
				w++;
			if (w < sizeof(ehlo->domain)) {
				memcpy(ehlo->domain, l, w);
				ehlo->domain[w] = '\0';
			}
			continue;
		}
		size_t kl = 0;
		while (kl < ll && l[kl] != ' ' && l[kl] != '=')
			kl++;
		struct smtp_view kw = { l, kl };
		const char *val = kl < ll ? l + kl + 1 : l + ll;
		size_t vl = kl < ll ? ll - kl - 1 : 0;
		if (smtp_view_eq_icase(kw, "PIPELINING"))
			ehlo->caps |= SMTP_EHLO_PIPELINING;
		else if (smtp_view_eq_icase(kw, "8BITMIME"))
			ehlo->caps |= SMTP_EHLO_8BITMIME;
		else if (smtp_view_eq_icase(kw, "SMTPUTF8"))
			ehlo->caps |= SMTP_EHLO_SMTPUTF8;
		else if (smtp_view_eq_icase(kw, "STARTTLS"))
			ehlo->caps |= SMTP_EHLO_STARTTLS;
		else if (smtp_view_eq_icase(kw, "ENHANCEDSTATUSCODES"))
			ehlo->caps |= SMTP_EHLO_ENHANCEDSTATUSCODES;
		else if (smtp_view_eq_icase(kw, "DSN"))
			ehlo->caps |= SMTP_EHLO_DSN;
		else if (smtp_view_eq_icase(kw, "CHUNKING"))
			ehlo->caps |= SMTP_EHLO_CHUNKING;
		else if (smtp_view_eq_icase(kw, "BINARYMIME"))
			ehlo->caps |= SMTP_EHLO_BINARYMIME;
		else if (smtp_view_eq_icase(kw, "REQUIRETLS"))
			ehlo->caps |= SMTP_EHLO_REQUIRETLS;
		else if (smtp_view_eq_icase(kw, "AUTH")) {
			ehlo->caps |= SMTP_EHLO_AUTH;
			add_words(ehlo->auth, sizeof(ehlo->auth), val, vl);
		} else if (smtp_view_eq_icase(kw, "SIZE")) {
			ehlo->caps |= SMTP_EHLO_SIZE;
			uint64_t v = 0;
			bool ok = vl > 0 && vl <= 20;
			for (size_t i = 0; ok && i < vl; i++) {
				if (!is_digit(val[i]) || v > (UINT64_MAX - (uint64_t)(val[i] - '0')) / 10)
					ok = false;
				else
					v = v * 10 + (uint64_t)(val[i] - '0');
			}
			ehlo->size = ok ? v : 0;
		}
		if (nl == NULL)
			break;
	}
	return 0;
}
