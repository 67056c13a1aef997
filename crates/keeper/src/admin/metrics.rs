//! `/metrics`: the keeper's figures in Prometheus' text format, built at each scrape.
//!
//! Every numeric `mntr` value is a gauge under ZooKeeper's own metric name (its Prometheus
//! provider names metrics as `mntr` does, without `zk_`): `znode_count`, `watch_count`,
//! `ephemerals_count`, `num_alive_connections`, `outstanding_requests`, ... corral adds
//! typed metrics of its own: sessions ended by cause, the heartbeat age of live sessions
//! against their timeout (a histogram), and the keeper's stalls.
//!
//! Owns the names and types. The encoding is the `prometheus-client` crate's. Must never:
//! keep state between scrapes (the registry is built afresh from what `gather` reads).

use std::sync::atomic::AtomicU64;

use corral_tree::obituary::EndCause;
use prometheus_client::encoding::prometheus_text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::gather::gather;
use super::mntr;
use super::snapshot::Needs;
use crate::shared::Shared;

/// Heartbeat age over timeout: a healthy session stays under a third (clients ping then);
/// at 1 it expires.
const AGE_RATIO_BUCKETS: [f64; 8] = [0.1, 0.2, 0.34, 0.5, 0.67, 0.8, 0.9, 1.0];

/// The text Prometheus scrapes.
pub(crate) fn scrape(keeper: &Shared) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::default();
    let snap = gather(keeper, Needs::of("mntr"));
    for (key, value) in mntr::values(&snap) {
        // corral's own counters are registered below with their types.
        if key.starts_with("zk_corral_") {
            continue;
        }
        let (Some(name), Ok(v)) = (key.strip_prefix("zk_"), value.parse::<f64>()) else {
            continue;
        };
        if !valid_name(name) {
            continue;
        }
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(v);
        reg.register(name, format!("ZooKeeper's mntr {key}"), g);
    }

    let (ended, stalls, stalled, ages) = {
        let now = tokio::time::Instant::now();
        let t = keeper.sessions();
        let ages: Vec<f64> = t
            .iter()
            .filter(|(_, l)| !l.timeout.is_zero())
            .map(|(_, l)| {
                now.saturating_duration_since(l.last_heard).as_secs_f64() / l.timeout.as_secs_f64()
            })
            .collect();
        (
            t.ended_by_cause(),
            t.stalls_detected,
            t.stalled_total.as_secs_f64(),
            ages,
        )
    };
    let by_cause = Family::<Vec<(String, String)>, Counter>::default();
    for cause in EndCause::all() {
        let n = ended.get(&cause).copied().unwrap_or(0);
        by_cause
            .get_or_create(&vec![("cause".to_string(), cause.name().to_string())])
            .inc_by(n);
    }
    reg.register(
        "corral_sessions_ended",
        "Sessions ended since this member started, by cause (obituaries say more)",
        by_cause,
    );
    let age = Histogram::new(AGE_RATIO_BUCKETS);
    for a in ages {
        age.observe(a);
    }
    reg.register(
        "corral_session_heartbeat_age_ratio",
        "Live sessions' time since their client was last heard, over their timeout",
        age,
    );
    let stall_count = Counter::<u64>::default();
    stall_count.inc_by(stalls);
    reg.register(
        "corral_keeper_stalls",
        "Times the keeper found itself stalled (and forgave the time to every session)",
        stall_count,
    );
    let stall_time = Counter::<f64, AtomicU64>::default();
    stall_time.inc_by(stalled);
    reg.register_with_unit(
        "corral_keeper_stalled",
        "Time the keeper was stalled, forgiven to every session",
        prometheus_client::registry::Unit::Seconds,
        stall_time,
    );
    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}
