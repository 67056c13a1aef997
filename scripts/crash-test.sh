#!/usr/bin/env bash
# The long kill -9 crash test by hand (DESIGN.md "Testing" -> faults; issue 3).
# Runs crates/cli/tests/durability.rs's crash tests (default snapCount, and snapCount=50 so
# that snapshots plus log replay are exercised) in release mode, one after the other, and
# prints their summary figures.
#
#   scripts/crash-test.sh                 # 100 rounds per variant
#   ROUNDS=500 scripts/crash-test.sh
#   SEED=1234 scripts/crash-test.sh       # replay the kill moments of an earlier run
#   CORRAL_KEEP_TEST_DIRS=1 scripts/crash-test.sh   # keep the data dirs for inspection
#
# Exit status: 0 only if no acknowledged write was lost, every restart succeeded, the
# session survived every restart and nothing unexpected was answered.
set -uo pipefail
cd "$(dirname "$0")/.."

rounds="${ROUNDS:-100}"
export CORRAL_CRASH_ROUNDS="$rounds"
[ -n "${SEED:-}" ] && export CORRAL_CRASH_SEED="$SEED"

log="$(mktemp -t corral-crash-test.XXXXXX.log)"
echo "crash-test: $rounds rounds per variant; full output in $log"
cargo test --release -p corral --test durability crash -- --nocapture --test-threads 1 2>&1 |
    tee "$log" | grep -E '^(crash test|round [0-9]+: .*(failed|could not|gone|lost this round [1-9]))|^test |panicked'
status=${PIPESTATUS[0]}

echo
echo "crash-test summary:"
if ! grep -E '^crash summary' "$log"; then
    echo "  no summary line: the tests did not get that far (see $log)"
    status=1
fi
# "crash summary (<variant>): rounds R, acknowledged A, lost L, failed restarts F, ..."
awk '/^crash summary/ {
        for (i = 1; i <= NF; i++) {
            gsub(",", "", $(i + 1))
            if ($i == "rounds") r += $(i + 1)
            if ($i == "acknowledged") a += $(i + 1)
            if ($i == "lost" && $(i - 1) != "sessions") l += $(i + 1)
            if ($i == "restarts") f += $(i + 1)
        }
     }
     END { printf "total: rounds %d, acknowledged writes %d, lost %d, failed restarts %d\n", r, a, l, f }' "$log"
if [ "$status" -eq 0 ]; then
    echo "crash-test: PASS"
else
    echo "crash-test: FAIL (cargo test exit status $status; output in $log)"
fi
exit "$status"
