/*
 * Rendering: -o json prints exactly one JSON document per command on
 * stdout (jansson, compact, so that batch output is JSON Lines); text
 * prints aligned key/value pairs.  Errors go to stderr in text mode and
 * to stdout as {"error":{...}} in JSON mode.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "cmd.h"

#define JSON_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII)

static json_t *
bytes_to_json(const unsigned char *p, size_t n)
{
	char *b64;
	json_t *j;

	if (n > 64 * 1024 * 1024)
		return NULL;
	if ((b64 = malloc(4 * ((n + 2) / 3) + 1)) == NULL)
		return NULL;
	EVP_EncodeBlock((unsigned char *)b64, p, (int)n);
	j = json_string(b64);
	free(b64);
	return j;
}

/* Depth is bounded by the wire decoder (HSM_DEPTH_MAX). */
json_t *
out_cbor_to_json(const cbor_item_t *it)
{
	json_t *j = NULL;

	switch (cbor_typeof(it)) {
	case CBOR_TYPE_UINT:
		return json_integer((json_int_t)cbor_get_int(it));
	case CBOR_TYPE_NEGINT:
		return json_integer(-1 - (json_int_t)cbor_get_int(it));
	case CBOR_TYPE_STRING:
		return json_stringn((const char *)cbor_string_handle(it),
		    cbor_string_length(it));
	case CBOR_TYPE_BYTESTRING:
		return bytes_to_json(cbor_bytestring_handle(it),
		    cbor_bytestring_length(it));
	case CBOR_TYPE_ARRAY: {
		cbor_item_t **h = cbor_array_handle(it);

		if ((j = json_array()) == NULL)
			return NULL;
		for (size_t i = 0; i < cbor_array_size(it); i++)
			if (json_array_append_new(j,
			    out_cbor_to_json(h[i])) != 0)
				goto fail;
		return j;
	}
	case CBOR_TYPE_MAP: {
		struct cbor_pair *h = cbor_map_handle(it);

		if ((j = json_object()) == NULL)
			return NULL;
		for (size_t i = 0; i < cbor_map_size(it); i++) {
			char key[256];
			size_t kl;

			if (!cbor_isa_string(h[i].key))
				goto fail;
			kl = cbor_string_length(h[i].key);
			if (kl >= sizeof(key))
				goto fail;
			memcpy(key, cbor_string_handle(h[i].key), kl);
			key[kl] = '\0';
			if (json_object_set_new(j, key,
			    out_cbor_to_json(h[i].value)) != 0)
				goto fail;
		}
		return j;
	}
	case CBOR_TYPE_FLOAT_CTRL:
		if (hsm_cbor_is_bool(it))
			return json_boolean(cbor_get_bool(it));
		if (hsm_cbor_is_null(it))
			return json_null();
		if (cbor_float_get_width(it) == CBOR_FLOAT_0)
			return json_null();	/* other simple values */
		return json_real(cbor_float_get_float(it));
	default:
		return NULL;
	}
fail:
	json_decref(j);
	return NULL;
}

static void
print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_FLAGS);

	if (s != NULL) {
		fputs(s, stdout);
		fputc('\n', stdout);
		free(s);
	}
}

int
out_error(const struct ctx *ctx, const hsm_status *st)
{
	int status = hsm_code_exit(st->code);

	if (status == HSM_EXIT_OK)
		status = HSM_EXIT_NODE;
	if (ctx != NULL && ctx->output == OUT_JSON) {
		json_t *j;

		/* In a batch, the line it failed on: {"line":N,"error":...}. */
		if (ctx->lineno > 0)
			j = json_pack("{s:I,s:{s:s,s:s}}", "line",
			    (json_int_t)ctx->lineno, "error", "code", st->code,
			    "message", st->message);
		else
			j = json_pack("{s:{s:s,s:s}}", "error", "code",
			    st->code, "message", st->message);
		if (j != NULL) {
			print_json(j);
			json_decref(j);
		}
	} else if (ctx != NULL && ctx->lineno > 0)
		fprintf(stderr, "%s:%zu: %s\n", ctx->source ? ctx->source :
		    "-", ctx->lineno, st->message);
	else
		fprintf(stderr, "hsmctl: %s\n", st->message);
	fflush(stdout);
	return status;
}

static void
format_duration(uint64_t s, char *buf, size_t len)
{
	uint64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;

	if (d > 0)
		snprintf(buf, len, "%llud %lluh %llum", (unsigned long long)d,
		    (unsigned long long)h, (unsigned long long)m);
	else if (h > 0)
		snprintf(buf, len, "%lluh %llum %llus", (unsigned long long)h,
		    (unsigned long long)m, (unsigned long long)(s % 60));
	else if (m > 0)
		snprintf(buf, len, "%llum %llus", (unsigned long long)m,
		    (unsigned long long)(s % 60));
	else
		snprintf(buf, len, "%llus", (unsigned long long)s);
}

/* A scalar as text; containers as compact JSON. */
static char *
value_text(const cbor_item_t *v, int format)
{
	char buf[64];
	json_t *j;
	char *s;

	if (cbor_isa_string(v))
		return strndup((const char *)cbor_string_handle(v),
		    cbor_string_length(v));
	if (cbor_isa_uint(v)) {
		if (format == KV_DURATION)
			format_duration(cbor_get_int(v), buf, sizeof(buf));
		else if (format == KV_TIME) {
			time_t t = (time_t)cbor_get_int(v);
			struct tm tm;

			if (t == 0)
				return strdup("-");
			gmtime_r(&t, &tm);
			strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%SZ", &tm);
		}
		else
			snprintf(buf, sizeof(buf), "%llu",
			    (unsigned long long)cbor_get_int(v));
		return strdup(buf);
	}
	if (hsm_cbor_is_bool(v))
		return strdup(cbor_get_bool(v) ? "yes" : "no");
	if (hsm_cbor_is_null(v))
		return strdup("-");
	if ((j = out_cbor_to_json(v)) == NULL)
		return strdup("?");
	s = json_dumps(j, JSON_FLAGS | JSON_ENCODE_ANY);
	json_decref(j);
	return s;
}

static const struct kv_label *
find_label(const struct kv_label *labels, const char *key, size_t kl)
{
	for (const struct kv_label *l = labels; l != NULL && l->key != NULL;
	    l++)
		if (strlen(l->key) == kl && strncmp(l->key, key, kl) == 0)
			return l;
	return NULL;
}

int
out_result(const struct ctx *ctx, const cbor_item_t *result,
    const struct kv_label *labels, hsm_status *st)
{
	struct cbor_pair *h;
	size_t width = 0, n;

	if (ctx->output == OUT_JSON) {
		json_t *j = out_cbor_to_json(result);

		if (j == NULL)
			return hsm_fail(st, "protocol", "result cannot be "
			    "shown as JSON");
		print_json(j);
		json_decref(j);
		return 0;
	}
	if (!cbor_isa_map(result)) {
		char *s = value_text(result, KV_PLAIN);

		printf("%s\n", s ? s : "?");
		free(s);
		return 0;
	}
	h = cbor_map_handle(result);
	n = cbor_map_size(result);
	for (size_t i = 0; i < n; i++) {
		const struct kv_label *l = find_label(labels,
		    (const char *)cbor_string_handle(h[i].key),
		    cbor_string_length(h[i].key));
		size_t w = l ? strlen(l->label) : cbor_string_length(h[i].key);

		if (w > width)
			width = w;
	}
	for (size_t i = 0; i < n; i++) {
		const char *k = (const char *)cbor_string_handle(h[i].key);
		size_t kl = cbor_string_length(h[i].key);
		const struct kv_label *l = find_label(labels, k, kl);
		char *v = value_text(h[i].value, l ? l->format : KV_PLAIN);

		if (v != NULL && *v == '\0') {
			free(v);
			v = strdup("-");
		}

		/* Node strings are shown as data, never as terminal control. */
		for (char *p = v; p != NULL && *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
		if (l != NULL)
			printf("%s%-*s%s  %s\n", ctx->color ? "\033[1m" : "",
			    (int)width, l->label, ctx->color ? "\033[0m" : "",
			    v ? v : "?");
		else
			printf("%s%-*.*s%s  %s\n", ctx->color ? "\033[1m" : "",
			    (int)width, (int)kl, k, ctx->color ? "\033[0m" : "",
			    v ? v : "?");
		free(v);
	}
	return 0;
}

void
out_verbose(const struct ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	if (ctx->verbose <= 0)
		return;
	fprintf(stderr, "hsmctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Text of one cell, made printable. */
static char *
cell(const cbor_item_t *row, const struct kv_label *c)
{
	const cbor_item_t *v = hsm_map_get(row, c->key);
	char *t = v != NULL ? value_text(v, c->format) : strdup("");

	for (char *p = t; p != NULL && *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (t != NULL && *t == '\0') {
		free(t);
		t = strdup("-");
	}
	return t;
}

int
out_table(const struct ctx *ctx, const cbor_item_t *rows,
    const struct kv_label *cols, hsm_status *st)
{
	size_t ncols = 0, nrows, w[32];

	if (ctx->output == OUT_JSON) {
		json_t *j = out_cbor_to_json(rows);

		if (j == NULL)
			return hsm_fail(st, "protocol", "result cannot be "
			    "shown as JSON");
		print_json(j);
		json_decref(j);
		return 0;
	}
	if (!cbor_isa_array(rows))
		return hsm_fail(st, "protocol", "the node sent no list");
	while (cols[ncols].key != NULL && ncols < 32)
		ncols++;
	nrows = cbor_array_size(rows);
	for (size_t c = 0; c < ncols; c++)
		w[c] = strlen(cols[c].label);
	for (size_t r = 0; r < nrows; r++)
		for (size_t c = 0; c < ncols; c++) {
			char *t = cell(cbor_array_handle(rows)[r], &cols[c]);

			if (t != NULL && strlen(t) > w[c])
				w[c] = strlen(t);
			free(t);
		}
	for (size_t c = 0; c < ncols; c++)
		printf("%s%-*s%s%s", ctx->color ? "\033[1m" : "",
		    c + 1 < ncols ? (int)w[c] : 0, cols[c].label,
		    ctx->color ? "\033[0m" : "", c + 1 < ncols ? "  " : "\n");
	for (size_t r = 0; r < nrows; r++)
		for (size_t c = 0; c < ncols; c++) {
			char *t = cell(cbor_array_handle(rows)[r], &cols[c]);

			printf("%-*s%s", c + 1 < ncols ? (int)w[c] : 0,
			    t != NULL ? t : "?", c + 1 < ncols ? "  " : "\n");
			free(t);
		}
	if (nrows == 0 && !ctx->quiet)
		printf("(none)\n");
	return 0;
}
