/*
 * mailroute explain: run one message through the same decisions as live mail,
 * without side effects, and print each step: the RCPT-time policy
 * (lookup_policy_rcpt: resolution and relay control, as the lookup role does),
 * then the router (lookup_route_targets, as the queue role does at commit),
 * and the final plan per recipient. --json prints the same as JSON.
 */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib-route/directory.h"
#include "lib-route/route.h"
#include "lib-smtp/smtp_address.h"
#include "lib/buf.h"
#include "lib/xalloc.h"
#include "lookup/lookup_policy.h"
#include "lookup/lookup_rules.h"
#include "lib-sieve/sieve.h"
#include "lib-sieve/sieve_store.h"

#define EXPLAIN_MAX_MESSAGE (64u << 20)

static int normalize(const char *in, bool sender, char *out, size_t size)
{
	char path[600];
	if (strlen(in) > 512)
		return -1;
	if (in[0] == '<')
		snprintf(path, sizeof(path), "%s", in);
	else
		snprintf(path, sizeof(path), "<%s>", in);
	struct smtp_address a;
	struct smtp_parse_error err;
	unsigned flags = SMTP_ADDRESS_ALLOW_UTF8 | (sender ? SMTP_ADDRESS_ALLOW_NULL : SMTP_ADDRESS_ALLOW_POSTMASTER);
	if (smtp_address_parse(path, strlen(path), flags, &a, &err) < 0)
		return -1;
	return smtp_address_format(&a, out, size) < 0 ? -1 : 0;
}

static void on_user_trace(void *ctx, int line, int col, const char *text)
{
	json_t *arr = ctx;
	char *t = xasprintf("line %d: %s", line, text);
	json_array_append_new(arr, json_string(t));
	free(t);
}

/* The user's own script at delivery: the same compile and execute as the deliver role, no side effects. */
static void explain_user_rules(const struct mr_config *cfg, const struct lookup_target *t, const char *sender,
                               const char *rcpt, const struct buf *msg, bool json, json_t *jp)
{
	char *name = NULL, *src = NULL, *error = NULL;
	size_t len = 0;
	int r = sieve_store_get_active(cfg->data_dir, t->address, &name, &src, &len, &error);
	if (r <= 0) {
		if (r < 0 && !json)
			printf("    user rules: cannot read: %s\n", error);
		free(error);
		return;
	}
	struct sieve_store_ctx sctx = { .data_dir = cfg->data_dir, .user = t->address };
	struct sieve_compile_options copt = { .extensions = SIEVE_EXT_USER_DEFAULT,
		                              .include_resolver = sieve_store_include_resolver,
		                              .include_ctx = &sctx };
	struct sieve_script *script = sieve_compile(src, len, name, &copt, &error);
	json_t *jt = json_array(), *ja = json_array();
	if (script == NULL) {
		if (!json)
			printf("    user rules %s: compile error %s: implicit keep\n", name, error);
		json_object_set_new(jp, "user_rules_error", json_string(error));
	} else {
		/* As the deliver role does: the mailbox owner, with the +detail it was sent to when the
		   recipient is a subaddress of this very user. */
		const char *env_to = t->address;
		const char *at = strrchr(t->address, '@'), *rat = strrchr(rcpt, '@');
		size_t ulen = at ? (size_t)(at - t->address) : 0;
		if (at != NULL && rat != NULL && cfg->subaddress_separator != 0 && strcasecmp(at, rat) == 0 &&
		    strncasecmp(rcpt, t->address, ulen) == 0 && rcpt[ulen] == cfg->subaddress_separator)
			env_to = rcpt;
		struct sieve_msg_view mv = { .envelope_from = sender, .envelope_to = env_to, .original_to = rcpt,
			                     .raw = msg->data, .raw_len = msg->len, .host = cfg->hostname,
			                     .domain = at ? at + 1 : NULL };
		struct sieve_result res;
		sieve_result_init(&res);
		if (sieve_execute(script, &mv, NULL, &res, on_user_trace, jt, &error) < 0 && !json)
			printf("    user rules %s: runtime error %s: implicit keep\n", name, error);
		if (!json) {
			printf("    user rules %s:\n", name);
			for (size_t k = 0; k < json_array_size(jt); k++)
				printf("      %s\n", json_string_value(json_array_get(jt, k)));
		}
		for (size_t k = 0; k < res.count; k++) {
			char *dsc = sieve_action_describe(&res.actions[k]);
			if (!json)
				printf("      action: %s\n", dsc);
			json_array_append_new(ja, json_string(dsc));
			free(dsc);
		}
		sieve_result_deinit(&res);
		sieve_script_free(&script);
	}
	json_object_set_new(jp, "user_rules", json_pack("{s:s,s:o,s:o}", "script", name, "trace", jt, "actions", ja));
	free(error);
	free(name);
	free(src);
}

int cli_explain_main(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "from", required_argument, NULL, 'f' }, { "to", required_argument, NULL, 't' },
		{ "ip", required_argument, NULL, 'i' },   { "helo", required_argument, NULL, 'h' },
		{ "auth", required_argument, NULL, 'a' }, { "json", no_argument, NULL, 'j' },
		{ "listener", required_argument, NULL, 'l' }, { NULL, 0, NULL, 0 },
	};
	const char *from = NULL, *ip = "127.0.0.1", *helo = "localhost", *auth = NULL, *listener = "mx";
	const char *to[1000];
	size_t nto = 0;
	bool json = false;
	int c;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'f': from = optarg; break;
		case 't':
			if (nto == 1000)
				return cli_usage("explain: too many --to");
			to[nto++] = optarg;
			break;
		case 'i': ip = optarg; break;
		case 'h': helo = optarg; break;
		case 'a': auth = optarg; break;
		case 'l': listener = optarg; break;
		case 'j': json = true; break;
		default: return cli_usage("explain: unknown option '%s' (see 'mailroute help')", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage("explain: unexpected argument '%s'", argv[optind]);
	if (from == NULL || nto == 0)
		return cli_usage("explain needs --from ADDR and at least one --to ADDR");
	enum listen_kind kind;
	if (!conf_listen_kind_parse(listener, &kind))
		return cli_usage("explain: unknown --listener '%s'", listener);
	char sender[SMTP_ADDRESS_FORMAT_MAX];
	if (normalize(from, true, sender, sizeof(sender)) < 0)
		return cli_usage("explain: bad --from address '%s'", from);

	struct mr_config *cfg = cli_config(ctx);
	/* The message (for rules): read it whole, with a limit, unless stdin is a terminal. */
	struct buf msg;
	buf_init(&msg, EXPLAIN_MAX_MESSAGE);
	if (!isatty(STDIN_FILENO)) {
		char chunk[65536];
		size_t n;
		while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
			if (buf_append(&msg, chunk, n) < 0) {
				buf_deinit(&msg);
				return cli_fail("explain: message larger than %u bytes", EXPLAIN_MAX_MESSAGE);
			}
		}
	}
	/*
	 * The directory belongs to cfg->user and users' scripts to vmail_user: as root,
	 * open the directory with cfg->user's identity (so nothing root-owned appears
	 * next to it), then read scripts with root's.
	 */
	struct passwd *pw = geteuid() == 0 ? getpwnam(cfg->user) : NULL;
	if (pw != NULL && (setegid(pw->pw_gid) < 0 || seteuid(pw->pw_uid) < 0)) {
		buf_deinit(&msg);
		return cli_fail("explain: cannot switch to user %s: %s", cfg->user, strerror(errno));
	}
	char *error = NULL;
	char *path = directory_path(cfg);
	struct directory *dir = directory_open(path, true, &error);
	free(path);
	if (dir != NULL)
		directory_generation(dir); /* first read: every file of the database is open now */
	if (pw != NULL && (seteuid(0) < 0 || setegid(0) < 0)) {
		buf_deinit(&msg);
		return cli_fail("explain: cannot switch back to root: %s", strerror(errno));
	}
	if (dir == NULL) {
		int r = cli_fail("explain: cannot open the directory: %s", error);
		free(error);
		buf_deinit(&msg);
		return r;
	}
	struct route_options ropt = { .subaddress_separator = cfg->subaddress_separator, .trace = true };
	struct sieve_script *rules = NULL;
	if (cfg->rules != NULL && (rules = rules_load(cfg->rules, &error)) == NULL) {
		int r = cli_fail("explain: %s", error);
		free(error);
		directory_close(&dir);
		buf_deinit(&msg);
		return r;
	}
	json_t *jr = json_array();
	if (!json)
		printf("message: from=<%s> ip=%s helo=%s auth=%s listener=%s size=%zu\n", sender, ip, helo,
		       auth ? auth : "-", listener, msg.len);
	int rc = 0;
	for (size_t i = 0; i < nto; i++) {
		char rcpt[SMTP_ADDRESS_FORMAT_MAX];
		json_t *jo = json_object();
		json_object_set_new(jo, "address", json_string(to[i]));
		if (normalize(to[i], false, rcpt, sizeof(rcpt)) < 0) {
			if (!json)
				printf("\nrcpt %s\n  smtp: 501 5.1.3 Bad recipient address syntax\n", to[i]);
			json_object_set_new(jo, "smtp", json_pack("{s:i,s:s,s:s}", "code", 501, "enhanced", "5.1.3",
			                                          "text", "Bad recipient address syntax"));
			json_array_append_new(jr, jo);
			continue;
		}
		/* 1. RCPT time: exactly what the lookup role answers. */
		struct lookup_rcpt_decision d;
		lookup_policy_rcpt(dir, cfg, &ropt, rcpt, ip, auth, (int)kind, &d);
		/* 2. Commit time, system rules: rules_apply, exactly as the queue role runs it. */
		struct rules_outcome ro;
		memset(&ro, 0, sizeof(ro));
		ro.keep = true;
		json_t *jrules = json_array();
		if (rules != NULL && d.code == 250) {
			struct rules_input in = { .sender = sender, .rcpt = rcpt, .auth_user = auth, .client_ip = ip,
				                  .helo = helo, .hostname = cfg->hostname, .raw = msg.data,
				                  .raw_len = msg.len };
			rules_apply(rules, &in, true, &ro);
			for (size_t k = 0; k < ro.trace_count; k++)
				json_array_append_new(jrules, json_string(ro.trace[k]));
		}
		json_object_set_new(jo, "rules", jrules);
		/* 3. The router, exactly as the queue role runs it (with its trace). */
		struct route_result res;
		struct lookup_target *t = NULL;
		size_t n = 0;
		int r = lookup_route_targets(dir, cfg, &ropt, rcpt, &res, &t, &n, &error);
		json_t *jtrace = json_array();
		json_t *jplan = json_array();
		if (!json) {
			printf("\nrcpt %s\n", rcpt);
			for (size_t k = 0; k < res.trace_count; k++)
				printf("  route: %s\n", res.trace[k]);
			printf("  smtp: %d %s %s\n", d.code, d.enhanced, d.text);
			for (size_t k = 0; k < ro.trace_count; k++)
				printf("  rules: %s\n", ro.trace[k]);
			if (ro.error != NULL)
				printf("  rules: runtime error: %s (implicit keep)\n", ro.error);
		}
		for (size_t k = 0; k < res.trace_count; k++)
			json_array_append_new(jtrace, json_string(res.trace[k]));
		if (r < 0) {
			rc = 1;
			if (!json)
				printf("  error: %s\n", error);
			json_object_set_new(jo, "error", json_string(error));
			xfree(&error);
		} else if (d.code == 250 && ro.reject) {
			if (!json)
				printf("  plan: refused after DATA by the rules: %d %s %s\n", ro.code, ro.enhanced, ro.text);
			json_object_set_new(jo, "refused", json_pack("{s:i,s:s,s:s}", "code", ro.code, "enhanced",
			                                             ro.enhanced, "text", ro.text));
		} else if (d.code == 250) {
			if (ro.quarantine && !json)
				printf("  plan: the message is held in quarantine (%s)\n",
				       ro.quarantine_reason ? ro.quarantine_reason : "rules");
			if (ro.headers != NULL && !json)
				printf("  plan: add header %.*s\n", (int)strcspn(ro.headers, "\r"), ro.headers);
			if (!ro.keep && !json)
				printf("  plan: discarded by the rules (no delivery to its own targets)\n");
			for (size_t k = 0; k < ro.copy_count; k++) {
				if (!json)
					printf("  plan: copy to %s (redirect :copy)\n", ro.copies[k]);
				json_array_append_new(jplan, json_pack("{s:s,s:s}", "kind", "copy", "address", ro.copies[k]));
			}
			for (size_t k = 0; k < ro.webhook_count; k++) {
				if (!json)
					printf("  plan: webhook %s\n", ro.webhooks[k]);
				json_array_append_new(jplan, json_pack("{s:s,s:s}", "kind", "webhook", "name", ro.webhooks[k]));
			}
			for (size_t k = 0; k < n && ro.keep; k++) {
				if (t[k].kind == LOOKUP_TARGET_LOCAL && ro.folder != NULL) {
					free(t[k].folder);
					t[k].folder = xstrdup(ro.folder);
				}
				if (t[k].kind == LOOKUP_TARGET_REMOTE && ro.relay != NULL) {
					free(t[k].target);
					t[k].target = xstrdup(ro.relay);
				}
				if (!json) {
					if (t[k].kind == LOOKUP_TARGET_LOCAL)
						printf("  plan: deliver to mailbox %s folder %s (%s)\n", t[k].address,
						       t[k].folder ? t[k].folder : "INBOX", t[k].target);
					else if (t[k].kind == LOOKUP_TARGET_REMOTE)
						printf("  plan: relay to %s via %s\n", t[k].address,
						       t[k].target[0] ? t[k].target : "MX lookup");
					else
						printf("  plan: %s %s\n", lookup_target_kind_name(t[k].kind), t[k].target);
				}
				json_t *jp = json_pack("{s:s,s:s,s:s,s:s?}", "kind", lookup_target_kind_name(t[k].kind),
				                       "address", t[k].address, "target", t[k].target, "folder",
				                       t[k].folder);
				if (t[k].kind == LOOKUP_TARGET_LOCAL)
					explain_user_rules(cfg, &t[k], sender, rcpt, &msg, json, jp);
				json_array_append_new(jplan, jp);
			}
		} else if (!json) {
			printf("  plan: refused at RCPT time\n");
		}
		json_object_set_new(jo, "smtp", json_pack("{s:i,s:s,s:s}", "code", d.code, "enhanced", d.enhanced, "text",
		                                          d.text));
		json_object_set_new(jo, "trace", jtrace);
		json_object_set_new(jo, "plan", jplan);
		json_array_append_new(jr, jo);
		lookup_targets_free(t, n);
		route_result_deinit(&res);
		rules_outcome_deinit(&ro);
	}
	if (json) {
		json_t *top = json_pack("{s:s,s:s,s:s,s:s?,s:s,s:I,s:o}", "from", sender, "ip", ip, "helo", helo, "auth",
		                        auth, "listener", listener, "size", (json_int_t)msg.len, "recipients", jr);
		char *out = json_dumps(top, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		puts(out);
		free(out);
		json_decref(top);
	} else {
		json_decref(jr);
	}
	sieve_script_free(&rules);
	directory_close(&dir);
	buf_deinit(&msg);
	conf_free(&ctx->cfg);
	return rc;
}
