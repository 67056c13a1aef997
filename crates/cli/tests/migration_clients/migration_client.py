"""A kazoo client for tests/zk_import.rs's in-place migration test: creates an ephemeral,
watches a node and a parent, and prints one line per thing that happens (READY, STATE,
EVENT) on stdout. kazoo reconnects with its session id and password by itself."""
import sys
import time

from kazoo.client import KazooClient

hosts, name = sys.argv[1], sys.argv[2]


def say(line):
    print(line, flush=True)


zk = KazooClient(hosts=hosts, timeout=30.0,
                 connection_retry={"max_tries": -1, "delay": 0.2, "max_delay": 0.5})
zk.add_listener(lambda state: say("STATE %s 0x%x" % (state, zk.client_id[0] if zk.client_id else 0)))
zk.start()
zk.create("/mig/" + name, name.encode(), ephemeral=True)


def on_event(event):
    # kazoo 2.8 sends no setWatches: on a lost connection it drops every watch and calls
    # it with a NONE event, and the application arms it again (as kazoo's recipes do).
    if event.type != "NONE":
        say("EVENT %s %s" % (event.type, event.path))
    # One-shot watches: arm them again (in a thread of kazoo's, which may block).
    zk.handler.spawn(arm)


def arm():
    while True:
        try:
            zk.get("/mig/watched", watch=on_event)
            zk.get_children("/mig", watch=on_event)
            return
        except Exception as e:  # connection loss while switching servers: try again
            say("RETRY %s" % type(e).__name__)
            time.sleep(0.2)


arm()
say("READY 0x%x" % zk.client_id[0])
while True:
    time.sleep(1)
