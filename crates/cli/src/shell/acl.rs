//! ACLs as people type them: `scheme:id:perms[,scheme:id:perms...]`, perms from `cdrwa`.
//! The id may itself contain colons (`digest:user:hash`, IPv6 addresses), so the scheme ends
//! at the first colon and the permissions start after the last one.

use corral_proto::{perms, Acl, Id};

/// Parses a comma-separated ACL list.
pub fn parse_acl(text: &str) -> Result<Vec<Acl>, String> {
    let mut acl = Vec::new();
    for entry in text.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let (Some(first), Some(last)) = (entry.find(':'), entry.rfind(':')) else {
            return Err(format!("{entry} does not have the form scheme:id:perm"));
        };
        if first == last {
            return Err(format!("{entry} does not have the form scheme:id:perm"));
        }
        let scheme = &entry[..first];
        let id = &entry[first + 1..last];
        if scheme.is_empty() {
            return Err(format!("{entry}: the scheme is empty"));
        }
        let perms = parse_perms(&entry[last + 1..])?;
        acl.push(Acl {
            perms,
            id: Id {
                scheme: scheme.to_string(),
                id: id.to_string(),
            },
        });
    }
    if acl.is_empty() {
        return Err("the ACL is empty".into());
    }
    Ok(acl)
}

/// `cdrwa` letters, in any order, to permission bits.
pub fn parse_perms(text: &str) -> Result<i32, String> {
    let mut bits = 0;
    for c in text.chars() {
        bits |= match c.to_ascii_lowercase() {
            'c' => perms::CREATE,
            'd' => perms::DELETE,
            'r' => perms::READ,
            'w' => perms::WRITE,
            'a' => perms::ADMIN,
            other => {
                return Err(format!(
                    "unknown permission '{other}' (use the letters c, d, r, w, a)"
                ))
            }
        };
    }
    Ok(bits)
}

/// Permission bits as letters, in zkCli's order (c d r w a).
pub fn format_perms(bits: i32) -> String {
    [
        (perms::CREATE, 'c'),
        (perms::DELETE, 'd'),
        (perms::READ, 'r'),
        (perms::WRITE, 'w'),
        (perms::ADMIN, 'a'),
    ]
    .iter()
    .filter(|(b, _)| bits & b != 0)
    .map(|(_, c)| *c)
    .collect()
}

/// One ACL entry the way zkCli's getAcl prints it.
pub fn format_acl_entry(a: &Acl) -> String {
    format!("'{},'{}\n: {}", a.id.scheme, a.id.id, format_perms(a.perms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_and_digest() {
        let acl = parse_acl("world:anyone:cdrwa,digest:u:hash:r").expect("valid");
        assert_eq!(acl.len(), 2);
        assert_eq!(
            (
                acl[0].id.scheme.as_str(),
                acl[0].id.id.as_str(),
                acl[0].perms
            ),
            ("world", "anyone", perms::ALL)
        );
        assert_eq!(
            (
                acl[1].id.scheme.as_str(),
                acl[1].id.id.as_str(),
                acl[1].perms
            ),
            ("digest", "u:hash", perms::READ)
        );
    }

    #[test]
    fn ids_with_colons_and_empty_ids() {
        let acl = parse_acl("ip:::1:rw").expect("ipv6");
        assert_eq!(acl[0].id.id, "::1");
        assert_eq!(acl[0].perms, perms::READ | perms::WRITE);
        let acl = parse_acl("auth::cdrwa").expect("auth");
        assert_eq!(
            (acl[0].id.scheme.as_str(), acl[0].id.id.as_str()),
            ("auth", "")
        );
        let acl = parse_acl("digest:u:h=:").expect("no perms");
        assert_eq!(acl[0].perms, 0);
        assert_eq!(
            parse_acl(" world:anyone:r , ip:10.0.0.1:a ")
                .expect("spaces")
                .len(),
            2
        );
    }

    #[test]
    fn rejects_malformed() {
        assert!(parse_acl("").is_err());
        assert!(parse_acl("world").is_err());
        assert!(parse_acl("world:anyone").is_err());
        assert!(parse_acl(":anyone:r").is_err());
        assert!(parse_acl("world:anyone:rx").is_err());
    }

    #[test]
    fn perms_round_trip() {
        assert_eq!(format_perms(perms::ALL), "cdrwa");
        assert_eq!(format_perms(perms::READ | perms::ADMIN), "ra");
        assert_eq!(format_perms(0), "");
        assert_eq!(parse_perms("ADWRC").expect("upper case"), perms::ALL);
        for bits in 0..=perms::ALL {
            assert_eq!(parse_perms(&format_perms(bits)).expect("round trip"), bits);
        }
        let a = &parse_acl("world:anyone:cdrwa").expect("valid")[0];
        assert_eq!(format_acl_entry(a), "'world,'anyone\n: cdrwa");
    }
}
