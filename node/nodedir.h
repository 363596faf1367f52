/* Creating a node directory (hsmd init). */
#ifndef HSMD_NODEDIR_H
#define HSMD_NODEDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hsmctl.h"

#define MASTER_KEY_FILE "master.key"
#define MASTER_KEY_LEN 32
#define ATTEST_KEY_FILE "attest_ed25519.pem"

struct init_opts {
	const char *dir;
	const char *cluster;
	const char *name;
	bool sandbox;
	const char **authorize;		/* public key files */
	size_t nauthorize;
	const char **genesis_names;	/* the device owner's officers */
	const char **genesis_keys;	/* their PEM public key files */
	size_t ngenesis;
	int64_t genesis_quorum;		/* 0: 1 for one officer, else 2 */
	/* Joining an existing cluster instead of making one. */
	const char *join;		/* the master's HOST:PORT */
	const char *join_fp;		/* its host key, "SHA256:..." */
	const char *join_role;		/* clone or bc */
	char result[256];		/* the master's answer, for the user */
};

/* Create DIR whole or not at all: built aside, then renamed into place. */
int nodedir_init(struct init_opts *o, hsm_status *st);

#endif
