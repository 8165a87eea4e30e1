//! The Intake actor: the door of the runtime. It applies the admission limit
//! (at most `max_queue` accepted requests not yet running), gives each
//! request its id and its response channel, has the Tokenizer pool encode
//! the prompt, and hands the request to the Scheduler, whose answer is what
//! `Submit` resolves with. It owns only its counters: how many requests it
//! is still handing over, and how many the Scheduler last said were waiting
//! (the Scheduler tells it; it never looks into the Scheduler).

use std::time::Instant;

use actix::{
    Actor, ActorFutureExt, Addr, Context, Handler, Recipient, ResponseActFuture, WrapFuture,
};
use tokio::sync::mpsc;

use super::messages::{AddSequence, OutputSpec, Submit, Tokenize, WaitingChanged};
use super::tokenizer::TokenizerWorker;
use crate::backend::{BackendError, Event, PromptInput, RequestId};
use crate::tokenizer::ReasoningFormat;

pub struct Intake {
    tokenizer: Addr<TokenizerWorker>,
    scheduler: Recipient<AddSequence>,
    max_queue: usize,
    /// How the model's chat outputs carry reasoning, if they do.
    reasoning: Option<ReasoningFormat>,
    next_id: RequestId,
    /// Submitted, not yet answered by the Scheduler (being tokenized or
    /// handed over).
    handing_over: usize,
    /// Accepted by the Scheduler and waiting (new or preempted), as it last
    /// reported.
    waiting: usize,
}

impl Intake {
    pub fn new(
        tokenizer: Addr<TokenizerWorker>,
        scheduler: Recipient<AddSequence>,
        max_queue: usize,
        reasoning: Option<ReasoningFormat>,
    ) -> Self {
        Self {
            tokenizer,
            scheduler,
            max_queue,
            reasoning,
            next_id: 1,
            handing_over: 0,
            waiting: 0,
        }
    }
}

impl Actor for Intake {
    type Context = Context<Self>;
}

type Accepted = Result<(RequestId, mpsc::UnboundedReceiver<Event>), BackendError>;

impl Handler<Submit> for Intake {
    type Result = ResponseActFuture<Self, Accepted>;

    fn handle(&mut self, msg: Submit, _: &mut Context<Self>) -> Self::Result {
        let queued = self.handing_over + self.waiting;
        if queued >= self.max_queue {
            return Box::pin(actix::fut::ready(Err(BackendError::QueueFull(queued))));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.handing_over += 1;
        let received = Instant::now();
        let tokenizer = self.tokenizer.clone();
        let scheduler = self.scheduler.clone();
        let reasoning = self.reasoning;
        let unavailable =
            |what: &str| BackendError::Unavailable(format!("the {what} is not running"));
        let fut = async move {
            let prompt = tokenizer
                .send(Tokenize {
                    prompt: msg.request.prompt.clone(),
                    check_context: true,
                    reasoning_effort: msg.request.reasoning_effort,
                })
                .await
                .map_err(|_| unavailable("tokenizer pool"))??;
            let (tx, rx) = mpsc::unbounded_channel();
            let output = OutputSpec {
                stop: msg.request.stop.clone(),
                keep_special: msg.request.keep_special,
                reasoning: reasoning.filter(|_| matches!(msg.request.prompt, PromptInput::Chat(_))),
                sender: tx,
            };
            scheduler
                .send(AddSequence {
                    id,
                    prompt,
                    request: msg.request,
                    output,
                    received,
                })
                .await
                .map_err(|_| unavailable("scheduler"))?
                .map_err(|e| BackendError::InvalidRequest(e.to_string()))?;
            Ok((id, rx))
        };
        Box::pin(fut.into_actor(self).map(|result, act, _| {
            act.handing_over -= 1;
            result
        }))
    }
}

impl Handler<WaitingChanged> for Intake {
    type Result = ();

    fn handle(&mut self, msg: WaitingChanged, _: &mut Context<Self>) {
        self.waiting = msg.waiting;
    }
}
