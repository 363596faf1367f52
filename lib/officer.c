/*
 * Officer credentials (DESIGN §4, §5): key pairs in encrypted PKCS#8 PEM
 * files, signatures over node challenges, and the token and approval
 * files of remote approvals.
 *
 * Everything PEM, base64, ASN.1 and PKCS#8 goes through OpenSSL; the
 * approval body is CBOR through libcbor and the strict decoder of
 * wire.c.  Nothing here parses bytes by hand.
 *
 * Public keys travel as DER SubjectPublicKeyInfo in one canonical form
 * (named curve, uncompressed point for P-384), so that a node may
 * compare officers' keys byte for byte: hsm_pubkey_check() refuses any
 * other encoding of the same key, and hsm_pubkey_read() converts to it.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "hsmctl.h"

#define KEY_FILE_MAX	(64u * 1024u)	/* a private or public key file */
#define SALT_LEN	16
#define PUBKEY_MAX	1024		/* DER SPKI; P-384 needs 120 bytes */
#define SIG_MAX		256		/* Ed25519 64, ECDSA P-384 <= 104 */
#define P384_FIELD	48
#define PEM_TOKEN	"HSMCTL TOKEN"
#define PEM_APPROVAL	"HSMCTL APPROVAL"
#define APPROVAL_VERSION 1
/* A CBOR approval body: token, key, signature and a little framing. */
#define BODY_MAX	(HSM_TOKEN_MAX + PUBKEY_MAX + SIG_MAX + 64)
/* Its PEM form: base64 (4/3), a newline per 64 characters, two lines. */
#define PEM_FILE_MAX	(2u * BODY_MAX)

struct hsm_officer_key {
	EVP_PKEY *pkey;
	enum hsm_key_type type;
};

/* ---- files ---- */

/*
 * Make a new file durable: the data is synced by the caller, the
 * directory entry here.  Best effort: some file systems cannot sync a
 * directory, and the data itself is already on disk.
 */
static void
sync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd;

	if (slash == NULL)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (dir == NULL)
		return;
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(fd);
		(void)close(fd);
	}
	free(dir);
}

/* Read at most max bytes of path; larger files fail with code toobig. */
static int
read_file(const char *path, size_t max, const char *toobig,
    unsigned char **out, size_t *outlen, hsm_status *st)
{
	unsigned char *buf = NULL;
	size_t n = 0;
	int fd = -1, r = -1;

	*out = NULL;
	*outlen = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		hsm_fail(st, "io", "%s: %s", path, strerror(errno));
		goto out;
	}
	if ((buf = malloc(max + 1)) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	/* One byte more than allowed tells a full file from a large one. */
	while (n <= max) {
		ssize_t got = read(fd, buf + n, max + 1 - n);

		if (got < 0) {
			if (errno == EINTR)
				continue;
			hsm_fail(st, "io", "%s: %s", path, strerror(errno));
			goto out;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	if (n > max) {
		hsm_fail(st, toobig, "%s: file is larger than %zu bytes",
		    path, max);
		goto out;
	}
	*out = buf;
	*outlen = n;
	buf = NULL;
	r = 0;
out:
	if (buf != NULL) {
		OPENSSL_cleanse(buf, n);
		free(buf);
	}
	if (fd >= 0)
		(void)close(fd);
	return r;
}

/* Create path, which must not exist, with exactly this mode. */
static int
create_new(const char *path, mode_t mode, int *fdp, hsm_status *st)
{
	int fd;

	*fdp = -1;
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
	    O_NOCTTY, mode)) < 0) {
		if (errno == EEXIST)
			return hsm_fail(st, "conflict", "%s already exists; "
			    "refusing to overwrite it", path);
		return hsm_fail(st, "io", "%s: %s", path, strerror(errno));
	}
	*fdp = fd;
	/* The umask may only take bits away; the mode is part of the contract. */
	if (fchmod(fd, mode) != 0)
		return hsm_fail(st, "io", "%s: chmod: %s", path,
		    strerror(errno));
	return 0;
}

/* Write, sync and close fd; it is closed (and set to -1) in any case. */
static int
finish_file(const char *path, int *fdp, const unsigned char *buf, size_t len,
    hsm_status *st)
{
	int fd = *fdp;

	*fdp = -1;
	if (hsm_write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
		int e = errno;

		(void)close(fd);
		return hsm_fail(st, "io", "%s: %s", path, strerror(e));
	}
	if (close(fd) != 0)
		return hsm_fail(st, "io", "%s: %s", path, strerror(errno));
	return 0;
}

/*
 * Replace path with buf (mode 0600) through a temporary file in the same
 * directory and rename(), so a reader never sees half a file.
 */
static int
write_replace(const char *path, const unsigned char *buf, size_t len,
    hsm_status *st)
{
	unsigned char rnd[8];
	char *tmp = NULL;
	size_t tl = strlen(path) + 32;
	int fd = -1, r = -1;
	bool made = false;

	if ((tmp = malloc(tl)) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		hsm_fail(st, "internal", "random number generator failed");
		goto out;
	}
	snprintf(tmp, tl, "%s.tmp-%02x%02x%02x%02x%02x%02x%02x%02x", path,
	    rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	if (create_new(tmp, 0600, &fd, st) != 0) {
		made = fd >= 0;
		goto out;
	}
	made = true;
	if (finish_file(tmp, &fd, buf, len, st) != 0)
		goto out;
	if (rename(tmp, path) != 0) {
		hsm_fail(st, "io", "%s: %s", path, strerror(errno));
		goto out;
	}
	made = false;
	sync_parent(path);
	r = 0;
out:
	if (fd >= 0)
		(void)close(fd);
	if (made)
		(void)unlink(tmp);
	free(tmp);
	return r;
}

/* ---- key types and the canonical public key ---- */

static int
key_type(const EVP_PKEY *pkey, enum hsm_key_type *type)
{
	char group[64];
	size_t glen = 0;

	if (EVP_PKEY_is_a(pkey, "ED25519")) {
		*type = HSM_KEY_ED25519;
		return 0;
	}
	if (!EVP_PKEY_is_a(pkey, "EC"))
		return -1;
	/* Explicit curve parameters that match no named curve fail here. */
	if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen) != 1)
		return -1;
	if (OBJ_sn2nid(group) != NID_secp384r1 &&
	    EC_curve_nist2nid(group) != NID_secp384r1)
		return -1;
	*type = HSM_KEY_P384;
	return 0;
}

/* DER of pkey into a malloc()ed buffer. */
static int
spki_der(const EVP_PKEY *pkey, unsigned char **der, size_t *len)
{
	unsigned char *buf, *p;
	int n;

	*der = NULL;
	*len = 0;
	if ((n = i2d_PUBKEY(pkey, NULL)) <= 0)
		return -1;
	if ((buf = malloc((size_t)n)) == NULL)
		return -1;
	p = buf;
	if (i2d_PUBKEY(pkey, &p) != n) {
		free(buf);
		return -1;
	}
	*der = buf;
	*len = (size_t)n;
	return 0;
}

/*
 * The canonical DER SPKI of pkey: rebuilt from the bare public key, so
 * whatever encoding it came in (compressed point, explicit curve), the
 * same key always gives the same bytes.
 */
static int
canonical_spki(const EVP_PKEY *pkey, unsigned char **der, size_t *len,
    hsm_status *st)
{
	enum hsm_key_type type;
	EVP_PKEY *c = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	BIGNUM *x = NULL, *y = NULL;
	unsigned char pt[1 + 2 * P384_FIELD];
	unsigned char raw[32];
	size_t rawlen = sizeof(raw);
	int r = -1;

	*der = NULL;
	*len = 0;
	if (key_type(pkey, &type) != 0) {
		hsm_fail(st, "bad_value", "not an Ed25519 or P-384 key");
		goto out;
	}
	if (type == HSM_KEY_ED25519) {
		if (EVP_PKEY_get_raw_public_key(pkey, raw, &rawlen) != 1 ||
		    rawlen != sizeof(raw) ||
		    (c = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL,
		    raw, rawlen)) == NULL) {
			hsm_fail(st, "bad_value", "invalid Ed25519 public key");
			goto out;
		}
	} else {
		OSSL_PARAM params[3];

		if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X,
		    &x) != 1 ||
		    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y,
		    &y) != 1 ||
		    BN_bn2binpad(x, pt + 1, P384_FIELD) != P384_FIELD ||
		    BN_bn2binpad(y, pt + 1 + P384_FIELD, P384_FIELD) !=
		    P384_FIELD) {
			hsm_fail(st, "bad_value", "invalid P-384 public key");
			goto out;
		}
		pt[0] = POINT_CONVERSION_UNCOMPRESSED;
		params[0] = OSSL_PARAM_construct_utf8_string(
		    OSSL_PKEY_PARAM_GROUP_NAME, (char *)(uintptr_t)"P-384", 0);
		params[1] = OSSL_PARAM_construct_octet_string(
		    OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt));
		params[2] = OSSL_PARAM_construct_end();
		if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC",
		    NULL)) == NULL ||
		    EVP_PKEY_fromdata_init(ctx) != 1 ||
		    EVP_PKEY_fromdata(ctx, &c, EVP_PKEY_PUBLIC_KEY,
		    params) != 1) {
			hsm_fail(st, "bad_value", "invalid P-384 public key");
			goto out;
		}
	}
	if (spki_der(c, der, len) != 0) {
		hsm_fail(st, "internal", "cannot encode the public key");
		goto out;
	}
	r = 0;
out:
	BN_free(x);
	BN_free(y);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(c);
	return r;
}

/* Parse DER SPKI: an Ed25519 or P-384 key, valid, canonical. */
static int
pubkey_parse(const unsigned char *der, size_t len, EVP_PKEY **out,
    hsm_status *st)
{
	const unsigned char *p = der;
	EVP_PKEY *pkey = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	unsigned char *canon = NULL;
	size_t clen = 0;
	enum hsm_key_type type;
	int r = -1;

	*out = NULL;
	if (der == NULL || len == 0 || len > PUBKEY_MAX) {
		hsm_fail(st, "bad_value", "public key of %zu bytes: not a "
		    "public key", len);
		goto out;
	}
	if ((pkey = d2i_PUBKEY(NULL, &p, (long)len)) == NULL ||
	    p != der + len) {
		hsm_fail(st, "bad_value", "not a DER SubjectPublicKeyInfo");
		goto out;
	}
	if (key_type(pkey, &type) != 0) {
		hsm_fail(st, "bad_value", "public key is not Ed25519 or P-384");
		goto out;
	}
	/* The point must be on the curve and not the point at infinity. */
	if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL ||
	    EVP_PKEY_public_check(ctx) != 1) {
		hsm_fail(st, "bad_value", "invalid public key");
		goto out;
	}
	if (canonical_spki(pkey, &canon, &clen, st) != 0)
		goto out;
	if (clen != len || memcmp(canon, der, len) != 0) {
		hsm_fail(st, "bad_value", "public key is not in canonical form "
		    "(named curve, uncompressed point)");
		goto out;
	}
	*out = pkey;
	pkey = NULL;
	r = 0;
out:
	free(canon);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	if (r != 0)
		ERR_clear_error();
	return r;
}

/* ---- key generation and loading ---- */

static int
check_pass(const char *pass, size_t passlen, hsm_status *st)
{
	if (pass == NULL || passlen < HSM_PASS_MIN || passlen > HSM_PASS_MAX)
		return hsm_fail(st, "bad_value", "a passphrase must have "
		    "%d to %d bytes", HSM_PASS_MIN, HSM_PASS_MAX);
	return 0;
}

/* Encrypted PKCS#8 PEM of pkey in a memory BIO. */
static int
encrypt_key(const EVP_PKEY *pkey, const char *pass, size_t passlen,
    BIO **out, hsm_status *st)
{
	PKCS8_PRIV_KEY_INFO *p8inf = NULL;
	X509_ALGOR *pbe = NULL;
	X509_SIG *p8 = NULL;
	BIO *bio = NULL;
	unsigned char salt[SALT_LEN];
	int r = -1;

	*out = NULL;
	if (RAND_bytes(salt, sizeof(salt)) != 1) {
		hsm_fail(st, "internal", "random number generator failed");
		goto out;
	}
	if ((p8inf = EVP_PKEY2PKCS8(pkey)) == NULL) {
		hsm_fail(st, "internal", "cannot encode the private key");
		goto out;
	}
	if ((pbe = PKCS5_pbe2_set_iv_ex(EVP_aes_256_cbc(), HSM_PBKDF2_ITER,
	    salt, sizeof(salt), NULL, NID_hmacWithSHA256, NULL)) == NULL) {
		hsm_fail(st, "internal", "cannot set up key encryption");
		goto out;
	}
	if ((p8 = PKCS8_set0_pbe_ex(pass, (int)passlen, p8inf, pbe, NULL,
	    NULL)) == NULL) {
		hsm_fail(st, "internal", "cannot encrypt the private key");
		goto out;
	}
	pbe = NULL;	/* p8 owns it now */
	if ((bio = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_PKCS8(bio, p8) != 1) {
		hsm_fail(st, "no_memory", "cannot write the private key");
		goto out;
	}
	*out = bio;
	bio = NULL;
	r = 0;
out:
	BIO_free(bio);
	X509_SIG_free(p8);
	X509_ALGOR_free(pbe);
	/* Frees (and clears) the plain private key encoding. */
	PKCS8_PRIV_KEY_INFO_free(p8inf);
	return r;
}

static int
must_not_exist(const char *path, hsm_status *st)
{
	struct stat sb;

	if (lstat(path, &sb) == 0)
		return hsm_fail(st, "conflict", "%s already exists; refusing "
		    "to overwrite it", path);
	if (errno != ENOENT)
		return hsm_fail(st, "io", "%s: %s", path, strerror(errno));
	return 0;
}

int
hsm_officer_keygen(const char *path, enum hsm_key_type type, const char *pass,
    size_t passlen, hsm_status *st)
{
	EVP_PKEY *pkey = NULL;
	BIO *kbio = NULL, *pbio = NULL;
	unsigned char *spki = NULL;
	char *pubpath = NULL, *kpem = NULL, *ppem = NULL;
	size_t spkilen = 0, pl;
	long kn, pn;
	int kfd = -1, pfd = -1, r = -1;
	bool kmade = false, pmade = false;

	if (path == NULL || *path == '\0') {
		hsm_fail(st, "bad_value", "no key file name");
		goto out;
	}
	if (check_pass(pass, passlen, st) != 0)
		goto out;
	pl = strlen(path) + sizeof(".pub");
	if ((pubpath = malloc(pl)) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	snprintf(pubpath, pl, "%s.pub", path);
	/* Fail early; O_EXCL below is what really decides. */
	if (must_not_exist(path, st) != 0 || must_not_exist(pubpath, st) != 0)
		goto out;
	switch (type) {
	case HSM_KEY_ED25519:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		break;
	case HSM_KEY_P384:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
		break;
	default:
		hsm_fail(st, "bad_value", "unknown key type %d", (int)type);
		goto out;
	}
	if (pkey == NULL) {
		hsm_fail(st, "internal", "key generation failed");
		goto out;
	}
	if (encrypt_key(pkey, pass, passlen, &kbio, st) != 0)
		goto out;
	if (canonical_spki(pkey, &spki, &spkilen, st) != 0)
		goto out;
	if ((pbio = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio(pbio, PEM_STRING_PUBLIC, "", spki,
	    (long)spkilen) <= 0) {
		hsm_fail(st, "no_memory", "cannot write the public key");
		goto out;
	}
	if ((kn = BIO_get_mem_data(kbio, &kpem)) <= 0 ||
	    (pn = BIO_get_mem_data(pbio, &ppem)) <= 0) {
		hsm_fail(st, "internal", "empty PEM output");
		goto out;
	}
	if (create_new(path, 0600, &kfd, st) != 0) {
		kmade = kfd >= 0;
		goto out;
	}
	kmade = true;
	if (create_new(pubpath, 0644, &pfd, st) != 0) {
		pmade = pfd >= 0;
		goto out;
	}
	pmade = true;
	if (finish_file(path, &kfd, (const unsigned char *)kpem, (size_t)kn,
	    st) != 0 ||
	    finish_file(pubpath, &pfd, (const unsigned char *)ppem, (size_t)pn,
	    st) != 0)
		goto out;
	sync_parent(path);
	r = 0;
out:
	if (kfd >= 0)
		(void)close(kfd);
	if (pfd >= 0)
		(void)close(pfd);
	if (r != 0) {
		if (kmade)
			(void)unlink(path);
		if (pmade)
			(void)unlink(pubpath);
		ERR_clear_error();
	}
	BIO_free(kbio);
	BIO_free(pbio);
	free(spki);
	free(pubpath);
	EVP_PKEY_free(pkey);
	return r;
}

int
hsm_officer_load(const char *path, const char *pass, size_t passlen,
    struct hsm_officer_key **out, hsm_status *st)
{
	unsigned char *buf = NULL, *data = NULL;
	const unsigned char *p;
	char *name = NULL, *header = NULL;
	long dlen = 0;
	size_t len = 0;
	BIO *bio = NULL;
	X509_SIG *p8 = NULL;
	const X509_ALGOR *alg = NULL;
	const ASN1_OBJECT *aobj = NULL;
	PKCS8_PRIV_KEY_INFO *p8inf = NULL;
	EVP_PKEY *pkey = NULL;
	struct hsm_officer_key *key = NULL;
	enum hsm_key_type type;
	int r = -1;

	if (out == NULL) {
		hsm_fail(st, "internal", "%s: no output argument", __func__);
		goto out;
	}
	*out = NULL;
	if (path == NULL || *path == '\0') {
		hsm_fail(st, "bad_value", "no key file name");
		goto out;
	}
	if (check_pass(pass, passlen, st) != 0)
		goto out;
	if (read_file(path, KEY_FILE_MAX, "bad_value", &buf, &len, st) != 0)
		goto out;
	if ((bio = BIO_new_mem_buf(buf, (int)len)) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1) {
		hsm_fail(st, "bad_value", "%s: not a PEM private key file",
		    path);
		goto out;
	}
	if (strcmp(name, PEM_STRING_PKCS8INF) == 0) {
		hsm_fail(st, "bad_value", "%s: the private key is not "
		    "encrypted; officer keys must be", path);
		goto out;
	}
	if (strcmp(name, PEM_STRING_PKCS8) != 0 || *header != '\0') {
		hsm_fail(st, "bad_value", "%s: not an encrypted PKCS#8 private "
		    "key (PEM type '%.40s')", path, name);
		goto out;
	}
	p = data;
	if ((p8 = d2i_X509_SIG(NULL, &p, dlen)) == NULL || p != data + dlen) {
		hsm_fail(st, "bad_value", "%s: malformed encrypted private key",
		    path);
		goto out;
	}
	X509_SIG_get0(p8, &alg, NULL);
	X509_ALGOR_get0(&aobj, NULL, NULL, alg);
	if (OBJ_obj2nid(aobj) != NID_pbes2) {
		hsm_fail(st, "bad_value", "%s: unsupported key encryption "
		    "(PBES2 required)", path);
		goto out;
	}
	/* Bad padding or a garbled result: almost surely the passphrase. */
	if ((p8inf = PKCS8_decrypt_ex(p8, pass, (int)passlen, NULL,
	    NULL)) == NULL) {
		hsm_fail(st, "bad_passphrase", "wrong passphrase for %s", path);
		goto out;
	}
	if ((pkey = EVP_PKCS82PKEY_ex(p8inf, NULL, NULL)) == NULL) {
		hsm_fail(st, "bad_value", "%s: cannot decode the private key",
		    path);
		goto out;
	}
	if (key_type(pkey, &type) != 0) {
		hsm_fail(st, "bad_value", "%s: not an Ed25519 or P-384 key",
		    path);
		goto out;
	}
	if ((key = calloc(1, sizeof(*key))) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	key->pkey = pkey;
	key->type = type;
	pkey = NULL;
	*out = key;
	r = 0;
out:
	if (r != 0)
		ERR_clear_error();
	EVP_PKEY_free(pkey);
	PKCS8_PRIV_KEY_INFO_free(p8inf);	/* clears the key encoding */
	X509_SIG_free(p8);
	BIO_free(bio);
	OPENSSL_free(name);
	OPENSSL_free(header);
	if (data != NULL)
		OPENSSL_clear_free(data, (size_t)dlen);
	if (buf != NULL) {
		OPENSSL_cleanse(buf, len);
		free(buf);
	}
	return r;
}

void
hsm_officer_free(struct hsm_officer_key **key)
{
	if (key == NULL || *key == NULL)
		return;
	/* OpenSSL clears private key material when it frees it. */
	EVP_PKEY_free((*key)->pkey);
	OPENSSL_cleanse(*key, sizeof(**key));
	free(*key);
	*key = NULL;
}

int
hsm_officer_pubkey(const struct hsm_officer_key *key, unsigned char **der,
    size_t *len, hsm_status *st)
{
	int r;

	if (key == NULL || der == NULL || len == NULL)
		return hsm_fail(st, "internal", "%s: missing argument",
		    __func__);
	if ((r = canonical_spki(key->pkey, der, len, st)) != 0)
		ERR_clear_error();
	return r;
}

/* ---- public keys ---- */

int
hsm_pubkey_check(const unsigned char *der, size_t len, hsm_status *st)
{
	EVP_PKEY *pkey = NULL;

	if (pubkey_parse(der, len, &pkey, st) != 0)
		return -1;
	EVP_PKEY_free(pkey);
	return 0;
}

int
hsm_pubkey_read(const char *path, unsigned char **der, size_t *len,
    hsm_status *st)
{
	unsigned char *buf = NULL, *data = NULL;
	const unsigned char *p;
	char *name = NULL, *header = NULL;
	long dlen = 0;
	size_t flen = 0;
	BIO *bio = NULL;
	EVP_PKEY *pkey = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	enum hsm_key_type type;
	int r = -1;

	if (der != NULL)
		*der = NULL;
	if (len != NULL)
		*len = 0;
	if (der == NULL || len == NULL) {
		hsm_fail(st, "internal", "%s: no output argument", __func__);
		goto out;
	}
	if (path == NULL || *path == '\0') {
		hsm_fail(st, "bad_value", "no public key file name");
		goto out;
	}
	if (read_file(path, KEY_FILE_MAX, "bad_value", &buf, &flen, st) != 0)
		goto out;
	if ((bio = BIO_new_mem_buf(buf, (int)flen)) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1) {
		hsm_fail(st, "bad_value", "%s: not a PEM public key file", path);
		goto out;
	}
	if (strcmp(name, PEM_STRING_PUBLIC) != 0 || *header != '\0') {
		hsm_fail(st, "bad_value", "%s: not a PEM public key (PEM type "
		    "'%.40s')", path, name);
		goto out;
	}
	p = data;
	if ((pkey = d2i_PUBKEY(NULL, &p, dlen)) == NULL ||
	    p != data + dlen) {
		hsm_fail(st, "bad_value", "%s: malformed public key", path);
		goto out;
	}
	if (key_type(pkey, &type) != 0) {
		hsm_fail(st, "bad_value", "%s: not an Ed25519 or P-384 public "
		    "key", path);
		goto out;
	}
	if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL ||
	    EVP_PKEY_public_check(ctx) != 1) {
		hsm_fail(st, "bad_value", "%s: invalid public key", path);
		goto out;
	}
	/* Any encoding of the key in, the canonical one out. */
	if (canonical_spki(pkey, der, len, st) != 0)
		goto out;
	r = 0;
out:
	if (r != 0)
		ERR_clear_error();
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(data);
	free(buf);
	return r;
}

/* ---- signatures ---- */

/* HSM_SIG_CONTEXT || 0x00 || token */
static int
signed_message(const unsigned char *token, size_t tokenlen,
    unsigned char **msg, size_t *msglen)
{
	size_t cl = sizeof(HSM_SIG_CONTEXT) - 1;
	unsigned char *m;

	*msg = NULL;
	*msglen = 0;
	if ((m = malloc(cl + 1 + tokenlen)) == NULL)
		return -1;
	memcpy(m, HSM_SIG_CONTEXT, cl);
	m[cl] = 0x00;
	memcpy(m + cl + 1, token, tokenlen);
	*msg = m;
	*msglen = cl + 1 + tokenlen;
	return 0;
}

/* Ed25519 signs the message itself; ECDSA P-384 its SHA-384. */
static const char *
sig_digest(enum hsm_key_type type)
{
	return type == HSM_KEY_P384 ? "SHA384" : NULL;
}

int
hsm_officer_sign(const struct hsm_officer_key *key,
    const unsigned char *token, size_t tokenlen, unsigned char **sig,
    size_t *siglen, hsm_status *st)
{
	EVP_MD_CTX *mctx = NULL;
	unsigned char *msg = NULL, *buf = NULL;
	size_t msglen = 0, n = 0;
	int size, r = -1;

	if (sig != NULL)
		*sig = NULL;
	if (siglen != NULL)
		*siglen = 0;
	if (key == NULL || sig == NULL || siglen == NULL) {
		hsm_fail(st, "internal", "%s: missing argument", __func__);
		goto out;
	}
	if (token == NULL || tokenlen == 0 || tokenlen > HSM_TOKEN_MAX) {
		hsm_fail(st, "bad_value", "a token must have 1 to %d bytes",
		    HSM_TOKEN_MAX);
		goto out;
	}
	if (signed_message(token, tokenlen, &msg, &msglen) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if ((size = EVP_PKEY_get_size(key->pkey)) <= 0 || size > SIG_MAX) {
		hsm_fail(st, "internal", "unexpected signature size");
		goto out;
	}
	n = (size_t)size;
	if ((buf = malloc(n)) == NULL || (mctx = EVP_MD_CTX_new()) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (EVP_DigestSignInit_ex(mctx, NULL, sig_digest(key->type), NULL,
	    NULL, key->pkey, NULL) != 1 ||
	    EVP_DigestSign(mctx, buf, &n, msg, msglen) != 1 || n == 0) {
		hsm_fail(st, "internal", "signing failed");
		goto out;
	}
	*sig = buf;
	*siglen = n;
	buf = NULL;
	r = 0;
out:
	if (r != 0)
		ERR_clear_error();
	EVP_MD_CTX_free(mctx);
	free(buf);
	free(msg);
	return r;
}

int
hsm_verify(const unsigned char *der, size_t derlen,
    const unsigned char *token, size_t tokenlen, const unsigned char *sig,
    size_t siglen, hsm_status *st)
{
	EVP_PKEY *pkey = NULL;
	EVP_MD_CTX *mctx = NULL;
	unsigned char *msg = NULL;
	size_t msglen = 0;
	enum hsm_key_type type;
	hsm_status sub;
	int r = -1;

	memset(&sub, 0, sizeof(sub));
	if (pubkey_parse(der, derlen, &pkey, &sub) != 0 ||
	    key_type(pkey, &type) != 0) {
		hsm_fail(st, "bad_signature", "signature does not verify: %s",
		    sub.message);
		goto out;
	}
	if (token == NULL || tokenlen == 0 || tokenlen > HSM_TOKEN_MAX ||
	    sig == NULL || siglen == 0 || siglen > SIG_MAX) {
		hsm_fail(st, "bad_signature", "signature does not verify: "
		    "token or signature of invalid size");
		goto out;
	}
	if (signed_message(token, tokenlen, &msg, &msglen) != 0 ||
	    (mctx = EVP_MD_CTX_new()) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (EVP_DigestVerifyInit_ex(mctx, NULL, sig_digest(type), NULL, NULL,
	    pkey, NULL) != 1 ||
	    EVP_DigestVerify(mctx, sig, siglen, msg, msglen) != 1) {
		hsm_fail(st, "bad_signature", "signature does not verify");
		goto out;
	}
	r = 0;
out:
	if (r != 0)
		ERR_clear_error();
	EVP_MD_CTX_free(mctx);
	EVP_PKEY_free(pkey);
	free(msg);
	return r;
}

/* ---- token and approval files ---- */

static int
write_pem(const char *path, const char *type, const unsigned char *data,
    size_t len, hsm_status *st)
{
	BIO *bio = NULL;
	char *pem = NULL;
	long n;
	int r = -1;

	if ((bio = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio(bio, type, "", data, (long)len) <= 0 ||
	    (n = BIO_get_mem_data(bio, &pem)) <= 0) {
		hsm_fail(st, "no_memory", "cannot encode %s", path);
		goto out;
	}
	r = write_replace(path, (const unsigned char *)pem, (size_t)n, st);
out:
	if (r != 0)
		ERR_clear_error();
	BIO_free(bio);
	return r;
}

static bool
is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * The one PEM block of type `type` that makes up the file, at most max
 * bytes of content.  Anything else in the file, PEM headers, bad base64
 * or an empty block is an "integrity" error.
 */
static int
read_pem(const char *path, const char *type, const char *what, size_t max,
    unsigned char **out, size_t *outlen, hsm_status *st)
{
	static const char begin[] = "-----BEGIN ";
	unsigned char *buf = NULL, *data = NULL, *copy = NULL;
	char *name = NULL, *header = NULL;
	long dlen = 0;
	size_t len = 0, i = 0, rest;
	BIO *bio = NULL;
	int r = -1;

	*out = NULL;
	*outlen = 0;
	if (read_file(path, PEM_FILE_MAX, "integrity", &buf, &len, st) != 0)
		goto out;
	/* PEM_read_bio() skips text before the block; we do not. */
	while (i < len && is_space(buf[i]))
		i++;
	if (len - i < sizeof(begin) - 1 ||
	    memcmp(buf + i, begin, sizeof(begin) - 1) != 0) {
		hsm_fail(st, "integrity", "%s: not an hsmctl %s file", path,
		    what);
		goto out;
	}
	if ((bio = BIO_new_mem_buf(buf, (int)len)) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1) {
		hsm_fail(st, "integrity", "%s: damaged %s file (bad PEM or "
		    "base64)", path, what);
		goto out;
	}
	if (strcmp(name, type) != 0) {
		hsm_fail(st, "integrity", "%s: not an hsmctl %s file (PEM type "
		    "'%.40s')", path, what, name);
		goto out;
	}
	if (*header != '\0') {
		hsm_fail(st, "integrity", "%s: unexpected PEM headers in %s "
		    "file", path, what);
		goto out;
	}
	rest = (size_t)BIO_ctrl_pending(bio);
	for (i = len - (rest <= len ? rest : len); i < len; i++)
		if (!is_space(buf[i])) {
			hsm_fail(st, "integrity", "%s: unexpected data after the "
			    "%s", path, what);
			goto out;
		}
	if (dlen <= 0 || (size_t)dlen > max) {
		hsm_fail(st, "integrity", "%s: %s of %ld bytes (1 to %zu "
		    "allowed)", path, what, dlen, max);
		goto out;
	}
	if ((copy = malloc((size_t)dlen)) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	memcpy(copy, data, (size_t)dlen);
	*out = copy;
	*outlen = (size_t)dlen;
	r = 0;
out:
	if (r != 0)
		ERR_clear_error();
	BIO_free(bio);
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(data);
	free(buf);
	return r;
}

int
hsm_token_write(const char *path, const unsigned char *token, size_t len,
    hsm_status *st)
{
	if (path == NULL || *path == '\0')
		return hsm_fail(st, "bad_value", "no token file name");
	if (token == NULL || len == 0 || len > HSM_TOKEN_MAX)
		return hsm_fail(st, "bad_value", "a token must have 1 to %d "
		    "bytes", HSM_TOKEN_MAX);
	return write_pem(path, PEM_TOKEN, token, len, st);
}

int
hsm_token_read(const char *path, unsigned char **token, size_t *len,
    hsm_status *st)
{
	if (token != NULL)
		*token = NULL;
	if (len != NULL)
		*len = 0;
	if (token == NULL || len == NULL)
		return hsm_fail(st, "internal", "%s: no output argument",
		    __func__);
	if (path == NULL || *path == '\0')
		return hsm_fail(st, "bad_value", "no token file name");
	return read_pem(path, PEM_TOKEN, "token", HSM_TOKEN_MAX, token, len,
	    st);
}

int
hsm_approval_write(const char *path, const struct hsm_approval *a,
    hsm_status *st)
{
	cbor_item_t *m = NULL;
	unsigned char *frame = NULL;
	size_t flen = 0;
	int r = -1;

	if (path == NULL || *path == '\0' || a == NULL) {
		hsm_fail(st, "bad_value", "no approval file name");
		goto out;
	}
	if (a->token == NULL || a->token_len == 0 ||
	    a->token_len > HSM_TOKEN_MAX) {
		hsm_fail(st, "bad_value", "a token must have 1 to %d bytes",
		    HSM_TOKEN_MAX);
		goto out;
	}
	/* Never write an approval that its reader would refuse. */
	if (hsm_verify(a->pubkey, a->pubkey_len, a->token, a->token_len,
	    a->sig, a->sig_len, st) != 0)
		goto out;
	if ((m = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_uint(m, "v", APPROVAL_VERSION) != 0 ||
	    hsm_map_put(m, "token", cbor_build_bytestring(a->token,
	    a->token_len)) != 0 ||
	    hsm_map_put(m, "pubkey", cbor_build_bytestring(a->pubkey,
	    a->pubkey_len)) != 0 ||
	    hsm_map_put(m, "sig", cbor_build_bytestring(a->sig,
	    a->sig_len)) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (hsm_frame_encode(m, &frame, &flen, st) != 0)
		goto out;
	if (flen <= 4 || flen - 4 > BODY_MAX) {
		hsm_fail(st, "internal", "approval of unexpected size");
		goto out;
	}
	/* The frame's 4-byte length header is not part of the file. */
	r = write_pem(path, PEM_APPROVAL, frame + 4, flen - 4, st);
out:
	if (m != NULL)
		cbor_decref(&m);
	free(frame);
	return r;
}

/* A definite byte string field of 1..max bytes, copied. */
static int
get_bytes(const cbor_item_t *map, const char *key, size_t max,
    unsigned char **out, size_t *outlen, const char *path, hsm_status *st)
{
	const cbor_item_t *it = hsm_map_get(map, key);
	size_t n;

	if (it == NULL)
		return hsm_fail(st, "integrity", "%s: approval has no '%s'",
		    path, key);
	if (!cbor_isa_bytestring(it) || !cbor_bytestring_is_definite(it))
		return hsm_fail(st, "integrity", "%s: approval field '%s' is "
		    "not a byte string", path, key);
	n = cbor_bytestring_length(it);
	if (n == 0 || n > max)
		return hsm_fail(st, "integrity", "%s: approval field '%s' has "
		    "%zu bytes (1 to %zu allowed)", path, key, n, max);
	if ((*out = malloc(n)) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	memcpy(*out, cbor_bytestring_handle(it), n);
	*outlen = n;
	return 0;
}

int
hsm_approval_read(const char *path, struct hsm_approval *a, hsm_status *st)
{
	unsigned char *body = NULL;
	size_t blen = 0;
	cbor_item_t *top = NULL, *v;
	hsm_status sub;
	int r = -1;

	if (a != NULL)
		memset(a, 0, sizeof(*a));
	if (a == NULL) {
		hsm_fail(st, "internal", "%s: no output argument", __func__);
		goto out;
	}
	if (path == NULL || *path == '\0') {
		hsm_fail(st, "bad_value", "no approval file name");
		goto out;
	}
	if (read_pem(path, PEM_APPROVAL, "approval", BODY_MAX, &body, &blen,
	    st) != 0)
		goto out;
	memset(&sub, 0, sizeof(sub));
	if (hsm_cbor_decode(body, blen, &top, &sub) != 0) {
		hsm_fail(st, strcmp(sub.code, "no_memory") == 0 ? "no_memory" :
		    "integrity", "%s: malformed approval: %s", path,
		    sub.message);
		goto out;
	}
	/* Keys are unique (hsm_cbor_decode), so four known ones are all. */
	if (!cbor_isa_map(top) || cbor_map_size(top) != 4) {
		hsm_fail(st, "integrity", "%s: approval is not a map of "
		    "v, token, pubkey and sig", path);
		goto out;
	}
	if ((v = hsm_map_get(top, "v")) == NULL || !cbor_isa_uint(v)) {
		hsm_fail(st, "integrity", "%s: approval has no version", path);
		goto out;
	}
	if (cbor_get_int(v) != APPROVAL_VERSION) {
		hsm_fail(st, "integrity", "%s: unsupported approval version "
		    "%llu (this hsmctl reads %d)", path,
		    (unsigned long long)cbor_get_int(v), APPROVAL_VERSION);
		goto out;
	}
	if (get_bytes(top, "token", HSM_TOKEN_MAX, &a->token, &a->token_len,
	    path, st) != 0 ||
	    get_bytes(top, "pubkey", PUBKEY_MAX, &a->pubkey, &a->pubkey_len,
	    path, st) != 0 ||
	    get_bytes(top, "sig", SIG_MAX, &a->sig, &a->sig_len, path,
	    st) != 0)
		goto out;
	memset(&sub, 0, sizeof(sub));
	if (hsm_verify(a->pubkey, a->pubkey_len, a->token, a->token_len,
	    a->sig, a->sig_len, &sub) != 0) {
		hsm_fail(st, sub.code, "%s: %s", path, sub.message);
		goto out;
	}
	r = 0;
out:
	if (r != 0)
		hsm_approval_clear(a);
	if (top != NULL)
		cbor_decref(&top);
	free(body);
	return r;
}

void
hsm_approval_clear(struct hsm_approval *a)
{
	if (a == NULL)
		return;
	free(a->token);
	free(a->pubkey);
	free(a->sig);
	memset(a, 0, sizeof(*a));
}
