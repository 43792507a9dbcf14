/*
 * tlsrpt: record TLS failures of outbound delivery for TLS reporting (RFC 8460).
 *
 * Each failure is one JSON object on its own line, appended (O_APPEND, one
 * write) to <dir>/<YYYY-MM-DD>.jsonl (UTC date), the directory created 0700 on
 * first use:
 *   {"time":"2026-11-26T10:00:00Z","policy_type":"tlsa","policy_domain":"example.org",
 *    "receiving_mx_hostname":"mx.example.org","receiving_ip":"192.0.2.1",
 *    "result_type":"validation-failure","failure_reason":"...","queue_id":"..."}
 * policy_type: "tlsa" (DANE), "sts" (MTA-STS) or "no-policy-found";
 * result_type: the RFC 8460 4.3 names (starttls-not-supported,
 * certificate-host-mismatch, certificate-expired, certificate-not-trusted,
 * validation-failure, tlsa-invalid, dnssec-invalid, sts-policy-fetch-error,
 * sts-policy-invalid, sts-webpki-invalid).
 * Building and sending the daily aggregate reports is not done here.
 */
#ifndef MR_TLSRPT_H
#define MR_TLSRPT_H

#include <openssl/x509_vfy.h>

/* dir NULL: no-op. Returns 1 written, -1 on an I/O error (logged). Strings may be NULL. */
int tlsrpt_record(const char *dir, const char *policy_type, const char *domain, const char *mx_host,
                  const char *ip, const char *result_type, const char *reason, const char *queue_id);

/* RFC 8460 result type for an X509_V_ERR_* verification result. */
const char *tlsrpt_result_for_verify(long verify_result);

#endif
