/* node commands. */
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
	{ NULL, NULL, 0 },
};

int
cmd_node_info(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	cbor_item_t *res = NULL;
	int r;

	(void)inv;
	if (ctx_connect(ctx, st) != 0 ||
	    hsm_call(ctx->conn, "node.info", NULL, &res, st) != 0)
		return -1;
	r = out_result(ctx, res, node_labels, st);
	cbor_decref(&res);
	return r;
}
