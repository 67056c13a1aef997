//! java.util.Properties syntax, which is how ZooKeeper reads `zoo.cfg`: `#`/`!` comments, the
//! key/value separators, continuation lines and backslash escapes.
//!
//! Owns turning text into (line, key, value) triples. Must never know what a key means nor
//! fail: Java accepts any text here, and each value is judged later, by its key.

/// Splits text in java.util.Properties syntax into (line number, key, value): `#`/`!` comments,
/// `=`, `:` or whitespace between key and value, a trailing backslash continuing the line, and
/// backslash escapes. ZooKeeper reads zoo.cfg with that class, so `clientPort 2181` is valid.
pub(super) fn properties(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, first)) = lines.next() {
        let mut logical = first.trim_start().to_string();
        if logical.is_empty() || logical.starts_with('#') || logical.starts_with('!') {
            continue;
        }
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        out.push((index + 1, unescape(key), unescape(value)));
    }
    out
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

fn split_key_value(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut key_end = line.len();
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || c.is_whitespace() {
            key_end = i;
            break;
        }
    }
    let key = &line[..key_end];
    let rest = line[key_end..].trim_start();
    let rest = match rest.strip_prefix(['=', ':']) {
        Some(after) => after.trim_start(),
        None => rest,
    };
    (key, rest)
}

pub(super) fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    // Java rejects a malformed \u escape; keep the text so the value check
                    // that follows reports it.
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}
