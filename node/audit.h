/*
 * The audit log: every login (granted or refused), logout and state
 * change, hash-chained so that altering, removing or reordering an entry
 * is detected.  The head (count and last hash) is kept in meta too, so
 * dropping the newest entries is detected as well.
 */
#ifndef HSMD_AUDIT_H
#define HSMD_AUDIT_H

#include "ops.h"

/*
 * Append within the caller's transaction; partition is the one the entry
 * concerns (NULL: the session's).  args must never hold a secret.
 */
int audit_append(struct sess_ctx *s, const char *partition, const char *op,
    const char *args, const char *result, hsm_status *st);
/*
 * Append an entry made elsewhere (a replicated change of the master):
 * node, session, role, partition, officers, op, args, result.
 */
#define AUDIT_FIELDS 8
int audit_append_raw(sqlite3 *db, int64_t when,
    const char *const f[AUDIT_FIELDS], hsm_status *st);
/* Append in a transaction of its own (refusals, logins). */
int audit_record(struct sess_ctx *s, const char *op, const char *args,
    const char *result);

/* The newest entry's hash, hex: a digest of all state changes so far. */
void audit_head_hex(sqlite3 *db, char *out, size_t len);

int op_audit_log(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);
int op_audit_verify(struct sess_ctx *, const cbor_item_t *, cbor_item_t **,
    hsm_status *);

#endif
