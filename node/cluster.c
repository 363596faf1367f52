/*
 * Cluster membership and mastership: cluster.join (a new node asks),
 * cluster.admit (an SO quorum on the master lets it in), cluster.promote
 * (an SO quorum makes a clone the master under a new epoch).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "audit.h"
#include "backup.h"
#include "cluster.h"
#include "fsutil.h"
#include "log.h"
#include "nodedir.h"
#include "peer.h"
#include "repl.h"
#include "store.h"

#define JOIN_PENDING_MAX 16
#define CATCHUP_MS 10000

static uint64_t
meta_u64(sqlite3 *db, const char *key)
{
	int64_t v = store_meta_int(db, key, 0);

	return v > 0 ? (uint64_t)v : 0;
}

static int
read_secret(const struct node_ctx *n, const char *file, unsigned char *out,
    size_t want, hsm_status *st)
{
	char path[4096], *buf = NULL;
	size_t len = 0;
	int r = -1;

	if (fs_path(path, sizeof(path), n->dir, file, st) != 0 ||
	    fs_read(path, 64, &buf, &len, st) != 0)
		return -1;
	if (len != want)
		hsm_fail(st, "io", "%s is not a %zu-byte key", path, want);
	else {
		memcpy(out, buf, want);
		r = 0;
	}
	OPENSSL_cleanse(buf, len);
	free(buf);
	return r;
}

/* The admission: the cluster's identity and secrets, to a member only. */
static int
admission(struct sess_ctx *s, cbor_item_t *r, hsm_status *st)
{
	unsigned char bkey[32], *pem = NULL;
	size_t pemlen = 0;
	struct node_meta m;
	int rc;

	if (store_meta(s->db, &m, st) != 0 ||
	    read_secret(s->node, BACKUP_KEY_FILE, bkey, sizeof(bkey), st) != 0)
		return -1;
	if (backup_cluster_key_pem(s->node, &pem, &pemlen, st) != 0) {
		OPENSSL_cleanse(bkey, sizeof(bkey));
		return -1;
	}
	rc = hsm_map_put_str(r, "status", "admitted") != 0 ||
	    hsm_map_put_str(r, "cluster", m.cluster) != 0 ||
	    hsm_map_put_str(r, "cluster_id", m.cluster_id) != 0 ||
	    hsm_map_put_bool(r, "sandbox", m.sandbox) != 0 ||
	    hsm_map_put_uint(r, "epoch", m.epoch) != 0 ||
	    hsm_map_put(r, "master_key", cbor_build_bytestring(
	    s->node->master_key, sizeof(s->node->master_key))) != 0 ||
	    hsm_map_put(r, "backup_key", cbor_build_bytestring(bkey,
	    sizeof(bkey))) != 0 ||
	    hsm_map_put(r, "cluster_key", cbor_build_bytestring(pem,
	    pemlen)) != 0;
	OPENSSL_cleanse(bkey, sizeof(bkey));
	OPENSSL_cleanse(pem, pemlen);
	free(pem);
	return rc ? hsm_fail(st, "no_memory", "out of memory") : 0;
}

int
op_cluster_join(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "name", "role", "addr", NULL };
	char name[HSM_NAME_MAX + 1], role[16], addr[300], hk[64], role_now[16];
	sqlite3_stmt *q = NULL;
	cbor_item_t *r = NULL;

	if (args_allowed(args, names, st) != 0 ||
	    arg_text(args, "name", name, sizeof(name), true, st) < 0 ||
	    arg_text(args, "role", role, sizeof(role), true, st) < 0 ||
	    arg_text(args, "addr", addr, sizeof(addr), true, st) < 0)
		return -1;
	if (!name_ok(name))
		return hsm_fail(st, "bad_value", "invalid node name '%s'", name);
	if (strcmp(role, NODE_CLONE) != 0 && strcmp(role, NODE_BC) != 0)
		return hsm_fail(st, "bad_value", "a node joins as clone or bc, "
		    "not '%s'", role);
	store_meta_text(s->db, "role", role_now, sizeof(role_now));
	if (strcmp(role_now, NODE_MASTER) != 0)
		return hsm_fail(st, "not_master", "node %s is not the master: "
		    "join through the master", s->node->name);
	if ((r = cbor_new_indefinite_map()) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (s->kind == SESS_NODE) {
		/* Admitted: its key is a member's.  Only its own name. */
		if (strcmp(s->peer_node, name) != 0) {
			cbor_decref(&r);
			return hsm_fail(st, "not_authorized", "member %s cannot "
			    "join as %s", s->peer_node, name);
		}
		if (admission(s, r, st) != 0) {
			cbor_decref(&r);
			return -1;
		}
		log_info("%s: node %s fetched its admission", s->peer, name);
		*res = r;
		return 0;
	}
	if (tx_begin(s, st) != 0) {
		cbor_decref(&r);
		return -1;
	}
	if (sqlite3_prepare_v2(s->db, "SELECT (SELECT count(*) FROM nodes "
	    "WHERE name = ?1), (SELECT host_key FROM join_requests WHERE "
	    "name = ?1), (SELECT count(*) FROM join_requests)", -1, &q,
	    NULL) != SQLITE_OK)
		goto io;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_ROW)
		goto io;
	snprintf(hk, sizeof(hk), "%s", sql_text(q, 1));
	if (sqlite3_column_int(q, 0) > 0) {
		hsm_fail(st, "conflict", "cluster already has a node named %s",
		    name);
		goto fail;
	}
	if (hk[0] != '\0' && strcmp(hk, s->peer_fp) != 0) {
		hsm_fail(st, "conflict", "another key (%s) already asked to "
		    "join as %s", hk, name);
		goto fail;
	}
	if (hk[0] == '\0' && sqlite3_column_int(q, 2) >= JOIN_PENDING_MAX) {
		hsm_fail(st, "quota", "too many pending join requests");
		goto fail;
	}
	sqlite3_finalize(q);
	q = NULL;
	if (sqlite3_prepare_v2(s->db, "INSERT INTO join_requests (name, role, "
	    "addr, host_key, pubkey, requested) VALUES (?1, ?2, ?3, ?4, ?5, "
	    "?6) ON CONFLICT (name) DO UPDATE SET role = ?2, addr = ?3", -1,
	    &q, NULL) != SQLITE_OK)
		goto io;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, role, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, addr, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, s->peer_fp, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 5, s->peer_key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 6, (int64_t)time(NULL));
	if (sqlite3_step(q) != SQLITE_DONE)
		goto io;
	sqlite3_finalize(q);
	q = NULL;
	if (hk[0] == '\0') {
		char what[200];

		snprintf(what, sizeof(what), "node=%s role=%s key=%s", name,
		    role, s->peer_fp);
		if (audit_append(s, "", "cluster.join", what, "pending",
		    st) != 0)
			goto fail;
		log_info("%s: node %s (%s) asks to join as %s", s->peer, name,
		    s->peer_fp, role);
	}
	if (tx_commit(s, st) != 0)
		goto fail2;
	if (hsm_map_put_str(r, "status", "pending") != 0 ||
	    hsm_map_put_str(r, "host_key", s->peer_fp) != 0) {
		cbor_decref(&r);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	*res = r;
	return 0;
io:
	hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
fail:
	tx_rollback(s);
fail2:
	sqlite3_finalize(q);
	cbor_decref(&r);
	return -1;
}

int
op_cluster_admit(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "node", "host_key", NULL };
	char name[HSM_NAME_MAX + 1], want[64] = "", role[16], hk[64];
	char what[256];
	sqlite3_stmt *q = NULL;
	cbor_item_t *r = NULL;
	int rc;

	if (args_allowed(args, names, st) != 0 ||
	    arg_text(args, "node", name, sizeof(name), true, st) < 0 ||
	    arg_text(args, "host_key", want, sizeof(want), false, st) < 0)
		return -1;
	if (tx_begin(s, st) != 0)
		return -1;
	if (sqlite3_prepare_v2(s->db, "SELECT role, host_key FROM "
	    "join_requests WHERE name = ?1", -1, &q, NULL) != SQLITE_OK)
		goto io;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(q)) != SQLITE_ROW) {
		if (rc != SQLITE_DONE)
			goto io;
		hsm_fail(st, "not_found", "no join request from node %s "
		    "(run hsmd init --join and start that node first)", name);
		goto fail;
	}
	snprintf(role, sizeof(role), "%s", sql_text(q, 0));
	snprintf(hk, sizeof(hk), "%s", sql_text(q, 1));
	sqlite3_finalize(q);
	q = NULL;
	if (want[0] != '\0' && strcmp(want, hk) != 0) {
		hsm_fail(st, "conflict", "node %s asked to join with host key "
		    "%s, not %s", name, hk, want);
		goto fail;
	}
	if (sqlite3_prepare_v2(s->db, "INSERT INTO nodes (name, role, addr, "
	    "host_key, pubkey, added) SELECT name, role, addr, host_key, "
	    "pubkey, ?2 FROM join_requests WHERE name = ?1", -1, &q, NULL) !=
	    SQLITE_OK)
		goto io;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, (int64_t)time(NULL));
	if (sqlite3_step(q) != SQLITE_DONE)
		goto io;
	sqlite3_finalize(q);
	q = NULL;
	if (sqlite3_prepare_v2(s->db, "DELETE FROM join_requests WHERE name = "
	    "?1", -1, &q, NULL) != SQLITE_OK)
		goto io;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_DONE)
		goto io;
	sqlite3_finalize(q);
	q = NULL;
	snprintf(what, sizeof(what), "node=%s role=%s key=%s", name, role, hk);
	if (audit_append(s, "", "cluster.admit", what, "ok", st) != 0 ||
	    tx_commit(s, st) != 0)
		goto fail;
	log_info("%s: node %s admitted as %s by %s", s->peer, name, role,
	    s->officers);
	if ((r = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(r, "node", name) != 0 ||
	    hsm_map_put_str(r, "role", role) != 0 ||
	    hsm_map_put_str(r, "host_key", hk) != 0) {
		if (r != NULL)
			cbor_decref(&r);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	*res = r;
	return 0;
io:
	hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
fail:
	sqlite3_finalize(q);
	tx_rollback(s);
	return -1;
}

struct ballot {
	uint64_t epoch;
	unsigned votes, of;
	char refusals[HSM_MSG_MAX / 2];
	const struct member *handover;	/* the old master, if it granted */
	uint64_t handover_seq;
};

static void
note(struct ballot *b, const char *who, const char *why)
{
	size_t k = strlen(b->refusals);

	snprintf(b->refusals + k, sizeof(b->refusals) - k, "%s%s: %s",
	    k ? "; " : "", who, why);
}

static void
ask_vote(struct sess_ctx *s, const struct member *m, struct ballot *b)
{
	struct hsm_conn *c = NULL;
	cbor_item_t *a = NULL, *r = NULL;
	const cbor_item_t *v;
	hsm_status st;

	hsm_status_clear(&st);
	if (peer_connect(s->node, m->addr, m->host_key, 2000, &c, &st) != 0) {
		note(b, m->name, "unreachable");
		return;
	}
	if ((a = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_uint(a, "epoch", b->epoch) != 0 ||
	    hsm_map_put_str(a, "candidate", s->node->name) != 0 ||
	    hsm_map_put_uint(a, "last_seq", meta_u64(s->db, "last_seq")) != 0 ||
	    hsm_map_put_uint(a, "last_epoch", meta_u64(s->db,
	    "last_epoch")) != 0 ||
	    hsm_call(c, "repl.vote", a, &r, &st) != 0 || !cbor_isa_map(r) ||
	    (v = hsm_map_get(r, "granted")) == NULL || !hsm_cbor_is_bool(v)) {
		note(b, m->name, st.message[0] ? st.message : "no answer");
		goto out;
	}
	if (!cbor_get_bool(v)) {
		char why[200] = "refused";

		v = hsm_map_get(r, "reason");
		if (v != NULL && cbor_isa_string(v) && cbor_string_length(v) <
		    sizeof(why)) {
			memcpy(why, cbor_string_handle(v), cbor_string_length(v));
			why[cbor_string_length(v)] = '\0';
		}
		note(b, m->name, why);
		goto out;
	}
	b->votes++;
	v = hsm_map_get(r, "was_master");
	if (v != NULL && hsm_cbor_is_bool(v) && cbor_get_bool(v)) {
		b->handover = m;
		v = hsm_map_get(r, "last_seq");
		b->handover_seq = v != NULL && cbor_isa_uint(v) ?
		    cbor_get_int(v) : 0;
	}
out:
	if (a != NULL)
		cbor_decref(&a);
	if (r != NULL)
		cbor_decref(&r);
	hsm_conn_close(&c);
}

/* Take the old master's last changes before taking over from it. */
static int
catch_up(struct sess_ctx *s, const struct ballot *b, hsm_status *st)
{
	struct hsm_conn *c = NULL;
	sqlite3 *db = NULL;
	int r = -1;

	if (b->handover == NULL || meta_u64(s->db, "last_seq") >=
	    b->handover_seq)
		return 0;
	if (peer_connect(s->node, b->handover->addr, b->handover->host_key,
	    CATCHUP_MS, &c, st) != 0)
		return -1;
	/* Its own handle: replicated changes skip foreign-key actions. */
	if (store_open(s->node->dir, false, &db, st) != 0)
		goto out;
	sqlite3_exec(db, "PRAGMA foreign_keys=OFF", NULL, NULL, NULL);
	r = peer_sync(s->node, db, c, b->handover_seq, 0, 0, NULL, st);
out:
	store_close(&db);
	hsm_conn_close(&c);
	return r;
}

static int
exec_text(sqlite3 *db, const char *sql, const char *a, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	int r = 0;

	if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(q, 1, a, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(q) != SQLITE_DONE)
		r = hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_finalize(q);
	return r;
}

int
op_cluster_promote(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "node", NULL };
	char name[HSM_NAME_MAX + 1], role[16], num[32], what[HSM_MSG_MAX];
	struct member *m = NULL;
	struct ballot b;
	size_t cnt = 0;
	cbor_item_t *r = NULL;
	uint64_t voted;

	memset(&b, 0, sizeof(b));
	if (args_allowed(args, names, st) != 0 ||
	    arg_text(args, "node", name, sizeof(name), true, st) < 0)
		return -1;
	if (strcmp(name, s->node->name) != 0)
		return hsm_fail(st, "bad_value", "this is node %s: promote "
		    "is sent to the node to promote (hsmctl -n %s cluster "
		    "promote %s)", s->node->name, name, name);
	store_meta_text(s->db, "role", role, sizeof(role));
	if (strcmp(role, NODE_CLONE) != 0)
		return hsm_fail(st, "conflict", "node %s is %s %s; only a "
		    "clone can be promoted", name, strcmp(role, NODE_MASTER) ==
		    0 ? "already the" : "a", role);
	/* Vote for ourselves first, durably: one candidate per epoch. */
	b.epoch = meta_u64(s->db, "epoch");
	voted = meta_u64(s->db, "voted_epoch");
	b.epoch = (voted > b.epoch ? voted : b.epoch) + 1;
	snprintf(num, sizeof(num), "%" PRIu64, b.epoch);
	{
		const char *kv[] = { "voted_epoch", num, "voted_for", name,
		    NULL };

		if (repl_meta_update(s->db, kv, st) != 0)
			return -1;
	}
	if (peer_members(s->db, name, &m, &cnt, st) != 0)
		return -1;
	b.votes = 1;
	b.of = (unsigned)cnt + 1;
	for (size_t i = 0; i < cnt; i++)
		ask_vote(s, &m[i], &b);
	if (b.votes < b.of / 2 + 1) {
		hsm_fail(st, "conflict", "%s not promoted: %u of %u votes for "
		    "epoch %" PRIu64 ", a majority is %u (%s)", name, b.votes,
		    b.of, b.epoch, b.of / 2 + 1, b.refusals);
		snprintf(what, sizeof(what), "epoch=%" PRIu64 " votes=%u/%u",
		    b.epoch, b.votes, b.of);
		audit_record(s, "cluster.promote", what, "refused");
		free(m);
		return -1;
	}
	if (catch_up(s, &b, st) != 0) {
		char why[HSM_MSG_MAX / 2];

		snprintf(why, sizeof(why), "%.*s", (int)sizeof(why) - 1,
		    st->message);
		hsm_fail(st, "conflict", "%s not promoted: cannot take the last "
		    "changes of the old master %s: %s", name, b.handover->name,
		    why);
		free(m);
		return -1;
	}
	free(m);
	if (tx_begin(s, st) != 0)
		return -1;
	store_meta_text(s->db, "role", role, sizeof(role));
	if (strcmp(role, NODE_CLONE) != 0 || meta_u64(s->db, "epoch") >=
	    b.epoch) {
		hsm_fail(st, "conflict", "%s not promoted: it learnt of a newer "
		    "master meanwhile", name);
		tx_rollback(s);
		return -1;
	}
	snprintf(what, sizeof(what), "epoch=%" PRIu64 " votes=%u/%u%s%s",
	    b.epoch, b.votes, b.of, b.refusals[0] ? " " : "", b.refusals);
	if (store_meta_set(s->db, "epoch", num, st) != 0 ||
	    store_meta_set(s->db, "role", NODE_MASTER, st) != 0 ||
	    exec_text(s->db, "UPDATE nodes SET role = 'clone' WHERE role = "
	    "'master' AND name != ?1", name, st) != 0 ||
	    exec_text(s->db, "UPDATE nodes SET role = 'master' WHERE name = "
	    "?1", name, st) != 0 ||
	    audit_append(s, "", "cluster.promote", what, "ok", st) != 0 ||
	    tx_commit(s, st) != 0) {
		tx_rollback(s);
		return -1;
	}
	repl_set_role(NODE_MASTER);
	log_warn("promoted to master of epoch %" PRIu64 " by %s (%u of %u "
	    "votes)", b.epoch, s->officers, b.votes, b.of);
	if ((r = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(r, "node", name) != 0 ||
	    hsm_map_put_uint(r, "epoch", b.epoch) != 0 ||
	    hsm_map_put_uint(r, "votes", b.votes) != 0 ||
	    hsm_map_put_uint(r, "nodes", b.of) != 0 ||
	    hsm_map_put_str(r, "refusals", b.refusals) != 0) {
		if (r != NULL)
			cbor_decref(&r);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	*res = r;
	return 0;
}
