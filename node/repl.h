/*
 * Replication of the cluster's state (DESIGN §7).
 *
 * Every write transaction records an SQLite session changeset of the
 * replicated tables; on the master a non-empty one gets the next sequence
 * number and goes into the replication log in the same transaction.
 * Replicas pull the log in order and apply each entry in one transaction
 * with its sequence number; a replica too far behind, or one whose log
 * forked from the master's, gets a snapshot instead.
 */
#ifndef HSMD_REPL_H
#define HSMD_REPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "ops.h"

/* Node roles, as kept in meta "role". */
#define NODE_MASTER "master"
#define NODE_CLONE "clone"
#define NODE_BC "bc"
#define NODE_JOINING "joining"

/* The replicated tables, in snapshot order. */
extern const char *const repl_tables[];

/* This process's copy of its role (the store's is authoritative). */
void repl_role(char *out, size_t len);
void repl_set_role(const char *role);

/* Hooks of tx_begin, tx_commit (before COMMIT) and after either end. */
int repl_tx_begin(struct sess_ctx *s, hsm_status *st);
int repl_tx_precommit(struct sess_ctx *s, hsm_status *st);
/*
 * The open transaction's audit entries go to the replicas even if its
 * changes cancel out (a batch op's): no change is logged without them.
 */
void repl_tx_keep_audit(struct sess_ctx *s);
void repl_tx_end(struct sess_ctx *s, bool committed);
/*
 * A restore replaced state without a changeset: log the point (with the
 * audit entries after audit_mark) where the replicas take a snapshot.
 * Inside the caller's write transaction; repl_notify() after COMMIT.
 */
int repl_log_resync(struct sess_ctx *s, int64_t audit_mark, hsm_status *st);
void repl_notify(void);
/* A session ends: drop a snapshot it was reading. */
void repl_session_end(struct sess_ctx *s);

/* Applying on a replica (peer.c). */
int repl_apply(sqlite3 *db, const cbor_item_t *entry, hsm_status *st);
/* A list of entries, in one transaction. */
int repl_apply_list(sqlite3 *db, const cbor_item_t *entries, hsm_status *st);
int repl_snapshot_apply_begin(sqlite3 *db, hsm_status *st);
int repl_snapshot_apply_page(sqlite3 *db, const cbor_item_t *page,
    hsm_status *st);
int repl_snapshot_apply_end(sqlite3 *db, uint64_t seq, uint64_t epoch,
    const char *from, hsm_status *st);
/* Set meta keys (NULL-terminated key, value pairs) in one transaction. */
int repl_meta_update(sqlite3 *db, const char *const *kv, hsm_status *st);

/* SHA-256 over the replicated tables, hex. */
int repl_digest(sqlite3 *db, char out[65], hsm_status *st);

/* What a replica knows of its master; kept by peer.c. */
struct repl_view {
	char master[HSM_NAME_MAX + 1];
	uint64_t master_seq;	/* the master's last_seq at the last pull */
	uint64_t master_epoch;
	int64_t synced_ms;	/* when this node last held all of it */
	int64_t contact_ms;	/* the master's last answer */
	bool connected;
	char error[200];	/* the last replication problem */
};
void repl_view_get(struct repl_view *v);
void repl_view_set(const struct repl_view *v);
int64_t repl_now_ms(void);

/* node.info: role, epoch, sequence, lag, members, peers. */
int repl_info(struct sess_ctx *s, cbor_item_t *r, bool digest,
    hsm_status *st);

int op_repl_pull(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_repl_snapshot(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_repl_hello(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_repl_vote(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);

#endif
