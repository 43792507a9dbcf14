/*
 * rspamd_client: ask rspamd's normal worker about a spooled message over HTTP
 * POST /checkv2 and map its answer to what the SMTP session must do.
 *
 * Transport: a small HTTP/1.1 client on filter_conn (one request per
 * connection, "Connection: close"), not libcurl: the peer is local and
 * trusted, the request is one POST, and this keeps everything on the smtp
 * role's own libevent loop with no extra machinery. The response is bounded
 * (256 KiB) and must carry Content-Length or end with the close.
 *
 * Request headers: IP, Helo, From, Rcpt (one per recipient), Queue-Id, and
 * User ONLY when the session is authenticated (pitfall 6: rspamd treats any
 * User header as an authenticated sender and skips SPF/DMARC). Values with
 * CR, LF or other control characters are dropped, never sent.
 *
 * Verdict mapping: reject -> 554 5.7.1, soft reject -> 451 4.7.1,
 * greylist -> 451 4.7.1, add header -> spam (X-Spam headers, Junk),
 * rewrite subject -> spam with a new Subject, no action -> accept; any
 * failure (down, timeout, garbage) -> RSPAMD_ERROR: apply the configured
 * default. rspamd's milter add_headers/remove_headers are returned for every
 * verdict (they remove spoofed X-Spam headers even on accept).
 *
 * The callback runs exactly once, later on the loop, unless cancelled; the
 * check object is freed before it runs; the result lives only during it.
 */
#ifndef MR_RSPAMD_CLIENT_H
#define MR_RSPAMD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct rspamd_check;

enum rspamd_verdict {
	RSPAMD_ACCEPT,
	RSPAMD_SPAM,         /* "add header": deliver with X-Spam headers, into Junk */
	RSPAMD_REWRITE_SUBJECT, /* spam too, plus the new Subject in result.subject */
	RSPAMD_GREYLIST,     /* 451 4.7.1 */
	RSPAMD_SOFT_REJECT,  /* 451 4.7.1 */
	RSPAMD_REJECT,       /* 554 5.7.1 */
	RSPAMD_ERROR,        /* apply the configured default */
};

struct rspamd_header {
	char *name;
	char *value;   /* NULL for a removal */
	int order;     /* add: insert position (0 = append at the top, rspamd's meaning: index);
	                  remove: 0 = every occurrence, n = the n-th */
};

struct rspamd_result {
	enum rspamd_verdict verdict;
	char *action;          /* rspamd's words, e.g. "add header" */
	double score, required_score;
	bool spam;             /* file into Junk */
	int smtp_code;         /* 554/451 for rejections, 0 otherwise */
	const char *smtp_enhanced; /* "5.7.1"/"4.7.1" or NULL */
	char *smtp_text;       /* reply text (rspamd's smtp_message when given) */
	char *subject;         /* REWRITE_SUBJECT: the new subject */
	char *symbols;         /* "SYM(score),SYM(score)" for logs, NULL if none */
	struct rspamd_header *add_headers;    /* in order to apply */
	size_t add_count;
	struct rspamd_header *remove_headers;
	size_t remove_count;
	char *error;           /* RSPAMD_ERROR: why */
};

typedef void rspamd_callback(void *arg, const struct rspamd_result *res);

struct rspamd_settings {
	const char *url;       /* "http://127.0.0.1:11333" (path defaults to /checkv2) or "IP:PORT" */
	unsigned timeout_ms;   /* per stage (connect, sending progress, reply); 0 means 30000 */
	uint64_t max_size;     /* messages larger than this are not sent: ACCEPT "too big" (0: no limit) */
};

struct rspamd_request {
	const char *ip;        /* client IP (text) */
	const char *helo;
	const char *from;      /* envelope sender, "" for <> */
	const char *const *rcpts;
	size_t rcpt_count;
	const char *queue_id;
	const char *user;      /* authenticated user, NULL when not authenticated */
	const char *hostname;  /* client's verified PTR name or NULL */
};

/* Check bytes [0, size) of fd. Never NULL. */
struct rspamd_check *rspamd_check_start(struct event_base *base, const struct rspamd_settings *set,
                                        const struct rspamd_request *req, int fd, uint64_t size,
                                        rspamd_callback *cb, void *arg);
void rspamd_check_cancel(struct rspamd_check **check);

/*
 * Pure parts (tests, fuzzing):
 * rspamd_http_parse: complete HTTP/1.x response in data? 1 with *status_r and
 * the body view, 0 need more (eof false), -1 malformed/incomplete at eof.
 */
int rspamd_http_parse(const char *data, size_t len, bool eof, int *status_r, const char **body_r,
                      size_t *body_len_r, const char **error_r);
/* Parse a /checkv2 JSON body into res (zeroed first). 1 ok, -1 error (res->verdict ERROR). */
int rspamd_reply_parse(const char *json, size_t len, struct rspamd_result *res);
void rspamd_result_clear(struct rspamd_result *res);
/* Build the request head (method, headers) into out; size is the body length. -1 if over max. */
struct buf;
int rspamd_request_format(struct buf *out, const char *host, const char *path, const struct rspamd_request *req,
                          uint64_t size);
const char *rspamd_verdict_name(enum rspamd_verdict v);

#endif
