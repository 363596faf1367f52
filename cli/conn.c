/* Which node to talk to, and the connection shared by a session's commands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"

/* A node that does not answer within this is skipped for the next. */
#define CONNECT_TIMEOUT_MS 3000

int
ctx_open(struct ctx *ctx, const char *host, int port, struct hsm_conn **conn,
    hsm_status *st)
{
	struct hsm_conn_opts o;

	memset(&o, 0, sizeof(o));
	o.host = host;
	o.port = port;
	o.terminal_key = ctx->cfg->terminal_key;
	o.known_hosts = ctx->cfg->known_hosts;
	o.accept_new_host_key = ctx->accept_new_host_key;
	o.timeout_ms = CONNECT_TIMEOUT_MS;
	return hsm_conn_open(&o, conn, st);
}

static int
try_node(struct ctx *ctx, const char *label, const char *host, int port,
    hsm_status *st)
{
	out_verbose(ctx, "connecting to %s (%s:%d)", label, host, port);
	if (ctx_open(ctx, host, port, &ctx->conn, st) != 0)
		return -1;
	out_verbose(ctx, "connected to %s, host key %s", label,
	    hsm_conn_fingerprint(ctx->conn));
	snprintf(ctx->node_label, sizeof(ctx->node_label), "%s", label);
	return 0;
}

static int
load(struct ctx *ctx, hsm_status *st)
{
	if (ctx->cfg == NULL &&
	    hsm_config_load(ctx->config_path, &ctx->cfg, st) != 0)
		return -1;
	if (!ctx->ssh_ready) {
		if (hsm_init(st) != 0)
			return -1;
		ctx->ssh_ready = true;
	}
	return 0;
}

const struct hsm_cluster *
ctx_cluster(struct ctx *ctx, hsm_status *st)
{
	const struct hsm_cluster *cl;
	const char *cname;

	if (load(ctx, st) != 0)
		return NULL;
	if (ctx->node != NULL && strchr(ctx->node, ':') != NULL) {
		hsm_status_clear(st);
		return NULL;
	}
	cname = ctx->cluster != NULL ? ctx->cluster :
	    ctx->cfg->default_cluster;
	if (cname == NULL && ctx->cfg->nclusters == 1)
		cname = ctx->cfg->clusters[0].name;
	if (cname == NULL) {
		hsm_fail(st, "no_node", "no node to talk to: give "
		    "-n HOST:PORT, or name a cluster with -C or "
		    "default-cluster in %s", ctx->cfg->path != NULL ?
		    ctx->cfg->path : "the configuration (hsmctl.conf(5))");
		return NULL;
	}
	if ((cl = hsm_config_cluster(ctx->cfg, cname)) == NULL)
		hsm_fail(st, "bad_value", "no cluster '%s' in %s", cname,
		    ctx->cfg->path != NULL ? ctx->cfg->path :
		    "the configuration");
	return cl;
}

enum want { WANT_ANY, WANT_READ, WANT_MASTER };

static enum want
want_of(const struct ctx *ctx)
{
	const struct cmd *c = ctx->running;

	if (c != NULL && c->route == ROUTE_ANYNODE)
		return WANT_ANY;
	if (c != NULL && c->route == ROUTE_MASTER)
		return WANT_MASTER;
	/* A session keeps its login: on the master, where changes go. */
	if (!ctx->single || c == NULL)
		return WANT_MASTER;
	return c->writes ? WANT_MASTER : WANT_READ;
}

/* A text field of a result map, or "". */
static void
field(const cbor_item_t *m, const char *key, char *buf, size_t len)
{
	const cbor_item_t *v = m != NULL ? hsm_map_get(m, key) : NULL;
	size_t n;

	buf[0] = '\0';
	if (v == NULL || !cbor_isa_string(v))
		return;
	n = cbor_string_length(v);
	if (n >= len)
		n = len - 1;
	memcpy(buf, cbor_string_handle(v), n);
	buf[n] = '\0';
}

/*
 * Walk the cluster's nodes (from a random one, for reads) and keep the
 * first that suits: any node, a clone or master for reads, the master
 * for changes.  Unreachable nodes are skipped (-v tells); a host key
 * problem is never skipped.  With the master down, a shell or batch
 * keeps a clone for its reads; a single change fails with exit 5.
 */
static int
route(struct ctx *ctx, const struct hsm_cluster *cl, hsm_status *st)
{
	enum want want = want_of(ctx);
	size_t start = 0, answered = 0;
	struct hsm_conn *fallback = NULL;
	char fb_label[sizeof(ctx->node_label)] = "", master[HSM_NAME_MAX + 1];
	char last[HSM_MSG_MAX] = "", role[16];
	bool *tried;

	master[0] = '\0';
	if ((tried = calloc(cl->nnodes, sizeof(*tried))) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (want == WANT_READ && cl->nnodes > 1) {
		srand((unsigned)time(NULL) ^ (unsigned)getpid());
		start = (size_t)rand() % cl->nnodes;
	}
	for (size_t k = 0; k < cl->nnodes; k++) {
		size_t i = (start + k) % cl->nnodes;
		const struct hsm_node_addr *n;
		cbor_item_t *info = NULL;

		/* The master a clone named goes next. */
		for (size_t j = 0; master[0] != '\0' && j < cl->nnodes; j++)
			if (!tried[j] && strcmp(cl->nodes[j].name, master) == 0)
				i = j;
		if (tried[i]) {
			for (i = 0; i < cl->nnodes && tried[i]; i++)
				;
			if (i == cl->nnodes)
				break;
		}
		tried[i] = true;
		n = &cl->nodes[i];
		if (try_node(ctx, n->name, n->host, n->port, st) != 0) {
			if (hsm_code_exit(st->code) != HSM_EXIT_CONN)
				goto fail;
			out_verbose(ctx, "skipping %s: %s", n->name, st->message);
			snprintf(last, sizeof(last), "%s", st->message);
			continue;
		}
		answered++;
		if (want == WANT_ANY || cl->nnodes == 1)
			goto done;
		if (hsm_call(ctx->conn, "node.info", NULL, &info, st) != 0) {
			out_verbose(ctx, "skipping %s: %s", n->name, st->message);
			snprintf(last, sizeof(last), "%s", st->message);
			hsm_conn_close(&ctx->conn);
			continue;
		}
		field(info, "role", role, sizeof(role));
		if (strcmp(role, "master") != 0 && master[0] == '\0')
			field(info, "master", master, sizeof(master));
		cbor_decref(&info);
		if (strcmp(role, "master") == 0 || (want == WANT_READ &&
		    strcmp(role, "clone") == 0))
			goto done;
		out_verbose(ctx, "skipping %s: it is %s", n->name,
		    strcmp(role, "bc") == 0 ? "a bc node" : strcmp(role,
		    "clone") == 0 ? "a clone" : role[0] ? role :
		    "of unknown role");
		if (strcmp(role, "clone") == 0 && fallback == NULL) {
			fallback = ctx->conn;
			ctx->conn = NULL;
			snprintf(fb_label, sizeof(fb_label), "%s", n->name);
		} else
			hsm_conn_close(&ctx->conn);
	}
	if (fallback != NULL && !ctx->single) {
		out_verbose(ctx, "no master answers: staying on clone %s for "
		    "reads", fb_label);
		ctx->conn = fallback;
		fallback = NULL;
		snprintf(ctx->node_label, sizeof(ctx->node_label), "%s",
		    fb_label);
		goto done;
	}
	if (answered > 0 && master[0] != '\0')
		hsm_fail(st, "master_unavailable", "master unavailable: %s, "
		    "the master of cluster '%s', does not answer; reads and "
		    "key use go on at the clones", master, cl->name);
	else if (answered > 0)
		hsm_fail(st, "master_unavailable", "master unavailable: no "
		    "node of cluster '%s' that answers is its master",
		    cl->name);
	else if (cl->nnodes == 1)
		;	/* its own message says it all */
	else
		hsm_fail(st, "connect_failed", "no node of cluster '%s' "
		    "answered (last: %s)", cl->name, last);
fail:
	hsm_conn_close(&fallback);
	free(tried);
	return -1;
done:
	hsm_conn_close(&fallback);
	free(tried);
	return 0;
}

int
ctx_connect(struct ctx *ctx, hsm_status *st)
{
	const struct hsm_cluster *cl;
	const char *pin;
	char host[256];
	int port;

	if (ctx->conn != NULL)
		return 0;
	if (load(ctx, st) != 0)
		return -1;
	pin = ctx->node;
	if (ctx->running != NULL && ctx->running->route == ROUTE_ARG0 &&
	    ctx->route_node != NULL)
		pin = ctx->route_node;
	/* -n HOST:PORT needs no configuration at all. */
	if (pin != NULL && strchr(pin, ':') != NULL) {
		if (hsm_parse_hostport(pin, host, sizeof(host), &port,
		    st) != 0)
			return -1;
		return try_node(ctx, pin, host, port, st);
	}
	if ((cl = ctx_cluster(ctx, st)) == NULL)
		return -1;
	if (pin == NULL)
		return route(ctx, cl, st);
	for (size_t i = 0; i < cl->nnodes; i++) {
		const struct hsm_node_addr *n = &cl->nodes[i];

		if (strcmp(pin, n->name) == 0)
			return try_node(ctx, n->name, n->host, n->port, st);
	}
	return hsm_fail(st, "bad_value", "no node '%s' in cluster '%s'", pin,
	    cl->name);
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

/*
 * The answer a batch op already brought for this line (batch.c): what
 * the node said to exactly this op, once.
 */
static int
ctx_replay(struct ctx *ctx, const char *op, cbor_item_t **result,
    hsm_status *st)
{
	const cbor_item_t *e = ctx->replay, *ok, *v, *code, *msg;

	ctx->replay = NULL;
	if (strcmp(op, ctx->replay_op) != 0)
		return hsm_fail(st, "internal", "batch: the answer to %s is not "
		    "one to %s", ctx->replay_op, op);
	if ((ok = hsm_map_get(e, "ok")) == NULL || !hsm_cbor_is_bool(ok))
		return hsm_fail(st, "protocol", "the node's batch answer has "
		    "no 'ok'");
	if (cbor_get_bool(ok)) {
		if ((v = hsm_map_get(e, "result")) == NULL)
			return hsm_fail(st, "protocol", "the node's batch answer "
			    "has no result");
		*result = cbor_incref((cbor_item_t *)(uintptr_t)v);
		return 0;
	}
	if ((v = hsm_map_get(e, "error")) == NULL || !cbor_isa_map(v) ||
	    (code = hsm_map_get(v, "code")) == NULL || !cbor_isa_string(code) ||
	    (msg = hsm_map_get(v, "message")) == NULL || !cbor_isa_string(msg) ||
	    cbor_string_length(code) >= HSM_CODE_MAX)
		return hsm_fail(st, "protocol", "the node's batch answer has a "
		    "malformed error");
	hsm_fail(st, "internal", "%.*s", (int)(cbor_string_length(msg) <
	    HSM_MSG_MAX ? cbor_string_length(msg) : HSM_MSG_MAX - 1),
	    (const char *)cbor_string_handle(msg));
	memcpy(st->code, cbor_string_handle(code), cbor_string_length(code));
	st->code[cbor_string_length(code)] = '\0';
	return -1;
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
	if (ctx->replay != NULL)
		return ctx_replay(ctx, op, result, st);
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
