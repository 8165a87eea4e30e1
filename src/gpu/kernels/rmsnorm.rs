//! `rmsnorm`: RMS normalisation of f32 rows with a per-column weight,
//! `out[r][i] = x[r][i] / sqrt(mean(x[r]^2) + eps) * w[i]`.
//!
//! One workgroup per row with a fixed-order reduction, so a row's result is
//! bitwise the same whatever else is in the batch. Per-head normalisation
//! (qk-norm) is the same call with `rows = tokens * n_heads` and
//! `width = head_dim`. It also owns [`Rows`], the `[count][width]` shape the
//! per-row kernels of this folder take.

use bytemuck::{Pod, Zeroable};

use super::{entry, grid_2d};
use crate::gpu::shader_include::expand;
use crate::gpu::{GpuContext, GpuError};

const SOURCE: &str = include_str!("../../../shaders/rmsnorm.wgsl");
const WG: u32 = 256;

/// A batch of `count` contiguous f32 rows of `width` elements each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rows {
    pub count: u32,
    pub width: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    pub(super) rows: u32,
    pub(super) width: u32,
    pub(super) eps: f32,
    pub(super) _pad: u32,
}

/// RMSNorm with a fixed epsilon (a model constant, e.g. GGUF's
/// `*.attention.layer_norm_rms_epsilon`).
pub struct RmsNorm {
    eps: f32,
    scalar: wgpu::ComputePipeline,
    vec4: wgpu::ComputePipeline,
    scalar_in_place: wgpu::ComputePipeline,
    vec4_in_place: wgpu::ComputePipeline,
}

impl RmsNorm {
    pub fn new(ctx: &GpuContext, eps: f32) -> Result<Self, GpuError> {
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(GpuError::Validation {
                what: "RmsNorm::new".into(),
                message: format!(
                    "eps must be finite and >= 0, got {eps}; check the model's rms epsilon metadata"
                ),
            });
        }
        let module = ctx.shader_module("rmsnorm", &expand("rmsnorm.wgsl", SOURCE)?)?;
        let pipe = |entry: &str| {
            ctx.compute_pipeline(
                &format!("rmsnorm {entry}"),
                &module,
                entry,
                &[("WG", WG as f64)],
            )
        };
        Ok(Self {
            eps,
            scalar: pipe("rmsnorm_scalar")?,
            vec4: pipe("rmsnorm_vec4")?,
            scalar_in_place: pipe("rmsnorm_scalar_in_place")?,
            vec4_in_place: pipe("rmsnorm_vec4_in_place")?,
        })
    }

    pub fn eps(&self) -> f32 {
        self.eps
    }

    /// Records the normalisation of `x` (`[rows.count][rows.width]` f32) into
    /// `out` (same shape, a different buffer) with `weight` (`[rows.width]`).
    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        x: &wgpu::Buffer,
        weight: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: Rows,
    ) {
        if rows.width.is_multiple_of(4) {
            let entries = [entry(4, x), entry(5, weight), entry(6, out)];
            self.record(ctx, pass, &self.vec4, &entries, rows);
        } else {
            let entries = [entry(1, x), entry(2, weight), entry(3, out)];
            self.record(ctx, pass, &self.scalar, &entries, rows);
        }
    }

    /// Like [`RmsNorm::encode`] but overwrites `x` with the result.
    pub fn encode_in_place(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        x: &wgpu::Buffer,
        weight: &wgpu::Buffer,
        rows: Rows,
    ) {
        if rows.width.is_multiple_of(4) {
            let entries = [entry(8, x), entry(5, weight)];
            self.record(ctx, pass, &self.vec4_in_place, &entries, rows);
        } else {
            let entries = [entry(7, x), entry(2, weight)];
            self.record(ctx, pass, &self.scalar_in_place, &entries, rows);
        }
    }

    fn record(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[wgpu::BindGroupEntry<'_>],
        rows: Rows,
    ) {
        if rows.count == 0 || rows.width == 0 {
            return;
        }
        let params = Params {
            rows: rows.count,
            width: rows.width,
            eps: self.eps,
            _pad: 0,
        };
        let (gx, gy) = grid_2d(ctx, rows.count);
        ctx.dispatch(pass, "rmsnorm", pipeline, &params, buffers, [gx, gy, 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::testing::{assert_close, ctx, random_f32, rng, POISON};

    const EPS: f32 = 1e-5;

    /// Plain reference in f64: each row of width `w.len()` normalised by its
    /// own RMS and scaled by `w`.
    fn reference(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
        let d = w.len();
        x.chunks(d)
            .flat_map(|row| {
                let ms = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / d as f64;
                let scale = 1.0 / (ms + eps as f64).sqrt();
                row.iter()
                    .zip(w)
                    .map(move |(&v, &wi)| (v as f64 * scale * wi as f64) as f32)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Runs the kernel on `x` (rows of `w.len()`), out of place or in place.
    fn run(norm: &RmsNorm, x: &[f32], w: &[f32], in_place: bool) -> Vec<f32> {
        let ctx = ctx();
        let rows = Rows {
            count: (x.len() / w.len()) as u32,
            width: w.len() as u32,
        };
        let x_buf = ctx.storage_from("x", x).unwrap();
        let w_buf = ctx.storage_from("w", w).unwrap();
        let out_buf = ctx.storage_from("out", &vec![POISON; x.len()]).unwrap();
        let mut enc = ctx.encoder("rmsnorm test");
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            if in_place {
                norm.encode_in_place(ctx, &mut pass, &x_buf, &w_buf, rows);
            } else {
                norm.encode(ctx, &mut pass, &x_buf, &w_buf, &out_buf, rows);
            }
        }
        ctx.submit("rmsnorm", enc).unwrap();
        let got: Vec<f32> = ctx.read(if in_place { &x_buf } else { &out_buf }).unwrap();
        got[..x.len()].to_vec()
    }

    #[test]
    fn matches_reference_for_model_and_odd_widths() {
        let norm = RmsNorm::new(ctx(), EPS).unwrap();
        // 576: SmolLM2 (vec4 path, not a multiple of 256); 200: vec4 path,
        // fewer columns than invocations; 203: scalar path; 8192: the largest
        // hidden size we plan for.
        for (rows, width, seed) in [(5, 576, 1), (3, 200, 2), (4, 203, 3), (2, 8192, 4)] {
            let mut r = rng(seed);
            let x = random_f32(&mut r, rows * width, 2.0);
            let w: Vec<f32> = random_f32(&mut r, width, 0.5)
                .into_iter()
                .map(|v| 1.0 + v)
                .collect();
            let got = run(&norm, &x, &w, false);
            assert_close(
                &format!("rmsnorm {rows}x{width}"),
                &got,
                &reference(&x, &w, EPS),
                1e-5,
            );
        }
    }

    #[test]
    fn in_place_equals_out_of_place_bitwise() {
        let norm = RmsNorm::new(ctx(), EPS).unwrap();
        for (width, seed) in [(576, 5), (203, 6)] {
            let mut r = rng(seed);
            let x = random_f32(&mut r, 3 * width, 2.0);
            let w = random_f32(&mut r, width, 1.0);
            let out = run(&norm, &x, &w, false);
            let in_place = run(&norm, &x, &w, true);
            assert_close(
                &format!("rmsnorm in place {width}"),
                &in_place,
                &reference(&x, &w, EPS),
                1e-5,
            );
            assert_eq!(
                bytemuck::cast_slice::<f32, u32>(&out),
                bytemuck::cast_slice::<f32, u32>(&in_place)
            );
        }
    }

    /// qk-norm: each head_dim slice of `[tokens][n_heads][head_dim]` is its
    /// own row; a whole-token norm would give different numbers.
    #[test]
    fn per_head_rows_normalise_each_head_separately() {
        let norm = RmsNorm::new(ctx(), 1e-6).unwrap();
        let (tokens, heads, head_dim) = (3, 5, 64);
        let mut r = rng(7);
        let mut x = random_f32(&mut r, tokens * heads * head_dim, 1.0);
        // Give each head a different scale so per-head and per-token differ.
        for (i, v) in x.iter_mut().enumerate() {
            *v *= 1.0 + ((i / head_dim) % heads) as f32;
        }
        let w = random_f32(&mut r, head_dim, 2.0);
        let got = run(&norm, &x, &w, false);
        let want = reference(&x, &w, 1e-6);
        assert_close("rmsnorm per head", &got, &want, 1e-5);
        let mut w_token = Vec::new();
        for _ in 0..heads {
            w_token.extend_from_slice(&w);
        }
        let per_token = reference(&x, &w_token, 1e-6);
        assert!(crate::gpu::testing::max_abs_diff(&got, &per_token) > 1e-2);
    }

    #[test]
    fn row_result_does_not_depend_on_batch() {
        let ctx = ctx();
        let norm = RmsNorm::new(ctx, EPS).unwrap();
        for (width, seed) in [(576, 8), (203, 9)] {
            let mut r = rng(seed);
            let x = random_f32(&mut r, 7 * width, 3.0);
            let w = random_f32(&mut r, width, 1.0);
            let batch = run(&norm, &x, &w, false);
            for m in 0..7 {
                let alone = run(&norm, &x[m * width..(m + 1) * width], &w, false);
                assert_eq!(
                    bytemuck::cast_slice::<f32, u32>(&alone),
                    bytemuck::cast_slice::<f32, u32>(&batch[m * width..(m + 1) * width]),
                    "row {m} of width {width} differs alone vs in a batch of 7"
                );
            }
        }
    }

    #[test]
    fn bad_eps_is_an_error() {
        for eps in [f32::NAN, -1.0, f32::INFINITY] {
            assert!(matches!(
                RmsNorm::new(ctx(), eps),
                Err(GpuError::Validation { .. })
            ));
        }
    }
}
