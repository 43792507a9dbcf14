#include "filters/rspamd_client.h"

#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib-milter/filter_conn.h"
#include "lib/buf.h"
#include "lib/xalloc.h"

#define RSPAMD_REPLY_MAX (256 * 1024)
#define RSPAMD_HEAD_MAX (64 * 1024)
#define RSPAMD_CHUNK 65536
#define RSPAMD_DEFAULT_TIMEOUT 30000
#define RSPAMD_MAX_HEADERS 64

struct rspamd_check {
	struct filter_conn *conn;
	struct event *ev_done;  /* for results known before any I/O */
	int fd;
	uint64_t size, sent;
	unsigned timeout_ms;
	bool body_done;
	rspamd_callback *cb;
	void *arg;
	char chunk[RSPAMD_CHUNK];
};

const char *rspamd_verdict_name(enum rspamd_verdict v)
{
	switch (v) {
	case RSPAMD_ACCEPT: return "accept";
	case RSPAMD_SPAM: return "spam";
	case RSPAMD_REWRITE_SUBJECT: return "rewrite_subject";
	case RSPAMD_GREYLIST: return "greylist";
	case RSPAMD_SOFT_REJECT: return "soft_reject";
	case RSPAMD_REJECT: return "reject";
	case RSPAMD_ERROR: return "error";
	}
	return "?";
}

/* ---- request ---- */

static bool header_value_ok(const char *v)
{
	if (v == NULL)
		return false;
	for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return false;
	}
	return true;
}

static int add_header(struct buf *out, const char *name, const char *value)
{
	if (!header_value_ok(value))
		return 0; /* never let a CR/LF from the network into our request */
	return buf_printf(out, "%s: %s\r\n", name, value);
}

int rspamd_request_format(struct buf *out, const char *host, const char *path, const struct rspamd_request *req,
                          uint64_t size)
{
	int r = 0;
	r |= buf_printf(out, "POST %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %llu\r\n",
	                path, host, (unsigned long long)size);
	r |= add_header(out, "IP", req->ip);
	r |= add_header(out, "Helo", req->helo);
	if (req->from != NULL)
		r |= add_header(out, "From", req->from[0] != '\0' ? req->from : "<>");
	for (size_t i = 0; i < req->rcpt_count; i++)
		r |= add_header(out, "Rcpt", req->rcpts[i]);
	r |= add_header(out, "Queue-Id", req->queue_id);
	if (req->user != NULL && req->user[0] != '\0')
		r |= add_header(out, "User", req->user); /* pitfall 6: only when authenticated */
	r |= add_header(out, "Hostname", req->hostname);
	r |= buf_append_str(out, "\r\n");
	return r < 0 ? -1 : 0;
}

/* ---- HTTP response ---- */

static const char *find_crlfcrlf(const char *p, size_t len)
{
	const char *m = memmem(p, len, "\r\n\r\n", 4);
	return m;
}

int rspamd_http_parse(const char *data, size_t len, bool eof, int *status_r, const char **body_r,
                      size_t *body_len_r, const char **error_r)
{
	const char *end = find_crlfcrlf(data, len);
	if (end == NULL) {
		if (!eof)
			return 0;
		*error_r = "incomplete HTTP response head";
		return -1;
	}
	size_t head_len = (size_t)(end - data) + 2; /* keep the last CRLF */
	if (head_len < 12 || memcmp(data, "HTTP/1.", 7) != 0 || (data[7] != '0' && data[7] != '1') ||
	    data[8] != ' ' || data[9] < '1' || data[9] > '5' || data[10] < '0' || data[10] > '9' ||
	    data[11] < '0' || data[11] > '9') {
		*error_r = "malformed HTTP status line";
		return -1;
	}
	*status_r = (data[9] - '0') * 100 + (data[10] - '0') * 10 + (data[11] - '0');
	bool have_cl = false;
	unsigned long long cl = 0;
	const char *line = memchr(data, '\n', head_len) + 1;
	const char *head_end = data + head_len;
	while (line < head_end) {
		const char *nl = memchr(line, '\n', (size_t)(head_end - line));
		if (nl == NULL)
			break;
		size_t ll = (size_t)(nl - line);
		if (ll > 0 && line[ll - 1] == '\r')
			ll--;
		if (ll > 15 && strncasecmp(line, "Content-Length:", 15) == 0) {
			const char *v = line + 15;
			size_t vl = ll - 15;
			while (vl > 0 && (*v == ' ' || *v == '\t')) {
				v++;
				vl--;
			}
			if (vl == 0 || vl > 12) {
				*error_r = "bad Content-Length";
				return -1;
			}
			cl = 0;
			for (size_t i = 0; i < vl; i++) {
				if (v[i] < '0' || v[i] > '9') {
					*error_r = "bad Content-Length";
					return -1;
				}
				cl = cl * 10 + (unsigned long long)(v[i] - '0');
			}
			have_cl = true;
		} else if (ll > 18 && strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
			*error_r = "chunked HTTP responses are not supported";
			return -1;
		}
		line = nl + 1;
	}
	const char *body = end + 4;
	size_t avail = len - (size_t)(body - data);
	if (have_cl) {
		if (avail < cl) {
			if (!eof)
				return 0;
			*error_r = "connection closed inside the HTTP body";
			return -1;
		}
		*body_r = body;
		*body_len_r = (size_t)cl;
		return 1;
	}
	if (!eof)
		return 0;
	*body_r = body;
	*body_len_r = avail;
	return 1;
}

/* ---- JSON ---- */

void rspamd_result_clear(struct rspamd_result *res)
{
	free(res->action);
	free(res->smtp_text);
	free(res->subject);
	free(res->symbols);
	free(res->error);
	for (size_t i = 0; i < res->add_count; i++) {
		free(res->add_headers[i].name);
		free(res->add_headers[i].value);
	}
	free(res->add_headers);
	for (size_t i = 0; i < res->remove_count; i++)
		free(res->remove_headers[i].name);
	free(res->remove_headers);
	memset(res, 0, sizeof(*res));
}

static bool header_name_ok(const char *n)
{
	if (*n == '\0' || strlen(n) > 200)
		return false;
	for (const unsigned char *p = (const unsigned char *)n; *p != '\0'; p++) {
		if (*p <= 0x20 || *p >= 0x7f || *p == ':')
			return false;
	}
	return true;
}

static bool value_ok(const char *v)
{
	/* folded values are allowed (CRLF followed by WSP); bare CR/LF are not */
	for (const char *p = v; *p != '\0'; p++) {
		if (*p == '\r' || *p == '\n') {
			if (p[0] == '\r' && p[1] == '\n' && (p[2] == ' ' || p[2] == '\t')) {
				p += 1;
				continue;
			}
			return false;
		}
	}
	return strlen(v) <= 4096;
}

static void push_header(struct rspamd_header **arr, size_t *count, const char *name, const char *value,
                        int order)
{
	if (*count >= RSPAMD_MAX_HEADERS)
		return;
	*arr = xreallocarray(*arr, *count + 1, sizeof(**arr));
	(*arr)[*count] = (struct rspamd_header){.name = xstrdup(name), .value = value ? xstrdup(value) : NULL,
	                                        .order = order};
	(*count)++;
}

static void add_milter_header(struct rspamd_result *res, const char *name, json_t *v)
{
	if (!header_name_ok(name))
		return;
	if (json_is_string(v)) {
		if (value_ok(json_string_value(v)))
			push_header(&res->add_headers, &res->add_count, name, json_string_value(v), 0);
	} else if (json_is_object(v)) {
		json_t *val = json_object_get(v, "value");
		json_t *ord = json_object_get(v, "order");
		if (json_is_string(val) && value_ok(json_string_value(val)))
			push_header(&res->add_headers, &res->add_count, name, json_string_value(val),
			            json_is_integer(ord) ? (int)json_integer_value(ord) : 0);
	} else if (json_is_array(v)) {
		size_t i;
		json_t *el;
		json_array_foreach(v, i, el) {
			if (!json_is_array(el))
				add_milter_header(res, name, el);
		}
	}
}

static void add_spam_headers(struct rspamd_result *res)
{
	char v[64];
	bool have_spam = false;
	for (size_t i = 0; i < res->add_count; i++) {
		if (strcasecmp(res->add_headers[i].name, "X-Spam") == 0)
			have_spam = true;
	}
	if (!have_spam)
		push_header(&res->add_headers, &res->add_count, "X-Spam", "Yes", 0);
	snprintf(v, sizeof(v), "%.2f / %.2f", res->score, res->required_score);
	push_header(&res->add_headers, &res->add_count, "X-Spam-Score", v, 0);
}

static int parse_fail(struct rspamd_result *res, const char *why)
{
	rspamd_result_clear(res);
	res->verdict = RSPAMD_ERROR;
	res->error = xstrdup(why);
	return -1;
}

int rspamd_reply_parse(const char *json, size_t len, struct rspamd_result *res)
{
	json_error_t jerr;
	memset(res, 0, sizeof(*res));
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return parse_fail(res, "rspamd reply is not JSON");
	if (!json_is_object(root)) {
		json_decref(root);
		return parse_fail(res, "rspamd reply is not a JSON object");
	}
	json_t *action = json_object_get(root, "action");
	if (!json_is_string(action)) {
		json_t *err = json_object_get(root, "error");
		char why[200];
		snprintf(why, sizeof(why), "rspamd: %s", json_is_string(err) ? json_string_value(err) : "no action");
		json_decref(root);
		return parse_fail(res, why);
	}
	const char *a = json_string_value(action);
	res->action = xstrdup(a);
	json_t *score = json_object_get(root, "score");
	json_t *req = json_object_get(root, "required_score");
	res->score = json_is_number(score) ? json_number_value(score) : 0;
	res->required_score = json_is_number(req) ? json_number_value(req) : 0;
	const char *smtp_message = NULL;
	json_t *messages = json_object_get(root, "messages");
	if (json_is_object(messages)) {
		json_t *m = json_object_get(messages, "smtp_message");
		if (json_is_string(m) && header_value_ok(json_string_value(m)) && strlen(json_string_value(m)) < 400)
			smtp_message = json_string_value(m);
	}
	if (strcmp(a, "reject") == 0) {
		res->verdict = RSPAMD_REJECT;
		res->smtp_code = 554;
		res->smtp_enhanced = "5.7.1";
		res->smtp_text = xstrdup(smtp_message ? smtp_message : "Message rejected as spam");
	} else if (strcmp(a, "soft reject") == 0) {
		res->verdict = RSPAMD_SOFT_REJECT;
		res->smtp_code = 451;
		res->smtp_enhanced = "4.7.1";
		res->smtp_text = xstrdup(smtp_message ? smtp_message : "Try again later");
	} else if (strcmp(a, "greylist") == 0) {
		res->verdict = RSPAMD_GREYLIST;
		res->smtp_code = 451;
		res->smtp_enhanced = "4.7.1";
		res->smtp_text = xstrdup(smtp_message ? smtp_message : "Greylisted, try again later");
	} else if (strcmp(a, "add header") == 0) {
		res->verdict = RSPAMD_SPAM;
		res->spam = true;
	} else if (strcmp(a, "rewrite subject") == 0) {
		json_t *subj = json_object_get(root, "subject");
		res->spam = true;
		if (json_is_string(subj) && value_ok(json_string_value(subj))) {
			res->verdict = RSPAMD_REWRITE_SUBJECT;
			res->subject = xstrdup(json_string_value(subj));
		} else {
			res->verdict = RSPAMD_SPAM; /* no subject given: mark only */
		}
	} else if (strcmp(a, "no action") == 0) {
		res->verdict = RSPAMD_ACCEPT;
	} else {
		char why[200];
		snprintf(why, sizeof(why), "rspamd: unknown action %.60s", a);
		json_decref(root);
		return parse_fail(res, why);
	}

	json_t *milter = json_object_get(root, "milter");
	if (json_is_object(milter)) {
		const char *name;
		json_t *v;
		json_t *add = json_object_get(milter, "add_headers");
		if (json_is_object(add)) {
			json_object_foreach(add, name, v) add_milter_header(res, name, v);
		}
		json_t *rem = json_object_get(milter, "remove_headers");
		if (json_is_object(rem)) {
			json_object_foreach(rem, name, v) {
				if (header_name_ok(name))
					push_header(&res->remove_headers, &res->remove_count, name, NULL,
					            json_is_integer(v) ? (int)json_integer_value(v) : 0);
			}
		}
	}
	if (res->spam)
		add_spam_headers(res);

	json_t *symbols = json_object_get(root, "symbols");
	if (json_is_object(symbols)) {
		struct buf b;
		const char *name;
		json_t *v;
		buf_init(&b, 4096);
		json_object_foreach(symbols, name, v) {
			json_t *s = json_is_object(v) ? json_object_get(v, "score") : NULL;
			if (!header_name_ok(name))
				continue;
			if (buf_printf(&b, "%s%s(%.2f)", b.len ? "," : "", name, json_is_number(s) ? json_number_value(s) : 0) < 0)
				break;
		}
		if (b.len > 0)
			res->symbols = buf_steal(&b);
		buf_deinit(&b);
	}
	json_decref(root);
	return 1;
}

/* ---- the async check ---- */

static void check_finish(struct rspamd_check *c, struct rspamd_result *res)
{
	rspamd_callback *cb = c->cb;
	void *arg = c->arg;
	rspamd_check_cancel(&c);
	cb(arg, res);
	rspamd_result_clear(res);
}

static void check_error(struct rspamd_check *c, const char *why)
{
	struct rspamd_result res = {.verdict = RSPAMD_ERROR, .error = xstrdup(why)};
	check_finish(c, &res);
}

static void check_reply(struct rspamd_check *c, bool eof)
{
	struct buf *in = filter_conn_input(c->conn);
	int status;
	const char *body, *error;
	size_t body_len;
	char why[200];

	int r = rspamd_http_parse(in->data, in->len, eof, &status, &body, &body_len, &error);
	if (r == 0)
		return;
	if (r < 0) {
		snprintf(why, sizeof(why), "rspamd: %s", error);
		check_error(c, why);
		return;
	}
	if (status != 200) {
		snprintf(why, sizeof(why), "rspamd: HTTP status %d", status);
		check_error(c, why);
		return;
	}
	struct rspamd_result res;
	(void)rspamd_reply_parse(body, body_len, &res);
	check_finish(c, &res);
}

static void check_pump(struct rspamd_check *c)
{
	if (c->body_done)
		return;
	if (c->sent == c->size) {
		c->body_done = true;
		return;
	}
	uint64_t left = c->size - c->sent;
	size_t n = left < RSPAMD_CHUNK ? (size_t)left : RSPAMD_CHUNK;
	ssize_t r;
	do {
		r = pread(c->fd, c->chunk, n, (off_t)c->sent);
	} while (r < 0 && errno == EINTR);
	if (r <= 0) {
		check_error(c, r < 0 ? "spool read error" : "spool file shorter than expected");
		return;
	}
	filter_conn_write(c->conn, c->chunk, (size_t)r);
	c->sent += (uint64_t)r;
}

static void check_conn_cb(void *arg, enum filter_conn_event ev, const char *error)
{
	struct rspamd_check *c = arg;
	char why[200];

	switch (ev) {
	case FILTER_CONN_DRAINED:
		filter_conn_set_timeout(c->conn, c->timeout_ms);
		check_pump(c);
		return;
	case FILTER_CONN_READ:
		check_reply(c, false);
		return;
	case FILTER_CONN_EOF:
		check_reply(c, true);
		return;
	case FILTER_CONN_ERROR:
		snprintf(why, sizeof(why), "rspamd: %s", error);
		check_error(c, why);
		return;
	case FILTER_CONN_TIMEOUT:
		check_error(c, "rspamd: timeout");
		return;
	}
}

static void check_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rspamd_check *c = arg;
	struct rspamd_result res = {.verdict = RSPAMD_ACCEPT, .action = xstrdup("skipped: too big")};
	check_finish(c, &res);
}

/* "http://IP:PORT/path" or "IP:PORT" -> address, path. */
static int split_url(const char *url, char *addr, size_t addr_size, char *path, size_t path_size)
{
	if (url == NULL)
		return -1;
	if (strncmp(url, "http://", 7) == 0)
		url += 7;
	const char *slash = strchr(url, '/');
	size_t alen = slash ? (size_t)(slash - url) : strlen(url);
	if (alen == 0 || alen >= addr_size)
		return -1;
	memcpy(addr, url, alen);
	addr[alen] = '\0';
	const char *p = slash && slash[1] != '\0' ? slash : "/checkv2";
	if (strlen(p) >= path_size || !header_value_ok(p) || strchr(p, ' ') != NULL)
		return -1;
	snprintf(path, path_size, "%s", p);
	return 0;
}

struct rspamd_check *rspamd_check_start(struct event_base *base, const struct rspamd_settings *set,
                                        const struct rspamd_request *req, int fd, uint64_t size,
                                        rspamd_callback *cb, void *arg)
{
	struct rspamd_check *c = xcalloc(1, sizeof(*c));
	char addr[128], path[256];
	struct buf head;

	c->fd = fd;
	c->size = size;
	c->timeout_ms = set->timeout_ms > 0 ? set->timeout_ms : RSPAMD_DEFAULT_TIMEOUT;
	c->cb = cb;
	c->arg = arg;
	if (set->max_size > 0 && size > set->max_size) {
		c->ev_done = event_new(base, -1, 0, check_done_cb, c);
		event_active(c->ev_done, EV_TIMEOUT, 0);
		return c;
	}
	if (split_url(set->url, addr, sizeof(addr), path, sizeof(path)) < 0)
		snprintf(addr, sizeof(addr), "bad-url"); /* filter_conn reports it asynchronously */
	c->conn = filter_conn_new(base, addr, RSPAMD_REPLY_MAX, c->timeout_ms, check_conn_cb, c);
	buf_init(&head, RSPAMD_HEAD_MAX);
	if (rspamd_request_format(&head, addr, path, req, size) < 0) {
		buf_deinit(&head);
		filter_conn_free(&c->conn);
		c->conn = filter_conn_new(base, "request-too-large", RSPAMD_REPLY_MAX, c->timeout_ms,
		                          check_conn_cb, c);
		return c;
	}
	filter_conn_write(c->conn, head.data, head.len);
	buf_deinit(&head);
	return c;
}

void rspamd_check_cancel(struct rspamd_check **cp)
{
	struct rspamd_check *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	filter_conn_free(&c->conn);
	if (c->ev_done != NULL)
		event_free(c->ev_done);
	free(c);
}
