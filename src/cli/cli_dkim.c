/*
 * mailroute dkim keygen DOMAIN [--selector S] [--type rsa|ed25519]: makes a
 * signing key, stores it as <data_dir>/dkim/<domain>/<selector>.pem (readable
 * only by cfg->user, the lookup role that signs) and prints the DNS TXT record to publish at
 * <selector>._domainkey.<domain>. Two selectors per domain allow rotation:
 * publish the new one, switch, then remove the old.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib-auth/dkim.h"
#include "lib-route/directory.h"
#include "lib/xalloc.h"

static bool selector_valid(const char *s)
{
	if (*s == '\0' || strlen(s) > 63)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || (*p >= 'A' && *p <= 'Z')))
			return false;
	return s[0] != '-';
}

static int keygen(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "selector", required_argument, NULL, 's' },
		{ "type", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	const char *selector = "mail", *type = "rsa";
	int c;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 's')
			selector = optarg;
		else if (c == 't')
			type = optarg;
		else
			return cli_usage("dkim keygen: unknown option '%s'", argv[optind - 1]);
	}
	if (optind + 1 != argc)
		return cli_usage("usage: mailroute dkim keygen DOMAIN [--selector S] [--type rsa|ed25519]");
	if (strcmp(type, "rsa") != 0 && strcmp(type, "ed25519") != 0)
		return cli_usage("dkim keygen: --type must be rsa or ed25519");
	if (!selector_valid(selector))
		return cli_usage("dkim keygen: bad selector '%s'", selector);
	char domain[256];
	const char *why;
	if (!directory_domain_normalize(argv[optind], domain, sizeof(domain), &why))
		return cli_usage("dkim keygen: bad domain '%s': %s", argv[optind], why);

	struct mr_config *cfg = cli_config(ctx);
	char *pem = NULL, *txt = NULL;
	const char *error = NULL;
	if (dkim_keygen(type, &pem, &txt, &error) < 0)
		return cli_fail("dkim keygen: %s", error);
	char *dir = xasprintf("%s/dkim", cfg->data_dir);
	char *ddir = xasprintf("%s/%s", dir, domain);
	char *path = xasprintf("%s/%s.pem", ddir, selector);
	int rc = 0;
	if ((mkdir(cfg->data_dir, 0755) < 0 && errno != EEXIST) || (mkdir(dir, 0750) < 0 && errno != EEXIST) ||
	    (mkdir(ddir, 0750) < 0 && errno != EEXIST)) {
		rc = cli_fail("dkim keygen: cannot create %s: %s", ddir, strerror(errno));
		goto out;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = cli_fail("dkim keygen: %s: %s%s", path, strerror(errno),
		              errno == EEXIST ? " (choose another --selector to rotate)" : "");
		goto out;
	}
	size_t n = strlen(pem);
	if (write(fd, pem, n) != (ssize_t)n || fsync(fd) < 0) {
		rc = cli_fail("dkim keygen: writing %s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		goto out;
	}
	close(fd);
	/* The key is read by the lookup role, which signs submitted mail and runs as cfg->user. */
	struct passwd *pw = geteuid() == 0 ? getpwnam(cfg->user) : NULL;
	if (pw != NULL && (chown(dir, pw->pw_uid, pw->pw_gid) < 0 || chown(ddir, pw->pw_uid, pw->pw_gid) < 0 ||
	                   chown(path, pw->pw_uid, pw->pw_gid) < 0)) {
		rc = cli_fail("dkim keygen: chown %s: %s", path, strerror(errno));
		goto out;
	}
	printf("private key: %s\n", path);
	printf("publish this TXT record:\n%s._domainkey.%s. IN TXT \"%s\"\n", selector, domain, txt);
out:
	secret_free(pem);
	free(txt);
	free(dir);
	free(ddir);
	free(path);
	conf_free(&ctx->cfg);
	return rc;
}

int cli_dkim_main(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage("usage: mailroute dkim keygen DOMAIN [--selector S] [--type rsa|ed25519]");
	if (strcmp(argv[1], "keygen") == 0)
		return keygen(ctx, argc - 1, argv + 1);
	return cli_usage("dkim: unknown subcommand '%s' (keygen)", argv[1]);
}
