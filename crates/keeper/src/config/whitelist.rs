//! The four-letter-word whitelist (`4lw.commands.whitelist`): which words the client port
//! answers.
//!
//! Owns parsing the list, the rule that `srvr` is always allowed, and the list of words corral
//! knows ([`FOUR_LETTER_WORDS`]: kept here, not in `admin`, which recognises and answers them,
//! so that config depends on nothing that depends on config). Must never hold a word corral
//! does not know: unknown names are returned for a warning and dropped.

use std::collections::BTreeSet;

/// Every four-letter word corral answers: ZooKeeper 3.8's (its `FourLetterCommands`) but
/// `hash`, its tree-digest history, which corral does not keep (DESIGN-NOTES.md says why): it
/// is answered as any unknown word is, and naming it in the whitelist draws a warning. Then
/// corral's own: `obit`, why the latest sessions ended.
pub(crate) const FOUR_LETTER_WORDS: &[&str] = &[
    "conf", "cons", "crst", "dump", "envi", "gtmk", "ruok", "stmk", "srvr", "srst", "stat", "wchc",
    "wchp", "wchs", "dirs", "mntr", "isro", "obit",
];

/// Which four-letter words may run. `srvr` is always allowed because zkServer.sh's `status`
/// depends on it; the default (ZooKeeper 3.5.3 and later) allows nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FourLetterWhitelist {
    all: bool,
    commands: BTreeSet<&'static str>,
}

impl Default for FourLetterWhitelist {
    fn default() -> Self {
        FourLetterWhitelist {
            all: false,
            commands: BTreeSet::from(["srvr"]),
        }
    }
}

impl FourLetterWhitelist {
    /// Every command (`*`).
    pub(crate) fn all() -> Self {
        FourLetterWhitelist {
            all: true,
            commands: BTreeSet::new(),
        }
    }

    /// The words that only read and that `corral doctor` asks for: the embedded default's.
    pub(crate) fn diagnostics() -> Self {
        FourLetterWhitelist {
            all: false,
            commands: BTreeSet::from([
                "srvr", "stat", "ruok", "mntr", "conf", "cons", "obit", "isro", "envi", "dirs",
                "wchs",
            ]),
        }
    }

    /// Parses the property's value: names separated by commas (ZooKeeper's syntax) or
    /// whitespace, `*` anywhere meaning all. Returns the unknown names so the caller can warn;
    /// they are dropped, since a command corral cannot recognise can never be asked for.
    pub(crate) fn parse(value: &str) -> (Self, Vec<String>) {
        let mut list = FourLetterWhitelist::default();
        let mut unknown = Vec::new();
        for name in value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            if name == "*" {
                return (FourLetterWhitelist::all(), Vec::new());
            }
            match FOUR_LETTER_WORDS.iter().find(|k| **k == name) {
                Some(known) => {
                    list.commands.insert(known);
                }
                None => unknown.push(name.to_string()),
            }
        }
        (list, unknown)
    }

    pub(crate) fn allows(&self, cmd: &str) -> bool {
        self.all || cmd == "srvr" || self.commands.contains(cmd)
    }

    #[cfg(test)]
    pub(crate) fn is_all(&self) -> bool {
        self.all
    }

    /// The allowed words as the start-up banner shows them: `*`, or a comma-separated list.
    pub(crate) fn describe(&self) -> String {
        if self.all {
            return "*".into();
        }
        let mut words: BTreeSet<&str> = self.commands.iter().copied().collect();
        words.insert("srvr");
        words.into_iter().collect::<Vec<_>>().join(",")
    }
}
