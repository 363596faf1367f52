/* Unit tests for lib/config.c: parsing, loading, HOST:PORT. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hsmctl.h"

#define F "/tmp/c"	/* file name used in parse messages */

static char tmpdir[256];

/* ---- helpers ------------------------------------------------------------- */

static void
rm_rf(const char *path)
{
	struct stat sb;
	DIR *d;
	struct dirent *e;
	char sub[1024];

	if (lstat(path, &sb) != 0)
		return;
	if (S_ISDIR(sb.st_mode) && (d = opendir(path)) != NULL) {
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 ||
			    strcmp(e->d_name, "..") == 0)
				continue;
			snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
			rm_rf(sub);
		}
		closedir(d);
		rmdir(path);
	} else {
		unlink(path);
	}
}

static void
write_file(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* tmpdir/rel in a static buffer-of-the-caller. */
static void
tpath(char *out, size_t outlen, const char *rel)
{
	int n = snprintf(out, outlen, "%s/%s", tmpdir, rel);

	assert_true(n > 0 && (size_t)n < outlen);
}

static void
mkdir_p(const char *rel)
{
	char p[256];

	tpath(p, sizeof(p), rel);
	assert_int_equal(mkdir(p, 0700), 0);
}

/* Parse text as file F with a fixed environment. */
static struct hsm_config *
parse_ok(const char *path, const char *text)
{
	struct hsm_config *cfg = NULL;
	hsm_status st;

	hsm_status_clear(&st);
	if (hsm_config_parse(path, text, strlen(text), &cfg, &st) != 0)
		fail_msg("unexpected failure: %s: %s", st.code, st.message);
	assert_non_null(cfg);
	return cfg;
}

static void
expect_bad_len(const char *text, size_t len, const char *message)
{
	struct hsm_config *cfg = (struct hsm_config *)1;
	hsm_status st;

	hsm_status_clear(&st);
	assert_int_equal(hsm_config_parse(F, text, len, &cfg, &st), -1);
	assert_null(cfg);
	assert_string_equal(st.code, "config_syntax");
	assert_string_equal(st.message, message);
}

static void
expect_bad(const char *text, const char *message)
{
	expect_bad_len(text, strlen(text), message);
}

static void
set_env(const char *home, const char *xdg, const char *hsmctl_config)
{
	if (home != NULL)
		assert_int_equal(setenv("HOME", home, 1), 0);
	else
		assert_int_equal(unsetenv("HOME"), 0);
	if (xdg != NULL)
		assert_int_equal(setenv("XDG_CONFIG_HOME", xdg, 1), 0);
	else
		assert_int_equal(unsetenv("XDG_CONFIG_HOME"), 0);
	if (hsmctl_config != NULL)
		assert_int_equal(setenv("HSMCTL_CONFIG", hsmctl_config, 1), 0);
	else
		assert_int_equal(unsetenv("HSMCTL_CONFIG"), 0);
}

static int
group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_config.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	rm_rf(tmpdir);
	return 0;
}

/* Every test starts from a known environment. */
static int
test_setup(void **state)
{
	(void)state;
	set_env("/home/tester", "/xdg", NULL);
	return 0;
}

/* ---- good files ---------------------------------------------------------- */

static void
test_full_example(void **state)
{
	const char *text =
	    "# comment\n"
	    "default-cluster demo\n"
	    "terminal-key ~/.config/hsmctl/terminal_key\n"
	    "known-hosts ~/.config/hsmctl/known_hosts\n"
	    "cluster demo\n"
	    "    node n1 127.0.0.1:7001\n"
	    "    node n2 [::1]:7002\n";
	struct hsm_config *cfg;
	const struct hsm_cluster *c;

	(void)state;
	cfg = parse_ok("/etc/hsmctl/config", text);
	assert_string_equal(cfg->path, "/etc/hsmctl/config");
	assert_string_equal(cfg->default_cluster, "demo");
	assert_string_equal(cfg->terminal_key,
	    "/home/tester/.config/hsmctl/terminal_key");
	assert_string_equal(cfg->known_hosts,
	    "/home/tester/.config/hsmctl/known_hosts");
	assert_int_equal(cfg->nclusters, 1);
	c = hsm_config_cluster(cfg, "demo");
	assert_ptr_equal(c, &cfg->clusters[0]);
	assert_string_equal(c->name, "demo");
	assert_int_equal(c->nnodes, 2);
	assert_string_equal(c->nodes[0].name, "n1");
	assert_string_equal(c->nodes[0].host, "127.0.0.1");
	assert_int_equal(c->nodes[0].port, 7001);
	assert_string_equal(c->nodes[1].name, "n2");
	assert_string_equal(c->nodes[1].host, "::1");
	assert_int_equal(c->nodes[1].port, 7002);
	assert_null(hsm_config_cluster(cfg, "demo2"));
	assert_null(hsm_config_cluster(cfg, NULL));
	assert_null(hsm_config_cluster(NULL, "demo"));
	hsm_config_free(&cfg);
	assert_null(cfg);
	hsm_config_free(&cfg);	/* NULL is fine */
	hsm_config_free(NULL);
}

static void
test_ipv6_and_hostnames(void **state)
{
	struct hsm_config *cfg;
	const struct hsm_cluster *c;

	(void)state;
	cfg = parse_ok(F,
	    "cluster v6\n"
	    "node a [2001:db8::7]:1\n"
	    "node b [fe80::1%eth0]:65535\n"
	    "node c [::ffff:192.0.2.1]:443\n"
	    "node d node-4.example.org:22\n");
	c = hsm_config_cluster(cfg, "v6");
	assert_non_null(c);
	assert_int_equal(c->nnodes, 4);
	assert_string_equal(c->nodes[0].host, "2001:db8::7");
	assert_int_equal(c->nodes[0].port, 1);
	assert_string_equal(c->nodes[1].host, "fe80::1%eth0");
	assert_int_equal(c->nodes[1].port, 65535);
	assert_string_equal(c->nodes[2].host, "::ffff:192.0.2.1");
	assert_int_equal(c->nodes[2].port, 443);
	assert_string_equal(c->nodes[3].host, "node-4.example.org");
	assert_int_equal(c->nodes[3].port, 22);
	hsm_config_free(&cfg);
}

static void
test_comments_and_blanks(void **state)
{
	struct hsm_config *cfg;

	(void)state;
	cfg = parse_ok("/etc/h/c",
	    "\n"
	    "   \t \n"
	    "# top comment\n"
	    "   # indented comment\n"
	    "#cluster commented-out\n"
	    "cluster a # trailing comment\n"
	    "\tnode n1 h1:1\t# tab then comment\n"
	    "node n2 h2:2 #\n"
	    "terminal-key /k#1   # '#' inside a word is not a comment\r\n"
	    "known-hosts /kh\r\n"
	    "\n"
	    "# no newline at the end\n"
	    "node n3 h3:3");
	assert_int_equal(cfg->nclusters, 1);
	assert_string_equal(cfg->clusters[0].name, "a");
	assert_int_equal(cfg->clusters[0].nnodes, 3);
	assert_string_equal(cfg->clusters[0].nodes[1].host, "h2");
	assert_int_equal(cfg->clusters[0].nodes[1].port, 2);
	assert_string_equal(cfg->clusters[0].nodes[2].name, "n3");
	assert_string_equal(cfg->terminal_key, "/k#1");
	assert_string_equal(cfg->known_hosts, "/kh");
	assert_null(cfg->default_cluster);
	hsm_config_free(&cfg);
}

static void
test_any_order(void **state)
{
	struct hsm_config *cfg;

	(void)state;
	cfg = parse_ok(F,
	    "default-cluster second\n"
	    "cluster first\n"
	    "node x h:1\n"
	    "known-hosts /kh\n"
	    "node y h:2\n"		/* still in 'first' */
	    "cluster second\n"
	    "node x h:3\n"		/* same node name, other cluster */
	    "terminal-key /tk\n");
	assert_string_equal(cfg->default_cluster, "second");
	assert_int_equal(cfg->nclusters, 2);
	assert_string_equal(cfg->clusters[0].name, "first");
	assert_int_equal(cfg->clusters[0].nnodes, 2);
	assert_string_equal(cfg->clusters[0].nodes[1].name, "y");
	assert_string_equal(cfg->clusters[1].name, "second");
	assert_int_equal(cfg->clusters[1].nnodes, 1);
	assert_int_equal(cfg->clusters[1].nodes[0].port, 3);
	assert_ptr_equal(hsm_config_cluster(cfg, "second"), &cfg->clusters[1]);
	assert_string_equal(cfg->terminal_key, "/tk");
	assert_string_equal(cfg->known_hosts, "/kh");
	hsm_config_free(&cfg);
}

static void
test_many_clusters_and_nodes(void **state)
{
	char *text = malloc(1024 * 1024);
	size_t n = 0, i, j;
	struct hsm_config *cfg = NULL;
	hsm_status st;

	(void)state;
	assert_non_null(text);
	for (i = 0; i < 50; i++) {
		n += (size_t)sprintf(text + n, "cluster c%zu\n", i);
		for (j = 0; j < 100; j++)
			n += (size_t)sprintf(text + n, "node n%zu h%zu:%zu\n",
			    j, j, j + 1);
	}
	hsm_status_clear(&st);
	assert_int_equal(hsm_config_parse(F, text, n, &cfg, &st), 0);
	assert_int_equal(cfg->nclusters, 50);
	assert_string_equal(cfg->clusters[49].name, "c49");
	assert_int_equal(cfg->clusters[49].nnodes, 100);
	assert_string_equal(cfg->clusters[49].nodes[99].name, "n99");
	assert_int_equal(cfg->clusters[49].nodes[99].port, 100);
	hsm_config_free(&cfg);
	/* A duplicate far down is still found. */
	n += (size_t)sprintf(text + n, "node n57 h:1\n");
	assert_int_equal(hsm_config_parse(F, text, n, &cfg, &st), -1);
	assert_string_equal(st.message, "/tmp/c:5051: duplicate node 'n57' in "
	    "cluster 'c49' (first on line 5008)");
	free(text);
}

static void
test_tilde(void **state)
{
	struct hsm_config *cfg;

	(void)state;
	set_env("/home/u", "/xdg", NULL);
	cfg = parse_ok(F, "terminal-key ~/keys/tk\nknown-hosts ~/\n");
	assert_string_equal(cfg->terminal_key, "/home/u/keys/tk");
	assert_string_equal(cfg->known_hosts, "/home/u/");
	hsm_config_free(&cfg);

	set_env("/home/v/", "/xdg", NULL);	/* no doubled '/' */
	cfg = parse_ok(F, "terminal-key ~/tk\n");
	assert_string_equal(cfg->terminal_key, "/home/v/tk");
	hsm_config_free(&cfg);

	/* HOME unset: the password database is used. */
	set_env(NULL, "/xdg", NULL);
	cfg = parse_ok(F, "terminal-key ~/tk\n");
	assert_true(cfg->terminal_key[0] == '/');
	assert_non_null(strstr(cfg->terminal_key, "/tk"));
	hsm_config_free(&cfg);
}

static void
test_relative_paths(void **state)
{
	struct hsm_config *cfg;

	(void)state;
	cfg = parse_ok("/etc/hsm/config",
	    "terminal-key keys/tk\nknown-hosts /abs/kh\n");
	assert_string_equal(cfg->terminal_key, "/etc/hsm/keys/tk");
	assert_string_equal(cfg->known_hosts, "/abs/kh");
	hsm_config_free(&cfg);

	cfg = parse_ok("/config", "terminal-key tk\nknown-hosts ./kh\n");
	assert_string_equal(cfg->terminal_key, "/tk");
	assert_string_equal(cfg->known_hosts, "/./kh");
	hsm_config_free(&cfg);

	cfg = parse_ok("sub/dir/config", "terminal-key tk\n");
	assert_string_equal(cfg->terminal_key, "sub/dir/tk");
	hsm_config_free(&cfg);

	/* No directory part: relative to the current one, like the file. */
	cfg = parse_ok("config", "terminal-key tk\n");
	assert_string_equal(cfg->terminal_key, "tk");
	hsm_config_free(&cfg);

	cfg = parse_ok(NULL, "terminal-key tk\n");
	assert_null(cfg->path);
	assert_string_equal(cfg->terminal_key, "tk");
	hsm_config_free(&cfg);
}

static void
test_default_key_paths(void **state)
{
	struct hsm_config *cfg;

	(void)state;
	set_env("/home/u", "/xdg/conf", NULL);
	cfg = parse_ok(F, "");
	assert_int_equal(cfg->nclusters, 0);
	assert_null(cfg->clusters);
	assert_null(cfg->default_cluster);
	assert_string_equal(cfg->path, F);
	assert_string_equal(cfg->terminal_key, "/xdg/conf/hsmctl/terminal_key");
	assert_string_equal(cfg->known_hosts, "/xdg/conf/hsmctl/known_hosts");
	hsm_config_free(&cfg);

	/* XDG_CONFIG_HOME unset, empty or relative: $HOME/.config. */
	set_env("/home/u", NULL, NULL);
	cfg = parse_ok(F, "known-hosts /kh\n");
	assert_string_equal(cfg->terminal_key,
	    "/home/u/.config/hsmctl/terminal_key");
	assert_string_equal(cfg->known_hosts, "/kh");
	hsm_config_free(&cfg);

	set_env("/home/u", "", NULL);
	cfg = parse_ok(F, "terminal-key /tk\n");
	assert_string_equal(cfg->terminal_key, "/tk");
	assert_string_equal(cfg->known_hosts,
	    "/home/u/.config/hsmctl/known_hosts");
	hsm_config_free(&cfg);

	set_env("/home/u", "rel/xdg", NULL);
	cfg = parse_ok(F, "");
	assert_string_equal(cfg->terminal_key,
	    "/home/u/.config/hsmctl/terminal_key");
	hsm_config_free(&cfg);
}

static void
test_single_cluster_no_default(void **state)
{
	struct hsm_config *cfg;

	(void)state;
	cfg = parse_ok(F, "cluster only\nnode n h:1\n");
	assert_null(cfg->default_cluster);
	assert_int_equal(cfg->nclusters, 1);
	assert_non_null(hsm_config_cluster(cfg, "only"));
	hsm_config_free(&cfg);
}

static void
test_name_limits(void **state)
{
	char text[256];
	struct hsm_config *cfg;
	const char *n63 = "A23456789.123456789_123456789-123456789"
	    "012345678901234567890123";

	(void)state;
	assert_int_equal(strlen(n63), 63);
	snprintf(text, sizeof(text), "cluster %s\nnode 0-._x h:1\n", n63);
	cfg = parse_ok(F, text);
	assert_string_equal(cfg->clusters[0].name, n63);
	assert_string_equal(cfg->clusters[0].nodes[0].name, "0-._x");
	hsm_config_free(&cfg);

	snprintf(text, sizeof(text), "cluster %sX\nnode n h:1\n", n63);
	expect_bad(text, "/tmp/c:1: invalid cluster name "
	    "'A23456789.123456789_123456789-123456789012345678901234567890123X'");
}

/* ---- bad files ------------------------------------------------------------ */

static void
test_bad_unknown_keyword(void **state)
{
	(void)state;
	expect_bad("cluster a\n  node n1 h:1\n\nnod n2 h:2\n",
	    "/tmp/c:4: unknown keyword 'nod'");
	expect_bad("Cluster a\n", "/tmp/c:1: unknown keyword 'Cluster'");
	expect_bad("# c\ndefault_cluster a\n",
	    "/tmp/c:2: unknown keyword 'default_cluster'");
	/* '#' must follow whitespace to start a comment. */
	expect_bad("terminal-key /k\nknown-hosts#x\n",
	    "/tmp/c:2: unknown keyword 'known-hosts#x'");
}

static void
test_bad_arg_count(void **state)
{
	(void)state;
	expect_bad("cluster\n", "/tmp/c:1: 'cluster' expects 1 argument "
	    "(NAME), got 0");
	expect_bad("cluster a b\n", "/tmp/c:1: 'cluster' expects 1 argument "
	    "(NAME), got 2");
	expect_bad("cluster a\nnode n1\n", "/tmp/c:2: 'node' expects 2 "
	    "arguments (NAME HOST:PORT), got 1");
	expect_bad("cluster a\nnode n1 h:1 h:2\n", "/tmp/c:2: 'node' expects "
	    "2 arguments (NAME HOST:PORT), got 3");
	expect_bad("default-cluster   # nothing\n", "/tmp/c:1: "
	    "'default-cluster' expects 1 argument (NAME), got 0");
	expect_bad("\nterminal-key /a /b\n", "/tmp/c:2: 'terminal-key' "
	    "expects 1 argument (PATH), got 2");
	expect_bad("known-hosts\n", "/tmp/c:1: 'known-hosts' expects 1 "
	    "argument (PATH), got 0");
	expect_bad("cluster a b c d e f g h i j k\n", "/tmp/c:1: 'cluster' "
	    "expects 1 argument (NAME), got 11");
}

static void
test_bad_duplicate_toplevel(void **state)
{
	(void)state;
	expect_bad("default-cluster a\ncluster a\nnode n h:1\n"
	    "default-cluster a\n", "/tmp/c:4: duplicate 'default-cluster' "
	    "(first on line 1)");
	expect_bad("terminal-key /a\n\nterminal-key /a\n", "/tmp/c:3: "
	    "duplicate 'terminal-key' (first on line 1)");
	expect_bad("# x\nknown-hosts /a\nknown-hosts /b\n", "/tmp/c:3: "
	    "duplicate 'known-hosts' (first on line 2)");
}

static void
test_bad_duplicate_cluster(void **state)
{
	(void)state;
	expect_bad("cluster a\nnode n h:1\ncluster b\nnode n h:1\n"
	    "cluster a\nnode m h:2\n", "/tmp/c:5: duplicate cluster 'a' "
	    "(first on line 1)");
}

static void
test_bad_duplicate_node(void **state)
{
	(void)state;
	expect_bad("cluster a\n node n1 h:1\n node n2 h:2\n node n1 h:3\n",
	    "/tmp/c:4: duplicate node 'n1' in cluster 'a' (first on line 2)");
	/* Case matters: N1 and n1 are different names. */
	expect_bad("cluster a\n node n1 h:1\n node N1 h:2\n node N1 h:3\n",
	    "/tmp/c:4: duplicate node 'N1' in cluster 'a' (first on line 3)");
}

static void
test_bad_node_outside_cluster(void **state)
{
	(void)state;
	expect_bad("node n1 h:1\n", "/tmp/c:1: 'node' outside a 'cluster' "
	    "block");
	expect_bad("# comment\ndefault-cluster a\n\nnode n1 h:1\n"
	    "cluster a\nnode n1 h:1\n",
	    "/tmp/c:4: 'node' outside a 'cluster' block");
}

static void
test_bad_names(void **state)
{
	(void)state;
	expect_bad("cluster -a\n", "/tmp/c:1: invalid cluster name '-a'");
	expect_bad("cluster .a\n", "/tmp/c:1: invalid cluster name '.a'");
	expect_bad("cluster _a\n", "/tmp/c:1: invalid cluster name '_a'");
	expect_bad("cluster a/b\n", "/tmp/c:1: invalid cluster name 'a/b'");
	expect_bad("cluster a#b\n", "/tmp/c:1: invalid cluster name 'a#b'");
	expect_bad("cluster \xc3\xa9t\xc3\xa9\n",
	    "/tmp/c:1: invalid cluster name '\xc3\xa9t\xc3\xa9'");
	expect_bad("cluster a\nnode n:1 h:1\n",
	    "/tmp/c:2: invalid node name 'n:1'");
	expect_bad("default-cluster a*\n",
	    "/tmp/c:1: invalid cluster name 'a*'");
}

static void
test_bad_hostport(void **state)
{
	(void)state;
	expect_bad("cluster a\nnode n h\n", "/tmp/c:2: bad address 'h' for "
	    "node 'n': missing ':PORT'");
	expect_bad("cluster a\nnode n h:0\n", "/tmp/c:2: bad address 'h:0' "
	    "for node 'n': port must be a number from 1 to 65535");
	expect_bad("cluster a\nnode n h:65536\n", "/tmp/c:2: bad address "
	    "'h:65536' for node 'n': port must be a number from 1 to 65535");
	expect_bad("cluster a\nnode n h:\n", "/tmp/c:2: bad address 'h:' for "
	    "node 'n': empty port");
	expect_bad("cluster a\nnode n :22\n", "/tmp/c:2: bad address ':22' "
	    "for node 'n': empty host");
	expect_bad("cluster a\nnode n ::1:22\n", "/tmp/c:2: bad address "
	    "'::1:22' for node 'n': IPv6 address must be in brackets");
	expect_bad("cluster a\nnode n fe80::1:22\n", "/tmp/c:2: bad address "
	    "'fe80::1:22' for node 'n': IPv6 address must be in brackets");
	expect_bad("cluster a\nnode n [::1]\n", "/tmp/c:2: bad address "
	    "'[::1]' for node 'n': expected ':PORT' after ']'");
	expect_bad("cluster a\nnode n h:22x\n", "/tmp/c:2: bad address "
	    "'h:22x' for node 'n': port must be a number from 1 to 65535");
}

static void
test_bad_default_cluster_undefined(void **state)
{
	(void)state;
	expect_bad("default-cluster prod\ncluster demo\nnode n h:1\n",
	    "/tmp/c:1: default-cluster 'prod' is not defined");
	expect_bad("cluster demo\nnode n h:1\n\ndefault-cluster Demo\n",
	    "/tmp/c:4: default-cluster 'Demo' is not defined");
	/* No clusters at all. */
	expect_bad("default-cluster demo\n",
	    "/tmp/c:1: default-cluster 'demo' is not defined");
}

static void
test_bad_empty_cluster(void **state)
{
	(void)state;
	expect_bad("cluster a\nnode n h:1\ncluster b\ncluster c\nnode n h:1\n",
	    "/tmp/c:3: cluster 'b' has no nodes");
	expect_bad("cluster a\nnode n h:1\n# end\ncluster z\n",
	    "/tmp/c:4: cluster 'z' has no nodes");
	/* Both errors: the earlier line is reported. */
	expect_bad("default-cluster x\ncluster a\n",
	    "/tmp/c:1: default-cluster 'x' is not defined");
	expect_bad("cluster a\ndefault-cluster x\n",
	    "/tmp/c:1: cluster 'a' has no nodes");
}

static void
test_bad_long_line(void **state)
{
	char *text = malloc(3 * 4100);
	struct hsm_config *cfg = NULL;
	hsm_status st;
	size_t n;

	(void)state;
	assert_non_null(text);
	/* A 4096-byte comment line is fine. */
	n = (size_t)sprintf(text, "cluster a\nnode n h:1\n");
	text[n++] = '#';
	memset(text + n, 'x', 4095);
	n += 4095;
	text[n++] = '\n';
	assert_int_equal(hsm_config_parse(F, text, n, &cfg, &st), 0);
	hsm_config_free(&cfg);
	/* 4097 bytes is not, comment or not, even as the last line. */
	text[n - 1] = 'x';
	text[n++] = '\n';
	expect_bad_len(text, n, "/tmp/c:3: line longer than 4096 bytes");
	expect_bad_len(text, n - 1, "/tmp/c:3: line longer than 4096 bytes");
	free(text);
}

static void
test_bad_nul_and_control(void **state)
{
	static const char nul[] = "cluster a\nnode n h:1\n# x\0y\n";
	static const char nul2[] = "cluster a\0\n";

	(void)state;
	expect_bad_len(nul, sizeof(nul) - 1, "/tmp/c:3: NUL byte in line");
	expect_bad_len(nul2, sizeof(nul2) - 1, "/tmp/c:1: NUL byte in line");
	expect_bad("cluster a\nnode n\x1b h:1\n",
	    "/tmp/c:2: control character 0x1b in line");
	expect_bad("cluster a\rb\n",
	    "/tmp/c:1: control character 0x0d in line");
}

static void
test_bad_too_large(void **state)
{
	size_t max = 1024 * 1024, i;
	char *text = malloc(max + 2);
	struct hsm_config *cfg = NULL;
	hsm_status st;

	(void)state;
	assert_non_null(text);
	/* 1024-byte comment lines: line 1025 is the first past 1 MiB. */
	for (i = 0; i < max + 2; i++)
		text[i] = (i % 1024 == 1023) ? '\n' : '#';
	assert_int_equal(hsm_config_parse(F, text, max, &cfg, &st), 0);
	hsm_config_free(&cfg);
	expect_bad_len(text, max + 1,
	    "/tmp/c:1025: config larger than 1048576 bytes");
	free(text);
}

static void
test_bad_tilde_user(void **state)
{
	(void)state;
	expect_bad("\nterminal-key ~root/k\n",
	    "/tmp/c:2: '~root/k': only '~/' is supported");
}

static void
test_bad_args(void **state)
{
	struct hsm_config *cfg = NULL;
	hsm_status st;

	(void)state;
	assert_int_equal(hsm_config_parse(F, NULL, 1, &cfg, &st), -1);
	assert_string_equal(st.code, "bad_value");
	assert_int_equal(hsm_config_parse(F, "", 0, NULL, &st), -1);
	assert_int_equal(hsm_config_parse(F, NULL, 0, &cfg, NULL), 0);
	hsm_config_free(&cfg);
	/* st may be NULL on failure too. */
	assert_int_equal(hsm_config_parse(F, "x\n", 2, &cfg, NULL), -1);
	assert_null(cfg);
}

/* ---- loading --------------------------------------------------------------- */

static void
test_load_defaults_when_absent(void **state)
{
	char xdg[256], exp[1024];
	struct hsm_config *cfg = NULL;
	hsm_status st;

	(void)state;
	mkdir_p("empty-xdg");
	tpath(xdg, sizeof(xdg), "empty-xdg");
	set_env("/nonexistent-home", xdg, NULL);
	hsm_status_clear(&st);
	assert_int_equal(hsm_config_load(NULL, &cfg, &st), 0);
	assert_non_null(cfg);
	assert_null(cfg->path);
	assert_null(cfg->default_cluster);
	assert_int_equal(cfg->nclusters, 0);
	snprintf(exp, sizeof(exp), "%s/hsmctl/terminal_key", xdg);
	assert_string_equal(cfg->terminal_key, exp);
	snprintf(exp, sizeof(exp), "%s/hsmctl/known_hosts", xdg);
	assert_string_equal(cfg->known_hosts, exp);
	hsm_config_free(&cfg);

	/* Empty HSMCTL_CONFIG is ignored; HOME/.config when XDG unset. */
	set_env(xdg, NULL, "");
	assert_int_equal(hsm_config_load(NULL, &cfg, &st), 0);
	assert_null(cfg->path);
	snprintf(exp, sizeof(exp), "%s/.config/hsmctl/terminal_key", xdg);
	assert_string_equal(cfg->terminal_key, exp);
	hsm_config_free(&cfg);
}

static void
test_load_xdg_and_home(void **state)
{
	char dir[256], file[256], exp[1024];
	const char *text = "cluster x\nnode n h:9\nterminal-key tk\n";
	struct hsm_config *cfg = NULL;
	hsm_status st;

	(void)state;
	mkdir_p("xdg");
	mkdir_p("xdg/hsmctl");
	tpath(file, sizeof(file), "xdg/hsmctl/config");
	write_file(file, text, strlen(text));
	tpath(dir, sizeof(dir), "xdg");
	set_env("/nonexistent-home", dir, NULL);
	hsm_status_clear(&st);
	assert_int_equal(hsm_config_load(NULL, &cfg, &st), 0);
	assert_string_equal(cfg->path, file);
	assert_int_equal(cfg->nclusters, 1);
	assert_int_equal(cfg->clusters[0].nodes[0].port, 9);
	snprintf(exp, sizeof(exp), "%s/hsmctl/tk", dir);
	assert_string_equal(cfg->terminal_key, exp);
	hsm_config_free(&cfg);

	/* ~/.config/hsmctl/config when XDG_CONFIG_HOME is unset. */
	mkdir_p("home");
	mkdir_p("home/.config");
	mkdir_p("home/.config/hsmctl");
	tpath(file, sizeof(file), "home/.config/hsmctl/config");
	write_file(file, "cluster h\nnode n h:8\n", 21);
	tpath(dir, sizeof(dir), "home");
	set_env(dir, NULL, NULL);
	assert_int_equal(hsm_config_load(NULL, &cfg, &st), 0);
	assert_string_equal(cfg->path, file);
	assert_string_equal(cfg->clusters[0].name, "h");
	hsm_config_free(&cfg);
}

static void
test_load_hsmctl_config(void **state)
{
	char xdg[256], file[256], exp[1024];
	const char *text = "cluster env\nnode n h:7\nknown-hosts kh\n";
	struct hsm_config *cfg = NULL;
	hsm_status st;

	(void)state;
	mkdir_p("envdir");
	tpath(file, sizeof(file), "envdir/my.conf");
	write_file(file, text, strlen(text));
	/* An XDG config exists too (test_load_xdg_and_home) but loses. */
	mkdir_p("xdg2");
	mkdir_p("xdg2/hsmctl");
	tpath(xdg, sizeof(xdg), "xdg2/hsmctl/config");
	write_file(xdg, "cluster xdg\nnode n h:1\n", 23);
	tpath(xdg, sizeof(xdg), "xdg2");
	set_env("/nonexistent-home", xdg, file);
	hsm_status_clear(&st);
	assert_int_equal(hsm_config_load(NULL, &cfg, &st), 0);
	assert_string_equal(cfg->path, file);
	assert_non_null(hsm_config_cluster(cfg, "env"));
	assert_null(hsm_config_cluster(cfg, "xdg"));
	snprintf(exp, sizeof(exp), "%s/envdir/kh", tmpdir);
	assert_string_equal(cfg->known_hosts, exp);
	hsm_config_free(&cfg);

	/* An explicit path beats HSMCTL_CONFIG. */
	tpath(file, sizeof(file), "xdg2/hsmctl/config");
	assert_int_equal(hsm_config_load(file, &cfg, &st), 0);
	assert_string_equal(cfg->path, file);
	assert_non_null(hsm_config_cluster(cfg, "xdg"));
	hsm_config_free(&cfg);

	/* HSMCTL_CONFIG must exist. */
	tpath(file, sizeof(file), "envdir/missing.conf");
	set_env("/nonexistent-home", xdg, file);
	assert_int_equal(hsm_config_load(NULL, &cfg, &st), -1);
	assert_null(cfg);
	assert_string_equal(st.code, "config_io");
	snprintf(exp, sizeof(exp), "cannot open config '%s': "
	    "No such file or directory", file);
	assert_string_equal(st.message, exp);
}

static void
test_load_explicit_missing(void **state)
{
	char file[256], exp[1024];
	struct hsm_config *cfg = (struct hsm_config *)1;
	hsm_status st;

	(void)state;
	tpath(file, sizeof(file), "no-such-file");
	hsm_status_clear(&st);
	assert_int_equal(hsm_config_load(file, &cfg, &st), -1);
	assert_null(cfg);
	assert_string_equal(st.code, "config_io");
	snprintf(exp, sizeof(exp), "cannot open config '%s': "
	    "No such file or directory", file);
	assert_string_equal(st.message, exp);

	/* Missing parent directory: still config_io, not "absent". */
	tpath(file, sizeof(file), "no-such-dir/config");
	assert_int_equal(hsm_config_load(file, &cfg, &st), -1);
	assert_string_equal(st.code, "config_io");

	/* A directory is not a config file. */
	assert_int_equal(hsm_config_load(tmpdir, &cfg, &st), -1);
	assert_string_equal(st.code, "config_io");
	snprintf(exp, sizeof(exp), "config '%s' is not a regular file",
	    tmpdir);
	assert_string_equal(st.message, exp);
}

static void
test_load_errors_name_the_file(void **state)
{
	char file[256], exp[1024];
	size_t max = 1024 * 1024;
	char *big;
	struct hsm_config *cfg = NULL;
	hsm_status st;

	(void)state;
	tpath(file, sizeof(file), "bad.conf");
	write_file(file, "cluster a\nnode n h:1\nnod x\n", 27);
	hsm_status_clear(&st);
	assert_int_equal(hsm_config_load(file, &cfg, &st), -1);
	assert_null(cfg);
	assert_string_equal(st.code, "config_syntax");
	snprintf(exp, sizeof(exp), "%s:3: unknown keyword 'nod'", file);
	assert_string_equal(st.message, exp);

	/* More than 1 MiB read from a file. */
	big = malloc(max + 100);
	assert_non_null(big);
	memset(big, '\n', max + 100);
	tpath(file, sizeof(file), "big.conf");
	write_file(file, big, max + 100);
	free(big);
	assert_int_equal(hsm_config_load(file, &cfg, &st), -1);
	assert_string_equal(st.code, "config_syntax");
	snprintf(exp, sizeof(exp), "%s:1048577: config larger than 1048576 "
	    "bytes", file);
	assert_string_equal(st.message, exp);
	/* Exactly 1 MiB is accepted. */
	assert_int_equal(truncate(file, (off_t)max), 0);
	assert_int_equal(hsm_config_load(file, &cfg, &st), 0);
	assert_int_equal(cfg->nclusters, 0);
	hsm_config_free(&cfg);
}

/* ---- hsm_parse_hostport ---------------------------------------------------- */

static void
hp_ok(const char *s, const char *host, int port)
{
	char h[256];
	int p = -1;
	hsm_status st;

	hsm_status_clear(&st);
	if (hsm_parse_hostport(s, h, sizeof(h), &p, &st) != 0)
		fail_msg("'%s': %s", s, st.message);
	assert_string_equal(h, host);
	assert_int_equal(p, port);
}

static void
hp_bad(const char *s)
{
	char h[256] = "unchanged";
	int p = -1;
	hsm_status st;

	hsm_status_clear(&st);
	if (hsm_parse_hostport(s, h, sizeof(h), &p, &st) != -1)
		fail_msg("'%s' accepted", s);
	assert_string_equal(st.code, "bad_value");
	assert_string_equal(h, "unchanged");
	assert_int_equal(p, -1);
}

static void
test_hostport_good(void **state)
{
	char host255[256], s[300];

	(void)state;
	hp_ok("127.0.0.1:7001", "127.0.0.1", 7001);
	hp_ok("localhost:1", "localhost", 1);
	hp_ok("a:65535", "a", 65535);
	hp_ok("node_1.example-x.org:22", "node_1.example-x.org", 22);
	hp_ok("[::1]:7002", "::1", 7002);
	hp_ok("[2001:db8::1]:443", "2001:db8::1", 443);
	hp_ok("[fe80::1%eth0]:22", "fe80::1%eth0", 22);
	hp_ok("h:00022", "h", 22);
	memset(host255, 'h', 255);
	host255[255] = '\0';
	snprintf(s, sizeof(s), "%s:1", host255);
	hp_ok(s, host255, 1);
}

static void
test_hostport_bad(void **state)
{
	char s[300];
	char h[4];
	int p;
	hsm_status st;

	(void)state;
	hp_bad("");
	hp_bad("h");
	hp_bad("h:");
	hp_bad(":1");
	hp_bad("h:0");
	hp_bad("h:65536");
	hp_bad("h:100000");
	hp_bad("h:000000022");
	hp_bad("h:-1");
	hp_bad("h:+1");
	hp_bad("h: 1");
	hp_bad("h:1 ");
	hp_bad("h:1x");
	hp_bad("h:0x10");
	hp_bad("h h:1");
	hp_bad("h/x:1");
	hp_bad("::1:22");
	hp_bad("::1");
	hp_bad("[::1]");
	hp_bad("[::1]:");
	hp_bad("[::1]x:1");
	hp_bad("[::1]:1x");
	hp_bad("[::1:1");
	hp_bad("[]:1");
	hp_bad("[1.2.3.4]:1");
	hp_bad("[hostname]:1");
	hp_bad("[::1%]:1");
	hp_bad("[::1%a/b]:1");
	hp_bad("h]:1");
	hp_bad("[h:1");
	memset(s, 'h', 256);
	strcpy(s + 256, ":1");
	hp_bad(s);

	/* Message format, with control characters neutralised. */
	hsm_status_clear(&st);
	assert_int_equal(hsm_parse_hostport("h\n:1", h, sizeof(h), &p, &st),
	    -1);
	assert_string_equal(st.message, "bad address 'h?:1': invalid "
	    "character in host");
	assert_int_equal(hsm_parse_hostport("h:0", h, sizeof(h), &p, &st), -1);
	assert_string_equal(st.message, "bad address 'h:0': port must be a "
	    "number from 1 to 65535");
	/* The host must fit the caller's buffer. */
	assert_int_equal(hsm_parse_hostport("abcd:1", h, sizeof(h), &p, &st),
	    -1);
	assert_string_equal(st.code, "bad_value");
	assert_int_equal(hsm_parse_hostport("abc:1", h, sizeof(h), &p, &st), 0);
	assert_string_equal(h, "abc");
	assert_int_equal(p, 1);
	/* Missing arguments. */
	assert_int_equal(hsm_parse_hostport(NULL, h, sizeof(h), &p, &st), -1);
	assert_int_equal(hsm_parse_hostport("h:1", NULL, 4, &p, &st), -1);
	assert_int_equal(hsm_parse_hostport("h:1", h, 0, &p, &st), -1);
	assert_int_equal(hsm_parse_hostport("h:1", h, sizeof(h), NULL, &st),
	    -1);
	assert_int_equal(hsm_parse_hostport("h:1", h, sizeof(h), &p, NULL),
	    0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_full_example, test_setup),
		cmocka_unit_test_setup(test_ipv6_and_hostnames, test_setup),
		cmocka_unit_test_setup(test_comments_and_blanks, test_setup),
		cmocka_unit_test_setup(test_any_order, test_setup),
		cmocka_unit_test_setup(test_many_clusters_and_nodes,
		    test_setup),
		cmocka_unit_test_setup(test_tilde, test_setup),
		cmocka_unit_test_setup(test_relative_paths, test_setup),
		cmocka_unit_test_setup(test_default_key_paths, test_setup),
		cmocka_unit_test_setup(test_single_cluster_no_default,
		    test_setup),
		cmocka_unit_test_setup(test_name_limits, test_setup),
		cmocka_unit_test_setup(test_bad_unknown_keyword, test_setup),
		cmocka_unit_test_setup(test_bad_arg_count, test_setup),
		cmocka_unit_test_setup(test_bad_duplicate_toplevel, test_setup),
		cmocka_unit_test_setup(test_bad_duplicate_cluster, test_setup),
		cmocka_unit_test_setup(test_bad_duplicate_node, test_setup),
		cmocka_unit_test_setup(test_bad_node_outside_cluster,
		    test_setup),
		cmocka_unit_test_setup(test_bad_names, test_setup),
		cmocka_unit_test_setup(test_bad_hostport, test_setup),
		cmocka_unit_test_setup(test_bad_default_cluster_undefined,
		    test_setup),
		cmocka_unit_test_setup(test_bad_empty_cluster, test_setup),
		cmocka_unit_test_setup(test_bad_long_line, test_setup),
		cmocka_unit_test_setup(test_bad_nul_and_control, test_setup),
		cmocka_unit_test_setup(test_bad_too_large, test_setup),
		cmocka_unit_test_setup(test_bad_tilde_user, test_setup),
		cmocka_unit_test_setup(test_bad_args, test_setup),
		cmocka_unit_test_setup(test_load_defaults_when_absent,
		    test_setup),
		cmocka_unit_test_setup(test_load_xdg_and_home, test_setup),
		cmocka_unit_test_setup(test_load_hsmctl_config, test_setup),
		cmocka_unit_test_setup(test_load_explicit_missing, test_setup),
		cmocka_unit_test_setup(test_load_errors_name_the_file,
		    test_setup),
		cmocka_unit_test_setup(test_hostport_good, test_setup),
		cmocka_unit_test_setup(test_hostport_bad, test_setup),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
