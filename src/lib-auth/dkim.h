/*
 * dkim: DomainKeys Identified Mail (RFC 6376) verification and signing, with
 * RFC 8301 (rsa-sha1 and RSA keys under 1024 bits never verify) and RFC 8463
 * (ed25519-sha256). Synchronous over authdns; run it off the event loop.
 *
 * Also the pieces ARC (arc.c) and DMARC reuse: the tag-list parser, the
 * message header splitter and the two canonicalizations.
 *
 * Messages are passed whole in memory (the header is capped at
 * DKIM_MAX_HEADER_BYTES and DKIM_MAX_HEADERS fields; bare LF line ends are
 * treated as CRLF). At most DKIM_MAX_SIGNATURES signatures are evaluated; the
 * rest are reported as permerror "too many signatures".
 *
 * Ownership: results own their strings; free with dkim_verify_result_free().
 * Returned views into a struct dkim_msg live as long as the dkim_msg.
 */
#ifndef MR_DKIM_H
#define MR_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib-auth/authdns.h"
#include "lib/buf.h"

#define DKIM_MAX_SIGNATURES 10
#define DKIM_MAX_HEADERS 1000
#define DKIM_MAX_HEADER_BYTES (1024 * 1024)
#define DKIM_MAX_TAGS 64
#define DKIM_MIN_RSA_BITS 1024

/* ---- tag-list (RFC 6376 3.2), shared with ARC and DMARC ---- */

struct dkim_tag {
	char *name;
	char *value;  /* FWS at both ends removed; inner FWS kept */
};

struct dkim_taglist {
	size_t count;
	struct dkim_tag tags[DKIM_MAX_TAGS];
};

/* Parse s[0..len). -1 with a static *error_r on a syntax error, a duplicate
   tag or more than DKIM_MAX_TAGS tags; 1 on success. Free with _free even on
   error. */
int dkim_taglist_parse(const char *s, size_t len, struct dkim_taglist *tl, const char **error_r);
/* Value of a tag, or NULL. */
const char *dkim_taglist_get(const struct dkim_taglist *tl, const char *name);
void dkim_taglist_free(struct dkim_taglist *tl);

/* ---- message splitting and canonicalization ---- */

struct dkim_header {
	const char *name;  /* not NUL-terminated */
	size_t name_len;
	const char *raw;   /* whole field including the final CRLF */
	size_t raw_len;
};

struct dkim_msg {
	char *data;        /* CRLF-normalized copy */
	size_t len;
	struct dkim_header *hdrs;
	size_t nhdrs;
	const char *body;
	size_t body_len;
};

int dkim_msg_parse(const char *msg, size_t len, struct dkim_msg *m, const char **error_r);
void dkim_msg_free(struct dkim_msg *m);

/* Append the canonical form of one header field (raw, with its CRLF) to out;
   -1 if out is full. */
int dkim_canon_header(struct buf *out, const char *raw, size_t len, bool relaxed);
/* Canonicalize a body (CRLF lines) into out; -1 if out is full. */
int dkim_canon_body(struct buf *out, const char *body, size_t len, bool relaxed);
/* Remove the value of the b= tag from a raw signature header (for hashing);
   returns a heap copy. */
char *dkim_strip_b_value(const char *raw, size_t len, size_t *len_r);

/* Base64 helpers (whitespace ignored when decoding): decode returns a heap
   buffer and its length, or NULL if malformed. */
unsigned char *dkim_base64_decode(const char *s, size_t len, size_t *len_r);
char *dkim_base64_encode(const unsigned char *data, size_t len);

/* ---- verification ---- */

enum dkim_result {
	DKIM_RESULT_NONE = 0,  /* no signature */
	DKIM_RESULT_PASS,
	DKIM_RESULT_FAIL,      /* signature or body hash did not verify */
	DKIM_RESULT_NEUTRAL,
	DKIM_RESULT_POLICY,
	DKIM_RESULT_TEMPERROR, /* key lookup failed temporarily */
	DKIM_RESULT_PERMERROR, /* unusable signature or key */
};

struct dkim_sig_result {
	enum dkim_result result;
	char *domain;     /* d=, or NULL if unparsable */
	char *selector;   /* s= */
	char *identity;   /* i= (decoded), or "@" d */
	char *algorithm;  /* a= */
	char *b_prefix;   /* first 12 characters of b=, for header.b in A-R */
	char *problem;    /* why not pass, or NULL */
	unsigned key_bits;
	bool testing;     /* key has t=y */
};

struct dkim_verify_result {
	enum dkim_result result;  /* pass if any passes, else fail, temperror, permerror, none */
	size_t count;
	struct dkim_sig_result *sigs;
};

struct dkim_verify_options {
	time_t now;  /* 0 = time(NULL); for x= expiry */
	/* Signatures whose x= is passed are permerror; clock skew allowed: */
	unsigned skew_seconds;
};

/* Verify every DKIM-Signature (up to DKIM_MAX_SIGNATURES). Returns 1 (the
   result is in *out, possibly NONE), or -1 if the message could not be
   parsed (out->result = PERMERROR). opts may be NULL. */
int dkim_verify(const char *msg, size_t len, const struct authdns *dns,
		const struct dkim_verify_options *opts, struct dkim_verify_result *out);
void dkim_verify_result_free(struct dkim_verify_result *r);
const char *dkim_result_name(enum dkim_result r);

/* Verify one signature header field (raw, "DKIM-Signature: ..." with CRLF)
   against an already parsed message; used by dkim_verify and by ARC for
   ARC-Message-Signature (arc = true: the tag "i" is an instance number,
   no "v", and the field name differs). */
void dkim_verify_one(const struct dkim_msg *m, size_t sig_index, bool arc, const struct authdns *dns,
		     const struct dkim_verify_options *opts, struct dkim_sig_result *out);

/* ---- signing ---- */

struct dkim_sign_options {
	const char *domain;       /* d= */
	const char *selector;     /* s= */
	const char *key_pem;      /* private key, PEM (RSA >= 1024 bits or Ed25519) */
	const char *headers;      /* colon list of header names to sign; NULL = default list */
	bool oversign_from;       /* sign one more From than present (default list does) */
	const char *identity;     /* i=, optional */
	time_t now;               /* t=; 0 = time(NULL) */
	unsigned expire_seconds;  /* x= t + this; 0 = no x= */
};

/* Sign with relaxed/relaxed; rsa-sha256 or ed25519-sha256 from the key type.
   Returns 1 and a heap "DKIM-Signature: ...\r\n" field to prepend, or -1. */
int dkim_sign(const char *msg, size_t len, const struct dkim_sign_options *opts, char **header_r,
	      const char **error_r);

/* ---- building blocks for arc.c ---- */

struct evp_pkey_st; /* OpenSSL EVP_PKEY */

/* Fetch and parse selector._domainkey.domain: PASS with *key_r (free with
   EVP_PKEY_free), TEMPERROR or PERMERROR with a static *problem_r. */
enum dkim_result dkim_key_lookup(const struct authdns *dns, const char *selector, const char *domain,
				 bool ed25519, struct evp_pkey_st **key_r, unsigned *bits_r, bool *testing_r,
				 bool *strict_r, const char **problem_r);
bool dkim_crypto_verify(struct evp_pkey_st *key, bool ed25519, const void *data, size_t len,
			const unsigned char *sig, size_t siglen);
/* Sign data; 1 with the base64 signature (heap) in *b64_r, or -1. */
int dkim_crypto_sign(struct evp_pkey_st *key, bool ed25519, const void *data, size_t len, char **b64_r);
/* Load a PEM private key (RSA >= 1024 bits or Ed25519); NULL with *error_r. */
struct evp_pkey_st *dkim_private_key_load(const char *pem, bool *ed25519_r, const char **error_r);
/* The header hash input of the signature field m->hdrs[sig_index] with h= list. */
int dkim_header_hash_input(const struct dkim_msg *m, size_t sig_index, const char *hlist, bool relaxed,
			   struct buf *out);
/* Build a signature field over m (opts->key_pem is ignored): a DKIM-Signature
   when arc_instance is 0, else an ARC-Message-Signature with i=arc_instance. */
int dkim_sign_field(const struct dkim_msg *m, struct evp_pkey_st *key, bool ed25519,
		    const struct dkim_sign_options *opts, unsigned arc_instance, char **header_r,
		    const char **error_r);

/* Append a base64 signature folded into lines (70 characters, then 72). */
void dkim_append_folded(struct buf *b, const char *b64);

/* Generate a key: "rsa" (2048 bits) or "ed25519". Returns the private key PEM
   and the DNS TXT record text ("v=DKIM1; k=...; p=..."), heap. */
int dkim_keygen(const char *type, char **private_pem_r, char **dns_txt_r, const char **error_r);

#endif
