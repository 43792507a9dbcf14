/*
 * test-milter: a small libmilter filter for the milter client tests.
 *   test-milter PORT [plain|nr|skip]
 * Listens on inet:PORT@127.0.0.1. At end of message it adds
 * "X-Test-Milter: seen" and, for the tests, "X-Test-Milter-Info:
 * headers=N rcpts=N auth=yes|no from=<addr>". Body keywords:
 *   REJECTME   -> 550 5.7.1 custom reply (smfi_setreply)
 *   TEMPFAILME -> tempfail;  DISCARDME -> discard
 *   CHGSUBJECT -> change Subject to "changed";  DELHDR -> delete X-Remove-Me
 *   INSHDR     -> insert "X-Inserted: top" at index 0
 *   ADDRCPT    -> add recipient <added@example.test>; DELRCPT -> delete <b@example.test>
 *   REPLBODY   -> replace the body with "replaced body\r\n"
 *   QUARANTINE -> quarantine "test reason";  SLOWME -> sleep 2 s with progress
 * RCPT <blocked@...> is refused with 550 5.1.1; HELO "hang.test" hangs 30 s.
 * Mode "nr" asks for no replies to headers/body/rcpt/eoh; "skip" asks the MTA
 * not to send HELO and body.
 */
#include <libmilter/mfapi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct priv {
	int headers, rcpts;
	int auth;
	char from[256];
	char *body;
	size_t body_len;
};

static const char *mode = "plain";

static struct priv *get(SMFICTX *ctx)
{
	struct priv *p = smfi_getpriv(ctx);
	if (p == NULL) {
		p = calloc(1, sizeof(*p));
		smfi_setpriv(ctx, p);
	}
	return p;
}

static void reset(SMFICTX *ctx)
{
	struct priv *p = smfi_getpriv(ctx);
	if (p != NULL) {
		free(p->body);
		memset(p, 0, sizeof(*p));
	}
}

static sfsistat t_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2, unsigned long f3,
                            unsigned long *pf0, unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	*pf0 = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_ADDRCPT | SMFIF_DELRCPT | SMFIF_CHGBODY | SMFIF_QUARANTINE;
	*pf1 = 0;
	if (strcmp(mode, "nr") == 0)
		*pf1 = (SMFIP_NR_HDR | SMFIP_NR_BODY | SMFIP_NR_EOH | SMFIP_NR_CONN) & f1;
	else if (strcmp(mode, "skip") == 0)
		*pf1 = (SMFIP_NOHELO | SMFIP_NOBODY) & f1;
	*pf2 = 0;
	*pf3 = 0;
	return SMFIS_CONTINUE;
}

static sfsistat t_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
	get(ctx);
	return SMFIS_CONTINUE;
}

static sfsistat t_helo(SMFICTX *ctx, char *helo)
{
	if (strcmp(helo, "hang.test") == 0)
		sleep(30);
	return SMFIS_CONTINUE;
}

static sfsistat t_envfrom(SMFICTX *ctx, char **argv)
{
	struct priv *p;
	reset(ctx);
	p = get(ctx);
	snprintf(p->from, sizeof(p->from), "%s", argv[0]);
	p->auth = smfi_getsymval(ctx, "{auth_authen}") != NULL;
	return SMFIS_CONTINUE;
}

static sfsistat t_envrcpt(SMFICTX *ctx, char **argv)
{
	if (strncmp(argv[0], "<blocked@", 9) == 0) {
		smfi_setreply(ctx, "550", "5.1.1", "Blocked by the test milter");
		return SMFIS_REJECT;
	}
	get(ctx)->rcpts++;
	return SMFIS_CONTINUE;
}

static sfsistat t_header(SMFICTX *ctx, char *name, char *value)
{
	get(ctx)->headers++;
	return SMFIS_CONTINUE;
}

static sfsistat t_body(SMFICTX *ctx, unsigned char *data, size_t len)
{
	struct priv *p = get(ctx);
	if (p->body_len + len > 4 * 1024 * 1024)
		return SMFIS_CONTINUE;
	p->body = realloc(p->body, p->body_len + len + 1);
	memcpy(p->body + p->body_len, data, len);
	p->body_len += len;
	p->body[p->body_len] = '\0';
	return SMFIS_CONTINUE;
}

static int has(struct priv *p, const char *word)
{
	return p->body != NULL && memmem(p->body, p->body_len, word, strlen(word)) != NULL;
}

static sfsistat t_eom(SMFICTX *ctx)
{
	struct priv *p = get(ctx);
	char info[512];

	if (has(p, "REJECTME")) {
		smfi_setreply(ctx, "550", "5.7.1", "Rejected by the test milter");
		return SMFIS_REJECT;
	}
	if (has(p, "TEMPFAILME"))
		return SMFIS_TEMPFAIL;
	if (has(p, "DISCARDME"))
		return SMFIS_DISCARD;
	if (has(p, "SLOWME")) {
		for (int i = 0; i < 4; i++) {
			usleep(500 * 1000);
			smfi_progress(ctx);
		}
	}
	smfi_addheader(ctx, "X-Test-Milter", "seen");
	snprintf(info, sizeof(info), "headers=%d rcpts=%d auth=%s from=%s", p->headers, p->rcpts,
	         p->auth ? "yes" : "no", p->from);
	smfi_addheader(ctx, "X-Test-Milter-Info", info);
	if (has(p, "CHGSUBJECT"))
		smfi_chgheader(ctx, "Subject", 1, "changed");
	if (has(p, "DELHDR"))
		smfi_chgheader(ctx, "X-Remove-Me", 1, NULL);
	if (has(p, "INSHDR"))
		smfi_insheader(ctx, 0, "X-Inserted", "top");
	if (has(p, "ADDRCPT"))
		smfi_addrcpt(ctx, "<added@example.test>");
	if (has(p, "DELRCPT"))
		smfi_delrcpt(ctx, "<b@example.test>");
	if (has(p, "REPLBODY"))
		smfi_replacebody(ctx, (unsigned char *)"replaced body\r\n", 15);
	if (has(p, "QUARANTINE"))
		smfi_quarantine(ctx, "test reason");
	return SMFIS_CONTINUE;
}

static sfsistat t_abort(SMFICTX *ctx)
{
	reset(ctx);
	return SMFIS_CONTINUE;
}

static sfsistat t_close(SMFICTX *ctx)
{
	struct priv *p = smfi_getpriv(ctx);
	if (p != NULL) {
		free(p->body);
		free(p);
		smfi_setpriv(ctx, NULL);
	}
	return SMFIS_CONTINUE;
}

int main(int argc, char **argv)
{
	char conn[64];
	struct smfiDesc desc = {
		.xxfi_name = "mr-test-milter",
		.xxfi_version = SMFI_VERSION,
		.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_ADDRCPT | SMFIF_DELRCPT | SMFIF_CHGBODY |
		              SMFIF_QUARANTINE,
		.xxfi_connect = t_connect,
		.xxfi_helo = t_helo,
		.xxfi_envfrom = t_envfrom,
		.xxfi_envrcpt = t_envrcpt,
		.xxfi_header = t_header,
		.xxfi_body = t_body,
		.xxfi_eom = t_eom,
		.xxfi_abort = t_abort,
		.xxfi_close = t_close,
		.xxfi_negotiate = t_negotiate,
	};
	if (argc < 2) {
		fprintf(stderr, "usage: test-milter PORT [plain|nr|skip]\n");
		return 2;
	}
	if (argc > 2)
		mode = argv[2];
	snprintf(conn, sizeof(conn), "inet:%s@127.0.0.1", argv[1]);
	if (smfi_setconn(conn) == MI_FAILURE || smfi_register(desc) == MI_FAILURE) {
		fprintf(stderr, "test-milter: setup failed\n");
		return 1;
	}
	smfi_settimeout(60);
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
