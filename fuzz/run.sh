#!/usr/bin/env bash
# Runs each fuzz target for FUZZ_SECONDS (default 120) on one core, one after the other, and
# prints per target the executions, rate, coverage and findings (`make fuzz`).
#
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets the stable toolchain build with
# them. Builds are optimized with debug assertions and overflow checks (cargo-fuzz's default),
# without a sanitizer (the code under test is safe Rust). New corpus entries go to
# fuzz/corpus/<target>, crashes to fuzz/artifacts/<target> (both ignored by git); the committed
# seeds in fuzz/seeds/<target> are read as a second corpus.
set -uo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET=${FUZZ_SECONDS:-120}
TARGETS=${FUZZ_TARGETS:-admission admission_structured quantity reference runtime_config http}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
nice -n 5 cargo fuzz build --sanitizer none 2>&1 | tail -n 3 || exit 1
failed=0
summary=()
for t in $TARGETS; do
    mkdir -p "corpus/$t" "artifacts/$t" logs
    log="logs/$t.log"
    echo "== $t: ${SECONDS_PER_TARGET}s"
    nice -n 5 cargo fuzz run --sanitizer none "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -max_len=65536 \
        -timeout=10 -rss_limit_mb=4096 >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$')
    cov=$(grep -Eo '(#[0-9]+|DONE).*cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 | grep -Eo 'cov: [0-9]+ ft: [0-9]+')
    crashes=$(find "artifacts/$t" -type f | wc -l)
    line="$t: ${execs:-?} executions, ${rate:-?} exec/s, ${cov:-cov ?}, corpus $(find "corpus/$t" -type f | wc -l) files, $crashes findings in fuzz/artifacts/$t"
    summary+=("$line")
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed=1
        grep -E 'panicked|SUMMARY|Test unit written' "$log" | head -n 5
    fi
done
echo "== fuzz summary (logs in fuzz/logs/)"
printf '%s\n' "${summary[@]}"
exit "$failed"
