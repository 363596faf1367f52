#!/usr/bin/env bash
#
# Backups of a 120 MB partition, side by side with their references, in
# one run on this machine:
#   P4  backup create        vs  openssl speed -evp aes-256-gcm (16 KiB
#                                blocks, one core)      target >= 0.5x
#   P3  backup download      vs  scp of a 120 MB file from a local
#                                OpenSSH sshd           target >= 0.8x
# and the peak RSS of the node and of hsmctl (bound: 64 MB each).
#
#   scripts/bench-backup.sh [--mb N] [--quick]
#
# Builds in-tree with optimisation (no sanitizers); runs in a temp dir;
# starts its own node and its own sshd on spare loopback ports.
set -eu

MB=120
while [ $# -gt 0 ]; do
	case $1 in
	--mb) MB=$2; shift 2 ;;
	--quick) MB=16; shift ;;
	*) echo "usage: $0 [--mb N] [--quick]" >&2; exit 2 ;;
	esac
done

SRC=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" != 0 ] || "$SRC/scripts/deps.sh" --bench >/dev/null
make -C "$SRC" -s >/dev/null
HC=$SRC/cli/hsmctl
HD=$SRC/node/hsmd
W=$(mktemp -d "${TMPDIR:-/tmp}/hsmctl-bench.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -n "${BENCH_KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
cd "$W"
umask 077

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
# peak RSS (MB) of a command run to its end, its wall time (s): "MB S".
measure() {
	python3 - "$@" <<'PYEOF'
import os, resource, subprocess, sys, time
fds = []
try:
    os.fstat(3)
    fds = [3]
except OSError:
    pass
t = time.monotonic()
r = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, pass_fds=fds)
t = time.monotonic() - t
if r.returncode != 0:
    sys.exit("bench: %s exited %d" % (sys.argv[1:3], r.returncode))
print("%.1f %.3f" % (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, t))
PYEOF
}
hwm() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# A node with a genesis officer whose key opens fast (the login is not
# what is measured), an SO pair, and a partition of $MB MB.
ssh-keygen -q -t ed25519 -N '' -f tk
for o in g1 alice bob; do
	printf 'bench-%s\n' "$o" >"$o.pass"
	openssl genpkey -algorithm ED25519 -aes-256-cbc -pass "file:$o.pass" \
	    -out "$o.key" 2>/dev/null
	openssl pkey -in "$o.key" -passin "file:$o.pass" -pubout -out "$o.key.pub"
done
cat alice.pass bob.pass >so.pass
P1=$(port)
"$HD" init -d n1 --cluster bench --name n1 --authorize tk.pub \
    --genesis g1=g1.key.pub >/dev/null
"$HD" -d n1 -l "127.0.0.1:$P1" -f 2>n1.log &
NODE=$!
PIDS+=("$NODE")
for _ in $(seq 100); do [ -s n1/hsmd.addr ] && break; sleep 0.05; done
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

# P4: backup create against the cipher's own rate.
read -r RSS_C T_C < <(measure "${HCF[@]}" "${GEN[@]}" backup create \
    --partition big 3<g1.pass)
NODE_HWM_CREATE=$(hwm "$NODE")
ID=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT id FROM backups ORDER BY created DESC LIMIT 1").fetchone()[0])' n1/store.db)
SIZE=$(stat -c %s "n1/backups/$ID.hbk")
# What a durable write of that size costs on this disk, to explain P4.
read -r _ T_DD < <(measure dd if=/dev/zero of=dd.out bs=1M \
    count=$(( SIZE / 1048576 )) conv=fsync status=none)
rm -f dd.out
GCM=$(openssl speed -evp aes-256-gcm -bytes 16384 -seconds 3 2>/dev/null |
    awk 'tolower($1) == "aes-256-gcm" { v = $NF; sub(/k$/, "", v); print v * 1000 }')

# P3: backup download against scp from a local sshd.
read -r RSS_D T_D < <(measure "${HCF[@]}" "${GEN[@]}" backup download "$ID" \
    --out dl.hbk 3<g1.pass)
NODE_HWM=$(hwm "$NODE")
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
P2=$(port)
ssh-keygen -q -t ed25519 -N '' -f sshd_host
ssh-keygen -q -t ed25519 -N '' -f scp_key
mkdir -p sshd_auth && cp scp_key.pub sshd_auth/authorized_keys
cat >sshd_config <<EOF
Port $P2
ListenAddress 127.0.0.1
HostKey $W/sshd_host
AuthorizedKeysFile $W/sshd_auth/authorized_keys
PidFile $W/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
EOF
head -c "$SIZE" /dev/urandom >scp_src
mkdir -p /run/sshd
"$SSHD" -D -e -f sshd_config 2>sshd.log &
PIDS+=($!)
for _ in $(seq 100); do
	python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $P2), 1)" 2>/dev/null && break
	sleep 0.05
done
SCP=(scp -q -P "$P2" -i scp_key -o StrictHostKeyChecking=no
    -o UserKnownHostsFile=/dev/null -o BatchMode=yes)
read -r _ T_S < <(measure "${SCP[@]}" "$(id -un)@127.0.0.1:$W/scp_src" scp_dst)

python3 - "$SIZE" "$T_C" "$GCM" "$T_D" "$T_S" "$RSS_C" "$RSS_D" \
    "$NODE_HWM_CREATE" "$NODE_HWM" "$T_DD" <<'PYEOF'
import sys
dd = (int(sys.argv[1]) // 1048576 * 1048576) / float(sys.argv[10])
size, tc, gcm, td, ts = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
rc, rd, nc, nd = (float(x) for x in sys.argv[6:10])
mb = lambda b: b / 1e6
create, dl, scp = size / tc, size / td, size / ts
print("P4  backup create, %.0f MB:  %7.1f MB/s   openssl aes-256-gcm 16 KiB: %7.1f MB/s   ratio %.2f (target >= 0.5: %s)"
      % (mb(size), mb(create), mb(gcm), create / gcm, "met" if create / gcm >= 0.5 else "MISSED"))
print("    (a durable write on this disk, dd conv=fsync: %7.1f MB/s; backup create reaches %.2f of it)"
      % (mb(dd), create / dd))
print("P3  backup download:        %7.1f MB/s   scp from local sshd:        %7.1f MB/s   ratio %.2f (target >= 0.8: %s)"
      % (mb(dl), mb(scp), dl / scp, "met" if dl / scp >= 0.8 else "MISSED"))
print("    peak RSS: node %.1f MB after create, %.1f MB after download; hsmctl %.1f MB (create), %.1f MB (download); bound 64 MB"
      % (nc, nd, rc, rd))
PYEOF
