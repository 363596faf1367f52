/*
 * Officer login: a single-use challenge bound to this node, cluster,
 * role and partition; signatures of registered officers of that role;
 * the role is granted when the count of distinct officers meets the
 * quorum.  Every attempt consumes the challenge and is audited.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "audit.h"
#include "auth.h"
#include "log.h"
#include "officers.h"
#include "store.h"

#define NONCE_LEN 32
#define MAX_APPROVALS 16

/* The role/partition pair a challenge or an officer belongs to. */
static int
check_role_partition(const char *role, const char *part, hsm_status *st)
{
	if (role_bit(role) == 0)
		return hsm_fail(st, "bad_value", "role must be genesis, so or "
		    "pso, not '%s'", role);
	if (strcmp(role, "pso") == 0) {
		if (part[0] == '\0')
			return hsm_fail(st, "bad_value", "the pso role needs "
			    "a partition");
		if (!name_ok(part))
			return hsm_fail(st, "bad_value", "invalid partition "
			    "name '%s'", part);
	} else if (part[0] != '\0')
		return hsm_fail(st, "bad_value", "the %s role has no "
		    "partition", role);
	return 0;
}

int
op_auth_challenge(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "role", "partition", NULL };
	char role[16], part[HSM_NAME_MAX + 1] = "";
	unsigned char nonce[NONCE_LEN], *tok = NULL;
	size_t toklen = 0;
	cbor_item_t *t = NULL;
	sqlite3_stmt *q = NULL;
	time_t now = time(NULL);
	int64_t life = store_meta_int(s->db, "challenge_lifetime", 600);
	int r = -1;

	if (args_allowed(args, names, st) != 0 ||
	    arg_text(args, "role", role, sizeof(role), true, st) != 0 ||
	    arg_text(args, "partition", part, sizeof(part), false, st) < 0 ||
	    check_role_partition(role, part, st) != 0)
		return -1;
	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return hsm_fail(st, "internal", "no randomness");
	if ((t = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_uint(t, "v", 1) != 0 ||
	    hsm_map_put_str(t, "purpose", "login") != 0 ||
	    hsm_map_put(t, "nonce", cbor_build_bytestring(nonce,
	    sizeof(nonce))) != 0 ||
	    hsm_map_put_str(t, "node", s->node->name) != 0 ||
	    hsm_map_put_str(t, "cluster", s->node->cluster) != 0 ||
	    hsm_map_put_str(t, "cluster_id", s->node->cluster_id) != 0 ||
	    hsm_map_put_str(t, "role", role) != 0 ||
	    hsm_map_put_str(t, "partition", part) != 0 ||
	    hsm_map_put_uint(t, "issued", (uint64_t)now) != 0 ||
	    hsm_map_put_uint(t, "expires", (uint64_t)(now + life)) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (hsm_cbor_encode(t, &tok, &toklen, st) != 0)
		goto out;
	if (tx_begin(s, st) != 0)
		goto out;
	/* Spent and expired challenges are kept a day, for the audit trail. */
	if (sqlite3_prepare_v2(s->db, "DELETE FROM challenges WHERE expires < "
	    "?1", -1, &q, NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_int64(q, 1, (int64_t)now - 86400);
	if (sqlite3_step(q) != SQLITE_DONE)
		goto sqlfail;
	sqlite3_finalize(q);
	q = NULL;
	if (sqlite3_prepare_v2(s->db, "INSERT INTO challenges (nonce, token, "
	    "role, partition, purpose, expires, created, session) VALUES "
	    "(?1, ?2, ?3, ?4, 'login', ?5, ?6, ?7)", -1, &q, NULL) !=
	    SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_blob(q, 1, nonce, sizeof(nonce), SQLITE_STATIC);
	sqlite3_bind_blob(q, 2, tok, (int)toklen, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, role, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, part, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 5, (int64_t)(now + life));
	sqlite3_bind_int64(q, 6, (int64_t)now);
	sqlite3_bind_text(q, 7, s->id, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_DONE)
		goto sqlfail;
	if (tx_commit(s, st) != 0)
		goto out;
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put(*res, "token", cbor_build_bytestring(tok,
	    toklen)) != 0 ||
	    hsm_map_put_uint(*res, "expires", (uint64_t)(now + life)) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = 0;
	goto out;
sqlfail:
	hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
	tx_rollback(s);
out:
	sqlite3_finalize(q);
	free(tok);
	if (t != NULL)
		cbor_decref(&t);
	if (r != 0 && *res != NULL)
		cbor_decref(res);
	return r;
}

/* The fields of a challenge token, as the node made it. */
struct challenge {
	const unsigned char *nonce;
	char node[HSM_NAME_MAX + 1], cluster_id[33];
	char role[16], partition[HSM_NAME_MAX + 1], purpose[16];
	uint64_t expires;
};

static int
parse_token(const unsigned char *tok, size_t len, cbor_item_t **item,
    struct challenge *c, hsm_status *st)
{
	const unsigned char *nonce;
	size_t nlen;

	memset(c, 0, sizeof(*c));
	if (hsm_cbor_decode(tok, len, item, st) != 0 || !cbor_isa_map(*item))
		return hsm_fail(st, "login_refused", "the challenge token is "
		    "malformed");
	if (arg_bytes(*item, "nonce", &nonce, &nlen, true, st) != 0 ||
	    nlen != NONCE_LEN ||
	    arg_text(*item, "node", c->node, sizeof(c->node), true, st) != 0 ||
	    arg_text(*item, "cluster_id", c->cluster_id,
	    sizeof(c->cluster_id), true, st) != 0 ||
	    arg_text(*item, "role", c->role, sizeof(c->role), true, st) != 0 ||
	    arg_text(*item, "partition", c->partition, sizeof(c->partition),
	    true, st) != 0 ||
	    arg_text(*item, "purpose", c->purpose, sizeof(c->purpose), true,
	    st) != 0 ||
	    arg_uint(*item, "expires", &c->expires, true, st) != 0)
		return hsm_fail(st, "login_refused", "the challenge token is "
		    "malformed");
	c->nonce = nonce;
	return 0;
}

/* Look the challenge up and spend it: single use, whatever follows. */
static int
spend_challenge(struct sess_ctx *s, const struct challenge *c,
    const unsigned char *tok, size_t toklen, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	int rc, used = 0, r = -1;
	int64_t expires = 0;
	bool same = false;

	if (sqlite3_prepare_v2(s->db, "SELECT token, used, expires FROM "
	    "challenges WHERE nonce = ?1", -1, &q, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
	sqlite3_bind_blob(q, 1, c->nonce, NONCE_LEN, SQLITE_STATIC);
	if ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		same = (size_t)sqlite3_column_bytes(q, 0) == toklen &&
		    memcmp(sqlite3_column_blob(q, 0), tok, toklen) == 0;
		used = sqlite3_column_int(q, 1);
		expires = sqlite3_column_int64(q, 2);
	}
	sqlite3_finalize(q);
	q = NULL;
	if (rc != SQLITE_ROW || !same) {
		hsm_fail(st, "login_refused", "the challenge was not issued by "
		    "this node");
		return -1;
	}
	if (used) {
		hsm_fail(st, "login_refused", "the challenge was already used "
		    "(replay refused)");
		return -1;
	}
	if (sqlite3_prepare_v2(s->db, "UPDATE challenges SET used = 1 WHERE "
	    "nonce = ?1", -1, &q, NULL) != SQLITE_OK) {
		hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
		return -1;
	}
	sqlite3_bind_blob(q, 1, c->nonce, NONCE_LEN, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_DONE)
		hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
	else if (time(NULL) > expires)
		hsm_fail(st, "login_refused", "the challenge has expired");
	else
		r = 0;
	sqlite3_finalize(q);
	return r;
}

/* Check every approval; on success names[] lists the distinct officers. */
static int
check_approvals(struct sess_ctx *s, const struct challenge *c,
    const unsigned char *tok, size_t toklen, const cbor_item_t *list,
    char *names, size_t nameslen, size_t *count, hsm_status *st)
{
	int64_t ids[MAX_APPROVALS];
	size_t n;

	*count = 0;
	names[0] = '\0';
	if (list == NULL || !cbor_isa_array(list))
		return hsm_fail(st, "bad_request", "argument 'approvals' is "
		    "not an array");
	n = cbor_array_size(list);
	if (n == 0 || n > MAX_APPROVALS)
		return hsm_fail(st, "login_refused", "between 1 and %d "
		    "approvals are needed", MAX_APPROVALS);
	for (size_t i = 0; i < n; i++) {
		const cbor_item_t *a = cbor_array_handle(list)[i];
		const unsigned char *pk, *sig;
		size_t pklen, siglen;
		struct officer o;

		if (!cbor_isa_map(a) ||
		    arg_bytes(a, "pubkey", &pk, &pklen, true, st) != 0 ||
		    arg_bytes(a, "sig", &sig, &siglen, true, st) != 0)
			return hsm_fail(st, "bad_request", "approval %zu is "
			    "malformed", i + 1);
		if (officer_by_key(s->db, pk, pklen, c->role, c->partition, &o,
		    st) != 0)
			return -1;
		if (hsm_verify(pk, pklen, tok, toklen, sig, siglen, st) != 0)
			return hsm_fail(st, "login_refused", "the signature "
			    "of officer %s does not verify", o.name);
		for (size_t j = 0; j < *count; j++)
			if (ids[j] == o.id)
				return hsm_fail(st, "login_refused", "officer "
				    "%s approved twice; the quorum counts "
				    "distinct officers", o.name);
		ids[(*count)++] = o.id;
		if (strlen(names) + strlen(o.name) + 2 < nameslen) {
			if (names[0] != '\0')
				strcat(names, ",");
			strcat(names, o.name);
		}
	}
	return 0;
}

int
op_auth_login(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "token", "approvals", NULL };
	const unsigned char *tok;
	size_t toklen, count = 0;
	cbor_item_t *item = NULL, *list;
	struct challenge c;
	char who[512] = "", why[HSM_MSG_MAX + 32], desc[160];
	int64_t m;
	hsm_status refusal;
	int r = -1;

	if (args_allowed(args, names, st) != 0 ||
	    arg_bytes(args, "token", &tok, &toklen, true, st) != 0)
		return -1;
	if (toklen > HSM_TOKEN_MAX)
		return hsm_fail(st, "bad_request", "token too long");
	list = hsm_map_get(args, "approvals");
	hsm_status_clear(&refusal);
	if (tx_begin(s, st) != 0)
		return -1;
	/* Refusals are committed too: the challenge is spent and audited. */
	if (parse_token(tok, toklen, &item, &c, &refusal) != 0)
		goto refuse;
	snprintf(desc, sizeof(desc), "role=%s%s%s", c.role,
	    c.partition[0] ? " partition=" : "", c.partition);
	if (strcmp(c.node, s->node->name) != 0 ||
	    strcmp(c.cluster_id, s->node->cluster_id) != 0) {
		hsm_fail(&refusal, "login_refused", "the challenge was issued "
		    "by node %s%s, not by this node", c.node,
		    strcmp(c.cluster_id, s->node->cluster_id) != 0 ?
		    " of another cluster" : "");
		goto refuse;
	}
	if (strcmp(c.purpose, "login") != 0) {
		hsm_fail(&refusal, "login_refused", "the token approves an "
		    "operation, not a login");
		goto refuse;
	}
	if (spend_challenge(s, &c, tok, toklen, &refusal) != 0 ||
	    check_approvals(s, &c, tok, toklen, list, who, sizeof(who), &count,
	    &refusal) != 0)
		goto refuse;
	if (strcmp(c.role, "pso") == 0 &&
	    partition_admin_on(s->db, c.partition, &refusal) != 0)
		goto refuse;
	m = quorum_of(s->db, c.role, c.partition);
	if ((int64_t)count < m) {
		hsm_fail(&refusal, "quorum_not_met", "quorum not met: %zu of "
		    "%lld %s officers approved", count, (long long)m, c.role);
		goto refuse;
	}
	snprintf(s->role, sizeof(s->role), "%s", c.role);
	snprintf(s->partition, sizeof(s->partition), "%s", c.partition);
	snprintf(s->officers, sizeof(s->officers), "%s", who);
	s->login_time = s->last_use = time(NULL);
	if (audit_append(s, NULL, "auth.login", desc, "granted", st) != 0 ||
	    tx_commit(s, st) != 0) {
		s->role[0] = s->partition[0] = s->officers[0] = '\0';
		goto out;
	}
	log_info("%s: %s login granted to %s", s->peer, s->role, who);
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "role", s->role) != 0 ||
	    hsm_map_put_str(*res, "partition", s->partition) != 0 ||
	    hsm_map_put_str(*res, "officers", s->officers) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = 0;
	goto out;
refuse:
	if (refusal.code[0] == '\0' || hsm_code_exit(refusal.code) ==
	    HSM_EXIT_NODE)
		hsm_fail(&refusal, "login_refused", "%s",
		    refusal.message[0] ? refusal.message : "login refused");
	snprintf(why, sizeof(why), "refused: %s", refusal.message);
	if (audit_append(s, c.partition, "auth.login", c.role[0] ? desc : "", why,
	    st) != 0 || tx_commit(s, st) != 0) {
		tx_rollback(s);
		goto out;
	}
	log_info("%s: login refused: %s", s->peer, refusal.message);
	*st = refusal;
out:
	if (item != NULL)
		cbor_decref(&item);
	if (r != 0 && *res != NULL)
		cbor_decref(res);
	return r;
}

int
op_auth_logout(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	char was[16];

	if (args_allowed(args, NULL, st) != 0)
		return -1;
	snprintf(was, sizeof(was), "%s", s->role[0] ? s->role : "-");
	if (s->role[0] != '\0')
		audit_record(s, "auth.logout", "", "ok");
	s->role[0] = s->partition[0] = s->officers[0] = '\0';
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "logged_out", was) != 0)
		return hsm_fail(st, "no_memory", "out of memory");
	return 0;
}

int
op_auth_whoami(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	int64_t idle = store_meta_int(s->db, "idle_timeout", 900);
	bool in = s->role[0] != '\0' && time(NULL) - s->last_use <= idle;

	if (args_allowed(args, NULL, st) != 0)
		return -1;
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "role", in ? s->role : "none") != 0 ||
	    hsm_map_put_str(*res, "partition", in ? s->partition : "") != 0 ||
	    hsm_map_put_str(*res, "officers", in ? s->officers : "") != 0 ||
	    hsm_map_put_uint(*res, "since", in ?
	    (uint64_t)s->login_time : 0) != 0 ||
	    hsm_map_put_uint(*res, "expires", in ?
	    (uint64_t)(s->last_use + idle) : 0) != 0 ||
	    hsm_map_put_str(*res, "session", s->id) != 0 ||
	    hsm_map_put_str(*res, "terminal_key", s->term_fp) != 0 ||
	    hsm_map_put_str(*res, "node", s->node->name) != 0)
		return hsm_fail(st, "no_memory", "out of memory");
	return 0;
}
