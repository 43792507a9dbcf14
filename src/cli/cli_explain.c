/*
 * mailroute explain: run one message through the same decisions as live mail,
 * without side effects, and print each step: the RCPT-time policy
 * (lookup_policy_rcpt: resolution and relay control, as the lookup role does),
 * then the router (lookup_route_targets, as the queue role does at commit),
 * and the final plan per recipient. --json prints the same as JSON.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib-route/directory.h"
#include "lib-route/route.h"
#include "lib-smtp/smtp_address.h"
#include "lib/buf.h"
#include "lib/xalloc.h"
#include "lookup/lookup_policy.h"

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
	if (cli_drop_privileges(cfg, cfg->user) < 0) {
		buf_deinit(&msg);
		return 1;
	}
	char *error = NULL;
	char *path = directory_path(cfg);
	struct directory *dir = directory_open(path, true, &error);
	free(path);
	if (dir == NULL) {
		int r = cli_fail("explain: cannot open the directory: %s", error);
		free(error);
		buf_deinit(&msg);
		return r;
	}
	struct route_options ropt = { .subaddress_separator = cfg->subaddress_separator, .trace = true };
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
		/* 2. Commit time: the router, exactly as the queue role runs it (with its trace). */
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
		}
		for (size_t k = 0; k < res.trace_count; k++)
			json_array_append_new(jtrace, json_string(res.trace[k]));
		if (r < 0) {
			rc = 1;
			if (!json)
				printf("  error: %s\n", error);
			json_object_set_new(jo, "error", json_string(error));
			xfree(&error);
		} else if (d.code == 250) {
			for (size_t k = 0; k < n; k++) {
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
				json_array_append_new(jplan, json_pack("{s:s,s:s,s:s,s:s?}", "kind",
				                                       lookup_target_kind_name(t[k].kind), "address",
				                                       t[k].address, "target", t[k].target, "folder",
				                                       t[k].folder));
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
	directory_close(&dir);
	buf_deinit(&msg);
	conf_free(&ctx->cfg);
	return rc;
}
