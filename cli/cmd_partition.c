/*
 * partition commands (DESIGN §5, §6, §9): thin over the node's
 * partition.* ops.  Names, parameters and values are checked here against
 * the same table the node uses (lib/params.c), so a typo is a usage error
 * (exit 2) and nothing is sent; the node checks everything again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cmd.h"

#define SHOW_MAX 64

/* Printable ASCII copy of untrusted text for a message, cut at SHOW_MAX. */
static const char *
shown(const char *s, char *buf, size_t len)
{
	size_t i, j = 0;

	for (i = 0; s[i] != '\0' && i < SHOW_MAX && j + 1 < len; i++)
		buf[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	for (int k = 0; s[i] != '\0' && k < 3 && j + 1 < len; k++)
		buf[j++] = '.';
	buf[j] = '\0';
	return buf;
}

static int
oom(hsm_status *st)
{
	return hsm_fail(st, "no_memory", "out of memory");
}

int
check_partition(const char *name, hsm_status *st)
{
	char b[SHOW_MAX + 4];

	if (hsm_partition_name_ok(name))
		return 0;
	return hsm_fail(st, "bad_value", "invalid partition name '%s' (a "
	    "lower-case letter or digit, then up to 62 more or '-')",
	    shown(name, b, sizeof(b)));
}

static const struct hsm_param *
check_param(const char *name, size_t len, hsm_status *st)
{
	char n[SHOW_MAX + 1], b[SHOW_MAX + 4];
	const struct hsm_param *p = NULL;

	if (len <= SHOW_MAX) {
		memcpy(n, name, len);
		n[len] = '\0';
		p = hsm_param_find(n);
	} else {
		memcpy(n, name, SHOW_MAX);
		n[SHOW_MAX] = '\0';
	}
	if (p == NULL)
		hsm_fail(st, "bad_value", "unknown parameter '%s%s' (see "
		    "hsmctl partition params)", shown(n, b, sizeof(b)),
		    len > SHOW_MAX ? "..." : "");
	return p;
}

/*
 * PARAM=VALUE words (from args[first]) as a map of parameter to its
 * normalised value.  Every pair is checked before anything is sent.
 */
static cbor_item_t *
param_pairs(const struct inv *inv, size_t first, hsm_status *st)
{
	cbor_item_t *m = cbor_new_indefinite_map();
	char norm[HSM_PARAM_VALUE_MAX], b[SHOW_MAX + 4];

	if (m == NULL) {
		oom(st);
		return NULL;
	}
	for (size_t i = first; i < inv->nargs; i++) {
		const char *w = inv->args[i], *eq = strchr(w, '=');
		const struct hsm_param *p;

		if (eq == NULL) {
			hsm_fail(st, "bad_value", "'%s': expected PARAM=VALUE",
			    shown(w, b, sizeof(b)));
			goto fail;
		}
		if ((p = check_param(w, (size_t)(eq - w), st)) == NULL ||
		    hsm_param_normalize(p, eq + 1, norm, sizeof(norm),
		    st) != 0)
			goto fail;
		if (hsm_map_get(m, p->name) != NULL) {
			hsm_fail(st, "bad_value", "parameter '%s' given twice",
			    p->name);
			goto fail;
		}
		if (hsm_map_put_str(m, p->name, norm) != 0) {
			oom(st);
			goto fail;
		}
	}
	return m;
fail:
	cbor_decref(&m);
	return NULL;
}

cbor_item_t *
partition_args(const char *key, const char *name, hsm_status *st)
{
	cbor_item_t *a;

	if (check_partition(name, st) != 0)
		return NULL;
	if ((a = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(a, key, name) != 0) {
		if (a != NULL)
			cbor_decref(&a);
		hsm_fail(st, "no_memory", "out of memory");
		return NULL;
	}
	return a;
}

/* {"name": P} */
static cbor_item_t *
name_args(const char *name, hsm_status *st)
{
	return partition_args("name", name, st);
}

/* A text value of a map, or NULL when absent or not text. */
static const cbor_item_t *
get_text(const cbor_item_t *m, const char *key)
{
	const cbor_item_t *v = m != NULL && cbor_isa_map(m) ?
	    hsm_map_get(m, key) : NULL;

	return v != NULL && cbor_isa_string(v) ? v : NULL;
}

static bool
get_uint(const cbor_item_t *m, const char *key, uint64_t *out)
{
	const cbor_item_t *v = m != NULL && cbor_isa_map(m) ?
	    hsm_map_get(m, key) : NULL;

	if (v == NULL || !cbor_isa_uint(v))
		return false;
	*out = cbor_get_int(v);
	return true;
}

/* Copy key = value into the display map dst (text, or a uint as given). */
static int
put_copy(cbor_item_t *dst, const char *label, const cbor_item_t *v)
{
	return hsm_map_put(dst, label, cbor_incref((cbor_item_t *)(uintptr_t)v));
}

/*
 * The parameters of a result's "params" map into dst: in table order,
 * then any the table does not know (a newer node), as sent.
 */
static int
put_params(cbor_item_t *dst, const cbor_item_t *params)
{
	struct cbor_pair *h;

	if (params == NULL || !cbor_isa_map(params))
		return 0;
	for (size_t i = 0; i < hsm_nparams; i++) {
		const cbor_item_t *v = hsm_map_get(params, hsm_params[i].name);

		if (v != NULL && put_copy(dst, hsm_params[i].name, v) != 0)
			return -1;
	}
	h = cbor_map_handle(params);
	for (size_t i = 0; i < cbor_map_size(params); i++) {
		char k[128];
		size_t kl;

		if (!cbor_isa_string(h[i].key) ||
		    (kl = cbor_string_length(h[i].key)) >= sizeof(k))
			continue;
		memcpy(k, cbor_string_handle(h[i].key), kl);
		k[kl] = '\0';
		if (hsm_param_find(k) == NULL && hsm_map_get(dst, k) == NULL &&
		    put_copy(dst, k, h[i].value) != 0)
			return -1;
	}
	return 0;
}

/* A result's "params" map shown as aligned pairs; JSON: the result. */
static int
show_params_result(struct ctx *ctx, const cbor_item_t *res,
    const char *key, const struct kv_label *head, hsm_status *st)
{
	cbor_item_t *d;
	int r;

	if (ctx->output == OUT_JSON)
		return out_result(ctx, res, NULL, st);
	if ((d = cbor_new_indefinite_map()) == NULL)
		return oom(st);
	r = 0;
	for (const struct kv_label *l = head; r == 0 && l != NULL &&
	    l->key != NULL; l++) {
		const cbor_item_t *v = hsm_map_get(res, l->key);

		if (v != NULL)
			r = put_copy(d, l->label, v);
	}
	if (r == 0)
		r = put_params(d, hsm_map_get(res, key));
	r = r != 0 ? oom(st) : out_result(ctx, d, NULL, st);
	cbor_decref(&d);
	return r;
}

int
cmd_partition_create(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label head[] = {
		{ "name", "partition", KV_PLAIN },
		{ "profile", "profile", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	const char *profile = inv_opt(inv, "profile");
	cbor_item_t *a = NULL, *params = NULL, *res = NULL;
	char b[SHOW_MAX + 4];
	int r = -1;

	if (profile != NULL && hsm_profile_find(profile) == NULL)
		return hsm_fail(st, "bad_value", "unknown profile '%s' (see "
		    "hsmctl partition params)", shown(profile, b, sizeof(b)));
	if ((a = name_args(inv->args[0], st)) == NULL)
		return -1;
	if ((params = param_pairs(inv, 1, st)) == NULL)
		goto out;
	if ((profile != NULL && hsm_map_put_str(a, "profile", profile) != 0) ||
	    (cbor_map_size(params) > 0 && hsm_map_put(a, "params",
	    cbor_incref(params)) != 0)) {
		oom(st);
		goto out;
	}
	if (ctx_call(ctx, "partition.create", a, &res, st) != 0)
		goto out;
	r = show_params_result(ctx, res, "params", head, st);
out:
	if (res != NULL)
		cbor_decref(&res);
	if (params != NULL)
		cbor_decref(&params);
	cbor_decref(&a);
	return r;
}

int
cmd_partition_list(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label cols[] = {
		{ "name", "NAME", KV_PLAIN },
		{ "profile", "PROFILE", KV_PLAIN },
		{ "created", "CREATED", KV_TIME },
		{ NULL, NULL, 0 },
	};
	cbor_item_t *res = NULL;
	const cbor_item_t *rows;
	int r;

	(void)inv;
	if (ctx_call(ctx, "partition.list", NULL, &res, st) != 0)
		return -1;
	if ((rows = hsm_map_get(res, "partitions")) == NULL ||
	    !cbor_isa_array(rows))
		r = hsm_fail(st, "protocol", "the node sent no partitions");
	else
		r = out_table(ctx, ctx->output == OUT_JSON ? res : rows, cols,
		    st);
	cbor_decref(&res);
	return r;
}

/* Text of a uint, "-" when absent. */
static void
uint_text(const cbor_item_t *m, const char *key, char *buf, size_t len)
{
	uint64_t v;

	if (get_uint(m, key, &v))
		snprintf(buf, len, "%llu", (unsigned long long)v);
	else
		snprintf(buf, len, "-");
}

/* The officers list as "a, b"; "-" when none. */
static char *
names_text(const cbor_item_t *list)
{
	size_t len = 2, off = 0, n;
	char *s;

	if (list == NULL || !cbor_isa_array(list) ||
	    (n = cbor_array_size(list)) == 0)
		return strdup("-");
	for (size_t i = 0; i < n; i++) {
		const cbor_item_t *e = cbor_array_handle(list)[i];

		len += cbor_isa_string(e) ? cbor_string_length(e) + 2 : 3;
	}
	if ((s = malloc(len)) == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const cbor_item_t *e = cbor_array_handle(list)[i];

		if (i > 0) {
			memcpy(s + off, ", ", 2);
			off += 2;
		}
		if (cbor_isa_string(e)) {
			memcpy(s + off, cbor_string_handle(e),
			    cbor_string_length(e));
			off += cbor_string_length(e);
		} else
			s[off++] = '?';
	}
	s[off] = '\0';
	return s;
}

int
cmd_partition_show(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "created", "created", KV_TIME },
		{ "secret rotated", "secret rotated", KV_TIME },
		{ NULL, NULL, 0 },
	};
	cbor_item_t *a, *res = NULL, *d = NULL;
	const cbor_item_t *u, *q, *v;
	char line[160], n1[24], n2[24], n3[24];
	char *officers = NULL;
	uint64_t x;
	int r = -1, e = 0;

	if ((a = name_args(inv->args[0], st)) == NULL)
		return -1;
	if (ctx_call(ctx, "partition.show", a, &res, st) != 0)
		goto out;
	if (ctx->output == OUT_JSON) {
		r = out_result(ctx, res, NULL, st);
		goto out;
	}
	if (!cbor_isa_map(res)) {
		hsm_fail(st, "protocol", "the node sent no partition");
		goto out;
	}
	/* Text: one flat list of labelled lines, aligned by out_result. */
	u = hsm_map_get(res, "usage");
	q = hsm_map_get(res, "quorum");
	if ((d = cbor_new_indefinite_map()) == NULL)
		goto oom;
	if ((v = get_text(res, "name")) != NULL)
		e |= put_copy(d, "name", v);
	if ((v = get_text(res, "profile")) != NULL)
		e |= put_copy(d, "profile", v);
	if ((v = hsm_map_get(res, "created")) != NULL && cbor_isa_uint(v))
		e |= put_copy(d, "created", v);
	e |= put_params(d, hsm_map_get(res, "params"));
	if (e != 0)
		goto oom;
	if (u != NULL) {
		uint_text(u, "objects", n1, sizeof(n1));
		if (get_uint(u, "max_key_objects", &x) && x == 0)
			snprintf(n2, sizeof(n2), "unlimited");
		else
			uint_text(u, "max_key_objects", n2, sizeof(n2));
		snprintf(line, sizeof(line), "%s of %s", n1, n2);
		e |= hsm_map_put_str(d, "objects used", line);
		uint_text(u, "bytes", n1, sizeof(n1));
		uint_text(u, "size_mb", n2, sizeof(n2));
		snprintf(line, sizeof(line), "%s bytes of %s MB", n1, n2);
		e |= hsm_map_put_str(d, "storage used", line);
		uint_text(u, "invalidated", n3, sizeof(n3));
		e |= hsm_map_put_str(d, "invalidated", n3);
	}
	if ((officers = names_text(hsm_map_get(res, "officers"))) == NULL)
		goto oom;
	e |= hsm_map_put_str(d, "pso officers", officers);
	if (q != NULL) {
		uint_text(q, "m", n1, sizeof(n1));
		uint_text(q, "n", n2, sizeof(n2));
		snprintf(line, sizeof(line), "%s of %s", n1, n2);
		e |= hsm_map_put_str(d, "pso quorum", line);
	}
	if (get_uint(res, "secret_rotated", &x)) {
		if (x == 0)
			e |= hsm_map_put_str(d, "secret rotated", "never");
		else
			e |= hsm_map_put(d, "secret rotated",
			    cbor_build_uint64(x));
	}
	if (e != 0)
		goto oom;
	r = out_result(ctx, d, labels, st);
	goto out;
oom:
	oom(st);
out:
	free(officers);
	if (d != NULL)
		cbor_decref(&d);
	if (res != NULL)
		cbor_decref(&res);
	cbor_decref(&a);
	return r;
}

static const char *
param_type(const struct hsm_param *p)
{
	switch (p->type) {
	case HSM_PARAM_BOOL:
		return "bool";
	case HSM_PARAM_INT:
		return "int";
	case HSM_PARAM_IPLIST:
		return "ip-list";
	}
	return "?";
}

static const char *
param_values(const struct hsm_param *p)
{
	switch (p->type) {
	case HSM_PARAM_BOOL:
		return "on/off";
	case HSM_PARAM_INT:
		return "integer >= 0";
	case HSM_PARAM_IPLIST:
		return "IPs/CIDRs, comma-separated (empty: any)";
	}
	return "?";
}

static const char *
param_who(const struct hsm_param *p)
{
	if (p->flags & HSM_PARAM_PSO_ONLY)
		return "pso only";
	if (p->flags & HSM_PARAM_COST)
		return "so (cost option)";
	return "so, pso";
}

/* hsm_params[] as rows of {name, type, default, values, who, help}. */
static cbor_item_t *
params_rows(void)
{
	cbor_item_t *rows = cbor_new_indefinite_array(), *m = NULL;

	if (rows == NULL)
		return NULL;
	for (size_t i = 0; i < hsm_nparams; i++) {
		const struct hsm_param *p = &hsm_params[i];
		bool ok;

		if ((m = cbor_new_indefinite_map()) == NULL)
			goto fail;
		if (hsm_map_put_str(m, "name", p->name) != 0 ||
		    hsm_map_put_str(m, "type", param_type(p)) != 0 ||
		    hsm_map_put_str(m, "default", p->dflt) != 0 ||
		    hsm_map_put_str(m, "values", param_values(p)) != 0 ||
		    hsm_map_put_str(m, "who", param_who(p)) != 0 ||
		    hsm_map_put_str(m, "help", p->help) != 0)
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

/* hsm_profiles[] as [{name, help, settings: ["param=value", ...]}]. */
static cbor_item_t *
profile_rows(void)
{
	cbor_item_t *rows = cbor_new_indefinite_array(), *m = NULL, *s = NULL;

	if (rows == NULL)
		return NULL;
	for (size_t i = 0; i < hsm_nprofiles; i++) {
		const struct hsm_profile *p = &hsm_profiles[i];
		bool ok = true;

		if ((m = cbor_new_indefinite_map()) == NULL ||
		    (s = cbor_new_indefinite_array()) == NULL)
			goto fail;
		for (const char *const *x = p->settings; ok && *x != NULL;
		    x++) {
			cbor_item_t *t = cbor_build_string(*x);

			ok = t != NULL && cbor_array_push(s, t);
			if (t != NULL)
				cbor_decref(&t);
		}
		if (!ok || hsm_map_put_str(m, "name", p->name) != 0 ||
		    hsm_map_put_str(m, "help", p->help) != 0) {
			cbor_decref(&s);
			goto fail;
		}
		ok = hsm_map_put(m, "settings", s) == 0;
		s = NULL;
		ok = ok && cbor_array_push(rows, m);
		cbor_decref(&m);
		if (!ok)
			goto fail;
	}
	return rows;
fail:
	if (s != NULL)
		cbor_decref(&s);
	if (m != NULL)
		cbor_decref(&m);
	cbor_decref(&rows);
	return NULL;
}

/* Profiles as text: name and meaning, then what it sets, indented. */
static void
print_profiles(const struct ctx *ctx)
{
	int w = (int)strlen("PROFILE");

	for (size_t i = 0; i < hsm_nprofiles; i++)
		if ((int)strlen(hsm_profiles[i].name) > w)
			w = (int)strlen(hsm_profiles[i].name);
	printf("\n%s%-*s  %s%s\n", ctx->color ? "\033[1m" : "", w, "PROFILE",
	    "MEANING (partition create --profile NAME)",
	    ctx->color ? "\033[0m" : "");
	for (size_t i = 0; i < hsm_nprofiles; i++) {
		const struct hsm_profile *p = &hsm_profiles[i];

		printf("%-*s  %s\n", w, p->name, p->help);
		if (p->settings[0] == NULL)
			continue;
		printf("%-*s  sets", w, "");
		for (const char *const *x = p->settings; *x != NULL; x++)
			printf(" %s", *x);
		printf("\n");
	}
}

int
cmd_partition_params(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label cols[] = {
		{ "name", "NAME", KV_PLAIN },
		{ "type", "TYPE", KV_PLAIN },
		{ "default", "DEFAULT", KV_PLAIN },
		{ "values", "VALUES", KV_PLAIN },
		{ "who", "WHO", KV_PLAIN },
		{ "help", "MEANING", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	cbor_item_t *rows = params_rows(), *profiles = NULL, *doc = NULL;
	int r = -1;

	(void)inv;
	if (rows == NULL)
		return oom(st);
	if (ctx->output == OUT_TEXT) {
		if ((r = out_table(ctx, rows, cols, st)) == 0)
			print_profiles(ctx);
		goto out;
	}
	if ((profiles = profile_rows()) == NULL ||
	    (doc = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put(doc, "parameters", cbor_incref(rows)) != 0 ||
	    hsm_map_put(doc, "profiles", cbor_incref(profiles)) != 0) {
		oom(st);
		goto out;
	}
	r = out_result(ctx, doc, NULL, st);
out:
	if (doc != NULL)
		cbor_decref(&doc);
	if (profiles != NULL)
		cbor_decref(&profiles);
	cbor_decref(&rows);
	return r;
}

int
cmd_partition_get(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	const struct hsm_param *p;
	const cbor_item_t *v;
	cbor_item_t *a, *res = NULL;
	int r = -1;

	if (check_partition(inv->args[0], st) != 0 ||
	    (p = check_param(inv->args[1], strlen(inv->args[1]), st)) == NULL)
		return -1;
	if ((a = name_args(inv->args[0], st)) == NULL)
		return -1;
	if (hsm_map_put_str(a, "param", p->name) != 0) {
		oom(st);
		goto out;
	}
	if (ctx_call(ctx, "partition.get", a, &res, st) != 0)
		goto out;
	if (ctx->output == OUT_JSON) {
		r = out_result(ctx, res, NULL, st);
		goto out;
	}
	if ((v = get_text(res, "value")) == NULL) {
		hsm_fail(st, "protocol", "the node sent no value");
		goto out;
	}
	/* Just the value, for $(...); "" for an empty ip-acl. */
	for (size_t i = 0; i < cbor_string_length(v); i++) {
		unsigned char c = cbor_string_handle(v)[i];

		putchar(c < 0x20 || c == 0x7f ? '?' : c);
	}
	putchar('\n');
	r = 0;
out:
	if (res != NULL)
		cbor_decref(&res);
	cbor_decref(&a);
	return r;
}

int
cmd_partition_set(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	cbor_item_t *a, *params = NULL, *res = NULL;
	const cbor_item_t *ch;
	int r = -1;

	if ((a = name_args(inv->args[0], st)) == NULL)
		return -1;
	if ((params = param_pairs(inv, 1, st)) == NULL)
		goto out;
	if (hsm_map_put(a, "params", cbor_incref(params)) != 0) {
		oom(st);
		goto out;
	}
	if (ctx_call(ctx, "partition.set", a, &res, st) != 0)
		goto out;
	if (ctx->output == OUT_JSON) {
		r = out_result(ctx, res, NULL, st);
		goto out;
	}
	if ((ch = hsm_map_get(res, "changed")) == NULL || !cbor_isa_map(ch)) {
		hsm_fail(st, "protocol", "the node sent no changes");
		goto out;
	}
	if (cbor_map_size(ch) == 0) {
		if (!ctx->quiet)
			printf("nothing changed: every value was already "
			    "set\n");
		r = 0;
	} else {
		cbor_item_t *d = cbor_new_indefinite_map();

		if (d == NULL || put_params(d, ch) != 0)
			oom(st);
		else
			r = out_result(ctx, d, NULL, st);
		if (d != NULL)
			cbor_decref(&d);
	}
out:
	if (res != NULL)
		cbor_decref(&res);
	if (params != NULL)
		cbor_decref(&params);
	cbor_decref(&a);
	return r;
}

int
cmd_partition_delete(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "deleted", "deleted", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	char q[128];
	cbor_item_t *a;
	int r = -1;

	if ((a = name_args(inv->args[0], st)) == NULL)
		return -1;
	if (inv_opt(inv, "force") != NULL &&
	    hsm_map_put_bool(a, "force", true) != 0) {
		oom(st);
		goto out;
	}
	/* Recording it for an approval deletes nothing: no question then. */
	snprintf(q, sizeof(q), "Delete partition %s and all its keys? [y/N] ",
	    inv->args[0]);
	if (!ctx->capture && !ask_yes(ctx, q, st))
		goto out;
	r = call_and_show(ctx, "partition.delete", a, labels, st);
out:
	cbor_decref(&a);
	return r;
}

/*
 * The secret as the node sent it: printable ASCII without spaces, so it
 * can go into a file, a terminal or JSON as is.
 */
static int
check_secret(const cbor_item_t *v, hsm_status *st)
{
	size_t n;

	if (v == NULL || (n = cbor_string_length(v)) == 0)
		return hsm_fail(st, "protocol", "the node sent no secret");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = cbor_string_handle(v)[i];

		if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
			return hsm_fail(st, "protocol", "the node sent a "
			    "secret that is not printable text");
	}
	return 0;
}

int
cmd_partition_secret(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	const char *out = inv_opt(inv, "out");
	cbor_item_t *a, *res = NULL;
	const cbor_item_t *sec = NULL, *name;
	int fd = -1, r = -1;
	bool made = false;

	if ((a = name_args(inv->args[0], st)) == NULL)
		return -1;
	if (out != NULL && *out == '\0') {
		hsm_fail(st, "bad_value", "--out needs a file name");
		goto done;
	}
	/*
	 * The file first: an existing one is refused before the secret is
	 * rotated (a rotated secret that cannot be kept is lost).  Not when
	 * only recording the request for an approval.
	 */
	if (out != NULL && !ctx->capture) {
		fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
		    O_NOCTTY | O_NOFOLLOW, 0600);
		if (fd < 0) {
			if (errno == EEXIST)
				hsm_fail(st, "conflict", "%s already exists; "
				    "refusing to overwrite it", out);
			else
				hsm_fail(st, "io", "%s: %s", out,
				    strerror(errno));
			goto done;
		}
		made = true;
		/* The umask may only take bits away; make sure of 0600. */
		if (fchmod(fd, 0600) != 0) {
			hsm_fail(st, "io", "%s: chmod: %s", out,
			    strerror(errno));
			goto done;
		}
	}
	if (ctx_call(ctx, "partition.secret", a, &res, st) != 0)
		goto done;
	sec = get_text(res, "secret");
	if (check_secret(sec, st) != 0)
		goto done;
	name = get_text(res, "name");
	if (fd >= 0) {
		if (hsm_write_all(fd, cbor_string_handle(sec),
		    cbor_string_length(sec)) != 0 ||
		    hsm_write_all(fd, (const unsigned char *)"\n", 1) != 0 ||
		    fsync(fd) != 0 || close(fd) != 0) {
			hsm_fail(st, "io", "%s: %s; the secret was rotated "
			    "but not kept: rotate it again", out,
			    strerror(errno));
			fd = -1;
			goto done;
		}
		fd = -1;
		made = false;	/* it is the secret now: keep it */
		if (ctx->output == OUT_JSON) {
			json_t *j = json_pack("{s:s%,s:s}", "name",
			    name != NULL ? (const char *)cbor_string_handle(name)
			    : inv->args[0], name != NULL ?
			    cbor_string_length(name) : strlen(inv->args[0]),
			    "out", out);
			char *s = j != NULL ? json_dumps(j, JSON_COMPACT |
			    JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII) : NULL;

			if (s != NULL)
				printf("%s\n", s);
			free(s);
			json_decref(j);
		} else if (!ctx->quiet)
			printf("wrote the new secret to %s\n", out);
		r = 0;
		goto done;
	}
	/*
	 * On stdout, written straight from the received buffer (no copies to
	 * wipe); JSON by hand for the same reason: the secret needs no
	 * escaping (check_secret).
	 */
	if (!ctx->quiet)
		fprintf(stderr, "hsmctl: the new API secret of partition %s "
		    "follows; it is shown only this once\n", inv->args[0]);
	if (ctx->output == OUT_JSON) {
		json_t *j = json_stringn(name != NULL ?
		    (const char *)cbor_string_handle(name) : inv->args[0],
		    name != NULL ? cbor_string_length(name) :
		    strlen(inv->args[0]));
		char *s = j != NULL ? json_dumps(j, JSON_ENCODE_ANY |
		    JSON_ENSURE_ASCII) : NULL;

		if (s == NULL) {
			json_decref(j);
			oom(st);
			goto done;
		}
		printf("{\"name\":%s,\"secret\":\"", s);
		free(s);
		json_decref(j);
	}
	fwrite(cbor_string_handle(sec), 1, cbor_string_length(sec), stdout);
	fputs(ctx->output == OUT_JSON ? "\"}\n" : "\n", stdout);
	fflush(stdout);
	r = 0;
done:
	if (fd >= 0)
		(void)close(fd);
	if (made)
		(void)unlink(out);
	if (sec != NULL)
		OPENSSL_cleanse(cbor_string_handle(sec),
		    cbor_string_length(sec));
	if (res != NULL)
		cbor_decref(&res);
	cbor_decref(&a);
	return r;
}
