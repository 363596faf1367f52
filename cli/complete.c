/*
 * Completion from the command table: the shell's Tab and the hidden
 * "hsmctl __complete -- WORDS..." that the bash and zsh scripts call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

/* Global options and whether they take a value (cf. main.c longopts). */
static const struct {
	const char *name;
	bool value;
	enum arg_kind kind;
} globals[] = {
	{ "--cluster", true, K_CLUSTER }, { "-C", true, K_CLUSTER },
	{ "--node", true, K_NODE }, { "-n", true, K_NODE },
	{ "--config", true, K_FILE }, { "-F", true, K_FILE },
	{ "--output", true, K_OUTPUT }, { "-o", true, K_OUTPUT },
	{ "--file", true, K_FILE }, { "-f", true, K_FILE },
	{ "--keep-going", false, K_WORD }, { "-k", false, K_WORD },
	{ "--yes", false, K_WORD }, { "-y", false, K_WORD },
	{ "--as", true, K_WORD },
	{ "--officer", true, K_FILE },
	{ "--approval", true, K_FILE },
	{ "--passphrase-fd", true, K_WORD },
	{ "--secret-file", true, K_FILE },
	{ "--accept-new-host-key", false, K_WORD },
	{ "--quiet", false, K_WORD }, { "-q", false, K_WORD },
	{ "--verbose", false, K_WORD }, { "-v", false, K_WORD },
	{ "--help", false, K_WORD }, { "-h", false, K_WORD },
	{ "--version", false, K_WORD }, { "-V", false, K_WORD },
};
#define NGLOBALS (sizeof(globals) / sizeof(globals[0]))

struct out {
	const char *prefix;
	size_t plen;
	void (*add)(void *, const char *);
	void *arg;
};

static void
offer(const struct out *o, const char *cand)
{
	if (strncmp(cand, o->prefix, o->plen) == 0)
		o->add(o->arg, cand);
}

/*
 * A partition parameter: its name, or once the word has an '=', its
 * values (canonical spellings) as whole PARAM=VALUE words.
 */
static void
offer_param(const struct out *o)
{
	const char *eq = memchr(o->prefix, '=', o->plen);
	const struct hsm_param *p = NULL;
	char buf[128];

	if (eq == NULL) {
		for (size_t i = 0; i < hsm_nparams; i++)
			offer(o, hsm_params[i].name);
		return;
	}
	for (size_t i = 0; i < hsm_nparams && p == NULL; i++)
		if (strlen(hsm_params[i].name) == (size_t)(eq - o->prefix) &&
		    strncmp(hsm_params[i].name, o->prefix,
		    (size_t)(eq - o->prefix)) == 0)
			p = &hsm_params[i];
	if (p == NULL)
		return;
	if (p->type == HSM_PARAM_BOOL) {
		snprintf(buf, sizeof(buf), "%s=on", p->name);
		offer(o, buf);
		snprintf(buf, sizeof(buf), "%s=off", p->name);
		offer(o, buf);
	}
}

/*
 * Names only the node knows (partitions, ...), in the shell where a
 * connection is up: asked once and kept for the session.  A refusal
 * (no login yet) just means no candidates; it is asked again later.
 */
static void
offer_live(struct ctx *ctx, size_t slot, const char *op, const char *listkey,
    const char *field, const struct out *o)
{
	cbor_item_t *res = NULL;
	const cbor_item_t *list;
	hsm_status st;

	if (!ctx->interactive || ctx->conn == NULL)
		return;
	if (ctx->live[slot] == NULL) {
		if (hsm_call(ctx->conn, op, NULL, &res, &st) != 0)
			return;
		ctx->live[slot] = res;
	}
	list = hsm_map_get(ctx->live[slot], listkey);
	for (size_t i = 0; list != NULL && cbor_isa_array(list) &&
	    i < cbor_array_size(list); i++) {
		const cbor_item_t *v = hsm_map_get(cbor_array_handle(list)[i],
		    field);
		char name[HSM_NAME_MAX + 1];

		if (v == NULL || !cbor_isa_string(v) ||
		    cbor_string_length(v) > HSM_NAME_MAX)
			continue;
		snprintf(name, sizeof(name), "%.*s",
		    (int)cbor_string_length(v),
		    (const char *)cbor_string_handle(v));
		offer(o, name);
	}
}

/* Values of a kind: from the table, the configuration or the node. */
static void
offer_kind(struct ctx *ctx, enum arg_kind kind, const struct out *o)
{
	const struct hsm_cluster *cl = NULL;

	switch (kind) {
	case K_OUTPUT:
		offer(o, "text");
		offer(o, "json");
		break;
	case K_ROLE:
		offer(o, "genesis");
		offer(o, "so");
		offer(o, "pso");
		break;
	case K_LOGINROLE:
		offer(o, "genesis");
		offer(o, "so");
		offer(o, "pso");
		offer(o, "user");
		break;
	case K_KEYTYPE:
		offer(o, "ed25519");
		offer(o, "p384");
		break;
	case K_OBJTYPE:
		for (const char *const *t = key_obj_types; *t != NULL; t++)
			offer(o, *t);
		break;
	case K_API:
		for (const char *const *a = api_names; *a != NULL; a++)
			offer(o, *a);
		break;
	case K_PARAM:
		offer_param(o);
		break;
	case K_PROFILE:
		for (size_t i = 0; i < hsm_nprofiles; i++)
			offer(o, hsm_profiles[i].name);
		break;
	case K_CLUSTER:
		for (size_t i = 0; ctx->cfg != NULL && i < ctx->cfg->nclusters;
		    i++)
			offer(o, ctx->cfg->clusters[i].name);
		break;
	case K_NODE:
		if (ctx->cfg == NULL)
			break;
		cl = hsm_config_cluster(ctx->cfg, ctx->cluster != NULL ?
		    ctx->cluster : ctx->cfg->default_cluster);
		if (cl == NULL && ctx->cfg->nclusters == 1)
			cl = &ctx->cfg->clusters[0];
		for (size_t i = 0; cl != NULL && i < cl->nnodes; i++)
			offer(o, cl->nodes[i].name);
		break;
	case K_PARTITION:
		offer_live(ctx, 0, "partition.list", "partitions", "name", o);
		break;
	case K_SIGALG:
		for (size_t i = 0; sign_algs[i] != NULL; i++)
			offer(o, sign_algs[i]);
		break;
	case K_OFFICER:
		offer_live(ctx, 1, "officer.list", "officers", "name", o);
		break;
	case K_BACKUP:
		offer_live(ctx, 2, "backup.list", "backups", "id", o);
		break;
	default:
		break;	/* files and free text: the shell's own completion */
	}
}

/* Does the command's words start with the n given words? */
static bool
words_prefix(const char *cw, char **w, int n)
{
	for (int i = 0; i < n; i++) {
		size_t len = strcspn(cw, " ");

		if (strlen(w[i]) != len || strncmp(cw, w[i], len) != 0)
			return false;
		cw += len;
		if (*cw == ' ')
			cw++;
		else if (i + 1 < n)
			return false;
	}
	return true;
}

/* The (n+1)th word of a command's words into buf, or false. */
static bool
nth_word(const char *cw, int n, char *buf, size_t len)
{
	for (int i = 0; i < n; i++) {
		cw = strchr(cw, ' ');
		if (cw == NULL)
			return false;
		cw++;
	}
	snprintf(buf, len, "%.*s", (int)strcspn(cw, " "), cw);
	return true;
}

static int
nwords(const char *cw)
{
	int n = 1;

	for (; *cw != '\0'; cw++)
		n += *cw == ' ';
	return n;
}

/* Candidates for the next command word after w[0..n-1]. */
static void
offer_words(char **w, int n, const struct out *o)
{
	char word[64], last[64] = "";

	for (size_t i = 0; i < ncommands; i++) {
		if (nwords(commands[i].words) <= n ||
		    !words_prefix(commands[i].words, w, n) ||
		    !nth_word(commands[i].words, n, word, sizeof(word)))
			continue;
		if (strcmp(word, last) == 0)
			continue;	/* the table is sorted: groups are adjacent */
		snprintf(last, sizeof(last), "%s", word);
		offer(o, word);
	}
}

void
complete_words(struct ctx *ctx, int argc, char **argv,
    void (*add)(void *, const char *), void *arg)
{
	struct out o;
	const struct cmd *c = NULL;
	const char *cur = argc > 0 ? argv[argc - 1] : "";
	int i = 0, n = argc > 0 ? argc - 1 : 0, cw = 0, pos = 0;

	o.prefix = cur;
	o.plen = strlen(cur);
	o.add = add;
	o.arg = arg;
	/* Global options come first (not in the shell, where they are set). */
	while (!ctx->interactive && i < n && argv[i][0] == '-') {
		size_t g;

		for (g = 0; g < NGLOBALS; g++)
			if (strcmp(globals[g].name, argv[i]) == 0)
				break;
		if (g < NGLOBALS && globals[g].value) {
			if (i + 1 == n) {
				offer_kind(ctx, globals[g].kind, &o);
				return;
			}
			/* They select the names offered later on the line. */
			if (globals[g].kind == K_CLUSTER)
				ctx->cluster = argv[i + 1];
			i++;
		}
		i++;
	}
	if (!ctx->interactive && i == n && cur[0] == '-') {
		for (size_t g = 0; g < NGLOBALS; g++)
			if (globals[g].name[1] == '-')
				offer(&o, globals[g].name);
		return;
	}
	/* The longest command whose words are all typed. */
	for (size_t k = 0; k < ncommands; k++) {
		int nw = nwords(commands[k].words);

		if (nw <= n - i && nw > cw &&
		    words_prefix(commands[k].words, argv + i, nw)) {
			c = &commands[k];
			cw = nw;
		}
	}
	if (c == NULL) {
		offer_words(argv + i, n - i, &o);
		if (n - i == 0 && !ctx->interactive)
			offer(&o, "shell");
		else if (n - i == 0) {
			offer(&o, "exit");
			offer(&o, "quit");
		}
		return;
	}
	/* Inside a command: its options, an option's value, or an argument. */
	for (int k = i + cw; k < n; k++) {
		const struct cmd_opt *op;

		if (strcmp(argv[k], "--") == 0 || argv[k][0] != '-') {
			pos++;
			continue;
		}
		for (op = c->opts; op != NULL && op->name != NULL; op++)
			if (strcmp(argv[k] + 2, op->name) == 0)
				break;
		if (op != NULL && op->name != NULL && op->metavar != NULL) {
			if (k + 1 == n) {
				offer_kind(ctx, op->kind, &o);
				return;
			}
			k++;
		}
	}
	if (cur[0] == '-') {
		char buf[80];

		for (const struct cmd_opt *op = c->opts; op != NULL &&
		    op->name != NULL; op++) {
			snprintf(buf, sizeof(buf), "--%s", op->name);
			offer(&o, buf);
		}
		offer(&o, "--help");
		return;
	}
	for (const struct cmd_arg *a = c->args; a != NULL && a->name != NULL;
	    a++, pos--) {
		if (pos > 0 && !(a->flags & ARG_REPEAT))
			continue;
		if (a->kind == K_COMMAND) {
			/* help WORDS: complete the words after "help". */
			int skip = i + cw;

			offer_words(argv + skip, n - skip, &o);
		} else
			offer_kind(ctx, a->kind, &o);
		return;
	}
}

static void
print_cand(void *arg, const char *s)
{
	(void)arg;
	printf("%s\n", s);
}

int
complete_main(struct ctx *ctx, int argc, char **argv)
{
	hsm_status st;

	/* Completion never fails loudly: a bad config just means fewer names. */
	if (argc > 0 && strcmp(argv[0], "--") == 0) {
		argc--;
		argv++;
	}
	/* -F on the line being completed picks the configuration. */
	for (int i = 0; i + 1 < argc; i++)
		if (strcmp(argv[i], "-F") == 0 || strcmp(argv[i],
		    "--config") == 0)
			ctx->config_path = argv[i + 1];
	if (hsm_config_load(ctx->config_path, &ctx->cfg, &st) != 0)
		ctx->cfg = NULL;
	if (argc == 0) {
		char *empty[] = { (char *)"", NULL };

		complete_words(ctx, 1, empty, print_cand, NULL);
	} else
		complete_words(ctx, argc, argv, print_cand, NULL);
	hsm_config_free(&ctx->cfg);
	return 0;
}
