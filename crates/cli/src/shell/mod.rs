//! `corral shell`: zkCli 3.8's shell over corral-client, for corral or any ZooKeeper server,
//! printing what zkCli prints (same lines, same streams, same exit codes) so scripts written
//! against zkCli run unchanged.
//!
//! Modes, as zkCli's: a trailing command (`corral shell -server h:p ls /`) runs it and exits;
//! otherwise lines are read from stdin, with line editing, history and tab completion when
//! stdin is a terminal. `-c 'cmd'` (corral's own) runs one command with no banner and no
//! watch events. Parsing ([`parse`], [`acl`]), output shapes ([`format`]), quota text
//! ([`quota`]) and completion ([`complete`]) are plain functions tested without a server; this
//! file connects them to a session (a corral-client `Client`, spoken to through
//! `Client::raw`, which resumes it on another server by itself) and keeps zkCli's client-side
//! state (chroot, the session's watches, history). It must not print anything zkCli would not.

mod acl;
mod complete;
mod format;
mod parse;
mod quota;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_client::proto::{
    CreateMode, CreateRequest, CreateTtlRequest, ErrorCode, EventType, MultiResult,
    ReconfigRequest, Request, Response, WatcherType,
};
use corral_client::{
    open_acl_unsafe, Client, ClientBuilder, ClientError, Connection, RawClient, SessionState,
};
use rustyline::error::ReadlineError;
use tokio::sync::broadcast;

use acl::{format_acl_entry, parse_acl};
use format::{client_code, format_event, format_stat, keeper_message, wrapper_message};
use parse::{split_words, usage, validate_path, Command, Line, Refused};
use quota::{key_of, limit_path, stat_path, StatsTrack, QUOTA_ROOT};

/// The largest TTL ZooKeeper accepts (EphemeralType.TTL's maximum).
const MAX_TTL: i64 = 0xFF_FFFF_FFFF;

/// Command-line options, zkCli's plus corral's `-c`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    server: String,
    timeout_ms: i32,
    read_only: bool,
    /// `-waitforconnection`: wait (up to the session timeout) for the session before running
    /// anything.
    wait_for_connection: bool,
    /// `-c 'line'`.
    one_line: Option<String>,
    /// A trailing command, its words as given.
    command: Option<Vec<String>>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        server: "localhost:2181".into(),
        timeout_ms: 30_000,
        ..Default::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("Error: no argument found for option {name}"))
        };
        match a.as_str() {
            "-server" | "--server" | "-s" => o.server = value(a)?,
            "-timeout" => {
                let v = value(a)?;
                o.timeout_ms = v
                    .parse()
                    .map_err(|_| format!("corral shell: -timeout needs a number of milliseconds, not {v}"))?;
            }
            "-r" => o.read_only = true,
            "-waitforconnection" => o.wait_for_connection = true,
            "-c" | "--command" => o.one_line = Some(value(a)?),
            "-client-configuration" => {
                return Err("corral shell: -client-configuration is not supported (no client properties: TLS and SASL clients are not built yet)".into())
            }
            other if other.starts_with('-') => {
                return Err(format!(
                    "corral shell: unknown option {other} (known: -server, -timeout, -r, -waitforconnection, -c)"
                ))
            }
            _ => {
                o.command = Some(std::iter::once(a.clone()).chain(it.cloned()).collect());
                break;
            }
        }
    }
    if o.one_line.is_some() && o.command.is_some() {
        return Err(
            "corral shell: give either -c 'command' or a trailing command, not both".into(),
        );
    }
    Ok(o)
}

/// A connect string `h1:p1,h2:p2/chroot`: the addresses and the chroot ("" for none).
fn parse_connect_string(s: &str) -> Result<(Vec<String>, String), String> {
    let (hosts, chroot) = match s.find('/') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let chroot = if chroot == "/" { "" } else { chroot };
    if !chroot.is_empty() {
        validate_path(chroot)?;
    }
    let mut out = Vec::new();
    for h in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        // Port 2181 when none is given, as the Java client.
        let addr = match h.rfind(':') {
            Some(i) if h.starts_with('[') && !h[i..].contains(']') => h.to_string(),
            Some(i) if !h.starts_with('[') && h[..i].contains(':') => format!("[{h}]:2181"),
            Some(i) if i + 1 < h.len() => h.to_string(),
            Some(i) => format!("{}:2181", &h[..i]),
            None => format!("{h}:2181"),
        };
        out.push(addr);
    }
    if out.is_empty() {
        return Err(format!("no server in the connect string {s:?}"));
    }
    Ok((out, chroot.to_string()))
}

/// Runs the shell with its command-line arguments; returns the process exit code.
pub async fn run(args: Vec<String>) -> i32 {
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let quiet = opts.one_line.is_some();
    let mut shell = Shell::new(&opts, !quiet);
    if !quiet {
        println!("Connecting to {}", opts.server);
    }
    if let Err(e) = shell.connect(&opts.server).await {
        eprintln!("{e}");
        return 1;
    }
    if let Some(line) = &opts.one_line {
        shell.run_words(split_words(line), false).await;
    } else if let Some(words) = opts.command {
        shell.run_words(words, false).await;
    } else {
        println!("Welcome to ZooKeeper!");
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            shell.interactive().await;
        } else {
            shell.script().await;
        }
    }
    shell.shutdown().await;
    shell.exit_code
}

/// A session with the chroot of its connect string applied, as the Java client applies it.
#[derive(Clone)]
struct Zk {
    raw: RawClient,
    chroot: String,
}

impl Zk {
    fn client(&self) -> &Client {
        self.raw.client()
    }

    /// Whether the session still stands (served, or being resumed elsewhere): not closed,
    /// expired or refused.
    fn serves(&self) -> bool {
        !matches!(
            self.client().state(),
            SessionState::Closed | SessionState::Expired | SessionState::AuthFailed
        )
    }

    /// zkCli's prompt word for the session's state (the Java client's States).
    fn prompt_state(&self) -> &'static str {
        match self.client().state() {
            SessionState::Connected => "CONNECTED",
            SessionState::ConnectedReadOnly => "CONNECTEDREADONLY",
            SessionState::Connecting | SessionState::Suspended => "CONNECTING",
            SessionState::AuthFailed => "AUTH_FAILED",
            SessionState::Closed | SessionState::Expired => "CLOSED",
        }
    }

    /// The server's path for a client path.
    fn sp(&self, p: &str) -> String {
        chroot_in(&self.chroot, p)
    }

    /// The client's path for a server path.
    fn cp(&self, p: &str) -> String {
        chroot_out(&self.chroot, p)
    }
}

/// zkCli's name for a connected state.
fn connected_name(state: SessionState) -> &'static str {
    if state == SessionState::ConnectedReadOnly {
        "ConnectedReadOnly"
    } else {
        "SyncConnected"
    }
}

fn chroot_in(chroot: &str, p: &str) -> String {
    if chroot.is_empty() {
        p.to_string()
    } else if p == "/" {
        chroot.to_string()
    } else {
        format!("{chroot}{p}")
    }
}

fn chroot_out(chroot: &str, p: &str) -> String {
    if chroot.is_empty() {
        return p.to_string();
    }
    match p.strip_prefix(chroot) {
        Some("") => "/".into(),
        Some(rest) if rest.starts_with('/') => rest.into(),
        _ => p.to_string(),
    }
}

/// The session's watches as the Java client tracks them (one default watcher), which is
/// what removewatches checks and which events it reports.
#[derive(Default)]
struct Watches {
    data: HashSet<String>,
    exist: HashSet<String>,
    child: HashSet<String>,
    persistent: HashSet<String>,
    recursive: HashSet<String>,
}

impl Watches {
    /// A one-shot watch is spent when its event arrives.
    fn fired(&mut self, kind: EventType, path: &str) {
        match kind {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                self.data.remove(path);
                self.exist.remove(path);
            }
            EventType::NodeChildrenChanged => {
                self.child.remove(path);
            }
            EventType::NodeDeleted => {
                self.data.remove(path);
                self.exist.remove(path);
                self.child.remove(path);
            }
            _ => {}
        }
    }
}

/// A failed call: a path refused before sending (Java's IllegalArgumentException) or the
/// server's (or the connection's) error code with the client path it concerned.
enum Fail {
    Invalid(String),
    Keeper(ErrorCode, Option<String>),
}

impl Fail {
    fn of(e: ClientError, path: &str) -> Fail {
        Fail::Keeper(client_code(&e), Some(path.to_string()))
    }

    /// zkCli's line for it.
    fn message(&self) -> String {
        match self {
            Fail::Invalid(m) => m.clone(),
            Fail::Keeper(c, p) => wrapper_message(*c, p.as_deref()),
        }
    }
}

fn valid(path: &str) -> Result<(), Fail> {
    validate_path(path).map_err(Fail::Invalid)
}

/// What one command printed: stdout and stderr text, kept apart as zkCli keeps them.
#[derive(Default)]
struct Out {
    out: String,
    err: String,
}

impl Out {
    fn outln(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn errln(&mut self, s: &str) {
        self.err.push_str(s);
        self.err.push('\n');
    }

    fn flush(&mut self) {
        if !self.out.is_empty() {
            let mut so = std::io::stdout().lock();
            let _ = so.write_all(self.out.as_bytes());
            let _ = so.flush();
            self.out.clear();
        }
        if !self.err.is_empty() {
            let mut se = std::io::stderr().lock();
            let _ = se.write_all(self.err.as_bytes());
            let _ = se.flush();
            self.err.clear();
        }
    }
}

/// What `-R` walks do at each node.
enum Visit<'a> {
    Print,
    SetAcl(&'a [corral_client::proto::Acl], i32),
}

struct Shell {
    /// The connect string of the current (or last) session.
    host: String,
    zk: Option<Zk>,
    timeout_ms: i32,
    read_only: bool,
    wait_for_connection: bool,
    /// Print watch events (printwatches); off for `-c`.
    print_watches: Arc<AtomicBool>,
    show_events: bool,
    watches: Arc<Mutex<Watches>>,
    history: HashMap<i64, String>,
    count: i64,
    exit_code: i32,
    /// The completer's view of the connection.
    lister: complete::Lister,
}

fn parse_int(v: &str) -> Result<i32, String> {
    v.parse()
        .map_err(|_| format!("java.lang.NumberFormatException: For input string: \"{v}\""))
}

/// Java's Integer.decode (redo's argument): decimal, 0x/# hex, leading-0 octal, a sign.
fn decode_int(v: &str) -> Option<i64> {
    let (neg, s) = match v.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let n = if let Some(h) = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .or_else(|| s.strip_prefix('#'))
    {
        i64::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        i64::from_str_radix(&s[1..], 8).ok()?
    } else {
        s.parse().ok()?
    };
    Some(if neg { -n } else { n })
}

impl Shell {
    fn new(o: &Options, show_events: bool) -> Shell {
        Shell {
            host: o.server.clone(),
            zk: None,
            timeout_ms: o.timeout_ms,
            read_only: o.read_only,
            wait_for_connection: o.wait_for_connection,
            print_watches: Arc::new(AtomicBool::new(true)),
            show_events,
            watches: Arc::new(Mutex::new(Watches::default())),
            history: HashMap::new(),
            count: 0,
            exit_code: 0,
            lister: Arc::new(Mutex::new(None)),
        }
    }

    fn watches(&self) -> std::sync::MutexGuard<'_, Watches> {
        self.watches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Prints an event the client makes itself (connected, closed, watch removed).
    fn local_event(&self, state: &str, kind: &str, path: Option<&str>) {
        if self.show_events && self.print_watches.load(Ordering::SeqCst) {
            println!("{}", format_event(state, kind, path));
        }
    }

    /// Ends the current session (if any) and opens one to `connect_string`.
    async fn connect(&mut self, connect_string: &str) -> Result<(), String> {
        self.close_session().await;
        self.host = connect_string.to_string();
        let (hosts, chroot) = parse_connect_string(connect_string)?;
        // The client gets no chroot: zkCli applies it itself, and not everywhere (config and
        // getEphemerals go without it), so the shell keeps that rule.
        let timeout = Duration::from_millis(self.timeout_ms.max(1) as u64);
        // As zkCli's client: it starts Connecting and keeps trying; a command run meanwhile
        // fails with ConnectionLoss when an attempt fails; only a server declares the
        // session expired; and an expired session ends (no new one behind the user's back).
        let builder = ClientBuilder::new(&hosts.join(","))
            .session_timeout(timeout)
            .read_only(self.read_only)
            .fail_fast(true)
            .expire_on_silence(false)
            .recovery(false);
        let client = builder
            .start()
            .map_err(|e| format!("Cannot connect to {connect_string}: {e}"))?;
        let waiting = self.wait_for_connection.then(|| client.session_events());
        self.start_session(Zk {
            raw: client.raw(),
            chroot,
        });
        if let Some(mut events) = waiting {
            let up = tokio::time::timeout(timeout, async {
                loop {
                    if matches!(
                        client.state(),
                        SessionState::Connected | SessionState::ConnectedReadOnly
                    ) {
                        return true;
                    }
                    if let Err(broadcast::error::RecvError::Closed) = events.recv().await {
                        return false;
                    }
                }
            })
            .await;
            if !matches!(up, Ok(true)) {
                // zkCli closes the client and gives up the same way.
                self.close_session().await;
                return Err(format!(
                    "Cannot connect to {}: no server answered within {} ms",
                    hosts.join(","),
                    timeout.as_millis()
                ));
            }
        }
        Ok(())
    }

    fn start_session(&mut self, zk: Zk) {
        *self.watches() = Watches::default();
        let mut notifications = zk.client().notifications();
        let mut states = zk.client().session_events();
        // The first Connected may have come before the subscription: print it from the
        // status then, and skip it if the stream brings it as well.
        let status = zk.client().status();
        let seen_at = matches!(
            status.state,
            SessionState::Connected | SessionState::ConnectedReadOnly
        )
        .then_some(status.at);
        let chroot = zk.chroot.clone();
        let (print, show, watches) = (
            self.print_watches.clone(),
            self.show_events,
            self.watches.clone(),
        );
        // zkCli's event thread: watch notifications, and the session's own moves (the client
        // resumes the session on any server of the connect string by itself).
        tokio::spawn(async move {
            let print_event = |state: &str, kind: &str, path: Option<&str>| {
                if show && print.load(Ordering::SeqCst) {
                    println!("{}", format_event(state, kind, path));
                }
            };
            if let Some(state) = seen_at.map(|_| status.state) {
                print_event(connected_name(state), "None", None);
            }
            loop {
                tokio::select! {
                    ev = notifications.recv() => match ev {
                        Ok(ev) => {
                            let path = chroot_out(&chroot, &ev.path);
                            watches
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .fired(ev.event_type, &path);
                            print_event(ev.state.name(), ev.event_type.name(), Some(&path));
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    ev = states.recv() => match ev.map(|e| (e.state, e.at)) {
                        Ok((_, at)) if seen_at.is_some_and(|seen| at <= seen) => {}
                        Ok((SessionState::Suspended, _)) => {
                            print_event("Disconnected", "None", None)
                        }
                        Ok((state @ (SessionState::Connected | SessionState::ConnectedReadOnly), _)) => {
                            print_event(connected_name(state), "None", None)
                        }
                        Ok((SessionState::Expired, _)) => print_event("Expired", "None", None),
                        // Closed and AuthFailed are printed where the shell causes them.
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
        let lister_zk = zk.clone();
        let rt = tokio::runtime::Handle::current();
        *self.lister.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Box::new(move |parent: &str| {
                rt.block_on(lister_zk.raw.get_children(&lister_zk.sp(parent), false))
                    .unwrap_or_default()
            }));
        self.zk = Some(zk);
    }

    async fn close_session(&mut self) {
        *self.lister.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if let Some(zk) = self.zk.take() {
            if zk.serves() {
                let _ = zk.client().close().await;
                self.local_event("Closed", "None", None);
            }
        }
    }

    async fn shutdown(&mut self) {
        if let Some(zk) = self.zk.take() {
            let _ = zk.client().close().await;
        }
    }

    /// stdin that is not a terminal: one command a line, no prompt (zkCli without JLine).
    async fn script(&mut self) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // A thread of its own: reading stdin blocks.
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            let mut line = String::new();
            loop {
                line.clear();
                match std::io::BufRead::read_line(&mut stdin.lock(), &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let l = line.trim_end_matches(['\n', '\r']).to_string();
                        if tx.send(l).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        while let Some(line) = rx.recv().await {
            if self.execute_line(&line).await {
                return;
            }
        }
    }

    async fn interactive(&mut self) {
        let mut editor = match rustyline::Editor::<
            complete::ShellHelper,
            rustyline::history::DefaultHistory,
        >::new()
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("cannot start the line editor: {e}");
                self.exit_code = 1;
                return;
            }
        };
        editor.set_helper(Some(complete::ShellHelper {
            lister: self.lister.clone(),
        }));
        let history = std::env::var_os("HOME")
            .map(|h| std::path::PathBuf::from(h).join(".corral_shell_history"));
        if let Some(h) = &history {
            // A missing history file is the normal first run.
            let _ = editor.load_history(h);
        }
        loop {
            let state = self.zk.as_ref().map_or("CLOSED", Zk::prompt_state);
            let prompt = format!("[zk: {}({}) {}] ", self.host, state, self.count);
            // readline blocks; run it off the async workers so event tasks keep running.
            let joined = tokio::task::spawn_blocking(move || {
                let r = editor.readline(&prompt);
                (editor, r)
            })
            .await;
            let (ed, line) = match joined {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("line editor failed: {e}");
                    self.exit_code = 1;
                    return;
                }
            };
            editor = ed;
            let line = match line {
                Ok(l) => l,
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => break,
                Err(e) => {
                    eprintln!("cannot read input: {e}");
                    break;
                }
            };
            if !line.trim().is_empty() {
                let _ = editor.add_history_entry(line.as_str());
            }
            if self.execute_line(&line).await {
                break;
            }
        }
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
    }

    /// One typed line, numbered in the history as zkCli numbers it. True when the shell
    /// should end (quit).
    async fn execute_line(&mut self, line: &str) -> bool {
        if line.trim().is_empty() {
            return false;
        }
        self.history.insert(self.count, line.to_string());
        let quit = self.run_words(split_words(line), true).await;
        self.count += 1;
        quit
    }

    /// zkCli's processCmd: runs the words, prints, sets the exit code. True on quit.
    async fn run_words(&mut self, mut words: Vec<String>, from_line: bool) -> bool {
        let mut o = Out::default();
        let mut redone = false;
        let result = loop {
            match self.process(&words, &mut o, from_line && !redone).await {
                Ok(Step::Done) => break Ok(()),
                Ok(Step::Quit) => {
                    o.flush();
                    // zkCli closes the session on quit, which its watcher reports.
                    self.close_session().await;
                    return true;
                }
                Ok(Step::Redo(line)) => {
                    // The redone line's own result counts; the redo itself then succeeds.
                    words = split_words(&line);
                    redone = true;
                }
                Err(r) => break Err(r),
            }
        };
        match result {
            Ok(()) => self.exit_code = 0,
            Err(r) => {
                o.errln(&r.message);
                self.exit_code = r.code;
            }
        }
        o.flush();
        false
    }

    fn connected(&self) -> Option<Zk> {
        self.zk.as_ref().filter(|z| z.serves()).cloned()
    }

    async fn process(
        &mut self,
        words: &[String],
        o: &mut Out,
        history: bool,
    ) -> Result<Step, Refused> {
        let parsed = parse::parse_words(words);
        // An unknown command is refused before anything else, as zkCli does.
        if let Err(r) = &parsed {
            if r.code == 127 {
                return Err(r.clone());
            }
        }
        if let Ok(Some(Line {
            cmd: Command::Shell(w),
            ..
        })) = &parsed
        {
            match w[0].as_str() {
                "quit" => return Ok(Step::Quit),
                "redo" if w.len() >= 2 && history => {
                    let i = decode_int(&w[1]).ok_or_else(|| {
                        format!(
                            "java.lang.NumberFormatException: For input string: \"{}\"",
                            w[1]
                        )
                    })?;
                    if self.count <= i || i < 0 {
                        return Err("Command index out of range".to_string().into());
                    }
                    let line = self.history.get(&i).cloned().unwrap_or_default();
                    if split_words(&line).first().map(String::as_str) == Some("redo") {
                        return Err("No redoing redos".to_string().into());
                    }
                    self.history.insert(self.count, line.clone());
                    return Ok(Step::Redo(line));
                }
                "history" => {
                    for i in (self.count - 10).max(0)..=self.count {
                        o.outln(&format!(
                            "{i} - {}",
                            self.history.get(&i).map(String::as_str).unwrap_or("null")
                        ));
                    }
                }
                "printwatches" => {
                    if w.len() == 1 {
                        let on = self.print_watches.load(Ordering::SeqCst);
                        o.outln(&format!(
                            "printwatches is {}",
                            if on { "on" } else { "off" }
                        ));
                    } else {
                        self.print_watches.store(w[1] == "on", Ordering::SeqCst);
                    }
                }
                "connect" => {
                    let target = w.get(1).cloned().unwrap_or_else(|| self.host.clone());
                    o.flush();
                    if let Err(e) = self.connect(&target).await {
                        o.errln(&e);
                    }
                }
                _ => {}
            }
        }
        let Some(zk) = self.connected() else {
            o.outln("Not connected");
            return Ok(Step::Done);
        };
        let Some(Line { cmd, warnings }) = parsed? else {
            return Ok(Step::Done);
        };
        for w in &warnings {
            o.errln(w);
        }
        self.exec(&zk, cmd, o).await.map_err(Refused::from)?;
        Ok(Step::Done)
    }

    /// Runs one command; Err is the line zkCli prints for its CliException (exit code 1).
    async fn exec(&mut self, zk: &Zk, cmd: Command, o: &mut Out) -> Result<(), String> {
        let c = &zk.raw;
        match cmd {
            Command::Shell(_) => {}
            Command::Ls {
                help,
                path,
                recursive,
                stat,
                watch,
            } => {
                if help {
                    o.out.push_str("usage: ls [options] path\n -?   help\n -R   recurse\n -s   stat\n -w   watch\n");
                }
                let path = path.ok_or_else(|| usage("ls"))?;
                if recursive {
                    self.visit(zk, &path, watch, Visit::Print, o)
                        .await
                        .map_err(|f| f.message())?;
                } else {
                    valid(&path).map_err(|f| f.message())?;
                    let sp = zk.sp(&path);
                    let (mut kids, st) = if stat {
                        c.get_children2(&sp, watch).await.map(|(k, s)| (k, Some(s)))
                    } else {
                        c.get_children(&sp, watch).await.map(|k| (k, None))
                    }
                    .map_err(|e| Fail::of(e, &path).message())?;
                    if watch {
                        self.watches().child.insert(path.clone());
                    }
                    kids.sort();
                    o.outln(&format!("[{}]", kids.join(", ")));
                    if let Some(st) = st {
                        o.outln(&format_stat(&st));
                    }
                }
            }
            Command::Get { path, stat, watch } => {
                valid(&path).map_err(|f| f.message())?;
                let (data, st) = c
                    .get_data_nullable(&zk.sp(&path), watch)
                    .await
                    .map_err(|e| Fail::of(e, &path).message())?;
                if watch {
                    self.watches().data.insert(path.clone());
                }
                o.outln(&match data {
                    Some(d) => String::from_utf8_lossy(&d).into_owned(),
                    None => "null".into(),
                });
                if stat {
                    o.outln(&format_stat(&st));
                }
            }
            Command::Stat { path, watch } => {
                valid(&path).map_err(|f| f.message())?;
                let st = c
                    .exists(&zk.sp(&path), watch)
                    .await
                    .map_err(|e| Fail::of(e, &path).message())?;
                match st {
                    Some(st) => {
                        if watch {
                            self.watches().data.insert(path.clone());
                        }
                        o.outln(&format_stat(&st));
                    }
                    None => {
                        if watch {
                            self.watches().exist.insert(path.clone());
                        }
                        return Err(wrapper_message(ErrorCode::NoNode, Some(&path)));
                    }
                }
            }
            Command::Create {
                path,
                data,
                acl,
                ephemeral,
                sequential,
                container,
                ttl,
            } => {
                self.create(
                    zk,
                    o,
                    &path,
                    data,
                    acl,
                    (ephemeral, sequential, container),
                    ttl,
                )
                .await?;
            }
            Command::Set {
                path,
                data,
                version,
                stat,
            } => {
                let version = version.as_deref().map(parse_int).transpose()?.unwrap_or(-1);
                valid(&path).map_err(|f| f.message())?;
                let st = c
                    .set_data(&zk.sp(&path), &data, version)
                    .await
                    .map_err(|e| Fail::of(e, &path).message())?;
                if stat {
                    o.outln(&format_stat(&st));
                }
            }
            Command::Delete { path, version } => {
                let version = version.as_deref().map(parse_int).transpose()?.unwrap_or(-1);
                valid(&path).map_err(|f| f.message())?;
                c.delete(&zk.sp(&path), version)
                    .await
                    .map_err(|e| Fail::of(e, &path).message())?;
            }
            Command::DeleteAll { path, batch } => {
                let batch = match batch {
                    Some(b) => b
                        .parse::<i32>()
                        .map_err(|_| "-b argument must be an int value".to_string())?,
                    None => 1000,
                };
                valid(&path).map_err(|f| f.message())?;
                if !self
                    .delete_all(zk, &path, batch)
                    .await
                    .map_err(|f| f.message())?
                {
                    o.errln("Failed to delete some node(s) in the subtree!");
                }
            }
            Command::GetAcl { path, stat } => {
                valid(&path).map_err(|f| f.message())?;
                let (acl, st) = c
                    .get_acl(&zk.sp(&path))
                    .await
                    .map_err(|e| Fail::of(e, &path).message())?;
                for a in &acl {
                    o.outln(&format_acl_entry(a));
                }
                if stat {
                    o.outln(&format_stat(&st));
                }
            }
            Command::SetAcl {
                path,
                acl,
                version,
                stat,
                recursive,
            } => {
                let (acl, warnings) = parse_acl(&acl);
                for w in &warnings {
                    o.errln(w);
                }
                let version = version.as_deref().map(parse_int).transpose()?.unwrap_or(-1);
                if recursive {
                    self.visit(zk, &path, false, Visit::SetAcl(&acl, version), o)
                        .await
                        .map_err(|f| f.message())?;
                } else {
                    valid(&path).map_err(|f| f.message())?;
                    if acl.is_empty() {
                        return Err(wrapper_message(ErrorCode::InvalidAcl, None));
                    }
                    let st = c
                        .set_acl(&zk.sp(&path), &acl, version)
                        .await
                        .map_err(|e| Fail::of(e, &path).message())?;
                    if stat {
                        o.outln(&format_stat(&st));
                    }
                }
            }
            Command::AddAuth { scheme, auth } => {
                if let Err(e) = c.add_auth(&scheme, &auth.unwrap_or_default()).await {
                    if client_code(&e) == ErrorCode::AuthFailed {
                        self.local_event("AuthFailed", "None", None);
                    }
                }
            }
            Command::Sync { path } => {
                valid(&path).map_err(|f| f.message())?;
                match c.sync(&zk.sp(&path)).await {
                    Ok(_) => o.outln("Sync is OK"),
                    Err(e) => o.outln(&format!("Sync has failed. rc={}", client_code(&e).code())),
                }
            }
            Command::WhoAmI => {
                let ids = c
                    .who_am_i()
                    .await
                    .map_err(|e| Fail::Keeper(client_code(&e), None).message())?;
                o.outln("Auth scheme: User");
                for i in ids {
                    o.outln(&format!("{}: {}", i.auth_scheme, i.user));
                }
            }
            Command::AddWatch { path, recursive } => {
                valid(&path).map_err(|f| f.message())?;
                // Through the client's own persistent watches, so that a move re-sends it;
                // its events are printed from the notifications, the stream is only drained
                // (it ends when removewatches takes the watch away).
                let mut stream = zk
                    .client()
                    .watch_persistent(&zk.sp(&path), recursive)
                    .await
                    .map_err(|e| Fail::of(e, &path).message())?;
                tokio::spawn(async move { while stream.next().await.is_some() {} });
                let mut w = self.watches();
                if recursive {
                    w.recursive.insert(path);
                } else {
                    w.persistent.insert(path);
                }
            }
            Command::RemoveWatches { path, kind, local } => {
                valid(&path).map_err(|f| f.message())?;
                self.remove_watches(zk, &path, kind, local).await?;
            }
            Command::GetEphemerals { path } => {
                let prefix = path.unwrap_or_else(|| "/".into());
                valid(&prefix).map_err(|f| f.message())?;
                // The Java client sends the prefix and prints the paths without applying
                // the chroot; so do we, for the same output.
                let list = c
                    .get_ephemerals(&prefix)
                    .await
                    .map_err(|e| Fail::of(e, &prefix).message())?;
                o.outln(&format!("[{}]", list.join(", ")));
            }
            Command::GetAllChildrenNumber { path } => {
                let path = path.ok_or_else(|| usage("getAllChildrenNumber"))?;
                valid(&path).map_err(|f| f.message())?;
                let n = c
                    .get_all_children_number(&zk.sp(&path))
                    .await
                    .map_err(|e| Fail::of(e, &path).message())?;
                o.outln(&n.to_string());
            }
            Command::Config {
                client,
                watch,
                stat,
            } => {
                // The config node is read without the chroot, as the Java client reads it.
                let config = "/zookeeper/config";
                let (data, st) = c
                    .get_data_nullable(config, watch)
                    .await
                    .map_err(|e| Fail::Keeper(client_code(&e), None).message())?;
                if watch {
                    self.watches().data.insert(config.to_string());
                }
                let text = data
                    .map(|d| String::from_utf8_lossy(&d).into_owned())
                    .unwrap_or_else(|| "null".into());
                o.outln(&if client { client_config(&text) } else { text });
                if stat {
                    o.outln(&format_stat(&st));
                }
            }
            Command::SetQuota { path, which, value } => {
                self.set_quota(zk, o, &path, which, &value).await?
            }
            Command::ListQuota { path } => {
                o.errln(&format!("absolute path is {}", limit_path(&path)));
                let mut found = Vec::new();
                for p in [limit_path(&path), stat_path(&path)] {
                    match read(zk, &p).await {
                        Ok(d) => found.push(
                            StatsTrack::parse(&d)
                                .map_err(|e| format!("java.lang.NumberFormatException: {e}"))?,
                        ),
                        Err(Fail::Keeper(ErrorCode::NoNode, _)) => {
                            o.errln(&format!("quota for {path} does not exist."));
                            return Ok(());
                        }
                        Err(f) => return Err(f.message()),
                    }
                }
                o.outln(&format!("Output quota for {path} {}", found[0]));
                o.outln(&format!("Output stat for {path} {}", found[1]));
            }
            Command::DelQuota { path, which } => match self.del_quota(zk, o, &path, which).await {
                Ok(()) => {}
                Err(Fail::Keeper(ErrorCode::NoNode, _)) => {
                    o.errln(&format!("quota for {path} does not exist."))
                }
                Err(f) => return Err(f.message()),
            },
            Command::Reconfig {
                joining,
                leaving,
                members,
                version,
                stat,
            } => {
                let req = Request::Reconfig(ReconfigRequest {
                    joining_servers: joining.unwrap_or_default(),
                    leaving_servers: leaving.unwrap_or_default(),
                    new_members: members.unwrap_or_default(),
                    cur_config_id: version,
                });
                match c.call(req).await {
                    Ok(Response::Data(d, st)) => {
                        o.outln(&format!(
                            "Committed new configuration:\n{}",
                            String::from_utf8_lossy(&d.unwrap_or_default())
                        ));
                        if stat {
                            o.outln(&format_stat(&st));
                        }
                    }
                    Ok(r) => return Err(format!("unexpected reply to reconfig: {r:?}")),
                    Err(e) => return Err(Fail::Keeper(client_code(&e), None).message()),
                }
            }
            Command::Close => {
                o.flush();
                self.close_session().await;
            }
            Command::Version => o.outln(&format!(
                "ZooKeeper CLI version: 3.8.0-corral-{}",
                env!("CARGO_PKG_VERSION")
            )),
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn create(
        &mut self,
        zk: &Zk,
        o: &mut Out,
        path: &str,
        data: Option<Vec<u8>>,
        acl: Option<String>,
        (e, s, container): (bool, bool, bool),
        ttl: Option<String>,
    ) -> Result<(), String> {
        if container && (e || s) {
            return Err("-c cannot be combined with -s or -e. Containers cannot be ephemeral or sequential.".into());
        }
        let ttl = ttl
            .map(|t| {
                t.parse::<i64>()
                    .map_err(|_| "-t argument must be a long value".to_string())
            })
            .transpose()?;
        if ttl.is_some() && e {
            return Err("TTLs cannot be used with Ephemeral znodes".into());
        }
        if ttl.is_some() && container {
            return Err("TTLs cannot be used with Container znodes".into());
        }
        let mode = match (e, s, container, ttl.is_some()) {
            (true, true, _, _) => CreateMode::EphemeralSequential,
            (true, false, _, _) => CreateMode::Ephemeral,
            (false, true, _, true) => CreateMode::PersistentSequentialWithTtl,
            (false, true, _, false) => CreateMode::PersistentSequential,
            (false, false, true, _) => CreateMode::Container,
            (false, false, false, true) => CreateMode::PersistentWithTtl,
            (false, false, false, false) => CreateMode::Persistent,
        };
        if let Some(t) = ttl {
            if t <= 0 || t > MAX_TTL {
                return Err(format!(
                    "ttl must be positive and cannot be larger than: {MAX_TTL}"
                ));
            }
        }
        let acl = match acl {
            Some(a) => {
                let (acl, warnings) = parse_acl(&a);
                for w in &warnings {
                    o.errln(w);
                }
                acl
            }
            None => open_acl_unsafe(),
        };
        // A sequential path may end in '/': the server appends the number.
        let checked = if s {
            format!("{path}1")
        } else {
            path.to_string()
        };
        validate_path(&checked)?;
        if acl.is_empty() {
            o.errln(&keeper_message(ErrorCode::InvalidAcl, None));
            return Err(wrapper_message(ErrorCode::InvalidAcl, None));
        }
        let body = CreateRequest {
            path: zk.sp(path),
            data,
            acl,
            flags: mode.code(),
        };
        let req = match ttl {
            Some(ttl) => Request::CreateTtl(CreateTtlRequest {
                path: body.path,
                data: body.data,
                acl: body.acl,
                flags: body.flags,
                ttl,
            }),
            None if container => Request::CreateContainer(body),
            None => Request::Create(body),
        };
        match zk.raw.call(req).await {
            Ok(Response::Path(p)) | Ok(Response::Create2(p, _)) => {
                o.errln(&format!("Created {}", zk.cp(&p)));
                Ok(())
            }
            Ok(r) => Err(format!("unexpected reply to create: {r:?}")),
            Err(e) => {
                let code = client_code(&e);
                if code == ErrorCode::InvalidAcl {
                    o.errln(&keeper_message(code, Some(path)));
                }
                if code == ErrorCode::EphemeralOnLocalSession {
                    o.errln("Unable to create ephemeral node on a local session");
                }
                Err(wrapper_message(code, Some(path)))
            }
        }
    }

    /// zkCli's `-R` walk (ZKUtil.visitSubTreeDFS): the node, then each level's children in
    /// name order before their own children.
    async fn visit(
        &mut self,
        zk: &Zk,
        path: &str,
        watch: bool,
        what: Visit<'_>,
        o: &mut Out,
    ) -> Result<(), Fail> {
        valid(path)?;
        let c = &zk.raw;
        c.get_data_nullable(&zk.sp(path), watch)
            .await
            .map_err(|e| Fail::of(e, path))?;
        if watch {
            self.watches().data.insert(path.to_string());
        }
        self.visit_one(zk, path, &what, o).await;
        let mut stack = vec![path.to_string()];
        // Each entry's children are listed and handled, then walked into in order; a
        // stack of pending lists keeps that order without recursion.
        let mut pending: Vec<std::vec::IntoIter<String>> = Vec::new();
        loop {
            if let Some(p) = stack.pop() {
                let mut kids = match c.get_children(&zk.sp(&p), watch).await {
                    Ok(k) => k,
                    // Deleted while we walk: nothing below it.
                    Err(ClientError::Server(ErrorCode::NoNode)) => Vec::new(),
                    Err(e) => return Err(Fail::of(e, &p)),
                };
                if watch {
                    self.watches().child.insert(p.clone());
                }
                kids.sort();
                let kids: Vec<String> = kids
                    .iter()
                    .map(|k| {
                        if p == "/" {
                            format!("/{k}")
                        } else {
                            format!("{p}/{k}")
                        }
                    })
                    .collect();
                for k in &kids {
                    self.visit_one(zk, k, &what, o).await;
                }
                pending.push(kids.into_iter());
            }
            match pending.last_mut() {
                None => return Ok(()),
                Some(it) => match it.next() {
                    Some(next) => stack.push(next),
                    None => {
                        pending.pop();
                    }
                },
            }
        }
    }

    async fn visit_one(&mut self, zk: &Zk, path: &str, what: &Visit<'_>, o: &mut Out) {
        match what {
            Visit::Print => o.outln(path),
            Visit::SetAcl(acl, version) => {
                let r = if acl.is_empty() {
                    Err(Fail::Keeper(ErrorCode::InvalidAcl, None))
                } else {
                    zk.raw
                        .set_acl(&zk.sp(path), acl, *version)
                        .await
                        .map_err(|e| Fail::of(e, path))
                };
                // zkCli prints these without a line break.
                if let Err(Fail::Keeper(code, p)) = r {
                    o.out.push_str(&keeper_message(code, p.as_deref()));
                }
            }
        }
    }

    /// ZKUtil.deleteRecursive: the tree listed breadth first, deleted from the end in
    /// multis of `batch` operations. Ok(false) when a batch failed.
    async fn delete_all(&mut self, zk: &Zk, path: &str, batch: i32) -> Result<bool, Fail> {
        let mut tree = vec![path.to_string()];
        let mut i = 0;
        while i < tree.len() {
            let node = tree[i].clone();
            let kids = zk
                .raw
                .get_children(&zk.sp(&node), false)
                .await
                .map_err(|e| Fail::of(e, &node))?;
            for k in kids {
                tree.push(if node == "/" {
                    format!("/{k}")
                } else {
                    format!("{node}/{k}")
                });
            }
            i += 1;
        }
        let mut ops = Vec::new();
        for (n, p) in tree.iter().enumerate().rev() {
            ops.push(Connection::delete_op(&zk.sp(p), -1));
            if ops.len() as i64 == i64::from(batch) || n == 0 {
                let ok = match zk.raw.multi(std::mem::take(&mut ops)).await {
                    Ok(results) => !results.iter().any(|r| matches!(r, MultiResult::Error(_))),
                    Err(_) => false,
                };
                if !ok {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    async fn remove_watches(
        &mut self,
        zk: &Zk,
        path: &str,
        kind: char,
        local: bool,
    ) -> Result<(), String> {
        let (child, data, persistent) = {
            let w = self.watches();
            let child = kind != 'd' && w.child.contains(path);
            let data = kind != 'c' && (w.data.contains(path) || w.exist.contains(path));
            let persistent =
                kind == 'a' && (w.persistent.contains(path) || w.recursive.contains(path));
            (child, data, persistent)
        };
        if !(child || data || persistent) {
            return Err(wrapper_message(ErrorCode::NoWatcher, Some(path)));
        }
        let wtype = match kind {
            'c' => WatcherType::Children,
            'd' => WatcherType::Data,
            _ => WatcherType::Any,
        };
        if let Err(e) = zk.client().remove_watches(&zk.sp(path), wtype, local).await {
            return Err(wrapper_message(client_code(&e), Some(path)));
        }
        {
            let mut w = self.watches();
            if child {
                w.child.remove(path);
            }
            if data {
                w.data.remove(path);
                w.exist.remove(path);
            }
            if persistent {
                w.persistent.remove(path);
                w.recursive.remove(path);
            }
        }
        for (removed, name) in [
            (child, "ChildWatchRemoved"),
            (data, "DataWatchRemoved"),
            (persistent, "PersistentWatchRemoved"),
        ] {
            if removed {
                self.local_event("SyncConnected", name, Some(path));
            }
        }
        Ok(())
    }

    async fn set_quota(
        &mut self,
        zk: &Zk,
        o: &mut Out,
        path: &str,
        which: char,
        value: &str,
    ) -> Result<(), String> {
        if path.starts_with(QUOTA_ROOT) {
            o.errln(&format!("cannot set a quota under the path: {QUOTA_ROOT}"));
            return Ok(());
        }
        let mut quota = StatsTrack::default();
        for k in ["count", "bytes", "countHardLimit", "byteHardLimit"] {
            quota.set(k, -1);
        }
        let Ok(n) = value.parse::<i64>() else {
            o.errln("NumberFormatException happens when parsing the option value");
            return Ok(());
        };
        let counts = matches!(which, 'n' | 'N');
        if counts && (n <= 0 || n > i64::from(i32::MAX)) {
            if n > i64::from(i32::MAX) {
                o.errln("NumberFormatException happens when parsing the option value");
            } else {
                o.errln("the num quota must be greater than zero");
            }
            return Ok(());
        }
        if !counts && n < 0 {
            o.errln("the bytes quota must be greater than or equal to zero");
            return Ok(());
        }
        quota.set(key_of(which), n);
        self.create_quota(zk, o, path, quota)
            .await
            .map_err(|f| f.message())
    }

    /// SetQuotaCommand.createQuota: the limits node (and its parents under /zookeeper/quota),
    /// refused when a parent or child already has a quota.
    async fn create_quota(
        &mut self,
        zk: &Zk,
        o: &mut Out,
        path: &str,
        quota: StatsTrack,
    ) -> Result<(), Fail> {
        valid(path)?;
        let c = &zk.raw;
        let exists = |p: String| async move {
            c.exists(&zk.sp(&p), false)
                .await
                .map_err(|e| Fail::of(e, &p))
        };
        if exists(path.to_string()).await?.is_none() {
            return Err(Fail::Invalid(format!("{path} does not exist.")));
        }
        // A quota below this path?
        let own = format!("{QUOTA_ROOT}{path}");
        let mut below = Vec::new();
        if c.exists(&zk.sp(&own), false)
            .await
            .map_err(|e| Fail::of(e, &own))?
            .is_some()
        {
            let mut v = Out::default();
            self.visit(zk, &own, false, Visit::Print, &mut v).await?;
            below = v.out.lines().map(str::to_string).collect();
        }
        for q in &below {
            if q == &own {
                continue;
            }
            let kids = match c.get_children(&zk.sp(q), false).await {
                Ok(k) => k,
                Err(_) => continue,
            };
            if kids.iter().any(|k| k == quota::LIMIT_NODE) {
                return Err(Fail::Invalid(format!(
                    "{path} has a child {} which has a quota",
                    &q[QUOTA_ROOT.len()..]
                )));
            }
        }
        // A quota above it?
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut q = QUOTA_ROOT.to_string();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            q = format!("{q}/{part}");
            let kids = match c.get_children(&zk.sp(&q), false).await {
                Ok(k) => k,
                Err(ClientError::Server(ErrorCode::NoNode)) => break,
                Err(e) => return Err(Fail::of(e, &q)),
            };
            if kids.is_empty() {
                break;
            }
            if q != own && kids.iter().any(|k| k == quota::LIMIT_NODE) {
                return Err(Fail::Invalid(format!(
                    "{path} has a parent {} which has a quota",
                    &q[QUOTA_ROOT.len()..]
                )));
            }
        }
        let open = open_acl_unsafe();
        let create = |p: String, data: Option<Vec<u8>>| {
            let open = open.clone();
            async move {
                let r = c
                    .call(Request::Create(CreateRequest {
                        path: zk.sp(&p),
                        data,
                        acl: open,
                        flags: CreateMode::Persistent.code(),
                    }))
                    .await;
                match r {
                    Ok(_) => Ok(true),
                    Err(ClientError::Server(ErrorCode::NodeExists)) => Ok(false),
                    Err(e) => Err(Fail::of(e, &p)),
                }
            }
        };
        if exists(QUOTA_ROOT.to_string()).await?.is_none()
            && create("/zookeeper".into(), None).await?
        {
            create(QUOTA_ROOT.into(), None).await?;
        }
        let mut q = QUOTA_ROOT.to_string();
        for part in &parts {
            q = format!("{q}/{part}");
            if exists(q.clone()).await?.is_none() {
                create(q.clone(), None).await?;
            }
        }
        let limits = format!("{q}/{}", quota::LIMIT_NODE);
        let stats = format!("{q}/{}", quota::STAT_NODE);
        let existed = exists(limits.clone()).await?.is_some();
        let (quota, st) = if !existed {
            if !create(limits.clone(), Some(quota.to_string().into_bytes())).await? {
                return Err(Fail::Keeper(ErrorCode::NodeExists, Some(limits)));
            }
            let mut s = StatsTrack::default();
            s.set("count", 0);
            s.set("bytes", 0);
            if !create(stats.clone(), Some(s.to_string().into_bytes())).await? {
                return Err(Fail::Keeper(ErrorCode::NodeExists, Some(stats)));
            }
            let quota = parse_track(&read(zk, &limits).await?)?;
            let st = parse_track(&read(zk, &stats).await?)?;
            (quota, st)
        } else {
            let mut have = parse_track(&read(zk, &limits).await?)?;
            for k in ["count", "bytes", "countHardLimit", "byteHardLimit"] {
                if quota.get(k) > -1 {
                    have.set(k, quota.get(k));
                }
            }
            let st = parse_track(&read(zk, &stats).await?)?;
            (have, st)
        };
        let (count, bytes) = (st.get("count"), st.get("bytes"));
        let over = |soft: i64, hard: i64, used: i64| {
            (soft > -1 && soft < used) || (hard > -1 && hard < used)
        };
        if over(quota.get("count"), quota.get("countHardLimit"), count) {
            o.outln(&format!(
                "[Warning]: the count quota you create is less than the existing count:{count}"
            ));
        }
        if over(quota.get("bytes"), quota.get("byteHardLimit"), bytes) {
            o.outln(&format!(
                "[Warning]: the bytes quota you create is less than the existing bytes:{bytes}"
            ));
        }
        // A new limits node was created with its data; only an existing one is updated (one
        // write more would shift every later zxid against zkCli's).
        if existed {
            c.set_data(&zk.sp(&limits), quota.to_string().as_bytes(), -1)
                .await
                .map_err(|e| Fail::of(e, &limits))?;
        }
        Ok(())
    }

    /// DelQuotaCommand.delQuota: one limit reset to -1, or the whole quota removed (and its
    /// now empty parents under /zookeeper/quota).
    async fn del_quota(
        &mut self,
        zk: &Zk,
        o: &mut Out,
        path: &str,
        which: Option<char>,
    ) -> Result<(), Fail> {
        let c = &zk.raw;
        let parent = format!("{QUOTA_ROOT}{path}");
        let limits = limit_path(path);
        valid(&limits)?;
        if c.exists(&zk.sp(&limits), false)
            .await
            .map_err(|e| Fail::of(e, &limits))?
            .is_none()
        {
            o.outln(&format!("Quota does not exist for {path}"));
            return Ok(());
        }
        let mut track = parse_track(&read(zk, &limits).await?)?;
        match which {
            None => {
                let kids = c
                    .get_children(&zk.sp(&parent), false)
                    .await
                    .map_err(|e| Fail::of(e, &parent))?;
                for k in kids {
                    let p = format!("{parent}/{k}");
                    c.delete(&zk.sp(&p), -1)
                        .await
                        .map_err(|e| Fail::of(e, &p))?;
                }
                let mut p = parent;
                while p != QUOTA_ROOT {
                    let kids = c
                        .get_children(&zk.sp(&p), false)
                        .await
                        .map_err(|e| Fail::of(e, &p))?;
                    if !kids.is_empty() {
                        break;
                    }
                    c.delete(&zk.sp(&p), -1)
                        .await
                        .map_err(|e| Fail::of(e, &p))?;
                    match p.rfind('/') {
                        Some(i) => p.truncate(i),
                        None => break,
                    }
                }
            }
            Some(w) => {
                track.set(key_of(w), -1);
                c.set_data(&zk.sp(&limits), track.to_string().as_bytes(), -1)
                    .await
                    .map_err(|e| Fail::of(e, &limits))?;
            }
        }
        Ok(())
    }
}

enum Step {
    Done,
    Quit,
    Redo(String),
}

/// A node's data as text (quota nodes).
async fn read(zk: &Zk, path: &str) -> Result<String, Fail> {
    let (d, _) = zk
        .raw
        .get_data(&zk.sp(path), false)
        .await
        .map_err(|e| Fail::of(e, path))?;
    Ok(String::from_utf8_lossy(&d).into_owned())
}

fn parse_track(text: &str) -> Result<StatsTrack, Fail> {
    StatsTrack::parse(text)
        .map_err(|e| Fail::Invalid(format!("java.lang.NumberFormatException: {e}")))
}

/// ConfigUtils.getClientConfigStr: "version host:port,host:port" from a dynamic config.
fn client_config(config: &str) -> String {
    let mut version = String::new();
    let mut servers = Vec::new();
    for line in config.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k == "version" {
            version = v.to_string();
        }
        if !k.starts_with("server.") {
            continue;
        }
        if let Some((_, client)) = v.split_once(';') {
            let addr = if client.contains(':') {
                client.to_string()
            } else {
                format!("0.0.0.0:{client}")
            };
            servers.push(addr);
        }
    }
    format!("{version} {}", servers.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn command_line_like_zkcli() {
        let o = parse_args(&args("-server h1:1,h2:2/app -timeout 5000 -r ls -R /")).expect("ok");
        assert_eq!(o.server, "h1:1,h2:2/app");
        assert_eq!((o.timeout_ms, o.read_only), (5000, true));
        assert_eq!(o.command, Some(args("ls -R /")));
        let o = parse_args(&args("--server h:1 -c x")).expect("corral's own form");
        assert_eq!(
            (o.server.as_str(), o.one_line.as_deref()),
            ("h:1", Some("x"))
        );
        assert!(parse_args(&args("-client-configuration f"))
            .unwrap_err()
            .contains("-client-configuration is not supported"));
        assert!(parse_args(&args("-bogus"))
            .unwrap_err()
            .contains("unknown option -bogus"));
        assert!(parse_args(&args("-server"))
            .unwrap_err()
            .contains("no argument found for option -server"));
        assert_eq!(parse_args(&[]).expect("defaults").server, "localhost:2181");
    }

    #[test]
    fn connect_strings() {
        assert_eq!(
            parse_connect_string("h1:1,h2:2/app/x").expect("ok"),
            (vec!["h1:1".into(), "h2:2".into()], "/app/x".into())
        );
        assert_eq!(
            parse_connect_string("h1/").expect("ok"),
            (vec!["h1:2181".into()], String::new())
        );
        assert!(parse_connect_string("h:1/a/").is_err());
        assert!(parse_connect_string("/a").is_err());
    }

    #[test]
    fn chroot_paths() {
        assert_eq!(chroot_in("/app", "/"), "/app");
        assert_eq!(chroot_in("/app", "/x"), "/app/x");
        assert_eq!(chroot_in("", "/x"), "/x");
        assert_eq!(chroot_out("/app", "/app"), "/");
        assert_eq!(chroot_out("/app", "/app/x/y"), "/x/y");
        assert_eq!(chroot_out("/app", "/apple"), "/apple");
        assert_eq!(decode_int("0x10"), Some(16));
        assert_eq!(decode_int("010"), Some(8));
        assert_eq!(decode_int("-1"), Some(-1));
        assert_eq!(decode_int("x"), None);
        assert_eq!(
            client_config("server.1=h:2888:3888:participant;0.0.0.0:2181\nversion=100000000"),
            "100000000 0.0.0.0:2181"
        );
        assert_eq!(client_config(""), " ");
    }

    #[test]
    fn one_shot_watches_are_spent() {
        let mut w = Watches::default();
        w.data.insert("/a".into());
        w.child.insert("/a".into());
        w.fired(EventType::NodeDataChanged, "/a");
        assert!(!w.data.contains("/a") && w.child.contains("/a"));
        w.fired(EventType::NodeDeleted, "/a");
        assert!(!w.child.contains("/a"));
    }
}
