/*
 * Batch mode: hsmctl -f FILE|-.  The whole file is split and checked
 * against the command table before the first line runs, so a typo on
 * line 90 cannot leave lines 1-89 applied.  Lines share one session.
 *
 * A run of lines whose commands the table marks `group` goes to the
 * node as one batch request: one round trip and one transaction for up
 * to GROUP_MAX lines.  Each line's handler runs twice: first recording
 * the request it would send (capture mode, as approval request --op
 * does), then, once the node has answered them all, with its answer
 * (ctx->replay), to print or write what it would have.  Output, exit
 * status and stop-at-first-failure are the same as line by line.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "tokenize.h"

#define BATCH_MAX (64u * 1024 * 1024)
#define GROUP_MAX 256
/* What one batch request carries at most: well inside a frame. */
#define GROUP_BYTES (8u * 1024 * 1024)

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

/* Roughly what an item weighs on the wire. */
static size_t
weight(const cbor_item_t *v)
{
	size_t w = 16;

	if (cbor_isa_bytestring(v) && cbor_bytestring_is_definite(v))
		w += cbor_bytestring_length(v);
	else if (cbor_isa_string(v) && cbor_string_is_definite(v))
		w += cbor_string_length(v);
	else if (cbor_isa_array(v))
		for (size_t i = 0; i < cbor_array_size(v); i++)
			w += weight(cbor_array_handle(v)[i]);
	else if (cbor_isa_map(v))
		for (size_t i = 0; i < cbor_map_size(v); i++)
			w += weight(cbor_map_handle(v)[i].key) +
			    weight(cbor_map_handle(v)[i].value);
	return w;
}

static bool
groupable(const struct ctx *ctx, const struct inv *inv)
{
	/* --approval files are bound to one request each: not batched. */
	return inv->cmd->group && !inv->help && ctx->napprovals == 0;
}

/*
 * Record the request line i would send; 0 with *req = {op, args}, or -1
 * when its handler stops before sending (it then runs on its own).
 */
static int
capture_line(struct ctx *ctx, const struct inv *inv, cbor_item_t **req)
{
	hsm_status st;
	int r;

	*req = NULL;
	hsm_status_clear(&st);
	if (cmd_capture(ctx, inv, &st) != 0)
		return -1;
	if ((*req = cbor_new_definite_map(2)) == NULL ||
	    hsm_map_put_str(*req, "op", ctx->captured_op) != 0) {
		cbor_decref(&ctx->captured_args);
		if (*req != NULL)
			cbor_decref(req);
		return -1;
	}
	/* hsm_map_put() takes the arguments, put or not. */
	r = hsm_map_put(*req, "args", ctx->captured_args);
	ctx->captured_args = NULL;
	if (r != 0) {
		cbor_decref(req);
		return -1;
	}
	return 0;
}

/*
 * A file a line names, by which option, and what it is on disk; its
 * standard output counts as one ("stdout"), when that is a file.
 */
#define LINE_FILES 5
struct line_file {
	const char *opt;	/* "in", "out", "stdout"; NULL: an argument */
	const char *path;
	bool known;		/* it exists: dev and ino are set */
	dev_t dev;
	ino_t ino;
};

/* A run of lines on its way as one batch request. */
struct group {
	struct inv *invs;
	const size_t *linenos;
	size_t k;		/* lines in it */
	bool writes;		/* any of them changes state */
	bool files;		/* any of them reads or writes files */
	cbor_item_t *reqs;	/* [{op, args}] */
	uint64_t id;		/* of the request, once sent */
	struct line_file files_of[GROUP_MAX][LINE_FILES];
};

/*
 * The files line inv names.  false when one of them is not a regular
 * file (a FIFO, /dev/stdin): a line's handler runs twice in a group and
 * would read it twice, so such a line runs on its own.  *named: it
 * names any file.
 */
static bool
line_files(const struct inv *inv, struct line_file *f, bool *named)
{
	size_t n = 0;
	struct stat sb;

	memset(f, 0, LINE_FILES * sizeof(*f));
	for (size_t i = 0; i < inv->nopts && n < LINE_FILES - 1; i++)
		if (inv->opts[i].opt->kind == K_FILE &&
		    inv->opts[i].value != NULL) {
			f[n].opt = inv->opts[i].opt->name;
			f[n++].path = inv->opts[i].value;
		}
	for (size_t i = 0; inv->cmd->args != NULL && i < inv->nargs &&
	    inv->cmd->args[i].name != NULL && n < LINE_FILES - 1; i++)
		if (inv->cmd->args[i].kind == K_FILE)
			f[n++].path = inv->args[i];
	*named = n > 0;
	for (size_t i = 0; i < n; i++) {
		if (stat(f[i].path, &sb) != 0)
			continue;
		if (!S_ISREG(sb.st_mode))
			return false;
		f[i].known = true;
		f[i].dev = sb.st_dev;
		f[i].ino = sb.st_ino;
	}
	if (fstat(STDOUT_FILENO, &sb) == 0 && S_ISREG(sb.st_mode)) {
		f[n].opt = "stdout";
		f[n].path = "(standard output)";
		f[n].known = true;
		f[n].dev = sb.st_dev;
		f[n].ino = sb.st_ino;
	}
	return true;
}

/*
 * Would line b, built before line a has run, read what a writes?  Its
 * request is made when the group is, so a file one line names as --out
 * (or prints to) and a later one as --in ends the group: the later line
 * then reads what the earlier one wrote, as line by line.  The same file
 * under the same option (every line's --out) is fine.
 */
static bool
files_clash(const struct line_file *a, const struct line_file *b)
{
	for (size_t i = 0; i < LINE_FILES && a[i].path != NULL; i++)
		for (size_t j = 0; j < LINE_FILES && b[j].path != NULL; j++) {
			if (a[i].opt != NULL && b[j].opt != NULL &&
			    strcmp(a[i].opt, b[j].opt) == 0)
				continue;
			if (strcmp(a[i].path, b[j].path) == 0 ||
			    (a[i].known && b[j].known &&
			    a[i].dev == b[j].dev && a[i].ino == b[j].ino))
				return true;
		}
	return false;
}

static void
group_clear(struct group *g)
{
	if (g->reqs != NULL)
		cbor_decref(&g->reqs);
	memset(g, 0, sizeof(*g));
}

/*
 * Record as many of invs[0..n) as fit in one batch request; g->k < 2
 * when that gains nothing (the line then runs on its own).  prev: the
 * group before it, when this one is made before prev's lines have
 * printed and written their files.
 */
static void
group_capture(struct ctx *ctx, struct inv *invs, const size_t *linenos,
    size_t n, struct group *g, const struct group *prev)
{
	cbor_item_t *req = NULL;
	size_t bytes = 0;

	memset(g, 0, sizeof(*g));
	g->invs = invs;
	g->linenos = linenos;
	if ((g->reqs = cbor_new_indefinite_array()) == NULL)
		return;
	while (g->k < n && g->k < GROUP_MAX && groupable(ctx, &invs[g->k])) {
		struct line_file *f = g->files_of[g->k];
		bool writes = invs[g->k].cmd->writes, named, clash = false;

		if (!line_files(&invs[g->k], f, &named))
			break;
		/*
		 * A line that writes files can still fail after the node
		 * answered it; no change may have run after it by then.
		 * (Changes before it are fine, and so the other way round.)
		 * This also keeps signing out of a transaction's lock.
		 */
		if ((writes && g->files) || (named && g->writes))
			break;
		for (size_t i = 0; i < g->k && !clash; i++)
			clash = files_clash(g->files_of[i], f);
		for (size_t i = 0; prev != NULL && i < prev->k && !clash; i++)
			clash = files_clash(prev->files_of[i], f);
		if (clash)
			break;
		ctx->lineno = linenos[g->k];
		if (capture_line(ctx, &invs[g->k], &req) != 0)
			break;
		bytes += weight(req);
		if ((g->k > 0 && bytes > GROUP_BYTES) ||
		    !cbor_array_push(g->reqs, req)) {
			cbor_decref(&req);
			break;
		}
		cbor_decref(&req);
		g->writes = g->writes || writes;
		g->files = g->files || named;
		g->k++;
	}
	ctx->lineno = 0;
}

static int
group_send(struct ctx *ctx, struct group *g, hsm_status *st)
{
	cbor_item_t *args;
	int r;

	if ((args = cbor_new_definite_map(2)) == NULL ||
	    hsm_map_put(args, "requests", cbor_incref(g->reqs)) != 0 ||
	    hsm_map_put_bool(args, "keep_going", ctx->keep_going) != 0) {
		if (args != NULL)
			cbor_decref(&args);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	ctx->running = NULL;
	r = ctx_connect(ctx, st) != 0 ? -1 :
	    hsm_call_send(ctx->conn, "batch", args, &g->id, st);
	cbor_decref(&args);
	return r;
}

/*
 * Each line of a group with its answer, through its own handler; the
 * status of the first that failed, 0 if none did.  *stop: the batch
 * goes no further.
 */
static int
group_replay(struct ctx *ctx, const struct group *g, const cbor_item_t *res,
    bool *stop)
{
	const cbor_item_t *results = hsm_map_get(res, "results");
	hsm_status st;
	size_t nr;
	int r = 0;

	hsm_status_clear(&st);
	ctx->lineno = g->linenos[0];
	if (results == NULL || !cbor_isa_array(results) ||
	    (nr = cbor_array_size(results)) > g->k || nr == 0) {
		*stop = true;
		return out_error(ctx, (hsm_fail(&st, "protocol", "the node's "
		    "answer to a batch of %zu lines is malformed", g->k), &st));
	}
	for (size_t i = 0; i < nr; i++) {
		const cbor_item_t *op = hsm_map_get(cbor_array_handle(g->reqs)[i],
		    "op");
		int s;

		ctx->lineno = g->linenos[i];
		ctx->replay = cbor_array_handle(results)[i];
		snprintf(ctx->replay_op, sizeof(ctx->replay_op), "%.*s",
		    (int)cbor_string_length(op),
		    (const char *)cbor_string_handle(op));
		s = cmd_run(ctx, &g->invs[i]);
		ctx->replay = NULL;
		if (s == 0)
			continue;
		if (r == 0)
			r = s;
		if (!ctx->keep_going) {
			*stop = true;
			return r;
		}
	}
	/* Fewer answers than lines: the node stopped at a failure. */
	if (nr < g->k && r == 0) {
		*stop = true;
		r = out_error(ctx, (hsm_fail(&st, "protocol", "the node "
		    "stopped a batch without a failure"), &st));
	}
	return r;
}

/*
 * Lines invs[0..n) in batch requests, as long as they are groupable.
 * *used: how many lines were dealt with (0: run invs[0] on its own).
 * While one group's lines are printed and their files written, the next
 * group is already on the node, if neither changes state: a read-only
 * request that runs after a failed line changes nothing (a signature
 * nobody writes down).  Changes wait for the answer before them.
 */
static int
run_groups(struct ctx *ctx, struct inv *invs, const size_t *linenos, size_t n,
    size_t *used, bool *stop)
{
	struct group g, next;
	cbor_item_t *res = NULL;
	hsm_status st;
	int r = 0;

	*used = 0;
	*stop = false;
	memset(&next, 0, sizeof(next));
	hsm_status_clear(&st);
	group_capture(ctx, invs, linenos, n, &g, NULL);
	if (g.k < 2) {
		group_clear(&g);
		return 0;	/* nothing gained: line by line */
	}
	if (group_send(ctx, &g, &st) != 0)
		goto failed;
	for (;;) {
		int s;

		if (hsm_call_recv(ctx->conn, g.id, &res, &st) != 0)
			goto failed;
		*used += g.k;
		if (!g.writes && *used < n && groupable(ctx, &invs[*used])) {
			group_capture(ctx, &invs[*used], &linenos[*used],
			    n - *used, &next, &g);
			if (next.k < 2 || next.writes)
				group_clear(&next);
			else if (group_send(ctx, &next, &st) != 0) {
				/* Sent nothing: the lines run after these. */
				group_clear(&next);
			}
		}
		s = group_replay(ctx, &g, res, stop);
		cbor_decref(&res);
		if (s != 0 && r == 0)
			r = s;
		group_clear(&g);
		/* A stop abandons the next group's answer: the batch ends. */
		if (*stop || next.k == 0)
			break;
		g = next;
		memset(&next, 0, sizeof(next));
	}
	group_clear(&next);
	return r;
failed:
	/* A node that predates batches: line by line, nothing ran. */
	if (*used == 0 && strcmp(st.code, "unknown_op") == 0) {
		group_clear(&g);
		return 0;
	}
	ctx->lineno = g.linenos[0];
	*used += g.k;
	*stop = !ctx->keep_going;
	group_clear(&g);
	{
		int s = out_error(ctx, &st);

		return r != 0 ? r : s;
	}
}

int
batch_run(struct ctx *ctx, const char *path)
{
	struct tok_file tf;
	struct inv *invs = NULL;
	size_t *linenos = NULL;
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
	if (tf.n > 0 && (linenos = calloc(tf.n, sizeof(*linenos))) == NULL) {
		r = out_error(ctx, (hsm_fail(&st, "no_memory", "out of "
		    "memory"), &st));
		goto out;
	}
	for (size_t i = 0; i < tf.n; i++)
		linenos[i] = tf.lines[i].lineno;
	for (size_t i = 0; i < tf.n;) {
		size_t used = 0;
		bool stop = false;
		int s;

		if (i + 1 < tf.n && groupable(ctx, &invs[i]) &&
		    groupable(ctx, &invs[i + 1])) {
			s = run_groups(ctx, &invs[i], &linenos[i], tf.n - i,
			    &used, &stop);
			if (used > 0) {
				i += used;
				if (s != 0 && r == 0)
					r = s;
				if (stop)
					break;
				continue;
			}
		}
		ctx->lineno = tf.lines[i].lineno;
		i++;
		if ((s = cmd_run(ctx, &invs[i - 1])) == 0)
			continue;
		if (r == 0)
			r = s;
		if (!ctx->keep_going)
			break;
	}
out:
	ctx->lineno = 0;
	free(linenos);
	free(invs);
	tok_free(&tf);
	free(buf);
	return r;
}
