# shellcheck shell=bash
#
# End-to-end cases of issue 9: the exits of a partition (DESIGN §8):
# transfer (SO) and migrate (PSO) to a node of another cluster, export
# wrapped under the customer's key or in the clear (PSO), delete with a
# signed deletion certificate (SO); the plan's journal, exit status and
# exit resume after a node is killed at each step of the plan.
#
# Two clusters on loopback: the source is a copy of the officer template
# of cases_officers.sh (cluster c1, node alpha: genesis g1/g2, SOs alice,
# bob, carol, quorum 2), the target another `hsmd init` (cluster c2, node
# omega, genesis g1 alone) that authorises the source node's host key as
# a terminal key, as the customer's admin does.  $T/cfg names both
# clusters (c1 the default); the batches of cases_partitions.sh's
# pt_batch run against either with ex_run.  Both nodes listen on fixed
# ports (EX_PORT) so that a killed node comes back where the plan and the
# client expect it.
#
# Fault injection: a node started with HSMD_TEST_CRASH_AFTER=STEP dies by
# SIGKILL right after committing STEP (source: locked, offered, verified,
# source_deleted; target: import).  After each, the node is restarted on
# its port, the plan resumed, and every key must exist exactly once: gone
# from the source, on the target with the same digest, usable there with
# the same API secret, and signing so that the public key taken before
# the exit verifies it.

# shellcheck disable=SC2034  # RC, LAST, ...: run.sh's
if ! declare -F pt_setup >/dev/null || ! declare -F cl_so >/dev/null; then
	echo "cases_exit.sh: source it from tests/e2e/run.sh, after" \
	    "cases_officers.sh, cases_partitions.sh and cases_cluster.sh" >&2
	exit 2
fi

EX_UNWRAP=$SRCDIR/scripts/unwrap-export.sh
declare -A EX_PORT=()

# ---- helpers ---------------------------------------------------------------

# ex_start DIR [STEP]: start the node DIR on its port (EX_PORT[DIR], chosen
# the first time), with HSMD_TEST_CRASH_AFTER=STEP if a STEP is given.
ex_start() {
	local d=$1 step=${2:-}
	[ -n "${EX_PORT[$d]:-}" ] || EX_PORT[$d]=$(free_port)
	if [ -n "$step" ]; then
		HSMD_TEST_CRASH_AFTER=$step node_start "$d" "127.0.0.1:${EX_PORT[$d]}"
	else
		node_start "$d" "127.0.0.1:${EX_PORT[$d]}"
	fi
}

# ex_crashed DIR STEP WHAT: the node DIR (started with STEP) must have
# died by SIGKILL (waited for at most 10 s) and said why in its log.
ex_crashed() {
	local d=$1 pid=${NODE_PID[$1]:-} t0 rc
	[ -n "$pid" ] || { fail "$3: node $(basename "$d") was not running"; return 1; }
	t0=$(now_ms)
	while alive "$pid" && [ $(( $(now_ms) - t0 )) -lt 10000 ]; do
		sleep 0.05
	done
	if alive "$pid"; then
		fail "$3: node $(basename "$d") did not die after $2 (HSMD_TEST_CRASH_AFTER)"
		diag_file "${NODE_LOG[$d]}" "hsmd log"
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	rc=$?
	unset "NODE_PID[$d]"
	check_san "${NODE_LOG[$d]}" "hsmd -d $(basename "$d")"
	expect_eq "$rc" 137 "$3: exit status of the killed node (SIGKILL)"
	expect_has "${NODE_LOG[$d]}" "HSMD_TEST_CRASH_AFTER=$2: dying now" \
	    "$3: the node's log"
}

# ex_setup: N1 the source (copy of the officer template), TD the target
# (cluster c2, node omega; the source's host key authorised there), both
# started on fixed ports; $T/cfg names both (ex_cfg); PSO keys pso1 and
# pso2; $T/data to sign, $T/other not to.
ex_setup() {
	pt_q_start
	K=$OFC_DIR
	N1=$T/n1 TD=$T/t
	ofc_key pso1 ed25519 openssl && ofc_key pso2 ed25519 openssl || return 1
	ofc_node "$N1" nostart || return 1
	node_init "$TD" c2 omega --genesis "g1=$K/g1.key.pub" \
	    --genesis-quorum 1 || return 1
	hd authorize -d "$TD" --exit-source "$N1/ssh_host_ed25519_key.pub"
	expect_rc 0 "the target authorises the source node's host key" || return 1
	printf 'data to sign %s\n' "$(ofc_rand)" >"$T/data"
	printf 'other data\n' >"$T/other"
	ex_start "$N1" && ex_start "$TD" && ex_cfg
}

# ex_cfg: $T/cfg: cluster c1 (alpha, the default) and c2 (omega), both
# host keys known; LOG is the source's log, TADDR the target's address.
ex_cfg() {
	LOG=${NODE_LOG[$N1]}
	TADDR=127.0.0.1:${EX_PORT[$TD]}
	ofc_cfg alpha="$N1" || return 1
	printf 'cluster c2\n    node omega %s\n' "$TADDR" >>"$T/cfg"
	hc -F "$T/cfg" -C c2 --accept-new-host-key node info
	expect_rc 0 "node info of the target (its host key recorded)" || return 1
	expect_kv "$T/out" node omega "the target's node info"
}

# ex_run CLUSTER WHO LINE...: pt_batch's batch run on cluster CLUSTER
# (-y -o json); RC, $T/out (JSON Lines), $T/err.
ex_run() {
	local cl=$1 who=$2
	shift
	pt_batch "$@"
	hc -F "$T/cfg" -C "$cl" -y -o json --passphrase-fd 3 -f "$T/pt.batch" 3<"$PT_PASSF"
	LAST="batch as $who on $cl: $(tail -n +$((PT_NLOGIN + 1)) "$T/pt.batch" | sed "s/$/; /" | tr -d "\n")"
}

# ex_state: both nodes' state as pt_state shows it, with the exit plans
# and offers.
ex_state() {
	local db
	for db in "$N1/store.db" "$TD/store.db"; do
		pt_q state "$db" || fail "ex_state: $db"
		pt_q sql "$db" "SELECT partition, kind, step FROM exit_plans
		    UNION ALL SELECT partition, source_node, state FROM exit_offers
		    ORDER BY 1, 2" || fail "ex_state: plans of $db"
	done
}

# ex_ok WHAT CLUSTER WHO LINE...: exit 0, one document a line, no error.
ex_ok() {
	local what=$1
	shift
	ex_run "$@"
	expect_rc 0 "$what" || return 1
	pt_check "$T/out" "len(L) == $(($# - 2 + PT_NLOGIN))" \
	    'not any(isinstance(d.get("error"), dict) for d in L)'
}

# ex_no RC CODE WHAT CLUSTER WHO LINE...: the last line is refused with
# exit RC and error CODE (any code for "-"), everything before it done;
# neither node's state changed.
ex_no() {
	local rc=$1 code=$2 what=$3 before
	shift 3
	before=$(ex_state)
	ex_run "$@"
	expect_rc "$rc" "$what"
	pt_check "$T/out" "len(L) == $(($# - 2 + PT_NLOGIN))" \
	    'not any(isinstance(d.get("error"), dict) for d in L[:-1])' \
	    "isinstance(L[-1].get('error'), dict)" \
	    "'$code' == '-' or L[-1]['error']['code'] == '$code'"
	ex_unchanged "$before" "$what"
}

ex_unchanged() { # BEFORE WHAT
	local now
	now=$(ex_state)
	[ "$now" = "$1" ] && return 0
	fail "$2: the nodes' state changed"
	CASE_DIAG+=$(diff <(printf '%s\n' "$1") <(printf '%s\n' "$now") |
	    head -n 20 | sed 's/^/#     | /')$'\n'
	return 1
}

# ex_sql DIR SQL [PARAM...]: as pt_sql, on DIR's store.
ex_sql() {
	local d=$1 out
	shift
	out=$(pt_q sql "$d/store.db" "$@") || { fail "sqlite3 on $d: $1: $out"; return 1; }
	[ -z "$out" ] || printf '%s\n' "$out"
}

# ex_part P [PSO]: SO makes partition P (partition-admin on, PSO pso1 or
# PSO), its API secret in $T/P.secret.
ex_part() {
	ex_ok "SO: partition $1, its PSO ${2:-pso1}" c1 so \
	    "partition create $1 partition-admin=on" \
	    "officer add pso ${2:-pso1} $K/${2:-pso1}.key.pub --partition $1" &&
	    pt_secret "$1"
}

# ex_keys P TYPE...: the technical user of P makes one key of each TYPE
# (TYPE may carry options: "ec-p256 --extractable"); ids in KEYS, their
# types in KTYPES; key show's public keys in $T/pub/ID.pem (before any
# exit); ex_snap.
ex_keys() {
	local p=$1 t i=0
	local -a lines=() shows=()
	shift
	for t in "$@"; do
		i=$((i + 1))
		lines+=("key generate $p --type $t --label k$i-${t%% *}")
	done
	KEYS=() KTYPES=()
	ex_ok "user of $p: $# keys" c1 "user:$p" "${lines[@]}" || return 1
	mapfile -t KEYS < <(pt_json '[d["id"] for d in L[1:]]')
	mapfile -t KTYPES < <(pt_json '[d["type"] for d in L[1:]]')
	[ "${#KEYS[@]}" = "$#" ] || { fail "$# keys made, ${#KEYS[@]} ids"; return 1; }
	for i in "${KEYS[@]}"; do
		shows+=("key show $p $i")
	done
	ex_ok "user of $p: key show" c1 "user:$p" "${shows[@]}" || return 1
	mkdir -p "$T/pub"
	python3 - "$T/out" "$T/pub" <<'PYEOF' || fail "ex_keys: cannot keep the public keys"
import json, sys
for d in [json.loads(l) for l in open(sys.argv[1])][1:]:
    if "public_key" in d:
        open("%s/%s.pem" % (sys.argv[2], d["id"]), "w").write(d["public_key"])
PYEOF
	ex_snap "$p"
}

# ex_snap P: what the source holds of P's keys, to compare with what the
# target holds after the exit: $T/P.keys (ex_rows) and $T/P.digests
# (ex_digests).
ex_snap() {
	ex_rows "$N1" "$1" >"$T/$1.keys"
	ex_digests "$N1" "$1" >"$T/$1.digests"
	[ -s "$T/$1.digests" ] || fail "ex_snap $1: no digests"
}

# ex_digests DIR P: "id|type|SHA-256 of the key material" of each key of
# P on the node DIR: its sealed blob opened with the node's master key
# (hsmd init leaves it next to the store; see case_pt_sealed), so that
# the material itself is compared across the two clusters' master keys.
ex_digests() {
	python3 - "$1" "$2" <<'PYEOF' || fail "ex_digests $1 $2: cannot open the sealed keys"
import hashlib, os, sqlite3, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
d, part = sys.argv[1:3]
aead = AESGCM(open(os.path.join(d, "master.key"), "rb").read())
c = sqlite3.connect(os.path.join(d, "store.db"), timeout=10)
for kid, kind, blob in c.execute("SELECT id, type, priv FROM objects WHERE "
        "partition = ? AND session IS NULL ORDER BY id", (part,)):
    m = aead.decrypt(blob[:12], blob[12:], part.encode() + b"\0" + kid.encode())
    print("%s|%s|%s" % (kid, kind, hashlib.sha256(m).hexdigest()))
c.close()
PYEOF
}

# ex_verify TYPE PUB DATA SIG: openssl verifies the signature.
ex_verify() {
	case $1 in
	ed25519)
		openssl pkeyutl -verify -pubin -inkey "$2" -rawin -in "$3" \
		    -sigfile "$4" ;;
	ec-p384)
		openssl dgst -sha384 -verify "$2" -signature "$4" "$3" ;;
	*)
		openssl dgst -sha256 -verify "$2" -signature "$4" "$3" ;;
	esac >"$T/verify.out" 2>&1
}

# ex_usable CLUSTER P WHAT: the technical user of P on CLUSTER (with the
# secret of $T/P.secret) lists exactly the active keys of $T/P.keys, and each
# signing key signs $T/data so that openssl verifies it with the public
# key key show gave before the exit (and not over other data).
ex_usable() {
	local cl=$1 p=$2 what=$3 id type i
	local -a ids types lines=()
	mapfile -t ids < <(awk -F'|' '$6 == "active" {print $1}' "$T/$p.keys")
	mapfile -t types < <(awk -F'|' '$6 == "active" {print $2}' "$T/$p.keys")
	rm -f "$T"/sig.*
	for i in "${!ids[@]}"; do
		[ "${types[i]}" = aes-256 ] && continue
		lines+=("key sign $p ${ids[i]} --in $T/data --out $T/sig.${ids[i]}")
	done
	ex_ok "$what: key list and key sign as the user of $p" "$cl" "user:$p" \
	    "key list $p" "${lines[@]}" || return 1
	pt_check "$T/out" \
	    "sorted(k['id'] for k in L[1]['keys']) == sorted('${ids[*]}'.split())"
	for i in "${!ids[@]}"; do
		id=${ids[i]} type=${types[i]}
		[ "$type" = aes-256 ] && continue
		if ! ex_verify "$type" "$T/pub/$id.pem" "$T/data" "$T/sig.$id"; then
			fail "$what: the $type signature of $id does not verify with the public key taken before"
			diag_file "$T/verify.out"
		fi
		ex_verify "$type" "$T/pub/$id.pem" "$T/other" "$T/sig.$id" &&
		    fail "$what: the $type signature of $id verifies over other data too"
	done
	return 0
}

# ex_rows DIR P: P's keys on DIR's node: "id|type|label|extractable|
# sensitive|state|public key" a line.
ex_rows() {
	ex_sql "$1" "SELECT id, type, label, extractable, sensitive, state,
	    hex(pub) FROM objects WHERE partition = ?1 AND session IS NULL
	    ORDER BY id" "$2"
}

# ex_gone P WHAT: the source holds nothing of P any more: no partition,
# parameters, keys, live PSO officers or quorum.
ex_gone() {
	expect_eq "$(ex_sql "$N1" "SELECT (SELECT count(*) FROM partitions WHERE name = ?1),
	    (SELECT count(*) FROM partition_params WHERE partition = ?1),
	    (SELECT count(*) FROM objects WHERE partition = ?1),
	    (SELECT count(*) FROM officers WHERE partition = ?1 AND revoked IS NULL),
	    (SELECT count(*) FROM quorums WHERE partition = ?1)" "$1")" "0|0|0|0|0" \
	    "$2: partition, parameters, keys, PSO officers, quorums of $1 left on the source"
}

# ex_exactly_once P WHAT: every key of $T/P.keys is on the target (same
# id, type, label, flags, state, public key, and the same material), none
# on the source, and usable on the target only.
ex_exactly_once() {
	local p=$1 what=$2
	ex_gone "$p" "$what"
	expect_eq "$(ex_rows "$TD" "$p")" "$(cat "$T/$p.keys")" \
	    "$what: the keys of $p on the target (id, type, label, flags, state, public key)"
	expect_eq "$(ex_digests "$TD" "$p")" "$(cat "$T/$p.digests")" \
	    "$what: the key material of $p on the target (SHA-256 under its master key)"
	expect_eq "$(ex_sql "$TD" "SELECT '[' || exit_state || ']' FROM partitions WHERE name = ?1" "$p")" "[]" \
	    "$what: the partition is in service on the target"
	ex_usable c2 "$p" "$what (target)"
	ex_run c1 "user:$p" "key list $p"
	expect_rc 3 "$what: the user of $p on the source"
}

# ex_plan CLUSTER WHO P EXPR...: exit status P as WHO; each Python
# expression on the plan d must be true.
ex_plan() {
	local cl=$1 who=$2 p=$3 e
	local -a exprs=()
	shift 3
	for e in "$@"; do
		exprs+=("(lambda d: $e)(L[1])")
	done
	ex_ok "exit status $p as $who" "$cl" "$who" "exit status $p" || return 1
	pt_check "$T/out" "${exprs[@]}"
}

# ex_audit DIR P: the ops of P's audit entries on DIR, in order, with
# their result ("op:result" words).
ex_audit() {
	local r
	r=$(ex_sql "$1" "SELECT op || ':' || result FROM audit WHERE partition = ?1
	    AND op LIKE 'exit.%' ORDER BY seq" "$2")
	echo "${r//$'\n'/ }"
}

STEPS_PY="['planned', 'locked', 'offered', 'verified', 'source_deleted', 'done']"

# ---- 1. transfer end to end --------------------------------------------------

case_ex_transfer() {
	local before fp n0 t0
	ex_setup || return
	ex_part p || return
	ex_keys p rsa-2048 ec-p256 ec-p384 ed25519 aes-256 || return
	# One key in the bin (key-invalidation is on): it goes along, still
	# in the bin; a session key does not.
	ex_ok "user: a key to the bin, a session key" c1 user:p "key delete p ${KEYS[1]}" \
	    "key generate p --type ec-p256 --session" || return
	ex_snap p
	ex_ok "PSO: a parameter of its own" c1 pso1:p "partition set p session-objects=off" || return
	before=$(ex_sql "$N1" "SELECT name, value FROM partition_params WHERE partition = 'p' ORDER BY name")
	ex_sql "$N1" "SELECT id, hex(priv) FROM objects WHERE partition = 'p' ORDER BY id" >"$T/sealed.before"
	fp=$(cl_fp "$TD")
	n0=$(ex_sql "$TD" "SELECT count(*) FROM audit")
	t0=$(date +%s)
	# Not a terminal, no -y: nothing happens.
	cl_so exit transfer p --to "$TADDR"
	expect_rc 2 "exit transfer without -y, stdin not a terminal"
	expect_eq "$(ex_sql "$N1" "SELECT count(*) FROM exit_plans")" 0 "plans after the unconfirmed transfer"
	ex_ok "SO: exit transfer p" c1 so "exit transfer p --to $TADDR" || return
	pt_check "$T/out" "L[1]['partition'] == 'p' and L[1]['kind'] == 'transfer'" \
	    "L[1]['step'] == 'done' and L[1]['error'] == ''" \
	    "L[1]['target'] == '$TADDR' and L[1]['target_host_key'] == '$fp'" \
	    "L[1]['steps'] == $STEPS_PY" "L[1]['objects'] == 5" \
	    "$t0 <= L[1]['started'] <= L[1]['updated'] <= $t0 + 120"
	ex_plan c1 so p "d['step'] == 'done'" "d['kind'] == 'transfer'" "d['objects'] == 5"
	ex_exactly_once p "after the transfer"
	# Everything came along: parameters, the PSO, the secret; the keys
	# sealed anew under the target's master key.
	expect_eq "$(ex_sql "$TD" "SELECT name, value FROM partition_params WHERE partition = 'p' ORDER BY name")" \
	    "$before" "the parameters of p on the target"
	ex_sql "$TD" "SELECT id, hex(priv) FROM objects WHERE partition = 'p' ORDER BY id" >"$T/sealed.after"
	expect_eq "$(cut -d'|' -f1 "$T/sealed.after" | tr '\n' ' ')" "$(cut -d'|' -f1 "$T/sealed.before" | tr '\n' ' ')" \
	    "the ids of the sealed keys"
	[ -n "$(comm -12 <(sort "$T/sealed.before") <(sort "$T/sealed.after"))" ] &&
	    fail "a sealed blob on the target is the source's (not sealed anew)"
	cmp -s "$N1/master.key" "$TD/master.key" && fail "the two clusters share a master key"
	ex_ok "the PSO of p on the target" c2 pso1:p "partition show p" "key list p --invalidated" &&
	    pt_check "$T/out" "L[1]['name'] == 'p'" "[k['id'] for k in L[2]['keys']] == ['${KEYS[1]}']"
	# The transfer key the target made is gone once confirmed.
	expect_eq "$(ex_sql "$TD" "SELECT state, length(priv) FROM exit_offers WHERE partition = 'p'")" \
	    "confirmed|0" "the target's transfer key after the confirmation"
	ex_ok "the user of p makes a key on the target" c2 user:p "key generate p --type ec-p256"
	# Both audit logs: the source's start and transfer, the target's
	# import and confirmation; both chains verify.
	expect_eq "$(ex_audit "$N1" p)" "exit.start:ok exit.transfer:ok" "exit entries of the source's audit log"
	expect_eq "$(ex_sql "$N1" "SELECT role, officers FROM audit WHERE op = 'exit.transfer'")" \
	    "so|alice,bob" "who transferred p (source audit)"
	expect_eq "$(ex_audit "$TD" p)" "exit.import:ok exit.confirm:ok" "exit entries of the target's audit log"
	expect_eq "$(ex_sql "$TD" "SELECT count(*) FROM audit WHERE seq > $n0 AND op = 'exit.import' AND args LIKE '%objects=5%'")" \
	    1 "the target's import entry counts 5 objects"
	ex_ok "audit verify on the source" c1 so "audit verify" && pt_check "$T/out" "L[1]['ok'] is True"
	ex_ok "audit verify on the target" c2 genesis "audit verify" && pt_check "$T/out" "L[1]['ok'] is True"
	# Done is done: a second transfer of p finds no partition; resume
	# answers the finished plan.
	ex_no 4 not_found "transfer p again" c1 so "exit transfer p --to $TADDR"
	ex_ok "resume the finished plan" c1 so "exit resume p" && pt_check "$T/out" "L[1]['step'] == 'done'"
}

# ---- 2. migrate by the PSO, with device-so-access off -----------------------

case_ex_migrate() {
	local t0
	ex_setup || return
	ex_part m || return
	ex_keys m ec-p256 ed25519 rsa-2048 aes-256 || return
	ex_ok "PSO: device-so-access=off" c1 pso1:m "partition set m device-so-access=off" || return
	# The device SO is out: no transfer, no delete, no status.
	ex_no 3 not_authorized "SO: exit transfer with device-so-access off" c1 so \
	    "exit transfer m --to $TADDR"
	expect_has "$T/out" "device-so-access" "the refusal says why"
	ex_no 3 not_authorized "SO: exit delete with device-so-access off" c1 so "exit delete m"
	ex_no 3 not_authorized "SO: exit migrate (the PSO's)" c1 so "exit migrate m --to $TADDR"
	# The PSO migrates it, a single command in text mode.
	t0=$(date +%s)
	hc -F "$T/cfg" -y --as pso:m --officer "$K/pso1.key" --passphrase-fd 3 \
	    exit migrate m --to "$TADDR" 3<"$(ofc_pass pso1)"
	expect_rc 0 "PSO: exit migrate m (text)" || return
	expect_kv "$T/out" kind migrate "exit migrate: kind"
	expect_kv "$T/out" step "done" "exit migrate: step"
	expect_kv "$T/out" objects 4 "exit migrate: objects"
	expect_kv "$T/out" target "$TADDR" "exit migrate: target"
	expect_has "$T/out" "[done]" "exit migrate: the steps with the current one marked"
	ex_exactly_once m "after the migration"
	expect_eq "$(ex_sql "$TD" "SELECT value FROM partition_params WHERE partition = 'm' AND name = 'device-so-access'")" \
	    off "device-so-access of m on the target"
	expect_eq "$(ex_audit "$N1" m)" "exit.start:ok exit.migrate:ok" "exit entries of the source's audit log"
	expect_eq "$(ex_sql "$N1" "SELECT role, officers FROM audit WHERE op = 'exit.migrate'")" \
	    "pso|pso1" "who migrated m (source audit)"
	expect_eq "$(ex_audit "$TD" m)" "exit.import:ok exit.confirm:ok" "exit entries of the target's audit log"
	expect_eq "$(ex_sql "$N1" "SELECT step, kind, objects, started >= $t0 FROM exit_plans WHERE partition = 'm'")" \
	    "done|migrate|4|1" "the source's journal of the migration"
	# The PSO of m cannot log in on the source any more; what is left of
	# the plan there, the SO may see.
	ex_run c1 pso1:m "exit status m"
	expect_rc 3 "the PSO of m on the source after the migration"
	ex_plan c1 so m "d['step'] == 'done'" "d['kind'] == 'migrate'"
	# The PSO and the user carry on at the target.
	ex_ok "the PSO of m on the target" c2 pso1:m "partition get m device-so-access" &&
	    pt_check "$T/out" "L[1]['value'] == 'off'"
	ex_ok "the user of m makes a key on the target" c2 user:m "key generate m --type ed25519"
}

# ---- 3. export -----------------------------------------------------------------

# ex_custkeys: the customer's wrap keys, once per run, in $EX_CK: rsa
# (RSA-3072), ec (P-256), ec2 (P-256, another customer): NAME.key (PEM
# private key), NAME.pub.
EX_CK=$ROOT/exitkeys
ex_custkeys() {
	local n
	[ -s "$EX_CK/ec2.pub" ] && return 0
	mkdir -p "$EX_CK"
	if ! { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$EX_CK/rsa.key" &&
	    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$EX_CK/ec.key" &&
	    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$EX_CK/ec2.key"; } \
	    >"$T/ossl.err" 2>&1; then
		fail "openssl cannot make the customer's keys"
		diag_file "$T/ossl.err"
		return 1
	fi
	for n in rsa ec ec2; do
		openssl pkey -in "$EX_CK/$n.key" -pubout -out "$EX_CK/$n.pub" 2>>"$T/ossl.err" ||
		    { fail "openssl pkey -pubout $n"; return 1; }
	done
}

# ex_der PEM [pub]: the DER SubjectPublicKeyInfo (hex) of a PEM public key
# ("pub") or of a private key's public half.
ex_der() {
	if [ "${2:-}" = pub ]; then
		openssl pkey -pubin -in "$1" -outform DER 2>/dev/null
	else
		openssl pkey -in "$1" -pubout -outform DER 2>/dev/null
	fi | od -An -tx1 -v | tr -d ' \n'
}

# ex_unwrap FILE KEY DIR WHAT [ID...]: scripts/unwrap-export.sh recovers
# exactly the keys ID... from FILE; each private key's public half is key
# show's public key of before; DIR/ID.der holds the material.
ex_unwrap() {
	local f=$1 key=$2 dir=$3 what=$4 id n
	shift 4
	LAST="unwrap-export.sh $(basename "$f") $(basename "$key") $(basename "$dir")"
	sh "$EX_UNWRAP" "$f" "$key" "$dir" >"$T/unwrap.out" 2>"$T/unwrap.err"
	RC=$?
	if ! expect_rc 0 "$what: unwrap-export.sh"; then
		diag_file "$T/unwrap.out"
		return 1
	fi
	expect_has "$T/unwrap.out" "recovered $# key(s)" "$what: keys recovered"
	n=0
	for id in "$@"; do
		[ -s "$dir/$id.der" ] || { fail "$what: no $id.der recovered"; continue; }
		n=$((n + 1))
		if [ -e "$T/pub/$id.pem" ]; then
			[ -s "$dir/$id.pem" ] || { fail "$what: no $id.pem recovered"; continue; }
			[ "$(ex_der "$dir/$id.pem")" = "$(ex_der "$T/pub/$id.pem" pub)" ] ||
			    fail "$what: the recovered key $id is not the one key show showed"
		else
			expect_eq "$(wc -c <"$dir/$id.der")" 32 "$what: the aes-256 key $id"
		fi
	done
	expect_eq "$(find "$dir" -name '*.der' | wc -l)" "$#" "$what: keys in $(basename "$dir")"
}

# ex_xfile FILE WRAP N WHAT: FILE is a new export: mode 0600, no FILE.tmp
# left, its header, N keys, and no key material in the clear unless plain.
ex_xfile() {
	local f=$1
	[ -f "$f" ] || { fail "$4: no file $f"; return 1; }
	expect_eq "$(stat -c %a "$f")" 600 "$4: the export's mode"
	[ -e "$f.tmp" ] && fail "$4: $f.tmp left"
	expect_eq "$(sed -n '1p;2p;6p' "$f" | tr '\n' '|')" "hsmctl-export 1|partition x|wrap $2|" \
	    "$4: the export's header"
	expect_eq "$(tail -n 1 "$f")" "count $3" "$4: the export's count"
	expect_eq "$(grep -c '^key ' "$f")" "$3" "$4: key records"
	if [ "$2" = plain ]; then
		expect_eq "$(grep -c '^material ' "$f")" "$3" "$4: material lines"
	else
		expect_eq "$(grep -c '^material' "$f")" 0 "$4: material in the clear"
	fi
}

case_ex_export() {
	local -a xids sens plain
	local i before
	ex_custkeys || return
	ex_setup || return
	ex_part x || return
	# Extractable (sensitive) keys of every type, one not extractable, two
	# extractable and not sensitive.
	ex_keys x "rsa-2048 --extractable" "ec-p256 --extractable" \
	    "ec-p384 --extractable" "ed25519 --extractable" "aes-256 --extractable" \
	    ec-p256 "ed25519 --extractable --no-sensitive" \
	    "aes-256 --extractable --no-sensitive" || return
	xids=("${KEYS[@]:0:5}" "${KEYS[@]:6:2}")
	sens=("${KEYS[@]:0:5}")
	plain=("${KEYS[@]:6:2}")
	# Wrapped under an RSA-3072 key.
	ex_ok "PSO: export wrapped under RSA-3072" c1 pso1:x \
	    "exit export x --wrap-key $EX_CK/rsa.pub --out $T/x.rsa" || return
	pt_check "$T/out" "L[1]['partition'] == 'x' and L[1]['file'] == '$T/x.rsa'" \
	    "L[1]['wrap'] == 'rsa-oaep-sha256+aes256-kwp' and L[1]['exported'] == 7" \
	    "sorted(L[1]['ids']) == sorted('${xids[*]}'.split())" \
	    "[(s['id'], s['type'], s['reason']) for s in L[1]['skipped']] == [('${KEYS[5]}', 'ec-p256', 'not extractable')]"
	ex_xfile "$T/x.rsa" rsa-oaep-sha256+aes256-kwp 7 "RSA export"
	expect_eq "$(grep '^skipped ' "$T/x.rsa")" "skipped ${KEYS[5]} ec-p256 not extractable" \
	    "the skipped key in the file"
	ex_unwrap "$T/x.rsa" "$EX_CK/rsa.key" "$T/u.rsa" "RSA export" "${xids[@]}"
	# Wrapped under an EC P-256 key: the same keys, the same material.
	ex_ok "PSO: export wrapped under EC P-256" c1 pso1:x \
	    "exit export x --wrap-key $EX_CK/ec.pub --out $T/x.ec" || return
	pt_check "$T/out" "L[1]['wrap'] == 'ecdh-hkdf-sha256+aes256-kwp' and L[1]['exported'] == 7"
	ex_xfile "$T/x.ec" ecdh-hkdf-sha256+aes256-kwp 7 "EC export"
	ex_unwrap "$T/x.ec" "$EX_CK/ec.key" "$T/u.ec" "EC export" "${xids[@]}"
	for i in "${xids[@]}"; do
		cmp -s "$T/u.rsa/$i.der" "$T/u.ec/$i.der" ||
		    fail "key $i: the RSA and the EC export give different material"
	done
	# Another customer's key recovers nothing; nor does an altered file.
	sh "$EX_UNWRAP" "$T/x.ec" "$EX_CK/ec2.key" "$T/u.bad" >"$T/unwrap.out" 2>&1 &&
	    fail "unwrap-export.sh recovered keys with another customer's key"
	python3 - "$T/x.ec" >"$T/x.bad" <<'PYEOF'
import sys
lines = open(sys.argv[1]).read().split("\n")
for n, l in enumerate(lines):
    if l.startswith("wrapped "):
        lines[n] = l[:20] + ("A" if l[20] != "A" else "B") + l[21:]
        break
sys.stdout.write("\n".join(lines))
PYEOF
	sh "$EX_UNWRAP" "$T/x.bad" "$EX_CK/ec.key" "$T/u.bad2" >"$T/unwrap.out" 2>&1 &&
	    fail "unwrap-export.sh accepted an altered wrapped key"
	# --plain: refused while key-extraction is off (the default) ...
	ex_no 5 read_only "PSO: export --plain with key-extraction off" c1 pso1:x \
	    "exit export x --wrap-key $EX_CK/ec.pub --out $T/x.plain --plain"
	[ -e "$T/x.plain" ] || [ -e "$T/x.plain.tmp" ] && fail "a refused --plain export left a file"
	# ... and with it on, only the extractable keys that are not sensitive.
	ex_ok "PSO: key-extraction=on" c1 pso1:x "partition set x key-extraction=on" || return
	ex_ok "PSO: export --plain" c1 pso1:x \
	    "exit export x --wrap-key $EX_CK/ec.pub --out $T/x.plain --plain" &&
	pt_check "$T/out" "L[1]['wrap'] == 'plain' and L[1]['exported'] == 2" \
	    "sorted(L[1]['ids']) == sorted('${plain[*]}'.split())" \
	    "sorted((s['id'], s['reason']) for s in L[1]['skipped']) == sorted([('${KEYS[5]}', 'not extractable')] + [(i, 'sensitive') for i in '${sens[*]}'.split()])"
	ex_xfile "$T/x.plain" plain 2 "plain export"
	ex_unwrap "$T/x.plain" /dev/null "$T/u.plain" "plain export" "${plain[@]}"
	for i in "${plain[@]}"; do
		cmp -s "$T/u.rsa/$i.der" "$T/u.plain/$i.der" ||
		    fail "key $i: the plain export's material is not the wrapped one's"
	done
	# key-export off: no wrapped export.
	ex_ok "PSO: key-export=off" c1 pso1:x "partition set x key-export=off" || return
	ex_no 5 read_only "PSO: wrapped export with key-export off" c1 pso1:x \
	    "exit export x --wrap-key $EX_CK/rsa.pub --out $T/x.off"
	[ -e "$T/x.off" ] || [ -e "$T/x.off.tmp" ] && fail "a refused export left a file"
	ex_ok "PSO: key-export=on" c1 pso1:x "partition set x key-export=on" || return
	# --delete: never when the file cannot be written (an existing file,
	# a missing directory: refused before anything is sent) ...
	before=$(ex_state)
	ex_run c1 pso1:x "exit export x --wrap-key $EX_CK/rsa.pub --out $T/x.rsa --delete"
	expect_rc 5 "export --delete over an existing file"
	ex_run c1 pso1:x "exit export x --wrap-key $EX_CK/rsa.pub --out $T/no/such/dir/x --delete"
	[ "$RC" != 0 ] || fail "export --delete into a missing directory succeeded"
	ex_unchanged "$before" "export --delete that cannot write its file"
	# ... and then only the keys exported, once the file is there.
	ex_ok "PSO: export --delete" c1 pso1:x \
	    "exit export x --wrap-key $EX_CK/ec.pub --out $T/x.del --delete" "key list x" || return
	pt_check "$T/out" "L[1]['exported'] == 7 and L[1]['deleted'] == 7" \
	    "[k['id'] for k in L[2]['keys']] == ['${KEYS[5]}']"
	ex_xfile "$T/x.del" ecdh-hkdf-sha256+aes256-kwp 7 "export --delete"
	expect_eq "$(ex_sql "$N1" "SELECT id FROM objects WHERE partition = 'x'")" "${KEYS[5]}" \
	    "the keys of x after export --delete (not extractable: kept)"
	ex_unwrap "$T/x.del" "$EX_CK/ec.key" "$T/u.del" "export --delete" "${xids[@]}"
	expect_eq "$(ex_audit "$N1" x)" \
	    "exit.export:ok exit.export:ok exit.export:ok exit.export:ok exit.export_delete:ok" \
	    "exit entries of the audit log"
	expect_eq "$(ex_sql "$N1" "SELECT args FROM audit WHERE op = 'exit.export_delete'")" "deleted=7" \
	    "the audit entry of the deletion"
}

# ---- 4. fault injection: kill -9 at each step, resume ----------------------------

# ex_crash_one STEP KIND P: the source, restarted with HSMD_TEST_CRASH_AFTER
# =STEP, dies during exit KIND of P; restarted, the plan is at STEP with
# nothing live twice; resumed, every key is on the target exactly once.
ex_crash_one() {
	local step=$1 kind=$2 p=$3 who what="$2 killed after $1"
	[ "$kind" = transfer ] && who=so || who=pso1:$p
	node_stop "$N1" || return 1
	ex_start "$N1" "$step" || return 1
	{
		ex_run c1 "$who" "exit $kind $p --to $TADDR"
		expect_rc 6 "$what: exit $kind (the source dies)"
		ex_crashed "$N1" "$step" "$what"
	} 2>>"$T/jobs.err" || return 1	# (bash's "Killed" notice)
	ex_start "$N1" || return 1
	if [ "$kind" = migrate ]; then
		# The migration is the PSO's: the SO may not look at it while
		# the partition is here; once it is gone, its PSO cannot log
		# in, and the SO finishes it.
		if [ "$step" = source_deleted ]; then
			ex_run c1 "$who" "exit status $p"
			expect_rc 3 "$what: the PSO of the deleted partition"
			who=so
		else
			ex_no 3 not_authorized "$what: SO: exit status of the PSO's migration" \
			    c1 so "exit status $p"
		fi
	fi
	# Where it stopped.
	ex_plan c1 "$who" "$p" "d['step'] == '$step'" "d['kind'] == '$kind'" \
	    "d['target'] == '$TADDR'"
	case $step in
	locked|offered)
		expect_eq "$(ex_sql "$N1" "SELECT exit_state FROM partitions WHERE name = ?1" "$p")" \
		    exiting "$what: the source's partition is leaving"
		expect_eq "$(ex_sql "$TD" "SELECT count(*) FROM partitions WHERE name = ?1" "$p")" 0 \
		    "$what: nothing of $p imported on the target yet"
		expect_eq "$(ex_sql "$TD" "SELECT count(*) FROM exit_offers WHERE partition = ?1" "$p")" \
		    "$([ "$step" = locked ] && echo 0 || echo 1)" "$what: transfer keys offered by the target"
		# Read-only for the API: no new key, no delete; keys still sign.
		ex_no 5 read_only "$what: key generate" c1 "user:$p" "key generate $p --type ec-p256"
		ex_no 5 read_only "$what: key delete" c1 "user:$p" "key delete $p ${KEYS[0]}"
		ex_ok "$what: key sign on the source" c1 "user:$p" \
		    "key sign $p ${KEYS[0]} --in $T/data --out $T/during.sig" &&
		    { ex_verify "${KTYPES[0]}" "$T/pub/${KEYS[0]}.pem" "$T/data" "$T/during.sig" ||
		    fail "$what: a signature made during the exit does not verify"; }
		;;
	verified)
		# On both, but live on the source only.
		expect_eq "$(ex_rows "$N1" "$p")" "$(cat "$T/$p.keys")" "$what: the keys still on the source"
		expect_eq "$(ex_rows "$TD" "$p")" "$(cat "$T/$p.keys")" "$what: the keys imported on the target"
		expect_eq "$(ex_digests "$TD" "$p")" "$(cat "$T/$p.digests")" "$what: the material imported on the target"
		expect_eq "$(ex_sql "$TD" "SELECT exit_state FROM partitions WHERE name = ?1" "$p")" \
		    importing "$what: the target's copy is not in service"
		ex_run c2 "user:$p" "key sign $p ${KEYS[0]} --in $T/data --out $T/t.sig"
		expect_rc 5 "$what: the user on the target before the confirmation"
		ex_ok "$what: key sign on the source" c1 "user:$p" \
		    "key sign $p ${KEYS[0]} --in $T/data --out $T/during.sig"
		;;
	source_deleted)
		ex_gone "$p" "$what"
		expect_eq "$(ex_rows "$TD" "$p")" "$(cat "$T/$p.keys")" "$what: the keys imported on the target"
		expect_eq "$(ex_digests "$TD" "$p")" "$(cat "$T/$p.digests")" "$what: the material imported on the target"
		expect_eq "$(ex_sql "$TD" "SELECT exit_state FROM partitions WHERE name = ?1" "$p")" \
		    importing "$what: the target's copy is not in service yet"
		ex_run c2 "user:$p" "key sign $p ${KEYS[0]} --in $T/data --out $T/t.sig"
		expect_rc 5 "$what: the user on the target before the confirmation"
		;;
	esac
	ex_ok "$what: exit resume $p" c1 "$who" "exit resume $p" &&
	    pt_check "$T/out" "L[1]['step'] == 'done' and L[1]['error'] == ''"
	ex_exactly_once "$p" "$what, resumed"
	expect_eq "$(ex_audit "$TD" "$p")" "exit.import:ok exit.confirm:ok" \
	    "$what: the target imported and confirmed once"
	expect_eq "$(ex_audit "$N1" "$p")" "exit.start:ok exit.$kind:ok" \
	    "$what: the source started and ended once"
}

case_ex_crash_source() {
	local step kind p
	local -a runs=("locked transfer" "locked migrate" "offered transfer"
	    "offered migrate" "verified transfer" "verified migrate"
	    "source_deleted transfer" "source_deleted migrate")
	ex_setup || return
	for p in "${runs[@]}"; do
		read -r step kind <<<"$p"
		p=${kind:0:1}${step%%_*}
		ex_part "$p" || return
		ex_keys "$p" ec-p256 ed25519 aes-256 || return
		ex_crash_one "$step" "$kind" "$p"
	done
}

# ---- 5. the target killed after its import; a dead target ------------------------

case_ex_crash_target() {
	local kind p who u0 before
	ex_setup || return
	ex_part i || return
	ex_keys i ec-p256 ed25519 aes-256 || return
	# A target that is down from the start: the client cannot check its
	# host key, so nothing is started.
	node_stop "$TD" || return
	before=$(ex_state)
	cl_so -y exit transfer i --to "$TADDR"
	expect_rc 6 "exit transfer to a stopped target"
	expect_has "$T/err" "$TADDR" "exit transfer to a stopped target: the message"
	ex_unchanged "$before" "exit transfer to a stopped target"
	for kind in transfer migrate; do
		p=${kind:0:1}i
		[ "$kind" = transfer ] && who=so || who=pso1:$p
		ex_part "$p" || return
		ex_keys "$p" ec-p256 ed25519 aes-256 || return
		ex_start "$TD" import || return
		# The target dies after committing the import, before it answers.
		{
			if [ "$kind" = transfer ]; then
				cl_so -y exit transfer "$p" --to "$TADDR"
				expect_rc 6 "$kind: the target dies during the import"
				expect_has "$T/err" "hsmctl exit status $p" "$kind: the hint to exit status"
				expect_has "$T/err" "hsmctl exit resume $p" "$kind: the hint to exit resume"
			else
				ex_run c1 "$who" "exit migrate $p --to $TADDR"
				expect_rc 6 "$kind: the target dies during the import"
			fi
			ex_crashed "$TD" import "$kind"
		} 2>>"$T/jobs.err" || return	# (bash's "Killed" notice)
		ex_plan c1 "$who" "$p" "d['step'] == 'offered'" "d['error'] != ''"
		u0=$(pt_json "L[1]['updated']")
		expect_eq "$(ex_sql "$TD" "SELECT exit_state FROM partitions WHERE name = ?1" "$p")" \
		    importing "$kind: the target's import was committed"
		# While stopped by the dead target: read-only for the API,
		# keys still sign; resume fails the same way.
		ex_no 5 read_only "$kind, target dead: key generate" c1 "user:$p" "key generate $p --type ec-p256"
		ex_no 5 read_only "$kind, target dead: key delete" c1 "user:$p" "key delete $p ${KEYS[1]}"
		ex_ok "$kind, target dead: key sign" c1 "user:$p" \
		    "key sign $p ${KEYS[1]} --in $T/data --out $T/during.sig" &&
		    { ex_verify ed25519 "$T/pub/${KEYS[1]}.pem" "$T/data" "$T/during.sig" ||
		    fail "$kind: a signature made during the exit does not verify"; }
		sleep 1
		ex_run c1 "$who" "exit resume $p"
		expect_rc 6 "$kind: exit resume while the target is down"
		ex_plan c1 "$who" "$p" "d['step'] == 'offered'" \
		    "'cannot connect to $TADDR' in d['error']" "d['updated'] > $u0"
		ex_start "$TD" || return
		ex_ok "$kind: exit resume $p" c1 "$who" "exit resume $p" &&
		    pt_check "$T/out" "L[1]['step'] == 'done' and L[1]['error'] == ''"
		ex_exactly_once "$p" "$kind, target killed after its import, resumed"
		expect_eq "$(ex_audit "$TD" "$p")" "exit.import:ok exit.confirm:ok" \
		    "$kind: the target imported and confirmed once"
		node_stop "$TD" || return
	done
}

# ---- 6. delete with a certificate ----------------------------------------------------

# ex_cert_bad NAME PYTHON WHAT [ARGS...]: a copy of $T/cert.json changed
# by PYTHON (c: the certificate as a dict; b64, json at hand) fails
# verify-certificate with exit 8.
ex_cert_bad() {
	local f=$T/bad.$1 code=$2 what=$3
	shift 3
	python3 - "$T/cert.json" "$f" "$code" <<'PYEOF' || { fail "$what: cannot make the bad certificate"; return 1; }
import base64, json, sys
c = json.load(open(sys.argv[1]))
exec(sys.argv[3])
open(sys.argv[2], "w").write(json.dumps(c, indent=2) + "\n")
PYEOF
	hc exit verify-certificate "$f" "$@"
	expect_rc 8 "verify-certificate: $what" || return 1
	expect_has "$T/err" "$f" "verify-certificate ($what): the message names the file"
	hc -o json exit verify-certificate "$f" "$@"
	expect_rc 8 "verify-certificate -o json: $what" &&
	    json_check "$T/out" "d['error']['code'] == 'integrity'"
}

case_ex_delete() {
	local ck tk t0
	ex_setup || return
	ex_part d || return
	ex_keys d ec-p256 ed25519 aes-256 rsa-2048 || return
	hc -F "$T/cfg" -o json node info
	ck=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["cluster_key"])' <"$T/out")
	hc -F "$T/cfg" -C c2 -o json node info
	tk=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["cluster_key"])' <"$T/out")
	[[ $ck =~ ^[0-9a-f]{64}$ && $tk =~ ^[0-9a-f]{64}$ && $ck != "$tk" ]] ||
	    { fail "cluster keys of node info: '$ck', '$tk'"; return; }
	t0=$(date +%s)
	ex_ok "SO: exit delete d --out" c1 so "exit delete d --out $T/cert.json" || return
	pt_check "$T/out" "L[1] == {'partition': 'd', 'keys': 4, 'certificate': '$T/cert.json'}"
	expect_eq "$(stat -c %a "$T/cert.json" 2>/dev/null)" 600 "the certificate's mode"
	json_check <(tr -d '\n' <"$T/cert.json"; echo) \
	    "d['format'] == 'hsmctl-deletion-certificate-v1'" \
	    "d['cluster_key'] == '$ck'" \
	    "d['contents']['type'] == 'hsmctl-deletion-certificate-v1'" \
	    "d['contents']['partition'] == 'd' and d['contents']['node'] == 'alpha'" \
	    "d['contents']['cluster'] == 'c1' and d['contents']['officers'] == 'alice,bob'" \
	    "$t0 <= d['contents']['time'] <= $t0 + 120" \
	    "sorted((k['id'], k['type']) for k in d['contents']['keys']) == sorted(zip('${KEYS[*]}'.split(), '${KTYPES[*]}'.split()))" \
	    "all(re.fullmatch('[0-9a-f]{64}', k['digest']) for k in d['contents']['keys'])" \
	    "len(set(k['digest'] for k in d['contents']['keys'])) == 4"
	ex_gone d "after exit delete"
	expect_eq "$(ex_audit "$N1" d)" "exit.delete:ok" "the deletion in the audit log"
	ex_no 4 not_found "SO: partition show d" c1 so "partition show d"
	ex_run c1 user:d "key list d"
	expect_rc 3 "the user of the deleted partition"
	# The certificate checks offline (no configuration, no node) ...
	HSMCTL_CONFIG=/nonexistent hc exit verify-certificate "$T/cert.json"
	expect_rc 0 "verify-certificate" || diag_file "$T/err"
	expect_kv "$T/out" partition d "verify-certificate: partition"
	expect_kv "$T/out" officers alice,bob "verify-certificate: officers"
	expect_kv "$T/out" "cluster key" "$ck" "verify-certificate: cluster key"
	hc -o json exit verify-certificate "$T/cert.json" --cluster-key "$ck"
	expect_rc 0 "verify-certificate --cluster-key (its own)" &&
	    json_check "$T/out" "d['verified'] is True" "d['contents']['partition'] == 'd'"
	# ... and any change to it fails.
	ex_cert_bad sig "s = bytearray(base64.b64decode(c['signature'])); s[10] ^= 1; c['signature'] = base64.b64encode(bytes(s)).decode()" \
	    "a signature byte flipped"
	ex_cert_bad contents "c['contents']['partition'] = 'e'" "the contents' partition changed"
	ex_cert_bad keys "c['contents']['keys'] = c['contents']['keys'][1:]" "a key left out of the contents"
	ex_cert_bad time "c['contents']['time'] += 1" "the contents' time changed"
	ex_cert_bad stmt "s = base64.b64decode(c['statement']); i = s.index(b'alice'); s = s[:i] + b'alicf' + s[i + 5:]; c['statement'] = base64.b64encode(s).decode()" \
	    "the signed statement changed"
	ex_cert_bad stmt2 "s = base64.b64decode(c['statement']); i = s.index(b'alice'); s = s[:i] + b'alicf' + s[i + 5:]; c['statement'] = base64.b64encode(s).decode(); c['contents']['officers'] = 'alicf,bob'" \
	    "the statement and its contents changed alike"
	ex_cert_bad key "c['cluster_key'] = '$tk'" "another cluster's key in the file"
	ex_cert_bad none "pass" "another cluster's key given" --cluster-key "$tk"
	hc exit verify-certificate "$T/cert.json" --cluster-key "$tk"
	expect_rc 8 "the genuine certificate with another cluster's --cluster-key"
	head -c 200 "$T/cert.json" >"$T/bad.cut"
	hc exit verify-certificate "$T/bad.cut"
	expect_rc 8 "a truncated certificate"
	# Without --out, in text mode: the certificate on stdout, a note on
	# stderr; that copy verifies too.
	ex_part e || return
	ex_keys e ed25519 || return
	cl_so -y exit delete e
	expect_rc 0 "exit delete e (text, stdout)" || return
	expect_has "$T/err" "partition e deleted (1 keys)" "the note on stderr"
	cp "$T/out" "$T/cert.e"
	hc exit verify-certificate "$T/cert.e"
	expect_rc 0 "verify-certificate of the certificate printed on stdout"
	expect_kv "$T/out" partition e "its partition"
	ex_gone e "after exit delete e"
}

# ---- 7. who may do what ------------------------------------------------------------

case_ex_roles() {
	ex_custkeys || return
	ex_setup || return
	ex_part q || return
	ex_part r pso2 || return
	ex_keys q ec-p256 "ed25519 --extractable" || return
	# PSO: no transfer, no delete (the device SO's); not of another
	# partition either.
	ex_no 3 not_authorized "PSO: exit transfer" c1 pso1:q "exit transfer q --to $TADDR"
	ex_no 3 not_authorized "PSO: exit delete" c1 pso1:q "exit delete q"
	ex_no 3 not_authorized "PSO of r: exit migrate q" c1 pso2:r "exit migrate q --to $TADDR"
	ex_no 3 not_authorized "PSO of r: exit export q" c1 pso2:r \
	    "exit export q --wrap-key $EX_CK/ec.pub --out $T/q.r"
	# SO: no export, no migrate (the PSO's).
	ex_no 3 not_authorized "SO: exit export" c1 so "exit export q --wrap-key $EX_CK/ec.pub --out $T/q.so"
	ex_no 3 not_authorized "SO: exit migrate" c1 so "exit migrate q --to $TADDR"
	# Genesis, the technical user, no login: none of them.
	ex_no 3 not_authorized "genesis: exit delete" c1 genesis "exit delete q"
	ex_no 3 not_authorized "genesis: exit transfer" c1 genesis "exit transfer q --to $TADDR"
	ex_no 3 not_authorized "user: exit transfer" c1 user:q "exit transfer q --to $TADDR"
	ex_no 3 not_authorized "user: exit export" c1 user:q "exit export q --wrap-key $EX_CK/ec.pub --out $T/q.u"
	ex_no 3 not_authorized "no login: exit status" c1 none "exit status q"
	for f in q.r q.so q.u; do
		[ -e "$T/$f" ] || [ -e "$T/$f.tmp" ] && fail "a refused export left $f"
	done
	# No plan: exit status and resume say so.
	ex_no 4 not_found "SO: exit status without a plan" c1 so "exit status q"
	ex_no 4 not_found "PSO: exit resume without a plan" c1 pso1:q "exit resume q"
	ex_no 4 not_found "SO: exit transfer of no partition" c1 so "exit transfer nosuch --to $TADDR"
	expect_eq "$(ex_sql "$N1" "SELECT count(*) FROM partitions WHERE name IN ('q', 'r')")" 2 \
	    "partitions q and r still on the source"
}

# ---- 8. the officers' changes to a partition while it leaves ----------------------

# Read-only for the API is not enough: what the officers change once the
# target has imported the partition would be lost there (a new API
# secret, parameters), and a partition deleted in the middle of its exit
# leaves a plan that can never end.  Each change must be refused (exit 5)
# or reach the target.
case_ex_changes_during() {
	local p rest="?" psos="?"
	ex_setup || return
	for p in z1 z2; do
		ex_part "$p" || return
		ex_keys "$p" ec-p256 ed25519 || return
	done
	node_stop "$N1" || return
	ex_start "$N1" verified || return
	{
		ex_run c1 so "exit transfer z1 --to $TADDR"
		expect_rc 6 "exit transfer z1 (the source dies after verified)"
		ex_crashed "$N1" verified "z1"
	} 2>>"$T/jobs.err" || return
	ex_start "$N1" verified || return
	{
		ex_run c1 so "exit transfer z2 --to $TADDR"
		expect_rc 6 "exit transfer z2 (the source dies after verified)"
		ex_crashed "$N1" verified "z2"
	} 2>>"$T/jobs.err" || return
	ex_start "$N1" || return
	# z1: deleted while it leaves.
	ex_no 5 - "SO: partition delete --force of a partition being transferred" c1 so \
	    "partition delete z1 --force"
	ex_no 5 - "SO: exit delete of a partition being transferred" c1 so "exit delete z1"
	# z2: a new API secret, a parameter, a PSO officer.
	ex_run c1 pso1:z2 "partition secret z2 --rotate --out $T/z2.new"
	case $RC in
	5) ;;
	0) cp "$T/z2.new" "$T/z2.secret" ;;
	*) expect_rc 5 "PSO: rotate the API secret during the exit" ;;
	esac
	ex_run c1 pso1:z2 "partition set z2 api.rest=on"
	case $RC in
	5) rest=off ;;
	0) rest=on ;;
	*) expect_rc 5 "PSO: partition set during the exit" ;;
	esac
	ex_run c1 pso1:z2 "officer add pso pso2 $K/pso2.key.pub --partition z2"
	case $RC in
	5) psos=pso1 ;;
	0) psos="pso1 pso2" ;;
	*) expect_rc 5 "PSO: officer add during the exit" ;;
	esac
	for p in z1 z2; do
		ex_ok "SO: exit resume $p" c1 so "exit resume $p" &&
		    pt_check "$T/out" "L[1]['step'] == 'done'"
		ex_exactly_once "$p" "$p, changed during its exit, resumed"
	done
	expect_eq "$(ex_sql "$TD" "SELECT value FROM partition_params WHERE partition = 'z2' AND name = 'api.rest'")" \
	    "$rest" "api.rest of z2 on the target (set to on during the exit: exit status 0 means on)"
	expect_eq "$(ex_sql "$TD" "SELECT group_concat(name, ' ') FROM (SELECT name FROM officers
	    WHERE role = 'pso' AND partition = 'z2' AND revoked IS NULL ORDER BY name)")" \
	    "$psos" "the PSO officers of z2 on the target"
}

run_case "exit transfer (SO): keys move, sign there, verify with the public keys of before; audited" case_ex_transfer
run_case "exit migrate (PSO) with device-so-access off; the SO refused transfer and delete" case_ex_migrate
run_case "exit export: RSA-3072 and EC P-256 wrapping unwrapped by openssl; extractable, sensitive, key-export, key-extraction; --delete" case_ex_export
run_case "exit transfer/migrate: the source killed after each step, restarted, resumed: each key once" case_ex_crash_source
run_case "exit transfer/migrate: the target killed after its import and down; read-only meanwhile; resumed" case_ex_crash_target
run_case "exit delete: deletion certificate verifies offline; tampered ones exit 8" case_ex_delete
run_case "exit permissions: PSO no transfer/delete, SO no export/migrate, others nothing" case_ex_roles
run_case "exit: the officers' changes to a partition during its exit are refused or reach the target" case_ex_changes_during
