/* Small helpers shared by the client and the node. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "hsmctl.h"

int
hsm_fingerprint(const unsigned char *blob, size_t len, char *out,
    size_t outlen, hsm_status *st)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
	int n;

	if (EVP_Digest(blob, len, md, &mdlen, EVP_sha256(), NULL) != 1)
		return hsm_fail(st, "internal", "SHA-256 failed");
	n = EVP_EncodeBlock((unsigned char *)b64, md, (int)mdlen);
	/* OpenSSH prints SHA256 fingerprints without base64 padding. */
	while (n > 0 && b64[n - 1] == '=')
		b64[--n] = '\0';
	if ((size_t)n + sizeof("SHA256:") > outlen)
		return hsm_fail(st, "internal", "fingerprint buffer too small");
	memcpy(out, "SHA256:", 7);
	memcpy(out + 7, b64, (size_t)n + 1);
	return 0;
}

int
hsm_write_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;		/* a short write continues, never repeats */
		len -= (size_t)n;
	}
	return 0;
}

void
hsm_hex(const unsigned char *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 0xf];
	}
	out[2 * n] = '\0';
}

int
hsm_hkdf_sha256(const unsigned char *ikm, size_t ikmlen,
    const unsigned char *salt, size_t saltlen, const unsigned char *info,
    size_t infolen, unsigned char out[32], hsm_status *st)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kc = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM p[5];
	size_t n = 0;
	int r = -1;

	if (kc == NULL) {
		hsm_fail(st, "internal", "HKDF unavailable");
		goto out;
	}
	p[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	p[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
	    (void *)(uintptr_t)ikm, ikmlen);
	if (saltlen > 0)
		p[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
		    (void *)(uintptr_t)salt, saltlen);
	p[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
	    (void *)(uintptr_t)info, infolen);
	p[n] = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kc, out, 32, p) != 1) {
		hsm_fail(st, "internal", "HKDF failed");
		goto out;
	}
	r = 0;
out:
	EVP_KDF_CTX_free(kc);
	EVP_KDF_free(kdf);
	return r;
}
