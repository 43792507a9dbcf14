/* mailauth: SPF + DKIM + ARC + DMARC + Authentication-Results in one call. */
#include "lib-auth/mailauth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib-auth/authres.h"
#include "lib/xalloc.h"

void mailauth_result_free(struct mailauth_result *r)
{
	spf_outcome_free(&r->spf);
	dkim_verify_result_free(&r->dkim);
	arc_verify_result_free(&r->arc);
	dmarc_outcome_free(&r->dmarc);
	free(r->from_domain);
	free(r->authres_field);
	free(r->authres_value);
	memset(r, 0, sizeof(*r));
}

int mailauth_check(const struct mailauth_request *req, const struct authdns *dns,
		   struct mailauth_result *out, const char **error_r)
{
	memset(out, 0, sizeof(*out));
	struct spf_ip ip;
	if (spf_ip_parse(req->ip, &ip) < 0) {
		*error_r = "bad client IP address";
		return -1;
	}
	const char *mailfrom = req->mailfrom != NULL ? req->mailfrom : "";
	const char *helo = req->helo != NULL ? req->helo : "";
	struct spf_options so = { .receiver = req->authserv_id, .now = req->now };

	/* SPF */
	spf_check_mailfrom(&ip, mailfrom, helo, dns, &so, &out->spf);
	if (*mailfrom == '\0') {
		out->spf_helo = out->spf.result;
	} else {
		struct spf_outcome h;
		out->spf_helo = spf_check_helo(&ip, helo, dns, &so, &h);
		spf_outcome_free(&h);
	}

	/* DKIM and ARC */
	struct dkim_verify_options dopts = { .now = req->now };
	dkim_verify(req->msg, req->len, dns, &dopts, &out->dkim);
	struct arc_verify_options aopts = { .now = req->now };
	arc_verify(req->msg, req->len, dns, &aopts, &out->arc);

	/* From domain: exactly one From field with one address (RFC 7489 6.6.1) */
	struct dkim_msg m;
	const char *perr;
	size_t froms = 0, addrs = 0;
	if (dkim_msg_parse(req->msg, req->len, &m, &perr) == 1) {
		for (size_t i = 0; i < m.nhdrs; i++) {
			if (m.hdrs[i].name_len != 4 || strncasecmp(m.hdrs[i].name, "From", 4) != 0)
				continue;
			froms++;
			const char *c = memchr(m.hdrs[i].raw, ':', m.hdrs[i].raw_len);
			char *v = xstrndup(c + 1, m.hdrs[i].raw_len - (size_t)(c + 1 - m.hdrs[i].raw));
			free(out->from_domain);
			out->from_domain = dmarc_from_domain(v, &addrs);
			free(v);
		}
		if (req->authserv_id != NULL)
			out->nforged = authres_find_claiming(&m, req->authserv_id, out->forged, MAILAUTH_MAX_FORGED);
		if (out->nforged > MAILAUTH_MAX_FORGED)
			out->nforged = MAILAUTH_MAX_FORGED;
	}
	dkim_msg_free(&m);
	if (froms != 1 || addrs != 1)
		xfree(&out->from_domain);

	/* DMARC */
	if (out->from_domain != NULL) {
		struct dmarc_dkim_input *dk = NULL;
		if (out->dkim.count > 0)
			dk = xcalloc(out->dkim.count, sizeof(*dk));
		size_t n = 0;
		for (size_t i = 0; i < out->dkim.count; i++) {
			if (out->dkim.sigs[i].domain == NULL)
				continue;
			dk[n].domain = out->dkim.sigs[i].domain;
			dk[n].result = out->dkim.sigs[i].result;
			n++;
		}
		const char *at = strrchr(mailfrom, '@');
		const char *spf_domain = *mailfrom == '\0' ? helo : at != NULL ? at + 1 : mailfrom;
		struct dmarc_input in = {
			.from_domain = out->from_domain, .spf_domain = spf_domain, .spf_result = out->spf.result,
			.dkim = dk, .dkim_count = n, .random_percent = req->random_percent,
			.random_ctx = req->random_ctx,
		};
		dmarc_evaluate(&in, dns, &out->dmarc);
		free(dk);
	} else {
		out->dmarc.result = DMARC_RESULT_NONE;
	}

	/* Authentication-Results */
	struct authres a;
	authres_init(&a, req->authserv_id);
	authres_add_spf(&a, out->spf.result, mailfrom, helo, NULL);
	if (*mailfrom != '\0')
		authres_add_spf(&a, out->spf_helo, NULL, helo, NULL);
	if (out->dkim.count == 0)
		authres_add_dkim_none(&a);
	for (size_t i = 0; i < out->dkim.count; i++)
		authres_add_dkim(&a, &out->dkim.sigs[i]);
	if (out->from_domain != NULL)
		authres_add_dmarc(&a, &out->dmarc, out->from_domain);
	authres_add_arc(&a, &out->arc);
	out->authres_value = authres_value(&a);
	out->authres_field = xasprintf("Authentication-Results: %s\r\n", out->authres_value);
	authres_deinit(&a);
	return 1;
}
