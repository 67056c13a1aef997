//! The HTTP admin server (ZooKeeper's AdminServer, `admin.serverPort`): `/commands` lists
//! the commands, `/commands/<name>` answers one as JSON with ZooKeeper's keys (`command`,
//! `error`, and the command's own), and corral adds `sessions` (live sessions, heartbeat age
//! against timeout) and `obituaries` (why sessions ended), `/metrics` ([`super::metrics`]), and
//! `/sessions` (`/` redirects there): one static page, `session_page.html`, that reads those two
//! commands every 2 s and shows the sessions as heartbeat-age bars and the obituaries.
//!
//! Owns the routes, the JSON and the page. Reads through [`super::gather`] and the session
//! tracker, each lock held only to copy what a command prints. Must never: change the keeper's
//! state (ZooKeeper's resetting commands are not served), or block the runtime.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use corral_tree::obituary::{kafka_broker_ids, Obituary};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::gather::gather;
use super::mntr;
use super::snapshot::Needs;
use crate::shared::Shared;

/// The commands served, in the order `/commands` lists them.
const COMMANDS: &[&str] = &[
    "dirs",
    "environment",
    "is_read_only",
    "monitor",
    "obituaries",
    "ruok",
    "sessions",
    "watch_summary",
];

/// Serves the admin routes on `listener` until the keeper shuts down.
pub(crate) async fn serve(keeper: Arc<Shared>, listener: TcpListener) {
    let app = Router::new()
        .route("/commands", get(list))
        .route("/commands/", get(list))
        .route("/commands/{name}", get(command))
        .route("/metrics", get(metrics))
        .route("/sessions", get(session_page))
        .route("/", get(|| async { Redirect::to("/sessions") }));
    #[cfg(feature = "failpoints")]
    let app = app.route(
        "/failpoints/{name}",
        axum::routing::post(crate::failpoints::set),
    );
    let app = app.with_state(Arc::clone(&keeper));
    let local = listener.local_addr().ok();
    info!(addr = ?local, "admin server listening");
    let stop = Arc::clone(&keeper);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.shutting_down().await })
        .await;
    if let Err(e) = served {
        warn!("admin server stopped: {e}");
    }
}

async fn metrics(State(keeper): State<Arc<Shared>>) -> Response {
    match super::metrics::scrape(&keeper) {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The page renders in the browser from the JSON commands, so serving it reads nothing.
async fn session_page() -> Html<&'static str> {
    Html(include_str!("session_page.html"))
}

async fn list() -> Html<String> {
    let links: Vec<String> = COMMANDS
        .iter()
        .map(|c| format!("<a href=\"/commands/{c}\">{c}</a>\n<br/>"))
        .collect();
    Html(links.join("\n"))
}

async fn command(State(keeper): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let mut body = answer(&keeper, &name);
    body.insert("command".into(), Value::String(name.clone()));
    body.entry("error").or_insert(Value::Null);
    let text = serde_json::to_string_pretty(&Value::Object(body)).unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response()
}

/// The command's own fields (an unknown command: its error, as ZooKeeper answers it).
fn answer(keeper: &Shared, name: &str) -> Map<String, Value> {
    let fields = match name {
        "ruok" => json!({}),
        "is_read_only" => json!({ "read_only": keeper.read_only() }),
        "dirs" => {
            let s = gather(keeper, Needs::of("dirs"));
            json!({ "datadir_size": s.data_dir_size, "logdir_size": s.log_dir_size })
        }
        "watch_summary" => {
            let w = gather(keeper, Needs::of("wchs")).data_watch_summary;
            json!({
                "num_connections": w.sessions,
                "num_paths": w.paths,
                "num_total_watches": w.watches,
            })
        }
        "environment" => {
            let s = gather(keeper, Needs::of("envi"));
            let mut m = Map::new();
            m.insert("zookeeper.version".into(), Value::String(s.version));
            for (k, v) in s.environment {
                m.insert(k, Value::String(v));
            }
            Value::Object(m)
        }
        "monitor" => monitor(keeper),
        "sessions" => sessions(keeper),
        "obituaries" => {
            let list: Vec<Value> = gather(keeper, Needs::of("obit"))
                .obituaries
                .iter()
                .map(obituary_json)
                .collect();
            json!({ "obituaries": list })
        }
        _ => json!({ "error": format!("Unknown command: {name}") }),
    };
    match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `mntr`'s values under its keys without the `zk_` prefix, numbers as numbers: what
/// ZooKeeper's `monitor` command returns.
fn monitor(keeper: &Shared) -> Value {
    let snap = gather(keeper, Needs::of("mntr"));
    let mut m = Map::new();
    for (key, value) in mntr::values(&snap) {
        let key = key.strip_prefix("zk_").unwrap_or(key);
        let v = if let Ok(n) = value.parse::<i64>() {
            Value::from(n)
        } else if let Ok(f) = value.parse::<f64>() {
            Value::from(f)
        } else {
            Value::String(value)
        };
        m.insert(key.to_string(), v);
    }
    Value::Object(m)
}

/// Live sessions as this member's tracker knows them: on a follower, the heartbeat age of a
/// session held by another member is as old as the last it heard of it.
fn sessions(keeper: &Shared) -> Value {
    let now = tokio::time::Instant::now();
    let t = keeper.sessions();
    let mut list: Vec<(i64, Value)> = t
        .iter()
        .map(|(id, l)| {
            let age = now.saturating_duration_since(l.last_heard).as_millis() as u64;
            let timeout = l.timeout.as_millis() as u64;
            (
                *id,
                json!({
                    "session_id": format!("0x{id:x}"),
                    "timeout_ms": timeout,
                    "requested_timeout_ms": l.requested_timeout_ms,
                    "heartbeat_age_ms": age,
                    "heartbeat_age_ratio": if timeout > 0 { age as f64 / timeout as f64 } else { 0.0 },
                    "member": l.held_by,
                    "client": l.remote.map(|r| r.to_string()),
                    "connected_here": l.conn.is_some(),
                    "last_request": l.last_op,
                    "expiring": l.expiring,
                }),
            )
        })
        .collect();
    drop(t);
    list.sort_by_key(|(id, _)| *id);
    json!({ "sessions": list.into_iter().map(|(_, v)| v).collect::<Vec<_>>() })
}

fn obituary_json(ob: &Obituary) -> Value {
    let e = &ob.evidence;
    let history: Vec<Value> = e
        .history
        .iter()
        .map(|h| {
            json!({
                "at_ms": h.at_ms,
                "member": h.member,
                "event": h.kind.name(),
                "client": h.remote,
                "cause": h.cause,
            })
        })
        .collect();
    json!({
        "session_id": format!("0x{:x}", ob.session_id),
        "cause": e.cause.name(),
        "reason": e.detail,
        "zxid": format!("0x{:x}", ob.zxid),
        "ended_ms": ob.ended_ms,
        "created_ms": ob.created_ms,
        "timeout_ms": ob.timeout_ms,
        "requested_timeout_ms": e.requested_timeout_ms,
        "client": e.remote,
        "member": e.member,
        "silent_ms": e.silent_ms,
        "last_request": e.last_op,
        "keeper_stall_forgiven_ms": e.stall_forgiven_ms,
        "ephemerals_deleted": ob.ephemerals_deleted,
        "ephemerals": ob.ephemerals,
        "kafka_brokers": kafka_broker_ids(&ob.ephemerals),
        "connections": history,
    })
}
