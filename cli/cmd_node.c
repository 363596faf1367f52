/* node commands, and the view of the whole cluster they share. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

static const struct kv_label node_labels[] = {
	{ "node", "node", KV_PLAIN },
	{ "cluster", "cluster", KV_PLAIN },
	{ "cluster_id", "cluster id", KV_PLAIN },
	{ "role", "role", KV_PLAIN },
	{ "epoch", "epoch", KV_PLAIN },
	{ "last_seq", "last sequence", KV_PLAIN },
	{ "version", "version", KV_PLAIN },
	{ "uptime", "uptime", KV_DURATION },
	{ "host_key", "host key", KV_PLAIN },
	{ "sandbox", "sandbox", KV_PLAIN },
	{ "listen", "address", KV_PLAIN },
	{ "master", "master", KV_PLAIN },
	{ "voted_epoch", "voted epoch", KV_PLAIN },
	{ "lag_seq", "lag (changes)", KV_PLAIN },
	{ "lag_ms", "lag (ms)", KV_PLAIN },
	{ "replicating", "replicating", KV_PLAIN },
	{ "replication_error", "replication error", KV_PLAIN },
	{ "master_seq", "master sequence", KV_PLAIN },
	{ "digest", "state digest", KV_PLAIN },
	{ "cluster_key", "cluster key", KV_PLAIN },
	{ "backup_schedule", "backup schedule", KV_PLAIN },
	{ "last_backup", "last backup", KV_TIME },
	{ "next_backup", "next backup", KV_TIME },
	{ NULL, NULL, 0 },
};

static const struct kv_label join_cols[] = {
	{ "name", "PENDING JOIN", KV_PLAIN },
	{ "role", "ROLE", KV_PLAIN },
	{ "addr", "ADDRESS", KV_PLAIN },
	{ "host_key", "HOST KEY", KV_PLAIN },
	{ "requested", "REQUESTED", KV_TIME },
	{ NULL, NULL, 0 },
};

/* The scalars of a map (a copy sharing the values): lists get tables. */
static cbor_item_t *
scalars(const cbor_item_t *m)
{
	struct cbor_pair *h = cbor_map_handle(m);
	cbor_item_t *out = cbor_new_definite_map(cbor_map_size(m));

	for (size_t i = 0; out != NULL && i < cbor_map_size(m); i++) {
		if (cbor_isa_array(h[i].value) || cbor_isa_map(h[i].value))
			continue;
		if (!cbor_map_add(out, h[i]))
			cbor_decref(&out);
	}
	return out;
}

int
cmd_node_info(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	cbor_item_t *res = NULL, *args = NULL, *flat = NULL;
	const cbor_item_t *joins;
	int r = -1;

	if (inv_opt(inv, "digest") != NULL &&
	    ((args = cbor_new_definite_map(1)) == NULL ||
	    hsm_map_put_bool(args, "digest", true) != 0)) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (ctx_call(ctx, "node.info", args, &res, st) != 0)
		goto out;
	if (ctx->output == OUT_JSON || !cbor_isa_map(res)) {
		r = out_result(ctx, res, node_labels, st);
		goto out;
	}
	if ((flat = scalars(res)) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = out_result(ctx, flat, node_labels, st);
	joins = hsm_map_get(res, "pending_joins");
	if (r == 0 && joins != NULL && cbor_isa_array(joins) &&
	    cbor_array_size(joins) > 0) {
		printf("\n");
		r = out_table(ctx, joins, join_cols, st);
	}
out:
	if (flat != NULL)
		cbor_decref(&flat);
	if (res != NULL)
		cbor_decref(&res);
	if (args != NULL)
		cbor_decref(&args);
	return r;
}

/* ---- the cluster as its nodes answer ---------------------------------- */

static void
probe_one(struct ctx *ctx, struct probe *p)
{
	struct hsm_conn *c = NULL;
	hsm_status st;
	char host[256];
	int port;

	hsm_status_clear(&st);
	if (hsm_parse_hostport(p->addr, host, sizeof(host), &port, &st) != 0 ||
	    ctx_open(ctx, host, port, &c, &st) != 0 ||
	    hsm_call(c, "node.info", NULL, &p->info, &st) != 0 ||
	    !cbor_isa_map(p->info)) {
		snprintf(p->error, sizeof(p->error), "%s", st.message[0] ?
		    st.message : "no answer");
		if (p->info != NULL)
			cbor_decref(&p->info);
		out_verbose(ctx, "%s (%s): %s", p->name, p->addr, p->error);
	}
	hsm_conn_close(&c);
}

static void
text_of(const cbor_item_t *m, const char *key, char *buf, size_t len)
{
	const cbor_item_t *v = m != NULL ? hsm_map_get(m, key) : NULL;
	size_t n;

	buf[0] = '\0';
	if (v == NULL || !cbor_isa_string(v))
		return;
	n = cbor_string_length(v) < len ? cbor_string_length(v) : len - 1;
	memcpy(buf, cbor_string_handle(v), n);
	buf[n] = '\0';
}

static struct probe *
add_probe(struct probe **list, size_t *n, const char *name, const char *addr)
{
	struct probe *p;

	for (size_t i = 0; i < *n; i++)
		if (strcmp((*list)[i].name, name) == 0)
			return NULL;
	if ((p = realloc(*list, (*n + 1) * sizeof(**list))) == NULL)
		return NULL;
	*list = p;
	p = &(*list)[(*n)++];
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(p->addr, sizeof(p->addr), "%s", addr);
	return p;
}

/* Members a node knows of that the configuration does not list. */
static void
add_members(struct ctx *ctx, struct probe **list, size_t *n)
{
	for (size_t i = 0; i < *n; i++) {
		const cbor_item_t *m = (*list)[i].info != NULL ?
		    hsm_map_get((*list)[i].info, "members") : NULL;

		for (size_t k = 0; m != NULL && cbor_isa_array(m) &&
		    k < cbor_array_size(m); k++) {
			char name[HSM_NAME_MAX + 1], addr[300], role[16];
			struct probe *p;

			text_of(cbor_array_handle(m)[k], "name", name,
			    sizeof(name));
			text_of(cbor_array_handle(m)[k], "addr", addr,
			    sizeof(addr));
			text_of(cbor_array_handle(m)[k], "role", role,
			    sizeof(role));
			if (name[0] == '\0')
				continue;
			/* Listed already: learn the role the others give it. */
			for (size_t j = 0; j < *n; j++)
				if (strcmp((*list)[j].name, name) == 0 &&
				    (*list)[j].member_role[0] == '\0')
					snprintf((*list)[j].member_role,
					    sizeof((*list)[j].member_role), "%s",
					    role);
			if ((p = add_probe(list, n, name, addr)) == NULL)
				continue;
			snprintf(p->member_role, sizeof(p->member_role), "%s",
			    role);
			if (addr[0] != '\0')
				probe_one(ctx, p);
			else
				snprintf(p->error, sizeof(p->error),
				    "address not known");
		}
	}
}

int
probe_cluster(struct ctx *ctx, struct probe **out, size_t *nout,
    hsm_status *st)
{
	const struct hsm_cluster *cl;
	struct probe *list = NULL, *p;
	size_t n = 0, reached = 0;

	*out = NULL;
	*nout = 0;
	if ((cl = ctx_cluster(ctx, st)) == NULL && st->code[0] != '\0')
		return -1;
	if (cl != NULL) {
		for (size_t i = 0; i < cl->nnodes; i++) {
			char addr[300];

			if (strchr(cl->nodes[i].host, ':') != NULL)
				snprintf(addr, sizeof(addr), "[%s]:%d",
				    cl->nodes[i].host, cl->nodes[i].port);
			else
				snprintf(addr, sizeof(addr), "%s:%d",
				    cl->nodes[i].host, cl->nodes[i].port);
			if ((p = add_probe(&list, &n, cl->nodes[i].name,
			    addr)) != NULL)
				probe_one(ctx, p);
		}
	} else if ((p = add_probe(&list, &n, ctx->node, ctx->node)) != NULL) {
		probe_one(ctx, p);
		/* Known by its address only: name it as it names itself. */
		if (p->info != NULL)
			text_of(p->info, "node", p->name, sizeof(p->name));
	}
	add_members(ctx, &list, &n);
	for (size_t i = 0; i < n; i++)
		reached += list[i].info != NULL;
	if (reached == 0) {
		hsm_fail(st, "connect_failed", "no node of the cluster "
		    "answered%s%s", n > 0 ? " (" : "", n > 0 ? list[0].error :
		    "");
		if (n > 0 && strlen(st->message) + 2 < sizeof(st->message))
			strcat(st->message, ")");
		probe_free(list, n);
		return -1;
	}
	*out = list;
	*nout = n;
	return 0;
}

void
probe_free(struct probe *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (list[i].info != NULL)
			cbor_decref(&list[i].info);
	free(list);
}

static uint64_t
u64_of(const cbor_item_t *m, const char *key)
{
	const cbor_item_t *v = m != NULL ? hsm_map_get(m, key) : NULL;

	return v != NULL && cbor_isa_uint(v) ? cbor_get_int(v) : 0;
}

const struct probe *
probe_master(const struct probe *list, size_t n)
{
	const struct probe *best = NULL;

	for (size_t i = 0; i < n; i++) {
		char role[16];

		text_of(list[i].info, "role", role, sizeof(role));
		if (strcmp(role, "master") == 0 && (best == NULL ||
		    u64_of(list[i].info, "epoch") > u64_of(best->info,
		    "epoch")))
			best = &list[i];
	}
	return best;
}

/* One row of node list: what the node says, and its lag behind the master. */
cbor_item_t *
probe_row(const struct probe *p, const struct probe *master)
{
	cbor_item_t *r = cbor_new_indefinite_map();
	char role[16];
	bool ok = r != NULL;

	text_of(p->info, "role", role, sizeof(role));
	if (p->info == NULL)
		snprintf(role, sizeof(role), "%s", p->member_role);
	ok = ok && hsm_map_put_str(r, "name", p->name) == 0 &&
	    hsm_map_put_str(r, "addr", p->addr) == 0 &&
	    hsm_map_put_str(r, "role", role) == 0 &&
	    hsm_map_put_bool(r, "reachable", p->info != NULL) == 0;
	if (ok && p->info != NULL) {
		uint64_t seq = u64_of(p->info, "last_seq");
		uint64_t lag = u64_of(p->info, "lag_seq");

		/* Measured against the master's own count where it answers. */
		if (master != NULL && p != master)
			lag = u64_of(master->info, "last_seq") > seq ?
			    u64_of(master->info, "last_seq") - seq : 0;
		if (p == master)
			lag = 0;
		ok = hsm_map_put_uint(r, "epoch", u64_of(p->info, "epoch")) ==
		    0 && hsm_map_put_uint(r, "last_seq", seq) == 0 &&
		    hsm_map_put_uint(r, "lag_seq", lag) == 0 &&
		    hsm_map_put_uint(r, "lag_ms", p == master ? 0 :
		    u64_of(p->info, "lag_ms")) == 0;
	} else if (ok) {
		ok = hsm_map_put(r, "epoch", cbor_new_null()) == 0 &&
		    hsm_map_put(r, "last_seq", cbor_new_null()) == 0 &&
		    hsm_map_put(r, "lag_seq", cbor_new_null()) == 0 &&
		    hsm_map_put(r, "lag_ms", cbor_new_null()) == 0 &&
		    hsm_map_put_str(r, "error", p->error) == 0;
	}
	if (!ok && r != NULL)
		cbor_decref(&r);
	return r;
}

static const struct kv_label list_cols[] = {
	{ "name", "NODE", KV_PLAIN },
	{ "addr", "ADDRESS", KV_PLAIN },
	{ "role", "ROLE", KV_PLAIN },
	{ "epoch", "EPOCH", KV_PLAIN },
	{ "last_seq", "SEQ", KV_PLAIN },
	{ "lag_seq", "LAG", KV_PLAIN },
	{ "lag_ms", "LAG-MS", KV_PLAIN },
	{ "reachable", "REACHABLE", KV_PLAIN },
	{ NULL, NULL, 0 },
};

int
cmd_node_list(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	struct probe *list = NULL;
	const struct probe *master;
	cbor_item_t *rows = NULL, *row = NULL, *res = NULL;
	size_t n = 0;
	int r = -1;

	(void)inv;
	if (probe_cluster(ctx, &list, &n, st) != 0)
		return -1;
	master = probe_master(list, n);
	if ((rows = cbor_new_indefinite_array()) == NULL)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		if ((row = probe_row(&list[i], master)) == NULL ||
		    !cbor_array_push(rows, row))
			goto oom;
		/* rows holds it; cbor_decref() clears row only when it frees. */
		cbor_decref(&row);
		row = NULL;
	}
	if (ctx->output == OUT_JSON) {
		if ((res = cbor_new_definite_map(1)) == NULL ||
		    hsm_map_put(res, "nodes", cbor_incref(rows)) != 0)
			goto oom;
		r = out_result(ctx, res, NULL, st);
	} else
		r = out_table(ctx, rows, list_cols, st);
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
