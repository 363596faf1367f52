/*
 * Officer keys, login (local signatures and remote approvals), whoami,
 * logout.  Private keys and passphrases stay in this process, wiped
 * after use; only signatures travel.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cmd.h"
#include "tokenize.h"

/* What a challenge token says, for checks and for showing it. */
struct token_info {
	char purpose[16], node[HSM_NAME_MAX + 1], cluster[HSM_NAME_MAX + 1];
	char role[16], partition[HSM_NAME_MAX + 1], op[HSM_OP_MAX + 1];
	char args[1024];	/* the op's arguments, as JSON */
	uint64_t expires;
};

static void
text_field(const cbor_item_t *m, const char *key, char *buf, size_t len)
{
	const cbor_item_t *v = hsm_map_get(m, key);

	buf[0] = '\0';
	if (v != NULL && cbor_isa_string(v))
		snprintf(buf, len, "%.*s", (int)cbor_string_length(v),
		    (const char *)cbor_string_handle(v));
}

static int
token_parse(const unsigned char *tok, size_t len, struct token_info *ti,
    hsm_status *st)
{
	cbor_item_t *m = NULL;
	const cbor_item_t *e;

	memset(ti, 0, sizeof(*ti));
	if (hsm_cbor_decode(tok, len, &m, st) != 0 || !cbor_isa_map(m)) {
		if (m != NULL)
			cbor_decref(&m);
		return hsm_fail(st, "integrity", "the challenge token is "
		    "malformed");
	}
	text_field(m, "purpose", ti->purpose, sizeof(ti->purpose));
	text_field(m, "node", ti->node, sizeof(ti->node));
	text_field(m, "cluster", ti->cluster, sizeof(ti->cluster));
	text_field(m, "role", ti->role, sizeof(ti->role));
	text_field(m, "partition", ti->partition, sizeof(ti->partition));
	text_field(m, "op", ti->op, sizeof(ti->op));
	if ((e = hsm_map_get(m, "expires")) != NULL && cbor_isa_uint(e))
		ti->expires = cbor_get_int(e);
	if ((e = hsm_map_get(m, "args")) != NULL) {
		json_t *j = out_cbor_to_json(e);
		char *js = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) :
		    NULL;

		snprintf(ti->args, sizeof(ti->args), "%s", js ? js : "?");
		free(js);
		json_decref(j);
	}
	cbor_decref(&m);
	if (ti->role[0] == '\0' || ti->node[0] == '\0' || ti->expires == 0)
		return hsm_fail(st, "integrity", "the challenge token lacks "
		    "its role, node or expiry");
	return 0;
}

/*
 * "genesis", "so", "pso P": the role words of login and approval request;
 * "user P" too when user is true (login only).
 */
static int
role_words(const struct inv *inv, size_t first, bool user, const char **role,
    const char **part, hsm_status *st)
{
	bool needs;

	*role = inv->args[first];
	*part = inv->nargs > first + 1 ? inv->args[first + 1] : "";
	if (strcmp(*role, "genesis") != 0 && strcmp(*role, "so") != 0 &&
	    strcmp(*role, "pso") != 0 && (!user || strcmp(*role, "user") != 0))
		return hsm_fail(st, "bad_value", "role must be genesis, so%s "
		    "pso%s, not '%s'", user ? "," : " or", user ? " or user" :
		    "", *role);
	needs = strcmp(*role, "pso") == 0 || strcmp(*role, "user") == 0;
	if (needs != ((*part)[0] != '\0'))
		return hsm_fail(st, "usage", !needs ? (user ? "only the pso "
		    "and user roles take a partition" : "only the pso role "
		    "takes a partition") : strcmp(*role, "pso") == 0 ?
		    "pso needs a partition: login pso PARTITION" :
		    "user needs a partition: login user PARTITION "
		    "--secret-file FILE");
	return 0;
}

/* Sign token with one officer key file, asking for its passphrase. */
static int
sign_with(struct ctx *ctx, const char *file, const unsigned char *tok,
    size_t toklen, cbor_item_t *list, hsm_status *st)
{
	char pass[HSM_PASS_MAX + 2], prompt[512];
	struct hsm_officer_key *key = NULL;
	unsigned char *der = NULL, *sig = NULL;
	size_t derlen, siglen;
	cbor_item_t *a = NULL;
	int r = -1;

	snprintf(prompt, sizeof(prompt), "Passphrase for officer key %s: ",
	    file);
	if (pass_read(ctx, prompt, false, pass, sizeof(pass), st) != 0)
		goto out;
	r = hsm_officer_load(file, pass, strlen(pass), &key, st);
	OPENSSL_cleanse(pass, sizeof(pass));
	if (r != 0)
		goto out;
	r = -1;
	if (hsm_officer_pubkey(key, &der, &derlen, st) != 0 ||
	    hsm_officer_sign(key, tok, toklen, &sig, &siglen, st) != 0)
		goto out;
	if ((a = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put(a, "pubkey", cbor_build_bytestring(der, derlen)) != 0 ||
	    hsm_map_put(a, "sig", cbor_build_bytestring(sig, siglen)) != 0 ||
	    !cbor_array_push(list, a)) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = 0;
out:
	hsm_officer_free(&key);
	free(der);
	free(sig);
	if (a != NULL)
		cbor_decref(&a);
	return r;
}

static int
add_approval(const struct hsm_approval *ap, cbor_item_t *list, hsm_status *st)
{
	cbor_item_t *a = cbor_new_indefinite_map();
	bool ok = a != NULL &&
	    hsm_map_put(a, "pubkey", cbor_build_bytestring(ap->pubkey,
	    ap->pubkey_len)) == 0 &&
	    hsm_map_put(a, "sig", cbor_build_bytestring(ap->sig,
	    ap->sig_len)) == 0 && cbor_array_push(list, a);

	if (a != NULL)
		cbor_decref(&a);
	return ok ? 0 : hsm_fail(st, "no_memory", "out of memory");
}

/*
 * The whole login: approvals first (they fix the token), else a fresh
 * challenge; then each officer signs in turn; the node decides.
 */
static int
do_login(struct ctx *ctx, const char *role, const char *part,
    const char **officers, size_t nofficers, const char **approvals,
    size_t napprovals, cbor_item_t **result, hsm_status *st)
{
	struct hsm_approval ap[INV_MAX];
	unsigned char *tok = NULL;
	size_t toklen = 0;
	cbor_item_t *args = NULL, *list = NULL, *res = NULL;
	struct token_info ti;
	int r = -1;

	memset(ap, 0, sizeof(ap));
	*result = NULL;
	if (nofficers + napprovals == 0)
		return hsm_fail(st, "usage", "login needs --officer FILE or "
		    "--approval FILE (one for each officer of the quorum)");
	for (size_t i = 0; i < napprovals; i++) {
		if (hsm_approval_read(approvals[i], &ap[i], st) != 0)
			goto out;
		if (i > 0 && (ap[i].token_len != ap[0].token_len ||
		    memcmp(ap[i].token, ap[0].token, ap[0].token_len) != 0)) {
			hsm_fail(st, "integrity", "%s approves another "
			    "challenge than %s", approvals[i], approvals[0]);
			goto out;
		}
	}
	if (napprovals > 0) {
		if (token_parse(ap[0].token, ap[0].token_len, &ti, st) != 0)
			goto out;
		if (strcmp(ti.role, role) != 0 ||
		    strcmp(ti.partition, part) != 0) {
			hsm_fail(st, "usage", "the approvals are for a %s%s%s "
			    "login, not %s%s%s", ti.role, ti.partition[0] ?
			    " " : "", ti.partition, role, part[0] ? " " : "",
			    part);
			goto out;
		}
		if ((tok = malloc(ap[0].token_len)) == NULL) {
			hsm_fail(st, "no_memory", "out of memory");
			goto out;
		}
		memcpy(tok, ap[0].token, ap[0].token_len);
		toklen = ap[0].token_len;
	}
	if (ctx_connect(ctx, st) != 0)
		goto out;
	if (tok == NULL) {
		const cbor_item_t *t;

		if ((args = cbor_new_indefinite_map()) == NULL ||
		    hsm_map_put_str(args, "role", role) != 0 ||
		    (part[0] && hsm_map_put_str(args, "partition", part) != 0)) {
			hsm_fail(st, "no_memory", "out of memory");
			goto out;
		}
		if (hsm_call(ctx->conn, "auth.challenge", args, &res, st) != 0)
			goto out;
		if ((t = hsm_map_get(res, "token")) == NULL ||
		    !cbor_isa_bytestring(t) ||
		    cbor_bytestring_length(t) > HSM_TOKEN_MAX) {
			hsm_fail(st, "protocol", "the node sent no challenge");
			goto out;
		}
		toklen = cbor_bytestring_length(t);
		if ((tok = malloc(toklen)) == NULL) {
			hsm_fail(st, "no_memory", "out of memory");
			goto out;
		}
		memcpy(tok, cbor_bytestring_handle(t), toklen);
		cbor_decref(&args);
		cbor_decref(&res);
	}
	if ((list = cbor_new_indefinite_array()) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	for (size_t i = 0; i < napprovals; i++)
		if (add_approval(&ap[i], list, st) != 0)
			goto out;
	for (size_t i = 0; i < nofficers; i++)
		if (sign_with(ctx, officers[i], tok, toklen, list, st) != 0)
			goto out;
	if ((args = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put(args, "token", cbor_build_bytestring(tok,
	    toklen)) != 0 || hsm_map_put(args, "approvals", list) != 0) {
		list = NULL;
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	list = NULL;
	if (hsm_call(ctx->conn, "auth.login", args, result, st) != 0)
		goto out;
	snprintf(ctx->role, sizeof(ctx->role), "%s%s%s", role,
	    part[0] ? ":" : "", part);
	r = 0;
out:
	for (size_t i = 0; i < napprovals; i++)
		hsm_approval_clear(&ap[i]);
	free(tok);
	if (args != NULL)
		cbor_decref(&args);
	if (res != NULL)
		cbor_decref(&res);
	if (list != NULL)
		cbor_decref(&list);
	return r;
}

/*
 * The technical user (DESIGN §4): a partition's API secret, read from a
 * file (never argv, the environment or a batch line), one line of at
 * most SECRET_MAX bytes.  Every copy this process makes is wiped after
 * the call.
 */
#define SECRET_MAX 4096

static int
read_secret(const char *path, char *buf, size_t cap, size_t *len,
    hsm_status *st)
{
	size_t n = 0;
	int fd;

	*len = 0;
	if (path == NULL || *path == '\0')
		return hsm_fail(st, "usage", "login user needs --secret-file "
		    "FILE (the partition's API secret)");
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
		return hsm_fail(st, "io", "secret file %s: %s", path,
		    strerror(errno));
	/* Straight into buf with read(): no stdio buffer to wipe. */
	while (n < cap) {
		ssize_t r = read(fd, buf + n, cap - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;

			close(fd);
			OPENSSL_cleanse(buf, cap);
			return hsm_fail(st, "io", "secret file %s: %s", path,
			    strerror(e));
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (n >= cap) {
		OPENSSL_cleanse(buf, cap);
		return hsm_fail(st, "bad_value", "secret file %s is larger "
		    "than %d bytes", path, SECRET_MAX);
	}
	/* One line: its newline (and a CR before it) is not the secret's. */
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	if (n == 0)
		return hsm_fail(st, "bad_value", "secret file %s is empty",
		    path);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f) {
			OPENSSL_cleanse(buf, cap);
			return hsm_fail(st, "bad_value", "secret file %s holds "
			    "more than one line of text", path);
		}
	if (!hsm_utf8_valid((const unsigned char *)buf, n)) {
		OPENSSL_cleanse(buf, cap);
		return hsm_fail(st, "bad_value", "secret file %s is not text",
		    path);
	}
	*len = n;
	return 0;
}

/* auth.user {partition, secret, api?}; the session becomes "user:P". */
static int
do_user_login(struct ctx *ctx, const char *part, const char *file,
    const char *api, cbor_item_t **result, hsm_status *st)
{
	char secret[SECRET_MAX + 1];
	cbor_item_t *args = NULL, *sec = NULL;
	size_t len;
	int r = -1;

	*result = NULL;
	if (check_partition(part, st) != 0)
		return -1;
	if (api != NULL && !api_name_ok(api))
		return hsm_fail(st, "bad_value", "--api takes jce, cng, pkcs11 "
		    "or rest, not '%.32s'", api);
	if (read_secret(file, secret, sizeof(secret), &len, st) != 0)
		return -1;
	if ((args = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(args, "partition", part) != 0 ||
	    (api != NULL && hsm_map_put_str(args, "api", api) != 0) ||
	    (sec = cbor_build_stringn(secret, len)) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	/* sec stays ours to wipe: the map holds a second reference. */
	if (hsm_map_put(args, "secret", cbor_incref(sec)) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	OPENSSL_cleanse(secret, sizeof(secret));
	if (ctx_connect(ctx, st) != 0 ||
	    hsm_call(ctx->conn, "auth.user", args, result, st) != 0)
		goto out;
	snprintf(ctx->role, sizeof(ctx->role), "user:%s", part);
	r = 0;
out:
	OPENSSL_cleanse(secret, sizeof(secret));
	if (sec != NULL) {
		OPENSSL_cleanse(cbor_string_handle(sec),
		    cbor_string_length(sec));
		cbor_decref(&sec);
	}
	if (args != NULL)
		cbor_decref(&args);
	return r;
}

/* Global and command options together, in the order given. */
static size_t
gather(const struct inv *inv, const char *opt, const char *const *global,
    size_t nglobal, const char **out)
{
	size_t n = 0;

	for (size_t i = 0; i < nglobal && n < INV_MAX; i++)
		out[n++] = global[i];
	for (size_t i = 0; inv != NULL && i < inv->nopts && n < INV_MAX; i++)
		if (strcmp(inv->opts[i].opt->name, opt) == 0)
			out[n++] = inv->opts[i].value;
	return n;
}

static const struct kv_label login_labels[] = {
	{ "role", "role", KV_PLAIN },
	{ "partition", "partition", KV_PLAIN },
	{ "officers", "officers", KV_PLAIN },
	{ NULL, NULL, 0 },
};

static const struct kv_label user_labels[] = {
	{ "role", "role", KV_PLAIN },
	{ "partition", "partition", KV_PLAIN },
	{ "api", "api", KV_PLAIN },
	{ NULL, NULL, 0 },
};

/* login user P --secret-file FILE [--api API]; else the global file. */
static int
login_user_cmd(struct ctx *ctx, const struct inv *inv, const char *part,
    hsm_status *st)
{
	const char *file = inv_opt(inv, "secret-file");
	cbor_item_t *res = NULL;
	int r;

	if (inv_opt(inv, "officer") != NULL || inv_opt(inv, "approval") != NULL)
		return hsm_fail(st, "usage", "login user takes --secret-file "
		    "FILE, not officers or approvals");
	if (file == NULL)
		file = ctx->secret_file;
	if (do_user_login(ctx, part, file, inv_opt(inv, "api"), &res,
	    st) != 0)
		return -1;
	r = out_result(ctx, res, user_labels, st);
	cbor_decref(&res);
	return r;
}

int
cmd_login(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	const char *role, *part, *off[INV_MAX], *apr[INV_MAX];
	size_t noff, napr;
	cbor_item_t *res = NULL;
	int r;

	if (role_words(inv, 0, true, &role, &part, st) != 0)
		return -1;
	if (strcmp(role, "user") == 0)
		return login_user_cmd(ctx, inv, part, st);
	if (inv_opt(inv, "secret-file") != NULL || inv_opt(inv, "api") != NULL)
		return hsm_fail(st, "usage", "--secret-file and --api are for "
		    "login user PARTITION");
	noff = gather(inv, "officer", ctx->officers, ctx->nofficers, off);
	napr = gather(inv, "approval", ctx->approvals, ctx->napprovals, apr);
	if (do_login(ctx, role, part, off, noff, apr, napr, &res, st) != 0)
		return -1;
	r = out_result(ctx, res, login_labels, st);
	cbor_decref(&res);
	return r;
}

int
ctx_login_as(struct ctx *ctx, const char *as, hsm_status *st)
{
	char role[16], part[HSM_NAME_MAX + 1] = "";
	const char *colon = strchr(as, ':');
	cbor_item_t *res = NULL;
	int r;

	/* Too long is wrong, never cut short to another name. */
	if ((colon != NULL ? (size_t)(colon - as) : strlen(as)) >=
	    sizeof(role) ||
	    (colon != NULL && strlen(colon + 1) >= sizeof(part)))
		return hsm_fail(st, "bad_value", "--as takes genesis, so, "
		    "pso:PARTITION or user:PARTITION, not '%.80s%s'", as,
		    strlen(as) > 80 ? "..." : "");
	if (colon != NULL) {
		snprintf(role, sizeof(role), "%.*s", (int)(colon - as), as);
		snprintf(part, sizeof(part), "%s", colon + 1);
	} else
		snprintf(role, sizeof(role), "%s", as);
	if (strcmp(role, "genesis") != 0 && strcmp(role, "so") != 0 &&
	    strcmp(role, "pso") != 0 && strcmp(role, "user") != 0)
		return hsm_fail(st, "bad_value", "--as takes genesis, so, "
		    "pso:PARTITION or user:PARTITION, not '%s'", as);
	if ((strcmp(role, "pso") == 0 || strcmp(role, "user") == 0) !=
	    (part[0] != '\0'))
		return hsm_fail(st, "bad_value", "--as pso and --as user need "
		    "a partition (pso:P, user:P), and only they take one");
	if (strcmp(role, "user") == 0) {
		if (ctx->secret_file == NULL)
			return hsm_fail(st, "usage", "--as user:%s needs "
			    "--secret-file FILE (the partition's API secret)",
			    part);
		r = do_user_login(ctx, part, ctx->secret_file, NULL, &res, st);
	} else
		r = do_login(ctx, role, part, ctx->officers, ctx->nofficers,
		    ctx->approvals, ctx->napprovals, &res, st);
	if (res != NULL)
		cbor_decref(&res);
	if (r == 0)
		out_verbose(ctx, "logged in as %s", ctx->role);
	return r;
}

int
cmd_logout(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "logged_out", "logged out", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	int r;

	r = call_and_show(ctx, "auth.logout", NULL, labels, st);
	(void)inv;
	if (r == 0)
		ctx->role[0] = '\0';
	return r;
}

int
cmd_whoami(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "role", "role", KV_PLAIN },
		{ "partition", "partition", KV_PLAIN },
		{ "officers", "officers", KV_PLAIN },
		{ "since", "since", KV_TIME },
		{ "expires", "expires", KV_TIME },
		{ "session", "session", KV_PLAIN },
		{ "terminal_key", "terminal key", KV_PLAIN },
		{ "node", "node", KV_PLAIN },
		{ NULL, NULL, 0 },
	};

	(void)inv;
	return call_and_show(ctx, "auth.whoami", NULL, labels, st);
}

/*
 * --op 'COMMAND': parse it against the table and run its handler in
 * capture mode, so the request it would send (op and arguments) is the
 * very one the officers approve.
 */
static int
capture_op(struct ctx *ctx, const char *line, const struct cmd **cmd,
    hsm_status *st)
{
	struct tok_file tf;
	struct inv inv;
	int r = -1;

	if (tok_split(line, strlen(line), &tf, st) != 0)
		return -1;
	if (tf.n != 1) {
		hsm_fail(st, "usage", "--op takes one command line");
		goto out;
	}
	if (cmd_parse(tf.lines[0].argc, tf.lines[0].argv, &inv, st) != 0)
		goto out;
	if (!inv.cmd->writes || inv.help) {
		hsm_fail(st, "usage", "'%s' changes nothing that needs an "
		    "approval", inv.cmd->words);
		goto out;
	}
	*cmd = inv.cmd;
	r = cmd_capture(ctx, &inv, st);
out:
	tok_free(&tf);
	return r;
}

int
cmd_approval_request(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	const char *role = inv->nargs > 0 ? inv->args[0] : NULL, *part = "";
	const char *out = inv_opt(inv, "out"), *opline = inv_opt(inv, "op");
	const struct cmd *opcmd = NULL;
	cbor_item_t *args = NULL, *res = NULL;
	const cbor_item_t *t;
	int r = -1;

	if (opline != NULL && capture_op(ctx, opline, &opcmd, st) != 0)
		goto done;
	/* The approving role: given, or the only one the command takes. */
	if (role == NULL && opcmd != NULL && strchr(opcmd->role, '|') == NULL &&
	    strcmp(opcmd->role, "any") != 0 && strcmp(opcmd->role, "-") != 0)
		role = opcmd->role;
	if (role == NULL) {
		hsm_fail(st, "usage", opcmd != NULL ? "'%s' may be approved by "
		    "%s: give the ROLE" : "%sapproval request needs a ROLE "
		    "(or --op COMMAND)", opcmd != NULL ? opcmd->words : "",
		    opcmd != NULL ? opcmd->role : "");
		goto done;
	}
	if (inv->nargs > 0 && role_words(inv, 0, false, &role, &part,
	    st) != 0)
		goto done;
	if ((args = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(args, "role", role) != 0 ||
	    (part[0] && hsm_map_put_str(args, "partition", part) != 0) ||
	    (opcmd != NULL && (hsm_map_put_str(args, "op",
	    ctx->captured_op) != 0 || hsm_map_put(args, "args",
	    ctx->captured_args) != 0))) {
		ctx->captured_args = NULL;
		hsm_fail(st, "no_memory", "out of memory");
		goto done;
	}
	ctx->captured_args = NULL;	/* the map holds it now */
	if (ctx_connect(ctx, st) != 0 ||
	    hsm_call(ctx->conn, "auth.challenge", args, &res, st) != 0)
		goto done;
	if ((t = hsm_map_get(res, "token")) == NULL ||
	    !cbor_isa_bytestring(t)) {
		hsm_fail(st, "protocol", "the node sent no challenge");
		goto done;
	}
	if (hsm_token_write(out, cbor_bytestring_handle(t),
	    cbor_bytestring_length(t), st) != 0)
		goto done;
	if (ctx->output == OUT_JSON) {
		json_t *j = json_pack("{s:s,s:s,s:s,s:s?,s:I}", "token", out,
		    "role", role, "partition", part, "op",
		    opcmd != NULL ? ctx->captured_op : NULL, "expires",
		    (json_int_t)cbor_get_int(hsm_map_get(res, "expires")));
		char *js = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) :
		    NULL;

		if (js != NULL)
			printf("%s\n", js);
		free(js);
		json_decref(j);
	} else
		printf("wrote a challenge for %s%s%s%s%s to %s; each officer "
		    "signs it with: hsmctl approval sign %s --officer KEY --out "
		    "APPROVAL\n", opcmd != NULL ? "'" : "a ", opcmd != NULL ?
		    opline : role, opcmd != NULL ? "' by the " : " login",
		    opcmd != NULL ? role : "", opcmd != NULL ? " role" : "",
		    out, out);
	r = 0;
done:
	if (ctx->captured_args != NULL)
		cbor_decref(&ctx->captured_args);
	if (args != NULL)
		cbor_decref(&args);
	if (res != NULL)
		cbor_decref(&res);
	return r;
}

/* Offline: show what is approved, ask, sign with one officer key. */
int
cmd_approval_sign(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	const char *file = inv_opt(inv, "officer"), *out = inv_opt(inv, "out");
	struct hsm_approval ap;
	struct hsm_officer_key *key = NULL;
	struct token_info ti;
	char pass[HSM_PASS_MAX + 2], prompt[512], when[64];
	time_t exp;
	struct tm tm;
	int r = -1;

	memset(&ap, 0, sizeof(ap));
	if (hsm_token_read(inv->args[0], &ap.token, &ap.token_len, st) != 0 ||
	    token_parse(ap.token, ap.token_len, &ti, st) != 0)
		goto out;
	exp = (time_t)ti.expires;
	gmtime_r(&exp, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%SZ", &tm);
	if (time(NULL) > exp) {
		hsm_fail(st, "login_refused", "this challenge expired at %s",
		    when);
		goto out;
	}
	if (strcmp(ti.purpose, "op") == 0)
		fprintf(stderr, "Approving, as %s%s%s, one operation on node %s "
		    "of cluster %s, valid until %s, while nothing else changes "
		    "on the node:\n  %s %s\n", ti.role, ti.partition[0] ?
		    " of partition " : "", ti.partition, ti.node, ti.cluster,
		    when, ti.op, ti.args);
	else
		fprintf(stderr, "Approving: a %s login%s%s on node %s of "
		    "cluster %s, valid until %s\n", ti.role, ti.partition[0] ?
		    " to partition " : "", ti.partition, ti.node, ti.cluster,
		    when);
	if (!ask_yes(ctx, "Sign it? [y/N] ", st))
		goto out;
	snprintf(prompt, sizeof(prompt), "Passphrase for officer key %s: ",
	    file);
	if (pass_read(ctx, prompt, false, pass, sizeof(pass), st) != 0)
		goto out;
	r = hsm_officer_load(file, pass, strlen(pass), &key, st);
	OPENSSL_cleanse(pass, sizeof(pass));
	if (r != 0)
		goto out;
	r = -1;
	if (hsm_officer_pubkey(key, &ap.pubkey, &ap.pubkey_len, st) != 0 ||
	    hsm_officer_sign(key, ap.token, ap.token_len, &ap.sig, &ap.sig_len,
	    st) != 0 || hsm_approval_write(out, &ap, st) != 0)
		goto out;
	if (ctx->output == OUT_JSON)
		printf("{\"approval\":");
	if (ctx->output == OUT_JSON) {
		json_t *j = json_string(out);
		char *s = json_dumps(j, JSON_ENCODE_ANY);

		printf("%s}\n", s != NULL ? s : "null");
		free(s);
		json_decref(j);
	} else
		printf("wrote approval to %s\n", out);
	r = 0;
out:
	hsm_officer_free(&key);
	hsm_approval_clear(&ap);
	return r;
}

int
cmd_officer_keygen(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	const char *type = inv_opt(inv, "type");
	enum hsm_key_type t = HSM_KEY_ED25519;
	char pass[HSM_PASS_MAX + 2];
	int r;

	if (type != NULL && strcmp(type, "p384") == 0)
		t = HSM_KEY_P384;
	else if (type != NULL && strcmp(type, "ed25519") != 0)
		return hsm_fail(st, "bad_value", "--type takes ed25519 or "
		    "p384, not '%s'", type);
	if (access(inv->args[0], F_OK) == 0)
		return hsm_fail(st, "conflict", "%s exists; refusing to "
		    "overwrite it", inv->args[0]);
	if (pass_read(ctx, "New passphrase for the officer key: ", true, pass,
	    sizeof(pass), st) != 0)
		return -1;
	r = hsm_officer_keygen(inv->args[0], t, pass, strlen(pass), st);
	OPENSSL_cleanse(pass, sizeof(pass));
	if (r != 0)
		return -1;
	if (ctx->output == OUT_JSON) {
		json_t *j = json_pack("{s:s,s:s,s:s}", "key", inv->args[0],
		    "type", t == HSM_KEY_P384 ? "p384" : "ed25519", "pubkey",
		    "");
		char pub[4096], *s;

		snprintf(pub, sizeof(pub), "%s.pub", inv->args[0]);
		json_object_set_new(j, "pubkey", json_string(pub));
		s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (s != NULL)
			printf("%s\n", s);
		free(s);
		json_decref(j);
	} else
		printf("wrote %s (encrypted) and %s.pub\n", inv->args[0],
		    inv->args[0]);
	return 0;
}
