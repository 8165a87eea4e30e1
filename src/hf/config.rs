//! `config.json`: the model's shape, translated into the GGUF metadata keys
//! llama.cpp's converter would write, so [`crate::model::spec::ModelSpec`]
//! reads both sources the same way.

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

    fn rope(&self) -> RopeParams {
        self.rope_parameters
            .clone()
            .or_else(|| self.rope_scaling.clone())
            .unwrap_or_default()
    }

    /// The GGUF metadata llama.cpp's converter writes for this model.
    pub fn gguf_metadata(&self, dir: &Path) -> Result<Metadata, HfError> {
        let invalid = |message: String| HfError::Invalid {
            path: dir.join("config.json"),
            message,
        };
        if self.model_type != "gpt_oss" {
            return Err(HfError::UnsupportedModel {
                path: dir.to_path_buf(),
                model_type: self.model_type.clone(),
            });
        }
        let arch = "gpt-oss";
        let rope = self.rope();
        let theta = rope.rope_theta.or(self.rope_theta).unwrap_or(10_000.0);
        let rope_type = rope.rope_type.clone().or(rope.legacy_type.clone());

        // What the kernels build in: check rather than silently differ.
        let expect = |what: &str, got: Option<f64>, want: f64| match got {
            Some(v) if (v - want).abs() > 1e-6 => Err(invalid(format!(
                "{what} is {v}; only {want} (gpt-oss's value) is supported"
            ))),
            _ => Ok(()),
        };
        expect("swiglu_limit", self.swiglu_limit, 7.0)?;
        expect("swiglu_alpha", self.swiglu_alpha, 1.702)?;
        if rope_type.as_deref() == Some("yarn") {
            expect("rope beta_fast", rope.beta_fast, 32.0)?;
            expect("rope beta_slow", rope.beta_slow, 1.0)?;
            if rope.truncate == Some(true) {
                return Err(invalid(
                    "YaRN with truncate = true is not supported for gpt-oss".into(),
                ));
            }
        }
        if let Some(types) = &self.layer_types {
            let alternating = types.len() as u64 == self.num_hidden_layers
                && types.iter().enumerate().all(|(l, t)| {
                    t == if l % 2 == 0 {
                        "sliding_attention"
                    } else {
                        "full_attention"
                    }
                });
            if !alternating {
                return Err(invalid(format!(
                    "layer_types {types:?}: only gpt-oss's alternation (sliding on even \
                     layers, full on odd) is supported"
                )));
            }
        }

        let mut m = Metadata::new(dir);
        let mut put = |k: &str, v: MetaValue| {
            m.insert(k.to_string(), v);
        };
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        put("general.architecture", arch.into());
        put("general.name", name.as_str().into());
        let k = |s: &str| format!("{arch}.{s}");
        let u = |v: u64| MetaValue::U32(v as u32);
        let heads = self.num_attention_heads;
        let head_dim = self.head_dim.unwrap_or(self.hidden_size / heads.max(1));
        put(&k("block_count"), u(self.num_hidden_layers));
        put(&k("context_length"), u(self.max_position_embeddings));
        put(&k("embedding_length"), u(self.hidden_size));
        put(&k("feed_forward_length"), u(self.intermediate_size));
        put(&k("expert_feed_forward_length"), u(self.intermediate_size));
        put(&k("attention.head_count"), u(heads));
        put(
            &k("attention.head_count_kv"),
            u(self.num_key_value_heads.unwrap_or(heads)),
        );
        put(&k("attention.key_length"), u(head_dim));
        put(&k("attention.value_length"), u(head_dim));
        put(
            &k("attention.layer_norm_rms_epsilon"),
            MetaValue::F32(self.rms_norm_eps as f32),
        );
        put(&k("expert_count"), u(self.num_local_experts.unwrap_or(0)));
        put(
            &k("expert_used_count"),
            u(self.num_experts_per_tok.unwrap_or(0)),
        );
        put(
            &k("attention.sliding_window"),
            u(self.sliding_window.unwrap_or(0)),
        );
        put(&k("rope.freq_base"), MetaValue::F32(theta as f32));
        match rope_type.as_deref() {
            None | Some("default") => {}
            Some("yarn") => {
                let factor = rope.factor.unwrap_or(1.0);
                let orig = rope
                    .original_max_position_embeddings
                    .unwrap_or(self.max_position_embeddings);
                put(&k("rope.scaling.type"), "yarn".into());
                put(&k("rope.scaling.factor"), MetaValue::F32(factor as f32));
                put(&k("rope.scaling.original_context_length"), u(orig));
            }
            Some(other) => {
                return Err(invalid(format!(
                    "rope type {other:?} is not supported for gpt-oss (yarn or none)"
                )))
            }
        }
        put(&k("vocab_size"), u(self.vocab_size));
        Ok(m)
    }
}
