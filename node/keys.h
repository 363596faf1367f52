/* SSH keys of the node: its host key and the authorised terminal keys. */
#ifndef HSMD_KEYS_H
#define HSMD_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include <libssh/libssh.h>

#include "hsmctl.h"

#define AUTHKEYS_FILE "authorized_keys"
#define HOSTKEY_FILE "ssh_host_ed25519_key"
#define AUTHKEYS_MAX (1024 * 1024)

/* "SHA256:..." as ssh-keygen -l prints it. */
int key_fingerprint(const ssh_key key, char *out, size_t outlen,
    hsm_status *st);
/* True if pub is listed in DIR/authorized_keys; read anew on every call so
 * that hsmd revoke takes effect without a restart. */
bool authkeys_allowed(const char *dir, const ssh_key pub);
int authkeys_add(const char *dir, const char *pubfile, char *fp, size_t fplen,
    hsm_status *st);
int authkeys_revoke(const char *dir, const char *fingerprint, hsm_status *st);
/* One authorized_keys line for a public key file, validated. */
int authkeys_line(const char *pubfile, char **line, char *fp, size_t fplen,
    hsm_status *st);

#endif
