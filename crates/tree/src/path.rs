//! ZooKeeper path rules: what PathUtils.validatePath accepts, and parent/name splitting.

use corral_proto::ErrorCode;

/// Checks `path` the way ZooKeeper's PathUtils.validatePath does; every violation is
/// BadArguments on the wire. A sequential create is checked with its suffix appended (as
/// ZooKeeper's PrepRequestProcessor does), so a trailing '/' is fine there.
pub fn validate(path: &str) -> Result<(), ErrorCode> {
    let bad = Err(ErrorCode::BadArguments);
    if !path.starts_with('/') {
        return bad;
    }
    if path == "/" {
        return Ok(());
    }
    if path.ends_with('/') {
        return bad;
    }
    // Components between slashes: never empty, never "." or "..".
    for comp in path.split('/').skip(1) {
        if comp.is_empty() || comp == "." || comp == ".." {
            return bad;
        }
    }
    if path.chars().any(invalid_char) {
        return bad;
    }
    Ok(())
}

/// Characters Java's PathUtils refuses. Java works on UTF-16 units, so anything outside the
/// BMP (a surrogate pair there) is refused too.
fn invalid_char(c: char) -> bool {
    let c = c as u32;
    c == 0
        || (0x01..=0x1f).contains(&c)
        || (0x7f..=0x9f).contains(&c)
        || (0xd800..=0xf8ff).contains(&c)
        || (0xfff0..=0xffff).contains(&c)
        || c > 0xffff
}

/// The parent of a path: "/" for top-level nodes, None for "/" and for strings without '/'.
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    let i = path.rfind('/')?;
    Some(if i == 0 { "/" } else { path.get(..i)? })
}

/// The last component (the child name under the parent).
pub fn name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => path.get(i + 1..).unwrap_or(""),
        None => path,
    }
}

/// The system nodes a client may not delete.
pub fn is_special(path: &str) -> bool {
    matches!(
        path,
        "/" | "/zookeeper" | "/zookeeper/quota" | "/zookeeper/config"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        for ok in ["/", "/a", "/a/b", "/a.b", "/...", "/a/.b", "/é"] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "a",
            "/a/",
            "//",
            "/a//b",
            "/.",
            "/..",
            "/a/./b",
            "/a/..",
            "/a\0",
            "/a\u{1}",
            "/\u{7f}",
            "/\u{e000}",
            "/\u{fff0}",
            "/😀",
        ] {
            assert_eq!(validate(bad), Err(ErrorCode::BadArguments), "{bad:?}");
        }
    }

    #[test]
    fn split() {
        assert_eq!(parent("/"), None);
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("a"), None);
        assert_eq!(name("/a/b"), "b");
    }
}
