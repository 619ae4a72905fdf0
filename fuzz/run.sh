#!/usr/bin/env bash
# Runs each fuzz target for FUZZ_SECONDS (default 300) of wall time, one process at a time
# at the lowest CPU priority. Crashes, timeouts and out-of-memory inputs are kept in
# fuzz/artifacts/<target>/; a crash does not end the target's turn: fuzzing starts again
# for the time left (a seed that crashes is moved out of the corpus first, so that it is
# not run again). Prints one line per target, also appended to fuzz/logs/summary.tsv:
#   date  target  wall_s  cpu_s  executions  corpus_files  corpus_units  coverage  crashes
# corpus_files: files in fuzz/corpus/<target> (seeds included, never minimised);
# corpus_units and coverage: libFuzzer's last `corp:` and `cov:` figures; crashes: every
# input kept, timeouts and out-of-memory ones included.
# Environment: FUZZ_SECONDS, FUZZ_TARGETS (space-separated), FUZZ_ARGS (more libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")"
FUZZ_SECONDS=${FUZZ_SECONDS:-300}
FUZZ_TARGETS=${FUZZ_TARGETS:-"smtp_session parse_inbound tnef mbox maildir auth_records rules"}
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="target/$triple/release"

# Largest input libFuzzer makes per target. parse_inbound goes to 1 MiB so that deep MIME
# nesting can appear at all; libFuzzer still grows inputs slowly (-len_control), so most
# runs stay small.
max_len() {
    case "$1" in
        parse_inbound) echo 1048576 ;;
        tnef|mbox) echo 262144 ;;
        *) echo 65536 ;;
    esac
}

# The inputs libFuzzer kept for `$1`: crashes, timeouts, out-of-memory inputs, sorted.
artifacts() {
    ls "artifacts/$1" | grep -E '^(crash|timeout|oom|leak)-' | sort || true
}

./build.sh
./seed.py $FUZZ_TARGETS
mkdir -p logs
for t in $FUZZ_TARGETS; do
    mkdir -p "corpus/$t" "artifacts/$t"
    dict=()
    [ -f "dict/$t.dict" ] && dict=("-dict=dict/$t.dict")
    log="logs/$t-$(date -u +%Y%m%dT%H%M%SZ).log"
    start=$(date +%s)
    cpu=0 execs=0 crashes=0 rounds=0
    while :; do
        left=$(( FUZZ_SECONDS - ($(date +%s) - start) ))
        [ "$left" -ge 5 ] && [ "$rounds" -lt 50 ] || break
        rounds=$((rounds + 1))
        before=$(artifacts "$t")
        set +e
        /usr/bin/time -f "cpu %U %S" -a -o "$log" \
            nice -n 19 "$bin_dir/$t" "corpus/$t" "${dict[@]}" \
            -max_total_time="$left" -max_len="$(max_len "$t")" -timeout=25 \
            -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
            ${FUZZ_ARGS:-} >>"$log" 2>&1
        status=$?
        set -e
        cpu=$(awk -v a="$cpu" '/^cpu /{c=$2+$3} END{print a+c}' "$log")
        round_execs=$(awk '/^stat::number_of_executed_units:/{n=$2} END{print n+0}' "$log")
        execs=$((execs + round_execs))
        # Later rounds append to the same log: mark this round's figures as counted.
        sed -i 's/^cpu /counted cpu /; s/^stat::number_of_executed_units/counted stat::number_of_executed_units/' "$log"
        echo "---- round $rounds ended with status $status" >>"$log"
        [ "$status" -eq 0 ] && break
        new=$(comm -13 <(echo "$before") <(artifacts "$t"))
        if [ -z "$new" ]; then
            echo "$t: libFuzzer stopped (status $status) without an artifact; see $log" >&2
            break
        fi
        for found in $new; do
            crashes=$((crashes + 1))
            hash=${found##*-}
            if [ -f "corpus/$t/$hash" ]; then
                mkdir -p "artifacts/$t/seeds"
                mv "corpus/$t/$hash" "artifacts/$t/seeds/"
            fi
            echo "$t: found artifacts/$t/$found (see $log)"
        done
    done
    wall=$(( $(date +%s) - start ))
    corpus=$(ls "corpus/$t" | wc -l)
    # libFuzzer's last status line: edges covered and inputs in its (minimised) corpus.
    cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    units=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
    line="$(date -u +%Y-%m-%d)	$t	$wall	$cpu	$execs	$corpus	${units:-?}	${cov:-?}	$crashes"
    echo "$line" | tee -a logs/summary.tsv
done
