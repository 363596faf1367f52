#!/bin/sh
# make demo: one local node in ./demo, started in the background, and a
# first session against it.  Run again to reuse it.
set -eu
# Keys, passphrase files and secrets of the demo are private.
umask 077
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
if [ -d "$D/n1" ] && [ ! -f "$D/n1/.demo-officers" ]; then
	# A node from an older demo, without officers: start it afresh.
	kill "$(cat "$D/n1/hsmd.pid" 2>/dev/null)" 2>/dev/null || true
	sleep 0.5
	rm -rf "$D/n1"
fi
if [ ! -d "$D/n1" ]; then
	"$HSMD" init -d "$D/n1" --cluster demo --name n1 --sandbox \
		--authorize "$D/terminal_key.pub" \
		--genesis "g1=$D/keys/genesis-1.key.pub" \
		--genesis "g2=$D/keys/genesis-2.key.pub"
	touch "$D/n1/.demo-officers"
	# A new node has a new host key: the demo's known_hosts starts over.
	rm -f "$D/known_hosts"
	fresh=yes
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
pass() { cat "$D/keys/$1.pass"; }
if [ "${fresh:-no}" = yes ]; then
	echo
	echo "== genesis (2 of 2) registers two SOs: a batch over one login"
	{ pass genesis-1; pass genesis-2; } > "$D/keys/.batch.pass"
	"$HSMCTL" -F "$D/hsmctl.conf" --passphrase-fd 3 \
		--as genesis --officer "$D/keys/genesis-1.key" \
		--officer "$D/keys/genesis-2.key" -f - 3<"$D/keys/.batch.pass" <<BATCH
officer add so alice $D/keys/so-alice.key.pub
officer add so bob $D/keys/so-bob.key.pub
quorum show
BATCH
	rm -f "$D/keys/.batch.pass"
fi
echo
echo "== four-eyes: the SO role needs two distinct SO officers"
echo "   hsmctl login so --officer so-alice.key          (one: refused, exit 3)"
pass so-alice | "$HSMCTL" -F "$D/hsmctl.conf" --passphrase-fd 0 \
	login so --officer "$D/keys/so-alice.key" || echo "   -> exit $? as expected"
echo "   hsmctl --as so --officer so-alice.key --officer so-bob.key whoami"
{ pass so-alice; pass so-bob; } | "$HSMCTL" -F "$D/hsmctl.conf" \
	--passphrase-fd 0 --as so --officer "$D/keys/so-alice.key" \
	--officer "$D/keys/so-bob.key" whoami
if [ "${fresh:-no}" = yes ]; then
	echo
	echo "== the SO (four-eyes) sets up a tenant partition and its API secret"
	{ pass so-alice; pass so-bob; } > "$D/keys/.batch.pass"
	"$HSMCTL" -F "$D/hsmctl.conf" --passphrase-fd 3 \
		--as so --officer "$D/keys/so-alice.key" \
		--officer "$D/keys/so-bob.key" -f - 3<"$D/keys/.batch.pass" <<BATCH
partition create acme --profile eco partition-admin=on
partition secret acme --rotate --out $D/acme.secret
BATCH
	rm -f "$D/keys/.batch.pass"
fi
echo
echo "== the tenant's application (technical user) makes a key and signs with it"
echo "hello from the demo" > "$D/hello.txt"
"$HSMCTL" -F "$D/hsmctl.conf" -o json --secret-file "$D/acme.secret" \
	--as user:acme key generate acme --type ec-p256 --label demo-signer \
	> "$D/key.json"
KEYID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$D/key.json")
"$HSMCTL" -F "$D/hsmctl.conf" --secret-file "$D/acme.secret" \
	--as user:acme -f - <<BATCH
key sign acme $KEYID --in $D/hello.txt --out $D/hello.sig
BATCH
"$HSMCTL" -F "$D/hsmctl.conf" -o json --secret-file "$D/acme.secret" \
	--as user:acme key show acme "$KEYID" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["public_key"], end="")' \
	> "$D/demo-signer.pub.pem"
echo "   openssl dgst -sha256 -verify demo-signer.pub.pem -signature hello.sig hello.txt:"
openssl dgst -sha256 -verify "$D/demo-signer.pub.pem" -signature "$D/hello.sig" \
	"$D/hello.txt" | sed 's/^/   /'
echo
echo "== the audit log (as SO), and its hash chain"
{ pass so-alice; pass so-bob; } | "$HSMCTL" -F "$D/hsmctl.conf" \
	--passphrase-fd 0 --as so --officer "$D/keys/so-alice.key" \
	--officer "$D/keys/so-bob.key" -f /dev/fd/3 3<<BATCH
audit log --limit 8
audit verify
BATCH
cat <<TXT

The node n1 of cluster 'demo' runs in the background (log: demo/n1.log).
Continue with:
    export HSMCTL_CONFIG=\$PWD/demo/hsmctl.conf
    cli/hsmctl node info
    cli/hsmctl login so --officer demo/keys/so-alice.key --officer demo/keys/so-bob.key
        (passphrases: demo/keys/*.pass)
    cli/hsmctl                      # the interactive shell
    cli/hsmctl help
    man -l man/hsmctl.1
Stop it with:
    kill \$(cat demo/n1/hsmd.pid)
TXT
