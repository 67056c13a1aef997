#!/usr/bin/env bash
# A/B of two corral builds, interleaved on one machine:
#   bench/ab-binaries.sh OLD_CORRAL NEW_CORRAL DRIVER
# DRIVER is a corral binary (its `corral bench`) or the word `zkbench` (the neutral Java
# driver, ../shared/tools/zkbench or ZKBENCH_SRC, copied to a temp dir to compile).
# Each round starts each build on a fresh data dir (forceSync on), warms it up, then runs
# set and get (16 clients x 100 in flight, OPS ops) and prints ops/s, p99 and the server's
# CPU ms per 10k ops (from /proc/PID/stat). Env: ROUNDS (3), OPS (100000).
set -euo pipefail
OLD=$1; NEW=$2; DRIVER=$3; ROUNDS=${ROUNDS:-3}; OPS=${OPS:-100000}
if [ "$DRIVER" = zkbench ]; then
  src=${ZKBENCH_SRC:-$(cd "$(dirname "$0")/.." && pwd)/../shared/tools/zkbench}
  [ -f "$src/ZkBench.java" ] || { echo "no zkbench at $src (set ZKBENCH_SRC)" >&2; exit 1; }
  zb=$(mktemp -d /tmp/ab-zkbench.XXXX); trap 'rm -rf "$zb"' EXIT
  cp -r "$src"/. "$zb"; chmod -R u+w "$zb"; rm -rf "$zb/build"
fi
# drive PORT WORKLOAD OPS: one JSON line on stdout.
drive() {
  if [ "$DRIVER" = zkbench ]; then
    "$zb/run.sh" --connect "127.0.0.1:$1" --workload "$2" --clients 16 --ops "$3" 2>/dev/null
  else
    "$DRIVER" bench --server "127.0.0.1:$1" --workload "$2" --clients 16 --outstanding 100 --ops "$3" 2>/dev/null
  fi
}
hz=$(getconf CLK_TCK)
cpu() { awk -v hz="$hz" '{print ($14+$15)/hz}' /proc/$1/stat; }
for r in $(seq 1 "$ROUNDS"); do
  for which in old new; do
    bin=$OLD; [ "$which" = new ] && bin=$NEW
    d=$(mktemp -d /tmp/ab.XXXX); port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    printf 'tickTime=2000\ndataDir=%s/data\nclientPort=%s\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n' "$d" "$port" > "$d/zoo.cfg"
    "$bin" serve --config "$d/zoo.cfg" 2> "$d/err" & pid=$!
    for i in $(seq 100); do (echo srvr | timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; cat <&3 >/dev/null" ) 2>/dev/null && break; sleep 0.1; done
    sleep 0.5
    drive "$port" set 20000 >/dev/null || true  # warm-up, creates keys
    for wl in set get; do
      c0=$(cpu $pid)
      out=$(drive "$port" "$wl" "$OPS")
      c1=$(cpu $pid)
      read -r ops p99 < <(echo "$out" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(round(d.get("ops_per_sec", d.get("throughput", 0))), round(d.get("p99_us", 0)/1000, 2))')
      cpu10k=$(python3 -c "print(round(($c1-$c0)*1000*10000/$OPS,1))")
      echo "round $r $which $wl ops/s=$ops p99_ms=$p99 cpu_ms_per_10k=$cpu10k"
    done
    kill -TERM $pid; wait $pid 2>/dev/null || true; rm -rf "$d"
  done
done
