/* Key objects of partitions and the technical user (DESIGN §4, §6). */
#ifndef HSMD_OBJECTS_H
#define HSMD_OBJECTS_H

#include <stdint.h>

#include <sqlite3.h>

#include "ops.h"

int op_auth_user(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_key_generate(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_key_list(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_key_show(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_key_sign(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_key_attest(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_key_delete(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_key_restore(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_key_purge(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
/* Objects, invalidated objects and bytes a partition uses. */
void objects_usage(sqlite3 *db, const char *partition, int64_t *objects,
    int64_t *invalidated, int64_t *bytes);
/* AES-256-GCM of key material under any key, AAD partition and id. */
int key_seal(const unsigned char key[32], const char *part, const char *id,
    const unsigned char *in, size_t len, unsigned char **out, size_t *outlen,
    hsm_status *st);
int key_open(const unsigned char key[32], const char *part, const char *id,
    const unsigned char *in, size_t len, unsigned char **out, size_t *outlen,
    hsm_status *st);
/* Key material sealed under the master key, AAD partition and id. */
int objects_seal(const struct node_ctx *n, const char *part, const char *id,
    const unsigned char *in, size_t len, unsigned char **out, size_t *outlen,
    hsm_status *st);
int objects_unseal(const struct node_ctx *n, const char *part, const char *id,
    const unsigned char *in, size_t len, unsigned char **out, size_t *outlen,
    hsm_status *st);
/* 0: in service; 1: leaving (an exit in progress); 2: being imported. */
int partition_exit_state(sqlite3 *db, const char *part);
/* Forget the key a session keeps decoded for signing (session end). */
void objects_cache_drop(struct sess_ctx *s);
/* Drop a session's session objects (NULL: every session's, at start). */
void objects_session_end(struct sess_ctx *s, const char *session);

#endif
