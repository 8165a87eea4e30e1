//! Loading a model for serving: the loader's settings ([`EngineConfig`]),
//! the model's files (`open`: weights from a GGUF file or a HuggingFace
//! directory, tokenizer, stop ids, chat format), one device per shard, the
//! layer split (`crate::model::plan::split_layers`), the KV pool's size
//! (`sizing`) and the shards' weights on their devices. It hands the
//! result over ([`LoadedModel`], [`LoadedShards`]) and keeps nothing: the
//! actor runtime or the synchronous engine runs it.

pub mod open;
pub mod sizing;

use std::path::PathBuf;

use crate::gguf::reader::GgufFile;
use crate::gpu::{AdapterChoice, GpuContext, GpuError};
use crate::model::plan::split_layers;
use crate::model::shard::ModelShard;
use crate::model::spec::{ModelError, ModelSpec};
use crate::scheduler::SchedulerConfig;
use crate::tokenizer::{ChatFormat, TemplateError, Tokenizer, TokenizerError};

pub use open::{
    chat_format, declared_eos_ids, model_layout, open_model, open_tokenizer, open_weights,
};
pub use sizing::{kv_budget, PoolSize};

/// The default model fetched by `scripts/setup`.
pub const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Why a model did not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("no devices configured")]
    NoDevices,
    #[error(
        "the KV memory budget holds fewer than 2 blocks ({budget}); raise kv_memory_mib \
         or gpu_memory_utilization, or use more devices (`wgserve plan` shows what fits)"
    )]
    KvTooSmall { budget: String },
}

/// Everything needed to load a model for serving.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub model: PathBuf,
    /// One entry per shard: the adapter each runs on. Two entries naming the
    /// same adapter open two devices on it.
    pub devices: Vec<AdapterChoice>,
    pub block_size: u32,
    /// Device memory for the KV cache, per shard; 0 sizes it from the
    /// device's memory (see [`kv_budget`]).
    pub kv_memory_bytes: u64,
    /// With `kv_memory_bytes == 0`: the fraction of a GPU's memory to use.
    pub gpu_memory_utilization: f64,
    pub max_num_batched_tokens: usize,
    pub max_num_seqs: usize,
    /// Context window; `None` takes the model's (capped by the KV pool).
    pub max_model_len: Option<usize>,
    pub enable_prefix_caching: bool,
    /// Round matmul inputs to llama.cpp's 8-bit activation grids (closer to
    /// llama.cpp's output); false keeps exact f32 activations, the KV cache
    /// included (f32 pages, twice the memory of f16: what matching a float32
    /// reference such as transformers needs).
    pub quantize_activations: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            model: PathBuf::from(DEFAULT_MODEL),
            devices: vec![AdapterChoice::Auto],
            block_size: 16,
            kv_memory_bytes: 256 << 20,
            gpu_memory_utilization: 0.9,
            max_num_batched_tokens: 512,
            max_num_seqs: 16,
            max_model_len: None,
            enable_prefix_caching: true,
            quantize_activations: true,
        }
    }
}

/// What a loaded model is, for logs and the API.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub path: PathBuf,
    pub adapters: Vec<String>,
    pub num_blocks: u32,
    pub block_size: u32,
    pub kv_bytes: u64,
    pub weight_bytes: u64,
    pub max_model_len: usize,
}

/// A model ready to serve: its shards on their devices (the Shard actors
/// take them to their own threads) and what the other actors need.
pub struct LoadedModel {
    /// `None` for a model without a vocabulary: it takes token ids only.
    pub tokenizer: Option<Tokenizer>,
    /// Ids that end a sequence (see [`open::stop_ids`]).
    pub stop_ids: Vec<u32>,
    pub chat_format: ChatFormat,
    pub spec: ModelSpec,
    pub info: ModelInfo,
    pub shards: Vec<ModelShard>,
    pub scheduler_config: SchedulerConfig,
}

/// A model's shards without its tokenizer: what [`load_shards`] gives for
/// models driven by token ids alone (the test models, whose GGUF carries no
/// vocabulary). [`load`] adds the tokenizer and chat template to it.
pub struct LoadedShards {
    pub spec: ModelSpec,
    pub info: ModelInfo,
    pub shards: Vec<ModelShard>,
    pub scheduler_config: SchedulerConfig,
}

/// Loads a model with its tokenizer, stop ids and chat format.
pub fn load(cfg: &EngineConfig) -> Result<LoadedModel, LoadError> {
    let (file, spec, tokenizer) = open_model(&cfg.model)?;
    let chat_format = chat_format(&spec, tokenizer.as_ref())?;
    let stop_ids = open::stop_ids(&cfg.model, tokenizer.as_ref());
    let s = load_shards_of(cfg, &file, spec)?;
    Ok(LoadedModel {
        tokenizer,
        stop_ids,
        chat_format,
        spec: s.spec,
        info: s.info,
        shards: s.shards,
        scheduler_config: s.scheduler_config,
    })
}

/// Loads the model's shards and sizes its KV pool without reading a
/// tokenizer, so a GGUF without a vocabulary loads too. The caller feeds
/// token ids (`crate::model::chain::run_shards`, or a scheduler over
/// [`LoadedShards::scheduler_config`]).
pub fn load_shards(cfg: &EngineConfig) -> Result<LoadedShards, LoadError> {
    let file = open_weights(&cfg.model)?;
    let spec = ModelSpec::from_gguf(&file)?;
    load_shards_of(cfg, &file, spec)
}

/// Opens one device per shard, sizes the KV pool, and uploads each shard's
/// layers to its device.
fn load_shards_of(
    cfg: &EngineConfig,
    file: &GgufFile,
    spec: ModelSpec,
) -> Result<LoadedShards, LoadError> {
    if cfg.devices.is_empty() {
        return Err(LoadError::NoDevices);
    }
    let ranges = split_layers(spec.n_layers, cfg.devices.len());
    let ctxs = cfg
        .devices
        .iter()
        .take(ranges.len())
        .map(GpuContext::new)
        .collect::<Result<Vec<_>, _>>()?;
    let pool = sizing::size_pool(cfg, &ctxs, &ranges, &spec, &file.tensors)?;
    let limits = pool.shard_limits(cfg);
    let mut shards = Vec::new();
    let mut adapters = Vec::new();
    for (ctx, r) in ctxs.into_iter().zip(ranges) {
        tracing::info!("shard layers {:?} on {}", r, ctx.describe());
        adapters.push(ctx.info.name.clone());
        shards.push(ModelShard::load(ctx, file, &spec, r, limits)?);
    }
    log_memory(&shards, &pool, cfg.block_size);
    let info = ModelInfo {
        name: spec.name.clone(),
        path: cfg.model.clone(),
        adapters,
        num_blocks: pool.num_blocks,
        block_size: cfg.block_size,
        kv_bytes: shards.iter().map(ModelShard::kv_bytes).sum(),
        weight_bytes: shards.iter().map(ModelShard::weight_bytes).sum(),
        max_model_len: pool.max_model_len,
    };
    Ok(LoadedShards {
        spec,
        info,
        shards,
        scheduler_config: pool.scheduler_config(cfg),
    })
}

/// Logs what the loaded shards hold and how many full-context sequences fit.
fn log_memory(shards: &[ModelShard], pool: &PoolSize, block_size: u32) {
    let pool_tokens = pool.tokens(block_size);
    let kv_per_token: u64 = shards
        .iter()
        .map(|s| s.kv_bytes() / (u64::from(pool.num_blocks) * u64::from(block_size)).max(1))
        .sum();
    for (i, s) in shards.iter().enumerate() {
        tracing::info!(
            "shard {i}: weights {:.2} GiB, KV cache {:.2} GiB",
            s.weight_bytes() as f64 / (1u64 << 30) as f64,
            s.kv_bytes() as f64 / (1u64 << 30) as f64
        );
    }
    tracing::info!(
        "KV cache: {kv_per_token} bytes per token, {pool_tokens} tokens: {} sequences of the \
         full context ({} tokens) fit at once",
        pool_tokens / pool.max_model_len.max(1),
        pool.max_model_len
    );
}
