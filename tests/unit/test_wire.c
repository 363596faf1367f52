/*
 * Unit tests for lib/wire.c: frames, strict CBOR decoding, the request
 * and response envelopes and the map helpers.  Malformed input is built
 * byte by byte here on purpose.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsmctl.h"

/* wire.c's private bound on decoded items (HSM_ITEMS_MAX). */
#define ITEMS_MAX 262144

/* needle may list alternatives: "one|other". */
static bool
contains_any(const char *hay, const char *needle)
{
	char buf[256];
	char *p, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", needle);
	if (buf[0] == '\0')
		return true;
	for (p = strtok_r(buf, "|", &save); p != NULL;
	    p = strtok_r(NULL, "|", &save))
		if (strstr(hay, p) != NULL)
			return true;
	return false;
}

#define assert_contains(hay, needle) do {				\
	const char *h_ = (hay), *n_ = (needle);				\
	if (!contains_any(h_, n_)) {					\
		print_error("\"%s\" does not contain \"%s\"\n", h_, n_);\
		fail();							\
	}								\
} while (0)

/* A byte array and its size, as two function arguments. */
#define BYTES(...) (const unsigned char[]){ __VA_ARGS__ },		\
	sizeof((const unsigned char[]){ __VA_ARGS__ })

/* ---- a growing byte buffer for hand-made CBOR ---- */

struct bb {
	unsigned char *p;
	size_t n, cap;
};

static void
bb_raw(struct bb *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = b->cap != 0 ? b->cap : 64;

		while (cap < b->n + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		assert_non_null(b->p);
		b->cap = cap;
	}
	if (n != 0)
		memcpy(b->p + b->n, d, n);
	b->n += n;
}

static void
bb_byte(struct bb *b, unsigned char c)
{
	bb_raw(b, &c, 1);
}

/* Shortest head for major type `major` and argument v. */
static void
bb_head(struct bb *b, unsigned major, uint64_t v)
{
	unsigned char h[9];
	size_t k;

	major <<= 5;
	if (v < 24) {
		bb_byte(b, (unsigned char)(major | v));
		return;
	}
	if (v <= 0xff) {
		h[0] = (unsigned char)(major | 24);
		k = 1;
	} else if (v <= 0xffff) {
		h[0] = (unsigned char)(major | 25);
		k = 2;
	} else if (v <= 0xffffffffu) {
		h[0] = (unsigned char)(major | 26);
		k = 4;
	} else {
		h[0] = (unsigned char)(major | 27);
		k = 8;
	}
	for (size_t i = 0; i < k; i++)
		h[1 + i] = (unsigned char)(v >> (8 * (k - 1 - i)));
	bb_raw(b, h, k + 1);
}

static void
bb_textn(struct bb *b, const char *s, size_t n)
{
	bb_head(b, 3, n);
	bb_raw(b, s, n);
}

static void
bb_text(struct bb *b, const char *s)
{
	bb_textn(b, s, strlen(s));
}

static void
bb_free(struct bb *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* A definite map of text keys whose values are given as raw CBOR. */
struct field {
	const char *key;
	const unsigned char *val;
	size_t len;
};

#define FIELD(k, ...) { (k), BYTES(__VA_ARGS__) }

static void
bb_map(struct bb *b, const struct field *f, size_t n)
{
	bb_head(b, 5, n);
	for (size_t i = 0; i < n; i++) {
		bb_text(b, f[i].key);
		bb_raw(b, f[i].val, f[i].len);
	}
}

/* Build a map from fields and hand it to check(payload, len, msg). */
#define MAP_CHECK(check, msg, ...) do {					\
	const struct field f_[] = { __VA_ARGS__ };			\
	struct bb b_ = { 0 };						\
	bb_map(&b_, f_, sizeof(f_) / sizeof(f_[0]));			\
	check(b_.p, b_.n, (msg));					\
	bb_free(&b_);							\
} while (0)

/* The fields of a good request and of good responses. */
#define F_V	FIELD("v", 0x01)
#define F_ID	FIELD("id", 0x07)
#define F_OP	FIELD("op", 0x69, 'n', 'o', 'd', 'e', '.', 'i', 'n', 'f', 'o')
#define F_ARGS	FIELD("args", 0xa0)
#define R_ID	FIELD("id", 0x07)
#define R_OK	FIELD("ok", 0xf5)
#define R_NOK	FIELD("ok", 0xf4)
#define R_RES	FIELD("result", 0x01)
#define R_ERR	FIELD("error", 0xa2,					\
	0x64, 'c', 'o', 'd', 'e',					\
	0x69, 'r', 'e', 'a', 'd', '_', 'o', 'n', 'l', 'y',		\
	0x67, 'm', 'e', 's', 's', 'a', 'g', 'e', 0x62, 'n', 'o')

/* ---- checkers ---- */

static bool
contains_bytes(const unsigned char *p, size_t n, const unsigned char *w,
    size_t wn)
{
	for (size_t i = 0; i + wn <= n; i++)
		if (memcmp(p + i, w, wn) == 0)
			return true;
	return false;
}

/* Something an output pointer is set to, to see that it gets reset. */
static cbor_item_t not_null_item;

/* A CBOR-level fault: every decoder refuses it with the same message. */
static void
frame_fail(const unsigned char *p, size_t n, const char *msg)
{
	hsm_status st;
	cbor_item_t *it = &not_null_item;	/* must be reset to NULL */
	struct hsm_request req;
	struct hsm_response resp;

	hsm_status_clear(&st);
	assert_int_equal(hsm_cbor_decode(p, n, &it, &st), -1);
	assert_null(it);
	assert_string_equal(st.code, "bad_frame");
	assert_contains(st.message, msg);

	hsm_status_clear(&st);
	memset(&req, 0xa5, sizeof(req));
	assert_int_equal(hsm_request_decode(p, n, &req, &st), -1);
	assert_string_equal(st.code, "bad_frame");
	assert_contains(st.message, msg);
	assert_null(req.args);
	assert_string_equal(req.op, "");

	/* A node that sends bad CBOR is a protocol fault. */
	hsm_status_clear(&st);
	memset(&resp, 0xa5, sizeof(resp));
	assert_int_equal(hsm_response_decode(p, n, &resp, &st), -1);
	assert_string_equal(st.code, "protocol");
	assert_contains(st.message, msg);
	assert_null(resp.result);
	assert_string_equal(resp.code, "");
}

/* Good CBOR, good for hsm_cbor_decode(). */
static void
cbor_ok(const unsigned char *p, size_t n)
{
	hsm_status st;
	cbor_item_t *it = NULL;

	hsm_status_clear(&st);
	assert_int_equal(hsm_cbor_decode(p, n, &it, &st), 0);
	assert_non_null(it);
	assert_string_equal(st.code, "");
	cbor_decref(&it);
}

/* Good CBOR, but not a good request. */
static void
req_fail(const unsigned char *p, size_t n, const char *msg)
{
	hsm_status st;
	struct hsm_request req;

	cbor_ok(p, n);
	hsm_status_clear(&st);
	memset(&req, 0xa5, sizeof(req));
	assert_int_equal(hsm_request_decode(p, n, &req, &st), -1);
	assert_string_equal(st.code, "bad_request");
	assert_contains(st.message, msg);
	assert_null(req.args);
	assert_string_equal(req.op, "");
}

/* Good CBOR, but not a good response. */
static void
resp_fail(const unsigned char *p, size_t n, const char *msg)
{
	hsm_status st;
	struct hsm_response resp;

	cbor_ok(p, n);
	hsm_status_clear(&st);
	memset(&resp, 0xa5, sizeof(resp));
	assert_int_equal(hsm_response_decode(p, n, &resp, &st), -1);
	assert_string_equal(st.code, "protocol");
	assert_contains(st.message, msg);
	assert_null(resp.result);
	assert_string_equal(resp.code, "");
	assert_string_equal(resp.message, "");
}

/* {"v":1,"id":7,"op":"node.info","args":{}} as built by the F_* fields. */
static void
req_ok_node_info(const unsigned char *p, size_t n, const char *unused)
{
	hsm_status st;
	struct hsm_request req;

	(void)unused;
	hsm_status_clear(&st);
	assert_int_equal(hsm_request_decode(p, n, &req, &st), 0);
	assert_int_equal(req.id, 7);
	assert_string_equal(req.op, "node.info");
	assert_non_null(req.args);
	assert_true(cbor_isa_map(req.args));
	assert_int_equal(cbor_map_size(req.args), 0);
	hsm_request_clear(&req);
	assert_null(req.args);
	assert_int_equal(req.id, 0);
}

static void
resp_ok_result1(const unsigned char *p, size_t n, const char *unused)
{
	hsm_status st;
	struct hsm_response resp;

	(void)unused;
	hsm_status_clear(&st);
	assert_int_equal(hsm_response_decode(p, n, &resp, &st), 0);
	assert_int_equal(resp.id, 7);
	assert_true(resp.ok);
	assert_non_null(resp.result);
	assert_true(cbor_isa_uint(resp.result));
	assert_int_equal(cbor_get_int(resp.result), 1);
	assert_string_equal(resp.code, "");
	hsm_response_clear(&resp);
	assert_null(resp.result);
}

static void
resp_ok_error(const unsigned char *p, size_t n, const char *unused)
{
	hsm_status st;
	struct hsm_response resp;

	(void)unused;
	hsm_status_clear(&st);
	assert_int_equal(hsm_response_decode(p, n, &resp, &st), 0);
	assert_int_equal(resp.id, 7);
	assert_false(resp.ok);
	assert_null(resp.result);
	assert_string_equal(resp.code, "read_only");
	assert_string_equal(resp.message, "no");
	hsm_response_clear(&resp);
}

/* Payload (without the 4-byte header) of an encoded frame, checked. */
static void
check_header(const unsigned char *frame, size_t framelen)
{
	hsm_status st;
	size_t n = 0;

	assert_true(framelen > 4);
	assert_int_equal(hsm_frame_length(frame, &n, &st), 0);
	assert_int_equal(n, framelen - 4);
}

/* ---- hsm_frame_length ---- */

static void
test_frame_length(void **state)
{
	hsm_status st;
	size_t n;

	(void)state;
	hsm_status_clear(&st);
	n = 99;
	assert_int_equal(hsm_frame_length((const unsigned char[]){ 0, 0, 0, 0 },
	    &n, &st), -1);
	assert_int_equal(n, 0);
	assert_string_equal(st.code, "bad_frame");
	assert_string_equal(st.message, "empty frame");

	hsm_status_clear(&st);
	assert_int_equal(hsm_frame_length((const unsigned char[]){ 0, 0, 0, 1 },
	    &n, &st), 0);
	assert_int_equal(n, 1);
	assert_string_equal(st.code, "");

	/* Big-endian: the first byte is the most significant. */
	assert_int_equal(hsm_frame_length((const unsigned char[]){ 0, 1, 2, 3 },
	    &n, &st), 0);
	assert_int_equal(n, 0x010203);

	assert_int_equal(hsm_frame_length((const unsigned char[]){ 1, 0, 0, 0 },
	    &n, &st), 0);
	assert_int_equal(n, HSM_FRAME_MAX);
	assert_int_equal(n, 16777216);

	assert_int_equal(hsm_frame_length((const unsigned char[]){ 1, 0, 0, 1 },
	    &n, &st), -1);
	assert_int_equal(n, HSM_FRAME_MAX + 1u);
	assert_string_equal(st.code, "bad_frame");
	assert_string_equal(st.message,
	    "frame of 16777217 bytes exceeds the 16777216 byte limit");

	hsm_status_clear(&st);
	assert_int_equal(hsm_frame_length(
	    (const unsigned char[]){ 0xff, 0xff, 0xff, 0xff }, &n, &st), -1);
	assert_int_equal(n, 0xffffffffu);
	assert_string_equal(st.code, "bad_frame");
	assert_string_equal(st.message,
	    "frame of 4294967295 bytes exceeds the 16777216 byte limit");

	/* A NULL status is allowed. */
	assert_int_equal(hsm_frame_length(
	    (const unsigned char[]){ 0xff, 0, 0, 0 }, &n, NULL), -1);
}

/* ---- requests ---- */

static void
test_request_roundtrip(void **state)
{
	hsm_status st;
	struct hsm_request req;
	cbor_item_t *args, *tags, *v;
	unsigned char *out = (unsigned char *)&st;
	size_t outlen = 99;

	(void)state;
	args = cbor_new_indefinite_map();
	assert_non_null(args);
	assert_int_equal(hsm_map_put_str(args, "name", "p1"), 0);
	assert_int_equal(hsm_map_put_uint(args, "quota", 1000), 0);
	assert_int_equal(hsm_map_put_bool(args, "ro", false), 0);
	tags = cbor_new_indefinite_array();
	assert_true(cbor_array_push(tags, cbor_move(cbor_build_string("a"))));
	assert_true(cbor_array_push(tags, cbor_move(cbor_build_string("b"))));
	assert_int_equal(hsm_map_put(args, "tags", tags), 0);

	hsm_status_clear(&st);
	assert_int_equal(hsm_request_encode(42, "partition.set", args, &out,
	    &outlen, &st), 0);
	assert_string_equal(st.code, "");
	/* args is not consumed nor changed. */
	assert_int_equal(cbor_refcount(args), 1);
	assert_true(cbor_map_is_indefinite(args));
	assert_int_equal(cbor_map_size(args), 4);
	check_header(out, outlen);

	assert_int_equal(hsm_request_decode(out + 4, outlen - 4, &req, &st), 0);
	assert_int_equal(req.id, 42);
	assert_string_equal(req.op, "partition.set");
	assert_true(cbor_isa_map(req.args));
	assert_true(cbor_map_is_definite(req.args));
	assert_int_equal(cbor_map_size(req.args), 4);
	v = hsm_map_get(req.args, "name");
	assert_non_null(v);
	assert_true(cbor_isa_string(v));
	assert_int_equal(cbor_string_length(v), 2);
	assert_memory_equal(cbor_string_handle(v), "p1", 2);
	v = hsm_map_get(req.args, "quota");
	assert_non_null(v);
	assert_true(cbor_isa_uint(v));
	assert_int_equal(cbor_get_int(v), 1000);
	v = hsm_map_get(req.args, "ro");
	assert_non_null(v);
	assert_true(cbor_is_bool(v));
	assert_false(cbor_get_bool(v));
	v = hsm_map_get(req.args, "tags");
	assert_non_null(v);
	assert_true(cbor_isa_array(v));
	assert_true(cbor_array_is_definite(v));
	assert_int_equal(cbor_array_size(v), 2);
	assert_memory_equal(cbor_string_handle(cbor_array_handle(v)[1]),
	    "b", 1);
	/* A request is not a response. */
	{
		struct hsm_response resp;

		assert_int_equal(hsm_response_decode(out + 4, outlen - 4,
		    &resp, &st), -1);
		assert_string_equal(st.code, "protocol");
		assert_string_equal(st.message,
		    "field 'ok' missing or not a boolean");
	}
	hsm_request_clear(&req);
	assert_null(req.args);
	assert_string_equal(req.op, "");
	hsm_request_clear(NULL);
	free(out);
	cbor_decref(&args);
}

/* The builders use indefinite containers; the wire carries definite ones. */
static void
test_request_encode_definite(void **state)
{
	hsm_status st;
	cbor_item_t *args, *arr, *top = NULL;
	unsigned char *out;
	size_t outlen;
	struct hsm_request req;
	static const unsigned char want[] = {
		0x64, 'a', 'r', 'g', 's', 0xa1, 0x61, 'x', 0x82, 0x01, 0x02,
	};

	(void)state;
	args = cbor_new_indefinite_map();
	arr = cbor_new_indefinite_array();
	assert_true(cbor_array_push(arr, cbor_move(cbor_build_uint8(1))));
	assert_true(cbor_array_push(arr, cbor_move(cbor_build_uint8(2))));
	assert_int_equal(hsm_map_put(args, "x", arr), 0);
	assert_int_equal(hsm_request_encode(1, "a", args, &out, &outlen, &st),
	    0);
	/* A definite map of four pairs ... */
	assert_int_equal(out[4], 0xa4);
	/* ... whose args are a definite map holding a definite array. */
	assert_true(contains_bytes(out + 4, outlen - 4, want, sizeof(want)));
	/* No indefinite-length start or break byte anywhere. */
	assert_null(memchr(out + 4, 0xbf, outlen - 4));
	assert_null(memchr(out + 4, 0x9f, outlen - 4));
	assert_null(memchr(out + 4, 0xff, outlen - 4));
	/* The strict decoder, which refuses indefinite lengths, accepts it. */
	assert_int_equal(hsm_cbor_decode(out + 4, outlen - 4, &top, &st), 0);
	assert_true(cbor_map_is_definite(top));
	assert_int_equal(cbor_map_size(top), 4);
	assert_int_equal(cbor_get_int(hsm_map_get(top, "v")), 1);
	cbor_decref(&top);
	assert_int_equal(hsm_request_decode(out + 4, outlen - 4, &req, &st), 0);
	assert_int_equal(req.id, 1);
	assert_string_equal(req.op, "a");
	hsm_request_clear(&req);
	free(out);
	cbor_decref(&args);
}

static void
test_request_encode_null_args(void **state)
{
	hsm_status st;
	unsigned char *out;
	size_t outlen;
	struct hsm_request req;

	(void)state;
	assert_int_equal(hsm_request_encode(UINT64_MAX, "node.info", NULL, &out,
	    &outlen, &st), 0);
	check_header(out, outlen);
	assert_int_equal(hsm_request_decode(out + 4, outlen - 4, &req, &st), 0);
	assert_true(req.id == UINT64_MAX);
	assert_string_equal(req.op, "node.info");
	assert_true(cbor_isa_map(req.args));
	assert_int_equal(cbor_map_size(req.args), 0);
	hsm_request_clear(&req);
	free(out);
}

static void
test_request_encode_rejects(void **state)
{
	hsm_status st;
	unsigned char *out = (unsigned char *)&st;
	size_t outlen = 99;
	cbor_item_t *arr;
	char op[HSM_OP_MAX + 2];

	(void)state;
	hsm_status_clear(&st);
	assert_int_equal(hsm_request_encode(1, "Bad Op", NULL, &out, &outlen,
	    &st), -1);
	assert_null(out);
	assert_int_equal(outlen, 0);
	assert_string_equal(st.code, "internal");
	assert_string_equal(st.message, "invalid op name");

	assert_int_equal(hsm_request_encode(1, "", NULL, &out, &outlen, &st),
	    -1);
	assert_string_equal(st.message, "invalid op name");

	memset(op, 'a', sizeof(op));
	op[HSM_OP_MAX + 1] = '\0';	/* 65 characters */
	assert_int_equal(hsm_request_encode(1, op, NULL, &out, &outlen, &st),
	    -1);
	assert_string_equal(st.code, "internal");
	op[HSM_OP_MAX] = '\0';		/* 64 is fine */
	assert_int_equal(hsm_request_encode(1, op, NULL, &out, &outlen, &st),
	    0);
	free(out);

	arr = cbor_new_definite_array(0);
	hsm_status_clear(&st);
	assert_int_equal(hsm_request_encode(1, "a", arr, &out, &outlen, &st),
	    -1);
	assert_null(out);
	assert_string_equal(st.code, "internal");
	assert_string_equal(st.message, "request args must be a map");
	assert_int_equal(cbor_refcount(arr), 1);
	cbor_decref(&arr);
}

static void
test_request_good_fields(void **state)
{
	(void)state;
	MAP_CHECK(req_ok_node_info, NULL, F_V, F_ID, F_OP, F_ARGS);
	/* Field order does not matter. */
	MAP_CHECK(req_ok_node_info, NULL, F_ARGS, F_OP, F_ID, F_V);
}

static void
test_request_not_map(void **state)
{
	(void)state;
	req_fail(BYTES(0x80), "request is not a map");
	req_fail(BYTES(0x84, 0x01, 0x07, 0x61, 'a', 0xa0),
	    "request is not a map");
	req_fail(BYTES(0x01), "request is not a map");
	req_fail(BYTES(0x61, 'a'), "request is not a map");
	req_fail(BYTES(0xf6), "request is not a map");
}

static void
test_request_wrong_types(void **state)
{
	const char *vmsg = "field 'v' is not an unsigned integer";
	const char *imsg = "field 'id' is not an unsigned integer";
	const char *omsg = "field 'op' is not a text string";
	const char *amsg = "field 'args' is not a map";

	(void)state;
	MAP_CHECK(req_fail, vmsg, FIELD("v", 0x61, '1'), F_ID, F_OP, F_ARGS);
	MAP_CHECK(req_fail, vmsg, FIELD("v", 0x20), F_ID, F_OP, F_ARGS);
	MAP_CHECK(req_fail, vmsg, FIELD("v", 0xf9, 0x3c, 0x00), F_ID, F_OP,
	    F_ARGS);
	MAP_CHECK(req_fail, vmsg, FIELD("v", 0xf5), F_ID, F_OP, F_ARGS);
	MAP_CHECK(req_fail, vmsg, FIELD("v", 0xf6), F_ID, F_OP, F_ARGS);
	MAP_CHECK(req_fail, vmsg, FIELD("v", 0x41, 0x01), F_ID, F_OP, F_ARGS);

	MAP_CHECK(req_fail, imsg, F_V, FIELD("id", 0x61, '7'), F_OP, F_ARGS);
	MAP_CHECK(req_fail, imsg, F_V, FIELD("id", 0x26), F_OP, F_ARGS);
	MAP_CHECK(req_fail, imsg, F_V, FIELD("id", 0xfb, 0x40, 0x1c, 0, 0, 0,
	    0, 0, 0), F_OP, F_ARGS);
	MAP_CHECK(req_fail, imsg, F_V, FIELD("id", 0x80), F_OP, F_ARGS);
	MAP_CHECK(req_fail, imsg, F_V, FIELD("id", 0xa0), F_OP, F_ARGS);
	MAP_CHECK(req_fail, imsg, F_V, FIELD("id", 0xf4), F_OP, F_ARGS);

	MAP_CHECK(req_fail, omsg, F_V, F_ID, FIELD("op", 0x01), F_ARGS);
	MAP_CHECK(req_fail, omsg, F_V, F_ID, FIELD("op", 0x49, 'n', 'o', 'd',
	    'e', '.', 'i', 'n', 'f', 'o'), F_ARGS);
	MAP_CHECK(req_fail, omsg, F_V, F_ID, FIELD("op", 0x81, 0x61, 'a'),
	    F_ARGS);
	MAP_CHECK(req_fail, omsg, F_V, F_ID, FIELD("op", 0xf6), F_ARGS);

	MAP_CHECK(req_fail, amsg, F_V, F_ID, F_OP, FIELD("args", 0x80));
	MAP_CHECK(req_fail, amsg, F_V, F_ID, F_OP, FIELD("args", 0xf6));
	MAP_CHECK(req_fail, amsg, F_V, F_ID, F_OP, FIELD("args", 0x60));
	MAP_CHECK(req_fail, amsg, F_V, F_ID, F_OP, FIELD("args", 0x00));
	MAP_CHECK(req_fail, amsg, F_V, F_ID, F_OP, FIELD("args", 0x40));
	MAP_CHECK(req_fail, amsg, F_V, F_ID, F_OP,
	    FIELD("args", 0x81, 0xa0));
}

static void
test_request_missing_fields(void **state)
{
	(void)state;
	MAP_CHECK(req_fail, "missing field 'v'", F_ID, F_OP, F_ARGS);
	MAP_CHECK(req_fail, "missing field 'id'", F_V, F_OP, F_ARGS);
	MAP_CHECK(req_fail, "missing field 'op'", F_V, F_ID, F_ARGS);
	MAP_CHECK(req_fail, "missing field 'args'", F_V, F_ID, F_OP);
	req_fail(BYTES(0xa0), "missing field 'id'");
}

static void
test_request_unknown_fields(void **state)
{
	static const char key40[] = "abcdefghijklmnopqrstuvwxyz0123456789ABCD";
	hsm_status st;
	struct hsm_request req;
	struct bb b = { 0 };

	(void)state;
	MAP_CHECK(req_fail, "unexpected field 'x'", F_V, F_ID, F_OP, F_ARGS,
	    FIELD("x", 0x01));
	MAP_CHECK(req_fail, "unexpected field 'V'", FIELD("V", 0x01), F_ID,
	    F_OP, F_ARGS);
	MAP_CHECK(req_fail, "unexpected field 'ok'", F_V, F_ID, F_OP, F_ARGS,
	    FIELD("ok", 0xf5));
	MAP_CHECK(req_fail, "unexpected field ''", F_V, F_ID, F_OP, F_ARGS,
	    FIELD("", 0xf6));

	/* A long unknown key is quoted only up to 32 bytes. */
	bb_head(&b, 5, 5);
	bb_text(&b, "v");
	bb_byte(&b, 0x01);
	bb_text(&b, "id");
	bb_byte(&b, 0x07);
	bb_text(&b, "op");
	bb_text(&b, "x");
	bb_text(&b, "args");
	bb_byte(&b, 0xa0);
	bb_text(&b, key40);
	bb_byte(&b, 0x00);
	assert_int_equal(hsm_request_decode(b.p, b.n, &req, &st), -1);
	assert_string_equal(st.code, "bad_request");
	assert_string_equal(st.message,
	    "unexpected field 'abcdefghijklmnopqrstuvwxyz012345'");
	/* The id was read before the error. */
	assert_int_equal(req.id, 7);
	bb_free(&b);
}

static void
test_request_version(void **state)
{
	(void)state;
	MAP_CHECK(req_fail, "unsupported protocol version 2 "
	    "(this node speaks 1)", FIELD("v", 0x02), F_ID, F_OP, F_ARGS);
	MAP_CHECK(req_fail, "unsupported protocol version 0 ",
	    FIELD("v", 0x00), F_ID, F_OP, F_ARGS);
	MAP_CHECK(req_fail, "unsupported protocol version "
	    "18446744073709551615 ", FIELD("v", 0x1b, 0xff, 0xff, 0xff, 0xff,
	    0xff, 0xff, 0xff, 0xff), F_ID, F_OP, F_ARGS);
}

/* {"v":1,"id":7,"op":OP,"args":{}} with an op of n bytes. */
static void
bb_req_op(struct bb *b, const char *op, size_t n)
{
	bb_head(b, 5, 4);
	bb_text(b, "v");
	bb_byte(b, 0x01);
	bb_text(b, "id");
	bb_byte(b, 0x07);
	bb_text(b, "op");
	bb_textn(b, op, n);
	bb_text(b, "args");
	bb_byte(b, 0xa0);
}

static void
req_op_fail(const char *op, size_t n, const char *msg)
{
	struct bb b = { 0 };
	hsm_status st;
	struct hsm_request req;

	bb_req_op(&b, op, n);
	req_fail(b.p, b.n, msg);
	/* Even a bad op is answered under the request's id. */
	assert_int_equal(hsm_request_decode(b.p, b.n, &req, &st), -1);
	assert_int_equal(req.id, 7);
	assert_null(strchr(st.message, '\n'));
	bb_free(&b);
}

static void
req_op_ok(const char *op, size_t n)
{
	struct bb b = { 0 };
	hsm_status st;
	struct hsm_request req;

	bb_req_op(&b, op, n);
	assert_int_equal(hsm_request_decode(b.p, b.n, &req, &st), 0);
	assert_int_equal(strlen(req.op), n);
	assert_memory_equal(req.op, op, n);
	hsm_request_clear(&req);
	bb_free(&b);
}

static void
test_request_op_names(void **state)
{
	char op[HSM_OP_MAX + 1];

	(void)state;
	req_op_ok("node.info", 9);
	req_op_ok("a-b_c.d9", 8);
	req_op_ok("0", 1);
	req_op_fail("", 0, "invalid op name");
	req_op_fail("Node.info", 9, "invalid op name");
	req_op_fail("node info", 9, "invalid op name");
	req_op_fail("node/info", 9, "invalid op name");
	req_op_fail("node\ninfo", 9, "invalid op name");
	req_op_fail("node;rm", 7, "invalid op name");
	req_op_fail("n\xc3\xa9", 3, "invalid op name");
	req_op_fail("a\0b", 3, "field 'op' contains NUL");

	memset(op, 'a', sizeof(op));
	req_op_ok(op, HSM_OP_MAX);
	req_op_fail(op, HSM_OP_MAX + 1, "field 'op' is too long");
}

/* ---- responses ---- */

static void
check_all_types(const cbor_item_t *r)
{
	const cbor_item_t *v, *a, *m;

	assert_true(cbor_isa_map(r));
	assert_true(cbor_map_is_definite(r));
	assert_int_equal(cbor_map_size(r), 17);

	v = hsm_map_get(r, "u");
	assert_true(cbor_isa_uint(v));
	assert_true(cbor_get_int(v) == UINT64_C(0x100000000));
	v = hsm_map_get(r, "u0");
	assert_true(cbor_isa_uint(v));
	assert_int_equal(cbor_get_int(v), 0);
	v = hsm_map_get(r, "umax");
	assert_true(cbor_isa_uint(v));
	assert_true(cbor_get_int(v) == UINT64_MAX);
	v = hsm_map_get(r, "n");
	assert_true(cbor_isa_negint(v));
	assert_int_equal(cbor_get_int(v), 999);	/* -1000 */
	v = hsm_map_get(r, "nmin");
	assert_true(cbor_isa_negint(v));
	assert_true(cbor_get_int(v) == UINT64_MAX);	/* -2^64 */
	v = hsm_map_get(r, "t");
	assert_true(cbor_isa_string(v));
	assert_int_equal(cbor_string_length(v), 10);
	assert_memory_equal(cbor_string_handle(v), "h\xc3\xa9llo \xe2\x82\xac",
	    10);
	v = hsm_map_get(r, "s");
	assert_true(cbor_isa_string(v));
	assert_int_equal(cbor_string_length(v), 0);
	v = hsm_map_get(r, "b");
	assert_true(cbor_isa_bytestring(v));
	assert_int_equal(cbor_bytestring_length(v), 4);
	/* Bytes need not be UTF-8. */
	assert_memory_equal(cbor_bytestring_handle(v), "\x00\xff\x80\xc0", 4);
	v = hsm_map_get(r, "T");
	assert_true(cbor_is_bool(v));
	assert_true(cbor_get_bool(v));
	v = hsm_map_get(r, "F");
	assert_true(cbor_is_bool(v));
	assert_false(cbor_get_bool(v));
	v = hsm_map_get(r, "z");
	assert_true(cbor_is_null(v));
	v = hsm_map_get(r, "f16");
	assert_true(cbor_is_float(v));
	assert_int_equal(cbor_float_get_width(v), CBOR_FLOAT_16);
	assert_true(cbor_float_get_float(v) == 1.5);
	v = hsm_map_get(r, "f32");
	assert_true(cbor_is_float(v));
	assert_int_equal(cbor_float_get_width(v), CBOR_FLOAT_32);
	assert_true(cbor_float_get_float4(v) == 3.25f);
	v = hsm_map_get(r, "f64");
	assert_true(cbor_is_float(v));
	assert_int_equal(cbor_float_get_width(v), CBOR_FLOAT_64);
	assert_true(cbor_float_get_float8(v) == -0.1);

	a = hsm_map_get(r, "a");
	assert_true(cbor_isa_array(a));
	assert_true(cbor_array_is_definite(a));
	assert_int_equal(cbor_array_size(a), 4);
	assert_int_equal(cbor_get_int(cbor_array_handle(a)[0]), 1);
	assert_true(cbor_isa_string(cbor_array_handle(a)[1]));
	assert_true(cbor_isa_array(cbor_array_handle(a)[2]));
	assert_true(cbor_array_is_definite(cbor_array_handle(a)[2]));
	assert_int_equal(cbor_array_size(cbor_array_handle(a)[2]), 0);
	assert_true(cbor_is_null(hsm_map_get(cbor_array_handle(a)[3], "k")));

	m = hsm_map_get(r, "m");
	m = hsm_map_get(m, "inner");
	a = hsm_map_get(m, "deeper");
	assert_true(cbor_isa_array(a));
	assert_int_equal(cbor_array_size(a), 1);
	assert_true(cbor_get_bool(cbor_array_handle(a)[0]));
	v = hsm_map_get(r, "e");
	assert_true(cbor_isa_map(v));
	assert_true(cbor_map_is_definite(v));
	assert_int_equal(cbor_map_size(v), 0);
}

static cbor_item_t *
build_all_types(void)
{
	cbor_item_t *r = cbor_new_indefinite_map(), *a, *a2, *m, *m2, *m3;

	assert_non_null(r);
	assert_int_equal(hsm_map_put_uint(r, "u", UINT64_C(0x100000000)), 0);
	assert_int_equal(hsm_map_put_uint(r, "u0", 0), 0);
	assert_int_equal(hsm_map_put_uint(r, "umax", UINT64_MAX), 0);
	assert_int_equal(hsm_map_put(r, "n", cbor_build_negint16(999)), 0);
	assert_int_equal(hsm_map_put(r, "nmin", cbor_build_negint64(UINT64_MAX)),
	    0);
	assert_int_equal(hsm_map_put_str(r, "t", "h\xc3\xa9llo \xe2\x82\xac"),
	    0);
	assert_int_equal(hsm_map_put_str(r, "s", ""), 0);
	assert_int_equal(hsm_map_put(r, "b", cbor_build_bytestring(
	    (cbor_data)"\x00\xff\x80\xc0", 4)), 0);
	assert_int_equal(hsm_map_put_bool(r, "T", true), 0);
	assert_int_equal(hsm_map_put_bool(r, "F", false), 0);
	assert_int_equal(hsm_map_put(r, "z", cbor_new_null()), 0);
	assert_int_equal(hsm_map_put(r, "f16", cbor_build_float2(1.5f)), 0);
	assert_int_equal(hsm_map_put(r, "f32", cbor_build_float4(3.25f)), 0);
	assert_int_equal(hsm_map_put(r, "f64", cbor_build_float8(-0.1)), 0);

	a = cbor_new_indefinite_array();
	assert_true(cbor_array_push(a, cbor_move(cbor_build_uint8(1))));
	assert_true(cbor_array_push(a, cbor_move(cbor_build_string("two"))));
	a2 = cbor_new_indefinite_array();
	assert_true(cbor_array_push(a, cbor_move(a2)));
	m = cbor_new_indefinite_map();
	assert_int_equal(hsm_map_put(m, "k", cbor_new_null()), 0);
	assert_true(cbor_array_push(a, cbor_move(m)));
	assert_int_equal(hsm_map_put(r, "a", a), 0);

	a2 = cbor_new_definite_array(1);
	assert_true(cbor_array_push(a2, cbor_move(cbor_build_bool(true))));
	m3 = cbor_new_indefinite_map();
	assert_int_equal(hsm_map_put(m3, "deeper", a2), 0);
	m2 = cbor_new_definite_map(1);
	assert_int_equal(hsm_map_put(m2, "inner", m3), 0);
	assert_int_equal(hsm_map_put(r, "m", m2), 0);
	assert_int_equal(hsm_map_put(r, "e", cbor_new_indefinite_map()), 0);
	return r;
}

static void
test_response_ok_roundtrip(void **state)
{
	hsm_status st;
	struct hsm_response resp;
	cbor_item_t *r = build_all_types(), *top = NULL;
	unsigned char *out;
	size_t outlen;

	(void)state;
	hsm_status_clear(&st);
	assert_int_equal(hsm_response_encode_ok(UINT64_MAX, r, &out, &outlen,
	    &st), 0);
	assert_int_equal(cbor_refcount(r), 1);
	check_header(out, outlen);
	assert_int_equal(out[4], 0xa3);

	assert_int_equal(hsm_cbor_decode(out + 4, outlen - 4, &top, &st), 0);
	assert_int_equal(cbor_map_size(top), 3);
	cbor_decref(&top);

	memset(&resp, 0xa5, sizeof(resp));
	assert_int_equal(hsm_response_decode(out + 4, outlen - 4, &resp, &st),
	    0);
	assert_true(resp.id == UINT64_MAX);
	assert_true(resp.ok);
	assert_string_equal(resp.code, "");
	assert_string_equal(resp.message, "");
	check_all_types(resp.result);

	/* A response is not a request. */
	{
		struct hsm_request req;

		assert_int_equal(hsm_request_decode(out + 4, outlen - 4, &req,
		    &st), -1);
		assert_string_equal(st.code, "bad_request");
		assert_string_equal(st.message, "unexpected field 'ok'");
	}
	hsm_response_clear(&resp);
	assert_null(resp.result);
	hsm_response_clear(NULL);
	free(out);
	cbor_decref(&r);
}

static void
test_response_ok_null_result(void **state)
{
	hsm_status st;
	struct hsm_response resp;
	unsigned char *out;
	size_t outlen;

	(void)state;
	assert_int_equal(hsm_response_encode_ok(0, NULL, &out, &outlen, &st),
	    0);
	/* {"id":0,"ok":true,"result":null}: ends in "result" and null. */
	check_header(out, outlen);
	assert_int_equal(out[4], 0xa3);
	assert_memory_equal(out + outlen - 8, "\x66result\xf6", 8);
	assert_int_equal(hsm_response_decode(out + 4, outlen - 4, &resp, &st),
	    0);
	assert_int_equal(resp.id, 0);
	assert_true(resp.ok);
	assert_non_null(resp.result);
	assert_true(cbor_is_null(resp.result));
	hsm_response_clear(&resp);
	free(out);
}

static void
test_response_error_roundtrip(void **state)
{
	hsm_status st;
	struct hsm_response resp;
	unsigned char *out;
	size_t outlen;
	char msg[HSM_MSG_MAX];

	(void)state;
	assert_int_equal(hsm_response_encode_error(9, "read_only",
	    "partition p1 is read-only", &out, &outlen, &st), 0);
	check_header(out, outlen);
	assert_int_equal(hsm_response_decode(out + 4, outlen - 4, &resp, &st),
	    0);
	assert_int_equal(resp.id, 9);
	assert_false(resp.ok);
	assert_null(resp.result);
	assert_string_equal(resp.code, "read_only");
	assert_string_equal(resp.message, "partition p1 is read-only");
	hsm_response_clear(&resp);
	assert_string_equal(resp.code, "");
	free(out);

	/* The longest code and message that fit. */
	memset(msg, 'm', sizeof(msg));
	msg[HSM_MSG_MAX - 1] = '\0';
	assert_int_equal(hsm_response_encode_error(1,
	    "ccccccccccccccccccccccccccccccccccccccccccccccc", msg, &out,
	    &outlen, &st), 0);
	assert_int_equal(hsm_response_decode(out + 4, outlen - 4, &resp, &st),
	    0);
	assert_int_equal(strlen(resp.code), HSM_CODE_MAX - 1);
	assert_int_equal(strlen(resp.message), HSM_MSG_MAX - 1);
	hsm_response_clear(&resp);
	free(out);
}

static void
test_response_good_fields(void **state)
{
	(void)state;
	MAP_CHECK(resp_ok_result1, NULL, R_ID, R_OK, R_RES);
	MAP_CHECK(resp_ok_result1, NULL, R_RES, R_OK, R_ID);
	MAP_CHECK(resp_ok_error, NULL, R_ID, R_NOK, R_ERR);
	MAP_CHECK(resp_ok_error, NULL, R_ERR, R_ID, R_NOK);
}

/* An error response whose error map holds code and message of given lengths. */
static void
resp_err_lengths(size_t codelen, size_t msglen, const char *fail_msg)
{
	struct bb b = { 0 };
	char *s = malloc(codelen + msglen + 1);
	hsm_status st;
	struct hsm_response resp;

	assert_non_null(s);
	memset(s, 'x', codelen + msglen);
	bb_head(&b, 5, 3);
	bb_text(&b, "id");
	bb_byte(&b, 0x07);
	bb_text(&b, "ok");
	bb_byte(&b, 0xf4);
	bb_text(&b, "error");
	bb_head(&b, 5, 2);
	bb_text(&b, "code");
	bb_textn(&b, s, codelen);
	bb_text(&b, "message");
	bb_textn(&b, s, msglen);
	if (fail_msg != NULL)
		resp_fail(b.p, b.n, fail_msg);
	else {
		assert_int_equal(hsm_response_decode(b.p, b.n, &resp, &st), 0);
		assert_int_equal(strlen(resp.code), codelen);
		assert_int_equal(strlen(resp.message), msglen);
		hsm_response_clear(&resp);
	}
	bb_free(&b);
	free(s);
}

static void
test_response_malformed(void **state)
{
	const char *emsg = "field 'error' missing or not a map";
	const char *okmsg = "field 'ok' missing or not a boolean";

	(void)state;
	resp_fail(BYTES(0x80), "response is not a map");
	resp_fail(BYTES(0xf6), "response is not a map");
	resp_fail(BYTES(0xa0), "missing field 'id'");
	MAP_CHECK(resp_fail, "missing field 'id'", R_OK, R_RES);
	MAP_CHECK(resp_fail, "field 'id' is not an unsigned integer",
	    FIELD("id", 0x20), R_OK, R_RES);
	MAP_CHECK(resp_fail, "field 'id' is not an unsigned integer",
	    FIELD("id", 0x61, '7'), R_OK, R_RES);

	MAP_CHECK(resp_fail, okmsg, R_ID, R_RES);
	MAP_CHECK(resp_fail, okmsg, R_ID, FIELD("ok", 0x01), R_RES);
	MAP_CHECK(resp_fail, okmsg, R_ID, FIELD("ok", 0xf6), R_RES);
	MAP_CHECK(resp_fail, okmsg, R_ID, FIELD("ok", 0x64, 't', 'r', 'u',
	    'e'), R_RES);

	/* ok=true */
	MAP_CHECK(resp_fail, "missing field 'result'", R_ID, R_OK);
	MAP_CHECK(resp_fail, "unexpected field 'error'", R_ID, R_OK, R_RES,
	    R_ERR);
	MAP_CHECK(resp_fail, "unexpected field 'error'", R_ID, R_OK, R_ERR);
	MAP_CHECK(resp_fail, "unexpected field 'x'", R_ID, R_OK, R_RES,
	    FIELD("x", 0x01));
	MAP_CHECK(resp_fail, "unexpected field 'v'", FIELD("v", 0x01), R_ID,
	    R_OK, R_RES);

	/* ok=false with a malformed error */
	MAP_CHECK(resp_fail, "unexpected field 'result'", R_ID, R_NOK, R_RES,
	    R_ERR);
	MAP_CHECK(resp_fail, "unexpected field 'result'", R_ID, R_NOK, R_RES);
	MAP_CHECK(resp_fail, emsg, R_ID, R_NOK);
	MAP_CHECK(resp_fail, emsg, R_ID, R_NOK, FIELD("error", 0xf6));
	MAP_CHECK(resp_fail, emsg, R_ID, R_NOK, FIELD("error", 0x62, 'n',
	    'o'));
	MAP_CHECK(resp_fail, emsg, R_ID, R_NOK, FIELD("error", 0x80));
	MAP_CHECK(resp_fail, "missing field 'code'", R_ID, R_NOK,
	    FIELD("error", 0xa0));
	MAP_CHECK(resp_fail, "missing field 'message'", R_ID, R_NOK,
	    FIELD("error", 0xa1, 0x64, 'c', 'o', 'd', 'e', 0x61, 'x'));
	MAP_CHECK(resp_fail, "missing field 'code'", R_ID, R_NOK,
	    FIELD("error", 0xa1, 0x67, 'm', 'e', 's', 's', 'a', 'g', 'e',
	    0x61, 'x'));
	MAP_CHECK(resp_fail, "field 'code' is not a text string", R_ID, R_NOK,
	    FIELD("error", 0xa2, 0x64, 'c', 'o', 'd', 'e', 0x01,
	    0x67, 'm', 'e', 's', 's', 'a', 'g', 'e', 0x61, 'x'));
	MAP_CHECK(resp_fail, "field 'message' is not a text string", R_ID,
	    R_NOK, FIELD("error", 0xa2, 0x64, 'c', 'o', 'd', 'e', 0x61, 'x',
	    0x67, 'm', 'e', 's', 's', 'a', 'g', 'e', 0x41, 'x'));
	MAP_CHECK(resp_fail, "unexpected field 'detail'", R_ID, R_NOK,
	    FIELD("error", 0xa3, 0x64, 'c', 'o', 'd', 'e', 0x61, 'x',
	    0x67, 'm', 'e', 's', 's', 'a', 'g', 'e', 0x61, 'x',
	    0x66, 'd', 'e', 't', 'a', 'i', 'l', 0xf6));
	MAP_CHECK(resp_fail, "field 'code' contains NUL", R_ID, R_NOK,
	    FIELD("error", 0xa2, 0x64, 'c', 'o', 'd', 'e', 0x62, 'x', 0x00,
	    0x67, 'm', 'e', 's', 's', 'a', 'g', 'e', 0x61, 'x'));
	resp_err_lengths(0, 1, "empty error code");
	resp_err_lengths(HSM_CODE_MAX, 1, "field 'code' is too long");
	resp_err_lengths(HSM_CODE_MAX - 1, 1, NULL);
	resp_err_lengths(1, HSM_MSG_MAX, "field 'message' is too long");
	resp_err_lengths(1, HSM_MSG_MAX - 1, NULL);
	resp_err_lengths(1, 0, NULL);
}

/* ---- frame encoding ---- */

static void
test_frame_encode(void **state)
{
	hsm_status st;
	cbor_item_t *it = cbor_build_uint8(0);
	unsigned char *out;
	size_t outlen;

	(void)state;
	assert_int_equal(hsm_frame_encode(it, &out, &outlen, &st), 0);
	assert_int_equal(outlen, 5);
	assert_memory_equal(out, "\x00\x00\x00\x01\x00", 5);
	free(out);
	cbor_decref(&it);
}

static void
encode_fails(cbor_item_t *it)
{
	hsm_status st;
	unsigned char *out = (unsigned char *)&st;
	size_t outlen = 99;

	hsm_status_clear(&st);
	assert_int_equal(hsm_frame_encode(it, &out, &outlen, &st), -1);
	assert_null(out);
	assert_int_equal(outlen, 0);
	assert_string_equal(st.code, "internal");
	assert_string_equal(st.message, "cannot encode item");
}

static void
test_frame_encode_rejects(void **state)
{
	cbor_item_t *m, *k, *a, *one;

	(void)state;
	/* A tag cannot go on the wire. */
	m = cbor_build_tag(1, cbor_move(cbor_build_uint8(0)));
	encode_fails(m);
	cbor_decref(&m);

	/* A tag after a good element: the partial copy is released. */
	a = cbor_new_indefinite_array();
	assert_true(cbor_array_push(a, cbor_move(cbor_build_uint8(1))));
	assert_true(cbor_array_push(a, cbor_move(cbor_build_tag(1,
	    cbor_move(cbor_build_uint8(0))))));
	encode_fails(a);
	cbor_decref(&a);

	/* A tagged value after a good pair. */
	m = cbor_new_indefinite_map();
	assert_int_equal(hsm_map_put_uint(m, "a", 1), 0);
	assert_int_equal(hsm_map_put(m, "b", cbor_build_tag(1,
	    cbor_move(cbor_build_uint8(0)))), 0);
	encode_fails(m);
	cbor_decref(&m);

	/*
	 * An indefinite text key after a good pair.  The caller's map and
	 * its items must come through intact (this once freed the first
	 * value, which the caller still owned).
	 */
	m = cbor_new_indefinite_map();
	assert_int_equal(hsm_map_put_uint(m, "a", 1), 0);
	k = cbor_new_indefinite_string();
	assert_true(cbor_map_add(m, (struct cbor_pair){ k,
	    cbor_move(cbor_build_uint8(2)) }));
	cbor_decref(&k);
	encode_fails(m);
	one = hsm_map_get(m, "a");
	assert_non_null(one);
	assert_int_equal(cbor_refcount(one), 1);
	assert_int_equal(cbor_get_int(one), 1);
	assert_int_equal(cbor_refcount(m), 1);
	cbor_decref(&m);

	/* An indefinite byte string value. */
	m = cbor_new_indefinite_map();
	assert_int_equal(hsm_map_put(m, "b", cbor_new_indefinite_bytestring()),
	    0);
	encode_fails(m);
	cbor_decref(&m);
}

/* {"b": h'00...'} of exactly `total` payload bytes (total >= 8). */
static unsigned char *
big_payload(size_t total)
{
	unsigned char *p = calloc(1, total);
	size_t n = total - 8;

	assert_non_null(p);
	memcpy(p, "\xa1\x61\x62\x5a", 4);
	p[4] = (unsigned char)(n >> 24);
	p[5] = (unsigned char)(n >> 16);
	p[6] = (unsigned char)(n >> 8);
	p[7] = (unsigned char)n;
	return p;
}

static void
test_frame_size_limit(void **state)
{
	hsm_status st;
	cbor_item_t *it = NULL, *m;
	unsigned char *p, *out;
	size_t outlen;

	(void)state;
	/* Decoding: exactly HSM_FRAME_MAX is fine ... */
	p = big_payload(HSM_FRAME_MAX);
	assert_int_equal(hsm_cbor_decode(p, HSM_FRAME_MAX, &it, &st), 0);
	assert_int_equal(cbor_bytestring_length(hsm_map_get(it, "b")),
	    HSM_FRAME_MAX - 8);
	/* ... and so is encoding it. */
	assert_int_equal(hsm_frame_encode(it, &out, &outlen, &st), 0);
	assert_int_equal(outlen, HSM_FRAME_MAX + 4);
	assert_memory_equal(out, "\x01\x00\x00\x00", 4);
	assert_memory_equal(out + 4, p, HSM_FRAME_MAX);
	free(out);
	cbor_decref(&it);
	free(p);

	/* ... one byte more is not. */
	p = big_payload(HSM_FRAME_MAX + 1);
	hsm_status_clear(&st);
	it = &not_null_item;
	assert_int_equal(hsm_cbor_decode(p, HSM_FRAME_MAX + 1, &it, &st), -1);
	assert_null(it);
	assert_string_equal(st.code, "bad_frame");
	assert_string_equal(st.message,
	    "frame of 16777217 bytes exceeds the 16777216 byte limit");
	frame_fail(p, HSM_FRAME_MAX + 1, "exceeds the 16777216 byte limit");
	/* Nor can it be encoded. */
	m = cbor_new_definite_map(1);
	assert_int_equal(hsm_map_put(m, "b", cbor_build_bytestring(p + 8,
	    HSM_FRAME_MAX - 7)), 0);
	hsm_status_clear(&st);
	out = p;
	assert_int_equal(hsm_frame_encode(m, &out, &outlen, &st), -1);
	assert_null(out);
	assert_string_equal(st.code, "bad_frame");
	assert_string_equal(st.message,
	    "frame of 16777217 bytes exceeds the 16777216 byte limit");
	cbor_decref(&m);
	free(p);
}

/* ---- malformed CBOR ---- */

static void
test_empty(void **state)
{
	(void)state;
	frame_fail(NULL, 0, "empty frame");
	frame_fail((const unsigned char *)"", 0, "empty frame");
}

/* A valid request's payload, cut at every length below its own. */
static void
test_truncated_request(void **state)
{
	hsm_status st;
	cbor_item_t *args = cbor_new_indefinite_map(), *a;
	unsigned char *out;
	size_t outlen, n;

	(void)state;
	assert_int_equal(hsm_map_put_str(args, "name", "p1"), 0);
	assert_int_equal(hsm_map_put_uint(args, "quota", 100000), 0);
	a = cbor_new_definite_array(2);
	assert_true(cbor_array_push(a, cbor_move(cbor_build_string("x"))));
	assert_true(cbor_array_push(a, cbor_move(cbor_build_bytestring(
	    (cbor_data)"\x01\x02\x03", 3))));
	assert_int_equal(hsm_map_put(args, "tags", a), 0);
	assert_int_equal(hsm_request_encode(5, "partition.set", args, &out,
	    &outlen, &st), 0);
	n = outlen - 4;
	assert_true(n > 60);
	for (size_t i = 0; i < n; i++) {
		struct hsm_request req;
		cbor_item_t *it = NULL;

		hsm_status_clear(&st);
		assert_int_equal(hsm_request_decode(out + 4, i, &req, &st), -1);
		assert_string_equal(st.code, "bad_frame");
		if (i == 0)
			assert_string_equal(st.message, "empty frame");
		else if (strstr(st.message, "truncated CBOR") == NULL)
			assert_contains(st.message,
			    "container larger than the frame");
		assert_null(req.args);
		assert_int_equal(hsm_cbor_decode(out + 4, i, &it, &st), -1);
		assert_null(it);
	}
	cbor_ok(out + 4, n);
	free(out);
	cbor_decref(&args);
}

static void
test_truncated_response(void **state)
{
	hsm_status st;
	cbor_item_t *r = build_all_types();
	unsigned char *out;
	size_t outlen, n;

	(void)state;
	assert_int_equal(hsm_response_encode_ok(3, r, &out, &outlen, &st), 0);
	n = outlen - 4;
	for (size_t i = 0; i < n; i++) {
		struct hsm_response resp;

		hsm_status_clear(&st);
		assert_int_equal(hsm_response_decode(out + 4, i, &resp, &st),
		    -1);
		assert_string_equal(st.code, "protocol");
		assert_true(st.message[0] != '\0');
		assert_null(resp.result);
	}
	free(out);
	assert_int_equal(hsm_response_encode_error(3, "not_found", "no such key",
	    &out, &outlen, &st), 0);
	n = outlen - 4;
	for (size_t i = 0; i < n; i++) {
		struct hsm_response resp;

		hsm_status_clear(&st);
		assert_int_equal(hsm_response_decode(out + 4, i, &resp, &st),
		    -1);
		assert_string_equal(st.code, "protocol");
		assert_string_equal(resp.code, "");
	}
	free(out);
	cbor_decref(&r);
}

static void
test_trailing_bytes(void **state)
{
	hsm_status st;
	unsigned char *out, *p;
	size_t outlen, n;

	(void)state;
	assert_int_equal(hsm_request_encode(1, "node.info", NULL, &out, &outlen,
	    &st), 0);
	n = outlen - 4;
	p = malloc(n + 2);
	assert_non_null(p);
	memcpy(p, out + 4, n);
	cbor_ok(p, n);
	p[n] = 0x00;
	frame_fail(p, n + 1, "trailing bytes after the item");
	p[n] = 0xa0;
	frame_fail(p, n + 1, "trailing bytes after the item");
	p[n] = 0x81;
	p[n + 1] = 0x00;
	frame_fail(p, n + 2, "trailing bytes after the item");
	p[n] = 0xff;
	frame_fail(p, n + 1, "indefinite-length item");
	free(p);
	free(out);
	frame_fail(BYTES(0x00, 0x00), "trailing bytes after the item");
	frame_fail(BYTES(0xa0, 0xa0), "trailing bytes after the item");
	frame_fail(BYTES(0xa1, 0x61, 'a', 0x01, 0x01),
	    "trailing bytes after the item");
}

static void
test_indefinite_lengths(void **state)
{
	const char *msg = "indefinite-length item";

	(void)state;
	frame_fail(BYTES(0xbf, 0xff), msg);
	frame_fail(BYTES(0xbf, 0x61, 'a', 0x01, 0xff), msg);
	frame_fail(BYTES(0x9f, 0xff), msg);
	frame_fail(BYTES(0x7f, 0x61, 'a', 0xff), msg);
	frame_fail(BYTES(0x5f, 0x41, 'a', 0xff), msg);
	frame_fail(BYTES(0xff), msg);
	/* Inside an otherwise definite request. */
	MAP_CHECK(frame_fail, msg, F_V, F_ID, F_OP, FIELD("args", 0xbf, 0xff));
	MAP_CHECK(frame_fail, msg, F_V, F_ID, F_OP, FIELD("args", 0xa1, 0x61,
	    'x', 0x9f, 0x01, 0xff));
	MAP_CHECK(frame_fail, msg, F_V, F_ID, FIELD("op", 0x7f, 0x61, 'a',
	    0xff), F_ARGS);
}

static void
test_tags(void **state)
{
	const char *msg = "tagged item";

	(void)state;
	frame_fail(BYTES(0xc0, 0x61, 'a'), msg);
	frame_fail(BYTES(0xc1, 0x01), msg);
	frame_fail(BYTES(0xd9, 0xd9, 0xf7, 0xa0), msg);	/* self-describe */
	frame_fail(BYTES(0xdb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0x00), msg);
	MAP_CHECK(frame_fail, msg, F_V, FIELD("id", 0xc2, 0x41, 0x07), F_OP,
	    F_ARGS);
	MAP_CHECK(frame_fail, msg, F_V, F_ID, F_OP, FIELD("args", 0xa1, 0x61,
	    'x', 0xc1, 0x00));
}

static void
test_malformed_bytes(void **state)
{
	(void)state;
	/* Reserved additional information 28..30. */
	frame_fail(BYTES(0x1c), "malformed CBOR at byte 0");
	frame_fail(BYTES(0xa1, 0x61, 'a', 0x3d), "malformed CBOR at byte 3");
	frame_fail(BYTES(0x5e), "malformed CBOR");
	/* Unassigned simple values. */
	frame_fail(BYTES(0xe0), "malformed CBOR");
	frame_fail(BYTES(0xf8, 0x20), "malformed CBOR");
	/* A head that promises more bytes than there are. */
	frame_fail(BYTES(0x1b, 0x00, 0x00), "truncated CBOR at byte 0");
	frame_fail(BYTES(0x62, 'a'), "truncated CBOR at byte 0");
	frame_fail(BYTES(0xa1, 0x61, 'a'), "container larger than the frame");
	frame_fail(BYTES(0x82, 0x81, 0x01), "container larger than the frame");
	frame_fail(BYTES(0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0x00), "truncated CBOR at byte 0");
	frame_fail(BYTES(0x7b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
	    "truncated CBOR at byte 0");
}

/* Huge announced sizes must be refused before anything is allocated. */
static void
test_huge_containers(void **state)
{
	const char *msg = "container larger than the frame";

	(void)state;
	frame_fail(BYTES(0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
	    msg);
	frame_fail(BYTES(0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0x61, 'a', 0x01), msg);
	frame_fail(BYTES(0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0x00), msg);
	frame_fail(BYTES(0xbb, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	    0x61, 'a', 0x01), msg);
	frame_fail(BYTES(0xba, 0xff, 0xff, 0xff, 0xff, 0x61, 'a', 0x01), msg);
	frame_fail(BYTES(0x9a, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00), msg);
	/* One element more than there are bytes left. */
	frame_fail(BYTES(0x83, 0x01, 0x02), msg);
	frame_fail(BYTES(0xa2, 0x61, 'a', 0x01), msg);
	/* Nested: the inner array cannot fit either. */
	frame_fail(BYTES(0xa1, 0x61, 'a', 0x9b, 0x00, 0x00, 0x00, 0x01, 0x00,
	    0x00, 0x00, 0x00, 0x01), msg);
	MAP_CHECK(frame_fail, msg, F_V, F_ID, F_OP, FIELD("args", 0xbb, 0xff,
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff));
	/* Exactly as many elements as bytes left is fine. */
	cbor_ok(BYTES(0x83, 0x01, 0x02, 0x03));
}

/* An array of n zeros: n + 1 items. */
static void
items_case(size_t n, bool ok)
{
	struct bb b = { 0 };
	unsigned char *zeros = calloc(1, n);

	assert_non_null(zeros);
	bb_head(&b, 4, n);
	bb_raw(&b, zeros, n);
	if (ok)
		cbor_ok(b.p, b.n);
	else
		frame_fail(b.p, b.n, "too many items");
	bb_free(&b);
	free(zeros);
}

static void
test_too_many_items(void **state)
{
	(void)state;
	items_case(ITEMS_MAX - 1, true);
	items_case(ITEMS_MAX, false);
	items_case(4 * ITEMS_MAX, false);
}

/*
 * `depth` nested containers, counting the outermost, which is a map
 * {"a": ...}.  The inner ones are arrays (or maps {"a": ...}).  The
 * innermost holds the integer 1, or nothing.
 */
static void
bb_nest(struct bb *b, int depth, bool maps, bool empty)
{
	for (int i = 1; i <= depth; i++) {
		bool last = i == depth;

		if (i == 1 || maps) {
			if (last && empty) {
				bb_byte(b, 0xa0);
				return;
			}
			bb_raw(b, "\xa1\x61\x61", 3);
		} else
			bb_byte(b, last && empty ? 0x80 : 0x81);
	}
	if (!empty)
		bb_byte(b, 0x01);
}

static void
nest_case(int depth, bool maps, bool empty, bool ok)
{
	struct bb b = { 0 };
	hsm_status st;
	cbor_item_t *it = NULL;
	unsigned char *out;
	size_t outlen;

	bb_nest(&b, depth, maps, empty);
	if (!ok) {
		frame_fail(b.p, b.n, "nesting too deep");
		bb_free(&b);
		return;
	}
	assert_int_equal(hsm_cbor_decode(b.p, b.n, &it, &st), 0);
	/* What decodes can be encoded again, to the same bytes. */
	assert_int_equal(hsm_frame_encode(it, &out, &outlen, &st), 0);
	assert_int_equal(outlen, b.n + 4);
	assert_memory_equal(out + 4, b.p, b.n);
	free(out);
	cbor_decref(&it);
	bb_free(&b);
}

static void
test_depth_boundary(void **state)
{
	(void)state;
	/* The top-level map is depth 1; HSM_DEPTH_MAX containers are fine. */
	assert_int_equal(HSM_DEPTH_MAX, 16);
	for (int maps = 0; maps <= 1; maps++)
		for (int empty = 0; empty <= 1; empty++) {
			nest_case(1, maps, empty, true);
			nest_case(15, maps, empty, true);
			nest_case(16, maps, empty, true);
			nest_case(17, maps, empty, false);
			nest_case(18, maps, empty, false);
		}
}

static void
test_depth_huge(void **state)
{
	struct bb b = { 0 };

	(void)state;
	/* A million nested arrays: refused without recursion. */
	for (int i = 0; i < 1000000; i++)
		bb_byte(&b, 0x81);
	bb_byte(&b, 0x00);
	frame_fail(b.p, b.n, "nesting too deep");
	bb_free(&b);
}

/* args nested so that the request has `depth` containers in all. */
static void
req_depth_case(int depth, bool ok)
{
	struct bb b = { 0 };
	hsm_status st;
	struct hsm_request req, again;
	unsigned char *out;
	size_t outlen;

	bb_head(&b, 5, 4);
	bb_text(&b, "v");
	bb_byte(&b, 0x01);
	bb_text(&b, "id");
	bb_byte(&b, 0x07);
	bb_text(&b, "op");
	bb_text(&b, "x");
	bb_text(&b, "args");
	bb_nest(&b, depth - 1, false, false);
	if (!ok) {
		frame_fail(b.p, b.n, "nesting too deep");
		bb_free(&b);
		return;
	}
	assert_int_equal(hsm_request_decode(b.p, b.n, &req, &st), 0);
	assert_int_equal(hsm_request_encode(req.id, req.op, req.args, &out,
	    &outlen, &st), 0);
	assert_int_equal(hsm_request_decode(out + 4, outlen - 4, &again, &st),
	    0);
	hsm_request_clear(&again);
	hsm_request_clear(&req);
	free(out);
	bb_free(&b);
}

static void
test_depth_request(void **state)
{
	(void)state;
	req_depth_case(16, true);
	req_depth_case(17, false);
}

/* Encoding refuses what decoding would refuse. */
static void
test_depth_encode(void **state)
{
	cbor_item_t *top, *inner;
	hsm_status st;
	unsigned char *out;
	size_t outlen;

	(void)state;
	inner = cbor_new_definite_array(0);
	for (int i = 2; i <= 17; i++) {
		cbor_item_t *a = cbor_new_definite_array(1);

		assert_true(cbor_array_push(a, cbor_move(inner)));
		inner = a;
	}
	/* 17 arrays */
	encode_fails(inner);
	top = cbor_new_definite_array(1);
	assert_true(cbor_array_push(top, cbor_move(inner)));
	encode_fails(top);
	cbor_decref(&top);

	inner = cbor_build_uint8(1);
	for (int i = 1; i <= 16; i++) {
		cbor_item_t *a = cbor_new_indefinite_array();

		assert_true(cbor_array_push(a, cbor_move(inner)));
		inner = a;
	}
	/* 16 arrays around a leaf */
	assert_int_equal(hsm_frame_encode(inner, &out, &outlen, &st), 0);
	assert_int_equal(outlen, 4 + 17);
	free(out);
	cbor_decref(&inner);
}

static void
test_duplicate_keys(void **state)
{
	const char *msg = "duplicate map key";

	(void)state;
	frame_fail(BYTES(0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02), msg);
	frame_fail(BYTES(0xa2, 0x60, 0x01, 0x60, 0x01), msg);
	frame_fail(BYTES(0xa3, 0x61, 'a', 0x01, 0x61, 'b', 0x02, 0x61, 'a',
	    0x03), msg);
	/* The same key written with a longer head is still the same key. */
	frame_fail(BYTES(0xa2, 0x61, 'a', 0x01, 0x78, 0x01, 'a', 0x02), msg);
	MAP_CHECK(frame_fail, msg, F_V, F_ID, F_OP, F_ARGS, F_ID);
	MAP_CHECK(frame_fail, msg, F_V, F_ID, F_OP, FIELD("args", 0xa2, 0x61,
	    'x', 0x01, 0x61, 'x', 0x01));
	/* Keys of the same length, or sharing a prefix, are distinct. */
	cbor_ok(BYTES(0xa3, 0x61, 'a', 0x01, 0x61, 'b', 0x02, 0x62, 'a', 'b',
	    0x03));
	cbor_ok(BYTES(0xa2, 0x60, 0x01, 0x61, 'A', 0x02));
	/* Equal keys in different maps are fine. */
	cbor_ok(BYTES(0xa2, 0x61, 'a', 0xa1, 0x61, 'a', 0x01, 0x61, 'b', 0xa1,
	    0x61, 'a', 0x02));
}

static void
test_non_text_keys(void **state)
{
	const char *msg = "map key is not a text string";

	(void)state;
	frame_fail(BYTES(0xa1, 0x01, 0x02), msg);
	frame_fail(BYTES(0xa1, 0x20, 0x02), msg);
	frame_fail(BYTES(0xa1, 0x41, 'a', 0x02), msg);
	frame_fail(BYTES(0xa1, 0x80, 0x02), msg);
	frame_fail(BYTES(0xa1, 0xa0, 0x02), msg);
	frame_fail(BYTES(0xa1, 0xf6, 0x02), msg);
	frame_fail(BYTES(0xa1, 0xf4, 0x02), msg);
	frame_fail(BYTES(0xa1, 0xf9, 0x3c, 0x00, 0x02), msg);
	frame_fail(BYTES(0xa2, 0x61, 'a', 0x01, 0x01, 0x02), msg);
	MAP_CHECK(frame_fail, msg, F_V, F_ID, F_OP, FIELD("args", 0xa1, 0x00,
	    0x00));
	/* Nested in an array. */
	frame_fail(BYTES(0x81, 0xa1, 0x00, 0x00), msg);
}

static void
test_invalid_utf8(void **state)
{
	/*
	 * libcbor 0.8's cbor_load() already refuses invalid UTF-8 text (as
	 * malformed, at the end of the item); wire.c checks again in case
	 * the library does not.  Either way it is a bad frame.
	 */
	const char *msg = "invalid UTF-8 text|malformed CBOR at byte";

	(void)state;
	frame_fail(BYTES(0x61, 0x80), msg);		/* lone continuation */
	frame_fail(BYTES(0x61, 0xff), msg);
	frame_fail(BYTES(0x61, 0xc3), msg);		/* cut short */
	frame_fail(BYTES(0x62, 0xe2, 0x82), msg);
	frame_fail(BYTES(0x62, 0xc3, 'a'), msg);	/* bad continuation */
	frame_fail(BYTES(0x62, 0xc0, 0x80), msg);	/* overlong NUL */
	frame_fail(BYTES(0x62, 0xc1, 0xbf), msg);
	frame_fail(BYTES(0x63, 0xe0, 0x80, 0x80), msg);
	frame_fail(BYTES(0x64, 0xf0, 0x80, 0x80, 0x80), msg);
	frame_fail(BYTES(0x63, 0xed, 0xa0, 0x80), msg);	/* surrogate */
	frame_fail(BYTES(0x63, 0xed, 0xbf, 0xbf), msg);
	frame_fail(BYTES(0x64, 0xf4, 0x90, 0x80, 0x80), msg); /* > U+10FFFF */
	frame_fail(BYTES(0x64, 0xf8, 0x88, 0x80, 0x80), msg);
	/* In a key, in an array, in the envelope. */
	frame_fail(BYTES(0xa1, 0x61, 0xfe, 0x01), msg);
	frame_fail(BYTES(0x82, 0x61, 'a', 0x61, 0x80), msg);
	MAP_CHECK(frame_fail, msg, F_V, F_ID, FIELD("op", 0x61, 0xe9), F_ARGS);
	MAP_CHECK(frame_fail, msg, F_V, F_ID, F_OP, FIELD("args", 0xa1, 0x61,
	    'x', 0x61, 0xe9));

	/* Valid: 1, 2, 3 and 4 byte forms, and the edges. */
	cbor_ok(BYTES(0x6a, 'a', 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f,
	    0x98, 0x80));
	cbor_ok(BYTES(0x63, 0xef, 0xbf, 0xbf));		/* U+FFFF */
	cbor_ok(BYTES(0x64, 0xf4, 0x8f, 0xbf, 0xbf));	/* U+10FFFF */
	cbor_ok(BYTES(0x63, 0xee, 0x80, 0x80));		/* U+E000 */
	cbor_ok(BYTES(0x61, 0x00));			/* U+0000 */
	/* Byte strings are not text. */
	cbor_ok(BYTES(0x42, 0xc0, 0x80));
}

/* ---- map helpers ---- */

static void
test_map_helpers(void **state)
{
	cbor_item_t *m, *v, *arr;

	(void)state;
	m = cbor_new_definite_map(3);
	assert_int_equal(hsm_map_put_str(m, "s", "x"), 0);
	assert_int_equal(hsm_map_put_uint(m, "u", 5), 0);
	assert_int_equal(hsm_map_put_bool(m, "b", true), 0);
	assert_int_equal(cbor_map_size(m), 3);
	/* Full: fails, and the value is still released (no leak). */
	assert_int_equal(hsm_map_put_str(m, "t", "y"), -1);
	assert_int_equal(hsm_map_put(m, "t", cbor_build_uint8(1)), -1);
	assert_int_equal(hsm_map_put(m, "t", NULL), -1);
	assert_int_equal(cbor_map_size(m), 3);

	v = hsm_map_get(m, "s");
	assert_non_null(v);
	assert_true(cbor_isa_string(v));
	assert_int_equal(cbor_string_length(v), 1);
	assert_memory_equal(cbor_string_handle(v), "x", 1);
	v = hsm_map_get(m, "u");
	assert_true(cbor_isa_uint(v));
	assert_int_equal(cbor_get_int(v), 5);
	v = hsm_map_get(m, "b");
	assert_true(cbor_is_bool(v));
	assert_true(cbor_get_bool(v));
	assert_null(hsm_map_get(m, "t"));
	assert_null(hsm_map_get(m, ""));
	assert_null(hsm_map_get(m, "ss"));
	assert_null(hsm_map_get(m, "S"));
	assert_null(hsm_map_get(NULL, "s"));
	arr = cbor_new_definite_array(0);
	assert_null(hsm_map_get(arr, "s"));
	cbor_decref(&arr);
	cbor_decref(&m);

	/* Non-text keys are skipped; a byte string "k" is not the key "k". */
	m = cbor_new_definite_map(3);
	assert_true(cbor_map_add(m, (struct cbor_pair){
	    cbor_move(cbor_build_bytestring((cbor_data)"k", 1)),
	    cbor_move(cbor_build_uint8(1)) }));
	assert_true(cbor_map_add(m, (struct cbor_pair){
	    cbor_move(cbor_build_uint8(7)), cbor_move(cbor_build_uint8(2)) }));
	assert_null(hsm_map_get(m, "k"));
	assert_int_equal(hsm_map_put_uint(m, "k", 3), 0);
	assert_int_equal(cbor_get_int(hsm_map_get(m, "k")), 3);
	cbor_decref(&m);

	/* Indefinite maps grow. */
	m = cbor_new_indefinite_map();
	for (unsigned i = 0; i < 100; i++) {
		char k[16];

		snprintf(k, sizeof(k), "k%u", i);
		assert_int_equal(hsm_map_put_uint(m, k, i), 0);
	}
	assert_int_equal(cbor_map_size(m), 100);
	assert_int_equal(cbor_get_int(hsm_map_get(m, "k0")), 0);
	assert_int_equal(cbor_get_int(hsm_map_get(m, "k99")), 99);
	assert_int_equal(cbor_get_int(hsm_map_get(m, "k42")), 42);
	assert_null(hsm_map_get(m, "k100"));
	/* The empty key is a key like any other. */
	assert_int_equal(hsm_map_put_bool(m, "", false), 0);
	assert_false(cbor_get_bool(hsm_map_get(m, "")));
	cbor_decref(&m);
}

/* Found by the fuzzer: libcbor's cbor_is_bool() asserts on a float. */
static void
test_float_where_bool(void **state)
{
	/* {"id":1,"ok":1.5(half float),"result":0} */
	static const unsigned char p[] = {
		0xa3, 0x62, 'i', 'd', 0x01, 0x62, 'o', 'k', 0xf9, 0x3e, 0x00,
		0x66, 'r', 'e', 's', 'u', 'l', 't', 0x00,
	};
	struct hsm_response resp;
	hsm_status st;
	cbor_item_t *f;

	(void)state;
	assert_int_equal(hsm_response_decode(p, sizeof(p), &resp, &st), -1);
	assert_string_equal(st.code, "protocol");
	f = cbor_build_float4(1.0f);
	assert_false(hsm_cbor_is_bool(f));
	assert_false(hsm_cbor_is_null(f));
	cbor_decref(&f);
	f = cbor_build_bool(true);
	assert_true(hsm_cbor_is_bool(f));
	cbor_decref(&f);
	f = cbor_new_null();
	assert_true(hsm_cbor_is_null(f));
	cbor_decref(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_length),
		cmocka_unit_test(test_request_roundtrip),
		cmocka_unit_test(test_request_encode_definite),
		cmocka_unit_test(test_request_encode_null_args),
		cmocka_unit_test(test_request_encode_rejects),
		cmocka_unit_test(test_request_good_fields),
		cmocka_unit_test(test_request_not_map),
		cmocka_unit_test(test_request_wrong_types),
		cmocka_unit_test(test_request_missing_fields),
		cmocka_unit_test(test_request_unknown_fields),
		cmocka_unit_test(test_request_version),
		cmocka_unit_test(test_request_op_names),
		cmocka_unit_test(test_response_ok_roundtrip),
		cmocka_unit_test(test_response_ok_null_result),
		cmocka_unit_test(test_response_error_roundtrip),
		cmocka_unit_test(test_response_good_fields),
		cmocka_unit_test(test_response_malformed),
		cmocka_unit_test(test_frame_encode),
		cmocka_unit_test(test_frame_encode_rejects),
		cmocka_unit_test(test_frame_size_limit),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_truncated_request),
		cmocka_unit_test(test_truncated_response),
		cmocka_unit_test(test_trailing_bytes),
		cmocka_unit_test(test_indefinite_lengths),
		cmocka_unit_test(test_tags),
		cmocka_unit_test(test_malformed_bytes),
		cmocka_unit_test(test_huge_containers),
		cmocka_unit_test(test_too_many_items),
		cmocka_unit_test(test_depth_boundary),
		cmocka_unit_test(test_depth_huge),
		cmocka_unit_test(test_depth_request),
		cmocka_unit_test(test_depth_encode),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_non_text_keys),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_map_helpers),
		cmocka_unit_test(test_float_where_bool),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
