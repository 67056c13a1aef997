#!/usr/bin/env bash
# The long leader-election chaos test by hand (issue 14, "Done when 2").
# Runs crates/cli/tests/client_recipes.rs's chaos tests — 3 participants, random freezes of
# their traffic (to expiry, or only to Suspended), a fenced write every 3 ms — against corral
# and real ZooKeeper 3.8 (ignored by a plain `cargo test`: their time bounds need the machine
# to themselves), 200 freezes by default, and prints the summary
# lines (leaderships, fenced writes on the server, worst failover time).
#
#   scripts/election-chaos.sh              # 200 freezes per server (about 4 minutes each)
#   EVENTS=500 scripts/election-chaos.sh
#   SEED=1234 scripts/election-chaos.sh    # replay the freezes of an earlier run
#
# Exit status: 0 only if, on both servers, the successful fenced writes never interleave two
# epochs, each epoch has one writer, and every failover took at most the timeout + 1 s.
set -uo pipefail
cd "$(dirname "$0")/.."
export CORRAL_CHAOS_EVENTS="${EVENTS:-200}"
[ -n "${SEED:-}" ] && export CORRAL_CHAOS_SEED="$SEED"
cargo test -p corral --test client_recipes election_chaos -- --ignored --nocapture --test-threads=1 2>&1 |
    grep -E "^(corral|zookeeper):|^test |test result|panicked|SKIP"
exit "${PIPESTATUS[0]}"
