//! The memory plan: what a model needs on each device before anything is
//! uploaded. Weights per shard (matrices in their stored type, norms and
//! biases as f32, as `weights.rs` uploads them), the KV cache's bytes per
//! token, the activations a step needs, and so how many sequences of a
//! given context fit; and the split of the layers into shards
//! ([`split_layers`]), which the loader uses too. `wgserve plan` prints it;
//! `serve` logs the real figures after loading.

use std::fmt;
use std::ops::Range;

use crate::gguf::reader::TensorInfo;

use super::spec::ModelSpec;

/// Contiguous, nearly equal layer ranges, one per shard.
pub fn split_layers(n_layers: usize, n_shards: usize) -> Vec<Range<usize>> {
    let n = n_shards.clamp(1, n_layers.max(1));
    (0..n)
        .map(|i| (i * n_layers / n)..((i + 1) * n_layers / n))
        .collect()
}

/// What the plan is asked about.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// Number of devices (one shard each).
    pub devices: usize,
    /// Memory of each device, bytes.
    pub device_bytes: u64,
    /// The context each sequence should be able to reach.
    pub context: usize,
    /// Bytes per K or V element in the cache (2 for f16, 4 for f32).
    pub kv_elem_bytes: u64,
    pub block_size: usize,
    /// The largest step (prompt tokens in one batch) and the most sequences
    /// sampled at once: they size the activation buffers.
    pub max_num_batched_tokens: usize,
    pub max_num_seqs: usize,
    /// Fraction of each device left to the driver and fragmentation.
    pub reserve_fraction: f64,
}

impl Default for PlanRequest {
    fn default() -> Self {
        Self {
            devices: 1,
            device_bytes: 24 << 30,
            context: 8192,
            kv_elem_bytes: 2,
            block_size: 16,
            max_num_batched_tokens: 512,
            max_num_seqs: 16,
            reserve_fraction: 0.05,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShardPlan {
    pub layers: Range<usize>,
    pub weight_bytes: u64,
    /// Activation and scratch buffers of one step (an estimate from the
    /// model's widths and the batch limits).
    pub activation_bytes: u64,
    /// KV bytes one token takes in this shard's layers.
    pub kv_bytes_per_token: u64,
    /// What is left for the KV cache.
    pub kv_budget_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    pub shards: Vec<ShardPlan>,
    pub device_bytes: u64,
    pub context: usize,
    /// KV bytes per token over the whole model.
    pub kv_bytes_per_token: u64,
    /// Tokens of KV the tightest shard holds (every shard holds the same
    /// block ids, so the smallest budget decides).
    pub kv_tokens: u64,
    /// Sequences at the full `context` that fit at once.
    pub sequences: u64,
}

impl MemoryPlan {
    /// True when every shard's weights and activations fit its device.
    pub fn fits(&self) -> bool {
        self.sequences > 0
    }
}

/// Bytes a tensor takes on the device: vectors and biases become f32,
/// matrices keep their stored (quantized) size.
fn device_bytes(t: &TensorInfo) -> u64 {
    if t.dims.len() <= 1 || t.name.ends_with(".bias") {
        t.n_elems() * 4
    } else {
        t.n_bytes()
    }
}

/// The layer a tensor belongs to (`blk.N.`), if any.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

pub fn plan(spec: &ModelSpec, tensors: &[TensorInfo], req: &PlanRequest) -> MemoryPlan {
    let ranges = split_layers(spec.n_layers, req.devices.max(1));
    let n = ranges.len();
    let kv_per_layer_token = 2 * spec.kv_dim() as u64 * req.kv_elem_bytes;
    let reserve = (req.device_bytes as f64 * req.reserve_fraction) as u64;
    let shards: Vec<ShardPlan> = ranges
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (first, last) = (i == 0, i + 1 == n);
            let weight_bytes = tensors
                .iter()
                .filter(|t| match layer_of(&t.name) {
                    Some(l) => r.contains(&l),
                    None => match t.name.as_str() {
                        "token_embd.weight" => first || (last && spec.tied_output),
                        _ => last,
                    },
                })
                .map(device_bytes)
                .sum();
            let activation_bytes = activations(spec, req, last);
            let kv_bytes_per_token = kv_per_layer_token * r.len() as u64;
            let used = weight_bytes + activation_bytes + reserve;
            ShardPlan {
                layers: r.clone(),
                weight_bytes,
                activation_bytes,
                kv_bytes_per_token,
                kv_budget_bytes: req.device_bytes.saturating_sub(used),
            }
        })
        .collect();
    let bs = req.block_size.max(1) as u64;
    let kv_tokens = shards
        .iter()
        .map(|s| s.kv_budget_bytes / (s.kv_bytes_per_token * bs).max(1) * bs)
        .min()
        .unwrap_or(0);
    let per_seq = (req.context as u64).div_ceil(bs) * bs;
    MemoryPlan {
        device_bytes: req.device_bytes,
        context: req.context,
        kv_bytes_per_token: kv_per_layer_token * spec.n_layers as u64,
        kv_tokens,
        sequences: kv_tokens / per_seq.max(1),
        shards,
    }
}

/// The f32 buffers one step uses: the residual stream and its normed copy,
/// Q/K/V and the attention output, the feed-forward hidden (of the experts
/// each token uses), and on the last shard the logits of every sampled row.
fn activations(spec: &ModelSpec, req: &PlanRequest, last: bool) -> u64 {
    let t = req.max_num_batched_tokens as u64;
    let ffn = if spec.n_experts > 0 {
        2 * (spec.n_experts_used * spec.expert_ffn_dim) as u64 + spec.n_experts as u64
    } else {
        2 * spec.ffn_dim as u64
    };
    let per_token =
        3 * spec.d_model as u64 + 2 * spec.q_dim() as u64 + 2 * spec.kv_dim() as u64 + ffn;
    let logits = if last {
        req.max_num_seqs as u64 * spec.vocab_size as u64
    } else {
        0
    };
    4 * (t * per_token + logits)
}

/// `12.83 GiB`, `85.2 MiB`, `12.0 KiB`.
pub fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

impl fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} device(s) of {}; KV cache {} bytes per token ({}), context {}",
            self.shards.len(),
            human_bytes(self.device_bytes),
            self.kv_bytes_per_token,
            human_bytes(self.kv_bytes_per_token),
            self.context
        )?;
        for (i, s) in self.shards.iter().enumerate() {
            writeln!(
                f,
                "  shard {i}: layers {}..{}: weights {}, activations {}, KV {} B/token, \
                 {} left for KV",
                s.layers.start,
                s.layers.end,
                human_bytes(s.weight_bytes),
                human_bytes(s.activation_bytes),
                s.kv_bytes_per_token,
                human_bytes(s.kv_budget_bytes)
            )?;
        }
        if self.fits() {
            write!(
                f,
                "  KV holds {} tokens: {} sequences of {} tokens at once",
                self.kv_tokens, self.sequences, self.context
            )
        } else {
            write!(
                f,
                "  does not fit: not one sequence of {} tokens ({} KV tokens); add devices or \
                 shorten the context",
                self.context, self.kv_tokens
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgmlType;
    use crate::model::spec::Arch;

    #[test]
    fn layers_split_into_contiguous_nearly_equal_ranges() {
        assert_eq!(split_layers(30, 4), vec![0..7, 7..15, 15..22, 22..30]);
        assert_eq!(split_layers(30, 1), vec![0..30]);
        // Never more shards than layers, never none.
        assert_eq!(split_layers(2, 5), vec![0..1, 1..2]);
        assert_eq!(split_layers(3, 0), vec![0..3]);
    }

    fn tensor(name: &str, dims: &[u64], ty: GgmlType) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dims: dims.to_vec(),
            ggml_type: ty,
            offset: 0,
        }
    }

    fn spec() -> ModelSpec {
        ModelSpec {
            arch: Arch::Llama,
            name: "t".into(),
            n_layers: 4,
            d_model: 64,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 16,
            ffn_dim: 128,
            vocab_size: 1000,
            context_length: 4096,
            rms_eps: 1e-5,
            rope_mode: crate::gpu::kernels::rope::RopeMode::Interleaved,
            rope_freq_base: 1e4,
            rope_freq_scale: 1.0,
            rope_n_rot: 16,
            tied_output: true,
            qkv_bias: false,
            qk_norm: false,
            n_experts: 0,
            n_experts_used: 0,
            sliding_window: 0,
            expert_ffn_dim: 128,
            yarn: None,
        }
    }

    #[test]
    fn weights_split_by_layer_and_kv_by_shard() {
        let mut t = vec![tensor("token_embd.weight", &[64, 1000], GgmlType::Q8_0)];
        t.push(tensor("output_norm.weight", &[64], GgmlType::F16));
        for l in 0..4 {
            t.push(tensor(
                &format!("blk.{l}.attn_q.weight"),
                &[64, 64],
                GgmlType::F16,
            ));
            t.push(tensor(
                &format!("blk.{l}.attn_norm.weight"),
                &[64],
                GgmlType::F16,
            ));
        }
        let req = PlanRequest {
            devices: 2,
            device_bytes: 64 << 20,
            context: 100,
            reserve_fraction: 0.0,
            ..Default::default()
        };
        let p = plan(&spec(), &t, &req);
        let embd = 1000 * 64 / 32 * 34;
        let layer = 64 * 64 * 2 + 64 * 4;
        // Tied output: the embedding is on both the first and last shard.
        assert_eq!(p.shards[0].weight_bytes, embd + 2 * layer);
        assert_eq!(p.shards[1].weight_bytes, embd + 2 * layer + 64 * 4);
        assert_eq!(p.shards[0].layers, 0..2);
        // 2 (K, V) x 32 (kv dim) x 2 bytes per layer.
        assert_eq!(p.kv_bytes_per_token, 4 * 128);
        assert_eq!(p.shards[1].kv_bytes_per_token, 2 * 128);
        let budget = p.shards[1].kv_budget_bytes;
        assert_eq!(
            budget,
            (64 << 20) - p.shards[1].weight_bytes - p.shards[1].activation_bytes
        );
        assert_eq!(p.kv_tokens, budget / (256 * 16) * 16);
        // 100 tokens round up to 7 blocks of 16.
        assert_eq!(p.sequences, p.kv_tokens / 112);
        assert!(p.fits());
        let text = p.to_string();
        assert!(
            text.contains("shard 1") && text.contains("sequences of 100"),
            "{text}"
        );
    }

    #[test]
    fn too_small_a_device_does_not_fit() {
        let t = vec![tensor("token_embd.weight", &[64, 1000], GgmlType::F32)];
        let req = PlanRequest {
            device_bytes: 1 << 10,
            ..Default::default()
        };
        let p = plan(&spec(), &t, &req);
        assert!(!p.fits());
        assert!(p.to_string().contains("does not fit"));
    }
}
