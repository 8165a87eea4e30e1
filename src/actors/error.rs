//! The actors' errors, typed at every message seam, and the one place they
//! become a [`BackendError`] (whose HTTP status the API layer decides).
//! Inside the runtime an error keeps its type (a [`ScheduleError`], a
//! [`StepError`], a [`TokenizeError`]) until it leaves for the API: the
//! `From` impls at the bottom say which kind of failure each one is.

use crate::backend::BackendError;
use crate::model::chain::ChainError;
use crate::model::spec::ModelError;
use crate::scheduler::ScheduleError;
use crate::tokenizer::{PromptError, TokenizerError};

/// Why a prompt could not be encoded (or ids decoded): the client's
/// mistake, every one of them.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error(
        "this model has no tokenizer, so it takes token ids only: send the prompt as an array \
         of token ids (/v1/completions)"
    )]
    NoTokenizer,
    /// The prompt itself: its template, its encoding, ids outside the
    /// vocabulary, empty, or longer than the context.
    #[error(transparent)]
    Prompt(PromptError),
    /// Decoding ids back to text.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

/// Why the runtime cannot take a request now (none of them is the
/// request's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// An actor a request must pass through has stopped.
    #[error("the {0} is not running")]
    ActorGone(&'static str),
    #[error("the runtime is shutting down")]
    ShuttingDown,
    /// The runtime failed for good (see `Health`) for this reason.
    #[error("the server failed and is restarting ({0}); retry shortly")]
    Failed(String),
}

/// Why the Scheduler refused a group of sequences (it adds all or none).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AddError {
    /// One of them could never run (longer than the context, bigger than
    /// the whole cache).
    #[error(transparent)]
    Rejected(#[from] ScheduleError),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// Why a shard's step did not come back.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// This step failed (a validation error, a bad batch) but the shard can
    /// run the next one: the step's requests fail, serving goes on. (The
    /// model's error is boxed: it is large, and the `Ok` side travels in
    /// every step's answer.)
    #[error("{shard}: {source}")]
    Step {
        shard: String,
        source: Box<ModelError>,
    },
    /// The shard can run no more steps: the runtime has failed.
    #[error(transparent)]
    Fatal(#[from] FatalError),
}

/// Why a shard can run no more steps. Kept by the shard and given again for
/// every later step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FatalError {
    /// The device and the shard's state are unknown after a panic.
    #[error("{shard}: the step panicked: {message}")]
    Panicked { shard: String, message: String },
    /// wgpu's device-lost callback fired.
    #[error("{shard}: the device was lost ({reason}): {message}")]
    DeviceLost {
        shard: String,
        reason: String,
        message: String,
    },
    /// Mapping a buffer failed: how a lost device reaches a readback.
    #[error("{shard}: GPU readback failed: {message}")]
    Readback { shard: String, message: String },
    /// The shard's actor is gone.
    #[error("shard {index} stopped: {source}")]
    Stopped {
        index: usize,
        source: actix::MailboxError,
    },
}

impl From<PromptError> for TokenizeError {
    fn from(e: PromptError) -> Self {
        match e {
            // Said with the way out: token ids on /v1/completions.
            PromptError::NoTokenizer => TokenizeError::NoTokenizer,
            e => TokenizeError::Prompt(e),
        }
    }
}

impl From<TokenizeError> for BackendError {
    fn from(e: TokenizeError) -> Self {
        BackendError::InvalidRequest(e.to_string())
    }
}

impl From<Unavailable> for BackendError {
    fn from(e: Unavailable) -> Self {
        BackendError::Unavailable(e.to_string())
    }
}

impl From<AddError> for BackendError {
    fn from(e: AddError) -> Self {
        match e {
            AddError::Rejected(e) => BackendError::InvalidRequest(e.to_string()),
            AddError::Unavailable(e) => e.into(),
        }
    }
}

/// A failed step: the requests in it get an engine error (500).
impl From<&ChainError<StepError>> for BackendError {
    fn from(e: &ChainError<StepError>) -> Self {
        BackendError::Engine(e.to_string())
    }
}

/// What a request in flight gets when the runtime fails for good (its
/// stream already started, so a 500-class engine error, not a 503).
pub fn runtime_failed(reason: &str) -> BackendError {
    BackendError::Engine(format!("the server failed and must restart: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_becomes_the_backend_error_of_its_kind() {
        let too_long: BackendError = TokenizeError::from(PromptError::TooLong {
            len: 9,
            max_model_len: 8,
        })
        .into();
        assert!(matches!(too_long, BackendError::InvalidRequest(ref m) if m.contains("9 tokens")));
        let rejected: BackendError = AddError::from(ScheduleError::EmptyPrompt).into();
        assert_eq!(
            rejected,
            BackendError::InvalidRequest("the prompt is empty".into())
        );
        let failed: BackendError = AddError::from(Unavailable::Failed("boom".into())).into();
        assert!(matches!(failed, BackendError::Unavailable(ref m) if m.contains("boom")));
        let gone: BackendError = Unavailable::ActorGone("scheduler").into();
        assert_eq!(
            gone,
            BackendError::Unavailable("the scheduler is not running".into())
        );
        let step = ChainError::Shard(StepError::Step {
            shard: "layers 0..2".into(),
            source: Box::new(ModelError::Batch(crate::step::BatchError::OutOfRange)),
        });
        assert_eq!(
            BackendError::from(&step),
            BackendError::Engine("layers 0..2: batch: a slot or token id is out of range".into())
        );
        assert!(matches!(runtime_failed("x"), BackendError::Engine(ref m) if m.ends_with(": x")));
    }
}
