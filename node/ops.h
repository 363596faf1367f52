/* The node's op table and its single permission gate. */
#ifndef HSMD_OPS_H
#define HSMD_OPS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <sqlite3.h>

#include "hsmctl.h"

/* Shared by every session; read-only once the server runs. */
struct node_ctx {
	const char *dir;
	char hostkey_fp[64];
	time_t started;
	char name[HSM_NAME_MAX + 1];
	char cluster[HSM_NAME_MAX + 1];
	char cluster_id[33];
	bool sandbox;
	unsigned char master_key[32];	/* wiped at shutdown */
	/* A joining node learns the cluster's master key when admitted. */
	_Atomic bool master_key_ready;
	char listen[300];	/* HOST:PORT this node serves on */
	struct evp_pkey_st *attest;	/* Ed25519 attestation key */
	/* The cluster's: backup encryption and signing (backup.c). */
	unsigned char backup_key[32];	/* wiped at shutdown */
	struct evp_pkey_st *cluster_key;	/* Ed25519 */
};

/* Who is at the other end of an SSH session. */
enum sess_kind {
	SESS_TERMINAL,		/* an authorised terminal key */
	SESS_NODE,		/* a member node of the cluster */
	SESS_JOINER,		/* an unknown key: may only ask to join */
	SESS_EXITSRC,		/* a node of another cluster handing over a
				 * partition (hsmd authorize --exit-source) */
};

struct repl_tx;
struct snap_cursor;

/* One SSH session of one terminal, and the role logged in on it. */
struct sess_ctx {
	const struct node_ctx *node;
	sqlite3 *db;
	enum sess_kind kind;
	char peer_key[160];	/* "ssh-ed25519 BASE64" of the client key */
	char peer_fp[64];	/* its fingerprint */
	char peer_node[HSM_NAME_MAX + 1];	/* a member's name */
	struct repl_tx *tx;	/* the changeset of the open transaction */
	struct snap_cursor *snap;	/* a snapshot being served */
	struct upload *upload;	/* a backup being uploaded */
	struct key_cache *keyc;	/* the last key this session signed with */
	char peer[64];		/* "ADDR:PORT" of the client */
	char term_fp[64];	/* terminal key fingerprint */
	char id[17];		/* random, names the session in the audit log */
	char role[16];		/* "genesis", "so", "pso" or "" */
	char partition[HSM_NAME_MAX + 1];	/* of a pso login */
	char officers[512];	/* who approved the login, "a,b" */
	char api[16];		/* technical user: the API declared */
	unsigned char secret_hash[32];	/* of the secret it logged in with */
	time_t login_time;
	time_t last_use;	/* for the idle timeout */
	bool group;		/* inside a batch op's one transaction */
};

/* Role bits for the gate. */
#define ROLE_GENESIS 0x1
#define ROLE_SO 0x2
#define ROLE_PSO 0x4
#define ROLE_USER 0x8		/* the technical user of a partition */
#define ROLE_ANY (ROLE_GENESIS | ROLE_SO | ROLE_PSO)

/*
 * Typed access to request arguments: 0 found, 1 absent (when not
 * required), -1 wrong type, too long or missing (st filled).
 */
int arg_text(const cbor_item_t *args, const char *key, char *buf,
    size_t len, bool required, hsm_status *st);
int arg_uint(const cbor_item_t *args, const char *key, uint64_t *v,
    bool required, hsm_status *st);
int arg_bytes(const cbor_item_t *args, const char *key,
    const unsigned char **p, size_t *len, bool required, hsm_status *st);
/* Refuse arguments an op does not know: a typo must not pass silently. */
int args_allowed(const cbor_item_t *args, const char *const *names,
    hsm_status *st);
int role_bit(const char *role);
bool name_ok(const char *s);

/* May role approve op (a state-changing op that role may run)? */
int op_approvable(const char *op, const char *role, hsm_status *st);

/* A column of the current row as CBOR (rows copied whole: snapshots,
 * backups), and back: a CBOR value bound to a parameter. */
cbor_item_t *sql_column_cbor(sqlite3_stmt *q, int c);
int sql_bind_cbor(sqlite3_stmt *q, int i, const cbor_item_t *v);
/* A text column of the current row, "" for NULL. */
const char *sql_text(sqlite3_stmt *q, int i);

/*
 * Listing ops: push one row map (consumed, pushed only if ok); then the
 * result {key: list} (list consumed) when the query ran to its end.
 */
bool list_push(cbor_item_t *list, cbor_item_t **e, bool ok);
int list_result(cbor_item_t **res, const char *key, cbor_item_t *list,
    bool done, const char *what, hsm_status *st);

/*
 * Begin/commit a write transaction; rollback on any failure.  Inside a
 * batch op (s->group) they are a savepoint of the batch's transaction.
 */
int tx_begin(struct sess_ctx *s, hsm_status *st);
int tx_commit(struct sess_ctx *s, hsm_status *st);
void tx_rollback(struct sess_ctx *s);

/*
 * Answer one request frame payload with one response frame.  Every
 * failure, malformed input included, becomes an error response; -1 only
 * when not even that can be encoded.
 */
int ops_handle(struct sess_ctx *s, const unsigned char *payload, size_t len,
    unsigned char **out, size_t *outlen);

#endif
