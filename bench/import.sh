#!/usr/bin/env bash
# Historic mailbox import benchmark: `postern import` of a generated support mailbox (100,000
# messages, about 1 GB, see bench/gen_mailbox.py) as an mbox and as a Maildir, against
# `notmuch new` indexing the same Maildir. Prints messages per second, MB per second and peak
# RSS for each, and the ratio postern / notmuch.
#
#   bench/import.sh                      # full run: 100,000 messages
#   MESSAGES=2000 bench/import.sh        # quick run
#
# Environment (all optional):
#   MESSAGES    messages in the mailbox                              (default 100000)
#   SEED        generator seed                                       (default 1)
#   ROUNDS      runs of each import; the table shows medians        (default 1)
#   CACHE_DIR   where generated mailboxes are kept, one directory per seed, size and
#               generator version, regenerated when missing          (default target/bench-mailboxes)
#   KEEP_TMP    1 keeps the temp dir (Postern data dirs, notmuch databases, logs)
#   POSTERN_BIN a postern binary to measure instead of building one (it is copied first)
#   CHECK_MAILBOX 1 runs bench/check_mailbox.py on the mailbox first (parses every message
#               with Python's email package: about 10 minutes for 100,000)
#   BENCH_REV   label for the build measured (default: git commit, "+ uncommitted changes"
#               when src/ differs from HEAD at build time)
#
# Every run starts from nothing: a fresh POSTERN__DATA_DIR (so a fresh database) with a fresh
# account (support address support@shop.example, the brand of the generated mailbox), and a
# fresh notmuch database (NOTMUCH_CONFIG in a temp dir: database.path there, mail_root = the
# cached Maildir, which notmuch only reads). The page cache is warmed first so that every
# program reads the mailbox from memory. Measured per run, by a small driver around the
# command: wall time, CPU seconds of the command, CPU seconds of every other process on the
# host during the run ("other CPU": the machine may be shared), and peak RSS (ru_maxrss of the
# child: the high-water mark of the importing process).
#
# Each import is checked: `postern import --json` must exit 0 and print seen == the number of
# messages and imported + duplicates + quarantined == seen; duplicates, quarantined and
# tickets are printed next to what the generator expects (expected.json: exact duplicates,
# malformed entries, conversations), and so is how the tickets group the messages
# (bench/compare_grouping.py on the run's database, after the timing: conversations found
# exactly, split over tickets, tickets merging conversations).
#
# Targets (issue "Historic mailbox import"): postern >= 5x notmuch's rate (messages per
# second) for both sources; postern peak RSS < 300 MB whatever the mailbox size.
set -euo pipefail

MESSAGES=${MESSAGES:-100000}
SEED=${SEED:-1}
ROUNDS=${ROUNDS:-1}
KEEP_TMP=${KEEP_TMP:-0}
POSTERN_BIN=${POSTERN_BIN:-}
CHECK_MAILBOX=${CHECK_MAILBOX:-0}
BRAND=support@shop.example
RSS_TARGET_MB=300
RATIO_TARGET=5

cd "$(dirname "${BASH_SOURCE[0]}")/.."
CACHE_DIR=${CACHE_DIR:-target/bench-mailboxes}

# shellcheck source=bench/lib.sh
. bench/lib.sh

case "$MESSAGES$SEED$ROUNDS" in *[!0-9]*) die "MESSAGES, SEED and ROUNDS must be whole numbers" ;; esac
[ "$MESSAGES" -ge 50 ] || die "MESSAGES must be at least 50"
[ "$ROUNDS" -ge 1 ] || die "ROUNDS must be at least 1"

# --- tools -------------------------------------------------------------------------------
if ! command -v notmuch >/dev/null; then
    log "notmuch not found: installing the notmuch package"
    apt_install "notmuch (Debian package notmuch)" notmuch
    command -v notmuch >/dev/null || die "notmuch still missing after installing the notmuch package"
fi
command -v python3 >/dev/null || die "python3 is required"

# --- build -------------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/postern-importbench.XXXXXX")
trap remove_tmp EXIT
trap 'exit 130' INT TERM

postern_binary "$TMP/postern"
BIN="$TMP/postern"

HAVE_IMPORT=1
if ! "$BIN" import --help >/dev/null 2>&1; then
    HAVE_IMPORT=0
    log "WARNING: postern has no import command yet ('postern import --help' fails): only the mailbox and notmuch will be measured"
fi

# --- mailbox -------------------------------------------------------------------------------
# Keyed by the generator's own hash too: a changed generator writes a new mailbox.
GEN_HASH=$(sha256sum bench/gen_mailbox.py | cut -c1-12)
MAILBOX="$CACHE_DIR/seed$SEED-n$MESSAGES-$GEN_HASH"
if [ ! -s "$MAILBOX/expected.json" ]; then
    mkdir -p "$CACHE_DIR"
    rm -rf "$MAILBOX" "$MAILBOX.partial"
    log "generating $MESSAGES messages (seed $SEED) into $MAILBOX"
    start=$(date +%s.%N)
    python3 bench/gen_mailbox.py --seed "$SEED" --messages "$MESSAGES" --out "$MAILBOX.partial" --quiet
    mv "$MAILBOX.partial" "$MAILBOX"
    log "generated in $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)") s"
else
    log "using the cached mailbox $MAILBOX"
fi
MBOX="$(cd "$MAILBOX" && pwd)/mailbox.mbox"
MAILDIR="$(cd "$MAILBOX" && pwd)/Maildir"
EXPECTED="$MAILBOX/expected.json"
read -r EXP_MESSAGES EXP_UNIQUE EXP_DUP EXP_MALFORMED EXP_CONV MBOX_BYTES MSG_BYTES < <(python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))
print(e["messages"], e["unique_messages"], e["duplicates"], e["malformed"], e["conversation_count"],
      e["mbox_bytes"], e["message_bytes"])' "$EXPECTED")
[ "$EXP_MESSAGES" -eq "$MESSAGES" ] || die "$EXPECTED says $EXP_MESSAGES messages, not $MESSAGES: remove $MAILBOX"
log "mailbox: $EXP_MESSAGES messages ($EXP_UNIQUE unique, $EXP_DUP duplicates, $EXP_MALFORMED malformed), $EXP_CONV conversations"

if [ "$CHECK_MAILBOX" = 1 ]; then
    log "checking the mailbox (bench/check_mailbox.py)"
    python3 bench/check_mailbox.py "$MAILBOX" >&2 || die "the generated mailbox $MAILBOX is not what expected.json says"
fi

log "warming the page cache (mbox and Maildir)"
cat "$MBOX" >/dev/null
find "$MAILDIR" -type f -exec cat {} + >/dev/null

# Runs a command and prints one tab-separated line: wall seconds, CPU seconds of the command
# (with its children), CPU seconds of every other process on the host, peak RSS (kB) of the
# command, exit status. stdout and stderr of the command go to the given files.
cat >"$TMP/measure.py" <<'EOF'
import os, resource, subprocess, sys, time
out, err, args = sys.argv[1], sys.argv[2], sys.argv[3:]
tck = os.sysconf("SC_CLK_TCK")
def host_busy():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return (sum(f) - f[3] - f[4]) / tck  # all but idle and iowait
h0 = host_busy()
t0 = time.monotonic()
with open(out, "wb") as o, open(err, "wb") as e:
    rc = subprocess.call(args, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
wall = time.monotonic() - t0
h1 = host_busy()
r = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = r.ru_utime + r.ru_stime
print(f"{wall:.3f}\t{cpu:.2f}\t{max(0.0, (h1 - h0) - cpu):.2f}\t{r.ru_maxrss}\t{rc}")
EOF
measure() { python3 "$TMP/measure.py" "$@"; }
kb_of() { du -sk "$1" 2>/dev/null | cut -f1 | grep . || echo 0; } # disk use of a directory, kB

json_field() { # file field: the field of a JSON object, or "-" when absent
    python3 -c '
import json, sys
try:
    v = json.load(open(sys.argv[1])).get(sys.argv[2], "-")
except (ValueError, AttributeError) as e:
    sys.exit(f"not a JSON object: {e}")
print("-" if v is None else v)' "$1" "$2"
}

# --- runs ----------------------------------------------------------------------------------
RESULTS="$TMP/results.tsv"
: >"$RESULTS"
FAILED=0

run_notmuch() { # round
    local dir="$TMP/r$1-notmuch" m
    mkdir -p "$dir/db"
    # No new.tags beyond the defaults, no excludes: notmuch's plain indexing of every file.
    cat >"$dir/config" <<EOF
[database]
path=$dir/db
mail_root=$MAILDIR
[user]
name=Bench
primary_email=$BRAND
[new]
tags=unread;inbox;
ignore=
[search]
exclude_tags=
[maildir]
synchronize_flags=true
EOF
    log "round $1: notmuch new, Maildir of $MESSAGES messages"
    m=$(NOTMUCH_CONFIG="$dir/config" measure "$dir/new.out" "$dir/new.err" notmuch new --quiet)
    [ "$(cut -f5 <<<"$m")" = 0 ] || {
        cat "$dir/new.err" >&2
        die "notmuch new failed (round $1)"
    }
    local count threads files
    count=$(NOTMUCH_CONFIG="$dir/config" notmuch count '*')
    threads=$(NOTMUCH_CONFIG="$dir/config" notmuch count --output=threads '*')
    files=$(NOTMUCH_CONFIG="$dir/config" notmuch count --output=files '*')
    # notmuch merges files with the same Message-ID into one message and indexes malformed
    # files as messages of their own (an id made from a hash when there is none).
    if [ "$count" -lt "$EXP_UNIQUE" ] || [ "$count" -gt $((EXP_UNIQUE + EXP_MALFORMED)) ]; then
        log "round $1: WARNING: notmuch indexed $count messages, expected $EXP_UNIQUE to $((EXP_UNIQUE + EXP_MALFORMED))"
    fi
    printf 'notmuch\t%s\t%s\t%s\t-\t-\t%s\t-\t%s\t%s\t-\n' "$1" "$m" "$count" "$threads" "$files" \
        "$(kb_of "$dir/db")" >>"$RESULTS"
    log "round $1: notmuch $(cut -f1 <<<"$m") s, $count messages, $threads threads, $files files"
    if [ "$KEEP_TMP" != 1 ]; then rm -rf "$dir"; fi
}

run_postern() { # round source(mbox|maildir)
    local dir="$TMP/r$1-$2" created account m out rc
    mkdir -p "$dir"
    export POSTERN__DATA_DIR="$dir/data"
    created=$("$BIN" account create --name "Import bench" --support-address "$BRAND" --json) ||
        die "postern account create failed (round $1, $2)"
    account=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$created")
    local args=(import --account "$account" --json)
    if [ "$2" = mbox ]; then args+=(--mbox "$MBOX"); else args+=(--maildir "$MAILDIR"); fi
    log "round $1: postern ${args[*]}"
    m=$(measure "$dir/import.json" "$dir/import.err" "$BIN" "${args[@]}")
    rc=$(cut -f5 <<<"$m")
    if [ "$rc" != 0 ]; then
        log "round $1: postern import --$2 exited with $rc:"
        tail -n 20 "$dir/import.err" >&2
        FAILED=1
        return
    fi
    local seen imported dups quarantined tickets elapsed
    for f in seen imported duplicates quarantined tickets elapsed_ms; do
        json_field "$dir/import.json" "$f" >"$dir/$f" || {
            log "round $1: postern import --$2 printed no JSON summary:"
            head -c 2000 "$dir/import.json" >&2
            FAILED=1
            return
        }
    done
    seen=$(cat "$dir/seen") imported=$(cat "$dir/imported") dups=$(cat "$dir/duplicates")
    quarantined=$(cat "$dir/quarantined") tickets=$(cat "$dir/tickets") elapsed=$(cat "$dir/elapsed_ms")
    local ok=yes
    if [ "$seen" != "$EXP_MESSAGES" ]; then
        log "round $1: CHECK FAILED ($2): seen = $seen, the mailbox holds $EXP_MESSAGES messages"
        ok=no
    fi
    if [[ "$imported$dups$quarantined" =~ ^[0-9]+$ ]] && [ $((imported + dups + quarantined)) = "$seen" ]; then :; else
        log "round $1: CHECK FAILED ($2): imported $imported + duplicates $dups + quarantined $quarantined != seen $seen"
        ok=no
    fi
    [ "$ok" = yes ] || FAILED=1
    local grouping="not checked: no $dir/data/postern.db"
    if [ -f "$dir/data/postern.db" ]; then
        grouping=$(python3 bench/compare_grouping.py "$EXPECTED" "$dir/data/postern.db" "$account" 2>&1 | tr '\t\n' '  ' | sed 's/ *$//') || true
    fi
    printf 'postern-%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$2" "$1" "$m" "$seen" "$imported" "$dups" \
        "$quarantined" "$tickets" "$elapsed" "$(kb_of "$dir/data")" "$ok" "$grouping" >>"$RESULTS"
    log "round $1: postern --$2 $(cut -f1 <<<"$m") s: seen $seen, imported $imported, duplicates $dups" \
        "(expected $EXP_DUP), quarantined $quarantined (expected $EXP_MALFORMED), tickets $tickets (expected $EXP_CONV conversations)"
    log "round $1: grouping ($2): $grouping"
    if [ "$KEEP_TMP" != 1 ]; then rm -rf "$dir"; fi
}

for round in $(seq 1 "$ROUNDS"); do
    run_notmuch "$round"
    if [ "$HAVE_IMPORT" = 1 ]; then
        run_postern "$round" mbox
        run_postern "$round" maildir
    fi
done

# --- report --------------------------------------------------------------------------------
mb() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
echo
echo "Historic mailbox import: $EXP_MESSAGES messages (seed $SEED; $EXP_UNIQUE unique, $EXP_DUP exact duplicates," \
    "$EXP_MALFORMED malformed, $EXP_CONV conversations), mbox $(mb "$MBOX_BYTES") MB, Maildir $(mb "$MSG_BYTES") MB"
echo "postern $BENCH_REV; $(notmuch --version); $(nproc) CPUs; kernel $(uname -r); mailbox in $(df -P "$MAILBOX" | awk 'NR==2 {print $1}');" \
    "finished $(date -u +%Y-%m-%dT%H:%MZ)"
echo
python3 - "$RESULTS" "$EXP_MESSAGES" "$MBOX_BYTES" "$MSG_BYTES" "$ROUNDS" "$HAVE_IMPORT" \
    "$EXP_DUP" "$EXP_MALFORMED" "$EXP_CONV" "$RSS_TARGET_MB" "$RATIO_TARGET" <<'EOF'
import statistics, sys
path, messages, mbox_bytes, msg_bytes, rounds, have_import = sys.argv[1], *map(int, sys.argv[2:7])
exp_dup, exp_malformed, exp_conv, rss_target, ratio_target = map(int, sys.argv[7:12])
MB = 1048576
runs = {}
for line in open(path):
    f = line.rstrip("\n").split("\t")
    runs.setdefault(f[0], []).append(f)
med = statistics.median
def rate(rows):
    return med(messages / float(r[2]) for r in rows)
nm = runs.get("notmuch", [])
nm_rate = rate(nm) if nm else None
print(("median of %d rounds; " % rounds if rounds > 1 else "")
      + "msg/s = messages in the mailbox / wall time; MB = 2^20 bytes; RSS = peak resident set of the process;")
print("msg per CPU s = messages / CPU seconds of the program, less sensitive to a loaded machine than msg/s")
print()
print("| source | messages | MB | wall s | msg/s | MB/s | peak RSS MB | notmuch msg/s | postern / notmuch | msg per CPU s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
ratios, max_rss = {}, 0
for key, label, size in (("postern-mbox", "postern import --mbox", mbox_bytes),
                         ("postern-maildir", "postern import --maildir", msg_bytes),
                         ("notmuch", "notmuch new (Maildir)", msg_bytes)):
    rows = runs.get(key)
    if not rows:
        continue
    wall = med(float(r[2]) for r in rows)
    per_cpu = med(messages / max(0.01, float(r[3])) for r in rows)
    r_ = rate(rows)
    rss = max(int(r[5]) for r in rows)
    ratio = "-"
    if key != "notmuch":
        max_rss = max(max_rss, rss)
        ratios[key] = r_ / nm_rate
        ratio = f"{r_ / nm_rate:.2f}x"
    print(f"| {label} | {messages} | {size / MB:.0f} | {wall:.2f} | {r_:.0f} | {size / MB / wall:.1f} | "
          f"{rss / 1024:.1f} | {nm_rate:.0f} | {ratio} | {per_cpu:.0f} |")
print()
print("Each run (CPU = CPU seconds of the program; other CPU = every other process on the host meanwhile;")
print("data MB = size of the data dir or notmuch database afterwards):")
print()
print("| run | round | wall s | CPU s | other CPU s | peak RSS MB | seen | imported | duplicates | quarantined | tickets | elapsed_ms | data MB | checks |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
for key in ("notmuch", "postern-mbox", "postern-maildir"):
    for r in runs.get(key, []):
        if key == "notmuch":
            print(f"| notmuch new | {r[1]} | {float(r[2]):.2f} | {r[3]} | {r[4]} | {int(r[5]) / 1024:.1f} | {r[12]} files | "
                  f"{r[7]} messages | - | - | {r[10]} threads | - | {int(r[13]) / 1024:.0f} | - |")
        else:
            print(f"| {key} | {r[1]} | {float(r[2]):.2f} | {r[3]} | {r[4]} | {int(r[5]) / 1024:.1f} | {r[7]} | {r[8]} | "
                  f"{r[9]} | {r[10]} | {r[11]} | {r[12]} | {int(r[13]) / 1024:.0f} | {r[14]} |")
groupings = [(k, r[1], r[15]) for k in ("postern-mbox", "postern-maildir") for r in runs.get(k, []) if len(r) > 15]
if groupings:
    print()
    print("Grouping of the messages into tickets, against the generator's conversations:")
    print()
    for key, round_, g in groupings:
        print(f"- {key} round {round_}: {g}")
print()
print(f"expected by the generator: {messages} seen, {exp_dup} duplicates, {exp_malformed} quarantined (malformed), "
      f"{exp_conv} tickets (conversations)")
if not have_import:
    print()
    print("postern: not measured, postern has no import command yet")
    sys.exit(0)
for key, label in (("postern-mbox", "mbox"), ("postern-maildir", "Maildir")):
    if key in ratios:
        r = ratios[key]
        print(f"target 1, postern >= {ratio_target}x notmuch ({label}): {r:.2f}x -> {'met' if r >= ratio_target else 'NOT met'}")
    else:
        print(f"target 1 ({label}): no successful run")
if ratios:
    print(f"target 2, peak RSS < {rss_target} MB: {max_rss / 1024:.1f} MB -> {'met' if max_rss < rss_target * 1024 else 'NOT met'}")
EOF

if [ "$HAVE_IMPORT" = 0 ]; then
    die "postern has no import command yet ('postern import --help' fails): the postern part of the benchmark did not run"
fi
if [ "$FAILED" = 1 ]; then
    die "some imports failed or did not pass their checks (see above)"
fi
