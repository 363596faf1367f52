/* libFuzzer: the batch/shell tokenizer must never crash, leak or overrun. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenize.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tok_file tf;
	hsm_status st;

	if (tok_split((const char *)data, size, &tf, &st) == 0) {
		for (size_t i = 0; i < tf.n; i++) {
			/* Lines are ordered, non-empty and NULL-terminated. */
			if (tf.lines[i].argc <= 0 ||
			    tf.lines[i].argc > TOK_WORDS_MAX ||
			    tf.lines[i].argv[tf.lines[i].argc] != NULL ||
			    (i > 0 && tf.lines[i].lineno <=
			    tf.lines[i - 1].lineno))
				abort();
			for (int j = 0; j < tf.lines[i].argc; j++)
				if (strlen(tf.lines[i].argv[j]) > size)
					abort();
		}
		tok_free(&tf);
	} else if (st.code[0] == '\0' || tf.n != 0)
		abort();
	return 0;
}
