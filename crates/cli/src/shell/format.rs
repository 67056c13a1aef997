//! Output in zkCli's shapes, so scripts and eyes used to zkCli read it the same way:
//! Stat blocks, dates like Java's `Date.toString()` (always UTC here), error lines and
//! watch events.

use corral_client::ClientError;
use corral_proto::{ErrorCode, Stat};

use corral_client::WatchedEvent;

pub fn format_stat(s: &Stat) -> String {
    format!(
        "cZxid = 0x{:x}\nctime = {}\nmZxid = 0x{:x}\nmtime = {}\npZxid = 0x{:x}\ncversion = {}\n\
         dataVersion = {}\naclVersion = {}\nephemeralOwner = 0x{:x}\ndataLength = {}\nnumChildren = {}",
        s.czxid,
        java_date(s.ctime),
        s.mzxid,
        java_date(s.mtime),
        s.pzxid,
        s.cversion,
        s.version,
        s.aversion,
        s.ephemeral_owner,
        s.data_length,
        s.num_children
    )
}

/// Milliseconds since the epoch as `Thu Jan 01 00:00:00 UTC 1970`.
pub fn java_date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        y
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month 1..=12, day 1..=31), by
/// counting in 400-year eras that start on March 1 (so the leap day ends each year).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The line zkCli prints for a failed command on `path`.
pub fn error_line(e: &ClientError, path: &str) -> String {
    match e {
        ClientError::Server(code) => match code {
            ErrorCode::NoNode => format!("Node does not exist: {path}"),
            ErrorCode::NodeExists => format!("Node already exists: {path}"),
            ErrorCode::NotEmpty => format!("Node not empty: {path}"),
            ErrorCode::NoChildrenForEphemerals => {
                format!("Ephemerals cannot have children: {path}")
            }
            ErrorCode::NoAuth => format!("Insufficient permission : {path}"),
            ErrorCode::BadVersion => format!("version No is not valid : {path}"),
            ErrorCode::InvalidAcl => format!("Acl is not valid : {path}"),
            ErrorCode::BadArguments => format!("Argument error : {path}"),
            ErrorCode::NotReadOnly => format!("Not a read-only call: {path}"),
            other if path.is_empty() => format!("KeeperErrorCode = {}", other.name()),
            other => format!("KeeperErrorCode = {} for {path}", other.name()),
        },
        ClientError::SessionExpired => "Session expired".to_string(),
        ClientError::Closed => format!(
            "Connection lost{}",
            if path.is_empty() {
                String::new()
            } else {
                format!(" ({path})")
            }
        ),
        other => other.to_string(),
    }
}

/// A watch notification as zkCli shows it.
pub fn format_event(ev: &WatchedEvent) -> String {
    format!(
        "\nWATCHER::\n\nWatchedEvent state:{} type:{} path:{}",
        ev.state.name(),
        ev.event_type.name(),
        ev.path
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::{EventType, KeeperState};

    #[test]
    fn dates_like_java() {
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        // 2000-02-29 12:34:56 UTC, a Tuesday in a leap year.
        assert_eq!(java_date(951_827_696_000), "Tue Feb 29 12:34:56 UTC 2000");
        assert_eq!(java_date(1_700_000_000_123), "Tue Nov 14 22:13:20 UTC 2023");
        assert_eq!(java_date(-1000), "Wed Dec 31 23:59:59 UTC 1969");
    }

    #[test]
    fn stat_block() {
        let s = Stat {
            czxid: 0x10,
            mzxid: 0x1a,
            pzxid: 0x10,
            version: 2,
            ephemeral_owner: 0xabc,
            ..Default::default()
        };
        let text = format_stat(&s);
        assert!(
            text.starts_with("cZxid = 0x10\nctime = Thu Jan 01 00:00:00 UTC 1970\nmZxid = 0x1a\n")
        );
        assert!(text.contains("dataVersion = 2\n"));
        assert!(text.contains("ephemeralOwner = 0xabc\n"));
        assert!(text.ends_with("numChildren = 0"));
    }

    #[test]
    fn errors_and_events() {
        assert_eq!(
            error_line(&ClientError::Server(ErrorCode::NoNode), "/x"),
            "Node does not exist: /x"
        );
        assert_eq!(
            error_line(&ClientError::Server(ErrorCode::NodeExists), "/x"),
            "Node already exists: /x"
        );
        assert_eq!(
            error_line(&ClientError::Server(ErrorCode::Unimplemented), "/x"),
            "KeeperErrorCode = Unimplemented for /x"
        );
        let ev = WatchedEvent {
            event_type: EventType::NodeDataChanged,
            state: KeeperState::SyncConnected,
            path: "/x".into(),
            zxid: 5,
        };
        assert_eq!(
            format_event(&ev),
            "\nWATCHER::\n\nWatchedEvent state:SyncConnected type:NodeDataChanged path:/x"
        );
    }
}
