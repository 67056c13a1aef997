#!/usr/bin/env bash
# The project's one test command (README, .ci/run): installs the oracle packages when it can,
# checks formatting and lints, builds, runs every test, then kazoo's own test suite.
#   KAZOO_SUITE=0 skips the kazoo suite (about 4 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    scripts/install-oracle.sh
else
    echo "test.sh: not root; assuming ZooKeeper, zookeeper-bin and kazoo are installed" >&2
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace -- --test-threads 2

if [ "${KAZOO_SUITE:-1}" != 0 ]; then
    # kazoo 2.11.0 has 493 tests; 480 pass. Expected failures until later issues: 7 need
    # several servers (fail-over, reconfig, read-only mode), 1 TLS, 2 SASL DIGEST-MD5. The
    # floor leaves a margin for timing-sensitive tests on a loaded 2-core machine.
    CORRAL_BIN=target/debug/corral scripts/kazoo-suite.sh --min-pass 474
fi
