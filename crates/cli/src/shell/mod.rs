//! `corral shell`: a zkCli-like shell over corral-client, for corral or any ZooKeeper server.
//!
//! Interactive mode has line editing and history (rustyline) and prints watch events as they
//! arrive; one-shot mode (`-c 'ls /'`) runs one command, prints its result and exits non-zero
//! if it failed. Parsing ([`parse`], [`acl`]) and output shapes ([`format`]) are plain
//! functions, tested without a server; this file only connects them to a connection.

mod acl;
mod format;
mod parse;

use corral_client::proto::ErrorCode;
use corral_client::{open_acl_unsafe, ClientError, ConnectOptions, Connection};
use rustyline::error::ReadlineError;

use acl::format_acl_entry;
use format::{error_line, format_event, format_stat};
use parse::{parse_command, Command, USAGES};

/// Runs the shell against `server` ("host:port"). With `command`, runs just that one.
/// Returns the process exit code.
pub async fn run(server: &str, command: Option<String>) -> i32 {
    let conn = match Connection::connect(server, ConnectOptions::default()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Cannot connect to {server}: {e}");
            return 1;
        }
    };
    let mut shell = Shell {
        server: server.to_string(),
        conn,
    };
    match command {
        Some(line) => {
            let code = match shell.execute_line(&line).await {
                Ok((out, _)) => {
                    print_output(&out);
                    0
                }
                Err(msg) => {
                    eprintln!("{msg}");
                    1
                }
            };
            let _ = shell.conn.close().await;
            code
        }
        None => shell.interactive().await,
    }
}

fn print_output(out: &str) {
    if !out.is_empty() {
        println!("{out}");
    }
}

struct Shell {
    server: String,
    conn: Connection,
}

impl Shell {
    async fn interactive(mut self) -> i32 {
        let mut editor = match rustyline::DefaultEditor::new() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("cannot start the line editor: {e}");
                return 1;
            }
        };
        let history = std::env::var_os("HOME")
            .map(|h| std::path::PathBuf::from(h).join(".corral_shell_history"));
        if let Some(h) = &history {
            // A missing history file is the normal first run.
            let _ = editor.load_history(h);
        }
        // Watch events are printed as they arrive, over the prompt if need be, as zkCli does.
        // (rustyline's external printer would redraw the prompt around them, but with it a
        // line that arrives in one burst, pasted or typed fast, waits for one more key.)
        self.spawn_event_printer();
        println!(
            "Connected to {} (session 0x{:x}, timeout {} ms). Type help for commands.",
            self.server,
            self.conn.session_id(),
            self.conn.negotiated_timeout_ms()
        );

        let mut count = 0u64;
        loop {
            let state = if self.conn.is_closed() {
                "CLOSED"
            } else {
                "CONNECTED"
            };
            let prompt = format!("[corral: {}({}) {}] ", self.server, state, count);
            // readline blocks; run it off the async workers so event tasks keep running.
            let joined = tokio::task::spawn_blocking(move || {
                let r = editor.readline(&prompt);
                (editor, r)
            })
            .await;
            let (ed, line) = match joined {
                Ok(x) => x,
                Err(e) => {
                    // The editor (and its unsaved history) went down with the task.
                    eprintln!("line editor failed: {e}");
                    let _ = self.conn.close().await;
                    return 1;
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
            if line.trim().is_empty() {
                continue;
            }
            let _ = editor.add_history_entry(line.as_str());
            count += 1;
            if let Err(msg) = self.ensure_connected().await {
                eprintln!("{msg}");
                continue;
            }
            match self.execute_line(&line).await {
                Ok((out, quit)) => {
                    print_output(&out);
                    if quit {
                        break;
                    }
                }
                Err(msg) => eprintln!("{msg}"),
            }
        }
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
        let _ = self.conn.close().await;
        0
    }

    /// Interactive mode only (one-shot mode waits for no event); again after a reconnect.
    fn spawn_event_printer(&self) {
        let conn = self.conn.clone();
        tokio::spawn(async move {
            while let Some(ev) = conn.next_event().await {
                println!("{}", format_event(&ev));
            }
        });
    }

    /// After the connection was lost, resumes the session on a new one; if the session is
    /// gone, starts a new session (and says so: ephemerals and watches of the old one are gone).
    async fn ensure_connected(&mut self) -> Result<(), String> {
        if !self.conn.is_closed() {
            return Ok(());
        }
        let resume = ConnectOptions {
            session_id: self.conn.session_id(),
            passwd: self.conn.passwd(),
            last_zxid_seen: self.conn.last_zxid(),
            ..Default::default()
        };
        let conn = match Connection::connect(&self.server, resume).await {
            Ok(c) => c,
            Err(ClientError::SessionExpired) => {
                let c = Connection::connect(&self.server, ConnectOptions::default())
                    .await
                    .map_err(|e| format!("Cannot connect to {}: {e}", self.server))?;
                eprintln!(
                    "Session 0x{:x} expired; now in new session 0x{:x}",
                    self.conn.session_id(),
                    c.session_id()
                );
                c
            }
            Err(e) => return Err(format!("Cannot reconnect to {}: {e}", self.server)),
        };
        self.conn = conn;
        self.spawn_event_printer();
        Ok(())
    }

    /// Runs one line: the output to print and whether the shell should end, or the error line.
    async fn execute_line(&mut self, line: &str) -> Result<(String, bool), String> {
        let Some(cmd) = parse_command(line)? else {
            return Ok((String::new(), false));
        };
        if cmd == Command::Quit {
            return Ok((String::new(), true));
        }
        execute(&self.conn, cmd).await.map(|out| (out, false))
    }
}

/// Runs one command on the connection.
async fn execute(c: &Connection, cmd: Command) -> Result<String, String> {
    match cmd {
        Command::Ls {
            path,
            recursive: true,
            ..
        } => {
            let paths = subtree(c, &path).await.map_err(|e| error_line(&e, &path))?;
            Ok(paths.join("\n"))
        }
        Command::Ls {
            path, stat, watch, ..
        } => {
            let err = |e| error_line(&e, &path);
            if stat {
                let (mut kids, st) = c.get_children2(&path, watch).await.map_err(err)?;
                kids.sort();
                Ok(format!("[{}]\n{}", kids.join(", "), format_stat(&st)))
            } else {
                let mut kids = c.get_children(&path, watch).await.map_err(err)?;
                kids.sort();
                Ok(format!("[{}]", kids.join(", ")))
            }
        }
        Command::Get { path, stat, watch } => {
            let (data, st) = c
                .get_data_nullable(&path, watch)
                .await
                .map_err(|e| error_line(&e, &path))?;
            // zkCli prints null data as "null".
            let text = match data {
                Some(d) => String::from_utf8_lossy(&d).into_owned(),
                None => "null".to_string(),
            };
            Ok(if stat {
                format!("{text}\n{}", format_stat(&st))
            } else {
                text
            })
        }
        Command::Stat { path, watch } => match c.exists(&path, watch).await {
            Ok(Some(st)) => Ok(format_stat(&st)),
            Ok(None) => Err(error_line(&ClientError::Server(ErrorCode::NoNode), &path)),
            Err(e) => Err(error_line(&e, &path)),
        },
        Command::Create {
            path,
            data,
            acl,
            mode,
            ttl,
        } => {
            let acl = acl.unwrap_or_else(open_acl_unsafe);
            let created = match ttl {
                Some(ttl) => c
                    .create_ttl(&path, &data, &acl, mode, ttl)
                    .await
                    .map(|(p, _)| p),
                None => c.create(&path, &data, &acl, mode).await,
            };
            created
                .map(|p| format!("Created {p}"))
                .map_err(|e| error_line(&e, &path))
        }
        Command::Set {
            path,
            data,
            version,
            stat,
        } => {
            let st = c
                .set_data(&path, &data, version)
                .await
                .map_err(|e| error_line(&e, &path))?;
            Ok(if stat {
                format_stat(&st)
            } else {
                String::new()
            })
        }
        Command::Delete { path, version } => {
            c.delete(&path, version)
                .await
                .map_err(|e| error_line(&e, &path))?;
            Ok(String::new())
        }
        Command::DeleteAll { path } => {
            let paths = subtree(c, &path).await.map_err(|e| error_line(&e, &path))?;
            // Deepest first, so every node is a leaf when its turn comes.
            for p in paths.iter().rev() {
                match c.delete(p, -1).await {
                    // Someone else removed it meanwhile: the goal is reached all the same.
                    Ok(()) | Err(ClientError::Server(ErrorCode::NoNode)) => {}
                    Err(e) => return Err(error_line(&e, p)),
                }
            }
            Ok(String::new())
        }
        Command::GetAcl { path, stat } => {
            let (acl, st) = c.get_acl(&path).await.map_err(|e| error_line(&e, &path))?;
            let mut out: Vec<String> = acl.iter().map(format_acl_entry).collect();
            if stat {
                out.push(format_stat(&st));
            }
            Ok(out.join("\n"))
        }
        Command::SetAcl {
            path,
            acl,
            version,
            stat,
        } => {
            let st = c
                .set_acl(&path, &acl, version)
                .await
                .map_err(|e| error_line(&e, &path))?;
            Ok(if stat {
                format_stat(&st)
            } else {
                String::new()
            })
        }
        Command::AddAuth { scheme, auth } => {
            c.add_auth(&scheme, &auth).await.map_err(|e| match e {
                ClientError::Server(ErrorCode::AuthFailed) => {
                    format!("Authentication failed for scheme {scheme}; the server closed the connection")
                }
                e => error_line(&e, ""),
            })?;
            Ok(String::new())
        }
        Command::Sync { path } => {
            c.sync(&path).await.map_err(|e| error_line(&e, &path))?;
            Ok("Sync is OK".to_string())
        }
        Command::WhoAmI => {
            let ids = c.who_am_i().await.map_err(|e| error_line(&e, ""))?;
            let mut out = vec!["Auth scheme: User".to_string()];
            out.extend(ids.iter().map(|i| format!("{}: {}", i.auth_scheme, i.user)));
            Ok(out.join("\n"))
        }
        Command::Help => {
            let mut out = vec!["corral shell [--server host:port] [-c cmd]".to_string()];
            out.extend(USAGES.iter().map(|(_, u)| format!("\t{u}")));
            Ok(out.join("\n"))
        }
        Command::Quit => Ok(String::new()),
    }
}

/// `path` and all its descendants, depth first, each parent before its children, children
/// in name order.
async fn subtree(c: &Connection, path: &str) -> Result<Vec<String>, ClientError> {
    let mut out = Vec::new();
    let mut stack = vec![path.to_string()];
    while let Some(p) = stack.pop() {
        let mut kids = match c.get_children(&p, false).await {
            Ok(k) => k,
            // A descendant deleted while we walk is simply not there any more.
            Err(ClientError::Server(ErrorCode::NoNode)) if p != path => continue,
            Err(e) => return Err(e),
        };
        kids.sort();
        for k in kids.iter().rev() {
            stack.push(if p == "/" {
                format!("/{k}")
            } else {
                format!("{p}/{k}")
            });
        }
        out.push(p);
    }
    Ok(out)
}
