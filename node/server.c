/*
 * The SSH server: one listening socket, one thread per SSH session.
 *
 * A thread per session keeps a slow or hostile client from blocking any
 * other; each thread owns its libssh session and its own SQLite handle,
 * so nothing but the read-only node_ctx is shared.  Frames are read and
 * answered in the session loop, outside libssh callbacks, so a large
 * response never re-enters the packet handler.
 */
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/server.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "fsutil.h"
#include "keys.h"
#include "log.h"
#include "nodedir.h"
#include "objects.h"
#include "ops.h"
#include "backup.h"
#include "peer.h"
#include "repl.h"
#include "server.h"
#include "store.h"

#define MAX_SESSIONS 256
#define KEX_TIMEOUT 20		/* seconds to finish key exchange */
#define AUTH_TIMEOUT 30		/* seconds to authenticate and open */
#define IO_TIMEOUT 60		/* seconds a blocked write may wait */
#define POLL_MS 100

static atomic_int stopping;
static int stop_pipe[2] = { -1, -1 };

struct worker {
	pthread_t tid;
	ssh_session session;
	const struct node_ctx *node;
	atomic_bool done;
	struct worker *next;
};

/* Per-session state, owned by the session thread. */
struct conn {
	struct sess_ctx ctx;
	ssh_session session;
	ssh_channel chan;
	struct ssh_server_callbacks_struct server_cb;
	struct ssh_channel_callbacks_struct chan_cb;
	bool authenticated;
	bool subsystem;
	unsigned char *rbuf;
	size_t rlen, rcap;
	size_t flen;		/* payload length once the header is in */
};

/* Is this key a member node's?  Then name it. */
static bool
member_key(struct conn *c, const char *fp)
{
	sqlite3_stmt *q = NULL;
	bool found = false;

	if (c->ctx.db == NULL || sqlite3_prepare_v2(c->ctx.db, "SELECT name "
	    "FROM nodes WHERE host_key = ?1 AND name != ?2", -1, &q, NULL) !=
	    SQLITE_OK)
		return false;
	sqlite3_bind_text(q, 1, fp, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, c->ctx.node->name, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW) {
		snprintf(c->ctx.peer_node, sizeof(c->ctx.peer_node), "%s",
		    sql_text(q, 0));
		found = true;
	}
	sqlite3_finalize(q);
	return found;
}

static int
auth_pubkey(ssh_session session, const char *user, struct ssh_key_struct *pub,
    char state, void *userdata)
{
	struct conn *c = userdata;
	enum sess_kind kind;
	char fp[64] = "?", role[16];
	char *b64 = NULL;

	(void)session;
	key_fingerprint(pub, fp, sizeof(fp), NULL);
	repl_role(role, sizeof(role));
	/* Checked at the probe stage too, so unknown keys learn nothing more. */
	if (authkeys_allowed(c->ctx.node->dir, pub))
		kind = SESS_TERMINAL;
	else if (exitsrc_allowed(c->ctx.node->dir, pub))
		kind = SESS_EXITSRC;
	else if (member_key(c, fp))
		kind = SESS_NODE;
	else if (user != NULL && strcmp(user, HSM_JOIN_USER) == 0 &&
	    strcmp(role, NODE_MASTER) == 0 &&
	    ssh_key_type(pub) == SSH_KEYTYPE_ED25519)
		kind = SESS_JOINER;	/* any key, but it may only ask to join */
	else {
		if (state == SSH_PUBLICKEY_STATE_VALID)
			log_info("%s: refused terminal key %s", c->ctx.peer,
			    fp);
		return SSH_AUTH_DENIED;
	}
	if (state == SSH_PUBLICKEY_STATE_NONE)
		return SSH_AUTH_SUCCESS;
	if (state != SSH_PUBLICKEY_STATE_VALID)
		return SSH_AUTH_DENIED;
	if (ssh_pki_export_pubkey_base64(pub, &b64) != SSH_OK)
		return SSH_AUTH_DENIED;
	snprintf(c->ctx.peer_key, sizeof(c->ctx.peer_key), "%s %s",
	    ssh_key_type_to_char(ssh_key_type(pub)), b64);
	ssh_string_free_char(b64);
	snprintf(c->ctx.peer_fp, sizeof(c->ctx.peer_fp), "%s", fp);
	c->ctx.kind = kind;
	c->authenticated = true;
	snprintf(c->ctx.term_fp, sizeof(c->ctx.term_fp), "%s", fp);
	if (kind == SESS_TERMINAL)
		log_info("%s: terminal key %s accepted", c->ctx.peer, fp);
	else if (kind == SESS_NODE)
		log_debug("%s: node %s connected", c->ctx.peer,
		    c->ctx.peer_node);
	else
		log_info("%s: unknown key %s: may ask to join", c->ctx.peer,
		    fp);
	return SSH_AUTH_SUCCESS;
}

static int
subsystem_request(ssh_session session, ssh_channel channel,
    const char *subsystem, void *userdata)
{
	struct conn *c = userdata;

	(void)session;
	(void)channel;
	if (strcmp(subsystem, HSM_SUBSYSTEM) != 0 || c->subsystem) {
		log_info("%s: refused subsystem '%.32s'", c->ctx.peer,
		    subsystem);
		return -1;
	}
	c->subsystem = true;
	return 0;
}

static ssh_channel
channel_open(ssh_session session, void *userdata)
{
	struct conn *c = userdata;

	/* One channel per session: hsmctl needs no more. */
	if (!c->authenticated || c->chan != NULL)
		return NULL;
	if ((c->chan = ssh_channel_new(session)) == NULL)
		return NULL;
	memset(&c->chan_cb, 0, sizeof(c->chan_cb));
	c->chan_cb.userdata = c;
	c->chan_cb.channel_subsystem_request_function = subsystem_request;
	ssh_callbacks_init(&c->chan_cb);
	ssh_set_channel_callbacks(c->chan, &c->chan_cb);
	return c->chan;
}

static int
chan_write(struct conn *c, const unsigned char *buf, size_t len)
{
	while (len > 0) {
		uint32_t part = len > 65536 ? 65536 : (uint32_t)len;
		int n = ssh_channel_write(c->chan, buf, part);

		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Answer a framing error, then close the channel: the stream is lost. */
static int
frame_error(struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
frame_error(struct conn *c, const char *fmt, ...)
{
	unsigned char *out = NULL;
	size_t outlen;
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_info("%s: %s; closing channel", c->ctx.peer, msg);
	if (hsm_response_encode_error(0, "bad_frame", msg, &out, &outlen,
	    NULL) == 0)
		chan_write(c, out, outlen);
	free(out);
	ssh_channel_send_eof(c->chan);
	ssh_channel_close(c->chan);
	return -1;
}

static int
handle_frame(struct conn *c)
{
	unsigned char *out = NULL;
	size_t outlen = 0;
	int r;

	r = ops_handle(&c->ctx, c->rbuf + 4, c->flen, &out, &outlen);
	/* Requests and answers may carry a secret (an API secret). */
	OPENSSL_cleanse(c->rbuf, 4 + c->flen);
	c->rlen = 0;
	c->flen = 0;
	if (r != 0)
		return frame_error(c, "cannot encode a response");
	r = chan_write(c, out, outlen);
	OPENSSL_cleanse(out, outlen);
	free(out);
	return r;
}

/* Read what the channel has, answer every complete frame.  -1: done. */
static int
service_channel(struct conn *c)
{
	hsm_status st;

	for (;;) {
		size_t want, need;
		int n;

		if (c->rlen >= 4 && c->rlen == 4 + c->flen) {
			if (handle_frame(c) != 0)
				return -1;
			continue;
		}
		need = c->rlen < 4 ? 4 - c->rlen : 4 + c->flen - c->rlen;
		if (c->rcap == c->rlen) {
			/* Grow with what arrives, not with what is announced. */
			size_t cap = c->rcap < 65536 ? 65536 : c->rcap * 2;
			unsigned char *p;

			if (c->rlen >= 4 && cap > 4 + c->flen)
				cap = 4 + c->flen;
			if ((p = realloc(c->rbuf, cap)) == NULL)
				return frame_error(c, "out of memory");
			c->rbuf = p;
			c->rcap = cap;
		}
		want = c->rcap - c->rlen < need ? c->rcap - c->rlen : need;
		n = ssh_channel_read_nonblocking(c->chan, c->rbuf + c->rlen,
		    (uint32_t)want, 0);
		if (n <= 0)
			break;
		c->rlen += (size_t)n;
		if (c->rlen == 4 && hsm_frame_length(c->rbuf, &c->flen,
		    &st) != 0)
			return frame_error(c, "%s", st.message);
	}
	if (ssh_channel_is_eof(c->chan) || ssh_channel_is_closed(c->chan)) {
		if (c->rlen > 0)
			return frame_error(c, "truncated frame: %zu of %zu "
			    "bytes", c->rlen, c->rlen < 4 ? (size_t)4 :
			    4 + c->flen);
		if (!ssh_channel_is_closed(c->chan)) {
			ssh_channel_send_eof(c->chan);
			ssh_channel_close(c->chan);
		}
		return -1;
	}
	return 0;
}

static void
peer_name(int fd, char *out, size_t outlen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	snprintf(out, outlen, "?");
	if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		port = ntohs(sin->sin_port);
		snprintf(out, outlen, "%s:%d", host, port);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		port = ntohs(sin6->sin6_port);
		snprintf(out, outlen, "[%s]:%d", host, port);
	}
}

static bool
key_exchange(struct conn *c)
{
	time_t deadline = time(NULL) + KEX_TIMEOUT;
	int rc;

	ssh_set_blocking(c->session, 0);
	while ((rc = ssh_handle_key_exchange(c->session)) == SSH_AGAIN) {
		struct pollfd pfd = { .fd = ssh_get_fd(c->session),
			.events = POLLIN };

		if (atomic_load(&stopping) || time(NULL) > deadline) {
			log_info("%s: key exchange timed out", c->ctx.peer);
			return false;
		}
		poll(&pfd, 1, POLL_MS);
	}
	if (rc != SSH_OK) {
		log_info("%s: key exchange failed: %s", c->ctx.peer,
		    ssh_get_error(c->session));
		return false;
	}
	ssh_set_blocking(c->session, 1);
	return true;
}

static void *
session_main(void *arg)
{
	struct worker *w = arg;
	struct conn c;
	ssh_event ev = NULL;
	hsm_status st;
	long timeout = IO_TIMEOUT;
	time_t auth_deadline = time(NULL) + AUTH_TIMEOUT;

	memset(&c, 0, sizeof(c));
	c.session = w->session;
	c.ctx.node = w->node;
	{
		unsigned char rnd[8];

		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			goto out;
		hsm_hex(rnd, sizeof(rnd), c.ctx.id);
	}
	peer_name(ssh_get_fd(c.session), c.ctx.peer, sizeof(c.ctx.peer));
	log_debug("%s: connected", c.ctx.peer);

	c.server_cb.userdata = &c;
	c.server_cb.auth_pubkey_function = auth_pubkey;
	c.server_cb.channel_open_request_session_function = channel_open;
	ssh_callbacks_init(&c.server_cb);
	ssh_set_server_callbacks(c.session, &c.server_cb);
	ssh_options_set(c.session, SSH_OPTIONS_TIMEOUT, &timeout);

	if (!key_exchange(&c))
		goto out;
	ssh_set_auth_methods(c.session, SSH_AUTH_METHOD_PUBLICKEY);
	if (store_open(w->node->dir, false, &c.ctx.db, &st) != 0) {
		log_warn("%s", st.message);
		goto out;
	}
	if ((ev = ssh_event_new()) == NULL ||
	    ssh_event_add_session(ev, c.session) != SSH_OK)
		goto out;
	while (!atomic_load(&stopping)) {
		if (ssh_event_dopoll(ev, POLL_MS) == SSH_ERROR)
			break;
		if (!ssh_is_connected(c.session))
			break;
		if (!c.subsystem && time(NULL) > auth_deadline) {
			log_info("%s: no session opened in time", c.ctx.peer);
			break;
		}
		if (c.chan != NULL && c.subsystem && service_channel(&c) != 0)
			break;
	}
out:
	if (ev != NULL) {
		ssh_event_remove_session(ev, c.session);
		ssh_event_free(ev);
	}
	if (c.chan != NULL) {
		/* Freeing the channel also detaches its callbacks. */
		ssh_channel_free(c.chan);
	}
	ssh_disconnect(c.session);
	ssh_free(c.session);
	if (c.ctx.db != NULL) {
		repl_session_end(&c.ctx);
		backup_session_end(&c.ctx);
		objects_cache_drop(&c.ctx);
		objects_session_end(&c.ctx, c.ctx.id);
	}
	store_close(&c.ctx.db);
	free(c.rbuf);
	log_debug("%s: disconnected", c.ctx.peer);
	atomic_store(&w->done, true);
	return NULL;
}

static void
on_signal(int sig)
{
	int saved = errno;
	char b = (char)sig;

	atomic_store(&stopping, 1);
	if (write(stop_pipe[1], &b, 1) < 0) {
		/* Nothing to do: the flag is set. */
	}
	errno = saved;
}

/* Join finished workers; with all=true, wait for every one. */
static size_t
reap(struct worker **list, bool all)
{
	struct worker **pp = list, *w;
	size_t live = 0;

	while ((w = *pp) != NULL) {
		if (all || atomic_load(&w->done)) {
			pthread_join(w->tid, NULL);
			*pp = w->next;
			free(w);
			continue;
		}
		live++;
		pp = &w->next;
	}
	return live;
}

static int
write_addr_file(const char *dir, int fd, const char *host, char *listen,
    size_t listenlen, hsm_status *st)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char path[4096], line[300];
	int port = 0;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return hsm_fail(st, "io", "getsockname: %s", strerror(errno));
	if (ss.ss_family == AF_INET)
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	else if (ss.ss_family == AF_INET6)
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	if (strchr(host, ':') != NULL)
		snprintf(line, sizeof(line), "[%s]:%d\n", host, port);
	else
		snprintf(line, sizeof(line), "%s:%d\n", host, port);
	snprintf(path, sizeof(path), "%s/hsmd.addr", dir);
	snprintf(listen, listenlen, "%.*s", (int)strlen(line) - 1, line);
	log_info("listening on %s", listen);
	return fs_write_atomic(path, line, strlen(line), 0644, st);
}

/*
 * Detach once listening, so bind errors still reach the terminal.  The
 * parent records the child's pid before it exits: when it returns, the
 * node is reachable and hsmd.pid and hsmd.addr are in place.
 */
static int
daemonize(const char *pidpath, hsm_status *st)
{
	char pid[32];
	pid_t p;
	int fd;

	if ((p = fork()) < 0)
		return hsm_fail(st, "internal", "fork: %s", strerror(errno));
	if (p > 0) {
		snprintf(pid, sizeof(pid), "%ld\n", (long)p);
		if (fs_write_atomic(pidpath, pid, strlen(pid), 0644, st) != 0) {
			fprintf(stderr, "hsmd: %s\n", st->message);
			kill(p, SIGTERM);
			_exit(1);
		}
		_exit(0);
	}
	setsid();
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	log_use_syslog();
	return 0;
}

static int
load_master_key(const char *dir, unsigned char key[32], hsm_status *st)
{
	char path[4096], *buf = NULL;
	size_t len = 0;
	int r = -1;

	if (fs_path(path, sizeof(path), dir, MASTER_KEY_FILE, st) != 0 ||
	    fs_read(path, 64, &buf, &len, st) != 0)
		return -1;
	if (len != 32)
		hsm_fail(st, "io", "%s is not a 32-byte master key", path);
	else {
		memcpy(key, buf, 32);
		r = 0;
	}
	OPENSSL_cleanse(buf, len);
	free(buf);
	return r;
}

/*
 * An Ed25519 key in a PEM file (0600): the node's attestation key, the
 * cluster's signing key.  Made on first start for directories from before
 * it existed (the cluster's only on its master).
 */
int
load_ed25519_key(const char *dir, const char *file, bool create,
    EVP_PKEY **out, hsm_status *st)
{
	char path[4096];
	FILE *f;
	EVP_PKEY *k = NULL;
	int fd;

	*out = NULL;
	if (fs_path(path, sizeof(path), dir, file, st) != 0)
		return -1;
	if ((f = fopen(path, "r")) != NULL) {
		k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
		if (k == NULL || EVP_PKEY_get_id(k) != EVP_PKEY_ED25519) {
			EVP_PKEY_free(k);
			return hsm_fail(st, "io", "%s is not an Ed25519 key",
			    path);
		}
		*out = k;
		return 0;
	}
	if (!create)
		return hsm_fail(st, "io", "cannot read %s: %s", path,
		    strerror(errno));
	if ((k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")) == NULL)
		return hsm_fail(st, "internal", "cannot make an Ed25519 key");
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0600)) < 0 || (f = fdopen(fd, "w")) == NULL) {
		if (fd >= 0)
			close(fd);
		EVP_PKEY_free(k);
		return hsm_fail(st, "io", "cannot create %s: %s", path,
		    strerror(errno));
	}
	if (PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) != 1 ||
	    fflush(f) != 0 || fsync(fd) != 0) {
		fclose(f);
		unlink(path);
		EVP_PKEY_free(k);
		return hsm_fail(st, "io", "cannot write %s", path);
	}
	fclose(f);
	*out = k;
	return 0;
}

/*
 * Before serving: drop the session objects of sessions that died with the
 * last run, and keep this node's address in the membership current.
 * Both are replicated changes, so only a master makes them; replicas
 * report their address when they pull.
 */
static int
server_prepare(struct node_ctx *node, hsm_status *st)
{
	struct sess_ctx s;
	char role[16];
	sqlite3_stmt *q = NULL;
	int r = -1;

	repl_role(role, sizeof(role));
	if (strcmp(role, NODE_MASTER) != 0)
		return 0;
	memset(&s, 0, sizeof(s));
	s.node = node;
	snprintf(s.id, sizeof(s.id), "startup");
	snprintf(s.peer, sizeof(s.peer), "hsmd");
	if (store_open(node->dir, false, &s.db, st) != 0)
		return -1;
	objects_session_end(&s, NULL);
	if (tx_begin(&s, st) != 0)
		goto out;
	if (sqlite3_prepare_v2(s.db, "UPDATE nodes SET addr = ?2 WHERE name = "
	    "?1 AND addr != ?2", -1, &q, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(q, 1, node->name, -1, SQLITE_STATIC) !=
	    SQLITE_OK ||
	    sqlite3_bind_text(q, 2, node->listen, -1, SQLITE_STATIC) !=
	    SQLITE_OK || sqlite3_step(q) != SQLITE_DONE) {
		hsm_fail(st, "io", "store: %s", sqlite3_errmsg(s.db));
		tx_rollback(&s);
		goto out;
	}
	if (tx_commit(&s, st) != 0)
		goto out;
	r = 0;
out:
	sqlite3_finalize(q);
	store_close(&s.db);
	return r;
}

/* HOST:PORT as everywhere, plus port 0 for "any free port" (tests use it). */
static int
parse_listen(const char *s, char *host, size_t hostlen, int *port,
    hsm_status *st)
{
	size_t len = strlen(s);
	char *copy;
	int r;

	if (len < 2 || strcmp(s + len - 2, ":0") != 0)
		return hsm_parse_hostport(s, host, hostlen, port, st);
	if ((copy = strdup(s)) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	copy[len - 1] = '1';
	r = hsm_parse_hostport(copy, host, hostlen, port, st);
	free(copy);
	if (r != 0)
		return hsm_fail(st, "bad_value", "bad listen address '%s'", s);
	*port = 0;
	return 0;
}

int
server_run(const char *dir, const char *listen_on, bool foreground,
    hsm_status *st)
{
	struct node_ctx node;
	struct node_meta meta;
	struct worker *workers = NULL;
	struct sigaction sa;
	ssh_bind bind = NULL;
	ssh_key hostkey = NULL;
	sqlite3 *db = NULL;
	char host[256], keypath[4096], lockpath[4096], addrpath[4096];
	char pidpath[4096];
	int port, lockfd = -1, r = -1;
	bool no = false, ssh_ready = false;

	memset(&node, 0, sizeof(node));
	node.dir = dir;
	node.started = time(NULL);
	if (parse_listen(listen_on, host, sizeof(host), &port, st) != 0)
		return -1;
	snprintf(lockpath, sizeof(lockpath), "%s/hsmd.lock", dir);
	snprintf(keypath, sizeof(keypath), "%s/%s", dir, HOSTKEY_FILE);
	snprintf(addrpath, sizeof(addrpath), "%s/hsmd.addr", dir);
	snprintf(pidpath, sizeof(pidpath), "%s/hsmd.pid", dir);
	/* One server per node directory, before anything is touched. */
	if ((lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		hsm_fail(st, "io", "%s is not a node directory: %s", dir,
		    strerror(errno));
		goto out;
	}
	if (flock(lockfd, LOCK_EX | LOCK_NB) != 0) {
		hsm_fail(st, "conflict", "node %s is already being served "
		    "(lock %s)", dir, lockpath);
		goto out;
	}
	if (store_open(dir, false, &db, st) != 0)
		goto out;
	if (store_migrate(db, st) != 0 || store_meta(db, &meta, st) != 0)
		goto out;
	snprintf(node.name, sizeof(node.name), "%s", meta.node);
	snprintf(node.cluster, sizeof(node.cluster), "%s", meta.cluster);
	snprintf(node.cluster_id, sizeof(node.cluster_id), "%s",
	    meta.cluster_id);
	node.sandbox = meta.sandbox;
	repl_set_role(meta.role);
	/* A joining node learns the master key when it is admitted. */
	if (strcmp(meta.role, NODE_JOINING) != 0) {
		if (load_master_key(dir, node.master_key, st) != 0)
			goto out;
		atomic_store(&node.master_key_ready, true);
	}
	if (load_ed25519_key(dir, ATTEST_KEY_FILE, true, &node.attest,
	    st) != 0)
		goto out;
	if (strcmp(meta.role, NODE_JOINING) != 0 && backup_keys_load(&node,
	    strcmp(meta.role, NODE_MASTER) == 0, st) != 0)
		goto out;
	store_close(&db);
	if (ssh_pki_import_privkey_file(keypath, NULL, NULL, NULL,
	    &hostkey) != SSH_OK) {
		hsm_fail(st, "io", "cannot load host key %s", keypath);
		goto out;
	}
	if (key_fingerprint(hostkey, node.hostkey_fp, sizeof(node.hostkey_fp),
	    st) != 0)
		goto out;
	if ((bind = ssh_bind_new()) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (ssh_bind_options_set(bind, SSH_BIND_OPTIONS_PROCESS_CONFIG,
	    &no) != SSH_OK ||
	    ssh_bind_options_set(bind, SSH_BIND_OPTIONS_BINDADDR,
	    host) != SSH_OK ||
	    ssh_bind_options_set(bind, SSH_BIND_OPTIONS_BINDPORT,
	    &port) != SSH_OK ||
	    ssh_bind_options_set(bind, SSH_BIND_OPTIONS_HOSTKEY,
	    keypath) != SSH_OK ||
	    ssh_bind_options_set(bind, SSH_BIND_OPTIONS_HOSTKEY_ALGORITHMS,
	    "ssh-ed25519") != SSH_OK) {
		hsm_fail(st, "internal", "ssh bind options: %s",
		    ssh_get_error(bind));
		goto out;
	}
	if (ssh_bind_listen(bind) != SSH_OK) {
		hsm_fail(st, "io", "cannot listen on %s: %s", listen_on,
		    ssh_get_error(bind));
		goto out;
	}
	if (write_addr_file(dir, ssh_bind_get_fd(bind), host, node.listen,
	    sizeof(node.listen), st) != 0)
		goto out;
	if (!foreground && daemonize(pidpath, st) != 0)
		goto out;
	if (pipe(stop_pipe) != 0 ||
	    fcntl(stop_pipe[0], F_SETFD, FD_CLOEXEC) != 0 ||
	    fcntl(stop_pipe[1], F_SETFD, FD_CLOEXEC) != 0 ||
	    fcntl(stop_pipe[1], F_SETFL, O_NONBLOCK) != 0) {
		hsm_fail(st, "internal", "pipe: %s", strerror(errno));
		goto out;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	if (hsm_init(st) != 0)
		goto out;
	ssh_ready = true;
	/* A master that was down through a promotion steps down first. */
	peer_startup_check(&node);
	if (server_prepare(&node, st) != 0 || backup_startup(&node, st) != 0 ||
	    peer_start(&node, st) != 0 || backup_scheduler_start(&node,
	    st) != 0)
		goto out;
	log_info("node %s of cluster %s (%s, epoch %llu), host key %s",
	    meta.node, meta.cluster, meta.role,
	    (unsigned long long)meta.epoch, node.hostkey_fp);

	while (!atomic_load(&stopping)) {
		struct pollfd pfd[2] = {
			{ .fd = ssh_bind_get_fd(bind), .events = POLLIN },
			{ .fd = stop_pipe[0], .events = POLLIN },
		};
		ssh_session session;
		struct worker *w;
		size_t live = reap(&workers, false);

		if (poll(pfd, 2, 1000) < 0 && errno != EINTR) {
			hsm_fail(st, "io", "poll: %s", strerror(errno));
			goto out;
		}
		if (atomic_load(&stopping) || !(pfd[0].revents & POLLIN))
			continue;
		if ((session = ssh_new()) == NULL)
			continue;
		if (ssh_bind_accept(bind, session) != SSH_OK) {
			log_warn("accept: %s", ssh_get_error(bind));
			ssh_free(session);
			continue;
		}
		if (live >= MAX_SESSIONS || (w = calloc(1, sizeof(*w))) ==
		    NULL) {
			log_warn("too many sessions; refusing a connection");
			ssh_disconnect(session);
			ssh_free(session);
			continue;
		}
		w->session = session;
		w->node = &node;
		if (pthread_create(&w->tid, NULL, session_main, w) != 0) {
			log_warn("cannot start a session thread");
			ssh_disconnect(session);
			ssh_free(session);
			free(w);
			continue;
		}
		w->next = workers;
		workers = w;
	}
	log_info("shutting down");
	r = 0;
out:
	atomic_store(&stopping, 1);
	peer_stop();
	backup_scheduler_stop();
	reap(&workers, true);
	if (ssh_ready)
		hsm_cleanup();
	if (bind != NULL)
		ssh_bind_free(bind);
	ssh_key_free(hostkey);
	store_close(&db);
	OPENSSL_cleanse(node.master_key, sizeof(node.master_key));
	OPENSSL_cleanse(node.backup_key, sizeof(node.backup_key));
	EVP_PKEY_free(node.attest);
	EVP_PKEY_free(node.cluster_key);
	if (r == 0) {
		unlink(addrpath);
		if (!foreground)
			unlink(pidpath);
	}
	if (lockfd >= 0)
		close(lockfd);
	if (stop_pipe[0] >= 0) {
		close(stop_pipe[0]);
		close(stop_pipe[1]);
	}
	return r;
}
