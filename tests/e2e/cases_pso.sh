# shellcheck shell=bash
#
# PSO officers of a partition (issue 5, once partitions exist): an SO
# registers three PSO officers with a 2-of-3 quorum; one PSO signature is
# refused, two distinct ones are granted; partition-admin off refuses the
# PSO login; a PSO of another partition is refused.  Uses the helpers of
# cases_officers.sh (sourced before this file).

if ! declare -F ofc_setup >/dev/null; then
	echo "cases_pso.sh: source it from tests/e2e/run.sh after cases_officers.sh" >&2
	exit 2
fi

case_pso_quorum() {
	local b=$T/so.batch so
	ofc_setup || return
	so=$(ofc_pass alice bob)
	# The SO's part, one four-eyes login for the batch.
	ofc_batch "$b" "partition create p1" "partition create p2" \
	    "officer add pso alice $K/alice.key.pub --partition p1" \
	    "officer add pso bob $K/bob.key.pub --partition p1" \
	    "officer add pso carol $K/carol.key.pub --partition p1" \
	    "officer add pso stranger $K/stranger.key.pub --partition p2" \
	    "quorum set pso 2 --partition p1"
	oc --as so --officer "$K/alice.key" --officer "$K/bob.key" \
	    --passphrase-fd 3 -f "$b" 3<"$so"
	expect_rc 0 "SO: partitions, PSO officers, PSO quorum 2 of 3" || return
	expect_eq "$(ofc_sql "$N1" "SELECT m FROM quorums WHERE role = 'pso' AND partition = 'p1'")" \
	    2 "the PSO quorum of p1 in the store"
	# partition-admin is off by default: no PSO login at all.
	oc --as pso:p1 --officer "$K/alice.key" --officer "$K/bob.key" \
	    --passphrase-fd 3 whoami 3<"$so"
	expect_rc 3 "PSO login while partition-admin is off"
	expect_has "$T/err" "partition-admin is off" "the reason"
	oc --as so --officer "$K/alice.key" --officer "$K/bob.key" \
	    --passphrase-fd 3 partition set p1 partition-admin=on 3<"$so"
	expect_rc 0 "SO turns partition-admin on"
	oc --as pso:p1 --officer "$K/alice.key" --passphrase-fd 3 whoami \
	    3<"$(ofc_pass alice)"
	expect_rc 3 "one PSO officer of a 2-of-3 quorum"
	expect_has "$T/err" "quorum not met: 1 of 2" "the reason"
	oc --as pso:p1 --officer "$K/alice.key" --officer "$K/alice.key" \
	    --passphrase-fd 3 whoami 3<"$(ofc_pass alice alice)"
	expect_rc 3 "the same PSO officer twice"
	oc --as pso:p1 --officer "$K/bob.key" --officer "$K/carol.key" \
	    --passphrase-fd 3 whoami 3<"$(ofc_pass bob carol)"
	expect_rc 0 "two distinct PSO officers of p1"
	expect_kv "$T/out" role pso "whoami: role"
	expect_kv "$T/out" partition p1 "whoami: partition"
	expect_kv "$T/out" officers bob,carol "whoami: officers"
	# A PSO officer of p2 is not one of p1 (and p2 is not admin-enabled).
	oc --as pso:p1 --officer "$K/stranger.key" --officer "$K/bob.key" \
	    --passphrase-fd 3 whoami 3<"$(ofc_pass stranger bob)"
	expect_rc 3 "a PSO officer of another partition"
	expect_has "$T/err" "not pso of p1" "the reason"
	# What the PSO may do: its own partition, not the cost options.
	oc --as pso:p1 --officer "$K/bob.key" --officer "$K/carol.key" \
	    --passphrase-fd 3 partition set p1 size-mb=50 3<"$(ofc_pass bob carol)"
	expect_rc 3 "PSO changes a cost option"
	oc --as pso:p1 --officer "$K/bob.key" --officer "$K/carol.key" \
	    --passphrase-fd 3 partition show p2 3<"$(ofc_pass bob carol)"
	expect_rc 3 "PSO of p1 reads p2"
	expect_eq "$(ofc_sql "$N1" "SELECT value FROM partition_params WHERE partition = 'p1' AND name = 'size-mb'")" \
	    10 "size-mb of p1 unchanged"
	node_stop "$N1"
}

run_case "PSO officers: 2-of-3 quorum, partition-admin, another partition, cost options" case_pso_quorum
