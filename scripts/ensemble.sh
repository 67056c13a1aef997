#!/usr/bin/env bash
# A local N-member ensemble on loopback, corral or real ZooKeeper 3.8, for users to try and
# for tools (bench/failover.py) to start, inspect and break.
#
#   scripts/ensemble.sh start DIR [--members N] [--zookeeper] [--timeout S]
#   scripts/ensemble.sh stop DIR              SIGTERM every member by pid (SIGKILL after 10 s)
#   scripts/ensemble.sh status DIR            one line per member: id, pid, client port, Mode
#   scripts/ensemble.sh kill DIR ID           SIGKILL (kill -9) member ID
#   scripts/ensemble.sh restart DIR ID        start member ID again (after kill), wait for a Mode
#   scripts/ensemble.sh leader DIR            print the id of the member whose srvr says leader
#   scripts/ensemble.sh connect DIR           print the client connect string
#
# start writes DIR/ID/zoo.cfg and DIR/ID/data/myid for ID = 1..N (default 3) with quorum,
# election and client ports that were all free (and all distinct) at start, starts every
# member in its own session (corral: `${CORRAL_BIN:-target/release/corral} serve --config
# DIR/ID/zoo.cfg`; --zookeeper: scripts/real-zk-server.sh DIR/ID/zoo.cfg), writes its pid to
# DIR/ID/pid and its output to DIR/ID/server.log, waits (--timeout, default 90 s) until every
# member answers `srvr` with a Mode and one of them is the leader, and prints the connect string
# (127.0.0.1:P1,127.0.0.1:P2,...) as the only line on stdout; progress goes to stderr. If that
# does not happen in time, it stops what it started, shows the end of each log and exits 1.
# DIR must not hold an ensemble already. Members run until `stop`: the script itself exits.
# Env: CORRAL_BIN; CORRAL_ARGS (extra words after `serve`, kept in DIR for restart); ZK_JVMFLAGS (default -Xmx512m).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf 'ensemble: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# fourlw PORT WORD: the server's answer to a four-letter word, empty if it does not answer
# within 2 s (bash's /dev/tcp, so no client tool is needed).
fourlw() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf %s "$2" >&3 && cat <&3' _ "$1" "$2" \
        2>/dev/null || true
}

# mode PORT: leader / follower / observer / standalone / read-only, or "not serving" when the
# member answers but is not in a quorum, or "down" when it does not answer.
mode() {
    local out
    out=$(fourlw "$1" srvr)
    if [ -z "$out" ]; then
        echo down
    elif [[ $out =~ Mode:\ ([a-z-]+) ]]; then
        echo "${BASH_REMATCH[1]}"
    else
        echo "not serving"
    fi
}

members() { # the member ids of DIR, ascending
    local d
    for d in "$1"/*/zoo.cfg; do
        [ -f "$d" ] || continue
        d=${d%/zoo.cfg}
        echo "${d##*/}"
    done | sort -n
}

client_port() { sed -n 's/^clientPort=//p' "$1/$2/zoo.cfg"; }

# alive DIR ID: the member's process exists and is not a zombie (a killed member whose parent,
# the start script, is gone waits for init to reap it).
alive() {
    local st
    [ -f "$1/$2/pid" ] || return 1
    st=$(ps -o stat= -p "$(cat "$1/$2/pid")" 2>/dev/null) || return 1
    [[ $st != Z* ]]
}

connect_string() {
    local id s=""
    for id in $(members "$1"); do s="$s${s:+,}127.0.0.1:$(client_port "$1" "$id")"; done
    echo "$s"
}

# launch DIR ID: start member ID detached (its own session, so a Ctrl-C in the caller's
# terminal does not reach it) and record its pid. Both commands exec the server, so $! is it.
launch() {
    local dir=$1 id=$2 cfg
    cfg=$dir/$id/zoo.cfg
    if [ "$(cat "$dir/kind")" = zookeeper ]; then
        ZK_JVMFLAGS=${ZK_JVMFLAGS:--Xmx512m} setsid "$repo/scripts/real-zk-server.sh" "$cfg" \
            >> "$dir/$id/server.log" 2>&1 < /dev/null &
    else
        # shellcheck disable=SC2046
        setsid "$(cat "$dir/corral_bin")" serve $(cat "$dir/corral_args") --config "$cfg" \
            >> "$dir/$id/server.log" 2>&1 < /dev/null &
    fi
    echo $! > "$dir/$id/pid"
}

# wait_ready DIR TIMEOUT ID...: until each listed member reports a Mode and some member of DIR
# is the leader. Fails early when a member's process is gone.
wait_ready() {
    local dir=$1 timeout=$2 deadline id m ready leader
    shift 2
    deadline=$((SECONDS + timeout))
    while :; do
        ready=1 leader=0
        for id in "$@"; do
            alive "$dir" "$id" || { log "member $id (pid $(cat "$dir/$id/pid")) exited"; return 1; }
            m=$(mode "$(client_port "$dir" "$id")")
            case $m in leader|follower|observer|standalone) ;; *) ready=0 ;; esac
        done
        for id in $(members "$dir"); do
            alive "$dir" "$id" && is_leader "$dir" "$id" && leader=1
        done
        [ "$ready" = 1 ] && [ "$leader" = 1 ] && return 0
        [ "$SECONDS" -lt "$deadline" ] || { log "not ready after ${timeout}s"; return 1; }
        sleep 0.2
    done
}

# is_leader DIR ID: srvr says leader; a lone member that says standalone leads too (ZooKeeper
# with standaloneEnabled=false says leader, corral today says standalone).
is_leader() {
    local m
    m=$(mode "$(client_port "$1" "$2")")
    [ "$m" = leader ] || { [ "$m" = standalone ] && [ "$(members "$1" | wc -l)" = 1 ]; }
}

stop_all() {
    local dir=$1 id pid i left
    for id in $(members "$dir"); do
        alive "$dir" "$id" && kill -TERM "$(cat "$dir/$id/pid")" 2>/dev/null || true
    done
    for i in $(seq 1 100); do
        left=0
        for id in $(members "$dir"); do alive "$dir" "$id" && left=1; done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    for id in $(members "$dir"); do
        if alive "$dir" "$id"; then
            pid=$(cat "$dir/$id/pid")
            log "member $id (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

show_logs() {
    local id
    for id in $(members "$1"); do
        log "--- member $id: $(mode "$(client_port "$1" "$id")"), last lines of $1/$id/server.log"
        tail -n 15 "$1/$id/server.log" >&2 || true
    done
}

# free_ports K: K distinct ports that were free on 127.0.0.1 (all held at once while chosen).
free_ports() {
    /usr/bin/python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

cmd_start() {
    local dir="" n=3 kind=corral timeout=90 bin id ports i servers=""
    while [ $# -gt 0 ]; do
        case $1 in
            --members) [ $# -ge 2 ] || die "--members wants a number"; n=$2; shift 2 ;;
            --zookeeper) kind=zookeeper; shift ;;
            --timeout) [ $# -ge 2 ] || die "--timeout wants seconds"; timeout=$2; shift 2 ;;
            -*) die "unknown option $1" ;;
            *) [ -z "$dir" ] || die "one DIR only"; dir=$1; shift ;;
        esac
    done
    [ -n "$dir" ] || usage
    [[ $n =~ ^[1-9][0-9]?$ ]] || die "--members wants 1..99, got '$n'"
    [[ $timeout =~ ^[0-9]+$ ]] || die "--timeout wants seconds, got '$timeout'"
    if [ "$kind" = zookeeper ]; then
        [ -f /usr/share/java/zookeeper.jar ] || die "ZooKeeper 3.8 is not installed (bash scripts/install-oracle.sh)"
    else
        bin=${CORRAL_BIN:-$repo/target/release/corral}
        [ -x "$bin" ] || die "no corral binary at $bin (cargo build --release -p corral, or set CORRAL_BIN)"
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -z "$(members "$dir")" ] || die "$dir already holds an ensemble (stop it and remove it first)"
    echo "$kind" > "$dir/kind"
    if [ "$kind" = corral ]; then   # kept for restart, whatever the environment is then
        realpath "$bin" > "$dir/corral_bin"
        printf '%s\n' "${CORRAL_ARGS:-}" > "$dir/corral_args"
    fi

    read -r -a ports <<< "$(free_ports $((3 * n)))"
    for ((i = 1; i <= n; i++)); do
        servers+="server.$i=127.0.0.1:${ports[3 * i - 3]}:${ports[3 * i - 2]}"$'\n'
    done
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$dir/$i/data"
        echo "$i" > "$dir/$i/data/myid"
        {
            echo "# written by scripts/ensemble.sh: member $i of $n"
            echo "tickTime=2000"
            echo "initLimit=10"
            echo "syncLimit=5"
            echo "dataDir=$dir/$i/data"
            echo "clientPort=${ports[3 * i - 1]}"
            echo "clientPortAddress=127.0.0.1"
            echo "4lw.commands.whitelist=*"
            # ZooKeeper's AdminServer (Jetty) would take port 8080 on every member.
            echo "admin.enableServer=false"
            # A lone server.1 line would otherwise run ZooKeeper standalone.
            [ "$n" -gt 1 ] || echo "standaloneEnabled=false"
            printf '%s' "$servers"
        } > "$dir/$i/zoo.cfg"
    done
    for ((i = 1; i <= n; i++)); do launch "$dir" "$i"; done
    log "$n $kind members starting in $dir (pids $(cat "$dir"/*/pid | tr '\n' ' '| sed 's/ $//'))"
    if ! wait_ready "$dir" "$timeout" $(members "$dir"); then
        show_logs "$dir"
        stop_all "$dir"
        exit 1
    fi
    connect_string "$dir" > "$dir/connect"
    for id in $(members "$dir"); do
        log "member $id: pid $(cat "$dir/$id/pid"), client port $(client_port "$dir" "$id"), $(mode "$(client_port "$dir" "$id")")"
    done
    cat "$dir/connect"
}

need_dir() {
    [ -n "${1:-}" ] && [ -n "$(members "$1")" ] || die "${1:-DIR}: no ensemble there (scripts/ensemble.sh start DIR first)"
}

need_member() {
    need_dir "$1"
    [ -n "${2:-}" ] && [ -f "$1/$2/zoo.cfg" ] || die "no member '${2:-}' in $1 (members: $(members "$1" | tr '\n' ' '))"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
    start) cmd_start "$@" ;;
    stop)
        need_dir "${1:-}"
        stop_all "$1"
        log "stopped $1" ;;
    status)
        need_dir "${1:-}"
        for id in $(members "$1"); do
            p=$(client_port "$1" "$id")
            if alive "$1" "$id"; then pid=$(cat "$1/$id/pid"); else pid="-"; fi
            printf '%s pid=%s port=%s Mode: %s\n' "$id" "$pid" "$p" "$(mode "$p")"
        done ;;
    kill)
        need_member "${1:-}" "${2:-}"
        alive "$1" "$2" || die "member $2 is not running"
        pid=$(cat "$1/$2/pid")
        kill -KILL "$pid"
        while alive "$1" "$2"; do sleep 0.01; done
        log "member $2 (pid $pid) killed" ;;
    restart)
        need_member "${1:-}" "${2:-}"
        ! alive "$1" "$2" || die "member $2 is still running (pid $(cat "$1/$2/pid")); kill it first"
        launch "$1" "$2"
        wait_ready "$1" "${3:-90}" "$2" || { show_logs "$1"; exit 1; }
        log "member $2: pid $(cat "$1/$2/pid"), $(mode "$(client_port "$1" "$2")")" ;;
    leader)
        need_dir "${1:-}"
        for id in $(members "$1"); do
            alive "$1" "$id" && is_leader "$1" "$id" && { echo "$id"; exit 0; }
        done
        die "no member reports Mode: leader" ;;
    connect)
        need_dir "${1:-}"
        connect_string "$1" ;;
    -h|--help|help) usage ;;
    *) usage ;;
esac
