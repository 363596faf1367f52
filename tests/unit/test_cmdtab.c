/* The command table parser: what single commands (and later batch lines) pass through. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cmd.h"

static int
parse(struct inv *inv, hsm_status *st, ...)
{
	char *argv[16];
	int argc = 0;
	va_list ap;

	va_start(ap, st);
	while ((argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	hsm_status_clear(st);
	return cmd_parse(argc, argv, inv, st);
}

static void
test_node_info(void **state)
{
	struct inv inv;
	hsm_status st;

	(void)state;
	assert_int_equal(parse(&inv, &st, "node", "info", NULL), 0);
	assert_string_equal(inv.cmd->words, "node info");
	assert_int_equal(inv.nargs, 0);
	assert_true(inv.cmd->connects);
}

static void
test_unknown(void **state)
{
	struct inv inv;
	hsm_status st;

	(void)state;
	assert_int_equal(parse(&inv, &st, "bogus", NULL), -1);
	assert_string_equal(st.code, "unknown_command");
	assert_non_null(strstr(st.message, "'bogus'"));
	assert_int_equal(hsm_code_exit(st.code), HSM_EXIT_USAGE);

	assert_int_equal(parse(&inv, &st, "node", "bogus", NULL), -1);
	assert_string_equal(st.code, "unknown_command");
	assert_non_null(strstr(st.message, "'node bogus'"));

	assert_int_equal(parse(&inv, &st, "node", NULL), -1);
	assert_non_null(strstr(st.message, "needs a subcommand"));

	assert_int_equal(parse(&inv, &st, NULL), -1);
	assert_string_equal(st.code, "usage");
}

static void
test_options_and_args(void **state)
{
	struct inv inv;
	hsm_status st;

	(void)state;
	assert_int_equal(parse(&inv, &st, "node", "info", "--bogus", NULL), -1);
	assert_string_equal(st.code, "bad_option");
	assert_non_null(strstr(st.message, "'--bogus'"));

	assert_int_equal(parse(&inv, &st, "node", "info", "-x", NULL), -1);
	assert_string_equal(st.code, "bad_option");

	assert_int_equal(parse(&inv, &st, "node", "info", "extra", NULL), -1);
	assert_string_equal(st.code, "usage");
	assert_non_null(strstr(st.message, "too many arguments"));
	assert_non_null(strstr(st.message, "usage: hsmctl node info"));
	assert_int_equal(hsm_code_exit(st.code), HSM_EXIT_USAGE);
}

static void
test_help_args(void **state)
{
	struct inv inv;
	hsm_status st;
	char u[128];

	(void)state;
	assert_int_equal(parse(&inv, &st, "help", NULL), 0);
	assert_int_equal(inv.nargs, 0);
	assert_false(inv.cmd->connects);
	assert_int_equal(parse(&inv, &st, "help", "node", "info", NULL), 0);
	assert_int_equal(inv.nargs, 2);
	assert_string_equal(inv.args[1], "info");
	/* "--" ends options: what follows is an argument, checked too. */
	assert_int_equal(parse(&inv, &st, "help", "--", "node", NULL), 0);
	assert_string_equal(inv.args[0], "node");
	assert_int_equal(parse(&inv, &st, "help", "--", "--x", NULL), -1);
	assert_string_equal(st.code, "unknown_command");
	assert_int_equal(parse(&inv, &st, "help", "nosuch", NULL), -1);
	assert_string_equal(st.code, "unknown_command");
	/* COMMAND -h asks for help; arguments are not counted then. */
	assert_int_equal(parse(&inv, &st, "node", "info", "-h", NULL), 0);
	assert_true(inv.help);
	cmd_usage(cmd_find("help"), u, sizeof(u));
	assert_string_equal(u, "help [COMMAND...]");
}

/* Every table row is well formed: help text, role, handler, unique words. */
static void
test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < ncommands; i++) {
		assert_non_null(commands[i].fn);
		assert_non_null(commands[i].help);
		assert_true(strlen(commands[i].help) > 0);
		assert_non_null(commands[i].role);
		assert_ptr_equal(cmd_find(commands[i].words), &commands[i]);
		for (size_t j = i + 1; j < ncommands; j++)
			assert_true(strcmp(commands[i].words,
			    commands[j].words) < 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_node_info),
		cmocka_unit_test(test_unknown),
		cmocka_unit_test(test_options_and_args),
		cmocka_unit_test(test_help_args),
		cmocka_unit_test(test_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
