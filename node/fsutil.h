/* Durable file helpers: what hsmd writes survives a crash whole or not at all. */
#ifndef HSMD_FSUTIL_H
#define HSMD_FSUTIL_H

#include <sys/types.h>

#include <stddef.h>

#include "hsmctl.h"

/* Read a whole file of at most max bytes into a NUL-terminated buffer. */
int fs_read(const char *path, size_t max, char **out, size_t *len,
    hsm_status *st);
/* Write via a temporary file, fsync, rename and fsync the directory. */
int fs_write_atomic(const char *path, const void *buf, size_t len, mode_t mode,
    hsm_status *st);
/* Create a new file (O_EXCL) with the given mode and fsync it. */
int fs_write_new(const char *path, const void *buf, size_t len, mode_t mode,
    hsm_status *st);
int fs_sync_dir(const char *dir, hsm_status *st);
/* DIR/NAME into out; fails rather than truncate. */
int fs_path(char *out, size_t outlen, const char *dir, const char *name,
    hsm_status *st);

#endif
