/*
 * Configuration file: parsing, loading and lookup (hsmctl.conf(5)).
 *
 *	# comment
 *	default-cluster demo
 *	terminal-key ~/.config/hsmctl/terminal_key
 *	known-hosts ~/.config/hsmctl/known_hosts
 *	cluster demo
 *	    node n1 127.0.0.1:7001
 *	    node n2 [::1]:7002
 *
 * Every error in a file is reported as "FILE:LINE: what is wrong" with the
 * code "config_syntax"; an unreadable file is "config_io".
 */
#include "hsmctl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define CFG_FILE_MAX (1024u * 1024u)	/* bytes in a config file */
#define CFG_LINE_MAX 4096		/* bytes in a line, without '\n' */
#define CFG_TOK_MAX 8			/* tokens kept per line (more are counted) */
#define CFG_HOST_MAX 255
#define CFG_NOFILE "<config>"		/* name in messages when path is NULL */
#define NO_SCOPE SIZE_MAX

/* ---- small helpers ----------------------------------------------------- */

/* dir + "/" + rest in a new string (no doubled '/'); NULL if out of memory. */
static char *
path_join(const char *dir, const char *rest)
{
	size_t dl = strlen(dir), rl = strlen(rest);
	bool slash = dl > 0 && dir[dl - 1] == '/';
	char *p = malloc(dl + (slash ? 0 : 1) + rl + 1);

	if (p == NULL)
		return NULL;
	memcpy(p, dir, dl);
	if (!slash)
		p[dl++] = '/';
	memcpy(p + dl, rest, rl + 1);
	return p;
}

/* The user's home directory: 0, or -1 (out of memory), or -2 (unknown). */
static int
get_home(char **out)
{
	const char *h = getenv("HOME");
	struct passwd pw, *res = NULL;
	long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
	size_t sz = (hint >= 1024 && hint <= 65536) ? (size_t)hint : 16384;
	char *buf = NULL;
	int rc;

	*out = NULL;
	if (h != NULL && h[0] != '\0') {
		*out = strdup(h);
		return *out != NULL ? 0 : -1;
	}
	for (;;) {
		char *nb = realloc(buf, sz);

		if (nb == NULL) {
			free(buf);
			return -1;
		}
		buf = nb;
		rc = getpwuid_r(getuid(), &pw, buf, sz, &res);
		if (rc != ERANGE || sz >= 1024 * 1024)
			break;
		sz *= 2;
	}
	if (rc != 0 || res == NULL || pw.pw_dir == NULL || pw.pw_dir[0] == '\0') {
		free(buf);
		return -2;
	}
	*out = strdup(pw.pw_dir);
	free(buf);
	return *out != NULL ? 0 : -1;
}

/*
 * $XDG_CONFIG_HOME, or $HOME/.config.  A relative XDG_CONFIG_HOME is
 * ignored, as the XDG base directory specification requires.
 * Returns like get_home().
 */
static int
get_config_home(char **out)
{
	const char *x = getenv("XDG_CONFIG_HOME");
	char *home;
	int rc;

	*out = NULL;
	if (x != NULL && x[0] == '/') {
		*out = strdup(x);
		return *out != NULL ? 0 : -1;
	}
	if ((rc = get_home(&home)) != 0)
		return rc;
	*out = path_join(home, ".config");
	free(home);
	return *out != NULL ? 0 : -1;
}

/* $XDG_CONFIG_HOME/hsmctl/<leaf> with the error reported in st. */
static int
default_file(const char *leaf, char **out, hsm_status *st)
{
	char *dir, *rel = NULL;
	int rc = get_config_home(&dir);

	*out = NULL;
	if (rc == -1)
		return hsm_fail(st, "no_memory", "out of memory");
	if (rc != 0)
		return hsm_fail(st, "config_io",
		    "cannot determine the home directory (HOME is not set)");
	if ((rel = path_join("hsmctl", leaf)) == NULL)
		goto nomem;
	if ((*out = path_join(dir, rel)) == NULL)
		goto nomem;
	free(rel);
	free(dir);
	return 0;
nomem:
	free(rel);
	free(dir);
	return hsm_fail(st, "no_memory", "out of memory");
}

/* [A-Za-z0-9][A-Za-z0-9._-]{0,62} */
static bool
name_valid(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		unsigned char c = (unsigned char)s[i];
		bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9');

		if (i >= HSM_NAME_MAX)
			return false;
		if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
			return false;
	}
	return i > 0;
}

static bool
host_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

/*
 * Parse "HOST:PORT" or "[V6]:PORT".  Returns NULL on success, else a short
 * reason.  host and port are written only on success.
 */
static const char *
hostport(const char *s, char *host, size_t hostlen, int *port)
{
	const char *hs, *he, *ps, *p;
	size_t hl;
	long v = 0;

	if (s[0] == '[') {
		char tmp[CFG_HOST_MAX + 1], *pct;

		hs = s + 1;
		if ((he = strchr(hs, ']')) == NULL)
			return "missing ']'";
		if (he == hs)
			return "empty host";
		if (he[1] != ':')
			return "expected ':PORT' after ']'";
		ps = he + 2;
		hl = (size_t)(he - hs);
		if (hl > CFG_HOST_MAX)
			return "host longer than 255 bytes";
		memcpy(tmp, hs, hl);
		tmp[hl] = '\0';
		/* Optional zone: fe80::1%eth0. */
		if ((pct = strchr(tmp, '%')) != NULL) {
			if (pct[1] == '\0')
				return "empty IPv6 zone";
			for (p = pct + 1; *p != '\0'; p++)
				if (!host_char((unsigned char)*p))
					return "invalid IPv6 zone";
			*pct = '\0';
		}
		{
			unsigned char a6[16];

			if (inet_pton(AF_INET6, tmp, a6) != 1)
				return "invalid IPv6 address";
		}
	} else {
		hs = s;
		if ((he = strrchr(s, ':')) == NULL)
			return "missing ':PORT'";
		if (he == hs)
			return "empty host";
		for (p = hs; p < he; p++) {
			if (*p == ':')
				return "IPv6 address must be in brackets";
			if (!host_char((unsigned char)*p))
				return "invalid character in host";
		}
		ps = he + 1;
		hl = (size_t)(he - hs);
		if (hl > CFG_HOST_MAX)
			return "host longer than 255 bytes";
	}
	if (*ps == '\0')
		return "empty port";
	for (p = ps; *p != '\0'; p++) {
		if (*p < '0' || *p > '9' || p - ps >= 5)
			return "port must be a number from 1 to 65535";
		v = v * 10 + (*p - '0');
	}
	if (v < 1 || v > 65535)
		return "port must be a number from 1 to 65535";
	if (hl >= hostlen)
		return "host too long for the buffer";
	memcpy(host, hs, hl);
	host[hl] = '\0';
	*port = (int)v;
	return NULL;
}

/* Copy at most 80 bytes of s for a message, control characters as '?'. */
static void
sanitize(const char *s, char *out, size_t outlen)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i + 1 < outlen && i < 80; i++) {
		unsigned char c = (unsigned char)s[i];

		out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	out[i] = '\0';
}

int
hsm_parse_hostport(const char *s, char *host, size_t hostlen, int *port,
    hsm_status *st)
{
	char shown[96];
	const char *why;

	if (s == NULL || host == NULL || hostlen == 0 || port == NULL)
		return hsm_fail(st, "bad_value", "bad address: missing argument");
	if ((why = hostport(s, host, hostlen, port)) != NULL) {
		sanitize(s, shown, sizeof(shown));
		return hsm_fail(st, "bad_value", "bad address '%s': %s", shown,
		    why);
	}
	return 0;
}

/* ---- parser -------------------------------------------------------------- */

/*
 * Names seen so far, for duplicate detection in O(1): clusters have scope
 * NO_SCOPE and idx = cluster index; nodes have scope = cluster index and
 * idx = node index.
 */
struct name_slot {
	uint64_t hash;
	size_t scope;
	size_t idx;
	size_t line;
	bool used;
};

struct parser {
	const char *file;		/* for messages */
	const char *path;		/* may be NULL */
	hsm_status *st;
	struct hsm_config *cfg;
	size_t line;
	size_t *cl_line;		/* parallel to cfg->clusters */
	size_t cur;			/* current cluster, NO_SCOPE if none */
	size_t dc_line, tk_line, kh_line;	/* 0: not seen */
	struct name_slot *slots;
	size_t nslots, nused;
};

/* Vectors grow to 4, 8, 16, ...: grow before appending element n. */
static bool
vec_full(size_t n)
{
	return n == 0 || (n >= 4 && (n & (n - 1)) == 0);
}

static size_t
vec_next(size_t n)
{
	return n == 0 ? 4 : n * 2;
}

static int
syntax(struct parser *p, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
syntax(struct parser *p, size_t line, const char *fmt, ...)
{
	char what[HSM_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return hsm_fail(p->st, "config_syntax", "%s:%zu: %s", p->file, line,
	    what);
}

static int
nomem(struct parser *p)
{
	return hsm_fail(p->st, "no_memory", "out of memory");
}

static const char *
slot_name(const struct parser *p, const struct name_slot *s)
{
	if (s->scope == NO_SCOPE)
		return p->cfg->clusters[s->idx].name;
	return p->cfg->clusters[s->scope].nodes[s->idx].name;
}

static uint64_t
name_hash(size_t scope, const char *name)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)scope;

	for (; *name != '\0'; name++) {
		h ^= (unsigned char)*name;
		h *= 1099511628211ULL;
	}
	return h;
}

/* Slot of (scope, name): the matching one, or the free one to fill. */
static struct name_slot *
slot_find(struct parser *p, uint64_t h, size_t scope, const char *name)
{
	size_t mask = p->nslots - 1, i = (size_t)h & mask;

	while (p->slots[i].used) {
		struct name_slot *s = &p->slots[i];

		if (s->hash == h && s->scope == scope &&
		    strcmp(slot_name(p, s), name) == 0)
			return s;
		i = (i + 1) & mask;
	}
	return &p->slots[i];
}

/*
 * Look up (scope, name).  If present, *first is its line and 1 is
 * returned.  Otherwise, 0 is returned after making room so that
 * name_add() cannot fail.  -1: out of memory.
 */
static int
name_seen(struct parser *p, size_t scope, const char *name, size_t *first)
{
	struct name_slot *s;

	if ((p->nused + 1) * 2 > p->nslots) {
		size_t n = p->nslots == 0 ? 64 : p->nslots * 2, i;
		struct name_slot *old = p->slots, *ns;
		size_t oldn = p->nslots;

		if ((ns = calloc(n, sizeof(*ns))) == NULL)
			return -1;
		p->slots = ns;
		p->nslots = n;
		for (i = 0; i < oldn; i++)
			if (old[i].used)
				*slot_find(p, old[i].hash, old[i].scope,
				    slot_name(p, &old[i])) = old[i];
		free(old);
	}
	s = slot_find(p, name_hash(scope, name), scope, name);
	if (s->used) {
		*first = s->line;
		return 1;
	}
	return 0;
}

/* Record (scope, idx); the name must already be stored in cfg. */
static void
name_add(struct parser *p, size_t scope, size_t idx)
{
	const char *name = scope == NO_SCOPE ? p->cfg->clusters[idx].name :
	    p->cfg->clusters[scope].nodes[idx].name;
	uint64_t h = name_hash(scope, name);
	struct name_slot *s = slot_find(p, h, scope, name);

	s->hash = h;
	s->scope = scope;
	s->idx = idx;
	s->line = p->line;
	s->used = true;
	p->nused++;
}

/* Expand a path argument: "~/x", absolute, or relative to the file's dir. */
static int
expand_path(struct parser *p, const char *arg, char **out)
{
	const char *slash;
	char *home, *dir;
	int rc;

	*out = NULL;
	if (arg[0] == '~') {
		if (arg[1] != '/')
			return syntax(p, p->line,
			    "'%.80s': only '~/' is supported", arg);
		rc = get_home(&home);
		if (rc == -1)
			return nomem(p);
		if (rc != 0)
			return syntax(p, p->line,
			    "cannot expand '~/': home directory unknown");
		*out = path_join(home, arg + 2);
		free(home);
		return *out != NULL ? 0 : nomem(p);
	}
	if (arg[0] == '/' || p->path == NULL ||
	    (slash = strrchr(p->path, '/')) == NULL) {
		*out = strdup(arg);
		return *out != NULL ? 0 : nomem(p);
	}
	if (slash == p->path)
		dir = strdup("/");
	else
		dir = strndup(p->path, (size_t)(slash - p->path));
	if (dir == NULL)
		return nomem(p);
	*out = path_join(dir, arg);
	free(dir);
	return *out != NULL ? 0 : nomem(p);
}

static int
want_args(struct parser *p, char **tok, size_t ntok, size_t want,
    const char *usage)
{
	if (ntok - 1 == want)
		return 0;
	return syntax(p, p->line, "'%s' expects %zu argument%s (%s), got %zu",
	    tok[0], want, want == 1 ? "" : "s", usage, ntok - 1);
}

static int
kw_default_cluster(struct parser *p, char **tok, size_t ntok)
{
	if (want_args(p, tok, ntok, 1, "NAME") != 0)
		return -1;
	if (p->dc_line != 0)
		return syntax(p, p->line, "duplicate 'default-cluster' "
		    "(first on line %zu)", p->dc_line);
	if (!name_valid(tok[1]))
		return syntax(p, p->line, "invalid cluster name '%.80s'",
		    tok[1]);
	if ((p->cfg->default_cluster = strdup(tok[1])) == NULL)
		return nomem(p);
	p->dc_line = p->line;
	return 0;
}

static int
kw_path(struct parser *p, char **tok, size_t ntok, char **dst, size_t *seen)
{
	if (want_args(p, tok, ntok, 1, "PATH") != 0)
		return -1;
	if (*seen != 0)
		return syntax(p, p->line, "duplicate '%s' (first on line %zu)",
		    tok[0], *seen);
	if (expand_path(p, tok[1], dst) != 0)
		return -1;
	*seen = p->line;
	return 0;
}

static int
kw_cluster(struct parser *p, char **tok, size_t ntok)
{
	struct hsm_config *cfg = p->cfg;
	struct hsm_cluster *c;
	size_t first = 0, n = cfg->nclusters;
	int rc;

	if (want_args(p, tok, ntok, 1, "NAME") != 0)
		return -1;
	if (!name_valid(tok[1]))
		return syntax(p, p->line, "invalid cluster name '%.80s'",
		    tok[1]);
	if ((rc = name_seen(p, NO_SCOPE, tok[1], &first)) < 0)
		return nomem(p);
	if (rc > 0)
		return syntax(p, p->line, "duplicate cluster '%s' "
		    "(first on line %zu)", tok[1], first);
	if (vec_full(n)) {
		size_t cap = vec_next(n);
		struct hsm_cluster *nc;
		size_t *nl;

		if ((nc = realloc(cfg->clusters, cap * sizeof(*nc))) == NULL)
			return nomem(p);
		cfg->clusters = nc;
		if ((nl = realloc(p->cl_line, cap * sizeof(*nl))) == NULL)
			return nomem(p);
		p->cl_line = nl;
	}
	c = &cfg->clusters[n];
	memset(c, 0, sizeof(*c));
	memcpy(c->name, tok[1], strlen(tok[1]) + 1);
	p->cl_line[n] = p->line;
	cfg->nclusters = n + 1;
	name_add(p, NO_SCOPE, n);
	p->cur = n;
	return 0;
}

static int
kw_node(struct parser *p, char **tok, size_t ntok)
{
	struct hsm_cluster *c;
	struct hsm_node_addr a;
	const char *why;
	size_t first = 0;
	int rc;

	if (want_args(p, tok, ntok, 2, "NAME HOST:PORT") != 0)
		return -1;
	if (p->cur == NO_SCOPE)
		return syntax(p, p->line, "'node' outside a 'cluster' block");
	c = &p->cfg->clusters[p->cur];
	if (!name_valid(tok[1]))
		return syntax(p, p->line, "invalid node name '%.80s'", tok[1]);
	memset(&a, 0, sizeof(a));
	memcpy(a.name, tok[1], strlen(tok[1]) + 1);
	if ((why = hostport(tok[2], a.host, sizeof(a.host), &a.port)) != NULL)
		return syntax(p, p->line, "bad address '%.80s' for node '%s': "
		    "%s", tok[2], tok[1], why);
	if ((rc = name_seen(p, p->cur, tok[1], &first)) < 0)
		return nomem(p);
	if (rc > 0)
		return syntax(p, p->line, "duplicate node '%s' in cluster '%s' "
		    "(first on line %zu)", tok[1], c->name, first);
	if (vec_full(c->nnodes)) {
		struct hsm_node_addr *nn = realloc(c->nodes,
		    vec_next(c->nnodes) * sizeof(*nn));

		if (nn == NULL)
			return nomem(p);
		c->nodes = nn;
	}
	c->nodes[c->nnodes] = a;
	name_add(p, p->cur, c->nnodes);
	c->nnodes++;
	return 0;
}

/* One line, without its '\n'. */
static int
parse_line(struct parser *p, const char *ls, size_t ll)
{
	char buf[CFG_LINE_MAX + 1], *tok[CFG_TOK_MAX], *s;
	size_t i, ntok = 0;

	if (ll > CFG_LINE_MAX)
		return syntax(p, p->line, "line longer than %d bytes",
		    CFG_LINE_MAX);
	if (ll > 0 && ls[ll - 1] == '\r')	/* CRLF */
		ll--;
	for (i = 0; i < ll; i++) {
		unsigned char c = (unsigned char)ls[i];

		if (c == '\0')
			return syntax(p, p->line, "NUL byte in line");
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return syntax(p, p->line,
			    "control character 0x%02x in line", c);
	}
	memcpy(buf, ls, ll);
	buf[ll] = '\0';

	/* Split on blanks; a word starting with '#' begins a comment. */
	s = buf;
	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0' || *s == '#')
			break;
		if (ntok < CFG_TOK_MAX)
			tok[ntok] = s;
		ntok++;
		while (*s != '\0' && *s != ' ' && *s != '\t')
			s++;
		if (*s != '\0')
			*s++ = '\0';
	}
	if (ntok == 0)
		return 0;
	/* Only tok[0..CFG_TOK_MAX) are kept; more is wrong for any keyword. */

	if (strcmp(tok[0], "default-cluster") == 0)
		return kw_default_cluster(p, tok, ntok);
	if (strcmp(tok[0], "terminal-key") == 0)
		return kw_path(p, tok, ntok, &p->cfg->terminal_key,
		    &p->tk_line);
	if (strcmp(tok[0], "known-hosts") == 0)
		return kw_path(p, tok, ntok, &p->cfg->known_hosts,
		    &p->kh_line);
	if (strcmp(tok[0], "cluster") == 0)
		return kw_cluster(p, tok, ntok);
	if (strcmp(tok[0], "node") == 0)
		return kw_node(p, tok, ntok);
	return syntax(p, p->line, "unknown keyword '%.80s'", tok[0]);
}

/* Checks that need the whole file; the earliest offending line wins. */
static int
parse_finish(struct parser *p)
{
	struct hsm_config *cfg = p->cfg;
	size_t i, empty = NO_SCOPE;

	for (i = 0; i < cfg->nclusters; i++)
		if (cfg->clusters[i].nnodes == 0) {
			empty = i;
			break;
		}
	if (cfg->default_cluster != NULL &&
	    hsm_config_cluster(cfg, cfg->default_cluster) == NULL &&
	    (empty == NO_SCOPE || p->dc_line < p->cl_line[empty]))
		return syntax(p, p->dc_line, "default-cluster '%s' is not "
		    "defined", cfg->default_cluster);
	if (empty != NO_SCOPE)
		return syntax(p, p->cl_line[empty], "cluster '%s' has no nodes",
		    cfg->clusters[empty].name);
	if (cfg->terminal_key == NULL &&
	    default_file("terminal_key", &cfg->terminal_key, p->st) != 0)
		return -1;
	if (cfg->known_hosts == NULL &&
	    default_file("known_hosts", &cfg->known_hosts, p->st) != 0)
		return -1;
	return 0;
}

int
hsm_config_parse(const char *path, const char *text, size_t len,
    struct hsm_config **out, hsm_status *st)
{
	struct parser p;
	size_t off = 0;

	if (out == NULL)
		return hsm_fail(st, "bad_value", "hsm_config_parse: no output");
	*out = NULL;
	if (text == NULL && len > 0)
		return hsm_fail(st, "bad_value", "hsm_config_parse: no text");

	memset(&p, 0, sizeof(p));
	p.file = path != NULL ? path : CFG_NOFILE;
	p.path = path;
	p.st = st;
	p.cur = NO_SCOPE;
	if ((p.cfg = calloc(1, sizeof(*p.cfg))) == NULL) {
		nomem(&p);
		goto fail;
	}
	if (path != NULL && (p.cfg->path = strdup(path)) == NULL) {
		nomem(&p);
		goto fail;
	}

	if (len > CFG_FILE_MAX) {
		/* Report the line holding the first byte past the limit. */
		size_t line = 1, i;

		for (i = 0; i < CFG_FILE_MAX; i++)
			if (text[i] == '\n')
				line++;
		syntax(&p, line, "config larger than %u bytes", CFG_FILE_MAX);
		goto fail;
	}
	while (off < len) {
		const char *ls = text + off;
		const char *nl = memchr(ls, '\n', len - off);
		size_t ll = nl != NULL ? (size_t)(nl - ls) : len - off;

		p.line++;
		if (parse_line(&p, ls, ll) != 0)
			goto fail;
		off += ll + (nl != NULL ? 1 : 0);
	}
	if (parse_finish(&p) != 0)
		goto fail;

	free(p.slots);
	free(p.cl_line);
	*out = p.cfg;
	return 0;
fail:
	free(p.slots);
	free(p.cl_line);
	hsm_config_free(&p.cfg);
	return -1;
}

/* ---- loading ----------------------------------------------------------- */

static void
errstr(int err, char *buf, size_t len)
{
	if (strerror_r(err, buf, len) != 0)
		snprintf(buf, len, "error %d", err);
}

/*
 * Read at most CFG_FILE_MAX + 1 bytes of path (one more than allowed, so
 * the parser reports an oversized file).  If the file does not exist and
 * may_be_absent, 0 is returned with *text NULL.
 */
static int
read_file(const char *path, bool may_be_absent, char **text, size_t *len,
    hsm_status *st)
{
	char eb[128], *buf = NULL;
	size_t cap = 0, n = 0;
	struct stat sb;
	int fd, err;

	*text = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		err = errno;
		if (may_be_absent && (err == ENOENT || err == ENOTDIR))
			return 0;
		errstr(err, eb, sizeof(eb));
		return hsm_fail(st, "config_io", "cannot open config '%s': %s",
		    path, eb);
	}
	if (fstat(fd, &sb) != 0) {
		err = errno;
		goto ioerr;
	}
	if (!S_ISREG(sb.st_mode)) {
		close(fd);
		return hsm_fail(st, "config_io", "config '%s' is not a regular "
		    "file", path);
	}
	for (;;) {
		ssize_t r;

		if (n == cap) {
			size_t ncap = cap == 0 ? 4096 : cap * 2;
			char *nb;

			if (cap == CFG_FILE_MAX + 1)
				break;
			if (ncap > CFG_FILE_MAX + 1)
				ncap = CFG_FILE_MAX + 1;
			if ((nb = realloc(buf, ncap)) == NULL) {
				free(buf);
				close(fd);
				return hsm_fail(st, "no_memory", "out of memory");
			}
			buf = nb;
			cap = ncap;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err = errno;
			goto ioerr;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (buf == NULL && (buf = malloc(1)) == NULL)
		return hsm_fail(st, "no_memory", "out of memory");
	*text = buf;
	*len = n;
	return 0;
ioerr:
	free(buf);
	close(fd);
	errstr(err, eb, sizeof(eb));
	return hsm_fail(st, "config_io", "cannot read config '%s': %s", path,
	    eb);
}

int
hsm_config_load(const char *explicit_path, struct hsm_config **out,
    hsm_status *st)
{
	const char *env = getenv("HSMCTL_CONFIG");
	char *path = NULL, *text = NULL;
	bool may_be_absent = false;
	size_t len = 0;
	int rc;

	if (out == NULL)
		return hsm_fail(st, "bad_value", "hsm_config_load: no output");
	*out = NULL;
	if (explicit_path != NULL) {
		if ((path = strdup(explicit_path)) == NULL)
			goto nomem;
	} else if (env != NULL && env[0] != '\0') {
		if ((path = strdup(env)) == NULL)
			goto nomem;
	} else {
		if (default_file("config", &path, st) != 0)
			goto fail;
		may_be_absent = true;
	}
	if (read_file(path, may_be_absent, &text, &len, st) != 0)
		goto fail;
	if (text == NULL)	/* absent: an empty configuration */
		rc = hsm_config_parse(NULL, "", 0, out, st);
	else
		rc = hsm_config_parse(path, text, len, out, st);
	if (rc != 0)
		goto fail;
	free(text);
	free(path);
	return 0;
nomem:
	hsm_fail(st, "no_memory", "out of memory");
fail:
	free(text);
	free(path);
	return -1;
}

void
hsm_config_free(struct hsm_config **cfg)
{
	struct hsm_config *c;
	size_t i;

	if (cfg == NULL || *cfg == NULL)
		return;
	c = *cfg;
	for (i = 0; i < c->nclusters; i++)
		free(c->clusters[i].nodes);
	free(c->clusters);
	free(c->path);
	free(c->default_cluster);
	free(c->terminal_key);
	free(c->known_hosts);
	free(c);
	*cfg = NULL;
}

const struct hsm_cluster *
hsm_config_cluster(const struct hsm_config *cfg, const char *name)
{
	size_t i;

	if (cfg == NULL || name == NULL)
		return NULL;
	for (i = 0; i < cfg->nclusters; i++)
		if (strcmp(cfg->clusters[i].name, name) == 0)
			return &cfg->clusters[i];
	return NULL;
}
