//! `moe`: the mixture-of-experts kernels of gpt-oss, and the layout of an
//! expert stack on the device.
//!
//! - [`MoeRouter`] (`shaders/moe_router.wgsl`): from router logits `[M][E]`
//!   f32, each token's `K` experts with the largest logits (ties to the lower
//!   id) as `ids [M][K]` u32, and their weights, a softmax over those `K`
//!   logits only, as `weights [M][K]` f32.
//! - [`MoeMatmul`] (`shaders/moe_matmul.wgsl`): a matmul whose weight is an
//!   [`ExpertStack`] `W[E][N][K]` and whose rows pick their expert through
//!   `ids`. Per-slot mode writes `y [M][S][N]` (the gate and up projections);
//!   combine mode adds `Σ_s weights[m][s] · (x[m][s] · W[ids[m][s]]ᵀ + b)`
//!   into `y [M][N]` (the down projection, straight into the residual).
//!   The weight stays in its GGML type, read through the same
//!   `shaders/dequant_*.wgsl` as the dense matmul.
//!
//! Batch invariance: one invocation owns one output value and reduces it in
//! an order fixed by the shapes alone (units in order, slots in order), so a
//! token's result does not depend on the other rows of the batch.

use bytemuck::{Pod, Zeroable};

use super::{entry, grid_2d};
use crate::gguf::GgmlType;
use crate::gpu::shader_include::expand;
use crate::gpu::weights::{has_scales, splice_dequant, DeviceTensor};
use crate::gpu::{GpuContext, GpuError};

const ROUTER: &str = include_str!("../../../shaders/moe_router.wgsl");
const MATMUL: &str = include_str!("../../../shaders/moe_matmul.wgsl");
const ROUTER_WG: u32 = 64;
const MATMUL_WG: u32 = 64;
/// `MAX_K` of moe_router.wgsl: the most experts a token may use.
pub const MAX_EXPERTS_USED: u32 = 8;

fn bad_call(what: &str, message: String) -> GpuError {
    GpuError::Validation {
        what: what.into(),
        message,
    }
}

/// A stack of `n_experts` matrices `[rows][row_len]` of one GGML type (a
/// GGUF `*_exps` tensor, dims `[row_len, rows, n_experts]`), split into
/// groups of whole experts so each group's arrays fit one storage binding.
/// Each group is a one-chunk [`DeviceTensor`] whose rows are its experts'
/// rows in order.
#[derive(Debug)]
pub struct ExpertStack {
    pub name: String,
    pub ty: GgmlType,
    pub n_experts: u32,
    /// Rows per expert (the matmul's N).
    pub rows: u32,
    /// Values per row (the matmul's K).
    pub row_len: u32,
    /// `(first expert, its experts)` in expert order.
    pub groups: Vec<(u32, DeviceTensor)>,
}

impl ExpertStack {
    /// Uploads `bytes` (GGUF layout, expert-major) of `n_experts` matrices
    /// `[rows][row_len]` of type `ty`.
    pub fn upload(
        ctx: &GpuContext,
        name: &str,
        ty: GgmlType,
        [row_len, rows, n_experts]: [usize; 3],
        bytes: &[u8],
    ) -> Result<Self, GpuError> {
        let limit = ctx.caps.max_storage_binding.min(ctx.caps.max_buffer_size);
        Self::upload_with_limit(ctx, name, ty, [row_len, rows, n_experts], bytes, limit)
    }

    /// As [`ExpertStack::upload`] with groups of at most `max_group_bytes`
    /// per array (tests use a small value to exercise the split).
    pub fn upload_with_limit(
        ctx: &GpuContext,
        name: &str,
        ty: GgmlType,
        [row_len, rows, n_experts]: [usize; 3],
        bytes: &[u8],
        max_group_bytes: u64,
    ) -> Result<Self, GpuError> {
        let invalid = |message: String| bad_call(&format!("expert stack {name}"), message);
        if n_experts == 0 || rows == 0 || row_len == 0 || !row_len.is_multiple_of(ty.block_elems())
        {
            return Err(invalid(format!(
                "shape [{row_len}, {rows}, {n_experts}] of {ty} is empty or splits a block"
            )));
        }
        let expert_bytes = row_len / ty.block_elems() * ty.block_bytes() * rows;
        if Some(bytes.len()) != expert_bytes.checked_mul(n_experts) {
            return Err(invalid(format!(
                "{} bytes given, but [{row_len}, {rows}, {n_experts}] of {ty} takes {}",
                bytes.len(),
                expert_bytes as u128 * n_experts as u128
            )));
        }
        if u32::try_from(rows * n_experts).is_err() {
            return Err(invalid("more rows than 32-bit indexing allows".into()));
        }
        // The repacked arrays together take exactly the GGUF bytes; one word
        // of slack for the scale array's rounding.
        let per_group = ((max_group_bytes.saturating_sub(4)) / expert_bytes as u64)
            .clamp(1, n_experts as u64) as usize;
        let mut groups = Vec::new();
        let mut e0 = 0;
        while e0 < n_experts {
            let e1 = (e0 + per_group).min(n_experts);
            let t = DeviceTensor::upload_with_limit(
                ctx,
                &format!("{name} experts {e0}..{e1}"),
                ty,
                [row_len, rows * (e1 - e0)],
                &bytes[e0 * expert_bytes..e1 * expert_bytes],
                max_group_bytes,
            )?;
            if t.chunks.len() != 1 {
                return Err(GpuError::BindingTooLarge {
                    label: format!("{name} (one expert)"),
                    bytes: expert_bytes as u64,
                    max: max_group_bytes,
                });
            }
            groups.push((e0 as u32, t));
            e0 = e1;
        }
        Ok(Self {
            name: name.to_string(),
            ty,
            n_experts: n_experts as u32,
            rows: rows as u32,
            row_len: row_len as u32,
            groups,
        })
    }

    pub fn device_bytes(&self) -> u64 {
        self.groups.iter().map(|(_, t)| t.device_bytes()).sum()
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct RouterParams {
    pub(super) m: u32,
    pub(super) n_experts: u32,
    pub(super) k: u32,
    pub(super) groups_x: u32,
}

/// Top-k routing with a softmax over the chosen logits.
pub struct MoeRouter {
    pipeline: wgpu::ComputePipeline,
}

impl MoeRouter {
    pub fn new(ctx: &GpuContext) -> Result<Self, GpuError> {
        let module = ctx.shader_module("moe_router", &expand("moe_router.wgsl", ROUTER)?)?;
        let pipeline = ctx.compute_pipeline(
            "moe_router",
            &module,
            "main",
            &[("WG", f64::from(ROUTER_WG))],
        )?;
        Ok(Self { pipeline })
    }

    /// Records the routing of `m` tokens: `logits [m][n_experts]` in,
    /// `ids [m][k]` and `weights [m][k]` out.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        logits: &wgpu::Buffer,
        ids: &wgpu::Buffer,
        weights: &wgpu::Buffer,
        m: u32,
        n_experts: u32,
        k: u32,
    ) -> Result<(), GpuError> {
        if !(1..=MAX_EXPERTS_USED).contains(&k) || k > n_experts {
            return Err(bad_call(
                "moe_router",
                format!("{k} experts per token of {n_experts}: need 1 <= k <= min(E, {MAX_EXPERTS_USED})"),
            ));
        }
        if m == 0 {
            return Ok(());
        }
        let (gx, gy) = grid_2d(ctx, m.div_ceil(ROUTER_WG));
        let params = RouterParams {
            m,
            n_experts,
            k,
            groups_x: gx,
        };
        let entries = [entry(1, logits), entry(2, ids), entry(3, weights)];
        ctx.dispatch(
            pass,
            "moe_router",
            &self.pipeline,
            &params,
            &entries,
            [gx, gy, 1],
        );
        Ok(())
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct MatmulParams {
    pub(super) m: u32,
    pub(super) k_used: u32,
    pub(super) k4: u32,
    pub(super) rows: u32,
    pub(super) upr: u32,
    pub(super) e0: u32,
    pub(super) e1: u32,
    pub(super) flags: u32,
}

const FLAG_X_PER_SLOT: u32 = 1;
const FLAG_COMBINE: u32 = 2;
const FLAG_BIAS: u32 = 4;

/// A step's routing, as [`MoeRouter`] wrote it.
#[derive(Clone, Copy)]
pub struct Routing<'a> {
    /// Tokens.
    pub m: u32,
    /// Experts per token (slots).
    pub k_used: u32,
    /// `[m][k_used]` u32 expert ids.
    pub ids: &'a wgpu::Buffer,
    /// `[m][k_used]` f32 weights (read in combine mode only).
    pub weights: &'a wgpu::Buffer,
}

/// What [`MoeMatmul::encode`] reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoeOutput {
    /// `y [m][k_used][N]`, one row per (token, slot).
    PerSlot,
    /// `y [m][N] += Σ_s weights[m][s] · row(m, s)`.
    Combine,
}

/// The expert matmul for one weight type.
pub struct MoeMatmul {
    ty: GgmlType,
    pipeline: wgpu::ComputePipeline,
    /// Output rows per workgroup.
    rows_per_group: u32,
    /// Bound as the bias when there is none.
    dummy: wgpu::Buffer,
}

impl MoeMatmul {
    /// The variant for this device: on a GPU a warp's worth of lanes per
    /// output row (coalesced weight loads), on a CPU driver one invocation
    /// per row (every load is issued per lane there; see `matmul.rs`).
    pub fn new(ctx: &GpuContext, ty: GgmlType) -> Result<Self, GpuError> {
        if ctx.info.device_type == wgpu::DeviceType::Cpu {
            Self::with_lanes(ctx, ty, MATMUL_WG, 1)
        } else {
            Self::with_lanes(ctx, ty, 128, 32)
        }
    }

    /// `tpr` invocations per output row in workgroups of `wg` (`tpr` 1:
    /// the row-per-invocation kernel).
    pub fn with_lanes(ctx: &GpuContext, ty: GgmlType, wg: u32, tpr: u32) -> Result<Self, GpuError> {
        if !(1..=256).contains(&wg) || tpr == 0 || !wg.is_multiple_of(tpr) {
            return Err(bad_call(
                "moe_matmul",
                format!("wg {wg}, tpr {tpr}: need 1 <= wg <= 256 and tpr dividing wg"),
            ));
        }
        let label = format!("moe_matmul {ty} tpr {tpr}");
        let module = ctx.shader_module(&label, &splice_dequant("moe_matmul.wgsl", MATMUL, ty)?)?;
        let pipeline = if tpr == 1 {
            ctx.compute_pipeline(&label, &module, "main", &[("WG", f64::from(wg))])?
        } else {
            let consts = [("WG", f64::from(wg)), ("TPR", f64::from(tpr))];
            ctx.compute_pipeline(&label, &module, "main_lanes", &consts)?
        };
        Ok(Self {
            ty,
            pipeline,
            rows_per_group: wg / tpr,
            dummy: ctx.storage("moe_matmul no bias", 16)?,
        })
    }

    /// The shape checks of [`Self::encode`], in order, before anything is
    /// recorded; returns the dispatch grid (row tiles, rows).
    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        ctx: &GpuContext,
        w: &ExpertStack,
        route: &Routing<'_>,
        x: &wgpu::Buffer,
        x_per_slot: bool,
        y: &wgpu::Buffer,
        out: MoeOutput,
        bias: Option<&wgpu::Buffer>,
    ) -> Result<(u64, u64), GpuError> {
        let fail = |message: String| Err(bad_call(&format!("moe_matmul {}", w.name), message));
        if w.ty != self.ty {
            return fail(format!(
                "weight is {} but this kernel was built for {}",
                w.ty, self.ty
            ));
        }
        if route.m == 0 {
            return Ok((0, 0));
        }
        let (m, s, k, n) = (
            u64::from(route.m),
            u64::from(route.k_used),
            u64::from(w.row_len),
            u64::from(w.rows),
        );
        let x_rows = if x_per_slot { m * s } else { m };
        let y_rows = if out == MoeOutput::PerSlot { m * s } else { m };
        for (what, buf, elems) in [
            ("x", x, x_rows * k),
            ("y", y, y_rows * n),
            ("ids", route.ids, m * s),
            ("weights", route.weights, m * s),
            (
                "bias",
                bias.unwrap_or(&self.dummy),
                if bias.is_some() {
                    n * u64::from(w.n_experts)
                } else {
                    0
                },
            ),
        ] {
            if buf.size() < elems * 4 {
                return fail(format!(
                    "{what} needs {} bytes for {m} tokens x {s} experts, buffer has {}",
                    elems * 4,
                    buf.size()
                ));
            }
        }
        let grid_y = if out == MoeOutput::PerSlot { m * s } else { m };
        let max = u64::from(ctx.caps.max_workgroups_per_dim.max(1));
        let gx = u64::from(w.rows).div_ceil(u64::from(self.rows_per_group));
        if grid_y > max || gx > max {
            return fail(format!(
                "{grid_y} rows of {gx} tiles exceed one dispatch ({max} per dimension); split the batch"
            ));
        }
        Ok((gx, grid_y))
    }

    /// Records the expert matmul. `x` is `[m][K]` (every slot reads its
    /// token's row) or, with `x_per_slot`, `[m][k_used][K]`; `bias` is
    /// `[E][N]` f32. `y` must not alias `x`. Shape mistakes are `Err`s
    /// before anything is recorded; device errors surface at the submit.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        w: &ExpertStack,
        route: &Routing<'_>,
        x: &wgpu::Buffer,
        x_per_slot: bool,
        y: &wgpu::Buffer,
        out: MoeOutput,
        bias: Option<&wgpu::Buffer>,
    ) -> Result<(), GpuError> {
        let (gx, grid_y) = self.check(ctx, w, route, x, x_per_slot, y, out, bias)?;
        if route.m == 0 {
            return Ok(());
        }
        let flags = if x_per_slot { FLAG_X_PER_SLOT } else { 0 }
            | if out == MoeOutput::Combine {
                FLAG_COMBINE
            } else {
                0
            }
            | if bias.is_some() { FLAG_BIAS } else { 0 };
        for (e0, t) in &w.groups {
            let chunk = &t.chunks[0];
            let params = MatmulParams {
                m: route.m,
                k_used: route.k_used,
                k4: w.row_len / 4,
                rows: w.rows,
                upr: t.units_per_row(),
                e0: *e0,
                e1: e0 + t.n_rows / w.rows,
                flags,
            };
            let mut entries = vec![
                entry(1, &chunk.quants),
                entry(3, x),
                entry(4, y),
                entry(5, bias.unwrap_or(&self.dummy)),
                entry(6, route.ids),
                entry(7, route.weights),
            ];
            if has_scales(self.ty) {
                if let Some(sc) = &chunk.scales {
                    entries.push(entry(2, sc));
                }
            }
            let groups = [gx as u32, grid_y as u32, 1];
            ctx.dispatch(
                pass,
                "moe_matmul",
                &self.pipeline,
                &params,
                &entries,
                groups,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::quant;
    use crate::gpu::testing::{assert_close, ctx, random_f32, rng, POISON};
    use rand::Rng;

    /// Reference top-k (ties to the lower id) and softmax over the chosen.
    fn route_ref(logits: &[f32], e: usize, k: usize) -> (Vec<u32>, Vec<f32>) {
        let mut ids = Vec::new();
        let mut w = Vec::new();
        for row in logits.chunks(e) {
            let mut order: Vec<usize> = (0..e).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            let top = &order[..k];
            let mx = f64::from(row[top[0]]);
            let ex: Vec<f64> = top
                .iter()
                .map(|&i| (f64::from(row[i]) - mx).exp())
                .collect();
            let sum: f64 = ex.iter().sum();
            ids.extend(top.iter().map(|&i| i as u32));
            w.extend(ex.iter().map(|v| (v / sum) as f32));
        }
        (ids, w)
    }

    fn run_router(logits: &[f32], m: usize, e: usize, k: usize) -> (Vec<u32>, Vec<f32>) {
        let ctx = ctx();
        let r = MoeRouter::new(ctx).unwrap();
        let lb = ctx.storage_from("logits", logits).unwrap();
        let ib = ctx.storage_from("ids", &vec![u32::MAX; m * k]).unwrap();
        let wb = ctx.storage_from("w", &vec![POISON; m * k]).unwrap();
        let mut enc = ctx.encoder("router test");
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            r.encode(ctx, &mut pass, &lb, &ib, &wb, m as u32, e as u32, k as u32)
                .unwrap();
        }
        ctx.submit("router test", enc).unwrap();
        (
            ctx.read::<u32>(&ib).unwrap()[..m * k].to_vec(),
            ctx.read::<f32>(&wb).unwrap()[..m * k].to_vec(),
        )
    }

    #[test]
    fn router_matches_reference() {
        for (m, e, k, seed) in [
            (37usize, 4usize, 2usize, 1u64),
            (5, 32, 4, 2),
            (70, 128, 8, 3),
        ] {
            let mut logits = random_f32(&mut rng(seed), m * e, 4.0);
            // A tie: the lower id must win.
            logits[1] = logits[0];
            let (ids, w) = run_router(&logits, m, e, k);
            let (ids_ref, w_ref) = route_ref(&logits, e, k);
            assert_eq!(ids, ids_ref, "chosen experts m={m} e={e} k={k}");
            assert_close(
                &format!("router weights m={m} e={e} k={k}"),
                &w,
                &w_ref,
                1e-6,
            );
        }
    }

    #[test]
    fn router_rejects_bad_k() {
        let ctx = ctx();
        let r = MoeRouter::new(ctx).unwrap();
        let b = ctx.storage("b", 64).unwrap();
        let mut enc = ctx.encoder("router bad k");
        let mut pass = enc.begin_compute_pass(&Default::default());
        assert!(r.encode(ctx, &mut pass, &b, &b, &b, 1, 4, 5).is_err());
        assert!(r.encode(ctx, &mut pass, &b, &b, &b, 1, 64, 9).is_err());
    }

    /// A random expert stack of type `ty`, its CPU dequantization, a routing
    /// with distinct experts per token, biases and inputs.
    struct Case {
        ty: GgmlType,
        m: usize,
        s: usize,
        n: usize,
        k: usize,
        bytes: Vec<u8>,
        w: Vec<f32>,
        bias: Vec<f32>,
        ids: Vec<u32>,
        weights: Vec<f32>,
        /// `Some((wg, tpr))`: that variant instead of the device's default.
        lanes: Option<(u32, u32)>,
    }

    impl Case {
        fn new(ty: GgmlType, m: usize, s: usize, e: usize, n: usize, k: usize, seed: u64) -> Self {
            let mut r = rng(seed);
            let vals = random_f32(&mut r, e * n * k, 1.0);
            let bytes = quant::quantize(ty, &vals);
            let w = quant::dequantize_vec(ty, &bytes, e * n * k);
            let bias = random_f32(&mut r, e * n, 1.0);
            let mut ids = Vec::new();
            for _ in 0..m {
                let mut chosen: Vec<u32> = Vec::new();
                while chosen.len() < s {
                    let c = r.random_range(0..e as u32);
                    if !chosen.contains(&c) {
                        chosen.push(c);
                    }
                }
                ids.extend(chosen);
            }
            let weights = random_f32(&mut r, m * s, 1.0);
            Case {
                ty,
                m,
                s,
                n,
                k,
                bytes,
                w,
                bias,
                ids,
                weights,
                lanes: None,
            }
        }

        fn dot(&self, e: usize, row: usize, x: &[f32]) -> f64 {
            let wr = &self.w[(e * self.n + row) * self.k..][..self.k];
            wr.iter()
                .zip(x)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum::<f64>()
                + f64::from(self.bias[e * self.n + row])
        }

        fn run(
            &self,
            stack: &ExpertStack,
            x: &[f32],
            x_per_slot: bool,
            y0: Vec<f32>,
            out: MoeOutput,
        ) -> Vec<f32> {
            let ctx = ctx();
            let mm = match self.lanes {
                Some((wg, tpr)) => MoeMatmul::with_lanes(ctx, self.ty, wg, tpr).unwrap(),
                None => MoeMatmul::new(ctx, self.ty).unwrap(),
            };
            let xb = ctx.storage_from("x", x).unwrap();
            let yb = ctx.storage_from("y", &y0).unwrap();
            let bb = ctx.storage_from("bias", &self.bias).unwrap();
            let ib = ctx.storage_from("ids", &self.ids).unwrap();
            let wb = ctx.storage_from("weights", &self.weights).unwrap();
            let route = Routing {
                m: self.m as u32,
                k_used: self.s as u32,
                ids: &ib,
                weights: &wb,
            };
            let mut enc = ctx.encoder("moe test");
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                mm.encode(
                    ctx,
                    &mut pass,
                    stack,
                    &route,
                    &xb,
                    x_per_slot,
                    &yb,
                    out,
                    Some(&bb),
                )
                .unwrap();
            }
            ctx.submit("moe test", enc).unwrap();
            ctx.read::<f32>(&yb).unwrap()[..y0.len()].to_vec()
        }
    }

    fn check(ty: GgmlType, group_limit: Option<u64>, seed: u64) {
        check_variant(ty, 96, group_limit, seed, None);
    }

    fn check_variant(
        ty: GgmlType,
        k: usize,
        group_limit: Option<u64>,
        seed: u64,
        lanes: Option<(u32, u32)>,
    ) {
        let ctx = ctx();
        let (m, s, e, n) = (13, 2, 5, 37);
        let c = Case {
            lanes,
            ..Case::new(ty, m, s, e, n, k, seed)
        };
        let dims = [k, n, e];
        let stack = match group_limit {
            Some(l) => ExpertStack::upload_with_limit(ctx, "w", ty, dims, &c.bytes, l).unwrap(),
            None => ExpertStack::upload(ctx, "w", ty, dims, &c.bytes).unwrap(),
        };
        if group_limit.is_some() {
            assert!(stack.groups.len() > 1, "the limit splits the stack");
        }
        let mut r = rng(seed + 100);
        let tol = 2e-4;
        // Per slot, shared input (gate/up).
        let x = random_f32(&mut r, m * k, 1.0);
        let got = c.run(
            &stack,
            &x,
            false,
            vec![POISON; m * s * n],
            MoeOutput::PerSlot,
        );
        let mut want = vec![0f32; m * s * n];
        for t in 0..m {
            for sl in 0..s {
                let ex = c.ids[t * s + sl] as usize;
                for row in 0..n {
                    want[(t * s + sl) * n + row] = c.dot(ex, row, &x[t * k..][..k]) as f32;
                }
            }
        }
        assert_close(
            &format!("moe per-slot {ty} groups {}", stack.groups.len()),
            &got,
            &want,
            tol,
        );
        // Combine, input per slot (down into the residual).
        let xs = random_f32(&mut r, m * s * k, 1.0);
        let y0 = random_f32(&mut r, m * n, 1.0);
        let got = c.run(&stack, &xs, true, y0.clone(), MoeOutput::Combine);
        let mut want = y0.clone();
        for t in 0..m {
            for row in 0..n {
                let mut acc = 0f64;
                for sl in 0..s {
                    let ex = c.ids[t * s + sl] as usize;
                    let xr = &xs[(t * s + sl) * k..][..k];
                    acc += f64::from(c.weights[t * s + sl]) * c.dot(ex, row, xr);
                }
                want[t * n + row] += acc as f32;
            }
        }
        assert_close(
            &format!("moe combine {ty} groups {}", stack.groups.len()),
            &got,
            &want,
            tol,
        );
    }

    #[test]
    fn moe_matmul_f32() {
        check(GgmlType::F32, None, 11);
    }

    #[test]
    fn moe_matmul_mxfp4() {
        check(GgmlType::MXFP4, None, 12);
    }

    /// Expert stacks of every type the loader accepts (the kernel splices
    /// the same dequantizers as the dense matmul).
    #[test]
    fn moe_matmul_every_type() {
        for (i, &ty) in GgmlType::ALL.iter().enumerate() {
            check_variant(ty, 256, None, 40 + i as u64, None);
        }
    }

    #[test]
    fn moe_matmul_split_into_expert_groups() {
        // 37 rows x 96 values x 4 bytes = 14208 bytes per F32 expert: two per group.
        check(GgmlType::F32, Some(2 * 14208 + 64), 13);
        check(GgmlType::Q8_0, Some(4000), 14);
    }

    /// A token's output rows are bitwise the same alone and inside a batch.
    #[test]
    fn moe_matmul_is_batch_invariant() {
        for lanes in [None, Some((128, 32)), Some((64, 4))] {
            batch_invariant(lanes);
        }
    }

    /// The GPU variant (lanes per row), run here on the CPU driver: every
    /// lane split, including a workgroup of partial rows (37 rows) and
    /// expert groups split over buffers, gives the reference's values.
    #[test]
    fn moe_matmul_lanes_variant() {
        for (i, lanes) in [(128, 32), (64, 4), (8, 8), (32, 2)]
            .into_iter()
            .enumerate()
        {
            let seed = 60 + 3 * i as u64;
            check_variant(GgmlType::MXFP4, 96, None, seed, Some(lanes));
            check_variant(GgmlType::Q4K, 256, None, seed + 1, Some(lanes));
            check_variant(
                GgmlType::F32,
                96,
                Some(2 * 14208 + 64),
                seed + 2,
                Some(lanes),
            );
        }
    }

    fn batch_invariant(lanes: Option<(u32, u32)>) {
        let (m, s, e, n, k) = (9, 2, 4, 40, 64);
        let c = Case {
            lanes,
            ..Case::new(GgmlType::MXFP4, m, s, e, n, k, 21)
        };
        let stack = ExpertStack::upload(ctx(), "w", c.ty, [k, n, e], &c.bytes).unwrap();
        let xs = random_f32(&mut rng(22), m * s * k, 1.0);
        let y0 = random_f32(&mut rng(23), m * n, 1.0);
        let full = c.run(&stack, &xs, true, y0.clone(), MoeOutput::Combine);
        let t = 5;
        let one = Case {
            m: 1,
            ids: c.ids[t * s..(t + 1) * s].to_vec(),
            weights: c.weights[t * s..(t + 1) * s].to_vec(),
            bytes: Vec::new(),
            w: Vec::new(),
            bias: c.bias.clone(),
            ..c
        };
        let alone = one.run(
            &stack,
            &xs[t * s * k..(t + 1) * s * k],
            true,
            y0[t * n..(t + 1) * n].to_vec(),
            MoeOutput::Combine,
        );
        assert_eq!(
            full[t * n..(t + 1) * n]
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>(),
            alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
