/* Replication: capture, log, apply, snapshots (see repl.h). */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "audit.h"
#include "log.h"
#include "repl.h"
#include "store.h"

#define PULL_MAX_ENTRIES 512
#define PULL_MAX_BYTES (4u * 1024 * 1024)
#define PULL_WAIT_MAX_MS 5000
#define SNAP_PAGE_BYTES (2u * 1024 * 1024)
#define SNAP_PAGE_ROWS 4096
#define RETAIN_DEFAULT 50000
#define PEERS_MAX 32

const char *const repl_tables[] = {
	"nodes", "officers", "quorums", "partitions", "partition_params",
	"objects", NULL,
};

struct repl_tx {
	sqlite3_session *sess;
	int64_t audit_mark;	/* audit entries after this one are ours */
	uint64_t seq;		/* assigned at precommit, 0 if none */
	bool audit_only;	/* log its audit entries even with no change */
};

struct snap_cursor {
	sqlite3_stmt *q;
	size_t table;
	uint64_t seq, epoch;
};

struct peer_stat {
	char name[HSM_NAME_MAX + 1];
	uint64_t seq;
	int64_t seen_ms;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t committed_cv = PTHREAD_COND_INITIALIZER;
static uint64_t commit_count;	/* bumped on every replicated commit */
static char role_cache[16] = NODE_MASTER;
static struct repl_view view;
static struct peer_stat peers[PEERS_MAX];

int64_t
repl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
repl_role(char *out, size_t len)
{
	pthread_mutex_lock(&mu);
	snprintf(out, len, "%s", role_cache);
	pthread_mutex_unlock(&mu);
}

void
repl_set_role(const char *role)
{
	pthread_mutex_lock(&mu);
	snprintf(role_cache, sizeof(role_cache), "%s", role);
	/* Wake long polls: a demoted master must stop serving as one. */
	commit_count++;
	pthread_cond_broadcast(&committed_cv);
	pthread_mutex_unlock(&mu);
}

void
repl_view_get(struct repl_view *v)
{
	pthread_mutex_lock(&mu);
	*v = view;
	pthread_mutex_unlock(&mu);
}

void
repl_view_set(const struct repl_view *v)
{
	pthread_mutex_lock(&mu);
	view = *v;
	pthread_mutex_unlock(&mu);
}

static void
peer_seen(const char *name, uint64_t seq)
{
	size_t i, free_slot = PEERS_MAX, oldest = 0;

	pthread_mutex_lock(&mu);
	for (i = 0; i < PEERS_MAX; i++) {
		if (strcmp(peers[i].name, name) == 0)
			break;
		if (peers[i].name[0] == '\0' && free_slot == PEERS_MAX)
			free_slot = i;
		if (peers[i].seen_ms < peers[oldest].seen_ms)
			oldest = i;
	}
	if (i == PEERS_MAX)
		i = free_slot < PEERS_MAX ? free_slot : oldest;
	snprintf(peers[i].name, sizeof(peers[i].name), "%s", name);
	peers[i].seq = seq;
	peers[i].seen_ms = repl_now_ms();
	pthread_mutex_unlock(&mu);
}

static bool
peer_get(const char *name, struct peer_stat *out)
{
	bool found = false;

	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < PEERS_MAX && !found; i++)
		if (peers[i].name[0] != '\0' && strcmp(peers[i].name,
		    name) == 0) {
			*out = peers[i];
			found = true;
		}
	pthread_mutex_unlock(&mu);
	return found;
}

static int
table_filter(void *ctx, const char *table)
{
	(void)ctx;
	for (size_t i = 0; repl_tables[i] != NULL; i++)
		if (strcmp(repl_tables[i], table) == 0)
			return 1;
	return 0;
}

static uint64_t
meta_u64(sqlite3 *db, const char *key)
{
	int64_t v = store_meta_int(db, key, 0);

	return v > 0 ? (uint64_t)v : 0;
}

static int
meta_set_u64(sqlite3 *db, const char *key, uint64_t v, hsm_status *st)
{
	char num[32];

	snprintf(num, sizeof(num), "%" PRIu64, v);
	return store_meta_set(db, key, num, st);
}

int
repl_tx_begin(struct sess_ctx *s, hsm_status *st)
{
	struct repl_tx *t;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (sqlite3session_create(s->db, "main", &t->sess) != SQLITE_OK) {
		free(t);
		return hsm_fail(st, "internal", "cannot record changes: %s",
		    sqlite3_errmsg(s->db));
	}
	sqlite3session_table_filter(t->sess, table_filter, NULL);
	if (sqlite3session_attach(t->sess, NULL) != SQLITE_OK) {
		sqlite3session_delete(t->sess);
		free(t);
		return hsm_fail(st, "internal", "cannot record changes");
	}
	t->audit_mark = store_meta_int(s->db, "audit_count", 0);
	s->tx = t;
	return 0;
}

void
repl_tx_keep_audit(struct sess_ctx *s)
{
	if (s->tx != NULL)
		s->tx->audit_only = true;
}

/* The master's audit entries of this transaction, for the replicas. */
static int
tx_audit(sqlite3 *db, int64_t mark, unsigned char **buf, size_t *len,
    hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	cbor_item_t *list = cbor_new_indefinite_array(), *e = NULL;
	bool ok = list != NULL;
	int rc = SQLITE_DONE, r = -1;

	if (ok && sqlite3_prepare_v2(db, "SELECT time, node, session, role, "
	    "partition, officers, op, args, result FROM audit WHERE seq > ?1 "
	    "ORDER BY seq", -1, &q, NULL) != SQLITE_OK) {
		hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
		goto out;
	}
	if (ok)
		sqlite3_bind_int64(q, 1, mark);
	while (ok && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		ok = (e = cbor_new_definite_array(1 + AUDIT_FIELDS)) != NULL &&
		    cbor_array_push(e, cbor_move(cbor_build_uint64(
		    (uint64_t)sqlite3_column_int64(q, 0))));
		for (int i = 0; ok && i < AUDIT_FIELDS; i++)
			ok = cbor_array_push(e, cbor_move(cbor_build_string(
			    sql_text(q, 1 + i))));
		ok = list_push(list, &e, ok);
	}
	if (!ok || rc != SQLITE_DONE) {
		hsm_fail(st, ok ? "io" : "no_memory", "cannot log the change");
		goto out;
	}
	r = hsm_cbor_encode(list, buf, len, st);
out:
	sqlite3_finalize(q);
	if (list != NULL)
		cbor_decref(&list);
	return r;
}

int
repl_tx_precommit(struct sess_ctx *s, hsm_status *st)
{
	struct repl_tx *t = s->tx;
	char role[16];
	void *cs = NULL;
	int n = 0, r = -1;
	unsigned char *audit = NULL, sha[32];
	unsigned int shalen = 0;
	size_t alen = 0;
	uint64_t seq, epoch, retain;
	sqlite3_stmt *q = NULL;

	if (t == NULL)
		return 0;
	if (sqlite3session_changeset(t->sess, &n, &cs) != SQLITE_OK)
		return hsm_fail(st, "internal", "cannot record the change");
	/*
	 * Changes that cancel out (a batch that sets a value and sets it
	 * back) leave no changeset, but their audit entries must still
	 * reach the replicas: an entry with empty changes and the checksum
	 * of nothing (a restore's entry has no checksum).
	 */
	if (n == 0 && (!t->audit_only || store_meta_int(s->db, "audit_count",
	    0) <= t->audit_mark)) {
		sqlite3_free(cs);
		return 0;
	}
	/* Read inside the write transaction: a demotion cannot slip in. */
	store_meta_text(s->db, "role", role, sizeof(role));
	if (strcmp(role, NODE_MASTER) != 0) {
		char master[HSM_NAME_MAX + 1];

		store_meta_text(s->db, "master", master, sizeof(master));
		hsm_fail(st, "not_master", "node %s is a %s: changes go to the "
		    "master%s%s", s->node->name, role, master[0] ? " " : "",
		    master);
		goto out;
	}
	epoch = meta_u64(s->db, "epoch");
	seq = meta_u64(s->db, "last_seq") + 1;
	if (tx_audit(s->db, t->audit_mark, &audit, &alen, st) != 0)
		goto out;
	if (EVP_Digest(cs, (size_t)n, sha, &shalen, EVP_sha256(), NULL) != 1) {
		hsm_fail(st, "internal", "SHA-256 failed");
		goto out;
	}
	if (sqlite3_prepare_v2(s->db, "INSERT INTO replog (seq, epoch, time_ms, "
	    "changes, audit, applied_ms, changes_sha) VALUES (?1, ?2, ?3, ?4, "
	    "?5, ?3, ?6)", -1, &q, NULL) != SQLITE_OK)
		goto io;
	sqlite3_bind_int64(q, 1, (int64_t)seq);
	sqlite3_bind_int64(q, 2, (int64_t)epoch);
	sqlite3_bind_int64(q, 3, repl_now_ms());
	if (n > 0)
		sqlite3_bind_blob(q, 4, cs, n, SQLITE_STATIC);
	else
		sqlite3_bind_zeroblob(q, 4, 0);
	sqlite3_bind_blob(q, 5, audit, (int)alen, SQLITE_STATIC);
	sqlite3_bind_blob(q, 6, sha, sizeof(sha), SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_DONE)
		goto io;
	if (meta_set_u64(s->db, "last_seq", seq, st) != 0 ||
	    meta_set_u64(s->db, "last_epoch", epoch, st) != 0)
		goto out;
	retain = (uint64_t)store_meta_int(s->db, "replog_retain",
	    RETAIN_DEFAULT);
	if (seq % 64 == 0 && seq > retain) {
		sqlite3_finalize(q);
		if (sqlite3_prepare_v2(s->db, "DELETE FROM replog WHERE seq <= "
		    "?1", -1, &q, NULL) != SQLITE_OK)
			goto io;
		sqlite3_bind_int64(q, 1, (int64_t)(seq - retain));
		if (sqlite3_step(q) != SQLITE_DONE)
			goto io;
	}
	t->seq = seq;
	r = 0;
	goto out;
io:
	hsm_fail(st, "io", "replication log: %s", sqlite3_errmsg(s->db));
out:
	sqlite3_finalize(q);
	sqlite3_free(cs);
	free(audit);
	return r;
}

void
repl_notify(void)
{
	pthread_mutex_lock(&mu);
	commit_count++;
	pthread_cond_broadcast(&committed_cv);
	pthread_mutex_unlock(&mu);
}

int
repl_log_resync(struct sess_ctx *s, int64_t audit_mark, hsm_status *st)
{
	char role[16];
	unsigned char *audit = NULL;
	size_t alen = 0;
	uint64_t seq, epoch;
	sqlite3_stmt *q = NULL;
	int r = -1;

	store_meta_text(s->db, "role", role, sizeof(role));
	if (strcmp(role, NODE_MASTER) != 0)
		return hsm_fail(st, "not_master", "node %s is not the master",
		    s->node->name);
	epoch = meta_u64(s->db, "epoch");
	seq = meta_u64(s->db, "last_seq") + 1;
	if (tx_audit(s->db, audit_mark, &audit, &alen, st) != 0)
		return -1;
	/* No changeset: the replicas take a snapshot at this point. */
	if (sqlite3_prepare_v2(s->db, "INSERT INTO replog (seq, epoch, time_ms, "
	    "changes, audit, applied_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?3)", -1,
	    &q, NULL) != SQLITE_OK)
		goto io;
	sqlite3_bind_int64(q, 1, (int64_t)seq);
	sqlite3_bind_int64(q, 2, (int64_t)epoch);
	sqlite3_bind_int64(q, 3, repl_now_ms());
	sqlite3_bind_zeroblob(q, 4, 0);
	sqlite3_bind_blob(q, 5, audit, (int)alen, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_DONE)
		goto io;
	if (meta_set_u64(s->db, "last_seq", seq, st) != 0 ||
	    meta_set_u64(s->db, "last_epoch", epoch, st) != 0)
		goto out;
	r = 0;
	goto out;
io:
	hsm_fail(st, "io", "replication log: %s", sqlite3_errmsg(s->db));
out:
	sqlite3_finalize(q);
	free(audit);
	return r;
}

void
repl_tx_end(struct sess_ctx *s, bool committed)
{
	struct repl_tx *t = s->tx;

	if (t == NULL)
		return;
	if (committed && t->seq != 0) {
		pthread_mutex_lock(&mu);
		commit_count++;
		pthread_cond_broadcast(&committed_cv);
		pthread_mutex_unlock(&mu);
	}
	sqlite3session_delete(t->sess);
	free(t);
	s->tx = NULL;
}

static void
snap_free(struct sess_ctx *s)
{
	if (s->snap == NULL)
		return;
	sqlite3_finalize(s->snap->q);
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	free(s->snap);
	s->snap = NULL;
}

void
repl_session_end(struct sess_ctx *s)
{
	snap_free(s);
}

/* ---- applying on a replica ------------------------------------------ */

/* Only replicated tables may be touched by a change from the master. */
static int
apply_filter(void *ctx, const char *table)
{
	if (table_filter(NULL, table))
		return 1;
	*(bool *)ctx = true;
	return 0;
}

/*
 * The table headers of a changeset are whole: SQLite 3.40 loops for ever
 * on one cut short inside a header, so that is checked first.  Each
 * table: 'T' or 'P', a varint column count, one byte a column, the name
 * and its NUL; then change records, which the checksum of the entry
 * covers.
 */
static bool
changeset_headers_ok(const unsigned char *p, size_t n)
{
	size_t i = 0;

	if (n < 4 || (p[0] != 'T' && p[0] != 'P'))
		return false;
	i = 1;
	{
		uint64_t ncol = 0;
		int shift = 0;

		do {
			if (i >= n || shift > 28)
				return false;
			ncol |= (uint64_t)(p[i] & 0x7f) << shift;
			shift += 7;
		} while (p[i++] & 0x80);
		if (ncol == 0 || ncol > 64 || i + ncol >= n)
			return false;
		i += ncol;
	}
	return memchr(p + i, 0, n - i) != NULL;
}

static int
apply_conflict(void *ctx, int kind, sqlite3_changeset_iter *it)
{
	(void)ctx;
	(void)kind;
	(void)it;
	/* The replica must hold exactly what the master held: never merge. */
	return SQLITE_CHANGESET_ABORT;
}

static int
apply_audit(sqlite3 *db, const unsigned char *buf, size_t len,
    hsm_status *st)
{
	cbor_item_t *list = NULL;
	int r = -1;

	if (hsm_cbor_decode(buf, len, &list, st) != 0)
		return -1;
	if (!cbor_isa_array(list)) {
		hsm_fail(st, "protocol", "replicated audit is not a list");
		goto out;
	}
	for (size_t i = 0; i < cbor_array_size(list); i++) {
		cbor_item_t *e = cbor_array_handle(list)[i];
		char f[AUDIT_FIELDS][1024];
		const char *fp[AUDIT_FIELDS];
		cbor_item_t **h;

		if (!cbor_isa_array(e) || cbor_array_size(e) != 1 +
		    AUDIT_FIELDS || !cbor_isa_uint(cbor_array_handle(e)[0])) {
			hsm_fail(st, "protocol", "malformed replicated audit "
			    "entry");
			goto out;
		}
		h = cbor_array_handle(e);
		for (int j = 0; j < AUDIT_FIELDS; j++) {
			size_t n;

			if (!cbor_isa_string(h[1 + j]) ||
			    (n = cbor_string_length(h[1 + j])) >= sizeof(f[j])) {
				hsm_fail(st, "protocol", "malformed replicated "
				    "audit entry");
				goto out;
			}
			memcpy(f[j], cbor_string_handle(h[1 + j]), n);
			f[j][n] = '\0';
			fp[j] = f[j];
		}
		if (audit_append_raw(db, (int64_t)cbor_get_int(h[0]), fp,
		    st) != 0)
			goto out;
	}
	r = 0;
out:
	cbor_decref(&list);
	return r;
}

static int
get_u64(const cbor_item_t *m, const char *key, uint64_t *v, hsm_status *st)
{
	const cbor_item_t *x = hsm_map_get(m, key);

	if (x == NULL || !cbor_isa_uint(x))
		return hsm_fail(st, "protocol", "replication entry lacks '%s'",
		    key);
	*v = cbor_get_int(x);
	return 0;
}

static int
get_bytes(const cbor_item_t *m, const char *key, const unsigned char **p,
    size_t *n, hsm_status *st)
{
	const cbor_item_t *x = hsm_map_get(m, key);

	if (x == NULL || !cbor_isa_bytestring(x) ||
	    !cbor_bytestring_is_definite(x))
		return hsm_fail(st, "protocol", "replication entry lacks '%s'",
		    key);
	*p = cbor_bytestring_handle(x);
	*n = cbor_bytestring_length(x);
	return 0;
}

/* One entry, inside the caller's write transaction. */
static int
apply_one(sqlite3 *db, const cbor_item_t *e, hsm_status *st)
{
	uint64_t seq, epoch, time_ms, last, known;
	const cbor_item_t *h0;
	const unsigned char *cs, *audit;
	size_t cslen, alen;
	sqlite3_stmt *q = NULL;
	bool foreign = false;
	int rc;

	if (!cbor_isa_map(e))
		return hsm_fail(st, "protocol", "a replication entry is not a "
		    "map");
	if (get_u64(e, "seq", &seq, st) != 0 ||
	    get_u64(e, "epoch", &epoch, st) != 0 ||
	    get_u64(e, "time_ms", &time_ms, st) != 0 ||
	    get_bytes(e, "changes", &cs, &cslen, st) != 0 ||
	    get_bytes(e, "audit", &audit, &alen, st) != 0)
		return -1;
	if (cslen > INT32_MAX || time_ms > INT64_MAX || seq > INT64_MAX ||
	    epoch > INT64_MAX)
		return hsm_fail(st, "protocol", "replication entry out of "
		    "range");
	/* Empty changes with a checksum: audit entries only. */
	if (cslen == 0 && ((h0 = hsm_map_get(e, "sha256")) == NULL ||
	    !cbor_isa_bytestring(h0) || cbor_bytestring_length(h0) == 0))
		return hsm_fail(st, "protocol", "replication entry %llu is a "
		    "restore: it is taken by snapshot", (unsigned long long)seq);
	if (cslen > 0 && !changeset_headers_ok(cs, cslen))
		return hsm_fail(st, "protocol", "replication entry %llu: the "
		    "changes are malformed", (unsigned long long)seq);
	{
		const cbor_item_t *h = hsm_map_get(e, "sha256");
		unsigned char d[32];
		unsigned int dl = 0;

		/* Damage on the master's disk shows before anything is applied. */
		if (h == NULL || !cbor_isa_bytestring(h) ||
		    cbor_bytestring_length(h) != sizeof(d) ||
		    EVP_Digest(cs, cslen, d, &dl, EVP_sha256(), NULL) != 1 ||
		    CRYPTO_memcmp(d, cbor_bytestring_handle(h), sizeof(d)) != 0)
			return hsm_fail(st, "integrity", "replication entry %llu: "
			    "its changes do not match their checksum",
			    (unsigned long long)seq);
	}
	last = meta_u64(db, "last_seq");
	if (seq <= last)
		return 0;	/* applied already: idempotent by sequence */
	if (seq != last + 1) {
		hsm_fail(st, "protocol", "replication gap: have %" PRIu64
		    ", got %" PRIu64, last, seq);
		goto fail;
	}
	rc = cslen == 0 ? SQLITE_OK : sqlite3changeset_apply(db, (int)cslen,
	    (void *)(uintptr_t)cs, apply_filter, apply_conflict, &foreign);
	if (rc == SQLITE_OK && foreign) {
		hsm_fail(st, "protocol", "change %" PRIu64 " touches a table "
		    "that is not replicated", seq);
		goto fail;
	}
	if (rc != SQLITE_OK) {
		hsm_fail(st, "diverged", "change %" PRIu64 " does not apply: "
		    "this node's state differs from the master's (%s)", seq,
		    sqlite3_errstr(rc));
		goto fail;
	}
	/* applied_ms - time_ms is the replication lag (make bench). */
	if (sqlite3_prepare_v2(db, "INSERT INTO replog (seq, epoch, time_ms, "
	    "changes, audit, applied_ms, changes_sha) VALUES (?1, ?2, ?3, ?4, "
	    "?5, ?6, ?7)", -1, &q, NULL) != SQLITE_OK)
		goto io;
	sqlite3_bind_blob(q, 7, cbor_bytestring_handle(hsm_map_get(e,
	    "sha256")), 32, SQLITE_STATIC);
	sqlite3_bind_int64(q, 1, (int64_t)seq);
	sqlite3_bind_int64(q, 2, (int64_t)epoch);
	sqlite3_bind_int64(q, 3, (int64_t)time_ms);
	sqlite3_bind_int64(q, 6, repl_now_ms());
	if (cslen > 0)
		sqlite3_bind_blob(q, 4, cs, (int)cslen, SQLITE_STATIC);
	else
		sqlite3_bind_zeroblob(q, 4, 0);
	sqlite3_bind_blob(q, 5, audit, (int)alen, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_DONE)
		goto io;
	sqlite3_finalize(q);
	q = NULL;
	if (seq % 64 == 0) {
		uint64_t retain = (uint64_t)store_meta_int(db, "replog_retain",
		    RETAIN_DEFAULT);

		if (seq > retain) {
			if (sqlite3_prepare_v2(db, "DELETE FROM replog WHERE "
			    "seq <= ?1", -1, &q, NULL) != SQLITE_OK)
				goto io;
			sqlite3_bind_int64(q, 1, (int64_t)(seq - retain));
			if (sqlite3_step(q) != SQLITE_DONE)
				goto io;
			sqlite3_finalize(q);
			q = NULL;
		}
	}
	known = meta_u64(db, "epoch");
	if (apply_audit(db, audit, alen, st) != 0 ||
	    meta_set_u64(db, "last_seq", seq, st) != 0 ||
	    meta_set_u64(db, "last_epoch", epoch, st) != 0 ||
	    (epoch > known && meta_set_u64(db, "epoch", epoch, st) != 0))
		goto fail;
	return 0;
io:
	hsm_fail(st, "io", "replication: %s", sqlite3_errmsg(db));
fail:
	sqlite3_finalize(q);
	return -1;
}

int
repl_apply(sqlite3 *db, const cbor_item_t *e, hsm_status *st)
{
	if (store_exec(db, "BEGIN IMMEDIATE", st) != 0)
		return -1;
	if (apply_one(db, e, st) != 0 || store_exec(db, "COMMIT", st) != 0) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

/*
 * A pulled batch in one transaction: each entry is still all or nothing
 * with its sequence number, and a replica that fell behind catches up
 * with one sync to disk per batch instead of one per change.
 */
int
repl_apply_list(sqlite3 *db, const cbor_item_t *list, hsm_status *st)
{
	if (!cbor_isa_array(list))
		return hsm_fail(st, "protocol", "replication entries are not a "
		    "list");
	if (cbor_array_size(list) == 0)
		return 0;
	if (store_exec(db, "BEGIN IMMEDIATE", st) != 0)
		return -1;
	for (size_t i = 0; i < cbor_array_size(list); i++)
		if (apply_one(db, cbor_array_handle(list)[i], st) != 0) {
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			return -1;
		}
	if (store_exec(db, "COMMIT", st) != 0) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

int
repl_snapshot_apply_begin(sqlite3 *db, hsm_status *st)
{
	char sql[128];

	if (store_exec(db, "BEGIN IMMEDIATE", st) != 0)
		return -1;
	for (size_t i = 0; repl_tables[i] != NULL; i++) {
		snprintf(sql, sizeof(sql), "DELETE FROM %s", repl_tables[i]);
		if (store_exec(db, sql, st) != 0)
			goto fail;
	}
	if (store_exec(db, "DELETE FROM replog", st) != 0)
		goto fail;
	return 0;
fail:
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

int
repl_snapshot_apply_page(sqlite3 *db, const cbor_item_t *page,
    hsm_status *st)
{
	const cbor_item_t *t = hsm_map_get(page, "table");
	const cbor_item_t *rows = hsm_map_get(page, "rows");
	char table[32], sql[512];
	sqlite3_stmt *q = NULL;
	size_t ncol = 0, n, k;
	bool known = false;
	int r = -1;

	if (t == NULL || !cbor_isa_string(t) || rows == NULL ||
	    !cbor_isa_array(rows) || (n = cbor_string_length(t)) >=
	    sizeof(table))
		return hsm_fail(st, "protocol", "malformed snapshot page");
	memcpy(table, cbor_string_handle(t), n);
	table[n] = '\0';
	for (size_t i = 0; repl_tables[i] != NULL; i++)
		known = known || strcmp(repl_tables[i], table) == 0;
	if (!known)
		return hsm_fail(st, "protocol", "snapshot of unknown table "
		    "'%s'", table);
	if (cbor_array_size(rows) == 0)
		return 0;
	if (!cbor_isa_array(cbor_array_handle(rows)[0]) ||
	    (ncol = cbor_array_size(cbor_array_handle(rows)[0])) == 0 ||
	    ncol > 32)
		return hsm_fail(st, "protocol", "malformed snapshot row");
	k = (size_t)snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (?",
	    table);
	for (size_t i = 1; i < ncol; i++)
		k += (size_t)snprintf(sql + k, sizeof(sql) - k, ", ?");
	snprintf(sql + k, sizeof(sql) - k, ")");
	if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) {
		hsm_fail(st, "protocol", "snapshot of %s does not fit this "
		    "node's schema: %s", table, sqlite3_errmsg(db));
		goto out;
	}
	for (size_t i = 0; i < cbor_array_size(rows); i++) {
		cbor_item_t *row = cbor_array_handle(rows)[i];

		if (!cbor_isa_array(row) || cbor_array_size(row) != ncol) {
			hsm_fail(st, "protocol", "malformed snapshot row");
			goto out;
		}
		sqlite3_reset(q);
		for (size_t c = 0; c < ncol; c++)
			if (sql_bind_cbor(q, (int)c + 1,
			    cbor_array_handle(row)[c]) != SQLITE_OK) {
				hsm_fail(st, "protocol", "bad value in "
				    "snapshot of %s", table);
				goto out;
			}
		if (sqlite3_step(q) != SQLITE_DONE) {
			hsm_fail(st, "io", "snapshot of %s: %s", table,
			    sqlite3_errmsg(db));
			goto out;
		}
	}
	r = 0;
out:
	sqlite3_finalize(q);
	return r;
}

int
repl_snapshot_apply_end(sqlite3 *db, uint64_t seq, uint64_t epoch,
    const char *from, hsm_status *st)
{
	char args[128];
	const char *f[AUDIT_FIELDS] = { "", "-", "-", "", "", "repl.snapshot",
	    args, "ok" };
	uint64_t known = meta_u64(db, "epoch");

	f[0] = from;
	snprintf(args, sizeof(args), "seq=%" PRIu64 " epoch=%" PRIu64, seq,
	    epoch);
	if (meta_set_u64(db, "last_seq", seq, st) != 0 ||
	    meta_set_u64(db, "last_epoch", epoch, st) != 0 ||
	    (epoch > known && meta_set_u64(db, "epoch", epoch, st) != 0) ||
	    audit_append_raw(db, (int64_t)time(NULL), f, st) != 0 ||
	    store_exec(db, "COMMIT", st) != 0) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

int
repl_meta_update(sqlite3 *db, const char *const *kv, hsm_status *st)
{
	if (store_exec(db, "BEGIN IMMEDIATE", st) != 0)
		return -1;
	for (size_t i = 0; kv[i] != NULL; i += 2)
		if (store_meta_set(db, kv[i], kv[i + 1], st) != 0) {
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			return -1;
		}
	return store_exec(db, "COMMIT", st);
}

/* ---- digest ----------------------------------------------------------- */

int
repl_digest(sqlite3 *db, char out[65], hsm_status *st)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char h[32];
	unsigned int hl = 0;
	sqlite3_stmt *q = NULL;
	char sql[128];
	int r = -1, rc = SQLITE_DONE;

	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		hsm_fail(st, "internal", "SHA-256 failed");
		goto out;
	}
	if (store_exec(db, "BEGIN", st) != 0)
		goto out;
	for (size_t t = 0; repl_tables[t] != NULL; t++) {
		snprintf(sql, sizeof(sql), "SELECT * FROM %s ORDER BY 1",
		    repl_tables[t]);
		if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) {
			rc = SQLITE_ERROR;	/* every table, or no digest */
			break;
		}
		EVP_DigestUpdate(md, repl_tables[t], strlen(repl_tables[t]) +
		    1);
		while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
			for (int c = 0; c < sqlite3_column_count(q); c++) {
				unsigned char type = (unsigned char)
				    sqlite3_column_type(q, c);
				uint32_t n;
				const void *p = type == SQLITE_BLOB ?
				    sqlite3_column_blob(q, c) :
				    (const void *)sqlite3_column_text(q, c);

				/* Typed and length-prefixed: no ambiguity. */
				n = p != NULL ? (uint32_t)
				    sqlite3_column_bytes(q, c) : 0;
				EVP_DigestUpdate(md, &type, 1);
				EVP_DigestUpdate(md, &n, sizeof(n));
				if (n > 0)
					EVP_DigestUpdate(md, p, n);
			}
		}
		sqlite3_finalize(q);
		q = NULL;
		if (rc != SQLITE_DONE)
			break;
	}
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_DONE || repl_tables[0] == NULL) {
		hsm_fail(st, "io", "cannot digest the store: %s",
		    sqlite3_errmsg(db));
		goto out;
	}
	if (EVP_DigestFinal_ex(md, h, &hl) != 1 || hl != sizeof(h)) {
		hsm_fail(st, "internal", "SHA-256 failed");
		goto out;
	}
	hsm_hex(h, sizeof(h), out);
	r = 0;
out:
	sqlite3_finalize(q);
	EVP_MD_CTX_free(md);
	return r;
}

/* ---- node.info -------------------------------------------------------- */

static cbor_item_t *
members(sqlite3 *db, const char *self, uint64_t master_seq, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	cbor_item_t *list = cbor_new_indefinite_array(), *e = NULL;
	bool ok = list != NULL;
	int rc = SQLITE_DONE;
	int64_t now = repl_now_ms();

	if (ok && sqlite3_prepare_v2(db, "SELECT name, role, addr, host_key "
	    "FROM nodes ORDER BY name", -1, &q, NULL) != SQLITE_OK)
		ok = false;
	while (ok && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct peer_stat ps;
		const char *name = sql_text(q, 0);

		ok = (e = cbor_new_indefinite_map()) != NULL &&
		    hsm_map_put_str(e, "name", name) == 0 &&
		    hsm_map_put_str(e, "role", sql_text(q, 1)) == 0 &&
		    hsm_map_put_str(e, "addr", sql_text(q, 2)) == 0 &&
		    hsm_map_put_str(e, "host_key", sql_text(q, 3)) == 0;
		/* The master's view of each replica that pulls from it. */
		if (ok && strcmp(name, self) != 0 && master_seq > 0 &&
		    peer_get(name, &ps))
			ok = hsm_map_put_uint(e, "acked_seq", ps.seq) == 0 &&
			    hsm_map_put_uint(e, "seen_ms_ago", now > ps.seen_ms ?
			    (uint64_t)(now - ps.seen_ms) : 0) == 0;
		ok = list_push(list, &e, ok);
	}
	sqlite3_finalize(q);
	if (!ok || rc != SQLITE_DONE) {
		if (list != NULL)
			cbor_decref(&list);
		hsm_fail(st, "io", "cannot list the cluster's nodes");
		return NULL;
	}
	return list;
}

static cbor_item_t *
pending_joins(sqlite3 *db)
{
	sqlite3_stmt *q = NULL;
	cbor_item_t *list = cbor_new_indefinite_array(), *e = NULL;
	bool ok = list != NULL;

	if (ok && sqlite3_prepare_v2(db, "SELECT name, role, addr, host_key, "
	    "requested FROM join_requests ORDER BY name", -1, &q, NULL) !=
	    SQLITE_OK)
		ok = false;
	while (ok && sqlite3_step(q) == SQLITE_ROW)
		ok = list_push(list, &e, (e = cbor_new_indefinite_map()) !=
		    NULL && hsm_map_put_str(e, "name", sql_text(q, 0)) == 0 &&
		    hsm_map_put_str(e, "role", sql_text(q, 1)) == 0 &&
		    hsm_map_put_str(e, "addr", sql_text(q, 2)) == 0 &&
		    hsm_map_put_str(e, "host_key", sql_text(q, 3)) == 0 &&
		    hsm_map_put_uint(e, "requested",
		    (uint64_t)sqlite3_column_int64(q, 4)) == 0);
	sqlite3_finalize(q);
	if (!ok && list != NULL)
		cbor_decref(&list);
	return list;
}

int
repl_info(struct sess_ctx *s, cbor_item_t *r, bool digest, hsm_status *st)
{
	char role[16], master[HSM_NAME_MAX + 1], hex[65];
	uint64_t last = meta_u64(s->db, "last_seq"), lag = 0;
	int64_t lag_ms = 0, now = repl_now_ms();
	struct repl_view v;
	cbor_item_t *m, *p = NULL;
	bool ok;

	repl_view_get(&v);
	store_meta_text(s->db, "role", role, sizeof(role));
	store_meta_text(s->db, "master", master, sizeof(master));
	if (strcmp(role, NODE_MASTER) == 0) {
		snprintf(master, sizeof(master), "%s", s->node->name);
	} else if (v.master[0] != '\0') {
		snprintf(master, sizeof(master), "%s", v.master);
		if (v.master_seq > last)
			lag = v.master_seq - last;
		/* Behind, or not heard from the master: time since in sync. */
		if ((lag > 0 || !v.connected) && v.synced_ms > 0)
			lag_ms = now - v.synced_ms;
	}
	ok = hsm_map_put_str(r, "master", master) == 0 &&
	    hsm_map_put_uint(r, "voted_epoch", meta_u64(s->db,
	    "voted_epoch")) == 0 &&
	    hsm_map_put_uint(r, "lag_seq", lag) == 0 &&
	    hsm_map_put_uint(r, "lag_ms", lag_ms > 0 ? (uint64_t)lag_ms :
	    0) == 0;
	if (ok && strcmp(role, NODE_MASTER) != 0)
		ok = hsm_map_put_bool(r, "replicating", v.connected) == 0 &&
		    hsm_map_put_str(r, "replication_error", v.error) == 0 &&
		    hsm_map_put_uint(r, "master_seq", v.master_seq) == 0;
	if (!ok)
		return hsm_fail(st, "no_memory", "out of memory");
	if ((m = members(s->db, s->node->name, strcmp(role, NODE_MASTER) ==
	    0 ? last + 1 : 0, st)) == NULL || hsm_map_put(r, "members", m) != 0)
		return m == NULL ? -1 : hsm_fail(st, "no_memory",
		    "out of memory");
	if (strcmp(role, NODE_MASTER) == 0 && (p = pending_joins(s->db)) !=
	    NULL && hsm_map_put(r, "pending_joins", p) != 0)
		return hsm_fail(st, "no_memory", "out of memory");
	if (digest) {
		if (repl_digest(s->db, hex, st) != 0)
			return -1;
		if (hsm_map_put_str(r, "digest", hex) != 0)
			return hsm_fail(st, "no_memory", "out of memory");
	}
	return 0;
}

/* ---- ops served to other nodes ---------------------------------------- */

/* A node that hears of a newer epoch stops being master at once. */
static int
learn_epoch(struct sess_ctx *s, uint64_t epoch, const char *from,
    hsm_status *st)
{
	char role[16], num[32];
	const char *kv[] = { "epoch", num, "role", NODE_CLONE, NULL };

	if (epoch <= meta_u64(s->db, "epoch"))
		return 0;
	store_meta_text(s->db, "role", role, sizeof(role));
	snprintf(num, sizeof(num), "%" PRIu64, epoch);
	if (strcmp(role, NODE_MASTER) != 0)
		kv[2] = NULL;
	if (repl_meta_update(s->db, kv, st) != 0)
		return -1;
	if (kv[2] != NULL) {
		log_warn("%s reports epoch %" PRIu64 ": this node is no "
		    "longer master and becomes a clone", from, epoch);
		repl_set_role(NODE_CLONE);
	}
	return 0;
}

static cbor_item_t *
entry_item(sqlite3_stmt *q)
{
	cbor_item_t *e = cbor_new_definite_map(6);

	if (e == NULL)
		return NULL;
	if (hsm_map_put_uint(e, "seq", (uint64_t)sqlite3_column_int64(q, 0)) ||
	    hsm_map_put_uint(e, "epoch",
	    (uint64_t)sqlite3_column_int64(q, 1)) ||
	    hsm_map_put_uint(e, "time_ms",
	    (uint64_t)sqlite3_column_int64(q, 2)) ||
	    hsm_map_put(e, "changes", cbor_build_bytestring(
	    sqlite3_column_blob(q, 3), (size_t)sqlite3_column_bytes(q, 3))) ||
	    hsm_map_put(e, "audit", cbor_build_bytestring(
	    sqlite3_column_blob(q, 4), (size_t)sqlite3_column_bytes(q, 4))) ||
	    hsm_map_put(e, "sha256", cbor_build_bytestring(
	    sqlite3_column_blob(q, 5), (size_t)sqlite3_column_bytes(q, 5))))
		cbor_decref(&e);
	return e;
}

/*
 * Can this node's log continue the asker's, which ends at (seq, epoch)?
 * Only if that point is in our log with the same epoch (else the asker
 * forked from us) and the next entry is still retained.
 */
static bool
log_has(sqlite3 *db, uint64_t seq, uint64_t epoch, uint64_t last,
    uint64_t last_epoch, const char **why)
{
	sqlite3_stmt *q = NULL;
	bool have_this = seq == 0, have_next = false, same = seq == 0;

	if (seq > last) {
		*why = "divergent";	/* it holds changes we never made */
		return false;
	}
	if (epoch == 0) {
		*why = "new";		/* a new node: it holds nothing yet */
		return false;
	}
	if (seq == last) {
		if (epoch == last_epoch)
			return true;
		*why = "divergent";
		return false;
	}
	if (sqlite3_prepare_v2(db, "SELECT seq, epoch FROM replog WHERE seq "
	    "IN (?1, ?1 + 1)", -1, &q, NULL) != SQLITE_OK) {
		*why = "behind";
		return false;
	}
	sqlite3_bind_int64(q, 1, (int64_t)seq);
	while (sqlite3_step(q) == SQLITE_ROW) {
		if ((uint64_t)sqlite3_column_int64(q, 0) == seq) {
			have_this = true;
			same = (uint64_t)sqlite3_column_int64(q, 1) == epoch;
		} else {
			have_next = true;
		}
	}
	sqlite3_finalize(q);
	if (have_this && !same) {
		*why = "divergent";
		return false;
	}
	if (!have_this || !have_next) {
		*why = "behind";	/* older than the retained log */
		return false;
	}
	return true;
}

/* A replica says where it serves: the membership keeps it current. */
static int
note_addr(struct sess_ctx *s, const char *addr, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	bool same = false;

	if (sqlite3_prepare_v2(s->db, "SELECT addr = ?2 FROM nodes WHERE "
	    "name = ?1", -1, &q, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
	sqlite3_bind_text(q, 1, s->peer_node, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, addr, -1, SQLITE_STATIC);
	same = sqlite3_step(q) != SQLITE_ROW || sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	q = NULL;
	if (same)
		return 0;
	if (tx_begin(s, st) != 0)
		return -1;
	if (sqlite3_prepare_v2(s->db, "UPDATE nodes SET addr = ?2 WHERE name = "
	    "?1", -1, &q, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(q, 1, s->peer_node, -1, SQLITE_STATIC) !=
	    SQLITE_OK ||
	    sqlite3_bind_text(q, 2, addr, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(q) != SQLITE_DONE) {
		hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
		sqlite3_finalize(q);
		tx_rollback(s);
		return -1;
	}
	sqlite3_finalize(q);
	log_info("node %s serves at %s", s->peer_node, addr);
	return tx_commit(s, st);
}

int
op_repl_pull(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "epoch", "last_seq", "last_epoch",
	    "wait_ms", "addr", NULL };
	char addr[300] = "";
	uint64_t epoch, seq, seq_epoch, wait_ms = 0, last, my_epoch, last_epoch;
	char role[16];
	const char *why = "new";
	cbor_item_t *r = NULL, *list = NULL, *e = NULL;
	sqlite3_stmt *q = NULL;
	size_t bytes = 0;
	int rc = SQLITE_DONE;
	bool ok;

	if (args_allowed(args, names, st) != 0 ||
	    arg_uint(args, "epoch", &epoch, true, st) < 0 ||
	    arg_uint(args, "last_seq", &seq, true, st) < 0 ||
	    arg_uint(args, "last_epoch", &seq_epoch, true, st) < 0 ||
	    arg_uint(args, "wait_ms", &wait_ms, false, st) < 0 ||
	    arg_text(args, "addr", addr, sizeof(addr), false, st) < 0)
		return -1;
	snap_free(s);
	if (learn_epoch(s, epoch, s->peer_node, st) != 0)
		return -1;
	store_meta_text(s->db, "role", role, sizeof(role));
	if (addr[0] != '\0' && strcmp(role, NODE_MASTER) == 0 &&
	    note_addr(s, addr, st) != 0)
		return -1;
	last = meta_u64(s->db, "last_seq");
	/* The long poll: wait for a commit past what the replica has. */
	if (seq == last && wait_ms > 0 && strcmp(role, NODE_MASTER) == 0) {
		struct timespec dl;
		uint64_t seen;

		if (wait_ms > PULL_WAIT_MAX_MS)
			wait_ms = PULL_WAIT_MAX_MS;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += (time_t)(wait_ms / 1000);
		dl.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
		if (dl.tv_nsec >= 1000000000L) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&mu);
		seen = commit_count;
		while (commit_count == seen)
			if (pthread_cond_timedwait(&committed_cv, &mu,
			    &dl) != 0)
				break;
		pthread_mutex_unlock(&mu);
		store_meta_text(s->db, "role", role, sizeof(role));
		last = meta_u64(s->db, "last_seq");
	}
	if (strcmp(role, NODE_MASTER) == 0)
		peer_seen(s->peer_node, seq);
	my_epoch = meta_u64(s->db, "epoch");
	last_epoch = meta_u64(s->db, "last_epoch");
	if ((r = cbor_new_indefinite_map()) == NULL ||
	    (list = cbor_new_indefinite_array()) == NULL)
		goto oom;
	ok = hsm_map_put_str(r, "node", s->node->name) == 0 &&
	    hsm_map_put_str(r, "role", role) == 0 &&
	    hsm_map_put_uint(r, "epoch", my_epoch) == 0 &&
	    hsm_map_put_uint(r, "last_seq", last) == 0;
	if (!ok)
		goto oom;
	if (!log_has(s->db, seq, seq_epoch, last, last_epoch, &why)) {
		if (hsm_map_put_str(r, "snapshot", why) != 0)
			goto oom;
		cbor_decref(&list);
		*res = r;
		return 0;
	}
	if (sqlite3_prepare_v2(s->db, "SELECT seq, epoch, time_ms, changes, "
	    "audit, coalesce(changes_sha, x'') FROM replog WHERE seq > ?1 "
	    "ORDER BY seq LIMIT ?2", -1, &q, NULL) != SQLITE_OK) {
		hsm_fail(st, "io", "replication log: %s",
		    sqlite3_errmsg(s->db));
		goto fail;
	}
	sqlite3_bind_int64(q, 1, (int64_t)seq);
	sqlite3_bind_int(q, 2, PULL_MAX_ENTRIES);
	while (bytes < PULL_MAX_BYTES && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		/* A restore: no changeset, no checksum; what follows needs
		 * a snapshot. */
		if (sqlite3_column_bytes(q, 3) == 0 &&
		    sqlite3_column_bytes(q, 5) == 0) {
			if (cbor_array_size(list) == 0) {
				sqlite3_finalize(q);
				cbor_decref(&list);
				if (hsm_map_put_str(r, "snapshot", "restore") !=
				    0) {
					cbor_decref(&r);
					return hsm_fail(st, "no_memory",
					    "out of memory");
				}
				*res = r;
				return 0;
			}
			rc = SQLITE_DONE;
			break;
		}
		bytes += (size_t)sqlite3_column_bytes(q, 3) +
		    (size_t)sqlite3_column_bytes(q, 4) + 64;
		if ((uint64_t)sqlite3_column_int64(q, 0) != ++seq) {
			/* A hole in our log (pruned mid-read): start over. */
			rc = SQLITE_DONE;
			break;
		}
		if (!list_push(list, &e, (e = entry_item(q)) != NULL))
			goto oom;
	}
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		hsm_fail(st, "io", "replication log: %s",
		    sqlite3_errmsg(s->db));
		goto fail;
	}
	sqlite3_finalize(q);
	q = NULL;
	if (hsm_map_put(r, "entries", list) != 0) {
		list = NULL;
		goto oom;
	}
	*res = r;
	return 0;
oom:
	hsm_fail(st, "no_memory", "out of memory");
fail:
	sqlite3_finalize(q);
	if (list != NULL)
		cbor_decref(&list);
	if (r != NULL)
		cbor_decref(&r);
	return -1;
}

/*
 * One page of a consistent snapshot: the session holds one read
 * transaction from the first page to the last, so the pages together
 * are the state at exactly one sequence number.
 */
int
op_repl_snapshot(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	struct snap_cursor *c = s->snap;
	cbor_item_t *r = NULL, *rows = NULL, *row = NULL;
	size_t bytes = 0, n = 0;
	char sql[128];
	int rc = SQLITE_DONE;
	bool ok;

	if (args_allowed(args, NULL, st) != 0)
		return -1;
	if (c == NULL) {
		if ((c = calloc(1, sizeof(*c))) == NULL)
			return hsm_fail(st, "no_memory", "out of memory");
		s->snap = c;
		if (store_exec(s->db, "BEGIN", st) != 0) {
			free(c);
			s->snap = NULL;
			return -1;
		}
		/* The first read fixes the snapshot. */
		c->seq = meta_u64(s->db, "last_seq");
		c->epoch = meta_u64(s->db, "last_epoch");
	}
	if ((r = cbor_new_indefinite_map()) == NULL ||
	    (rows = cbor_new_indefinite_array()) == NULL)
		goto oom;
	while (repl_tables[c->table] != NULL && c->q == NULL) {
		snprintf(sql, sizeof(sql), "SELECT * FROM %s",
		    repl_tables[c->table]);
		if (sqlite3_prepare_v2(s->db, sql, -1, &c->q, NULL) !=
		    SQLITE_OK) {
			hsm_fail(st, "io", "snapshot: %s",
			    sqlite3_errmsg(s->db));
			goto fail;
		}
	}
	ok = hsm_map_put_uint(r, "seq", c->seq) == 0 &&
	    hsm_map_put_uint(r, "epoch", c->epoch) == 0 &&
	    hsm_map_put_str(r, "table", repl_tables[c->table] != NULL ?
	    repl_tables[c->table] : "") == 0;
	while (ok && c->q != NULL && bytes < SNAP_PAGE_BYTES &&
	    n < SNAP_PAGE_ROWS && (rc = sqlite3_step(c->q)) == SQLITE_ROW) {
		int nc = sqlite3_column_count(c->q);

		ok = (row = cbor_new_definite_array((size_t)nc)) != NULL;
		for (int i = 0; ok && i < nc; i++) {
			bytes += (size_t)sqlite3_column_bytes(c->q, i) + 8;
			ok = cbor_array_push(row, cbor_move(sql_column_cbor(c->q,
			    i)));
		}
		ok = list_push(rows, &row, ok);
		n++;
	}
	if (!ok)
		goto oom;
	if (c->q != NULL && rc != SQLITE_ROW) {
		if (rc != SQLITE_DONE) {
			hsm_fail(st, "io", "snapshot: %s",
			    sqlite3_errmsg(s->db));
			goto fail;
		}
		sqlite3_finalize(c->q);
		c->q = NULL;
		c->table++;
	}
	if (hsm_map_put(r, "rows", rows) != 0) {
		rows = NULL;
		goto oom;
	}
	if (hsm_map_put_bool(r, "done", repl_tables[c->table] == NULL) != 0)
		goto oom;
	if (repl_tables[c->table] == NULL)
		snap_free(s);
	*res = r;
	return 0;
oom:
	hsm_fail(st, "no_memory", "out of memory");
fail:
	snap_free(s);
	if (rows != NULL)
		cbor_decref(&rows);
	if (r != NULL)
		cbor_decref(&r);
	return -1;
}

int
op_repl_hello(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "epoch", NULL };
	uint64_t epoch = 0;
	char role[16];
	cbor_item_t *r;

	if (args_allowed(args, names, st) != 0 ||
	    arg_uint(args, "epoch", &epoch, false, st) < 0 ||
	    learn_epoch(s, epoch, s->peer_node, st) != 0)
		return -1;
	store_meta_text(s->db, "role", role, sizeof(role));
	if ((r = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(r, "node", s->node->name) != 0 ||
	    hsm_map_put_str(r, "role", role) != 0 ||
	    hsm_map_put_str(r, "listen", s->node->listen) != 0 ||
	    hsm_map_put_uint(r, "epoch", meta_u64(s->db, "epoch")) != 0 ||
	    hsm_map_put_uint(r, "last_seq", meta_u64(s->db, "last_seq")) != 0 ||
	    hsm_map_put_uint(r, "last_epoch", meta_u64(s->db,
	    "last_epoch")) != 0) {
		if (r != NULL)
			cbor_decref(&r);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	*res = r;
	return 0;
}

/*
 * A vote for a candidate to become master under a new epoch.  A node
 * grants at most one candidate per epoch, and never one that lacks
 * changes it holds (unless it is the master handing over, whose tail the
 * candidate then fetches): with a majority needed, two masters of one
 * epoch cannot both be granted.
 */
int
op_repl_vote(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "epoch", "candidate",
	    "last_seq", "last_epoch", NULL };
	uint64_t epoch, cseq, cepoch, my_epoch, voted, last, last_epoch;
	char cand[HSM_NAME_MAX + 1], voted_for[HSM_NAME_MAX + 1], role[16];
	char reason[200] = "", num[32];
	cbor_item_t *r = NULL;
	bool granted = false, was_master;

	if (args_allowed(args, names, st) != 0 ||
	    arg_uint(args, "epoch", &epoch, true, st) < 0 ||
	    arg_text(args, "candidate", cand, sizeof(cand), true, st) < 0 ||
	    arg_uint(args, "last_seq", &cseq, true, st) < 0 ||
	    arg_uint(args, "last_epoch", &cepoch, true, st) < 0)
		return -1;
	if (strcmp(cand, s->peer_node) != 0)
		return hsm_fail(st, "not_authorized", "node %s cannot ask for "
		    "votes for %s", s->peer_node, cand);
	if (store_exec(s->db, "BEGIN IMMEDIATE", st) != 0)
		return -1;
	my_epoch = meta_u64(s->db, "epoch");
	voted = meta_u64(s->db, "voted_epoch");
	last = meta_u64(s->db, "last_seq");
	last_epoch = meta_u64(s->db, "last_epoch");
	store_meta_text(s->db, "voted_for", voted_for, sizeof(voted_for));
	store_meta_text(s->db, "role", role, sizeof(role));
	was_master = strcmp(role, NODE_MASTER) == 0;
	if (epoch <= my_epoch)
		snprintf(reason, sizeof(reason), "epoch %" PRIu64 " is not "
		    "newer than %s's epoch %" PRIu64, epoch, s->node->name,
		    my_epoch);
	else if (epoch < voted || (epoch == voted &&
	    strcmp(voted_for, cand) != 0))
		snprintf(reason, sizeof(reason), "%s already voted for %s at "
		    "epoch %" PRIu64, s->node->name, voted_for, voted);
	else if (!was_master && (cepoch < last_epoch || (cepoch ==
	    last_epoch && cseq < last)))
		snprintf(reason, sizeof(reason), "%s holds changes up to %"
		    PRIu64 " that %s lacks", s->node->name, last, cand);
	else
		granted = true;
	snprintf(num, sizeof(num), "%" PRIu64, epoch);
	if (granted && (store_meta_set(s->db, "voted_epoch", num, st) != 0 ||
	    store_meta_set(s->db, "voted_for", cand, st) != 0 ||
	    (was_master && store_meta_set(s->db, "role", NODE_CLONE,
	    st) != 0))) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	if (store_exec(s->db, "COMMIT", st) != 0)
		return -1;
	if (granted && was_master) {
		log_warn("handing over to %s (epoch %" PRIu64 "): this node "
		    "is a clone now", cand, epoch);
		repl_set_role(NODE_CLONE);
	}
	if (granted)
		log_info("voted for %s as master of epoch %" PRIu64, cand,
		    epoch);
	else
		log_info("refused vote for %s: %s", cand, reason);
	if ((r = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(r, "node", s->node->name) != 0 ||
	    hsm_map_put_bool(r, "granted", granted) != 0 ||
	    hsm_map_put_str(r, "reason", reason) != 0 ||
	    hsm_map_put_bool(r, "was_master", granted && was_master) != 0 ||
	    hsm_map_put_uint(r, "last_seq", last) != 0 ||
	    hsm_map_put_uint(r, "last_epoch", last_epoch) != 0) {
		if (r != NULL)
			cbor_decref(&r);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	*res = r;
	return 0;
}
