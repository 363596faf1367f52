/*
 * A partition's ways out (DESIGN §8): transfer (SO) and migrate (PSO) to
 * a node of another cluster, export wrapped under the customer's key
 * (PSO), delete with a signed certificate (SO).  Transfer and migrate are
 * journaled plans: every step's state is in the store, and the source is
 * deleted only after the target has verified every object.
 */
#ifndef HSMD_EXITS_H
#define HSMD_EXITS_H

#include "ops.h"

int op_exit_transfer(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_exit_migrate(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_exit_resume(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_exit_status(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_exit_export(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_exit_export_delete(struct sess_ctx *, const cbor_item_t *,
    cbor_item_t **, hsm_status *);
int op_exit_delete(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
/* The target's side. */
int op_exit_offer(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_exit_import(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_exit_confirm(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);

#endif
