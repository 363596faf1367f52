/*
 * Backups of the node's state (DESIGN §8): made from one read transaction
 * and streamed to a file under DIR/backups, in the format of lib/backup.c;
 * listed, verified, read out and uploaded in pieces, restored after a
 * full verification in one transaction, pruned, and taken on a schedule.
 */
#ifndef HSMD_BACKUP_H
#define HSMD_BACKUP_H

#include <stdbool.h>

#include "ops.h"

#define BACKUP_DIR "backups"
#define BACKUP_KEY_FILE "backup.key"
#define CLUSTER_KEY_FILE "cluster_ed25519.pem"
#define BACKUP_KEEP_DAYS 10

/* The cluster's backup key and signing key into n (a master makes a
 * missing signing key; others get it when admitted). */
int backup_keys_load(struct node_ctx *n, bool create_sign, hsm_status *st);
/* The signing key as PEM, for a node being admitted. */
int backup_cluster_key_pem(const struct node_ctx *n, unsigned char **pem,
    size_t *len, hsm_status *st);
/* Before serving: drop half-written files, list the backups present. */
int backup_startup(const struct node_ctx *n, hsm_status *st);
void backup_session_end(struct sess_ctx *s);
/* node.info: schedule, last backup, next run. */
int backup_info(struct sess_ctx *s, cbor_item_t *r, hsm_status *st);
/* The scheduled backups' thread. */
int backup_scheduler_start(const struct node_ctx *n, hsm_status *st);
void backup_scheduler_stop(void);

int op_backup_create(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_backup_list(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_backup_show(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_backup_verify(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_backup_read(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_backup_upload(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_backup_restore(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_backup_prune(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_backup_schedule(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);

#endif
