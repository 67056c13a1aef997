//! The keeper's top-level modules depend on one another without a cycle, so that each can be
//! read (and tested) knowing only the ones below it. A module here is a top-level `src/X.rs`
//! or `src/X/` with everything under it; an edge is a `crate::Y` path in its non-test code
//! (comments and `#[cfg(test)] mod` tails left out, as are `tests.rs` files and `src/tests/`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The identifiers that follow `crate::` in a line of code.
fn crate_paths(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue; // e.g. `corral_crate::`
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.push(name);
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let module_of = |file: &Path| -> Option<String> {
        let rel = file.strip_prefix(&src).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?;
        let name = first.strip_suffix(".rs").unwrap_or(first).to_string();
        (name != "lib" && name != "tests").then_some(name)
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let deps = edges.entry(module.clone()).or_default();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.trim_start();
            let test_module_follows = lines
                .get(i + 1)
                .is_some_and(|next| next.trim_start().starts_with("mod "));
            if code.starts_with("#[cfg(test)]") && test_module_follows {
                break;
            }
            if code.starts_with("//") {
                continue;
            }
            for dep in crate_paths(code) {
                if dep != module && modules.contains(&dep) {
                    deps.insert(dep);
                }
            }
        }
    }
    edges
}

/// A cycle through `at`, if the depth-first walk from it finds one.
fn find_cycle(
    at: &str,
    edges: &BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(start) = path.iter().position(|m| m == at) {
        let mut cycle = path[start..].to_vec();
        cycle.push(at.to_string());
        return Some(cycle);
    }
    if done.contains(at) {
        return None;
    }
    path.push(at.to_string());
    for dep in edges.get(at).into_iter().flatten() {
        if let Some(cycle) = find_cycle(dep, edges, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(at.to_string());
    None
}

#[test]
fn the_keepers_modules_depend_on_each_other_without_a_cycle() {
    let edges = graph();
    assert!(
        edges.len() >= 10 && edges.values().map(BTreeSet::len).sum::<usize>() >= 10,
        "the scan found too little to judge: {edges:?}"
    );
    let mut done = BTreeSet::new();
    for module in edges.keys() {
        if let Some(cycle) = find_cycle(module, &edges, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
    for (module, deps) in &edges {
        println!(
            "{module} -> {}",
            deps.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    edges.entry("c".into()).or_default().insert("a".into());
    let cycle = find_cycle("a", &edges, &mut Vec::new(), &mut BTreeSet::new());
    assert_eq!(
        cycle,
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        crate_paths("use crate::shared::{Shared}; my_crate::no"),
        vec!["shared"]
    );
}

/// Storage sits at the bottom: consensus, the import and the composition root use it, and it
/// uses none of them (nor anything that knows about connections or sessions).
#[test]
fn storage_depends_on_no_other_module_of_the_keeper() {
    let edges = graph();
    let deps = edges.get("storage").expect("src/storage/ is scanned");
    assert!(deps.is_empty(), "storage depends on {deps:?}");
    assert!(
        edges
            .get("consensus")
            .is_some_and(|d| d.contains("storage")),
        "the scan no longer sees consensus use storage: {edges:?}"
    );
}
