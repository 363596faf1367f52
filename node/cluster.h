/* Cluster membership and mastership ops (see cluster.c). */
#ifndef HSMD_CLUSTER_H
#define HSMD_CLUSTER_H

#include "ops.h"

int op_cluster_join(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_cluster_admit(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_cluster_promote(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);

#endif
