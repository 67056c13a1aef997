//! Turning a typed line into a [`Command`]: splitting into words (with quotes, so data may
//! hold spaces), options, and the checks zkCli makes before anything is sent.

use corral_proto::{Acl, CreateMode};

use super::acl::parse_acl;

/// One shell command, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ls {
        path: String,
        recursive: bool,
        stat: bool,
        watch: bool,
    },
    Get {
        path: String,
        stat: bool,
        watch: bool,
    },
    Stat {
        path: String,
        watch: bool,
    },
    Create {
        path: String,
        data: Vec<u8>,
        acl: Option<Vec<Acl>>,
        mode: CreateMode,
        ttl: Option<i64>,
    },
    Set {
        path: String,
        data: Vec<u8>,
        version: i32,
        stat: bool,
    },
    Delete {
        path: String,
        version: i32,
    },
    DeleteAll {
        path: String,
    },
    GetAcl {
        path: String,
        stat: bool,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
        stat: bool,
    },
    AddAuth {
        scheme: String,
        auth: Vec<u8>,
    },
    Sync {
        path: String,
    },
    WhoAmI,
    Help,
    Quit,
}

/// One line of help per command; also the usage shown when a command is typed wrong.
pub const USAGES: &[(&str, &str)] = &[
    ("addauth", "addauth scheme auth"),
    ("create", "create [-s] [-e] [-c] [-t ttl] path [data] [acl]"),
    ("delete", "delete [-v version] path"),
    ("deleteall", "deleteall path"),
    ("get", "get [-s] [-w] path"),
    ("getAcl", "getAcl [-s] path"),
    ("help", "help"),
    ("ls", "ls [-s] [-w] [-R] path"),
    ("quit", "quit"),
    ("set", "set [-s] [-v version] path data"),
    ("setAcl", "setAcl [-s] [-v version] path acl"),
    ("stat", "stat [-w] path"),
    ("sync", "sync path"),
    ("whoami", "whoami"),
];

pub fn usage(cmd: &str) -> String {
    USAGES
        .iter()
        .find(|(name, _)| *name == cmd)
        .map(|(_, u)| u.to_string())
        .unwrap_or_default()
}

/// Splits a line into words. Double or single quotes group words and are removed, so
/// `set /x "a b"` sets the data `a b`; an unterminated quote runs to the end of the line.
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for ch in line.chars() {
        match quote {
            Some(q) if ch == q => quote = None,
            Some(_) => cur.push(ch),
            None if ch == '"' || ch == '\'' => {
                quote = Some(ch);
                in_word = true;
            }
            None if ch.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(ch);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Options of one command: which flags it knows and which of them take a value.
struct Opts {
    flags: Vec<char>,
    values: Vec<(char, String)>,
    positional: Vec<String>,
}

impl Opts {
    /// A word is an option only if it is exactly one this command knows (`-s`, `-v 3`);
    /// anything else, `-1` included, is an argument, so data may start with a dash.
    fn parse(cmd: &str, words: &[String], flags: &str, valued: &str) -> Result<Opts, String> {
        let mut o = Opts {
            flags: Vec::new(),
            values: Vec::new(),
            positional: Vec::new(),
        };
        let mut it = words.iter();
        while let Some(w) = it.next() {
            let mut chars = w.chars();
            let opt = match (chars.next(), chars.next(), chars.next()) {
                (Some('-'), Some(c), None) => Some(c),
                _ => None,
            };
            match opt {
                Some(c) if flags.contains(c) => o.flags.push(c),
                Some(c) if valued.contains(c) => match it.next() {
                    Some(v) => o.values.push((c, v.clone())),
                    None => return Err(format!("option -{c} needs a value\n{}", usage(cmd))),
                },
                _ => o.positional.push(w.clone()),
            }
        }
        Ok(o)
    }

    fn flag(&self, c: char) -> bool {
        self.flags.contains(&c)
    }

    fn value(&self, c: char) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| *k == c)
            .map(|(_, v)| v.as_str())
    }

    /// The positional arguments, checked against how many the command takes.
    fn args(&self, cmd: &str, min: usize, max: usize) -> Result<&[String], String> {
        let n = self.positional.len();
        if n < min || n > max {
            return Err(usage(cmd));
        }
        Ok(&self.positional)
    }

    fn number<T: std::str::FromStr>(&self, c: char, what: &str) -> Result<Option<T>, String> {
        match self.value(c) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("{what} must be a number: {v}")),
        }
    }
}

/// Paths are checked here, as zkCli does, so a typo does not cost a round trip.
pub fn check_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("Path must start with / character: {path}"));
    }
    if path.len() > 1 && path.ends_with('/') {
        return Err(format!("Path must not end with / character: {path}"));
    }
    if path.contains("//") {
        return Err(format!("empty node name specified: {path}"));
    }
    if path.contains('\0') {
        return Err(format!("null character not allowed: {path}"));
    }
    Ok(path.to_string())
}

/// Parses one line. Ok(None) for a blank line.
pub fn parse_command(line: &str) -> Result<Option<Command>, String> {
    let words = split_words(line);
    let Some((name, rest)) = words.split_first() else {
        return Ok(None);
    };
    let cmd = match name.as_str() {
        "ls" | "ls2" => {
            let o = Opts::parse("ls", rest, "swR", "")?;
            let a = o.args("ls", 1, 1)?;
            Command::Ls {
                path: check_path(&a[0])?,
                recursive: o.flag('R'),
                stat: o.flag('s'),
                watch: o.flag('w'),
            }
        }
        "get" => {
            let o = Opts::parse("get", rest, "sw", "")?;
            let a = o.args("get", 1, 1)?;
            Command::Get {
                path: check_path(&a[0])?,
                stat: o.flag('s'),
                watch: o.flag('w'),
            }
        }
        "stat" => {
            let o = Opts::parse("stat", rest, "w", "")?;
            let a = o.args("stat", 1, 1)?;
            Command::Stat {
                path: check_path(&a[0])?,
                watch: o.flag('w'),
            }
        }
        "create" => {
            let o = Opts::parse("create", rest, "sec", "t")?;
            let a = o.args("create", 1, 3)?;
            let (seq, eph, container) = (o.flag('s'), o.flag('e'), o.flag('c'));
            let ttl: Option<i64> = o.number('t', "ttl")?;
            if container && (seq || eph) {
                return Err("-c cannot be combined with -s or -e. Containers cannot be ephemeral or sequential."
                    .into());
            }
            if ttl.is_some() && (eph || container) {
                return Err("TTLs cannot be used with Ephemeral or Container znodes".into());
            }
            if let Some(t) = ttl {
                if t <= 0 {
                    return Err(format!("ttl must be positive: {t}"));
                }
            }
            let mode = match (ttl.is_some(), container, eph, seq) {
                (true, _, _, false) => CreateMode::PersistentWithTtl,
                (true, _, _, true) => CreateMode::PersistentSequentialWithTtl,
                (false, true, _, _) => CreateMode::Container,
                (false, false, true, true) => CreateMode::EphemeralSequential,
                (false, false, true, false) => CreateMode::Ephemeral,
                (false, false, false, true) => CreateMode::PersistentSequential,
                (false, false, false, false) => CreateMode::Persistent,
            };
            let data = a.get(1).map(|d| d.as_bytes().to_vec()).unwrap_or_default();
            let acl = a.get(2).map(|s| parse_acl(s)).transpose()?;
            Command::Create {
                path: check_path(&a[0])?,
                data,
                acl,
                mode,
                ttl,
            }
        }
        "set" => {
            let o = Opts::parse("set", rest, "s", "v")?;
            let a = o.args("set", 2, 2)?;
            let version = o.number('v', "version")?.unwrap_or(-1);
            Command::Set {
                path: check_path(&a[0])?,
                data: a[1].as_bytes().to_vec(),
                version,
                stat: o.flag('s'),
            }
        }
        "delete" => {
            let o = Opts::parse("delete", rest, "", "v")?;
            let a = o.args("delete", 1, 1)?;
            Command::Delete {
                path: check_path(&a[0])?,
                version: o.number('v', "version")?.unwrap_or(-1),
            }
        }
        "deleteall" | "rmr" => {
            let o = Opts::parse("deleteall", rest, "", "b")?;
            let a = o.args("deleteall", 1, 1)?;
            Command::DeleteAll {
                path: check_path(&a[0])?,
            }
        }
        "getAcl" => {
            let o = Opts::parse("getAcl", rest, "s", "")?;
            let a = o.args("getAcl", 1, 1)?;
            Command::GetAcl {
                path: check_path(&a[0])?,
                stat: o.flag('s'),
            }
        }
        "setAcl" => {
            let o = Opts::parse("setAcl", rest, "s", "v")?;
            let a = o.args("setAcl", 2, 2)?;
            Command::SetAcl {
                path: check_path(&a[0])?,
                acl: parse_acl(&a[1])?,
                version: o.number('v', "version")?.unwrap_or(-1),
                stat: o.flag('s'),
            }
        }
        "addauth" => {
            let o = Opts::parse("addauth", rest, "", "")?;
            let a = o.args("addauth", 1, 2)?;
            Command::AddAuth {
                scheme: a[0].clone(),
                auth: a.get(1).map(|s| s.as_bytes().to_vec()).unwrap_or_default(),
            }
        }
        "sync" => {
            let o = Opts::parse("sync", rest, "", "")?;
            let a = o.args("sync", 1, 1)?;
            Command::Sync {
                path: check_path(&a[0])?,
            }
        }
        "whoami" => Command::WhoAmI,
        "help" | "?" => Command::Help,
        "quit" | "exit" => Command::Quit,
        other => return Err(format!("Command not found: {other}")),
    };
    Ok(Some(cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Command {
        match parse_command(line) {
            Ok(Some(c)) => c,
            other => panic!("{line:?} -> {other:?}"),
        }
    }

    #[test]
    fn words_and_quotes() {
        assert_eq!(split_words("  ls   / "), vec!["ls", "/"]);
        assert_eq!(
            split_words(r#"set /x "a b  c""#),
            vec!["set", "/x", "a b  c"]
        );
        assert_eq!(split_words("set /x 'it\"s'"), vec!["set", "/x", "it\"s"]);
        assert_eq!(split_words(r#"set /x """#), vec!["set", "/x", ""]);
        assert_eq!(
            split_words(r#"create /x "unterminated rest"#),
            vec!["create", "/x", "unterminated rest"]
        );
        assert!(split_words("   ").is_empty());
        assert_eq!(parse_command("").ok(), Some(None));
    }

    #[test]
    fn ls_get_stat_flags() {
        assert_eq!(
            parse("ls /"),
            Command::Ls {
                path: "/".into(),
                recursive: false,
                stat: false,
                watch: false
            }
        );
        assert_eq!(
            parse("ls -R -s /a"),
            Command::Ls {
                path: "/a".into(),
                recursive: true,
                stat: true,
                watch: false
            }
        );
        assert_eq!(
            parse("ls /a -w"),
            Command::Ls {
                path: "/a".into(),
                recursive: false,
                stat: false,
                watch: true
            }
        );
        assert_eq!(
            parse("get -s -w /a"),
            Command::Get {
                path: "/a".into(),
                stat: true,
                watch: true
            }
        );
        assert_eq!(
            parse("stat /a"),
            Command::Stat {
                path: "/a".into(),
                watch: false
            }
        );
        assert!(parse_command("ls").is_err());
        assert!(parse_command("ls a")
            .unwrap_err()
            .contains("Path must start with /"));
        assert!(parse_command("get /a/").is_err());
        assert!(parse_command("get /a//b").is_err());
        assert!(parse_command("frobnicate /")
            .unwrap_err()
            .contains("Command not found"));
    }

    #[test]
    fn create_modes() {
        let mode = |line: &str| match parse(line) {
            Command::Create { mode, .. } => mode,
            c => panic!("{c:?}"),
        };
        assert_eq!(mode("create /a"), CreateMode::Persistent);
        assert_eq!(mode("create -e /a"), CreateMode::Ephemeral);
        assert_eq!(mode("create -s /a"), CreateMode::PersistentSequential);
        assert_eq!(mode("create -e -s /a"), CreateMode::EphemeralSequential);
        assert_eq!(mode("create -c /a"), CreateMode::Container);
        assert_eq!(mode("create -t 500 /a"), CreateMode::PersistentWithTtl);
        assert_eq!(
            mode("create -s -t 500 /a"),
            CreateMode::PersistentSequentialWithTtl
        );
        assert!(parse_command("create -c -e /a").is_err());
        assert!(parse_command("create -t 5 -e /a").is_err());
        assert!(parse_command("create -t x /a")
            .unwrap_err()
            .contains("number"));
        assert!(parse_command("create -t").is_err());
        assert!(parse_command("create /a b c d").is_err());
    }

    #[test]
    fn create_data_and_acl() {
        match parse(r#"create /a "hello there" world:anyone:r"#) {
            Command::Create {
                path,
                data,
                acl: Some(acl),
                ttl: None,
                ..
            } => {
                assert_eq!(path, "/a");
                assert_eq!(data, b"hello there");
                assert_eq!(acl.len(), 1);
                assert_eq!(acl[0].perms, corral_proto::perms::READ);
            }
            c => panic!("{c:?}"),
        }
        match parse("create /a") {
            Command::Create {
                data, acl: None, ..
            } => assert!(data.is_empty()),
            c => panic!("{c:?}"),
        }
        assert!(parse_command("create /a d world:anyone:q").is_err());
    }

    #[test]
    fn set_delete_versions() {
        assert_eq!(
            parse("set -v 3 /a -1"),
            Command::Set {
                path: "/a".into(),
                data: b"-1".to_vec(),
                version: 3,
                stat: false
            }
        );
        assert_eq!(
            parse("set /a x -s"),
            Command::Set {
                path: "/a".into(),
                data: b"x".to_vec(),
                version: -1,
                stat: true
            }
        );
        assert!(parse_command("set /a").is_err());
        assert!(parse_command("set -v /a x").is_err());
        assert_eq!(
            parse("delete /a"),
            Command::Delete {
                path: "/a".into(),
                version: -1
            }
        );
        assert_eq!(
            parse("delete -v 7 /a"),
            Command::Delete {
                path: "/a".into(),
                version: 7
            }
        );
        assert_eq!(
            parse("deleteall /a"),
            Command::DeleteAll { path: "/a".into() }
        );
        assert_eq!(parse("rmr /a"), Command::DeleteAll { path: "/a".into() });
    }

    #[test]
    fn acl_auth_misc() {
        match parse("setAcl -v 2 /a world:anyone:cdrwa,digest:u:hash:r") {
            Command::SetAcl {
                path,
                acl,
                version,
                stat,
            } => {
                assert_eq!(
                    (path.as_str(), version, stat, acl.len()),
                    ("/a", 2, false, 2)
                );
            }
            c => panic!("{c:?}"),
        }
        assert!(parse_command("setAcl /a").is_err());
        assert_eq!(
            parse("getAcl -s /a"),
            Command::GetAcl {
                path: "/a".into(),
                stat: true
            }
        );
        assert_eq!(
            parse("addauth digest u:p"),
            Command::AddAuth {
                scheme: "digest".into(),
                auth: b"u:p".to_vec()
            }
        );
        assert_eq!(parse("sync /a"), Command::Sync { path: "/a".into() });
        assert_eq!(parse("whoami"), Command::WhoAmI);
        assert_eq!(parse("help"), Command::Help);
        assert_eq!(parse("quit"), Command::Quit);
    }
}
