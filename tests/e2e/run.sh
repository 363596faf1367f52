#!/usr/bin/env bash
#
# End-to-end tests: real hsmd nodes in temporary directories, driven by
# the real hsmctl binary (and by the OpenSSH client as a raw frame client):
# single commands, batch files, the interactive shell in a pseudo-terminal
# (tests/e2e/pty_shell.py) and the completion scripts in a real bash and zsh.
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

# ---- batch, shell and completion helpers ----------------------------------

PTY_SHELL=$SRCDIR/tests/e2e/pty_shell.py

# hcin FILE ARGS...: hc with standard input from FILE.
hcin() {
	local in=$1
	shift
	LAST="hsmctl $* <$(basename "$in")"
	timeout -k 5 60 "$HSMCTL" "$@" <"$in" >"$T/out" 2>"$T/err"
	RC=$?
	check_san "$T/err" "$LAST"
}

# no_uptime FILE: the text without the (ever changing) uptime line.
no_uptime() { grep -av '^uptime ' "$1"; }

expect_same() { # GOT-FILE WANT-FILE WHAT
	if ! cmp -s "$1" "$2"; then
		fail "$3: output differs (\`$LAST\`)"
		CASE_DIAG+=$(diff -u "$2" "$1" 2>&1 | head -n 30 |
		    sed 's/^/#     | /')$'\n'
		return 1
	fi
}

# expect_lines FILE TEXT WHAT: FILE holds exactly TEXT (and a newline).
expect_lines() {
	local got
	got=$(cat "$1"; echo .)
	got=${got%.}
	if [ "$got" != "$2"$'\n' ]; then
		fail "$3: want exactly '$2' (\`$LAST\`)"
		diag_file "$1"
		return 1
	fi
}

# wait_count FILE REGEX N: wait (at most 3 s) until REGEX matches at least
# N lines of FILE; prints the count then.
wait_count() {
	local t0 n
	t0=$(now_ms)
	while n=$(count_re "$1" "$2"); [ "$n" -lt "$3" ] &&
	    [ $(( $(now_ms) - t0 )) -lt 3000 ]; do
		sleep 0.05
	done
	echo "$n"
}

# mk_cfg FILE CLUSTER NAME=HOST:PORT...: a configuration of one cluster
# (the default terminal key and known_hosts).
mk_cfg() {
	local f=$1 n
	{
		echo "default-cluster $2"
		echo "cluster $2"
		shift 2
		for n in "$@"; do
			echo "    node ${n%%=*} ${n#*=}"
		done
	} >"$f"
}

# jsonl_check FILE PYTHON-EXPR...: FILE is JSON Lines (one document a line,
# each line ending in a newline); L is the list of documents (keys in file
# order).
jsonl_check() {
	local f=$1 msg
	shift
	if ! msg=$(python3 - "$f" "$@" <<'PYEOF' 2>&1
import json, re, sys
text = open(sys.argv[1], encoding="utf-8").read()
if text and not text.endswith("\n"):
    sys.exit("the last line has no newline: %r" % text[-200:])
L = []
for n, line in enumerate(text.split("\n")[:-1], 1):
    try:
        L.append(json.loads(line))
    except ValueError as e:
        sys.exit("line %d is not JSON (%s): %r" % (n, e, line[:300]))
for expr in sys.argv[2:]:
    try:
        ok = eval(expr, {"re": re, "L": L})
    except Exception as e:
        ok = False
        expr += "  (%s: %s)" % (type(e).__name__, e)
    if not ok:
        sys.exit("false: %s  in  %s" % (expr, text[:600]))
PYEOF
	); then
		fail "JSON Lines check (\`$LAST\`): $msg"
		return 1
	fi
}

# json_norm IN OUT: every JSON line of IN re-encoded, node info's uptime
# dropped (it changes between runs).
json_norm() {
	local msg
	if ! msg=$(python3 - "$1" "$2" <<'PYEOF' 2>&1
import json, sys
out = []
for line in open(sys.argv[1], encoding="utf-8").read().splitlines():
    try:
        d = json.loads(line)
    except ValueError as e:
        sys.exit("not JSON (%s): %r" % (e, line[:300]))
    if isinstance(d, dict):
        d.pop("uptime", None)
    out.append(json.dumps(d) + "\n")
open(sys.argv[2], "w", encoding="utf-8").write("".join(out))
PYEOF
	); then
		fail "$(basename "$1"): $msg"
		: >"$2"
	fi
}

# pty_cmd SCRIPT ARGS...: PTY=(the pty harness running hsmctl ARGS, driven
# by SCRIPT, with NO_COLOR, XDG_STATE_HOME=$T/state, HSMCTL_CONFIG=$T/cfg;
# the transcript goes to $T/pty.log, pauses through $T/sync).
pty_cmd() {
	local script=$1
	shift
	mkdir -p "$T/sync"
	: >"$T/pty.log"
	LAST="hsmctl $* (in a pty, driven by $(basename "$script"))"
	PTY=(timeout -k 5 120 python3 "$PTY_SHELL" -t 20 -l "$T/pty.log"
	    -s "$T/sync" -e NO_COLOR=1 -e XDG_STATE_HOME="$T/state"
	    -e HSMCTL_CONFIG="$T/cfg" "$script" -- "$HSMCTL" "$@")
}

# pty_done RC: check the harness's status and the transcript.
pty_done() {
	RC=$1
	check_san "$T/pty.log" "$LAST"
	if [ "$RC" != 0 ]; then
		fail "$LAST: step failed (harness exit $RC)"
		diag_file "$T/pty.err" "pty_shell"
		return 1
	fi
}

# pty_run SCRIPT ARGS...: run the harness in the foreground.
pty_run() {
	pty_cmd "$@"
	"${PTY[@]}" >"$T/pty.out" 2>"$T/pty.err"
	pty_done $?
}

# wait_sync NAME PID: wait until the harness pauses at NAME (or ends).
wait_sync() {
	local t0
	t0=$(now_ms)
	while [ ! -e "$T/sync/$1" ] && alive "$2" &&
	    [ $(( $(now_ms) - t0 )) -lt 60000 ]; do
		sleep 0.05
	done
	[ -e "$T/sync/$1" ]
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
	    'type(d["last_seq"]) is int and d["last_seq"] >= 0' \
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
	local dead opt miss=$T/missing.batch
	dead=127.0.0.1:$(free_port)
	# Every global option exists now; bad values are usage errors.
	hc -n "$dead" --as user:p1 node info
	expect_rc 2 "--as user:P without --secret-file"
	hc -n "$dead" -o json --as user:p1 node info
	expect_rc 2 "--as user:P without --secret-file, -o json"
	json_check "$T/out" 'd["error"]["code"] in ("usage", "bad_value")'
	# The login options' bad values are usage errors.
	hc -n "$dead" --as bogus node info
	expect_rc 2 "--as bogus"
	hc -n "$dead" --passphrase-fd 77 node info
	expect_rc 2 "--passphrase-fd on a closed descriptor"
	# Batch mode exists: -f FILE reads FILE, -k is a batch option.
	for opt in "-f $miss" "--file=$miss" "-k -f $miss"; do
		# shellcheck disable=SC2086
		hc -n "$dead" $opt
		expect_rc 2 "$opt (a missing file)"
		expect_has "$T/err" "$miss" "$opt: the message names the file"
		expect_hasnt "$T/err" "not available" "$opt message"
		expect_empty "$T/out" "stdout ($opt)"
	done
	hc -n "$dead" -o json -f "$miss"
	expect_rc 2 "-o json -f (a missing file)"
	json_check "$T/out" "'$miss' in d['error']['message']"
	hc -n "$dead" -f "$miss" node info
	expect_rc 2 "-f FILE and a command"
	hc -n "$dead" -k node info
	expect_rc 6 "-k with a single command is accepted (the node is down)"
	expect_hasnt "$T/err" "not available" "-k message"
	hc -n "$dead"
	expect_rc 2 "no command, stdin not a terminal"
	expect_nonempty "$T/err" "no command: message"
	hc -n "$dead" -k
	expect_rc 2 "-k and no command, stdin not a terminal"
	hc
	expect_rc 2 "no arguments at all"
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
	local d=$T/n1 p a rc t0 ms wpid j
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

	# (e) the batch op, without a login: malformed ones are refused as a
	# whole; a well-formed one answers each request for itself.
	: >"$T/in.e"
	for j in '{}' '{"requests": []}' \
	    '{"requests": [{"op": "auth.login", "args": {}}]}' \
	    '{"requests": [{"op": "node.info", "args": {}}]}' \
	    '{"requests": [{"op": "partition.get", "args": {"name": "x", "param": "size-mb"}}]}' \
	    '{"requests": [{"op": "partition.get", "args": {"name": "x", "param": "size-mb"}}], "keep_going": "yes"}'; do
		python3 - "$j" >"$T/req.e" <<'PYEOF'
import json, sys

def enc(x):
    def head(mt, n):
        if n < 24:
            return bytes([mt << 5 | n])
        for ai, size in ((24, 1), (25, 2), (26, 4)):
            if n < 1 << 8 * size:
                return bytes([mt << 5 | ai]) + n.to_bytes(size, "big")
        raise ValueError(n)
    if isinstance(x, bool):
        return bytes([0xf5 if x else 0xf4])
    if isinstance(x, int):
        return head(0, x)
    if isinstance(x, str):
        b = x.encode()
        return head(3, len(b)) + b
    if isinstance(x, list):
        return head(4, len(x)) + b"".join(enc(v) for v in x)
    return head(5, len(x)) + b"".join(enc(k) + enc(v) for k, v in x.items())

args = json.loads(sys.argv[1])
sys.stdout.buffer.write(enc({"v": 1, "id": 7, "op": "batch", "args": args}))
PYEOF
		frame "$T/req.e" >>"$T/in.e"
	done
	frame "$T/req2" >>"$T/in.e"
	timeout 10 "${SSH[@]}" <"$T/in.e" >"$T/out.e" 2>"$T/ssherr.e"
	rc=$?
	[ "$rc" != 124 ] || fail "(e) the session did not end within 10 s"
	frames_check "$T/out.e" 'len(f) == 7' \
	    'all(x["id"] == 7 for x in f[:6])' \
	    '[x["ok"] for x in f[:6]] == [False, False, False, False, True, False]' \
	    'all(f[i]["error"]["code"] == "bad_request" for i in (0, 1, 2, 3, 5))' \
	    '"cannot be batched" in f[2]["error"]["message"]' \
	    '"auth.login" in f[2]["error"]["message"]' \
	    '"node.info" in f[3]["error"]["message"]' \
	    '"keep_going" in f[5]["error"]["message"]' \
	    'list(f[4]["result"]) == ["results"] and len(f[4]["result"]["results"]) == 1' \
	    'f[4]["result"]["results"][0]["ok"] is False' \
	    'f[4]["result"]["results"][0]["error"]["code"] == "not_authorized"' \
	    'f[6]["id"] == 2 and f[6]["ok"] is True and f[6]["result"]["node"] == "alpha"'
	expect_node_up "$d" alpha "(e) batch op"
	[ -s "$T/out.e" ] || diag_file "$T/ssherr.e" "ssh stderr"
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

# A prompt of the shell (cluster c1, maybe connected to node alpha), at the
# start of a line.
PROMPT_RE='(?m)^hsmctl c1(@alpha)?> '

# setup_alpha: node alpha of cluster c1 running, its host key known; A is
# its address, LOG its log and $T/cfg a configuration naming it.
setup_alpha() {
	node_init "$T/n1" c1 alpha || return
	node_start "$T/n1" || return
	A=${NODE_ADDR[$T/n1]}
	LOG=${NODE_LOG[$T/n1]}
	mk_cfg "$T/cfg" c1 "alpha=$A"
	hc -n "$A" --accept-new-host-key node info
	expect_rc 0 "node info" || return
}

case_batch_good() {
	local f=$T/good.batch want=$T/want c
	setup_alpha || return
	# The single commands the file below is made of, in order.
	: >"$want"
	for c in "node info" "node info" "help node info" "help" \
	    "node info -h" "help node" "node info"; do
		# shellcheck disable=SC2086
		hc -F "$T/cfg" $c
		expect_rc 0 "single command: $c" || return
		no_uptime "$T/out" >>"$want"
	done
	cat >"$f" <<'BATCH'
# A batch file: comments, blank lines, quoting and continuations.

node info
   # an indented comment
node \
   info
help 'node' "info"	# a trailing comment
  help
node info -h
"help" no\de
no''de\
 "in"'fo'
BATCH
	hc -F "$T/cfg" -f "$f"
	expect_rc 0 "good batch" || { diag_file "$f"; return; }
	expect_empty "$T/err" "batch stderr"
	no_uptime "$T/out" >"$T/got"
	expect_same "$T/got" "$want" "batch output = the single commands' output"
	hcin "$f" -F "$T/cfg" -f -
	expect_rc 0 "good batch on stdin (-f -)"
	no_uptime "$T/out" >"$T/got"
	expect_same "$T/got" "$want" "-f - output"
	sed 's/$/\r/' "$f" >"$T/crlf.batch"
	hc -F "$T/cfg" --file="$T/crlf.batch"
	expect_rc 0 "good batch with CRLF line ends"
	no_uptime "$T/out" >"$T/got"
	expect_same "$T/got" "$want" "CRLF batch output"
	# No newline at the end; only comments; empty.
	printf 'help node' >"$T/nonl.batch"
	hc -F "$T/cfg" -f "$T/nonl.batch"
	expect_rc 0 "a last line without a newline"
	expect_has "$T/out" "node info" "help node from the last line"
	printf '# nothing\n\n   \n\t# at all\n' >"$T/comments.batch"
	: >"$T/empty.batch"
	for c in comments empty; do
		hc -F "$T/cfg" -f "$T/$c.batch"
		expect_rc 0 "a batch of $c"
		expect_empty "$T/out" "stdout ($c)"
		expect_empty "$T/err" "stderr ($c)"
	done
}

# Lines refused before anything runs: the line | the single command giving
# the same message, or "-" | without one, the message (a bash regex).
BATCH_SYNTAX='node bogus|node bogus|
bogus|bogus|
node|node|
node info --bogus|node info --bogus|
node info --bogus=1|node info --bogus=1|
node info extra|node info extra|
help '"'"'node info|-|unterminated single quote
node info "-h|-|unterminated double quote
node \|-|unknown command .node bogus.*'

case_batch_syntax() {
	local f=$T/bad.batch line single re before after n want words i
	setup_alpha || return
	before=$(count_re "$LOG" ': connected$')
	# Line 5 (with "node \", lines 5 and 6) is bad, after four good ones.
	while IFS='|' read -r line single re; do
		{ printf 'node info\n# a comment\n\nhelp\n%s\n' "$line"
		  [ "$line" = "node \\" ] && printf 'bogus\n'
		  printf 'node info\n'; } >"$f"
		if [ "$single" != - ]; then
			# shellcheck disable=SC2086
			hc -F "$T/cfg" $single
			expect_rc 2 "single: $single"
			want="$f:5: $(sed -n '1s/^hsmctl: //p' "$T/err")"
		fi
		hc -F "$T/cfg" -f "$f"
		expect_rc 2 "syntax error on line 5: $line"
		expect_empty "$T/out" "stdout: nothing ran ($line)"
		if [ "$single" != - ]; then
			expect_lines "$T/err" "$want" "stderr: FILE:5: and the single command's message"
		elif ! [[ $(cat "$T/err") =~ ^"$f:5: "$re$ ]]; then
			fail "stderr is not '$f:5: $re' ($line)"
			diag_file "$T/err"
		fi
		hc -F "$T/cfg" -o json -f "$f"
		expect_rc 2 "syntax error on line 5, -o json: $line"
		expect_empty "$T/err" "stderr, -o json ($line)"
		jsonl_check "$T/out" 'len(L) == 1' 'list(L[0]) == ["line", "error"]' \
		    'L[0]["line"] == 5' 'isinstance(L[0]["error"]["code"], str)'
	done <<<"$BATCH_SYNTAX"
	# Too many words in a line.
	words=help
	for ((i = 0; i < 64; i++)); do
		words+=" w"
	done
	printf 'node info\nhelp\n%s\n' "$words" >"$f"
	hc -F "$T/cfg" -f "$f"
	expect_rc 2 "65 words in line 3"
	expect_empty "$T/out" "stdout (65 words)"
	[[ $(cat "$T/err") =~ ^"$f:3: ".*words ]] ||
	    { fail "65 words: want '$f:3: ...words...'"; diag_file "$T/err"; }
	# Bytes that no line may hold, and a 1 MiB line.
	for n in nul utf8 ctl long; do
		case $n in
		nul) printf 'node info\nhelp\nhelp no\0de\nnode info\n' ;;
		utf8) printf 'node info\nhelp \xc3\x28\nnode info\n' ;;
		ctl) printf 'node info\nhelp \033[1m\nnode info\n' ;;
		long) printf 'node info\nhelp\nhelp '
		      head -c 1048576 /dev/zero | tr '\0' a
		      printf '\nnode info\n' ;;
		esac >"$f"
		want=3
		if [ "$n" = utf8 ] || [ "$n" = ctl ]; then
			want=2
		fi
		hc -F "$T/cfg" -f "$f"
		expect_rc 2 "batch with $n on line $want"
		expect_empty "$T/out" "stdout ($n)"
		if [ "$(wc -l <"$T/err")" != 1 ] || ! grep -qa "^$f:$want: " "$T/err"; then
			fail "$n: want one line '$f:$want: ...'"
			diag_file "$T/err"
		fi
		hcin "$f" -F "$T/cfg" -o json -f -
		expect_rc 2 "batch with $n on line $want, -o json, stdin"
		jsonl_check "$T/out" 'len(L) == 1' "L[0]['line'] == $want" \
		    'list(L[0]) == ["line", "error"]'
	done
	hcin "$f" -F "$T/cfg" -f -
	expect_rc 2 "-f - with a 1 MiB line"
	grep -qaE '^(<stdin>|-):3: ' "$T/err" ||
	    { fail "-f -: want '<stdin>:3: ...'"; diag_file "$T/err"; }
	# Nothing was sent: one real call is the only new connection.
	hc -F "$T/cfg" node info
	expect_rc 0 "node info after the refused batches"
	after=$(wait_count "$LOG" ': connected$' $((before + 1)))
	expect_eq "$after" "$((before + 1))" "connections logged by the node (nothing sent)"
}

# find_runtime_failure: RTF=a line that passes the batch's check against
# the table but fails when it runs on the live node alpha (status RTF_RC),
# without changing anything; empty if the table has none.
RTF_CANDIDATES='help bogus
officer list
quorum show
audit verify'

find_runtime_failure() {
	local c
	RTF=""
	RTF_RC=0
	while read -r c; do
		printf 'node info\n%s\n' "$c" >"$T/rtf.batch"
		hc -F "$T/cfg" -f "$T/rtf.batch"
		if [ "$RC" != 0 ] && [ "$RC" != 6 ] && grep -q '^node ' "$T/out"; then
			RTF=$c
			RTF_RC=$RC
			return
		fi
	done <<<"$RTF_CANDIDATES"
	CASE_DIAG+="#   no command fails at run time on a live node: live -k checks skipped"$'\n'
}

case_batch_runtime() {
	local f=$T/run.batch dead cfgd=$T/dead.conf ok0 ok1 msg
	setup_alpha || return
	# A cluster whose only node is down: exit 6 on line 1.
	dead=$(free_port)
	mk_cfg "$cfgd" c1 "n1=127.0.0.1:$dead"
	printf 'node info\nhelp node\n\nnode info\nhelp node info\n' >"$f"
	hc -F "$cfgd" -f "$f"
	expect_rc 6 "node down: stops at line 1"
	expect_empty "$T/out" "nothing after line 1"
	expect_eq "$(wc -l <"$T/err")" 1 "stderr lines (stopped at line 1)"
	grep -qa "^$f:1: .*cannot connect to 127\.0\.0\.1:$dead" "$T/err" ||
	    { fail "want '$f:1: ...cannot connect to 127.0.0.1:$dead...'"; diag_file "$T/err"; }
	hc -F "$T/cfg" help node
	cp "$T/out" "$T/want"
	hc -F "$T/cfg" help node info
	cat "$T/out" >>"$T/want"
	hc -F "$cfgd" -k -f "$f"
	expect_rc 6 "node down, -k: the first failure's status"
	expect_same "$T/out" "$T/want" "node down, -k: lines 2 and 5 ran"
	expect_eq "$(grep -c "^$f:[14]: .*cannot connect" "$T/err")" 2 \
	    "node down, -k: lines 1 and 4 reported"
	expect_eq "$(wc -l <"$T/err")" 2 "stderr lines (-k)"
	hc -n "127.0.0.1:$dead" -k -o json -f "$f"
	expect_rc 6 "-o json -k, node down"
	expect_empty "$T/err" "stderr (-o json -k)"
	jsonl_check "$T/out" 'len(L) == 4' \
	    '[d.get("line") for d in (L[0], L[2])] == [1, 4]' \
	    'list(L[0]) == ["line", "error"] and list(L[2]) == ["line", "error"]' \
	    'L[0]["error"] == L[2]["error"]' \
	    'L[1][0]["command"] == "node info" and L[3][0]["command"] == "node info"'
	hc -n "127.0.0.1:$dead" -o json -f "$f"
	expect_rc 6 "-o json, node down"
	jsonl_check "$T/out" 'len(L) == 1' 'L[0]["line"] == 1'

	# A line that fails on a live node: the lines before it ran, the lines
	# after it only with -k, on the same connection.
	find_runtime_failure
	[ -n "$RTF" ] || return
	printf 'node info\n%s\nnode info\n\nnode info\n' "$RTF" >"$f"
	printf '%s\n' "$RTF" >"$T/one.batch"
	hc -F "$T/cfg" -f "$T/one.batch"
	msg=$(sed -n "1s|^$T/one.batch:1: ||p" "$T/err")
	ok0=$(count_re "$LOG" 'node\.info ok$')
	hc -F "$T/cfg" -f "$f"
	expect_rc "$RTF_RC" "'$RTF' fails on line 2: stop there"
	expect_lines "$T/err" "$f:2: $msg" "stderr: FILE:2: message"
	expect_eq "$(grep -c '^node ' "$T/out")" 1 "node info outputs before the stop"
	ok1=$(wait_count "$LOG" 'node\.info ok$' $((ok0 + 1)))
	expect_eq "$((ok1 - ok0))" 1 "node.info requests (stopped at line 2)"
	hc -F "$T/cfg" -k -f "$f"
	expect_rc "$RTF_RC" "-k: every line runs, the first failure's status"
	expect_lines "$T/err" "$f:2: $msg" "-k stderr"
	expect_eq "$(grep -c '^node ' "$T/out")" 3 "node info outputs with -k"
	ok0=$(wait_count "$LOG" 'node\.info ok$' $((ok1 + 3)))
	expect_eq "$((ok0 - ok1))" 3 "node.info requests with -k"
	hc -F "$T/cfg" -k -o json -f "$f"
	expect_rc "$RTF_RC" "-o json -k, '$RTF' on line 2"
	jsonl_check "$T/out" 'len(L) == 4' 'list(L[1]) == ["line", "error"]' \
	    'L[1]["line"] == 2' \
	    'all(L[i]["node"] == "alpha" for i in (0, 2, 3))'
	# The first failure's status, not the last or the worst: when the line
	# fails the same way without a node, two statuses meet in one batch.
	hc -F "$cfgd" -f "$T/one.batch"
	if [ "$RC" != "$RTF_RC" ]; then
		CASE_DIAG+="#   '$RTF' needs the node: first-failure order not checked"$'\n'
		return
	fi
	printf '%s\nnode info\n' "$RTF" >"$f"
	hc -F "$cfgd" -k -f "$f"
	expect_rc "$RTF_RC" "-k: $RTF_RC (line 1) before 6 (line 2)"
	expect_eq "$(cut -d: -f2 "$T/err" | tr '\n' ' ')" "1 2 " "-k: failing lines"
	printf 'node info\n%s\n' "$RTF" >"$f"
	hc -F "$cfgd" -k -f "$f"
	expect_rc 6 "-k: 6 (line 1) before $RTF_RC (line 2)"
}

case_batch_one_conn() {
	local f=$T/five.batch c0 c1 ok0 ok1 peers
	setup_alpha || return
	c0=$(count_re "$LOG" ': connected$')
	ok0=$(count_re "$LOG" 'node\.info ok$')
	printf 'node info\nnode info\n# between\nnode info\nnode info\nnode info\n' >"$f"
	hc -F "$T/cfg" -f "$f"
	expect_rc 0 "5 x node info"
	expect_eq "$(grep -c '^node ' "$T/out")" 5 "node info outputs"
	ok1=$(wait_count "$LOG" 'node\.info ok$' $((ok0 + 5)))
	c1=$(count_re "$LOG" ': connected$')
	expect_eq "$((ok1 - ok0))" 5 "node.info requests"
	expect_eq "$((c1 - c0))" 1 "SSH connections for the batch"
	peers=$(grep -a 'node\.info ok$' "$LOG" | tail -n 5 |
	    awk '{print $(NF-2)}' | sort -u)
	expect_eq "$(echo "$peers" | wc -l)" 1 "client addresses of the 5 requests"
	expect_eq "$(grep -a ': connected$' "$LOG" | tail -n 1 | awk '{print $(NF-1)}')" \
	    "$peers" "the connection's address"
	hc -F "$T/cfg" -o json -f "$f"
	expect_rc 0 "5 x node info, -o json"
	c0=$(wait_count "$LOG" 'node\.info ok$' $((ok1 + 5)))
	expect_eq "$((c0 - ok1))" 5 "node.info requests (-o json)"
	c0=$(count_re "$LOG" ': connected$')
	expect_eq "$((c0 - c1))" 1 "SSH connections for the -o json batch"
}

case_batch_json() {
	local f=$T/j.batch dead
	setup_alpha || return
	printf 'node info\nhelp node info\n\nnode info -h\n#\nnode info\n' >"$f"
	hc -F "$T/cfg" -o json -f "$f"
	expect_rc 0 "-o json"
	expect_empty "$T/err" "stderr with -o json"
	jsonl_check "$T/out" 'len(L) == 4' \
	    'L[0]["node"] == "alpha" and L[3]["node"] == "alpha"' \
	    'L[0]["cluster"] == "c1" and list(L[0]) == list(L[3])' \
	    'L[1][0]["command"] == "node info"' 'L[1] == L[2]' \
	    '"line" not in L[0] and "line" not in L[3]'
	hcin "$f" -F "$T/cfg" -o json -f -
	expect_rc 0 "-o json -f -"
	jsonl_check "$T/out" 'len(L) == 4' 'L[3]["node"] == "alpha"'
	# Failures: {"line":N,"error":{"code":...,"message":...}}, line first.
	dead=127.0.0.1:$(free_port)
	printf 'help node info\n\n# x\nnode info\nhelp\nnode info\n' >"$f"
	hc -n "$dead" -o json -k -f "$f"
	expect_rc 6 "-o json -k, node down"
	expect_empty "$T/err" "stderr with -o json, node down"
	jsonl_check "$T/out" 'len(L) == 4' \
	    'list(L[1]) == ["line", "error"] and L[1]["line"] == 4' \
	    'list(L[3]) == ["line", "error"] and L[3]["line"] == 6' \
	    'list(L[1]["error"]) == ["code", "message"]' \
	    'isinstance(L[1]["error"]["code"], str) and L[1]["error"]["code"]' \
	    '"'"$dead"'" in L[1]["error"]["message"]' \
	    'isinstance(L[0], list) and isinstance(L[2], list)'
	# A syntax error: the only document, nothing ran.
	printf 'help\nnode info\nnode  bogus\n' >"$f"
	hc -F "$T/cfg" -o json -k -f "$f"
	expect_rc 2 "-o json -k, syntax error on line 3"
	jsonl_check "$T/out" 'len(L) == 1' 'list(L[0]) == ["line", "error"]' \
	    'L[0]["line"] == 3' 'L[0]["error"]["code"] == "unknown_command"'
}

case_shell() {
	local h=$T/state/hsmctl/history s=$T/s1.script
	setup_alpha || return
	cat >"$s" <<SCRIPT
expect (?m)^hsmctl c1> \$
send no\\t
expect hsmctl c1> node \$
send in\\t
expect hsmctl c1> node info \$
send \\r
expect (?m)^node +alpha\\r\$
expect (?m)^hsmctl c1@alpha> \$
cmd bogus
expect $PROMPT_RE
save $T/bogus.txt
cmd node info
expect $PROMPT_RE
save $T/info.txt
cmd node info -h
expect $PROMPT_RE
save $T/h.txt
send node inf
expect node inf\$
send \\x03
expect (?m)^hsmctl c1@alpha> \$
cmd help node
expect $PROMPT_RE
save $T/helpnode.txt
cmd exit
exit 0
SCRIPT
	pty_run "$s" shell || { diag_file "$T/pty.log" transcript; return; }
	hc -F "$T/cfg" bogus
	expect_same "$T/bogus.txt" "$T/err" "bogus: the error, and the shell goes on"
	expect_kv "$T/info.txt" node alpha "node info after the error"
	expect_kv "$T/info.txt" cluster c1 "node info after the error"
	hc -F "$T/cfg" node info -h
	expect_same "$T/h.txt" "$T/out" "node info -h"
	hc -F "$T/cfg" help node
	expect_same "$T/helpnode.txt" "$T/out" "help node after Ctrl-C (the line was dropped)"
	# History: 0600, with the commands.
	if [ ! -f "$h" ]; then
		fail "no history file $h"
	else
		expect_eq "$(stat -c %a "$h")" 600 "history file mode"
		sed 's/\\040/ /g' "$h" | grep -qx 'node info *' ||
		    { fail "node info not in the history"; diag_file "$h"; }
	fi
	# No command at all: the shell, since stdin is a terminal.  The history
	# is read back (Ctrl-P); Ctrl-D on an empty line leaves.
	cat >"$s" <<SCRIPT
expect (?m)^hsmctl c1> \$
send \\x10
expect hsmctl c1> help node\$
send \\r
expect (?m)^Commands:\\r\$
expect (?m)^hsmctl c1> \$
cmd node info
expect (?m)^hsmctl c1@alpha> \$
save $T/info2.txt
send \\x04
exit 0
SCRIPT
	pty_run "$s" || { diag_file "$T/pty.log" transcript; return; }
	expect_kv "$T/info2.txt" node alpha "node info in the default shell"
	expect_eq "$(stat -c %a "$h")" 600 "history file mode after a second session"
	# quit; a configuration error is reported before any prompt.
	printf 'expect (?m)^hsmctl c1> $\ncmd quit\nexit 0\n' >"$s"
	pty_run "$s" -F "$T/cfg" || diag_file "$T/pty.log" transcript
	printf 'cluster\n' >"$T/bad.conf"
	printf 'expect ^hsmctl: %s:1: \nexit 2\n' "$T/bad.conf" >"$s"
	pty_run "$s" -F "$T/bad.conf" shell || diag_file "$T/pty.log" transcript
}

case_shell_reconnect() {
	local s=$T/r.script d=$T/n1 ppid rc f i
	setup_alpha || return
	cat >"$s" <<SCRIPT
expect (?m)^hsmctl c1> \$
cmd node info
expect (?m)^hsmctl c1@alpha> \$
save $T/r1.txt
pause stopped
cmd node info
expect $PROMPT_RE
save $T/r2.txt
cmd node info
expect $PROMPT_RE
save $T/r3.txt
pause started
cmd node info
expect (?m)^hsmctl c1@alpha> \$
save $T/r4.txt
cmd exit
exit 0
SCRIPT
	pty_cmd "$s" shell
	"${PTY[@]}" >"$T/pty.out" 2>"$T/pty.err" &
	ppid=$!
	BG_PIDS+=("$ppid")
	if wait_sync stopped "$ppid"; then
		node_stop "$d"
		touch "$T/sync/stopped.go"
		if wait_sync started "$ppid"; then
			node_start "$d" "$A"
			touch "$T/sync/started.go"
		fi
	fi
	wait "$ppid"
	rc=$?
	pty_done "$rc" || { diag_file "$T/pty.log" transcript; return; }
	expect_kv "$T/r1.txt" node alpha "before the stop"
	for f in r2 r3; do
		expect_eq "$(wc -l <"$T/$f.txt")" 1 "$f: one line"
		grep -qaE '^hsmctl: .*(cannot connect|lost connection)' "$T/$f.txt" ||
		    { fail "$f: no 'cannot connect' or 'lost connection'"; diag_file "$T/$f.txt"; }
	done
	expect_kv "$T/r4.txt" node alpha "after the restart (reconnected)"

	# A node that accepts but never speaks SSH: Ctrl-C while node info
	# waits for it cancels the command (well before the handshake's own
	# timeout), not the shell.
	python3 - "$T/silent.port" "$T/silent.accepted" <<'PYEOF' &
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
open(sys.argv[1] + ".tmp", "w").write("%d\n" % s.getsockname()[1])
__import__("os").rename(sys.argv[1] + ".tmp", sys.argv[1])
held = []
s.settimeout(0.5)
end = time.time() + 60
while time.time() < end:
    try:
        held.append(s.accept()[0])
        open(sys.argv[2], "w").close()
    except socket.timeout:
        pass
PYEOF
	ppid=$!
	BG_PIDS+=("$ppid")
	for ((rc = 0; rc < 100; rc++)); do
		[ -s "$T/silent.port" ] && break
		sleep 0.05
	done
	mk_cfg "$T/silent.conf" c9 "slow=127.0.0.1:$(cat "$T/silent.port" 2>/dev/null)"
	cat >"$s" <<SCRIPT
expect (?m)^hsmctl c9> \$
cmd node info
pause accepted
sendnow \x03
timeout 3
expect (?m)^hsmctl c9> \$
save $T/c1.txt
timeout 20
cmd help node
expect (?m)^hsmctl c9> \$
save $T/c2.txt
cmd exit
exit 0
SCRIPT
	pty_cmd "$s" -F "$T/silent.conf" shell
	"${PTY[@]}" >"$T/pty.out" 2>"$T/pty.err" &
	rc=$!
	BG_PIDS+=("$rc")
	if wait_sync accepted "$rc"; then
		for ((i = 0; i < 200; i++)); do
			[ -e "$T/silent.accepted" ] && break
			sleep 0.05
		done
		[ -e "$T/silent.accepted" ] || fail "node info did not connect to the silent node"
		touch "$T/sync/accepted.go"
	fi
	wait "$rc"
	pty_done $? || { diag_file "$T/pty.log" transcript; }
	kill "$ppid" 2>/dev/null
	wait "$ppid" 2>/dev/null
	# (The terminal echoes the ^C: it is not reading a line.)
	expect_eq "$(grep -cE '^(\^C)?hsmctl: ' "$T/c1.txt")" 1 "Ctrl-C during node info: one error line"
	hc help node
	expect_same "$T/c2.txt" "$T/out" "help node after the Ctrl-C"
}

# Output that cannot be written is a failure, whatever the mode.
case_output_error() {
	local f=$T/h.batch
	[ -w /dev/full ] || { CASE_DIAG+="#   no /dev/full: nothing checked"$'\n'; return; }
	printf 'help\nhelp node info\n' >"$f"
	for args in "help" "-o json help" "-f $f" "-o json -f $f"; do
		LAST="hsmctl $args >/dev/full"
		# shellcheck disable=SC2086
		timeout -k 5 60 "$HSMCTL" $args </dev/null >/dev/full 2>"$T/err"
		RC=$?
		check_san "$T/err" "$LAST"
		if [ "$RC" = 0 ]; then
			fail "$LAST: exit status 0 although nothing could be written"
		fi
	done
}

# Each command run alone, as a one-line batch and in the shell.
THREE_WAYS='node info
help
help node info
node info -h
node --help
node bogus
help bogus
node info extra'

case_three_ways() {
	local s=$T/3.script mode k c o rc1 msg end
	local -a opt
	setup_alpha || return
	for mode in text json; do
		opt=()
		end="quit"
		if [ "$mode" = json ]; then
			opt=(-o json)
			end="exit"
		fi
		echo "expect (?m)^hsmctl c1> \$" >"$s"
		k=0
		while read -r c; do
			k=$((k + 1))
			printf 'cmd %s\nexpect %s\nsave %s\n' "$c" "$PROMPT_RE" \
			    "$T/$mode.shell.$k" >>"$s"
		done <<<"$THREE_WAYS"
		printf 'cmd %s\nexit 0\n' "$end" >>"$s"
		pty_run "$s" "${opt[@]}" shell ||
		    { diag_file "$T/pty.log" transcript; return; }
		k=0
		while read -r c; do
			k=$((k + 1))
			o=$T/$mode.single.$k
			# shellcheck disable=SC2086
			hc -F "$T/cfg" "${opt[@]}" $c
			rc1=$RC
			cp "$T/out" "$o.out"
			cp "$T/err" "$o.err"
			echo "$c" >"$T/one.batch"
			hc -F "$T/cfg" "${opt[@]}" -f "$T/one.batch"
			expect_eq "$RC" "$rc1" "$mode '$c': batch exit status = single"
			if [ "$mode" = text ]; then
				no_uptime "$T/out" >"$T/b"
				no_uptime "$o.out" >"$T/a"
				expect_same "$T/b" "$T/a" "text '$c': batch stdout = single"
				if [ -s "$o.err" ]; then
					msg=$(sed -n '1s/^hsmctl: //p' "$o.err")
					expect_lines "$T/err" "$T/one.batch:1: $msg" \
					    "text '$c': batch stderr = single with FILE:1:"
				else
					expect_empty "$T/err" "text '$c': batch stderr"
				fi
				# The shell shows both streams on the terminal.
				cat "$o.out" "$o.err" >"$T/c"
				no_uptime "$T/c" >"$T/a"
				no_uptime "$T/$mode.shell.$k" >"$T/b"
				expect_same "$T/b" "$T/a" "text '$c': shell = single"
			else
				expect_empty "$o.err" "json '$c': single stderr"
				expect_empty "$T/err" "json '$c': batch stderr"
				json_norm "$o.out" "$T/a"
				if [ "$rc1" = 0 ]; then
					json_norm "$T/out" "$T/b"
				else
					jsonl_check "$T/out" 'len(L) == 1' \
					    'list(L[0]) == ["line", "error"]' 'L[0]["line"] == 1'
					python3 -c 'import json, sys
d = json.loads(open(sys.argv[1]).read()); del d["line"]
print(json.dumps(d))' "$T/out" >"$T/b"
				fi
				expect_same "$T/b" "$T/a" "json '$c': batch = single"
				json_norm "$T/$mode.shell.$k" "$T/b"
				expect_same "$T/b" "$T/a" "json '$c': shell = single"
			fi
		done <<<"$THREE_WAYS"
	done
}

# hsmctl __complete: =, exactly these; ~, at least these; -, nothing | the
# words after "--".
COMPLETE_CASES='~ help,node,shell | '"''"'
= node | no
= help | he
~ info | node '"''"'
= info | node in
= node | help n
~ info | help node '"''"'
= --accept-new-host-key | --ac
= text,json | -o '"''"'
= json | --output j
= n1,n2 | -n '"''"'
= n2 | --node n2
= c1,other | -C '"''"'
= o1,o2 | -C other -n '"''"'
~ --help | node info --
- | bogus '"''"'
- | node info '"''"'
~ info | -o json -n n1 -k node '"''"'
~ info | -F /nonexistent node '"''"'
- | -f '"''"

case_complete() {
	local how want words line ok c
	cat >"$T/cfg" <<'CFG'
default-cluster c1
cluster c1
    node n1 127.0.0.1:1
    node n2 127.0.0.1:2
cluster other
    node o1 127.0.0.1:3
    node o2 127.0.0.1:4
CFG
	while IFS='|' read -r line words; do
		read -r how want <<<"$line"
		eval "set -- $words"
		HSMCTL_CONFIG=$T/cfg hc __complete -- "$@"
		LAST="hsmctl __complete --$words"
		expect_rc 0 "$LAST" || continue
		expect_empty "$T/err" "stderr of $LAST"
		ok=1
		case $how in
		'=') [ "$(sort "$T/out" | tr '\n' ,)" = "$(tr , '\n' <<<"$want" | sort | tr '\n' ,)" ] || ok=0 ;;
		'~') for c in ${want//,/ }; do grep -qxF -- "$c" "$T/out" || ok=0; done ;;
		'-') [ -s "$T/out" ] && ok=0 ;;
		*) fail "COMPLETE_CASES: bad line '$line'" ;;
		esac
		if [ "$ok" = 0 ]; then
			fail "$LAST: want $how ${want:-nothing}"
			diag_file "$T/out" candidates
		fi
		# Every candidate completes the word being typed.
		c=${*: -1}
		if [ -n "$c" ] && ! awk -v p="$c" 'index($0, p) != 1 { exit 1 }' "$T/out"; then
			fail "$LAST: a candidate does not start with '$c'"
			diag_file "$T/out" candidates
		fi
	done <<<"$COMPLETE_CASES"
	HSMCTL_CONFIG=$T/cfg hc __complete --
	expect_rc 0 "__complete with no words"
	expect_has "$T/out" node "__complete with no words"
	# A broken configuration gives fewer names, never an error.
	echo cluster >"$T/bad.conf"
	HSMCTL_CONFIG=$T/bad.conf hc __complete -- -n ''
	expect_rc 0 "__complete with a bad configuration"
	expect_empty "$T/out" "candidates with a bad configuration"
	expect_empty "$T/err" "stderr with a bad configuration"
}

# A wrapper named hsmctl first on PATH ($T/bin): it runs the built binary
# and logs its arguments ($T/calls) and stderr ($T/complete.err).
mk_wrapper() {
	mkdir -p "$T/bin"
	printf '#!/bin/sh\nprintf "%%s|" "$@" >>"%s"\necho >>"%s"\nexec "%s" "$@" 2>>"%s"\n' \
	    "$T/calls" "$T/calls" "$HSMCTL" "$T/complete.err" >"$T/bin/hsmctl"
	chmod +x "$T/bin/hsmctl"
	: >"$T/calls"
	: >"$T/complete.err"
}

BASH_WANT='[hsmctl no] node
[hsmctl node ] info list
[hsmctl node in] info
[hsmctl help node ] info list
[hsmctl -o ] text json
[hsmctl -n ] n1 n2
[hsmctl -n n1 -o j] json
[hsmctl bogus ] 
complete -o default -F _hsmctl hsmctl'

case_complete_bash() {
	local bc lib=/usr/share/bash-completion/bash_completion
	mk_wrapper
	mk_cfg "$T/cfg" c1 n1=127.0.0.1:1 n2=127.0.0.1:2
	cat >"$T/comp.bash" <<'SCRIPT'
[ "$BC" = 1 ] && . "$BC_LIB"
. "$SRCDIR/completions/hsmctl.bash"
PATH=$T/bin:$PATH
comp() {
	COMP_WORDS=("$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMP_LINE="$*"
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	_hsmctl hsmctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
	echo "[$COMP_LINE] ${COMPREPLY[*]}"
}
comp hsmctl no
comp hsmctl node ''
comp hsmctl node in
comp hsmctl help node ''
comp hsmctl -o ''
comp hsmctl -n ''
comp hsmctl -n n1 -o j
comp hsmctl bogus ''
complete -p hsmctl
SCRIPT
	for bc in 1 0; do
		if [ "$bc" = 1 ] && [ ! -r "$lib" ]; then
			CASE_DIAG+="#   bash-completion is not installed ($lib)"$'\n'
			continue
		fi
		: >"$T/calls"
		LAST="bash --norc comp.bash (bash-completion loaded: $bc)"
		env BC="$bc" BC_LIB="$lib" SRCDIR="$SRCDIR" T="$T" \
		    HSMCTL_CONFIG="$T/cfg" \
		    timeout 30 bash --norc --noprofile "$T/comp.bash" \
		    >"$T/out" 2>"$T/err"
		RC=$?
		expect_rc 0 "$LAST"
		expect_empty "$T/err" "$LAST stderr"
		expect_lines "$T/out" "$BASH_WANT" "$LAST"
		expect_has "$T/calls" "__complete|--|node||" \
		    "$LAST: runs hsmctl __complete -- node ''"
	done
	check_san "$T/complete.err" "hsmctl __complete (from bash)"
}

ZSH_WANT='[hsmctl no] node
[hsmctl node ] info,list
[hsmctl help n] node
[hsmctl -o ] text,json
[hsmctl -n ] n1,n2
[hsmctl bogus ] FILES'

case_complete_zsh() {
	if ! command -v zsh >/dev/null; then
		CASE_DIAG+="#   zsh is not installed: nothing checked"$'\n'
		return
	fi
	mk_wrapper
	mk_cfg "$T/cfg" c1 n1=127.0.0.1:1 n2=127.0.0.1:2
	cat >"$T/comp.zsh" <<'SCRIPT'
# compadd [OPTIONS] -- WORDS: print the words.
compadd() {
	while (( $# )) && [[ $1 != -- ]]; do shift; done
	shift
	print -rl -- "$@"
}
_files() { print -r -- FILES }
path=($T/bin $path)
fpath=($SRCDIR/completions $fpath)
autoload -Uz _hsmctl
comp() {
	local -a words out
	local CURRENT=$#
	words=("$@")
	out=("${(@f)$(_hsmctl)}")
	print -r -- "[$*] ${(j:,:)out}"
}
comp hsmctl no
comp hsmctl node ''
comp hsmctl help n
comp hsmctl -o ''
comp hsmctl -n ''
comp hsmctl bogus ''
SCRIPT
	LAST="zsh -f comp.zsh"
	env SRCDIR="$SRCDIR" T="$T" HSMCTL_CONFIG="$T/cfg" \
	    timeout 30 zsh -f "$T/comp.zsh" \
	    >"$T/out" 2>"$T/err"
	RC=$?
	expect_rc 0 "$LAST"
	expect_empty "$T/err" "$LAST stderr"
	expect_lines "$T/out" "$ZSH_WANT" "$LAST"
	expect_has "$T/calls" "__complete|--|node||" "$LAST: runs hsmctl __complete -- node ''"
	check_san "$T/complete.err" "hsmctl __complete (from zsh)"
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
run_case "global options: bad values, -f/-k, no command: exit 2" case_later_features
run_case "configuration: failover, -n, -C, syntax errors, HSMCTL_CONFIG" case_config
run_case "terminal keys: authorize, revoke, init refuses" case_terminal_keys
run_case "raw client: garbage, oversized, truncated, unknown op" case_raw_frames
run_case "50 concurrent node info" case_concurrent
run_case "clean shutdown with idle clients (SIGTERM, SIGINT)" case_shutdown
run_case "batch: comments, quotes, continuations = the single commands" case_batch_good
run_case "batch: syntax errors: exit 2, FILE:LINE:, nothing sent" case_batch_syntax
run_case "batch: runtime failures stop; -k runs every line" case_batch_runtime
run_case "batch: all lines share one SSH connection" case_batch_one_conn
run_case "batch: -o json is JSON Lines, failures with their line" case_batch_json
run_case "shell (pty): prompt, Tab, errors, -h, Ctrl-C, exit, Ctrl-D, history" case_shell
run_case "shell (pty): node stopped and restarted: reported, reconnected" case_shell_reconnect
run_case "single command, batch and shell give the same output" case_three_ways
run_case "output that cannot be written (/dev/full): non-zero exit" case_output_error
run_case "hsmctl __complete candidates" case_complete
run_case "bash completion in a real bash" case_complete_bash
run_case "zsh completion in a real zsh" case_complete_zsh
# Cases of later features live in files of their own; the officers',
# partitions' and cluster's helpers come first, the others use them.
for f in "$SRCDIR"/tests/e2e/cases_officers.sh \
    "$SRCDIR"/tests/e2e/cases_partitions.sh \
    "$SRCDIR"/tests/e2e/cases_cluster.sh "$SRCDIR"/tests/e2e/cases_*.sh; do
	case " ${SOURCED:-} " in *" $f "*) continue ;; esac
	SOURCED="${SOURCED:-} $f"
	# shellcheck disable=SC1090
	[ -f "$f" ] && source "$f"
done

echo "# $PASSED passed, $FAILED failed in $(( ($(now_ms) - START) / 1000 )) s"
if [ "$FAILED" != 0 ]; then
	echo "# failed:$FAILED_LIST"
	exit 1
fi
exit 0
