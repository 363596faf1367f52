/* Partitions and their parameters (DESIGN §5, §6). */
#ifndef HSMD_PARTITIONS_H
#define HSMD_PARTITIONS_H

#include <sqlite3.h>

#include "ops.h"

int op_partition_create(struct sess_ctx *, const cbor_item_t *,
    cbor_item_t **, hsm_status *);
int op_partition_list(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_partition_show(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_partition_get(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_partition_set(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_partition_delete(struct sess_ctx *, const cbor_item_t *,
    cbor_item_t **, hsm_status *);
int op_partition_secret(struct sess_ctx *, const cbor_item_t *,
    cbor_item_t **, hsm_status *);
/* 0 if secret is the current API secret of partition name. */
int partition_secret_check(sqlite3 *db, const char *name, const char *secret);
/* The stored hash of the current secret (which sessions remember). */
int partition_secret_hash(sqlite3 *db, const char *name, unsigned char out[32]);

#endif
