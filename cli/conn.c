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
ctx_close(struct ctx *ctx)
{
	hsm_conn_close(&ctx->conn);
}

void
ctx_fini(struct ctx *ctx)
{
	ctx_close(ctx);
	if (ctx->ssh_ready)
		hsm_cleanup();
	ctx->ssh_ready = false;
	hsm_config_free(&ctx->cfg);
}
