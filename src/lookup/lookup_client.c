#include "lookup/lookup_client.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "lib/ipc_client.h"
#include "lib/xalloc.h"
#include "master/proto.h"

struct lookup_client {
	struct ipc_client *ipc;
};

struct lookup_req {
	struct ipc_call *call;
	lookup_auth_cb *auth_cb;
	lookup_rcpt_cb *rcpt_cb;
	lookup_spf_cb *spf_cb;
	lookup_mailauth_cb *mailauth_cb;
	lookup_dnsbl_cb *dnsbl_cb;
	void *arg;
};

struct lookup_client *lookup_client_new(struct event_base *base, const char *ipc_prefix)
{
	struct lookup_client *lc = xcalloc(1, sizeof(*lc));
	char *name = xasprintf("%s/lookup", ipc_prefix);
	lc->ipc = ipc_client_new(base, name);
	free(name);
	return lc;
}

void lookup_client_free(struct lookup_client **lcp)
{
	if (*lcp == NULL)
		return;
	ipc_client_free(&(*lcp)->ipc);
	xfree(lcp);
}

static void on_auth_reply(void *arg, struct ipc_reader *r, int fd)
{
	struct lookup_req *req = arg;
	if (fd >= 0)
		close(fd);
	enum lookup_status st = LOOKUP_TEMPFAIL;
	char *user = NULL, *maildir = NULL;
	if (r != NULL) {
		st = (enum lookup_status)((int)ipc_get_u32(r) - 1);
		user = ipc_get_strdup(r);
		maildir = ipc_get_strdup(r);
		if (ipc_reader_end(r) < 0 || r->type != PROTO_LOOKUP_AUTH_R)
			st = LOOKUP_TEMPFAIL;
	}
	req->auth_cb(req->arg, st, st == LOOKUP_OK ? user : NULL, st == LOOKUP_OK ? maildir : NULL);
	free(user);
	free(maildir);
	free(req);
}

struct lookup_req *lookup_client_auth(struct lookup_client *lc, const char *service, const char *user,
                                      const char *password, const char *client_ip, lookup_auth_cb *cb,
                                      void *arg)
{
	struct lookup_req *req = xcalloc(1, sizeof(*req));
	req->auth_cb = cb;
	req->arg = arg;
	struct ipc_msg m;
	ipc_msg_init(&m, PROTO_LOOKUP_AUTH, 0);
	ipc_put_str(&m, service);
	ipc_put_str(&m, user);
	ipc_put_str(&m, password);
	ipc_put_str(&m, client_ip);
	req->call = ipc_client_call(lc->ipc, &m, on_auth_reply, req);
	secret_zero(m.b.data, m.b.len);
	ipc_msg_deinit(&m);
	return req;
}

static void on_rcpt_reply(void *arg, struct ipc_reader *r, int fd)
{
	struct lookup_req *req = arg;
	if (fd >= 0)
		close(fd);
	int code = 451;
	char enhanced[16] = "4.3.0", text[512] = "Temporary lookup failure";
	if (r != NULL) {
		code = (int)ipc_get_u32(r);
		ipc_get_str(r, enhanced, sizeof(enhanced));
		ipc_get_str(r, text, sizeof(text));
		if (ipc_reader_end(r) < 0 || r->type != PROTO_LOOKUP_RCPT_R || code < 200 || code > 599) {
			code = 451;
			snprintf(enhanced, sizeof(enhanced), "4.3.0");
			snprintf(text, sizeof(text), "Temporary lookup failure");
		}
	}
	req->rcpt_cb(req->arg, code, enhanced, text);
	free(req);
}

struct lookup_req *lookup_client_rcpt(struct lookup_client *lc, const char *address, const char *client_ip,
                                      const char *auth_user, int listen_kind, const char *sender,
                                      lookup_rcpt_cb *cb, void *arg)
{
	struct lookup_req *req = xcalloc(1, sizeof(*req));
	req->rcpt_cb = cb;
	req->arg = arg;
	struct ipc_msg m;
	ipc_msg_init(&m, PROTO_LOOKUP_RCPT, 0);
	ipc_put_str(&m, address);
	ipc_put_str(&m, client_ip);
	ipc_put_str(&m, auth_user);
	ipc_put_u32(&m, (uint32_t)listen_kind);
	ipc_put_str(&m, sender);
	req->call = ipc_client_call(lc->ipc, &m, on_rcpt_reply, req);
	ipc_msg_deinit(&m);
	return req;
}

static void on_sender_reply(void *arg, struct ipc_reader *r, int fd)
{
	struct lookup_req *req = arg;
	if (fd >= 0)
		close(fd);
	int code = 451;
	char enhanced[16] = "4.3.0", text[512] = "Temporary lookup failure";
	if (r != NULL) {
		code = (int)ipc_get_u32(r);
		ipc_get_str(r, enhanced, sizeof(enhanced));
		ipc_get_str(r, text, sizeof(text));
		if (ipc_reader_end(r) < 0 || r->type != PROTO_LOOKUP_SENDER_R || code < 200 || code > 599) {
			code = 451;
			snprintf(enhanced, sizeof(enhanced), "4.3.0");
			snprintf(text, sizeof(text), "Temporary lookup failure");
		}
	}
	req->rcpt_cb(req->arg, code, enhanced, text);
	free(req);
}

struct lookup_req *lookup_client_sender(struct lookup_client *lc, const char *auth_user, const char *sender,
                                        lookup_rcpt_cb *cb, void *arg)
{
	struct lookup_req *req = xcalloc(1, sizeof(*req));
	req->rcpt_cb = cb;
	req->arg = arg;
	struct ipc_msg m;
	ipc_msg_init(&m, PROTO_LOOKUP_SENDER, 0);
	ipc_put_str(&m, auth_user);
	ipc_put_str(&m, sender);
	req->call = ipc_client_call(lc->ipc, &m, on_sender_reply, req);
	ipc_msg_deinit(&m);
	return req;
}

static void on_spf_reply(void *arg, struct ipc_reader *r, int fd)
{
	struct lookup_req *req = arg;
	if (fd >= 0)
		close(fd);
	int code = 250;
	char result[32] = "temperror", enhanced[16] = "2.0.0", text[512] = "", authres[1024] = "";
	bool ok = false;
	if (r != NULL) {
		ipc_get_str(r, result, sizeof(result));
		code = (int)ipc_get_u32(r);
		ipc_get_str(r, enhanced, sizeof(enhanced));
		ipc_get_str(r, text, sizeof(text));
		ipc_get_str(r, authres, sizeof(authres));
		ok = ipc_reader_end(r) == 0 && r->type == PROTO_LOOKUP_SPF_R && code >= 200 && code <= 599;
	}
	if (!ok) {
		/* The lookup role is away: SPF is a filter, not a reason to refuse mail. */
		snprintf(result, sizeof(result), "temperror");
		code = 250;
		snprintf(enhanced, sizeof(enhanced), "2.0.0");
		text[0] = authres[0] = '\0';
	}
	req->spf_cb(req->arg, result, code, enhanced, text, authres);
	free(req);
}

struct lookup_req *lookup_client_spf(struct lookup_client *lc, const char *client_ip, const char *helo,
                                     const char *mailfrom, lookup_spf_cb *cb, void *arg)
{
	struct lookup_req *req = xcalloc(1, sizeof(*req));
	req->spf_cb = cb;
	req->arg = arg;
	struct ipc_msg m;
	ipc_msg_init(&m, PROTO_LOOKUP_SPF, 0);
	ipc_put_str(&m, client_ip);
	ipc_put_str(&m, helo);
	ipc_put_str(&m, mailfrom);
	req->call = ipc_client_call(lc->ipc, &m, on_spf_reply, req);
	ipc_msg_deinit(&m);
	return req;
}

static void on_mailauth_reply(void *arg, struct ipc_reader *r, int fd)
{
	struct lookup_req *req = arg;
	if (fd >= 0)
		close(fd);
	uint32_t action = LOOKUP_MAILAUTH_ACCEPT;
	int code = 250;
	char enhanced[16] = "2.0.0", text[512] = "";
	char *headers = NULL;
	bool ok = false;
	if (r != NULL) {
		action = ipc_get_u32(r);
		code = (int)ipc_get_u32(r);
		ipc_get_str(r, enhanced, sizeof(enhanced));
		ipc_get_str(r, text, sizeof(text));
		headers = ipc_get_strdup(r);
		ok = ipc_reader_end(r) == 0 && r->type == PROTO_LOOKUP_MAILAUTH_R && action <= 2 && code >= 200 &&
		     code <= 599;
	}
	if (!ok) {
		action = LOOKUP_MAILAUTH_UNCHECKED;
		code = 451;
		snprintf(enhanced, sizeof(enhanced), "4.3.0");
		snprintf(text, sizeof(text), "Temporary lookup failure");
		xfree(&headers);
	}
	req->mailauth_cb(req->arg, (enum lookup_mailauth_action)action, code, enhanced, text, headers);
	free(headers);
	free(req);
}

struct lookup_req *lookup_client_mailauth(struct lookup_client *lc, const char *client_ip, const char *helo,
                                          const char *mailfrom, const char *auth_user, int listen_kind,
                                          int spool_fd, lookup_mailauth_cb *cb, void *arg)
{
	struct lookup_req *req = xcalloc(1, sizeof(*req));
	req->mailauth_cb = cb;
	req->arg = arg;
	struct ipc_msg m;
	ipc_msg_init(&m, PROTO_LOOKUP_MAILAUTH, 0);
	ipc_put_str(&m, client_ip);
	ipc_put_str(&m, helo);
	ipc_put_str(&m, mailfrom);
	ipc_put_str(&m, auth_user);
	ipc_put_u32(&m, (uint32_t)listen_kind);
	m.fd = spool_fd;
	req->call = ipc_client_call(lc->ipc, &m, on_mailauth_reply, req);
	ipc_msg_deinit(&m);
	return req;
}

static void on_dnsbl_reply(void *arg, struct ipc_reader *r, int fd)
{
	struct lookup_req *req = arg;
	if (fd >= 0)
		close(fd);
	int score = 0;
	unsigned failed = 1;
	char first[256] = "", hits[1024] = "";
	if (r != NULL) {
		score = (int)(int32_t)ipc_get_u32(r);
		ipc_get_str(r, first, sizeof(first));
		ipc_get_str(r, hits, sizeof(hits));
		failed = ipc_get_u32(r);
		if (ipc_reader_end(r) < 0 || r->type != PROTO_LOOKUP_DNSBL_R) {
			score = 0;
			failed = 1;
			first[0] = hits[0] = '\0';
		}
	}
	req->dnsbl_cb(req->arg, score, first[0] ? first : NULL, hits, failed);
	free(req);
}

struct lookup_req *lookup_client_dnsbl(struct lookup_client *lc, const char *client_ip, const char *domain,
                                       lookup_dnsbl_cb *cb, void *arg)
{
	struct lookup_req *req = xcalloc(1, sizeof(*req));
	req->dnsbl_cb = cb;
	req->arg = arg;
	struct ipc_msg m;
	ipc_msg_init(&m, PROTO_LOOKUP_DNSBL, 0);
	ipc_put_str(&m, client_ip);
	ipc_put_str(&m, domain);
	req->call = ipc_client_call(lc->ipc, &m, on_dnsbl_reply, req);
	ipc_msg_deinit(&m);
	return req;
}

void lookup_req_cancel(struct lookup_req **reqp)
{
	struct lookup_req *req = *reqp;
	if (req == NULL)
		return;
	*reqp = NULL;
	ipc_call_cancel(&req->call);
	free(req);
}
