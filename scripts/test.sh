#!/usr/bin/env bash
# The project's one test command (README, .ci/run): installs the oracle packages when it can,
# checks formatting and lints, builds, and runs every test.
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
