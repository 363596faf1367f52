#!/bin/sh
# Check every build and test dependency; install what is missing with
# apt-get when run as root, else print the exact command and fail.
# `make check` and `make demo` run this first.
set -u

# Debian 12 package names: build, libraries, tests, docs, fuzzing.
PKGS="gcc make pkg-config
libssl-dev libssh2-1-dev libssh-dev libcbor-dev libedit-dev
libsqlite3-dev libjansson-dev libcmocka-dev
mandoc clang libclang-rt-14-dev openssh-client python3
bash-completion zsh"
# make bench also measures against OpenSSH's server: `deps.sh --bench`.
[ "${1:-}" = --bench ] && PKGS="$PKGS openssh-server"

if ! command -v dpkg-query >/dev/null 2>&1; then
	# Not Debian: check what we can and let the build say the rest.
	missing=
	for m in libcbor libssh2 libssh openssl sqlite3 jansson cmocka libedit; do
		pkg-config --exists "$m" 2>/dev/null || missing="$missing $m"
	done
	for c in cc make mandoc clang ssh-keygen python3 bash zsh; do
		command -v "$c" >/dev/null 2>&1 || missing="$missing $c"
	done
	if [ -n "$missing" ]; then
		echo "deps.sh: missing:$missing (install them with your package manager)" >&2
		exit 1
	fi
	exit 0
fi

missing=
for p in $PKGS; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
	case "$st" in
	*" installed") ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
	echo "deps.sh: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null || { echo "deps.sh: apt-get update failed" >&2; exit 1; }
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing || exit 1
	exit 0
fi
echo "deps.sh: missing packages; run as root:" >&2
echo "  apt-get install -y$missing" >&2
exit 1
