//! The model description: an architecture's shape and options, read once from
//! GGUF metadata and checked before anything is uploaded. Everything the
//! forward pass needs to know about a model that is not a weight lives here.

use crate::gguf::{
    error::GgufError,
    reader::{GgufFile, TensorInfo},
    GgmlType,
};
use crate::gpu::kernels::rope::{RopeMode, YarnParams};
use crate::step::BatchError;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Hf(#[from] crate::hf::HfError),
    #[error(
        "{path}: architecture {arch:?} is not supported; supported: llama, qwen2, qwen3, gpt-oss"
    )]
    UnsupportedArch { path: String, arch: String },
    #[error("{path}: tensor {tensor} has type {ty}, which the {what} kernels do not support")]
    UnsupportedType {
        path: String,
        tensor: String,
        ty: GgmlType,
        what: &'static str,
    },
    #[error("{path}: tensor {tensor} has shape {found:?}, expected {expected:?}")]
    BadShape {
        path: String,
        tensor: String,
        found: Vec<u64>,
        expected: Vec<u64>,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// A step's work order the shard cannot run (see [`BatchError`]).
    #[error("batch: {0}")]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    /// Qwen 3 (dense): qwen2 without the q/k/v biases, with a per-head
    /// RMSNorm of q and k before RoPE.
    Qwen3,
    GptOss,
}

impl Arch {
    /// The architecture a GGUF's `general.architecture` names, if supported.
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        Some(match name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "gpt-oss" => Arch::GptOss,
            _ => return None,
        })
    }

    pub fn gguf_name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::GptOss => "gpt-oss",
        }
    }
}

/// Most experts a token may use: the router kernel keeps its choices in a
/// fixed-size private array (`shaders/moe_router.wgsl`).
pub const MAX_EXPERTS_USED: usize = 8;

/// The shape and options of a decoder-only transformer.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub arch: Arch,
    pub name: String,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab_size: usize,
    /// The context the model was trained for.
    pub context_length: usize,
    pub rms_eps: f32,
    pub rope_mode: RopeMode,
    pub rope_freq_base: f32,
    pub rope_freq_scale: f32,
    /// Dimensions of each head that are rotated (usually all of them).
    pub rope_n_rot: usize,
    /// The output projection is the token embedding (no `output.weight`).
    pub tied_output: bool,
    /// Q, K and V projections carry a bias (qwen2, gpt-oss).
    pub qkv_bias: bool,
    /// Q and K are RMS-normalised per head before RoPE (qwen3).
    pub qk_norm: bool,
    /// Mixture of experts (gpt-oss): number of experts and how many run per token.
    pub n_experts: usize,
    pub n_experts_used: usize,
    /// Sliding-window size for the layers that use one (gpt-oss: every other
    /// layer; a Mistral: every layer; see [`ModelSpec::layer_window`]); 0 = none.
    pub sliding_window: usize,
    /// Hidden width of one expert's FFN (GGUF `*.expert_feed_forward_length`;
    /// `ffn_dim` when absent). Only meaningful with `n_experts > 0`.
    pub expert_ffn_dim: usize,
    /// YaRN context extension (GGUF `*.rope.scaling.type = "yarn"`), or `None`.
    pub yarn: Option<YarnSpec>,
}

/// The GGUF side of YaRN: what the file records. `rope_freq_scale` already
/// holds `1 / factor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YarnSpec {
    /// `*.rope.scaling.factor`.
    pub factor: f32,
    /// `*.rope.scaling.original_context_length`.
    pub original_context: u32,
}

impl ModelSpec {
    /// Reads and checks the description from a GGUF file's metadata and tensor directory.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ModelError> {
        Self::from_directory(&file.path, &file.metadata, &file.tensors)
    }

    /// As [`ModelSpec::from_gguf`], from the metadata and the tensor
    /// directory alone (no tensor data: what a memory plan needs).
    pub fn from_directory(
        path: &std::path::Path,
        m: &crate::gguf::metadata::Metadata,
        tensors: &[TensorInfo],
    ) -> Result<Self, ModelError> {
        let find = |name: &str| tensors.iter().find(|t| t.name == name);
        let path_buf = path.to_path_buf();
        let path = path.display().to_string();
        let arch_name = m.architecture()?;
        let arch = Arch::from_gguf_name(arch_name).ok_or_else(|| ModelError::UnsupportedArch {
            path: path.clone(),
            arch: arch_name.to_string(),
        })?;
        let k = |s: &str| format!("{arch_name}.{s}");
        let n_layers = m.u32(&k("block_count"))? as usize;
        let d_model = m.u32(&k("embedding_length"))? as usize;
        let n_heads = m.u32(&k("attention.head_count"))? as usize;
        let n_kv_heads = m
            .opt_u32(&k("attention.head_count_kv"))?
            .map_or(n_heads, |v| v as usize);
        let head_dim = match m.opt_u32(&k("attention.key_length"))? {
            Some(v) => v as usize,
            None => d_model / n_heads.max(1),
        };
        let ffn_dim = m.u32(&k("feed_forward_length"))? as usize;
        let context_length = m.u32(&k("context_length"))? as usize;
        let rms_eps = m.f32(&k("attention.layer_norm_rms_epsilon"))?;
        let rope = RopeKeys::read(m, arch_name, head_dim, &path)?;
        let expert_ffn_dim = m
            .opt_u32(&k("expert_feed_forward_length"))?
            .map_or(ffn_dim, |v| v as usize);
        let vocab_size = vocab_size(&path_buf, tensors, d_model)?;
        let spec = ModelSpec {
            arch,
            name: m.opt_str("general.name")?.unwrap_or(arch_name).to_string(),
            n_layers,
            d_model,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim,
            vocab_size,
            context_length,
            rms_eps,
            rope_mode: match arch {
                Arch::Llama => RopeMode::Interleaved,
                Arch::Qwen2 | Arch::Qwen3 | Arch::GptOss => RopeMode::Neox,
            },
            rope_freq_base: rope.freq_base,
            rope_freq_scale: rope.freq_scale,
            rope_n_rot: rope.n_rot,
            tied_output: find("output.weight").is_none(),
            qkv_bias: find("blk.0.attn_q.bias").is_some(),
            qk_norm: find("blk.0.attn_q_norm.weight").is_some(),
            n_experts: m.opt_u32(&k("expert_count"))?.unwrap_or(0) as usize,
            n_experts_used: m.opt_u32(&k("expert_used_count"))?.unwrap_or(0) as usize,
            sliding_window: m.opt_u32(&k("attention.sliding_window"))?.unwrap_or(0) as usize,
            expert_ffn_dim,
            yarn: rope.yarn,
        };
        spec.check(&path)?;
        Ok(spec)
    }

    fn check(&self, path: &str) -> Result<(), ModelError> {
        let bad = |message: String| {
            Err(ModelError::Invalid {
                path: path.to_string(),
                message,
            })
        };
        if self.n_layers == 0 || self.d_model == 0 || self.n_heads == 0 || self.head_dim == 0 {
            return bad(format!("degenerate shape {self:?}"));
        }
        if self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "{} query heads cannot be grouped over {} KV heads",
                self.n_heads, self.n_kv_heads
            ));
        }
        if self.rope_n_rot > self.head_dim || !self.rope_n_rot.is_multiple_of(2) {
            return bad(format!(
                "rope dimension {} must be even and at most the head size {}",
                self.rope_n_rot, self.head_dim
            ));
        }
        if self.arch == Arch::GptOss
            && (self.n_experts == 0
                || self.n_experts_used == 0
                || self.n_experts_used > self.n_experts
                || self.n_experts_used > MAX_EXPERTS_USED
                || self.expert_ffn_dim == 0)
        {
            return bad(format!(
                "gpt-oss needs 1 <= expert_used_count <= min(expert_count, {MAX_EXPERTS_USED}) \
                 and an expert_feed_forward_length; got {} of {} experts, width {}",
                self.n_experts_used, self.n_experts, self.expert_ffn_dim
            ));
        }
        Ok(())
    }

    /// The attention window of layer `l` in positions (the token itself
    /// included), 0 for full attention. gpt-oss alternates, starting with a
    /// sliding layer: transformers' `layer_types` and llama.cpp's SWA pattern
    /// of 2 both put the window on the even layers. A llama with a window
    /// (a Mistral directory whose config sets `sliding_window`) uses it on
    /// every layer.
    pub fn layer_window(&self, l: usize) -> u32 {
        match self.arch {
            Arch::GptOss if l.is_multiple_of(2) => self.sliding_window as u32,
            Arch::Llama => self.sliding_window as u32,
            _ => 0,
        }
    }

    /// GGML's YaRN parameters for this model's RoPE.
    ///
    /// gpt-oss is defined without the rounding of the ramp's ends (its HF
    /// config says `"truncate": false`), which GGUF does not record, so it is
    /// set here by architecture. llama.cpp's defaults for the rest: ramp
    /// weight 1, betas 32 and 1, magnitude 1 (times YaRN's own correction).
    pub fn yarn_params(&self) -> YarnParams {
        match self.yarn {
            None => YarnParams::none(),
            Some(y) => YarnParams {
                ext_factor: 1.0,
                attn_factor: 1.0,
                beta_fast: 32.0,
                beta_slow: 1.0,
                n_ctx_orig: y.original_context,
                truncate: self.arch != Arch::GptOss,
            },
        }
    }

    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// The vocabulary size: the rows of `token_embd.weight`, whose rows must be
/// `d_model` wide.
fn vocab_size(
    path: &std::path::Path,
    tensors: &[TensorInfo],
    d_model: usize,
) -> Result<usize, ModelError> {
    let embd = tensors
        .iter()
        .find(|t| t.name == "token_embd.weight")
        .ok_or_else(|| GgufError::MissingTensor {
            path: path.to_path_buf(),
            tensor: "token_embd.weight".into(),
        })?;
    let vocab_size = embd.n_rows();
    if embd.row_len() != d_model {
        return Err(ModelError::BadShape {
            path: path.display().to_string(),
            tensor: embd.name.clone(),
            found: embd.dims.clone(),
            expected: vec![d_model as u64, vocab_size as u64],
        });
    }
    Ok(vocab_size)
}

/// The RoPE keys of a GGUF (`{arch}.rope.*`): base, rotated dimensions,
/// and linear or YaRN scaling.
struct RopeKeys {
    freq_base: f32,
    freq_scale: f32,
    n_rot: usize,
    yarn: Option<YarnSpec>,
}

impl RopeKeys {
    fn read(
        m: &crate::gguf::metadata::Metadata,
        arch_name: &str,
        head_dim: usize,
        path: &str,
    ) -> Result<Self, ModelError> {
        let k = |s: &str| format!("{arch_name}.{s}");
        let freq_base = m.opt_f32(&k("rope.freq_base"))?.unwrap_or(10_000.0);
        let n_rot = m
            .opt_u32(&k("rope.dimension_count"))?
            .map_or(head_dim, |v| v as usize);
        let scaling = m.opt_str(&k("rope.scaling.type"))?.unwrap_or("none");
        let factor = m.opt_f32(&k("rope.scaling.factor"))?.unwrap_or(1.0);
        let freq_scale = match scaling {
            "none" => 1.0,
            "linear" | "yarn" if factor > 0.0 => 1.0 / factor,
            other => {
                return Err(ModelError::Invalid {
                    path: path.to_string(),
                    message: format!("rope scaling {other:?} (factor {factor}) is not supported"),
                })
            }
        };
        let yarn = if scaling == "yarn" {
            let original_context = m
                .opt_u32(&k("rope.scaling.original_context_length"))?
                .unwrap_or(0);
            if original_context == 0 {
                return Err(ModelError::Invalid {
                    path: path.to_string(),
                    message: format!(
                        "YaRN rope scaling needs {arch_name}.rope.scaling.original_context_length > 0"
                    ),
                });
            }
            Some(YarnSpec {
                factor,
                original_context,
            })
        } else {
            None
        };
        Ok(RopeKeys {
            freq_base,
            freq_scale,
            n_rot,
            yarn,
        })
    }
}
