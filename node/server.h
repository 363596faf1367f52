/* hsmd's SSH server. */
#ifndef HSMD_SERVER_H
#define HSMD_SERVER_H

#include <stdbool.h>

#include "hsmctl.h"

/* Serve DIR on HOST:PORT (port 0: any free port) until SIGTERM/SIGINT. */
int server_run(const char *dir, const char *listen_on, bool foreground,
    hsm_status *st);

struct evp_pkey_st;
/* An Ed25519 PEM key of the node directory, made when absent and create. */
int load_ed25519_key(const char *dir, const char *file, bool create,
    struct evp_pkey_st **out, hsm_status *st);

#endif
