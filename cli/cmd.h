/*
 * The command table and what its handlers share.  Every command is
 * declared once (cmdtab.c); single commands, help, the man page check
 * and (later) batch files, the shell and completion all read it.
 */
#ifndef HSMCTL_CMD_H
#define HSMCTL_CMD_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "hsmctl.h"

/* What an argument names: drives completion and validation. */
enum arg_kind {
	K_WORD,		/* free text */
	K_COMMAND,	/* a command word */
	K_NODE,
	K_PARTITION,
	K_FILE,
	K_CLUSTER,
	K_OUTPUT,	/* text|json */
	K_ROLE,		/* genesis|so|pso */
	K_OFFICER,	/* a registered officer's name (from the node) */
	K_SIGALG,	/* key sign --alg */
	K_LOGINROLE,	/* genesis|so|pso|user */
	K_KEYTYPE,	/* officer keys: ed25519|p384 */
	K_PARAM,	/* a partition parameter, or PARAM=VALUE */
	K_PROFILE,	/* a partition profile */
	K_OBJTYPE,	/* a partition key's type: rsa-2048|...|aes-256 */
	K_API,		/* jce|cng|pkcs11|rest */
	K_BACKUP,	/* a backup id (from the node) */
};

#define ARG_OPTIONAL 0x1
#define ARG_REPEAT 0x2

struct cmd_arg {
	const char *name;	/* metavar: "PARTITION" */
	enum arg_kind kind;
	unsigned flags;
};

#define OPT_REPEAT 0x1
#define OPT_REQUIRED 0x2

struct cmd_opt {
	const char *name;	/* long name without dashes */
	const char *metavar;	/* NULL for a flag */
	enum arg_kind kind;
	unsigned flags;
	const char *help;
};

struct ctx;
struct inv;
struct kv_label;

/*
 * Which node of a cluster a single command goes to.  By default, changes
 * go to the master and reads to a random clone or master; a shell or a
 * batch keeps one session, on the master when there is one.
 */
#define ROUTE_DEFAULT 0
#define ROUTE_ANYNODE 1		/* any node that answers, bc included */
#define ROUTE_ARG0 2		/* the node its first argument names */
#define ROUTE_SELF 3		/* the handler talks to every node itself */
#define ROUTE_MASTER 4		/* the master, though it changes nothing */

struct cmd {
	const char *words;	/* "node info" */
	const struct cmd_arg *args;	/* NULL-name terminated, or NULL */
	const struct cmd_opt *opts;	/* NULL-name terminated, or NULL */
	const char *role;	/* role needed: "-" for none */
	bool writes;		/* changes node state */
	bool connects;		/* needs a node */
	bool secret;		/* its line never enters shell history */
	int route;		/* ROUTE_*: which node of a cluster it goes to */
	/*
	 * In a batch, a run of such lines goes to the node as one request
	 * (its batch op) and one transaction: a handler that makes exactly
	 * one ctx_call, whose op the node marks OP_GROUP.
	 */
	bool group;
	const char *help;	/* one line */
	/* 0, or -1 with st filled; the caller reports errors, per mode. */
	int (*fn)(struct ctx *, const struct inv *, hsm_status *st);
};

#define INV_MAX 64

/* One parsed command line. */
struct inv {
	const struct cmd *cmd;
	const char *args[INV_MAX];
	size_t nargs;
	struct {
		const struct cmd_opt *opt;
		const char *value;	/* NULL for a flag */
	} opts[INV_MAX];
	size_t nopts;
	bool help;		/* COMMAND -h: show its help instead */
};

enum output_mode { OUT_TEXT, OUT_JSON };

/* Global options and the session they select. */
struct ctx {
	enum output_mode output;
	bool color;
	bool quiet;
	int verbose;
	bool yes;
	bool keep_going;	/* -k: run every batch line */
	bool accept_new_host_key;
	const char *config_path;
	const char *cluster;	/* -C */
	const char *node;	/* -n NAME or HOST:PORT */
	struct hsm_config *cfg;	/* loaded on first connect */
	bool ssh_ready;		/* hsm_init() done */
	struct hsm_conn *conn;	/* opened on first use */
	char node_label[HSM_NAME_MAX + 300];	/* the node connected to */
	char role[16 + HSM_NAME_MAX];	/* "so", "pso:P", "user:P" or "" */
	bool interactive;	/* in the shell */
	int passfd;		/* --passphrase-fd, -1 for the terminal */
	const char *officers[INV_MAX];	/* global --officer files */
	size_t nofficers;
	const char *approvals[INV_MAX];	/* global --approval files */
	size_t napprovals;
	const char *secret_file;	/* global --secret-file */
	const char *as;		/* --as ROLE[:PARTITION] */
	const struct cmd *running;	/* the command being run */
	bool single;		/* one command, not a shell or a batch */
	const char *route_node;	/* ROUTE_ARG0: the node to talk to */
	bool capture;		/* record the op instead of sending it */
	char captured_op[HSM_OP_MAX + 1];
	cbor_item_t *captured_args;
	/* A batch line's answer, already received: ctx_call returns it. */
	const cbor_item_t *replay;	/* {"ok":..,"result"|"error":..} */
	char replay_op[HSM_OP_MAX + 1];
	cbor_item_t *op_approval;	/* --approval files for one op */
	cbor_item_t *live[3];	/* shell completion cache: partitions,
				 * officers, backups */
	const char *source;	/* batch file name, for "FILE:LINE:" */
	size_t lineno;		/* batch line, 0 outside a batch */
};

extern const struct cmd commands[];
extern const size_t ncommands;

/*
 * Parse argv (after the global options) against the table.  On error
 * returns -1 with a "usage" class status naming what was wrong.
 */
int cmd_parse(int argc, char **argv, struct inv *inv, hsm_status *st);
const struct cmd *cmd_find(const char *words);
/* "node info" + " ARG [OPT]..." */
void cmd_usage(const struct cmd *c, char *buf, size_t len);
const char *inv_opt(const struct inv *inv, const char *name);

/* Run one parsed command and report its failure; returns the exit status. */
int cmd_run(struct ctx *ctx, const struct inv *inv);
/*
 * Run its handler in capture mode: 0 with the request it would send in
 * ctx->captured_op and ctx->captured_args (the caller's to release), or
 * -1 with why it sent none (its own error, or "internal").
 */
int cmd_capture(struct ctx *ctx, const struct inv *inv, hsm_status *st);

/*
 * complete.c: candidates for the last of argv (the word being typed;
 * "" for a new word), given the words before it.
 */
void complete_words(struct ctx *ctx, int argc, char **argv,
    void (*add)(void *, const char *), void *arg);
/* hsmctl __complete -- WORDS...: one candidate a line. */
int complete_main(struct ctx *ctx, int argc, char **argv);

/* shell.c: the interactive shell; returns 0 on exit/quit/Ctrl-D. */
int shell_run(struct ctx *ctx);

/* batch.c: hsmctl -f FILE|-; returns the first failure's exit status. */
int batch_run(struct ctx *ctx, const char *path);

/* passphrase.c: one passphrase, from --passphrase-fd or the terminal. */
int pass_read(struct ctx *ctx, const char *prompt, bool confirm, char *buf,
    size_t len, hsm_status *st);

/* Ask a yes/no question (echo on); -y answers yes.  false: st says why. */
bool ask_yes(struct ctx *ctx, const char *question, hsm_status *st);

/* cmd_auth.c: log in as "ROLE" or "ROLE:PARTITION" (--as). */
int ctx_login_as(struct ctx *ctx, const char *as, hsm_status *st);

/* Handlers. */
int cmd_help(struct ctx *, const struct inv *, hsm_status *);
int cmd_node_info(struct ctx *, const struct inv *, hsm_status *);
int cmd_node_list(struct ctx *, const struct inv *, hsm_status *);
int cmd_cluster_status(struct ctx *, const struct inv *, hsm_status *);
int cmd_backup_create(struct ctx *, const struct inv *, hsm_status *);
int cmd_backup_list(struct ctx *, const struct inv *, hsm_status *);
int cmd_backup_show(struct ctx *, const struct inv *, hsm_status *);
int cmd_backup_verify(struct ctx *, const struct inv *, hsm_status *);
int cmd_backup_download(struct ctx *, const struct inv *, hsm_status *);
int cmd_backup_upload(struct ctx *, const struct inv *, hsm_status *);
int cmd_backup_restore(struct ctx *, const struct inv *, hsm_status *);
int cmd_backup_prune(struct ctx *, const struct inv *, hsm_status *);
int cmd_backup_schedule(struct ctx *, const struct inv *, hsm_status *);
int cmd_exit_delete(struct ctx *, const struct inv *, hsm_status *);
int cmd_exit_export(struct ctx *, const struct inv *, hsm_status *);
int cmd_exit_migrate(struct ctx *, const struct inv *, hsm_status *);
int cmd_exit_resume(struct ctx *, const struct inv *, hsm_status *);
int cmd_exit_status(struct ctx *, const struct inv *, hsm_status *);
int cmd_exit_transfer(struct ctx *, const struct inv *, hsm_status *);
int cmd_exit_verify_certificate(struct ctx *, const struct inv *,
    hsm_status *);
int cmd_cluster_promote(struct ctx *, const struct inv *, hsm_status *);
int cmd_cluster_admit(struct ctx *, const struct inv *, hsm_status *);
int cmd_list_commands(struct ctx *, const struct inv *, hsm_status *);
int cmd_login(struct ctx *, const struct inv *, hsm_status *);
int cmd_logout(struct ctx *, const struct inv *, hsm_status *);
int cmd_whoami(struct ctx *, const struct inv *, hsm_status *);
int cmd_approval_request(struct ctx *, const struct inv *, hsm_status *);
int cmd_approval_sign(struct ctx *, const struct inv *, hsm_status *);
int cmd_approval_list(struct ctx *, const struct inv *, hsm_status *);
int cmd_approval_cancel(struct ctx *, const struct inv *, hsm_status *);
int cmd_officer_keygen(struct ctx *, const struct inv *, hsm_status *);
int cmd_officer_list(struct ctx *, const struct inv *, hsm_status *);
int cmd_officer_add(struct ctx *, const struct inv *, hsm_status *);
int cmd_officer_remove(struct ctx *, const struct inv *, hsm_status *);
int cmd_quorum_show(struct ctx *, const struct inv *, hsm_status *);
int cmd_quorum_set(struct ctx *, const struct inv *, hsm_status *);
int cmd_key_attest(struct ctx *, const struct inv *, hsm_status *);
int cmd_audit_log(struct ctx *, const struct inv *, hsm_status *);
int cmd_audit_verify(struct ctx *, const struct inv *, hsm_status *);
int cmd_partition_create(struct ctx *, const struct inv *, hsm_status *);
int cmd_partition_list(struct ctx *, const struct inv *, hsm_status *);
int cmd_partition_show(struct ctx *, const struct inv *, hsm_status *);
int cmd_partition_params(struct ctx *, const struct inv *, hsm_status *);
int cmd_partition_get(struct ctx *, const struct inv *, hsm_status *);
int cmd_partition_set(struct ctx *, const struct inv *, hsm_status *);
int cmd_partition_delete(struct ctx *, const struct inv *, hsm_status *);
int cmd_partition_secret(struct ctx *, const struct inv *, hsm_status *);
int cmd_key_delete(struct ctx *, const struct inv *, hsm_status *);
int cmd_key_generate(struct ctx *, const struct inv *, hsm_status *);
int cmd_key_list(struct ctx *, const struct inv *, hsm_status *);
int cmd_key_purge(struct ctx *, const struct inv *, hsm_status *);
int cmd_key_restore(struct ctx *, const struct inv *, hsm_status *);
int cmd_key_show(struct ctx *, const struct inv *, hsm_status *);
int cmd_key_sign(struct ctx *, const struct inv *, hsm_status *);

/* cmd_node.c: every node of the cluster, asked for node.info. */
struct probe {
	char name[HSM_NAME_MAX + 1];
	char addr[300];
	char member_role[16];	/* as the others list it */
	cbor_item_t *info;	/* its node.info; NULL if it did not answer */
	char error[HSM_MSG_MAX];
};
int probe_cluster(struct ctx *ctx, struct probe **list, size_t *n,
    hsm_status *st);
void probe_free(struct probe *list, size_t n);
/* The answering master of the newest epoch, or NULL. */
const struct probe *probe_master(const struct probe *list, size_t n);
cbor_item_t *probe_row(const struct probe *p, const struct probe *master);

/* cmd_key.c: the key types and API names the node knows, NULL-ended. */
extern const char *const key_obj_types[];
extern const char *const api_names[];
bool key_obj_type_ok(const char *type);
bool api_name_ok(const char *api);

/* cmd_partition.c: a partition name as the node accepts it, or bad_value. */
int check_partition(const char *name, hsm_status *st);
/* {key: name}, the name checked first. */
cbor_item_t *partition_args(const char *key, const char *name,
    hsm_status *st);

/* A call whose result is printed as it is, with these labels. */
int call_and_show(struct ctx *ctx, const char *op, cbor_item_t *args,
    const struct kv_label *labels, hsm_status *st);
/* A call whose result holds one list (result[key]), shown as a table. */
int call_and_table(struct ctx *ctx, const char *op, cbor_item_t *args,
    const char *key, const struct kv_label *cols, hsm_status *st);

/*
 * conn.c: the session's connection, opened on first use (loading the
 * configuration then) and kept for the following commands.
 */
int ctx_connect(struct ctx *ctx, hsm_status *st);
/* The nodes of the cluster selected (-C, default), or NULL (-n HOST:PORT). */
const struct hsm_cluster *ctx_cluster(struct ctx *ctx, hsm_status *st);
/* Open a connection of its own to HOST:PORT (the ctx's key, known_hosts). */
int ctx_open(struct ctx *ctx, const char *host, int port,
    struct hsm_conn **conn, hsm_status *st);
/*
 * Every handler's request goes through here: it connects, attaches
 * --approval files to a state-changing command (an approval bound to
 * that one operation), or, for approval request --op, only records it.
 */
int ctx_call(struct ctx *ctx, const char *op, const cbor_item_t *args,
    cbor_item_t **result, hsm_status *st);
/* Signature algorithms of key sign --alg, NULL-terminated. */
extern const char *const sign_algs[];

/* Forget the names cached for completion (after a change). */
void ctx_forget_live(struct ctx *ctx);
/* Drop the connection (it is reopened on the next command). */
void ctx_close(struct ctx *ctx);
/* Drop everything: connection, configuration, SSH library state. */
void ctx_fini(struct ctx *ctx);

/* output.c */
struct kv_label {
	const char *key;	/* key in the result map */
	const char *label;	/* text label */
	int format;		/* KV_PLAIN, KV_DURATION */
};
#define KV_PLAIN 0
#define KV_DURATION 1
#define KV_TIME 2	/* seconds since the epoch, shown as UTC */

/* Report an error the way -o selects; returns the exit status. */
int out_error(const struct ctx *ctx, const hsm_status *st);
/* Print rows (a list of maps) as an aligned table with these columns. */
int out_table(const struct ctx *ctx, const cbor_item_t *rows,
    const struct kv_label *cols, hsm_status *st);
/* Print a result map: JSON as is, text as aligned key/value pairs. */
int out_result(const struct ctx *ctx, const cbor_item_t *result,
    const struct kv_label *labels, hsm_status *st);
json_t *out_cbor_to_json(const cbor_item_t *item);
void out_verbose(const struct ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
