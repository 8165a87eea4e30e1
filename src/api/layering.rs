//! The layering rules of `src/api/`, as tests that read its sources.
//!
//! Outward: the API's one dependency on the runtime is [`crate::backend`].
//! These are the only `crate::` roots a file under `src/api/` may name: its
//! own modules, the backend interface (which owns or re-exports every
//! runtime type the API uses) and the server's config. A path into the
//! model, scheduler, GPU, KV cache, engine, actors or tokenizer would let a
//! handler depend on how serving works rather than on `Backend`.
//!
//! Inward: the modules of `src/api/` import one another one way (no
//! circle), with `server` on top, imported by nobody.
//!
//! This file names forbidden paths in its own tests and messages, so the
//! scans leave it out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ALLOWED_ROOTS: &[&str] = &["api", "backend", "config"];
/// Left out of the scan: it spells forbidden paths as test data.
const THIS_FILE: &str = "layering.rs";

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/api is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name() != Some(THIS_FILE.as_ref())
        {
            out.push(path);
        }
    }
}

/// The crate-level modules a line names: the segment after each
/// `crate::`, or each first segment of a `crate::{a, b::c}` group.
fn crate_roots(code: &str) -> Vec<String> {
    path_roots(code, "crate::")
}

/// The segment after each `prefix` in a line, or each first segment of a
/// `prefix{a, b::c}` group.
fn path_roots(code: &str, prefix: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut roots = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group, up to its closing brace.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start => {
                        roots.push(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            roots.push(ident(rest));
        }
    }
    roots
}

#[test]
fn the_api_names_nothing_of_the_runtime_but_the_backend() {
    let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut files = Vec::new();
    rust_files(&api, &mut files);
    files.sort();
    assert!(files.len() > 10, "found only {files:?}");
    let mut bad = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for (n, line) in text.lines().enumerate() {
            // Comments may mention anything; code may not.
            let code = line.split("//").next().unwrap_or_default();
            for root in crate_roots(code) {
                if !ALLOWED_ROOTS.contains(&root.as_str()) {
                    bad.push(format!(
                        "{}:{}: crate::{root} ({})",
                        file.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "src/api may use only crate::{{{}}}; move what it needs behind \
         src/backend.rs:\n{}",
        ALLOWED_ROOTS.join(", "),
        bad.join("\n")
    );
}

#[test]
fn grouped_and_nested_paths_are_seen() {
    assert_eq!(crate_roots("use crate::backend::Event;"), ["backend"]);
    assert_eq!(
        crate_roots("use crate::{backend::{A, B}, model::sampling};"),
        ["backend", "model"]
    );
    assert_eq!(
        crate_roots("let x: crate::scheduler::Usage = crate::api::f();"),
        ["scheduler", "api"]
    );
}

/// The top-level module of `src/api/` a file belongs to (`encode` for
/// `encode/chat.rs`), and whether `super` in it is `api` (in `x.rs` and
/// `x/mod.rs`; deeper files reach siblings through `crate::api::`).
fn module_of(api: &Path, file: &Path) -> (String, bool) {
    let rel = file.strip_prefix(api).expect("a file under src/api");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let name = parts[0].trim_end_matches(".rs").to_string();
    let super_is_api = parts.len() == 1 || parts[1..] == ["mod.rs"];
    (name, super_is_api)
}

/// Who imports whom among the top-level modules of `src/api/` (test
/// modules, at the end of their files, left out: their `super` is the file).
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut files = Vec::new();
    rust_files(&api, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let (module, super_is_api) = module_of(&api, file);
        if module == "mod" {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("a readable source file");
        let edges = graph.entry(module.clone()).or_default();
        for line in text.lines() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break;
            }
            let code = line.split("//").next().unwrap_or_default();
            let mut named = path_roots(code, "crate::api::");
            if super_is_api {
                named.extend(path_roots(code, "super::"));
            }
            edges.extend(named.into_iter().filter(|m| *m != module && m != "self"));
        }
    }
    graph
}

/// A circle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn imports_inside_the_api_go_one_way_with_the_server_on_top() {
    let graph = import_graph();
    assert!(
        graph["job"].contains("encode"),
        "the scan sees imports: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("a circle of imports in src/api: {}", cycle.join(" -> "));
    }
    let importers: Vec<_> = graph
        .iter()
        .filter(|(_, to)| to.contains("server"))
        .map(|(from, _)| from)
        .collect();
    assert!(
        importers.is_empty(),
        "server.rs is imported by {importers:?}"
    );
}

#[test]
fn a_circle_is_found_and_named() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
        }
        g
    };
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("a", "c"), ("b", "c")])),
        None
    );
    assert_eq!(
        path_roots("use super::{completions, misc};", "super::"),
        ["completions", "misc"]
    );
}
