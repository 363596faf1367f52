# shellcheck shell=bash
#
# What scripts/bench.sh, bench-backup.sh and bench-replication.sh share;
# sourced by them, after their own options.
#
#   SRC                    the source tree
#   bench_begin            build (optimised, no sanitizers), then a temp
#                          dir W, cleaned up on exit (BENCH_KEEP=1 keeps it),
#                          as the working directory; HC, HD, PIDS
#   port                   a free loopback port
#   bench_officers         a terminal key tk and the officer keys g1, alice,
#                          bob (fast to open: logins are not what is
#                          measured), with NAME.pass and so.pass
#   bench_node DIR PORT    start hsmd on DIR, wait until it serves
#   bench_sshd [LINE...]   a local OpenSSH sshd with its own host key and
#                          config (plus LINE...), key ssh_key: port SP

SRC=$(cd "$(dirname "$0")/.." && pwd)

bench_begin() {
	make -C "$SRC" -s >/dev/null
	HC=$SRC/cli/hsmctl
	HD=$SRC/node/hsmd
	W=$(mktemp -d "${TMPDIR:-/tmp}/hsmctl-bench.XXXXXX")
	PIDS=()
	trap bench_cleanup EXIT
	cd "$W" || exit 1
	umask 077
}

bench_cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -n "${BENCH_KEEP:-}" ] || rm -rf "$W"
}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

bench_officers() {
	ssh-keygen -q -t ed25519 -N '' -f tk
	for o in g1 alice bob; do
		printf 'bench-%s\n' "$o" >"$o.pass"
		openssl genpkey -algorithm ED25519 -aes-256-cbc \
		    -pass "file:$o.pass" -out "$o.key" 2>/dev/null
		openssl pkey -in "$o.key" -passin "file:$o.pass" -pubout \
		    -out "$o.key.pub"
	done
	cat alice.pass bob.pass >so.pass
}

bench_node() {
	"$HD" -d "$1" -l "127.0.0.1:$2" -f 2>"$1.log" &
	PIDS+=($!)
	for _ in $(seq 100); do [ -s "$1/hsmd.addr" ] && return 0; sleep 0.05; done
	echo "bench: the node $1 did not start" >&2
	cat "$1.log" >&2
	exit 1
}

bench_sshd() {
	local sshd
	sshd=$(command -v sshd || echo /usr/sbin/sshd)
	SP=$(port)
	ssh-keygen -q -t ed25519 -N '' -f sshd_host
	ssh-keygen -q -t ed25519 -N '' -f ssh_key
	mkdir -p sshd_auth && cp ssh_key.pub sshd_auth/authorized_keys
	{
		cat <<EOC
Port $SP
ListenAddress 127.0.0.1
HostKey $W/sshd_host
AuthorizedKeysFile $W/sshd_auth/authorized_keys
PidFile $W/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
EOC
		[ $# -eq 0 ] || printf '%s\n' "$@"
	} >sshd_config
	[ "$(id -u)" != 0 ] || mkdir -p /run/sshd
	"$sshd" -D -e -f sshd_config 2>sshd.log &
	PIDS+=($!)
	for _ in $(seq 100); do
		python3 -c "import socket; socket.create_connection(('127.0.0.1', $SP), 1)" \
		    2>/dev/null && return 0
		sleep 0.05
	done
	echo "bench: the local sshd did not start" >&2
	cat sshd.log >&2
	exit 1
}
