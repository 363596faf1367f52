#include <stdio.h>
#include <openssl/evp.h>
#include <string.h>

#include "audit.h"
#include "auth.h"
#include "backup.h"
#include "exits.h"
#include "cluster.h"
#include "log.h"
#include "objects.h"
#include "officers.h"
#include "ops.h"
#include "partitions.h"
#include "repl.h"
#include "store.h"

/* Where an op may run. */
#define OP_CHANGE 0x1	/* changes replicated state: on the master only */
#define OP_BC 0x2	/* also on a business-continuity node */
#define OP_NODE 0x4	/* node-to-node, from a member node only */
#define OP_JOIN 0x8	/* from a node asking to join, or a member */
#define OP_EXITSRC 0x10	/* from an exit source only (the target's side) */
#define OP_GROUP 0x20	/* may be one of the requests of a batch op */

/* A batch op: at most this many requests, run in one transaction. */
#define BATCH_ITEMS_MAX 1024

struct op {
	const char *name;
	unsigned roles;		/* ROLE_* bits; 0: any authorised terminal */
	bool writes;
	unsigned where;		/* OP_* */
	int (*fn)(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
	    hsm_status *);
};

int
args_allowed(const cbor_item_t *args, const char *const *names,
    hsm_status *st)
{
	struct cbor_pair *h = cbor_map_handle(args);

	for (size_t i = 0; i < cbor_map_size(args); i++) {
		size_t kl = cbor_string_length(h[i].key);
		bool ok = false;

		for (size_t j = 0; names != NULL && names[j] != NULL && !ok;
		    j++)
			ok = strlen(names[j]) == kl &&
			    memcmp(names[j], cbor_string_handle(h[i].key),
			    kl) == 0;
		if (!ok)
			return hsm_fail(st, "bad_request", "unknown argument "
			    "'%.*s'", (int)(kl > 32 ? 32 : kl),
			    (const char *)cbor_string_handle(h[i].key));
	}
	return 0;
}

int
arg_text(const cbor_item_t *args, const char *key, char *buf, size_t len,
    bool required, hsm_status *st)
{
	const cbor_item_t *v = hsm_map_get(args, key);
	size_t n;

	if (v == NULL) {
		if (required)
			return hsm_fail(st, "bad_request", "missing argument "
			    "'%s'", key);
		return 1;
	}
	if (!cbor_isa_string(v))
		return hsm_fail(st, "bad_request", "argument '%s' is not text",
		    key);
	n = cbor_string_length(v);
	if (n >= len || memchr(cbor_string_handle(v), '\0', n) != NULL)
		return hsm_fail(st, "bad_request", "argument '%s' is too long "
		    "or holds NUL", key);
	memcpy(buf, cbor_string_handle(v), n);
	buf[n] = '\0';
	return 0;
}

int
arg_uint(const cbor_item_t *args, const char *key, uint64_t *out,
    bool required, hsm_status *st)
{
	const cbor_item_t *v = hsm_map_get(args, key);

	if (v == NULL) {
		if (required)
			return hsm_fail(st, "bad_request", "missing argument "
			    "'%s'", key);
		return 1;
	}
	if (!cbor_isa_uint(v))
		return hsm_fail(st, "bad_request", "argument '%s' is not an "
		    "unsigned integer", key);
	*out = cbor_get_int(v);
	return 0;
}

int
arg_bytes(const cbor_item_t *args, const char *key, const unsigned char **p,
    size_t *len, bool required, hsm_status *st)
{
	const cbor_item_t *v = hsm_map_get(args, key);

	if (v == NULL) {
		if (required)
			return hsm_fail(st, "bad_request", "missing argument "
			    "'%s'", key);
		return 1;
	}
	if (!cbor_isa_bytestring(v))
		return hsm_fail(st, "bad_request", "argument '%s' is not a "
		    "byte string", key);
	*p = cbor_bytestring_handle(v);
	*len = cbor_bytestring_length(v);
	return 0;
}

int
role_bit(const char *role)
{
	if (strcmp(role, "genesis") == 0)
		return ROLE_GENESIS;
	if (strcmp(role, "so") == 0)
		return ROLE_SO;
	if (strcmp(role, "pso") == 0)
		return ROLE_PSO;
	if (strcmp(role, "user") == 0)
		return ROLE_USER;
	return 0;
}

/* Officer and partition names. */
bool
name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > HSM_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') ||
		    (i > 0 && (c == '-' || c == '_' || c == '.'))))
			return false;
	}
	return true;
}

const char *
sql_text(sqlite3_stmt *q, int i)
{
	const char *t = (const char *)sqlite3_column_text(q, i);

	return t != NULL ? t : "";
}

cbor_item_t *
sql_column_cbor(sqlite3_stmt *q, int c)
{
	switch (sqlite3_column_type(q, c)) {
	case SQLITE_INTEGER: {
		int64_t v = sqlite3_column_int64(q, c);

		return v >= 0 ? cbor_build_uint64((uint64_t)v) :
		    cbor_build_negint64((uint64_t)(-1 - v));
	}
	case SQLITE_TEXT:
		return cbor_build_stringn((const char *)sqlite3_column_text(q,
		    c), (size_t)sqlite3_column_bytes(q, c));
	case SQLITE_BLOB:
		return cbor_build_bytestring(sqlite3_column_blob(q, c),
		    (size_t)sqlite3_column_bytes(q, c));
	case SQLITE_NULL:
		return cbor_new_null();
	default:
		return NULL;	/* no table holds floats */
	}
}

int
sql_bind_cbor(sqlite3_stmt *q, int i, const cbor_item_t *v)
{
	if (hsm_cbor_is_null(v))
		return sqlite3_bind_null(q, i);
	if (cbor_isa_uint(v))
		return cbor_get_int(v) > INT64_MAX ? SQLITE_RANGE :
		    sqlite3_bind_int64(q, i, (int64_t)cbor_get_int(v));
	if (cbor_isa_negint(v))
		return cbor_get_int(v) > INT64_MAX ? SQLITE_RANGE :
		    sqlite3_bind_int64(q, i, -1 - (int64_t)cbor_get_int(v));
	if (cbor_isa_string(v) && cbor_string_is_definite(v))
		return sqlite3_bind_text(q, i,
		    (const char *)cbor_string_handle(v),
		    (int)cbor_string_length(v), SQLITE_STATIC);
	if (cbor_isa_bytestring(v) && cbor_bytestring_is_definite(v))
		return sqlite3_bind_blob(q, i, cbor_bytestring_handle(v),
		    (int)cbor_bytestring_length(v), SQLITE_STATIC);
	return SQLITE_MISMATCH;
}

bool
list_push(cbor_item_t *list, cbor_item_t **e, bool ok)
{
	ok = ok && *e != NULL && cbor_array_push(list, *e);
	if (*e != NULL)
		cbor_decref(e);
	*e = NULL;
	return ok;
}

int
list_result(cbor_item_t **res, const char *key, cbor_item_t *list, bool done,
    const char *what, hsm_status *st)
{
	if (!done) {
		cbor_decref(&list);
		return hsm_fail(st, "io", "cannot list %s", what);
	}
	if ((*res = cbor_new_indefinite_map()) == NULL) {
		cbor_decref(&list);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	return hsm_map_put(*res, key, list) == 0 ? 0 :
	    hsm_fail(st, "no_memory", "out of memory");
}

/* Every transaction records its changes for replication (repl.c). */
int
tx_begin(struct sess_ctx *s, hsm_status *st)
{
	if (s->group) {
		/* The store may have rolled the batch back (disk full): a
		 * savepoint would then be a transaction of its own. */
		if (sqlite3_get_autocommit(s->db))
			return hsm_fail(st, "io", "the store ended the batch's "
			    "transaction: %s", sqlite3_errmsg(s->db));
		return store_exec(s->db, "SAVEPOINT item", st);
	}
	if (store_exec(s->db, "BEGIN IMMEDIATE", st) != 0)
		return -1;
	if (repl_tx_begin(s, st) != 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

int
tx_commit(struct sess_ctx *s, hsm_status *st)
{
	if (s->group) {
		if (store_exec(s->db, "RELEASE item", st) == 0)
			return 0;
		tx_rollback(s);
		return -1;
	}
	if (repl_tx_precommit(s, st) != 0 ||
	    store_exec(s->db, "COMMIT", st) != 0) {
		tx_rollback(s);
		return -1;
	}
	repl_tx_end(s, true);
	return 0;
}

void
tx_rollback(struct sess_ctx *s)
{
	if (s->group) {
		sqlite3_exec(s->db, "ROLLBACK TO item; RELEASE item", NULL,
		    NULL, NULL);
		return;
	}
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	repl_tx_end(s, false);
}

static int
op_node_info(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "digest", NULL };
	const cbor_item_t *d = hsm_map_get(args, "digest");
	struct node_meta m;
	cbor_item_t *r;
	time_t now = time(NULL);

	if (args_allowed(args, names, st) != 0)
		return -1;
	if (d != NULL && !hsm_cbor_is_bool(d))
		return hsm_fail(st, "bad_request", "argument 'digest' is not "
		    "a boolean");
	if (store_meta(s->db, &m, st) != 0)
		return -1;
	if ((r = cbor_new_indefinite_map()) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (hsm_map_put_str(r, "node", m.node) != 0 ||
	    hsm_map_put_str(r, "cluster", m.cluster) != 0 ||
	    hsm_map_put_str(r, "cluster_id", m.cluster_id) != 0 ||
	    hsm_map_put_str(r, "role", m.role) != 0 ||
	    hsm_map_put_uint(r, "epoch", m.epoch) != 0 ||
	    hsm_map_put_uint(r, "last_seq", m.last_seq) != 0 ||
	    hsm_map_put_str(r, "version", HSMCTL_VERSION) != 0 ||
	    hsm_map_put_uint(r, "uptime",
	    now > s->node->started ? (uint64_t)(now - s->node->started) : 0) ||
	    hsm_map_put_str(r, "host_key", s->node->hostkey_fp) != 0 ||
	    hsm_map_put_bool(r, "sandbox", m.sandbox) != 0 ||
	    hsm_map_put_str(r, "listen", s->node->listen) != 0) {
		cbor_decref(&r);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	if (s->node->cluster_key != NULL) {
		unsigned char raw[32];
		size_t rl = sizeof(raw);
		char hex[65];

		/* The cluster's public identity: backups verify against it. */
		if (EVP_PKEY_get_raw_public_key(s->node->cluster_key, raw,
		    &rl) == 1 && rl == sizeof(raw)) {
			hsm_hex(raw, sizeof(raw), hex);
			if (hsm_map_put_str(r, "cluster_key", hex) != 0) {
				cbor_decref(&r);
				return hsm_fail(st, "no_memory",
				    "out of memory");
			}
		}
	}
	if (repl_info(s, r, d != NULL && cbor_get_bool(d), st) != 0 ||
	    backup_info(s, r, st) != 0) {
		cbor_decref(&r);
		return -1;
	}
	*res = r;
	return 0;
}

/* Every op the node answers; sorted by name. */
#define C OP_CHANGE
#define G OP_GROUP
#define AUTH_OP (OP_BC)
static const struct op ops[] = {
	{ "approval.cancel", 0, true, 0, op_approval_cancel },
	{ "approval.list", 0, false, 0, op_approval_list },
	{ "audit.log", ROLE_ANY, false, 0, op_audit_log },
	{ "audit.verify", ROLE_ANY, false, 0, op_audit_verify },
	{ "auth.challenge", 0, true, AUTH_OP, op_auth_challenge },
	{ "auth.login", 0, true, AUTH_OP, op_auth_login },
	{ "auth.logout", 0, true, AUTH_OP, op_auth_logout },
	{ "auth.user", 0, true, 0, op_auth_user },
	{ "auth.whoami", 0, false, AUTH_OP, op_auth_whoami },
	{ "backup.create", ROLE_GENESIS, false, OP_BC, op_backup_create },
	{ "backup.list", ROLE_GENESIS, false, OP_BC, op_backup_list },
	{ "backup.prune", ROLE_GENESIS, false, OP_BC, op_backup_prune },
	{ "backup.read", ROLE_GENESIS, false, OP_BC, op_backup_read },
	{ "backup.restore", ROLE_GENESIS, true, C, op_backup_restore },
	{ "backup.schedule", ROLE_GENESIS, false, OP_BC, op_backup_schedule },
	{ "backup.show", ROLE_GENESIS, false, OP_BC, op_backup_show },
	{ "backup.upload", ROLE_GENESIS, false, OP_BC, op_backup_upload },
	{ "backup.verify", ROLE_GENESIS, false, OP_BC, op_backup_verify },
	{ "cluster.admit", ROLE_SO, true, C, op_cluster_admit },
	{ "cluster.join", 0, false, OP_JOIN, op_cluster_join },
	{ "cluster.promote", ROLE_SO, false, 0, op_cluster_promote },
	{ "exit.confirm", 0, false, C | OP_EXITSRC, op_exit_confirm },
	{ "exit.delete", ROLE_SO, true, C, op_exit_delete },
	{ "exit.export", ROLE_PSO, false, 0, op_exit_export },
	{ "exit.export_delete", ROLE_PSO, true, C, op_exit_export_delete },
	{ "exit.import", 0, false, C | OP_EXITSRC, op_exit_import },
	{ "exit.migrate", ROLE_PSO, true, C, op_exit_migrate },
	{ "exit.offer", 0, false, C | OP_EXITSRC, op_exit_offer },
	{ "exit.resume", ROLE_SO | ROLE_PSO, true, C, op_exit_resume },
	{ "exit.status", ROLE_SO | ROLE_PSO, false, 0, op_exit_status },
	{ "exit.transfer", ROLE_SO, true, C, op_exit_transfer },
	{ "key.attest", ROLE_SO | ROLE_PSO | ROLE_USER, false, 0,
	    op_key_attest },
	{ "key.delete", ROLE_USER, true, C | G, op_key_delete },
	{ "key.generate", ROLE_USER, true, C, op_key_generate },
	{ "key.list", ROLE_SO | ROLE_PSO | ROLE_USER, false, 0, op_key_list },
	{ "key.purge", ROLE_SO | ROLE_PSO, true, C, op_key_purge },
	{ "key.restore", ROLE_SO | ROLE_PSO, true, C, op_key_restore },
	{ "key.show", ROLE_SO | ROLE_PSO | ROLE_USER, false, G,
	    op_key_show },
	{ "key.sign", ROLE_USER, false, G, op_key_sign },
	{ "node.info", 0, false, OP_BC, op_node_info },
	{ "officer.add", ROLE_GENESIS | ROLE_SO | ROLE_PSO, true, C,
	    op_officer_add },
	{ "officer.list", ROLE_ANY, false, 0, op_officer_list },
	{ "officer.remove", ROLE_GENESIS | ROLE_SO | ROLE_PSO, true, C,
	    op_officer_remove },
	{ "partition.create", ROLE_SO, true, C, op_partition_create },
	{ "partition.delete", ROLE_SO, true, C, op_partition_delete },
	{ "partition.get", ROLE_SO | ROLE_PSO, false, G, op_partition_get },
	{ "partition.list", ROLE_ANY, false, 0, op_partition_list },
	{ "partition.secret", ROLE_SO | ROLE_PSO, true, C,
	    op_partition_secret },
	{ "partition.set", ROLE_SO | ROLE_PSO, true, C | G, op_partition_set },
	{ "partition.show", ROLE_SO | ROLE_PSO, false, G, op_partition_show },
	{ "quorum.set", ROLE_GENESIS | ROLE_SO | ROLE_PSO, true, C,
	    op_quorum_set },
	{ "quorum.show", ROLE_ANY, false, 0, op_quorum_show },
	{ "repl.hello", 0, false, OP_NODE, op_repl_hello },
	{ "repl.pull", 0, false, OP_NODE, op_repl_pull },
	{ "repl.snapshot", 0, false, OP_NODE, op_repl_snapshot },
	{ "repl.vote", 0, false, OP_NODE, op_repl_vote },
};
#undef C
#undef G
#undef AUTH_OP

static const struct op *
op_find(const char *name)
{
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strcmp(ops[i].name, name) == 0)
			return &ops[i];
	return NULL;
}

int
op_approvable(const char *name, const char *role, hsm_status *st)
{
	const struct op *op = op_find(name);

	if (op == NULL)
		return hsm_fail(st, "bad_value", "unknown op '%s'", name);
	if (!op->writes || op->roles == 0 || strncmp(name, "auth.", 5) == 0)
		return hsm_fail(st, "bad_value", "%s changes nothing that needs "
		    "an approval", name);
	if (!(op->roles & role_bit(role)))
		return hsm_fail(st, "bad_value", "the %s role cannot approve %s",
		    role, name);
	return 0;
}

/*
 * The one gate every op passes (cf. OpenSSH sftp-server
 * request_permitted): the role logged in on this session, if still
 * fresh, must be one the op accepts.  Finer rules (whose partition,
 * device-so-access) are the handlers'.
 */
/* A login unused for longer than the idle timeout ends (audited). */
static void
login_expiry(struct sess_ctx *s)
{
	int64_t idle = store_meta_int(s->db, "idle_timeout", 900);

	if (s->role[0] != '\0' && time(NULL) - s->last_use > idle) {
		log_info("%s: %s login of %s expired after %lld s idle",
		    s->peer, s->role, s->officers, (long long)idle);
		audit_record(s, "auth.expire", "", "login expired (idle)");
		s->role[0] = s->partition[0] = s->officers[0] = '\0';
	}
}

static int
op_permitted(struct sess_ctx *s, const struct op *op, hsm_status *st)
{
	time_t now = time(NULL);
	char role[16];

	/* Who is asking: a terminal, a member node, a node asking to join. */
	if (s->kind == SESS_JOINER && !(op->where & OP_JOIN))
		return hsm_fail(st, "not_authorized", "this key may only ask "
		    "to join the cluster");
	if (s->kind == SESS_NODE)
		return (op->where & (OP_NODE | OP_JOIN)) ||
		    strcmp(op->name, "node.info") == 0 ? 0 :
		    hsm_fail(st, "not_authorized", "%s is not for nodes",
		    op->name);
	/* The target's side of an exit: only for the sources its operator
	 * authorised (hsmd authorize --exit-source), and only that. */
	if ((s->kind == SESS_EXITSRC) != ((op->where & OP_EXITSRC) != 0) &&
	    strcmp(op->name, "node.info") != 0)
		return hsm_fail(st, "not_authorized", s->kind == SESS_EXITSRC ?
		    "an exit source may only hand a partition over" :
		    "%s is for exit sources only (hsmd authorize "
		    "--exit-source)", op->name);
	if (s->kind == SESS_TERMINAL && (op->where & (OP_NODE | OP_JOIN)))
		return hsm_fail(st, "not_authorized", "%s is for the nodes of "
		    "the cluster only", op->name);
	/* What this node is: only the master changes; a bc node serves
	 * status (and, with Genesis, backups) only. */
	repl_role(role, sizeof(role));
	if (strcmp(role, NODE_JOINING) == 0 && strcmp(op->name,
	    "node.info") != 0)
		return hsm_fail(st, "node_role", "node %s has not been "
		    "admitted to its cluster yet (hsmctl cluster admit %s, on "
		    "the master)", s->node->name, s->node->name);
	if (strcmp(role, NODE_MASTER) != 0 && !(op->where & OP_BC)) {
		char master[HSM_NAME_MAX + 1];
		struct repl_view v;

		repl_view_get(&v);
		snprintf(master, sizeof(master), "%s", v.master);
		if (strcmp(role, NODE_BC) == 0)
			return hsm_fail(st, "node_role", "node %s is a "
			    "business-continuity node: it serves node info, "
			    "node list, cluster status and, to Genesis, "
			    "backups only", s->node->name);
		if (op->where & OP_CHANGE)
			return hsm_fail(st, "not_master", "node %s is a clone: "
			    "changes go to the master%s%s%s", s->node->name,
			    master[0] ? " (" : "", master, master[0] ? ")" :
			    " (none is reachable: master unavailable)");
	}

	login_expiry(s);
	if (op->roles == 0)
		return 0;
	if (s->role[0] == '\0')
		return hsm_fail(st, "not_authorized", "%s needs a login "
		    "(hsmctl login ROLE)", op->name);
	if (!(op->roles & role_bit(s->role)))
		return hsm_fail(st, "not_authorized", "%s is not permitted to "
		    "the %s role", op->name, s->role);
	/* partition-admin off disables an open PSO session too. */
	if (strcmp(s->role, "pso") == 0 &&
	    partition_admin_on(s->db, s->partition, st) != 0) {
		snprintf(st->code, sizeof(st->code), "not_authorized");
		return -1;
	}
	s->last_use = now;
	return 0;
}

/*
 * A partition on its way out (an exit in progress) changes no more: what
 * the target got is what it holds.  Only the exit itself goes on.
 */
static int
exit_lock_check(struct sess_ctx *s, const struct op *op,
    const cbor_item_t *args, hsm_status *st)
{
	const cbor_item_t *v;
	char part[HSM_NAME_MAX + 1];
	size_t n;

	static const char *const free_ops[] = { "exit.transfer",
	    "exit.migrate", "exit.resume", "exit.offer", "exit.import",
	    "exit.confirm", NULL };

	if (!(op->where & OP_CHANGE))
		return 0;
	for (size_t i = 0; free_ops[i] != NULL; i++)
		if (strcmp(op->name, free_ops[i]) == 0)
			return 0;
	v = hsm_map_get(args, strncmp(op->name, "partition.", 10) == 0 ?
	    "name" : "partition");
	if (v == NULL || !cbor_isa_string(v) || (n = cbor_string_length(v)) ==
	    0 || n >= sizeof(part))
		return 0;
	memcpy(part, cbor_string_handle(v), n);
	part[n] = '\0';
	if (partition_exit_state(s->db, part) == 0)
		return 0;
	return hsm_fail(st, "read_only", "partition %s is leaving the cluster "
	    "(an exit is in progress: hsmctl exit status %s); it changes no "
	    "more", part, part);
}

/* A copy of map without one key (sharing the values). */
static cbor_item_t *
map_without(const cbor_item_t *map, const char *key)
{
	struct cbor_pair *h = cbor_map_handle(map);
	cbor_item_t *out = cbor_new_definite_map(cbor_map_size(map));

	for (size_t i = 0; out != NULL && i < cbor_map_size(map); i++) {
		if (cbor_string_length(h[i].key) == strlen(key) &&
		    memcmp(cbor_string_handle(h[i].key), key,
		    strlen(key)) == 0)
			continue;
		if (!cbor_map_add(out, h[i]))
			cbor_decref(&out);
	}
	return out;
}

/*
 * One op on this session: the gate, the exit lock, the handler.  An
 * approval bound to this one request stands in for a login.
 */
static int
op_dispatch(struct sess_ctx *s, const struct op *op, const cbor_item_t *reqargs,
    cbor_item_t **result, hsm_status *st)
{
	cbor_item_t *args = NULL;
	const cbor_item_t *approval;
	struct sess_ctx saved;
	bool approved = false;
	int r;

	*result = NULL;
	if ((approval = hsm_map_get(reqargs, "approval")) != NULL) {
		if ((args = map_without(reqargs, "approval")) == NULL)
			return hsm_fail(st, "no_memory", "out of memory");
		if (auth_op_approval(s, op->name, args, approval, &saved,
		    st) != 0) {
			cbor_decref(&args);
			return -1;
		}
		approved = true;
	}
	r = op_permitted(s, op, st);
	if (r == 0)
		r = exit_lock_check(s, op, args != NULL ? args : reqargs, st);
	if (r == 0)
		r = op->fn(s, args != NULL ? args : reqargs, result, st);
	if (approved) {
		/* Back to the session's own role (if any). */
		memcpy(s->role, saved.role, sizeof(s->role));
		memcpy(s->partition, saved.partition, sizeof(s->partition));
		memcpy(s->officers, saved.officers, sizeof(s->officers));
		s->last_use = saved.last_use;
	}
	if (args != NULL)
		cbor_decref(&args);
	if (r != 0 && *result != NULL)
		cbor_decref(result);
	return r;
}

/* One entry of a batch's results: {"ok":true,"result":R} or the error. */
static cbor_item_t *
batch_entry(cbor_item_t *result, const hsm_status *st)
{
	cbor_item_t *e = cbor_new_definite_map(2), *err = NULL;
	bool ok = e != NULL;

	if (ok && result != NULL)
		ok = hsm_map_put_bool(e, "ok", true) == 0 &&
		    hsm_map_put(e, "result", cbor_incref(result)) == 0;
	else if (ok)
		ok = hsm_map_put_bool(e, "ok", false) == 0 &&
		    (err = cbor_new_definite_map(2)) != NULL &&
		    hsm_map_put_str(err, "code", st->code) == 0 &&
		    hsm_map_put_str(err, "message", st->message) == 0 &&
		    hsm_map_put(e, "error", cbor_incref(err)) == 0;
	if (err != NULL)
		cbor_decref(&err);
	if (!ok && e != NULL)
		cbor_decref(&e);
	return e;
}

/*
 * batch: {"requests":[{"op":OP,"args":{...}},...], "keep_going":bool}.
 * The requests run in order, as if sent one by one on this session, and
 * stop at the first that fails unless keep_going.  The state-changing
 * ones share one transaction, each in its own savepoint, committed (and
 * so durable, and replicated as one change) before the answer goes
 * out: a failed request leaves nothing behind, and what the answer
 * reports as done is done.  It saves a batch file one round trip and
 * one disk flush per line; only ops marked OP_GROUP take part.
 */
static int
op_batch(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "requests", "keep_going", NULL };
	const cbor_item_t *reqs, *kg;
	const struct op **ops_of = NULL;
	cbor_item_t *results = NULL, **done = NULL;
	bool keep_going = false, writes = false;
	size_t n, ran = 0;
	int r = -1;

	if (args_allowed(args, names, st) != 0)
		return -1;
	if ((reqs = hsm_map_get(args, "requests")) == NULL ||
	    !cbor_isa_array(reqs) || (n = cbor_array_size(reqs)) == 0 ||
	    n > BATCH_ITEMS_MAX)
		return hsm_fail(st, "bad_request", "argument 'requests' is not "
		    "a list of 1 to %d requests", BATCH_ITEMS_MAX);
	if ((kg = hsm_map_get(args, "keep_going")) != NULL) {
		if (!hsm_cbor_is_bool(kg))
			return hsm_fail(st, "bad_request", "argument "
			    "'keep_going' is not a boolean");
		keep_going = cbor_get_bool(kg);
	}
	if ((ops_of = calloc(n, sizeof(*ops_of))) == NULL ||
	    (done = calloc(n, sizeof(*done))) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	/* Every request checked before any runs. */
	for (size_t i = 0; i < n; i++) {
		const cbor_item_t *q = cbor_array_handle(reqs)[i], *o, *a;
		char name[HSM_OP_MAX + 1];
		size_t l;

		if (!cbor_isa_map(q) || cbor_map_size(q) != 2 ||
		    (o = hsm_map_get(q, "op")) == NULL || !cbor_isa_string(o) ||
		    (a = hsm_map_get(q, "args")) == NULL || !cbor_isa_map(a) ||
		    (l = cbor_string_length(o)) == 0 || l > HSM_OP_MAX) {
			hsm_fail(st, "bad_request", "request %zu of the batch "
			    "is not {op, args}", i + 1);
			goto out;
		}
		memcpy(name, cbor_string_handle(o), l);
		name[l] = '\0';
		if ((ops_of[i] = op_find(name)) == NULL ||
		    !(ops_of[i]->where & OP_GROUP) ||
		    hsm_map_get(a, "approval") != NULL) {
			hsm_fail(st, "bad_request", "request %zu of the batch: "
			    "%.64s cannot be batched", i + 1, name);
			goto out;
		}
		writes = writes || ops_of[i]->writes;
	}
	/*
	 * An idle login ends here, its audit entry committed on its own as
	 * for a single request, not inside the batch's transaction.
	 */
	login_expiry(s);
	if (writes) {
		if (tx_begin(s, st) != 0)
			goto out;
		s->group = true;
	}
	for (ran = 0; ran < n; ran++) {
		const cbor_item_t *a = hsm_map_get(cbor_array_handle(reqs)[ran],
		    "args");
		hsm_status ist;

		hsm_status_clear(&ist);
		if (op_dispatch(s, ops_of[ran], a, &done[ran], &ist) != 0) {
			log_info("%s: batch: %s: %s: %s", s->peer,
			    ops_of[ran]->name, ist.code, ist.message);
			/* An error entry: done[ran] stays NULL. */
			if ((done[ran] = batch_entry(NULL, &ist)) == NULL) {
				hsm_fail(st, "no_memory", "out of memory");
				goto rollback;
			}
			if (!keep_going) {
				ran++;
				break;
			}
			continue;
		}
		if (done[ran] == NULL &&
		    (done[ran] = cbor_new_definite_map(0)) == NULL) {
			hsm_fail(st, "no_memory", "out of memory");
			goto rollback;
		}
		{
			cbor_item_t *e = batch_entry(done[ran], NULL);

			cbor_decref(&done[ran]);
			if ((done[ran] = e) == NULL) {
				hsm_fail(st, "no_memory", "out of memory");
				goto rollback;
			}
		}
	}
	if (writes) {
		s->group = false;
		repl_tx_keep_audit(s);
		/* Nothing is reported done that is not committed. */
		if (tx_commit(s, st) != 0)
			goto out;
	}
	if ((results = cbor_new_definite_array(ran)) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	for (size_t i = 0; i < ran; i++)
		if (!cbor_array_push(results, done[i])) {
			hsm_fail(st, "no_memory", "out of memory");
			goto out;
		}
	if ((*res = cbor_new_definite_map(1)) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (hsm_map_put(*res, "results", results) != 0) {
		results = NULL;
		cbor_decref(res);
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	results = NULL;
	r = 0;
	goto out;
rollback:
	if (writes) {
		s->group = false;
		tx_rollback(s);
	}
out:
	s->group = false;
	if (results != NULL)
		cbor_decref(&results);
	for (size_t i = 0; done != NULL && i < n; i++)
		if (done[i] != NULL)
			cbor_decref(&done[i]);
	free(done);
	free(ops_of);
	return r;
}

int
ops_handle(struct sess_ctx *s, const unsigned char *payload, size_t len,
    unsigned char **out, size_t *outlen)
{
	struct hsm_request req;
	const struct op *op;
	cbor_item_t *result = NULL;
	hsm_status st;
	int r;

	hsm_status_clear(&st);
	if (hsm_request_decode(payload, len, &req, &st) != 0) {
		log_info("%s: rejected request: %s", s->peer, st.message);
		goto error;
	}
	if (strcmp(req.op, "batch") == 0)
		r = s->kind == SESS_TERMINAL ? op_batch(s, req.args, &result,
		    &st) : hsm_fail(&st, "not_authorized", "batch is for "
		    "terminals only");
	else if ((op = op_find(req.op)) == NULL) {
		hsm_fail(&st, "unknown_op", "unknown op '%s'", req.op);
		log_info("%s: %s", s->peer, st.message);
		goto error;
	} else
		r = op_dispatch(s, op, req.args, &result, &st);
	if (r != 0) {
		if (result != NULL)
			cbor_decref(&result);
		log_info("%s: %s: %s: %s", s->peer, req.op, st.code,
		    st.message);
		goto error;
	}
	log_debug("%s: %s ok", s->peer, req.op);
	r = hsm_response_encode_ok(req.id, result, out, outlen, &st);
	if (result != NULL)
		cbor_decref(&result);
	hsm_request_clear(&req);
	if (r == 0)
		return 0;
error:
	r = hsm_response_encode_error(req.id, st.code, st.message, out, outlen,
	    NULL);
	hsm_request_clear(&req);
	return r;
}
