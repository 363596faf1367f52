# shellcheck shell=bash
#
# End-to-end cases of issue 7: a cluster of real nodes (master, clone, bc)
# on loopback: joining under four-eyes, ordered replication, catch-up and
# snapshots, routing and failover, promotion with epoch fencing.
#
# Sourced by tests/e2e/run.sh after its own cases; the nodes are copies of
# the officer template of cases_officers.sh (genesis g1/g2, SOs alice, bob,
# carol with quorum 2).
# shellcheck disable=SC2034  # RC, LAST, LOG, ...: run.sh's
if ! declare -F run_case >/dev/null; then
	echo "cases_cluster.sh: source it from tests/e2e/run.sh" >&2
	exit 2
fi

# ---- helpers ---------------------------------------------------------------

# cl_so ARGS...: hsmctl with the case's configuration, logged in as SO by
# alice and bob (four-eyes).
cl_so() {
	local p
	p=$(ofc_pass alice bob)
	hc -F "$T/cfg" --as so --officer "$K/alice.key" --officer "$K/bob.key" \
	    --passphrase-fd 3 "$@" 3<"$p"
}

# cl_fp DIR: the host key fingerprint of the running node DIR.
cl_fp() {
	ssh-keygen -lf "$1/ssh_host_ed25519_key.pub" | awk '{print $2}'
}

# cl_join DIR NAME ROLE MASTER_DIR: hsmd init --join (pinning the master's
# key) and start on a fixed port (kept in CL_PORT[DIR] for restarts).
declare -A CL_PORT=()
cl_join() {
	local d=$1 name=$2 role=$3 m=$4
	hd init -d "$d" --join "${NODE_ADDR[$m]}" --name "$name" --role "$role" \
	    --authorize "$TK.pub" --master-fingerprint "$(cl_fp "$m")"
	expect_rc 0 "hsmd init --join $name" || return 1
	expect_has "$T/out" "cluster admit $name" "init --join tells what next"
	CL_PORT[$d]=$(free_port)
	node_start "$d" "127.0.0.1:${CL_PORT[$d]}"
}

# cl_info DIR: "role epoch last_seq digest" of the node DIR (node info).
cl_info() {
	timeout -k 5 60 "$HSMCTL" -n "${NODE_ADDR[$1]}" -o json node info \
	    --digest </dev/null 2>/dev/null | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
    print(d["role"], d["epoch"], d["last_seq"], d["digest"])
except Exception:
    print("? ? ? ?")'
}

# cl_wait_same WHAT DIR...: wait (at most 30 s) until the nodes hold the
# same replicated state (digest) at the same sequence number.
cl_wait_same() {
	local what=$1 t0 d first same
	shift
	t0=$(now_ms)
	while :; do
		first="" same=1
		for d in "$@"; do
			local i
			i=$(cl_info "$d")
			i=${i#* * }	# "last_seq digest"
			[ -z "$first" ] && first=$i
			[ "$i" = "$first" ] && [[ $i != \?* ]] || same=0
		done
		[ "$same" = 1 ] && return 0
		if [ $(( $(now_ms) - t0 )) -gt 30000 ]; then
			fail "$what: the nodes did not converge within 30 s"
			for d in "$@"; do
				CASE_DIAG+="#     $(basename "$d"): $(cl_info "$d")"$'\n'
			done
			return 1
		fi
		sleep 0.2
	done
}

# cl_wait_role DIR ROLE EPOCH WHAT: wait (at most 30 s) for that role.
cl_wait_role() {
	local t0 i
	t0=$(now_ms)
	while :; do
		i=$(cl_info "$1")
		[[ $i == "$2 $3 "* ]] && return 0
		if [ $(( $(now_ms) - t0 )) -gt 30000 ]; then
			fail "$4: $(basename "$1") is '$i', want role $2 epoch $3"
			diag_file "${NODE_LOG[$1]}" "hsmd log"
			return 1
		fi
		sleep 0.2
	done
}

# cl_replog DIR: the node's replication log, one "seq|epoch|changes" a line.
cl_replog() {
	ofc_sql "$1" "SELECT seq, epoch, hex(changes) FROM replog WHERE seq >= ?1
	    ORDER BY seq" "$2"
}

# cl_form [4]: a started cluster c1: N1 master alpha (copy of the officer
# template), N2 clone beta, N3 bc gamma (and N4 clone delta with "4"),
# admitted by the SO quorum and in sync; $T/cfg lists them.
cl_form() {
	local cfg=() names=() n
	K=$OFC_DIR
	N1=$T/n1 N2=$T/n2 N3=$T/n3 N4=$T/n4
	ofc_node "$N1" nostart || return 1
	CL_PORT[$N1]=$(free_port)
	node_start "$N1" "127.0.0.1:${CL_PORT[$N1]}" || return 1
	LOG=${NODE_LOG[$N1]}
	cl_join "$N2" beta clone "$N1" || return 1
	cl_join "$N3" gamma bc "$N1" || return 1
	cfg=(alpha="$N1" beta="$N2" gamma="$N3")
	if [ "${1:-3}" = 4 ]; then
		cl_join "$N4" delta clone "$N1" || return 1
		cfg+=(delta="$N4")
	fi
	ofc_cfg "${cfg[@]}" || return 1
	names=(beta gamma)
	[ "${1:-3}" = 4 ] && names+=(delta)
	for n in "${names[@]}"; do
		cl_so cluster admit "$n"
		expect_rc 0 "cluster admit $n" || return 1
	done
	if [ "${1:-3}" = 4 ]; then
		cl_wait_same "formed" "$N1" "$N2" "$N3" "$N4"
	else
		cl_wait_same "formed" "$N1" "$N2" "$N3"
	fi
}

# ---- 1. forming the cluster; replication; roles ----------------------------

case_cl_form() {
	local m x=$T/x
	K=$OFC_DIR
	N1=$T/n1
	ofc_node "$N1" || return
	# Joining checks the master's key: none given, or a wrong one.
	hd init -d "$x" --join "${NODE_ADDR[$N1]}" --name beta --role clone
	expect_rc 7 "init --join without the master's fingerprint"
	expect_has "$T/err" "$(cl_fp "$N1")" "the fingerprint is shown to check"
	[ ! -e "$x" ] || fail "init --join without fingerprint created $x"
	hd init -d "$x" --join "${NODE_ADDR[$N1]}" --name beta --role clone \
	    --master-fingerprint SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
	expect_rc 7 "init --join with a wrong fingerprint"
	[ ! -e "$x" ] || fail "init --join with a wrong key created $x"
	hd init -d "$x" --join "${NODE_ADDR[$N1]}" --name beta --role master \
	    --master-fingerprint "$(cl_fp "$N1")"
	expect_rc 2 "init --join --role master"
	hd init -d "$x" --join "${NODE_ADDR[$N1]}" --name beta --role clone \
	    --cluster c1 --master-fingerprint "$(cl_fp "$N1")"
	expect_rc 2 "init --join with --cluster"
	node_stop "$N1"
	rm -rf "$T/n1" "$T/n1.log"

	cl_form || return
	# Before admission a joining node serves node info only: checked
	# through the pending join list of the master.
	cl_so cluster admit nosuch
	expect_rc 4 "admit a node that never asked"
	hc -F "$T/cfg" --as so --officer "$K/alice.key" --passphrase-fd 3 \
	    cluster admit beta 3<"$(ofc_pass alice)"
	expect_rc 3 "admit with one SO officer"

	# A change on the master (routed: no -n) reaches the clone and the bc.
	cl_so partition create acme
	expect_rc 0 "partition create (routed to the master)"
	cl_wait_same "after partition create" "$N1" "$N2" "$N3" || return
	cl_so -n beta partition show acme
	expect_rc 0 "partition show on the clone"
	expect_has "$T/out" acme "the clone has the partition"
	cl_so -n beta partition create other
	expect_rc 5 "a change sent to the clone"
	expect_has "$T/err" "alpha" "the refusal names the master"
	cl_so -n gamma partition list
	expect_rc 5 "partition list on the bc node"
	expect_has "$T/err" "business-continuity" "bc refusal says why"
	hc -F "$T/cfg" -n gamma node info
	expect_rc 0 "node info on the bc node"
	expect_kv "$T/out" role bc "gamma is the bc node"
	cl_so -n gamma key list acme
	expect_rc 5 "key list on the bc node"
	# node list: roles, epochs, sequences, in JSON.
	m=$(ofc_sql "$N1" "SELECT value FROM meta WHERE key = 'last_seq'")
	hc -F "$T/cfg" -o json node list
	expect_rc 0 "node list" &&
	json_check "$T/out" \
	    "[(n['name'], n['role'], n['epoch'], n['reachable']) for n in d['nodes']] == [('alpha', 'master', 1, True), ('beta', 'clone', 1, True), ('gamma', 'bc', 1, True)]" \
	    "all(n['last_seq'] == $m and n['lag_seq'] == 0 for n in d['nodes'])"
	hc -F "$T/cfg" -o json cluster status
	expect_rc 0 "cluster status" &&
	json_check "$T/out" "d['state'] == 'healthy'" "d['master'] == 'alpha'" \
	    "d['nodes'] == 3 and d['reachable'] == 3"
	# A node that does not answer in time is shown so, not waited for.
	kill -STOP "${NODE_PID[$N3]}"
	hc -F "$T/cfg" -o json cluster status
	expect_rc 0 "cluster status with a hung node" &&
	json_check "$T/out" "d['state'] == 'degraded'" "d['reachable'] == 2" \
	    "'gamma unreachable' in d['problems']" \
	    "[n['reachable'] for n in d['node_list']] == [True, True, False]"
	kill -CONT "${NODE_PID[$N3]}"
	# The replicas log what they applied under the master's name.
	x=$(ofc_sql "$N2" "SELECT count(*) FROM audit WHERE node = 'alpha' AND op = 'partition.create'")
	expect_eq "$x" 1 "the clone's audit log has the master's change"
	hc -F "$T/cfg" -n beta --as so --officer "$K/alice.key" \
	    --officer "$K/bob.key" --passphrase-fd 3 audit verify \
	    3<"$(ofc_pass alice bob)"
	expect_rc 0 "the clone's audit chain verifies"
	# The cluster's secrets reached the members, nowhere else.
	cmp -s "$N1/master.key" "$N2/master.key" ||
	    fail "the clone did not get the cluster's master key"
	cmp -s "$N1/backup.key" "$N3/backup.key" ||
	    fail "the bc node did not get the cluster's backup key"
	[ "$(stat -c %a "$N2/master.key")" = 600 ] ||
	    fail "master.key of the clone is not 0600"
}

# ---- 2. 1,000 changes in order; kill -9 and catch-up; snapshot ------------

case_cl_stream() {
	local f=$T/many.batch i pid t0 seq a b c
	cl_form || return
	cl_so partition create acme
	expect_rc 0 "partition create" || return
	# whoami between the changes: adjacent partition set lines would go
	# as one batch request and one transaction (one log entry); this is
	# 1,000 transactions.
	for i in $(seq 1 1000); do
		if [ $((i % 2)) = 0 ]; then
			echo "partition set acme size-mb=$((10 + i % 50))"
		else
			echo "partition set acme max-key-objects=$i"
		fi
		echo whoami
	done >"$f"
	# The stream runs while the clone is killed and restarted.
	(cl_so -f "$f") &
	pid=$!
	BG_PIDS+=("$pid")
	t0=$(now_ms)
	while seq=$(ofc_sql "$N2" "SELECT value FROM meta WHERE key = 'last_seq'") &&
	    [ "${seq:-0}" -lt 300 ] && [ $(( $(now_ms) - t0 )) -lt 60000 ]; do
		sleep 0.1
	done
	kill -KILL "${NODE_PID[$N2]}"
	wait "${NODE_PID[$N2]}" 2>/dev/null
	unset "NODE_PID[$N2]"
	sleep 0.5
	node_start "$N2" "127.0.0.1:${CL_PORT[$N2]}" || return
	wait "$pid"
	[ $? = 0 ] || fail "the batch of 1,000 changes failed"
	cl_wait_same "1,000 changes" "$N1" "$N2" "$N3" || return
	ofc_sql "$N2" "PRAGMA integrity_check" >"$T/ic"
	expect_eq "$(cat "$T/ic")" ok "the killed clone's store is intact"
	# Same log everywhere: no entry reordered, skipped or applied twice.
	# Compared from where the replicas' logs begin (after their snapshot).
	i=$(ofc_sql "$N2" "SELECT max((SELECT min(seq) FROM replog),
	    (SELECT min(seq) FROM replog WHERE seq > 0)) FROM replog LIMIT 1")
	i=$(( i > $(ofc_sql "$N3" "SELECT min(seq) FROM replog") ? i :
	    $(ofc_sql "$N3" "SELECT min(seq) FROM replog") ))
	a=$(cl_replog "$N1" "$i" | sha256sum) b=$(cl_replog "$N2" "$i" | sha256sum)
	c=$(cl_replog "$N3" "$i" | sha256sum)
	[ "$(cl_replog "$N1" "$i" | wc -l)" -ge 1000 ] ||
	    fail "fewer than 1,000 entries compared"
	expect_eq "$b" "$a" "the clone's replication log is the master's"
	expect_eq "$c" "$a" "the bc node's replication log is the master's"
	i=$(ofc_sql "$N3" "SELECT count(*) = max(seq) - min(seq) + 1 FROM replog")
	expect_eq "$i" 1 "the bc node's log has no gap"
	i=$(ofc_sql "$N1" "SELECT value FROM partition_params WHERE partition = 'acme' AND name = 'max-key-objects'")
	expect_eq "$i" 999 "the last change is in"

	# Too far behind the retained log: a snapshot.
	hd config -d "$N1" replog-retain 10
	expect_rc 0 "hsmd config replog-retain"
	node_stop "$N2" || return
	for i in $(seq 1 100); do
		echo "partition set acme max-key-objects=$((2000 + i))"
		echo whoami
	done >"$f"
	cl_so -f "$f"
	expect_rc 0 "100 changes while the clone is down"
	i=$(ofc_sql "$N1" "SELECT min(seq) > (SELECT value FROM meta WHERE key = 'last_seq') - 200 FROM replog")
	expect_eq "$i" 1 "the master pruned its log"
	node_start "$N2" "127.0.0.1:${CL_PORT[$N2]}" || return
	cl_wait_same "after the snapshot" "$N1" "$N2" "$N3" || return
	expect_has "${NODE_LOG[$N2]}" "took a snapshot" "the clone took a snapshot"
}

# ---- 3. failover: the master stops; promote; the old master returns -------

case_cl_failover() {
	local i
	cl_form || return
	cl_so partition create acme
	expect_rc 0 "partition create" || return
	cl_wait_same "before the failover" "$N1" "$N2" "$N3" || return
	# No majority, no promotion; the cluster then goes on as it was.
	node_stop "$N1" || return
	node_stop "$N3" || return
	cl_so -n beta -y cluster promote beta
	expect_rc 5 "promote without a majority"
	expect_has "$T/err" "1 of 3 votes" "the refusal counts the votes"
	node_start "$N1" "127.0.0.1:${CL_PORT[$N1]}" || return
	node_start "$N3" "127.0.0.1:${CL_PORT[$N3]}" || return
	cl_so partition create still
	expect_rc 0 "the master goes on after a refused promotion"
	cl_wait_same "after the refused promotion" "$N1" "$N2" "$N3" || return
	[[ $(cl_info "$N1") == "master 1 "* ]] || fail "alpha is no longer master"
	node_stop "$N1" || return
	# Reads go on (routed to the clone); changes are refused.
	cl_so partition show acme
	expect_rc 0 "a read with the master down"
	cl_so -v partition create beta2
	expect_rc 5 "a change with the master down"
	expect_has "$T/err" "master unavailable" "exit 5 says why"
	expect_has "$T/err" "skipping alpha" "-v shows the node skipped"
	hc -F "$T/cfg" --as so --officer "$K/alice.key" --passphrase-fd 3 -y \
	    cluster promote beta 3<"$(ofc_pass alice)"
	expect_rc 3 "promote with one SO officer"
	cl_so -y cluster promote gamma
	expect_rc 5 "a bc node cannot be promoted"
	cl_so -y cluster promote beta
	expect_rc 0 "cluster promote beta" || return
	# Epoch 2 went to the refused attempt: one vote per epoch, never reused.
	expect_kv "$T/out" epoch 3 "the new epoch"
	cl_so partition create after
	expect_rc 0 "changes go on at the new master"
	# The old master comes back: it steps down and converges.
	node_start "$N1" "127.0.0.1:${CL_PORT[$N1]}" || return
	cl_wait_role "$N1" clone 3 "the old master demotes itself" || return
	cl_wait_same "after the old master returned" "$N1" "$N2" "$N3" || return
	cl_so -n alpha partition create straight
	expect_rc 5 "a change sent straight to the old master"
	expect_has "$T/err" "beta" "the refusal names the new master"
	hc -F "$T/cfg" -o json node list
	expect_rc 0 "node list after the failover" &&
	json_check "$T/out" \
	    "[(n['name'], n['role'], n['epoch']) for n in d['nodes']] == [('alpha', 'clone', 3), ('beta', 'master', 3), ('gamma', 'bc', 3)]"
	i=$(ofc_sql "$N1" "SELECT count(*) FROM partitions WHERE name = 'after'")
	expect_eq "$i" 1 "the old master has the change made without it"
	# Switching back while both run: a handover without loss.
	cl_so -y cluster promote alpha
	expect_rc 0 "promote the old master back (handover)" || return
	expect_kv "$T/out" epoch 4 "epoch 4"
	cl_wait_role "$N2" clone 4 "beta steps down" || return
	cl_so partition create back
	expect_rc 0 "a change at alpha again"
	cl_wait_same "after the handover" "$N1" "$N2" "$N3"
}

# ---- 4. split brain ---------------------------------------------------------

case_cl_split() {
	local p1 p2 r1 r2 r masters d
	cl_form 4 || return
	cl_so partition create acme
	expect_rc 0 "partition create" || return
	cl_wait_same "before" "$N1" "$N2" "$N3" "$N4" || return
	node_stop "$N1" || return
	# Two clones told to be master at once: one epoch, one master.
	mkdir -p "$T/p1" "$T/p2"
	cp "$T/cfg" "$T/p1/cfg" && cp "$T/cfg" "$T/p2/cfg"
	(T=$T/p1; cl_so -n beta -y cluster promote beta; echo "$RC" >"$T/rc") &
	p1=$!
	(T=$T/p2; cl_so -n delta -y cluster promote delta; echo "$RC" >"$T/rc") &
	p2=$!
	wait "$p1" "$p2"
	r1=$(cat "$T/p1/rc") r2=$(cat "$T/p2/rc")
	[ "$r1" = 0 ] && [ "$r2" = 0 ] && fail "both candidates were promoted"
	for r in "$r1" "$r2"; do
		[ "$r" = 0 ] || [ "$r" = 5 ] || fail "a promote exited $r, want 0 or 5"
	done
	if [ "$r1" != 0 ] && [ "$r2" != 0 ]; then
		# A split vote: neither won; a second try does.
		cl_so -n beta -y cluster promote beta
		expect_rc 0 "promote after a split vote" || return
	fi
	masters=0
	for d in "$N2" "$N3" "$N4"; do
		[[ $(cl_info "$d") == master* ]] && masters=$((masters + 1))
	done
	expect_eq "$masters" 1 "exactly one master"
	cl_so partition create late
	expect_rc 0 "a change at the one master"
	cl_wait_same "all in sync" "$N2" "$N3" "$N4"
	# The old master returns under the old epoch: fenced, it follows.
	node_start "$N1" "127.0.0.1:${CL_PORT[$N1]}" || return
	cl_wait_same "the old master follows" "$N1" "$N2" "$N3" "$N4" || return
	[[ $(cl_info "$N1") == clone* ]] || fail "the old master is not a clone"
}

# ---- 5. an old master's own changes: kept aside, never merged -------------

case_cl_diverged() {
	local n
	cl_form || return
	cl_so partition create acme
	expect_rc 0 "partition create" || return
	cl_wait_same "before" "$N1" "$N2" "$N3" || return
	# The replicas stop pulling; the master takes a change nobody gets.
	kill -STOP "${NODE_PID[$N2]}" "${NODE_PID[$N3]}"
	cl_so -n alpha partition create lonely
	expect_rc 0 "a change the replicas do not get"
	kill -KILL "${NODE_PID[$N1]}"
	wait "${NODE_PID[$N1]}" 2>/dev/null
	unset "NODE_PID[$N1]"
	kill -CONT "${NODE_PID[$N2]}" "${NODE_PID[$N3]}"
	cl_so -n beta -y cluster promote beta
	expect_rc 0 "promote beta" || return
	cl_so partition create newer
	expect_rc 0 "a change at the new master"
	node_start "$N1" "127.0.0.1:${CL_PORT[$N1]}" || return
	cl_wait_role "$N1" clone 2 "the old master demotes itself" || return
	cl_wait_same "after the divergence" "$N1" "$N2" "$N3" || return
	n=$(ofc_sql "$N1" "SELECT count(*) FROM partitions WHERE name = 'lonely'")
	expect_eq "$n" 0 "the old master's lost change is not merged"
	n=$(ls "$N1"/diverged-*.db 2>/dev/null | head -n 1)
	if [ -z "$n" ]; then
		fail "the old master's store was not kept aside"
	else
		mkdir -p "$T/kept" && cp "$n" "$T/kept/store.db"
		n=$(ofc_sql "$T/kept" "SELECT count(*) FROM partitions WHERE name = 'lonely'")
		expect_eq "$n" 1 "the kept store holds the lost change"
	fi
	expect_has "${NODE_LOG[$N1]}" "diverged" "the log says what was kept"
}

# ---- 6. batch groups: adjacent lines, one request, one transaction --------

# cl_seq DIR: the node's last replication log sequence number.
cl_seq() { ofc_sql "$1" "SELECT value FROM meta WHERE key = 'last_seq'"; }

# cl_param DIR PARTITION NAME: a partition parameter as stored.
cl_param() {
	ofc_sql "$1" "SELECT value FROM partition_params WHERE partition = ?1
	    AND name = ?2" "$2" "$3"
}

case_cl_batch_group() {
	local f=$T/group.batch s0 s1 a0 a1 b0 g0 p0 msg v
	cl_form || return
	cl_so partition create acme
	expect_rc 0 "partition create acme" || return
	cl_so partition create beta
	expect_rc 0 "partition create beta" || return
	cl_wait_same "before the batches" "$N1" "$N2" "$N3" || return
	b0=$(cl_param "$N1" beta max-key-objects)

	# Five adjacent partition set lines: one batch request; the node stops
	# at line 3 (no such partition) and commits lines 1-2 as one change.
	printf 'partition set %s max-key-objects=%s\n' acme 101 acme 102 \
	    nosuch 1 acme 104 beta 105 >"$f"
	s0=$(cl_seq "$N1")
	a0=$(ofc_sql "$N1" "SELECT count(*) FROM audit WHERE op = 'partition.set'
	    AND partition = 'acme'")
	g0=$(count_re "$LOG" ': batch ok$')
	p0=$(count_re "$LOG" ': partition\.set ok$')
	cl_so -o json -f "$f"
	expect_rc 4 "a batch stopping at line 3 (not found)"
	expect_eq "$(( $(wait_count "$LOG" ': batch ok$' $((g0 + 1))) - g0 ))" 1 \
	    "batch requests for the five lines"
	expect_eq "$(( $(count_re "$LOG" ': partition\.set ok$') - p0 ))" 0 \
	    "partition.set requests of their own"
	expect_empty "$T/err" "stderr with -o json"
	jsonl_check "$T/out" 'len(L) == 3' \
	    'L[0]["changed"] == {"max-key-objects": "101"}' \
	    'L[1]["changed"] == {"max-key-objects": "102"}' \
	    'list(L[2]) == ["line", "error"] and L[2]["line"] == 3' \
	    'list(L[2]["error"]) == ["code", "message"]' \
	    'L[2]["error"]["code"] == "not_found"' \
	    '"nosuch" in L[2]["error"]["message"]'
	expect_eq "$(cl_param "$N1" acme max-key-objects)" 102 \
	    "acme after the stopped batch"
	expect_eq "$(cl_param "$N1" beta max-key-objects)" "$b0" \
	    "beta after the stopped batch (line 5 did not run)"
	s1=$(cl_seq "$N1")
	expect_eq "$((s1 - s0))" 1 "log entries for lines 1-2 (one transaction)"
	a1=$(ofc_sql "$N1" "SELECT count(*) FROM audit WHERE op = 'partition.set'
	    AND partition = 'acme'")
	expect_eq "$((a1 - a0))" 2 "audit entries of lines 1-2"
	expect_eq "$(ofc_sql "$N1" "SELECT count(*) FROM audit WHERE
	    op = 'partition.set' AND partition IN ('beta', 'nosuch')")" 0 \
	    "audit entries of lines 3 and 5"

	# -k: the node runs every line; the failing one is rolled back alone.
	s0=$s1
	cl_so -o json -k -f "$f"
	expect_rc 4 "-k: every line runs, the status of line 3"
	jsonl_check "$T/out" 'len(L) == 5' \
	    '[x.get("changed") for x in L[:2] + L[3:]] == [{"max-key-objects": v} for v in ("101", "102", "104", "105")]' \
	    'list(L[2]) == ["line", "error"] and L[2]["line"] == 3' \
	    'L[2]["error"]["code"] == "not_found"' \
	    'all("line" not in x for x in L[:2] + L[3:])'
	expect_eq "$(cl_param "$N1" acme max-key-objects)" 104 "acme after -k"
	expect_eq "$(cl_param "$N1" beta max-key-objects)" 105 "beta after -k"
	s1=$(cl_seq "$N1")
	expect_eq "$((s1 - s0))" 1 "log entries for the -k batch"
	expect_eq "$(ofc_sql "$N1" "SELECT count(*) FROM partitions
	    WHERE name = 'nosuch'")" 0 "the failed line made nothing"

	# Replicated as the master has it: one entry, nothing of line 3.
	cl_wait_same "after the batches" "$N1" "$N2" "$N3" || return
	expect_eq "$(cl_seq "$N2")" "$s1" "the clone's last_seq"
	expect_eq "$(cl_param "$N2" acme max-key-objects)" 104 "acme on the clone"
	expect_eq "$(cl_param "$N2" beta max-key-objects)" 105 "beta on the clone"
	expect_eq "$(cl_replog "$N2" "$s1")" "$(cl_replog "$N1" "$s1")" \
	    "the clone's log entry of the -k batch is the master's"
	expect_eq "$(ofc_sql "$N2" "SELECT count(*) FROM audit WHERE
	    op = 'partition.set' AND node = 'alpha'")" \
	    "$(ofc_sql "$N1" "SELECT count(*) FROM audit WHERE
	    op = 'partition.set'")" "the clone has the master's audit entries"

	# whoami (not groupable) splits: three requests, three transactions.
	printf 'partition set acme max-key-objects=%s\nwhoami\n' 201 202 203 |
	    head -n 5 >"$f"
	s0=$s1
	g0=$(count_re "$LOG" ': batch ok$')
	p0=$(count_re "$LOG" ': partition\.set ok$')
	cl_so -f "$f"
	expect_rc 0 "partition set lines between whoami lines"
	expect_eq "$(cl_seq "$N1")" "$((s0 + 3))" "log entries (whoami splits)"
	expect_eq "$(( $(wait_count "$LOG" ': partition\.set ok$' $((p0 + 3))) - p0 ))" \
	    3 "partition.set requests between whoami lines"
	expect_eq "$(( $(count_re "$LOG" ': batch ok$') - g0 ))" 0 \
	    "batch requests between whoami lines"
	expect_eq "$(cl_param "$N1" acme max-key-objects)" 203 "acme after 20X"

	# Reads in a group see the changes before them in it.
	printf '%s\n' 'partition get acme max-key-objects' 'partition show acme' \
	    'partition set acme max-key-objects=300' \
	    'partition get acme max-key-objects' >"$f"
	s0=$(cl_seq "$N1")
	cl_so -o json -f "$f"
	expect_rc 0 "gets, show and set in one group"
	jsonl_check "$T/out" 'len(L) == 4' \
	    'L[0]["value"] == "203"' 'L[2]["changed"] == {"max-key-objects": "300"}' \
	    'L[3]["value"] == "300"' \
	    'L[1]["name"] == "acme" and L[1]["params"]["max-key-objects"] == "203"'
	expect_eq "$(cl_seq "$N1")" "$((s0 + 1))" "log entries (reads and a set)"
	expect_eq "$(cl_param "$N1" acme max-key-objects)" 300 "acme after the set"

	# Text output and stderr as line by line: the lines one at a time
	# (a one-line file runs on its own), then as one group.
	: >"$T/want"
	for v in 101 102; do
		printf 'partition set acme max-key-objects=%s\n' "$v" >"$T/one.batch"
		cl_so -f "$T/one.batch"
		expect_rc 0 "partition set acme max-key-objects=$v alone"
		cat "$T/out" >>"$T/want"
	done
	printf 'partition set nosuch max-key-objects=1\n' >"$T/one.batch"
	cl_so -f "$T/one.batch"
	expect_rc 4 "partition set nosuch alone"
	msg=$(sed -n "1s|^$T/one.batch:1: ||p" "$T/err")
	[ -n "$msg" ] || { fail "no '$T/one.batch:1: ' error"; diag_file "$T/err"; }
	# Back to 300: the group's lines then change what they changed alone.
	cl_so partition set acme max-key-objects=300
	expect_rc 0 "partition set acme max-key-objects=300"
	printf 'partition set %s max-key-objects=%s\n' acme 101 acme 102 \
	    nosuch 1 acme 999 >"$f"
	s0=$(cl_seq "$N1")
	cl_so -f "$f"
	expect_rc 4 "text: stop at line 3"
	expect_nonempty "$T/want" "the single lines' output"
	expect_same "$T/out" "$T/want" "text output of lines 1-2"
	expect_lines "$T/err" "$f:3: $msg" "stderr: FILE:3: message"
	expect_eq "$(cl_seq "$N1")" "$((s0 + 1))" "log entries (text)"
	expect_eq "$(cl_param "$N1" acme max-key-objects)" 102 "line 4 did not run"

	# Changes that cancel out in one group: no change to replicate, but
	# the audit entries of both lines still reach the replicas.
	printf 'partition set acme max-key-objects=%s\n' 555 102 >"$f"
	s0=$(cl_seq "$N1")
	cl_so -f "$f"
	expect_rc 0 "a group that sets a value and sets it back"
	expect_eq "$(cl_seq "$N1")" "$((s0 + 1))" "log entries (audit only)"
	expect_eq "$(ofc_sql "$N1" "SELECT length(changes) FROM replog
	    WHERE seq = $((s0 + 1))")" 0 "the entry carries no change"
	cl_wait_same "after the cancelling group" "$N1" "$N2" "$N3" || return
	expect_eq "$(cl_seq "$N2")" "$((s0 + 1))" "the clone took the entry"
	expect_eq "$(ofc_sql "$N2" "SELECT count(*) FROM audit WHERE
	    op = 'partition.set' AND node = 'alpha'")" \
	    "$(ofc_sql "$N1" "SELECT count(*) FROM audit WHERE
	    op = 'partition.set'")" "the clone has the cancelling lines' audit entries"
	expect_eq "$(cl_param "$N2" acme max-key-objects)" 102 "acme on the clone"
}

run_case "cluster: join under four-eyes; master -> clone and bc; roles refuse" case_cl_form
run_case "cluster: 1,000 changes in order; kill -9 catch-up; snapshot" case_cl_stream
run_case "cluster: master down, reads go on, promote, old master demotes" case_cl_failover
run_case "cluster: split brain: two candidates of one epoch, one master" case_cl_split
run_case "cluster: an old master's unreplicated change is kept aside" case_cl_diverged
run_case "batch: adjacent lines as one request and one transaction; stop, -k, replicated" case_cl_batch_group
