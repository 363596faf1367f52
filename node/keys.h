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
/* Keys of nodes of other clusters allowed to hand a partition over here
 * (exit transfer or migrate): the target operator's consent. */
#define EXITSRC_FILE "exit_sources"

/* "SHA256:..." as ssh-keygen -l prints it. */
int key_fingerprint(const ssh_key key, char *out, size_t outlen,
    hsm_status *st);
/* True if pub is listed in DIR/authorized_keys; read anew on every call so
 * that hsmd revoke takes effect without a restart. */
bool authkeys_allowed(const char *dir, const ssh_key pub);
bool exitsrc_allowed(const char *dir, const ssh_key pub);
/* exitsrc: the exit sources' list instead of the terminals'. */
int authkeys_add(const char *dir, const char *pubfile, bool exitsrc,
    char *fp, size_t fplen, hsm_status *st);
int authkeys_revoke(const char *dir, const char *fingerprint, bool exitsrc,
    hsm_status *st);
/* One authorized_keys line for a public key file, validated. */
int authkeys_line(const char *pubfile, char **line, char *fp, size_t fplen,
    hsm_status *st);

#endif
