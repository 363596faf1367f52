/*
 * The backup file format (doc/backup-format.md): a header, AES-256-GCM
 * chunks under a key derived per backup from the cluster's backup key,
 * an end marker, and the cluster's signature.  Written and read as a
 * stream: nothing holds more than one chunk.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "hsmctl.h"

#define MAGIC "HSMCTLBK"
#define MAGIC_LEN 8
#define HEADER_MAX 65536
#define TAG_LEN 16
#define REC_CHUNK 1
#define REC_SIG 2
#define SIG_LEN 64
#define SIG_CONTEXT "hsmctl-backup-v1"
#define KDF_INFO "hsmctl-backup-key-v1"

struct hsm_backup_writer {
	int fd;
	unsigned char key[32];
	unsigned char hhash[32];	/* SHA-256 of magic, length, header */
	EVP_MD_CTX *chunks;		/* SHA-256 over the chunk records */
	EVP_PKEY *sign;
	uint64_t index;
	uint32_t chunk_size;
	unsigned char *buf;
	size_t cap;
	uint64_t bytes;
};

struct hsm_backup_reader {
	int fd;
	bool have_key;
	unsigned char key[32];
	unsigned char hhash[32];
	EVP_MD_CTX *chunks;
	uint64_t index;
	uint32_t chunk_size;
	bool done;
	unsigned char *rec, *plain;
	size_t cap;
	uint64_t bytes;
};

bool
hsm_backup_id_ok(const char *id)
{
	if (strlen(id) != 32)
		return false;
	for (const char *p = id; *p != '\0'; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static void
put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static uint32_t
get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static void
put_be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static uint64_t
get_be64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static int
write_all(int fd, const void *buf, size_t len, hsm_status *st)
{
	if (hsm_write_all(fd, buf, len) != 0)
		return hsm_fail(st, "io", "cannot write the backup: %s",
		    strerror(errno));
	return 0;
}

/* 1: all read; 0: clean end of file before any byte; -1: short or error. */
static int
read_all(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (unsigned char *)buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return got == 0 && n == 0 ? 0 : -1;
		got += (size_t)n;
	}
	return 1;
}

static int
derive_key(const unsigned char bkey[32], const unsigned char salt[32],
    const char *cluster_id, unsigned char out[32], hsm_status *st)
{
	unsigned char info[128];
	size_t ilen = strlen(KDF_INFO) + 1 + strlen(cluster_id);

	/* Bound to the cluster: another cluster's key derives another key. */
	if (ilen > sizeof(info))
		return hsm_fail(st, "integrity", "backup header: bad "
		    "'cluster_id'");
	memcpy(info, KDF_INFO, strlen(KDF_INFO) + 1);
	memcpy(info + strlen(KDF_INFO) + 1, cluster_id, strlen(cluster_id));
	return hsm_hkdf_sha256(bkey, 32, salt, 32, info, ilen, out, st);
}

static int
sha256(const unsigned char *a, size_t alen, const unsigned char *b,
    size_t blen, unsigned char out[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int l = 0;
	int ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(md, a, alen) == 1 &&
	    (blen == 0 || EVP_DigestUpdate(md, b, blen) == 1) &&
	    EVP_DigestFinal_ex(md, out, &l) == 1 && l == 32;

	EVP_MD_CTX_free(md);
	return ok ? 0 : -1;
}

/* What the signature covers: context, header hash, chunks hash. */
static int
signed_message(const unsigned char hhash[32], EVP_MD_CTX *chunks,
    unsigned char msg[sizeof(SIG_CONTEXT) + 64])
{
	unsigned int l = 0;

	memcpy(msg, SIG_CONTEXT, sizeof(SIG_CONTEXT));	/* with its NUL */
	memcpy(msg + sizeof(SIG_CONTEXT), hhash, 32);
	return EVP_DigestFinal_ex(chunks, msg + sizeof(SIG_CONTEXT) + 32,
	    &l) == 1 && l == 32 ? 0 : -1;
}

/* AAD of a chunk: header hash, index, final flag. */
static void
chunk_aad(const unsigned char hhash[32], uint64_t index, bool final,
    unsigned char aad[41])
{
	memcpy(aad, hhash, 32);
	put_be64(aad + 32, index);
	aad[40] = final ? 1 : 0;
}

static void
chunk_nonce(uint64_t index, unsigned char nonce[12])
{
	/* The key is new for every backup: the index alone never repeats. */
	memset(nonce, 0, 4);
	put_be64(nonce + 4, index);
}

/* ---- header ----------------------------------------------------------- */

void
hsm_backup_header_clear(struct hsm_backup_header *h)
{
	for (size_t i = 0; i < h->npartitions; i++)
		free(h->partitions[i]);
	free(h->partitions);
	memset(h, 0, sizeof(*h));
}

static int
header_encode(const struct hsm_backup_header *h, unsigned char **out,
    size_t *len, hsm_status *st)
{
	cbor_item_t *m = cbor_new_definite_map(11), *scope = NULL;
	int r = -1;

	if (m == NULL || (scope = cbor_new_definite_array(
	    h->npartitions)) == NULL)
		goto oom;
	for (size_t i = 0; i < h->npartitions; i++)
		if (!cbor_array_push(scope, cbor_move(cbor_build_string(
		    h->partitions[i]))))
			goto oom;
	if (hsm_map_put_uint(m, "format", HSM_BACKUP_FORMAT) != 0 ||
	    hsm_map_put_str(m, "id", h->id) != 0 ||
	    hsm_map_put_str(m, "cluster", h->cluster) != 0 ||
	    hsm_map_put_str(m, "cluster_id", h->cluster_id) != 0 ||
	    hsm_map_put_str(m, "node", h->node) != 0 ||
	    hsm_map_put(m, "scope", scope) != 0) {
		scope = NULL;
		goto oom;
	}
	scope = NULL;
	if (hsm_map_put_uint(m, "created", (uint64_t)h->created) != 0 ||
	    hsm_map_put_uint(m, "seq", h->seq) != 0 ||
	    hsm_map_put_uint(m, "epoch", h->epoch) != 0 ||
	    hsm_map_put_uint(m, "chunk_size", h->chunk_size) != 0 ||
	    hsm_map_put(m, "salt", cbor_build_bytestring(h->salt,
	    sizeof(h->salt))) != 0)
		goto oom;
	r = hsm_cbor_encode(m, out, len, st);
	goto out;
oom:
	hsm_fail(st, "no_memory", "out of memory");
out:
	if (scope != NULL)
		cbor_decref(&scope);
	if (m != NULL)
		cbor_decref(&m);
	return r;
}

static int
text_field(const cbor_item_t *m, const char *key, char *buf, size_t len,
    hsm_status *st)
{
	const cbor_item_t *v = hsm_map_get(m, key);
	size_t n;

	if (v == NULL || !cbor_isa_string(v) || (n = cbor_string_length(v)) >=
	    len || memchr(cbor_string_handle(v), 0, n) != NULL)
		return hsm_fail(st, "integrity", "backup header: bad '%s'",
		    key);
	memcpy(buf, cbor_string_handle(v), n);
	buf[n] = '\0';
	return 0;
}

static int
uint_field(const cbor_item_t *m, const char *key, uint64_t max, uint64_t *v,
    hsm_status *st)
{
	const cbor_item_t *x = hsm_map_get(m, key);

	if (x == NULL || !cbor_isa_uint(x) || cbor_get_int(x) > max)
		return hsm_fail(st, "integrity", "backup header: bad '%s'",
		    key);
	*v = cbor_get_int(x);
	return 0;
}

static int
header_decode(const unsigned char *buf, size_t len,
    struct hsm_backup_header *h, hsm_status *st)
{
	static const char *const known[] = { "format", "id", "cluster",
	    "cluster_id", "node", "scope", "created", "seq", "epoch",
	    "chunk_size", "salt", NULL };
	cbor_item_t *m = NULL;
	const cbor_item_t *scope, *salt;
	uint64_t v;
	int r = -1;

	memset(h, 0, sizeof(*h));
	if (hsm_cbor_decode(buf, len, &m, st) != 0) {
		hsm_fail(st, "integrity", "backup header is not valid CBOR");
		return -1;
	}
	if (!cbor_isa_map(m) || cbor_map_size(m) != 11) {
		hsm_fail(st, "integrity", "backup header: not the expected "
		    "fields");
		goto out;
	}
	for (size_t i = 0; i < cbor_map_size(m); i++) {
		const cbor_item_t *k = cbor_map_handle(m)[i].key;
		bool ok = false;

		for (size_t j = 0; known[j] != NULL && !ok; j++)
			ok = cbor_string_length(k) == strlen(known[j]) &&
			    memcmp(cbor_string_handle(k), known[j],
			    strlen(known[j])) == 0;
		if (!ok) {
			hsm_fail(st, "integrity", "backup header: unknown "
			    "field");
			goto out;
		}
	}
	if (uint_field(m, "format", UINT32_MAX, &v, st) != 0)
		goto out;
	if (v != HSM_BACKUP_FORMAT) {
		hsm_fail(st, "integrity", "backup format %llu is not %d",
		    (unsigned long long)v, HSM_BACKUP_FORMAT);
		goto out;
	}
	h->format = (uint32_t)v;
	if (text_field(m, "id", h->id, sizeof(h->id), st) != 0 ||
	    text_field(m, "cluster", h->cluster, sizeof(h->cluster), st) != 0 ||
	    text_field(m, "cluster_id", h->cluster_id, sizeof(h->cluster_id),
	    st) != 0 ||
	    text_field(m, "node", h->node, sizeof(h->node), st) != 0 ||
	    uint_field(m, "created", INT64_MAX, &v, st) != 0)
		goto out;
	h->created = (int64_t)v;
	if (uint_field(m, "seq", INT64_MAX, &h->seq, st) != 0 ||
	    uint_field(m, "epoch", INT64_MAX, &h->epoch, st) != 0 ||
	    uint_field(m, "chunk_size", HSM_BACKUP_CHUNK_MAX, &v, st) != 0)
		goto out;
	if (v < 1024) {
		hsm_fail(st, "integrity", "backup header: bad 'chunk_size'");
		goto out;
	}
	h->chunk_size = (uint32_t)v;
	salt = hsm_map_get(m, "salt");
	if (salt == NULL || !cbor_isa_bytestring(salt) ||
	    cbor_bytestring_length(salt) != sizeof(h->salt)) {
		hsm_fail(st, "integrity", "backup header: bad 'salt'");
		goto out;
	}
	memcpy(h->salt, cbor_bytestring_handle(salt), sizeof(h->salt));
	scope = hsm_map_get(m, "scope");
	if (scope == NULL || !cbor_isa_array(scope) ||
	    cbor_array_size(scope) > HSM_BACKUP_SCOPE_MAX) {
		hsm_fail(st, "integrity", "backup header: bad 'scope'");
		goto out;
	}
	if (cbor_array_size(scope) > 0 && (h->partitions = calloc(
	    cbor_array_size(scope), sizeof(*h->partitions))) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	for (size_t i = 0; i < cbor_array_size(scope); i++) {
		const cbor_item_t *p = cbor_array_handle(scope)[i];

		if (!cbor_isa_string(p) || cbor_string_length(p) >
		    HSM_NAME_MAX || (h->partitions[i] = strndup(
		    (const char *)cbor_string_handle(p),
		    cbor_string_length(p))) == NULL ||
		    !hsm_partition_name_ok(h->partitions[i])) {
			hsm_fail(st, "integrity", "backup header: bad 'scope'");
			h->npartitions = i + 1;
			goto out;
		}
		h->npartitions = i + 1;
	}
	r = 0;
out:
	if (r != 0)
		hsm_backup_header_clear(h);
	cbor_decref(&m);
	return r;
}

/* ---- writer ----------------------------------------------------------- */

int
hsm_backup_writer_open(int fd, const struct hsm_backup_header *h,
    const unsigned char bkey[32], struct evp_pkey_st *sign,
    hsm_backup_writer **out, hsm_status *st)
{
	hsm_backup_writer *w;
	unsigned char *hdr = NULL, lenb[4], *all = NULL;
	size_t hlen = 0;
	int r = -1;

	*out = NULL;
	/* What the reader would refuse is never written. */
	if (h->chunk_size < 1024 || h->chunk_size > HSM_BACKUP_CHUNK_MAX ||
	    h->created < 0 || h->seq > INT64_MAX || h->epoch > INT64_MAX ||
	    h->npartitions > HSM_BACKUP_SCOPE_MAX)
		return hsm_fail(st, "bad_value", "backup header out of bounds");
	for (size_t i = 0; i < h->npartitions; i++)
		if (!hsm_partition_name_ok(h->partitions[i]))
			return hsm_fail(st, "bad_value", "invalid partition "
			    "name in the backup's scope");
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	w->fd = fd;
	w->sign = sign;
	w->chunk_size = h->chunk_size;
	if (header_encode(h, &hdr, &hlen, st) != 0)
		goto out;
	if (hlen > HEADER_MAX) {
		hsm_fail(st, "bad_value", "backup header too large");
		goto out;
	}
	put_be32(lenb, (uint32_t)hlen);
	if ((all = malloc(MAGIC_LEN + 4 + hlen)) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	memcpy(all, MAGIC, MAGIC_LEN);
	memcpy(all + MAGIC_LEN, lenb, 4);
	memcpy(all + MAGIC_LEN + 4, hdr, hlen);
	if (sha256(all, MAGIC_LEN + 4 + hlen, NULL, 0, w->hhash) != 0 ||
	    (w->chunks = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(w->chunks, EVP_sha256(), NULL) != 1) {
		hsm_fail(st, "internal", "SHA-256 failed");
		goto out;
	}
	if (derive_key(bkey, h->salt, h->cluster_id, w->key, st) != 0 ||
	    write_all(fd, all, MAGIC_LEN + 4 + hlen, st) != 0)
		goto out;
	w->bytes = MAGIC_LEN + 4 + hlen;
	*out = w;
	w = NULL;
	r = 0;
out:
	free(hdr);
	free(all);
	hsm_backup_writer_free(&w);
	return r;
}

static int
write_chunk(hsm_backup_writer *w, const unsigned char *p, size_t n,
    bool final, hsm_status *st)
{
	size_t need = 5 + 8 + n + TAG_LEN;
	unsigned char aad[41], nonce[12], *rec;
	EVP_CIPHER_CTX *c = NULL;
	int outl = 0, r = -1;

	if (n > HSM_BACKUP_CHUNK_MAX || n > w->chunk_size)
		return hsm_fail(st, "bad_value", "backup chunk of %zu bytes "
		    "exceeds the chunk size %u", n, w->chunk_size);
	if (need > w->cap) {
		unsigned char *b = realloc(w->buf, need);

		if (b == NULL)
			return hsm_fail(st, "no_memory", "out of memory");
		w->buf = b;
		w->cap = need;
	}
	rec = w->buf;
	put_be32(rec, (uint32_t)(need - 4));
	rec[4] = REC_CHUNK;
	put_be64(rec + 5, w->index);
	chunk_aad(w->hhash, w->index, final, aad);
	chunk_nonce(w->index, nonce);
	if ((c = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, w->key, nonce) != 1 ||
	    EVP_EncryptUpdate(c, NULL, &outl, aad, sizeof(aad)) != 1 ||
	    (n > 0 && EVP_EncryptUpdate(c, rec + 13, &outl, p, (int)n) != 1) ||
	    EVP_EncryptFinal_ex(c, rec + 13 + n, &outl) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN,
	    rec + 13 + n) != 1) {
		hsm_fail(st, "internal", "AES-256-GCM failed");
		goto out;
	}
	if (EVP_DigestUpdate(w->chunks, rec, need) != 1) {
		hsm_fail(st, "internal", "SHA-256 failed");
		goto out;
	}
	if (write_all(w->fd, rec, need, st) != 0)
		goto out;
	w->index++;
	w->bytes += need;
	r = 0;
out:
	EVP_CIPHER_CTX_free(c);
	return r;
}

int
hsm_backup_writer_chunk(hsm_backup_writer *w, const unsigned char *p,
    size_t n, hsm_status *st)
{
	/* Only the end marker is empty: a reader without the key relies on it. */
	if (n == 0)
		return 0;
	return write_chunk(w, p, n, false, st);
}

int
hsm_backup_writer_close(hsm_backup_writer *w, uint64_t *bytes, hsm_status *st)
{
	unsigned char msg[sizeof(SIG_CONTEXT) + 64], rec[5 + SIG_LEN];
	EVP_MD_CTX *md = NULL;
	size_t siglen = SIG_LEN;
	int r = -1;

	/* The end marker: an empty final chunk, so truncation shows. */
	if (write_chunk(w, NULL, 0, true, st) != 0)
		return -1;
	if (signed_message(w->hhash, w->chunks, msg) != 0 ||
	    (md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit(md, NULL, NULL, NULL, w->sign) != 1 ||
	    EVP_DigestSign(md, rec + 5, &siglen, msg, sizeof(msg)) != 1 ||
	    siglen != SIG_LEN) {
		hsm_fail(st, "internal", "cannot sign the backup (an Ed25519 "
		    "cluster key is needed)");
		goto out;
	}
	put_be32(rec, 1 + SIG_LEN);
	rec[4] = REC_SIG;
	if (write_all(w->fd, rec, sizeof(rec), st) != 0)
		goto out;
	w->bytes += sizeof(rec);
	if (bytes != NULL)
		*bytes = w->bytes;
	r = 0;
out:
	EVP_MD_CTX_free(md);
	return r;
}

void
hsm_backup_writer_free(hsm_backup_writer **wp)
{
	hsm_backup_writer *w;

	if (wp == NULL || (w = *wp) == NULL)
		return;
	OPENSSL_cleanse(w->key, sizeof(w->key));
	if (w->buf != NULL)
		OPENSSL_cleanse(w->buf, w->cap);
	free(w->buf);
	EVP_MD_CTX_free(w->chunks);
	free(w);
	*wp = NULL;
}

/* ---- reader ----------------------------------------------------------- */

int
hsm_backup_reader_open(int fd, const unsigned char *bkey,
    hsm_backup_reader **out, struct hsm_backup_header *h, hsm_status *st)
{
	hsm_backup_reader *r;
	unsigned char pre[MAGIC_LEN + 4], *all = NULL;
	uint32_t hlen;
	int rc = -1;

	*out = NULL;
	memset(h, 0, sizeof(*h));
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	r->fd = fd;
	if (read_all(fd, pre, sizeof(pre)) != 1 ||
	    memcmp(pre, MAGIC, MAGIC_LEN) != 0) {
		hsm_fail(st, "integrity", "not a backup file (no %s header)",
		    MAGIC);
		goto out;
	}
	hlen = get_be32(pre + MAGIC_LEN);
	if (hlen == 0 || hlen > HEADER_MAX) {
		hsm_fail(st, "integrity", "backup header length %u out of "
		    "bounds", hlen);
		goto out;
	}
	if ((all = malloc(sizeof(pre) + hlen)) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	memcpy(all, pre, sizeof(pre));
	if (read_all(fd, all + sizeof(pre), hlen) != 1) {
		hsm_fail(st, "integrity", "backup truncated in its header");
		goto out;
	}
	if (header_decode(all + sizeof(pre), hlen, h, st) != 0)
		goto out;
	if (sha256(all, sizeof(pre) + hlen, NULL, 0, r->hhash) != 0 ||
	    (r->chunks = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(r->chunks, EVP_sha256(), NULL) != 1) {
		hsm_fail(st, "internal", "SHA-256 failed");
		goto out;
	}
	r->chunk_size = h->chunk_size;
	r->bytes = sizeof(pre) + hlen;
	if (bkey != NULL) {
		if (derive_key(bkey, h->salt, h->cluster_id, r->key, st) != 0)
			goto out;
		r->have_key = true;
	}
	*out = r;
	r = NULL;
	rc = 0;
out:
	free(all);
	if (rc != 0)
		hsm_backup_header_clear(h);
	hsm_backup_reader_free(&r);
	return rc;
}

static int
reserve(hsm_backup_reader *r, size_t need, hsm_status *st)
{
	unsigned char *a, *b;

	if (need <= r->cap)
		return 0;
	if ((a = malloc(need)) == NULL || (b = malloc(need)) == NULL) {
		free(a);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	if (r->plain != NULL)
		OPENSSL_cleanse(r->plain, r->cap);
	free(r->rec);
	free(r->plain);
	r->rec = a;
	r->plain = b;
	r->cap = need;
	return 0;
}

int
hsm_backup_reader_next(hsm_backup_reader *r, const unsigned char **p,
    size_t *n, bool *done, hsm_status *st)
{
	unsigned char lenb[4], aad[41], nonce[12];
	uint32_t len;
	size_t ctlen;
	EVP_CIPHER_CTX *c = NULL;
	int outl = 0, rc;
	bool final = false;

	*p = NULL;
	*n = 0;
	*done = false;
	if (r->done)
		return hsm_fail(st, "internal", "backup read past its end");
	if ((rc = read_all(r->fd, lenb, 4)) != 1)
		return hsm_fail(st, "integrity", "backup truncated after %llu "
		    "chunks: its end marker is missing",
		    (unsigned long long)r->index);
	len = get_be32(lenb);
	/* A chunk: type, index, at most chunk_size bytes, tag. */
	if (len < 1 + 8 + TAG_LEN || len > 1 + 8 + (size_t)r->chunk_size +
	    TAG_LEN)
		return hsm_fail(st, "integrity", "backup chunk %llu: length "
		    "%u out of bounds", (unsigned long long)r->index, len);
	if (reserve(r, (size_t)len + 4, st) != 0)
		return -1;
	memcpy(r->rec, lenb, 4);
	if (read_all(r->fd, r->rec + 4, len) != 1)
		return hsm_fail(st, "integrity", "backup truncated in chunk "
		    "%llu", (unsigned long long)r->index);
	if (r->rec[4] != REC_CHUNK)
		return hsm_fail(st, "integrity", "backup record %llu is not a "
		    "chunk (signature before the end marker?)",
		    (unsigned long long)r->index);
	if (get_be64(r->rec + 5) != r->index)
		return hsm_fail(st, "integrity", "backup chunk %llu found "
		    "where chunk %llu belongs (removed, duplicated or "
		    "reordered)", (unsigned long long)get_be64(r->rec + 5),
		    (unsigned long long)r->index);
	if (EVP_DigestUpdate(r->chunks, r->rec, (size_t)len + 4) != 1)
		return hsm_fail(st, "internal", "SHA-256 failed");
	ctlen = len - 1 - 8 - TAG_LEN;
	r->bytes += (size_t)len + 4;
	if (r->have_key) {
		/* The last chunk is the one that opens with final set. */
		for (int attempt = 0; attempt < 2; attempt++) {
			final = attempt == 1;
			chunk_aad(r->hhash, r->index, final, aad);
			chunk_nonce(r->index, nonce);
			EVP_CIPHER_CTX_free(c);
			if ((c = EVP_CIPHER_CTX_new()) == NULL ||
			    EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL,
			    r->key, nonce) != 1 ||
			    EVP_DecryptUpdate(c, NULL, &outl, aad,
			    sizeof(aad)) != 1 ||
			    (ctlen > 0 && EVP_DecryptUpdate(c, r->plain, &outl,
			    r->rec + 13, (int)ctlen) != 1) ||
			    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
			    r->rec + 13 + ctlen) != 1) {
				EVP_CIPHER_CTX_free(c);
				return hsm_fail(st, "internal",
				    "AES-256-GCM failed");
			}
			if (EVP_DecryptFinal_ex(c, r->plain + ctlen,
			    &outl) == 1)
				break;
			if (attempt == 1) {
				EVP_CIPHER_CTX_free(c);
				OPENSSL_cleanse(r->plain, ctlen);
				return hsm_fail(st, "integrity", "backup chunk "
				    "%llu fails authentication (altered, or "
				    "not made by this cluster)",
				    (unsigned long long)r->index);
			}
		}
		EVP_CIPHER_CTX_free(c);
		*p = r->plain;
		*n = ctlen;
	} else {
		/* Without the key: the end marker is the empty chunk. */
		final = ctlen == 0;
	}
	r->index++;
	if (final) {
		r->done = true;
		*done = true;
	}
	return 0;
}

int
hsm_backup_reader_finish(hsm_backup_reader *r, struct evp_pkey_st *pub,
    hsm_status *st)
{
	unsigned char rec[5 + SIG_LEN], msg[sizeof(SIG_CONTEXT) + 64], extra;
	EVP_MD_CTX *md = NULL;
	int rc = -1;

	if (!r->done)
		return hsm_fail(st, "internal", "backup not read to its end");
	if (read_all(r->fd, rec, sizeof(rec)) != 1 ||
	    get_be32(rec) != 1 + SIG_LEN || rec[4] != REC_SIG)
		return hsm_fail(st, "integrity", "backup signature missing or "
		    "malformed");
	if (read_all(r->fd, &extra, 1) != 0)
		return hsm_fail(st, "integrity", "data after the backup's "
		    "signature");
	r->bytes += sizeof(rec);
	if (pub == NULL)
		return 0;
	if (signed_message(r->hhash, r->chunks, msg) != 0) {
		hsm_fail(st, "internal", "SHA-256 failed");
		goto out;
	}
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestVerifyInit(md, NULL, NULL, NULL, pub) != 1) {
		hsm_fail(st, "internal", "cannot check the signature");
		goto out;
	}
	if (EVP_DigestVerify(md, rec + 5, SIG_LEN, msg, sizeof(msg)) != 1) {
		hsm_fail(st, "integrity", "backup signature does not verify "
		    "(altered, or not signed by this cluster)");
		goto out;
	}
	rc = 0;
out:
	EVP_MD_CTX_free(md);
	return rc;
}

uint64_t
hsm_backup_reader_bytes(const hsm_backup_reader *r)
{
	return r->bytes;
}

uint64_t
hsm_backup_reader_chunks(const hsm_backup_reader *r)
{
	return r->index;
}

void
hsm_backup_reader_free(hsm_backup_reader **rp)
{
	hsm_backup_reader *r;

	if (rp == NULL || (r = *rp) == NULL)
		return;
	OPENSSL_cleanse(r->key, sizeof(r->key));
	if (r->plain != NULL)
		OPENSSL_cleanse(r->plain, r->cap);
	free(r->plain);
	free(r->rec);
	EVP_MD_CTX_free(r->chunks);
	free(r);
	*rp = NULL;
}

int
hsm_backup_verify_fd(int fd, const unsigned char *bkey,
    struct evp_pkey_st *pub, struct hsm_backup_header *h, uint64_t *chunks,
    hsm_status *st)
{
	hsm_backup_reader *r = NULL;
	const unsigned char *p;
	size_t n;
	bool done = false;
	int rc = -1;

	if (hsm_backup_reader_open(fd, bkey, &r, h, st) != 0)
		return -1;
	while (!done)
		if (hsm_backup_reader_next(r, &p, &n, &done, st) != 0)
			goto out;
	if (hsm_backup_reader_finish(r, pub, st) != 0)
		goto out;
	if (chunks != NULL)
		*chunks = hsm_backup_reader_chunks(r);
	rc = 0;
out:
	if (rc != 0)
		hsm_backup_header_clear(h);
	hsm_backup_reader_free(&r);
	return rc;
}
