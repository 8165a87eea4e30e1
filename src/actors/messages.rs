//! The messages the actors exchange, in one place so each actor's file shows
//! only its state and behaviour. Every message is plain owned data (ids,
//! token vectors, channel senders, an `Arc` of an immutable batch): nothing
//! here gives one actor a handle into another's state. Every answer that
//! can fail carries a typed error (`error.rs`); only `Submit`, the API's
//! own door, and `Fail`, bound for a client, carry a `BackendError`.

use std::sync::Arc;
use std::time::Instant;

use actix::Message;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::error::{AddError, StepError, TokenizeError};
use crate::backend::{
    BackendError, Event, GenerateRequest, MetricsSnapshot, PromptInput, RequestId,
};
use crate::model::shard::{ShardInput, ShardOutput};
use crate::scheduler::{SeqEvent, SeqId, SeqRequest};
use crate::step::BatchInput;

/// Intake: queue the generation requests of one API call (its choices),
/// all or none. Resolves once the scheduler accepted (or refused) them.
#[derive(Message)]
#[rtype(result = "Result<Vec<(RequestId, UnboundedReceiver<Event>)>, BackendError>")]
pub struct Submit {
    pub requests: Vec<GenerateRequest>,
}

/// Scheduler to Intake: how many accepted requests wait for their first
/// step, so Intake can apply its admission limit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WaitingChanged {
    pub waiting: usize,
}

/// Tokenizer pool: the token ids of a prompt.
#[derive(Message)]
#[rtype(result = "Result<Vec<u32>, TokenizeError>")]
pub struct Tokenize {
    pub prompt: PromptInput,
    /// Reject a prompt that leaves no room in the context window (for
    /// generation; a plain `/tokenize` only counts).
    pub check_context: bool,
    /// For chat prompts of harmony models (see [`crate::tokenizer::ChatFormat`]).
    pub reasoning_effort: Option<crate::tokenizer::ReasoningEffort>,
}

/// Tokenizer pool: the text of token ids (special tokens included).
#[derive(Message)]
#[rtype(result = "Result<String, TokenizeError>")]
pub struct Detokenize {
    pub ids: Vec<u32>,
}

/// How a sequence's output is turned into events: what the Detokenizer
/// needs besides the tokens.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub stop: Vec<String>,
    pub keep_special: bool,
    /// Split reasoning from the answer (a chat on a reasoning model: gpt-oss's
    /// harmony channels, or `<think>` tags).
    pub reasoning: Option<crate::tokenizer::ReasoningFormat>,
    pub sender: UnboundedSender<Event>,
}

/// Intake to Scheduler: the tokenized requests of one API call. All are
/// added, or, when one could never run (longer than the context, bigger
/// than the whole cache) or the runtime has failed, none is and the reason
/// comes back.
#[derive(Message)]
#[rtype(result = "Result<(), AddError>")]
pub struct AddSequences {
    pub seqs: Vec<NewSequence>,
}

/// One request of an [`AddSequences`], as Intake split it: the Scheduler's
/// part (`request`) and the output side's (`output`, which the Scheduler
/// passes on in [`Register`] and watches only for a closed channel). The
/// chat messages it came from stayed with the tokenizer.
pub struct NewSequence {
    pub id: SeqId,
    /// Prompt ids, sampling, limits and stop ids.
    pub request: SeqRequest,
    pub output: OutputSpec,
    /// When Intake received the request (time to first token counts from here).
    pub received: Instant,
}

/// Ends a request early on the client's behalf.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Cancel {
    pub id: SeqId,
}

/// Detokenizer to Scheduler: a stop string was seen; finish the sequence.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSequence {
    pub id: SeqId,
}

#[derive(Message)]
#[rtype(result = "MetricsSnapshot")]
pub struct GetMetrics;

/// One model step through one shard. The batch is shared by every shard of
/// the step (it is immutable); the input is the previous shard's hidden
/// states, or `Tokens` for the first.
#[derive(Message)]
#[rtype(result = "Result<ShardOutput, StepError>")]
pub struct RunStep {
    pub batch: Arc<BatchInput>,
    pub input: ShardInput,
}

/// Scheduler to Detokenizer: a sequence was accepted; where its events go.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    pub id: SeqId,
    pub output: OutputSpec,
}

/// Scheduler to Detokenizer: what one step (or a cancel / stop) did.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Emit {
    pub events: Vec<SeqEvent>,
}

/// Scheduler to Detokenizer: these sequences failed; send each the error.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fail {
    pub ids: Vec<SeqId>,
    pub error: BackendError,
}

/// Scheduler to Detokenizer: the client went away; drop the sequence's state
/// without sending anything.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forget {
    pub id: SeqId,
}
