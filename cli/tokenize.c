/* Batch and shell line tokenizer (see tokenize.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenize.h"

struct word {
	char *buf;
	size_t len, cap;
	bool started;		/* '' makes an empty word */
};

struct line_state {
	char **argv;
	int argc;
	size_t bytes;		/* logical line length so far */
};

static int
word_add(struct word *w, char c)
{
	if (w->len + 1 >= w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		char *p = realloc(w->buf, cap);

		if (p == NULL)
			return -1;
		w->buf = p;
		w->cap = cap;
	}
	w->buf[w->len++] = c;
	w->started = true;
	return 0;
}

static int
word_end(struct word *w, struct line_state *ls)
{
	char **p, *s;

	if (!w->started)
		return 0;
	if (ls->argc >= TOK_WORDS_MAX)
		return -2;
	if ((s = malloc(w->len + 1)) == NULL)
		return -1;
	memcpy(s, w->buf, w->len);
	s[w->len] = '\0';
	if ((p = realloc(ls->argv, ((size_t)ls->argc + 2) *
	    sizeof(*p))) == NULL) {
		free(s);
		return -1;
	}
	ls->argv = p;
	ls->argv[ls->argc++] = s;
	ls->argv[ls->argc] = NULL;
	w->len = 0;
	w->started = false;
	return 0;
}

static void
argv_free(char **argv, int argc)
{
	for (int i = 0; i < argc; i++)
		free(argv[i]);
	free(argv);
}

static int
fail_at(struct tok_file *f, size_t line, hsm_status *st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
fail_at(struct tok_file *f, size_t line, hsm_status *st, const char *fmt, ...)
{
	char msg[HSM_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	f->errline = line;
	return hsm_fail(st, "usage", "%s", msg);
}

/* Each physical line must be valid UTF-8 without control characters. */
static int
check_bytes(struct tok_file *out, const char *buf, size_t len, hsm_status *st)
{
	size_t line = 1, start = 0;

	for (size_t i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)buf[i] : '\n';

		if (c == '\0')
			return fail_at(out, line, st, "NUL byte in line");
		if (c == '\n') {
			if (!hsm_utf8_valid((const unsigned char *)buf + start,
			    i - start))
				return fail_at(out, line, st, "invalid "
				    "UTF-8");
			line++;
			start = i + 1;
			continue;
		}
		if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f)
			return fail_at(out, line, st, "control "
			    "character 0x%02x in line", c);
		if (c == '\r' && i + 1 < len && buf[i + 1] != '\n')
			return fail_at(out, line, st, "carriage return "
			    "inside a line");
	}
	return 0;
}

static int
add_line(struct tok_file *f, size_t lineno, struct line_state *ls)
{
	struct tok_line *p;

	if (ls->argc == 0)
		return 0;
	if ((p = realloc(f->lines, (f->n + 1) * sizeof(*p))) == NULL)
		return -1;
	f->lines = p;
	f->lines[f->n].lineno = lineno;
	f->lines[f->n].argc = ls->argc;
	f->lines[f->n].argv = ls->argv;
	f->n++;
	ls->argv = NULL;
	ls->argc = 0;
	return 0;
}

static bool
at_newline(const char *buf, size_t len, size_t i, size_t *skip)
{
	if (i < len && buf[i] == '\n') {
		*skip = 1;
		return true;
	}
	if (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n') {
		*skip = 2;
		return true;
	}
	if (i + 1 == len && buf[i] == '\r') {
		*skip = 1;
		return true;
	}
	return false;
}

int
tok_split(const char *buf, size_t len, struct tok_file *out,
    hsm_status *st)
{
	enum { NORMAL, SQUOTE, DQUOTE } q = NORMAL;
	struct word w = { NULL, 0, 0, false };
	struct line_state ls = { NULL, 0, 0 };
	size_t line = 1, start = 1, i = 0, nl;
	int r;

	memset(out, 0, sizeof(*out));
	if (check_bytes(out, buf, len, st) != 0)
		return -1;
	while (i <= len) {
		char c;

		if (i == len || at_newline(buf, len, i, &nl)) {
			if (q != NORMAL) {
				fail_at(out, line, st, "unterminated "
				    "%s quote",
				    q == SQUOTE ? "single" : "double");
				goto fail;
			}
			if ((r = word_end(&w, &ls)) != 0 ||
			    add_line(out, start, &ls) != 0)
				goto oom_or_words;
			if (i == len)
				break;
			i += nl;
			ls.bytes = 0;
			start = ++line;
			continue;
		}
		c = buf[i];
		if (++ls.bytes > TOK_LINE_MAX) {
			fail_at(out, start, st, "line longer than %d bytes",
			    TOK_LINE_MAX);
			goto fail;
		}
		/* Backslash-newline joins lines, outside single quotes. */
		if (c == '\\' && q != SQUOTE &&
		    at_newline(buf, len, i + 1, &nl)) {
			i += 1 + nl;
			line++;
			continue;
		}
		switch (q) {
		case NORMAL:
			if (c == ' ' || c == '\t') {
				r = word_end(&w, &ls);
			} else if (c == '#' && !w.started) {
				while (i < len && buf[i] != '\n' &&
				    !at_newline(buf, len, i, &nl))
					i++;
				continue;
			} else if (c == '\'') {
				q = SQUOTE;
				w.started = true;
				r = 0;
			} else if (c == '"') {
				q = DQUOTE;
				w.started = true;
				r = 0;
			} else if (c == '\\') {
				if (i + 1 >= len) {
					fail_at(out, line, st, "backslash at "
					    "end of input");
					goto fail;
				}
				r = word_add(&w, buf[++i]) == 0 ? 0 : -1;
			} else
				r = word_add(&w, c) == 0 ? 0 : -1;
			break;
		case SQUOTE:
			if (c == '\'')
				q = NORMAL;
			r = c == '\'' ? 0 : word_add(&w, c);
			break;
		case DQUOTE:
			if (c == '"') {
				q = NORMAL;
				r = 0;
			} else if (c == '\\' && i + 1 < len &&
			    strchr("\\\"$`", buf[i + 1]) != NULL)
				r = word_add(&w, buf[++i]);
			else
				r = word_add(&w, c);
			break;
		}
		if (r != 0)
			goto oom_or_words;
		i++;
	}
	free(w.buf);
	return 0;
oom_or_words:
	if (r == -2)
		fail_at(out, start, st, "more than %d words in a line",
		    TOK_WORDS_MAX);
	else
		hsm_fail(st, "no_memory", "out of memory");
fail:
	free(w.buf);
	argv_free(ls.argv, ls.argc);
	line = out->errline;
	tok_free(out);
	out->errline = line;
	return -1;
}

void
tok_free(struct tok_file *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->n; i++)
		argv_free(f->lines[i].argv, f->lines[i].argc);
	free(f->lines);
	memset(f, 0, sizeof(*f));
}
