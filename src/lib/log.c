#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_role = "mailroute";
static enum log_level log_min = LOG_LEVEL_INFO;
static int log_fd = -1;

static const char *const level_names[] = { "debug", "info", "warn", "fatal", "panic" };

void log_set_role(const char *role)
{
	log_role = role;
}

void log_set_level(enum log_level min)
{
	log_min = min;
}

int log_open_file(const char *path)
{
	if (log_fd >= 0)
		close(log_fd);
	log_fd = -1;
	if (path == NULL)
		return 0;
	log_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	return log_fd < 0 ? -1 : 0;
}

static void log_vmsg(enum log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	if (level < log_min)
		return;
	int saved_errno = errno;
	char line[4096];
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ role=%s pid=%ld level=%s ",
	                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	                 (long)(tv.tv_usec / 1000), log_role, (long)getpid(), level_names[level]);
	if (n < 0)
		n = 0;
	if ((size_t)n < sizeof(line)) {
		int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		if (m > 0)
			n += m;
	}
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line so lines from several processes do not interleave. */
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	if (log_fd >= 0)
		w = write(log_fd, line, (size_t)n);
	(void)w;
	errno = saved_errno;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void log_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_LEVEL_FATAL, fmt, ap);
	va_end(ap);
	exit(1);
}

void log_panic(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_LEVEL_PANIC, fmt, ap);
	va_end(ap);
	abort();
}

const char *log_qn(char *buf, size_t size, const char *s, size_t len)
{
	if (s == NULL) {
		snprintf(buf, size, "-");
		return buf;
	}
	bool plain = len > 0;
	for (size_t i = 0; i < len && plain; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == '=')
			plain = false;
	}
	if (plain && len < size) {
		memcpy(buf, s, len);
		buf[len] = '\0';
		return buf;
	}
	size_t o = 0;
	buf[o++] = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char tmp[5];
		size_t tn;
		if (c == '"' || c == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)c;
			tn = 2;
		} else if (c < ' ' || c == 0x7f) {
			snprintf(tmp, sizeof(tmp), "\\x%02x", c);
			tn = 4;
		} else {
			tmp[0] = (char)c;
			tn = 1;
		}
		if (o + tn + 2 > size)
			break;
		memcpy(buf + o, tmp, tn);
		o += tn;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

const char *log_q(char *buf, size_t size, const char *s)
{
	return log_qn(buf, size, s, s ? strlen(s) : 0);
}
