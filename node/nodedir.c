#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libssh/libssh.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <openssl/evp.h>

#include "backup.h"
#include "fsutil.h"
#include "keys.h"
#include "nodedir.h"
#include "officers.h"
#include "ops.h"
#include "peer.h"
#include "repl.h"
#include "server.h"
#include "store.h"

/* An existing directory may be taken over only when it is empty. */
static int
check_target(const char *dir, hsm_status *st)
{
	struct stat sb;
	DIR *d;
	struct dirent *e;
	bool empty = true;

	if (lstat(dir, &sb) != 0) {
		if (errno == ENOENT)
			return 0;
		return hsm_fail(st, "io", "cannot stat %s: %s", dir,
		    strerror(errno));
	}
	if (!S_ISDIR(sb.st_mode))
		return hsm_fail(st, "conflict", "%s exists and is not a "
		    "directory; refusing to overwrite it", dir);
	if ((d = opendir(dir)) == NULL)
		return hsm_fail(st, "io", "cannot read %s: %s", dir,
		    strerror(errno));
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			empty = false;
	closedir(d);
	if (!empty)
		return hsm_fail(st, "conflict", "%s is not empty (an existing "
		    "node?); refusing to overwrite it", dir);
	return 0;
}

struct hostkey {
	char fp[64];
	char pub[160];		/* "ssh-ed25519 BASE64" */
};

static int
make_host_key(const char *tmp, const char *node, const char *cluster,
    struct hostkey *hk, hsm_status *st)
{
	ssh_key key = NULL;
	char path[PATH_MAX], *b64 = NULL, *line = NULL;
	size_t n;
	int r = -1;

	if (fs_path(path, sizeof(path), tmp, HOSTKEY_FILE, st) != 0)
		return -1;
	if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &key) != SSH_OK)
		return hsm_fail(st, "internal", "cannot generate host key");
	if (ssh_pki_export_privkey_file(key, NULL, NULL, NULL, path) !=
	    SSH_OK || chmod(path, 0600) != 0) {
		hsm_fail(st, "io", "cannot write host key %s", path);
		goto out;
	}
	if (ssh_pki_export_pubkey_base64(key, &b64) != SSH_OK) {
		hsm_fail(st, "internal", "cannot export host key");
		goto out;
	}
	n = strlen(b64) + strlen(node) + strlen(cluster) + 32;
	if ((line = malloc(n)) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	snprintf(line, n, "ssh-ed25519 %s hsmd-%s@%s\n", b64, node, cluster);
	snprintf(hk->pub, sizeof(hk->pub), "ssh-ed25519 %s", b64);
	if (key_fingerprint(key, hk->fp, sizeof(hk->fp), st) != 0)
		goto out;
	if (fs_path(path, sizeof(path), tmp, HOSTKEY_FILE ".pub", st) != 0)
		goto out;
	r = fs_write_new(path, line, strlen(line), 0644, st);
out:
	free(line);
	ssh_string_free_char(b64);
	ssh_key_free(key);
	return r;
}

/* The cluster's secrets: they leave it only to a node it admits. */
static int
make_secret(const char *tmp, const char *file, hsm_status *st)
{
	unsigned char key[MASTER_KEY_LEN];
	char path[PATH_MAX];
	int r;

	if (fs_path(path, sizeof(path), tmp, file, st) != 0)
		return -1;
	if (RAND_priv_bytes(key, sizeof(key)) != 1)
		return hsm_fail(st, "internal", "no randomness for the master "
		    "key");
	r = fs_write_new(path, key, sizeof(key), 0600, st);
	OPENSSL_cleanse(key, sizeof(key));
	return r;
}

static int
make_authorized_keys(const char *tmp, const struct init_opts *o,
    hsm_status *st)
{
	char path[PATH_MAX], *all = NULL, *line = NULL, fp[64];
	size_t len = 0;
	int r = -1;

	for (size_t i = 0; i < o->nauthorize; i++) {
		char *p;

		if (authkeys_line(o->authorize[i], &line, fp, sizeof(fp),
		    st) != 0)
			goto out;
		if ((p = realloc(all, len + strlen(line) + 1)) == NULL) {
			hsm_fail(st, "no_memory", "out of memory");
			goto out;
		}
		all = p;
		memcpy(all + len, line, strlen(line) + 1);
		len += strlen(line);
		free(line);
		line = NULL;
	}
	if (fs_path(path, sizeof(path), tmp, AUTHKEYS_FILE, st) != 0)
		goto out;
	r = fs_write_new(path, all != NULL ? all : "", len, 0600, st);
out:
	free(line);
	free(all);
	return r;
}

static int
add_self(sqlite3 *db, const char *name, const struct hostkey *hk,
    hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	int r = 0;

	if (sqlite3_prepare_v2(db, "INSERT INTO nodes (name, role, addr, "
	    "host_key, pubkey, added) VALUES (?1, 'master', '', ?2, ?3, ?4)",
	    -1, &q, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(q, 2, hk->fp, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(q, 3, hk->pub, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 4, (int64_t)time(NULL)) != SQLITE_OK ||
	    sqlite3_step(q) != SQLITE_DONE)
		r = hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_finalize(q);
	return r;
}

static int
make_store(const char *tmp, const struct init_opts *o,
    const struct hostkey *hk, hsm_status *st)
{
	struct node_meta m;
	unsigned char id[16];
	sqlite3 *db = NULL;
	int r;

	memset(&m, 0, sizeof(m));
	snprintf(m.node, sizeof(m.node), "%s", o->name);
	snprintf(m.cluster, sizeof(m.cluster), "%s", o->join != NULL ?
	    "-" : o->cluster);
	snprintf(m.role, sizeof(m.role), "%s", o->join != NULL ?
	    NODE_JOINING : NODE_MASTER);
	if (RAND_bytes(id, sizeof(id)) != 1)
		return hsm_fail(st, "internal", "no randomness for the "
		    "cluster id");
	hsm_hex(id, sizeof(id), m.cluster_id);
	m.epoch = o->join != NULL ? 0 : 1;
	m.last_seq = 0;
	m.sandbox = o->sandbox;
	m.created = (int64_t)time(NULL);
	if (store_open(tmp, true, &db, st) != 0)
		return -1;
	r = store_init_meta(db, &m, st);
	if (r == 0 && o->join != NULL) {
		const char *kv[] = { "join_addr", o->join, "join_fp",
		    o->join_fp, "join_role", o->join_role, NULL };

		r = repl_meta_update(db, kv, st);
	} else if (r == 0) {
		/* The state at init is epoch 1's: a new node takes it whole. */
		const char *kv[] = { "last_epoch", "1", NULL };

		r = repl_meta_update(db, kv, st);
		if (r == 0)
			r = officers_init(db, o->genesis_names,
			    o->genesis_keys, o->ngenesis, o->genesis_quorum,
			    st);
		if (r == 0)
			r = add_self(db, o->name, hk, st);
	}
	store_close(&db);
	return r;
}

static void
remove_tree(const char *tmp)
{
	DIR *d = opendir(tmp);
	struct dirent *e;
	char path[PATH_MAX];

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (fs_path(path, sizeof(path), tmp, e->d_name, NULL) == 0)
			unlink(path);
	}
	closedir(d);
	rmdir(tmp);
}

/* The cluster's signing key (backups), Ed25519. */
static int
make_cluster_key(const char *tmp, hsm_status *st)
{
	EVP_PKEY *k = NULL;

	if (load_ed25519_key(tmp, CLUSTER_KEY_FILE, true, &k, st) != 0)
		return -1;
	EVP_PKEY_free(k);
	return 0;
}

/* Ask the master to let the node being made join; nothing is kept if not. */
static int
request_join(const char *tmp, struct init_opts *o, hsm_status *st)
{
	struct node_ctx n;
	struct hsm_conn *c = NULL;
	cbor_item_t *a = NULL, *r = NULL;
	int rc = -1;

	memset(&n, 0, sizeof(n));
	n.dir = tmp;
	snprintf(n.name, sizeof(n.name), "%s", o->name);
	if (hsm_init(st) != 0)
		return -1;
	if (peer_connect_joining(&n, o->join, o->join_fp, 5000, &c, st) != 0)
		goto out;
	if ((a = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(a, "name", o->name) != 0 ||
	    hsm_map_put_str(a, "role", o->join_role) != 0 ||
	    hsm_map_put_str(a, "addr", "") != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (hsm_call(c, "cluster.join", a, &r, st) != 0)
		goto out;
	snprintf(o->result, sizeof(o->result), "join request sent to %s",
	    o->join);
	rc = 0;
out:
	if (a != NULL)
		cbor_decref(&a);
	if (r != NULL)
		cbor_decref(&r);
	hsm_conn_close(&c);
	hsm_cleanup();
	return rc;
}

int
nodedir_init(struct init_opts *o, hsm_status *st)
{
	char tmp[PATH_MAX], parent[PATH_MAX], base[PATH_MAX];
	struct hostkey hk;
	int r = -1;

	if (o->join != NULL && (o->join_role == NULL ||
	    (strcmp(o->join_role, NODE_CLONE) != 0 &&
	    strcmp(o->join_role, NODE_BC) != 0)))
		return hsm_fail(st, "bad_value", "--role is clone or bc");
	if (o->join != NULL)
		o->cluster = "-";
	if (o->join == NULL && !name_ok(o->cluster))
		return hsm_fail(st, "bad_value", "invalid cluster name '%s'",
		    o->cluster);
	if (!name_ok(o->name))
		return hsm_fail(st, "bad_value", "invalid node name '%s'",
		    o->name);
	if (o->ngenesis > 0 && (o->genesis_quorum < 1 ||
	    (size_t)o->genesis_quorum > o->ngenesis))
		return hsm_fail(st, "bad_value", "--genesis-quorum must be "
		    "1..%zu (the number of genesis officers)", o->ngenesis);
	if (check_target(o->dir, st) != 0)
		return -1;
	snprintf(parent, sizeof(parent), "%s", o->dir);
	if (snprintf(base, sizeof(base), ".%s.init-XXXXXX",
	    basename(parent)) >= (int)sizeof(base))
		return hsm_fail(st, "bad_value", "path too long: %s", o->dir);
	snprintf(parent, sizeof(parent), "%s", o->dir);
	if (fs_path(tmp, sizeof(tmp), dirname(parent), base, st) != 0)
		return -1;
	if (mkdtemp(tmp) == NULL)
		return hsm_fail(st, "io", "cannot create a directory next to "
		    "%s: %s", o->dir, strerror(errno));
	memset(&hk, 0, sizeof(hk));
	if (make_host_key(tmp, o->name, o->cluster, &hk, st) != 0 ||
	    (o->join == NULL && (make_secret(tmp, MASTER_KEY_FILE, st) != 0 ||
	    make_secret(tmp, BACKUP_KEY_FILE, st) != 0 ||
	    make_cluster_key(tmp, st) != 0)) ||
	    make_authorized_keys(tmp, o, st) != 0 ||
	    make_store(tmp, o, &hk, st) != 0 ||
	    fs_sync_dir(tmp, st) != 0)
		goto out;
	if (o->join != NULL && request_join(tmp, o, st) != 0)
		goto out;
	/* rename(2) replaces only an empty directory: no node is overwritten. */
	if (rename(tmp, o->dir) != 0) {
		hsm_fail(st, errno == ENOTEMPTY || errno == EEXIST ?
		    "conflict" : "io", "cannot create %s: %s", o->dir,
		    strerror(errno));
		goto out;
	}
	snprintf(parent, sizeof(parent), "%s", o->dir);
	r = fs_sync_dir(dirname(parent), st);
	return r;
out:
	remove_tree(tmp);
	return r;
}
