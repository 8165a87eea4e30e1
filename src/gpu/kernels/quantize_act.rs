//! `quantize_act`: rounds a matmul's input activations onto the grid llama.cpp
//! quantizes them to before multiplying with quantized weights (Q8_0/Q8_1
//! for the 32-value types, Q8_K for the K-quants, f16 for F16 weights),
//! keeping f32 storage. With it, logits land within llama.cpp's own rounding
//! of the reference instead of on the exact f32 product; it is optional
//! (`ActQuant::None`) for exact f32 activations.

use bytemuck::{Pod, Zeroable};

use super::{entry, grid_2d};
use crate::gguf::GgmlType;
use crate::gpu::shader_include::expand;
use crate::gpu::{GpuContext, GpuError};

const SOURCE: &str = include_str!("../../../shaders/quantize_act.wgsl");
const WG: u32 = 64;

/// The activation grid that goes with a weight type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActQuant {
    None,
    /// Blocks of 32, scale amax/127 stored as f16.
    Q8,
    /// Blocks of 256, f32 scale from the signed largest magnitude.
    Q8K,
    /// Each value rounded to f16.
    F16,
}

impl ActQuant {
    /// What llama.cpp's CPU backend does to activations for weights of `ty`.
    pub fn for_weight(ty: GgmlType) -> Self {
        match ty {
            GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q8_0
            | GgmlType::MXFP4 => ActQuant::Q8,
            GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => {
                ActQuant::Q8K
            }
            GgmlType::F16 => ActQuant::F16,
            GgmlType::F32 | GgmlType::BF16 => ActQuant::None,
        }
    }

    fn mode_block(self) -> Option<(u32, u32)> {
        match self {
            ActQuant::None => None,
            ActQuant::Q8 => Some((0, 32)),
            ActQuant::Q8K => Some((1, 256)),
            ActQuant::F16 => Some((2, 4)),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    pub(super) n_blocks: u32,
    pub(super) block: u32,
    pub(super) mode: u32,
    pub(super) groups_x: u32,
}

pub struct QuantizeAct {
    pipeline: wgpu::ComputePipeline,
}

impl QuantizeAct {
    pub fn new(ctx: &GpuContext) -> Result<Self, GpuError> {
        let module = ctx.shader_module("quantize_act", &expand("quantize_act.wgsl", SOURCE)?)?;
        let pipeline =
            ctx.compute_pipeline("quantize_act", &module, "main", &[("WG", f64::from(WG))])?;
        Ok(Self { pipeline })
    }

    /// Records `y[0..n] = round_q(x[0..n])`; `n` must be a multiple of the
    /// block (row widths are multiples of 256 or 32 for the matching weight
    /// types). `ActQuant::None` records nothing.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        q: ActQuant,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        n: u32,
    ) {
        let Some((mode, block)) = q.mode_block() else {
            return;
        };
        debug_assert_eq!(n % block, 0, "{n} values are not whole blocks of {block}");
        let n_blocks = n / block;
        if n_blocks == 0 {
            return;
        }
        let groups = n_blocks.div_ceil(WG);
        let (gx, gy) = grid_2d(ctx, groups);
        let params = Params {
            n_blocks,
            block,
            mode,
            groups_x: gx,
        };
        ctx.dispatch(
            pass,
            "quantize_act",
            &self.pipeline,
            &params,
            &[entry(1, x), entry(2, y)],
            [gx, gy, 1],
        );
    }
}

/// The CPU reference, following GGML's `quantize_row_q8_0`/`q8_K` rounding.
pub fn reference(q: ActQuant, x: &[f32]) -> Vec<f32> {
    let f16r = |v: f32| half::f16::from_f32(v).to_f32();
    match q {
        ActQuant::None => x.to_vec(),
        ActQuant::F16 => x.iter().map(|&v| f16r(v)).collect(),
        ActQuant::Q8 => x
            .chunks(32)
            .flat_map(|b| {
                let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d == 0.0 { 0.0 } else { 1.0 / d };
                let dh = f16r(d);
                b.iter()
                    .map(move |&v| dh * (v * id).round_ties_even())
                    .collect::<Vec<_>>()
            })
            .collect(),
        ActQuant::Q8K => x
            .chunks(256)
            .flat_map(|b| {
                let (mut amax, mut vmax) = (0f32, 0f32);
                for &v in b {
                    if v.abs() > amax {
                        amax = v.abs();
                        vmax = v;
                    }
                }
                if amax == 0.0 {
                    return vec![0.0; b.len()];
                }
                let iscale = -127.0 / vmax;
                let d = 1.0 / iscale;
                b.iter()
                    .map(|&v| d * (iscale * v).round_ties_even().min(127.0))
                    .collect()
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::testing::{ctx, random_f32, rng, POISON};

    #[test]
    fn matches_the_reference_for_every_mode() {
        let ctx = ctx();
        let k = QuantizeAct::new(ctx).unwrap();
        let mut r = rng(11);
        let mut x = random_f32(&mut r, 3 * 768, 4.0);
        // An all-zero block and one dominated by a negative value.
        x[32..64].fill(0.0);
        x[300] = -50.0;
        for q in [ActQuant::Q8, ActQuant::Q8K, ActQuant::F16] {
            let xb = ctx.storage_from("x", &x).unwrap();
            let yb = ctx.storage_from("y", &vec![POISON; x.len()]).unwrap();
            let mut enc = ctx.encoder("t");
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                k.encode(ctx, &mut pass, q, &xb, &yb, x.len() as u32);
            }
            ctx.submit("t", enc).unwrap();
            let got: Vec<f32> = ctx.read(&yb).unwrap();
            let want = reference(q, &x);
            // GPU division may differ from the CPU's by an ulp, which can flip
            // a value sitting on a rounding tie by one step: allow that for a
            // few values, and exact agreement everywhere else.
            let step = |i: usize| {
                let b = match q {
                    ActQuant::Q8 => 32,
                    ActQuant::Q8K => 256,
                    _ => 1,
                };
                let blk = &x[i / b * b..(i / b + 1) * b];
                blk.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0 * 1.01
            };
            let mut off = 0;
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let d = (g - w).abs();
                if d > 1e-6 || d.is_nan() {
                    off += 1;
                    assert!(d <= step(i), "{q:?} value {i}: got {g}, want {w}");
                }
            }
            eprintln!(
                "quantize_act {q:?}: {off} of {} values one step off",
                x.len()
            );
            assert!(off * 100 <= x.len(), "{q:?}: {off} values differ");
            // The rounding really happened: values moved, but not far.
            let moved = crate::gpu::testing::max_abs_diff(&want, &x);
            assert!(moved > 0.0 && moved < 0.5, "{q:?} moved values by {moved}");
        }
    }
}
