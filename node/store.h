/* The node's durable store: SQLite, WAL, synchronous=FULL. */
#ifndef HSMD_STORE_H
#define HSMD_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "hsmctl.h"

#define STORE_FILE "store.db"
#define STORE_SCHEMA 1

struct node_meta {
	char node[HSM_NAME_MAX + 1];
	char cluster[HSM_NAME_MAX + 1];
	char cluster_id[33];
	char role[16];
	uint64_t epoch;
	uint64_t last_seq;
	bool sandbox;
	int64_t created;
};

/* Open (create=true: create the schema) a store; one handle per thread. */
int store_open(const char *dir, bool create, sqlite3 **db, hsm_status *st);
void store_close(sqlite3 **db);
/* Create missing tables (idempotent). */
int store_migrate(sqlite3 *db, hsm_status *st);
/* Run SQL without results; errors as "io". */
int store_exec(sqlite3 *db, const char *sql, hsm_status *st);
int store_init_meta(sqlite3 *db, const struct node_meta *m, hsm_status *st);
int store_meta(sqlite3 *db, struct node_meta *m, hsm_status *st);
/* A numeric setting from meta, or dflt when absent. */
int64_t store_meta_int(sqlite3 *db, const char *key, int64_t dflt);
/* A text setting from meta into buf; "" when absent. */
void store_meta_text(sqlite3 *db, const char *key, char *buf, size_t len);
int store_meta_set(sqlite3 *db, const char *key, const char *value,
    hsm_status *st);

#endif
