//! Which words a fresh connection may open with, and the little state some of them carry.
//!
//! Owns: recognising a word in a connection's first four bytes, `stmk`'s 8-byte argument, the
//! process-wide trace mask (`stmk` sets it, `gtmk` reads it) and the text refusing a word the
//! whitelist leaves out. The list of words itself is [`FOUR_LETTER_WORDS`], kept by config
//! beside the whitelist that may name only those, so that config never depends on admin.
//! Must never: read the keeper's state, or decide whether a word is allowed (the whitelist,
//! [`crate::config::FourLetterWhitelist`], does).

use std::sync::atomic::{AtomicI64, Ordering};

use crate::config::FOUR_LETTER_WORDS;

/// A telnet client's "interrupt process" sequence (IAC IP IAC DO). ZooKeeper recognises it as a
/// command that just closes the connection; it is only allowed when the whitelist is `*`.
pub(crate) const TELNET_CLOSE: &str = "telnet close";

/// ZooKeeper's default trace mask: client requests, server packets, sessions, warnings.
pub(crate) const DEFAULT_TRACE_MASK: i64 = 0b1_0011_0010;

/// ZooKeeper's trace mask is process-wide: `stmk` sets it and `gtmk` reads it.
static TRACE_MASK: AtomicI64 = AtomicI64::new(DEFAULT_TRACE_MASK);

/// Recognises a four-letter word from the first four bytes of a connection. ZooKeeper compares
/// them, as a big-endian int, with its command codes; anything else is a frame length.
pub(crate) fn recognize(first4: [u8; 4]) -> Option<&'static str> {
    if first4 == [0xff, 0xf4, 0xff, 0xfd] {
        return Some(TELNET_CLOSE);
    }
    FOUR_LETTER_WORDS
        .iter()
        .copied()
        .find(|k| k.as_bytes() == first4)
}

/// `stmk` is followed by the new trace mask: 8 more bytes the connection must read first.
pub(crate) fn needs_trace_mask(cmd: &str) -> bool {
    cmd == "stmk"
}

/// Decodes `stmk`'s argument (a big-endian 64-bit mask).
pub(crate) fn parse_trace_mask(bytes: [u8; 8]) -> i64 {
    i64::from_be_bytes(bytes)
}

pub(crate) fn trace_mask() -> i64 {
    TRACE_MASK.load(Ordering::Relaxed)
}

pub(crate) fn set_trace_mask(mask: i64) {
    TRACE_MASK.store(mask, Ordering::Relaxed);
}

/// The reply to a command the whitelist refuses.
pub(crate) fn not_whitelisted(cmd: &str) -> String {
    format!("{cmd} is not executed because it is not in the whitelist.\n")
}
