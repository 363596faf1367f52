#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "fsutil.h"
#include "keys.h"
#include "log.h"

int
key_fingerprint(const ssh_key key, char *out, size_t outlen, hsm_status *st)
{
	char *b64 = NULL;
	unsigned char *blob = NULL;
	size_t n;
	int len, r = -1;

	if (ssh_pki_export_pubkey_base64(key, &b64) != SSH_OK)
		return hsm_fail(st, "internal", "cannot export public key");
	n = strlen(b64);
	if (n == 0 || n % 4 != 0 || (blob = malloc(n)) == NULL) {
		hsm_fail(st, "internal", "cannot decode public key");
		goto out;
	}
	if ((len = EVP_DecodeBlock(blob, (unsigned char *)b64, (int)n)) < 0) {
		hsm_fail(st, "internal", "cannot decode public key");
		goto out;
	}
	/* EVP_DecodeBlock counts padding as zero bytes. */
	if (b64[n - 1] == '=')
		len--;
	if (b64[n - 2] == '=')
		len--;
	r = hsm_fingerprint(blob, (size_t)len, out, outlen, st);
out:
	free(blob);
	ssh_string_free_char(b64);
	return r;
}

/* Parse "type base64 [comment]"; NULL for blank, comment or bad lines. */
static ssh_key
parse_line(char *line)
{
	char *save = NULL, *type, *b64;
	ssh_key key = NULL;
	enum ssh_keytypes_e t;

	while (*line == ' ' || *line == '\t')
		line++;
	if (*line == '\0' || *line == '#')
		return NULL;
	if ((type = strtok_r(line, " \t", &save)) == NULL ||
	    (b64 = strtok_r(NULL, " \t", &save)) == NULL)
		return NULL;
	if ((t = ssh_key_type_from_name(type)) == SSH_KEYTYPE_UNKNOWN)
		return NULL;
	if (ssh_pki_import_pubkey_base64(b64, t, &key) != SSH_OK)
		return NULL;
	return key;
}

static bool
keys_allowed(const char *dir, const char *file, const ssh_key pub)
{
	char path[4096], *buf = NULL, *line, *save = NULL;
	size_t len;
	bool ok = false;
	hsm_status st;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	/* The exit sources' file exists only once one is authorised. */
	if (strcmp(file, AUTHKEYS_FILE) != 0 && access(path, F_OK) != 0)
		return false;
	if (fs_read(path, AUTHKEYS_MAX, &buf, &len, &st) != 0) {
		log_warn("%s", st.message);
		return false;
	}
	for (line = strtok_r(buf, "\n", &save); line != NULL && !ok;
	    line = strtok_r(NULL, "\n", &save)) {
		ssh_key k = parse_line(line);

		if (k == NULL)
			continue;
		ok = ssh_key_cmp(k, pub, SSH_KEY_CMP_PUBLIC) == 0;
		ssh_key_free(k);
	}
	free(buf);
	return ok;
}

int
authkeys_line(const char *pubfile, char **line, char *fp, size_t fplen,
    hsm_status *st)
{
	ssh_key key = NULL;
	char *b64 = NULL;
	const char *type;
	size_t n;
	int r = -1;

	*line = NULL;
	if (ssh_pki_import_pubkey_file(pubfile, &key) != SSH_OK)
		return hsm_fail(st, "bad_value", "%s is not an OpenSSH public "
		    "key file", pubfile);
	if ((type = ssh_key_type_to_char(ssh_key_type(key))) == NULL ||
	    ssh_pki_export_pubkey_base64(key, &b64) != SSH_OK) {
		hsm_fail(st, "bad_value", "unsupported key in %s", pubfile);
		goto out;
	}
	if (key_fingerprint(key, fp, fplen, st) != 0)
		goto out;
	n = strlen(type) + strlen(b64) + strlen(fp) + 4;
	if ((*line = malloc(n)) == NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	snprintf(*line, n, "%s %s %s\n", type, b64, fp);
	r = 0;
out:
	ssh_string_free_char(b64);
	ssh_key_free(key);
	return r;
}

bool
authkeys_allowed(const char *dir, const ssh_key pub)
{
	return keys_allowed(dir, AUTHKEYS_FILE, pub);
}

bool
exitsrc_allowed(const char *dir, const ssh_key pub)
{
	return keys_allowed(dir, EXITSRC_FILE, pub);
}

/* Rewrite the file, keeping or dropping each line; lines are kept verbatim. */
static int
rewrite(const char *dir, const char *file, const char *drop_fp,
    const char *add_line, const char *add_fp, hsm_status *st)
{
	char path[4096], *buf = NULL, *out = NULL, *line, *next;
	size_t len, olen = 0;
	bool dropped = false;
	int r = -1;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (strcmp(file, AUTHKEYS_FILE) != 0 && access(path, F_OK) != 0 &&
	    fs_write_atomic(path, "", 0, 0600, st) != 0)
		return -1;
	if (fs_read(path, AUTHKEYS_MAX, &buf, &len, st) != 0)
		return -1;
	if ((out = malloc(len + (add_line ? strlen(add_line) : 0) + 2)) ==
	    NULL) {
		hsm_fail(st, "no_memory", "out of memory");
		goto out;
	}
	for (line = buf; *line != '\0'; line = next) {
		char *copy, fp[64] = "";
		size_t l;
		ssh_key k;

		if ((next = strchr(line, '\n')) != NULL)
			next++;
		else
			next = line + strlen(line);
		l = (size_t)(next - line);
		if ((copy = strndup(line, l)) == NULL) {
			hsm_fail(st, "no_memory", "out of memory");
			goto out;
		}
		copy[strcspn(copy, "\n")] = '\0';
		if ((k = parse_line(copy)) != NULL)
			key_fingerprint(k, fp, sizeof(fp), NULL);
		ssh_key_free(k);
		free(copy);
		if (add_fp != NULL && strcmp(fp, add_fp) == 0) {
			hsm_fail(st, "conflict", "key %s is already "
			    "authorised", add_fp);
			goto out;
		}
		if (drop_fp != NULL && strcmp(fp, drop_fp) == 0) {
			dropped = true;
			continue;
		}
		memcpy(out + olen, line, l);
		olen += l;
		if (l > 0 && line[l - 1] != '\n')
			out[olen++] = '\n';
	}
	if (drop_fp != NULL && !dropped) {
		hsm_fail(st, "not_found", "no authorised key has fingerprint "
		    "%s", drop_fp);
		goto out;
	}
	if (add_line != NULL) {
		memcpy(out + olen, add_line, strlen(add_line));
		olen += strlen(add_line);
	}
	r = fs_write_atomic(path, out, olen, 0600, st);
out:
	free(buf);
	free(out);
	return r;
}

int
authkeys_add(const char *dir, const char *pubfile, bool exitsrc, char *fp,
    size_t fplen, hsm_status *st)
{
	char *line = NULL;
	int r;

	if (authkeys_line(pubfile, &line, fp, fplen, st) != 0)
		return -1;
	r = rewrite(dir, exitsrc ? EXITSRC_FILE : AUTHKEYS_FILE, NULL, line,
	    fp, st);
	free(line);
	return r;
}

int
authkeys_revoke(const char *dir, const char *fingerprint, bool exitsrc,
    hsm_status *st)
{
	if (strncmp(fingerprint, "SHA256:", 7) != 0)
		return hsm_fail(st, "bad_value", "'%s' is not a SHA256 "
		    "fingerprint (see ssh-keygen -lf KEY.pub)", fingerprint);
	return rewrite(dir, exitsrc ? EXITSRC_FILE : AUTHKEYS_FILE,
	    fingerprint, NULL, NULL, st);
}
