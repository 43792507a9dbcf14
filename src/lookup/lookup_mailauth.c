/*
 * lookup_mailauth: SPF at MAIL, the sender check on submission and the
 * end-of-data authentication check (see lookup_mailauth.h).
 */
#include "lookup/lookup_mailauth.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/fileio.h"
#include "lib-auth/dkim.h"
#include "lib-auth/mailauth.h"
#include "lib-auth/spf.h"
#include "lib-dns/dns_authdns.h"
#include "lib-dns/dns_resolver.h"
#include "lib/buf.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/workpool.h"
#include "lib/xalloc.h"
#include "lookup/lookup_client.h"
#include "lookup/lookup_policy.h"
#include "master/proto.h"

#define DNS_TIMEOUT_MS 5000
#define DNS_BUDGET_MS 30000       /* all DNS of one check; then every lookup is a temperror */
#define WORKERS 4
#define DNS_POOL WORKERS
#define MSG_SLACK (1024 * 1024)   /* our Received: header and dot-unstuffing slack over the size limit */
#define KEY_MAX (64 * 1024)
#define HEADERS_MAX 15000         /* the smtp session keeps at most 16 KiB of fields to prepend */
#define ADDR_MAX 512

static struct {
	const struct mr_config *cfg;
	struct event_base *base;
	struct directory *dir;
	const struct route_options *ropt;
	lookup_conn_alive_fn *alive;
	struct workpool *pool;
	pthread_mutex_t dns_lock;
	struct dns_sync *dns_free[DNS_POOL];
	size_t dns_free_count;
} M = { .dns_lock = PTHREAD_MUTEX_INITIALIZER };

void lookup_mailauth_init(struct event_base *base, const struct mr_config *cfg, struct directory *dir,
                          const struct route_options *ropt, lookup_conn_alive_fn *alive)
{
	M.cfg = cfg;
	M.base = base;
	M.dir = dir;
	M.ropt = ropt;
	M.alive = alive;
	/* Our own threads: a slow DNS answer must not hold up password checks. */
	M.pool = workpool_new(base, WORKERS);
}

void lookup_mailauth_deinit(void)
{
	workpool_free(&M.pool);
	for (size_t i = 0; i < M.dns_free_count; i++)
		dns_sync_free(&M.dns_free[i]);
	M.dns_free_count = 0;
}

/* ---- blocking resolvers, one per running job ---- */

static struct dns_sync *dns_get(void)
{
	struct dns_sync *s = NULL;
	pthread_mutex_lock(&M.dns_lock);
	if (M.dns_free_count > 0)
		s = M.dns_free[--M.dns_free_count];
	pthread_mutex_unlock(&M.dns_lock);
	if (s != NULL)
		return s;
	char *error = NULL;
	s = dns_sync_new((const char *const *)M.cfg->dns_forward, M.cfg->dns_forward_count, DNS_TIMEOUT_MS, &error);
	if (s == NULL) {
		log_warn("event=dns_init_failed error=\"%s\"", error != NULL ? error : "?");
		free(error);
	}
	return s;
}

static void dns_put(struct dns_sync *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&M.dns_lock);
	if (M.dns_free_count < DNS_POOL) {
		M.dns_free[M.dns_free_count++] = s;
		s = NULL;
	}
	pthread_mutex_unlock(&M.dns_lock);
	dns_sync_free(&s);
}

/*
 * A time budget over the resolver: SPF alone may make 200 queries, each waiting
 * up to DNS_TIMEOUT_MS when a domain's servers are dead. After DNS_BUDGET_MS
 * every lookup fails at once (temperror), so one message never holds a worker
 * (and its SMTP client) for minutes.
 */
struct dns_budget {
	struct authdns inner;
	struct timespec deadline;
};

static bool budget_spent(struct dns_budget *b, struct authdns_answer *ans)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec < b->deadline.tv_sec || (now.tv_sec == b->deadline.tv_sec && now.tv_nsec < b->deadline.tv_nsec))
		return false;
	ans->status = AUTHDNS_TEMPFAIL;
	return true;
}

#define BUDGET_FN(t)                                                                   \
	static int budget_##t(void *ctx, const char *name, struct authdns_answer *ans) \
	{                                                                              \
		struct dns_budget *b = ctx;                                            \
		if (budget_spent(b, ans) || b->inner.t == NULL)                        \
			return budget_spent(b, ans) ? AUTHDNS_TEMPFAIL : AUTHDNS_PERMFAIL; \
		return b->inner.t(b->inner.ctx, name, ans);                            \
	}
BUDGET_FN(txt)
BUDGET_FN(a)
BUDGET_FN(aaaa)
BUDGET_FN(mx)
BUDGET_FN(ptr)

static void dns_budget_init(struct dns_budget *b, struct authdns *dns, struct dns_sync *s)
{
	dns_authdns_init(&b->inner, s);
	clock_gettime(CLOCK_MONOTONIC, &b->deadline);
	b->deadline.tv_sec += DNS_BUDGET_MS / 1000;
	*dns = (struct authdns){ .ctx = b, .txt = budget_txt, .a = budget_a, .aaaa = budget_aaaa, .mx = budget_mx,
		                 .ptr = budget_ptr };
}

/* Text from DNS (SPF exp=) or a message goes into an SMTP reply: printable ASCII only. */
static void reply_text(char *out, size_t size, const char *s)
{
	size_t n = 0;
	for (; s != NULL && *s != '\0' && n + 1 < size; s++)
		out[n++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	out[n] = '\0';
}

/* ---- sender ownership ---- */

int lookup_sender_allowed(struct directory *dir, const struct route_options *ropt, const char *auth_user,
                          const char *address, char **error_r)
{
	if (*address == '\0')
		return 1; /* the null sender claims no identity */
	if (strcasecmp(address, auth_user) == 0)
		return 1;
	struct route_result res;
	memset(&res, 0, sizeof(res));
	int rc = route_resolve(dir, ropt, address, &res, error_r);
	int allowed = 0;
	if (rc >= 0 && res.status == ROUTE_OK) {
		for (size_t i = 0; i < res.rcpt_count; i++)
			if (res.rcpt[i].kind == ROUTE_LOCAL && strcasecmp(res.rcpt[i].address, auth_user) == 0)
				allowed = 1;
	}
	route_result_deinit(&res);
	return rc < 0 ? -1 : allowed;
}

/* One mailbox of the list: seg holds it without comments and whitespace; lt/gt are the
   positions of the angle brackets seen outside quoted strings (or SIZE_MAX). */
static void seg_finish(char *seg, size_t sl, size_t lt, size_t gt, size_t *count, char *out, size_t size)
{
	seg[sl] = '\0';
	const char *a = seg, *end = seg + sl;
	if (lt != SIZE_MAX) {
		a = seg + lt + 1;
		end = gt != SIZE_MAX && gt > lt ? seg + gt : seg + sl;
	}
	if (end <= a)
		return;
	if (++*count == 1)
		snprintf(out, size, "%.*s", (int)(end - a), a);
}

size_t lookup_from_address(const char *v, size_t len, char *out, size_t size)
{
	char seg[ADDR_MAX];
	size_t sl = 0, count = 0, extra = 0, lt = SIZE_MAX, gt = SIZE_MAX;
	out[0] = '\0';
	for (size_t i = 0; i < len; i++) {
		char ch = v[i];
		if (ch == '"') {
			/* A quoted string, kept as written; brackets inside it are not the address's. */
			if (sl + 1 < sizeof(seg))
				seg[sl++] = ch;
			for (i++; i < len && v[i] != '"'; i++) {
				if (v[i] == '\\' && i + 1 < len && sl + 1 < sizeof(seg))
					seg[sl++] = v[i++];
				if (sl + 1 < sizeof(seg))
					seg[sl++] = v[i];
			}
			if (i < len && sl + 1 < sizeof(seg))
				seg[sl++] = '"';
			continue;
		}
		if (ch == '(') {
			int depth = 0;
			for (; i < len; i++) {
				if (v[i] == '\\')
					i++;
				else if (v[i] == '(')
					depth++;
				else if (v[i] == ')' && --depth == 0)
					break;
			}
			continue;
		}
		if (ch == ',' && (lt == SIZE_MAX || gt != SIZE_MAX)) {
			seg_finish(seg, sl, lt, gt, &count, out, size);
			sl = 0;
			lt = gt = SIZE_MAX;
			continue;
		}
		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
			continue;
		if (ch == '<' && lt != SIZE_MAX)
			extra++; /* "<a> <b>": ambiguous, counted as one more address (refused) */
		if (ch == '<' && lt == SIZE_MAX)
			lt = sl;
		else if (ch == '>' && lt != SIZE_MAX && gt == SIZE_MAX)
			gt = sl;
		if (sl + 1 < sizeof(seg))
			seg[sl++] = ch;
	}
	seg_finish(seg, sl, lt, gt, &count, out, size); /* the last one (also "<addr" never closed) */
	return count + extra;
}

/* ---- PROTO_LOOKUP_SENDER (loop thread: the directory is not shared with threads) ---- */

static void send_code_reply(struct ipc_conn *c, uint16_t type, uint32_t reqid, int code, const char *enhanced,
                            const char *text)
{
	struct ipc_msg m;
	ipc_msg_init(&m, type, reqid);
	ipc_put_u32(&m, (uint32_t)code);
	ipc_put_str(&m, enhanced);
	ipc_put_str(&m, text);
	ipc_send(c, &m);
	ipc_msg_deinit(&m);
}

void lookup_sender_msg(struct ipc_conn *c, struct ipc_reader *r)
{
	char *user = ipc_get_strdup(r);
	char *sender = ipc_get_strdup(r);
	if (ipc_reader_end(r) < 0 || user == NULL || sender == NULL)
		log_panic("event=ipc_malformed type=sender");
	char *error = NULL;
	int ok = lookup_sender_allowed(M.dir, M.ropt, user, sender, &error);
	char q1[300], q2[300], text[600];
	if (ok > 0) {
		send_code_reply(c, PROTO_LOOKUP_SENDER_R, r->reqid, 250, "2.1.0", "Ok");
	} else if (ok == 0) {
		snprintf(text, sizeof(text), "Sender address <%s> is not owned by user %s", sender, user);
		reply_text(text, sizeof(text), text);
		send_code_reply(c, PROTO_LOOKUP_SENDER_R, r->reqid, 553, "5.7.1", text);
	} else {
		log_warn("event=directory_error error=\"%s\"", error != NULL ? error : "?");
		send_code_reply(c, PROTO_LOOKUP_SENDER_R, r->reqid, 451, "4.3.0", "Temporary lookup failure");
	}
	log_info("event=sender_check user=%s from=%s result=%s", log_q(q1, sizeof(q1), user),
	         log_q(q2, sizeof(q2), sender), ok > 0 ? "ok" : ok == 0 ? "denied" : "error");
	free(error);
	free(user);
	free(sender);
}

/* ---- PROTO_LOOKUP_SPF ---- */

struct spf_job {
	struct ipc_conn *conn;
	uint32_t reqid;
	char *ip, *helo, *mailfrom;
	enum spf_result result;
	char *explanation, *problem;
	bool skipped;
};

static void spf_work(void *arg)
{
	struct spf_job *j = arg;
	struct spf_ip ip;
	if (spf_ip_parse(j->ip, &ip) < 0) {
		j->result = SPF_RESULT_NONE;
		j->skipped = true;
		return;
	}
	struct dns_sync *s = dns_get();
	if (s == NULL) {
		j->result = SPF_RESULT_TEMPERROR;
		return;
	}
	struct authdns dns;
	struct dns_budget budget;
	dns_budget_init(&budget, &dns, s);
	struct spf_options o = { .receiver = M.cfg->hostname };
	struct spf_outcome out;
	memset(&out, 0, sizeof(out));
	j->result = spf_check_mailfrom(&ip, j->mailfrom, j->helo, &dns, &o, &out);
	j->explanation = out.explanation;
	j->problem = out.problem;
	out.explanation = out.problem = NULL;
	spf_outcome_free(&out);
	dns_put(s);
}

static void spf_done(void *arg)
{
	struct spf_job *j = arg;
	const char *name = j->skipped ? "none" : spf_result_name(j->result);
	bool reject = j->result == SPF_RESULT_FAIL && M.cfg->mailauth.spf_reject_fail;
	if (M.alive(j->conn)) {
		char text[512] = "", fragment[800], raw[512];
		const char *domain = strrchr(j->mailfrom, '@');
		domain = domain != NULL ? domain + 1 : j->helo;
		if (reject) {
			if (j->explanation != NULL)
				snprintf(raw, sizeof(raw), "SPF fail for %s: %s", domain, j->explanation);
			else
				snprintf(raw, sizeof(raw), "SPF fail: %s is not allowed to send mail for %s", j->ip, domain);
			reply_text(text, sizeof(text), raw);
		}
		if (*j->mailfrom != '\0')
			snprintf(raw, sizeof(raw), "spf=%s smtp.mailfrom=%s", name, j->mailfrom);
		else
			snprintf(raw, sizeof(raw), "spf=%s smtp.helo=%s", name, j->helo);
		reply_text(fragment, sizeof(fragment), raw);
		struct ipc_msg m;
		ipc_msg_init(&m, PROTO_LOOKUP_SPF_R, j->reqid);
		ipc_put_str(&m, name);
		ipc_put_u32(&m, reject ? 550 : 250);
		ipc_put_str(&m, reject ? "5.7.23" : "2.0.0");
		ipc_put_str(&m, text);
		ipc_put_str(&m, fragment);
		ipc_send(j->conn, &m);
		ipc_msg_deinit(&m);
	}
	char q1[300], q2[300], q3[300];
	log_info("event=spf ip=%s helo=%s from=%s result=%s%s%s", j->ip, log_q(q1, sizeof(q1), j->helo),
	         log_q(q2, sizeof(q2), j->mailfrom), name, j->problem != NULL ? " problem=" : "",
	         j->problem != NULL ? log_q(q3, sizeof(q3), j->problem) : "");
	free(j->ip);
	free(j->helo);
	free(j->mailfrom);
	free(j->explanation);
	free(j->problem);
	free(j);
}

void lookup_spf_msg(struct ipc_conn *c, struct ipc_reader *r)
{
	struct spf_job *j = xcalloc(1, sizeof(*j));
	j->conn = c;
	j->reqid = r->reqid;
	j->ip = ipc_get_strdup(r);
	j->helo = ipc_get_strdup(r);
	j->mailfrom = ipc_get_strdup(r);
	if (ipc_reader_end(r) < 0 || j->ip == NULL || j->helo == NULL || j->mailfrom == NULL)
		log_panic("event=ipc_malformed type=spf");
	if (lookup_policy_trusted(M.cfg, j->ip)) {
		/* Our own networks relay through us: SPF is about other people's servers. */
		j->skipped = true;
		spf_done(j);
		return;
	}
	workpool_submit(M.pool, spf_work, spf_done, j);
}

/* ---- PROTO_LOOKUP_MAILAUTH ---- */

struct mailauth_job {
	struct ipc_conn *conn;
	uint32_t reqid;
	char *ip, *helo, *mailfrom, *auth_user;
	uint32_t kind;
	int fd;
	bool trusted;
	/* results (worker) */
	enum lookup_mailauth_action action;
	int code;
	char enhanced[16];
	char text[512];
	struct buf headers;
	char from[ADDR_MAX];
	size_t from_count;
	char summary[600];   /* for the log line */
};

static char *read_spool(int fd, size_t max, size_t *len_r, const char **why_r)
{
	bool truncated = false;
	char *data = fd_read_prefix(fd, max, len_r, &truncated);
	if (data == NULL || truncated) {
		*why_r = data == NULL ? "fstat failed" : "message too big to check";
		free(data);
		return NULL;
	}
	return data;
}

/* From: of the message: number of addresses (several From fields count as several). */
static void find_from(struct mailauth_job *j, const char *msg, size_t len)
{
	struct dkim_msg m;
	const char *error = NULL;
	memset(&m, 0, sizeof(m));
	if (dkim_msg_parse(msg, len, &m, &error) < 0) {
		j->from_count = 2; /* unparsable: refuse, like several addresses */
		return;
	}
	for (size_t i = 0; i < m.nhdrs; i++) {
		const struct dkim_header *h = &m.hdrs[i];
		if (h->name_len != 4 || strncasecmp(h->name, "from", 4) != 0)
			continue;
		const char *colon = memchr(h->raw, ':', h->raw_len);
		if (colon == NULL)
			continue;
		char addr[ADDR_MAX];
		size_t n = lookup_from_address(colon + 1, h->raw_len - (size_t)(colon + 1 - h->raw), addr, sizeof(addr));
		if (n > 0 && j->from_count == 0)
			snprintf(j->from, sizeof(j->from), "%s", addr);
		j->from_count += n;
	}
	dkim_msg_free(&m);
}

static bool domain_path_safe(const char *d)
{
	if (*d == '\0' || *d == '.' || strlen(d) > 253 || strstr(d, "..") != NULL)
		return false;
	for (const char *p = d; *p; p++)
		if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '.' || *p == '_'))
			return false;
	return true;
}

static bool selector_ok(const char *s, size_t n)
{
	if (n == 0 || n > 63 || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '-'))
			return false;
	return true;
}

/* The configured selector, else the newest <dir>/<selector>.pem. */
static bool pick_selector(const char *dir, char *out, size_t size)
{
	out[0] = '\0';
	if (M.cfg->mailauth.dkim_selector != NULL) {
		snprintf(out, size, "%s", M.cfg->mailauth.dkim_selector);
		return true;
	}
	DIR *d = opendir(dir);
	if (d == NULL)
		return false;
	struct dirent *e;
	time_t best = 0;
	long best_ns = 0;
	bool found = false;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n < 5 || strcmp(e->d_name + n - 4, ".pem") != 0 || !selector_ok(e->d_name, n - 4))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
			continue;
		bool newer = !found || st.st_mtim.tv_sec > best ||
		             (st.st_mtim.tv_sec == best && (st.st_mtim.tv_nsec > best_ns ||
		                                            (st.st_mtim.tv_nsec == best_ns && strncmp(e->d_name, out, n - 4) > 0)));
		if (newer && n - 4 < size) {
			snprintf(out, size, "%.*s", (int)(n - 4), e->d_name);
			best = st.st_mtim.tv_sec;
			best_ns = st.st_mtim.tv_nsec;
			found = true;
		}
	}
	closedir(d);
	return found;
}

static char *read_key(const char *path, const char **why_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		*why_r = strerror(errno);
		return NULL;
	}
	char *pem = xmalloc(KEY_MAX + 1);
	size_t len = 0;
	while (len < KEY_MAX) {
		ssize_t n = read(fd, pem + len, KEY_MAX - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	pem[len] = '\0';
	return pem;
}

static void sign_message(struct mailauth_job *j, const char *msg, size_t len)
{
	const char *at = strrchr(j->from, '@');
	if (j->from_count != 1 || at == NULL)
		return;
	char domain[256];
	snprintf(domain, sizeof(domain), "%s", at + 1);
	for (char *p = domain; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (!domain_path_safe(domain))
		return;
	char *dir = xasprintf("%s/dkim/%s", M.cfg->data_dir, domain);
	char selector[64];
	if (!pick_selector(dir, selector, sizeof(selector))) {
		free(dir);
		return; /* no key for this domain: not one we sign for */
	}
	char *path = xasprintf("%s/%s.pem", dir, selector);
	const char *why = NULL;
	char *pem = read_key(path, &why);
	char *field = NULL;
	if (pem == NULL) {
		log_warn("event=dkim_key_unreadable path=%s error=\"%s\"", path, why);
	} else {
		struct dkim_sign_options o = { .domain = domain, .selector = selector, .key_pem = pem };
		if (dkim_sign(msg, len, &o, &field, &why) < 0)
			log_warn("event=dkim_sign_failed domain=%s selector=%s error=\"%s\"", domain, selector, why);
		else if (buf_append(&j->headers, field, strlen(field)) < 0)
			log_warn("event=dkim_sign_failed domain=%s error=\"signature too long\"", domain);
		else
			snprintf(j->summary, sizeof(j->summary), "dkim_sign=%s selector=%s", domain, selector);
	}
	free(field);
	secret_free(pem);
	free(path);
	free(dir);
}

/*
 * DMARC aggregate report data (RFC 7489 7.2): one JSON line per checked message
 * of a domain that publishes a record, in <data_dir>/db/dmarc/YYYY-MM-DD.jsonl,
 * so daily reports can be built from it (sending them is not done here).
 */
static void dmarc_record_row(const struct mailauth_job *j, const struct mailauth_result *out,
                             enum dmarc_policy disposition)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	char day[16];
	strftime(day, sizeof(day), "%Y-%m-%d", &tm);
	char *dir = xasprintf("%s/db/dmarc", M.cfg->data_dir);
	char *path = xasprintf("%s/%s.jsonl", dir, day);
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		free(dir);
		free(path);
		return;
	}
	json_t *row = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s?,s:b,s:b}", "time", (json_int_t)now,
	                        "source_ip", j->ip, "header_from", out->from_domain ? out->from_domain : "",
	                        "policy_domain", out->dmarc.record_domain, "policy",
	                        dmarc_policy_name(out->dmarc.policy), "disposition", dmarc_policy_name(disposition),
	                        "dmarc", dmarc_result_name(out->dmarc.result), "spf", spf_result_name(out->spf.result),
	                        "dkim_domain", out->dmarc.dkim_domain, "spf_aligned", out->dmarc.spf_aligned,
	                        "dkim_aligned", out->dmarc.dkim_aligned);
	char *line = row ? json_dumps(row, JSON_COMPACT) : NULL;
	if (line != NULL) {
		int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd >= 0) {
			size_t n = strlen(line);
			line[n] = '\n'; /* replaces the NUL: written with its length */
			if (write(fd, line, n + 1) < 0)
				log_warn("event=dmarc_record_failed path=%s error=\"%s\"", path, strerror(errno));
			close(fd);
		}
		free(line);
	}
	json_decref(row);
	free(dir);
	free(path);
}

static void verify_message(struct mailauth_job *j, const char *msg, size_t len)
{
	struct dns_sync *s = dns_get();
	if (s == NULL) {
		snprintf(j->summary, sizeof(j->summary), "verify=skipped reason=no_resolver");
		return;
	}
	struct authdns dns;
	struct dns_budget budget;
	dns_budget_init(&budget, &dns, s);
	struct mailauth_request req = {
		.ip = j->ip,
		.helo = j->helo,
		.mailfrom = j->mailfrom,
		.authserv_id = M.cfg->authserv_id,
		.msg = msg,
		.len = len,
	};
	struct mailauth_result out;
	memset(&out, 0, sizeof(out));
	const char *error = NULL;
	if (mailauth_check(&req, &dns, &out, &error) < 0) {
		snprintf(j->summary, sizeof(j->summary), "verify=skipped reason=\"%s\"", error != NULL ? error : "?");
		mailauth_result_free(&out);
		dns_put(s);
		return;
	}
	dns_put(s);
	if (out.authres_field != NULL && buf_append(&j->headers, out.authres_field, strlen(out.authres_field)) < 0)
		buf_reset(&j->headers);
	const char *from_domain = out.from_domain != NULL ? out.from_domain : "";
	enum dmarc_policy dis = out.dmarc.result == DMARC_RESULT_FAIL ? out.dmarc.disposition : DMARC_POLICY_NONE;
	bool enforce = M.cfg->mailauth.dmarc_enforce && !j->trusted;
	if (enforce && dis == DMARC_POLICY_REJECT) {
		char raw[512];
		j->action = LOOKUP_MAILAUTH_REJECT;
		j->code = 550;
		snprintf(j->enhanced, sizeof(j->enhanced), "5.7.1");
		snprintf(raw, sizeof(raw), "Rejected by the DMARC policy of %s (p=reject): not authenticated",
		         from_domain);
		reply_text(j->text, sizeof(j->text), raw);
	} else if (enforce && dis == DMARC_POLICY_QUARANTINE) {
		j->action = LOOKUP_MAILAUTH_QUARANTINE;
	}
	if (out.dmarc.record_domain != NULL)
		dmarc_record_row(j, &out, dis);
	/* RFC 8601 5: fields claiming our authserv-id are removed at delivery (src/deliverd). */
	snprintf(j->summary, sizeof(j->summary), "spf=%s spf_helo=%s dkim=%s arc=%s dmarc=%s policy=%s from_domain=%s forged_ar=%zu",
	         spf_result_name(out.spf.result), spf_result_name(out.spf_helo), dkim_result_name(out.dkim.result),
	         arc_result_name(out.arc.cv),
	         dmarc_result_name(out.dmarc.result), dmarc_policy_name(dis), *from_domain ? from_domain : "-",
	         out.nforged);
	mailauth_result_free(&out);
}

static void mailauth_work(void *arg)
{
	struct mailauth_job *j = arg;
	size_t len = 0;
	const char *why = NULL;
	char *msg = read_spool(j->fd, M.cfg->limits.max_message_size + MSG_SLACK, &len, &why);
	close(j->fd);
	j->fd = -1;
	if (msg == NULL) {
		snprintf(j->summary, sizeof(j->summary), "checked=no reason=\"%s\"", why);
		return;
	}
	if (j->auth_user != NULL) {
		find_from(j, msg, len);
		if (M.cfg->mailauth.dkim_sign)
			sign_message(j, msg, len);
	} else if (M.cfg->mailauth.verify && j->kind == LISTEN_MX) {
		verify_message(j, msg, len);
	}
	free(msg);
}

static void mailauth_done(void *arg)
{
	struct mailauth_job *j = arg;
	if (j->auth_user != NULL && j->action == LOOKUP_MAILAUTH_ACCEPT && j->from_count > 0) {
		/* Submission: the From: address must be the user's too. */
		char *error = NULL;
		int ok = j->from_count == 1 ? lookup_sender_allowed(M.dir, M.ropt, j->auth_user, j->from, &error) : 0;
		char raw[700];
		if (ok == 0) {
			j->action = LOOKUP_MAILAUTH_REJECT;
			j->code = 553;
			snprintf(j->enhanced, sizeof(j->enhanced), "5.7.1");
			if (j->from_count == 1)
				snprintf(raw, sizeof(raw), "From: address <%s> is not owned by user %s", j->from, j->auth_user);
			else
				snprintf(raw, sizeof(raw), "From: must hold exactly one address");
			reply_text(j->text, sizeof(j->text), raw);
		} else if (ok < 0) {
			log_warn("event=directory_error error=\"%s\"", error != NULL ? error : "?");
			j->action = LOOKUP_MAILAUTH_REJECT;
			j->code = 451;
			snprintf(j->enhanced, sizeof(j->enhanced), "4.3.0");
			snprintf(j->text, sizeof(j->text), "Temporary lookup failure");
		}
		free(error);
	}
	if (j->action == LOOKUP_MAILAUTH_REJECT)
		buf_reset(&j->headers);
	if (M.alive(j->conn)) {
		struct ipc_msg m;
		ipc_msg_init(&m, PROTO_LOOKUP_MAILAUTH_R, j->reqid);
		ipc_put_u32(&m, (uint32_t)j->action);
		ipc_put_u32(&m, (uint32_t)j->code);
		ipc_put_str(&m, j->enhanced);
		ipc_put_str(&m, j->text);
		ipc_put_str(&m, j->headers.len > 0 ? j->headers.data : NULL);
		ipc_send(j->conn, &m);
		ipc_msg_deinit(&m);
	}
	static const char *const actions[] = { "accept", "reject", "quarantine" };
	char q1[300], q2[300];
	log_info("event=mailauth ip=%s from=%s user=%s action=%s %s", j->ip, log_q(q1, sizeof(q1), j->mailfrom),
	         j->auth_user != NULL ? log_q(q2, sizeof(q2), j->auth_user) : "-", actions[j->action], j->summary);
	free(j->ip);
	free(j->helo);
	free(j->mailfrom);
	free(j->auth_user);
	buf_deinit(&j->headers);
	free(j);
}

void lookup_mailauth_msg(struct ipc_conn *c, struct ipc_reader *r, int fd)
{
	struct mailauth_job *j = xcalloc(1, sizeof(*j));
	j->conn = c;
	j->reqid = r->reqid;
	j->ip = ipc_get_strdup(r);
	j->helo = ipc_get_strdup(r);
	j->mailfrom = ipc_get_strdup(r);
	j->auth_user = ipc_get_strdup(r);
	j->kind = ipc_get_u32(r);
	if (ipc_reader_end(r) < 0 || j->ip == NULL || j->helo == NULL || j->mailfrom == NULL || fd < 0)
		log_panic("event=ipc_malformed type=mailauth");
	j->fd = fd;
	j->action = LOOKUP_MAILAUTH_ACCEPT;
	j->code = 250;
	snprintf(j->enhanced, sizeof(j->enhanced), "2.0.0");
	snprintf(j->summary, sizeof(j->summary), "checked=no");
	j->trusted = lookup_policy_trusted(M.cfg, j->ip);
	buf_init(&j->headers, HEADERS_MAX);
	workpool_submit(M.pool, mailauth_work, mailauth_done, j);
}
