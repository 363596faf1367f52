/*
 * key commands (DESIGN §5, §6, §9): the technical user's keys of a
 * partition, thin over the node's key.* ops.  Partition names, key ids,
 * key types and labels are checked here first, so a typo is a usage
 * error (exit 2) and nothing is sent; the node checks everything again
 * and enforces the partition's parameters on every call.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd.h"

#define SIGN_IN_MAX (8u * 1024 * 1024)	/* as the node's key.sign */
#define LABEL_MAX 127			/* bytes, as the node stores it */
#define KEY_ID_LEN 32

const char *const key_obj_types[] = {
	"rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384", "ed25519",
	"aes-256", NULL,
};

const char *const api_names[] = { "jce", "cng", "pkcs11", "rest", NULL };

static bool
in_list(const char *const *list, const char *s)
{
	for (; *list != NULL; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

bool
key_obj_type_ok(const char *type)
{
	return in_list(key_obj_types, type);
}

bool
api_name_ok(const char *api)
{
	return in_list(api_names, api);
}

static int
oom(hsm_status *st)
{
	return hsm_fail(st, "no_memory", "out of memory");
}

/* Printable ASCII copy of untrusted text for a message, cut at 64. */
static const char *
shown(const char *s, char *buf, size_t len)
{
	size_t i, j = 0;

	for (i = 0; s[i] != '\0' && i < 64 && j + 1 < len; i++)
		buf[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	for (int k = 0; s[i] != '\0' && k < 3 && j + 1 < len; k++)
		buf[j++] = '.';
	buf[j] = '\0';
	return buf;
}

static int
check_key_id(const char *id, hsm_status *st)
{
	char b[72];

	if (strlen(id) == KEY_ID_LEN &&
	    strspn(id, "0123456789abcdef") == KEY_ID_LEN)
		return 0;
	return hsm_fail(st, "bad_value", "invalid key id '%s' (32 lower-case "
	    "hex digits, as key list shows them)", shown(id, b, sizeof(b)));
}

/* {partition: P} or {partition: P, id: ID}, both checked. */
static cbor_item_t *
key_args(const struct inv *inv, bool with_id, hsm_status *st)
{
	cbor_item_t *a;

	if (check_partition(inv->args[0], st) != 0 ||
	    (with_id && check_key_id(inv->args[1], st) != 0))
		return NULL;
	if ((a = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(a, "partition", inv->args[0]) != 0 ||
	    (with_id && hsm_map_put_str(a, "id", inv->args[1]) != 0)) {
		if (a != NULL)
			cbor_decref(&a);
		oom(st);
		return NULL;
	}
	return a;
}

static int
check_label(const char *label, hsm_status *st)
{
	size_t n = strlen(label);

	if (n > LABEL_MAX)
		return hsm_fail(st, "bad_value", "a key label has at most %d "
		    "bytes, not %zu", LABEL_MAX, n);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)label[i] < 0x20 || label[i] == 0x7f)
			return hsm_fail(st, "bad_value", "a key label holds "
			    "no control characters");
	if (!hsm_utf8_valid((const unsigned char *)label, n))
		return hsm_fail(st, "bad_value", "a key label is UTF-8 text");
	return 0;
}

int
cmd_key_generate(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "id", "id", KV_PLAIN },
		{ "type", "type", KV_PLAIN },
		{ "label", "label", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	const char *type = inv_opt(inv, "type"), *label = inv_opt(inv,
	    "label");
	cbor_item_t *a;
	char b[72];
	int r;

	if (!key_obj_type_ok(type)) {
		char list[160];
		size_t off = 0;

		for (const char *const *t = key_obj_types; *t != NULL &&
		    off < sizeof(list); t++)
			off += (size_t)snprintf(list + off, sizeof(list) - off,
			    "%s%s", off ? ", " : "", *t);
		return hsm_fail(st, "bad_value", "unknown key type '%s' (one "
		    "of %s)", shown(type, b, sizeof(b)), list);
	}
	if (label != NULL && check_label(label, st) != 0)
		return -1;
	if ((a = key_args(inv, false, st)) == NULL)
		return -1;
	if (hsm_map_put_str(a, "type", type) != 0 ||
	    (label != NULL && hsm_map_put_str(a, "label", label) != 0) ||
	    (inv_opt(inv, "extractable") != NULL &&
	    hsm_map_put_bool(a, "extractable", true) != 0) ||
	    (inv_opt(inv, "no-sensitive") != NULL &&
	    hsm_map_put_bool(a, "sensitive", false) != 0) ||
	    (inv_opt(inv, "session") != NULL &&
	    hsm_map_put_bool(a, "session", true) != 0))
		r = oom(st);
	else
		r = call_and_show(ctx, "key.generate", a, labels, st);
	cbor_decref(&a);
	return r;
}

/* The flags that are on, as words: "extractable, sensitive". */
static void
flags_text(const cbor_item_t *k, char *buf, size_t len)
{
	static const char *const names[] = { "extractable", "sensitive",
	    "session", NULL };
	size_t off = 0;

	buf[0] = '\0';
	for (const char *const *n = names; *n != NULL; n++) {
		const cbor_item_t *v = hsm_map_get(k, *n);

		if (v != NULL && hsm_cbor_is_bool(v) && cbor_get_bool(v) &&
		    off < len)
			off += (size_t)snprintf(buf + off, len - off, "%s%s",
			    off ? "," : "", *n);
	}
}

/* Text rows of key list: the node's fields, the flags in one column. */
static cbor_item_t *
list_rows(const cbor_item_t *keys)
{
	static const char *const copy[] = { "id", "type", "label", "state",
	    "created", NULL };
	cbor_item_t *rows = cbor_new_indefinite_array(), *m = NULL;
	char flags[64];

	if (rows == NULL)
		return NULL;
	for (size_t i = 0; i < cbor_array_size(keys); i++) {
		const cbor_item_t *k = cbor_array_handle(keys)[i];
		bool ok;

		if (!cbor_isa_map(k))
			continue;
		if ((m = cbor_new_indefinite_map()) == NULL)
			goto fail;
		for (const char *const *c = copy; *c != NULL; c++) {
			const cbor_item_t *v = hsm_map_get(k, *c);

			if (v != NULL && hsm_map_put(m, *c, cbor_incref(
			    (cbor_item_t *)(uintptr_t)v)) != 0)
				goto fail;
		}
		flags_text(k, flags, sizeof(flags));
		if (hsm_map_put_str(m, "flags", flags) != 0)
			goto fail;
		ok = cbor_array_push(rows, m);
		cbor_decref(&m);
		if (!ok)
			goto fail;
	}
	return rows;
fail:
	if (m != NULL)
		cbor_decref(&m);
	cbor_decref(&rows);
	return NULL;
}

int
cmd_key_list(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label cols[] = {
		{ "id", "ID", KV_PLAIN },
		{ "type", "TYPE", KV_PLAIN },
		{ "label", "LABEL", KV_PLAIN },
		{ "state", "STATE", KV_PLAIN },
		{ "flags", "FLAGS", KV_PLAIN },
		{ "created", "CREATED", KV_TIME },
		{ NULL, NULL, 0 },
	};
	cbor_item_t *a, *res = NULL, *rows = NULL;
	const cbor_item_t *keys;
	int r = -1;

	if ((a = key_args(inv, false, st)) == NULL)
		return -1;
	if (inv_opt(inv, "invalidated") != NULL &&
	    hsm_map_put_bool(a, "invalidated", true) != 0) {
		oom(st);
		goto out;
	}
	if (ctx_call(ctx, "key.list", a, &res, st) != 0)
		goto out;
	if ((keys = hsm_map_get(res, "keys")) == NULL ||
	    !cbor_isa_array(keys)) {
		hsm_fail(st, "protocol", "the node sent no keys");
		goto out;
	}
	if (ctx->output == OUT_JSON)
		r = out_result(ctx, res, NULL, st);
	else if ((rows = list_rows(keys)) == NULL)
		oom(st);
	else
		r = out_table(ctx, rows, cols, st);
out:
	if (rows != NULL)
		cbor_decref(&rows);
	if (res != NULL)
		cbor_decref(&res);
	cbor_decref(&a);
	return r;
}

int
cmd_key_show(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "created", "created", KV_TIME },
		{ NULL, NULL, 0 },
	};
	cbor_item_t *a, *res = NULL, *d = NULL;
	const cbor_item_t *pem;
	struct cbor_pair *h;
	int r = -1;

	if ((a = key_args(inv, true, st)) == NULL)
		return -1;
	if (ctx_call(ctx, "key.show", a, &res, st) != 0)
		goto out;
	if (ctx->output == OUT_JSON) {
		r = out_result(ctx, res, NULL, st);
		goto out;
	}
	if (!cbor_isa_map(res)) {
		hsm_fail(st, "protocol", "the node sent no key");
		goto out;
	}
	/* The fields, aligned; then the public key PEM as it is. */
	if ((d = cbor_new_indefinite_map()) == NULL) {
		oom(st);
		goto out;
	}
	h = cbor_map_handle(res);
	for (size_t i = 0; i < cbor_map_size(res); i++) {
		char k[64];
		size_t kl;

		if (!cbor_isa_string(h[i].key) ||
		    (kl = cbor_string_length(h[i].key)) >= sizeof(k))
			continue;
		memcpy(k, cbor_string_handle(h[i].key), kl);
		k[kl] = '\0';
		if (strcmp(k, "public_key") == 0)
			continue;
		if (hsm_map_put(d, k, cbor_incref(h[i].value)) != 0) {
			oom(st);
			goto out;
		}
	}
	if ((r = out_result(ctx, d, labels, st)) != 0)
		goto out;
	pem = hsm_map_get(res, "public_key");
	if (pem != NULL && cbor_isa_string(pem) &&
	    cbor_string_length(pem) > 0) {
		const unsigned char *p = cbor_string_handle(pem);
		size_t n = cbor_string_length(pem);

		/* Node text is data: no terminal control but the newlines. */
		for (size_t i = 0; i < n; i++)
			putchar(p[i] == '\n' || (p[i] >= 0x20 && p[i] != 0x7f) ?
			    p[i] : '?');
		if (p[n - 1] != '\n')
			putchar('\n');
	}
out:
	if (d != NULL)
		cbor_decref(&d);
	if (res != NULL)
		cbor_decref(&res);
	cbor_decref(&a);
	return r;
}

/* The whole of a file of at most max bytes. */
static int
read_bounded(const char *path, size_t max, unsigned char **out, size_t *len,
    hsm_status *st)
{
	unsigned char *buf = NULL;
	size_t cap = 0, n = 0;
	struct stat sb;
	int fd;

	*out = NULL;
	*len = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
		return hsm_fail(st, "io", "%s: %s", path, strerror(errno));
	if (fstat(fd, &sb) != 0)
		memset(&sb, 0, sizeof(sb));
	if (S_ISDIR(sb.st_mode)) {
		close(fd);
		return hsm_fail(st, "io", "%s: %s", path, strerror(EISDIR));
	}
	/* A regular file says its size; a pipe is read up to max + 1. */
	if (S_ISREG(sb.st_mode) && (uintmax_t)sb.st_size > max)
		goto toobig;
	for (;;) {
		ssize_t r;

		if (n == cap) {
			unsigned char *p;

			/* One byte past max tells a file that is too big. */
			if (n > max)
				goto toobig;
			cap = cap ? cap * 2 : 65536;
			if (cap > max + 1)
				cap = max + 1;
			if ((p = realloc(buf, cap ? cap : 1)) == NULL) {
				free(buf);
				close(fd);
				return oom(st);
			}
			buf = p;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;

			free(buf);
			close(fd);
			return hsm_fail(st, "io", "%s: %s", path, strerror(e));
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	*out = buf;
	*len = n;
	return 0;
toobig:
	free(buf);
	close(fd);
	return hsm_fail(st, "bad_value", "%s is larger than %zu bytes", path,
	    max);
}

/* Make the rename of a file in path's directory durable (best effort). */
static void
sync_dir(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd;

	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

int
cmd_key_sign(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	const char *in = inv_opt(inv, "in"), *out = inv_opt(inv, "out");
	const char *want = inv_opt(inv, "alg");
	static const struct kv_label labels[] = {
		{ "id", "id", KV_PLAIN },
		{ "alg", "algorithm", KV_PLAIN },
		{ "out", "written to", KV_PLAIN },
		{ "bytes", "bytes", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	cbor_item_t *a = NULL, *res = NULL, *data = NULL, *d = NULL;
	const cbor_item_t *sig, *alg, *id;
	unsigned char *buf = NULL;
	size_t len;
	char tmp[PATH_MAX];
	int fd = -1, r = -1;
	bool made = false;

	if (*in == '\0' || *out == '\0')
		return hsm_fail(st, "bad_value", "--in and --out need a file "
		    "name");
	if (want != NULL) {
		size_t i;

		for (i = 0; sign_algs[i] != NULL; i++)
			if (strcmp(sign_algs[i], want) == 0)
				break;
		if (sign_algs[i] == NULL)
			return hsm_fail(st, "bad_value", "unknown --alg '%.32s' "
			    "(see hsmctl help key sign)", want);
	}
	if ((a = key_args(inv, true, st)) == NULL)
		return -1;
	if (read_bounded(in, SIGN_IN_MAX, &buf, &len, st) != 0)
		goto out;
	/* The map takes the buffer as it is: 8 MiB are not copied again. */
	if ((data = cbor_new_definite_bytestring()) == NULL) {
		oom(st);
		goto out;
	}
	cbor_bytestring_set_handle(data, buf, len);
	buf = NULL;
	if (hsm_map_put(a, "data", data) != 0) {
		data = NULL;
		oom(st);
		goto out;
	}
	data = NULL;
	if (want != NULL && hsm_map_put_str(a, "alg", want) != 0) {
		oom(st);
		goto out;
	}
	/*
	 * The output's temporary file first, next to it: a directory that
	 * cannot take it fails before anything is sent.  Renamed over --out
	 * only once the whole signature is on disk.
	 */
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.XXXXXX", out) >=
	    sizeof(tmp)) {
		hsm_fail(st, "bad_value", "--out: file name too long");
		goto out;
	}
	if ((fd = mkstemp(tmp)) < 0) {
		hsm_fail(st, "io", "%s: cannot create a file next to it: %s",
		    out, strerror(errno));
		goto out;
	}
	made = true;
	if (fchmod(fd, 0644) != 0) {
		hsm_fail(st, "io", "%s: chmod: %s", tmp, strerror(errno));
		goto out;
	}
	if (ctx_call(ctx, "key.sign", a, &res, st) != 0)
		goto out;
	/* The data is sent: no need to hold 8 MiB any longer. */
	cbor_decref(&a);
	if ((sig = hsm_map_get(res, "signature")) == NULL ||
	    !cbor_isa_bytestring(sig) || cbor_bytestring_length(sig) == 0 ||
	    (alg = hsm_map_get(res, "alg")) == NULL || !cbor_isa_string(alg)) {
		hsm_fail(st, "protocol", "the node sent no signature");
		goto out;
	}
	id = hsm_map_get(res, "id");
	if (hsm_write_all(fd, cbor_bytestring_handle(sig),
	    cbor_bytestring_length(sig)) != 0 || fsync(fd) != 0) {
		hsm_fail(st, "io", "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		hsm_fail(st, "io", "%s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, out) != 0) {
		hsm_fail(st, "io", "%s: %s", out, strerror(errno));
		goto out;
	}
	made = false;
	sync_dir(out);
	if ((d = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put(d, "id", id != NULL && cbor_isa_string(id) ?
	    cbor_incref((cbor_item_t *)(uintptr_t)id) :
	    cbor_build_string(inv->args[1])) != 0 ||
	    hsm_map_put(d, "alg", cbor_incref((cbor_item_t *)(uintptr_t)alg)) !=
	    0 || hsm_map_put_str(d, "out", out) != 0 ||
	    hsm_map_put_uint(d, "bytes", cbor_bytestring_length(sig)) != 0) {
		oom(st);
		goto out;
	}
	r = out_result(ctx, d, labels, st);
out:
	if (fd >= 0)
		close(fd);
	if (made)
		(void)unlink(tmp);
	if (d != NULL)
		cbor_decref(&d);
	if (res != NULL)
		cbor_decref(&res);
	if (data != NULL)
		cbor_decref(&data);
	if (a != NULL)
		cbor_decref(&a);
	free(buf);
	return r;
}

static const struct kv_label change_labels[] = {
	{ "id", "id", KV_PLAIN },
	{ "result", "result", KV_PLAIN },
	{ NULL, NULL, 0 },
};

/* key delete, restore, purge: {partition, id} -> {id, result}. */
static int
key_change(struct ctx *ctx, const struct inv *inv, const char *op,
    bool ask, hsm_status *st)
{
	cbor_item_t *a;
	char q[128];
	int r = -1;

	if ((a = key_args(inv, true, st)) == NULL)
		return -1;
	/* Recording it for an approval destroys nothing: no question then. */
	if (ask && !ctx->capture) {
		snprintf(q, sizeof(q), "Destroy key %s for good? [y/N] ",
		    inv->args[1]);
		if (!ask_yes(ctx, q, st))
			goto out;
	}
	r = call_and_show(ctx, op, a, change_labels, st);
out:
	cbor_decref(&a);
	return r;
}

int
cmd_key_delete(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	return key_change(ctx, inv, "key.delete", false, st);
}

int
cmd_key_restore(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	return key_change(ctx, inv, "key.restore", false, st);
}

int
cmd_key_purge(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	return key_change(ctx, inv, "key.purge", true, st);
}

/*
 * key attest: the node's signed statement about a key.  Text shows the
 * statement's fields; --out writes the whole attestation (statement,
 * signature, context, attestation key) as JSON for offline checking.
 */
int
cmd_key_attest(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	const char *out = inv_opt(inv, "out");
	cbor_item_t *a, *res = NULL, *stmt = NULL;
	const cbor_item_t *sb, *pem;
	json_t *j = NULL;
	char *js = NULL;
	FILE *f = NULL;
	int r = -1;

	if ((a = key_args(inv, true, st)) == NULL)
		return -1;
	if (ctx_call(ctx, "key.attest", a, &res, st) != 0)
		goto done;
	if ((sb = hsm_map_get(res, "statement")) == NULL ||
	    !cbor_isa_bytestring(sb) || hsm_cbor_decode(
	    cbor_bytestring_handle(sb), cbor_bytestring_length(sb), &stmt,
	    st) != 0 || !cbor_isa_map(stmt)) {
		hsm_fail(st, "protocol", "the node sent no attestation");
		goto done;
	}
	if (out != NULL) {
		if ((j = out_cbor_to_json(res)) == NULL ||
		    (js = json_dumps(j, JSON_INDENT(2) |
		    JSON_PRESERVE_ORDER)) == NULL) {
			oom(st);
			goto done;
		}
		if ((f = fopen(out, "w")) == NULL || fputs(js, f) < 0 ||
		    fputc('\n', f) == EOF || fclose(f) != 0) {
			f = NULL;
			hsm_fail(st, "io", "cannot write %s", out);
			goto done;
		}
		f = NULL;
	}
	if (ctx->output == OUT_JSON)
		r = out_result(ctx, res, NULL, st);
	else {
		static const struct kv_label labels[] = {
			{ "created", "created", KV_TIME },
			{ "time", "attested", KV_TIME },
			{ NULL, NULL, 0 },
		};

		if ((r = out_result(ctx, stmt, labels, st)) == 0 &&
		    (pem = hsm_map_get(res, "attestation_key")) != NULL &&
		    cbor_isa_string(pem))
			printf("signed by the node's attestation key:\n%.*s",
			    (int)cbor_string_length(pem),
			    (const char *)cbor_string_handle(pem));
		if (r == 0 && out != NULL)
			printf("wrote the attestation to %s\n", out);
	}
done:
	if (f != NULL)
		fclose(f);
	free(js);
	json_decref(j);
	if (stmt != NULL)
		cbor_decref(&stmt);
	if (res != NULL)
		cbor_decref(&res);
	cbor_decref(&a);
	return r;
}

const char *const sign_algs[] = {
	"rsa-pkcs1-sha256", "rsa-pkcs1-sha384", "rsa-pss-sha256",
	"ecdsa-sha256", "ecdsa-sha384", "ed25519", NULL,
};
