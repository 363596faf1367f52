/*
 * The node's login logic without SSH: challenge binding (node, cluster,
 * single use), signature checks and quorum counting of distinct officers,
 * driven through the op handlers on a real node directory and store.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "auth.h"
#include "nodedir.h"
#include "store.h"

struct fixture {
	char dir[256];
	EVP_PKEY *k[3];		/* genesis g1, g2; k[2] unregistered */
	struct node_ctx node;
	struct sess_ctx s;
};

static EVP_PKEY *
keypair(const char *pubpath)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	FILE *f;

	assert_non_null(k);
	if (pubpath != NULL) {
		assert_non_null(f = fopen(pubpath, "w"));
		assert_int_equal(PEM_write_PUBKEY(f, k), 1);
		fclose(f);
	}
	return k;
}

static int
setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char p1[300], p2[300], node[300];
	const char *names[] = { "g1", "g2" }, *keys[] = { p1, p2 };
	struct init_opts o;
	struct node_meta m;
	hsm_status st;

	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/test_node_auth.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(p1, sizeof(p1), "%s/g1.pub", fx->dir);
	snprintf(p2, sizeof(p2), "%s/g2.pub", fx->dir);
	snprintf(node, sizeof(node), "%s/n", fx->dir);
	fx->k[0] = keypair(p1);
	fx->k[1] = keypair(p2);
	fx->k[2] = keypair(NULL);
	memset(&o, 0, sizeof(o));
	o.dir = node;
	o.cluster = "c1";
	o.name = "alpha";
	o.genesis_names = names;
	o.genesis_keys = keys;
	o.ngenesis = 2;
	o.genesis_quorum = 2;
	assert_int_equal(nodedir_init(&o, &st), 0);
	assert_int_equal(store_open(node, false, &fx->s.db, &st), 0);
	assert_int_equal(store_meta(fx->s.db, &m, &st), 0);
	fx->node.dir = fx->dir;
	snprintf(fx->node.name, sizeof(fx->node.name), "%s", m.node);
	snprintf(fx->node.cluster, sizeof(fx->node.cluster), "%s", m.cluster);
	snprintf(fx->node.cluster_id, sizeof(fx->node.cluster_id), "%s",
	    m.cluster_id);
	fx->s.node = &fx->node;
	snprintf(fx->s.id, sizeof(fx->s.id), "0123456789abcdef");
	snprintf(fx->s.peer, sizeof(fx->s.peer), "test");
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;
	char cmd[400];

	store_close(&fx->s.db);
	for (int i = 0; i < 3; i++)
		EVP_PKEY_free(fx->k[i]);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
	assert_int_equal(system(cmd), 0);
	free(fx);
	return 0;
}

/* A fresh genesis challenge token of this node. */
static cbor_item_t *
challenge(struct fixture *fx)
{
	cbor_item_t *args = cbor_new_indefinite_map(), *res = NULL, *tok;
	hsm_status st;

	assert_int_equal(hsm_map_put_str(args, "role", "genesis"), 0);
	assert_int_equal(op_auth_challenge(&fx->s, args, &res, &st), 0);
	tok = cbor_incref(hsm_map_get(res, "token"));
	cbor_decref(&res);
	cbor_decref(&args);
	return tok;
}

/* {token, approvals: [{pubkey, sig} by each key index]} */
static cbor_item_t *
login_args(struct fixture *fx, cbor_item_t *tok, const int *who, size_t n)
{
	cbor_item_t *a = cbor_new_indefinite_map();
	cbor_item_t *list = cbor_new_indefinite_array();

	for (size_t i = 0; i < n; i++) {
		EVP_PKEY *k = fx->k[who[i]];
		unsigned char *der = NULL, sig[64], *msg;
		size_t len = cbor_bytestring_length(tok), siglen = sizeof(sig);
		size_t ctxlen = sizeof(HSM_SIG_CONTEXT);	/* with its NUL */
		int derlen = i2d_PUBKEY(k, &der);
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		cbor_item_t *e = cbor_new_indefinite_map();

		msg = malloc(ctxlen + len);
		memcpy(msg, HSM_SIG_CONTEXT, ctxlen);
		memcpy(msg + ctxlen, cbor_bytestring_handle(tok), len);
		assert_int_equal(EVP_DigestSignInit(md, NULL, NULL, NULL, k), 1);
		assert_int_equal(EVP_DigestSign(md, sig, &siglen, msg,
		    ctxlen + len), 1);
		assert_int_equal(hsm_map_put(e, "pubkey",
		    cbor_build_bytestring(der, (size_t)derlen)), 0);
		assert_int_equal(hsm_map_put(e, "sig",
		    cbor_build_bytestring(sig, siglen)), 0);
		assert_true(cbor_array_push(list, e));
		cbor_decref(&e);
		EVP_MD_CTX_free(md);
		OPENSSL_free(der);
		free(msg);
	}
	assert_int_equal(hsm_map_put(a, "token", cbor_incref(tok)), 0);
	assert_int_equal(hsm_map_put(a, "approvals", list), 0);
	return a;
}

static int
login(struct fixture *fx, cbor_item_t *tok, const int *who, size_t n,
    hsm_status *st)
{
	cbor_item_t *a = login_args(fx, tok, who, n), *res = NULL;
	int r;

	hsm_status_clear(st);
	r = op_auth_login(&fx->s, a, &res, st);
	if (res != NULL)
		cbor_decref(&res);
	cbor_decref(&a);
	return r;
}

static void
test_quorum_distinct(void **state)
{
	struct fixture *fx = *state;
	const int one[] = { 0 }, twice[] = { 0, 0 }, both[] = { 0, 1 };
	const int stranger[] = { 0, 2 };
	cbor_item_t *tok;
	hsm_status st;

	tok = challenge(fx);
	assert_int_equal(login(fx, tok, one, 1, &st), -1);
	assert_string_equal(st.code, "quorum_not_met");
	assert_string_equal(fx->s.role, "");
	cbor_decref(&tok);

	tok = challenge(fx);
	assert_int_equal(login(fx, tok, twice, 2, &st), -1);
	assert_string_equal(st.code, "login_refused");
	assert_non_null(strstr(st.message, "approved twice"));
	cbor_decref(&tok);

	tok = challenge(fx);
	assert_int_equal(login(fx, tok, stranger, 2, &st), -1);
	assert_non_null(strstr(st.message, "unknown officer key"));
	cbor_decref(&tok);

	tok = challenge(fx);
	assert_int_equal(login(fx, tok, both, 2, &st), 0);
	assert_string_equal(fx->s.role, "genesis");
	assert_string_equal(fx->s.officers, "g1,g2");
	/* Single use: the same approvals again are a replay. */
	assert_int_equal(login(fx, tok, both, 2, &st), -1);
	assert_non_null(strstr(st.message, "already used"));
	cbor_decref(&tok);
}

static void
test_binding(void **state)
{
	struct fixture *fx = *state;
	const int both[] = { 0, 1 };
	cbor_item_t *tok, *forged;
	unsigned char *b;
	size_t len;
	hsm_status st;

	/* One byte changed: not a challenge this node issued. */
	tok = challenge(fx);
	len = cbor_bytestring_length(tok);
	b = malloc(len);
	memcpy(b, cbor_bytestring_handle(tok), len);
	b[len - 1] ^= 1;
	forged = cbor_build_bytestring(b, len);
	assert_int_equal(login(fx, forged, both, 2, &st), -1);
	assert_string_equal(st.code, "login_refused");
	cbor_decref(&forged);
	free(b);
	/* The same challenge presented to a node of another name. */
	snprintf(fx->node.name, sizeof(fx->node.name), "beta");
	assert_int_equal(login(fx, tok, both, 2, &st), -1);
	assert_non_null(strstr(st.message, "issued by node alpha"));
	snprintf(fx->node.name, sizeof(fx->node.name), "alpha");
	/* ... or of another cluster. */
	fx->node.cluster_id[0] ^= 1;
	tok = (cbor_decref(&tok), challenge(fx));
	fx->node.cluster_id[0] ^= 1;
	assert_int_equal(login(fx, tok, both, 2, &st), -1);
	assert_non_null(strstr(st.message, "another cluster"));
	cbor_decref(&tok);
	/* Every refusal above was audited. */
	assert_true(store_meta_int(fx->s.db, "audit_count", 0) >= 3);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_quorum_distinct, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_binding, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
