/*
 * hsmctl: administer a cluster of HSM nodes.
 *
 *   hsmctl [global options] COMMAND [ARGS]   single command
 *   hsmctl [global options] -f FILE|-        batch
 *   hsmctl [global options] [shell]          interactive shell
 */
#include <fcntl.h>
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

static const struct cmd hidden_list = {
	.words = "__commands", .role = "-",
	.help = "list every command's usage", .fn = cmd_list_commands,
};

/* Output that could not be written is a failure, whatever ran. */
static int
flush_status(int r)
{
	if ((fflush(stdout) != 0 || ferror(stdout)) && r == 0) {
		fprintf(stderr, "hsmctl: cannot write the output\n");
		r = HSM_EXIT_NODE;
	}
	return r;
}

int
main(int argc, char **argv)
{
	struct ctx ctx;
	struct inv inv;
	hsm_status st;
	const char *batch = NULL;
	bool help = false;
	int ch, r;

	memset(&ctx, 0, sizeof(ctx));
	ctx.passfd = -1;
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
		case 'f':
			batch = optarg;
			break;
		case O_AS:
			ctx.as = optarg;
			break;
		case O_OFFICER:
		case O_APPROVAL:
			if ((ch == O_OFFICER ? ctx.nofficers :
			    ctx.napprovals) >= INV_MAX) {
				hsm_fail(&st, "usage", "too many --officer or "
				    "--approval options");
				return out_error(&ctx, &st);
			}
			if (ch == O_OFFICER)
				ctx.officers[ctx.nofficers++] = optarg;
			else
				ctx.approvals[ctx.napprovals++] = optarg;
			break;
		case O_SECRET:
			/* Read when a login user needs it, never before. */
			if (*optarg == '\0') {
				hsm_fail(&st, "bad_value", "--secret-file needs "
				    "a file name");
				return out_error(&ctx, &st);
			}
			ctx.secret_file = optarg;
			break;
		case O_PASSFD: {
			char *end;
			long fd = strtol(optarg, &end, 10);

			/* 0 is stdin, which a batch may be reading. */
			if (*optarg == '\0' || *end != '\0' || fd < 0 ||
			    fd > 1024 || fcntl((int)fd, F_GETFD) < 0) {
				hsm_fail(&st, "bad_value", "--passphrase-fd "
				    "takes an open descriptor, not '%s'",
				    optarg);
				return out_error(&ctx, &st);
			}
			ctx.passfd = (int)fd;
			break;
		}
		case 'k':
			ctx.keep_going = true;
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
			break;
		}
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
	if (batch != NULL && strcmp(batch, "-") == 0 && ctx.passfd == 0) {
		hsm_fail(&st, "usage", "-f - and --passphrase-fd 0 both want "
		    "standard input; give the passphrases on another "
		    "descriptor (e.g. --passphrase-fd 3 3<FILE)");
		return out_error(&ctx, &st);
	}
	if (batch != NULL) {
		if (argc > 0) {
			hsm_fail(&st, "usage", "give a command or -f FILE, not "
			    "both");
			return out_error(&ctx, &st);
		}
		r = batch_run(&ctx, batch);
		ctx_fini(&ctx);
		return flush_status(r);
	}
	if (argc == 0 && !isatty(STDIN_FILENO)) {
		hsm_fail(&st, "usage", "no command given and standard input is "
		    "not a terminal (use -f - for a batch; see hsmctl help)");
		return out_error(&ctx, &st);
	}
	if (argc == 0 || (argc == 1 && strcmp(argv[0], "shell") == 0)) {
		/* Piped lines belong in a batch, which reports failures. */
		if (!isatty(STDIN_FILENO)) {
			hsm_fail(&st, "usage", "the shell needs a terminal; "
			    "for commands from standard input use -f -");
			return out_error(&ctx, &st);
		}
		r = shell_run(&ctx);
		ctx_fini(&ctx);
		return flush_status(r);
	}
	if (strcmp(argv[0], "__complete") == 0)
		return complete_main(&ctx, argc - 1, argv + 1);
	/* The whole line is checked against the table before anything is sent. */
	if (strcmp(argv[0], "__commands") == 0) {
		memset(&inv, 0, sizeof(inv));
		inv.cmd = &hidden_list;
	} else if (cmd_parse(argc, argv, &inv, &st) != 0)
		return out_error(&ctx, &st);
	/* Routing (conn.c) knows the command before --as logs in. */
	ctx.single = true;
	ctx.running = inv.cmd;
	if (inv.cmd->route == ROUTE_ARG0 && inv.nargs > 0)
		ctx.route_node = inv.args[0];
	/* --as: log in on this connection, then run the command. */
	if (ctx.as != NULL && !inv.help && ctx_login_as(&ctx, ctx.as,
	    &st) != 0)
		r = out_error(&ctx, &st);
	else
		r = cmd_run(&ctx, &inv);
	ctx_fini(&ctx);
	return flush_status(r);
}
