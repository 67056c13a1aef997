// A ZooKeeper Java client for tests/zk_import.rs's in-place migration test: it creates an
// ephemeral, watches a node and a parent, and prints one line per thing that happens
// (READY, STATE, EVENT) on stdout, re-arming its watches after each event. Compiled by the
// test with javac against the Debian zookeeper.jar.
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;

public class MigrationClient {
    static ZooKeeper zk;

    static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    static void watchAll() throws Exception {
        Watcher w = (WatchedEvent e) -> {
            // Connection state changes reach every watcher too; they are no node event.
            if (e.getType() == Watcher.Event.EventType.None) {
                return;
            }
            say("EVENT " + e.getType() + " " + e.getPath());
            try {
                watchAll();
            } catch (Exception x) {
                say("ERROR rewatch " + x);
            }
        };
        zk.getData("/mig/watched", w, null);
        zk.getChildren("/mig", w);
    }

    public static void main(String[] args) throws Exception {
        String connect = args[0];
        String name = args[1];
        zk = new ZooKeeper(connect, 30000, (WatchedEvent e) -> {
            if (e.getType() == Watcher.Event.EventType.None) {
                say("STATE " + e.getState() + " 0x" + Long.toHexString(zk == null ? 0 : zk.getSessionId()));
            }
        });
        while (zk.getState() != ZooKeeper.States.CONNECTED) {
            Thread.sleep(20);
        }
        zk.create("/mig/" + name, name.getBytes(), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL);
        watchAll();
        say("READY 0x" + Long.toHexString(zk.getSessionId()));
        while (true) {
            Thread.sleep(1000);
        }
    }
}
