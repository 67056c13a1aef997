//! Output in zkCli's shapes, so scripts and eyes used to zkCli read it the same way:
//! Stat blocks, dates like Java's `Date.toString()` (always UTC here), error lines and
//! watch events.

use corral_client::ClientError;
use corral_proto::{ErrorCode, Stat};

use corral_client::WatchedEvent;

pub fn format_stat(s: &Stat) -> String {
    format!(
        "cZxid = 0x{:x}\nctime = {}\nmZxid = 0x{:x}\nmtime = {}\npZxid = 0x{:x}\ncversion = {}\n\
         dataVersion = {}\naclVersion = {}\nephemeralOwner = 0x{:x}\ndataLength = {}\nnumChildren = {}",
        s.czxid,
        java_date(s.ctime),
        s.mzxid,
        java_date(s.mtime),
        s.pzxid,
        s.cversion,
        s.version,
        s.aversion,
        s.ephemeral_owner,
        s.data_length,
        s.num_children
    )
}

/// Java's `Date.toString()` in UTC, as zkCli prints ctime and mtime; one formatter serves
/// the shell and the four-letter words.
pub use corral_keeper::four_letter::java_date;

/// The line zkCli prints for a failed command on `path`.
pub fn error_line(e: &ClientError, path: &str) -> String {
    match e {
        ClientError::Server(code) => match code {
            ErrorCode::NoNode => format!("Node does not exist: {path}"),
            ErrorCode::NodeExists => format!("Node already exists: {path}"),
            ErrorCode::NotEmpty => format!("Node not empty: {path}"),
            ErrorCode::NoChildrenForEphemerals => {
                format!("Ephemerals cannot have children: {path}")
            }
            ErrorCode::NoAuth => format!("Insufficient permission : {path}"),
            ErrorCode::BadVersion => format!("version No is not valid : {path}"),
            ErrorCode::InvalidAcl => format!("Acl is not valid : {path}"),
            ErrorCode::BadArguments => format!("Argument error : {path}"),
            ErrorCode::NotReadOnly => format!("Not a read-only call: {path}"),
            other if path.is_empty() => format!("KeeperErrorCode = {}", other.name()),
            other => format!("KeeperErrorCode = {} for {path}", other.name()),
        },
        ClientError::SessionExpired => "Session expired".to_string(),
        ClientError::Closed => format!(
            "Connection lost{}",
            if path.is_empty() {
                String::new()
            } else {
                format!(" ({path})")
            }
        ),
        other => other.to_string(),
    }
}

/// A watch notification as zkCli shows it.
pub fn format_event(ev: &WatchedEvent) -> String {
    format!(
        "\nWATCHER::\n\nWatchedEvent state:{} type:{} path:{}",
        ev.state.name(),
        ev.event_type.name(),
        ev.path
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::{EventType, KeeperState};

    #[test]
    fn stat_block() {
        let s = Stat {
            czxid: 0x10,
            mzxid: 0x1a,
            pzxid: 0x10,
            version: 2,
            ephemeral_owner: 0xabc,
            ..Default::default()
        };
        let text = format_stat(&s);
        assert!(
            text.starts_with("cZxid = 0x10\nctime = Thu Jan 01 00:00:00 UTC 1970\nmZxid = 0x1a\n")
        );
        assert!(text.contains("dataVersion = 2\n"));
        assert!(text.contains("ephemeralOwner = 0xabc\n"));
        assert!(text.ends_with("numChildren = 0"));
    }

    #[test]
    fn errors_and_events() {
        assert_eq!(
            error_line(&ClientError::Server(ErrorCode::NoNode), "/x"),
            "Node does not exist: /x"
        );
        assert_eq!(
            error_line(&ClientError::Server(ErrorCode::NodeExists), "/x"),
            "Node already exists: /x"
        );
        assert_eq!(
            error_line(&ClientError::Server(ErrorCode::Unimplemented), "/x"),
            "KeeperErrorCode = Unimplemented for /x"
        );
        let ev = WatchedEvent {
            event_type: EventType::NodeDataChanged,
            state: KeeperState::SyncConnected,
            path: "/x".into(),
            zxid: 5,
        };
        assert_eq!(
            format_event(&ev),
            "\nWATCHER::\n\nWatchedEvent state:SyncConnected type:NodeDataChanged path:/x"
        );
    }
}
