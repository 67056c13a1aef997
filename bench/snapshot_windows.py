#!/usr/bin/env python3
"""Latency of the requests sent while a snapshot was being written, against the rest.

    bench/snapshot_windows.py LATENCY_LOG SERVER_LOG

LATENCY_LOG is `corral bench --latency-log` output (sent_unix_us latency_us r|w per line);
SERVER_LOG is corral's log, whose `snapshot written ... ms=N` lines end each snapshot (the line's
timestamp) and say how long it took, so a snapshot's window is [end - N ms, end]. A request
belongs to the window it was sent in. Prints one JSON line: count, p99 and p99.9 (µs) of the
requests inside windows and outside them, and the share of the run the windows covered.
"""
import json
import math
import re
import sys
from datetime import datetime

LINE = re.compile(r"^(\S+)\s.*snapshot written.*\bms=(\d+)")


def windows(server_log):
    out = []
    for line in open(server_log, errors="replace"):
        m = LINE.match(line)
        if not m:
            continue
        end = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp() * 1e6
        out.append((end - int(m.group(2)) * 1000, end))
    return sorted(out)


def quantile(sorted_values, q):
    """The smallest value with at least a share q of the values at or below it (as HDR
    histograms report percentiles)."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(len(sorted_values) * q) - 1)]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    wins = windows(sys.argv[2])
    inside, outside = [], []
    first = last = None
    w = 0
    for line in open(sys.argv[1]):
        parts = line.split()
        if len(parts) != 3:
            continue
        sent, lat = int(parts[0]), int(parts[1])
        first = sent if first is None else first
        last = sent
        # Requests come in order of sending: walk the windows alongside.
        while w < len(wins) and wins[w][1] < sent:
            w += 1
        (inside if w < len(wins) and wins[w][0] <= sent else outside).append(lat)
    inside.sort()
    outside.sort()
    span = (last - first) if first is not None and last > first else 0
    covered = sum(max(0, min(e, last) - max(s, first)) for s, e in wins) if span else 0
    print(json.dumps({
        "snapshots": sum(1 for s, e in wins if span and e > first and s < last),
        "covered": round(covered / span, 3) if span else 0,
        "inside_ops": len(inside),
        "inside_p99_us": quantile(inside, 0.99),
        "inside_p999_us": quantile(inside, 0.999),
        "outside_ops": len(outside),
        "outside_p99_us": quantile(outside, 0.99),
        "outside_p999_us": quantile(outside, 0.999),
    }))


if __name__ == "__main__":
    main()
