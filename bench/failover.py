#!/usr/bin/python3
"""Leader kill -9 under a steady write load: what do the clients see?

    bench/failover.py [--zookeeper] [--runs 5] [--members 3] [--clients-per-member 2] ...

Each run starts a fresh ensemble with scripts/ensemble.sh (corral from CORRAL_BIN, default
target/release/corral, or real ZooKeeper with --zookeeper), so the same measurement applies to
both. C clients per member (kazoo, one session each, all in this process) are each attached to
one member first: the hosts list has that member first and the others after it, with
randomize_hosts=False, so a client moves to another member only when its own one fails it. Each
client writes in a loop, --rate writes per second (0: back to back), one write in flight:
  --op set     setData of its own znode /failover/cI with values 1, 2, 3, ... (a value is never
               sent twice, a failed attempt burns its value)
  --op create  a sequential create under /failover/cI-seq/
  --op both    (default) the two alternately
and records every write it sent (send time) and every one acknowledged (ack time, value or
path). After --warmup seconds it asks each member `srvr`, sends SIGKILL to the one reporting
`Mode: leader` (T0 = just before the kill), keeps the load for --after seconds, stops the
writers, checks what survived, and stops the ensemble. --no-kill makes a control run: the
same, without the kill, T0 being when it would have been (every client counts as surviving),
to tell the failover's stalls from those an ensemble has anyway.

The clients are split by the member they were connected to at T0: the surviving clients (on a
member that lives) and the clients of the killed member, which must reconnect elsewhere.

Per run it reports:
  first_write_s    time from T0 until the first acknowledgement, by any surviving client, of a
                   write that client SENT at or after T0. A write in flight at T0 that is
                   acknowledged just after the kill says nothing about the new leader, so it
                   does not count. 0.0x s means writes never stopped.
  all_writing_s    the same for every surviving client: the largest of their first post-kill
                   acknowledgements; the time until ALL surviving clients write again.
  killed_writing_s the same for the clients of the killed member (they have to move).
  gap_s            the longest gap between consecutive acknowledgements of the surviving
                   clients taken together (one merged timeline) that ends after T0: how long
                   no surviving client saw a write succeed. gap_at_s is where it starts, from
                   T0: below 0 when writes had already stopped before the kill, well above
                   elected_s when a later stall was longer than the failover's.
  inflight_at_kill_s  the age at T0 of the oldest write a surviving client had in flight
                   (sent before T0, answered after it): above a few tens of ms, the ensemble
                   was already stalled when its leader was killed.
  stalls           gaps longer than 0.25 s in the surviving clients' merged timeline over
                   the whole run, the failover's included: more than 1 means the ensemble
                   stalled without a kill too (a spurious election, say).
  elected_s        time from T0 until a surviving member answers `srvr` with Mode: leader
                   (polled every 20 ms, so +-20 ms).
  sessions_expired clients whose session expired (kazoo state LOST) although this process
                   and its heartbeats kept running: every one counts, surviving clients and
                   the killed member's alike (each moved within its session timeout).
  writes_lost      acknowledged writes missing afterwards. With fresh sessions on each
                   surviving member (after a sync), every client's znode is read: each
                   acknowledged value above the value found is one write lost; every
                   acknowledged sequential create must be in its parent's children. The
                   largest count over the members read.
  disconnected_surviving  surviving clients that saw SUSPENDED (connection lost) after T0,
                   of how many; disconnected_killed: the same for the killed member's clients
                   (all of them, necessarily).
  max_disconnect_s the longest SUSPENDED -> CONNECTED of a surviving client.
  errors           failed write attempts (ConnectionLoss, SessionExpired, time-outs) of the
                   surviving clients and of the killed member's.
Then the median, min and max over runs of each figure, a readable table on stderr, and ONE
line of JSON on stdout (every run's figures and the summary).

Exit status 0 when every run was measured; 1 when an ensemble did not start or a run could
not be measured; with --strict also 3 when any run lost an acknowledged write or expired a
session. Needs kazoo (Debian python3-kazoo; this script re-runs itself under /usr/bin/python3
when the python3 it was started with has no kazoo).
"""
import argparse
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

try:
    from kazoo.client import KazooClient, KazooState
    from kazoo.exceptions import NoNodeError, NodeExistsError
except ImportError:
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    sys.exit("failover.py: kazoo is missing (apt-get install python3-kazoo, or pip install kazoo)")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENSEMBLE = os.path.join(REPO, "scripts", "ensemble.sh")
ROOT = "/failover"


def say(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def fourlw(port, word, timeout=1.0):
    """A member's answer to a four-letter word, '' when it does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(word.encode())
            out = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
            return out.decode(errors="replace")
    except OSError:
        return ""


def mode(port):
    for line in fourlw(port, "srvr").splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return None


class Member:
    def __init__(self, edir, mid):
        self.id = mid
        self.dir = os.path.join(edir, str(mid))
        self.port = None
        with open(os.path.join(self.dir, "zoo.cfg")) as f:
            for line in f:
                if line.startswith("clientPort="):
                    self.port = int(line.split("=", 1)[1])
        if self.port is None:
            raise RuntimeError("no clientPort in %s/zoo.cfg" % self.dir)

    def pid(self):
        with open(os.path.join(self.dir, "pid")) as f:
            return int(f.read().strip())


class Writer:
    """One client session writing in a loop; every event it sees is recorded with its
    monotonic time. The lists are appended to by this writer's thread and by kazoo's
    connection thread, and read only after both are done (or, for the connected member,
    by the main thread at T0, which reads one attribute)."""

    def __init__(self, idx, home, members, args, log):
        self.idx = idx
        self.home = home  # the member listed first
        others = [m for m in members if m is not home]
        hosts = ",".join("127.0.0.1:%d" % m.port for m in [home] + others)
        self.zk = KazooClient(hosts=hosts, randomize_hosts=False, timeout=args.session_timeout,
                              connection_retry={"max_tries": -1, "delay": 0.05, "backoff": 1.5,
                                                "max_delay": 0.5, "max_jitter": 0.2},
                              logger=log)
        self.args = args
        self.states = []  # (t, KazooState)
        self.acks = []  # (t_sent, t_ack, "set", value) or (t_sent, t_ack, "create", path)
        self.errors = []  # (t_sent, t, exception name)
        self.sent = 0
        self.closed_at = None  # set before zk.stop(), whose own LOST (closed) is not an expiry
        self.stop = threading.Event()
        self.zk.add_listener(self._on_state)
        self.node = "%s/c%d" % (ROOT, idx)
        self.seqdir = "%s/c%d-seq" % (ROOT, idx)
        self.thread = threading.Thread(target=self._loop, name="writer-%d" % idx, daemon=True)

    def _on_state(self, state):
        # kazoo's connection thread: record only, never block.
        self.states.append((time.monotonic(), state))

    def connected_port(self):
        try:
            return self.zk._connection._socket.getpeername()[1]
        except Exception:  # not connected at this moment
            return None

    def _loop(self):
        value = 0
        period = 1.0 / self.args.rate if self.args.rate > 0 else 0.0
        next_send = time.monotonic()
        i = 0
        while not self.stop.is_set():
            now = time.monotonic()
            if next_send > now:
                time.sleep(next_send - now)
            op = self.args.op if self.args.op != "both" else ("set", "create")[i % 2]
            i += 1
            t_sent = time.monotonic()
            next_send = max(next_send + period, t_sent) if period else t_sent
            self.sent += 1
            try:
                if op == "set":
                    value += 1
                    self.zk.set_async(self.node, str(value).encode()).get(timeout=self.args.op_timeout)
                    self.acks.append((t_sent, time.monotonic(), "set", value))
                else:
                    path = self.zk.create_async(self.seqdir + "/s-", b"x", sequence=True).get(
                        timeout=self.args.op_timeout)
                    self.acks.append((t_sent, time.monotonic(), "create", path))
            except Exception as e:  # ConnectionLoss, SessionExpired, time-out: the run goes on
                self.errors.append((t_sent, time.monotonic(), type(e).__name__))
                time.sleep(0.01)


def run_ensemble(*words):
    return subprocess.run([ENSEMBLE] + [str(w) for w in words], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def first_ack_after(w, t0):
    """Seconds from t0 to the first acknowledgement of a write w sent at or after t0."""
    for t_sent, t_ack, _, _ in w.acks:
        if t_sent >= t0:
            return t_ack - t0
    return None


def one_run(n, args, edir, log):
    """Start an ensemble in edir, load it, kill its leader, measure. Returns a dict of the
    run's figures, or raises RuntimeError when the run could not be done."""
    words = ["start", edir, "--members", args.members]
    if args.zookeeper:
        words.append("--zookeeper")
    r = run_ensemble(*words)
    if r.returncode != 0:
        raise RuntimeError("scripts/ensemble.sh start failed (exit %d):\n%s"
                           % (r.returncode, r.stderr.strip()))
    members = [Member(edir, i) for i in range(1, args.members + 1)]
    writers = []
    try:
        # The znodes, once, through any member.
        setup = KazooClient(hosts=r.stdout.strip(), timeout=args.session_timeout, logger=log)
        setup.start(timeout=30)
        setup.ensure_path(ROOT)
        for m in range(len(members) * args.clients_per_member):
            for path in ("%s/c%d" % (ROOT, m), "%s/c%d-seq" % (ROOT, m)):
                try:
                    setup.create(path, b"0")
                except NodeExistsError:
                    pass
        setup.stop()
        setup.close()

        for i in range(len(members) * args.clients_per_member):
            writers.append(Writer(i, members[i % len(members)], members, args, log))
        for w in writers:
            w.zk.start(timeout=30)
        for w in writers:
            w.thread.start()
        time.sleep(args.warmup)

        leader = [m for m in members if mode(m.port) == "leader"]
        if len(leader) != 1:
            raise RuntimeError("%d members report Mode: leader before the kill" % len(leader))
        leader = leader[0]
        attached = {w.idx: w.connected_port() for w in writers}
        pid = leader.pid()
        t0 = time.monotonic()
        if args.no_kill:
            say("run %d: control run, the leader (member %d) is left alone" % (n, leader.id))
        else:
            os.kill(pid, signal.SIGKILL)
            say("run %d: killed the leader, member %d (pid %d)" % (n, leader.id, pid))

        survivors = [m for m in members if m is not leader or args.no_kill]
        elected = None
        end = t0 + args.after
        while time.monotonic() < end:
            if elected is None and not args.no_kill:
                for m in survivors:
                    if mode(m.port) == "leader":
                        elected = time.monotonic() - t0
                        say("run %d: member %d leads after %.3f s" % (n, m.id, elected))
                        break
                time.sleep(0.02)
            else:
                time.sleep(min(0.2, max(0.0, end - time.monotonic())))
        for w in writers:
            w.stop.set()
        for w in writers:
            w.thread.join(timeout=args.op_timeout + 5)
        stuck = [w.idx for w in writers if w.thread.is_alive()]
        if stuck:
            raise RuntimeError("writers %s did not stop" % stuck)
        # Sessions end before the check, so no writer is left to change what it reads.
        for w in writers:
            w.closed_at = time.monotonic()
            w.zk.stop()
            w.zk.close()

        # Surviving = connected to a surviving member at T0 (its home, unless it had moved).
        def on_survivor(w):
            port = attached[w.idx] if attached[w.idx] is not None else w.home.port
            return port != leader.port or args.no_kill
        surv = [w for w in writers if on_survivor(w)]
        dead = [w for w in writers if not on_survivor(w)]

        lost_by_member = {}
        for m in survivors:
            lost_by_member[m.id] = count_lost(m, writers, args, log)

        firsts = [first_ack_after(w, t0) for w in surv]
        kfirsts = [first_ack_after(w, t0) for w in dead]
        merged = sorted(t_ack for w in surv for (_, t_ack, _, _) in w.acks)
        gap, gap_at = 0.0, None
        for a, b in zip(merged, merged[1:]):
            if b > t0 and b - a > gap:
                gap, gap_at = b - a, a - t0
        if not merged or merged[-1] <= t0:
            gap = None  # nothing acknowledged after the kill
        stalls = sum(1 for a, b in zip(merged, merged[1:]) if b - a > 0.25)
        inflight = max([t0 - t_sent for w in surv for (t_sent, t_done, *_) in w.acks + w.errors
                        if t_sent < t0 < t_done], default=0.0)

        def disconnects(ws):
            return sum(1 for w in ws if any(t >= t0 and s == KazooState.SUSPENDED for t, s in w.states))

        max_disc = 0.0
        for w in surv:
            down = None
            for t, s in w.states:
                if t < t0:
                    continue
                if s == KazooState.SUSPENDED and down is None:
                    down = t
                elif s == KazooState.CONNECTED and down is not None:
                    max_disc = max(max_disc, t - down)
                    down = None
            if down is not None:  # never came back
                max_disc = float("inf")

        # kazoo reports its own close as LOST too: only a LOST before stop() is an expiry.
        expired = sum(1 for w in writers
                      if any(s == KazooState.LOST and t < w.closed_at for t, s in w.states))
        res = {
            "run": n,
            "killed": None if args.no_kill else leader.id,
            "first_write_s": min((f for f in firsts if f is not None), default=None),
            "all_writing_s": None if None in firsts or not firsts else max(firsts),
            "killed_writing_s": None if None in kfirsts or not kfirsts else max(kfirsts),
            "gap_s": gap,
            "gap_at_s": gap_at,
            "inflight_at_kill_s": inflight,
            "stalls": stalls,
            "elected_s": elected,
            "sessions_expired": expired,
            "writes_lost": max(v for v in lost_by_member.values()),
            "writes_lost_by_member": lost_by_member,
            "disconnected_surviving": disconnects(surv),
            "surviving_clients": len(surv),
            "disconnected_killed": disconnects(dead),
            "killed_clients": len(dead),
            "max_disconnect_s": max_disc if max_disc != float("inf") else None,
            "errors_surviving": sum(len(w.errors) for w in surv),
            "errors_killed": sum(len(w.errors) for w in dead),
            "acked": sum(len(w.acks) for w in writers),
            "sent": sum(w.sent for w in writers),
            "error_kinds": sorted({e for w in writers for _, _, e in w.errors}),
        }
        if args.keep:
            dump_events(os.path.join(edir, "events.json"), t0, writers, attached, leader)
        return res
    finally:
        for w in writers:
            w.stop.set()
        for w in writers:
            try:
                w.zk.stop()
                w.zk.close()
            except Exception:
                pass
        stop = run_ensemble("stop", edir)
        if stop.returncode != 0:
            say("scripts/ensemble.sh stop %s: %s" % (edir, stop.stderr.strip()))


def dump_events(path, t0, writers, attached, leader):
    """Every client's acknowledgements, errors and states, times in seconds from the kill,
    for a look at a run afterwards (--keep)."""
    out = {"killed": leader.id, "clients": []}
    for w in writers:
        out["clients"].append({
            "client": w.idx, "home": w.home.id, "port_at_kill": attached[w.idx],
            "acks": [[round(a - t0, 6), round(b - t0, 6), k, v] for a, b, k, v in w.acks],
            "errors": [[round(a - t0, 6), round(b - t0, 6), e] for a, b, e in w.errors],
            "states": [[round(t - t0, 6), str(st)] for t, st in w.states],
        })
    with open(path, "w") as f:
        json.dump(out, f)


def count_lost(member, writers, args, log):
    """Acknowledged writes that member does not show, read through a fresh session on it
    alone after a sync. A znode or parent that cannot be read counts all its writes lost."""
    zk = KazooClient(hosts="127.0.0.1:%d" % member.port, timeout=args.session_timeout, logger=log)
    try:
        zk.start(timeout=30)
    except Exception as e:
        say("check on member %d: cannot connect (%s); every acknowledged write counts lost"
            % (member.id, type(e).__name__))
        return sum(len(w.acks) for w in writers)
    lost = 0
    try:
        zk.sync(ROOT)
        for w in writers:
            sets = [v for _, _, kind, v in w.acks if kind == "set"]
            creates = [p for _, _, kind, p in w.acks if kind == "create"]
            if sets:
                try:
                    data, _ = zk.get(w.node)
                    found = int(data.decode())
                except (NoNodeError, ValueError):
                    found = -1
                lost += sum(1 for v in sets if v > found)
            if creates:
                try:
                    children = set(zk.get_children(w.seqdir))
                except NoNodeError:
                    children = set()
                lost += sum(1 for p in creates if p.rsplit("/", 1)[1] not in children)
    finally:
        zk.stop()
        zk.close()
    return lost


FIELDS = [  # (key, heading, format)
    ("first_write_s", "first write", "%.3f"),
    ("all_writing_s", "all writing", "%.3f"),
    ("killed_writing_s", "killed's writing", "%.3f"),
    ("gap_s", "gap", "%.3f"),
    ("gap_at_s", "gap at", "%.3f"),
    ("inflight_at_kill_s", "in flight", "%.3f"),
    ("stalls", "stalls", "%d"),
    ("elected_s", "elected", "%.3f"),
    ("sessions_expired", "expired", "%d"),
    ("writes_lost", "lost", "%d"),
    ("disconnected_surviving", "disc. surv.", "%d"),
    ("disconnected_killed", "disc. killed", "%d"),
    ("max_disconnect_s", "max disc.", "%.3f"),
    ("errors_surviving", "err surv.", "%d"),
    ("errors_killed", "err killed", "%d"),
    ("acked", "acked", "%d"),
]


def fmt(f, v):
    return "-" if v is None else f % v


def summarize(runs):
    out = {}
    for key, _, _ in FIELDS:
        vals = [r[key] for r in runs if r.get(key) is not None]
        missing = sum(1 for r in runs if r.get(key) is None)
        out[key] = {"median": statistics.median(vals) if vals else None,
                    "min": min(vals) if vals else None, "max": max(vals) if vals else None,
                    "missing": missing}
    return out


def table(runs, summary, server, what):
    heads = ["run"] + [h for _, h, _ in FIELDS]
    rows = [[str(r["run"])] + [fmt(f, r[k]) for k, _, f in FIELDS] for r in runs]
    for stat in ("median", "min", "max"):
        rows.append([stat] + [fmt("%.3f" if f == "%.3f" else ("%g"), summary[k][stat])
                              for k, _, f in FIELDS])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(heads)]
    lines = ["%s: %s, times in seconds from the kill" % (server, what),
             "  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    for i, row in enumerate(rows):
        if i == len(runs):
            lines.append("  ".join("-" * w for w in widths))
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zookeeper", action="store_true", help="real ZooKeeper 3.8 instead of corral")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--clients-per-member", type=int, default=2)
    p.add_argument("--op", choices=["set", "create", "both"], default="both")
    p.add_argument("--rate", type=float, default=50.0,
                   help="writes per second per client; 0 = back to back (default 50)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of load before the kill")
    p.add_argument("--after", type=float, default=12.0, help="seconds of load after the kill")
    p.add_argument("--session-timeout", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument("--op-timeout", type=float, default=15.0,
                   help="seconds a write may wait for its reply before it counts as an error")
    p.add_argument("--keep", action="store_true",
                   help="keep each run's directory (zoo.cfg, server logs, kazoo.log, and "
                        "events.json: every acknowledgement, error and state change)")
    p.add_argument("--no-kill", action="store_true",
                   help="control run: the same load and figures, but the leader is not killed "
                        "(T0 is when it would have been)")
    p.add_argument("--strict", action="store_true",
                   help="exit 3 when an acknowledged write was lost or a session expired")
    args = p.parse_args()
    if args.runs < 1 or args.members < 3 or args.clients_per_member < 1:
        p.error("--runs >= 1, --members >= 3 (a kill must leave a quorum), --clients-per-member >= 1")
    if args.warmup <= 0 or args.after <= 0 or args.session_timeout <= 0 or args.op_timeout <= 0:
        p.error("--warmup, --after, --session-timeout and --op-timeout must be > 0")

    server = "zookeeper" if args.zookeeper else "corral"
    if not args.zookeeper:
        corral = os.environ.get("CORRAL_BIN", os.path.join(REPO, "target", "release", "corral"))
        server = "corral (%s)" % corral
    base = tempfile.mkdtemp(prefix="corral-failover.")
    runs, failed = [], []
    for n in range(1, args.runs + 1):
        edir = os.path.join(base, "run%d" % n)
        os.makedirs(edir)
        log = logging.getLogger("kazoo.run%d" % n)
        log.propagate = False
        handler = logging.FileHandler(os.path.join(edir, "kazoo.log"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        say("run %d/%d: %d-member %s ensemble in %s" % (n, args.runs, args.members,
                                                       "zookeeper" if args.zookeeper else "corral", edir))
        try:
            res = one_run(n, args, edir, log)
            runs.append(res)
            say("run %d: " % n + ", ".join("%s=%s" % (k, fmt(f, res[k])) for k, _, f in FIELDS))
        except RuntimeError as e:
            failed.append({"run": n, "error": str(e)})
            say("run %d FAILED: %s" % (n, e))
        finally:
            log.removeHandler(handler)
            handler.close()
        if failed and not runs:
            break  # the ensemble does not start: more runs would fail the same way

    summary = summarize(runs) if runs else {}
    if runs:
        print(table(runs, summary, server,
                    "control runs (no kill)" if args.no_kill else "leader kill -9"), file=sys.stderr)
    for f in failed:
        # The first server line says why (ensemble.sh's own lines start with "ensemble:").
        lines = f["error"].splitlines()
        why = next((l for l in lines[1:] if not l.startswith("ensemble:")), lines[0])
        print("run %d failed: %s" % (f["run"], why), file=sys.stderr)
    print(json.dumps({"bench": "failover", "server": server, "members": args.members,
                      "clients_per_member": args.clients_per_member, "op": args.op,
                      "kill": not args.no_kill,
                      "rate": args.rate, "session_timeout_s": args.session_timeout,
                      "runs": runs, "failed": failed, "summary": summary},
                     separators=(",", ":")))
    if args.keep or failed:
        say("run directories kept in %s" % base)
    else:
        shutil.rmtree(base, ignore_errors=True)
    if failed:
        return 1
    if args.strict and any(r["writes_lost"] or r["sessions_expired"] for r in runs):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
