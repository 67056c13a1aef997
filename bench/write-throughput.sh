#!/usr/bin/env bash
# Durable write throughput: corral vs ZooKeeper 3.8, same neutral driver, same run.
#
#   bench/write-throughput.sh
#   BENCH_OPS=100000 bench/write-throughput.sh
#
# Starts corral (forceSync default = yes) and ZooKeeper 3.8 from Debian (forceSync default =
# yes, group commit), each on a free 127.0.0.1 port with its own temp data dir, then runs
# zkbench (../shared/tools/zkbench: the real Java client, async API, 100 in flight per
# client) `--workload set --clients 16` and `--workload create --clients 16` against each,
# alternating servers so drift on a shared machine hits both. Prints ops/s, latencies, the
# server's CPU seconds per 10k ops, and corral/ZooKeeper ratios.
#
# A write counts only if it is durable: the script checks that corral's dataLogDir grew by at
# least the bytes written and says loudly when it did not (an in-memory corral is not
# comparable to ZooKeeper with fsync).
#
# Env: BENCH_OPS (200000 per run), BENCH_CLIENTS (16), BENCH_WORKLOADS ("set create"),
#      BENCH_KEEP=1, CORRAL_BIN, ZKBENCH_SRC, ZK_HEAP (2000m).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OPS="${BENCH_OPS:-200000}"
CLIENTS="${BENCH_CLIENTS:-16}"
WORKLOADS="${BENCH_WORKLOADS:-set create}"

check_prereqs corral python3 java zk zkbench
ZB=$(zkbench_copy)
log "work dir $WORK; zkbench copy in $ZB; $OPS ops per run, $CLIENTS clients"

# Server CPU time (user+system, seconds) from /proc.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }

CPORT=$(free_port)
CD=$(corral_config corral "$CPORT" 100000 yes)
corral_launch "$CD"
corral_port "$CD" >/dev/null
C_PID=$CORRAL_PID
CS="127.0.0.1:$CPORT"
wait_serving "$CS"
log "corral on $CS (pid $C_PID, forceSync=yes)"

ZPORT=$(free_port)
ZD="$WORK/zk"
zk_start "$ZD" "$ZPORT"
ZS="127.0.0.1:$ZPORT"
wait_serving "$ZS"
log "ZooKeeper 3.8 on $ZS (pid $ZK_PID, forceSync=yes)"

C_LOG0=$(dir_bytes "$CD/log" "$CD/data")
declare -A RATE P50 P99 CPU10K ERR
run() { # NAME SERVER PID WORKLOAD
  local out="$WORK/$1-$4.json" c0 c1
  c0=$(cpu_s "$3")
  "$ZB/run.sh" --connect "$2" --workload "$4" --clients "$CLIENTS" --ops "$OPS" >"$out" 2>"$out.err" \
    || log "zkbench $4 against $1 failed (exit $?): $(tail -3 "$out.err")"
  c1=$(cpu_s "$3")
  RATE[$1-$4]=$(jget "$out" ops_per_sec)
  P50[$1-$4]=$(jget "$out" p50_us)
  P99[$1-$4]=$(jget "$out" p99_us)
  ERR[$1-$4]=$(jget "$out" errors)
  # Includes the warm-up ops (10 % of OPS, <= 20000) the driver runs before measuring.
  local total
  total=$(python3 -c "import sys; o=int(sys.argv[1]); print(o + min(20000, o // 10))" "$OPS")
  CPU10K[$1-$4]=$(python3 -c "import sys; print(f'{(float(sys.argv[2])-float(sys.argv[1]))*10000/int(sys.argv[3]):.2f}')" "$c0" "$c1" "$total")
  log "$1 $4: ${RATE[$1-$4]:-FAILED} ops/s, p50 ${P50[$1-$4]} µs, p99 ${P99[$1-$4]} µs, errors ${ERR[$1-$4]}, server CPU ${CPU10K[$1-$4]} s/10k ops"
}

for w in $WORKLOADS; do
  run corral "$CS" "$C_PID" "$w"
  run zk "$ZS" "$ZK_PID" "$w"
done

C_LOG1=$(dir_bytes "$CD/log" "$CD/data")
GROWTH=$((C_LOG1 - C_LOG0))
N_WORDS=$(wc -w <<<"$WORKLOADS")
# Every write carries >= 100 bytes of data; a log holding less than that per write cannot
# hold the writes.
MIN_EXPECTED=$(python3 -c "import sys; o=int(sys.argv[1]); print((o + min(20000, o // 10)) * int(sys.argv[2]) * 100)" "$OPS" "$N_WORDS")
DURABLE=yes
if [ "$GROWTH" -lt "$MIN_EXPECTED" ]; then
  DURABLE=NO
  log "WARNING: corral's dataDir+dataLogDir grew by $GROWTH bytes during >= $MIN_EXPECTED bytes of writes:"
  log "WARNING: corral is NOT writing its requests to disk (no write-ahead log yet?), so its figures are"
  log "WARNING: in-memory writes vs ZooKeeper's fsynced ones: do not quote this ratio."
fi

cat <<EOF

## write-throughput (zkbench, $CLIENTS clients x 100 in flight, $OPS ops, 100-byte values) — $(date -u +%Y-%m-%d)

corral writes durable (dataLogDir grew by $(human "$GROWTH")): $DURABLE

| workload | corral ops/s | ZooKeeper ops/s | ratio corral/ZK | corral p50/p99 µs | ZK p50/p99 µs | server CPU s/10k ops corral / ZK | errors corral / ZK |
|---|---|---|---|---|---|---|---|
EOF
for w in $WORKLOADS; do
  echo "| $w | ${RATE[corral-$w]:-fail} | ${RATE[zk-$w]:-fail} | $(ratio "${RATE[corral-$w]:-0}" "${RATE[zk-$w]:-0}") | ${P50[corral-$w]}/${P99[corral-$w]} | ${P50[zk-$w]}/${P99[zk-$w]} | ${CPU10K[corral-$w]} / ${CPU10K[zk-$w]} | ${ERR[corral-$w]} / ${ERR[zk-$w]} |"
done
