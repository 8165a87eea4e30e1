//! `config.json`: the model's shape, translated into the GGUF metadata keys
//! llama.cpp's converter would write, so [`crate::model::spec::ModelSpec`]
//! reads both sources the same way. Values the kernels build in (gpt-oss's
//! SwiGLU clamp, YaRN's betas, its layer alternation) are checked here and
//! refused when they differ; the tensors are `convert.rs`'s.

use std::path::Path;

use serde::Deserialize;

use super::HfError;
use crate::gguf::metadata::{MetaValue, Metadata};

/// The RoPE options, under `rope_parameters` (transformers 5) or
/// `rope_scaling` plus a top-level `rope_theta` (transformers 4).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RopeParams {
    pub rope_type: Option<String>,
    #[serde(rename = "type")]
    pub legacy_type: Option<String>,
    pub rope_theta: Option<f64>,
    pub factor: Option<f64>,
    pub original_max_position_embeddings: Option<u64>,
    pub beta_fast: Option<f64>,
    pub beta_slow: Option<f64>,
    pub truncate: Option<bool>,
    /// Llama 3's scaling (`rope_type: "llama3"`).
    pub low_freq_factor: Option<f64>,
    pub high_freq_factor: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    pub model_type: String,
    pub hidden_size: u64,
    pub intermediate_size: u64,
    pub num_hidden_layers: u64,
    pub num_attention_heads: u64,
    pub num_key_value_heads: Option<u64>,
    pub head_dim: Option<u64>,
    pub vocab_size: u64,
    pub max_position_embeddings: u64,
    pub rms_norm_eps: f64,
    pub rope_theta: Option<f64>,
    pub rope_parameters: Option<RopeParams>,
    pub rope_scaling: Option<RopeParams>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    pub num_local_experts: Option<u64>,
    pub num_experts_per_tok: Option<u64>,
    pub sliding_window: Option<u64>,
    pub layer_types: Option<Vec<String>>,
    pub swiglu_limit: Option<f64>,
    pub swiglu_alpha: Option<f64>,
}

impl HfConfig {
    pub fn read(dir: &Path) -> Result<Self, HfError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| HfError::Io {
            path: path.clone(),
            message: format!("{e} (a model directory needs config.json)"),
        })?;
        serde_json::from_str(&text).map_err(|e| HfError::Invalid {
            path,
            message: format!("not a usable config.json: {e}"),
        })
    }

    /// llama.cpp's architecture name for this `model_type`.
    pub fn gguf_arch(&self) -> Option<&'static str> {
        Some(match self.model_type.as_str() {
            "gpt_oss" => "gpt-oss",
            "llama" | "mistral" => "llama",
            "qwen2" => "qwen2",
            "qwen3" => "qwen3",
            _ => return None,
        })
    }

    pub fn rope_type(&self) -> Option<String> {
        let rope = self.rope();
        rope.rope_type.or(rope.legacy_type)
    }

    /// Llama 3's per-frequency divisors (`rope_freqs`), `[head_dim / 2]`,
    /// when the config asks for its scaling.
    pub fn llama3_rope_freqs(&self) -> Option<Vec<f32>> {
        if self.rope_type().as_deref() != Some("llama3") {
            return None;
        }
        let r = self.rope();
        let base = r.rope_theta.or(self.rope_theta).unwrap_or(10_000.0);
        let factor = r.factor.unwrap_or(8.0);
        let low = r.low_freq_factor.unwrap_or(1.0);
        let high = r.high_freq_factor.unwrap_or(4.0);
        let old_ctx = r.original_max_position_embeddings.unwrap_or(8192) as f64;
        let dim =
            self.head_dim
                .unwrap_or(self.hidden_size / self.num_attention_heads.max(1)) as usize;
        let (low_wavelen, high_wavelen) = (old_ctx / low, old_ctx / high);
        Some(
            (0..dim / 2)
                .map(|i| {
                    let freq = base.powf(-2.0 * i as f64 / dim as f64);
                    let wavelen = 2.0 * std::f64::consts::PI / freq;
                    let divisor = if wavelen < high_wavelen {
                        1.0
                    } else if wavelen > low_wavelen {
                        factor
                    } else {
                        let smooth = (old_ctx / wavelen - low) / (high - low);
                        1.0 / ((1.0 - smooth) / factor + smooth)
                    };
                    divisor as f32
                })
                .collect(),
        )
    }

    fn rope(&self) -> RopeParams {
        self.rope_parameters
            .clone()
            .or_else(|| self.rope_scaling.clone())
            .unwrap_or_default()
    }

    /// The GGUF metadata llama.cpp's converter writes for this model: the
    /// checks of what the kernels build in, then the keys group by group.
    pub fn gguf_metadata(&self, dir: &Path) -> Result<Metadata, HfError> {
        let arch = self.gguf_arch().ok_or_else(|| HfError::UnsupportedModel {
            path: dir.to_path_buf(),
            model_type: self.model_type.clone(),
        })?;
        self.check_gpt_oss_activation(dir, arch)?;
        self.check_yarn(dir, arch)?;
        self.check_layer_types(dir, arch)?;

        let mut m = Metadata::new(dir);
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        m.insert("general.architecture", arch.into());
        m.insert("general.name", name.as_str().into());
        let mut keys = ArchKeys { m: &mut m, arch };
        self.put_shape(&mut keys);
        self.put_experts_and_windows(&mut keys);
        self.put_rope(&mut keys, dir)?;
        keys.u32("vocab_size", self.vocab_size);
        Ok(m)
    }

    /// gpt-oss's clamped SwiGLU: the kernels build in its limit and alpha.
    fn check_gpt_oss_activation(&self, dir: &Path, arch: &str) -> Result<(), HfError> {
        if arch == "gpt-oss" {
            expect(dir, "swiglu_limit", self.swiglu_limit, 7.0)?;
            expect(dir, "swiglu_alpha", self.swiglu_alpha, 1.702)?;
        }
        Ok(())
    }

    /// YaRN: the kernels build in gpt-oss's betas; its ramp rounding is
    /// implied by the architecture.
    fn check_yarn(&self, dir: &Path, arch: &str) -> Result<(), HfError> {
        if self.rope_type().as_deref() != Some("yarn") {
            return Ok(());
        }
        let rope = self.rope();
        let gpt_oss = arch == "gpt-oss";
        expect(dir, "rope beta_fast", rope.beta_fast, 32.0)?;
        expect(dir, "rope beta_slow", rope.beta_slow, 1.0)?;
        // GGUF does not record YaRN's ramp rounding: the model spec
        // rounds for every architecture but gpt-oss (see yarn_params).
        if rope.truncate == Some(gpt_oss) {
            return Err(invalid(
                dir,
                format!("YaRN with truncate = {gpt_oss} is not supported for {arch}"),
            ));
        }
        Ok(())
    }

    /// gpt-oss's `layer_types`: only its own alternation is built in.
    fn check_layer_types(&self, dir: &Path, arch: &str) -> Result<(), HfError> {
        let Some(types) = self.layer_types.as_ref().filter(|_| arch == "gpt-oss") else {
            return Ok(());
        };
        let alternating = types.len() as u64 == self.num_hidden_layers
            && types.iter().enumerate().all(|(l, t)| {
                t == if l % 2 == 0 {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
            });
        if !alternating {
            return Err(invalid(
                dir,
                format!(
                    "layer_types {types:?}: only gpt-oss's alternation (sliding on even \
                     layers, full on odd) is supported"
                ),
            ));
        }
        Ok(())
    }

    /// Layers, widths, heads and the norm's epsilon.
    fn put_shape(&self, keys: &mut ArchKeys) {
        let heads = self.num_attention_heads;
        let head_dim = self.head_dim.unwrap_or(self.hidden_size / heads.max(1));
        keys.u32("block_count", self.num_hidden_layers);
        keys.u32("context_length", self.max_position_embeddings);
        keys.u32("embedding_length", self.hidden_size);
        keys.u32("feed_forward_length", self.intermediate_size);
        keys.u32("attention.head_count", heads);
        keys.u32(
            "attention.head_count_kv",
            self.num_key_value_heads.unwrap_or(heads),
        );
        keys.u32("attention.key_length", head_dim);
        keys.u32("attention.value_length", head_dim);
        keys.f32("attention.layer_norm_rms_epsilon", self.rms_norm_eps);
    }

    /// gpt-oss's experts and window (on alternate layers), or a Mistral's
    /// window (on every layer).
    fn put_experts_and_windows(&self, keys: &mut ArchKeys) {
        if keys.arch == "gpt-oss" {
            keys.u32("expert_feed_forward_length", self.intermediate_size);
            keys.u32("expert_count", self.num_local_experts.unwrap_or(0));
            keys.u32("expert_used_count", self.num_experts_per_tok.unwrap_or(0));
            keys.u32("attention.sliding_window", self.sliding_window.unwrap_or(0));
        }
        // Mistral 7B v0.1 attends to the last `sliding_window` positions on
        // every layer; later Mistrals say null. (Qwen2 configs also carry a
        // sliding_window, switched off by use_sliding_window: not read.)
        if let Some(w) = self.sliding_window.filter(|_| self.model_type == "mistral") {
            keys.u32("attention.sliding_window", w);
        }
    }

    /// RoPE's base frequency and its scaling.
    fn put_rope(&self, keys: &mut ArchKeys, dir: &Path) -> Result<(), HfError> {
        let rope = self.rope();
        let theta = rope.rope_theta.or(self.rope_theta).unwrap_or(10_000.0);
        keys.f32("rope.freq_base", theta);
        match self.rope_type().as_deref() {
            // Llama 3's scaling is a per-frequency table, written by the
            // converter as the `rope_freqs` tensor.
            None | Some("default") | Some("llama3") => {}
            Some("linear") => {
                keys.put("rope.scaling.type", "linear".into());
                keys.f32("rope.scaling.factor", rope.factor.unwrap_or(1.0));
            }
            Some("yarn") => {
                let orig = rope
                    .original_max_position_embeddings
                    .unwrap_or(self.max_position_embeddings);
                keys.put("rope.scaling.type", "yarn".into());
                keys.f32("rope.scaling.factor", rope.factor.unwrap_or(1.0));
                keys.u32("rope.scaling.original_context_length", orig);
            }
            Some(other) => {
                return Err(invalid(
                    dir,
                    format!("rope type {other:?} is not supported (default, linear, yarn, llama3)"),
                ))
            }
        }
        Ok(())
    }
}

/// `config.json` says something this code does not support.
fn invalid(dir: &Path, message: String) -> HfError {
    HfError::Invalid {
        path: dir.join("config.json"),
        message,
    }
}

/// A value the kernels build in: check rather than silently differ.
fn expect(dir: &Path, what: &str, got: Option<f64>, want: f64) -> Result<(), HfError> {
    match got {
        Some(v) if (v - want).abs() > 1e-6 => Err(invalid(
            dir,
            format!("{what} is {v}; only {want} (gpt-oss's value) is supported"),
        )),
        _ => Ok(()),
    }
}

/// Writes the `{arch}.`-prefixed keys, typed as llama.cpp's converter types them.
struct ArchKeys<'a> {
    m: &'a mut Metadata,
    arch: &'a str,
}

impl ArchKeys<'_> {
    fn put(&mut self, key: &str, value: MetaValue) {
        self.m.insert(format!("{}.{key}", self.arch), value);
    }

    fn u32(&mut self, key: &str, value: u64) {
        self.put(key, MetaValue::U32(value as u32));
    }

    fn f32(&mut self, key: &str, value: f64) {
        self.put(key, MetaValue::F32(value as f32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: serde_json::Value) -> HfConfig {
        let mut v = serde_json::json!({
            "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
            "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
            "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
        });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    /// Llama 3.2's published scaling (factor 32, low 1, high 4, original
    /// 8192): short wavelengths unscaled, long ones divided by the factor,
    /// the band between interpolated. Values worked out by hand.
    #[test]
    fn llama3_rope_freqs() {
        let c = config(serde_json::json!({"rope_scaling": {
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}));
        let f = c.llama3_rope_freqs().unwrap();
        assert_eq!(f.len(), 32);
        assert_eq!(f[0], 1.0);
        assert_eq!(f[31], 8.0);
        // i = 16: wavelength 2 pi 500000^0.5 = 4442.9, between 2048 and
        // 8192: smooth = (8192 / 4442.9 - 1) / 3 = 0.28127.
        assert!((f[16] - 2.6946).abs() < 1e-3, "{}", f[16]);
        assert!(f.windows(2).all(|w| w[0] <= w[1]), "monotone: {f:?}");
        assert!(config(serde_json::json!({})).llama3_rope_freqs().is_none());
        let dir = Path::new("/nonexistent");
        let m = c.gguf_metadata(dir).unwrap();
        assert_eq!(m.str("general.architecture").unwrap(), "llama");
        assert!(m.opt_str("llama.rope.scaling.type").unwrap().is_none());
    }

    /// A Mistral's window reaches the model spec; Qwen2's (off unless
    /// use_sliding_window) and a null one do not.
    #[test]
    fn only_a_mistral_window_is_kept() {
        let dir = Path::new("/nonexistent");
        let window = |extra: serde_json::Value| {
            let m = config(extra).gguf_metadata(dir).unwrap();
            m.opt_u32("llama.attention.sliding_window").unwrap()
        };
        let mistral = serde_json::json!({"model_type": "mistral", "sliding_window": 4096});
        assert_eq!(window(mistral), Some(4096));
        let null = serde_json::json!({"model_type": "mistral", "sliding_window": null});
        assert_eq!(window(null), None);
        let m = config(serde_json::json!({"model_type": "qwen2", "sliding_window": 32768}))
            .gguf_metadata(dir)
            .unwrap();
        assert_eq!(m.opt_u32("qwen2.attention.sliding_window").unwrap(), None);
    }

    #[test]
    fn unknown_model_types_and_rope_types_are_refused() {
        let dir = Path::new("/nonexistent");
        let e = config(serde_json::json!({"model_type": "phi3"}))
            .gguf_metadata(dir)
            .unwrap_err();
        assert!(e.to_string().contains("phi3"), "{e}");
        let e = config(serde_json::json!({"rope_scaling": {"rope_type": "longrope"}}))
            .gguf_metadata(dir)
            .unwrap_err();
        assert!(e.to_string().contains("longrope"), "{e}");
    }
}
