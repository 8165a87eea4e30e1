//! HuggingFace model directories (llama, mistral, qwen2, qwen3, gpt-oss):
//! `config.json` and `model.safetensors` (or
//! `model.safetensors.index.json` and its shards), presented as a
//! [`GgufFile`] with llama.cpp's metadata keys and tensor names, so the model
//! description, the weight loader and `wgserve info` read a directory exactly
//! like a GGUF file.
//!
//! Tensors whose layout already matches GGUF's (a PyTorch `[out][in]` matrix
//! is a GGUF `[in, out]` one) are used in place from the memory map; the ones
//! that do not are converted in memory: gpt-oss's interleaved gate/up expert
//! stacks are split, its float expert stacks (stored `[in][out]`) transposed,
//! and MXFP4 checkpoints' `*_blocks`/`*_scales` pairs rewritten as GGUF MXFP4
//! blocks. The tokenizer (`tokenizer.json`) is read by `crate::tokenizer`.

mod config;
mod convert;
mod safetensors_dir;

use std::path::{Path, PathBuf};

use crate::gguf::metadata::Metadata;
use crate::gguf::reader::{GgufFile, TensorInfo};

pub use config::HfConfig;

#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{}: {message}", .path.display())]
    Io { path: PathBuf, message: String },
    #[error("{}: {message}", .path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{}: model_type {model_type:?} is not supported from a HuggingFace directory; \
         supported: llama, mistral, qwen2, qwen3, gpt_oss (convert others to GGUF with llama.cpp)",
        .path.display()
    )]
    UnsupportedModel { path: PathBuf, model_type: String },
    #[error(transparent)]
    Gguf(#[from] crate::gguf::error::GgufError),
}

/// Whether `path` names a model directory (rather than a GGUF file).
pub fn is_model_dir(path: &Path) -> bool {
    path.is_dir()
}

/// Opens a HuggingFace model directory as a GGUF-shaped model.
pub fn open_dir(dir: &Path) -> Result<GgufFile, HfError> {
    let config = HfConfig::read(dir)?;
    let tensors = safetensors_dir::SafetensorsDir::open(dir)?;
    let metadata = config.gguf_metadata(dir)?;
    let converted = convert::gguf_tensors(dir, &config, &tensors)?;
    Ok(GgufFile::assemble(dir, metadata, converted)?)
}

/// A directory's GGUF metadata and tensor directory (names, shapes, types)
/// without reading or converting any weights. With no safetensors in the
/// directory, the tensors are those of the checkpoint as published (BF16,
/// MXFP4 experts), so `config.json` alone is enough for a memory plan.
pub fn directory_layout(dir: &Path) -> Result<(Metadata, Vec<TensorInfo>), HfError> {
    let config = HfConfig::read(dir)?;
    let metadata = config.gguf_metadata(dir)?;
    let tensors = if safetensors_dir::SafetensorsDir::present(dir) {
        safetensors_dir::SafetensorsDir::open(dir)?
    } else if config.gguf_arch() == Some("gpt-oss") {
        safetensors_dir::SafetensorsDir::described(dir, convert::checkpoint_layout(&config))
    } else {
        return Err(HfError::Invalid {
            path: dir.to_path_buf(),
            message: "no safetensors here: a plan from config.json alone is only made for gpt-oss"
                .into(),
        });
    };
    let infos = convert::gguf_tensors(dir, &config, &tensors)?
        .into_iter()
        .map(|(name, dims, ggml_type, _)| TensorInfo {
            name,
            dims,
            ggml_type,
            offset: 0,
        })
        .collect();
    Ok((metadata, infos))
}

/// `dir/tokenizer.json`, when the directory has one.
pub fn tokenizer_path(dir: &Path) -> Option<PathBuf> {
    Some(dir.join("tokenizer.json")).filter(|p| p.is_file())
}
