//! The shape of the code, checked from its text so it stays as ARCHITECTURE.md
//! draws it: the `crate::` imports between top-level modules form no circle,
//! and no non-test function or file grows past the size a reader can hold.
//! (That `src/api/` sees only `crate::backend` is `src/api/layering.rs`'s
//! test.)
//!
//! `cargo test --test structure -- --nocapture` prints the import graph
//! (each edge with the number of files that make it) and the largest
//! functions and files, for anyone who wants to see the house.
//!
//! The reading is textual: `crate::name` anywhere outside comments and test
//! code counts as a use of the top-level module `name`. Test code (files
//! their parent declares as `#[cfg(test)] mod x;`, and everything from a
//! `#[cfg(test)]` module on in a file) is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest non-test function, in lines, signature to closing brace.
const MAX_FN_LINES: usize = 100;
/// Longest non-test file, in lines.
const MAX_FILE_LINES: usize = 700;
/// Files that are tables more than logic (per-type quant blocks): exempt
/// from the file size, not from the function size.
const TABLE_LIKE_FILES: &[&str] = &["src/gguf/quant.rs"];

struct SourceFile {
    /// Relative to the crate root, `/`-separated.
    path: String,
    /// The top-level module the file belongs to (`api`, `engine`, ...).
    module: String,
    /// Non-test lines, comments included (they are stripped per use).
    lines: Vec<String>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether the file's parent declares it as `#[cfg(test)] mod name;`.
fn is_test_only(path: &Path) -> bool {
    let stem = path.file_stem().unwrap().to_string_lossy().to_string();
    let dir = path.parent().unwrap();
    let parents = if stem == "mod" {
        return false;
    } else {
        [
            dir.join("mod.rs"),
            dir.with_extension("rs"),
            dir.join("lib.rs"),
        ]
    };
    let declaration = format!("mod {stem};");
    parents.iter().any(|parent| {
        let Ok(text) = std::fs::read_to_string(parent) else {
            return false;
        };
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        lines
            .windows(2)
            .any(|w| w[0] == "#[cfg(test)]" && w[1].trim_start_matches("pub ") == declaration)
    })
}

fn sources() -> Vec<SourceFile> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    rust_files(&root.join("src"), &mut paths);
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let rel = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if is_test_only(&path) {
            continue;
        }
        let inner = rel.trim_start_matches("src/");
        let module = match inner.split_once('/') {
            Some((dir, _)) => dir.to_string(),
            None => inner.trim_end_matches(".rs").to_string(),
        };
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = Vec::new();
        let mut prev_cfg_test = false;
        for line in text.lines() {
            let t = line.trim();
            // A `#[cfg(test)] mod tests {` block ends the file's real code.
            if prev_cfg_test && t.starts_with("mod ") && t.ends_with('{') {
                lines.pop();
                break;
            }
            prev_cfg_test = t == "#[cfg(test)]";
            lines.push(line.to_string());
        }
        files.push(SourceFile {
            path: rel,
            module,
            lines,
        });
    }
    files
}

/// The line without its `//` comment (good enough: no `//` in our strings
/// next to a `crate::`).
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Top-level modules a line names: `crate::x` and `use crate::{x, y::z}`.
fn used_modules(line: &str) -> Vec<String> {
    let line = code(line);
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // `crate::{a, b::c}`: the first segment of each member.
            let end = group.find('}').unwrap_or(group.len());
            for member in group[..end].split(',') {
                let name: String = member
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
        rest = after;
    }
    out
}

/// module -> module -> the files that make the edge.
fn import_graph(files: &[SourceFile]) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let modules: BTreeSet<&str> = files.iter().map(|f| f.module.as_str()).collect();
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in files {
        graph.entry(f.module.clone()).or_default();
        for line in &f.lines {
            for used in used_modules(line) {
                if used != f.module && modules.contains(used.as_str()) {
                    graph
                        .entry(f.module.clone())
                        .or_default()
                        .entry(used)
                        .or_default()
                        .insert(f.path.clone());
                }
            }
        }
    }
    graph
}

/// Every pair of modules that reach each other (a circle), as `a <-> b`
/// with the path found each way.
fn circles(graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>) -> Vec<String> {
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(m) = stack.pop() {
            for next in graph.get(&m).into_iter().flat_map(|e| e.keys()) {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let mut out = Vec::new();
    for a in graph.keys() {
        let from_a = reach(a);
        for b in graph.keys().filter(|b| *b > a) {
            if from_a.contains(b) && reach(b).contains(a) {
                out.push(format!("{a} <-> {b}"));
            }
        }
    }
    out
}

/// Non-test functions longer than `max` lines: (lines, file:line, name).
fn long_functions(files: &[SourceFile], max: usize) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    for f in files {
        for (i, line) in f.lines.iter().enumerate() {
            let t = line.trim_start();
            let indent = line.len() - t.len();
            let sig = t
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub(super) ")
                .trim_start_matches("pub ")
                .trim_start_matches("const ")
                .trim_start_matches("async ")
                .trim_start_matches("unsafe ");
            let Some(rest) = sig.strip_prefix("fn ") else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // The body ends at the first `}` line at the signature's indent.
            let end = f.lines[i + 1..].iter().position(|l| {
                let lt = l.trim_start();
                l.len() - lt.len() == indent && lt.starts_with('}')
            });
            // A declaration without a body (`fn x();` in a trait) has none.
            if code(line).trim_end().ends_with(';') {
                continue;
            }
            if let Some(end) = end {
                let len = end + 2;
                if len > max {
                    out.push((len, format!("{}:{}", f.path, i + 1), name));
                }
            }
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.0));
    out
}

#[test]
fn top_level_modules_import_each_other_one_way() {
    let files = sources();
    let graph = import_graph(&files);
    println!("import graph of src/ (module -> modules it uses, with the files that do):");
    for (from, edges) in &graph {
        let list: Vec<String> = edges
            .iter()
            .map(|(to, files)| format!("{to} ({})", files.len()))
            .collect();
        println!("  {from} -> {}", list.join(", "));
    }
    let found = circles(&graph);
    let detail: Vec<String> = found
        .iter()
        .map(|pair| {
            let (a, b) = pair.split_once(" <-> ").unwrap();
            let via = |x: &str, y: &str| {
                graph[x]
                    .get(y)
                    .map(|f| f.iter().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_else(|| "(through other modules)".into())
            };
            format!(
                "{pair}: {a} -> {b} in {}; {b} -> {a} in {}",
                via(a, b),
                via(b, a)
            )
        })
        .collect();
    assert!(
        found.is_empty(),
        "top-level modules in a circle:\n{}",
        detail.join("\n")
    );
}

#[test]
fn no_function_is_too_long_to_read() {
    let files = sources();
    let long = long_functions(&files, MAX_FN_LINES);
    println!("longest non-test functions:");
    for (len, at, name) in long_functions(&files, 60).iter().take(15) {
        println!("  {len:4} {at} {name}");
    }
    let list: Vec<String> = long
        .iter()
        .map(|(len, at, name)| format!("{len} lines: {at} {name}"))
        .collect();
    assert!(
        list.is_empty(),
        "non-test functions over {MAX_FN_LINES} lines; split them by step:\n{}",
        list.join("\n")
    );
}

#[test]
fn no_file_is_too_long_to_read() {
    let files = sources();
    let mut sizes: Vec<(usize, &str)> = files
        .iter()
        .map(|f| (f.lines.len(), f.path.as_str()))
        .collect();
    sizes.sort_by_key(|f| std::cmp::Reverse(f.0));
    println!("largest files (non-test lines):");
    for (len, path) in sizes.iter().take(10) {
        println!("  {len:5} {path}");
    }
    let long: Vec<String> = sizes
        .iter()
        .filter(|(len, path)| *len > MAX_FILE_LINES && !TABLE_LIKE_FILES.contains(path))
        .map(|(len, path)| format!("{len} lines: {path}"))
        .collect();
    assert!(
        long.is_empty(),
        "non-test files over {MAX_FILE_LINES} lines; split them by job:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_reader_sees_imports_and_functions() {
    // The checks above are only as good as this reading of the text.
    assert_eq!(used_modules("use crate::backend::Backend;"), ["backend"]);
    assert_eq!(
        used_modules("use crate::{scheduler::Usage, model};"),
        ["scheduler", "model"]
    );
    assert_eq!(
        used_modules("let x = crate::gpu::f(); // crate::kv"),
        ["gpu"]
    );
    let file = SourceFile {
        path: "src/x.rs".into(),
        module: "x".into(),
        lines: std::iter::once("pub fn big() {".to_string())
            .chain((0..120).map(|i| format!("    let a{i} = {i};")))
            .chain(["}".to_string(), "fn small() {".into(), "}".into()])
            .collect(),
    };
    let long = long_functions(std::slice::from_ref(&file), MAX_FN_LINES);
    assert_eq!(long.len(), 1);
    assert_eq!(long[0].0, 122);
    assert_eq!(long[0].2, "big");
}
