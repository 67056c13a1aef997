//! Failpoints for fault-injection tests (built only with the `failpoints` feature): the WAL
//! fsync (`wal-fsync`), the snapshot writer (`snapshot-write`) and peer sends (`peer-send`),
//! each a `fail::fail_point!` where the fault happens. They are configured from the
//! `FAILPOINTS` environment variable at start (`name=actions;name=actions`, the `fail`
//! crate's syntax: `sleep(6000)`, `1*sleep(6000)`, `return`, `off`) and at run time on the
//! admin server (`POST /failpoints/<name>` with the actions as the body).
//!
//! Owns parsing that configuration. Must never be compiled into a release build: a
//! failpoint the network can set is a way to stop the keeper.

use axum::extract::Path;
use axum::http::StatusCode;
use tracing::warn;

/// Applies `FAILPOINTS`; a malformed entry is logged and skipped (this is a test build).
pub(crate) fn configure_from_env() {
    let Ok(spec) = std::env::var("FAILPOINTS") else {
        return;
    };
    for entry in spec.split(';').filter(|e| !e.trim().is_empty()) {
        let Some((name, actions)) = entry.split_once('=') else {
            warn!(entry, "FAILPOINTS: expected name=actions");
            continue;
        };
        if let Err(e) = fail::cfg(name.trim(), actions.trim()) {
            warn!(name, actions, "FAILPOINTS: {e}");
        }
    }
}

/// `POST /failpoints/<name>`: the body is the failpoint's new actions.
pub(crate) async fn set(Path(name): Path<String>, actions: String) -> (StatusCode, String) {
    match fail::cfg(name.as_str(), actions.trim()) {
        Ok(()) => {
            warn!(name, actions = actions.trim(), "failpoint configured");
            (StatusCode::OK, format!("{name}={}\n", actions.trim()))
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}
