//! ZooKeeper's quotas as its restore keeps them: every `zookeeper_limits` node under
//! /zookeeper/quota marks a path as having a quota, and that path's `zookeeper_stats` node
//! holds the count and bytes of its subtree, recomputed on load and moved by each replayed
//! create, delete and setData. Owns the quota paths and the stat text; must not decide
//! whether a transaction applies (the replay does).

use std::collections::BTreeMap;

use super::ZkTree;

pub(super) const QUOTA_ROOT: &str = "/zookeeper/quota";
pub(super) const LIMIT_NODE: &str = "zookeeper_limits";
pub(super) const STAT_NODE: &str = "zookeeper_stats";

/// "/a//b/" -> "/a/b", as ZooKeeper's PathTrie splits paths.
pub(super) fn normalise(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.trim().is_empty()).collect();
    format!("/{}", parts.join("/"))
}

impl ZkTree {
    /// ZooKeeper's setupQuota: every `zookeeper_limits` leaf under /zookeeper/quota marks its
    /// path as having a quota, and that path's stat node is recomputed from the tree.
    pub(super) fn setup_quotas(&mut self) {
        let limits: Vec<String> = self
            .subtree(QUOTA_ROOT)
            .filter(|p| p.ends_with(&format!("/{LIMIT_NODE}")) && !self.has_children(p))
            .cloned()
            .collect();
        for p in limits {
            let end = p.find(&format!("/{LIMIT_NODE}")).unwrap_or(p.len());
            let real = p.get(QUOTA_ROOT.len()..end).unwrap_or_default().to_string();
            if real.is_empty() {
                continue;
            }
            self.recount_quota(&real);
            self.quota_paths.insert(normalise(&real));
        }
    }

    /// `path` and every node below it.
    fn subtree<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        let own = self.nodes.get_key_value(path).map(|(k, _)| k);
        own.into_iter().chain(
            self.nodes
                .range(prefix.clone()..)
                .take_while(move |(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k),
        )
    }

    fn has_children(&self, path: &str) -> bool {
        let prefix = format!("{path}/");
        self.nodes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    /// Sets the stat node of quota path `real` to the count and bytes of its subtree.
    pub(super) fn recount_quota(&mut self, real: &str) {
        let (mut count, mut bytes) = (0i64, 0i64);
        for p in self.subtree(real) {
            count += 1;
            bytes += self.nodes[p].data.as_ref().map_or(0, |d| d.len() as i64);
        }
        let stat_path = format!("{QUOTA_ROOT}{real}/{STAT_NODE}");
        if let Some(n) = self.nodes.get_mut(&stat_path) {
            n.data = Some(format!("count={count},bytes={bytes}").into_bytes());
        }
    }

    /// The deepest path with a quota that is `path` or above it ("/" does not count).
    pub(super) fn quota_prefix(&self, path: &str) -> Option<String> {
        if self.quota_paths.is_empty() {
            return None;
        }
        let parts: Vec<&str> = path.split('/').filter(|p| !p.trim().is_empty()).collect();
        (1..=parts.len())
            .rev()
            .map(|n| format!("/{}", parts[..n].join("/")))
            .find(|p| self.quota_paths.contains(p))
    }

    /// ZooKeeper's updateQuotaStat: adds to the count and bytes in the stat node's text.
    pub(super) fn update_quota_stat(&mut self, prefix: &str, bytes_diff: i64, count_diff: i64) {
        let stat_path = format!("{QUOTA_ROOT}{prefix}/{STAT_NODE}");
        if let Some(n) = self.nodes.get_mut(&stat_path) {
            let text = String::from_utf8_lossy(n.data.as_deref().unwrap_or_default()).into_owned();
            if let Some(updated) = stats_add(&text, count_diff, bytes_diff) {
                n.data = Some(updated.into_bytes());
            } else {
                tracing::warn!(
                    "quota stat node {stat_path} holds {text:?}, which is not a quota stat; \
                     left as it is"
                );
            }
        }
    }
}

/// ZooKeeper's StatsTrack text with `count` and `bytes` moved by the diffs: "count=N,bytes=M",
/// then (when other keys exist) "=" and ";key=value" for each in sorted order. None when the
/// text is not key=value pairs.
pub(super) fn stats_add(text: &str, count_diff: i64, bytes_diff: i64) -> Option<String> {
    let mut stats: BTreeMap<String, i64> = BTreeMap::new();
    if !text.is_empty() {
        for pair in text.split([',', ';']).filter(|p| !p.is_empty()) {
            let mut kv = pair.split('=');
            let k = kv.next()?;
            let v = kv.next().unwrap_or_default();
            let v = if v.is_empty() { -1 } else { v.parse().ok()? };
            stats.insert(k.to_string(), v);
        }
    }
    // Java's long arithmetic: a client-written stats node near the limits wraps, never panics.
    let count = stats.remove("count").unwrap_or(-1).wrapping_add(count_diff);
    let bytes = stats.remove("bytes").unwrap_or(-1).wrapping_add(bytes_diff);
    let mut out = format!("count={count},bytes={bytes}");
    if !stats.is_empty() {
        out.push('=');
        for (k, v) in stats {
            out.push_str(&format!(";{k}={v}"));
        }
    }
    Some(out)
}
