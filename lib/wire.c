/*
 * Wire codec: 4-byte big-endian length + one CBOR map (DESIGN §3).
 *
 * Decoding is two passes.  The first walks the bytes with libcbor's
 * streaming decoder and checks the shape (definite lengths, no tags,
 * bounded depth, element counts that the remaining bytes can hold, a
 * bounded item count) without allocating; only then does cbor_load()
 * build the tree.  That keeps a hostile header announcing 2^64 elements,
 * or a million nested arrays, from reaching libcbor's allocator or the
 * recursive cbor_decref().  The second pass checks map keys and UTF-8.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsmctl.h"

/* Enough for any request or response we send; a bound on decoder memory. */
#define HSM_ITEMS_MAX 262144

struct shape {
	size_t left[HSM_DEPTH_MAX + 1];	/* items still owed per open level */
	int depth;
	size_t items;
	size_t avail;			/* bytes after the current item */
	const char *err;		/* first problem found */
	bool done;			/* the top-level item is complete */
};

/* One item ended: pay it to the enclosing containers. */
static void
shape_item(struct shape *s)
{
	if (s->err != NULL)
		return;
	if (s->done) {
		s->err = "trailing bytes after the item";
		return;
	}
	if (++s->items > HSM_ITEMS_MAX) {
		s->err = "too many items";
		return;
	}
	while (s->depth > 0) {
		if (--s->left[s->depth] > 0)
			return;
		s->depth--;	/* that container is complete: it is an item too */
	}
	s->done = true;
}

static void
shape_open(struct shape *s, uint64_t n, uint64_t per)
{
	if (s->err != NULL)
		return;
	/* An empty container nests too: check depth before it completes. */
	if (s->depth >= HSM_DEPTH_MAX) {
		s->err = "nesting too deep";
		return;
	}
	if (n == 0) {
		shape_item(s);
		return;
	}
	/* Each element takes at least one byte. */
	if (n > s->avail / per) {
		s->err = "container larger than the frame";
		return;
	}
	if (s->done) {
		s->err = "trailing bytes after the item";
		return;
	}
	if (++s->items > HSM_ITEMS_MAX) {
		s->err = "too many items";
		return;
	}
	s->left[++s->depth] = n * per;
}

static void cb_u8(void *c, uint8_t v) { (void)v; shape_item(c); }
static void cb_u16(void *c, uint16_t v) { (void)v; shape_item(c); }
static void cb_u32(void *c, uint32_t v) { (void)v; shape_item(c); }
static void cb_u64(void *c, uint64_t v) { (void)v; shape_item(c); }
static void cb_str(void *c, cbor_data d, size_t n) { (void)d; (void)n; shape_item(c); }
static void cb_simple(void *c) { shape_item(c); }
static void cb_bool(void *c, bool v) { (void)v; shape_item(c); }
static void cb_f32(void *c, float v) { (void)v; shape_item(c); }
static void cb_f64(void *c, double v) { (void)v; shape_item(c); }
static void cb_array(void *c, size_t n) { shape_open(c, n, 1); }
static void cb_map(void *c, size_t n) { shape_open(c, n, 2); }

static void
cb_indef(void *c)
{
	struct shape *s = c;

	if (s->err == NULL)
		s->err = "indefinite-length item";
}

static void
cb_tag(void *c, uint64_t v)
{
	struct shape *s = c;

	(void)v;
	if (s->err == NULL)
		s->err = "tagged item";
}

static const struct cbor_callbacks shape_callbacks = {
	.uint8 = cb_u8, .uint16 = cb_u16, .uint32 = cb_u32, .uint64 = cb_u64,
	.negint8 = cb_u8, .negint16 = cb_u16, .negint32 = cb_u32,
	.negint64 = cb_u64,
	.byte_string = cb_str, .byte_string_start = cb_indef,
	.string = cb_str, .string_start = cb_indef,
	.array_start = cb_array, .indef_array_start = cb_indef,
	.map_start = cb_map, .indef_map_start = cb_indef,
	.tag = cb_tag,
	.float2 = cb_f32, .float4 = cb_f32, .float8 = cb_f64,
	.undefined = cb_simple, .null = cb_simple, .boolean = cb_bool,
	.indef_break = cb_indef,
};

static int
check_shape(const unsigned char *buf, size_t len, hsm_status *st)
{
	struct shape s;
	size_t off = 0;

	memset(&s, 0, sizeof(s));
	if (len == 0)
		return hsm_fail(st, "bad_frame", "empty frame");
	while (off < len && s.err == NULL) {
		struct cbor_decoder_result r;

		s.avail = len - off;	/* an upper bound until r.read is known */
		r = cbor_stream_decode(buf + off, len - off, &shape_callbacks, &s);
		if (r.status == CBOR_DECODER_NEDATA)
			return hsm_fail(st, "bad_frame",
			    "truncated CBOR at byte %zu", off);
		if (r.status != CBOR_DECODER_FINISHED || r.read == 0)
			return hsm_fail(st, "bad_frame",
			    "malformed CBOR at byte %zu", off);
		off += r.read;
		s.avail = len - off;
		/* Callbacks ran before avail was known: recheck the bound. */
		if (s.err == NULL && s.depth > 0 &&
		    s.left[s.depth] > s.avail)
			s.err = "container larger than the frame";
	}
	if (s.err != NULL)
		return hsm_fail(st, "bad_frame", "%s at byte %zu", s.err, off);
	if (!s.done)
		return hsm_fail(st, "bad_frame", "truncated CBOR item");
	return 0;
}

bool
hsm_utf8_valid(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = p[i];
		size_t k;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			k = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3;
			cp = c & 0x07;
		} else
			return false;
		if (n - i <= k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + j] & 0x3f);
		}
		/* Overlong forms, surrogates and values past U+10FFFF. */
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) ||
		    (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

static int
key_cmp(const void *a, const void *b)
{
	const cbor_item_t *ka = ((const struct cbor_pair *)a)->key;
	const cbor_item_t *kb = ((const struct cbor_pair *)b)->key;
	size_t la = cbor_string_length(ka), lb = cbor_string_length(kb);

	if (la != lb)
		return la < lb ? -1 : 1;
	return memcmp(cbor_string_handle(ka), cbor_string_handle(kb), la);
}

/* Depth is bounded by check_shape(), so recursion is too. */
static int
check_items(const cbor_item_t *it, hsm_status *st)
{
	switch (cbor_typeof(it)) {
	case CBOR_TYPE_STRING:
		if (!hsm_utf8_valid(cbor_string_handle(it), cbor_string_length(it)))
			return hsm_fail(st, "bad_frame", "invalid UTF-8 text");
		return 0;
	case CBOR_TYPE_ARRAY: {
		cbor_item_t **h = cbor_array_handle(it);

		for (size_t i = 0; i < cbor_array_size(it); i++)
			if (check_items(h[i], st) != 0)
				return -1;
		return 0;
	}
	case CBOR_TYPE_MAP: {
		size_t n = cbor_map_size(it);
		struct cbor_pair *h = cbor_map_handle(it), *sorted;
		int r = -1;

		for (size_t i = 0; i < n; i++) {
			if (!cbor_isa_string(h[i].key))
				return hsm_fail(st, "bad_frame",
				    "map key is not a text string");
			if (check_items(h[i].key, st) != 0 ||
			    check_items(h[i].value, st) != 0)
				return -1;
		}
		if (n < 2)
			return 0;
		if ((sorted = calloc(n, sizeof(*sorted))) == NULL)
			return hsm_fail(st, "no_memory", "out of memory");
		memcpy(sorted, h, n * sizeof(*sorted));
		qsort(sorted, n, sizeof(*sorted), key_cmp);
		for (size_t i = 1; i < n; i++)
			if (key_cmp(&sorted[i - 1], &sorted[i]) == 0) {
				hsm_fail(st, "bad_frame", "duplicate map key");
				goto out;
			}
		r = 0;
out:
		free(sorted);
		return r;
	}
	default:
		return 0;
	}
}

int
hsm_cbor_decode(const unsigned char *buf, size_t len, cbor_item_t **out,
    hsm_status *st)
{
	struct cbor_load_result res;
	cbor_item_t *it;

	*out = NULL;
	if (len > HSM_FRAME_MAX)
		return hsm_fail(st, "bad_frame", "frame of %zu bytes exceeds "
		    "the %u byte limit", len, HSM_FRAME_MAX);
	if (check_shape(buf, len, st) != 0)
		return -1;
	memset(&res, 0, sizeof(res));
	if ((it = cbor_load(buf, len, &res)) == NULL) {
		if (res.error.code == CBOR_ERR_MEMERROR)
			return hsm_fail(st, "no_memory", "out of memory");
		return hsm_fail(st, "bad_frame", "malformed CBOR at byte %zu",
		    res.error.position);
	}
	if (res.read != len) {
		cbor_decref(&it);
		return hsm_fail(st, "bad_frame", "trailing bytes after the item");
	}
	if (check_items(it, st) != 0) {
		cbor_decref(&it);
		return -1;
	}
	*out = it;
	return 0;
}

int
hsm_frame_length(const unsigned char hdr[4], size_t *len, hsm_status *st)
{
	uint32_t n = ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) |
	    ((uint32_t)hdr[2] << 8) | hdr[3];

	*len = n;
	if (n == 0)
		return hsm_fail(st, "bad_frame", "empty frame");
	if (n > HSM_FRAME_MAX)
		return hsm_fail(st, "bad_frame", "frame of %u bytes exceeds "
		    "the %u byte limit", n, HSM_FRAME_MAX);
	return 0;
}

/*
 * Builders use indefinite maps and arrays so they can grow; the wire
 * carries only definite lengths.  Make a definite copy sharing leaves.
 */
static cbor_item_t *
definite(cbor_item_t *it, int depth)
{
	cbor_item_t *out = NULL, *c = NULL, *k = NULL;

	/* Containers nest at most HSM_DEPTH_MAX deep, as in check_shape(). */
	if (depth > HSM_DEPTH_MAX &&
	    (cbor_isa_array(it) || cbor_isa_map(it)))
		return NULL;
	switch (cbor_typeof(it)) {
	case CBOR_TYPE_ARRAY: {
		cbor_item_t **h = cbor_array_handle(it);
		size_t n = cbor_array_size(it);

		if ((out = cbor_new_definite_array(n)) == NULL)
			return NULL;
		for (size_t i = 0; i < n; i++) {
			if ((c = definite(h[i], depth + 1)) == NULL ||
			    !cbor_array_push(out, c))
				goto fail;
			cbor_decref(&c);
			c = NULL;	/* decref only clears it when freed */
		}
		return out;
	}
	case CBOR_TYPE_MAP: {
		struct cbor_pair *h = cbor_map_handle(it);
		size_t n = cbor_map_size(it);

		if ((out = cbor_new_definite_map(n)) == NULL)
			return NULL;
		for (size_t i = 0; i < n; i++) {
			if ((k = definite(h[i].key, depth + 1)) == NULL ||
			    (c = definite(h[i].value, depth + 1)) == NULL ||
			    !cbor_map_add(out, (struct cbor_pair){ k, c }))
				goto fail;
			cbor_decref(&k);
			cbor_decref(&c);
			k = c = NULL;	/* out owns them now */
		}
		return out;
	}
	case CBOR_TYPE_TAG:
		return NULL;
	case CBOR_TYPE_STRING:
	case CBOR_TYPE_BYTESTRING:
		if (!cbor_isa_string(it) ? !cbor_bytestring_is_definite(it) :
		    !cbor_string_is_definite(it))
			return NULL;
		return cbor_incref(it);
	default:
		return cbor_incref(it);
	}
fail:
	if (k != NULL)
		cbor_decref(&k);
	if (c != NULL)
		cbor_decref(&c);
	cbor_decref(&out);
	return NULL;
}

/* Bytes of a CBOR head carrying v. */
static size_t
head_size(uint64_t v)
{
	return v < 24 ? 1 : v <= UINT8_MAX ? 2 : v <= UINT16_MAX ? 3 :
	    v <= UINT32_MAX ? 5 : 9;
}

/*
 * The encoded size of a definite item, so that it is serialised once
 * into a buffer of the right size: cbor_serialize_alloc() grows its
 * buffer by copying, which for a 4 MiB backup piece is most of the
 * work.  0 for anything it does not know (the caller then lets libcbor
 * find out).
 */
static size_t
encoded_size(const cbor_item_t *it, int depth)
{
	size_t n = 0, m;

	if (depth > HSM_DEPTH_MAX + 1)
		return 0;
	switch (cbor_typeof(it)) {
	case CBOR_TYPE_UINT:
	case CBOR_TYPE_NEGINT:
		/* libcbor writes an integer in the width it was built with. */
		switch (cbor_int_get_width(it)) {
		case CBOR_INT_8:
			return cbor_get_uint8(it) < 24 ? 1 : 2;
		case CBOR_INT_16:
			return 3;
		case CBOR_INT_32:
			return 5;
		case CBOR_INT_64:
			return 9;
		}
		return 0;
	case CBOR_TYPE_BYTESTRING:
		return head_size(cbor_bytestring_length(it)) +
		    cbor_bytestring_length(it);
	case CBOR_TYPE_STRING:
		return head_size(cbor_string_length(it)) +
		    cbor_string_length(it);
	case CBOR_TYPE_ARRAY:
		n = head_size(cbor_array_size(it));
		for (size_t i = 0; i < cbor_array_size(it); i++) {
			if ((m = encoded_size(cbor_array_handle(it)[i],
			    depth + 1)) == 0)
				return 0;
			n += m;
		}
		return n;
	case CBOR_TYPE_MAP:
		n = head_size(cbor_map_size(it));
		for (size_t i = 0; i < cbor_map_size(it); i++) {
			size_t k = encoded_size(cbor_map_handle(it)[i].key,
			    depth + 1);

			if (k == 0 || (m = encoded_size(
			    cbor_map_handle(it)[i].value, depth + 1)) == 0)
				return 0;
			n += k + m;
		}
		return n;
	case CBOR_TYPE_FLOAT_CTRL:
		switch (cbor_float_get_width(it)) {
		case CBOR_FLOAT_0:
			return head_size(cbor_ctrl_value(it));
		case CBOR_FLOAT_16:
			return 3;
		case CBOR_FLOAT_32:
			return 5;
		case CBOR_FLOAT_64:
			return 9;
		}
		return 0;
	default:
		return 0;
	}
}

/*
 * item, definite, serialised after `pre` bytes of a new buffer: *out,
 * *n bytes of CBOR.
 */
static int
encode_after(const cbor_item_t *item, size_t pre, unsigned char **out,
    size_t *n, hsm_status *st)
{
	cbor_item_t *d;
	unsigned char *body = NULL, *buf = NULL;
	size_t cap = 0, want;

	*out = NULL;
	*n = 0;
	/* definite() only takes references; the input is not modified. */
	if ((d = definite((cbor_item_t *)(uintptr_t)item, 1)) == NULL)
		return hsm_fail(st, "internal", "cannot encode item");
	if ((want = encoded_size(d, 1)) > 0 && want <= HSM_FRAME_MAX &&
	    (buf = malloc(pre + want)) != NULL &&
	    (*n = cbor_serialize(d, buf + pre, want)) == want) {
		cbor_decref(&d);
		*out = buf;
		return 0;
	}
	free(buf);
	*n = cbor_serialize_alloc(d, &body, &cap);
	cbor_decref(&d);
	if (*n == 0) {
		free(body);
		return hsm_fail(st, "no_memory", "cannot serialise item");
	}
	if (*n > HSM_FRAME_MAX) {
		free(body);
		return hsm_fail(st, "bad_frame", "frame of %zu bytes exceeds "
		    "the %u byte limit", *n, HSM_FRAME_MAX);
	}
	if ((buf = malloc(pre + *n)) == NULL) {
		free(body);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	memcpy(buf + pre, body, *n);
	free(body);
	*out = buf;
	return 0;
}

int
hsm_frame_encode(const cbor_item_t *item, unsigned char **out, size_t *outlen,
    hsm_status *st)
{
	unsigned char *frame;
	size_t n;

	*out = NULL;
	*outlen = 0;
	if (encode_after(item, 4, &frame, &n, st) != 0)
		return -1;
	if (n > HSM_FRAME_MAX) {
		free(frame);
		return hsm_fail(st, "bad_frame", "frame of %zu bytes exceeds "
		    "the %u byte limit", n, HSM_FRAME_MAX);
	}
	frame[0] = (unsigned char)(n >> 24);
	frame[1] = (unsigned char)(n >> 16);
	frame[2] = (unsigned char)(n >> 8);
	frame[3] = (unsigned char)n;
	*out = frame;
	*outlen = n + 4;
	return 0;
}

int
hsm_cbor_encode(const cbor_item_t *item, unsigned char **out, size_t *outlen,
    hsm_status *st)
{
	size_t n;

	/* The same bytes as on the wire, without the length prefix. */
	if (encode_after(item, 0, out, &n, st) != 0)
		return -1;
	if (n > HSM_FRAME_MAX) {
		free(*out);
		*out = NULL;
		return hsm_fail(st, "bad_frame", "item of %zu bytes exceeds "
		    "the %u byte limit", n, HSM_FRAME_MAX);
	}
	*outlen = n;
	return 0;
}

bool
hsm_cbor_is_bool(const cbor_item_t *it)
{
	return cbor_isa_float_ctrl(it) &&
	    cbor_float_get_width(it) == CBOR_FLOAT_0 && cbor_is_bool(it);
}

bool
hsm_cbor_is_null(const cbor_item_t *it)
{
	return cbor_isa_float_ctrl(it) &&
	    cbor_float_get_width(it) == CBOR_FLOAT_0 &&
	    (cbor_is_null(it) || cbor_is_undef(it));
}

/* ---- maps ---- */

cbor_item_t *
hsm_map_get(const cbor_item_t *map, const char *key)
{
	size_t kl = strlen(key);
	struct cbor_pair *h;

	if (map == NULL || !cbor_isa_map(map))
		return NULL;
	h = cbor_map_handle(map);
	for (size_t i = 0; i < cbor_map_size(map); i++) {
		if (!cbor_isa_string(h[i].key) ||
		    !cbor_string_is_definite(h[i].key) ||
		    cbor_string_length(h[i].key) != kl)
			continue;
		if (memcmp(cbor_string_handle(h[i].key), key, kl) == 0)
			return h[i].value;
	}
	return NULL;
}

int
hsm_map_put(cbor_item_t *map, const char *key, cbor_item_t *value)
{
	cbor_item_t *k;
	bool ok;

	if (value == NULL)
		return -1;
	if ((k = cbor_build_string(key)) == NULL) {
		cbor_decref(&value);
		return -1;
	}
	ok = cbor_map_add(map, (struct cbor_pair){ k, value });
	cbor_decref(&k);
	cbor_decref(&value);
	return ok ? 0 : -1;
}

int
hsm_map_put_str(cbor_item_t *map, const char *key, const char *value)
{
	return hsm_map_put(map, key, cbor_build_string(value));
}

/* The smallest encoding: counters are mostly tiny. */
static cbor_item_t *
build_uint(uint64_t v)
{
	if (v <= UINT8_MAX)
		return cbor_build_uint8((uint8_t)v);
	if (v <= UINT16_MAX)
		return cbor_build_uint16((uint16_t)v);
	if (v <= UINT32_MAX)
		return cbor_build_uint32((uint32_t)v);
	return cbor_build_uint64(v);
}

int
hsm_map_put_uint(cbor_item_t *map, const char *key, uint64_t value)
{
	return hsm_map_put(map, key, build_uint(value));
}

int
hsm_map_put_bool(cbor_item_t *map, const char *key, bool value)
{
	return hsm_map_put(map, key, cbor_build_bool(value));
}

/* ---- typed field access for the envelope ---- */

static int
get_uint(const cbor_item_t *map, const char *key, uint64_t *v, const char *code,
    hsm_status *st)
{
	const cbor_item_t *it = hsm_map_get(map, key);

	if (it == NULL)
		return hsm_fail(st, code, "missing field '%s'", key);
	if (!cbor_isa_uint(it))
		return hsm_fail(st, code, "field '%s' is not an unsigned "
		    "integer", key);
	*v = cbor_get_int(it);
	return 0;
}

static int
get_text(const cbor_item_t *map, const char *key, char *buf, size_t buflen,
    const char *code, hsm_status *st)
{
	const cbor_item_t *it = hsm_map_get(map, key);
	size_t n;

	if (it == NULL)
		return hsm_fail(st, code, "missing field '%s'", key);
	if (!cbor_isa_string(it))
		return hsm_fail(st, code, "field '%s' is not a text string",
		    key);
	n = cbor_string_length(it);
	if (n >= buflen)
		return hsm_fail(st, code, "field '%s' is too long", key);
	memcpy(buf, cbor_string_handle(it), n);
	buf[n] = '\0';
	if (memchr(buf, '\0', n) != NULL)
		return hsm_fail(st, code, "field '%s' contains NUL", key);
	return 0;
}

/* Reject keys outside the allowed set: a typo must not pass silently. */
static int
only_keys(const cbor_item_t *map, const char *const *allowed, const char *code,
    hsm_status *st)
{
	struct cbor_pair *h = cbor_map_handle(map);

	for (size_t i = 0; i < cbor_map_size(map); i++) {
		size_t kl = cbor_string_length(h[i].key);
		bool found = false;

		for (size_t j = 0; allowed[j] != NULL && !found; j++)
			found = strlen(allowed[j]) == kl &&
			    memcmp(allowed[j], cbor_string_handle(h[i].key),
			    kl) == 0;
		if (!found)
			return hsm_fail(st, code, "unexpected field '%.*s'",
			    (int)(kl > 32 ? 32 : kl),
			    (const char *)cbor_string_handle(h[i].key));
	}
	return 0;
}

static bool
op_name_valid(const char *op)
{
	if (*op == '\0')
		return false;
	for (const char *p = op; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '.' || *p == '_' || *p == '-'))
			return false;
	return true;
}

int
hsm_request_decode(const unsigned char *payload, size_t len,
    struct hsm_request *req, hsm_status *st)
{
	static const char *const keys[] = { "v", "id", "op", "args", NULL };
	cbor_item_t *top = NULL, *args;
	uint64_t v;

	memset(req, 0, sizeof(*req));
	if (hsm_cbor_decode(payload, len, &top, st) != 0)
		return -1;
	if (!cbor_isa_map(top)) {
		hsm_fail(st, "bad_request", "request is not a map");
		goto fail;
	}
	/* The id first, so later errors can be answered under it. */
	if (get_uint(top, "id", &req->id, "bad_request", st) != 0 ||
	    only_keys(top, keys, "bad_request", st) != 0 ||
	    get_uint(top, "v", &v, "bad_request", st) != 0)
		goto fail;
	if (v != HSM_PROTOCOL_VERSION) {
		hsm_fail(st, "bad_request", "unsupported protocol version "
		    "%llu (this node speaks %d)", (unsigned long long)v,
		    HSM_PROTOCOL_VERSION);
		goto fail;
	}
	if (get_text(top, "op", req->op, sizeof(req->op), "bad_request",
	    st) != 0)
		goto fail;
	if (!op_name_valid(req->op)) {
		hsm_fail(st, "bad_request", "invalid op name");
		goto fail;
	}
	if ((args = hsm_map_get(top, "args")) == NULL) {
		hsm_fail(st, "bad_request", "missing field 'args'");
		goto fail;
	}
	if (!cbor_isa_map(args)) {
		hsm_fail(st, "bad_request", "field 'args' is not a map");
		goto fail;
	}
	req->args = cbor_incref(args);
	cbor_decref(&top);
	return 0;
fail:
	if (top != NULL)
		cbor_decref(&top);
	req->op[0] = '\0';
	return -1;
}

void
hsm_request_clear(struct hsm_request *req)
{
	if (req == NULL)
		return;
	if (req->args != NULL)
		cbor_decref(&req->args);
	memset(req, 0, sizeof(*req));
}

int
hsm_request_encode(uint64_t id, const char *op, const cbor_item_t *args,
    unsigned char **out, size_t *outlen, hsm_status *st)
{
	cbor_item_t *m, *a;
	int r = -1;

	*out = NULL;
	*outlen = 0;
	if (strlen(op) > HSM_OP_MAX || !op_name_valid(op))
		return hsm_fail(st, "internal", "invalid op name");
	if (args != NULL && !cbor_isa_map(args))
		return hsm_fail(st, "internal", "request args must be a map");
	if ((m = cbor_new_indefinite_map()) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	a = args != NULL ? cbor_incref((cbor_item_t *)(uintptr_t)args) :
	    cbor_new_indefinite_map();
	if (hsm_map_put_uint(m, "v", HSM_PROTOCOL_VERSION) != 0 ||
	    hsm_map_put_uint(m, "id", id) != 0 ||
	    hsm_map_put_str(m, "op", op) != 0 ||
	    hsm_map_put(m, "args", a) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = hsm_frame_encode(m, out, outlen, st);
out:
	cbor_decref(&m);
	return r;
}

int
hsm_response_decode(const unsigned char *payload, size_t len,
    struct hsm_response *resp, hsm_status *st)
{
	static const char *const okkeys[] = { "id", "ok", "result", NULL };
	static const char *const errkeys[] = { "id", "ok", "error", NULL };
	static const char *const ekeys[] = { "code", "message", NULL };
	cbor_item_t *top = NULL, *ok, *v;

	memset(resp, 0, sizeof(*resp));
	if (hsm_cbor_decode(payload, len, &top, st) != 0) {
		/* A node that sends bad CBOR is a protocol fault. */
		if (st != NULL)
			snprintf(st->code, sizeof(st->code), "protocol");
		return -1;
	}
	if (!cbor_isa_map(top)) {
		hsm_fail(st, "protocol", "response is not a map");
		goto fail;
	}
	if (get_uint(top, "id", &resp->id, "protocol", st) != 0)
		goto fail;
	if ((ok = hsm_map_get(top, "ok")) == NULL || !hsm_cbor_is_bool(ok)) {
		hsm_fail(st, "protocol", "field 'ok' missing or not a boolean");
		goto fail;
	}
	resp->ok = cbor_get_bool(ok);
	if (only_keys(top, resp->ok ? okkeys : errkeys, "protocol", st) != 0)
		goto fail;
	if (resp->ok) {
		if ((v = hsm_map_get(top, "result")) == NULL) {
			hsm_fail(st, "protocol", "missing field 'result'");
			goto fail;
		}
		resp->result = cbor_incref(v);
	} else {
		if ((v = hsm_map_get(top, "error")) == NULL ||
		    !cbor_isa_map(v)) {
			hsm_fail(st, "protocol", "field 'error' missing or "
			    "not a map");
			goto fail;
		}
		if (only_keys(v, ekeys, "protocol", st) != 0 ||
		    get_text(v, "code", resp->code, sizeof(resp->code),
		    "protocol", st) != 0 ||
		    get_text(v, "message", resp->message,
		    sizeof(resp->message), "protocol", st) != 0)
			goto fail;
		if (resp->code[0] == '\0') {
			hsm_fail(st, "protocol", "empty error code");
			goto fail;
		}
	}
	cbor_decref(&top);
	return 0;
fail:
	if (top != NULL)
		cbor_decref(&top);
	hsm_response_clear(resp);
	return -1;
}

void
hsm_response_clear(struct hsm_response *resp)
{
	if (resp == NULL)
		return;
	if (resp->result != NULL)
		cbor_decref(&resp->result);
	memset(resp, 0, sizeof(*resp));
}

static int
encode_response(uint64_t id, bool ok, const char *key, cbor_item_t *val,
    unsigned char **out, size_t *outlen, hsm_status *st)
{
	cbor_item_t *m;
	int r = -1;

	*out = NULL;
	*outlen = 0;
	if ((m = cbor_new_indefinite_map()) == NULL) {
		if (val != NULL)
			cbor_decref(&val);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	if (hsm_map_put_uint(m, "id", id) != 0 ||
	    hsm_map_put_bool(m, "ok", ok) != 0 ||
	    hsm_map_put(m, key, val) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = hsm_frame_encode(m, out, outlen, st);
out:
	cbor_decref(&m);
	return r;
}

int
hsm_response_encode_ok(uint64_t id, const cbor_item_t *result,
    unsigned char **out, size_t *outlen, hsm_status *st)
{
	cbor_item_t *v = result != NULL ?
	    cbor_incref((cbor_item_t *)(uintptr_t)result) : cbor_new_null();

	return encode_response(id, true, "result", v, out, outlen, st);
}

int
hsm_response_encode_error(uint64_t id, const char *code, const char *message,
    unsigned char **out, size_t *outlen, hsm_status *st)
{
	cbor_item_t *e;
	size_t cl = strlen(code), ml = strlen(message);

	/* Keep within what every client accepts (struct hsm_response). */
	if (cl >= HSM_CODE_MAX)
		cl = HSM_CODE_MAX - 1;
	if (ml >= HSM_MSG_MAX) {
		ml = HSM_MSG_MAX - 1;
		while (ml > 0 && ((unsigned char)message[ml] & 0xc0) == 0x80)
			ml--;	/* never cut a UTF-8 sequence */
	}
	if ((e = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put(e, "code", cbor_build_stringn(code, cl)) != 0 ||
	    hsm_map_put(e, "message", cbor_build_stringn(message, ml)) != 0) {
		if (e != NULL)
			cbor_decref(&e);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	return encode_response(id, false, "error", e, out, outlen, st);
}
