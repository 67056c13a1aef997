#!/usr/bin/env bash
# Does a snapshot of a big tree hurt request latency, and how fast does a big keeper restart?
#
#   bench/snapshot-latency.sh            # 1,000,000 znodes of 100 bytes (DESIGN.md target)
#   BENCH_ZNODES=100000 bench/snapshot-latency.sh
#
# 1. corral, snapCount huge: populate BENCH_ZNODES znodes (`corral bench --workload populate`),
#    report the rate and the size of dataDir + dataLogDir.
# 2. idle run: `corral bench --workload mixed --clients 8 --outstanding 1 --duration D
#    --interval-report 1` with no snapshot possible.
# 3. SIGTERM, restart on the same data with snapCount=BENCH_SNAPCOUNT; start-to-serving =
#    process start -> first successful getData of the first and the last populated znode.
#    If the server answers but the znodes are gone, that is reported (no durable storage) and
#    the tree is populated again so step 4 still snapshots a tree of the same size.
# 4. the same mixed load, now with snapshots due during it. Its requests sent while a snapshot
#    was being written (bench/snapshot_windows.py: the server log's `snapshot written ... ms=`
#    lines give the windows) against the idle run just before: p99.9 (target <= 2x). After
#    the first pair, a restart from the snapshots just written gives start-to-serving from
#    snapshot + log. Steps 2 and 4 are repeated BENCH_PAIRS times, each run on a restarted
#    keeper; the headline is the median of the pairs' ratios (this machine drifts 2x within
#    minutes, so one pair proves little either way).
# 5. ZooKeeper 3.8 (Debian) with the same znodes (populated by corral bench, which speaks the
#    protocol): SIGTERM, restart, start-to-serving measured the same way; its snapshot size.
#
# Env: BENCH_ZNODES (1000000), BENCH_DURATION (30 s), BENCH_SNAPCOUNT (20000), BENCH_PAIRS (3),
#      BENCH_RESTARTS (3: start-to-serving from snapshot + log is the median of that many),
#      BENCH_START_TIMEOUT (300 s), BENCH_SKIP_ZK=1, BENCH_KEEP=1 (keep temp dir + logs),
#      CORRAL_BIN, ZKBENCH_SRC, ZK_HEAP (2000m: 1M znodes do not fit ZooKeeper's 1000m default
#      comfortably).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N="${BENCH_ZNODES:-1000000}"
DUR="${BENCH_DURATION:-30}"
SNAP="${BENCH_SNAPCOUNT:-20000}"
PAIRS="${BENCH_PAIRS:-3}"
RESTARTS="${BENCH_RESTARTS:-3}"
[[ "$RESTARTS" =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_RESTARTS must be a positive integer, got: $RESTARTS" >&2; exit 2; }
[[ "$PAIRS" =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_PAIRS must be a positive integer, got: $PAIRS" >&2; exit 2; }
# Largest value snapCount accepts (a Java int): no snapshot can fall inside the idle run.
HUGE=2147483647
START_TIMEOUT="${BENCH_START_TIMEOUT:-300}"
ROOT=/corral-bench
LAST=$(printf '%s/a%04d/b%07d' "$ROOT" $(((N - 1) / 1000)) $((N - 1)))
FIRST="$ROOT/a0000/b0000000"

check_prereqs corral python3
WITH_ZK=1
if [ "${BENCH_SKIP_ZK:-0}" = 1 ]; then
  WITH_ZK=0
  log "BENCH_SKIP_ZK=1: ZooKeeper part skipped"
elif ! (check_prereqs java zk) 2>"$WORK/prereq.err"; then
  cat "$WORK/prereq.err" >&2
  log "ZooKeeper part skipped: prerequisites missing (above)"
  WITH_ZK=0
fi
log "work dir $WORK; $N znodes, ${DUR}s loads, $PAIRS pairs of idle and snapshot runs (snapCount $SNAP)"

# worst_interval FILE: "p999_us@ops_per_sec" of the interval with the highest p99.9.
worst_interval() {
  python3 - "$1" <<'PY'
import json, sys
worst = None
for l in open(sys.argv[1]):
    l = l.strip()
    if not l.startswith('{"interval_end_s"'):
        continue
    j = json.loads(l)
    if j["ops"] and (worst is None or j["p999_us"] > worst["p999_us"]):
        worst = j
print(f'{worst["p999_us"]}us@{worst["ops_per_sec"]:.0f}ops/s(t={worst["interval_end_s"]:.0f}s)' if worst else "n/a")
PY
}

# probe SERVER OUT: polls until FIRST and LAST can be read; OUT gets the JSON line.
probe() {
  "$CORRAL" bench --server "$1" --workload probe --probe-path "$FIRST" --probe-path "$LAST" \
    --probe-timeout "$START_TIMEOUT" >"$2" 2>>"$2.err" || true
}

# start_to_serving T0_MS PROBE_JSON: prints "<ms>" or a reason.
start_to_serving() {
  local found ready
  found=$(jget "$2" found)
  ready=$(jget "$2" ready_unix_ms)
  case "$found" in
    True) echo "$((ready - $1))" ;;
    False) echo "data-missing" ;;
    *) echo "no-answer-in-${START_TIMEOUT}s" ;;
  esac
}

run_mixed() { # SERVER OUT [bench args...]
  local server="$1" out="$2"
  shift 2
  "$CORRAL" bench --server "$server" --workload mixed --clients 8 --outstanding 1 --duration "$DUR" \
    --interval-report 1 --root "$ROOT" "$@" >"$out" 2>"$out.intervals" || log "mixed load reported a lost connection (see $out.intervals)"
  tail -1 "$out.intervals" >&2
}

# ---------------------------------------------------------------- corral
CPORT=$(free_port)
CD=$(corral_config corral "$CPORT" "$HUGE")
CS="127.0.0.1:$CPORT"
# The same start-to-serving measure on an empty data dir: the floor (process start, runtime,
# listener) that the big restart below is compared against.
T0=$(now_ms)
corral_launch "$CD"
"$CORRAL" bench --server "$CS" --workload probe --probe-path / --probe-timeout 60 >"$WORK/c-empty.json" 2>/dev/null \
  || die "corral did not serve within 60 s: $(tail -5 "$CD/server.log")"
C_EMPTY_START=$(($(jget "$WORK/c-empty.json" ready_unix_ms) - T0))
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
C_RSS0=$(rss_kb "$CORRAL_PID")
log "corral on $CS (pid $CORRAL_PID); populating $N znodes"
"$CORRAL" bench --server "$CS" --workload populate --populate-count "$N" --root "$ROOT" \
  >"$WORK/c-populate.json" 2>"$WORK/c-populate.err" || true
tail -1 "$WORK/c-populate.err" >&2
C_POP_RATE=$(jget "$WORK/c-populate.json" ops_per_sec)
[ -n "$C_POP_RATE" ] || die "populate failed: $(cat "$WORK/c-populate.err")"
sleep 2 # let a group commit / background write settle before measuring the disk
C_BYTES=$(dir_bytes "$CD/data" "$CD/log")
C_RSS1=$(rss_kb "$CORRAL_PID")
log "corral data: dataDir+dataLogDir = $C_BYTES bytes ($(human "$C_BYTES")); RSS $C_RSS0 kB empty -> $C_RSS1 kB with $N znodes"

# One pair = an idle run (snapCount huge) and, right after it, a snapshot run (snapCount SNAP),
# each on a freshly restarted keeper. The machine drifts by 2x and more within minutes, so the
# ratio is taken within each pair and the headline is the median over the pairs.
PAIR_ROWS=""
IN_RATIOS=()
IN_OUT_RATIOS=()
for PAIR in $(seq 1 "$PAIRS"); do
  if [ "$PAIR" -gt 1 ]; then
    stop_pid "$CORRAL_PID"
    corral_config corral "$CPORT" "$HUGE" >/dev/null
    corral_launch "$CD"
    probe "$CS" "$WORK/c-probe-idle$PAIR.json"
  fi
  log "pair $PAIR/$PAIRS: idle run, snapCount=$HUGE (no snapshot)"
  run_mixed "$CS" "$WORK/c-idle$PAIR.json"

  log "pair $PAIR/$PAIRS: SIGTERM corral, restart on the same data with snapCount=$SNAP"
  T_STOP=$(now_ms)
  stop_pid "$CORRAL_PID"
  [ "$PAIR" -gt 1 ] || log "corral stopped in $(($(now_ms) - T_STOP)) ms"
  corral_config corral "$CPORT" "$SNAP" >/dev/null
  T0=$(now_ms)
  corral_launch "$CD"
  probe "$CS" "$WORK/c-probe$PAIR.json"
  if [ "$PAIR" -eq 1 ]; then
    C_START=$(start_to_serving "$T0" "$WORK/c-probe1.json")
    C_DATA_OK=yes
    case "$C_START" in
      data-missing)
        C_DATA_OK=no
        C_ANSWER=$(($(jget "$WORK/c-probe1.json" ready_unix_ms) - T0))
        log "DATA MISSING AFTER RESTART: corral answers ${C_ANSWER} ms after start but $(jget "$WORK/c-probe1.json" missing) is gone"
        log "Populating again for the snapshot run."
        C_START="data-lost(answers@${C_ANSWER}ms)"
        "$CORRAL" bench --server "$CS" --workload populate --populate-count "$N" --root "$ROOT" \
          >"$WORK/c-populate2.json" 2>"$WORK/c-populate2.err" || true
        tail -1 "$WORK/c-populate2.err" >&2
        ;;
      no-answer*) die "corral did not serve within ${START_TIMEOUT}s after restart ($(jget "$WORK/c-probe1.json" last_error)); log: $CD/server.log" ;;
      *) log "corral start-to-serving: $C_START ms ($N znodes)" ;;
    esac
    find "$CD/data" "$CD/log" -type f -printf '%P %s\n' | sort >"$WORK/files-before"
    SNAPLOG_BEFORE=$(grep -ci snapshot "$CD/server.log" || true)
  fi

  log "pair $PAIR/$PAIRS: snapshot run, snapCount=$SNAP"
  run_mixed "$CS" "$WORK/c-snap$PAIR.json" --latency-log "$WORK/c-snap$PAIR.lat"
  # The requests sent while a snapshot was being written are what the target is about (at
  # snapCount 20000 a snapshot is written about 40 % of the time): compared with the pair's
  # idle run, and with the rest of the same run (which shares its minute of machine noise).
  W="$WORK/c-windows$PAIR.json"
  "$BENCH_DIR/snapshot_windows.py" "$WORK/c-snap$PAIR.lat" "$CD/server.log" >"$W"
  IDLE_P=$(jget "$WORK/c-idle$PAIR.json" p999_us)
  IN_P=$(jget "$W" inside_p999_us)
  OUT_P=$(jget "$W" outside_p999_us)
  IN_R=$(ratio "$IN_P" "$IDLE_P")
  IN_OUT_R=$(ratio "$IN_P" "$OUT_P")
  IN_RATIOS+=("$IN_R")
  IN_OUT_RATIOS+=("$IN_OUT_R")
  log "pair $PAIR: requests sent while a snapshot was written: $(jget "$W" inside_ops) of $(jget "$WORK/c-snap$PAIR.json" ops) ($(jget "$W" snapshots) snapshots, $(jget "$W" covered) of the run), p99.9 $IN_P µs; the rest $OUT_P µs; idle run $IDLE_P µs: ${IN_R}x idle, ${IN_OUT_R}x the rest"
  PAIR_ROWS+="| $PAIR | $(jget "$WORK/c-idle$PAIR.json" ops_per_sec), $IDLE_P | $(jget "$WORK/c-snap$PAIR.json" ops_per_sec), $(jget "$WORK/c-snap$PAIR.json" p999_us) | $IN_P ($(jget "$W" snapshots) snapshots, $(jget "$W" covered) of the run) | $OUT_P | **$IN_R** | $IN_OUT_R | $(worst_interval "$WORK/c-idle$PAIR.json.intervals") / $(worst_interval "$WORK/c-snap$PAIR.json.intervals") |
"

  if [ "$PAIR" -eq 1 ]; then
    sleep 2 # a snapshot started near the end still finishes and shows up in the file list
    find "$CD/data" "$CD/log" -type f -printf '%P %s\n' | sort >"$WORK/files-after"
    NEW_FILES=$(comm -13 <(cut -d' ' -f1 "$WORK/files-before") <(cut -d' ' -f1 "$WORK/files-after") | wc -l)
    SNAPLOG=$(($(grep -ci snapshot "$CD/server.log" || true) - SNAPLOG_BEFORE))
    WRITES=$(python3 -c "import sys; print(int(float(sys.argv[1] or 0) * 0.1))" "$(jget "$WORK/c-snap1.json" ops)")
    log "during the snapshot run: ~$WRITES writes (snapCount $SNAP), $NEW_FILES new files in dataDir/dataLogDir, $SNAPLOG server log lines mentioning snapshot"
    SNAP_SEEN=yes
    if [ "$NEW_FILES" -eq 0 ] && [ "$SNAPLOG" -eq 0 ]; then
      SNAP_SEEN=no
      log "NO SNAPSHOT EVIDENCE during the run (no new file, no log line): the ratio below compares two idle runs"
    fi
    # A restart as in production: snapshots exist (ZooKeeper is measured from its snapshots
    # too), so start-up restores the newest one and replays only the log after it.
    log "SIGTERM corral, restart with the snapshots just written"
    stop_pid "$CORRAL_PID"
    T0=$(now_ms)
    corral_launch "$CD"
    probe "$CS" "$WORK/c-probe-snap.json"
    C_STARTS_SNAP=("$(start_to_serving "$T0" "$WORK/c-probe-snap.json")")
    log "corral start-to-serving from snapshot + log: ${C_STARTS_SNAP[0]} ms"
  fi
done
C_SNAP_BYTES=$(find "$CD/data/snapshots" -name 'snapshot.*' -type f -printf '%T@ %s\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2)
# median X...: the middle value of the numeric ones (n/a when there is none).
median() {
  printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g |
    awk '{v[NR] = $1} END {if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
# More restarts from snapshot + log: one start-up time is as noisy as one latency run.
for R in $(seq 2 "$RESTARTS"); do
  stop_pid "$CORRAL_PID"
  T0=$(now_ms)
  corral_launch "$CD"
  probe "$CS" "$WORK/c-probe-snap$R.json"
  C_STARTS_SNAP+=("$(start_to_serving "$T0" "$WORK/c-probe-snap$R.json")")
done
C_START_SNAP=$(median "${C_STARTS_SNAP[@]}")
log "corral start-to-serving from snapshot + log, $RESTARTS restarts: ${C_STARTS_SNAP[*]} ms (median $C_START_SNAP)"
IN_RATIO=$(median "${IN_RATIOS[@]}")
IN_OUT_RATIO=$(median "${IN_OUT_RATIOS[@]}")
log "p99.9 while writing a snapshot / idle, per pair: ${IN_RATIOS[*]} (median $IN_RATIO); / the rest of the run: ${IN_OUT_RATIOS[*]} (median $IN_OUT_RATIO)"

# ---------------------------------------------------------------- ZooKeeper
Z_POP_RATE=n/a Z_START=n/a Z_SNAP_BYTES=0 Z_BYTES=0 Z_EMPTY_START=n/a
Z_STARTS=()
if [ "$WITH_ZK" = 1 ]; then
  ZPORT=$(free_port)
  ZD="$WORK/zk"
  log "ZooKeeper 3.8 on 127.0.0.1:$ZPORT (heap ${ZK_HEAP:-2000m}); populating $N znodes with corral bench"
  ZS="127.0.0.1:$ZPORT"
  T0=$(now_ms)
  zk_launch "$ZD" "$ZPORT"
  zk_track "$ZD"
  "$CORRAL" bench --server "$ZS" --workload probe --probe-path / --probe-timeout 60 >"$WORK/z-empty.json" 2>/dev/null \
    || die "ZooKeeper did not serve within 60 s: $(cat "$ZD/start.err")"
  Z_EMPTY_START=$(($(jget "$WORK/z-empty.json" ready_unix_ms) - T0))
  wait "$ZK_STARTER" || die "ZooKeeper start script failed: $(cat "$ZD/start.err")"
  "$CORRAL" bench --server "$ZS" --workload populate --populate-count "$N" --root "$ROOT" \
    >"$WORK/z-populate.json" 2>"$WORK/z-populate.err" || true
  tail -1 "$WORK/z-populate.err" >&2
  Z_POP_RATE=$(jget "$WORK/z-populate.json" ops_per_sec)
  [ -n "$Z_POP_RATE" ] || die "populate of ZooKeeper failed: $(cat "$WORK/z-populate.err")"
  Z_PROBE_LAST="$WORK/z-probe$RESTARTS.json"
  for R in $(seq 1 "$RESTARTS"); do
    log "SIGTERM ZooKeeper, restart on the same data ($R/$RESTARTS)"
    stop_pid "$ZK_PID"
    rm -f "$ZD/zk.pid"
    T0=$(now_ms)
    zk_launch "$ZD" "$ZPORT"
    probe "$ZS" "$WORK/z-probe$R.json" &
    PROBE=$!
    zk_track "$ZD"
    wait "$PROBE" || true
    wait "$ZK_STARTER" || log "ZooKeeper start script failed: $(cat "$ZD/start.err")"
    Z_STARTS+=("$(start_to_serving "$T0" "$WORK/z-probe$R.json")")
  done
  Z_START=$(median "${Z_STARTS[@]}")
  log "ZooKeeper start-to-serving, $RESTARTS restarts: ${Z_STARTS[*]} ms (median $Z_START)"
  # ZooKeeper writes a snapshot after loading its data at start, so the newest one holds
  # the whole tree.
  Z_SNAP_FILE=$(ls -t "$ZD"/data/version-2/snapshot.* 2>/dev/null | head -1 || true)
  Z_SNAP_BYTES=$( [ -n "$Z_SNAP_FILE" ] && stat -c %s "$Z_SNAP_FILE" || echo 0)
  Z_BYTES=$(dir_bytes "$ZD/data")
  log "ZooKeeper newest snapshot $(basename "${Z_SNAP_FILE:-none}") $(human "$Z_SNAP_BYTES"); data dir $(human "$Z_BYTES")"
fi

# ---------------------------------------------------------------- summary
cat <<EOF

## snapshot-latency ($N znodes x 100 B, mixed 90/10 get/set, 8 clients x 1 outstanding, ${DUR}s) — $(date -u +%Y-%m-%d)

| measure | corral | ZooKeeper 3.8 |
|---|---|---|
| populate rate (creates/s, 1 client, 500 in flight) | $C_POP_RATE | $Z_POP_RATE |
| corral RSS empty -> populated (kB) | $C_RSS0 -> $C_RSS1 | (JVM heap: see zkbench BASELINE.md) |
| data on disk after populate (dataDir+dataLogDir) | $(human "$C_BYTES") | $(human "$Z_BYTES") (after restart) |
| newest snapshot file | $(human "${C_SNAP_BYTES:-0}") | $(human "$Z_SNAP_BYTES") |
| **p99.9 while writing a snapshot / the pair's idle run, median of $PAIRS pairs (target <= 2)** | **$IN_RATIO** (${IN_RATIOS[*]}) | |
| p99.9 while writing a snapshot / the rest of the same run, median | $IN_OUT_RATIO (${IN_OUT_RATIOS[*]}) | |
| snapshot evidence during the run | $SNAP_SEEN ($NEW_FILES new files, $SNAPLOG log lines) | |
| start-to-serving, empty data dir (ms) | $C_EMPTY_START | $Z_EMPTY_START |
| start-to-serving after SIGTERM (ms, process start -> first getData of first+last znode), corral replaying the whole log | $C_START | $Z_START |
| start-to-serving after SIGTERM, corral from its newest snapshot + log (median of $RESTARTS restarts; each) | $C_START_SNAP (${C_STARTS_SNAP[*]}) | $Z_START (${Z_STARTS[*]}) |
| **start-to-serving corral / ZooKeeper, medians (target <= 0.3)** | **$(ratio "$C_START_SNAP" "$Z_START")** | |
| data survived restart | $C_DATA_OK | $( [ "$WITH_ZK" = 1 ] && { [ "$(jget "$Z_PROBE_LAST" found)" = True ] && echo yes || echo no; } || echo n/a) |

| pair | idle: ops/s, p99.9 µs | snapshot run: ops/s, p99.9 µs | p99.9 while writing snapshots µs | p99.9 rest of the run µs | inside / idle | inside / rest | worst 1-s p99.9 idle / snapshot run |
|---|---|---|---|---|---|---|---|
$PAIR_ROWS
| date | znodes | pairs | p99.9 while writing snapshots / idle (median; each) | snapshots seen | corral start ms (log / snapshot) | ZK start ms | corral disk | ZK snapshot |
|---|---|---|---|---|---|---|---|---|
| $(date -u +%Y-%m-%d) | $N | $PAIRS | $IN_RATIO (${IN_RATIOS[*]}) | $SNAP_SEEN | $C_START / $C_START_SNAP | $Z_START | $(human "$C_BYTES") | $(human "$Z_SNAP_BYTES") |
EOF
