#!/usr/bin/env bash
#
# Replication lag master -> clone on loopback: N changes (default 10,000
# partition set lines in one batch, each its own durable transaction) on
# the master of a two-node cluster; the lag of each change is the clone's
# commit time minus the master's (both in the clone's replication log, one
# clock).  Prints p50, p99 and max.  Target: p99 <= 50 ms.
#
#   scripts/bench-replication.sh [-n CHANGES] [--quick]
#
# Builds in-tree with optimisation (no sanitizers); runs in a temp dir.
set -eu

N=10000
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=$2; shift 2 ;;
	--quick) N=500; shift ;;
	*) echo "usage: $0 [-n CHANGES] [--quick]" >&2; exit 2 ;;
	esac
done

SRC=$(cd "$(dirname "$0")/.." && pwd)
make -C "$SRC" -s >/dev/null
HC=$SRC/cli/hsmctl
HD=$SRC/node/hsmd
W=$(mktemp -d "${TMPDIR:-/tmp}/hsmctl-bench.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT
cd "$W"
umask 077

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() { # DIR PORT
	"$HD" -d "$1" -l "127.0.0.1:$2" -f 2>"$1.log" &
	PIDS+=($!)
	for _ in $(seq 100); do [ -s "$1/hsmd.addr" ] && return; sleep 0.05; done
	echo "bench: $1 did not start" >&2
	exit 1
}

ssh-keygen -q -t ed25519 -N '' -f tk
for o in g1 alice bob; do
	printf 'bench-passphrase-%s\n' "$o" >"$o.pass"
	"$HC" --passphrase-fd 3 officer keygen "$o.key" 3<"$o.pass" >/dev/null
done
cat alice.pass bob.pass >so.pass
P1=$(port) P2=$(port)
"$HD" init -d n1 --cluster bench --name n1 --authorize tk.pub \
    --genesis g1=g1.key.pub >/dev/null
start n1 "$P1"
cat >cfg <<EOF
terminal-key $W/tk
known-hosts $W/known_hosts
cluster bench
    node n1 127.0.0.1:$P1
    node n2 127.0.0.1:$P2
EOF
HCF=("$HC" -F cfg -q)
"${HCF[@]}" -n n1 --accept-new-host-key node info >/dev/null
printf 'officer add so alice alice.key.pub\nofficer add so bob bob.key.pub\n' >so.batch
"${HCF[@]}" -n n1 --as genesis --officer g1.key --passphrase-fd 3 -f so.batch \
    3<g1.pass >/dev/null
FP=$(ssh-keygen -lf n1/ssh_host_ed25519_key.pub | awk '{print $2}')
"$HD" init -d n2 --join "127.0.0.1:$P1" --name n2 --role clone \
    --authorize tk.pub --master-fingerprint "$FP" >/dev/null
start n2 "$P2"
SO=(--as so --officer alice.key --officer bob.key --passphrase-fd 3)
"${HCF[@]}" -n n1 "${SO[@]}" cluster admit n2 3<so.pass >/dev/null
"${HCF[@]}" -n n2 --accept-new-host-key node info >/dev/null
"${HCF[@]}" -n n1 "${SO[@]}" partition create bench 3<so.pass >/dev/null

seq_of() { "${HCF[@]}" -n "$1" -o json node info |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["last_seq"])'; }
wait_sync() {
	local want
	want=$(seq_of n1)
	for _ in $(seq 600); do
		[ "$(seq_of n2)" -ge "$want" ] && return 0
		sleep 0.1
	done
	echo "bench: the clone did not catch up" >&2
	exit 1
}
wait_sync
FIRST=$(( $(seq_of n1) + 1 ))
for i in $(seq 1 "$N"); do
	echo "partition set bench max-key-objects=$i"
done >changes.batch
T0=$(date +%s%N)
"${HCF[@]}" -n n1 "${SO[@]}" -f changes.batch 3<so.pass >/dev/null
T1=$(date +%s%N)
LAST=$(seq_of n1)
wait_sync
python3 - n2/store.db "$FIRST" "$LAST" "$N" "$(( (T1 - T0) / 1000000 ))" <<'PYEOF'
import sqlite3, sys
db, first, last, n, ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
c = sqlite3.connect(db)
lags = sorted(r[0] for r in c.execute(
    "SELECT applied_ms - time_ms FROM replog WHERE seq BETWEEN ? AND ?",
    (first, last)))
if len(lags) != last - first + 1:
    sys.exit("bench: the clone applied %d of %d changes" % (len(lags), last - first + 1))
pct = lambda p: lags[min(len(lags) - 1, int(round(p / 100.0 * (len(lags) - 1))))]
print("P5  replication lag master -> clone, %d changes (%d ms on the master, %.0f changes/s):"
      % (len(lags), ms, len(lags) * 1000.0 / max(ms, 1)))
print("    p50 %d ms   p99 %d ms   max %d ms   (target p99 <= 50 ms: %s)"
      % (pct(50), pct(99), lags[-1], "met" if pct(99) <= 50 else "MISSED"))
PYEOF
