/* Officer login on a session: challenge, login, whoami, logout. */
#ifndef HSMD_AUTH_H
#define HSMD_AUTH_H

#include "ops.h"

int op_auth_challenge(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_auth_login(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_auth_logout(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
/*
 * An approval bound to one operation: on success the session holds the
 * approvers' role for this request, and saved the role to restore.
 */
int auth_op_approval(struct sess_ctx *s, const char *op,
    const cbor_item_t *args, const cbor_item_t *approval,
    struct sess_ctx *saved, hsm_status *st);

int op_approval_list(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_approval_cancel(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_auth_whoami(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);

#endif
