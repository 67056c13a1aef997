# Shared helpers of the bench scripts; sourced, not run.
#
# Every server a script starts is recorded here and stopped by the EXIT trap (by PID, TERM
# then KILL), and every file lives under one temp dir that the trap removes
# (BENCH_KEEP=1 keeps it, e.g. to read server logs). Servers listen on 127.0.0.1 only, on
# ports the OS picks, so two runs (or a developer's own 2181) never collide.

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
SHARED_ZKBENCH="${ZKBENCH_SRC:-$REPO/../shared/tools/zkbench}"
CORRAL="${CORRAL_BIN:-$REPO/target/release/corral}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/corral-bench.XXXXXX")"
SERVER_PIDS=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_ms() { date +%s%3N; }

cleanup() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do stop_pid "$pid"; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_pid PID: SIGTERM, up to 15 s for a clean exit, then SIGKILL. Prints the seconds it took.
stop_pid() {
  local pid="$1" i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "pid $pid ignored SIGTERM for 15 s; SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

# Reports every missing prerequisite at once, then fails if any of `what` is missing.
# check_prereqs corral|java|zk|zkbench ...
check_prereqs() {
  local missing=() w
  for w in "$@"; do
    case "$w" in
      corral) [ -x "$CORRAL" ] || missing+=("corral binary $CORRAL (cargo build --release, or set CORRAL_BIN)") ;;
      java) command -v java >/dev/null && command -v javac >/dev/null || missing+=("java + javac (Debian: openjdk-17-jdk-headless)") ;;
      zk) [ -f /usr/share/java/zookeeper.jar ] || missing+=("ZooKeeper 3.8 jars /usr/share/java/zookeeper.jar (Debian: zookeeper)")
          [ -f "$SHARED_ZKBENCH/start_zk.sh" ] || missing+=("$SHARED_ZKBENCH/start_zk.sh") ;;
      zkbench) [ -f "$SHARED_ZKBENCH/ZkBench.java" ] || missing+=("zkbench driver $SHARED_ZKBENCH/ZkBench.java (set ZKBENCH_SRC)") ;;
      python3) command -v python3 >/dev/null || missing+=("python3") ;;
    esac
  done
  if [ ${#missing[@]} -gt 0 ]; then
    for w in "${missing[@]}"; do log "missing: $w"; done
    die "prerequisites missing (see above)"
  fi
}

# ../shared is read-only and run.sh compiles into its own directory: work on a copy.
zkbench_copy() {
  if [ ! -d "$WORK/zkbench" ]; then
    cp -r "$SHARED_ZKBENCH" "$WORK/zkbench"
    chmod -R u+w "$WORK/zkbench"
    rm -rf "$WORK/zkbench/build"
  fi
  echo "$WORK/zkbench"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# jget FILE KEY: one field of the (last) JSON line in FILE; empty if absent.
jget() {
  python3 - "$1" "$2" <<'PY'
import json, sys
line = ""
for l in open(sys.argv[1]):
    if l.strip().startswith("{"):
        line = l
try:
    v = json.loads(line).get(sys.argv[2], "")
except Exception:
    v = ""
print("" if v is None else v)
PY
}

# calc EXPR: float arithmetic (bash has none).
calc() { python3 -c "import sys; print(eval(sys.argv[1]))" "$1"; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1] or 0),float(sys.argv[2] or 0); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }

# corral_config NAME PORT SNAPCOUNT [FORCESYNC]: a data dir + zoo.cfg under $WORK/NAME.
# (Re)writing it on the same NAME keeps the data and changes only the settings. A fixed port
# rather than clientPort=0, so that a restart probe can poll before the server has logged it.
corral_config() {
  local name="$1" port="$2" snap="$3" force="${4:-yes}" d="$WORK/$1"
  mkdir -p "$d/data" "$d/log"
  cat >"$d/zoo.cfg" <<CFG
tickTime=2000
dataDir=$d/data
dataLogDir=$d/log
clientPort=$port
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=*
snapCount=$snap
forceSync=$force
CFG
  echo "$d"
}

# corral_launch DIR: starts `corral serve` on DIR/zoo.cfg in the background (log appended to
# DIR/server.log); sets CORRAL_PID. Does not wait for it to serve.
corral_launch() {
  local d="$1"
  echo "---- start $(date -Is)" >>"$d/server.log"
  "$CORRAL" serve --config "$d/zoo.cfg" >>"$d/server.log" 2>&1 </dev/null &
  CORRAL_PID=$!
  SERVER_PIDS+=("$CORRAL_PID")
}

# corral_port DIR [TIMEOUT_S]: waits for this run's "serving ... on 127.0.0.1:PORT" line and
# prints PORT. A clientPort=0 server gets a new port at each start.
corral_port() {
  local d="$1" limit="${2:-60}" i port
  for i in $(seq 1 $((limit * 20))); do
    port=$(sed -n '/^---- start/h; /^---- start/!H; ${x;p}' "$d/server.log" \
      | grep -o 'serving ZooKeeper clients on 127.0.0.1:[0-9]*' | tail -1 | sed 's/.*://' || true)
    if [ -n "$port" ]; then echo "$port"; return 0; fi
    if ! kill -0 "$CORRAL_PID" 2>/dev/null; then
      tail -20 "$d/server.log" >&2
      die "corral exited during start-up (log: $d/server.log)"
    fi
    sleep 0.05
  done
  die "corral did not log its port within ${limit}s (log: $d/server.log)"
}

# zk_launch DIR PORT: starts ZooKeeper 3.8 through zkbench's start_zk.sh (fsync on, 4lw on,
# maxClientCnxns=0) in the background; sets ZK_STARTER (the start_zk.sh process, which exits
# once ruok answers). The server PID is in DIR/zk.pid.
zk_launch() {
  local d="$1" port="$2" zb
  zb=$(zkbench_copy)
  mkdir -p "$d"
  ZK_HEAP="${ZK_HEAP:-2000m}" "$zb/start_zk.sh" "$port" "$d" >"$d/start.out" 2>"$d/start.err" &
  ZK_STARTER=$!
}

# zk_track DIR: after start_zk.sh wrote DIR/zk.pid, registers it for the EXIT trap.
zk_track() {
  local d="$1" i
  for i in $(seq 1 100); do
    [ -s "$d/zk.pid" ] && break
    sleep 0.05
  done
  [ -s "$d/zk.pid" ] || die "ZooKeeper start script wrote no pid ($d/start.err: $(cat "$d/start.err" 2>/dev/null))"
  ZK_PID=$(cat "$d/zk.pid")
  SERVER_PIDS+=("$ZK_PID")
}

# zk_start DIR PORT: starts ZooKeeper and waits until it answers ruok (start_zk.sh: <= 30 s).
zk_start() {
  zk_launch "$1" "$2"
  zk_track "$1"
  wait "$ZK_STARTER" || die "ZooKeeper did not start: $(cat "$1/start.err")"
}

# wait_serving HOST:PORT [TIMEOUT_S]: until a session opens and getData / succeeds.
# ZooKeeper answers ruok before its ZooKeeperServer runs (handshakes are closed with
# "ZooKeeperServer not running" for a moment), so ruok is not enough.
wait_serving() {
  "$CORRAL" bench --server "$1" --workload probe --probe-path / --probe-timeout "${2:-60}" >/dev/null 2>&1 \
    || die "$1 did not serve a getData within ${2:-60}s"
}

dir_bytes() { du -sb "$@" 2>/dev/null | awk '{s+=$1} END {print s+0}'; }
human() { python3 -c "import sys; n=float(sys.argv[1] or 0); u=['B','KiB','MiB','GiB']; i=0
while n>=1024 and i<3: n/=1024; i+=1
print(f'{n:.1f} {u[i]}')" "$1"; }
