/* backup commands. */
#define _GNU_SOURCE	/* sync_file_range(2) */
#include <sys/stat.h>

#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cmd.h"

#define PIECE (4 * 1024 * 1024)
#define DEPTH 3		/* pieces asked for ahead: the link never idles */

static const struct kv_label backup_cols[] = {
	{ "id", "ID", KV_PLAIN },
	{ "created", "CREATED", KV_TIME },
	{ "node", "NODE", KV_PLAIN },
	{ "scope", "SCOPE", KV_PLAIN },
	{ "seq", "SEQ", KV_PLAIN },
	{ "size", "SIZE", KV_PLAIN },
	{ "objects", "OBJECTS", KV_PLAIN },
	{ "verified", "VERIFIED", KV_PLAIN },
	{ NULL, NULL, 0 },
};

static const struct kv_label backup_labels[] = {
	{ "id", "backup", KV_PLAIN },
	{ "created", "created", KV_TIME },
	{ "verified_at", "verified at", KV_TIME },
	{ "next_backup", "next backup", KV_TIME },
	{ "last_backup", "last backup", KV_TIME },
	{ NULL, NULL, 0 },
};

static int
check_id(const char *id, hsm_status *st)
{
	return hsm_backup_id_ok(id) ? 0 : hsm_fail(st, "bad_value", "'%s' is "
	    "not a backup id (32 hex digits, as backup list shows)", id);
}

static cbor_item_t *
id_args(const char *id)
{
	cbor_item_t *a = cbor_new_indefinite_map();

	if (a != NULL && hsm_map_put_str(a, "id", id) != 0)
		cbor_decref(&a);
	return a;
}

/* --partition P... into args "partitions". */
static int
put_partitions(const struct inv *inv, cbor_item_t *a, hsm_status *st)
{
	cbor_item_t *list = NULL;

	for (size_t i = 0; i < inv->nopts; i++) {
		const char *p = inv->opts[i].value;

		if (strcmp(inv->opts[i].opt->name, "partition") != 0)
			continue;
		if (check_partition(p, st) != 0)
			goto fail;
		if (list == NULL && (list = cbor_new_indefinite_array()) == NULL)
			goto oom;
		if (!cbor_array_push(list, cbor_move(cbor_build_string(p))))
			goto oom;
	}
	if (list != NULL && hsm_map_put(a, "partitions", list) != 0) {
		list = NULL;
		goto oom;
	}
	return 0;
oom:
	hsm_fail(st, "no_memory", "out of memory");
fail:
	if (list != NULL)
		cbor_decref(&list);
	return -1;
}

int
cmd_backup_create(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "id", "backup", KV_PLAIN },
		{ "size", "size", KV_PLAIN },
		{ "objects", "objects", KV_PLAIN },
		{ "seq", "sequence", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	cbor_item_t *a = cbor_new_indefinite_map();
	int r = -1;

	if (a == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (put_partitions(inv, a, st) == 0)
		r = call_and_show(ctx, "backup.create", a, labels, st);
	cbor_decref(&a);
	return r;
}

int
cmd_backup_list(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	(void)inv;
	return call_and_table(ctx, "backup.list", NULL, "backups", backup_cols,
	    st);
}

int
cmd_backup_show(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	cbor_item_t *a;
	int r;

	if (check_id(inv->args[0], st) != 0)
		return -1;
	if ((a = id_args(inv->args[0])) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	r = call_and_show(ctx, "backup.show", a, backup_labels, st);
	cbor_decref(&a);
	return r;
}

/* The cluster's public key: --cluster-key HEX, or the node's. */
static EVP_PKEY *
cluster_pub(struct ctx *ctx, const char *hex, hsm_status *st)
{
	unsigned char raw[32];
	char buf[65];
	cbor_item_t *info = NULL;
	EVP_PKEY *k;

	buf[0] = '\0';
	if (hex == NULL) {
		const cbor_item_t *v;

		if (ctx_call(ctx, "node.info", NULL, &info, st) != 0)
			return NULL;
		v = hsm_map_get(info, "cluster_key");
		if (v != NULL && cbor_isa_string(v) &&
		    cbor_string_length(v) == 64) {
			memcpy(buf, cbor_string_handle(v), 64);
			buf[64] = '\0';
		}
		cbor_decref(&info);
		hex = buf;
	}
	if (strlen(hex) != 64) {
		hsm_fail(st, hex == buf ? "protocol" : "bad_value", "%s",
		    hex == buf ? "the node sent no cluster key" :
		    "--cluster-key takes the 64 hex digits node info shows");
		return NULL;
	}
	for (size_t i = 0; i < 32; i++) {
		unsigned int b;

		if (sscanf(hex + 2 * i, "%2x", &b) != 1) {
			hsm_fail(st, "bad_value", "--cluster-key is not hex");
			return NULL;
		}
		raw[i] = (unsigned char)b;
	}
	if ((k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw,
	    sizeof(raw))) == NULL)
		hsm_fail(st, "bad_value", "not an Ed25519 public key");
	return k;
}

/* A file checked without the backup key: structure and signature. */
static int
verify_offline(struct ctx *ctx, int fd, const char *hex,
    struct hsm_backup_header *h, uint64_t *chunks, hsm_status *st)
{
	EVP_PKEY *pub;
	int r;

	if ((pub = cluster_pub(ctx, hex, st)) == NULL)
		return -1;
	r = hsm_backup_verify_fd(fd, NULL, pub, h, chunks, st);
	EVP_PKEY_free(pub);
	return r;
}

int
cmd_backup_verify(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	const char *file = inv_opt(inv, "file");
	const char *hex = inv_opt(inv, "cluster-key");
	struct hsm_backup_header h;
	uint64_t chunks = 0;
	cbor_item_t *a, *res = NULL;
	int fd, r;

	if ((file != NULL) == (inv->nargs > 0))
		return hsm_fail(st, "usage", "give a backup ID or --file FILE");
	if (hex != NULL && file == NULL)
		return hsm_fail(st, "usage", "--cluster-key goes with --file");
	if (file == NULL) {
		if (check_id(inv->args[0], st) != 0)
			return -1;
		if ((a = id_args(inv->args[0])) == NULL)
			return hsm_fail(st, "no_memory", "out of memory");
		r = call_and_show(ctx, "backup.verify", a, backup_labels, st);
		cbor_decref(&a);
		return r;
	}
	if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0)
		return hsm_fail(st, "not_found", "cannot open %s: %s", file,
		    strerror(errno));
	r = verify_offline(ctx, fd, hex, &h, &chunks, st);
	close(fd);
	if (r != 0)
		return -1;
	if ((res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(res, "id", h.id) != 0 ||
	    hsm_map_put_str(res, "file", file) != 0 ||
	    hsm_map_put_str(res, "cluster", h.cluster) != 0 ||
	    hsm_map_put_str(res, "node", h.node) != 0 ||
	    hsm_map_put_uint(res, "created", (uint64_t)h.created) != 0 ||
	    hsm_map_put_uint(res, "seq", h.seq) != 0 ||
	    hsm_map_put_uint(res, "chunks", chunks) != 0 ||
	    hsm_map_put_str(res, "verified", "signature and structure (the "
	    "chunks' contents need the cluster's key: backup verify ID on a "
	    "node)") != 0) {
		hsm_backup_header_clear(&h);
		if (res != NULL)
			cbor_decref(&res);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	hsm_backup_header_clear(&h);
	r = out_result(ctx, res, backup_labels, st);
	cbor_decref(&res);
	return r;
}

/* ---- progress on a terminal's stderr ------------------------------------ */

struct progress {
	bool on;
	uint64_t total, done;
	struct timespec t0, last;
};

static double
since(const struct timespec *a)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - a->tv_sec) +
	    (double)(now.tv_nsec - a->tv_nsec) / 1e9;
}

static void
progress_start(struct ctx *ctx, struct progress *p, uint64_t total,
    uint64_t done)
{
	memset(p, 0, sizeof(*p));
	p->on = !ctx->quiet && ctx->output == OUT_TEXT && isatty(STDERR_FILENO);
	p->total = total;
	p->done = done;
	clock_gettime(CLOCK_MONOTONIC, &p->t0);
	p->last = p->t0;
}

static void
progress_show(struct progress *p, uint64_t done, bool end)
{
	double el = since(&p->t0), rate;
	uint64_t left;

	p->done = done;
	if (!p->on || (!end && since(&p->last) < 0.2))
		return;
	clock_gettime(CLOCK_MONOTONIC, &p->last);
	rate = el > 0 ? (double)done / el : 0;
	left = p->total > done ? p->total - done : 0;
	fprintf(stderr, "\r%7.1f / %.1f MiB  %6.1f MiB/s  ETA %3.0fs ",
	    (double)done / 1048576.0, (double)p->total / 1048576.0,
	    rate / 1048576.0, rate > 0 ? (double)left / rate : 0.0);
	if (end)
		fputc('\n', stderr);
	fflush(stderr);
}

/* ---- download and upload ------------------------------------------------ */

int
cmd_backup_download(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	const char *id = inv->args[0], *out = inv_opt(inv, "out");
	char part[4096], dir[4096];
	struct hsm_backup_header h;
	struct progress pg;
	struct stat sb;
	uint64_t off, size = 0, next, q[DEPTH];
	size_t qh = 0, nq = 0;
	cbor_item_t *a = NULL, *res = NULL;
	bool eof = false;
	int fd = -1, r = -1;

	if (check_id(id, st) != 0)
		return -1;
	if (snprintf(part, sizeof(part), "%s.part", out) >= (int)sizeof(part))
		return hsm_fail(st, "bad_value", "path too long: %s", out);
	if (lstat(out, &sb) == 0)
		return hsm_fail(st, "conflict", "%s exists; not overwritten",
		    out);
	/* A .part of an interrupted download is continued. */
	if ((fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0 ||
	    fstat(fd, &sb) != 0) {
		hsm_fail(st, "io", "cannot write %s: %s", part,
		    strerror(errno));
		goto out;
	}
	off = (uint64_t)sb.st_size;
	if (off > 0)
		out_verbose(ctx, "continuing %s at %llu bytes", part,
		    (unsigned long long)off);
	progress_start(ctx, &pg, 0, off);
#ifdef M_TRIM_THRESHOLD
	/*
	 * Every piece is a fresh 4 MiB frame and its decoded copy: left to
	 * its defaults, glibc maps and unmaps them, and every page of every
	 * piece faults in zeroed again (a tenth of the download's time).
	 * Kept on the heap, they are reused.
	 */
	mallopt(M_MMAP_THRESHOLD, 16 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
#endif
	if (ctx_connect(ctx, st) != 0)
		goto out;
	next = off;
	while (!eof) {
		const cbor_item_t *d, *e, *sz;

		/* Keep DEPTH pieces asked for; the first tells the size. */
		while (nq < DEPTH && (nq == 0 || next < size)) {
			if ((a = id_args(id)) == NULL ||
			    hsm_map_put_uint(a, "offset", next) != 0 ||
			    hsm_map_put_uint(a, "length", PIECE) != 0) {
				hsm_fail(st, "no_memory", "out of memory");
				goto out;
			}
			if (hsm_call_send(ctx->conn, "backup.read", a,
			    &q[(qh + nq) % DEPTH], st) != 0)
				goto out;
			cbor_decref(&a);
			a = NULL;
			nq++;
			next += PIECE;
			if (size == 0)
				break;
		}
		if (hsm_call_recv(ctx->conn, q[qh], &res, st) != 0)
			goto out;
		qh = (qh + 1) % DEPTH;
		nq--;
		if ((d = hsm_map_get(res, "data")) == NULL ||
		    !cbor_isa_bytestring(d) || (e = hsm_map_get(res,
		    "eof")) == NULL || !hsm_cbor_is_bool(e) ||
		    (sz = hsm_map_get(res, "size")) == NULL ||
		    !cbor_isa_uint(sz) || (size != 0 && size !=
		    cbor_get_int(sz))) {
			hsm_fail(st, "protocol", "malformed backup.read answer");
			goto out;
		}
		size = cbor_get_int(sz);
		pg.total = size;
		eof = cbor_get_bool(e);
		if (!eof && cbor_bytestring_length(d) == 0) {
			hsm_fail(st, "protocol", "the node sent no data");
			goto out;
		}
		if (pwrite(fd, cbor_bytestring_handle(d),
		    cbor_bytestring_length(d), (off_t)off) !=
		    (ssize_t)cbor_bytestring_length(d)) {
			hsm_fail(st, "io", "cannot write %s: %s", part,
			    strerror(errno));
			goto out;
		}
#ifdef SYNC_FILE_RANGE_WRITE
		/* Start writing to disk now, so the final fsync is short. */
		sync_file_range(fd, (off_t)off,
		    (off_t)cbor_bytestring_length(d), SYNC_FILE_RANGE_WRITE);
#endif
		off += cbor_bytestring_length(d);
		cbor_decref(&res);
		res = NULL;
		progress_show(&pg, off, eof);
	}
	/* Answers still on their way belong to no one: drop the session. */
	if (nq > 0)
		ctx_close(ctx);
	if (off != size || fsync(fd) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
		hsm_fail(st, "io", "%s: %llu of %llu bytes", part,
		    (unsigned long long)off, (unsigned long long)size);
		goto out;
	}
	/* Whole and signed by the cluster, or it is not kept. */
	if (verify_offline(ctx, fd, NULL, &h, NULL, st) != 0) {
		unlink(part);
		goto out;
	}
	hsm_backup_header_clear(&h);
	if (rename(part, out) != 0) {
		hsm_fail(st, "io", "cannot rename %s: %s", part,
		    strerror(errno));
		goto out;
	}
	snprintf(dir, sizeof(dir), "%s", out);
	{
		int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	if ((res = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_str(res, "id", id) != 0 ||
	    hsm_map_put_str(res, "file", out) != 0 ||
	    hsm_map_put_uint(res, "size", size) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	r = out_result(ctx, res, backup_labels, st);
out:
	if (fd >= 0)
		close(fd);
	if (a != NULL)
		cbor_decref(&a);
	if (res != NULL)
		cbor_decref(&res);
	return r;
}

int
cmd_backup_upload(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "id", "backup", KV_PLAIN },
		{ "seq", "sequence", KV_PLAIN },
		{ "node", "made by", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	const char *file = inv->args[0];
	struct hsm_backup_header h;
	struct progress pg;
	struct stat sb;
	unsigned char *buf = NULL;
	uint64_t off = 0;
	cbor_item_t *a = NULL, *res = NULL;
	int fd, r = -1;

	if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &sb) != 0) {
		r = hsm_fail(st, "not_found", "cannot open %s: %s", file,
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		return r;
	}
	/* A damaged file is refused here, before a byte is sent. */
	if (hsm_backup_verify_fd(fd, NULL, NULL, &h, NULL, st) != 0)
		goto out;
	hsm_backup_header_clear(&h);
	if (lseek(fd, 0, SEEK_SET) != 0 || (buf = malloc(PIECE)) == NULL ||
	    (a = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_uint(a, "size", (uint64_t)sb.st_size) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (ctx_call(ctx, "backup.upload", a, &res, st) != 0)
		goto out;
	cbor_decref(&a);
	cbor_decref(&res);
	a = res = NULL;
	progress_start(ctx, &pg, (uint64_t)sb.st_size, 0);
	while (off < (uint64_t)sb.st_size) {
		ssize_t n = read(fd, buf, PIECE);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			hsm_fail(st, "io", "cannot read %s", file);
			goto out;
		}
		if ((a = cbor_new_indefinite_map()) == NULL ||
		    hsm_map_put_uint(a, "offset", off) != 0 ||
		    hsm_map_put(a, "data", cbor_build_bytestring(buf,
		    (size_t)n)) != 0) {
			hsm_fail(st, "no_memory", "out of memory");
			goto out;
		}
		if (ctx_call(ctx, "backup.upload", a, &res, st) != 0)
			goto out;
		cbor_decref(&a);
		cbor_decref(&res);
		a = res = NULL;
		off += (uint64_t)n;
		progress_show(&pg, off, off == (uint64_t)sb.st_size);
	}
	if ((a = cbor_new_indefinite_map()) == NULL ||
	    hsm_map_put_bool(a, "done", true) != 0) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	if (ctx_call(ctx, "backup.upload", a, &res, st) != 0)
		goto out;
	r = out_result(ctx, res, labels, st);
out:
	close(fd);
	free(buf);
	if (a != NULL)
		cbor_decref(&a);
	if (res != NULL)
		cbor_decref(&res);
	return r;
}

static uint64_t
u64_of(const cbor_item_t *m, const char *key)
{
	const cbor_item_t *v = m != NULL ? hsm_map_get(m, key) : NULL;

	return v != NULL && cbor_isa_uint(v) ? cbor_get_int(v) : 0;
}

int
cmd_backup_restore(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "id", "restored", KV_PLAIN },
		{ "seq", "sequence", KV_PLAIN },
		{ "objects", "objects", KV_PLAIN },
		{ NULL, NULL, 0 },
	};
	cbor_item_t *a = NULL, *show = NULL, *info = NULL;
	char q[256];
	int r = -1;

	if (check_id(inv->args[0], st) != 0)
		return -1;
	if ((a = id_args(inv->args[0])) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (put_partitions(inv, a, st) != 0)
		goto out;
	/* Going back in time is asked first (-y answers). */
	{
		cbor_item_t *b = id_args(inv->args[0]);

		if (b == NULL) {
			hsm_fail(st, "no_memory", "out of memory");
			goto out;
		}
		r = ctx_call(ctx, "backup.show", b, &show, st) != 0 ||
		    ctx_call(ctx, "node.info", NULL, &info, st) != 0 ? -1 : 0;
		cbor_decref(&b);
		if (r != 0)
			goto out;
		r = -1;
	}
	if (u64_of(show, "seq") < u64_of(info, "last_seq")) {
		snprintf(q, sizeof(q), "Backup %.32s holds change %llu; the "
		    "node is at %llu. Go back to it? [y/N] ", inv->args[0],
		    (unsigned long long)u64_of(show, "seq"),
		    (unsigned long long)u64_of(info, "last_seq"));
		if (!ask_yes(ctx, q, st))
			goto out;
		if (hsm_map_put_bool(a, "older", true) != 0) {
			hsm_fail(st, "no_memory", "out of memory");
			goto out;
		}
	}
	r = call_and_show(ctx, "backup.restore", a, labels, st);
out:
	if (show != NULL)
		cbor_decref(&show);
	if (info != NULL)
		cbor_decref(&info);
	cbor_decref(&a);
	return r;
}

int
cmd_backup_prune(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	const char *v = inv_opt(inv, "keep-days");
	cbor_item_t *a = cbor_new_indefinite_map();
	char *end;
	unsigned long long d = 10;
	int r;

	if (a == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	if (v != NULL) {
		d = strtoull(v, &end, 10);
		if (*v == '\0' || *v == '-' || *end != '\0' || d > 36500) {
			cbor_decref(&a);
			return hsm_fail(st, "bad_value", "--keep-days takes "
			    "0..36500, not '%s'", v);
		}
	}
	if (hsm_map_put_uint(a, "keep_days", d) != 0) {
		cbor_decref(&a);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	r = call_and_show(ctx, "backup.prune", a, backup_labels, st);
	cbor_decref(&a);
	return r;
}

int
cmd_backup_schedule(struct ctx *ctx, const struct inv *inv, hsm_status *st)
{
	static const struct kv_label labels[] = {
		{ "schedule", "daily at (UTC)", KV_PLAIN },
		{ "next_backup", "next backup", KV_TIME },
		{ NULL, NULL, 0 },
	};
	const char *daily = inv_opt(inv, "daily");
	bool off = inv_opt(inv, "off") != NULL;
	cbor_item_t *a;
	int r;

	if ((daily != NULL) == off)
		return hsm_fail(st, "usage", "give --daily HH:MM or --off");
	if (daily != NULL && (strlen(daily) != 5 || daily[2] != ':' ||
	    daily[0] < '0' || daily[0] > '2' || daily[1] < '0' ||
	    daily[1] > '9' || daily[3] < '0' || daily[3] > '5' ||
	    daily[4] < '0' || daily[4] > '9' || (daily[0] == '2' &&
	    daily[1] > '3')))
		return hsm_fail(st, "bad_value", "--daily takes HH:MM (UTC), "
		    "not '%s'", daily);
	if ((a = cbor_new_indefinite_map()) == NULL ||
	    (daily != NULL ? hsm_map_put_str(a, "daily", daily) :
	    hsm_map_put_bool(a, "off", true)) != 0) {
		if (a != NULL)
			cbor_decref(&a);
		return hsm_fail(st, "no_memory", "out of memory");
	}
	r = call_and_show(ctx, "backup.schedule", a, labels, st);
	cbor_decref(&a);
	return r;
}
