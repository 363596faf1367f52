#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

/*
 * The schema, idempotent: run when a store is created and when a node
 * starts, so a node directory made by an older hsmd gains new tables.
 */
static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta ("
    "  key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    /* Officers: a removed one keeps its row (audit), marked revoked. */
    "CREATE TABLE IF NOT EXISTS officers ("
    "  id INTEGER PRIMARY KEY,"
    "  role TEXT NOT NULL CHECK (role IN ('genesis', 'so', 'pso')),"
    "  partition TEXT NOT NULL DEFAULT '',"
    "  name TEXT NOT NULL,"
    "  pubkey BLOB NOT NULL,"
    "  fingerprint TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  revoked INTEGER);"
    "CREATE UNIQUE INDEX IF NOT EXISTS officers_name"
    "  ON officers (role, partition, name) WHERE revoked IS NULL;"
    "CREATE UNIQUE INDEX IF NOT EXISTS officers_key"
    "  ON officers (role, partition, fingerprint) WHERE revoked IS NULL;"
    "CREATE TABLE IF NOT EXISTS quorums ("
    "  role TEXT NOT NULL, partition TEXT NOT NULL DEFAULT '',"
    "  m INTEGER NOT NULL CHECK (m >= 1),"
    "  PRIMARY KEY (role, partition));"
    /* Challenges are single use: used is set in the login transaction. */
    "CREATE TABLE IF NOT EXISTS challenges ("
    "  nonce BLOB PRIMARY KEY, token BLOB NOT NULL,"
    "  role TEXT NOT NULL, partition TEXT NOT NULL DEFAULT '',"
    "  purpose TEXT NOT NULL, expires INTEGER NOT NULL,"
    "  used INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL,"
    "  session TEXT NOT NULL);"
    /* Hash-chained: hash = SHA-256(prev || CBOR of the entry). */
    "CREATE TABLE IF NOT EXISTS audit ("
    "  seq INTEGER PRIMARY KEY, time INTEGER NOT NULL,"
    "  node TEXT NOT NULL, session TEXT NOT NULL, role TEXT NOT NULL,"
    "  partition TEXT NOT NULL, officers TEXT NOT NULL, op TEXT NOT NULL,"
    "  args TEXT NOT NULL, result TEXT NOT NULL,"
    "  prev BLOB NOT NULL, hash BLOB NOT NULL);"
    /* Partitions and their parameters (filled in by partition ops). */
    "CREATE TABLE IF NOT EXISTS partitions ("
    "  name TEXT PRIMARY KEY, created INTEGER NOT NULL,"
    "  profile TEXT NOT NULL DEFAULT 'eco',"
    "  secret_salt BLOB, secret_hash BLOB, secret_rotated INTEGER,"
    "  exit_state TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE IF NOT EXISTS partition_params ("
    "  partition TEXT NOT NULL REFERENCES partitions (name)"
    "    ON DELETE CASCADE,"
    "  name TEXT NOT NULL, value TEXT NOT NULL,"
    "  PRIMARY KEY (partition, name));"
    /* Key material is sealed (AES-256-GCM, master key); see objects.c. */
    "CREATE TABLE IF NOT EXISTS objects ("
    "  id TEXT PRIMARY KEY,"
    "  partition TEXT NOT NULL REFERENCES partitions (name)"
    "    ON DELETE CASCADE,"
    "  type TEXT NOT NULL, label TEXT NOT NULL DEFAULT '',"
    "  extractable INTEGER NOT NULL, sensitive INTEGER NOT NULL,"
    "  session TEXT, state TEXT NOT NULL, created INTEGER NOT NULL,"
    "  pub BLOB, priv BLOB NOT NULL, size INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS objects_partition ON objects (partition);"
    /* Cluster membership (replicated): a node's host key is also the key
     * it authenticates with to the others. */
    "CREATE TABLE IF NOT EXISTS nodes ("
    "  name TEXT PRIMARY KEY, role TEXT NOT NULL, addr TEXT NOT NULL,"
    "  host_key TEXT NOT NULL, pubkey TEXT NOT NULL,"
    "  added INTEGER NOT NULL);"
    /* The replication log (local): each committed change as an SQLite
     * changeset, with the audit entries of the master that made it. */
    "CREATE TABLE IF NOT EXISTS replog ("
    "  seq INTEGER PRIMARY KEY, epoch INTEGER NOT NULL,"
    "  time_ms INTEGER NOT NULL, changes BLOB NOT NULL,"
    "  audit BLOB NOT NULL, applied_ms INTEGER, changes_sha BLOB);"
    /* The backups in DIR/backups, as this node knows them (local). */
    "CREATE TABLE IF NOT EXISTS backups ("
    "  id TEXT PRIMARY KEY, created INTEGER NOT NULL, node TEXT NOT NULL,"
    "  scope TEXT NOT NULL, seq INTEGER NOT NULL, epoch INTEGER NOT NULL,"
    "  size INTEGER NOT NULL, objects INTEGER NOT NULL,"
    "  verified INTEGER NOT NULL DEFAULT 0, verified_at INTEGER,"
    "  origin TEXT NOT NULL);"
    /* Exits of partitions (DESIGN §8): the journal of each plan here, and
     * the offers this node made as a target (local). */
    "CREATE TABLE IF NOT EXISTS exit_plans ("
    "  partition TEXT PRIMARY KEY, kind TEXT NOT NULL,"
    "  target TEXT NOT NULL, target_fp TEXT NOT NULL, step TEXT NOT NULL,"
    "  offer TEXT NOT NULL DEFAULT '', transfer_pub BLOB,"
    "  objects INTEGER NOT NULL DEFAULT 0, started INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL, error TEXT NOT NULL DEFAULT '',"
    "  officers TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE IF NOT EXISTS exit_offers ("
    "  offer TEXT PRIMARY KEY, partition TEXT NOT NULL,"
    "  source_cluster TEXT NOT NULL, source_node TEXT NOT NULL,"
    "  priv BLOB NOT NULL, state TEXT NOT NULL, created INTEGER NOT NULL);"
    /* Join requests waiting for cluster admit (local to the master). */
    "CREATE TABLE IF NOT EXISTS join_requests ("
    "  name TEXT PRIMARY KEY, role TEXT NOT NULL, addr TEXT NOT NULL,"
    "  host_key TEXT NOT NULL, pubkey TEXT NOT NULL,"
    "  requested INTEGER NOT NULL);";

/* Columns added after a table first shipped: added where missing. */
static const char *const added_columns[] = {
	"ALTER TABLE partitions ADD COLUMN profile TEXT NOT NULL DEFAULT 'eco'",
	"ALTER TABLE partitions ADD COLUMN secret_salt BLOB",
	"ALTER TABLE partitions ADD COLUMN secret_hash BLOB",
	"ALTER TABLE partitions ADD COLUMN secret_rotated INTEGER",
	"ALTER TABLE replog ADD COLUMN applied_ms INTEGER",
	"ALTER TABLE partitions ADD COLUMN exit_state TEXT NOT NULL DEFAULT ''",
	"ALTER TABLE replog ADD COLUMN changes_sha BLOB",
};

int
store_migrate(sqlite3 *db, hsm_status *st)
{
	if (store_exec(db, schema, st) != 0)
		return -1;
	for (size_t i = 0; i < sizeof(added_columns) /
	    sizeof(added_columns[0]); i++) {
		char *err = NULL;

		if (sqlite3_exec(db, added_columns[i], NULL, NULL, &err) !=
		    SQLITE_OK && (err == NULL ||
		    strstr(err, "duplicate column") == NULL)) {
			hsm_fail(st, "io", "store: %s", err ? err :
			    sqlite3_errmsg(db));
			sqlite3_free(err);
			return -1;
		}
		sqlite3_free(err);
	}
	return 0;
}

int
store_exec(sqlite3 *db, const char *sql, hsm_status *st)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		hsm_fail(st, "io", "store: %s", err ? err : sqlite3_errmsg(db));
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

int
store_open(const char *dir, bool create, sqlite3 **dbp, hsm_status *st)
{
	char path[4096];
	sqlite3 *db = NULL;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

	*dbp = NULL;
	if (create)
		flags |= SQLITE_OPEN_CREATE;
	if (snprintf(path, sizeof(path), "%s/%s", dir, STORE_FILE) >=
	    (int)sizeof(path))
		return hsm_fail(st, "bad_value", "node directory path too long");
	if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
		hsm_fail(st, "io", "cannot open store %s: %s", path,
		    db ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return -1;
	}
	/* Concurrent sessions each hold a handle: wait, never fail, on locks. */
	sqlite3_busy_timeout(db, 10000);
	if (store_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
	    "PRAGMA foreign_keys=ON;", st) != 0)
		goto fail;
	if (create && store_migrate(db, st) != 0)
		goto fail;
	*dbp = db;
	return 0;
fail:
	sqlite3_close(db);
	return -1;
}

void
store_close(sqlite3 **db)
{
	if (db == NULL || *db == NULL)
		return;
	sqlite3_close(*db);
	*db = NULL;
}

static int
put(sqlite3_stmt *s, const char *k, const char *v)
{
	sqlite3_reset(s);
	if (sqlite3_bind_text(s, 1, k, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 2, v, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_DONE)
		return -1;
	return 0;
}

int
store_init_meta(sqlite3 *db, const struct node_meta *m, hsm_status *st)
{
	sqlite3_stmt *s = NULL;
	char num[32];
	int r = -1;

	if (store_exec(db, "BEGIN IMMEDIATE", st) != 0)
		return -1;
	if (sqlite3_prepare_v2(db, "INSERT INTO meta(key, value) "
	    "VALUES (?1, ?2)", -1, &s, NULL) != SQLITE_OK)
		goto fail;
	if (put(s, "node", m->node) != 0 || put(s, "cluster", m->cluster) != 0 ||
	    put(s, "cluster_id", m->cluster_id) != 0 ||
	    put(s, "role", m->role) != 0 ||
	    put(s, "sandbox", m->sandbox ? "1" : "0") != 0)
		goto fail;
	snprintf(num, sizeof(num), "%" PRIu64, m->epoch);
	if (put(s, "epoch", num) != 0)
		goto fail;
	snprintf(num, sizeof(num), "%" PRIu64, m->last_seq);
	if (put(s, "last_seq", num) != 0)
		goto fail;
	snprintf(num, sizeof(num), "%" PRId64, m->created);
	if (put(s, "created", num) != 0)
		goto fail;
	snprintf(num, sizeof(num), "%d", STORE_SCHEMA);
	if (put(s, "schema", num) != 0)
		goto fail;
	sqlite3_finalize(s);
	s = NULL;
	if (store_exec(db, "COMMIT", st) != 0)
		goto fail;
	return 0;
fail:
	if (st != NULL && st->code[0] == '\0')
		hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_finalize(s);
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return r;
}

int
store_meta(sqlite3 *db, struct node_meta *m, hsm_status *st)
{
	sqlite3_stmt *s = NULL;
	int rc, seen = 0;

	memset(m, 0, sizeof(*m));
	if (sqlite3_prepare_v2(db, "SELECT key, value FROM meta", -1, &s,
	    NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(s, 0);
		const char *v = (const char *)sqlite3_column_text(s, 1);

		if (k == NULL || v == NULL)
			continue;
		if (strcmp(k, "node") == 0)
			snprintf(m->node, sizeof(m->node), "%s", v);
		else if (strcmp(k, "cluster") == 0)
			snprintf(m->cluster, sizeof(m->cluster), "%s", v);
		else if (strcmp(k, "cluster_id") == 0)
			snprintf(m->cluster_id, sizeof(m->cluster_id), "%s", v);
		else if (strcmp(k, "role") == 0)
			snprintf(m->role, sizeof(m->role), "%s", v);
		else if (strcmp(k, "epoch") == 0)
			m->epoch = strtoull(v, NULL, 10);
		else if (strcmp(k, "last_seq") == 0)
			m->last_seq = strtoull(v, NULL, 10);
		else if (strcmp(k, "sandbox") == 0)
			m->sandbox = strcmp(v, "1") == 0;
		else if (strcmp(k, "created") == 0)
			m->created = strtoll(v, NULL, 10);
		else
			continue;
		seen++;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	if (seen < 8 || m->node[0] == '\0' || m->cluster[0] == '\0')
		return hsm_fail(st, "io", "store: node identity is incomplete");
	return 0;
}

int64_t
store_meta_int(sqlite3 *db, const char *key, int64_t dflt)
{
	sqlite3_stmt *s = NULL;
	int64_t v = dflt;

	if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?1",
	    -1, &s, NULL) != SQLITE_OK)
		return dflt;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

int
store_meta_set(sqlite3 *db, const char *key, const char *value,
    hsm_status *st)
{
	sqlite3_stmt *s = NULL;
	int r = -1;

	if (sqlite3_prepare_v2(db, "INSERT INTO meta (key, value) VALUES "
	    "(?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2", -1, &s,
	    NULL) != SQLITE_OK ||
	    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_DONE)
		hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	else
		r = 0;
	sqlite3_finalize(s);
	return r;
}

void
store_meta_text(sqlite3 *db, const char *key, char *buf, size_t len)
{
	sqlite3_stmt *s = NULL;

	buf[0] = '\0';
	if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?1",
	    -1, &s, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0) != NULL)
		snprintf(buf, len, "%s", (const char *)sqlite3_column_text(s,
		    0));
	sqlite3_finalize(s);
}
