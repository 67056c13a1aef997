#!/usr/bin/env bash
# Partitions in network namespaces (issue 12, "Done when" 3). As root:
#   bash scripts/partition-test.sh
# Makes a hub namespace with a bridge and one namespace per member, each joined to the hub by
# a veth pair (198.18.0.1-3/24: the benchmarking range, only ever inside these namespaces),
# builds corral, and runs crates/cli/tests/partition.rs (ignored by default), which starts the
# 3 members under `ip netns exec`, runs clients in every namespace, cuts a follower and then
# the leader off by downing the hub's end of their veth, heals, and checks the history.
# Everything made here is deleted on exit, however the run ends.
#
# Environment: PARTITION_WARMUP_SECS (4), PARTITION_CUT_SECS (6), PARTITION_HEAL_SECS (8),
# PARTITION_MAJORITY_LIMIT_SECS (3), PARTITION_CHECKER_LIMIT_SECS (60); PARTITION_KEEP=1
# keeps the work dir (configs, member logs, history.txt).
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "partition-test.sh: needs root (ip netns)" >&2
    exit 2
fi
command -v ip >/dev/null || { echo "partition-test.sh: needs iproute2 (ip)" >&2; exit 2; }

cd "$(dirname "$0")/.."
root=$(pwd)
tag="crp$$"
hub="$tag-hub"
work=$(mktemp -d "${TMPDIR:-/tmp}/corral-partition.XXXXXX")
made_ns=()

cleanup() {
    local rc=$?
    set +e
    # Members the test started, if it died before stopping them itself.
    if [ -f "$work/pids" ]; then
        while read -r pid; do
            [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
        done <"$work/pids"
    fi
    for ns in "${made_ns[@]}"; do
        ip netns del "$ns" 2>/dev/null
    done
    if [ "${PARTITION_KEEP:-}" = 1 ] || [ $rc != 0 ]; then
        echo "partition-test.sh: work dir kept: $work" >&2
    else
        rm -rf "$work"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$hub"
made_ns+=("$hub")
ip -n "$hub" link set lo up
ip -n "$hub" link add br0 type bridge forward_delay 0 stp_state 0
ip -n "$hub" link set br0 up

members=""
for i in 1 2 3; do
    ns="$tag-m$i"
    ip netns add "$ns"
    made_ns+=("$ns")
    ip -n "$ns" link set lo up
    # The pair is made inside the member's namespace, then its hub end moved to the hub: no
    # interface of this test ever exists in the host's namespace.
    ip -n "$ns" link add eth0 type veth peer name "h$i"
    ip -n "$ns" link set "h$i" netns "$hub"
    ip -n "$ns" addr add "198.18.0.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$hub" link set "h$i" master br0
    ip -n "$hub" link set "h$i" up
    members="${members:+$members,}$ns:198.18.0.$i:h$i"
done

cargo build --release -p corral
export CORRAL_BIN="$root/target/release/corral"
export PARTITION_DIR="$work" PARTITION_HUB="$hub" PARTITION_MEMBERS="$members"
cargo test --release -p corral --test partition -- --include-ignored --nocapture --test-threads 1
