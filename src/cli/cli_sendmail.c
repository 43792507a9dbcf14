/*
 * sendmail: the Postfix-compatible entry point for local programs
 * (`mailroute sendmail ...`, or the binary invoked as `sendmail`). Reads a
 * message on stdin and hands it to the running server's queue over its local
 * socket (PROTO_QUEUE_SUBMIT), so it gets the same routing, durability and
 * delivery as mail received over SMTP. Options: -t (recipients from To/Cc/Bcc;
 * Bcc is removed), -i / -oi (a lone "." does not end the message: stdin is
 * read to EOF either way), -f SENDER, -F NAME (accepted, ignored), -bm (the
 * default), -odb/-odi/-oem/-oep (accepted). Missing Date, Message-ID and From
 * headers are added. -bs speaks SMTP on stdin/stdout instead. Needs root (the queue accepts only the server's users).
 */
#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib-smtp/smtp_address.h"
#include "lib-smtp/smtp_command.h"
#include "lib-smtp/smtp_data.h"
#include "lib-smtp/smtp_line.h"
#include "lib/buf.h"
#include "lib/ipc.h"
#include "lib/ipc_client.h"
#include "lib/xalloc.h"
#include "master/master.h"
#include "master/proto.h"

#define SENDMAIL_MAX (64u << 20)
#define SENDMAIL_MAX_RCPTS 1000

struct submit_state {
	struct event_base *base;
	bool done, ok;
	char text[512];
};

static void on_reply(void *arg, struct ipc_reader *r, int fd)
{
	struct submit_state *st = arg;
	if (fd >= 0)
		close(fd);
	st->done = true;
	if (r == NULL) {
		snprintf(st->text, sizeof(st->text), "the mailroute server is not running (no queue socket)");
	} else {
		st->ok = ipc_get_u32(r) == 1;
		ipc_get_str(r, st->text, sizeof(st->text));
		if (ipc_reader_end(r) < 0) {
			st->ok = false;
			snprintf(st->text, sizeof(st->text), "malformed answer from the queue");
		}
	}
	event_base_loopbreak(st->base);
}

/* An envelope address as the queue wants it (RFC 5321 syntax, no brackets); -1 if it is not one. */
static int envelope_address(const char *in, bool sender, char *out, size_t size)
{
	char path[600];
	size_t n = strlen(in);
	if (n == 0 || n > 512)
		return -1;
	if (in[0] == '<')
		snprintf(path, sizeof(path), "%s", in);
	else
		snprintf(path, sizeof(path), "<%s>", in);
	struct smtp_address a;
	struct smtp_parse_error err;
	unsigned flags = SMTP_ADDRESS_ALLOW_UTF8 | (sender ? SMTP_ADDRESS_ALLOW_NULL : 0);
	if (smtp_address_parse(path, strlen(path), flags, &a, &err) < 0)
		return -1;
	return smtp_address_format(&a, out, size) < 0 ? -1 : 0;
}

/* Header end: offset of the empty line (CRLF or LF), or the length when there is none. */
static size_t header_end(const char *m, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (m[i] == '\n' && (i + 1 < len && (m[i + 1] == '\n' || (m[i + 1] == '\r' && i + 2 < len && m[i + 2] == '\n'))))
			return i + 1;
	}
	return len;
}

static bool has_header(const char *m, size_t hlen, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < hlen;) {
		if (hlen - i > n && strncasecmp(m + i, name, n) == 0 && m[i + n] == ':')
			return true;
		const char *nl = memchr(m + i, '\n', hlen - i);
		if (nl == NULL)
			break;
		i = (size_t)(nl - m) + 1;
	}
	return false;
}

/* Collect addresses from To/Cc/Bcc (-t). Simple "a@b" tokens in the unfolded values. */
static void header_rcpts(const char *m, size_t hlen, char **out, size_t *n)
{
	static const char *const names[] = { "to", "cc", "bcc" };
	size_t i = 0;
	while (i < hlen) {
		const char *line = m + i;
		size_t end = i;
		/* the field with its continuation lines */
		do {
			const char *nl = memchr(m + end, '\n', hlen - end);
			end = nl ? (size_t)(nl - m) + 1 : hlen;
		} while (end < hlen && (m[end] == ' ' || m[end] == '\t'));
		bool want = false;
		for (size_t k = 0; k < 3; k++) {
			size_t nl = strlen(names[k]);
			if (end - i > nl && strncasecmp(line, names[k], nl) == 0 && line[nl] == ':')
				want = true;
		}
		if (want) {
			const char *p = memchr(line, ':', end - i) + 1;
			const char *e = m + end;
			while (p < e && *n < SENDMAIL_MAX_RCPTS) {
				while (p < e && (isspace((unsigned char)*p) || *p == ',' || *p == '<' || *p == '>'))
					p++;
				const char *s = p;
				bool quoted = false;
				while (p < e && (quoted || !(isspace((unsigned char)*p) || *p == ',' || *p == '<' || *p == '>'))) {
					if (*p == '"')
						quoted = !quoted;
					p++;
				}
				if (p > s && memchr(s, '@', (size_t)(p - s)) != NULL && *s != '"')
					out[(*n)++] = xstrndup(s, (size_t)(p - s));
			}
		}
		i = end;
	}
}

/* Remove Bcc fields (with continuations) from the header part of b. */
static void drop_bcc(struct buf *b)
{
	size_t hlen = header_end(b->data, b->len);
	size_t i = 0;
	while (i < hlen) {
		size_t end = i;
		do {
			const char *nl = memchr(b->data + end, '\n', hlen - end);
			end = nl ? (size_t)(nl - b->data) + 1 : hlen;
		} while (end < hlen && (b->data[end] == ' ' || b->data[end] == '\t'));
		if (end - i > 4 && strncasecmp(b->data + i, "bcc:", 4) == 0) {
			memmove(b->data + i, b->data + end, b->len - end);
			b->len -= end - i;
			hlen -= end - i;
			b->data[b->len] = '\0';
			continue;
		}
		i = end;
	}
}

/* Hand one message (CRLF) to the running server's queue. 0 ok (*id_r set), -1 with text in st. */
static int submit(const struct mr_config *cfg, const char *sender, char *const *rcpts, size_t nrcpt, const char *data,
                  size_t len, struct submit_state *st)
{
	int fd = memfd_create("mailroute-sendmail", MFD_CLOEXEC);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len) {
		snprintf(st->text, sizeof(st->text), "memfd: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	char prefix[64];
	master_ipc_prefix(cfg, prefix, sizeof(prefix));
	/* getpwnam returns static storage: take each uid before the next call. */
	uid_t peers[2] = { 0, 0 };
	struct passwd *pw = getpwnam(cfg->user);
	if (pw != NULL)
		peers[0] = pw->pw_uid;
	pw = getpwnam(cfg->vmail_user);
	if (pw != NULL)
		peers[1] = pw->pw_uid;
	ipc_set_trusted_peers(peers, 2);
	char *name = xasprintf("%s/queue", prefix);
	st->base = event_base_new();
	st->done = st->ok = false;
	struct ipc_client *cl = ipc_client_new(st->base, name);
	struct ipc_msg m;
	ipc_msg_init(&m, PROTO_QUEUE_SUBMIT, 0);
	ipc_put_str(&m, strcmp(sender, "<>") == 0 ? "" : sender);
	ipc_put_u32(&m, (uint32_t)nrcpt);
	for (size_t k = 0; k < nrcpt; k++)
		ipc_put_str(&m, rcpts[k]);
	ipc_put_str(&m, NULL); /* headers */
	ipc_put_str(&m, NULL); /* orcpt */
	m.fd = fd;
	ipc_client_call(cl, &m, on_reply, st);
	ipc_msg_deinit(&m);
	while (!st->done)
		event_base_dispatch(st->base);
	ipc_client_free(&cl);
	event_base_free(st->base);
	st->base = NULL;
	close(fd);
	free(name);
	return st->ok ? 0 : -1;
}

/*
 * -bs: an SMTP dialogue on stdin/stdout (for programs that speak SMTP to a
 * local sendmail). Each message is submitted like a `sendmail` call.
 */
static int sendmail_bs(const struct mr_config *cfg)
{
	struct smtp_line_reader lr;
	smtp_line_reader_init(&lr, 2048);
	char sender[SMTP_ADDRESS_FORMAT_MAX] = "";
	char *rcpts[SENDMAIL_MAX_RCPTS];
	size_t nrcpt = 0;
	bool in_mail = false, in_data = false;
	struct smtp_data_reader dr;
	struct buf data;
	buf_init(&data, SENDMAIL_MAX);
	char in[8192];
	size_t have = 0, pos = 0;
	printf("220 %s ESMTP mailroute (sendmail -bs)\r\n", cfg->hostname);
	fflush(stdout);
	for (;;) {
		if (pos == have) {
			ssize_t n = read(STDIN_FILENO, in, sizeof(in));
			if (n <= 0)
				break;
			have = (size_t)n;
			pos = 0;
		}
		size_t used = 0;
		if (in_data) {
			int r = smtp_data_reader_feed(&dr, in + pos, have - pos, &used, &data);
			pos += used;
			if (r == SMTP_DATA_AGAIN)
				continue;
			in_data = false;
			if (r != SMTP_DATA_DONE) {
				printf("554 5.5.2 bare CR or LF in the message\r\n");
			} else {
				struct submit_state st = { 0 };
				if (submit(cfg, sender, rcpts, nrcpt, data.data, data.len, &st) == 0)
					printf("250 2.0.0 Ok: queued as %s\r\n", st.text);
				else
					printf("451 4.3.0 %s\r\n", st.text);
			}
			for (size_t k = 0; k < nrcpt; k++)
				free(rcpts[k]);
			nrcpt = 0;
			in_mail = false;
			buf_reset(&data);
			fflush(stdout);
			continue;
		}
		struct smtp_line line;
		int r = smtp_line_reader_feed(&lr, in + pos, have - pos, &used, &line);
		pos += used;
		if (r == SMTP_LINE_AGAIN)
			continue;
		if (r != SMTP_LINE_OK) {
			printf("500 5.5.2 Error: bad command line\r\n");
			fflush(stdout);
			continue;
		}
		struct smtp_command c;
		struct smtp_parse_error err;
		if (smtp_command_parse(line.data, line.len, &c, &err) < 0) {
			printf("%d %s %s\r\n", err.code, err.enhanced, err.text);
		} else if (c.verb == SMTP_VERB_EHLO) {
			printf("250-%s\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 PIPELINING\r\n", cfg->hostname);
		} else if (c.verb == SMTP_VERB_HELO || c.verb == SMTP_VERB_NOOP) {
			printf("250 %s\r\n", c.verb == SMTP_VERB_HELO ? cfg->hostname : "2.0.0 Ok");
		} else if (c.verb == SMTP_VERB_QUIT) {
			printf("221 2.0.0 Bye\r\n");
			break;
		} else if (c.verb == SMTP_VERB_RSET) {
			for (size_t k = 0; k < nrcpt; k++)
				free(rcpts[k]);
			nrcpt = 0;
			in_mail = false;
			printf("250 2.0.0 Ok\r\n");
		} else if (c.verb == SMTP_VERB_MAIL || c.verb == SMTP_VERB_RCPT) {
			struct smtp_address a;
			unsigned fl = c.verb == SMTP_VERB_MAIL ? SMTP_ADDRESS_ALLOW_NULL : SMTP_ADDRESS_ALLOW_POSTMASTER;
			char addr[SMTP_ADDRESS_FORMAT_MAX];
			if (c.verb == SMTP_VERB_MAIL && in_mail) {
				printf("503 5.5.1 Error: nested MAIL command\r\n");
			} else if (c.verb == SMTP_VERB_RCPT && !in_mail) {
				printf("503 5.5.1 Error: need MAIL command\r\n");
			} else if (smtp_address_parse(c.path.data, c.path.len, fl | SMTP_ADDRESS_ALLOW_UTF8, &a, &err) < 0) {
				printf("%d %s %s\r\n", err.code, err.enhanced, err.text);
			} else if (smtp_address_format(&a, addr, sizeof(addr)), c.verb == SMTP_VERB_MAIL) {
				snprintf(sender, sizeof(sender), "%s", addr);
				in_mail = true;
				printf("250 2.1.0 Ok\r\n");
			} else if (nrcpt == SENDMAIL_MAX_RCPTS) {
				printf("452 4.5.3 Error: too many recipients\r\n");
			} else {
				rcpts[nrcpt++] = xstrdup(addr);
				printf("250 2.1.5 Ok\r\n");
			}
		} else if (c.verb == SMTP_VERB_DATA) {
			if (!in_mail || nrcpt == 0) {
				printf("503 5.5.1 Error: need MAIL and RCPT\r\n");
			} else {
				printf("354 End data with <CR><LF>.<CR><LF>\r\n");
				smtp_data_reader_init(&dr);
				in_data = true;
			}
		} else {
			printf("502 5.5.1 Error: command not implemented\r\n");
		}
		fflush(stdout);
	}
	fflush(stdout);
	for (size_t k = 0; k < nrcpt; k++)
		free(rcpts[k]);
	buf_deinit(&data);
	smtp_line_reader_deinit(&lr);
	return 0;
}

int cli_sendmail_main(struct cli_ctx *ctx, int argc, char **argv)
{
	const char *sender = NULL;
	bool from_headers = false;
	char *rcpts[SENDMAIL_MAX_RCPTS];
	size_t nrcpt = 0;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-t") == 0)
			from_headers = true;
		else if (strcmp(a, "-bs") == 0) {
			int rc = sendmail_bs(cli_config(ctx));
			conf_free(&ctx->cfg);
			return rc;
		}
		else if (strcmp(a, "-i") == 0 || strcmp(a, "-oi") == 0 || strcmp(a, "-bm") == 0 ||
		         strncmp(a, "-od", 3) == 0 || strncmp(a, "-oe", 3) == 0 || strcmp(a, "-U") == 0)
			continue;
		else if (strcmp(a, "-f") == 0 || strcmp(a, "-F") == 0 || strcmp(a, "-r") == 0) {
			if (i + 1 >= argc)
				return cli_usage("sendmail: %s needs an argument", a);
			if (a[1] != 'F')
				sender = argv[++i];
			else
				i++;
		} else if (strncmp(a, "-f", 2) == 0 || strncmp(a, "-r", 2) == 0)
			sender = a + 2;
		else if (strncmp(a, "-F", 2) == 0)
			continue;
		else if (strcmp(a, "--") == 0) {
			i++;
			break;
		} else
			return cli_usage("sendmail: option %s is not supported", a);
	}
	for (; i < argc; i++) {
		if (nrcpt == SENDMAIL_MAX_RCPTS)
			return cli_usage("sendmail: too many recipients");
		rcpts[nrcpt++] = xstrdup(argv[i]);
	}
	struct mr_config *cfg = cli_config(ctx);
	struct buf msg;
	buf_init(&msg, SENDMAIL_MAX);
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
		if (buf_append(&msg, chunk, n) < 0)
			return cli_fail("sendmail: message larger than %u bytes", SENDMAIL_MAX);
	}
	size_t hlen = header_end(msg.data, msg.len);
	if (from_headers)
		header_rcpts(msg.data, hlen, rcpts, &nrcpt);
	if (nrcpt == 0)
		return cli_usage("sendmail: no recipients (give addresses or -t)");
	for (size_t k = 0; k < nrcpt; k++) {
		char norm[SMTP_ADDRESS_FORMAT_MAX];
		if (envelope_address(rcpts[k], false, norm, sizeof(norm)) < 0)
			return cli_usage("sendmail: bad recipient address '%s'", rcpts[k]);
		free(rcpts[k]);
		rcpts[k] = xstrdup(norm);
	}
	drop_bcc(&msg);
	hlen = header_end(msg.data, msg.len);
	char defsender[300];
	if (sender == NULL) {
		struct passwd *pw = getpwuid(getuid());
		snprintf(defsender, sizeof(defsender), "%s@%s", pw ? pw->pw_name : "root", cfg->hostname);
		sender = defsender;
	}
	char normsender[SMTP_ADDRESS_FORMAT_MAX];
	if (strcmp(sender, "<>") != 0 && strcmp(sender, "") != 0) {
		if (envelope_address(sender, true, normsender, sizeof(normsender)) < 0)
			return cli_usage("sendmail: bad sender address '%s'", sender);
		sender = normsender;
	}
	/* The queue wants CRLF line ends; local programs write LF. */
	struct buf out;
	buf_init(&out, SENDMAIL_MAX * 2);
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	if (!has_header(msg.data, hlen, "date"))
		buf_printf(&out, "Date: %s\r\n", date);
	if (!has_header(msg.data, hlen, "message-id"))
		buf_printf(&out, "Message-ID: <%lld.%ld@%s>\r\n", (long long)now, (long)getpid(), cfg->hostname);
	if (!has_header(msg.data, hlen, "from"))
		buf_printf(&out, "From: <%s>\r\n", sender);
	for (size_t k = 0; k < msg.len; k++) {
		if (msg.data[k] == '\n' && (k == 0 || msg.data[k - 1] != '\r'))
			buf_append(&out, "\r\n", 2);
		else if (msg.data[k] == '\r' && (k + 1 >= msg.len || msg.data[k + 1] != '\n'))
			continue;
		else
			buf_append_c(&out, msg.data[k]);
	}
	if (out.len >= 2 && memcmp(out.data + out.len - 2, "\r\n", 2) != 0)
		buf_append(&out, "\r\n", 2);
	struct submit_state st = { 0 };
	submit(cfg, sender, rcpts, nrcpt, out.data, out.len, &st);
	buf_deinit(&out);
	buf_deinit(&msg);
	for (size_t k = 0; k < nrcpt; k++)
		free(rcpts[k]);
	conf_free(&ctx->cfg);
	if (!st.ok)
		return cli_fail("sendmail: %s", st.text);
	return 0;
}
