//! The Intake actor: the door of the runtime. It applies the admission limit
//! (at most `max_queue` accepted requests not yet running) to each API call's
//! requests (its choices) as one group, gives each request its id and its
//! response channel, has the Tokenizer pool encode the prompts, and hands the
//! group to the Scheduler, whose answer is what `Submit` resolves with. It
//! owns only its counters: how many requests it is still handing over, and
//! how many the Scheduler last said were waiting (the Scheduler tells it; it
//! never looks into the Scheduler).

use std::time::Instant;

use actix::{
    Actor, ActorFutureExt, Addr, Context, Handler, Recipient, ResponseActFuture, WrapFuture,
};
use futures_util::future::join_all;
use tokio::sync::mpsc;

use super::messages::{AddSequences, NewSequence, OutputSpec, Submit, Tokenize, WaitingChanged};
use super::tokenizer::TokenizerWorker;
use crate::backend::{Accepted, BackendError, GenerateRequest, PromptInput, RequestId};
use crate::tokenizer::ReasoningFormat;

pub struct Intake {
    tokenizer: Addr<TokenizerWorker>,
    scheduler: Recipient<AddSequences>,
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
        scheduler: Recipient<AddSequences>,
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

impl Handler<Submit> for Intake {
    type Result = ResponseActFuture<Self, Result<Vec<Accepted>, BackendError>>;

    fn handle(&mut self, msg: Submit, _: &mut Context<Self>) -> Self::Result {
        let count = msg.requests.len();
        // Checked once for the whole group: choices admitted one by one
        // could each fit and the group still never (429 forever).
        if count > self.max_queue {
            let e = BackendError::TooManyChoices {
                choices: count,
                max_queue: self.max_queue,
            };
            return Box::pin(actix::fut::ready(Err(e)));
        }
        let queued = self.handing_over + self.waiting;
        if queued + count > self.max_queue {
            return Box::pin(actix::fut::ready(Err(BackendError::QueueFull(queued))));
        }
        let first_id = self.next_id;
        self.next_id += count as RequestId;
        self.handing_over += count;
        let received = Instant::now();
        let tokenizer = self.tokenizer.clone();
        let scheduler = self.scheduler.clone();
        let reasoning = self.reasoning;
        let fut = async move {
            let prompts = tokenize_all(&tokenizer, &msg.requests).await?;
            let mut seqs = Vec::with_capacity(count);
            let mut accepted = Vec::with_capacity(count);
            for (i, (request, prompt)) in msg.requests.into_iter().zip(prompts).enumerate() {
                let id = first_id + i as RequestId;
                let (tx, rx) = mpsc::unbounded_channel();
                let output = OutputSpec {
                    stop: request.stop.clone(),
                    keep_special: request.keep_special,
                    reasoning: reasoning.filter(|_| matches!(request.prompt, PromptInput::Chat(_))),
                    sender: tx,
                };
                seqs.push(NewSequence {
                    id,
                    prompt,
                    request,
                    output,
                    received,
                });
                accepted.push((id, rx));
            }
            // Nothing reached the Scheduler before this point, so a refusal
            // above leaves nothing to undo; the Scheduler adds all or none.
            scheduler
                .send(AddSequences { seqs })
                .await
                .map_err(|_| unavailable("scheduler"))??;
            Ok(accepted)
        };
        Box::pin(fut.into_actor(self).map(move |result, act, _| {
            act.handing_over -= count;
            result
        }))
    }
}

fn unavailable(what: &str) -> BackendError {
    BackendError::Unavailable(format!("the {what} is not running"))
}

/// The token ids of every request's prompt, in order. The choices of one
/// prompt (`n`) share one prompt, so each distinct prompt is encoded once;
/// the distinct ones are encoded concurrently on the pool.
async fn tokenize_all(
    tokenizer: &Addr<TokenizerWorker>,
    requests: &[GenerateRequest],
) -> Result<Vec<Vec<u32>>, BackendError> {
    let mut distinct: Vec<&GenerateRequest> = Vec::new();
    let mut which = Vec::with_capacity(requests.len());
    for r in requests {
        let same =
            |d: &&GenerateRequest| d.prompt == r.prompt && d.reasoning_effort == r.reasoning_effort;
        match distinct.iter().position(same) {
            Some(k) => which.push(k),
            None => {
                which.push(distinct.len());
                distinct.push(r);
            }
        }
    }
    let encoded = join_all(distinct.iter().map(|r| {
        tokenizer.send(Tokenize {
            prompt: r.prompt.clone(),
            check_context: true,
            reasoning_effort: r.reasoning_effort,
        })
    }))
    .await;
    let encoded = encoded
        .into_iter()
        .map(|sent| sent.map_err(|_| unavailable("tokenizer pool"))?)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(which.into_iter().map(|k| encoded[k].clone()).collect())
}

impl Handler<WaitingChanged> for Intake {
    type Result = ();

    fn handle(&mut self, msg: WaitingChanged, _: &mut Context<Self>) {
        self.waiting = msg.waiting;
    }
}
