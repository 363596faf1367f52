#!/usr/bin/env bash
#
# End-to-end tests: real hsmd nodes in temporary directories, driven by
# the real hsmctl binary (and by the OpenSSH client as a raw frame client).
#
#   tests/e2e/run.sh BUILD_DIR      BUILD_DIR holds cli/hsmctl and node/hsmd
#
# Every case runs in a fresh temporary directory with its own HOME and
# XDG_CONFIG_HOME; nothing outside it is read or written.  Output is TAP-like
# ("ok N - ...", "not ok N - ..." and "#" diagnostics), then a summary; the
# exit status is 1 if any case failed.  Environment:
#   E2E_CASES="1 5"   run only these cases
#   E2E_KEEP=1        keep the temporary directory (its path is printed)
set -u

if [ $# -ne 1 ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "e2e: no directory $1" >&2; exit 2; }
HSMCTL=$BUILD/cli/hsmctl
HSMD=$BUILD/node/hsmd
for b in "$HSMCTL" "$HSMD"; do
	[ -x "$b" ] || { echo "e2e: $b is missing (build it first)" >&2; exit 2; }
done
for t in ssh ssh-keygen python3 timeout mkfifo sha256sum; do
	command -v "$t" >/dev/null 2>&1 ||
	    { echo "e2e: $t is needed" >&2; exit 2; }
done

# Nothing of the user's may leak in: configuration, agent, colours, locale.
unset HSMCTL_CONFIG SSH_AUTH_SOCK SSH_AGENT_PID NO_COLOR
export LC_ALL=C

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/hsmctl-e2e.XXXXXX") || exit 2
declare -A NODE_PID=() NODE_ADDR=() NODE_PORT=() NODE_LOG=()
BG_PIDS=()

cleanup() {
	local d p
	for d in "${!NODE_PID[@]}"; do
		kill -KILL "${NODE_PID[$d]}" 2>/dev/null
	done
	for p in "${BG_PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null
	done
	wait 2>/dev/null
	if [ "${E2E_KEEP:-0}" = 1 ]; then
		echo "# kept $ROOT"
	else
		rm -rf "$ROOT"
	fi
}
trap 'cleanup 2>/dev/null' EXIT
trap 'exit 130' INT TERM HUP

SAN_RE='ERROR: [A-Za-z]*Sanitizer|SUMMARY: [A-Za-z]*Sanitizer|LeakSanitizer|runtime error:'
# The version the binaries must report, from the source tree of this script.
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=$(sed -n 's/^#define HSMCTL_VERSION "\(.*\)"/\1/p' "$SRCDIR/lib/hsmctl.h")
[ -n "$VERSION" ] || { echo "e2e: no HSMCTL_VERSION in $SRCDIR/lib/hsmctl.h" >&2; exit 2; }

# ---- bookkeeping ---------------------------------------------------------

N=0
PASSED=0
FAILED=0
FAILED_LIST=""
CASE_FAILED=0
CASE_DIAG=""
T=""
RC=0
LAST=""

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

fail() {
	CASE_FAILED=1
	CASE_DIAG+="#   $*"$'\n'
}

# diag_file FILE [LABEL]: add (the start of) a file to the diagnostics.
diag_file() {
	local label=${2:-$(basename "$1")}
	if [ ! -s "$1" ]; then
		CASE_DIAG+="#     ($label is empty)"$'\n'
		return
	fi
	CASE_DIAG+="#     --- $label:"$'\n'
	CASE_DIAG+=$(head -c 3000 "$1" | tr -d '\000' | head -n 40 |
	    sed 's/^/#     | /')$'\n'
}

check_san() { # FILE WHAT
	if grep -qaE "$SAN_RE" "$1" 2>/dev/null; then
		fail "sanitizer report from $2"
		diag_file "$1" "report"
	fi
}

# hc ARGS...: run hsmctl (stdin not a terminal); sets RC, $T/out, $T/err.
hc() {
	LAST="hsmctl $*"
	timeout -k 5 60 "$HSMCTL" "$@" </dev/null >"$T/out" 2>"$T/err"
	RC=$?
	check_san "$T/err" "$LAST"
}

# hd ARGS...: run hsmd (init, authorize, revoke); same conventions.
hd() {
	LAST="hsmd $*"
	timeout -k 5 60 "$HSMD" "$@" </dev/null >"$T/out" 2>"$T/err"
	RC=$?
	check_san "$T/err" "$LAST"
}

expect_rc() { # WANT WHAT
	if [ "$RC" != "$1" ]; then
		fail "$2: exit status $RC, want $1 (\`$LAST\`)"
		diag_file "$T/out" stdout
		diag_file "$T/err" stderr
		return 1
	fi
}

expect_eq() { # GOT WANT WHAT
	if [ "$1" != "$2" ]; then
		fail "$3: got '$1', want '$2'"
		return 1
	fi
}

expect_has() { # FILE STRING WHAT (fixed string)
	if ! grep -qaF -- "$2" "$1"; then
		fail "$3: '$2' not found in $(basename "$1") (\`$LAST\`)"
		diag_file "$1"
		return 1
	fi
}

expect_hasnt() { # FILE STRING WHAT (fixed string)
	if grep -qaF -- "$2" "$1"; then
		fail "$3: '$2' unexpectedly in $(basename "$1") (\`$LAST\`)"
		diag_file "$1"
		return 1
	fi
}

expect_empty() { # FILE WHAT
	if [ -s "$1" ]; then
		fail "$2: $(basename "$1") is not empty (\`$LAST\`)"
		diag_file "$1"
		return 1
	fi
}

expect_nonempty() { # FILE WHAT
	if [ ! -s "$1" ]; then
		fail "$2: $(basename "$1") is empty (\`$LAST\`)"
		return 1
	fi
}

# kv FILE LABEL: the value of an aligned "label  value" line of text output.
kv() {
	awk -v l="$2" 'index($0, l "  ") == 1 {
		v = substr($0, length(l) + 1); sub(/^ +/, "", v); print v; exit }' "$1"
}

expect_kv() { # FILE LABEL VALUE WHAT
	local got
	got=$(kv "$1" "$2")
	if [ "$got" != "$3" ]; then
		fail "$4: '$2' is '$got', want '$3'"
		diag_file "$1"
		return 1
	fi
}

# json_check FILE PYTHON-EXPR...: FILE must be exactly one line holding one
# JSON document d; each expression must be true.
json_check() {
	local f=$1 msg
	shift
	if ! msg=$(python3 - "$f" "$@" <<'EOF' 2>&1
import json, re, sys
text = open(sys.argv[1], encoding="utf-8").read()
if text.count("\n") != 1 or not text.endswith("\n"):
    sys.exit("not exactly one line: %r" % text[:300])
try:
    d = json.loads(text)
except ValueError as e:
    sys.exit("not JSON (%s): %r" % (e, text[:300]))
for expr in sys.argv[2:]:
    try:
        ok = eval(expr, {"re": re, "d": d})
    except Exception as e:
        ok = False
        expr += "  (%s: %s)" % (type(e).__name__, e)
    if not ok:
        sys.exit("false: %s  in  %s" % (expr, text.strip()[:400]))
EOF
	); then
		fail "JSON check (\`$LAST\`): $msg"
		return 1
	fi
}

# frames_check FILE PYTHON-EXPR...: FILE holds response frames (4-byte
# length + one CBOR item, decoded here with a small strict decoder) and
# nothing else; f is the list of decoded frames.
frames_check() {
	local file=$1 msg
	shift
	if ! msg=$(python3 - "$file" "$@" <<'EOF' 2>&1
import re, sys
data = open(sys.argv[1], "rb").read()

def item(b, i):
    ib = b[i]; i += 1
    mt, ai = ib >> 5, ib & 31
    if ai < 24:
        v = ai
    elif ai < 28:
        n = 1 << (ai - 24)
        if i + n > len(b):
            raise ValueError("short item")
        v = int.from_bytes(b[i:i + n], "big"); i += n
    else:
        raise ValueError("indefinite or reserved length")
    if mt == 0:
        return v, i
    if mt == 1:
        return -1 - v, i
    if mt in (2, 3):
        if i + v > len(b):
            raise ValueError("short string")
        s = b[i:i + v]
        return (s if mt == 2 else s.decode("utf-8")), i + v
    if mt == 4:
        a = []
        for _ in range(v):
            x, i = item(b, i); a.append(x)
        return a, i
    if mt == 5:
        m = {}
        for _ in range(v):
            k, i = item(b, i); x, i = item(b, i); m[k] = x
        return m, i
    if mt == 7 and ai in (20, 21, 22):
        return {20: False, 21: True, 22: None}[ai], i
    raise ValueError("unsupported CBOR major type %d/%d" % (mt, ai))

f, off = [], 0
try:
    while off < len(data):
        if len(data) - off < 4:
            raise ValueError("partial header at byte %d" % off)
        n = int.from_bytes(data[off:off + 4], "big")
        p = data[off + 4:off + 4 + n]
        if len(p) != n:
            raise ValueError("frame at byte %d: %d of %d bytes" % (off, len(p), n))
        x, end = item(p, 0)
        if end != n:
            raise ValueError("trailing bytes in frame at byte %d" % off)
        f.append(x)
        off += 4 + n
except (ValueError, IndexError, UnicodeDecodeError) as e:
    sys.exit("bad response stream (%s): %r" % (e, data[:300]))
for expr in sys.argv[2:]:
    try:
        ok = eval(expr, {"f": f, "re": re})
    except Exception as e:
        ok = False
        expr += "  (%s: %s)" % (type(e).__name__, e)
    if not ok:
        sys.exit("false: %s  in  %r" % (expr, f))
EOF
	); then
		fail "response frames: $msg"
		return 1
	fi
}

sha_of() { sha256sum "$@" 2>/dev/null | awk '{print $1}' | tr '\n' ' '; }

# A snapshot of a directory tree: names, modes, sizes and contents.
tree_sum() {
	(cd "$1" && find . -printf '%p %m %s\n' | sort &&
	    find . -type f -print0 | sort -z | xargs -0 -r sha256sum) |
	    sha256sum | awk '{print $1}'
}

mk_key() { # PATH
	ssh-keygen -q -t ed25519 -N '' -C e2e -f "$1" </dev/null >/dev/null ||
	    fail "ssh-keygen -f $1 failed"
}

fp_of() { ssh-keygen -lf "$1" | awk '{print $2}'; }

# A loopback port with nothing listening on it (just released by the kernel).
free_port() {
	python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

alive() { kill -0 "$1" 2>/dev/null; }

# ---- nodes ---------------------------------------------------------------

# node_init DIR CLUSTER NAME [ARGS...]: hsmd init, authorising $TK.pub.
node_init() {
	local dir=$1 cluster=$2 name=$3
	shift 3
	hd init -d "$dir" --cluster "$cluster" --name "$name" \
	    --authorize "$TK.pub" "$@"
	expect_rc 0 "hsmd init $name"
}

# node_start DIR [LISTEN]: serve DIR in the foreground with -v; wait at most
# 10 s for DIR/hsmd.addr; sets NODE_ADDR[DIR] (HOST:PORT) and NODE_PORT[DIR].
node_start() {
	local dir=$1 listen=${2:-127.0.0.1:0} log=$1.log pid t0 addr
	rm -f "$dir/hsmd.addr"
	"$HSMD" -d "$dir" -l "$listen" -f -v </dev/null >/dev/null 2>>"$log" &
	pid=$!
	NODE_PID[$dir]=$pid
	NODE_LOG[$dir]=$log
	t0=$(now_ms)
	while [ ! -s "$dir/hsmd.addr" ] && alive "$pid" &&
	    [ $(( $(now_ms) - t0 )) -lt 10000 ]; do
		sleep 0.05
	done
	addr=$(head -n 1 "$dir/hsmd.addr" 2>/dev/null)
	if [[ ! $addr =~ ^127\.0\.0\.1:[1-9][0-9]*$ ]]; then
		fail "hsmd -d $(basename "$dir") -l $listen did not come up" \
		    "within 10 s (address '$addr')"
		diag_file "$log" "hsmd log"
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		unset "NODE_PID[$dir]"
		return 1
	fi
	NODE_ADDR[$dir]=$addr
	NODE_PORT[$dir]=${addr##*:}
}

# node_stop DIR [SIGNAL]: the node must exit 0 within 10 s, its log clean.
node_stop() {
	local dir=$1 sig=${2:-TERM} pid=${NODE_PID[$1]} t0 rc
	alive "$pid" || fail "hsmd -d $(basename "$dir") had exited before SIG$sig"
	kill "-$sig" "$pid" 2>/dev/null
	t0=$(now_ms)
	while alive "$pid" && [ $(( $(now_ms) - t0 )) -lt 10000 ]; do
		sleep 0.05
	done
	if alive "$pid"; then
		fail "hsmd -d $(basename "$dir") still running 10 s after SIG$sig"
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	rc=$?
	unset "NODE_PID[$dir]"
	if [ "$rc" != 0 ]; then
		fail "hsmd -d $(basename "$dir") exited $rc after SIG$sig, want 0"
		diag_file "${NODE_LOG[$dir]}" "hsmd log"
	fi
	check_san "${NODE_LOG[$dir]}" "hsmd -d $(basename "$dir")"
	[ "$rc" = 0 ]
}

# The node is still serving: process alive and node info answers.
expect_node_up() { # DIR NAME WHAT
	if ! alive "${NODE_PID[$1]}"; then
		fail "$3: hsmd is no longer running"
		diag_file "${NODE_LOG[$1]}" "hsmd log"
		return 1
	fi
	hc -n "${NODE_ADDR[$1]}" node info
	expect_rc 0 "$3: node info" && expect_kv "$T/out" node "$2" "$3"
}

count_re() { grep -caE -- "$2" "$1" 2>/dev/null; }

# ---- raw frames, in shell ------------------------------------------------

# bytes HEX...: write those bytes.
bytes() {
	local h
	for h in "$@"; do
		printf "\\x$h"
	done
}

# ctext STR: a CBOR text string (under 24 bytes).
ctext() {
	bytes "$(printf %02x $((0x60 + ${#1})))"
	printf '%s' "$1"
}

# request ID OP: the CBOR map {"v":1,"id":ID,"op":OP,"args":{}}, ID < 24.
request() {
	bytes a4
	ctext v; bytes 01
	ctext id; bytes "$(printf %02x "$1")"
	ctext op; ctext "$2"
	ctext args; bytes a0
}

# frame FILE: the 4-byte big-endian length of FILE, then FILE.
frame() {
	local n
	n=$(wc -c <"$1")
	# shellcheck disable=SC2046  # four byte words
	bytes $(printf '%02x %02x %02x %02x' $((n >> 24 & 255)) \
	    $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255)))
	cat "$1"
}

# ssh_cmd PORT: SSH=(the OpenSSH client on the hsm-admin subsystem of the
# node at 127.0.0.1:PORT, authenticated with $TK; stdin and stdout are frames).
ssh_cmd() {
	SSH=(ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no
	    -o UserKnownHostsFile="$T/ssh_known_hosts"
	    -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes
	    -o IdentityAgent=none -o LogLevel=ERROR -o ConnectTimeout=5
	    -i "$TK" -p "$1" -s 127.0.0.1 hsm-admin)
}

# ---- the cases -----------------------------------------------------------

case_info_text() {
	local d=$T/n1 fp a
	node_init "$d" c1 alpha || return
	node_start "$d" || return
	a=${NODE_ADDR[$d]}
	fp=$(fp_of "$d/ssh_host_ed25519_key.pub")
	[[ $fp == SHA256:* ]] || fail "ssh-keygen -lf gave no fingerprint"
	hc -n "$a" --accept-new-host-key node info
	expect_rc 0 "node info" || return
	hc -n "$a" node info
	expect_rc 0 "node info, key now known" || return
	expect_empty "$T/err" "node info stderr"
	expect_kv "$T/out" node alpha "node info"
	expect_kv "$T/out" cluster c1 "node info"
	expect_kv "$T/out" role master "node info"
	expect_kv "$T/out" epoch 1 "node info"
	expect_kv "$T/out" "host key" "$fp" "node info"
	expect_kv "$T/out" version "$VERSION" "node info"
	expect_kv "$T/out" sandbox no "node info"
	[[ $(kv "$T/out" "cluster id") =~ ^[0-9a-f]{32}$ ]] ||
	    fail "cluster id '$(kv "$T/out" "cluster id")' is not 32 hex digits"
	grep -q $'\033' "$T/out" && fail "colour escapes although stdout is not a terminal"
	# Aligned: every value starts in the same column.
	[ "$(awk '{ match($0, /  +[^ ]/); print RSTART + RLENGTH }' "$T/out" |
	    sort -u | wc -l)" = 1 ] || { fail "values are not aligned"; diag_file "$T/out"; }
	hc -n "$a" -o text node info
	expect_rc 0 "-o text node info" && expect_kv "$T/out" node alpha "-o text"
}

case_info_json() {
	local d=$T/n1 s=$T/sb fp fps
	node_init "$d" c1 alpha || return
	node_init "$s" c2 beta --sandbox || return
	node_start "$d" || return
	node_start "$s" || return
	fp=$(fp_of "$d/ssh_host_ed25519_key.pub")
	fps=$(fp_of "$s/ssh_host_ed25519_key.pub")
	hc -n "${NODE_ADDR[$d]}" --accept-new-host-key -o json node info
	expect_rc 0 "-o json node info" || return
	expect_empty "$T/err" "-o json stderr"
	json_check "$T/out" \
	    'isinstance(d, dict)' \
	    'd["node"] == "alpha"' 'd["cluster"] == "c1"' \
	    're.fullmatch("[0-9a-f]{32}", d["cluster_id"]) is not None' \
	    'd["role"] == "master"' \
	    'type(d["epoch"]) is int and d["epoch"] == 1' \
	    'type(d["last_seq"]) is int and d["last_seq"] == 0' \
	    "d['version'] == '$VERSION'" \
	    'type(d["uptime"]) is int and 0 <= d["uptime"] < 600' \
	    "d['host_key'] == '$fp'" \
	    'd["sandbox"] is False'
	hc -n "${NODE_ADDR[$s]}" --accept-new-host-key -o json node info
	expect_rc 0 "-o json node info (sandbox)" || return
	json_check "$T/out" 'd["node"] == "beta"' 'd["cluster"] == "c2"' \
	    'd["sandbox"] is True' "d['host_key'] == '$fps'" \
	    'type(d["epoch"]) is int and d["epoch"] == 1'
}

case_hostkey_unknown() {
	local d=$T/n1 fp a other
	node_init "$d" c1 alpha || return
	node_start "$d" || return
	a=${NODE_ADDR[$d]}
	fp=$(fp_of "$d/ssh_host_ed25519_key.pub")
	hc -n "$a" node info
	expect_rc 7 "unknown host key"
	expect_has "$T/err" "$fp" "message shows the fingerprint"
	expect_empty "$T/out" "stdout on error"
	[ -e "$KH" ] && { fail "known_hosts $KH was created"; diag_file "$KH"; }
	hc -n "$a" -o json node info
	expect_rc 7 "unknown host key, -o json"
	json_check "$T/out" 'd["error"]["code"] == "host_key_unknown"' \
	    "'$fp' in d['error']['message']"
	[ -e "$KH" ] && fail "known_hosts $KH was created (-o json)"
	# An existing known_hosts with other hosts is left as it is.
	other=$(awk '{print $1, $2}' "$TK.pub")
	printf '[127.0.0.1]:1 %s\n' "$other" >"$KH"
	local before
	before=$(sha_of "$KH")
	hc -n "$a" node info
	expect_rc 7 "unknown host key, other hosts known"
	expect_eq "$(sha_of "$KH")" "$before" "known_hosts unchanged"
	expect_hasnt "${NODE_LOG[$d]}" "accepted" "no terminal authenticated"
}

case_hostkey_accept() {
	local d=$T/n1 a p key before
	node_init "$d" c1 alpha || return
	node_start "$d" || return
	a=${NODE_ADDR[$d]}
	p=${NODE_PORT[$d]}
	hc -n "$a" --accept-new-host-key node info
	expect_rc 0 "--accept-new-host-key" || return
	expect_kv "$T/out" node alpha "node info with --accept-new-host-key"
	[ -f "$KH" ] || { fail "known_hosts $KH not written"; return; }
	key=$(awk '{print $1, $2}' "$d/ssh_host_ed25519_key.pub")
	expect_eq "$(wc -l <"$KH")" 1 "lines in known_hosts"
	expect_eq "$(grep -c "^\[127\.0\.0\.1\]:$p " "$KH")" 1 \
	    "known_hosts lines for [127.0.0.1]:$p"
	expect_eq "$(awk '{print $2, $3}' "$KH")" "$key" "recorded key"
	ssh-keygen -F "[127.0.0.1]:$p" -f "$KH" >/dev/null ||
	    fail "ssh-keygen -F cannot find [127.0.0.1]:$p in $KH"
	before=$(sha_of "$KH")
	hc -n "$a" node info
	expect_rc 0 "second run without the flag"
	expect_kv "$T/out" node alpha "second run"
	hc -n "$a" --accept-new-host-key node info
	expect_rc 0 "third run with the flag"
	expect_eq "$(sha_of "$KH")" "$before" "known_hosts unchanged by later runs"
}

case_hostkey_changed() {
	local d=$T/n1 e=$T/n2 p a oldfp newfp before
	node_init "$d" c1 alpha || return
	node_init "$e" c1 alpha || return
	node_start "$d" || return
	p=${NODE_PORT[$d]}
	a=${NODE_ADDR[$d]}
	hc -n "$a" --accept-new-host-key node info
	expect_rc 0 "first contact" || return
	oldfp=$(fp_of "$d/ssh_host_ed25519_key.pub")
	newfp=$(fp_of "$e/ssh_host_ed25519_key.pub")
	[ "$oldfp" != "$newfp" ] || { fail "both nodes have host key $oldfp"; return; }
	node_stop "$d" || return
	node_start "$e" "127.0.0.1:$p" || return
	expect_eq "${NODE_ADDR[$e]}" "$a" "new node's address"
	before=$(sha_of "$KH")
	hc -n "$a" node info
	expect_rc 7 "changed host key"
	expect_has "$T/err" "$oldfp" "message shows the known fingerprint"
	expect_has "$T/err" "$newfp" "message shows the offered fingerprint"
	expect_empty "$T/out" "stdout on error"
	expect_eq "$(sha_of "$KH")" "$before" "known_hosts unchanged"
	hc -n "$a" --accept-new-host-key node info
	expect_rc 7 "changed host key with --accept-new-host-key"
	expect_has "$T/err" "$oldfp" "message shows the known fingerprint"
	expect_has "$T/err" "$newfp" "message shows the offered fingerprint"
	expect_eq "$(sha_of "$KH")" "$before" "known_hosts unchanged (--accept-new-host-key)"
	hc -n "$a" -o json --accept-new-host-key node info
	expect_rc 7 "changed host key, -o json"
	json_check "$T/out" 'd["error"]["code"] == "host_key_changed"' \
	    "'$oldfp' in d['error']['message']" \
	    "'$newfp' in d['error']['message']"
	expect_eq "$(sha_of "$KH")" "$before" "known_hosts unchanged (-o json)"
	expect_hasnt "${NODE_LOG[$e]}" "accepted" "no terminal authenticated to the impostor"
}

case_no_node() {
	local d=$T/n1 p t0 ms a
	p=$(free_port)
	t0=$(now_ms)
	hc -n "127.0.0.1:$p" node info
	ms=$(( $(now_ms) - t0 ))
	expect_rc 6 "nothing listening"
	[ "$ms" -lt 5000 ] || fail "exit after $ms ms, want under 5000"
	expect_has "$T/err" "127.0.0.1:$p" "message names the node"
	expect_empty "$T/out" "stdout on error"
	t0=$(now_ms)
	hc -n "127.0.0.1:$p" -o json node info
	ms=$(( $(now_ms) - t0 ))
	expect_rc 6 "nothing listening, -o json"
	[ "$ms" -lt 5000 ] || fail "exit after $ms ms (-o json), want under 5000"
	json_check "$T/out" 'list(d) == ["error"]' \
	    'isinstance(d["error"]["code"], str) and d["error"]["code"] != ""' \
	    'isinstance(d["error"]["message"], str)'
	expect_empty "$T/err" "stderr in -o json mode"
	# A node that was known and has stopped.
	node_init "$d" c1 alpha || return
	node_start "$d" || return
	a=${NODE_ADDR[$d]}
	hc -n "$a" --accept-new-host-key node info
	expect_rc 0 "node info while running" || return
	node_stop "$d" || return
	t0=$(now_ms)
	hc -n "$a" node info
	ms=$(( $(now_ms) - t0 ))
	expect_rc 6 "stopped node"
	[ "$ms" -lt 5000 ] || fail "exit after $ms ms (stopped node), want under 5000"
}

# Each line: the expected JSON error code, then hsmctl's arguments (@ = the
# node address).
USAGE_CASES='unknown_command @ bogus
unknown_command @ node bogus
unknown_command @ node
bad_option @ --bogus node info
bad_option @ node info --bogus
bad_option @ node info --bogus=1
usage @ node info extra
bad_value @ -o yaml node info
bad_option @ -o'

case_usage() {
	local d=$T/n1 a dead before after code args line i
	node_init "$d" c1 alpha || return
	node_start "$d" || return
	a=${NODE_ADDR[$d]}
	dead=127.0.0.1:$(free_port)
	hc -n "$a" --accept-new-host-key node info
	expect_rc 0 "node info" || return
	before=$(count_re "${NODE_LOG[$d]}" ': connected$')
	while read -r code line; do
		for i in "$a" "$dead"; do
			args=${line//@/$i}
			# shellcheck disable=SC2086
			hc -n $args
			expect_rc 2 "usage error"
			expect_empty "$T/out" "stdout ($LAST)"
			expect_has "$T/err" "hsmctl: " "stderr message"
			# -o json first, so that -o yaml is the one refused.
			# shellcheck disable=SC2086
			hc -o json -n $args
			expect_rc 2 "usage error, -o json"
			json_check "$T/out" "d['error']['code'] == '$code'"
		done
	done <<<"$USAGE_CASES"
	# Connections are logged when accepted; one real call flushes the queue.
	hc -n "$a" node info
	expect_rc 0 "node info after the usage errors"
	after=$(count_re "${NODE_LOG[$d]}" ': connected$')
	expect_eq "$after" "$((before + 1))" "connections logged by the node (nothing sent)"
}

case_later_features() {
	local dead opt
	dead=127.0.0.1:$(free_port)
	while read -r opt; do
		# shellcheck disable=SC2086
		hc -n "$dead" $opt node info
		expect_rc 2 "$opt"
		expect_has "$T/err" "not available" "$opt message"
		expect_empty "$T/out" "stdout ($opt)"
	done <<'EOF'
-f x
--file=x
-k
--as so
--officer f
--approval f
--passphrase-fd 3
--secret-file f
EOF
	hc -n "$dead" -o json --as so node info
	expect_rc 2 "--as, -o json"
	json_check "$T/out" 'd["error"]["code"] == "not_implemented"' \
	    '"not available" in d["error"]["message"]'
	hc -n "$dead"
	expect_rc 2 "no command, stdin not a terminal"
	expect_nonempty "$T/err" "no command: message"
	hc
	expect_rc 2 "no arguments at all"
	hc -n "$dead" shell
	expect_rc 2 "shell"
	hc help
	expect_rc 0 "help" && expect_has "$T/out" "node info" "help lists node info"
	hc -V
	expect_rc 0 "-V" && expect_eq "$(cat "$T/out")" "hsmctl $VERSION" "-V output"
}

case_config() {
	local a=$T/n1 b=$T/n2 dead cfg=$T/conf/hsmctl.conf bad=$T/conf/bad.conf khc=$T/conf/kh
	node_init "$a" c1 alpha || return
	node_init "$b" c1 beta || return
	node_start "$a" || return
	node_start "$b" || return
	dead=$(free_port)
	mkdir -p "$T/conf"
	cp "$TK" "$HOME/term"
	cat >"$cfg" <<EOF
# e2e configuration
default-cluster prod
terminal-key ~/term
known-hosts kh

cluster prod
    node n1 127.0.0.1:$dead   # nothing listens here
    node n2 ${NODE_ADDR[$b]}
cluster other
    node a ${NODE_ADDR[$a]}
    node b ${NODE_ADDR[$b]}
EOF
	mv "$TK" "$T/tk.moved"	# the configured key must be the one used
	hc -F "$cfg" --accept-new-host-key -v node info
	expect_rc 0 "failover to the second node"
	expect_kv "$T/out" node beta "failover"
	expect_has "$T/err" "skipping n1" "-v shows the skipped node"
	[ -f "$khc" ] || fail "known-hosts relative to the config file ($khc) not written"
	expect_eq "$(grep -c "^\[127\.0\.0\.1\]:${NODE_PORT[$b]} " "$khc" 2>/dev/null)" 1 \
	    "entries for n2 in $khc"
	[ -e "$KH" ] && fail "the default known_hosts was written although known-hosts is set"
	hc -F "$cfg" node info
	expect_rc 0 "failover, host key now known"
	expect_kv "$T/out" node beta "failover"
	expect_empty "$T/err" "stderr without -v"
	hc -F "$cfg" -n n2 node info
	expect_rc 0 "-n n2"
	expect_kv "$T/out" node beta "-n n2"
	hc -F "$cfg" -n n1 node info
	expect_rc 6 "-n n1 (dead): no failover to other nodes"
	hc -F "$cfg" -C other -n a --accept-new-host-key node info
	expect_rc 0 "-C other -n a"
	expect_kv "$T/out" node alpha "-C other -n a"
	hc -F "$cfg" -C other -n b node info
	expect_rc 0 "-C other -n b"
	expect_kv "$T/out" node beta "-C other -n b"
	hc -F "$cfg" -C other node info
	expect_rc 0 "-C other"
	expect_kv "$T/out" node alpha "-C other (first node)"
	hc -F "$cfg" -o json node info
	expect_rc 0 "-o json with failover"
	json_check "$T/out" 'd["node"] == "beta"'

	# Syntax errors: FILE:LINE: first, exit 2.
	printf 'default-cluster prod\ncluster prod\n    nodes n1 127.0.0.1:1\n' >"$bad"
	hc -F "$bad" node info
	expect_rc 2 "syntax error"
	expect_has "$T/err" "hsmctl: $bad:3: " "message starts with FILE:LINE:"
	expect_empty "$T/out" "stdout on syntax error"
	hc -F "$bad" -o json node info
	expect_rc 2 "syntax error, -o json"
	json_check "$T/out" "d['error']['message'].startswith('$bad:3: ')"
	printf 'cluster prod\n\n  node n1 127.0.0.1:1\n  node n2 127.0.0.1:99999\n' >"$bad"
	hc -F "$bad" node info
	expect_rc 2 "bad port"
	expect_has "$T/err" "hsmctl: $bad:4: " "bad port: FILE:LINE:"
	hc -F "$T/conf/missing.conf" node info
	expect_rc 2 "-F of a missing file"

	# $HSMCTL_CONFIG, and -F before it.
	HSMCTL_CONFIG=$cfg hc node info
	expect_rc 0 "HSMCTL_CONFIG"
	expect_kv "$T/out" node beta "HSMCTL_CONFIG"
	HSMCTL_CONFIG=$bad hc node info
	expect_rc 2 "HSMCTL_CONFIG names a bad file"
	expect_has "$T/err" "$bad:4: " "HSMCTL_CONFIG: the file is named"
	HSMCTL_CONFIG=$bad hc -F "$cfg" node info
	expect_rc 0 "-F wins over HSMCTL_CONFIG"
	expect_kv "$T/out" node beta "-F wins over HSMCTL_CONFIG"

	# $XDG_CONFIG_HOME/hsmctl/config.
	cp "$cfg" "$XDG_CONFIG_HOME/hsmctl/config"
	cp "$khc" "$XDG_CONFIG_HOME/hsmctl/kh"
	hc node info
	expect_rc 0 "XDG_CONFIG_HOME/hsmctl/config"
	expect_kv "$T/out" node beta "XDG config"
	rm -f "$XDG_CONFIG_HOME/hsmctl/config" "$XDG_CONFIG_HOME/hsmctl/kh"

	# -n HOST:PORT with no configuration at all: the default key and file.
	mv "$T/tk.moved" "$TK"
	hc -n "${NODE_ADDR[$a]}" --accept-new-host-key node info
	expect_rc 0 "-n HOST:PORT without a config file"
	expect_kv "$T/out" node alpha "-n HOST:PORT"
	expect_eq "$(grep -c "^\[127\.0\.0\.1\]:${NODE_PORT[$a]} " "$KH" 2>/dev/null)" 1 \
	    "default known_hosts entry"
	hc node info
	expect_rc 2 "no config, no -n"
}

case_terminal_keys() {
	local d=$T/n1 k2=$T/k2 cfg2=$T/k2.conf a pid fp2 fp3 before
	node_init "$d" c1 alpha || return
	node_start "$d" || return
	a=${NODE_ADDR[$d]}
	pid=${NODE_PID[$d]}
	mk_key "$k2"
	mk_key "$T/k3"
	fp2=$(fp_of "$k2.pub")
	fp3=$(fp_of "$T/k3.pub")
	printf 'terminal-key %s\nknown-hosts %s\n' "$k2" "$KH" >"$cfg2"
	hc -n "$a" --accept-new-host-key node info
	expect_rc 0 "authorised key" || return
	hc -F "$cfg2" -n "$a" node info
	expect_rc 3 "key not authorised"
	expect_empty "$T/out" "stdout on error"
	hc -F "$cfg2" -n "$a" -o json node info
	expect_rc 3 "key not authorised, -o json"
	json_check "$T/out" 'd["error"]["code"] == "auth_failed"'

	hd authorize -d "$d" "$k2.pub"
	expect_rc 0 "hsmd authorize"
	expect_has "$T/out" "$fp2" "hsmd authorize names the fingerprint"
	hc -F "$cfg2" -n "$a" node info
	expect_rc 0 "newly authorised key, node not restarted"
	expect_kv "$T/out" node alpha "newly authorised key"
	expect_eq "${NODE_PID[$d]}" "$pid" "node process"
	alive "$pid" || fail "node died"
	before=$(sha_of "$d/authorized_keys")
	hd authorize -d "$d" "$k2.pub"
	expect_rc 5 "authorising the same key twice"
	expect_eq "$(sha_of "$d/authorized_keys")" "$before" "authorized_keys after a repeated authorize"

	hd revoke -d "$d" "$fp2"
	expect_rc 0 "hsmd revoke"
	hc -F "$cfg2" -n "$a" node info
	expect_rc 3 "revoked key"
	hc -n "$a" node info
	expect_rc 0 "the other key still works"

	before=$(sha_of "$d/authorized_keys")
	hd revoke -d "$d" "$fp3"
	expect_rc 4 "revoke of an unknown fingerprint"
	hd revoke -d "$d" "$fp2"
	expect_rc 4 "revoke of an already revoked fingerprint"
	hd revoke -d "$d" not-a-fingerprint
	expect_rc 2 "revoke of a malformed fingerprint"
	expect_eq "$(sha_of "$d/authorized_keys")" "$before" "authorized_keys after failed revokes"

	# init refuses an existing node, whether served or not.
	node_init "$T/n3" c1 gamma || return
	before=$(tree_sum "$T/n3")
	hd init -d "$T/n3" --cluster c9 --name other --authorize "$k2.pub"
	expect_rc 5 "hsmd init on an existing node"
	expect_nonempty "$T/err" "hsmd init message"
	expect_eq "$(tree_sum "$T/n3")" "$before" "node directory after a refused init"
	before=$(sha_of "$d/authorized_keys" "$d/ssh_host_ed25519_key" "$d/master.key")
	hd init -d "$d" --cluster c1 --name alpha
	expect_rc 5 "hsmd init on a served node"
	expect_eq "$(sha_of "$d/authorized_keys" "$d/ssh_host_ed25519_key" "$d/master.key")" \
	    "$before" "served node's keys after a refused init"
	compgen -G "$T/.n*.init-*" >/dev/null && fail "init left a temporary directory: $(echo "$T"/.n*.init-*)"
	expect_node_up "$d" alpha "after the refused init"
}

case_raw_frames() {
	local d=$T/n1 p a rc t0 ms wpid
	node_init "$d" c1 alpha || return
	node_start "$d" || return
	p=${NODE_PORT[$d]}
	a=${NODE_ADDR[$d]}
	ssh_cmd "$p"
	hc -n "$a" --accept-new-host-key node info
	expect_rc 0 "node info" || return

	# The generator against a hand encoding (RFC 8949) of the request.
	request 1 node.info >"$T/req"
	expect_eq "$(od -An -v -tx1 "$T/req" | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')" \
	    "a4 61 76 01 62 69 64 01 62 6f 70 69 6e 6f 64 65 2e 69 6e 66 6f 64 61 72 67 73 a0" \
	    "CBOR of {v:1,id:1,op:node.info,args:{}}"

	# (a) a valid length and a garbage payload, then a good request.
	bytes de ad be ef ff 00 01 02 >"$T/garbage"
	request 2 node.info >"$T/req2"
	{ frame "$T/garbage"; frame "$T/req2"; } >"$T/in.a"
	timeout 10 "${SSH[@]}" <"$T/in.a" >"$T/out.a" 2>"$T/ssherr.a"
	rc=$?
	[ "$rc" != 124 ] || fail "(a) the session did not end within 10 s"
	frames_check "$T/out.a" 'len(f) in (1, 2)' \
	    'f[0]["ok"] is False and f[0]["error"]["code"] == "bad_frame"' \
	    'len(f) == 1 or (f[1]["id"] == 2 and f[1]["ok"] is True and f[1]["result"]["node"] == "alpha")'
	grep -qa bad_frame "$T/out.a" || fail "(a) no bad_frame in the response"
	expect_node_up "$d" alpha "(a) garbage payload"

	# (b) an oversized header; the client keeps its end open.
	mkfifo "$T/fifo.b"
	( bytes 7f ff ff ff; exec sleep 30 ) >"$T/fifo.b" &
	wpid=$!
	BG_PIDS+=("$wpid")
	t0=$(now_ms)
	timeout 10 "${SSH[@]}" <"$T/fifo.b" >"$T/out.b" 2>"$T/ssherr.b"
	rc=$?
	ms=$(( $(now_ms) - t0 ))
	kill "$wpid" 2>/dev/null
	wait "$wpid" 2>/dev/null
	[ "$rc" != 124 ] || fail "(b) the node did not close the channel (ssh still running after 10 s)"
	frames_check "$T/out.b" 'len(f) == 1' \
	    'f[0]["ok"] is False and f[0]["error"]["code"] == "bad_frame"'
	grep -qa bad_frame "$T/out.b" || fail "(b) no bad_frame in the response"
	expect_node_up "$d" alpha "(b) oversized header"

	# (c) a truncated frame: 100 bytes announced, 10 sent, then EOF.
	{ bytes 00 00 00 64; printf '0123456789'; } >"$T/in.c"
	timeout 10 "${SSH[@]}" <"$T/in.c" >"$T/out.c" 2>"$T/ssherr.c"
	rc=$?
	[ "$rc" != 124 ] || fail "(c) the session did not end within 10 s"
	frames_check "$T/out.c" 'len(f) == 1' \
	    'f[0]["ok"] is False and f[0]["error"]["code"] == "bad_frame"' \
	    '"truncated" in f[0]["error"]["message"]'
	expect_node_up "$d" alpha "(c) truncated frame"

	# (d) an unknown op, then node.info on the same session.
	request 1 bogus.op >"$T/req1"
	{ frame "$T/req1"; frame "$T/req2"; } >"$T/in.d"
	timeout 10 "${SSH[@]}" <"$T/in.d" >"$T/out.d" 2>"$T/ssherr.d"
	rc=$?
	[ "$rc" != 124 ] || fail "(d) the session did not end within 10 s"
	frames_check "$T/out.d" 'len(f) == 2' \
	    'f[0]["id"] == 1 and f[0]["ok"] is False and f[0]["error"]["code"] == "unknown_op"' \
	    'f[1]["id"] == 2 and f[1]["ok"] is True' \
	    'f[1]["result"]["node"] == "alpha" and f[1]["result"]["role"] == "master"'
	grep -qa unknown_op "$T/out.d" || fail "(d) no unknown_op in the response"
	expect_node_up "$d" alpha "(d) unknown op"
	[ -s "$T/out.d" ] || diag_file "$T/ssherr.d" "ssh stderr"
}

case_concurrent() {
	local d=$T/n1 a p i n=50 t0 ms bad=0 ok0 ok1 idle_pid wpid
	local -a pids=()
	node_init "$d" c1 alpha || return
	node_start "$d" || return
	a=${NODE_ADDR[$d]}
	p=${NODE_PORT[$d]}
	ssh_cmd "$p"
	hc -n "$a" --accept-new-host-key node info
	expect_rc 0 "node info" || return
	# Two stalled clients must not block anyone: one that never speaks SSH,
	# one with an open, idle hsm-admin session.
	exec 3<>"/dev/tcp/127.0.0.1/$p" || fail "cannot open a raw TCP connection"
	mkfifo "$T/fifo"
	( exec sleep 60 ) >"$T/fifo" &
	wpid=$!
	BG_PIDS+=("$wpid")
	timeout 60 "${SSH[@]}" <"$T/fifo" >/dev/null 2>"$T/ssherr" &
	idle_pid=$!
	BG_PIDS+=("$idle_pid")
	ok0=$(count_re "${NODE_LOG[$d]}" 'node\.info ok$')
	t0=$(now_ms)
	for ((i = 1; i <= n; i++)); do
		timeout -k 5 60 "$HSMCTL" -n "$a" node info </dev/null \
		    >"$T/out.$i" 2>"$T/err.$i" &
		pids[i]=$!
	done
	for ((i = 1; i <= n; i++)); do
		wait "${pids[i]}"
		rc=$?
		check_san "$T/err.$i" "concurrent hsmctl $i"
		if [ "$rc" != 0 ] || [ "$(kv "$T/out.$i" node)" != alpha ]; then
			bad=$((bad + 1))
			if [ "$bad" -le 3 ]; then
				fail "client $i: exit $rc"
				diag_file "$T/out.$i" "stdout $i"
				diag_file "$T/err.$i" "stderr $i"
			fi
		fi
	done
	ms=$(( $(now_ms) - t0 ))
	[ "$bad" = 0 ] || fail "$bad of $n concurrent clients failed"
	ok1=$(count_re "${NODE_LOG[$d]}" 'node\.info ok$')
	expect_eq "$((ok1 - ok0))" "$n" "node.info requests answered by the node"
	CASE_DIAG+="#   $n clients in $ms ms"$'\n'
	alive "$idle_pid" || fail "the idle session ended early"
	exec 3>&-
	kill "$wpid" "$idle_pid" 2>/dev/null
	wait "$wpid" "$idle_pid" 2>/dev/null
	expect_node_up "$d" alpha "after the concurrent clients"
}

case_shutdown() {
	local d=$T/n1 a p sig t0 wpid spid
	node_init "$d" c1 alpha || return
	for sig in TERM INT; do
		node_start "$d" || return
		a=${NODE_ADDR[$d]}
		p=${NODE_PORT[$d]}
		ssh_cmd "$p"
		hc -n "$a" --accept-new-host-key node info
		expect_rc 0 "node info" || return
		# An idle hsm-admin session and a connection stuck before SSH.
		rm -f "$T/fifo"
		mkfifo "$T/fifo"
		( exec sleep 30 ) >"$T/fifo" &
		wpid=$!
		BG_PIDS+=("$wpid")
		: >"$T/ssherr"
		timeout 20 "${SSH[@]}" <"$T/fifo" >"$T/sshout" 2>"$T/ssherr" &
		spid=$!
		BG_PIDS+=("$spid")
		exec 3<>"/dev/tcp/127.0.0.1/$p"
		t0=$(now_ms)
		while [ "$(count_re "${NODE_LOG[$d]}" 'accepted$')" -lt 2 ] &&
		    [ $(( $(now_ms) - t0 )) -lt 10000 ]; do
			sleep 0.05
		done
		[ "$(count_re "${NODE_LOG[$d]}" 'accepted$')" -ge 2 ] ||
		    { fail "the idle ssh session was not accepted"; diag_file "$T/ssherr" "ssh stderr"; }
		sleep 0.3	# let it open the channel and subsystem
		alive "$spid" || fail "the idle ssh session ended before SIG$sig"
		node_stop "$d" "$sig"
		t0=$(now_ms)
		while alive "$spid" && [ $(( $(now_ms) - t0 )) -lt 5000 ]; do
			sleep 0.05
		done
		alive "$spid" && fail "the idle client was not disconnected by the shutdown"
		exec 3>&-
		kill "$wpid" "$spid" 2>/dev/null
		wait "$wpid" "$spid" 2>/dev/null
		mv "${NODE_LOG[$d]}" "${NODE_LOG[$d]}.$sig"
	done
}

# ---- driver --------------------------------------------------------------

run_case() { # DESCRIPTION FUNCTION
	local desc=$1 fn=$2 d t0 ms
	N=$((N + 1))
	if [ -n "${E2E_CASES:-}" ] && [[ " $E2E_CASES " != *" $N "* ]]; then
		return
	fi
	CASE_FAILED=0
	CASE_DIAG=""
	T=$(mktemp -d "$ROOT/case$N.XXXXXX")
	export HOME=$T/home XDG_CONFIG_HOME=$T/xdg
	mkdir -p "$HOME" "$XDG_CONFIG_HOME/hsmctl"
	TK=$XDG_CONFIG_HOME/hsmctl/terminal_key	# the default terminal key
	KH=$XDG_CONFIG_HOME/hsmctl/known_hosts	# the default known_hosts
	mk_key "$TK"
	t0=$(now_ms)
	"$fn"
	for d in "${!NODE_PID[@]}"; do
		node_stop "$d"
	done
	ms=$(( $(now_ms) - t0 ))
	if [ "$CASE_FAILED" = 0 ]; then
		echo "ok $N - $desc ($ms ms)"
		PASSED=$((PASSED + 1))
	else
		echo "not ok $N - $desc ($ms ms)"
		printf '%s' "$CASE_DIAG"
		FAILED=$((FAILED + 1))
		FAILED_LIST+=" $N"
	fi
	[ "${E2E_KEEP:-0}" = 1 ] || rm -rf "$T"
}

START=$(now_ms)
echo "# e2e: $HSMCTL, $HSMD"
run_case "node info: text output" case_info_text
run_case "node info: -o json, sandbox flag" case_info_json
run_case "unknown host key: exit 7, nothing written" case_hostkey_unknown
run_case "--accept-new-host-key records the key once" case_hostkey_accept
run_case "changed host key: exit 7 with both fingerprints" case_hostkey_changed
run_case "no node: exit 6 within 5 s, text and JSON" case_no_node
run_case "usage errors: exit 2, nothing sent" case_usage
run_case "later-feature options and no command: exit 2" case_later_features
run_case "configuration: failover, -n, -C, syntax errors, HSMCTL_CONFIG" case_config
run_case "terminal keys: authorize, revoke, init refuses" case_terminal_keys
run_case "raw client: garbage, oversized, truncated, unknown op" case_raw_frames
run_case "50 concurrent node info" case_concurrent
run_case "clean shutdown with idle clients (SIGTERM, SIGINT)" case_shutdown
echo "# $PASSED passed, $FAILED failed in $(( ($(now_ms) - START) / 1000 )) s"
if [ "$FAILED" != 0 ]; then
	echo "# failed:$FAILED_LIST"
	exit 1
fi
exit 0
