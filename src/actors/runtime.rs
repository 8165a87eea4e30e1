//! The runtime: starts and wires the actors, and implements [`Backend`] on
//! top of their addresses. It owns only addresses, the model card, the
//! health latch the Scheduler sets when the model fails, and the threads it
//! started (one per shard, one for the Detokenizer), which stop
//! when the runtime is dropped; every request-level decision is an actor's.
//!
//! Wiring, with the cycles closed by creating contexts before the actors:
//! Intake -> Tokenizer pool, Intake -> Scheduler (AddSequences);
//! Scheduler -> Shards (RunStep), Scheduler -> Detokenizer (events),
//! Scheduler -> Intake (how many wait; a weak link, so dropping the runtime
//! lets Intake, then the Scheduler, stop); Detokenizer -> Scheduler (stop
//! strings); Detokenizer -> each request's channel.

use std::sync::Arc;

use super::detokenizer::Detokenizer;
use super::error::Unavailable;
use super::fault::Fault;
use super::health::Health;
use super::intake::{Intake, SplitRules};
use super::messages::{Cancel, Detokenize, GetMetrics, RunStep, Submit, Tokenize};
use super::scheduler::SchedulerActor;
use super::shard::ShardActor;
use super::tokenizer::TokenizerWorker;
use crate::backend::{
    Accepted, Backend, BackendError, BoxFuture, GenerateRequest, MetricsSnapshot, ModelCard,
    PromptInput, RequestId,
};
use crate::kv::BlockPool;
use crate::loader::LoadedModel;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::tokenizer::{ChatFormat, Tokenizer};
use actix::{Actor, Addr, Arbiter, AsyncContext, Context, Recipient, SyncArbiter};

/// Serving settings that are not the model's.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Most accepted requests not yet running; more get `QueueFull` (429).
    pub max_queue: usize,
    /// Threads tokenizing prompts.
    pub tokenizer_threads: usize,
    /// The name clients pass as `model`; the model's own name when `None`.
    pub served_model_name: Option<String>,
    /// Test hook only: fail on purpose (see [`Fault`]). `None` in production.
    pub fault: Option<Fault>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            max_queue: 256,
            tokenizer_threads: 2,
            served_model_name: None,
            fault: None,
        }
    }
}

/// What the actors need besides the shards: the pieces of a
/// [`LoadedModel`], or of a stand-in model in tests.
pub struct RuntimeParts {
    /// `None` for a model without a vocabulary: requests must then send
    /// token ids, and streams carry ids without text.
    pub tokenizer: Option<Tokenizer>,
    /// The model's vocabulary size (token ids must be below it).
    pub vocab_size: usize,
    /// Ids that end a sequence.
    pub stop_ids: Vec<u32>,
    pub chat_format: ChatFormat,
    pub scheduler_config: SchedulerConfig,
    pub num_blocks: usize,
    pub block_size: usize,
    /// The shards in layer order; the last one returns samples.
    pub shards: Vec<Recipient<RunStep>>,
    pub card: ModelCard,
}

pub struct Runtime {
    intake: Addr<Intake>,
    tokenizer: Addr<TokenizerWorker>,
    scheduler: Addr<SchedulerActor>,
    card: ModelCard,
    health: Health,
    threads: Vec<Arbiter>,
}

impl Runtime {
    /// Starts the actors around a loaded model: each shard on its own
    /// thread. Must be called inside a running actix `System`; the
    /// Scheduler and Intake run on the current arbiter.
    pub fn start(loaded: LoadedModel, opts: RuntimeOptions) -> Runtime {
        let info = loaded.info;
        let card = ModelCard {
            id: opts
                .served_model_name
                .clone()
                .unwrap_or_else(|| info.name.clone()),
            path: info.path.display().to_string(),
            max_model_len: info.max_model_len,
            adapters: info.adapters.clone(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let mut threads = Vec::new();
        let shards = loaded
            .shards
            .into_iter()
            .enumerate()
            .map(|(i, shard)| {
                let thread = Arbiter::new();
                // An injected shard fault goes to the first shard only.
                let fault = opts.fault.filter(|_| i == 0);
                let addr = ShardActor::start_in_arbiter(&thread.handle(), move |_| {
                    ShardActor::on_device(shard, fault)
                });
                threads.push(thread);
                addr.recipient()
            })
            .collect();
        let parts = RuntimeParts {
            tokenizer: loaded.tokenizer,
            vocab_size: loaded.spec.vocab_size,
            stop_ids: loaded.stop_ids,
            chat_format: loaded.chat_format,
            scheduler_config: loaded.scheduler_config,
            num_blocks: info.num_blocks as usize,
            block_size: info.block_size as usize,
            shards,
            card,
        };
        let mut rt = Self::start_parts(parts, opts);
        rt.threads.extend(threads);
        rt
    }

    /// Starts the actors around shards someone else runs (a stand-in model
    /// in tests). Must be called inside a running actix `System`.
    pub fn start_parts(parts: RuntimeParts, opts: RuntimeOptions) -> Runtime {
        let tokenizer = parts.tokenizer.map(Arc::new);
        let reasoning = parts.chat_format.reasoning_format();
        if let Some(r) = reasoning {
            tracing::info!("chat answers carry reasoning ({r:?}): sent as reasoning_content");
        }
        let chat_format = Arc::new(parts.chat_format);
        let max_model_len = parts.scheduler_config.max_model_len;
        let vocab_size = parts.vocab_size;
        let stop_ids = parts.stop_ids;

        let intake_ctx = Context::<Intake>::new();
        let scheduler_ctx = Context::<SchedulerActor>::new();

        let detok_thread = Arbiter::new();
        let detok = {
            let tokenizer = tokenizer.clone();
            let scheduler = scheduler_ctx.address().recipient();
            Detokenizer::start_in_arbiter(&detok_thread.handle(), move |_| {
                Detokenizer::new(tokenizer, scheduler)
            })
        };
        let tokenizer_pool = {
            let tokenizer = tokenizer.clone();
            SyncArbiter::start(opts.tokenizer_threads.max(1), move || {
                TokenizerWorker::new(
                    tokenizer.clone(),
                    chat_format.clone(),
                    vocab_size,
                    max_model_len,
                )
            })
        };
        let core = Scheduler::new(
            parts.scheduler_config,
            BlockPool::new(parts.num_blocks, parts.block_size),
        );
        let health = Health::default();
        let scheduler = scheduler_ctx.run(SchedulerActor::new(
            core,
            parts.shards,
            detok,
            intake_ctx.address().downgrade().recipient(),
            health.clone(),
            opts.fault,
        ));
        let intake = intake_ctx.run(Intake::new(
            tokenizer_pool.clone(),
            scheduler.clone().recipient(),
            opts.max_queue,
            SplitRules {
                stop_ids,
                max_model_len,
                reasoning,
            },
        ));
        tracing::info!(
            "runtime started: model {}, context {} tokens, {} blocks of {}",
            parts.card.id,
            max_model_len,
            parts.num_blocks,
            parts.block_size
        );
        Runtime {
            intake,
            tokenizer: tokenizer_pool,
            scheduler,
            card: parts.card,
            health,
            threads: vec![detok_thread],
        }
    }

    /// The runtime's health latch (`wgserve serve` waits on it to exit).
    pub fn health(&self) -> &Health {
        &self.health
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // The shards hold the device memory: let their threads end.
        for thread in &self.threads {
            thread.stop();
        }
    }
}

fn gone() -> BackendError {
    Unavailable::ShuttingDown.into()
}

impl Backend for Runtime {
    fn submit_group(
        &self,
        requests: Vec<GenerateRequest>,
    ) -> BoxFuture<'_, Result<Vec<Accepted>, BackendError>> {
        if let Some(reason) = self.health.failure() {
            return Box::pin(async move { Err(Unavailable::Failed(reason).into()) });
        }
        let sent = self.intake.send(Submit { requests });
        Box::pin(async move { sent.await.map_err(|_| gone())? })
    }

    fn cancel(&self, id: RequestId) -> BoxFuture<'_, ()> {
        let sent = self.scheduler.send(Cancel { id });
        Box::pin(async move {
            let _ = sent.await;
        })
    }

    fn tokenize(&self, prompt: PromptInput) -> BoxFuture<'_, Result<Vec<u32>, BackendError>> {
        let sent = self.tokenizer.send(Tokenize {
            prompt,
            check_context: false,
            reasoning_effort: None,
        });
        Box::pin(async move { Ok(sent.await.map_err(|_| gone())??) })
    }

    fn detokenize(&self, ids: Vec<u32>) -> BoxFuture<'_, Result<String, BackendError>> {
        let sent = self.tokenizer.send(Detokenize { ids });
        Box::pin(async move { Ok(sent.await.map_err(|_| gone())??) })
    }

    fn metrics(&self) -> BoxFuture<'_, MetricsSnapshot> {
        let sent = self.scheduler.send(GetMetrics);
        Box::pin(async move { sent.await.unwrap_or_default() })
    }

    fn model(&self) -> ModelCard {
        self.card.clone()
    }

    fn ready(&self) -> bool {
        self.health.failure().is_none() && self.intake.connected() && self.scheduler.connected()
    }

    fn failure(&self) -> Option<String> {
        self.health.failure()
    }
}
