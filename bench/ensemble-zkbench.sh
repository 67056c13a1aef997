#!/usr/bin/env bash
# 3-member corral ensemble vs 3-member ZooKeeper 3.8 ensemble, same neutral driver, one run.
#
#   bench/ensemble-zkbench.sh
#   BENCH_ROUNDS=5 BENCH_OPS=200000 bench/ensemble-zkbench.sh
#
# Each round starts a fresh corral ensemble (scripts/ensemble.sh start DIR), runs zkbench
# (../shared/tools/zkbench: the real ZooKeeper Java client, async API, 100 in flight per
# client) `--workload set`, `create`, `get` with 16 clients, stops it, then does the same with
# a fresh ZooKeeper 3.8 ensemble (`--zookeeper`); rounds alternate corral, ZooKeeper, corral,
# ... so drift on a shared machine hits both. Both fsync their logs (forceSync default yes).
#
# Clients are pinned round-robin: client i talks to member i mod 3 only. zkbench hands every
# client the same connect string and the Java client picks a random member from it, so the
# script patches its private copy of the driver in one place (the loop that opens the async
# workloads' sessions) to give client i member i mod 3; the patch is checked to apply and is
# the same for both servers. Nothing else in the driver changes.
#
# Recorded per run: ops/s, p50/p99, errors, the server CPU (utime+stime from /proc/PID/stat of
# each member, leader and followers apart) per op, the load average, and for corral the
# per-member change in mntr's zk_corral_fsync_count / log records / log batches. Server CPU
# covers the whole driver run: warm-up and measured ops (counted) plus the set-up (session
# opens, 1000 keys or the bucket dirs; not counted, < 1 % of the ops). Output: one JSON line
# per run in $WORK/runs.jsonl (copied to BENCH_OUT if set), then a markdown summary (medians,
# min-max, ratios of medians) on stdout.
#
# Skips (exit 0, with a message) when zkbench, Java or ZooKeeper is not installed.
# Env: BENCH_ROUNDS (3), BENCH_OPS (100000 per run), BENCH_CLIENTS (16),
#      BENCH_WORKLOADS ("set create get"), BENCH_OUT, BENCH_KEEP=1, CORRAL_BIN, ZKBENCH_SRC,
#      ZK_JVMFLAGS (scripts/ensemble.sh's default -Xmx512m).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${BENCH_ROUNDS:-3}"
OPS="${BENCH_OPS:-100000}"
CLIENTS="${BENCH_CLIENTS:-16}"
WORKLOADS="${BENCH_WORKLOADS:-set create get}"
ENSEMBLE="$REPO/scripts/ensemble.sh"

skip=()
[ -f "$SHARED_ZKBENCH/ZkBench.java" ] || skip+=("zkbench driver $SHARED_ZKBENCH/ZkBench.java (set ZKBENCH_SRC)")
[ -f /usr/share/java/zookeeper.jar ] || skip+=("ZooKeeper 3.8 (/usr/share/java/zookeeper.jar; bash scripts/install-oracle.sh)")
{ command -v java >/dev/null && command -v javac >/dev/null; } || skip+=("java + javac")
if [ ${#skip[@]} -gt 0 ]; then
  for w in "${skip[@]}"; do log "not installed: $w"; done
  log "SKIPPED: ensemble-zkbench needs zkbench and ZooKeeper 3.8 (see above); nothing measured"
  exit 0
fi
check_prereqs corral python3

ZB=$(zkbench_copy)
# The pinning patch (see the header). Fails loudly if the driver's source no longer matches.
python3 - "$ZB/ZkBench.java" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
loop = "for (int i = 0; i < clients; i++) zks.add(connect(connect, sessionTimeout, null));"
if s.count(loop) != 1:
    sys.exit("ensemble-zkbench: zkbench's session loop changed; cannot pin clients")
s = s.replace(loop, "for (int i = 0; i < clients; i++) zks.add(connect(pinnedMember(connect, i), sessionTimeout, null));")
anchor = "    static void mkdirs(ZooKeeper zk, String path)"
if s.count(anchor) != 1:
    sys.exit("ensemble-zkbench: zkbench's mkdirs moved; cannot pin clients")
s = s.replace(anchor, "    /** ensemble-zkbench: client i uses member i mod N of the connect string only. */\n"
              "    static String pinnedMember(String cs, int i) { String[] m = cs.split(\",\"); return m[i % m.length]; }\n\n" + anchor)
open(p, "w").write(s)
PY
log "work dir $WORK; zkbench copy (clients pinned round-robin) in $ZB"
log "$ROUNDS rounds x (corral, ZooKeeper) x ($WORKLOADS), $OPS ops per run, $CLIENTS clients; load average $(cut -d' ' -f1-3 /proc/loadavg)"

HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
fourlw() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf %s "$2" >&3 && cat <&3' _ "$1" "$2" 2>/dev/null || true
}
# Elections won, as each server logs them: corral's new leader restarts session timeouts,
# ZooKeeper's says how long its election took.
LEAD_RE='leading: every session gets a fresh full timeout|LEADING - LEADER ELECTION TOOK'
won() { grep -Ec "$LEAD_RE" "$1" 2>/dev/null || true; }
modes() { local p; for p in "$@"; do fourlw "$p" srvr | sed -n 's/^Mode: //p' | tr '\n' ' ' | sed 's/ $//'; printf '/'; done; }

RUNS="$WORK/runs.jsonl"
: >"$RUNS"
CUR_DIR=""
stop_current() {
  if [ -n "$CUR_DIR" ]; then
    "$ENSEMBLE" stop "$CUR_DIR" 2>/dev/null || true
    CUR_DIR=""
  fi
}
# lib.sh's EXIT trap removes $WORK; stop a running ensemble (by its pids) first.
trap 'stop_current; cleanup' EXIT

one_round() { # KIND ROUND
  local kind=$1 round=$2 dir="$WORK/$1-$2" cs ids=() ports=() pids=() roles=() i w out
  local flag=""
  [ "$kind" = zookeeper ] && flag=--zookeeper
  mkdir -p "$dir"
  CUR_DIR="$dir"
  cs=$(CORRAL_BIN="$CORRAL" "$ENSEMBLE" start "$dir" $flag 2>"$dir/start.err") \
    || die "$kind ensemble did not start: $(tail -5 "$dir/start.err")"
  IFS=, read -r -a members <<<"$cs"
  for i in 1 2 3; do
    ids+=("$i")
    ports+=("${members[i - 1]##*:}")
    pids+=("$(cat "$dir/$i/pid")")
  done
  for i in 0 1 2; do wait_serving "127.0.0.1:${ports[i]}" 60; done
  for i in 0 1 2; do
    roles+=("$(fourlw "${ports[i]}" srvr | sed -n 's/^Mode: //p')")
  done
  log "round $round $kind: $cs, pids ${pids[*]}, modes ${roles[*]}"
  for w in $WORKLOADS; do
    local c0=() c1=() m0=() m1=() load0 load1 t0 t1 won0=0 won1=0 after
    for i in 0 1 2; do c0+=("$(cpu_ticks "${pids[i]}")"); m0+=("$(fourlw "${ports[i]}" mntr | tr '\n' ';')"); done
    for i in 1 2 3; do won0=$((won0 + $(won "$dir/$i/server.log"))); done
    load0=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(now_ms)
    out="$dir/$w.json"
    "$ZB/run.sh" --connect "$cs" --workload "$w" --clients "$CLIENTS" --ops "$OPS" --no-cleanup \
      >"$out" 2>"$out.err" || log "zkbench $w against $kind failed (exit $?): $(tail -3 "$out.err")"
    t1=$(now_ms)
    load1=$(cut -d' ' -f1 /proc/loadavg)
    for i in 0 1 2; do c1+=("$(cpu_ticks "${pids[i]}")"); m1+=("$(fourlw "${ports[i]}" mntr | tr '\n' ';')"); done
    for i in 1 2 3; do won1=$((won1 + $(won "$dir/$i/server.log"))); done
    after=$(modes "${ports[@]}")
    python3 - "$out" "$RUNS" "$kind" "$round" "$w" "$OPS" "$HZ" "$load0" "$load1" "$((t1 - t0))" \
      "$((won1 - won0))" "$after" "${roles[*]}" "${c0[*]}" "${c1[*]}" "${m0[0]}" "${m1[0]}" "${m0[1]}" "${m1[1]}" "${m0[2]}" "${m1[2]}" <<'PY'
import json, sys
(out, runs, kind, rnd, w, ops, hz, l0, l1, wall_ms, elections, after, roles, c0, c1, *mntr) = sys.argv[1:]
res = {}
for line in open(out):
    if line.strip().startswith("{"):
        res = json.loads(line)
ops = int(ops)
counted = ops + min(20000, ops // 10)   # zkbench's default warm-up: 10 % of ops, <= 20000
hz = float(hz)
roles, c0, c1 = roles.split(), [float(x) for x in c0.split()], [float(x) for x in c1.split()]
def parse(m):
    d = {}
    for kv in m.split(";"):
        parts = kv.split("\t")
        if len(parts) == 2:
            d[parts[0]] = parts[1]
    return d
members = []
for i in range(3):
    a, b = parse(mntr[2 * i]), parse(mntr[2 * i + 1])
    cpu = (c1[i] - c0[i]) / hz
    after_roles = after.split("/")
    m = {"id": i + 1, "role": roles[i] if i < len(roles) else "?",
         "role_after": after_roles[i] if i < len(after_roles) else "?", "cpu_s": round(cpu, 3),
         "cpu_us_per_op": round(cpu * 1e6 / counted, 1)}
    for k in ("zk_corral_fsync_count", "zk_corral_log_records", "zk_corral_log_batches"):
        if k in a and k in b:
            m[k.replace("zk_corral_", "") + "_delta"] = int(b[k]) - int(a[k])
    for k in ("zk_corral_fsync_p50_us", "zk_corral_fsync_p99_us"):
        if k in b:
            m[k.replace("zk_corral_", "")] = int(b[k])
    members.append(m)
total_cpu = sum(m["cpu_s"] for m in members)
rec = {"kind": kind, "round": int(rnd), "workload": w, "ops_per_sec": res.get("ops_per_sec"),
       "p50_us": res.get("p50_us"), "p99_us": res.get("p99_us"), "errors": res.get("errors"),
       "seconds": res.get("seconds"), "counted_ops": counted, "driver_wall_s": int(wall_ms) / 1000,
       "server_cpu_s": round(total_cpu, 3), "cpu_us_per_op": round(total_cpu * 1e6 / counted, 1),
       "load1_before": float(l0), "load1_after": float(l1), "elections_won": int(elections),
       "members": members}
open(runs, "a").write(json.dumps(rec) + "\n")
print(f"{kind} r{rnd} {w}: {rec['ops_per_sec']} ops/s, p50 {rec['p50_us']} us, errors {rec['errors']}, "
      f"server CPU {rec['cpu_us_per_op']} us/op (" +
      ", ".join(f"{m['role']}->{m['role_after']} {m['cpu_us_per_op']}" for m in members) +
      f"), elections won during the run {elections}, load {l0}->{l1}",
      file=sys.stderr)
PY
  done
  stop_current
}

for r in $(seq 1 "$ROUNDS"); do
  one_round corral "$r"
  one_round zookeeper "$r"
done
[ -z "${BENCH_OUT:-}" ] || cp "$RUNS" "$BENCH_OUT"

python3 - "$RUNS" "$CLIENTS" "$OPS" "$ROUNDS" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
clients, ops, rounds = sys.argv[2:5]
def vals(kind, w, key):
    return [r[key] for r in runs if r["kind"] == kind and r["workload"] == w and r.get(key) is not None]
def med(v): return statistics.median(v) if v else None
def span(v): return f"{min(v):g}–{max(v):g}" if v else "–"
def role_cpu(kind, w, leader):
    v = []
    for r in runs:
        if r["kind"] == kind and r["workload"] == w:
            ms = [m["cpu_us_per_op"] for m in r["members"] if (m["role"] == "leader") == leader]
            if ms:
                v.append(sum(ms) / len(ms))
    return med(v)
workloads = list(dict.fromkeys(r["workload"] for r in runs))
loads = [r["load1_before"] for r in runs] + [r["load1_after"] for r in runs]
print(f"\n## 3-member ensembles (zkbench, {clients} clients pinned round-robin, 100 in flight each, {ops} ops per run, {rounds} rounds)\n")
print(f"1-minute load average during the runs: {min(loads):g}–{max(loads):g} (median {med(loads):g})\n")
print("| workload | corral ops/s median (min–max) | ZooKeeper ops/s median (min–max) | ratio | server CPU µs/op corral (min–max) | ZooKeeper (min–max) | ratio ZK/corral | errors corral / ZK | elections during runs corral / ZK |")
print("|---|---|---|---|---|---|---|---|---|")
for w in workloads:
    cr, zr = vals("corral", w, "ops_per_sec"), vals("zookeeper", w, "ops_per_sec")
    cc, zc = vals("corral", w, "cpu_us_per_op"), vals("zookeeper", w, "cpu_us_per_op")
    ce, ze = vals("corral", w, "errors"), vals("zookeeper", w, "errors")
    rt = f"{med(cr) / med(zr):.2f}" if cr and zr else "n/a"
    rc = f"{med(zc) / med(cc):.2f}" if cc and zc else "n/a"
    cel, zel = vals("corral", w, "elections_won"), vals("zookeeper", w, "elections_won")
    print(f"| {w} | {med(cr):g} ({span(cr)}) | {med(zr):g} ({span(zr)}) | {rt} | {med(cc):g} ({span(cc)}) | {med(zc):g} ({span(zc)}) | {rc} | {sum(ce)} / {sum(ze)} | {'+'.join(map(str, cel))} / {'+'.join(map(str, zel))} |")
print("\nServer CPU µs per op by role at the start of the run (median over rounds; followers averaged;"
      " a run with elections mixes roles):\n")
print("| workload | corral leader | corral follower | ZooKeeper leader | ZooKeeper follower |")
print("|---|---|---|---|---|")
for w in workloads:
    f = lambda x: "–" if x is None else f"{x:.1f}"
    print(f"| {w} | {f(role_cpu('corral', w, True))} | {f(role_cpu('corral', w, False))} | {f(role_cpu('zookeeper', w, True))} | {f(role_cpu('zookeeper', w, False))} |")
# Roles can change during a run (elections), so members are told apart by what they did: the
# one with the most fsyncs led most of the run, the one with the fewest the least.
fs = [r for r in runs if r["kind"] == "corral" and all("fsync_count_delta" in m for m in r["members"])]
if fs:
    print("\ncorral log records per fsync (median over rounds), per member by fsync count: a leader fsyncs per"
          " entry, a follower per received batch\n")
    print("| workload | most fsyncs (led most) | middle | fewest fsyncs | fsync p50 / p99 µs (busiest, end of run) |")
    print("|---|---|---|---|---|")
    for w in workloads:
        cols = [[], [], []]
        lat = []
        for r in fs:
            if r["workload"] != w:
                continue
            ms = sorted(r["members"], key=lambda m: -m["fsync_count_delta"])
            for k, m in enumerate(ms):
                n = m["fsync_count_delta"]
                cols[k].append(m.get("log_records_delta", 0) / n if n else float("inf"))
            lat.append((ms[0].get("fsync_p50_us", 0), ms[0].get("fsync_p99_us", 0)))
        if lat:
            f = lambda v: f"{med(v):.1f}"
            print(f"| {w} | {f(cols[0])} | {f(cols[1])} | {f(cols[2])} | {med([a for a, _ in lat]):g} / {med([b for _, b in lat]):g} |")
PY
