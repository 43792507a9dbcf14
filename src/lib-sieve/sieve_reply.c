/*
 * sieve_reply: the messages a host sends for vacation (RFC 5230, RFC 3834)
 * and reject (RFC 5429 MDN, RFC 3798) actions. Pure functions: they compose,
 * the host sends (envelope sender <>) and keeps once-per-period state.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib-sieve/sieve.h"
#include "lib-sieve/sieve_message.h"
#include "lib/xalloc.h"

void sieve_reply_free(struct sieve_reply *r)
{
	free(r->mail_from);
	free(r->rcpt_to);
	free(r->data);
	memset(r, 0, sizeof(*r));
}

static const char *hdr_first(const struct sieve_message *m, const char *name)
{
	for (size_t i = 0; i < m->nhdrs; i++)
		if (strcasecmp(m->hdrs[i].name, name) == 0)
			return m->hdrs[i].raw;
	return NULL;
}

static const char *hdr_first_decoded(const struct sieve_message *m, const char *name)
{
	for (size_t i = 0; i < m->nhdrs; i++)
		if (strcasecmp(m->hdrs[i].name, name) == 0)
			return m->hdrs[i].decoded;
	return NULL;
}

static void rfc5322_date(time_t t, struct buf *b)
{
	struct tm tm;
	localtime_r(&t, &tm);
	char s[64];
	strftime(s, sizeof(s), "%a, %d %b %Y %H:%M:%S %z", &tm);
	buf_append_str(b, s);
}

static void message_id(const struct sieve_reply_options *opt, time_t now, const char *salt, struct buf *b)
{
	unsigned long long h = 1469598103934665603ULL;
	for (const char *p = salt; p != NULL && *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	buf_printf(b, "<%llx.%lx.sieve@%s>", h, (long)now, opt->hostname ? opt->hostname : "localhost");
}

/* Append text with every line ending made CRLF. */
static void append_crlf(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\r' && s[1] == '\n')
			continue;
		if (*s == '\n' || *s == '\r') {
			buf_append(b, "\r\n", 2);
			continue;
		}
		buf_append_c(b, *s);
	}
}

static bool addr_eq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcasecmp(a, b) == 0;
}

/* "local@domain" of an envelope path, or NULL. */
static char *path_addr(const char *path)
{
	struct sieve_address a;
	if (path == NULL || sieve_address_parse_path(path, &a) <= 0 || a.domain == NULL || *a.local == '\0') {
		if (path != NULL)
			sieve_address_free(&a);
		return NULL;
	}
	char *r = xasprintf("%s@%s", a.local, a.domain);
	sieve_address_free(&a);
	return r;
}

int sieve_vacation_compose(const struct sieve_action *act, const struct sieve_msg_view *mv,
			   const struct sieve_reply_options *opt, struct sieve_reply *reply, const char **why_r)
{
	memset(reply, 0, sizeof(*reply));
	*why_r = NULL;
	if (act->type != SIEVE_ACT_VACATION) {
		*why_r = "not a vacation action";
		return -1;
	}
	if (!sieve_vacation_allowed(mv)) {
		*why_r = "the sender or the message excludes automatic replies (RFC 3834)";
		return 0;
	}
	char *rcpt = path_addr(mv->envelope_from);
	if (rcpt == NULL) {
		*why_r = "the envelope sender is not a valid address";
		return 0;
	}
	/* my addresses: the recipient, the original recipient and :addresses */
	const char *mine[67];
	size_t nmine = 0;
	char *env_to = path_addr(mv->envelope_to), *orig_to = path_addr(mv->original_to);
	if (env_to != NULL)
		mine[nmine++] = env_to;
	if (orig_to != NULL)
		mine[nmine++] = orig_to;
	if (opt->user_address != NULL)
		mine[nmine++] = opt->user_address;
	bool can_check = env_to != NULL || orig_to != NULL;
	for (size_t i = 0; i < act->addresses_count && nmine < 67; i++)
		mine[nmine++] = act->addresses[i];
	for (size_t i = 0; i < nmine; i++) {
		if (addr_eq(mine[i], rcpt)) {
			*why_r = "the message comes from one of the recipient's own addresses";
			free(rcpt);
			free(env_to);
			free(orig_to);
			return 0;
		}
	}
	struct sieve_message m;
	sieve_message_parse(&m, mv->raw, mv->raw_len, 1000);
	/* RFC 5230 4.5: reply only when one of my addresses is in a recipient header */
	char *matched = NULL;
	static const char *rh[] = { "to", "cc", "bcc", "resent-to", "resent-cc", NULL };
	for (size_t i = 0; i < m.nhdrs && matched == NULL; i++) {
		bool is_rcpt = false;
		for (int k = 0; rh[k]; k++)
			if (strcasecmp(m.hdrs[i].name, rh[k]) == 0)
				is_rcpt = true;
		if (!is_rcpt)
			continue;
		struct sieve_address addrs[64];
		size_t na = sieve_address_parse_list(m.hdrs[i].raw, addrs, 64);
		for (size_t k = 0; k < na; k++) {
			if (matched == NULL && addrs[k].domain != NULL) {
				char *full = xasprintf("%s@%s", addrs[k].local, addrs[k].domain);
				for (size_t j = 0; j < nmine && matched == NULL; j++)
					if (addr_eq(full, mine[j]))
						matched = xstrdup(full);
				free(full);
			}
			sieve_address_free(&addrs[k]);
		}
	}
	if (matched == NULL && opt->check_recipient && can_check) {
		*why_r = "none of the recipient's addresses is in To/Cc/Bcc";
		free(rcpt);
		free(env_to);
		free(orig_to);
		sieve_message_free(&m);
		return 0;
	}
	time_t now = opt->now ? opt->now : time(NULL);
	struct buf b;
	buf_init(&b, 1024 * 1024);
	char *field;
	const char *from = act->from != NULL ? act->from : matched != NULL ? matched : env_to;
	if (from != NULL && strchr(from, '\r') == NULL && strchr(from, '\n') == NULL) {
		field = sieve_header_encode("From", from);
		buf_append_str(&b, field);
		buf_append(&b, "\r\n", 2);
		free(field);
	}
	/* To: the original's From/Sender/Reply-To field that names the envelope sender, as written */
	const char *to_field = NULL;
	static const char *oh[] = { "from", "sender", "reply-to", NULL };
	for (int k = 0; oh[k] && to_field == NULL; k++) {
		const char *v = hdr_first(&m, oh[k]);
		if (v == NULL || strchr(v, ',') != NULL || strchr(v, ';') != NULL)
			continue;
		struct sieve_address one[1];
		if (sieve_address_parse_list(v, one, 1) == 1) {
			if (one[0].domain != NULL) {
				char *full = xasprintf("%s@%s", one[0].local, one[0].domain);
				if (addr_eq(full, rcpt))
					to_field = v;
				free(full);
			}
			sieve_address_free(&one[0]);
		}
	}
	if (to_field != NULL && strchr(to_field, '\r') == NULL && strchr(to_field, '\n') == NULL)
		buf_printf(&b, "To: %s\r\n", to_field);
	else
		buf_printf(&b, "To: <%s>\r\n", rcpt);
	char *subject;
	if (act->subject != NULL) {
		subject = xstrdup(act->subject);
	} else {
		const char *os = hdr_first_decoded(&m, "subject");
		subject = os != NULL && *os != '\0' ? xasprintf("Auto: %s", os) : xstrdup("Automated reply");
	}
	for (char *p = subject; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';
	/* at most 256 characters: 255 and an ellipsis */
	size_t chars = 0, cut = 0;
	for (size_t i = 0; subject[i]; i++) {
		if (((unsigned char)subject[i] & 0xc0) != 0x80) {
			if (chars == 255)
				cut = i;
			chars++;
		}
	}
	if (chars > 256) {
		subject[cut] = '\0';
		char *t = xasprintf("%s\xe2\x80\xa6", subject);
		free(subject);
		subject = t;
	}
	field = sieve_header_encode("Subject", subject);
	buf_append_str(&b, field);
	buf_append(&b, "\r\n", 2);
	free(field);
	free(subject);
	buf_append_str(&b, "Date: ");
	rfc5322_date(now, &b);
	buf_append_str(&b, "\r\nMessage-ID: ");
	message_id(opt, now, act->handle, &b);
	buf_append(&b, "\r\n", 2);
	const char *mid = hdr_first(&m, "message-id");
	if (mid != NULL && strchr(mid, '<') != NULL) {
		const char *refs = hdr_first(&m, "references");
		buf_printf(&b, "In-Reply-To: %s\r\n", mid);
		if (refs != NULL)
			buf_printf(&b, "References: %s\r\n %s\r\n", refs, mid);
		else
			buf_printf(&b, "References: %s\r\n", mid);
	}
	buf_append_str(&b, "Auto-Submitted: auto-replied (vacation)\r\nPrecedence: bulk\r\nMIME-Version: 1.0\r\n");
	if (act->mime) {
		/* RFC 5230 5.8: the reason is a MIME entity (its own header, blank line, body) */
		append_crlf(&b, act->text ? act->text : "");
	} else {
		buf_append_str(&b, "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
		append_crlf(&b, act->text ? act->text : "");
	}
	if (b.len < 2 || b.data[b.len - 1] != '\n')
		buf_append(&b, "\r\n", 2);
	reply->mail_from = xstrdup("");
	reply->rcpt_to = rcpt;
	reply->len = b.len;
	reply->data = buf_steal(&b);
	buf_deinit(&b);
	free(matched);
	free(env_to);
	free(orig_to);
	sieve_message_free(&m);
	return 1;
}

int sieve_reject_compose(const struct sieve_action *act, const struct sieve_msg_view *mv,
			 const struct sieve_reply_options *opt, struct sieve_reply *reply, const char **why_r)
{
	memset(reply, 0, sizeof(*reply));
	*why_r = NULL;
	if (act->type != SIEVE_ACT_REJECT && act->type != SIEVE_ACT_EREJECT) {
		*why_r = "not a reject action";
		return -1;
	}
	char *rcpt = path_addr(mv->envelope_from);
	if (rcpt == NULL) {
		*why_r = "no rejection notice to the null or an invalid sender";
		return 0;
	}
	struct sieve_message m;
	sieve_message_parse(&m, mv->raw, mv->raw_len, 1000);
	time_t now = opt->now ? opt->now : time(NULL);
	const char *host = opt->hostname ? opt->hostname : "localhost";
	char boundary[64];
	snprintf(boundary, sizeof(boundary), "mailroute-%lx-reject", (long)now);
	struct buf b;
	buf_init(&b, 4 * 1024 * 1024);
	buf_printf(&b, "From: Postmaster <MAILER-DAEMON@%s>\r\nTo: <%s>\r\n", host, rcpt);
	const char *os = hdr_first_decoded(&m, "subject");
	char *subj = xasprintf("Automatically rejected mail%s%s", os ? ": " : "", os ? os : "");
	for (char *p = subj; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';
	char *field = sieve_header_encode("Subject", subj);
	buf_append_str(&b, field);
	buf_append(&b, "\r\n", 2);
	free(field);
	free(subj);
	buf_append_str(&b, "Date: ");
	rfc5322_date(now, &b);
	buf_append_str(&b, "\r\nMessage-ID: ");
	message_id(opt, now, rcpt, &b);
	buf_printf(&b, "\r\nAuto-Submitted: auto-replied (rejected)\r\nPrecedence: bulk\r\nMIME-Version: 1.0\r\n"
		       "Content-Type: multipart/report; report-type=disposition-notification;\r\n"
		       "\tboundary=\"%s\"\r\n\r\nThis is a MIME-encapsulated message\r\n\r\n--%s\r\n"
		       "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
		       "Your message to <%s> was automatically rejected:\r\n",
		   boundary, boundary, mv->envelope_to ? mv->envelope_to : "");
	append_crlf(&b, act->text ? act->text : "");
	buf_printf(&b, "\r\n--%s\r\nContent-Type: message/disposition-notification\r\n\r\n"
		       "Reporting-UA: %s; mailroute Sieve\r\nFinal-Recipient: rfc822; %s\r\n",
		   boundary, host, mv->envelope_to ? mv->envelope_to : "");
	const char *mid = hdr_first(&m, "message-id");
	if (mid != NULL)
		buf_printf(&b, "Original-Message-ID: %s\r\n", mid);
	buf_printf(&b, "Disposition: automatic-action/MDN-sent-automatically; deleted\r\n\r\n--%s\r\n"
		       "Content-Type: text/rfc822-headers\r\n\r\n", boundary);
	size_t hl = m.body_offset <= mv->raw_len ? m.body_offset : 0;
	if (mv->raw != NULL)
		buf_append(&b, mv->raw, hl);
	buf_printf(&b, "\r\n--%s--\r\n", boundary);
	reply->mail_from = xstrdup("");
	reply->rcpt_to = rcpt;
	reply->len = b.len;
	reply->data = buf_steal(&b);
	buf_deinit(&b);
	sieve_message_free(&m);
	return 1;
}

/* ---- enotify mailto (RFC 5436) ---- */

static char *pct_decode_dup(const char *s, size_t len)
{
	struct buf b;
	buf_init(&b, len + 1);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%' && i + 2 < len && isxdigit((unsigned char)s[i + 1]) && isxdigit((unsigned char)s[i + 2])) {
			char hex[3] = { s[i + 1], s[i + 2], 0 };
			buf_append_c(&b, (char)strtol(hex, NULL, 16));
			i += 2;
		} else {
			buf_append_c(&b, s[i]);
		}
	}
	char *r = buf_steal(&b);
	buf_deinit(&b);
	return r;
}

/* "local@domain" of the first address of an address list ("Name <a@b>"), or "" */
static char *first_addr(const char *s)
{
	struct sieve_address one[1];
	char *r = NULL;
	if (sieve_address_parse_list(s, one, 1) == 1) {
		if (one[0].domain != NULL && *one[0].local != '\0')
			r = xasprintf("%s@%s", one[0].local, one[0].domain);
		sieve_address_free(&one[0]);
	}
	return r != NULL ? r : xstrdup("");
}

struct rcpt_list {
	char *addr[64];
	size_t n;
};

/* Add the comma separated addresses of s to l unless already in seen; 0 when one is invalid. */
static int add_rcpts(const char *s, struct rcpt_list *l, struct rcpt_list *seen)
{
	struct sieve_address addrs[64];
	size_t na = sieve_address_parse_list(s, addrs, 64);
	int ok = 1;
	for (size_t i = 0; i < na; i++) {
		if (addrs[i].domain == NULL || *addrs[i].local == '\0') {
			ok = 0;
		} else {
			char *full = xasprintf("%s@%s", addrs[i].local, addrs[i].domain);
			bool dup = false;
			for (size_t k = 0; k < seen->n; k++)
				if (strcasecmp(seen->addr[k], full) == 0)
					dup = true;
			if (!dup && l->n < 64 && seen->n < 64) {
				l->addr[l->n++] = full;
				seen->addr[seen->n++] = xstrdup(full);
			} else {
				free(full);
			}
		}
		sieve_address_free(&addrs[i]);
	}
	return ok;
}

static void rcpts_free(struct rcpt_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->addr[i]);
	l->n = 0;
}

static void append_list(struct buf *b, const char *name, const struct rcpt_list *l)
{
	if (l->n == 0)
		return;
	buf_printf(b, "%s: ", name);
	for (size_t i = 0; i < l->n; i++)
		buf_printf(b, "%s<%s>", i ? ",\r\n " : "", l->addr[i]);
	buf_append(b, "\r\n", 2);
}

int sieve_notify_compose(const struct sieve_action *act, const struct sieve_msg_view *mv,
			 const struct sieve_reply_options *opt, struct sieve_reply **replies_r, size_t *count_r,
			 const char **why_r)
{
	*replies_r = NULL;
	*count_r = 0;
	*why_r = NULL;
	if (act->type != SIEVE_ACT_NOTIFY || act->target == NULL || strncasecmp(act->target, "mailto:", 7) != 0) {
		*why_r = "not a mailto notify action";
		return -1;
	}
	struct sieve_message m;
	sieve_message_parse(&m, mv->raw, mv->raw_len, 1000);
	const char *as = hdr_first(&m, "auto-submitted");
	if (as != NULL && !(strncasecmp(as, "no", 2) == 0 && (as[2] == '\0' || strchr(" \t;(", as[2]) != NULL))) {
		*why_r = "no notification about an auto-submitted message (RFC 5436 2.7)";
		sieve_message_free(&m);
		return 0;
	}
	const char *uri = act->target + 7;
	size_t pl = strcspn(uri, "?");
	struct rcpt_list to = { .n = 0 }, cc = { .n = 0 }, bcc = { .n = 0 }, seen = { .n = 0 };
	char *path = pct_decode_dup(uri, pl);
	add_rcpts(path, &to, &seen);
	free(path);
	char *subject = NULL, *body = NULL;
	struct buf extra;
	buf_init(&extra, 65536);
	const char *q = uri[pl] == '?' ? uri + pl + 1 : NULL;
	while (q != NULL && *q) {
		size_t fl = strcspn(q, "&");
		const char *eq = memchr(q, '=', fl);
		if (eq != NULL) {
			char *hn = pct_decode_dup(q, (size_t)(eq - q));
			char *hv = pct_decode_dup(eq + 1, fl - (size_t)(eq + 1 - q));
			for (char *c = hv; *c; c++)
				if (*c == '\r' || *c == '\n')
					*c = ' ';
			if (strcasecmp(hn, "to") == 0)
				add_rcpts(hv, &to, &seen);
			else if (strcasecmp(hn, "cc") == 0)
				add_rcpts(hv, &cc, &seen);
			else if (strcasecmp(hn, "bcc") == 0)
				add_rcpts(hv, &bcc, &seen);
			else if (strcasecmp(hn, "subject") == 0 && subject == NULL)
				subject = xstrdup(hv);
			else if (strcasecmp(hn, "body") == 0 && body == NULL)
				body = xstrdup(hv);
			else if (strcasecmp(hn, "keywords") == 0 || strcasecmp(hn, "comments") == 0 ||
				 strcasecmp(hn, "in-reply-to") == 0 || strcasecmp(hn, "references") == 0) {
				/* RFC 5436 2.3: the safe ones; from, sender, received, auto-submitted... are ignored */
				char *f = sieve_header_encode(hn, hv);
				buf_append_str(&extra, f);
				buf_append(&extra, "\r\n", 2);
				free(f);
			}
			free(hn);
			free(hv);
		}
		q += fl;
		if (*q == '&')
			q++;
	}
	size_t total = to.n + cc.n + bcc.n;
	if (total == 0) {
		*why_r = "the mailto URI has no valid recipient";
		rcpts_free(&to);
		rcpts_free(&cc);
		rcpts_free(&bcc);
		rcpts_free(&seen);
		free(subject);
		free(body);
		buf_deinit(&extra);
		sieve_message_free(&m);
		return 0;
	}
	const char *host = opt->hostname ? opt->hostname : "localhost";
	char *mail_from;
	char *null_check = path_addr(mv->envelope_from);
	if (null_check == NULL && mv->envelope_from != NULL)
		mail_from = xstrdup("");
	else if (act->from != NULL)
		mail_from = first_addr(act->from);
	else
		mail_from = xasprintf("postmaster@%s", host);
	free(null_check);
	time_t now = opt->now ? opt->now : time(NULL);
	struct buf b;
	buf_init(&b, 1024 * 1024);
	char *field;
	if (act->from != NULL && strchr(act->from, '\n') == NULL && strchr(act->from, '\r') == NULL) {
		field = sieve_header_encode("From", act->from);
		buf_append_str(&b, field);
		free(field);
		buf_append(&b, "\r\n", 2);
	} else {
		buf_printf(&b, "From: Postmaster <postmaster@%s>\r\n", host);
	}
	append_list(&b, "To", &to);
	append_list(&b, "Cc", &cc);
	const char *subj = subject != NULL ? subject : act->text != NULL ? act->text : "[SIEVE] New mail notification";
	char *subj_clean = xstrdup(subj);
	for (char *c = subj_clean; *c; c++)
		if (*c == '\r' || *c == '\n')
			*c = ' ';
	field = sieve_header_encode("Subject", subj_clean);
	buf_append_str(&b, field);
	buf_append(&b, "\r\n", 2);
	free(field);
	free(subj_clean);
	buf_append_str(&b, "Date: ");
	rfc5322_date(now, &b);
	buf_append_str(&b, "\r\nMessage-ID: ");
	message_id(opt, now, act->target, &b);
	buf_append(&b, "\r\n", 2);
	buf_append(&b, extra.data, extra.len);
	const char *imp = act->importance != NULL ? act->importance : "2";
	buf_printf(&b, "Auto-Submitted: auto-notified; owner-email=\"%s\"\r\nX-Sieve: mailroute Sieve\r\n"
		       "X-Priority: %s\r\nImportance: %s\r\nMIME-Version: 1.0\r\n"
		       "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
		   mv->envelope_to ? mv->envelope_to : "",
		   imp[0] == '1' ? "1 (Highest)" : imp[0] == '3' ? "5 (Lowest)" : "3 (Normal)",
		   imp[0] == '1' ? "high" : imp[0] == '3' ? "low" : "normal");
	if (body != NULL) {
		append_crlf(&b, body);
	} else if (act->text != NULL) {
		append_crlf(&b, act->text);
	} else {
		const char *of = hdr_first_decoded(&m, "from"), *os = hdr_first_decoded(&m, "subject");
		buf_printf(&b, "Notification of new message.\r\nFrom: %s\r\nSubject: %s", of ? of : "", os ? os : "");
	}
	buf_append(&b, "\r\n", 2);
	struct sieve_reply *reps = xcalloc(total, sizeof(*reps));
	size_t k = 0;
	const struct rcpt_list *lists[3] = { &to, &cc, &bcc };
	for (int li = 0; li < 3; li++) {
		for (size_t i = 0; i < lists[li]->n; i++, k++) {
			reps[k].mail_from = xstrdup(mail_from);
			reps[k].rcpt_to = xstrdup(lists[li]->addr[i]);
			reps[k].data = xmemdup(b.data, b.len);
			reps[k].len = b.len;
		}
	}
	*replies_r = reps;
	*count_r = total;
	buf_deinit(&b);
	buf_deinit(&extra);
	free(mail_from);
	free(subject);
	free(body);
	rcpts_free(&to);
	rcpts_free(&cc);
	rcpts_free(&bcc);
	rcpts_free(&seen);
	sieve_message_free(&m);
	return 1;
}
