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
int op_auth_whoami(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);

#endif
