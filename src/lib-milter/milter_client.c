#include "lib-milter/milter_client.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib-milter/filter_conn.h"
#include "lib-milter/milter_proto.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#define MILTER_OUT_MAX (4 * 1024 * 1024)
#define MILTER_HDR_MAX (1024 * 1024)
#define MILTER_MODS_MAX 1000
#define MILTER_OUT_HIGH (256 * 1024) /* stop queueing no-reply packets above this */

enum session_state {
	ST_NEGOTIATING,
	ST_READY,
	ST_WAIT_REPLY,   /* a stage command is out, its reply expected */
	ST_MESSAGE,      /* milter_message in progress */
	ST_FAILED,
};

enum msg_phase { PH_HEADERS, PH_EOH, PH_BODY, PH_EOM, PH_EOM_WAIT };

struct pending_stage {
	bool active;
	char cmd;
	uint32_t no_flag, nr_flag;
	struct buf pkt;     /* macros + command, ready to send */
	bool message;       /* a milter_message call */
};

struct milter_session {
	struct event_base *base;
	char *name, *address;
	struct milter_settings set;
	struct filter_conn *conn;
	enum session_state state;
	uint32_t actions, protocol;
	bool session_accepted;  /* ACCEPT at connect/helo */
	bool msg_done;          /* message decided */
	enum milter_decision msg_decision;
	char *msg_reply;
	int msg_code;

	struct pending_stage pending;
	char wait_cmd;          /* command whose reply is expected */
	milter_callback *cb;
	void *arg;

	/* deferred result */
	struct event *ev_defer;
	struct milter_result dres;
	char *reply_text;
	char error[200];

	/* message */
	enum msg_phase phase;
	int fd;
	uint64_t size, body_pos;
	struct buf hdrs;        /* header section from the spool */
	size_t hdr_pos;
	bool waiting_drain;
	char qid[64];
	struct milter_mod *mods;
	size_t mod_count;
	struct buf replbody;
	bool have_replbody;
	char chunk[MILTER_CHUNK_MAX];
};

const char *milter_decision_name(enum milter_decision d)
{
	switch (d) {
	case MILTER_CONTINUE: return "continue";
	case MILTER_ACCEPT: return "accept";
	case MILTER_REJECT: return "reject";
	case MILTER_TEMPFAIL: return "tempfail";
	case MILTER_DISCARD: return "discard";
	}
	return "?";
}

uint32_t milter_session_protocol(const struct milter_session *s)
{
	return s->protocol;
}

static void mods_clear(struct milter_session *s)
{
	for (size_t i = 0; i < s->mod_count; i++) {
		free(s->mods[i].name);
		free(s->mods[i].value);
		free(s->mods[i].body);
	}
	free(s->mods);
	s->mods = NULL;
	s->mod_count = 0;
	buf_reset(&s->replbody);
	s->have_replbody = false;
}

static void msg_reset(struct milter_session *s)
{
	s->msg_done = false;
	free(s->msg_reply);
	s->msg_reply = NULL;
	mods_clear(s);
}

/* ---- results ---- */

static const char *default_reply(enum milter_decision d)
{
	return d == MILTER_REJECT ? "550 5.7.1 Command rejected" : "451 4.7.1 Service unavailable - try again later";
}

static void defer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct milter_session *s = arg;
	milter_callback *cb = s->cb;
	s->cb = NULL;
	if (cb != NULL)
		cb(s->arg, &s->dres); /* last statement: cb may free s */
}

/* Deliver a result to the pending callback later on the loop. */
static void deliver(struct milter_session *s, enum milter_decision d, const char *reply)
{
	memset(&s->dres, 0, sizeof(s->dres));
	s->dres.decision = d;
	s->dres.milter = s->name;
	if (d == MILTER_REJECT || d == MILTER_TEMPFAIL) {
		free(s->reply_text);
		s->reply_text = xstrdup(reply != NULL ? reply : default_reply(d));
		s->dres.reply = s->reply_text;
		s->dres.code = (s->reply_text[0] - '0') * 100 + (s->reply_text[1] - '0') * 10 + (s->reply_text[2] - '0');
	}
	if (s->state == ST_FAILED) {
		s->dres.failed = true;
		s->dres.error = s->error;
	}
	event_active(s->ev_defer, EV_TIMEOUT, 0);
}

static void deliver_message(struct milter_session *s, enum milter_decision d, const char *reply)
{
	deliver(s, d, reply);
	s->dres.mods = s->mods;
	s->dres.mod_count = s->mod_count;
}

static void session_fail(struct milter_session *s, const char *error)
{
	char q[160];
	snprintf(s->error, sizeof(s->error), "milter %s: %s", s->name, error);
	log_warn("milter=%s event=failure error=%s", s->name, log_q(q, sizeof(q), error));
	s->state = ST_FAILED;
	filter_conn_free(&s->conn);
	buf_deinit(&s->pending.pkt);
	s->pending.active = false;
	if (s->cb != NULL)
		deliver(s, s->set.on_failure, NULL);
}

/* ---- sending ---- */

static void send_buf(struct milter_session *s, struct buf *b)
{
	filter_conn_write(s->conn, b->data, b->len);
	buf_reset(b);
}

static void message_advance(struct milter_session *s);

/* Run a prepared stage (after negotiation). */
static void stage_dispatch(struct milter_session *s)
{
	struct pending_stage *p = &s->pending;
	p->active = false;
	if (p->message) {
		buf_deinit(&p->pkt);
		s->state = ST_MESSAGE;
		s->phase = PH_HEADERS;
		message_advance(s);
		return;
	}
	if (s->protocol & p->no_flag) {
		buf_deinit(&p->pkt);
		deliver(s, MILTER_CONTINUE, NULL);
		return;
	}
	filter_conn_write(s->conn, p->pkt.data, p->pkt.len);
	buf_deinit(&p->pkt);
	if (s->protocol & p->nr_flag) {
		deliver(s, MILTER_CONTINUE, NULL);
		return;
	}
	s->wait_cmd = p->cmd;
	s->state = ST_WAIT_REPLY;
	filter_conn_set_timeout(s->conn, s->set.timeout_ms);
}

/*
 * Common entry of a stage call: returns true when the caller should build
 * the packet into s->pending.pkt and call stage_go; false when a result was
 * already deferred (failed, accepted, a call in progress).
 */
static bool stage_begin(struct milter_session *s, milter_callback *cb, void *arg, bool message_stage)
{
	if (s->cb != NULL || s->pending.active)
		log_panic("milter_client: a stage called while another is pending");
	s->cb = cb;
	s->arg = arg;
	if (s->state == ST_FAILED) {
		deliver(s, s->set.on_failure, NULL);
		return false;
	}
	if (s->session_accepted) {
		deliver(s, MILTER_ACCEPT, NULL);
		return false;
	}
	if (message_stage && s->msg_done) {
		if (s->msg_decision == MILTER_DISCARD || s->msg_decision == MILTER_ACCEPT)
			deliver(s, s->msg_decision, NULL);
		else
			deliver(s, s->msg_decision, s->msg_reply);
		return false;
	}
	buf_init(&s->pending.pkt, MILTER_OUT_MAX);
	return true;
}

static void stage_go(struct milter_session *s, char cmd, uint32_t no_flag, uint32_t nr_flag, bool message)
{
	struct pending_stage *p = &s->pending;
	p->active = true;
	p->cmd = cmd;
	p->no_flag = no_flag;
	p->nr_flag = nr_flag;
	p->message = message;
	if (s->state == ST_READY)
		stage_dispatch(s);
	/* else negotiating: dispatched when the OPTNEG reply arrives */
}

static void stage_encode_failed(struct milter_session *s)
{
	buf_deinit(&s->pending.pkt);
	session_fail(s, "command too large to encode");
}

/* ---- message sequence ---- */

/* Read the header section into s->hdrs; sets body_pos. -1 on error. */
static int message_read_headers(struct milter_session *s)
{
	size_t want = s->size < MILTER_HDR_MAX ? (size_t)s->size : MILTER_HDR_MAX;
	buf_init(&s->hdrs, MILTER_HDR_MAX);
	size_t got = 0;
	while (got < want) {
		size_t n = want - got < sizeof(s->chunk) ? want - got : sizeof(s->chunk);
		ssize_t r = pread(s->fd, s->chunk, n, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		(void)buf_append(&s->hdrs, s->chunk, (size_t)r);
		got += (size_t)r;
		/* stop early once the end of the header is in */
		if (memmem(s->hdrs.data, s->hdrs.len, "\n\r\n", 3) != NULL || memmem(s->hdrs.data, s->hdrs.len, "\n\n", 2) != NULL)
			break;
	}
	const char *d = s->hdrs.data;
	size_t len = s->hdrs.len;
	size_t end = len, body = len;
	if (len >= 2 && d[0] == '\r' && d[1] == '\n') {
		end = 0;
		body = 2;
	} else if (len >= 1 && d[0] == '\n') {
		end = 0;
		body = 1;
	} else {
		for (size_t i = 0; i + 1 < len; i++) {
			if (d[i] != '\n')
				continue;
			if (d[i + 1] == '\n') {
				end = i + 1;
				body = i + 2;
				break;
			}
			if (i + 2 < len && d[i + 1] == '\r' && d[i + 2] == '\n') {
				end = i + 1;
				body = i + 3;
				break;
			}
		}
		if (end == len && len < s->size)
			return -1; /* no end of header within the limit */
	}
	s->hdrs.len = end;
	s->hdrs.data[end] = '\0';
	s->body_pos = body;
	s->hdr_pos = 0;
	return 0;
}

/* Next header field from s->hdrs: name/value into tmp (name\0value\0). 1 found, 0 none. */
static int message_next_header(struct milter_session *s, struct buf *tmp)
{
	const char *d = s->hdrs.data;
	size_t len = s->hdrs.len;
	while (s->hdr_pos < len) {
		size_t start = s->hdr_pos, i = start;
		/* the field runs to a LF not followed by WSP */
		for (;;) {
			const char *nl = memchr(d + i, '\n', len - i);
			if (nl == NULL) {
				i = len;
				break;
			}
			i = (size_t)(nl - d) + 1;
			if (i >= len || (d[i] != ' ' && d[i] != '\t'))
				break;
		}
		s->hdr_pos = i;
		const char *colon = memchr(d + start, ':', i - start);
		if (colon == NULL || colon == d + start)
			continue; /* not a header field: skipped */
		size_t nlen = (size_t)(colon - (d + start));
		while (nlen > 0 && (d[start + nlen - 1] == ' ' || d[start + nlen - 1] == '\t'))
			nlen--;
		if (nlen == 0)
			continue;
		buf_reset(tmp);
		if (buf_append(tmp, d + start, nlen) < 0 || buf_append_c(tmp, '\0') < 0)
			continue;
		size_t v = (size_t)(colon - d) + 1, vend = i;
		while (v < vend && (d[v] == ' ' || d[v] == '\t'))
			v++;
		while (vend > v && (d[vend - 1] == '\n' || d[vend - 1] == '\r'))
			vend--;
		for (size_t k = v; k < vend; k++) {
			if (d[k] == '\r' && k + 1 < vend && d[k + 1] == '\n')
				continue; /* folded lines reach the filter with LF only, as from Sendmail */
			if (d[k] == '\0')
				continue;
			if (buf_append_c(tmp, d[k]) < 0)
				break;
		}
		if (buf_append_c(tmp, '\0') < 0)
			continue;
		return 1;
	}
	return 0;
}

static void message_wait(struct milter_session *s, char cmd, unsigned timeout_ms)
{
	s->wait_cmd = cmd;
	filter_conn_set_timeout(s->conn, timeout_ms);
}

static void message_advance(struct milter_session *s)
{
	struct buf out, tmp;

	s->waiting_drain = false;
	buf_init(&out, MILTER_OUT_MAX);
	buf_init(&tmp, MILTER_HDR_MAX);
	for (;;) {
		if (filter_conn_out_pending(s->conn) > MILTER_OUT_HIGH) {
			s->waiting_drain = true;
			break;
		}
		if (s->phase == PH_HEADERS) {
			if ((s->protocol & MILTER_P_NOHDRS) || message_next_header(s, &tmp) == 0) {
				s->phase = PH_EOH;
				continue;
			}
			if (milter_encode(&out, MILTER_CMD_HEADER, tmp.data, tmp.len) < 0) {
				s->phase = PH_EOH; /* an unencodable header is not sent */
				continue;
			}
			send_buf(s, &out);
			if (s->protocol & MILTER_P_NR_HDR)
				continue;
			message_wait(s, MILTER_CMD_HEADER, s->set.timeout_ms);
			break;
		}
		if (s->phase == PH_EOH) {
			s->phase = PH_BODY;
			if (s->protocol & MILTER_P_NOEOH)
				continue;
			(void)milter_encode(&out, MILTER_CMD_EOH, NULL, 0);
			send_buf(s, &out);
			if (s->protocol & MILTER_P_NR_EOH)
				continue;
			message_wait(s, MILTER_CMD_EOH, s->set.timeout_ms);
			break;
		}
		if (s->phase == PH_BODY) {
			if ((s->protocol & MILTER_P_NOBODY) || s->body_pos >= s->size) {
				s->phase = PH_EOM;
				continue;
			}
			uint64_t left = s->size - s->body_pos;
			size_t n = left < MILTER_CHUNK_MAX ? (size_t)left : MILTER_CHUNK_MAX;
			ssize_t r = pread(s->fd, s->chunk, n, (off_t)s->body_pos);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				buf_deinit(&out);
				buf_deinit(&tmp);
				session_fail(s, "spool read error");
				return;
			}
			s->body_pos += (uint64_t)r;
			(void)milter_encode(&out, MILTER_CMD_BODY, s->chunk, (size_t)r);
			send_buf(s, &out);
			if (s->protocol & MILTER_P_NR_BODY)
				continue;
			message_wait(s, MILTER_CMD_BODY, s->set.timeout_ms);
			break;
		}
		if (s->phase == PH_EOM) {
			const char *names[] = {"i"};
			const char *values[] = {s->qid[0] ? s->qid : NULL};
			(void)milter_encode_macros(&out, MILTER_CMD_BODYEOB, names, values, 1);
			(void)milter_encode(&out, MILTER_CMD_BODYEOB, NULL, 0);
			send_buf(s, &out);
			s->phase = PH_EOM_WAIT;
			message_wait(s, MILTER_CMD_BODYEOB, s->set.eom_timeout_ms);
			break;
		}
		break;
	}
	buf_deinit(&out);
	buf_deinit(&tmp);
}

/* End the message sequence with a decision. */
static void message_end(struct milter_session *s, enum milter_decision d, const char *reply)
{
	s->state = ST_READY;
	buf_deinit(&s->hdrs);
	if (d != MILTER_CONTINUE) {
		s->msg_done = true;
		s->msg_decision = d;
		free(s->msg_reply);
		s->msg_reply = reply != NULL ? xstrdup(reply) : NULL;
	}
	if (s->have_replbody) {
		s->mods = xreallocarray(s->mods, s->mod_count + 1, sizeof(*s->mods));
		struct milter_mod *m = &s->mods[s->mod_count++];
		memset(m, 0, sizeof(*m));
		m->type = MILTER_MOD_REPLACE_BODY;
		m->body_len = s->replbody.len;
		m->body = buf_steal(&s->replbody);
		m->milter = s->name;
		s->have_replbody = false;
	}
	deliver_message(s, d, reply);
}

static int add_mod(struct milter_session *s, enum milter_mod_type type, uint32_t index, const char *name,
                   const char *value)
{
	if (s->mod_count >= MILTER_MODS_MAX)
		return -1;
	s->mods = xreallocarray(s->mods, s->mod_count + 1, sizeof(*s->mods));
	struct milter_mod *m = &s->mods[s->mod_count++];
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->index = index;
	m->name = name ? xstrdup(name) : NULL;
	m->value = value ? xstrdup(value) : NULL;
	m->milter = s->name;
	return 0;
}

/* ---- replies ---- */

static enum milter_decision final_decision(const struct milter_reply *r, const char **reply_r)
{
	*reply_r = NULL;
	switch (r->cmd) {
	case MILTER_REPLY_ACCEPT: return MILTER_ACCEPT;
	case MILTER_REPLY_CONTINUE: return MILTER_CONTINUE;
	case MILTER_REPLY_DISCARD: return MILTER_DISCARD;
	case MILTER_REPLY_REJECT: return MILTER_REJECT;
	case MILTER_REPLY_REPLYCODE:
		*reply_r = r->text;
		return r->code >= 500 ? MILTER_REJECT : MILTER_TEMPFAIL;
	default: return MILTER_TEMPFAIL; /* tempfail, conn_fail, shutdown */
	}
}

static bool is_final(char cmd)
{
	return cmd == MILTER_REPLY_ACCEPT || cmd == MILTER_REPLY_CONTINUE || cmd == MILTER_REPLY_DISCARD ||
	       cmd == MILTER_REPLY_REJECT || cmd == MILTER_REPLY_TEMPFAIL || cmd == MILTER_REPLY_REPLYCODE ||
	       cmd == MILTER_REPLY_CONN_FAIL || cmd == MILTER_REPLY_SHUTDOWN;
}

/* 0 handled, -1 failed (session_fail done or to do by caller with error_r). */
static int handle_eom_mod(struct milter_session *s, const struct milter_reply *r, const char **error_r)
{
	int ret = 0;
	switch (r->cmd) {
	case MILTER_REPLY_ADDHEADER:
		ret = add_mod(s, MILTER_MOD_ADD_HEADER, 0, r->name, r->value);
		break;
	case MILTER_REPLY_INSHEADER:
		ret = add_mod(s, MILTER_MOD_INSERT_HEADER, r->index, r->name, r->value);
		break;
	case MILTER_REPLY_CHGHEADER:
		ret = add_mod(s, MILTER_MOD_CHANGE_HEADER, r->index, r->name, r->value);
		break;
	case MILTER_REPLY_ADDRCPT:
	case MILTER_REPLY_ADDRCPT_PAR:
		ret = add_mod(s, MILTER_MOD_ADD_RCPT, 0, r->name, r->value);
		break;
	case MILTER_REPLY_DELRCPT:
		ret = add_mod(s, MILTER_MOD_DEL_RCPT, 0, r->name, NULL);
		break;
	case MILTER_REPLY_CHGFROM:
		ret = add_mod(s, MILTER_MOD_CHANGE_FROM, 0, r->name, r->value);
		break;
	case MILTER_REPLY_QUARANTINE:
		ret = add_mod(s, MILTER_MOD_QUARANTINE, 0, NULL, r->text);
		break;
	case MILTER_REPLY_REPLBODY:
		s->have_replbody = true;
		if (buf_append(&s->replbody, r->body, r->body_len) < 0) {
			*error_r = "replaced body too large";
			return -1;
		}
		return 0;
	case MILTER_REPLY_PROGRESS:
		filter_conn_set_timeout(s->conn, s->set.eom_timeout_ms);
		return 0;
	default:
		*error_r = "unexpected reply at end of message";
		return -1;
	}
	if (ret < 0) {
		*error_r = "too many modifications";
		return -1;
	}
	return 0;
}

static void handle_negotiation(struct milter_session *s, const struct milter_reply *r)
{
	if (r->cmd != MILTER_REPLY_OPTNEG) {
		session_fail(s, "expected an OPTNEG reply");
		return;
	}
	if (r->version < 2 || r->version > MILTER_VERSION) {
		session_fail(s, "unsupported milter protocol version");
		return;
	}
	s->actions = r->actions & MILTER_ACT_ALL;
	s->protocol = r->protocol & MILTER_P_OFFERED;
	s->state = ST_READY;
	filter_conn_set_timeout(s->conn, 0);
	if (s->pending.active)
		stage_dispatch(s);
}

/* One reply packet. Returns false if the session must not be touched any more. */
static bool handle_reply(struct milter_session *s, const struct milter_reply *r)
{
	const char *reply, *error;

	if (s->state == ST_NEGOTIATING) {
		handle_negotiation(s, r);
		return s->state != ST_FAILED;
	}
	if (s->state == ST_WAIT_REPLY) {
		if (r->cmd == MILTER_REPLY_PROGRESS) {
			filter_conn_set_timeout(s->conn, s->set.timeout_ms);
			return true;
		}
		if (!is_final(r->cmd) && r->cmd != MILTER_REPLY_SKIP) {
			session_fail(s, "modification outside end of message");
			return false;
		}
		enum milter_decision d = r->cmd == MILTER_REPLY_SKIP ? MILTER_CONTINUE : final_decision(r, &reply);
		if (r->cmd == MILTER_REPLY_SKIP)
			reply = NULL;
		char cmd = s->wait_cmd;
		s->state = ST_READY;
		filter_conn_set_timeout(s->conn, 0);
		if ((cmd == MILTER_CMD_CONNECT || cmd == MILTER_CMD_HELO) && d == MILTER_ACCEPT)
			s->session_accepted = true;
		if ((cmd == MILTER_CMD_MAIL || cmd == MILTER_CMD_DATA) && d != MILTER_CONTINUE) {
			s->msg_done = true;
			s->msg_decision = d;
			free(s->msg_reply);
			s->msg_reply = reply ? xstrdup(reply) : NULL;
		}
		if (r->cmd == MILTER_REPLY_CONN_FAIL || r->cmd == MILTER_REPLY_SHUTDOWN) {
			deliver(s, MILTER_TEMPFAIL, NULL);
			s->session_accepted = false;
			s->state = ST_FAILED;
			snprintf(s->error, sizeof(s->error), "milter %s: shut down the connection", s->name);
			filter_conn_free(&s->conn);
			return false;
		}
		deliver(s, d, reply);
		return true;
	}
	if (s->state == ST_MESSAGE) {
		if (s->phase == PH_EOM_WAIT) {
			if (is_final(r->cmd)) {
				enum milter_decision d = final_decision(r, &reply);
				if (d == MILTER_CONTINUE)
					d = MILTER_ACCEPT;
				filter_conn_set_timeout(s->conn, 0);
				message_end(s, d, reply);
				return s->state != ST_FAILED;
			}
			if (handle_eom_mod(s, r, &error) < 0) {
				session_fail(s, error);
				return false;
			}
			return true;
		}
		if (r->cmd == MILTER_REPLY_PROGRESS) {
			filter_conn_set_timeout(s->conn, s->set.timeout_ms);
			return true;
		}
		if (r->cmd == MILTER_REPLY_CONTINUE) {
			message_advance(s);
			return s->state == ST_MESSAGE;
		}
		if (r->cmd == MILTER_REPLY_SKIP && s->phase == PH_BODY) {
			s->phase = PH_EOM;
			message_advance(s);
			return s->state == ST_MESSAGE;
		}
		if (is_final(r->cmd)) {
			enum milter_decision d = final_decision(r, &reply);
			filter_conn_set_timeout(s->conn, 0);
			message_end(s, d, reply);
			return s->state != ST_FAILED;
		}
		session_fail(s, "unexpected reply during the message");
		return false;
	}
	session_fail(s, "unsolicited reply");
	return false;
}

static void conn_cb(void *arg, enum filter_conn_event ev, const char *error)
{
	struct milter_session *s = arg;
	char why[200];

	switch (ev) {
	case FILTER_CONN_DRAINED:
		if (s->state == ST_MESSAGE && s->waiting_drain)
			message_advance(s);
		return;
	case FILTER_CONN_READ:
	case FILTER_CONN_EOF: {
		struct buf *in = filter_conn_input(s->conn);
		size_t off = 0;
		for (;;) {
			struct milter_packet pkt;
			struct milter_reply r;
			size_t used;
			const char *perr;
			int ret = milter_packet_parse(in->data + off, in->len - off, MILTER_PACKET_MAX, &pkt, &used, &perr);
			if (ret < 0) {
				session_fail(s, perr);
				return;
			}
			if (ret == 0)
				break;
			if (milter_reply_decode(&pkt, &r, &perr) < 0) {
				session_fail(s, perr);
				return;
			}
			/* the reply's strings point into in: consume after handling */
			bool go_on = handle_reply(s, &r);
			off += used;
			if (!go_on || s->conn == NULL) {
				if (s->conn != NULL)
					buf_consume(filter_conn_input(s->conn), off);
				return;
			}
		}
		buf_consume(in, off);
		if (ev == FILTER_CONN_EOF)
			session_fail(s, in->len > 0 ? "connection closed inside a reply" : "connection closed");
		return;
	}
	case FILTER_CONN_ERROR:
		snprintf(why, sizeof(why), "%s", error);
		session_fail(s, why);
		return;
	case FILTER_CONN_TIMEOUT:
		session_fail(s, "timeout");
		return;
	}
}

/* ---- public ---- */

struct milter_session *milter_session_new(struct event_base *base, const struct milter_settings *set)
{
	struct milter_session *s = xcalloc(1, sizeof(*s));
	struct buf out;

	s->base = base;
	s->set = *set;
	s->name = xstrdup(set->name ? set->name : "milter");
	s->address = xstrdup(set->address ? set->address : "");
	s->set.name = s->name;
	s->set.address = s->address;
	if (s->set.connect_timeout_ms == 0)
		s->set.connect_timeout_ms = 5000;
	if (s->set.timeout_ms == 0)
		s->set.timeout_ms = 10000;
	if (s->set.eom_timeout_ms == 0)
		s->set.eom_timeout_ms = 60000;
	if (s->set.max_body == 0)
		s->set.max_body = 64 * 1024 * 1024;
	if (s->set.on_failure != MILTER_ACCEPT)
		s->set.on_failure = MILTER_TEMPFAIL;
	s->fd = -1;
	buf_init(&s->replbody, s->set.max_body);
	s->ev_defer = event_new(base, -1, 0, defer_cb, s);
	if (s->ev_defer == NULL)
		abort();
	s->state = ST_NEGOTIATING;
	s->conn = filter_conn_new(base, s->address, 2 * MILTER_PACKET_MAX, s->set.connect_timeout_ms, conn_cb, s);
	buf_init(&out, 64);
	(void)milter_encode_optneg(&out, MILTER_VERSION, MILTER_ACT_ALL, MILTER_P_OFFERED);
	send_buf(s, &out);
	buf_deinit(&out);
	return s;
}

void milter_session_free(struct milter_session **sp)
{
	struct milter_session *s = *sp;
	if (s == NULL)
		return;
	*sp = NULL;
	filter_conn_free(&s->conn);
	event_free(s->ev_defer);
	buf_deinit(&s->pending.pkt);
	buf_deinit(&s->hdrs);
	mods_clear(s);
	buf_deinit(&s->replbody);
	free(s->msg_reply);
	free(s->reply_text);
	free(s->name);
	free(s->address);
	free(s);
}

void milter_connect(struct milter_session *s, const struct milter_conn_info *info, milter_callback *cb,
                    void *arg)
{
	if (!stage_begin(s, cb, arg, false))
		return;
	char underscore[512], client_name[300];
	const char *ip = info->client_ip;
	snprintf(client_name, sizeof(client_name), info->client_name ? "%s" : "[%s]",
	         info->client_name ? info->client_name : ip ? ip : "unknown");
	snprintf(underscore, sizeof(underscore), "%s [%s]", client_name, ip ? ip : "unknown");
	const char *names[] = {"j", "{daemon_name}", "_", "{client_addr}", "{client_name}", "{client_port}"};
	char port[8];
	snprintf(port, sizeof(port), "%u", info->client_port);
	const char *values[] = {info->my_hostname, info->daemon_name, underscore, ip, client_name, ip ? port : NULL};
	char family = ip == NULL ? 'U' : strchr(ip, ':') != NULL ? '6' : '4';
	if (milter_encode_macros(&s->pending.pkt, MILTER_CMD_CONNECT, names, values, 6) < 0 ||
	    milter_encode_connect(&s->pending.pkt, client_name, family, info->client_port, ip ? ip : "") < 0) {
		stage_encode_failed(s);
		return;
	}
	stage_go(s, MILTER_CMD_CONNECT, MILTER_P_NOCONNECT, MILTER_P_NR_CONN, false);
}

void milter_helo(struct milter_session *s, const char *helo, const char *tls_version, milter_callback *cb,
                 void *arg)
{
	if (!stage_begin(s, cb, arg, false))
		return;
	const char *names[] = {"{tls_version}"};
	const char *values[] = {tls_version};
	if (milter_encode_macros(&s->pending.pkt, MILTER_CMD_HELO, names, values, 1) < 0 ||
	    milter_encode_strings(&s->pending.pkt, MILTER_CMD_HELO, helo, NULL) < 0) {
		stage_encode_failed(s);
		return;
	}
	stage_go(s, MILTER_CMD_HELO, MILTER_P_NOHELO, MILTER_P_NR_HELO, false);
}

void milter_mail(struct milter_session *s, const char *from, const char *const *args, size_t nargs,
                 const char *auth_user, milter_callback *cb, void *arg)
{
	if (s->state != ST_FAILED && s->cb == NULL)
		msg_reset(s); /* a new transaction */
	if (!stage_begin(s, cb, arg, true))
		return;
	/* pitfall 6: {auth_authen} only for authenticated sessions, never empty */
	const char *names[] = {"{mail_addr}", "{auth_authen}"};
	const char *values[] = {from, auth_user != NULL && auth_user[0] != '\0' ? auth_user : NULL};
	if (milter_encode_macros(&s->pending.pkt, MILTER_CMD_MAIL, names, values, 2) < 0 ||
	    milter_encode_envelope(&s->pending.pkt, MILTER_CMD_MAIL, from, args, nargs) < 0) {
		stage_encode_failed(s);
		return;
	}
	stage_go(s, MILTER_CMD_MAIL, MILTER_P_NOMAIL, MILTER_P_NR_MAIL, false);
}

void milter_rcpt(struct milter_session *s, const char *rcpt, const char *const *args, size_t nargs,
                 milter_callback *cb, void *arg)
{
	if (!stage_begin(s, cb, arg, true))
		return;
	const char *names[] = {"{rcpt_addr}"};
	const char *values[] = {rcpt};
	if (milter_encode_macros(&s->pending.pkt, MILTER_CMD_RCPT, names, values, 1) < 0 ||
	    milter_encode_envelope(&s->pending.pkt, MILTER_CMD_RCPT, rcpt, args, nargs) < 0) {
		stage_encode_failed(s);
		return;
	}
	stage_go(s, MILTER_CMD_RCPT, MILTER_P_NORCPT, MILTER_P_NR_RCPT, false);
}

void milter_data(struct milter_session *s, const char *queue_id, milter_callback *cb, void *arg)
{
	if (!stage_begin(s, cb, arg, true))
		return;
	const char *names[] = {"i"};
	const char *values[] = {queue_id};
	if (milter_encode_macros(&s->pending.pkt, MILTER_CMD_DATA, names, values, 1) < 0 ||
	    milter_encode(&s->pending.pkt, MILTER_CMD_DATA, NULL, 0) < 0) {
		stage_encode_failed(s);
		return;
	}
	stage_go(s, MILTER_CMD_DATA, MILTER_P_NODATA, MILTER_P_NR_DATA, false);
}

void milter_message(struct milter_session *s, int fd, uint64_t size, const char *queue_id, milter_callback *cb,
                    void *arg)
{
	if (!stage_begin(s, cb, arg, true))
		return;
	mods_clear(s);
	s->fd = fd;
	s->size = size;
	snprintf(s->qid, sizeof(s->qid), "%s", queue_id ? queue_id : "");
	if (message_read_headers(s) < 0) {
		buf_deinit(&s->pending.pkt);
		session_fail(s, "cannot read the message header from the spool");
		return;
	}
	stage_go(s, MILTER_CMD_BODYEOB, 0, 0, true);
}

void milter_abort(struct milter_session *s)
{
	s->cb = NULL;
	if (s->ev_defer != NULL)
		event_del(s->ev_defer);
	if (s->state == ST_FAILED)
		return;
	if (s->pending.active) {
		/* still negotiating: the stage is simply not sent */
		s->pending.active = false;
		buf_deinit(&s->pending.pkt);
	}
	if (s->state == ST_WAIT_REPLY || s->state == ST_MESSAGE) {
		/* a reply is in flight: we cannot resynchronise, so stop using this filter */
		session_fail(s, "aborted while waiting for a reply");
		return;
	}
	msg_reset(s);
	if (s->conn != NULL) {
		struct buf out;
		buf_init(&out, 16);
		(void)milter_encode(&out, MILTER_CMD_ABORT, NULL, 0);
		send_buf(s, &out);
		buf_deinit(&out);
	}
}
