/*
 * libFuzzer target for the backup file reader in lib/backup.c.
 *
 * Every input is read as a backup file twice: with a fixed backup key and
 * cluster public key (the seed corpus was made with them, so mutations of
 * it get past the header), and without a key (the offline check).  Besides
 * crashes, leaks and undefined behaviour it checks that a failure is an
 * "integrity" (or no_memory) error with a one-line message, and that a
 * success reached the end marker and a signature.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "hsmctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The fixed keys of the seed corpus (see tests/fuzz/mkseed_backup.c). */
static const unsigned char bkey[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
	12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
	30, 31, 32 };
static const unsigned char skey[32] = { 32, 31, 30, 29, 28, 27, 26, 25, 24,
	23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5,
	4, 3, 2, 1 };

static void
check(bool ok)
{
	if (!ok)
		abort();
}

static void
run(int fd, const unsigned char *key, EVP_PKEY *pub)
{
	struct hsm_backup_header h;
	hsm_status st;
	uint64_t chunks = 0;

	hsm_status_clear(&st);
	check(lseek(fd, 0, SEEK_SET) == 0);
	if (hsm_backup_verify_fd(fd, key, pub, &h, &chunks, &st) == 0) {
		check(chunks >= 1);
		check(h.format == HSM_BACKUP_FORMAT);
		check(strlen(h.id) <= 32);
		hsm_backup_header_clear(&h);
		return;
	}
	check(strcmp(st.code, "integrity") == 0 ||
	    strcmp(st.code, "no_memory") == 0);
	check(st.message[0] != '\0' && strchr(st.message, '\n') == NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static EVP_PKEY *pub;
	int fd;

	if (pub == NULL) {
		EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519,
		    NULL, skey, sizeof(skey));
		unsigned char raw[32];
		size_t rl = sizeof(raw);

		check(k != NULL && EVP_PKEY_get_raw_public_key(k, raw,
		    &rl) == 1);
		EVP_PKEY_free(k);
		pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw,
		    rl);
		check(pub != NULL);
	}
	if ((fd = memfd_create("backup", 0)) < 0)
		return 0;
	if (hsm_write_all(fd, data, size) == 0) {
		run(fd, bkey, pub);
		run(fd, NULL, pub);
		run(fd, NULL, NULL);
	}
	close(fd);
	return 0;
}
