/*
 * The interactive shell (libedit): the same table, parser and handlers
 * as single commands and batch files, one session for all lines.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include <histedit.h>

#include "cmd.h"
#include "tokenize.h"

#define HISTORY_SIZE 1000

static volatile sig_atomic_t interrupted;

struct shell {
	EditLine *el;
	History *hist;
	struct ctx *ctx;
	char prompt[512];
	char histpath[PATH_MAX];
	bool done;		/* exit or quit */
};

static void
on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* Read one character; a Ctrl-C ends el_gets() so the line is dropped. */
static int
read_char(EditLine *el, wchar_t *wc)
{
	char buf[MB_LEN_MAX];
	size_t n = 0;
	mbstate_t mbs;

	(void)el;
	memset(&mbs, 0, sizeof(mbs));
	for (;;) {
		ssize_t r = read(STDIN_FILENO, buf + n, 1);
		size_t c;

		if (r < 0 && errno == EINTR) {
			if (interrupted)
				return -1;
			continue;
		}
		if (r <= 0)
			return (int)r;
		n++;
		c = mbrtowc(wc, buf, n, &mbs);
		if (c == (size_t)-2 && n < sizeof(buf))
			continue;	/* an incomplete multibyte character */
		if (c == (size_t)-1 || c == (size_t)-2) {
			*wc = L'?';
			return 1;
		}
		return 1;
	}
}

static char *
prompt_fn(EditLine *el)
{
	struct shell *sh = NULL;

	el_get(el, EL_CLIENTDATA, &sh);
	return sh->prompt;
}

static void
make_prompt(struct shell *sh)
{
	const struct ctx *ctx = sh->ctx;
	const char *cluster = ctx->cluster;
	const char *node = ctx->conn != NULL ? ctx->node_label : ctx->node;

	if (cluster == NULL && ctx->cfg != NULL)
		cluster = ctx->cfg->default_cluster;
	if (cluster == NULL && ctx->cfg != NULL && ctx->cfg->nclusters == 1)
		cluster = ctx->cfg->clusters[0].name;
	snprintf(sh->prompt, sizeof(sh->prompt), "hsmctl %.64s%s%.80s%s%s%s> ",
	    cluster != NULL ? cluster : "", node != NULL ? "@" : "",
	    node != NULL ? node : "", ctx->role[0] ? " [" : "", ctx->role,
	    ctx->role[0] ? "]" : "");
}

struct cands {
	char **v;
	size_t n;
};

static void
cand_add(void *arg, const char *s)
{
	struct cands *c = arg;
	char **p;

	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->v[i], s) == 0)
			return;
	if ((p = realloc(c->v, (c->n + 1) * sizeof(*p))) == NULL)
		return;
	c->v = p;
	if ((c->v[c->n] = strdup(s)) != NULL)
		c->n++;
}

static unsigned char
complete_fn(EditLine *el, int ch)
{
	struct shell *sh = NULL;
	const LineInfo *li = el_line(el);
	struct tok_file tf;
	struct cands c = { NULL, 0 };
	hsm_status st;
	size_t len = (size_t)(li->cursor - li->buffer), common;
	char **argv = NULL, *empty = NULL;
	const char *cur;
	int argc = 0, r = CC_ERROR;
	bool fresh;

	(void)ch;
	el_get(el, EL_CLIENTDATA, &sh);
	memset(&tf, 0, sizeof(tf));
	if (tok_split(li->buffer, len, &tf, &st) != 0)
		return CC_ERROR;
	fresh = len == 0 || li->buffer[len - 1] == ' ';
	if (tf.n == 1) {
		argc = tf.lines[0].argc;
		argv = tf.lines[0].argv;
	}
	if (fresh) {
		/* A new, empty word is being started. */
		char **p = calloc((size_t)argc + 2, sizeof(*p));

		if (p == NULL)
			goto out;
		for (int i = 0; i < argc; i++)
			p[i] = argv[i];
		p[argc++] = empty = strdup("");
		argv = p;
		if (empty == NULL)
			goto out;
	}
	if (argc == 0)
		goto out;
	cur = argv[argc - 1];
	complete_words(sh->ctx, argc, argv, cand_add, &c);
	if (c.n == 0)
		goto out;
	/* Insert what every candidate shares; list them if that is all. */
	common = strlen(c.v[0]);
	for (size_t i = 1; i < c.n; i++) {
		size_t k = 0;

		while (k < common && c.v[i][k] == c.v[0][k])
			k++;
		common = k;
	}
	if (common > strlen(cur)) {
		char ins[512];

		snprintf(ins, sizeof(ins), "%.*s%s", (int)(common -
		    strlen(cur)), c.v[0] + strlen(cur), c.n == 1 ? " " : "");
		el_insertstr(el, ins);
		r = CC_REFRESH;
	} else if (c.n == 1) {
		el_insertstr(el, " ");
		r = CC_REFRESH;
	} else {
		fputc('\n', stdout);
		for (size_t i = 0; i < c.n; i++)
			printf("%s%s", c.v[i], i + 1 < c.n ? "  " : "\n");
		r = CC_REDISPLAY;
	}
out:
	for (size_t i = 0; i < c.n; i++)
		free(c.v[i]);
	free(c.v);
	if (fresh)
		free(argv);
	free(empty);
	tok_free(&tf);
	return (unsigned char)r;
}

/* $XDG_STATE_HOME/hsmctl/history, directories 0700, file 0600. */
static int
history_path(struct shell *sh)
{
	const char *state = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	char dir[PATH_MAX];
	int fd, n;

	if (state != NULL && state[0] == '/')
		n = snprintf(dir, sizeof(dir), "%s/hsmctl", state);
	else if (home != NULL && home[0] == '/') {
		n = snprintf(dir, sizeof(dir), "%s/.local", home);
		if (n > 0 && (size_t)n < sizeof(dir))
			mkdir(dir, 0700);
		n = snprintf(dir, sizeof(dir), "%s/.local/state", home);
		if (n > 0 && (size_t)n < sizeof(dir))
			mkdir(dir, 0700);
		n = snprintf(dir, sizeof(dir), "%s/.local/state/hsmctl", home);
	} else
		return -1;
	if (n < 0 || (size_t)n >= sizeof(dir))
		return -1;
	if (state != NULL && state[0] == '/')
		mkdir(state, 0700);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return -1;
	n = snprintf(sh->histpath, sizeof(sh->histpath), "%s/history", dir);
	if (n < 0 || (size_t)n >= sizeof(sh->histpath))
		return -1;
	/* Created private before libedit writes to it. */
	if ((fd = open(sh->histpath, O_WRONLY | O_CREAT | O_CLOEXEC,
	    0600)) < 0)
		return -1;
	fchmod(fd, 0600);
	close(fd);
	return 0;
}

static void
run_line(struct shell *sh, const char *line)
{
	struct ctx *ctx = sh->ctx;
	struct tok_file tf;
	struct inv inv;
	hsm_status st;
	HistEvent ev;
	int r;

	hsm_status_clear(&st);
	if (tok_split(line, strlen(line), &tf, &st) != 0) {
		out_error(ctx, &st);
		return;
	}
	if (tf.n == 0)
		goto out;
	if (tf.lines[0].argc == 1 && (strcmp(tf.lines[0].argv[0], "exit") == 0 ||
	    strcmp(tf.lines[0].argv[0], "quit") == 0)) {
		sh->done = true;
		goto out;
	}
	if (cmd_parse(tf.lines[0].argc, tf.lines[0].argv, &inv, &st) != 0) {
		out_error(ctx, &st);
		goto out;
	}
	/* Lines that carry secrets never reach the history file. */
	if (!inv.cmd->secret && sh->histpath[0] != '\0') {
		history(sh->hist, &ev, H_ENTER, line);
		history(sh->hist, &ev, H_SAVE, sh->histpath);
	}
	r = cmd_run(ctx, &inv);
	/* A lost node is reported; the next command connects again. */
	if (r == HSM_EXIT_CONN)
		ctx_close(ctx);
out:
	tok_free(&tf);
}

int
shell_run(struct ctx *ctx)
{
	struct shell sh;
	struct sigaction sa, old;
	HistEvent ev;
	const char *line;
	int count;

	memset(&sh, 0, sizeof(sh));
	sh.ctx = ctx;
	ctx->interactive = true;
	/* The prompt names the cluster; a bad config is reported here. */
	if (ctx->cfg == NULL) {
		hsm_status st;

		if (hsm_config_load(ctx->config_path, &ctx->cfg, &st) != 0)
			return out_error(ctx, &st);
	}
	if ((sh.hist = history_init()) == NULL)
		return HSM_EXIT_NODE;
	history(sh.hist, &ev, H_SETSIZE, HISTORY_SIZE);
	history(sh.hist, &ev, H_SETUNIQUE, 1);
	if (history_path(&sh) == 0)
		history(sh.hist, &ev, H_LOAD, sh.histpath);
	else
		sh.histpath[0] = '\0';
	if ((sh.el = el_init("hsmctl", stdin, stdout, stderr)) == NULL) {
		history_end(sh.hist);
		return HSM_EXIT_NODE;
	}
	el_set(sh.el, EL_CLIENTDATA, &sh);
	el_set(sh.el, EL_EDITOR, "emacs");
	el_set(sh.el, EL_PROMPT, prompt_fn);
	el_set(sh.el, EL_HIST, history, sh.hist);
	el_set(sh.el, EL_GETCFN, read_char);
	el_wset(sh.el, EL_ADDFN, L"hsmctl-complete", L"complete a word",
	    complete_fn);	/* wide: el_set() leaks its converted copies */
	el_set(sh.el, EL_BIND, "^I", "hsmctl-complete", NULL);
	el_source(sh.el, NULL);

	/* --as: log in once; the role then holds for every line. */
	if (ctx->as != NULL) {
		hsm_status st;

		if (ctx_login_as(ctx, ctx->as, &st) != 0)
			out_error(ctx, &st);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old);	/* no SA_RESTART: read() returns */
	for (;;) {
		char *copy;
		size_t n;

		make_prompt(&sh);
		interrupted = 0;
		line = el_gets(sh.el, &count);
		if (line == NULL && interrupted) {
			fputc('\n', stdout);
			continue;	/* Ctrl-C drops the line, not the shell */
		}
		if (line == NULL || count <= 0)
			break;		/* Ctrl-D */
		if ((copy = strdup(line)) == NULL)
			break;
		n = strlen(copy);
		while (n > 0 && (copy[n - 1] == '\n' || copy[n - 1] == '\r'))
			copy[--n] = '\0';
		run_line(&sh, copy);
		free(copy);
		fflush(stdout);
		if (sh.done)
			break;
	}
	if (line == NULL)
		fputc('\n', stdout);
	sigaction(SIGINT, &old, NULL);
	el_end(sh.el);
	history_end(sh.hist);
	return 0;
}
