//! `matmul`: `y[M][N] = x[M][K] · W[N][K]^T (+ bias[N]) (+ y)` with W a
//! [`DeviceTensor`] in its GGML type, dequantized as it is read
//! (`shaders/matmul.wgsl` with the type's `shaders/dequant_*.wgsl` spliced
//! in). x and y are f32, row-major, token-major. A weight split into row
//! chunks takes one dispatch per chunk, each writing its own columns of y.
//!
//! Two kernels share the source, picked by [`MatmulConfig::for_device`]:
//!
//! - `main` (GPUs): `tpr` invocations split each weight row's K, each keeps
//!   one accumulator per token, and lane totals are summed in lane order.
//! - `main_rows` (CPU drivers, `tpr == 1`): each invocation owns `r` whole
//!   rows; the x tile is staged in workgroup memory so one x read serves `r`
//!   rows. On lavapipe (Mesa 25) every storage-buffer load is issued per
//!   SIMD lane with a bounds-check branch, even at a uniform address, so the
//!   cost is the number of loaded words per lane: this kernel loads each x
//!   value once per `r` rows and each weight word once, which measured
//!   1.5-2x faster than the split kernel for decode and 2x for batches.
//!
//! Batch invariance: each y value is reduced over K in an order fixed by the
//! [`MatmulConfig`] alone (units in row order per invocation, then lane
//! totals in lane order), never by M or by which tile holds the token, so
//! row m of y is bitwise the same for any batch. Decode (M = 1) and batches
//! use two pipelines built from the same source with the same split; the
//! tests check they agree bit for bit on every type.
//!
//! This module owns only the dispatch; the weight layout is
//! `crate::gpu::weights`'.

use bytemuck::{Pod, Zeroable};

use super::entry;
use crate::gguf::GgmlType;
use crate::gpu::weights::{has_scales, splice_dequant, unit_elems, DeviceTensor};
use crate::gpu::{GpuContext, GpuError};

const SOURCE: &str = include_str!("../../../shaders/matmul.wgsl");

/// How the kernel splits the work. Fixed per pipeline; results depend on it
/// (the reduction order), so every shard of one model must use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulConfig {
    /// Invocations per workgroup (at most 256).
    pub wg: u32,
    /// Invocations per weight row (divides `wg`).
    pub tpr: u32,
    /// Token rows per workgroup in batches (at most 8).
    pub tm: u32,
    /// Rows per invocation for the row kernel (`main_rows`, used when
    /// `tpr` is 1); at most 8.
    pub r: u32,
}

impl MatmulConfig {
    /// The split for weights of type `ty` on this device. On a GPU, a warp
    /// per row, so loads coalesce and enough invocations are in flight. On
    /// a CPU driver (lavapipe), where every load is issued per lane (module
    /// docs), the row kernel for the 32-value types; for the K-quants (64
    /// values per unit) the row kernel measured 2x slower in decode than two
    /// lanes per row, so those use the split kernel.
    pub fn for_device(ctx: &GpuContext, ty: GgmlType) -> Self {
        if ctx.info.device_type != wgpu::DeviceType::Cpu {
            Self {
                wg: 128,
                tpr: 32,
                tm: 8,
                r: 1,
            }
        } else if unit_elems(ty) > 32 {
            Self {
                wg: 64,
                tpr: 2,
                tm: 8,
                r: 1,
            }
        } else {
            Self {
                wg: 32,
                tpr: 1,
                tm: 8,
                r: 4,
            }
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    pub(super) m: u32,
    pub(super) k4: u32,
    pub(super) rows: u32,
    pub(super) n0: u32,
    pub(super) ldy: u32,
    pub(super) upr: u32,
    pub(super) flags: u32,
    pub(super) groups_x: u32,
}

const FLAG_BIAS: u32 = 1;
const FLAG_ACCUMULATE: u32 = 2;

/// The matmul for one weight type.
pub struct Matmul {
    ty: GgmlType,
    config: MatmulConfig,
    /// Built with TM = 1, for decode.
    single: wgpu::ComputePipeline,
    /// Built with TM = config.tm.
    batched: wgpu::ComputePipeline,
    /// Bound as the bias when there is none.
    dummy: wgpu::Buffer,
}

fn bad_call(message: String) -> GpuError {
    GpuError::Validation {
        what: "matmul".into(),
        message,
    }
}

impl Matmul {
    pub fn new(ctx: &GpuContext, ty: GgmlType) -> Result<Self, GpuError> {
        Self::with_config(ctx, ty, MatmulConfig::for_device(ctx, ty))
    }

    pub fn with_config(
        ctx: &GpuContext,
        ty: GgmlType,
        config: MatmulConfig,
    ) -> Result<Self, GpuError> {
        let MatmulConfig { wg, tpr, tm, r } = config;
        if !(1..=256).contains(&wg)
            || tpr == 0
            || !wg.is_multiple_of(tpr)
            || !(1..=8).contains(&tm)
            || !(1..=8).contains(&r)
        {
            return Err(bad_call(format!(
                "config {config:?}: need 1 <= wg <= 256, tpr dividing wg, 1 <= tm <= 8, 1 <= r <= 8"
            )));
        }
        let label = format!("matmul {ty}");
        let module = ctx.shader_module(&label, &splice_dequant("matmul.wgsl", SOURCE, ty)?)?;
        let entry = if tpr == 1 { "main_rows" } else { "main" };
        let pipe = |tm: u32| {
            let mut consts = vec![("WG", f64::from(wg)), ("TM", f64::from(tm))];
            if tpr == 1 {
                consts.push(("R", f64::from(r)));
            } else {
                consts.push(("TPR", f64::from(tpr)));
            }
            ctx.compute_pipeline(&format!("{label} tm {tm}"), &module, entry, &consts)
        };
        Ok(Self {
            ty,
            config,
            single: pipe(1)?,
            batched: pipe(tm)?,
            dummy: ctx.storage("matmul no bias", 16)?,
        })
    }

    pub fn weight_type(&self) -> GgmlType {
        self.ty
    }

    pub fn config(&self) -> MatmulConfig {
        self.config
    }

    /// Records `y[m][n] = Σ_k x[m][k] · w[n][k]` for `m < m_rows`, `n < N`
    /// (`N = w.n_rows`, `K = w.row_len`), plus `bias[n]` if given, added
    /// into y's old value if `accumulate`. `x` holds at least `m_rows * K`
    /// f32, `y` at least `m_rows * N`, `bias` at least `N`; y must not alias
    /// x. Hot path: no error scope (errors surface at the scoped submit);
    /// the `Err` cases are shape mistakes caught before recording.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        w: &DeviceTensor,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        m_rows: u32,
        bias: Option<&wgpu::Buffer>,
        accumulate: bool,
    ) -> Result<(), GpuError> {
        if w.ty != self.ty {
            return Err(bad_call(format!(
                "weight {} is {} but this matmul was built for {}",
                w.name, w.ty, self.ty
            )));
        }
        if m_rows == 0 {
            return Ok(());
        }
        let (k, n) = (u64::from(w.row_len), u64::from(w.n_rows));
        let m = u64::from(m_rows);
        let need = |what: &str, buf: &wgpu::Buffer, elems: u64| {
            if buf.size() < elems * 4 {
                Err(bad_call(format!(
                    "{what} for {} ({m} x [{k} -> {n}]) needs {} bytes, buffer has {}",
                    w.name,
                    elems * 4,
                    buf.size()
                )))
            } else {
                Ok(())
            }
        };
        need("x", x, m * k)?;
        need("y", y, m * n)?;
        if let Some(b) = bias {
            need("bias", b, n)?;
        }
        let (pipeline, tm) = if m_rows == 1 {
            (&self.single, 1)
        } else {
            (&self.batched, self.config.tm)
        };
        let groups_z = m_rows.div_ceil(tm);
        let max_dim = ctx.caps.max_workgroups_per_dim.max(1);
        if groups_z > max_dim {
            return Err(bad_call(format!(
                "{m_rows} token rows is more than one dispatch allows ({}); split the batch",
                u64::from(max_dim) * u64::from(tm)
            )));
        }
        let flags = if bias.is_some() { FLAG_BIAS } else { 0 }
            | if accumulate { FLAG_ACCUMULATE } else { 0 };
        let rows_per_group = if self.config.tpr == 1 {
            self.config.wg * self.config.r
        } else {
            self.config.wg / self.config.tpr
        };
        for chunk in &w.chunks {
            let rows = chunk.rows.end - chunk.rows.start;
            let groups = rows.div_ceil(rows_per_group);
            let gx = groups.min(max_dim);
            let gy = groups.div_ceil(gx);
            let params = Params {
                m: m_rows,
                k4: w.row_len / 4,
                rows,
                n0: chunk.rows.start,
                ldy: w.n_rows,
                upr: w.units_per_row(),
                flags,
                groups_x: gx,
            };
            let mut entries = vec![
                entry(1, &chunk.quants),
                entry(3, x),
                entry(4, y),
                entry(5, bias.unwrap_or(&self.dummy)),
            ];
            if has_scales(self.ty) {
                if let Some(s) = &chunk.scales {
                    entries.push(entry(2, s));
                }
            }
            let groups = [gx, gy, groups_z];
            ctx.dispatch(pass, "matmul", pipeline, &params, &entries, groups);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::quant;
    use crate::gpu::testing::{ctx, random_f32, rng, POISON};
    use crate::gpu::weights::quant_bytes;

    /// Quantized random weights [n][k] and their CPU dequantization.
    fn weights(ty: GgmlType, k: usize, n: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
        let vals = random_f32(&mut rng(seed), k * n, 1.0);
        let bytes = quant::quantize(ty, &vals);
        let deq = quant::dequantize_vec(ty, &bytes, k * n);
        (bytes, deq)
    }

    struct Run<'a> {
        mm: &'a Matmul,
        w: &'a DeviceTensor,
        bias: Option<&'a [f32]>,
        accumulate_onto: Option<&'a [f32]>,
    }

    impl Run<'_> {
        fn go(&self, x: &[f32], m: usize) -> Vec<f32> {
            let ctx = ctx();
            let n = self.w.n_rows as usize;
            let xb = ctx.storage_from("x", x).unwrap();
            let init = match self.accumulate_onto {
                Some(y0) => y0.to_vec(),
                None => vec![POISON; m * n],
            };
            let yb = ctx.storage_from("y", &init).unwrap();
            let bb = self.bias.map(|b| ctx.storage_from("bias", b).unwrap());
            let mut enc = ctx.encoder("matmul test");
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                self.mm
                    .encode(
                        ctx,
                        &mut pass,
                        self.w,
                        &xb,
                        &yb,
                        m as u32,
                        bb.as_ref(),
                        self.accumulate_onto.is_some(),
                    )
                    .unwrap();
            }
            ctx.submit("matmul test", enc).unwrap();
            ctx.read_range(&yb, 0, (m * n * 4) as u64).unwrap()
        }
    }

    /// Max over outputs of |got - want| / Σ_k |x w| (the scale of the f32
    /// rounding), with NaN counted as infinite.
    fn rel_err(got: &[f32], x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> f64 {
        let mut worst = 0f64;
        for i in 0..m {
            for j in 0..n {
                let xr = &x[i * k..(i + 1) * k];
                let wr = &w[j * k..(j + 1) * k];
                let want: f64 = xr.iter().zip(wr).map(|(&a, &b)| a as f64 * b as f64).sum();
                let mag: f64 = xr
                    .iter()
                    .zip(wr)
                    .map(|(&a, &b)| (a as f64 * b as f64).abs())
                    .sum();
                let e = (got[i * n + j] as f64 - want).abs() / mag.max(1e-30);
                worst = worst.max(if e.is_nan() { f64::INFINITY } else { e });
            }
        }
        worst
    }

    /// The lavapipe defaults, the GPU default, and odd splits for both
    /// kernels (uneven rows and tokens per workgroup, a 3-lane reduction).
    fn configs() -> Vec<MatmulConfig> {
        let c = |wg, tpr, tm, r| MatmulConfig { wg, tpr, tm, r };
        vec![
            c(32, 1, 8, 4),
            c(64, 2, 8, 1),
            c(128, 32, 8, 1),
            c(16, 1, 5, 3),
            c(48, 3, 5, 1),
        ]
    }

    /// One pipeline pair per (config, type) for the whole test binary:
    /// compiling is most of these tests' time on lavapipe.
    fn cached(cfg: MatmulConfig, ty: GgmlType) -> std::sync::Arc<Matmul> {
        type Cache = std::sync::Mutex<Vec<(MatmulConfig, GgmlType, std::sync::Arc<Matmul>)>>;
        static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let mut list = cache.lock().unwrap();
        if let Some((_, _, mm)) = list.iter().find(|(c, t, _)| *c == cfg && *t == ty) {
            return mm.clone();
        }
        let mm = std::sync::Arc::new(Matmul::with_config(ctx(), ty, cfg).unwrap());
        list.push((cfg, ty, mm.clone()));
        mm
    }

    fn shapes(ty: GgmlType) -> [usize; 2] {
        if ty.block_elems() == 256 {
            [256, 512]
        } else {
            [64, 96]
        }
    }

    /// The (config, type) pairs the kernel tests run: every type with both
    /// lavapipe defaults (the row kernel and the 2-lane split), and a
    /// 32-value and a 256-value type with the other configs (their work
    /// splits and reductions; the dequantizers are shared). Each pair
    /// compiles two pipelines, which is what makes these tests slow on
    /// lavapipe.
    fn cases() -> Vec<(MatmulConfig, GgmlType)> {
        let cfgs = configs();
        let mut out = Vec::new();
        for &cfg in &cfgs[..2] {
            out.extend(GgmlType::ALL.iter().map(|&t| (cfg, t)));
        }
        for &cfg in &cfgs[2..] {
            out.push((cfg, GgmlType::Q8_0));
            out.push((cfg, GgmlType::Q4K));
        }
        out
    }

    /// Every type, M in {1, 3, 8, 13}, two K each, N = 70 (not a multiple
    /// of any config's rows per workgroup), against f64 dot products of the
    /// CPU dequantization.
    #[test]
    fn matches_cpu_reference_for_every_type() {
        let ctx = ctx();
        let n = 70;
        for (cfg, ty) in cases() {
            {
                let mm = cached(cfg, ty);
                let mut worst = 0f64;
                for k in shapes(ty) {
                    let (bytes, wd) = weights(ty, k, n, 10 + k as u64);
                    let w = DeviceTensor::upload(ctx, "w", ty, [k, n], &bytes).unwrap();
                    for m in [1, 3, 8, 13] {
                        let x = random_f32(&mut rng(m as u64), m * k, 1.0);
                        let run = Run {
                            mm: &mm,
                            w: &w,
                            bias: None,
                            accumulate_onto: None,
                        };
                        let got = run.go(&x, m);
                        let e = rel_err(&got, &x, &wd, m, k, n);
                        assert!(e < 2e-6, "{ty} {cfg:?} k {k} m {m}: relative error {e:e}");
                        worst = worst.max(e);
                    }
                }
                eprintln!("max error {ty} {cfg:?}: {worst:.2e} of sum |x*w|");
            }
        }
    }

    /// Row m of a batched run is bitwise the M = 1 result for that row, for
    /// each type and several batch sizes (so the row sits in different tile
    /// slots and the decode pipeline is compared with the batched one).
    #[test]
    fn batch_invariant_bitwise() {
        let ctx = ctx();
        let n = 70;
        for (cfg, ty) in cases() {
            {
                let mm = cached(cfg, ty);
                let k = shapes(ty)[0];
                let (bytes, _) = weights(ty, k, n, 3);
                let w = DeviceTensor::upload(ctx, "w", ty, [k, n], &bytes).unwrap();
                let x = random_f32(&mut rng(99), 13 * k, 1.0);
                let run = Run {
                    mm: &mm,
                    w: &w,
                    bias: None,
                    accumulate_onto: None,
                };
                let full = run.go(&x, 13);
                let part = run.go(&x[..3 * k], 3);
                for row in [0, 2, 9, 12] {
                    let one = run.go(&x[row * k..(row + 1) * k], 1);
                    let same = one
                        .iter()
                        .zip(&full[row * n..(row + 1) * n])
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{ty} {cfg:?}: row {row} of M=13 differs from M=1");
                    if row < 3 {
                        assert_eq!(
                            bits(&part[row * n..(row + 1) * n]),
                            bits(&one),
                            "{ty} {cfg:?}: row {row} of M=3 differs from M=1"
                        );
                    }
                }
            }
        }
    }

    /// Rows longer than the row kernel's x staging (so x is staged in
    /// several slices, a different number for M = 1 and for batches) still
    /// match the reference, and M = 1 still matches the batch bitwise.
    #[test]
    fn long_rows_staged_in_slices() {
        let (k, n, m) = (2304, 20, 11);
        let cfgs = configs();
        for (cfg, ty) in [
            (cfgs[0], GgmlType::Q8_0),
            (cfgs[0], GgmlType::Q4K),
            (cfgs[3], GgmlType::Q4_1),
        ] {
            let mm = cached(cfg, ty);
            let (bytes, wd) = weights(ty, k, n, 21);
            let w = DeviceTensor::upload(ctx(), "w", ty, [k, n], &bytes).unwrap();
            let x = random_f32(&mut rng(22), m * k, 1.0);
            let run = Run {
                mm: &mm,
                w: &w,
                bias: None,
                accumulate_onto: None,
            };
            let full = run.go(&x, m);
            let e = rel_err(&full, &x, &wd, m, k, n);
            assert!(e < 2e-6, "{ty} {cfg:?}: relative error {e:e}");
            let last = run.go(&x[(m - 1) * k..], 1);
            assert_eq!(bits(&last), bits(&full[(m - 1) * n..]), "{ty} {cfg:?}");
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|f| f.to_bits()).collect()
    }

    /// A weight split into row chunks gives bitwise the unsplit result.
    #[test]
    fn split_weight_matches_unsplit() {
        let ctx = ctx();
        let n = 70;
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q6K,
            GgmlType::Q3K,
            GgmlType::Q2K,
            GgmlType::MXFP4,
            GgmlType::F16,
        ] {
            let mm = Matmul::new(ctx, ty).unwrap();
            // An odd number of blocks per row and per chunk.
            let k = if ty.block_elems() == 256 { 256 } else { 96 };
            let (bytes, _) = weights(ty, k, n, 5);
            let whole = DeviceTensor::upload(ctx, "w", ty, [k, n], &bytes).unwrap();
            // About 9 rows per chunk: an odd count, so Q5_0's block pairs and
            // the f16 scale pairs restart mid-pair at chunk boundaries.
            let limit = (quant_bytes(ty, k / ty.block_elems()) * 9) as u64;
            let split =
                DeviceTensor::upload_with_limit(ctx, "w", ty, [k, n], &bytes, limit).unwrap();
            assert!(
                split.chunks.len() >= 7,
                "{ty}: {} chunks",
                split.chunks.len()
            );
            let x = random_f32(&mut rng(4), 5 * k, 1.0);
            for m in [1, 5] {
                let run = |w: &DeviceTensor| {
                    Run {
                        mm: &mm,
                        w,
                        bias: None,
                        accumulate_onto: None,
                    }
                    .go(&x[..m * k], m)
                };
                assert_eq!(bits(&run(&split)), bits(&run(&whole)), "{ty} m {m}");
            }
        }
    }

    /// Bias and accumulate: y = y0 + (x·W^T + b), in both pipelines.
    #[test]
    fn bias_and_accumulate() {
        let ctx = ctx();
        let (k, n) = (96, 70);
        let ty = GgmlType::Q4_0;
        let mm = Matmul::new(ctx, ty).unwrap();
        let (bytes, wd) = weights(ty, k, n, 8);
        let w = DeviceTensor::upload(ctx, "w", ty, [k, n], &bytes).unwrap();
        let bias = random_f32(&mut rng(6), n, 2.0);
        for m in [1, 4] {
            let x = random_f32(&mut rng(7), m * k, 1.0);
            let y0 = random_f32(&mut rng(8), m * n, 3.0);
            let plain = Run {
                mm: &mm,
                w: &w,
                bias: None,
                accumulate_onto: None,
            }
            .go(&x, m);
            let with_bias = Run {
                mm: &mm,
                w: &w,
                bias: Some(&bias),
                accumulate_onto: None,
            }
            .go(&x, m);
            let accumulated = Run {
                mm: &mm,
                w: &w,
                bias: Some(&bias),
                accumulate_onto: Some(&y0),
            }
            .go(&x, m);
            for i in 0..m * n {
                assert_eq!(with_bias[i], plain[i] + bias[i % n], "bias at {i}");
                assert_eq!(
                    accumulated[i],
                    y0[i] + (plain[i] + bias[i % n]),
                    "acc at {i}"
                );
            }
            assert!(rel_err(&plain, &x, &wd, m, k, n) < 2e-6);
        }
    }

    #[test]
    fn shape_mistakes_are_errors() {
        let ctx = ctx();
        let mm = Matmul::new(ctx, GgmlType::Q8_0).unwrap();
        let (bytes, _) = weights(GgmlType::Q4_0, 64, 4, 1);
        let w = DeviceTensor::upload(ctx, "w", GgmlType::Q4_0, [64, 4], &bytes).unwrap();
        let x = ctx.storage("x", 64 * 4).unwrap();
        let y = ctx.storage("y", 16).unwrap();
        let mut enc = ctx.encoder("t");
        let mut pass = enc.begin_compute_pass(&Default::default());
        let e = mm
            .encode(ctx, &mut pass, &w, &x, &y, 1, None, false)
            .unwrap_err();
        assert!(e.to_string().contains("built for Q8_0"), "{e}");
        let mm = Matmul::new(ctx, GgmlType::Q4_0).unwrap();
        let e = mm
            .encode(ctx, &mut pass, &w, &x, &y, 2, None, false)
            .unwrap_err();
        assert!(e.to_string().contains("needs 512 bytes"), "{e}");
    }

    /// Timings on SmolLM2-135M's shapes (decode projections, the tied
    /// output matrix, a 64-token prefill); run with
    /// `cargo test --lib matmul::tests::decode_timing -- --ignored --nocapture`.
    /// `WGSERVE_MM_CFG=wg,tpr,tm,r` tries another split, `WGSERVE_MM_CASE=i`
    /// runs only case i.
    #[test]
    #[ignore]
    fn decode_timing() {
        let ctx = ctx();
        let cases = [
            (GgmlType::Q4_1, 576, 1536, 1),
            (GgmlType::Q4_1, 1536, 576, 1),
            (GgmlType::Q8_0, 576, 49152, 1),
            (GgmlType::Q4K, 2048, 2048, 1),
            (GgmlType::Q4_1, 576, 1536, 64),
            (GgmlType::Q4K, 1024, 1024, 64),
        ];
        let cfg = std::env::var("WGSERVE_MM_CFG").ok().map(|v| {
            let p: Vec<u32> = v.split(',').map(|x| x.parse().unwrap()).collect();
            MatmulConfig {
                wg: p[0],
                tpr: p[1],
                tm: p[2],
                r: p[3],
            }
        });
        let only: Option<usize> = std::env::var("WGSERVE_MM_CASE")
            .ok()
            .map(|v| v.parse().unwrap());
        for (ci, (ty, k, n, m)) in cases.into_iter().enumerate() {
            if only.is_some_and(|o| o != ci) {
                continue;
            }
            let mm = Matmul::with_config(ctx, ty, cfg.unwrap_or(MatmulConfig::for_device(ctx, ty)))
                .unwrap();
            let vals = random_f32(&mut rng(1), k * n, 1.0);
            let w =
                DeviceTensor::upload(ctx, "w", ty, [k, n], &quant::quantize(ty, &vals)).unwrap();
            let x = ctx
                .storage_from("x", &random_f32(&mut rng(2), m * k, 1.0))
                .unwrap();
            let y = ctx.storage("y", (m * n * 4) as u64).unwrap();
            // CPU time of the whole process (lavapipe's worker threads
            // included) is steadier than wall time on a shared machine.
            fn cpu_secs() -> f64 {
                let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
                let after = stat.rsplit(')').next().unwrap_or("");
                let f: Vec<f64> = after
                    .split_whitespace()
                    .map(|v| v.parse().unwrap_or(0.0))
                    .collect();
                if f.len() > 13 {
                    (f[11] + f[12]) / 100.0
                } else {
                    0.0
                }
            }
            let reps = (2e8 / (k * n * m) as f64).clamp(2.0, 200.0) as usize;
            let mut best = f64::INFINITY;
            let mut cpu = f64::INFINITY;
            for _ in 0..3 {
                let c0 = cpu_secs();
                let t = std::time::Instant::now();
                let mut enc = ctx.encoder("bench");
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    for _ in 0..reps {
                        mm.encode(ctx, &mut pass, &w, &x, &y, m as u32, None, false)
                            .unwrap();
                    }
                }
                ctx.submit("bench", enc).unwrap();
                let _: Vec<f32> = ctx.read_range(&y, 0, 16).unwrap();
                best = best.min(t.elapsed().as_secs_f64() / reps as f64);
                cpu = cpu.min((cpu_secs() - c0) / reps as f64);
            }
            let gb = w.device_bytes() as f64 / best / 1e9;
            eprintln!(
                "{ty} m {m} [{k} -> {n}]: {:.3} ms wall, {:.3} ms CPU per matmul \
                 ({gb:.2} GB/s of weights)",
                best * 1e3,
                cpu * 1e3
            );
        }
    }
}
