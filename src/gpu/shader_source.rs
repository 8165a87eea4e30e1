//! WGSL sources and the one textual variant step the design allows.
//!
//! Kernels live in `shaders/*.wgsl` and are embedded with `include_str!`.
//! Sizes (workgroup size, head dim, block size) are `override` constants set at
//! pipeline creation. Element types cannot be overridden in WGSL, so a shader
//! that comes in several dtypes declares them as aliases, e.g.
//! `alias kv_t = f32;`, and [`specialise`] rewrites those alias lines (adding
//! `enable f16;` when an f16 type is chosen). It runs after the include step
//! (`super::shader_include`), on the expanded text. The file as written,
//! its includes expanded, is always a valid f32 shader, which is what the
//! naga test compiles first.

/// Rewrites `alias NAME = ...;` lines for each `(NAME, TYPE)` given.
///
/// Panics (a programming error, caught by the unit tests) if an alias named
/// here is not declared in the source.
pub fn specialise(source: &str, aliases: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(source.len() + 32);
    let mut wants_f16 = false;
    let mut seen = vec![false; aliases.len()];
    for line in source.lines() {
        let trimmed = line.trim_start();
        let mut replaced = false;
        if let Some(rest) = trimmed.strip_prefix("alias ") {
            let name = rest.split('=').next().unwrap_or("").trim();
            if let Some(i) = aliases.iter().position(|(n, _)| *n == name) {
                let ty = aliases[i].1;
                wants_f16 |= ty.contains("f16");
                seen[i] = true;
                out.push_str(&format!("alias {name} = {ty};\n"));
                replaced = true;
            }
        }
        if !replaced {
            out.push_str(line);
            out.push('\n');
        }
    }
    for (i, s) in seen.iter().enumerate() {
        assert!(*s, "shader has no `alias {} = ...;` line", aliases[i].0);
    }
    if wants_f16 && !source.contains("enable f16;") {
        out.insert_str(0, "enable f16;\n");
    }
    out
}

/// The names of every `alias` declared at the top level of a shader.
pub fn aliases(source: &str) -> Vec<String> {
    source
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('\t'))
        .filter_map(|l| l.strip_prefix("alias "))
        .filter_map(|r| r.split('=').next())
        .map(|n| n.trim().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specialise_rewrites_alias_and_enables_f16() {
        let src = "alias kv_t = f32;\nfn f(x: kv_t) -> kv_t { return x; }\n";
        let out = specialise(src, &[("kv_t", "f16")]);
        assert!(out.starts_with("enable f16;\n"));
        assert!(out.contains("alias kv_t = f16;"));
        assert!(!out.contains("alias kv_t = f32;"));
        let same = specialise(src, &[("kv_t", "f32")]);
        assert!(!same.contains("enable f16"));
        assert_eq!(aliases(src), vec!["kv_t".to_string()]);
    }

    /// Every `.wgsl` file in `shaders/` parses and validates with naga, its
    /// includes expanded, as written (f32) and with each of its aliases
    /// switched to f16. A broken kernel fails here without a GPU. The
    /// fragments in `shaders/lib/` are compiled inside the files that include
    /// them.
    #[test]
    fn every_shader_compiles_with_naga() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
        let mut count = 0;
        let mut failures = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .expect("shaders/ exists")
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
            .collect();
        entries.sort();
        for path in entries {
            let raw = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let src = match crate::gpu::shader_include::expand(&name, &raw) {
                Ok(s) => s,
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            };
            let mut variants = vec![("as written".to_string(), src.clone())];
            let names = aliases(&src);
            if !names.is_empty() {
                let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "f16")).collect();
                variants.push(("f16".to_string(), specialise(&src, &pairs)));
            }
            for (variant, text) in variants {
                let res = naga::front::wgsl::parse_str(&text)
                    .map_err(|e| e.emit_to_string(&text))
                    .and_then(|module| {
                        naga::valid::Validator::new(
                            naga::valid::ValidationFlags::all(),
                            naga::valid::Capabilities::all(),
                        )
                        .validate(&module)
                        .map(|_| ())
                        .map_err(|e| e.emit_to_string(&text))
                    });
                if let Err(msg) = res {
                    failures.push(format!("{} ({variant}):\n{msg}", path.display()));
                }
            }
            count += 1;
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
        assert!(count > 0, "no shaders found in {}", dir.display());
    }
}
