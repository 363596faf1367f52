#!/usr/bin/env bash
#
# Backups of a 120 MB partition, side by side with their references, in
# one run on this machine:
#   P4  backup create        vs  openssl speed -evp aes-256-gcm (16 KiB
#                                blocks, one core)      target >= 0.5x
#   P3  backup download      vs  scp of a 120 MB file from a local
#                                OpenSSH sshd           target >= 0.8x
# and the peak RSS of the node and of hsmctl (bound: 64 MB each).  Each
# figure is measured RUNS times, ours and its reference alternately, and
# shown as the median with min and max.
#
#   scripts/bench-backup.sh [--mb N] [--runs N] [--json FILE] [--quick]
#
# --json FILE also writes every sample as JSON (scripts/bench.sh reads it).
# Builds in-tree with optimisation (no sanitizers); runs in a temp dir;
# starts its own node and its own sshd on spare loopback ports.
set -eu

MB=120
RUNS=3
GCM_SECONDS=3
JSON=
while [ $# -gt 0 ]; do
	case $1 in
	--mb) MB=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--json) JSON=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
	--quick) MB=16; RUNS=2; GCM_SECONDS=1; shift ;;
	*) echo "usage: $0 [--mb N] [--runs N] [--json FILE] [--quick]" >&2; exit 2 ;;
	esac
done

. "$(dirname "$0")/bench-lib.sh"
[ "$(id -u)" != 0 ] || "$SRC/scripts/deps.sh" --bench >/dev/null
bench_begin

now() { date +%s.%N; }
# CMD...: run it to its end; "PEAK_RSS_MB WALL_S" in m.out (bench/spawn.c
# measures both, for the command alone).
"${CC:-cc}" -O2 -o spawn "$SRC/bench/spawn.c"
measure() {
	local rc=0
	./spawn m.raw "$@" </dev/null >/dev/null || rc=$?
	[ "$rc" = 0 ] || { echo "bench: $1 ... exited $rc" >&2; exit 1; }
	awk '{ printf "%.1f %.6f\n", $2 / 1024, $1 }' m.raw >m.out
}
hwm() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# A node with a genesis officer whose key opens fast (the login is not
# what is measured), an SO pair, and a partition of $MB MB.
bench_officers
P1=$(port)
"$HD" init -d n1 --cluster bench --name n1 --authorize tk.pub \
    --genesis g1=g1.key.pub >/dev/null
bench_node n1 "$P1"
NODE=${PIDS[-1]}
HCF=("$HC" -n "127.0.0.1:$P1" -q)
export HSMCTL_CONFIG=$W/cfg
printf 'terminal-key %s/tk\nknown-hosts %s/kh\n' "$W" "$W" >cfg
"${HCF[@]}" --accept-new-host-key node info >/dev/null
printf 'officer add so alice alice.key.pub\nofficer add so bob bob.key.pub\n' >so.batch
"${HCF[@]}" --as genesis --officer g1.key --passphrase-fd 3 -f so.batch \
    3<g1.pass >/dev/null
"${HCF[@]}" --as so --officer alice.key --officer bob.key --passphrase-fd 3 \
    partition create big 3<so.pass >/dev/null
python3 - n1/store.db "$MB" <<'PYEOF'
import os, sqlite3, sys
db, mb = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db, timeout=30)
blob = 256 * 1024
for i in range(mb * 4):
    c.execute("INSERT INTO objects (id, partition, type, label, extractable, sensitive, state, created, priv, size) "
              "VALUES (?, 'big', 'aes-256', ?, 0, 1, 'active', 0, ?, ?)",
              ("%032x" % (0xb16 << 64 | i), "bulk-%d" % i, os.urandom(blob), blob))
c.commit()
PYEOF
GEN=(--as genesis --officer g1.key --passphrase-fd 3)

# The reference server: a local OpenSSH sshd with its own configuration.
bench_sshd "Subsystem sftp internal-sftp"
P2=$SP
SCP=(scp -q -F /dev/null -P "$P2" -i ssh_key -o StrictHostKeyChecking=no
    -o UserKnownHostsFile=/dev/null -o BatchMode=yes)

# One line a run: SIZE T_CREATE GCM_BPS T_DOWNLOAD T_SCP RSS_CREATE RSS_DOWNLOAD
: >runs.txt
for _ in $(seq 1 "$RUNS"); do
	# P4: backup create against the cipher's own rate.
	measure "${HCF[@]}" "${GEN[@]}" backup create --partition big 3<g1.pass
	read -r RSS_C T_C <m.out
	NODE_HWM_CREATE=$(hwm "$NODE")
	ID=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT id FROM backups ORDER BY created DESC, rowid DESC LIMIT 1").fetchone()[0])' n1/store.db)
	SIZE=$(stat -c %s "n1/backups/$ID.hbk")
	# -elapsed: wall-clock, as ours (by default, per second of its CPU time).
	GCM=$(openssl speed -elapsed -evp aes-256-gcm -bytes 16384 -seconds "$GCM_SECONDS" 2>/dev/null |
	    awk 'tolower($1) == "aes-256-gcm" { v = $NF; sub(/k$/, "", v); printf "%.0f\n", v * 1000 }')
	[ -n "$GCM" ] || { echo "bench: no figure from openssl speed" >&2; exit 1; }

	# P3: backup download against scp of as many bytes from the sshd.
	rm -f dl.hbk scp_dst
	measure "${HCF[@]}" "${GEN[@]}" backup download "$ID" --out dl.hbk 3<g1.pass
	read -r RSS_D T_D <m.out
	NODE_HWM=$(hwm "$NODE")
	[ -f scp_src ] || head -c "$SIZE" /dev/urandom >scp_src
	measure "${SCP[@]}" "$(id -un)@127.0.0.1:$W/scp_src" scp_dst
	read -r _ T_S <m.out
	rm -f scp_dst
	# Not the reference, a note: scp with the cipher and MAC hsmctl's
	# libssh2 1.10 negotiates (it has neither chacha20 nor AES-GCM).
	measure "${SCP[@]}" -c aes256-ctr -o MACs=hmac-sha2-256 \
	    "$(id -un)@127.0.0.1:$W/scp_src" scp_dst
	read -r _ T_S2 <m.out
	rm -f dl.hbk scp_dst
	echo "$SIZE $T_C $GCM $T_D $T_S $RSS_C $RSS_D $T_S2" >>runs.txt
done

# What a durable write of that size costs on this disk, to explain P4.
measure dd if=/dev/zero of=dd.out bs=1M count=$(( SIZE / 1048576 )) conv=fsync status=none
read -r _ T_DD <m.out
rm -f dd.out

python3 - runs.txt "$NODE_HWM_CREATE" "$NODE_HWM" "$T_DD" "$JSON" <<'PYEOF'
import json, statistics, sys
runs = [[float(x) for x in l.split()] for l in open(sys.argv[1]) if l.strip()]
nc, nd, tdd, out = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
size = int(runs[-1][0])
dd = (size // 1048576 * 1048576) / tdd
mb = lambda b: b / 1e6
med = statistics.median
create = [r[0] / r[1] for r in runs]
gcm = [r[2] for r in runs]
dl = [r[0] / r[3] for r in runs]
scp = [r[0] / r[4] for r in runs]
rss_c, rss_d = max(r[5] for r in runs), max(r[6] for r in runs)
span = lambda v: "%7.1f MB/s [%.1f-%.1f]" % (mb(med(v)), mb(min(v)), mb(max(v)))
r4, r3 = med(create) / med(gcm), med(dl) / med(scp)
print("P4  backup create, %.0f MB, %d runs: %s   openssl aes-256-gcm 16 KiB: %s   ratio %.2f (target >= 0.5: %s)"
      % (mb(size), len(runs), span(create), span(gcm), r4, "met" if r4 >= 0.5 else "MISSED"))
print("    (a durable write on this disk, dd conv=fsync: %7.1f MB/s; backup create reaches %.2f of it)"
      % (mb(dd), med(create) / dd))
scp_same = [r[0] / r[7] for r in runs]
print("P3  backup download:              %s   scp from local sshd:        %s   ratio %.2f (target >= 0.8: %s)"
      % (span(dl), span(scp), r3, "met" if r3 >= 0.8 else "MISSED"))
print("    (scp -c aes256-ctr -o MACs=hmac-sha2-256, what hsmctl negotiates: %s; ours is %.2f of it)"
      % (span(scp_same), med(dl) / med(scp_same)))
print("    peak RSS: node %.1f MB after create, %.1f MB after download; hsmctl %.1f MB (create), %.1f MB (download); bound 64 MB"
      % (nc, nd, rss_c, rss_d))
if out:
    with open(out, "w") as f:
        json.dump({
            "size_bytes": [int(r[0]) for r in runs],
            "create_s": [r[1] for r in runs], "create_Bps": create,
            "gcm_Bps": gcm,
            "download_s": [r[3] for r in runs], "download_Bps": dl,
            "scp_s": [r[4] for r in runs], "scp_Bps": scp,
            "scp_same_cipher_Bps": scp_same,
            "dd_fsync_Bps": dd,
            "rss_mb": {"node_after_create": nc, "node_after_download": nd,
                       "hsmctl_create": rss_c, "hsmctl_download": rss_d,
                       "bound": 64},
        }, f, indent=1)
        f.write("\n")
PYEOF
