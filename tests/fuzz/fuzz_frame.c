/*
 * libFuzzer target for the frame payload decoders in lib/wire.c.
 *
 * Every input goes through hsm_request_decode(), hsm_response_decode()
 * and hsm_cbor_decode().  Besides crashes, leaks and undefined behaviour
 * it checks properties, calling abort() when one does not hold:
 *   - a failure leaves a code (and no tree) behind, and a one-line message;
 *   - whatever decodes re-encodes, the encoding decodes again to the same
 *     thing, and encoding that gives the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hsmctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(bool ok)
{
	if (!ok)
		abort();
}

static void
check_failure(const hsm_status *st, const char *code)
{
	check(strcmp(st->code, code) == 0 || strcmp(st->code, "no_memory") == 0);
	check(st->message[0] != '\0');
	check(strchr(st->message, '\n') == NULL);
	check(strchr(st->message, '\r') == NULL);
}

/* The payload of an encoded frame, with a consistent header. */
static void
check_frame(const unsigned char *frame, size_t len)
{
	hsm_status st;
	size_t n = 0;

	check(frame != NULL && len > 4);
	check(hsm_frame_length(frame, &n, &st) == 0);
	check(n == len - 4);
}

/* Serialised form of an item, for comparing trees. */
static unsigned char *
encode_item(const cbor_item_t *it, size_t *len)
{
	hsm_status st;
	unsigned char *out = NULL;

	check(hsm_frame_encode(it, &out, len, &st) == 0);
	check_frame(out, *len);
	return out;
}

static bool
same_item(const cbor_item_t *a, const cbor_item_t *b)
{
	unsigned char *ea, *eb;
	size_t la, lb;
	bool same;

	ea = encode_item(a, &la);
	eb = encode_item(b, &lb);
	same = la == lb && memcmp(ea, eb, la) == 0;
	free(ea);
	free(eb);
	return same;
}

static void
fuzz_request(const uint8_t *data, size_t size)
{
	hsm_status st;
	struct hsm_request req, again;
	unsigned char *out = NULL, *out2 = NULL;
	size_t outlen = 0, outlen2 = 0;

	hsm_status_clear(&st);
	if (hsm_request_decode(data, size, &req, &st) != 0) {
		check(req.args == NULL && req.op[0] == '\0');
		if (strcmp(st.code, "bad_request") != 0)
			check_failure(&st, "bad_frame");
		else
			check_failure(&st, "bad_request");
		hsm_request_clear(&req);
		return;
	}
	check(req.args != NULL && cbor_isa_map(req.args));
	check(req.op[0] != '\0' && strlen(req.op) <= HSM_OP_MAX);

	check(hsm_request_encode(req.id, req.op, req.args, &out, &outlen,
	    &st) == 0);
	check_frame(out, outlen);
	check(hsm_request_decode(out + 4, outlen - 4, &again, &st) == 0);
	check(again.id == req.id);
	check(strcmp(again.op, req.op) == 0);
	check(same_item(again.args, req.args));
	/* Encoding is deterministic: the second round gives the same bytes. */
	check(hsm_request_encode(again.id, again.op, again.args, &out2,
	    &outlen2, &st) == 0);
	check(outlen2 == outlen && memcmp(out, out2, outlen) == 0);

	free(out2);
	free(out);
	hsm_request_clear(&again);
	hsm_request_clear(&req);
	check(req.args == NULL);
}

static void
fuzz_response(const uint8_t *data, size_t size)
{
	hsm_status st;
	struct hsm_response resp, again;
	unsigned char *out = NULL;
	size_t outlen = 0;

	hsm_status_clear(&st);
	if (hsm_response_decode(data, size, &resp, &st) != 0) {
		check(resp.result == NULL && resp.code[0] == '\0');
		check_failure(&st, "protocol");
		hsm_response_clear(&resp);
		return;
	}
	if (resp.ok) {
		check(resp.result != NULL);
		check(hsm_response_encode_ok(resp.id, resp.result, &out,
		    &outlen, &st) == 0);
	} else {
		check(resp.result == NULL && resp.code[0] != '\0');
		check(hsm_response_encode_error(resp.id, resp.code,
		    resp.message, &out, &outlen, &st) == 0);
	}
	check_frame(out, outlen);
	check(hsm_response_decode(out + 4, outlen - 4, &again, &st) == 0);
	check(again.id == resp.id && again.ok == resp.ok);
	check(strcmp(again.code, resp.code) == 0);
	check(strcmp(again.message, resp.message) == 0);
	if (resp.ok)
		check(same_item(again.result, resp.result));
	free(out);
	hsm_response_clear(&again);
	hsm_response_clear(&resp);
}

static void
fuzz_cbor(const uint8_t *data, size_t size)
{
	hsm_status st;
	cbor_item_t *it = NULL, *again = NULL;
	unsigned char *out;
	size_t outlen;

	hsm_status_clear(&st);
	if (hsm_cbor_decode(data, size, &it, &st) != 0) {
		check(it == NULL);
		check_failure(&st, "bad_frame");
		return;
	}
	check(it != NULL);
	out = encode_item(it, &outlen);
	/* A definite encoding is never longer than what was read. */
	check(outlen - 4 <= size);
	check(hsm_cbor_decode(out + 4, outlen - 4, &again, &st) == 0);
	check(same_item(it, again));
	free(out);
	cbor_decref(&again);
	cbor_decref(&it);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_request(data, size);
	fuzz_response(data, size);
	fuzz_cbor(data, size);
	return 0;
}
