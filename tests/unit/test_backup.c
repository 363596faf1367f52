/*
 * Unit tests for lib/backup.c: the streaming writer and reader of the
 * backup file format (doc/backup-format.md).  Files are written into a
 * memfd with fixed keys, then read back whole, altered byte by byte,
 * cut, spliced and rebuilt by hand.  Every damaged file must fail with
 * the code "integrity" and a one-line message, and nothing may leak.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "hsmctl.h"

#define MAGIC "HSMCTLBK"
#define TAG_LEN 16
#define SIG_REC 69		/* 00 00 00 41 02 and 64 bytes */
#define END_REC 29		/* the end marker: 4 + 1 + 8 + 16 */
#define MAXREC 64

static const char CID_A[] = "76fd2ad0147c34a82d2a43e316944ddc";
static const char CID_B[] = "0123456789abcdef0123456789abcdef";

/* The fixed keys: two Ed25519 cluster keys and two backup keys. */
static EVP_PKEY *sign_a, *pub_a, *sign_b, *pub_b;
static unsigned char bkey_a[32], bkey_b[32];

/* ---- small helpers ---------------------------------------------------- */

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

/* A failure as the format promises it: "integrity", one line. */
#define assert_integrity(st, needle) do {				\
	const hsm_status *s_ = (st);					\
	assert_string_equal(s_->code, "integrity");			\
	assert_true(s_->message[0] != '\0');				\
	assert_null(strchr(s_->message, '\n'));				\
	assert_null(strchr(s_->message, '\r'));				\
	assert_contains(s_->message, (needle));				\
} while (0)

struct buf {
	unsigned char *p;
	size_t n, cap;
};

static void
buf_add(struct buf *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = b->cap != 0 ? b->cap : 256;

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
buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
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

/* Deterministic, distinct plaintext for chunk `seed`. */
static void
pattern(unsigned char *p, size_t n, unsigned seed)
{
	uint32_t x = 2166136261u ^ seed;

	for (size_t i = 0; i < n; i++) {
		x = x * 16777619u + 0x9e3779b9u;
		p[i] = (unsigned char)(x >> 24);
	}
}

static int
mfd(void)
{
	int fd = memfd_create("hsm-backup-test", MFD_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

static size_t
fd_size(int fd)
{
	struct stat sb;

	assert_int_equal(fstat(fd, &sb), 0);
	return (size_t)sb.st_size;
}

/* Replace the content of fd with p[0..n) and rewind it. */
static void
fd_load(int fd, const unsigned char *p, size_t n)
{
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	if (n > 0)
		assert_int_equal(hsm_write_all(fd, p, n), 0);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
}

/* The whole content of fd. */
static void
fd_slurp(int fd, struct buf *out)
{
	size_t n = fd_size(fd), got = 0;

	memset(out, 0, sizeof(*out));
	out->p = malloc(n + 1);
	assert_non_null(out->p);
	out->cap = n + 1;
	while (got < n) {
		ssize_t r = pread(fd, out->p + got, n - got, (off_t)got);

		assert_true(r > 0);
		got += (size_t)r;
	}
	out->n = n;
}

static EVP_PKEY *
ed25519_from_seed(unsigned char first)
{
	unsigned char seed[32];
	EVP_PKEY *k;

	for (size_t i = 0; i < sizeof(seed); i++)
		seed[i] = (unsigned char)(first + 7 * i);
	k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed,
	    sizeof(seed));
	assert_non_null(k);
	return k;
}

static EVP_PKEY *
public_of(EVP_PKEY *priv)
{
	unsigned char raw[32];
	size_t len = sizeof(raw);
	EVP_PKEY *k;

	assert_int_equal(EVP_PKEY_get_raw_public_key(priv, raw, &len), 1);
	assert_int_equal(len, 32);
	k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, len);
	assert_non_null(k);
	return k;
}

static int
setup_keys(void **state)
{
	(void)state;
	sign_a = ed25519_from_seed(0x01);
	sign_b = ed25519_from_seed(0x80);
	pub_a = public_of(sign_a);
	pub_b = public_of(sign_b);
	for (size_t i = 0; i < 32; i++) {
		bkey_a[i] = (unsigned char)(0xa0 ^ i);
		bkey_b[i] = (unsigned char)(0x50 ^ (3 * i));
	}
	return 0;
}

static int
teardown_keys(void **state)
{
	(void)state;
	EVP_PKEY_free(sign_a);
	EVP_PKEY_free(sign_b);
	EVP_PKEY_free(pub_a);
	EVP_PKEY_free(pub_b);
	return 0;
}

/* ---- headers ---------------------------------------------------------- */

static char part_acme[] = "acme";
static char part_beta[] = "beta-2";
static char *two_parts[] = { part_acme, part_beta };

static void
hdr_init(struct hsm_backup_header *h, const char *cluster_id,
    unsigned char salt, uint32_t chunk_size)
{
	memset(h, 0, sizeof(*h));
	h->format = HSM_BACKUP_FORMAT;
	snprintf(h->id, sizeof(h->id), "%s",
	    "d1c4dfe0e04731ecdc7f98c30dce3285");
	snprintf(h->cluster, sizeof(h->cluster), "%s", "doc");
	snprintf(h->cluster_id, sizeof(h->cluster_id), "%s", cluster_id);
	snprintf(h->node, sizeof(h->node), "%s", "n1");
	h->created = 1796170520;
	h->seq = 10;
	h->epoch = 1;
	h->chunk_size = chunk_size;
	for (size_t i = 0; i < sizeof(h->salt); i++)
		h->salt[i] = (unsigned char)(salt + i);
}

static void
assert_header_eq(const struct hsm_backup_header *a,
    const struct hsm_backup_header *b)
{
	assert_int_equal(a->format, b->format);
	assert_string_equal(a->id, b->id);
	assert_string_equal(a->cluster, b->cluster);
	assert_string_equal(a->cluster_id, b->cluster_id);
	assert_string_equal(a->node, b->node);
	assert_int_equal(a->npartitions, b->npartitions);
	for (size_t i = 0; i < a->npartitions; i++)
		assert_string_equal(a->partitions[i], b->partitions[i]);
	if (a->npartitions == 0)
		assert_null(b->partitions);
	assert_true(a->created == b->created);
	assert_true(a->seq == b->seq);
	assert_true(a->epoch == b->epoch);
	assert_int_equal(a->chunk_size, b->chunk_size);
	assert_memory_equal(a->salt, b->salt, sizeof(a->salt));
}

static void
assert_header_zero(const struct hsm_backup_header *h)
{
	static const struct hsm_backup_header zero;

	assert_null(h->partitions);
	assert_int_equal(h->npartitions, 0);
	assert_memory_equal(h, &zero, sizeof(zero));
}

/* ---- writing ---------------------------------------------------------- */

/*
 * A backup of chunks with the plaintext sizes sizes[0..n), chunk i being
 * pattern(seed + i), into *out.  Checks close's byte count.
 */
static void
make_backup(const struct hsm_backup_header *h, const unsigned char *bkey,
    EVP_PKEY *sign, const size_t *sizes, size_t n, unsigned seed,
    struct buf *out)
{
	hsm_backup_writer *w = NULL;
	hsm_status st;
	uint64_t bytes = 0;
	int fd = mfd();

	memset(&st, 0, sizeof(st));
	assert_int_equal(hsm_backup_writer_open(fd, h, bkey, sign, &w, &st), 0);
	assert_non_null(w);
	for (size_t i = 0; i < n; i++) {
		unsigned char *p = malloc(sizes[i] + 1);

		assert_non_null(p);
		pattern(p, sizes[i], seed + (unsigned)i);
		assert_int_equal(hsm_backup_writer_chunk(w, p, sizes[i], &st),
		    0);
		free(p);
	}
	assert_int_equal(hsm_backup_writer_close(w, &bytes, &st), 0);
	hsm_backup_writer_free(&w);
	assert_null(w);
	hsm_backup_writer_free(&w);		/* harmless twice */
	hsm_backup_writer_free(NULL);
	assert_true(bytes == fd_size(fd));
	fd_slurp(fd, out);
	close(fd);
}

/* Where each record of a good file is. */
struct layout {
	size_t hend;			/* 12 + H */
	size_t nrec;			/* chunk records, end marker included */
	size_t off[MAXREC], len[MAXREC];	/* offset, 4 + L */
	size_t sig;			/* offset of the signature record */
};

static void
parse(const struct buf *b, struct layout *l)
{
	size_t off;

	memset(l, 0, sizeof(*l));
	assert_true(b->n >= 12);
	assert_memory_equal(b->p, MAGIC, 8);
	l->hend = 12 + get_be32(b->p + 8);
	off = l->hend;
	for (;;) {
		uint32_t len;

		assert_true(off + 4 <= b->n);
		len = get_be32(b->p + off);
		assert_true(off + 4 + len <= b->n);
		if (b->p[off + 4] == 2) {
			l->sig = off;
			assert_int_equal(len, 65);
			assert_int_equal(off + SIG_REC, b->n);
			break;
		}
		assert_int_equal(b->p[off + 4], 1);
		assert_true(l->nrec < MAXREC);
		assert_true(get_be64(b->p + off + 5) == l->nrec);
		l->off[l->nrec] = off;
		l->len[l->nrec] = 4 + len;
		l->nrec++;
		off += 4 + len;
	}
	/* The end marker: 00 00 00 19 01, no ciphertext. */
	assert_true(l->nrec >= 1);
	assert_int_equal(l->len[l->nrec - 1], END_REC);
}

/* ---- reading ---------------------------------------------------------- */

/* verify_fd of p[0..n) through fd; the header is cleared afterwards. */
static int
verify_buf(int fd, const unsigned char *p, size_t n, const unsigned char *bkey,
    EVP_PKEY *pub, uint64_t *chunks, hsm_status *st)
{
	struct hsm_backup_header h;
	uint64_t c = 12345;
	int rc;

	fd_load(fd, p, n);
	memset(&h, 0xa5, sizeof(h));
	memset(st, 0, sizeof(*st));
	rc = hsm_backup_verify_fd(fd, bkey, pub, &h, &c, st);
	if (rc != 0) {
		assert_int_equal(rc, -1);
		assert_header_zero(&h);
		assert_true(c == 12345);	/* untouched on failure */
	} else {
		hsm_backup_header_clear(&h);
		if (chunks != NULL)
			*chunks = c;
	}
	return rc;
}

static void
expect_fail(int fd, const unsigned char *p, size_t n,
    const unsigned char *bkey, EVP_PKEY *pub, const char *needle)
{
	hsm_status st;

	assert_int_equal(verify_buf(fd, p, n, bkey, pub, NULL, &st), -1);
	assert_integrity(&st, needle);
}

static void
expect_ok(int fd, const unsigned char *p, size_t n,
    const unsigned char *bkey, EVP_PKEY *pub, uint64_t chunks)
{
	hsm_status st;
	uint64_t c = 0;

	if (verify_buf(fd, p, n, bkey, pub, &c, &st) != 0) {
		print_error("unexpected failure: %s: %s\n", st.code,
		    st.message);
		fail();
	}
	assert_true(c == chunks);
}

/*
 * Read a file chunk by chunk with the reader and compare with what
 * make_backup wrote.  bkey NULL: no plaintext is expected.
 */
static void
read_back(const struct buf *file, const struct hsm_backup_header *want,
    const unsigned char *bkey, EVP_PKEY *pub, const size_t *sizes, size_t n,
    unsigned seed)
{
	hsm_backup_reader *r = NULL;
	struct hsm_backup_header h;
	hsm_status st;
	const unsigned char *p = (const unsigned char *)"x";
	size_t len = 99;
	bool done = true;
	int fd = mfd();

	memset(&st, 0, sizeof(st));
	fd_load(fd, file->p, file->n);
	assert_int_equal(hsm_backup_reader_open(fd, bkey, &r, &h, &st), 0);
	assert_non_null(r);
	assert_header_eq(want, &h);
	assert_true(hsm_backup_reader_bytes(r) ==
	    12 + get_be32(file->p + 8));
	/* The signature cannot be checked before the end. */
	assert_int_equal(hsm_backup_reader_finish(r, pub, &st), -1);
	assert_string_equal(st.code, "internal");
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(hsm_backup_reader_next(r, &p, &len, &done,
		    &st), 0);
		assert_false(done);
		if (bkey != NULL) {
			unsigned char *exp = malloc(sizes[i] + 1);

			assert_non_null(exp);
			pattern(exp, sizes[i], seed + (unsigned)i);
			assert_non_null(p);
			assert_int_equal(len, sizes[i]);
			assert_memory_equal(p, exp, sizes[i]);
			free(exp);
		} else {
			assert_null(p);
			assert_int_equal(len, 0);
		}
		assert_true(hsm_backup_reader_chunks(r) == i + 1);
	}
	/* The end marker. */
	assert_int_equal(hsm_backup_reader_next(r, &p, &len, &done, &st), 0);
	assert_true(done);
	assert_int_equal(len, 0);
	assert_true(hsm_backup_reader_chunks(r) == n + 1);
	/* Nothing past it. */
	assert_int_equal(hsm_backup_reader_next(r, &p, &len, &done, &st), -1);
	assert_string_equal(st.code, "internal");
	assert_false(done);
	assert_null(p);
	memset(&st, 0, sizeof(st));
	assert_int_equal(hsm_backup_reader_finish(r, pub, &st), 0);
	assert_true(hsm_backup_reader_bytes(r) == file->n);
	hsm_backup_reader_free(&r);
	assert_null(r);
	hsm_backup_reader_free(&r);
	hsm_backup_reader_free(NULL);
	hsm_backup_header_clear(&h);
	assert_header_zero(&h);
	close(fd);
}

/* ---- 1. round trips --------------------------------------------------- */

static void
round_trip(const struct hsm_backup_header *h, const size_t *sizes, size_t n)
{
	struct buf f = { 0 };
	struct hsm_backup_header got;
	hsm_status st;
	uint64_t chunks = 0;
	size_t expect = 12;
	struct layout l;
	int fd = mfd();

	make_backup(h, bkey_a, sign_a, sizes, n, 100, &f);
	parse(&f, &l);
	assert_int_equal(l.nrec, n + 1);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(l.len[i], 29 + sizes[i]);
		expect += 29 + sizes[i];
	}
	expect += l.hend - 12 + END_REC + SIG_REC;
	assert_int_equal(f.n, expect);

	read_back(&f, h, bkey_a, pub_a, sizes, n, 100);

	/* verify_fd: the header, and the chunks with the end marker. */
	fd_load(fd, f.p, f.n);
	memset(&st, 0, sizeof(st));
	assert_int_equal(hsm_backup_verify_fd(fd, bkey_a, pub_a, &got,
	    &chunks, &st), 0);
	assert_header_eq(h, &got);
	assert_true(chunks == n + 1);
	hsm_backup_header_clear(&got);
	/* chunks may be NULL. */
	fd_load(fd, f.p, f.n);
	assert_int_equal(hsm_backup_verify_fd(fd, bkey_a, pub_a, &got, NULL,
	    &st), 0);
	hsm_backup_header_clear(&got);
	close(fd);
	buf_free(&f);
}

static void
test_round_trip_whole_node(void **state)
{
	static const size_t sizes[] = { 1, 17, 1000, 4095, 4096, 3, 2048 };
	struct hsm_backup_header h;

	(void)state;
	hdr_init(&h, CID_A, 0x11, 4096);
	round_trip(&h, sizes, sizeof(sizes) / sizeof(sizes[0]));
}

static void
test_round_trip_scope(void **state)
{
	static const size_t sizes[] = { 1024, 1, 333 };
	struct hsm_backup_header h;

	(void)state;
	hdr_init(&h, CID_A, 0x22, 1024);
	h.partitions = two_parts;
	h.npartitions = 2;
	round_trip(&h, sizes, sizeof(sizes) / sizeof(sizes[0]));
}

/* Nothing but the end marker and the signature. */
static void
test_round_trip_no_chunks(void **state)
{
	struct hsm_backup_header h;
	struct buf f = { 0 };
	struct layout l;
	int fd = mfd();

	(void)state;
	hdr_init(&h, CID_A, 0x33, HSM_BACKUP_CHUNK_DEFAULT);
	make_backup(&h, bkey_a, sign_a, NULL, 0, 0, &f);
	parse(&f, &l);
	assert_int_equal(l.nrec, 1);
	assert_int_equal(f.n, l.hend + END_REC + SIG_REC);
	read_back(&f, &h, bkey_a, pub_a, NULL, 0, 0);
	read_back(&f, &h, NULL, pub_a, NULL, 0, 0);
	expect_ok(fd, f.p, f.n, bkey_a, pub_a, 1);
	expect_fail(fd, f.p, f.n, bkey_b, pub_a, "chunk 0 fails authentication");
	close(fd);
	buf_free(&f);
}

/* The largest chunk the format allows, and the header's largest chunk_size. */
static void
test_round_trip_max_chunk(void **state)
{
	static const size_t sizes[] = { HSM_BACKUP_CHUNK_MAX, 1 };
	struct hsm_backup_header h;

	(void)state;
	hdr_init(&h, CID_A, 0x44, HSM_BACKUP_CHUNK_MAX);
	round_trip(&h, sizes, 2);
}

/* ---- 2. without the backup key ---------------------------------------- */

static void
test_without_key(void **state)
{
	static const size_t sizes[] = { 10, 200, 1 };
	struct hsm_backup_header h;
	struct buf f = { 0 };
	int fd = mfd();

	(void)state;
	hdr_init(&h, CID_A, 0x55, 1024);
	h.partitions = two_parts;
	h.npartitions = 1;
	make_backup(&h, bkey_a, sign_a, sizes, 3, 7, &f);
	/* Structure and signature; structure only; no plaintext. */
	read_back(&f, &h, NULL, pub_a, sizes, 3, 7);
	read_back(&f, &h, NULL, NULL, sizes, 3, 7);
	expect_ok(fd, f.p, f.n, NULL, pub_a, 4);
	expect_ok(fd, f.p, f.n, NULL, NULL, 4);
	/* With the key and no public key: the chunks, not the signature. */
	expect_ok(fd, f.p, f.n, bkey_a, NULL, 4);
	/* Another cluster's public key still shows without the backup key. */
	expect_fail(fd, f.p, f.n, NULL, pub_b, "signature does not verify");
	close(fd);
	buf_free(&f);
}

/* ---- the format as documented, checked independently ------------------ */

static void
hkdf_sha256(const unsigned char *ikm, size_t ikmlen,
    const unsigned char *salt, size_t saltlen, const unsigned char *info,
    size_t infolen, unsigned char out[32])
{
	unsigned char prk[32], t[128];
	unsigned int l = 0;

	assert_true(infolen + 1 <= sizeof(t));
	assert_non_null(HMAC(EVP_sha256(), salt, (int)saltlen, ikm, ikmlen,
	    prk, &l));
	assert_int_equal(l, 32);
	memcpy(t, info, infolen);
	t[infolen] = 1;
	assert_non_null(HMAC(EVP_sha256(), prk, 32, t, infolen + 1, out, &l));
	assert_int_equal(l, 32);
}

static void
doc_key(const unsigned char *bkey, const unsigned char salt[32],
    const char *cluster_id, bool with_nul, unsigned char k[32])
{
	unsigned char info[128];
	size_t n = 0;

	memcpy(info, "hsmctl-backup-key-v1", 20);
	n = 20;
	if (with_nul)
		info[n++] = 0;
	memcpy(info + n, cluster_id, strlen(cluster_id));
	n += strlen(cluster_id);
	hkdf_sha256(bkey, 32, salt, 32, info, n, k);
}

static void
sha256(const unsigned char *p, size_t n, unsigned char out[32])
{
	unsigned int l = 0;

	assert_int_equal(EVP_Digest(p, n, out, &l, EVP_sha256(), NULL), 1);
	assert_int_equal(l, 32);
}

/* AES-256-GCM open of one chunk record; 1 if the tag verifies. */
static int
gcm_open(const unsigned char k[32], const unsigned char hh[32],
    const unsigned char *rec, size_t reclen, bool final, unsigned char *out)
{
	unsigned char aad[41], nonce[12];
	size_t ctlen = reclen - 13 - TAG_LEN;
	uint64_t index = get_be64(rec + 5);
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int outl = 0, ok;

	assert_non_null(c);
	memcpy(aad, hh, 32);
	put_be64(aad + 32, index);
	aad[40] = final ? 1 : 0;
	memset(nonce, 0, 4);
	put_be64(nonce + 4, index);
	ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, k, nonce) == 1 &&
	    EVP_DecryptUpdate(c, NULL, &outl, aad, sizeof(aad)) == 1 &&
	    (ctlen == 0 || EVP_DecryptUpdate(c, out, &outl, rec + 13,
	    (int)ctlen) == 1) &&
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
	    (void *)(uintptr_t)(rec + 13 + ctlen)) == 1 &&
	    EVP_DecryptFinal_ex(c, out + ctlen, &outl) == 1;
	EVP_CIPHER_CTX_free(c);
	return ok;
}

/*
 * The bytes match doc/backup-format.md: the layout, K = HKDF(BK, salt,
 * "hsmctl-backup-key-v1" 0x00 cluster_id), the nonce and AAD of every
 * chunk, the end marker's final flag, and the signed message.
 */
static void
test_matches_spec(void **state)
{
	static const size_t sizes[] = { 50, 1024, 7 };
	struct hsm_backup_header h;
	struct buf f = { 0 };
	struct layout l;
	unsigned char hh[32], k[32], kx[32], ch[32], plain[1100], exp[1100];
	unsigned char msg[17 + 64];
	EVP_MD_CTX *md;

	(void)state;
	hdr_init(&h, CID_A, 0x66, 1024);
	make_backup(&h, bkey_a, sign_a, sizes, 3, 40, &f);
	parse(&f, &l);
	assert_int_equal(l.nrec, 4);
	assert_int_equal(l.off[0], l.hend);
	/* The header is a CBOR map of 11 (0xab) right after magic and H. */
	assert_int_equal(f.p[12], 0xab);
	sha256(f.p, l.hend, hh);
	doc_key(bkey_a, h.salt, CID_A, true, k);
	for (size_t i = 0; i < 3; i++) {
		const unsigned char *rec = f.p + l.off[i];

		assert_int_equal(get_be32(rec), 25 + sizes[i]);
		assert_int_equal(rec[4], 1);
		assert_true(get_be64(rec + 5) == i);
		assert_true(gcm_open(k, hh, rec, l.len[i], false, plain));
		assert_false(gcm_open(k, hh, rec, l.len[i], true, plain));
		pattern(exp, sizes[i], 40 + (unsigned)i);
		assert_memory_equal(plain, exp, sizes[i]);
	}
	/* The end marker: L = 25, index 3, final = 1 only. */
	{
		const unsigned char *rec = f.p + l.off[3];
		static const unsigned char head[] = { 0, 0, 0, 0x19, 1,
		    0, 0, 0, 0, 0, 0, 0, 3 };

		assert_memory_equal(rec, head, sizeof(head));
		assert_true(gcm_open(k, hh, rec, END_REC, true, plain));
		assert_false(gcm_open(k, hh, rec, END_REC, false, plain));
	}
	/* The key is bound to the cluster id, with the 0x00 separator. */
	doc_key(bkey_a, h.salt, CID_B, true, kx);
	assert_false(gcm_open(kx, hh, f.p + l.off[0], l.len[0], false, plain));
	doc_key(bkey_a, h.salt, CID_A, false, kx);
	assert_false(gcm_open(kx, hh, f.p + l.off[0], l.len[0], false, plain));
	doc_key(bkey_b, h.salt, CID_A, true, kx);
	assert_false(gcm_open(kx, hh, f.p + l.off[0], l.len[0], false, plain));
	/* The signature record and what it signs. */
	assert_int_equal(get_be32(f.p + l.sig), 65);
	assert_int_equal(f.p[l.sig + 4], 2);
	sha256(f.p + l.hend, l.sig - l.hend, ch);
	memcpy(msg, "hsmctl-backup-v1", 17);	/* with its NUL */
	memcpy(msg + 17, hh, 32);
	memcpy(msg + 49, ch, 32);
	md = EVP_MD_CTX_new();
	assert_non_null(md);
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, NULL, NULL, pub_a), 1);
	assert_int_equal(EVP_DigestVerify(md, f.p + l.sig + 5, 64, msg,
	    sizeof(msg)), 1);
	EVP_MD_CTX_free(md);
	buf_free(&f);
}

/* ---- 3. failures ------------------------------------------------------ */

static void
test_wrong_backup_key(void **state)
{
	static const size_t sizes[] = { 100, 5 };
	struct hsm_backup_header h, got;
	hsm_backup_reader *r = NULL;
	struct buf f = { 0 };
	hsm_status st;
	const unsigned char *p;
	size_t n;
	bool done;
	int fd = mfd();

	(void)state;
	hdr_init(&h, CID_A, 0x77, 1024);
	h.partitions = two_parts;
	h.npartitions = 2;
	make_backup(&h, bkey_a, sign_a, sizes, 2, 1, &f);
	expect_fail(fd, f.p, f.n, bkey_b, pub_a,
	    "backup chunk 0 fails authentication (altered, or not made by "
	    "this cluster)");
	expect_fail(fd, f.p, f.n, bkey_b, NULL, "chunk 0 fails authentication");
	/* The header is readable with any key; the first chunk is not. */
	fd_load(fd, f.p, f.n);
	memset(&st, 0, sizeof(st));
	assert_int_equal(hsm_backup_reader_open(fd, bkey_b, &r, &got, &st), 0);
	assert_header_eq(&h, &got);
	assert_int_equal(hsm_backup_reader_next(r, &p, &n, &done, &st), -1);
	assert_integrity(&st, "chunk 0 fails authentication");
	assert_null(p);
	assert_int_equal(n, 0);
	assert_false(done);
	hsm_backup_reader_free(&r);
	hsm_backup_header_clear(&got);
	close(fd);
	buf_free(&f);
}

static void
test_wrong_public_key(void **state)
{
	static const size_t sizes[] = { 64 };
	struct hsm_backup_header h;
	struct buf f = { 0 }, g = { 0 };
	int fd = mfd();

	(void)state;
	hdr_init(&h, CID_A, 0x78, 1024);
	make_backup(&h, bkey_a, sign_a, sizes, 1, 1, &f);
	expect_fail(fd, f.p, f.n, bkey_a, pub_b,
	    "backup signature does not verify (altered, or not signed by "
	    "this cluster)");
	expect_fail(fd, f.p, f.n, NULL, pub_b, "signature does not verify");
	/* The same content signed by the other cluster key. */
	make_backup(&h, bkey_a, sign_b, sizes, 1, 1, &g);
	assert_int_equal(f.n, g.n);
	assert_memory_equal(f.p, g.p, f.n - 64);
	expect_ok(fd, g.p, g.n, bkey_a, pub_b, 2);
	expect_fail(fd, g.p, g.n, bkey_a, pub_a, "signature does not verify");
	/* Its signature put on the first file: still not ours. */
	memcpy(g.p + g.n - 64, f.p + f.n - 64, 64);
	expect_ok(fd, g.p, g.n, bkey_a, pub_a, 2);
	expect_fail(fd, g.p, g.n, bkey_a, pub_b, "signature does not verify");
	close(fd);
	buf_free(&f);
	buf_free(&g);
}

/*
 * Two backups alike but for the cluster id, with the same backup key and
 * salt: neither's chunks, nor header, fit the other.
 */
static void
test_other_cluster_id(void **state)
{
	static const size_t sizes[] = { 30, 30 };
	struct hsm_backup_header ha, hb;
	struct buf a = { 0 }, b = { 0 }, m = { 0 };
	struct layout la, lb;
	int fd = mfd();

	(void)state;
	hdr_init(&ha, CID_A, 0x79, 1024);
	hdr_init(&hb, CID_B, 0x79, 1024);
	make_backup(&ha, bkey_a, sign_a, sizes, 2, 5, &a);
	make_backup(&hb, bkey_a, sign_a, sizes, 2, 5, &b);
	parse(&a, &la);
	parse(&b, &lb);
	assert_int_equal(a.n, b.n);
	assert_int_equal(la.hend, lb.hend);
	expect_ok(fd, a.p, a.n, bkey_a, pub_a, 3);
	expect_ok(fd, b.p, b.n, bkey_a, pub_a, 3);
	/*
	 * Same plaintext, backup key, salt and nonce: the cluster id alone
	 * changes the ciphertext (not only the tag, which the header hash
	 * changes anyway), so it is in the key.
	 */
	for (size_t i = 0; i < 2; i++)
		assert_memory_not_equal(a.p + la.off[i] + 13,
		    b.p + lb.off[i] + 13, 30);

	/* B's header on A's chunks and signature. */
	buf_add(&m, b.p, lb.hend);
	buf_add(&m, a.p + la.hend, a.n - la.hend);
	expect_fail(fd, m.p, m.n, bkey_a, pub_a, "chunk 0 fails authentication");
	expect_fail(fd, m.p, m.n, NULL, pub_a, "signature does not verify");
	m.n = 0;
	/* A's chunk 1 in B. */
	buf_add(&m, b.p, lb.off[1]);
	buf_add(&m, a.p + la.off[1], la.len[1]);
	buf_add(&m, b.p + lb.off[2], b.n - lb.off[2]);
	assert_int_equal(m.n, b.n);
	expect_fail(fd, m.p, m.n, bkey_a, pub_a, "chunk 1 fails authentication");
	expect_fail(fd, m.p, m.n, NULL, pub_a, "signature does not verify");
	m.n = 0;
	/* A's end marker in B. */
	buf_add(&m, b.p, lb.off[2]);
	buf_add(&m, a.p + la.off[2], la.len[2]);
	buf_add(&m, b.p + lb.sig, SIG_REC);
	expect_fail(fd, m.p, m.n, bkey_a, pub_a, "chunk 2 fails authentication");
	expect_fail(fd, m.p, m.n, NULL, pub_a, "signature does not verify");
	close(fd);
	buf_free(&a);
	buf_free(&b);
	buf_free(&m);
}

/* A small file for the exhaustive tests: 2 data chunks. */
static void
small_file(struct buf *f)
{
	static const size_t sizes[] = { 5, 40 };
	struct hsm_backup_header h;

	hdr_init(&h, CID_A, 0x90, 1024);
	h.partitions = two_parts;
	h.npartitions = 2;
	make_backup(&h, bkey_a, sign_a, sizes, 2, 9, f);
}

/*
 * The core property: any single altered byte anywhere is found, with the
 * backup key and the public key, and with the public key alone; with the
 * backup key alone everywhere but in the signature's 64 bytes.
 */
static void
test_every_byte_flip(void **state)
{
	static const unsigned char masks[] = { 0x01, 0x80, 0xff };
	struct buf f = { 0 };
	hsm_status st;
	int fd = mfd();

	(void)state;
	small_file(&f);
	expect_ok(fd, f.p, f.n, bkey_a, pub_a, 3);
	for (size_t off = 0; off < f.n; off++) {
		for (size_t m = 0; m < sizeof(masks); m++) {
			f.p[off] ^= masks[m];
			if (verify_buf(fd, f.p, f.n, bkey_a, pub_a, NULL,
			    &st) != -1) {
				print_error("flip 0x%02x at %zu of %zu "
				    "accepted\n", masks[m], off, f.n);
				fail();
			}
			assert_integrity(&st, "");
			assert_int_equal(verify_buf(fd, f.p, f.n, NULL, pub_a,
			    NULL, &st), -1);
			assert_integrity(&st, "");
			if (off < f.n - 64) {
				assert_int_equal(verify_buf(fd, f.p, f.n,
				    bkey_a, NULL, NULL, &st), -1);
				assert_integrity(&st, "");
			}
			f.p[off] ^= masks[m];
		}
	}
	expect_ok(fd, f.p, f.n, bkey_a, pub_a, 3);
	close(fd);
	buf_free(&f);
}

/* Every proper prefix fails, even with structure checks only. */
static void
test_truncation_every_length(void **state)
{
	struct buf f = { 0 };
	struct layout l;
	hsm_status st;
	int fd = mfd();

	(void)state;
	small_file(&f);
	parse(&f, &l);
	for (size_t n = 0; n < f.n; n++) {
		const char *want;

		bool in_len = false;

		for (size_t i = 0; i < l.nrec; i++)
			in_len |= n >= l.off[i] && n < l.off[i] + 4;
		if (n < 12)
			want = "not a backup file (no HSMCTLBK header)";
		else if (n < l.hend)
			want = "backup truncated in its header";
		else if (in_len)
			want = "its end marker is missing";
		else if (n < l.sig)
			want = "backup truncated in chunk";
		else
			want = "backup signature missing or malformed";
		assert_int_equal(verify_buf(fd, f.p, n, bkey_a, pub_a, NULL,
		    &st), -1);
		assert_integrity(&st, want);
		assert_int_equal(verify_buf(fd, f.p, n, NULL, NULL, NULL,
		    &st), -1);
		assert_integrity(&st, want);
	}
	/* The messages name the chunk. */
	expect_fail(fd, f.p, l.off[1], bkey_a, pub_a,
	    "backup truncated after 1 chunks: its end marker is missing");
	expect_fail(fd, f.p, l.off[1] + 20, bkey_a, pub_a,
	    "backup truncated in chunk 1");
	expect_fail(fd, f.p, l.off[1] + 2, bkey_a, pub_a,
	    "backup truncated after 1 chunks");
	close(fd);
	buf_free(&f);
}

/* Four data chunks; records 0..3, the end marker 4. */
static void
four_chunks(struct buf *f, struct layout *l)
{
	static const size_t sizes[] = { 11, 22, 33, 44 };
	struct hsm_backup_header h;

	hdr_init(&h, CID_A, 0xa0, 1024);
	make_backup(&h, bkey_a, sign_a, sizes, 4, 20, f);
	parse(f, l);
	assert_int_equal(l->nrec, 5);
}

/* f's header, then its records in the order of idx[] (-1 ends), then sig. */
static void
rebuild(const struct buf *f, const struct layout *l, const int *idx,
    bool renumber, struct buf *out)
{
	size_t k = 0;

	out->n = 0;
	buf_add(out, f->p, l->hend);
	for (; idx[k] >= 0; k++) {
		size_t at = out->n;

		buf_add(out, f->p + l->off[idx[k]], l->len[idx[k]]);
		if (renumber)
			put_be64(out->p + at + 5, k);
	}
	buf_add(out, f->p + l->sig, SIG_REC);
}

static void
test_chunks_moved(void **state)
{
	struct buf f = { 0 }, m = { 0 };
	struct layout l;
	int fd = mfd();

	(void)state;
	four_chunks(&f, &l);
	rebuild(&f, &l, (const int[]){ 0, 1, 2, 3, 4, -1 }, false, &m);
	assert_int_equal(m.n, f.n);
	assert_memory_equal(m.p, f.p, f.n);
	expect_ok(fd, m.p, m.n, bkey_a, pub_a, 5);

	/* Removed, duplicated, swapped: the index shows, even unkeyed. */
	rebuild(&f, &l, (const int[]){ 0, 2, 3, 4, -1 }, false, &m);
	expect_fail(fd, m.p, m.n, bkey_a, pub_a,
	    "backup chunk 2 found where chunk 1 belongs (removed, duplicated "
	    "or reordered)");
	expect_fail(fd, m.p, m.n, NULL, NULL, "chunk 2 found where chunk 1");
	rebuild(&f, &l, (const int[]){ 0, 0, 1, 2, 3, 4, -1 }, false, &m);
	expect_fail(fd, m.p, m.n, bkey_a, pub_a, "chunk 0 found where chunk 1");
	expect_fail(fd, m.p, m.n, NULL, NULL, "chunk 0 found where chunk 1");
	rebuild(&f, &l, (const int[]){ 1, 0, 2, 3, 4, -1 }, false, &m);
	expect_fail(fd, m.p, m.n, bkey_a, pub_a, "chunk 1 found where chunk 0");
	rebuild(&f, &l, (const int[]){ 0, 1, 3, 2, 4, -1 }, false, &m);
	expect_fail(fd, m.p, m.n, NULL, NULL, "chunk 3 found where chunk 2");
	/* The last data chunk removed. */
	rebuild(&f, &l, (const int[]){ 0, 1, 2, 4, -1 }, false, &m);
	expect_fail(fd, m.p, m.n, bkey_a, pub_a, "chunk 4 found where chunk 3");
	/* No end marker: the signature comes too early. */
	rebuild(&f, &l, (const int[]){ 0, 1, 2, 3, -1 }, false, &m);
	expect_fail(fd, m.p, m.n, bkey_a, pub_a,
	    "backup record 4 is not a chunk (signature before the end "
	    "marker?)");
	expect_fail(fd, m.p, m.n, NULL, NULL, "record 4 is not a chunk");
	/* A duplicated end marker: data after the "signature". */
	rebuild(&f, &l, (const int[]){ 0, 1, 2, 3, 4, 4, -1 }, false, &m);
	expect_fail(fd, m.p, m.n, bkey_a, pub_a,
	    "backup signature missing or malformed");

	/* Index fields rewritten to hide the move: the key, the signature. */
	static const int moves[][7] = {
		{ 0, 2, 3, 4, -1 },		/* removed */
		{ 0, 0, 1, 2, 3, 4, -1 },	/* duplicated */
		{ 1, 0, 2, 3, 4, -1 },		/* swapped */
		{ 0, 1, 2, 4, -1 },		/* the last removed */
		{ 0, 1, 4, -1 },		/* the end moved up */
		{ 4, -1 },			/* the end alone */
	};
	static const char *const keyed[] = {
		"chunk 1 fails authentication",
		"chunk 1 fails authentication",
		"chunk 0 fails authentication",
		"chunk 3 fails authentication",
		"chunk 2 fails authentication",
		"chunk 0 fails authentication",
	};
	for (size_t i = 0; i < sizeof(moves) / sizeof(moves[0]); i++) {
		rebuild(&f, &l, moves[i], true, &m);
		expect_fail(fd, m.p, m.n, bkey_a, pub_a, keyed[i]);
		expect_fail(fd, m.p, m.n, bkey_a, NULL, keyed[i]);
		expect_fail(fd, m.p, m.n, NULL, pub_a,
		    "signature does not verify");
	}
	/* A data chunk renumbered as the end marker's place: not the end. */
	rebuild(&f, &l, (const int[]){ 0, 1, 2, 3, 3, -1 }, true, &m);
	expect_fail(fd, m.p, m.n, bkey_a, pub_a, "chunk 4 fails authentication");
	close(fd);
	buf_free(&f);
	buf_free(&m);
}

static void
test_trailing_bytes(void **state)
{
	struct buf f = { 0 }, m = { 0 };
	struct layout l;
	int fd = mfd();

	(void)state;
	small_file(&f);
	parse(&f, &l);
	/* One byte, a second signature, a whole second copy. */
	buf_add(&m, f.p, f.n);
	buf_add(&m, "", 1);
	expect_fail(fd, m.p, m.n, bkey_a, pub_a,
	    "data after the backup's signature");
	expect_fail(fd, m.p, m.n, NULL, NULL, "data after the backup's");
	m.n = f.n;
	buf_add(&m, f.p + l.sig, SIG_REC);
	expect_fail(fd, m.p, m.n, bkey_a, pub_a, "data after the backup's");
	m.n = f.n;
	buf_add(&m, f.p, f.n);
	expect_fail(fd, m.p, m.n, bkey_a, pub_a, "data after the backup's");
	expect_fail(fd, m.p, m.n, NULL, NULL, "data after the backup's");
	close(fd);
	buf_free(&f);
	buf_free(&m);
}

/* The magic, H and the start of the header. */
static void
test_header_length(void **state)
{
	struct buf f = { 0 }, m = { 0 };
	struct layout l;
	unsigned char pre[12];
	hsm_status st;
	int fd = mfd();
	static const struct {
		uint32_t h;
		const char *want;
	} cases[] = {
		{ 0, "backup header length 0 out of bounds" },
		{ 65537, "backup header length 65537 out of bounds" },
		{ 0xffffffffu, "backup header length 4294967295 out of bounds" },
		{ 65536, "backup truncated in its header" },
		{ 1, "backup header is not valid CBOR" },
	};

	(void)state;
	small_file(&f);
	parse(&f, &l);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		m.n = 0;
		memcpy(pre, MAGIC, 8);
		put_be32(pre + 8, cases[i].h);
		buf_add(&m, pre, 12);
		buf_add(&m, f.p + 12, f.n - 12);
		expect_fail(fd, m.p, m.n, bkey_a, pub_a, cases[i].want);
		expect_fail(fd, m.p, m.n, NULL, NULL, cases[i].want);
	}
	/* H one short, one long: the map does not fill it exactly. */
	m.n = 0;
	buf_add(&m, f.p, f.n);
	put_be32(m.p + 8, (uint32_t)(l.hend - 12 - 1));
	expect_fail(fd, m.p, m.n, bkey_a, pub_a, "not valid CBOR");
	put_be32(m.p + 8, (uint32_t)(l.hend - 12 + 1));
	expect_fail(fd, m.p, m.n, bkey_a, pub_a, "not valid CBOR");
	/* A long header the reader has to read: 65536 bytes of nothing. */
	m.n = 0;
	memcpy(pre, MAGIC, 8);
	put_be32(pre + 8, 65536);
	buf_add(&m, pre, 12);
	{
		unsigned char *z = calloc(1, 65536);

		assert_non_null(z);
		buf_add(&m, z, 65536);
		free(z);
	}
	expect_fail(fd, m.p, m.n, bkey_a, pub_a, "not valid CBOR");
	/* Not the magic; an empty file; a file of the magic alone. */
	m.n = 0;
	buf_add(&m, f.p, f.n);
	m.p[7] = 'L';
	expect_fail(fd, m.p, m.n, bkey_a, pub_a, "not a backup file");
	expect_fail(fd, m.p, 0, bkey_a, pub_a, "not a backup file");
	expect_fail(fd, f.p, 8, NULL, NULL, "not a backup file");
	assert_int_equal(verify_buf(fd, f.p, 11, NULL, NULL, NULL, &st), -1);
	assert_integrity(&st, "not a backup file");
	close(fd);
	buf_free(&f);
	buf_free(&m);
}

/* ---- hand-made headers ------------------------------------------------ */

static cbor_item_t *
u(uint64_t v)
{
	if (v <= UINT8_MAX)
		return cbor_build_uint8((uint8_t)v);
	if (v <= UINT16_MAX)
		return cbor_build_uint16((uint16_t)v);
	if (v <= UINT32_MAX)
		return cbor_build_uint32((uint32_t)v);
	return cbor_build_uint64(v);
}

static const char *const FIELDS[] = { "format", "id", "cluster",
    "cluster_id", "node", "scope", "created", "seq", "epoch", "chunk_size",
    "salt" };
#define NFIELDS (sizeof(FIELDS) / sizeof(FIELDS[0]))

static cbor_item_t *
default_value(const char *key)
{
	if (strcmp(key, "format") == 0)
		return u(1);
	if (strcmp(key, "id") == 0)
		return cbor_build_string("d1c4dfe0e04731ecdc7f98c30dce3285");
	if (strcmp(key, "cluster") == 0)
		return cbor_build_string("doc");
	if (strcmp(key, "cluster_id") == 0)
		return cbor_build_string(CID_A);
	if (strcmp(key, "node") == 0)
		return cbor_build_string("n1");
	if (strcmp(key, "scope") == 0) {
		cbor_item_t *a = cbor_new_definite_array(1);

		assert_true(cbor_array_push(a, cbor_move(
		    cbor_build_string("acme"))));
		return a;
	}
	if (strcmp(key, "created") == 0)
		return u(1796170520);
	if (strcmp(key, "seq") == 0)
		return u(10);
	if (strcmp(key, "epoch") == 0)
		return u(1);
	if (strcmp(key, "chunk_size") == 0)
		return u(1048576);
	if (strcmp(key, "salt") == 0) {
		unsigned char s[32];

		for (size_t i = 0; i < 32; i++)
			s[i] = (unsigned char)i;
		return cbor_build_bytestring(s, 32);
	}
	fail();
	return NULL;
}

/*
 * magic || H || a header of the 11 default fields, but: `omit` left out,
 * `key` given `val` (taken), `extra` added; reversed: in reverse order.
 */
static void
hand_header(const char *omit, const char *key, cbor_item_t *val,
    const char *extra, bool reversed, struct buf *out)
{
	cbor_item_t *m = cbor_new_definite_map(NFIELDS -
	    (omit != NULL ? 1 : 0) + (extra != NULL ? 1 : 0));
	unsigned char *enc = NULL, pre[12];
	size_t cap = 0, len;

	assert_non_null(m);
	for (size_t j = 0; j < NFIELDS; j++) {
		const char *k = FIELDS[reversed ? NFIELDS - 1 - j : j];
		cbor_item_t *v;

		if (omit != NULL && strcmp(k, omit) == 0)
			continue;
		v = key != NULL && strcmp(k, key) == 0 ? val : default_value(k);
		assert_non_null(v);
		assert_true(cbor_map_add(m, (struct cbor_pair){
		    cbor_move(cbor_build_string(k)), cbor_move(v) }));
	}
	if (extra != NULL)
		assert_true(cbor_map_add(m, (struct cbor_pair){
		    cbor_move(cbor_build_string(extra)), cbor_move(u(0)) }));
	len = cbor_serialize_alloc(m, &enc, &cap);
	assert_true(len > 0);
	cbor_decref(&m);
	memcpy(pre, MAGIC, 8);
	put_be32(pre + 8, (uint32_t)len);
	out->n = 0;
	buf_add(out, pre, 12);
	buf_add(out, enc, len);
	free(enc);
}

/* reader_open of f: 0 with the header, or the failure's message. */
static int
open_header(int fd, const struct buf *f, struct hsm_backup_header *h,
    hsm_status *st)
{
	hsm_backup_reader *r = (hsm_backup_reader *)(uintptr_t)1;
	int rc;

	fd_load(fd, f->p, f->n);
	memset(st, 0, sizeof(*st));
	rc = hsm_backup_reader_open(fd, bkey_a, &r, h, st);
	if (rc != 0) {
		assert_int_equal(rc, -1);
		assert_null(r);
		assert_header_zero(h);
		return rc;
	}
	assert_non_null(r);
	hsm_backup_reader_free(&r);
	return 0;
}

static cbor_item_t *
scope_of(size_t n, const char *name)
{
	cbor_item_t *a = cbor_new_definite_array(n);
	char buf[32];

	assert_non_null(a);
	for (size_t i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "p%zu", i);
		assert_true(cbor_array_push(a, cbor_move(cbor_build_string(
		    name != NULL && i == n - 1 ? name : buf))));
	}
	return a;
}

static cbor_item_t *
str_of(char c, size_t n)
{
	char buf[80];

	assert_true(n < sizeof(buf));
	memset(buf, c, n);
	return cbor_build_stringn(buf, n);
}

static void
test_header_fields(void **state)
{
	struct buf f = { 0 };
	struct hsm_backup_header h;
	hsm_status st;
	unsigned char salt[33] = { 0 };
	int fd = mfd();

	(void)state;
	/* The hand-made header is a good one, in either order. */
	for (int rev = 0; rev < 2; rev++) {
		hand_header(NULL, NULL, NULL, NULL, rev != 0, &f);
		assert_int_equal(f.p[12], 0xab);
		assert_int_equal(open_header(fd, &f, &h, &st), 0);
		assert_string_equal(h.cluster_id, CID_A);
		assert_int_equal(h.npartitions, 1);
		assert_string_equal(h.partitions[0], "acme");
		assert_int_equal(h.chunk_size, 1048576);
		assert_true(h.seq == 10);
		hsm_backup_header_clear(&h);
	}

	/* Fields missing, unknown, added. */
	hand_header("epoch", NULL, NULL, NULL, false, &f);
	assert_int_equal(open_header(fd, &f, &h, &st), -1);
	assert_integrity(&st, "backup header: not the expected fields");
	hand_header("salt", NULL, NULL, NULL, false, &f);
	assert_int_equal(open_header(fd, &f, &h, &st), -1);
	assert_integrity(&st, "not the expected fields");
	hand_header(NULL, NULL, NULL, "comment", false, &f);
	assert_int_equal(open_header(fd, &f, &h, &st), -1);
	assert_integrity(&st, "not the expected fields");
	hand_header("epoch", NULL, NULL, "epochs", false, &f);
	assert_int_equal(open_header(fd, &f, &h, &st), -1);
	assert_integrity(&st, "backup header: unknown field");
	hand_header("format", NULL, NULL, "Format", true, &f);
	assert_int_equal(open_header(fd, &f, &h, &st), -1);
	assert_integrity(&st, "unknown field");

	/* Each field's type and bounds; NULL want: accepted. */
	struct {
		const char *key;
		cbor_item_t *val;
		const char *want;
	} cases[] = {
		{ "format", u(2), "backup format 2 is not 1" },
		{ "format", u(0), "backup format 0 is not 1" },
		{ "format", u(UINT64_MAX), "bad 'format'" },
		{ "format", cbor_build_string("1"), "bad 'format'" },
		{ "id", str_of('a', 32), NULL },
		{ "id", str_of('a', 33), "backup header: bad 'id'" },
		{ "id", cbor_build_stringn("ab\0cd", 5), "bad 'id'" },
		{ "id", cbor_build_bytestring((const unsigned char *)"ab", 2),
		    "bad 'id'" },
		{ "cluster", str_of('c', 63), NULL },
		{ "cluster", str_of('c', 64), "bad 'cluster'" },
		{ "cluster", u(5), "bad 'cluster'" },
		{ "cluster_id", str_of('0', 33), "bad 'cluster_id'" },
		{ "node", str_of('n', 63), NULL },
		{ "node", str_of('n', 64), "bad 'node'" },
		{ "node", cbor_new_definite_array(0), "bad 'node'" },
		{ "created", u(INT64_MAX), NULL },
		{ "created", u((uint64_t)INT64_MAX + 1), "bad 'created'" },
		{ "created", cbor_build_negint8(0), "bad 'created'" },
		{ "seq", u((uint64_t)INT64_MAX + 1), "bad 'seq'" },
		{ "seq", u(0), NULL },
		{ "epoch", u(UINT64_MAX), "bad 'epoch'" },
		{ "epoch", cbor_build_string("1"), "bad 'epoch'" },
		{ "chunk_size", u(1024), NULL },
		{ "chunk_size", u(1023), "bad 'chunk_size'" },
		{ "chunk_size", u(0), "bad 'chunk_size'" },
		{ "chunk_size", u(HSM_BACKUP_CHUNK_MAX), NULL },
		{ "chunk_size", u(HSM_BACKUP_CHUNK_MAX + 1), "bad 'chunk_size'" },
		{ "chunk_size", u(UINT64_MAX), "bad 'chunk_size'" },
		{ "salt", cbor_build_bytestring(salt, 31), "bad 'salt'" },
		{ "salt", cbor_build_bytestring(salt, 33), "bad 'salt'" },
		{ "salt", cbor_build_bytestring(salt, 0), "bad 'salt'" },
		{ "salt", str_of('s', 32), "bad 'salt'" },
		{ "scope", cbor_new_definite_array(0), NULL },
		{ "scope", scope_of(HSM_BACKUP_SCOPE_MAX, NULL), NULL },
		{ "scope", scope_of(HSM_BACKUP_SCOPE_MAX + 1, NULL),
		    "bad 'scope'" },
		{ "scope", scope_of(2, "-x"), "bad 'scope'" },
		{ "scope", scope_of(2, "Acme"), "bad 'scope'" },
		{ "scope", scope_of(1, ""), "bad 'scope'" },
		{ "scope", scope_of(3, "a_b"), "bad 'scope'" },
		{ "scope", cbor_build_string("acme"), "bad 'scope'" },
		{ "scope", NULL, "bad 'scope'" },	/* [ "acme", 7 ] */
	};
	{
		cbor_item_t *a = cbor_new_definite_array(2);

		assert_true(cbor_array_push(a, cbor_move(
		    cbor_build_string("acme"))));
		assert_true(cbor_array_push(a, cbor_move(u(7))));
		cases[sizeof(cases) / sizeof(cases[0]) - 1].val = a;
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc;

		assert_non_null(cases[i].val);
		hand_header(NULL, cases[i].key, cases[i].val, NULL, i % 2 != 0,
		    &f);
		rc = open_header(fd, &f, &h, &st);
		if (cases[i].want == NULL) {
			if (rc != 0) {
				print_error("case %zu (%s): %s\n", i,
				    cases[i].key, st.message);
				fail();
			}
			hsm_backup_header_clear(&h);
			continue;
		}
		if (rc != -1) {
			print_error("case %zu (%s) accepted\n", i, cases[i].key);
			hsm_backup_header_clear(&h);
			fail();
		}
		assert_integrity(&st, cases[i].want);
	}

	/* A scope of 64 names is read whole. */
	hand_header(NULL, "scope", scope_of(HSM_BACKUP_SCOPE_MAX, NULL), NULL,
	    false, &f);
	assert_int_equal(open_header(fd, &f, &h, &st), 0);
	assert_int_equal(h.npartitions, HSM_BACKUP_SCOPE_MAX);
	assert_string_equal(h.partitions[63], "p63");
	hsm_backup_header_clear(&h);

	/* Not a map; a map with a byte after it; a tag. */
	{
		static const unsigned char bad[][6] = {
			{ 0x80 },			/* [] */
			{ 0xa0 },			/* {} */
			{ 0xa0, 0x00 },			/* {} 0 */
			{ 0xc0, 0xa0 },			/* tag 0 {} */
			{ 0xbf, 0xff },			/* {_ } */
			{ 0xab },			/* map of 11, empty */
		};
		static const size_t blen[] = { 1, 1, 2, 2, 2, 1 };
		static const char *const want[] = {
			"not the expected fields", "not the expected fields",
			"not valid CBOR", "not valid CBOR", "not valid CBOR",
			"not valid CBOR",
		};
		unsigned char pre[12];

		for (size_t i = 0; i < sizeof(blen) / sizeof(blen[0]); i++) {
			memcpy(pre, MAGIC, 8);
			put_be32(pre + 8, (uint32_t)blen[i]);
			f.n = 0;
			buf_add(&f, pre, 12);
			buf_add(&f, bad[i], blen[i]);
			assert_int_equal(open_header(fd, &f, &h, &st), -1);
			assert_integrity(&st, want[i]);
		}
	}
	close(fd);
	buf_free(&f);
}

/* The record length of a chunk: 25 .. chunk_size + 25. */
static void
test_chunk_length_bounds(void **state)
{
	static const size_t sizes[] = { 1024, 10 };
	struct hsm_backup_header h;
	struct buf f = { 0 }, m = { 0 };
	struct layout l;
	hsm_backup_writer *w = NULL;
	hsm_status st;
	unsigned char big[1025];
	int fd = mfd(), rc;

	(void)state;
	hdr_init(&h, CID_A, 0xb0, 1024);
	make_backup(&h, bkey_a, sign_a, sizes, 2, 3, &f);
	parse(&f, &l);
	assert_int_equal(get_be32(f.p + l.off[0]), 1024 + 25);
	expect_ok(fd, f.p, f.n, bkey_a, pub_a, 3);
	static const struct {
		size_t rec;
		uint32_t len;
		const char *want;
	} cases[] = {
		{ 0, 1024 + 26, "backup chunk 0: length 1050 out of bounds" },
		{ 0, 24, "backup chunk 0: length 24 out of bounds" },
		{ 0, 0, "backup chunk 0: length 0 out of bounds" },
		{ 1, 0xffffffffu, "chunk 1: length 4294967295 out of bounds" },
		{ 2, 24, "backup chunk 2: length 24 out of bounds" },
		{ 1, 0x80000019u, "chunk 1: length 2147483673 out of bounds" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		m.n = 0;
		buf_add(&m, f.p, f.n);
		put_be32(m.p + l.off[cases[i].rec], cases[i].len);
		expect_fail(fd, m.p, m.n, bkey_a, pub_a, cases[i].want);
		expect_fail(fd, m.p, m.n, NULL, NULL, cases[i].want);
	}

	/*
	 * A chunk over chunk_size from the writer itself: the writer may
	 * refuse it; if it does not, no reader accepts the file.
	 */
	fd_load(fd, NULL, 0);
	memset(&st, 0, sizeof(st));
	assert_int_equal(hsm_backup_writer_open(fd, &h, bkey_a, sign_a, &w,
	    &st), 0);
	pattern(big, sizeof(big), 1);
	rc = hsm_backup_writer_chunk(w, big, sizeof(big), &st);
	if (rc == 0) {
		assert_int_equal(hsm_backup_writer_close(w, NULL, &st), 0);
		hsm_backup_writer_free(&w);
		buf_free(&m);
		fd_slurp(fd, &m);
		expect_fail(fd, m.p, m.n, bkey_a, pub_a,
		    "backup chunk 0: length 1050 out of bounds");
		expect_fail(fd, m.p, m.n, NULL, NULL,
		    "backup chunk 0: length 1050 out of bounds");
	} else {
		assert_int_equal(rc, -1);
		assert_string_equal(st.code, "bad_value");
		hsm_backup_writer_free(&w);
	}
	close(fd);
	buf_free(&f);
	buf_free(&m);
}

/* ---- 4. the writer ---------------------------------------------------- */

static void
test_writer_skips_empty_chunk(void **state)
{
	static const size_t sizes[] = { 100, 200 };
	struct hsm_backup_header h;
	struct buf f = { 0 }, g = { 0 };
	hsm_backup_writer *w = NULL;
	hsm_status st;
	unsigned char a[100], b[200];
	uint64_t bytes = 0;
	int fd = mfd();

	(void)state;
	hdr_init(&h, CID_A, 0xc0, 1024);
	make_backup(&h, bkey_a, sign_a, sizes, 2, 60, &f);
	pattern(a, sizeof(a), 60);
	pattern(b, sizeof(b), 61);
	memset(&st, 0, sizeof(st));
	assert_int_equal(hsm_backup_writer_open(fd, &h, bkey_a, sign_a, &w,
	    &st), 0);
	assert_int_equal(hsm_backup_writer_chunk(w, a, 0, &st), 0);
	assert_int_equal(hsm_backup_writer_chunk(w, a, sizeof(a), &st), 0);
	assert_int_equal(hsm_backup_writer_chunk(w, NULL, 0, &st), 0);
	assert_int_equal(hsm_backup_writer_chunk(w, b, 0, &st), 0);
	assert_int_equal(hsm_backup_writer_chunk(w, b, sizeof(b), &st), 0);
	assert_int_equal(hsm_backup_writer_chunk(w, NULL, 0, &st), 0);
	assert_int_equal(hsm_backup_writer_close(w, &bytes, &st), 0);
	hsm_backup_writer_free(&w);
	fd_slurp(fd, &g);
	/* Byte for byte the file without the empty chunks. */
	assert_true(bytes == f.n);
	assert_int_equal(g.n, f.n);
	assert_memory_equal(g.p, f.p, f.n);
	expect_ok(fd, g.p, g.n, bkey_a, pub_a, 3);
	close(fd);
	buf_free(&f);
	buf_free(&g);
}

static void
test_writer_chunk_too_large(void **state)
{
	struct hsm_backup_header h;
	hsm_backup_writer *w = NULL;
	hsm_status st;
	unsigned char *big = calloc(1, (size_t)HSM_BACKUP_CHUNK_MAX + 1);
	unsigned char small[10];
	struct buf f = { 0 };
	size_t before;
	uint64_t bytes = 0;
	int fd = mfd();

	(void)state;
	assert_non_null(big);
	hdr_init(&h, CID_A, 0xd0, HSM_BACKUP_CHUNK_MAX);
	memset(&st, 0, sizeof(st));
	assert_int_equal(hsm_backup_writer_open(fd, &h, bkey_a, sign_a, &w,
	    &st), 0);
	before = fd_size(fd);
	assert_int_equal(hsm_backup_writer_chunk(w, big,
	    (size_t)HSM_BACKUP_CHUNK_MAX + 1, &st), -1);
	assert_string_equal(st.code, "bad_value");
	assert_null(strchr(st.message, '\n'));
	assert_int_equal(hsm_backup_writer_chunk(w, big, SIZE_MAX, &st), -1);
	assert_string_equal(st.code, "bad_value");
	/* Nothing written, and the writer goes on. */
	assert_int_equal(fd_size(fd), before);
	pattern(small, sizeof(small), 1);
	assert_int_equal(hsm_backup_writer_chunk(w, small, sizeof(small), &st),
	    0);
	assert_int_equal(hsm_backup_writer_close(w, &bytes, &st), 0);
	hsm_backup_writer_free(&w);
	assert_true(bytes == fd_size(fd));
	fd_slurp(fd, &f);
	expect_ok(fd, f.p, f.n, bkey_a, pub_a, 2);
	free(big);
	close(fd);
	buf_free(&f);
}

/* Failures of the writer: an unwritable file, a key that cannot sign. */
static void
test_writer_failures(void **state)
{
	static const unsigned char seed[32] = { 1, 2, 3 };
	struct hsm_backup_header h;
	hsm_backup_writer *w = (hsm_backup_writer *)(uintptr_t)1;
	hsm_status st;
	EVP_PKEY *x;
	int fd, rfd;

	(void)state;
	hdr_init(&h, CID_A, 0xe0, 1024);
	memset(&st, 0, sizeof(st));
	rfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(rfd >= 0);
	assert_int_equal(hsm_backup_writer_open(rfd, &h, bkey_a, sign_a, &w,
	    &st), -1);
	assert_null(w);
	assert_string_equal(st.code, "io");
	assert_null(strchr(st.message, '\n'));
	close(rfd);

	/* X25519 cannot sign: close fails, nothing leaks. */
	x = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, seed, 32);
	assert_non_null(x);
	fd = mfd();
	assert_int_equal(hsm_backup_writer_open(fd, &h, bkey_a, x, &w, &st),
	    0);
	assert_int_equal(hsm_backup_writer_chunk(w, seed, 32, &st), 0);
	assert_int_equal(hsm_backup_writer_close(w, NULL, &st), -1);
	assert_string_equal(st.code, "internal");
	hsm_backup_writer_free(&w);
	EVP_PKEY_free(x);
	close(fd);
}

/* ---- 5. one key per backup -------------------------------------------- */

static void
test_salt_separates_keys(void **state)
{
	static const size_t sizes[] = { 64, 64 };
	struct hsm_backup_header h1, h2;
	struct buf a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
	struct layout la, lb, lc, ld;
	int fd = mfd();

	(void)state;
	hdr_init(&h1, CID_A, 0x01, 1024);
	hdr_init(&h2, CID_A, 0x02, 1024);
	make_backup(&h1, bkey_a, sign_a, sizes, 2, 77, &a);
	make_backup(&h2, bkey_a, sign_a, sizes, 2, 77, &b);
	make_backup(&h1, bkey_a, sign_a, sizes, 2, 77, &c);
	make_backup(&h1, bkey_b, sign_a, sizes, 2, 77, &d);
	parse(&a, &la);
	parse(&b, &lb);
	parse(&c, &lc);
	parse(&d, &ld);
	/* Same everything: the same bytes (so only the salt differs below). */
	assert_int_equal(a.n, c.n);
	assert_memory_equal(a.p, c.p, a.n);
	/*
	 * Another salt: other ciphertexts for the same plaintext under the
	 * same nonce, so another key (the tag alone would also differ
	 * through the header hash).  Likewise another backup key.
	 */
	assert_int_equal(a.n, b.n);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(la.len[i], 29 + 64);
		assert_int_equal(lb.len[i], 29 + 64);
		assert_memory_not_equal(a.p + la.off[i] + 13,
		    b.p + lb.off[i] + 13, 64);
		assert_memory_not_equal(a.p + la.off[i] + 13,
		    d.p + ld.off[i] + 13, 64);
	}
	/* The end markers' tags too. */
	assert_memory_not_equal(a.p + la.off[2] + 13, b.p + lb.off[2] + 13,
	    TAG_LEN);
	/* Chunk 0 of one in the other (same index, same key): refused. */
	memcpy(b.p + lb.off[0], a.p + la.off[0], la.len[0]);
	expect_fail(fd, b.p, b.n, bkey_a, pub_a, "chunk 0 fails authentication");
	expect_fail(fd, b.p, b.n, NULL, pub_a, "signature does not verify");
	/* Another backup key, same salt: refused with ours. */
	expect_ok(fd, d.p, d.n, bkey_b, pub_a, 3);
	expect_fail(fd, d.p, d.n, bkey_a, pub_a, "chunk 0 fails authentication");
	close(fd);
	buf_free(&a);
	buf_free(&b);
	buf_free(&c);
	buf_free(&d);
}

/* Backup ids: what the node makes, and nothing a path could hide in. */
static void
test_backup_id_ok(void **state)
{
	(void)state;
	assert_true(hsm_backup_id_ok("0123456789abcdef0123456789abcdef"));
	assert_false(hsm_backup_id_ok(""));
	assert_false(hsm_backup_id_ok("0123456789abcdef0123456789abcde"));
	assert_false(hsm_backup_id_ok("0123456789abcdef0123456789abcdef0"));
	assert_false(hsm_backup_id_ok("0123456789ABCDEF0123456789abcdef"));
	assert_false(hsm_backup_id_ok("../../../../../../../../etc/pass"));
	assert_false(hsm_backup_id_ok("0123456789abcdef0123456789abcdeg"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backup_id_ok),
		cmocka_unit_test(test_round_trip_whole_node),
		cmocka_unit_test(test_round_trip_scope),
		cmocka_unit_test(test_round_trip_no_chunks),
		cmocka_unit_test(test_round_trip_max_chunk),
		cmocka_unit_test(test_without_key),
		cmocka_unit_test(test_matches_spec),
		cmocka_unit_test(test_wrong_backup_key),
		cmocka_unit_test(test_wrong_public_key),
		cmocka_unit_test(test_other_cluster_id),
		cmocka_unit_test(test_every_byte_flip),
		cmocka_unit_test(test_truncation_every_length),
		cmocka_unit_test(test_chunks_moved),
		cmocka_unit_test(test_trailing_bytes),
		cmocka_unit_test(test_header_length),
		cmocka_unit_test(test_header_fields),
		cmocka_unit_test(test_chunk_length_bounds),
		cmocka_unit_test(test_writer_skips_empty_chunk),
		cmocka_unit_test(test_writer_chunk_too_large),
		cmocka_unit_test(test_writer_failures),
		cmocka_unit_test(test_salt_separates_keys),
	};

	return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
