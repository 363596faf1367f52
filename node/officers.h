/* Registered officers and quorums (DESIGN §4, §5). */
#ifndef HSMD_OFFICERS_H
#define HSMD_OFFICERS_H

#include <stdint.h>

#include <sqlite3.h>

#include "ops.h"

struct officer {
	int64_t id;
	char name[HSM_NAME_MAX + 1];
	char fingerprint[64];
};

/*
 * The active officer of role (and partition) holding this public key;
 * otherwise a "login_refused" error saying why (unknown key, removed
 * officer, officer of another role or partition).
 */
int officer_by_key(sqlite3 *db, const unsigned char *der, size_t len,
    const char *role, const char *partition, struct officer *o,
    hsm_status *st);
/* The quorum m of a role (defaults: genesis 1, so 2, pso 1). */
int64_t quorum_of(sqlite3 *db, const char *role, const char *partition);
/* 0 if partition exists and its partition-admin parameter is on. */
int partition_admin_on(sqlite3 *db, const char *partition, hsm_status *st);
/* At init: the device owner's officers and their quorum. */
int officers_init(sqlite3 *db, const char **names, const char **pubfiles,
    size_t n, int64_t genesis_quorum, hsm_status *st);

int op_officer_list(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_officer_add(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_officer_remove(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_quorum_show(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_quorum_set(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);

#endif
