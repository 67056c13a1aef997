//! The four-letter words and the HTTP admin server ([`http`]).
//!
//! The four-letter words (`ruok`, `srvr`, `mntr`, ...): recognised in a fresh connection's
//! first four bytes, answered in ZooKeeper 3.8's exact text, each built from only what it
//! prints.
//!
//! A word goes through `words` (recognition, the whitelist's refusal, the trace mask), then
//! `four_letter_reply` (the effects of `crst`, `srst` and `stmk`), `snapshot::Needs::of` (what
//! the word prints), `gather` (the keeper's state, each lock held only to count or copy that)
//! and `render` (pure text; `mntr`'s key list in `mntr`, Java's formats in `java`).
//!
//! Owns the words' text and what is read to print it. Must never: change the tree, the
//! sessions or the watches; hold two of the keeper's locks at once; copy a list of paths for a
//! word that prints only counts. The whitelist itself is config's
//! ([`crate::config::FourLetterWhitelist`]), as is the list of words.

mod gather;
pub(crate) mod http;
mod java;
mod metrics;
mod mntr;
mod render;
mod snapshot;
mod words;

#[cfg(test)]
mod tests;

use snapshot::Needs;

use crate::shared::Shared;

pub use java::java_date;
pub(crate) use words::{needs_trace_mask, not_whitelisted, recognize};

/// Answers one (whitelisted) four-letter word. `extra` holds the 8 bytes that follow `stmk`.
pub(crate) fn four_letter_reply(keeper: &Shared, cmd: &str, extra: Option<[u8; 8]>) -> String {
    match cmd {
        "crst" => {
            for c in keeper.conns().handles() {
                c.stats.reset();
            }
        }
        "srst" => keeper.stats.reset(),
        "stmk" => {
            if let Some(bytes) = extra {
                words::set_trace_mask(words::parse_trace_mask(bytes));
            }
        }
        _ => {}
    }
    // While the keeper does not serve, most words print one fixed line: nothing to gather.
    let serving = keeper.read_only() || keeper.consensus().is_some_and(|c| c.role().is_some());
    let needs = if serving || !render::needs_server(cmd) {
        Needs::of(cmd)
    } else {
        Needs::default()
    };
    render::render(cmd, &gather::gather(keeper, needs))
}
