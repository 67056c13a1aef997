//! Value parsers with Java's rules (Integer.parseInt, the decoding of Integer.getInteger,
//! QuorumPeerConfig's strict booleans) and the address a listening key names.
//!
//! Each returns the message for a bad value, which the caller prefixes with the file, line and
//! key. Must never know which key it parses for; its only I/O is host-name resolution in
//! [`resolve`].

use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};

/// Integer.parseInt: optional sign, decimal digits, 32-bit range.
pub(super) fn int(value: &str) -> Result<i32, String> {
    value
        .parse::<i32>()
        .map_err(|_| format!("{value:?} is not a whole number"))
}

/// Integer.getInteger's decoding (system properties): decimal, or hex with 0x, 0X or #.
pub(super) fn java_decode_int(value: &str) -> Result<i64, String> {
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    let parsed = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
        .or_else(|| digits.strip_prefix('#'))
    {
        i64::from_str_radix(hex, 16)
    } else {
        digits.parse::<i64>()
    };
    match parsed {
        Ok(n) if !hex_or_dec_has_sign(digits) && n <= i64::from(i32::MAX) => {
            Ok(if negative { -n } else { n })
        }
        _ => Err(format!("{value:?} is not a whole number")),
    }
}

/// Rejects "--5" and "0x-5", which the sign stripping above would otherwise let through.
fn hex_or_dec_has_sign(digits: &str) -> bool {
    digits.contains(['-', '+'])
}

pub(super) fn non_negative(value: &str) -> Result<u32, String> {
    let n = int(value)?;
    u32::try_from(n).map_err(|_| format!("{value:?} must not be negative"))
}

/// -1 means "derive from tickTime", as in ZooKeeper; any other negative is an error.
pub(super) fn session_timeout(value: &str) -> Result<Option<u32>, String> {
    match int(value)? {
        -1 => Ok(None),
        n => u32::try_from(n)
            .map(Some)
            .map_err(|_| format!("{value:?} must not be negative (use -1 for the default)")),
    }
}

pub(super) fn port(value: &str) -> Result<u16, String> {
    let n = int(value)?;
    u16::try_from(n).map_err(|_| format!("port out of range: {value:?} (0-65535)"))
}

/// java's `parseBoolean` in QuorumPeerConfig: true or false, any case, nothing else.
pub(super) fn strict_bool(value: &str) -> Result<bool, String> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(format!("invalid value {value:?}: use true or false"))
    }
}

/// An address to listen on: an IP literal, or a host name resolved now (ZooKeeper resolves at
/// start-up too). IPv4 is preferred so `localhost` means 127.0.0.1 everywhere.
pub(super) fn resolve(host: &str) -> Result<IpAddr, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip);
    }
    if bare.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    if bare.is_empty() {
        return Err(format!("{host:?} is not an address"));
    }
    let addrs: Vec<_> = (bare, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .map(|a| a.ip())
        .collect();
    addrs
        .iter()
        .find(|ip| ip.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("cannot resolve {host:?}: no addresses"))
}
