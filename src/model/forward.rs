//! The model's shape: what one step records for the embedding, each layer's
//! attention block and feed-forward block, and the head, into a compute pass
//! the caller opened.
//!
//! This module owns the kernels a shard compiles ([`Kernels`], chosen per
//! architecture), the declaration of the per-step buffers they read and
//! write ([`Scratch`]; the shard sizes them for its limits), and the order of
//! the dispatches within each block. The per-architecture differences live in
//! the block they change: q/k/v biases (qwen2) and the per-head q/k norm
//! (qwen3) in the attention block with gpt-oss's sinks, sliding windows and
//! output-projection bias; gpt-oss's clamped SwiGLU and routed experts in the
//! feed-forward block.
//!
//! It records only: it never creates a buffer, submits, or reads back (that
//! is `shard.rs`'s step), and it holds no sequence state. The dispatch order
//! here is what the bitwise reference tests pin; reordering or merging
//! dispatches is a numeric change.

use std::collections::HashMap;

use crate::gguf::GgmlType;
use crate::gpu::kernels::moe::{MoeMatmul, MoeOutput, MoeRouter, Routing};
use crate::gpu::kernels::{
    argmax::Argmax,
    attention::{AttentionConfig, AttentionKernel, LayerAttention, PagedAttention},
    embedding::Embedding,
    kv_write::{KvCacheLayout, KvError, KvWrite, LayerCache, PagedBatch},
    matmul::Matmul,
    quantize_act::{ActQuant, QuantizeAct},
    rmsnorm::{RmsNorm, Rows},
    rope::{Rope, RopeParams},
    swiglu::{SwiGlu, SwiGluMode},
};
use crate::gpu::weights::DeviceTensor;
use crate::gpu::{GpuContext, GpuError};
use crate::step::SampleRow;

use super::spec::{Arch, ModelError, ModelSpec};
use super::weights::{Ffn, LayerWeights, MoeWeights, ShardWeights};

/// The per-step buffers a pass reads and writes; `shard.rs` sizes them for
/// its limits and uploads the batch's inputs into the first five.
pub(super) struct Scratch {
    pub tokens: wgpu::Buffer,
    pub positions: wgpu::Buffer,
    pub seq_of_token: wgpu::Buffer,
    pub slot_mapping: wgpu::Buffer,
    pub block_tables: wgpu::Buffer,
    pub x: wgpu::Buffer,
    pub xn: wgpu::Buffer,
    pub q: wgpu::Buffer,
    pub k: wgpu::Buffer,
    pub v: wgpu::Buffer,
    pub att: wgpu::Buffer,
    /// `[M][ffn_dim]`, or for a mixture of experts `[M][k_used][expert_ffn]`.
    pub gate: wgpu::Buffer,
    pub up: wgpu::Buffer,
    /// silu(gate) * up (a kernel's output may not alias its inputs).
    pub act: wgpu::Buffer,
    /// Mixture of experts: router logits `[M][n_experts]`, the chosen
    /// experts `[M][k_used]` (u32) and their weights `[M][k_used]`.
    pub router_logits: wgpu::Buffer,
    pub expert_ids: wgpu::Buffer,
    pub expert_weights: wgpu::Buffer,
    pub xs: wgpu::Buffer,
    pub logits: wgpu::Buffer,
    pub ids: wgpu::Buffer,
    /// Matmul inputs rounded to an activation grid, one buffer per grid.
    pub xq: HashMap<ActQuant, wgpu::Buffer>,
    pub staging: wgpu::Buffer,
}

impl Scratch {
    /// The paged-attention view of a batch of `m` tokens whose block tables
    /// were uploaded with row stride `stride`.
    pub fn paged(&self, m: u32, stride: usize) -> PagedBatch<'_> {
        PagedBatch {
            num_tokens: m,
            positions: &self.positions,
            seq_of_token: &self.seq_of_token,
            slot_mapping: &self.slot_mapping,
            block_tables: &self.block_tables,
            max_blocks_per_seq: stride as u32,
        }
    }
}

/// The kernels one shard's layers need, compiled once at load.
pub(super) struct Kernels {
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

impl Kernels {
    /// Compiles a matmul (and an embedding gather, an expert matmul) per
    /// weight type the shard holds, and the architecture's RoPE, attention
    /// and SwiGLU variants. `freq_factors` are Llama 3's long-context RoPE
    /// divisors.
    pub fn new(
        ctx: &GpuContext,
        spec: &ModelSpec,
        w: &ShardWeights,
        layout: KvCacheLayout,
        freq_factors: Option<Vec<f32>>,
    ) -> Result<Self, ModelError> {
        let mut matmul = HashMap::new();
        for t in w.matrix_types() {
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
        let attention = AttentionConfig {
            layout,
            n_heads: spec.n_heads as u32,
            scale: 1.0 / (spec.head_dim as f32).sqrt(),
            kernel: AttentionKernel::for_device(ctx),
        };
        let swiglu = if spec.arch == Arch::GptOss {
            SwiGluMode::GPT_OSS
        } else {
            SwiGluMode::Silu
        };
        Ok(Self {
            embedding,
            matmul,
            rmsnorm: RmsNorm::new(ctx, spec.rms_eps)?,
            rope: Rope::new(ctx, &rope)?,
            kv_write: KvWrite::new(ctx, layout).map_err(kv_err)?,
            attention: PagedAttention::new(ctx, attention).map_err(kv_err)?,
            swiglu: SwiGlu::new(ctx, swiglu)?,
            moe_router,
            moe_matmul,
            argmax: Argmax::new(ctx)?,
            quantize_act: QuantizeAct::new(ctx)?,
        })
    }
}

fn kv_err(e: KvError) -> ModelError {
    ModelError::Invalid {
        path: "kv cache".into(),
        message: e.to_string(),
    }
}

/// One step's recorder: the shard's kernels and buffers and the batch's
/// paged view (`paged.num_tokens` token rows).
pub(super) struct Forward<'a> {
    pub ctx: &'a GpuContext,
    pub spec: &'a ModelSpec,
    pub kernels: &'a Kernels,
    pub scratch: &'a Scratch,
    pub paged: PagedBatch<'a>,
}

impl<'a> Forward<'a> {
    fn m(&self) -> u32 {
        self.paged.num_tokens
    }

    fn rows(&self) -> Rows {
        Rows {
            count: self.m(),
            width: self.spec.d_model as u32,
        }
    }

    /// A matmul input `x` of `n` floats, rounded lazily (see [`Rounded`]).
    fn round(&self, x: &'a wgpu::Buffer, n: u32) -> Rounded<'a> {
        Rounded {
            kernels: self.kernels,
            scratch: self.scratch,
            ctx: self.ctx,
            x,
            n,
            done: Vec::new(),
        }
    }

    /// Gathers the token ids' embedding rows into the residual `x`.
    pub fn embed(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        e: &DeviceTensor,
    ) -> Result<(), GpuError> {
        let s = self.scratch;
        self.kernels.embedding[&e.ty].encode(self.ctx, pass, e, &s.tokens, &s.x, self.m())
    }

    /// The attention block, from the residual `x` back into it: norm, q/k/v
    /// projections (with qwen2's biases), qwen3's per-head q/k norm, RoPE,
    /// the KV write into this layer's pages, paged attention (gpt-oss's
    /// sinks, and `window`, a sliding window or 0), and the output
    /// projection (with gpt-oss's bias) added into `x`.
    pub fn attention(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        lw: &LayerWeights,
        cache: LayerCache<'_>,
        window: u32,
    ) -> Result<(), GpuError> {
        let (k, s, ctx, spec, m) = (self.kernels, self.scratch, self.ctx, self.spec, self.m());
        k.rmsnorm
            .encode(ctx, pass, &s.x, &lw.attn_norm, &s.xn, self.rows());
        let mut input = self.round(&s.xn, m * spec.d_model as u32);
        input.mul(pass, &lw.wq, &s.q, m, lw.bq.as_ref(), false)?;
        input.mul(pass, &lw.wk, &s.k, m, lw.bk.as_ref(), false)?;
        input.mul(pass, &lw.wv, &s.v, m, lw.bv.as_ref(), false)?;
        // qwen3 norms each head of q and k before RoPE; no other model has
        // these weights.
        if let (Some(qn), Some(kn)) = (&lw.q_norm, &lw.k_norm) {
            let heads = |n: usize| Rows {
                count: m * n as u32,
                width: spec.head_dim as u32,
            };
            k.rmsnorm
                .encode_in_place(ctx, pass, &s.q, qn, heads(spec.n_heads));
            k.rmsnorm
                .encode_in_place(ctx, pass, &s.k, kn, heads(spec.n_kv_heads));
        }
        k.rope
            .encode(ctx, pass, &s.q, &s.positions, m, spec.n_heads as u32);
        k.rope
            .encode(ctx, pass, &s.k, &s.positions, m, spec.n_kv_heads as u32);
        k.kv_write.encode(ctx, pass, &self.paged, &s.k, &s.v, cache);
        let layer = LayerAttention {
            cache,
            window,
            sinks: lw.sinks.as_ref(),
        };
        k.attention
            .encode(ctx, pass, &self.paged, &layer, &s.q, &s.att);
        let mut input = self.round(&s.att, m * spec.q_dim() as u32);
        input.mul(pass, &lw.wo, &s.x, m, lw.bo.as_ref(), true)
    }

    /// The feed-forward block, from the residual `x` back into it: norm,
    /// then the layer's dense SwiGLU or routed experts.
    pub fn feed_forward(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        lw: &LayerWeights,
    ) -> Result<(), GpuError> {
        let s = self.scratch;
        self.kernels
            .rmsnorm
            .encode(self.ctx, pass, &s.x, &lw.ffn_norm, &s.xn, self.rows());
        match &lw.ffn {
            Ffn::Dense {
                w_gate,
                w_up,
                w_down,
            } => self.dense_ffn(pass, w_gate, w_up, w_down),
            Ffn::Moe(mw) => self.moe(pass, mw),
        }
    }

    /// `x += down(silu(gate xn) * up xn)`.
    fn dense_ffn(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        w_gate: &DeviceTensor,
        w_up: &DeviceTensor,
        w_down: &DeviceTensor,
    ) -> Result<(), GpuError> {
        let (k, s, ctx, m) = (self.kernels, self.scratch, self.ctx, self.m());
        let ff = m * self.spec.ffn_dim as u32;
        let mut input = self.round(&s.xn, m * self.spec.d_model as u32);
        input.mul(pass, w_gate, &s.gate, m, None, false)?;
        input.mul(pass, w_up, &s.up, m, None, false)?;
        k.swiglu.encode(ctx, pass, &s.gate, &s.up, &s.act, ff);
        let mut input = self.round(&s.act, ff);
        input.mul(pass, w_down, &s.x, m, None, true)
    }

    /// gpt-oss's mixture of experts: routes each token to its experts
    /// (top-k of the raw router logits, softmax over the k), runs their gate
    /// and up projections, the clamped SwiGLU, and adds the routing-weighted
    /// sum of their down projections into `x`. The expert matmuls read exact
    /// f32 activations (no rounding onto an activation grid).
    fn moe(&self, pass: &mut wgpu::ComputePass<'_>, w: &MoeWeights) -> Result<(), GpuError> {
        let (k, s, ctx, spec, m) = (self.kernels, self.scratch, self.ctx, self.spec, self.m());
        let (e, used) = (spec.n_experts as u32, spec.n_experts_used as u32);
        let mut input = self.round(&s.xn, m * spec.d_model as u32);
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

    /// The head, for the sampled rows only: copies them out of `x` into
    /// `xs`, then in a pass of its own the final norm, the logits
    /// `[rows][vocab]` and their argmax into `ids`. `samples` is not empty.
    pub fn head(
        &self,
        enc: &mut wgpu::CommandEncoder,
        samples: &[SampleRow],
        norm: &wgpu::Buffer,
        output: &DeviceTensor,
    ) -> Result<(), GpuError> {
        let (k, s, ctx) = (self.kernels, self.scratch, self.ctx);
        let d = self.spec.d_model as u32;
        let row_bytes = u64::from(d) * 4;
        for (i, row) in samples.iter().enumerate() {
            enc.copy_buffer_to_buffer(
                &s.x,
                u64::from(row.row) * row_bytes,
                &s.xs,
                i as u64 * row_bytes,
                row_bytes,
            );
        }
        let r = samples.len() as u32;
        let mut pass = enc.begin_compute_pass(&Default::default());
        k.rmsnorm.encode(
            ctx,
            &mut pass,
            &s.xs,
            norm,
            &s.xn,
            Rows { count: r, width: d },
        );
        let mut input = self.round(&s.xn, r * d);
        input.mul(&mut pass, output, &s.logits, r, None, false)?;
        let logits = Rows {
            count: r,
            width: self.spec.vocab_size as u32,
        };
        k.argmax
            .encode(ctx, &mut pass, &s.logits, logits, &s.ids, None);
        Ok(())
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
