//! A model shard: the weights of a contiguous range of layers on one device,
//! those layers' KV pages, and the forward pass over them for a batch.
//!
//! One [`ModelShard::step`] records every dispatch of every layer into one
//! command encoder, submits once, and reads back one small buffer: the
//! sampled ids (and only the logits rows a CPU sampler needs) on the last
//! shard, or the hidden states to hand to the next shard. With one GPU there
//! is one shard holding every layer.
//!
//! The shard owns no sequence state: each step's [`BatchInput`] says which
//! tokens to run, at which positions, and which KV pages they use.
//!
//! gpt-oss layers differ from llama's in their options (attention sinks,
//! a sliding window on even layers, an output-projection bias, YaRN) and in
//! their feed-forward block, a routed mixture of experts (`MoeStep`).

use std::collections::HashMap;
use std::ops::Range;

use crate::gguf::{reader::GgufFile, GgmlType};
use crate::gpu::kernels::moe::{MoeMatmul, MoeOutput, MoeRouter, Routing};
use crate::gpu::kernels::{
    argmax::Argmax,
    attention::{AttentionConfig, AttentionKernel, LayerAttention, PagedAttention},
    embedding::Embedding,
    kv_write::{KvWrite, PagedBatch},
    matmul::Matmul,
    quantize_act::{ActQuant, QuantizeAct},
    rmsnorm::{RmsNorm, Rows},
    rope::{Rope, RopeParams},
    swiglu::{SwiGlu, SwiGluMode},
};
use crate::gpu::weights::DeviceTensor;
use crate::gpu::{GpuContext, GpuError};
use crate::step::{BatchError, BatchInput, SampleOutput};

use super::kv_cache::{layout_with, DeviceKvCache};
use super::spec::{Arch, ModelError, ModelSpec};
use super::weights::{Ffn, MoeWeights, ShardWeights};

/// Sizes fixed when a shard is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardLimits {
    /// Most tokens in one step.
    pub max_tokens: usize,
    /// Most rows sampled in one step.
    pub max_samples: usize,
    /// Most blocks one sequence's table may hold (context / block size).
    pub max_blocks_per_seq: usize,
    pub block_size: u32,
    pub num_blocks: u32,
    /// Round matmul inputs to the 8-bit grids llama.cpp uses (see
    /// `gpu::kernels::quantize_act`); off keeps exact f32 activations.
    pub quantize_activations: bool,
    /// Keep the KV pages in f32 even where the device has f16.
    pub kv_f32: bool,
}

/// What flows into a shard: token ids (first shard) or the previous shard's
/// hidden states `[M][d_model]`.
pub enum ShardInput {
    Tokens,
    Hidden(Vec<f32>),
}

/// What flows out: hidden states for the next shard, or the samples.
#[derive(Debug)]
pub enum ShardOutput {
    Hidden(Vec<f32>),
    Samples(Vec<SampleOutput>),
}

/// The per-step buffers, sized for [`ShardLimits`].
struct Scratch {
    tokens: wgpu::Buffer,
    positions: wgpu::Buffer,
    seq_of_token: wgpu::Buffer,
    slot_mapping: wgpu::Buffer,
    block_tables: wgpu::Buffer,
    x: wgpu::Buffer,
    xn: wgpu::Buffer,
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    att: wgpu::Buffer,
    /// `[M][ffn_dim]`, or for a mixture of experts `[M][k_used][expert_ffn]`.
    gate: wgpu::Buffer,
    up: wgpu::Buffer,
    /// silu(gate) * up (a kernel's output may not alias its inputs).
    act: wgpu::Buffer,
    /// Mixture of experts: router logits `[M][n_experts]`, the chosen
    /// experts `[M][k_used]` (u32) and their weights `[M][k_used]`.
    router_logits: wgpu::Buffer,
    expert_ids: wgpu::Buffer,
    expert_weights: wgpu::Buffer,
    xs: wgpu::Buffer,
    logits: wgpu::Buffer,
    ids: wgpu::Buffer,
    /// Matmul inputs rounded to an activation grid, one buffer per grid.
    xq: HashMap<ActQuant, wgpu::Buffer>,
    staging: wgpu::Buffer,
}

struct Kernels {
    embedding: HashMap<GgmlType, Embedding>,
    matmul: HashMap<GgmlType, Matmul>,
    rmsnorm: RmsNorm,
    rope: Rope,
    kv_write: KvWrite,
    attention: PagedAttention,
    swiglu: SwiGlu,
    /// Mixture of experts (gpt-oss) only.
    moe_router: Option<MoeRouter>,
    moe_matmul: HashMap<GgmlType, MoeMatmul>,
    argmax: Argmax,
    quantize_act: QuantizeAct,
}

pub struct ModelShard {
    pub ctx: GpuContext,
    pub spec: ModelSpec,
    pub layers: Range<usize>,
    pub limits: ShardLimits,
    weights: ShardWeights,
    kv: DeviceKvCache,
    kernels: Kernels,
    scratch: Scratch,
}

fn f32_buf(ctx: &GpuContext, label: &str, elems: usize) -> Result<wgpu::Buffer, GpuError> {
    ctx.storage(label, (elems.max(4) * 4) as u64)
}

impl ModelShard {
    /// Uploads the weights of `layers`, allocates `limits.num_blocks` KV pages
    /// per layer, and compiles the kernels.
    pub fn load(
        ctx: GpuContext,
        file: &GgufFile,
        spec: &ModelSpec,
        layers: Range<usize>,
        limits: ShardLimits,
    ) -> Result<Self, ModelError> {
        assert!(layers.start < layers.end && layers.end <= spec.n_layers);
        let weights = ShardWeights::load(&ctx, file, spec, layers.clone())?;
        let layout = layout_with(&ctx, spec, limits.block_size, limits.kv_f32);
        let kv = DeviceKvCache::new(&ctx, layout, layers.len(), limits.num_blocks)?;
        // Llama 3's long-context RoPE: per-frequency divisors.
        let freq_factors = match file.get_tensor("rope_freqs.weight") {
            Some(_) => Some(file.dequantize("rope_freqs.weight")?),
            None => None,
        };
        let kernels = Self::kernels(&ctx, spec, &weights, layout, freq_factors)?;
        let scratch = Self::scratch(&ctx, spec, &limits, &weights)?;
        Ok(Self {
            ctx,
            spec: spec.clone(),
            layers,
            limits,
            weights,
            kv,
            kernels,
            scratch,
        })
    }

    fn kernels(
        ctx: &GpuContext,
        spec: &ModelSpec,
        w: &ShardWeights,
        layout: crate::gpu::kernels::kv_write::KvCacheLayout,
        freq_factors: Option<Vec<f32>>,
    ) -> Result<Kernels, ModelError> {
        let types = w.matrix_types();
        let mut matmul = HashMap::new();
        for t in types {
            matmul.insert(t, Matmul::new(ctx, t)?);
        }
        let mut embedding = HashMap::new();
        if let Some(e) = &w.embedding {
            embedding.insert(e.ty, Embedding::new(ctx, e.ty)?);
        }
        let mut moe_matmul = HashMap::new();
        for t in w.expert_types() {
            moe_matmul.insert(t, MoeMatmul::new(ctx, t)?);
        }
        let moe_router = if spec.n_experts > 0 {
            Some(MoeRouter::new(ctx)?)
        } else {
            None
        };
        let mut rope = RopeParams::new(spec.rope_mode, spec.head_dim as u32, spec.rope_freq_base);
        rope.n_rot = spec.rope_n_rot as u32;
        rope.freq_scale = spec.rope_freq_scale;
        rope.yarn = spec.yarn_params();
        rope.freq_factors = freq_factors;
        Ok(Kernels {
            embedding,
            matmul,
            rmsnorm: RmsNorm::new(ctx, spec.rms_eps)?,
            rope: Rope::new(ctx, &rope)?,
            kv_write: KvWrite::new(ctx, layout).map_err(kv_err)?,
            attention: PagedAttention::new(
                ctx,
                AttentionConfig {
                    layout,
                    n_heads: spec.n_heads as u32,
                    scale: 1.0 / (spec.head_dim as f32).sqrt(),
                    kernel: AttentionKernel::for_device(ctx),
                },
            )
            .map_err(kv_err)?,
            swiglu: SwiGlu::new(
                ctx,
                if spec.arch == Arch::GptOss {
                    SwiGluMode::GPT_OSS
                } else {
                    SwiGluMode::Silu
                },
            )?,
            moe_router,
            moe_matmul,
            argmax: Argmax::new(ctx)?,
            quantize_act: QuantizeAct::new(ctx)?,
        })
    }

    fn scratch(
        ctx: &GpuContext,
        spec: &ModelSpec,
        l: &ShardLimits,
        w: &ShardWeights,
    ) -> Result<Scratch, ModelError> {
        let t = l.max_tokens;
        let r = l.max_samples;
        let ffn = if spec.n_experts > 0 {
            spec.n_experts_used * spec.expert_ffn_dim
        } else {
            spec.ffn_dim
        };
        let mut xq = HashMap::new();
        if l.quantize_activations {
            let width = spec.d_model.max(spec.q_dim()).max(ffn);
            for t_ in w.matrix_types() {
                let q = ActQuant::for_weight(t_);
                if q != ActQuant::None && !xq.contains_key(&q) {
                    xq.insert(q, f32_buf(ctx, "xq", t.max(r) * width)?);
                }
            }
        }
        let staging_bytes = ((r * 4 + r * spec.vocab_size * 4).max(t * spec.d_model * 4)) as u64;
        let staging = ctx.scoped("staging", || {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("step readback"),
                size: staging_bytes.next_multiple_of(4),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let u32_buf = |label: &str, n: usize| ctx.storage(label, (n.max(4) * 4) as u64);
        Ok(Scratch {
            tokens: u32_buf("tokens", t)?,
            positions: u32_buf("positions", t)?,
            seq_of_token: u32_buf("seq_of_token", t)?,
            slot_mapping: u32_buf("slot_mapping", t)?,
            block_tables: u32_buf("block_tables", r.max(1) * l.max_blocks_per_seq)?,
            x: f32_buf(ctx, "x", t * spec.d_model)?,
            xn: f32_buf(ctx, "xn", t * spec.d_model)?,
            q: f32_buf(ctx, "q", t * spec.q_dim())?,
            k: f32_buf(ctx, "k", t * spec.kv_dim())?,
            v: f32_buf(ctx, "v", t * spec.kv_dim())?,
            att: f32_buf(ctx, "att", t * spec.q_dim())?,
            gate: f32_buf(ctx, "gate", t * ffn)?,
            up: f32_buf(ctx, "up", t * ffn)?,
            act: f32_buf(ctx, "act", t * ffn)?,
            router_logits: f32_buf(ctx, "router logits", t * spec.n_experts)?,
            expert_ids: u32_buf("expert ids", t * spec.n_experts_used)?,
            expert_weights: f32_buf(ctx, "expert weights", t * spec.n_experts_used)?,
            xs: f32_buf(ctx, "xs", r * spec.d_model)?,
            logits: f32_buf(ctx, "logits", r * spec.vocab_size)?,
            ids: u32_buf("ids", r)?,
            xq,
            staging,
        })
    }

    pub fn is_first(&self) -> bool {
        self.layers.start == 0
    }

    pub fn is_last(&self) -> bool {
        self.layers.end == self.spec.n_layers
    }

    pub fn kv_bytes(&self) -> u64 {
        self.kv.bytes()
    }

    pub fn weight_bytes(&self) -> u64 {
        self.weights.device_bytes()
    }

    fn check(&self, batch: &BatchInput) -> Result<(), BatchError> {
        let l = &self.limits;
        let m = batch.num_tokens();
        if m == 0 || m > l.max_tokens {
            return Err(BatchError::Tokens {
                tokens: m,
                max: l.max_tokens,
            });
        }
        if batch.samples.len() > l.max_samples {
            return Err(BatchError::Samples {
                samples: batch.samples.len(),
                max: l.max_samples,
            });
        }
        if batch.block_tables.len() > l.max_samples.max(1)
            || batch.max_blocks_per_seq() > l.max_blocks_per_seq
        {
            return Err(BatchError::Sequences {
                seqs: batch.block_tables.len(),
                blocks: batch.max_blocks_per_seq(),
                max_seqs: l.max_samples,
                max_blocks: l.max_blocks_per_seq,
            });
        }
        let n_slots = l.num_blocks * l.block_size;
        if batch.slot_mapping.iter().any(|&s| s >= n_slots)
            || batch
                .tokens
                .iter()
                .any(|&t| t as usize >= self.spec.vocab_size)
        {
            return Err(BatchError::OutOfRange);
        }
        Ok(())
    }

    /// Runs the shard's layers for one batch. One encoder, one submit, one readback.
    pub fn step(
        &mut self,
        batch: &BatchInput,
        input: ShardInput,
    ) -> Result<ShardOutput, ModelError> {
        self.check(batch)?;
        let t_start = std::time::Instant::now();
        let ctx = &self.ctx;
        // Nothing recorded on this device is pending: parameter slots can be
        // reused, which keeps every cached bind group valid step after step.
        ctx.dispatches.begin_step();
        let s = &self.scratch;
        let spec = &self.spec;
        let m = batch.num_tokens() as u32;
        let d = spec.d_model as u32;
        let (tables, stride) = batch.flat_block_tables();
        let q = &ctx.queue;
        q.write_buffer(&s.tokens, 0, bytemuck::cast_slice(&batch.tokens));
        q.write_buffer(&s.positions, 0, bytemuck::cast_slice(&batch.positions));
        q.write_buffer(
            &s.seq_of_token,
            0,
            bytemuck::cast_slice(&batch.seq_of_token),
        );
        q.write_buffer(
            &s.slot_mapping,
            0,
            bytemuck::cast_slice(&batch.slot_mapping),
        );
        q.write_buffer(&s.block_tables, 0, bytemuck::cast_slice(&tables));
        if let ShardInput::Hidden(h) = &input {
            if h.len() != batch.num_tokens() * spec.d_model {
                return Err(BatchError::Hidden {
                    floats: h.len(),
                    tokens: m,
                }
                .into());
            }
            q.write_buffer(&s.x, 0, bytemuck::cast_slice(h));
        }
        let paged = PagedBatch {
            num_tokens: m,
            positions: &s.positions,
            seq_of_token: &s.seq_of_token,
            slot_mapping: &s.slot_mapping,
            block_tables: &s.block_tables,
            max_blocks_per_seq: stride as u32,
        };
        let k = &self.kernels;
        let mut enc = ctx.encoder("step");
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            if matches!(input, ShardInput::Tokens) {
                let e = self
                    .weights
                    .embedding
                    .as_ref()
                    .expect("the first shard holds the embedding");
                k.embedding[&e.ty].encode(ctx, &mut pass, e, &s.tokens, &s.x, m)?;
            }
            let (dm, qd, ff) = (
                spec.d_model as u32,
                spec.q_dim() as u32,
                spec.ffn_dim as u32,
            );
            let moe = MoeStep {
                kernels: k,
                scratch: s,
                ctx,
                spec,
                m,
            };
            for (i, lw) in self.weights.layers.iter().enumerate() {
                let rows = Rows { count: m, width: d };
                k.rmsnorm
                    .encode(ctx, &mut pass, &s.x, &lw.attn_norm, &s.xn, rows);
                let mut input = Rounded::new(k, s, ctx, &s.xn, m * dm);
                input.mul(&mut pass, &lw.wq, &s.q, m, lw.bq.as_ref(), false)?;
                input.mul(&mut pass, &lw.wk, &s.k, m, lw.bk.as_ref(), false)?;
                input.mul(&mut pass, &lw.wv, &s.v, m, lw.bv.as_ref(), false)?;
                if let (Some(qn), Some(kn)) = (&lw.q_norm, &lw.k_norm) {
                    let hd = spec.head_dim as u32;
                    let heads = |n: usize| Rows {
                        count: m * n as u32,
                        width: hd,
                    };
                    k.rmsnorm
                        .encode_in_place(ctx, &mut pass, &s.q, qn, heads(spec.n_heads));
                    k.rmsnorm
                        .encode_in_place(ctx, &mut pass, &s.k, kn, heads(spec.n_kv_heads));
                }
                k.rope
                    .encode(ctx, &mut pass, &s.q, &s.positions, m, spec.n_heads as u32);
                k.rope.encode(
                    ctx,
                    &mut pass,
                    &s.k,
                    &s.positions,
                    m,
                    spec.n_kv_heads as u32,
                );
                let cache = self.kv.layer(i);
                k.kv_write.encode(ctx, &mut pass, &paged, &s.k, &s.v, cache);
                let layer = LayerAttention {
                    cache,
                    window: spec.layer_window(self.layers.start + i),
                    sinks: lw.sinks.as_ref(),
                };
                k.attention
                    .encode(ctx, &mut pass, &paged, &layer, &s.q, &s.att);
                let mut input = Rounded::new(k, s, ctx, &s.att, m * qd);
                input.mul(&mut pass, &lw.wo, &s.x, m, lw.bo.as_ref(), true)?;
                k.rmsnorm
                    .encode(ctx, &mut pass, &s.x, &lw.ffn_norm, &s.xn, rows);
                match &lw.ffn {
                    Ffn::Dense {
                        w_gate,
                        w_up,
                        w_down,
                    } => {
                        let mut input = Rounded::new(k, s, ctx, &s.xn, m * dm);
                        input.mul(&mut pass, w_gate, &s.gate, m, None, false)?;
                        input.mul(&mut pass, w_up, &s.up, m, None, false)?;
                        k.swiglu
                            .encode(ctx, &mut pass, &s.gate, &s.up, &s.act, m * ff);
                        let mut input = Rounded::new(k, s, ctx, &s.act, m * ff);
                        input.mul(&mut pass, w_down, &s.x, m, None, true)?;
                    }
                    Ffn::Moe(mw) => moe.encode(&mut pass, mw)?,
                }
            }
        }
        let row_bytes = u64::from(d) * 4;
        if !self.is_last() {
            enc.copy_buffer_to_buffer(&s.x, 0, &s.staging, 0, u64::from(m) * row_bytes);
            ctx.submit("step", enc)?;
            let h = ctx.map_and_read::<f32>(&s.staging, u64::from(m) * row_bytes)?;
            return Ok(ShardOutput::Hidden(h));
        }
        let r = batch.samples.len() as u32;
        if r == 0 {
            ctx.submit("step", enc)?;
            return Ok(ShardOutput::Samples(Vec::new()));
        }
        for (i, row) in batch.samples.iter().enumerate() {
            enc.copy_buffer_to_buffer(
                &s.x,
                u64::from(row.row) * row_bytes,
                &s.xs,
                i as u64 * row_bytes,
                row_bytes,
            );
        }
        let vocab = spec.vocab_size as u32;
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            let norm = self.weights.output_norm.as_ref().expect("last shard");
            let out = self.weights.output.as_ref().expect("last shard");
            k.rmsnorm.encode(
                ctx,
                &mut pass,
                &s.xs,
                norm,
                &s.xn,
                Rows { count: r, width: d },
            );
            let mut input = Rounded::new(k, s, ctx, &s.xn, r * d);
            input.mul(&mut pass, out, &s.logits, r, None, false)?;
            k.argmax.encode(
                ctx,
                &mut pass,
                &s.logits,
                Rows {
                    count: r,
                    width: vocab,
                },
                &s.ids,
                None,
            );
        }
        let ids_bytes = u64::from(r) * 4;
        enc.copy_buffer_to_buffer(&s.ids, 0, &s.staging, 0, ids_bytes);
        let logits_row = u64::from(vocab) * 4;
        let mut read = ids_bytes;
        let mut logits_at = Vec::new();
        for (i, row) in batch.samples.iter().enumerate() {
            if row.want_logits {
                enc.copy_buffer_to_buffer(
                    &s.logits,
                    i as u64 * logits_row,
                    &s.staging,
                    read,
                    logits_row,
                );
                logits_at.push((i, read));
                read += logits_row;
            }
        }
        let t_encoded = t_start.elapsed();
        ctx.submit("step", enc)?;
        let data = ctx.map_and_read::<u32>(&s.staging, read)?;
        tracing::trace!(
            "step of {m} tokens: encoding {:.2} ms, device and readback {:.2} ms",
            t_encoded.as_secs_f64() * 1e3,
            (t_start.elapsed() - t_encoded).as_secs_f64() * 1e3
        );
        let mut out: Vec<SampleOutput> = data[..r as usize]
            .iter()
            .map(|&argmax| SampleOutput {
                argmax,
                logits: None,
            })
            .collect();
        for (i, at) in logits_at {
            let start = (at / 4) as usize;
            let row: &[u32] = &data[start..start + vocab as usize];
            out[i].logits = Some(bytemuck::cast_slice(row).to_vec());
        }
        Ok(ShardOutput::Samples(out))
    }
}

/// A gpt-oss mixture-of-experts block for one step, from the normed `xn`
/// into the residual `x`.
struct MoeStep<'a> {
    kernels: &'a Kernels,
    scratch: &'a Scratch,
    ctx: &'a GpuContext,
    spec: &'a ModelSpec,
    m: u32,
}

impl MoeStep<'_> {
    /// Routes each token to its experts (top-k of the raw router logits,
    /// softmax over the k), runs their gate and up projections, the clamped
    /// SwiGLU, and adds the routing-weighted sum of their down projections
    /// into `x`. The expert matmuls read exact f32 activations (no rounding
    /// onto an activation grid).
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>, w: &MoeWeights) -> Result<(), GpuError> {
        let (k, s, ctx, m) = (self.kernels, self.scratch, self.ctx, self.m);
        let spec = self.spec;
        let (e, used) = (spec.n_experts as u32, spec.n_experts_used as u32);
        let mut input = Rounded::new(k, s, ctx, &s.xn, m * spec.d_model as u32);
        input.mul(
            pass,
            &w.router,
            &s.router_logits,
            m,
            Some(&w.router_bias),
            false,
        )?;
        k.moe_router
            .as_ref()
            .expect("built for a model with experts")
            .encode(
                ctx,
                pass,
                &s.router_logits,
                &s.expert_ids,
                &s.expert_weights,
                m,
                e,
                used,
            )?;
        let route = Routing {
            m,
            k_used: used,
            ids: &s.expert_ids,
            weights: &s.expert_weights,
        };
        let mm = |t: GgmlType| &k.moe_matmul[&t];
        mm(w.gate.ty).encode(
            ctx,
            pass,
            &w.gate,
            &route,
            &s.xn,
            false,
            &s.gate,
            MoeOutput::PerSlot,
            Some(&w.gate_bias),
        )?;
        mm(w.up.ty).encode(
            ctx,
            pass,
            &w.up,
            &route,
            &s.xn,
            false,
            &s.up,
            MoeOutput::PerSlot,
            Some(&w.up_bias),
        )?;
        let n = m * used * spec.expert_ffn_dim as u32;
        k.swiglu.encode(ctx, pass, &s.gate, &s.up, &s.act, n);
        mm(w.down.ty).encode(
            ctx,
            pass,
            &w.down,
            &route,
            &s.act,
            true,
            &s.x,
            MoeOutput::Combine,
            Some(&w.down_bias),
        )
    }
}

/// One matmul input and its rounded copies: rounds `x` onto a weight type's
/// activation grid the first time that grid is asked for (when rounding is
/// enabled), so q, k and v (or gate and up) share one rounding.
struct Rounded<'a> {
    kernels: &'a Kernels,
    scratch: &'a Scratch,
    ctx: &'a GpuContext,
    x: &'a wgpu::Buffer,
    n: u32,
    done: Vec<ActQuant>,
}

impl<'a> Rounded<'a> {
    fn new(
        kernels: &'a Kernels,
        scratch: &'a Scratch,
        ctx: &'a GpuContext,
        x: &'a wgpu::Buffer,
        n: u32,
    ) -> Self {
        Self {
            kernels,
            scratch,
            ctx,
            x,
            n,
            done: Vec::new(),
        }
    }

    fn get(&mut self, pass: &mut wgpu::ComputePass<'_>, ty: GgmlType) -> &'a wgpu::Buffer {
        let q = ActQuant::for_weight(ty);
        let Some(buf) = self.scratch.xq.get(&q) else {
            return self.x;
        };
        if !self.done.contains(&q) {
            // Another grid's copy is in a different buffer, so earlier
            // roundings stay valid.
            self.kernels
                .quantize_act
                .encode(self.ctx, pass, q, self.x, buf, self.n);
            self.done.push(q);
        }
        buf
    }

    /// Records `y (+)= round(x) · wᵀ (+ bias)` for `rows` token rows.
    fn mul(
        &mut self,
        pass: &mut wgpu::ComputePass<'_>,
        w: &DeviceTensor,
        y: &wgpu::Buffer,
        rows: u32,
        bias: Option<&wgpu::Buffer>,
        accumulate: bool,
    ) -> Result<(), GpuError> {
        let x = self.get(pass, w.ty);
        self.kernels.matmul[&w.ty].encode(self.ctx, pass, w, x, y, rows, bias, accumulate)
    }
}

fn kv_err(e: crate::gpu::kernels::kv_write::KvError) -> ModelError {
    ModelError::Invalid {
        path: "kv cache".into(),
        message: e.to_string(),
    }
}
