#include <stdio.h>
#include <string.h>

#include "log.h"
#include "ops.h"
#include "store.h"

/* Who may call an op.  Login roles arrive with officers; the gate is here. */
enum op_access {
	ACCESS_TERMINAL,	/* any authorised terminal */
};

struct op {
	const char *name;
	enum op_access access;
	bool writes;
	int (*fn)(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
	    hsm_status *);
};

/* Refuse arguments an op does not know: a typo must not pass silently. */
static int
args_allowed(const cbor_item_t *args, const char *const *names,
    hsm_status *st)
{
	struct cbor_pair *h = cbor_map_handle(args);

	for (size_t i = 0; i < cbor_map_size(args); i++) {
		size_t kl = cbor_string_length(h[i].key);
		bool ok = false;

		for (size_t j = 0; names != NULL && names[j] != NULL && !ok;
		    j++)
			ok = strlen(names[j]) == kl &&
			    memcmp(names[j], cbor_string_handle(h[i].key),
			    kl) == 0;
		if (!ok)
			return hsm_fail(st, "bad_request", "unknown argument "
			    "'%.*s'", (int)(kl > 32 ? 32 : kl),
			    (const char *)cbor_string_handle(h[i].key));
	}
	return 0;
}

static int
op_node_info(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	struct node_meta m;
	cbor_item_t *r;
	time_t now = time(NULL);

	if (args_allowed(args, NULL, st) != 0)
		return -1;
	if (store_meta(s->db, &m, st) != 0)
		return -1;
	if ((r = cbor_new_indefinite_map()) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (hsm_map_put_str(r, "node", m.node) != 0 ||
	    hsm_map_put_str(r, "cluster", m.cluster) != 0 ||
	    hsm_map_put_str(r, "cluster_id", m.cluster_id) != 0 ||
	    hsm_map_put_str(r, "role", m.role) != 0 ||
	    hsm_map_put_uint(r, "epoch", m.epoch) != 0 ||
	    hsm_map_put_uint(r, "last_seq", m.last_seq) != 0 ||
	    hsm_map_put_str(r, "version", HSMCTL_VERSION) != 0 ||
	    hsm_map_put_uint(r, "uptime",
	    now > s->node->started ? (uint64_t)(now - s->node->started) : 0) ||
	    hsm_map_put_str(r, "host_key", s->node->hostkey_fp) != 0 ||
	    hsm_map_put_bool(r, "sandbox", m.sandbox) != 0) {
		cbor_decref(&r);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	*res = r;
	return 0;
}

static const struct op ops[] = {
	{ "node.info", ACCESS_TERMINAL, false, op_node_info },
};

static const struct op *
op_find(const char *name)
{
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strcmp(ops[i].name, name) == 0)
			return &ops[i];
	return NULL;
}

/* The one gate every op passes (cf. OpenSSH sftp-server request_permitted). */
static int
op_permitted(const struct sess_ctx *s, const struct op *op, hsm_status *st)
{
	(void)s;
	switch (op->access) {
	case ACCESS_TERMINAL:
		return 0;
	}
	return hsm_fail(st, "not_authorized", "%s is not permitted", op->name);
}

int
ops_handle(struct sess_ctx *s, const unsigned char *payload, size_t len,
    unsigned char **out, size_t *outlen)
{
	struct hsm_request req;
	const struct op *op;
	cbor_item_t *result = NULL;
	hsm_status st;
	int r;

	hsm_status_clear(&st);
	if (hsm_request_decode(payload, len, &req, &st) != 0) {
		log_info("%s: rejected request: %s", s->peer, st.message);
		goto error;
	}
	if ((op = op_find(req.op)) == NULL) {
		hsm_fail(&st, "unknown_op", "unknown op '%s'", req.op);
		log_info("%s: %s", s->peer, st.message);
		goto error;
	}
	if (op_permitted(s, op, &st) != 0 ||
	    op->fn(s, req.args, &result, &st) != 0) {
		log_info("%s: %s: %s: %s", s->peer, req.op, st.code,
		    st.message);
		goto error;
	}
	log_debug("%s: %s ok", s->peer, req.op);
	r = hsm_response_encode_ok(req.id, result, out, outlen, &st);
	if (result != NULL)
		cbor_decref(&result);
	hsm_request_clear(&req);
	if (r == 0)
		return 0;
error:
	r = hsm_response_encode_error(req.id, st.code, st.message, out, outlen,
	    NULL);
	hsm_request_clear(&req);
	return r;
}
