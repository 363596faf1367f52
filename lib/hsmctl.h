/*
 * libhsmctl: client library for hsmctl and hsmd.
 *
 * Conventions: functions return 0 on success and -1 on failure; on
 * failure they fill the caller's struct hsm_status with a stable error
 * code string and a one-line message.  The library never prints, never
 * exits and never reads the terminal.
 */
#ifndef HSMCTL_H
#define HSMCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cbor.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HSMCTL_VERSION "0.1.0"
#define HSM_PROTOCOL_VERSION 1
#define HSM_SUBSYSTEM "hsm-admin"

const char *hsm_version(void);

/* ---- status (status.c) ------------------------------------------------ */

/* Exit statuses, DESIGN §9.  The error code string decides the class. */
enum hsm_exit {
	HSM_EXIT_OK = 0,
	HSM_EXIT_NODE = 1,	/* failed on the node for another reason */
	HSM_EXIT_USAGE = 2,	/* nothing was sent */
	HSM_EXIT_AUTH = 3,
	HSM_EXIT_NOTFOUND = 4,
	HSM_EXIT_STATE = 5,
	HSM_EXIT_CONN = 6,
	HSM_EXIT_HOSTKEY = 7,
	HSM_EXIT_INTEGRITY = 8,
};

#define HSM_CODE_MAX 48
#define HSM_MSG_MAX 512

typedef struct hsm_status {
	char code[HSM_CODE_MAX];	/* stable, e.g. "unknown_op" */
	char message[HSM_MSG_MAX];	/* one line, never a secret */
} hsm_status;

/* Fill st (if not NULL) and return -1, so callers can "return hsm_fail(...)". */
int hsm_fail(hsm_status *st, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void hsm_status_clear(hsm_status *st);
/* Exit status for an error code; unknown codes are HSM_EXIT_NODE. */
int hsm_code_exit(const char *code);
/* True if code is one of the documented stable codes. */
bool hsm_code_known(const char *code);

/* ---- wire (wire.c): frames and strict CBOR ---------------------------- */

#define HSM_FRAME_MAX (16u * 1024u * 1024u)	/* payload bytes */
#define HSM_DEPTH_MAX 16
#define HSM_OP_MAX 64

/* Length of a frame's payload from its 4-byte big-endian header. */
int hsm_frame_length(const unsigned char hdr[4], size_t *len, hsm_status *st);
/* Serialise item as a frame (header + CBOR) into a new buffer. */
int hsm_frame_encode(const cbor_item_t *item, unsigned char **out,
    size_t *outlen, hsm_status *st);
/* Serialise item as definite-length CBOR (no frame header). */
int hsm_cbor_encode(const cbor_item_t *item, unsigned char **out,
    size_t *outlen, hsm_status *st);
/*
 * Strictly decode one CBOR item that must fill buf exactly: definite
 * lengths only, no tags, nesting at most HSM_DEPTH_MAX, text keys in maps,
 * no duplicate map keys, valid UTF-8 text.
 */
int hsm_cbor_decode(const unsigned char *buf, size_t len, cbor_item_t **out,
    hsm_status *st);

struct hsm_request {
	uint64_t id;
	char op[HSM_OP_MAX + 1];
	cbor_item_t *args;	/* a map, owned */
};

struct hsm_response {
	uint64_t id;
	bool ok;
	cbor_item_t *result;	/* owned, when ok */
	char code[HSM_CODE_MAX];	/* when !ok */
	char message[HSM_MSG_MAX];
};

int hsm_request_decode(const unsigned char *payload, size_t len,
    struct hsm_request *req, hsm_status *st);
/* args may be NULL (an empty map is sent); it is not consumed. */
int hsm_request_encode(uint64_t id, const char *op, const cbor_item_t *args,
    unsigned char **out, size_t *outlen, hsm_status *st);
void hsm_request_clear(struct hsm_request *req);

int hsm_response_decode(const unsigned char *payload, size_t len,
    struct hsm_response *resp, hsm_status *st);
int hsm_response_encode_ok(uint64_t id, const cbor_item_t *result,
    unsigned char **out, size_t *outlen, hsm_status *st);
int hsm_response_encode_error(uint64_t id, const char *code,
    const char *message, unsigned char **out, size_t *outlen, hsm_status *st);
void hsm_response_clear(struct hsm_response *resp);

/*
 * libcbor's cbor_is_bool()/cbor_is_null() assert on a float item; these
 * check the width first, so untrusted input cannot abort the process.
 */
bool hsm_cbor_is_bool(const cbor_item_t *item);
bool hsm_cbor_is_null(const cbor_item_t *item);

/* Map helpers: look up a text key; NULL when absent. */
cbor_item_t *hsm_map_get(const cbor_item_t *map, const char *key);
/* Add key=value to map, taking ownership of value (also on failure). */
int hsm_map_put(cbor_item_t *map, const char *key, cbor_item_t *value);
int hsm_map_put_str(cbor_item_t *map, const char *key, const char *value);
int hsm_map_put_uint(cbor_item_t *map, const char *key, uint64_t value);
int hsm_map_put_bool(cbor_item_t *map, const char *key, bool value);

/* ---- config (config.c) ------------------------------------------------ */

#define HSM_NAME_MAX 63

struct hsm_node_addr {
	char name[HSM_NAME_MAX + 1];
	char host[256];
	int port;
};

struct hsm_cluster {
	char name[HSM_NAME_MAX + 1];
	struct hsm_node_addr *nodes;
	size_t nnodes;
};

struct hsm_config {
	char *path;		/* file it came from, NULL if none */
	char *default_cluster;
	char *terminal_key;	/* expanded path */
	char *known_hosts;	/* expanded path */
	struct hsm_cluster *clusters;
	size_t nclusters;
};

/* Parse config text; path is used for messages and relative paths. */
int hsm_config_parse(const char *path, const char *text, size_t len,
    struct hsm_config **out, hsm_status *st);
/*
 * Load the configuration: explicit path (must exist), else
 * $HSMCTL_CONFIG, else $XDG_CONFIG_HOME/hsmctl/config, else
 * ~/.config/hsmctl/config (those may be absent: defaults apply).
 */
int hsm_config_load(const char *explicit_path, struct hsm_config **out,
    hsm_status *st);
void hsm_config_free(struct hsm_config **cfg);
const struct hsm_cluster *hsm_config_cluster(const struct hsm_config *cfg,
    const char *name);
/* "HOST:PORT" or "[V6]:PORT". */
int hsm_parse_hostport(const char *s, char *host, size_t hostlen, int *port,
    hsm_status *st);

/* ---- transport (transport.c): SSH client ------------------------------ */

struct hsm_conn;

struct hsm_conn_opts {
	const char *host;
	int port;
	const char *terminal_key;	/* OpenSSH private key file */
	const char *known_hosts;
	/* Node-to-node: the one host key accepted, "SHA256:..."; known_hosts
	 * is then neither read nor written. */
	const char *pinned_fp;
	/* Only learn the host key: stop after the key exchange, accepting
	 * any key; hsm_conn_fingerprint() then tells which. */
	bool probe;
	const char *user;		/* SSH user name; NULL: "hsmctl" */
	bool accept_new_host_key;
	int timeout_ms;			/* connect and each reply; 0 = default */
	int reply_timeout_ms;		/* each reply, if not timeout_ms; 0 =
					 * 120 s (a backup may take long) */
};

/* Process-wide setup of the SSH library; call once before connecting. */
int hsm_init(hsm_status *st);
void hsm_cleanup(void);

int hsm_conn_open(const struct hsm_conn_opts *opts, struct hsm_conn **out,
    hsm_status *st);
void hsm_conn_close(struct hsm_conn **conn);
/* "SHA256:..." of the node's host key. */
const char *hsm_conn_fingerprint(const struct hsm_conn *conn);
/* The socket, so another thread may shutdown(2) it to end a wait. */
int hsm_conn_fd(const struct hsm_conn *conn);
/*
 * One request, one response.  On an error response returns -1 with the
 * node's code and message in st.  args may be NULL; *result is owned by
 * the caller.
 */
int hsm_call(struct hsm_conn *conn, const char *op, const cbor_item_t *args,
    cbor_item_t **result, hsm_status *st);
/*
 * The two halves of hsm_call, for streaming: several requests may be sent
 * before their answers are read, which come back in the order sent.
 */
int hsm_call_send(struct hsm_conn *conn, const char *op,
    const cbor_item_t *args, uint64_t *id, hsm_status *st);
int hsm_call_recv(struct hsm_conn *conn, uint64_t id, cbor_item_t **result,
    hsm_status *st);
/* Raw frame I/O, for streaming and tests. */
int hsm_conn_write(struct hsm_conn *conn, const unsigned char *buf,
    size_t len, hsm_status *st);
int hsm_conn_read_frame(struct hsm_conn *conn, unsigned char **payload,
    size_t *len, hsm_status *st);

/* The SSH user a new node asks to join a cluster as (hsmd init --join). */
#define HSM_JOIN_USER "hsmd-join"

/* HKDF-SHA256 to 32 bytes (no salt when saltlen is 0). */
int hsm_hkdf_sha256(const unsigned char *ikm, size_t ikmlen,
    const unsigned char *salt, size_t saltlen, const unsigned char *info,
    size_t infolen, unsigned char out[32], hsm_status *st);

/* ---- backup files (backup.c; doc/backup-format.md) -------------------- */

#define HSM_BACKUP_FORMAT 1
#define HSM_BACKUP_CHUNK_DEFAULT (1024 * 1024)
#define HSM_BACKUP_CHUNK_MAX (8 * 1024 * 1024)
#define HSM_BACKUP_SCOPE_MAX 64

struct evp_pkey_st;

struct hsm_backup_header {
	uint32_t format;
	char id[33];			/* 32 hex digits */
	char cluster[HSM_NAME_MAX + 1];
	char cluster_id[33];
	char node[HSM_NAME_MAX + 1];	/* the node that made it */
	char **partitions;		/* the scope; none: the whole node */
	size_t npartitions;
	int64_t created;		/* seconds since the epoch */
	uint64_t seq, epoch;		/* the state it holds */
	uint32_t chunk_size;		/* largest plaintext of a chunk */
	unsigned char salt[32];		/* of this backup's key */
};
void hsm_backup_header_clear(struct hsm_backup_header *h);
/* A backup id as nodes make them: 32 lowercase hex digits. */
bool hsm_backup_id_ok(const char *id);

/*
 * Writing: the header at open, then chunks of plaintext (none empty, at
 * most chunk_size), then close writes the end marker and the signature
 * (sign: the cluster's Ed25519 key).  bkey: the cluster's backup key.
 */
typedef struct hsm_backup_writer hsm_backup_writer;
int hsm_backup_writer_open(int fd, const struct hsm_backup_header *h,
    const unsigned char bkey[32], struct evp_pkey_st *sign,
    hsm_backup_writer **w, hsm_status *st);
int hsm_backup_writer_chunk(hsm_backup_writer *w, const unsigned char *p,
    size_t n, hsm_status *st);
int hsm_backup_writer_close(hsm_backup_writer *w, uint64_t *bytes,
    hsm_status *st);
void hsm_backup_writer_free(hsm_backup_writer **w);

/*
 * Reading: open parses the header (bounds on every field); next gives
 * each chunk's plaintext (valid until the next call; none without bkey,
 * which checks structure only) until *done; finish checks the signature
 * (pub NULL: only that one is there) and that nothing follows.  Every
 * failure is code "integrity" naming what failed.
 */
typedef struct hsm_backup_reader hsm_backup_reader;
int hsm_backup_reader_open(int fd, const unsigned char *bkey,
    hsm_backup_reader **r, struct hsm_backup_header *h, hsm_status *st);
int hsm_backup_reader_next(hsm_backup_reader *r, const unsigned char **p,
    size_t *n, bool *done, hsm_status *st);
int hsm_backup_reader_finish(hsm_backup_reader *r, struct evp_pkey_st *pub,
    hsm_status *st);
uint64_t hsm_backup_reader_bytes(const hsm_backup_reader *r);
uint64_t hsm_backup_reader_chunks(const hsm_backup_reader *r);
void hsm_backup_reader_free(hsm_backup_reader **r);
/* The whole file at once: open, every chunk, finish. */
int hsm_backup_verify_fd(int fd, const unsigned char *bkey,
    struct evp_pkey_st *pub, struct hsm_backup_header *h, uint64_t *chunks,
    hsm_status *st);

/* ---- officer credentials (officer.c) ---------------------------------- */

/*
 * An officer's key pair: private key in an encrypted PKCS#8 PEM file
 * (AES-256-CBC, PBKDF2-HMAC-SHA256 with HSM_PBKDF2_ITER iterations),
 * public key in FILE.pub as a PEM SubjectPublicKeyInfo.  Officers sign
 * challenge tokens made by a node; a signature covers
 * HSM_SIG_CONTEXT || 0x00 || token, so it can never be mistaken for a
 * signature over anything else.
 */
#define HSM_PBKDF2_ITER 600000
#define HSM_SIG_CONTEXT "hsmctl-approval-v1"
#define HSM_PASS_MIN 8
#define HSM_PASS_MAX 1024
#define HSM_TOKEN_MAX 65536

enum hsm_key_type { HSM_KEY_ED25519, HSM_KEY_P384 };

struct hsm_officer_key;

/* Write path (0600, never overwriting) and path.pub (0644). */
int hsm_officer_keygen(const char *path, enum hsm_key_type type,
    const char *pass, size_t passlen, hsm_status *st);
/* Wrong passphrase: code "bad_passphrase" (exit 3). */
int hsm_officer_load(const char *path, const char *pass, size_t passlen,
    struct hsm_officer_key **out, hsm_status *st);
void hsm_officer_free(struct hsm_officer_key **key);
/* DER SubjectPublicKeyInfo of the key (caller frees). */
int hsm_officer_pubkey(const struct hsm_officer_key *key, unsigned char **der,
    size_t *len, hsm_status *st);
int hsm_officer_sign(const struct hsm_officer_key *key,
    const unsigned char *token, size_t tokenlen, unsigned char **sig,
    size_t *siglen, hsm_status *st);
/* A PEM public key file (Ed25519 or P-384 only) as DER SPKI. */
int hsm_pubkey_read(const char *path, unsigned char **der, size_t *len,
    hsm_status *st);
/* Check DER SPKI is an Ed25519 or P-384 public key. */
int hsm_pubkey_check(const unsigned char *der, size_t len, hsm_status *st);
/* Verify a signature made by hsm_officer_sign; "bad_signature" if not. */
int hsm_verify(const unsigned char *der, size_t derlen,
    const unsigned char *token, size_t tokenlen, const unsigned char *sig,
    size_t siglen, hsm_status *st);

/*
 * Remote approvals.  A token file carries a node's challenge (PEM type
 * "HSMCTL TOKEN", the CBOR token bytes); an approval file carries one
 * officer's signature over it (PEM type "HSMCTL APPROVAL", a CBOR map
 * {v:1, token:bytes, pubkey:bytes, sig:bytes}).  Reading an approval
 * verifies its signature; a malformed file or a bad signature is an
 * "integrity" / "bad_signature" error (exit 8).
 */
struct hsm_approval {
	unsigned char *token;
	size_t token_len;
	unsigned char *pubkey;	/* DER SPKI */
	size_t pubkey_len;
	unsigned char *sig;
	size_t sig_len;
};

int hsm_token_write(const char *path, const unsigned char *token, size_t len,
    hsm_status *st);
int hsm_token_read(const char *path, unsigned char **token, size_t *len,
    hsm_status *st);
int hsm_approval_write(const char *path, const struct hsm_approval *a,
    hsm_status *st);
int hsm_approval_read(const char *path, struct hsm_approval *a,
    hsm_status *st);
void hsm_approval_clear(struct hsm_approval *a);

/* ---- partition parameters (params.c) ---------------------------------- */

/*
 * The partition parameters of DESIGN §6 (17 rows, 20 parameters: the
 * api.* row holds four), declared once: the node
 * validates and enforces from this table, the CLI completes from it and
 * "partition params" prints it, and the man page is checked against it.
 */
enum hsm_param_type { HSM_PARAM_BOOL, HSM_PARAM_INT, HSM_PARAM_IPLIST };

#define HSM_PARAM_COST 0x1	/* a cost option: the PSO may not change it */
#define HSM_PARAM_PSO_ONLY 0x2	/* only the PSO sets it (device-so-access) */
#define HSM_PARAM_VALUE_MAX 1024

struct hsm_param {
	const char *name;	/* "api.jce" */
	enum hsm_param_type type;
	const char *dflt;	/* normalised default: "on", "10", "" */
	unsigned flags;
	const char *help;	/* one line */
};

extern const struct hsm_param hsm_params[];
extern const size_t hsm_nparams;
const struct hsm_param *hsm_param_find(const char *name);
/*
 * Check and normalise a value: booleans (on/off, true/false, yes/no, 1/0)
 * to "on"/"off"; integers (non-negative, decimal, <= 2^53) to canonical
 * decimal; IP lists (comma-separated IPv4/IPv6 addresses and CIDRs, or
 * "" for any) to a canonical comma list.  "bad_value" naming param and
 * value otherwise.
 */
int hsm_param_normalize(const struct hsm_param *p, const char *value,
    char *out, size_t outlen, hsm_status *st);
/* Is addr (IPv4 or IPv6 text) allowed by a normalised IP list? */
bool hsm_iplist_allows(const char *list, const char *addr);

struct hsm_profile {
	const char *name;	/* "eco" */
	const char *help;
	const char *const *settings;	/* "param=value", NULL-terminated */
};

extern const struct hsm_profile hsm_profiles[];
extern const size_t hsm_nprofiles;
const struct hsm_profile *hsm_profile_find(const char *name);
/* Partition names: [a-z0-9][a-z0-9-]{0,62}. */
bool hsm_partition_name_ok(const char *name);

/* ---- util (util.c) ---------------------------------------------------- */

/* Strict UTF-8: no overlong forms, surrogates or values past U+10FFFF. */
bool hsm_utf8_valid(const unsigned char *p, size_t n);

/* n bytes as 2n lower-case hex digits and a NUL into out. */
void hsm_hex(const unsigned char *p, size_t n, char *out);

/* All of buf to fd, across short writes and EINTR; -1 with errno set. */
int hsm_write_all(int fd, const void *buf, size_t len);

/* "SHA256:<base64 without padding>" of a public key blob. */
int hsm_fingerprint(const unsigned char *blob, size_t len, char *out,
    size_t outlen, hsm_status *st);

#ifdef __cplusplus
}
#endif

#endif /* HSMCTL_H */
