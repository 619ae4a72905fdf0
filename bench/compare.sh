#!/usr/bin/env bash
# Two builds side by side on the same machine in one run: the SMTP intake benchmark (32
# sessions with connection reuse) and the import benchmark, alternating the builds round by
# round so that the machine's slow and fast phases fall on both. Each run measures its peer
# (smtp-sink, notmuch) too; the summary compares the builds by their ratio to the peer of
# their own run, which is what the noise of a shared machine leaves comparable, and for
# imports also by messages per CPU second of the import (less sensitive to other load).
# `bench/compare.sh --summary OUT_DIR OLD NEW ROUNDS` prints the summary of an earlier run.
#
#   bench/compare.sh OLD_BINARY NEW_BINARY
#
# Environment (all optional): ROUNDS (3), MESSAGES_SMTP (20000), MESSAGES_IMPORT (30000),
# OUT (a folder for the raw outputs; default a temp dir, kept and printed).
set -euo pipefail
cd "$(dirname "$0")/.."
SUMMARY_ONLY=
if [ "${1:-}" = --summary ]; then
    SUMMARY_ONLY=1; OUT=$2; shift 2
    ROUNDS=${3:-${ROUNDS:-3}}; set -- "$1" "$2"
fi
[ $# -eq 2 ] || { echo "usage: bench/compare.sh OLD_BINARY NEW_BINARY" >&2; exit 2; }
OLD=$(realpath "$1"); NEW=$(realpath "$2")
for b in "$OLD" "$NEW"; do [ -x "$b" ] || { echo "$b is not an executable file" >&2; exit 2; }; done
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/postern-compare.XXXXXX")}
mkdir -p "$OUT"

run() { # kind build round
    local kind=$1 label=$2 round=$3 bin
    bin=$([ "$label" = old ] && echo "$OLD" || echo "$NEW")
    local out="$OUT/$kind-$label-$round.txt"
    if [ "$kind" = smtp ]; then
        POSTERN_BIN="$bin" BENCH_REV="$label" SESSIONS=32 REUSE=yes ROUNDS=1 \
            MESSAGES=${MESSAGES_SMTP:-20000} bench/smtp.sh >"$out" 2>&1
    else
        POSTERN_BIN="$bin" BENCH_REV="$label" ROUNDS=1 \
            MESSAGES=${MESSAGES_IMPORT:-30000} bench/import.sh >"$out" 2>&1
    fi
    echo "$kind $label round $round: $out" >&2
}

for round in $( [ -n "$SUMMARY_ONLY" ] || seq 1 "$ROUNDS"); do
    # Alternate which build goes first.
    if [ $((round % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
    for kind in smtp import; do
        for label in $order; do run "$kind" "$label" "$round"; done
    done
done

python3 - "$OUT" "$ROUNDS" "$OLD" "$NEW" <<'PY'
import re, statistics, sys, pathlib
out, rounds, old, new = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]
def num(s):
    return float(re.sub(r"[^0-9.]", "", s.split()[0]))
smtp, imp = {"old": [], "new": []}, {}
for label in ("old", "new"):
    for r in range(1, rounds + 1):
        for line in (out / f"smtp-{label}-{r}.txt").read_text().splitlines():
            c = cells(line)
            if len(c) >= 5 and c[0] == "32" and c[1] == "yes" and c[4].endswith("%"):
                smtp[label].append((num(c[2]), num(c[3]), num(c[2]) / num(c[3])))
        for line in (out / f"import-{label}-{r}.txt").read_text().splitlines():
            c = cells(line)
            if len(c) >= 10 and c[0].startswith("postern import"):
                imp.setdefault((label, c[0]), []).append(
                    (num(c[4]), num(c[7]), num(c[4]) / num(c[7]), num(c[9])))
med = statistics.median
print(f"old: {old}\nnew: {new}\n{rounds} rounds, alternating; raw outputs in {out}\n")
print("| benchmark | old msg/s | old / peer | new msg/s | new / peer | new vs old (ratio to peer) | new vs old (msg per CPU second) |")
print("|---|---:|---:|---:|---:|---:|---:|")
if smtp["old"] and smtp["new"]:
    o, n = med(x[2] for x in smtp["old"]), med(x[2] for x in smtp["new"])
    print(f"| SMTP, 32 sessions, reuse (peer: smtp-sink) | {med(x[0] for x in smtp['old']):.0f} | {o:.1%} | "
          f"{med(x[0] for x in smtp['new']):.0f} | {n:.1%} | {n / o - 1:+.1%} | - |")
for source in sorted({k[1] for k in imp}):
    a, b = imp.get(("old", source), []), imp.get(("new", source), [])
    if a and b:
        o, n = med(x[2] for x in a), med(x[2] for x in b)
        co, cn = med(x[3] for x in a), med(x[3] for x in b)
        print(f"| {source} (peer: notmuch new) | {med(x[0] for x in a):.0f} | {o:.2f}x | "
              f"{med(x[0] for x in b):.0f} | {n:.2f}x | {n / o - 1:+.1%} | {cn / co - 1:+.1%} |")
PY
