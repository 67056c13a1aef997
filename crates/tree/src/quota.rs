//! Quotas as ZooKeeper 3.8 keeps them: the text format of the `zookeeper_limits` and
//! `zookeeper_stats` nodes under `/zookeeper/quota/<path>`, the mapping from a limits node to
//! the path it limits, and the warnings a write over a limit produces.
//!
//! Owns only the formats and the arithmetic; which node changes when is the tree's business
//! (`tree.rs`). Pure: a warning is a value the keeper logs, never a log line written here.

use std::collections::BTreeMap;
use std::fmt;

/// The parent of every quota node (Quotas.quotaZookeeper).
pub const QUOTA_ROOT: &str = "/zookeeper/quota";
/// Name of the node holding the limits (Quotas.limitNode).
pub const LIMIT_NODE: &str = "zookeeper_limits";
/// Name of the node holding the live count and bytes (Quotas.statNode).
pub const STAT_NODE: &str = "zookeeper_stats";

const COUNT: &str = "count";
const BYTES: &str = "bytes";
const COUNT_HARD: &str = "countHardLimit";
const BYTES_HARD: &str = "byteHardLimit";

/// The data of a limits or stats node, ZooKeeper's StatsTrack: `key=value` pairs, a missing
/// key reading as -1. Written as `count=C,bytes=B`, then, if there are other keys, `=` and
/// `;key=value` for each in key order (the extra `=` keeps pre-3.7 parsers reading only
/// count and bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatsTrack {
    values: BTreeMap<String, i64>,
}

/// Data a StatsTrack cannot be read from (ZooKeeper throws on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unparseable;

impl StatsTrack {
    /// Parses as ZooKeeper does: pairs split at runs of `,` and `;`, each pair split at `=`
    /// (Java's `String.split`, which drops trailing empty pieces), the second piece a decimal
    /// long, an empty second piece -1. A pair without a second piece, or a value that is not a
    /// number, is an error. Empty data is no keys at all.
    pub fn parse(data: &[u8]) -> Result<StatsTrack, Unparseable> {
        let text = String::from_utf8_lossy(data);
        let mut values = BTreeMap::new();
        if text.is_empty() {
            return Ok(StatsTrack { values });
        }
        for pair in java_split(&text, |c| c == ',' || c == ';', true) {
            let kv = java_split(pair, |c| c == '=', false);
            let (Some(key), Some(value)) = (kv.first(), kv.get(1)) else {
                return Err(Unparseable);
            };
            let value = if value.is_empty() {
                -1
            } else {
                parse_java_long(value)?
            };
            values.insert((*key).to_string(), value);
        }
        Ok(StatsTrack { values })
    }

    /// What a new stats node is given: `count=C,bytes=B`.
    pub fn counts(count: i64, bytes: i64) -> StatsTrack {
        let mut t = StatsTrack::default();
        t.values.insert(COUNT.into(), count);
        t.values.insert(BYTES.into(), bytes);
        t
    }

    fn get(&self, key: &str) -> i64 {
        self.values.get(key).copied().unwrap_or(-1)
    }

    pub fn count(&self) -> i64 {
        self.get(COUNT)
    }
    pub fn bytes(&self) -> i64 {
        self.get(BYTES)
    }
    pub fn count_hard_limit(&self) -> i64 {
        self.get(COUNT_HARD)
    }
    pub fn byte_hard_limit(&self) -> i64 {
        self.get(BYTES_HARD)
    }

    /// Adds to count and bytes (Java long arithmetic: it wraps).
    pub fn add(&mut self, count: i64, bytes: i64) {
        let c = self.count().wrapping_add(count);
        let b = self.bytes().wrapping_add(bytes);
        self.values.insert(COUNT.into(), c);
        self.values.insert(BYTES.into(), b);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{COUNT}={},{BYTES}={}", self.count(), self.bytes());
        let mut extra = self
            .values
            .iter()
            .filter(|(k, _)| k.as_str() != COUNT && k.as_str() != BYTES)
            .peekable();
        if extra.peek().is_some() {
            out.push('=');
            for (k, v) in extra {
                out.push_str(&format!(";{k}={v}"));
            }
        }
        out.into_bytes()
    }
}

/// Java's `String.split` with a limit of 0: a leading empty piece is kept, trailing empty
/// pieces are dropped. With `runs`, a run of separators counts as one (the regex `[,;]+`).
fn java_split(s: &str, sep: impl Fn(char) -> bool, runs: bool) -> Vec<&str> {
    let mut pieces: Vec<&str> = Vec::new();
    for (i, piece) in s.split(&sep).enumerate() {
        // Inside a run, the pieces between two separators are empty: the regex never sees
        // them. Only a leading empty piece survives.
        if runs && i > 0 && piece.is_empty() {
            continue;
        }
        pieces.push(piece);
    }
    while pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    pieces
}

/// `Long.parseLong` for ASCII input: an optional sign, then decimal digits, in range.
fn parse_java_long(s: &str) -> Result<i64, Unparseable> {
    s.parse::<i64>().map_err(|_| Unparseable)
}

/// The path a quota node under `/zookeeper/quota` stands for, when `node` is named `name` and
/// its parent is `parent`: ZooKeeper cuts `/zookeeper/quota` off the parent's path and keeps
/// the non-blank components (its PathTrie). `None` when the parent is not under the quota root
/// or nothing is left.
pub fn limited_path(parent: &str) -> Option<String> {
    let rest = parent.strip_prefix(QUOTA_ROOT)?;
    let key = trie_key(rest);
    (key != "/").then_some(key)
}

/// A path as ZooKeeper's PathTrie sees it: its components without the blank ones, joined
/// under "/".
pub fn trie_key(p: &str) -> String {
    let mut key = String::with_capacity(p.len() + 1);
    for c in trie_components(p) {
        key.push('/');
        key.push_str(c);
    }
    if key.is_empty() {
        key.push('/');
    }
    key
}

/// Components of `p` that are not blank (Java's `trim()` removes every char up to ' ').
pub fn trie_components(p: &str) -> impl Iterator<Item = &str> {
    p.split('/').filter(|c| !c.chars().all(|ch| ch <= ' '))
}

/// `/zookeeper/quota<prefix>/zookeeper_limits`.
pub fn limit_path(prefix: &str) -> String {
    format!("{QUOTA_ROOT}{prefix}/{LIMIT_NODE}")
}

/// `/zookeeper/quota<prefix>/zookeeper_stats`.
pub fn stat_path(prefix: &str) -> String {
    format!("{QUOTA_ROOT}{prefix}/{STAT_NODE}")
}

/// Which limit a write went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Count,
    Bytes,
}

/// Something about quotas the operator should hear of; `apply` returns these and the keeper
/// logs them (ZooKeeper logs them itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaWarning {
    /// A write takes the subtree at `prefix` over a limit. A soft limit only warns; a hard
    /// one refuses the write when quotas are enforced, and only warns when they are not.
    Exceeded {
        prefix: String,
        limit: Limit,
        /// The count or bytes the write would leave.
        current: i64,
        max: i64,
        hard: bool,
        /// The write was refused (hard limit, enforceQuota on).
        refused: bool,
    },
    /// A quota's stats node is missing: the write was not counted.
    MissingStats { path: String },
    /// A quota's stats node holds data that is not `count=N,bytes=N`: it was left alone.
    UnreadableStats { path: String, data: String },
    /// A quota's limits node holds data that is not `count=N,bytes=N`: with enforcement, the
    /// write was refused (MarshallingError), as ZooKeeper refuses it.
    UnreadableLimits { path: String, data: String },
}

impl fmt::Display for QuotaWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // ZooKeeper's wording (ZooKeeperServer.checkQuota).
            QuotaWarning::Exceeded {
                prefix,
                limit,
                current,
                max,
                hard,
                refused,
            } => {
                let kind = if *hard { "hard" } else { "soft" };
                let (what, name) = match limit {
                    Limit::Count => ("count", "CountLimit"),
                    Limit::Bytes => ("bytes", "ByteLimit"),
                };
                write!(
                    f,
                    "Quota exceeded: {prefix} [current {what}={current}, {kind}{name}={max}]"
                )?;
                if *hard && !refused {
                    write!(f, " (not enforced: enforceQuota is off)")?;
                }
                Ok(())
            }
            QuotaWarning::MissingStats { path } => write!(f, "Missing node for stat {path}"),
            QuotaWarning::UnreadableStats { path, data } => write!(
                f,
                "Quota stats node {path} holds {data:?}, not count=N,bytes=N: not updated"
            ),
            QuotaWarning::UnreadableLimits { path, data } => write!(
                f,
                "Quota limits node {path} holds {data:?}, not count=N,bytes=N: write refused"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<StatsTrack, Unparseable> {
        StatsTrack::parse(s.as_bytes())
    }

    #[test]
    fn formats_as_zookeeper() {
        assert_eq!(StatsTrack::counts(3, 7).to_bytes(), b"count=3,bytes=7");
        // zkCli 3.8's setquota -n 4 -b 20.
        let limits = "count=4,bytes=20=;byteHardLimit=-1;countHardLimit=-1";
        let t = parse(limits).unwrap();
        assert_eq!((t.count(), t.bytes()), (4, 20));
        assert_eq!((t.count_hard_limit(), t.byte_hard_limit()), (-1, -1));
        assert_eq!(t.to_bytes(), limits.as_bytes());
        // Unknown keys are kept, sorted (observed on ZooKeeper 3.8).
        let mut t = parse("count=1,bytes=2=;zz=5;aa=-1").unwrap();
        t.add(1, 5);
        assert_eq!(t.to_bytes(), b"count=2,bytes=7=;aa=-1;zz=5");
        // Missing count or bytes read as -1.
        let mut t = parse("").unwrap();
        assert_eq!(t.to_bytes(), b"count=-1,bytes=-1");
        t.add(1, 1);
        assert_eq!(t.to_bytes(), b"count=0,bytes=0");
    }

    #[test]
    fn parses_as_java_split_does() {
        assert_eq!(parse("count==5").unwrap().count(), -1);
        assert_eq!(parse("count=5=").unwrap().count(), 5);
        assert_eq!(parse("count=+5;;,bytes=-3,,").unwrap().bytes(), -3);
        assert_eq!(parse(",count=1"), Err(Unparseable));
        assert_eq!(parse("count="), Err(Unparseable));
        assert_eq!(parse("count"), Err(Unparseable));
        assert_eq!(parse("="), Err(Unparseable));
        assert_eq!(parse("count=x"), Err(Unparseable));
        assert_eq!(parse("count= 1"), Err(Unparseable));
        assert_eq!(parse("count=99999999999999999999"), Err(Unparseable));
        // Only separators: no pairs at all.
        assert_eq!(parse(",;,").unwrap(), StatsTrack::default());
    }

    #[test]
    fn maps_quota_nodes_to_paths() {
        assert_eq!(
            limited_path("/zookeeper/quota/a/b").as_deref(),
            Some("/a/b")
        );
        assert_eq!(limited_path("/zookeeper/quota"), None);
        assert_eq!(limited_path("/zookeeper/quota/ /a").as_deref(), Some("/a"));
        // ZooKeeper only cuts the prefix off, so this one limits /X/a.
        assert_eq!(limited_path("/zookeeper/quotaX/a").as_deref(), Some("/X/a"));
        assert_eq!(limited_path("/zookeeper/other"), None);
        assert_eq!(trie_key("/"), "/");
        assert_eq!(stat_path("/a"), "/zookeeper/quota/a/zookeeper_stats");
        assert_eq!(limit_path("/a"), "/zookeeper/quota/a/zookeeper_limits");
    }

    #[test]
    fn warnings_read_like_zookeeper() {
        let w = QuotaWarning::Exceeded {
            prefix: "/a".into(),
            limit: Limit::Count,
            current: 3,
            max: 2,
            hard: false,
            refused: false,
        };
        assert_eq!(
            w.to_string(),
            "Quota exceeded: /a [current count=3, softCountLimit=2]"
        );
        let w = QuotaWarning::Exceeded {
            prefix: "/a".into(),
            limit: Limit::Bytes,
            current: 30,
            max: 20,
            hard: true,
            refused: true,
        };
        assert_eq!(
            w.to_string(),
            "Quota exceeded: /a [current bytes=30, hardByteLimit=20]"
        );
    }
}
