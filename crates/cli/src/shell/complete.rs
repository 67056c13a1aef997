//! Tab completion for the interactive shell: command names in the first word, znode paths in
//! any word that starts with `/` (the children of the typed parent, as zkCli's JLine
//! completer does). The pure part ([`candidates`]) takes the child lister as a function so it
//! is tested without a server; [`ShellHelper`] plugs it into rustyline.

use std::sync::{Arc, Mutex};

use rustyline::completion::Completer;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use super::parse::command_names;

/// Where the word under the cursor starts and what it may become.
pub fn candidates(
    line: &str,
    pos: usize,
    children: impl Fn(&str) -> Vec<String>,
) -> (usize, Vec<String>) {
    let head = &line[..pos];
    let start = head.rfind(char::is_whitespace).map(|i| i + 1).unwrap_or(0);
    let word = &head[start..];
    let first_word = head[..start].trim().is_empty();
    if first_word {
        let mut v: Vec<String> = command_names()
            .filter(|c| c.starts_with(word))
            .map(|c| format!("{c} "))
            .collect();
        v.sort();
        return (start, v);
    }
    if !word.starts_with('/') {
        return (start, Vec::new());
    }
    let cut = word.rfind('/').unwrap_or(0);
    let parent = if cut == 0 { "/" } else { &word[..cut] };
    let prefix = &word[cut + 1..];
    let mut kids: Vec<String> = children(parent)
        .into_iter()
        .filter(|k| k.starts_with(prefix))
        .map(|k| {
            if parent == "/" {
                format!("/{k}")
            } else {
                format!("{parent}/{k}")
            }
        })
        .collect();
    kids.sort();
    (start, kids)
}

/// What the completer lists children with: the live connection, when there is one, and the
/// runtime to run the call on (completion runs on the blocking line-editor thread).
pub type Lister = Arc<Mutex<Option<Box<dyn Fn(&str) -> Vec<String> + Send>>>>;

pub struct ShellHelper {
    pub lister: Lister,
}

impl Completer for ShellHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let guard = self.lister.lock().unwrap_or_else(|p| p.into_inner());
        Ok(candidates(line, pos, |p| match guard.as_ref() {
            Some(f) => f(p),
            None => Vec::new(),
        }))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(p: &str) -> Vec<String> {
        match p {
            "/" => vec!["app".into(), "apple".into(), "zookeeper".into()],
            "/app" => vec!["b".into(), "c".into()],
            _ => Vec::new(),
        }
    }

    #[test]
    fn commands_then_paths() {
        assert_eq!(
            candidates("ge", 2, tree),
            (
                0,
                vec![
                    "get ".into(),
                    "getAcl ".into(),
                    "getAllChildrenNumber ".into(),
                    "getEphemerals ".into()
                ]
            )
        );
        assert_eq!(candidates("dele", 4, tree).1, vec!["delete ", "deleteall "]);
        assert_eq!(
            candidates("ls /ap", 6, tree),
            (3, vec!["/app".into(), "/apple".into()])
        );
        assert_eq!(candidates("ls /app/", 8, tree).1, vec!["/app/b", "/app/c"]);
        assert_eq!(candidates("get -s /z", 9, tree).1, vec!["/zookeeper"]);
        assert!(candidates("get -s", 6, tree).1.is_empty());
        assert!(candidates("ls /nope/", 9, tree).1.is_empty());
    }
}
