//! ACL schemes: world, auth, digest (SHA-1/base64, superDigest), ip.
//!
//! Identities are [`Id`]s the keeper attaches to a connection: `ip:<client address>` always,
//! `digest:<user:hash>` per successful digest auth, and `super:` when that auth matched the
//! configured superDigest. `super` bypasses every check.

use std::net::IpAddr;

use base64::Engine;
use corral_proto::{Acl, ErrorCode, Id};
use sha1::{Digest, Sha1};

pub use corral_proto::{open_acl_unsafe, read_acl_unsafe};

/// The digest id for `user:password`: `user:base64(sha1("user:password"))`. The user is the
/// text before the first ':' (all of it when there is none), as ZooKeeper computes it.
pub fn digest(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// The identities a digest AuthPacket grants: `digest:<user:hash>`, preceded by `super:` when
/// it matches the superDigest. Non-UTF-8 bytes are replaced as Java's `new String` does.
pub fn digest_auth_identities(auth: &[u8], super_digest: Option<&str>) -> Vec<Id> {
    let text = String::from_utf8_lossy(auth);
    let d = digest(&text);
    let mut ids = Vec::new();
    if super_digest == Some(d.as_str()) {
        ids.push(Id {
            scheme: "super".into(),
            id: String::new(),
        });
    }
    ids.push(Id {
        scheme: "digest".into(),
        id: d,
    });
    ids
}

/// Whether `identities` hold permission `perm` (any of its bits) under `acl`. An empty ACL
/// allows everything, as in ZooKeeper.
pub fn check(acl: &[Acl], perm: i32, identities: &[Id]) -> bool {
    if acl.is_empty() || identities.iter().any(|i| i.scheme == "super") {
        return true;
    }
    acl.iter().filter(|a| a.perms & perm != 0).any(|a| {
        let id = &a.id;
        if id.scheme == "world" && id.id == "anyone" {
            return true;
        }
        identities
            .iter()
            .filter(|c| c.scheme == id.scheme)
            .any(|c| match id.scheme.as_str() {
                "digest" => c.id == id.id,
                "ip" => ip_matches(&c.id, &id.id),
                _ => false,
            })
    })
}

/// Validates and expands an ACL for create/setACL (ZooKeeper's fixupACL): duplicates are
/// dropped, `auth` becomes one entry per authenticated (non-ip, non-super) identity of the
/// caller, and every other id must be valid for its scheme. Any failure is InvalidACL.
pub fn fixup(acl: &[Acl], identities: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    let mut uniq: Vec<&Acl> = Vec::new();
    for a in acl {
        if !uniq.contains(&a) {
            uniq.push(a);
        }
    }
    if uniq.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out = Vec::new();
    for a in uniq {
        let id = &a.id;
        if id.scheme == "world" && id.id == "anyone" {
            out.push(a.clone());
        } else if id.scheme == "auth" {
            // Only providers that "authenticate" count: digest does, ip does not, and
            // `super` has no provider of its own in ZooKeeper.
            let mut any = false;
            for c in identities.iter().filter(|c| c.scheme == "digest") {
                any = true;
                out.push(Acl {
                    perms: a.perms,
                    id: c.clone(),
                });
            }
            if !any {
                return Err(ErrorCode::InvalidAcl);
            }
        } else if is_valid_id(id) {
            out.push(a.clone());
        } else {
            return Err(ErrorCode::InvalidAcl);
        }
    }
    Ok(out)
}

fn is_valid_id(id: &Id) -> bool {
    match id.scheme.as_str() {
        "digest" => java_split(&id.id, ':').len() == 2,
        "ip" => ip_valid(&id.id),
        _ => false,
    }
}

/// Java's `String.split(sep)`: trailing empty pieces are dropped.
fn java_split(s: &str, sep: char) -> Vec<&str> {
    let mut parts: Vec<&str> = s.split(sep).collect();
    while parts.last() == Some(&"") {
        parts.pop();
    }
    parts
}

/// What getACL shows a caller without ADMIN: digest hashes replaced by "x".
pub fn redact_digests(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| {
            if a.id.scheme != "digest" {
                return a.clone();
            }
            let user = a.id.id.split(':').next().unwrap_or("");
            let redacted = if a.id.id.contains(':') {
                format!("{user}:x")
            } else {
                a.id.id.clone()
            };
            Acl {
                perms: a.perms,
                id: Id {
                    scheme: a.id.scheme.clone(),
                    id: redacted,
                },
            }
        })
        .collect()
}

/// An IPv4 address as ZooKeeper parses it (exactly four dot-separated integers 0..=255;
/// "1.2.3.4." is refused, "+1.2.3.4" accepted, as observed), or any IPv6 address std
/// understands (ZooKeeper 3.8.0 refuses IPv6 ACLs; later versions accept them).
fn addr_bytes(s: &str) -> Option<Vec<u8>> {
    if s.contains(':') {
        return match s.parse::<IpAddr>() {
            Ok(IpAddr::V6(a)) => Some(a.octets().to_vec()),
            _ => None,
        };
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    parts
        .iter()
        .map(|p| p.parse::<i32>().ok().and_then(|n| u8::try_from(n).ok()))
        .collect()
}

/// Whether an `ip` ACL id (`addr` or `addr/bits`) is well formed.
pub fn ip_valid(expr: &str) -> bool {
    let (addr, bits) = match expr.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (expr, None),
    };
    let Some(bytes) = addr_bytes(addr) else {
        return false;
    };
    match bits {
        None => true,
        Some(b) => b
            .parse::<i32>()
            .is_ok_and(|n| n >= 0 && n as usize <= bytes.len() * 8),
    }
}

/// Whether client address `client` falls in the ACL expression `expr` (`addr[/bits]`).
pub fn ip_matches(client: &str, expr: &str) -> bool {
    let (addr, bits) = match expr.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (expr, None),
    };
    let (Some(want), Some(have)) = (addr_bytes(addr), addr_bytes(client)) else {
        return false;
    };
    if want.len() != have.len() {
        return false;
    }
    let bits = match bits {
        None => want.len() * 8,
        Some(b) => match b.parse::<i32>() {
            Ok(n) if n >= 0 && n as usize <= want.len() * 8 => n as usize,
            _ => return false,
        },
    };
    want.iter().zip(&have).enumerate().all(|(i, (w, h))| {
        let keep = bits.saturating_sub(i * 8).min(8);
        let mask: u8 = if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
        w & mask == h & mask
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::perms;

    fn id(s: &str, i: &str) -> Id {
        Id {
            scheme: s.into(),
            id: i.into(),
        }
    }

    #[test]
    fn digest_matches_zookeeper() {
        // Known value: base64(sha1("super:secret")).
        assert_eq!(digest("super:secret"), "super:lK75jTNcA+U9vtVEw5vB51mj/w4=");
        let plain = digest_auth_identities(b"super:secret", None);
        assert_eq!(
            plain,
            vec![id("digest", "super:lK75jTNcA+U9vtVEw5vB51mj/w4=")]
        );
        let ids =
            digest_auth_identities(b"super:secret", Some("super:lK75jTNcA+U9vtVEw5vB51mj/w4="));
        assert_eq!(ids[0], id("super", ""));
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn ip() {
        assert!(ip_matches("10.1.2.3", "10.1.0.0/16"));
        assert!(!ip_matches("10.2.2.3", "10.1.0.0/16"));
        assert!(ip_matches("10.1.2.3", "10.1.2.3"));
        assert!(ip_matches("1.2.3.4", "0.0.0.0/0"));
        assert!(ip_matches("::1", "0:0:0:0:0:0:0:1"));
        assert!(ip_matches("2001:db8::5", "2001:db8::/32"));
        assert!(!ip_matches("127.0.0.1", "::1"));
        assert!(
            ip_valid("1.2.3.4/32")
                && !ip_valid("1.2.3.4/33")
                && !ip_valid("1.2.3")
                && !ip_valid("300.1.1.1")
        );
        assert!(!ip_valid("1.2.3.4/x") && !ip_valid("host"));
    }

    #[test]
    fn fixup_rules() {
        let a = |s: &str, i: &str| Acl {
            perms: 31,
            id: id(s, i),
        };
        assert_eq!(fixup(&[], &[]), Err(ErrorCode::InvalidAcl));
        assert_eq!(
            fixup(&[a("auth", "")], &[id("ip", "1.2.3.4")]),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup(&[a("auth", "")], &[id("digest", "u:h")]),
            Ok(vec![a("digest", "u:h")])
        );
        assert_eq!(
            fixup(&[a("digest", "nocolon")], &[]),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(fixup(&[a("digest", "u:")], &[]), Err(ErrorCode::InvalidAcl));
        assert_eq!(
            fixup(&[a("world", "nobody")], &[]),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(fixup(&[a("sasl", "x")], &[]), Err(ErrorCode::InvalidAcl));
        let w = a("world", "anyone");
        assert_eq!(fixup(&[w.clone(), w.clone()], &[]), Ok(vec![w]));
    }

    #[test]
    fn checks() {
        let acl = vec![Acl {
            perms: perms::READ,
            id: id("digest", "u:h"),
        }];
        assert!(check(&acl, perms::READ, &[id("digest", "u:h")]));
        assert!(!check(&acl, perms::WRITE, &[id("digest", "u:h")]));
        assert!(!check(&acl, perms::READ, &[id("digest", "u:x")]));
        assert!(check(&acl, perms::WRITE, &[id("super", "")]));
        assert!(check(&[], perms::WRITE, &[]));
        assert_eq!(redact_digests(&acl)[0].id.id, "u:x");
    }
}
