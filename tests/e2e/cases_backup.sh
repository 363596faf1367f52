# shellcheck shell=bash
#
# End-to-end cases for backups (DESIGN §8): round trip of a node and of a
# partition, tampered files (every part of the format), a backup of
# another cluster, kill -9 while a backup is made or restored, retention
# and the daily schedule, and the roles of a cluster's nodes.
#
# Sourced by tests/e2e/run.sh after cases_officers.sh and
# cases_partitions.sh: the node is a copy of the officer template (genesis
# g1 and g2 with quorum 1, SO alice, bob and carol with quorum 2), driven
# by small batches (hsmctl -o json -f, one login a batch) as there; the
# query helper of cases_partitions.sh answers the JSON and store checks.
# The state a refusal must not change is pt_state (partitions, secrets,
# parameters, keys with their sealed material, officers, quorums) and,
# where it is cheap, the node's own digest (node info --digest).
#
# Readings these cases hold the node to: restoring a partition that a
# backup does not hold is exit 4 whatever the backup's scope (a whole-node
# backup made before the partition existed must not silently delete it);
# a restore on a bc node is refused (exit 5, as the backup feature has it,
# although DESIGN §7 lists restore among what a bc node allows); every
# failed check of a file is exit 8 with one line naming what failed, and
# leaves the node's state, its backup list and its backup directory as
# they were.

# shellcheck disable=SC2034  # RC, LAST, ...: run.sh's
if ! declare -F pt_setup >/dev/null; then
	echo "cases_backup.sh: source it from tests/e2e/run.sh, after" \
	    "cases_partitions.sh" >&2
	exit 2
fi

# ---- helpers ---------------------------------------------------------------

# BK_HC: the hsmctl the batches go to (oc: the case's configuration, whose
# default node is N1); a case may point it at another node.
BK_HC=(oc)

# bk_setup: pt_setup (N1, K, LOG, $T/cfg, the query helper); BK_HC=(oc).
bk_setup() {
	BK_HC=(oc)
	pt_setup
}

# bk_run [-k] [--no-y] WHO LINE...: the batch of pt_batch (a login as WHO,
# then the lines) through BK_HC with -o json and, unless --no-y, -y; RC,
# $T/out (JSON Lines), $T/err.
bk_run() {
	local -a o=(-o json)
	local yes=1 who
	while [ $# -gt 0 ]; do
		case $1 in
		-k) o+=(-k) ;;
		--no-y) yes=0 ;;
		*) break ;;
		esac
		shift
	done
	[ "$yes" = 1 ] && o+=(-y)
	who=$1
	pt_batch "$@"
	"${BK_HC[@]}" "${o[@]}" --passphrase-fd 3 -f "$T/pt.batch" 3<"$PT_PASSF"
	LAST="batch as $who (${o[*]}): $(tail -n +$((PT_NLOGIN + 1)) "$T/pt.batch" |
	    sed "s/$/; /" | tr -d "\n")"
}

# bk_ok WHAT WHO LINE...: the batch succeeds, one document a line, none an
# error (pt_ok through BK_HC).
bk_ok() {
	local what=$1
	shift
	bk_run "$@"
	expect_rc 0 "$what" || return 1
	pt_check "$T/out" "len(L) == $(($# - 1 + PT_NLOGIN))" \
	    'not any("error" in d for d in L)'
}

# bk_no RC CODE WHAT WHO LINE...: the last line is refused with exit RC
# and error CODE after the others succeeded; pt_state is unchanged.
bk_no() {
	local rc=$1 code=$2 what=$3 before
	shift 3
	before=$(pt_state)
	bk_run "$@"
	expect_rc "$rc" "$what"
	pt_check "$T/out" "len(L) == $(($# - 1 + PT_NLOGIN))" \
	    'not any("error" in d for d in L[:-1])' \
	    "L[-1]['error']['code'] == '$code'" \
	    "len(L[-1]['error']['message']) > 0"
	pt_unchanged "$before" "$what"
}

# bk_digest: the state digest of BK_HC's node (node info --digest).
bk_digest() {
	"${BK_HC[@]}" -o json node info --digest
	expect_rc 0 "node info --digest" || return 1
	pt_json "L[0]['digest']"
}

# bk_rows P: the lines of pt_state (stdin) of partition P (its partition,
# parameters, keys, PSO officers); bk_rows -v P: all the others.
bk_rows() {
	local v=0
	[ "$1" = -v ] && { v=1; shift; }
	awk -F'|' -v p="$1" -v v="$v" '(($2 == p || $2 == "pso:" p) ? 1 : 0) != v'
}

# bk_files: the names in N1's backup directory, one line.
bk_files() {
	(cd "$N1/backups" 2>/dev/null && shopt -s nullglob dotglob &&
	    for f in *; do printf '%s ' "$f"; done)
}

# bk_verify TYPE PUB SIG DATA: openssl verifies the signature (as
# case_pt_sign does); the output in $T/v.out.
bk_verify() {
	case $1 in
	ed25519)
		openssl pkeyutl -verify -pubin -inkey "$2" -rawin -in "$4" \
		    -sigfile "$3" ;;
	ec-p384)
		openssl dgst -sha384 -verify "$2" -signature "$3" "$4" ;;
	*)
		openssl dgst -sha256 -verify "$2" -signature "$3" "$4" ;;
	esac >"$T/v.out" 2>&1
}

# bk_bulk P N BYTES: N objects of P (aes-256 rows with random sealed blobs
# of BYTES bytes), inserted into N1's store directly.
bk_bulk() {
	pt_sql "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c
	    WHERE x < CAST(?2 AS INTEGER)) INSERT INTO objects (id, partition, type, label,
	    extractable, sensitive, session, state, created, pub, priv, size)
	    SELECT lower(hex(randomblob(16))), ?1, 'aes-256', 'bulk-' || x, 0, 1,
	    NULL, 'active', 1700000000, NULL, randomblob(CAST(?3 AS INTEGER)), 256 FROM c" \
	    "$1" "$2" "$3"
}

# bk_kill_when DIR PID tmp|read:N|write:N: wait (at most 60 s) until
# DIR/backups holds a *.tmp file (tmp), or until PID has read or written N
# more bytes (/proc/PID/io rchar, wchar), then kill -9 PID; prints what was
# seen; the status is 0 if it killed PID.
bk_kill_when() {
	python3 - "$@" <<'PYEOF'
import glob, os, signal, sys, time
d, pid, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
what, _, n = how.partition(":")
field = {"read": "rchar:", "write": "wchar:"}.get(what)

def io():
    for line in open("/proc/%d/io" % pid):
        if line.startswith(field):
            return int(line.split()[1])
    return 0

base = io() if field else 0
end = time.time() + 60
while time.time() < end:
    try:
        os.kill(pid, 0)
    except OSError:
        print("exited before the kill")
        sys.exit(1)
    if field is None:
        t = glob.glob(os.path.join(d, "backups", "*.tmp"))
        if t:
            os.kill(pid, signal.SIGKILL)
            print("killed with %s there" % os.path.basename(t[0]))
            sys.exit(0)
    else:
        got = io() - base
        if got >= int(n):
            os.kill(pid, signal.SIGKILL)
            print("killed after %d bytes %s" % (got, "read" if what == "read" else "written"))
            sys.exit(0)
    time.sleep(0.001)
print("timeout")
sys.exit(1)
PYEOF
}

# bk_bg WHO LINE...: that batch (bk_run's) in the background; BK_BG is its
# pid, its output in $T/bg.out and $T/bg.err.
bk_bg() {
	pt_batch "$@"
	"$HSMCTL" -F "$T/cfg" -o json -y --passphrase-fd 3 -f "$T/pt.batch" \
	    3<"$PT_PASSF" </dev/null >"$T/bg.out" 2>"$T/bg.err" &
	BK_BG=$!
	BG_PIDS+=("$BK_BG")
}

# bk_reaped DIR: the node DIR was killed: reap it, forget it.
bk_reaped() {
	wait "${NODE_PID[$1]}" 2>/dev/null
	check_san "${NODE_LOG[$1]}" "hsmd -d $(basename "$1") (killed)"
	unset "NODE_PID[$1]"
}

# ---- 1. round trip ---------------------------------------------------------

case_bk_roundtrip() {
	local types="rsa-2048 rsa-3072 rsa-4096 ec-p256 ec-p384 ed25519"
	local t i id bid pbid d0 st0 st1 st2 st3 stp size p2keys
	local -a ids lines
	bk_setup || return
	bk_ok "SO: partitions p1 (PSO pso1) and p2" so \
	    "partition create p1 partition-admin=on" "partition create p2" \
	    "officer add pso pso1 $K/pso1.key.pub --partition p1" || return
	pt_secret p1 && pt_secret p2 || return
	lines=()
	for t in $types aes-256; do
		lines+=("key generate p1 --type $t --label L-$t")
	done
	bk_ok "the technical user of p1: a key of every type" user:p1 \
	    "${lines[@]}" || return
	mapfile -t ids < <(pt_json '[d["id"] for d in L[1:]]')
	pt_check "$T/out" "[d['type'] for d in L[1:]] == '$types aes-256'.split()"
	[ "${#ids[@]}" = 7 ] || { fail "7 keys made, ${#ids[@]} ids"; return; }
	pt_keys user:p2 p2 2 ec-p256 || return
	p2keys=$(printf '%s\n' "${KEYS[@]}" | sort | tr '\n' ' ')
	lines=()
	for id in "${ids[@]:0:6}"; do
		lines+=("key show p1 $id")
	done
	bk_ok "key show (public keys before the backup)" user:p1 "${lines[@]}" ||
	    return
	i=1
	for t in $types; do
		pt_json "L[$i]['public_key']" >"$T/$t.pub"
		i=$((i + 1))
	done

	# The backup: what create and list say, the file.
	st0=$(pt_state)
	bk_ok "backup create, list" genesis "node info --digest" "backup create" \
	    "backup list" || return
	d0=$(pt_json "L[1]['digest']")
	bid=$(pt_json "L[2]['id']")
	expect_eq "$(pt_sql "SELECT count(*) FROM objects")" 9 "objects in the store"
	pt_check "$T/out" "re.fullmatch('[0-9a-f]{64}', L[1]['digest'])" \
	    "re.fullmatch('[0-9a-f]{32}', L[2]['id'])" \
	    "sorted(L[2]) == ['id', 'objects', 'seq', 'size']" \
	    "L[2]['objects'] == 9 and L[2]['size'] > 9 * 100" \
	    "L[2]['seq'] == L[1]['last_seq'] and L[2]['seq'] > 0" \
	    "len(L[3]['backups']) == 1" \
	    "{k: L[3]['backups'][0].get(k) for k in ('id', 'size', 'objects', 'seq', 'verified', 'scope', 'node', 'origin')} == {'id': L[2]['id'], 'size': L[2]['size'], 'objects': 9, 'seq': L[2]['seq'], 'verified': 'yes', 'scope': 'node', 'node': 'alpha', 'origin': 'created'}" \
	    "abs(L[3]['backups'][0]['created'] - __import__('time').time()) < 60"
	size=$(pt_json "L[2]['size']")
	expect_eq "$(bk_files)" "$bid.hbk " "the backup directory"
	expect_eq "$(stat -c '%s %a' "$N1/backups/$bid.hbk" 2>&1)" "$size 600" \
	    "size and mode of the backup file"
	expect_eq "$(head -c 8 "$N1/backups/$bid.hbk")" HSMCTLBK "the file's magic"
	# No key material in clear: the sealed blobs are not in the file.
	python3 - "$N1/store.db" "$N1/backups/$bid.hbk" <<'PYEOF' ||
import sqlite3, sys
data = open(sys.argv[2], "rb").read()
for (p,) in sqlite3.connect(sys.argv[1]).execute("SELECT priv FROM objects"):
    if p[12:44] in data:
        sys.exit("a sealed key blob is in the backup file as it is")
PYEOF
	    fail "the backup file holds a key blob of the store in clear"
	# The text table.
	oc --as genesis --officer "$K/g1.key" --passphrase-fd 3 backup list \
	    3<"$(ofc_pass g1)"
	expect_rc 0 "backup list (text)"
	expect_eq "$(head -n 1 "$T/out" | tr -s ' ')" \
	    "ID CREATED NODE SCOPE SEQ SIZE OBJECTS VERIFIED" "backup list header"
	expect_eq "$(sed -n 2p "$T/out" | awk '{print $1, $4, $5, $6, $7, $8, $9}')" \
	    "$bid alpha node $(pt_sql "SELECT seq FROM backups") $size 9 yes" \
	    "backup list row"
	expect_eq "$(wc -l <"$T/out")" 2 "backup list: one row"

	# Change and delete things: a parameter, a key, a partition with its
	# keys, a new partition.
	bk_ok "SO: set a parameter of p1, create p3, delete p2 and its keys" so \
	    "partition set p1 key-invalidation=off" "partition create p3" \
	    "partition delete p2 --force" || return
	bk_ok "delete p1's ec-p256 key" user:p1 "key delete p1 ${ids[3]}" || return
	pt_check "$T/out" "L[1]['result'] == 'destroyed'"
	st1=$(pt_state)
	[ "$st1" != "$st0" ] || fail "the changes did not change the state"
	[ "$(bk_digest)" != "$d0" ] || fail "the changes did not change the digest"

	# Going back without -y: refused in a batch and by a single command
	# (no terminal), also when the answer is no; nothing changes.
	bk_run --no-y genesis "backup restore $bid"
	expect_rc 2 "restore of an older backup without -y in a batch"
	pt_check "$T/out" "len(L) == 2" "'error' not in L[0]" \
	    "L[1]['error']['code'] in ('usage', 'bad_value')"
	pt_unchanged "$st1" "restore without -y in a batch"
	oc --as genesis --officer "$K/g1.key" --passphrase-fd 3 \
	    backup restore "$bid" 3<"$(ofc_pass g1)"
	expect_rc 2 "restore of an older backup without -y (single command)"
	expect_empty "$T/out" "restore without -y: stdout"
	oc --as genesis --officer "$K/g1.key" --passphrase-fd 3 \
	    backup restore "$bid" 3<"$(ofc_pass g1 :n)"
	expect_rc 2 "restore of an older backup answered 'n'"
	expect_has "$T/err" "not confirmed" "answered 'n': the message"
	pt_unchanged "$st1" "restore without -y (single command)"

	# With -y: the state of the backup, digest and all.
	bk_ok "backup restore -y" genesis "backup restore $bid" \
	    "node info --digest" "backup list" "audit verify" || return
	pt_check "$T/out" "L[1]['id'] == '$bid' and L[1]['objects'] == 9" \
	    "L[2]['digest'] == '$d0'" \
	    "[(b['id'], b['verified']) for b in L[3]['backups']] == [('$bid', 'yes')]"
	expect_eq "$(pt_sql "SELECT role, officers, op, result FROM audit WHERE op = 'backup.restore' AND result = 'ok'")" \
	    "genesis|g1|backup.restore|ok" "the restore in the audit log"
	pt_unchanged "$st0" "after the restore"
	expect_eq "$(bk_files)" "$bid.hbk " "the backup directory after the restore"

	# The restored keys: the same public keys, and they sign (the deleted
	# ec-p256 one too); p2's keys are back.
	lines=()
	for id in "${ids[@]:0:6}"; do
		lines+=("key show p1 $id")
	done
	i=0
	for t in $types; do
		rm -f "$T/$t.sig"
		lines+=("key sign p1 ${ids[i]} --in $T/data --out $T/$t.sig")
		i=$((i + 1))
	done
	bk_ok "restored keys: key show, key sign" user:p1 "${lines[@]}" || return
	i=1
	for t in $types; do
		pt_json "L[$i]['public_key']" >"$T/$t.after.pub"
		cmp -s "$T/$t.pub" "$T/$t.after.pub" ||
		    fail "$t: key show's public key changed by the restore"
		i=$((i + 1))
	done
	printf 'other data\n' >"$T/other"
	for t in $types; do
		[ -s "$T/$t.sig" ] || { fail "$t: no signature written"; continue; }
		bk_verify "$t" "$T/$t.pub" "$T/$t.sig" "$T/data" ||
		    { fail "$t: openssl does not verify the restored key's signature"; diag_file "$T/v.out"; }
		bk_verify "$t" "$T/$t.pub" "$T/$t.sig" "$T/other" &&
		    fail "$t: the signature also verifies over other data"
	done
	# A line that reads what the line before it wrote (--out, then --in)
	# reads it after it was written, as line by line: the batch does not
	# build both requests at once.
	printf 'stale\n' >"$T/chain1"
	rm -f "$T/chain2"
	bk_ok "key sign of a file the line before signed into" user:p1 \
	    "key sign p1 ${ids[5]} --in $T/data --out $T/chain1" \
	    "key sign p1 ${ids[5]} --in $T/chain1 --out $T/chain2" || return
	bk_verify ed25519 "$T/ed25519.pub" "$T/chain1" "$T/data" ||
	    fail "chain: the first signature does not verify"
	bk_verify ed25519 "$T/ed25519.pub" "$T/chain2" "$T/chain1" ||
	    fail "chain: the second line signed the file before the first wrote it"
	# The same across two groups: line 3 reads what line 1 wrote, so it
	# is not sent ahead while lines 1-2 are being written out.
	printf 'stale\n' >"$T/chain1"
	rm -f "$T/chain2"
	bk_ok "key sign across groups of a file an earlier line signed into" \
	    user:p1 "key sign p1 ${ids[5]} --in $T/data --out $T/chain1" \
	    "key sign p1 ${ids[5]} --in $T/data --out $T/chain3" \
	    "key sign p1 ${ids[5]} --in $T/chain1 --out $T/chain2" \
	    "key sign p1 ${ids[5]} --in $T/data --out $T/chain3" || return
	bk_verify ed25519 "$T/ed25519.pub" "$T/chain2" "$T/chain1" ||
	    fail "chain: line 3 signed the file before line 1 wrote it"
	# The standard output is a file a later line may read (hc sends it to
	# $T/out): line 2 signs what lines 0-1 printed, as line by line.
	bk_ok "key sign of the batch's own output so far" user:p1 \
	    "key show p1 ${ids[5]}" \
	    "key sign p1 ${ids[5]} --in $T/out --out $T/o.sig" || return
	head -n 2 "$T/out" >"$T/o.signed"
	bk_verify ed25519 "$T/ed25519.pub" "$T/o.sig" "$T/o.signed" ||
	    fail "stdout: line 2 did not sign the output of the lines before it"
	# --in a FIFO is read once (a grouped line's handler runs twice, and
	# would wait for a second writer): that line runs on its own.
	printf 'payload\n' >"$T/payload"
	rm -f "$T/pay.sig" "$T/pay2.sig" "$T/fifo"
	mkfifo "$T/fifo" || return
	cat "$T/payload" >"$T/fifo" &
	BG_PIDS+=($!)
	bk_ok "key sign --in a FIFO, then another key sign" \
	    user:p1 "key sign p1 ${ids[5]} --in $T/fifo --out $T/pay.sig" \
	    "key sign p1 ${ids[5]} --in $T/data --out $T/pay2.sig" || return
	bk_verify ed25519 "$T/ed25519.pub" "$T/pay.sig" "$T/payload" ||
	    fail "--in FIFO: the signature is not of what the FIFO held"
	# A signature that cannot be written (--out is a directory) stops the
	# batch before the key delete after it: that line must not have run.
	mkdir -p "$T/outdir"
	bk_run user:p1 "key sign p1 ${ids[5]} --in $T/data --out $T/outdir" \
	    "key delete p1 ${ids[0]}"
	expect_rc 1 "key sign into a directory, then key delete"
	pt_check "$T/out" 'len(L) == 2' 'L[1]["line"] == 2' \
	    '"directory" in L[1]["error"]["message"]'
	expect_eq "$(pt_sql "SELECT state FROM objects WHERE id = '${ids[0]}'")" \
	    active "the key delete after the failed line did not run"
	bk_ok "p2 and its keys are back" user:p2 "key list p2" || return
	expect_eq "$(pt_json "' '.join(sorted(k['id'] for k in L[1]['keys'])) + ' '")" \
	    "$p2keys" "p2's keys after the restore"

	# A partition backup restores that partition only.
	bk_ok "backup create --partition p1" genesis "backup create --partition p1" \
	    "backup list" || return
	pbid=$(pt_json "L[1]['id']")
	pt_check "$T/out" "L[1]['objects'] == 7" \
	    "[(b['id'], b['scope'], b['objects']) for b in L[2]['backups']] == [('$bid', 'node', 9), ('$pbid', 'p1', 7)]"
	stp=$(pt_state)
	bk_ok "SO: change p1 and p2" so "partition set p1 ska=on" \
	    "partition set p2 ska=on" || return
	bk_ok "p1: delete a key" user:p1 "key delete p1 ${ids[0]}" || return
	bk_ok "p2: a new key" user:p2 "key generate p2 --type ec-p256 --label later" ||
	    return
	st2=$(pt_state)
	bk_ok "restore the partition backup --partition p1" genesis \
	    "backup restore $pbid --partition p1" || return
	pt_check "$T/out" "L[1]['objects'] == 7"
	st3=$(pt_state)
	expect_eq "$(bk_rows p1 <<<"$st3")" "$(bk_rows p1 <<<"$stp")" \
	    "p1 after its restore"
	expect_eq "$(bk_rows -v p1 <<<"$st3")" "$(bk_rows -v p1 <<<"$st2")" \
	    "everything but p1 after p1's restore (p2's later change stays)"
	# Without --partition a partition backup restores its partitions.
	bk_ok "p1: delete a key again" user:p1 "key delete p1 ${ids[1]}" || return
	bk_ok "restore the partition backup (no --partition)" genesis \
	    "backup restore $pbid" || return
	st3=$(pt_state)
	expect_eq "$(bk_rows p1 <<<"$st3")" "$(bk_rows p1 <<<"$stp")" \
	    "p1 after the restore of its backup"
	expect_eq "$(bk_rows -v p1 <<<"$st3")" "$(bk_rows -v p1 <<<"$st2")" \
	    "everything but p1 after the restore of p1's backup"
	# Partitions a backup does not hold: exit 4, nothing changed.
	bk_no 4 not_found "restore p2 from p1's backup" genesis \
	    "backup restore $pbid --partition p2"
	bk_no 4 not_found "restore p1 and p2 from p1's backup" genesis \
	    "backup restore $pbid --partition p1 --partition p2"
	bk_ok "SO: create p3" so "partition create p3" || return
	bk_no 4 not_found "restore p3 (made after it) from the node's backup" \
	    genesis "backup restore $bid --partition p3"
	bk_no 4 not_found "restore a partition that exists nowhere" genesis \
	    "backup restore $bid --partition nosuch"
	bk_no 4 not_found "restore a backup that does not exist" genesis \
	    "backup restore 0123456789abcdef0123456789abcdef"
	# Backups of partitions that do not exist, or named twice: refused,
	# nothing left in the directory.
	bk_no 4 not_found "backup create --partition nosuch" genesis \
	    "backup create --partition nosuch"
	bk_no 2 bad_value "backup create --partition p1 --partition p1" genesis \
	    "backup create --partition p1 --partition p1"
	expect_eq "$(bk_files)" "$(printf '%s.hbk\n' "$bid" "$pbid" | sort | tr '\n' ' ')" \
	    "the backup directory at the end"
}

# ---- 2. tampered files -----------------------------------------------------

# The variants of a backup file (argv[1]) into directory argv[2], one file
# each, their names printed: every part of the format (lib/backup.c)
# flipped, records removed, duplicated, swapped, the file cut or extended.
BK_MUTATE_PY='
import os, sys
data = open(sys.argv[1], "rb").read()
out = sys.argv[2]
assert data[:8] == b"HSMCTLBK", "no magic"
hlen = int.from_bytes(data[8:12], "big")
H = 12                                  # the header starts here

def end_of(b, i):                       # the end of the CBOR item at i
    ib = b[i]; mt, ai = ib >> 5, ib & 31; i += 1
    if ai < 24:
        v = ai
    elif ai < 28:
        n = 1 << (ai - 24); v = int.from_bytes(b[i:i + n], "big"); i += n
    else:
        raise ValueError("indefinite item in the header")
    if mt in (0, 1, 7):
        return i
    if mt in (2, 3):
        return i + v
    for _ in range(v * (2 if mt == 5 else 1)):
        i = end_of(b, i)
    return i

hdr = data[H:H + hlen]
assert hdr[0] == 0xab, "the header is not a map of 11"
fields, i = {}, 1
for _ in range(11):
    k = end_of(hdr, i); name = hdr[i + 1:k].decode(); e = end_of(hdr, k)
    fields[name] = (k, e)               # the value: hdr[k:e]
    i = e
assert i == hlen, "bytes after the header map"
assert sorted(fields) == sorted(["format", "id", "cluster", "cluster_id",
    "node", "scope", "created", "seq", "epoch", "chunk_size", "salt"]), fields
recs, off = [], H + hlen                # (offset, length with its prefix, type)
while off < len(data):
    n = int.from_bytes(data[off:off + 4], "big")
    recs.append((off, 4 + n, data[off + 4]))
    off += 4 + n
assert off == len(data), "records do not end with the file"
sig = recs[-1]
assert sig[2] == 2 and sig[1] == 69, "the last record is not the signature"
chunks = recs[:-1]
assert all(r[2] == 1 for r in chunks), "a record before the signature is not a chunk"
for n, r in enumerate(chunks):
    assert int.from_bytes(data[r[0] + 5:r[0] + 13], "big") == n, "chunk index"
endm = chunks[-1]
assert endm[1] == 4 + 1 + 8 + 16, "the end marker is not empty"
dc = chunks[:-1]                        # the data chunks
assert len(dc) >= 5, "only %d data chunks" % len(dc)
E, M = len(dc), len(dc) // 2            # the end marker, a middle chunk
lines = []

# Each variant with what its one-line message must say (a regex), checked
# without the backup key (offline) and with it (on the node).
SIG = "signature does not verify"
TRUNC = "truncated|end marker is missing|signature missing"

def auth(n):
    return "chunk %d fails authentication" % n

def where(a, b):
    return "chunk %d found where chunk %d belongs" % (a, b)

def put(name, b, offline, node=None):
    open(os.path.join(out, name), "wb").write(bytes(b))
    lines.append("%s\t%s\t%s" % (name, offline, node or offline))

def flip(name, at, offline, node=None):
    b = bytearray(data); b[at] ^= 0x01; put(name, b, offline, node)

def rec(r):
    return data[r[0]:r[0] + r[1]]

flip("magic", 0, "not a backup file")
flip("header-length", 11, "header")
for name in ("format", "id", "cluster", "cluster_id", "node", "scope",
             "created", "seq", "epoch", "chunk_size", "salt"):
    at = H + fields[name][1] - 1        # the last byte of its value
    if name == "format":
        flip("header-" + name, at, "format 0 is not 1")
    elif name == "scope":
        flip("header-" + name, at, "header")
    else:
        flip("header-" + name, at, SIG, auth(0))
flip("first-chunk-ciphertext", dc[0][0] + 13 + 5, SIG, auth(0))
flip("middle-chunk-ciphertext", dc[M][0] + 13 + dc[M][1] // 2, SIG, auth(M))
flip("last-chunk-ciphertext", dc[-1][0] + 13 + 1, SIG, auth(E - 1))
flip("chunk-index", dc[1][0] + 12, where(0, 1))
flip("chunk-length", dc[1][0] + 3, "not a chunk|length|" + TRUNC,
     auth(1) + "|not a chunk|length|" + TRUNC)
flip("chunk-type", dc[1][0] + 4, "record 1 is not a chunk")
flip("chunk-tag", dc[1][0] + dc[1][1] - 1, SIG, auth(1))
flip("end-marker-tag", endm[0] + endm[1] - 3, SIG, auth(E))
flip("end-marker-index", endm[0] + 12, where(E - 1, E))
flip("signature", sig[0] + 5 + 10, SIG)
put("chunk-removed", data[:dc[1][0]] + data[dc[2][0]:], where(2, 1))
put("chunk-duplicated", data[:dc[2][0]] + rec(dc[1]) + data[dc[2][0]:],
    where(1, 2))
put("chunks-swapped",
    data[:dc[1][0]] + rec(dc[2]) + rec(dc[1]) + data[dc[3][0]:], where(2, 1))
put("end-marker-removed", data[:endm[0]] + data[sig[0]:],
    "record %d is not a chunk" % E)
put("signature-length", data[:sig[0]] + rec(dc[0])[:4] + data[sig[0] + 4:],
    "signature missing or malformed")
put("truncated-empty", b"", "not a backup file")
put("truncated-in-magic", data[:5], "not a backup file")
put("truncated-in-header", data[:H + hlen // 2], "truncated in its header")
put("truncated-after-header", data[:H + hlen], TRUNC)
put("truncated-in-chunk", data[:dc[M][0] + dc[M][1] // 2],
    "truncated in chunk %d" % M)
put("truncated-before-end-marker", data[:endm[0]], TRUNC)
put("truncated-before-signature", data[:sig[0]], "signature missing")
put("truncated-one-byte-short", data[:-1], "signature missing")
put("appended-byte", data + b"\0", "data after the backup.s signature")
put("appended-signature", data + rec(sig), "data after the backup.s signature")
print("\n".join(lines))
'

case_bk_tamper() {
	local bid d0 st0 stb key v nv ls0 i nc good=$T/good.hbk
	local -a vars lines msgs
	bk_setup || return
	bk_ok "SO: partition big" so "partition create big" || return
	# Small chunks, 400 kB of keys: a backup of some 8 chunks.
	pt_sql "INSERT OR REPLACE INTO meta (key, value) VALUES ('backup_chunk', '65536')"
	bk_bulk big 20 20000
	bk_ok "backup create" genesis "backup create" "node info --digest" || return
	bid=$(pt_json "L[1]['id']")
	d0=$(pt_json "L[2]['digest']")
	key=$(pt_json "L[2]['cluster_key']")
	pt_check "$T/out" "L[1]['objects'] == 20" "L[1]['size'] > 400000"
	stb=$(pt_state)
	bk_ok "backup download, verify --file, show" genesis \
	    "backup download $bid --out $good" "backup verify --file $good" \
	    "backup show $bid" || return
	pt_check "$T/out" "L[1]['id'] == '$bid' and L[1]['size'] == L[3]['size']" \
	    "L[2]['id'] == '$bid' and L[2]['chunks'] >= 7" \
	    "L[3]['verified'] == 'yes' and L[3]['scope'] == 'node'"
	nc=$(pt_json "L[2]['chunks']")
	cmp -s "$good" "$N1/backups/$bid.hbk" || fail "the download differs from the node's file"
	[ ! -e "$good.part" ] || fail "the download left $good.part"
	# Offline, with the cluster key: the good file passes.
	oc backup verify --file "$good" --cluster-key "$key"
	expect_rc 0 "backup verify --file --cluster-key (good file)"
	# A later change, so that restoring is going back.
	bk_ok "SO: partition later" so "partition create later" || return
	st0=$(pt_state)

	mkdir -p "$T/v"
	if ! python3 -c "$BK_MUTATE_PY" "$good" "$T/v" >"$T/names" 2>"$T/mutate.err"; then
		fail "the backup file is not as lib/backup.c describes it"
		diag_file "$T/mutate.err"
		return
	fi
	declare -A offre=() nodere=()
	vars=()
	while IFS=$'\t' read -r v a b; do
		vars+=("$v")
		offre[$v]=$a
		nodere[$v]=$b
	done <"$T/names"
	nv=${#vars[@]}
	[ "$nv" -ge 30 ] || { fail "only $nv variants"; return; }
	CASE_DIAG+="#   $nv variants of a file of $nc chunks"$'\n'

	# verify --file offline: exit 8, one line saying what failed.
	for v in "${vars[@]}"; do
		oc backup verify --file "$T/v/$v" --cluster-key "$key"
		expect_rc 8 "backup verify --file $v --cluster-key" || continue
		expect_empty "$T/out" "verify --file $v: stdout"
		if [ "$(wc -l <"$T/err")" != 1 ] ||
		    ! grep -qE "^hsmctl: .*(${offre[$v]})" "$T/err"; then
			fail "verify --file $v: not one line saying /${offre[$v]}/"
			diag_file "$T/err"
		fi
	done
	# verify --file with the node's key and upload, in one batch: each
	# line exit 8 (integrity) saying what failed; nothing listed, nothing
	# left on the node.
	ls0=$(bk_files)
	lines=()
	for v in "${vars[@]}"; do
		lines+=("backup verify --file $T/v/$v" "backup upload $T/v/$v")
	done
	bk_run -k genesis "backup list" "${lines[@]}" "backup list"
	expect_rc 8 "verify --file and upload of $nv variants"
	pt_check "$T/out" "len(L) == $((2 * nv + 3))" \
	    "[i for i in range(2, $((2 * nv + 2))) if L[i].get('error', {}).get('code') != 'integrity'] == []" \
	    "L[1] == L[-1]" "[b['id'] for b in L[-1]['backups']] == ['$bid']"
	mapfile -t msgs < <(pt_json "[d.get('error', {}).get('message', '-') for d in L[2:-1]]")
	i=0
	for v in "${vars[@]}"; do
		[[ ${msgs[i]} =~ ${offre[$v]} ]] ||
		    fail "verify --file $v (the node's key): '${msgs[i]}' does not say /${offre[$v]}/"
		[[ ${msgs[i + 1]} =~ ${offre[$v]}|${nodere[$v]} ]] ||
		    fail "upload $v: '${msgs[i + 1]}' does not say /${offre[$v]}|${nodere[$v]}/"
		i=$((i + 2))
	done
	expect_eq "$(bk_files)" "$ls0" "the backup directory after the uploads"
	pt_unchanged "$st0" "the uploads"
	# A good file the node holds already.
	bk_no 5 conflict "upload of a backup the node holds" genesis \
	    "backup upload $good"
	expect_eq "$(bk_files)" "$ls0" "the backup directory after the upload"

	# Each variant in place of the node's file: backup verify ID and
	# backup restore ID -y exit 8, the state unchanged.
	for v in "${vars[@]}"; do
		cp "$T/v/$v" "$N1/backups/$bid.hbk"
		bk_run -k genesis "backup verify $bid" "backup restore $bid"
		expect_rc 8 "$v in place: verify and restore"
		pt_check "$T/out" "len(L) == 3" "'error' not in L[0]" \
		    "L[1]['error']['code'] == 'integrity'" \
		    "L[2]['error']['code'] == 'integrity'" \
		    "all(re.search('${nodere[$v]}', d['error']['message']) for d in L[1:])" ||
		    CASE_DIAG+="#     (variant $v: want /${nodere[$v]}/)"$'\n'
		pt_unchanged "$st0" "$v in place: restore"
	done
	cp "$good" "$N1/backups/$bid.hbk"
	# The good file again: verify records it, restore goes back.
	bk_ok "the good file again: list, verify, restore" genesis "backup list" \
	    "backup verify $bid" "backup restore $bid" "node info --digest" \
	    "backup list" || return
	pt_check "$T/out" "L[1]['backups'][0]['verified'] == 'FAILED'" \
	    "L[2]['verified'] == 'yes'" "L[4]['digest'] == '$d0'" \
	    "L[5]['backups'][0]['verified'] == 'yes'"
	pt_unchanged "$stb" "after the restore of the good file"
	# download never overwrites; a pruned backup uploaded again is listed
	# and restores.
	bk_no 5 conflict "backup download over an existing file" genesis \
	    "backup download $bid --out $good"
	oc backup verify --file "$good" --cluster-key "$key"
	expect_rc 0 "the file after the refused download"
	bk_ok "SO: partition later" so "partition create later" || return
	bk_ok "prune it, upload the good file, restore it" genesis \
	    "backup prune --keep-days 0" "backup list" "backup upload $good" \
	    "backup list" "backup restore $bid" "node info --digest" || return
	pt_check "$T/out" "L[1]['pruned'] == ['$bid'] and L[2] == {'backups': []}" \
	    "L[3]['id'] == '$bid' and L[3]['verified'] == 'yes'" \
	    "[(b['id'], b['origin'], b['verified']) for b in L[4]['backups']] == [('$bid', 'uploaded', 'yes')]" \
	    "L[6]['digest'] == '$d0'"
	cmp -s "$good" "$N1/backups/$bid.hbk" || fail "the uploaded file differs from the good one"
	expect_eq "$(bk_files)" "$bid.hbk " "the backup directory after the upload"
}

# ---- 3. a backup of another cluster ----------------------------------------

case_bk_cluster() {
	local b=$T/b port bid da db0 ia
	bk_setup || return
	# B: another cluster of the same name (c1), node name and genesis.
	node_init "$b" c1 alpha --genesis "g1=$K/g1.key.pub" --genesis-quorum 1 ||
	    return
	port=$(free_port)
	node_start "$b" "127.0.0.1:$port" || return
	hc -n "127.0.0.1:$port" --accept-new-host-key -o json node info --digest
	expect_rc 0 "node info of B" || return
	db0=$(pt_json "L[0]['digest']")
	ia=$(pt_json "L[0]['cluster_id'] + ' ' + L[0]['cluster_key']")
	bk_ok "A: backup create" genesis "backup create" "node info" || return
	bid=$(pt_json "L[1]['id']")
	pt_check "$T/out" "L[2]['cluster'] == 'c1'" \
	    "L[2]['cluster_id'] + ' ' + L[2]['cluster_key'] != '$ia'" \
	    "L[2]['cluster_id'] != '${ia% *}' and L[2]['cluster_key'] != '${ia#* }'"
	bk_ok "A: download it" genesis "backup download $bid --out $T/a.hbk" || return

	# Uploaded to B: refused (its signature is not B's cluster's).
	BK_HC=(hc -n "127.0.0.1:$port")
	bk_run -k genesis "backup verify --file $T/a.hbk" "backup upload $T/a.hbk" \
	    "backup list" "node info --digest"
	expect_rc 8 "A's backup: verify --file and upload on B"
	pt_check "$T/out" "len(L) == 5" \
	    "L[1]['error']['code'] == 'integrity' and L[2]['error']['code'] == 'integrity'" \
	    "re.search('signature does not verify', L[1]['error']['message'])" \
	    "re.search('authentication|signature|not of this', L[2]['error']['message'])" \
	    "L[3] == {'backups': []}" "L[4]['digest'] == '$db0'"
	[ -z "$(ls -A "$b/backups" 2>/dev/null)" ] ||
	    fail "the refused upload left files in B's backup directory: $(ls -A "$b/backups")"

	# Put in B's directory by hand: listed after a restart, never
	# verified nor restored.
	cp "$T/a.hbk" "$b/backups/$bid.hbk"
	node_stop "$b"
	node_start "$b" "127.0.0.1:$port" || return
	bk_run -k genesis "backup list" "backup verify $bid" "backup restore $bid" \
	    "backup list" "node info --digest"
	expect_rc 8 "A's backup in B's directory: verify and restore"
	pt_check "$T/out" "len(L) == 6" \
	    "[(x['id'], x['verified']) for x in L[1]['backups']] == [('$bid', 'not yet')]" \
	    "L[2]['error']['code'] == 'integrity' and L[3]['error']['code'] == 'integrity'" \
	    "all(re.search('chunk 0 fails authentication|not of this', d['error']['message']) for d in L[2:4])" \
	    "[(x['id'], x['verified']) for x in L[4]['backups']] == [('$bid', 'FAILED')]" \
	    "L[5]['digest'] == '$db0'"
	expect_eq "$(ofc_sql "$b" "SELECT count(*) FROM partitions")|$(ofc_sql "$b" \
	    "SELECT count(*) FROM officers")" "0|1" "B's partitions and officers"
	BK_HC=(oc)
}

# ---- 4. kill -9 while a backup is made or restored --------------------------

case_bk_kill() {
	local addr b1 dafter dbefore seen rc d at
	bk_setup || return
	addr=${NODE_ADDR[$N1]}
	bk_ok "SO: partition big" so "partition create big" || return
	bk_bulk big 600 50000	# 30 MB
	bk_ok "backup create (30 MB)" genesis "backup create" "node info --digest" ||
	    return
	b1=$(pt_json "L[1]['id']")
	dafter=$(pt_json "L[2]['digest']")
	pt_check "$T/out" "L[1]['objects'] == 600 and L[1]['size'] > 30000000"

	# kill -9 once the .tmp file is there.
	bk_bg genesis "backup create"
	seen=$(bk_kill_when "$N1" "${NODE_PID[$N1]}" tmp)
	rc=$?
	{ wait "$BK_BG"; RC=$?; bk_reaped "$N1"; } 2>/dev/null
	[ "$rc" = 0 ] || { fail "backup create: not killed ($seen)"; diag_file "$T/bg.err"; return; }
	CASE_DIAG+="#   backup create: $seen"$'\n'
	[ "$RC" != 0 ] || fail "the killed node's backup create exited 0"
	node_start "$N1" "$addr" || return
	expect_eq "$(pt_sql "PRAGMA integrity_check")" ok "integrity_check after the kill"
	expect_eq "$(bk_files)" "$b1.hbk " "the backup directory after the restart"
	expect_has "${NODE_LOG[$N1]}" "removing the unfinished backup file" \
	    "the node says it removed the .tmp"
	bk_ok "backup list, verify after the restart" genesis "backup list" \
	    "backup verify $b1" || return
	pt_check "$T/out" "[(b['id'], b['verified']) for b in L[1]['backups']] == [('$b1', 'yes')]" \
	    "L[2]['verified'] == 'yes'"

	# kill -9 during a restore: while it verifies the file (reading), and
	# while it writes the store.  The state is the one before or the
	# backup's, nothing in between.
	bk_ok "SO: delete the big partition" so "partition delete big --force" ||
	    return
	dbefore=$(bk_digest)
	[ "$dbefore" != "$dafter" ] || fail "the delete did not change the digest"
	for at in read:8000000 write:8000000; do
		bk_bg genesis "backup restore $b1"
		seen=$(bk_kill_when "$N1" "${NODE_PID[$N1]}" "$at")
		rc=$?
		{ wait "$BK_BG"; RC=$?; bk_reaped "$N1"; } 2>/dev/null
		[ "$rc" = 0 ] || { fail "backup restore ($at): not killed ($seen)"; diag_file "$T/bg.err"; return; }
		[ "$RC" != 0 ] || fail "the killed node's backup restore exited 0 ($at)"
		node_start "$N1" "$addr" || return
		expect_eq "$(pt_sql "PRAGMA integrity_check")" ok \
		    "integrity_check after a restore killed ($at)"
		d=$(bk_digest)
		if [ "$d" = "$dbefore" ]; then
			CASE_DIAG+="#   backup restore: $seen: the state before it"$'\n'
		elif [ "$d" = "$dafter" ]; then
			CASE_DIAG+="#   backup restore: $seen: the state after it"$'\n'
			dbefore=$dafter		# the next one starts from it
		else
			fail "after a restore killed ($seen): digest $d is neither before ($dbefore) nor after ($dafter)"
		fi
	done
	# Restored in full, it is the backup's state.
	bk_ok "backup restore after the restarts" genesis "backup restore $b1" \
	    "node info --digest" "backup list" || return
	pt_check "$T/out" "L[2]['digest'] == '$dafter'" \
	    "[(b['id'], b['verified']) for b in L[3]['backups']] == [('$b1', 'yes')]"
	expect_eq "$(pt_sql "PRAGMA integrity_check")" ok "integrity_check at the end"
	expect_eq "$(bk_files)" "$b1.hbk " "the backup directory at the end"
}

# ---- 5. retention and the daily schedule -----------------------------------

case_bk_retention() {
	local old now hm id4 n t0 a
	local -a ids
	bk_setup || return
	bk_ok "three backups" genesis "backup create" "backup create" \
	    "backup create" "backup list" || return
	mapfile -t ids < <(pt_json "[d['id'] for d in L[1:4]]")
	pt_check "$T/out" "sorted(b['id'] for b in L[4]['backups']) == sorted(d['id'] for d in L[1:4])"
	old=$(( $(date +%s) - 11 * 86400 ))
	pt_sql "UPDATE backups SET created = ?1 WHERE id IN (?2, ?3)" "$old" \
	    "${ids[0]}" "${ids[1]}"
	bk_ok "backup prune" genesis "backup prune" "backup list" || return
	pt_check "$T/out" "sorted(L[1]['pruned']) == sorted(['${ids[0]}', '${ids[1]}'])" \
	    "[b['id'] for b in L[2]['backups']] == ['${ids[2]}']"
	expect_eq "$(bk_files)" "${ids[2]}.hbk " "the backup directory after prune"
	# --keep-days 0: everything made before this second.
	while [ "$(date +%s)" -le "$(pt_sql "SELECT created FROM backups")" ]; do
		sleep 0.2
	done
	bk_ok "backup prune --keep-days 0" genesis "backup prune --keep-days 0" \
	    "backup list" || return
	pt_check "$T/out" "L[1]['pruned'] == ['${ids[2]}']" "L[2] == {'backups': []}"
	expect_eq "$(bk_files)" "" "the backup directory after prune --keep-days 0"
	for a in -1 x 36501 ''; do
		oc backup prune --keep-days "$a"
		expect_rc 2 "backup prune --keep-days '$a'"
	done

	# Bad schedules: exit 2, nothing sent, nothing changed.
	n=$(pt_logn ': connected$')
	for a in "--daily 25:00" "--daily 24:00" "--daily 7:5" "--daily 07:5" \
	    "--daily 12:60" "--daily 1200" "--daily 12:30 --off" ""; do
		# shellcheck disable=SC2086  # the options
		oc backup schedule $a
		expect_rc 2 "backup schedule $a"
		expect_empty "$T/out" "backup schedule $a: stdout"
		grep -qE '^hsmctl: ' "$T/err" || { fail "backup schedule $a: no message"; diag_file "$T/err"; }
	done
	oc node info
	expect_rc 0 "node info after the bad schedules"
	expect_eq "$(wait_count "$LOG" ': connected$' $((n + 1)))" $((n + 1)) \
	    "connections (the bad schedules sent nothing)"
	expect_eq "$(pt_sql "SELECT count(*) FROM meta WHERE key = 'backup_daily' AND value != ''")" \
	    0 "the schedule after the bad values"

	# An old backup the scheduled run prunes.
	bk_ok "one more backup" genesis "backup create" || return
	id4=$(pt_json "L[1]['id']")
	pt_sql "UPDATE backups SET created = ?1 WHERE id = ?2" "$old" "$id4"
	# The current UTC minute (not the day's last one: it may end first).
	while [ "$(date -u +%H:%M)" = 23:59 ]; do sleep 1; done
	hm=$(date -u +%H:%M)
	t0=$(date +%s)
	bk_ok "backup schedule --daily $hm" genesis "backup schedule --daily $hm" ||
	    return
	pt_check "$T/out" "L[1]['schedule'] == '$hm'" \
	    "L[1]['next_backup'] in ($t0 - $t0 % 86400 + $((10#${hm%:*} * 3600 + 10#${hm#*:} * 60)) + d for d in (0, 86400))"
	for ((a = 0; a < 100; a++)); do
		[ "$(pt_sql "SELECT count(*) FROM backups WHERE origin = 'scheduled'")" -ge 1 ] &&
		    break
		sleep 0.1
	done
	[ "$a" -lt 100 ] || { fail "no scheduled backup within 10 s"; diag_file "$LOG" "hsmd log"; }
	sleep 0.5	# the prune that follows it
	bk_ok "backup list, node info after the scheduled backup" genesis \
	    "backup list" "node info" || return
	id4=$(pt_json "L[1]['backups'][0]['id']")
	pt_check "$T/out" "len(L[1]['backups']) == 1" \
	    "[(b['origin'], b['scope'], b['node'], b['verified']) for b in L[1]['backups']] == [('scheduled', 'node', 'alpha', 'yes')]" \
	    "L[2]['backup_schedule'] == '$hm'" \
	    "L[2]['last_backup'] == L[1]['backups'][0]['created']" \
	    "L[2]['next_backup'] == $t0 - $t0 % 86400 + 86400 + $((10#${hm%:*} * 3600 + 10#${hm#*:} * 60))"
	expect_eq "$(bk_files)" "$id4.hbk " \
	    "the backup directory: the scheduled backup, the old one pruned"
	bk_ok "backup verify of the scheduled backup" genesis "backup verify $id4"
	oc node info
	expect_rc 0 "node info (text)"
	expect_kv "$T/out" "backup schedule" "$hm" "node info: backup schedule"
	expect_kv "$T/out" "next backup" \
	    "$(date -u -d "@$(( t0 - t0 % 86400 + 86400 + 10#${hm%:*} * 3600 + 10#${hm#*:} * 60 ))" '+%Y-%m-%d %H:%M:%SZ')" \
	    "node info: next backup"
	# --off: no more, although the day's time has passed and the last
	# run is forgotten.
	bk_ok "backup schedule --off" genesis "backup schedule --off" "node info" ||
	    return
	pt_check "$T/out" "L[1]['schedule'] == 'off' and L[1]['next_backup'] == 0" \
	    "L[2]['backup_schedule'] == 'off' and L[2]['next_backup'] == 0"
	n=$(pt_sql "SELECT count(*) FROM backups")
	sleep 2.5
	expect_eq "$(pt_sql "SELECT count(*) FROM backups")" "$n" \
	    "backups made after --off"
}

# ---- 6. roles: clone and bc nodes -------------------------------------------

case_bk_roles() {
	local gid
	pt_q_start
	cl_form || return
	BK_HC=(hc -F "$T/cfg" -n gamma)
	bk_ok "bc node: backup create, list" genesis "backup create" \
	    "backup list" || return
	gid=$(pt_json "L[1]['id']")
	pt_check "$T/out" "[(b['id'], b['node']) for b in L[2]['backups']] == [('$gid', 'gamma')]"
	[ -s "$N3/backups/$gid.hbk" ] || fail "the bc node's backup is not in its directory"
	bk_run genesis "backup restore $gid"
	expect_rc 5 "backup restore on the bc node"
	pt_check "$T/out" "len(L) == 2" "L[1]['error']['code'] == 'node_role'"
	BK_HC=(hc -F "$T/cfg" -n beta)
	bk_run genesis "backup create"
	expect_rc 5 "backup create on a clone"
	pt_check "$T/out" "len(L) == 2" "L[1]['error']['code'] == 'node_role'"
	bk_run genesis "backup list"
	expect_rc 5 "backup list on a clone"
	[ -z "$(ls -A "$N2/backups" 2>/dev/null)" ] || fail "the clone holds backups"
	BK_HC=(oc)
}

run_case "backup: round trip of every key type, digest, -y, partition scope" case_bk_roundtrip
run_case "backup: tampered files (every field, chunk, truncation): exit 8, nothing changed" case_bk_tamper
run_case "backup: another cluster's backup (same name and genesis) refused" case_bk_cluster
run_case "backup: kill -9 during create and restore: store intact, no half backup" case_bk_kill
run_case "backup: prune by age, --keep-days, daily schedule, --off, bad values" case_bk_retention
run_case "backup: a bc node makes backups, refuses restore; a clone refuses" case_bk_roles
