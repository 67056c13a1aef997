//! `corral doctor`'s judgement: from what the members answered, the findings, each with its
//! evidence and a concrete fix, ranked by how likely it explains a lost session.
//!
//! Owns the rules and their thresholds. Must never: do I/O (everything it judges is in its
//! arguments, so the rules are tested on plain values).

use std::collections::BTreeMap;

use super::evidence::{BrokerView, LiveSession, MemberReport, Obit, WordError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; nothing to fix.
    Note,
    /// Limits what the doctor could see, or a risk that has not cost a session.
    Warning,
    /// Explains (or will cause) lost sessions: the exit code is non-zero.
    Problem,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Problem => "problem",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub severity: Severity,
    /// A stable name for scripts: network, client_pause, connection_lost, member_lost, ...
    pub kind: &'static str,
    pub summary: String,
    pub evidence: Vec<String>,
    pub fix: String,
    /// Ranks findings: higher is likelier to explain a lost session.
    pub likelihood: u32,
}

/// What the operator asked about.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub session: Option<i64>,
    pub broker: Option<BrokerView>,
}

/// The inputs of every rule.
pub struct Case<'a> {
    pub members: &'a [MemberReport],
    pub subject: &'a Subject,
    /// Obituaries older than this many ms are history, not findings (unless asked about).
    pub window_ms: i64,
    pub now_ms: i64,
}

/// Every finding, likeliest first.
pub fn diagnose(case: &Case) -> Vec<Finding> {
    let mut out = Vec::new();
    let timeout = reference_timeout(case);
    for m in case.members {
        unreachable(m, &mut out);
        network(m, timeout.as_ref(), &mut out);
        stalls(m, timeout.as_ref(), case.window_ms, &mut out);
        fsync(m, &mut out);
        unreadable(m, &mut out);
    }
    roles(case.members, &mut out);
    obituaries(case, &mut out);
    out.sort_by(|a, b| {
        (b.severity, b.likelihood)
            .cmp(&(a.severity, a.likelihood))
            .then_with(|| a.summary.cmp(&b.summary))
    });
    out
}

/// The timeout the round trips are judged against, and where it came from: the session
/// asked about, else the smallest of the live sessions, else the keeper's smallest
/// negotiable timeout, else what the doctor's own session was granted.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceTimeout {
    pub ms: u64,
    pub source: String,
}

pub fn reference_timeout(case: &Case) -> Option<ReferenceTimeout> {
    let live = live_sessions(case.members);
    let asked = case
        .subject
        .session
        .or_else(|| case.subject.broker.as_ref().and_then(|b| b.owner));
    if let Some(s) = asked.and_then(|id| live.get(&id)) {
        return Some(ReferenceTimeout {
            ms: s.timeout_ms,
            source: format!("session 0x{:x}'s negotiated timeout", s.session_id),
        });
    }
    // A session (or broker) that ended: the timeout it had.
    if let Some(ob) = subject_obituaries(case).first() {
        return Some(ReferenceTimeout {
            ms: ob.timeout_ms,
            source: format!("session 0x{:x}'s negotiated timeout", ob.session_id),
        });
    }
    if let Some(s) = live.values().min_by_key(|s| s.timeout_ms) {
        return Some(ReferenceTimeout {
            ms: s.timeout_ms,
            source: format!(
                "the smallest negotiated timeout of {} live session(s) (0x{:x})",
                live.len(),
                s.session_id
            ),
        });
    }
    if let Some(min) = case
        .members
        .iter()
        .find_map(|m| m.conf_u64("minSessionTimeout"))
    {
        return Some(ReferenceTimeout {
            ms: min,
            source: "the keeper's minSessionTimeout (no live client session)".into(),
        });
    }
    case.members
        .iter()
        .find_map(|m| m.round_trips.negotiated_timeout_ms)
        .map(|ms| ReferenceTimeout {
            ms: ms.max(0) as u64,
            source: "the timeout granted to the doctor's own session".into(),
        })
}

fn live_sessions(members: &[MemberReport]) -> BTreeMap<i64, &LiveSession> {
    members
        .iter()
        .flat_map(|m| m.sessions.iter())
        .map(|s| (s.session_id, s))
        .collect()
}

/// Rounds a timeout up to the next whole second, as operators write them.
fn whole_seconds(ms: f64) -> u64 {
    ((ms / 1000.0).ceil() as u64).max(1) * 1000
}

fn unreachable(m: &MemberReport, out: &mut Vec<Finding>) {
    if m.mode.is_some() {
        return;
    }
    let why = m
        .round_trips
        .connect_error
        .clone()
        .or_else(|| m.unreadable.first().map(|(_, e)| e.to_string()))
        .unwrap_or_else(|| "no answer".into());
    out.push(Finding {
        severity: Severity::Problem,
        kind: "member_unreachable",
        summary: format!("member {} does not answer: {why}", m.address),
        evidence: vec![format!(
            "session handshake and srvr to {} both failed",
            m.address
        )],
        fix: format!(
            "check that the keeper at {} runs and that its client port is reachable from \
             the clients; its clients must move to another member within their timeout",
            m.address
        ),
        likelihood: 100,
    });
}

/// A client pings after a third of its timeout of quiet and gives up on the connection
/// after two thirds without a reply: a round trip above a third of the timeout loses
/// connections, and a session whose client cannot reconnect in time expires.
fn network(m: &MemberReport, timeout: Option<&ReferenceTimeout>, out: &mut Vec<Finding>) {
    let Some(stats) = m.round_trips.stats() else {
        return;
    };
    let Some(t) = timeout else { return };
    let third = t.ms as f64 / 3.0;
    let failures = m.round_trips.failures;
    let evidence = vec![
        format!(
            "round trips to {}: {} probes, min {:.1} ms, median {:.1} ms, p99 {:.1} ms, \
             max {:.1} ms, jitter {:.1} ms, {} failed",
            m.address,
            m.round_trips.samples_ms.len(),
            stats.min_ms,
            stats.median_ms,
            stats.p99_ms,
            stats.max_ms,
            stats.jitter_ms,
            failures
        ),
        format!("timeout {} ms: {}", t.ms, t.source),
        format!(
            "a client pings after {:.0} ms of quiet and drops the connection after {:.0} ms \
             without a reply",
            third,
            2.0 * third
        ),
    ];
    let worst = stats.p99_ms.max(stats.median_ms + 2.0 * stats.jitter_ms);
    if worst > third || failures > 0 {
        let advised = whole_seconds(3.0 * worst).max(t.ms + 1000);
        let max = m.conf_u64("maxSessionTimeout");
        let mut fix = format!(
            "the network between the clients and {} is too slow for this timeout: raise the \
             client's session timeout to >= {advised} ms (Kafka: zookeeper.session.timeout.ms)",
            m.address
        );
        if let Some(max) = max.filter(|max| *max < advised) {
            fix.push_str(&format!(
                " and the keeper's maxSessionTimeout to >= {advised} (it is {max}, and \
                 caps what a client asks for)"
            ));
        }
        fix.push_str("; and find the latency: a saturated link, a firewall or a distant site");
        out.push(Finding {
            severity: Severity::Problem,
            kind: "network",
            summary: format!(
                "negotiated timeout {} ms, round-trip p99 {:.0} ms to {}: connections will be \
                 dropped and sessions can expire",
                t.ms, stats.p99_ms, m.address
            ),
            evidence,
            fix,
            likelihood: 90,
        });
    } else if worst > third / 2.0 {
        out.push(Finding {
            severity: Severity::Warning,
            kind: "network",
            summary: format!(
                "round-trip p99 {:.0} ms to {} is over a sixth of the {} ms timeout: little \
                 headroom",
                stats.p99_ms, m.address, t.ms
            ),
            evidence,
            fix: format!(
                "raise the session timeout to >= {} ms, or find the latency",
                whole_seconds(6.0 * worst)
            ),
            likelihood: 50,
        });
    }
}

fn stalls(
    m: &MemberReport,
    timeout: Option<&ReferenceTimeout>,
    window_ms: i64,
    out: &mut Vec<Finding>,
) {
    let count = m.mntr_i64("zk_corral_keeper_stalls_detected").unwrap_or(0);
    if count <= 0 {
        return;
    }
    let total = m.mntr_i64("zk_corral_keeper_stalled_ms_total").unwrap_or(0);
    let longest = m
        .mntr_i64("zk_corral_keeper_longest_recent_stall_ms")
        .unwrap_or(-1);
    let age = m
        .mntr_i64("zk_corral_keeper_last_stall_age_ms")
        .unwrap_or(-1);
    let third = timeout.map_or(i64::MAX, |t| t.ms as i64 / 3);
    // A pause longer than a third of the timeout would have cost sessions on ZooKeeper; it
    // cost none here, but whatever paused the keeper can pause it again for longer.
    let serious = longest > third && (0..=window_ms).contains(&age);
    out.push(Finding {
        severity: if serious {
            Severity::Problem
        } else {
            Severity::Warning
        },
        kind: "keeper_stall",
        summary: format!(
            "the keeper at {} stalled {count} time(s), {total} ms in all; the longest recent \
             stall was {longest} ms, the last ended {} ago; corral did not count that time \
             against any session",
            m.address,
            human_ms(age)
        ),
        evidence: vec![
            format!("mntr zk_corral_keeper_stalls_detected {count}"),
            format!("mntr zk_corral_keeper_stalled_ms_total {total}"),
            format!("mntr zk_corral_keeper_longest_recent_stall_ms {longest}"),
        ],
        fix: "find what paused the keeper process: CPU starvation or steal, swap, a SIGSTOP, \
              a VM migration or a slow disk; give it cores and memory of its own"
            .into(),
        likelihood: if serious { 80 } else { 40 },
    });
}

fn fsync(m: &MemberReport, out: &mut Vec<Finding>) {
    let Some(p99_us) = m.mntr_i64("zk_corral_fsync_p99_us") else {
        return;
    };
    let max_us = m.mntr_i64("zk_corral_fsync_max_us").unwrap_or(0);
    let over = m.mntr_i64("zk_fsync_threshold_exceed_count").unwrap_or(0);
    let p99_ms = p99_us as f64 / 1000.0;
    let (severity, likelihood) = if p99_ms >= 1000.0 {
        (Severity::Problem, 70)
    } else if p99_ms >= 100.0 || over > 0 {
        (Severity::Warning, 45)
    } else {
        return;
    };
    out.push(Finding {
        severity,
        kind: "fsync",
        summary: format!(
            "keeper fsync p99 {p99_ms:.0} ms at {} (max {:.0} ms, {over} over \
             fsync.warningthresholdms): writes and session closes wait on the disk",
            m.address,
            max_us as f64 / 1000.0
        ),
        evidence: vec![
            format!("mntr zk_corral_fsync_p99_us {p99_us}"),
            format!("mntr zk_fsync_threshold_exceed_count {over}"),
        ],
        fix: "put dataLogDir on its own disk (a dedicated SSD), away from the snapshots and \
              other programs' writes"
            .into(),
        likelihood,
    });
}

fn unreadable(m: &MemberReport, out: &mut Vec<Finding>) {
    if m.mode.is_none() || m.unreadable.is_empty() {
        return;
    }
    let words: Vec<&str> = m.unreadable.iter().map(|(w, _)| w.as_str()).collect();
    let refused: Vec<&str> = m
        .unreadable
        .iter()
        .filter(|(_, e)| *e == WordError::Refused)
        .map(|(w, _)| w.as_str())
        .collect();
    let fix = if refused.is_empty() {
        "see why each word failed; the member may be overloaded".to_string()
    } else {
        format!(
            "allow the read-only words the doctor asks for: 4lw.commands.whitelist=srvr,{}",
            refused.join(",")
        )
    };
    out.push(Finding {
        severity: Severity::Warning,
        kind: "unreadable",
        summary: format!(
            "could not read {} from {}: the diagnosis is partial",
            words.join(", "),
            m.address
        ),
        evidence: m
            .unreadable
            .iter()
            .map(|(w, e)| format!("{w}: {e}"))
            .collect(),
        fix,
        likelihood: 20,
    });
}

fn roles(members: &[MemberReport], out: &mut Vec<Finding>) {
    let reachable: Vec<&MemberReport> = members.iter().filter(|m| m.mode.is_some()).collect();
    let modes: Vec<String> = reachable
        .iter()
        .map(|m| format!("{}: {}", m.address, m.mode.as_deref().unwrap_or("?")))
        .collect();
    let leaders: Vec<&&MemberReport> = reachable
        .iter()
        .filter(|m| m.mode.as_deref() == Some("leader"))
        .collect();
    let ensemble = reachable
        .iter()
        .any(|m| matches!(m.mode.as_deref(), Some("leader" | "follower" | "observer")));
    if !ensemble {
        return;
    }
    if leaders.len() != 1 {
        out.push(Finding {
            severity: Severity::Problem,
            kind: "no_leader",
            summary: format!(
                "{} leader(s) among the {} members that answered: writes and session \
                 expiry wait for one",
                leaders.len(),
                reachable.len()
            ),
            evidence: modes,
            fix: "a majority of the ensemble's members must run and reach each other on \
                  their quorum ports; check the members that did not answer"
                .into(),
            likelihood: 95,
        });
        return;
    }
    let Some(lead) = leaders[0].zxid else { return };
    for m in &reachable {
        let Some(z) = m.zxid else { continue };
        // Within one epoch the low 32 bits count transactions.
        let behind = if z >> 32 == lead >> 32 {
            (lead & 0xffff_ffff) - (z & 0xffff_ffff)
        } else {
            i64::MAX
        };
        if behind > 1000 {
            out.push(Finding {
                severity: Severity::Warning,
                kind: "member_lag",
                summary: format!(
                    "member {} is behind the leader (zxid 0x{z:x} against 0x{lead:x})",
                    m.address
                ),
                evidence: modes.clone(),
                fix: "a member far behind serves stale reads and catches up by snapshot; \
                      check its disk and its link to the leader"
                    .into(),
                likelihood: 35,
            });
        }
    }
}

/// Every member keeps the same obituaries: one list, each session once, newest first.
fn all_obituaries(members: &[MemberReport]) -> Vec<&Obit> {
    let mut by_id: BTreeMap<i64, &Obit> = BTreeMap::new();
    for ob in members.iter().flat_map(|m| m.obituaries.iter()) {
        let keep = by_id
            .get(&ob.session_id)
            .is_none_or(|o| o.ended_ms < ob.ended_ms);
        if keep {
            by_id.insert(ob.session_id, ob);
        }
    }
    let mut list: Vec<&Obit> = by_id.into_values().collect();
    list.sort_by_key(|o| std::cmp::Reverse(o.ended_ms));
    list
}

/// The obituaries of what the operator asked about, newest first.
fn subject_obituaries<'a>(case: &Case<'a>) -> Vec<&'a Obit> {
    all_obituaries(case.members)
        .into_iter()
        .filter(|o| {
            case.subject.session == Some(o.session_id)
                || case
                    .subject
                    .broker
                    .as_ref()
                    .is_some_and(|b| o.kafka_brokers.contains(&b.broker))
        })
        .collect()
}

fn obituaries(case: &Case, out: &mut Vec<Finding>) {
    let asked = case.subject.session.is_some() || case.subject.broker.is_some();
    let live = live_sessions(case.members);
    if let Some(b) = &case.subject.broker {
        broker(b, &live, case, out);
    }
    if let Some(id) = case.subject.session {
        if let Some(s) = live.get(&id) {
            out.push(Finding {
                severity: Severity::Note,
                kind: "session_alive",
                summary: format!(
                    "session 0x{id:x} is alive, connected to {} from {} (timeout {} ms)",
                    s.member, s.client, s.timeout_ms
                ),
                evidence: vec![format!("cons on {}: last request {}", s.member, s.last_op)],
                fix: "nothing to do".into(),
                likelihood: 10,
            });
        }
    }
    if asked {
        let subject = subject_obituaries(case);
        // The latest ending of the subject is the one to explain; earlier ones are history.
        if let Some(ob) = subject.first() {
            out.push(explain(ob, 97, case.now_ms));
            timeouts(ob, out);
        } else if case
            .subject
            .session
            .is_some_and(|id| !live.contains_key(&id))
        {
            out.push(Finding {
                severity: Severity::Warning,
                kind: "session_unknown",
                summary: "the session asked about is neither alive nor among the recent \
                          obituaries"
                    .into(),
                evidence: vec![format!(
                    "{} obituaries kept on the members that answered",
                    all_obituaries(case.members).len()
                )],
                fix: "check the id; obituaries are kept in a ring of corral.obituaries \
                      (default 1000)"
                    .into(),
                likelihood: 15,
            });
        }
        return;
    }
    // Not asked about one session: every session lost within the window, one finding per
    // cause, its latest ending as the example.
    let mut by_cause: BTreeMap<&str, Vec<&Obit>> = BTreeMap::new();
    for ob in all_obituaries(case.members) {
        if ob.cause != "closed_by_client" && case.now_ms - ob.ended_ms <= case.window_ms {
            by_cause.entry(ob.cause.as_str()).or_default().push(ob);
        }
    }
    for (_, obs) in by_cause {
        let mut f = explain(obs[0], 85, case.now_ms);
        if obs.len() > 1 {
            f.summary = format!(
                "{} sessions ended this way in the window; the latest: {}",
                obs.len(),
                f.summary
            );
            f.evidence.push(format!(
                "also: {}",
                obs[1..]
                    .iter()
                    .take(10)
                    .map(|o| format!("0x{:x}", o.session_id))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        out.push(f);
    }
}

fn broker(b: &BrokerView, live: &BTreeMap<i64, &LiveSession>, case: &Case, out: &mut Vec<Finding>) {
    let controller = if b.controller == Some(b.broker) {
        " (it is the controller)"
    } else {
        ""
    };
    match b.owner {
        Some(owner) => {
            let how = live.get(&owner).map_or_else(
                || "no member's cons lists it".to_string(),
                |s| {
                    format!(
                        "connected to {} from {}, timeout {} ms",
                        s.member, s.client, s.timeout_ms
                    )
                },
            );
            out.push(Finding {
                severity: Severity::Note,
                kind: "broker_registered",
                summary: format!(
                    "broker {} is registered: /brokers/ids/{} is owned by session \
                     0x{owner:x}{controller}",
                    b.broker, b.broker
                ),
                evidence: vec![how],
                fix: "nothing to do".into(),
                likelihood: 10,
            });
        }
        None if subject_obituaries(case).is_empty() => out.push(Finding {
            severity: Severity::Warning,
            kind: "broker_unknown",
            summary: format!(
                "broker {} has no /brokers/ids/{} and no recent obituary names it",
                b.broker, b.broker
            ),
            evidence: vec![],
            fix: "check the broker id and that the broker points at this ensemble (and \
                  chroot)"
                .into(),
            likelihood: 15,
        }),
        None => {}
    }
}

/// One obituary as a finding: what happened, the evidence the keeper recorded, the fix.
fn explain(ob: &Obit, likelihood: u32, now_ms: i64) -> Finding {
    let who = if ob.kafka_brokers.is_empty() {
        format!("session 0x{:x}", ob.session_id)
    } else {
        let ids: Vec<String> = ob.kafka_brokers.iter().map(u64::to_string).collect();
        format!("broker {} (session 0x{:x})", ids.join(", "), ob.session_id)
    };
    let silent = ob.silent_ms.unwrap_or(0);
    let t = ob.timeout_ms;
    let member = ob.member.map_or_else(|| "?".to_string(), |m| m.to_string());
    let mut evidence = vec![
        format!(
            "ended {} ago: {} ({})",
            human_ms(now_ms - ob.ended_ms),
            ob.cause,
            ob.reason
        ),
        format!(
            "client {}, member {member}, last request {}",
            ob.client, ob.last_request
        ),
    ];
    if !ob.ephemerals.is_empty() {
        evidence.push(format!("ephemerals deleted: {}", ob.ephemerals.join(" ")));
    }
    if ob.stall_forgiven_ms > 0 {
        evidence.push(format!(
            "the keeper forgave {} ms of its own stalls during the silence",
            ob.stall_forgiven_ms
        ));
    }
    evidence.extend(ob.connections.iter().map(|c| format!("connection: {c}")));
    let (severity, kind, summary, fix) = match ob.cause.as_str() {
        "closed_by_client" => (
            Severity::Note,
            "closed_by_client",
            format!("{who} was closed by its client"),
            "nothing to do: the application ended it".to_string(),
        ),
        "silent_while_connected" => (
            Severity::Problem,
            "client_pause",
            format!(
                "{who} was silent while connected for {silent} ms with timeout {t}: a \
                 client-side pause"
            ),
            format!(
                "the TCP connection stayed open and quiet, so the client process stopped \
                 (GC pause, swap, CPU starvation, a debugger): check its GC log around the \
                 time it ended; if such pauses are expected, raise its session timeout to \
                 >= {} ms",
                whole_seconds(silent as f64 * 1.5)
            ),
        ),
        "connection_lost" => (
            Severity::Problem,
            "connection_lost",
            format!("{who}'s connection was lost and not resumed within its {t} ms timeout"),
            format!(
                "the client crashed or the network between {} and member {member} failed: \
                 check the client host and that path at the time the connection ended (the \
                 connection history says how); give the client every member in its connect \
                 string so it can resume elsewhere",
                ob.client
            ),
        ),
        "member_lost" => (
            Severity::Problem,
            "member_lost",
            format!(
                "{who} was held by member {member}, which stopped reporting; the client did \
                 not move to another member within {t} ms"
            ),
            format!(
                "check member {member} at that time (process, disk, network); make sure the \
                 client's connect string lists every member"
            ),
        ),
        "keeper_stall" => (
            Severity::Problem,
            "keeper_stall",
            format!("{who} ended while the keeper was stalled"),
            "find what paused the keeper (CPU, swap, disk, VM) and give it resources of its \
             own"
            .to_string(),
        ),
        _ => (
            Severity::Warning,
            "session_ended",
            format!("{who} ended ({})", ob.reason),
            "the keeper recorded no cause; look at its log around the time".to_string(),
        ),
    };
    Finding {
        severity,
        kind,
        summary,
        evidence,
        fix,
        likelihood,
    }
}

/// What the client asked for against what it got.
fn timeouts(ob: &Obit, out: &mut Vec<Finding>) {
    let Some(asked) = ob.requested_timeout_ms else {
        return;
    };
    let got = ob.timeout_ms;
    if asked > got {
        out.push(Finding {
            severity: Severity::Warning,
            kind: "timeout_capped",
            summary: format!(
                "session 0x{:x} asked for a {asked} ms timeout and got {got}: the keeper's \
                 maxSessionTimeout capped it",
                ob.session_id
            ),
            evidence: vec![format!("requested {asked} ms, negotiated {got} ms")],
            fix: format!("raise maxSessionTimeout to >= {asked} in zoo.cfg"),
            likelihood: 60,
        });
    } else if asked < got {
        out.push(Finding {
            severity: Severity::Note,
            kind: "timeout_raised",
            summary: format!(
                "session 0x{:x} asked for {asked} ms and got {got} (minSessionTimeout)",
                ob.session_id
            ),
            evidence: vec![format!("requested {asked} ms, negotiated {got} ms")],
            fix: "nothing to do: the keeper's floor protected it".into(),
            likelihood: 5,
        });
    }
}

fn human_ms(ms: i64) -> String {
    match ms {
        ..0 => "?".into(),
        0..=9_999 => format!("{ms} ms"),
        10_000..=5_999_999 => format!("{} s", ms / 1000),
        _ => format!("{} min", ms / 60_000),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::evidence::RoundTrips;
    use super::*;

    fn member(samples: &[f64]) -> MemberReport {
        MemberReport {
            address: "127.0.0.1:2181".into(),
            mode: Some("standalone".into()),
            round_trips: RoundTrips {
                samples_ms: samples.to_vec(),
                negotiated_timeout_ms: Some(30_000),
                ..RoundTrips::default()
            },
            conf: HashMap::from([
                ("minSessionTimeout".to_string(), "4000".to_string()),
                ("maxSessionTimeout".to_string(), "40000".to_string()),
            ]),
            ..MemberReport::default()
        }
    }

    fn run(members: &[MemberReport], subject: &Subject) -> Vec<Finding> {
        diagnose(&Case {
            members,
            subject,
            window_ms: 3_600_000,
            now_ms: 10_000_000,
        })
    }

    fn problems(f: &[Finding]) -> Vec<&'static str> {
        f.iter()
            .filter(|f| f.severity == Severity::Problem)
            .map(|f| f.kind)
            .collect()
    }

    #[test]
    fn a_fast_keeper_is_healthy() {
        let f = run(&[member(&[0.3, 0.4, 0.5, 0.4])], &Subject::default());
        assert!(problems(&f).is_empty(), "{f:?}");
    }

    #[test]
    fn slow_round_trips_name_the_network_and_a_timeout() {
        let f = run(&[member(&[1800.0; 20])], &Subject::default());
        assert_eq!(problems(&f), vec!["network"]);
        assert!(
            f[0].summary.contains("negotiated timeout 4000 ms"),
            "{}",
            f[0].summary
        );
        // 3 x 1800 = 5400: the next whole second.
        assert!(f[0].fix.contains(">= 6000 ms"), "{}", f[0].fix);
    }

    #[test]
    fn an_advised_timeout_over_the_max_names_max_session_timeout() {
        let mut m = member(&[20_000.0; 5]);
        m.conf.insert("maxSessionTimeout".into(), "40000".into());
        let f = run(&[m], &Subject::default());
        assert!(
            f[0].fix.contains("maxSessionTimeout to >= 60000"),
            "{}",
            f[0].fix
        );
    }

    #[test]
    fn a_paused_broker_is_explained_when_asked_about() {
        let mut m = member(&[0.5; 5]);
        m.obituaries.push(Obit {
            session_id: 0x42,
            ended_ms: 9_000_000,
            cause: "silent_while_connected".into(),
            timeout_ms: 6000,
            silent_ms: Some(6012),
            kafka_brokers: vec![2],
            ..Obit::default()
        });
        let subject = Subject {
            broker: Some(BrokerView {
                broker: 2,
                ..BrokerView::default()
            }),
            ..Subject::default()
        };
        let members = [m];
        let case = Case {
            members: &members,
            subject: &subject,
            window_ms: 3_600_000,
            now_ms: 10_000_000,
        };
        assert_eq!(reference_timeout(&case).map(|t| t.ms), Some(6000));
        let f = diagnose(&case);
        assert_eq!(f[0].kind, "client_pause");
        assert!(f[0].summary.contains("broker 2"), "{}", f[0].summary);
        assert!(
            f[0].summary.contains("6012 ms with timeout 6000"),
            "{}",
            f[0].summary
        );
    }

    #[test]
    fn old_obituaries_and_client_closes_are_not_problems() {
        let mut m = member(&[0.5; 5]);
        m.obituaries.push(Obit {
            session_id: 1,
            ended_ms: 1000,
            cause: "connection_lost".into(),
            ..Obit::default()
        });
        m.obituaries.push(Obit {
            session_id: 2,
            ended_ms: 9_999_000,
            cause: "closed_by_client".into(),
            ..Obit::default()
        });
        assert!(problems(&run(&[m], &Subject::default())).is_empty());
    }

    #[test]
    fn an_unreachable_member_and_a_missing_leader_are_problems() {
        let mut down = member(&[]);
        down.mode = None;
        down.round_trips.connect_error = Some("refused".into());
        let mut follower = member(&[0.5]);
        follower.mode = Some("follower".into());
        let f = run(&[down, follower], &Subject::default());
        assert_eq!(problems(&f), vec!["member_unreachable", "no_leader"]);
    }

    #[test]
    fn only_refused_words_are_named_in_the_whitelist_fix() {
        let mut m = member(&[0.5]);
        m.unreadable = vec![
            ("obit".into(), WordError::Refused),
            (
                "mntr".into(),
                WordError::Failed("no answer within 10 s".into()),
            ),
        ];
        let f = run(&[m], &Subject::default());
        let u = f
            .iter()
            .find(|f| f.kind == "unreadable")
            .expect("a finding");
        assert!(u.fix.ends_with("whitelist=srvr,obit"), "{}", u.fix);
        assert_eq!(u.severity, Severity::Warning);
    }

    #[test]
    fn a_long_recent_stall_is_a_problem_and_a_short_one_a_warning() {
        let mut m = member(&[0.5]);
        m.mntr.extend([
            (
                "zk_corral_keeper_stalls_detected".to_string(),
                "1".to_string(),
            ),
            (
                "zk_corral_keeper_stalled_ms_total".to_string(),
                "8000".to_string(),
            ),
            (
                "zk_corral_keeper_longest_recent_stall_ms".to_string(),
                "8000".to_string(),
            ),
            (
                "zk_corral_keeper_last_stall_age_ms".to_string(),
                "2000".to_string(),
            ),
        ]);
        let f = run(std::slice::from_ref(&m), &Subject::default());
        assert_eq!(problems(&f), vec!["keeper_stall"]);
        m.mntr.insert(
            "zk_corral_keeper_longest_recent_stall_ms".into(),
            "300".into(),
        );
        let f = run(&[m], &Subject::default());
        assert!(problems(&f).is_empty());
        assert_eq!(f[0].kind, "keeper_stall");
    }
}
