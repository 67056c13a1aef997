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
cargo clippy -p corral --all-targets --features failpoints -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace -- --test-threads 2

if [ "${KAZOO_SUITE:-1}" != 0 ]; then
    # kazoo 2.11.0 has 493 tests, run on 3-member corral ensembles (kazoo's default cluster
    # size): 487 pass, 3 skip (Kerberos, CI-only) and 3 fail, each listed with its reason in
    # kazoo-expected-failures.txt (1 TLS, 2 SASL DIGEST-MD5). Any other failure fails the run
    # unless it passes when rerun once
    # (timing-sensitive tests on a loaded 2-core machine); the floor catches tests that
    # quietly stop running.
    CORRAL_BIN="${CARGO_TARGET_DIR:-target}/debug/corral" scripts/kazoo-suite.sh \
        --expected-failures scripts/kazoo-expected-failures.txt --min-pass 487
fi

# Last, as it rebuilds target/debug/corral with the keeper's failpoints compiled in (inert
# until configured; everything above ran the plain build): a 6 s fsync injected at run time.
cargo test -p corral --features failpoints --test keeper_stalls a_6_second_fsync -- --test-threads 1
