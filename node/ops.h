/* The node's op table and its single permission gate. */
#ifndef HSMD_OPS_H
#define HSMD_OPS_H

#include <stddef.h>
#include <time.h>

#include <sqlite3.h>

#include "hsmctl.h"

/* Shared by every session; read-only once the server runs. */
struct node_ctx {
	const char *dir;
	char hostkey_fp[64];
	time_t started;
};

/* One SSH session of one terminal. */
struct sess_ctx {
	const struct node_ctx *node;
	sqlite3 *db;
	char peer[64];		/* "ADDR:PORT" of the client */
	char term_fp[64];	/* terminal key fingerprint */
};

/*
 * Answer one request frame payload with one response frame.  Every
 * failure, malformed input included, becomes an error response; -1 only
 * when not even that can be encoded.
 */
int ops_handle(struct sess_ctx *s, const unsigned char *payload, size_t len,
    unsigned char **out, size_t *outlen);

#endif
