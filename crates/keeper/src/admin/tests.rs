//! The words' text pinned against ZooKeeper 3.8's (each expected string was captured from a
//! real 3.8.0), and the table of what each word needs (how it is gathered: `gather`'s tests).

use std::net::SocketAddr;

use corral_tree::obituary::{ConnEvent, ConnEventKind, EndCause, Evidence, Obituary};

use super::gather::{environment, full_version};
use super::java::{java_addr, java_date, java_double, round4};
use super::render::{render, NOT_SERVING};
use super::snapshot::{AdminSnapshot, ConnectionInfo, ExpirySet, Needs, WatchSummary};
use super::words::{
    needs_trace_mask, not_whitelisted, recognize, DEFAULT_TRACE_MASK, TELNET_CLOSE,
};
use super::{four_letter_reply, words};
use crate::config::{Config, FOUR_LETTER_WORDS};
use crate::shared::Shared;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|_| panic!("bad test address {s}"))
}

const SID: i64 = 0x1000006e0220001;
/// 2026-11-25 01:12:37 UTC, a Wednesday (from the real server's `dump`).
const EXPIRY_MS: i64 = 1_795_569_157_000;

fn sample() -> AdminSnapshot {
    let mut snap = AdminSnapshot {
        version: "3.8.0-corral-0.1.0, built on unknown".into(),
        serving: true,
        server_state: "standalone".into(),
        zxid: 7,
        node_count: 8,
        latency_min_ms: 0,
        latency_avg_ms: 7.0 / 9.0,
        latency_max_ms: 4,
        packets_received: 20,
        packets_sent: 23,
        num_alive_connections: 2,
        connections: vec![
            ConnectionInfo {
                remote: addr("127.0.0.1:40136"),
                interest_ops: 1,
                received: 8,
                sent: 8,
                session_id: SID,
                last_op: "EXIS".into(),
                established_ms: 1_795_569_147_025,
                timeout_ms: 10000,
                last_cxid: 7,
                last_zxid: 7,
                last_response_ms: 475_985,
                last_latency_ms: 1,
                max_latency_ms: 1,
                ..ConnectionInfo::default_for_test()
            },
            ConnectionInfo {
                remote: addr("127.0.0.1:40178"),
                received: 1,
                ..ConnectionInfo::default_for_test()
            },
        ],
        data_watches: vec![
            (SID, "/w2".into()),
            (SID, "/w1".into()),
            (SID, "/nonexist".into()),
        ],
        watch_count: 4,
        session_expiry: vec![ExpirySet {
            expire_at_ms: EXPIRY_MS,
            members: vec![SID],
        }],
        connection_expiry: vec![ExpirySet {
            expire_at_ms: EXPIRY_MS + 4000,
            members: vec![(addr("127.0.0.1:40218"), 0), (addr("127.0.0.1:40136"), SID)],
        }],
        ephemerals: vec![(SID, vec!["/eph".into()])],
        ephemerals_count: 1,
        approximate_data_size: 57,
        global_sessions: 1,
        data_dir_size: 67_109_337,
        log_dir_size: 67_109_337,
        environment: vec![
            ("host.name".into(), "localhost".into()),
            ("user.dir".into(), "/work".into()),
        ],
        config_lines: vec![
            ("clientPort".into(), "38081".into()),
            ("tickTime".into(), "2000".into()),
        ],
        open_file_descriptors: Some(43),
        max_file_descriptors: Some(20000),
        uptime_ms: 25446,
        trace_mask: DEFAULT_TRACE_MASK,
        metrics: vec![("zk_corral_sessions_expired_total".into(), "3".into())],
        obituaries: vec![sample_obituary()],
        ..AdminSnapshot::default()
    };
    snap.data_watch_summary =
        WatchSummary::of(snap.data_watches.iter().map(|(s, p)| (*s, p.as_str())));
    snap
}

/// A Kafka broker's session, expired after its connection was reset.
fn sample_obituary() -> Obituary {
    Obituary {
        session_id: SID,
        zxid: 0x2a,
        ended_ms: EXPIRY_MS,
        created_ms: EXPIRY_MS - 60_000,
        timeout_ms: 6000,
        evidence: Evidence {
            cause: EndCause::ConnectionLost,
            detail: "the connection ended".into(),
            remote: "127.0.0.1:40136".into(),
            member: 2,
            requested_timeout_ms: 18000,
            silent_ms: 6001,
            last_op: "setData".into(),
            stall_forgiven_ms: 0,
            history: vec![
                ConnEvent {
                    at_ms: EXPIRY_MS - 60_000,
                    member: 2,
                    kind: ConnEventKind::Connected,
                    remote: "127.0.0.1:40136".into(),
                    cause: String::new(),
                },
                ConnEvent {
                    at_ms: EXPIRY_MS - 6001,
                    member: 2,
                    kind: ConnEventKind::Disconnected,
                    remote: "127.0.0.1:40136".into(),
                    cause: "read error: Connection reset by peer".into(),
                },
            ],
        },
        ephemerals: vec!["/brokers/ids/2".into()],
        ephemerals_deleted: 1,
    }
}

#[test]
fn obit_shows_each_ended_session_with_its_evidence() {
    assert_eq!(
        render("obit", &sample()),
        "0x1000006e0220001 2026-11-25T01:12:37.000Z connection_lost\n\
         \treason: the connection ended\n\
         \tzxid: 0x2a\n\
         \tcreated: 2026-11-25T01:11:37.000Z\n\
         \ttimeout_ms: 6000 (requested 18000)\n\
         \tclient: 127.0.0.1:40136\n\
         \tmember: 2\n\
         \tsilent_ms: 6001\n\
         \tlast_request: setData\n\
         \tephemerals_deleted: 1 /brokers/ids/2\n\
         \tkafka_brokers: 2\n\
         \tconnection: 2026-11-25T01:11:37.000Z connected member 2 127.0.0.1:40136\n\
         \tconnection: 2026-11-25T01:12:30.999Z disconnected member 2 127.0.0.1:40136 \
         (read error: Connection reset by peer)\n"
    );
    // Nothing ended yet: nothing printed. It needs no quorum to be read.
    let none = AdminSnapshot {
        serving: false,
        ..AdminSnapshot::default()
    };
    assert_eq!(render("obit", &none), "");
}

impl ConnectionInfo {
    fn default_for_test() -> Self {
        ConnectionInfo {
            remote: addr("127.0.0.1:1"),
            interest_ops: 0,
            queued: 0,
            received: 0,
            sent: 0,
            session_id: 0,
            last_op: "NA".into(),
            established_ms: 0,
            timeout_ms: 0,
            last_cxid: -1,
            last_zxid: -1,
            last_response_ms: 0,
            last_latency_ms: 0,
            min_latency_ms: 0,
            avg_latency_ms: 0,
            max_latency_ms: 0,
        }
    }
}

#[test]
fn recognizes_known_words_only() {
    // ZooKeeper 3.8's words (FourLetterCommands), written out rather than taken from
    // FOUR_LETTER_WORDS, less `hash`.
    for k in [
        "conf", "cons", "crst", "dump", "envi", "gtmk", "ruok", "stmk", "srvr", "srst", "stat",
        "wchc", "wchp", "wchs", "dirs", "mntr", "isro", // corral's own.
        "obit",
    ] {
        let b = k.as_bytes();
        assert_eq!(recognize([b[0], b[1], b[2], b[3]]), Some(k));
    }
    assert_eq!(recognize([0xff, 0xf4, 0xff, 0xfd]), Some(TELNET_CLOSE));
    // A real frame length (a connect request is 45 bytes) is not a command.
    assert_eq!(recognize([0, 0, 0, 45]), None);
    assert_eq!(recognize(*b"RUOK"), None);
    assert_eq!(recognize(*b"kill"), None);
    // corral keeps no tree digest: `hash` is a frame length like any unknown word (too large,
    // so the connection closes without a byte, as ZooKeeper closes on an unknown word).
    assert_eq!(recognize(*b"hash"), None);
    assert_eq!(FOUR_LETTER_WORDS.len(), 18);
}

#[test]
fn trivial_words() {
    let s = sample();
    assert_eq!(render("ruok", &s), "imok");
    assert_eq!(render("isro", &s), "rw");
    assert_eq!(
        render(
            "isro",
            &AdminSnapshot {
                read_only: true,
                ..sample()
            }
        ),
        "ro"
    );
    assert_eq!(render("gtmk", &s), "306");
    assert_eq!(
        render(
            "stmk",
            &AdminSnapshot {
                trace_mask: 498,
                ..sample()
            }
        ),
        "498"
    );
    assert_eq!(render("crst", &s), "Connection stats reset.\n");
    assert_eq!(render("srst", &s), "Server stats reset.\n");
    assert_eq!(render(TELNET_CLOSE, &s), "");
    assert_eq!(
        not_whitelisted("envi"),
        "envi is not executed because it is not in the whitelist.\n"
    );
    assert!(needs_trace_mask("stmk") && !needs_trace_mask("gtmk"));
}

#[test]
fn srvr_matches_zookeeper() {
    assert_eq!(
        render("srvr", &sample()),
        "Zookeeper version: 3.8.0-corral-0.1.0, built on unknown\n\
         Latency min/avg/max: 0/0.7778/4\n\
         Received: 20\n\
         Sent: 23\n\
         Connections: 2\n\
         Outstanding: 0\n\
         Zxid: 0x7\n\
         Mode: standalone\n\
         Node count: 8\n"
    );
    let idle = AdminSnapshot {
        latency_avg_ms: 0.0,
        ..sample()
    };
    assert!(render("srvr", &idle).contains("Latency min/avg/max: 0/0.0/4\n"));
    let leader = AdminSnapshot {
        proposal_sizes: Some((-1, -1, -1)),
        ..sample()
    };
    assert!(
        render("srvr", &leader).ends_with("Node count: 8\nProposal sizes last/min/max: -1/-1/-1\n")
    );
}

#[test]
fn stat_lists_clients_briefly() {
    let text = render("stat", &sample());
    assert!(text.starts_with(
        "Zookeeper version: 3.8.0-corral-0.1.0, built on unknown\n\
         Clients:\n \
         /127.0.0.1:40136[1](queued=0,recved=8,sent=8)\n \
         /127.0.0.1:40178[0](queued=0,recved=1,sent=0)\n\
         \n\
         Latency min/avg/max: 0/0.7778/4\n"
    ));
    assert!(text.ends_with("Mode: standalone\nNode count: 8\n"));
}

#[test]
fn cons_matches_zookeeper() {
    assert_eq!(
        render("cons", &sample()),
        " /127.0.0.1:40136[1](queued=0,recved=8,sent=8,sid=0x1000006e0220001,lop=EXIS,est=1795569147025,\
         to=10000,lcxid=0x7,lzxid=0x7,lresp=475985,llat=1,minlat=0,avglat=0,maxlat=1)\n \
         /127.0.0.1:40178[0](queued=0,recved=1,sent=0)\n\n"
    );
    // Right after crst: no cxid yet (omitted) and no zxid (-1 in two's complement).
    let fresh = ConnectionInfo {
        session_id: 0x100000a352d0000,
        interest_ops: 1,
        remote: addr("127.0.0.1:52812"),
        established_ms: 1_795_569_356_540,
        timeout_ms: 10000,
        ..ConnectionInfo::default_for_test()
    };
    let s = AdminSnapshot {
        connections: vec![fresh],
        ..sample()
    };
    assert_eq!(
        render("cons", &s),
        " /127.0.0.1:52812[1](queued=0,recved=0,sent=0,sid=0x100000a352d0000,lop=NA,est=1795569356540,\
         to=10000,lzxid=0xffffffffffffffff,lresp=0,llat=0,minlat=0,avglat=0,maxlat=0)\n\n"
    );
}

#[test]
fn dump_matches_zookeeper() {
    assert_eq!(
        render("dump", &sample()),
        "SessionTracker dump:\n\
         Session Sets (1)/(1):\n\
         1 expire at Wed Nov 25 01:12:37 UTC 2026:\n\
         \t0x1000006e0220001\n\
         ephemeral nodes dump:\n\
         Sessions with Ephemerals (1):\n\
         0x1000006e0220001:\n\
         \t/eph\n\
         Connections dump:\n\
         Connections Sets (1)/(2):\n\
         2 expire at Wed Nov 25 01:12:41 UTC 2026:\n\
         \tip: /127.0.0.1:40218 sessionId: 0x0\n\
         \tip: /127.0.0.1:40136 sessionId: 0x1000006e0220001\n"
    );
}

#[test]
fn watch_words_match_zookeeper() {
    let s = sample();
    assert_eq!(
        render("wchs", &s),
        "1 connections watching 3 paths\nTotal watches:3\n"
    );
    assert_eq!(
        render("wchc", &s),
        "0x1000006e0220001\n\t/nonexist\n\t/w1\n\t/w2\n\n"
    );
    assert_eq!(
        render("wchp", &s),
        "/nonexist\n\t0x1000006e0220001\n/w1\n\t0x1000006e0220001\n/w2\n\t0x1000006e0220001\n\n"
    );
    let none = AdminSnapshot {
        data_watches: vec![],
        data_watch_summary: WatchSummary::default(),
        ..sample()
    };
    assert_eq!(
        render("wchs", &none),
        "0 connections watching 0 paths\nTotal watches:0\n"
    );
    assert_eq!(render("wchc", &none), "\n");
    assert_eq!(render("wchp", &none), "\n");
}

#[test]
fn envi_has_the_version_line_kazoo_parses() {
    let text = render("envi", &sample());
    assert!(
        text.starts_with("Environment:\nzookeeper.version=3.8.0-corral-0.1.0, built on unknown\n")
    );
    assert!(text.ends_with("host.name=localhost\nuser.dir=/work\n"));
    assert!(full_version().starts_with("3.8.0-corral-"));
    let env = environment();
    assert!(env.iter().any(|(k, _)| k == "user.dir"));
}

#[test]
fn conf_and_dirs() {
    let s = sample();
    assert_eq!(render("conf", &s), "clientPort=38081\ntickTime=2000\n");
    assert_eq!(
        render("dirs", &s),
        "datadir_size: 67109337\nlogdir_size: 67109337\n"
    );
}

#[test]
fn mntr_is_tab_separated_in_zookeeper_order() {
    let mut s = sample();
    s.metrics = vec![
        ("zk_stale_sessions_expired".into(), "2".into()),
        ("zk_synced_followers".into(), "0".into()),
    ];
    let text = render("mntr", &s);
    let lines: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('\t')).collect();
    assert_eq!(
        lines.len(),
        text.lines().count(),
        "every line is key<TAB>value"
    );
    assert_eq!(
        lines[0],
        ("zk_version", "3.8.0-corral-0.1.0, built on unknown")
    );
    assert_eq!(lines[1], ("zk_server_state", "standalone"));
    let get = |k: &str| lines.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    assert_eq!(get("zk_znode_count"), Some("8"));
    assert_eq!(get("zk_watch_count"), Some("4"));
    assert_eq!(get("zk_ephemerals_count"), Some("1"));
    assert_eq!(get("zk_approximate_data_size"), Some("57"));
    assert_eq!(get("zk_num_alive_connections"), Some("2"));
    assert_eq!(get("zk_outstanding_requests"), Some("0"));
    assert_eq!(get("zk_avg_latency"), Some("0.7778"));
    assert_eq!(get("zk_open_file_descriptor_count"), Some("43"));
    assert_eq!(get("zk_last_client_response_size"), Some("-1"));
    assert_eq!(get("zk_stale_sessions_expired"), Some("2"));
    assert_eq!(lines.last(), Some(&("zk_synced_followers", "0")));
    let no_fd = AdminSnapshot {
        open_file_descriptors: None,
        max_file_descriptors: None,
        ..sample()
    };
    assert!(!render("mntr", &no_fd).contains("file_descriptor"));
}

#[test]
fn not_serving() {
    let s = AdminSnapshot {
        serving: false,
        ..sample()
    };
    for cmd in [
        "srvr", "stat", "cons", "mntr", "dump", "wchs", "conf", "crst", "srst", "dirs",
    ] {
        assert_eq!(render(cmd, &s), format!("{NOT_SERVING}\n"), "{cmd}");
    }
    assert_eq!(render("isro", &s), "null");
    assert_eq!(render("ruok", &s), "imok");
}

#[test]
fn java_formats() {
    assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
    assert_eq!(java_date(951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
    assert_eq!(java_date(951_827_696_000), "Tue Feb 29 12:34:56 UTC 2000");
    assert_eq!(java_date(1_700_000_000_123), "Tue Nov 14 22:13:20 UTC 2023");
    assert_eq!(java_date(-1000), "Wed Dec 31 23:59:59 UTC 1969");
    assert_eq!(java_double(0.0), "0.0");
    assert_eq!(java_double(12.0), "12.0");
    assert_eq!(java_double(round4(1.0 / 3.0)), "0.3333");
    assert_eq!(java_addr(&addr("[::1]:80")), "/[0:0:0:0:0:0:0:1]:80");
}

#[test]
fn stmk_sets_the_mask_gtmk_reads_and_health_words_need_no_state() {
    let keeper = Shared::new(Config::default());
    let mask: i64 = 0x1f2;
    assert_eq!(
        four_letter_reply(&keeper, "stmk", Some(mask.to_be_bytes())),
        "498"
    );
    assert_eq!(four_letter_reply(&keeper, "gtmk", None), "498");
    // Without consensus: isro says null (ruok is kept from clients by the accept loop,
    // which starts only once recovery is done).
    assert_eq!(four_letter_reply(&keeper, "ruok", None), "imok");
    assert_eq!(four_letter_reply(&keeper, "isro", None), "null");
    words::set_trace_mask(DEFAULT_TRACE_MASK);
}

/// `snap` with every part `needs` does not ask for left at its default, as `gather` leaves it.
fn only(snap: &AdminSnapshot, needs: Needs) -> AdminSnapshot {
    let d = AdminSnapshot::default();
    let s = snap.clone();
    let pick = |want: bool, have, default| if want { have } else { default };
    AdminSnapshot {
        // Always filled.
        version: s.version,
        serving: s.serving,
        server_state: s.server_state,
        read_only: s.read_only,
        trace_mask: s.trace_mask,
        proposal_sizes: s.proposal_sizes,
        latency_min_ms: pick(needs.counters, s.latency_min_ms, d.latency_min_ms),
        latency_avg_ms: if needs.counters {
            s.latency_avg_ms
        } else {
            d.latency_avg_ms
        },
        latency_max_ms: pick(needs.counters, s.latency_max_ms, d.latency_max_ms),
        packets_received: pick(needs.counters, s.packets_received, d.packets_received),
        packets_sent: pick(needs.counters, s.packets_sent, d.packets_sent),
        num_alive_connections: pick(
            needs.counters,
            s.num_alive_connections,
            d.num_alive_connections,
        ),
        outstanding_requests: pick(
            needs.counters,
            s.outstanding_requests,
            d.outstanding_requests,
        ),
        zxid: if needs.tree { s.zxid } else { d.zxid },
        node_count: pick(needs.tree, s.node_count, d.node_count),
        approximate_data_size: pick(
            needs.monitor,
            s.approximate_data_size,
            d.approximate_data_size,
        ),
        ephemerals_count: pick(needs.monitor, s.ephemerals_count, d.ephemerals_count),
        watch_count: pick(needs.monitor, s.watch_count, d.watch_count),
        global_sessions: pick(needs.monitor, s.global_sessions, d.global_sessions),
        local_sessions: pick(needs.monitor, s.local_sessions, d.local_sessions),
        uptime_ms: pick(needs.monitor, s.uptime_ms, d.uptime_ms),
        open_file_descriptors: if needs.monitor {
            s.open_file_descriptors
        } else {
            None
        },
        max_file_descriptors: if needs.monitor {
            s.max_file_descriptors
        } else {
            None
        },
        metrics: if needs.monitor { s.metrics } else { d.metrics },
        obituaries: if needs.obituaries {
            s.obituaries
        } else {
            d.obituaries
        },
        connections: if needs.connections {
            s.connections
        } else {
            d.connections
        },
        data_watch_summary: if needs.watch_summary {
            s.data_watch_summary
        } else {
            d.data_watch_summary
        },
        data_watches: if needs.data_watches {
            s.data_watches
        } else {
            d.data_watches
        },
        session_expiry: if needs.dump {
            s.session_expiry
        } else {
            d.session_expiry
        },
        connection_expiry: if needs.dump {
            s.connection_expiry
        } else {
            d.connection_expiry
        },
        ephemerals: if needs.dump {
            s.ephemerals
        } else {
            d.ephemerals
        },
        data_dir_size: pick(needs.dir_sizes, s.data_dir_size, d.data_dir_size),
        log_dir_size: pick(needs.dir_sizes, s.log_dir_size, d.log_dir_size),
        config_lines: if needs.config {
            s.config_lines
        } else {
            d.config_lines
        },
        environment: if needs.environment {
            s.environment
        } else {
            d.environment
        },
    }
}

#[test]
fn every_word_prints_the_same_from_its_needs_alone() {
    let full = sample();
    for word in FOUR_LETTER_WORDS.iter().copied().chain([TELNET_CLOSE]) {
        assert_eq!(
            render(word, &only(&full, Needs::of(word))),
            render(word, &full),
            "{word} prints something its needs leave out"
        );
    }
    // The check has teeth: a word that lost a need prints differently.
    let srvr_without_tree = Needs {
        tree: false,
        ..Needs::of("srvr")
    };
    assert_ne!(
        render("srvr", &only(&full, srvr_without_tree)),
        render("srvr", &full)
    );
}

#[test]
fn mntr_srvr_and_stat_gather_no_list_of_paths() {
    for word in ["mntr", "srvr", "stat"] {
        let needs = Needs::of(word);
        assert!(
            !needs.data_watches && !needs.watch_summary && !needs.dump,
            "{word}: {needs:?}"
        );
    }
    // srvr and stat print no count that needs a pass over sessions or connections.
    assert!(!Needs::of("srvr").monitor && !Needs::of("stat").monitor);
    assert!(!Needs::of("srvr").connections && !Needs::of("mntr").connections);
    // The health words and the ones that act gather nothing.
    for word in ["ruok", "isro", "gtmk", "stmk", "crst", "srst", TELNET_CLOSE] {
        assert_eq!(Needs::of(word), Needs::default(), "{word}");
    }
}
