/*
 * Batch mode: hsmctl -f FILE|-.  The whole file is split and checked
 * against the command table before the first line runs, so a typo on
 * line 90 cannot leave lines 1-89 applied.  Lines share one session.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "tokenize.h"

#define BATCH_MAX (64u * 1024 * 1024)

static int
read_all(const char *path, char **out, size_t *len, hsm_status *st)
{
	int fd = strcmp(path, "-") == 0 ? STDIN_FILENO :
	    open(path, O_RDONLY | O_CLOEXEC);
	size_t cap = 0, n = 0;
	char *buf = NULL;

	*out = NULL;
	*len = 0;
	if (fd < 0)
		return hsm_fail(st, "config_io", "cannot open batch file %s: "
		    "%s", path, strerror(errno));
	for (;;) {
		ssize_t r;

		if (n == cap) {
			char *p;

			/* One byte past the limit tells a file that is too big. */
			if (n > BATCH_MAX) {
				hsm_fail(st, "usage", "batch file %s is larger "
				    "than %u bytes", path, BATCH_MAX);
				goto fail;
			}
			cap = cap ? cap * 2 : 65536;
			if (cap > BATCH_MAX)
				cap = BATCH_MAX + 1;
			if ((p = realloc(buf, cap)) == NULL) {
				hsm_fail(st, "no_memory", "out of memory");
				goto fail;
			}
			buf = p;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			hsm_fail(st, "config_io", "cannot read %s: %s", path,
			    strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (fd != STDIN_FILENO)
		close(fd);
	*out = buf;
	*len = n;
	return 0;
fail:
	if (fd != STDIN_FILENO)
		close(fd);
	free(buf);
	return -1;
}

int
batch_run(struct ctx *ctx, const char *path)
{
	struct tok_file tf;
	struct inv *invs = NULL;
	char *buf = NULL;
	size_t len;
	hsm_status st;
	int r = 0;

	hsm_status_clear(&st);
	memset(&tf, 0, sizeof(tf));
	ctx->source = strcmp(path, "-") == 0 ? "<stdin>" : path;
	if (read_all(path, &buf, &len, &st) != 0)
		return out_error(ctx, &st);
	if (tok_split(buf, len, &tf, &st) != 0) {
		ctx->lineno = tf.errline;
		r = out_error(ctx, &st);
		goto out;
	}
	if (tf.n > 0 && (invs = calloc(tf.n, sizeof(*invs))) == NULL) {
		r = out_error(ctx, (hsm_fail(&st, "no_memory", "out of "
		    "memory"), &st));
		goto out;
	}
	/* Every line against the table first: nothing is sent on a typo. */
	for (size_t i = 0; i < tf.n; i++) {
		if (cmd_parse(tf.lines[i].argc, tf.lines[i].argv, &invs[i],
		    &st) != 0) {
			ctx->lineno = tf.lines[i].lineno;
			r = out_error(ctx, &st);
			goto out;
		}
	}
	/* --as logs in once, before the first line. */
	if (ctx->as != NULL && tf.n > 0 && ctx_login_as(ctx, ctx->as,
	    &st) != 0) {
		r = out_error(ctx, &st);
		goto out;
	}
	for (size_t i = 0; i < tf.n; i++) {
		int s;

		ctx->lineno = tf.lines[i].lineno;
		if ((s = cmd_run(ctx, &invs[i])) == 0)
			continue;
		if (r == 0)
			r = s;
		if (!ctx->keep_going)
			break;
	}
out:
	ctx->lineno = 0;
	free(invs);
	tok_free(&tf);
	free(buf);
	return r;
}
