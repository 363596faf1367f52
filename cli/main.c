/*
 * hsmctl: administer a cluster of HSM nodes.
 *
 *   hsmctl [global options] COMMAND [ARGS]   single command
 *   hsmctl [global options] -f FILE|-        batch
 *   hsmctl [global options] [shell]          interactive shell
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"

enum {
	O_AS = 256, O_OFFICER, O_APPROVAL, O_PASSFD, O_SECRET, O_ACCEPT,
};

static const struct option longopts[] = {
	{ "cluster", required_argument, NULL, 'C' },
	{ "node", required_argument, NULL, 'n' },
	{ "config", required_argument, NULL, 'F' },
	{ "output", required_argument, NULL, 'o' },
	{ "file", required_argument, NULL, 'f' },
	{ "keep-going", no_argument, NULL, 'k' },
	{ "yes", no_argument, NULL, 'y' },
	{ "as", required_argument, NULL, O_AS },
	{ "officer", required_argument, NULL, O_OFFICER },
	{ "approval", required_argument, NULL, O_APPROVAL },
	{ "passphrase-fd", required_argument, NULL, O_PASSFD },
	{ "secret-file", required_argument, NULL, O_SECRET },
	{ "accept-new-host-key", no_argument, NULL, O_ACCEPT },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* Options whose features arrive in later versions: refused, never ignored. */
static const char *
later_feature(int ch)
{
	switch (ch) {
	case 'f':
		return "-f/--file (batch mode)";
	case 'k':
		return "-k/--keep-going (batch mode)";
	case O_AS:
		return "--as (officer login)";
	case O_OFFICER:
		return "--officer (officer login)";
	case O_APPROVAL:
		return "--approval (remote approvals)";
	case O_PASSFD:
		return "--passphrase-fd (officer login)";
	case O_SECRET:
		return "--secret-file (technical user login)";
	default:
		return NULL;
	}
}

static const struct cmd hidden_list = {
	.words = "__commands", .role = "-",
	.help = "list every command's usage", .fn = cmd_list_commands,
};

int
main(int argc, char **argv)
{
	struct ctx ctx;
	struct inv inv;
	hsm_status st;
	const char *later = NULL;
	bool help = false;
	int ch, r;

	memset(&ctx, 0, sizeof(ctx));
	hsm_status_clear(&st);
	opterr = 0;
	/* '+': stop at the command; its own options are the table's. */
	while ((ch = getopt_long(argc, argv, "+:C:n:F:o:f:kyqvhV", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'C':
			ctx.cluster = optarg;
			break;
		case 'n':
			ctx.node = optarg;
			break;
		case 'F':
			ctx.config_path = optarg;
			break;
		case 'o':
			if (strcmp(optarg, "json") == 0)
				ctx.output = OUT_JSON;
			else if (strcmp(optarg, "text") == 0)
				ctx.output = OUT_TEXT;
			else {
				hsm_fail(&st, "bad_value", "-o takes text or "
				    "json, not '%s'", optarg);
				return out_error(&ctx, &st);
			}
			break;
		case 'y':
			ctx.yes = true;
			break;
		case O_ACCEPT:
			ctx.accept_new_host_key = true;
			break;
		case 'q':
			ctx.quiet = true;
			break;
		case 'v':
			ctx.verbose++;
			break;
		case 'h':
			help = true;
			break;
		case 'V':
			printf("hsmctl %s\n", HSMCTL_VERSION);
			return 0;
		case ':':
			hsm_fail(&st, "bad_option", "option %s needs a value",
			    argv[optind - 1]);
			return out_error(&ctx, &st);
		case '?':
			if (optopt != 0)
				hsm_fail(&st, "bad_option", "unknown option "
				    "'-%c' (see hsmctl help)", optopt);
			else
				hsm_fail(&st, "bad_option", "unknown option "
				    "'%s' (see hsmctl help)", argv[optind - 1]);
			return out_error(&ctx, &st);
		default:
			if (later == NULL)
				later = later_feature(ch);
			break;
		}
	}
	if (later != NULL) {
		hsm_fail(&st, "not_implemented", "%s is not available in "
		    "hsmctl %s", later, HSMCTL_VERSION);
		return out_error(&ctx, &st);
	}
	ctx.color = ctx.output == OUT_TEXT && isatty(STDOUT_FILENO) &&
	    getenv("NO_COLOR") == NULL;
	argc -= optind;
	argv += optind;
	if (help) {
		memset(&inv, 0, sizeof(inv));
		inv.cmd = cmd_find("help");
		return cmd_run(&ctx, &inv);
	}
	if (argc == 0 || strcmp(argv[0], "shell") == 0) {
		hsm_fail(&st, "not_implemented", "the interactive shell is not "
		    "available in hsmctl %s; give a command (see hsmctl help)",
		    HSMCTL_VERSION);
		return out_error(&ctx, &st);
	}
	/* The whole line is checked against the table before anything is sent. */
	if (strcmp(argv[0], "__commands") == 0) {
		memset(&inv, 0, sizeof(inv));
		inv.cmd = &hidden_list;
	} else if (cmd_parse(argc, argv, &inv, &st) != 0)
		return out_error(&ctx, &st);
	r = cmd_run(&ctx, &inv);
	ctx_fini(&ctx);
	if (fflush(stdout) != 0 && r == 0)
		r = HSM_EXIT_NODE;
	return r;
}
