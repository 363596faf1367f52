#!/usr/bin/env bash
#
# make bench: every performance figure of hsmctl, each measured side by
# side with its reference in the same run on this machine, as one table on
# stdout and as bench/results.json.
#
#   P1  hsmctl node info (connect, host key check, auth, one request)
#         vs  ssh -i KEY -p PORT 127.0.0.1 true against a local sshd
#   P2  10,000 partition set lines in one batch (durable transactions)
#         vs  the sqlite3 CLI: 10,000 one-row transactions, WAL, synchronous=FULL
#   P3  backup download of a 120 MB backup  vs  scp of as many bytes
#   P4  backup create of a 120 MB partition vs  openssl speed aes-256-gcm
#   P5  replication lag master -> clone, p50 and p99 of 10,000 changes
#   P6  RSA-4096 key sign per minute, 2 parallel technical-user batches
#         vs  openssl speed -multi 2 rsa4096
#   P7  hsmctl --version, shell start to prompt, peak RSS of node info
#
# Every figure is the median of several runs, with min and max, all of
# them wall-clock (openssl speed runs with -elapsed).  Timings never decide
# the exit status: 0 when everything could be measured.
#
#   scripts/bench.sh [--quick] [--out FILE]
#
# --quick is a smoke run (small sizes, few runs, well under 2 minutes) that
# only proves the script works; its JSON goes to --out FILE, else nowhere.
# A full run writes bench/results.json (or --out FILE).  P3/P4 and P5 come
# from scripts/bench-backup.sh and scripts/bench-replication.sh.  Builds
# in-tree with optimisation (no sanitizers); runs in a temp dir; starts its
# own node and its own sshd on spare loopback ports.
set -eu

QUICK=0
OUT=
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1; shift ;;
	--out) OUT=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
	*) echo "usage: $0 [--quick] [--out FILE]" >&2; exit 2 ;;
	esac
done

if [ "$QUICK" = 1 ]; then
	P1_RUNS=10 P2_N=300 P2_RUNS=2 P6_N=30 P6_RUNS=2 SPEED_S=1
	P7_RUNS=10 PROMPT_RUNS=5
	BACKUP_ARGS=(--quick --runs 2) REPL_ARGS=(--quick --runs 2)
else
	P1_RUNS=50 P2_N=10000 P2_RUNS=3 P6_N=500 P6_RUNS=3 SPEED_S=3
	P7_RUNS=50 PROMPT_RUNS=20
	BACKUP_ARGS=(--runs 3) REPL_ARGS=(--runs 3)
fi

. "$(dirname "$0")/bench-lib.sh"
if [ "$(id -u)" = 0 ]; then
	"$SRC/scripts/deps.sh" --bench >&2
fi
for c in sshd ssh scp openssl python3; do
	command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] ||
	    { echo "bench: $c is missing (scripts/deps.sh --bench as root adds it)" >&2; exit 1; }
done
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
echo "bench: building (make -s, optimised, no sanitizers)" >&2
bench_begin
mkdir res state
# hsmctl's configuration and shell history stay in the temp dir.
export HSMCTL_CONFIG=$W/cfg XDG_STATE_HOME=$W/state
step() { echo "bench: $*" >&2; }

# The measuring helper: every timed command runs through it.
cat >bt.py <<'PYEOF'
import json, os, platform, re, select, statistics, subprocess, sys, time

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}

def add(path, key, vals):
    d = load(path)
    d.setdefault(key, []).extend(vals)
    with open(path, "w") as f:
        json.dump(d, f)

def split_cmds(args):
    cmds, cur = [], []
    for a in args:
        if a == ";":
            cmds.append(cur)
            cur = []
        else:
            cur.append(a)
    cmds.append(cur)
    return cmds

def fds3():
    try:
        os.fstat(3)
        return [3]
    except OSError:
        return []

def fail(cmd, status, errfile):
    sys.stderr.write("bench: %s exited %d\n" % (" ".join(cmd), status))
    try:
        sys.stderr.write(open(errfile).read()[-2000:])
    except OSError:
        pass
    sys.exit(1)

def run1(cmd):
    """Wall time (s) and peak RSS (KiB) of one run of cmd, from fork to
    reap, as the small spawn program (bench/spawn.c) sees them."""
    with open("last.err", "w") as err:
        code = subprocess.call(["./spawn", "last.out"] + cmd, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=err, pass_fds=fds3())
    if code != 0:
        fail(cmd, code, "last.err")
    t, rss = open("last.out").read().split()
    return float(t), int(rss)

def cmd_time(argv):
    # time [-w] N OUT... -- CMD [; CMD...]: N runs of each, interleaved.
    warm = argv[0] == "-w"
    if warm:
        argv = argv[1:]
    n, i = int(argv[0]), argv.index("--")
    outs, cmds = argv[1:i], split_cmds(argv[i + 1:])
    assert len(outs) == len(cmds)
    if warm:
        for c in cmds:
            run1(c)
    res = [([], []) for _ in cmds]
    for _ in range(n):
        for c, r in zip(cmds, res):
            t, rss = run1(c)
            r[0].append(t)
            r[1].append(rss)
    for o, r in zip(outs, res):
        add(o, "t", r[0])
        add(o, "rss_kb", r[1])

def cmd_par(argv):
    # par OUT -- CMD [; CMD...]: one sample, the wall time of all at once.
    out, cmds = argv[0], split_cmds(argv[2:])
    errs = [open("par%d.err" % k, "w") for k in range(len(cmds))]
    t0 = time.perf_counter()
    ps = [subprocess.Popen(c, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=e) for c, e in zip(cmds, errs)]
    codes = [p.wait() for p in ps]
    t = time.perf_counter() - t0
    for k, (c, code) in enumerate(zip(cmds, codes)):
        if code != 0:
            fail(c, code, "par%d.err" % k)
    add(out, "t", [t])

def cmd_pty(argv):
    # pty N OUT REGEX -- CMD: time from fork to the prompt on a terminal.
    import pty, signal
    n, out, rx, cmd = int(argv[0]), argv[1], re.compile(argv[2].encode()), argv[4:]
    ts = []
    for k in range(n + 1):		# the first run warms the caches
        t0 = time.perf_counter()
        pid, fd = pty.fork()
        if pid == 0:
            os.environ.setdefault("TERM", "xterm")
            os.execv(cmd[0], cmd)
        buf, t = b"", None
        while time.perf_counter() - t0 < 10:
            r, _, _ = select.select([fd], [], [], 0.5)
            if not r:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                break
            buf += data
            if rx.search(buf):
                t = time.perf_counter() - t0
                break
        try:
            os.write(fd, b"exit\n")
        except OSError:
            pass
        for _ in range(100):
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
            time.sleep(0.02)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
        if t is None:
            sys.exit("bench: no prompt from %s; it wrote %r" % (" ".join(cmd), buf[-300:]))
        if k:
            ts.append(t)
    add(out, "t", ts)

def cmd_add(argv):
    # add OUT KEY VALUE...
    add(argv[0], argv[1], [float(v) for v in argv[2:]])

# -------------------------------------------------------------- the report

def stats(v):
    v = [round(x, 4) for x in v]
    return {"median": statistics.median(v), "min": min(v), "max": max(v),
            "runs": len(v), "samples": v}

def sh(cmd):
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, text=True, timeout=10)
        return r.stdout.strip().splitlines()[0] if r.stdout.strip() else ""
    except (OSError, subprocess.SubprocessError):
        return ""

def machine():
    cpu = ""
    mem = 0
    try:
        for l in open("/proc/cpuinfo"):
            if l.startswith("model name"):
                cpu = l.split(":", 1)[1].strip()
                break
        for l in open("/proc/meminfo"):
            if l.startswith("MemTotal:"):
                mem = int(l.split()[1]) // 1024
    except OSError:
        pass
    osname = platform.system()
    try:
        for l in open("/etc/os-release"):
            if l.startswith("PRETTY_NAME="):
                osname = l.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {"hostname": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
            "memory_mb": mem, "os": osname, "kernel": platform.release(),
            "arch": platform.machine()}

def fmt(v, unit):
    if unit == "ms":
        return "%.1f" % v if v >= 10 else "%.2f" % v
    if unit == "MB":
        return "%.1f" % v
    if unit == "MB/s":
        return "%.1f" % v
    return "{:,.0f}".format(v)

def span(s, unit):
    if s is None:
        return "-"
    return "%s %s [%s-%s]" % (fmt(s["median"], unit), unit, fmt(s["min"], unit),
                              fmt(s["max"], unit))

def cmd_report(argv):
    res, quick, out, src, hc = argv[0], argv[1] == "1", argv[2], argv[3], argv[4]
    meta = load(os.path.join(res, "meta.json"))
    R = lambda name: load(os.path.join(res, name + ".json"))
    figs, notes = [], []

    def fig(fid, what, unit, better, ours, ref_what, ref, target, met, ratio=None):
        figs.append({"id": fid, "what": what, "unit": unit, "better": better,
                     "ours": ours, "reference_what": ref_what, "reference": ref,
                     "ratio": ratio, "target": target, "met": met})

    # P1
    o = stats([t * 1000 for t in R("p1_ours")["t"]])
    r = stats([t * 1000 for t in R("p1_ref")["t"]])
    ratio = o["median"] / r["median"]
    fig("P1", "hsmctl node info, wall time", "ms", "lower", o,
        "ssh -i KEY -p PORT 127.0.0.1 true, local OpenSSH sshd", r,
        "<= 1.0x", ratio <= 1.0, ratio)
    k = stats([t * 1000 for t in R("p1_kex")["t"]])
    notes.append("P1: ssh -o KexAlgorithms=curve25519-sha256 (the key exchange hsmctl "
                 "negotiates) takes %.1f ms [%.1f-%.1f]: ours is %.2fx of that"
                 % (k["median"], k["min"], k["max"], o["median"] / k["median"]))
    # P2
    n2 = int(meta["p2_n"])
    o = stats([n2 / t for t in R("p2_ours")["t"]])
    r = stats([n2 / t for t in R("p2_ref")["t"]])
    ratio = o["median"] / r["median"]
    fig("P2", "%s partition set lines, one batch, durable" % "{:,}".format(n2), "txn/s",
        "higher", o, "%s: %s one-row transactions, WAL, synchronous=FULL"
        % (meta["p2_ref"], "{:,}".format(n2)), r, ">= 0.5x", ratio >= 0.5, ratio)
    if meta["p2_ref"] != "sqlite3 CLI":
        notes.append("P2: the sqlite3 CLI is missing; the reference is python3's sqlite3 "
                     "module (SQLite %s) with the same pragmas" % meta.get("p2_ref_version", "?"))
    # P3, P4
    b = R("backup")
    mbs = lambda v: [x / 1e6 for x in v]
    size = b["size_bytes"][-1] / 1e6
    o, r = stats(mbs(b["download_Bps"])), stats(mbs(b["scp_Bps"]))
    ratio = o["median"] / r["median"]
    fig("P3", "backup download, %.0f MB" % size, "MB/s", "higher", o,
        "scp of as many bytes from the local sshd", r, ">= 0.8x", ratio >= 0.8, ratio)
    if "scp_same_cipher_Bps" in b:
        k = stats(mbs(b["scp_same_cipher_Bps"]))
        notes.append("P3: scp -c aes256-ctr -o MACs=hmac-sha2-256 (the cipher and MAC hsmctl's "
                     "libssh2 1.10 negotiates) makes %.1f MB/s [%.1f-%.1f]: ours is %.2fx of that"
                     % (k["median"], k["min"], k["max"], o["median"] / k["median"]))
    o, r = stats(mbs(b["create_Bps"])), stats(mbs(b["gcm_Bps"]))
    ratio = o["median"] / r["median"]
    fig("P4", "backup create, %.0f MB partition" % size, "MB/s", "higher", o,
        "openssl speed -elapsed -evp aes-256-gcm, 16 KiB blocks, one core", r, ">= 0.5x",
        ratio >= 0.5, ratio)
    notes.append("P4: a durable write on this disk (dd conv=fsync) runs at %.0f MB/s"
                 % (b["dd_fsync_Bps"] / 1e6))
    rss = b["rss_mb"]
    notes.append("P3/P4 peak RSS: node %.1f MB, hsmctl %.1f MB (create) and %.1f MB (download); bound %d MB"
                 % (max(rss["node_after_create"], rss["node_after_download"]),
                    rss["hsmctl_create"], rss["hsmctl_download"], rss["bound"]))
    # P5
    p = R("repl")
    ch = p["changes_per_run"]
    o = stats([float(x["p50_ms"]) for x in p["runs"]])
    fig("P5", "replication lag p50, %s changes a run" % "{:,}".format(ch), "ms", "lower", o,
        "-", None, "-", None)
    o = stats([float(x["p99_ms"]) for x in p["runs"]])
    fig("P5", "replication lag p99, %s changes a run" % "{:,}".format(ch), "ms", "lower", o,
        "-", None, "<= 50 ms", o["median"] <= 50)
    notes.append("P5: the master took the changes at %s changes/s (median of the runs)"
                 % "{:,.0f}".format(statistics.median(
                     x["changes"] * 1000.0 / max(x["master_ms"], 1) for x in p["runs"])))
    # P6
    n6 = int(meta["p6_n"])
    o = stats([2 * n6 / t * 60 for t in R("p6_ours")["t"]])
    r = stats([s * 60 for s in R("p6_ref")["sign_per_s"]])
    ratio = o["median"] / r["median"]
    fig("P6", "RSA-4096 key sign, 2 parallel user batches of %d" % n6, "sign/min", "higher", o,
        "openssl speed -elapsed -multi 2 rsa4096", r, ">= 12,000/min and >= 0.7x",
        o["median"] >= 12000 and ratio >= 0.7, ratio)
    # P7
    o = stats([t * 1000 for t in R("p7_version")["t"]])
    fig("P7", "hsmctl --version, wall time", "ms", "lower", o, "-", None, "<= 5 ms",
        o["median"] <= 5)
    o = stats([t * 1000 for t in R("p7_prompt")["t"]])
    fig("P7", "shell start to prompt (pty)", "ms", "lower", o, "-", None, "<= 20 ms",
        o["median"] <= 20)
    o = stats([k / 1024.0 for k in R("p1_ours")["rss_kb"]])
    fig("P7", "peak RSS of node info (ru_maxrss)", "MB", "lower", o, "-", None, "<= 8 MB",
        o["median"] <= 8)
    notes.append("P7: peak RSS of the ssh client in P1: %.1f MB (median)"
                 % (statistics.median(R("p1_ref")["rss_kb"]) / 1024.0))
    fl = R("floor")["t"]
    notes.append("timing floor: fork, exec and reap of /bin/true takes %.2f ms (median), "
                 "included in every wall time; its peak RSS is %.1f MB"
                 % (statistics.median(fl) * 1000,
                    statistics.median(R("floor")["rss_kb"]) / 1024.0))

    try:
        load_end = " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        load_end = "?"
    notes.append("load average (1, 5, 15 min) at the start %s, at the end %s: other work on "
                 "the machine skews the figures" % (meta.get("load_start", "?"), load_end))

    # The table.
    head = ["id", "what", "runs", "ours: median [min-max]", "reference", "reference: median [min-max]",
            "ratio", "target", "result"]
    rows = []
    for f in figs:
        rows.append([f["id"], f["what"], str(f["ours"]["runs"]), span(f["ours"], f["unit"]),
                     f["reference_what"], span(f["reference"], f["unit"]),
                     "%.2fx" % f["ratio"] if f["ratio"] is not None else "-",
                     f["target"],
                     "-" if f["met"] is None else ("met" if f["met"] else "MISSED")])
    w = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(c.ljust(k) for c, k in zip(cells, w)) + " |"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    m = machine()
    print("hsmctl bench%s, %s, %s (%d cores, %d MB), %s, %s" % (
        " --quick (smoke run: sizes and runs too small to mean anything)" if quick else "",
        when, m["cpu"] or m["arch"], m["cores"], m["memory_mb"], m["os"], m["kernel"]))
    print()
    print(line(head))
    print("|" + "|".join("-" * (k + 2) for k in w) + "|")
    for r in rows:
        print(line(r))
    print()
    for n in notes:
        print("- " + n)

    doc = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": quick,
        "machine": m,
        "hsmctl": sh([hc, "--version"]),
        "commit": sh(["git", "-C", src, "describe", "--always", "--dirty"]),
        "references": {"openssh": sh(["ssh", "-V"]), "openssl": sh(["openssl", "version"]),
                       "sqlite3": meta.get("p2_ref_version", "")},
        "figures": figs,
        "notes": notes,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    json.load(open(out))

globals()["cmd_" + sys.argv[1]](sys.argv[2:])
PYEOF
BT=(python3 "$W/bt.py")
"${CC:-cc}" -O2 -o spawn "$SRC/bench/spawn.c"

# ------------------------------------------------------------ the node
# A node with a genesis officer and two SOs whose keys open fast (logins
# are not what is measured), a partition for P2 and one with an RSA-4096
# key and an API secret for P6.
step "setting up a node and an sshd in $W"
bench_officers
NP=$(port)
"$HD" init -d n1 --cluster bench --name n1 --authorize tk.pub \
    --genesis g1=g1.key.pub >/dev/null
bench_node n1 "$NP"
cat >cfg <<EOF
terminal-key $W/tk
known-hosts $W/known_hosts
cluster bench
    node n1 127.0.0.1:$NP
EOF
"$HC" -q --accept-new-host-key node info >/dev/null
printf 'officer add so alice alice.key.pub\nofficer add so bob bob.key.pub\n' >so.batch
"$HC" -q --as genesis --officer g1.key --passphrase-fd 3 -f so.batch 3<g1.pass >/dev/null
SO=(--as so --officer alice.key --officer bob.key --passphrase-fd 3)
"$HC" -q "${SO[@]}" -f - 3<so.pass >/dev/null <<EOF
partition create p2
partition create sig
partition secret sig --rotate --out $W/sig.secret
EOF
KID=$("$HC" -o json --secret-file sig.secret --as user:sig key generate sig \
    --type rsa-4096 --label bench |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

# ------------------------------------------------------------ the sshd
# SHLVL=1: bash, the usual login shell, sources ~/.bashrc for commands run
# by sshd unless it is nested; a user's rc file is not what is measured.
bench_sshd "SetEnv SHLVL=1"
# The host key is pinned, as hsmctl's is in known_hosts.
echo "[127.0.0.1]:$SP $(cut -d' ' -f1,2 sshd_host.pub)" >ssh_known_hosts
SSH=(ssh -F /dev/null -i "$W/ssh_key" -p "$SP" -o BatchMode=yes
    -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$W/ssh_known_hosts"
    127.0.0.1 true)
"${SSH[@]}" || { echo "bench: ssh to the local sshd failed" >&2; cat sshd.log >&2; exit 1; }
# For the notes: ssh with the key exchange hsmctl's libssh2 negotiates
# (OpenSSH's default, sntrup761x25519, costs more CPU).
SSH_KEX=("${SSH[@]:0:1}" -o KexAlgorithms=curve25519-sha256 "${SSH[@]:1}")

"${BT[@]}" time -w 20 res/floor.json -- /bin/true

# ------------------------------------------------------------ P1 (and P7's RSS)
step "P1: node info vs ssh true, $P1_RUNS runs each"
"${BT[@]}" time -w "$P1_RUNS" res/p1_ours.json res/p1_ref.json res/p1_kex.json -- \
    "$HC" node info \; "${SSH[@]}" \; "${SSH_KEX[@]}"

# ------------------------------------------------------------ P2
if command -v sqlite3 >/dev/null 2>&1; then
	P2_REF="sqlite3 CLI"
	P2_REF_VERSION=$(sqlite3 --version | cut -d' ' -f1)
else
	P2_REF="python3 sqlite3 module"
	P2_REF_VERSION=$(python3 -c 'import sqlite3; print(sqlite3.sqlite_version)')
fi
step "P2: $P2_N partition set lines vs $P2_REF, $P2_RUNS runs each"
# The reference table, made before the timing; each run adds P2_N rows,
# each INSERT in autocommit mode: its own transaction, fsynced (FULL).
cat >ref.py <<'PYEOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA synchronous=FULL")
c.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
for i in range(int(sys.argv[2]), int(sys.argv[3])):
    c.execute("INSERT INTO t (v) VALUES (?)", ("max-key-objects=%d" % i,))
PYEOF
python3 ref.py ref.db 0 0
for r in $(seq 1 "$P2_RUNS"); do
	B=$(( (r - 1) * P2_N + 1 ))
	for i in $(seq "$B" $(( B + P2_N - 1 ))); do
		echo "partition set p2 max-key-objects=$i"
	done >p2.batch
	{
		echo "PRAGMA journal_mode=WAL;"
		echo "PRAGMA synchronous=FULL;"
		for i in $(seq "$B" $(( B + P2_N - 1 ))); do
			echo "INSERT INTO t (v) VALUES ('max-key-objects=$i');"
		done
	} >p2.sql
	"${BT[@]}" time 1 res/p2_ours.json -- "$HC" -q "${SO[@]}" -f p2.batch 3<so.pass
	if [ "$P2_REF" = "sqlite3 CLI" ]; then
		"${BT[@]}" time 1 res/p2_ref.json -- sqlite3 -bail ref.db ".read p2.sql"
	else
		"${BT[@]}" time 1 res/p2_ref.json -- python3 ref.py ref.db "$B" $(( B + P2_N ))
	fi
done
ROWS=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM t").fetchone()[0])' ref.db)
[ "$ROWS" = $(( P2_RUNS * P2_N )) ] || { echo "bench: the reference wrote $ROWS rows" >&2; exit 1; }

# ------------------------------------------------------------ P6
step "P6: RSA-4096 key sign, 2 batches of $P6_N at once vs openssl speed -multi 2, $P6_RUNS runs each"
head -c 1000 /dev/urandom >msg
for s in a b; do
	{
		echo "login user sig --secret-file $W/sig.secret"
		for _ in $(seq 1 "$P6_N"); do
			echo "key sign sig $KID --in $W/msg --out $W/sig-$s.bin"
		done
	} >"p6-$s.batch"
done
for _ in $(seq 1 "$P6_RUNS"); do
	"${BT[@]}" par res/p6_ours.json -- "$HC" -q -f p6-a.batch \; "$HC" -q -f p6-b.batch
	# -elapsed: signs per wall-clock second, as ours; by default openssl
	# speed divides by its CPU time, which other load does not slow down.
	SPS=$(openssl speed -elapsed -multi 2 -seconds "$SPEED_S" rsa4096 2>/dev/null |
	    awk '$1 == "rsa" && $2 == "4096" && $3 == "bits" { print $6 }')
	[ -n "$SPS" ] || { echo "bench: no figure from openssl speed -multi 2 rsa4096" >&2; exit 1; }
	"${BT[@]}" add res/p6_ref.json sign_per_s "$SPS"
done
# The signatures are real: check one with the key's public half.
"$HC" -o json --secret-file sig.secret --as user:sig key show sig "$KID" |
    python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin)["public_key"])' >sig.pub
openssl dgst -sha256 -verify sig.pub -signature sig-a.bin msg >/dev/null ||
    { echo "bench: a P6 signature does not verify" >&2; exit 1; }

# ------------------------------------------------------------ P7
step "P7: --version ($P7_RUNS runs), shell prompt ($PROMPT_RUNS runs)"
"${BT[@]}" time -w "$P7_RUNS" res/p7_version.json -- "$HC" --version
"${BT[@]}" pty "$PROMPT_RUNS" res/p7_prompt.json 'hsmctl [^\r\n]*> ' -- "$HC"

# ------------------------------------------------------------ P3, P4, P5
step "P3, P4: scripts/bench-backup.sh ${BACKUP_ARGS[*]}"
"$SRC/scripts/bench-backup.sh" "${BACKUP_ARGS[@]}" --json "$W/res/backup.json" \
    >backup.log 2>&1 || { cat backup.log >&2; exit 1; }
step "P5: scripts/bench-replication.sh ${REPL_ARGS[*]}"
"$SRC/scripts/bench-replication.sh" "${REPL_ARGS[@]}" --json "$W/res/repl.json" \
    >repl.log 2>&1 || { cat repl.log >&2; exit 1; }

# ------------------------------------------------------------ the report
umask 022
cat >res/meta.json <<EOF
{"p2_n": $P2_N, "p2_ref": "$P2_REF", "p2_ref_version": "$P2_REF_VERSION", "p6_n": $P6_N,
 "load_start": "$LOAD0"}
EOF
if [ -z "$OUT" ]; then
	if [ "$QUICK" = 1 ]; then
		OUT=$W/results.json
	else
		mkdir -p "$SRC/bench"
		OUT=$SRC/bench/results.json
	fi
fi
"${BT[@]}" report res "$QUICK" "$OUT.tmp" "$SRC" "$HC"
mv "$OUT.tmp" "$OUT"
[ "$OUT" = "$W/results.json" ] || step "wrote $OUT"
