//! `attention`: paged attention for a batch of new tokens, prefill chunks and
//! decode steps alike, reading K and V from the paged cache through block
//! tables (causal; GQA; optional sliding window and attention sinks for
//! gpt-oss). This module owns the attention kernel only; the cache layout and
//! the step's token-to-page map are defined in [`super::kv_write`].
//!
//! Layouts:
//! - `q`, `out`: `[M][n_heads][head_dim]` f32 (q already RoPE'd).
//! - K and V caches: `[num_blocks][block_size][n_kv_heads][head_dim]` of the
//!   cache dtype ([`KvCacheLayout`]).
//! - [`PagedBatch`]: `positions [M]`, `seq_of_token [M]`,
//!   `block_tables [S][max_blocks_per_seq]` (all u32). Token m attends over
//!   positions `0..=positions[m]` of sequence `seq_of_token[m]`, so the cache
//!   must already hold them: a prefill chunk's own K/V are written by
//!   [`super::kv_write::KvWrite`] earlier in the same encoder. The table entries
//!   for those positions must be valid block ids; entries past them are never
//!   read. No `context_lens` is needed: the causal bound is the position.
//! - `sinks`: `[n_heads]` f32, one learned logit per query head.
//!
//! Query head h reads kv head `h / (n_heads / n_kv_heads)`. Scores are
//! `scale * q.k`; softmax runs in f32 with the running max subtracted. With a
//! window w > 0 only positions `> position - w` are attended. With sinks,
//! `out = sum_j e^(s_j - mx) v_j / (e^(sink - mx) + sum_j e^(s_j - mx))`.
//!
//! Two kernels ([`AttentionKernel`]): a tiled one for GPUs and a strided one
//! for CPU drivers (lavapipe), picked by device type.
//!
//! Batch invariance: in both kernels one workgroup computes one token's heads
//! alone, and its reduction order depends only on the token's position (see
//! the shaders), so an output row is bitwise the same whatever the batch
//! holds and whether it came from a prefill chunk or a decode step. The two
//! kernels round differently from each other, so a server must keep one (it
//! does: the choice depends on the device only).

use bytemuck::{Pod, Zeroable};

use super::entry;
use super::kv_write::{KvCacheLayout, KvDtype, KvError, LayerCache, PagedBatch, MAX_GRID_Y};
use crate::gpu::shader_include::expand;
use crate::gpu::{GpuContext, GpuError};

const TILED: &str = include_str!("../../../shaders/attention.wgsl");
const STRIDED: &str = include_str!("../../../shaders/attention_strided.wgsl");
/// Invocations per workgroup of the strided kernel (`LANES`): lavapipe runs 8
/// as one SIMD batch.
const STRIDED_LANES: u32 = 16;
/// `MAX_HPI` and `MAX_QV` of attention_strided.wgsl (checked by a test).
const STRIDED_MAX_HPI: u32 = 8;
const STRIDED_MAX_QV: u32 = 256;
// The shader's workgroup arrays hold MAX_LANES = 32 lanes.
const _: () = assert!(STRIDED_LANES <= 32);

/// Which of the two attention kernels to run. Both give the same results up
/// to rounding, and each is batch-invariant on its own; the choice depends on
/// the device only, never on the batch, so a server keeps one for its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    /// One workgroup of 64 invocations per (token, query head), positions
    /// spread over the invocations in tiles of 64 (shaders/attention.wgsl).
    /// For GPUs.
    Tiled,
    /// One workgroup of 16 invocations per (token, group of query heads
    /// sharing a kv head); invocation t walks positions t, t + 16, ... with
    /// its own online softmax, and the 16 are merged at the end
    /// (shaders/attention_strided.wgsl). For CPU drivers such as lavapipe,
    /// where memory loads are what costs: it loads each K/V element once per
    /// token and head group, two f16 per word.
    Strided,
}

impl AttentionKernel {
    pub fn for_device(ctx: &GpuContext) -> Self {
        if ctx.info.device_type == wgpu::DeviceType::Cpu {
            AttentionKernel::Strided
        } else {
            AttentionKernel::Tiled
        }
    }
}

/// The model-wide shape, fixed when the pipeline is built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionConfig {
    pub layout: KvCacheLayout,
    /// Query heads; a multiple of `layout.n_kv_heads`.
    pub n_heads: u32,
    /// Score scale, usually `1 / sqrt(head_dim)`.
    pub scale: f32,
    /// Usually [`AttentionKernel::for_device`].
    pub kernel: AttentionKernel,
}

/// What differs between layers: the cache, and gpt-oss's options.
#[derive(Clone, Copy)]
pub struct LayerAttention<'a> {
    pub cache: LayerCache<'a>,
    /// Sliding window in positions (the token itself included); 0 = none.
    pub window: u32,
    /// Per-head sink logits `[n_heads]` f32, or `None`.
    pub sinks: Option<&'a wgpu::Buffer>,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    pub(super) num_tokens: u32,
    pub(super) max_blocks_per_seq: u32,
    pub(super) window: u32,
    pub(super) use_sinks: u32,
    pub(super) scale: f32,
    pub(super) _pad: [u32; 3],
}

pub struct PagedAttention {
    pipeline: wgpu::ComputePipeline,
    config: AttentionConfig,
    /// Bound in place of `sinks` when a layer has none.
    no_sinks: wgpu::Buffer,
}

impl PagedAttention {
    pub fn new(ctx: &GpuContext, config: AttentionConfig) -> Result<Self, KvError> {
        let layout = config.layout;
        layout.validate(ctx)?;
        if config.n_heads == 0 || !config.n_heads.is_multiple_of(layout.n_kv_heads) {
            return Err(KvError::HeadGroups {
                n_heads: config.n_heads,
                n_kv_heads: layout.n_kv_heads,
            });
        }
        let mut constants = vec![
            ("HEAD_DIM", f64::from(layout.head_dim)),
            ("N_HEADS", f64::from(config.n_heads)),
            ("N_KV_HEADS", f64::from(layout.n_kv_heads)),
            ("BLOCK_SIZE", f64::from(layout.block_size)),
        ];
        let source = match config.kernel {
            AttentionKernel::Tiled => layout
                .dtype
                .specialise(&expand("attention.wgsl", TILED).map_err(GpuError::from)?),
            AttentionKernel::Strided => {
                // It reads the cache as raw 32-bit words: no dtype alias.
                let f16 = layout.dtype == KvDtype::F16;
                constants.push(("HPI", f64::from(heads_per_invocation(&config))));
                constants.push(("KV_F16", if f16 { 1.0 } else { 0.0 }));
                constants.push(("LANES", f64::from(STRIDED_LANES)));
                expand("attention_strided.wgsl", STRIDED).map_err(GpuError::from)?
            }
        };
        let module = ctx.shader_module("attention", &source)?;
        let pipeline = ctx.compute_pipeline("attention", &module, "main", &constants)?;
        let no_sinks = ctx.storage_from("attention no sinks", &[0f32; 4])?;
        Ok(Self {
            pipeline,
            config,
            no_sinks,
        })
    }

    pub fn config(&self) -> &AttentionConfig {
        &self.config
    }

    /// Records attention for every token of `batch` and every query head into
    /// `out`. Hot path: no error scope here; errors surface at the submit.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        batch: &PagedBatch<'_>,
        layer: &LayerAttention<'_>,
        q: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) {
        if batch.num_tokens == 0 {
            return;
        }
        let p = Params {
            num_tokens: batch.num_tokens,
            max_blocks_per_seq: batch.max_blocks_per_seq,
            window: layer.window,
            use_sinks: u32::from(layer.sinks.is_some()),
            scale: self.config.scale,
            _pad: [0; 3],
        };
        let entries = [
            entry(1, q),
            entry(2, layer.cache.k),
            entry(3, layer.cache.v),
            entry(4, batch.positions),
            entry(5, batch.seq_of_token),
            entry(6, batch.block_tables),
            entry(7, layer.sinks.unwrap_or(&self.no_sinks)),
            entry(8, out),
        ];
        let heads = match self.config.kernel {
            AttentionKernel::Tiled => self.config.n_heads,
            AttentionKernel::Strided => self.config.n_heads / heads_per_invocation(&self.config),
        };
        let groups = [heads, batch.num_tokens.min(MAX_GRID_Y), 1];
        ctx.dispatch(pass, "attention", &self.pipeline, &p, &entries, groups);
    }
}

/// Query heads one workgroup of the strided kernel handles: the largest
/// divisor of the GQA group that fits its private arrays (`MAX_HPI` and
/// `MAX_QV` in attention_strided.wgsl).
fn heads_per_invocation(config: &AttentionConfig) -> u32 {
    let group = config.n_heads / config.layout.n_kv_heads;
    let dv = config.layout.head_dim / 4;
    (1..=group.min(STRIDED_MAX_HPI))
        .rev()
        .find(|h| group.is_multiple_of(*h) && h * dv <= STRIDED_MAX_QV)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::super::kv_write::test_util::{dtypes, round, to_cache};
    use super::super::kv_write::KvWrite;
    use super::*;
    use crate::gpu::testing::{assert_close, ctx, random_f32, rng, POISON};
    use rand::seq::SliceRandom;
    use rand::Rng;

    /// One test case's model shape and per-layer options.
    #[derive(Clone, Copy, Debug)]
    struct Shape {
        kernel: AttentionKernel,
        dtype: KvDtype,
        block_size: u32,
        head_dim: u32,
        n_heads: u32,
        n_kv_heads: u32,
        window: u32,
        sinks: bool,
    }

    impl Shape {
        fn config(&self) -> AttentionConfig {
            AttentionConfig {
                layout: KvCacheLayout {
                    block_size: self.block_size,
                    n_kv_heads: self.n_kv_heads,
                    head_dim: self.head_dim,
                    dtype: self.dtype,
                },
                n_heads: self.n_heads,
                scale: 1.0 / (self.head_dim as f32).sqrt(),
                kernel: self.kernel,
            }
        }
        fn kv_row(&self) -> usize {
            (self.n_kv_heads * self.head_dim) as usize
        }
        fn q_row(&self) -> usize {
            (self.n_heads * self.head_dim) as usize
        }
    }

    /// A set of sequences with their full K/V (f32, as produced by the model),
    /// their queries, and a shuffled, non-contiguous block assignment in a
    /// cache with spare blocks.
    struct World {
        shape: Shape,
        /// Per sequence: `[len][kv_row]`.
        k: Vec<Vec<f32>>,
        v: Vec<Vec<f32>>,
        /// Per sequence: `[len][q_row]`.
        q: Vec<Vec<f32>>,
        /// Per sequence: its block ids in order.
        blocks: Vec<Vec<u32>>,
        num_blocks: u32,
        sinks: Vec<f32>,
    }

    impl World {
        fn new(shape: Shape, lens: &[usize], seed: u64) -> Self {
            let mut r = rng(seed);
            let bs = shape.block_size as usize;
            let needed: usize = lens.iter().map(|l| l.div_ceil(bs)).sum();
            let num_blocks = (needed + 5) as u32;
            let mut ids: Vec<u32> = (0..num_blocks).collect();
            ids.shuffle(&mut r);
            let mut blocks = Vec::new();
            let mut next = 0;
            for &l in lens {
                let n = l.div_ceil(bs);
                blocks.push(ids[next..next + n].to_vec());
                next += n;
            }
            let k = lens
                .iter()
                .map(|&l| random_f32(&mut r, l * shape.kv_row(), 1.0))
                .collect();
            let v = lens
                .iter()
                .map(|&l| random_f32(&mut r, l * shape.kv_row(), 1.0))
                .collect();
            // Large enough that softmax is far from uniform and the running
            // max matters.
            let q = lens
                .iter()
                .map(|&l| random_f32(&mut r, l * shape.q_row(), 3.0))
                .collect();
            let sinks = random_f32(&mut r, shape.n_heads as usize, 2.0);
            World {
                shape,
                k,
                v,
                q,
                blocks,
                num_blocks,
                sinks,
            }
        }

        fn slot(&self, s: usize, pos: usize) -> usize {
            let bs = self.shape.block_size as usize;
            self.blocks[s][pos / bs] as usize * bs + pos % bs
        }

        /// Cache contents with positions `0..upto[s]` of each sequence in
        /// place and NaN everywhere else, so reading any slot outside a
        /// sequence's written positions poisons its output.
        fn cache(&self, upto: &[usize]) -> (Vec<f32>, Vec<f32>) {
            let row = self.shape.kv_row();
            let n = self.num_blocks as usize * self.shape.block_size as usize * row;
            let mut kc = vec![f32::NAN; n];
            let mut vc = vec![f32::NAN; n];
            for (s, &u) in upto.iter().enumerate() {
                for pos in 0..u {
                    let d = self.slot(s, pos) * row;
                    kc[d..d + row].copy_from_slice(&self.k[s][pos * row..(pos + 1) * row]);
                    vc[d..d + row].copy_from_slice(&self.v[s][pos * row..(pos + 1) * row]);
                }
            }
            (kc, vc)
        }

        /// Plain reference in f64 over the cache-rounded K/V: one output
        /// row `[q_row]` for position `pos` of sequence `s`.
        fn reference(&self, s: usize, pos: usize) -> Vec<f32> {
            let sh = self.shape;
            let hd = sh.head_dim as usize;
            let row = sh.kv_row();
            let group = (sh.n_heads / sh.n_kv_heads) as usize;
            let scale = f64::from(sh.config().scale);
            let lo = if sh.window > 0 {
                (pos + 1).saturating_sub(sh.window as usize)
            } else {
                0
            };
            let kr = |j: usize, i: usize| f64::from(round(sh.dtype, self.k[s][j * row + i]));
            let vr = |j: usize, i: usize| f64::from(round(sh.dtype, self.v[s][j * row + i]));
            let mut out = vec![0f32; sh.q_row()];
            for h in 0..sh.n_heads as usize {
                let kvh = h / group;
                let qv = &self.q[s][pos * sh.q_row() + h * hd..][..hd];
                let scores: Vec<f64> = (lo..=pos)
                    .map(|j| {
                        let dot: f64 = (0..hd)
                            .map(|i| f64::from(qv[i]) * kr(j, kvh * hd + i))
                            .sum();
                        dot * scale
                    })
                    .collect();
                let sink = sh.sinks.then(|| f64::from(self.sinks[h]));
                let mx = scores
                    .iter()
                    .copied()
                    .chain(sink)
                    .fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = scores.iter().map(|x| (x - mx).exp()).collect();
                let denom: f64 = w.iter().sum::<f64>() + sink.map_or(0.0, |x| (x - mx).exp());
                for i in 0..hd {
                    let num: f64 = w
                        .iter()
                        .enumerate()
                        .map(|(jj, wj)| wj * vr(lo + jj, kvh * hd + i))
                        .sum();
                    out[h * hd + i] = (num / denom) as f32;
                }
            }
            out
        }
    }

    /// One batch: `(sequence, first, count)` = that sequence's positions
    /// `first..first + count`, in batch order.
    type Chunks = [(usize, usize, usize)];

    /// Device buffers for one world; the cache starts as `World::cache(upto)`.
    struct Device {
        attn: PagedAttention,
        kw: KvWrite,
        k_cache: wgpu::Buffer,
        v_cache: wgpu::Buffer,
        sinks: wgpu::Buffer,
    }

    impl Device {
        fn new(w: &World, upto: &[usize]) -> Self {
            let ctx = ctx();
            let (kc, vc) = w.cache(upto);
            Device {
                attn: PagedAttention::new(ctx, w.shape.config()).unwrap(),
                kw: KvWrite::new(ctx, w.shape.config().layout).unwrap(),
                k_cache: ctx
                    .storage_from("k cache", &to_cache(w.shape.dtype, &kc))
                    .unwrap(),
                v_cache: ctx
                    .storage_from("v cache", &to_cache(w.shape.dtype, &vc))
                    .unwrap(),
                sinks: ctx.storage_from("sinks", &w.sinks).unwrap(),
            }
        }

        /// Runs one step over `chunks`: if `write` is set, KV write of the
        /// chunks' own K/V and then attention in the same pass; returns `out`
        /// `[M][q_row]`. Block table rows are in chunk order, padded with
        /// random block ids (other sequences' blocks and spare ones) out to
        /// `stride` entries.
        fn step(
            &self,
            w: &World,
            chunks: &Chunks,
            write: bool,
            stride: usize,
            seed: u64,
        ) -> Vec<f32> {
            self.step_repeated(w, chunks, write, stride, seed, 1)
        }

        /// `step` with the attention dispatch recorded `repeat` times (for
        /// timing).
        fn step_repeated(
            &self,
            w: &World,
            chunks: &Chunks,
            write: bool,
            stride: usize,
            seed: u64,
            repeat: usize,
        ) -> Vec<f32> {
            let ctx = ctx();
            let sh = w.shape;
            let mut r = rng(seed);
            let (mut positions, mut seq_of_token, mut slots) = (vec![], vec![], vec![]);
            let (mut q, mut k, mut v) = (vec![], vec![], vec![]);
            let mut tables = vec![];
            for (row, &(s, first, count)) in chunks.iter().enumerate() {
                let mut t = w.blocks[s].clone();
                assert!(t.len() <= stride);
                while t.len() < stride {
                    t.push(r.random_range(0..w.num_blocks));
                }
                tables.extend(t);
                for pos in first..first + count {
                    positions.push(pos as u32);
                    seq_of_token.push(row as u32);
                    slots.push(w.slot(s, pos) as u32);
                    q.extend_from_slice(&w.q[s][pos * sh.q_row()..][..sh.q_row()]);
                    k.extend_from_slice(&w.k[s][pos * sh.kv_row()..][..sh.kv_row()]);
                    v.extend_from_slice(&w.v[s][pos * sh.kv_row()..][..sh.kv_row()]);
                }
            }
            let m = positions.len();
            let buf = |label: &str, data: &[u32]| ctx.storage_from(label, data).unwrap();
            let fbuf = |label: &str, data: &[f32]| ctx.storage_from(label, data).unwrap();
            let (pos_b, seq_b, slot_b, tab_b) = (
                buf("positions", &positions),
                buf("seq_of_token", &seq_of_token),
                buf("slots", &slots),
                buf("tables", &tables),
            );
            let (qb, kb, vb) = (fbuf("q", &q), fbuf("k", &k), fbuf("v", &v));
            let out = fbuf("out", &vec![POISON; m * sh.q_row()]);
            let batch = PagedBatch {
                num_tokens: m as u32,
                positions: &pos_b,
                seq_of_token: &seq_b,
                slot_mapping: &slot_b,
                block_tables: &tab_b,
                max_blocks_per_seq: stride as u32,
            };
            let cache = LayerCache {
                k: &self.k_cache,
                v: &self.v_cache,
            };
            let layer = LayerAttention {
                cache,
                window: sh.window,
                sinks: sh.sinks.then_some(&self.sinks),
            };
            let mut enc = ctx.encoder("attention test");
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                if write {
                    self.kw.encode(ctx, &mut pass, &batch, &kb, &vb, cache);
                }
                for _ in 0..repeat {
                    self.attn.encode(ctx, &mut pass, &batch, &layer, &qb, &out);
                }
            }
            ctx.submit("attention", enc).unwrap();
            ctx.read(&out).unwrap()
        }
    }

    fn kernels_and_dtypes(ctx: &GpuContext) -> Vec<(AttentionKernel, KvDtype)> {
        let mut v = Vec::new();
        for kernel in [AttentionKernel::Tiled, AttentionKernel::Strided] {
            for dtype in dtypes(ctx) {
                v.push((kernel, dtype));
            }
        }
        v
    }

    fn shapes(ctx: &GpuContext) -> Vec<Shape> {
        let mut v = Vec::new();
        for (kernel, dtype) in kernels_and_dtypes(ctx) {
            let base = Shape {
                kernel,
                dtype,
                block_size: 16,
                head_dim: 64,
                n_heads: 9,
                n_kv_heads: 3,
                window: 0,
                sinks: false,
            };
            // SmolLM2's shape.
            v.push(base);
            // Llama-like: head_dim 128, GQA 4, block size 8.
            v.push(Shape {
                block_size: 8,
                head_dim: 128,
                n_heads: 8,
                n_kv_heads: 2,
                ..base
            });
            // gpt-oss-like options: a window (smaller than some sequences,
            // crossing tile and block boundaries) and sinks; a GQA group of
            // 16, which the strided kernel splits into two slices of 8.
            v.push(Shape {
                block_size: 8,
                window: 21,
                sinks: true,
                n_heads: 16,
                n_kv_heads: 1,
                ..base
            });
            v.push(Shape {
                head_dim: 128,
                n_heads: 4,
                n_kv_heads: 4,
                sinks: true,
                ..base
            });
            v.push(Shape {
                head_dim: 128,
                window: 100,
                ..base
            });
        }
        v
    }

    /// Several sequences of different lengths in one batch, each contributing
    /// a different kind of chunk (decode of the first token, a whole prompt, a
    /// continuation chunk, a decode step deep in a long sequence), against
    /// the f64 reference.
    #[test]
    fn matches_reference() {
        let ctx = ctx();
        for (i, shape) in shapes(ctx).into_iter().enumerate() {
            let lens = [1, 17, 70, 133];
            let w = World::new(shape, &lens, 100 + i as u64);
            // Positions before each chunk are already cached; the chunks'
            // own K/V are written by KvWrite in the same pass.
            let chunks = [(0, 0, 1), (1, 0, 17), (2, 61, 9), (3, 132, 1)];
            let upto: Vec<usize> = chunks.iter().map(|c| c.1).collect();
            let dev = Device::new(&w, &upto);
            let got = dev.step(&w, &chunks, true, 20, 1);
            let mut want = Vec::new();
            for &(s, first, count) in &chunks {
                for pos in first..first + count {
                    want.extend(w.reference(s, pos));
                }
            }
            let tol = match shape.dtype {
                KvDtype::F32 => 1e-5,
                KvDtype::F16 => 2e-5,
            };
            assert_close(&format!("attention {shape:?}"), &got, &want, tol);
        }
    }

    /// A prompt run as one prefill chunk, then the same prompt run as two
    /// chunks and a final decode step on a fresh cache: every row must be
    /// bitwise identical.
    #[test]
    fn prefill_and_decode_agree_bitwise() {
        let ctx = ctx();
        for (i, shape) in shapes(ctx).into_iter().enumerate() {
            let len = 83;
            let w = World::new(shape, &[len], 200 + i as u64);
            let one = Device::new(&w, &[0]).step(&w, &[(0, 0, len)], true, 12, 2);
            let dev = Device::new(&w, &[0]);
            let mut split = dev.step(&w, &[(0, 0, 29)], true, 12, 3);
            split.extend(dev.step(&w, &[(0, 29, len - 30)], true, 11, 4));
            split.extend(dev.step(&w, &[(0, len - 1, 1)], true, 16, 5));
            assert_eq!(one.len(), split.len());
            let differ = one
                .iter()
                .zip(&split)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(differ, 0, "{shape:?}: {differ} elements differ");
            assert!(one.iter().all(|x| x.is_finite()), "{shape:?}");
        }
    }

    /// Three sequences in one batch give bitwise the same rows as each run
    /// alone (different M, table rows and strides).
    #[test]
    fn batched_and_alone_agree_bitwise() {
        let ctx = ctx();
        for (i, shape) in shapes(ctx).into_iter().enumerate() {
            let lens = [40, 9, 77];
            let w = World::new(shape, &lens, 300 + i as u64);
            let chunks = [(2, 70, 7), (0, 39, 1), (1, 0, 9)];
            let dev = Device::new(&w, &lens);
            let batched = dev.step(&w, &chunks, false, 12, 6);
            let mut alone = Vec::new();
            for (j, &c) in chunks.iter().enumerate() {
                alone.extend(dev.step(&w, &[c], false, 10 + j, 7 + j as u64));
            }
            let differ = batched
                .iter()
                .zip(&alone)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(differ, 0, "{shape:?}: {differ} elements differ");
            assert!(batched.iter().all(|x| x.is_finite()), "{shape:?}");
        }
    }

    /// More tokens than one grid dimension holds (each the first token of
    /// its own sequence, so its output is its own v row exactly): the
    /// shaders' stride over tokens must reach every one.
    #[test]
    fn covers_tokens_past_the_grid_limit() {
        let n = MAX_GRID_Y as usize + 300;
        for kernel in [AttentionKernel::Tiled, AttentionKernel::Strided] {
            let shape = Shape {
                kernel,
                dtype: KvDtype::F32,
                block_size: 2,
                head_dim: 4,
                n_heads: 2,
                n_kv_heads: 1,
                window: 0,
                sinks: false,
            };
            let w = World::new(shape, &vec![1; n], 400);
            let chunks: Vec<_> = (0..n).map(|s| (s, 0, 1)).collect();
            let got = Device::new(&w, &vec![0; n]).step(&w, &chunks, true, 1, 8);
            let want: Vec<f32> =
                w.v.iter()
                    .flat_map(|v| [v.clone(), v.clone()])
                    .flatten()
                    .collect();
            assert_close(&format!("attention {kernel:?} past grid"), &got, &want, 0.0);
        }
    }

    /// The strided kernel's private arrays are sized by shader constants
    /// that `heads_per_invocation` must respect.
    #[test]
    fn strided_limits_match_the_shader() {
        for line in [
            format!("const MAX_HPI: u32 = {STRIDED_MAX_HPI}u;"),
            format!("const MAX_QV: u32 = {STRIDED_MAX_QV}u;"),
            format!("const MAX_LANES: u32 = {}u;", 32),
        ] {
            assert!(
                STRIDED.contains(&line),
                "attention_strided.wgsl lacks `{line}`"
            );
        }
        let layout = KvCacheLayout {
            block_size: 16,
            n_kv_heads: 1,
            head_dim: 256,
            dtype: KvDtype::F32,
        };
        let config = |n_heads, head_dim| AttentionConfig {
            layout: KvCacheLayout { head_dim, ..layout },
            n_heads,
            scale: 1.0,
            kernel: AttentionKernel::Strided,
        };
        // (n_heads per kv head, head_dim) -> heads per workgroup.
        for (group, head_dim, want) in [
            (3, 64, 3),
            (16, 64, 8),
            (12, 64, 6),
            (8, 256, 4),
            (7, 128, 7),
        ] {
            assert_eq!(
                heads_per_invocation(&config(group, head_dim)),
                want,
                "{group} {head_dim}"
            );
        }
    }

    #[test]
    fn bad_head_groups_are_errors() {
        let ctx = ctx();
        let layout = KvCacheLayout {
            block_size: 16,
            n_kv_heads: 3,
            head_dim: 64,
            dtype: KvDtype::F32,
        };
        for n_heads in [0, 8] {
            let err = PagedAttention::new(
                ctx,
                AttentionConfig {
                    layout,
                    n_heads,
                    scale: 0.125,
                    kernel: AttentionKernel::Tiled,
                },
            )
            .err()
            .unwrap();
            assert!(matches!(err, KvError::HeadGroups { .. }), "{err}");
        }
    }

    /// Prints the time of one attention dispatch, for each kernel and cache
    /// dtype, for decode steps and a prefill chunk (run by hand: `cargo test
    /// --lib attention::tests::timing -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn timing() {
        let ctx = ctx();
        for (kernel, dtype) in kernels_and_dtypes(ctx) {
            let smol = Shape {
                kernel,
                dtype,
                block_size: 16,
                head_dim: 64,
                n_heads: 9,
                n_kv_heads: 3,
                window: 0,
                sinks: false,
            };
            let llama = Shape {
                head_dim: 128,
                n_heads: 32,
                n_kv_heads: 8,
                ..smol
            };
            for (name, shape, lens, chunk) in [
                ("smol decode, context 512", smol, vec![512], 1),
                ("smol decode, context 4096", smol, vec![4096], 1),
                ("smol decode, 8 x context 512", smol, vec![512; 8], 1),
                ("smol prefill 128", smol, vec![128], 128),
                ("llama-8B decode, context 1024", llama, vec![1024], 1),
            ] {
                let w = World::new(shape, &lens, 9);
                let dev = Device::new(&w, &lens);
                let chunks: Vec<_> = lens
                    .iter()
                    .enumerate()
                    .map(|(s, &l)| (s, l - chunk, chunk))
                    .collect();
                let stride = lens[0].div_ceil(shape.block_size as usize);
                let time = |repeat| {
                    let (t0, c0) = (std::time::Instant::now(), process_cpu_ms());
                    dev.step_repeated(&w, &chunks, false, stride, 1, repeat);
                    (t0.elapsed().as_secs_f64() * 1e3, process_cpu_ms() - c0)
                };
                time(1);
                let reps = 20;
                let (w1, c1) = time(1);
                let (wn, cn) = time(reps + 1);
                let n = reps as f64;
                eprintln!(
                    "{name} ({kernel:?}, {dtype:?}): {:.2} ms wall, {:.2} ms cpu per dispatch",
                    (wn - w1) / n,
                    (cn - c1) / n
                );
            }
        }
    }

    /// CPU time of this process so far (lavapipe's threads included), in ms
    /// at 10 ms resolution: on a shared machine it is steadier than wall time.
    fn process_cpu_ms() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split(' ').collect();
        // utime and stime, fields 14 and 15 of proc(5), in 10 ms ticks.
        let ticks = |i: usize| fields.get(i).and_then(|x| x.parse::<f64>().ok());
        (ticks(12).unwrap_or(0.0) + ticks(13).unwrap_or(0.0)) * 10.0
    }
}
