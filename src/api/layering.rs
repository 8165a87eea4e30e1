//! The layering rule of `src/api/`, as a test: the API's one dependency on
//! the runtime is [`crate::backend`]. These are the only `crate::` roots a
//! file under `src/api/` may name: its own modules, the backend interface
//! (which owns or re-exports every runtime type the API uses) and the
//! server's config. A path into the model, scheduler, GPU, KV cache, engine,
//! actors or tokenizer would let a handler depend on how serving works
//! rather than on `Backend`. This file names such paths in its own tests and
//! messages, so the scan leaves it out.

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
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut roots = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
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
