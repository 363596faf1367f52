#!/usr/bin/env bash
#
# Replication lag master -> clone on loopback: N changes (default 10,000
# partition set lines in one batch, each its own durable transaction) on
# the master of a two-node cluster; the lag of each change is the clone's
# commit time minus the master's (both in the clone's replication log, one
# clock).  Prints p50, p99 and max of each of RUNS batches, and their
# medians with min and max.  Target: p99 <= 50 ms.
#
#   scripts/bench-replication.sh [-n CHANGES] [--runs N] [--json FILE] [--quick]
#
# --json FILE also writes each run's figures as JSON (scripts/bench.sh
# reads it).  Builds in-tree with optimisation (no sanitizers); runs in a
# temp dir.
set -eu

N=10000
RUNS=3
JSON=
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--json) JSON=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
	--quick) N=500; RUNS=1; shift ;;
	*) echo "usage: $0 [-n CHANGES] [--runs N] [--json FILE] [--quick]" >&2; exit 2 ;;
	esac
done

. "$(dirname "$0")/bench-lib.sh"
bench_begin
bench_officers
P1=$(port) P2=$(port)
"$HD" init -d n1 --cluster bench --name n1 --authorize tk.pub \
    --genesis g1=g1.key.pub >/dev/null
bench_node n1 "$P1"
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
bench_node n2 "$P2"
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
# One line a run: FIRST_SEQ LAST_SEQ MASTER_MS
: >runs.txt
for r in $(seq 1 "$RUNS"); do
	FIRST=$(( $(seq_of n1) + 1 ))
	# Each run sets values no earlier run set: every line is a change.
	# whoami between them keeps each change its own transaction and log
	# entry (adjacent partition set lines would go as one batch request).
	for i in $(seq 1 "$N"); do
		echo "partition set bench max-key-objects=$(( (r - 1) * N + i ))"
		echo whoami
	done >changes.batch
	T0=$(date +%s%N)
	"${HCF[@]}" -n n1 "${SO[@]}" -f changes.batch 3<so.pass >/dev/null
	T1=$(date +%s%N)
	LAST=$(seq_of n1)
	wait_sync
	echo "$FIRST $LAST $(( (T1 - T0) / 1000000 ))" >>runs.txt
done
python3 - n2/store.db runs.txt "$JSON" <<'PYEOF'
import json, sqlite3, statistics, sys
db, runsfile, out = sys.argv[1], sys.argv[2], sys.argv[3]
c = sqlite3.connect(db)
runs = []
for line in open(runsfile):
    first, last, ms = (int(x) for x in line.split())
    lags = sorted(r[0] for r in c.execute(
        "SELECT applied_ms - time_ms FROM replog WHERE seq BETWEEN ? AND ?",
        (first, last)))
    if len(lags) != last - first + 1:
        sys.exit("bench: the clone applied %d of %d changes" % (len(lags), last - first + 1))
    pct = lambda p: lags[min(len(lags) - 1, int(round(p / 100.0 * (len(lags) - 1))))]
    runs.append({"changes": len(lags), "master_ms": ms, "p50_ms": pct(50),
                 "p99_ms": pct(99), "max_ms": lags[-1]})
for i, r in enumerate(runs, 1):
    print("P5  run %d: replication lag master -> clone, %d changes (%d ms on the master, %.0f changes/s):"
          % (i, r["changes"], r["master_ms"], r["changes"] * 1000.0 / max(r["master_ms"], 1)))
    print("    p50 %d ms   p99 %d ms   max %d ms" % (r["p50_ms"], r["p99_ms"], r["max_ms"]))
p99 = [r["p99_ms"] for r in runs]
p50 = [r["p50_ms"] for r in runs]
med = statistics.median(p99)
print("P5  %d runs: p50 %g ms [%d-%d]   p99 %g ms [%d-%d]   (target p99 <= 50 ms: %s)"
      % (len(runs), statistics.median(p50), min(p50), max(p50), med, min(p99), max(p99),
         "met" if med <= 50 else "MISSED"))
if out:
    with open(out, "w") as f:
        json.dump({"changes_per_run": runs[0]["changes"], "runs": runs}, f, indent=1)
        f.write("\n")
PYEOF
