/*
 * Unit tests for lib/params.c: the partition parameter table (DESIGN §6),
 * value normalisation, IP lists, profiles and partition names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "hsmctl.h"

/*
 * DESIGN §6, row by row.  Its 17 rows hold 20 parameters: the first row
 * is api.jce, api.cng, api.pkcs11 and api.rest.  Spelled out here rather
 * than derived from lib/params.c: this is the interface.
 */
static const struct {
	const char *name;
	enum hsm_param_type type;
	const char *dflt;
	unsigned flags;
} want[] = {
	{ "api.jce", HSM_PARAM_BOOL, "on", 0 },
	{ "api.cng", HSM_PARAM_BOOL, "off", 0 },
	{ "api.pkcs11", HSM_PARAM_BOOL, "on", 0 },
	{ "api.rest", HSM_PARAM_BOOL, "off", 0 },
	{ "api.access", HSM_PARAM_BOOL, "on", 0 },
	{ "ska", HSM_PARAM_BOOL, "off", HSM_PARAM_COST },
	{ "crypto-currency", HSM_PARAM_BOOL, "off", HSM_PARAM_COST },
	{ "key-import", HSM_PARAM_BOOL, "on", 0 },
	{ "key-export", HSM_PARAM_BOOL, "on", 0 },
	{ "key-extraction", HSM_PARAM_BOOL, "off", 0 },
	{ "key-invalidation", HSM_PARAM_BOOL, "on", 0 },
	{ "read-only", HSM_PARAM_BOOL, "off", 0 },
	{ "session-objects", HSM_PARAM_BOOL, "on", 0 },
	{ "object-destruction", HSM_PARAM_BOOL, "on", 0 },
	{ "object-usage", HSM_PARAM_BOOL, "on", 0 },
	{ "ip-acl", HSM_PARAM_IPLIST, "", 0 },
	{ "partition-admin", HSM_PARAM_BOOL, "off", 0 },
	{ "device-so-access", HSM_PARAM_BOOL, "on", HSM_PARAM_PSO_ONLY },
	{ "size-mb", HSM_PARAM_INT, "10", HSM_PARAM_COST },
	{ "max-key-objects", HSM_PARAM_INT, "0", HSM_PARAM_COST },
};

#define NWANT (sizeof(want) / sizeof(want[0]))

static const struct hsm_param *
param(const char *name)
{
	const struct hsm_param *p = hsm_param_find(name);

	if (p == NULL) {
		print_error("no parameter %s\n", name);
		fail();
	}
	return p;
}

/* name=value must normalise to expect. */
static void
check_ok(const char *name, const char *value, const char *expect)
{
	char out[HSM_PARAM_VALUE_MAX];
	hsm_status st;

	hsm_status_clear(&st);
	if (hsm_param_normalize(param(name), value, out, sizeof(out),
	    &st) != 0) {
		print_error("%s=\"%s\": refused: %s: %s\n", name, value,
		    st.code, st.message);
		fail();
	}
	if (strcmp(out, expect) != 0) {
		print_error("%s=\"%s\": got \"%s\", want \"%s\"\n", name,
		    value, out, expect);
		fail();
	}
}

/* name=value must be refused with bad_value; returns the message. */
static const char *
check_bad(const char *name, const char *value)
{
	static hsm_status st;
	char out[HSM_PARAM_VALUE_MAX];

	hsm_status_clear(&st);
	memset(out, 'x', sizeof(out));
	if (hsm_param_normalize(param(name), value, out, sizeof(out),
	    &st) == 0) {
		print_error("%s=\"%.80s\": accepted as \"%.80s\"\n", name,
		    value, out);
		fail();
	}
	assert_string_equal(st.code, "bad_value");
	assert_int_equal(hsm_code_exit(st.code), HSM_EXIT_USAGE);
	/* The message names the parameter and is one printable line. */
	assert_non_null(strstr(st.message, name));
	for (const char *m = st.message; *m != '\0'; m++)
		assert_true(*m >= 0x20 && *m < 0x7f);
	assert_string_equal(out, "");
	return st.message;
}

/* ---- the table ---- */

static void
test_table(void **state)
{
	char out[HSM_PARAM_VALUE_MAX];
	hsm_status st;

	(void)state;
	assert_int_equal(hsm_nparams, NWANT);
	assert_int_equal(hsm_nparams, 20);
	for (size_t i = 0; i < hsm_nparams; i++) {
		const struct hsm_param *p = &hsm_params[i];

		assert_string_equal(p->name, want[i].name);
		assert_int_equal(p->type, want[i].type);
		assert_string_equal(p->dflt, want[i].dflt);
		assert_int_equal(p->flags, want[i].flags);
		assert_non_null(p->help);
		assert_true(strlen(p->help) > 10);
		assert_null(strchr(p->help, '\n'));
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(hsm_params[j].name, p->name);
		assert_ptr_equal(hsm_param_find(p->name), p);
		/* Each default is already normalised. */
		hsm_status_clear(&st);
		assert_int_equal(hsm_param_normalize(p, p->dflt, out,
		    sizeof(out), &st), 0);
		assert_string_equal(out, p->dflt);
	}
}

static void
test_find(void **state)
{
	(void)state;
	assert_null(hsm_param_find("API.JCE"));
	assert_null(hsm_param_find("api"));
	assert_null(hsm_param_find("api.jce "));
	assert_null(hsm_param_find(""));
	assert_null(hsm_param_find(NULL));
	assert_null(hsm_param_find("size_mb"));
}

/* ---- booleans ---- */

static void
test_bool_spellings(void **state)
{
	(void)state;
	for (size_t i = 0; i < hsm_nparams; i++) {
		const char *n = hsm_params[i].name;

		if (hsm_params[i].type != HSM_PARAM_BOOL)
			continue;
		check_ok(n, "on", "on");
		check_ok(n, "off", "off");
		check_ok(n, "true", "on");
		check_ok(n, "false", "off");
		check_ok(n, "yes", "on");
		check_ok(n, "no", "off");
		check_ok(n, "1", "on");
		check_ok(n, "0", "off");
	}
}

static void
test_bool_bad(void **state)
{
	static const char *const bad[] = {
		"On", "OFF", "TRUE", "Yes", "2", "", "onn", " on", "on ",
		"y", "n", "01", "-1", "enabled", "o", "of", "on\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		check_bad("read-only", bad[i]);
		check_bad("api.jce", bad[i]);
	}
	assert_non_null(strstr(check_bad("ska", "maybe"), "maybe"));
}

/* ---- integers ---- */

static void
test_int_good(void **state)
{
	(void)state;
	check_ok("size-mb", "0", "0");
	check_ok("size-mb", "10", "10");
	check_ok("size-mb", "007", "7");
	check_ok("size-mb", "000", "0");
	check_ok("max-key-objects", "200", "200");
	check_ok("max-key-objects", "9007199254740992", "9007199254740992");
	check_ok("max-key-objects", "0000000000000000000009007199254740992",
	    "9007199254740992");
	check_ok("size-mb", "9007199254740991", "9007199254740991");
}

static void
test_int_bad(void **state)
{
	static const char *const bad[] = {
		"9007199254740993", "9007199254740999", "10000000000000000",
		"18446744073709551616", "99999999999999999999999999", "-1",
		"-0", "+1", "1e3", "", " 1", "1 ", "0x10", "1.0", "1,000",
		"ten", "1_000", "\t1",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		check_bad("size-mb", bad[i]);
		check_bad("max-key-objects", bad[i]);
	}
}

/* ---- IP lists ---- */

static void
test_iplist_good(void **state)
{
	(void)state;
	check_ok("ip-acl", "", "");
	check_ok("ip-acl", "10.0.0.1", "10.0.0.1");
	check_ok("ip-acl", "10.0.0.1/32", "10.0.0.1");
	check_ok("ip-acl", "10.0.0.0/8", "10.0.0.0/8");
	check_ok("ip-acl", "10.0.0.0/08", "10.0.0.0/8");
	check_ok("ip-acl", "192.168.1.0/24", "192.168.1.0/24");
	check_ok("ip-acl", "10.128.0.0/9", "10.128.0.0/9");
	check_ok("ip-acl", "0.0.0.0/0", "0.0.0.0/0");
	check_ok("ip-acl", "2001:DB8::1", "2001:db8::1");
	check_ok("ip-acl", "2001:db8:0:0:0:0:0:1/128", "2001:db8::1");
	check_ok("ip-acl", "2001:0db8::/32", "2001:db8::/32");
	check_ok("ip-acl", "::1", "::1");
	check_ok("ip-acl", "::/0", "::/0");
	check_ok("ip-acl", "fe80::/10", "fe80::/10");
	/* IPv4-mapped IPv6 is the IPv4 address. */
	check_ok("ip-acl", "::ffff:10.0.0.1", "10.0.0.1");
	check_ok("ip-acl", "::FFFF:a00:1", "10.0.0.1");
	check_ok("ip-acl", "::ffff:10.0.0.0/104", "10.0.0.0/8");
	check_ok("ip-acl", "::ffff:0:0/96", "0.0.0.0/0");
	/* A prefix shorter than 96 stays IPv6. */
	check_ok("ip-acl", "::fffe:0:0/95", "::fffe:0:0/95");
	/* Mixed, with spaces and tabs around entries. */
	check_ok("ip-acl", " 10.0.0.0/8 , 2001:db8::/32,\t192.168.1.1 ",
	    "10.0.0.0/8,2001:db8::/32,192.168.1.1");
	/* Duplicates, also in other spellings, go; the first one stays. */
	check_ok("ip-acl", "10.0.0.1,10.0.0.1/32, 10.0.0.1,::ffff:10.0.0.1",
	    "10.0.0.1");
	check_ok("ip-acl", "10.0.0.0/8,192.168.0.0/16,10.0.0.0/8",
	    "10.0.0.0/8,192.168.0.0/16");
	check_ok("ip-acl", "2001:db8::1,2001:DB8:0::1,10.0.0.1",
	    "2001:db8::1,10.0.0.1");
	/* Different prefixes of one network are different entries. */
	check_ok("ip-acl", "10.0.0.0/8,10.0.0.0/16",
	    "10.0.0.0/8,10.0.0.0/16");
}

static void
test_iplist_host_bits(void **state)
{
	const char *m;

	(void)state;
	/* Refused, naming the network it probably meant. */
	m = check_bad("ip-acl", "10.1.2.3/8");
	assert_non_null(strstr(m, "10.0.0.0/8"));
	m = check_bad("ip-acl", "192.168.1.1/24");
	assert_non_null(strstr(m, "192.168.1.0/24"));
	m = check_bad("ip-acl", "2001:db8::1/32");
	assert_non_null(strstr(m, "2001:db8::/32"));
	check_bad("ip-acl", "10.0.0.1/0");
	check_bad("ip-acl", "10.0.0.0/8,10.1.0.0/8");
	check_bad("ip-acl", "::ffff:10.0.0.1/104");
}

static void
test_iplist_bad(void **state)
{
	static const char *const bad[] = {
		"1.2.3", "1.2.3.4.5", "256.0.0.1", "010.0.0.1", "::g",
		"1:2:3:4:5:6:7:8:9", "10.0.0.0/33", "::/129", "/8", "/",
		",,", ",", "10.0.0.1,", ",10.0.0.1", "10.0.0.1,,10.0.0.2",
		"10.0.0.1/", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/8/8",
		"10.0.0.0/0008", "10.0.0.0/ 8", "10.0.0.0 /8",
		"fe80::1%eth0", "localhost", "host.example", " ", "\t",
		"10.0.0.1 10.0.0.2", "10.0.0.1;10.0.0.2", "*", "any",
		"10.0.0.1\n", "0x0a000001",
	};
	char big[4 * HSM_PARAM_VALUE_MAX];
	size_t n = 0;
	const char *m;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		check_bad("ip-acl", bad[i]);
	m = check_bad("ip-acl", "10.0.0.1, 1.2.3");
	assert_non_null(strstr(m, "1.2.3"));

	/* 64 entries are fine, 65 are not. */
	for (int i = 0; i < 64; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, "%s10.0.0.%d",
		    i > 0 ? "," : "", i);
	check_ok("ip-acl", big, big);
	snprintf(big + n, sizeof(big) - n, ",10.0.0.64");
	m = check_bad("ip-acl", big);
	assert_non_null(strstr(m, "64"));
	/* Even when the 65th is a duplicate: the list as given counts. */
	snprintf(big + n, sizeof(big) - n, ",10.0.0.1");
	check_bad("ip-acl", big);

	/* Too long in total: 30 full IPv6 addresses (< 64 entries). */
	n = 0;
	for (int i = 0; i < 30; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n,
		    "%sffff:ffff:ffff:ffff:ffff:ffff:ffff:%x",
		    i > 0 ? "," : "", i);
	assert_true(n >= HSM_PARAM_VALUE_MAX);
	check_bad("ip-acl", big);
	/* A long run of blanks alone is too long, too. */
	memset(big, ' ', HSM_PARAM_VALUE_MAX);
	memcpy(big, "10.0.0.1", 8);
	big[HSM_PARAM_VALUE_MAX] = '\0';
	check_bad("ip-acl", big);
}

static void
test_bad_value_message(void **state)
{
	const char *m;

	(void)state;
	/* Control characters and non-ASCII bytes do not reach the message. */
	m = check_bad("ip-acl", "10.0.0.1\n\x01\xff");
	assert_non_null(strstr(m, "ip-acl"));
	m = check_bad("read-only", "\x1b[31mred");
	assert_null(strchr(m, '\x1b'));
}

static void
test_iplist_allows(void **state)
{
	(void)state;
	/* Empty list: any source. */
	assert_true(hsm_iplist_allows("", "10.0.0.1"));
	assert_true(hsm_iplist_allows("", "2001:db8::1"));
	assert_true(hsm_iplist_allows("", "::ffff:1.2.3.4"));

	/* IPv4 CIDR edges. */
	assert_true(hsm_iplist_allows("10.0.0.0/8", "10.0.0.0"));
	assert_true(hsm_iplist_allows("10.0.0.0/8", "10.1.2.3"));
	assert_true(hsm_iplist_allows("10.0.0.0/8", "10.255.255.255"));
	assert_false(hsm_iplist_allows("10.0.0.0/8", "11.0.0.0"));
	assert_false(hsm_iplist_allows("10.0.0.0/8", "9.255.255.255"));
	assert_true(hsm_iplist_allows("10.0.0.0/9", "10.127.255.255"));
	assert_false(hsm_iplist_allows("10.0.0.0/9", "10.128.0.0"));
	assert_true(hsm_iplist_allows("10.128.0.0/9", "10.128.0.0"));
	assert_true(hsm_iplist_allows("192.168.1.0/31", "192.168.1.1"));
	assert_false(hsm_iplist_allows("192.168.1.0/31", "192.168.1.2"));
	assert_true(hsm_iplist_allows("0.0.0.0/0", "255.255.255.255"));

	/* Single addresses. */
	assert_true(hsm_iplist_allows("192.168.1.1", "192.168.1.1"));
	assert_false(hsm_iplist_allows("192.168.1.1", "192.168.1.2"));
	assert_true(hsm_iplist_allows("2001:db8::1", "2001:DB8:0::1"));
	assert_false(hsm_iplist_allows("2001:db8::1", "2001:db8::2"));

	/* IPv6 CIDR edges. */
	assert_true(hsm_iplist_allows("2001:db8::/32", "2001:db8::"));
	assert_true(hsm_iplist_allows("2001:db8::/32",
	    "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
	assert_false(hsm_iplist_allows("2001:db8::/32", "2001:db9::"));
	assert_false(hsm_iplist_allows("2001:db8::/32",
	    "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"));
	assert_true(hsm_iplist_allows("::/0", "::1"));

	/* IPv4-mapped sources match IPv4 entries, and mapped entries. */
	assert_true(hsm_iplist_allows("10.0.0.0/8", "::ffff:10.0.0.1"));
	assert_true(hsm_iplist_allows("10.0.0.0/8", "::FFFF:a00:1"));
	assert_false(hsm_iplist_allows("10.0.0.0/8", "::ffff:11.0.0.1"));
	assert_true(hsm_iplist_allows("10.0.0.1", "::ffff:10.0.0.1"));
	assert_true(hsm_iplist_allows("::ffff:192.168.1.0/120",
	    "192.168.1.77"));
	/* ... but IPv4 and IPv6 entries do not cover each other. */
	assert_false(hsm_iplist_allows("10.0.0.0/8", "::a00:1"));
	assert_false(hsm_iplist_allows("0.0.0.0/0", "2001:db8::1"));
	assert_false(hsm_iplist_allows("::/0", "10.0.0.1"));
	assert_false(hsm_iplist_allows("::fffe:0:0/95", "10.0.0.1"));
	assert_true(hsm_iplist_allows("::fffe:0:0/95", "::fffe:0:1"));

	/* Mixed lists: any entry will do. */
	assert_true(hsm_iplist_allows("10.0.0.0/8,2001:db8::/32",
	    "2001:db8::5"));
	assert_true(hsm_iplist_allows("10.0.0.0/8,2001:db8::/32", "10.9.9.9"));
	assert_false(hsm_iplist_allows("10.0.0.0/8,2001:db8::/32",
	    "192.168.0.1"));

	/* Anything unparsable allows nothing. */
	assert_false(hsm_iplist_allows("10.0.0.0/8", ""));
	assert_false(hsm_iplist_allows("10.0.0.0/8", "10.0.0"));
	assert_false(hsm_iplist_allows("10.0.0.0/8", "10.0.0.1/32"));
	assert_false(hsm_iplist_allows("10.0.0.0/8", " 10.0.0.1"));
	assert_false(hsm_iplist_allows("10.0.0.0/8", "localhost"));
	assert_false(hsm_iplist_allows("10.0.0.0/8", NULL));
	assert_false(hsm_iplist_allows(NULL, "10.0.0.1"));
	assert_false(hsm_iplist_allows("10.0.0.0/8,bogus", "10.0.0.1"));
	assert_false(hsm_iplist_allows(",", "10.0.0.1"));
}

/* ---- profiles ---- */

static const char *const byok_common[] = {
	"size-mb=1", "api.jce=on", "api.cng=off", "api.pkcs11=off",
	"api.rest=off", "key-import=off", "key-export=on",
	"key-extraction=off", "object-usage=off", NULL
};

static size_t
nsettings(const struct hsm_profile *pr)
{
	size_t n = 0;

	while (pr->settings[n] != NULL)
		n++;
	return n;
}

static bool
has_setting(const struct hsm_profile *pr, const char *s)
{
	for (size_t i = 0; pr->settings[i] != NULL; i++)
		if (strcmp(pr->settings[i], s) == 0)
			return true;
	return false;
}

static void
test_profiles_valid(void **state)
{
	static const char *const names[] = {
		"eco", "eco-cc", "sbx", "platinum", "byok-3", "byok-10",
		"byok-200",
	};

	(void)state;
	assert_int_equal(hsm_nprofiles, 7);
	for (size_t i = 0; i < hsm_nprofiles; i++) {
		const struct hsm_profile *pr = &hsm_profiles[i];

		assert_string_equal(pr->name, names[i]);
		assert_ptr_equal(hsm_profile_find(names[i]), pr);
		assert_non_null(pr->help);
		assert_true(strlen(pr->help) > 10);
		assert_null(strchr(pr->help, '\n'));
		assert_non_null(pr->settings);
		for (size_t j = 0; pr->settings[j] != NULL; j++) {
			const char *s = pr->settings[j];
			const char *eq = strchr(s, '=');
			char name[64], out[HSM_PARAM_VALUE_MAX];
			const struct hsm_param *p;
			hsm_status st;

			assert_non_null(eq);
			assert_true((size_t)(eq - s) < sizeof(name));
			memcpy(name, s, (size_t)(eq - s));
			name[eq - s] = '\0';
			p = hsm_param_find(name);
			if (p == NULL) {
				print_error("profile %s: unknown parameter in "
				    "%s\n", pr->name, s);
				fail();
			}
			/* Valid and already normalised. */
			hsm_status_clear(&st);
			assert_int_equal(hsm_param_normalize(p, eq + 1, out,
			    sizeof(out), &st), 0);
			assert_string_equal(out, eq + 1);
			/* Each parameter at most once. */
			for (size_t k = 0; k < j; k++)
				assert_false(strncmp(pr->settings[k], s,
				    (size_t)(eq - s) + 1) == 0);
		}
	}
	assert_null(hsm_profile_find("ECO"));
	assert_null(hsm_profile_find("byok"));
	assert_null(hsm_profile_find("byok-4"));
	assert_null(hsm_profile_find(""));
	assert_null(hsm_profile_find(NULL));
}

static void
test_profiles_settings(void **state)
{
	const struct hsm_profile *pr;
	static const struct {
		const char *name, *max;
	} byok[] = {
		{ "byok-3", "max-key-objects=3" },
		{ "byok-10", "max-key-objects=10" },
		{ "byok-200", "max-key-objects=200" },
	};

	(void)state;
	/* eco is the default: first, and changes nothing. */
	assert_string_equal(hsm_profiles[0].name, "eco");
	pr = hsm_profile_find("eco");
	assert_int_equal(nsettings(pr), 0);
	pr = hsm_profile_find("sbx");
	assert_int_equal(nsettings(pr), 0);
	pr = hsm_profile_find("eco-cc");
	assert_int_equal(nsettings(pr), 1);
	assert_true(has_setting(pr, "key-extraction=off"));
	pr = hsm_profile_find("platinum");
	assert_int_equal(nsettings(pr), 1);
	assert_true(has_setting(pr, "size-mb=120"));
	for (size_t i = 0; i < sizeof(byok) / sizeof(byok[0]); i++) {
		pr = hsm_profile_find(byok[i].name);
		assert_non_null(pr);
		assert_int_equal(nsettings(pr), 10);
		assert_true(has_setting(pr, byok[i].max));
		for (size_t j = 0; byok_common[j] != NULL; j++)
			assert_true(has_setting(pr, byok_common[j]));
	}
}

/* ---- partition names ---- */

static void
test_partition_names(void **state)
{
	char name[80];

	(void)state;
	assert_true(hsm_partition_name_ok("a"));
	assert_true(hsm_partition_name_ok("0"));
	assert_true(hsm_partition_name_ok("payments"));
	assert_true(hsm_partition_name_ok("pay-2024"));
	assert_true(hsm_partition_name_ok("9lives"));
	assert_true(hsm_partition_name_ok("a--b"));
	assert_true(hsm_partition_name_ok("a-"));
	assert_false(hsm_partition_name_ok("-a"));
	assert_false(hsm_partition_name_ok("-"));
	assert_false(hsm_partition_name_ok("Payments"));
	assert_false(hsm_partition_name_ok("paYments"));
	assert_false(hsm_partition_name_ok("a_b"));
	assert_false(hsm_partition_name_ok("a.b"));
	assert_false(hsm_partition_name_ok("a b"));
	assert_false(hsm_partition_name_ok("a/b"));
	assert_false(hsm_partition_name_ok("a\n"));
	assert_false(hsm_partition_name_ok("caf\xc3\xa9"));
	assert_false(hsm_partition_name_ok(""));
	assert_false(hsm_partition_name_ok(NULL));

	memset(name, 'a', 63);
	name[63] = '\0';
	assert_true(hsm_partition_name_ok(name));
	name[62] = '-';
	assert_true(hsm_partition_name_ok(name));
	memset(name, 'a', 64);
	name[64] = '\0';
	assert_false(hsm_partition_name_ok(name));
	memset(name, 'b', 79);
	name[79] = '\0';
	assert_false(hsm_partition_name_ok(name));
}

/* ---- hsm_param_normalize's own contract ---- */

static void
test_normalize_args(void **state)
{
	char out[8], small[3];
	hsm_status st;

	(void)state;
	hsm_status_clear(&st);
	assert_int_equal(hsm_param_normalize(NULL, "on", out, sizeof(out),
	    &st), -1);
	assert_string_equal(st.code, "internal");
	assert_int_equal(hsm_param_normalize(param("read-only"), NULL, out,
	    sizeof(out), &st), -1);
	/* A buffer too small for the result is the caller's bug. */
	hsm_status_clear(&st);
	memset(small, 'x', sizeof(small));
	assert_int_equal(hsm_param_normalize(param("read-only"), "false",
	    small, sizeof(small), &st), -1);
	assert_string_equal(st.code, "internal");
	assert_string_equal(small, "");
	/* "on" and its NUL just fit. */
	assert_int_equal(hsm_param_normalize(param("read-only"), "true",
	    small, sizeof(small), &st), 0);
	assert_string_equal(small, "on");
	assert_int_equal(hsm_param_normalize(param("read-only"), "true",
	    small, 0, &st), -1);
	/* st may be NULL. */
	assert_int_equal(hsm_param_normalize(param("read-only"), "x", out,
	    sizeof(out), NULL), -1);
	assert_int_equal(hsm_param_normalize(param("read-only"), "yes", out,
	    sizeof(out), NULL), 0);
	assert_string_equal(out, "on");
	/* The result may be written over the value. */
	snprintf(out, sizeof(out), "007");
	assert_int_equal(hsm_param_normalize(param("size-mb"), out, out,
	    sizeof(out), &st), 0);
	assert_string_equal(out, "7");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_bool_spellings),
		cmocka_unit_test(test_bool_bad),
		cmocka_unit_test(test_int_good),
		cmocka_unit_test(test_int_bad),
		cmocka_unit_test(test_iplist_good),
		cmocka_unit_test(test_iplist_host_bits),
		cmocka_unit_test(test_iplist_bad),
		cmocka_unit_test(test_bad_value_message),
		cmocka_unit_test(test_iplist_allows),
		cmocka_unit_test(test_profiles_valid),
		cmocka_unit_test(test_profiles_settings),
		cmocka_unit_test(test_partition_names),
		cmocka_unit_test(test_normalize_args),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
