#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"

int
fs_read(const char *path, size_t max, char **out, size_t *len, hsm_status *st)
{
	struct stat sb;
	char *buf = NULL;
	size_t off = 0;
	int fd;

	*out = NULL;
	*len = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return hsm_fail(st, errno == ENOENT ? "not_found" : "io",
		    "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return hsm_fail(st, "io", "%s is not a regular file", path);
	}
	if ((size_t)sb.st_size > max) {
		close(fd);
		return hsm_fail(st, "bad_value", "%s is larger than %zu bytes",
		    path, max);
	}
	if ((buf = malloc((size_t)sb.st_size + 1)) == NULL) {
		close(fd);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	while (off < (size_t)sb.st_size) {
		ssize_t n = read(fd, buf + off, (size_t)sb.st_size - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(fd);
	buf[off] = '\0';
	*out = buf;
	*len = off;
	return 0;
}

int
fs_sync_dir(const char *dir, hsm_status *st)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return hsm_fail(st, "io", "cannot open %s: %s", dir,
		    strerror(errno));
	if (fsync(fd) != 0) {
		close(fd);
		return hsm_fail(st, "io", "cannot sync %s: %s", dir,
		    strerror(errno));
	}
	close(fd);
	return 0;
}

int
fs_write_new(const char *path, const void *buf, size_t len, mode_t mode,
    hsm_status *st)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);

	if (fd < 0)
		return hsm_fail(st, "io", "cannot create %s: %s", path,
		    strerror(errno));
	if (fchmod(fd, mode) != 0 || hsm_write_all(fd, buf, len) != 0 ||
	    fsync(fd) != 0) {
		hsm_fail(st, "io", "cannot write %s: %s", path,
		    strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	return 0;
}

int
fs_write_atomic(const char *path, const void *buf, size_t len, mode_t mode,
    hsm_status *st)
{
	char tmp[PATH_MAX], dir[PATH_MAX];

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path,
	    (long)getpid()) >= (int)sizeof(tmp) ||
	    snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return hsm_fail(st, "bad_value", "path too long: %s", path);
	unlink(tmp);
	if (fs_write_new(tmp, buf, len, mode, st) != 0)
		return -1;
	if (rename(tmp, path) != 0) {
		hsm_fail(st, "io", "cannot rename %s: %s", tmp,
		    strerror(errno));
		unlink(tmp);
		return -1;
	}
	return fs_sync_dir(dirname(dir), st);
}

int
fs_path(char *out, size_t outlen, const char *dir, const char *name,
    hsm_status *st)
{
	int n = snprintf(out, outlen, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= outlen)
		return hsm_fail(st, "bad_value", "path too long: %s/%s", dir,
		    name);
	return 0;
}
