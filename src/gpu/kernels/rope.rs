//! `rope`: rotary position embedding, in place on q `[M][n_heads][head_dim]`
//! or k `[M][n_kv_heads][head_dim]`, positions from a `[M]` u32 buffer.
//!
//! It follows GGML's definition (what llama.cpp's GGUF models expect): the
//! interleaved ("normal", llama) and neox (qwen2, gpt-oss) pairings, partial
//! rotation of the first `n_rot` dims, optional per-pair frequency factors
//! (llama 3's `rope_freqs`), and YaRN as GGML's `rope_yarn` computes it. The
//! per-pair constants are computed once on the host ([`Rope::new`]), so the
//! shader's angle is one f32 multiply of the position. Elementwise per pair,
//! so trivially batch invariant.

use bytemuck::{Pod, Zeroable};

use super::{entry, grid_2d};
use crate::gpu::shader_include::expand;
use crate::gpu::{GpuContext, GpuError};

const SOURCE: &str = include_str!("../../../shaders/rope.wgsl");
const WG: u32 = 256;

/// How dims are paired for rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeMode {
    /// GGML's normal mode (llama): pairs `(2i, 2i + 1)`.
    Interleaved,
    /// GGML's neox mode (qwen2, gpt-oss): pairs `(i, i + n_rot / 2)`.
    Neox,
}

/// GGML's YaRN parameters. With `ext_factor == 0` YaRN is off and only
/// `attn_factor` (a plain scale on cos and sin) applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YarnParams {
    /// Weight of the extrapolation ramp; 0 disables YaRN (llama.cpp uses 1
    /// for YaRN-scaled models).
    pub ext_factor: f32,
    /// Magnitude scale on cos and sin, further multiplied by
    /// `1 + 0.1 * ln(1 / freq_scale)` when `ext_factor != 0`.
    pub attn_factor: f32,
    pub beta_fast: f32,
    pub beta_slow: f32,
    /// The context length the model was trained with (GGUF
    /// `*.rope.scaling.original_context_length`).
    pub n_ctx_orig: u32,
    /// Round the ramp's ends outward to whole pairs, as GGML always does.
    /// gpt-oss is defined without the rounding (its HF config says
    /// `"truncate": false`, and transformers' reference logits follow it);
    /// GGUF does not record this, so the model code must set it.
    pub truncate: bool,
}

impl YarnParams {
    /// YaRN off: no ramp, no magnitude correction.
    pub fn none() -> Self {
        Self {
            ext_factor: 0.0,
            attn_factor: 1.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
            n_ctx_orig: 0,
            truncate: true,
        }
    }
}

impl Default for YarnParams {
    fn default() -> Self {
        Self::none()
    }
}

/// Everything that fixes a model's rotary embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeParams {
    pub mode: RopeMode,
    pub head_dim: u32,
    /// Dims rotated at the start of each head (GGUF `*.rope.dimension_count`);
    /// the rest pass through.
    pub n_rot: u32,
    pub freq_base: f32,
    /// Linear position scaling: angles are multiplied by it (1 = none).
    pub freq_scale: f32,
    pub yarn: YarnParams,
    /// Per-pair divisors of the frequency (`[n_rot / 2]`, GGML's
    /// `freq_factors`, llama 3's `rope_freqs` tensor).
    pub freq_factors: Option<Vec<f32>>,
}

impl RopeParams {
    /// Full rotation of every dim, no scaling, no YaRN.
    pub fn new(mode: RopeMode, head_dim: u32, freq_base: f32) -> Self {
        Self {
            mode,
            head_dim,
            n_rot: head_dim,
            freq_base,
            freq_scale: 1.0,
            yarn: YarnParams::none(),
            freq_factors: None,
        }
    }

    fn check(&self) -> Result<(), String> {
        let p = self;
        if p.head_dim == 0 || p.n_rot == 0 || !p.n_rot.is_multiple_of(2) || p.n_rot > p.head_dim {
            return Err(format!(
                "n_rot must be even, > 0 and at most head_dim; got n_rot {} with head_dim {}",
                p.n_rot, p.head_dim
            ));
        }
        if !(p.freq_base.is_finite() && p.freq_base > 1.0) {
            return Err(format!(
                "freq_base must be finite and > 1, got {}",
                p.freq_base
            ));
        }
        if !(p.freq_scale.is_finite() && p.freq_scale > 0.0) {
            return Err(format!(
                "freq_scale must be finite and > 0, got {}",
                p.freq_scale
            ));
        }
        let y = &p.yarn;
        if ![y.ext_factor, y.attn_factor, y.beta_fast, y.beta_slow]
            .iter()
            .all(|v| v.is_finite())
        {
            return Err(format!("YaRN parameters must be finite, got {y:?}"));
        }
        if y.ext_factor != 0.0 && (y.n_ctx_orig == 0 || y.beta_fast <= 0.0 || y.beta_slow <= 0.0) {
            return Err(format!(
                "YaRN (ext_factor {}) needs n_ctx_orig > 0 and positive betas, got {y:?}; \
                 set the model's original context length or ext_factor 0",
                y.ext_factor
            ));
        }
        if let Some(ff) = &p.freq_factors {
            if ff.len() != (p.n_rot / 2) as usize {
                return Err(format!(
                    "freq_factors holds {} values but n_rot / 2 is {}",
                    ff.len(),
                    p.n_rot / 2
                ));
            }
            if let Some(bad) = ff.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
                return Err(format!("freq_factors must be finite and > 0, found {bad}"));
            }
        }
        Ok(())
    }
}

/// GGML's `ggml_rope_yarn_corr_dims`: the pair range `[low, high]` over which
/// YaRN ramps from extrapolation to interpolation. Computed in f32 as GGML
/// does, so the ramp matches bit for bit. `truncate` false skips the
/// floor/ceil (transformers' `truncate: false`, which gpt-oss uses).
pub fn yarn_corr_dims(n_rot: u32, n_ctx_orig: u32, freq_base: f32, yarn: &YarnParams) -> [f32; 2] {
    // The dim at which a pair completes `n_turns` rotations over n_ctx_orig
    // positions: solve n_ctx_orig / (2 pi base^(2d / n_rot)) = n_turns for d.
    let dim = |n_turns: f32| {
        n_rot as f32 * (n_ctx_orig as f32 / (n_turns * 2.0 * std::f32::consts::PI)).ln()
            / (2.0 * freq_base.ln())
    };
    let (mut low, mut high) = (dim(yarn.beta_fast), dim(yarn.beta_slow));
    if yarn.truncate {
        (low, high) = (low.floor(), high.ceil());
    }
    [low.max(0.0), high.min(n_rot as f32 - 1.0)]
}

/// GGML's `rope_yarn_ramp` for pair `i`: 1 below `low`, 0 above `high`.
fn yarn_ramp(corr: [f32; 2], i: u32) -> f32 {
    let y = (i as f32 - corr[0]) / (corr[1] - corr[0]).max(0.001);
    1.0 - y.clamp(0.0, 1.0)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    pub(super) tokens: u32,
    pub(super) n_heads: u32,
    pub(super) head_dim: u32,
    pub(super) half: u32,
    pub(super) neox: u32,
    pub(super) yarn: u32,
    pub(super) freq_scale: f32,
    pub(super) mscale: f32,
}

/// RoPE for one set of [`RopeParams`] (q and k of every layer share it).
pub struct Rope {
    params: RopeParams,
    mscale: f32,
    freqs: wgpu::Buffer,
    pipeline: wgpu::ComputePipeline,
}

impl Rope {
    pub fn new(ctx: &GpuContext, params: &RopeParams) -> Result<Self, GpuError> {
        params.check().map_err(|message| GpuError::Validation {
            what: "RopeParams".into(),
            message,
        })?;
        let p = params;
        let y = &p.yarn;
        let yarn = y.ext_factor != 0.0;
        let corr = if yarn {
            yarn_corr_dims(p.n_rot, y.n_ctx_orig, p.freq_base, y)
        } else {
            [0.0, 0.0]
        };
        // f64 pow then one rounding: the f32 inverse frequency closest to
        // the true one, as transformers' f32 `inv_freq` table is.
        let freqs: Vec<[f32; 2]> = (0..p.n_rot / 2)
            .map(|i| {
                let inv = (p.freq_base as f64).powf(-2.0 * i as f64 / p.n_rot as f64) as f32;
                let ff = p.freq_factors.as_ref().map_or(1.0, |f| f[i as usize]);
                let mix = if yarn {
                    yarn_ramp(corr, i) * y.ext_factor
                } else {
                    0.0
                };
                [inv / ff, mix]
            })
            .collect();
        let mscale = if yarn {
            y.attn_factor * (1.0 + 0.1 * (1.0 / p.freq_scale).ln())
        } else {
            y.attn_factor
        };
        let module = ctx.shader_module("rope", &expand("rope.wgsl", SOURCE)?)?;
        let pipeline = ctx.compute_pipeline("rope", &module, "rope", &[("WG", WG as f64)])?;
        Ok(Self {
            params: p.clone(),
            mscale,
            freqs: ctx.storage_from("rope freqs", &freqs)?,
            pipeline,
        })
    }

    pub fn params(&self) -> &RopeParams {
        &self.params
    }

    /// Records the in-place rotation of `x` (`[tokens][n_heads][head_dim]`
    /// f32) with token `m` at position `positions[m]` (`[tokens]` u32).
    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        x: &wgpu::Buffer,
        positions: &wgpu::Buffer,
        tokens: u32,
        n_heads: u32,
    ) {
        let p = &self.params;
        let half = p.n_rot / 2;
        let pairs = tokens * n_heads * half;
        if pairs == 0 {
            return;
        }
        let uniform = Params {
            tokens,
            n_heads,
            head_dim: p.head_dim,
            half,
            neox: (p.mode == RopeMode::Neox) as u32,
            yarn: (p.yarn.ext_factor != 0.0) as u32,
            freq_scale: p.freq_scale,
            mscale: self.mscale,
        };
        let entries = [entry(1, x), entry(2, positions), entry(3, &self.freqs)];
        let (gx, gy) = grid_2d(ctx, pairs.div_ceil(WG));
        ctx.dispatch(
            pass,
            "rope",
            &self.pipeline,
            &uniform,
            &entries,
            [gx, gy, 1],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::testing::{assert_close, ctx, random_f32, rng};
    use rand::Rng;

    /// GGML's rope written out plainly, in f32: per pair, the extrapolated
    /// angle pos * base^(-2i/n_rot) / ff, then rope_yarn (ramp mix and
    /// mscale), then the rotation of the mode's pair.
    fn reference(p: &RopeParams, x: &[f32], positions: &[u32], n_heads: usize) -> Vec<f32> {
        let hd = p.head_dim as usize;
        let n_rot = p.n_rot as usize;
        let y = &p.yarn;
        let corr = yarn_corr_dims(p.n_rot, y.n_ctx_orig, p.freq_base, y);
        let mut out = x.to_vec();
        for (m, &pos) in positions.iter().enumerate() {
            for h in 0..n_heads {
                let base = (m * n_heads + h) * hd;
                for i in 0..n_rot / 2 {
                    let ff = p.freq_factors.as_ref().map_or(1.0, |f| f[i]);
                    let theta_extrap =
                        pos as f32 * p.freq_base.powf(-2.0 * i as f32 / n_rot as f32) / ff;
                    let theta_interp = p.freq_scale * theta_extrap;
                    let mut theta = theta_interp;
                    let mut mscale = y.attn_factor;
                    if y.ext_factor != 0.0 {
                        let ramp_mix = yarn_ramp(corr, i as u32) * y.ext_factor;
                        theta = theta_interp * (1.0 - ramp_mix) + theta_extrap * ramp_mix;
                        mscale *= 1.0 + 0.1 * (1.0 / p.freq_scale).ln();
                    }
                    let (c, s) = (theta.cos() * mscale, theta.sin() * mscale);
                    let (a, b) = match p.mode {
                        RopeMode::Interleaved => (base + 2 * i, base + 2 * i + 1),
                        RopeMode::Neox => (base + i, base + i + n_rot / 2),
                    };
                    let (x0, x1) = (x[a], x[b]);
                    out[a] = x0 * c - x1 * s;
                    out[b] = x0 * s + x1 * c;
                }
            }
        }
        out
    }

    fn run(p: &RopeParams, x: &[f32], positions: &[u32], n_heads: usize) -> Vec<f32> {
        let ctx = ctx();
        let rope = Rope::new(ctx, p).unwrap();
        let xb = ctx.storage_from("x", x).unwrap();
        let pb = ctx.storage_from("positions", positions).unwrap();
        let mut enc = ctx.encoder("rope test");
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            rope.encode(
                ctx,
                &mut pass,
                &xb,
                &pb,
                positions.len() as u32,
                n_heads as u32,
            );
        }
        ctx.submit("rope", enc).unwrap();
        let got: Vec<f32> = ctx.read(&xb).unwrap();
        got[..x.len()].to_vec()
    }

    /// Positions spread up to ~4000, always including 0 and 3999.
    fn positions(tokens: usize, seed: u64) -> Vec<u32> {
        let mut r = rng(seed);
        let mut pos: Vec<u32> = (0..tokens).map(|_| r.random_range(0..4000)).collect();
        pos[0] = 0;
        pos[tokens - 1] = 3999;
        pos
    }

    /// Angles reach ~4000 rad, where one f32 ulp of the angle is 2.4e-4: the
    /// GPU and the reference may round the angle (and its fused multiply-adds)
    /// differently by a few ulps.
    const TOL: f32 = 2e-3;

    fn check(what: &str, p: &RopeParams, n_heads: usize, tokens: usize, seed: u64) -> Vec<f32> {
        let mut r = rng(seed);
        let x = random_f32(&mut r, tokens * n_heads * p.head_dim as usize, 1.0);
        let pos = positions(tokens, seed + 100);
        let got = run(p, &x, &pos, n_heads);
        let want = reference(p, &x, &pos, n_heads);
        assert_close(what, &got, &want, TOL);
        // Position 0 with mscale 1 is the identity, bit for bit.
        if p.yarn.ext_factor == 0.0 && p.yarn.attn_factor == 1.0 {
            let row = n_heads * p.head_dim as usize;
            assert_eq!(&got[..row], &x[..row], "{what}: position 0 changed");
        }
        // Dims past n_rot pass through untouched.
        for (j, (g, v)) in got.iter().zip(&x).enumerate() {
            if j % p.head_dim as usize >= p.n_rot as usize {
                assert_eq!(
                    g.to_bits(),
                    v.to_bits(),
                    "{what}: dim {j} past n_rot changed"
                );
            }
        }
        got
    }

    #[test]
    fn interleaved_llama_q_and_k() {
        // SmolLM2-135M: head_dim 64, 9 q heads, 3 kv heads, base 100000.
        let p = RopeParams::new(RopeMode::Interleaved, 64, 100000.0);
        check("rope interleaved q", &p, 9, 6, 1);
        check("rope interleaved k", &p, 3, 6, 2);
    }

    #[test]
    fn neox_qwen2() {
        let p = RopeParams::new(RopeMode::Neox, 128, 1_000_000.0);
        check("rope neox", &p, 4, 5, 3);
    }

    #[test]
    fn partial_rotation_both_modes() {
        for (mode, seed) in [(RopeMode::Interleaved, 4), (RopeMode::Neox, 5)] {
            let p = RopeParams {
                n_rot: 32,
                ..RopeParams::new(mode, 64, 10000.0)
            };
            check(&format!("rope {mode:?} n_rot 32"), &p, 3, 4, seed);
        }
    }

    #[test]
    fn linear_scaling_and_freq_factors() {
        let mut r = rng(6);
        let p = RopeParams {
            freq_scale: 0.25,
            freq_factors: Some((0..32).map(|_| r.random_range(1.0..8.0)).collect()),
            ..RopeParams::new(RopeMode::Interleaved, 64, 500000.0)
        };
        check("rope freq_scale + freq_factors", &p, 2, 4, 7);
    }

    fn gpt_oss_yarn(truncate: bool) -> YarnParams {
        YarnParams {
            ext_factor: 1.0,
            attn_factor: 1.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
            n_ctx_orig: 4096,
            truncate,
        }
    }

    /// gpt-oss: neox, base 150000, YaRN factor 32 over a 4096 context; head
    /// dim 64 (the real models) and 16 (the tiny reference model), with
    /// GGML's rounded ramp ends and with gpt-oss's unrounded ones.
    #[test]
    fn yarn_gpt_oss() {
        for (head_dim, truncate, seed) in [(64, true, 8), (64, false, 9), (16, false, 10)] {
            let p = RopeParams {
                freq_scale: 1.0 / 32.0,
                yarn: gpt_oss_yarn(truncate),
                ..RopeParams::new(RopeMode::Neox, head_dim, 150000.0)
            };
            let what = format!("rope yarn gpt-oss head_dim {head_dim} truncate {truncate}");
            check(&what, &p, 4, 6, seed);
        }
    }

    /// Long-context positions (gpt-oss serves 131072 tokens): angles up to
    /// ~1.3e5 rad, where the shader's own 2*pi reduction keeps sin/cos of
    /// the f32 angle accurate.
    #[test]
    fn long_context_positions() {
        let p = RopeParams::new(RopeMode::Neox, 64, 150000.0);
        let mut r = rng(9);
        let x = random_f32(&mut r, 4 * 2 * 64, 1.0);
        let pos = vec![131071, 100000, 65537, 32768];
        let got = run(&p, &x, &pos, 2);
        // One ulp of a 1.3e5 angle is 7.8e-3; allow a couple.
        assert_close("rope long context", &got, &reference(&p, &x, &pos, 2), 2e-2);
    }

    /// The same rotation from transformers' definition of gpt-oss's YaRN,
    /// in f64: it mixes inverse frequencies rather than angles, and uses the
    /// unrounded ramp ends and `1 + 0.1 ln(factor)` as attention factor.
    /// Agreement checks our reading of GGML against the model's definition.
    #[test]
    fn yarn_matches_transformers_definition() {
        let (head_dim, n_heads, factor, base) = (16usize, 4usize, 32.0f64, 150000.0f64);
        let p = RopeParams {
            freq_scale: (1.0 / factor) as f32,
            yarn: gpt_oss_yarn(false),
            ..RopeParams::new(RopeMode::Neox, head_dim as u32, base as f32)
        };
        let mut r = rng(11);
        let x = random_f32(&mut r, 6 * n_heads * head_dim, 1.0);
        let pos = positions(6, 12);
        let got = run(&p, &x, &pos, n_heads);

        let d = head_dim as f64;
        let corr =
            |beta: f64| d * (4096.0 / (beta * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln());
        let (low, high) = (corr(32.0).max(0.0), corr(1.0).min(d - 1.0));
        let attention = 0.1 * factor.ln() + 1.0;
        let half = head_dim / 2;
        let mut want = x.clone();
        for (m, &ps) in pos.iter().enumerate() {
            for h in 0..n_heads {
                let b = (m * n_heads + h) * head_dim;
                for i in 0..half {
                    let pos_freq = base.powf(2.0 * i as f64 / d);
                    let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                    let extrap = 1.0 - ramp;
                    let inv =
                        (1.0 / (factor * pos_freq)) * (1.0 - extrap) + (1.0 / pos_freq) * extrap;
                    let angle = ps as f64 * inv;
                    let (c, s) = (angle.cos() * attention, angle.sin() * attention);
                    let (x0, x1) = (x[b + i] as f64, x[b + i + half] as f64);
                    want[b + i] = (x0 * c - x1 * s) as f32;
                    want[b + i + half] = (x0 * s + x1 * c) as f32;
                }
            }
        }
        // The f32 angle itself is only good to half an ulp (1.2e-4 at 4000).
        assert_close("rope yarn vs transformers (f64)", &got, &want, 2e-3);
    }

    #[test]
    fn yarn_corr_dims_match_hand_computed_values() {
        // n_rot * ln(n_ctx / (2 pi beta)) / (2 ln base), floored / ceiled,
        // worked out in f64: 8.0928 -> 8 and 17.3980 -> 18; 20.94 -> 20 and
        // 45.03 -> 46.
        let ggml = gpt_oss_yarn(true);
        assert_eq!(yarn_corr_dims(64, 4096, 150000.0, &ggml), [8.0, 18.0]);
        assert_eq!(yarn_corr_dims(128, 4096, 10000.0, &ggml), [20.0, 46.0]);
        // Unrounded (gpt-oss): 64 -> [8.0928, 17.3980], 16 -> [2.0232, 4.3495].
        let [lo, hi] = yarn_corr_dims(64, 4096, 150000.0, &gpt_oss_yarn(false));
        assert!((lo - 8.092779).abs() < 1e-5 && (hi - 17.398025).abs() < 1e-5);
        let [lo, hi] = yarn_corr_dims(16, 4096, 150000.0, &gpt_oss_yarn(false));
        assert!((lo - 2.023195).abs() < 1e-5 && (hi - 4.349506).abs() < 1e-5);
        // The high end is capped at n_rot - 1 (8 * ln(4096 / (2 pi 1e-6)) /
        // (2 ln 1e4) = 8.8 -> 9 -> 7) and the low end at 0.
        let wide = YarnParams {
            beta_slow: 1e-6,
            ..ggml
        };
        assert_eq!(yarn_corr_dims(8, 4096, 10000.0, &wide), [1.0, 7.0]);
        let short = YarnParams {
            n_ctx_orig: 16,
            ..ggml
        };
        assert_eq!(yarn_corr_dims(64, 16, 10000.0, &short)[0], 0.0);
        assert_eq!(yarn_ramp([8.0, 18.0], 3), 1.0);
        assert_eq!(yarn_ramp([8.0, 18.0], 13), 0.5);
        assert_eq!(yarn_ramp([8.0, 18.0], 20), 0.0);
    }

    #[test]
    fn bad_params_are_errors() {
        let good = RopeParams::new(RopeMode::Neox, 64, 10000.0);
        let bad = [
            RopeParams {
                n_rot: 33,
                ..good.clone()
            },
            RopeParams {
                n_rot: 66,
                ..good.clone()
            },
            RopeParams {
                freq_scale: 0.0,
                ..good.clone()
            },
            RopeParams {
                freq_factors: Some(vec![1.0; 31]),
                ..good.clone()
            },
            RopeParams {
                yarn: YarnParams {
                    ext_factor: 1.0,
                    ..YarnParams::none()
                },
                ..good.clone()
            },
        ];
        for p in bad {
            let err = Rope::new(ctx(), &p).err().expect("rejected");
            assert!(matches!(err, GpuError::Validation { .. }), "{err}");
        }
    }
}
