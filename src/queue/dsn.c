/* dsn: delivery status notifications (dsn.h). */
#include "queue/dsn.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/xalloc.h"

#define FOLD_AT 78
#define LINE_HARD 900 /* a word longer than this is split: lines stay far below 998 */
#define READ_CHUNK 65536

const char *dsn_action_name(enum dsn_action action)
{
	switch (action) {
	case DSN_FAILED: return "failed";
	case DSN_DELAYED: return "delayed";
	case DSN_DELIVERED: return "delivered";
	case DSN_RELAYED: return "relayed";
	case DSN_EXPANDED: return "expanded";
	}
	return NULL;
}

void dsn_date(time_t t, char *out, size_t size)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL) {
		t = 0;
		gmtime_r(&t, &tm);
	}
	snprintf(out, size, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
		 months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * A caller's string made safe for a generated header or part: controls become
 * spaces, 8-bit bytes '?', runs of spaces collapse, both ends trimmed, capped.
 */
static char *clean(const char *s)
{
	size_t n = strnlen(s, DSN_MAX_VALUE), o = 0;
	char *out = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char ch = c < 0x20 || c == 0x7f ? ' ' : c >= 0x80 ? '?' : (char)c;
		if (ch == ' ' && (o == 0 || out[o - 1] == ' '))
			continue;
		out[o++] = ch;
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
	return out;
}

/* "type;value": prefix default_type when there is no type. Cleaned, allocated. */
static char *typed(const char *s, const char *default_type)
{
	char *c = clean(s);
	const char *semi = strchr(c, ';');
	bool has_type = semi != NULL && semi > c;
	for (const char *p = c; has_type && p < semi; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-'))
			has_type = false;
	}
	if (has_type)
		return c;
	char *t = xasprintf("%s;%s", default_type, c);
	free(c);
	return t;
}

/*
 * Append "name: value" folded at spaces near FOLD_AT columns (continuation
 * lines start with a space), ended by CRLF. value is already clean.
 */
static int append_field(struct buf *b, const char *name, const char *value)
{
	size_t col = strlen(name) + 2;
	if (buf_printf(b, "%s: ", name) < 0)
		return -1;
	const char *p = value;
	bool first = true;
	while (*p != '\0') {
		const char *sp = strchr(p, ' ');
		size_t wlen = sp != NULL ? (size_t)(sp - p) : strlen(p);
		while (wlen > LINE_HARD) {
			if (buf_append_str(b, first ? "" : "\r\n ") < 0 || buf_append(b, p, LINE_HARD) < 0)
				return -1;
			p += LINE_HARD;
			wlen -= LINE_HARD;
			col = 1 + LINE_HARD;
			first = false;
		}
		if (!first) {
			if (col + 1 + wlen > FOLD_AT) {
				if (buf_append_str(b, "\r\n ") < 0)
					return -1;
				col = 1;
			} else {
				if (buf_append_c(b, ' ') < 0)
					return -1;
				col++;
			}
		}
		if (buf_append(b, p, wlen) < 0)
			return -1;
		col += wlen;
		first = false;
		p += wlen;
		while (*p == ' ')
			p++;
	}
	return buf_append_str(b, "\r\n");
}

/* Plain text wrapped at FOLD_AT with an indent on every line. */
static int append_wrapped(struct buf *b, const char *indent, const char *text)
{
	size_t ilen = strlen(indent), col = 0;
	const char *p = text;
	while (*p != '\0') {
		const char *sp = strchr(p, ' ');
		size_t wlen = sp != NULL ? (size_t)(sp - p) : strlen(p);
		if (wlen > LINE_HARD)
			wlen = LINE_HARD;
		if (col > 0 && col + 1 + wlen > FOLD_AT) {
			if (buf_append_str(b, "\r\n") < 0)
				return -1;
			col = 0;
		}
		if (col == 0) {
			if (buf_append_str(b, indent) < 0)
				return -1;
			col = ilen;
		} else {
			if (buf_append_c(b, ' ') < 0)
				return -1;
			col++;
		}
		if (buf_append(b, p, wlen) < 0)
			return -1;
		col += wlen;
		p += wlen;
		while (*p == ' ')
			p++;
	}
	return col > 0 ? buf_append_str(b, "\r\n") : 0;
}

static bool status_valid(const char *s)
{
	if ((s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	s += 2;
	for (int part = 0; part < 2; part++) {
		size_t n = 0;
		while (s[n] >= '0' && s[n] <= '9')
			n++;
		if (n < 1 || n > 3)
			return false;
		s += n;
		if (part == 0 && *s++ != '.')
			return false;
	}
	return *s == '\0';
}

static const char *status_default(enum dsn_action action)
{
	return action == DSN_FAILED ? "5.0.0" : action == DSN_DELAYED ? "4.0.0" : "2.0.0";
}

static bool is_atext(unsigned char c)
{
	if (c >= 0x80)
		return true; /* RFC 6532: UTF-8 in atext */
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL && c != '\0';
}

static bool dot_atom(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (!is_atext((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

/* The sender as an RFC 5322 addr-spec: the local part quoted when it is not a dot-atom. */
static int sender_addr(const char *sender, struct buf *out, char **error_r)
{
	size_t n = strlen(sender);
	if (n > 2 && sender[0] == '<' && sender[n - 1] == '>') {
		sender++;
		n -= 2;
	}
	if (n > DSN_MAX_VALUE) {
		*error_r = xstrdup("sender too long");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)sender[i];
		if (c < 0x20 || c == 0x7f) {
			*error_r = xstrdup("sender has control characters");
			return -1;
		}
	}
	const char *at = NULL;
	for (size_t i = n; i > 0; i--) {
		if (sender[i - 1] == '@') {
			at = sender + i - 1;
			break;
		}
	}
	size_t local_len = at != NULL ? (size_t)(at - sender) : n;
	if (dot_atom(sender, local_len)) {
		buf_append(out, sender, local_len);
	} else {
		buf_append_c(out, '"');
		for (size_t i = 0; i < local_len; i++) {
			if (sender[i] == '"' || sender[i] == '\\')
				buf_append_c(out, '\\');
			buf_append_c(out, sender[i]);
		}
		buf_append_c(out, '"');
	}
	if (at != NULL) {
		size_t dlen = n - local_len;
		for (size_t i = 1; i < dlen; i++) {
			unsigned char c = (unsigned char)at[i];
			if (c == ' ' || c == '<' || c == '>' || c == '"' || c == ',' || c == ';' || c == '\\' ||
			    c == '(' || c == ')') {
				*error_r = xstrdup("sender has a bad domain");
				return -1;
			}
		}
		buf_append(out, at, dlen);
	}
	return 0;
}

/* Read [0, limit) of fd, or less at end of file. NULL and *error_r on a read error. */
static char *read_original(int fd, size_t limit, size_t *len_r, char **error_r)
{
	char *data = xmalloc(limit + 1);
	size_t len = 0;
	while (len < limit) {
		ssize_t r = pread(fd, data + len, limit - len, (off_t)len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*error_r = xasprintf("cannot read the original message: %s", strerror(errno));
			free(data);
			return NULL;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	data[len] = '\0';
	*len_r = len;
	return data;
}

/* Offset of the empty line ending the header block in data, or SIZE_MAX if not seen yet. */
static size_t header_end(const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (i > 0 && data[i - 1] != '\n')
			continue;
		if (data[i] == '\n' || (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n'))
			return i;
	}
	return SIZE_MAX;
}

/*
 * The header block of the original: up to (excluding) the empty line, read in
 * chunks until found, capped at DSN_MAX_HEADERS (cut at a line end).
 */
static char *read_headers(int fd, size_t *len_r, char **error_r)
{
	struct buf b;
	buf_init(&b, DSN_MAX_HEADERS + READ_CHUNK);
	char *chunk = xmalloc(READ_CHUNK);
	size_t end = SIZE_MAX;
	int ret = 0;
	while (end == SIZE_MAX && b.len < DSN_MAX_HEADERS) {
		ssize_t r = pread(fd, chunk, READ_CHUNK, (off_t)b.len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*error_r = xasprintf("cannot read the original message: %s", strerror(errno));
			ret = -1;
			break;
		}
		if (r == 0)
			break;
		buf_append(&b, chunk, (size_t)r);
		end = header_end(b.data, b.len);
	}
	free(chunk);
	if (ret < 0) {
		buf_deinit(&b);
		return NULL;
	}
	if (end == SIZE_MAX)
		end = b.len;
	if (end > DSN_MAX_HEADERS) {
		end = DSN_MAX_HEADERS;
		while (end > 0 && b.data[end - 1] != '\n')
			end--;
	}
	b.len = end;
	b.data[end] = '\0';
	*len_r = end;
	char *data = buf_steal(&b);
	buf_deinit(&b);
	return data;
}

/* Copy with every line end made CRLF; reports whether any byte is >= 0x80. */
static int append_crlf(struct buf *b, const char *data, size_t len, bool *has_8bit_r)
{
	size_t start = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)data[i];
		if (c >= 0x80)
			*has_8bit_r = true;
		if (c == '\r' && i + 1 < len && data[i + 1] == '\n') {
			i++;
			continue;
		}
		if (c == '\r' || c == '\n') {
			if (buf_append(b, data + start, i - start) < 0 || buf_append_str(b, "\r\n") < 0)
				return -1;
			start = i + 1;
		}
	}
	return buf_append(b, data + start, len - start);
}

static bool contains(const struct buf *b, const char *needle)
{
	return memmem(b->data, b->len, needle, strlen(needle)) != NULL;
}

static void random_hex(char *out, size_t size)
{
	uint64_t r = 0;
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		static unsigned counter;
		r = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ ((uint64_t)++counter << 16);
	}
	snprintf(out, size, "%016llx", (unsigned long long)r);
}

static const char *subject_for(const struct dsn_request *req, enum dsn_action *worst_r)
{
	bool failed = false, delayed = false;
	for (size_t i = 0; i < req->rcpt_count; i++) {
		failed |= req->rcpts[i].action == DSN_FAILED;
		delayed |= req->rcpts[i].action == DSN_DELAYED;
	}
	*worst_r = failed ? DSN_FAILED : delayed ? DSN_DELAYED : DSN_DELIVERED;
	return failed ? "Undelivered Mail Returned to Sender"
	       : delayed ? "Delayed Mail (still being retried)" : "Successful Mail Delivery Report";
}

/* The recipient address without its "type;" for the human text. */
static const char *addr_of(const char *typed_value)
{
	const char *semi = strchr(typed_value, ';');
	const char *a = semi != NULL ? semi + 1 : typed_value;
	while (*a == ' ')
		a++;
	return a;
}

struct dsn_parts {
	struct buf text, status, original;
	bool original_8bit, original_full, original_truncated_by_size;
};

static int build_status(const struct dsn_request *req, struct buf *b, char **error_r)
{
	char date[64];
	char *v = clean(req->reporting_mta);
	char *mta = xasprintf("dns; %s", v);
	free(v);
	int r = append_field(b, "Reporting-MTA", mta);
	free(mta);
	if (r == 0 && req->queue_id != NULL) {
		v = clean(req->queue_id);
		r = append_field(b, "X-Mailroute-Queue-ID", v);
		free(v);
	}
	if (r == 0 && req->envid != NULL) {
		v = clean(req->envid);
		r = append_field(b, "Original-Envelope-Id", v);
		free(v);
	}
	if (r == 0 && req->arrival != 0) {
		dsn_date(req->arrival, date, sizeof(date));
		r = append_field(b, "Arrival-Date", date);
	}
	for (size_t i = 0; r == 0 && i < req->rcpt_count; i++) {
		const struct dsn_rcpt *rc = &req->rcpts[i];
		r = buf_append_str(b, "\r\n");
		if (r == 0 && rc->orcpt != NULL) {
			v = typed(rc->orcpt, "rfc822");
			r = append_field(b, "Original-Recipient", v);
			free(v);
		}
		if (r == 0) {
			v = typed(rc->final_rcpt, "rfc822");
			r = append_field(b, "Final-Recipient", v);
			free(v);
		}
		if (r == 0)
			r = append_field(b, "Action", dsn_action_name(rc->action));
		if (r == 0)
			r = append_field(b, "Status", rc->status != NULL ? rc->status : status_default(rc->action));
		if (r == 0 && rc->remote_mta != NULL) {
			v = typed(rc->remote_mta, "dns");
			r = append_field(b, "Remote-MTA", v);
			free(v);
		}
		if (r == 0 && rc->diagnostic != NULL) {
			v = typed(rc->diagnostic, "smtp");
			r = append_field(b, "Diagnostic-Code", v);
			free(v);
		}
		if (r == 0 && rc->last_attempt != 0) {
			dsn_date(rc->last_attempt, date, sizeof(date));
			r = append_field(b, "Last-Attempt-Date", date);
		}
		if (r == 0 && rc->action == DSN_DELAYED && rc->will_retry_until != 0) {
			dsn_date(rc->will_retry_until, date, sizeof(date));
			r = append_field(b, "Will-Retry-Until", date);
		}
	}
	if (r < 0)
		*error_r = xstrdup("delivery status too large");
	return r;
}

static int build_text(const struct dsn_request *req, enum dsn_action worst, const struct dsn_parts *p,
		      struct buf *b, char **error_r)
{
	char *host = clean(req->reporting_mta);
	int r = buf_printf(b, "This is the mail system at host %s.\r\n\r\n", host);
	free(host);
	const char *intro =
		worst == DSN_FAILED
			? "Your message could not be delivered to one or more recipients. The details are below."
		: worst == DSN_DELAYED
			? "Your message could not be delivered yet to one or more recipients. Delivery will be "
			  "retried; you do not need to send it again."
			: "Your message was successfully delivered to the recipients listed below (as far as "
			  "this system can tell).";
	if (r == 0)
		r = append_wrapped(b, "", intro);
	if (r == 0 && req->original_fd >= 0) {
		const char *att = p->original_full ? "A copy of your message is attached."
				  : p->original_truncated_by_size
					  ? "The headers of your message are attached (the whole message was too large to return)."
					  : "The headers of your message are attached.";
		r = append_wrapped(b, "", att);
	}
	char date[64];
	for (size_t i = 0; r == 0 && i < req->rcpt_count; i++) {
		const struct dsn_rcpt *rc = &req->rcpts[i];
		char *rcpt = clean(rc->final_rcpt);
		char *line = xasprintf("<%s>: %s (%s)", addr_of(rcpt), dsn_action_name(rc->action),
				       rc->status != NULL ? rc->status : status_default(rc->action));
		r = buf_append_str(b, "\r\n");
		if (r == 0)
			r = append_wrapped(b, "", line);
		free(line);
		free(rcpt);
		if (r == 0 && rc->remote_mta != NULL) {
			char *v = clean(rc->remote_mta);
			line = xasprintf("remote server: %s", addr_of(v));
			r = append_wrapped(b, "    ", line);
			free(line);
			free(v);
		}
		if (r == 0 && rc->diagnostic != NULL) {
			char *v = clean(rc->diagnostic);
			r = append_wrapped(b, "    ", addr_of(v));
			free(v);
		}
		if (r == 0 && rc->action == DSN_DELAYED && rc->will_retry_until != 0) {
			dsn_date(rc->will_retry_until, date, sizeof(date));
			line = xasprintf("will be retried until %s", date);
			r = append_wrapped(b, "    ", line);
			free(line);
		}
	}
	if (r < 0)
		*error_r = xstrdup("explanation too large");
	return r;
}

static int build_original(const struct dsn_request *req, struct dsn_parts *p, char **error_r)
{
	struct stat st;
	if (fstat(req->original_fd, &st) < 0) {
		*error_r = xasprintf("cannot stat the original message: %s", strerror(errno));
		return -1;
	}
	size_t size = st.st_size > 0 ? (size_t)st.st_size : 0;
	bool fits = req->max_full == 0 || size <= req->max_full;
	p->original_full = req->return_full && fits;
	p->original_truncated_by_size = req->return_full && !fits;
	size_t len;
	char *data = p->original_full ? read_original(req->original_fd, size, &len, error_r)
				      : read_headers(req->original_fd, &len, error_r);
	if (data == NULL)
		return -1;
	/* Bare CR/LF become CRLF: at most twice as long, plus the final line end. */
	buf_init(&p->original, 2 * len + 16);
	int r = append_crlf(&p->original, data, len, &p->original_8bit);
	free(data);
	if (r < 0) {
		*error_r = xstrdup("original message too large");
		return -1;
	}
	return 0;
}

static int assemble(const struct dsn_request *req, const struct dsn_parts *p, const char *subject,
		    struct buf *m, char **error_r)
{
	char date[64], rnd[32], boundary[160];
	char *qid = clean(req->queue_id != NULL ? req->queue_id : "");
	for (char *c = qid; *c != '\0'; c++) {
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
			*c = '-';
	}
	if (strlen(qid) > 40)
		qid[40] = '\0';
	/* Derived, not random: the same request gives the same message; changed until unique. */
	for (unsigned n = 0;; n++) {
		snprintf(boundary, sizeof(boundary), "=_mr_%s_%lld_%u", qid, (long long)req->now, n);
		if (!contains(&p->text, boundary) && !contains(&p->status, boundary) &&
		    (req->original_fd < 0 || !contains(&p->original, boundary)))
			break;
	}
	struct buf to;
	buf_init(&to, 2 * DSN_MAX_VALUE + 8);
	int r = sender_addr(req->sender, &to, error_r);
	char *host = clean(req->reporting_mta);
	random_hex(rnd, sizeof(rnd));
	dsn_date(req->now, date, sizeof(date));
	bool eight = req->original_fd >= 0 && p->original_8bit;
	if (r == 0) {
		r = buf_printf(m, "From: \"Mail Delivery System\" <MAILER-DAEMON@%s>\r\nTo: <%s>\r\n", host, to.data);
		if (r == 0)
			r = append_field(m, "Subject", subject);
		if (r == 0)
			r = buf_printf(m,
				       "Date: %s\r\nMessage-ID: <%lld.%s.%s@%s>\r\nAuto-Submitted: auto-replied\r\n"
				       "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n"
				       "\tboundary=\"%s\"\r\nContent-Transfer-Encoding: %s\r\n\r\n"
				       "This is a MIME-encapsulated message.\r\n\r\n",
				       date, (long long)req->now, qid[0] != '\0' ? qid : "dsn", rnd, host, boundary,
				       eight ? "8bit" : "7bit");
		if (r == 0)
			r = buf_printf(m, "--%s\r\nContent-Description: Notification\r\n"
					  "Content-Type: text/plain; charset=us-ascii\r\n\r\n", boundary);
		if (r == 0)
			r = buf_append(m, p->text.data, p->text.len);
		if (r == 0)
			r = buf_printf(m, "\r\n--%s\r\nContent-Description: Delivery report\r\n"
					  "Content-Type: message/delivery-status\r\n\r\n", boundary);
		if (r == 0)
			r = buf_append(m, p->status.data, p->status.len);
		if (r == 0 && req->original_fd >= 0) {
			r = buf_printf(m, "\r\n--%s\r\nContent-Description: %s\r\nContent-Type: %s\r\n"
					  "Content-Transfer-Encoding: %s\r\n\r\n", boundary,
				       p->original_full ? "Undelivered Message" : "Undelivered Message Headers",
				       p->original_full ? "message/rfc822" : "text/rfc822-headers",
				       p->original_8bit ? "8bit" : "7bit");
			if (r == 0)
				r = buf_append(m, p->original.data, p->original.len);
		}
		if (r == 0)
			r = buf_printf(m, "\r\n--%s--\r\n", boundary);
		if (r < 0)
			*error_r = xstrdup("DSN too large");
	}
	free(host);
	free(qid);
	buf_deinit(&to);
	return r;
}

/* Our own hostname (config): letters, digits, '-', '_', '.', 1-253 bytes. */
static bool hostname_valid(const char *h)
{
	if (h == NULL || h[0] == '\0' || strlen(h) > 253)
		return false;
	for (const char *p = h; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_' || *p == '.'))
			return false;
	}
	return true;
}

int dsn_build(const struct dsn_request *req, char **msg_r, size_t *len_r, char **error_r)
{
	*error_r = NULL;
	*msg_r = NULL;
	*len_r = 0;
	if (req->sender == NULL || req->sender[0] == '\0' || strcmp(req->sender, "<>") == 0) {
		*error_r = xstrdup("null sender");
		return -1;
	}
	if (!hostname_valid(req->reporting_mta)) {
		*error_r = xstrdup("bad reporting MTA");
		return -1;
	}
	if (req->rcpt_count == 0 || req->rcpt_count > DSN_MAX_RCPTS || req->rcpts == NULL) {
		*error_r = xasprintf("a DSN needs 1 to %d recipients", DSN_MAX_RCPTS);
		return -1;
	}
	for (size_t i = 0; i < req->rcpt_count; i++) {
		const struct dsn_rcpt *rc = &req->rcpts[i];
		if (dsn_action_name(rc->action) == NULL) {
			*error_r = xasprintf("recipient %zu: bad action", i);
			return -1;
		}
		if (rc->final_rcpt == NULL || rc->final_rcpt[0] == '\0') {
			*error_r = xasprintf("recipient %zu: no final recipient", i);
			return -1;
		}
		if (rc->status != NULL && !status_valid(rc->status)) {
			*error_r = xasprintf("recipient %zu: bad status '%.20s'", i, rc->status);
			return -1;
		}
	}

	struct dsn_parts p;
	memset(&p, 0, sizeof(p));
	/* Every caller string is capped at DSN_MAX_VALUE: a recipient's fields fit in 16 KiB. */
	buf_init(&p.text, 4096 + req->rcpt_count * 16384);
	buf_init(&p.status, 4096 + req->rcpt_count * 16384);
	buf_init(&p.original, 16);
	enum dsn_action worst;
	const char *subject = subject_for(req, &worst);
	struct buf m;
	int r = 0;
	if (req->original_fd >= 0) {
		buf_deinit(&p.original);
		r = build_original(req, &p, error_r);
		if (r < 0)
			buf_init(&p.original, 16);
	}
	if (r == 0)
		r = build_text(req, worst, &p, &p.text, error_r);
	if (r == 0)
		r = build_status(req, &p.status, error_r);
	buf_init(&m, p.text.len + p.status.len + p.original.len + 4096 + 2 * DSN_MAX_VALUE);
	if (r == 0)
		r = assemble(req, &p, subject, &m, error_r);
	buf_deinit(&p.text);
	buf_deinit(&p.status);
	buf_deinit(&p.original);
	if (r < 0) {
		buf_deinit(&m);
		return -1;
	}
	/* Hand over the buffer itself (NUL-terminated): the message may be large. */
	*len_r = m.len;
	*msg_r = m.data;
	return 0;
}
