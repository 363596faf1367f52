/*
 * Makes the seed corpus of fuzz_backup: small valid backups under the
 * fixed keys of tests/fuzz/fuzz_backup.c.
 *   cc -Ilib tests/fuzz/mkseed_backup.c lib/libhsmctl.a -lcbor -lcrypto \
 *       -o mkseed && ./mkseed tests/fuzz/corpus/fuzz_backup
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "hsmctl.h"

int
main(int argc, char **argv)
{
	unsigned char bkey[32], skey[32], plain[3000];
	struct hsm_backup_header h;
	hsm_backup_writer *w = NULL;
	EVP_PKEY *k;
	hsm_status st;
	char path[4096];
	char *scope[] = { "acme", "beta" };

	if (argc != 2)
		return 2;
	for (int i = 0; i < 32; i++) {
		bkey[i] = (unsigned char)(i + 1);
		skey[i] = (unsigned char)(32 - i);
	}
	k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, skey, 32);
	for (int n = 0; n < 3; n++) {
		int fd;

		memset(&h, 0, sizeof(h));
		h.format = HSM_BACKUP_FORMAT;
		snprintf(h.id, sizeof(h.id), "%032x", n);
		snprintf(h.cluster, sizeof(h.cluster), "c1");
		snprintf(h.cluster_id, sizeof(h.cluster_id), "%032x", 7);
		snprintf(h.node, sizeof(h.node), "n1");
		h.partitions = n == 1 ? scope : NULL;
		h.npartitions = n == 1 ? 2 : 0;
		h.created = 1700000000;
		h.seq = 42;
		h.epoch = 1;
		h.chunk_size = 1024;
		memset(h.salt, n, sizeof(h.salt));
		snprintf(path, sizeof(path), "%s/seed%d", argv[1], n);
		if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
			return 1;
		memset(plain, 'x', sizeof(plain));
		if (hsm_backup_writer_open(fd, &h, bkey, k, &w, &st) != 0)
			return 1;
		for (int c = 0; c < n; c++)
			if (hsm_backup_writer_chunk(w, plain, 100 + 400 *
			    (size_t)c, &st) != 0)
				return 1;
		if (hsm_backup_writer_close(w, NULL, &st) != 0)
			return 1;
		hsm_backup_writer_free(&w);
		close(fd);
	}
	EVP_PKEY_free(k);
	return 0;
}
