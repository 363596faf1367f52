/* The batch/shell tokenizer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tokenize.h"

static struct tok_file tf;
static hsm_status st;

static int
split(const char *s)
{
	tok_free(&tf);
	hsm_status_clear(&st);
	return tok_split(s, strlen(s), &tf, &st);
}

static int
teardown(void **state)
{
	(void)state;
	tok_free(&tf);
	return 0;
}

static void
assert_words(size_t line, size_t lineno, int argc, ...)
{
	va_list ap;

	assert_true(line < tf.n);
	assert_int_equal(tf.lines[line].lineno, lineno);
	assert_int_equal(tf.lines[line].argc, argc);
	va_start(ap, argc);
	for (int i = 0; i < argc; i++)
		assert_string_equal(tf.lines[line].argv[i],
		    va_arg(ap, const char *));
	va_end(ap);
	assert_null(tf.lines[line].argv[argc]);
}

static void
test_plain(void **state)
{
	(void)state;
	assert_int_equal(split("node info\n\n  # comment\npartition set p a=1   b=2\n"), 0);
	assert_int_equal(tf.n, 2);
	assert_words(0, 1, 2, "node", "info");
	assert_words(1, 4, 5, "partition", "set", "p", "a=1", "b=2");
	assert_int_equal(split(""), 0);
	assert_int_equal(tf.n, 0);
	assert_int_equal(split("x"), 0);	/* no final newline */
	assert_words(0, 1, 1, "x");
}

static void
test_quotes(void **state)
{
	(void)state;
	assert_int_equal(split("a 'b c' \"d e\" f'g'\"h\" '' \"\"\n"), 0);
	assert_words(0, 1, 6, "a", "b c", "d e", "fgh", "", "");
	/* Single quotes are literal, backslash included. */
	assert_int_equal(split("'a\\b' '#x' \"it's\"\n"), 0);
	assert_words(0, 1, 3, "a\\b", "#x", "it's");
	/* In double quotes only \\ \" \$ \` escape. */
	assert_int_equal(split("\"a\\\"b\\\\c\\$d\\`e\\nf\"\n"), 0);
	assert_words(0, 1, 1, "a\"b\\c$d`e\\nf");
	/* Outside quotes a backslash escapes anything. */
	assert_int_equal(split("a\\ b \\'c \\#d e#f\n"), 0);
	assert_words(0, 1, 4, "a b", "'c", "#d", "e#f");
}

static void
test_comments(void **state)
{
	(void)state;
	assert_int_equal(split("node info # trailing\n#only\n"), 0);
	assert_int_equal(tf.n, 1);
	assert_words(0, 1, 2, "node", "info");
}

static void
test_continuation(void **state)
{
	(void)state;
	assert_int_equal(split("partition set p \\\n  a=1 \\\n  b=2\nnode info\n"), 0);
	assert_int_equal(tf.n, 2);
	assert_words(0, 1, 5, "partition", "set", "p", "a=1", "b=2");
	assert_words(1, 4, 2, "node", "info");
	/* Inside double quotes too; the newline disappears. */
	assert_int_equal(split("x \"a\\\nb\"\n"), 0);
	assert_words(0, 1, 2, "x", "ab");
	/* CRLF files. */
	assert_int_equal(split("a b\r\nc \\\r\nd\r\n"), 0);
	assert_words(0, 1, 2, "a", "b");
	assert_words(1, 2, 2, "c", "d");
}

static void
test_errors(void **state)
{
	(void)state;
	assert_int_equal(split("ok\n'open\n"), -1);
	assert_string_equal(st.code, "usage");
	assert_int_equal(tf.errline, 2);
	assert_non_null(strstr(st.message, "unterminated single quote"));
	assert_int_equal(tf.n, 0);	/* nothing half-parsed is kept */

	assert_int_equal(split("a\nb\n\"x\n"), -1);
	assert_int_equal(tf.errline, 3);
	assert_non_null(strstr(st.message, "double quote"));

	assert_int_equal(split("x\\"), -1);
	assert_non_null(strstr(st.message, "backslash at end"));

	assert_int_equal(tok_split("a\nb\0c\n", 6, &tf, &st), -1);
	assert_int_equal(tf.errline, 2);
	assert_non_null(strstr(st.message, "NUL"));

	assert_int_equal(split("a\n\xc3\x28\n"), -1);
	assert_int_equal(tf.errline, 2);
	assert_non_null(strstr(st.message, "UTF-8"));
	assert_int_equal(split("\xed\xa0\x80\n"), -1);	/* a surrogate */

	assert_int_equal(split("a\x1b[2Jb\n"), -1);
	assert_non_null(strstr(st.message, "control character 0x1b"));
	assert_int_equal(split("a\rb\n"), -1);
}

static void
test_limits(void **state)
{
	size_t n = 1024 * 1024;
	char *big = malloc(n + 16);
	int r;

	(void)state;
	assert_non_null(big);
	memcpy(big, "ok\n", 3);
	memset(big + 3, 'x', n);
	big[n + 3] = '\n';
	r = tok_split(big, n + 4, &tf, &st);
	assert_int_equal(r, -1);
	assert_int_equal(tf.errline, 2);
	assert_non_null(strstr(st.message, "longer than"));
	free(big);

	/* Exactly TOK_WORDS_MAX words pass, one more does not. */
	{
		char line[TOK_WORDS_MAX * 2 + 4];
		size_t o = 0;

		for (int i = 0; i < TOK_WORDS_MAX; i++) {
			line[o++] = 'w';
			line[o++] = ' ';
		}
		line[o] = '\0';
		assert_int_equal(split(line), 0);
		assert_int_equal(tf.lines[0].argc, TOK_WORDS_MAX);
		line[o++] = 'w';
		line[o] = '\0';
		assert_int_equal(split(line), -1);
		assert_non_null(strstr(st.message, "more than"));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_plain, teardown),
		cmocka_unit_test_teardown(test_quotes, teardown),
		cmocka_unit_test_teardown(test_comments, teardown),
		cmocka_unit_test_teardown(test_continuation, teardown),
		cmocka_unit_test_teardown(test_errors, teardown),
		cmocka_unit_test_teardown(test_limits, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
