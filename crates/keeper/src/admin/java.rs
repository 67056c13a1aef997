//! Java's text forms that ZooKeeper's admin output carries and scripts parse: `Date.toString()`
//! in UTC, `Double.toString()` for latencies, `InetSocketAddress.toString()`.
//!
//! Owns only formatting of plain values. Must never read the clock, the environment or any
//! state (the time zone is always UTC, as corral's keeper runs it).

use std::net::{IpAddr, SocketAddr};

/// ZooKeeper rounds average latencies to 4 decimal places.
pub(crate) fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Java's `Double.toString` for the magnitudes latencies take: at least one decimal ("0.0",
/// "12.0", "0.7778").
pub(crate) fn java_double(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e7 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// Java's `InetSocketAddress.toString()` for a resolved address: "/ip:port", IPv6 in brackets
/// and in Java's uncompressed form.
pub(crate) fn java_addr(addr: &SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!("/{ip}:{}", addr.port()),
        IpAddr::V6(ip) => {
            let groups: Vec<String> = ip.segments().iter().map(|g| format!("{g:x}")).collect();
            format!("/[{}]:{}", groups.join(":"), addr.port())
        }
    }
}

/// A UTC time of day split out of ms since the epoch.
struct Utc {
    days: i64,
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    ms: i64,
}

impl Utc {
    fn of(epoch_ms: i64) -> Utc {
        let secs = epoch_ms.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let in_day = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Utc {
            days,
            year,
            month,
            day,
            hour: in_day / 3600,
            minute: in_day % 3600 / 60,
            second: in_day % 60,
            ms: epoch_ms.rem_euclid(1000),
        }
    }
}

/// Java's `Date.toString()` in UTC: "Wed Nov 25 01:12:37 UTC 2026".
pub fn java_date(epoch_ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = Utc::of(epoch_ms);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        DAYS[t.days.rem_euclid(7) as usize],
        MONTHS[(t.month - 1) as usize],
        t.day,
        t.hour,
        t.minute,
        t.second,
        t.year
    )
}

/// `2026-12-06T00:41:03.123Z`: ISO 8601 in UTC, to the millisecond (corral's own words and
/// pages; ZooKeeper's use [`java_date`]).
pub fn iso_date(epoch_ms: i64) -> String {
    let t = Utc::of(epoch_ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.ms
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian (Howard
/// Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
