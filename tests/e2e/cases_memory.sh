# shellcheck shell=bash
#
# End-to-end: memory bounds of streaming (issue 8).  A 120 MB partition is
# backed up and downloaded; the node's and hsmctl's peak resident memory
# (VmHWM, ru_maxrss) must stay under 64 MB: a backup is streamed, never
# held whole.  A bound, not a speed: it does not depend on the machine.
#
# Under AddressSanitizer freed memory is held in a quarantine (256 MB by
# default) that is ASan's, not ours: it is made small for these processes.
# shellcheck disable=SC2034  # RC, LAST, ...: run.sh's
if ! declare -F ofc_node >/dev/null; then
	echo "cases_memory.sh: source it from tests/e2e/run.sh" >&2
	exit 2
fi

MEM_ASAN="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}quarantine_size_mb=4:thread_local_quarantine_size_kb=256"
MEM_BOUND_KB=$((64 * 1024))

case_mem_backup() {
	local id pid hwm rss
	K=$OFC_DIR
	N1=$T/n1
	ofc_node "$N1" nostart || return
	ASAN_OPTIONS=$MEM_ASAN node_start "$N1" || return
	pid=${NODE_PID[$N1]}
	ofc_cfg alpha="$N1" || return
	hc -F "$T/cfg" --as so --officer "$K/alice.key" --officer "$K/bob.key" \
	    --passphrase-fd 3 partition create big 3<"$(ofc_pass alice bob)"
	expect_rc 0 "partition create big" || return
	# 120 MB of sealed-looking key material, straight into the store.
	python3 - "$N1/store.db" <<'PYEOF' || { fail "cannot fill the partition"; return; }
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=30)
for i in range(480):
    c.execute("INSERT INTO objects (id, partition, type, label, extractable,"
              " sensitive, state, created, priv, size) VALUES (?, 'big',"
              " 'aes-256', ?, 0, 1, 'active', 0, ?, ?)",
              ("%032x" % (0xb16 << 64 | i), "bulk-%d" % i,
               os.urandom(262144), 262144))
c.commit()
PYEOF
	ASAN_OPTIONS=$MEM_ASAN hc -F "$T/cfg" -o json --as genesis \
	    --officer "$K/g1.key" --passphrase-fd 3 backup create \
	    3<"$(ofc_pass g1)"
	expect_rc 0 "backup create of 120 MB" || return
	json_check "$T/out" "d['objects'] == 480" "d['size'] > 120 * 1024 * 1024"
	id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$T/out")
	hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
	[ -n "$hwm" ] && [ "$hwm" -lt "$MEM_BOUND_KB" ] ||
	    fail "the node's peak RSS after backup create is ${hwm:-?} kB (bound $MEM_BOUND_KB kB)"
	# The download: hsmctl's own peak, measured by its parent.
	rss=$(ASAN_OPTIONS=$MEM_ASAN python3 - "$HSMCTL" -F "$T/cfg" --as genesis \
	    --officer "$K/g1.key" --passphrase-fd 3 backup download "$id" \
	    --out "$T/big.hbk" 3<"$(ofc_pass g1)" <<'PYEOF'
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=[3])
sys.stderr.write(r.stderr.decode(errors="replace"))
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PYEOF
	)
	expect_eq "${rss%% *}" 0 "backup download of 120 MB exits 0"
	[ "${rss#* }" -lt "$MEM_BOUND_KB" ] 2>/dev/null ||
	    fail "hsmctl's peak RSS during the download is ${rss#* } kB (bound $MEM_BOUND_KB kB)"
	hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
	[ -n "$hwm" ] && [ "$hwm" -lt "$MEM_BOUND_KB" ] ||
	    fail "the node's peak RSS after the download is ${hwm:-?} kB (bound $MEM_BOUND_KB kB)"
	cmp -s "$T/big.hbk" "$N1/backups/$id.hbk" ||
	    fail "the downloaded file differs from the node's"
	[ ! -e "$T/big.hbk.part" ] || fail "the .part file was left behind"
	CASE_DIAG+="#   peak RSS: node ${hwm} kB, hsmctl ${rss#* } kB"$'\n'
}

run_case "memory: a 120 MB backup made and downloaded in under 64 MB RSS" case_mem_backup
