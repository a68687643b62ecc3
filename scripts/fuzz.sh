#!/bin/sh
# fuzz.sh - runs the libFuzzer targets built in build/fuzz for a bounded
# time each, one after the other or all at once, and prints each one's
# executions and coverage; fails when one of them finds a crash.
#
#   sh scripts/fuzz.sh SECONDS seq|par TARGET...
#
# New inputs go to build/fuzz/corpus/TARGET (the committed seeds in
# fuzz/corpus/TARGET are only read); a crashing input is written to
# build/fuzz/artifacts/TARGET-crash-*, the log to build/fuzz/TARGET.log.
set -u
secs=$1
mode=$2
shift 2
cd "$(dirname "$0")/.."
mkdir -p build/fuzz/artifacts

run() {
    mkdir -p "build/fuzz/corpus/$1"
    "./build/fuzz/fuzz_$1" -max_total_time="$secs" -timeout=10 \
        -print_final_stats=1 -artifact_prefix="build/fuzz/artifacts/$1-" \
        "build/fuzz/corpus/$1" "fuzz/corpus/$1" >"build/fuzz/$1.log" 2>&1
}

# prints one line for a finished target; returns its status
report() {
    log="build/fuzz/$1.log"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*/[0-9a-zA-Z]*' "$log" \
          | tail -1)
    if [ "$2" -ne 0 ]; then
        echo "fuzz_$1: FAILED (status $2) after ${runs:-?} runs:"
        grep -v '^#' "$log" | tail -40
        return 1
    fi
    echo "fuzz_$1: ${runs} runs in ${secs} s (${rate}/s), ${cov}"
}

failed=0
if [ "$mode" = par ]; then
    for t in "$@"; do
        run "$t" &
        eval "pid_$t=$!"
    done
    for t in "$@"; do
        eval "wait \$pid_$t"
        report "$t" $? || failed=1
    done
else
    for t in "$@"; do
        run "$t"
        report "$t" $? || failed=1
    done
fi
exit $failed
