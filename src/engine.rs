//! A synchronous engine: the scheduler and the model shards driven from one
//! thread, step by step. `wgserve generate`, the benchmarks and the fidelity
//! tests use it; the server runs the same pieces as actors instead.
//!
//! It owns loading: opening the GGUF, reading the model description and the
//! tokenizer, opening one device per shard, splitting the layers, sizing the
//! KV pool from the memory budget.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::gguf::reader::GgufFile;
use crate::gpu::kernels::kv_write::KvCacheLayout;
use crate::gpu::{AdapterChoice, GpuContext};
use crate::kv::BlockPool;
use crate::model::kv_cache::{blocks_for_budget, layout_with};
use crate::model::shard::{ModelShard, ShardInput, ShardLimits, ShardOutput};
use crate::model::spec::Arch;
use crate::model::spec::{ModelError, ModelSpec};
use crate::scheduler::{Scheduler, SchedulerConfig, SeqEvent};
use crate::tokenizer::{ChatFormat, ChatTemplate, Tokenizer, TokenizerError};

/// The default model fetched by `scripts/setup`.
pub const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Template(#[from] crate::tokenizer::TemplateError),
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    #[error("{0}")]
    Config(String),
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

/// Contiguous, nearly equal layer ranges, one per shard.
pub fn split_layers(n_layers: usize, n_shards: usize) -> Vec<Range<usize>> {
    let n = n_shards.clamp(1, n_layers.max(1));
    (0..n)
        .map(|i| (i * n_layers / n)..((i + 1) * n_layers / n))
        .collect()
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

pub struct Engine {
    /// `None` for a model without a vocabulary: it takes token ids only.
    pub tokenizer: Option<Tokenizer>,
    /// Ids that end a sequence (see [`LoadedModel::stop_ids`]).
    pub stop_ids: Vec<u32>,
    pub chat_format: ChatFormat,
    pub spec: ModelSpec,
    pub info: ModelInfo,
    pub scheduler: Scheduler,
    shards: Vec<ModelShard>,
}

/// Opens the devices and loads the shards (the part of loading the Shard
/// actors do on their own threads).
pub struct LoadedModel {
    /// `None` for a model without a vocabulary: it takes token ids only.
    pub tokenizer: Option<Tokenizer>,
    /// Ids that end a sequence: the tokenizer's end-of-turn tokens and what
    /// a model directory's config declares (`eos_token_id`).
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
pub fn open_tokenizer(path: &Path, file: &GgufFile) -> Result<Option<Tokenizer>, EngineError> {
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
pub fn model_layout(
    path: &Path,
) -> Result<
    (
        crate::gguf::metadata::Metadata,
        Vec<crate::gguf::reader::TensorInfo>,
    ),
    ModelError,
> {
    if crate::hf::is_model_dir(path) {
        Ok(crate::hf::directory_layout(path)?)
    } else {
        let file = GgufFile::open(path)?;
        Ok((file.metadata.clone(), file.tensors.clone()))
    }
}

pub fn open_model(path: &Path) -> Result<(GgufFile, ModelSpec, Option<Tokenizer>), EngineError> {
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

/// How chats are written for this model: harmony for gpt-oss (built in, so
/// its reasoning can be parsed back out), otherwise the model's own Jinja
/// template (ChatML when it ships none).
pub fn chat_format(
    spec: &ModelSpec,
    tokenizer: Option<&Tokenizer>,
) -> Result<ChatFormat, EngineError> {
    if spec.arch == Arch::GptOss {
        return Ok(ChatFormat::Harmony);
    }
    Ok(ChatFormat::Template(Box::new(match tokenizer {
        Some(t) => ChatTemplate::from_model(t.chat_template())?,
        None => ChatTemplate::chatml(),
    })))
}

pub fn load(cfg: &EngineConfig) -> Result<LoadedModel, EngineError> {
    let (file, spec, tokenizer) = open_model(&cfg.model)?;
    let chat_format = chat_format(&spec, tokenizer.as_ref())?;
    let mut stop_ids = tokenizer
        .as_ref()
        .map(|t| t.stop_ids().to_vec())
        .unwrap_or_default();
    for id in declared_eos_ids(&cfg.model) {
        if !stop_ids.contains(&id) {
            stop_ids.push(id);
        }
    }
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
/// token ids (`run_shards`, or a [`Scheduler`] over
/// [`LoadedShards::scheduler_config`]).
pub fn load_shards(cfg: &EngineConfig) -> Result<LoadedShards, EngineError> {
    let file = open_weights(&cfg.model)?;
    let spec = ModelSpec::from_gguf(&file)?;
    load_shards_of(cfg, &file, spec)
}

fn load_shards_of(
    cfg: &EngineConfig,
    file: &GgufFile,
    spec: ModelSpec,
) -> Result<LoadedShards, EngineError> {
    if cfg.devices.is_empty() {
        return Err(EngineError::Config("no devices configured".into()));
    }
    let ranges = split_layers(spec.n_layers, cfg.devices.len());
    let ctxs = cfg
        .devices
        .iter()
        .take(ranges.len())
        .map(GpuContext::new)
        .collect::<Result<Vec<_>, _>>()?;
    // Every shard gets the same number of blocks (block ids are global): the
    // smallest any shard's budget allows.
    let mut num_blocks = u32::MAX;
    let mut layout: Option<KvCacheLayout> = None;
    for (i, (ctx, r)) in ctxs.iter().zip(&ranges).enumerate() {
        let l = layout_with(ctx, &spec, cfg.block_size, !cfg.quantize_activations);
        let budget = kv_budget(cfg, ctx, &spec, &file.tensors, ranges.len(), i);
        num_blocks = num_blocks.min(blocks_for_budget(
            &l,
            r.len(),
            budget,
            ctx.caps.max_storage_binding,
        ));
        layout.get_or_insert(l);
    }
    if num_blocks < 2 {
        return Err(EngineError::Config(format!(
            "the KV memory budget holds fewer than 2 blocks ({}); raise kv_memory_mib \
             or gpu_memory_utilization, or use more devices (`wgserve plan` shows what fits)",
            if cfg.kv_memory_bytes > 0 {
                format!("{} MiB", cfg.kv_memory_bytes >> 20)
            } else {
                "sized from the device's memory".to_string()
            }
        )));
    }
    let pool_tokens = num_blocks as usize * cfg.block_size as usize;
    let wanted_len = cfg
        .max_model_len
        .unwrap_or(spec.context_length)
        .min(spec.context_length);
    let max_model_len = wanted_len.min(pool_tokens);
    if max_model_len < wanted_len {
        tracing::warn!(
            "the KV cache budget ({} MiB per shard) holds {pool_tokens} tokens, fewer than the \
             {wanted_len}-token context asked for: the context is {max_model_len} tokens. Raise \
             kv_memory_mib (`wgserve plan` shows what fits) or lower max_model_len.",
            cfg.kv_memory_bytes >> 20
        );
    }
    let limits = ShardLimits {
        max_tokens: cfg.max_num_batched_tokens,
        max_samples: cfg.max_num_seqs,
        max_blocks_per_seq: max_model_len.div_ceil(cfg.block_size as usize),
        block_size: cfg.block_size,
        num_blocks,
        quantize_activations: cfg.quantize_activations,
        kv_f32: !cfg.quantize_activations,
    };
    let mut shards = Vec::new();
    let mut adapters = Vec::new();
    for (ctx, r) in ctxs.into_iter().zip(ranges) {
        tracing::info!("shard layers {:?} on {}", r, ctx.describe());
        adapters.push(ctx.info.name.clone());
        shards.push(ModelShard::load(ctx, file, &spec, r, limits)?);
    }
    let kv_per_token: u64 = shards
        .iter()
        .map(|s| s.kv_bytes() / (u64::from(num_blocks) * u64::from(cfg.block_size)).max(1))
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
         full context ({max_model_len} tokens) fit at once",
        pool_tokens / max_model_len.max(1)
    );
    let info = ModelInfo {
        name: spec.name.clone(),
        path: cfg.model.clone(),
        adapters,
        num_blocks,
        block_size: cfg.block_size,
        kv_bytes: shards.iter().map(ModelShard::kv_bytes).sum(),
        weight_bytes: shards.iter().map(ModelShard::weight_bytes).sum(),
        max_model_len,
    };
    let scheduler_config = SchedulerConfig {
        max_num_batched_tokens: cfg.max_num_batched_tokens,
        max_num_seqs: cfg.max_num_seqs,
        max_model_len,
        watermark_blocks: (num_blocks as usize / 100).max(1),
        enable_prefix_caching: cfg.enable_prefix_caching,
    };
    Ok(LoadedShards {
        spec,
        info,
        shards,
        scheduler_config,
    })
}

/// KV bytes shard `i` of `n` may use. An explicit `kv_memory_bytes` is used
/// as is. Otherwise, on a GPU whose memory Vulkan reports: that memory
/// times `gpu_memory_utilization`, less the shard's weights and step
/// activations (the memory plan's figures, which equal what loads); on a
/// CPU driver (its "device memory" is the host's) or when unknown: 256 MiB.
pub fn kv_budget(
    cfg: &EngineConfig,
    ctx: &GpuContext,
    spec: &ModelSpec,
    tensors: &[crate::gguf::reader::TensorInfo],
    n: usize,
    i: usize,
) -> u64 {
    const FALLBACK: u64 = 256 << 20;
    if cfg.kv_memory_bytes > 0 {
        return cfg.kv_memory_bytes;
    }
    // Shards given the same adapter share its memory (two devices on one
    // GPU, as `devices = ["auto", "auto"]` makes).
    let sharing = cfg
        .devices
        .get(i)
        .map_or(1, |d| cfg.devices.iter().filter(|e| *e == d).count())
        .max(1) as u64;
    let memory = match ctx.caps.device_memory {
        Some(m) if ctx.info.device_type != wgpu::DeviceType::Cpu => m / sharing,
        _ => {
            tracing::info!(
                "KV cache: {} MiB on {} (a CPU driver, or its memory is unknown; set \
                 kv_memory_mib to change)",
                FALLBACK >> 20,
                ctx.info.name
            );
            return FALLBACK;
        }
    };
    let req = crate::model::plan::PlanRequest {
        devices: n,
        device_bytes: memory,
        context: cfg.max_model_len.unwrap_or(spec.context_length),
        kv_elem_bytes: if cfg.quantize_activations { 2 } else { 4 },
        block_size: cfg.block_size as usize,
        max_num_batched_tokens: cfg.max_num_batched_tokens,
        max_num_seqs: cfg.max_num_seqs,
        reserve_fraction: 1.0 - cfg.gpu_memory_utilization.clamp(0.0, 1.0),
    };
    let plan = crate::model::plan::plan(spec, tensors, &req);
    let budget = plan.shards.get(i).map_or(0, |s| s.kv_budget_bytes);
    tracing::info!(
        "KV cache: {:.2} GiB on {} ({:.0}% of {:.1} GiB{}, less weights and activations)",
        budget as f64 / (1u64 << 30) as f64,
        ctx.info.name,
        cfg.gpu_memory_utilization * 100.0,
        memory as f64 / (1u64 << 30) as f64,
        if sharing > 1 {
            format!(", its share of a device {sharing} shards use")
        } else {
            String::new()
        }
    );
    budget
}

/// Runs a batch through every shard in order and returns the last one's samples.
pub fn run_shards(
    shards: &mut [ModelShard],
    batch: &crate::scheduler::BatchInput,
) -> Result<Vec<crate::scheduler::SampleOutput>, EngineError> {
    let mut input = ShardInput::Tokens;
    for shard in shards.iter_mut() {
        match shard.step(batch, input)? {
            ShardOutput::Hidden(h) => input = ShardInput::Hidden(h),
            ShardOutput::Samples(s) => return Ok(s),
        }
    }
    Err(EngineError::Config(
        "the last shard returned hidden states".into(),
    ))
}

impl Engine {
    pub fn new(cfg: &EngineConfig) -> Result<Self, EngineError> {
        let m = load(cfg)?;
        let pool = BlockPool::new(m.info.num_blocks as usize, m.info.block_size as usize);
        Ok(Self {
            tokenizer: m.tokenizer,
            stop_ids: m.stop_ids,
            chat_format: m.chat_format,
            spec: m.spec,
            info: m.info,
            scheduler: Scheduler::new(m.scheduler_config, pool),
            shards: m.shards,
        })
    }

    /// One scheduler step through the model. Empty when idle.
    pub fn step(&mut self) -> Result<Vec<SeqEvent>, EngineError> {
        let Some(batch) = self.scheduler.schedule() else {
            return Ok(Vec::new());
        };
        match run_shards(&mut self.shards, &batch) {
            Ok(samples) => Ok(self.scheduler.update(samples)),
            Err(e) => {
                // The step's sequences are lost; the scheduler stays consistent.
                self.scheduler.abort_in_flight();
                Err(e)
            }
        }
    }

    /// Runs a raw batch (tests: teacher forcing over a whole sequence).
    pub fn run_batch(
        &mut self,
        batch: &crate::scheduler::BatchInput,
    ) -> Result<Vec<crate::scheduler::SampleOutput>, EngineError> {
        run_shards(&mut self.shards, batch)
    }

    pub fn adapter(&self) -> String {
        self.info.adapters.join(", ")
    }
}
