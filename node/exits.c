/* Exits of partitions (see exits.h). */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "audit.h"
#include "exits.h"
#include "log.h"
#include "objects.h"
#include "peer.h"
#include "repl.h"
#include "store.h"

#define OFFER_CONTEXT "hsmctl-exit-offer-v1"
#define TRANSFER_INFO "hsmctl-exit-transfer-v1"
#define EXPORT_INFO "hsmctl-export-v1"
#define CERT_TYPE "hsmctl-deletion-certificate-v1"
#define TARGET_TIMEOUT_MS 10000

/* The steps of a transfer or migrate, in order. */
static const char *const steps[] = { "planned", "locked", "offered",
	"verified", "source_deleted", "done", NULL };

struct plan {
	char part[HSM_NAME_MAX + 1];
	char kind[16];
	char target[300];
	char target_fp[64];
	char step[16];
	char offer[33];
	unsigned char tpub[32];	/* the target's transfer key (X25519) */
	bool have_tpub;
	int64_t objects, started, updated;
	char error[256];
};

/*
 * Fault injection for the tests: HSMD_TEST_CRASH_AFTER=STEP makes the node
 * die (SIGKILL, like kill -9) right after STEP is committed.
 */
static void
crash_point(const char *step)
{
	const char *c = getenv("HSMD_TEST_CRASH_AFTER");

	if (c != NULL && strcmp(c, step) == 0) {
		log_warn("HSMD_TEST_CRASH_AFTER=%s: dying now", step);
		raise(SIGKILL);
	}
}

/* ---- small crypto helpers ---------------------------------------------- */

static int
hkdf(const unsigned char *ikm, size_t ikmlen, const unsigned char *salt,
    size_t saltlen, const char *info, unsigned char out[32], hsm_status *st)
{
	return hsm_hkdf_sha256(ikm, ikmlen, salt, saltlen,
	    (const unsigned char *)info, strlen(info), out, st);
}

static int
ecdh(EVP_PKEY *priv, EVP_PKEY *peer, unsigned char **out, size_t *outlen,
    hsm_status *st)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(priv, NULL);
	int r = -1;

	*out = NULL;
	if (c == NULL || EVP_PKEY_derive_init(c) != 1 ||
	    EVP_PKEY_derive_set_peer(c, peer) != 1 ||
	    EVP_PKEY_derive(c, NULL, outlen) != 1 ||
	    (*out = OPENSSL_malloc(*outlen)) == NULL ||
	    EVP_PKEY_derive(c, *out, outlen) != 1) {
		OPENSSL_free(*out);
		*out = NULL;
		hsm_fail(st, "bad_value", "key agreement failed");
		goto out;
	}
	r = 0;
out:
	EVP_PKEY_CTX_free(c);
	return r;
}

/* What both sides compare: SHA-256(id || NUL || type || NUL || material). */
static void
key_digest(const char *id, const char *type, const unsigned char *m,
    size_t n, char hex[65])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char d[32];
	unsigned int l = 0;

	memset(d, 0, sizeof(d));
	if (md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1) {
		EVP_DigestUpdate(md, id, strlen(id) + 1);
		EVP_DigestUpdate(md, type, strlen(type) + 1);
		EVP_DigestUpdate(md, m, n);
		EVP_DigestFinal_ex(md, d, &l);
	}
	EVP_MD_CTX_free(md);
	hsm_hex(d, sizeof(d), hex);
}

/* ---- permissions ------------------------------------------------------- */

static bool
text_eq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

static int
param_text(sqlite3 *db, const char *part, const char *name, char *out,
    size_t len)
{
	sqlite3_stmt *q = NULL;
	int found = 0;

	out[0] = '\0';
	if (sqlite3_prepare_v2(db, "SELECT value FROM partition_params WHERE "
	    "partition = ?1 AND name = ?2", -1, &q, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW) {
		snprintf(out, len, "%s", sql_text(q, 0));
		found = 1;
	}
	sqlite3_finalize(q);
	return found;
}

static bool
partition_exists(sqlite3 *db, const char *part)
{
	sqlite3_stmt *q = NULL;
	bool r = false;

	if (sqlite3_prepare_v2(db, "SELECT 1 FROM partitions WHERE name = ?1",
	    -1, &q, NULL) == SQLITE_OK) {
		sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC);
		r = sqlite3_step(q) == SQLITE_ROW;
	}
	sqlite3_finalize(q);
	return r;
}

/* The partition argument, and whether this session's role may act on it:
 * "so" (not if device-so-access is off), "pso" (its own), or either. */
static int
exit_access(struct sess_ctx *s, const cbor_item_t *args, const char *who,
    char *part, hsm_status *st)
{
	char v[16];

	if (arg_text(args, "partition", part, HSM_NAME_MAX + 1, true, st) != 0)
		return -1;
	if (!partition_exists(s->db, part))
		return hsm_fail(st, "not_found", "no partition '%s'", part);
	if (text_eq(s->role, "so") && !text_eq(who, "pso")) {
		param_text(s->db, part, "device-so-access", v, sizeof(v));
		if (text_eq(v, "off"))
			return hsm_fail(st, "not_authorized", "device-so-access "
			    "of partition %s is off: its PSO may migrate it",
			    part);
		return 0;
	}
	if (text_eq(s->role, "pso") && !text_eq(who, "so")) {
		if (!text_eq(s->partition, part))
			return hsm_fail(st, "not_authorized", "this session is "
			    "the PSO of %s, not of %s", s->partition, part);
		return 0;
	}
	return hsm_fail(st, "not_authorized", "the %s role cannot do this "
	    "exit (%s only)", s->role[0] ? s->role : "anonymous",
	    text_eq(who, "so") ? "the device SO" : text_eq(who, "pso") ?
	    "the partition's PSO" : "SO or PSO");
}

/* ---- the plan journal --------------------------------------------------- */

static int
plan_load(sqlite3 *db, const char *part, struct plan *p)
{
	sqlite3_stmt *q = NULL;
	int r = 1;

	memset(p, 0, sizeof(*p));
	if (sqlite3_prepare_v2(db, "SELECT kind, target, target_fp, step, "
	    "offer, transfer_pub, objects, started, updated, error FROM "
	    "exit_plans WHERE partition = ?1", -1, &q, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW) {
		snprintf(p->part, sizeof(p->part), "%s", part);
		snprintf(p->kind, sizeof(p->kind), "%s", sql_text(q, 0));
		snprintf(p->target, sizeof(p->target), "%s", sql_text(q, 1));
		snprintf(p->target_fp, sizeof(p->target_fp), "%s",
		    sql_text(q, 2));
		snprintf(p->step, sizeof(p->step), "%s", sql_text(q, 3));
		snprintf(p->offer, sizeof(p->offer), "%s", sql_text(q, 4));
		if (sqlite3_column_bytes(q, 5) == 32) {
			memcpy(p->tpub, sqlite3_column_blob(q, 5), 32);
			p->have_tpub = true;
		}
		p->objects = sqlite3_column_int64(q, 6);
		p->started = sqlite3_column_int64(q, 7);
		p->updated = sqlite3_column_int64(q, 8);
		snprintf(p->error, sizeof(p->error), "%s", sql_text(q, 9));
		r = 0;
	}
	sqlite3_finalize(q);
	return r;
}

/* Within the caller's transaction, or alone. */
static int
plan_save(sqlite3 *db, struct plan *p, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	int r = 0;

	p->updated = (int64_t)time(NULL);
	if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO exit_plans "
	    "(partition, kind, target, target_fp, step, offer, transfer_pub, "
	    "objects, started, updated, error) VALUES (?1, ?2, ?3, ?4, ?5, "
	    "?6, ?7, ?8, ?9, ?10, ?11)", -1, &q, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_bind_text(q, 1, p->part, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, p->kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, p->target, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, p->target_fp, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 5, p->step, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 6, p->offer, -1, SQLITE_STATIC);
	if (p->have_tpub)
		sqlite3_bind_blob(q, 7, p->tpub, 32, SQLITE_STATIC);
	sqlite3_bind_int64(q, 8, p->objects);
	sqlite3_bind_int64(q, 9, p->started);
	sqlite3_bind_int64(q, 10, p->updated);
	sqlite3_bind_text(q, 11, p->error, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_DONE)
		r = hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_finalize(q);
	return r;
}

static int
plan_status(const struct plan *p, cbor_item_t **res, hsm_status *st)
{
	cbor_item_t *r = cbor_new_indefinite_map(), *l = NULL;
	bool ok = r != NULL && (l = cbor_new_indefinite_array()) != NULL;

	for (size_t i = 0; ok && steps[i] != NULL; i++)
		ok = cbor_array_push(l, cbor_move(cbor_build_string(steps[i])));
	ok = ok && hsm_map_put_str(r, "partition", p->part) == 0 &&
	    hsm_map_put_str(r, "kind", p->kind) == 0 &&
	    hsm_map_put_str(r, "target", p->target) == 0 &&
	    hsm_map_put_str(r, "target_host_key", p->target_fp) == 0 &&
	    hsm_map_put_str(r, "step", p->step) == 0;
	if (ok && hsm_map_put(r, "steps", l) != 0)
		ok = false;
	l = NULL;
	ok = ok && hsm_map_put_uint(r, "objects", (uint64_t)p->objects) == 0 &&
	    hsm_map_put_uint(r, "started", (uint64_t)p->started) == 0 &&
	    hsm_map_put_uint(r, "updated", (uint64_t)p->updated) == 0 &&
	    hsm_map_put_str(r, "error", p->error) == 0;
	if (!ok) {
		if (l != NULL)
			cbor_decref(&l);
		if (r != NULL)
			cbor_decref(&r);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	*res = r;
	return 0;
}

/* Record a failure in the journal; the plan stays at its step. */
static void
plan_error(sqlite3 *db, struct plan *p, const hsm_status *st)
{
	hsm_status e;

	hsm_status_clear(&e);
	snprintf(p->error, sizeof(p->error), "%.250s", st->message);
	plan_save(db, p, &e);
}

static int
set_step(struct plan *p, const char *step)
{
	snprintf(p->step, sizeof(p->step), "%s", step);
	p->error[0] = '\0';
	return 0;
}

/* ---- the source's steps ------------------------------------------------ */

static int
exec1(sqlite3 *db, const char *sql, const char *a, hsm_status *st)
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

/* Lock: the partition is read-only for the API until the exit ends. */
static int
step_lock(struct sess_ctx *s, struct plan *p, hsm_status *st)
{
	char what[512];

	if (tx_begin(s, st) != 0)
		return -1;
	snprintf(what, sizeof(what), "kind=%s to=%s key=%s", p->kind,
	    p->target, p->target_fp);
	set_step(p, "locked");
	if (exec1(s->db, "UPDATE partitions SET exit_state = 'exiting' WHERE "
	    "name = ?1", p->part, st) != 0 || plan_save(s->db, p, st) != 0 ||
	    audit_append(s, p->part, "exit.start", what, "ok", st) != 0 ||
	    tx_commit(s, st) != 0) {
		tx_rollback(s);
		return -1;
	}
	crash_point("locked");
	return 0;
}

static int
step_offer(struct sess_ctx *s, struct plan *p, struct hsm_conn *c,
    hsm_status *st)
{
	cbor_item_t *a = NULL, *r = NULL, *stmt = NULL;
	const cbor_item_t *v, *tp, *ap, *sig;
	unsigned char *enc = NULL;
	size_t enclen = 0;
	EVP_PKEY *attest = NULL;
	EVP_MD_CTX *md = NULL;
	int rc = -1;

	if ((a = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(a, "partition", p->part) != 0 ||
	    hsm_map_put_str(a, "source_cluster", s->node->cluster_id) != 0 ||
	    hsm_map_put_str(a, "source_node", s->node->name) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (hsm_call(c, "exit.offer", a, &r, st) != 0)
		goto out;
	if ((v = hsm_map_get(r, "offer")) == NULL || !cbor_isa_string(v) ||
	    cbor_string_length(v) != 32 ||
	    (tp = hsm_map_get(r, "transfer_pub")) == NULL ||
	    !cbor_isa_bytestring(tp) || cbor_bytestring_length(tp) != 32 ||
	    (ap = hsm_map_get(r, "attest_pub")) == NULL ||
	    !cbor_isa_bytestring(ap) || cbor_bytestring_length(ap) != 32 ||
	    (sig = hsm_map_get(r, "signature")) == NULL ||
	    !cbor_isa_bytestring(sig) || cbor_bytestring_length(sig) != 64) {
		hsm_fail(st, "protocol", "the target's offer is malformed");
		goto out;
	}
	/* The offer is the target's: its attestation key signed it. */
	if ((stmt = cbor_new_definite_array(4)) == NULL ||
	    !cbor_array_push(stmt, cbor_move(cbor_build_string(OFFER_CONTEXT))) ||
	    !cbor_array_push(stmt, (cbor_item_t *)(uintptr_t)v) ||
	    !cbor_array_push(stmt, cbor_move(cbor_build_string(p->part))) ||
	    !cbor_array_push(stmt, (cbor_item_t *)(uintptr_t)tp) ||
	    hsm_cbor_encode(stmt, &enc, &enclen, st) != 0) {
		if (st->code[0] == '\0')
			hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if ((attest = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL,
	    cbor_bytestring_handle(ap), 32)) == NULL ||
	    (md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestVerifyInit(md, NULL, NULL, NULL, attest) != 1 ||
	    EVP_DigestVerify(md, cbor_bytestring_handle(sig), 64, enc,
	    enclen) != 1) {
		hsm_fail(st, "integrity", "the target's transfer key is not "
		    "attested by it");
		goto out;
	}
	memcpy(p->offer, cbor_string_handle(v), 32);
	p->offer[32] = '\0';
	memcpy(p->tpub, cbor_bytestring_handle(tp), 32);
	p->have_tpub = true;
	set_step(p, "offered");
	if (plan_save(s->db, p, st) != 0)
		goto out;
	crash_point("offered");
	rc = 0;
out:
	free(enc);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(attest);
	if (stmt != NULL)
		cbor_decref(&stmt);
	if (a != NULL)
		cbor_decref(&a);
	if (r != NULL)
		cbor_decref(&r);
	return rc;
}

/* Rows of the partition for the target (key material apart). */
static cbor_item_t *
rows_of(sqlite3 *db, const char *sql, const char *part)
{
	sqlite3_stmt *q = NULL;
	cbor_item_t *l = cbor_new_indefinite_array(), *row = NULL;
	bool ok = l != NULL;
	int rc = SQLITE_DONE;

	if (ok && (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC) != SQLITE_OK))
		ok = false;
	while (ok && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		int nc = sqlite3_column_count(q);

		ok = (row = cbor_new_definite_array((size_t)nc)) != NULL;
		for (int i = 0; ok && i < nc; i++)
			ok = cbor_array_push(row, cbor_move(sql_column_cbor(q,
			    i)));
		ok = list_push(l, &row, ok);
	}
	sqlite3_finalize(q);
	if ((!ok || rc != SQLITE_DONE) && l != NULL)
		cbor_decref(&l);
	return l;
}

#define PART_COLS "name, created, profile, secret_salt, secret_hash, " \
	"secret_rotated"
#define OBJ_COLS "id, type, label, extractable, sensitive, state, created, " \
	"pub, size"

/* Every key of the partition, unsealed; digests into *digests (id -> hex). */
static int
send_import(struct sess_ctx *s, struct plan *p, struct hsm_conn *c,
    hsm_status *st)
{
	cbor_item_t *a = NULL, *objs = NULL, *o = NULL, *r = NULL, *mine = NULL;
	sqlite3_stmt *q = NULL;
	EVP_PKEY *eph = NULL, *tpub = NULL;
	unsigned char *shared = NULL, key[32], ephraw[32];
	size_t sharedlen = 0, ephlen = sizeof(ephraw);
	const cbor_item_t *theirs;
	int rc = -1, src;
	int64_t n = 0;

	if (!p->have_tpub) {
		hsm_fail(st, "internal", "no transfer key recorded");
		return -1;
	}
	if ((tpub = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL,
	    p->tpub, 32)) == NULL || (eph = EVP_PKEY_Q_keygen(NULL, NULL,
	    "X25519")) == NULL ||
	    EVP_PKEY_get_raw_public_key(eph, ephraw, &ephlen) != 1) {
		hsm_fail(st, "internal", "X25519 failed");
		goto out;
	}
	if (ecdh(eph, tpub, &shared, &sharedlen, st) != 0 ||
	    hkdf(shared, sharedlen, (const unsigned char *)p->offer,
	    strlen(p->offer), TRANSFER_INFO, key, st) != 0)
		goto out;
	if ((a = cbor_new_indefinite_map()) == NULL ||
	    (objs = cbor_new_indefinite_array()) == NULL ||
	    (mine = cbor_new_indefinite_map()) == NULL)
		goto oom;
	if (sqlite3_prepare_v2(s->db, "SELECT " OBJ_COLS ", priv FROM objects "
	    "WHERE partition = ?1 AND session IS NULL ORDER BY id", -1, &q,
	    NULL) != SQLITE_OK)
		goto io;
	sqlite3_bind_text(q, 1, p->part, -1, SQLITE_STATIC);
	while ((src = sqlite3_step(q)) == SQLITE_ROW) {
		const char *id = sql_text(q, 0), *type = sql_text(q, 1);
		unsigned char *m = NULL, *ct = NULL;
		size_t mlen = 0, ctlen = 0;
		char hex[65];
		bool ok;

		if (objects_unseal(s->node, p->part, id,
		    sqlite3_column_blob(q, 9), (size_t)sqlite3_column_bytes(q, 9),
		    &m, &mlen, st) != 0)
			goto out;
		key_digest(id, type, m, mlen, hex);
		rc = key_seal(key, p->part, id, m, mlen, &ct, &ctlen, st);
		OPENSSL_clear_free(m, mlen);
		if (rc != 0)
			goto out;
		rc = -1;
		ok = (o = cbor_new_definite_array(10)) != NULL;
		for (int i = 0; ok && i < 9; i++)
			ok = cbor_array_push(o, cbor_move(sql_column_cbor(q, i)));
		ok = ok && cbor_array_push(o, cbor_move(cbor_build_bytestring(ct,
		    ctlen)));
		free(ct);
		ok = ok && hsm_map_put_str(mine, id, hex) == 0;
		if (!list_push(objs, &o, ok))
			goto oom;
		n++;
	}
	if (src != SQLITE_DONE)
		goto io;
	sqlite3_finalize(q);
	q = NULL;
	if (hsm_map_put_str(a, "offer", p->offer) != 0 ||
	    hsm_map_put(a, "eph_pub", cbor_build_bytestring(ephraw, 32)) != 0 ||
	    hsm_map_put(a, "partition", rows_of(s->db, "SELECT " PART_COLS
	    " FROM partitions WHERE name = ?1", p->part)) != 0 ||
	    hsm_map_put(a, "params", rows_of(s->db, "SELECT name, value FROM "
	    "partition_params WHERE partition = ?1", p->part)) != 0 ||
	    hsm_map_put(a, "officers", rows_of(s->db, "SELECT name, pubkey, "
	    "fingerprint, created FROM officers WHERE role = 'pso' AND "
	    "partition = ?1 AND revoked IS NULL", p->part)) != 0 ||
	    hsm_map_put(a, "quorums", rows_of(s->db, "SELECT role, m FROM "
	    "quorums WHERE partition = ?1", p->part)) != 0) {
		goto oom;
	}
	if (hsm_map_put(a, "objects", objs) != 0) {
		objs = NULL;
		goto oom;
	}
	objs = NULL;
	if (hsm_call(c, "exit.import", a, &r, st) != 0)
		goto out;
	/* Verified: as many objects, each with the same digest. */
	theirs = hsm_map_get(r, "digests");
	if (theirs == NULL || !cbor_isa_map(theirs) ||
	    cbor_map_size(theirs) != cbor_map_size(mine)) {
		hsm_fail(st, "integrity", "the target holds %zu objects of %s, "
		    "not %lld", theirs != NULL && cbor_isa_map(theirs) ?
		    cbor_map_size(theirs) : (size_t)0, p->part, (long long)n);
		goto out;
	}
	for (size_t i = 0; i < cbor_map_size(mine); i++) {
		struct cbor_pair *pr = &cbor_map_handle(mine)[i];
		char id[40];
		const cbor_item_t *t;
		size_t kl = cbor_string_length(pr->key);

		snprintf(id, sizeof(id), "%.*s", (int)(kl < 39 ? kl : 39),
		    (const char *)cbor_string_handle(pr->key));
		t = hsm_map_get(theirs, id);
		if (t == NULL || !cbor_isa_string(t) || cbor_string_length(t) !=
		    cbor_string_length(pr->value) || memcmp(cbor_string_handle(t),
		    cbor_string_handle(pr->value), cbor_string_length(t)) != 0) {
			hsm_fail(st, "integrity", "key %s of %s differs on the "
			    "target", id, p->part);
			goto out;
		}
	}
	p->objects = n;
	set_step(p, "verified");
	if (plan_save(s->db, p, st) != 0)
		goto out;
	crash_point("verified");
	rc = 0;
	goto out;
oom:
	hsm_fail(st, "no_memory", "out of memory");
	goto out;
io:
	hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
out:
	sqlite3_finalize(q);
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_clear_free(shared, sharedlen);
	EVP_PKEY_free(eph);
	EVP_PKEY_free(tpub);
	if (o != NULL)
		cbor_decref(&o);
	if (objs != NULL)
		cbor_decref(&objs);
	if (a != NULL)
		cbor_decref(&a);
	if (r != NULL)
		cbor_decref(&r);
	if (mine != NULL)
		cbor_decref(&mine);
	return rc;
}

/* Gone from here, with its PSO officers and quorum (rows kept for audit). */
static int
drop_partition(struct sess_ctx *s, const char *part, hsm_status *st)
{
	return exec1(s->db, "UPDATE officers SET revoked = strftime('%s') "
	    "WHERE role = 'pso' AND partition = ?1 AND revoked IS NULL", part,
	    st) != 0 || exec1(s->db, "DELETE FROM quorums WHERE partition = ?1",
	    part, st) != 0 || exec1(s->db, "DELETE FROM partitions WHERE name "
	    "= ?1", part, st) != 0 ? -1 : 0;
}

static int
step_delete_source(struct sess_ctx *s, struct plan *p, hsm_status *st)
{
	char what[512];

	snprintf(what, sizeof(what), "to=%s key=%s offer=%s objects=%lld",
	    p->target, p->target_fp, p->offer, (long long)p->objects);
	if (tx_begin(s, st) != 0)
		return -1;
	set_step(p, "source_deleted");
	if (drop_partition(s, p->part, st) != 0 ||
	    plan_save(s->db, p, st) != 0 ||
	    audit_append(s, p->part, text_eq(p->kind, "migrate") ?
	    "exit.migrate" : "exit.transfer", what, "ok", st) != 0 ||
	    tx_commit(s, st) != 0) {
		tx_rollback(s);
		return -1;
	}
	crash_point("source_deleted");
	return 0;
}

static int
step_confirm(struct sess_ctx *s, struct plan *p, struct hsm_conn *c,
    hsm_status *st)
{
	cbor_item_t *a = NULL, *r = NULL;
	int rc = -1;

	if ((a = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(a, "offer", p->offer) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (hsm_call(c, "exit.confirm", a, &r, st) != 0)
		goto out;
	set_step(p, "done");
	if (plan_save(s->db, p, st) != 0)
		goto out;
	rc = 0;
out:
	if (a != NULL)
		cbor_decref(&a);
	if (r != NULL)
		cbor_decref(&r);
	return rc;
}

/* Run the plan from its step to the end; on failure it stays there. */
static int
run_plan(struct sess_ctx *s, struct plan *p, cbor_item_t **res,
    hsm_status *st)
{
	struct hsm_conn *c = NULL;
	int r = -1;

	while (!text_eq(p->step, "done")) {
		if (text_eq(p->step, "planned")) {
			if (step_lock(s, p, st) != 0)
				goto fail;
			continue;
		}
		if (c == NULL && peer_connect(s->node, p->target, p->target_fp,
		    TARGET_TIMEOUT_MS, &c, st) != 0)
			goto fail;
		if (text_eq(p->step, "locked")) {
			if (step_offer(s, p, c, st) != 0)
				goto fail;
		} else if (text_eq(p->step, "offered")) {
			if (send_import(s, p, c, st) != 0)
				goto fail;
		} else if (text_eq(p->step, "verified")) {
			if (step_delete_source(s, p, st) != 0)
				goto fail;
		} else if (text_eq(p->step, "source_deleted")) {
			if (step_confirm(s, p, c, st) != 0)
				goto fail;
		} else {
			hsm_fail(st, "internal", "unknown step '%s'", p->step);
			goto fail;
		}
	}
	log_info("%s: exit %s of %s to %s done", s->peer, p->kind, p->part,
	    p->target);
	r = plan_status(p, res, st);
	hsm_conn_close(&c);
	return r;
fail:
	hsm_conn_close(&c);
	plan_error(s->db, p, st);
	log_warn("%s: exit %s of %s stopped at %s: %s", s->peer, p->kind,
	    p->part, p->step, st->message);
	{
		char msg[HSM_MSG_MAX];

		snprintf(msg, sizeof(msg), "%.300s (the plan stopped at '%s'; "
		    "hsmctl exit resume %s continues)", st->message, p->step,
		    p->part);
		snprintf(st->message, sizeof(st->message), "%s", msg);
	}
	return -1;
}

static int
start_plan(struct sess_ctx *s, const cbor_item_t *args, const char *kind,
    const char *who, cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "partition", "to", "host_key",
	    NULL };
	struct plan p, old;
	char part[HSM_NAME_MAX + 1], to[300], fp[64], host[256];
	int port;

	if (args_allowed(args, names, st) != 0 ||
	    exit_access(s, args, who, part, st) != 0 ||
	    arg_text(args, "to", to, sizeof(to), true, st) != 0 ||
	    arg_text(args, "host_key", fp, sizeof(fp), true, st) != 0)
		return -1;
	if (hsm_parse_hostport(to, host, sizeof(host), &port, st) != 0)
		return -1;
	if (strncmp(fp, "SHA256:", 7) != 0)
		return hsm_fail(st, "bad_value", "host_key is SHA256:...");
	if (plan_load(s->db, part, &old) == 0 && !text_eq(old.step, "done"))
		return hsm_fail(st, "conflict", "an exit %s of %s is in "
		    "progress (step %s): hsmctl exit resume %s", old.kind,
		    part, old.step, part);
	memset(&p, 0, sizeof(p));
	snprintf(p.part, sizeof(p.part), "%s", part);
	snprintf(p.kind, sizeof(p.kind), "%s", kind);
	snprintf(p.target, sizeof(p.target), "%s", to);
	snprintf(p.target_fp, sizeof(p.target_fp), "%s", fp);
	set_step(&p, "planned");
	p.started = (int64_t)time(NULL);
	if (plan_save(s->db, &p, st) != 0)
		return -1;
	return run_plan(s, &p, res, st);
}

int
op_exit_transfer(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	return start_plan(s, args, "transfer", "so", res, st);
}

int
op_exit_migrate(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	return start_plan(s, args, "migrate", "pso", res, st);
}

/* status and resume: the partition may be gone from here already. */
static int
plan_of(struct sess_ctx *s, const cbor_item_t *args, char *part,
    struct plan *p, hsm_status *st)
{
	static const char *const names[] = { "partition", NULL };

	if (args_allowed(args, names, st) != 0 ||
	    arg_text(args, "partition", part, HSM_NAME_MAX + 1, true, st) != 0)
		return -1;
	if (plan_load(s->db, part, p) != 0)
		return hsm_fail(st, "not_found", "no exit of partition '%s' on "
		    "node %s", part, s->node->name);
	/*
	 * Who started it may look and go on: transfer the SO, migrate the
	 * PSO.  Once the source is deleted its PSO cannot log in any more;
	 * what is left (the target's confirmation) touches no key here, so
	 * the SO may finish it.
	 */
	if (text_eq(p->kind, "migrate") && text_eq(s->role, "so") &&
	    !partition_exists(s->db, part))
		return 0;
	if (text_eq(p->kind, "transfer") ? !text_eq(s->role, "so") :
	    !(text_eq(s->role, "pso") && text_eq(s->partition, part)))
		return hsm_fail(st, "not_authorized", "the exit %s of %s is "
		    "the %s's", p->kind, part, text_eq(p->kind, "transfer") ?
		    "device SO" : "partition's PSO");
	return 0;
}

int
op_exit_status(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	char part[HSM_NAME_MAX + 1];
	struct plan p;

	if (plan_of(s, args, part, &p, st) != 0)
		return -1;
	return plan_status(&p, res, st);
}

int
op_exit_resume(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	char part[HSM_NAME_MAX + 1];
	struct plan p;

	if (plan_of(s, args, part, &p, st) != 0)
		return -1;
	if (text_eq(p.step, "done"))
		return plan_status(&p, res, st);
	log_info("%s: resuming exit %s of %s at %s", s->peer, p.kind, part,
	    p.step);
	return run_plan(s, &p, res, st);
}

/* ---- the target's side -------------------------------------------------- */

int
op_exit_offer(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "partition", "source_cluster",
	    "source_node", NULL };
	char part[HSM_NAME_MAX + 1], scl[64], snode[HSM_NAME_MAX + 1];
	char offer[33] = "";
	unsigned char pub[32], rnd[16], *sealed = NULL, *enc = NULL, sig[64];
	unsigned char *priv = NULL;
	size_t publen = sizeof(pub), sealedlen = 0, enclen = 0, siglen = 64;
	size_t privlen = 0;
	EVP_PKEY *k = NULL;
	EVP_MD_CTX *md = NULL;
	cbor_item_t *stmt = NULL, *r = NULL;
	sqlite3_stmt *q = NULL;
	int rc = -1;

	if (args_allowed(args, names, st) != 0 ||
	    arg_text(args, "partition", part, sizeof(part), true, st) != 0 ||
	    arg_text(args, "source_cluster", scl, sizeof(scl), true, st) != 0 ||
	    arg_text(args, "source_node", snode, sizeof(snode), true, st) != 0)
		return -1;
	if (!name_ok(part))
		return hsm_fail(st, "bad_value", "invalid partition name");
	if (text_eq(scl, s->node->cluster_id))
		return hsm_fail(st, "conflict", "the target is in the source's "
		    "own cluster: an exit goes to another cluster");
	/* An open offer for this partition from this source is reused. */
	if (sqlite3_prepare_v2(s->db, "SELECT offer, priv FROM exit_offers "
	    "WHERE partition = ?1 AND source_cluster = ?2 AND state != "
	    "'confirmed'", -1, &q, NULL) != SQLITE_OK)
		goto io;
	sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, scl, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW) {
		snprintf(offer, sizeof(offer), "%s", sql_text(q, 0));
		if (objects_unseal(s->node, "exit-offer", offer,
		    sqlite3_column_blob(q, 1), (size_t)sqlite3_column_bytes(q, 1),
		    &priv, &privlen, st) != 0)
			goto out;
		k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv,
		    privlen);
	} else if (partition_exists(s->db, part)) {
		hsm_fail(st, "conflict", "node %s has a partition '%s' "
		    "already", s->node->name, part);
		goto out;
	}
	sqlite3_finalize(q);
	q = NULL;
	if (offer[0] == '\0') {
		unsigned char raw[32];
		size_t rawlen = sizeof(raw);

		if (RAND_bytes(rnd, sizeof(rnd)) != 1 ||
		    (k = EVP_PKEY_Q_keygen(NULL, NULL, "X25519")) == NULL ||
		    EVP_PKEY_get_raw_private_key(k, raw, &rawlen) != 1) {
			hsm_fail(st, "internal", "cannot make a transfer key");
			goto out;
		}
		hsm_hex(rnd, sizeof(rnd), offer);
		rc = objects_seal(s->node, "exit-offer", offer, raw, rawlen,
		    &sealed, &sealedlen, st);
		OPENSSL_cleanse(raw, sizeof(raw));
		if (rc != 0)
			goto out;
		rc = -1;
		if (sqlite3_prepare_v2(s->db, "INSERT INTO exit_offers (offer, "
		    "partition, source_cluster, source_node, priv, state, "
		    "created) VALUES (?1, ?2, ?3, ?4, ?5, 'offered', ?6)", -1,
		    &q, NULL) != SQLITE_OK)
			goto io;
		sqlite3_bind_text(q, 1, offer, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, part, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 3, scl, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 4, snode, -1, SQLITE_STATIC);
		sqlite3_bind_blob(q, 5, sealed, (int)sealedlen, SQLITE_STATIC);
		sqlite3_bind_int64(q, 6, (int64_t)time(NULL));
		if (sqlite3_step(q) != SQLITE_DONE)
			goto io;
		sqlite3_finalize(q);
		q = NULL;
		log_info("%s: transfer key offered for partition %s of %s",
		    s->peer, part, snode);
	}
	if (k == NULL || EVP_PKEY_get_raw_public_key(k, pub, &publen) != 1) {
		hsm_fail(st, "internal", "transfer key unusable");
		goto out;
	}
	/* Attested: signed by this node's attestation key. */
	if ((stmt = cbor_new_definite_array(4)) == NULL ||
	    !cbor_array_push(stmt, cbor_move(cbor_build_string(OFFER_CONTEXT))) ||
	    !cbor_array_push(stmt, cbor_move(cbor_build_string(offer))) ||
	    !cbor_array_push(stmt, cbor_move(cbor_build_string(part))) ||
	    !cbor_array_push(stmt, cbor_move(cbor_build_bytestring(pub, 32))) ||
	    hsm_cbor_encode(stmt, &enc, &enclen, st) != 0 ||
	    (md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit(md, NULL, NULL, NULL, s->node->attest) != 1 ||
	    EVP_DigestSign(md, sig, &siglen, enc, enclen) != 1) {
		if (st->code[0] == '\0')
			hsm_fail(st, "internal", "cannot attest the transfer key");
		goto out;
	}
	{
		unsigned char ap[32];
		size_t aplen = sizeof(ap);

		if (EVP_PKEY_get_raw_public_key(s->node->attest, ap,
		    &aplen) != 1 || (r = cbor_new_indefinite_map()) == NULL ||
		    hsm_map_put_str(r, "offer", offer) != 0 ||
		    hsm_map_put(r, "transfer_pub", cbor_build_bytestring(pub,
		    32)) != 0 ||
		    hsm_map_put(r, "attest_pub", cbor_build_bytestring(ap,
		    32)) != 0 ||
		    hsm_map_put(r, "signature", cbor_build_bytestring(sig,
		    64)) != 0 ||
		    hsm_map_put_str(r, "node", s->node->name) != 0) {
			hsm_fail(st, "no_memory", "out of memory");
			goto out;
		}
	}
	*res = r;
	r = NULL;
	rc = 0;
	goto out;
io:
	hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
out:
	sqlite3_finalize(q);
	OPENSSL_clear_free(priv, privlen);
	free(sealed);
	free(enc);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(k);
	if (stmt != NULL)
		cbor_decref(&stmt);
	if (r != NULL)
		cbor_decref(&r);
	return rc;
}

struct offer {
	char part[HSM_NAME_MAX + 1];
	char state[16];
	EVP_PKEY *key;
};

static int
offer_load(struct sess_ctx *s, const char *offer, struct offer *o,
    hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	unsigned char *priv = NULL;
	size_t privlen = 0;
	int r = -1;

	memset(o, 0, sizeof(*o));
	if (sqlite3_prepare_v2(s->db, "SELECT partition, state, priv FROM "
	    "exit_offers WHERE offer = ?1", -1, &q, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
	sqlite3_bind_text(q, 1, offer, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_ROW) {
		hsm_fail(st, "not_found", "no transfer offer %s here", offer);
		goto out;
	}
	snprintf(o->part, sizeof(o->part), "%s", sql_text(q, 0));
	snprintf(o->state, sizeof(o->state), "%s", sql_text(q, 1));
	if (!text_eq(o->state, "confirmed")) {
		if (objects_unseal(s->node, "exit-offer", offer,
		    sqlite3_column_blob(q, 2), (size_t)sqlite3_column_bytes(q, 2),
		    &priv, &privlen, st) != 0)
			goto out;
		o->key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL,
		    priv, privlen);
	}
	r = 0;
out:
	OPENSSL_clear_free(priv, privlen);
	sqlite3_finalize(q);
	return r;
}

/* Digests of the partition's keys as stored here. */
static cbor_item_t *
stored_digests(struct sess_ctx *s, const char *part, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	cbor_item_t *d = cbor_new_indefinite_map();
	int rc = SQLITE_DONE;

	if (d == NULL || sqlite3_prepare_v2(s->db, "SELECT id, type, priv FROM "
	    "objects WHERE partition = ?1 AND session IS NULL", -1, &q,
	    NULL) != SQLITE_OK) {
		if (d != NULL)
			cbor_decref(&d);
		hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
		return NULL;
	}
	sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		unsigned char *m = NULL;
		size_t mlen = 0;
		char hex[65];

		if (objects_unseal(s->node, part, sql_text(q, 0),
		    sqlite3_column_blob(q, 2), (size_t)sqlite3_column_bytes(q, 2),
		    &m, &mlen, st) != 0)
			break;
		key_digest(sql_text(q, 0), sql_text(q, 1), m, mlen, hex);
		OPENSSL_clear_free(m, mlen);
		if (hsm_map_put_str(d, sql_text(q, 0), hex) != 0) {
			hsm_fail(st, "no_memory", "out of memory");
			break;
		}
	}
	sqlite3_finalize(q);
	if (rc != SQLITE_DONE) {
		if (st->code[0] == '\0')
			hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
		cbor_decref(&d);
		return NULL;
	}
	return d;
}

static const cbor_item_t *
row_at(const cbor_item_t *rows, size_t i, size_t ncol)
{
	const cbor_item_t *r;

	if (!cbor_isa_array(rows) || i >= cbor_array_size(rows))
		return NULL;
	r = cbor_array_handle(rows)[i];
	return cbor_isa_array(r) && cbor_array_size(r) == ncol ? r : NULL;
}

static int
insert_row(sqlite3 *db, const char *sql, const cbor_item_t *row,
    const char *part, int extra, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	int r = -1, n = (int)cbor_array_size(row);

	if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) {
		hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
		goto out;
	}
	for (int i = 0; i < n - extra; i++)
		if (sql_bind_cbor(q, i + 1, cbor_array_handle(row)[i]) !=
		    SQLITE_OK) {
			hsm_fail(st, "protocol", "a value of the transfer is "
			    "malformed");
			goto out;
		}
	if (part != NULL)
		sqlite3_bind_text(q, n - extra + 1, part, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_DONE) {
		hsm_fail(st, "conflict", "cannot import: %s",
		    sqlite3_errmsg(db));
		goto out;
	}
	r = 0;
out:
	sqlite3_finalize(q);
	return r;
}

int
op_exit_import(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "offer", "eph_pub", "partition",
	    "params", "officers", "quorums", "objects", NULL };
	char offer[33];
	struct offer o;
	const unsigned char *eph;
	size_t ephlen;
	const cbor_item_t *prow, *params, *offs, *quors, *objs;
	EVP_PKEY *peer = NULL;
	unsigned char *shared = NULL, key[32];
	size_t sharedlen = 0;
	cbor_item_t *d = NULL, *r = NULL;
	char what[256];
	int rc = -1;

	memset(&o, 0, sizeof(o));
	if (args_allowed(args, names, st) != 0 ||
	    arg_text(args, "offer", offer, sizeof(offer), true, st) != 0 ||
	    arg_bytes(args, "eph_pub", &eph, &ephlen, true, st) != 0 ||
	    offer_load(s, offer, &o, st) != 0)
		return -1;
	if (text_eq(o.state, "offered")) {
		prow = row_at(hsm_map_get(args, "partition"), 0, 6);
		params = hsm_map_get(args, "params");
		offs = hsm_map_get(args, "officers");
		quors = hsm_map_get(args, "quorums");
		objs = hsm_map_get(args, "objects");
		if (ephlen != 32 || prow == NULL || params == NULL ||
		    !cbor_isa_array(params) || offs == NULL ||
		    !cbor_isa_array(offs) || quors == NULL ||
		    !cbor_isa_array(quors) || objs == NULL ||
		    !cbor_isa_array(objs) || o.key == NULL ||
		    !cbor_isa_string(cbor_array_handle(prow)[0]) ||
		    cbor_string_length(cbor_array_handle(prow)[0]) !=
		    strlen(o.part) || memcmp(cbor_string_handle(
		    cbor_array_handle(prow)[0]), o.part, strlen(o.part)) != 0) {
			hsm_fail(st, "protocol", "the transfer is malformed");
			goto out;
		}
		if ((peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL,
		    eph, 32)) == NULL || ecdh(o.key, peer, &shared, &sharedlen,
		    st) != 0 || hkdf(shared, sharedlen,
		    (const unsigned char *)offer, strlen(offer), TRANSFER_INFO,
		    key, st) != 0)
			goto out;
		if (tx_begin(s, st) != 0)
			goto out;
		/* Not usable here until the source has let it go. */
		if (insert_row(s->db, "INSERT INTO partitions (" PART_COLS
		    ", exit_state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'importing')",
		    prow, NULL, 0, st) != 0)
			goto fail;
		for (size_t i = 0; i < cbor_array_size(params); i++)
			if (row_at(params, i, 2) == NULL || insert_row(s->db,
			    "INSERT INTO partition_params (name, value, "
			    "partition) VALUES (?1, ?2, ?3)", row_at(params, i,
			    2), o.part, 0, st) != 0)
				goto malformed;
		for (size_t i = 0; i < cbor_array_size(offs); i++)
			if (row_at(offs, i, 4) == NULL || insert_row(s->db,
			    "INSERT INTO officers (name, pubkey, fingerprint, "
			    "created, role, partition) VALUES (?1, ?2, ?3, ?4, "
			    "'pso', ?5)", row_at(offs, i, 4), o.part, 0,
			    st) != 0)
				goto malformed;
		for (size_t i = 0; i < cbor_array_size(quors); i++)
			if (row_at(quors, i, 2) == NULL || insert_row(s->db,
			    "INSERT INTO quorums (role, m, partition) VALUES "
			    "(?1, ?2, ?3)", row_at(quors, i, 2), o.part, 0,
			    st) != 0)
				goto malformed;
		for (size_t i = 0; i < cbor_array_size(objs); i++) {
			const cbor_item_t *row = row_at(objs, i, 10), *ct, *idv;
			unsigned char *m = NULL, *sealed = NULL;
			size_t mlen = 0, slen = 0;
			char id[33];
			sqlite3_stmt *q = NULL;
			bool ok;

			if (row == NULL || !cbor_isa_string(idv =
			    cbor_array_handle(row)[0]) ||
			    cbor_string_length(idv) >= sizeof(id) ||
			    !cbor_isa_bytestring(ct = cbor_array_handle(row)[9]))
				goto malformed;
			snprintf(id, sizeof(id), "%.*s",
			    (int)cbor_string_length(idv),
			    (const char *)cbor_string_handle(idv));
			/* Decrypted with the transfer key, sealed with ours. */
			if (key_open(key, o.part, id, cbor_bytestring_handle(ct),
			    cbor_bytestring_length(ct), &m, &mlen, st) != 0)
				goto fail;
			rc = objects_seal(s->node, o.part, id, m, mlen, &sealed,
			    &slen, st);
			OPENSSL_clear_free(m, mlen);
			if (rc != 0)
				goto fail;
			rc = -1;
			ok = sqlite3_prepare_v2(s->db, "INSERT INTO objects (id, "
			    "type, label, extractable, sensitive, state, created, "
			    "pub, size, priv, partition) VALUES (?1, ?2, ?3, ?4, "
			    "?5, ?6, ?7, ?8, ?9, ?10, ?11)", -1, &q, NULL) ==
			    SQLITE_OK;
			for (int c = 0; ok && c < 9; c++)
				ok = sql_bind_cbor(q, c + 1,
				    cbor_array_handle(row)[c]) == SQLITE_OK;
			ok = ok && sqlite3_bind_blob(q, 10, sealed, (int)slen,
			    SQLITE_STATIC) == SQLITE_OK && sqlite3_bind_text(q,
			    11, o.part, -1, SQLITE_STATIC) == SQLITE_OK &&
			    sqlite3_step(q) == SQLITE_DONE;
			sqlite3_finalize(q);
			free(sealed);
			if (!ok) {
				hsm_fail(st, "conflict", "cannot import key %s: "
				    "%s", id, sqlite3_errmsg(s->db));
				goto fail;
			}
		}
		snprintf(what, sizeof(what), "offer=%s objects=%zu", offer,
		    cbor_array_size(objs));
		if (exec1(s->db, "UPDATE exit_offers SET state = 'imported' "
		    "WHERE offer = ?1", offer, st) != 0 ||
		    audit_append(s, o.part, "exit.import", what, "ok", st) != 0 ||
		    tx_commit(s, st) != 0)
			goto fail;
		log_info("%s: partition %s imported (offer %s)", s->peer,
		    o.part, offer);
		crash_point("import");
	}
	/* Imported now or before: what is stored here is the answer. */
	if ((d = stored_digests(s, o.part, st)) == NULL)
		goto out;
	if ((r = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(r, "partition", o.part) != 0 ||
	    hsm_map_put(r, "digests", d) != 0) {
		d = NULL;
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	d = NULL;
	*res = r;
	r = NULL;
	rc = 0;
	goto out;
malformed:
	if (st->code[0] == '\0')
		hsm_fail(st, "protocol", "the transfer is malformed");
fail:
	tx_rollback(s);
out:
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_clear_free(shared, sharedlen);
	EVP_PKEY_free(peer);
	EVP_PKEY_free(o.key);
	if (d != NULL)
		cbor_decref(&d);
	if (r != NULL)
		cbor_decref(&r);
	return rc;
}

int
op_exit_confirm(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "offer", NULL };
	char offer[33];
	struct offer o;

	if (args_allowed(args, names, st) != 0 ||
	    arg_text(args, "offer", offer, sizeof(offer), true, st) != 0 ||
	    offer_load(s, offer, &o, st) != 0)
		return -1;
	EVP_PKEY_free(o.key);
	if (text_eq(o.state, "offered"))
		return hsm_fail(st, "conflict", "offer %s has not been "
		    "imported", offer);
	if (text_eq(o.state, "imported")) {
		if (tx_begin(s, st) != 0)
			return -1;
		/* The transfer key is no longer needed: it goes. */
		if (exec1(s->db, "UPDATE partitions SET exit_state = '' WHERE "
		    "name = ?1", o.part, st) != 0 ||
		    exec1(s->db, "UPDATE exit_offers SET state = 'confirmed', "
		    "priv = x'' WHERE offer = ?1", offer, st) != 0 ||
		    audit_append(s, o.part, "exit.confirm", offer, "ok",
		    st) != 0 || tx_commit(s, st) != 0) {
			tx_rollback(s);
			return -1;
		}
		log_info("%s: partition %s is in service here", s->peer,
		    o.part);
	}
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "partition", o.part) != 0 ||
	    hsm_map_put_str(*res, "state", "confirmed") != 0)
		return hsm_fail(st, "no_memory", "out of memory");
	return 0;
}

/* ---- export ------------------------------------------------------------ */

static int
kw_wrap(const unsigned char kek[32], const unsigned char *in, size_t len,
    unsigned char **out, size_t *outlen, hsm_status *st)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	unsigned char *b = malloc(len + 16);
	int l = 0, l2 = 0, r = -1;

	if (c == NULL || b == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	if (EVP_EncryptInit_ex(c, EVP_aes_256_wrap_pad(), NULL, kek, NULL) != 1 ||
	    EVP_EncryptUpdate(c, b, &l, in, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(c, b + l, &l2) != 1) {
		hsm_fail(st, "internal", "AES key wrap failed");
		goto out;
	}
	*out = b;
	*outlen = (size_t)(l + l2);
	b = NULL;
	r = 0;
out:
	free(b);
	EVP_CIPHER_CTX_free(c);
	return r;
}

/* Wrap one key's material for the customer's key: kek and wrapped. */
static int
wrap_for(EVP_PKEY *cust, const unsigned char *m, size_t mlen,
    cbor_item_t *e, hsm_status *st)
{
	unsigned char kek[32], *ek = NULL, *w = NULL, *shared = NULL;
	unsigned char *der = NULL;
	size_t eklen = 0, wlen = 0, sharedlen = 0;
	EVP_PKEY_CTX *pc = NULL;
	EVP_PKEY *eph = NULL;
	int derlen, r = -1;

	if (EVP_PKEY_get_base_id(cust) == EVP_PKEY_RSA) {
		if (RAND_priv_bytes(kek, sizeof(kek)) != 1 ||
		    (pc = EVP_PKEY_CTX_new(cust, NULL)) == NULL ||
		    EVP_PKEY_encrypt_init(pc) != 1 ||
		    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING) !=
		    1 || EVP_PKEY_CTX_set_rsa_oaep_md(pc, EVP_sha256()) != 1 ||
		    EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_sha256()) != 1 ||
		    EVP_PKEY_encrypt(pc, NULL, &eklen, kek, sizeof(kek)) != 1 ||
		    (ek = malloc(eklen)) == NULL ||
		    EVP_PKEY_encrypt(pc, ek, &eklen, kek, sizeof(kek)) != 1) {
			hsm_fail(st, "internal", "RSA-OAEP failed");
			goto out;
		}
	} else {
		char group[64];
		size_t gl = 0;

		if (EVP_PKEY_get_group_name(cust, group, sizeof(group),
		    &gl) != 1 || (eph = EVP_PKEY_Q_keygen(NULL, NULL, "EC",
		    group)) == NULL) {
			hsm_fail(st, "internal", "cannot make an ephemeral key");
			goto out;
		}
		if (ecdh(eph, cust, &shared, &sharedlen, st) != 0 ||
		    hkdf(shared, sharedlen, NULL, 0, EXPORT_INFO, kek, st) != 0)
			goto out;
		if ((derlen = i2d_PUBKEY(eph, &der)) <= 0) {
			hsm_fail(st, "internal", "cannot encode a public key");
			goto out;
		}
		ek = der;
		der = NULL;
		eklen = (size_t)derlen;
	}
	if (kw_wrap(kek, m, mlen, &w, &wlen, st) != 0)
		goto out;
	if (hsm_map_put(e, "kek", cbor_build_bytestring(ek, eklen)) != 0 ||
	    hsm_map_put(e, "wrapped", cbor_build_bytestring(w, wlen)) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = 0;
out:
	OPENSSL_cleanse(kek, sizeof(kek));
	OPENSSL_clear_free(shared, sharedlen);
	if (ek != NULL && EVP_PKEY_get_base_id(cust) != EVP_PKEY_RSA)
		OPENSSL_free(ek);
	else
		free(ek);
	OPENSSL_free(der);
	free(w);
	EVP_PKEY_CTX_free(pc);
	EVP_PKEY_free(eph);
	return r;
}

static char *
pem_of(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);
	BIO *b = BIO_new(BIO_s_mem());
	char *data = NULL, *out = NULL;
	long n;

	if (k != NULL && b != NULL && PEM_write_bio_PUBKEY(b, k) == 1 &&
	    (n = BIO_get_mem_data(b, &data)) > 0)
		out = strndup(data, (size_t)n);
	BIO_free(b);
	EVP_PKEY_free(k);
	return out;
}

static bool
skip_push(cbor_item_t *list, sqlite3_stmt *q, const char *why)
{
	cbor_item_t *e = cbor_new_indefinite_map();

	return list_push(list, &e, e != NULL &&
	    hsm_map_put_str(e, "id", sql_text(q, 0)) == 0 &&
	    hsm_map_put_str(e, "type", sql_text(q, 1)) == 0 &&
	    hsm_map_put_str(e, "label", sql_text(q, 2)) == 0 &&
	    hsm_map_put_str(e, "reason", why) == 0);
}

int
op_exit_export(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "partition", "wrap_key", "plain",
	    NULL };
	const cbor_item_t *pl = hsm_map_get(args, "plain");
	char part[HSM_NAME_MAX + 1], v[16], pem[8192], cluster[HSM_NAME_MAX + 1];
	bool plain;
	EVP_PKEY *cust = NULL;
	BIO *b = NULL;
	sqlite3_stmt *q = NULL;
	cbor_item_t *keys = NULL, *skipped = NULL, *e = NULL, *r = NULL;
	int rc = -1, src;
	char what[128];

	if (args_allowed(args, names, st) != 0 ||
	    exit_access(s, args, "pso", part, st) != 0)
		return -1;
	if (pl != NULL && !hsm_cbor_is_bool(pl))
		return hsm_fail(st, "bad_request", "'plain' is not a boolean");
	plain = pl != NULL && cbor_get_bool(pl);
	if (plain) {
		param_text(s->db, part, "key-extraction", v, sizeof(v));
		if (!text_eq(v, "on"))
			return hsm_fail(st, "read_only", "partition %s forbids "
			    "keys in the clear (key-extraction is off)", part);
	} else {
		param_text(s->db, part, "key-export", v, sizeof(v));
		if (!text_eq(v, "on"))
			return hsm_fail(st, "read_only", "partition %s forbids "
			    "exporting keys (key-export is off)", part);
		if (arg_text(args, "wrap_key", pem, sizeof(pem), true, st) != 0)
			return -1;
		if ((b = BIO_new_mem_buf(pem, -1)) == NULL ||
		    (cust = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL)) == NULL ||
		    (EVP_PKEY_get_base_id(cust) != EVP_PKEY_RSA &&
		    EVP_PKEY_get_base_id(cust) != EVP_PKEY_EC) ||
		    (EVP_PKEY_get_base_id(cust) == EVP_PKEY_RSA &&
		    EVP_PKEY_get_bits(cust) < 2048)) {
			BIO_free(b);
			EVP_PKEY_free(cust);
			return hsm_fail(st, "bad_value", "the wrap key is not an "
			    "RSA (2048 bits or more) or EC public key in PEM");
		}
		BIO_free(b);
	}
	if ((keys = cbor_new_indefinite_array()) == NULL ||
	    (skipped = cbor_new_indefinite_array()) == NULL)
		goto oom;
	if (sqlite3_prepare_v2(s->db, "SELECT id, type, label, extractable, "
	    "sensitive, pub, priv FROM objects WHERE partition = ?1 AND "
	    "session IS NULL AND state = 'active' ORDER BY id", -1, &q, NULL) !=
	    SQLITE_OK)
		goto io;
	sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC);
	while ((src = sqlite3_step(q)) == SQLITE_ROW) {
		const char *id = sql_text(q, 0), *type = sql_text(q, 1);
		unsigned char *m = NULL;
		size_t mlen = 0;
		char hex[65], *pubpem = NULL;
		bool ok;

		if (!sqlite3_column_int(q, 3)) {
			if (!skip_push(skipped, q, "not extractable"))
				goto oom;
			continue;
		}
		if (plain && sqlite3_column_int(q, 4)) {
			if (!skip_push(skipped, q, "sensitive"))
				goto oom;
			continue;
		}
		if (objects_unseal(s->node, part, id, sqlite3_column_blob(q, 6),
		    (size_t)sqlite3_column_bytes(q, 6), &m, &mlen, st) != 0)
			goto out;
		/* The customer checks it with sha256sum: the material alone. */
		{
			unsigned char d[32];
			unsigned int dl = 0;

			EVP_Digest(m, mlen, d, &dl, EVP_sha256(), NULL);
			hsm_hex(d, sizeof(d), hex);
		}
		if (sqlite3_column_bytes(q, 5) > 0)
			pubpem = pem_of(sqlite3_column_blob(q, 5),
			    (size_t)sqlite3_column_bytes(q, 5));
		ok = (e = cbor_new_indefinite_map()) != NULL &&
		    hsm_map_put_str(e, "id", id) == 0 &&
		    hsm_map_put_str(e, "type", type) == 0 &&
		    hsm_map_put_str(e, "label", sql_text(q, 2)) == 0 &&
		    hsm_map_put_str(e, "digest", hex) == 0 &&
		    (pubpem == NULL || hsm_map_put_str(e, "public_key",
		    pubpem) == 0);
		free(pubpem);
		if (ok && plain)
			ok = hsm_map_put(e, "material", cbor_build_bytestring(m,
			    mlen)) == 0;
		else if (ok && wrap_for(cust, m, mlen, e, st) != 0) {
			OPENSSL_clear_free(m, mlen);
			goto out;
		}
		OPENSSL_clear_free(m, mlen);
		if (!list_push(keys, &e, ok))
			goto oom;
	}
	if (src != SQLITE_DONE)
		goto io;
	store_meta_text(s->db, "cluster", cluster, sizeof(cluster));
	if ((r = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(r, "partition", part) != 0 ||
	    hsm_map_put_str(r, "node", s->node->name) != 0 ||
	    hsm_map_put_str(r, "cluster", cluster) != 0 ||
	    hsm_map_put_uint(r, "created", (uint64_t)time(NULL)) != 0 ||
	    hsm_map_put_str(r, "wrap", plain ? "plain" :
	    EVP_PKEY_get_base_id(cust) == EVP_PKEY_RSA ?
	    "rsa-oaep-sha256+aes256-kwp" : "ecdh-hkdf-sha256+aes256-kwp") != 0)
		goto oom;
	snprintf(what, sizeof(what), "keys=%zu skipped=%zu %s",
	    cbor_array_size(keys), cbor_array_size(skipped), plain ? "plain" :
	    "wrapped");
	if (hsm_map_put(r, "keys", keys) != 0) {
		keys = NULL;
		goto oom;
	}
	keys = NULL;
	if (hsm_map_put(r, "skipped", skipped) != 0) {
		skipped = NULL;
		goto oom;
	}
	skipped = NULL;
	audit_record(s, "exit.export", what, "ok");
	*res = r;
	r = NULL;
	rc = 0;
	goto out;
oom:
	hsm_fail(st, "no_memory", "out of memory");
	goto out;
io:
	hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
out:
	sqlite3_finalize(q);
	EVP_PKEY_free(cust);
	if (e != NULL)
		cbor_decref(&e);
	if (keys != NULL)
		cbor_decref(&keys);
	if (skipped != NULL)
		cbor_decref(&skipped);
	if (r != NULL)
		cbor_decref(&r);
	return rc;
}

int
op_exit_export_delete(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "partition", "ids", NULL };
	const cbor_item_t *ids = hsm_map_get(args, "ids");
	char part[HSM_NAME_MAX + 1], what[64];
	int deleted = 0;

	if (args_allowed(args, names, st) != 0 ||
	    exit_access(s, args, "pso", part, st) != 0)
		return -1;
	if (ids == NULL || !cbor_isa_array(ids) || cbor_array_size(ids) > 100000)
		return hsm_fail(st, "bad_request", "'ids' is not a list");
	if (tx_begin(s, st) != 0)
		return -1;
	for (size_t i = 0; i < cbor_array_size(ids); i++) {
		const cbor_item_t *v = cbor_array_handle(ids)[i];
		sqlite3_stmt *q = NULL;

		/* Only what an export could have taken out: extractable keys. */
		if (!cbor_isa_string(v) || sqlite3_prepare_v2(s->db, "DELETE "
		    "FROM objects WHERE partition = ?1 AND id = ?2 AND "
		    "extractable = 1 AND session IS NULL", -1, &q,
		    NULL) != SQLITE_OK) {
			sqlite3_finalize(q);
			tx_rollback(s);
			return hsm_fail(st, "bad_request", "an id is not text");
		}
		sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, (const char *)cbor_string_handle(v),
		    (int)cbor_string_length(v), SQLITE_STATIC);
		if (sqlite3_step(q) != SQLITE_DONE) {
			sqlite3_finalize(q);
			tx_rollback(s);
			return hsm_fail(st, "io", "store: %s",
			    sqlite3_errmsg(s->db));
		}
		deleted += sqlite3_changes(s->db);
		sqlite3_finalize(q);
	}
	snprintf(what, sizeof(what), "deleted=%d", deleted);
	if (audit_append(s, part, "exit.export_delete", what, "ok", st) != 0 ||
	    tx_commit(s, st) != 0) {
		tx_rollback(s);
		return -1;
	}
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_uint(*res, "deleted", (uint64_t)deleted) != 0)
		return hsm_fail(st, "no_memory", "out of memory");
	return 0;
}

/* ---- delete with certificate --------------------------------------------- */

int
op_exit_delete(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "partition", NULL };
	char part[HSM_NAME_MAX + 1], cluster[HSM_NAME_MAX + 1], hex[65];
	cbor_item_t *keys = NULL, *stmt = NULL, *cert = NULL, *r = NULL;
	cbor_item_t *e = NULL;
	unsigned char *enc = NULL, sig[64], raw[32];
	size_t enclen = 0, siglen = sizeof(sig), rawlen = sizeof(raw);
	sqlite3_stmt *q = NULL;
	EVP_MD_CTX *md = NULL;
	int rc = -1, src;
	char what[128];

	if (args_allowed(args, names, st) != 0 ||
	    exit_access(s, args, "so", part, st) != 0)
		return -1;
	if (s->node->cluster_key == NULL)
		return hsm_fail(st, "conflict", "this node has no cluster key "
		    "to sign a certificate with");
	if ((keys = cbor_new_indefinite_array()) == NULL)
		goto oom;
	if (tx_begin(s, st) != 0)
		goto out;
	if (sqlite3_prepare_v2(s->db, "SELECT id, type, priv FROM objects "
	    "WHERE partition = ?1 ORDER BY id", -1, &q, NULL) != SQLITE_OK)
		goto io;
	sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC);
	while ((src = sqlite3_step(q)) == SQLITE_ROW) {
		unsigned char *m = NULL;
		size_t mlen = 0;

		if (objects_unseal(s->node, part, sql_text(q, 0),
		    sqlite3_column_blob(q, 2), (size_t)sqlite3_column_bytes(q, 2),
		    &m, &mlen, st) != 0)
			goto fail;
		key_digest(sql_text(q, 0), sql_text(q, 1), m, mlen, hex);
		OPENSSL_clear_free(m, mlen);
		if (!list_push(keys, &e, (e = cbor_new_indefinite_map()) !=
		    NULL && hsm_map_put_str(e, "id", sql_text(q, 0)) == 0 &&
		    hsm_map_put_str(e, "type", sql_text(q, 1)) == 0 &&
		    hsm_map_put_str(e, "digest", hex) == 0))
			goto oom_tx;
	}
	if (src != SQLITE_DONE)
		goto io;
	sqlite3_finalize(q);
	q = NULL;
	snprintf(what, sizeof(what), "keys=%zu certificate", cbor_array_size(keys));
	if (drop_partition(s, part, st) != 0 ||
	    audit_append(s, part, "exit.delete", what, "ok", st) != 0)
		goto fail;
	store_meta_text(s->db, "cluster", cluster, sizeof(cluster));
	/* The statement: what was deleted, where, when, approved by whom. */
	if ((stmt = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(stmt, "type", CERT_TYPE) != 0 ||
	    hsm_map_put_str(stmt, "node", s->node->name) != 0 ||
	    hsm_map_put_str(stmt, "cluster", cluster) != 0 ||
	    hsm_map_put_str(stmt, "cluster_id", s->node->cluster_id) != 0 ||
	    hsm_map_put_str(stmt, "partition", part) != 0 ||
	    hsm_map_put(stmt, "keys", cbor_incref(keys)) != 0 ||
	    hsm_map_put_uint(stmt, "time", (uint64_t)time(NULL)) != 0 ||
	    hsm_map_put_str(stmt, "officers", s->officers) != 0 ||
	    hsm_map_put_uint(stmt, "seq", (uint64_t)store_meta_int(s->db,
	    "last_seq", 0) + 1) != 0)
		goto oom_tx;
	if (hsm_cbor_encode(stmt, &enc, &enclen, st) != 0 ||
	    (md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit(md, NULL, NULL, NULL, s->node->cluster_key) !=
	    1 || EVP_DigestSign(md, sig, &siglen, enc, enclen) != 1 ||
	    EVP_PKEY_get_raw_public_key(s->node->cluster_key, raw,
	    &rawlen) != 1) {
		if (st->code[0] == '\0')
			hsm_fail(st, "internal", "cannot sign the certificate");
		goto fail;
	}
	if (tx_commit(s, st) != 0)
		goto fail;
	hsm_hex(raw, sizeof(raw), hex);
	if ((cert = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put(cert, "statement", cbor_build_bytestring(enc,
	    enclen)) != 0 ||
	    hsm_map_put(cert, "signature", cbor_build_bytestring(sig,
	    siglen)) != 0 ||
	    hsm_map_put_str(cert, "cluster_key", hex) != 0 ||
	    (r = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put(r, "certificate", cert) != 0) {
		cert = NULL;
		goto oom;
	}
	cert = NULL;
	if (hsm_map_put_str(r, "partition", part) != 0 ||
	    hsm_map_put_uint(r, "keys", cbor_array_size(keys)) != 0)
		goto oom;
	log_info("%s: partition %s deleted with a certificate (%zu keys)",
	    s->peer, part, cbor_array_size(keys));
	*res = r;
	r = NULL;
	rc = 0;
	goto out;
io:
	hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
	goto fail;
oom_tx:
	hsm_fail(st, "no_memory", "out of memory");
fail:
	tx_rollback(s);
	goto out;
oom:
	hsm_fail(st, "no_memory", "out of memory");
out:
	sqlite3_finalize(q);
	free(enc);
	EVP_MD_CTX_free(md);
	if (e != NULL)
		cbor_decref(&e);
	if (keys != NULL)
		cbor_decref(&keys);
	if (stmt != NULL)
		cbor_decref(&stmt);
	if (cert != NULL)
		cbor_decref(&cert);
	if (r != NULL)
		cbor_decref(&r);
	return rc;
}
