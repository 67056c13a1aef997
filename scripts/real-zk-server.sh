#!/usr/bin/env bash
# exec real Apache ZooKeeper 3.8 (Debian jars) in the foreground from a zoo.cfg:
#   scripts/real-zk-server.sh CFG
# Reference "server command" for scripts/kazoo-suite.sh --server-cmd and for
# differential tests. Honours (if set):
#   ZK_SUPER_DIGEST  -> -Dzookeeper.DigestAuthenticationProvider.superDigest
#   ZK_JAAS_CONFIG   -> -Djava.security.auth.login.config
#   ZK_READONLY      -> -Dreadonlymode.enabled
#   ZK_JVMFLAGS      extra JVM flags
# It execs java, so a SIGTERM to this PID reaches the server.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 zoo.cfg" >&2; exit 2; }
cfg=$1
j=/usr/share/java
# zookeeper.jar's manifest lacks netty-codec/-resolver (needed by the Netty
# connection factory kazoo's zoo.cfg selects) and servlet-api (admin server).
cp=$j/zookeeper.jar:$j/netty-codec.jar:$j/netty-resolver.jar:$j/netty-transport-native-unix-common.jar:$j/servlet-api.jar:$j/slf4j-simple.jar
args=(-Dfile.encoding=UTF-8 -Djava.awt.headless=true -Dorg.slf4j.simpleLogger.defaultLogLevel=info)
[ -z "${ZK_SUPER_DIGEST:-}" ] || args+=("-Dzookeeper.DigestAuthenticationProvider.superDigest=$ZK_SUPER_DIGEST")
[ -z "${ZK_JAAS_CONFIG:-}" ] || args+=("-Djava.security.auth.login.config=$ZK_JAAS_CONFIG")
[ -z "${ZK_READONLY:-}" ] || args+=("-Dreadonlymode.enabled=$ZK_READONLY")
# shellcheck disable=SC2086
exec "${REAL_JAVA:-/usr/bin/java}" ${ZK_JVMFLAGS:-} "${args[@]}" -cp "$cp" \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$cfg"
