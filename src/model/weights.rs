//! A shard's weights on the device: the token embedding (first shard), the
//! layers of its range, and the final norm and output projection (last
//! shard). Matrices stay in their GGUF type ([`DeviceTensor`]); norms and
//! biases are dequantized to f32 at load, since they are small and read once
//! per row. A gpt-oss layer's feed-forward block is a mixture of experts
//! ([`MoeWeights`]): the expert stacks stay in their GGUF type too.

use std::ops::Range;
use std::sync::Arc;

use crate::gguf::{quant, reader::GgufFile, GgmlType};
use crate::gpu::weights::DeviceTensor;
use crate::gpu::GpuContext;

use super::spec::{Arch, ModelError, ModelSpec};
use crate::gpu::kernels::moe::ExpertStack;

/// The types the matmul, embedding and expert-matmul kernels read directly
/// (each has a kernel test against a plain Rust dequantization; a type
/// added to the GGUF reader is refused here until its kernels are).
pub const MATRIX_TYPES: [GgmlType; GgmlType::ALL.len()] = GgmlType::ALL;

pub struct LayerWeights {
    pub attn_norm: wgpu::Buffer,
    pub wq: DeviceTensor,
    pub wk: DeviceTensor,
    pub wv: DeviceTensor,
    pub wo: DeviceTensor,
    pub bq: Option<wgpu::Buffer>,
    pub bk: Option<wgpu::Buffer>,
    pub bv: Option<wgpu::Buffer>,
    /// Output projection bias (gpt-oss).
    pub bo: Option<wgpu::Buffer>,
    /// Per-head attention sink logits `[n_heads]` (gpt-oss).
    pub sinks: Option<wgpu::Buffer>,
    /// Per-head RMSNorm weights of q and k, `[head_dim]` each (qwen3).
    pub q_norm: Option<wgpu::Buffer>,
    pub k_norm: Option<wgpu::Buffer>,
    /// The norm before the feed-forward block (gpt-oss's GGUF calls it
    /// `post_attention_norm`).
    pub ffn_norm: wgpu::Buffer,
    pub ffn: Ffn,
}

/// A layer's feed-forward block.
pub enum Ffn {
    /// llama, qwen2: `down(silu(gate x) * up x)`.
    Dense {
        w_gate: DeviceTensor,
        w_up: DeviceTensor,
        w_down: DeviceTensor,
    },
    /// gpt-oss: a routed mixture of experts.
    Moe(MoeWeights),
}

/// A gpt-oss mixture-of-experts block. Expert stacks are `[E][rows][K]`;
/// the biases are `[E][rows]` f32.
pub struct MoeWeights {
    /// `[E][d_model]`: router logits `x · routerᵀ + router_bias`.
    pub router: DeviceTensor,
    pub router_bias: wgpu::Buffer,
    /// `[E][expert_ffn][d_model]`.
    pub gate: ExpertStack,
    pub gate_bias: wgpu::Buffer,
    pub up: ExpertStack,
    pub up_bias: wgpu::Buffer,
    /// `[E][d_model][expert_ffn]`.
    pub down: ExpertStack,
    pub down_bias: wgpu::Buffer,
}

impl LayerWeights {
    /// The dense matrices (the expert stacks are not included).
    fn matrices(&self) -> Vec<&DeviceTensor> {
        let mut v = vec![&self.wq, &self.wk, &self.wv, &self.wo];
        match &self.ffn {
            Ffn::Dense {
                w_gate,
                w_up,
                w_down,
            } => v.extend([w_gate, w_up, w_down]),
            Ffn::Moe(m) => v.push(&m.router),
        }
        v
    }

    /// The f32 vectors: norms, biases, sinks.
    fn vectors(&self) -> Vec<&wgpu::Buffer> {
        let mut v = vec![&self.attn_norm, &self.ffn_norm];
        v.extend(
            [
                &self.bq,
                &self.bk,
                &self.bv,
                &self.bo,
                &self.sinks,
                &self.q_norm,
                &self.k_norm,
            ]
            .into_iter()
            .flatten(),
        );
        if let Ffn::Moe(m) = &self.ffn {
            v.extend([&m.router_bias, &m.gate_bias, &m.up_bias, &m.down_bias]);
        }
        v
    }

    fn experts(&self) -> Vec<&ExpertStack> {
        match &self.ffn {
            Ffn::Dense { .. } => Vec::new(),
            Ffn::Moe(m) => vec![&m.gate, &m.up, &m.down],
        }
    }
}

pub struct ShardWeights {
    /// First shard only.
    pub embedding: Option<Arc<DeviceTensor>>,
    pub layers: Vec<LayerWeights>,
    /// Last shard only.
    pub output_norm: Option<wgpu::Buffer>,
    /// Last shard only; the embedding itself when the model ties them.
    pub output: Option<Arc<DeviceTensor>>,
}

struct Loader<'a> {
    ctx: &'a GpuContext,
    file: &'a GgufFile,
    spec: &'a ModelSpec,
    path: String,
}

impl Loader<'_> {
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<DeviceTensor, ModelError> {
        let info = self.file.tensor(name)?;
        if info.row_len() != cols || info.n_rows() != rows {
            return Err(ModelError::BadShape {
                path: self.path.clone(),
                tensor: name.to_string(),
                found: info.dims.clone(),
                expected: vec![cols as u64, rows as u64],
            });
        }
        if !MATRIX_TYPES.contains(&info.ggml_type) {
            return Err(ModelError::UnsupportedType {
                path: self.path.clone(),
                tensor: name.to_string(),
                ty: info.ggml_type,
                what: "matmul",
            });
        }
        let bytes = self.file.tensor_bytes(info);
        Ok(DeviceTensor::upload(
            self.ctx,
            name,
            info.ggml_type,
            [cols, rows],
            &bytes,
        )?)
    }

    /// A small vector (norm weight, bias) as f32 on the device.
    fn vector(&self, name: &str, len: usize) -> Result<wgpu::Buffer, ModelError> {
        let info = self.file.tensor(name)?;
        if info.n_elems() as usize != len {
            return Err(ModelError::BadShape {
                path: self.path.clone(),
                tensor: name.to_string(),
                found: info.dims.clone(),
                expected: vec![len as u64],
            });
        }
        let mut v = vec![0f32; len];
        quant::dequantize(info.ggml_type, &self.file.tensor_bytes(info), &mut v);
        Ok(self.ctx.storage_from(name, &v)?)
    }

    /// An expert stack: GGUF dims `[cols, rows, n_experts]`.
    fn experts(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
        n_experts: usize,
    ) -> Result<ExpertStack, ModelError> {
        let info = self.file.tensor(name)?;
        let expected = [cols as u64, rows as u64, n_experts as u64];
        if info.dims != expected {
            return Err(ModelError::BadShape {
                path: self.path.clone(),
                tensor: name.to_string(),
                found: info.dims.clone(),
                expected: expected.to_vec(),
            });
        }
        if !MATRIX_TYPES.contains(&info.ggml_type) {
            return Err(ModelError::UnsupportedType {
                path: self.path.clone(),
                tensor: name.to_string(),
                ty: info.ggml_type,
                what: "expert matmul",
            });
        }
        Ok(ExpertStack::upload(
            self.ctx,
            name,
            info.ggml_type,
            [cols, rows, n_experts],
            &self.file.tensor_bytes(info),
        )?)
    }

    fn moe(&self, l: usize) -> Result<MoeWeights, ModelError> {
        let s = self.spec;
        let n = |t: &str| format!("blk.{l}.{t}");
        let (e, f, d) = (s.n_experts, s.expert_ffn_dim, s.d_model);
        Ok(MoeWeights {
            router: self.matrix(&n("ffn_gate_inp.weight"), e, d)?,
            router_bias: self.vector(&n("ffn_gate_inp.bias"), e)?,
            gate: self.experts(&n("ffn_gate_exps.weight"), f, d, e)?,
            gate_bias: self.vector(&n("ffn_gate_exps.bias"), e * f)?,
            up: self.experts(&n("ffn_up_exps.weight"), f, d, e)?,
            up_bias: self.vector(&n("ffn_up_exps.bias"), e * f)?,
            down: self.experts(&n("ffn_down_exps.weight"), d, f, e)?,
            down_bias: self.vector(&n("ffn_down_exps.bias"), e * d)?,
        })
    }

    fn opt_vector(&self, name: &str, len: usize) -> Result<Option<wgpu::Buffer>, ModelError> {
        match self.file.get_tensor(name) {
            Some(_) => self.vector(name, len).map(Some),
            None => Ok(None),
        }
    }

    fn layer(&self, l: usize) -> Result<LayerWeights, ModelError> {
        let s = self.spec;
        let n = |t: &str| format!("blk.{l}.{t}");
        let gpt_oss = s.arch == Arch::GptOss;
        let (ffn_norm, ffn) = if gpt_oss {
            (
                self.vector(&n("post_attention_norm.weight"), s.d_model)?,
                Ffn::Moe(self.moe(l)?),
            )
        } else {
            (
                self.vector(&n("ffn_norm.weight"), s.d_model)?,
                Ffn::Dense {
                    w_gate: self.matrix(&n("ffn_gate.weight"), s.ffn_dim, s.d_model)?,
                    w_up: self.matrix(&n("ffn_up.weight"), s.ffn_dim, s.d_model)?,
                    w_down: self.matrix(&n("ffn_down.weight"), s.d_model, s.ffn_dim)?,
                },
            )
        };
        Ok(LayerWeights {
            attn_norm: self.vector(&n("attn_norm.weight"), s.d_model)?,
            wq: self.matrix(&n("attn_q.weight"), s.q_dim(), s.d_model)?,
            wk: self.matrix(&n("attn_k.weight"), s.kv_dim(), s.d_model)?,
            wv: self.matrix(&n("attn_v.weight"), s.kv_dim(), s.d_model)?,
            wo: self.matrix(&n("attn_output.weight"), s.d_model, s.q_dim())?,
            bq: self.opt_vector(&n("attn_q.bias"), s.q_dim())?,
            bk: self.opt_vector(&n("attn_k.bias"), s.kv_dim())?,
            bv: self.opt_vector(&n("attn_v.bias"), s.kv_dim())?,
            bo: self.opt_vector(&n("attn_output.bias"), s.d_model)?,
            sinks: if gpt_oss {
                Some(self.vector(&n("attn_sinks.weight"), s.n_heads)?)
            } else {
                None
            },
            q_norm: if s.qk_norm {
                Some(self.vector(&n("attn_q_norm.weight"), s.head_dim)?)
            } else {
                None
            },
            k_norm: if s.qk_norm {
                Some(self.vector(&n("attn_k_norm.weight"), s.head_dim)?)
            } else {
                None
            },
            ffn_norm,
            ffn,
        })
    }
}

impl ShardWeights {
    /// Uploads the weights a shard holding `layers` needs.
    pub fn load(
        ctx: &GpuContext,
        file: &GgufFile,
        spec: &ModelSpec,
        layers: Range<usize>,
    ) -> Result<Self, ModelError> {
        let loader = Loader {
            ctx,
            file,
            spec,
            path: file.path.display().to_string(),
        };
        let first = layers.start == 0;
        let last = layers.end == spec.n_layers;
        let embedding = if first || (last && spec.tied_output) {
            Some(Arc::new(loader.matrix(
                "token_embd.weight",
                spec.vocab_size,
                spec.d_model,
            )?))
        } else {
            None
        };
        let layer_weights = layers
            .clone()
            .map(|l| loader.layer(l))
            .collect::<Result<Vec<_>, _>>()?;
        let (output_norm, output) = if last {
            let norm = loader.vector("output_norm.weight", spec.d_model)?;
            let out = if spec.tied_output {
                embedding.clone().expect("loaded above for a tied output")
            } else {
                Arc::new(loader.matrix("output.weight", spec.vocab_size, spec.d_model)?)
            };
            (Some(norm), Some(out))
        } else {
            (None, None)
        };
        Ok(Self {
            embedding: if first { embedding } else { None },
            layers: layer_weights,
            output_norm,
            output,
        })
    }

    /// The distinct types of the dense matrices multiplied by this shard.
    pub fn matrix_types(&self) -> Vec<GgmlType> {
        let mut types = Vec::new();
        let mut note = |t: &DeviceTensor| {
            if !types.contains(&t.ty) {
                types.push(t.ty);
            }
        };
        for l in &self.layers {
            for t in l.matrices() {
                note(t);
            }
        }
        if let Some(o) = &self.output {
            note(o);
        }
        types
    }

    /// The distinct types of the expert stacks (empty without experts).
    pub fn expert_types(&self) -> Vec<GgmlType> {
        let mut types = Vec::new();
        for t in self.layers.iter().flat_map(LayerWeights::experts) {
            if !types.contains(&t.ty) {
                types.push(t.ty);
            }
        }
        types
    }

    pub fn device_bytes(&self) -> u64 {
        let mut total = 0;
        let mut add = |t: &DeviceTensor| total += t.device_bytes();
        if let Some(e) = &self.embedding {
            add(e);
        }
        for l in &self.layers {
            for t in l.matrices() {
                add(t);
            }
        }
        if let Some(o) = &self.output {
            if self.embedding.as_ref().is_none_or(|e| !Arc::ptr_eq(e, o)) {
                add(o);
            }
        }
        let experts: u64 = self
            .layers
            .iter()
            .flat_map(LayerWeights::experts)
            .map(ExpertStack::device_bytes)
            .sum();
        let vectors: u64 = self
            .layers
            .iter()
            .flat_map(LayerWeights::vectors)
            .chain(&self.output_norm)
            .map(wgpu::Buffer::size)
            .sum();
        total + experts + vectors
    }
}
