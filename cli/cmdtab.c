/* The command table, its parser and the help generated from it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

static const struct cmd_arg help_args[] = {
	{ "COMMAND", K_COMMAND, ARG_OPTIONAL | ARG_REPEAT },
	{ NULL, 0, 0 },
};

static const struct cmd_arg login_args[] = {
	{ "ROLE", K_LOGINROLE, 0 },
	{ "PARTITION", K_PARTITION, ARG_OPTIONAL },
	{ NULL, 0, 0 },
};
static const struct cmd_arg token_args[] = {
	{ "TOKEN", K_FILE, 0 },
	{ NULL, 0, 0 },
};
static const struct cmd_arg file_args[] = {
	{ "FILE", K_FILE, 0 },
	{ NULL, 0, 0 },
};
static const struct cmd_arg officer_add_args[] = {
	{ "ROLE", K_ROLE, 0 },
	{ "NAME", K_WORD, 0 },
	{ "PUBKEY", K_FILE, 0 },
	{ NULL, 0, 0 },
};
static const struct cmd_arg role_name_args[] = {
	{ "ROLE", K_ROLE, 0 },
	{ "NAME", K_OFFICER, 0 },
	{ NULL, 0, 0 },
};
static const struct cmd_arg quorum_args[] = {
	{ "ROLE", K_ROLE, 0 },
	{ "M", K_WORD, 0 },
	{ NULL, 0, 0 },
};

static const struct cmd_opt attest_opts[] = {
	{ "out", "FILE", K_FILE, 0,
	    "also write the whole attestation as JSON to FILE" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt request_opts[] = {
	{ "out", "TOKEN", K_FILE, OPT_REQUIRED, "file to write the token to" },
	{ "op", "COMMAND", K_WORD, 0,
	    "approve this one command line instead of a login" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_arg request_args[] = {
	{ "ROLE", K_ROLE, ARG_OPTIONAL },
	{ "PARTITION", K_PARTITION, ARG_OPTIONAL },
	{ NULL, 0, 0 },
};
static const struct cmd_arg id_args[] = {
	{ "ID", K_WORD, 0 },
	{ NULL, 0, 0 },
};
static const struct cmd_opt sign_opts[] = {
	{ "officer", "FILE", K_FILE, OPT_REQUIRED, "your officer key" },
	{ "out", "APPROVAL", K_FILE, OPT_REQUIRED,
	    "file to write the approval to" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt audit_opts[] = {
	{ "partition", "P", K_PARTITION, 0, "only entries of partition P" },
	{ "since", "TIME", K_WORD, 0,
	    "from TIME (epoch seconds or YYYY-MM-DD[THH:MM:SS], UTC)" },
	{ "limit", "N", K_WORD, 0, "the newest N entries (default 100)" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt login_opts[] = {
	{ "officer", "FILE", K_FILE, OPT_REPEAT,
	    "officer key to sign with (one per officer)" },
	{ "approval", "FILE", K_FILE, OPT_REPEAT,
	    "signed remote approval (approval sign)" },
	{ "secret-file", "FILE", K_FILE, 0,
	    "login user: the partition's API secret (else the global one)" },
	{ "api", "API", K_API, 0,
	    "login user: jce, cng, pkcs11 (the default) or rest" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt keygen_opts[] = {
	{ "type", "ed25519|p384", K_KEYTYPE, 0, "key type (default ed25519)" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt partition_opt[] = {
	{ "partition", "P", K_PARTITION, 0, "the partition of a pso officer" },
	{ NULL, NULL, 0, 0, NULL },
};

static const struct cmd_arg part_args[] = {
	{ "P", K_PARTITION, 0 },
	{ NULL, 0, 0 },
};
static const struct cmd_arg part_create_args[] = {
	{ "P", K_PARTITION, 0 },
	{ "PARAM=VALUE", K_PARAM, ARG_OPTIONAL | ARG_REPEAT },
	{ NULL, 0, 0 },
};
static const struct cmd_arg part_set_args[] = {
	{ "P", K_PARTITION, 0 },
	{ "PARAM=VALUE", K_PARAM, ARG_REPEAT },
	{ NULL, 0, 0 },
};
static const struct cmd_arg part_get_args[] = {
	{ "P", K_PARTITION, 0 },
	{ "PARAM", K_PARAM, 0 },
	{ NULL, 0, 0 },
};
static const struct cmd_opt part_create_opts[] = {
	{ "profile", "NAME", K_PROFILE, 0,
	    "start from this profile (default eco; see partition params)" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt part_delete_opts[] = {
	{ "force", NULL, K_WORD, 0, "delete it even if it holds keys" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_arg key_id_args[] = {
	{ "P", K_PARTITION, 0 },
	{ "ID", K_WORD, 0 },
	{ NULL, 0, 0 },
};
static const struct cmd_opt key_generate_opts[] = {
	{ "type", "TYPE", K_OBJTYPE, OPT_REQUIRED,
	    "rsa-2048|rsa-3072|rsa-4096|ec-p256|ec-p384|ed25519|aes-256" },
	{ "label", "L", K_WORD, 0, "a label of up to 127 bytes" },
	{ "extractable", NULL, K_WORD, 0,
	    "it may leave the partition (key-export, key-extraction)" },
	{ "no-sensitive", NULL, K_WORD, 0,
	    "not sensitive: plain extraction allowed if extractable" },
	{ "session", NULL, K_WORD, 0, "gone when this session ends" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt key_list_opts[] = {
	{ "invalidated", NULL, K_WORD, 0,
	    "the invalidation bin instead (SO, PSO)" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt key_sign_opts[] = {
	{ "in", "FILE", K_FILE, OPT_REQUIRED, "the data, up to 8 MiB" },
	{ "out", "FILE", K_FILE, OPT_REQUIRED,
	    "file to write the raw signature to (replaced)" },
	{ "alg", "ALG", K_SIGALG, 0, "rsa-pkcs1-sha256 (RSA default), "
	    "rsa-pkcs1-sha384, rsa-pss-sha256, ecdsa-sha256 (P-256 default), "
	    "ecdsa-sha384 (P-384 default), ed25519" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt part_secret_opts[] = {
	{ "rotate", NULL, K_WORD, OPT_REQUIRED,
	    "make a new secret; the old one stops working at once" },
	{ "out", "FILE", K_FILE, 0,
	    "write it to FILE (new, mode 0600) instead of showing it" },
	{ NULL, NULL, 0, 0, NULL },
};

static const struct cmd_arg node_args[] = {
	{ "NODE", K_NODE, 0 },
	{ NULL, 0, 0 },
};
static const struct cmd_opt admit_opts[] = {
	{ "fingerprint", "SHA256:...", K_WORD, 0,
	    "admit only if the node's host key is this one" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt status_opts[] = {
	{ "max-lag", "SEQ", K_WORD, 0,
	    "a replica further behind than this is lagging (default 100)" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt info_opts[] = {
	{ "digest", NULL, K_WORD, 0,
	    "also a SHA-256 digest of the node's replicated state" },
	{ NULL, NULL, 0, 0, NULL },
};

static const struct cmd_arg backup_id_args[] = {
	{ "ID", K_BACKUP, 0 },
	{ NULL, 0, 0 },
};
static const struct cmd_arg backup_id_opt_args[] = {
	{ "ID", K_BACKUP, ARG_OPTIONAL },
	{ NULL, 0, 0 },
};
static const struct cmd_opt backup_part_opts[] = {
	{ "partition", "P", K_PARTITION, OPT_REPEAT,
	    "only this partition (repeatable); default: the whole node" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt backup_verify_opts[] = {
	{ "file", "FILE", K_FILE, 0,
	    "check a backup file here (structure and the cluster's signature)" },
	{ "cluster-key", "HEX", K_WORD, 0,
	    "the cluster's public key (node info), to check --file offline" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt backup_download_opts[] = {
	{ "out", "FILE", K_FILE, OPT_REQUIRED,
	    "write it here (a new file; FILE.part until complete)" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt backup_prune_opts[] = {
	{ "keep-days", "N", K_WORD, 0, "keep the last N days (default 10)" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt backup_schedule_opts[] = {
	{ "daily", "HH:MM", K_WORD, 0, "take a backup every day at HH:MM UTC" },
	{ "off", NULL, K_WORD, 0, "take no scheduled backups" },
	{ NULL, NULL, 0, 0, NULL },
};

static const struct cmd_opt exit_to_opts[] = {
	{ "to", "HOST:PORT", K_WORD, OPT_REQUIRED,
	    "the target node, of another cluster (its host key is checked)" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt exit_export_opts[] = {
	{ "wrap-key", "PUB", K_FILE, OPT_REQUIRED,
	    "your PEM public key, RSA or EC P-256/P-384, to wrap the keys to" },
	{ "out", "FILE", K_FILE, OPT_REQUIRED,
	    "write the export here (a new file, mode 0600)" },
	{ "plain", NULL, K_WORD, 0,
	    "keys in the clear (extractable, not sensitive, key-extraction)" },
	{ "delete", NULL, K_WORD, 0,
	    "then delete the exported keys, once the file is checked" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt exit_delete_opts[] = {
	{ "out", "FILE", K_FILE, 0,
	    "write the certificate here (new, 0600), not to stdout" },
	{ NULL, NULL, 0, 0, NULL },
};
static const struct cmd_opt exit_verify_opts[] = {
	{ "cluster-key", "HEX", K_WORD, 0,
	    "the cluster key it must be signed by (node info)" },
	{ NULL, NULL, 0, 0, NULL },
};

/* Sorted by words; help lists them in this order. */
const struct cmd commands[] = {
	{ .words = "approval cancel", .args = id_args, .role = "-",
	    .connects = true, .route = ROUTE_MASTER,
	    .help = "withdraw a pending approval (its requester or its role)",
	    .fn = cmd_approval_cancel },
	{ .words = "approval list", .role = "-", .connects = true,
	    .route = ROUTE_MASTER,
	    .help = "list the pending approval requests on the node",
	    .fn = cmd_approval_list },
	{ .words = "approval request", .args = request_args,
	    .opts = request_opts, .role = "-", .connects = true,
	    .route = ROUTE_MASTER, .help = "get a challenge for officers to sign remotely: a login, "
	    "or one --op command", .fn = cmd_approval_request },
	{ .words = "approval sign", .args = token_args, .opts = sign_opts,
	    .role = "-",
	    .help = "sign a challenge token with your officer key (offline)",
	    .fn = cmd_approval_sign },
	{ .words = "audit log", .opts = audit_opts, .role = "any",
	    .connects = true,
	    .help = "show the audit log (a PSO sees its partition's entries)",
	    .fn = cmd_audit_log },
	{ .words = "audit verify", .role = "any", .connects = true,
	    .help = "check the audit log's hash chain",
	    .fn = cmd_audit_verify },
	{ .words = "backup create", .opts = backup_part_opts,
	    .role = "genesis", .connects = true, .route = ROUTE_MASTER,
	    .help = "back up the node, or some partitions, to a file on the "
	    "node", .fn = cmd_backup_create },
	{ .words = "backup download", .args = backup_id_args,
	    .opts = backup_download_opts, .role = "genesis", .connects = true,
	    .route = ROUTE_MASTER, .help = "copy a backup from the node to a "
	    "file here", .fn = cmd_backup_download },
	{ .words = "backup list", .role = "genesis", .connects = true,
	    .route = ROUTE_MASTER, .help = "list the backups kept on the node",
	    .fn = cmd_backup_list },
	{ .words = "backup prune", .opts = backup_prune_opts,
	    .role = "genesis", .connects = true, .route = ROUTE_MASTER,
	    .help = "delete the backups older than the retention (10 days)",
	    .fn = cmd_backup_prune },
	{ .words = "backup restore", .args = backup_id_args,
	    .opts = backup_part_opts, .role = "genesis", .writes = true,
	    .connects = true, .help = "verify a backup whole, then put the "
	    "node (or partitions) back to it", .fn = cmd_backup_restore },
	{ .words = "backup schedule", .opts = backup_schedule_opts,
	    .role = "genesis", .connects = true, .route = ROUTE_MASTER,
	    .help = "take backups daily on the node, or stop",
	    .fn = cmd_backup_schedule },
	{ .words = "backup show", .args = backup_id_args, .role = "genesis",
	    .connects = true, .route = ROUTE_MASTER,
	    .help = "show a backup's header, size and verification",
	    .fn = cmd_backup_show },
	{ .words = "backup upload", .args = file_args, .role = "genesis",
	    .connects = true, .route = ROUTE_MASTER,
	    .help = "copy a backup file to the node (verified there)",
	    .fn = cmd_backup_upload },
	{ .words = "backup verify", .args = backup_id_opt_args,
	    .opts = backup_verify_opts, .role = "genesis", .connects = true,
	    .route = ROUTE_MASTER, .help = "check every chunk and the "
	    "signature of a backup (ID on the node, or --file)",
	    .fn = cmd_backup_verify },
	{ .words = "cluster admit", .args = node_args, .opts = admit_opts,
	    .role = "so", .writes = true, .connects = true,
	    .help = "let a node that asked to join (hsmd init --join) into "
	    "the cluster", .fn = cmd_cluster_admit },
	{ .words = "cluster promote", .args = node_args, .role = "so",
	    .connects = true, .route = ROUTE_ARG0,
	    .help = "make a clone the master under a new epoch (needs a "
	    "majority of the nodes)", .fn = cmd_cluster_promote },
	{ .words = "cluster status", .opts = status_opts, .role = "-",
	    .connects = true, .route = ROUTE_SELF,
	    .help = "sum up the cluster: healthy or degraded, master, lag",
	    .fn = cmd_cluster_status },
	{ .words = "exit delete", .args = part_args, .opts = exit_delete_opts,
	    .role = "so", .writes = true, .connects = true,
	    .help = "delete a partition's keys and records, for a signed "
	    "deletion certificate", .fn = cmd_exit_delete },
	{ .words = "exit export", .args = part_args, .opts = exit_export_opts,
	    .role = "pso", .writes = true, .connects = true,
	    .help = "export a partition's keys, wrapped under your key, to a "
	    "file", .fn = cmd_exit_export },
	{ .words = "exit migrate", .args = part_args, .opts = exit_to_opts,
	    .role = "pso", .writes = true, .connects = true,
	    .help = "move a partition to your own node, without the device SO",
	    .fn = cmd_exit_migrate },
	{ .words = "exit resume", .args = part_args, .role = "so|pso",
	    .writes = true, .connects = true,
	    .help = "continue a partition's transfer or migration from its step",
	    .fn = cmd_exit_resume },
	{ .words = "exit status", .args = part_args, .role = "so|pso",
	    .connects = true, .route = ROUTE_MASTER,
	    .help = "show where a partition's transfer or migration is",
	    .fn = cmd_exit_status },
	{ .words = "exit transfer", .args = part_args, .opts = exit_to_opts,
	    .role = "so", .writes = true, .connects = true,
	    .help = "move a partition to a node of another cluster",
	    .fn = cmd_exit_transfer },
	{ .words = "exit verify-certificate", .args = file_args,
	    .opts = exit_verify_opts, .role = "-",
	    .help = "check a deletion certificate (offline)",
	    .fn = cmd_exit_verify_certificate },
	{ .words = "help", .args = help_args, .role = "-",
	    .help = "show the commands, or the usage of one",
	    .fn = cmd_help },
	{ .words = "key attest", .args = key_id_args, .opts = attest_opts,
	    .role = "so|pso|user", .connects = true,
	    .help = "a statement about a key, signed by the node",
	    .fn = cmd_key_attest },
	{ .words = "key delete", .args = key_id_args, .role = "user",
	    .writes = true, .connects = true, .group = true,
	    .help = "delete a key (to the invalidation bin if key-invalidation "
	    "is on)", .fn = cmd_key_delete },
	{ .words = "key generate", .args = part_args,
	    .opts = key_generate_opts, .role = "user", .writes = true,
	    .connects = true, .help = "make a new key in a partition",
	    .fn = cmd_key_generate },
	{ .words = "key list", .args = part_args, .opts = key_list_opts,
	    .role = "so|pso|user", .connects = true,
	    .help = "list a partition's keys", .fn = cmd_key_list },
	{ .words = "key purge", .args = key_id_args, .role = "so|pso",
	    .writes = true, .connects = true,
	    .help = "destroy a key of the invalidation bin for good",
	    .fn = cmd_key_purge },
	{ .words = "key restore", .args = key_id_args, .role = "so|pso",
	    .writes = true, .connects = true,
	    .help = "bring a key back from the invalidation bin",
	    .fn = cmd_key_restore },
	{ .words = "key show", .args = key_id_args, .role = "so|pso|user",
	    .connects = true, .group = true,
	    .help = "show a key's type, label, flags and public key",
	    .fn = cmd_key_show },
	{ .words = "key sign", .args = key_id_args, .opts = key_sign_opts,
	    .role = "user", .connects = true, .group = true,
	    .help = "sign a file's data with a key", .fn = cmd_key_sign },
	{ .words = "login", .args = login_args, .opts = login_opts,
	    .role = "-", .connects = true,
	    .help = "log in as genesis, so or pso PARTITION with a quorum of "
	    "officers, or as user PARTITION with its API secret",
	    .fn = cmd_login },
	{ .words = "logout", .role = "-", .connects = true,
	    .help = "drop the role logged in on this session",
	    .fn = cmd_logout },
	{ .words = "node info", .opts = info_opts, .role = "-",
	    .connects = true, .route = ROUTE_ANYNODE,
	    .help = "show the node's name, cluster, role, epoch and host key",
	    .fn = cmd_node_info },
	{ .words = "node list", .role = "-", .connects = true,
	    .route = ROUTE_SELF,
	    .help = "show every node of the cluster: role, epoch, sequence, "
	    "lag, reachable", .fn = cmd_node_list },
	{ .words = "officer add", .args = officer_add_args,
	    .opts = partition_opt, .role = "genesis|so|pso", .writes = true,
	    .connects = true, .help = "register an officer's public key",
	    .fn = cmd_officer_add },
	{ .words = "officer keygen", .args = file_args, .opts = keygen_opts,
	    .role = "-", .secret = true,
	    .help = "make an officer key pair, encrypted with a passphrase",
	    .fn = cmd_officer_keygen },
	{ .words = "officer list", .role = "any", .connects = true,
	    .help = "list the registered officers", .fn = cmd_officer_list },
	{ .words = "officer remove", .args = role_name_args,
	    .opts = partition_opt, .role = "genesis|so|pso", .writes = true,
	    .connects = true, .help = "remove an officer",
	    .fn = cmd_officer_remove },
	{ .words = "partition create", .args = part_create_args,
	    .opts = part_create_opts, .role = "so", .writes = true,
	    .connects = true,
	    .help = "create a partition from a profile, with parameters",
	    .fn = cmd_partition_create },
	{ .words = "partition delete", .args = part_args,
	    .opts = part_delete_opts, .role = "so", .writes = true,
	    .connects = true, .help = "delete a partition and all its keys",
	    .fn = cmd_partition_delete },
	{ .words = "partition get", .args = part_get_args, .role = "so|pso",
	    .connects = true, .group = true, .help = "print the value of one parameter",
	    .fn = cmd_partition_get },
	{ .words = "partition list", .role = "any", .connects = true,
	    .help = "list the partitions (a PSO sees its own)",
	    .fn = cmd_partition_list },
	{ .words = "partition params", .role = "-",
	    .help = "describe every partition parameter and profile",
	    .fn = cmd_partition_params },
	{ .words = "partition secret", .args = part_args,
	    .opts = part_secret_opts, .role = "so|pso", .writes = true,
	    .connects = true, .secret = true,
	    .help = "rotate a partition's API secret and show the new one once",
	    .fn = cmd_partition_secret },
	{ .words = "partition set", .args = part_set_args, .role = "so|pso",
	    .writes = true, .connects = true, .group = true,
	    .help = "change parameters, all or none (see partition params)",
	    .fn = cmd_partition_set },
	{ .words = "partition show", .args = part_args, .role = "so|pso",
	    .connects = true, .group = true,
	    .help = "show a partition's parameters, usage, officers, quorum",
	    .fn = cmd_partition_show },
	{ .words = "quorum set", .args = quorum_args, .opts = partition_opt,
	    .role = "genesis|so|pso", .writes = true, .connects = true,
	    .help = "set how many officers of a role must approve a login",
	    .fn = cmd_quorum_set },
	{ .words = "quorum show", .role = "any", .connects = true,
	    .help = "show each role's quorum m of n officers",
	    .fn = cmd_quorum_show },
	{ .words = "whoami", .role = "-", .connects = true,
	    .help = "show the role logged in, its officers and its expiry",
	    .fn = cmd_whoami },
};
const size_t ncommands = sizeof(commands) / sizeof(commands[0]);

const struct cmd *
cmd_find(const char *words)
{
	for (size_t i = 0; i < ncommands; i++)
		if (strcmp(commands[i].words, words) == 0)
			return &commands[i];
	return NULL;
}

/* Number of words of c matched by argv, or 0. */
static int
words_match(const struct cmd *c, int argc, char **argv)
{
	const char *w = c->words;
	int n = 0;

	while (*w != '\0') {
		size_t len = strcspn(w, " ");

		if (n >= argc || strlen(argv[n]) != len ||
		    strncmp(argv[n], w, len) != 0)
			return 0;
		n++;
		w += len;
		while (*w == ' ')
			w++;
	}
	return n;
}

static bool
is_group(const char *word)
{
	size_t len = strlen(word);

	for (size_t i = 0; i < ncommands; i++)
		if (strncmp(commands[i].words, word, len) == 0 &&
		    commands[i].words[len] == ' ')
			return true;
	return false;
}

static const struct cmd_opt *
opt_find(const struct cmd *c, const char *name, size_t len)
{
	for (const struct cmd_opt *o = c->opts; o != NULL && o->name != NULL;
	    o++)
		if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
			return o;
	return NULL;
}

static int
parse_opts_args(const struct cmd *c, int argc, char **argv, struct inv *inv,
    hsm_status *st)
{
	size_t min = 0, max = 0;
	bool only_args = false;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (!only_args && strcmp(a, "--") == 0) {
			only_args = true;
			continue;
		}
		if (!only_args && (strcmp(a, "-h") == 0 ||
		    strcmp(a, "--help") == 0)) {
			inv->help = true;
			continue;
		}
		if (!only_args && a[0] == '-' && a[1] != '\0') {
			const char *name = a + (a[1] == '-' ? 2 : 1);
			const char *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);
			const struct cmd_opt *o = a[1] == '-' ?
			    opt_find(c, name, len) : NULL;
			size_t j;

			if (o == NULL)
				return hsm_fail(st, "bad_option", "unknown "
				    "option '%.*s' for '%s' (see hsmctl help "
				    "%s)", (int)(eq ? (size_t)(eq - a) :
				    strlen(a)), a, c->words, c->words);
			if (o->metavar == NULL && eq != NULL)
				return hsm_fail(st, "bad_option", "option "
				    "--%s takes no value", o->name);
			if (!(o->flags & OPT_REPEAT))
				for (j = 0; j < inv->nopts; j++)
					if (inv->opts[j].opt == o)
						return hsm_fail(st,
						    "bad_option", "option --%s "
						    "given twice", o->name);
			if (inv->nopts >= INV_MAX)
				return hsm_fail(st, "usage", "too many "
				    "options");
			inv->opts[inv->nopts].opt = o;
			inv->opts[inv->nopts].value = NULL;
			if (o->metavar != NULL) {
				if (eq != NULL)
					inv->opts[inv->nopts].value = eq + 1;
				else if (i + 1 < argc)
					inv->opts[inv->nopts].value = argv[++i];
				else
					return hsm_fail(st, "bad_option",
					    "option --%s needs %s", o->name,
					    o->metavar);
			}
			inv->nopts++;
			continue;
		}
		if (inv->nargs >= INV_MAX)
			return hsm_fail(st, "usage", "too many arguments");
		inv->args[inv->nargs++] = a;
	}
	for (const struct cmd_arg *ar = c->args; ar != NULL &&
	    ar->name != NULL; ar++) {
		if (!(ar->flags & ARG_OPTIONAL))
			min++;
		max = (ar->flags & ARG_REPEAT) ? INV_MAX : max + 1;
	}
	/* help WORDS: the words must name a command or a group of them. */
	if (!inv->help && c->args != NULL && c->args->kind == K_COMMAND &&
	    inv->nargs > 0) {
		char words[256] = "";
		size_t off = 0, wl;
		bool known = false;

		for (size_t i = 0; i < inv->nargs && off < sizeof(words); i++)
			off += (size_t)snprintf(words + off,
			    sizeof(words) - off, "%s%s", i ? " " : "",
			    inv->args[i]);
		wl = strlen(words);
		for (size_t i = 0; i < ncommands && !known; i++)
			known = strncmp(commands[i].words, words, wl) == 0 &&
			    (commands[i].words[wl] == ' ' ||
			    commands[i].words[wl] == '\0');
		if (!known || off >= sizeof(words))
			return hsm_fail(st, "unknown_command", "no command "
			    "'%.64s' (see hsmctl help)", words);
	}
	for (const struct cmd_opt *o = c->opts; !inv->help && o != NULL &&
	    o->name != NULL; o++)
		if ((o->flags & OPT_REQUIRED) && inv_opt(inv, o->name) == NULL)
			return hsm_fail(st, "usage", "'%s' needs --%s%s%s",
			    c->words, o->name, o->metavar ? " " : "",
			    o->metavar ? o->metavar : "");
	if (!inv->help && (inv->nargs < min || inv->nargs > max)) {
		char u[256];

		cmd_usage(c, u, sizeof(u));
		return hsm_fail(st, "usage", "%s for '%s'; usage: hsmctl %s",
		    inv->nargs < min ? "missing argument" :
		    "too many arguments", c->words, u);
	}
	return 0;
}

int
cmd_parse(int argc, char **argv, struct inv *inv, hsm_status *st)
{
	const struct cmd *best = NULL;
	int bestn = 0;

	memset(inv, 0, sizeof(*inv));
	if (argc < 1)
		return hsm_fail(st, "usage", "no command given (see hsmctl "
		    "help)");
	for (size_t i = 0; i < ncommands; i++) {
		int n = words_match(&commands[i], argc, argv);

		if (n > bestn) {
			best = &commands[i];
			bestn = n;
		}
	}
	if (best == NULL) {
		if (is_group(argv[0]) && argc > 1)
			return hsm_fail(st, "unknown_command", "unknown "
			    "command '%s %.64s' (see hsmctl help %s)",
			    argv[0], argv[1], argv[0]);
		if (is_group(argv[0]))
			return hsm_fail(st, "unknown_command", "'%s' needs "
			    "a subcommand (see hsmctl help %s)", argv[0],
			    argv[0]);
		return hsm_fail(st, "unknown_command", "unknown command "
		    "'%.64s' (see hsmctl help)", argv[0]);
	}
	inv->cmd = best;
	return parse_opts_args(best, argc - bestn, argv + bestn, inv, st);
}

const char *
inv_opt(const struct inv *inv, const char *name)
{
	for (size_t i = 0; i < inv->nopts; i++)
		if (strcmp(inv->opts[i].opt->name, name) == 0)
			return inv->opts[i].value ? inv->opts[i].value : "";
	return NULL;
}

void
cmd_usage(const struct cmd *c, char *buf, size_t len)
{
	size_t off;

	off = (size_t)snprintf(buf, len, "%s", c->words);
	for (const struct cmd_arg *a = c->args; a != NULL && a->name != NULL &&
	    off < len; a++)
		off += (size_t)snprintf(buf + off, len - off, " %s%s%s%s",
		    (a->flags & ARG_OPTIONAL) ? "[" : "", a->name,
		    (a->flags & ARG_REPEAT) ? "..." : "",
		    (a->flags & ARG_OPTIONAL) ? "]" : "");
	for (const struct cmd_opt *o = c->opts; o != NULL && o->name != NULL &&
	    off < len; o++)
		off += (size_t)snprintf(buf + off, len - off, " %s--%s%s%s%s%s",
		    (o->flags & OPT_REQUIRED) ? "" : "[", o->name,
		    o->metavar ? " " : "", o->metavar ? o->metavar : "",
		    (o->flags & OPT_REQUIRED) ? "" : "]",
		    (o->flags & OPT_REPEAT) ? "..." : "");
}

static const char global_help[] =
    "Global options:\n"
    "  -C, --cluster NAME        cluster from the configuration\n"
    "  -n, --node NAME|HOST:PORT node to talk to\n"
    "  -F, --config FILE         configuration file (hsmctl.conf(5))\n"
    "  -o, --output text|json    output format\n"
    "  -f, --file FILE|-         run a batch file\n"
    "  -k, --keep-going          in a batch, run every line\n"
    "  -y, --yes                 do not ask for confirmation\n"
    "  --as ROLE[:PARTITION]     log in before the command\n"
    "  --officer FILE            officer key (repeatable)\n"
    "  --approval FILE           signed remote approval (repeatable)\n"
    "  --passphrase-fd N         read passphrases from descriptor N\n"
    "  --secret-file FILE        partition API secret\n"
    "  --accept-new-host-key     trust an unknown node key and record it\n"
    "  -q, --quiet               less output\n"
    "  -v, --verbose             more output (repeatable)\n"
    "  -h, --help                this help\n"
    "  -V, --version             print the version\n";

static void
help_one(const struct cmd *c)
{
	char u[512];

	cmd_usage(c, u, sizeof(u));
	printf("usage: hsmctl [global options] %s\n\n%s.\n", u, c->help);
	if (strcmp(c->role, "any") == 0)
		printf("Needs a login (any role).\n");
	else if (strcmp(c->role, "-") != 0)
		printf("Needs the %s role.\n", c->role);
	if (c->opts != NULL && c->opts->name != NULL) {
		printf("\nOptions:\n");
		for (const struct cmd_opt *o = c->opts; o->name != NULL; o++) {
			char left[64];

			snprintf(left, sizeof(left), "--%s%s%s", o->name,
			    o->metavar ? " " : "", o->metavar ? o->metavar : "");
			printf("  %-24s %s\n", left, o->help);
		}
	}
}

static json_t *
help_json(const struct cmd *c)
{
	json_t *j, *opts;
	char u[512];

	cmd_usage(c, u, sizeof(u));
	if ((opts = json_array()) == NULL)
		return NULL;
	for (const struct cmd_opt *o = c->opts; o != NULL && o->name != NULL;
	    o++)
		json_array_append_new(opts, json_pack("{s:s,s:s?,s:s}",
		    "name", o->name, "value", o->metavar, "help", o->help));
	j = json_pack("{s:s,s:s,s:s,s:s,s:b,s:o}", "command", c->words,
	    "usage", u, "help", c->help, "role", c->role, "writes",
	    c->writes, "options", opts);
	return j;
}

/* -o json help: the table itself, for scripts and front ends. */
static int
help_print_json(const char *words, size_t len, hsm_status *st)
{
	json_t *arr = json_array();
	char *s;

	if (arr == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	for (size_t i = 0; i < ncommands; i++) {
		if (len > 0 && strcmp(commands[i].words, words) != 0 &&
		    !(strncmp(commands[i].words, words, len) == 0 &&
		    commands[i].words[len] == ' '))
			continue;
		json_array_append_new(arr, help_json(&commands[i]));
	}
	if (len > 0 && json_array_size(arr) == 0) {
		json_decref(arr);
		return hsm_fail(st, "unknown_command", "no command '%s' (see "
		    "hsmctl help)", words);
	}
	s = json_dumps(arr, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(arr);
	if (s == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	printf("%s\n", s);
	free(s);
	return 0;
}

int
cmd_help(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	char words[256] = "", u[512];
	size_t off = 0;
	bool any = false;

	for (size_t i = 0; i < inv->nargs && off < sizeof(words); i++)
		off += (size_t)snprintf(words + off, sizeof(words) - off,
		    "%s%s", i ? " " : "", inv->args[i]);
	if (off >= sizeof(words))
		return hsm_fail(st, "unknown_command", "no such command");
	if (ctx->output == OUT_JSON)
		return help_print_json(words, off, st);
	if (inv->nargs > 0) {
		const struct cmd *c = cmd_find(words);

		if (c != NULL) {
			help_one(c);
			return 0;
		}
		/* "help node": every command of the group. */
		for (size_t i = 0; i < ncommands; i++)
			if (strncmp(commands[i].words, words, off) == 0 &&
			    commands[i].words[off] == ' ') {
				cmd_usage(&commands[i], u, sizeof(u));
				printf("%s%-40s %s\n", any ? "" :
				    "Commands:\n", u, commands[i].help);
				any = true;
			}
		if (any)
			return 0;
		return hsm_fail(st, "unknown_command", "no command '%s' (see "
		    "hsmctl help)", words);
	}
	printf("usage: hsmctl [global options] COMMAND [ARGS]\n"
	    "       hsmctl [global options] -f FILE|-\n"
	    "       hsmctl [global options] [shell]\n\n%s\nCommands:\n",
	    global_help);
	for (size_t i = 0; i < ncommands; i++) {
		cmd_usage(&commands[i], u, sizeof(u));
		if (strlen(u) <= 30)
			printf("  %-30s %s\n", u, commands[i].help);
		else
			printf("  %s\n  %-30s %s\n", u, "", commands[i].help);
	}
	printf("\nSee hsmctl help COMMAND, hsmctl(1) and hsmctl.conf(5).\n");
	return 0;
}

/* Hidden: one usage line per command, for the man page check. */
int
cmd_list_commands(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	char u[512];

	(void)ctx;
	(void)inv;
	(void)st;
	for (size_t i = 0; i < ncommands; i++) {
		cmd_usage(&commands[i], u, sizeof(u));
		printf("%s\n", u);
	}
	return 0;
}

int
cmd_capture(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	hsm_status cap;
	int r;

	hsm_status_clear(&cap);
	ctx->capture = true;
	r = inv->cmd->fn(ctx, inv, &cap);
	ctx->capture = false;
	if (r != 0 && strcmp(cap.code, "captured") == 0)
		return 0;
	if (ctx->captured_args != NULL)
		cbor_decref(&ctx->captured_args);
	if (r == 0)
		return hsm_fail(st, "internal", "'%s' sent no request",
		    inv->cmd->words);
	*st = cap;
	return -1;
}

int
cmd_run(struct ctx *ctx, const struct inv *inv)
{
	hsm_status st;
	int r;

	hsm_status_clear(&st);
	ctx->running = inv->cmd;
	if (inv->help) {
		if (ctx->output == OUT_JSON)
			r = help_print_json(inv->cmd->words,
			    strlen(inv->cmd->words), &st);
		else {
			help_one(inv->cmd);
			r = 0;
		}
	} else
		r = inv->cmd->fn(ctx, inv, &st);
	/* What the shell completes from the node may have changed. */
	if (inv->cmd->writes)
		ctx_forget_live(ctx);
	if (r != 0)
		return out_error(ctx, &st);
	fflush(stdout);
	return 0;
}
