# shellcheck shell=bash
#
# End-to-end cases for officers, m-of-n login, remote approvals, officer
# and quorum management and the audit log (issue 5; DESIGN §4, §5).
#
# Sourced by tests/e2e/run.sh near its end: it uses run.sh's helpers (hc,
# hd, expect_*, node_init/node_start/node_stop, pty_cmd, ...) and registers
# its cases with run_case, so E2E_CASES numbers them after run.sh's own.
#
# Opening an officer key costs its PBKDF2 rounds: about 0.15 s natively and
# 1 s under ASan for the 600000 of hsmctl officer keygen.  So the officers'
# keys are made once per run, lazily, in $OFC_DIR (NAME.key, NAME.key.pub,
# its random passphrase in NAME.pass), and only some by hsmctl: g1, alice
# and bob are made by openssl with its default 2048 rounds (any encrypted
# PKCS#8 key of the two types is an officer key), which also shows that
# such keys work.  Case 1 checks hsmctl's own keys.  A template node
# (ofc_template) is made once too, and copied.  Passphrases only travel in
# files given as --passphrase-fd 3 3<FILE, or typed into a pty.

# shellcheck disable=SC2034  # RC, LAST, LOG, ...: run.sh's
if ! declare -F run_case >/dev/null; then
	echo "cases_officers.sh: source it from tests/e2e/run.sh" >&2
	exit 2
fi

OFC_DIR=$ROOT/officers

# ---- helpers ---------------------------------------------------------------

ofc_rand() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }

# ofc_key NAME TYPE MAKER: the officer key $OFC_DIR/NAME.key of TYPE
# (ed25519 or p384) made by MAKER (hsmctl or openssl), once per run.
ofc_key() {
	local name=$1 type=$2 k=$OFC_DIR/$1.key p=$OFC_DIR/$1.pass
	local -a alg=(-algorithm ED25519)
	[ -s "$k" ] && [ -s "$k.pub" ] && return 0
	mkdir -p "$OFC_DIR" && chmod 700 "$OFC_DIR"
	rm -f "$k" "$k.pub" "$OFC_DIR/$name.fp"
	printf 'pp-%s-%s\n' "$name" "$(ofc_rand)" >"$p"
	if [ "$3" = hsmctl ]; then
		hc --passphrase-fd 3 officer keygen "$k" --type "$type" 3<"$p"
		expect_rc 0 "officer keygen $name ($type)"
		return
	fi
	[ "$type" = p384 ] && alg=(-algorithm EC -pkeyopt ec_paramgen_curve:P-384
	    -pkeyopt ec_param_enc:named_curve)
	if ! (umask 077 && openssl genpkey "${alg[@]}" -aes-256-cbc \
	    -pass "file:$p" -out "$k" && openssl pkey -in "$k" \
	    -passin "file:$p" -pubout -out "$k.pub") >"$T/ossl.err" 2>&1; then
		fail "openssl cannot make the key of $name"
		diag_file "$T/ossl.err"
		return 1
	fi
}

# The officers of these cases: genesis g1 and g2, SO alice, bob and carol,
# and a stranger nobody registers.  Both key types on both sides.
ofc_keys() {
	ofc_key g1 ed25519 openssl && ofc_key g2 p384 hsmctl &&
	    ofc_key alice ed25519 openssl && ofc_key bob ed25519 openssl &&
	    ofc_key carol p384 hsmctl && ofc_key stranger ed25519 hsmctl
}

ofc_pw() { head -n 1 "$OFC_DIR/$1.pass"; }	# NAME: the passphrase

# ofc_pass WORD...: a file of passphrase lines (printed): NAME gives that
# officer's passphrase, :TEXT the line TEXT.
ofc_pass() {
	local f w
	f=$T/pass.$(printf '%s.' "$@" | tr -c 'A-Za-z0-9.\n-' '_')
	for w in "$@"; do
		case $w in
		:*) printf '%s\n' "${w#:}" ;;
		*) cat "$OFC_DIR/$w.pass" ;;
		esac
	done >"$f"
	chmod 600 "$f"
	echo "$f"
}

# ofc_fp NAME: the SHA256 fingerprint of officer NAME's public key, as the
# node shows it (of the DER SubjectPublicKeyInfo, base64 without padding).
ofc_fp() {
	[ -s "$OFC_DIR/$1.fp" ] || python3 - "$OFC_DIR/$1.key.pub" \
	    >"$OFC_DIR/$1.fp" <<'PYEOF'
import base64, hashlib, sys
lines = open(sys.argv[1]).read().split("\n")
der = base64.b64decode("".join(l for l in lines if l and not l.startswith("-----")))
print("SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("="))
PYEOF
	cat "$OFC_DIR/$1.fp"
}

# ofc_sql DIR SQL [PARAM...]: run SQL on DIR/store.db (committed); the
# rows, one a line, columns joined by '|', blobs in hex.
ofc_sql() {
	local db=$1/store.db out
	shift
	if ! out=$(python3 - "$db" "$@" <<'PYEOF' 2>&1
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=10)
for row in c.execute(sys.argv[2], sys.argv[3:]).fetchall():
    print("|".join("" if v is None else v.hex() if isinstance(v, bytes)
                   else str(v) for v in row))
c.commit()
c.close()
PYEOF
	); then
		fail "sqlite3 on $db: $1: $out"
		return 1
	fi
	[ -z "$out" ] || printf '%s\n' "$out"
}

ofc_audit_n() { ofc_sql "$1" "SELECT count(*) FROM audit"; }	# DIR

# ofc_audit_last DIR: the newest audit entry, "role|officers|op|args|result".
ofc_audit_last() {
	ofc_sql "$1" "SELECT role, officers, op, args, result FROM audit
	    ORDER BY seq DESC LIMIT 1"
}

# ofc_template: $OFC_DIR/tpl, node alpha of cluster c1 (no sandbox) with
# genesis officers g1 and g2 (quorum 1, so that a genesis login costs one
# key) and SO officers alice, bob and carol (quorum 2); made once, stopped.
ofc_template() {
	local t=$OFC_DIR/tpl f=$T/tpl.batch K=$OFC_DIR
	[ -e "$OFC_DIR/tpl.done" ] && return 0
	ofc_keys || return 1
	rm -rf "$t" "$t.log"
	node_init "$t" c1 alpha --genesis "g1=$K/g1.key.pub" \
	    --genesis "g2=$K/g2.key.pub" --genesis-quorum 1 || return 1
	node_start "$t" || return 1
	printf 'officer add so %s %s\n' alice "$K/alice.key.pub" \
	    bob "$K/bob.key.pub" carol "$K/carol.key.pub" >"$f"
	hc -n "${NODE_ADDR[$t]}" --accept-new-host-key --as genesis \
	    --officer "$K/g1.key" --passphrase-fd 3 -f "$f" 3<"$(ofc_pass g1)"
	expect_rc 0 "template node: genesis adds the SO officers" || return 1
	node_stop "$t" || return 1
	touch "$OFC_DIR/tpl.done"
}

# ofc_node DIR [nostart]: a copy of the template in DIR, this case's
# terminal key authorised; started unless "nostart".
ofc_node() {
	ofc_template || return 1
	cp -a "$OFC_DIR/tpl" "$1" || { fail "cannot copy the template node"; return 1; }
	grep -qF "$(awk '{print $2}' "$TK.pub")" "$1/authorized_keys" 2>/dev/null || {
		hd authorize -d "$1" "$TK.pub"
		expect_rc 0 "hsmd authorize (copy of the template)" || return 1
	}
	[ "${2:-}" = nostart ] || node_start "$1"
}

# ofc_cfg NAME=DIR...: $T/cfg, cluster c1 of those running nodes (the
# first is the default node); each host key accepted.
ofc_cfg() {
	local a args=() n
	for a in "$@"; do
		args+=("${a%%=*}=${NODE_ADDR[${a#*=}]}")
	done
	mk_cfg "$T/cfg" c1 "${args[@]}"
	for a in "$@"; do
		n=${a%%=*}
		hc -F "$T/cfg" -n "$n" --accept-new-host-key node info
		expect_rc 0 "node info ($n)" || return 1
	done
}

# ofc_setup: N1=$T/n1, a started copy of the template, alpha in $T/cfg;
# LOG its log.  K is the officer key directory.
ofc_setup() {
	K=$OFC_DIR
	N1=$T/n1
	ofc_node "$N1" || return 1
	LOG=${NODE_LOG[$N1]}
	ofc_cfg alpha="$N1"
}

oc() { hc -F "$T/cfg" "$@"; }	# hc with the case's configuration

# ofc_batch FILE LINE...: write the lines to FILE.
ofc_batch() {
	local f=$1
	shift
	printf '%s\n' "$@" >"$f"
}

# ofc_wait_reading PID: wait (at most 5 s) until PID sleeps reading a pipe.
ofc_wait_reading() {
	local t0 w
	t0=$(now_ms)
	while alive "$1" && [ $(( $(now_ms) - t0 )) -lt 5000 ]; do
		w=$(cat "/proc/$1/wchan" 2>/dev/null)
		[[ $w == *pipe* ]] && return 0
		sleep 0.02
	done
	CASE_DIAG+="#   pid $1 not seen waiting on a pipe (wchan '${w:-}')"$'\n'
	return 0
}

# ofc_feed FIFO FILE: write FILE into FIFO (whose reader holds it open).
ofc_feed() {
	# shellcheck disable=SC2016  # sh expands them
	timeout 10 sh -c 'cat "$1" >"$2"' sh "$2" "$1" ||
	    fail "could not write to $(basename "$1")"
}

# ofc_no_secret FILE WHAT: FILE holds no passphrase of the officers, no
# private key PEM and no line of any officer's private key file.
ofc_no_secret() {
	local f=$1 what=$2 n line
	[ -e "$f" ] || { fail "$what: $f does not exist"; return 1; }
	for n in g1 g2 alice bob carol stranger; do
		[ -s "$OFC_DIR/$n.pass" ] || continue
		if grep -qaF -- "$(ofc_pw "$n")" "$f"; then
			fail "$what: holds the passphrase of $n"
			return 1
		fi
		while read -r line; do
			case $line in -----*|'') continue ;; esac
			if grep -qaF -- "$line" "$f"; then
				fail "$what: holds a line of $n's private key file"
				return 1
			fi
		done <"$OFC_DIR/$n.key"
	done
	if grep -qaE 'PRIVATE KEY' "$f"; then
		fail "$what: holds a private key PEM"
		return 1
	fi
}

# ---- 1. officer keygen -----------------------------------------------------

case_ofc_keygen() {
	local d=$T/keys k=$T/keys/o1.key p=$T/o1.pass fifo=$T/pp.fifo pid pw
	local before asn it f
	mkdir -p "$d"
	printf 'kg-%s\n' "$(ofc_rand)" >"$p"
	pw=$(head -n 1 "$p")
	# The passphrase on a FIFO: ps, the command line and the environment
	# are looked at while keygen waits for it.
	mkfifo "$fifo"
	LAST="hsmctl --passphrase-fd 3 officer keygen o1.key 3<>FIFO"
	"$HSMCTL" --passphrase-fd 3 officer keygen "$k" 3<>"$fifo" \
	    </dev/null >"$T/out" 2>"$T/err" &
	pid=$!
	BG_PIDS+=("$pid")
	ofc_wait_reading "$pid"
	ps -ww -eo args >"$T/ps.txt"
	tr '\0' '\n' <"/proc/$pid/cmdline" >"$T/cmdline.txt" 2>/dev/null
	tr '\0' '\n' <"/proc/$pid/environ" >"$T/environ.txt" 2>/dev/null
	ofc_feed "$fifo" "$p"
	wait "$pid"
	RC=$?
	check_san "$T/err" "$LAST"
	expect_rc 0 "officer keygen" || return
	expect_lines "$T/out" "wrote $k (encrypted) and $k.pub" "keygen output"
	expect_empty "$T/err" "keygen stderr"
	expect_has "$T/ps.txt" "officer keygen $k" "ps shows the waiting keygen"
	for f in ps.txt cmdline.txt environ.txt out err; do
		expect_hasnt "$T/$f" "$pw" "the passphrase in $f"
	done
	expect_hasnt "$k" "$pw" "the passphrase in the key file"
	expect_hasnt "$k.pub" "$pw" "the passphrase in the public key file"
	expect_eq "$(stat -c %a "$k")" 600 "key file mode"
	expect_eq "$(stat -c %a "$k.pub")" 644 "public key file mode"
	expect_eq "$(head -n 1 "$k")" "-----BEGIN ENCRYPTED PRIVATE KEY-----" "key PEM type"
	expect_eq "$(tail -n 1 "$k")" "-----END ENCRYPTED PRIVATE KEY-----" "key PEM end"
	expect_eq "$(head -n 1 "$k.pub")" "-----BEGIN PUBLIC KEY-----" "public key PEM type"
	# Encrypted PKCS#8 (PBES2, AES-256, PBKDF2 of >= 100000 rounds or scrypt).
	openssl pkey -in "$k" -passin "file:$p" -noout 2>"$T/ossl.err" ||
	    { fail "openssl pkey cannot open the key with its passphrase"; diag_file "$T/ossl.err"; }
	openssl pkey -in "$k" -passin pass: -noout >/dev/null 2>&1 &&
	    fail "openssl pkey opened the key without a passphrase"
	openssl pkey -in "$k" -passin pass:not-the-passphrase -noout >/dev/null 2>&1 &&
	    fail "openssl pkey opened the key with a wrong passphrase"
	openssl pkey -in "$k" -passin "file:$p" -pubout -out "$T/derived.pub" 2>/dev/null
	cmp -s "$T/derived.pub" "$k.pub" || fail "$k.pub is not the public half of $k"
	openssl pkey -pubin -in "$k.pub" -noout -text 2>/dev/null | head -n 1 >"$T/type"
	expect_has "$T/type" "ED25519" "default key type"
	asn=$(openssl asn1parse -in "$k" 2>&1)
	[[ $asn == *":PBES2"* && $asn == *":aes-256-"* ]] ||
	    fail "the key is not PBES2 with AES-256: $asn"
	if [[ $asn == *":PBKDF2"* ]]; then
		it=$(sed -n 's/.*prim: INTEGER *:\([0-9A-F]*\)$/\1/p' <<<"$asn" | head -n 1)
		if [ -z "$it" ] || [ $((16#$it)) -lt 100000 ]; then
			fail "PBKDF2 with ${it:+0x}${it:-no} iterations, want >= 100000"
		fi
	elif [[ $asn != *scrypt* ]]; then
		fail "the key is encrypted with neither PBKDF2 nor scrypt"
	fi

	# Never overwritten: neither the key nor its .pub.
	before=$(sha_of "$k" "$k.pub")
	hc --passphrase-fd 3 officer keygen "$k" 3<"$p"
	expect_rc 5 "keygen over an existing key"
	expect_has "$T/err" "exists" "keygen over an existing key: message"
	expect_empty "$T/out" "keygen over an existing key: stdout"
	expect_eq "$(sha_of "$k" "$k.pub")" "$before" "key files after a refused keygen"
	cp "$k.pub" "$d/o2.key.pub"
	hc --passphrase-fd 3 officer keygen "$d/o2.key" 3<"$p"
	expect_rc 5 "keygen where only FILE.pub exists"
	[ -e "$d/o2.key" ] && fail "keygen made o2.key although o2.key.pub exists"
	cmp -s "$k.pub" "$d/o2.key.pub" || fail "o2.key.pub was changed"

	# P-384, with JSON output.
	hc -o json --passphrase-fd 3 officer keygen "$d/p.key" --type p384 3<"$p"
	expect_rc 0 "keygen --type p384" &&
	    json_check "$T/out" "d == {'key': '$d/p.key', 'type': 'p384', 'pubkey': '$d/p.key.pub'}"
	openssl pkey -in "$d/p.key" -passin "file:$p" -noout 2>/dev/null ||
	    fail "openssl cannot open the P-384 key"
	openssl pkey -pubin -in "$d/p.key.pub" -noout -text >"$T/type" 2>&1
	grep -qE 'P-384|secp384r1' "$T/type" || { fail "p.key.pub is not P-384"; diag_file "$T/type"; }
	expect_eq "$(stat -c %a "$d/p.key")" 600 "P-384 key file mode"

	# Refused before any file is made: a bad type, a short passphrase, none.
	hc --passphrase-fd 3 officer keygen "$d/r.key" --type rsa 3<"$p"
	expect_rc 2 "keygen --type rsa"
	printf '1234567\n' >"$T/short.pass"
	hc --passphrase-fd 3 officer keygen "$d/s.key" 3<"$T/short.pass"
	expect_rc 2 "a passphrase of 7 bytes"
	expect_has "$T/err" "8 to" "short passphrase: message"
	: >"$T/empty.pass"
	hc --passphrase-fd 3 officer keygen "$d/e.key" 3<"$T/empty.pass"
	expect_rc 2 "no passphrase line at all"
	for f in r s e; do
		[ -e "$d/$f.key" ] || [ -e "$d/$f.key.pub" ] &&
		    fail "a refused keygen left $f.key or $f.key.pub"
	done
}

# ---- 2. genesis, SO quorum, login refusals, removal -------------------------

case_ofc_genesis_login() {
	local d=$T/n1 K=$OFC_DIR f=$T/b.batch n0 u0
	ofc_keys || return
	node_init "$d" c1 alpha --genesis "g1=$K/g1.key.pub" \
	    --genesis "g2=$K/g2.key.pub" || return
	node_start "$d" || return
	ofc_cfg alpha="$d" || return
	expect_eq "$(ofc_sql "$d" "SELECT role, partition, name, fingerprint FROM officers ORDER BY id")" \
	    "genesis||g1|$(ofc_fp g1)"$'\n'"genesis||g2|$(ofc_fp g2)" "officers after init"
	expect_eq "$(ofc_sql "$d" "SELECT role, m FROM quorums ORDER BY role")" \
	    "genesis|2"$'\n'"so|2" "quorums after init (genesis 2 of 2 by default)"
	expect_eq "$(ofc_audit_n "$d")" 0 "audit entries after init"

	# Genesis (2 of 2) registers three SO officers in one batch.
	ofc_batch "$f" "officer add so alice $K/alice.key.pub" \
	    "officer add so bob $K/bob.key.pub" \
	    "officer add so carol $K/carol.key.pub" \
	    "quorum show" "officer list" "whoami"
	oc -o json --as genesis --officer "$K/g1.key" --officer "$K/g2.key" \
	    --passphrase-fd 3 -f "$f" 3<"$(ofc_pass g1 g2)"
	expect_rc 0 "genesis batch" || return
	expect_empty "$T/err" "genesis batch stderr"
	jsonl_check "$T/out" 'len(L) == 6' \
	    "L[0] == {'name': 'alice', 'role': 'so', 'partition': '', 'fingerprint': '$(ofc_fp alice)'}" \
	    "L[1] == {'name': 'bob', 'role': 'so', 'partition': '', 'fingerprint': '$(ofc_fp bob)'}" \
	    "L[2] == {'name': 'carol', 'role': 'so', 'partition': '', 'fingerprint': '$(ofc_fp carol)'}" \
	    "L[3] == {'quorums': [{'role': 'so', 'partition': '', 'm': 2, 'n': 3}, {'role': 'genesis', 'partition': '', 'm': 2, 'n': 2}]}" \
	    "[(o['role'], o['name']) for o in L[4]['officers']] == [('so', 'alice'), ('so', 'bob'), ('so', 'carol'), ('genesis', 'g1'), ('genesis', 'g2')]" \
	    "L[5]['role'] == 'genesis' and L[5]['officers'] == 'g1,g2'"
	expect_eq "$(ofc_sql "$d" "SELECT seq, role, officers, op, args, result FROM audit ORDER BY seq")" \
	    "1|genesis|g1,g2|auth.login|role=genesis|granted
2|genesis|g1,g2|officer.add|role=so name=alice key=$(ofc_fp alice)|ok
3|genesis|g1,g2|officer.add|role=so name=bob key=$(ofc_fp bob)|ok
4|genesis|g1,g2|officer.add|role=so name=carol key=$(ofc_fp carol)|ok" \
	    "audit log of the genesis batch"

	# login so; whoami on the same session (-k: whoami runs after a refusal).
	ofc_batch "$f" "login so --officer $K/alice.key" whoami
	n0=$(ofc_audit_n "$d")
	oc -o json -k --passphrase-fd 3 -f "$f" 3<"$(ofc_pass alice)"
	expect_rc 3 "login so with one officer"
	jsonl_check "$T/out" 'len(L) == 2' 'L[0]["line"] == 1' \
	    'L[0]["error"]["code"] == "quorum_not_met"' \
	    'L[0]["error"]["message"] == "quorum not met: 1 of 2 so officers approved"' \
	    'L[1]["role"] == "none" and L[1]["officers"] == "" and L[1]["expires"] == 0'
	expect_eq "$(ofc_audit_n "$d")" $((n0 + 1)) "audit entries after a refused login"
	expect_eq "$(ofc_audit_last "$d")" \
	    "-||auth.login|role=so|refused: quorum not met: 1 of 2 so officers approved" \
	    "audit entry of the refused login"

	ofc_batch "$f" "login so --officer $K/alice.key --officer $K/bob.key" whoami
	oc -o json -k --passphrase-fd 3 -f "$f" 3<"$(ofc_pass alice bob)"
	expect_rc 0 "login so with two distinct officers"
	jsonl_check "$T/out" 'len(L) == 2' \
	    'L[0] == {"role": "so", "partition": "", "officers": "alice,bob"}' \
	    'L[1]["role"] == "so" and L[1]["officers"] == "alice,bob"' \
	    'L[1]["expires"] - L[1]["since"] == 900' 'L[1]["node"] == "alpha"'
	expect_eq "$(ofc_audit_last "$d")" "so|alice,bob|auth.login|role=so|granted" \
	    "audit entry of the granted login"

	ofc_batch "$f" "login so --officer $K/alice.key --officer $K/alice.key" whoami
	oc -o json -k --passphrase-fd 3 -f "$f" 3<"$(ofc_pass alice alice)"
	expect_rc 3 "login so with the same officer twice"
	jsonl_check "$T/out" 'len(L) == 2' 'L[0]["error"]["code"] == "login_refused"' \
	    '"alice approved twice" in L[0]["error"]["message"]' 'L[1]["role"] == "none"'
	expect_eq "$(ofc_audit_last "$d" | cut -d'|' -f1-3)" "-||auth.login" \
	    "audit entry of the duplicate login"

	oc --passphrase-fd 3 login so --officer "$K/g1.key" 3<"$(ofc_pass g1)"
	expect_rc 3 "a genesis officer's key for an so login"
	expect_lines "$T/err" "hsmctl: officer g1 is a genesis officer, not so" \
	    "genesis key for so: message"
	expect_empty "$T/out" "genesis key for so: stdout"

	oc --passphrase-fd 3 login so --officer "$K/stranger.key" 3<"$(ofc_pass stranger)"
	expect_rc 3 "an unregistered officer key"
	expect_lines "$T/err" "hsmctl: unknown officer key $(ofc_fp stranger)" \
	    "unregistered key: message"
	expect_eq "$(ofc_audit_last "$d")" \
	    "-||auth.login|role=so|refused: unknown officer key $(ofc_fp stranger)" \
	    "audit entry of the unknown key"

	# A wrong passphrase: exit 3, and the login is never sent (the
	# challenge stays unused, nothing is audited).
	n0=$(ofc_audit_n "$d")
	u0=$(ofc_sql "$d" "SELECT count(*) FROM challenges WHERE used = 0")
	oc --passphrase-fd 3 login so --officer "$K/bob.key" --officer "$K/alice.key" \
	    3<"$(ofc_pass :wrong-passphrase alice)"
	expect_rc 3 "a wrong passphrase"
	expect_lines "$T/err" "hsmctl: wrong passphrase for $K/bob.key" "wrong passphrase: message"
	oc -o json --passphrase-fd 3 login so --officer "$K/bob.key" 3<"$(ofc_pass :wrong-passphrase)"
	expect_rc 3 "a wrong passphrase, -o json"
	json_check "$T/out" 'd["error"]["code"] == "bad_passphrase"'
	expect_eq "$(ofc_audit_n "$d")" "$n0" "audit entries after wrong passphrases"
	expect_eq "$(ofc_sql "$d" "SELECT count(*) FROM challenges WHERE used = 0")" \
	    $((u0 + 2)) "challenges left unused by wrong passphrases"

	# Genesis manages the SO quorum and officers: never below 2 without
	# --sandbox, never fewer officers than the quorum.
	ofc_batch "$f" "quorum set so 1" "quorum set so 3" \
	    "officer remove so carol" "quorum set so 2" "officer remove so carol" \
	    "officer remove so bob" "quorum show" "officer list"
	oc -o json -k --as genesis --officer "$K/g1.key" --officer "$K/g2.key" \
	    --passphrase-fd 3 -f "$f" 3<"$(ofc_pass g1 g2)"
	expect_rc 5 "SO quorum 1 on a node without --sandbox (line 1)"
	jsonl_check "$T/out" 'len(L) == 8' \
	    'L[0]["line"] == 1 and L[0]["error"]["code"] == "conflict"' \
	    '"four-eyes" in L[0]["error"]["message"]' \
	    'L[1] == {"role": "so", "partition": "", "m": 3, "n": 3}' \
	    'L[2]["line"] == 3 and L[2]["error"]["code"] == "conflict"' \
	    'L[2]["error"]["message"].startswith("removing carol would leave 2 so officer(s) for a quorum of 3")' \
	    'L[3] == {"role": "so", "partition": "", "m": 2, "n": 3}' \
	    'L[4] == {"removed": "carol"}' \
	    'L[5]["line"] == 6 and L[5]["error"]["code"] == "conflict"' \
	    'L[6]["quorums"][0] == {"role": "so", "partition": "", "m": 2, "n": 2}' \
	    '[o["name"] for o in L[7]["officers"]] == ["alice", "bob", "g1", "g2"]'
	expect_eq "$(ofc_sql "$d" "SELECT name, revoked IS NOT NULL FROM officers WHERE role = 'so' ORDER BY id")" \
	    "alice|0"$'\n'"bob|0"$'\n'"carol|1" "SO officers in the store"
	expect_eq "$(ofc_sql "$d" "SELECT m FROM quorums WHERE role = 'so'")" 2 "SO quorum in the store"

	# A removed officer no longer counts.
	n0=$(ofc_audit_n "$d")
	oc --passphrase-fd 3 login so --officer "$K/carol.key" --officer "$K/alice.key" \
	    3<"$(ofc_pass carol alice)"
	expect_rc 3 "login with a removed officer"
	expect_lines "$T/err" "hsmctl: officer carol (so) was removed" "removed officer: message"
	expect_eq "$(ofc_audit_n "$d")" $((n0 + 1)) "the refusal is audited"
}

# ---- 3. replay and expiry -------------------------------------------------

# ofc_raw_login OUT APPROVAL...: request frames for a raw client: auth.login
# with the token and signatures of the approval files, the same again, then
# auth.whoami.
ofc_raw_login() {
	python3 - "$@" <<'PYEOF' || fail "cannot build the raw login frames"
import base64, sys

def item(b, i):
    ib = b[i]; i += 1
    mt, ai = ib >> 5, ib & 31
    if ai < 24:
        v = ai
    else:
        n = 1 << (ai - 24)
        v = int.from_bytes(b[i:i + n], "big"); i += n
    if mt == 0:
        return v, i
    if mt in (2, 3):
        s = b[i:i + v]
        return (s if mt == 2 else s.decode()), i + v
    if mt == 5:
        m = {}
        for _ in range(v):
            k, i = item(b, i); x, i = item(b, i); m[k] = x
        return m, i
    raise ValueError("unexpected CBOR type %d" % mt)

def head(mt, n):
    if n < 24:
        return bytes([mt << 5 | n])
    for ai, size in ((24, 1), (25, 2), (26, 4)):
        if n < 1 << (8 * size):
            return bytes([mt << 5 | ai]) + n.to_bytes(size, "big")

def enc(x):
    if isinstance(x, int):
        return head(0, x)
    if isinstance(x, bytes):
        return head(2, len(x)) + x
    if isinstance(x, str):
        return head(3, len(x.encode())) + x.encode()
    if isinstance(x, list):
        return head(4, len(x)) + b"".join(enc(e) for e in x)
    return head(5, len(x)) + b"".join(enc(k) + enc(v) for k, v in x.items())

aps = []
for path in sys.argv[2:]:
    lines = open(path).read().split("\n")
    aps.append(item(base64.b64decode("".join(lines[1:-2])), 0)[0])
args = {"token": aps[0]["token"],
        "approvals": [{"pubkey": a["pubkey"], "sig": a["sig"]} for a in aps]}
reqs = [{"v": 1, "id": 1, "op": "auth.login", "args": args},
        {"v": 1, "id": 2, "op": "auth.login", "args": args},
        {"v": 1, "id": 3, "op": "auth.whoami", "args": {}}]
with open(sys.argv[1], "wb") as f:
    for r in reqs:
        e = enc(r)
        f.write(len(e).to_bytes(4, "big") + e)
PYEOF
}

case_ofc_replay_expiry() {
	local K d2=$T/n2 f=$T/b.batch exp now p1 p2 rc1 rc2
	ofc_setup || return
	# A second copy whose challenges live 3 s (set before it starts).
	ofc_node "$d2" nostart || return
	ofc_sql "$d2" "INSERT OR REPLACE INTO meta (key, value) VALUES ('challenge_lifetime', '3')" || return
	node_start "$d2" || return
	ofc_cfg alpha="$N1" short="$d2" || return

	oc approval request so --out "$T/t1"
	expect_rc 0 "approval request so" || return
	expect_has "$T/out" "so login to $T/t1; " "approval request output"
	expect_has "$T/out" "hsmctl approval sign $T/t1 --officer KEY --out APPROVAL" \
	    "approval request output"
	expect_eq "$(stat -c %a "$T/t1")" 600 "token file mode"
	expect_eq "$(head -n 1 "$T/t1")" "-----BEGIN HSMCTL TOKEN-----" "token PEM type"
	# approval sign is offline: no configuration, no node.
	hc -y --passphrase-fd 3 approval sign "$T/t1" --officer "$K/alice.key" \
	    --out "$T/a1" 3<"$(ofc_pass alice)"
	expect_rc 0 "approval sign -y (alice)"
	expect_lines "$T/out" "wrote approval to $T/a1" "approval sign output"
	[[ $(cat "$T/err") =~ ^"Approving: a so login on node alpha of cluster c1, valid until "[0-9-]+" "[0-9:]+Z$ ]] ||
	    { fail "approval sign: no 'Approving: ...' line"; diag_file "$T/err"; }
	# Without -y the answer is a line of the descriptor, before the passphrase.
	hc --passphrase-fd 3 approval sign "$T/t1" --officer "$K/bob.key" \
	    --out "$T/a2" 3<"$(ofc_pass :y bob)"
	expect_rc 0 "approval sign, 'y' on the descriptor (bob)"
	hc --passphrase-fd 3 approval sign "$T/t1" --officer "$K/carol.key" \
	    --out "$T/a3" 3<"$(ofc_pass :n carol)"
	expect_rc 2 "approval sign answered 'n'"
	[ -e "$T/a3" ] && fail "an approval was written although the answer was 'n'"
	expect_eq "$(stat -c %a "$T/a1")" 600 "approval file mode"

	# A raw client logs in with the approvals, then replays them.
	ofc_raw_login "$T/raw.in" "$T/a1" "$T/a2"
	ssh_cmd "${NODE_PORT[$N1]}"
	timeout 10 "${SSH[@]}" <"$T/raw.in" >"$T/raw.out" 2>"$T/raw.err"
	[ $? != 124 ] || fail "raw client: the session did not end within 10 s"
	frames_check "$T/raw.out" 'len(f) == 3' \
	    'f[0]["id"] == 1 and f[0]["ok"] is True' \
	    'f[0]["result"]["role"] == "so" and f[0]["result"]["officers"] == "alice,bob"' \
	    'f[1]["id"] == 2 and f[1]["ok"] is False and f[1]["error"]["code"] == "login_refused"' \
	    '"already used" in f[1]["error"]["message"]' \
	    'f[2]["id"] == 3 and f[2]["result"]["role"] == "so"' ||
	    diag_file "$T/raw.err" "ssh stderr"
	expect_eq "$(ofc_sql "$N1" "SELECT result FROM audit WHERE op = 'auth.login' ORDER BY seq DESC LIMIT 2")" \
	    "refused: the challenge was already used (replay refused)"$'\n'"granted" \
	    "audit: the raw login and its replay"
	# ... and so does hsmctl.
	ofc_batch "$f" "login so --approval $T/a1 --approval $T/a2" whoami
	oc -k -f "$f"
	expect_rc 3 "hsmctl replays used approvals"
	expect_lines "$T/err" "$f:1: the challenge was already used (replay refused)" \
	    "replay: message"
	expect_kv "$T/out" role none "whoami after the replay"

	# Expired: both officers sign at once, well within the 3 s.
	oc -n short -o json approval request so --out "$T/t2"
	expect_rc 0 "approval request on the short-lived node" || return
	exp=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["expires"])' "$T/out")
	now=$(date +%s)
	if [ "$exp" -lt "$((now + 1))" ] || [ "$exp" -gt "$((now + 3))" ]; then
		fail "challenge lifetime: expires $exp, now $now (want 3 s)"
	fi
	"$HSMCTL" -y --passphrase-fd 3 approval sign "$T/t2" --officer "$K/alice.key" \
	    --out "$T/e1" 3<"$(ofc_pass alice)" </dev/null >"$T/s1.out" 2>"$T/s1.err" &
	p1=$!
	"$HSMCTL" -y --passphrase-fd 3 approval sign "$T/t2" --officer "$K/bob.key" \
	    --out "$T/e2" 3<"$(ofc_pass bob)" </dev/null >"$T/s2.out" 2>"$T/s2.err" &
	p2=$!
	wait "$p1"; rc1=$?
	wait "$p2"; rc2=$?
	check_san "$T/s1.err" "approval sign (alice, background)"
	check_san "$T/s2.err" "approval sign (bob, background)"
	if [ "$rc1" != 0 ] || [ "$rc2" != 0 ]; then
		fail "approval sign before the expiry: exit $rc1 and $rc2"
		diag_file "$T/s1.err"
		diag_file "$T/s2.err"
		return
	fi
	while [ "$(date +%s)" -le "$exp" ]; do
		sleep 0.1
	done
	hc -y --passphrase-fd 3 approval sign "$T/t2" --officer "$K/carol.key" \
	    --out "$T/e3" 3<"$(ofc_pass carol)"
	expect_rc 3 "approval sign of an expired challenge"
	expect_has "$T/err" "this challenge expired at" "expired sign: message"
	[ -e "$T/e3" ] && fail "an approval of an expired challenge was written"
	oc -n short login so --approval "$T/e1" --approval "$T/e2"
	expect_rc 3 "login with approvals of an expired challenge"
	expect_lines "$T/err" "hsmctl: the challenge has expired" "expired login: message"
	expect_eq "$(ofc_audit_last "$d2")" "-||auth.login|role=so|refused: the challenge has expired" \
	    "audit entry of the expired login"
}

# ---- 4. approvals of one node presented to another -----------------------

case_ofc_other_node() {
	local K b=$T/nb c=$T/nc dd=$T/nd f=$T/b.batch
	ofc_setup || return
	# beta: another node of alpha's cluster (a copy renamed, as no node
	# joins a cluster yet), with the same officers.
	ofc_node "$b" nostart || return
	ofc_sql "$b" "UPDATE meta SET value = 'beta' WHERE key = 'node'" || return
	node_start "$b" || return
	# gamma: another "alpha" of another "c1" (its own hsmd init).
	node_init "$c" c1 alpha --genesis "g1=$K/g1.key.pub" || return
	node_start "$c" || return
	ofc_node "$dd" || return	# delta: a clone, same name and cluster id
	ofc_cfg alpha="$N1" beta="$b" gamma="$c" delta="$dd" || return
	hc -n "${NODE_ADDR[$b]}" node info
	expect_kv "$T/out" node beta "the renamed copy"
	expect_kv "$T/out" "cluster id" "$(ofc_sql "$N1" "SELECT value FROM meta WHERE key = 'cluster_id'")" \
	    "the renamed copy's cluster"
	ofc_batch "$f" "officer add so alice $K/alice.key.pub" "officer add so bob $K/bob.key.pub"
	oc -n gamma --as genesis --officer "$K/g1.key" --passphrase-fd 3 -f "$f" \
	    3<"$(ofc_pass g1)"
	expect_rc 0 "genesis registers alice and bob on gamma" || return
	oc -n alpha approval request so --out "$T/t"
	expect_rc 0 "approval request on alpha" || return
	hc -y --passphrase-fd 3 approval sign "$T/t" --officer "$K/alice.key" --out "$T/a1" \
	    3<"$(ofc_pass alice)"
	expect_rc 0 "alice signs"
	hc -y --passphrase-fd 3 approval sign "$T/t" --officer "$K/bob.key" --out "$T/a2" \
	    3<"$(ofc_pass bob)"
	expect_rc 0 "bob signs"
	oc -n beta -o json login so --approval "$T/a1" --approval "$T/a2"
	expect_rc 3 "alpha's approvals on beta"
	json_check "$T/out" 'd["error"]["code"] == "login_refused"' \
	    'd["error"]["message"] == "the challenge was issued by node alpha, not by this node"'
	expect_eq "$(ofc_audit_last "$b" | cut -d'|' -f3,5)" \
	    "auth.login|refused: the challenge was issued by node alpha, not by this node" \
	    "beta audits the refusal"
	oc -n gamma login so --approval "$T/a1" --approval "$T/a2"
	expect_rc 3 "alpha's approvals on another alpha of c1"
	expect_lines "$T/err" "hsmctl: the challenge was issued by node alpha of another cluster, not by this node" \
	    "another cluster: message"
	oc -n delta login so --approval "$T/a1" --approval "$T/a2"
	expect_rc 3 "alpha's approvals on a clone of alpha"
	expect_lines "$T/err" "hsmctl: the challenge was not issued by this node" "clone: message"
	# None of that spent the challenge on alpha.
	ofc_batch "$f" "login so --approval $T/a1 --approval $T/a2" whoami
	oc -n alpha -f "$f"
	expect_rc 0 "the approvals on alpha, after the refusals elsewhere"
	expect_kv "$T/out" officers alice,bob "whoami on alpha"
}

# ---- 5. damaged approval files --------------------------------------------

# ofc_tamper IN OUT MODE: a damaged copy of the approval file IN.
ofc_tamper() {
	python3 - "$@" <<'PYEOF' || fail "ofc_tamper $3 failed"
import base64, sys
src, dst, mode = sys.argv[1:4]
text = open(src).read()
lines = text.split("\n")
body = bytearray(base64.b64decode("".join(lines[1:-2])))

def pem(kind, b):
    s = base64.b64encode(bytes(b)).decode()
    return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (
        kind, "\n".join(s[i:i + 64] for i in range(0, len(s), 64)), kind)

if mode == "sig":           # the signature is the last field
    body[-1] ^= 0x01
    out = pem("HSMCTL APPROVAL", body)
elif mode == "token":       # a byte of the nonce inside the signed token
    i = body.find(b"enonceX ")
    assert i > 0
    body[i + 8] ^= 0x80
    out = pem("HSMCTL APPROVAL", body)
elif mode == "type":
    out = text.replace("HSMCTL APPROVAL", "HSMCTL TOKEN")
elif mode == "base64":
    out = text.replace(lines[2], "*" + lines[2][1:])
elif mode == "truncated":
    out = text[:len(text) // 2]
elif mode == "trailing":
    out = text + "more\n"
elif mode == "garbage":
    out = "".join(chr(c) for c in range(1, 128)) * 3
elif mode == "empty":
    out = ""
open(dst, "w").write(out)
PYEOF
}

case_ofc_bad_approval() {
	local K m code c0 c1 args
	ofc_setup || return
	oc approval request so --out "$T/t1"
	expect_rc 0 "approval request" || return
	oc approval request so --out "$T/t2"
	expect_rc 0 "a second approval request" || return
	hc -y --passphrase-fd 3 approval sign "$T/t1" --officer "$K/alice.key" --out "$T/a1" \
	    3<"$(ofc_pass alice)"
	expect_rc 0 "alice signs t1"
	hc -y --passphrase-fd 3 approval sign "$T/t1" --officer "$K/bob.key" --out "$T/a2" \
	    3<"$(ofc_pass bob)"
	expect_rc 0 "bob signs t1"
	hc -y --passphrase-fd 3 approval sign "$T/t2" --officer "$K/carol.key" --out "$T/c2" \
	    3<"$(ofc_pass carol)"
	expect_rc 0 "carol signs t2"
	c0=$(count_re "$LOG" ': connected$')
	for m in sig token type base64 truncated trailing garbage empty; do
		ofc_tamper "$T/a1" "$T/bad.$m" "$m"
		code=integrity
		case $m in sig|token) code=bad_signature ;; esac
		for args in "--approval $T/a2 --approval $T/bad.$m" "--approval $T/bad.$m --approval $T/a2"; do
			# shellcheck disable=SC2086
			oc -o json login so $args
			expect_rc 8 "login with a damaged approval ($m)"
			json_check "$T/out" "d['error']['code'] == '$code'" \
			    "'$T/bad.$m' in d['error']['message']"
		done
		oc login so --approval "$T/bad.$m" --approval "$T/a2"
		expect_rc 8 "login with a damaged approval ($m), text"
		expect_has "$T/err" "hsmctl: $T/bad.$m: " "damaged approval ($m): message names the file"
	done
	# A token is not an approval; approvals of two challenges do not mix.
	oc -o json login so --approval "$T/a1" --approval "$T/t1"
	expect_rc 8 "a token given as an approval"
	json_check "$T/out" 'd["error"]["code"] == "integrity"'
	oc login so --approval "$T/a1" --approval "$T/c2"
	expect_rc 8 "approvals of two different challenges"
	expect_lines "$T/err" "hsmctl: $T/c2 approves another challenge than $T/a1" "mixed challenges: message"
	# Nothing was sent: the genuine approvals still log in, on the one
	# connection made since.
	ofc_batch "$T/b.batch" "login so --approval $T/a1 --approval $T/a2" whoami
	oc -f "$T/b.batch"
	expect_rc 0 "the undamaged approvals"
	expect_kv "$T/out" officers alice,bob "whoami after the undamaged approvals"
	c1=$(wait_count "$LOG" ': connected$' $((c0 + 1)))
	expect_eq "$c1" $((c0 + 1)) "connections to the node (damaged approvals sent nothing)"
}

# ---- 6. remote approvals, P-384 and Ed25519 --------------------------------

case_ofc_remote_mixed() {
	local K f=$T/b.batch exp u0
	ofc_setup || return
	u0=$(ofc_sql "$N1" "SELECT count(*) FROM challenges WHERE used = 1")
	oc -o json approval request so --out "$T/t"
	expect_rc 0 "approval request -o json" || return
	json_check "$T/out" "d['token'] == '$T/t'" 'd["role"] == "so"' 'd["partition"] == ""' \
	    'isinstance(d["expires"], int)'
	exp=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["expires"])' "$T/out")
	# carol (P-384) confirms on the descriptor; alice (Ed25519) with -y.
	hc --passphrase-fd 3 approval sign "$T/t" --officer "$K/carol.key" --out "$T/ac" \
	    3<"$(ofc_pass :yes carol)"
	expect_rc 0 "carol (P-384) signs"
	expect_lines "$T/err" "Approving: a so login on node alpha of cluster c1, valid until $(date -u -d "@$exp" '+%Y-%m-%d %H:%M:%SZ')" \
	    "what carol approves"
	hc -o json -y --passphrase-fd 3 approval sign "$T/t" --officer "$K/alice.key" --out "$T/aa" \
	    3<"$(ofc_pass alice)"
	expect_rc 0 "alice (Ed25519) signs, -o json"
	json_check "$T/out" "d == {'approval': '$T/aa'}"
	expect_eq "$(head -n 1 "$T/ac")" "-----BEGIN HSMCTL APPROVAL-----" "approval PEM type"
	ofc_batch "$f" "login so --approval $T/ac --approval $T/aa" whoami "officer list"
	oc -o json -f "$f"
	expect_rc 0 "login with carol's and alice's approvals"
	jsonl_check "$T/out" 'len(L) == 3' \
	    'L[0] == {"role": "so", "partition": "", "officers": "carol,alice"}' \
	    'L[1]["role"] == "so" and L[1]["officers"] == "carol,alice"'
	expect_eq "$(ofc_audit_last "$N1")" "so|carol,alice|auth.login|role=so|granted" \
	    "audit entry of the remote login"
	# A remote approval and a local key on the same challenge.
	oc approval request so --out "$T/t2"
	expect_rc 0 "second approval request" || return
	hc -y --passphrase-fd 3 approval sign "$T/t2" --officer "$K/carol.key" --out "$T/ac2" \
	    3<"$(ofc_pass carol)"
	expect_rc 0 "carol signs the second challenge"
	ofc_batch "$f" "login so --approval $T/ac2 --officer $K/alice.key" whoami
	oc --passphrase-fd 3 -f "$f" 3<"$(ofc_pass alice)"
	expect_rc 0 "carol's approval and alice's key"
	expect_kv "$T/out" officers carol,alice "whoami after the mixed login"
	expect_eq "$(ofc_sql "$N1" "SELECT count(*) FROM challenges WHERE used = 1")" $((u0 + 2)) \
	    "challenges spent (no new one for the mixed login)"
}

# ---- 7. the audit log and its hash chain ----------------------------------

# ofc_variant NAME PYTHON: a copy of the stopped $N1 in $T/v.NAME, PYTHON
# run on its store (c: a connection), started.
ofc_variant() {
	local v=$T/v.$1 msg
	cp -a "$N1" "$v" || { fail "cannot copy the node"; return 1; }
	if ! msg=$(python3 - "$v/store.db" "$2" 2>&1 <<'PYEOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
cols = ("time, node, session, role, partition, officers, op, args, "
        "result, prev, hash")
def row(seq):
    return c.execute("SELECT %s FROM audit WHERE seq = ?" % cols, (seq,)).fetchone()
def put(seq, r):
    c.execute("UPDATE audit SET (%s) = (%s) WHERE seq = ?" %
              (cols, ", ".join("?" * len(r))), (*r, seq))
n = c.execute("SELECT max(seq) FROM audit").fetchone()[0]
exec(sys.argv[2])
c.commit()
PYEOF
	); then
		fail "tampering ($1): $msg"
		return 1
	fi
	node_start "$v"
}

# ofc_verify_broken DIR WHAT REGEX: audit verify (as genesis) on the node
# DIR fails with exit 8 and a message matching REGEX.
ofc_verify_broken() {
	hc -n "${NODE_ADDR[$1]}" --accept-new-host-key --as genesis \
	    --officer "$OFC_DIR/g1.key" --passphrase-fd 3 audit verify \
	    3<"$(ofc_pass g1)"
	expect_rc 8 "audit verify: $2" || return
	[[ $(cat "$T/err") =~ ^hsmctl:\ $3$ ]] ||
	    { fail "audit verify ($2): want 'hsmctl: $3'"; diag_file "$T/err"; }
	node_stop "$1"
}

case_ofc_audit() {
	local K f=$T/b.batch n k
	ofc_setup || return
	# A scripted session: refused and granted logins, changes, a logout.
	oc --passphrase-fd 3 login so --officer "$K/alice.key" 3<"$(ofc_pass alice)"
	expect_rc 3 "a refused login"
	ofc_batch "$f" "officer remove so carol" "officer add so carol $K/carol.key.pub" \
	    "quorum set so 3" "quorum set so 2" logout
	oc --as genesis --officer "$K/g1.key" --passphrase-fd 3 -f "$f" 3<"$(ofc_pass g1)"
	expect_rc 0 "genesis changes"
	oc audit log
	expect_rc 3 "audit log without a login"
	expect_has "$T/err" "needs a login" "audit log without a login: message"
	oc audit verify
	expect_rc 3 "audit verify without a login"
	ofc_batch "$f" "audit verify" "audit log --limit 3"
	oc -o json --as so --officer "$K/alice.key" --officer "$K/bob.key" \
	    --passphrase-fd 3 -f "$f" 3<"$(ofc_pass alice bob)"
	expect_rc 0 "audit verify and audit log as SO" || return
	n=$(ofc_audit_n "$N1")
	[ "$n" -ge 12 ] || fail "only $n audit entries after the session"
	jsonl_check "$T/out" 'len(L) == 2' \
	    "L[0] == {'entries': $n, 'head': '$(ofc_sql "$N1" "SELECT hex(hash) FROM audit WHERE seq = $n" | tr A-F a-f)', 'ok': True}" \
	    "[e['seq'] for e in L[1]['entries']] == [$((n - 2)), $((n - 1)), $n]" \
	    "L[1]['entries'][2]['op'] == 'auth.login' and L[1]['entries'][2]['officers'] == 'alice,bob'" \
	    "L[1]['entries'][1]['op'] == 'auth.logout' and L[1]['entries'][1]['role'] == 'genesis'" \
	    "L[1]['entries'][0]['op'] == 'quorum.set' and L[1]['entries'][0]['args'] == 'role=so m=2'" \
	    "all(set(e) == {'seq', 'time', 'node', 'session', 'role', 'partition', 'officers', 'op', 'args', 'result'} for e in L[1]['entries'])"
	# Audit entries are hashed: four ways of breaking the chain, each on
	# its own copy of the store.
	node_stop "$N1" || return
	k=3
	ofc_variant edit "c.execute(\"UPDATE audit SET args = 'role=so name=mallory' WHERE seq = $k\")" &&
	    ofc_verify_broken "$T/v.edit" "an edited entry" "audit log broken at entry $k: its content was altered"
	k=$((n / 2))
	ofc_variant delete "c.execute('DELETE FROM audit WHERE seq = $k')" &&
	    ofc_verify_broken "$T/v.delete" "a deleted entry" "audit log broken at entry $((k + 1)): entry $k is missing or out of order"
	ofc_variant swap "a, b = row(2), row(5); put(2, b); put(5, a)" &&
	    ofc_verify_broken "$T/v.swap" "two swapped entries" "audit log broken at entry 2: .*"
	ofc_variant last "c.execute('DELETE FROM audit WHERE seq = ?', (n,))" &&
	    ofc_verify_broken "$T/v.last" "the last entry deleted" \
	    "audit log broken at entry ($n: .*|$((n + 1)): entry $n is missing.*)"
}

# ---- 8. no secret in logs, history or ps ------------------------------------

case_ofc_no_secrets() {
	local K s=$T/s.script fifo=$T/pp.fifo pid c0 h=$T/state/hsmctl/history
	ofc_setup || return
	# A login in the shell, passphrases typed at the terminal.
	cat >"$s" <<SCRIPT
expect (?m)^hsmctl c1> \$
cmd login so --officer $K/alice.key --officer $K/bob.key
expect Passphrase for officer key \\S*/alice\\.key: \$
send $(ofc_pw alice)\\r
expect Passphrase for officer key \\S*/bob\\.key: \$
send $(ofc_pw bob)\\r
expect (?m)^hsmctl c1@alpha \\[so\\]> \$
save $T/login.txt
cmd exit
exit 0
SCRIPT
	pty_run "$s" shell || { diag_file "$T/pty.log" transcript; return; }
	expect_kv "$T/login.txt" officers alice,bob "login in the shell"
	sed 's/\\040/ /g' "$h" >"$T/history.txt" 2>/dev/null
	expect_has "$T/history.txt" "login so --officer $K/alice.key" "the login in the history"
	ofc_no_secret "$h" "shell history"
	ofc_no_secret "$T/pty.log" "terminal transcript (echo off)"

	# ps while hsmctl waits for a passphrase on a FIFO.
	mkfifo "$fifo"
	c0=$(count_re "$LOG" 'auth\.challenge ok$')
	LAST="hsmctl --as so ... whoami 3<>FIFO"
	"$HSMCTL" -F "$T/cfg" --passphrase-fd 3 --as so --officer "$K/alice.key" \
	    --officer "$K/bob.key" whoami 3<>"$fifo" </dev/null >"$T/out" 2>"$T/err" &
	pid=$!
	BG_PIDS+=("$pid")
	wait_count "$LOG" 'auth\.challenge ok$' $((c0 + 1)) >/dev/null
	ofc_wait_reading "$pid"
	ps -ww -eo args >"$T/ps.txt"
	tr '\0' '\n' <"/proc/$pid/environ" >"$T/environ.txt" 2>/dev/null
	ofc_feed "$fifo" "$(ofc_pass alice bob)"
	wait "$pid"
	RC=$?
	check_san "$T/err" "$LAST"
	expect_rc 0 "--as so whoami, passphrases from a FIFO"
	expect_kv "$T/out" officers alice,bob "whoami"
	expect_has "$T/ps.txt" "--officer $K/alice.key" "ps shows the waiting hsmctl"
	ofc_no_secret "$T/ps.txt" "ps -eo args"
	ofc_no_secret "$T/environ.txt" "hsmctl's environment"
	ofc_no_secret "$T/out" "hsmctl's output"
	ofc_no_secret "$T/err" "hsmctl's errors"
	# The node saw two logins: its log (-v) and its store hold no secret.
	expect_eq "$(count_re "$LOG" 'so login granted to alice,bob')" 2 "logins in the node log"
	node_stop "$N1"
	ofc_no_secret "$LOG" "node log"
	cat "$N1"/store.db* >"$T/store.bytes" 2>/dev/null
	ofc_no_secret "$T/store.bytes" "node store"
}

# ---- 9. --as --------------------------------------------------------------

case_ofc_as() {
	local K f=$T/b.batch g0 c0 c1 a
	ofc_setup || return
	g0=$(ofc_sql "$N1" "SELECT count(*) FROM audit WHERE op = 'auth.login'")
	ofc_batch "$f" whoami "officer list" "quorum show" "audit verify" whoami
	oc -o json --as so --officer "$K/alice.key" --officer "$K/bob.key" \
	    --passphrase-fd 3 -f "$f" 3<"$(ofc_pass alice bob)"
	expect_rc 0 "--as so for a batch"
	jsonl_check "$T/out" 'len(L) == 5' \
	    'L[0]["role"] == "so" and L[0]["officers"] == "alice,bob"' \
	    '[o["name"] for o in L[1]["officers"]] == ["alice", "bob", "carol", "g1", "g2"]' \
	    'L[3]["ok"] is True' 'L[4]["session"] == L[0]["session"]'
	expect_eq "$(ofc_sql "$N1" "SELECT count(*) FROM audit WHERE op = 'auth.login'")" \
	    $((g0 + 1)) "logins audited for the batch"
	expect_eq "$(ofc_audit_last "$N1")" "so|alice,bob|auth.login|role=so|granted" \
	    "the batch's login"
	oc --as so --officer "$K/alice.key" --officer "$K/bob.key" \
	    --passphrase-fd 3 officer list 3<"$(ofc_pass alice bob)"
	expect_rc 0 "--as so for one command"
	expect_eq "$(awk 'NR > 1 {print $1 ":" $3}' "$T/out" | tr '\n' ' ')" \
	    "so:alice so:bob so:carol genesis:g1 genesis:g2 " "officer list as SO"
	expect_eq "$(ofc_sql "$N1" "SELECT count(*) FROM audit WHERE op = 'auth.login'")" \
	    $((g0 + 2)) "logins audited after the single command"
	# A refused --as login: no line runs.
	oc --as so --officer "$K/alice.key" --passphrase-fd 3 -f "$f" 3<"$(ofc_pass alice)"
	expect_rc 3 "--as so with one officer, batch"
	expect_empty "$T/out" "no line ran after the refused login"
	# Usage errors: exit 2, nothing sent.
	c0=$(count_re "$LOG" ': connected$')
	for a in pso pso: so:p1 genesis:p1 bogus ''; do
		oc --as "$a" --officer "$K/alice.key" --passphrase-fd 3 whoami 3<"$(ofc_pass alice)"
		expect_rc 2 "--as '$a'"
		expect_empty "$T/out" "--as '$a': stdout"
	done
	oc -o json --as bogus --officer "$K/alice.key" whoami
	expect_rc 2 "--as bogus, -o json"
	json_check "$T/out" 'd["error"]["code"] == "bad_value"'
	oc --as so whoami
	expect_rc 2 "--as so without officers or approvals"
	oc node info
	expect_rc 0 "node info after the usage errors"
	c1=$(wait_count "$LOG" ': connected$' $((c0 + 1)))
	expect_eq "$c1" $((c0 + 1)) "connections (the usage errors sent nothing)"
}

# ---- 10. idle timeout -------------------------------------------------------

case_ofc_idle() {
	local K s=$T/s.script pf rc
	K=$OFC_DIR
	N1=$T/n1
	ofc_node "$N1" nostart || return
	ofc_sql "$N1" "INSERT OR REPLACE INTO meta (key, value) VALUES ('idle_timeout', '2')" || return
	node_start "$N1" || return
	LOG=${NODE_LOG[$N1]}
	ofc_cfg alpha="$N1" || return
	pf=$(ofc_pass alice bob)
	cat >"$s" <<SCRIPT
expect (?m)^hsmctl c1> \$
cmd login so --officer $K/alice.key --officer $K/bob.key
expect (?m)^hsmctl c1@alpha \\[so\\]> \$
save $T/login.txt
cmd whoami
expect (?m)^hsmctl c1@alpha[^>]*> \$
save $T/w1.txt
sleep 3.5
cmd whoami
expect (?m)^hsmctl c1@alpha[^>]*> \$
save $T/w2.txt
cmd officer list
expect (?m)^hsmctl c1@alpha[^>]*> \$
save $T/ol.txt
cmd exit
exit 0
SCRIPT
	pty_cmd "$s" --passphrase-fd 3 shell
	"${PTY[@]}" 3<"$pf" >"$T/pty.out" 2>"$T/pty.err"
	rc=$?
	pty_done "$rc" || { diag_file "$T/pty.log" transcript; return; }
	expect_kv "$T/login.txt" officers alice,bob "login in the shell"
	expect_kv "$T/w1.txt" role so "whoami right after the login"
	expect_kv "$T/w2.txt" role none "whoami after 3.5 s idle (timeout 2 s)"
	expect_kv "$T/w2.txt" officers - "officers after the expiry"
	expect_lines "$T/ol.txt" "hsmctl: officer.list needs a login (hsmctl login ROLE)" \
	    "a command needing a role after the expiry"
	expect_eq "$(ofc_audit_last "$N1" | cut -d'|' -f1-3,5)" \
	    "so|alice,bob|auth.expire|login expired (idle)" "the expiry is audited"
	expect_eq "$(count_re "$LOG" 'so login of alice,bob expired after 2 s idle')" 1 \
	    "the expiry in the node log"
}

run_case "officer keygen: encrypted PKCS#8, modes, no overwrite, p384, short passphrase, not in argv" case_ofc_keygen
run_case "genesis adds SOs; so login quorum, duplicates, wrong role, unknown key, wrong passphrase, removal" case_ofc_genesis_login
run_case "approvals: replay (raw client and hsmctl) and expired challenges refused" case_ofc_replay_expiry
run_case "approvals of one node refused by another node, cluster or clone" case_ofc_other_node
run_case "damaged approval files and mixed challenges: exit 8, nothing sent" case_ofc_bad_approval
run_case "remote approvals with P-384 and Ed25519 officers, and mixed with a key" case_ofc_remote_mixed
run_case "audit log: verify, log -o json, edited/deleted/swapped/truncated store" case_ofc_audit
run_case "no passphrase or key material in logs, history, ps or the store" case_ofc_no_secrets
run_case "--as ROLE: one login for a batch, single command, usage errors" case_ofc_as
run_case "idle timeout: the login expires, whoami none, commands refused" case_ofc_idle
