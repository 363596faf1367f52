/*
 * Splitting command lines into words, like a POSIX shell without
 * expansion: '...' literal, "..." with \\ \" \$ \` escapes, backslash
 * escapes outside quotes, # comments, backslash-newline continuation.
 */
#ifndef HSMCTL_TOKENIZE_H
#define HSMCTL_TOKENIZE_H

#include <stddef.h>

#include "hsmctl.h"

#define TOK_LINE_MAX 65536	/* bytes in one logical line */
#define TOK_WORDS_MAX 64	/* words in one line (the parser's INV_MAX) */

struct tok_line {
	size_t lineno;		/* first physical line, from 1 */
	int argc;
	char **argv;		/* argc words, NULL-terminated */
};

struct tok_file {
	struct tok_line *lines;	/* only lines with words */
	size_t n;
	size_t errline;		/* on failure: the line at fault */
};

/*
 * Split a whole input (a batch file, or one shell line).  Errors are
 * "usage" class; out->errline names the line.
 */
int tok_split(const char *buf, size_t len, struct tok_file *out,
    hsm_status *st);
void tok_free(struct tok_file *f);

#endif
