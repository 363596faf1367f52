/* cluster commands: status, promote, admit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

#define MAX_LAG_DEFAULT 100
#define MAX_LAG_MS 5000

static const struct kv_label status_labels[] = {
	{ "cluster", "cluster", KV_PLAIN },
	{ "state", "state", KV_PLAIN },
	{ "master", "master", KV_PLAIN },
	{ "epoch", "epoch", KV_PLAIN },
	{ "last_seq", "last sequence", KV_PLAIN },
	{ "nodes", "nodes", KV_PLAIN },
	{ "reachable", "reachable", KV_PLAIN },
	{ "lagging", "lagging", KV_PLAIN },
	{ "problems", "problems", KV_PLAIN },
	{ NULL, NULL, 0 },
};

static void
append(char *buf, size_t len, const char *fmt, const char *a, const char *b)
{
	size_t k = strlen(buf);

	if (k + 2 >= len)
		return;
	if (k > 0)
		k += (size_t)snprintf(buf + k, len - k, "; ");
	if (k < len)
		snprintf(buf + k, len - k, fmt, a, b);
}

int
cmd_cluster_status(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	struct probe *list = NULL;
	const struct probe *master;
	const char *v = inv_opt(inv, "max-lag");
	char lagging[512] = "", problems[1024] = "", num[32], *end;
	unsigned long long max_lag = MAX_LAG_DEFAULT;
	cbor_item_t *res = NULL, *row = NULL, *rows = NULL;
	size_t n = 0, reachable = 0;
	int r = -1;

	if (v != NULL) {
		max_lag = strtoull(v, &end, 10);
		if (*v == '\0' || *end != '\0' || *v == '-')
			return hsm_fail(st, "bad_value", "--max-lag takes a "
			    "number of changes, not '%s'", v);
	}
	if (probe_cluster(ctx, &list, &n, st) != 0)
		return -1;
	master = probe_master(list, n);
	if ((rows = cbor_new_indefinite_array()) == NULL)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		const cbor_item_t *x;

		if ((row = probe_row(&list[i], master)) == NULL)
			goto oom;
		if (list[i].info == NULL)
			append(problems, sizeof(problems), "%s unreachable%s",
			    list[i].name, "");
		else {
			reachable++;
			x = hsm_map_get(row, "lag_seq");
			if (x != NULL && cbor_isa_uint(x) && (cbor_get_int(x) >
			    max_lag || cbor_get_int(hsm_map_get(row,
			    "lag_ms")) > MAX_LAG_MS)) {
				snprintf(num, sizeof(num), "%llu",
				    (unsigned long long)cbor_get_int(x));
				append(lagging, sizeof(lagging), "%s (%s behind)",
				    list[i].name, num);
			}
		}
		if (!cbor_array_push(rows, row))
			goto oom;
		/* rows holds it; cbor_decref() clears row only when it frees. */
		cbor_decref(&row);
		row = NULL;
	}
	if (master == NULL)
		append(problems, sizeof(problems), "no master answers%s%s", "",
		    "");
	if ((res = cbor_new_indefinite_map()) == NULL)
		goto oom;
	{
		char cl[HSM_NAME_MAX + 1] = "", mname[HSM_NAME_MAX + 1] = "";
		const struct probe *any = master;

		for (size_t i = 0; any == NULL && i < n; i++)
			if (list[i].info != NULL)
				any = &list[i];
		if (any != NULL) {
			const cbor_item_t *c = hsm_map_get(any->info, "cluster");

			if (c != NULL && cbor_isa_string(c) &&
			    cbor_string_length(c) < sizeof(cl)) {
				memcpy(cl, cbor_string_handle(c),
				    cbor_string_length(c));
				cl[cbor_string_length(c)] = '\0';
			}
		}
		if (master != NULL)
			snprintf(mname, sizeof(mname), "%s", master->name);
		if (hsm_map_put_str(res, "cluster", cl) != 0 ||
		    hsm_map_put_str(res, "state", master == NULL ?
		    "no master" : problems[0] || lagging[0] ? "degraded" :
		    "healthy") != 0 ||
		    hsm_map_put_str(res, "master", mname) != 0 ||
		    hsm_map_put_uint(res, "epoch", master != NULL ?
		    cbor_get_int(hsm_map_get(master->info, "epoch")) : 0) != 0 ||
		    hsm_map_put_uint(res, "last_seq", master != NULL ?
		    cbor_get_int(hsm_map_get(master->info, "last_seq")) :
		    0) != 0 ||
		    hsm_map_put_uint(res, "nodes", n) != 0 ||
		    hsm_map_put_uint(res, "reachable", reachable) != 0 ||
		    hsm_map_put_str(res, "lagging", lagging) != 0 ||
		    hsm_map_put_str(res, "problems", problems) != 0)
			goto oom;
	}
	if (ctx->output == OUT_JSON) {
		if (hsm_map_put(res, "node_list", cbor_incref(rows)) != 0)
			goto oom;
	}
	r = out_result(ctx, res, status_labels, st);
	goto out;
oom:
	hsm_fail(st, "no_memory", "out of memory");
out:
	if (row != NULL)
		cbor_decref(&row);
	if (rows != NULL)
		cbor_decref(&rows);
	if (res != NULL)
		cbor_decref(&res);
	probe_free(list, n);
	return r;
}

static const struct kv_label promote_labels[] = {
	{ "node", "promoted", KV_PLAIN },
	{ "epoch", "epoch", KV_PLAIN },
	{ "votes", "votes", KV_PLAIN },
	{ "nodes", "nodes", KV_PLAIN },
	{ "refusals", "not granted", KV_PLAIN },
	{ NULL, NULL, 0 },
};

int
cmd_cluster_promote(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	cbor_item_t *args = NULL;
	char q[256];
	int r;

	if (!hsm_partition_name_ok(inv->args[0]))
		return hsm_fail(st, "bad_value", "invalid node name '%s'",
		    inv->args[0]);
	snprintf(q, sizeof(q), "Make %s the master of the cluster under a new "
	    "epoch?", inv->args[0]);
	if (!ask_yes(ctx, q, st))
		return -1;
	if ((args = cbor_new_definite_map(1)) == NULL ||
	    hsm_map_put_str(args, "node", inv->args[0]) != 0) {
		if (args != NULL)
			cbor_decref(&args);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	r = call_and_show(ctx, "cluster.promote", args, promote_labels, st);
	cbor_decref(&args);
	return r;
}

static const struct kv_label admit_labels[] = {
	{ "node", "admitted", KV_PLAIN },
	{ "role", "role", KV_PLAIN },
	{ "host_key", "host key", KV_PLAIN },
	{ NULL, NULL, 0 },
};

int
cmd_cluster_admit(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	const char *fp = inv_opt(inv, "fingerprint");
	cbor_item_t *args = NULL;
	int r;

	if (!hsm_partition_name_ok(inv->args[0]))
		return hsm_fail(st, "bad_value", "invalid node name '%s'",
		    inv->args[0]);
	if (fp != NULL && strncmp(fp, "SHA256:", 7) != 0)
		return hsm_fail(st, "bad_value", "--fingerprint takes "
		    "SHA256:..., as hsmd init --join printed it");
	if ((args = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(args, "node", inv->args[0]) != 0 ||
	    (fp != NULL && hsm_map_put_str(args, "host_key", fp) != 0)) {
		if (args != NULL)
			cbor_decref(&args);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	r = call_and_show(ctx, "cluster.admit", args, admit_labels, st);
	cbor_decref(&args);
	return r;
}
