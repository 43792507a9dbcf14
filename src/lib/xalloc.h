/*
 * xalloc: allocation wrappers that abort on failure (STYLE.md: allocation failure
 * is not a recoverable condition for a mail daemon; it is logged and the process
 * exits, and the master restarts the role). Never returns NULL.
 */
#ifndef MR_XALLOC_H
#define MR_XALLOC_H

#include <stdarg.h>
#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
/* xreallocarray: overflow-checked realloc of n elements. */
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xmemdup(const void *p, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Zero a secret so the compiler cannot drop the write, then free it. */
void secret_free(char *s);
void secret_zero(void *p, size_t n);

/* free and set the caller's pointer to NULL: xfree(&p). */
#define xfree(pp) do { free(*(pp)); *(pp) = NULL; } while (0)

#endif
