//! Output in zkCli's shapes, so scripts and eyes used to zkCli read it the same way:
//! Stat blocks, dates like Java's `Date.toString()` (always UTC here), error lines and
//! watch events.

use corral_client::ClientError;
use corral_proto::{ErrorCode, Stat};

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
pub use corral_keeper::java_date;

/// Java's message for an error code (KeeperException.getCodeMessage).
pub fn code_message(code: ErrorCode) -> String {
    match code {
        ErrorCode::Ok => "ok".into(),
        ErrorCode::ApiError => "APIError".into(),
        ErrorCode::InvalidAcl => "InvalidACL".into(),
        ErrorCode::NotEmpty => "Directory not empty".into(),
        ErrorCode::SessionExpired => "Session expired".into(),
        ErrorCode::InvalidCallback => "Invalid callback".into(),
        ErrorCode::SessionMoved => "Session moved".into(),
        ErrorCode::NotReadOnly => "Not a read-only call".into(),
        ErrorCode::EphemeralOnLocalSession => "Ephemeral node on local session".into(),
        ErrorCode::NoWatcher => "No such watcher".into(),
        ErrorCode::ReconfigDisabled => "Reconfig is disabled".into(),
        ErrorCode::SessionClosedRequireSaslAuth => {
            "Session closed because client failed to authenticate".into()
        }
        ErrorCode::QuotaExceeded => "Quota has exceeded".into(),
        ErrorCode::ThrottledOp => "Op throttled due to high load".into(),
        ErrorCode::UnknownSession | ErrorCode::RequestTimeout => {
            format!("Unknown error {}", code.code())
        }
        other => other.name().into(),
    }
}

/// The error code a failed call stands for, as the Java client reports it.
pub fn client_code(e: &ClientError) -> ErrorCode {
    match e {
        ClientError::Server(c) => *c,
        ClientError::SessionExpired => ErrorCode::SessionExpired,
        ClientError::Decode(_) | ClientError::Frame(_) | ClientError::UnexpectedResponse(_) => {
            ErrorCode::MarshallingError
        }
        _ => ErrorCode::ConnectionLoss,
    }
}

/// KeeperException.getMessage(): "KeeperErrorCode = NoNode for /a".
pub fn keeper_message(code: ErrorCode, path: Option<&str>) -> String {
    match path {
        Some(p) => format!("KeeperErrorCode = {} for {p}", code_message(code)),
        None => format!("KeeperErrorCode = {}", code_message(code)),
    }
}

/// The line zkCli prints for a failed call on `path` (its CliWrapperException wording).
pub fn wrapper_message(code: ErrorCode, path: Option<&str>) -> String {
    let p = path.unwrap_or("null");
    match code {
        ErrorCode::NoNode => format!("Node does not exist: {p}"),
        ErrorCode::NoChildrenForEphemerals => format!("Ephemerals cannot have children: {p}"),
        ErrorCode::NodeExists => format!("Node already exists: {p}"),
        ErrorCode::NotEmpty => format!("Node not empty: {p}"),
        ErrorCode::NotReadOnly => format!("Not a read-only call: {p}"),
        ErrorCode::InvalidAcl => format!("Acl is not valid : {p}"),
        ErrorCode::NoAuth => format!("Insufficient permission : {p}"),
        ErrorCode::BadArguments => format!("Arguments are not valid : {p}"),
        ErrorCode::BadVersion => format!("version No is not valid : {p}"),
        ErrorCode::ReconfigInProgress => {
            "Another reconfiguration is in progress -- concurrent reconfigs not supported (yet)"
                .into()
        }
        ErrorCode::QuotaExceeded => format!("Quota has exceeded : {p}"),
        other => keeper_message(other, path),
    }
}

/// A watch notification as zkCli prints it (the path of a state change is "null").
pub fn format_event(state: &str, event_type: &str, path: Option<&str>) -> String {
    format!(
        "\nWATCHER::\n\nWatchedEvent state:{state} type:{event_type} path:{}",
        path.unwrap_or("null")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
            wrapper_message(ErrorCode::NoNode, Some("/x")),
            "Node does not exist: /x"
        );
        assert_eq!(
            wrapper_message(ErrorCode::InvalidAcl, None),
            "Acl is not valid : null"
        );
        assert_eq!(
            wrapper_message(ErrorCode::NoWatcher, Some("/w")),
            "KeeperErrorCode = No such watcher for /w"
        );
        assert_eq!(
            keeper_message(ErrorCode::NoAuth, Some("/r")),
            "KeeperErrorCode = NoAuth for /r"
        );
        assert_eq!(client_code(&ClientError::Closed), ErrorCode::ConnectionLoss);
        assert_eq!(
            format_event("SyncConnected", "NodeDataChanged", Some("/x")),
            "\nWATCHER::\n\nWatchedEvent state:SyncConnected type:NodeDataChanged path:/x"
        );
        assert_eq!(
            format_event("Closed", "None", None),
            "\nWATCHER::\n\nWatchedEvent state:Closed type:None path:null"
        );
    }
}
