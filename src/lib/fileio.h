/*
 * fileio: reading a whole (spool) file through a descriptor shared with other
 * code: pread from offset 0, so the descriptor's own offset is never used or
 * moved.
 */
#ifndef MR_FILEIO_H
#define MR_FILEIO_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The file's first bytes, at most max of them, NUL-terminated (allocated).
 * *truncated_r (may be NULL) tells whether the file is longer than max.
 * NULL when fstat fails. A read error ends the data early (*len_r says how much).
 */
char *fd_read_prefix(int fd, size_t max, size_t *len_r, bool *truncated_r);

#endif
