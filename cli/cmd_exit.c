/*
 * exit commands (DESIGN §8): a partition's four ways out of the service.
 *
 *   exit transfer P --to HOST:PORT   (so)   move it to a node of another
 *   exit migrate P --to HOST:PORT    (pso)  cluster: a journaled plan on
 *   exit status P | exit resume P    (so|pso) the source, run by the node
 *   exit export P --wrap-key PUB --out FILE [--plain] [--delete]   (pso)
 *   exit delete P [--out FILE]       (so)   with a deletion certificate
 *   exit verify-certificate FILE [--cluster-key HEX]   offline
 *
 * The node does the work (node/exits.c); this side checks the target's
 * host key before the node is told to trust it, writes the export and the
 * certificate files (0600, FILE.tmp, fsync, rename) and checks them, and
 * verifies certificates without a node.  The export file format is in
 * doc/export-format.md; scripts/unwrap-export.sh reads it.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libssh2.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cmd.h"

#define CERT_FORMAT "hsmctl-deletion-certificate-v1"
#define EXPORT_MAGIC "hsmctl-export 1"
#define WRAP_RSA "rsa-oaep-sha256+aes256-kwp"
#define WRAP_EC "ecdh-hkdf-sha256+aes256-kwp"
#define WRAP_PLAIN "plain"
#define FILE_MAX (16u * 1024 * 1024)	/* an export or a certificate */
#define ID_MAX 64
#define TYPE_MAX 15
#define REASON_MAX 200
#define PATH_MAX_LEN 4096
/* A target that does not answer the probe within this is down. */
#define TARGET_TIMEOUT_MS 5000

static int
oom(hsm_status *st)
{
	return hsm_fail(st, "no_memory", "out of memory");
}

/* Replace st's message with m, cut to fit. */
static void
set_message(hsm_status *st, const char *m)
{
	size_t n = strlen(m);

	if (n >= sizeof(st->message))
		n = sizeof(st->message) - 1;
	memmove(st->message, m, n);
	st->message[n] = '\0';
}

/* {"partition": P}, P checked first. */
static cbor_item_t *
part_args(const char *p, hsm_status *st)
{
	return partition_args("partition", p, st);
}

/* ---- small checks and encodings ----------------------------------------- */

/* A text value of a map, copied; false if absent, not text or too long. */
static bool
text_of(const cbor_item_t *m, const char *key, char *buf, size_t len)
{
	const cbor_item_t *v = m != NULL && cbor_isa_map(m) ?
	    hsm_map_get(m, key) : NULL;
	size_t n;

	if (v == NULL || !cbor_isa_string(v) ||
	    (n = cbor_string_length(v)) >= len)
		return false;
	memcpy(buf, cbor_string_handle(v), n);
	buf[n] = '\0';
	return strlen(buf) == n;	/* no NUL inside */
}

/* A text value of a map, cut to fit; "" if absent or not text. */
static void
text_cut(const cbor_item_t *m, const char *key, char *buf, size_t len)
{
	const cbor_item_t *v = hsm_map_get(m, key);
	size_t n;

	buf[0] = '\0';
	if (v == NULL || !cbor_isa_string(v))
		return;
	if ((n = cbor_string_length(v)) >= len)
		n = len - 1;
	memcpy(buf, cbor_string_handle(v), n);
	buf[n] = '\0';
}

static bool
uint_of(const cbor_item_t *m, const char *key, uint64_t *out)
{
	const cbor_item_t *v = m != NULL && cbor_isa_map(m) ?
	    hsm_map_get(m, key) : NULL;

	if (v == NULL || !cbor_isa_uint(v))
		return false;
	*out = cbor_get_int(v);
	return true;
}

/* A byte string value of a map, or NULL. */
static const cbor_item_t *
bytes_of(const cbor_item_t *m, const char *key)
{
	const cbor_item_t *v = hsm_map_get(m, key);

	return v != NULL && cbor_isa_bytestring(v) &&
	    cbor_bytestring_is_definite(v) ? v : NULL;
}

/* Characters from set only, 1..max of them. */
static bool
word_ok(const char *s, const char *set, size_t max)
{
	size_t n = strlen(s);

	return n > 0 && n <= max && strspn(s, set) == n;
}

#define LOWER_DIGITS "abcdefghijklmnopqrstuvwxyz0123456789"
#define NAME_SET LOWER_DIGITS "ABCDEFGHIJKLMNOPQRSTUVWXYZ._-"

/* A key id as a file name: [A-Za-z0-9_-], 1..64 (the node's: 32 hex). */
static bool
id_ok(const char *s)
{
	return word_ok(s, LOWER_DIGITS "ABCDEFGHIJKLMNOPQRSTUVWXYZ_-", ID_MAX);
}

static bool
hex_ok(const char *s, size_t n)
{
	return strlen(s) == n && strspn(s, "0123456789abcdefABCDEF") == n;
}

/* 2n hex digits (either case) to n bytes; the caller checked hex_ok. */
static void
unhex(const char *s, unsigned char *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned int b = 0;

		sscanf(s + 2 * i, "%2x", &b);
		out[i] = (unsigned char)b;
	}
}

static void
sha256_hex(const unsigned char *p, size_t n, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;

	if (EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen != 32) {
		out[0] = '\0';
		return;
	}
	hsm_hex(md, sizeof(md), out);
}

/* Base64 (EVP_EncodeBlock: one line, padded) in a new string. */
static char *
b64_encode(const unsigned char *p, size_t n)
{
	char *s;

	if (n > FILE_MAX || (s = malloc(4 * ((n + 2) / 3) + 1)) == NULL)
		return NULL;
	EVP_EncodeBlock((unsigned char *)s, p, (int)n);
	return s;
}

/*
 * Strict base64: padded, no whitespace, and canonical (it encodes back to
 * the same text), so one byte string has one spelling in a file.
 */
static int
b64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
	unsigned char *buf;
	char *again;
	int n;

	*out = NULL;
	*outlen = 0;
	if (len % 4 != 0 || len > 2 * (size_t)FILE_MAX)
		return -1;
	if ((buf = malloc(len / 4 * 3 + 1)) == NULL)
		return -1;
	if (len == 0) {
		*out = buf;
		return 0;
	}
	if ((n = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len)) < 0)
		goto bad;
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	if (s[len - 1] == '=')
		n--;
	if (s[len - 2] == '=')
		n--;
	if (n < 0 || (again = b64_encode(buf, (size_t)n)) == NULL)
		goto bad;
	if (strlen(again) != len || memcmp(again, s, len) != 0) {
		free(again);
		goto bad;
	}
	free(again);
	*out = buf;
	*outlen = (size_t)n;
	return 0;
bad:
	OPENSSL_cleanse(buf, len / 4 * 3 + 1);
	free(buf);
	return -1;
}

/* Does the base64 text s (n chars) decode to exactly want? */
static bool
b64_eq(const char *s, size_t n, const unsigned char *want, size_t wantlen)
{
	unsigned char *p;
	size_t plen;
	bool eq;

	if (b64_decode(s, n, &p, &plen) != 0)
		return false;
	eq = plen == wantlen && (wantlen == 0 || memcmp(p, want, plen) == 0);
	OPENSSL_cleanse(p, plen);
	free(p);
	return eq;
}

/* A whole small file, NUL-terminated; the caller wipes and frees it. */
static int
read_small(const char *path, const char *code, unsigned char **buf,
    size_t *len, hsm_status *st)
{
	struct stat sb;
	unsigned char *p = NULL;
	size_t off = 0;
	int fd;

	*buf = NULL;
	*len = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
		return hsm_fail(st, code, "cannot open %s: %s", path,
		    strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) ||
	    (uint64_t)sb.st_size > FILE_MAX) {
		close(fd);
		return hsm_fail(st, code, "%s: not a regular file of at most "
		    "%u bytes", path, FILE_MAX);
	}
	if ((p = malloc((size_t)sb.st_size + 1)) == NULL) {
		close(fd);
		return oom(st);
	}
	while (off < (size_t)sb.st_size) {
		ssize_t n = read(fd, p + off, (size_t)sb.st_size - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			OPENSSL_cleanse(p, off);
			free(p);
			return hsm_fail(st, code, "cannot read %s: %s", path,
			    n < 0 ? strerror(errno) : "it shrank");
		}
		off += (size_t)n;
	}
	close(fd);
	p[off] = '\0';
	*buf = p;
	*len = off;
	return 0;
}

/* ---- files holding secrets: FILE.tmp (0600), fsync, rename ------------- */

struct outfile {
	char path[PATH_MAX_LEN];
	char tmp[PATH_MAX_LEN + 8];
	int fd;
};

/*
 * Before anything is sent: FILE must not exist (a file is never
 * replaced: exit 5), and FILE.tmp is made, mode 0600 whatever the umask.
 * A FILE.tmp left by an interrupted run is ours to replace.
 */
static int
outfile_open(struct outfile *f, const char *path, hsm_status *st)
{
	struct stat sb;

	f->fd = -1;
	if (*path == '\0')
		return hsm_fail(st, "bad_value", "--out needs a file name");
	if (snprintf(f->path, sizeof(f->path), "%s", path) >=
	    (int)sizeof(f->path))
		return hsm_fail(st, "bad_value", "path too long: %.64s...",
		    path);
	snprintf(f->tmp, sizeof(f->tmp), "%s.tmp", path);
	if (lstat(path, &sb) == 0)
		return hsm_fail(st, "conflict", "%s exists; not overwritten",
		    path);
	if (errno != ENOENT)
		return hsm_fail(st, "io", "%s: %s", path, strerror(errno));
	f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
	    O_NOCTTY | O_NOFOLLOW, 0600);
	if (f->fd < 0)
		return hsm_fail(st, "io", "cannot write %s: %s", f->tmp,
		    strerror(errno));
	if (fchmod(f->fd, 0600) != 0 || fstat(f->fd, &sb) != 0 ||
	    !S_ISREG(sb.st_mode)) {
		hsm_fail(st, "io", "%s: not a regular file of mode 0600",
		    f->tmp);
		close(f->fd);
		f->fd = -1;
		return -1;
	}
	return 0;
}

/* Drop FILE.tmp (nothing worth keeping went into it). */
static void
outfile_abort(struct outfile *f)
{
	if (f->fd < 0)
		return;
	close(f->fd);
	f->fd = -1;
	unlink(f->tmp);
}

/* buf into FILE.tmp, synced, renamed to FILE, the directory synced. */
static int
outfile_commit(struct outfile *f, const void *buf, size_t len, hsm_status *st)
{
	char dir[PATH_MAX_LEN];
	struct stat sb;
	int dfd, fd = f->fd;

	f->fd = -1;
	if (hsm_write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
		hsm_fail(st, "io", "cannot write %s: %s", f->tmp,
		    strerror(errno));
		close(fd);
		return -1;
	}
	if (close(fd) != 0)
		return hsm_fail(st, "io", "cannot write %s: %s", f->tmp,
		    strerror(errno));
	/* Made meanwhile by someone else: theirs stays, ours is FILE.tmp. */
	if (lstat(f->path, &sb) == 0)
		return hsm_fail(st, "conflict", "%s appeared meanwhile; not "
		    "overwritten (what was written is in %s)", f->path, f->tmp);
	if (rename(f->tmp, f->path) != 0)
		return hsm_fail(st, "io", "cannot rename %s to %s: %s", f->tmp,
		    f->path, strerror(errno));
	snprintf(dir, sizeof(dir), "%s", f->path);
	if ((dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

/* ---- the target's host key ---------------------------------------------- */

enum kh_state { KH_NONE, KH_MATCH, KH_OTHER };

/*
 * Is the ssh-ed25519 key with fingerprint fp the one known_hosts trusts
 * for HOST:PORT (KH_MATCH), does it trust another one there (KH_OTHER,
 * its fingerprint in other), or none (KH_NONE)?
 *
 * The match is libssh2's, the very call lib/transport.c makes for every
 * connection (libssh2_knownhost_checkp, plain names, "[host]:port" for a
 * port other than 22, hashed entries): each ed25519 entry's key is asked
 * for HOST:PORT, and it is the key probed when its fingerprint is fp.
 * Only ed25519 entries count, as transport.c accepts no other host key
 * type, so an entry of another type neither matches nor conflicts.
 */
static int
kh_lookup(const char *path, const char *host, int port, const char *fp,
    enum kh_state *state, char *other, size_t otherlen, hsm_status *st)
{
	LIBSSH2_SESSION *s;
	LIBSSH2_KNOWNHOSTS *kh = NULL;
	struct libssh2_knownhost *e = NULL, *prev = NULL;
	int rc, r = -1;

	*state = KH_NONE;
	other[0] = '\0';
	if ((s = libssh2_session_init()) == NULL ||
	    (kh = libssh2_knownhost_init(s)) == NULL) {
		oom(st);
		goto out;
	}
	if (access(path, F_OK) == 0 && libssh2_knownhost_readfile(kh, path,
	    LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
		hsm_fail(st, "config_io", "cannot read known hosts file %s: %s",
		    path, access(path, R_OK) != 0 ? strerror(errno) :
		    "not in OpenSSH known_hosts format");
		goto out;
	}
	while (*state != KH_MATCH &&
	    (rc = libssh2_knownhost_get(kh, &e, prev)) == 0) {
		unsigned char *blob;
		size_t n;
		char efp[64];

		prev = e;
		if ((e->typemask & LIBSSH2_KNOWNHOST_KEY_MASK) !=
		    LIBSSH2_KNOWNHOST_KEY_ED25519 || e->key == NULL ||
		    b64_decode(e->key, strlen(e->key), &blob, &n) != 0)
			continue;
		if (libssh2_knownhost_checkp(kh, host, port, (const char *)blob,
		    n, LIBSSH2_KNOWNHOST_TYPE_PLAIN |
		    LIBSSH2_KNOWNHOST_KEYENC_RAW |
		    LIBSSH2_KNOWNHOST_KEY_ED25519, NULL) ==
		    LIBSSH2_KNOWNHOST_CHECK_MATCH &&
		    hsm_fingerprint(blob, n, efp, sizeof(efp), NULL) == 0) {
			if (strcmp(efp, fp) == 0)
				*state = KH_MATCH;
			else {
				*state = KH_OTHER;
				snprintf(other, otherlen, "%s", efp);
			}
		}
		free(blob);
	}
	r = 0;
out:
	if (kh != NULL)
		libssh2_knownhost_free(kh);
	if (s != NULL)
		libssh2_session_free(s);
	return r;
}

/*
 * The host key of the target HOST:PORT, checked against the configured
 * known_hosts exactly as a connection to any node is (hsmctl(1), HOST
 * KEYS): known, it goes on; changed or unknown, exit 7; unknown with
 * --accept-new-host-key, it is recorded.  Its fingerprint goes to the
 * source node, which then accepts only that key from the target.
 *
 * Why not simply connect: the target authorises the source node's host
 * key, not necessarily this terminal's key, so a normal connection may
 * end in auth_failed, after the host key check but with the fingerprint
 * gone with it (hsm_conn_open keeps nothing of a failed connection).  So
 * a probe connection (hsm_conn_opts.probe: no login, any key) tells the
 * fingerprint, and kh_lookup() asks known_hosts about it with libssh2's
 * own matching.  To record a new key, a normal connection with
 * --accept-new-host-key lets lib/transport.c write the line as it always
 * does (its login may then fail: that does not matter), and the lookup
 * runs again: the key recorded must be the one probed, else something
 * answered differently the second time and neither is trusted.
 */
static int
target_host_key(struct ctx *ctx, const char *host, int port, char *fp,
    size_t fplen, hsm_status *st)
{
	struct hsm_conn_opts o;
	struct hsm_conn *c = NULL;
	hsm_status cst;
	enum kh_state ks;
	char where[300], other[64];
	const char *kh;

	/* The configuration, the SSH library, and the source answering. */
	if (ctx_connect(ctx, st) != 0)
		return -1;
	if ((kh = ctx->cfg->known_hosts) == NULL)
		return hsm_fail(st, "bad_value", "no known-hosts file set");
	if (strchr(host, ':') != NULL)
		snprintf(where, sizeof(where), "[%s]:%d", host, port);
	else
		snprintf(where, sizeof(where), "%s:%d", host, port);
	memset(&o, 0, sizeof(o));
	o.host = host;
	o.port = port;
	o.probe = true;
	o.timeout_ms = TARGET_TIMEOUT_MS;
	if (hsm_conn_open(&o, &c, st) != 0)
		return -1;
	snprintf(fp, fplen, "%s", hsm_conn_fingerprint(c));
	hsm_conn_close(&c);
	out_verbose(ctx, "target %s offers host key %s", where, fp);
	if (kh_lookup(kh, host, port, fp, &ks, other, sizeof(other), st) != 0)
		return -1;
	if (ks == KH_MATCH)
		return 0;
	if (ks == KH_OTHER)
		return hsm_fail(st, "host_key_changed", "HOST KEY OF %s HAS "
		    "CHANGED: known %s, offered %s (%s); refusing to go on. If "
		    "the node was really re-keyed, remove its line from %s",
		    where, other, fp, kh, kh);
	if (!ctx->accept_new_host_key)
		return hsm_fail(st, "host_key_unknown", "host key of %s is not "
		    "known (%s); check it and rerun with --accept-new-host-key "
		    "to trust it", where, fp);
	hsm_status_clear(&cst);
	if (ctx_open(ctx, host, port, &c, &cst) == 0)
		hsm_conn_close(&c);
	if (kh_lookup(kh, host, port, fp, &ks, other, sizeof(other), st) != 0)
		return -1;
	if (ks == KH_MATCH) {
		out_verbose(ctx, "recorded host key %s of %s in %s", fp, where,
		    kh);
		return 0;
	}
	if (ks == KH_OTHER)
		return hsm_fail(st, "host_key_changed", "%s offered host key %s, "
		    "then %s; trusting neither (check %s)", where, fp, other,
		    kh);
	if (cst.code[0] != '\0') {
		*st = cst;
		return -1;
	}
	return hsm_fail(st, "internal", "cannot record the host key of %s",
	    where);
}

/* ---- plans: transfer, migrate, status, resume --------------------------- */

static const struct kv_label plan_labels[] = {
	{ "partition", "partition", KV_PLAIN },
	{ "kind", "kind", KV_PLAIN },
	{ "target", "target", KV_PLAIN },
	{ "target_host_key", "target host key", KV_PLAIN },
	{ "step", "step", KV_PLAIN },
	{ "steps", "steps", KV_PLAIN },
	{ "objects", "objects", KV_PLAIN },
	{ "started", "started", KV_TIME },
	{ "updated", "updated", KV_TIME },
	{ "error", "error", KV_PLAIN },
	{ NULL, NULL, 0 },
};

/* "planned > locked > [offered] > ...": the current step marked. */
static char *
steps_line(const cbor_item_t *steps, const char *step)
{
	size_t n, len = 1;
	char *s;

	if (steps == NULL || !cbor_isa_array(steps) ||
	    (n = cbor_array_size(steps)) == 0 || n > 64)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const cbor_item_t *e = cbor_array_handle(steps)[i];

		if (!cbor_isa_string(e) || cbor_string_length(e) > 64)
			return NULL;
		len += cbor_string_length(e) + 5;
	}
	if ((s = malloc(len)) == NULL)
		return NULL;
	s[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		const cbor_item_t *e = cbor_array_handle(steps)[i];
		size_t el = cbor_string_length(e);
		bool cur = step != NULL && strlen(step) == el &&
		    memcmp(step, cbor_string_handle(e), el) == 0;

		snprintf(s + strlen(s), len - strlen(s), "%s%s%.*s%s",
		    i > 0 ? " > " : "", cur ? "[" : "", (int)el,
		    (const char *)cbor_string_handle(e), cur ? "]" : "");
	}
	return s;
}

/* The plan status map: JSON as sent; text in a fixed order. */
static int
show_plan(struct ctx *ctx, const cbor_item_t *res, hsm_status *st)
{
	cbor_item_t *d;
	struct cbor_pair *h;
	char step[65];
	char *line = NULL;
	int e = 0, r;

	if (ctx->output == OUT_JSON)
		return out_result(ctx, res, NULL, st);
	if (!cbor_isa_map(res))
		return hsm_fail(st, "protocol", "the node sent no plan");
	if (!text_of(res, "step", step, sizeof(step)))
		step[0] = '\0';
	if ((d = cbor_new_indefinite_map()) == NULL)
		return oom(st);
	for (const struct kv_label *l = plan_labels; l->key != NULL; l++) {
		const cbor_item_t *v = hsm_map_get(res, l->key);

		if (strcmp(l->key, "steps") == 0) {
			if ((line = steps_line(v, step)) != NULL)
				e |= hsm_map_put_str(d, "steps", line);
		} else if (v != NULL)
			e |= hsm_map_put(d, l->key,
			    cbor_incref((cbor_item_t *)(uintptr_t)v));
	}
	/* Anything a newer node adds, as sent. */
	h = cbor_map_handle(res);
	for (size_t i = 0; i < cbor_map_size(res); i++) {
		char k[64];
		size_t kl;

		if (!cbor_isa_string(h[i].key) ||
		    (kl = cbor_string_length(h[i].key)) >= sizeof(k))
			continue;
		memcpy(k, cbor_string_handle(h[i].key), kl);
		k[kl] = '\0';
		if (hsm_map_get(d, k) == NULL && strcmp(k, "steps") != 0)
			e |= hsm_map_put(d, k, cbor_incref(h[i].value));
	}
	free(line);
	r = e != 0 ? oom(st) : out_result(ctx, d, plan_labels, st);
	cbor_decref(&d);
	return r;
}

/*
 * A plan that failed on its way stays at its step: say how to go on.
 * Not when it did not start: a usage error, a role refused, no such
 * partition or plan, a host key not trusted.  (auth_failed here is the
 * target refusing the source node: the session was open before.)  The
 * node may have said part of it already.
 */
static void
add_hint(const char *p, hsm_status *st)
{
	char m[HSM_MSG_MAX + 300];
	int ex = hsm_code_exit(st->code);
	bool resume = strstr(st->message, "exit resume") != NULL;

	if (ex == HSM_EXIT_USAGE || ex == HSM_EXIT_NOTFOUND ||
	    ex == HSM_EXIT_HOSTKEY || (ex == HSM_EXIT_AUTH &&
	    strcmp(st->code, "auth_failed") != 0) ||
	    strcmp(st->code, "captured") == 0 ||
	    strstr(st->message, "exit status") != NULL)
		return;
	snprintf(m, sizeof(m), "%s; hsmctl exit status %s shows where it "
	    "stopped%s%s%s", st->message, p, resume ? "" : "; hsmctl exit "
	    "resume ", resume ? "" : p, resume ? "" : " continues");
	set_message(st, m);
}

/* transfer (so) and migrate (pso): the same plan, started by another role. */
static int
exit_move(struct ctx *ctx, const struct inv *inv, const char *op,
    hsm_status *st)
{
	const char *p = inv->args[0], *to = inv_opt(inv, "to");
	char host[256], fp[64], q[700];
	cbor_item_t *a = NULL, *res = NULL;
	int port, r = -1;

	if (check_partition(p, st) != 0 ||
	    hsm_parse_hostport(to, host, sizeof(host), &port, st) != 0)
		return -1;
	/* Also when only recording it: the approval binds the host key. */
	if (target_host_key(ctx, host, port, fp, sizeof(fp), st) != 0)
		return -1;
	snprintf(q, sizeof(q), "Move partition %s to %s (host key %s)? Its "
	    "keys leave this cluster. [y/N] ", p, to, fp);
	if (!ctx->capture && !ask_yes(ctx, q, st))
		return -1;
	if ((a = part_args(p, st)) == NULL)
		return -1;
	if (hsm_map_put_str(a, "to", to) != 0 ||
	    hsm_map_put_str(a, "host_key", fp) != 0) {
		oom(st);
		goto out;
	}
	if (ctx_call(ctx, op, a, &res, st) != 0) {
		add_hint(p, st);
		goto out;
	}
	r = show_plan(ctx, res, st);
out:
	if (res != NULL)
		cbor_decref(&res);
	cbor_decref(&a);
	return r;
}

int
cmd_exit_transfer(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	return exit_move(ctx, inv, "exit.transfer", st);
}

int
cmd_exit_migrate(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	return exit_move(ctx, inv, "exit.migrate", st);
}

static int
plan_op(struct ctx *ctx, const struct inv *inv, const char *op, bool hint,
    hsm_status *st)
{
	cbor_item_t *a, *res = NULL;
	int r = -1;

	if ((a = part_args(inv->args[0], st)) == NULL)
		return -1;
	/* Connected first: a failure of the call itself is the plan's. */
	if (ctx_connect(ctx, st) == 0) {
		if (ctx_call(ctx, op, a, &res, st) == 0)
			r = show_plan(ctx, res, st);
		else if (hint)
			add_hint(inv->args[0], st);
	}
	if (res != NULL)
		cbor_decref(&res);
	cbor_decref(&a);
	return r;
}

int
cmd_exit_status(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	return plan_op(ctx, inv, "exit.status", false, st);
}

int
cmd_exit_resume(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	return plan_op(ctx, inv, "exit.resume", true, st);
}

/* ---- export ------------------------------------------------------------- */

enum wrap_kind { W_RSA, W_EC };

/*
 * --wrap-key PUB: a PEM public key, RSA of 2048 bits or more or EC on
 * P-256 or P-384, sent as PEM SubjectPublicKeyInfo text.
 */
static char *
wrap_key_pem(const char *path, EVP_PKEY **keyp, enum wrap_kind *kind,
    hsm_status *st)
{
	BIO *in, *mem = NULL;
	EVP_PKEY *k = NULL;
	char group[64] = "", *pem = NULL;
	const char *why = NULL;
	size_t glen = 0;
	BUF_MEM *bm;

	*keyp = NULL;
	if ((in = BIO_new_file(path, "r")) == NULL) {
		hsm_fail(st, "bad_value", "cannot read --wrap-key %s: %s", path,
		    strerror(errno));
		return NULL;
	}
	k = PEM_read_bio_PUBKEY(in, NULL, NULL, NULL);
	BIO_free(in);
	if (k == NULL) {
		hsm_fail(st, "bad_value", "--wrap-key %s is not a PEM public "
		    "key (openssl pkey -in KEY -pubout makes one)", path);
		return NULL;
	}
	switch (EVP_PKEY_get_base_id(k)) {
	case EVP_PKEY_RSA:
		*kind = W_RSA;
		if (EVP_PKEY_get_bits(k) < 2048 || EVP_PKEY_get_bits(k) > 16384)
			why = "an RSA key of 2048 to 16384 bits";
		break;
	case EVP_PKEY_EC:
		*kind = W_EC;
		if (EVP_PKEY_get_group_name(k, group, sizeof(group),
		    &glen) != 1 || (strcmp(group, "prime256v1") != 0 &&
		    strcmp(group, "secp384r1") != 0))
			why = "an EC key on P-256 or P-384";
		break;
	default:
		why = "an RSA or EC (P-256, P-384) key";
		break;
	}
	if (why != NULL) {
		hsm_fail(st, "bad_value", "--wrap-key %s: the key must be %s",
		    path, why);
		goto fail;
	}
	if ((mem = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_PUBKEY(mem, k) != 1 ||
	    BIO_get_mem_ptr(mem, &bm) != 1 ||
	    (pem = strndup(bm->data, bm->length)) == NULL) {
		oom(st);
		goto fail;
	}
	BIO_free(mem);
	*keyp = k;
	return pem;
fail:
	BIO_free(mem);
	EVP_PKEY_free(k);
	return NULL;
}

struct xkey {
	char id[ID_MAX + 1];
	char type[TYPE_MAX + 1];
	char digest[65];
	const unsigned char *label;	/* in the answer; not NUL-ended */
	size_t labellen;
	unsigned char *pub;		/* DER SPKI; NULL for aes-256 */
	size_t publen;
	const cbor_item_t *kek, *wrapped, *material;	/* in the answer */
};

struct xskip {
	char id[ID_MAX + 1];
	char type[TYPE_MAX + 1];
	char reason[REASON_MAX + 1];
};

/* An exit.export answer, checked. */
struct xport {
	char partition[HSM_NAME_MAX + 1];
	char node[HSM_NAME_MAX + 1];
	char cluster[HSM_NAME_MAX + 1];
	char wrap[40];
	uint64_t created;
	struct xkey *keys;
	size_t nkeys;
	struct xskip *skipped;
	size_t nskipped;
};

static void
xport_free(struct xport *x)
{
	for (size_t i = 0; i < x->nkeys; i++)
		free(x->keys[i].pub);
	free(x->keys);
	free(x->skipped);
	memset(x, 0, sizeof(*x));
}

/* A PEM public key (text) as DER SPKI. */
static int
pem_to_der(const cbor_item_t *v, unsigned char **der, size_t *len)
{
	BIO *b;
	EVP_PKEY *k;
	int n;

	*der = NULL;
	if (v == NULL || !cbor_isa_string(v) || cbor_string_length(v) > 65536 ||
	    (b = BIO_new_mem_buf(cbor_string_handle(v),
	    (int)cbor_string_length(v))) == NULL)
		return -1;
	k = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
	BIO_free(b);
	if (k == NULL)
		return -1;
	n = i2d_PUBKEY(k, der);
	EVP_PKEY_free(k);
	if (n <= 0)
		return -1;
	*len = (size_t)n;
	return 0;
}

/* One key of the answer; what is wrong with it, or NULL. */
static const char *
xkey_parse(const cbor_item_t *m, const struct xport *x, EVP_PKEY *wk,
    enum wrap_kind kind, struct xkey *k)
{
	const cbor_item_t *l;
	bool plain = strcmp(x->wrap, WRAP_PLAIN) == 0;

	if (!cbor_isa_map(m) || !text_of(m, "id", k->id, sizeof(k->id)) ||
	    !id_ok(k->id))
		return "a key without a valid id";
	if (!text_of(m, "type", k->type, sizeof(k->type)) ||
	    !key_obj_type_ok(k->type))
		return "a key of an unknown type";
	if (!text_of(m, "digest", k->digest, sizeof(k->digest)) ||
	    !hex_ok(k->digest, 64) || strspn(k->digest, "0123456789abcdef") !=
	    64)
		return "a key without its SHA-256 digest";
	if ((l = hsm_map_get(m, "label")) != NULL) {
		if (!cbor_isa_string(l) || !cbor_string_is_definite(l))
			return "a label that is not text";
		k->label = cbor_string_handle(l);
		k->labellen = cbor_string_length(l);
	}
	if (strcmp(k->type, "aes-256") == 0) {
		if (hsm_map_get(m, "public_key") != NULL)
			return "a public key for an AES key";
	} else if (pem_to_der(hsm_map_get(m, "public_key"), &k->pub,
	    &k->publen) != 0)
		return "a key without a readable public key";
	k->kek = bytes_of(m, "kek");
	k->wrapped = bytes_of(m, "wrapped");
	k->material = bytes_of(m, "material");
	if (plain) {
		char dg[65];

		if (k->material == NULL || k->kek != NULL || k->wrapped != NULL ||
		    cbor_bytestring_length(k->material) == 0)
			return "a plain export without the key material alone";
		sha256_hex(cbor_bytestring_handle(k->material),
		    cbor_bytestring_length(k->material), dg);
		if (strcmp(dg, k->digest) != 0)
			return "key material that does not match its digest";
		return NULL;
	}
	if (k->material != NULL)
		return "key material in the clear in a wrapped export";
	if (k->kek == NULL || k->wrapped == NULL)
		return "a wrapped key without its kek and wrapped key";
	/* RFC 5649: the 8-byte integrity block, then 8-byte blocks. */
	if (cbor_bytestring_length(k->wrapped) < 16 ||
	    cbor_bytestring_length(k->wrapped) % 8 != 0)
		return "a wrapped key that is not AES key wrap output";
	if (kind == W_RSA) {
		if (cbor_bytestring_length(k->kek) != (size_t)EVP_PKEY_get_size(wk))
			return "a kek that is not an RSA-OAEP block of the wrap key";
	} else {
		const unsigned char *p = cbor_bytestring_handle(k->kek);
		EVP_PKEY *eph = d2i_PUBKEY(NULL, &p,
		    (long)cbor_bytestring_length(k->kek));
		char g1[64] = "", g2[64] = "";
		size_t n;
		bool ok = eph != NULL && p == cbor_bytestring_handle(k->kek) +
		    cbor_bytestring_length(k->kek) &&
		    EVP_PKEY_get_base_id(eph) == EVP_PKEY_EC &&
		    EVP_PKEY_get_group_name(eph, g1, sizeof(g1), &n) == 1 &&
		    EVP_PKEY_get_group_name(wk, g2, sizeof(g2), &n) == 1 &&
		    strcmp(g1, g2) == 0;

		EVP_PKEY_free(eph);
		if (!ok)
			return "a kek that is not an EC public key on the wrap "
			    "key's curve";
	}
	return NULL;
}

/* The exit.export answer into x, every field checked. */
static int
xport_parse(const cbor_item_t *res, const char *part, bool plain,
    EVP_PKEY *wk, enum wrap_kind kind, struct xport *x, hsm_status *st)
{
	const cbor_item_t *keys, *skipped;
	const char *want = plain ? WRAP_PLAIN : kind == W_RSA ? WRAP_RSA :
	    WRAP_EC;
	const char *why;

	memset(x, 0, sizeof(*x));
	if (!text_of(res, "partition", x->partition, sizeof(x->partition)) ||
	    strcmp(x->partition, part) != 0)
		return hsm_fail(st, "protocol", "the node's export is not of "
		    "partition %s", part);
	if (!text_of(res, "node", x->node, sizeof(x->node)) ||
	    !word_ok(x->node, NAME_SET, HSM_NAME_MAX) ||
	    !text_of(res, "cluster", x->cluster, sizeof(x->cluster)) ||
	    !word_ok(x->cluster, NAME_SET, HSM_NAME_MAX) ||
	    !uint_of(res, "created", &x->created))
		return hsm_fail(st, "protocol", "the node's export lacks its "
		    "node, cluster or time");
	if (!text_of(res, "wrap", x->wrap, sizeof(x->wrap)) ||
	    strcmp(x->wrap, want) != 0)
		return hsm_fail(st, "protocol", "the node's export is not "
		    "wrapped as asked (%s)", want);
	if ((keys = hsm_map_get(res, "keys")) == NULL ||
	    !cbor_isa_array(keys) || ((skipped = hsm_map_get(res,
	    "skipped")) != NULL && !cbor_isa_array(skipped)))
		return hsm_fail(st, "protocol", "the node's export has no list "
		    "of keys");
	x->nkeys = cbor_array_size(keys);
	x->nskipped = skipped != NULL ? cbor_array_size(skipped) : 0;
	if ((x->keys = calloc(x->nkeys + 1, sizeof(*x->keys))) == NULL ||
	    (x->skipped = calloc(x->nskipped + 1, sizeof(*x->skipped))) == NULL)
		return oom(st);
	for (size_t i = 0; i < x->nkeys; i++) {
		if ((why = xkey_parse(cbor_array_handle(keys)[i], x, wk, kind,
		    &x->keys[i])) != NULL)
			return hsm_fail(st, strstr(why, "digest") != NULL &&
			    plain ? "integrity" : "protocol", "the node's "
			    "export holds %s (key %zu%s%s)", why, i + 1,
			    x->keys[i].id[0] ? ": " : "", x->keys[i].id);
		for (size_t j = 0; j < i; j++)
			if (strcmp(x->keys[j].id, x->keys[i].id) == 0)
				return hsm_fail(st, "protocol", "the node's "
				    "export holds key %s twice", x->keys[i].id);
	}
	for (size_t i = 0; i < x->nskipped; i++) {
		const cbor_item_t *m = cbor_array_handle(skipped)[i];
		struct xskip *s = &x->skipped[i];
		char *p;

		if (!text_of(m, "id", s->id, sizeof(s->id)) || !id_ok(s->id) ||
		    !text_of(m, "type", s->type, sizeof(s->type)) ||
		    !word_ok(s->type, LOWER_DIGITS "-", TYPE_MAX))
			return hsm_fail(st, "protocol", "the node's export "
			    "skips a key without a valid id or type");
		text_cut(m, "reason", s->reason, sizeof(s->reason));
		if (s->reason[0] == '\0')
			snprintf(s->reason, sizeof(s->reason), "unknown");
		/* The rest of a line: printable ASCII. */
		for (p = s->reason; *p != '\0'; p++)
			if (*p < 0x20 || *p > 0x7e)
				*p = '?';
	}
	return 0;
}

/* A growing text buffer, wiped when it grows or is freed. */
struct tbuf {
	char *p;
	size_t len, cap;
	bool fail;
};

static void
tb_add(struct tbuf *b, const char *s, size_t n)
{
	char *q;
	size_t cap;

	if (b->fail)
		return;
	if (b->len + n + 1 > b->cap) {
		for (cap = b->cap ? b->cap : 4096; cap < b->len + n + 1; cap *= 2)
			;
		if ((q = malloc(cap)) == NULL) {
			b->fail = true;
			return;
		}
		if (b->p != NULL) {
			memcpy(q, b->p, b->len);
			OPENSSL_cleanse(b->p, b->cap);
			free(b->p);
		}
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
tb_fmt(struct tbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
tb_fmt(struct tbuf *b, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		b->fail = true;
	else
		tb_add(b, line, (size_t)n);
}

/* "WORD B64\n", or "WORD\n" for no bytes. */
static void
tb_b64(struct tbuf *b, const char *word, const unsigned char *p, size_t n)
{
	char *s;

	tb_add(b, word, strlen(word));
	if (n > 0) {
		if ((s = b64_encode(p, n)) == NULL) {
			b->fail = true;
			return;
		}
		tb_add(b, " ", 1);
		tb_add(b, s, strlen(s));
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
	tb_add(b, "\n", 1);
}

static void
tb_free(struct tbuf *b)
{
	if (b->p != NULL) {
		OPENSSL_cleanse(b->p, b->cap);
		free(b->p);
	}
	memset(b, 0, sizeof(*b));
}

/* The export file's text (doc/export-format.md). */
static int
xport_text(const struct xport *x, struct tbuf *b)
{
	tb_fmt(b, "%s\npartition %s\nnode %s\ncluster %s\ncreated %llu\n"
	    "wrap %s\n", EXPORT_MAGIC, x->partition, x->node, x->cluster,
	    (unsigned long long)x->created, x->wrap);
	for (size_t i = 0; i < x->nkeys; i++) {
		const struct xkey *k = &x->keys[i];

		tb_fmt(b, "key %s %s %s\n", k->id, k->type, k->digest);
		tb_b64(b, "label", k->label, k->labellen);
		if (k->pub != NULL)
			tb_b64(b, "pub", k->pub, k->publen);
		if (k->material != NULL)
			tb_b64(b, "material", cbor_bytestring_handle(
			    k->material), cbor_bytestring_length(k->material));
		else {
			tb_b64(b, "kek", cbor_bytestring_handle(k->kek),
			    cbor_bytestring_length(k->kek));
			tb_b64(b, "wrapped", cbor_bytestring_handle(k->wrapped),
			    cbor_bytestring_length(k->wrapped));
		}
		tb_add(b, "end\n", 4);
	}
	for (size_t i = 0; i < x->nskipped; i++)
		tb_fmt(b, "skipped %s %s %s\n", x->skipped[i].id,
		    x->skipped[i].type, x->skipped[i].reason);
	tb_fmt(b, "count %zu\n", x->nkeys);
	return b->fail ? -1 : 0;
}

/* Line reader over a text: each line must end with '\n'. */
struct lines {
	const char *t;
	size_t len, off, no;
	const char *l;		/* the current line, not NUL-ended */
	size_t ll;
};

static bool
next_line(struct lines *r)
{
	const char *nl;

	if (r->off >= r->len || (nl = memchr(r->t + r->off, '\n',
	    r->len - r->off)) == NULL)
		return false;
	r->l = r->t + r->off;
	r->ll = (size_t)(nl - r->l);
	r->off += r->ll + 1;
	r->no++;
	return true;
}

/* The current line is "WORD" or "WORD VALUE": *val (NULL for "WORD"). */
static bool
line_is(const struct lines *r, const char *word, const char **val,
    size_t *vlen)
{
	size_t wl = strlen(word);

	if (r->ll < wl || memcmp(r->l, word, wl) != 0)
		return false;
	if (r->ll == wl) {
		*val = NULL;
		*vlen = 0;
		return true;
	}
	if (r->l[wl] != ' ')
		return false;
	*val = r->l + wl + 1;
	*vlen = r->ll - wl - 1;
	return true;
}

/* The current line is exactly "WORD VALUE". */
static bool
line_eq(const struct lines *r, const char *word, const char *value)
{
	const char *v;
	size_t vl;

	return line_is(r, word, &v, &vl) && v != NULL && vl == strlen(value) &&
	    memcmp(v, value, vl) == 0;
}

/* The current line is "WORD B64" of exactly these bytes ("WORD" for none). */
static bool
line_b64(const struct lines *r, const char *word, const unsigned char *p,
    size_t n)
{
	const char *v;
	size_t vl;

	if (!line_is(r, word, &v, &vl))
		return false;
	if (v == NULL)
		return n == 0;
	return vl > 0 && b64_eq(v, vl, p, n);
}

/*
 * Read the file as written back and check it against the answer: the
 * header, every key record (id, type and digest as sent, every field
 * decoding to the bytes sent), the skipped keys, the count, nothing more.
 */
static int
xport_check(const char *path, const char *t, size_t len, const struct xport *x,
    hsm_status *st)
{
	struct lines r = { .t = t, .len = len };
	char num[32], head[ID_MAX + TYPE_MAX + 70];
	size_t i = 0, j = 0;
	const char *what;

	snprintf(num, sizeof(num), "%llu", (unsigned long long)x->created);
	what = "its header";
	if (!next_line(&r) || r.ll != strlen(EXPORT_MAGIC) ||
	    memcmp(r.l, EXPORT_MAGIC, r.ll) != 0 ||
	    !next_line(&r) || !line_eq(&r, "partition", x->partition) ||
	    !next_line(&r) || !line_eq(&r, "node", x->node) ||
	    !next_line(&r) || !line_eq(&r, "cluster", x->cluster) ||
	    !next_line(&r) || !line_eq(&r, "created", num) ||
	    !next_line(&r) || !line_eq(&r, "wrap", x->wrap))
		goto bad;
	if (!next_line(&r))
		goto cut;
	for (; i < x->nkeys; i++) {
		const struct xkey *k = &x->keys[i];

		snprintf(head, sizeof(head), "%s %s %s", k->id, k->type,
		    k->digest);
		what = "a key record";
		if (!line_eq(&r, "key", head))
			goto bad;
		what = "the label of a key";
		if (!next_line(&r) || !line_b64(&r, "label", k->label,
		    k->labellen))
			goto bad;
		what = "the public key of a key";
		if (k->pub != NULL && (!next_line(&r) ||
		    !line_b64(&r, "pub", k->pub, k->publen)))
			goto bad;
		what = "the key material";
		if (k->material != NULL && (!next_line(&r) ||
		    !line_b64(&r, "material", cbor_bytestring_handle(
		    k->material), cbor_bytestring_length(k->material))))
			goto bad;
		what = "the kek or wrapped key";
		if (k->material == NULL && (!next_line(&r) ||
		    !line_b64(&r, "kek", cbor_bytestring_handle(k->kek),
		    cbor_bytestring_length(k->kek)) || !next_line(&r) ||
		    !line_b64(&r, "wrapped", cbor_bytestring_handle(k->wrapped),
		    cbor_bytestring_length(k->wrapped))))
			goto bad;
		what = "the end of a key record";
		if (!next_line(&r) || r.ll != 3 || memcmp(r.l, "end", 3) != 0)
			goto bad;
		if (!next_line(&r))
			goto cut;
	}
	for (; j < x->nskipped; j++) {
		const struct xskip *s = &x->skipped[j];
		char line[ID_MAX + TYPE_MAX + REASON_MAX + 4];

		snprintf(line, sizeof(line), "%s %s %s", s->id, s->type,
		    s->reason);
		what = "a skipped key";
		if (!line_eq(&r, "skipped", line))
			goto bad;
		if (!next_line(&r))
			goto cut;
	}
	snprintf(num, sizeof(num), "%zu", x->nkeys);
	what = "the count";
	if (!line_eq(&r, "count", num))
		goto bad;
	if (r.off != r.len) {
		what = "what follows the count";
		r.no++;
		goto bad;
	}
	return 0;
bad:
	return hsm_fail(st, "integrity", "%s, read back: line %zu is not %s "
	    "as the node sent it (key %zu of %zu)", path, r.no, what,
	    i < x->nkeys ? i + 1 : x->nkeys, x->nkeys);
cut:
	return hsm_fail(st, "integrity", "%s, read back: it ends at line %zu, "
	    "before its count", path, r.no);
}

int
cmd_exit_export(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "partition", "partition", KV_PLAIN },
		{ "file", "file", KV_PLAIN },
		{ "wrap", "wrap", KV_PLAIN },
		{ "exported", "exported", KV_PLAIN },
		{ "skipped", "skipped", KV_PLAIN },
		{ "deleted", "deleted", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	static const struct kv_label skip_cols[] = {
		{ "id", "SKIPPED", KV_PLAIN },
		{ "type", "TYPE", KV_PLAIN },
		{ "reason", "REASON", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	const char *p = inv->args[0], *out = inv_opt(inv, "out");
	bool plain = inv_opt(inv, "plain") != NULL;
	bool del = inv_opt(inv, "delete") != NULL;
	struct outfile f = { .fd = -1 };
	struct xport x;
	struct tbuf b = { 0 };
	enum wrap_kind kind = W_RSA;
	EVP_PKEY *wk = NULL;
	unsigned char *back = NULL;
	size_t backlen = 0;
	uint64_t deleted = 0;
	cbor_item_t *a = NULL, *res = NULL, *ids = NULL, *dres = NULL;
	cbor_item_t *show = NULL, *sk = NULL;
	char *pem = NULL;
	int r = -1;

	memset(&x, 0, sizeof(x));
	if ((a = part_args(p, st)) == NULL)
		return -1;
	if ((pem = wrap_key_pem(inv_opt(inv, "wrap-key"), &wk, &kind,
	    st)) == NULL)
		goto out;
	/* The file first: an existing one is refused before anything is sent. */
	if (!ctx->capture && outfile_open(&f, out, st) != 0)
		goto out;
	if (hsm_map_put_str(a, "wrap_key", pem) != 0 ||
	    hsm_map_put_bool(a, "plain", plain) != 0) {
		oom(st);
		goto out;
	}
	if (ctx_call(ctx, "exit.export", a, &res, st) != 0 ||
	    xport_parse(res, p, plain, wk, kind, &x, st) != 0)
		goto out;
	if (xport_text(&x, &b) != 0) {
		oom(st);
		goto out;
	}
	if (outfile_commit(&f, b.p, b.len, st) != 0)
		goto out;
	if (read_small(out, "integrity", &back, &backlen, st) != 0 ||
	    xport_check(out, (const char *)back, backlen, &x, st) != 0) {
		if (del)
			snprintf(st->message + strlen(st->message),
			    sizeof(st->message) - strlen(st->message), "; no "
			    "key was deleted");
		goto out;
	}
	/* Only now, with the file safe, the keys it holds may go. */
	if (del && x.nkeys > 0) {
		cbor_item_t *da;

		if ((ids = cbor_new_indefinite_array()) == NULL) {
			oom(st);
			goto out;
		}
		for (size_t i = 0; i < x.nkeys; i++)
			if (!cbor_array_push(ids, cbor_move(cbor_build_string(
			    x.keys[i].id)))) {
				oom(st);
				goto out;
			}
		if ((da = part_args(p, st)) == NULL)
			goto out;
		if (hsm_map_put(da, "ids", cbor_incref(ids)) != 0) {
			cbor_decref(&da);
			oom(st);
			goto out;
		}
		if (ctx_call(ctx, "exit.export_delete", da, &dres, st) != 0) {
			char m[HSM_MSG_MAX + PATH_MAX_LEN + 100];

			cbor_decref(&da);
			snprintf(m, sizeof(m), "the keys are exported to %s, but "
			    "deleting them failed: %s", out, st->message);
			set_message(st, m);
			goto out;
		}
		cbor_decref(&da);
		if (!uint_of(dres, "deleted", &deleted))
			deleted = 0;
	}
	/* What was done: JSON the whole of it, text a summary and a table. */
	if ((show = cbor_new_indefinite_map()) == NULL ||
	    (sk = cbor_new_indefinite_array()) == NULL)
		goto oom;
	for (size_t i = 0; i < x.nskipped; i++) {
		cbor_item_t *m = cbor_new_indefinite_map();
		bool ok = m != NULL &&
		    hsm_map_put_str(m, "id", x.skipped[i].id) == 0 &&
		    hsm_map_put_str(m, "type", x.skipped[i].type) == 0 &&
		    hsm_map_put_str(m, "reason", x.skipped[i].reason) == 0 &&
		    cbor_array_push(sk, m);

		if (m != NULL)
			cbor_decref(&m);
		if (!ok)
			goto oom;
	}
	if (hsm_map_put_str(show, "partition", p) != 0 ||
	    hsm_map_put_str(show, "file", out) != 0 ||
	    hsm_map_put_str(show, "wrap", x.wrap) != 0 ||
	    hsm_map_put_uint(show, "exported", x.nkeys) != 0)
		goto oom;
	if (ctx->output == OUT_JSON) {
		cbor_item_t *list = cbor_new_indefinite_array();

		for (size_t i = 0; list != NULL && i < x.nkeys; i++)
			if (!cbor_array_push(list, cbor_move(cbor_build_string(
			    x.keys[i].id))))
				cbor_decref(&list);
		if (list == NULL || hsm_map_put(show, "ids", list) != 0 ||
		    hsm_map_put(show, "skipped", cbor_incref(sk)) != 0)
			goto oom;
	} else if (hsm_map_put_uint(show, "skipped", x.nskipped) != 0)
		goto oom;
	if (del && hsm_map_put_uint(show, "deleted", deleted) != 0)
		goto oom;
	r = out_result(ctx, show, labels, st);
	if (r == 0 && ctx->output == OUT_TEXT && x.nskipped > 0) {
		printf("\n");
		r = out_table(ctx, sk, skip_cols, st);
	}
	goto out;
oom:
	oom(st);
out:
	outfile_abort(&f);
	if (back != NULL) {
		OPENSSL_cleanse(back, backlen);
		free(back);
	}
	tb_free(&b);
	/* Keys in the clear (--plain): wiped in the answer too. */
	for (size_t i = 0; i < x.nkeys; i++)
		if (x.keys[i].material != NULL)
			OPENSSL_cleanse(cbor_bytestring_handle(x.keys[i].material),
			    cbor_bytestring_length(x.keys[i].material));
	xport_free(&x);
	if (sk != NULL)
		cbor_decref(&sk);
	if (show != NULL)
		cbor_decref(&show);
	if (dres != NULL)
		cbor_decref(&dres);
	if (ids != NULL)
		cbor_decref(&ids);
	if (res != NULL)
		cbor_decref(&res);
	free(pem);
	EVP_PKEY_free(wk);
	cbor_decref(&a);
	return r;
}

/* ---- deletion certificates ---------------------------------------------- */

/* The file's base64 field key, decoded; NULL if absent or not canonical. */
static unsigned char *
json_b64(const json_t *cert, const char *key, size_t *len)
{
	const json_t *v = json_object_get(cert, key);
	unsigned char *p;

	if (!json_is_string(v) || b64_decode(json_string_value(v),
	    json_string_length(v), &p, len) != 0)
		return NULL;
	return p;
}

/*
 * Check a certificate: its format, the Ed25519 signature over the
 * statement's bytes by its cluster_key (which must be want_hex when
 * given), the statement a CBOR map of the right type, and the readable
 * "contents" equal to the statement decoded.  Every failure is
 * "integrity".  On success *stmt is the statement decoded.
 */
static int
cert_check(const json_t *cert, const char *want_hex, cbor_item_t **stmt,
    char keyhex[65], hsm_status *st)
{
	unsigned char key[32], want[32], *s = NULL, *sig = NULL;
	size_t slen = 0, siglen = 0;
	const json_t *v;
	EVP_PKEY *pk = NULL;
	EVP_MD_CTX *md = NULL;
	cbor_item_t *item = NULL;
	json_t *j = NULL;
	char type[64];
	hsm_status dst;
	int r = -1;

	*stmt = NULL;
	if (!json_is_object(cert) || !json_is_string(v = json_object_get(cert,
	    "format")) || strcmp(json_string_value(v), CERT_FORMAT) != 0)
		return hsm_fail(st, "integrity", "not a deletion certificate "
		    "(no \"format\": \"%s\")", CERT_FORMAT);
	if (!json_is_string(v = json_object_get(cert, "cluster_key")) ||
	    !hex_ok(json_string_value(v), 64))
		return hsm_fail(st, "integrity", "the certificate has no "
		    "cluster_key of 64 hex digits");
	snprintf(keyhex, 65, "%s", json_string_value(v));
	unhex(keyhex, key, sizeof(key));
	if (want_hex != NULL) {
		unhex(want_hex, want, sizeof(want));
		if (memcmp(key, want, sizeof(key)) != 0)
			return hsm_fail(st, "integrity", "the certificate is "
			    "signed by cluster key %s, not by the one given "
			    "(--cluster-key)", keyhex);
	}
	if ((s = json_b64(cert, "statement", &slen)) == NULL || slen == 0 ||
	    (sig = json_b64(cert, "signature", &siglen)) == NULL) {
		hsm_fail(st, "integrity", "the certificate's statement or "
		    "signature is missing or not base64");
		goto out;
	}
	if (siglen != 64 || (pk = EVP_PKEY_new_raw_public_key(
	    EVP_PKEY_ED25519, NULL, key, sizeof(key))) == NULL ||
	    (md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk) != 1 ||
	    EVP_DigestVerify(md, sig, siglen, s, slen) != 1) {
		hsm_fail(st, "integrity", "the certificate's signature does not "
		    "verify (altered, or not signed by cluster key %s)", keyhex);
		goto out;
	}
	if (hsm_cbor_decode(s, slen, &item, &dst) != 0 ||
	    !cbor_isa_map(item) || !text_of(item, "type", type,
	    sizeof(type)) || strcmp(type, CERT_FORMAT) != 0) {
		hsm_fail(st, "integrity", "the signed statement is not a "
		    "deletion statement (a CBOR map of type %s)", CERT_FORMAT);
		goto out;
	}
	if ((j = out_cbor_to_json(item)) == NULL ||
	    !json_equal(j, json_object_get(cert, "contents"))) {
		hsm_fail(st, "integrity", "the certificate's \"contents\" differ "
		    "from its signed statement");
		goto out;
	}
	*stmt = item;
	item = NULL;
	r = 0;
out:
	json_decref(j);
	if (item != NULL)
		cbor_decref(&item);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pk);
	free(s);
	free(sig);
	return r;
}

/* The statement for a person: fixed order, then a table of the keys. */
static int
show_statement(struct ctx *ctx, const char *file, const char *keyhex,
    const cbor_item_t *stmt, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "file", "file", KV_PLAIN },
		{ "verified", "verified", KV_PLAIN },
		{ "cluster_key", "cluster key", KV_PLAIN },
		{ "partition", "partition", KV_PLAIN },
		{ "node", "node", KV_PLAIN },
		{ "cluster", "cluster", KV_PLAIN },
		{ "cluster_id", "cluster id", KV_PLAIN },
		{ "time", "deleted at", KV_TIME },
		{ "officers", "officers", KV_PLAIN },
		{ "seq", "sequence", KV_PLAIN },
		{ "keys", "keys", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	static const struct kv_label key_cols[] = {
		{ "id", "KEY", KV_PLAIN },
		{ "type", "TYPE", KV_PLAIN },
		{ "digest", "SHA-256", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	const cbor_item_t *keys = hsm_map_get(stmt, "keys");
	struct cbor_pair *h = cbor_map_handle(stmt);
	cbor_item_t *d = cbor_new_indefinite_map();
	int e = 0, r;

	if (d == NULL)
		return oom(st);
	if (ctx->output == OUT_JSON) {
		e |= hsm_map_put_str(d, "file", file);
		e |= hsm_map_put_bool(d, "verified", true);
		e |= hsm_map_put_str(d, "cluster_key", keyhex);
		e |= hsm_map_put(d, "contents",
		    cbor_incref((cbor_item_t *)(uintptr_t)stmt));
		r = e != 0 ? oom(st) : out_result(ctx, d, NULL, st);
		cbor_decref(&d);
		return r;
	}
	e |= hsm_map_put_str(d, "file", file);
	e |= hsm_map_put_str(d, "verified", "yes: signed by the cluster key, "
	    "contents as signed");
	e |= hsm_map_put_str(d, "cluster_key", keyhex);
	for (const struct kv_label *l = labels + 3; l->key != NULL; l++) {
		const cbor_item_t *v = hsm_map_get(stmt, l->key);

		if (v == NULL)
			continue;
		if (strcmp(l->key, "keys") == 0 && cbor_isa_array(v))
			e |= hsm_map_put_uint(d, "keys", cbor_array_size(v));
		else
			e |= hsm_map_put(d, l->key,
			    cbor_incref((cbor_item_t *)(uintptr_t)v));
	}
	for (size_t i = 0; i < cbor_map_size(stmt); i++) {
		char k[64];
		size_t kl;

		if (!cbor_isa_string(h[i].key) ||
		    (kl = cbor_string_length(h[i].key)) >= sizeof(k))
			continue;
		memcpy(k, cbor_string_handle(h[i].key), kl);
		k[kl] = '\0';
		if (hsm_map_get(d, k) == NULL && strcmp(k, "type") != 0)
			e |= hsm_map_put(d, k, cbor_incref(h[i].value));
	}
	r = e != 0 ? oom(st) : out_result(ctx, d, labels, st);
	cbor_decref(&d);
	if (r == 0 && keys != NULL && cbor_isa_array(keys) &&
	    cbor_array_size(keys) > 0) {
		printf("\n");
		r = out_table(ctx, keys, key_cols, st);
	}
	return r;
}

int
cmd_exit_verify_certificate(struct ctx *ctx, const struct inv *inv,
    hsm_status *st)
{
	const char *file = inv->args[0], *want = inv_opt(inv, "cluster-key");
	unsigned char *buf = NULL;
	size_t len = 0;
	json_t *cert = NULL;
	json_error_t je;
	cbor_item_t *stmt = NULL;
	char keyhex[65];
	int r = -1;

	if (want != NULL && !hex_ok(want, 64))
		return hsm_fail(st, "bad_value", "--cluster-key takes the 64 "
		    "hex digits node info shows");
	/* Offline: no configuration, no node; every failure is exit 8. */
	if (read_small(file, "integrity", &buf, &len, st) != 0)
		return -1;
	if ((cert = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES,
	    &je)) == NULL) {
		hsm_fail(st, "integrity", "%s is not a deletion certificate: "
		    "line %d: %s", file, je.line, je.text);
		goto out;
	}
	if (cert_check(cert, want, &stmt, keyhex, st) != 0) {
		char m[HSM_MSG_MAX + PATH_MAX_LEN + 10];

		snprintf(m, sizeof(m), "%.4096s: %s", file, st->message);
		set_message(st, m);
		goto out;
	}
	r = show_statement(ctx, file, keyhex, stmt, st);
out:
	if (stmt != NULL)
		cbor_decref(&stmt);
	json_decref(cert);
	free(buf);
	return r;
}

/* The certificate file's JSON from the exit.delete answer; NULL: oom. */
static json_t *
cert_json(const cbor_item_t *c, hsm_status *st)
{
	const cbor_item_t *s = bytes_of(c, "statement");
	const cbor_item_t *sig = bytes_of(c, "signature");
	cbor_item_t *item = NULL;
	char key[65], *s64 = NULL, *sig64 = NULL;
	hsm_status dst;
	json_t *contents = NULL, *j = NULL;

	if (s == NULL || sig == NULL || !text_of(c, "cluster_key", key,
	    sizeof(key))) {
		hsm_fail(st, "protocol", "the node sent no certificate (its "
		    "statement, signature and cluster_key)");
		return NULL;
	}
	if ((s64 = b64_encode(cbor_bytestring_handle(s),
	    cbor_bytestring_length(s))) == NULL ||
	    (sig64 = b64_encode(cbor_bytestring_handle(sig),
	    cbor_bytestring_length(sig))) == NULL)
		goto oom;
	/* A statement that does not decode still goes into the file. */
	if (hsm_cbor_decode(cbor_bytestring_handle(s),
	    cbor_bytestring_length(s), &item, &dst) == 0)
		contents = out_cbor_to_json(item);
	if (contents == NULL && (contents = json_object()) == NULL)
		goto oom;
	j = json_pack("{s:s,s:s,s:s,s:s,s:o}", "format", CERT_FORMAT,
	    "statement", s64, "signature", sig64, "cluster_key", key,
	    "contents", contents);
	contents = NULL;	/* json_pack took it, also on failure */
	if (j == NULL)
		goto oom;
	goto out;
oom:
	oom(st);
out:
	json_decref(contents);
	if (item != NULL)
		cbor_decref(&item);
	free(s64);
	free(sig64);
	return j;
}

int
cmd_exit_delete(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "partition", "partition", KV_PLAIN },
		{ "keys", "keys deleted", KV_PLAIN },
		{ "certificate", "certificate", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	const char *p = inv->args[0], *out = inv_opt(inv, "out");
	struct outfile f = { .fd = -1 };
	cbor_item_t *a = NULL, *res = NULL, *stmt = NULL, *show = NULL;
	const cbor_item_t *c;
	json_t *cert = NULL;
	hsm_status cst;
	uint64_t nkeys = 0;
	char q[200], keyhex[65], *text = NULL;
	bool good;
	int r = -1;

	if ((a = part_args(p, st)) == NULL)
		return -1;
	/* Recording it for an approval deletes nothing: no question, no file. */
	if (!ctx->capture) {
		if (out != NULL && outfile_open(&f, out, st) != 0)
			goto out;
		snprintf(q, sizeof(q), "Delete partition %s, its keys and its "
		    "records, for good? [y/N] ", p);
		if (!ask_yes(ctx, q, st))
			goto out;
	}
	if (ctx_call(ctx, "exit.delete", a, &res, st) != 0)
		goto out;
	if (!uint_of(res, "keys", &nkeys))
		nkeys = 0;
	if ((c = hsm_map_get(res, "certificate")) == NULL || !cbor_isa_map(c)) {
		hsm_fail(st, "protocol", "partition %s was deleted, but the node "
		    "sent no certificate", p);
		goto out;
	}
	if ((cert = cert_json(c, st)) == NULL)
		goto out;
	/* Checked here too; kept even if not good: it is the only copy. */
	hsm_status_clear(&cst);
	good = cert_check(cert, NULL, &stmt, keyhex, &cst) == 0;
	if ((text = json_dumps(cert, JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII |
	    (out != NULL || ctx->output == OUT_TEXT ? JSON_INDENT(2) :
	    JSON_COMPACT))) == NULL) {
		oom(st);
		goto out;
	}
	if (out != NULL) {
		size_t tl = strlen(text);

		text[tl] = '\n';	/* json_dumps left room: the NUL */
		r = outfile_commit(&f, text, tl + 1, st);
		text[tl] = '\0';
		if (r != 0) {
			/* Not lost: on stdout instead. */
			printf("%s\n", text);
			goto out;
		}
		r = -1;
	} else {
		if (ctx->output == OUT_TEXT && !ctx->quiet)
			fprintf(stderr, "hsmctl: partition %s deleted (%llu "
			    "keys); its deletion certificate follows\n", p,
			    (unsigned long long)nkeys);
		printf("%s\n", text);
	}
	if (!good) {
		hsm_fail(st, "integrity", "the node's deletion certificate does "
		    "not check (%s); kept %s", cst.message, out != NULL ? out :
		    "on the standard output");
		goto out;
	}
	if (out == NULL) {
		r = 0;
		goto out;
	}
	if ((show = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(show, "partition", p) != 0 ||
	    hsm_map_put_uint(show, "keys", nkeys) != 0 ||
	    hsm_map_put_str(show, "certificate", out) != 0) {
		oom(st);
		goto out;
	}
	r = out_result(ctx, show, labels, st);
out:
	outfile_abort(&f);
	free(text);
	json_decref(cert);
	if (show != NULL)
		cbor_decref(&show);
	if (stmt != NULL)
		cbor_decref(&stmt);
	if (res != NULL)
		cbor_decref(&res);
	cbor_decref(&a);
	return r;
}
