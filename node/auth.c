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
	if (role_bit(role) == 0 || role_bit(role) == ROLE_USER)
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
	static const char *const names[] = { "role", "partition", "op",
	    "args", NULL };
	char role[16], part[HSM_NAME_MAX + 1] = "", op[HSM_OP_MAX + 1] = "";
	char state[65];
	const cbor_item_t *opargs = hsm_map_get(args, "args");
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
	    arg_text(args, "op", op, sizeof(op), false, st) < 0 ||
	    check_role_partition(role, part, st) != 0)
		return -1;
	/* An operation approval names the op and its exact arguments. */
	if (op[0] != '\0' && (opargs == NULL || !cbor_isa_map(opargs)))
		return hsm_fail(st, "bad_request", "an op approval needs the "
		    "op's 'args' map");
	if (op[0] == '\0' && opargs != NULL)
		return hsm_fail(st, "bad_request", "'args' without 'op'");
	if (op[0] != '\0' && op_approvable(op, role, st) != 0)
		return -1;
	audit_head_hex(s->db, state, sizeof(state));
	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return hsm_fail(st, "internal", "no randomness");
	if ((t = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_uint(t, "v", 1) != 0 ||
	    hsm_map_put_str(t, "purpose", op[0] ? "op" : "login") != 0 ||
	    (op[0] && (hsm_map_put_str(t, "op", op) != 0 ||
	    hsm_map_put(t, "args", cbor_incref((cbor_item_t *)(uintptr_t)
	    opargs)) != 0 || hsm_map_put_str(t, "state", state) != 0)) ||
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
	    "(?1, ?2, ?3, ?4, ?8, ?5, ?6, ?7)", -1, &q, NULL) !=
	    SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_blob(q, 1, nonce, sizeof(nonce), SQLITE_STATIC);
	sqlite3_bind_blob(q, 2, tok, (int)toklen, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, role, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, part, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 5, (int64_t)(now + life));
	sqlite3_bind_int64(q, 6, (int64_t)now);
	/* The requester's terminal key: who may cancel it besides a quorum. */
	sqlite3_bind_text(q, 7, s->term_fp, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 8, op[0] ? op : "login", -1, SQLITE_STATIC);
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

/*
 * The checks every approval passes, for a login or one operation: the
 * token is this node's, of the expected purpose, unspent and fresh;
 * every signature is a distinct registered officer of the token's role;
 * their number meets the quorum.  Inside the caller's transaction; on
 * failure st says why (a refusal, to be audited and committed).
 */
static int
approve(struct sess_ctx *s, const unsigned char *tok, size_t toklen,
    const cbor_item_t *list, const char *purpose, cbor_item_t **item,
    struct challenge *c, char *who, size_t wholen, hsm_status *st)
{
	size_t count = 0;
	int64_t m;

	if (parse_token(tok, toklen, item, c, st) != 0)
		return -1;
	if (strcmp(c->node, s->node->name) != 0 ||
	    strcmp(c->cluster_id, s->node->cluster_id) != 0)
		return hsm_fail(st, "login_refused", "the challenge was issued "
		    "by node %s%s, not by this node", c->node,
		    strcmp(c->cluster_id, s->node->cluster_id) != 0 ?
		    " of another cluster" : "");
	if (strcmp(c->purpose, purpose) != 0)
		return hsm_fail(st, "login_refused", "the token approves %s, "
		    "not %s", strcmp(c->purpose, "op") == 0 ?
		    "an operation" : "a login", strcmp(purpose, "op") == 0 ?
		    "an operation" : "a login");
	if (spend_challenge(s, c, tok, toklen, st) != 0 ||
	    check_approvals(s, c, tok, toklen, list, who, wholen, &count,
	    st) != 0)
		return -1;
	if (strcmp(c->role, "pso") == 0 &&
	    partition_admin_on(s->db, c->partition, st) != 0)
		return -1;
	m = quorum_of(s->db, c->role, c->partition);
	if ((int64_t)count < m)
		return hsm_fail(st, "quorum_not_met", "quorum not met: %zu of "
		    "%lld %s officers approved", count, (long long)m, c->role);
	return 0;
}

/* Record a refusal with the spent challenge, then report it. */
static void
refuse(struct sess_ctx *s, const struct challenge *c, const char *op,
    const char *desc, hsm_status *refusal, hsm_status *st)
{
	char why[HSM_MSG_MAX + 32];

	if (refusal->code[0] == '\0' || hsm_code_exit(refusal->code) ==
	    HSM_EXIT_NODE)
		hsm_fail(refusal, "login_refused", "%s",
		    refusal->message[0] ? refusal->message : "refused");
	snprintf(why, sizeof(why), "refused: %s", refusal->message);
	if (audit_append(s, c->partition, op, desc, why, st) != 0 ||
	    tx_commit(s, st) != 0) {
		tx_rollback(s);
		return;
	}
	log_info("%s: %s refused: %s", s->peer, op, refusal->message);
	*st = *refusal;
}

int
op_auth_login(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "token", "approvals", NULL };
	const unsigned char *tok;
	size_t toklen;
	cbor_item_t *item = NULL;
	struct challenge c;
	char who[512] = "", desc[160] = "";
	hsm_status refusal;
	int r = -1;

	if (args_allowed(args, names, st) != 0 ||
	    arg_bytes(args, "token", &tok, &toklen, true, st) != 0)
		return -1;
	if (toklen > HSM_TOKEN_MAX)
		return hsm_fail(st, "bad_request", "token too long");
	hsm_status_clear(&refusal);
	if (tx_begin(s, st) != 0)
		return -1;
	/* Refusals are committed too: the challenge is spent and audited. */
	if (approve(s, tok, toklen, hsm_map_get(args, "approvals"), "login",
	    &item, &c, who, sizeof(who), &refusal) != 0) {
		if (c.role[0] != '\0')
			snprintf(desc, sizeof(desc), "role=%s%s%s", c.role,
			    c.partition[0] ? " partition=" : "", c.partition);
		refuse(s, &c, "auth.login", desc, &refusal, st);
		goto out;
	}
	snprintf(desc, sizeof(desc), "role=%s%s%s", c.role,
	    c.partition[0] ? " partition=" : "", c.partition);
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
out:
	if (item != NULL)
		cbor_decref(&item);
	if (r != 0 && *res != NULL)
		cbor_decref(res);
	return r;
}

/* Equal CBOR encodings: the approved arguments, byte for byte. */
static bool
same_cbor(const cbor_item_t *a, const cbor_item_t *b)
{
	unsigned char *x = NULL, *y = NULL;
	size_t xl = 0, yl = 0;
	bool same;

	if (a == NULL || b == NULL || hsm_cbor_encode(a, &x, &xl, NULL) != 0 ||
	    hsm_cbor_encode(b, &y, &yl, NULL) != 0) {
		free(x);
		return false;
	}
	same = xl == yl && memcmp(x, y, xl) == 0;
	free(x);
	free(y);
	return same;
}

int
auth_op_approval(struct sess_ctx *s, const char *op, const cbor_item_t *args,
    const cbor_item_t *approval, struct sess_ctx *saved, hsm_status *st)
{
	const unsigned char *tok;
	size_t toklen;
	cbor_item_t *item = NULL;
	struct challenge c;
	char who[512] = "", state[65], desc[160];
	hsm_status refusal;
	int r = -1;

	memset(&c, 0, sizeof(c));
	if (!cbor_isa_map(approval) ||
	    arg_bytes(approval, "token", &tok, &toklen, true, st) != 0 ||
	    toklen > HSM_TOKEN_MAX)
		return hsm_fail(st, "bad_request", "argument 'approval' is "
		    "malformed");
	hsm_status_clear(&refusal);
	snprintf(desc, sizeof(desc), "op=%s", op);
	if (tx_begin(s, st) != 0)
		return -1;
	if (approve(s, tok, toklen, hsm_map_get(approval, "approvals"), "op",
	    &item, &c, who, sizeof(who), &refusal) != 0) {
		refuse(s, &c, "auth.approve", desc, &refusal, st);
		goto out;
	}
	/* Bound to this op, these arguments and the state it was asked in. */
	{
		char top[HSM_OP_MAX + 1] = "", head[65] = "";

		if (arg_text(item, "op", top, sizeof(top), true, &refusal) != 0 ||
		    arg_text(item, "state", state, sizeof(state), true,
		    &refusal) != 0 || strcmp(top, op) != 0) {
			hsm_fail(&refusal, "login_refused", "the approval is "
			    "for %s, not %s", top[0] ? top : "another op", op);
			refuse(s, &c, "auth.approve", desc, &refusal, st);
			goto out;
		}
		if (!same_cbor(hsm_map_get(item, "args"), args)) {
			hsm_fail(&refusal, "login_refused", "the approval is "
			    "for other arguments of %s", op);
			refuse(s, &c, "auth.approve", desc, &refusal, st);
			goto out;
		}
		audit_head_hex(s->db, head, sizeof(head));
		if (strcmp(state, head) != 0) {
			hsm_fail(&refusal, "login_refused", "the node's state "
			    "changed since the approval was requested");
			refuse(s, &c, "auth.approve", desc, &refusal, st);
			goto out;
		}
	}
	if (audit_append(s, c.partition, "auth.approve", desc, "granted",
	    st) != 0 || tx_commit(s, st) != 0)
		goto out;
	/* The approvers' role for this one request; the caller restores. */
	*saved = *s;
	snprintf(s->role, sizeof(s->role), "%s", c.role);
	snprintf(s->partition, sizeof(s->partition), "%s", c.partition);
	snprintf(s->officers, sizeof(s->officers), "%s", who);
	s->last_use = time(NULL);
	r = 0;
out:
	if (item != NULL)
		cbor_decref(&item);
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

/* Pending (unspent, unexpired) challenges; ID is the nonce's first 8 bytes. */
int
op_approval_list(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	cbor_item_t *list;
	int rc;

	if (args_allowed(args, NULL, st) != 0)
		return -1;
	if ((list = cbor_new_indefinite_array()) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (sqlite3_prepare_v2(s->db, "SELECT hex(substr(nonce, 1, 8)), "
	    "purpose, role, partition, expires, session FROM challenges WHERE "
	    "used = 0 AND expires >= ?1 ORDER BY created", -1, &q, NULL) !=
	    SQLITE_OK) {
		cbor_decref(&list);
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
	}
	sqlite3_bind_int64(q, 1, (int64_t)time(NULL));
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		cbor_item_t *e = cbor_new_indefinite_map();
		const char *f[6];
		bool ok;

		for (int i = 0; i < 6; i++) {
			f[i] = (const char *)sqlite3_column_text(q, i);
			if (f[i] == NULL)
				f[i] = "";
		}
		ok = e != NULL && hsm_map_put_str(e, "id", f[0]) == 0 &&
		    hsm_map_put_str(e, "for", f[1]) == 0 &&
		    hsm_map_put_str(e, "role", f[2]) == 0 &&
		    hsm_map_put_str(e, "partition", f[3]) == 0 &&
		    hsm_map_put_uint(e, "expires",
		    (uint64_t)sqlite3_column_int64(q, 4)) == 0 &&
		    hsm_map_put_str(e, "requester", f[5]) == 0;
		if (!list_push(list, &e, ok)) {
			rc = SQLITE_NOMEM;
			break;
		}
	}
	sqlite3_finalize(q);
	return list_result(res, "approvals", list, rc == SQLITE_DONE, "approvals", st);
}

/* Withdraw a pending challenge: its requester's terminal, or its role. */
int
op_approval_cancel(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "id", NULL };
	char id[17], role[16] = "", part[HSM_NAME_MAX + 1] = "";
	char requester[64] = "", desc[64];
	sqlite3_stmt *q = NULL;
	int rc;

	if (args_allowed(args, names, st) != 0 ||
	    arg_text(args, "id", id, sizeof(id), true, st) != 0)
		return -1;
	if (strlen(id) != 16 || strspn(id, "0123456789ABCDEFabcdef") != 16)
		return hsm_fail(st, "bad_value", "an approval ID is 16 hex "
		    "digits (approval list)");
	for (char *p = id; *p != '\0'; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	if (tx_begin(s, st) != 0)
		return -1;
	if (sqlite3_prepare_v2(s->db, "SELECT role, partition, session FROM "
	    "challenges WHERE hex(substr(nonce, 1, 8)) = ?1 AND used = 0",
	    -1, &q, NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		snprintf(role, sizeof(role), "%s", sqlite3_column_text(q, 0));
		snprintf(part, sizeof(part), "%s", sqlite3_column_text(q, 1));
		snprintf(requester, sizeof(requester), "%s",
		    sqlite3_column_text(q, 2));
	}
	sqlite3_finalize(q);
	q = NULL;
	if (rc != SQLITE_ROW) {
		tx_rollback(s);
		return hsm_fail(st, "not_found", "no pending approval %s", id);
	}
	if (strcmp(requester, s->term_fp) != 0 &&
	    !(strcmp(s->role, role) == 0 && strcmp(s->partition, part) == 0)) {
		tx_rollback(s);
		return hsm_fail(st, "not_authorized", "only its requester or "
		    "a %s login may cancel approval %s", role, id);
	}
	if (sqlite3_prepare_v2(s->db, "UPDATE challenges SET used = 1 WHERE "
	    "hex(substr(nonce, 1, 8)) = ?1", -1, &q, NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_DONE)
		goto sqlfail;
	sqlite3_finalize(q);
	q = NULL;
	snprintf(desc, sizeof(desc), "id=%s", id);
	if (audit_append(s, part, "approval.cancel", desc, "ok", st) != 0 ||
	    tx_commit(s, st) != 0) {
		tx_rollback(s);
		return -1;
	}
	if ((*res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(*res, "cancelled", id) != 0)
		return hsm_fail(st, "no_memory", "out of memory");
	return 0;
sqlfail:
	hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
	sqlite3_finalize(q);
	tx_rollback(s);
	return -1;
}
