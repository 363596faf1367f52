/* The node as a client of its peers (see peer.h). */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include <openssl/crypto.h>

#include "backup.h"
#include "fsutil.h"
#include "keys.h"
#include "log.h"
#include "nodedir.h"
#include "peer.h"
#include "repl.h"
#include "store.h"

#define CONNECT_MS 2000
#define PULL_WAIT_MS 1000
#define MASTER_CHECK_MS 2000
#define JOIN_POLL_MS 1000

static atomic_bool stop_flag;
/* The replication connection, so that a stop can cut its wait short. */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static struct hsm_conn *live_conn;

static void
live_set(struct hsm_conn *c)
{
	pthread_mutex_lock(&live_mu);
	live_conn = c;
	pthread_mutex_unlock(&live_mu);
}

/* Close the replication connection (never while peer_stop uses it). */
static void
live_close(struct hsm_conn **c)
{
	pthread_mutex_lock(&live_mu);
	if (live_conn == *c)
		live_conn = NULL;
	pthread_mutex_unlock(&live_mu);
	hsm_conn_close(c);
}
static pthread_t peer_tid;
static bool peer_running;

static void
nap(int ms)
{
	/* In slices, so that a stop is noticed soon. */
	for (int i = 0; i < ms && !atomic_load(&stop_flag); i += 50) {
		struct timespec ts = { 0, 50 * 1000000L };

		nanosleep(&ts, NULL);
	}
}

static uint64_t
meta_u64(sqlite3 *db, const char *key)
{
	int64_t v = store_meta_int(db, key, 0);

	return v > 0 ? (uint64_t)v : 0;
}

int
peer_members(sqlite3 *db, const char *self, struct member **out, size_t *n,
    hsm_status *st)
{
	sqlite3_stmt *q = NULL;
	struct member *m = NULL, *p;
	size_t cnt = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if (sqlite3_prepare_v2(db, "SELECT name, role, addr, host_key FROM "
	    "nodes WHERE name != ?1 ORDER BY name", -1, &q, NULL) != SQLITE_OK)
		return hsm_fail(st, "io", "store: %s", sqlite3_errmsg(db));
	sqlite3_bind_text(q, 1, self, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if ((p = realloc(m, (cnt + 1) * sizeof(*m))) == NULL) {
			rc = SQLITE_NOMEM;
			break;
		}
		m = p;
		memset(&m[cnt], 0, sizeof(m[cnt]));
		snprintf(m[cnt].name, sizeof(m[cnt].name), "%s", sql_text(q, 0));
		snprintf(m[cnt].role, sizeof(m[cnt].role), "%s", sql_text(q, 1));
		snprintf(m[cnt].addr, sizeof(m[cnt].addr), "%s", sql_text(q, 2));
		snprintf(m[cnt].host_key, sizeof(m[cnt].host_key), "%s",
		    sql_text(q, 3));
		cnt++;
	}
	sqlite3_finalize(q);
	if (rc != SQLITE_DONE) {
		free(m);
		return hsm_fail(st, "io", "cannot read the cluster's nodes");
	}
	*out = m;
	*n = cnt;
	return 0;
}

static int
connect_as(const struct node_ctx *n, const char *user, const char *addr,
    const char *fp, int timeout_ms, struct hsm_conn **c, hsm_status *st)
{
	struct hsm_conn_opts o;
	char host[256], key[4096];
	int port;

	*c = NULL;
	if (addr[0] == '\0')
		return hsm_fail(st, "connect_failed", "address not known yet");
	if (hsm_parse_hostport(addr, host, sizeof(host), &port, st) != 0)
		return -1;
	if (fs_path(key, sizeof(key), n->dir, HOSTKEY_FILE, st) != 0)
		return -1;
	memset(&o, 0, sizeof(o));
	o.host = host;
	o.port = port;
	o.terminal_key = key;
	o.pinned_fp = fp;
	o.timeout_ms = timeout_ms;
	/* A long poll answers within a second; an exit's import may take
	 * a while for a big partition. */
	o.reply_timeout_ms = 60000;
	o.user = user;
	return hsm_conn_open(&o, c, st);
}

int
peer_connect(const struct node_ctx *n, const char *addr, const char *fp,
    int timeout_ms, struct hsm_conn **c, hsm_status *st)
{
	return connect_as(n, "hsmd", addr, fp, timeout_ms, c, st);
}

int
peer_connect_joining(const struct node_ctx *n, const char *addr,
    const char *fp, int timeout_ms, struct hsm_conn **c, hsm_status *st)
{
	return connect_as(n, HSM_JOIN_USER, addr, fp, timeout_ms, c, st);
}

/* Keep the store as it was before a snapshot replaces a forked state. */
static void
archive_store(const struct node_ctx *n, sqlite3 *db)
{
	char path[4096], name[96], *sql;

	snprintf(name, sizeof(name), "diverged-%lld.db", (long long)time(NULL));
	if (fs_path(path, sizeof(path), n->dir, name, NULL) != 0 ||
	    (sql = sqlite3_mprintf("VACUUM INTO %Q", path)) == NULL)
		return;
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK)
		log_warn("this node's changes since it was cut off from the "
		    "cluster are not the cluster's; its store was kept as %s "
		    "before the master's snapshot replaced it", path);
	else
		log_warn("cannot keep the diverged store: %s",
		    sqlite3_errmsg(db));
	sqlite3_free(sql);
}

static int
fetch_snapshot(const struct node_ctx *n, sqlite3 *db, struct hsm_conn *c,
    const char *from, bool diverged, hsm_status *st)
{
	cbor_item_t *page = NULL;
	const cbor_item_t *v;
	uint64_t seq = 0, epoch = 0;
	bool done = false;

	if (diverged)
		archive_store(n, db);
	if (repl_snapshot_apply_begin(db, st) != 0)
		return -1;
	while (!done) {
		if (hsm_call(c, "repl.snapshot", NULL, &page, st) != 0)
			goto fail;
		if (!cbor_isa_map(page) || (v = hsm_map_get(page, "seq")) ==
		    NULL || !cbor_isa_uint(v)) {
			hsm_fail(st, "protocol", "malformed snapshot page");
			goto fail;
		}
		seq = cbor_get_int(v);
		if ((v = hsm_map_get(page, "epoch")) == NULL ||
		    !cbor_isa_uint(v) || (v = hsm_map_get(page, "done")) ==
		    NULL || !hsm_cbor_is_bool(v)) {
			hsm_fail(st, "protocol", "malformed snapshot page");
			goto fail;
		}
		epoch = cbor_get_int(hsm_map_get(page, "epoch"));
		done = cbor_get_bool(v);
		if (repl_snapshot_apply_page(db, page, st) != 0)
			goto fail;
		cbor_decref(&page);
	}
	if (repl_snapshot_apply_end(db, seq, epoch, from, st) != 0)
		return -1;
	log_info("took a snapshot of %s at seq %" PRIu64 " (epoch %" PRIu64
	    ")", from, seq, epoch);
	return 0;
fail:
	if (page != NULL)
		cbor_decref(&page);
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static int
pull_args(const struct node_ctx *n, sqlite3 *db, uint64_t fence, int wait_ms,
    cbor_item_t **out)
{
	cbor_item_t *a = cbor_new_indefinite_map();

	/* The epoch we know a master of; a vote alone proves none. */
	(void)fence;
	if (a == NULL || hsm_map_put_uint(a, "epoch", meta_u64(db,
	    "epoch")) != 0 ||
	    hsm_map_put_str(a, "addr", n->listen) != 0 ||
	    hsm_map_put_uint(a, "last_seq", meta_u64(db, "last_seq")) != 0 ||
	    hsm_map_put_uint(a, "last_epoch", meta_u64(db, "last_epoch")) != 0 ||
	    hsm_map_put_uint(a, "wait_ms", (uint64_t)wait_ms) != 0) {
		if (a != NULL)
			cbor_decref(&a);
		return -1;
	}
	*out = a;
	return 0;
}

int
peer_sync(const struct node_ctx *n, sqlite3 *db, struct hsm_conn *c,
    uint64_t upto, uint64_t fence, int wait_ms, cbor_item_t **respp,
    hsm_status *st)
{
	cbor_item_t *a = NULL, *resp = NULL;
	const cbor_item_t *v, *entries;
	char from[HSM_NAME_MAX + 1] = "?";

	if (respp != NULL)
		*respp = NULL;
	do {
		if (resp != NULL)
			cbor_decref(&resp);
		if (pull_args(n, db, fence, wait_ms, &a) != 0)
			return hsm_fail(st, "no_memory", "out of memory");
		if (hsm_call(c, "repl.pull", a, &resp, st) != 0) {
			cbor_decref(&a);
			return -1;
		}
		cbor_decref(&a);
		if (!cbor_isa_map(resp) || (v = hsm_map_get(resp, "epoch")) ==
		    NULL || !cbor_isa_uint(v)) {
			hsm_fail(st, "protocol", "malformed pull answer");
			goto fail;
		}
		/* Never follow a master of an epoch older than we know. */
		if (cbor_get_int(v) < fence) {
			hsm_fail(st, "conflict", "the node answering has epoch "
			    "%" PRIu64 ", older than %" PRIu64,
			    (uint64_t)cbor_get_int(v), fence);
			goto fail;
		}
		if ((v = hsm_map_get(resp, "node")) != NULL &&
		    cbor_isa_string(v) && cbor_string_length(v) < sizeof(from)) {
			memcpy(from, cbor_string_handle(v),
			    cbor_string_length(v));
			from[cbor_string_length(v)] = '\0';
		}
		if ((v = hsm_map_get(resp, "snapshot")) != NULL) {
			bool diverged = cbor_isa_string(v) &&
			    cbor_string_length(v) == 9 &&
			    memcmp(cbor_string_handle(v), "divergent", 9) == 0;

			if (fetch_snapshot(n, db, c, from, diverged, st) != 0)
				goto fail;
			continue;
		}
		if ((entries = hsm_map_get(resp, "entries")) == NULL ||
		    !cbor_isa_array(entries)) {
			hsm_fail(st, "protocol", "malformed pull answer");
			goto fail;
		}
		if (repl_apply_list(db, entries, st) != 0)
			goto fail;
		if (cbor_array_size(entries) == 0 && upto > meta_u64(db,
		    "last_seq")) {
			hsm_fail(st, "conflict", "%s does not hold seq %" PRIu64,
			    from, upto);
			goto fail;
		}
	} while (upto > meta_u64(db, "last_seq"));
	if (respp != NULL)
		*respp = resp;
	else
		cbor_decref(&resp);
	return 0;
fail:
	if (resp != NULL)
		cbor_decref(&resp);
	return -1;
}

/* Ask one member who it is; NULL on failure. */
static cbor_item_t *
hello(const struct node_ctx *n, const struct member *m, uint64_t epoch,
    struct hsm_conn **keep, hsm_status *st)
{
	struct hsm_conn *c = NULL;
	cbor_item_t *a = NULL, *r = NULL;

	if (peer_connect(n, m->addr, m->host_key, CONNECT_MS, &c, st) != 0)
		return NULL;
	if ((a = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_uint(a, "epoch", epoch) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (hsm_call(c, "repl.hello", a, &r, st) != 0 || !cbor_isa_map(r)) {
		if (r != NULL)
			cbor_decref(&r);
		r = NULL;
	}
out:
	if (a != NULL)
		cbor_decref(&a);
	if (r != NULL && keep != NULL)
		*keep = c;
	else
		hsm_conn_close(&c);
	return r;
}

static uint64_t
item_u64(const cbor_item_t *m, const char *key)
{
	const cbor_item_t *v = hsm_map_get(m, key);

	return v != NULL && cbor_isa_uint(v) ? cbor_get_int(v) : 0;
}

static bool
item_is(const cbor_item_t *m, const char *key, const char *want)
{
	const cbor_item_t *v = hsm_map_get(m, key);

	return v != NULL && cbor_isa_string(v) && cbor_string_length(v) ==
	    strlen(want) && memcmp(cbor_string_handle(v), want,
	    strlen(want)) == 0;
}

/* The member that is master under the newest epoch, connected. */
static int
find_master(const struct node_ctx *n, sqlite3 *db, uint64_t fence,
    struct member *out, struct hsm_conn **conn, hsm_status *st)
{
	struct member *m = NULL;
	size_t cnt = 0, best = SIZE_MAX;
	uint64_t best_epoch = 0;
	struct hsm_conn *c = NULL;
	char errs[HSM_MSG_MAX] = "";

	*conn = NULL;
	if (peer_members(db, n->name, &m, &cnt, st) != 0)
		return -1;
	{
		/* A new node knows only the master it joined through. */
		struct member j, *p;
		bool known = false;

		memset(&j, 0, sizeof(j));
		store_meta_text(db, "join_addr", j.addr, sizeof(j.addr));
		store_meta_text(db, "join_fp", j.host_key, sizeof(j.host_key));
		for (size_t i = 0; i < cnt; i++)
			known = known || strcmp(m[i].host_key, j.host_key) == 0;
		if (j.addr[0] != '\0' && !known &&
		    (p = realloc(m, (cnt + 1) * sizeof(*m))) != NULL) {
			m = p;
			snprintf(j.name, sizeof(j.name), "%.*s",
			    (int)sizeof(j.name) - 1, j.addr);
			m[cnt++] = j;
		}
	}
	for (size_t i = 0; i < cnt; i++) {
		cbor_item_t *r;
		hsm_status e;

		hsm_status_clear(&e);
		if ((r = hello(n, &m[i], meta_u64(db, "epoch"), &c,
		    &e)) == NULL) {
			size_t k = strlen(errs);

			snprintf(errs + k, sizeof(errs) - k, "%s%s: %.100s",
			    k ? "; " : "", m[i].name, e.message);
			continue;
		}
		if (item_is(r, "role", NODE_MASTER) && item_u64(r, "epoch") >=
		    fence && (best == SIZE_MAX || item_u64(r, "epoch") >
		    best_epoch)) {
			const cbor_item_t *nm = hsm_map_get(r, "node");

			best = i;
			if (nm != NULL && cbor_isa_string(nm) &&
			    cbor_string_length(nm) < sizeof(m[i].name)) {
				memcpy(m[i].name, cbor_string_handle(nm),
				    cbor_string_length(nm));
				m[i].name[cbor_string_length(nm)] = '\0';
			}
			best_epoch = item_u64(r, "epoch");
			hsm_conn_close(conn);
			*conn = c;
			c = NULL;
		}
		hsm_conn_close(&c);
		cbor_decref(&r);
	}
	if (best != SIZE_MAX)
		*out = m[best];
	free(m);
	if (best == SIZE_MAX)
		return hsm_fail(st, "master_unavailable", "no master of epoch "
		    ">= %" PRIu64 " answers%s%s", fence, errs[0] ? " (" : "",
		    errs[0] ? errs : "");
	return 0;
}

/* A master asks the others: has anyone a newer epoch? */
static void
master_check(struct node_ctx *n, sqlite3 *db)
{
	struct member *m = NULL;
	size_t cnt = 0;
	uint64_t epoch = meta_u64(db, "epoch");
	hsm_status st;

	hsm_status_clear(&st);
	if (peer_members(db, n->name, &m, &cnt, &st) != 0)
		return;
	for (size_t i = 0; i < cnt && !atomic_load(&stop_flag); i++) {
		cbor_item_t *r = hello(n, &m[i], epoch, NULL, &st);
		uint64_t theirs;

		if (r == NULL)
			continue;
		theirs = item_u64(r, "epoch");
		if (theirs > epoch || (theirs == epoch && item_is(r, "role",
		    NODE_MASTER))) {
			char num[32];
			const char *kv[] = { "epoch", num, "role", NODE_CLONE,
			    NULL };

			/*
			 * Never two masters: on a newer epoch we step down;
			 * two of one epoch cannot both hold a majority, but
			 * if one is ever seen, both step down.
			 */
			snprintf(num, sizeof(num), "%" PRIu64,
			    theirs > epoch ? theirs : epoch);
			if (repl_meta_update(db, kv, &st) == 0) {
				log_warn("%s is %s of epoch %" PRIu64 ": this "
				    "node (epoch %" PRIu64 ") becomes a clone",
				    m[i].name, item_is(r, "role", NODE_MASTER) ?
				    "master" : "a node", theirs, epoch);
				repl_set_role(NODE_CLONE);
			}
			cbor_decref(&r);
			break;
		}
		cbor_decref(&r);
	}
	free(m);
}

void
peer_startup_check(struct node_ctx *n)
{
	sqlite3 *db = NULL;
	char role[16];
	hsm_status st;

	hsm_status_clear(&st);
	if (store_open(n->dir, false, &db, &st) != 0)
		return;
	store_meta_text(db, "role", role, sizeof(role));
	repl_set_role(role);
	if (strcmp(role, NODE_MASTER) == 0)
		master_check(n, db);
	store_close(&db);
}

static int
write_secret(const struct node_ctx *n, const char *file,
    const cbor_item_t *v, size_t want, hsm_status *st)
{
	char path[4096];

	if (want == 0 && v != NULL && cbor_isa_bytestring(v) &&
	    cbor_bytestring_length(v) > 0 && cbor_bytestring_length(v) < 4096)
		want = cbor_bytestring_length(v);	/* a PEM key */
	if (v == NULL || !cbor_isa_bytestring(v) ||
	    cbor_bytestring_length(v) != want)
		return hsm_fail(st, "protocol", "the master sent no valid %s",
		    file);
	if (fs_path(path, sizeof(path), n->dir, file, st) != 0)
		return -1;
	if (access(path, F_OK) == 0)
		return 0;	/* from an earlier, interrupted admission */
	return fs_write_new(path, cbor_bytestring_handle(v), want, 0600, st);
}

/* A joining node asks the master until an SO quorum has admitted it. */
static void
join_step(struct node_ctx *n, sqlite3 *db, struct repl_view *v)
{
	char addr[300], fp[64], role[16], num[32], cluster[HSM_NAME_MAX + 1];
	char cid[33];
	struct hsm_conn *c = NULL;
	cbor_item_t *a = NULL, *r = NULL;
	const cbor_item_t *x;
	hsm_status st;

	hsm_status_clear(&st);
	store_meta_text(db, "join_addr", addr, sizeof(addr));
	store_meta_text(db, "join_fp", fp, sizeof(fp));
	store_meta_text(db, "join_role", role, sizeof(role));
	if (peer_connect_joining(n, addr, fp, CONNECT_MS, &c, &st) != 0)
		goto out;
	if ((a = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(a, "name", n->name) != 0 ||
	    hsm_map_put_str(a, "role", role) != 0 ||
	    hsm_map_put_str(a, "addr", n->listen) != 0) {
		hsm_fail(&st, "no_memory", "out of memory");
		goto out;
	}
	if (hsm_call(c, "cluster.join", a, &r, &st) != 0)
		goto out;
	if (!item_is(r, "status", "admitted")) {
		snprintf(st.message, sizeof(st.message), "waiting for an SO "
		    "quorum to run 'hsmctl cluster admit %s' on the master",
		    n->name);
		goto out;
	}
	if (write_secret(n, MASTER_KEY_FILE, hsm_map_get(r, "master_key"),
	    MASTER_KEY_LEN, &st) != 0 ||
	    write_secret(n, BACKUP_KEY_FILE, hsm_map_get(r, "backup_key"), 32,
	    &st) != 0 ||
	    write_secret(n, CLUSTER_KEY_FILE, hsm_map_get(r, "cluster_key"), 0,
	    &st) != 0 || backup_keys_load(n, false, &st) != 0)
		goto out;
	if ((x = hsm_map_get(r, "cluster")) == NULL || !cbor_isa_string(x) ||
	    cbor_string_length(x) >= sizeof(cluster) ||
	    (x = hsm_map_get(r, "cluster_id")) == NULL || !cbor_isa_string(x) ||
	    cbor_string_length(x) >= sizeof(cid)) {
		hsm_fail(&st, "protocol", "malformed admission");
		goto out;
	}
	x = hsm_map_get(r, "cluster");
	memcpy(cluster, cbor_string_handle(x), cbor_string_length(x));
	cluster[cbor_string_length(x)] = '\0';
	x = hsm_map_get(r, "cluster_id");
	memcpy(cid, cbor_string_handle(x), cbor_string_length(x));
	cid[cbor_string_length(x)] = '\0';
	snprintf(num, sizeof(num), "%" PRIu64, item_u64(r, "epoch"));
	{
		const char *kv[] = { "cluster", cluster, "cluster_id", cid,
		    "sandbox", (x = hsm_map_get(r, "sandbox")) != NULL &&
		    hsm_cbor_is_bool(x) && cbor_get_bool(x) ? "1" : "0",
		    "epoch", num, "role", role, NULL };
		unsigned char key[MASTER_KEY_LEN];

		x = hsm_map_get(r, "master_key");
		memcpy(key, cbor_bytestring_handle(x), sizeof(key));
		if (repl_meta_update(db, kv, &st) != 0) {
			OPENSSL_cleanse(key, sizeof(key));
			goto out;
		}
		memcpy(n->master_key, key, sizeof(key));
		OPENSSL_cleanse(key, sizeof(key));
	}
	snprintf(n->cluster, sizeof(n->cluster), "%s", cluster);
	snprintf(n->cluster_id, sizeof(n->cluster_id), "%s", cid);
	atomic_store(&n->master_key_ready, true);
	repl_set_role(role);
	log_info("admitted to cluster %s as %s", cluster, role);
	st.message[0] = '\0';
out:
	snprintf(v->error, sizeof(v->error), "%.190s", st.message);
	if (a != NULL)
		cbor_decref(&a);
	if (r != NULL) {
		/* The admission carried the master key. */
		static const char *const secret[] = { "master_key",
		    "backup_key", "cluster_key" };

		for (size_t i = 0; i < 3; i++) {
			x = hsm_map_get(r, secret[i]);
			if (x != NULL && cbor_isa_bytestring(x))
				OPENSSL_cleanse(cbor_bytestring_handle(x),
				    cbor_bytestring_length(x));
		}
		cbor_decref(&r);
	}
	hsm_conn_close(&c);
}

static void *
peer_main(void *arg)
{
	struct node_ctx *n = arg;
	struct hsm_conn *c = NULL;
	struct repl_view v;
	struct member master;
	sqlite3 *db = NULL;

	memset(&master, 0, sizeof(master));
	hsm_status st;
	int64_t last_check = 0;
	char role[16];

	hsm_status_clear(&st);
	memset(&v, 0, sizeof(v));
	if (store_open(n->dir, false, &db, &st) != 0) {
		log_warn("replication stopped: %s", st.message);
		return NULL;
	}
	/* Replicated changes already passed the master's constraints. */
	sqlite3_exec(db, "PRAGMA foreign_keys=OFF", NULL, NULL, NULL);
	while (!atomic_load(&stop_flag)) {
		cbor_item_t *resp = NULL;
		uint64_t fence;

		store_meta_text(db, "role", role, sizeof(role));
		if (strcmp(role, NODE_JOINING) == 0) {
			join_step(n, db, &v);
			repl_view_set(&v);
			nap(JOIN_POLL_MS);
			continue;
		}
		if (strcmp(role, NODE_MASTER) == 0) {
			live_close(&c);
			if (v.master[0] != '\0' || v.connected) {
				memset(&v, 0, sizeof(v));
				repl_view_set(&v);
			}
			if (repl_now_ms() - last_check >= MASTER_CHECK_MS) {
				master_check(n, db);
				last_check = repl_now_ms();
			}
			nap(200);
			continue;
		}
		/*
		 * Follow no master older than the newest one known.  A vote
		 * alone is no master: after a promotion that failed, the
		 * voters follow the master they had.
		 */
		fence = meta_u64(db, "epoch");
		hsm_status_clear(&st);
		if (c == NULL && find_master(n, db, fence, &master, &c,
		    &st) != 0) {
			v.connected = false;
			snprintf(v.error, sizeof(v.error), "%.190s",
			    st.message);
			repl_view_set(&v);
			nap(500);
			continue;
		}
		live_set(c);
		if (peer_sync(n, db, c, 0, fence, PULL_WAIT_MS, &resp,
		    &st) != 0) {
			log_info("replication from %s: %s", master.name,
			    st.message);
			live_close(&c);
			v.connected = false;
			snprintf(v.error, sizeof(v.error), "%s: %.120s",
			    master.name, st.message);
			repl_view_set(&v);
			nap(200);
			continue;
		}
		snprintf(v.master, sizeof(v.master), "%s", master.name);
		v.master_seq = item_u64(resp, "last_seq");
		v.master_epoch = item_u64(resp, "epoch");
		v.contact_ms = repl_now_ms();
		v.connected = true;
		v.error[0] = '\0';
		if (meta_u64(db, "last_seq") >= v.master_seq)
			v.synced_ms = v.contact_ms;
		repl_view_set(&v);
		/* A master that stepped down: look for the new one. */
		if (!item_is(resp, "role", NODE_MASTER))
			live_close(&c);
		cbor_decref(&resp);
	}
	live_close(&c);
	store_close(&db);
	return NULL;
}

int
peer_start(struct node_ctx *n, hsm_status *st)
{
	atomic_store(&stop_flag, false);
	if (pthread_create(&peer_tid, NULL, peer_main, n) != 0)
		return hsm_fail(st, "internal", "cannot start replication");
	peer_running = true;
	return 0;
}

void
peer_stop(void)
{
	if (!peer_running)
		return;
	atomic_store(&stop_flag, true);
	/* A pull waiting for its answer ends at once. */
	pthread_mutex_lock(&live_mu);
	if (live_conn != NULL)
		shutdown(hsm_conn_fd(live_conn), SHUT_RDWR);
	pthread_mutex_unlock(&live_mu);
	pthread_join(peer_tid, NULL);
	peer_running = false;
}
