/*
 * Partition parameters, profiles and partition names (DESIGN §6).
 *
 * hsm_params[] is the one table of parameters: the node validates and
 * enforces from it, the CLI completes from it, "partition params" prints
 * it and the man page is checked against it.  DESIGN's table has 17 rows;
 * its first row holds the four API switches, so the table below has 20
 * entries.
 *
 * Values (hsm_param_normalize):
 *  - booleans: exactly on/off, true/false, yes/no, 1/0, lower case only
 *    ("On" is refused), shown as "on"/"off";
 *  - integers: decimal digits only (no sign, no spaces, no exponent),
 *    0 .. 2^53, leading zeros dropped ("007" -> "7");
 *  - IP lists: "" means any source.  Otherwise comma-separated entries,
 *    spaces and tabs around an entry ignored, each an IPv4 or IPv6
 *    address (inet_pton) with an optional /prefix (0..32, 0..128).  An
 *    entry whose address has bits set past the prefix (10.1.2.3/8) is
 *    refused, naming the network it probably means: an ACL silently wider
 *    than what was typed is worse than an error.  Canonical form: the
 *    inet_ntop text, no "/32" or "/128" on single addresses, IPv4-mapped
 *    IPv6 entries (::ffff:a.b.c.d with prefix >= 96) written as IPv4,
 *    exact duplicates dropped (first one kept), entries joined by ","
 *    with no spaces.  At most HSM_IPLIST_MAX entries as given.
 *  - every value, as given and normalised, is shorter than
 *    HSM_PARAM_VALUE_MAX bytes.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "hsmctl.h"

#define HSM_IPLIST_MAX 64
#define HSM_PARTITION_NAME_MAX 63
/* Longest entry text we look at: a full IPv6 address in IPv4 notation. */
#define HSM_IPENT_TEXT_MAX (INET6_ADDRSTRLEN + 4)
/* How much of a bad value a message quotes. */
#define HSM_SHOW_MAX 64

const struct hsm_param hsm_params[] = {
	{ "api.jce", HSM_PARAM_BOOL, "on", 0,
	    "the partition accepts the Java (JCE) API provider" },
	{ "api.cng", HSM_PARAM_BOOL, "off", 0,
	    "the partition accepts the Microsoft CNG API provider" },
	{ "api.pkcs11", HSM_PARAM_BOOL, "on", 0,
	    "the partition accepts the PKCS#11 API provider" },
	{ "api.rest", HSM_PARAM_BOOL, "off", 0,
	    "the partition accepts the REST API provider" },
	{ "api.access", HSM_PARAM_BOOL, "on", 0,
	    "off takes the partition offline: every technical-user call is "
	    "refused" },
	{ "ska", HSM_PARAM_BOOL, "off", HSM_PARAM_COST,
	    "Smart Key Attributes (multi-authorisation) licensed; cost option" },
	{ "crypto-currency", HSM_PARAM_BOOL, "off", HSM_PARAM_COST,
	    "crypto-currency functions licensed; cost option" },
	{ "key-import", HSM_PARAM_BOOL, "on", 0,
	    "import of keys (plain or wrapped) allowed" },
	{ "key-export", HSM_PARAM_BOOL, "on", 0,
	    "wrapped export allowed, only of keys with extractable=on" },
	{ "key-extraction", HSM_PARAM_BOOL, "off", 0,
	    "plain export allowed, only of keys with extractable=on and "
	    "sensitive=off" },
	{ "key-invalidation", HSM_PARAM_BOOL, "on", 0,
	    "API delete only invalidates (a bin): restorable or purgeable by "
	    "SO/PSO; still counts against quotas" },
	{ "read-only", HSM_PARAM_BOOL, "off", 0,
	    "keys usable, but no create, change or delete through the API" },
	{ "session-objects", HSM_PARAM_BOOL, "on", 0,
	    "ephemeral (session) keys allowed" },
	{ "object-destruction", HSM_PARAM_BOOL, "on", 0,
	    "off: every delete fails" },
	{ "object-usage", HSM_PARAM_BOOL, "on", 0,
	    "off: secret and private keys cannot sign, verify, encrypt, decrypt "
	    "or derive (wrap/unwrap follow import/export)" },
	{ "ip-acl", HSM_PARAM_IPLIST, "", 0,
	    "technical-user connections from source addresses outside these "
	    "IPs/CIDRs are refused (empty: any)" },
	{ "partition-admin", HSM_PARAM_BOOL, "off", 0,
	    "the PSO role is enabled for this partition" },
	{ "device-so-access", HSM_PARAM_BOOL, "on", HSM_PARAM_PSO_ONLY,
	    "off: the device SO can no longer change, reset or read anything "
	    "of this partition" },
	{ "size-mb", HSM_PARAM_INT, "10", HSM_PARAM_COST,
	    "storage quota in MB, including invalidated objects" },
	{ "max-key-objects", HSM_PARAM_INT, "0", HSM_PARAM_COST,
	    "object quota, including invalidated objects (0 = unlimited)" },
};

const size_t hsm_nparams = sizeof(hsm_params) / sizeof(hsm_params[0]);

const struct hsm_param *
hsm_param_find(const char *name)
{
	if (name == NULL)
		return NULL;
	for (size_t i = 0; i < hsm_nparams; i++)
		if (strcmp(hsm_params[i].name, name) == 0)
			return &hsm_params[i];
	return NULL;
}

/* ---- messages ----------------------------------------------------------- */

/*
 * Printable ASCII copy of (part of) an untrusted string for a message:
 * anything else becomes '?', so the message stays one line of valid UTF-8
 * (it travels as CBOR text); long input is cut with "...".
 */
static void
show(char *dst, size_t dstlen, const char *s, size_t n)
{
	size_t i, j = 0;

	if (dstlen == 0)
		return;
	for (i = 0; i < n && s[i] != '\0' && i < HSM_SHOW_MAX &&
	    j + 1 < dstlen; i++) {
		unsigned char c = (unsigned char)s[i];

		dst[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (i < n && s[i] != '\0')
		for (int k = 0; k < 3 && j + 1 < dstlen; k++)
			dst[j++] = '.';
	dst[j] = '\0';
}

static int
bad_value(hsm_status *st, const struct hsm_param *p, const char *value,
    const char *why)
{
	char v[HSM_SHOW_MAX + 4];

	show(v, sizeof(v), value, strlen(value));
	return hsm_fail(st, "bad_value", "%s: bad value \"%s\": %s", p->name,
	    v, why);
}

/* ---- booleans and integers ---------------------------------------------- */

static const struct {
	const char *in;
	bool on;
} bool_words[] = {
	{ "on", true }, { "off", false },
	{ "true", true }, { "false", false },
	{ "yes", true }, { "no", false },
	{ "1", true }, { "0", false },
};

static int
norm_bool(const char *value, char *buf, size_t buflen)
{
	for (size_t i = 0; i < sizeof(bool_words) / sizeof(bool_words[0]); i++)
		if (strcmp(bool_words[i].in, value) == 0) {
			snprintf(buf, buflen, "%s",
			    bool_words[i].on ? "on" : "off");
			return 0;
		}
	return -1;
}

#define HSM_INT_MAX_VALUE (UINT64_C(1) << 53)
#define HSM_INT_MAX_DIGITS 16	/* 2^53 = 9007199254740992 */

static int
norm_int(const char *value, char *buf, size_t buflen, const char **why)
{
	const char *s = value;
	uint64_t v = 0;
	size_t n;

	if (*s == '\0') {
		*why = "expected a non-negative decimal integer";
		return -1;
	}
	n = strspn(s, "0123456789");
	if (s[n] != '\0') {
		*why = "expected a non-negative decimal integer (digits only)";
		return -1;
	}
	while (*s == '0' && s[1] != '\0')
		s++;
	if (strlen(s) > HSM_INT_MAX_DIGITS) {
		*why = "larger than 2^53";
		return -1;
	}
	for (; *s != '\0'; s++)
		v = v * 10 + (uint64_t)(*s - '0');
	if (v > HSM_INT_MAX_VALUE) {
		*why = "larger than 2^53";
		return -1;
	}
	snprintf(buf, buflen, "%llu", (unsigned long long)v);
	return 0;
}

/* ---- IP lists ----------------------------------------------------------- */

struct ipent {
	int af;			/* AF_INET or AF_INET6 */
	unsigned char a[16];	/* 4 or 16 bytes used */
	unsigned prefix;	/* 0..32 or 0..128 */
};

static const unsigned char v4mapped[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

static unsigned
ipent_bits(const struct ipent *e)
{
	return e->af == AF_INET ? 32 : 128;
}

/* Do the first nbits bits of a and b agree? */
static bool
prefix_match(const unsigned char *a, const unsigned char *b, unsigned nbits)
{
	unsigned full = nbits / 8, rest = nbits % 8;

	if (memcmp(a, b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

/* e's address with the host bits cleared. */
static void
ipent_network(const struct ipent *e, unsigned char *net)
{
	unsigned len = ipent_bits(e) / 8;

	for (unsigned i = 0; i < len; i++) {
		unsigned lo = i * 8;
		unsigned char mask;

		if (e->prefix >= lo + 8)
			mask = 0xff;
		else if (e->prefix <= lo)
			mask = 0;
		else
			mask = (unsigned char)(0xff << (8 - (e->prefix - lo)));
		net[i] = e->a[i] & mask;
	}
}

/* An IPv4-mapped IPv6 address (and prefix) as the IPv4 one. */
static void
ipent_unmap(struct ipent *e)
{
	if (e->af != AF_INET6 || e->prefix < 96 ||
	    memcmp(e->a, v4mapped, sizeof(v4mapped)) != 0)
		return;
	memmove(e->a, e->a + 12, 4);
	memset(e->a + 4, 0, 12);
	e->af = AF_INET;
	e->prefix -= 96;
}

/* An address without prefix, as inet_pton reads it; mapped -> IPv4. */
static int
parse_addr(const char *s, struct ipent *e)
{
	memset(e, 0, sizeof(*e));
	if (strchr(s, ':') != NULL) {
		if (inet_pton(AF_INET6, s, e->a) != 1)
			return -1;
		e->af = AF_INET6;
		e->prefix = 128;
	} else {
		if (inet_pton(AF_INET, s, e->a) != 1)
			return -1;
		e->af = AF_INET;
		e->prefix = 32;
	}
	return 0;
}

/*
 * One entry, s[0..n), already trimmed.  On failure msg gets the reason,
 * quoting the entry.
 */
static int
parse_entry(const char *s, size_t n, struct ipent *e, char *msg,
    size_t msglen)
{
	char txt[HSM_IPENT_TEXT_MAX + 1], shown[HSM_SHOW_MAX + 4];
	char *slash;
	unsigned prefix = 0;
	bool has_prefix = false;

	show(shown, sizeof(shown), s, n);
	if (n == 0) {
		snprintf(msg, msglen, "empty entry in the list");
		return -1;
	}
	if (n > HSM_IPENT_TEXT_MAX) {
		snprintf(msg, msglen, "entry \"%s\" is not an IPv4 or IPv6 "
		    "address", shown);
		return -1;
	}
	memcpy(txt, s, n);
	txt[n] = '\0';
	slash = strchr(txt, '/');
	if (slash != NULL) {
		const char *d = slash + 1;
		size_t nd = strspn(d, "0123456789");

		*slash = '\0';
		if (nd == 0 || nd > 3 || d[nd] != '\0') {
			snprintf(msg, msglen, "entry \"%s\": bad prefix length",
			    shown);
			return -1;
		}
		for (size_t i = 0; i < nd; i++)
			prefix = prefix * 10 + (unsigned)(d[i] - '0');
		has_prefix = true;
	}
	if (txt[0] == '\0' || parse_addr(txt, e) != 0) {
		snprintf(msg, msglen, "entry \"%s\" is not an IPv4 or IPv6 "
		    "address", shown);
		return -1;
	}
	if (has_prefix) {
		if (prefix > ipent_bits(e)) {
			snprintf(msg, msglen, "entry \"%s\": prefix length "
			    "above %u", shown, ipent_bits(e));
			return -1;
		}
		e->prefix = prefix;
	}
	ipent_unmap(e);

	unsigned char net[16];

	ipent_network(e, net);
	if (memcmp(net, e->a, ipent_bits(e) / 8) != 0) {
		char nettxt[INET6_ADDRSTRLEN];

		if (inet_ntop(e->af, net, nettxt, sizeof(nettxt)) == NULL)
			nettxt[0] = '\0';
		snprintf(msg, msglen, "entry \"%s\" has host bits set (the "
		    "network is %s/%u)", shown, nettxt, e->prefix);
		return -1;
	}
	return 0;
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Parse a whole list into ents (duplicates dropped). */
static int
parse_list(const char *value, struct ipent *ents, size_t *nents, char *msg,
    size_t msglen)
{
	const char *p = value;
	size_t given = 0;

	*nents = 0;
	if (*value == '\0')
		return 0;
	for (;;) {
		const char *end = strchr(p, ',');
		const char *b = p, *t;
		struct ipent e;
		bool dup = false;

		if (end == NULL)
			end = p + strlen(p);
		t = end;
		while (b < t && is_blank(*b))
			b++;
		while (t > b && is_blank(t[-1]))
			t--;
		if (++given > HSM_IPLIST_MAX) {
			snprintf(msg, msglen, "more than %d entries",
			    HSM_IPLIST_MAX);
			return -1;
		}
		if (parse_entry(b, (size_t)(t - b), &e, msg, msglen) != 0)
			return -1;
		for (size_t i = 0; i < *nents && !dup; i++)
			dup = ents[i].af == e.af &&
			    ents[i].prefix == e.prefix &&
			    memcmp(ents[i].a, e.a, sizeof(e.a)) == 0;
		if (!dup)
			ents[(*nents)++] = e;
		if (*end == '\0')
			break;
		p = end + 1;
	}
	return 0;
}

static int
norm_iplist(const char *value, char *buf, size_t buflen, char *msg,
    size_t msglen)
{
	struct ipent ents[HSM_IPLIST_MAX];
	size_t n, used = 0;

	if (parse_list(value, ents, &n, msg, msglen) != 0)
		return -1;
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		char a[INET6_ADDRSTRLEN];
		int k;

		if (inet_ntop(ents[i].af, ents[i].a, a, sizeof(a)) == NULL) {
			snprintf(msg, msglen, "cannot format an address");
			return -1;
		}
		if (ents[i].prefix == ipent_bits(&ents[i]))
			k = snprintf(buf + used, buflen - used, "%s%s",
			    i > 0 ? "," : "", a);
		else
			k = snprintf(buf + used, buflen - used, "%s%s/%u",
			    i > 0 ? "," : "", a, ents[i].prefix);
		if (k < 0 || (size_t)k >= buflen - used) {
			snprintf(msg, msglen, "list longer than %d bytes",
			    HSM_PARAM_VALUE_MAX - 1);
			return -1;
		}
		used += (size_t)k;
	}
	return 0;
}

bool
hsm_iplist_allows(const char *list, const char *addr)
{
	struct ipent ents[HSM_IPLIST_MAX], a;
	char msg[HSM_MSG_MAX];
	size_t n;

	if (list == NULL || addr == NULL)
		return false;
	if (*list == '\0')
		return true;
	if (strnlen(list, HSM_PARAM_VALUE_MAX) >= HSM_PARAM_VALUE_MAX ||
	    strnlen(addr, HSM_IPENT_TEXT_MAX + 1) > HSM_IPENT_TEXT_MAX)
		return false;
	/* A list that does not parse allows nothing: fail closed. */
	if (parse_list(list, ents, &n, msg, sizeof(msg)) != 0)
		return false;
	if (parse_addr(addr, &a) != 0)
		return false;
	ipent_unmap(&a);
	for (size_t i = 0; i < n; i++)
		if (ents[i].af == a.af &&
		    prefix_match(ents[i].a, a.a, ents[i].prefix))
			return true;
	return false;
}

/* ---- normalise ---------------------------------------------------------- */

/* Normalise value into buf (HSM_PARAM_VALUE_MAX bytes). */
static int
normalize(const struct hsm_param *p, const char *value, char *buf,
    hsm_status *st)
{
	char msg[HSM_MSG_MAX];
	const char *why = NULL;

	buf[0] = '\0';
	if (strnlen(value, HSM_PARAM_VALUE_MAX) >= HSM_PARAM_VALUE_MAX)
		return bad_value(st, p, value, "value too long");
	switch (p->type) {
	case HSM_PARAM_BOOL:
		if (norm_bool(value, buf, HSM_PARAM_VALUE_MAX) != 0)
			return bad_value(st, p, value,
			    "expected on/off, true/false, yes/no or 1/0");
		return 0;
	case HSM_PARAM_INT:
		if (norm_int(value, buf, HSM_PARAM_VALUE_MAX, &why) != 0)
			return bad_value(st, p, value, why);
		return 0;
	case HSM_PARAM_IPLIST:
		if (norm_iplist(value, buf, HSM_PARAM_VALUE_MAX, msg,
		    sizeof(msg)) != 0)
			return bad_value(st, p, value, msg);
		return 0;
	}
	return hsm_fail(st, "internal", "%s: unknown parameter type", p->name);
}

/* out may be value itself: it is written only at the end. */
int
hsm_param_normalize(const struct hsm_param *p, const char *value, char *out,
    size_t outlen, hsm_status *st)
{
	char buf[HSM_PARAM_VALUE_MAX];
	size_t n;

	if (p == NULL || value == NULL || out == NULL || outlen == 0) {
		if (out != NULL && outlen > 0)
			out[0] = '\0';
		return hsm_fail(st, "internal", "hsm_param_normalize: "
		    "missing argument");
	}
	if (normalize(p, value, buf, st) != 0) {
		out[0] = '\0';
		return -1;
	}
	n = strlen(buf);
	if (n >= outlen) {
		out[0] = '\0';
		return hsm_fail(st, "internal", "%s: output buffer too small",
		    p->name);
	}
	memcpy(out, buf, n + 1);
	return 0;
}

/* ---- profiles ----------------------------------------------------------- */

static const char *const prof_none[] = { NULL };
static const char *const prof_eco_cc[] = { "key-extraction=off", NULL };
static const char *const prof_platinum[] = { "size-mb=120", NULL };

#define BYOK_SETTINGS(n)						\
	"size-mb=1", "max-key-objects=" #n, "api.jce=on", "api.cng=off",\
	"api.pkcs11=off", "api.rest=off", "key-import=off",		\
	"key-export=on", "key-extraction=off", "object-usage=off", NULL

static const char *const prof_byok3[] = { BYOK_SETTINGS(3) };
static const char *const prof_byok10[] = { BYOK_SETTINGS(10) };
static const char *const prof_byok200[] = { BYOK_SETTINGS(200) };

#define BYOK_HELP(n)							\
	"bring your own key: 1 MB, at most " #n " key objects, only "	\
	"api.jce; key-import off, key-export on, key-extraction off, "	\
	"object-usage off"

const struct hsm_profile hsm_profiles[] = {
	{ "eco", "the default: every parameter at its default (10 MB, "
	    "unlimited key objects)", prof_none },
	{ "eco-cc", "certified mode: only approved algorithms; key-extraction "
	    "locked off", prof_eco_cc },
	{ "sbx", "test tier, marked as non-productive; parameters at their "
	    "defaults", prof_none },
	{ "platinum", "120 MB storage; other parameters at their defaults",
	    prof_platinum },
	{ "byok-3", BYOK_HELP(3), prof_byok3 },
	{ "byok-10", BYOK_HELP(10), prof_byok10 },
	{ "byok-200", BYOK_HELP(200), prof_byok200 },
};

const size_t hsm_nprofiles = sizeof(hsm_profiles) / sizeof(hsm_profiles[0]);

const struct hsm_profile *
hsm_profile_find(const char *name)
{
	if (name == NULL)
		return NULL;
	for (size_t i = 0; i < hsm_nprofiles; i++)
		if (strcmp(hsm_profiles[i].name, name) == 0)
			return &hsm_profiles[i];
	return NULL;
}

/* ---- partition names ---------------------------------------------------- */

bool
hsm_partition_name_ok(const char *name)
{
	size_t n;

	if (name == NULL)
		return false;
	n = strnlen(name, HSM_PARTITION_NAME_MAX + 1);
	if (n == 0 || n > HSM_PARTITION_NAME_MAX)
		return false;
	if (strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789") == 0)
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}
