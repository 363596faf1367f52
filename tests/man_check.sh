#!/bin/sh
# Man page consistency check (make lint-man), run from the repository root:
#
#   tests/man_check.sh [HSMCTL]
#
# The command table is the truth: `HSMCTL __commands` prints one usage line
# per command ("help [COMMAND...]", "node info").  A command's words are the
# leading lower-case words of its usage line.  This checks that
#   (a) every command has a ".It Cm WORDS ..." item in the COMMANDS section
#       of man/hsmctl.1,
#   (b) every ".It Cm" item of that section is a command of the table, and
#   (c) every command appears in README.md as a code span starting with its
#       words ("`node info`", "`help [COMMAND...]`").
# Prints what is missing and exits 1 on any drift, 2 if it cannot run.
set -u
LC_ALL=C
export LC_ALL

MAN=man/hsmctl.1
README=README.md

if [ $# -ge 1 ]; then
	HSMCTL=$1
elif [ -x cli/hsmctl ]; then
	HSMCTL=cli/hsmctl
else
	HSMCTL=build/san/cli/hsmctl
fi

for f in "$MAN" "$README"; do
	if [ ! -f "$f" ]; then
		echo "man_check: $f not found (run from the repository root)" >&2
		exit 2
	fi
done
if [ ! -x "$HSMCTL" ]; then
	echo "man_check: no hsmctl binary at $HSMCTL (run make all first)" >&2
	exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/man_check.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM

if ! "$HSMCTL" __commands >"$tmp/usage" 2>"$tmp/err"; then
	echo "man_check: $HSMCTL __commands failed:" >&2
	cat "$tmp/err" >&2
	exit 2
fi

# Leading words of a line that are command words: [a-z0-9][a-z0-9_-]*.
# The first token that is not (a metavariable, "[", an mdoc macro such as
# Op or Ar) ends them.
# shellcheck disable=SC2016 # an awk program, not shell
lead_words='{
	w = ""
	for (i = 1; i <= NF; i++) {
		if ($i !~ /^[a-z0-9][a-z0-9_-]*$/)
			break
		w = w (w == "" ? "" : " ") $i
	}
	if (w != "")
		print w
	else
		print "?" $0
}'

awk "$lead_words" "$tmp/usage" | sort -u >"$tmp/table"
if [ ! -s "$tmp/table" ]; then
	echo "man_check: $HSMCTL __commands printed no commands" >&2
	exit 2
fi
if grep -q '^?' "$tmp/table"; then
	echo "man_check: usage lines without command words:" >&2
	sed -n 's/^?/    /p' "$tmp/table" >&2
	exit 2
fi

# The .It Cm items of the COMMANDS section, nested lists included.
awk '
	/^\.Sh[ \t]/ { insec = ($0 ~ /^\.Sh[ \t]+COMMANDS[ \t]*$/); next }
	insec && /^\.It[ \t]+Cm[ \t]/ {
		sub(/^\.It[ \t]+Cm[ \t]+/, "")
		print
	}
' "$MAN" >"$tmp/items"
if [ ! -s "$tmp/items" ]; then
	echo "man_check: $MAN has no .It Cm items in a COMMANDS section" >&2
	exit 1
fi
awk "$lead_words" "$tmp/items" | sort >"$tmp/man.all"
sort -u "$tmp/man.all" >"$tmp/man"

fail=0

missing=$(comm -23 "$tmp/table" "$tmp/man")
if [ -n "$missing" ]; then
	echo "$MAN: COMMANDS lacks an '.It Cm WORDS' item for:"
	echo "$missing" | sed 's/^/    /'
	fail=1
fi

extra=$(comm -13 "$tmp/table" "$tmp/man" | sed 's/^?/(no command words) /')
if [ -n "$extra" ]; then
	echo "$MAN: COMMANDS has items that are not commands of the table:"
	echo "$extra" | sed 's/^/    /'
	fail=1
fi

dups=$(uniq -d "$tmp/man.all")
if [ -n "$dups" ]; then
	echo "$MAN: COMMANDS documents these commands more than once:"
	echo "$dups" | sed 's/^/    /'
	fail=1
fi

while IFS= read -r words; do
	# "`node info`" or "`node info ARG...`", but not "`node infox`".
	if ! grep -F -e "\`$words\`" -e "\`$words " "$README" >/dev/null; then
		echo "$README: command not listed (as \`$words ...\`): $words"
		fail=1
	fi
done <"$tmp/table"

# The parameter rows of PARTITION PARAMETERS against the one table in the
# code (partition params): name, type, default and who, row for row.
"$HSMCTL" -o json partition params >"$tmp/params.json" 2>/dev/null || {
	echo "man_check: cannot run $HSMCTL -o json partition params"
	exit 2
}
python3 - "$tmp/params.json" "$MAN" <<'PYEOF2' || fail=1
import json, re, sys
table = json.load(open(sys.argv[1]))["parameters"]
rows = {}
for line in open(sys.argv[2]):
    m = re.match(r"\.It Ic (\S+) Ta (\S+) Ta (.*?) Ta (.*)$", line.rstrip("\n"))
    if m:
        rows[m.group(1)] = (m.group(2), m.group(3), m.group(4))
bad = 0
for p in table:
    want = (p["type"], p["default"] if p["default"] != "" else "(empty)", p["who"])
    got = rows.get(p["name"])
    if got is None:
        print("%s: PARTITION PARAMETERS lacks a row for %s" % (sys.argv[2], p["name"]))
        bad = 1
    elif got[0] != want[0] or got[2] != want[2] or \
            (got[1] != want[1] and not (want[1] == "(empty)" and got[1] in ("", "empty", "(empty)", "none"))):
        print("%s: %s is %s / %s / %s in the code, %s / %s / %s in the page"
              % (sys.argv[2], p["name"], *want, *got))
        bad = 1
extra = set(rows) - {p["name"] for p in table}
for name in sorted(extra):
    print("%s: PARTITION PARAMETERS has %s, which the code does not" % (sys.argv[2], name))
    bad = 1
sys.exit(bad)
PYEOF2

if [ $fail -ne 0 ]; then
	echo "man_check: the man page or README.md drifted from the command table" \
	    "($HSMCTL __commands) or the parameter table (partition params)"
	exit 1
fi
exit 0
