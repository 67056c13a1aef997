#!/usr/bin/env bash
# Real standalone Apache ZooKeeper 3.8 (Debian jars) on 127.0.0.1, used as the
# oracle for differential tests and benchmarks.
#
#   scripts/zk-oracle.sh start DATADIR [PORT] [TICK]   prints the client port
#   scripts/zk-oracle.sh stop  DATADIR
#
# PORT 0 or omitted = pick a free port. TICK = tickTime ms (default 2000).
# Config: 4lw.commands.whitelist=*, maxClientCnxns=0, admin server off,
# extra zoo.cfg lines from $ZK_ORACLE_EXTRA_CFG (e.g. "4lw.commands.whitelist=srvr,ruok").
# Files: DATADIR/{zoo.cfg,data/,zk.pid,zk.port,zookeeper.log}.
# start returns once the server answers "ruok" with "imok" (30 s limit).
set -euo pipefail

usage() { echo "usage: $0 start DATADIR [PORT] [TICK] | stop DATADIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 dir=$2
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
jars=/usr/share/java

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
ruok() {
    local out
    out=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf ruok >&3 && cat <&3" 2>/dev/null || true)
    [ "$out" = imok ]
}

case "$cmd" in
start)
    port=${3:-0} tick=${4:-2000}
    if [ -f "$dir/zk.pid" ] && kill -0 "$(cat "$dir/zk.pid")" 2>/dev/null; then
        echo "zk-oracle: already running from $dir (pid $(cat "$dir/zk.pid"))" >&2
        exit 1
    fi
    [ "$port" != 0 ] || port=$(free_port)
    mkdir -p "$dir/data"
    cat > "$dir/zoo.cfg" <<CFG
tickTime=$tick
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
maxClientCnxns=0
4lw.commands.whitelist=*
admin.enableServer=false
${ZK_ORACLE_EXTRA_CFG:-}
CFG
    cat > "$dir/log4j.properties" <<'LOG'
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=${zookeeper.log.file}
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n
LOG
    # zookeeper.jar's manifest pulls in jute/netty-handler/...; the log4j
    # binding sends the server log to DATADIR/zookeeper.log.
    cp="$jars/zookeeper.jar:$jars/slf4j-log4j12.jar:$jars/log4j-1.2.jar"
    setsid java -Xmx${ZK_HEAP:-512m} ${ZK_JVMFLAGS:-} \
        -Dlog4j.configuration="file:$dir/log4j.properties" \
        -Dzookeeper.log.file="$dir/zookeeper.log" \
        -Dzookeeper.admin.enableServer=false \
        -cp "$cp" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" \
        > "$dir/zookeeper.out" 2>&1 < /dev/null &
    pid=$!
    echo "$pid" > "$dir/zk.pid"
    echo "$port" > "$dir/zk.port"
    for _ in $(seq 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "zk-oracle: server died; see $dir/zookeeper.out, $dir/zookeeper.log" >&2
            exit 1
        fi
        if ruok "$port"; then echo "$port"; exit 0; fi
        sleep 0.1
    done
    echo "zk-oracle: no 'imok' on port $port within 30 s (pid $pid)" >&2
    exit 1
    ;;
stop)
    [ -f "$dir/zk.pid" ] || { echo "zk-oracle: no $dir/zk.pid" >&2; exit 0; }
    pid=$(cat "$dir/zk.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$dir/zk.pid"
    echo "zk-oracle: stopped pid $pid"
    ;;
*) usage ;;
esac
