//! Opening a model's files: its weights (a GGUF file, or a HuggingFace
//! directory presented as one), its tokenizer, the end-of-sequence ids a
//! directory declares, and its chat format. Reads files only: no device is
//! opened here.

use std::path::Path;

use super::LoadError;
use crate::gguf::metadata::Metadata;
use crate::gguf::reader::{GgufFile, TensorInfo};
use crate::model::spec::{Arch, ModelError, ModelSpec};
use crate::tokenizer::{ChatFormat, ChatTemplate, Tokenizer};

/// Opens a model's weights: a GGUF file, or a HuggingFace directory
/// (`config.json` and safetensors) presented as one.
pub fn open_weights(path: &Path) -> Result<GgufFile, ModelError> {
    if crate::hf::is_model_dir(path) {
        Ok(crate::hf::open_dir(path)?)
    } else {
        Ok(GgufFile::open(path)?)
    }
}

/// The model's tokenizer: a directory's `tokenizer.json`, or the GGUF's
/// embedded vocabulary. `None` when it has neither (the model then takes
/// token ids only); a tokenizer that is present but broken is an error.
pub fn open_tokenizer(path: &Path, file: &GgufFile) -> Result<Option<Tokenizer>, LoadError> {
    if crate::hf::is_model_dir(path) {
        return match crate::hf::tokenizer_path(path) {
            Some(p) => Ok(Some(Tokenizer::from_file(&p)?)),
            None => Ok(None),
        };
    }
    if file.metadata.contains("tokenizer.ggml.model") {
        Ok(Some(Tokenizer::from_gguf(&file.metadata)?))
    } else {
        Ok(None)
    }
}

/// A model's metadata and tensor directory without its data (a memory
/// plan's input): a GGUF header, or a HuggingFace directory's config and
/// safetensors headers (or `config.json` alone).
pub fn model_layout(path: &Path) -> Result<(Metadata, Vec<TensorInfo>), ModelError> {
    if crate::hf::is_model_dir(path) {
        Ok(crate::hf::directory_layout(path)?)
    } else {
        let file = GgufFile::open(path)?;
        Ok((file.metadata.clone(), file.tensors.clone()))
    }
}

/// The weights, the model description and the tokenizer (if any).
pub fn open_model(path: &Path) -> Result<(GgufFile, ModelSpec, Option<Tokenizer>), LoadError> {
    let file = open_weights(path)?;
    let spec = ModelSpec::from_gguf(&file)?;
    let tokenizer = open_tokenizer(path, &file)?;
    Ok((file, spec, tokenizer))
}

/// The end-of-sequence ids a model directory declares: `eos_token_id` (a
/// number or a list) in `config.json` and `generation_config.json`. Empty
/// for a GGUF file (its tokenizer metadata says) or when absent.
pub fn declared_eos_ids(path: &Path) -> Vec<u32> {
    if !crate::hf::is_model_dir(path) {
        return Vec::new();
    }
    let mut ids = Vec::new();
    for file in ["config.json", "generation_config.json"] {
        let Ok(text) = std::fs::read_to_string(path.join(file)) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let eos = &v["eos_token_id"];
        let found = match eos {
            serde_json::Value::Array(list) => list.iter().filter_map(|x| x.as_u64()).collect(),
            other => other.as_u64().into_iter().collect::<Vec<_>>(),
        };
        for id in found {
            let id = id as u32;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

/// Ids that end a sequence: the tokenizer's end-of-turn tokens and what a
/// model directory's config declares (`eos_token_id`), each once.
pub fn stop_ids(path: &Path, tokenizer: Option<&Tokenizer>) -> Vec<u32> {
    let mut ids = tokenizer.map(|t| t.stop_ids().to_vec()).unwrap_or_default();
    for id in declared_eos_ids(path) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// How chats are written for this model: harmony for gpt-oss (built in, so
/// its reasoning can be parsed back out), otherwise the model's own Jinja
/// template (ChatML when it ships none).
pub fn chat_format(
    spec: &ModelSpec,
    tokenizer: Option<&Tokenizer>,
) -> Result<ChatFormat, LoadError> {
    if spec.arch == Arch::GptOss {
        return Ok(ChatFormat::Harmony);
    }
    Ok(ChatFormat::Template(Box::new(match tokenizer {
        Some(t) => ChatTemplate::from_model(t.chat_template())?,
        None => ChatTemplate::chatml(),
    })))
}
