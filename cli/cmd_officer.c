#define _XOPEN_SOURCE 700
/* officer, quorum and audit commands: thin over the node's ops. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"

int
call_and_show(struct ctx *ctx, const char *op, cbor_item_t *args,
    const struct kv_label *labels, hsm_status *st)
{
	cbor_item_t *res = NULL;
	int r;

	if (ctx_call(ctx, op, args, &res, st) != 0)
		return -1;
	r = out_result(ctx, res, labels, st);
	cbor_decref(&res);
	return r;
}

int
call_and_table(struct ctx *ctx, const char *op, cbor_item_t *args,
    const char *key, const struct kv_label *cols, hsm_status *st)
{
	cbor_item_t *res = NULL;
	const cbor_item_t *rows;
	int r;

	if (ctx_call(ctx, op, args, &res, st) != 0)
		return -1;
	if ((rows = hsm_map_get(res, key)) == NULL)
		r = hsm_fail(st, "protocol", "the node sent no %s", key);
	else
		r = out_table(ctx, ctx->output == OUT_JSON ? res : rows, cols,
		    st);
	cbor_decref(&res);
	return r;
}

/* Arguments map from "ROLE NAME" words plus --partition. */
static cbor_item_t *
role_args(const struct inv *inv, hsm_status *st)
{
	const char *part = inv_opt(inv, "partition");
	cbor_item_t *a = cbor_new_indefinite_map();

	if (a == NULL || hsm_map_put_str(a, "role", inv->args[0]) != 0 ||
	    (part != NULL && hsm_map_put_str(a, "partition", part) != 0)) {
		if (a != NULL)
			cbor_decref(&a);
		hsm_fail(st, "no_memory", "out of memory");
		return NULL;
	}
	return a;
}

static int
check_role(const char *role, hsm_status *st)
{
	if (strcmp(role, "genesis") != 0 && strcmp(role, "so") != 0 &&
	    strcmp(role, "pso") != 0)
		return hsm_fail(st, "bad_value", "role must be genesis, so or "
		    "pso, not '%s'", role);
	return 0;
}

/* As the node checks it; checked here so nothing is sent on a typo. */
static int
check_name(const char *s, hsm_status *st)
{
	size_t n = strlen(s);
	bool ok = n > 0 && n <= HSM_NAME_MAX;

	for (size_t i = 0; ok && i < n; i++)
		ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' &&
		    s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		    (i > 0 && (s[i] == '-' || s[i] == '_' || s[i] == '.'));
	return ok ? 0 : hsm_fail(st, "bad_value", "invalid officer name "
	    "'%s' (letters, digits, '.', '_', '-'; up to %d)", s,
	    HSM_NAME_MAX);
}

int
cmd_officer_list(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label cols[] = {
		{ "role", "ROLE", KV_PLAIN },
		{ "partition", "PARTITION", KV_PLAIN },
		{ "name", "NAME", KV_PLAIN },
		{ "fingerprint", "KEY", KV_PLAIN },
		{ "created", "ADDED", KV_TIME },
		{ NULL, NULL, 0 },
	};

	(void)inv;
	return call_and_table(ctx, "officer.list", NULL, "officers", cols, st);
}

int
cmd_officer_add(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "name", "added", KV_PLAIN },
		{ "fingerprint", "key", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	unsigned char *der = NULL;
	size_t len;
	cbor_item_t *a;
	int r;

	if (check_role(inv->args[0], st) != 0 ||
	    check_name(inv->args[1], st) != 0 ||
	    hsm_pubkey_read(inv->args[2], &der, &len, st) != 0)
		return -1;
	if ((a = role_args(inv, st)) == NULL) {
		free(der);
		return -1;
	}
	r = hsm_map_put_str(a, "name", inv->args[1]) != 0 ||
	    hsm_map_put(a, "pubkey", cbor_build_bytestring(der, len)) != 0 ?
	    hsm_fail(st, "no_memory", "out of memory") :
	    call_and_show(ctx, "officer.add", a, labels, st);
	free(der);
	cbor_decref(&a);
	return r;
}

int
cmd_officer_remove(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "removed", "removed", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	cbor_item_t *a;
	int r;

	if (check_role(inv->args[0], st) != 0 ||
	    (a = role_args(inv, st)) == NULL)
		return -1;
	r = hsm_map_put_str(a, "name", inv->args[1]) != 0 ?
	    hsm_fail(st, "no_memory", "out of memory") :
	    call_and_show(ctx, "officer.remove", a, labels, st);
	cbor_decref(&a);
	return r;
}

int
cmd_quorum_show(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label cols[] = {
		{ "role", "ROLE", KV_PLAIN },
		{ "partition", "PARTITION", KV_PLAIN },
		{ "m", "M", KV_PLAIN },
		{ "n", "OF N", KV_PLAIN },
		{ NULL, NULL, 0 },
	};

	(void)inv;
	return call_and_table(ctx, "quorum.show", NULL, "quorums", cols, st);
}

int
cmd_quorum_set(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "role", "role", KV_PLAIN },
		{ "partition", "partition", KV_PLAIN },
		{ "m", "quorum", KV_PLAIN },
		{ "n", "officers", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	cbor_item_t *a;
	char *end;
	unsigned long m = strtoul(inv->args[1], &end, 10);
	int r;

	if (check_role(inv->args[0], st) != 0)
		return -1;
	if (inv->args[1][0] < '1' || inv->args[1][0] > '9' || *end != '\0' ||
	    m > 1000)
		return hsm_fail(st, "bad_value", "quorum M must be a number "
		    "from 1, not '%s'", inv->args[1]);
	if ((a = role_args(inv, st)) == NULL)
		return -1;
	r = hsm_map_put_uint(a, "m", m) != 0 ?
	    hsm_fail(st, "no_memory", "out of memory") :
	    call_and_show(ctx, "quorum.set", a, labels, st);
	cbor_decref(&a);
	return r;
}

/* --since: seconds since the epoch, or YYYY-MM-DD[THH:MM:SS] in UTC. */
static int
parse_time(const char *s, uint64_t *out, hsm_status *st)
{
	struct tm tm;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	if (*s >= '0' && *s <= '9' && *end == '\0') {
		*out = v;
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%d", &tm);
	if (end != NULL && *end == 'T')
		end = strptime(end + 1, "%H:%M:%S", &tm);
	if (end == NULL || (*end != '\0' && strcmp(end, "Z") != 0))
		return hsm_fail(st, "bad_value", "--since takes seconds since "
		    "the epoch or YYYY-MM-DD[THH:MM:SS], not '%s'", s);
	*out = (uint64_t)timegm(&tm);
	return 0;
}

int
cmd_audit_log(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label cols[] = {
		{ "seq", "SEQ", KV_PLAIN },
		{ "time", "TIME", KV_TIME },
		{ "role", "ROLE", KV_PLAIN },
		{ "officers", "OFFICERS", KV_PLAIN },
		{ "op", "OP", KV_PLAIN },
		{ "args", "ARGS", KV_PLAIN },
		{ "result", "RESULT", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	const char *part = inv_opt(inv, "partition"), *since = inv_opt(inv,
	    "since"), *limit = inv_opt(inv, "limit");
	cbor_item_t *a = cbor_new_indefinite_map();
	uint64_t t = 0;
	unsigned long n = 0;
	char *end;
	int r;

	if (a == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (limit != NULL) {
		n = strtoul(limit, &end, 10);
		if (*limit < '1' || *limit > '9' || *end != '\0' ||
		    n > 10000) {
			cbor_decref(&a);
			return hsm_fail(st, "bad_value", "--limit takes 1..10000, "
			    "not '%s'", limit);
		}
	}
	if ((since != NULL && parse_time(since, &t, st) != 0)) {
		cbor_decref(&a);
		return -1;
	}
	if ((part != NULL && hsm_map_put_str(a, "partition", part) != 0) ||
	    (since != NULL && hsm_map_put_uint(a, "since", t) != 0) ||
	    (limit != NULL && hsm_map_put_uint(a, "limit", n) != 0))
		r = hsm_fail(st, "no_memory", "out of memory");
	else
		r = call_and_table(ctx, "audit.log", a, "entries", cols, st);
	cbor_decref(&a);
	return r;
}

int
cmd_audit_verify(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "entries", "entries", KV_PLAIN },
		{ "head", "head", KV_PLAIN },
		{ "ok", "verified", KV_PLAIN },
		{ NULL, NULL, 0 },
	};

	(void)inv;
	return call_and_show(ctx, "audit.verify", NULL, labels, st);
}

int
cmd_approval_list(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label cols[] = {
		{ "id", "ID", KV_PLAIN },
		{ "for", "FOR", KV_PLAIN },
		{ "role", "ROLE", KV_PLAIN },
		{ "partition", "PARTITION", KV_PLAIN },
		{ "expires", "EXPIRES", KV_TIME },
		{ "requester", "REQUESTER", KV_PLAIN },
		{ NULL, NULL, 0 },
	};

	(void)inv;
	return call_and_table(ctx, "approval.list", NULL, "approvals", cols,
	    st);
}

int
cmd_approval_cancel(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "cancelled", "cancelled", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	cbor_item_t *a = cbor_new_indefinite_map();
	int r;

	if (a == NULL || hsm_map_put_str(a, "id", inv->args[0]) != 0) {
		if (a != NULL)
			cbor_decref(&a);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	r = call_and_show(ctx, "approval.cancel", a, labels, st);
	cbor_decref(&a);
	return r;
}
