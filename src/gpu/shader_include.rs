//! The WGSL include step: a line `// #include "lib/name.wgsl"` in a shader is
//! replaced by that file's text, so a helper copied between kernels
//! (reductions, grid indexing, K-quant scale unpacking, shared parameter
//! blocks) lives once under `shaders/lib/`.
//!
//! The directive is a comment, so a file stays WGSL as written. Names resolve
//! only against [`LIBRARY`], an embedded table of `include_str!` files (a
//! shader never reads the disk at run time), or against the entries a caller
//! chooses for this one expansion: `dequant.wgsl` is the F32 dequantizer in
//! the table and `gpu::weights::splice_dequant` names another type's file.
//! Includes nest; each file is pasted at most once per expansion (WGSL
//! declarations are order-independent, so the first place is as good as any
//! and a helper two files need is not declared twice), and a file that
//! includes itself, directly or through others, is an error, as is an
//! unknown name. This module owns only the text step; it knows nothing of
//! devices or of what a kernel computes.

/// Every file a shader may include, by the name it is included as.
pub const LIBRARY: &[(&str, &str)] = &[
    (
        "dequant.wgsl",
        include_str!("../../shaders/dequant_f32.wgsl"),
    ),
    (
        "lib/attention_common.wgsl",
        include_str!("../../shaders/lib/attention_common.wgsl"),
    ),
    (
        "lib/flat_index.wgsl",
        include_str!("../../shaders/lib/flat_index.wgsl"),
    ),
    ("lib/hsum.wgsl", include_str!("../../shaders/lib/hsum.wgsl")),
    (
        "lib/k_scale_min.wgsl",
        include_str!("../../shaders/lib/k_scale_min.wgsl"),
    ),
    (
        "lib/matmul_io.wgsl",
        include_str!("../../shaders/lib/matmul_io.wgsl"),
    ),
    (
        "lib/q5_high_bits.wgsl",
        include_str!("../../shaders/lib/q5_high_bits.wgsl"),
    ),
    (
        "lib/quant_bindings.wgsl",
        include_str!("../../shaders/lib/quant_bindings.wgsl"),
    ),
    (
        "lib/row_index.wgsl",
        include_str!("../../shaders/lib/row_index.wgsl"),
    ),
];

const DIRECTIVE: &str = "// #include";

/// A shader whose includes cannot be resolved: a programming error in
/// `shaders/`, reported with the shader's name rather than as a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncludeError {
    #[error("shader {shader}: unknown include \"{name}\"; the shader library holds {known}")]
    Unknown {
        shader: String,
        name: String,
        known: String,
    },
    #[error("shader {shader}: include cycle {chain}")]
    Cycle { shader: String, chain: String },
    #[error("shader {shader}: malformed include `{line}`; write // #include \"lib/<name>.wgsl\"")]
    Malformed { shader: String, line: String },
}

/// `source` (the shader called `shader` in errors) with every include
/// replaced by the library file's text.
pub fn expand(shader: &str, source: &str) -> Result<String, IncludeError> {
    expand_with(shader, source, &[])
}

/// As [`expand`], with `chosen` `(name, text)` entries taking precedence over
/// the library's for this expansion.
pub fn expand_with(
    shader: &str,
    source: &str,
    chosen: &[(&str, &str)],
) -> Result<String, IncludeError> {
    let mut ex = Expander {
        shader,
        chosen,
        stack: vec![shader.to_string()],
        pasted: Vec::new(),
        out: String::with_capacity(source.len() * 2),
    };
    ex.expand(source)?;
    Ok(ex.out)
}

struct Expander<'a> {
    shader: &'a str,
    chosen: &'a [(&'a str, &'a str)],
    /// The file being expanded and the files that included it, outermost first.
    stack: Vec<String>,
    /// Files already pasted in this expansion.
    pasted: Vec<String>,
    out: String,
}

impl<'a> Expander<'a> {
    fn expand(&mut self, source: &str) -> Result<(), IncludeError> {
        for line in source.lines() {
            let Some(name) = self.target(line)? else {
                self.out.push_str(line);
                self.out.push('\n');
                continue;
            };
            if self.stack.iter().any(|s| s == name) {
                let mut chain = self.stack.clone();
                chain.push(name.to_string());
                return Err(IncludeError::Cycle {
                    shader: self.shader.to_string(),
                    chain: chain.join(" -> "),
                });
            }
            if self.pasted.iter().any(|p| p == name) {
                continue;
            }
            let text = self.lookup(name)?;
            self.pasted.push(name.to_string());
            self.stack.push(name.to_string());
            self.expand(text)?;
            self.stack.pop();
        }
        Ok(())
    }

    /// The name a line includes, or `None` for any other line.
    fn target<'l>(&self, line: &'l str) -> Result<Option<&'l str>, IncludeError> {
        let Some(rest) = line.trim().strip_prefix(DIRECTIVE) else {
            return Ok(None);
        };
        let name = rest
            .trim()
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .filter(|n| !n.is_empty() && !n.contains('"'));
        match name {
            Some(n) => Ok(Some(n)),
            None => Err(IncludeError::Malformed {
                shader: self.shader.to_string(),
                line: line.trim().to_string(),
            }),
        }
    }

    fn lookup(&self, name: &str) -> Result<&'a str, IncludeError> {
        let library: &'a [(&'a str, &'a str)] = LIBRARY;
        self.chosen
            .iter()
            .chain(library)
            .find(|(n, _)| *n == name)
            .map(|(_, text)| *text)
            .ok_or_else(|| IncludeError::Unknown {
                shader: self.shader.to_string(),
                name: name.to_string(),
                known: LIBRARY
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_is_replaced_by_the_library_text() {
        let src = "fn f() {}\n// #include \"lib/hsum.wgsl\"\nfn g() {}\n";
        let out = expand("t.wgsl", src).unwrap();
        assert!(out.starts_with("fn f() {}\n"));
        assert!(out.ends_with("fn g() {}\n"));
        assert!(out.contains("fn hsum(a: vec4<f32>) -> f32 {"));
        assert!(!out.contains("// #include"));
        // Indented directives count too; other comments are left alone.
        let out = expand(
            "t.wgsl",
            "    // #include \"lib/hsum.wgsl\"\n// include me\n",
        )
        .unwrap();
        assert!(out.contains("fn hsum"));
        assert!(out.ends_with("// include me\n"));
    }

    #[test]
    fn a_file_is_pasted_once_and_chosen_entries_win() {
        let src = "// #include \"lib/hsum.wgsl\"\n// #include \"lib/hsum.wgsl\"\n";
        let out = expand("t.wgsl", src).unwrap();
        assert_eq!(out.matches("fn hsum").count(), 1);

        let src = "// #include \"dequant.wgsl\"\n";
        let f32_default = expand("t.wgsl", src).unwrap();
        assert!(f32_default.contains("bitcast<vec4<f32>>(wq["));
        let chosen = expand_with("t.wgsl", src, &[("dequant.wgsl", "fn mine() {}\n")]).unwrap();
        assert_eq!(chosen, "fn mine() {}\n");
    }

    #[test]
    fn nested_includes_expand_and_cycles_are_errors() {
        let outer = "// #include \"a.wgsl\"\n";
        let a = "// #include \"lib/q5_high_bits.wgsl\"\nfn a() {}\n";
        let out = expand_with("t.wgsl", outer, &[("a.wgsl", a)]).unwrap();
        assert!(out.contains("fn high_bits") && out.contains("fn a()"));

        let b = "// #include \"c.wgsl\"\n";
        let c = "// #include \"b.wgsl\"\n";
        let err = expand_with(
            "t.wgsl",
            "// #include \"b.wgsl\"\n",
            &[("b.wgsl", b), ("c.wgsl", c)],
        )
        .unwrap_err();
        assert_eq!(
            err,
            IncludeError::Cycle {
                shader: "t.wgsl".into(),
                chain: "t.wgsl -> b.wgsl -> c.wgsl -> b.wgsl".into()
            }
        );
        let err = expand_with("t.wgsl", "// #include \"t.wgsl\"\n", &[("t.wgsl", "")]).unwrap_err();
        assert!(matches!(err, IncludeError::Cycle { .. }), "{err}");
    }

    #[test]
    fn unknown_and_malformed_includes_are_errors() {
        let err = expand("t.wgsl", "// #include \"lib/nope.wgsl\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("t.wgsl") && msg.contains("lib/nope.wgsl"),
            "{msg}"
        );
        assert!(
            msg.contains("lib/hsum.wgsl"),
            "the message lists what exists: {msg}"
        );
        for bad in [
            "// #include lib/hsum.wgsl",
            "// #include \"\"",
            "// #include \"a",
        ] {
            let err = expand("t.wgsl", bad).unwrap_err();
            assert!(
                matches!(err, IncludeError::Malformed { .. }),
                "{bad}: {err}"
            );
        }
    }

    /// Every file under `shaders/lib/` is in the table (so a new helper cannot
    /// be forgotten), and every table entry is used by some shader.
    #[test]
    fn library_table_matches_shaders_lib() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
        let mut on_disk: Vec<String> = std::fs::read_dir(root.join("lib"))
            .expect("shaders/lib exists")
            .map(|e| format!("lib/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let mut in_table: Vec<String> = LIBRARY
            .iter()
            .map(|(n, _)| n.to_string())
            .filter(|n| n.starts_with("lib/"))
            .collect();
        in_table.sort();
        assert_eq!(on_disk, in_table);

        let mut all = String::new();
        for dir in [root.clone(), root.join("lib")] {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "wgsl") {
                    all.push_str(&std::fs::read_to_string(p).unwrap());
                }
            }
        }
        for (name, _) in LIBRARY {
            let directive = format!("{DIRECTIVE} \"{name}\"");
            assert!(all.contains(&directive), "no shader includes {name}");
        }
    }
}
