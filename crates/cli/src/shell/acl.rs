//! ACLs as people type them: `scheme:id:perms[,scheme:id:perms...]`, perms from `cdrwa`,
//! read with zkCli's leniency (bad entries reported and skipped, not refused).
//! The id may itself contain colons (`digest:user:hash`, IPv6 addresses), so the scheme ends
//! at the first colon and the permissions start after the last one.

use corral_proto::{perms, Acl, Id};

/// Parses a comma-separated ACL list as zkCli does: an entry without two colons is skipped,
/// an unknown permission letter is ignored, and each is reported by a line for stderr.
pub fn parse_acl(text: &str) -> (Vec<Acl>, Vec<String>) {
    let mut acl = Vec::new();
    let mut warnings = Vec::new();
    for entry in text.split(',') {
        let (Some(first), Some(last)) = (entry.find(':'), entry.rfind(':')) else {
            warnings.push(format!("{entry} does not have the form scheme:id:perm"));
            continue;
        };
        if first == last {
            warnings.push(format!("{entry} does not have the form scheme:id:perm"));
            continue;
        }
        let (perms, unknown) = parse_perms(&entry[last + 1..]);
        warnings.extend(
            unknown
                .into_iter()
                .map(|c| format!("Unknown perm type: {c}")),
        );
        acl.push(Acl {
            perms,
            id: Id {
                scheme: entry[..first].to_string(),
                id: entry[first + 1..last].to_string(),
            },
        });
    }
    (acl, warnings)
}

/// `cdrwa` letters (lower case only, as zkCli) to permission bits, and the letters unknown.
pub fn parse_perms(text: &str) -> (i32, Vec<char>) {
    let mut bits = 0;
    let mut unknown = Vec::new();
    for c in text.chars() {
        match c {
            'c' => bits |= perms::CREATE,
            'd' => bits |= perms::DELETE,
            'r' => bits |= perms::READ,
            'w' => bits |= perms::WRITE,
            'a' => bits |= perms::ADMIN,
            other => unknown.push(other),
        }
    }
    (bits, unknown)
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
        let (acl, warnings) = parse_acl("world:anyone:cdrwa,digest:u:hash:r");
        assert!(warnings.is_empty());
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
        let (acl, _) = parse_acl("ip:::1:rw");
        assert_eq!(acl[0].id.id, "::1");
        assert_eq!(acl[0].perms, perms::READ | perms::WRITE);
        let (acl, _) = parse_acl("auth::cdrwa");
        assert_eq!(
            (acl[0].id.scheme.as_str(), acl[0].id.id.as_str()),
            ("auth", "")
        );
    }

    #[test]
    fn malformed_entries_are_reported_and_skipped() {
        let (acl, w) = parse_acl("foo");
        assert!(acl.is_empty());
        assert_eq!(w, vec!["foo does not have the form scheme:id:perm"]);
        let (acl, w) = parse_acl("world:anyone:rx");
        assert_eq!(acl[0].perms, perms::READ);
        assert_eq!(w, vec!["Unknown perm type: x"]);
        let (acl, w) = parse_acl("world:anyone:R");
        assert_eq!((acl[0].perms, w.len()), (0, 1));
    }

    #[test]
    fn perms_round_trip() {
        assert_eq!(format_perms(perms::ALL), "cdrwa");
        assert_eq!(format_perms(perms::READ | perms::ADMIN), "ra");
        assert_eq!(format_perms(0), "");
        for bits in 0..=perms::ALL {
            assert_eq!(parse_perms(&format_perms(bits)).0, bits);
        }
        let (acl, _) = parse_acl("world:anyone:cdrwa");
        assert_eq!(format_acl_entry(&acl[0]), "'world,'anyone\n: cdrwa");
    }
}
