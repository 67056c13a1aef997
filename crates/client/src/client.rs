//! The session-keeping client: one ZooKeeper session over a list of servers, kept alive across
//! connection losses and replaced (with its ephemeral nodes re-created) after an expiry.
//!
//! Shape: a [`Client`] is a cheap handle; a driver task owns the session. The driver connects
//! ([`Connection`] is the single-connection layer underneath), re-sends auth and watches
//! (setWatches2) on a resumed session, pumps watch notifications to the one-shot [`Watch`]
//! futures, and on loss moves to the next server with randomized backoff. It also runs the
//! client-side expiry clock (4/3 of the negotiated timeout without news from any server, as
//! ZooKeeper 3.9.3 does), so Expired is reported even when no server answers. With recovery on
//! (the default) an expiry is followed by a new session in which every live [`EphemeralNode`]
//! is re-created — deleting the node first when a previous session of this client still owns
//! it — and a [`RecoveryReport`] says what was done and which watches were lost.
//!
//! Must not: retry a request whose connection was lost (it may have been applied; the caller
//! decides), hold a lock across an await, or touch the wire format (that is `corral-proto`'s).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use corral_proto::{
    Acl, CreateMode, CreateRequest, DeleteRequest, ErrorCode, EventType, KeeperState, MultiResult,
    Request, Response, SetWatches2, Stat, WatcherType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::cache::ResyncReport;
use crate::persistent::{PersistentEvent, PersistentSpec};
use crate::{open_acl_unsafe, ClientError, ConnectOptions, Connection, WatchedEvent};

/// ZooKeeper's default client port, used when a connect string names a host without one.
const DEFAULT_PORT: u16 = 2181;
/// Watch paths per setWatches2 frame, in bytes: ZooKeeper's clients split at 128 KiB so that a
/// session with many watches never sends a frame over the server's limit.
const SET_WATCHES_CHUNK: usize = 128 * 1024;
/// Where an ensemble keeps its configuration (ZooDefs.CONFIG_NODE).
const CONFIG_NODE: &str = "/zookeeper/config";
/// Notifications a [`Client::notifications`] receiver may fall behind by before it misses the
/// oldest.
const NOTIFICATIONS_CAP: usize = 1024;

/// Where the session is. Reported in order by [`Client::session_events`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Looking for a server (at start, and for a new session after an expiry).
    Connecting,
    /// A server serves the session; requests go through.
    Connected,
    /// Only a read-only server answers (a member cut off from its quorum, with read-only
    /// mode on), and the client allowed it ([`ClientBuilder::read_only`]): reads go through,
    /// writes fail with `NotReadOnly`. The session is one local to that server: the client's
    /// own session is resumed, or a first real one created, as soon as a read-write server
    /// answers, which the client keeps looking for.
    ConnectedReadOnly,
    /// The connection was lost; the session may still be alive and the client is trying to
    /// resume it on another server. Requests wait (up to the session timeout; with
    /// [`ClientBuilder::fail_fast`], until a connection attempt fails).
    Suspended,
    /// The session is gone: a server said so, or no server was heard from for 4/3 of the
    /// timeout. Its ephemeral nodes and watches are lost. With recovery on, Connecting follows.
    Expired,
    /// [`Client::close`] ended the session, or the client was dropped.
    Closed,
    /// A server rejected the client's credentials. Terminal.
    AuthFailed,
}

/// One transition of the session, as reported by [`Client::session_events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    /// The new state.
    pub state: SessionState,
    /// The session this is about (0 while connecting for a new one). For Expired it is the
    /// session that expired; for Connected, the session now served.
    pub session_id: i64,
    /// The server ("host:port") involved, when there is one.
    pub server: Option<String>,
    /// When the driver entered the state.
    pub at: Instant,
}

/// Which of a node's one-shot watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchKind {
    /// Left by getData, or by exists on a node that exists: fires on change or delete.
    Data,
    /// Left by exists on a node that does not exist: fires on creation.
    Exist,
    /// Left by getChildren: fires when the children change or the node is deleted.
    Child,
}

/// What recovery did for one [`EphemeralNode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EphemeralOutcome {
    /// The node did not exist; it was created in the new session.
    Created,
    /// A previous session of this client still owned the node (the server had not expired it
    /// yet); it was deleted and re-created in one multi.
    ReplacedStale {
        /// The session that owned the node.
        old_owner: i64,
    },
    /// The node already belonged to the current session.
    AlreadyOurs,
    /// Another client's session owns the node; it was left alone.
    HeldByOther {
        /// That session.
        owner: i64,
    },
    /// A request failed (e.g. the new connection was lost during recovery).
    Failed(String),
}

/// What recovery did for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EphemeralRecovery {
    /// The node's path, relative to the chroot.
    pub path: String,
    /// What was done.
    pub outcome: EphemeralOutcome,
    /// How long after the new session's handshake the node was back (or recovery gave up).
    pub after: Duration,
}

/// Sent by [`Client::recovery_reports`] once per expiry, after the new session's recovery ran
/// (before Connected is reported for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The session that expired.
    pub old_session_id: i64,
    /// The new session.
    pub new_session_id: i64,
    /// One entry per live [`EphemeralNode`].
    pub ephemerals: Vec<EphemeralRecovery>,
    /// One-shot watches that were pending when the session expired (they resolved with
    /// [`ClientError::SessionExpired`]); changes to these nodes during the outage were missed
    /// and the application should re-read them.
    pub lost_watches: Vec<(String, WatchKind)>,
    /// Persistent watches added again in the new session (chroot-relative path, recursive),
    /// or the error that stopped it. Their streams get [`PersistentEvent::Rearmed`]; the
    /// caches built on them re-read and send a [`ResyncReport`] of what changed.
    pub rearmed: Vec<(String, bool, Result<(), String>)>,
}

/// Builds a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    connect_string: String,
    session_timeout: Duration,
    connect_timeout: Option<Duration>,
    recovery: bool,
    read_only: bool,
    fail_fast: bool,
    expire_on_silence: bool,
    auth: Vec<(String, Vec<u8>)>,
}

impl ClientBuilder {
    /// A builder for `connect_string`: `host:port[,host:port...][/chroot]`, as ZooKeeper's Java
    /// client and zkCli take it. Defaults: 10 s session timeout, recovery on.
    pub fn new(connect_string: &str) -> ClientBuilder {
        ClientBuilder {
            connect_string: connect_string.to_string(),
            session_timeout: Duration::from_secs(10),
            connect_timeout: None,
            recovery: true,
            read_only: false,
            fail_fast: false,
            expire_on_silence: true,
            auth: Vec::new(),
        }
    }

    /// The session timeout to ask for; the server clamps it into its bounds.
    pub fn session_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.session_timeout = timeout;
        self
    }

    /// How long [`ClientBuilder::connect`] waits for the first session (default: the session
    /// timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Whether an expired session is replaced by a new one with its ephemerals re-created
    /// (default true). Off, Expired is terminal: every later call fails with
    /// [`ClientError::SessionExpired`].
    pub fn recovery(mut self, on: bool) -> ClientBuilder {
        self.recovery = on;
        self
    }

    /// Whether a read-only server may serve this client when no read-write one answers
    /// (ZooKeeper's `canBeReadOnly`; default false). See [`SessionState::ConnectedReadOnly`].
    pub fn read_only(mut self, allowed: bool) -> ClientBuilder {
        self.read_only = allowed;
        self
    }

    /// Whether a call made while no server serves the session fails with
    /// [`ClientError::ConnectionLoss`] as soon as a connection attempt fails, as the Java
    /// client's do (default false: it waits up to the session timeout for the session to be
    /// served again). For interactive tools, which should answer at once.
    pub fn fail_fast(mut self, on: bool) -> ClientBuilder {
        self.fail_fast = on;
        self
    }

    /// Whether the client declares its session Expired on its own clock, after 4/3 of the
    /// timeout without news from any server (default true, as ZooKeeper 3.9.3's client). Off,
    /// only a server says so, as ZooKeeper 3.8's clients and zkCli have it: a server that
    /// comes back with its sessions (a restarted standalone server renews their timeouts)
    /// still resumes the session after any outage.
    pub fn expire_on_silence(mut self, on: bool) -> ClientBuilder {
        self.expire_on_silence = on;
        self
    }

    /// Credentials sent on every connection before anything else (e.g. "digest",
    /// b"user:password").
    pub fn auth(mut self, scheme: &str, auth: &[u8]) -> ClientBuilder {
        self.auth.push((scheme.to_string(), auth.to_vec()));
        self
    }

    /// Starts the client and waits until its first session is established.
    pub async fn connect(self) -> Result<Client, ClientError> {
        let wait = self.connect_timeout.unwrap_or(self.session_timeout);
        let recovery = self.recovery;
        let (client, mut events) = self.launch()?;
        let up = tokio::time::timeout(wait, async {
            loop {
                match events.recv().await.map(|e| e.state) {
                    Ok(SessionState::Connected | SessionState::ConnectedReadOnly) => return Ok(()),
                    Ok(SessionState::AuthFailed) => return Err(ClientError::AuthFailed),
                    Ok(SessionState::Closed) => return Err(ClientError::Closed),
                    Ok(SessionState::Expired) if !recovery => {
                        return Err(ClientError::SessionExpired)
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Err(ClientError::Closed),
                }
            }
        })
        .await;
        match up {
            Ok(Ok(())) => Ok(client),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::ConnectionLoss),
        }
    }

    /// Starts the client without waiting: it is Connecting, and calls wait for (or, with
    /// [`ClientBuilder::fail_fast`], fail until) a server, as with the Java client's
    /// constructor. Fails only on a bad connect string.
    pub fn start(self) -> Result<Client, ClientError> {
        self.launch().map(|(client, _)| client)
    }

    /// Builds the client and spawns its driver; the receiver hears every transition from
    /// the very first.
    fn launch(self) -> Result<(Client, broadcast::Receiver<SessionEvent>), ClientError> {
        let (servers, chroot) = parse_connect_string(&self.connect_string)?;
        let timeout_ms = i32::try_from(self.session_timeout.as_millis()).unwrap_or(i32::MAX);
        let (link, _) = watch::channel(Link::Down);
        let (events, _) = broadcast::channel(256);
        let (notifications, _) = broadcast::channel(NOTIFICATIONS_CAP);
        let (reports, _) = broadcast::channel(64);
        let (resyncs, _) = broadcast::channel(64);
        let (shutdown, _) = watch::channel(false);
        let first = Instant::now();
        let inner = Arc::new(Inner {
            start: (random() as usize) % servers.len(),
            servers,
            chroot,
            requested_timeout_ms: timeout_ms,
            recovery: self.recovery,
            read_only: self.read_only,
            fail_fast: self.fail_fast,
            expire_on_silence: self.expire_on_silence,
            attempts_failed: watch::channel(0).0,
            link,
            events,
            notifications,
            reports,
            resyncs,
            shutdown,
            state: Mutex::new(Mut {
                auth: self.auth,
                watches: HashMap::new(),
                ephemerals: HashMap::new(),
                persistent: HashMap::new(),
                next_id: 1,
                previous_sessions: Vec::new(),
                session_id: 0,
                passwd: Vec::new(),
                last_zxid: 0,
                timeout: Duration::from_millis(timeout_ms.max(1) as u64),
                current: SessionEvent {
                    state: SessionState::Connecting,
                    session_id: 0,
                    server: None,
                    at: first,
                },
            }),
        });
        // Subscribed before the driver runs, so that a caller waiting for Connected cannot miss
        // it (the link may already have gone up and down again by the time it looks).
        let events = inner.events.subscribe();
        let driver = tokio::spawn(drive(inner.clone()));
        let client = Client {
            guard: Arc::new(Guard(driver.abort_handle(), inner.clone())),
            inner,
        };
        Ok((client, events))
    }
}

/// A ZooKeeper client over a list of servers that keeps its session across connection losses
/// and, with recovery on, replaces it after an expiry. Cloning gives another handle on the
/// same session; paths are relative to the connect string's chroot.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    guard: Arc<Guard>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.inner.servers)
            .field("chroot", &self.inner.chroot)
            .field("state", &self.state())
            .finish()
    }
}

/// Stops the driver when the last handle goes; the connection then drops (no closeSession:
/// the session expires on the server, as with a crashed process). Persistent watches still
/// held end their streams.
struct Guard(AbortHandle, Arc<Inner>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.abort();
        close_persistent(&self.1);
    }
}

/// Why the client stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Terminal {
    Closed,
    Expired,
    AuthFailed,
}

impl Terminal {
    fn error(self) -> ClientError {
        match self {
            Terminal::Closed => ClientError::Closed,
            Terminal::Expired => ClientError::SessionExpired,
            Terminal::AuthFailed => ClientError::AuthFailed,
        }
    }
}

/// What requests see: a live connection, none right now, or none ever again.
#[derive(Clone)]
enum Link {
    Down,
    Up(Connection),
    Gone(Terminal),
}

pub(crate) struct Inner {
    servers: Vec<String>,
    /// Index of the first server tried, random so that clients sharing a list spread out.
    start: usize,
    /// "" or "/a/b" (no trailing slash).
    chroot: String,
    requested_timeout_ms: i32,
    recovery: bool,
    /// A read-only server may serve the client.
    read_only: bool,
    /// Calls fail when a connection attempt fails instead of waiting for the session.
    fail_fast: bool,
    /// The client-side expiry clock runs.
    expire_on_silence: bool,
    /// Connection attempts that failed so far (what fail-fast calls wait on).
    attempts_failed: watch::Sender<u64>,
    link: watch::Sender<Link>,
    events: broadcast::Sender<SessionEvent>,
    /// Every watch notification, for [`Client::notifications`].
    notifications: broadcast::Sender<WatchedEvent>,
    reports: broadcast::Sender<RecoveryReport>,
    /// What the caches found changed when they re-read after a gap.
    pub(crate) resyncs: broadcast::Sender<ResyncReport>,
    shutdown: watch::Sender<bool>,
    state: Mutex<Mut>,
}

type WatchSender = oneshot::Sender<Result<WatchedEvent, ClientError>>;

/// Everything the driver and the handles share that changes.
pub(crate) struct Mut {
    auth: Vec<(String, Vec<u8>)>,
    /// Pending one-shot watches by (server path, kind).
    watches: HashMap<(String, WatchKind), Vec<(u64, WatchSender)>>,
    /// Live EphemeralNode handles by id.
    ephemerals: HashMap<u64, EphemeralSpec>,
    /// Live persistent watches by id.
    pub(crate) persistent: HashMap<u64, PersistentSpec>,
    pub(crate) next_id: u64,
    /// Sessions this client had before the current one: their leftover ephemerals are ours.
    previous_sessions: Vec<i64>,
    session_id: i64,
    passwd: Vec<u8>,
    last_zxid: i64,
    /// Negotiated (or, before the first session, requested) timeout.
    timeout: Duration,
    current: SessionEvent,
}

#[derive(Debug, Clone)]
struct EphemeralSpec {
    /// Server path (chroot included).
    path: String,
    data: Vec<u8>,
    acl: Vec<Acl>,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Mut> {
        // Every mutation under this lock is a single insert/remove/assignment, so a panic
        // elsewhere cannot leave it half-done.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, state: SessionState, session_id: i64, server: Option<String>) {
        let ev = SessionEvent {
            state,
            session_id,
            server,
            at: Instant::now(),
        };
        self.lock().current = ev.clone();
        tracing::debug!(
            ?state,
            session = format_args!("0x{session_id:x}"),
            "session state"
        );
        let _ = self.events.send(ev);
    }

    pub(crate) fn server_path(&self, path: &str) -> Result<String, ClientError> {
        if !path.starts_with('/') {
            return Err(ClientError::BadPath(path.to_string()));
        }
        if self.chroot.is_empty() {
            Ok(path.to_string())
        } else if path == "/" {
            Ok(self.chroot.clone())
        } else {
            Ok(format!("{}{path}", self.chroot))
        }
    }

    pub(crate) fn client_path(&self, path: &str) -> String {
        strip_chroot(&self.chroot, path)
    }
}

fn strip_chroot(chroot: &str, path: &str) -> String {
    if chroot.is_empty() {
        return path.to_string();
    }
    match path.strip_prefix(chroot) {
        Some("") => "/".to_string(),
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        // Not under the chroot (cannot happen for paths of our own requests): pass it on.
        _ => path.to_string(),
    }
}

/// Splits "h1:p1,h2:p2/chroot" into the servers and the chroot ("" for none).
fn parse_connect_string(s: &str) -> Result<(Vec<String>, String), ClientError> {
    let bad = |why: &str| ClientError::BadConnectString(s.to_string(), why.to_string());
    let (hosts, chroot) = match s.find('/') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let chroot = match chroot {
        "" | "/" => String::new(),
        c if c.ends_with('/') => return Err(bad("the chroot must not end with '/'")),
        c if c.contains("//") => return Err(bad("empty element in the chroot")),
        c => c.to_string(),
    };
    let mut servers = Vec::new();
    for h in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        // "[::1]:2181", "host:2181", "host".
        let with_port = match h.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && !host.ends_with(':') => {
                port.parse::<u16>()
                    .map_err(|_| bad(&format!("bad port in {h:?}")))?;
                h.to_string()
            }
            Some(_) => return Err(bad(&format!("bad server {h:?}"))),
            None => format!("{h}:{DEFAULT_PORT}"),
        };
        servers.push(with_port);
    }
    if servers.is_empty() {
        return Err(bad("no server"));
    }
    Ok((servers, chroot))
}

/// A random number for jitter and server choice. std's RandomState is seeded from the OS per
/// process and stepped per call, which is all jitter needs (no extra crate).
pub(crate) fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Uniform in [0, max].
fn jitter(max: Duration) -> Duration {
    let ms = max.as_millis() as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(random() % (ms + 1))
}

/// The session driver: runs until the client is closed, dropped, or stops for good.
async fn drive(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    inner.publish(SessionState::Connecting, 0, None);
    let mut next = inner.start;
    let mut attempt: u32 = 0;
    // The client-side expiry deadline, armed while a session exists but no server serves it.
    let mut deadline: Option<Instant> = None;
    // The expired session and the watches it lost, until the new session's recovery ran.
    let mut pending_recovery: Option<(i64, Vec<(String, WatchKind)>)> = None;
    // Whether a connection served a session before: every later one follows a gap that
    // persistent watches must be told about.
    let mut served_before = false;
    // The current session is one a read-only server made, local to it: never resumed
    // elsewhere. The client's own session (from a read-write server), if it has one, waits
    // in `rw_session` meanwhile.
    let mut read_only_local = false;
    let mut rw_session: Option<(i64, Vec<u8>)> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let (session_id, passwd, last_zxid, timeout) = {
            let m = inner.lock();
            (m.session_id, m.passwd.clone(), m.last_zxid, m.timeout)
        };
        let (session_id, passwd) = if read_only_local {
            rw_session.clone().unwrap_or_default()
        } else {
            (session_id, passwd)
        };
        if let Some(d) = deadline {
            if Instant::now() >= d {
                deadline = None;
                read_only_local = false;
                rw_session = None;
                // Only read-only servers ever served: no session of ours to declare expired.
                if session_id != 0 {
                    match expire(&inner, session_id) {
                        Some(lost) => pending_recovery = Some((session_id, lost)),
                        None => return,
                    }
                }
                attempt = 0;
                continue;
            }
        }
        if attempt > 0 {
            // Exponential with full jitter, capped well inside the session timeout, so that
            // many clients of one restarted server do not come back in lock step.
            let cap = (timeout / 3).min(Duration::from_secs(2));
            let ceiling = Duration::from_millis(100u64 << attempt.min(6)).min(cap);
            let mut wake = Instant::now() + jitter(ceiling);
            if let Some(d) = deadline {
                wake = wake.min(d);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = shutdown.changed() => return,
            }
        }
        let addr = inner.servers[next % inner.servers.len()].clone();
        next = next.wrapping_add(1);
        attempt = attempt.saturating_add(1);
        // One attempt may take its share of the timeout, as ZooKeeper's connectTimeout does,
        // but at most a third of it (a server that accepts and never answers — ZooKeeper 3.8
        // does that to connections it gets while starting — must leave time for more tries)
        // and never past the expiry deadline.
        let mut limit = (timeout / inner.servers.len() as u32)
            .min(timeout / 3)
            .max(Duration::from_millis(500));
        if let Some(d) = deadline {
            limit = limit.min(d.saturating_duration_since(Instant::now()));
        }
        let opts = ConnectOptions {
            session_timeout_ms: inner.requested_timeout_ms,
            session_id,
            passwd: passwd.clone(),
            last_zxid_seen: last_zxid,
            read_only: Some(inner.read_only),
        };
        let conn = tokio::select! {
            r = tokio::time::timeout(limit, Connection::connect(&addr, opts)) => r,
            _ = shutdown.changed() => return,
        };
        let conn = match conn {
            Ok(Ok(c)) => c,
            Ok(Err(ClientError::SessionExpired)) => {
                deadline = None;
                read_only_local = false;
                rw_session = None;
                match expire(&inner, session_id) {
                    Some(lost) => pending_recovery = Some((session_id, lost)),
                    None => return,
                }
                attempt = 0;
                continue;
            }
            Ok(Err(e)) => {
                tracing::debug!(server = %addr, error = %e, "connect failed");
                inner.attempts_failed.send_modify(|n| *n += 1);
                continue;
            }
            Err(_) => {
                tracing::debug!(server = %addr, "connect timed out");
                inner.attempts_failed.send_modify(|n| *n += 1);
                continue;
            }
        };
        let handshake_at = Instant::now();
        let on_read_only = conn.connect_response().read_only == Some(true);
        let new_session = conn.session_id() != session_id;
        // Leaving a read-only server's session for a real one (or another read-only one):
        // the watches are the client's, not that session's, and go along.
        let rewatch = !new_session || read_only_local;
        if on_read_only {
            if !read_only_local && session_id != 0 {
                rw_session = Some((session_id, passwd));
            }
            read_only_local = true;
        } else {
            read_only_local = false;
            rw_session = None;
        }
        let timeout = Duration::from_millis(conn.negotiated_timeout_ms().max(1) as u64);
        let auth = {
            let mut m = inner.lock();
            // A read-only server's own session does not end the one it stands in for.
            if new_session && session_id != 0 && !on_read_only {
                m.previous_sessions.push(session_id);
            }
            m.session_id = conn.session_id();
            m.passwd = conn.passwd();
            m.timeout = timeout;
            m.auth.clone()
        };
        match prepare(&inner, &conn, &auth, !rewatch).await {
            Ok(()) => {}
            Err(ClientError::Server(ErrorCode::AuthFailed)) | Err(ClientError::AuthFailed) => {
                conn.abort();
                fail_watches(&inner, || ClientError::AuthFailed);
                close_persistent(&inner);
                inner.link.send_replace(Link::Gone(Terminal::AuthFailed));
                inner.publish(SessionState::AuthFailed, conn.session_id(), Some(addr));
                return;
            }
            Err(e) => {
                tracing::debug!(server = %addr, error = %e, "session set-up failed");
                inner.attempts_failed.send_modify(|n| *n += 1);
                conn.abort();
                deadline = silence_deadline(&inner, conn.last_heard(), timeout);
                continue;
            }
        }
        let expired_session = pending_recovery.as_ref().map(|(old, _)| *old);
        // Recovery writes (ephemerals, persistent watches): it waits for a read-write server.
        let recover = if on_read_only {
            None
        } else {
            pending_recovery.take()
        };
        if let Some((old, lost_watches)) = recover {
            let ephemerals = recover_ephemerals(&inner, &conn, handshake_at).await;
            let rearmed = rearm_persistent(&inner, &conn).await;
            if conn.is_closed() {
                // The new connection died during recovery: resume the new session on the
                // next one and recover again there (creating is idempotent for our nodes).
                pending_recovery = Some((old, lost_watches));
                deadline = silence_deadline(&inner, conn.last_heard(), timeout);
                continue;
            }
            let report = RecoveryReport {
                old_session_id: old,
                new_session_id: conn.session_id(),
                ephemerals,
                lost_watches,
                rearmed,
            };
            tracing::info!(?report, "session recovered");
            let _ = inner.reports.send(report);
        }
        if served_before {
            let marker = PersistentEvent::Rearmed {
                session_id: conn.session_id(),
                expired_session,
            };
            let queues: Vec<_> = inner
                .lock()
                .persistent
                .values()
                .map(|s| s.queue.clone())
                .collect();
            for q in queues {
                q.push(marker.clone());
            }
        }
        served_before = true;
        attempt = 0;
        // State first: whoever sees the link up (connect() returning) must see Connected.
        let state = if on_read_only {
            SessionState::ConnectedReadOnly
        } else {
            SessionState::Connected
        };
        inner.publish(state, conn.session_id(), Some(addr.clone()));
        inner.link.send_replace(Link::Up(conn.clone()));
        // On a read-only server, look for a read-write one, more and more rarely.
        let mut probe_every = RW_PROBE_FIRST;
        let mut next_probe = Instant::now() + probe_every;
        // Pump notifications until the connection ends.
        let closing = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_probe), if on_read_only => {
                    if let Some(i) = read_write_server(&inner.servers, &addr).await {
                        tracing::info!(server = %inner.servers[i], "a read-write server answers; leaving the read-only one");
                        next = i;
                        attempt = 0;
                        conn.abort();
                        break false;
                    }
                    probe_every = (probe_every * 2).min(RW_PROBE_MAX);
                    next_probe = Instant::now() + probe_every;
                }
                ev = conn.next_event() => match ev {
                    Some(ev) if ev.state == KeeperState::AuthFailed => {
                        conn.abort();
                        fail_watches(&inner, || ClientError::AuthFailed);
                close_persistent(&inner);
                        inner.link.send_replace(Link::Gone(Terminal::AuthFailed));
                        inner.publish(SessionState::AuthFailed, conn.session_id(), Some(addr));
                        return;
                    }
                    Some(ev) => deliver(&inner, ev),
                    None => break false,
                },
                _ = shutdown.changed() => break true,
            }
        };
        if closing {
            return;
        }
        {
            let mut m = inner.lock();
            m.last_zxid = m.last_zxid.max(conn.last_zxid());
        }
        inner.link.send_replace(Link::Down);
        inner.publish(
            SessionState::Suspended,
            conn.session_id(),
            Some(addr.clone()),
        );
        deadline = silence_deadline(&inner, conn.last_heard(), timeout);
        // Try the next server first: the one that failed is the least likely to answer.
    }
}

/// When the client-side expiry clock declares the session expired: 4/3 of the timeout after
/// the last news from a server (ZooKeeper 3.9.3's client), unless it is off.
fn silence_deadline(inner: &Inner, last_heard: Instant, timeout: Duration) -> Option<Instant> {
    inner
        .expire_on_silence
        .then(|| last_heard + timeout * 4 / 3)
}

/// The first and the longest wait between two looks for a read-write server while a
/// read-only one serves (ZooKeeper's client starts at 100 ms too, and doubles to 60 s; 10 s
/// here brings a client back sooner, for one `srvr` per other server every 10 s).
const RW_PROBE_FIRST: Duration = Duration::from_millis(100);
const RW_PROBE_MAX: Duration = Duration::from_secs(10);

/// The index of a server other than `current` that serves read-write, asked with `srvr`
/// (the one word every server allows): its `Mode:` is there and is not `read-only`.
async fn read_write_server(servers: &[String], current: &str) -> Option<usize> {
    for (i, server) in servers.iter().enumerate() {
        if server == current {
            continue;
        }
        let Ok(text) = four_letter_word(server, "srvr", Duration::from_secs(1), 64 * 1024).await
        else {
            continue;
        };
        let serving = text
            .lines()
            .find_map(|l| l.strip_prefix("Mode: "))
            .is_some_and(|mode| mode.trim() != "read-only");
        if serving {
            return Some(i);
        }
    }
    None
}

/// Asks the server at `addr` a four-letter word (`srvr`, `mntr`, ...) on a connection of its
/// own and returns its whole answer (at most `max` bytes), or an error if it does not come
/// within `within`. The answer is whatever the server says, a refusal included.
pub async fn four_letter_word(
    addr: &str,
    word: &str,
    within: Duration,
    max: usize,
) -> std::io::Result<String> {
    let ask = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(word.as_bytes()).await?;
        let mut text = Vec::new();
        (&mut s).take(max as u64).read_to_end(&mut text).await?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    };
    tokio::time::timeout(within, ask).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {} ms", within.as_millis()),
        )
    })?
}

/// Reports Expired and forgets the session. Returns the lost watches when a new session
/// should follow, None when the client stops here (recovery off).
fn expire(inner: &Inner, session_id: i64) -> Option<Vec<(String, WatchKind)>> {
    let lost = fail_watches(inner, || ClientError::SessionExpired);
    {
        let mut m = inner.lock();
        if session_id != 0 && !m.previous_sessions.contains(&session_id) {
            m.previous_sessions.push(session_id);
        }
        m.session_id = 0;
        m.passwd.clear();
    }
    inner.publish(SessionState::Expired, session_id, None);
    if !inner.recovery {
        inner.link.send_replace(Link::Gone(Terminal::Expired));
        close_persistent(inner);
        return None;
    }
    inner.publish(SessionState::Connecting, 0, None);
    Some(lost)
}

/// Resolves every pending watch with an error; returns their (client) paths and kinds.
fn fail_watches(inner: &Inner, err: impl Fn() -> ClientError) -> Vec<(String, WatchKind)> {
    let all: Vec<_> = inner.lock().watches.drain().collect();
    let mut lost = Vec::new();
    for ((path, kind), waiters) in all {
        for (_, tx) in waiters {
            let _ = tx.send(Err(err()));
        }
        lost.push((inner.client_path(&path), kind));
    }
    lost.sort();
    lost
}

/// Drops the watches of `kind` on `path` (server path) that a removeWatches took off the
/// server: one-shot ones hear a *WatchRemoved event, persistent ones end their streams.
fn forget_watches(inner: &Inner, path: &str, kind: WatcherType) {
    let (one_shot, persistent): (&[WatchKind], &[bool]) = match kind {
        WatcherType::Children => (&[WatchKind::Child], &[]),
        WatcherType::Data => (&[WatchKind::Data, WatchKind::Exist], &[]),
        WatcherType::Any => (
            &[WatchKind::Data, WatchKind::Exist, WatchKind::Child],
            &[false, true],
        ),
        WatcherType::Persistent => (&[], &[false]),
        WatcherType::PersistentRecursive => (&[], &[true]),
    };
    let (removed, ended) = {
        let mut m = inner.lock();
        let removed: Vec<(WatchKind, Vec<(u64, WatchSender)>)> = one_shot
            .iter()
            .filter_map(|k| m.watches.remove(&(path.to_string(), *k)).map(|v| (*k, v)))
            .collect();
        let ids: Vec<u64> = m
            .persistent
            .iter()
            .filter(|(_, s)| s.path == path && persistent.contains(&s.recursive))
            .map(|(id, _)| *id)
            .collect();
        let ended: Vec<_> = ids
            .iter()
            .filter_map(|id| m.persistent.remove(id))
            .map(|s| s.queue)
            .collect();
        (removed, ended)
    };
    for (kind, waiters) in removed {
        let ev = WatchedEvent {
            event_type: if kind == WatchKind::Child {
                EventType::ChildWatchRemoved
            } else {
                EventType::DataWatchRemoved
            },
            state: KeeperState::SyncConnected,
            path: inner.client_path(path),
            zxid: -1,
        };
        for (_, tx) in waiters {
            let _ = tx.send(Ok(ev.clone()));
        }
    }
    for q in ended {
        q.close();
    }
}

/// Ends every persistent watch's stream (the client stopped for good).
fn close_persistent(inner: &Inner) {
    let queues: Vec<_> = inner
        .lock()
        .persistent
        .values()
        .map(|s| s.queue.clone())
        .collect();
    for q in queues {
        q.close();
    }
}

/// Adds every persistent watch again in a new session.
async fn rearm_persistent(
    inner: &Inner,
    conn: &Connection,
) -> Vec<(String, bool, Result<(), String>)> {
    let mut specs: Vec<(String, bool, corral_proto::AddWatchMode)> = inner
        .lock()
        .persistent
        .values()
        .map(|s| (s.path.clone(), s.recursive, s.mode()))
        .collect();
    specs.sort_by(|a, b| a.0.cmp(&b.0));
    specs.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    let mut out = Vec::with_capacity(specs.len());
    for (path, recursive, mode) in specs {
        let r = conn.add_watch(&path, mode).await.map_err(|e| e.to_string());
        out.push((inner.client_path(&path), recursive, r));
    }
    out
}

/// Auth, then (on a resumed session) the watches this client holds.
async fn prepare(
    inner: &Inner,
    conn: &Connection,
    auth: &[(String, Vec<u8>)],
    new_session: bool,
) -> Result<(), ClientError> {
    for (scheme, a) in auth {
        conn.add_auth(scheme, a).await?;
    }
    if new_session {
        return Ok(());
    }
    let (relative_zxid, mut keys, mut persistent) = {
        let m = inner.lock();
        let keys: Vec<(String, WatchKind)> = m.watches.keys().cloned().collect();
        let persistent: Vec<(String, bool)> = m
            .persistent
            .values()
            .map(|s| (s.path.clone(), s.recursive))
            .collect();
        (m.last_zxid.max(conn.last_zxid()), keys, persistent)
    };
    keys.sort();
    persistent.sort();
    persistent.dedup();
    let mut batch = SetWatches2 {
        relative_zxid,
        data_watches: Vec::new(),
        exist_watches: Vec::new(),
        child_watches: Vec::new(),
        persistent_watches: Vec::new(),
        persistent_recursive_watches: Vec::new(),
    };
    let mut bytes = 0;
    for (path, kind) in keys {
        bytes += path.len() + 4;
        match kind {
            WatchKind::Data => batch.data_watches.push(path),
            WatchKind::Exist => batch.exist_watches.push(path),
            WatchKind::Child => batch.child_watches.push(path),
        }
        if bytes >= SET_WATCHES_CHUNK {
            flush_set_watches(conn, &mut batch, relative_zxid).await?;
            bytes = 0;
        }
    }
    for (path, recursive) in persistent {
        bytes += path.len() + 4;
        if recursive {
            batch.persistent_recursive_watches.push(path);
        } else {
            batch.persistent_watches.push(path);
        }
        if bytes >= SET_WATCHES_CHUNK {
            flush_set_watches(conn, &mut batch, relative_zxid).await?;
            bytes = 0;
        }
    }
    if bytes > 0 {
        conn.call(Request::SetWatches2(batch)).await?;
    }
    Ok(())
}

/// Sends the batch and leaves an empty one in its place.
async fn flush_set_watches(
    conn: &Connection,
    batch: &mut SetWatches2,
    relative_zxid: i64,
) -> Result<(), ClientError> {
    let full = std::mem::replace(
        batch,
        SetWatches2 {
            relative_zxid,
            data_watches: Vec::new(),
            exist_watches: Vec::new(),
            child_watches: Vec::new(),
            persistent_watches: Vec::new(),
            persistent_recursive_watches: Vec::new(),
        },
    );
    conn.call(Request::SetWatches2(full)).await.map(|_| ())
}

/// Hands a notification to the watches it fires (ZooKeeper's rules: a data change or a
/// creation fires data and exist watches; a deletion fires all three kinds).
fn deliver(inner: &Inner, ev: WatchedEvent) {
    let kinds: &[WatchKind] = match ev.event_type {
        EventType::NodeCreated | EventType::NodeDataChanged => &[WatchKind::Data, WatchKind::Exist],
        EventType::NodeDeleted => &[WatchKind::Data, WatchKind::Exist, WatchKind::Child],
        EventType::NodeChildrenChanged => &[WatchKind::Child],
        _ => &[],
    };
    let (fired, persistent) = {
        let mut m = inner.lock();
        let fired: Vec<(u64, WatchSender)> = kinds
            .iter()
            .filter_map(|k| m.watches.remove(&(ev.path.clone(), *k)))
            .flatten()
            .collect();
        let persistent: Vec<_> = m
            .persistent
            .values()
            .filter(|s| s.matches(&ev.path, ev.event_type))
            .map(|s| s.queue.clone())
            .collect();
        (fired, persistent)
    };
    let listening = inner.notifications.receiver_count() > 0;
    if fired.is_empty() && persistent.is_empty() && !listening {
        return;
    }
    let ev = WatchedEvent {
        path: inner.client_path(&ev.path),
        ..ev
    };
    if listening {
        let _ = inner.notifications.send(ev.clone());
    }
    for (_, tx) in fired {
        let _ = tx.send(Ok(ev.clone()));
    }
    for q in persistent {
        q.push(PersistentEvent::Node(ev.clone()));
    }
}

/// Re-creates every live ephemeral in the new session.
async fn recover_ephemerals(
    inner: &Inner,
    conn: &Connection,
    handshake_at: Instant,
) -> Vec<EphemeralRecovery> {
    let (specs, previous) = {
        let m = inner.lock();
        let mut specs: Vec<EphemeralSpec> = m.ephemerals.values().cloned().collect();
        specs.sort_by(|a, b| a.path.cmp(&b.path));
        (specs, m.previous_sessions.clone())
    };
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let outcome = match ensure_ephemeral(conn, &spec, &previous).await {
            Ok(o) => o,
            Err(e) => EphemeralOutcome::Failed(e.to_string()),
        };
        out.push(EphemeralRecovery {
            path: inner.client_path(&spec.path),
            outcome,
            after: handshake_at.elapsed(),
        });
    }
    out
}

/// Makes `spec`'s node exist and belong to `conn`'s session.
async fn ensure_ephemeral(
    conn: &Connection,
    spec: &EphemeralSpec,
    previous: &[i64],
) -> Result<EphemeralOutcome, ClientError> {
    // A few rounds: between our reads, the old session may expire (node gone) or another
    // client may take the node.
    for _ in 0..5 {
        match conn
            .create(&spec.path, &spec.data, &spec.acl, CreateMode::Ephemeral)
            .await
        {
            Ok(_) => return Ok(EphemeralOutcome::Created),
            Err(ClientError::Server(ErrorCode::NodeExists)) => {}
            Err(e) => return Err(e),
        }
        let Some(stat) = conn.exists(&spec.path, false).await? else {
            continue;
        };
        let owner = stat.ephemeral_owner;
        if owner == conn.session_id() {
            return Ok(EphemeralOutcome::AlreadyOurs);
        }
        if !previous.contains(&owner) {
            return Ok(EphemeralOutcome::HeldByOther { owner });
        }
        // Ours from a session the server has not expired yet (the Kafka /brokers/ids/N case):
        // delete that exact version and create ours atomically, so nobody sees a gap filled
        // by someone else in between.
        let ops = vec![
            Request::Delete(DeleteRequest {
                path: spec.path.clone(),
                version: stat.version,
            }),
            Request::Create(CreateRequest {
                path: spec.path.clone(),
                data: Some(spec.data.clone()),
                acl: spec.acl.clone(),
                flags: CreateMode::Ephemeral.code(),
            }),
        ];
        let results = conn.multi(ops).await?;
        if !results.iter().any(|r| matches!(r, MultiResult::Error(_))) {
            return Ok(EphemeralOutcome::ReplacedStale { old_owner: owner });
        }
        // NoNode / BadVersion: it changed under us; look again.
    }
    Err(ClientError::Server(ErrorCode::NodeExists))
}

impl Client {
    /// Shorthand for `ClientBuilder::new(connect_string).connect()`.
    pub async fn connect(connect_string: &str) -> Result<Client, ClientError> {
        ClientBuilder::new(connect_string).connect().await
    }

    /// The current state.
    pub fn state(&self) -> SessionState {
        self.inner.lock().current.state
    }

    /// The latest transition: the current state, its session and the server involved.
    pub fn status(&self) -> SessionEvent {
        self.inner.lock().current.clone()
    }

    /// Sessions this client had before the current one (their leftover ephemerals are its
    /// own).
    pub(crate) fn previous_sessions(&self) -> Vec<i64> {
        self.inner.lock().previous_sessions.clone()
    }

    /// Whether an expiry is followed by a new session.
    pub(crate) fn recovers(&self) -> bool {
        self.inner.recovery
    }

    /// The current session's id (0 while there is none).
    pub fn session_id(&self) -> i64 {
        self.inner.lock().session_id
    }

    /// The current session's password (with [`Client::session_id`], what resumes it; a
    /// test can use them to keep a session alive from elsewhere).
    pub fn session_password(&self) -> Vec<u8> {
        self.inner.lock().passwd.clone()
    }

    /// The negotiated session timeout of the current session.
    pub fn session_timeout(&self) -> Duration {
        self.inner.lock().timeout
    }

    /// Every state transition from now on, in order. A receiver that falls more than 256
    /// events behind gets `Lagged` and misses the oldest.
    pub fn session_events(&self) -> broadcast::Receiver<SessionEvent> {
        self.inner.events.subscribe()
    }

    /// Every watch notification the session gets from now on, in the order the servers sent
    /// them (paths chroot-relative): one-shot and persistent watches alike, whether or not
    /// their [`Watch`] or [`PersistentWatch`](crate::PersistentWatch) is still held — the
    /// Java client's default watcher. A receiver more than 1024 notifications behind gets
    /// `Lagged` and misses the oldest.
    pub fn notifications(&self) -> broadcast::Receiver<WatchedEvent> {
        self.inner.notifications.subscribe()
    }

    /// One [`RecoveryReport`] per expiry from now on.
    pub fn recovery_reports(&self) -> broadcast::Receiver<RecoveryReport> {
        self.inner.reports.subscribe()
    }

    /// A connection serving the session: waits while Suspended or Connecting, up to the
    /// session timeout. A call made in one session never runs in the next: if the session
    /// the caller saw expires while it waits, it fails with SessionExpired (the caller's
    /// view of the world, e.g. that it is the leader, belongs to the dead session).
    pub(crate) async fn conn(&self) -> Result<Connection, ClientError> {
        self.conn_in(None).await
    }

    /// [`Client::conn`] for a call that belongs to `session` (when given) rather than to
    /// whichever session is current when it is made: anything else is SessionExpired.
    pub(crate) async fn conn_in(&self, session: Option<i64>) -> Result<Connection, ClientError> {
        let mut rx = self.inner.link.subscribe();
        let (wait, seen) = {
            let m = self.inner.lock();
            (m.timeout, session.unwrap_or(m.session_id))
        };
        if session.is_some() && seen != self.inner.lock().session_id {
            return Err(ClientError::SessionExpired);
        }
        // The common case, without arming a timer.
        match &*rx.borrow_and_update() {
            Link::Up(c) if seen != 0 && c.session_id() != seen => {
                return Err(ClientError::SessionExpired)
            }
            Link::Up(c) if !c.is_closed() => return Ok(c.clone()),
            Link::Gone(t) => return Err(t.error()),
            _ => {}
        }
        let mut failures = self.inner.attempts_failed.subscribe();
        failures.borrow_and_update();
        let fail_fast = self.inner.fail_fast;
        let got = tokio::time::timeout(wait, async {
            loop {
                match &*rx.borrow_and_update() {
                    Link::Up(c) if seen != 0 && c.session_id() != seen => {
                        return Err(ClientError::SessionExpired)
                    }
                    Link::Up(c) if !c.is_closed() => return Ok(c.clone()),
                    Link::Gone(t) => return Err(t.error()),
                    _ => {}
                }
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return Err(ClientError::Closed);
                        }
                    }
                    _ = failures.changed(), if fail_fast => {
                        return Err(ClientError::ConnectionLoss);
                    }
                }
            }
        })
        .await;
        got.unwrap_or(Err(ClientError::ConnectionLoss))
    }

    /// A connection-level failure of a call becomes ConnectionLoss (its fate is unknown).
    pub(crate) fn lost(e: ClientError) -> ClientError {
        match e {
            ClientError::Io(_) | ClientError::Closed | ClientError::Timeout => {
                ClientError::ConnectionLoss
            }
            e => e,
        }
    }

    /// Registers a watch before its request is sent, so that a notification arriving right
    /// after the reply cannot be missed. (A notification for an older watch on the same path
    /// and kind may fire it early: a spurious wake-up the caller handles by re-reading.)
    fn register(&self, path: &str, kind: WatchKind) -> (u64, Watch) {
        let (tx, rx) = oneshot::channel();
        let mut m = self.inner.lock();
        let id = m.next_id;
        m.next_id += 1;
        m.watches
            .entry((path.to_string(), kind))
            .or_default()
            .push((id, tx));
        (id, Watch { rx })
    }

    fn unregister(&self, path: &str, kind: WatchKind, id: u64) {
        let mut m = self.inner.lock();
        let key = (path.to_string(), kind);
        if let Some(v) = m.watches.get_mut(&key) {
            v.retain(|(i, _)| *i != id);
            if v.is_empty() {
                m.watches.remove(&key);
            }
        }
    }

    /// Moves a registered watch to another kind (an exists watch on a node that exists is a
    /// data watch, which matters when watches are re-sent on reconnect).
    fn rekey(&self, path: &str, from: WatchKind, to: WatchKind, id: u64) {
        let mut m = self.inner.lock();
        let key = (path.to_string(), from);
        let Some(v) = m.watches.get_mut(&key) else {
            return; // already fired
        };
        let Some(pos) = v.iter().position(|(i, _)| *i == id) else {
            return;
        };
        let entry = v.remove(pos);
        if v.is_empty() {
            m.watches.remove(&key);
        }
        m.watches
            .entry((path.to_string(), to))
            .or_default()
            .push(entry);
    }

    /// [`RawClient::call`](crate::RawClient::call): the request as given, with the watch its
    /// flag leaves tracked like the `_w` methods' (registered before sending, taken back if
    /// the read fails; an exists on a missing node keeps it, for the creation).
    pub(crate) async fn call_tracked(&self, req: Request) -> Result<Response, ClientError> {
        let watch = match &req {
            Request::GetData(r) if r.watch => Some((r.path.clone(), WatchKind::Data)),
            Request::Exists(r) if r.watch => Some((r.path.clone(), WatchKind::Exist)),
            Request::GetChildren(r) | Request::GetChildren2(r) if r.watch => {
                Some((r.path.clone(), WatchKind::Child))
            }
            _ => None,
        };
        let removal = match &req {
            Request::RemoveWatches(r) => {
                WatcherType::from_i32(r.watcher_type).map(|kind| (r.path.clone(), kind))
            }
            _ => None,
        };
        let c = self.conn().await?;
        let Some((path, kind)) = watch else {
            let reply = c.call(req).await.map_err(Self::lost)?;
            if let Some((path, kind)) = removal {
                forget_watches(&self.inner, &path, kind);
            }
            return Ok(reply);
        };
        // The Watch is not kept: its notification goes to `notifications` all the same.
        let (id, _watch) = self.register(&path, kind);
        match c.call(req).await {
            Ok(reply) => {
                if kind == WatchKind::Exist {
                    self.rekey(&path, WatchKind::Exist, WatchKind::Data, id);
                }
                Ok(reply)
            }
            Err(e @ ClientError::Server(ErrorCode::NoNode)) if kind == WatchKind::Exist => Err(e),
            Err(e) => {
                self.unregister(&path, kind, id);
                Err(Self::lost(e))
            }
        }
    }

    /// Removes the session's watches of `kind` on `path` (removeWatches): on the server, and
    /// here, so that a move does not re-send them. Pending [`Watch`]es resolve with a
    /// DataWatchRemoved or ChildWatchRemoved event; persistent watches removed (kind Any,
    /// Persistent or PersistentRecursive) end their streams. A server holding none answers
    /// NoWatcher. With `local` (ZooKeeper's removeWatches(..., local)), they are forgotten here
    /// even when no server is reached or the server refuses, and the call succeeds.
    pub async fn remove_watches(
        &self,
        path: &str,
        kind: WatcherType,
        local: bool,
    ) -> Result<(), ClientError> {
        let p = self.inner.server_path(path)?;
        let serving = matches!(
            self.state(),
            SessionState::Connected | SessionState::ConnectedReadOnly
        );
        let sent = if local && !serving {
            Err(ClientError::ConnectionLoss)
        } else {
            match self.conn().await {
                Ok(c) => c.remove_watches(&p, kind).await.map_err(Self::lost),
                Err(e) => Err(e),
            }
        };
        if sent.is_ok() || local {
            forget_watches(&self.inner, &p, kind);
            return Ok(());
        }
        sent
    }

    /// Creates a node; returns its path (with the sequence suffix, if sequential).
    pub async fn create(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
    ) -> Result<String, ClientError> {
        let p = self.inner.server_path(path)?;
        let c = self.conn().await?;
        let created = c.create(&p, data, acl, mode).await.map_err(Self::lost)?;
        Ok(self.inner.client_path(&created))
    }

    /// Creates a node and returns its path and Stat.
    pub async fn create2(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
    ) -> Result<(String, Stat), ClientError> {
        let p = self.inner.server_path(path)?;
        let c = self.conn().await?;
        let (created, stat) = c.create2(&p, data, acl, mode).await.map_err(Self::lost)?;
        Ok((self.inner.client_path(&created), stat))
    }

    /// Deletes a node; `version` -1 matches any version.
    pub async fn delete(&self, path: &str, version: i32) -> Result<(), ClientError> {
        let p = self.inner.server_path(path)?;
        let c = self.conn().await?;
        c.delete(&p, version).await.map_err(Self::lost)
    }

    /// The node's Stat, or None if it does not exist.
    pub async fn exists(&self, path: &str) -> Result<Option<Stat>, ClientError> {
        let p = self.inner.server_path(path)?;
        let c = self.conn().await?;
        c.exists(&p, false).await.map_err(Self::lost)
    }

    /// A read that sets a watch: the watch registered before the request is sent (so its
    /// event cannot be missed), and taken back if the read fails.
    async fn watched<T, F, Fut>(
        &self,
        path: &str,
        kind: WatchKind,
        read: F,
    ) -> Result<(T, Watch, String, u64), ClientError>
    where
        F: FnOnce(Connection, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let p = self.inner.server_path(path)?;
        let c = self.conn().await?;
        let (id, w) = self.register(&p, kind);
        match read(c, p.clone()).await {
            Ok(v) => Ok((v, w, p, id)),
            Err(e) => {
                self.unregister(&p, kind, id);
                Err(Self::lost(e))
            }
        }
    }

    /// The node's Stat (or None) and a watch that fires when it is created, changed or
    /// deleted.
    pub async fn exists_w(&self, path: &str) -> Result<(Option<Stat>, Watch), ClientError> {
        let (stat, w, p, id) = self
            .watched(path, WatchKind::Exist, |c, p| async move {
                c.exists(&p, true).await
            })
            .await?;
        if stat.is_some() {
            // The server keeps an exists watch on an existing node as a data watch.
            self.rekey(&p, WatchKind::Exist, WatchKind::Data, id);
        }
        Ok((stat, w))
    }

    /// A node's data (null reads as empty) and Stat.
    pub async fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat), ClientError> {
        let p = self.inner.server_path(path)?;
        let c = self.conn().await?;
        c.get_data(&p, false).await.map_err(Self::lost)
    }

    /// A node's data and Stat, and a watch that fires when the data changes or the node is
    /// deleted.
    pub async fn get_data_w(&self, path: &str) -> Result<(Vec<u8>, Stat, Watch), ClientError> {
        let ((d, s), w, _, _) = self
            .watched(path, WatchKind::Data, |c, p| async move {
                c.get_data(&p, true).await
            })
            .await?;
        Ok((d, s, w))
    }

    /// Sets a node's data; `version` -1 matches any version.
    pub async fn set_data(
        &self,
        path: &str,
        data: &[u8],
        version: i32,
    ) -> Result<Stat, ClientError> {
        let p = self.inner.server_path(path)?;
        let c = self.conn().await?;
        c.set_data(&p, data, version).await.map_err(Self::lost)
    }

    /// A node's children (names, not paths).
    pub async fn get_children(&self, path: &str) -> Result<Vec<String>, ClientError> {
        let p = self.inner.server_path(path)?;
        let c = self.conn().await?;
        c.get_children(&p, false).await.map_err(Self::lost)
    }

    /// A node's children and a watch that fires when they change or the node is deleted.
    pub async fn get_children_w(&self, path: &str) -> Result<(Vec<String>, Watch), ClientError> {
        let (children, w, _, _) = self
            .watched(path, WatchKind::Child, |c, p| async move {
                c.get_children(&p, true).await
            })
            .await?;
        Ok((children, w))
    }

    /// A node's children and its Stat.
    pub async fn get_children2(&self, path: &str) -> Result<(Vec<String>, Stat), ClientError> {
        let p = self.inner.server_path(path)?;
        let c = self.conn().await?;
        c.get_children2(&p, false).await.map_err(Self::lost)
    }

    /// A node's ACL and Stat.
    pub async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat), ClientError> {
        let p = self.inner.server_path(path)?;
        let c = self.conn().await?;
        c.get_acl(&p).await.map_err(Self::lost)
    }

    /// Replaces a node's ACL; `version` is the expected aversion, -1 for any.
    pub async fn set_acl(
        &self,
        path: &str,
        acl: &[Acl],
        version: i32,
    ) -> Result<Stat, ClientError> {
        let p = self.inner.server_path(path)?;
        let c = self.conn().await?;
        c.set_acl(&p, acl, version).await.map_err(Self::lost)
    }

    /// Makes the server catch up with the leader before this session's next read.
    pub async fn sync(&self, path: &str) -> Result<(), ClientError> {
        let p = self.inner.server_path(path)?;
        let c = self.conn().await?;
        c.sync(&p).await.map(|_| ()).map_err(Self::lost)
    }

    /// Adds an identity to the session; it is re-sent on every later connection.
    pub async fn add_auth(&self, scheme: &str, auth: &[u8]) -> Result<(), ClientError> {
        let c = self.conn().await?;
        c.add_auth(scheme, auth).await.map_err(Self::lost)?;
        self.inner
            .lock()
            .auth
            .push((scheme.to_string(), auth.to_vec()));
        Ok(())
    }

    /// Runs create / delete / setData / check operations atomically (see
    /// [`Connection::multi`]); paths in `ops` and in the results are chroot-relative.
    pub async fn multi(&self, ops: Vec<Request>) -> Result<Vec<MultiResult>, ClientError> {
        self.multi_in(ops, None).await
    }

    /// [`Client::multi`], sent only in `session` if given (else SessionExpired).
    pub(crate) async fn multi_in(
        &self,
        ops: Vec<Request>,
        session: Option<i64>,
    ) -> Result<Vec<MultiResult>, ClientError> {
        let ops = ops
            .into_iter()
            .map(|op| self.chroot_op(op))
            .collect::<Result<Vec<_>, _>>()?;
        let c = self.conn_in(session).await?;
        let results = c.multi(ops).await.map_err(Self::lost)?;
        Ok(results
            .into_iter()
            .map(|r| match r {
                MultiResult::Create(p) => MultiResult::Create(self.inner.client_path(&p)),
                MultiResult::Create2(p, s) => MultiResult::Create2(self.inner.client_path(&p), s),
                r => r,
            })
            .collect())
    }

    fn chroot_op(&self, mut op: Request) -> Result<Request, ClientError> {
        let multi_op = matches!(
            op,
            Request::Create(_)
                | Request::Create2(_)
                | Request::CreateContainer(_)
                | Request::CreateTtl(_)
                | Request::Delete(_)
                | Request::SetData(_)
                | Request::Check(_)
        );
        match op.path_mut() {
            Some(path) if multi_op => {
                *path = self.inner.server_path(path)?;
                Ok(op)
            }
            _ => Err(ClientError::UnexpectedResponse(format!(
                "not a multi operation: {:?}",
                op.op_code()
            ))),
        }
    }

    /// Creates a node with a time-to-live (mode PersistentWithTtl or
    /// PersistentSequentialWithTtl; the server needs extended types enabled): it is deleted
    /// once it has had no children and no change for `ttl`. Returns its path and Stat.
    pub async fn create_ttl(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
        ttl: Duration,
    ) -> Result<(String, Stat), ClientError> {
        let p = self.inner.server_path(path)?;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let c = self.conn().await?;
        let (created, stat) = c
            .create_ttl(&p, data, acl, mode, ttl_ms)
            .await
            .map_err(Self::lost)?;
        Ok((self.inner.client_path(&created), stat))
    }

    /// The paths (chroot-relative) of the ephemeral nodes this session owns under `prefix`
    /// (a path prefix, not only a parent: "/app/w" matches "/app/worker-1").
    pub async fn get_ephemerals(&self, prefix: &str) -> Result<Vec<String>, ClientError> {
        let p = self.inner.server_path(prefix)?;
        // "/" under a chroot is the chroot's subtree, not every path that starts like it.
        let p = if prefix == "/" && !self.inner.chroot.is_empty() {
            format!("{p}/")
        } else {
            p
        };
        let c = self.conn().await?;
        let paths = c.get_ephemerals(&p).await.map_err(Self::lost)?;
        Ok(paths.iter().map(|s| self.inner.client_path(s)).collect())
    }

    /// How many nodes are below `path`, at any depth (3.6+ servers).
    pub async fn get_all_children_number(&self, path: &str) -> Result<i32, ClientError> {
        let p = self.inner.server_path(path)?;
        let c = self.conn().await?;
        c.get_all_children_number(&p).await.map_err(Self::lost)
    }

    /// The identities this session has authenticated as (3.7+ servers).
    pub async fn who_am_i(&self) -> Result<Vec<corral_proto::ClientInfo>, ClientError> {
        let c = self.conn().await?;
        c.who_am_i().await.map_err(Self::lost)
    }

    /// The ensemble's configuration (`/zookeeper/config`, read outside the chroot as every
    /// ZooKeeper client reads it) and its Stat.
    pub async fn get_config(&self) -> Result<(Vec<u8>, Stat), ClientError> {
        let c = self.conn().await?;
        c.get_data(CONFIG_NODE, false).await.map_err(Self::lost)
    }

    /// Creates (or takes over) the ephemeral node `path` with open ACL and returns a handle
    /// that keeps it registered: after an expiry, recovery re-creates it in the new session.
    /// If a previous session of this client still owns the node it is replaced; if another
    /// client owns it, this fails with NodeExists.
    pub async fn ephemeral_node(
        &self,
        path: &str,
        data: &[u8],
    ) -> Result<EphemeralNode, ClientError> {
        let spec = EphemeralSpec {
            path: self.inner.server_path(path)?,
            data: data.to_vec(),
            acl: open_acl_unsafe(),
        };
        let c = self.conn().await?;
        let previous = self.inner.lock().previous_sessions.clone();
        match ensure_ephemeral(&c, &spec, &previous)
            .await
            .map_err(Self::lost)?
        {
            EphemeralOutcome::HeldByOther { .. } => {
                return Err(ClientError::Server(ErrorCode::NodeExists))
            }
            EphemeralOutcome::Failed(why) => return Err(ClientError::Protocol(why)),
            _ => {}
        }
        let id = {
            let mut m = self.inner.lock();
            let id = m.next_id;
            m.next_id += 1;
            m.ephemerals.insert(id, spec);
            id
        };
        Ok(EphemeralNode {
            client: self.clone(),
            id,
            path: path.to_string(),
        })
    }

    /// Ends the session (closeSession) and stops the client. Every later call fails with
    /// [`ClientError::Closed`].
    pub async fn close(&self) -> Result<(), ClientError> {
        let _ = self.inner.shutdown.send(true);
        self.guard.0.abort();
        let link = self.inner.link.send_replace(Link::Gone(Terminal::Closed));
        let session = self.session_id();
        fail_watches(&self.inner, || ClientError::Closed);
        close_persistent(&self.inner);
        let result = match link {
            Link::Up(c) => c.close().await,
            _ => Ok(()),
        };
        self.inner.publish(SessionState::Closed, session, None);
        result
    }
}

/// A one-shot watch: resolves with the notification that fired it (a DataWatchRemoved or
/// ChildWatchRemoved event if [`Client::remove_watches`] took it away), or with an error when
/// the session expired ([`ClientError::SessionExpired`]) or the client closed before it fired.
#[derive(Debug)]
pub struct Watch {
    rx: oneshot::Receiver<Result<WatchedEvent, ClientError>>,
}

impl Future for Watch {
    type Output = Result<WatchedEvent, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Closed)))
    }
}

/// An ephemeral node the client keeps: re-created in every new session after an expiry until
/// the handle is removed or dropped. Dropping the handle only stops the re-creating; the node
/// itself lives as long as the current session.
#[derive(Debug)]
pub struct EphemeralNode {
    client: Client,
    id: u64,
    path: String,
}

impl EphemeralNode {
    /// The node's path (chroot-relative).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Sets the node's data now, and the data it is re-created with.
    pub async fn set_data(&self, data: &[u8]) -> Result<Stat, ClientError> {
        if let Some(spec) = self.client.inner.lock().ephemerals.get_mut(&self.id) {
            spec.data = data.to_vec();
        }
        self.client.set_data(&self.path, data, -1).await
    }

    /// Deletes the node and stops re-creating it.
    pub async fn remove(self) -> Result<(), ClientError> {
        self.client.inner.lock().ephemerals.remove(&self.id);
        match self.client.delete(&self.path, -1).await {
            Ok(()) | Err(ClientError::Server(ErrorCode::NoNode)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for EphemeralNode {
    fn drop(&mut self) {
        self.client.inner.lock().ephemerals.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_strings() {
        let (s, c) = parse_connect_string("a:1,b:2/app/x").expect("valid");
        assert_eq!(s, vec!["a:1", "b:2"]);
        assert_eq!(c, "/app/x");
        let (s, c) = parse_connect_string("localhost").expect("valid");
        assert_eq!(s, vec!["localhost:2181"]);
        assert_eq!(c, "");
        let (_, c) = parse_connect_string("h:1/").expect("valid");
        assert_eq!(c, "");
        assert!(parse_connect_string("h:1/a/").is_err());
        assert!(parse_connect_string("h:x").is_err());
        assert!(parse_connect_string("/a").is_err());
        assert!(parse_connect_string(":1").is_err());
    }

    #[test]
    fn chroot_paths() {
        assert_eq!(strip_chroot("/app", "/app"), "/");
        assert_eq!(strip_chroot("/app", "/app/b"), "/b");
        assert_eq!(strip_chroot("/app", "/apple"), "/apple");
        assert_eq!(strip_chroot("", "/x"), "/x");
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..1000 {
            assert!(jitter(Duration::from_millis(50)) <= Duration::from_millis(50));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
