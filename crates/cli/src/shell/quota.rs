//! The text zkCli 3.8 keeps in `/zookeeper/quota/<path>/zookeeper_limits` and
//! `zookeeper_stats` (Java's StatsTrack): `count=N,bytes=N`, and when hard limits are set,
//! `count=N,bytes=N=;byteHardLimit=N;countHardLimit=N` (the extra `=` makes old readers skip
//! the new keys). Only the text: reading and writing the nodes is the shell's.

use std::collections::BTreeMap;

pub const QUOTA_ROOT: &str = "/zookeeper/quota";
pub const LIMIT_NODE: &str = "zookeeper_limits";
pub const STAT_NODE: &str = "zookeeper_stats";

pub fn limit_path(path: &str) -> String {
    format!("{QUOTA_ROOT}{path}/{LIMIT_NODE}")
}

pub fn stat_path(path: &str) -> String {
    format!("{QUOTA_ROOT}{path}/{STAT_NODE}")
}

/// Keys and values of one limits or stats node; a missing key reads as -1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsTrack(BTreeMap<String, i64>);

impl StatsTrack {
    pub fn parse(text: &str) -> Result<StatsTrack, String> {
        let mut map = BTreeMap::new();
        for pair in text.split([',', ';']).filter(|p| !p.is_empty()) {
            let mut kv = pair.split('=');
            let key = kv.next().unwrap_or_default();
            let value = kv.next().unwrap_or_default();
            let n = if value.is_empty() {
                -1
            } else {
                value
                    .parse()
                    .map_err(|_| format!("For input string: \"{value}\""))?
            };
            map.insert(key.to_string(), n);
        }
        Ok(StatsTrack(map))
    }

    pub fn get(&self, key: &str) -> i64 {
        self.0.get(key).copied().unwrap_or(-1)
    }

    pub fn set(&mut self, key: &str, value: i64) {
        self.0.insert(key.to_string(), value);
    }
}

/// The option letter of setquota/delquota to its key.
pub fn key_of(option: char) -> &'static str {
    match option {
        'n' => "count",
        'b' => "bytes",
        'N' => "countHardLimit",
        _ => "byteHardLimit",
    }
}

impl std::fmt::Display for StatsTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "count={},bytes={}", self.get("count"), self.get("bytes"))?;
        let rest: Vec<_> = self
            .0
            .iter()
            .filter(|(k, _)| *k != "count" && *k != "bytes")
            .collect();
        if !rest.is_empty() {
            write!(f, "=")?;
            // BTreeMap order is Java's sorted order for these ASCII keys.
            for (k, v) in rest {
                write!(f, ";{k}={v}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_zkcli_writes_them() {
        let mut q = StatsTrack::default();
        for k in ["count", "bytes", "countHardLimit", "byteHardLimit"] {
            q.set(k, -1);
        }
        q.set("count", 5);
        assert_eq!(
            q.to_string(),
            "count=5,bytes=-1=;byteHardLimit=-1;countHardLimit=-1"
        );
        let mut s = StatsTrack::default();
        s.set("count", 0);
        s.set("bytes", 0);
        assert_eq!(s.to_string(), "count=0,bytes=0");
        assert_eq!(StatsTrack::default().to_string(), "count=-1,bytes=-1");
    }

    #[test]
    fn parses_old_and_new_forms() {
        let t = StatsTrack::parse("count=5,bytes=10=;byteHardLimit=-1;countHardLimit=7")
            .expect("new form");
        assert_eq!(
            (t.get("count"), t.get("bytes"), t.get("countHardLimit")),
            (5, 10, 7)
        );
        assert_eq!(
            t.to_string(),
            "count=5,bytes=10=;byteHardLimit=-1;countHardLimit=7"
        );
        let t = StatsTrack::parse("count=2,bytes=").expect("empty value");
        assert_eq!((t.get("count"), t.get("bytes")), (2, -1));
        assert!(StatsTrack::parse("count=x").is_err());
        assert_eq!(limit_path("/a/b"), "/zookeeper/quota/a/b/zookeeper_limits");
        assert_eq!(stat_path("/a"), "/zookeeper/quota/a/zookeeper_stats");
    }
}
