/*
 * base64 (RFC 4648) for SASL. Decoding is strict: padding required, no
 * whitespace, no characters outside the alphabet.
 */
#ifndef MR_BASE64_H
#define MR_BASE64_H

#include <stddef.h>

/* Writes NUL-terminated output; out must hold 4*((n+2)/3)+1. Returns length. */
size_t base64_encode(const void *in, size_t n, char *out);
/* out must hold n/4*3+1 bytes (NUL added). Returns decoded length or -1. */
long base64_decode(const char *in, size_t n, unsigned char *out);

#endif
