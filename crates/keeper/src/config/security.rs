//! Keys that ask for protection corral does not give yet (TLS, SASL, Kerberos, enforced
//! authentication), and the start-up check that refuses them unless the operator allowed it.
//!
//! Owns the list of such keys and the refusal's wording. Must never let one pass silently: each
//! is either refused or named in a warning at every start.

use super::{Config, ConfigError};

/// A configured key whose protection corral does not provide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnenforcedKey {
    pub(crate) key: String,
    /// What the key would have protected, for the message.
    pub(crate) protects: &'static str,
}

/// What a security key asks for that corral does not provide yet, if it asks for anything:
/// TLS, SASL or Kerberos authentication, or refusing unauthenticated clients. The digest and
/// ip providers corral has built in ask for nothing more.
pub(super) fn unenforced_protection(key: &str, value: &str) -> Option<&'static str> {
    let on = || value.trim().eq_ignore_ascii_case("true");
    match key {
        "secureClientPort" | "secureClientPortAddress" => {
            Some("TLS-encrypted client connections on a secure client port")
        }
        "portUnification" if on() => Some("TLS on the client port"),
        "sslQuorum" if on() => Some("TLS between ensemble members"),
        "requireClientAuthScheme" | "enforce.auth.schemes" => {
            Some("refusing clients that have not authenticated")
        }
        "enforce.auth.enabled" | "sessionRequireClientSASLAuth" if on() => {
            Some("refusing clients that have not authenticated")
        }
        _ if key.starts_with("ssl.") => Some("TLS (this key configures its certificates)"),
        _ if key.starts_with("kerberos.") => Some("Kerberos (SASL) authentication"),
        _ if key.starts_with("quorum.auth.") && on() => {
            Some("SASL authentication between ensemble members")
        }
        _ if key.starts_with("authProvider.") => match value.trim() {
            "org.apache.zookeeper.server.auth.DigestAuthenticationProvider"
            | "org.apache.zookeeper.server.auth.IPAuthenticationProvider" => None,
            _ => Some("client authentication through that provider (SASL, X.509 or custom)"),
        },
        _ => None,
    }
}

impl Config {
    /// Stops start-up when a key asks for protection corral does not give, unless the
    /// operator allowed it; then returns one warning per key, to be logged at every start.
    pub fn check_security(&self) -> Result<Vec<String>, ConfigError> {
        let origin = self
            .config_path
            .as_deref()
            .map_or_else(|| "configuration".to_string(), |p| p.display().to_string());
        if self.allow_unenforced_security {
            return Ok(self
                .unenforced_security
                .iter()
                .map(|u| {
                    format!(
                        "{origin}: {} asks for {}, which corral does not provide; running WITHOUT it (allowed by --allow-unenforced-security / corral.allowUnenforcedSecurity)",
                        u.key, u.protects
                    )
                })
                .collect());
        }
        match self.unenforced_security.first() {
            None => Ok(Vec::new()),
            Some(first) => {
                let others: Vec<&str> = self.unenforced_security[1..]
                    .iter()
                    .map(|u| u.key.as_str())
                    .collect();
                let also = if others.is_empty() {
                    String::new()
                } else {
                    format!(" (also: {})", others.join(", "))
                };
                Err(ConfigError::Invalid {
                    path: origin,
                    key: first.key.clone(),
                    msg: format!(
                        "asks for {}, which corral does not provide yet; refusing to run without it{also}. \
                         Remove the key, or start with --allow-unenforced-security \
                         (corral.allowUnenforcedSecurity=true) to run unprotected knowingly",
                        first.protects
                    ),
                })
            }
        }
    }
}
