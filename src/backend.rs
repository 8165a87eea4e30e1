//! The one narrow interface between the HTTP/WebSocket layer (`crate::api`)
//! and the serving runtime (`crate::actors`): submit a generation request and
//! get back a stream of [`Event`]s, cancel it, tokenize, read metrics.
//!
//! The API layer depends only on this module, so its tests can use a mock;
//! the actor runtime implements it for real. Every runtime type the API
//! names is owned here ([`Event`], [`Logprobs`], [`GenerateRequest`]...) or
//! re-exported from where it lives ([`SamplingParams`], [`FinishReason`],
//! [`Usage`], the chat types), so `src/api/` imports nothing else of the
//! runtime (`src/api/layering.rs` checks). A request's events arrive on its
//! own channel; dropping the receiver cancels the request (the scheduler
//! notices within one step, whether or not anyone polls the stream).

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use tokio::sync::mpsc;

pub use crate::sampling::SamplingParams;
pub use crate::scheduler::{FinishReason, Usage};
pub use crate::tokenizer::{ChatMessage, ReasoningEffort};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What to complete.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptInput {
    /// Chat messages, rendered with the model's chat template and a
    /// generation prompt.
    Chat(Vec<ChatMessage>),
    /// Raw text, encoded as is (special tokens in it are parsed).
    Text(String),
    /// Token ids, used as is.
    Ids(Vec<u32>),
}

/// One generation request, already validated by the API layer.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: PromptInput,
    pub sampling: SamplingParams,
    /// `None`: up to the end of the context window.
    pub max_tokens: Option<usize>,
    /// Stop strings: the text up to the first one is returned and the
    /// sequence finishes with `stop`.
    pub stop: Vec<String>,
    /// Keep generating through EOS / end-of-turn tokens.
    pub ignore_eos: bool,
    /// Return logprobs with this many top alternatives (0 = only the chosen token's).
    pub logprobs: Option<usize>,
    /// Include special tokens' text in the output.
    pub keep_special: bool,
    /// Harmony models' reasoning level for chat prompts (`None`: medium).
    pub reasoning_effort: Option<ReasoningEffort>,
}

/// An identifier the runtime gives each accepted request.
pub type RequestId = u64;

/// A token as logprobs name it: its id, its text (for a model without a
/// tokenizer, or an id past it, `token_id:<id>`) and its log-probability.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredToken {
    pub id: u32,
    pub text: String,
    pub logprob: f32,
}

/// The logprobs of one generated token: the token itself and the most
/// likely alternatives, most likely first. The Detokenizer, which holds the
/// tokenizer, names every token, so the API only shapes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Logprobs {
    pub token: ScoredToken,
    pub top: Vec<ScoredToken>,
}

/// What a request's stream carries, in order: any number of `Delta`s, then
/// exactly one `Finished` or `Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// New text (may be empty when a token completes no character yet), the
    /// token ids that produced it, and their logprobs when asked (one entry
    /// per token id).
    Delta {
        text: String,
        /// Reasoning text (harmony's `analysis` channel), kept apart from
        /// the answer; empty for models that do not reason.
        reasoning: String,
        token_ids: Vec<u32>,
        logprobs: Vec<Logprobs>,
    },
    Finished {
        reason: FinishReason,
        usage: Usage,
    },
    Error(BackendError),
}

/// Why a request failed, with the HTTP status the API should answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize)]
pub enum BackendError {
    /// A client mistake (bad prompt, prompt longer than the context...): 400.
    #[error("{0}")]
    InvalidRequest(String),
    /// The waiting queue is full: 429 with Retry-After.
    #[error("the server is busy ({0} requests waiting); retry shortly")]
    QueueFull(usize),
    /// The model is not loaded yet or is shutting down: 503.
    #[error("{0}")]
    Unavailable(String),
    /// The engine failed on this request: 500 (the server stays up).
    #[error("engine failure: {0}")]
    Engine(String),
    /// One request asks for more completions (prompts × `n`) than the
    /// admission limit lets wait at once, so it could never be admitted
    /// whole, however idle the server: 400, not a 429 to retry forever.
    #[error(
        "this request asks for {choices} completions (prompts × n), but the server admits at \
         most {max_queue} waiting requests at once (max_queue); send fewer prompts or a smaller n, \
         or raise the server's max_queue"
    )]
    TooManyChoices { choices: usize, max_queue: usize },
}

impl BackendError {
    pub fn status(&self) -> u16 {
        match self {
            BackendError::InvalidRequest(_) | BackendError::TooManyChoices { .. } => 400,
            BackendError::QueueFull(_) => 429,
            BackendError::Unavailable(_) => 503,
            BackendError::Engine(_) => 500,
        }
    }
}

/// What `/v1/models` and the logs say about the loaded model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCard {
    /// The name clients pass as `model`.
    pub id: String,
    pub path: String,
    pub max_model_len: usize,
    pub adapters: Vec<String>,
    pub created: u64,
}

impl ModelCard {
    /// OpenAI's `system_fingerprint`: names the server build and the model
    /// it serves (`wgserve-<version>-<hash of id and path>`), so a client
    /// can tell when answers may change for reasons other than sampling.
    /// Stable across restarts of the same build on the same model.
    pub fn system_fingerprint(&self) -> String {
        // FNV-1a, written out: std's hasher may change between Rust releases.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.id.bytes().chain([0]).chain(self.path.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("wgserve-{}-{:012x}", env!("CARGO_PKG_VERSION"), hash >> 16)
    }
}

/// A point-in-time view of the runtime for `/metrics` and `/health`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MetricsSnapshot {
    pub requests_running: usize,
    pub requests_waiting: usize,
    pub kv_blocks_used: usize,
    pub kv_blocks_total: usize,
    pub preemptions_total: u64,
    pub prefix_cache_queries_total: u64,
    pub prefix_cache_hits_total: u64,
    pub prompt_tokens_total: u64,
    pub generation_tokens_total: u64,
    pub requests_finished_total: u64,
    pub requests_cancelled_total: u64,
    pub requests_failed_total: u64,
    pub steps_total: u64,
    /// Sum and count of time to first token, seconds.
    pub ttft_seconds_sum: f64,
    pub ttft_seconds_count: u64,
    /// Sum and count of time per output token after the first, seconds.
    pub tpot_seconds_sum: f64,
    pub tpot_seconds_count: u64,
}

/// An accepted request: its id and the receiver of its events.
pub type Accepted = (RequestId, mpsc::UnboundedReceiver<Event>);

/// The serving runtime as the API layer sees it.
pub trait Backend: Send + Sync + 'static {
    /// Tokenizes and queues the requests of one API call (its prompts × `n`
    /// choices) as a group: all are admitted, or none is. Resolves once the
    /// scheduler has accepted them, so every request-level error (full queue,
    /// a group that could never fit the queue, prompt longer than the
    /// context, bad template) comes back here, before any streaming starts;
    /// only engine failures arrive later, as `Event::Error`. The receivers
    /// are in the order of `requests`.
    fn submit_group(
        &self,
        requests: Vec<GenerateRequest>,
    ) -> BoxFuture<'_, Result<Vec<Accepted>, BackendError>>;

    /// [`Backend::submit_group`] of one request.
    fn submit(&self, request: GenerateRequest) -> BoxFuture<'_, Result<Accepted, BackendError>> {
        let group = self.submit_group(vec![request]);
        Box::pin(async move {
            let mut accepted = group.await?;
            accepted
                .pop()
                .ok_or_else(|| BackendError::Engine("a group of one came back empty".into()))
        })
    }

    /// Cancels a request (also done by dropping its receiver).
    fn cancel(&self, id: RequestId) -> BoxFuture<'_, ()>;

    fn tokenize(&self, prompt: PromptInput) -> BoxFuture<'_, Result<Vec<u32>, BackendError>>;

    fn detokenize(&self, ids: Vec<u32>) -> BoxFuture<'_, Result<String, BackendError>>;

    fn metrics(&self) -> BoxFuture<'_, MetricsSnapshot>;

    fn model(&self) -> ModelCard;

    /// True once the model is loaded and serving (false again once failed).
    fn ready(&self) -> bool;

    /// Why the runtime failed for good (a shard panicked or lost its
    /// device, the scheduler panicked), if it did: `/health` reports it and
    /// the process exits to be restarted. Never set while loading.
    fn failure(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(id: &str, path: &str) -> ModelCard {
        ModelCard {
            id: id.into(),
            path: path.into(),
            max_model_len: 2048,
            adapters: Vec::new(),
            created: 0,
        }
    }

    #[test]
    fn system_fingerprint_names_the_build_and_the_model() {
        let a = card("smol", "models/smol.gguf");
        let fp = a.system_fingerprint();
        assert!(
            fp.starts_with(concat!("wgserve-", env!("CARGO_PKG_VERSION"), "-")),
            "{fp}"
        );
        // The same model gives the same fingerprint whatever else differs.
        let mut later = a.clone();
        later.created = 99;
        later.max_model_len = 512;
        assert_eq!(later.system_fingerprint(), fp);
        assert_ne!(card("other", "models/smol.gguf").system_fingerprint(), fp);
        assert_ne!(card("smol", "models/other.gguf").system_fingerprint(), fp);
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(
            card("ab", "c").system_fingerprint(),
            card("a", "bc").system_fingerprint()
        );
    }
}
