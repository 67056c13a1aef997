//! Turning a typed line into a [`Command`] the way zkCli 3.8 does, so a script written for
//! zkCli parses the same here: its word splitting, its option parser's rules (commons-cli's
//! DefaultParser: options anywhere, `-sw` bundles, `-mVALUE`, `--` ends options, an unknown
//! `-x` refused by name) and the usage line each command answers a wrong line with.
//! Nothing here talks to a server.

/// zkCli's usage lines, in its order (sorted by command name, as Java sorts strings).
pub const USAGES: &[(&str, &str)] = &[
    (
        "addWatch",
        "[-m mode] path # optional mode is one of [PERSISTENT, PERSISTENT_RECURSIVE] - default is PERSISTENT_RECURSIVE",
    ),
    ("addauth", "scheme auth"),
    ("close", ""),
    ("config", "[-c] [-w] [-s]"),
    ("connect", "host:port"),
    ("create", "[-s] [-e] [-c] [-t ttl] path [data] [acl]"),
    ("delete", "[-v version] path"),
    ("deleteall", "path [-b batch size]"),
    ("delquota", "[-n|-b|-N|-B] path"),
    ("get", "[-s] [-w] path"),
    ("getAcl", "[-s] path"),
    ("getAllChildrenNumber", "path"),
    ("getEphemerals", "path"),
    ("history", ""),
    ("listquota", "path"),
    ("ls", "[-s] [-w] [-R] path"),
    ("printwatches", "on|off"),
    ("quit", ""),
    (
        "reconfig",
        "[-s] [-v version] [[-file path] | [-members serverID=host:port1:port2;port3[,...]*]] | [-add serverId=host:port1:port2;port3[,...]]* [-remove serverId[,...]*]",
    ),
    ("redo", "cmdno"),
    ("removewatches", "path [-c|-d|-a] [-l]"),
    ("set", "[-s] [-v version] path data"),
    ("setAcl", "[-s] [-v version] [-R] path acl"),
    ("setquota", "-n|-b|-N|-B val path"),
    ("stat", "[-w] path"),
    ("sync", "path"),
    ("version", ""),
    ("whoami", ""),
];

/// The command names, for completion.
pub fn command_names() -> impl Iterator<Item = &'static str> {
    USAGES.iter().map(|(n, _)| *n)
}

/// "cmd options", as zkCli prints a command's usage (with its trailing space when the
/// command takes nothing).
pub fn usage(cmd: &str) -> String {
    USAGES
        .iter()
        .find(|(name, _)| *name == cmd)
        .map(|(n, u)| format!("{n} {u}"))
        .unwrap_or_default()
}

/// What zkCli prints (on stderr) for an unknown command: its whole usage, then the error.
pub fn full_usage() -> String {
    let mut out = String::from(
        "ZooKeeper -server host:port -client-configuration properties-file cmd args\n",
    );
    for (n, u) in USAGES {
        out.push_str(&format!("\t{n} {u}\n"));
    }
    out
}

/// Splits a line into words as zkCli does: a word is a run of non-blanks not starting with a
/// quote, or a whole `"..."` / `'...'` (quotes removed). A quote that is never closed is
/// skipped, as zkCli's pattern skips it.
pub fn split_words(line: &str) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut words = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' {
            match chars[i + 1..].iter().position(|&x| x == c) {
                Some(end) => {
                    words.push(chars[i + 1..i + 1 + end].iter().collect());
                    i += end + 2;
                }
                None => i += 1,
            }
            continue;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() {
            i += 1;
        }
        words.push(chars[start..i].iter().collect());
    }
    words
}

/// One command's options, as commons-cli sees them: `flags` take no value, `valued` take one.
/// `group` lists options of which at most one may be given (setquota/delquota), `required`
/// says one of them must be.
struct OptSpec {
    flags: &'static str,
    valued: &'static str,
    group: Option<(&'static [(char, &'static str)], bool)>,
}

const QUOTA_GROUP: &[(char, &str)] = &[
    ('n', "num soft quota"),
    ('b', "bytes soft quota"),
    ('N', "num hard quota"),
    ('B', "bytes hard quota"),
];

/// The parsed line: options given (in order, with their values) and the other words, the
/// command name first (zkCli's `cl.getArgs()`).
#[derive(Debug, Default)]
pub struct Parsed {
    opts: Vec<(char, Option<String>)>,
    pub args: Vec<String>,
}

impl Parsed {
    pub fn has(&self, c: char) -> bool {
        self.opts.iter().any(|(k, _)| *k == c)
    }

    pub fn value(&self, c: char) -> Option<&str> {
        self.opts
            .iter()
            .find(|(k, _)| *k == c)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Java's message for an exception of commons-cli, as zkCli prints it (class name first).
fn cli_error(class: &str, msg: String) -> String {
    format!("org.apache.commons.cli.{class}: {msg}")
}

fn is_negative_number(s: &str) -> bool {
    s.len() > 1 && s.starts_with('-') && s[1..].parse::<f64>().is_ok()
}

fn parse_opts(words: &[String], spec: &OptSpec) -> Result<Parsed, String> {
    let known = |c: char| spec.flags.contains(c) || spec.valued.contains(c);
    let missing = |o: char| {
        cli_error(
            "MissingArgumentException",
            format!("Missing argument for option: {o}"),
        )
    };
    let mut p = Parsed::default();
    // The valued option still waiting for its value.
    let mut waiting: Option<char> = None;
    let mut only_args = false;
    for w in words {
        if only_args {
            p.args.push(w.clone());
            continue;
        }
        if w == "--" {
            only_args = true;
            continue;
        }
        if let Some(o) = waiting {
            // Any word that is not one of this command's options is the value.
            if !known_token(w, spec) || is_negative_number(w) {
                p.opts.push((o, Some(w.clone())));
                waiting = None;
                continue;
            }
            return Err(missing(o));
        }
        if w.len() < 2 || !w.starts_with('-') {
            p.args.push(w.clone());
            continue;
        }
        let unrecognized = || {
            cli_error(
                "UnrecognizedOptionException",
                format!("Unrecognized option: {w}"),
            )
        };
        let body = &w[1..];
        if body.starts_with('-') {
            return Err(unrecognized());
        }
        if let Some((name, value)) = body.split_once('=') {
            // `-m=VALUE`
            let mut nc = name.chars();
            match (nc.next(), nc.next()) {
                (Some(c), None) if spec.valued.contains(c) => {
                    add_opt(&mut p, spec, c, Some(value.to_string()))?;
                    continue;
                }
                _ => return Err(unrecognized()),
            }
        }
        // `-s`, a bundle of flags (`-sw`), or a valued option with its value attached (`-mX`).
        for (i, c) in body.char_indices() {
            if !known(c) {
                return Err(unrecognized());
            }
            if spec.valued.contains(c) {
                let value = &body[i + c.len_utf8()..];
                if value.is_empty() {
                    check_group(&p, spec, c)?;
                    waiting = Some(c);
                } else {
                    add_opt(&mut p, spec, c, Some(value.to_string()))?;
                }
                break;
            }
            add_opt(&mut p, spec, c, None)?;
        }
    }
    if let Some(o) = waiting {
        return Err(missing(o));
    }
    if let Some((group, true)) = spec.group {
        if !group.iter().any(|(c, _)| p.has(*c)) {
            let names: Vec<String> = group.iter().map(|(c, d)| format!("-{c} {d}")).collect();
            return Err(cli_error(
                "MissingOptionException",
                format!("Missing required option: [{}]", names.join(", ")),
            ));
        }
    }
    Ok(p)
}

/// Whether `w` would be read as an option of this command (so it cannot be a value).
fn known_token(w: &str, spec: &OptSpec) -> bool {
    w.starts_with('-')
        && w.chars()
            .nth(1)
            .is_some_and(|c| spec.flags.contains(c) || spec.valued.contains(c))
}

/// An option group allows one of its options only.
fn check_group(p: &Parsed, spec: &OptSpec, c: char) -> Result<(), String> {
    let Some((group, _)) = spec.group else {
        return Ok(());
    };
    if !group.iter().any(|(g, _)| *g == c) {
        return Ok(());
    }
    match p
        .opts
        .iter()
        .find(|(k, _)| *k != c && group.iter().any(|(g, _)| g == k))
    {
        Some((prev, _)) => Err(cli_error(
            "AlreadySelectedException",
            format!(
                "The option '{c}' was specified but an option from this group has already been selected: '{prev}'"
            ),
        )),
        None => Ok(()),
    }
}

fn add_opt(p: &mut Parsed, spec: &OptSpec, c: char, v: Option<String>) -> Result<(), String> {
    check_group(p, spec, c)?;
    p.opts.push((c, v));
    Ok(())
}

/// Java's PathUtils.validatePath, with its messages (zkCli prints them as they are).
pub fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("Path length must be > 0".into());
    }
    if !path.starts_with('/') {
        return Err("Path must start with / character".into());
    }
    // Java indexes UTF-16 units.
    let chars: Vec<u16> = path.encode_utf16().collect();
    if chars.len() == 1 {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err("Path must not end with / character".into());
    }
    let slash = u16::from(b'/');
    let dot = u16::from(b'.');
    let mut reason = None;
    let mut last = slash;
    for i in 1..chars.len() {
        let c = chars[i];
        let next_is_end_or_slash = i + 1 == chars.len() || chars[i + 1] == slash;
        if c == 0 {
            reason = Some(format!("null character not allowed @{i}"));
        } else if c == slash && last == slash {
            reason = Some(format!("empty node name specified @{i}"));
        } else if c == dot && last == dot {
            if chars[i - 2] == slash && next_is_end_or_slash {
                reason = Some(format!("relative paths not allowed @{i}"));
            }
        } else if c == dot {
            if chars[i - 1] == slash && next_is_end_or_slash {
                reason = Some(format!("relative paths not allowed @{i}"));
            }
        } else if (0x01..=0x1f).contains(&c)
            || (0x7f..=0x9f).contains(&c)
            || (0xd800..=0xf8ff).contains(&c)
            || c >= 0xfff0
        {
            reason = Some(format!("invalid character @{i}"));
        }
        if reason.is_some() {
            break;
        }
        last = c;
    }
    match reason {
        Some(r) => Err(format!("Invalid path string \"{path}\" caused by {r}")),
        None => Ok(()),
    }
}

/// One shell command, parsed as far as zkCli parses before running it. Values zkCli only
/// checks when it runs (numbers, ACLs) stay text here and are checked by the executor, so
/// the messages come out in zkCli's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ls {
        path: Option<String>,
        recursive: bool,
        stat: bool,
        watch: bool,
        help: bool,
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
        data: Option<Vec<u8>>,
        acl: Option<String>,
        ephemeral: bool,
        sequential: bool,
        container: bool,
        ttl: Option<String>,
    },
    Set {
        path: String,
        data: Vec<u8>,
        version: Option<String>,
        stat: bool,
    },
    Delete {
        path: String,
        version: Option<String>,
    },
    DeleteAll {
        path: String,
        batch: Option<String>,
    },
    GetAcl {
        path: String,
        stat: bool,
    },
    SetAcl {
        path: String,
        acl: String,
        version: Option<String>,
        stat: bool,
        recursive: bool,
    },
    AddAuth {
        scheme: String,
        auth: Option<Vec<u8>>,
    },
    Sync {
        path: String,
    },
    WhoAmI,
    AddWatch {
        path: String,
        recursive: bool,
    },
    RemoveWatches {
        path: String,
        /// 'c', 'd' or 'a' (any, also when none is given).
        kind: char,
        local: bool,
    },
    GetEphemerals {
        path: Option<String>,
    },
    GetAllChildrenNumber {
        path: Option<String>,
    },
    Config {
        client: bool,
        watch: bool,
        stat: bool,
    },
    SetQuota {
        path: String,
        /// The one limit given: 'n', 'b', 'N' or 'B', and its value as typed.
        which: char,
        value: String,
    },
    ListQuota {
        path: String,
    },
    DelQuota {
        path: String,
        which: Option<char>,
    },
    Reconfig {
        joining: Option<String>,
        leaving: Option<String>,
        members: Option<String>,
        /// The config version it applies to (-v, hex), -1 for any.
        version: i64,
        stat: bool,
    },
    Close,
    Version,
    /// Handled by the shell before it looks at the connection: connect, history, redo,
    /// printwatches, quit (their words, command name first).
    Shell(Vec<String>),
}

/// A parsed line: the command, and the lines zkCli prints on stderr while parsing it
/// (deprecation notes) before running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub cmd: Command,
    pub warnings: Vec<String>,
}

/// A line that cannot run: what to print on stderr and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub message: String,
    pub code: i32,
}

impl From<String> for Refused {
    fn from(message: String) -> Refused {
        Refused { message, code: 1 }
    }
}

const NO_OPTS: OptSpec = OptSpec {
    flags: "",
    valued: "",
    group: None,
};

fn spec(flags: &'static str, valued: &'static str) -> OptSpec {
    OptSpec {
        flags,
        valued,
        group: None,
    }
}

/// zkCli's "'ls path [watch]' has been deprecated" rule: a third word makes the third raw word
/// of the line `-w` and the line is parsed again.
fn deprecated_watch(
    words: &[String],
    spec: &OptSpec,
    p: Parsed,
    note: &str,
    warnings: &mut Vec<String>,
) -> Result<Parsed, String> {
    if p.args.len() <= 2 {
        return Ok(p);
    }
    let mut w = words.to_vec();
    w[2] = "-w".into();
    warnings.push(note.to_string());
    parse_opts(&w, spec)
}

/// Parses one line (its words, the command name first). `Ok(None)` for a blank line.
pub fn parse_words(words: &[String]) -> Result<Option<Line>, Refused> {
    let Some(name) = words.first() else {
        return Ok(None);
    };
    let mut warnings = Vec::new();
    let need = |p: &Parsed, n: usize, cmd: &str| -> Result<(), String> {
        if p.args.len() < n {
            Err(usage(cmd))
        } else {
            Ok(())
        }
    };
    let cmd = match name.as_str() {
        "ls" => {
            let s = spec("?swR", "");
            let p = parse_opts(words, &s)?;
            let p = deprecated_watch(
                words,
                &s,
                p,
                "'ls path [watch]' has been deprecated. Please use 'ls [-w] path' instead.",
                &mut warnings,
            )?;
            Command::Ls {
                path: p.args.get(1).cloned(),
                recursive: p.has('R'),
                stat: p.has('s'),
                watch: p.has('w'),
                help: p.has('?'),
            }
        }
        "get" => {
            let s = spec("sw", "");
            let p = parse_opts(words, &s)?;
            need(&p, 2, "get")?;
            let p = deprecated_watch(
                words,
                &s,
                p,
                "'get path [watch]' has been deprecated. Please use 'get [-s] [-w] path' instead.",
                &mut warnings,
            )?;
            Command::Get {
                path: p.args.get(1).cloned().unwrap_or_default(),
                stat: p.has('s'),
                watch: p.has('w'),
            }
        }
        "stat" => {
            let s = spec("w", "");
            let p = parse_opts(words, &s)?;
            need(&p, 2, "stat")?;
            let p = deprecated_watch(
                words,
                &s,
                p,
                "'stat path [watch]' has been deprecated. Please use 'stat [-w] path' instead.",
                &mut warnings,
            )?;
            Command::Stat {
                path: p.args.get(1).cloned().unwrap_or_default(),
                watch: p.has('w'),
            }
        }
        "create" => {
            let p = parse_opts(words, &spec("esc", "t"))?;
            need(&p, 2, "create")?;
            Command::Create {
                path: p.args[1].clone(),
                data: p.args.get(2).map(|d| d.as_bytes().to_vec()),
                acl: p.args.get(3).cloned(),
                ephemeral: p.has('e'),
                sequential: p.has('s'),
                container: p.has('c'),
                ttl: p.value('t').map(str::to_string),
            }
        }
        "set" => {
            let p = parse_opts(words, &spec("s", "v"))?;
            need(&p, 3, "set")?;
            Command::Set {
                path: p.args[1].clone(),
                data: p.args[2].as_bytes().to_vec(),
                version: p.value('v').map(str::to_string),
                stat: p.has('s'),
            }
        }
        "delete" => {
            let p = parse_opts(words, &spec("", "v"))?;
            need(&p, 2, "delete")?;
            if p.args.len() > 2 {
                warnings.push(
                    "'delete path [version]' has been deprecated. Please use 'delete [-v version] path' instead."
                        .into(),
                );
            }
            Command::Delete {
                path: p.args[1].clone(),
                version: p.value('v').map(str::to_string),
            }
        }
        "deleteall" | "rmr" => {
            let p = parse_opts(words, &spec("", "b"))?;
            need(&p, 2, "deleteall")?;
            Command::DeleteAll {
                path: p.args[1].clone(),
                batch: p.value('b').map(str::to_string),
            }
        }
        "getAcl" => {
            let p = parse_opts(words, &spec("s", ""))?;
            need(&p, 2, "getAcl")?;
            Command::GetAcl {
                path: p.args[1].clone(),
                stat: p.has('s'),
            }
        }
        "setAcl" => {
            let p = parse_opts(words, &spec("sR", "v"))?;
            need(&p, 3, "setAcl")?;
            Command::SetAcl {
                path: p.args[1].clone(),
                acl: p.args[2].clone(),
                version: p.value('v').map(str::to_string),
                stat: p.has('s'),
                recursive: p.has('R'),
            }
        }
        "addauth" => {
            let p = parse_opts(words, &NO_OPTS)?;
            need(&p, 2, "addauth")?;
            Command::AddAuth {
                scheme: p.args[1].clone(),
                auth: p.args.get(2).map(|s| s.as_bytes().to_vec()),
            }
        }
        "sync" => {
            let p = parse_opts(words, &NO_OPTS)?;
            need(&p, 2, "sync")?;
            Command::Sync {
                path: p.args[1].clone(),
            }
        }
        // zkCli's whoami and close take no options and ignore extra words.
        "whoami" => Command::WhoAmI,
        "close" => Command::Close,
        "addWatch" => {
            let p = parse_opts(words, &spec("", "m"))?;
            if p.args.len() != 2 {
                return Err(usage("addWatch").into());
            }
            let recursive = match p.value('m').map(|m| m.to_uppercase()) {
                None => true,
                Some(m) if m == "PERSISTENT_RECURSIVE" => true,
                Some(m) if m == "PERSISTENT" => false,
                Some(_) => return Err(usage("addWatch").into()),
            };
            Command::AddWatch {
                path: p.args[1].clone(),
                recursive,
            }
        }
        "removewatches" => {
            let p = parse_opts(words, &spec("cdal", ""))?;
            need(&p, 2, "removewatches")?;
            let kind = ['c', 'd', 'a']
                .into_iter()
                .find(|c| p.has(*c))
                .unwrap_or('a');
            Command::RemoveWatches {
                path: p.args[1].clone(),
                kind,
                local: p.has('l'),
            }
        }
        "getEphemerals" => {
            let p = parse_opts(words, &NO_OPTS)?;
            Command::GetEphemerals {
                path: p.args.get(1).cloned(),
            }
        }
        "getAllChildrenNumber" => {
            let p = parse_opts(words, &NO_OPTS)?;
            Command::GetAllChildrenNumber {
                path: p.args.get(1).cloned(),
            }
        }
        "config" => {
            let p = parse_opts(words, &spec("swc", ""))?;
            Command::Config {
                client: p.has('c'),
                watch: p.has('w'),
                stat: p.has('s'),
            }
        }
        "setquota" => {
            let s = OptSpec {
                flags: "",
                valued: "nbNB",
                group: Some((QUOTA_GROUP, true)),
            };
            let p = parse_opts(words, &s)?;
            need(&p, 2, "setquota")?;
            let (which, value) = p
                .opts
                .iter()
                .find_map(|(c, v)| v.clone().map(|v| (*c, v)))
                .ok_or_else(|| usage("setquota"))?;
            Command::SetQuota {
                path: p.args[1].clone(),
                which,
                value,
            }
        }
        "listquota" => {
            let p = parse_opts(words, &NO_OPTS)?;
            need(&p, 2, "listquota")?;
            Command::ListQuota {
                path: p.args[1].clone(),
            }
        }
        "delquota" => {
            let s = OptSpec {
                flags: "nbNB",
                valued: "",
                group: Some((QUOTA_GROUP, false)),
            };
            let p = parse_opts(words, &s)?;
            need(&p, 2, "delquota")?;
            Command::DelQuota {
                path: p.args[1].clone(),
                which: ['n', 'b', 'N', 'B'].into_iter().find(|c| p.has(*c)),
            }
        }
        "reconfig" => parse_reconfig(words)?,
        "version" => {
            let p = parse_opts(words, &NO_OPTS)?;
            if p.args.len() > 1 {
                return Err(usage("version").into());
            }
            Command::Version
        }
        "connect" | "history" | "redo" | "printwatches" | "quit" => Command::Shell(words.to_vec()),
        other => {
            return Err(Refused {
                message: format!(
                    "{}Command not found: Command not found {other}",
                    full_usage()
                ),
                code: 127,
            })
        }
    };
    Ok(Some(Line { cmd, warnings }))
}

/// reconfig's options have long names behind a single dash (`-add`, `-members`), which the
/// one-letter parser above does not know; they are read here by the same rules.
fn parse_reconfig(words: &[String]) -> Result<Command, String> {
    const VALUED: &[&str] = &["v", "file", "members", "add", "remove"];
    let mut values: Vec<(&str, String)> = Vec::new();
    let mut stat = false;
    let mut it = words.iter().skip(1);
    while let Some(w) = it.next() {
        let Some(name) = w.strip_prefix('-').filter(|n| !n.is_empty()) else {
            continue;
        };
        if name == "s" {
            stat = true;
        } else if let Some(k) = VALUED.iter().find(|k| **k == name) {
            let v = it.next().ok_or_else(|| {
                cli_error(
                    "MissingArgumentException",
                    format!("Missing argument for option: {k}"),
                )
            })?;
            values.push((k, v.clone()));
        } else if !is_negative_number(w) {
            return Err(cli_error(
                "UnrecognizedOptionException",
                format!("Unrecognized option: {w}"),
            ));
        }
    }
    let get = |k: &str| values.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let (file, members, add, remove) = (get("file"), get("members"), get("add"), get("remove"));
    if file.is_none() && members.is_none() && add.is_none() && remove.is_none() {
        return Err(usage("reconfig"));
    }
    let version = match get("v") {
        Some(v) => i64::from_str_radix(&v, 16)
            .map_err(|_| "-v must be followed by a long (configuration version)".to_string())?,
        None => -1,
    };
    if (file.is_some() || members.is_some()) && (add.is_some() || remove.is_some()) {
        return Err("Can't use -file or -members together with -add or -remove (mixing incremental and non-incremental modes is not allowed)".into());
    }
    if file.is_some() && members.is_some() {
        return Err(
            "Can't use -file and -members together (conflicting non-incremental modes)".into(),
        );
    }
    if file.is_some() {
        return Err(
            "reconfig -file is not supported by corral shell: give the servers with -members"
                .into(),
        );
    }
    Ok(Command::Reconfig {
        joining: add.map(|s| s.to_lowercase()),
        leaving: remove.map(|s| s.to_lowercase()),
        members: members.map(|s| s.to_lowercase()),
        version,
        stat,
    })
}

/// Parses one typed line.
#[cfg(test)]
pub fn parse_line(line: &str) -> Result<Option<Line>, Refused> {
    parse_words(&split_words(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Command {
        match parse_line(line) {
            Ok(Some(l)) => l.cmd,
            other => panic!("{line:?} -> {other:?}"),
        }
    }

    fn refused(line: &str) -> String {
        match parse_line(line) {
            Err(r) => r.message,
            other => panic!("{line:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn words_and_quotes_as_zkcli_splits_them() {
        assert_eq!(split_words("  ls   / "), vec!["ls", "/"]);
        assert_eq!(
            split_words(r#"set /x "a b  c""#),
            vec!["set", "/x", "a b  c"]
        );
        assert_eq!(split_words("set /x 'it\"s'"), vec!["set", "/x", "it\"s"]);
        assert_eq!(split_words(r#"set /x """#), vec!["set", "/x", ""]);
        // An unclosed quote is skipped; a quote inside a word stays.
        assert_eq!(
            split_words(r#"create /x "unterminated rest"#),
            vec!["create", "/x", "unterminated", "rest"]
        );
        assert_eq!(split_words(r#"set /x a"b"#), vec!["set", "/x", "a\"b"]);
        assert!(split_words("   ").is_empty());
        assert_eq!(parse_line("").ok(), Some(None));
    }

    #[test]
    fn options_like_commons_cli() {
        assert_eq!(
            parse("ls -sw /a"),
            Command::Ls {
                path: Some("/a".into()),
                recursive: false,
                stat: true,
                watch: true,
                help: false
            }
        );
        assert_eq!(
            parse("addWatch -mPERSISTENT /a"),
            Command::AddWatch {
                path: "/a".into(),
                recursive: false
            }
        );
        assert_eq!(
            parse("set -v -1 /a x"),
            Command::Set {
                path: "/a".into(),
                data: b"x".to_vec(),
                version: Some("-1".into()),
                stat: false
            }
        );
        assert_eq!(
            refused("set /a -1"),
            "org.apache.commons.cli.UnrecognizedOptionException: Unrecognized option: -1"
        );
        assert_eq!(
            refused("ls -sz /a"),
            "org.apache.commons.cli.UnrecognizedOptionException: Unrecognized option: -sz"
        );
        assert_eq!(
            refused("ls --foo /a"),
            "org.apache.commons.cli.UnrecognizedOptionException: Unrecognized option: --foo"
        );
        assert_eq!(
            refused("addWatch -m"),
            "org.apache.commons.cli.MissingArgumentException: Missing argument for option: m"
        );
        match parse("ls -- -w") {
            Command::Ls { path, watch, .. } => {
                assert_eq!((path, watch), (Some("-w".into()), false))
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn quota_option_groups() {
        assert_eq!(
            refused("setquota /a"),
            "org.apache.commons.cli.MissingOptionException: Missing required option: [-n num soft quota, -b bytes soft quota, -N num hard quota, -B bytes hard quota]"
        );
        assert_eq!(
            refused("setquota -n 1 -b 2 /a"),
            "org.apache.commons.cli.AlreadySelectedException: The option 'b' was specified but an option from this group has already been selected: 'n'"
        );
        assert_eq!(
            parse("setquota -N 7 /a"),
            Command::SetQuota {
                path: "/a".into(),
                which: 'N',
                value: "7".into()
            }
        );
        assert_eq!(
            parse("delquota /a"),
            Command::DelQuota {
                path: "/a".into(),
                which: None
            }
        );
        assert_eq!(
            parse("delquota -B /a"),
            Command::DelQuota {
                path: "/a".into(),
                which: Some('B')
            }
        );
    }

    #[test]
    fn usages_and_unknown_commands() {
        assert_eq!(refused("get"), "get [-s] [-w] path");
        assert_eq!(refused("version extra"), "version ");
        assert_eq!(refused("addWatch -m FOO /a"), usage("addWatch"));
        assert_eq!(refused("addWatch /a /b"), usage("addWatch"));
        let r = parse_line("help").expect_err("help is not a zkCli command");
        assert_eq!(r.code, 127);
        assert!(r.message.starts_with("ZooKeeper -server host:port"));
        assert!(r
            .message
            .ends_with("Command not found: Command not found help"));
    }

    #[test]
    fn deprecated_forms() {
        let l = parse_line("ls /a extra").expect("ok").expect("line");
        assert_eq!(
            l.warnings,
            vec!["'ls path [watch]' has been deprecated. Please use 'ls [-w] path' instead."]
        );
        assert!(matches!(l.cmd, Command::Ls { watch: true, .. }));
        let l = parse_line("delete /a 3").expect("ok").expect("line");
        assert_eq!(l.warnings.len(), 1);
        assert_eq!(
            l.cmd,
            Command::Delete {
                path: "/a".into(),
                version: None
            }
        );
    }

    #[test]
    fn paths_as_java_validates_them() {
        assert_eq!(validate_path("/"), Ok(()));
        assert_eq!(validate_path("/a/b.c/..d"), Ok(()));
        assert_eq!(
            validate_path("a").unwrap_err(),
            "Path must start with / character"
        );
        assert_eq!(
            validate_path("/a/").unwrap_err(),
            "Path must not end with / character"
        );
        assert_eq!(validate_path("").unwrap_err(), "Path length must be > 0");
        assert_eq!(
            validate_path("/a//b").unwrap_err(),
            "Invalid path string \"/a//b\" caused by empty node name specified @3"
        );
        assert_eq!(
            validate_path("/a/./b").unwrap_err(),
            "Invalid path string \"/a/./b\" caused by relative paths not allowed @3"
        );
        assert_eq!(
            validate_path("/a/..").unwrap_err(),
            "Invalid path string \"/a/..\" caused by relative paths not allowed @4"
        );
        assert_eq!(
            validate_path("/a\u{1}").unwrap_err(),
            "Invalid path string \"/a\u{1}\" caused by invalid character @2"
        );
    }

    #[test]
    fn new_commands() {
        assert_eq!(
            parse("removewatches /a -d -l"),
            Command::RemoveWatches {
                path: "/a".into(),
                kind: 'd',
                local: true
            }
        );
        assert_eq!(
            parse("getEphemerals"),
            Command::GetEphemerals { path: None }
        );
        assert_eq!(
            parse("config -c -s"),
            Command::Config {
                client: true,
                watch: false,
                stat: true
            }
        );
        assert_eq!(
            parse("deleteall /a -b 5"),
            Command::DeleteAll {
                path: "/a".into(),
                batch: Some("5".into())
            }
        );
        assert!(matches!(
            parse("setAcl -R /a world:anyone:r"),
            Command::SetAcl {
                recursive: true,
                ..
            }
        ));
        assert_eq!(
            parse("reconfig -s -v 1a -remove 3,4"),
            Command::Reconfig {
                joining: None,
                leaving: Some("3,4".into()),
                members: None,
                version: 0x1a,
                stat: true
            }
        );
        assert_eq!(refused("reconfig"), usage("reconfig"));
        assert!(refused("reconfig -members a -add b").starts_with("Can't use -file or -members"));
        assert_eq!(
            refused("reconfig -bogus"),
            "org.apache.commons.cli.UnrecognizedOptionException: Unrecognized option: -bogus"
        );
        assert!(refused("reconfig -file f").contains("not supported"));
        assert_eq!(
            parse("redo 3"),
            Command::Shell(vec!["redo".into(), "3".into()])
        );
    }
}
