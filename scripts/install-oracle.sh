#!/usr/bin/env bash
# Install the "oracle": real Apache ZooKeeper 3.8 from Debian (server jars +
# zkCli.sh), zookeeper-bin (C client cli_mt), python3-kazoo, python3-prometheus-client
# (its text-format parser reads /metrics in a test), and chromium (headless, it renders the
# admin server's session page in a test).
# Idempotent: packages already installed are skipped. Needs root (or sudo).
set -euo pipefail
pkgs=(zookeeper zookeeper-bin python3-kazoo python3-prometheus-client chromium)
missing=()
for p in "${pkgs[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        echo "install-oracle: $p already installed ($(dpkg-query -W -f='${Version}' "$p"))"
    else
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-oracle: nothing to do"
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
echo "install-oracle: apt-get update"
$sudo apt-get update -q
echo "install-oracle: installing ${missing[*]}"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
for p in "${missing[@]}"; do
    echo "install-oracle: installed $p $(dpkg-query -W -f='${Version}' "$p")"
done
