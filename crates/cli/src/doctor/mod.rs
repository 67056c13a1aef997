//! `corral doctor`: the session-loss investigation, automated. It measures round trips to
//! each member, reads their roles, timeouts, fsync and stall figures and obituaries through
//! the four-letter words, and prints findings ranked by likelihood, each with its evidence
//! and a fix. Works against ZooKeeper too (without corral's own words, it says what it could
//! not read).
//!
//! Owns the command line and the report. Exit code: 0 when nothing is a problem, 1 when a
//! finding is. Must never: change anything on the members (it opens one session per member,
//! reads `/`, and closes it).

mod evidence;
mod findings;

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use evidence::{MemberReport, RttStats};
use findings::{Case, Finding, Severity, Subject};

#[derive(Args)]
pub struct DoctorArgs {
    /// The members: host:port[,host:port...][/chroot] (a connect string; the chroot is where
    /// Kafka's /brokers and /controller are looked for).
    #[arg(long, default_value = "127.0.0.1:2181")]
    server: String,
    /// Explain this session (0x... or decimal): alive, or why it ended.
    #[arg(long)]
    session: Option<String>,
    /// Explain Kafka broker N's session (the owner of /brokers/ids/N, or its obituary).
    #[arg(long)]
    broker: Option<u64>,
    /// One JSON document on stdout instead of the report.
    #[arg(long)]
    json: bool,
    /// Seconds of round-trip probing per member (all members at once).
    #[arg(long, default_value_t = 3.0)]
    probe_seconds: f64,
    /// Milliseconds between two probes.
    #[arg(long, default_value_t = 50)]
    probe_interval_ms: u64,
    /// Sessions that ended longer ago than this many seconds are history, not findings
    /// (unless asked about with --session or --broker).
    #[arg(long, default_value_t = 3600)]
    window_seconds: u64,
}

pub async fn run(args: DoctorArgs) -> ExitCode {
    let (hosts, chroot) = match args.server.split_once('/') {
        Some((hosts, root)) => (hosts, format!("/{}", root.trim_end_matches('/'))),
        None => (args.server.as_str(), String::new()),
    };
    let members: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if members.is_empty() {
        eprintln!("corral doctor: --server names no member");
        return ExitCode::from(2);
    }
    let session = match args.session.as_deref().map(parse_session_id) {
        None => None,
        Some(Some(id)) => Some(id),
        Some(None) => {
            eprintln!("corral doctor: --session wants a session id (0x... or decimal)");
            return ExitCode::from(2);
        }
    };
    if !(0.1..=600.0).contains(&args.probe_seconds) || args.probe_interval_ms == 0 {
        eprintln!("corral doctor: --probe-seconds must be 0.1..600 and --probe-interval-ms > 0");
        return ExitCode::from(2);
    }
    let probe_for = Duration::from_secs_f64(args.probe_seconds);
    let interval = Duration::from_millis(args.probe_interval_ms);
    // Every member at once: the probes take the same few seconds however many there are.
    let reports: Vec<MemberReport> = {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, m) in members.iter().enumerate() {
            let m = m.clone();
            tasks.spawn(async move { (i, evidence::examine(&m, probe_for, interval).await) });
        }
        let mut done = Vec::new();
        while let Some(r) = tasks.join_next().await {
            if let Ok(r) = r {
                done.push(r);
            }
        }
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, r)| r).collect()
    };
    let broker = match args.broker {
        None => None,
        Some(n) => {
            let mut view = None;
            for m in reports.iter().filter(|m| m.mode.is_some()) {
                if let Ok(v) = evidence::broker_view(&m.address, &chroot, n).await {
                    view = Some(v);
                    break;
                }
            }
            Some(view.unwrap_or(evidence::BrokerView {
                broker: n,
                ..Default::default()
            }))
        }
    };
    let subject = Subject { session, broker };
    let case = Case {
        members: &reports,
        subject: &subject,
        window_ms: (args.window_seconds as i64).saturating_mul(1000),
        now_ms: evidence::now_ms(),
    };
    let timeout = findings::reference_timeout(&case);
    let found = findings::diagnose(&case);
    let problem = found.iter().any(|f| f.severity == Severity::Problem);
    if args.json {
        let doc = json!({
            "healthy": !problem,
            "reference_timeout_ms": timeout.as_ref().map(|t| t.ms),
            "reference_timeout_source": timeout.as_ref().map(|t| t.source.clone()),
            "members": reports.iter().map(member_json).collect::<Vec<_>>(),
            "findings": found.iter().map(finding_json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print!(
            "{}",
            report_text(&reports, timeout.as_ref(), &found, problem)
        );
    }
    if problem {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn parse_session_id(s: &str) -> Option<i64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok().map(|v| v as i64),
        None => s.parse().ok(),
    }
}

fn stats_json(s: Option<RttStats>) -> Value {
    s.map_or(Value::Null, |s| {
        json!({
            "min_ms": s.min_ms,
            "median_ms": s.median_ms,
            "p99_ms": s.p99_ms,
            "max_ms": s.max_ms,
            "jitter_ms": s.jitter_ms,
        })
    })
}

fn member_json(m: &MemberReport) -> Value {
    let mntr = |k: &str| m.mntr_i64(k);
    json!({
        "address": m.address,
        "mode": m.mode,
        "is_corral": m.is_corral,
        "zxid": m.zxid.map(|z| format!("0x{z:x}")),
        "round_trips": {
            "probes": m.round_trips.samples_ms.len(),
            "failures": m.round_trips.failures,
            "connect_error": m.round_trips.connect_error,
            "stats": stats_json(m.round_trips.stats()),
        },
        "min_session_timeout_ms": m.conf_u64("minSessionTimeout"),
        "max_session_timeout_ms": m.conf_u64("maxSessionTimeout"),
        "fsync_p99_us": mntr("zk_corral_fsync_p99_us"),
        "stalls": mntr("zk_corral_keeper_stalls_detected"),
        "stalled_ms_total": mntr("zk_corral_keeper_stalled_ms_total"),
        // mntr says -1 for "no stall lately"; JSON says null.
        "longest_recent_stall_ms": mntr("zk_corral_keeper_longest_recent_stall_ms")
            .filter(|ms| *ms >= 0),
        "live_sessions": m.sessions.len(),
        "obituaries": m.obituaries.len(),
        "unreadable": m.unreadable.iter().map(|(w, e)| json!({"word": w, "why": e.to_string()})).collect::<Vec<_>>(),
    })
}

fn finding_json(f: &Finding) -> Value {
    json!({
        "severity": f.severity.name(),
        "kind": f.kind,
        "summary": f.summary,
        "evidence": f.evidence,
        "fix": f.fix,
    })
}

fn report_text(
    members: &[MemberReport],
    timeout: Option<&findings::ReferenceTimeout>,
    found: &[Finding],
    problem: bool,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    out.push_str("corral doctor\n\nMembers:\n");
    for m in members {
        let _ = write!(
            out,
            "  {}  {}",
            m.address,
            m.mode.as_deref().unwrap_or("unreachable")
        );
        if let Some(z) = m.zxid {
            let _ = write!(out, "  zxid 0x{z:x}");
        }
        out.push('\n');
        if let Some(s) = m.round_trips.stats() {
            let _ = writeln!(
                out,
                "    round trip: min {:.1}  median {:.1}  p99 {:.1}  max {:.1}  jitter {:.1} ms  \
                 ({} probes, {} failed)",
                s.min_ms,
                s.median_ms,
                s.p99_ms,
                s.max_ms,
                s.jitter_ms,
                m.round_trips.samples_ms.len(),
                m.round_trips.failures
            );
        }
        if let (Some(min), Some(max)) = (
            m.conf_u64("minSessionTimeout"),
            m.conf_u64("maxSessionTimeout"),
        ) {
            let _ = writeln!(out, "    session timeouts allowed: {min}..{max} ms");
        }
        if let Some(p99) = m.mntr_i64("zk_corral_fsync_p99_us") {
            let _ = writeln!(
                out,
                "    fsync p99 {:.1} ms; keeper stalls {} ({} ms)",
                p99 as f64 / 1000.0,
                m.mntr_i64("zk_corral_keeper_stalls_detected").unwrap_or(0),
                m.mntr_i64("zk_corral_keeper_stalled_ms_total").unwrap_or(0)
            );
        }
        if m.mode.is_some() && !m.is_corral {
            out.push_str("    not corral: no obituaries or stall figures to read\n");
        }
        if m.mode.is_some() {
            let _ = writeln!(
                out,
                "    {} live session(s), {} obituaries",
                m.sessions.len(),
                m.obituaries.len()
            );
        }
    }
    if let Some(t) = timeout {
        let _ = writeln!(out, "\nJudged against a {} ms timeout: {}.", t.ms, t.source);
    }
    out.push_str("\nFindings, likeliest first:\n");
    if found.is_empty() {
        out.push_str("  none\n");
    }
    for (i, f) in found.iter().enumerate() {
        let _ = writeln!(out, "{}. [{}] {}", i + 1, f.severity.name(), f.summary);
        for e in &f.evidence {
            let _ = writeln!(out, "     - {e}");
        }
        let _ = writeln!(out, "     fix: {}", f.fix);
    }
    out.push('\n');
    out.push_str(if problem {
        "Verdict: problems found (exit 1).\n"
    } else {
        "Verdict: healthy (exit 0).\n"
    });
    out
}
