#include "lib/fileio.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/xalloc.h"

char *fd_read_prefix(int fd, size_t max, size_t *len_r, bool *truncated_r)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return NULL;
	size_t size = st.st_size > 0 ? (size_t)st.st_size : 0;
	if (truncated_r != NULL)
		*truncated_r = size > max;
	if (size > max)
		size = max;
	char *data = xmalloc(size + 1);
	size_t len = 0;
	while (len < size) {
		ssize_t n = pread(fd, data + len, size - len, (off_t)len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	data[len] = '\0';
	*len_r = len;
	return data;
}
