#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

static const char schema[] =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);";

static int
exec(sqlite3 *db, const char *sql, hsm_status *st)
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
	if (exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
	    "PRAGMA foreign_keys=ON;", st) != 0)
		goto fail;
	if (create && exec(db, schema, st) != 0)
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

	if (exec(db, "BEGIN IMMEDIATE", st) != 0)
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
	if (exec(db, "COMMIT", st) != 0)
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
