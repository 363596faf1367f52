/* The hash-chained audit log (see audit.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "audit.h"
#include "log.h"
#include "store.h"

#define HASH_LEN 32
#define LOG_LIMIT_MAX 10000

struct entry {
	int64_t seq, time;
	const char *node, *session, *role, *partition, *officers, *op, *args,
	    *result;
};

/* SHA-256(prev || CBOR [seq, time, node, ..., result]). */
static int
entry_hash(const struct entry *e, const unsigned char *prev,
    unsigned char out[HASH_LEN], hsm_status *st)
{
	const char *f[] = { e->node, e->session, e->role, e->partition,
	    e->officers, e->op, e->args, e->result };
	cbor_item_t *a = cbor_new_definite_array(2 + sizeof(f) / sizeof(f[0]));
	unsigned char *buf = NULL;
	size_t len = 0;
	unsigned int mdlen = 0;
	EVP_MD_CTX *md = NULL;
	bool ok = a != NULL;
	int r = -1;

	ok = ok && cbor_array_push(a, cbor_move(cbor_build_uint64(
	    (uint64_t)e->seq)));
	ok = ok && cbor_array_push(a, cbor_move(cbor_build_uint64(
	    (uint64_t)e->time)));
	for (size_t i = 0; ok && i < sizeof(f) / sizeof(f[0]); i++)
		ok = cbor_array_push(a, cbor_move(cbor_build_string(f[i])));
	if (!ok) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (hsm_cbor_encode(a, &buf, &len, st) != 0)
		goto out;
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, prev, HASH_LEN) != 1 ||
	    EVP_DigestUpdate(md, buf, len) != 1 ||
	    EVP_DigestFinal_ex(md, out, &mdlen) != 1 || mdlen != HASH_LEN) {
		hsm_fail(st, "internal", "SHA-256 failed");
		goto out;
	}
	r = 0;
out:
	EVP_MD_CTX_free(md);
	free(buf);
	if (a != NULL)
		cbor_decref(&a);
	return r;
}

/* The newest entry's seq and hash (zeros for an empty log). */
static int
head(sqlite3 *db, int64_t *seq, unsigned char hash[HASH_LEN], hsm_status *st)
{
	sqlite3_stmt *s = NULL;
	int rc;

	*seq = 0;
	memset(hash, 0, HASH_LEN);
	if (sqlite3_prepare_v2(db, "SELECT seq, hash FROM audit ORDER BY seq "
	    "DESC LIMIT 1", -1, &s, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		*seq = sqlite3_column_int64(s, 0);
		if (sqlite3_column_bytes(s, 1) == HASH_LEN)
			memcpy(hash, sqlite3_column_blob(s, 1), HASH_LEN);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	/*
	 * The recorded head is ahead of the table when newest entries were
	 * removed: chain on from the record, so the gap stays visible to
	 * audit verify instead of being papered over by the next entry.
	 */
	if (store_meta_int(db, "audit_count", 0) > *seq) {
		char want[2 * HASH_LEN + 1] = "";
		sqlite3_stmt *m = NULL;

		*seq = store_meta_int(db, "audit_count", 0);
		if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = "
		    "'audit_head'", -1, &m, NULL) == SQLITE_OK &&
		    sqlite3_step(m) == SQLITE_ROW)
			snprintf(want, sizeof(want), "%s",
			    sqlite3_column_text(m, 0));
		sqlite3_finalize(m);
		for (size_t i = 0; i < HASH_LEN && strlen(want) ==
		    2 * HASH_LEN; i++) {
			unsigned int b;

			if (sscanf(want + 2 * i, "%2x", &b) != 1)
				break;
			hash[i] = (unsigned char)b;
		}
	}
	return 0;
}

void
audit_head_hex(sqlite3 *db, char *out, size_t len)
{
	unsigned char h[HASH_LEN];
	int64_t seq;
	char buf[2 * HASH_LEN + 1];

	if (head(db, &seq, h, NULL) != 0)
		memset(h, 0, sizeof(h));
	hsm_hex(h, HASH_LEN, buf);
	snprintf(out, len, "%s", buf);
}

int
audit_append_raw(sqlite3 *db, int64_t when, const char *const f[AUDIT_FIELDS],
    hsm_status *st)
{
	struct entry e;
	unsigned char prev[HASH_LEN], h[HASH_LEN];
	char headhex[2 * HASH_LEN + 1], num[32];
	sqlite3_stmt *q = NULL;
	int r = -1;

	if (head(db, &e.seq, prev, st) != 0)
		return -1;
	e.seq++;
	e.time = when;
	e.node = f[0];
	e.session = f[1];
	e.role = f[2];
	e.partition = f[3];
	e.officers = f[4];
	e.op = f[5];
	e.args = f[6];
	e.result = f[7];
	if (entry_hash(&e, prev, h, st) != 0)
		return -1;
	if (sqlite3_prepare_v2(db, "INSERT INTO audit (seq, time, node, "
	    "session, role, partition, officers, op, args, result, prev, hash) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)", -1,
	    &q, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_bind_int64(q, 1, e.seq);
	sqlite3_bind_int64(q, 2, e.time);
	for (int i = 0; i < AUDIT_FIELDS; i++)
		sqlite3_bind_text(q, 3 + i, f[i], -1, SQLITE_STATIC);
	sqlite3_bind_blob(q, 11, prev, HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(q, 12, h, HASH_LEN, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_DONE)
		goto fail;
	hsm_hex(h, HASH_LEN, headhex);
	snprintf(num, sizeof(num), "%" PRId64, e.seq);
	if (store_meta_set(db, "audit_head", headhex, st) != 0 ||
	    store_meta_set(db, "audit_count", num, st) != 0)
		goto out;
	r = 0;
	goto out;
fail:
	hsm_fail(st, "io", "audit: %s", sqlite3_errmsg(db));
out:
	sqlite3_finalize(q);
	return r;
}

int
audit_append(struct sess_ctx *s, const char *partition, const char *op,
    const char *args, const char *result, hsm_status *st)
{
	const char *f[AUDIT_FIELDS] = {
		s->node->name, s->id, s->role[0] ? s->role : "-",
		partition != NULL ? partition : s->partition, s->officers,
		op, args, result,
	};

	return audit_append_raw(s->db, (int64_t)time(NULL), f, st);
}

int
audit_record(struct sess_ctx *s, const char *op, const char *args,
    const char *result)
{
	hsm_status st;

	hsm_status_clear(&st);
	/* Inside a batch's transaction, the entry goes with it. */
	if (!sqlite3_get_autocommit(s->db)) {
		if (store_exec(s->db, "SAVEPOINT audit_record", &st) != 0 ||
		    audit_append(s, NULL, op, args, result, &st) != 0 ||
		    store_exec(s->db, "RELEASE audit_record", &st) != 0) {
			sqlite3_exec(s->db, "ROLLBACK TO audit_record; "
			    "RELEASE audit_record", NULL, NULL, NULL);
			log_warn("%s: cannot write audit entry for %s: %s",
			    s->peer, op, st.message);
			return -1;
		}
		return 0;
	}
	if (store_exec(s->db, "BEGIN IMMEDIATE", &st) != 0 ||
	    audit_append(s, NULL, op, args, result, &st) != 0 ||
	    store_exec(s->db, "COMMIT", &st) != 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		log_warn("%s: cannot write audit entry for %s: %s", s->peer, op,
		    st.message);
		return -1;
	}
	return 0;
}

int
op_audit_verify(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { NULL };
	sqlite3_stmt *q = NULL;
	unsigned char prev[HASH_LEN], h[HASH_LEN];
	char headhex[2 * HASH_LEN + 1], want[2 * HASH_LEN + 1];
	int64_t expect = 1, count;
	int rc, r = -1;

	if (args_allowed(args, names, st) != 0)
		return -1;
	memset(prev, 0, sizeof(prev));
	/* One read transaction: a consistent view while others append. */
	if (store_exec(s->db, "BEGIN", st) != 0)
		return -1;
	if (sqlite3_prepare_v2(s->db, "SELECT seq, time, node, session, role, "
	    "partition, officers, op, args, result, prev, hash FROM audit "
	    "ORDER BY seq", -1, &q, NULL) != SQLITE_OK) {
		hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
		goto out;
	}
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct entry e;

		e.seq = sqlite3_column_int64(q, 0);
		e.time = sqlite3_column_int64(q, 1);
		e.node = sql_text(q, 2);
		e.session = sql_text(q, 3);
		e.role = sql_text(q, 4);
		e.partition = sql_text(q, 5);
		e.officers = sql_text(q, 6);
		e.op = sql_text(q, 7);
		e.args = sql_text(q, 8);
		e.result = sql_text(q, 9);
		if (e.seq != expect) {
			hsm_fail(st, "integrity", "audit log broken at entry "
			    "%" PRId64 ": entry %" PRId64 " is missing or out "
			    "of order", e.seq, expect);
			goto out;
		}
		if (sqlite3_column_bytes(q, 10) != HASH_LEN ||
		    memcmp(sqlite3_column_blob(q, 10), prev, HASH_LEN) != 0) {
			hsm_fail(st, "integrity", "audit log broken at entry "
			    "%" PRId64 ": it does not follow entry %" PRId64,
			    e.seq, e.seq - 1);
			goto out;
		}
		if (entry_hash(&e, prev, h, st) != 0)
			goto out;
		if (sqlite3_column_bytes(q, 11) != HASH_LEN ||
		    memcmp(sqlite3_column_blob(q, 11), h, HASH_LEN) != 0) {
			hsm_fail(st, "integrity", "audit log broken at entry "
			    "%" PRId64 ": its content was altered", e.seq);
			goto out;
		}
		memcpy(prev, h, HASH_LEN);
		expect++;
	}
	if (rc != SQLITE_DONE) {
		hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
		goto out;
	}
	/* The head in meta catches entries removed from the end. */
	count = store_meta_int(s->db, "audit_count", 0);
	hsm_hex(prev, HASH_LEN, headhex);
	{
		sqlite3_stmt *m = NULL;

		want[0] = '\0';
		if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE "
		    "key = 'audit_head'", -1, &m, NULL) == SQLITE_OK &&
		    sqlite3_step(m) == SQLITE_ROW)
			snprintf(want, sizeof(want), "%s", sql_text(m, 0));
		sqlite3_finalize(m);
	}
	if (count != expect - 1 || (count > 0 && strcmp(want, headhex) != 0)) {
		hsm_fail(st, "integrity", "audit log broken at entry %" PRId64
		    ": the log ends before its recorded head (entry %" PRId64
		    ")", expect, count);
		goto out;
	}
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_uint(*res, "entries", (uint64_t)count) != 0 ||
	    hsm_map_put_str(*res, "head", headhex) != 0 ||
	    hsm_map_put_bool(*res, "ok", true) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = 0;
out:
	sqlite3_finalize(q);
	sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	if (r != 0 && *res != NULL)
		cbor_decref(res);
	return r;
}

int
op_audit_log(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "partition", "since", "limit",
	    NULL };
	char part[HSM_NAME_MAX + 1] = "";
	uint64_t since = 0, limit = 100;
	sqlite3_stmt *q = NULL;
	cbor_item_t *list = NULL;
	int rc, r = -1;

	if (args_allowed(args, names, st) != 0 ||
	    arg_text(args, "partition", part, sizeof(part), false, st) < 0 ||
	    arg_uint(args, "since", &since, false, st) < 0 ||
	    arg_uint(args, "limit", &limit, false, st) < 0)
		return -1;
	if (limit == 0 || limit > LOG_LIMIT_MAX)
		return hsm_fail(st, "bad_value", "limit must be 1..%d",
		    LOG_LIMIT_MAX);
	/* A PSO reads the entries of its own partition only. */
	if (strcmp(s->role, "pso") == 0) {
		if (part[0] != '\0' && strcmp(part, s->partition) != 0)
			return hsm_fail(st, "not_authorized", "a PSO of %s "
			    "reads only that partition's entries",
			    s->partition);
		snprintf(part, sizeof(part), "%s", s->partition);
	}
	/* The newest `limit` entries, shown oldest first. */
	if (sqlite3_prepare_v2(s->db, "SELECT * FROM (SELECT seq, time, node, "
	    "session, role, partition, officers, op, args, result FROM audit "
	    "WHERE time >= ?1 AND (?2 = '' OR partition = ?2) ORDER BY seq "
	    "DESC LIMIT ?3) ORDER BY seq", -1, &q, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
	sqlite3_bind_int64(q, 1, (int64_t)since);
	sqlite3_bind_text(q, 2, part, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 3, (int64_t)limit);
	if ((list = cbor_new_indefinite_array()) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		cbor_item_t *e = cbor_new_indefinite_map();
		bool ok = e != NULL &&
		    hsm_map_put_uint(e, "seq",
		    (uint64_t)sqlite3_column_int64(q, 0)) == 0 &&
		    hsm_map_put_uint(e, "time",
		    (uint64_t)sqlite3_column_int64(q, 1)) == 0 &&
		    hsm_map_put_str(e, "node", sql_text(q, 2)) == 0 &&
		    hsm_map_put_str(e, "session", sql_text(q, 3)) == 0 &&
		    hsm_map_put_str(e, "role", sql_text(q, 4)) == 0 &&
		    hsm_map_put_str(e, "partition", sql_text(q, 5)) == 0 &&
		    hsm_map_put_str(e, "officers", sql_text(q, 6)) == 0 &&
		    hsm_map_put_str(e, "op", sql_text(q, 7)) == 0 &&
		    hsm_map_put_str(e, "args", sql_text(q, 8)) == 0 &&
		    hsm_map_put_str(e, "result", sql_text(q, 9)) == 0;

		if (!ok || !cbor_array_push(list, e)) {
			if (e != NULL)
				cbor_decref(&e);
			hsm_fail(st, "no_memory", "out of memory");
			goto out;
		}
		cbor_decref(&e);
	}
	if (rc != SQLITE_DONE) {
		hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
		goto out;
	}
	if ((*res = cbor_new_indefinite_map()) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = hsm_map_put(*res, "entries", list);	/* takes list */
	list = NULL;
	if (r != 0)
		hsm_fail(st, "no_memory", "out of memory");
out:
	sqlite3_finalize(q);
	if (list != NULL)
		cbor_decref(&list);
	if (r != 0 && *res != NULL)
		cbor_decref(res);
	return r;
}
