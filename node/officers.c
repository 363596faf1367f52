/* Officers and quorums: who may approve what, and how many must. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "officers.h"
#include "store.h"

static void
describe(char *buf, size_t len, const char *role, const char *part)
{
	snprintf(buf, len, "%s%s%s", role, part[0] ? " of " : "", part);
}

int
officer_by_key(sqlite3 *db, const unsigned char *der, size_t len,
    const char *role, const char *partition, struct officer *o,
    hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	char fp[64], want[96], have[96];
	int rc;

	memset(o, 0, sizeof(*o));
	if (hsm_pubkey_check(der, len, st) != 0 ||
	    hsm_fingerprint(der, len, fp, sizeof(fp), st) != 0)
		return hsm_fail(st, "login_refused", "an approval holds an "
		    "invalid public key");
	/* Active officers first, then removed ones, for the message. */
	if (sqlite3_prepare_v2(db, "SELECT id, name, role, partition, revoked "
	    "FROM officers WHERE fingerprint = ?1 ORDER BY revoked IS NOT NULL, "
	    "(role = ?2 AND partition = ?3) DESC, id DESC", -1, &q, NULL) !=
	    SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_bind_text(q, 1, fp, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, role, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, partition, -1, SQLITE_STATIC);
	rc = sqlite3_step(q);
	describe(want, sizeof(want), role, partition);
	if (rc != SQLITE_ROW) {
		sqlite3_finalize(q);
		return hsm_fail(st, "login_refused", "unknown officer key %s",
		    fp);
	}
	snprintf(o->name, sizeof(o->name), "%s", sql_text(q, 1));
	describe(have, sizeof(have), sql_text(q, 2), sql_text(q, 3));
	if (sqlite3_column_type(q, 4) != SQLITE_NULL) {
		sqlite3_finalize(q);
		return hsm_fail(st, "login_refused", "officer %s (%s) was "
		    "removed", o->name, have);
	}
	if (strcmp(have, want) != 0) {
		sqlite3_finalize(q);
		return hsm_fail(st, "login_refused", "officer %s is a %s "
		    "officer, not %s", o->name, have, want);
	}
	o->id = sqlite3_column_int64(q, 0);
	snprintf(o->fingerprint, sizeof(o->fingerprint), "%s", fp);
	sqlite3_finalize(q);
	return 0;
}

int64_t
quorum_of(sqlite3 *db, const char *role, const char *partition)
{
	sqlite3_stmt *q = NULL;
	int64_t m = strcmp(role, "so") == 0 ? 2 : 1;

	if (sqlite3_prepare_v2(db, "SELECT m FROM quorums WHERE role = ?1 AND "
	    "partition = ?2", -1, &q, NULL) != SQLITE_OK)
		return m;
	sqlite3_bind_text(q, 1, role, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, partition, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW)
		m = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	return m;
}

static int64_t
active_count(sqlite3 *db, const char *role, const char *partition)
{
	sqlite3_stmt *q = NULL;
	int64_t n = 0;

	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM officers WHERE "
	    "role = ?1 AND partition = ?2 AND revoked IS NULL", -1, &q,
	    NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(q, 1, role, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, partition, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW)
		n = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	return n;
}

/* A partition parameter's stored value, or NULL-ish "" when unset. */
static int
partition_param(sqlite3 *db, const char *partition, const char *name,
    char *val, size_t len, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	int rc;

	val[0] = '\0';
	if (sqlite3_prepare_v2(db, "SELECT p.name, v.value FROM partitions p "
	    "LEFT JOIN partition_params v ON v.partition = p.name AND "
	    "v.name = ?2 WHERE p.name = ?1", -1, &q, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_bind_text(q, 1, partition, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		snprintf(val, len, "%s", sql_text(q, 1));
	sqlite3_finalize(q);
	if (rc != SQLITE_ROW)
		return hsm_fail(st, "not_found", "no partition '%s'",
		    partition);
	return 0;
}

int
partition_admin_on(sqlite3 *db, const char *partition, hsm_status *st)
{
	char v[16];

	if (partition_param(db, partition, "partition-admin", v, sizeof(v),
	    st) != 0)
		return -1;
	if (strcmp(v, "on") != 0)
		return hsm_fail(st, "login_refused", "the PSO role of "
		    "partition %s is disabled (partition-admin is off)",
		    partition);
	return 0;
}

/*
 * DESIGN §5: genesis manages SO officers and the SO quorum; the SO
 * (unless the partition's device-so-access is off) and the partition's
 * own PSO manage its PSO officers and quorum.  Genesis officers are set
 * at hsmd init.
 */
static int
may_manage(struct sess_ctx *s, const char *role, const char *part,
    hsm_status *st)
{
	char v[16];

	if (strcmp(role, "genesis") == 0)
		return hsm_fail(st, "not_authorized", "genesis officers are "
		    "registered at hsmd init only");
	if (strcmp(role, "so") == 0) {
		if (strcmp(s->role, "genesis") != 0)
			return hsm_fail(st, "not_authorized", "only genesis "
			    "manages SO officers and the SO quorum");
		return 0;
	}
	if (partition_param(s->db, part, "device-so-access", v, sizeof(v),
	    st) != 0)
		return -1;
	if (strcmp(s->role, "so") == 0) {
		if (strcmp(v, "off") == 0)
			return hsm_fail(st, "not_authorized", "device-so-access "
			    "of partition %s is off", part);
		return 0;
	}
	if (strcmp(s->role, "pso") == 0 && strcmp(s->partition, part) == 0)
		return 0;
	return hsm_fail(st, "not_authorized", "the %s role does not manage "
	    "PSO officers of %s", s->role, part);
}

static int
role_args(const cbor_item_t *args, char *role, size_t rlen, char *part,
    size_t plen, hsm_status *st)
{
	part[0] = '\0';
	if (arg_text(args, "role", role, rlen, true, st) != 0 ||
	    arg_text(args, "partition", part, plen, false, st) < 0)
		return -1;
	if (role_bit(role) == 0 || role_bit(role) == ROLE_USER)
		return hsm_fail(st, "bad_value", "role must be genesis, so or "
		    "pso, not '%s'", role);
	if ((strcmp(role, "pso") == 0) != (part[0] != '\0'))
		return hsm_fail(st, "bad_value", strcmp(role, "pso") == 0 ?
		    "PSO officers belong to a partition (--partition P)" :
		    "only PSO officers belong to a partition");
	if (part[0] != '\0' && !name_ok(part))
		return hsm_fail(st, "bad_value", "invalid partition name");
	return 0;
}

static int
insert_officer(sqlite3 *db, const char *role, const char *part,
    const char *name, const unsigned char *der, size_t len, char *fp,
    size_t fplen, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	int rc;

	if (hsm_pubkey_check(der, len, st) != 0 ||
	    hsm_fingerprint(der, len, fp, fplen, st) != 0)
		return -1;
	if (sqlite3_prepare_v2(db, "INSERT INTO officers (role, partition, "
	    "name, pubkey, fingerprint, created) VALUES (?1, ?2, ?3, ?4, ?5, "
	    "?6)", -1, &q, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_bind_text(q, 1, role, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, part, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, name, -1, SQLITE_STATIC);
	sqlite3_bind_blob(q, 4, der, (int)len, SQLITE_STATIC);
	sqlite3_bind_text(q, 5, fp, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 6, (int64_t)time(NULL));
	rc = sqlite3_step(q);
	sqlite3_finalize(q);
	if (rc == SQLITE_CONSTRAINT)
		return hsm_fail(st, "conflict", "an officer named %s or with "
		    "key %s is already registered for that role", name, fp);
	if (rc != SQLITE_DONE)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	return 0;
}

static int
set_quorum(sqlite3 *db, const char *role, const char *part, int64_t m,
    hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	int rc;

	if (sqlite3_prepare_v2(db, "INSERT INTO quorums (role, partition, m) "
	    "VALUES (?1, ?2, ?3) ON CONFLICT (role, partition) DO UPDATE SET "
	    "m = ?3", -1, &q, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_bind_text(q, 1, role, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, part, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 3, m);
	rc = sqlite3_step(q);
	sqlite3_finalize(q);
	if (rc != SQLITE_DONE)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	return 0;
}

int
officers_init(sqlite3 *db, const char **names, const char **pubfiles,
    size_t n, int64_t genesis_quorum, hsm_status *st)
{
	char fp[64];

	if (store_exec(db, "BEGIN IMMEDIATE", st) != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char *der = NULL;
		size_t len = 0;
		int r;

		if (!name_ok(names[i])) {
			hsm_fail(st, "bad_value", "invalid officer name '%s'",
			    names[i]);
			goto fail;
		}
		if (hsm_pubkey_read(pubfiles[i], &der, &len, st) != 0)
			goto fail;
		r = insert_officer(db, "genesis", "", names[i], der, len, fp,
		    sizeof(fp), st);
		free(der);
		if (r != 0)
			goto fail;
	}
	if ((n > 0 && set_quorum(db, "genesis", "", genesis_quorum,
	    st) != 0) || set_quorum(db, "so", "", 2, st) != 0)
		goto fail;
	return store_exec(db, "COMMIT", st);
fail:
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

int
op_officer_add(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "role", "partition", "name",
	    "pubkey", NULL };
	char role[16], part[HSM_NAME_MAX + 1], name[HSM_NAME_MAX + 1];
	char fp[64], what[256];
	const unsigned char *der;
	size_t len;

	if (args_allowed(args, names, st) != 0 ||
	    role_args(args, role, sizeof(role), part, sizeof(part), st) != 0 ||
	    arg_text(args, "name", name, sizeof(name), true, st) != 0 ||
	    arg_bytes(args, "pubkey", &der, &len, true, st) != 0)
		return -1;
	if (!name_ok(name))
		return hsm_fail(st, "bad_value", "invalid officer name '%s'",
		    name);
	if (tx_begin(s, st) != 0)
		return -1;
	if (may_manage(s, role, part, st) != 0 ||
	    insert_officer(s->db, role, part, name, der, len, fp, sizeof(fp),
	    st) != 0)
		goto fail;
	snprintf(what, sizeof(what), "role=%s%s%s name=%s key=%s", role,
	    part[0] ? " partition=" : "", part, name, fp);
	if (audit_append(s, part, "officer.add", what, "ok", st) != 0 ||
	    tx_commit(s, st) != 0)
		goto fail;
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "name", name) != 0 ||
	    hsm_map_put_str(*res, "role", role) != 0 ||
	    hsm_map_put_str(*res, "partition", part) != 0 ||
	    hsm_map_put_str(*res, "fingerprint", fp) != 0)
		return hsm_fail(st, "no_memory", "out of memory");
	return 0;
fail:
	tx_rollback(s);
	return -1;
}

int
op_officer_remove(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "role", "partition", "name",
	    NULL };
	char role[16], part[HSM_NAME_MAX + 1], name[HSM_NAME_MAX + 1];
	char what[256];
	sqlite3_stmt *q = NULL;
	int64_t n, m;

	if (args_allowed(args, names, st) != 0 ||
	    role_args(args, role, sizeof(role), part, sizeof(part), st) != 0 ||
	    arg_text(args, "name", name, sizeof(name), true, st) != 0)
		return -1;
	if (tx_begin(s, st) != 0)
		return -1;
	if (may_manage(s, role, part, st) != 0)
		goto fail;
	n = active_count(s->db, role, part);
	m = quorum_of(s->db, role, part);
	if (sqlite3_prepare_v2(s->db, "UPDATE officers SET revoked = ?4 WHERE "
	    "role = ?1 AND partition = ?2 AND name = ?3 AND revoked IS NULL",
	    -1, &q, NULL) != SQLITE_OK) {
		hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
		goto fail;
	}
	sqlite3_bind_text(q, 1, role, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, part, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 4, (int64_t)time(NULL));
	if (sqlite3_step(q) != SQLITE_DONE) {
		hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
		goto fail;
	}
	if (sqlite3_changes(s->db) == 0) {
		hsm_fail(st, "not_found", "no %s officer named %s%s%s", role,
		    name, part[0] ? " in partition " : "", part);
		goto fail;
	}
	/* Nobody may lock a role out by removing officers below quorum. */
	if (n - 1 < m) {
		hsm_fail(st, "conflict", "removing %s would leave %lld %s "
		    "officer(s) for a quorum of %lld; lower the quorum first",
		    name, (long long)(n - 1), role, (long long)m);
		goto fail;
	}
	snprintf(what, sizeof(what), "role=%s%s%s name=%s", role,
	    part[0] ? " partition=" : "", part, name);
	if (audit_append(s, part, "officer.remove", what, "ok", st) != 0 ||
	    tx_commit(s, st) != 0)
		goto fail;
	sqlite3_finalize(q);
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "removed", name) != 0)
		return hsm_fail(st, "no_memory", "out of memory");
	return 0;
fail:
	sqlite3_finalize(q);
	tx_rollback(s);
	return -1;
}

/* What a role may see: genesis and SO everything, a PSO its partition. */
static bool
visible(const struct sess_ctx *s, const char *role, const char *part)
{
	(void)role;
	if (strcmp(s->role, "pso") == 0)
		return strcmp(part, s->partition) == 0;
	return true;
}

int
op_officer_list(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	cbor_item_t *list;
	int rc;

	if (args_allowed(args, NULL, st) != 0)
		return -1;
	if ((list = cbor_new_indefinite_array()) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (sqlite3_prepare_v2(s->db, "SELECT role, partition, name, "
	    "fingerprint, created FROM officers WHERE revoked IS NULL ORDER BY "
	    "role = 'pso', role DESC, partition, name", -1, &q, NULL) !=
	    SQLITE_OK) {
		cbor_decref(&list);
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
	}
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		cbor_item_t *e;
		bool ok;

		if (!visible(s, sql_text(q, 0), sql_text(q, 1)))
			continue;
		e = cbor_new_indefinite_map();
		ok = e != NULL && hsm_map_put_str(e, "role", sql_text(q, 0)) == 0 &&
		    hsm_map_put_str(e, "partition", sql_text(q, 1)) == 0 &&
		    hsm_map_put_str(e, "name", sql_text(q, 2)) == 0 &&
		    hsm_map_put_str(e, "fingerprint", sql_text(q, 3)) == 0 &&
		    hsm_map_put_uint(e, "created",
		    (uint64_t)sqlite3_column_int64(q, 4)) == 0;
		if (!list_push(list, &e, ok)) {
			rc = SQLITE_NOMEM;
			break;
		}
	}
	sqlite3_finalize(q);
	return list_result(res, "officers", list, rc == SQLITE_DONE, "officers", st);
}

int
op_quorum_show(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	cbor_item_t *list;
	int rc;

	if (args_allowed(args, NULL, st) != 0)
		return -1;
	if ((list = cbor_new_indefinite_array()) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	/* Every role with officers or a quorum, with its n. */
	if (sqlite3_prepare_v2(s->db, "SELECT role, partition FROM (SELECT "
	    "role, partition FROM quorums UNION SELECT role, partition FROM "
	    "officers WHERE revoked IS NULL) ORDER BY role = 'pso', role DESC, "
	    "partition", -1, &q, NULL) !=
	    SQLITE_OK) {
		cbor_decref(&list);
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
	}
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		char role[16], part[HSM_NAME_MAX + 1];
		cbor_item_t *e;
		bool ok;

		snprintf(role, sizeof(role), "%s", sql_text(q, 0));
		snprintf(part, sizeof(part), "%s", sql_text(q, 1));
		if (!visible(s, role, part))
			continue;
		e = cbor_new_indefinite_map();
		ok = e != NULL && hsm_map_put_str(e, "role", role) == 0 &&
		    hsm_map_put_str(e, "partition", part) == 0 &&
		    hsm_map_put_uint(e, "m",
		    (uint64_t)quorum_of(s->db, role, part)) == 0 &&
		    hsm_map_put_uint(e, "n",
		    (uint64_t)active_count(s->db, role, part)) == 0;
		if (!list_push(list, &e, ok)) {
			rc = SQLITE_NOMEM;
			break;
		}
	}
	sqlite3_finalize(q);
	return list_result(res, "quorums", list, rc == SQLITE_DONE, "quorums", st);
}

int
op_quorum_set(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "role", "partition", "m", NULL };
	char role[16], part[HSM_NAME_MAX + 1], what[160];
	uint64_t m;
	int64_t n;

	if (args_allowed(args, names, st) != 0 ||
	    role_args(args, role, sizeof(role), part, sizeof(part), st) != 0 ||
	    arg_uint(args, "m", &m, true, st) != 0)
		return -1;
	if (tx_begin(s, st) != 0)
		return -1;
	if (may_manage(s, role, part, st) != 0)
		goto fail;
	/* Four-eyes for the device SO, unless this is a sandbox node. */
	if (strcmp(role, "so") == 0 && m < 2 && !s->node->sandbox) {
		hsm_fail(st, "conflict", "the SO quorum cannot go below 2 "
		    "(four-eyes) on a node not initialised with --sandbox");
		goto fail;
	}
	n = active_count(s->db, role, part);
	if (m < 1 || (int64_t)m > n) {
		hsm_fail(st, "conflict", "a %s quorum must be 1..%lld (the "
		    "number of %s officers), not %llu", role, (long long)n,
		    role, (unsigned long long)m);
		goto fail;
	}
	if (set_quorum(s->db, role, part, (int64_t)m, st) != 0)
		goto fail;
	snprintf(what, sizeof(what), "role=%s%s%s m=%llu", role,
	    part[0] ? " partition=" : "", part, (unsigned long long)m);
	if (audit_append(s, part, "quorum.set", what, "ok", st) != 0 ||
	    tx_commit(s, st) != 0)
		goto fail;
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "role", role) != 0 ||
	    hsm_map_put_str(*res, "partition", part) != 0 ||
	    hsm_map_put_uint(*res, "m", m) != 0 ||
	    hsm_map_put_uint(*res, "n", (uint64_t)n) != 0)
		return hsm_fail(st, "no_memory", "out of memory");
	return 0;
fail:
	tx_rollback(s);
	return -1;
}
