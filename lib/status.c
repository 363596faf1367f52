/* Error codes and their exit statuses (DESIGN §9). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "hsmctl.h"

/*
 * Every stable error code and the exit status it maps to.  Codes are
 * part of the interface (they appear in -o json output), so they are
 * only ever added, never renamed.
 */
static const struct {
	const char *code;
	int exit;
} codes[] = {
	/* 1: failed on the node for another reason */
	{ "unknown_op", HSM_EXIT_NODE },
	{ "bad_frame", HSM_EXIT_NODE },
	{ "bad_request", HSM_EXIT_NODE },
	{ "protocol", HSM_EXIT_NODE },
	{ "internal", HSM_EXIT_NODE },
	{ "io", HSM_EXIT_NODE },
	{ "no_memory", HSM_EXIT_NODE },
	{ "captured", HSM_EXIT_NODE },	/* internal: approval request --op */
	/* 2: usage, nothing was sent */
	{ "usage", HSM_EXIT_USAGE },
	{ "unknown_command", HSM_EXIT_USAGE },
	{ "bad_option", HSM_EXIT_USAGE },
	{ "bad_value", HSM_EXIT_USAGE },
	{ "not_implemented", HSM_EXIT_USAGE },
	{ "config_syntax", HSM_EXIT_USAGE },
	{ "config_io", HSM_EXIT_USAGE },
	{ "no_terminal_key", HSM_EXIT_USAGE },
	{ "no_node", HSM_EXIT_USAGE },
	/* 3: not authorised */
	{ "not_authorized", HSM_EXIT_AUTH },
	{ "auth_failed", HSM_EXIT_AUTH },
	{ "bad_passphrase", HSM_EXIT_AUTH },
	{ "quorum_not_met", HSM_EXIT_AUTH },
	{ "login_refused", HSM_EXIT_AUTH },
	/* 4: not found */
	{ "not_found", HSM_EXIT_NOTFOUND },
	/* 5: refused by state */
	{ "read_only", HSM_EXIT_STATE },
	{ "quota", HSM_EXIT_STATE },
	{ "master_unavailable", HSM_EXIT_STATE },
	{ "conflict", HSM_EXIT_STATE },
	{ "not_master", HSM_EXIT_STATE },	/* a change sent to a clone */
	{ "node_role", HSM_EXIT_STATE },	/* a bc node refuses the op */
	/* 6: no connection */
	{ "connect_failed", HSM_EXIT_CONN },
	{ "timeout", HSM_EXIT_CONN },
	{ "connection_lost", HSM_EXIT_CONN },
	/* 7: host key */
	{ "host_key_unknown", HSM_EXIT_HOSTKEY },
	{ "host_key_changed", HSM_EXIT_HOSTKEY },
	/* 8: integrity */
	{ "integrity", HSM_EXIT_INTEGRITY },
	{ "bad_signature", HSM_EXIT_INTEGRITY },
};

int
hsm_fail(hsm_status *st, const char *code, const char *fmt, ...)
{
	va_list ap;

	if (st == NULL)
		return -1;
	snprintf(st->code, sizeof(st->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(st->message, sizeof(st->message), fmt, ap);
	va_end(ap);
	/* One line, always: a message may quote untrusted input. */
	for (char *p = st->message; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return -1;
}

void
hsm_status_clear(hsm_status *st)
{
	if (st != NULL)
		memset(st, 0, sizeof(*st));
}

bool
hsm_code_known(const char *code)
{
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strcmp(codes[i].code, code) == 0)
			return true;
	return false;
}

int
hsm_code_exit(const char *code)
{
	if (code == NULL || *code == '\0')
		return HSM_EXIT_OK;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strcmp(codes[i].code, code) == 0)
			return codes[i].exit;
	return HSM_EXIT_NODE;
}

const char *
hsm_version(void)
{
	return HSMCTL_VERSION;
}
