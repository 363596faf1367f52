/*
 * The node as a client of the other nodes of its cluster: a replica pulls
 * the master's log, a master checks that no newer epoch exists, a joining
 * node waits to be admitted.  Every connection pins the other node's host
 * key and authenticates with this node's own host key.
 */
#ifndef HSMD_PEER_H
#define HSMD_PEER_H

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "hsmctl.h"
#include "ops.h"

struct member {
	char name[HSM_NAME_MAX + 1];
	char role[16];
	char addr[300];
	char host_key[64];
};

/* The members of the cluster other than this node (from the store). */
int peer_members(sqlite3 *db, const char *self, struct member **out,
    size_t *n, hsm_status *st);
int peer_connect(const struct node_ctx *n, const char *addr, const char *fp,
    int timeout_ms, struct hsm_conn **c, hsm_status *st);
/* The same, for a node not yet admitted: it may only ask to join. */
int peer_connect_joining(const struct node_ctx *n, const char *addr,
    const char *fp, int timeout_ms, struct hsm_conn **c, hsm_status *st);
/*
 * Pull from c and apply until this node holds seq upto (0: one pull);
 * entries, or a snapshot when the log cannot serve us.
 */
int peer_sync(const struct node_ctx *n, sqlite3 *db, struct hsm_conn *c,
    uint64_t upto, uint64_t fence, int wait_ms, cbor_item_t **resp,
    hsm_status *st);

/* Before serving: a master that missed a promotion learns of it. */
void peer_startup_check(struct node_ctx *n);
/* The background thread. */
int peer_start(struct node_ctx *n, hsm_status *st);
void peer_stop(void);

#endif
