/*
 * log: one key=value line per event on stderr (and optionally a file), each
 * prefixed with ts, role, pid and level, so one message can be followed from
 * connect to delivery with grep on its sid= or id=. Values that come from the
 * network must go through log_q(), which quotes and escapes them.
 *
 * Levels (Postfix's three plus info/debug): panic = a bug (aborts), fatal = the
 * environment or config is wrong (exits 1), warn, info, debug.
 */
#ifndef MR_LOG_H
#define MR_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_FATAL, LOG_LEVEL_PANIC };

/* Name of this process's role ("master", "smtp", ...), shown as role=. */
void log_set_role(const char *role);
void log_set_level(enum log_level min);
/* Also append to this file (opened O_APPEND); NULL to stop. -1 on error. */
int log_open_file(const char *path);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void log_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * Quote a value for a log line: printable ASCII without spaces/quotes passes as is,
 * anything else is put in "" with \\, \", \xNN escapes; truncated to fit.
 * Returns buf. size must be >= 4.
 */
const char *log_q(char *buf, size_t size, const char *s);
/* Same for a byte range that is not NUL-terminated. */
const char *log_qn(char *buf, size_t size, const char *s, size_t len);

#endif
