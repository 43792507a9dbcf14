#include "managesieve/managesieve_session.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib-sieve/sieve.h"
#include "lib-sieve/sieve_store.h"
#include "lib/base64.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "managesieve/managesieve_parser.h"

#define MSIEVE_OUT_HIGH (256 * 1024)
#define MSIEVE_OUT_LOW (64 * 1024)

struct managesieve_session {
	struct event_base *base;
	struct bufferevent *bev;
	const struct managesieve_settings *set;
	struct managesieve_parser parser;
	bool tls, closing, busy, freeing, out_blocked, sasl_wait, auth_pending;
	char sid[24];
	char ip[64];
	char *user;       /* authenticated: "local@domain" */
	char *auth_user;  /* the name being checked, for the log line */
	void *auth_req;
	struct event *resume_ev;
	unsigned errors;
	struct managesieve_session *prev, *next;
};

static struct managesieve_session *sessions;
static unsigned session_count;
static unsigned session_serial;

static void session_free(struct managesieve_session *s);
static void process_input(struct managesieve_session *s);

unsigned managesieve_session_count(void)
{
	return session_count;
}

static size_t max_line(const struct managesieve_settings *set)
{
	return set->max_line ? set->max_line : 8192;
}

static size_t max_script(const struct managesieve_settings *set)
{
	return set->max_script_size ? set->max_script_size : SIEVE_STORE_MAX_SIZE;
}

static unsigned max_scripts(const struct managesieve_settings *set)
{
	return set->max_scripts ? set->max_scripts : 50;
}

/* ---- output ---- */

static struct evbuffer *out(struct managesieve_session *s)
{
	return bufferevent_get_output(s->bev);
}

static void send_raw(struct managesieve_session *s, const char *text)
{
	evbuffer_add(out(s), text, strlen(text));
}

/* A ManageSieve string: quoted when short and free of CR/LF/NUL, else a literal. */
static void send_string(struct managesieve_session *s, const char *str, size_t len)
{
	bool quoted = len <= MANAGESIEVE_MAX_QUOTED;
	for (size_t i = 0; quoted && i < len; i++)
		quoted = str[i] != '\r' && str[i] != '\n' && str[i] != '\0';
	if (!quoted) {
		evbuffer_add_printf(out(s), "{%zu}\r\n", len);
		evbuffer_add(out(s), str, len);
		return;
	}
	evbuffer_add(out(s), "\"", 1);
	size_t start = 0;
	for (size_t i = 0; i < len; i++) {
		if (str[i] == '"' || str[i] == '\\') {
			evbuffer_add(out(s), str + start, i - start);
			evbuffer_add(out(s), "\\", 1);
			start = i;
		}
	}
	evbuffer_add(out(s), str + start, len - start);
	evbuffer_add(out(s), "\"", 1);
}

/* "OK", "NO" or "BYE", an optional response code, an optional text. */
static void respond(struct managesieve_session *s, const char *kind, const char *code, const char *text)
{
	send_raw(s, kind);
	if (code != NULL) {
		send_raw(s, " (");
		send_raw(s, code);
		send_raw(s, ")");
	}
	if (text != NULL) {
		send_raw(s, " ");
		send_string(s, text, strlen(text));
	}
	send_raw(s, "\r\n");
}

static size_t out_pending(struct managesieve_session *s)
{
	size_t n = evbuffer_get_length(bufferevent_get_output(s->bev));
	struct bufferevent *under = bufferevent_get_underlying(s->bev);
	if (under != NULL)
		n += evbuffer_get_length(bufferevent_get_output(under));
	return n;
}

static void close_after_flush(struct managesieve_session *s)
{
	s->closing = true;
	bufferevent_disable(s->bev, EV_READ);
	event_active(s->resume_ev, EV_TIMEOUT, 0);
}

static void poll_output_later(struct managesieve_session *s)
{
	if (bufferevent_get_underlying(s->bev) != NULL) {
		struct timeval tv = { 0, 10000 };
		event_add(s->resume_ev, &tv); /* a STARTTLS filter does not call back when the socket drains */
	}
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct managesieve_session *s = arg;
	(void)fd;
	(void)what;
	if (!s->closing) {
		if (s->out_blocked && out_pending(s) <= MSIEVE_OUT_HIGH)
			s->out_blocked = false;
		if (!s->out_blocked)
			process_input(s);
		else
			poll_output_later(s);
	}
	if (s->closing) {
		if (out_pending(s) == 0) {
			session_free(s);
		} else {
			struct timeval tv = { 0, 20000 };
			event_add(s->resume_ev, &tv);
		}
	}
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct managesieve_session *s = arg;
	(void)bev;
	process_input(s);
	if (s->closing && out_pending(s) == 0)
		session_free(s);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct managesieve_session *s = arg;
	(void)bev;
	if (s->closing) {
		if (out_pending(s) == 0)
			session_free(s);
		return;
	}
	if (s->out_blocked) {
		s->out_blocked = false;
		process_input(s);
		if (s->closing && out_pending(s) == 0)
			session_free(s);
	}
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct managesieve_session *s = arg;
	(void)bev;
	if (what & BEV_EVENT_CONNECTED)
		return;
	if ((what & BEV_EVENT_TIMEOUT) && !s->closing) {
		respond(s, "BYE", NULL, "Disconnected for inactivity");
		s->closing = true;
		bufferevent_disable(s->bev, EV_READ);
		struct timeval tv = { 5, 0 };
		bufferevent_set_timeouts(s->bev, NULL, &tv);
		bufferevent_enable(s->bev, EV_WRITE);
		return;
	}
	log_info("event=msieve_disconnect sid=%s user=%s", s->sid, s->user ? s->user : "-");
	session_free(s);
}

static void setup_bev(struct managesieve_session *s)
{
	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	bufferevent_setwatermark(s->bev, EV_WRITE, MSIEVE_OUT_LOW, 0);
	bufferevent_setwatermark(s->bev, EV_READ, 0, 64 * 1024);
	struct timeval tv = { s->set->timeout_secs ? s->set->timeout_secs : 600, 0 };
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static SSL *new_ssl(struct managesieve_session *s)
{
	SSL *ssl = SSL_new(s->set->tls);
	if (ssl != NULL) {
		SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
		SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
	}
	return ssl;
}

static bool plaintext_ok(struct managesieve_session *s)
{
	return s->tls || s->set->allow_plaintext;
}

static void send_capabilities(struct managesieve_session *s)
{
	send_raw(s, "\"IMPLEMENTATION\" \"mailroute\"\r\n");
	send_raw(s, plaintext_ok(s) && s->user == NULL ? "\"SASL\" \"PLAIN\"\r\n" : "\"SASL\" \"\"\r\n");
	char *caps = sieve_capabilities(SIEVE_EXT_USER_DEFAULT);
	send_raw(s, "\"SIEVE\" ");
	send_string(s, caps, strlen(caps));
	send_raw(s, "\r\n");
	free(caps);
	if (!s->tls && s->set->tls != NULL && s->user == NULL)
		send_raw(s, "\"STARTTLS\"\r\n");
	if (s->user != NULL) {
		send_raw(s, "\"OWNER\" ");
		send_string(s, s->user, strlen(s->user));
		send_raw(s, "\r\n");
	}
	evbuffer_add_printf(out(s), "\"MAXREDIRECTS\" \"4\"\r\n");
	send_raw(s, "\"UNAUTHENTICATE\"\r\n\"VERSION\" \"1.0\"\r\n");
}

struct managesieve_session *managesieve_session_new(struct event_base *base, int fd,
                                                    const struct managesieve_settings *set, bool implicit_tls,
                                                    const char *client_ip)
{
	struct managesieve_session *s = xcalloc(1, sizeof(*s));
	s->base = base;
	s->set = set;
	snprintf(s->sid, sizeof(s->sid), "s%x%04x", (unsigned)getpid(), ++session_serial & 0xffff);
	snprintf(s->ip, sizeof(s->ip), "%s", client_ip ? client_ip : "");
	managesieve_parser_init(&s->parser, max_line(set), max_script(set));
	s->resume_ev = event_new(base, -1, 0, resume_cb, s);
	if (implicit_tls) {
		SSL *ssl = set->tls ? new_ssl(s) : NULL;
		if (ssl == NULL) {
			close(fd);
			managesieve_parser_deinit(&s->parser);
			event_free(s->resume_ev);
			free(s);
			return NULL;
		}
		s->bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
		                                        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
		s->tls = true;
	} else {
		s->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	}
	setup_bev(s);
	s->next = sessions;
	if (sessions)
		sessions->prev = s;
	sessions = s;
	session_count++;
	send_capabilities(s);
	respond(s, "OK", NULL, "mailroute ManageSieve ready");
	log_info("event=msieve_connect sid=%s ip=%s tls=%d", s->sid, s->ip, s->tls);
	return s;
}

static void session_free(struct managesieve_session *s)
{
	if (s->freeing)
		return;
	s->freeing = true;
	if (s->auth_req && s->set->auth.cancel)
		s->set->auth.cancel(s->set->auth.ctx, s->auth_req);
	if (s->prev)
		s->prev->next = s->next;
	else
		sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	session_count--;
	bufferevent_free(s->bev);
	event_free(s->resume_ev);
	managesieve_parser_deinit(&s->parser);
	free(s->user);
	free(s->auth_user);
	free(s);
}

void managesieve_sessions_shutdown(void)
{
	while (sessions) {
		struct managesieve_session *s = sessions;
		respond(s, "BYE", NULL, "Server shutting down");
		bufferevent_flush(s->bev, EV_WRITE, BEV_FLUSH);
		session_free(s);
	}
}

static void bad(struct managesieve_session *s, const char *code, const char *text)
{
	respond(s, "NO", code, text);
	if (++s->errors >= (s->set->max_errors ? s->set->max_errors : 10)) {
		respond(s, "BYE", NULL, "Too many errors");
		close_after_flush(s);
	}
}

/* ---- authentication ---- */

static void auth_done(void *arg, enum lookup_status status, const char *user, const char *maildir)
{
	struct managesieve_session *s = arg;
	(void)maildir;
	s->auth_req = NULL;
	s->auth_pending = false;
	s->busy = false;
	char *dir = NULL, *err = NULL;
	if (status == LOOKUP_OK && user != NULL && sieve_store_user_dir(s->set->data_dir, user, &dir, &err) > 0) {
		s->user = xstrdup(user);
		respond(s, "OK", NULL, "Logged in");
		log_info("event=msieve_login sid=%s user=%s ip=%s", s->sid, user, s->ip);
	} else if (status == LOOKUP_TEMPFAIL) {
		respond(s, "NO", "TRYLATER", "Authentication temporarily unavailable");
	} else {
		respond(s, "NO", NULL, "Authentication failed");
		char q[128];
		log_info("event=msieve_login_fail sid=%s ip=%s user=%s", s->sid, s->ip,
		         log_q(q, sizeof(q), s->auth_user ? s->auth_user : ""));
	}
	free(dir);
	free(err);
	xfree(&s->auth_user);
	event_active(s->resume_ev, EV_TIMEOUT, 0);
}

static void start_auth(struct managesieve_session *s, const char *user, const char *pass)
{
	if (s->set->auth.begin == NULL) {
		respond(s, "NO", "TRYLATER", "No authenticator");
		return;
	}
	free(s->auth_user);
	s->auth_user = xstrdup(user);
	s->busy = true;
	s->auth_pending = true;
	void *req = s->set->auth.begin(s->set->auth.ctx, "managesieve", user, pass, s->ip, auth_done, s);
	if (s->auth_pending)
		s->auth_req = req;
}

static void sasl_plain(struct managesieve_session *s, const char *b64, size_t len)
{
	unsigned char *raw = xmalloc(len / 4 * 3 + 4);
	long n = base64_decode(b64, len, raw);
	const char *p1 = n > 0 ? memchr(raw, '\0', (size_t)n) : NULL;
	const char *p2 = p1 ? memchr(p1 + 1, '\0', (size_t)n - (size_t)(p1 + 1 - (const char *)raw)) : NULL;
	if (p2 == NULL || memchr(p2 + 1, '\0', (size_t)n - (size_t)(p2 + 1 - (const char *)raw)) != NULL) {
		bad(s, NULL, "Invalid PLAIN response");
	} else {
		char *user = xstrndup(p1 + 1, (size_t)(p2 - p1 - 1));
		char *pass = xstrndup(p2 + 1, (size_t)n - (size_t)(p2 + 1 - (const char *)raw));
		if (raw[0] != '\0' && strcmp((const char *)raw, user) != 0)
			respond(s, "NO", NULL, "Proxy authentication not supported");
		else
			start_auth(s, user, pass);
		free(user);
		secret_free(pass);
	}
	if (n > 0)
		secret_zero(raw, (size_t)n);
	free(raw);
}

static void cmd_authenticate(struct managesieve_session *s)
{
	struct managesieve_parser *p = &s->parser;
	if (s->user != NULL) {
		bad(s, NULL, "Already authenticated");
		return;
	}
	if (p->nargs < 1 || p->nargs > 2 || p->args[0].type != MANAGESIEVE_ARG_STRING ||
	    (p->nargs == 2 && p->args[1].type != MANAGESIEVE_ARG_STRING)) {
		bad(s, NULL, "Usage: AUTHENTICATE \"PLAIN\" [initial-response]");
		return;
	}
	if (strcasecmp(managesieve_parser_arg(p, 0), "PLAIN") != 0) {
		respond(s, "NO", NULL, "Unsupported SASL mechanism");
		return;
	}
	if (!plaintext_ok(s)) {
		respond(s, "NO", "ENCRYPT-NEEDED", "Use STARTTLS first");
		return;
	}
	if (p->nargs == 2) {
		sasl_plain(s, managesieve_parser_arg(p, 1), p->args[1].len);
	} else {
		s->sasl_wait = true;
		send_raw(s, "\"\"\r\n");
	}
}

static void sasl_response(struct managesieve_session *s)
{
	struct managesieve_parser *p = &s->parser;
	s->sasl_wait = false;
	if (p->nargs != 1 || p->args[0].type != MANAGESIEVE_ARG_STRING) {
		bad(s, NULL, "Invalid SASL response");
	} else if (!p->args[0].literal && strcmp(managesieve_parser_arg(p, 0), "*") == 0) {
		respond(s, "NO", NULL, "Authentication aborted");
	} else {
		sasl_plain(s, managesieve_parser_arg(p, 0), p->args[0].len);
	}
	secret_zero(p->data.data, p->data.len);
}

static void cmd_starttls(struct managesieve_session *s)
{
	if (s->tls || s->set->tls == NULL || s->user != NULL) {
		bad(s, NULL, "STARTTLS not available");
		return;
	}
	SSL *ssl = new_ssl(s);
	if (ssl == NULL) {
		respond(s, "NO", NULL, "TLS failed");
		return;
	}
	respond(s, "OK", NULL, "Begin TLS negotiation now");
	/* whatever the client pipelined after STARTTLS was sent in plaintext: drop it */
	struct evbuffer *in = bufferevent_get_input(s->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	managesieve_parser_next(&s->parser, false);
	struct bufferevent *under = s->bev;
	bufferevent_disable(under, EV_READ);
	s->bev = bufferevent_openssl_filter_new(s->base, under, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	bufferevent_enable(under, EV_READ | EV_WRITE);
	s->tls = true;
	setup_bev(s);
	/* RFC 5804 2.2: the capabilities again, inside TLS */
	send_capabilities(s);
	respond(s, "OK", NULL, "TLS negotiation successful");
	log_info("event=msieve_starttls sid=%s", s->sid);
}

/* ---- scripts ---- */

/* the compiler says "NAME:LINE:COL: message"; the client gets "LINE:COL: message" */
static const char *strip_name(const char *err, const char *name)
{
	size_t l = strlen(name);
	if (strncmp(err, name, l) == 0 && err[l] == ':')
		return err + l + 1;
	return err;
}

/* 1 compiles, 0 with *err_r (allocated, for the client) */
static int check_script(struct managesieve_session *s, const char *name, const char *src, size_t len, bool upload,
                        char **err_r)
{
	struct sieve_store_ctx ctx = { .data_dir = s->set->data_dir, .user = s->user };
	struct sieve_compile_options opt = {
		.extensions = SIEVE_EXT_USER_DEFAULT,
		.include_resolver = sieve_store_include_resolver,
		.include_ctx = &ctx,
		.max_script_size = max_script(s->set),
		.missing_includes_ok = upload,
	};
	char *err = NULL;
	struct sieve_script *sc = sieve_compile(src, len, name, &opt, &err);
	if (sc == NULL) {
		*err_r = xstrdup(err ? strip_name(err, name) : "script does not compile");
		free(err);
		return 0;
	}
	sieve_script_free(&sc);
	return 1;
}

static void store_failed(struct managesieve_session *s, const char *op, char *err)
{
	char q[256];
	log_warn("event=msieve_store_error sid=%s user=%s op=%s error=%s", s->sid, s->user, op,
	         log_q(q, sizeof(q), err ? err : ""));
	free(err);
	respond(s, "NO", "TRYLATER", "Internal error, try again later");
}

static bool need_auth(struct managesieve_session *s)
{
	if (s->user == NULL) {
		bad(s, NULL, "Authenticate first");
		return false;
	}
	return true;
}

static bool arg_is_string(const struct managesieve_parser *p, size_t i)
{
	return i < p->nargs && p->args[i].type == MANAGESIEVE_ARG_STRING;
}

/* A script name argument: a string the store accepts. NULL after answering NO. */
static const char *name_arg(struct managesieve_session *s, size_t i)
{
	const struct managesieve_parser *p = &s->parser;
	const char *name = managesieve_parser_arg(p, i);
	if (strlen(name) != p->args[i].len || !sieve_store_valid_name(name)) {
		respond(s, "NO", NULL, "Invalid script name (1-64 of A-Z a-z 0-9 . _ -, not starting with '.')");
		return NULL;
	}
	return name;
}

/* Count the user's scripts and whether name is one of them: 1 ok, -1 answered. */
static int script_census(struct managesieve_session *s, const char *name, size_t *count_r, bool *exists_r,
                         char **active_r)
{
	char **names = NULL, *active = NULL, *err = NULL;
	size_t n = 0;
	if (sieve_store_list(s->set->data_dir, s->user, &names, &n, &active, &err) < 0) {
		store_failed(s, "list", err);
		return -1;
	}
	*exists_r = false;
	for (size_t i = 0; name != NULL && i < n; i++)
		if (strcmp(names[i], name) == 0)
			*exists_r = true;
	*count_r = n;
	if (active_r != NULL)
		*active_r = active;
	else
		free(active);
	sieve_store_list_free(names, n);
	return 1;
}

/* Room for name with size bytes; *is_active_r (optional): name is the active script. */
static bool space_ok(struct managesieve_session *s, const char *name, uint64_t size, bool *is_active_r)
{
	if (size > max_script(s->set)) {
		respond(s, "NO", "QUOTA/MAXSIZE", "Script is too large");
		return false;
	}
	size_t count;
	bool exists;
	char *active = NULL;
	if (script_census(s, name, &count, &exists, &active) < 0)
		return false;
	if (is_active_r != NULL)
		*is_active_r = active != NULL && strcmp(active, name) == 0;
	free(active);
	if (!exists && count >= max_scripts(s->set)) {
		respond(s, "NO", "QUOTA/MAXSCRIPTS", "Too many scripts");
		return false;
	}
	return true;
}

static void cmd_havespace(struct managesieve_session *s)
{
	const struct managesieve_parser *p = &s->parser;
	if (p->nargs != 2 || !arg_is_string(p, 0) || p->args[1].type != MANAGESIEVE_ARG_NUMBER) {
		bad(s, NULL, "Usage: HAVESPACE name size");
		return;
	}
	const char *name = name_arg(s, 0);
	if (name != NULL && space_ok(s, name, p->args[1].num, NULL))
		respond(s, "OK", NULL, NULL);
}

static void cmd_putscript(struct managesieve_session *s)
{
	const struct managesieve_parser *p = &s->parser;
	if (p->nargs != 2 || !arg_is_string(p, 0) || !arg_is_string(p, 1)) {
		bad(s, NULL, "Usage: PUTSCRIPT name script");
		return;
	}
	const char *name = name_arg(s, 0);
	bool is_active = false;
	if (name == NULL || !space_ok(s, name, p->args[1].len, &is_active))
		return;
	const char *src = managesieve_parser_arg(p, 1);
	size_t len = p->args[1].len;
	char *err = NULL;
	/* replacing the active script: delivery runs it next, so its includes must exist */
	if (!check_script(s, name, src, len, !is_active, &err)) {
		respond(s, "NO", NULL, err);
		free(err);
		return;
	}
	if (sieve_store_put(s->set->data_dir, s->user, name, src, len, &err) < 0) {
		store_failed(s, "put", err);
		return;
	}
	log_info("event=msieve_putscript sid=%s user=%s name=%s size=%zu", s->sid, s->user, name, len);
	respond(s, "OK", NULL, NULL);
}

static void cmd_checkscript(struct managesieve_session *s)
{
	const struct managesieve_parser *p = &s->parser;
	if (p->nargs != 1 || !arg_is_string(p, 0)) {
		bad(s, NULL, "Usage: CHECKSCRIPT script");
		return;
	}
	if (p->args[0].len > max_script(s->set)) {
		respond(s, "NO", "QUOTA/MAXSIZE", "Script is too large");
		return;
	}
	char *err = NULL;
	if (!check_script(s, "script", managesieve_parser_arg(p, 0), p->args[0].len, true, &err)) {
		respond(s, "NO", NULL, err);
		free(err);
		return;
	}
	respond(s, "OK", NULL, NULL);
}

static void cmd_listscripts(struct managesieve_session *s)
{
	if (s->parser.nargs != 0) {
		bad(s, NULL, "Usage: LISTSCRIPTS");
		return;
	}
	char **names = NULL, *active = NULL, *err = NULL;
	size_t n = 0;
	if (sieve_store_list(s->set->data_dir, s->user, &names, &n, &active, &err) < 0) {
		store_failed(s, "list", err);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		send_string(s, names[i], strlen(names[i]));
		send_raw(s, active != NULL && strcmp(active, names[i]) == 0 ? " ACTIVE\r\n" : "\r\n");
	}
	sieve_store_list_free(names, n);
	free(active);
	respond(s, "OK", NULL, NULL);
}

static void cmd_getscript(struct managesieve_session *s)
{
	const struct managesieve_parser *p = &s->parser;
	if (p->nargs != 1 || !arg_is_string(p, 0)) {
		bad(s, NULL, "Usage: GETSCRIPT name");
		return;
	}
	const char *name = name_arg(s, 0);
	if (name == NULL)
		return;
	char *src = NULL, *err = NULL;
	size_t len = 0;
	int r = sieve_store_get(s->set->data_dir, s->user, name, &src, &len, &err);
	if (r < 0) {
		store_failed(s, "get", err);
	} else if (r == 0) {
		respond(s, "NO", "NONEXISTENT", "There is no script by that name");
	} else {
		evbuffer_add_printf(out(s), "{%zu}\r\n", len);
		evbuffer_add(out(s), src, len);
		send_raw(s, "\r\n");
		respond(s, "OK", NULL, NULL);
	}
	free(src);
}

static void cmd_setactive(struct managesieve_session *s)
{
	const struct managesieve_parser *p = &s->parser;
	if (p->nargs != 1 || !arg_is_string(p, 0)) {
		bad(s, NULL, "Usage: SETACTIVE name");
		return;
	}
	char *err = NULL;
	if (p->args[0].len == 0) {
		if (sieve_store_activate(s->set->data_dir, s->user, NULL, &err) < 0)
			store_failed(s, "deactivate", err);
		else
			respond(s, "OK", NULL, "No script is active");
		return;
	}
	const char *name = name_arg(s, 0);
	if (name == NULL)
		return;
	char *src = NULL;
	size_t len = 0;
	int r = sieve_store_get(s->set->data_dir, s->user, name, &src, &len, &err);
	if (r < 0) {
		store_failed(s, "get", err);
		return;
	}
	if (r == 0) {
		respond(s, "NO", "NONEXISTENT", "There is no script by that name");
		return;
	}
	int ok = check_script(s, name, src, len, false, &err);
	free(src);
	if (!ok) {
		respond(s, "NO", NULL, err);
		free(err);
		return;
	}
	r = sieve_store_activate(s->set->data_dir, s->user, name, &err);
	if (r < 0)
		store_failed(s, "activate", err);
	else if (r == 0)
		respond(s, "NO", "NONEXISTENT", "There is no script by that name");
	else {
		log_info("event=msieve_setactive sid=%s user=%s name=%s", s->sid, s->user, name);
		respond(s, "OK", NULL, NULL);
	}
}

static void cmd_deletescript(struct managesieve_session *s)
{
	const struct managesieve_parser *p = &s->parser;
	if (p->nargs != 1 || !arg_is_string(p, 0)) {
		bad(s, NULL, "Usage: DELETESCRIPT name");
		return;
	}
	const char *name = name_arg(s, 0);
	if (name == NULL)
		return;
	size_t count;
	bool exists;
	char *active = NULL;
	if (script_census(s, name, &count, &exists, &active) < 0)
		return;
	bool is_active = active != NULL && strcmp(active, name) == 0;
	free(active);
	if (!exists) {
		respond(s, "NO", "NONEXISTENT", "There is no script by that name");
		return;
	}
	if (is_active) {
		respond(s, "NO", "ACTIVE", "You may not delete the active script");
		return;
	}
	char *err = NULL;
	int r = sieve_store_delete(s->set->data_dir, s->user, name, &err);
	if (r < 0)
		store_failed(s, "delete", err);
	else if (r == 0)
		respond(s, "NO", "NONEXISTENT", "There is no script by that name");
	else
		respond(s, "OK", NULL, NULL);
}

static void fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

static void cmd_renamescript(struct managesieve_session *s)
{
	const struct managesieve_parser *p = &s->parser;
	if (p->nargs != 2 || !arg_is_string(p, 0) || !arg_is_string(p, 1)) {
		bad(s, NULL, "Usage: RENAMESCRIPT old new");
		return;
	}
	const char *oldname = name_arg(s, 0);
	if (oldname == NULL)
		return;
	const char *newname = name_arg(s, 1);
	if (newname == NULL)
		return;
	size_t count;
	bool exists, target_exists;
	char *active = NULL;
	if (script_census(s, oldname, &count, &exists, &active) < 0)
		return;
	bool was_active = active != NULL && strcmp(active, oldname) == 0;
	free(active);
	if (!exists) {
		respond(s, "NO", "NONEXISTENT", "There is no script by that name");
		return;
	}
	if (script_census(s, newname, &count, &target_exists, NULL) < 0)
		return;
	if (target_exists) {
		respond(s, "NO", "ALREADYEXISTS", "A script by the new name exists");
		return;
	}
	if (strcmp(oldname, newname) == 0) {
		respond(s, "OK", NULL, NULL);
		return;
	}
	char *dir = NULL, *err = NULL;
	if (sieve_store_user_dir(s->set->data_dir, s->user, &dir, &err) < 0) {
		store_failed(s, "rename", err);
		return;
	}
	char *from = xasprintf("%s/%s.sieve", dir, oldname), *to = xasprintf("%s/%s.sieve", dir, newname);
	/* link first: never replaces an existing script, and the active link stays valid */
	if (link(from, to) < 0) {
		if (errno == EEXIST)
			respond(s, "NO", "ALREADYEXISTS", "A script by the new name exists");
		else if (errno == ENOENT)
			respond(s, "NO", "NONEXISTENT", "There is no script by that name");
		else
			store_failed(s, "rename", xasprintf("link %s: %s", to, strerror(errno)));
	} else if (was_active && sieve_store_activate(s->set->data_dir, s->user, newname, &err) <= 0) {
		unlink(to);
		store_failed(s, "rename", err);
	} else {
		unlink(from);
		fsync_dir(dir);
		log_info("event=msieve_renamescript sid=%s user=%s from=%s to=%s", s->sid, s->user, oldname, newname);
		respond(s, "OK", NULL, NULL);
	}
	free(from);
	free(to);
	free(dir);
}

static void cmd_noop(struct managesieve_session *s)
{
	const struct managesieve_parser *p = &s->parser;
	if (p->nargs > 1 || (p->nargs == 1 && !arg_is_string(p, 0))) {
		bad(s, NULL, "Usage: NOOP [tag]");
		return;
	}
	if (p->nargs == 1) {
		send_raw(s, "OK (TAG ");
		send_string(s, managesieve_parser_arg(p, 0), p->args[0].len);
		send_raw(s, ") \"Done\"\r\n");
	} else {
		respond(s, "OK", NULL, "Done");
	}
}

static void handle_command(struct managesieve_session *s)
{
	struct managesieve_parser *p = &s->parser;
	if (s->sasl_wait) {
		sasl_response(s);
		return;
	}
	const char *v = p->name;
	if (strcmp(v, "LOGOUT") == 0 && p->nargs == 0) {
		respond(s, "OK", NULL, "Logout completed");
		close_after_flush(s);
	} else if (strcmp(v, "CAPABILITY") == 0 && p->nargs == 0) {
		send_capabilities(s);
		respond(s, "OK", NULL, NULL);
	} else if (strcmp(v, "NOOP") == 0) {
		cmd_noop(s);
	} else if (strcmp(v, "STARTTLS") == 0 && p->nargs == 0) {
		cmd_starttls(s);
	} else if (strcmp(v, "AUTHENTICATE") == 0) {
		cmd_authenticate(s);
		secret_zero(p->data.data, p->data.len);
	} else if (strcmp(v, "UNAUTHENTICATE") == 0 && p->nargs == 0) {
		if (s->user == NULL) {
			bad(s, NULL, "Not authenticated");
		} else {
			log_info("event=msieve_unauthenticate sid=%s user=%s", s->sid, s->user);
			xfree(&s->user);
			respond(s, "OK", NULL, NULL);
		}
	} else if (strcmp(v, "HAVESPACE") == 0) {
		if (need_auth(s))
			cmd_havespace(s);
	} else if (strcmp(v, "PUTSCRIPT") == 0) {
		if (need_auth(s))
			cmd_putscript(s);
	} else if (strcmp(v, "CHECKSCRIPT") == 0) {
		if (need_auth(s))
			cmd_checkscript(s);
	} else if (strcmp(v, "LISTSCRIPTS") == 0) {
		if (need_auth(s))
			cmd_listscripts(s);
	} else if (strcmp(v, "GETSCRIPT") == 0) {
		if (need_auth(s))
			cmd_getscript(s);
	} else if (strcmp(v, "SETACTIVE") == 0) {
		if (need_auth(s))
			cmd_setactive(s);
	} else if (strcmp(v, "DELETESCRIPT") == 0) {
		if (need_auth(s))
			cmd_deletescript(s);
	} else if (strcmp(v, "RENAMESCRIPT") == 0) {
		if (need_auth(s))
			cmd_renamescript(s);
	} else {
		bad(s, NULL, "Unknown command or wrong arguments");
	}
}

static void process_input(struct managesieve_session *s)
{
	while (!s->busy && !s->closing && !s->freeing) {
		if (out_pending(s) > MSIEVE_OUT_HIGH) {
			s->out_blocked = true;
			poll_output_later(s);
			break;
		}
		struct evbuffer *in = bufferevent_get_input(s->bev);
		if (evbuffer_get_length(in) == 0)
			break;
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		size_t used = 0;
		int r = managesieve_parser_feed(&s->parser, v.iov_base, v.iov_len, &used);
		evbuffer_drain(in, used);
		if (r == 0)
			continue;
		struct managesieve_parser *p = &s->parser;
		if (r < 0) {
			if (p->fatal) {
				respond(s, "BYE", NULL, p->error);
				log_info("event=msieve_bad_input sid=%s error=\"%s\"", s->sid, p->error);
				close_after_flush(s);
				return;
			}
			if (s->sasl_wait) {
				s->sasl_wait = false;
				secret_zero(p->data.data, p->data.len);
			}
			bad(s, p->error_code, p->error);
			managesieve_parser_next(p, false);
			continue;
		}
		handle_command(s);
		if (s->freeing)
			return;
		managesieve_parser_next(p, s->sasl_wait);
	}
}
