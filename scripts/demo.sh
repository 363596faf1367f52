#!/bin/sh
# make demo: one local node in ./demo, started in the background, and a
# first session against it.  Run again to reuse it.
set -eu
cd "$(dirname "$0")/.."
D=$PWD/demo
PORT=${DEMO_PORT:-7001}
HSMCTL=$PWD/cli/hsmctl
HSMD=$PWD/node/hsmd

mkdir -p "$D"
chmod 700 "$D"
if [ ! -f "$D/terminal_key" ]; then
	ssh-keygen -q -t ed25519 -N '' -C hsmctl-demo -f "$D/terminal_key"
fi
if [ ! -d "$D/n1" ]; then
	"$HSMD" init -d "$D/n1" --cluster demo --name n1 --sandbox \
		--authorize "$D/terminal_key.pub"
fi
cat > "$D/hsmctl.conf" <<CONF
# written by scripts/demo.sh
default-cluster demo
terminal-key terminal_key
known-hosts known_hosts
cluster demo
    node n1 127.0.0.1:$PORT
CONF

running=no
if [ -f "$D/n1/hsmd.pid" ] && kill -0 "$(cat "$D/n1/hsmd.pid")" 2>/dev/null; then
	running=yes
fi
if [ $running = no ]; then
	rm -f "$D/n1/hsmd.addr"
	nohup "$HSMD" -d "$D/n1" -l "127.0.0.1:$PORT" -f >>"$D/n1.log" 2>&1 &
	echo $! > "$D/n1/hsmd.pid"
	i=0
	while [ ! -s "$D/n1/hsmd.addr" ]; do
		i=$((i + 1))
		if [ $i -gt 50 ] || ! kill -0 "$(cat "$D/n1/hsmd.pid")" 2>/dev/null; then
			echo "demo: hsmd did not start; see $D/n1.log" >&2
			tail -5 "$D/n1.log" >&2
			exit 1
		fi
		sleep 0.1
	done
fi

echo "== hsmctl -F demo/hsmctl.conf --accept-new-host-key node info"
"$HSMCTL" -F "$D/hsmctl.conf" --accept-new-host-key node info
echo
echo "== hsmctl -F demo/hsmctl.conf -o json node info"
"$HSMCTL" -F "$D/hsmctl.conf" -o json node info
cat <<TXT

The node n1 of cluster 'demo' runs in the background (log: demo/n1.log).
Continue with:
    export HSMCTL_CONFIG=\$PWD/demo/hsmctl.conf
    cli/hsmctl node info
    cli/hsmctl help
    man -l man/hsmctl.1
Stop it with:
    kill \$(cat demo/n1/hsmd.pid)
TXT
