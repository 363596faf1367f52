/*
 * Key objects of a partition and the technical user who uses them
 * (DESIGN §4, §6).  Key material is generated with OpenSSL and kept
 * encrypted (AES-256-GCM under the node master key, the partition and
 * key id as associated data); the parameters are checked on every call,
 * since an SO or PSO may change them while a user session is open.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "audit.h"
#include "log.h"
#include "objects.h"
#include "partitions.h"
#include "store.h"

#define GCM_NONCE 12
#define GCM_TAG 16
#define SIGN_IN_MAX (8u * 1024 * 1024)

static const struct {
	const char *name;
	int kind;		/* 0 rsa, 1 ec, 2 ed25519, 3 aes */
	int bits;
	const char *curve;
} key_types[] = {
	{ "rsa-2048", 0, 2048, NULL }, { "rsa-3072", 0, 3072, NULL },
	{ "rsa-4096", 0, 4096, NULL }, { "ec-p256", 1, 0, "P-256" },
	{ "ec-p384", 1, 0, "P-384" }, { "ed25519", 2, 0, NULL },
	{ "aes-256", 3, 256, NULL },
};
#define NTYPES (sizeof(key_types) / sizeof(key_types[0]))

static int
type_index(const char *t)
{
	for (size_t i = 0; i < NTYPES; i++)
		if (strcmp(key_types[i].name, t) == 0)
			return (int)i;
	return -1;
}

/* A partition parameter's current value ("" if unset: the default). */
static void
param(sqlite3 *db, const char *part, const char *name, char *out, size_t len)
{
	sqlite3_stmt *q = NULL;
	const struct hsm_param *d = hsm_param_find(name);

	snprintf(out, len, "%s", d != NULL ? d->dflt : "");
	if (sqlite3_prepare_v2(db, "SELECT value FROM partition_params WHERE "
	    "partition = ?1 AND name = ?2", -1, &q, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW)
		snprintf(out, len, "%s", sqlite3_column_text(q, 0));
	sqlite3_finalize(q);
}

/* 0: in service; 1: leaving (an exit in progress); 2: being imported. */
int
partition_exit_state(sqlite3 *db, const char *part)
{
	sqlite3_stmt *q = NULL;
	int r = 0;

	if (sqlite3_prepare_v2(db, "SELECT exit_state FROM partitions WHERE "
	    "name = ?1", -1, &q, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW)
		r = strcmp(sql_text(q, 0), "exiting") == 0 ? 1 :
		    strcmp(sql_text(q, 0), "importing") == 0 ? 2 : 0;
	sqlite3_finalize(q);
	return r;
}

static bool
param_on(sqlite3 *db, const char *part, const char *name)
{
	char v[16];

	param(db, part, name, v, sizeof(v));
	return strcmp(v, "on") == 0;
}

/* The peer's address without the port, for ip-acl. */
static void
peer_addr(const struct sess_ctx *s, char *out, size_t len)
{
	const char *p = s->peer;
	size_t n;

	if (*p == '[') {
		n = strcspn(p + 1, "]");
		snprintf(out, len, "%.*s", (int)n, p + 1);
	} else {
		n = strcspn(p, ":");
		snprintf(out, len, "%.*s", (int)n, p);
	}
}

/* What the technical user may do at all, checked on every call. */
static int
user_allowed(struct sess_ctx *s, hsm_status *st)
{
	char api[32], acl[HSM_PARAM_VALUE_MAX], addr[64];
	unsigned char h[32];

	/* A rotated secret ends the sessions opened with the old one. */
	if (partition_secret_hash(s->db, s->partition, h) != 0 ||
	    CRYPTO_memcmp(h, s->secret_hash, sizeof(h)) != 0)
		return hsm_fail(st, "not_authorized", "the API secret of "
		    "partition %s was rotated; log in again", s->partition);
	if (!param_on(s->db, s->partition, "api.access"))
		return hsm_fail(st, "not_authorized", "partition %s is offline "
		    "(api.access is off)", s->partition);
	if (partition_exit_state(s->db, s->partition) == 2)
		return hsm_fail(st, "read_only", "partition %s is being "
		    "imported: usable once its source has let it go",
		    s->partition);
	snprintf(api, sizeof(api), "api.%s", s->api);
	if (!param_on(s->db, s->partition, api))
		return hsm_fail(st, "not_authorized", "partition %s does not "
		    "accept the %s API (%s is off)", s->partition, s->api, api);
	param(s->db, s->partition, "ip-acl", acl, sizeof(acl));
	peer_addr(s, addr, sizeof(addr));
	if (!hsm_iplist_allows(acl, addr))
		return hsm_fail(st, "not_authorized", "%s is not in the ip-acl "
		    "of partition %s", addr, s->partition);
	return 0;
}

static void
restore_login(struct sess_ctx *s, const struct sess_ctx *saved)
{
	memcpy(s->role, saved->role, sizeof(s->role));
	memcpy(s->partition, saved->partition, sizeof(s->partition));
	memcpy(s->officers, saved->officers, sizeof(s->officers));
	memcpy(s->api, saved->api, sizeof(s->api));
	memcpy(s->secret_hash, saved->secret_hash, sizeof(s->secret_hash));
}

int
op_auth_user(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "partition", "secret", "api",
	    NULL };
	char part[HSM_NAME_MAX + 1], secret[256], api[16] = "pkcs11";
	char why[HSM_MSG_MAX + 16];
	struct sess_ctx saved;
	int r = -1;

	if (args_allowed(args, names, st) != 0 ||
	    arg_text(args, "partition", part, sizeof(part), true, st) != 0 ||
	    arg_text(args, "secret", secret, sizeof(secret), true, st) != 0 ||
	    arg_text(args, "api", api, sizeof(api), false, st) < 0)
		goto out;
	if (strcmp(api, "jce") != 0 && strcmp(api, "cng") != 0 &&
	    strcmp(api, "pkcs11") != 0 && strcmp(api, "rest") != 0) {
		hsm_fail(st, "bad_value", "api must be jce, cng, pkcs11 or rest");
		goto out;
	}
	/* A refused login leaves the session's current one as it was. */
	saved = *s;
	/* Never a hint which part was wrong, and never the secret itself. */
	if (partition_secret_check(s->db, part, secret) != 0) {
		snprintf(s->role, sizeof(s->role), "user");
		snprintf(s->partition, sizeof(s->partition), "%s", part);
		s->officers[0] = '\0';
		audit_record(s, "auth.user", "", "refused: bad secret");
		restore_login(s, &saved);
		hsm_fail(st, "not_authorized", "the API secret of partition %s "
		    "is not valid", part);
		goto out;
	}
	snprintf(s->role, sizeof(s->role), "user");
	snprintf(s->partition, sizeof(s->partition), "%s", part);
	snprintf(s->api, sizeof(s->api), "%s", api);
	partition_secret_hash(s->db, part, s->secret_hash);
	snprintf(s->officers, sizeof(s->officers), "api:%s", api);
	if (user_allowed(s, st) != 0) {
		snprintf(why, sizeof(why), "refused: %s", st->message);
		audit_record(s, "auth.user", "", why);
		restore_login(s, &saved);
		goto out;
	}
	s->login_time = s->last_use = time(NULL);
	audit_record(s, "auth.user", "", "granted");
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "role", "user") != 0 ||
	    hsm_map_put_str(*res, "partition", part) != 0 ||
	    hsm_map_put_str(*res, "api", api) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = 0;
out:
	OPENSSL_cleanse(secret, sizeof(secret));
	return r;
}

static int64_t count(sqlite3 *db, const char *sql, const char *part);

/* The partition a key op names, and whether this session may use it. */
static int
key_partition(struct sess_ctx *s, const cbor_item_t *args, char *part,
    bool user_only, hsm_status *st)
{
	char v[16];

	if (arg_text(args, "partition", part, HSM_NAME_MAX + 1, true,
	    st) != 0)
		return -1;
	if (count(s->db, "SELECT count(*) FROM partitions WHERE name = ?1",
	    part) == 0)
		return hsm_fail(st, "not_found", "no partition '%s'", part);
	if (strcmp(s->role, "user") == 0) {
		if (strcmp(part, s->partition) != 0)
			return hsm_fail(st, "not_authorized", "this session "
			    "is the technical user of %s, not %s",
			    s->partition, part);
		return user_allowed(s, st);
	}
	if (user_only)
		return hsm_fail(st, "not_authorized", "keys are generated, "
		    "used and deleted by the technical user (login user)");
	if (strcmp(s->role, "pso") == 0 && strcmp(part, s->partition) == 0)
		return 0;
	if (strcmp(s->role, "so") == 0) {
		param(s->db, part, "device-so-access", v, sizeof(v));
		if (strcmp(v, "off") == 0)
			return hsm_fail(st, "not_authorized", "device-so-access "
			    "of partition %s is off", part);
		return 0;
	}
	return hsm_fail(st, "not_authorized", "the %s role has no access to "
	    "the keys of %s", s->role, part);
}

static int64_t
count(sqlite3 *db, const char *sql, const char *part)
{
	sqlite3_stmt *q = NULL;
	int64_t n = 0;

	if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW)
		n = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	return n;
}

void
objects_usage(sqlite3 *db, const char *part, int64_t *objects,
    int64_t *invalidated, int64_t *bytes)
{
	*objects = count(db, "SELECT count(*) FROM objects WHERE partition = "
	    "?1 AND state = 'active'", part);
	*invalidated = count(db, "SELECT count(*) FROM objects WHERE "
	    "partition = ?1 AND state = 'invalidated'", part);
	*bytes = count(db, "SELECT coalesce(sum(size), 0) FROM objects WHERE "
	    "partition = ?1", part);
}

/*
 * AES-256-GCM, AAD partition || NUL || id: nonce || ciphertext || tag.
 * Under the master key for the store, under a transfer key for an exit.
 */
int
key_seal(const unsigned char key[32], const char *part, const char *id,
    const unsigned char *in, size_t len, unsigned char **out, size_t *outlen,
    hsm_status *st)
{
	EVP_CIPHER_CTX *c = NULL;
	unsigned char *buf;
	int l, r = -1;

	if ((buf = malloc(GCM_NONCE + len + GCM_TAG)) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (RAND_bytes(buf, GCM_NONCE) != 1 ||
	    (c = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, buf) != 1 ||
	    EVP_EncryptUpdate(c, NULL, &l, (const unsigned char *)part,
	    (int)strlen(part) + 1) != 1 ||
	    EVP_EncryptUpdate(c, NULL, &l, (const unsigned char *)id,
	    (int)strlen(id)) != 1 ||
	    EVP_EncryptUpdate(c, buf + GCM_NONCE, &l, in, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(c, buf + GCM_NONCE + l, &l) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, GCM_TAG,
	    buf + GCM_NONCE + len) != 1) {
		hsm_fail(st, "internal", "cannot encrypt the key");
		free(buf);
		goto out;
	}
	*out = buf;
	*outlen = GCM_NONCE + len + GCM_TAG;
	r = 0;
out:
	EVP_CIPHER_CTX_free(c);
	return r;
}

int
key_open(const unsigned char key[32], const char *part, const char *id,
    const unsigned char *in, size_t len, unsigned char **out, size_t *outlen,
    hsm_status *st)
{
	EVP_CIPHER_CTX *c = NULL;
	unsigned char *buf;
	size_t plen;
	int l, r = -1;

	if (len < GCM_NONCE + GCM_TAG)
		return hsm_fail(st, "integrity", "key %s is damaged", id);
	plen = len - GCM_NONCE - GCM_TAG;
	if ((buf = malloc(plen + 1)) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if ((c = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, in) != 1 ||
	    EVP_DecryptUpdate(c, NULL, &l, (const unsigned char *)part,
	    (int)strlen(part) + 1) != 1 ||
	    EVP_DecryptUpdate(c, NULL, &l, (const unsigned char *)id,
	    (int)strlen(id)) != 1 ||
	    EVP_DecryptUpdate(c, buf, &l, in + GCM_NONCE, (int)plen) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, GCM_TAG,
	    (void *)(uintptr_t)(in + len - GCM_TAG)) != 1 ||
	    EVP_DecryptFinal_ex(c, buf + l, &l) != 1) {
		OPENSSL_clear_free(buf, plen + 1);
		hsm_fail(st, "integrity", "key %s does not authenticate "
		    "(damaged, or sealed under another key)", id);
		goto out;
	}
	*out = buf;
	*outlen = plen;
	r = 0;
out:
	EVP_CIPHER_CTX_free(c);
	return r;
}

static int
seal(const struct node_ctx *n, const char *part, const char *id,
    const unsigned char *in, size_t len, unsigned char **out, size_t *outlen,
    hsm_status *st)
{
	return key_seal(n->master_key, part, id, in, len, out, outlen, st);
}

static int
unseal(const struct node_ctx *n, const char *part, const char *id,
    const unsigned char *in, size_t len, unsigned char **out, size_t *outlen,
    hsm_status *st)
{
	return key_open(n->master_key, part, id, in, len, out, outlen, st);
}

int
objects_seal(const struct node_ctx *n, const char *part, const char *id,
    const unsigned char *in, size_t len, unsigned char **out, size_t *outlen,
    hsm_status *st)
{
	return seal(n, part, id, in, len, out, outlen, st);
}

int
objects_unseal(const struct node_ctx *n, const char *part, const char *id,
    const unsigned char *in, size_t len, unsigned char **out, size_t *outlen,
    hsm_status *st)
{
	return unseal(n, part, id, in, len, out, outlen, st);
}

/* A new key: private part as PKCS#8 DER (or raw AES), public as SPKI DER. */
static int
make_key(int t, unsigned char **priv, size_t *privlen, unsigned char **pub,
    size_t *publen, hsm_status *st)
{
	EVP_PKEY *k = NULL;
	int n, r = -1;

	*priv = *pub = NULL;
	*privlen = *publen = 0;
	if (key_types[t].kind == 3) {
		if ((*priv = malloc(32)) == NULL)
			return hsm_fail(st, "no_memory", "out of memory");
		if (RAND_priv_bytes(*priv, 32) != 1) {
			free(*priv);
			*priv = NULL;
			return hsm_fail(st, "internal", "no randomness");
		}
		*privlen = 32;
		return 0;
	}
	if (key_types[t].kind == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA",
		    (size_t)key_types[t].bits);
	else if (key_types[t].kind == 1)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", key_types[t].curve);
	else
		k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (k == NULL)
		return hsm_fail(st, "internal", "cannot generate a %s key",
		    key_types[t].name);
	if ((n = i2d_PrivateKey(k, priv)) <= 0) {
		hsm_fail(st, "internal", "cannot encode the key");
		goto out;
	}
	*privlen = (size_t)n;
	if ((n = i2d_PUBKEY(k, pub)) <= 0) {
		hsm_fail(st, "internal", "cannot encode the public key");
		goto out;
	}
	*publen = (size_t)n;
	r = 0;
out:
	if (r != 0 && *priv != NULL) {
		OPENSSL_clear_free(*priv, *privlen);
		*priv = NULL;
	}
	EVP_PKEY_free(k);
	return r;
}

int
op_key_generate(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "partition", "type", "label",
	    "extractable", "sensitive", "session", NULL };
	char part[HSM_NAME_MAX + 1], type[16], label[128] = "", id[33];
	char maxs[32], sizes[32], what[256];
	const cbor_item_t *x = hsm_map_get(args, "extractable"),
	    *sn = hsm_map_get(args, "sensitive"), *se = hsm_map_get(args,
	    "session");
	bool extractable, sensitive, session;
	unsigned char *priv = NULL, *pub = NULL, *sealed = NULL, rnd[16];
	size_t privlen = 0, publen = 0, sealedlen = 0;
	int64_t objects, inval, bytes, maxo, maxb;
	sqlite3_stmt *q = NULL;
	int t, r = -1;

	if (args_allowed(args, names, st) != 0 ||
	    key_partition(s, args, part, true, st) != 0 ||
	    arg_text(args, "type", type, sizeof(type), true, st) != 0 ||
	    arg_text(args, "label", label, sizeof(label), false, st) < 0)
		return -1;
	if ((x != NULL && !hsm_cbor_is_bool(x)) ||
	    (sn != NULL && !hsm_cbor_is_bool(sn)) ||
	    (se != NULL && !hsm_cbor_is_bool(se)))
		return hsm_fail(st, "bad_request", "key flags are booleans");
	extractable = x != NULL && cbor_get_bool(x);
	sensitive = sn == NULL || cbor_get_bool(sn);
	session = se != NULL && cbor_get_bool(se);
	if ((t = type_index(type)) < 0)
		return hsm_fail(st, "bad_value", "unknown key type '%s'", type);
	if (partition_exit_state(s->db, part) != 0)
		return hsm_fail(st, "read_only", "partition %s is leaving the "
		    "cluster (an exit is in progress): read-only", part);
	if (param_on(s->db, part, "read-only"))
		return hsm_fail(st, "read_only", "partition %s is read-only",
		    part);
	if (session && !param_on(s->db, part, "session-objects"))
		return hsm_fail(st, "read_only", "partition %s allows no "
		    "session objects (session-objects is off)", part);
	if (make_key(t, &priv, &privlen, &pub, &publen, st) != 0)
		return -1;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		hsm_fail(st, "internal", "no randomness");
		goto out;
	}
	hsm_hex(rnd, sizeof(rnd), id);
	if (seal(s->node, part, id, priv, privlen, &sealed, &sealedlen,
	    st) != 0 || tx_begin(s, st) != 0)
		goto out;
	/* Quotas count invalidated keys too (DESIGN §6). */
	objects_usage(s->db, part, &objects, &inval, &bytes);
	param(s->db, part, "max-key-objects", maxs, sizeof(maxs));
	param(s->db, part, "size-mb", sizes, sizeof(sizes));
	maxo = strtoll(maxs, NULL, 10);
	maxb = strtoll(sizes, NULL, 10) * 1024 * 1024;
	if (maxo > 0 && objects + inval + 1 > maxo) {
		hsm_fail(st, "quota", "partition %s holds %lld of %lld key "
		    "objects (invalidated ones count)", part,
		    (long long)(objects + inval), (long long)maxo);
		goto fail;
	}
	if (bytes + (int64_t)(sealedlen + publen) > maxb) {
		hsm_fail(st, "quota", "partition %s would exceed its %s MB",
		    part, sizes);
		goto fail;
	}
	if (sqlite3_prepare_v2(s->db, "INSERT INTO objects (id, partition, "
	    "type, label, extractable, sensitive, session, state, created, "
	    "pub, priv, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'active', "
	    "?8, ?9, ?10, ?11)", -1, &q, NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, part, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, label, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 5, extractable);
	sqlite3_bind_int(q, 6, sensitive);
	if (session)
		sqlite3_bind_text(q, 7, s->id, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(q, 7);
	sqlite3_bind_int64(q, 8, (int64_t)time(NULL));
	if (pub != NULL)
		sqlite3_bind_blob(q, 9, pub, (int)publen, SQLITE_STATIC);
	else
		sqlite3_bind_null(q, 9);
	sqlite3_bind_blob(q, 10, sealed, (int)sealedlen, SQLITE_STATIC);
	sqlite3_bind_int64(q, 11, (int64_t)(sealedlen + publen));
	if (sqlite3_step(q) != SQLITE_DONE)
		goto sqlfail;
	snprintf(what, sizeof(what), "id=%s type=%s label=%s%s%s%s", id, type,
	    label, extractable ? " extractable" : "",
	    sensitive ? "" : " not-sensitive", session ? " session" : "");
	if (audit_append(s, part, "key.generate", what, "ok", st) != 0 ||
	    tx_commit(s, st) != 0)
		goto fail;
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "id", id) != 0 ||
	    hsm_map_put_str(*res, "type", type) != 0 ||
	    hsm_map_put_str(*res, "label", label) != 0) {
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
	if (priv != NULL)
		OPENSSL_clear_free(priv, privlen);
	OPENSSL_free(pub);
	free(sealed);
	return r;
}

static int
id_arg(const cbor_item_t *args, char *id, hsm_status *st)
{
	if (arg_text(args, "id", id, 33, true, st) != 0)
		return -1;
	if (strlen(id) != 32 || strspn(id, "0123456789abcdef") != 32)
		return hsm_fail(st, "bad_value", "a key id is 32 lower-case hex "
		    "digits");
	return 0;
}

/* One key's row (state NULL: any state). */
struct object {
	char id[33], type[16], label[128], state[16];
	bool extractable, sensitive, session;
	int64_t created;
	unsigned char *pub, *priv;
	size_t publen, privlen;
};

static void
object_clear(struct object *o)
{
	free(o->pub);
	free(o->priv);
	memset(o, 0, sizeof(*o));
}

static int
object_load(sqlite3 *db, const char *part, const char *id, struct object *o,
    hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	int rc;

	memset(o, 0, sizeof(*o));
	if (sqlite3_prepare_v2(db, "SELECT id, type, label, state, extractable, "
	    "sensitive, session IS NOT NULL, created, pub, priv FROM objects "
	    "WHERE partition = ?1 AND id = ?2", -1, &q, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, id, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		snprintf(o->id, sizeof(o->id), "%s", sqlite3_column_text(q, 0));
		snprintf(o->type, sizeof(o->type), "%s",
		    sqlite3_column_text(q, 1));
		snprintf(o->label, sizeof(o->label), "%s",
		    sqlite3_column_text(q, 2));
		snprintf(o->state, sizeof(o->state), "%s",
		    sqlite3_column_text(q, 3));
		o->extractable = sqlite3_column_int(q, 4);
		o->sensitive = sqlite3_column_int(q, 5);
		o->session = sqlite3_column_int(q, 6);
		o->created = sqlite3_column_int64(q, 7);
		if ((o->publen = (size_t)sqlite3_column_bytes(q, 8)) > 0 &&
		    (o->pub = malloc(o->publen)) != NULL)
			memcpy(o->pub, sqlite3_column_blob(q, 8), o->publen);
		if ((o->privlen = (size_t)sqlite3_column_bytes(q, 9)) > 0 &&
		    (o->priv = malloc(o->privlen)) != NULL)
			memcpy(o->priv, sqlite3_column_blob(q, 9), o->privlen);
	}
	sqlite3_finalize(q);
	if (rc != SQLITE_ROW)
		return hsm_fail(st, "not_found", "no key %s in partition %s",
		    id, part);
	if ((o->publen > 0 && o->pub == NULL) || o->priv == NULL) {
		object_clear(o);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	return 0;
}

static cbor_item_t *
object_map(const struct object *o, bool with_pem)
{
	cbor_item_t *m = cbor_new_indefinite_map();
	bool ok = m != NULL && hsm_map_put_str(m, "id", o->id) == 0 &&
	    hsm_map_put_str(m, "type", o->type) == 0 &&
	    hsm_map_put_str(m, "label", o->label) == 0 &&
	    hsm_map_put_str(m, "state", o->state) == 0 &&
	    hsm_map_put_bool(m, "extractable", o->extractable) == 0 &&
	    hsm_map_put_bool(m, "sensitive", o->sensitive) == 0 &&
	    hsm_map_put_bool(m, "session", o->session) == 0 &&
	    hsm_map_put_uint(m, "created", (uint64_t)o->created) == 0;

	if (ok && with_pem && o->pub != NULL) {
		const unsigned char *p = o->pub;
		EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)o->publen);
		BIO *b = BIO_new(BIO_s_mem());
		char *pem = NULL;
		long n;

		if (k != NULL && b != NULL && PEM_write_bio_PUBKEY(b, k) == 1 &&
		    (n = BIO_get_mem_data(b, &pem)) > 0)
			ok = hsm_map_put(m, "public_key",
			    cbor_build_stringn(pem, (size_t)n)) == 0;
		else
			ok = false;
		BIO_free(b);
		EVP_PKEY_free(k);
	}
	if (!ok && m != NULL)
		cbor_decref(&m);
	return m;
}

int
op_key_list(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "partition", "invalidated",
	    NULL };
	const cbor_item_t *inv = hsm_map_get(args, "invalidated");
	char part[HSM_NAME_MAX + 1];
	sqlite3_stmt *q = NULL;
	cbor_item_t *list;
	int rc;

	if (args_allowed(args, names, st) != 0 ||
	    key_partition(s, args, part, false, st) != 0)
		return -1;
	if (inv != NULL && !hsm_cbor_is_bool(inv))
		return hsm_fail(st, "bad_request", "'invalidated' is a boolean");
	/* The invalidation bin is the SO's and the PSO's (DESIGN §5). */
	if (inv != NULL && cbor_get_bool(inv) && strcmp(s->role, "user") == 0)
		return hsm_fail(st, "not_authorized", "the invalidation bin is "
		    "listed by the SO or the PSO");
	if ((list = cbor_new_indefinite_array()) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (sqlite3_prepare_v2(s->db, "SELECT id FROM objects WHERE partition "
	    "= ?1 AND state = ?2 ORDER BY created, id", -1, &q, NULL) !=
	    SQLITE_OK) {
		cbor_decref(&list);
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
	}
	sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, inv != NULL && cbor_get_bool(inv) ?
	    "invalidated" : "active", -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct object o;
		cbor_item_t *e;
		bool ok;

		if (object_load(s->db, part, (const char *)sqlite3_column_text(
		    q, 0), &o, st) != 0) {
			rc = SQLITE_ERROR;
			break;
		}
		e = object_map(&o, false);
		ok = e != NULL && cbor_array_push(list, e);
		if (e != NULL)
			cbor_decref(&e);
		object_clear(&o);
		if (!ok) {
			rc = SQLITE_NOMEM;
			break;
		}
	}
	sqlite3_finalize(q);
	return list_result(res, "keys", list, rc == SQLITE_DONE, "keys", st);
}

int
op_key_show(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "partition", "id", NULL };
	char part[HSM_NAME_MAX + 1], id[33];
	struct object o;

	if (args_allowed(args, names, st) != 0 ||
	    key_partition(s, args, part, false, st) != 0 ||
	    id_arg(args, id, st) != 0 || object_load(s->db, part, id, &o,
	    st) != 0)
		return -1;
	if (strcmp(s->role, "user") == 0 && strcmp(o.state, "active") != 0) {
		object_clear(&o);
		return hsm_fail(st, "not_found", "no key %s in partition %s",
		    id, part);
	}
	*res = object_map(&o, true);
	object_clear(&o);
	return *res != NULL ? 0 : hsm_fail(st, "no_memory", "out of memory");
}

/*
 * The key a session signs with, kept decoded between its requests: an
 * application signs many times with one key, and unsealing, decoding and
 * (for RSA) setting up blinding again each time costs a quarter of a sign.
 * Reused only while the stored sealed blob is the same one.
 */
struct key_cache {
	char part[HSM_NAME_MAX + 1], id[33];
	unsigned char blob_hash[32];
	EVP_PKEY *key;
};

void
objects_cache_drop(struct sess_ctx *s)
{
	if (s->keyc == NULL)
		return;
	EVP_PKEY_free(s->keyc->key);
	OPENSSL_cleanse(s->keyc, sizeof(*s->keyc));
	free(s->keyc);
	s->keyc = NULL;
}

static EVP_PKEY *
signing_key(struct sess_ctx *s, const char *part, const char *id,
    const struct object *o, hsm_status *st)
{
	unsigned char h[32], *priv = NULL;
	unsigned int hl = 0;
	size_t privlen = 0;
	const unsigned char *pp;
	EVP_PKEY *k;

	if (EVP_Digest(o->priv, o->privlen, h, &hl, EVP_sha256(), NULL) != 1) {
		hsm_fail(st, "internal", "SHA-256 failed");
		return NULL;
	}
	if (s->keyc != NULL && strcmp(s->keyc->part, part) == 0 &&
	    strcmp(s->keyc->id, id) == 0 &&
	    CRYPTO_memcmp(s->keyc->blob_hash, h, sizeof(h)) == 0 &&
	    EVP_PKEY_up_ref(s->keyc->key) == 1)
		return s->keyc->key;
	if (unseal(s->node, part, id, o->priv, o->privlen, &priv, &privlen,
	    st) != 0)
		return NULL;
	pp = priv;
	k = d2i_AutoPrivateKey(NULL, &pp, (long)privlen);
	OPENSSL_clear_free(priv, privlen);
	if (k == NULL) {
		hsm_fail(st, "integrity", "stored key %s is damaged", id);
		return NULL;
	}
	objects_cache_drop(s);
	if ((s->keyc = calloc(1, sizeof(*s->keyc))) != NULL &&
	    EVP_PKEY_up_ref(k) == 1) {
		snprintf(s->keyc->part, sizeof(s->keyc->part), "%s", part);
		snprintf(s->keyc->id, sizeof(s->keyc->id), "%s", id);
		memcpy(s->keyc->blob_hash, h, sizeof(h));
		s->keyc->key = k;
	} else {
		free(s->keyc);
		s->keyc = NULL;
	}
	return k;
}

int
op_key_sign(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "partition", "id", "data", "alg",
	    NULL };
	char part[HSM_NAME_MAX + 1], id[33], alg[32] = "";
	const unsigned char *data;
	size_t len, siglen = 0;
	unsigned char *sig = NULL;
	struct object o;
	EVP_PKEY *k = NULL;
	EVP_MD_CTX *md = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	const EVP_MD *h = NULL;
	int r = -1;

	memset(&o, 0, sizeof(o));
	if (args_allowed(args, names, st) != 0 ||
	    key_partition(s, args, part, true, st) != 0 ||
	    id_arg(args, id, st) != 0 ||
	    arg_bytes(args, "data", &data, &len, true, st) != 0 ||
	    arg_text(args, "alg", alg, sizeof(alg), false, st) < 0)
		return -1;
	if (len > SIGN_IN_MAX)
		return hsm_fail(st, "bad_value", "data to sign over %u bytes",
		    SIGN_IN_MAX);
	if (!param_on(s->db, part, "object-usage"))
		return hsm_fail(st, "read_only", "keys of partition %s cannot "
		    "be used (object-usage is off)", part);
	if (object_load(s->db, part, id, &o, st) != 0)
		return -1;
	if (strcmp(o.state, "active") != 0) {
		hsm_fail(st, "not_found", "key %s is invalidated", id);
		goto out;
	}
	if (strcmp(o.type, "aes-256") == 0) {
		hsm_fail(st, "conflict", "key %s is an aes-256 key, which does "
		    "not sign", id);
		goto out;
	}
	if ((k = signing_key(s, part, id, &o, st)) == NULL)
		goto out;
	/* The key type's default, or one --alg that fits the key. */
	if (alg[0] == '\0')
		snprintf(alg, sizeof(alg), "%s", strcmp(o.type, "ed25519") == 0 ?
		    "ed25519" : strcmp(o.type, "ec-p384") == 0 ? "ecdsa-sha384" :
		    strncmp(o.type, "ec-", 3) == 0 ? "ecdsa-sha256" :
		    "rsa-pkcs1-sha256");
	if (!((strncmp(o.type, "rsa-", 4) == 0 && strncmp(alg, "rsa-", 4) == 0) ||
	    (strncmp(o.type, "ec-", 3) == 0 && strncmp(alg, "ecdsa-", 6) == 0) ||
	    (strcmp(o.type, "ed25519") == 0 && strcmp(alg, "ed25519") == 0))) {
		hsm_fail(st, "conflict", "a %s key does not sign with %s",
		    o.type, alg);
		goto out;
	}
	if (strcmp(alg, "ed25519") != 0) {
		if (strstr(alg, "sha384") != NULL)
			h = EVP_sha384();
		else if (strstr(alg, "sha256") != NULL)
			h = EVP_sha256();
		else {
			hsm_fail(st, "bad_value", "unknown alg '%s'", alg);
			goto out;
		}
	}
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit(md, &pctx, h, NULL, k) != 1 ||
	    (strcmp(alg, "rsa-pss-sha256") == 0 &&
	    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) !=
	    1)) ||
	    (strncmp(alg, "rsa-", 4) == 0 && strcmp(alg, "rsa-pss-sha256") != 0 &&
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) ||
	    EVP_DigestSign(md, NULL, &siglen, data, len) != 1 ||
	    (sig = malloc(siglen)) == NULL ||
	    EVP_DigestSign(md, sig, &siglen, data, len) != 1) {
		hsm_fail(st, "internal", "signing failed");
		goto out;
	}
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "id", id) != 0 ||
	    hsm_map_put_str(*res, "alg", alg) != 0 ||
	    hsm_map_put(*res, "signature", cbor_build_bytestring(sig,
	    siglen)) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = 0;
out:
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(k);	/* our reference; the cache keeps its own */
	free(sig);
	object_clear(&o);
	if (r != 0 && *res != NULL)
		cbor_decref(res);
	return r;
}

/* Move a key between states, or destroy it. */
static int
key_change(struct sess_ctx *s, const cbor_item_t *args, const char *op,
    bool user_only, cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "partition", "id", NULL };
	char part[HSM_NAME_MAX + 1], id[33], from[16], what[64];
	const char *sql, *done;
	struct object o;
	sqlite3_stmt *q = NULL;
	int r = -1;

	if (args_allowed(args, names, st) != 0 ||
	    key_partition(s, args, part, user_only, st) != 0 ||
	    id_arg(args, id, st) != 0 || object_load(s->db, part, id, &o,
	    st) != 0)
		return -1;
	snprintf(from, sizeof(from), "%s", o.state);
	object_clear(&o);
	if (strcmp(op, "key.delete") == 0) {
		if (strcmp(from, "active") != 0)
			return hsm_fail(st, "not_found", "key %s is already "
			    "invalidated", id);
		if (partition_exit_state(s->db, part) != 0)
			return hsm_fail(st, "read_only", "partition %s is "
			    "leaving the cluster: read-only", part);
		if (param_on(s->db, part, "read-only"))
			return hsm_fail(st, "read_only", "partition %s is "
			    "read-only", part);
		if (!param_on(s->db, part, "object-destruction"))
			return hsm_fail(st, "read_only", "partition %s forbids "
			    "deleting keys (object-destruction is off)", part);
		/* With key-invalidation on, delete only moves it to the bin. */
		if (param_on(s->db, part, "key-invalidation")) {
			sql = "UPDATE objects SET state = 'invalidated' WHERE "
			    "partition = ?1 AND id = ?2";
			done = "invalidated";
		} else {
			sql = "DELETE FROM objects WHERE partition = ?1 AND "
			    "id = ?2";
			done = "destroyed";
		}
	} else {
		if (strcmp(from, "invalidated") != 0)
			return hsm_fail(st, "not_found", "key %s is not in the "
			    "invalidation bin", id);
		if (strcmp(op, "key.restore") == 0) {
			sql = "UPDATE objects SET state = 'active' WHERE "
			    "partition = ?1 AND id = ?2";
			done = "restored";
		} else {
			sql = "DELETE FROM objects WHERE partition = ?1 AND "
			    "id = ?2";
			done = "purged";
		}
	}
	if (tx_begin(s, st) != 0)
		return -1;
	if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_text(q, 1, part, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, id, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_DONE)
		goto sqlfail;
	snprintf(what, sizeof(what), "id=%s", id);
	if (audit_append(s, part, op, what, done, st) != 0 ||
	    tx_commit(s, st) != 0)
		goto fail;
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "id", id) != 0 ||
	    hsm_map_put_str(*res, "result", done) != 0) {
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
	return r;
}

int
op_key_delete(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	return key_change(s, args, "key.delete", true, res, st);
}

int
op_key_restore(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	return key_change(s, args, "key.restore", false, res, st);
}

int
op_key_purge(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	return key_change(s, args, "key.purge", false, res, st);
}

void
objects_session_end(struct sess_ctx *s, const char *session)
{
	sqlite3_stmt *q = NULL;
	hsm_status st;

	/* Session objects live as long as the session that made them. */
	hsm_status_clear(&st);
	if (tx_begin(s, &st) != 0)
		goto fail;
	if (sqlite3_prepare_v2(s->db, session != NULL ? "DELETE FROM objects "
	    "WHERE session = ?1" : "DELETE FROM objects WHERE session IS NOT "
	    "NULL", -1, &q, NULL) != SQLITE_OK) {
		tx_rollback(s);
		goto fail;
	}
	if (session != NULL)
		sqlite3_bind_text(q, 1, session, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_DONE) {
		sqlite3_finalize(q);
		tx_rollback(s);
		goto fail;
	}
	sqlite3_finalize(q);
	/* A replicated change: the master's, sent to the replicas. */
	if (tx_commit(s, &st) == 0)
		return;
fail:
	log_warn("cannot drop session objects: %s", st.message[0] ?
	    st.message : sqlite3_errmsg(s->db));
}

/*
 * key.attest: a statement about one key (partition, id, type, flags,
 * creation, public key) signed by the node's attestation key, an Ed25519
 * key of its own that never signs anything else.  The signature covers
 * "hsmctl-attest-v1" || 0x00 || the CBOR statement.
 */
#define ATTEST_CONTEXT "hsmctl-attest-v1"

int
op_key_attest(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "partition", "id", NULL };
	char part[HSM_NAME_MAX + 1], id[33];
	struct object o;
	cbor_item_t *stmt = NULL;
	unsigned char *buf = NULL, *msg = NULL, sig[64];
	size_t len = 0, siglen = sizeof(sig);
	EVP_MD_CTX *md = NULL;
	BIO *b = NULL;
	char *pem = NULL;
	long pemlen;
	int r = -1;

	if (args_allowed(args, names, st) != 0 ||
	    key_partition(s, args, part, false, st) != 0 ||
	    id_arg(args, id, st) != 0 || object_load(s->db, part, id, &o,
	    st) != 0)
		return -1;
	if (s->node->attest == NULL) {
		hsm_fail(st, "internal", "this node has no attestation key");
		goto out;
	}
	if ((stmt = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_uint(stmt, "v", 1) != 0 ||
	    hsm_map_put_str(stmt, "node", s->node->name) != 0 ||
	    hsm_map_put_str(stmt, "cluster", s->node->cluster) != 0 ||
	    hsm_map_put_str(stmt, "cluster_id", s->node->cluster_id) != 0 ||
	    hsm_map_put_str(stmt, "partition", part) != 0 ||
	    hsm_map_put_str(stmt, "id", o.id) != 0 ||
	    hsm_map_put_str(stmt, "type", o.type) != 0 ||
	    hsm_map_put_str(stmt, "label", o.label) != 0 ||
	    hsm_map_put_str(stmt, "state", o.state) != 0 ||
	    hsm_map_put_bool(stmt, "extractable", o.extractable) != 0 ||
	    hsm_map_put_bool(stmt, "sensitive", o.sensitive) != 0 ||
	    hsm_map_put_bool(stmt, "generated_on_node", true) != 0 ||
	    hsm_map_put_uint(stmt, "created", (uint64_t)o.created) != 0 ||
	    (o.pub != NULL && hsm_map_put(stmt, "public_key",
	    cbor_build_bytestring(o.pub, o.publen)) != 0) ||
	    hsm_map_put_uint(stmt, "time", (uint64_t)time(NULL)) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (hsm_cbor_encode(stmt, &buf, &len, st) != 0)
		goto out;
	if ((msg = malloc(sizeof(ATTEST_CONTEXT) + len)) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	memcpy(msg, ATTEST_CONTEXT, sizeof(ATTEST_CONTEXT));	/* with NUL */
	memcpy(msg + sizeof(ATTEST_CONTEXT), buf, len);
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit(md, NULL, NULL, NULL, s->node->attest) != 1 ||
	    EVP_DigestSign(md, sig, &siglen, msg, sizeof(ATTEST_CONTEXT) +
	    len) != 1) {
		hsm_fail(st, "internal", "cannot sign the attestation");
		goto out;
	}
	if ((b = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_PUBKEY(b, s->node->attest) != 1 ||
	    (pemlen = BIO_get_mem_data(b, &pem)) <= 0) {
		hsm_fail(st, "internal", "cannot export the attestation key");
		goto out;
	}
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put(*res, "statement", cbor_build_bytestring(buf,
	    len)) != 0 ||
	    hsm_map_put(*res, "signature", cbor_build_bytestring(sig,
	    siglen)) != 0 ||
	    hsm_map_put(*res, "attestation_key", cbor_build_stringn(pem,
	    (size_t)pemlen)) != 0 ||
	    hsm_map_put_str(*res, "context", ATTEST_CONTEXT) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = 0;
out:
	BIO_free(b);
	EVP_MD_CTX_free(md);
	free(msg);
	free(buf);
	if (stmt != NULL)
		cbor_decref(&stmt);
	object_clear(&o);
	if (r != 0 && *res != NULL)
		cbor_decref(res);
	return r;
}
