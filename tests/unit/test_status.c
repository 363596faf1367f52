/*
 * Unit tests for lib/status.c: error codes, their exit statuses (DESIGN
 * §9) and hsm_fail().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "hsmctl.h"

/*
 * The documented codes and the status each must give.  This is the
 * interface (scripts test exit statuses), so it is spelled out here
 * rather than derived from lib/status.c.
 */
static const struct {
	const char *code;
	int exit;
} want[] = {
	/* 1: failed on the node for another reason */
	{ "unknown_op", 1 },
	{ "bad_frame", 1 },
	{ "bad_request", 1 },
	{ "protocol", 1 },
	{ "internal", 1 },
	{ "io", 1 },
	{ "no_memory", 1 },
	/* 2: usage, nothing was sent */
	{ "usage", 2 },
	{ "unknown_command", 2 },
	{ "bad_option", 2 },
	{ "bad_value", 2 },
	{ "not_implemented", 2 },
	{ "config_syntax", 2 },
	{ "config_io", 2 },
	{ "no_terminal_key", 2 },
	{ "no_node", 2 },
	/* 3: not authorised */
	{ "not_authorized", 3 },
	{ "auth_failed", 3 },
	/* 4: not found */
	{ "not_found", 4 },
	/* 5: refused by state */
	{ "read_only", 5 },
	{ "quota", 5 },
	{ "master_unavailable", 5 },
	{ "conflict", 5 },
	/* 6: no connection */
	{ "connect_failed", 6 },
	{ "timeout", 6 },
	{ "connection_lost", 6 },
	/* 7: host key */
	{ "host_key_unknown", 7 },
	{ "host_key_changed", 7 },
	/* 8: integrity */
	{ "integrity", 8 },
	{ "bad_signature", 8 },
};

#define NWANT (sizeof(want) / sizeof(want[0]))

static void
test_exit_enum(void **state)
{
	(void)state;
	assert_int_equal(HSM_EXIT_OK, 0);
	assert_int_equal(HSM_EXIT_NODE, 1);
	assert_int_equal(HSM_EXIT_USAGE, 2);
	assert_int_equal(HSM_EXIT_AUTH, 3);
	assert_int_equal(HSM_EXIT_NOTFOUND, 4);
	assert_int_equal(HSM_EXIT_STATE, 5);
	assert_int_equal(HSM_EXIT_CONN, 6);
	assert_int_equal(HSM_EXIT_HOSTKEY, 7);
	assert_int_equal(HSM_EXIT_INTEGRITY, 8);
}

static void
test_code_exit_table(void **state)
{
	int seen[9] = { 0 };

	(void)state;
	for (size_t i = 0; i < NWANT; i++) {
		int e = hsm_code_exit(want[i].code);

		if (e != want[i].exit) {
			print_error("code %s: exit %d, want %d\n", want[i].code,
			    e, want[i].exit);
			fail();
		}
		assert_true(hsm_code_known(want[i].code));
		/* Codes fit in a status and are lower-case identifiers. */
		assert_true(strlen(want[i].code) < HSM_CODE_MAX);
		assert_int_equal(strspn(want[i].code,
		    "abcdefghijklmnopqrstuvwxyz_"), strlen(want[i].code));
		seen[e]++;
	}
	/* Every failure status 1..8 has at least one code. */
	for (int e = 1; e <= 8; e++)
		assert_true(seen[e] > 0);
	assert_int_equal(seen[0], 0);
}

static void
test_code_exit_spot_checks(void **state)
{
	(void)state;
	assert_int_equal(hsm_code_exit("not_found"), HSM_EXIT_NOTFOUND);
	assert_int_equal(hsm_code_exit("read_only"), HSM_EXIT_STATE);
	assert_int_equal(hsm_code_exit("host_key_changed"), HSM_EXIT_HOSTKEY);
	assert_int_equal(hsm_code_exit("bad_signature"), HSM_EXIT_INTEGRITY);
	assert_int_equal(hsm_code_exit("timeout"), HSM_EXIT_CONN);
	assert_int_equal(hsm_code_exit("usage"), HSM_EXIT_USAGE);
	assert_int_equal(hsm_code_exit("auth_failed"), HSM_EXIT_AUTH);
	assert_int_equal(hsm_code_exit("protocol"), HSM_EXIT_NODE);
}

static void
test_code_exit_unknown(void **state)
{
	static const char *const unknown[] = {
		"nope", "NOT_FOUND", "Not_found", "not_foun", "not_found_",
		" not_found", "not_found ", "not found", "ok", "success",
		"error", "_", "x",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		assert_int_equal(hsm_code_exit(unknown[i]), HSM_EXIT_NODE);
		assert_false(hsm_code_known(unknown[i]));
	}
	/* No code: success. */
	assert_int_equal(hsm_code_exit(NULL), HSM_EXIT_OK);
	assert_int_equal(hsm_code_exit(""), HSM_EXIT_OK);
	assert_false(hsm_code_known(""));
}

static void
test_fail_fills_status(void **state)
{
	hsm_status st;

	(void)state;
	memset(&st, 'x', sizeof(st));
	assert_int_equal(hsm_fail(&st, "not_found", "no partition '%s' (%d)",
	    "p1", 42), -1);
	assert_string_equal(st.code, "not_found");
	assert_string_equal(st.message, "no partition 'p1' (42)");

	/* A later failure replaces the earlier one entirely. */
	assert_int_equal(hsm_fail(&st, "io", "x"), -1);
	assert_string_equal(st.code, "io");
	assert_string_equal(st.message, "x");

	assert_int_equal(hsm_fail(&st, "internal", "%s", ""), -1);
	assert_string_equal(st.message, "");
	/* A message is not a format for what it quotes. */
	assert_int_equal(hsm_fail(&st, "bad_value", "%s", "100%s %n"), -1);
	assert_string_equal(st.message, "100%s %n");
}

static void
test_fail_null_status(void **state)
{
	(void)state;
	assert_int_equal(hsm_fail(NULL, "io", "nothing to fill %d", 1), -1);
	hsm_status_clear(NULL);
}

static void
test_fail_truncates(void **state)
{
	hsm_status st;
	char big[4 * HSM_MSG_MAX];
	char code[2 * HSM_CODE_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(big) - 1; i++)
		big[i] = (char)('a' + i % 26);
	big[sizeof(big) - 1] = '\0';
	memset(code, 'c', sizeof(code) - 1);
	code[sizeof(code) - 1] = '\0';

	memset(&st, 'x', sizeof(st));
	assert_int_equal(hsm_fail(&st, code, "%s", big), -1);
	assert_int_equal(strlen(st.code), HSM_CODE_MAX - 1);
	assert_memory_equal(st.code, code, HSM_CODE_MAX - 1);
	assert_int_equal(strlen(st.message), HSM_MSG_MAX - 1);
	assert_memory_equal(st.message, big, HSM_MSG_MAX - 1);

	/* Exactly at the limit nothing is lost. */
	big[HSM_MSG_MAX - 1] = '\0';
	assert_int_equal(hsm_fail(&st, "io", "%s", big), -1);
	assert_string_equal(st.message, big);
	big[HSM_MSG_MAX - 2] = '\0';
	code[HSM_CODE_MAX - 1] = '\0';
	assert_int_equal(hsm_fail(&st, code, "%s", big), -1);
	assert_string_equal(st.code, code);
	assert_string_equal(st.message, big);
}

static void
test_fail_one_line(void **state)
{
	hsm_status st;
	char big[2 * HSM_MSG_MAX];

	(void)state;
	assert_int_equal(hsm_fail(&st, "protocol", "bad\nfield '%s'\r\n",
	    "a\nb\rc"), -1);
	assert_string_equal(st.message, "bad field 'a b c'  ");
	assert_null(strchr(st.message, '\n'));
	assert_null(strchr(st.message, '\r'));

	/* Newlines past the cut do not matter; those before it are gone. */
	memset(big, '\n', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(hsm_fail(&st, "io", "%s", big), -1);
	assert_int_equal(strlen(st.message), HSM_MSG_MAX - 1);
	assert_int_equal(strspn(st.message, " "), HSM_MSG_MAX - 1);
}

static void
test_status_clear(void **state)
{
	hsm_status st, zero;

	(void)state;
	memset(&zero, 0, sizeof(zero));
	hsm_fail(&st, "io", "something");
	hsm_status_clear(&st);
	assert_memory_equal(&st, &zero, sizeof(st));
	assert_string_equal(st.code, "");
	assert_int_equal(hsm_code_exit(st.code), HSM_EXIT_OK);
}

static void
test_version(void **state)
{
	(void)state;
	assert_string_equal(hsm_version(), HSMCTL_VERSION);
	assert_string_equal(hsm_version(), "0.1.0");
	assert_int_equal(HSM_PROTOCOL_VERSION, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exit_enum),
		cmocka_unit_test(test_code_exit_table),
		cmocka_unit_test(test_code_exit_spot_checks),
		cmocka_unit_test(test_code_exit_unknown),
		cmocka_unit_test(test_fail_fills_status),
		cmocka_unit_test(test_fail_null_status),
		cmocka_unit_test(test_fail_truncates),
		cmocka_unit_test(test_fail_one_line),
		cmocka_unit_test(test_status_clear),
		cmocka_unit_test(test_version),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
