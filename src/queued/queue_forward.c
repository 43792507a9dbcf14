#include "queued/queue_forward.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "conf/conf.h"
#include "lib-auth/arc.h"
#include "lib-auth/authres.h"
#include "lib-auth/dkim.h"
#include "lib-auth/srs.h"
#include "lib-route/directory.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "lookup/lookup_policy.h"

#define KEY_MAX 16384

bool queue_forward_domain_local(struct directory *dir, const char *domain)
{
	if (dir == NULL || domain == NULL || domain[0] == '\0')
		return false;
	struct directory_domain dom;
	char *error = NULL;
	memset(&dom, 0, sizeof(dom));
	int r = directory_domain_get(dir, domain, &dom, &error);
	free(error);
	bool local = r > 0 && dom.type == DIRECTORY_DOMAIN_LOCAL;
	if (r > 0)
		directory_domain_deinit(&dom);
	return local;
}

static const char *domain_of(const char *address)
{
	const char *at = address != NULL ? strrchr(address, '@') : NULL;
	return at != NULL ? at + 1 : NULL;
}

bool queue_forward_is_forward(const struct mr_config *cfg, struct directory *dir, const char *sender,
                              const char *orcpt)
{
	if (sender == NULL || sender[0] == '\0' || orcpt == NULL || strncasecmp(orcpt, "rfc822;", 7) != 0)
		return false;
	const char *sdom = domain_of(sender);
	const char *odom = domain_of(orcpt + 7);
	if (sdom == NULL || odom == NULL)
		return false;
	if (cfg->srs.domain != NULL && strcasecmp(sdom, cfg->srs.domain) == 0)
		return false;
	return queue_forward_domain_local(dir, odom) && !queue_forward_domain_local(dir, sdom);
}

char *queue_forward_srs_sender(const struct mr_config *cfg, const char *sender)
{
	struct srs_config sc;
	if (sender == NULL || sender[0] == '\0' || !lookup_srs_config(cfg, &sc))
		return NULL;
	char *out = NULL;
	const char *why = NULL;
	int r = srs_forward(&sc, sender, 0, &out, &why);
	if (r < 0) {
		log_warn("event=srs_forward_failed sender=%s error=\"%s\"", sender, why ? why : "?");
		return NULL;
	}
	return out;
}

/* ---- ARC ---- */

char *queue_forward_our_authres(const char *header_block, const char *authserv_id)
{
	static const char name[] = "Authentication-Results:";
	if (header_block == NULL || authserv_id == NULL)
		return NULL;
	const char *p = header_block;
	while (*p != '\0') {
		/* one field: up to a line end not followed by WSP */
		const char *e = p;
		for (;;) {
			const char *nl = strchr(e, '\n');
			if (nl == NULL) {
				e += strlen(e);
				break;
			}
			e = nl + 1;
			if (*e != ' ' && *e != '\t')
				break;
		}
		if ((size_t)(e - p) > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
			const char *v = p + sizeof(name) - 1;
			if (authres_claims(v, (size_t)(e - v), authserv_id)) {
				/* unfold: drop CR and LF, keep the WSP that follows */
				char *out = xmalloc((size_t)(e - v) + 1);
				size_t n = 0;
				for (const char *q = v; q < e; q++)
					if (*q != '\r' && *q != '\n')
						out[n++] = *q;
				out[n] = '\0';
				size_t s = 0;
				while (out[s] == ' ' || out[s] == '\t')
					s++;
				while (n > s && (out[n - 1] == ' ' || out[n - 1] == '\t'))
					out[--n] = '\0';
				memmove(out, out + s, n - s + 1);
				return out;
			}
		}
		p = e;
	}
	return NULL;
}

/* The result of method "arc" in an A-R value: "pass", "fail", "none"..., or "" if absent. */
static void arc_verdict(const char *value, char *out, size_t size)
{
	out[0] = '\0';
	for (const char *p = value; (p = strcasestr(p, "arc=")) != NULL; p += 4) {
		if (p != value && !(p[-1] == ' ' || p[-1] == '\t' || p[-1] == ';'))
			continue;
		const char *r = p + 4;
		size_t n = 0;
		while (r[n] != '\0' && isalpha((unsigned char)r[n]))
			n++;
		snprintf(out, size, "%.*s", (int)n, r);
		return;
	}
}

int queue_forward_arc_seal(const char *msg, size_t len, const char *header_block, const char *authserv_id,
                           const char *domain, const char *selector, const char *key_pem, time_t now,
                           char **fields_r, const char **why_r)
{
	*fields_r = NULL;
	struct dkim_msg m;
	memset(&m, 0, sizeof(m));
	if (dkim_msg_parse(msg, len, &m, why_r) < 0) {
		dkim_msg_free(&m);
		return -1;
	}
	bool chain = false;
	for (size_t i = 0; i < m.nhdrs && !chain; i++)
		chain = m.hdrs[i].name_len == 8 && strncasecmp(m.hdrs[i].name, "ARC-Seal", 8) == 0;
	dkim_msg_free(&m);

	char *ar = queue_forward_our_authres(header_block, authserv_id);
	enum arc_result cv = ARC_RESULT_NONE;
	if (chain) {
		char verdict[16];
		arc_verdict(ar != NULL ? ar : "", verdict, sizeof(verdict));
		if (verdict[0] == '\0') {
			free(ar);
			*why_r = "the message has an ARC chain we did not validate at receipt";
			return 0;
		}
		cv = strcasecmp(verdict, "pass") == 0 ? ARC_RESULT_PASS : ARC_RESULT_FAIL;
	}
	char *aar = ar != NULL ? ar : xasprintf("%s; none", authserv_id);
	struct arc_sign_options so = { .domain = domain, .selector = selector, .key_pem = key_pem, .authres = aar,
		                       .now = now };
	int r = arc_sign(msg, len, &so, cv, fields_r, why_r);
	if (r == 0)
		*why_r = "the chain already failed (cv=fail in the latest ARC-Seal)";
	free(aar);
	return r;
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

static bool domain_ok(const char *d)
{
	if (d == NULL || d[0] == '\0' || d[0] == '.' || strstr(d, "..") != NULL || strlen(d) > 253)
		return false;
	for (const char *p = d; *p; p++)
		if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '.' || *p == '_'))
			return false;
	return true;
}

/* The configured selector if its key exists, else the newest <dir>/<selector>.pem. */
static bool pick_selector(const struct mr_config *cfg, const char *dir, char *out, size_t size)
{
	out[0] = '\0';
	if (cfg->mailauth.dkim_selector != NULL) {
		char *path = xasprintf("%s/%s.pem", dir, cfg->mailauth.dkim_selector);
		bool ok = access(path, R_OK) == 0;
		free(path);
		if (ok)
			snprintf(out, size, "%s", cfg->mailauth.dkim_selector);
		return ok;
	}
	DIR *d = opendir(dir);
	if (d == NULL)
		return false;
	struct dirent *e;
	struct timespec best = { 0, 0 };
	bool found = false;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n < 5 || n - 4 >= size || strcmp(e->d_name + n - 4, ".pem") != 0 || !selector_ok(e->d_name, n - 4))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
			continue;
		bool newer = !found || st.st_mtim.tv_sec > best.tv_sec ||
		             (st.st_mtim.tv_sec == best.tv_sec && st.st_mtim.tv_nsec > best.tv_nsec);
		if (newer) {
			snprintf(out, size, "%.*s", (int)(n - 4), e->d_name);
			best = st.st_mtim;
			found = true;
		}
	}
	closedir(d);
	return found;
}

static char *read_key(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return NULL;
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

int queue_forward_key(const struct mr_config *cfg, char **domain_r, char **selector_r, char **pem_r)
{
	*domain_r = *selector_r = *pem_r = NULL;
	const char *dot = cfg->hostname != NULL ? strchr(cfg->hostname, '.') : NULL;
	const char *candidates[] = { cfg->srs.domain, cfg->hostname, dot != NULL && strchr(dot + 1, '.') ? dot + 1 : NULL };
	for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
		if (!domain_ok(candidates[i]))
			continue;
		char domain[256];
		snprintf(domain, sizeof(domain), "%s", candidates[i]);
		for (char *p = domain; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		char *dir = xasprintf("%s/dkim/%s", cfg->data_dir, domain);
		char selector[64];
		if (pick_selector(cfg, dir, selector, sizeof(selector))) {
			char *path = xasprintf("%s/%s.pem", dir, selector);
			char *pem = read_key(path);
			if (pem == NULL)
				log_warn("event=arc_key_unreadable path=%s error=\"%s\"", path, strerror(errno));
			free(path);
			if (pem != NULL) {
				free(dir);
				*domain_r = xstrdup(domain);
				*selector_r = xstrdup(selector);
				*pem_r = pem;
				return 1;
			}
		}
		free(dir);
	}
	return 0;
}

void queue_forward_key_free(char **domain, char **selector, char **pem)
{
	if (*pem != NULL) {
		OPENSSL_cleanse(*pem, strlen(*pem));
		free(*pem);
		*pem = NULL;
	}
	xfree(domain);
	xfree(selector);
}

char *queue_forward_arc(const struct mr_config *cfg, const char *queue_id, const char *msg, size_t len,
                        const char *header_block)
{
	static bool logged_no_key;
	char *domain, *selector, *pem;
	if (queue_forward_key(cfg, &domain, &selector, &pem) <= 0) {
		if (!logged_no_key)
			log_warn("event=arc_skipped id=%s reason=\"no DKIM key for %s under %s/dkim (logged once)\"",
			         queue_id, cfg->srs.domain != NULL ? cfg->srs.domain : cfg->hostname, cfg->data_dir);
		logged_no_key = true;
		return NULL;
	}
	char *fields = NULL;
	const char *why = NULL;
	int r = queue_forward_arc_seal(msg, len, header_block, cfg->authserv_id, domain, selector, pem, 0, &fields,
	                               &why);
	if (r < 0)
		log_warn("event=arc_seal_failed id=%s domain=%s error=\"%s\"", queue_id, domain, why ? why : "?");
	else if (r == 0)
		log_info("event=arc_skipped id=%s reason=\"%s\"", queue_id, why ? why : "?");
	else
		log_info("event=arc_sealed id=%s domain=%s selector=%s", queue_id, domain, selector);
	queue_forward_key_free(&domain, &selector, &pem);
	return fields;
}

static bool write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

int queue_forward_memfd(const struct mr_config *cfg, const char *queue_id, const char *header_block,
                        int spool_fd)
{
	struct stat st;
	if (fstat(spool_fd, &st) < 0) {
		log_warn("event=forward_copy_failed id=%s error=\"%s\"", queue_id, strerror(errno));
		return -1;
	}
	size_t hl = header_block != NULL ? strlen(header_block) : 0;
	size_t cap = (size_t)st.st_size + hl;
	/* a bound: the message size limit plus our header fields and the Received: line */
	if ((size_t)st.st_size > cfg->limits.max_message_size + 1024 * 1024) {
		log_warn("event=forward_copy_failed id=%s error=\"message too large to seal\"", queue_id);
		return -1;
	}
	char *msg = xmalloc(cap + 1);
	if (hl > 0)
		memcpy(msg, header_block, hl);
	size_t len = hl;
	while (len < cap) {
		ssize_t r = pread(spool_fd, msg + len, cap - len, (off_t)(len - hl));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	msg[len] = '\0';
	char *arc = queue_forward_arc(cfg, queue_id, msg, len, header_block);
	int mfd = memfd_create("mailroute-fwd", MFD_CLOEXEC);
	bool ok = mfd >= 0 && (arc == NULL || write_all(mfd, arc, strlen(arc))) && write_all(mfd, msg, len) &&
	          lseek(mfd, 0, SEEK_SET) == 0;
	if (!ok) {
		log_warn("event=forward_copy_failed id=%s error=\"%s\"", queue_id, strerror(errno));
		if (mfd >= 0)
			close(mfd);
		mfd = -1;
	}
	free(arc);
	free(msg);
	return mfd;
}
