//! What the four-letter words print, as plain data: [`AdminSnapshot`], and which parts of it
//! each word needs ([`Needs`]).
//!
//! Owns the shape of the data between the keeper's live state and the text, and the table of
//! what each word reads. The table must agree with [`super::render`]: a word rendered from a
//! snapshot holding only its needs prints what it prints from a full one (the tests check that
//! for every word). Must never: read live state or the clock (that is [`super::gather`]'s
//! job), or format text.

use std::net::SocketAddr;

use corral_tree::obituary::Obituary;

/// One client connection as `cons` and `stat` show it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConnectionInfo {
    pub remote: SocketAddr,
    /// The selector interest set (1 = reading); ZooKeeper shows 0 for a connection that is
    /// not reading, e.g. the one asking the four-letter word.
    pub interest_ops: u32,
    pub queued: u64,
    pub received: u64,
    pub sent: u64,
    /// 0 until the handshake; session details are shown only when non-zero.
    pub session_id: i64,
    /// ZooKeeper's abbreviation of the last request ([`corral_proto::OpCode::short_name`]),
    /// "NA" before the first.
    pub last_op: String,
    /// Wall-clock ms since the epoch.
    pub established_ms: i64,
    pub timeout_ms: i32,
    /// Negative = none yet (omitted from the output).
    pub last_cxid: i64,
    /// -1 = none yet (shown as 0xffffffffffffffff, like ZooKeeper).
    pub last_zxid: i64,
    /// Monotonic ms (ZooKeeper uses its elapsed-time clock here); 0 = none yet.
    pub last_response_ms: i64,
    pub last_latency_ms: u64,
    pub min_latency_ms: u64,
    pub avg_latency_ms: u64,
    pub max_latency_ms: u64,
}

/// Sessions (or connections) that expire at the same instant, as `dump` groups them.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ExpirySet<T> {
    /// Wall-clock ms since the epoch.
    pub expire_at_ms: i64,
    pub members: Vec<T>,
}

/// `wchs`: the data watches counted, without listing them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct WatchSummary {
    /// Sessions holding at least one data watch.
    pub sessions: u64,
    /// Distinct paths with a data watch.
    pub paths: u64,
    /// Data watches, one per (session, path).
    pub watches: u64,
}

impl WatchSummary {
    /// Counts data watches given as (session, path), one per watch (what the keeper counts
    /// from the watch registry's tables).
    #[cfg(test)]
    pub(crate) fn of<'a>(watches: impl Iterator<Item = (i64, &'a str)>) -> WatchSummary {
        use std::collections::HashSet;
        let mut sessions = HashSet::new();
        let mut paths = HashSet::new();
        let mut count = 0u64;
        for (session, path) in watches {
            sessions.insert(session);
            paths.insert(path);
            count += 1;
        }
        WatchSummary {
            sessions: sessions.len() as u64,
            paths: paths.len() as u64,
            watches: count,
        }
    }
}

/// Everything the four-letter words show, filled by [`super::gather`] at the moment of the
/// request, and only as far as the word's [`Needs`] ask: what a word does not print is left at
/// its default.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct AdminSnapshot {
    /// [`super::gather::full_version`] normally.
    pub version: String,
    /// False while the server cannot serve (starting, no quorum): most commands then print
    /// [`super::render::NOT_SERVING`].
    pub serving: bool,
    /// "standalone", "leader", "follower", "observer" or "read-only".
    pub server_state: String,
    pub read_only: bool,
    pub zxid: i64,
    pub node_count: u64,
    pub latency_min_ms: u64,
    pub latency_avg_ms: f64,
    pub latency_max_ms: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
    /// Includes the connection asking, as in ZooKeeper.
    pub num_alive_connections: u64,
    pub outstanding_requests: u64,
    /// Leader only: last/min/max proposal size in bytes (`stat`/`srvr` print it for a leader).
    pub proposal_sizes: Option<(i64, i64, i64)>,
    pub connections: Vec<ConnectionInfo>,
    /// (session id, path) for every data/exist watch; `wchc` and `wchp` list these only
    /// (ZooKeeper leaves child watches out of them).
    pub data_watches: Vec<(i64, String)>,
    /// The same watches counted, for `wchs`.
    pub data_watch_summary: WatchSummary,
    /// All watches, child watches included (`zk_watch_count`).
    pub watch_count: u64,
    pub session_expiry: Vec<ExpirySet<i64>>,
    /// (remote address, session id or 0).
    pub connection_expiry: Vec<ExpirySet<(SocketAddr, i64)>>,
    /// Session id and its ephemeral paths.
    pub ephemerals: Vec<(i64, Vec<String>)>,
    pub ephemerals_count: u64,
    pub approximate_data_size: u64,
    pub global_sessions: u64,
    pub local_sessions: u64,
    pub data_dir_size: u64,
    pub log_dir_size: u64,
    /// `envi` lines after the version; see [`super::gather::environment`].
    pub environment: Vec<(String, String)>,
    /// `conf` lines, from `Config::conf_lines`.
    pub config_lines: Vec<(String, String)>,
    pub open_file_descriptors: Option<u64>,
    pub max_file_descriptors: Option<u64>,
    pub uptime_ms: u64,
    /// The current (for `stmk`: the newly set) trace mask.
    pub trace_mask: i64,
    /// Extra `mntr` values: a name ZooKeeper prints anyway replaces its default value, any other
    /// name is appended (e.g. leader-only `zk_synced_followers`, corral's own counters).
    pub metrics: Vec<(String, String)>,
    /// `obit`: the obituaries the tree keeps, oldest first.
    pub obituaries: Vec<Obituary>,
}

/// What a word's reply is built from. Each part is gathered only when the word prints it, so
/// a health probe or a monitoring scrape never copies the watch table or the ephemerals.
/// Always filled, whatever the needs: the version, whether the keeper serves, the mode and the
/// trace mask (each a load or a constant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Needs {
    /// Server-wide counters (atomics) and the number of open connections: latency, packets,
    /// outstanding requests.
    pub counters: bool,
    /// The tree's zxid and node count, read in one short hold of the state lock.
    pub tree: bool,
    /// `mntr`'s other figures: data size and the counts of ephemerals, watches and sessions
    /// (a pass over sessions and connections, never over paths), the session tracker's and
    /// the storage's counters, file descriptors, uptime, corral's own metrics.
    pub monitor: bool,
    /// One [`ConnectionInfo`] per connection.
    pub connections: bool,
    /// [`WatchSummary`]: counted under the state lock without reading a path.
    pub watch_summary: bool,
    /// Every data watch as (session, path): copies every watched path.
    pub data_watches: bool,
    /// Every ephemeral path by session, and the sessions by expiry time: copies every
    /// ephemeral path.
    pub dump: bool,
    /// The sizes of the snapshot and log directories.
    pub dir_sizes: bool,
    /// The configuration's lines.
    pub config: bool,
    /// The environment's lines.
    pub environment: bool,
    /// The obituaries, copied out of the tree.
    pub obituaries: bool,
}

impl Needs {
    /// What `word` prints. Unknown words, the health words (`ruok`, `isro`) and the ones that
    /// act (`crst`, `srst`, `stmk`, `gtmk`) need nothing beyond what is always filled.
    pub(crate) fn of(word: &str) -> Needs {
        let none = Needs::default();
        match word {
            "srvr" => Needs {
                counters: true,
                tree: true,
                ..none
            },
            "stat" => Needs {
                counters: true,
                tree: true,
                connections: true,
                ..none
            },
            "mntr" => Needs {
                counters: true,
                tree: true,
                monitor: true,
                ..none
            },
            "cons" => Needs {
                connections: true,
                ..none
            },
            "dump" => Needs { dump: true, ..none },
            "wchs" => Needs {
                watch_summary: true,
                ..none
            },
            "wchc" | "wchp" => Needs {
                data_watches: true,
                ..none
            },
            "dirs" => Needs {
                dir_sizes: true,
                ..none
            },
            "conf" => Needs {
                dir_sizes: true,
                config: true,
                ..none
            },
            "envi" => Needs {
                environment: true,
                ..none
            },
            "obit" => Needs {
                obituaries: true,
                ..none
            },
            _ => none,
        }
    }
}
