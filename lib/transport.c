/*
 * SSH client transport (libssh2): connect, check the node's host key
 * against known_hosts, authenticate with the terminal key, open the
 * hsm-admin subsystem, and move frames.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libssh2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "hsmctl.h"

#define DEFAULT_TIMEOUT_MS 5000
/* A reply may take a while (a durable commit, a backup); a dead node not. */
#define REPLY_TIMEOUT_MS 120000
#define CHANNEL_WINDOW (32u * 1024 * 1024)
#define SSH_USER "hsmctl"

struct hsm_conn {
	int fd;
	LIBSSH2_SESSION *sess;
	LIBSSH2_CHANNEL *chan;
	LIBSSH2_KNOWNHOSTS *kh;
	bool up;		/* handshake done: there is a peer to tell */
	uint64_t next_id;
	char where[300];	/* "HOST:PORT" for messages */
	char fp[64];
};

int
hsm_init(hsm_status *st)
{
	if (libssh2_init(0) != 0)
		return hsm_fail(st, "internal", "cannot initialise libssh2");
	return 0;
}

void
hsm_cleanup(void)
{
	libssh2_exit();
}

static int
tcp_connect(const char *host, int port, int timeout_ms, const char *where,
    hsm_status *st)
{
	struct addrinfo hints, *res = NULL, *ai;
	char portstr[16];
	int fd = -1, err = 0, gai;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%d", port);
	if ((gai = getaddrinfo(host, portstr, &hints, &res)) != 0)
		return hsm_fail(st, "connect_failed", "cannot resolve %s: %s",
		    host, gai_strerror(gai));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		struct pollfd pfd;
		socklen_t len = sizeof(err);
		int fl;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		/* Non-blocking connect, so a black hole costs timeout_ms. */
		fl = fcntl(fd, F_GETFL);
		if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
			err = errno;
			goto next;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
			if (errno != EINPROGRESS) {
				err = errno;
				goto next;
			}
			pfd.fd = fd;
			pfd.events = POLLOUT;
			if (poll(&pfd, 1, timeout_ms) <= 0) {
				err = ETIMEDOUT;
				goto next;
			}
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err,
			    &len) != 0 || err != 0) {
				if (err == 0)
					err = errno;
				goto next;
			}
		}
		if (fcntl(fd, F_SETFL, fl) < 0) {
			err = errno;
			goto next;
		}
		freeaddrinfo(res);
		return fd;
next:
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return hsm_fail(st, err == ETIMEDOUT ? "timeout" : "connect_failed",
	    "cannot connect to %s: %s", where, strerror(err));
}

static const char *
ssh_error(LIBSSH2_SESSION *sess)
{
	char *msg = NULL;

	libssh2_session_last_error(sess, &msg, NULL, 0);
	return msg != NULL ? msg : "unknown error";
}

static int
knownhost_keybit(int type)
{
	switch (type) {
	case LIBSSH2_HOSTKEY_TYPE_RSA:
		return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
	case LIBSSH2_HOSTKEY_TYPE_ED25519:
		return LIBSSH2_KNOWNHOST_KEY_ED25519;
	default:
		return 0;
	}
}

/* Fingerprint of a known_hosts entry, whose key is kept in base64. */
static void
entry_fingerprint(const struct libssh2_knownhost *e, char *out, size_t outlen)
{
	size_t b64len = e->key != NULL ? strlen(e->key) : 0;
	unsigned char *blob = NULL;
	int n;

	snprintf(out, outlen, "(unreadable)");
	if (b64len == 0 || b64len > 16384 || b64len % 4 != 0)
		return;
	if ((blob = malloc(b64len)) == NULL)
		return;
	n = EVP_DecodeBlock(blob, (const unsigned char *)e->key, (int)b64len);
	if (n > 0) {
		/* EVP_DecodeBlock counts the padding as zero bytes. */
		if (e->key[b64len - 1] == '=')
			n--;
		if (e->key[b64len - 2] == '=')
			n--;
		hsm_fingerprint(blob, (size_t)n, out, outlen, NULL);
	}
	free(blob);
}

/* Append one line to known_hosts, creating it (and its directory) 0600. */
static int
known_hosts_append(const char *path, const char *line, size_t len,
    hsm_status *st)
{
	char dir[4096];
	char *slash;
	int fd, r = -1;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return hsm_fail(st, "bad_value", "known-hosts path too long");
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST)
			return hsm_fail(st, "io", "cannot create %s: %s", dir,
			    strerror(errno));
	}
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return hsm_fail(st, "io", "cannot open %s: %s", path,
		    strerror(errno));
	if (hsm_write_all(fd, line, len) != 0) {
		hsm_fail(st, "io", "cannot write %s: %s", path,
		    strerror(errno));
		goto out;
	}
	if (fsync(fd) != 0) {
		hsm_fail(st, "io", "cannot sync %s: %s", path, strerror(errno));
		goto out;
	}
	r = 0;
out:
	close(fd);
	return r;
}

static int
check_host_key(struct hsm_conn *c, const struct hsm_conn_opts *o,
    hsm_status *st)
{
	LIBSSH2_KNOWNHOSTS *kh = NULL;
	struct libssh2_knownhost *found = NULL, *added = NULL;
	const char *key;
	size_t keylen;
	int type, bit, rc, r = -1;
	char name[300], oldfp[64], line[8192];
	size_t linelen;

	if ((key = libssh2_session_hostkey(c->sess, &keylen, &type)) == NULL)
		return hsm_fail(st, "protocol", "%s sent no host key", c->where);
	if (hsm_fingerprint((const unsigned char *)key, keylen, c->fp,
	    sizeof(c->fp), st) != 0)
		return -1;
	if ((bit = knownhost_keybit(type)) == 0)
		return hsm_fail(st, "protocol", "%s offered an unsupported "
		    "host key type", c->where);
	if (o->probe)
		return 0;
	if (o->pinned_fp != NULL) {
		if (strcmp(o->pinned_fp, c->fp) == 0)
			return 0;
		return hsm_fail(st, "host_key_changed", "host key of %s is "
		    "%s, not the pinned %s; refusing to connect", c->where,
		    c->fp, o->pinned_fp);
	}
	kh = c->kh;
	rc = libssh2_knownhost_checkp(kh, o->host, o->port, key, keylen,
	    LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | bit,
	    &found);
	switch (rc) {
	case LIBSSH2_KNOWNHOST_CHECK_MATCH:
		r = 0;
		break;
	case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
		entry_fingerprint(found, oldfp, sizeof(oldfp));
		hsm_fail(st, "host_key_changed", "HOST KEY OF %s HAS CHANGED: "
		    "known %s, offered %s (%s); refusing to connect. If the "
		    "node was really re-keyed, remove its line from %s",
		    c->where, oldfp, c->fp, o->known_hosts, o->known_hosts);
		break;
	case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
		if (!o->accept_new_host_key) {
			hsm_fail(st, "host_key_unknown", "host key of %s is "
			    "not known (%s); check it and rerun with "
			    "--accept-new-host-key to trust it", c->where,
			    c->fp);
			break;
		}
		/* OpenSSH's convention: a non-default port is "[host]:port". */
		if (o->port == 22)
			snprintf(name, sizeof(name), "%s", o->host);
		else
			snprintf(name, sizeof(name), "[%s]:%d", o->host,
			    o->port);
		if (libssh2_knownhost_addc(kh, name, NULL, key, keylen, NULL, 0,
		    LIBSSH2_KNOWNHOST_TYPE_PLAIN |
		    LIBSSH2_KNOWNHOST_KEYENC_RAW | bit, &added) != 0 ||
		    libssh2_knownhost_writeline(kh, added, line, sizeof(line),
		    &linelen, LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0) {
			hsm_fail(st, "internal", "cannot record host key");
			break;
		}
		/* writeline may or may not end the line; the file needs it. */
		if (linelen == 0 || line[linelen - 1] != '\n') {
			if (linelen + 1 >= sizeof(line)) {
				hsm_fail(st, "internal", "host key too long");
				break;
			}
			line[linelen++] = '\n';
		}
		r = known_hosts_append(o->known_hosts, line, linelen, st);
		break;
	default:
		hsm_fail(st, "internal", "cannot check host key of %s",
		    c->where);
		break;
	}
	return r;
}

/* Read known_hosts before connecting: a bad file means nothing is sent. */
static int
load_known_hosts(struct hsm_conn *c, const char *path, hsm_status *st)
{
	if ((c->kh = libssh2_knownhost_init(c->sess)) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (access(path, F_OK) != 0)
		return 0;	/* first use: an empty list */
	if (libssh2_knownhost_readfile(c->kh, path,
	    LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0)
		return hsm_fail(st, "config_io", "cannot read known hosts "
		    "file %s: %s", path, access(path, R_OK) != 0 ?
		    strerror(errno) : "not in OpenSSH known_hosts format");
	return 0;
}

int
hsm_conn_open(const struct hsm_conn_opts *o, struct hsm_conn **out,
    hsm_status *st)
{
	struct hsm_conn *c;
	int timeout = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	const char *user = o->user != NULL ? o->user : SSH_USER;

	*out = NULL;
	/* Local problems first: nothing is sent if they fail. */
	if (!o->probe && (o->terminal_key == NULL ||
	    access(o->terminal_key, R_OK) != 0))
		return hsm_fail(st, "no_terminal_key", "cannot read terminal "
		    "key %s: %s (create one with ssh-keygen -t ed25519 and "
		    "have it authorised with hsmd authorize)",
		    o->terminal_key != NULL ? o->terminal_key : "(none)",
		    o->terminal_key != NULL ? strerror(errno) : "not set");
	if (o->known_hosts == NULL && o->pinned_fp == NULL && !o->probe)
		return hsm_fail(st, "bad_value", "no known-hosts file set");
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	c->fd = -1;
	if (strchr(o->host, ':') != NULL)
		snprintf(c->where, sizeof(c->where), "[%s]:%d", o->host,
		    o->port);
	else
		snprintf(c->where, sizeof(c->where), "%s:%d", o->host, o->port);
	if ((c->sess = libssh2_session_init()) == NULL) {
		hsm_fail(st, "no_memory", "cannot create SSH session");
		goto fail;
	}
	if (o->pinned_fp == NULL && !o->probe && load_known_hosts(c,
	    o->known_hosts, st) != 0)
		goto fail;
	if ((c->fd = tcp_connect(o->host, o->port, timeout, c->where,
	    st)) < 0)
		goto fail;
	libssh2_session_set_blocking(c->sess, 1);
	libssh2_session_set_timeout(c->sess, timeout);
	if (libssh2_session_method_pref(c->sess, LIBSSH2_METHOD_HOSTKEY,
	    "ssh-ed25519") != 0) {
		hsm_fail(st, "internal", "libssh2 lacks ssh-ed25519");
		goto fail;
	}
	if (libssh2_session_handshake(c->sess, c->fd) != 0) {
		hsm_fail(st, "connect_failed", "SSH handshake with %s failed: "
		    "%s", c->where, ssh_error(c->sess));
		goto fail;
	}
	c->up = true;
	if (check_host_key(c, o, st) != 0)
		goto fail;
	if (o->probe) {
		*out = c;
		return 0;
	}
	if (libssh2_userauth_publickey_fromfile_ex(c->sess, user,
	    (unsigned)strlen(user), NULL, o->terminal_key, NULL) != 0) {
		int e = libssh2_session_last_errno(c->sess);

		if (e == LIBSSH2_ERROR_FILE)
			hsm_fail(st, "no_terminal_key", "cannot load terminal "
			    "key %s (an unencrypted OpenSSH private key is "
			    "needed)", o->terminal_key);
		else if (e == LIBSSH2_ERROR_TIMEOUT)
			hsm_fail(st, "timeout", "%s did not answer", c->where);
		else
			hsm_fail(st, "auth_failed", "%s refused the terminal "
			    "key %s: it is not authorised on that node "
			    "(hsmd authorize)", c->where, o->terminal_key);
		goto fail;
	}
	/* A wide window: backups stream megabytes per answer. */
	if ((c->chan = libssh2_channel_open_ex(c->sess, "session",
	    sizeof("session") - 1, CHANNEL_WINDOW,
	    LIBSSH2_CHANNEL_PACKET_DEFAULT, NULL, 0)) == NULL) {
		hsm_fail(st, "connection_lost", "cannot open a channel to %s: "
		    "%s", c->where, ssh_error(c->sess));
		goto fail;
	}
	if (libssh2_channel_subsystem(c->chan, HSM_SUBSYSTEM) != 0) {
		hsm_fail(st, "protocol", "%s refused the %s subsystem",
		    c->where, HSM_SUBSYSTEM);
		goto fail;
	}
	libssh2_session_set_timeout(c->sess, o->reply_timeout_ms > 0 ?
	    o->reply_timeout_ms : REPLY_TIMEOUT_MS);
	*out = c;
	return 0;
fail:
	hsm_conn_close(&c);
	return -1;
}

void
hsm_conn_close(struct hsm_conn **cp)
{
	struct hsm_conn *c;

	if (cp == NULL || (c = *cp) == NULL)
		return;
	if (c->chan != NULL) {
		/* Short timeout: closing must not hang on a dead node. */
		libssh2_session_set_timeout(c->sess, 1000);
		libssh2_channel_send_eof(c->chan);
		libssh2_channel_close(c->chan);
		libssh2_channel_free(c->chan);
	}
	if (c->kh != NULL)
		libssh2_knownhost_free(c->kh);
	if (c->sess != NULL) {
		libssh2_session_set_timeout(c->sess, 1000);
		if (c->up)
			libssh2_session_disconnect(c->sess, "bye");
		libssh2_session_free(c->sess);
	}
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	*cp = NULL;
}

const char *
hsm_conn_fingerprint(const struct hsm_conn *c)
{
	return c->fp;
}

int
hsm_conn_fd(const struct hsm_conn *c)
{
	return c->fd;
}

static int
io_error(struct hsm_conn *c, ssize_t rc, const char *what, hsm_status *st)
{
	if (rc == LIBSSH2_ERROR_TIMEOUT)
		return hsm_fail(st, "timeout", "%s did not answer in time",
		    c->where);
	return hsm_fail(st, "connection_lost", "%s %s: %s", what, c->where,
	    rc == 0 ? "channel closed" : ssh_error(c->sess));
}

int
hsm_conn_write(struct hsm_conn *c, const unsigned char *buf, size_t len,
    hsm_status *st)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = libssh2_channel_write(c->chan,
		    (const char *)buf + off, len - off);

		if (n == LIBSSH2_ERROR_EAGAIN)
			continue;
		if (n < 0)
			return io_error(c, n, "lost connection to", st);
		off += (size_t)n;	/* partial writes advance, never repeat */
	}
	return 0;
}

static int
read_full(struct hsm_conn *c, unsigned char *buf, size_t len, hsm_status *st)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = libssh2_channel_read(c->chan, (char *)buf + off,
		    len - off);

		if (n == LIBSSH2_ERROR_EAGAIN)
			continue;
		if (n == 0 && !libssh2_channel_eof(c->chan))
			continue;
		if (n <= 0)
			return io_error(c, n, "lost connection to", st);
		off += (size_t)n;
	}
	return 0;
}

int
hsm_conn_read_frame(struct hsm_conn *c, unsigned char **payload, size_t *len,
    hsm_status *st)
{
	unsigned char hdr[4], *buf;

	*payload = NULL;
	*len = 0;
	if (read_full(c, hdr, sizeof(hdr), st) != 0)
		return -1;
	if (hsm_frame_length(hdr, len, st) != 0) {
		if (st != NULL)
			snprintf(st->code, sizeof(st->code), "protocol");
		return -1;
	}
	if ((buf = malloc(*len)) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (read_full(c, buf, *len, st) != 0) {
		free(buf);
		return -1;
	}
	*payload = buf;
	return 0;
}

int
hsm_call_send(struct hsm_conn *c, const char *op, const cbor_item_t *args,
    uint64_t *idp, hsm_status *st)
{
	unsigned char *frame = NULL;
	size_t flen = 0;
	uint64_t id = ++c->next_id;
	int r;

	if (hsm_request_encode(id, op, args, &frame, &flen, st) != 0)
		return -1;
	r = hsm_conn_write(c, frame, flen, st);
	/* Requests may carry a secret (an API secret). */
	OPENSSL_cleanse(frame, flen);
	free(frame);
	if (r == 0)
		*idp = id;
	return r;
}

int
hsm_call_recv(struct hsm_conn *c, uint64_t id, cbor_item_t **result,
    hsm_status *st)
{
	struct hsm_response resp;
	unsigned char *payload = NULL;
	size_t plen = 0;
	int r = -1;

	*result = NULL;
	memset(&resp, 0, sizeof(resp));
	if (hsm_conn_read_frame(c, &payload, &plen, st) != 0 ||
	    hsm_response_decode(payload, plen, &resp, st) != 0)
		goto out;
	if (resp.id != id) {
		hsm_fail(st, "protocol", "%s answered request %llu with id "
		    "%llu", c->where, (unsigned long long)id,
		    (unsigned long long)resp.id);
		goto out;
	}
	if (!resp.ok) {
		hsm_fail(st, resp.code, "%s", resp.message);
		goto out;
	}
	*result = resp.result;
	resp.result = NULL;
	r = 0;
out:
	hsm_response_clear(&resp);
	/* Answers may carry a secret too. */
	if (payload != NULL)
		OPENSSL_cleanse(payload, plen);
	free(payload);
	return r;
}

int
hsm_call(struct hsm_conn *c, const char *op, const cbor_item_t *args,
    cbor_item_t **result, hsm_status *st)
{
	uint64_t id = 0;

	*result = NULL;
	if (hsm_call_send(c, op, args, &id, st) != 0)
		return -1;
	return hsm_call_recv(c, id, result, st);
}
