/*
 * buf: the one owning byte buffer. Every buf has a hard maximum set at init;
 * appends past it fail (return -1) and leave the content unchanged, so input
 * from the network can never grow memory without bound. The data always keeps a
 * spare NUL after len, so b->data can be used as a C string when the content
 * has no NUL of its own. Pointers into data are invalidated by any append.
 */
#ifndef MR_BUF_H
#define MR_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct buf {
	char *data;  /* never NULL after buf_init; NUL at data[len] */
	size_t len;
	size_t cap;  /* allocated bytes, excluding the spare NUL */
	size_t max;  /* hard limit on len */
};

void buf_init(struct buf *b, size_t max);
void buf_deinit(struct buf *b);
/* Empty the buffer, keep the allocation. */
void buf_reset(struct buf *b);
/* Append; -1 (content unchanged) when len would exceed max. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
int buf_append_c(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Remove the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Hand over the data as a NUL-terminated heap string; the buf is reset empty. */
char *buf_steal(struct buf *b);

#endif
