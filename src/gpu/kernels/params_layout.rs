//! Test only: every kernel wrapper's Rust `Params` (the bytes
//! `GpuContext::dispatch` writes at binding 0) has the layout of its shader's
//! WGSL `struct Params` as naga lays it out: the same size, and field by
//! field the same offset, scalar type and name (padding fields, named `_…`
//! on both sides, match by position only). Nothing else checks that the two
//! declarations agree, and a mismatch reads shifted parameters on the GPU.
//!
//! The table in [`every_params_struct_matches_its_shader`] has one line per
//! shader: a new kernel adds one line, and a shader with a uniform that is
//! missing from the table fails the test.

use std::mem::{offset_of, size_of};

use super::{add, argmax, attention, embedding, fill, kv_write, matmul, moe, quantize_act};
use super::{rmsnorm, rope, swiglu};

/// One 4-byte scalar of a params struct.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    offset: usize,
    kind: &'static str,
    /// `None` for padding.
    name: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
struct Layout {
    size: usize,
    slots: Vec<Slot>,
}

/// A Rust field type made of 4-byte scalars.
trait Scalars {
    const KIND: &'static str;
    const COUNT: usize;
}

impl Scalars for u32 {
    const KIND: &'static str = "u32";
    const COUNT: usize = 1;
}

impl Scalars for i32 {
    const KIND: &'static str = "i32";
    const COUNT: usize = 1;
}

impl Scalars for f32 {
    const KIND: &'static str = "f32";
    const COUNT: usize = 1;
}

/// `_pad: [u32; 3]` stands for WGSL's `_pad0, _pad1, _pad2`.
impl<T: Scalars, const N: usize> Scalars for [T; N] {
    const KIND: &'static str = T::KIND;
    const COUNT: usize = N * T::COUNT;
}

fn slot_name(name: &str) -> Option<String> {
    (!name.starts_with('_')).then(|| name.to_string())
}

/// Appends field `name` at `offset`; `_get` only fixes the field's type.
fn field<S, T: Scalars>(slots: &mut Vec<Slot>, name: &str, offset: usize, _get: fn(&S) -> &T) {
    for i in 0..T::COUNT {
        slots.push(Slot {
            offset: offset + 4 * i,
            kind: T::KIND,
            name: slot_name(name),
        });
    }
}

/// The layout of Rust struct `S` from its fields (any order: the slots are
/// sorted by offset, so the struct's own order is what is compared).
macro_rules! rust {
    ($s:ty { $($f:ident),* $(,)? }) => {{
        let mut slots = Vec::new();
        $( field::<$s, _>(&mut slots, stringify!($f), offset_of!($s, $f), |p| &p.$f); )*
        slots.sort_by_key(|s: &Slot| s.offset);
        Layout { size: size_of::<$s>(), slots }
    }};
}

/// The layout naga gives the type of `file`'s uniform at binding 0.
fn wgsl(file: &str) -> Layout {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("shaders")
        .join(file);
    let raw = std::fs::read_to_string(&path).unwrap();
    let src = crate::gpu::shader_include::expand(file, &raw).unwrap();
    let module =
        naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&src)));
    let uniform = module
        .global_variables
        .iter()
        .map(|(_, g)| g)
        .find(|g| {
            g.space == naga::AddressSpace::Uniform
                && g.binding
                    .as_ref()
                    .is_some_and(|b| b.group == 0 && b.binding == 0)
        })
        .unwrap_or_else(|| panic!("{file} has no uniform at @group(0) @binding(0)"));
    let naga::TypeInner::Struct { members, span } = &module.types[uniform.ty].inner else {
        panic!("{file}: the uniform at binding 0 is not a struct");
    };
    let slots = members
        .iter()
        .map(|m| {
            let kind = match module.types[m.ty].inner {
                naga::TypeInner::Scalar(naga::Scalar { kind, width: 4 }) => match kind {
                    naga::ScalarKind::Uint => "u32",
                    naga::ScalarKind::Sint => "i32",
                    naga::ScalarKind::Float => "f32",
                    other => panic!("{file}: member {:?} is {other:?}", m.name),
                },
                ref other => panic!(
                    "{file}: member {:?} is not a 4-byte scalar: {other:?}",
                    m.name
                ),
            };
            Slot {
                offset: m.offset as usize,
                kind,
                name: slot_name(m.name.as_deref().unwrap_or("_")),
            }
        })
        .collect();
    Layout {
        size: *span as usize,
        slots,
    }
}

#[test]
fn every_params_struct_matches_its_shader() {
    #[rustfmt::skip]
    let table: Vec<(&str, Layout)> = vec![
        ("add.wgsl", rust!(add::Params { n, start, _pad })),
        ("argmax.wgsl", rust!(argmax::Params { rows, vocab, _pad })),
        ("attention.wgsl", rust!(attention::Params { num_tokens, max_blocks_per_seq, window, use_sinks, scale, _pad })),
        ("attention_strided.wgsl", rust!(attention::Params { num_tokens, max_blocks_per_seq, window, use_sinks, scale, _pad })),
        ("embedding.wgsl", rust!(embedding::Params { m, k4, upr, row0, rows, zero_above, groups_y, _pad })),
        ("fill.wgsl", rust!(fill::Params { n, value })),
        ("kv_write.wgsl", rust!(kv_write::Params { num_tokens, _pad })),
        ("matmul.wgsl", rust!(matmul::Params { m, k4, rows, n0, ldy, upr, flags, groups_x })),
        ("moe_matmul.wgsl", rust!(moe::MatmulParams { m, k_used, k4, rows, upr, e0, e1, flags })),
        ("moe_router.wgsl", rust!(moe::RouterParams { m, n_experts, k, groups_x })),
        ("quantize_act.wgsl", rust!(quantize_act::Params { n_blocks, block, mode, groups_x })),
        ("rmsnorm.wgsl", rust!(rmsnorm::Params { rows, width, eps, _pad })),
        ("rope.wgsl", rust!(rope::Params { tokens, n_heads, head_dim, half, neox, yarn, freq_scale, mscale })),
        ("swiglu.wgsl", rust!(swiglu::Params { n, start, mode, _pad, alpha, limit, _pad1 })),
    ];
    let mut failures = Vec::new();
    for (file, rust) in &table {
        // The listed fields must tile the Rust struct, so a field left out
        // of the table is caught as a gap.
        let mut end = 0;
        for s in &rust.slots {
            if s.offset != end {
                failures.push(format!(
                    "{file}: the Rust fields listed leave a gap at byte {end}"
                ));
            }
            end = s.offset + 4;
        }
        if end != rust.size {
            failures.push(format!(
                "{file}: the Rust fields listed end at {end} of {}",
                rust.size
            ));
        }
        let wgsl = wgsl(file);
        if wgsl != *rust {
            failures.push(format!("{file}:\n  WGSL {wgsl:?}\n  Rust {rust:?}"));
        }
    }

    // Every kernel with parameters is in the table.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".wgsl") {
            continue;
        }
        let raw = std::fs::read_to_string(&path).unwrap();
        let src = crate::gpu::shader_include::expand(&name, &raw).unwrap();
        if src.contains("var<uniform>") && !table.iter().any(|(f, _)| *f == name) {
            failures.push(format!("{name} has a uniform but no line in this table"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
