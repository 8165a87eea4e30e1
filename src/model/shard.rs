//! A model shard: the weights of a contiguous range of layers on one device,
//! those layers' KV pages, and the step that runs them for a batch.
//!
//! One [`ModelShard::step`] uploads the batch's inputs, records every
//! layer's blocks (`forward.rs`: attention, then the feed-forward block) and
//! on the last shard the head into one command encoder, submits once, and
//! reads back one small buffer: the sampled ids (and only the logits rows a
//! CPU sampler needs) on the last shard, or the hidden states to hand to the
//! next shard. With one GPU there is one shard holding every layer.
//!
//! The shard owns its device buffers (it sizes the step's scratch for its
//! [`ShardLimits`]) but no sequence state: each step's [`BatchInput`] says
//! which tokens to run, at which positions, and which KV pages they use.
//! What a layer computes, and per-architecture differences, belong in
//! `forward.rs`, not here.

use std::collections::HashMap;
use std::ops::Range;

use crate::gguf::reader::GgufFile;
use crate::gpu::kernels::quantize_act::ActQuant;
use crate::gpu::{GpuContext, GpuError};
use crate::step::{BatchError, BatchInput, SampleOutput, SampleRow};

use super::forward::{Forward, Kernels, Scratch};
use super::kv_cache::{layout_with, DeviceKvCache};
use super::spec::{ModelError, ModelSpec};
use super::weights::ShardWeights;

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
        let kernels = Kernels::new(&ctx, spec, &weights, layout, freq_factors)?;
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

    fn check(&self, batch: &BatchInput, input: &ShardInput) -> Result<(), BatchError> {
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
        if let ShardInput::Hidden(h) = input {
            if h.len() != m * self.spec.d_model {
                return Err(BatchError::Hidden {
                    floats: h.len(),
                    tokens: m as u32,
                });
            }
        }
        Ok(())
    }

    /// Runs the shard's layers for one batch. One encoder, one submit, one
    /// readback: the hidden states for the next shard, or the last shard's
    /// sampled ids and the logits rows a CPU sampler asked for.
    pub fn step(
        &mut self,
        batch: &BatchInput,
        input: ShardInput,
    ) -> Result<ShardOutput, ModelError> {
        self.check(batch, &input)?;
        let t_start = std::time::Instant::now();
        // Nothing recorded on this device is pending: parameter slots can be
        // reused, which keeps every cached bind group valid step after step.
        self.ctx.begin_step();
        let ctx = &self.ctx;
        let stride = self.upload(batch, &input);
        let f = Forward {
            ctx,
            spec: &self.spec,
            kernels: &self.kernels,
            scratch: &self.scratch,
            paged: self.scratch.paged(batch.num_tokens() as u32, stride),
        };
        let mut enc = ctx.encoder("step");
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            if matches!(input, ShardInput::Tokens) {
                let e = self.weights.embedding.as_ref();
                f.embed(&mut pass, e.expect("the first shard holds the embedding"))?;
            }
            for (i, lw) in self.weights.layers.iter().enumerate() {
                let window = self.spec.layer_window(self.layers.start + i);
                f.attention(&mut pass, lw, self.kv.layer(i), window)?;
                f.feed_forward(&mut pass, lw)?;
            }
        }
        if !self.is_last() {
            return self.hand_on(enc, batch.num_tokens());
        }
        if batch.samples.is_empty() {
            ctx.submit("step", enc)?;
            return Ok(ShardOutput::Samples(Vec::new()));
        }
        let norm = self.weights.output_norm.as_ref().expect("last shard");
        let output = self.weights.output.as_ref().expect("last shard");
        f.head(&mut enc, &batch.samples, norm, output)?;
        let read = self.copy_samples(&mut enc, &batch.samples);
        let t_encoded = t_start.elapsed();
        ctx.submit("step", enc)?;
        let data = ctx.map_and_read::<u32>(&self.scratch.staging, read.bytes)?;
        tracing::trace!(
            "step of {} tokens: encoding {:.2} ms, device and readback {:.2} ms",
            batch.num_tokens(),
            t_encoded.as_secs_f64() * 1e3,
            (t_start.elapsed() - t_encoded).as_secs_f64() * 1e3
        );
        Ok(ShardOutput::Samples(read.samples(&data)))
    }

    /// Writes the batch's inputs (and a previous shard's hidden states) into
    /// the scratch buffers; returns the row stride of the block tables.
    fn upload(&self, batch: &BatchInput, input: &ShardInput) -> usize {
        let (s, q) = (&self.scratch, &self.ctx.queue);
        let (tables, stride) = batch.flat_block_tables();
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
        if let ShardInput::Hidden(h) = input {
            q.write_buffer(&s.x, 0, bytemuck::cast_slice(h));
        }
        stride
    }

    /// Not the last shard: submits and reads back the `m` rows of hidden
    /// states for the next one.
    fn hand_on(&self, mut enc: wgpu::CommandEncoder, m: usize) -> Result<ShardOutput, ModelError> {
        let s = &self.scratch;
        let bytes = (m * self.spec.d_model * 4) as u64;
        enc.copy_buffer_to_buffer(&s.x, 0, &s.staging, 0, bytes);
        self.ctx.submit("step", enc)?;
        let h = self.ctx.map_and_read::<f32>(&s.staging, bytes)?;
        Ok(ShardOutput::Hidden(h))
    }

    /// Copies the sampled ids, then each logits row a sample asked for, into
    /// the staging buffer, and says where each lies.
    fn copy_samples(&self, enc: &mut wgpu::CommandEncoder, samples: &[SampleRow]) -> Readback {
        let s = &self.scratch;
        let ids_bytes = samples.len() as u64 * 4;
        enc.copy_buffer_to_buffer(&s.ids, 0, &s.staging, 0, ids_bytes);
        let vocab = self.spec.vocab_size;
        let logits_row = vocab as u64 * 4;
        let mut read = Readback {
            rows: samples.len(),
            vocab,
            bytes: ids_bytes,
            logits_at: Vec::new(),
        };
        for (i, row) in samples.iter().enumerate() {
            if row.want_logits {
                let (from, to) = (i as u64 * logits_row, read.bytes);
                enc.copy_buffer_to_buffer(&s.logits, from, &s.staging, to, logits_row);
                read.logits_at.push((i, to));
                read.bytes += logits_row;
            }
        }
        read
    }
}

/// The layout of the last shard's readback: `rows` sampled ids, then the
/// logits rows asked for.
struct Readback {
    rows: usize,
    vocab: usize,
    /// Bytes to read.
    bytes: u64,
    /// (sample index, byte offset of its logits row).
    logits_at: Vec<(usize, u64)>,
}

impl Readback {
    fn samples(&self, data: &[u32]) -> Vec<SampleOutput> {
        let mut out: Vec<SampleOutput> = data[..self.rows]
            .iter()
            .map(|&argmax| SampleOutput {
                argmax,
                logits: None,
            })
            .collect();
        for &(i, at) in &self.logits_at {
            let start = (at / 4) as usize;
            let row: &[u32] = &data[start..start + self.vocab];
            out[i].logits = Some(bytemuck::cast_slice(row).to_vec());
        }
        out
    }
}
