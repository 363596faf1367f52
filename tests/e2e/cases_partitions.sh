# shellcheck shell=bash
#
# End-to-end cases for partitions: the parameters of DESIGN §6 (17 rows,
# 20 parameters: the first row holds the four API switches), the role
# rules of DESIGN §5, the API secret, the technical user and its keys
# (issue 6).
#
# Sourced by tests/e2e/run.sh after cases_officers.sh: it uses run.sh's
# helpers and cases_officers.sh's fixture (ofc_setup: a copy of the
# template node alpha with genesis g1, g2 and SO officers alice, bob,
# carol; ofc_key, ofc_pass, ofc_sql, oc).  The PSO officers pso1 and pso2
# are made here the same way (openssl, once per run).
#
# Nearly everything runs as small batches, hsmctl -y -o json -f: one SSH
# connection each, a login line first and the operation checked last, so
# that each checked operation has its own exact exit status.  A -k batch
# is used where a series of refusals that must all be exit 3 is checked
# line by line (each line's error code, the batch's exit status).  After
# every refusal the node's state (partitions, parameters, secrets,
# officers, quorums, keys; not the audit log) must be what it was before.
# The JSON and store checks go to one python3 per case (pt_q), as
# starting python3 for each of some 200 checks would cost half a minute.
#
# Readings of DESIGN §5 these cases hold the node to: the invalidation
# bin (key list --invalidated, restore, purge) is the SO's and PSO's, not
# the technical user's; "only the PSO sets device-so-access" holds at
# partition create too (an SO-made partition with it off could never get
# a PSO); a PSO session loses its rights as soon as partition-admin goes
# off, as the technical user's do when api.access goes off; the SO's
# partition delete is refused with device-so-access off (it goes through
# the exit procedure, a later issue).

# shellcheck disable=SC2034  # RC, LAST, ...: run.sh's
if ! declare -F ofc_setup >/dev/null; then
	echo "cases_partitions.sh: source it from tests/e2e/run.sh," \
	    "after cases_officers.sh" >&2
	exit 2
fi

# ---- helpers ---------------------------------------------------------------

# pt_setup: ofc_setup (N1, LOG, K, $T/cfg naming alpha) and the PSO keys.
pt_setup() {
	pt_q_start
	ofc_setup || return 1
	ofc_key pso1 ed25519 openssl && ofc_key pso2 ed25519 openssl
	printf 'data to sign %s\n' "$(ofc_rand)" >"$T/data"
}

# pt_batch WHO LINE...: $T/pt.batch, a login as WHO, then the lines;
# PT_PASSF is the passphrase file it reads, PT_NLOGIN 1 if it logs in.
#   none          no login
#   genesis       g1 (the template's genesis quorum is 1)
#   so            alice and bob (SO quorum 2)
#   OFFICER:P     PSO officer OFFICER (pso1, pso2) of partition P
#   user:P[:API]  the technical user of P with the secret in $T/P.secret
pt_batch() {
	local who=$1 p
	local -a pass=()
	shift
	PT_NLOGIN=1
	{
		case $who in
		none) PT_NLOGIN=0 ;;
		genesis)
			echo "login genesis --officer $K/g1.key"
			pass=(g1) ;;
		so)
			echo "login so --officer $K/alice.key --officer $K/bob.key"
			pass=(alice bob) ;;
		user:*:*)
			p=${who#user:}
			echo "login user ${p%%:*} --secret-file $T/${p%%:*}.secret --api ${p#*:}" ;;
		user:*)
			echo "login user ${who#user:} --secret-file $T/${who#user:}.secret" ;;
		*:*)
			echo "login pso ${who#*:} --officer $K/${who%%:*}.key"
			pass=("${who%%:*}") ;;
		*)
			fail "pt_batch: unknown WHO '$who'" ;;
		esac
		printf '%s\n' "$@"
	} >"$T/pt.batch"
	PT_PASSF=$(ofc_pass "${pass[@]}")
}

# pt_run [-k] WHO LINE...: run that batch (-y -o json, -k if asked); RC,
# $T/out (JSON Lines), $T/err.
pt_run() {
	local -a k=()
	local who
	if [ "$1" = -k ]; then
		k=(-k)
		shift
	fi
	who=$1
	pt_batch "$@"
	oc -y -o json "${k[@]}" --passphrase-fd 3 -f "$T/pt.batch" 3<"$PT_PASSF"
	LAST="batch as $who: $(tail -n +$((PT_NLOGIN + 1)) "$T/pt.batch" | sed "s/$/; /" | tr -d "\n")"
}

# ---- the query helper: one python3 for the whole case ----------------------
#
# Starting python3 costs 0.1-0.2 s on a small machine, and the parameter
# table alone checks over a hundred batches.  So one python3 per case
# answers the checks: a request is a file of NUL-terminated words, whose
# name goes down a pipe; the answer ("ok" or "fail") comes back on the
# other, the text in FILE.out.

PT_Q_PY='
import json, re, sqlite3, sys

def jsonl(path):
    text = open(path, encoding="utf-8").read()
    if text and not text.endswith("\n"):
        raise ValueError("the last line has no newline: %r" % text[-200:])
    L = []
    for n, line in enumerate(text.split("\n")[:-1], 1):
        try:
            L.append(json.loads(line))
        except ValueError as e:
            raise ValueError("line %d is not JSON (%s): %r" % (n, e, line[:300]))
    return L, text

def sql(db, query, *params):
    c = sqlite3.connect(db, timeout=10)
    try:
        rows = c.execute(query, params).fetchall()
        c.commit()
    finally:
        c.close()
    return "".join("|".join("" if v is None else v.hex() if isinstance(v, bytes)
                            else str(v) for v in r) + "\n" for r in rows)

STATE = """
    SELECT "partition", name, profile, coalesce(hex(secret_hash), "")
      FROM partitions
    UNION ALL SELECT "param", partition, name, value FROM partition_params
    UNION ALL SELECT "key", partition, id, state || " " || label || " " ||
      hex(priv) FROM objects
    UNION ALL SELECT "officer", role || ":" || partition, name,
      coalesce(revoked, "") FROM officers
    UNION ALL SELECT "quorum", role, partition, m FROM quorums
    ORDER BY 1, 2, 3"""

def handle(a):
    if a[0] == "state":
        return "ok", sql(a[1], STATE)
    if a[0] == "sql":
        return "ok", sql(*a[1:])
    if a[0] == "check":
        L, text = jsonl(a[1])
        for expr in a[2:]:
            try:
                ok = eval(expr, {"re": re, "L": L})
            except Exception as e:
                ok = False
                expr += "  (%s: %s)" % (type(e).__name__, e)
            if not ok:
                return "fail", "false: %s  in  %s" % (expr, text[:600])
        return "ok", ""
    if a[0] == "eval":
        L, text = jsonl(a[1])
        v = eval(a[2], {"re": re, "L": L, "json": json})
        return "ok", ("".join("%s\n" % x for x in v) if isinstance(v, list)
                      else "%s\n" % v)
    return "fail", "unknown request %r" % a[0]

for req in sys.stdin:
    req = req.rstrip("\n")
    try:
        words = [w.decode() for w in open(req, "rb").read().split(b"\0")[:-1]]
        status, text = handle(words)
    except Exception as e:
        status, text = "fail", "%s: %s" % (type(e).__name__, e)
    open(req + ".out", "w", encoding="utf-8").write(text)
    print(status, flush=True)
'

# pt_q_start: the helper of this case (in the case's own shell, not in a
# $(...): the pipes must be the case's).
pt_q_start() {
	[ "${PT_Q_T:-}" = "$T" ] && alive "${PT_Q_PID:-0}" && return 0
	if [ -n "${PT_Q_PID:-}" ]; then
		kill "$PT_Q_PID" 2>/dev/null
		wait "$PT_Q_PID" 2>/dev/null
	fi
	coproc PT_Q { exec python3 -u -c "$PT_Q_PY"; }
	BG_PIDS+=("$PT_Q_PID")
	PT_Q_T=$T
}

# pt_q WORD...: ask the helper; its answer's text on stdout; the status
# is 0 for "ok".
pt_q() {
	local st=fail req
	if [ "${PT_Q_T:-}" != "$T" ] || [ -z "${PT_Q[1]:-}" ]; then
		echo "the query helper is not running (pt_q_start)"
		return 1
	fi
	req=$(mktemp "$T/q.XXXXXX")
	printf '%s\0' "$@" >"$req"
	echo "$req" >&"${PT_Q[1]}" && read -r -t 60 st <&"${PT_Q[0]}"
	cat "$req.out" 2>/dev/null
	rm -f "$req" "$req.out"
	[ "$st" = ok ]
}

# pt_check FILE EXPR...: as run.sh's jsonl_check (L: the documents of the
# JSON Lines in FILE), answered by the helper.
pt_check() {
	local msg
	msg=$(pt_q check "$@") && return 0
	fail "JSON Lines check (\`$LAST\`): ${msg:-no answer from the query helper}"
	return 1
}

# pt_json EXPR: a Python expression on the JSON Lines of $T/out (L),
# printed (a list one item a line).
pt_json() {
	pt_q eval "$T/out" "$1" || fail "pt_json $1: failed"
}

# pt_sql SQL [PARAM...]: as ofc_sql, on $N1, by the helper.
pt_sql() {
	local out
	out=$(pt_q sql "$N1/store.db" "$@") || { fail "sqlite3: $1: $out"; return 1; }
	[ -z "$out" ] || printf '%s\n' "$out"
}

# pt_state: what a refusal must not change: partitions and their secrets,
# parameters, officers, quorums and keys (with their sealed material), one
# row a line.
pt_state() {
	pt_q state "$N1/store.db" || fail "pt_state: failed"
}

# pt_unchanged BEFORE WHAT: the state is still BEFORE.
pt_unchanged() {
	local now
	now=$(pt_state)
	[ "$now" = "$1" ] && return 0
	fail "$2: the node's state changed"
	CASE_DIAG+=$(diff <(printf '%s\n' "$1") <(printf '%s\n' "$now") |
	    head -n 20 | sed 's/^/#     | /')$'\n'
	return 1
}

# pt_ok WHAT WHO LINE...: the batch succeeds: exit 0, one document a line
# (the login's first), none an error.
pt_ok() {
	local what=$1
	shift
	pt_run "$@"
	expect_rc 0 "$what" || return 1
	pt_check "$T/out" "len(L) == $(($# - 1 + PT_NLOGIN))" \
	    'not any("error" in d for d in L)'
}

# pt_no RC CODE WHAT WHO LINE...: the last line (or, with no lines, the
# login) is refused with exit RC and error CODE, after everything before
# it succeeded; the node's state is what it was before the batch.
pt_no() {
	local rc=$1 code=$2 what=$3 before
	shift 3
	before=$(pt_state)
	pt_run "$@"
	expect_rc "$rc" "$what"
	pt_check "$T/out" "len(L) == $(($# - 1 + PT_NLOGIN))" \
	    'not any("error" in d for d in L[:-1])' \
	    "L[-1]['error']['code'] == '$code'"
	pt_unchanged "$before" "$what"
}

# pt_refused WHAT WHO LINE...: a -k batch in which the login (if any)
# succeeds and every line is refused as not authorised: exit 3, the
# error code of each line, the state unchanged.
pt_refused() {
	local what=$1 before
	shift
	before=$(pt_state)
	pt_run -k "$@"
	expect_rc 3 "$what"
	pt_check "$T/out" "len(L) == $(($# - 1 + PT_NLOGIN))" \
	    "not any('error' in d for d in L[:$PT_NLOGIN])" \
	    "[d.get('line') for d in L[$PT_NLOGIN:]] == list(range($((PT_NLOGIN + 1)), $(($# + PT_NLOGIN))))" \
	    "[(d.get('line'), d.get('error', {}).get('code')) for d in L[$PT_NLOGIN:] if d.get('error', {}).get('code') != 'not_authorized'] == []"
	pt_unchanged "$before" "$what"
}

# pt_keys WHO P N TYPE [OPTION...]: N keys of TYPE made in P by WHO in one
# batch; their ids in KEYS.
pt_keys() {
	local who=$1 p=$2 n=$3 type=$4 i
	local -a lines=()
	shift 4
	for ((i = 1; i <= n; i++)); do
		lines+=("key generate $p --type $type --label $type-$i $*")
	done
	KEYS=()
	pt_ok "generate $n $type keys in $p" "$who" "${lines[@]}" || return 1
	mapfile -t KEYS < <(pt_json '[d["id"] for d in L[1:]]')
	[ "${#KEYS[@]}" = "$n" ] || { fail "$n keys made, ${#KEYS[@]} ids"; return 1; }
}

# pt_secret P [WHO]: rotate P's API secret into $T/P.secret (as WHO, SO by
# default).
pt_secret() {
	rm -f "$T/$1.secret"
	pt_ok "rotate the API secret of $1" "${2:-so}" \
	    "partition secret $1 --rotate --out $T/$1.secret"
}

# pt_logn REGEX: how many lines of the node log match.
pt_logn() { count_re "$LOG" "$1"; }

# ---- 1. every parameter: what it allows, what it refuses --------------------

# pt_table: run the rows of a table read from stdin, one a line:
#     PARAM | WHO | RC[/CODE] | LINE[ ;; LINE]... | CHECK
# The lines run as WHO in one batch (pt_batch; "-": none, the login is
# what is checked) and must exit RC: 0, every line succeeds; otherwise
# the (one) line is refused with error CODE (by default bad_value for 2,
# not_authorized for 3, not_found for 4, read_only for 5) and the state
# is unchanged; several lines with RC 3 are each refused (pt_refused).
# CHECK, if any, is a Python expression on the batch's JSON Lines L.
# PT_COVER collects "PARAM allow" or "PARAM refuse" for each row.
pt_table() {
	local param who rc line chk what code
	local -a lines
	while IFS='|' read -r param who rc line chk; do
		read -r param <<<"$param"
		read -r who <<<"$who"
		read -r rc <<<"$rc"
		read -r line <<<"$line"
		read -r chk <<<"$chk"
		[ -z "$param" ] || [[ $param == \#* ]] && continue
		lines=()
		# shellcheck disable=SC2001  # several words
		[ "$line" = - ] || mapfile -t lines < <(sed 's/ *;; */\n/g' <<<"$line")
		what="$param: ${line/#-/login} as $who"
		code=${rc#*/}
		rc=${rc%%/*}
		if [ "$code" = "$rc" ]; then
			case $rc in
			2) code=bad_value ;;
			3) code=not_authorized ;;
			4) code=not_found ;;
			5) code=read_only ;;
			esac
		fi
		if [ "$rc" = 0 ]; then
			pt_ok "$what" "$who" "${lines[@]}"
			PT_COVER+=("$param allow")
		elif [ "${#lines[@]}" -gt 1 ] && [ "$rc" = 3 ]; then
			pt_refused "$what" "$who" "${lines[@]}"
			PT_COVER+=("$param refuse")
		else
			pt_no "$rc" "$code" "$what" "$who" "${lines[@]}"
			PT_COVER+=("$param refuse")
		fi
		[ -z "$chk" ] || pt_check "$T/out" "$chk"
	done
}

case_pt_params() {
	local k1 d1 d2 d3 sign p
	pt_setup || return
	pt_ok "create partitions p (eco), pcc (eco-cc) and q; PSO pso1 of p" so \
	    "partition create p partition-admin=on" \
	    "partition create pcc --profile eco-cc" \
	    "partition create q" \
	    "officer add pso pso1 $K/pso1.key.pub --partition p" || return
	pt_check "$T/out" "L[1]['params']['partition-admin'] == 'on'" \
	    "L[2]['profile'] == 'eco-cc' and L[2]['params']['key-extraction'] == 'off'"
	pt_secret p && pt_secret q || return
	pt_keys user:p p 5 ec-p256 || return
	k1=${KEYS[0]} d1=${KEYS[1]} d2=${KEYS[2]} d3=${KEYS[3]}
	sign="key sign p $k1 --in $T/data --out $T/sig"
	PT_COVER=()
	# Each parameter: operations it allows, then what it refuses (and
	# the SO or PSO changing it in between, rows of their own).  A bad
	# value is refused before anything is sent (no login needed: none).
	pt_table <<TABLE
api.access      | user:p        | 0 | key list p |
api.access      | so            | 0 | partition set p api.access=off | L[1]['changed'] == {'api.access': 'off'}
api.access      | user:p        | 3 | - |
api.access      | so            | 0 | partition set p api.access=on |
api.jce         | user:p:jce    | 0 | key list p |
api.jce         | pso1:p        | 0 | partition set p api.jce=off |
api.jce         | user:p:jce    | 3 | - |
api.pkcs11      | so            | 0 | partition set p api.pkcs11=off api.jce=on |
api.pkcs11      | user:p        | 3 | - |
api.pkcs11      | user:p:jce    | 0 | key list p |
api.cng         | user:p:cng    | 3 | - |
api.cng         | so            | 0 | partition set p api.cng=on |
api.cng         | user:p:cng    | 0 | key list p |
api.rest        | user:p:rest   | 3 | - |
api.rest        | pso1:p        | 0 | partition set p api.rest=on api.pkcs11=on |
api.rest        | user:p:rest   | 0 | key list p |
ska             | pso1:p        | 3 | partition set p ska=on |
ska             | so            | 0 | partition set p ska=on | L[1]['changed'] == {'ska': 'on'}
crypto-currency | pso1:p        | 3 | partition set p crypto-currency=yes |
crypto-currency | so            | 0 | partition set p crypto-currency=yes ;; partition get p crypto-currency | L[2]['value'] == 'on'
key-import      | pso1:p        | 0 | partition set p key-import=off ;; partition get p key-import | L[2]['value'] == 'off'
key-import      | none          | 2 | partition set p key-import=maybe |
key-export      | so            | 0 | partition set p key-export=0 ;; partition get p key-export | L[2]['value'] == 'off'
key-export      | none          | 2 | partition set p key-export=Off |
key-extraction  | so            | 0 | partition set p key-extraction=on ;; partition get p key-extraction | L[2]['value'] == 'on'
key-extraction  | so            | 5/conflict | partition set pcc key-extraction=on |
key-extraction  | so            | 5/conflict | partition create pcc2 --profile eco-cc key-extraction=on |
key-invalidation| user:p        | 0 | key delete p $d1 | L[1]['result'] == 'invalidated'
key-invalidation| so            | 0 | key list p --invalidated ;; key list p | [k['id'] for k in L[1]['keys']] == ['$d1'] and '$d1' not in [k['id'] for k in L[2]['keys']]
key-invalidation| so            | 0 | partition set p key-invalidation=off |
key-invalidation| user:p        | 0 | key delete p $d2 | L[1]['result'] == 'destroyed'
key-invalidation| so            | 4 | key show p $d2 |
read-only       | so            | 0 | partition set p read-only=on |
read-only       | user:p        | 5 | key generate p --type ec-p256 |
read-only       | user:p        | 5 | key delete p $d3 |
read-only       | user:p        | 0 | $sign ;; key list p |
read-only       | pso1:p        | 0 | partition set p read-only=off |
session-objects | so            | 0 | partition set p session-objects=off |
session-objects | user:p        | 5 | key generate p --type ec-p256 --session |
session-objects | user:p        | 0 | key generate p --type ec-p256 --label so-off |
session-objects | so            | 0 | partition set p session-objects=on |
object-destruction | so         | 0 | partition set p object-destruction=off |
object-destruction | user:p     | 5 | key delete p $d3 |
object-destruction | so         | 0 | partition set p object-destruction=on |
object-destruction | user:p     | 0 | key delete p $d3 |
object-usage    | so            | 0 | partition set p object-usage=false |
object-usage    | user:p        | 5 | $sign |
object-usage    | user:p        | 0 | key list p ;; key show p $k1 |
object-usage    | so            | 0 | partition set p object-usage=true |
ip-acl          | so            | 0 | partition set p ip-acl=10.9.9.9 |
ip-acl          | user:p        | 3 | - |
ip-acl          | so            | 0 | partition set p ip-acl=10.0.0.0/8,127.0.0.1/32 | L[1]['changed'] == {'ip-acl': '10.0.0.0/8,127.0.0.1'}
ip-acl          | user:p        | 0 | key list p |
ip-acl          | pso1:p        | 0 | partition set p ip-acl=::1 |
ip-acl          | user:p        | 3 | - |
ip-acl          | none          | 2 | partition set p ip-acl=10.1.2.3/8 |
ip-acl          | none          | 2 | partition set p ip-acl=10.9.9.300 |
ip-acl          | none          | 2 | partition set p ip-acl=127.0.0.1/33 |
ip-acl          | so            | 0 | partition set p ip-acl=127.0.0.0/8 |
ip-acl          | user:p        | 0 | key list p |
ip-acl          | so            | 0 | partition set p ip-acl= | L[1]['changed'] == {'ip-acl': ''}
partition-admin | so            | 0 | partition set p partition-admin=off |
partition-admin | pso1:p        | 3/login_refused | - |
partition-admin | so            | 0 | partition set p partition-admin=on |
partition-admin | pso1:p        | 0 | partition show p |
device-so-access| so            | 3 | partition set p device-so-access=off |
device-so-access| pso1:p        | 0 | partition set p device-so-access=off |
device-so-access| so            | 3 | partition show p ;; partition get p ska ;; partition set p key-import=on ;; partition secret p --rotate --out $T/dso.secret ;; key list p --invalidated ;; key purge p $d1 ;; officer add pso eve $K/stranger.key.pub --partition p ;; quorum set pso 1 --partition p |
device-so-access| pso1:p        | 0 | partition show p | L[1]['params']['device-so-access'] == 'off'
device-so-access| pso1:p        | 0 | partition set p device-so-access=on |
device-so-access| so            | 0 | partition show p |
size-mb         | so            | 0 | partition set q size-mb=0 |
size-mb         | user:q        | 5/quota | key generate q --type ec-p256 |
size-mb         | so            | 0 | partition set q size-mb=1 |
size-mb         | user:q        | 0 | key generate q --type ec-p256 |
size-mb         | pso1:p        | 3 | partition set p size-mb=20 |
size-mb         | so            | 5/conflict | partition set q size-mb=0 |
max-key-objects | so            | 0 | partition set q max-key-objects=1 |
max-key-objects | user:q        | 5/quota | key generate q --type ec-p256 |
max-key-objects | pso1:p        | 3 | partition set p max-key-objects=100 |
max-key-objects | so            | 0 | partition set q max-key-objects=0 |
max-key-objects | user:q        | 0 | key generate q --type ec-p256 |
max-key-objects | so            | 5/conflict | partition set q max-key-objects=1 |
TABLE
	[ -e "$T/dso.secret" ] && fail "a refused secret rotation left $T/dso.secret"
	# Every parameter of the table (partition params) has rows of both
	# kinds.
	hc -o json partition params
	expect_rc 0 "partition params" || return
	python3 - "$T/out" "${PT_COVER[@]}" >"$T/cover" <<'PYEOF'
import json, sys
names = [p["name"] for p in json.load(open(sys.argv[1]))["parameters"]]
have = set(sys.argv[2:])
if len(names) != 20:
    print("partition params lists %d parameters, want 20" % len(names))
for n in names:
    for kind in ("allow", "refuse"):
        if "%s %s" % (n, kind) not in have:
            print("no '%s' row for %s" % (kind, n))
for h in sorted(have):
    if h.split()[0] not in names:
        print("a row for an unknown parameter: %s" % h)
PYEOF
	[ -s "$T/cover" ] && { fail "the table does not cover every parameter"; diag_file "$T/cover"; }

	# Booleans: every spelling, shown as on/off; anything else refused.
	local -a lines=()
	for p in on off true false yes no 1 0; do
		lines+=("partition set p key-import=$p" "partition get p key-import")
	done
	pt_ok "boolean spellings" so "${lines[@]}"
	pt_check "$T/out" "[d['value'] for d in L[2::2]] == ['on', 'off'] * 4"
	for p in On OFF y enabled 2 '' ' on'; do
		pt_no 2 bad_value "boolean value '$p'" none "partition set p key-import='$p'"
	done
	hc -F "$T/cfg" --as so --officer "$K/alice.key" --officer "$K/bob.key" \
	    --passphrase-fd 3 partition show p 3<"$(ofc_pass alice bob)"
	expect_rc 0 "partition show (text)"
	expect_kv "$T/out" key-import off "partition show (text)"
	expect_kv "$T/out" ska on "partition show (text)"
}

# ---- 2. the permission matrix of DESIGN §5 -----------------------------------

# pt_actions P A B TAG: every partition, key and secret action on partition
# P, one a line (A an active key, B an invalidated one; TAG names files).
pt_actions() {
	local p=$1 a=$2 b=$3 t=$4
	cat <<LINES
partition create new-$t
partition delete $p
partition list
partition show $p
partition get $p ska
partition set $p key-import=off
partition set $p ska=on
partition set $p device-so-access=off
partition secret $p --rotate --out $T/$t.secret
officer add pso eve-$t $K/bob.key.pub --partition $p
officer remove pso pso1 --partition $p
quorum set pso 1 --partition $p
key list $p
key list $p --invalidated
key show $p $a
key restore $p $b
key purge $p $b
key generate $p --type ec-p256
key sign $p $a --in $T/data --out $T/$t.sig
key delete $p $a
audit log --partition $p
LINES
}

# pt_only REGEX P A B TAG: the actions whose first words match REGEX.
pt_only() { pt_actions "$2" "$3" "$4" "$5" | grep -E "^($1)( |\$)"; }
# pt_but REGEX P A B TAG: the others.
pt_but() { pt_actions "$2" "$3" "$4" "$5" | grep -vE "^($1)( |\$)"; }

case_pt_matrix() {
	local a1 b1 c1 d1 e1 f x2 y2
	local -a L
	pt_setup || return
	pt_ok "SO: partitions p1 and p2, PSO pso1 of p1, pso2 of p2" so \
	    "partition create p1 partition-admin=on" \
	    "partition create p2 partition-admin=on" \
	    "partition create scratch" \
	    "officer add pso pso1 $K/pso1.key.pub --partition p1" \
	    "officer add pso pso2 $K/pso2.key.pub --partition p2" || return
	pt_secret p1 && pt_secret p2 || return
	# p1: A active, B..F in the invalidation bin; p2: X active, Y in it.
	pt_keys user:p1 p1 6 ec-p256 || return
	a1=${KEYS[0]} b1=${KEYS[1]} c1=${KEYS[2]} d1=${KEYS[3]} e1=${KEYS[4]}
	f=${KEYS[5]}
	pt_ok "the user of p1 deletes five keys (to the bin)" user:p1 \
	    "key delete p1 $b1" "key delete p1 $c1" "key delete p1 $d1" \
	    "key delete p1 $e1" "key delete p1 $f" || return
	pt_keys user:p2 p2 2 ec-p256 || return
	x2=${KEYS[0]} y2=${KEYS[1]}
	pt_ok "the user of p2 deletes Y" user:p2 "key delete p2 $y2" || return
	# Only the PSO sets device-so-access (p2's goes off).
	pt_ok "pso2 turns device-so-access of p2 off" pso2:p2 \
	    "partition set p2 device-so-access=off" || return

	# No login, genesis: nothing of a partition, except genesis's list.
	mapfile -t L < <(pt_actions p1 "$a1" "$b1" none)
	pt_refused "no login: every action" none "${L[@]}"
	mapfile -t L < <(pt_but "partition list|audit" p1 "$a1" "$b1" gen)
	pt_refused "genesis: every action but partition list, audit log" genesis "${L[@]}"
	pt_ok "genesis: partition list, audit log" genesis "partition list" \
	    "audit log --partition p1"
	pt_check "$T/out" "[x['name'] for x in L[1]['partitions']] == ['p1', 'p2', 'scratch']"

	# The technical user: its keys only.
	mapfile -t L < <(pt_but "key (list|show|generate|sign|delete)" p1 "$a1" "$b1" usr)
	pt_refused "user of p1: every officer action" user:p1 "${L[@]}"
	mapfile -t L < <(pt_only "key (list|show|generate|sign|delete)" p2 "$x2" "$y2" usr2)
	pt_refused "user of p1: the keys of p2" user:p1 "${L[@]}"
	pt_ok "user of p1: generate, list, show, sign, delete in p1" user:p1 \
	    "key generate p1 --type ec-p256 --label tmp" "key list p1" \
	    "key show p1 $a1" "key sign p1 $a1 --in $T/data --out $T/u.sig"
	pt_check "$T/out" "L[2]['keys'][0]['id'] == '$a1'" "L[3]['id'] == '$a1'"
	pt_ok "user of p1: delete" user:p1 "key delete p1 $(pt_json 'L[1]["id"]')"
	# DESIGN §5 gives the bin (list, restore, purge) to the SO and PSO.
	pt_no 3 not_authorized "user of p1: key list --invalidated" user:p1 \
	    "key list p1 --invalidated"

	# The SO, device-so-access on: everything but the PSO's switch and the
	# keys' use.
	mapfile -t L < <(pt_only "partition set p1 device-so-access=off|key (generate|sign|delete)" \
	    p1 "$a1" "$b1" so)
	pt_refused "SO, device-so-access on: the PSO's switch, key use" so "${L[@]}" \
	    "partition create new-dso device-so-access=off"
	pt_ok "SO, device-so-access on: the rest" so \
	    "partition create new-so" "partition delete scratch" "partition list" \
	    "partition show p1" "partition get p1 ska" \
	    "partition set p1 key-import=off" "partition set p1 ska=on" \
	    "partition secret p1 --rotate --out $T/so.secret" \
	    "officer add pso eve-so $K/stranger.key.pub --partition p1" \
	    "officer remove pso eve-so --partition p1" \
	    "quorum set pso 1 --partition p1" "key list p1" \
	    "key list p1 --invalidated" "key show p1 $a1" \
	    "key restore p1 $b1" "key purge p1 $c1" "audit log --partition p1"
	pt_check "$T/out" "[k['id'] for k in L[12]['keys']] == ['$a1']" \
	    "{'$b1', '$c1', '$d1', '$e1', '$f'} <= {k['id'] for k in L[13]['keys']}" \
	    "L[14]['id'] == '$a1'" "L[2]['deleted'] == 'scratch'" \
	    "L[6]['changed'] == {'key-import': 'off'}" "L[10] == {'removed': 'eve-so'}"
	cp "$T/so.secret" "$T/p1.secret"

	# The SO, device-so-access off (p2): nothing of p2 but its name.
	mapfile -t L < <(pt_but "partition (create|list)|key (generate|sign|delete)|audit" p2 "$x2" "$y2" so2)
	pt_refused "SO, device-so-access off: every action on p2" so "${L[@]}"
	pt_ok "SO, device-so-access off: partition list" so "partition list"
	pt_check "$T/out" "'p2' in [x['name'] for x in L[1]['partitions']]"

	# The PSO of p1, partition-admin on.
	mapfile -t L < <(pt_only "partition (create|delete)|partition set p1 ska=on|key (generate|sign|delete)" \
	    p1 "$a1" "$b1" pso)
	pt_refused "PSO, partition-admin on: create, delete, cost option, key use" pso1:p1 \
	    "${L[@]}" "partition set p1 max-key-objects=9" "partition set p1 size-mb=9" \
	    "partition set p1 crypto-currency=on"
	pt_ok "PSO, partition-admin on: the rest" pso1:p1 \
	    "partition list" "partition show p1" "partition get p1 ska" \
	    "partition set p1 key-import=on" \
	    "partition set p1 device-so-access=off" \
	    "partition set p1 device-so-access=on" \
	    "partition secret p1 --rotate --out $T/pso.secret" \
	    "officer add pso eve-pso $K/carol.key.pub --partition p1" \
	    "officer remove pso eve-pso --partition p1" \
	    "quorum set pso 1 --partition p1" "key list p1" \
	    "key list p1 --invalidated" "key show p1 $a1" \
	    "key restore p1 $d1" "key purge p1 $e1" "audit log"
	pt_check "$T/out" "[x['name'] for x in L[1]['partitions']] == ['p1']" \
	    "L[6]['changed'] == {'device-so-access': 'on'}" \
	    "L[9] == {'removed': 'eve-pso'}" \
	    "L[16]['entries'] and all(e['partition'] == 'p1' for e in L[16]['entries'])"
	cp "$T/pso.secret" "$T/p1.secret"
	mapfile -t L < <(pt_but "partition (create|list)|key (generate|sign|delete)|audit" p2 "$x2" "$y2" pso2)
	pt_refused "PSO of p1: every action on p2" pso1:p1 "${L[@]}" \
	    "officer add pso eve-x $K/stranger.key.pub --partition p2"

	# partition-admin off: no PSO login; and a PSO session that turns it
	# off loses the role at once.
	pt_ok "SO: quorum 1 for p1, partition-admin off" so \
	    "quorum set pso 1 --partition p1" "partition set p1 partition-admin=off"
	pt_no 3 login_refused "PSO login, partition-admin off" pso1:p1
	pt_ok "SO: partition-admin on" so "partition set p1 partition-admin=on"
	mapfile -t L < <(pt_only "partition (set|secret)|officer|quorum|key (restore|purge)" \
	    p1 "$a1" "$f" pso3)
	pt_run -k pso1:p1 "partition set p1 partition-admin=off" "${L[@]}"
	expect_rc 3 "PSO after turning partition-admin off"
	pt_check "$T/out" "len(L) == $((${#L[@]} + 2))" \
	    "L[1]['changed'] == {'partition-admin': 'off'}" \
	    "[(d.get('line'), d.get('error', {}).get('code')) for d in L[2:] if d.get('error', {}).get('code') != 'not_authorized'] == []"
	pt_sql "SELECT state FROM objects WHERE id = '$f'" >"$T/f.state"
	expect_lines "$T/f.state" invalidated "the PSO without partition-admin purged or restored a key"
	[ -e "$T/pso3.secret" ] && fail "the PSO without partition-admin rotated the secret"
}

# ---- 3. partition set is atomic --------------------------------------------

case_pt_atomic() {
	local c0 s0 before
	pt_setup || return
	pt_ok "SO: partition p, PSO pso1" so "partition create p partition-admin=on" \
	    "officer add pso pso1 $K/pso1.key.pub --partition p" || return
	pt_secret p || return
	pt_keys user:p p 2 ec-p256 || return

	# A bad pair is a usage error found before anything is sent: no
	# connection at all without a login, no partition.set after one.
	before=$(pt_state)
	c0=$(pt_logn ': connected$')
	s0=$(pt_logn 'partition\.set')
	oc partition set p read-only=on bogus=1
	expect_rc 2 "set read-only=on bogus=1, no login"
	expect_has "$T/err" "'bogus'" "the message names the bad pair"
	oc partition set p read-only=on ip-acl=10.1.2.3/8
	expect_rc 2 "set read-only=on ip-acl=10.1.2.3/8, no login"
	expect_has "$T/err" "ip-acl" "the message names the bad pair"
	oc partition set p read-only=on read-only=off
	expect_rc 2 "the same parameter twice"
	oc partition set p read-only=on size-mb=-1
	expect_rc 2 "size-mb=-1"
	pt_no 2 bad_value "set read-only=on bogus=1 as SO" so "partition set p read-only=on bogus=1"
	pt_no 2 bad_value "set bogus=1 read-only=on as PSO" pso1:p "partition set p bogus=1 read-only=on"
	expect_eq "$(wait_count "$LOG" ': connected$' $((c0 + 2)))" $((c0 + 2)) \
	    "connections (only the two batches')"
	expect_eq "$(pt_logn 'partition\.set')" "$s0" "partition.set requests the node got"

	# Refused on the node: the role (a cost option for the PSO, the PSO's
	# switch for the SO) or the usage; whichever pair is bad, in any place.
	pt_no 3 not_authorized "PSO: read-only=on size-mb=0" pso1:p \
	    "partition set p read-only=on size-mb=0"
	pt_check "$T/out" "'size-mb=0' in L[1]['error']['message']"
	pt_no 3 not_authorized "PSO: read-only=on key-export=off ska=on" pso1:p \
	    "partition set p read-only=on key-export=off ska=on"
	pt_check "$T/out" "'ska=on' in L[1]['error']['message']"
	pt_no 3 not_authorized "SO: read-only=on device-so-access=off" so \
	    "partition set p read-only=on device-so-access=off"
	pt_no 5 conflict "SO: read-only=on max-key-objects=1 (2 keys)" so \
	    "partition set p read-only=on max-key-objects=1"
	pt_check "$T/out" "'max-key-objects=1' in L[1]['error']['message']"
	pt_no 5 conflict "SO: max-key-objects=1 read-only=on (2 keys)" so \
	    "partition set p max-key-objects=1 read-only=on"
	pt_no 5 conflict "SO: read-only=on size-mb=0 key-import=off (2 keys)" so \
	    "partition set p read-only=on size-mb=0 key-import=off"
	pt_ok "read-only is still off, key-import on" so \
	    "partition get p read-only" "partition get p key-import"
	pt_check "$T/out" "L[1]['value'] == 'off'" "L[2]['value'] == 'on'"
	pt_ok "user: still not read-only" user:p "key generate p --type ec-p256"

	# All good: all change, in one audit entry; refusals are not audited
	# as changes.
	pt_ok "SO: four pairs" so \
	    "partition set p read-only=on key-export=off ip-acl=127.0.0.1 max-key-objects=3" \
	    "partition show p"
	pt_check "$T/out" \
	    "L[1]['changed'] == {'read-only': 'on', 'key-export': 'off', 'ip-acl': '127.0.0.1', 'max-key-objects': '3'}" \
	    "[L[2]['params'][k] for k in ('read-only', 'key-export', 'ip-acl', 'max-key-objects')] == ['on', 'off', '127.0.0.1', '3']"
	expect_eq "$(pt_sql "SELECT officers, args, result FROM audit WHERE op = 'partition.set'")" \
	    "alice,bob|read-only=on key-export=off ip-acl=127.0.0.1 max-key-objects=3|ok" \
	    "audit entries of partition.set"
}

# ---- 4. quotas: byok-3 --------------------------------------------------------

case_pt_quota() {
	local k0 k1 k2 k3
	pt_setup || return
	pt_ok "SO: a byok-3 partition b, PSO pso1" so \
	    "partition create b --profile byok-3 partition-admin=on" \
	    "officer add pso pso1 $K/pso1.key.pub --partition b" || return
	pt_check "$T/out" "L[1]['profile'] == 'byok-3'" \
	    "{k: L[1]['params'][k] for k in ('size-mb', 'max-key-objects', 'api.jce', 'api.pkcs11', 'api.cng', 'api.rest', 'key-import', 'key-export', 'key-extraction', 'object-usage', 'key-invalidation')} == {'size-mb': '1', 'max-key-objects': '3', 'api.jce': 'on', 'api.pkcs11': 'off', 'api.cng': 'off', 'api.rest': 'off', 'key-import': 'off', 'key-export': 'on', 'key-extraction': 'off', 'object-usage': 'off', 'key-invalidation': 'on'}"
	pt_secret b || return
	pt_no 3 not_authorized "byok: the default API (pkcs11) is off" user:b
	pt_keys user:b:jce b 3 ec-p256 || return
	k0=${KEYS[0]} k1=${KEYS[1]} k2=${KEYS[2]}
	pt_no 5 quota "the fourth key" user:b:jce "key generate b --type ec-p256"
	pt_no 5 quota "the fourth key, a session object" user:b:jce \
	    "key generate b --type aes-256 --session"
	pt_no 5 read_only "byok: object-usage off" user:b:jce \
	    "key sign b $k0 --in $T/data --out $T/sig"
	# A deleted key goes to the bin, and still counts.
	pt_ok "delete one key" user:b:jce "key delete b $k0"
	pt_check "$T/out" "L[1]['result'] == 'invalidated'"
	pt_ok "partition show" so "partition show b"
	pt_check "$T/out" "L[1]['usage']['objects'] == 2" \
	    "L[1]['usage']['invalidated'] == 1" "L[1]['usage']['max_key_objects'] == 3" \
	    "L[1]['usage']['bytes'] > 0" "L[1]['usage']['size_mb'] == 1"
	pt_no 5 quota "a key in the bin still counts" user:b:jce "key generate b --type ec-p256"
	# Restored, it counts as before; purged (SO), the slot is free.
	pt_ok "SO restores it" so "key restore b $k0"
	pt_no 5 quota "after the restore" user:b:jce "key generate b --type ec-p256"
	pt_ok "delete it again" user:b:jce "key delete b $k0"
	pt_ok "SO purges it" so "key purge b $k0"
	pt_check "$T/out" "L[1]['result'] == 'purged'"
	pt_keys user:b:jce b 1 ec-p256 || return
	k3=${KEYS[0]}
	pt_no 5 quota "full again" user:b:jce "key generate b --type ec-p256"
	# The same with the PSO purging.
	pt_ok "delete another" user:b:jce "key delete b $k1"
	pt_no 5 quota "still full" user:b:jce "key generate b --type ec-p256"
	pt_ok "PSO purges it" pso1:b "key purge b $k1"
	pt_no 4 not_found "purged twice" pso1:b "key purge b $k1"
	pt_ok "a key in the freed slot" user:b:jce "key generate b --type ec-p256"
	pt_ok "three active keys" so "key list b" "key list b --invalidated"
	pt_check "$T/out" "len(L[1]['keys']) == 3 and '$k2' in [k['id'] for k in L[1]['keys']] and '$k3' in [k['id'] for k in L[1]['keys']]" \
	    "L[2]['keys'] == []"
	expect_eq "$(pt_sql "SELECT count(*) FROM objects WHERE partition = 'b'")" 3 \
	    "objects of b in the store"
}

# ---- 5. signatures verify with openssl ---------------------------------------

case_pt_sign() {
	local types="rsa-2048 rsa-4096 ec-p256 ec-p384 ed25519" t i id
	local -a ids lines
	pt_setup || return
	pt_ok "SO: partition s" so "partition create s" || return
	pt_secret s || return
	lines=()
	for t in $types aes-256; do
		lines+=("key generate s --type $t --label L-$t")
	done
	pt_ok "one key of each type" user:s "${lines[@]}" || return
	mapfile -t ids < <(pt_json '[d["id"] for d in L[1:]]')
	pt_check "$T/out" "[d['type'] for d in L[1:]] == '$types aes-256'.split()" \
	    "[d['label'] for d in L[1:]] == ['L-' + t for t in '$types aes-256'.split()]" \
	    "all(re.fullmatch('[0-9a-f]{32}', d['id']) for d in L[1:])"
	lines=()
	for id in "${ids[@]}"; do
		lines+=("key show s $id")
	done
	i=0
	for t in $types; do
		lines+=("key sign s ${ids[i]} --in $T/data --out $T/$t.sig")
		i=$((i + 1))
	done
	pt_ok "key show, key sign" user:s "${lines[@]}" || return
	pt_check "$T/out" \
	    "all(d['public_key'].startswith('-----BEGIN PUBLIC KEY-----\n') for d in L[1:6])" \
	    "'public_key' not in L[6] and L[6]['type'] == 'aes-256'" \
	    "[(d['type'], d['state'], d['extractable'], d['sensitive'], d['session']) for d in L[1:7]] == [(t, 'active', False, True, False) for t in '$types aes-256'.split()]"
	i=1
	for t in $types; do
		pt_json "L[$i]['public_key']" >"$T/$t.pub"
		i=$((i + 1))
	done
	printf 'other data\n' >"$T/other"
	for t in $types; do
		openssl pkey -pubin -in "$T/$t.pub" -noout -text >"$T/$t.txt" 2>&1 ||
		    { fail "$t: the public key PEM does not parse"; diag_file "$T/$t.txt"; }
		[ -s "$T/$t.sig" ] || { fail "$t: no signature in $T/$t.sig"; continue; }
		case $t in
		ed25519)
			openssl pkeyutl -verify -pubin -inkey "$T/$t.pub" -rawin \
			    -in "$T/data" -sigfile "$T/$t.sig" >"$T/v.out" 2>&1
			;;
		ec-p384)
			openssl dgst -sha384 -verify "$T/$t.pub" -signature "$T/$t.sig" \
			    "$T/data" >"$T/v.out" 2>&1
			;;
		*)
			openssl dgst -sha256 -verify "$T/$t.pub" -signature "$T/$t.sig" \
			    "$T/data" >"$T/v.out" 2>&1
			;;
		esac || { fail "$t: openssl does not verify the signature"; diag_file "$T/v.out"; }
		# ... and the check can fail: not over other data.
		case $t in
		ed25519)
			openssl pkeyutl -verify -pubin -inkey "$T/$t.pub" -rawin \
			    -in "$T/other" -sigfile "$T/$t.sig" ;;
		ec-p384)
			openssl dgst -sha384 -verify "$T/$t.pub" -signature "$T/$t.sig" "$T/other" ;;
		*)
			openssl dgst -sha256 -verify "$T/$t.pub" -signature "$T/$t.sig" "$T/other" ;;
		esac >/dev/null 2>&1 && fail "$t: the signature also verifies over other data"
	done
	grep -q 'Private-Key: (4096 bit' "$T/rsa-4096.txt" ||
	    grep -q 'Public-Key: (4096 bit' "$T/rsa-4096.txt" || fail "rsa-4096 is not 4096 bits"
	grep -qE 'P-384|secp384r1' "$T/ec-p384.txt" || fail "ec-p384 is not on P-384"
	grep -qE 'P-256|prime256v1' "$T/ec-p256.txt" || fail "ec-p256 is not on P-256"
	# Two signatures by the same Ed25519 key over the same data are equal;
	# an aes-256 key signs nothing.
	pt_ok "sign again" user:s "key sign s ${ids[4]} --in $T/data --out $T/ed2.sig"
	cmp -s "$T/ed25519.sig" "$T/ed2.sig" || fail "two Ed25519 signatures of the same data differ"
	pt_run user:s "key sign s ${ids[5]} --in $T/data --out $T/aes.sig"
	[ "$RC" != 0 ] || fail "an aes-256 key signed"
	[ -s "$T/aes.sig" ] && fail "an aes-256 signature was written"
}

# ---- 6. key material is sealed in the store -----------------------------------

# The test cannot ask the node for a private key (no export yet), but it
# can read the master key, which hsmd init leaves next to the store
# (master.key).  With it the check is the strongest there is: every
# objects.priv blob must be exactly nonce (12) || AES-256-GCM ciphertext
# || tag (16) under the master key with "PARTITION\0ID" as associated data
# (decrypting with another key's id must fail: the binding), and must
# decrypt to the private key whose public half key show gave (or to 32
# bytes for aes-256).  Those real private bytes (RSA d, p and q, the EC
# scalar, the Ed25519 seed, the AES key, the whole PKCS#8 DER), in every
# 16-byte window, raw, hex or base64, must then appear nowhere in the
# node's files (store.db, its -wal and -shm, everything but master.key)
# nor in its log.  A destroyed key's material is checked too (its sealed
# blob was copied before the delete).
pt_sealed_check() { # DIR LOG SHOWN DESTROYED
	python3 - "$@" <<'PYEOF'
import base64, json, os, sqlite3, sys
try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError as e:
    sys.exit("this check needs python3's cryptography module: %s" % e)

d, log, shown, destroyed = sys.argv[1:5]
master = open(os.path.join(d, "master.key"), "rb").read()
assert len(master) == 32, "master.key is not 32 bytes"
files = {}
for root, _, names in os.walk(d):
    for n in names:
        p = os.path.join(root, n)
        if n != "master.key" and os.path.isfile(p):
            files[os.path.relpath(p, d)] = open(p, "rb").read()
files["(node log)"] = open(log, "rb").read()
assert "store.db" in files, "no store.db"
pems = json.load(open(shown))	# id -> public key PEM of key show
errors = []
aead = AESGCM(master)

def aad(part, kid):
    return part.encode() + b"\0" + kid.encode()

def unseal(part, kid, blob, what):
    if len(blob) < 12 + 16 + 1:
        errors.append("%s: sealed blob of %d bytes" % (what, len(blob)))
        return None
    try:
        plain = aead.decrypt(blob[:12], blob[12:], aad(part, kid))
    except InvalidTag:
        errors.append("%s: does not decrypt as nonce || AES-256-GCM || tag "
                      "under the master key with partition and id" % what)
        return None
    if len(blob) != 12 + len(plain) + 16:
        errors.append("%s: %d bytes for %d of key" % (what, len(blob), len(plain)))
    try:
        aead.decrypt(blob[:12], blob[12:], aad(part, "0" * 32))
        errors.append("%s: decrypts with another key id" % what)
    except InvalidTag:
        pass
    try:
        aead.decrypt(blob[:12], blob[12:], aad(part + "x", kid))
        errors.append("%s: decrypts with another partition" % what)
    except InvalidTag:
        pass
    return plain

def secrets(kind, plain, pub, what):
    out = [plain]
    if kind == "aes-256":
        out.append(plain)
        if len(plain) != 32:
            errors.append("%s: %d bytes, want 32" % (what, len(plain)))
        return out
    k = ser.load_der_private_key(plain, None)
    der = k.public_key().public_bytes(ser.Encoding.DER,
                                      ser.PublicFormat.SubjectPublicKeyInfo)
    if pub is not None and der != pub:
        errors.append("%s: the sealed key is not the one of its public key" % what)
    if kid in pems and ser.load_pem_public_key(pems[kid].encode()).public_bytes(
            ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo) != der:
        errors.append("%s: key show gave another public key" % what)
    if isinstance(k, rsa.RSAPrivateKey):
        n = k.private_numbers()
        out += [x.to_bytes((x.bit_length() + 7) // 8, "big")
                for x in (n.d, n.p, n.q, n.dmp1, n.dmq1)]
    elif isinstance(k, ec.EllipticCurvePrivateKey):
        x = k.private_numbers().private_value
        out.append(x.to_bytes((k.curve.key_size + 7) // 8, "big"))
    elif isinstance(k, ed25519.Ed25519PrivateKey):
        out.append(k.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw,
                                   ser.NoEncryption()))
    return out

def search(sec, what):
    # sec[0] is the whole key as sealed (PKCS#8 DER or raw AES), the rest
    # its secret parts.  The DER also holds public parts (an RSA modulus,
    # an EC point) that are rightly stored in the clear (objects.pub), so
    # it is searched whole, and by the lines of its PEM form that hold
    # secret bytes only; the secret parts by every 16-byte window, raw
    # and in hex.
    der = sec[0]
    needles = {der}
    for s in sec[1:]:
        for i in range(0, max(1, len(s) - 15)):
            w = s[i:i + 16]
            needles |= {w, w.hex().encode(), w.hex().upper().encode()}
    spans = [(der.find(s), der.find(s) + len(s)) for s in sec[1:] if der.find(s) >= 0]
    b64 = base64.b64encode(der)
    for k in range(0, len(der) // 48):
        if any(a <= 48 * k and 48 * k + 48 <= e for a, e in spans):
            needles.add(b64[64 * k:64 * k + 64])
    for name, data in files.items():
        for w in needles:
            if w in data:
                errors.append("%s: private key bytes in %s" % (what, name))
                return

c = sqlite3.connect("file:%s?mode=ro&immutable=1" %
                    os.path.join(d, "store.db"), uri=True)
rows = c.execute("SELECT partition, id, type, pub, priv FROM objects").fetchall()
if len(rows) < 5:
    errors.append("only %d keys in the store" % len(rows))
seen = set()
for part, kid, kind, pub, priv in rows:
    what = "%s key %s" % (kind, kid)
    seen.add(kind)
    if (pub is None) != (kind == "aes-256"):
        errors.append("%s: public key %s" % (what, "missing" if pub is None else "stored"))
    plain = unseal(part, kid, priv, what)
    if plain is not None:
        search(secrets(kind, plain, pub, what), what)
part, kid, kind, blob = open(destroyed).read().split()
plain = unseal(part, kid, bytes.fromhex(blob), "destroyed " + kind)
if plain is not None:
    search(secrets(kind, plain, None, "destroyed " + kind), "destroyed " + kind)
if c.execute("SELECT count(*) FROM objects WHERE id = ?", (kid,)).fetchone()[0]:
    errors.append("the destroyed key is still in the store")
if not {"rsa-2048", "ec-p256", "ed25519", "aes-256"} <= seen:
    errors.append("key types in the store: %s" % sorted(seen))
if errors:
    sys.exit("\n".join(errors))
PYEOF
}

case_pt_sealed() {
	local -a ids
	local i addr
	pt_setup || return
	pt_ok "SO: partition m, key-invalidation off" so \
	    "partition create m key-invalidation=off" || return
	pt_secret m || return
	pt_ok "keys of each kind (two RSA, two P-256 keys)" user:m \
	    "key generate m --type rsa-2048" "key generate m --type ec-p384" \
	    "key generate m --type ed25519" "key generate m --type aes-256" \
	    "key generate m --type ec-p256" "key generate m --type rsa-2048" \
	    "key generate m --type ec-p256 --extractable --no-sensitive" || return
	mapfile -t ids < <(pt_json '[d["id"] for d in L[1:]]')
	pt_ok "key show" user:m "key show m ${ids[0]}" "key show m ${ids[1]}" \
	    "key show m ${ids[2]}" "key show m ${ids[4]}" "key show m ${ids[6]}"
	pt_check "$T/out" "L[5]['extractable'] is True and L[5]['sensitive'] is False"
	pt_json 'json.dumps({d["id"]: d["public_key"] for d in L[1:]})' >"$T/shown.json"
	# The last RSA key is destroyed; its sealed blob kept first.
	pt_sql "SELECT partition || ' ' || id || ' ' || type || ' ' || hex(priv)
	    FROM objects WHERE id = '${ids[5]}'" >"$T/destroyed"
	pt_ok "destroy one key" user:m "key delete m ${ids[5]}"
	pt_check "$T/out" "L[1]['result'] == 'destroyed'"
	addr=${NODE_ADDR[$N1]}
	node_stop "$N1" || return
	if ! pt_sealed_check "$N1" "$LOG" "$T/shown.json" "$T/destroyed" >"$T/sealed.out" 2>&1; then
		fail "key material in the store"
		diag_file "$T/sealed.out"
	fi

	# One byte of a sealed blob changed, or a blob moved to another key
	# (of the same type): the key no longer authenticates, exit 8; the
	# node keeps serving and the other keys still sign.
	node_start "$N1" "$addr" || return
	python3 - "$N1/store.db" "${ids[1]}" "${ids[4]}" "${ids[6]}" <<'PYEOF' || fail "damaging the store failed"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=10)
flip, victim, src = sys.argv[2:5]
b = bytearray(c.execute("SELECT priv FROM objects WHERE id = ?", (flip,)).fetchone()[0])
b[len(b) // 2] ^= 0x01
c.execute("UPDATE objects SET priv = ? WHERE id = ?", (bytes(b), flip))
# Both P-256: the blob of src into victim.
b = c.execute("SELECT priv FROM objects WHERE id = ?", (src,)).fetchone()[0]
c.execute("UPDATE objects SET priv = ? WHERE id = ?", (b, victim))
c.commit()
PYEOF
	pt_no 8 integrity "sign with a key whose sealed blob has one byte changed" user:m \
	    "key sign m ${ids[1]} --in $T/data --out $T/t1.sig"
	pt_no 8 integrity "sign with another key's sealed blob" user:m \
	    "key sign m ${ids[4]} --in $T/data --out $T/t2.sig"
	[ -s "$T/t1.sig" ] || [ -s "$T/t2.sig" ] && fail "a signature was written by a damaged key"
	expect_node_up "$N1" alpha "after the damaged keys"
	pt_ok "the untouched keys still sign" user:m \
	    "key sign m ${ids[0]} --in $T/data --out $T/t3.sig" \
	    "key sign m ${ids[6]} --in $T/data --out $T/t4.sig"
}

# ---- 7. the API secret ------------------------------------------------------------

case_pt_secret() {
	local s1 s2 s3 h0 f s
	pt_setup || return
	pt_ok "SO: partition s, PSO pso1" so "partition create s partition-admin=on" \
	    "officer add pso pso1 $K/pso1.key.pub --partition s" || return
	printf 'hsm1-%064d\n' 0 >"$T/s.secret"
	pt_no 3 not_authorized "login user before any secret" user:s
	# Shown once on stdout ...
	pt_ok "rotate, shown" so "partition secret s --rotate"
	pt_check "$T/out" "L[1]['name'] == 's'" \
	    "re.fullmatch('[!-~]{43,}', L[1]['secret'])"
	s1=$(pt_json "L[1]['secret']")
	# ... or written to a new file, 0600 whatever the umask.
	rm -f "$T/s.secret"
	(umask 000 && pt_run so "partition secret s --rotate --out $T/s.secret"; echo "$RC" >"$T/rc")
	RC=$(cat "$T/rc")
	expect_rc 0 "rotate --out, umask 000"
	pt_check "$T/out" "L[1] == {'name': 's', 'out': '$T/s.secret'}"
	expect_eq "$(stat -c %a "$T/s.secret")" 600 "mode of the secret file"
	expect_eq "$(wc -l <"$T/s.secret")" 1 "lines of the secret file"
	s2=$(head -n 1 "$T/s.secret")
	[ ${#s2} -ge 43 ] || fail "a secret of ${#s2} characters"
	[ "$s1" != "$s2" ] || fail "two rotations gave the same secret"
	expect_hasnt "$T/out" "$s2" "the secret on stdout with --out"
	expect_hasnt "$T/err" "$s2" "the secret on stderr with --out"
	# The old secret stops working at once; the new one works.
	printf '%s\n' "$s1" >"$T/old.secret"
	pt_batch user:s
	sed -i "s|$T/s.secret|$T/old.secret|" "$T/pt.batch"
	oc -o json -f "$T/pt.batch"
	expect_rc 3 "login user with the first secret"
	pt_ok "login user with the second secret" user:s "key list s"
	# An existing file is not overwritten, and nothing is rotated then.
	h0=$(pt_sql "SELECT hex(secret_hash) FROM partitions WHERE name = 's'")
	pt_no 5 conflict "rotate --out an existing file" so \
	    "partition secret s --rotate --out $T/s.secret"
	expect_eq "$(head -n 1 "$T/s.secret")" "$s2" "the existing secret file"
	expect_eq "$(pt_sql "SELECT hex(secret_hash) FROM partitions WHERE name = 's'")" "$h0" \
	    "the secret's hash after the refused rotation"
	# The PSO rotates too.
	cp "$T/s.secret" "$T/s2.secret"
	rm -f "$T/s.secret"
	pt_secret s pso1:s || return
	s3=$(head -n 1 "$T/s.secret")
	[ "$s3" != "$s2" ] || fail "the PSO's rotation gave the same secret"
	pt_ok "login user with the third secret" user:s "key list s"
	cp "$T/s.secret" "$T/s3.secret"
	cp "$T/s2.secret" "$T/s.secret"
	pt_no 3 not_authorized "login user with the second secret" user:s
	cp "$T/s3.secret" "$T/s.secret"
	# In text mode: the secret alone on stdout, a note on stderr.
	hc -F "$T/cfg" --as pso:s --officer "$K/pso1.key" --passphrase-fd 3 \
	    partition secret s --rotate 3<"$(ofc_pass pso1)"
	expect_rc 0 "rotate, text"
	expect_eq "$(wc -l <"$T/out")" 1 "lines on stdout (text)"
	expect_has "$T/err" "shown only this once" "the note on stderr"
	s1=$(head -n 1 "$T/out")
	printf '%s\n' "$s1" >"$T/s.secret"
	pt_ok "login user with the fourth secret" user:s "key list s"
	# Only a salted hash is kept; no secret in the log, the audit log or
	# anywhere in the store's files.
	expect_eq "$(pt_sql "SELECT length(secret_salt), length(secret_hash) FROM partitions WHERE name = 's'")" \
	    "16|32" "salt and hash lengths"
	expect_eq "$(pt_sql "SELECT count(*) FROM audit WHERE op = 'partition.secret' AND result = 'ok'")" 4 \
	    "secret rotations audited"
	pt_sql "SELECT * FROM audit" >"$T/audit.txt"
	node_stop "$N1" || return
	cat "$N1"/store.db* >"$T/store.bytes"
	for f in "$T/audit.txt" "$LOG" "$T/store.bytes"; do
		for s in "$s1" "$s2" "$s3" "$(sed -n 1p "$T/old.secret")"; do
			expect_hasnt "$f" "$s" "a secret in $(basename "$f")"
			expect_hasnt "$f" "${s: -32}" "half a secret in $(basename "$f")"
		done
	done
	python3 - "$s1" "$s2" "$s3" "$T/store.bytes" <<'PYEOF' || fail "the store holds a secret's SHA-256 (unsalted)"
import hashlib, sys
data = open(sys.argv[4], "rb").read()
sys.exit(any(hashlib.sha256(s.encode()).digest() in data for s in sys.argv[1:4]))
PYEOF
}

# ---- 8. session objects ---------------------------------------------------------

case_pt_session() {
	pt_setup || return
	pt_ok "SO: partition s" so "partition create s" || return
	pt_secret s || return
	pt_ok "a session key and a token key, listed in the same session" user:s \
	    "key generate s --type ec-p256 --session --label eph" \
	    "key generate s --type ec-p256 --label kept" "key list s"
	pt_check "$T/out" \
	    "sorted((k['label'], k['session']) for k in L[3]['keys']) == [('eph', True), ('kept', False)]"
	pt_ok "the session key in a new session" user:s "key list s"
	pt_check "$T/out" "[k['label'] for k in L[1]['keys']] == ['kept']"
	pt_ok "the SO sees no session key either, nor in the bin" so \
	    "key list s" "key list s --invalidated"
	pt_check "$T/out" "[k['label'] for k in L[1]['keys']] == ['kept']" "L[2]['keys'] == []"
	expect_eq "$(pt_sql "SELECT count(*) FROM objects WHERE session IS NOT NULL")" 0 \
	    "session objects in the store"
}

# ---- 9. partition delete ----------------------------------------------------------

case_pt_delete() {
	local c0 n before
	pt_setup || return
	pt_ok "SO: partitions d (PSO pso1, keys) and e (empty)" so \
	    "partition create d partition-admin=on" "partition create e" \
	    "officer add pso pso1 $K/pso1.key.pub --partition d" || return
	pt_secret d || return
	pt_keys user:d d 2 ec-p256 || return
	# Not a terminal and no -y: exit 2, nothing deleted.
	before=$(pt_state)
	oc --as so --officer "$K/alice.key" --officer "$K/bob.key" \
	    --passphrase-fd 3 partition delete e 3<"$(ofc_pass alice bob)"
	expect_rc 2 "partition delete without -y, stdin not a terminal"
	pt_batch so "partition delete e"
	oc -o json --passphrase-fd 3 -f "$T/pt.batch" 3<"$PT_PASSF"
	expect_rc 2 "partition delete without -y in a batch"
	pt_check "$T/out" "len(L) == 2" "L[1]['error']['code'] in ('usage', 'bad_value')"
	pt_unchanged "$before" "partition delete without -y"
	# Holding keys: only with --force.
	pt_no 5 conflict "delete a partition holding keys" so "partition delete d"
	n=$(ofc_audit_n "$N1")
	pt_ok "delete it with --force" so "partition delete d --force" "partition list"
	pt_check "$T/out" "L[1] == {'deleted': 'd'}" \
	    "[x['name'] for x in L[2]['partitions']] == ['e']"
	expect_eq "$(pt_sql "SELECT role, officers, partition, op, args, result FROM audit WHERE seq > $n AND op = 'partition.delete'")" \
	    "so|alice,bob|d|partition.delete|force|ok" "the deletion is audited"
	expect_eq "$(pt_sql "SELECT (SELECT count(*) FROM objects WHERE partition = 'd'),
	    (SELECT count(*) FROM partition_params WHERE partition = 'd'),
	    (SELECT count(*) FROM officers WHERE partition = 'd' AND revoked IS NULL)")" \
	    "0|0|0" "keys, parameters, PSO officers of d left"
	pt_no 3 login_refused "the PSO of the deleted partition" pso1:d
	pt_no 3 not_authorized "its technical user" user:d
	pt_no 4 not_found "partition show d" so "partition show d"
	pt_ok "delete the empty partition" so "partition delete e"
	# A new partition of the same name starts afresh.
	pt_ok "re-create d" so "partition create d partition-admin=on" "key list d" "partition show d"
	pt_check "$T/out" "L[2]['keys'] == []" "L[3]['officers'] == []" "L[3]['secret_rotated'] == 0"
	pt_no 3 not_authorized "the old secret on the new d" user:d
	pt_no 3 login_refused "the old PSO on the new d" pso1:d
	# Names: checked before anything is sent.
	c0=$(pt_logn ': connected$')
	for n in D -d d_1 "$(printf 'a%.0s' {1..64})" 'd e' ''; do
		oc -y partition delete "$n"
		expect_rc 2 "partition delete '$n'"
		oc partition create "$n"
		expect_rc 2 "partition create '$n'"
	done
	oc partition show "$(printf 'a%.0s' {1..63})"
	expect_rc 3 "partition show of a 63-character name (needs a login)"
	expect_eq "$(wait_count "$LOG" ': connected$' $((c0 + 1)))" $((c0 + 1)) \
	    "connections (bad names sent nothing)"
}

# ---- 10. the parameters are checked on every call --------------------------------

case_pt_every_call() {
	local s=$T/s.script pid a i
	pt_setup || return
	pt_ok "SO: partition s" so "partition create s" || return
	pt_secret s || return
	pt_keys user:s s 1 ec-p256 || return
	a=${KEYS[0]}
	# One user session in the shell; between its commands the SO changes
	# the partition.
	cat >"$s" <<SCRIPT
expect (?m)^hsmctl c1> \$
cmd login user s --secret-file $T/s.secret
expect (?m)^hsmctl c1@alpha[^>\\n]*> \$
cmd key list s
expect (?m)^hsmctl c1@alpha[^>\\n]*> \$
save $T/r1.txt
pause p1
cmd key list s
expect (?m)^hsmctl c1@alpha[^>\\n]*> \$
save $T/r2.txt
pause p2
cmd key list s
expect (?m)^hsmctl c1@alpha[^>\\n]*> \$
save $T/r3.txt
pause p3
cmd key sign s $a --in $T/data --out $T/sig
expect (?m)^hsmctl c1@alpha[^>\\n]*> \$
save $T/r4.txt
pause p4
cmd key generate s --type ec-p256
expect (?m)^hsmctl c1@alpha[^>\\n]*> \$
save $T/r5.txt
cmd key delete s $a
expect (?m)^hsmctl c1@alpha[^>\\n]*> \$
save $T/r6.txt
pause p5
cmd key delete s $a
expect (?m)^hsmctl c1@alpha[^>\\n]*> \$
save $T/r7.txt
pause p6
cmd key generate s --type ec-p256 --session
expect (?m)^hsmctl c1@alpha[^>\\n]*> \$
save $T/r8.txt
pause p7
cmd key list s
expect (?m)^hsmctl c1@alpha[^>\\n]*> \$
save $T/r9.txt
cmd exit
exit 0
SCRIPT
	pty_cmd "$s" -y -o json shell
	"${PTY[@]}" >"$T/pty.out" 2>"$T/pty.err" &
	pid=$!
	BG_PIDS+=("$pid")
	i=1
	for a in "api.access=off" "api.access=on api.pkcs11=off" \
	    "api.pkcs11=on ip-acl=10.9.9.9 object-usage=off" \
	    "ip-acl=127.0.0.1 read-only=on" \
	    "read-only=off object-destruction=off" \
	    "object-destruction=on session-objects=off" \
	    "session-objects=on api.access=off"; do
		wait_sync "p$i" "$pid" || break
		pt_ok "SO: partition set s $a" so "partition set s $a"
		touch "$T/sync/p$i.go"
		i=$((i + 1))
	done
	wait "$pid"
	pty_done $? || { diag_file "$T/pty.log" transcript; return; }
	for i in 1 2 3 4 5 6 7 8 9; do
		tr -d '\r' <"$T/r$i.txt" | grep '^{' >"$T/j$i.txt"
	done
	pt_check "$T/j1.txt" "len(L) == 1 and len(L[0]['keys']) == 1"
	pt_check "$T/j2.txt" "L == [{'error': L[0]['error']}] and L[0]['error']['code'] == 'not_authorized'" \
	    "'api.access' in L[0]['error']['message']"
	pt_check "$T/j3.txt" "L[0]['error']['code'] == 'not_authorized'" \
	    "'api.pkcs11' in L[0]['error']['message']"
	pt_check "$T/j4.txt" "L[0]['error']['code'] == 'not_authorized'" \
	    "'ip-acl' in L[0]['error']['message']"
	pt_check "$T/j5.txt" "L[0]['error']['code'] == 'read_only'"
	pt_check "$T/j6.txt" "L[0]['error']['code'] == 'read_only'"
	pt_check "$T/j7.txt" "L[0]['error']['code'] == 'read_only'" \
	    "'object-destruction' in L[0]['error']['message']"
	pt_check "$T/j8.txt" "L[0]['error']['code'] == 'read_only'" \
	    "'session-objects' in L[0]['error']['message']"
	pt_check "$T/j9.txt" "L[0]['error']['code'] == 'not_authorized'"
	[ -s "$T/sig" ] && fail "a signature was made with object-usage off"
	expect_eq "$(pt_sql "SELECT count(*) FROM objects WHERE partition = 's' AND state = 'active'")" 1 \
	    "keys of s after the refused generates and deletes"
}

run_case "partition parameters: each one's allowed and refused operation (table)" case_pt_params
run_case "permission matrix: partitions, keys, secrets x no login, genesis, SO, PSO, user" case_pt_matrix
run_case "partition set is atomic: one bad pair changes nothing" case_pt_atomic
run_case "quotas: byok-3, invalidated keys count, purge frees the slot" case_pt_quota
run_case "key sign: signatures verify with openssl against key show's public key" case_pt_sign
run_case "key material sealed in the store; a damaged blob is exit 8" case_pt_sealed
run_case "API secret: rotation, 0600 file, old one refused, never stored or logged" case_pt_secret
run_case "session objects: seen in their session only" case_pt_session
run_case "partition delete: -y, --force, PSO and user gone, audited; names" case_pt_delete
run_case "parameters are checked on every call of an open user session" case_pt_every_call
