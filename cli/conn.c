/* Which node to talk to, and the connection shared by a session's commands. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

static int
try_node(struct ctx *ctx, const char *label, const char *host, int port,
    hsm_status *st)
{
	struct hsm_conn_opts o;

	memset(&o, 0, sizeof(o));
	o.host = host;
	o.port = port;
	o.terminal_key = ctx->cfg->terminal_key;
	o.known_hosts = ctx->cfg->known_hosts;
	o.accept_new_host_key = ctx->accept_new_host_key;
	out_verbose(ctx, "connecting to %s (%s:%d)", label, host, port);
	if (hsm_conn_open(&o, &ctx->conn, st) != 0)
		return -1;
	out_verbose(ctx, "connected to %s, host key %s", label,
	    hsm_conn_fingerprint(ctx->conn));
	snprintf(ctx->node_label, sizeof(ctx->node_label), "%s", label);
	return 0;
}

int
ctx_connect(struct ctx *ctx, hsm_status *st)
{
	const struct hsm_cluster *cl;
	const char *cname;
	char last[HSM_MSG_MAX];
	char host[256];
	int port;

	if (ctx->conn != NULL)
		return 0;
	if (ctx->cfg == NULL &&
	    hsm_config_load(ctx->config_path, &ctx->cfg, st) != 0)
		return -1;
	if (!ctx->ssh_ready) {
		if (hsm_init(st) != 0)
			return -1;
		ctx->ssh_ready = true;
	}
	/* -n HOST:PORT needs no configuration at all. */
	if (ctx->node != NULL && strchr(ctx->node, ':') != NULL) {
		if (hsm_parse_hostport(ctx->node, host, sizeof(host), &port,
		    st) != 0)
			return -1;
		return try_node(ctx, ctx->node, host, port, st);
	}
	cname = ctx->cluster != NULL ? ctx->cluster :
	    ctx->cfg->default_cluster;
	if (cname == NULL && ctx->cfg->nclusters == 1)
		cname = ctx->cfg->clusters[0].name;
	if (cname == NULL)
		return hsm_fail(st, "no_node", "no node to talk to: give "
		    "-n HOST:PORT, or name a cluster with -C or "
		    "default-cluster in %s", ctx->cfg->path != NULL ?
		    ctx->cfg->path : "the configuration (hsmctl.conf(5))");
	if ((cl = hsm_config_cluster(ctx->cfg, cname)) == NULL)
		return hsm_fail(st, "bad_value", "no cluster '%s' in %s",
		    cname, ctx->cfg->path != NULL ? ctx->cfg->path :
		    "the configuration");
	for (size_t i = 0; i < cl->nnodes; i++) {
		const struct hsm_node_addr *n = &cl->nodes[i];

		if (ctx->node != NULL && strcmp(ctx->node, n->name) != 0)
			continue;
		if (try_node(ctx, n->name, n->host, n->port, st) == 0)
			return 0;
		/* Only an unreachable node is skipped; a bad key never is. */
		if (hsm_code_exit(st->code) != HSM_EXIT_CONN)
			return -1;
		out_verbose(ctx, "skipping %s: %s", n->name, st->message);
		if (ctx->node != NULL)
			return -1;
	}
	if (ctx->node != NULL)
		return hsm_fail(st, "bad_value", "no node '%s' in cluster "
		    "'%s'", ctx->node, cl->name);
	if (cl->nnodes == 1)
		return -1;	/* its own message says it all */
	snprintf(last, sizeof(last), "%s", st->message);
	return hsm_fail(st, "connect_failed", "no node of cluster '%s' "
	    "answered (last: %s)", cl->name, last);
}

void
ctx_forget_live(struct ctx *ctx)
{
	for (size_t i = 0; i < sizeof(ctx->live) / sizeof(ctx->live[0]); i++)
		if (ctx->live[i] != NULL)
			cbor_decref(&ctx->live[i]);
}

void
ctx_close(struct ctx *ctx)
{
	hsm_conn_close(&ctx->conn);
	ctx->role[0] = '\0';	/* a login lives in the node's session */
	ctx_forget_live(ctx);
}

/* The --approval files as the node wants them: {token, approvals}. */
static int
load_op_approval(struct ctx *ctx, hsm_status *st)
{
	struct hsm_approval ap;
	cbor_item_t *env = NULL, *list = NULL, *a = NULL;
	int r = -1;

	memset(&ap, 0, sizeof(ap));
	if ((env = cbor_new_indefinite_map()) == NULL ||
	    (list = cbor_new_indefinite_array()) == NULL)
		goto oom;
	for (size_t i = 0; i < ctx->napprovals; i++) {
		if (hsm_approval_read(ctx->approvals[i], &ap, st) != 0)
			goto out;
		if (i == 0 && hsm_map_put(env, "token", cbor_build_bytestring(
		    ap.token, ap.token_len)) != 0)
			goto oom;
		if (i > 0) {
			const cbor_item_t *t = hsm_map_get(env, "token");

			if (cbor_bytestring_length(t) != ap.token_len ||
			    memcmp(cbor_bytestring_handle(t), ap.token,
			    ap.token_len) != 0) {
				hsm_fail(st, "integrity", "%s approves another "
				    "request than %s", ctx->approvals[i],
				    ctx->approvals[0]);
				goto out;
			}
		}
		if ((a = cbor_new_indefinite_map()) == NULL ||
		    hsm_map_put(a, "pubkey", cbor_build_bytestring(ap.pubkey,
		    ap.pubkey_len)) != 0 ||
		    hsm_map_put(a, "sig", cbor_build_bytestring(ap.sig,
		    ap.sig_len)) != 0 || !cbor_array_push(list, a))
			goto oom;
		/* list holds it; cbor_decref() clears a only when it frees. */
		cbor_decref(&a);
		a = NULL;
		hsm_approval_clear(&ap);
	}
	r = hsm_map_put(env, "approvals", list);
	list = NULL;
	if (r != 0)
		goto oom;
	ctx->op_approval = env;
	env = NULL;
	goto out;
oom:
	hsm_fail(st, "no_memory", "out of memory");
out:
	hsm_approval_clear(&ap);
	if (a != NULL)
		cbor_decref(&a);
	if (list != NULL)
		cbor_decref(&list);
	if (env != NULL)
		cbor_decref(&env);
	return r;
}

int
ctx_call(struct ctx *ctx, const char *op, const cbor_item_t *args,
    cbor_item_t **result, hsm_status *st)
{
	cbor_item_t *a = NULL;
	int r;

	*result = NULL;
	if (ctx->capture) {
		snprintf(ctx->captured_op, sizeof(ctx->captured_op), "%s", op);
		ctx->captured_args = args != NULL ?
		    cbor_incref((cbor_item_t *)(uintptr_t)args) :
		    cbor_new_indefinite_map();
		return hsm_fail(st, "captured", "recorded, not sent");
	}
	/* --approval without --as: approvals of this very operation. */
	if (ctx->napprovals > 0 && ctx->as == NULL && ctx->running != NULL &&
	    ctx->running->writes) {
		struct cbor_pair *h;

		if (ctx->op_approval == NULL && load_op_approval(ctx, st) != 0)
			return -1;
		if ((a = cbor_new_indefinite_map()) == NULL)
			return hsm_fail(st, "no_memory", "out of memory");
		h = args != NULL ? cbor_map_handle(args) : NULL;
		for (size_t i = 0; h != NULL && i < cbor_map_size(args); i++)
			if (!cbor_map_add(a, h[i])) {
				cbor_decref(&a);
				return hsm_fail(st, "no_memory", "out of memory");
			}
		if (hsm_map_put(a, "approval", cbor_incref(ctx->op_approval)) !=
		    0) {
			cbor_decref(&a);
			return hsm_fail(st, "no_memory", "out of memory");
		}
		args = a;
	}
	r = ctx_connect(ctx, st) != 0 ? -1 :
	    hsm_call(ctx->conn, op, args, result, st);
	if (a != NULL)
		cbor_decref(&a);
	return r;
}

void
ctx_fini(struct ctx *ctx)
{
	if (ctx->op_approval != NULL)
		cbor_decref(&ctx->op_approval);
	ctx_close(ctx);
	if (ctx->ssh_ready)
		hsm_cleanup();
	ctx->ssh_ready = false;
	hsm_config_free(&ctx->cfg);
}
