/*
 * Unit tests for lib/officer.c: officer key files, signatures, public
 * keys, token and approval files.
 *
 * Each key generation or load costs one PBKDF2 run of HSM_PBKDF2_ITER
 * iterations (most of a second), so the two officer keys are made and
 * loaded once in the group setup and shared; keys the tests make
 * themselves are encrypted with few iterations.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/stat.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include "hsmctl.h"

/* Private bounds of officer.c. */
#define PUBKEY_MAX 1024
#define SIG_MAX 256

static char tmpdir[64];
static char ed_path[128], p384_path[128];
static struct hsm_officer_key *ed_key, *p384_key;
static unsigned char *ed_pub, *p384_pub;
static size_t ed_pub_len, p384_pub_len;

/* The shortest passphrase for one key, the longest (binary) for the other. */
static const char ed_pass[] = "8bytes!!";
#define ED_PASS_LEN (sizeof(ed_pass) - 1)
static char p384_pass[HSM_PASS_MAX];

static const unsigned char token32[32] = {
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10,
	0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8,
	0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff, 0x00,
};

#define assert_code(st, c) do {						\
	if (strcmp((st).code, (c)) != 0) {				\
		print_error("code \"%s\" (%s), expected \"%s\"\n",	\
		    (st).code, (st).message, (c));			\
		fail();							\
	}								\
} while (0)

/* Failures must leave nothing on OpenSSL's error queue. */
#define assert_err_clean() assert_int_equal(ERR_peek_error(), 0)

/* ---- helpers ---- */

static char *
tpath(const char *name)
{
	static char buf[4][256];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", tmpdir, name);
	return buf[i];
}

static void
put_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	if (len > 0)
		assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static unsigned char *
get_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

static bool
exists(const char *path)
{
	struct stat sb;

	return lstat(path, &sb) == 0;
}

static mode_t
file_mode(const char *path)
{
	struct stat sb;

	assert_int_equal(stat(path, &sb), 0);
	return sb.st_mode & 07777;
}

static void
pem_file(const char *path, const char *type, const char *header,
    const unsigned char *data, size_t len)
{
	BIO *b = BIO_new_file(path, "w");

	assert_non_null(b);
	assert_true(PEM_write_bio(b, type, header, data, (long)len) > 0);
	BIO_free(b);
}

/* The one PEM block of a file. */
static unsigned char *
pem_data(const char *path, char **type, size_t *len)
{
	BIO *b = BIO_new_file(path, "r");
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL, *copy;
	long n = 0;

	assert_non_null(b);
	assert_int_equal(PEM_read_bio(b, &name, &header, &data, &n), 1);
	BIO_free(b);
	copy = malloc((size_t)n);
	assert_non_null(copy);
	memcpy(copy, data, (size_t)n);
	*len = (size_t)n;
	if (type != NULL)
		*type = strdup(name);
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(data);
	return copy;
}

static void
pem_pkey_file(const char *path, EVP_PKEY *pk, bool pub)
{
	BIO *b = BIO_new_file(path, "w");

	assert_non_null(b);
	if (pub)
		assert_int_equal(PEM_write_bio_PUBKEY(b, pk), 1);
	else
		assert_int_equal(PEM_write_bio_PKCS8PrivateKey(b, pk, NULL,
		    NULL, 0, NULL, NULL), 1);
	BIO_free(b);
}

/* An encrypted PKCS#8 file with few iterations (fast to load). */
static void
enc_key_file(const char *path, EVP_PKEY *pk, const char *pass, int pbe_nid)
{
	PKCS8_PRIV_KEY_INFO *p8inf = EVP_PKEY2PKCS8(pk);
	X509_SIG *p8;
	BIO *b;

	assert_non_null(p8inf);
	p8 = PKCS8_encrypt_ex(pbe_nid, pbe_nid == -1 ? EVP_aes_256_cbc() :
	    NULL, pass, (int)strlen(pass), NULL, 0, 1000, p8inf, NULL, NULL);
	assert_non_null(p8);
	assert_non_null(b = BIO_new_file(path, "w"));
	assert_int_equal(PEM_write_bio_PKCS8(b, p8), 1);
	BIO_free(b);
	X509_SIG_free(p8);
	PKCS8_PRIV_KEY_INFO_free(p8inf);
}

static unsigned char *
der_of(EVP_PKEY *pk, size_t *len)
{
	unsigned char *der = NULL;
	int n = i2d_PUBKEY(pk, &der);

	assert_true(n > 0);
	*len = (size_t)n;
	return der;	/* OPENSSL_free */
}

/* Sign msg the way an outside implementation would. */
static unsigned char *
raw_sign(EVP_PKEY *pk, const char *md, const unsigned char *msg, size_t len,
    size_t *siglen)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	unsigned char *sig;

	assert_non_null(m);
	assert_int_equal(EVP_DigestSignInit_ex(m, NULL, md, NULL, NULL, pk,
	    NULL), 1);
	*siglen = (size_t)EVP_PKEY_get_size(pk);
	sig = malloc(*siglen);
	assert_non_null(sig);
	assert_int_equal(EVP_DigestSign(m, sig, siglen, msg, len), 1);
	EVP_MD_CTX_free(m);
	return sig;
}

static size_t
count_tmp_files(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	size_t n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		if (strstr(e->d_name, ".tmp") != NULL)
			n++;
	closedir(d);
	return n;
}

/* ---- group setup: two officer keys, made and loaded once ---- */

static int
group_setup(void **state)
{
	hsm_status st;
	mode_t old;
	int r;

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s", "/tmp/test_officer.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(ed_path, sizeof(ed_path), "%s/ed.key", tmpdir);
	snprintf(p384_path, sizeof(p384_path), "%s/p384.key", tmpdir);
	for (size_t i = 0; i < sizeof(p384_pass); i++)
		p384_pass[i] = (char)(i * 7 + 3);	/* has NUL and high bytes */
	memset(&st, 0, sizeof(st));
	if (hsm_officer_keygen(ed_path, HSM_KEY_ED25519, ed_pass, ED_PASS_LEN,
	    &st) != 0) {
		fprintf(stderr, "setup: %s: %s\n", st.code, st.message);
		return -1;
	}
	/* The modes are exact whatever the umask (test_keygen_files). */
	old = umask(0277);
	r = hsm_officer_keygen(p384_path, HSM_KEY_P384, p384_pass,
	    sizeof(p384_pass), &st);
	umask(old);
	if (r != 0 ||
	    hsm_officer_load(ed_path, ed_pass, ED_PASS_LEN, &ed_key, &st) != 0 ||
	    hsm_officer_load(p384_path, p384_pass, sizeof(p384_pass),
	    &p384_key, &st) != 0 ||
	    hsm_officer_pubkey(ed_key, &ed_pub, &ed_pub_len, &st) != 0 ||
	    hsm_officer_pubkey(p384_key, &p384_pub, &p384_pub_len, &st) != 0) {
		fprintf(stderr, "setup: %s: %s\n", st.code, st.message);
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	DIR *d;
	struct dirent *e;

	(void)state;
	hsm_officer_free(&ed_key);
	hsm_officer_free(&p384_key);
	free(ed_pub);
	free(p384_pub);
	if ((d = opendir(tmpdir)) != NULL) {
		while ((e = readdir(d)) != NULL)
			if (strcmp(e->d_name, ".") != 0 &&
			    strcmp(e->d_name, "..") != 0)
				unlink(tpath(e->d_name));
		closedir(d);
	}
	rmdir(tmpdir);
	return 0;
}

/* ---- key generation ---- */

static void
test_keygen_files(void **state)
{
	char pub[160];
	unsigned char *der = NULL, *text;
	size_t len = 0;
	hsm_status st;

	(void)state;
	memset(&st, 0, sizeof(st));
	assert_int_equal(file_mode(ed_path), 0600);
	assert_int_equal(file_mode(p384_path), 0600);
	snprintf(pub, sizeof(pub), "%s.pub", ed_path);
	assert_int_equal(file_mode(pub), 0644);
	text = get_file(pub, &len);
	assert_memory_equal(text, "-----BEGIN PUBLIC KEY-----\n", 27);
	free(text);
	/* The .pub file holds the loaded key's public half. */
	assert_int_equal(hsm_pubkey_read(pub, &der, &len, &st), 0);
	assert_int_equal(len, ed_pub_len);
	assert_memory_equal(der, ed_pub, len);
	free(der);
	snprintf(pub, sizeof(pub), "%s.pub", p384_path);
	assert_int_equal(file_mode(pub), 0644);
	assert_int_equal(hsm_pubkey_read(pub, &der, &len, &st), 0);
	assert_int_equal(len, p384_pub_len);
	assert_memory_equal(der, p384_pub, len);
	free(der);
	/* SPKI sizes: Ed25519 44 bytes, P-384 uncompressed 120 bytes. */
	assert_int_equal(ed_pub_len, 44);
	assert_int_equal(p384_pub_len, 120);
	text = get_file(ed_path, &len);
	assert_memory_equal(text, "-----BEGIN ENCRYPTED PRIVATE KEY-----\n", 38);
	free(text);
	assert_err_clean();
}

static void
check_pbes2(const char *path, unsigned char salt[16])
{
	unsigned char *der;
	const unsigned char *p;
	size_t len;
	char *type = NULL;
	X509_SIG *p8;
	const X509_ALGOR *alg;
	const ASN1_OBJECT *obj;
	const void *pv;
	int ptype;
	PBE2PARAM *pbe2;
	PBKDF2PARAM *kdf;
	const ASN1_OCTET_STRING *iv;

	der = pem_data(path, &type, &len);
	assert_string_equal(type, "ENCRYPTED PRIVATE KEY");
	free(type);
	p = der;
	assert_non_null(p8 = d2i_X509_SIG(NULL, &p, (long)len));
	assert_ptr_equal(p, der + len);
	X509_SIG_get0(p8, &alg, NULL);
	X509_ALGOR_get0(&obj, &ptype, &pv, alg);
	assert_int_equal(OBJ_obj2nid(obj), NID_pbes2);
	assert_int_equal(ptype, V_ASN1_SEQUENCE);
	pbe2 = ASN1_item_unpack(pv, ASN1_ITEM_rptr(PBE2PARAM));
	assert_non_null(pbe2);
	/* Key derivation: PBKDF2, 16-byte salt, 600000, HMAC-SHA256. */
	X509_ALGOR_get0(&obj, &ptype, &pv, pbe2->keyfunc);
	assert_int_equal(OBJ_obj2nid(obj), NID_id_pbkdf2);
	assert_int_equal(ptype, V_ASN1_SEQUENCE);
	kdf = ASN1_item_unpack(pv, ASN1_ITEM_rptr(PBKDF2PARAM));
	assert_non_null(kdf);
	assert_int_equal(kdf->salt->type, V_ASN1_OCTET_STRING);
	assert_int_equal(ASN1_STRING_length(kdf->salt->value.octet_string), 16);
	memcpy(salt, ASN1_STRING_get0_data(kdf->salt->value.octet_string), 16);
	assert_int_equal(ASN1_INTEGER_get(kdf->iter), HSM_PBKDF2_ITER);
	assert_int_equal(ASN1_INTEGER_get(kdf->iter), 600000);
	assert_null(kdf->keylength);
	assert_non_null(kdf->prf);
	X509_ALGOR_get0(&obj, NULL, NULL, kdf->prf);
	assert_int_equal(OBJ_obj2nid(obj), NID_hmacWithSHA256);
	/* Cipher: AES-256-CBC with a 16-byte IV. */
	X509_ALGOR_get0(&obj, &ptype, &pv, pbe2->encryption);
	assert_int_equal(OBJ_obj2nid(obj), NID_aes_256_cbc);
	assert_int_equal(ptype, V_ASN1_OCTET_STRING);
	iv = pv;
	assert_int_equal(ASN1_STRING_length(iv), 16);
	PBKDF2PARAM_free(kdf);
	PBE2PARAM_free(pbe2);
	X509_SIG_free(p8);
	free(der);
}

static void
test_keygen_encryption(void **state)
{
	unsigned char s1[16], s2[16];

	(void)state;
	check_pbes2(ed_path, s1);
	check_pbes2(p384_path, s2);
	assert_memory_not_equal(s1, s2, 16);	/* random salts */
}

/* The key files are ordinary PKCS#8: the openssl tool reads them. */
static void
test_keygen_openssl_cli(void **state)
{
	char cmd[1024];
	unsigned char *a, *b;
	size_t al, bl;

	(void)state;
	if (access("/usr/bin/openssl", X_OK) != 0)
		skip();
	put_file(tpath("passfile"), ed_pass, ED_PASS_LEN);
	snprintf(cmd, sizeof(cmd), "/usr/bin/openssl pkey -in %s -passin "
	    "file:%s -pubout -out %s 2>/dev/null", ed_path, tpath("passfile"),
	    tpath("cli.pub"));
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s.pub", ed_path);
	a = get_file(cmd, &al);
	b = get_file(tpath("cli.pub"), &bl);
	assert_int_equal(al, bl);
	assert_memory_equal(a, b, al);
	free(a);
	free(b);
	/* And refuses a wrong passphrase. */
	put_file(tpath("passfile"), "8bytes!?", 8);
	snprintf(cmd, sizeof(cmd), "/usr/bin/openssl pkey -in %s -passin "
	    "file:%s -noout 2>/dev/null", ed_path, tpath("passfile"));
	assert_int_not_equal(system(cmd), 0);
	unlink(tpath("passfile"));
	unlink(tpath("cli.pub"));
}

static void
test_keygen_refuses_overwrite(void **state)
{
	unsigned char *before, *after;
	size_t bl, al;
	char pub[160];
	hsm_status st;

	(void)state;
	memset(&st, 0, sizeof(st));
	before = get_file(ed_path, &bl);
	assert_int_equal(hsm_officer_keygen(ed_path, HSM_KEY_ED25519, ed_pass,
	    ED_PASS_LEN, &st), -1);
	assert_code(st, "conflict");
	assert_non_null(strstr(st.message, ed_path));
	assert_int_equal(hsm_code_exit(st.code), HSM_EXIT_STATE);
	after = get_file(ed_path, &al);
	assert_int_equal(al, bl);
	assert_memory_equal(before, after, bl);
	free(before);
	free(after);
	assert_err_clean();

	/* Only FILE.pub exists: refused too, and FILE is not left behind. */
	snprintf(pub, sizeof(pub), "%s.pub", tpath("lonely"));
	put_file(pub, "x", 1);
	assert_int_equal(hsm_officer_keygen(tpath("lonely"), HSM_KEY_P384,
	    ed_pass, ED_PASS_LEN, &st), -1);
	assert_code(st, "conflict");
	assert_false(exists(tpath("lonely")));
	unlink(pub);

	/* A dangling symlink counts as existing. */
	assert_int_equal(symlink(tpath("nowhere"), tpath("link")), 0);
	assert_int_equal(hsm_officer_keygen(tpath("link"), HSM_KEY_ED25519,
	    ed_pass, ED_PASS_LEN, &st), -1);
	assert_code(st, "conflict");
	assert_false(exists(tpath("nowhere")));
	unlink(tpath("link"));
}

static void
test_keygen_bad_args(void **state)
{
	struct hsm_officer_key *k = NULL;
	char big[HSM_PASS_MAX + 1];
	hsm_status st;

	(void)state;
	memset(big, 'p', sizeof(big));
	memset(&st, 0, sizeof(st));
	assert_int_equal(hsm_officer_keygen(tpath("k"), HSM_KEY_ED25519,
	    "7 bytes", 7, &st), -1);
	assert_code(st, "bad_value");
	assert_int_equal(hsm_officer_keygen(tpath("k"), HSM_KEY_ED25519, big,
	    sizeof(big), &st), -1);
	assert_code(st, "bad_value");
	assert_int_equal(hsm_officer_keygen(tpath("k"), HSM_KEY_ED25519, NULL,
	    8, &st), -1);
	assert_code(st, "bad_value");
	assert_int_equal(hsm_officer_keygen(tpath("k"), (enum hsm_key_type)7,
	    ed_pass, ED_PASS_LEN, &st), -1);
	assert_code(st, "bad_value");
	assert_int_equal(hsm_officer_keygen(NULL, HSM_KEY_ED25519, ed_pass,
	    ED_PASS_LEN, &st), -1);
	assert_code(st, "bad_value");
	assert_int_equal(hsm_officer_keygen("", HSM_KEY_ED25519, ed_pass,
	    ED_PASS_LEN, &st), -1);
	assert_code(st, "bad_value");
	assert_false(exists(tpath("k")));
	assert_false(exists(tpath("k.pub")));
	/* A missing directory: an I/O error, nothing left anywhere. */
	assert_int_equal(hsm_officer_keygen(tpath("no/such/dir/k"),
	    HSM_KEY_ED25519, ed_pass, ED_PASS_LEN, &st), -1);
	assert_code(st, "io");
	/* The same passphrase bounds on load (before any file is read). */
	assert_int_equal(hsm_officer_load(ed_path, "7 bytes", 7, &k, &st), -1);
	assert_code(st, "bad_value");
	assert_null(k);
	assert_err_clean();
}

/* ---- loading ---- */

static void
test_load_wrong_passphrase(void **state)
{
	struct hsm_officer_key *k = (struct hsm_officer_key *)&k;
	hsm_status st;

	(void)state;
	memset(&st, 0, sizeof(st));
	assert_int_equal(hsm_officer_load(ed_path, "8bytes!?", 8, &k, &st), -1);
	assert_null(k);
	assert_code(st, "bad_passphrase");
	assert_int_equal(hsm_code_exit(st.code), HSM_EXIT_AUTH);
	assert_non_null(strstr(st.message, ed_path));
	assert_null(strstr(st.message, "8bytes"));
	assert_err_clean();
	/* The length counts, not a NUL: the first 10 bytes are not enough. */
	assert_int_equal(p384_pass[0], 3);
	assert_int_equal(hsm_officer_load(p384_path, p384_pass, 10, &k, &st),
	    -1);
	assert_code(st, "bad_passphrase");
	assert_null(k);
	assert_err_clean();
}

static void
test_load_rejects(void **state)
{
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	EVP_PKEY *ed448 = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
	EVP_PKEY *p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	struct hsm_officer_key *k = NULL;
	unsigned char *big;
	hsm_status st;
	BIO *b;
	static const struct {
		const char *file;
		const char *code;
	} cases[] = {
		{ "plain.key", "bad_value" },	/* unencrypted PKCS#8 */
		{ "garbage.key", "bad_value" },
		{ "empty.key", "bad_value" },
		{ "pub.key", "bad_value" },	/* a public key */
		{ "trad.key", "bad_value" },	/* legacy "EC PRIVATE KEY" */
		{ "ed448.key", "bad_value" },
		{ "p256.key", "bad_value" },
		{ "pbes1.key", "bad_value" },	/* PKCS#12 3DES, not PBES2 */
		{ "big.key", "bad_value" },
		{ "badb64.key", "bad_value" },
		{ "missing.key", "io" },
	};

	(void)state;
	assert_non_null(ed);
	assert_non_null(ed448);
	assert_non_null(p256);
	assert_non_null(p384);
	memset(&st, 0, sizeof(st));
	pem_pkey_file(tpath("plain.key"), ed, false);
	put_file(tpath("garbage.key"), "hello, world\n", 13);
	put_file(tpath("empty.key"), "", 0);
	pem_pkey_file(tpath("pub.key"), ed, true);
	assert_non_null(b = BIO_new_file(tpath("trad.key"), "w"));
	assert_int_equal(PEM_write_bio_PrivateKey_traditional(b, p384,
	    EVP_aes_256_cbc(), (unsigned char *)"password", 8, NULL, NULL), 1);
	BIO_free(b);
	enc_key_file(tpath("ed448.key"), ed448, "password", -1);
	enc_key_file(tpath("p256.key"), p256, "password", -1);
	enc_key_file(tpath("pbes1.key"), p384, "password",
	    NID_pbe_WithSHA1And3_Key_TripleDES_CBC);
	big = malloc(70000);
	assert_non_null(big);
	memset(big, 'A', 70000);
	put_file(tpath("big.key"), big, 70000);
	free(big);
	put_file(tpath("badb64.key"), "-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
	    "M!!!not*base64\n-----END ENCRYPTED PRIVATE KEY-----\n", 88);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&st, 0, sizeof(st));
		if (hsm_officer_load(tpath(cases[i].file), "password", 8, &k,
		    &st) != -1) {
			print_error("%s loaded\n", cases[i].file);
			fail();
		}
		assert_null(k);
		assert_code(st, cases[i].code);
		assert_non_null(strstr(st.message, cases[i].file));
		assert_err_clean();
		unlink(tpath(cases[i].file));
	}
	EVP_PKEY_free(ed);
	EVP_PKEY_free(ed448);
	EVP_PKEY_free(p256);
	EVP_PKEY_free(p384);
}

/* A key encrypted by OpenSSL's defaults (2048 iterations) still loads. */
static void
test_load_foreign_key(void **state)
{
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	struct hsm_officer_key *k = NULL;
	unsigned char *der = NULL, *sig = NULL, *want;
	size_t len = 0, siglen = 0, wantlen;
	hsm_status st;
	BIO *b;

	(void)state;
	memset(&st, 0, sizeof(st));
	assert_non_null(pk);
	assert_non_null(b = BIO_new_file(tpath("foreign.key"), "w"));
	assert_int_equal(PEM_write_bio_PKCS8PrivateKey(b, pk, EVP_aes_256_cbc(),
	    NULL, 0, NULL, (void *)"foreign passphrase"), 1);
	BIO_free(b);
	assert_int_equal(hsm_officer_load(tpath("foreign.key"),
	    "foreign passphrase", 18, &k, &st), 0);
	assert_int_equal(hsm_officer_pubkey(k, &der, &len, &st), 0);
	want = der_of(pk, &wantlen);
	assert_int_equal(len, wantlen);
	assert_memory_equal(der, want, len);
	assert_int_equal(hsm_officer_sign(k, token32, sizeof(token32), &sig,
	    &siglen, &st), 0);
	assert_int_equal(hsm_verify(der, len, token32, sizeof(token32), sig,
	    siglen, &st), 0);
	hsm_officer_free(&k);
	assert_null(k);
	hsm_officer_free(&k);	/* twice is harmless */
	hsm_officer_free(NULL);
	OPENSSL_free(want);
	free(der);
	free(sig);
	EVP_PKEY_free(pk);
	unlink(tpath("foreign.key"));
}

/* ---- signatures ---- */

static void
roundtrip(struct hsm_officer_key *k, const unsigned char *pub, size_t publen,
    size_t maxsig)
{
	unsigned char *sig = NULL, *big;
	size_t siglen = 0;
	hsm_status st;

	memset(&st, 0, sizeof(st));
	assert_int_equal(hsm_officer_sign(k, token32, sizeof(token32), &sig,
	    &siglen, &st), 0);
	assert_true(siglen > 0 && siglen <= maxsig);
	assert_int_equal(hsm_verify(pub, publen, token32, sizeof(token32), sig,
	    siglen, &st), 0);
	free(sig);
	/* One byte and HSM_TOKEN_MAX bytes are fine; 0 and one more not. */
	assert_int_equal(hsm_officer_sign(k, token32, 1, &sig, &siglen, &st), 0);
	assert_int_equal(hsm_verify(pub, publen, token32, 1, sig, siglen, &st),
	    0);
	free(sig);
	big = calloc(1, HSM_TOKEN_MAX + 1);
	assert_non_null(big);
	assert_int_equal(hsm_officer_sign(k, big, HSM_TOKEN_MAX, &sig, &siglen,
	    &st), 0);
	assert_int_equal(hsm_verify(pub, publen, big, HSM_TOKEN_MAX, sig,
	    siglen, &st), 0);
	assert_int_equal(hsm_verify(pub, publen, big, HSM_TOKEN_MAX + 1, sig,
	    siglen, &st), -1);
	assert_code(st, "bad_signature");
	free(sig);
	sig = (unsigned char *)&sig;
	assert_int_equal(hsm_officer_sign(k, big, HSM_TOKEN_MAX + 1, &sig,
	    &siglen, &st), -1);
	assert_code(st, "bad_value");
	assert_null(sig);
	assert_int_equal(hsm_officer_sign(k, token32, 0, &sig, &siglen, &st),
	    -1);
	assert_code(st, "bad_value");
	assert_int_equal(hsm_officer_sign(k, NULL, 5, &sig, &siglen, &st), -1);
	assert_code(st, "bad_value");
	free(big);
	assert_err_clean();
}

static void
test_sign_verify(void **state)
{
	(void)state;
	roundtrip(ed_key, ed_pub, ed_pub_len, 64);
	roundtrip(p384_key, p384_pub, p384_pub_len, 104);
}

static void
verify_fails(const unsigned char *pub, size_t publen, const unsigned char *tok,
    size_t toklen, const unsigned char *sig, size_t siglen)
{
	hsm_status st;

	memset(&st, 0, sizeof(st));
	assert_int_equal(hsm_verify(pub, publen, tok, toklen, sig, siglen, &st),
	    -1);
	assert_code(st, "bad_signature");
	assert_int_equal(hsm_code_exit(st.code), HSM_EXIT_INTEGRITY);
	assert_err_clean();
}

static void
tamper(struct hsm_officer_key *k, const unsigned char *pub, size_t publen,
    const unsigned char *other_pub, size_t other_len,
    struct hsm_officer_key *other)
{
	unsigned char tok[sizeof(token32)], *sig = NULL, *osig = NULL, *buf;
	unsigned char pk[PUBKEY_MAX];
	size_t siglen = 0, osiglen = 0;
	hsm_status st;

	memset(&st, 0, sizeof(st));
	assert_int_equal(hsm_officer_sign(k, token32, sizeof(token32), &sig,
	    &siglen, &st), 0);
	/* Every bit of the token. */
	for (size_t i = 0; i < sizeof(tok) * 8; i++) {
		memcpy(tok, token32, sizeof(tok));
		tok[i / 8] ^= (unsigned char)(1u << (i % 8));
		verify_fails(pub, publen, tok, sizeof(tok), sig, siglen);
	}
	/* A bit of every byte of the signature and of the key. */
	buf = malloc(siglen + 1);
	assert_non_null(buf);
	for (size_t i = 0; i < siglen; i++) {
		memcpy(buf, sig, siglen);
		buf[i] ^= (unsigned char)(1u << (i % 8));
		verify_fails(pub, publen, token32, sizeof(token32), buf, siglen);
	}
	for (size_t i = 0; i < publen; i++) {
		memcpy(pk, pub, publen);
		pk[i] ^= (unsigned char)(1u << (i % 8));
		verify_fails(pk, publen, token32, sizeof(token32), sig, siglen);
	}
	/* Shorter, longer, empty, missing. */
	verify_fails(pub, publen, token32, sizeof(token32), sig, siglen - 1);
	memcpy(buf, sig, siglen);
	buf[siglen] = 0;
	verify_fails(pub, publen, token32, sizeof(token32), buf, siglen + 1);
	verify_fails(pub, publen, token32, sizeof(token32), sig, 0);
	verify_fails(pub, publen, token32, sizeof(token32), NULL, siglen);
	verify_fails(pub, publen, token32, 0, sig, siglen);
	verify_fails(pub, publen, token32, sizeof(token32) - 1, sig, siglen);
	verify_fails(NULL, 0, token32, sizeof(token32), sig, siglen);
	verify_fails(pub, publen - 1, token32, sizeof(token32), sig, siglen);
	/* The other officer's key, and the other officer's signature. */
	verify_fails(other_pub, other_len, token32, sizeof(token32), sig,
	    siglen);
	assert_int_equal(hsm_officer_sign(other, token32, sizeof(token32),
	    &osig, &osiglen, &st), 0);
	verify_fails(pub, publen, token32, sizeof(token32), osig, osiglen);
	free(buf);
	free(sig);
	free(osig);
}

static void
test_verify_tampered(void **state)
{
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	struct hsm_officer_key *k2 = NULL;
	unsigned char *pub2 = NULL;
	size_t pub2len = 0;
	hsm_status st;

	(void)state;
	memset(&st, 0, sizeof(st));
	tamper(ed_key, ed_pub, ed_pub_len, p384_pub, p384_pub_len, p384_key);
	tamper(p384_key, p384_pub, p384_pub_len, ed_pub, ed_pub_len, ed_key);
	/* Another key of the same type. */
	enc_key_file(tpath("ed2.key"), pk, "password", -1);
	assert_int_equal(hsm_officer_load(tpath("ed2.key"), "password", 8, &k2,
	    &st), 0);
	assert_int_equal(hsm_officer_pubkey(k2, &pub2, &pub2len, &st), 0);
	tamper(ed_key, ed_pub, ed_pub_len, pub2, pub2len, k2);
	hsm_officer_free(&k2);
	free(pub2);
	EVP_PKEY_free(pk);
	unlink(tpath("ed2.key"));
}

/*
 * The signed message is HSM_SIG_CONTEXT || 0x00 || token, checked with
 * signatures made directly with OpenSSL: only that exact form verifies.
 */
static void
context_case(EVP_PKEY *pk, const char *md, const char *bad_md)
{
	size_t cl = strlen(HSM_SIG_CONTEXT);
	unsigned char msg[64 + sizeof(token32)], *sig, *pub;
	size_t siglen, publen;
	hsm_status st;

	memset(&st, 0, sizeof(st));
	pub = der_of(pk, &publen);
	memcpy(msg, HSM_SIG_CONTEXT, cl);
	msg[cl] = 0;
	memcpy(msg + cl + 1, token32, sizeof(token32));
	/* The right form verifies: the format is what the header says. */
	sig = raw_sign(pk, md, msg, cl + 1 + sizeof(token32), &siglen);
	assert_int_equal(hsm_verify(pub, publen, token32, sizeof(token32), sig,
	    siglen, &st), 0);
	free(sig);
	/* The bare token. */
	sig = raw_sign(pk, md, token32, sizeof(token32), &siglen);
	verify_fails(pub, publen, token32, sizeof(token32), sig, siglen);
	free(sig);
	/* The context without the separator. */
	memcpy(msg + cl, token32, sizeof(token32));
	sig = raw_sign(pk, md, msg, cl + sizeof(token32), &siglen);
	verify_fails(pub, publen, token32, sizeof(token32), sig, siglen);
	free(sig);
	/* Another context. */
	memcpy(msg, "hsmctl-approval-v2", cl);
	msg[cl] = 0;
	memcpy(msg + cl + 1, token32, sizeof(token32));
	sig = raw_sign(pk, md, msg, cl + 1 + sizeof(token32), &siglen);
	verify_fails(pub, publen, token32, sizeof(token32), sig, siglen);
	free(sig);
	if (bad_md != NULL) {	/* right message, wrong hash */
		memcpy(msg, HSM_SIG_CONTEXT, cl);
		sig = raw_sign(pk, bad_md, msg, cl + 1 + sizeof(token32),
		    &siglen);
		verify_fails(pub, publen, token32, sizeof(token32), sig,
		    siglen);
		free(sig);
	}
	OPENSSL_free(pub);
}

static void
test_verify_context(void **state)
{
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");

	(void)state;
	assert_non_null(ed);
	assert_non_null(ec);
	assert_string_equal(HSM_SIG_CONTEXT, "hsmctl-approval-v1");
	context_case(ed, NULL, NULL);
	context_case(ec, "SHA384", "SHA256");
	context_case(ec, "SHA384", "SHA512");
	EVP_PKEY_free(ed);
	EVP_PKEY_free(ec);
}

/* ---- public keys ---- */

static void
check_bad_pub(EVP_PKEY *pk)
{
	unsigned char *der;
	size_t len;
	hsm_status st;

	memset(&st, 0, sizeof(st));
	der = der_of(pk, &len);
	assert_int_equal(hsm_pubkey_check(der, len, &st), -1);
	assert_code(st, "bad_value");
	assert_err_clean();
	OPENSSL_free(der);
	/* Nor from a file. */
	pem_pkey_file(tpath("bad.pub"), pk, true);
	der = (unsigned char *)&der;
	assert_int_equal(hsm_pubkey_read(tpath("bad.pub"), &der, &len, &st),
	    -1);
	assert_code(st, "bad_value");
	assert_null(der);
	assert_err_clean();
	unlink(tpath("bad.pub"));
}

static void
test_pubkey_check(void **state)
{
	EVP_PKEY *p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *p521 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	EVP_PKEY *x25519 = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	EVP_PKEY *ed448 = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
	unsigned char buf[PUBKEY_MAX + 2];
	hsm_status st;

	(void)state;
	memset(&st, 0, sizeof(st));
	assert_int_equal(hsm_pubkey_check(ed_pub, ed_pub_len, &st), 0);
	assert_int_equal(hsm_pubkey_check(p384_pub, p384_pub_len, &st), 0);
	check_bad_pub(p256);
	check_bad_pub(p521);
	check_bad_pub(rsa);
	check_bad_pub(x25519);
	check_bad_pub(ed448);
	/* Trailing, missing and garbage bytes. */
	memcpy(buf, ed_pub, ed_pub_len);
	buf[ed_pub_len] = 0;
	assert_int_equal(hsm_pubkey_check(buf, ed_pub_len + 1, &st), -1);
	assert_code(st, "bad_value");
	assert_int_equal(hsm_pubkey_check(buf, ed_pub_len - 1, &st), -1);
	assert_code(st, "bad_value");
	assert_int_equal(hsm_pubkey_check(buf, 0, &st), -1);
	assert_code(st, "bad_value");
	assert_int_equal(hsm_pubkey_check(NULL, 44, &st), -1);
	assert_code(st, "bad_value");
	memset(buf, 0x30, sizeof(buf));
	assert_int_equal(hsm_pubkey_check(buf, sizeof(buf), &st), -1);
	assert_code(st, "bad_value");
	assert_int_equal(hsm_pubkey_check(buf, 44, &st), -1);
	assert_code(st, "bad_value");
	assert_err_clean();
	EVP_PKEY_free(p256);
	EVP_PKEY_free(p521);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(x25519);
	EVP_PKEY_free(ed448);
}

/*
 * One key, one encoding: a compressed point is refused by
 * hsm_pubkey_check() and converted by hsm_pubkey_read(), so a node that
 * compares keys byte for byte cannot count one officer twice.
 */
static void
test_pubkey_canonical(void **state)
{
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	EVP_PKEY *cp;
	unsigned char *canon, *comp, *der = NULL;
	size_t clen, complen, len = 0;
	hsm_status st;

	(void)state;
	memset(&st, 0, sizeof(st));
	assert_non_null(pk);
	canon = der_of(pk, &clen);
	assert_int_equal(clen, 120);
	assert_int_equal(hsm_pubkey_check(canon, clen, &st), 0);
	assert_non_null(cp = EVP_PKEY_dup(pk));
	assert_int_equal(EVP_PKEY_set_utf8_string_param(cp,
	    OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
	    OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_COMPRESSED), 1);
	comp = der_of(cp, &complen);
	assert_int_equal(complen, 72);
	assert_int_equal(hsm_pubkey_check(comp, complen, &st), -1);
	assert_code(st, "bad_value");
	assert_err_clean();
	pem_pkey_file(tpath("comp.pub"), cp, true);
	assert_int_equal(hsm_pubkey_read(tpath("comp.pub"), &der, &len, &st),
	    0);
	assert_int_equal(len, clen);
	assert_memory_equal(der, canon, clen);
	free(der);
	OPENSSL_free(comp);
	EVP_PKEY_free(cp);
	/* Explicit curve parameters: refused by the check as well. */
	assert_non_null(cp = EVP_PKEY_dup(pk));
	assert_int_equal(EVP_PKEY_set_utf8_string_param(cp,
	    OSSL_PKEY_PARAM_EC_ENCODING, OSSL_PKEY_EC_ENCODING_EXPLICIT), 1);
	comp = der_of(cp, &complen);
	assert_true(complen > clen);
	assert_int_equal(hsm_pubkey_check(comp, complen, &st), -1);
	assert_code(st, "bad_value");
	assert_err_clean();
	OPENSSL_free(comp);
	EVP_PKEY_free(cp);
	OPENSSL_free(canon);
	EVP_PKEY_free(pk);
	unlink(tpath("comp.pub"));
}

static void
test_pubkey_read_rejects(void **state)
{
	unsigned char *der = NULL;
	size_t len = 0;
	hsm_status st;
	char pub[160];
	unsigned char *data;
	size_t dlen;

	(void)state;
	memset(&st, 0, sizeof(st));
	assert_int_equal(hsm_pubkey_read(ed_path, &der, &len, &st), -1);
	assert_code(st, "bad_value");
	assert_non_null(strstr(st.message, ed_path));
	put_file(tpath("g.pub"), "not a key\n", 10);
	assert_int_equal(hsm_pubkey_read(tpath("g.pub"), &der, &len, &st), -1);
	assert_code(st, "bad_value");
	assert_int_equal(hsm_pubkey_read(tpath("missing.pub"), &der, &len,
	    &st), -1);
	assert_code(st, "io");
	/* The right bytes under another PEM type. */
	snprintf(pub, sizeof(pub), "%s.pub", ed_path);
	data = pem_data(pub, NULL, &dlen);
	pem_file(tpath("g.pub"), "RSA PUBLIC KEY", "", data, dlen);
	assert_int_equal(hsm_pubkey_read(tpath("g.pub"), &der, &len, &st), -1);
	assert_code(st, "bad_value");
	/* Trailing bytes inside the block. */
	data = realloc(data, dlen + 1);
	assert_non_null(data);
	data[dlen] = 0;
	pem_file(tpath("g.pub"), "PUBLIC KEY", "", data, dlen + 1);
	assert_int_equal(hsm_pubkey_read(tpath("g.pub"), &der, &len, &st), -1);
	assert_code(st, "bad_value");
	assert_null(der);
	assert_err_clean();
	free(data);
	unlink(tpath("g.pub"));
}

/* ---- token files ---- */

static void
test_token_roundtrip(void **state)
{
	mode_t old;
	unsigned char *tok = NULL, *big, *text;
	size_t len = 0;
	hsm_status st;

	(void)state;
	memset(&st, 0, sizeof(st));
	assert_int_equal(hsm_token_write(tpath("t"), token32, sizeof(token32),
	    &st), 0);
	assert_int_equal(file_mode(tpath("t")), 0600);
	text = get_file(tpath("t"), &len);
	assert_memory_equal(text, "-----BEGIN HSMCTL TOKEN-----\n", 29);
	free(text);
	assert_int_equal(hsm_token_read(tpath("t"), &tok, &len, &st), 0);
	assert_int_equal(len, sizeof(token32));
	assert_memory_equal(tok, token32, len);
	free(tok);
	/* Rewriting replaces the file, and makes it 0600 again. */
	assert_int_equal(chmod(tpath("t"), 0644), 0);
	old = umask(0277);	/* 0600 even so */
	big = malloc(HSM_TOKEN_MAX + 1);
	assert_non_null(big);
	for (size_t i = 0; i <= HSM_TOKEN_MAX; i++)
		big[i] = (unsigned char)(i * 31);
	assert_int_equal(hsm_token_write(tpath("t"), big, HSM_TOKEN_MAX, &st),
	    0);
	umask(old);
	assert_int_equal(file_mode(tpath("t")), 0600);
	assert_int_equal(hsm_token_read(tpath("t"), &tok, &len, &st), 0);
	assert_int_equal(len, HSM_TOKEN_MAX);
	assert_memory_equal(tok, big, len);
	free(tok);
	/* Out of bounds: nothing written. */
	assert_int_equal(hsm_token_write(tpath("t2"), big, HSM_TOKEN_MAX + 1,
	    &st), -1);
	assert_code(st, "bad_value");
	assert_int_equal(hsm_token_write(tpath("t2"), big, 0, &st), -1);
	assert_code(st, "bad_value");
	assert_int_equal(hsm_token_write(tpath("t2"), NULL, 4, &st), -1);
	assert_code(st, "bad_value");
	assert_false(exists(tpath("t2")));
	assert_int_equal(hsm_token_write(tpath("nodir/t"), big, 4, &st), -1);
	assert_code(st, "io");
	/* A token over the bound in a well-formed file. */
	pem_file(tpath("t2"), "HSMCTL TOKEN", "", big, HSM_TOKEN_MAX + 1);
	tok = (unsigned char *)&tok;
	assert_int_equal(hsm_token_read(tpath("t2"), &tok, &len, &st), -1);
	assert_code(st, "integrity");
	assert_null(tok);
	assert_int_equal(count_tmp_files(), 0);
	assert_err_clean();
	free(big);
	unlink(tpath("t"));
	unlink(tpath("t2"));
}

/* Bytes of a file, each case expected to fail with code. */
static void
token_bad(const char *content, size_t len, const char *code)
{
	unsigned char *tok = NULL;
	size_t tlen = 0;
	hsm_status st;

	memset(&st, 0, sizeof(st));
	put_file(tpath("bad.tok"), content, len);
	if (hsm_token_read(tpath("bad.tok"), &tok, &tlen, &st) != -1) {
		print_error("accepted: %.*s\n", (int)len, content);
		fail();
	}
	assert_code(st, code);
	assert_non_null(strstr(st.message, "bad.tok"));
	assert_null(strchr(st.message, '\n'));
	assert_null(tok);
	assert_int_equal(tlen, 0);
	assert_err_clean();
}

#define TOKEN_BEGIN "-----BEGIN HSMCTL TOKEN-----\n"
#define TOKEN_END "-----END HSMCTL TOKEN-----\n"
#define TOKEN_OK TOKEN_BEGIN "AQIDBA==\n" TOKEN_END
#define S(x) x, sizeof(x) - 1

static void
test_token_read_rejects(void **state)
{
	unsigned char *tok = NULL, *big;
	size_t len = 0;
	hsm_status st;

	(void)state;
	memset(&st, 0, sizeof(st));
	/* The baseline is fine, surrounding whitespace too. */
	put_file(tpath("ok.tok"), S(TOKEN_OK));
	assert_int_equal(hsm_token_read(tpath("ok.tok"), &tok, &len, &st), 0);
	assert_int_equal(len, 4);
	assert_memory_equal(tok, "\1\2\3\4", 4);
	free(tok);
	put_file(tpath("ok.tok"), S("\n" TOKEN_OK "\n\n"));
	assert_int_equal(hsm_token_read(tpath("ok.tok"), &tok, &len, &st), 0);
	free(tok);
	unlink(tpath("ok.tok"));

	token_bad(S(""), "integrity");
	token_bad(S("AQIDBA==\n"), "integrity");
	token_bad(S("-----BEGIN HSMCTL APPROVAL-----\nAQIDBA==\n"
	    "-----END HSMCTL APPROVAL-----\n"), "integrity");
	token_bad(S("-----BEGIN PUBLIC KEY-----\nAQIDBA==\n"
	    "-----END PUBLIC KEY-----\n"), "integrity");
	token_bad(S(TOKEN_BEGIN "AQI*BA==\n" TOKEN_END), "integrity");
	token_bad(S(TOKEN_BEGIN "AQIDBA==\n"), "integrity");	/* truncated */
	token_bad(S(TOKEN_BEGIN "AQIDBA==\n-----END HSMCTL TOK"), "integrity");
	token_bad(S(TOKEN_BEGIN TOKEN_END), "integrity");	/* empty */
	token_bad(S(TOKEN_OK "junk\n"), "integrity");
	token_bad(S(TOKEN_OK "x"), "integrity");
	token_bad(S(TOKEN_OK TOKEN_OK), "integrity");
	token_bad(S("junk\n" TOKEN_OK), "integrity");
	token_bad(S(TOKEN_BEGIN "Proc-Type: 4,ENCRYPTED\n"
	    "DEK-Info: AES-256-CBC,00112233445566778899AABBCCDDEEFF\n\n"
	    "AQIDBA==\n" TOKEN_END), "integrity");
	token_bad(S(TOKEN_BEGIN "AQIDBA==\n-----END HSMCTL APPROVAL-----\n"),
	    "integrity");
	/* A file far over the bound is not read to its end. */
	big = malloc(1u << 20);
	assert_non_null(big);
	memset(big, 'A', 1u << 20);
	memcpy(big, TOKEN_BEGIN, strlen(TOKEN_BEGIN));
	token_bad((const char *)big, 1u << 20, "integrity");
	free(big);
	assert_int_equal(hsm_token_read(tpath("missing.tok"), &tok, &len, &st),
	    -1);
	assert_code(st, "io");
	assert_int_equal(hsm_token_read(tmpdir, &tok, &len, &st), -1);
	assert_code(st, "io");
	assert_err_clean();
	unlink(tpath("bad.tok"));
}

/* ---- approval files ---- */

static void
make_approval(struct hsm_officer_key *k, const unsigned char *pub,
    size_t publen, const unsigned char *tok, size_t toklen,
    struct hsm_approval *a)
{
	hsm_status st;

	memset(&st, 0, sizeof(st));
	memset(a, 0, sizeof(*a));
	a->token = malloc(toklen);
	assert_non_null(a->token);
	memcpy(a->token, tok, toklen);
	a->token_len = toklen;
	a->pubkey = malloc(publen);
	assert_non_null(a->pubkey);
	memcpy(a->pubkey, pub, publen);
	a->pubkey_len = publen;
	assert_int_equal(hsm_officer_sign(k, tok, toklen, &a->sig, &a->sig_len,
	    &st), 0);
}

static void
assert_same_approval(const struct hsm_approval *a, const struct hsm_approval *b)
{
	assert_int_equal(a->token_len, b->token_len);
	assert_memory_equal(a->token, b->token, a->token_len);
	assert_int_equal(a->pubkey_len, b->pubkey_len);
	assert_memory_equal(a->pubkey, b->pubkey, a->pubkey_len);
	assert_int_equal(a->sig_len, b->sig_len);
	assert_memory_equal(a->sig, b->sig, a->sig_len);
}

static void
approval_roundtrip(struct hsm_officer_key *k, const unsigned char *pub,
    size_t publen)
{
	struct hsm_approval a, b;
	unsigned char *body;
	size_t blen;
	char *type = NULL;
	cbor_item_t *m = NULL, *v;
	hsm_status st;

	memset(&st, 0, sizeof(st));
	make_approval(k, pub, publen, token32, sizeof(token32), &a);
	assert_int_equal(hsm_approval_write(tpath("a"), &a, &st), 0);
	assert_int_equal(file_mode(tpath("a")), 0600);
	assert_int_equal(hsm_approval_read(tpath("a"), &b, &st), 0);
	assert_same_approval(&a, &b);
	/* The body is the documented CBOR map. */
	body = pem_data(tpath("a"), &type, &blen);
	assert_string_equal(type, "HSMCTL APPROVAL");
	assert_int_equal(hsm_cbor_decode(body, blen, &m, &st), 0);
	assert_true(cbor_isa_map(m));
	assert_int_equal(cbor_map_size(m), 4);
	assert_non_null(v = hsm_map_get(m, "v"));
	assert_true(cbor_isa_uint(v));
	assert_int_equal(cbor_get_int(v), 1);
	assert_non_null(v = hsm_map_get(m, "token"));
	assert_int_equal(cbor_bytestring_length(v), sizeof(token32));
	assert_non_null(v = hsm_map_get(m, "pubkey"));
	assert_int_equal(cbor_bytestring_length(v), publen);
	assert_non_null(v = hsm_map_get(m, "sig"));
	assert_int_equal(cbor_bytestring_length(v), a.sig_len);
	cbor_decref(&m);
	free(body);
	free(type);
	hsm_approval_clear(&b);
	assert_null(b.token);
	assert_int_equal(b.token_len, 0);
	hsm_approval_clear(&b);		/* twice is harmless */
	hsm_approval_clear(NULL);
	/* Rewritten in place. */
	assert_int_equal(hsm_approval_write(tpath("a"), &a, &st), 0);
	assert_int_equal(count_tmp_files(), 0);
	hsm_approval_clear(&a);
	assert_err_clean();	/* success leaves nothing behind either */
	unlink(tpath("a"));
}

static void
test_approval_roundtrip(void **state)
{
	(void)state;
	approval_roundtrip(ed_key, ed_pub, ed_pub_len);
	approval_roundtrip(p384_key, p384_pub, p384_pub_len);
}

static void
test_approval_write_rejects(void **state)
{
	struct hsm_approval a;
	hsm_status st;

	(void)state;
	memset(&st, 0, sizeof(st));
	make_approval(ed_key, ed_pub, ed_pub_len, token32, sizeof(token32), &a);
	a.sig[3] ^= 1;
	assert_int_equal(hsm_approval_write(tpath("a"), &a, &st), -1);
	assert_code(st, "bad_signature");
	a.sig[3] ^= 1;
	a.pubkey_len--;
	assert_int_equal(hsm_approval_write(tpath("a"), &a, &st), -1);
	assert_code(st, "bad_signature");
	a.pubkey_len++;
	a.token_len = 0;
	assert_int_equal(hsm_approval_write(tpath("a"), &a, &st), -1);
	assert_code(st, "bad_value");
	assert_int_equal(hsm_approval_write(tpath("a"), NULL, &st), -1);
	assert_code(st, "bad_value");
	assert_false(exists(tpath("a")));
	assert_int_equal(count_tmp_files(), 0);
	assert_err_clean();
	hsm_approval_clear(&a);
}

/* ---- hand-made approval bodies ---- */

enum kind { K_UINT, K_NEG, K_BYTES, K_TEXT, K_INDEF, K_TAG };

struct fld {
	const char *key;
	enum kind kind;
	uint64_t u;
	const unsigned char *b;
	size_t n;
};

static cbor_item_t *
fld_value(const struct fld *f)
{
	cbor_item_t *v = NULL, *c;

	switch (f->kind) {
	case K_UINT:
		v = cbor_build_uint64(f->u);
		break;
	case K_NEG:
		v = cbor_build_negint8((uint8_t)f->u);
		break;
	case K_BYTES:
		v = cbor_build_bytestring(f->b, f->n);
		break;
	case K_TEXT:
		v = cbor_build_stringn((const char *)f->b, f->n);
		break;
	case K_INDEF:
		v = cbor_new_indefinite_bytestring();
		c = cbor_build_bytestring(f->b, f->n);
		assert_true(cbor_bytestring_add_chunk(v, c));
		cbor_decref(&c);
		break;
	case K_TAG:
		c = cbor_build_bytestring(f->b, f->n);
		v = cbor_build_tag(24, c);
		cbor_decref(&c);
		break;
	}
	assert_non_null(v);
	return v;
}

static unsigned char *
build_body(const struct fld *f, size_t n, size_t *len)
{
	cbor_item_t *m = cbor_new_definite_map(n), *k, *v;
	unsigned char *buf = NULL;
	size_t cap = 0;

	assert_non_null(m);
	for (size_t i = 0; i < n; i++) {
		k = cbor_build_string(f[i].key);
		v = fld_value(&f[i]);
		assert_true(cbor_map_add(m, (struct cbor_pair){ k, v }));
		cbor_decref(&k);
		cbor_decref(&v);
	}
	*len = cbor_serialize_alloc(m, &buf, &cap);
	assert_true(*len > 0);
	cbor_decref(&m);
	return buf;
}

static void
approval_bad(const unsigned char *body, size_t blen, const char *code,
    const char *what)
{
	struct hsm_approval a;
	hsm_status st;

	memset(&st, 0, sizeof(st));
	pem_file(tpath("bad.apr"), "HSMCTL APPROVAL", "", body, blen);
	if (hsm_approval_read(tpath("bad.apr"), &a, &st) != -1) {
		print_error("accepted: %s\n", what);
		fail();
	}
	if (strcmp(st.code, code) != 0) {
		print_error("%s: code %s (%s), expected %s\n", what, st.code,
		    st.message, code);
		fail();
	}
	assert_int_equal(hsm_code_exit(st.code), HSM_EXIT_INTEGRITY);
	assert_non_null(strstr(st.message, "bad.apr"));
	assert_null(a.token);
	assert_null(a.pubkey);
	assert_null(a.sig);
	assert_err_clean();
}

static void
test_approval_bad_bodies(void **state)
{
	struct hsm_approval a;
	unsigned char *body, *p256der, *zero;
	unsigned char sig[SIG_MAX + 1], pk[PUBKEY_MAX + 1];
	size_t blen, p256len;
	EVP_PKEY *p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	cbor_item_t *arr;
	const unsigned char *T, *K, *G;
	size_t Tn, Kn, Gn;

	(void)state;
	assert_non_null(p256);
	make_approval(ed_key, ed_pub, ed_pub_len, token32, sizeof(token32), &a);
	T = a.token, Tn = a.token_len;
	K = a.pubkey, Kn = a.pubkey_len;
	G = a.sig, Gn = a.sig_len;
	memset(pk, 0x30, sizeof(pk));
	memcpy(sig, G, Gn);
	sig[0] ^= 0x80;
	p256der = der_of(p256, &p256len);
	zero = calloc(1, HSM_TOKEN_MAX + 1);
	assert_non_null(zero);

#define GOOD_V { "v", K_UINT, 1, NULL, 0 }
#define GOOD_T { "token", K_BYTES, 0, T, Tn }
#define GOOD_K { "pubkey", K_BYTES, 0, K, Kn }
#define GOOD_S { "sig", K_BYTES, 0, G, Gn }
#define CASE(code, what, ...) do {					\
	const struct fld f_[] = { __VA_ARGS__ };			\
	body = build_body(f_, sizeof(f_) / sizeof(f_[0]), &blen);	\
	approval_bad(body, blen, code, what);				\
	free(body);							\
} while (0)

	/* The well-formed body is accepted (so the cases below are fair). */
	{
		const struct fld f[] = { GOOD_V, GOOD_T, GOOD_K, GOOD_S };
		struct hsm_approval b;
		hsm_status st;

		body = build_body(f, 4, &blen);
		pem_file(tpath("ok.apr"), "HSMCTL APPROVAL", "", body, blen);
		free(body);
		assert_int_equal(hsm_approval_read(tpath("ok.apr"), &b, &st), 0);
		assert_same_approval(&a, &b);
		hsm_approval_clear(&b);
		unlink(tpath("ok.apr"));
	}
	CASE("bad_signature", "flipped sig bit", GOOD_V, GOOD_T, GOOD_K,
	    { "sig", K_BYTES, 0, sig, Gn });
	CASE("bad_signature", "other token", GOOD_V,
	    { "token", K_BYTES, 0, T, Tn - 1 }, GOOD_K, GOOD_S);
	CASE("bad_signature", "other key", GOOD_V, GOOD_T,
	    { "pubkey", K_BYTES, 0, p384_pub, p384_pub_len }, GOOD_S);
	CASE("bad_signature", "P-256 key", GOOD_V, GOOD_T,
	    { "pubkey", K_BYTES, 0, p256der, p256len }, GOOD_S);
	CASE("bad_signature", "garbage key", GOOD_V, GOOD_T,
	    { "pubkey", K_BYTES, 0, pk, 44 }, GOOD_S);
	CASE("integrity", "no v", GOOD_T, GOOD_K, GOOD_S);
	CASE("integrity", "no token", GOOD_V, GOOD_K, GOOD_S);
	CASE("integrity", "no pubkey", GOOD_V, GOOD_T, GOOD_S);
	CASE("integrity", "no sig", GOOD_V, GOOD_T, GOOD_K);
	CASE("integrity", "extra field", GOOD_V, GOOD_T, GOOD_K, GOOD_S,
	    { "note", K_TEXT, 0, (const unsigned char *)"hi", 2 });
	CASE("integrity", "renamed field", GOOD_V, GOOD_T, GOOD_K,
	    { "sig2", K_BYTES, 0, G, Gn });
	CASE("integrity", "duplicate field", GOOD_V, GOOD_T, GOOD_K, GOOD_S,
	    GOOD_S);
	CASE("integrity", "v 2", { "v", K_UINT, 2, NULL, 0 }, GOOD_T, GOOD_K,
	    GOOD_S);
	CASE("integrity", "v 0", { "v", K_UINT, 0, NULL, 0 }, GOOD_T, GOOD_K,
	    GOOD_S);
	CASE("integrity", "v 2^32+1", { "v", K_UINT, (1ull << 32) + 1, NULL,
	    0 }, GOOD_T, GOOD_K, GOOD_S);
	CASE("integrity", "v -2", { "v", K_NEG, 1, NULL, 0 }, GOOD_T, GOOD_K,
	    GOOD_S);
	CASE("integrity", "v text", { "v", K_TEXT, 0,
	    (const unsigned char *)"1", 1 }, GOOD_T, GOOD_K, GOOD_S);
	CASE("integrity", "token text", GOOD_V, { "token", K_TEXT, 0,
	    (const unsigned char *)"abc", 3 }, GOOD_K, GOOD_S);
	CASE("integrity", "sig uint", GOOD_V, GOOD_T, GOOD_K,
	    { "sig", K_UINT, 5, NULL, 0 });
	CASE("integrity", "indefinite sig", GOOD_V, GOOD_T, GOOD_K,
	    { "sig", K_INDEF, 0, G, Gn });
	CASE("integrity", "tagged token", GOOD_V,
	    { "token", K_TAG, 0, T, Tn }, GOOD_K, GOOD_S);
	CASE("integrity", "empty token", GOOD_V,
	    { "token", K_BYTES, 0, T, 0 }, GOOD_K, GOOD_S);
	CASE("integrity", "empty sig", GOOD_V, GOOD_T, GOOD_K,
	    { "sig", K_BYTES, 0, G, 0 });
	CASE("integrity", "empty pubkey", GOOD_V, GOOD_T,
	    { "pubkey", K_BYTES, 0, K, 0 }, GOOD_S);
	CASE("integrity", "sig too long", GOOD_V, GOOD_T, GOOD_K,
	    { "sig", K_BYTES, 0, sig, SIG_MAX + 1 });
	CASE("integrity", "pubkey too long", GOOD_V, GOOD_T,
	    { "pubkey", K_BYTES, 0, pk, PUBKEY_MAX + 1 }, GOOD_S);
	CASE("integrity", "token too long", GOOD_V,
	    { "token", K_BYTES, 0, zero, HSM_TOKEN_MAX + 1 }, GOOD_K, GOOD_S);
	/* Not a map; trailing bytes; empty; truncated. */
	arr = cbor_new_definite_array(0);
	{
		size_t cap = 0;

		body = NULL;
		blen = cbor_serialize_alloc(arr, &body, &cap);
		approval_bad(body, blen, "integrity", "array");
		free(body);
	}
	cbor_decref(&arr);
	{
		const struct fld f[] = { GOOD_V, GOOD_T, GOOD_K, GOOD_S };

		body = build_body(f, 4, &blen);
		body = realloc(body, blen + 1);
		assert_non_null(body);
		body[blen] = 0x00;
		approval_bad(body, blen + 1, "integrity", "trailing byte");
		approval_bad(body, blen - 1, "integrity", "truncated");
		approval_bad(body, 1, "integrity", "header only");
		free(body);
	}
	approval_bad((const unsigned char *)"\xf6", 1, "integrity", "null");
	approval_bad((const unsigned char *)"\xa0", 1, "integrity", "empty map");
	approval_bad((const unsigned char *)"\xbf\xff", 2, "integrity",
	    "indefinite map");
#undef CASE
	free(zero);
	OPENSSL_free(p256der);
	EVP_PKEY_free(p256);
	hsm_approval_clear(&a);
	unlink(tpath("bad.apr"));
}

/*
 * Damage to the file itself: every byte changed, every truncation,
 * additions before and after.  The result is a refusal with the right
 * code, or (for the few changes base64 ignores) the very same approval.
 */
static void
test_approval_tampered_file(void **state)
{
	static const unsigned char flips[] = { 0x01, 0x20, 0x80 };
	struct hsm_approval a, b;
	unsigned char *orig, *buf, *body, *tok = NULL;
	size_t olen, blen;
	hsm_status st;
	size_t same = 0, refused = 0;

	(void)state;
	memset(&st, 0, sizeof(st));
	make_approval(ed_key, ed_pub, ed_pub_len, token32, sizeof(token32), &a);
	assert_int_equal(hsm_approval_write(tpath("a"), &a, &st), 0);
	orig = get_file(tpath("a"), &olen);
	buf = malloc(olen + 64);
	assert_non_null(buf);
	for (size_t i = 0; i < olen; i++)
		for (size_t j = 0; j < sizeof(flips); j++) {
			memcpy(buf, orig, olen);
			buf[i] ^= flips[j];
			put_file(tpath("t.apr"), buf, olen);
			if (hsm_approval_read(tpath("t.apr"), &b, &st) == 0) {
				assert_same_approval(&a, &b);
				hsm_approval_clear(&b);
				same++;
				continue;
			}
			refused++;
			if (strcmp(st.code, "integrity") != 0 &&
			    strcmp(st.code, "bad_signature") != 0) {
				print_error("byte %zu ^ %#x: %s (%s)\n", i,
				    flips[j], st.code, st.message);
				fail();
			}
			assert_null(b.sig);
			assert_err_clean();
		}
	assert_true(refused > same * 10);
	for (size_t n = 0; n < olen; n++) {
		put_file(tpath("t.apr"), orig, n);
		if (hsm_approval_read(tpath("t.apr"), &b, &st) == 0) {
			/* Only the final newline may go. */
			assert_int_equal(n, olen - 1);
			assert_same_approval(&a, &b);
			hsm_approval_clear(&b);
			continue;
		}
		assert_code(st, "integrity");
	}
	/* Additions. */
	memcpy(buf, orig, olen);
	memcpy(buf + olen, "x", 1);
	put_file(tpath("t.apr"), buf, olen + 1);
	assert_int_equal(hsm_approval_read(tpath("t.apr"), &b, &st), -1);
	assert_code(st, "integrity");
	memcpy(buf, "# note\n", 7);
	memcpy(buf + 7, orig, olen);
	put_file(tpath("t.apr"), buf, olen + 7);
	assert_int_equal(hsm_approval_read(tpath("t.apr"), &b, &st), -1);
	assert_code(st, "integrity");
	/* The right body under the token's PEM type, and the reverse. */
	body = pem_data(tpath("a"), NULL, &blen);
	pem_file(tpath("t.apr"), "HSMCTL TOKEN", "", body, blen);
	assert_int_equal(hsm_approval_read(tpath("t.apr"), &b, &st), -1);
	assert_code(st, "integrity");
	assert_int_equal(hsm_token_read(tpath("a"), &tok, &blen, &st), -1);
	assert_code(st, "integrity");
	assert_null(tok);
	free(body);
	assert_int_equal(hsm_approval_read(tpath("missing.apr"), &b, &st), -1);
	assert_code(st, "io");
	assert_err_clean();
	free(buf);
	free(orig);
	hsm_approval_clear(&a);
	unlink(tpath("a"));
	unlink(tpath("t.apr"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keygen_files),
		cmocka_unit_test(test_keygen_encryption),
		cmocka_unit_test(test_keygen_openssl_cli),
		cmocka_unit_test(test_keygen_refuses_overwrite),
		cmocka_unit_test(test_keygen_bad_args),
		cmocka_unit_test(test_load_wrong_passphrase),
		cmocka_unit_test(test_load_rejects),
		cmocka_unit_test(test_load_foreign_key),
		cmocka_unit_test(test_sign_verify),
		cmocka_unit_test(test_verify_tampered),
		cmocka_unit_test(test_verify_context),
		cmocka_unit_test(test_pubkey_check),
		cmocka_unit_test(test_pubkey_canonical),
		cmocka_unit_test(test_pubkey_read_rejects),
		cmocka_unit_test(test_token_roundtrip),
		cmocka_unit_test(test_token_read_rejects),
		cmocka_unit_test(test_approval_roundtrip),
		cmocka_unit_test(test_approval_write_rejects),
		cmocka_unit_test(test_approval_bad_bodies),
		cmocka_unit_test(test_approval_tampered_file),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
