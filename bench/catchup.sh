#!/usr/bin/env bash
# Catch-up by snapshot transfer (issue 12): a 3-member corral ensemble; one follower is
# stopped; BENCH_ZNODES znodes (default 1,000,000) are written through the leader, far past
# its snapshots (snapCount 100,000), so the follower's missing log is purged; the follower is
# started again. Prints the time from its start to serving the leader's last zxid, and the
# leader's write latency (one client, one write in flight) during the transfer against the
# same run's writes before it.
#
#   bench/catchup.sh   Env: CORRAL_BIN (target/release/corral), BENCH_ZNODES, BENCH_LATENCY_S
#                      (120: how long the latency writer runs; the catch-up must end before).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export CORRAL_BIN=${CORRAL_BIN:-target/release/corral}
N=${BENCH_ZNODES:-1000000}
dir=$(mktemp -d /tmp/corral-catchup.XXXX)
lat=$dir/latency.log
cleanup() { scripts/ensemble.sh stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT

port_of() { sed -n 's/^clientPort=//p' "$dir/$1/zoo.cfg"; }
zxid_of() {   # the member's zxid from srvr, as a decimal number (empty if it does not answer)
    python3 - "$1" <<'PY'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
    s.sendall(b"srvr"); out = b""
    while True:
        d = s.recv(4096)
        if not d: break
        out += d
    for l in out.decode().splitlines():
        if l.startswith("Zxid: "): print(int(l[6:], 16))
except OSError:
    pass
PY
}

scripts/ensemble.sh start "$dir" >/dev/null
leader=$(scripts/ensemble.sh leader "$dir")
follower=$(( leader % 3 + 1 ))
lport=$(port_of "$leader"); fport=$(port_of "$follower")
scripts/ensemble.sh kill "$dir" "$follower" >/dev/null
echo "catchup: member $follower stopped; writing $N znodes through the leader (member $leader)"
t=$(date +%s.%N)
"$CORRAL_BIN" bench --server "127.0.0.1:$lport" --workload populate --populate-count "$N" \
    --root /catchup >/dev/null
echo "catchup: populated in $(python3 -c "print(round($(date +%s.%N) - $t, 1))") s"
target=$(zxid_of "$lport")

# One writer on the leader for the whole transfer, logging each request's time and latency.
"$CORRAL_BIN" bench --server "127.0.0.1:$lport" --workload set --clients 1 --outstanding 1 \
    --duration "${BENCH_LATENCY_S:-120}" --keys 100 --root /catchup-lat --latency-log "$lat" >/dev/null 2>&1 &
bench=$!
sleep 5
t0=$(date +%s.%N)
scripts/ensemble.sh restart "$dir" "$follower" >/dev/null 2>&1 &
while :; do
    z=$(zxid_of "$fport")
    [ -n "$z" ] && [ "$z" -ge "$target" ] && break
    sleep 0.05
done
t1=$(date +%s.%N)
wait "$bench" || true   # it writes its latency log when its time is up
wait || true
rss=$(awk '/VmHWM/ {print $2}' /proc/"$(cat "$dir/$follower/pid")"/status 2>/dev/null || echo "?")
python3 - "$lat" "$t0" "$t1" "$N" "$rss" <<'PY'
import sys
path, t0, t1, n, rss = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
during, before = [], []
for line in open(path):
    f = line.split()
    if len(f) < 2: continue
    at, us = int(f[0]) / 1e6, int(f[1])
    (during if t0 <= at <= t1 else before if at < t0 else []).append(us)
def p(v, q):
    v = sorted(v); return v[min(len(v) - 1, int(q * len(v)))] / 1000 if v else float("nan")
print(f"catchup: {n} znodes; follower serving the leader's zxid {t1 - t0:.2f} s after its start; "
      f"its peak RSS {rss} kB")
print(f"catchup: leader write latency ms, before: p50 {p(before, .5):.2f} p99 {p(before, .99):.2f} "
      f"({len(before)} writes); during the catch-up: p50 {p(during, .5):.2f} p99 {p(during, .99):.2f} "
      f"max {p(during, 1):.2f} ({len(during)} writes)")
PY
grep -h "installed the leader's snapshot" "$dir/$follower/server.log" | tail -1 | cut -c1-160
