/* Backups on the node (see backup.h; the file format is lib/backup.c). */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "audit.h"
#include "backup.h"
#include "fsutil.h"
#include "log.h"
#include "repl.h"
#include "server.h"
#include "store.h"

#define READ_MAX (4u * 1024 * 1024)
#define CHUNK_MARGIN 4096
#define ID_LEN 32

/* Backed up, in this order (parents before children), never "nodes":
 * a restore must not undo the cluster's membership. */
static const struct {
	const char *table;
	const char *part_col;	/* its partition column */
} dump_tables[] = {
	{ "officers", "partition" },
	{ "quorums", "partition" },
	{ "partitions", "name" },
	{ "partition_params", "partition" },
	{ "objects", "partition" },
};
#define NDUMP (sizeof(dump_tables) / sizeof(dump_tables[0]))

struct upload {
	int fd;
	char path[4096];
	uint64_t size, written;
};

/* ---- keys -------------------------------------------------------------- */

int
backup_keys_load(struct node_ctx *n, bool create_sign, hsm_status *st)
{
	char path[4096], *buf = NULL;
	size_t len = 0;
	int r = -1;

	if (fs_path(path, sizeof(path), n->dir, BACKUP_KEY_FILE, st) != 0)
		return -1;
	if (access(path, F_OK) != 0 && create_sign) {
		/* A node made before backups existed: its master makes one. */
		unsigned char k[32];

		if (RAND_priv_bytes(k, sizeof(k)) != 1)
			return hsm_fail(st, "internal", "no randomness");
		r = fs_write_new(path, k, sizeof(k), 0600, st);
		OPENSSL_cleanse(k, sizeof(k));
		if (r != 0)
			return -1;
		r = -1;
	}
	if (fs_read(path, 64, &buf, &len, st) != 0)
		return -1;
	if (len != sizeof(n->backup_key))
		hsm_fail(st, "io", "%s is not a 32-byte key", path);
	else {
		memcpy(n->backup_key, buf, len);
		r = 0;
	}
	OPENSSL_cleanse(buf, len);
	free(buf);
	if (r != 0)
		return -1;
	EVP_PKEY_free(n->cluster_key);
	n->cluster_key = NULL;
	if (!create_sign && fs_path(path, sizeof(path), n->dir,
	    CLUSTER_KEY_FILE, st) == 0 && access(path, F_OK) != 0) {
		/* A replica admitted before backups existed: it serves all
		 * but backups until it is joined anew. */
		log_warn("%s is missing: this node makes and checks no "
		    "backups", path);
		return 0;
	}
	return load_ed25519_key(n->dir, CLUSTER_KEY_FILE, create_sign,
	    &n->cluster_key, st);
}

int
backup_cluster_key_pem(const struct node_ctx *n, unsigned char **pem,
    size_t *len, hsm_status *st)
{
	BIO *b = BIO_new(BIO_s_secmem());
	char *p = NULL;
	long l;

	*pem = NULL;
	if (b == NULL || n->cluster_key == NULL ||
	    PEM_write_bio_PrivateKey(b, n->cluster_key, NULL, NULL, 0, NULL,
	    NULL) != 1 || (l = BIO_get_mem_data(b, &p)) <= 0 ||
	    (*pem = malloc((size_t)l)) == NULL) {
		BIO_free(b);
		return hsm_fail(st, "internal", "cannot export the cluster key");
	}
	memcpy(*pem, p, (size_t)l);
	*len = (size_t)l;
	BIO_free(b);
	return 0;
}

/* ---- files and the list ------------------------------------------------ */

static int
backup_path(const struct node_ctx *n, const char *id, const char *ext,
    char *out, size_t len, hsm_status *st)
{
	char name[128];

	snprintf(name, sizeof(name), "%s/%.40s%.40s", BACKUP_DIR, id, ext);
	return fs_path(out, len, n->dir, name, st);
}

static int
ensure_dir(const struct node_ctx *n, hsm_status *st)
{
	char path[4096];

	if (fs_path(path, sizeof(path), n->dir, BACKUP_DIR, st) != 0)
		return -1;
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return hsm_fail(st, "io", "cannot create %s: %s", path,
		    strerror(errno));
	return 0;
}

static char *
scope_text(const struct hsm_backup_header *h)
{
	size_t n = 1;
	char *s;

	for (size_t i = 0; i < h->npartitions; i++)
		n += strlen(h->partitions[i]) + 1;
	if ((s = calloc(1, n)) == NULL)
		return NULL;
	for (size_t i = 0; i < h->npartitions; i++) {
		if (i > 0)
			strcat(s, ",");
		strcat(s, h->partitions[i]);
	}
	return s;
}

static int
register_backup(sqlite3 *db, const struct hsm_backup_header *h, uint64_t size,
    uint64_t objects, int verified, const char *origin, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	char *scope = scope_text(h);
	int r = -1;

	if (scope == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO backups (id, created, "
	    "node, scope, seq, epoch, size, objects, verified, verified_at, "
	    "origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)", -1,
	    &q, NULL) != SQLITE_OK)
		goto io;
	sqlite3_bind_text(q, 1, h->id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, h->created);
	sqlite3_bind_text(q, 3, h->node, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, scope, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 5, (int64_t)h->seq);
	sqlite3_bind_int64(q, 6, (int64_t)h->epoch);
	sqlite3_bind_int64(q, 7, (int64_t)size);
	sqlite3_bind_int64(q, 8, (int64_t)objects);
	sqlite3_bind_int(q, 9, verified);
	if (verified != 0)
		sqlite3_bind_int64(q, 10, (int64_t)time(NULL));
	sqlite3_bind_text(q, 11, origin, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_DONE)
		goto io;
	r = 0;
	goto out;
io:
	hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
out:
	sqlite3_finalize(q);
	free(scope);
	return r;
}

static int
exec_id(sqlite3 *db, const char *sql, const char *id, hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	int r = 0;

	if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(q) != SQLITE_DONE)
		r = hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_finalize(q);
	return r;
}

/*
 * The directory is the truth: a file is a backup once renamed into place;
 * the table only remembers what was learnt of it.  Half-written files of
 * a node that died are removed; files the table lacks are entered.
 */
int
backup_startup(const struct node_ctx *n, hsm_status *st)
{
	char path[4096], file[4096];
	struct hsm_backup_header h;
	sqlite3 *db = NULL;
	DIR *d;
	struct dirent *e;
	int r = -1;

	if (ensure_dir(n, st) != 0 || fs_path(path, sizeof(path), n->dir,
	    BACKUP_DIR, st) != 0)
		return -1;
	if (store_open(n->dir, false, &db, st) != 0)
		return -1;
	if ((d = opendir(path)) == NULL) {
		hsm_fail(st, "io", "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		int fd;

		if (fs_path(file, sizeof(file), path, e->d_name, NULL) != 0)
			continue;
		if (l > 4 && strcmp(e->d_name + l - 4, ".tmp") == 0) {
			log_info("removing the unfinished backup file %s",
			    file);
			unlink(file);
			continue;
		}
		if (l != ID_LEN + 4 || strcmp(e->d_name + ID_LEN, ".hbk") != 0)
			continue;
		if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		{
			hsm_backup_reader *rd = NULL;
			hsm_status e2;
			struct stat sb;
			sqlite3_stmt *q = NULL;
			bool known = false;

			hsm_status_clear(&e2);
			if (hsm_backup_reader_open(fd, NULL, &rd, &h,
			    &e2) == 0) {
				if (sqlite3_prepare_v2(db, "SELECT 1 FROM "
				    "backups WHERE id = ?1", -1, &q,
				    NULL) == SQLITE_OK) {
					sqlite3_bind_text(q, 1, h.id, -1,
					    SQLITE_STATIC);
					known = sqlite3_step(q) == SQLITE_ROW;
				}
				sqlite3_finalize(q);
				if (!known && fstat(fd, &sb) == 0 &&
				    strncmp(e->d_name, h.id, ID_LEN) == 0)
					register_backup(db, &h,
					    (uint64_t)sb.st_size, 0, 0, "found",
					    &e2);
				hsm_backup_header_clear(&h);
			}
			hsm_backup_reader_free(&rd);
		}
		close(fd);
	}
	closedir(d);
	/* Rows whose file is gone. */
	{
		sqlite3_stmt *q = NULL;
		char gone[64][ID_LEN + 1];
		size_t ng = 0;

		if (sqlite3_prepare_v2(db, "SELECT id FROM backups", -1, &q,
		    NULL) == SQLITE_OK)
			while (sqlite3_step(q) == SQLITE_ROW && ng < 64) {
				const char *id = sql_text(q, 0);

				if (!hsm_backup_id_ok(id) || backup_path(n, id, ".hbk",
				    file, sizeof(file), NULL) != 0 ||
				    access(file, F_OK) != 0)
					snprintf(gone[ng++], sizeof(gone[0]),
					    "%.32s", id);
			}
		sqlite3_finalize(q);
		for (size_t i = 0; i < ng; i++)
			exec_id(db, "DELETE FROM backups WHERE id = ?1",
			    gone[i], NULL);
	}
	r = 0;
out:
	store_close(&db);
	return r;
}

/* ---- making one -------------------------------------------------------- */

struct dump {
	hsm_backup_writer *w;
	cbor_item_t *rows;	/* of the chunk being filled */
	const char *table;
	cbor_item_t *cols;
	size_t approx;
	uint32_t chunk_size;
	uint64_t objects;
};

static int
flush_chunk(struct dump *d, hsm_status *st)
{
	cbor_item_t *c = NULL;
	unsigned char *buf = NULL;
	size_t len = 0;
	int r = -1;

	if (d->rows == NULL || cbor_array_size(d->rows) == 0) {
		if (d->rows != NULL)
			cbor_decref(&d->rows);
		if (d->cols != NULL)
			cbor_decref(&d->cols);
		d->rows = d->cols = NULL;
		return 0;
	}
	if ((c = cbor_new_definite_array(3)) == NULL ||
	    !cbor_array_push(c, cbor_move(cbor_build_string(d->table))) ||
	    !cbor_array_push(c, d->cols) || !cbor_array_push(c, d->rows)) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (hsm_cbor_encode(c, &buf, &len, st) != 0)
		goto out;
	if (len > d->chunk_size) {
		hsm_fail(st, "internal", "a backup chunk of %zu bytes exceeds "
		    "the chunk size %u", len, d->chunk_size);
		goto out;
	}
	r = hsm_backup_writer_chunk(d->w, buf, len, st);
out:
	if (buf != NULL) {
		OPENSSL_cleanse(buf, len);
		free(buf);
	}
	if (c != NULL)
		cbor_decref(&c);
	/* c held them too: cbor_decref() clears a pointer only when it frees. */
	cbor_decref(&d->rows);
	d->rows = NULL;
	if (d->cols != NULL)
		cbor_decref(&d->cols);
	d->cols = NULL;
	d->approx = 0;
	return r;
}

/* "WHERE col IN (?1, ...)" for a partition scope; "" for the whole node. */
static void
scope_where(const char *col, size_t n, char *out, size_t len)
{
	size_t k;

	out[0] = '\0';
	if (n == 0)
		return;
	k = (size_t)snprintf(out, len, " WHERE %s IN (", col);
	for (size_t i = 0; i < n && k < len; i++)
		k += (size_t)snprintf(out + k, len - k, "%s?%zu", i ? ", " : "",
		    i + 1);
	if (k < len)
		snprintf(out + k, len - k, ")");
}

static int
dump_table(sqlite3 *db, struct dump *d, size_t t,
    const struct hsm_backup_header *h, hsm_status *st)
{
	char sql[2048], where[1024];
	sqlite3_stmt *q = NULL;
	cbor_item_t *row = NULL;
	int rc, nc, r = -1;

	scope_where(dump_tables[t].part_col, h->npartitions, where,
	    sizeof(where));
	snprintf(sql, sizeof(sql), "SELECT * FROM %s%s", dump_tables[t].table,
	    where);
	if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) {
		hsm_fail(st, "io", "backup: %s", sqlite3_errmsg(db));
		return -1;
	}
	for (size_t i = 0; i < h->npartitions; i++)
		sqlite3_bind_text(q, (int)i + 1, h->partitions[i], -1,
		    SQLITE_STATIC);
	nc = sqlite3_column_count(q);
	d->table = dump_tables[t].table;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		size_t approx = 16;
		bool ok;

		for (int c = 0; c < nc; c++)
			approx += (size_t)sqlite3_column_bytes(q, c) + 16;
		if (approx + 1024 > d->chunk_size - CHUNK_MARGIN) {
			hsm_fail(st, "conflict", "a row of %s (%zu bytes) does "
			    "not fit a backup chunk", d->table, approx);
			goto out;
		}
		if (d->rows != NULL && d->approx + approx > d->chunk_size -
		    CHUNK_MARGIN && flush_chunk(d, st) != 0)
			goto out;
		if (d->rows == NULL) {
			ok = (d->rows = cbor_new_indefinite_array()) != NULL &&
			    (d->cols = cbor_new_definite_array((size_t)nc)) !=
			    NULL;
			for (int c = 0; ok && c < nc; c++)
				ok = cbor_array_push(d->cols, cbor_move(
				    cbor_build_string(sqlite3_column_name(q,
				    c))));
			if (!ok)
				goto oom;
			d->approx = 64;
		}
		ok = (row = cbor_new_definite_array((size_t)nc)) != NULL;
		for (int c = 0; ok && c < nc; c++)
			ok = cbor_array_push(row, cbor_move(sql_column_cbor(q, c)));
		if (!list_push(d->rows, &row, ok))
			goto oom;
		d->approx += approx;
		if (strcmp(d->table, "objects") == 0)
			d->objects++;
	}
	if (rc != SQLITE_DONE) {
		hsm_fail(st, "io", "backup: %s", sqlite3_errmsg(db));
		goto out;
	}
	r = flush_chunk(d, st);
	goto out;
oom:
	hsm_fail(st, "no_memory", "out of memory");
out:
	sqlite3_finalize(q);
	if (d->rows != NULL)
		cbor_decref(&d->rows);
	if (d->cols != NULL)
		cbor_decref(&d->cols);
	d->rows = d->cols = NULL;
	return r;
}

static int
check_partitions(sqlite3 *db, const struct hsm_backup_header *h,
    hsm_status *st)
{
	for (size_t i = 0; i < h->npartitions; i++) {
		sqlite3_stmt *q = NULL;
		bool found;

		if (sqlite3_prepare_v2(db, "SELECT 1 FROM partitions WHERE "
		    "name = ?1", -1, &q, NULL) != SQLITE_OK)
			return hsm_fail(st, "io", "store: %s",
			    sqlite3_errmsg(db));
		sqlite3_bind_text(q, 1, h->partitions[i], -1, SQLITE_STATIC);
		found = sqlite3_step(q) == SQLITE_ROW;
		sqlite3_finalize(q);
		if (!found)
			return hsm_fail(st, "not_found", "no partition '%s'",
			    h->partitions[i]);
	}
	return 0;
}

struct made {
	char id[ID_LEN + 1];
	uint64_t size, objects, seq;
};

/*
 * One consistent backup: everything is read in one read transaction, so
 * changes committed meanwhile go on and are either wholly in or not.
 * The file is written aside and renamed into place once synced.
 */
static int
backup_make(const struct node_ctx *n, sqlite3 *db, char **parts, size_t np,
    const char *origin, struct made *out, hsm_status *st)
{
	struct hsm_backup_header h;
	struct dump d;
	unsigned char rnd[16];
	char tmp[4096], final[4096], dir[4096];
	int fd = -1, r = -1;
	bool in_tx = false;

	memset(&h, 0, sizeof(h));
	memset(&d, 0, sizeof(d));
	if (n->cluster_key == NULL)
		return hsm_fail(st, "conflict", "this node has no cluster key "
		    "yet");
	if (RAND_bytes(rnd, sizeof(rnd)) != 1 ||
	    RAND_bytes(h.salt, sizeof(h.salt)) != 1)
		return hsm_fail(st, "internal", "no randomness");
	hsm_hex(rnd, sizeof(rnd), h.id);
	h.format = HSM_BACKUP_FORMAT;
	snprintf(h.node, sizeof(h.node), "%s", n->name);
	h.partitions = parts;
	h.npartitions = np;
	h.created = (int64_t)time(NULL);
	h.chunk_size = (uint32_t)store_meta_int(db, "backup_chunk",
	    HSM_BACKUP_CHUNK_DEFAULT);
	if (h.chunk_size < 65536 || h.chunk_size > HSM_BACKUP_CHUNK_MAX)
		h.chunk_size = HSM_BACKUP_CHUNK_DEFAULT;
	if (ensure_dir(n, st) != 0 ||
	    backup_path(n, h.id, ".tmp", tmp, sizeof(tmp), st) != 0 ||
	    backup_path(n, h.id, ".hbk", final, sizeof(final), st) != 0 ||
	    fs_path(dir, sizeof(dir), n->dir, BACKUP_DIR, st) != 0)
		goto out;
	if (store_exec(db, "BEGIN", st) != 0)
		goto out;
	in_tx = true;
	/* The first read fixes the snapshot: meta and tables alike. */
	store_meta_text(db, "cluster", h.cluster, sizeof(h.cluster));
	store_meta_text(db, "cluster_id", h.cluster_id, sizeof(h.cluster_id));
	h.seq = (uint64_t)store_meta_int(db, "last_seq", 0);
	h.epoch = (uint64_t)store_meta_int(db, "last_epoch", 0);
	if (check_partitions(db, &h, st) != 0)
		goto out;
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0600)) < 0) {
		hsm_fail(st, "io", "cannot create %s: %s", tmp,
		    strerror(errno));
		goto out;
	}
	d.chunk_size = h.chunk_size;
	if (hsm_backup_writer_open(fd, &h, n->backup_key, n->cluster_key,
	    &d.w, st) != 0)
		goto out;
	for (size_t t = 0; t < NDUMP; t++)
		if (dump_table(db, &d, t, &h, st) != 0)
			goto out;
	if (hsm_backup_writer_close(d.w, &out->size, st) != 0)
		goto out;
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	in_tx = false;
	if (fsync(fd) != 0 || close(fd) != 0) {
		fd = -1;
		hsm_fail(st, "io", "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, final) != 0) {
		hsm_fail(st, "io", "cannot rename %s: %s", tmp,
		    strerror(errno));
		goto out;
	}
	if (fs_sync_dir(dir, st) != 0 ||
	    register_backup(db, &h, out->size, d.objects, 1, origin, st) != 0)
		goto out;
	snprintf(out->id, sizeof(out->id), "%s", h.id);
	out->objects = d.objects;
	out->seq = h.seq;
	r = 0;
out:
	if (in_tx)
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	hsm_backup_writer_free(&d.w);
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	/* The scope belongs to the caller. */
	h.partitions = NULL;
	h.npartitions = 0;
	return r;
}

/* Backups are made and kept by the master and the bc node. */
static int
backup_node_ok(struct sess_ctx *s, hsm_status *st)
{
	char role[16];

	repl_role(role, sizeof(role));
	if (strcmp(role, NODE_CLONE) == 0)
		return hsm_fail(st, "node_role", "node %s is a clone: backups "
		    "are made and kept by the master and the bc node",
		    s->node->name);
	return 0;
}

/* args "partitions": a list of partition names, into a new array. */
static int
arg_partitions(const cbor_item_t *args, char ***out, size_t *n,
    hsm_status *st)
{
	const cbor_item_t *v = hsm_map_get(args, "partitions");
	char **p;

	*out = NULL;
	*n = 0;
	if (v == NULL)
		return 0;
	if (!cbor_isa_array(v) || cbor_array_size(v) > HSM_BACKUP_SCOPE_MAX)
		return hsm_fail(st, "bad_request", "argument 'partitions' is "
		    "not a list of at most %d names", HSM_BACKUP_SCOPE_MAX);
	if (cbor_array_size(v) == 0)
		return 0;
	if ((p = calloc(cbor_array_size(v), sizeof(*p))) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	for (size_t i = 0; i < cbor_array_size(v); i++) {
		const cbor_item_t *x = cbor_array_handle(v)[i];

		if (!cbor_isa_string(x) || cbor_string_length(x) >
		    HSM_NAME_MAX || (p[i] = strndup((const char *)
		    cbor_string_handle(x), cbor_string_length(x))) == NULL ||
		    !name_ok(p[i])) {
			for (size_t j = 0; j <= i; j++)
				free(p[j]);
			free(p);
			return hsm_fail(st, "bad_value", "invalid partition "
			    "name in 'partitions'");
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(p[j], p[i]) == 0) {
				hsm_fail(st, "bad_value", "partition '%s' given "
				    "twice", p[j]);
				for (size_t k = 0; k <= i; k++)
					free(p[k]);
				free(p);
				return -1;
			}
	}
	*out = p;
	*n = cbor_array_size(v);
	return 0;
}

static void
free_parts(char **p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(p[i]);
	free(p);
}

int
op_backup_create(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "partitions", NULL };
	char **parts = NULL, what[512];
	size_t np = 0;
	struct made m;
	cbor_item_t *r = NULL;

	memset(&m, 0, sizeof(m));
	if (args_allowed(args, names, st) != 0 || backup_node_ok(s, st) != 0 ||
	    arg_partitions(args, &parts, &np, st) != 0)
		return -1;
	if (backup_make(s->node, s->db, parts, np, "created", &m, st) != 0) {
		free_parts(parts, np);
		audit_record(s, "backup.create", "", st->message);
		return -1;
	}
	snprintf(what, sizeof(what), "id=%s size=%" PRIu64 " objects=%" PRIu64
	    " seq=%" PRIu64 " scope=%s", m.id, m.size, m.objects, m.seq,
	    np == 0 ? "node" : "partitions");
	free_parts(parts, np);
	audit_record(s, "backup.create", what, "ok");
	log_info("%s: backup %s made (%" PRIu64 " bytes)", s->peer, m.id,
	    m.size);
	if ((r = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(r, "id", m.id) != 0 ||
	    hsm_map_put_uint(r, "size", m.size) != 0 ||
	    hsm_map_put_uint(r, "objects", m.objects) != 0 ||
	    hsm_map_put_uint(r, "seq", m.seq) != 0) {
		if (r != NULL)
			cbor_decref(&r);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	*res = r;
	return 0;
}

static cbor_item_t *
backup_row(sqlite3_stmt *q)
{
	cbor_item_t *e = cbor_new_indefinite_map();
	int v = sqlite3_column_int(q, 8);

	if (e == NULL)
		return NULL;
	if (hsm_map_put_str(e, "id", sql_text(q, 0)) != 0 ||
	    hsm_map_put_uint(e, "created",
	    (uint64_t)sqlite3_column_int64(q, 1)) != 0 ||
	    hsm_map_put_str(e, "node", sql_text(q, 2)) != 0 ||
	    hsm_map_put_str(e, "scope", sql_text(q, 3)[0] ? sql_text(q, 3) :
	    "node") != 0 ||
	    hsm_map_put_uint(e, "seq", (uint64_t)sqlite3_column_int64(q, 4)) ||
	    hsm_map_put_uint(e, "epoch",
	    (uint64_t)sqlite3_column_int64(q, 5)) ||
	    hsm_map_put_uint(e, "size", (uint64_t)sqlite3_column_int64(q, 6)) ||
	    hsm_map_put_uint(e, "objects",
	    (uint64_t)sqlite3_column_int64(q, 7)) ||
	    hsm_map_put_str(e, "verified", v > 0 ? "yes" : v < 0 ? "FAILED" :
	    "not yet") != 0 ||
	    hsm_map_put_str(e, "origin", sql_text(q, 10)) != 0)
		cbor_decref(&e);
	return e;
}

#define BACKUP_COLS "id, created, node, scope, seq, epoch, size, objects, " \
	"verified, verified_at, origin"

int
op_backup_list(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	cbor_item_t *list, *e = NULL;
	bool ok;
	int rc = SQLITE_DONE;

	if (args_allowed(args, NULL, st) != 0 || backup_node_ok(s, st) != 0)
		return -1;
	if ((list = cbor_new_indefinite_array()) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	ok = sqlite3_prepare_v2(s->db, "SELECT " BACKUP_COLS " FROM backups "
	    "ORDER BY created, id", -1, &q, NULL) == SQLITE_OK;
	while (ok && (rc = sqlite3_step(q)) == SQLITE_ROW)
		ok = list_push(list, &e, (e = backup_row(q)) != NULL);
	sqlite3_finalize(q);
	return list_result(res, "backups", list, ok && rc == SQLITE_DONE,
	    "backups", st);
}

static int
find_backup(struct sess_ctx *s, const cbor_item_t *args, char *id,
    char *path, size_t plen, hsm_status *st)
{
	if (arg_text(args, "id", id, ID_LEN + 1, true, st) < 0) {
		if (strcmp(st->code, "bad_request") == 0 &&
		    strstr(st->message, "too long") != NULL)
			hsm_fail(st, "not_found", "no backup with that id");
		return -1;
	}
	if (!hsm_backup_id_ok(id))
		return hsm_fail(st, "not_found", "no backup '%s' (an id is 32 "
		    "hex digits)", id);
	if (backup_path(s->node, id, ".hbk", path, plen, st) != 0)
		return -1;
	if (access(path, R_OK) != 0)
		return hsm_fail(st, "not_found", "no backup %s on node %s", id,
		    s->node->name);
	return 0;
}

int
op_backup_show(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "id", NULL };
	char id[ID_LEN + 1], path[4096];
	sqlite3_stmt *q = NULL;
	cbor_item_t *r = NULL;

	if (args_allowed(args, names, st) != 0 || backup_node_ok(s, st) != 0 ||
	    find_backup(s, args, id, path, sizeof(path), st) != 0)
		return -1;
	if (sqlite3_prepare_v2(s->db, "SELECT " BACKUP_COLS " FROM backups "
	    "WHERE id = ?1", -1, &q, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s->db));
	sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW)
		r = backup_row(q);
	else
		hsm_fail(st, "not_found", "backup %s is not listed (restart "
		    "the node to list files put there by hand)", id);
	if (r != NULL && (hsm_map_put_uint(r, "verified_at",
	    (uint64_t)sqlite3_column_int64(q, 9)) != 0 ||
	    hsm_map_put_str(r, "cluster", s->node->cluster) != 0 ||
	    hsm_map_put_str(r, "file", path) != 0))
		cbor_decref(&r);
	sqlite3_finalize(q);
	if (r == NULL)
		return st->code[0] ? -1 : hsm_fail(st, "no_memory",
		    "out of memory");
	*res = r;
	return 0;
}

/* Full verification: structure, every chunk's authentication, signature. */
static int
verify_file(const struct node_ctx *n, const char *path,
    struct hsm_backup_header *h, hsm_status *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), r;

	if (fd < 0)
		return hsm_fail(st, "io", "cannot open %s: %s", path,
		    strerror(errno));
	r = hsm_backup_verify_fd(fd, n->backup_key, n->cluster_key, h, NULL,
	    st);
	close(fd);
	if (r == 0 && !hsm_backup_id_ok(h->id)) {
		hsm_fail(st, "integrity", "backup id '%.40s' is not 32 hex "
		    "digits", h->id);
		hsm_backup_header_clear(h);
		r = -1;
	} else if (r == 0 && strcmp(h->cluster_id, n->cluster_id) != 0) {
		hsm_fail(st, "integrity", "backup %s is of cluster %s (%s), "
		    "not of this one", h->id, h->cluster, h->cluster_id);
		hsm_backup_header_clear(h);
		r = -1;
	}
	return r;
}

int
op_backup_verify(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "id", NULL };
	char id[ID_LEN + 1], path[4096];
	struct hsm_backup_header h;
	sqlite3_stmt *q = NULL;
	cbor_item_t *r = NULL;
	int v;

	if (args_allowed(args, names, st) != 0 || backup_node_ok(s, st) != 0 ||
	    find_backup(s, args, id, path, sizeof(path), st) != 0)
		return -1;
	v = verify_file(s->node, path, &h, st) == 0 ? 1 : -1;
	if (sqlite3_prepare_v2(s->db, "UPDATE backups SET verified = ?2, "
	    "verified_at = ?3 WHERE id = ?1", -1, &q, NULL) == SQLITE_OK) {
		sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_int(q, 2, v);
		sqlite3_bind_int64(q, 3, (int64_t)time(NULL));
		sqlite3_step(q);
	}
	sqlite3_finalize(q);
	audit_record(s, "backup.verify", id, v > 0 ? "ok" : st->message);
	if (v < 0)
		return -1;
	if ((r = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(r, "id", h.id) != 0 ||
	    hsm_map_put_str(r, "verified", "yes") != 0 ||
	    hsm_map_put_uint(r, "seq", h.seq) != 0 ||
	    hsm_map_put_str(r, "node", h.node) != 0) {
		hsm_backup_header_clear(&h);
		if (r != NULL)
			cbor_decref(&r);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	hsm_backup_header_clear(&h);
	*res = r;
	return 0;
}

int
op_backup_read(struct sess_ctx *s, const cbor_item_t *args, cbor_item_t **res,
    hsm_status *st)
{
	static const char *const names[] = { "id", "offset", "length", NULL };
	char id[ID_LEN + 1], path[4096];
	uint64_t off, len;
	unsigned char *buf = NULL;
	struct stat sb;
	ssize_t got = 0;
	cbor_item_t *r = NULL, *data;
	int fd;

	if (args_allowed(args, names, st) != 0 || backup_node_ok(s, st) != 0 ||
	    find_backup(s, args, id, path, sizeof(path), st) != 0 ||
	    arg_uint(args, "offset", &off, true, st) < 0 ||
	    arg_uint(args, "length", &len, true, st) < 0)
		return -1;
	if (len == 0 || len > READ_MAX)
		return hsm_fail(st, "bad_value", "length is 1..%u", READ_MAX);
	/* A copy leaving the node is logged once, where it starts. */
	if (off == 0)
		audit_record(s, "backup.download", id, "started");
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &sb) != 0) {
		if (fd >= 0)
			close(fd);
		return hsm_fail(st, "io", "cannot read backup %s", id);
	}
	if (off > (uint64_t)sb.st_size) {
		close(fd);
		return hsm_fail(st, "bad_value", "offset %" PRIu64 " is past "
		    "the end (%lld bytes)", off, (long long)sb.st_size);
	}
	if ((buf = malloc(len)) == NULL) {
		close(fd);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	while ((uint64_t)got < len) {
		ssize_t n = pread(fd, buf + got, len - (size_t)got,
		    (off_t)(off + (uint64_t)got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	close(fd);
	/* The item takes the buffer as it is: 4 MiB are not copied again. */
	if ((r = cbor_new_indefinite_map()) == NULL ||
	    (data = cbor_new_definite_bytestring()) == NULL) {
		free(buf);
		if (r != NULL)
			cbor_decref(&r);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	cbor_bytestring_set_handle(data, buf, (size_t)got);
	if (hsm_map_put(r, "data", data) != 0 ||
	    hsm_map_put_uint(r, "size", (uint64_t)sb.st_size) != 0 ||
	    hsm_map_put_bool(r, "eof", off + (uint64_t)got >=
	    (uint64_t)sb.st_size) != 0) {
		cbor_decref(&r);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	*res = r;
	return 0;
}

static void
upload_drop(struct sess_ctx *s)
{
	if (s->upload == NULL)
		return;
	if (s->upload->fd >= 0)
		close(s->upload->fd);
	unlink(s->upload->path);
	free(s->upload);
	s->upload = NULL;
}

void
backup_session_end(struct sess_ctx *s)
{
	upload_drop(s);
}

/*
 * backup.upload: {size} begins, {offset, data} appends, {done: true}
 * verifies the whole file and puts it among the backups.  A broken or
 * interrupted upload leaves nothing behind.
 */
int
op_backup_upload(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "size", "offset", "data", "done",
	    NULL };
	const cbor_item_t *done = hsm_map_get(args, "done");
	const unsigned char *data;
	uint64_t size, off;
	size_t len;
	cbor_item_t *r = NULL;
	struct hsm_backup_header h;
	char final[4096], dir[4096];

	if (args_allowed(args, names, st) != 0 || backup_node_ok(s, st) != 0)
		return -1;
	if (arg_uint(args, "size", &size, false, st) == 0) {
		unsigned char rnd[8];
		char name[64];

		upload_drop(s);
		if ((s->upload = calloc(1, sizeof(*s->upload))) == NULL)
			return hsm_fail(st, "no_memory", "out of memory");
		s->upload->fd = -1;
		s->upload->size = size;
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			return hsm_fail(st, "internal", "no randomness");
		hsm_hex(rnd, sizeof(rnd), name);
		strcat(name, ".tmp");
		if (ensure_dir(s->node, st) != 0 ||
		    backup_path(s->node, "upload-", name, s->upload->path,
		    sizeof(s->upload->path), st) != 0) {
			upload_drop(s);
			return -1;
		}
		if ((s->upload->fd = open(s->upload->path, O_WRONLY | O_CREAT |
		    O_EXCL | O_CLOEXEC, 0600)) < 0) {
			hsm_fail(st, "io", "cannot create %s: %s",
			    s->upload->path, strerror(errno));
			upload_drop(s);
			return -1;
		}
	} else if (s->upload == NULL)
		return hsm_fail(st, "bad_request", "no upload begun (send "
		    "'size' first)");
	if (arg_bytes(args, "data", &data, &len, false, st) == 0) {
		if (arg_uint(args, "offset", &off, true, st) < 0)
			return -1;
		if (off != s->upload->written || off + len > s->upload->size) {
			hsm_fail(st, "bad_value", "upload data at %" PRIu64
			    " does not follow %" PRIu64 " within %" PRIu64
			    " bytes; the upload is dropped", off,
			    s->upload->written, s->upload->size);
			upload_drop(s);
			return -1;
		}
		if (hsm_write_all(s->upload->fd, data, len) != 0) {
			hsm_fail(st, "io", "cannot write the upload: %s",
			    strerror(errno));
			upload_drop(s);
			return -1;
		}
		s->upload->written += len;
	}
	if (done != NULL) {
		int fd;

		if (!hsm_cbor_is_bool(done) || !cbor_get_bool(done))
			return hsm_fail(st, "bad_request", "'done' is true");
		if (s->upload->written != s->upload->size) {
			hsm_fail(st, "integrity", "upload ended after %" PRIu64
			    " of %" PRIu64 " bytes", s->upload->written,
			    s->upload->size);
			upload_drop(s);
			return -1;
		}
		if (fsync(s->upload->fd) != 0) {
			upload_drop(s);
			return hsm_fail(st, "io", "cannot sync the upload");
		}
		close(s->upload->fd);
		s->upload->fd = -1;
		if (verify_file(s->node, s->upload->path, &h, st) != 0) {
			upload_drop(s);
			return -1;
		}
		if (backup_path(s->node, h.id, ".hbk", final, sizeof(final),
		    st) != 0 || fs_path(dir, sizeof(dir), s->node->dir,
		    BACKUP_DIR, st) != 0) {
			hsm_backup_header_clear(&h);
			upload_drop(s);
			return -1;
		}
		if ((fd = open(final, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		    0600)) < 0) {
			hsm_fail(st, "conflict", "backup %s is here already",
			    h.id);
			hsm_backup_header_clear(&h);
			upload_drop(s);
			return -1;
		}
		close(fd);
		if (rename(s->upload->path, final) != 0 ||
		    fs_sync_dir(dir, st) != 0) {
			unlink(final);
			hsm_fail(st, "io", "cannot store the upload");
			hsm_backup_header_clear(&h);
			upload_drop(s);
			return -1;
		}
		register_backup(s->db, &h, s->upload->size, 0, 1, "uploaded",
		    st);
		free(s->upload);
		s->upload = NULL;
		audit_record(s, "backup.upload", h.id, "ok");
		if ((r = cbor_new_indefinite_map()) == NULL ||
		    hsm_map_put_str(r, "id", h.id) != 0 ||
		    hsm_map_put_uint(r, "seq", h.seq) != 0 ||
		    hsm_map_put_str(r, "node", h.node) != 0 ||
		    hsm_map_put_str(r, "verified", "yes") != 0) {
			hsm_backup_header_clear(&h);
			if (r != NULL)
				cbor_decref(&r);
			return hsm_fail(st, "no_memory", "out of memory");
		}
		hsm_backup_header_clear(&h);
		*res = r;
		return 0;
	}
	if ((r = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_uint(r, "written", s->upload->written) != 0) {
		if (r != NULL)
			cbor_decref(&r);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	*res = r;
	return 0;
}

/* ---- restore ----------------------------------------------------------- */

static bool
in_scope(const char *p, char **parts, size_t np)
{
	if (np == 0)
		return true;
	for (size_t i = 0; i < np; i++)
		if (strcmp(parts[i], p) == 0)
			return true;
	return false;
}

/* Delete what the restore replaces (cascades do partition_params, objects). */
static int
clear_scope(sqlite3 *db, char **parts, size_t np, hsm_status *st)
{
	char sql[2048], where[1024];

	for (size_t t = NDUMP; t-- > 0;) {
		sqlite3_stmt *q = NULL;

		scope_where(dump_tables[t].part_col, np, where, sizeof(where));
		snprintf(sql, sizeof(sql), "DELETE FROM %s%s",
		    dump_tables[t].table, where);
		if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
			return hsm_fail(st, "io", "restore: %s",
			    sqlite3_errmsg(db));
		for (size_t i = 0; i < np; i++)
			sqlite3_bind_text(q, (int)i + 1, parts[i], -1,
			    SQLITE_STATIC);
		if (sqlite3_step(q) != SQLITE_DONE) {
			sqlite3_finalize(q);
			return hsm_fail(st, "io", "restore: %s",
			    sqlite3_errmsg(db));
		}
		sqlite3_finalize(q);
	}
	return 0;
}

static bool
text_is(const cbor_item_t *v, const char *s)
{
	return cbor_isa_string(v) && cbor_string_length(v) == strlen(s) &&
	    memcmp(cbor_string_handle(v), s, strlen(s)) == 0;
}

/* One chunk's rows into the store, those of the restored scope only. */
static int
restore_chunk(sqlite3 *db, const unsigned char *p, size_t n, char **parts,
    size_t np, uint64_t *objects, hsm_status *st)
{
	cbor_item_t *c = NULL;
	const cbor_item_t *cols, *rows;
	char sql[2048];
	sqlite3_stmt *q = NULL;
	size_t t, k, ncol, pcol = SIZE_MAX, skip = SIZE_MAX;
	int r = -1;

	if (hsm_cbor_decode(p, n, &c, st) != 0)
		return hsm_fail(st, "integrity", "a backup chunk does not "
		    "decode");
	if (!cbor_isa_array(c) || cbor_array_size(c) != 3 ||
	    !cbor_isa_array(cols = cbor_array_handle(c)[1]) ||
	    !cbor_isa_array(rows = cbor_array_handle(c)[2]) ||
	    (ncol = cbor_array_size(cols)) == 0 || ncol > 64)
		goto bad;
	for (t = 0; t < NDUMP; t++)
		if (text_is(cbor_array_handle(c)[0], dump_tables[t].table))
			break;
	if (t == NDUMP)
		goto bad;
	k = (size_t)snprintf(sql, sizeof(sql), "INSERT INTO %s (",
	    dump_tables[t].table);
	for (size_t i = 0, out = 0; i < ncol; i++) {
		const cbor_item_t *cn = cbor_array_handle(cols)[i];
		size_t l;

		if (!cbor_isa_string(cn) || (l = cbor_string_length(cn)) == 0 ||
		    l > 32)
			goto bad;
		for (size_t j = 0; j < l; j++) {
			unsigned char ch = cbor_string_handle(cn)[j];

			if (!((ch >= 'a' && ch <= 'z') || ch == '_'))
				goto bad;
		}
		if (text_is(cn, dump_tables[t].part_col))
			pcol = i;
		/* Officers of a partition get new ids: others may hold the old. */
		if (np > 0 && t == 0 && text_is(cn, "id")) {
			skip = i;
			continue;
		}
		k += (size_t)snprintf(sql + k, sizeof(sql) - k, "%s%.*s",
		    out++ ? ", " : "", (int)l, cbor_string_handle(cn));
	}
	if (pcol == SIZE_MAX)
		goto bad;
	k += (size_t)snprintf(sql + k, sizeof(sql) - k, ") VALUES (");
	for (size_t i = 0, out = 0; i < ncol; i++) {
		if (i == skip)
			continue;
		k += (size_t)snprintf(sql + k, sizeof(sql) - k, "%s?",
		    out++ ? ", " : "");
	}
	snprintf(sql + k, sizeof(sql) - k, ")");
	if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) {
		hsm_fail(st, "conflict", "the backup's %s does not fit this "
		    "node's store: %s", dump_tables[t].table,
		    sqlite3_errmsg(db));
		goto out;
	}
	for (size_t i = 0; i < cbor_array_size(rows); i++) {
		const cbor_item_t *row = cbor_array_handle(rows)[i];
		const cbor_item_t *pv;
		char part[HSM_NAME_MAX + 1];
		int b = 1;

		if (!cbor_isa_array(row) || cbor_array_size(row) != ncol)
			goto bad;
		pv = cbor_array_handle(row)[pcol];
		if (!cbor_isa_string(pv) || cbor_string_length(pv) >= sizeof(part))
			goto bad;
		memcpy(part, cbor_string_handle(pv), cbor_string_length(pv));
		part[cbor_string_length(pv)] = '\0';
		/* Device-wide rows (SO, genesis) belong to a whole restore. */
		if (np > 0 && (part[0] == '\0' || !in_scope(part, parts, np)))
			continue;
		sqlite3_reset(q);
		sqlite3_clear_bindings(q);
		for (size_t j = 0; j < ncol; j++) {
			if (j == skip)
				continue;
			if (sql_bind_cbor(q, b++, cbor_array_handle(row)[j]) !=
			    SQLITE_OK)
				goto bad;
		}
		if (sqlite3_step(q) != SQLITE_DONE) {
			hsm_fail(st, "conflict", "restoring %s: %s",
			    dump_tables[t].table, sqlite3_errmsg(db));
			goto out;
		}
		if (t == NDUMP - 1)
			(*objects)++;
	}
	r = 0;
	goto out;
bad:
	hsm_fail(st, "integrity", "a backup chunk is not in the expected "
	    "form");
out:
	sqlite3_finalize(q);
	if (c != NULL)
		cbor_decref(&c);
	return r;
}

/* Does the (verified) backup hold these partitions?  not_found if not. */
static int
holds_partitions(const struct node_ctx *n, const char *path, char **parts,
    size_t np, hsm_status *st)
{
	struct hsm_backup_header h;
	hsm_backup_reader *rd = NULL;
	bool *seen = calloc(np, sizeof(*seen)), done = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = -1;

	if (seen == NULL || fd < 0) {
		hsm_fail(st, "io", "cannot read the backup");
		goto out;
	}
	if (hsm_backup_reader_open(fd, n->backup_key, &rd, &h, st) != 0)
		goto out;
	hsm_backup_header_clear(&h);
	while (!done) {
		const unsigned char *p;
		size_t len;
		cbor_item_t *c = NULL;
		const cbor_item_t *rows;

		if (hsm_backup_reader_next(rd, &p, &len, &done, st) != 0)
			goto out;
		if (len == 0 || hsm_cbor_decode(p, len, &c, st) != 0)
			continue;
		if (cbor_isa_array(c) && cbor_array_size(c) == 3 &&
		    text_is(cbor_array_handle(c)[0], "partitions") &&
		    cbor_isa_array(rows = cbor_array_handle(c)[2]))
			for (size_t i = 0; i < cbor_array_size(rows); i++) {
				const cbor_item_t *row =
				    cbor_array_handle(rows)[i];

				/* The first column of partitions is its name. */
				if (!cbor_isa_array(row) ||
				    cbor_array_size(row) == 0)
					continue;
				for (size_t j = 0; j < np; j++)
					seen[j] = seen[j] || text_is(
					    cbor_array_handle(row)[0], parts[j]);
			}
		cbor_decref(&c);
	}
	for (size_t j = 0; j < np; j++)
		if (!seen[j]) {
			hsm_fail(st, "not_found", "the backup does not hold "
			    "partition '%s'", parts[j]);
			goto out;
		}
	r = 0;
out:
	hsm_backup_reader_free(&rd);
	if (fd >= 0)
		close(fd);
	free(seen);
	return r;
}

int
op_backup_restore(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "id", "partitions", "older",
	    NULL };
	char id[ID_LEN + 1], path[4096], what[1024];
	const cbor_item_t *older = hsm_map_get(args, "older");
	struct hsm_backup_header h;
	hsm_backup_reader *rd = NULL;
	char **parts = NULL;
	size_t np = 0;
	uint64_t objects = 0, now_seq;
	int fd = -1, r = -1;
	int64_t mark;
	bool done = false, in_tx = false;
	cbor_item_t *out = NULL;

	memset(&h, 0, sizeof(h));
	if (args_allowed(args, names, st) != 0 ||
	    find_backup(s, args, id, path, sizeof(path), st) != 0 ||
	    arg_partitions(args, &parts, &np, st) != 0)
		return -1;
	if (older != NULL && !hsm_cbor_is_bool(older)) {
		hsm_fail(st, "bad_request", "argument 'older' is not a boolean");
		goto out;
	}
	/* All of it first: nothing changes unless every byte is right. */
	if (verify_file(s->node, path, &h, st) != 0 ||
	    (np > 0 && holds_partitions(s->node, path, parts, np, st) != 0)) {
		audit_record(s, "backup.restore", id, st->message);
		goto out;
	}
	if (np == 0 && h.npartitions > 0) {
		/* A partition backup restores its partitions. */
		parts = h.partitions;
		np = h.npartitions;
		h.partitions = NULL;
		h.npartitions = 0;
	}
	now_seq = (uint64_t)store_meta_int(s->db, "last_seq", 0);
	if (h.seq < now_seq && (older == NULL || !cbor_get_bool(older))) {
		hsm_fail(st, "conflict", "backup %s holds the state at change %"
		    PRIu64 "; the node is at %" PRIu64 ": confirm to go back "
		    "(-y)", id, h.seq, now_seq);
		goto out;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		hsm_fail(st, "io", "cannot open backup %s", id);
		goto out;
	}
	hsm_backup_header_clear(&h);
	if (hsm_backup_reader_open(fd, s->node->backup_key, &rd, &h, st) != 0)
		goto out;
	/* No changeset: the replicas take a snapshot after it. */
	if (store_exec(s->db, "BEGIN IMMEDIATE", st) != 0)
		goto out;
	in_tx = true;
	mark = store_meta_int(s->db, "audit_count", 0);
	if (clear_scope(s->db, parts, np, st) != 0)
		goto out;
	while (!done) {
		const unsigned char *p;
		size_t n;

		if (hsm_backup_reader_next(rd, &p, &n, &done, st) != 0)
			goto out;
		if (n > 0 && restore_chunk(s->db, p, n, parts, np, &objects,
		    st) != 0)
			goto out;
	}
	if (hsm_backup_reader_finish(rd, s->node->cluster_key, st) != 0)
		goto out;
	/* Session keys live with their session; none comes back. */
	if (store_exec(s->db, "DELETE FROM objects WHERE session IS NOT NULL",
	    st) != 0)
		goto out;
	{
		size_t k = (size_t)snprintf(what, sizeof(what), "id=%s seq=%"
		    PRIu64 " objects=%" PRIu64 " scope=", id, h.seq, objects);

		for (size_t i = 0; i < np && k < sizeof(what); i++)
			k += (size_t)snprintf(what + k, sizeof(what) - k, "%s%s",
			    i ? "," : "", parts[i]);
		if (np == 0 && k < sizeof(what))
			snprintf(what + k, sizeof(what) - k, "node");
	}
	if (audit_append(s, "", "backup.restore", what, "ok", st) != 0 ||
	    repl_log_resync(s, mark, st) != 0 ||
	    store_exec(s->db, "COMMIT", st) != 0)
		goto out;
	in_tx = false;
	repl_notify();
	log_warn("%s: backup %s restored (%s)", s->peer, id, what);
	if ((out = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(out, "id", id) != 0 ||
	    hsm_map_put_uint(out, "seq", h.seq) != 0 ||
	    hsm_map_put_uint(out, "objects", objects) != 0) {
		if (out != NULL)
			cbor_decref(&out);
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	*res = out;
	r = 0;
out:
	if (in_tx) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		audit_record(s, "backup.restore", id, st->message);
	}
	hsm_backup_reader_free(&rd);
	if (fd >= 0)
		close(fd);
	hsm_backup_header_clear(&h);
	free_parts(parts, np);
	return r;
}

/* ---- retention and schedule -------------------------------------------- */

static int
prune(const struct node_ctx *n, sqlite3 *db, uint64_t days, cbor_item_t *list,
    hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	char ids[256][ID_LEN + 1], path[4096];
	size_t nids = 0;
	int64_t cut = (int64_t)time(NULL) - (int64_t)days * 86400;

	if (sqlite3_prepare_v2(db, "SELECT id FROM backups WHERE created < ?1 "
	    "ORDER BY created", -1, &q, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_bind_int64(q, 1, cut);
	while (sqlite3_step(q) == SQLITE_ROW && nids < 256)
		if (hsm_backup_id_ok(sql_text(q, 0)))
			snprintf(ids[nids++], sizeof(ids[0]), "%s",
			    sql_text(q, 0));
	sqlite3_finalize(q);
	for (size_t i = 0; i < nids; i++) {
		if (backup_path(n, ids[i], ".hbk", path, sizeof(path), st) != 0)
			return -1;
		if (unlink(path) != 0 && errno != ENOENT)
			return hsm_fail(st, "io", "cannot remove %s: %s", path,
			    strerror(errno));
		if (exec_id(db, "DELETE FROM backups WHERE id = ?1", ids[i],
		    st) != 0)
			return -1;
		if (list != NULL && !cbor_array_push(list, cbor_move(
		    cbor_build_string(ids[i]))))
			return hsm_fail(st, "no_memory", "out of memory");
		log_info("pruned backup %s (older than %" PRIu64 " days)",
		    ids[i], days);
	}
	return 0;
}

int
op_backup_prune(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "keep_days", NULL };
	uint64_t days = BACKUP_KEEP_DAYS;
	cbor_item_t *list = NULL, *r = NULL;
	char what[64];

	if (args_allowed(args, names, st) != 0 || backup_node_ok(s, st) != 0 ||
	    arg_uint(args, "keep_days", &days, false, st) < 0)
		return -1;
	if (days > 36500)
		return hsm_fail(st, "bad_value", "keep_days is 0..36500");
	if ((list = cbor_new_indefinite_array()) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (prune(s->node, s->db, days, list, st) != 0) {
		cbor_decref(&list);
		return -1;
	}
	snprintf(what, sizeof(what), "keep_days=%" PRIu64 " pruned=%zu", days,
	    cbor_array_size(list));
	audit_record(s, "backup.prune", what, "ok");
	if ((r = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put(r, "pruned", list) != 0) {
		if (r != NULL)
			cbor_decref(&r);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	*res = r;
	return 0;
}

/* "HH:MM" (UTC) into minutes of the day, or -1. */
static int
hhmm(const char *s)
{
	if (strlen(s) != 5 || s[2] != ':' || s[0] < '0' || s[0] > '2' ||
	    s[1] < '0' || s[1] > '9' || s[3] < '0' || s[3] > '5' ||
	    s[4] < '0' || s[4] > '9')
		return -1;
	int h = (s[0] - '0') * 10 + (s[1] - '0');
	int m = (s[3] - '0') * 10 + (s[4] - '0');

	return h < 24 ? h * 60 + m : -1;
}

/* The next scheduled run after "now" (0: none). */
static time_t
next_run(sqlite3 *db, time_t now)
{
	char sched[16], last[16];
	struct tm tm;
	time_t day;
	int min;

	store_meta_text(db, "backup_daily", sched, sizeof(sched));
	if ((min = hhmm(sched)) < 0)
		return 0;
	store_meta_text(db, "backup_last_day", last, sizeof(last));
	gmtime_r(&now, &tm);
	day = now - (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec);
	/* Today's run, unless it was taken: then tomorrow's. */
	if ((int64_t)strtoll(last, NULL, 10) >= (int64_t)day)
		return day + 86400 + min * 60;
	return day + min * 60;
}

int
op_backup_schedule(struct sess_ctx *s, const cbor_item_t *args,
    cbor_item_t **res, hsm_status *st)
{
	static const char *const names[] = { "daily", "off", NULL };
	char daily[16] = "";
	const cbor_item_t *off = hsm_map_get(args, "off");
	cbor_item_t *r = NULL;
	time_t next;

	if (args_allowed(args, names, st) != 0 || backup_node_ok(s, st) != 0 ||
	    arg_text(args, "daily", daily, sizeof(daily), false, st) < 0)
		return -1;
	if ((off != NULL) == (daily[0] != '\0'))
		return hsm_fail(st, "bad_request", "give 'daily' or 'off'");
	if (off != NULL && (!hsm_cbor_is_bool(off) || !cbor_get_bool(off)))
		return hsm_fail(st, "bad_request", "'off' is true");
	if (daily[0] != '\0' && hhmm(daily) < 0)
		return hsm_fail(st, "bad_value", "--daily takes HH:MM (UTC), not "
		    "'%s'", daily);
	{
		const char *kv[] = { "backup_daily", daily, "backup_last_day",
		    "0", NULL };

		if (repl_meta_update(s->db, kv, st) != 0)
			return -1;
	}
	audit_record(s, "backup.schedule", daily[0] ? daily : "off", "ok");
	next = next_run(s->db, time(NULL));
	if ((r = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(r, "schedule", daily[0] ? daily : "off") != 0 ||
	    hsm_map_put_uint(r, "next_backup", (uint64_t)next) != 0) {
		if (r != NULL)
			cbor_decref(&r);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	*res = r;
	return 0;
}

int
backup_info(struct sess_ctx *s, cbor_item_t *r, hsm_status *st)
{
	char sched[16];
	sqlite3_stmt *q = NULL;
	int64_t last = 0;
	char role[16];

	repl_role(role, sizeof(role));
	if (strcmp(role, NODE_MASTER) != 0 && strcmp(role, NODE_BC) != 0)
		return 0;
	store_meta_text(s->db, "backup_daily", sched, sizeof(sched));
	if (sqlite3_prepare_v2(s->db, "SELECT max(created) FROM backups", -1,
	    &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
		last = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	if (hsm_map_put_str(r, "backup_schedule", sched[0] ? sched : "off") ||
	    hsm_map_put_uint(r, "last_backup", (uint64_t)last) != 0 ||
	    hsm_map_put_uint(r, "next_backup",
	    (uint64_t)next_run(s->db, time(NULL))) != 0)
		return hsm_fail(st, "no_memory", "out of memory");
	return 0;
}

static atomic_bool sched_stop;
static pthread_t sched_tid;
static bool sched_running;

static void *
scheduler(void *arg)
{
	const struct node_ctx *n = arg;
	sqlite3 *db = NULL;
	hsm_status st;

	hsm_status_clear(&st);
	if (store_open(n->dir, false, &db, &st) != 0) {
		log_warn("backup schedule stopped: %s", st.message);
		return NULL;
	}
	while (!atomic_load(&sched_stop)) {
		time_t now = time(NULL), next = next_run(db, now);
		char role[16], num[32];

		repl_role(role, sizeof(role));
		if (next != 0 && now >= next && (strcmp(role,
		    NODE_MASTER) == 0 || strcmp(role, NODE_BC) == 0) &&
		    n->cluster_key != NULL) {
			struct made m;
			struct tm tm;
			const char *kv[] = { "backup_last_day", num, NULL };

			gmtime_r(&now, &tm);
			snprintf(num, sizeof(num), "%lld", (long long)(now -
			    (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec)));
			hsm_status_clear(&st);
			memset(&m, 0, sizeof(m));
			repl_meta_update(db, kv, &st);
			if (backup_make(n, db, NULL, 0, "scheduled", &m,
			    &st) != 0)
				log_warn("scheduled backup failed: %s",
				    st.message);
			else
				log_info("scheduled backup %s made (%" PRIu64
				    " bytes)", m.id, m.size);
			hsm_status_clear(&st);
			if (prune(n, db, (uint64_t)store_meta_int(db,
			    "backup_keep_days", BACKUP_KEEP_DAYS), NULL,
			    &st) != 0)
				log_warn("pruning backups failed: %s",
				    st.message);
		}
		for (int i = 0; i < 10 && !atomic_load(&sched_stop); i++) {
			struct timespec ts = { 0, 100 * 1000000L };

			nanosleep(&ts, NULL);
		}
	}
	store_close(&db);
	return NULL;
}

int
backup_scheduler_start(const struct node_ctx *n, hsm_status *st)
{
	atomic_store(&sched_stop, false);
	if (pthread_create(&sched_tid, NULL, scheduler,
	    (void *)(uintptr_t)n) != 0)
		return hsm_fail(st, "internal", "cannot start the backup "
		    "schedule");
	sched_running = true;
	return 0;
}

void
backup_scheduler_stop(void)
{
	if (!sched_running)
		return;
	atomic_store(&sched_stop, true);
	pthread_join(sched_tid, NULL);
	sched_running = false;
}
