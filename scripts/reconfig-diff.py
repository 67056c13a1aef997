#!/usr/bin/env python3
"""Differential check of reconfig and /zookeeper/config: runs the same calls against a
3-member ensemble started by a server command and prints what came back, normalised, one
line per step.  Run it once with real ZooKeeper and once with corral and diff the two:

  scripts/reconfig-diff.py --server-cmd scripts/real-zk-server.sh > /tmp/real.txt
  scripts/reconfig-diff.py --server-cmd "target/release/corral serve --config" > /tmp/corral.txt
  diff /tmp/real.txt /tmp/corral.txt

Needs kazoo importable (scripts/kazoo-suite.sh leaves the 2.11.0 sdist and a venv in its
workdir: run with that venv's python and PYTHONPATH=<workdir>/kazoo-2.11.0).  Every member
binds 127.0.0.1 on ports found free; every process it starts it stops, by pid.

Masked, because they differ between any two runs: the zxid-derived config version (shown as
V0, V1, ... in order of first appearance), zxids and times in stats, the client ports the
script chose (shown as C1.., Q1.., E1..), and session-dependent fields.  Everything else is
compared byte for byte, the order of the server lines included.
"""
import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException

SUPER = "super:D/InIHSb7yEEbrWz8b9l71RjZJU="  # "super:test", kazoo harness's


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-cmd", required=True, help="command; the zoo.cfg path is appended")
    ap.add_argument("--raw-stats", action="store_true", help="print whole stats (not comparable)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    raw_stats = args.raw_stats
    work = tempfile.mkdtemp(prefix="reconfig-diff-")
    ports = free_ports(3 * 4 + 3)
    members = []
    for i in range(3):
        client, quorum, election, admin = ports[4 * i: 4 * i + 4]
        members.append(dict(id=i + 1, client=client, quorum=quorum, election=election, admin=admin))
    spare = ports[12:]
    mask = {}
    for m in members:
        mask[str(m["client"])] = "C%d" % m["id"]
        mask[str(m["quorum"])] = "Q%d" % m["id"]
        mask[str(m["election"])] = "E%d" % m["id"]
    for k, p in enumerate(spare):
        mask[str(p)] = "P%d" % (k + 1)

    procs = []
    try:
        for m in members:
            d = os.path.join(work, "s%d" % m["id"])
            os.makedirs(os.path.join(d, "data"))
            with open(os.path.join(d, "data", "myid"), "w") as f:
                f.write(str(m["id"]))
            lines = [
                "tickTime=2000",
                "dataDir=%s" % os.path.join(d, "data"),
                "clientPort=%d" % m["client"],
                "clientPortAddress=127.0.0.1",
                "maxClientCnxns=0",
                "admin.enableServer=false",
                "4lw.commands.whitelist=*",
                "reconfigEnabled=true",
                # An unknown key, which ZooKeeper turns into the system property
                # zookeeper.DigestAuthenticationProvider.superDigest (corral does the same).
                "DigestAuthenticationProvider.superDigest=%s" % SUPER,
                "initLimit=4",
                "syncLimit=2",
            ]
            for o in members:
                lines.append("server.%d=localhost:%d:%d:participant" % (o["id"], o["quorum"], o["election"]))
            lines.append("peerType=participant")
            cfg = os.path.join(d, "zoo.cfg")
            with open(cfg, "w") as f:
                f.write("\n".join(lines) + "\n")
            log = open(os.path.join(d, "server.log"), "w")
            procs.append(subprocess.Popen(shlex.split(args.server_cmd) + [cfg], stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
        hosts = ",".join("127.0.0.1:%d" % m["client"] for m in members)

        def norm(text):
            for port, name in sorted(mask.items(), key=lambda kv: -len(kv[0])):
                text = re.sub(r"\b%s\b" % port, name, text)
            return text

        versions = {}

        def norm_config(data):
            text = data.decode("utf-8", "replace")

            def ver(mo):
                v = mo.group(1)
                versions.setdefault(v, "V%d" % len(versions))
                return "version=" + versions[v]

            return norm(re.sub(r"version=([0-9a-f]+)", ver, text))

        def stat_str(st, data):
            # version/aversion/cversion/owner compared; zxids and times masked; the length
            # is checked against the data (whose version digits differ between servers).
            if raw_stats:
                return str(st)
            return "version=%d aversion=%d cversion=%d owner=%d len=%s children=%d" % (
                st.version, st.aversion, st.cversion, st.ephemeralOwner,
                "ok" if st.dataLength == len(data) else st.dataLength, st.numChildren)

        out = []

        def step(name, fn):
            try:
                r = fn()
                out.append("%s: %s" % (name, r))
            except KazooException as e:
                out.append("%s: %s" % (name, type(e).__name__))

        deadline = time.time() + 60
        while True:
            zk = KazooClient(hosts=hosts, auth_data=[("digest", "super:test")], timeout=10)
            try:
                zk.start(timeout=5)
                zk.sync("/")
                break
            except Exception:
                zk.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        plain = KazooClient(hosts=hosts, timeout=10)
        plain.start(timeout=20)

        for m in members:
            c = KazooClient(hosts="127.0.0.1:%d" % m["client"], timeout=10)
            c.start(timeout=20)
            c.sync("/zookeeper/config")
            data, st = c.get("/zookeeper/config")
            out.append("member %d /zookeeper/config: %r %s" % (m["id"], norm_config(data), stat_str(st, data)))
            acl, _ = c.get_acls("/zookeeper/config")
            out.append("member %d acl: %s" % (m["id"], [(a.perms, a.id.scheme, a.id.id) for a in acl]))
            c.stop()
            c.close()

        def reconfig(client, **kw):
            def go():
                kw.setdefault("joining", None)
                kw.setdefault("leaving", None)
                kw.setdefault("new_members", None)
                data, st = client.reconfig(**kw)
                return "%r %s" % (norm_config(data), stat_str(st, data))
            return go

        def current_version():
            data, _ = zk.get("/zookeeper/config")
            return int(data.decode().split("\n")[-1].split("=")[1], 16)

        obs = "server.100=0.0.0.0:%d:%d:observer;0.0.0.0:%d" % tuple(spare)
        step("no auth, add observer", reconfig(plain, joining=obs))
        step("no auth, bad input", reconfig(plain, joining="some thing"))
        step("no auth, two ports", reconfig(plain, joining="server.7=localhost:1:2"))
        step("no auth, bad leaving", reconfig(plain, leaving="x"))
        step("no auth, future version", reconfig(plain, joining=obs, from_config=current_version() + 1))
        step("super, future version", reconfig(zk, joining=obs, from_config=current_version() + 1))
        step("super, add observer", reconfig(zk, joining=obs))
        step("super, read after add", lambda: norm_config(zk.get("/zookeeper/config")[0]))
        step("super, remove observer", reconfig(zk, leaving="100"))
        step("super, remove unknown", reconfig(zk, leaving="42"))
        step("super, current version", reconfig(zk, joining=obs, from_config=current_version()))
        step("super, remove observer again", reconfig(zk, leaving="100"))
        step("super, bad input", reconfig(zk, joining="some thing"))
        step("super, no client port", reconfig(zk, joining="server.7=localhost:%d:%d" % tuple(spare[:2])))
        step("super, duplicate address", reconfig(zk, joining="server.7=localhost:%d:%d;%d" % (
            members[0]["quorum"], spare[1], spare[2])))
        step("super, empty", reconfig(zk))
        current = zk.get("/zookeeper/config")[0].decode()
        same = ",".join(l for l in current.split("\n") if l.startswith("server."))
        step("super, new_members unchanged", reconfig(zk, new_members=same))
        step("super, new_members garbage", reconfig(zk, new_members="garbage"))
        step("super, new_members one voter", reconfig(zk, new_members=same.split(",")[0]))
        step("super, bad joining id", reconfig(zk, joining="server.x=localhost:%d:%d;%d" % tuple(spare)))
        step("super, joining without server.", reconfig(zk, joining="8=localhost:%d:%d;%d" % tuple(spare)))
        step("super, add 9 and 17", reconfig(zk, joining="server.17=0.0.0.0:%d:%d:observer;%d,server.9=0.0.0.0:%d:%d:observer;%d" % (
            spare[0], spare[1], spare[2], spare[1], spare[2], spare[0])))
        step("super, remove 9, 17, 7", reconfig(zk, leaving="9,17,7"))
        step("super, final read", lambda: "%r %s" % (
            (lambda d, st: (norm_config(d), stat_str(st, d)))(*zk.get("/zookeeper/config"))))
        # Last, as it differs: ZooKeeper refuses a voter set without a synced quorum
        # (NewConfigNoQuorum, here with server 7 never up); corral accepts it and its raft
        # membership waits for the new voters (see DESIGN-NOTES "Reconfig").
        step("super, leave two of three (differs)", reconfig(zk, leaving="2,3"))
        for line in out:
            print(line)
        zk.stop()
        plain.stop()
    finally:
        for p in procs:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        if args.keep:
            print("work directory: %s" % work, file=sys.stderr)
        else:
            shutil.rmtree(work, True)


if __name__ == "__main__":
    main()
