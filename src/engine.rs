//! A synchronous engine: the scheduler and the model shards driven from one
//! thread, step by step. `wgserve generate`, the benchmarks and the fidelity
//! tests use it; the server runs the same pieces as actors instead. Loading
//! is the loader's (`crate::loader`); passing a step through the shards is
//! `crate::model::chain`'s, the same rule the Scheduler actor uses.

use crate::kv::BlockPool;
use crate::loader::{load, LoadError, ModelInfo};
use crate::model::chain::{run_shards, ChainError};
use crate::model::shard::ModelShard;
use crate::model::spec::{ModelError, ModelSpec};
use crate::scheduler::{Scheduler, SeqEvent};
use crate::step::{BatchInput, SampleOutput};
use crate::tokenizer::{ChatFormat, Tokenizer};

// The engine is configured with the loader's settings; these paths predate
// the loader's own module and stay for callers of `engine::EngineConfig`.
pub use crate::loader::{EngineConfig, DEFAULT_MODEL};

/// Why the engine did not load or did not step.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Step(#[from] ChainError<ModelError>),
}

pub struct Engine {
    /// `None` for a model without a vocabulary: it takes token ids only.
    pub tokenizer: Option<Tokenizer>,
    /// Ids that end a sequence (see [`crate::loader::LoadedModel::stop_ids`]).
    pub stop_ids: Vec<u32>,
    pub chat_format: ChatFormat,
    pub spec: ModelSpec,
    pub info: ModelInfo,
    pub scheduler: Scheduler,
    shards: Vec<ModelShard>,
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
                Err(e.into())
            }
        }
    }

    /// Runs a raw batch (tests: teacher forcing over a whole sequence).
    pub fn run_batch(&mut self, batch: &BatchInput) -> Result<Vec<SampleOutput>, EngineError> {
        Ok(run_shards(&mut self.shards, batch)?)
    }

    pub fn adapter(&self) -> String {
        self.info.adapters.join(", ")
    }
}
