#!/bin/sh
# Recover the keys of an hsmctl export file with the openssl command line
# alone (doc/export-format.md):
#
#   scripts/unwrap-export.sh EXPORT_FILE PRIVATE_KEY_PEM OUT_DIR
#
# EXPORT_FILE is what `hsmctl exit export P --wrap-key PUB --out FILE` wrote;
# PRIVATE_KEY_PEM is the private half of PUB (RSA, or EC on P-256 or P-384),
# not needed (any file, or /dev/null) for a --plain export.  For every key
# record it writes
#
#   OUT_DIR/ID.der   the key material: a PKCS#8 DER private key, or the 32 raw
#                    bytes of an aes-256 key
#   OUT_DIR/ID.pem   the same private key as PKCS#8 PEM (not for aes-256)
#
# after checking that the SHA-256 of the material is the record's digest and,
# for a private key, that its public key is the record's "pub".  OUT_DIR is
# made (mode 0700) if it does not exist; an ID.der or ID.pem there already is
# never replaced.  Prints one line per key; exits 0 when every key was
# recovered and checked, 1 on the first failure (naming the key), 2 on a
# usage error.
#
# The KEK, and for EC the ECDH shared secret, are passed to openssl on its
# command line (`enc -K`, `kdf -kdfopt hexkey:`), as the openssl tool takes
# them no other way: while it runs they can be read by other users of this
# machine (ps, /proc/PID/cmdline).  Run it on a machine of your own.
set -eu
umask 077
LC_ALL=C
export LC_ALL

INFO=hsmctl-export-v1
# RFC 5649's alternative initial value: the default IV of AES key wrap
# with padding (openssl's -id-aes256-wrap-pad wants it given).
KWP_IV=A65959A6

usage() {
	echo "usage: $0 EXPORT_FILE PRIVATE_KEY_PEM OUT_DIR" >&2
	exit 2
}
die() {
	echo "unwrap-export: $*" >&2
	exit 1
}

[ $# -eq 3 ] || usage
EXPORT=$1
KEY=$2
OUT=$3
if [ ! -f "$EXPORT" ] || [ ! -r "$EXPORT" ]; then
	die "cannot read $EXPORT"
fi
command -v openssl >/dev/null 2>&1 || die "the openssl command is needed"
command -v od >/dev/null 2>&1 || die "the od command is needed"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/unwrap-export.XXXXXX") ||
	die "cannot make a temporary directory"
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' HUP INT TERM

# Hex of a file, lower case, one line.
hex() {
	od -An -tx1 -v "$1" | tr -d ' \n'
}

# b64dec TEXT FILE WHAT: strict base64 (one line, padded, canonical) into
# FILE; openssl base64 -d ignores what it cannot read, so the bytes are
# encoded again and must give back TEXT.
b64dec() {
	printf '%s' "$1" | openssl base64 -d -A >"$2" 2>/dev/null ||
		die "$3 is not base64"
	[ "$(openssl base64 -A -in "$2")" = "$1" ] || die "$3 is not base64"
}

# ---- the header ------------------------------------------------------------

exec 3<"$EXPORT"
lineno=0
next() {
	IFS= read -r line <&3 || die "$EXPORT ends at line $lineno, before its count"
	lineno=$((lineno + 1))
	word=${line%% *}
	if [ "$word" = "$line" ]; then
		rest=""
	else
		rest=${line#* }
	fi
}
# head_line WORD: the next line is "WORD VALUE"; VALUE in $rest.
head_line() {
	next
	if [ "$word" != "$1" ] || [ -z "$rest" ]; then
		die "$EXPORT line $lineno: expected '$1 ...'"
	fi
}

next
[ "$line" = "hsmctl-export 1" ] ||
	die "$EXPORT is not an hsmctl export file of version 1"
head_line partition
partition=$rest
head_line node
head_line cluster
head_line created
head_line wrap
wrap=$rest
case $wrap in
rsa-oaep-sha256+aes256-kwp | ecdh-hkdf-sha256+aes256-kwp | plain) ;;
*) die "$EXPORT: unknown wrapping '$wrap'" ;;
esac
if [ "$wrap" != plain ]; then
	[ -r "$KEY" ] || die "cannot read the private key $KEY"
	openssl pkey -in "$KEY" -noout 2>/dev/null ||
		die "$KEY is not a PEM private key (encrypted ones need its passphrase: openssl pkey -in $KEY -out plain.pem)"
fi

if [ ! -d "$OUT" ]; then
	{ mkdir -p -- "$OUT" && chmod 700 "$OUT"; } || die "cannot make $OUT"
fi

# ---- one key ---------------------------------------------------------------

# unwrap: the record in $id $type $digest $label $pub $kek $wrapped $material.
unwrap() {
	der=$OUT/$id.der
	pem=$OUT/$id.pem
	for f in "$der" "$pem"; do
		[ ! -e "$f" ] || die "$f exists; not replaced"
	done
	rm -f "$TMP"/*
	if [ "$wrap" = plain ]; then
		b64dec "$material" "$TMP/material" "the material of key $id"
	else
		b64dec "$kek" "$TMP/kek" "the kek of key $id"
		b64dec "$wrapped" "$TMP/wrapped" "the wrapped key $id"
		if [ "$wrap" = rsa-oaep-sha256+aes256-kwp ]; then
			# The KEK, RSA-OAEP with SHA-256 and MGF1-SHA-256.
			openssl pkeyutl -decrypt -inkey "$KEY" \
			    -pkeyopt rsa_padding_mode:oaep \
			    -pkeyopt rsa_oaep_md:sha256 \
			    -pkeyopt rsa_mgf1_md:sha256 \
			    -in "$TMP/kek" -out "$TMP/kek.raw" 2>"$TMP/err" ||
				die "key $id: cannot decrypt its KEK with $KEY (not the private half of the wrap key?)"
		else
			# ECDH with the ephemeral public key, then
			# HKDF-SHA256 (no salt, info "hsmctl-export-v1").
			openssl pkeyutl -derive -inkey "$KEY" -peerkey "$TMP/kek" \
			    -peerform DER -out "$TMP/z" 2>"$TMP/err" ||
				die "key $id: no ECDH with its ephemeral key and $KEY (not the private half of the wrap key?)"
			openssl kdf -keylen 32 -kdfopt digest:SHA256 \
			    -kdfopt "hexkey:$(hex "$TMP/z")" \
			    -kdfopt "info:$INFO" -binary -out "$TMP/kek.raw" \
			    HKDF 2>"$TMP/err" ||
				die "key $id: HKDF failed"
		fi
		k=$(hex "$TMP/kek.raw")
		[ ${#k} -eq 64 ] || die "key $id: its KEK is not 32 bytes"
		# AES-256 key wrap with padding (RFC 5649).
		openssl enc -d -id-aes256-wrap-pad -K "$k" -iv "$KWP_IV" \
		    -in "$TMP/wrapped" -out "$TMP/material" 2>"$TMP/err" ||
			die "key $id: the wrapped key does not unwrap (altered, or another wrap key)"
	fi
	got=$(openssl dgst -sha256 -r "$TMP/material")
	got=${got%% *}
	[ "$got" = "$digest" ] ||
		die "key $id: SHA-256 of the material is $got, not $digest"
	if [ "$type" = aes-256 ]; then
		[ "$(wc -c <"$TMP/material" | tr -d ' ')" -eq 32 ] ||
			die "key $id: an aes-256 key that is not 32 bytes"
	else
		b64dec "$pub" "$TMP/pub" "the public key of key $id"
		openssl pkey -inform DER -in "$TMP/material" -pubout \
		    -outform DER -out "$TMP/derived" 2>"$TMP/err" ||
			die "key $id: the material is not a PKCS#8 private key"
		cmp -s "$TMP/pub" "$TMP/derived" ||
			die "key $id: its public key is not the one exported"
		openssl pkey -inform DER -in "$TMP/material" \
		    -out "$TMP/pem" 2>"$TMP/err" ||
			die "key $id: cannot write it as PEM"
	fi
	mv "$TMP/material" "$der"
	[ "$type" = aes-256 ] || mv "$TMP/pem" "$pem"
	shown=""
	if [ -n "$label" ]; then
		b64dec "$label" "$TMP/label" "the label of key $id"
		shown=$(tr '\000-\037\177' '?' <"$TMP/label")
	fi
	printf '%s %s ok%s\n' "$id" "$type" "${shown:+ $shown}"
}

# ---- the key records, the skipped keys, the count --------------------------

n=0
skipped=0
while :; do
	next
	case $word in
	key) ;;
	skipped)
		skipped=$((skipped + 1))
		echo "skipped: $rest"
		continue
		;;
	count)
		[ "$rest" = "$n" ] ||
			die "$EXPORT: count $rest, but $n key records (cut short, or altered)"
		if IFS= read -r line <&3 || [ -n "$line" ]; then
			die "$EXPORT: something follows the count"
		fi
		break
		;;
	*) die "$EXPORT line $lineno: unexpected '$word'" ;;
	esac
	[ "$skipped" -eq 0 ] || die "$EXPORT line $lineno: a key after the skipped ones"
	# key ID TYPE DIGEST
	set -f
	# shellcheck disable=SC2086 # split on purpose: three words
	set -- $rest
	set +f
	[ $# -eq 3 ] || die "$EXPORT line $lineno: expected 'key ID TYPE DIGEST'"
	id=$1
	type=$2
	digest=$3
	case $id in
	'' | *[!A-Za-z0-9_-]*) die "$EXPORT line $lineno: bad key id" ;;
	esac
	[ ${#id} -le 64 ] || die "$EXPORT line $lineno: bad key id"
	case $type in
	rsa-2048 | rsa-3072 | rsa-4096 | ec-p256 | ec-p384 | ed25519 | aes-256) ;;
	*) die "$EXPORT line $lineno: unknown key type '$type'" ;;
	esac
	case $digest in
	*[!0-9a-f]*) die "$EXPORT line $lineno: bad digest" ;;
	esac
	[ ${#digest} -eq 64 ] || die "$EXPORT line $lineno: bad digest"
	label=""
	pub=""
	kek=""
	wrapped=""
	material=""
	seen=" "
	while :; do
		next
		case $seen in
		*" $word "*) die "$EXPORT line $lineno: '$word' twice in key $id" ;;
		esac
		seen="$seen$word "
		case $word in
		label) label=$rest ;;
		pub) pub=$rest ;;
		kek) kek=$rest ;;
		wrapped) wrapped=$rest ;;
		material) material=$rest ;;
		end) break ;;
		*) die "$EXPORT line $lineno: unexpected '$word' in key $id" ;;
		esac
	done
	case $seen in *" label "*) ;; *) die "key $id has no label line" ;; esac
	if [ "$type" = aes-256 ]; then
		[ -z "$pub" ] || die "key $id: an aes-256 key with a public key"
	else
		[ -n "$pub" ] || die "key $id has no pub line"
	fi
	if [ "$wrap" = plain ]; then
		if [ -z "$material" ] || [ -n "$kek$wrapped" ]; then
			die "key $id: a plain export needs 'material' alone"
		fi
	else
		if [ -z "$kek" ] || [ -z "$wrapped" ] || [ -n "$material" ]; then
			die "key $id: a wrapped export needs 'kek' and 'wrapped'"
		fi
	fi
	unwrap
	n=$((n + 1))
done
exec 3<&-
echo "recovered $n key(s) of partition $partition into $OUT; $skipped skipped"
