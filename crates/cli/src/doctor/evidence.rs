//! What `corral doctor` reads from each member: round trips timed over a session of its own,
//! and the four-letter words `srvr`, `mntr`, `conf`, `cons` and `obit`, parsed.
//!
//! Owns the probing and the parsing of the words' text. Must never: write to the tree (the
//! probe only reads), or judge what it read ([`super::findings`] does).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral_client::proto::{GetDataRequest, Request, Response};
use corral_client::{ConnectOptions, Connection};
use tokio::task::JoinSet;

/// How long one four-letter word or one probe may take before it counts as failed.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// The largest answer read from a word (`cons` on a busy keeper is the long one).
const ANSWER_MAX: usize = 4 << 20;

/// Round trips to one member: a read of `/` sent every `interval`, each timed alone
/// (pipelined, so one slow reply does not delay the next probe's start).
#[derive(Debug, Clone, Default)]
pub struct RoundTrips {
    /// Milliseconds, in the order the replies came.
    pub samples_ms: Vec<f64>,
    /// Probes that failed or got no reply within [`ANSWER_WITHIN`].
    pub failures: u32,
    /// Why the session could not be opened, if it could not.
    pub connect_error: Option<String>,
    /// The timeout the keeper granted the doctor's own session.
    pub negotiated_timeout_ms: Option<i32>,
}

impl RoundTrips {
    /// (min, median, p99, max, jitter = mean absolute difference of consecutive samples).
    pub fn stats(&self) -> Option<RttStats> {
        if self.samples_ms.is_empty() {
            return None;
        }
        let mut sorted = self.samples_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        let jitter = if self.samples_ms.len() > 1 {
            self.samples_ms
                .windows(2)
                .map(|w| (w[1] - w[0]).abs())
                .sum::<f64>()
                / (self.samples_ms.len() - 1) as f64
        } else {
            0.0
        };
        Some(RttStats {
            min_ms: sorted[0],
            median_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: sorted[sorted.len() - 1],
            jitter_ms: jitter,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RttStats {
    pub min_ms: f64,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub jitter_ms: f64,
}

/// A live session as `cons` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSession {
    pub session_id: i64,
    pub client: String,
    pub timeout_ms: u64,
    pub last_op: String,
    /// The member whose `cons` listed it.
    pub member: String,
}

/// One `obit` block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Obit {
    pub session_id: i64,
    pub ended_ms: i64,
    pub cause: String,
    pub reason: String,
    pub timeout_ms: u64,
    pub requested_timeout_ms: Option<u64>,
    pub client: String,
    pub member: Option<u64>,
    pub silent_ms: Option<u64>,
    pub last_request: String,
    pub stall_forgiven_ms: u64,
    pub ephemerals: Vec<String>,
    pub kafka_brokers: Vec<u64>,
    /// The connection history lines, as printed.
    pub connections: Vec<String>,
}

/// Everything read from one member.
#[derive(Debug, Clone, Default)]
pub struct MemberReport {
    pub address: String,
    pub round_trips: RoundTrips,
    /// `Mode:` from `srvr` (standalone, leader, follower, observer); None if unreachable.
    pub mode: Option<String>,
    /// Whether `srvr`'s version says corral (ZooKeeper has no `obit`, no stall figures).
    pub is_corral: bool,
    pub zxid: Option<i64>,
    /// `mntr`'s values by key; empty when the word was refused.
    pub mntr: HashMap<String, String>,
    /// `conf`'s values by key.
    pub conf: HashMap<String, String>,
    pub sessions: Vec<LiveSession>,
    pub obituaries: Vec<Obit>,
    /// Words the member refused (not whitelisted) or could not answer, with why.
    pub unreadable: Vec<(String, WordError)>,
}

impl MemberReport {
    pub fn mntr_i64(&self, key: &str) -> Option<i64> {
        self.mntr.get(key).and_then(|v| v.trim().parse().ok())
    }

    pub fn conf_u64(&self, key: &str) -> Option<u64> {
        self.conf.get(key).and_then(|v| v.trim().parse().ok())
    }
}

/// Reads one member: the round trips over `probe_for`, and the words (read after, so their
/// own traffic does not disturb the timing).
pub async fn examine(address: &str, probe_for: Duration, interval: Duration) -> MemberReport {
    let mut report = MemberReport {
        address: address.to_string(),
        round_trips: round_trips(address, probe_for, interval).await,
        ..MemberReport::default()
    };
    match word(address, "srvr").await {
        Ok(text) => {
            let srvr = key_values(&text, ':');
            report.mode = srvr.get("Mode").cloned();
            report.is_corral = srvr
                .get("Zookeeper version")
                .is_some_and(|v| v.contains("corral"));
            report.zxid = srvr.get("Zxid").and_then(|z| parse_hex(z));
        }
        Err(e) => report.unreadable.push(("srvr".into(), e)),
    }
    if report.mode.is_none() {
        // Unreachable (or not a ZooKeeper server): the other words would fail the same way.
        return report;
    }
    match word(address, "mntr").await {
        Ok(text) => report.mntr = key_values(&text, '\t'),
        Err(e) => report.unreadable.push(("mntr".into(), e)),
    }
    match word(address, "conf").await {
        Ok(text) => report.conf = key_values(&text, '='),
        Err(e) => report.unreadable.push(("conf".into(), e)),
    }
    match word(address, "cons").await {
        Ok(text) => report.sessions = parse_cons(&text, address),
        Err(e) => report.unreadable.push(("cons".into(), e)),
    }
    // ZooKeeper does not know `obit` (it closes the connection): nothing to read there.
    if report.is_corral {
        match word(address, "obit").await {
            // An empty ring is an empty answer.
            Ok(text) => report.obituaries = parse_obit(&text),
            Err(WordError::Empty) => {}
            Err(e) => report.unreadable.push(("obit".into(), e)),
        }
    }
    report
}

/// The doctor's own session: a read every `interval` for `probe_for`, each timed on its own.
async fn round_trips(address: &str, probe_for: Duration, interval: Duration) -> RoundTrips {
    let mut out = RoundTrips::default();
    let opts = ConnectOptions {
        // Long enough that a slow network does not end the doctor's session mid-measurement.
        session_timeout_ms: 30_000,
        ..ConnectOptions::default()
    };
    let conn = match tokio::time::timeout(ANSWER_WITHIN, Connection::connect(address, opts)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            out.connect_error = Some(e.to_string());
            return out;
        }
        Err(_) => {
            out.connect_error = Some(format!(
                "no handshake reply within {} s",
                ANSWER_WITHIN.as_secs()
            ));
            return out;
        }
    };
    out.negotiated_timeout_ms = Some(conn.negotiated_timeout_ms());
    let mut probes = JoinSet::new();
    let end = Instant::now() + probe_for;
    let mut tick = tokio::time::interval(interval);
    while Instant::now() < end {
        tick.tick().await;
        let c = conn.clone();
        probes.spawn(async move {
            let sent = Instant::now();
            let read = c.request(Request::Exists(GetDataRequest {
                path: "/".into(),
                watch: false,
            }));
            match tokio::time::timeout(ANSWER_WITHIN, read).await {
                Ok(Ok(r)) if matches!(r.response, Response::Stat(_)) => {
                    Some(sent.elapsed().as_secs_f64() * 1000.0)
                }
                _ => None,
            }
        });
    }
    while let Some(done) = probes.join_next().await {
        match done {
            Ok(Some(ms)) => out.samples_ms.push(ms),
            _ => out.failures += 1,
        }
    }
    // The doctor's session is not what anyone is investigating: close it, not left to expire.
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.close()).await;
    out
}

/// Why a four-letter word could not be read.
#[derive(Debug, Clone, PartialEq)]
pub enum WordError {
    /// Not in the member's `4lw.commands.whitelist`.
    Refused,
    /// Answered with nothing (an empty `obit` ring, or a word the server does not know).
    Empty,
    /// No answer: connecting, sending or reading failed, or took too long.
    Failed(String),
}

impl std::fmt::Display for WordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WordError::Refused => f.write_str("not in 4lw.commands.whitelist"),
            WordError::Empty => f.write_str("empty answer"),
            WordError::Failed(why) => f.write_str(why),
        }
    }
}

/// Asks one four-letter word and reads the answer to EOF.
pub async fn word(address: &str, cmd: &str) -> Result<String, WordError> {
    let text = corral_client::four_letter_word(address, cmd, ANSWER_WITHIN, ANSWER_MAX)
        .await
        .map_err(|e| WordError::Failed(e.to_string()))?;
    if text.contains("is not executed because it is not in the whitelist") {
        return Err(WordError::Refused);
    }
    if text.is_empty() {
        return Err(WordError::Empty);
    }
    Ok(text)
}

/// `key<sep>value` lines; the first separator splits.
fn key_values(text: &str, sep: char) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(sep))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn parse_hex(s: &str) -> Option<i64> {
    let s = s.trim();
    let digits = s.strip_prefix("0x").unwrap_or(s);
    u64::from_str_radix(digits, 16).ok().map(|v| v as i64)
}

/// `cons` lines with a session: ` /ip:port[1](queued=..,sid=0x..,lop=..,est=..,to=..,...)`.
pub fn parse_cons(text: &str, member: &str) -> Vec<LiveSession> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((client, rest)) = line.split_once('[') else {
            continue;
        };
        let Some((_, fields)) = rest.split_once('(') else {
            continue;
        };
        let fields: HashMap<&str, &str> = fields
            .trim_end_matches(')')
            .split(',')
            .filter_map(|f| f.split_once('='))
            .collect();
        let (Some(sid), Some(to)) = (fields.get("sid"), fields.get("to")) else {
            continue;
        };
        let (Some(session_id), Ok(timeout_ms)) = (parse_hex(sid), to.parse()) else {
            continue;
        };
        out.push(LiveSession {
            session_id,
            client: client.trim_start_matches('/').to_string(),
            timeout_ms,
            last_op: fields.get("lop").unwrap_or(&"").to_string(),
            member: member.to_string(),
        });
    }
    out
}

/// `obit`'s blocks: a header `0x<id> <ISO time> <cause>`, then tab-indented `key: value`
/// lines (`connection:` repeated).
pub fn parse_obit(text: &str) -> Vec<Obit> {
    let mut out: Vec<Obit> = Vec::new();
    for line in text.lines() {
        if let Some(field) = line.strip_prefix('\t') {
            let Some(ob) = out.last_mut() else { continue };
            let Some((key, value)) = field.split_once(": ") else {
                continue;
            };
            match key {
                "reason" => ob.reason = value.to_string(),
                "timeout_ms" => {
                    // "4000" or "4000 (requested 2000)"
                    let mut words = value.split_whitespace();
                    ob.timeout_ms = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                    ob.requested_timeout_ms = words
                        .nth(1)
                        .and_then(|w| w.trim_end_matches(')').parse().ok());
                }
                "client" => ob.client = value.to_string(),
                "member" => ob.member = value.parse().ok(),
                "silent_ms" => ob.silent_ms = value.parse().ok(),
                "last_request" => ob.last_request = value.to_string(),
                "keeper_stall_forgiven_ms" => ob.stall_forgiven_ms = value.parse().unwrap_or(0),
                "ephemerals_deleted" => {
                    ob.ephemerals = value
                        .split_whitespace()
                        .skip(1)
                        .filter(|p| p.starts_with('/'))
                        .map(str::to_string)
                        .collect();
                }
                "kafka_brokers" => {
                    ob.kafka_brokers = value
                        .split_whitespace()
                        .filter_map(|b| b.parse().ok())
                        .collect();
                }
                "connection" => ob.connections.push(value.to_string()),
                _ => {}
            }
            continue;
        }
        let mut head = line.split_whitespace();
        let (Some(id), Some(when), Some(cause)) = (head.next(), head.next(), head.next()) else {
            continue;
        };
        let (Some(session_id), Some(ended_ms)) = (parse_hex(id), parse_iso_ms(when)) else {
            continue;
        };
        out.push(Obit {
            session_id,
            ended_ms,
            cause: cause.to_string(),
            ..Obit::default()
        });
    }
    out
}

/// `2026-12-06T02:37:52.123Z` to ms since the epoch (UTC, as `obit` prints).
pub fn parse_iso_ms(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let ms: i64 = ms.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    Some((days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss) * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The Kafka view of one broker: who owns `/brokers/ids/N` now, and whether it is the
/// controller.
#[derive(Debug, Clone, Default)]
pub struct BrokerView {
    pub broker: u64,
    /// The session owning `/brokers/ids/N`, if the node exists.
    pub owner: Option<i64>,
    /// `/controller`'s brokerid, if the node exists and names one.
    pub controller: Option<u64>,
}

/// Reads `<chroot>/brokers/ids/N` and `<chroot>/controller` through `address`.
pub async fn broker_view(address: &str, chroot: &str, broker: u64) -> Result<BrokerView, String> {
    let conn = tokio::time::timeout(
        ANSWER_WITHIN,
        Connection::connect(address, ConnectOptions::default()),
    )
    .await
    .map_err(|_| "no handshake reply".to_string())?
    .map_err(|e| e.to_string())?;
    let read = |path: String| conn.request(Request::GetData(GetDataRequest { path, watch: false }));
    let mut view = BrokerView {
        broker,
        ..BrokerView::default()
    };
    if let Ok(r) = read(format!("{chroot}/brokers/ids/{broker}")).await {
        if let Response::Data(_, stat) = r.response {
            view.owner = Some(stat.ephemeral_owner).filter(|o| *o != 0);
        }
    }
    if let Ok(r) = read(format!("{chroot}/controller")).await {
        if let Response::Data(Some(data), _) = r.response {
            view.controller = controller_id(&String::from_utf8_lossy(&data));
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.close()).await;
    Ok(view)
}

/// Kafka's `/controller` JSON: `{"version":1,"brokerid":2,"timestamp":"..."}`.
fn controller_id(json: &str) -> Option<u64> {
    let after = json.split("\"brokerid\"").nth(1)?;
    let digits: String = after
        .trim_start_matches(|c: char| c == ':' || c.is_whitespace())
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_obit_blocks() {
        let text = "0x1000a 2026-12-06T02:37:52.123Z silent_while_connected\n\
            \treason: no request for 4012 ms while connected\n\
            \tzxid: 0x5\n\
            \ttimeout_ms: 4000 (requested 2000)\n\
            \tclient: 127.0.0.1:5555\n\
            \tmember: 1\n\
            \tsilent_ms: 4012\n\
            \tlast_request: ping\n\
            \tephemerals_deleted: 1 /brokers/ids/1\n\
            \tkafka_brokers: 1\n\
            \tconnection: 2026-12-06T02:37:40.000Z connected member 1 127.0.0.1:5555\n\
            0x2 1970-01-01T00:00:01.000Z closed_by_client\n\
            \treason: closed by the client\n";
        let obs = parse_obit(text);
        assert_eq!(obs.len(), 2);
        let a = &obs[0];
        assert_eq!(a.session_id, 0x1000a);
        assert_eq!(a.cause, "silent_while_connected");
        assert_eq!(a.timeout_ms, 4000);
        assert_eq!(a.requested_timeout_ms, Some(2000));
        assert_eq!(a.silent_ms, Some(4012));
        assert_eq!(a.ephemerals, vec!["/brokers/ids/1".to_string()]);
        assert_eq!(a.kafka_brokers, vec![1]);
        assert_eq!(a.connections.len(), 1);
        assert_eq!(obs[1].ended_ms, 1000);
        assert_eq!(obs[1].cause, "closed_by_client");
    }

    #[test]
    fn iso_times_round_trip_the_calendar() {
        assert_eq!(parse_iso_ms("1970-01-01T00:00:00.000Z"), Some(0));
        // 2000-03-01 is day 11017: a leap year's February behind it.
        assert_eq!(
            parse_iso_ms("2000-03-01T00:00:00.001Z"),
            Some(11_017 * 86_400_000 + 1)
        );
        assert_eq!(parse_iso_ms("2026-13-01T00:00:00.000Z"), None);
        assert_eq!(parse_iso_ms("garbage"), None);
    }

    #[test]
    fn reads_cons_lines_with_sessions_only() {
        let text = " /127.0.0.1:40000[1](queued=0,recved=3,sent=3,sid=0x10001,lop=PING,\
            est=1,to=6000,lcxid=0x2,lzxid=0x4,lresp=1,llat=0,minlat=0,avglat=0,maxlat=1)\n \
            /127.0.0.1:40001[0](queued=0,recved=1,sent=0)\n";
        let s = parse_cons(text, "m1");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].session_id, 0x10001);
        assert_eq!(s[0].timeout_ms, 6000);
        assert_eq!(s[0].client, "127.0.0.1:40000");
        assert_eq!(s[0].last_op, "PING");
    }

    #[test]
    fn reads_kafka_controller_json() {
        assert_eq!(
            controller_id(r#"{"version":1,"brokerid":2,"timestamp":"1"}"#),
            Some(2)
        );
        assert_eq!(controller_id("{}"), None);
    }

    #[test]
    fn round_trip_stats() {
        let rt = RoundTrips {
            samples_ms: vec![1.0, 3.0, 2.0, 10.0],
            ..RoundTrips::default()
        };
        let s = rt.stats().expect("samples");
        assert_eq!(s.min_ms, 1.0);
        assert_eq!(s.max_ms, 10.0);
        assert_eq!(s.p99_ms, 10.0);
        assert!((s.jitter_ms - (2.0 + 1.0 + 8.0) / 3.0).abs() < 1e-9);
    }
}
