#!/bin/sh
# make demo: a local 3-node cluster in ./demo -- n1 the master, n2 a clone,
# n3 a business-continuity (bc) node, on 127.0.0.1 ports 7001-7003 -- started
# in the background, and a first session against it.  Run again to reuse it.
#
#   scripts/demo.sh          start (or reuse) the cluster and walk through it
#   scripts/demo.sh stop     stop the demo's nodes (make demo-stop)
set -eu
# Keys, passphrase files and secrets of the demo are private.
umask 077
cd "$(dirname "$0")/.."
D=$PWD/demo
PORT=${DEMO_PORT:-7001}
HSMCTL=$PWD/cli/hsmctl
HSMD=$PWD/node/hsmd
NODES="n1 n2 n3"

port_of() {
	case $1 in
	n1) echo "$PORT" ;;
	n2) echo $((PORT + 1)) ;;
	n3) echo $((PORT + 2)) ;;
	esac
}

# The pid of the demo's hsmd serving demo/NODE, if it runs (a pid file
# left by a node that died may name another process by now: check it).
node_pid() {
	pid=$(cat "$D/$1/hsmd.pid" 2>/dev/null) || return 1
	case $pid in '' | *[!0-9]*) return 1 ;; esac
	kill -0 "$pid" 2>/dev/null || return 1
	case $(ps -o args= -p "$pid" 2>/dev/null) in
	*hsmd*"$D/$1"*) echo "$pid" ;;
	*) return 1 ;;
	esac
}

stop_nodes() {
	stopped=""
	for n in $NODES; do
		if pid=$(node_pid "$n"); then
			kill "$pid" 2>/dev/null || true
			stopped="$stopped $n:$pid"
		fi
	done
	# hsmd ends its sessions and exits on SIGTERM; wait for it.
	for np in $stopped; do
		n=${np%%:*} pid=${np#*:} i=0
		while kill -0 "$pid" 2>/dev/null; do
			i=$((i + 1))
			if [ $i -gt 100 ]; then
				echo "demo: $n (pid $pid) did not stop; killing it" >&2
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
		echo "stopped $n (pid $pid)"
	done
	[ -n "$stopped" ] || echo "no demo node was running"
}

if [ "${1:-}" = stop ]; then
	stop_nodes
	exit 0
elif [ $# -gt 0 ]; then
	echo "usage: $0 [stop]" >&2
	exit 2
fi

start_node() {
	n=$1
	if node_pid "$n" >/dev/null; then
		return 0
	fi
	rm -f "$D/$n/hsmd.addr"
	nohup "$HSMD" -d "$D/$n" -l "127.0.0.1:$(port_of "$n")" -f \
		>>"$D/$n.log" 2>&1 &
	echo $! > "$D/$n/hsmd.pid"
	i=0
	while [ ! -s "$D/$n/hsmd.addr" ]; do
		i=$((i + 1))
		if [ $i -gt 50 ] || ! kill -0 "$(cat "$D/$n/hsmd.pid")" 2>/dev/null; then
			echo "demo: hsmd $n did not start; see $D/$n.log" >&2
			tail -5 "$D/$n.log" >&2
			exit 1
		fi
		sleep 0.1
	done
}

mkdir -p "$D"
chmod 700 "$D"
if [ ! -f "$D/terminal_key" ]; then
	ssh-keygen -q -t ed25519 -N '' -C hsmctl-demo -f "$D/terminal_key"
fi
# Officer keys.  The demo feeds passphrases through --passphrase-fd from a
# file so it can run unattended; real officers type theirs at the prompt.
mkdir -p "$D/keys"
chmod 700 "$D/keys"
for o in genesis-1 genesis-2 so-alice so-bob; do
	if [ ! -f "$D/keys/$o.key" ]; then
		echo "demo-passphrase-$o" > "$D/keys/$o.pass"
		chmod 600 "$D/keys/$o.pass"
		"$HSMCTL" --passphrase-fd 3 officer keygen "$D/keys/$o.key" \
			3<"$D/keys/$o.pass" >/dev/null
	fi
done
if [ -d "$D/n1" ] && [ ! -f "$D/n1/.demo-cluster" ]; then
	# A node from an older demo (one node), or one whose set-up did not
	# finish: start afresh.
	stop_nodes >/dev/null
	rm -rf "$D/n1" "$D/n2" "$D/n3"
fi
if [ ! -d "$D/n1" ]; then
	"$HSMD" init -d "$D/n1" --cluster demo --name n1 --sandbox \
		--authorize "$D/terminal_key.pub" \
		--genesis "g1=$D/keys/genesis-1.key.pub" \
		--genesis "g2=$D/keys/genesis-2.key.pub"
	# A new cluster: the other nodes join it anew, the demo's
	# known_hosts starts over, and so does the tenant's secret.
	stop_nodes >/dev/null
	rm -rf "$D/n2" "$D/n3" "$D/known_hosts" "$D/acme.secret"
	fresh=yes
fi
cat > "$D/hsmctl.conf" <<CONF
# written by scripts/demo.sh
default-cluster demo
terminal-key terminal_key
known-hosts known_hosts
cluster demo
    node n1 127.0.0.1:$(port_of n1)
    node n2 127.0.0.1:$(port_of n2)
    node n3 127.0.0.1:$(port_of n3)
CONF
# hc ARGS...: hsmctl with the demo's configuration; so ARGS...: the same,
# logged in as SO by alice and bob (four-eyes), passphrases on stdin.
hc() { "$HSMCTL" -F "$D/hsmctl.conf" "$@"; }
so() {
	hc --as so --officer "$D/keys/so-alice.key" \
		--officer "$D/keys/so-bob.key" "$@"
}
json() {
	python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

start_node n1
echo "== hsmctl -F demo/hsmctl.conf -n n1 --accept-new-host-key node info"
hc -n n1 --accept-new-host-key node info
pass() { cat "$D/keys/$1.pass"; }
if [ "${fresh:-no}" = yes ]; then
	echo
	echo "== genesis (2 of 2) registers two SOs: a batch over one login"
	{ pass genesis-1; pass genesis-2; } > "$D/keys/.batch.pass"
	hc --passphrase-fd 3 \
		--as genesis --officer "$D/keys/genesis-1.key" \
		--officer "$D/keys/genesis-2.key" -f - 3<"$D/keys/.batch.pass" <<BATCH
officer add so alice $D/keys/so-alice.key.pub
officer add so bob $D/keys/so-bob.key.pub
quorum show
BATCH
	rm -f "$D/keys/.batch.pass"
	# n1 is set up: a later run reuses it.
	touch "$D/n1/.demo-cluster"
fi

echo
echo "== hsmctl -n n1 -o json node info     (host_key: the fingerprint n2 and n3 pin)"
hc -n n1 -o json node info > "$D/n1.json"
cat "$D/n1.json"
FP=$(json 'd["host_key"]' < "$D/n1.json")
for nr in n2:clone n3:bc; do
	n=${nr%%:*} role=${nr#*:}
	[ ! -d "$D/$n" ] || continue
	echo
	echo "== $n asks to join as $role, pinning the master's host key $FP"
	echo "   hsmd init -d demo/$n --join 127.0.0.1:$(port_of n1) --name $n --role $role \\"
	echo "       --master-fingerprint $FP --authorize demo/terminal_key.pub"
	"$HSMD" init -d "$D/$n" --join "127.0.0.1:$(port_of n1)" --name "$n" \
		--role "$role" --master-fingerprint "$FP" \
		--authorize "$D/terminal_key.pub"
	# A new node, a new host key: forget the one an older demo had.
	ssh-keygen -q -R "[127.0.0.1]:$(port_of "$n")" -f "$D/known_hosts" \
		>/dev/null 2>&1 || true
	rm -f "$D/known_hosts.old"
done
start_node n2
start_node n3

echo
echo "== hsmctl --accept-new-host-key node list     (every node, as it answers)"
hc --accept-new-host-key node list
echo
echo "== four-eyes: the SO role needs two distinct SO officers"
echo "   hsmctl login so --officer so-alice.key          (one: refused, exit 3)"
pass so-alice | hc --passphrase-fd 0 \
	login so --officer "$D/keys/so-alice.key" || echo "   -> exit $? as expected"
echo "   hsmctl --as so --officer so-alice.key --officer so-bob.key whoami"
{ pass so-alice; pass so-bob; } | so --passphrase-fd 0 whoami

# Admit the nodes whose join request waits on the master.
pending=$(hc -n n1 -o json node info |
	json '" ".join(j["name"] for j in d.get("pending_joins", []))')
if [ -n "$pending" ]; then
	echo
	echo "== the SO (four-eyes) admits the nodes that asked to join, checking"
	echo "   each one's host key (ssh-keygen -lf demo/NODE/ssh_host_ed25519_key.pub)"
	: > "$D/admit.hsm"
	for n in $pending; do
		fp=$(ssh-keygen -lf "$D/$n/ssh_host_ed25519_key.pub" | cut -d' ' -f2)
		echo "cluster admit $n --fingerprint $fp" >> "$D/admit.hsm"
	done
	sed 's/^/   /' "$D/admit.hsm"
	{ pass so-alice; pass so-bob; } > "$D/keys/.batch.pass"
	so --passphrase-fd 3 -f "$D/admit.hsm" 3<"$D/keys/.batch.pass"
	rm -f "$D/keys/.batch.pass" "$D/admit.hsm"
fi

# wait_for WHAT PYTHON-CONDITION: poll node list (JSON, as d) for 60 s.
wait_for() {
	i=0
	while :; do
		ok=$(hc -o json node list 2>/dev/null | json "$2" 2>/dev/null) || ok=False
		[ "$ok" = True ] && return 0
		i=$((i + 1))
		if [ $i -gt 120 ]; then
			echo "demo: $1 did not happen within 60 s; see demo/n*.log" >&2
			hc node list >&2 || true
			exit 1
		fi
		sleep 0.5
	done
}
roles='{n["name"]: n["role"] for n in d["nodes"]}'
wait_for "n2 and n3 joining" "$roles == {'n1': 'master', 'n2': 'clone', 'n3': 'bc'}"
# Each replica has everything the master has (lag 0).
synced='all(n["reachable"] and n["lag_seq"] == 0 for n in d["nodes"])'
wait_for "replication" "$synced"
echo
if [ -n "$pending" ]; then
	echo "== admitted ($pending): each took a snapshot of the master and replicates it"
fi
echo "== hsmctl node list"
hc node list
echo
echo "== hsmctl cluster status"
hc cluster status

if [ ! -f "$D/acme.secret" ]; then
	echo
	echo "== the SO (four-eyes) sets up a tenant partition and its API secret"
	echo "   (changes: hsmctl sends them to the master, n1)"
	{ pass so-alice; pass so-bob; } > "$D/keys/.batch.pass"
	# -k: should acme exist from a run that stopped half-way, the
	# secret is still rotated.
	so --passphrase-fd 3 -k -f - 3<"$D/keys/.batch.pass" <<BATCH || true
partition create acme --profile eco partition-admin=on
partition secret acme --rotate --out $D/acme.secret
BATCH
	rm -f "$D/keys/.batch.pass"
	[ -f "$D/acme.secret" ] || { echo "demo: no API secret for acme" >&2; exit 1; }
	wait_for "replication" "$synced"
fi
echo
echo "== the clone n2 has it too; reads go to any clone or master, -n picks one:"
echo "   hsmctl -n n2 --as so --officer so-alice.key --officer so-bob.key partition show acme"
{ pass so-alice; pass so-bob; } | so -n n2 --passphrase-fd 0 partition show acme
echo
echo "== a bc node serves replication and status only:"
echo "   hsmctl -n n3 approval list     (refused, exit 5)"
hc -n n3 approval list || echo "   -> exit $? as expected"

echo
echo "== the tenant's application (technical user) makes a key on the master"
echo "   and signs with it on the clone (hsmctl -n n2 ... key sign)"
echo "hello from the demo" > "$D/hello.txt"
hc -o json --secret-file "$D/acme.secret" \
	--as user:acme key generate acme --type ec-p256 --label demo-signer \
	> "$D/key.json"
KEYID=$(json 'd["id"]' < "$D/key.json")
wait_for "replication" "$synced"
hc -n n2 --secret-file "$D/acme.secret" --as user:acme -f - <<BATCH
key sign acme $KEYID --in $D/hello.txt --out $D/hello.sig
BATCH
hc -o json --secret-file "$D/acme.secret" \
	--as user:acme key show acme "$KEYID" |
	json 'd["public_key"].rstrip("\n")' > "$D/demo-signer.pub.pem"
echo "   openssl dgst -sha256 -verify demo-signer.pub.pem -signature hello.sig hello.txt:"
openssl dgst -sha256 -verify "$D/demo-signer.pub.pem" -signature "$D/hello.sig" \
	"$D/hello.txt" | sed 's/^/   /'
echo
echo "== the audit log (as SO), and its hash chain, on the master"
{ pass so-alice; pass so-bob; } | so -n n1 --passphrase-fd 0 -f /dev/fd/3 3<<BATCH
audit log --limit 8
audit verify
BATCH
echo
echo "== each node keeps its own chain; the clone's holds the master's changes"
echo "   hsmctl -n n2 ... audit verify"
{ pass so-alice; pass so-bob; } | so -n n2 --passphrase-fd 0 audit verify
cat <<TXT

The cluster 'demo' runs in the background: n1 (master, 127.0.0.1:$(port_of n1)),
n2 (clone, :$(port_of n2)) and n3 (bc, :$(port_of n3)); logs in demo/n1.log, demo/n2.log,
demo/n3.log.
Continue with:
    export HSMCTL_CONFIG=\$PWD/demo/hsmctl.conf
    cli/hsmctl node list
    cli/hsmctl cluster status
    cli/hsmctl login so --officer demo/keys/so-alice.key --officer demo/keys/so-bob.key
        (passphrases: demo/keys/*.pass)
    cli/hsmctl                      # the interactive shell
    cli/hsmctl help
    man -l man/hsmctl.1
Stop it with:
    make demo-stop
TXT
