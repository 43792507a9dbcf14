#include "queued/queue_triggers.h"

#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "lib-sieve/sieve.h"
#include "lib-sieve/sieve_message.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "queue/queue_envelope.h"

#define MAX_JOBS 32
#define MAX_PARSE (16u << 20)       /* the webhook and auto-reply look at this much of a message */
#define MAX_RESPONSE (64u << 10)    /* webhook response body */
#define MAX_REDIRS 3L
#define TAIL_SIZE 400               /* pipe output kept for the diagnostic */

enum job_kind { JOB_WEBHOOK, JOB_PIPE, JOB_AUTOREPLY };

struct queue_triggers;

struct job {
	struct job *next;
	struct queue_triggers *t;
	enum job_kind kind;
	char id[QUEUE_ID_SIZE];
	unsigned idx, attempts;
	time_t arrival;
	/* webhook */
	const struct conf_webhook *wh;
	CURL *easy;
	struct curl_slist *hdrs;
	char *body;
	struct buf resp;
	/* pipe */
	const struct conf_pipe *pipe;
	pid_t pid;
	int pidfd, outfd;
	struct event *pid_ev, *out_ev, *timeout_ev;
	bool timed_out, reaped;
	char tail[TAIL_SIZE];
	size_t tail_len;
	/* autoreply */
	char *marker;
	/* the report, delivered from the loop */
	struct event *report_ev;
	enum queue_trigger_result result;
	char status[16];
	char *text;
};

struct queue_triggers {
	struct event_base *base;
	const struct mr_config *cfg;
	struct queue_store *store;
	queue_triggers_result_fn *fn;
	queue_triggers_inject_fn *inject;
	void *ctx;
	CURLM *multi;
	struct event *curl_timer;
	struct job *jobs;
	unsigned job_count;
};

/* ---- small helpers ---- */

static char *hex(const unsigned char *p, size_t n)
{
	char *s = xmalloc(n * 2 + 1);
	for (size_t i = 0; i < n; i++)
		snprintf(s + i * 2, 3, "%02x", p[i]);
	s[n * 2] = '\0';
	return s;
}

/* Valid UTF-8 copy (invalid bytes become U+FFFD), allocated. */
static char *utf8_clean(const char *s, size_t len)
{
	struct buf b;
	buf_init(&b, len * 3 + 1);
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
		bool ok = n > 0 && i + n <= len && c != 0 && !(c == 0xc0 || c == 0xc1 || c > 0xf4);
		for (size_t k = 1; ok && k < n; k++)
			if (((unsigned char)s[i + k] & 0xc0) != 0x80)
				ok = false;
		if (ok && n == 3) {
			unsigned cp = ((c & 0x0fu) << 12) | (((unsigned char)s[i + 1] & 0x3fu) << 6);
			if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))
				ok = false;
		}
		if (ok && n == 4) {
			unsigned cp = ((c & 0x07u) << 18) | (((unsigned char)s[i + 1] & 0x3fu) << 12);
			if (cp < 0x10000 || cp > 0x10ffff)
				ok = false;
		}
		if (ok) {
			buf_append(&b, s + i, n);
			i += n;
		} else {
			buf_append_str(&b, "\xef\xbf\xbd");
			i++;
		}
	}
	char *r = buf_steal(&b);
	buf_deinit(&b);
	return r;
}

static json_t *jstr(const char *s, size_t len)
{
	if (s == NULL)
		return json_null();
	char *c = utf8_clean(s, len);
	json_t *j = json_string(c);
	free(c);
	return j != NULL ? j : json_null();
}

static const struct sieve_hdr *find_hdr(const struct sieve_hdr *h, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!h[i].deleted && strcasecmp(h[i].name, name) == 0)
			return &h[i];
	return NULL;
}

static void rfc3339(time_t t, char *out, size_t size)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Decoded size of a base64 body (whitespace skipped); other encodings: the raw size. */
static size_t decoded_size(const char *raw, size_t len, const char *cte)
{
	if (cte == NULL || strncasecmp(cte, "base64", 6) != 0)
		return len;
	size_t n = 0, pad = 0;
	for (size_t i = 0; i < len; i++) {
		char c = raw[i];
		if (c == '=')
			pad++;
		else if (isalnum((unsigned char)c) || c == '+' || c == '/')
			n++;
	}
	(void)pad;
	return n * 3 / 4;
}

/* ---- the webhook document ---- */

char *queue_triggers_webhook_json(const struct queue_trigger_envelope *e, const char *raw, size_t len)
{
	struct sieve_message m;
	sieve_message_parse(&m, raw, len, 1000);
	sieve_message_parse_parts(&m, 100, QUEUE_TRIGGERS_MAX_TEXT * 8);
	json_t *root = json_object();
	char key[QUEUE_ID_SIZE + 16];
	snprintf(key, sizeof(key), "%s-%u", e->queue_id, e->idx);
	json_object_set_new(root, "webhook", jstr(e->webhook, strlen(e->webhook)));
	json_object_set_new(root, "queue_id", jstr(e->queue_id, strlen(e->queue_id)));
	json_object_set_new(root, "recipient_index", json_integer(e->idx));
	json_object_set_new(root, "idempotency_key", json_string(key));
	json_t *env = json_object();
	json_object_set_new(env, "sender", jstr(e->sender, strlen(e->sender)));
	json_object_set_new(env, "recipient", jstr(e->recipient, strlen(e->recipient)));
	json_object_set_new(env, "original_recipient",
	                    e->original_recipient ? jstr(e->original_recipient, strlen(e->original_recipient))
	                                          : json_null());
	char when[40];
	rfc3339(e->arrival, when, sizeof(when));
	json_object_set_new(env, "arrival", json_string(when));
	json_object_set_new(root, "envelope", env);

	static const struct { const char *field, *key; } hn[] = {
		{ "From", "from" }, { "To", "to" }, { "Cc", "cc" }, { "Subject", "subject" },
		{ "Date", "date" }, { "Message-ID", "message_id" },
	};
	json_t *hdrs = json_object();
	for (size_t i = 0; i < sizeof(hn) / sizeof(hn[0]); i++) {
		const struct sieve_hdr *h = find_hdr(m.hdrs, m.nhdrs, hn[i].field);
		const char *v = h == NULL ? NULL : h->decoded ? h->decoded : h->raw;
		json_object_set_new(hdrs, hn[i].key, v ? jstr(v, strlen(v)) : json_null());
	}
	json_object_set_new(root, "headers", hdrs);
	const struct sieve_hdr *ar = find_hdr(m.hdrs, m.nhdrs, "Authentication-Results");
	json_object_set_new(root, "authentication_results", ar ? jstr(ar->raw, strlen(ar->raw)) : json_null());

	const struct sieve_part *text = NULL, *html = NULL;
	json_t *att = json_array();
	for (size_t i = 0; i < m.nparts; i++) {
		const struct sieve_part *p = &m.parts[i];
		if (p->multipart)
			continue;
		const struct sieve_hdr *ph = p->hdrs ? p->hdrs : m.hdrs;
		size_t pn = p->hdrs ? p->nhdrs : m.nhdrs;
		const struct sieve_hdr *cd = find_hdr(ph, pn, "Content-Disposition");
		const struct sieve_hdr *ct = find_hdr(ph, pn, "Content-Type");
		const struct sieve_hdr *cte = find_hdr(ph, pn, "Content-Transfer-Encoding");
		char *fname = cd ? sieve_mime_param(cd->raw, "filename") : NULL;
		if (fname == NULL && ct != NULL)
			fname = sieve_mime_param(ct->raw, "name");
		bool attachment = fname != NULL || (cd != NULL && strncasecmp(cd->raw, "attachment", 10) == 0) ||
		                  strncmp(p->type, "text/", 5) != 0;
		if (!attachment && strcmp(p->type, "text/plain") == 0 && text == NULL && p->text != NULL)
			text = p;
		else if (!attachment && strcmp(p->type, "text/html") == 0 && html == NULL && p->text != NULL)
			html = p;
		else if (attachment) {
			json_t *a = json_object();
			if (fname != NULL) {
				struct buf d;
				buf_init(&d, 4096);
				sieve_rfc2047_decode(fname, strlen(fname), &d);
				json_object_set_new(a, "filename", d.data ? jstr(d.data, d.len) : jstr(fname, strlen(fname)));
				buf_deinit(&d);
			} else {
				json_object_set_new(a, "filename", json_null());
			}
			json_object_set_new(a, "content_type", jstr(p->type, strlen(p->type)));
			json_object_set_new(a, "size", json_integer((json_int_t)decoded_size(p->raw, p->raw_len,
			                                                                     cte ? cte->raw : NULL)));
			json_array_append_new(att, a);
		}
		free(fname);
	}
	json_t *trunc = json_object();
	const struct sieve_part *tp[2] = { text, html };
	static const char *const tk[2] = { "text", "html" };
	for (int k = 0; k < 2; k++) {
		if (tp[k] == NULL) {
			json_object_set_new(root, tk[k], json_null());
			json_object_set_new(trunc, tk[k], json_false());
			continue;
		}
		size_t n = tp[k]->text_len;
		bool cut = n > QUEUE_TRIGGERS_MAX_TEXT;
		if (cut) {
			n = QUEUE_TRIGGERS_MAX_TEXT;
			while (n > 0 && ((unsigned char)tp[k]->text[n] & 0xc0) == 0x80)
				n--; /* don't split a character */
		}
		json_object_set_new(root, tk[k], jstr(tp[k]->text, n));
		json_object_set_new(trunc, tk[k], json_boolean(cut));
	}
	json_object_set_new(root, "truncated", trunc);
	json_object_set_new(root, "attachments", att);
	char *out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(root);
	sieve_message_free(&m);
	return out != NULL ? out : xstrdup("{}");
}

char *queue_triggers_signature(const char *secret, const char *timestamp, const char *body, size_t len)
{
	size_t tl = strlen(timestamp);
	unsigned char *data = xmalloc(tl + 1 + len + 1);
	memcpy(data, timestamp, tl);
	data[tl] = '.';
	memcpy(data + tl + 1, body, len);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mlen = 0;
	HMAC(EVP_sha256(), secret, (int)strlen(secret), data, tl + 1 + len, mac, &mlen);
	free(data);
	char *h = hex(mac, mlen);
	char *s = xasprintf("sha256=%s", h);
	free(h);
	return s;
}

/* ---- pipe exit codes ---- */

enum queue_trigger_result queue_triggers_exit_result(int wstatus, bool timed_out, const char **status_r)
{
	if (timed_out || WIFSIGNALED(wstatus) || (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == EX_TEMPFAIL)) {
		*status_r = "4.3.0";
		return QUEUE_TRIGGER_DEFERRED;
	}
	if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
		*status_r = "2.0.0";
		return QUEUE_TRIGGER_DONE;
	}
	if (!WIFEXITED(wstatus)) {
		*status_r = "4.3.0";
		return QUEUE_TRIGGER_DEFERRED;
	}
	*status_r = "5.3.0";
	return QUEUE_TRIGGER_FAILED;
}

/* ---- auto-reply ---- */

int queue_triggers_autoreply_allowed(const char *sender, const char *from, const char *raw, size_t len,
                                     const char **why_r)
{
	if (sender == NULL || sender[0] == '\0') {
		*why_r = "null sender";
		return 0;
	}
	if (from != NULL && strcasestr(from, sender) != NULL) {
		*why_r = "the sender is the reply's own address";
		return 0;
	}
	struct sieve_msg_view mv = { .envelope_from = sender, .raw = raw, .raw_len = len };
	if (!sieve_vacation_allowed(&mv)) {
		*why_r = "RFC 3834: list, bulk, automatic or daemon message";
		return 0;
	}
	return 1;
}

static void append_clean_line(struct buf *b, const char *s)
{
	for (; *s; s++)
		if (*s != '\r' && *s != '\n')
			buf_append_c(b, *s);
}

char *queue_triggers_autoreply_build(const struct conf_autoreply *ar, const char *sender, const char *hostname,
                                     const char *raw, size_t len, time_t now)
{
	struct sieve_message m;
	sieve_message_parse(&m, raw, len, 1000);
	struct buf b;
	buf_init(&b, (1u << 20) + strlen(ar->text) * 8);
	buf_append_str(&b, "From: ");
	append_clean_line(&b, ar->from);
	buf_append_str(&b, "\r\nTo: <");
	append_clean_line(&b, sender);
	buf_append_str(&b, ">\r\n");
	const struct sieve_hdr *subj = find_hdr(m.hdrs, m.nhdrs, "Subject");
	char *subject = ar->subject ? xstrdup(ar->subject)
	                            : xasprintf("Auto: %s", subj && subj->decoded ? subj->decoded : "");
	char *sh = sieve_header_encode("Subject", subject);
	buf_append_str(&b, sh);
	buf_append_str(&b, "\r\n");
	free(sh);
	free(subject);
	char date[64];
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	unsigned char rnd[8];
	int ufd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (ufd < 0 || read(ufd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd))
		memset(rnd, 0, sizeof(rnd));
	if (ufd >= 0)
		close(ufd);
	char *r = hex(rnd, sizeof(rnd));
	buf_printf(&b, "Date: %s\r\nMessage-ID: <%lld.%s.autoreply@%s>\r\n", date, (long long)now, r, hostname);
	free(r);
	buf_append_str(&b, "Auto-Submitted: auto-replied\r\n");
	const struct sieve_hdr *mid = find_hdr(m.hdrs, m.nhdrs, "Message-ID");
	const struct sieve_hdr *refs = find_hdr(m.hdrs, m.nhdrs, "References");
	if (mid != NULL && mid->raw[0] != '\0' && strlen(mid->raw) < 1000) {
		buf_append_str(&b, "In-Reply-To: ");
		append_clean_line(&b, mid->raw);
		buf_append_str(&b, "\r\nReferences: ");
		if (refs != NULL && strlen(refs->raw) < 4000) {
			append_clean_line(&b, refs->raw);
			buf_append_str(&b, "\r\n ");
		}
		append_clean_line(&b, mid->raw);
		buf_append_str(&b, "\r\n");
	}
	buf_append_str(&b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
	                   "Content-Transfer-Encoding: 8bit\r\n\r\n");
	bool cr = false;
	for (const char *p = ar->text; *p; p++) {
		if (strncmp(p, "${sender}", 9) == 0) {
			append_clean_line(&b, sender[0] ? sender : "<>");
			p += 8;
			cr = false;
			continue;
		}
		if (*p == '\n' && !cr)
			buf_append_c(&b, '\r');
		buf_append_c(&b, *p);
		cr = *p == '\r';
	}
	if (b.len < 2 || b.data[b.len - 1] != '\n')
		buf_append_str(&b, "\r\n");
	sieve_message_free(&m);
	char *out = buf_steal(&b);
	buf_deinit(&b);
	return out;
}

/* ---- job plumbing ---- */

static void job_free(struct job *j)
{
	struct job **pp = &j->t->jobs;
	while (*pp != NULL && *pp != j)
		pp = &(*pp)->next;
	if (*pp == j) {
		*pp = j->next;
		j->t->job_count--;
	}
	if (j->easy != NULL) {
		curl_multi_remove_handle(j->t->multi, j->easy);
		curl_easy_cleanup(j->easy);
	}
	curl_slist_free_all(j->hdrs);
	free(j->body);
	buf_deinit(&j->resp);
	if (j->pid_ev != NULL)
		event_free(j->pid_ev);
	if (j->out_ev != NULL)
		event_free(j->out_ev);
	if (j->timeout_ev != NULL)
		event_free(j->timeout_ev);
	if (j->report_ev != NULL)
		event_free(j->report_ev);
	if (j->pidfd >= 0)
		close(j->pidfd);
	if (j->outfd >= 0)
		close(j->outfd);
	free(j->marker);
	free(j->text);
	free(j);
}

static void on_report(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	struct queue_triggers *t = j->t;
	t->fn(t->ctx, j->id, j->idx, j->attempts, j->arrival, j->result, j->status, j->text);
	job_free(j);
}

/* Finish a job: the result goes out from the loop, never from the caller's stack. */
static void job_report(struct job *j, enum queue_trigger_result r, const char *status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void job_report(struct job *j, enum queue_trigger_result r, const char *status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	free(j->text);
	j->text = xvasprintf(fmt, ap);
	va_end(ap);
	for (char *p = j->text; *p; p++)
		if ((unsigned char)*p < ' ')
			*p = ' ';
	j->result = r;
	snprintf(j->status, sizeof(j->status), "%s", status);
	if (j->report_ev == NULL)
		j->report_ev = event_new(j->t->base, -1, 0, on_report, j);
	event_active(j->report_ev, EV_TIMEOUT, 0);
}

static struct job *job_new(struct queue_triggers *t, enum job_kind kind, const struct queue_due *due)
{
	struct job *j = xcalloc(1, sizeof(*j));
	j->t = t;
	j->kind = kind;
	snprintf(j->id, sizeof(j->id), "%s", due->id);
	j->idx = due->idx;
	j->attempts = due->attempts;
	j->arrival = due->arrival;
	j->pidfd = j->outfd = -1;
	buf_init(&j->resp, MAX_RESPONSE);
	j->next = t->jobs;
	t->jobs = j;
	t->job_count++;
	return j;
}

/* The message as delivery sees it: the envelope's added fields, then the spool file (up to max). */
static char *load_message(struct queue_triggers *t, const struct queue_envelope *env, const char *prepend,
                          size_t max, size_t *len_r)
{
	int fd = queue_store_open_spool(t->store, env->id);
	if (fd < 0)
		return NULL;
	struct stat st;
	size_t size = fstat(fd, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size : 0;
	if (size > max)
		size = max;
	size_t pl = prepend ? strlen(prepend) : 0, hl = env->headers ? strlen(env->headers) : 0;
	char *p = xmalloc(pl + hl + size + 1);
	memcpy(p, prepend ? prepend : "", pl);
	memcpy(p + pl, env->headers ? env->headers : "", hl);
	size_t off = 0;
	while (off < size) {
		ssize_t r = pread(fd, p + pl + hl + off, size - off, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		off += (size_t)r;
	}
	close(fd);
	p[pl + hl + off] = '\0';
	*len_r = pl + hl + off;
	return p;
}

static const struct queue_rcpt *env_rcpt(const struct queue_envelope *env, unsigned idx)
{
	for (size_t i = 0; i < env->rcpt_count; i++)
		if (env->rcpts[i].idx == idx)
			return &env->rcpts[i];
	return NULL;
}

static const char *orcpt_addr(const char *orcpt)
{
	if (orcpt == NULL)
		return NULL;
	const char *semi = strchr(orcpt, ';');
	return semi ? semi + 1 : orcpt;
}

/* ---- webhook over libcurl multi ---- */

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct job *j = arg;
	if (buf_append(&j->resp, data, size * n) < 0)
		return 0; /* over the cap: abort the transfer */
	return size * n;
}

static size_t discard_body(char *data, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	(void)data;
	if (b->len + size * n > MAX_RESPONSE)
		return 0;
	b->len += size * n;
	return size * n;
}

/* Options shared by the server and `mailroute webhook replay`. */
static struct curl_slist *webhook_setup(CURL *e, const struct conf_webhook *wh, const char *body, const char *key)
{
	char ts[32];
	snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
	struct curl_slist *h = NULL;
	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Expect:");
	char line[256];
	snprintf(line, sizeof(line), "X-Mailroute-Timestamp: %s", ts);
	h = curl_slist_append(h, line);
	snprintf(line, sizeof(line), "Idempotency-Key: %s", key);
	h = curl_slist_append(h, line);
	snprintf(line, sizeof(line), "X-Mailroute-Webhook: %s", wh->name);
	h = curl_slist_append(h, line);
	if (wh->secret != NULL) {
		char *sig = queue_triggers_signature(wh->secret, ts, body, strlen(body));
		char *l = xasprintf("X-Mailroute-Signature: %s", sig);
		h = curl_slist_append(h, l);
		free(l);
		free(sig);
	}
	curl_easy_setopt(e, CURLOPT_URL, wh->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, MAX_REDIRS);
	curl_easy_setopt(e, CURLOPT_POSTREDIR, (long)CURL_REDIR_POST_ALL);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)wh->timeout);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)(wh->timeout < 30 ? wh->timeout : 30));
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "mailroute-webhook/1");
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MAX_RESPONSE);
	if (wh->tls_ca_file != NULL)
		curl_easy_setopt(e, CURLOPT_CAINFO, wh->tls_ca_file);
	return h;
}

static const struct conf_webhook *find_webhook(const struct mr_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->webhooks_count; i++)
		if (strcmp(cfg->webhooks[i].name, name) == 0)
			return &cfg->webhooks[i];
	return NULL;
}

static char *deadletter_dir(const struct mr_config *cfg)
{
	return xasprintf("%s/queue/deadletter", cfg->data_dir);
}

/* Write the dead letter atomically (tmp + rename). */
static int deadletter_write(const struct mr_config *cfg, const struct job *j, const char *error)
{
	char *dir = deadletter_dir(cfg);
	(void)mkdir(dir, 0700);
	json_t *o = json_object();
	json_object_set_new(o, "webhook", json_string(j->wh->name));
	json_object_set_new(o, "queue_id", json_string(j->id));
	json_object_set_new(o, "recipient_index", json_integer(j->idx));
	json_object_set_new(o, "created", json_integer((json_int_t)time(NULL)));
	json_object_set_new(o, "last_error", jstr(error, strlen(error)));
	json_object_set_new(o, "body", json_string(j->body));
	char *s = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(o);
	char *path = xasprintf("%s/%s-%u.json", dir, j->id, j->idx);
	char *tmp = xasprintf("%s.tmp", path);
	int rc = -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0 && s != NULL) {
		size_t n = strlen(s);
		if (write(fd, s, n) == (ssize_t)n && fsync(fd) == 0 && rename(tmp, path) == 0)
			rc = 0;
	}
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		unlink(tmp);
	free(s);
	free(path);
	free(tmp);
	free(dir);
	return rc;
}

static void webhook_done(struct job *j, CURLcode code)
{
	long status = 0;
	curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
	char err[300];
	if (code == CURLE_OK && status >= 200 && status < 300) {
		log_info("event=webhook_delivered id=%s rcpt=%u webhook=%s status=%ld", j->id, j->idx, j->wh->name, status);
		job_report(j, QUEUE_TRIGGER_DONE, "2.0.0", "webhook %s: HTTP %ld", j->wh->name, status);
		return;
	}
	if (code == CURLE_OK)
		snprintf(err, sizeof(err), "4.3.0 webhook %s: HTTP status %ld", j->wh->name, status);
	else if (code == CURLE_WRITE_ERROR || code == CURLE_FILESIZE_EXCEEDED)
		snprintf(err, sizeof(err), "4.3.0 webhook %s: response larger than %u bytes", j->wh->name, MAX_RESPONSE);
	else
		snprintf(err, sizeof(err), "4.4.1 webhook %s: %s", j->wh->name, curl_easy_strerror(code));
	const struct mr_config *cfg = j->t->cfg;
	if (cfg->queue.max_age > 0 && time(NULL) - j->arrival > (time_t)cfg->queue.max_age) {
		if (deadletter_write(cfg, j, err) == 0) {
			log_warn("event=webhook_deadletter id=%s rcpt=%u webhook=%s error=\"%s\"", j->id, j->idx, j->wh->name,
			         err);
			job_report(j, QUEUE_TRIGGER_DEADLETTER, "4.4.7", "dead-lettered: %s", err);
			return;
		}
		log_warn("event=webhook_deadletter_failed id=%s rcpt=%u error=\"%s\"", j->id, j->idx, strerror(errno));
	}
	log_warn("event=webhook_deferred id=%s rcpt=%u webhook=%s error=\"%s\"", j->id, j->idx, j->wh->name, err);
	job_report(j, QUEUE_TRIGGER_DEFERRED, "4.3.0", "%s", err);
}

static void check_multi(struct queue_triggers *t)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(t->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct job *j = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
		CURLcode code = msg->data.result;
		curl_multi_remove_handle(t->multi, msg->easy_handle);
		if (j != NULL)
			webhook_done(j, code);
	}
}

static void on_curl_sock(evutil_socket_t fd, short what, void *arg)
{
	struct queue_triggers *t = arg;
	int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
	int running = 0;
	curl_multi_socket_action(t->multi, fd, flags, &running);
	check_multi(t);
}

static void on_curl_timer(evutil_socket_t fd, short what, void *arg)
{
	struct queue_triggers *t = arg;
	int running = 0;
	curl_multi_socket_action(t->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_multi(t);
}

static int curl_sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct queue_triggers *t = userp;
	struct event *ev = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (ev != NULL) {
			event_free(ev);
			curl_multi_assign(t->multi, s, NULL);
		}
		return 0;
	}
	short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
	if (ev != NULL) {
		event_del(ev);
		event_assign(ev, t->base, s, kind, on_curl_sock, t);
	} else {
		ev = event_new(t->base, s, kind, on_curl_sock, t);
		curl_multi_assign(t->multi, s, ev);
	}
	event_add(ev, NULL);
	return 0;
}

static int curl_timer_cb(CURLM *m, long ms, void *userp)
{
	struct queue_triggers *t = userp;
	if (ms < 0) {
		evtimer_del(t->curl_timer);
		return 0;
	}
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(t->curl_timer, &tv);
	return 0;
}

static void dispatch_webhook(struct queue_triggers *t, struct job *j, const char *name,
                             const struct queue_envelope *env, const struct queue_rcpt *rc)
{
	j->wh = find_webhook(t->cfg, name);
	if (j->wh == NULL) {
		job_report(j, QUEUE_TRIGGER_DEFERRED, "4.3.5", "4.3.5 webhook %s is not configured", name);
		return;
	}
	size_t len = 0;
	char *raw = load_message(t, env, NULL, MAX_PARSE, &len);
	if (raw == NULL) {
		job_report(j, QUEUE_TRIGGER_DEFERRED, "4.3.0", "4.3.0 spool file missing: %s", strerror(errno));
		return;
	}
	struct queue_trigger_envelope e = {
		.webhook = j->wh->name, .queue_id = j->id, .idx = j->idx, .sender = env->sender,
		.recipient = orcpt_addr(rc->orcpt) ? orcpt_addr(rc->orcpt) : rc->address,
		.original_recipient = orcpt_addr(rc->orcpt), .arrival = env->arrival,
	};
	j->body = queue_triggers_webhook_json(&e, raw, len);
	free(raw);
	j->easy = curl_easy_init();
	if (j->easy == NULL) {
		job_report(j, QUEUE_TRIGGER_DEFERRED, "4.3.0", "4.3.0 curl_easy_init failed");
		return;
	}
	char key[QUEUE_ID_SIZE + 16];
	snprintf(key, sizeof(key), "%s-%u", j->id, j->idx);
	j->hdrs = webhook_setup(j->easy, j->wh, j->body, key);
	curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, j);
	curl_easy_setopt(j->easy, CURLOPT_PRIVATE, j);
	if (curl_multi_add_handle(t->multi, j->easy) != CURLM_OK) {
		curl_easy_cleanup(j->easy);
		j->easy = NULL;
		job_report(j, QUEUE_TRIGGER_DEFERRED, "4.3.0", "4.3.0 curl_multi_add_handle failed");
	}
}

/* ---- pipe ---- */

static void pipe_finish(struct job *j, int wstatus)
{
	/* Whatever output is left (the command is gone; don't wait for grandchildren). */
	if (j->outfd >= 0) {
		char tmp[4096];
		ssize_t n;
		while ((n = read(j->outfd, tmp, sizeof(tmp))) > 0) {
			for (ssize_t i = 0; i < n; i++) {
				if (j->tail_len == sizeof(j->tail) - 1) {
					memmove(j->tail, j->tail + 1, j->tail_len - 1);
					j->tail_len--;
				}
				j->tail[j->tail_len++] = tmp[i];
			}
		}
	}
	j->tail[j->tail_len] = '\0';
	for (size_t i = 0; i < j->tail_len; i++)
		if ((unsigned char)j->tail[i] < ' ' || j->tail[i] == '"' || j->tail[i] == '\\')
			j->tail[i] = ' ';
	const char *status = NULL;
	enum queue_trigger_result r = queue_triggers_exit_result(wstatus, j->timed_out, &status);
	char what[64];
	if (j->timed_out)
		snprintf(what, sizeof(what), "timed out after %us, killed", j->pipe->timeout);
	else if (WIFSIGNALED(wstatus))
		snprintf(what, sizeof(what), "killed by signal %d", WTERMSIG(wstatus));
	else
		snprintf(what, sizeof(what), "exit status %d", WEXITSTATUS(wstatus));
	log_info("event=pipe_done id=%s rcpt=%u pipe=%s result=%s (%s)", j->id, j->idx, j->pipe->name,
	         r == QUEUE_TRIGGER_DONE ? "delivered" : r == QUEUE_TRIGGER_DEFERRED ? "deferred" : "failed", what);
	if (r == QUEUE_TRIGGER_FAILED)
		job_report(j, r, status, "X-Mailroute; command %s: %s: %s", j->pipe->name, what, j->tail);
	else
		job_report(j, r, status, "%s command %s: %s: %s", status, j->pipe->name, what, j->tail);
}

static void on_pipe_out(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	char tmp[4096];
	ssize_t n = read(fd, tmp, sizeof(tmp));
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			event_del(j->out_ev);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (j->tail_len == sizeof(j->tail) - 1) {
			memmove(j->tail, j->tail + 1, j->tail_len - 1);
			j->tail_len--;
		}
		j->tail[j->tail_len++] = tmp[i];
	}
}

static void on_pipe_exit(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	int st = 0;
	pid_t r = waitpid(j->pid, &st, WNOHANG);
	if (r == 0)
		return; /* poll fallback: not yet */
	if (r < 0)
		st = 0x7f00; /* unknown: treat as failed */
	j->reaped = true;
	event_del(j->pid_ev);
	if (j->timeout_ev != NULL)
		event_del(j->timeout_ev);
	if (j->out_ev != NULL)
		event_del(j->out_ev);
	pipe_finish(j, st);
}

static void on_pipe_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	j->timed_out = true;
	log_warn("event=pipe_timeout id=%s rcpt=%u pipe=%s pid=%d", j->id, j->idx, j->pipe->name, (int)j->pid);
	kill(-j->pid, SIGKILL);
	kill(j->pid, SIGKILL);
}

static int spool_to_memfd(struct queue_triggers *t, const struct queue_envelope *env, const char *prepend)
{
	int src = queue_store_open_spool(t->store, env->id);
	if (src < 0)
		return -1;
	int fd = memfd_create("mailroute-pipe", MFD_CLOEXEC);
	if (fd < 0) {
		close(src);
		return -1;
	}
	size_t pl = strlen(prepend);
	bool ok = write(fd, prepend, pl) == (ssize_t)pl;
	char buf[65536];
	off_t off = 0;
	while (ok) {
		ssize_t n = pread(src, buf, sizeof(buf), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ok = n == 0;
			break;
		}
		ok = write(fd, buf, (size_t)n) == n;
		off += n;
	}
	close(src);
	if (!ok || lseek(fd, 0, SEEK_SET) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void dispatch_pipe(struct queue_triggers *t, struct job *j, const char *name, const struct queue_envelope *env,
                          const struct queue_rcpt *rc)
{
	for (size_t i = 0; i < t->cfg->pipes_count; i++)
		if (strcmp(t->cfg->pipes[i].name, name) == 0)
			j->pipe = &t->cfg->pipes[i];
	if (j->pipe == NULL) {
		job_report(j, QUEUE_TRIGGER_DEFERRED, "4.3.5", "4.3.5 pipe %s is not configured", name);
		return;
	}
	uid_t uid = geteuid();
	gid_t gid = getegid();
	if (j->pipe->user != NULL) {
		struct passwd *pw = getpwnam(j->pipe->user);
		if (pw == NULL) {
			job_report(j, QUEUE_TRIGGER_DEFERRED, "4.3.5", "4.3.5 pipe %s: no user %s", name, j->pipe->user);
			return;
		}
		if (pw->pw_uid != geteuid() && geteuid() != 0) {
			job_report(j, QUEUE_TRIGGER_DEFERRED, "4.3.5",
			           "4.3.5 pipe %s: cannot run as %s: the queue role runs as uid %u and cannot switch users",
			           name, j->pipe->user, (unsigned)geteuid());
			return;
		}
		uid = pw->pw_uid;
		gid = pw->pw_gid;
	}
	const char *orig = orcpt_addr(rc->orcpt);
	char *prepend = xasprintf("Return-Path: <%s>\r\nDelivered-To: %s\r\n%s", env->sender, orig ? orig : rc->address,
	                          env->headers ? env->headers : "");
	int in = spool_to_memfd(t, env, prepend);
	free(prepend);
	int out[2];
	if (in < 0 || pipe2(out, O_CLOEXEC | O_NONBLOCK) < 0) {
		if (in >= 0)
			close(in);
		job_report(j, QUEUE_TRIGGER_DEFERRED, "4.3.0", "4.3.0 pipe %s: cannot prepare the input: %s", name,
		           strerror(errno));
		return;
	}
	/* Everything the child needs, made before fork (the child only calls async-signal-safe functions). */
	char *envv[8];
	size_t ne = 0;
	envv[ne++] = xasprintf("SENDER=%s", env->sender);
	envv[ne++] = xasprintf("RECIPIENT=%s", orig ? orig : rc->address);
	envv[ne++] = xasprintf("ORIGINAL_RECIPIENT=%s", orig ? orig : "");
	envv[ne++] = xasprintf("QUEUE_ID=%s", j->id);
	envv[ne++] = xasprintf("MAILROUTE_TARGET=pipe:%s", name);
	envv[ne++] = xstrdup("PATH=/usr/local/bin:/usr/bin:/bin");
	envv[ne++] = xstrdup("HOME=/");
	envv[ne] = NULL;
	char **argv = xcalloc(j->pipe->command_count + 1, sizeof(char *));
	for (size_t i = 0; i < j->pipe->command_count; i++)
		argv[i] = j->pipe->command[i];
	bool switch_user = geteuid() == 0 && uid != 0;
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		if (dup2(in, 0) < 0 || dup2(out[1], 1) < 0 || dup2(out[1], 2) < 0)
			_exit(EX_TEMPFAIL);
		int fl = fcntl(1, F_GETFL);
		if (fl >= 0)
			fcntl(1, F_SETFL, fl & ~O_NONBLOCK);
		close_range(3, ~0U, 0);
		if (switch_user && (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0))
			_exit(EX_TEMPFAIL);
		if (chdir("/") < 0)
			_exit(EX_TEMPFAIL);
		execve(argv[0], argv, envv);
		static const char msg[] = "cannot execute the command\n";
		ssize_t wr = write(2, msg, sizeof(msg) - 1);
		(void)wr;
		_exit(errno == ENOENT ? EX_UNAVAILABLE : EX_TEMPFAIL);
	}
	int saved = errno;
	close(in);
	close(out[1]);
	for (size_t i = 0; i < ne; i++)
		free(envv[i]);
	free(argv);
	if (pid < 0) {
		close(out[0]);
		job_report(j, QUEUE_TRIGGER_DEFERRED, "4.3.0", "4.3.0 pipe %s: fork: %s", name, strerror(saved));
		return;
	}
	setpgid(pid, pid); /* also from here: no race with the kill below */
	j->pid = pid;
	j->outfd = out[0];
	j->out_ev = event_new(t->base, j->outfd, EV_READ | EV_PERSIST, on_pipe_out, j);
	event_add(j->out_ev, NULL);
	j->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (j->pidfd >= 0) {
		j->pid_ev = event_new(t->base, j->pidfd, EV_READ | EV_PERSIST, on_pipe_exit, j);
		event_add(j->pid_ev, NULL);
	} else {
		j->pid_ev = event_new(t->base, -1, EV_PERSIST, on_pipe_exit, j);
		struct timeval poll = { 0, 50000 };
		event_add(j->pid_ev, &poll);
	}
	j->timeout_ev = evtimer_new(t->base, on_pipe_timeout, j);
	struct timeval tv = { (time_t)j->pipe->timeout, 0 };
	evtimer_add(j->timeout_ev, &tv);
	log_info("event=pipe_started id=%s rcpt=%u pipe=%s pid=%d", j->id, j->idx, name, (int)pid);
}

/* ---- auto-reply ---- */

static void on_reply_injected(void *arg, bool ok, const char *text)
{
	struct job *j = arg;
	if (ok) {
		log_info("event=autoreply_sent id=%s rcpt=%u reply_id=%s", j->id, j->idx, text);
		job_report(j, QUEUE_TRIGGER_DONE, "2.0.0", "auto-reply queued as %s", text);
	} else {
		if (j->marker != NULL)
			unlink(j->marker);
		job_report(j, QUEUE_TRIGGER_DEFERRED, "4.3.0", "4.3.0 auto-reply not queued: %s", text);
	}
}

/* Marker path for (name, sender): <data_dir>/queue/autoreply/NAME/<sha256 of the lowercased sender>. */
static char *marker_path(const struct mr_config *cfg, const char *name, const char *sender)
{
	char *low = xstrdup(sender);
	for (char *p = low; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_Digest(low, strlen(low), md, &n, EVP_sha256(), NULL);
	free(low);
	char *h = hex(md, n);
	char *dir = xasprintf("%s/queue/autoreply", cfg->data_dir);
	(void)mkdir(dir, 0700);
	char *sub = xasprintf("%s/%s", dir, name);
	(void)mkdir(sub, 0700);
	char *path = xasprintf("%s/%s", sub, h);
	free(h);
	free(dir);
	free(sub);
	return path;
}

static void dispatch_autoreply(struct queue_triggers *t, struct job *j, const char *name,
                               const struct queue_envelope *env)
{
	const struct conf_autoreply *ar = NULL;
	for (size_t i = 0; i < t->cfg->autoreplies_count; i++)
		if (strcmp(t->cfg->autoreplies[i].name, name) == 0)
			ar = &t->cfg->autoreplies[i];
	if (ar == NULL) {
		job_report(j, QUEUE_TRIGGER_DEFERRED, "4.3.5", "4.3.5 autoreply %s is not configured", name);
		return;
	}
	size_t len = 0;
	char *raw = load_message(t, env, NULL, 1u << 20, &len);
	if (raw == NULL) {
		job_report(j, QUEUE_TRIGGER_DEFERRED, "4.3.0", "4.3.0 spool file missing");
		return;
	}
	const char *why = NULL;
	if (!queue_triggers_autoreply_allowed(env->sender, ar->from, raw, len, &why)) {
		log_info("event=autoreply_suppressed id=%s rcpt=%u autoreply=%s reason=\"%s\"", j->id, j->idx, name, why);
		free(raw);
		job_report(j, QUEUE_TRIGGER_DONE, "2.0.0", "auto-reply suppressed: %s", why);
		return;
	}
	j->marker = marker_path(t->cfg, name, env->sender);
	struct stat st;
	time_t now = time(NULL);
	if (stat(j->marker, &st) == 0 && now - st.st_mtime < (time_t)ar->period) {
		log_info("event=autoreply_suppressed id=%s rcpt=%u autoreply=%s reason=\"already replied within the period\"",
		         j->id, j->idx, name);
		free(j->marker);
		j->marker = NULL;
		free(raw);
		job_report(j, QUEUE_TRIGGER_DONE, "2.0.0", "auto-reply suppressed: already replied within the period");
		return;
	}
	/* Mark before sending: a second message from the sender in the same scan gets no second reply. */
	int mfd = open(j->marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (mfd >= 0) {
		if (write(mfd, env->sender, strlen(env->sender)) < 0)
			log_warn("event=autoreply_marker_failed error=\"%s\"", strerror(errno));
		close(mfd);
	}
	char *msg = queue_triggers_autoreply_build(ar, env->sender, t->cfg->hostname, raw, len, now);
	free(raw);
	int fd = memfd_create("mailroute-autoreply", MFD_CLOEXEC);
	size_t ml = strlen(msg);
	if (fd < 0 || write(fd, msg, ml) != (ssize_t)ml) {
		if (fd >= 0)
			close(fd);
		free(msg);
		unlink(j->marker);
		job_report(j, QUEUE_TRIGGER_DEFERRED, "4.3.0", "4.3.0 auto-reply: %s", strerror(errno));
		return;
	}
	free(msg);
	char *rcpts[1] = { env->sender };
	t->inject("", rcpts, 1, fd, NULL, on_reply_injected, j, NULL, 0);
	close(fd);
}

/* ---- the module ---- */

bool queue_triggers_handles(const char *target)
{
	return strncmp(target, "webhook:", 8) == 0 || strncmp(target, "pipe:", 5) == 0 ||
	       strncmp(target, "autoreply:", 10) == 0;
}

struct queue_triggers *queue_triggers_new(struct event_base *base, const struct mr_config *cfg,
                                          struct queue_store *store, queue_triggers_result_fn *fn,
                                          queue_triggers_inject_fn *inject, void *ctx, char **error_r)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		*error_r = xstrdup("curl_global_init failed");
		return NULL;
	}
	struct queue_triggers *t = xcalloc(1, sizeof(*t));
	t->base = base;
	t->cfg = cfg;
	t->store = store;
	t->fn = fn;
	t->inject = inject;
	t->ctx = ctx;
	t->multi = curl_multi_init();
	if (t->multi == NULL) {
		free(t);
		*error_r = xstrdup("curl_multi_init failed");
		return NULL;
	}
	t->curl_timer = evtimer_new(base, on_curl_timer, t);
	curl_multi_setopt(t->multi, CURLMOPT_SOCKETFUNCTION, curl_sock_cb);
	curl_multi_setopt(t->multi, CURLMOPT_SOCKETDATA, t);
	curl_multi_setopt(t->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
	curl_multi_setopt(t->multi, CURLMOPT_TIMERDATA, t);
	for (size_t i = 0; i < cfg->pipes_count; i++)
		if (cfg->pipes[i].user != NULL && geteuid() != 0) {
			struct passwd *pw = getpwnam(cfg->pipes[i].user);
			if (pw == NULL || pw->pw_uid != geteuid())
				log_warn("event=pipe_user_unavailable pipe=%s user=%s reason=\"the queue role runs unprivileged "
				         "and can run commands only as itself\"",
				         cfg->pipes[i].name, cfg->pipes[i].user);
		}
	return t;
}

void queue_triggers_free(struct queue_triggers **tp)
{
	struct queue_triggers *t = *tp;
	if (t == NULL)
		return;
	*tp = NULL;
	while (t->jobs != NULL) {
		if (t->jobs->kind == JOB_PIPE && t->jobs->pid > 0 && !t->jobs->reaped) {
			kill(-t->jobs->pid, SIGKILL);
			waitpid(t->jobs->pid, NULL, 0);
		}
		job_free(t->jobs);
	}
	event_free(t->curl_timer);
	curl_multi_cleanup(t->multi);
	free(t);
}

bool queue_triggers_busy(const struct queue_triggers *t, const char *id, unsigned idx)
{
	for (const struct job *j = t->jobs; j != NULL; j = j->next)
		if (j->idx == idx && strcmp(j->id, id) == 0)
			return true;
	return false;
}

void queue_triggers_dispatch(struct queue_triggers *t, const struct queue_due *due)
{
	if (t->job_count >= MAX_JOBS || queue_triggers_busy(t, due->id, due->idx))
		return; /* stays due: the next scan tries again */
	const char *colon = strchr(due->target, ':');
	enum job_kind kind = strncmp(due->target, "webhook:", 8) == 0 ? JOB_WEBHOOK
	                     : strncmp(due->target, "pipe:", 5) == 0 ? JOB_PIPE
	                                                              : JOB_AUTOREPLY;
	struct job *j = job_new(t, kind, due);
	const char *name = colon ? colon + 1 : "";
	struct queue_envelope *env = NULL;
	char *error = NULL;
	if (queue_store_get(t->store, due->id, &env, &error) <= 0) {
		job_report(j, QUEUE_TRIGGER_DEFERRED, "4.3.0", "4.3.0 queue read failed: %s", error ? error : "missing");
		free(error);
		return;
	}
	const struct queue_rcpt *rc = env_rcpt(env, due->idx);
	if (rc == NULL)
		job_report(j, QUEUE_TRIGGER_DEFERRED, "4.3.0", "4.3.0 recipient %u missing", due->idx);
	else if (kind == JOB_WEBHOOK)
		dispatch_webhook(t, j, name, env, rc);
	else if (kind == JOB_PIPE)
		dispatch_pipe(t, j, name, env, rc);
	else
		dispatch_autoreply(t, j, name, env);
	queue_envelope_free(&env);
}

/* ---- dead letters, for the CLI ---- */

static int dl_load(const char *path, struct queue_deadletter *d, char **error_r)
{
	json_error_t je;
	json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (o == NULL) {
		*error_r = xasprintf("%s: %s", path, je.text);
		return -1;
	}
	const char *wh = json_string_value(json_object_get(o, "webhook"));
	const char *body = json_string_value(json_object_get(o, "body"));
	const char *err = json_string_value(json_object_get(o, "last_error"));
	json_t *cr = json_object_get(o, "created");
	if (wh == NULL || body == NULL) {
		json_decref(o);
		*error_r = xasprintf("%s: not a dead letter (webhook and body missing)", path);
		return -1;
	}
	d->webhook = xstrdup(wh);
	d->body = xstrdup(body);
	d->last_error = xstrdup(err ? err : "");
	d->created = json_is_integer(cr) ? (time_t)json_integer_value(cr) : 0;
	json_decref(o);
	return 0;
}

static void dl_deinit(struct queue_deadletter *d)
{
	free(d->webhook);
	free(d->body);
	free(d->last_error);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int queue_deadletter_list(const struct mr_config *cfg, queue_deadletter_cb *cb, void *ctx, char **error_r)
{
	char *dir = deadletter_dir(cfg);
	DIR *d = opendir(dir);
	if (d == NULL) {
		int e = errno;
		free(dir);
		if (e == ENOENT)
			return 0;
		*error_r = xasprintf("opendir: %s", strerror(e));
		return -1;
	}
	char **names = NULL;
	size_t n = 0, alloc = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l <= 5 || l >= 96 || strcmp(de->d_name + l - 5, ".json") != 0)
			continue;
		if (n == alloc) {
			alloc = alloc ? alloc * 2 : 16;
			names = xreallocarray(names, alloc, sizeof(char *));
		}
		names[n++] = xstrndup(de->d_name, l - 5);
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(char *), name_cmp);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		char *path = xasprintf("%s/%s.json", dir, names[i]);
		struct queue_deadletter dl = { 0 };
		char *error = NULL;
		snprintf(dl.name, sizeof(dl.name), "%s", names[i]);
		if (dl_load(path, &dl, &error) == 0) {
			cb(ctx, &dl);
			dl_deinit(&dl);
		} else {
			log_warn("event=deadletter_unreadable error=\"%s\"", error);
			free(error);
		}
		free(path);
		free(names[i]);
	}
	free(names);
	free(dir);
	return rc;
}

static bool dl_name_ok(const char *name)
{
	if (name[0] == '\0' || strlen(name) >= 96)
		return false;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
			return false;
	return name[0] != '.';
}

int queue_deadletter_replay(const struct mr_config *cfg, const char *name, char **error_r)
{
	if (!dl_name_ok(name)) {
		*error_r = xasprintf("bad dead letter name '%s'", name);
		return -1;
	}
	char *dir = deadletter_dir(cfg);
	char *path = xasprintf("%s/%s.json", dir, name);
	free(dir);
	struct queue_deadletter d = { 0 };
	if (access(path, F_OK) != 0) {
		free(path);
		return 0;
	}
	if (dl_load(path, &d, error_r) < 0) {
		free(path);
		return -1;
	}
	int rc = -1;
	const struct conf_webhook *wh = find_webhook(cfg, d.webhook);
	if (wh == NULL) {
		*error_r = xasprintf("webhook %s is not configured", d.webhook);
		goto out;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	CURL *e = curl_easy_init();
	if (e == NULL) {
		*error_r = xstrdup("curl_easy_init failed");
		goto out;
	}
	struct buf sink = { 0 };
	struct curl_slist *h = webhook_setup(e, wh, d.body, name);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &sink);
	CURLcode code = curl_easy_perform(e);
	long status = 0;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(e);
	curl_slist_free_all(h);
	if (code != CURLE_OK)
		*error_r = xasprintf("webhook %s: %s", wh->name, curl_easy_strerror(code));
	else if (status < 200 || status > 299)
		*error_r = xasprintf("webhook %s: HTTP status %ld", wh->name, status);
	else if (unlink(path) < 0)
		*error_r = xasprintf("delivered, but removing %s failed: %s", path, strerror(errno));
	else
		rc = 1;
out:
	dl_deinit(&d);
	free(path);
	return rc;
}
