#include "deliverd/deliver_sieve.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "deliver/maildir.h"
#include "lib-sieve/sieve.h"
#include "lib-sieve/sieve_store.h"
#include "lib/buf.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "lib/xalloc.h"

/* Messages larger than this are delivered without running the user's script. */
#define SIEVE_MAX_MESSAGE (32u << 20)

static void job_fail(struct deliver_job *j, int err, char *error)
{
	j->result = maildir_error_is_temporary(err) ? 2 : 3;
	free(j->error);
	j->error = error ? error : xasprintf("%s", strerror(err));
}

/* Deliver fd (with prepend) into folder; records the outcome in j. Returns -1 on failure. */
static int deliver_copy(struct deliver_job *j, const char *folder, int fd, const char *prepend, size_t prepend_len)
{
	char *error = NULL;
	errno = 0;
	int r = maildir_deliver(j->maildir, folder, fd, prepend, prepend_len, j->unique, &error);
	if (r < 0) {
		job_fail(j, errno, error);
		return -1;
	}
	free(error);
	if (j->result != 1)
		j->result = r;
	return 0;
}

static void add_out(struct deliver_job *j, const char *sender, const char *rcpt, const char *data, size_t len)
{
	j->out = xreallocarray(j->out, j->out_count + 1, sizeof(*j->out));
	j->out[j->out_count++] = (struct deliver_out){
		.sender = xstrdup(sender), .rcpt = xstrdup(rcpt), .data = xmemdup(data, len), .len = len,
		/* a message kept from the original sender is a forward by this user (SRS, ARC downstream) */
		.orcpt = sender[0] != '\0' ? xasprintf("rfc822;%s", j->user) : NULL,
	};
}


/* A small marker file per key under the user's sieve dir: its mtime is when the key was last seen. */
static char *marker_path(struct deliver_job *j, const char *kind, const char *key, size_t key_len)
{
	char *dir = NULL, *error = NULL;
	if (sieve_store_user_dir(j->cfg->data_dir, j->user, &dir, &error) <= 0) {
		free(error);
		free(dir);
		return NULL;
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_Digest(key, key_len, md, &mdlen, EVP_sha256(), NULL);
	char hex[2 * 16 + 1];
	for (unsigned i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	char *path = xasprintf("%s/.%s-%s", dir, kind, hex);
	free(dir);
	return path;
}

static bool marker_recent(const char *path, unsigned long seconds)
{
	struct stat st;
	return path != NULL && stat(path, &st) == 0 && time(NULL) - st.st_mtime < (time_t)seconds;
}

static void marker_touch(const char *path)
{
	if (path == NULL)
		return;
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (slash != NULL) {
		*slash = '\0';
		mkdir(dir, 0700);
	}
	free(dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0) {
		futimens(fd, NULL);
		close(fd);
	}
}

static int dup_check(void *ctx, const char *id, size_t id_len, unsigned seconds)
{
	struct deliver_job *j = ctx;
	char *path = marker_path(j, "duplicate", id, id_len);
	int r = marker_recent(path, seconds) ? 1 : 0;
	free(path);
	return r;
}

/* The delivered copy: edited header (if any) + the body, in a memfd. */
static int edited_copy(const struct sieve_result *res, const char *raw, size_t raw_len, const char *header)
{
	const char *hdr = header != NULL ? header : res->edited_header;
	int fd = memfd_create("mailroute-sieve", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t body = res->body_offset <= raw_len ? res->body_offset : raw_len;
	struct buf b;
	buf_init(&b, raw_len + strlen(hdr) + 8);
	buf_append_str(&b, hdr);
	buf_append(&b, "\r\n", 2);
	buf_append(&b, raw + body, raw_len - body);
	ssize_t w = write(fd, b.data, b.len);
	buf_deinit(&b);
	if (w < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Record "what" (+ ":arg") in the job's action log. */
static void log_action(struct deliver_job *j, const char *what, const char *arg)
{
	char *prev = j->log;
	j->log = xasprintf("%s%s%s%s%s", prev ? prev : "", prev ? "," : "", what, arg ? ":" : "", arg ? arg : "");
	free(prev);
}

/*
 * RFC 8601 5: an Authentication-Results field that claims our authserv-id but
 * came with the message is a forgery; ours travels in the prepended fields. When
 * the message has such fields, deliver a copy without them (a memfd): returns
 * its fd, or -1 when the message is clean (or too odd to rewrite: left as is).
 */
static int strip_forged_authres(const struct deliver_job *j)
{
	const char *id = j->cfg->authserv_id ? j->cfg->authserv_id : j->cfg->hostname;
	size_t idlen = strlen(id);
	char head[65536];
	ssize_t n = pread(j->fd, head, sizeof(head) - 1, 0);
	if (n <= 0)
		return -1;
	head[n] = '\0';
	/* The header section: up to the first empty line (we only look at the first 64 KiB). */
	char *end = strstr(head, "\r\n\r\n");
	size_t hlen = end ? (size_t)(end - head) + 2 : (size_t)n;
	bool forged = false;
	for (size_t i = 0; i < hlen;) {
		size_t e = i;
		do {
			char *nl = memchr(head + e, '\n', hlen - e);
			e = nl ? (size_t)(nl - head) + 1 : hlen;
		} while (e < hlen && (head[e] == ' ' || head[e] == '\t'));
		if (e - i > 23 && strncasecmp(head + i, "Authentication-Results:", 23) == 0) {
			const char *v = head + i + 23;
			while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
				v++;
			if (strncasecmp(v, id, idlen) == 0 && (v[idlen] == ';' || v[idlen] == ' ' || v[idlen] == '\t' ||
			                                        v[idlen] == '\r'))
				forged = true;
		}
		i = e;
	}
	if (!forged)
		return -1;
	int out = memfd_create("mailroute-authres", MFD_CLOEXEC);
	if (out < 0)
		return -1;
	for (size_t i = 0; i < hlen;) {
		size_t e = i;
		do {
			char *nl = memchr(head + e, '\n', hlen - e);
			e = nl ? (size_t)(nl - head) + 1 : hlen;
		} while (e < hlen && (head[e] == ' ' || head[e] == '\t'));
		bool drop = false;
		if (e - i > 23 && strncasecmp(head + i, "Authentication-Results:", 23) == 0) {
			const char *v = head + i + 23;
			while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
				v++;
			drop = strncasecmp(v, id, idlen) == 0 &&
			       (v[idlen] == ';' || v[idlen] == ' ' || v[idlen] == '\t' || v[idlen] == '\r');
		}
		if (!drop && write(out, head + i, e - i) != (ssize_t)(e - i))
			goto fail;
		i = e;
	}
	char buf[65536];
	off_t off = (off_t)hlen;
	ssize_t r;
	while ((r = pread(j->fd, buf, sizeof(buf), off)) > 0) {
		if (write(out, buf, (size_t)r) != r)
			goto fail;
		off += r;
	}
	if (r < 0)
		goto fail;
	log_info("event=forged_authres_removed id=%s rcpt=%u", j->id, j->idx);
	return out;
fail:
	close(out);
	return -1;
}

/* True when the message's header already has "Delivered-To: <user>" (we added it when redirecting). */
static bool delivered_to_seen(const char *msg, size_t len, const char *user)
{
	size_t ulen = strlen(user);
	for (size_t i = 0; i < len;) {
		if (msg[i] == '\r' || msg[i] == '\n')
			break; /* end of the header */
		const char *nl = memchr(msg + i, '\n', len - i);
		size_t e = nl ? (size_t)(nl - msg) + 1 : len;
		if (e - i > 13 && strncasecmp(msg + i, "Delivered-To:", 13) == 0) {
			const char *v = msg + i + 13;
			while (v < msg + e && (*v == ' ' || *v == '\t'))
				v++;
			if ((size_t)(msg + e - v) >= ulen && strncasecmp(v, user, ulen) == 0 &&
			    (v + ulen == msg + e || v[ulen] == '\r' || v[ulen] == '\n' || v[ulen] == ' '))
				return true;
		}
		i = e;
	}
	return false;
}

void deliver_job_run(struct deliver_job *j)
{
	j->result = 1;
	int clean = strip_forged_authres(j);
	if (clean >= 0) {
		/* From here on the job delivers the cleaned copy; the role closes j->fd. */
		close(j->fd);
		j->fd = clean;
	}
	char *name = NULL, *src = NULL, *error = NULL;
	size_t src_len = 0;
	int active = j->user != NULL ? sieve_store_get_active(j->cfg->data_dir, j->user, &name, &src, &src_len, &error)
	                             : 0;
	if (active < 0) {
		log_warn("event=sieve_load_failed user=%s error=\"%s\"", j->user, error);
		xfree(&error);
	}
	size_t raw_len = 0;
	char *body = NULL;
	if (active > 0) {
		bool too_big = false;
		body = fd_read_prefix(j->fd, SIEVE_MAX_MESSAGE, &raw_len, &too_big);
		if (too_big)
			xfree(&body);
	}
	if (body != NULL && delivered_to_seen(body, raw_len, j->user)) {
		/* This user's rules already handled this message once: a redirect loop. Keep it, run nothing. */
		log_warn("event=sieve_loop id=%s rcpt=%u user=%s action=keep", j->id, j->idx, j->user);
		xfree(&body);
	}
	if (active <= 0 || body == NULL) {
		/* No rules (or a message too big for them): the folder routing chose. */
		j->result = 0;
		deliver_copy(j, j->folder, j->fd, j->prepend, strlen(j->prepend));
		free(name);
		free(src);
		free(body);
		return;
	}
	/* The message as the user's rules see it: our trace headers, then the spool content. */
	size_t plen = strlen(j->prepend);
	char *raw = xmalloc(plen + raw_len + 1);
	memcpy(raw, j->prepend, plen);
	memcpy(raw + plen, body, raw_len);
	raw[plen + raw_len] = '\0';
	free(body);
	size_t len = plen + raw_len;

	struct sieve_store_ctx sctx = { .data_dir = j->cfg->data_dir, .user = j->user };
	struct sieve_compile_options copt = {
		.extensions = SIEVE_EXT_USER_DEFAULT,
		.include_resolver = sieve_store_include_resolver,
		.include_ctx = &sctx,
	};
	struct sieve_script *script = sieve_compile(src, src_len, name, &copt, &error);
	struct sieve_result res;
	sieve_result_init(&res);
	const char *at = strrchr(j->user, '@');
	/*
	 * envelope "to" is the user's address, with the +detail it was sent to when the
	 * original recipient is a subaddress of this very user (RFC 5233 tests need it).
	 */
	const char *env_to = j->user;
	char sep = j->cfg->subaddress_separator;
	if (j->orig_rcpt != NULL && at != NULL && sep != 0) {
		size_t ulen = (size_t)(at - j->user);
		const char *oat = strrchr(j->orig_rcpt, '@');
		if (oat != NULL && strcasecmp(oat, at) == 0 && strncasecmp(j->orig_rcpt, j->user, ulen) == 0 &&
		    j->orig_rcpt[ulen] == sep)
			env_to = j->orig_rcpt;
	}
	struct sieve_msg_view mv = {
		.envelope_from = j->sender,
		.envelope_to = env_to,
		.original_to = j->orig_rcpt,
		.raw = raw,
		.raw_len = len,
		.domain = at ? at + 1 : NULL,
		.host = j->cfg->hostname,
		.duplicate_check = dup_check,
		.ctx = j,
	};
	int ok = -1;
	if (script == NULL) {
		log_warn("event=sieve_compile_failed user=%s error=\"%s\" action=implicit_keep", j->user, error);
	} else if ((ok = sieve_execute(script, &mv, NULL, &res, NULL, NULL, &error)) < 0) {
		log_warn("event=sieve_runtime_error user=%s error=\"%s\" action=implicit_keep", j->user, error);
	}
	xfree(&error);
	j->result = 0;
	if (ok < 0) {
		deliver_copy(j, j->folder, j->fd, j->prepend, plen);
		goto out;
	}
	struct sieve_reply_options ro = { .hostname = j->cfg->hostname, .check_recipient = true,
		                          .user_address = j->user };
	for (size_t i = 0; i < res.count && j->result < 2; i++) {
		const struct sieve_action *a = &res.actions[i];
		switch (a->type) {
		case SIEVE_ACT_KEEP:
		case SIEVE_ACT_FILEINTO: {
			const char *folder = a->type == SIEVE_ACT_FILEINTO ? a->target : j->folder;
			log_action(j, a->type == SIEVE_ACT_FILEINTO ? "fileinto" : "keep", a->type == SIEVE_ACT_FILEINTO ? a->target : NULL);
			if (a->header != NULL || res.edited_header != NULL) {
				int efd = edited_copy(&res, raw, len, a->header);
				if (efd < 0) {
					job_fail(j, errno, NULL);
					break;
				}
				deliver_copy(j, folder, efd, "", 0);
				close(efd);
			} else {
				deliver_copy(j, folder, j->fd, j->prepend, plen);
			}
			break;
		}
		case SIEVE_ACT_DISCARD:
			log_action(j, "discard", NULL);
			break;
		case SIEVE_ACT_REDIRECT: {
			/* The copy keeps the original envelope sender and the (edited) message. */
			log_action(j, "redirect", a->target);
			const char *hdr = a->header ? a->header : res.edited_header;
			/* The copy says who redirected it, so a redirect loop is seen on its way back. */
			char *dt = xasprintf("Delivered-To: %s\r\n", j->user);
			struct buf m;
			buf_init(&m, len + strlen(dt) + (hdr ? strlen(hdr) : 0) + 8);
			buf_append_str(&m, dt);
			if (hdr != NULL) {
				size_t b = res.body_offset <= len ? res.body_offset : len;
				buf_append_str(&m, hdr);
				buf_append(&m, "\r\n", 2);
				buf_append(&m, raw + b, len - b);
			} else {
				buf_append(&m, raw + plen, len - plen);
			}
			add_out(j, j->sender, a->target, m.data, m.len);
			buf_deinit(&m);
			free(dt);
			break;
		}
		case SIEVE_ACT_VACATION: {
			struct sieve_reply rep = { 0 };
			const char *why = NULL;
			char *key = xasprintf("%s\n%s", a->handle ? a->handle : "", j->sender);
			char *mark = marker_path(j, "vacation", key, strlen(key));
			free(key);
			unsigned long period = a->seconds ? a->seconds : 7 * 86400;
			if (marker_recent(mark, period)) {
				log_action(j, "vacation", "already-replied");
			} else if (sieve_vacation_compose(a, &mv, &ro, &rep, &why) == 1) {
				add_out(j, "", rep.rcpt_to, rep.data, rep.len);
				marker_touch(mark);
				log_action(j, "vacation", rep.rcpt_to);
			} else {
				log_action(j, "vacation-not-sent", why ? why : "?");
			}
			sieve_reply_free(&rep);
			free(mark);
			break;
		}
		case SIEVE_ACT_REJECT:
		case SIEVE_ACT_EREJECT: {
			struct sieve_reply rep = { 0 };
			const char *why = NULL;
			if (sieve_reject_compose(a, &mv, &ro, &rep, &why) == 1) {
				add_out(j, "", rep.rcpt_to, rep.data, rep.len);
				log_action(j, "reject", rep.rcpt_to);
			} else {
				log_action(j, "reject-silent", why ? why : "?");
			}
			sieve_reply_free(&rep);
			break;
		}
		case SIEVE_ACT_DUPLICATE_TRACK: {
			char *mark = marker_path(j, "duplicate", a->text ? a->text : "", a->text ? strlen(a->text) : 0);
			marker_touch(mark);
			free(mark);
			break;
		}
		default:
			/* notify, header edits (already in edited_header), MTA-only actions: nothing to do here. */
			break;
		}
	}
out:
	sieve_result_deinit(&res);
	sieve_script_free(&script);
	free(raw);
	free(name);
	free(src);
}

void deliver_job_free_outputs(struct deliver_job *j)
{
	for (size_t i = 0; i < j->out_count; i++) {
		free(j->out[i].sender);
		free(j->out[i].rcpt);
		free(j->out[i].orcpt);
		free(j->out[i].data);
	}
	free(j->out);
	j->out = NULL;
	j->out_count = 0;
}
