/*
 * hsmd: the software HSM node.
 *
 *   hsmd init -d DIR --cluster NAME --name NODE [--sandbox] [--authorize PUBKEY]...
 *   hsmd init -d DIR --join HOST:PORT --name NODE --role clone|bc
 *             [--master-fingerprint FP] [--authorize PUBKEY]...
 *   hsmd authorize -d DIR PUBKEY
 *   hsmd revoke -d DIR FINGERPRINT
 *   hsmd -d DIR -l HOST:PORT [-f] [-v]
 *
 * Exit statuses follow hsmctl's (DESIGN §9): 2 usage, 4 not found,
 * 5 conflict (an existing node), 1 anything else.
 */
#include <sys/stat.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libssh/libssh.h>

#include "keys.h"
#include "log.h"
#include "nodedir.h"
#include "server.h"
#include "store.h"

static int argc_saved;

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: hsmd init -d DIR --cluster NAME --name NODE [--sandbox] "
	    "[--authorize PUBKEY]...\n"
	    "                 [--genesis NAME=PUBKEY]... [--genesis-quorum M]\n"
	    "       hsmd init -d DIR --join HOST:PORT --name NODE --role "
	    "clone|bc\n"
	    "                 [--master-fingerprint SHA256:...] "
	    "[--authorize PUBKEY]...\n"
	    "       hsmd authorize -d DIR [--exit-source] PUBKEY\n"
	    "       hsmd revoke -d DIR [--exit-source] FINGERPRINT\n"
	    "       hsmd config -d DIR [idle-timeout|challenge-lifetime|"
	    "replog-retain "
	    "[SECONDS]]\n"
	    "       hsmd -d DIR -l HOST:PORT [-f] [-v]\n"
	    "       hsmd -h | -V\n");
}

static int
fail(const hsm_status *st)
{
	fprintf(stderr, "hsmd: %s\n", st->message);
	return hsm_code_exit(st->code);
}

static int
usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "hsmd: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	usage(stderr);
	return HSM_EXIT_USAGE;
}

/* The master's host key, to show to one who did not give it. */
static int
probe_fingerprint(const char *addr, char *fp, size_t fplen, hsm_status *st)
{
	struct hsm_conn_opts co;
	struct hsm_conn *c = NULL;
	char host[256];
	int port, r;

	if (hsm_parse_hostport(addr, host, sizeof(host), &port, st) != 0)
		return -1;
	memset(&co, 0, sizeof(co));
	co.host = host;
	co.port = port;
	co.probe = true;
	if (hsm_init(st) != 0)
		return -1;
	r = hsm_conn_open(&co, &c, st);
	if (r == 0)
		snprintf(fp, fplen, "%s", hsm_conn_fingerprint(c));
	hsm_conn_close(&c);
	hsm_cleanup();
	return r;
}

static int
init_join(struct init_opts *o)
{
	hsm_status st;
	char fp[64];

	hsm_status_clear(&st);
	if (optind != argc_saved || o->dir == NULL || o->join == NULL ||
	    o->name == NULL || o->join_role == NULL)
		return usage_error("%s: -d, --join, --name and --role are "
		    "required to join a cluster", "init");
	if (o->cluster != NULL || o->ngenesis > 0 || o->sandbox ||
	    o->genesis_quorum != 0)
		return usage_error("%s: a joining node takes the cluster's "
		    "name, officers and mode from its master", "init --join");
	if (o->join_fp == NULL) {
		if (probe_fingerprint(o->join, fp, sizeof(fp), &st) != 0)
			return fail(&st);
		fprintf(stderr, "hsmd: the master at %s has host key %s;\n"
		    "hsmd: check it against 'hsmctl node info' on the master "
		    "and rerun with --master-fingerprint %s\n", o->join, fp, fp);
		return HSM_EXIT_HOSTKEY;
	}
	if (nodedir_init(o, &st) != 0)
		return fail(&st);
	printf("initialised node %s in %s; %s.\n"
	    "An SO quorum admits it on the master with: hsmctl cluster admit "
	    "%s\nStart it with: hsmd -d %s -l HOST:PORT (it completes the "
	    "join once admitted)\n", o->name, o->dir, o->result, o->name,
	    o->dir);
	return 0;
}

static int
cmd_init(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "cluster", required_argument, NULL, 'c' },
		{ "name", required_argument, NULL, 'n' },
		{ "sandbox", no_argument, NULL, 's' },
		{ "authorize", required_argument, NULL, 'a' },
		{ "genesis", required_argument, NULL, 'G' },
		{ "genesis-quorum", required_argument, NULL, 'Q' },
		{ "join", required_argument, NULL, 'J' },
		{ "role", required_argument, NULL, 'R' },
		{ "master-fingerprint", required_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};
	struct init_opts o;
	const char **auth = NULL, **gnames = NULL, **gkeys = NULL;
	hsm_status st;
	int ch, r;

	memset(&o, 0, sizeof(o));
	hsm_status_clear(&st);
	auth = calloc((size_t)argc, sizeof(*auth));
	gnames = calloc((size_t)argc, sizeof(*gnames));
	gkeys = calloc((size_t)argc, sizeof(*gkeys));
	if (auth == NULL || gnames == NULL || gkeys == NULL) {
		free(auth);
		free(gnames);
		free(gkeys);
		return HSM_EXIT_NODE;
	}
	o.authorize = auth;
	o.genesis_names = gnames;
	o.genesis_keys = gkeys;
	optind = 1;
	argc_saved = argc;
	while ((ch = getopt_long(argc, argv, "d:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			o.dir = optarg;
			break;
		case 'c':
			o.cluster = optarg;
			break;
		case 'n':
			o.name = optarg;
			break;
		case 's':
			o.sandbox = true;
			break;
		case 'a':
			auth[o.nauthorize++] = optarg;
			break;
		case 'G': {
			char *eq = strchr(optarg, '=');

			if (eq == NULL || eq == optarg || eq[1] == '\0') {
				free(auth);
				free(gnames);
				free(gkeys);
				return usage_error("--genesis takes NAME=PUBKEY_"
				    "FILE, not '%s'", optarg);
			}
			*eq = '\0';
			gnames[o.ngenesis] = optarg;
			gkeys[o.ngenesis++] = eq + 1;
			break;
		}
		case 'Q': {
			char *end;
			long m = strtol(optarg, &end, 10);

			if (*optarg == '\0' || *end != '\0' || m < 1 ||
			    m > 64) {
				free(auth);
				free(gnames);
				free(gkeys);
				return usage_error("--genesis-quorum takes a "
				    "number, not '%s'", optarg);
			}
			o.genesis_quorum = m;
			break;
		}
		case 'J':
			o.join = optarg;
			break;
		case 'R':
			o.join_role = optarg;
			break;
		case 'F':
			o.join_fp = optarg;
			break;
		default:
			free(auth);
			free(gnames);
			free(gkeys);
			usage(stderr);
			return HSM_EXIT_USAGE;
		}
	}
	if (o.join != NULL || o.join_role != NULL || o.join_fp != NULL) {
		r = init_join(&o);
		free(auth);
		free(gnames);
		free(gkeys);
		return r;
	}
	if (optind != argc || o.dir == NULL || o.cluster == NULL ||
	    o.name == NULL) {
		free(auth);
		free(gnames);
		free(gkeys);
		return usage_error("%s: -d, --cluster and --name are required",
		    "init");
	}
	if (o.genesis_quorum != 0 && o.ngenesis == 0) {
		free(auth);
		free(gnames);
		free(gkeys);
		return usage_error("%s needs --genesis officers",
		    "--genesis-quorum");
	}
	/* Default: four-eyes for the owner too, when there are two. */
	if (o.genesis_quorum == 0)
		o.genesis_quorum = o.ngenesis >= 2 ? 2 : 1;
	r = nodedir_init(&o, &st);
	free(auth);
	free(gnames);
	free(gkeys);
	if (r != 0)
		return fail(&st);
	printf("initialised node %s of cluster %s in %s\n", o.name, o.cluster,
	    o.dir);
	return 0;
}

static const struct option dir_opts[] = {
	{ "dir", required_argument, NULL, 'd' },
	{ NULL, 0, NULL, 0 },
};

static const struct option keys_opts[] = {
	{ "dir", required_argument, NULL, 'd' },
	{ "exit-source", no_argument, NULL, 'E' },
	{ NULL, 0, NULL, 0 },
};

/* authorize and revoke: "-d DIR [--exit-source] ARG". */
static int
cmd_keys(int argc, char **argv, bool add)
{
	const char *dir = NULL;
	char fp[64];
	hsm_status st;
	bool exitsrc = false;
	int ch;

	hsm_status_clear(&st);
	optind = 1;
	while ((ch = getopt_long(argc, argv, "d:", keys_opts, NULL)) != -1) {
		if (ch == 'E') {
			exitsrc = true;
			continue;
		}
		if (ch != 'd') {
			usage(stderr);
			return HSM_EXIT_USAGE;
		}
		dir = optarg;
	}
	if (dir == NULL || optind != argc - 1)
		return usage_error("%s: -d DIR and one argument are required",
		    add ? "authorize" : "revoke");
	if (add) {
		if (authkeys_add(dir, argv[optind], exitsrc, fp, sizeof(fp),
		    &st) != 0)
			return fail(&st);
		printf("authorised %s %s\n", exitsrc ? "exit source" :
		    "terminal key", fp);
	} else {
		if (authkeys_revoke(dir, argv[optind], exitsrc, &st) != 0)
			return fail(&st);
		printf("revoked %s %s\n", exitsrc ? "exit source" :
		    "terminal key", argv[optind]);
	}
	return 0;
}

static int
cmd_serve(int argc, char **argv)
{
	const char *dir = NULL, *listen_on = NULL;
	bool fg = false, verbose = false;
	hsm_status st;
	int ch, r;

	hsm_status_clear(&st);
	optind = 1;
	while ((ch = getopt(argc, argv, "d:l:fvhV")) != -1) {
		switch (ch) {
		case 'd':
			dir = optarg;
			break;
		case 'l':
			listen_on = optarg;
			break;
		case 'f':
			fg = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("hsmd %s\n", HSMCTL_VERSION);
			return 0;
		default:
			usage(stderr);
			return HSM_EXIT_USAGE;
		}
	}
	if (optind != argc || dir == NULL || listen_on == NULL)
		return usage_error("%s-d DIR and -l HOST:PORT are required", "");
	log_init(verbose);
	if (ssh_init() != SSH_OK) {
		fprintf(stderr, "hsmd: cannot initialise libssh\n");
		return HSM_EXIT_NODE;
	}
	r = server_run(dir, listen_on, fg, &st);
	ssh_finalize();
	return r != 0 ? fail(&st) : 0;
}

/* Node settings, kept in the store (read by a running node at once). */
static const struct {
	const char *name;	/* as typed */
	const char *key;	/* meta key */
	int64_t dflt, min, max;
	const char *unit;
} settings[] = {
	{ "idle-timeout", "idle_timeout", 900, 30, 86400, "seconds" },
	{ "challenge-lifetime", "challenge_lifetime", 600, 30, 86400,
	    "seconds" },
	{ "replog-retain", "replog_retain", 50000, 10, 100000000,
	    "log entries" },
};

static int
cmd_config(int argc, char **argv)
{
	const char *dir = NULL;
	sqlite3 *db = NULL;
	hsm_status st;
	int ch, r = 0;

	hsm_status_clear(&st);
	optind = 1;
	while ((ch = getopt_long(argc, argv, "d:", dir_opts, NULL)) != -1) {
		if (ch != 'd') {
			usage(stderr);
			return HSM_EXIT_USAGE;
		}
		dir = optarg;
	}
	if (dir == NULL || argc - optind > 2)
		return usage_error("%s: -d DIR [SETTING [VALUE]]", "config");
	if (store_open(dir, false, &db, &st) != 0)
		return fail(&st);
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
		char *end, num[32];
		long long v;

		if (optind < argc && strcmp(argv[optind], settings[i].name) != 0)
			continue;
		if (optind + 1 < argc) {
			v = strtoll(argv[optind + 1], &end, 10);
			if (*argv[optind + 1] == '\0' || *end != '\0' ||
			    v < settings[i].min || v > settings[i].max) {
				store_close(&db);
				fprintf(stderr, "hsmd: %s takes %lld..%lld "
				    "%s\n", settings[i].name,
				    (long long)settings[i].min,
				    (long long)settings[i].max, settings[i].unit);
				return HSM_EXIT_USAGE;
			}
			snprintf(num, sizeof(num), "%lld", v);
			if (store_meta_set(db, settings[i].key, num, &st) != 0) {
				store_close(&db);
				return fail(&st);
			}
		}
		printf("%s %lld\n", settings[i].name, (long long)
		    store_meta_int(db, settings[i].key, settings[i].dflt));
		r = 1;
	}
	store_close(&db);
	if (r == 0)
		return usage_error("unknown setting '%s' (idle-timeout, "
		    "challenge-lifetime, replog-retain)", argv[optind]);
	return 0;
}

int
main(int argc, char **argv)
{
	/* Keys and the store are created private; nothing else needs more. */
	umask(077);
	if (argc >= 2 && strcmp(argv[1], "init") == 0)
		return cmd_init(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "authorize") == 0)
		return cmd_keys(argc - 1, argv + 1, true);
	if (argc >= 2 && strcmp(argv[1], "revoke") == 0)
		return cmd_keys(argc - 1, argv + 1, false);
	if (argc >= 2 && strcmp(argv[1], "config") == 0)
		return cmd_config(argc - 1, argv + 1);
	if (argc >= 2 && argv[1][0] != '-')
		return usage_error("unknown command '%s'", argv[1]);
	return cmd_serve(argc, argv);
}
