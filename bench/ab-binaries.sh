#!/usr/bin/env bash
# A/B of two corral builds, interleaved on one machine:
#   bench/ab-binaries.sh OLD_CORRAL NEW_CORRAL DRIVER_CORRAL
# Each round starts each build on a fresh data dir (forceSync on), warms it up, then runs
# `corral bench` set and get (16 clients x 100 in flight, OPS ops) with DRIVER_CORRAL, and
# prints ops/s and the server's CPU ms per 10k ops (from /proc/PID/stat). Env: ROUNDS (3),
# OPS (100000).
set -euo pipefail
OLD=$1; NEW=$2; DRIVER=$3; ROUNDS=${ROUNDS:-3}; OPS=${OPS:-100000}
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
    "$DRIVER" bench --server 127.0.0.1:$port --workload set --clients 16 --outstanding 100 --ops 20000 >/dev/null 2>&1  # warm-up, creates keys
    for wl in set get; do
      c0=$(cpu $pid)
      out=$("$DRIVER" bench --server 127.0.0.1:$port --workload $wl --clients 16 --outstanding 100 --ops $OPS 2>/dev/null)
      c1=$(cpu $pid)
      ops=$(echo "$out" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(round(d.get("ops_per_sec", d.get("throughput", 0))))')
      cpu10k=$(python3 -c "print(round(($c1-$c0)*1000*10000/$OPS,1))")
      echo "round $r $which $wl ops/s=$ops cpu_ms_per_10k=$cpu10k"
    done
    kill -TERM $pid; wait $pid 2>/dev/null || true; rm -rf "$d"
  done
done
