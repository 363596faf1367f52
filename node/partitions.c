/*
 * Partitions and their parameters (DESIGN §5, §6), enforced here: the
 * client checks early for a better message, never instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "audit.h"
#include "objects.h"
#include "officers.h"
#include "partitions.h"
#include "store.h"

#define SECRET_BYTES 32		/* 256 bits */
#define SALT_BYTES 16

struct part {
	char name[HSM_NAME_MAX + 1];
	char profile[32];
	int64_t created, rotated;
	char values[64][HSM_PARAM_VALUE_MAX];	/* by hsm_params index */
};

static size_t
param_index(const struct hsm_param *p)
{
	return (size_t)(p - hsm_params);
}

static const char *
value_of(const struct part *p, const char *param)
{
	const struct hsm_param *d = hsm_param_find(param);

	return d != NULL ? p->values[param_index(d)] : "";
}

/* Load a partition; not_found if there is none. */
static int
load(sqlite3 *db, const char *name, struct part *p, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	int rc;

	memset(p, 0, sizeof(*p));
	if (hsm_nparams > 64)
		return hsm_fail(st, "internal", "too many parameters");
	for (size_t i = 0; i < hsm_nparams; i++)
		snprintf(p->values[i], sizeof(p->values[i]), "%s",
		    hsm_params[i].dflt);
	if (sqlite3_prepare_v2(db, "SELECT name, profile, created, "
	    "coalesce(secret_rotated, 0) FROM partitions WHERE name = ?1", -1,
	    &q, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		snprintf(p->name, sizeof(p->name), "%s",
		    sqlite3_column_text(q, 0));
		snprintf(p->profile, sizeof(p->profile), "%s",
		    sqlite3_column_text(q, 1));
		p->created = sqlite3_column_int64(q, 2);
		p->rotated = sqlite3_column_int64(q, 3);
	}
	sqlite3_finalize(q);
	if (rc != SQLITE_ROW)
		return hsm_fail(st, "not_found", "no partition '%s'", name);
	if (sqlite3_prepare_v2(db, "SELECT name, value FROM partition_params "
	    "WHERE partition = ?1", -1, &q, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	while (sqlite3_step(q) == SQLITE_ROW) {
		const struct hsm_param *d = hsm_param_find(
		    (const char *)sqlite3_column_text(q, 0));

		if (d != NULL)
			snprintf(p->values[param_index(d)],
			    sizeof(p->values[0]), "%s",
			    sqlite3_column_text(q, 1));
	}
	sqlite3_finalize(q);
	return 0;
}

/*
 * Who may touch partition P at all (DESIGN §5): the device SO unless
 * device-so-access is off; the PSO logged in for P; nobody else.
 */
static int
access_check(const struct sess_ctx *s, const struct part *p, hsm_status *st)
{
	if (strcmp(s->role, "so") == 0) {
		if (strcmp(value_of(p, "device-so-access"), "off") == 0)
			return hsm_fail(st, "not_authorized", "device-so-access "
			    "of partition %s is off: the device SO can no "
			    "longer read or change it", p->name);
		return 0;
	}
	if (strcmp(s->role, "pso") == 0 && strcmp(s->partition, p->name) == 0)
		return 0;
	return hsm_fail(st, "not_authorized", "the %s role has no access to "
	    "partition %s", s->role[0] ? s->role : "current", p->name);
}

#define usage objects_usage

/*
 * Check one pair for role s on partition p, normalising value into out.
 * The whole set is checked before anything is written.
 */
static int
check_pair(const struct sess_ctx *s, const struct part *p, const char *profile,
    const char *param, const char *value, char *out, size_t outlen,
    bool creating, hsm_status *st)
{
	const struct hsm_param *d = hsm_param_find(param);
	int64_t objects, invalidated, bytes;

	if (d == NULL)
		return hsm_fail(st, "bad_value", "unknown parameter '%.64s'",
		    param);
	if (hsm_param_normalize(d, value, out, outlen, st) != 0)
		return -1;
	(void)creating;
	if (strcmp(s->role, "so") == 0 && (d->flags & HSM_PARAM_PSO_ONLY))
		return hsm_fail(st, "not_authorized", "%s=%s: only the PSO "
		    "sets %s", param, out, param);
	if (strcmp(s->role, "pso") == 0) {
		if (d->flags & HSM_PARAM_COST)
			return hsm_fail(st, "not_authorized", "%s=%s: %s is a "
			    "cost option, changed by the device SO only",
			    param, out, param);
		if (strcmp(value_of(p, "partition-admin"), "on") != 0)
			return hsm_fail(st, "not_authorized", "%s=%s: the PSO "
			    "role of %s is disabled (partition-admin is off)",
			    param, out, p->name);
	}
	if (strcmp(profile, "eco-cc") == 0 &&
	    strcmp(param, "key-extraction") == 0 && strcmp(out, "off") != 0)
		return hsm_fail(st, "conflict", "%s=%s: a partition of the "
		    "certified profile eco-cc keeps key-extraction off", param,
		    out);
	usage(s->db, p->name, &objects, &invalidated, &bytes);
	if (strcmp(param, "max-key-objects") == 0 && strcmp(out, "0") != 0 &&
	    strtoll(out, NULL, 10) < objects + invalidated)
		return hsm_fail(st, "conflict", "%s=%s: the partition holds "
		    "%lld objects", param, out,
		    (long long)(objects + invalidated));
	if (strcmp(param, "size-mb") == 0 &&
	    strtoll(out, NULL, 10) * 1024 * 1024 < bytes)
		return hsm_fail(st, "conflict", "%s=%s: the partition uses "
		    "%lld bytes", param, out, (long long)bytes);
	return 0;
}

static int
put_param(sqlite3 *db, const char *part, const char *name, const char *value,
    hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	int rc;

	if (sqlite3_prepare_v2(db, "INSERT INTO partition_params (partition, "
	    "name, value) VALUES (?1, ?2, ?3) ON CONFLICT (partition, name) "
	    "DO UPDATE SET value = ?3", -1, &q, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, value, -1, SQLITE_STATIC);
	rc = sqlite3_step(q);
	sqlite3_finalize(q);
	if (rc != SQLITE_DONE)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	return 0;
}

static cbor_item_t *
params_map(const struct part *p)
{
	cbor_item_t *m = cbor_new_indefinite_map();

	for (size_t i = 0; m != NULL && i < hsm_nparams; i++)
		if (hsm_map_put_str(m, hsm_params[i].name, p->values[i]) != 0)
			cbor_decref(&m);
	return m;
}

/* The "params" argument: a map of text to text, at most one per name. */
static int
pairs_arg(const cbor_item_t *args, const cbor_item_t **pairs, hsm_status *st)
{
	const cbor_item_t *m = hsm_map_get(args, "params");
	struct cbor_pair *h;

	*pairs = m;
	if (m == NULL)
		return 0;
	if (!cbor_isa_map(m))
		return hsm_fail(st, "bad_request", "'params' is not a map");
	h = cbor_map_handle(m);
	for (size_t i = 0; i < cbor_map_size(m); i++)
		if (!cbor_isa_string(h[i].value) ||
		    cbor_string_length(h[i].key) > 64 ||
		    cbor_string_length(h[i].value) >= HSM_PARAM_VALUE_MAX)
			return hsm_fail(st, "bad_request", "'params' must map "
			    "parameter names to text values");
	return 0;
}

static void
pair_text(const struct cbor_pair *pr, char *k, size_t kl, char *v, size_t vl)
{
	snprintf(k, kl, "%.*s", (int)cbor_string_length(pr->key),
	    (const char *)cbor_string_handle(pr->key));
	snprintf(v, vl, "%.*s", (int)cbor_string_length(pr->value),
	    (const char *)cbor_string_handle(pr->value));
}

static int
name_arg(const cbor_item_t *args, char *name, hsm_status *st)
{
	if (arg_text(args, "name", name, HSM_NAME_MAX + 1, true, st) != 0)
		return -1;
	if (!hsm_partition_name_ok(name))
		return hsm_fail(st, "bad_value", "invalid partition name '%s' "
		    "([a-z0-9][a-z0-9-]{0,62})", name);
	return 0;
}

int
op_partition_create(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "name", "profile", "params",
	    NULL };
	struct part *p = NULL;
	const struct hsm_profile *prof;
	const cbor_item_t *pairs;
	char name[HSM_NAME_MAX + 1], profile[32] = "eco", what[256];
	char k[80], v[HSM_PARAM_VALUE_MAX], norm[HSM_PARAM_VALUE_MAX];
	sqlite3_stmt *q = NULL;
	int rc, r = -1;

	if (args_allowed(args, names, st) != 0 || name_arg(args, name,
	    st) != 0 || arg_text(args, "profile", profile, sizeof(profile),
	    false, st) < 0 || pairs_arg(args, &pairs, st) != 0)
		return -1;
	if ((prof = hsm_profile_find(profile)) == NULL)
		return hsm_fail(st, "bad_value", "unknown profile '%s'",
		    profile);
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	snprintf(p->name, sizeof(p->name), "%s", name);
	for (size_t i = 0; i < hsm_nparams; i++)
		snprintf(p->values[i], sizeof(p->values[i]), "%s",
		    hsm_params[i].dflt);
	/* Defaults, then the profile, then what was asked for. */
	for (const char *const *set = prof->settings; set != NULL &&
	    *set != NULL; set++) {
		const char *eq = strchr(*set, '=');
		const struct hsm_param *d;

		snprintf(k, sizeof(k), "%.*s", (int)(eq - *set), *set);
		if ((d = hsm_param_find(k)) != NULL)
			snprintf(p->values[param_index(d)],
			    sizeof(p->values[0]), "%s", eq + 1);
	}
	for (size_t i = 0; pairs != NULL && i < cbor_map_size(pairs); i++) {
		pair_text(&cbor_map_handle(pairs)[i], k, sizeof(k), v,
		    sizeof(v));
		if (check_pair(s, p, profile, k, v, norm, sizeof(norm), true,
		    st) != 0)
			goto out;
		snprintf(p->values[param_index(hsm_param_find(k))],
		    sizeof(p->values[0]), "%s", norm);
	}
	if (tx_begin(s, st) != 0)
		goto out;
	if (sqlite3_prepare_v2(s->db, "INSERT INTO partitions (name, created, "
	    "profile) VALUES (?1, ?2, ?3)", -1, &q, NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, (int64_t)time(NULL));
	sqlite3_bind_text(q, 3, profile, -1, SQLITE_STATIC);
	rc = sqlite3_step(q);
	sqlite3_finalize(q);
	q = NULL;
	if (rc == SQLITE_CONSTRAINT) {
		hsm_fail(st, "conflict", "partition %s exists", name);
		tx_rollback(s);
		goto out;
	}
	if (rc != SQLITE_DONE)
		goto sqlfail;
	for (size_t i = 0; i < hsm_nparams; i++)
		if (put_param(s->db, name, hsm_params[i].name, p->values[i],
		    st) != 0) {
			tx_rollback(s);
			goto out;
		}
	snprintf(what, sizeof(what), "name=%s profile=%s", name, profile);
	if (audit_append(s, name, "partition.create", what, "ok", st) != 0 ||
	    tx_commit(s, st) != 0) {
		tx_rollback(s);
		goto out;
	}
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "name", name) != 0 ||
	    hsm_map_put_str(*res, "profile", profile) != 0 ||
	    hsm_map_put(*res, "params", params_map(p)) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = 0;
	goto out;
sqlfail:
	hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
	tx_rollback(s);
out:
	free(p);
	return r;
}

int
op_partition_list(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	cbor_item_t *list;
	int rc;

	if (args_allowed(args, NULL, st) != 0)
		return -1;
	if ((list = cbor_new_indefinite_array()) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (sqlite3_prepare_v2(s->db, "SELECT name, profile, created FROM "
	    "partitions ORDER BY name", -1, &q, NULL) != SQLITE_OK) {
		cbor_decref(&list);
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
	}
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *n = (const char *)sqlite3_column_text(q, 0);
		cbor_item_t *e;
		bool ok;

		/* A PSO sees its own partition only. */
		if (strcmp(s->role, "pso") == 0 && strcmp(n, s->partition) != 0)
			continue;
		e = cbor_new_indefinite_map();
		ok = e != NULL && hsm_map_put_str(e, "name", n) == 0 &&
		    hsm_map_put_str(e, "profile",
		    (const char *)sqlite3_column_text(q, 1)) == 0 &&
		    hsm_map_put_uint(e, "created",
		    (uint64_t)sqlite3_column_int64(q, 2)) == 0;
		if (!list_push(list, &e, ok)) {
			rc = SQLITE_NOMEM;
			break;
		}
	}
	sqlite3_finalize(q);
	return list_result(res, "partitions", list, rc == SQLITE_DONE, "partitions", st);
}

static cbor_item_t *
pso_names(sqlite3 *db, const char *part)
{
	sqlite3_stmt *q = NULL;
	cbor_item_t *a = cbor_new_indefinite_array();

	if (a == NULL || sqlite3_prepare_v2(db, "SELECT name FROM officers "
	    "WHERE role = 'pso' AND partition = ?1 AND revoked IS NULL ORDER "
	    "BY name", -1, &q, NULL) != SQLITE_OK) {
		if (a != NULL)
			cbor_decref(&a);
		return NULL;
	}
	sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC);
	while (a != NULL && sqlite3_step(q) == SQLITE_ROW) {
		cbor_item_t *n = cbor_build_string(
		    (const char *)sqlite3_column_text(q, 0));

		if (n == NULL || !cbor_array_push(a, n))
			cbor_decref(&a);
		if (n != NULL)
			cbor_decref(&n);
	}
	sqlite3_finalize(q);
	return a;
}

int
op_partition_show(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "name", NULL };
	struct part *p;
	char name[HSM_NAME_MAX + 1];
	int64_t objects, invalidated, bytes, n;
	cbor_item_t *u = NULL, *qm = NULL;
	int r = -1;

	if (args_allowed(args, names, st) != 0 || name_arg(args, name,
	    st) != 0)
		return -1;
	if ((p = malloc(sizeof(*p))) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (load(s->db, name, p, st) != 0 || access_check(s, p, st) != 0)
		goto out;
	usage(s->db, name, &objects, &invalidated, &bytes);
	{
		sqlite3_stmt *q = NULL;

		n = 0;
		if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM officers "
		    "WHERE role = 'pso' AND partition = ?1 AND revoked IS "
		    "NULL", -1, &q, NULL) == SQLITE_OK) {
			sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
			if (sqlite3_step(q) == SQLITE_ROW)
				n = sqlite3_column_int64(q, 0);
		}
		sqlite3_finalize(q);
	}
	if ((u = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_uint(u, "objects", (uint64_t)objects) != 0 ||
	    hsm_map_put_uint(u, "invalidated", (uint64_t)invalidated) != 0 ||
	    hsm_map_put_uint(u, "bytes", (uint64_t)bytes) != 0 ||
	    hsm_map_put_uint(u, "size_mb", strtoull(value_of(p, "size-mb"),
	    NULL, 10)) != 0 ||
	    hsm_map_put_uint(u, "max_key_objects",
	    strtoull(value_of(p, "max-key-objects"), NULL, 10)) != 0 ||
	    (qm = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_uint(qm, "m", (uint64_t)quorum_of(s->db, "pso",
	    name)) != 0 || hsm_map_put_uint(qm, "n", (uint64_t)n) != 0 ||
	    (*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "name", p->name) != 0 ||
	    hsm_map_put_str(*res, "profile", p->profile) != 0 ||
	    hsm_map_put_uint(*res, "created", (uint64_t)p->created) != 0 ||
	    hsm_map_put(*res, "params", params_map(p)) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = hsm_map_put(*res, "usage", u);
	u = NULL;
	if (r == 0)
		r = hsm_map_put(*res, "officers", pso_names(s->db, name));
	if (r == 0)
		r = hsm_map_put(*res, "quorum", qm);
	qm = NULL;
	if (r == 0)
		r = hsm_map_put_uint(*res, "secret_rotated",
		    (uint64_t)p->rotated);
	if (r != 0)
		hsm_fail(st, "no_memory", "out of memory");
out:
	if (u != NULL)
		cbor_decref(&u);
	if (qm != NULL)
		cbor_decref(&qm);
	free(p);
	return r;
}

int
op_partition_get(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "name", "param", NULL };
	struct part *p;
	char name[HSM_NAME_MAX + 1], param[80];
	int r = -1;

	if (args_allowed(args, names, st) != 0 || name_arg(args, name,
	    st) != 0 || arg_text(args, "param", param, sizeof(param), true,
	    st) != 0)
		return -1;
	if (hsm_param_find(param) == NULL)
		return hsm_fail(st, "bad_value", "unknown parameter '%s'",
		    param);
	if ((p = malloc(sizeof(*p))) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (load(s->db, name, p, st) != 0 || access_check(s, p, st) != 0)
		goto out;
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "name", name) != 0 ||
	    hsm_map_put_str(*res, "param", param) != 0 ||
	    hsm_map_put_str(*res, "value", value_of(p, param)) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = 0;
out:
	free(p);
	return r;
}

int
op_partition_set(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "name", "params", NULL };
	struct part *p;
	const cbor_item_t *pairs;
	char name[HSM_NAME_MAX + 1], k[80], v[HSM_PARAM_VALUE_MAX];
	char norm[HSM_PARAM_VALUE_MAX], what[1024] = "";
	cbor_item_t *changed = NULL;
	size_t n, off = 0;
	int r = -1;

	if (args_allowed(args, names, st) != 0 || name_arg(args, name,
	    st) != 0 || pairs_arg(args, &pairs, st) != 0)
		return -1;
	if (pairs == NULL || (n = cbor_map_size(pairs)) == 0)
		return hsm_fail(st, "bad_request", "nothing to set");
	if ((p = malloc(sizeof(*p))) == NULL ||
	    (changed = cbor_new_indefinite_map()) == NULL) {
		free(p);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	if (tx_begin(s, st) != 0)
		goto out;
	/* All pairs checked first, in one transaction: all or nothing. */
	if (load(s->db, name, p, st) != 0 || access_check(s, p, st) != 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		pair_text(&cbor_map_handle(pairs)[i], k, sizeof(k), v,
		    sizeof(v));
		if (check_pair(s, p, p->profile, k, v, norm, sizeof(norm),
		    false, st) != 0)
			goto fail;
		/* Only real changes are written, audited and reported. */
		if (strcmp(value_of(p, k), norm) == 0)
			continue;
		if (hsm_map_put_str(changed, k, norm) != 0) {
			hsm_fail(st, "no_memory", "out of memory");
			goto fail;
		}
	}
	for (size_t i = 0; i < cbor_map_size(changed); i++) {
		const struct cbor_pair *pr = &cbor_map_handle(changed)[i];

		pair_text(pr, k, sizeof(k), v, sizeof(v));
		if (put_param(s->db, name, k, v, st) != 0)
			goto fail;
		if (off < sizeof(what))
			off += (size_t)snprintf(what + off, sizeof(what) - off,
			    "%s%s=%s", off ? " " : "", k, v);
	}
	if ((cbor_map_size(changed) > 0 && audit_append(s, name,
	    "partition.set", what, "ok", st) != 0) || tx_commit(s, st) != 0)
		goto fail;
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "name", name) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = hsm_map_put(*res, "changed", changed);
	changed = NULL;
	goto out;
fail:
	tx_rollback(s);
out:
	if (changed != NULL)
		cbor_decref(&changed);
	free(p);
	return r;
}

static int
exec_bound(sqlite3 *db, const char *sql, const char *a, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	int rc;

	if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_bind_text(q, 1, a, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, (int64_t)time(NULL));
	rc = sqlite3_step(q);
	sqlite3_finalize(q);
	return rc == SQLITE_DONE ? 0 : hsm_fail(st, "io", "store: %s",
	    sqlite3_errmsg(db));
}

int
op_partition_delete(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "name", "force", NULL };
	struct part *p;
	const cbor_item_t *f = hsm_map_get(args, "force");
	char name[HSM_NAME_MAX + 1];
	int64_t objects, invalidated, bytes;
	bool force;
	int r = -1;

	if (args_allowed(args, names, st) != 0 || name_arg(args, name,
	    st) != 0)
		return -1;
	if (f != NULL && !hsm_cbor_is_bool(f))
		return hsm_fail(st, "bad_request", "'force' is not a boolean");
	force = f != NULL && cbor_get_bool(f);
	if ((p = malloc(sizeof(*p))) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (tx_begin(s, st) != 0)
		goto out;
	if (load(s->db, name, p, st) != 0 || access_check(s, p, st) != 0)
		goto fail;
	usage(s->db, name, &objects, &invalidated, &bytes);
	if (objects + invalidated > 0 && !force) {
		hsm_fail(st, "conflict", "partition %s holds %lld objects; "
		    "delete them first or use --force", name,
		    (long long)(objects + invalidated));
		goto fail;
	}
	/* Its PSO officers go with it; the rows stay for the audit trail. */
	if (exec_bound(s->db, "UPDATE officers SET revoked = ?2 WHERE role = "
	    "'pso' AND partition = ?1 AND revoked IS NULL", name, st) != 0 ||
	    exec_bound(s->db, "DELETE FROM quorums WHERE partition = ?1 AND "
	    "?2 > 0", name, st) != 0 ||
	    exec_bound(s->db, "DELETE FROM partitions WHERE name = ?1 AND "
	    "?2 > 0", name, st) != 0)
		goto fail;
	if (audit_append(s, name, "partition.delete", force ? "force" : "",
	    "ok", st) != 0 || tx_commit(s, st) != 0)
		goto fail;
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "deleted", name) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = 0;
	goto out;
fail:
	tx_rollback(s);
out:
	free(p);
	return r;
}

/* SHA-256(salt || secret): the secret has 256 bits, no stretching needed. */
static int
secret_hash(const unsigned char *salt, const char *secret,
    unsigned char out[32], hsm_status *st)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int len = 0;
	int ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(md, salt, SALT_BYTES) == 1 &&
	    EVP_DigestUpdate(md, secret, strlen(secret)) == 1 &&
	    EVP_DigestFinal_ex(md, out, &len) == 1 && len == 32;

	EVP_MD_CTX_free(md);
	return ok ? 0 : hsm_fail(st, "internal", "SHA-256 failed");
}

int
partition_secret_check(sqlite3 *db, const char *name, const char *secret)
{
	sqlite3_stmt *q = NULL;
	unsigned char h[32];
	bool ok = false;

	if (sqlite3_prepare_v2(db, "SELECT secret_salt, secret_hash FROM "
	    "partitions WHERE name = ?1", -1, &q, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW &&
	    sqlite3_column_bytes(q, 0) == SALT_BYTES &&
	    sqlite3_column_bytes(q, 1) == 32 &&
	    secret_hash(sqlite3_column_blob(q, 0), secret, h, NULL) == 0)
		ok = CRYPTO_memcmp(h, sqlite3_column_blob(q, 1), 32) == 0;
	sqlite3_finalize(q);
	OPENSSL_cleanse(h, sizeof(h));
	return ok ? 0 : -1;
}

int
partition_secret_hash(sqlite3 *db, const char *name, unsigned char out[32])
{
	sqlite3_stmt *q = NULL;
	int r = -1;

	memset(out, 0, 32);
	if (sqlite3_prepare_v2(db, "SELECT secret_hash FROM partitions WHERE "
	    "name = ?1", -1, &q, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_bytes(q, 0) == 32) {
		memcpy(out, sqlite3_column_blob(q, 0), 32);
		r = 0;
	}
	sqlite3_finalize(q);
	return r;
}

int
op_partition_secret(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "name", NULL };
	struct part *p;
	unsigned char raw[SECRET_BYTES], salt[SALT_BYTES], h[32];
	char name[HSM_NAME_MAX + 1], secret[2 * SECRET_BYTES + 8];
	sqlite3_stmt *q = NULL;
	int r = -1;

	if (args_allowed(args, names, st) != 0 || name_arg(args, name,
	    st) != 0)
		return -1;
	if ((p = malloc(sizeof(*p))) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (RAND_priv_bytes(raw, sizeof(raw)) != 1 ||
	    RAND_bytes(salt, sizeof(salt)) != 1) {
		hsm_fail(st, "internal", "no randomness");
		goto out;
	}
	memcpy(secret, "hsm1-", 5);
	hsm_hex(raw, sizeof(raw), secret + 5);
	if (secret_hash(salt, secret, h, st) != 0 || tx_begin(s, st) != 0)
		goto out;
	if (load(s->db, name, p, st) != 0 || access_check(s, p, st) != 0)
		goto fail;
	/* Only the salted hash is kept: the old secret stops working now. */
	if (sqlite3_prepare_v2(s->db, "UPDATE partitions SET secret_salt = ?2, "
	    "secret_hash = ?3, secret_rotated = ?4 WHERE name = ?1", -1, &q,
	    NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_blob(q, 2, salt, sizeof(salt), SQLITE_STATIC);
	sqlite3_bind_blob(q, 3, h, sizeof(h), SQLITE_STATIC);
	sqlite3_bind_int64(q, 4, (int64_t)time(NULL));
	if (sqlite3_step(q) != SQLITE_DONE)
		goto sqlfail;
	if (audit_append(s, name, "partition.secret", "rotated", "ok",
	    st) != 0 || tx_commit(s, st) != 0)
		goto fail;
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "name", name) != 0 ||
	    hsm_map_put_str(*res, "secret", secret) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = 0;
	goto out;
sqlfail:
	hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
fail:
	tx_rollback(s);
out:
	sqlite3_finalize(q);
	OPENSSL_cleanse(raw, sizeof(raw));
	OPENSSL_cleanse(secret, sizeof(secret));
	free(p);
	return r;
}
