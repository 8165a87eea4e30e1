//! `swiglu`: the gated activation of the feed-forward block,
//! `out[m][i] = act(gate[m][i]) * up[m][i]` over separate `[M][F]` gate and
//! up buffers, in two modes: plain SwiGLU (llama, qwen2) and gpt-oss's
//! clamped variant. Elementwise, so trivially batch invariant.

use bytemuck::{Pod, Zeroable};

use super::{entry, grid_2d};
use crate::gpu::shader_include::expand;
use crate::gpu::{GpuContext, GpuError};

const SOURCE: &str = include_str!("../../../shaders/swiglu.wgsl");
const WG: u32 = 256;

/// Which gated activation to apply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SwiGluMode {
    /// `silu(gate) * up`, `silu(x) = x / (1 + exp(-x))`.
    Silu,
    /// gpt-oss: `g = min(gate, limit)`, `u = clamp(up, -limit, limit)`,
    /// `g * sigmoid(alpha * g) * (u + 1)`.
    OaiClamped { alpha: f32, limit: f32 },
}

impl SwiGluMode {
    /// gpt-oss's constants (alpha 1.702, limit 7.0).
    pub const GPT_OSS: SwiGluMode = SwiGluMode::OaiClamped {
        alpha: 1.702,
        limit: 7.0,
    };
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    pub(super) n: u32,
    pub(super) start: u32,
    pub(super) mode: u32,
    pub(super) _pad: u32,
    pub(super) alpha: f32,
    pub(super) limit: f32,
    pub(super) _pad1: [u32; 2],
}

pub struct SwiGlu {
    mode: SwiGluMode,
    vec4: wgpu::ComputePipeline,
    scalar: wgpu::ComputePipeline,
}

impl SwiGlu {
    pub fn new(ctx: &GpuContext, mode: SwiGluMode) -> Result<Self, GpuError> {
        if let SwiGluMode::OaiClamped { alpha, limit } = mode {
            if !(alpha.is_finite() && limit.is_finite() && limit > 0.0) {
                return Err(GpuError::Validation {
                    what: "SwiGlu::new".into(),
                    message: format!(
                        "clamped SwiGLU needs a finite alpha and a finite limit > 0, \
                         got alpha {alpha}, limit {limit}; check the model's swiglu_limit"
                    ),
                });
            }
        }
        let module = ctx.shader_module("swiglu", &expand("swiglu.wgsl", SOURCE)?)?;
        let pipe = |entry: &str| {
            ctx.compute_pipeline(
                &format!("swiglu {entry}"),
                &module,
                entry,
                &[("WG", WG as f64)],
            )
        };
        Ok(Self {
            mode,
            vec4: pipe("swiglu_vec4")?,
            scalar: pipe("swiglu_scalar")?,
        })
    }

    pub fn mode(&self) -> SwiGluMode {
        self.mode
    }

    /// Records `out[i] = act(gate[i]) * up[i]` for `i < n` (n = M * F).
    /// `out` must be a third buffer.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        gate: &wgpu::Buffer,
        up: &wgpu::Buffer,
        out: &wgpu::Buffer,
        n: u32,
    ) {
        if n == 0 {
            return;
        }
        let start = n - n % 4;
        let (mode, alpha, limit) = match self.mode {
            SwiGluMode::Silu => (0, 0.0, 0.0),
            SwiGluMode::OaiClamped { alpha, limit } => (1, alpha, limit),
        };
        let params = Params {
            n,
            start,
            mode,
            _pad: 0,
            alpha,
            limit,
            _pad1: [0; 2],
        };
        let jobs = [
            (
                &self.vec4,
                [entry(1, gate), entry(2, up), entry(3, out)],
                start / 4,
            ),
            (
                &self.scalar,
                [entry(4, gate), entry(5, up), entry(6, out)],
                n - start,
            ),
        ];
        for (pipeline, buffers, count) in jobs {
            if count == 0 {
                continue;
            }
            let (x, y) = grid_2d(ctx, count.div_ceil(WG));
            ctx.dispatch(pass, "swiglu", pipeline, &params, &buffers, [x, y, 1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::testing::{assert_close, ctx, random_f32, rng, POISON};

    fn reference(mode: SwiGluMode, gate: &[f32], up: &[f32]) -> Vec<f32> {
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        gate.iter()
            .zip(up)
            .map(|(&g, &u)| {
                let (g, u) = (g as f64, u as f64);
                let y = match mode {
                    SwiGluMode::Silu => g * sigmoid(g) * u,
                    SwiGluMode::OaiClamped { alpha, limit } => {
                        let limit = limit as f64;
                        let g = g.min(limit);
                        let u = u.clamp(-limit, limit);
                        g * sigmoid(alpha as f64 * g) * (u + 1.0)
                    }
                };
                y as f32
            })
            .collect()
    }

    fn run(mode: SwiGluMode, gate: &[f32], up: &[f32]) -> Vec<f32> {
        let ctx = ctx();
        let k = SwiGlu::new(ctx, mode).unwrap();
        let n = gate.len();
        let g = ctx.storage_from("gate", gate).unwrap();
        let u = ctx.storage_from("up", up).unwrap();
        let out = ctx.storage_from("out", &vec![POISON; n + 1]).unwrap();
        let mut enc = ctx.encoder("swiglu test");
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            k.encode(ctx, &mut pass, &g, &u, &out, n as u32);
        }
        ctx.submit("swiglu", enc).unwrap();
        let got: Vec<f32> = ctx.read(&out).unwrap();
        assert!(got[n].is_nan(), "wrote past n");
        got[..n].to_vec()
    }

    /// Inputs wide enough to cross gpt-oss's limit of 7, plus values where
    /// exp overflows (the result must be -0 or the plain product, not NaN).
    fn inputs(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut r = rng(seed);
        let mut gate = random_f32(&mut r, n, 10.0);
        let up = random_f32(&mut r, n, 10.0);
        gate[0] = -200.0;
        gate[1] = 200.0;
        gate[2] = -90.0;
        (gate, up)
    }

    #[test]
    fn silu_matches_reference() {
        // [3][1536] (SmolLM2's FFN width, vec4 path) and [3][1001] (tail).
        for (n, seed) in [(3 * 1536, 1), (3 * 1001, 2)] {
            let (gate, up) = inputs(n, seed);
            let got = run(SwiGluMode::Silu, &gate, &up);
            let want = reference(SwiGluMode::Silu, &gate, &up);
            // |out| reaches ~100: a few f32 ulps of that.
            assert_close(&format!("swiglu silu n={n}"), &got, &want, 1e-4);
        }
    }

    #[test]
    fn gpt_oss_clamped_matches_reference() {
        for (n, seed) in [(2 * 2880, 3), (7, 4)] {
            let (gate, up) = inputs(n, seed);
            let got = run(SwiGluMode::GPT_OSS, &gate, &up);
            let want = reference(SwiGluMode::GPT_OSS, &gate, &up);
            assert_close(&format!("swiglu gpt-oss n={n}"), &got, &want, 1e-4);
            // The clamp must bite: the unclamped formula differs here.
            let loose = reference(
                SwiGluMode::OaiClamped {
                    alpha: 1.702,
                    limit: 1e9,
                },
                &gate,
                &up,
            );
            assert!(crate::gpu::testing::max_abs_diff(&want, &loose) > 1.0);
        }
    }

    #[test]
    fn bad_limit_is_an_error() {
        let bad = SwiGluMode::OaiClamped {
            alpha: 1.702,
            limit: f32::NAN,
        };
        assert!(matches!(
            SwiGlu::new(ctx(), bad),
            Err(GpuError::Validation { .. })
        ));
    }
}
