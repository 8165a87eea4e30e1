//! The Intake actor: the door of the runtime. It applies the admission limit
//! (at most `max_queue` accepted requests not yet running) to each API call's
//! requests (its choices) as one group, gives each request its id and its
//! response channel, has the Tokenizer pool encode the prompts, splits each
//! request once ([`split`]: the Scheduler's part, the output side's part;
//! the chat messages go no further), and hands the group to the Scheduler,
//! whose answer is what `Submit` resolves with. It owns only its counters:
//! how many requests it is still handing over, and how many the Scheduler
//! last said were waiting (the Scheduler tells it; it never looks into the
//! Scheduler), and the model facts a split needs.

use std::time::Instant;

use actix::{
    Actor, ActorFutureExt, Addr, Context, Handler, Recipient, ResponseActFuture, WrapFuture,
};
use futures_util::future::join_all;
use tokio::sync::mpsc;

use tokio::sync::mpsc::UnboundedSender;

use super::error::Unavailable;
use super::messages::{AddSequences, NewSequence, OutputSpec, Submit, Tokenize, WaitingChanged};
use super::tokenizer::TokenizerWorker;
use crate::backend::{Accepted, BackendError, Event, GenerateRequest, PromptInput, RequestId};
use crate::scheduler::SeqRequest;
use crate::tokenizer::ReasoningFormat;

/// What Intake needs to know about the model to split a request.
#[derive(Debug, Clone, Default)]
pub struct SplitRules {
    /// Ids that end a sequence (EOS, end-of-turn).
    pub stop_ids: Vec<u32>,
    /// The context window: a request without `max_tokens` may fill it.
    pub max_model_len: usize,
    /// How the model's chat outputs carry reasoning, if they do.
    pub reasoning: Option<ReasoningFormat>,
}

/// Splits one tokenized request, once, into what the Scheduler needs (the
/// prompt's ids, sampling, limits, stop ids; no `max_tokens` means up to the
/// end of the context window) and what the output side needs (stop strings,
/// special tokens, reasoning, the response channel). Every field goes to
/// one side; the chat messages, already encoded into `prompt`, to neither.
pub fn split(
    request: GenerateRequest,
    prompt: Vec<u32>,
    rules: &SplitRules,
    sender: UnboundedSender<Event>,
) -> (SeqRequest, OutputSpec) {
    let GenerateRequest {
        prompt: input,
        sampling,
        max_tokens,
        stop,
        ignore_eos,
        logprobs,
        keep_special,
        reasoning_effort: _,
    } = request;
    let max_tokens = max_tokens.unwrap_or_else(|| rules.max_model_len.saturating_sub(prompt.len()));
    let seq = SeqRequest {
        prompt,
        sampling,
        max_tokens,
        // The core checks `ignore_eos` before ending on one of these.
        stop_ids: rules.stop_ids.clone(),
        ignore_eos,
        logprobs,
    };
    let output = OutputSpec {
        stop,
        keep_special,
        reasoning: rules
            .reasoning
            .filter(|_| matches!(input, PromptInput::Chat(_))),
        sender,
    };
    (seq, output)
}

pub struct Intake {
    tokenizer: Addr<TokenizerWorker>,
    scheduler: Recipient<AddSequences>,
    max_queue: usize,
    rules: SplitRules,
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
        rules: SplitRules,
    ) -> Self {
        Self {
            tokenizer,
            scheduler,
            max_queue,
            rules,
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
        let rules = self.rules.clone();
        let fut = async move {
            let prompts = tokenize_all(&tokenizer, &msg.requests).await?;
            let mut seqs = Vec::with_capacity(count);
            let mut accepted = Vec::with_capacity(count);
            for (i, (request, prompt)) in msg.requests.into_iter().zip(prompts).enumerate() {
                let id = first_id + i as RequestId;
                let (tx, rx) = mpsc::unbounded_channel();
                let (request, output) = split(request, prompt, &rules, tx);
                seqs.push(NewSequence {
                    id,
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
                .map_err(|_| Unavailable::ActorGone("scheduler"))??;
            Ok(accepted)
        };
        Box::pin(fut.into_actor(self).map(move |result, act, _| {
            act.handing_over -= count;
            result
        }))
    }
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
        .map(|sent| -> Result<Vec<u32>, BackendError> {
            Ok(sent.map_err(|_| Unavailable::ActorGone("tokenizer pool"))??)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(which.into_iter().map(|k| encoded[k].clone()).collect())
}

impl Handler<WaitingChanged> for Intake {
    type Result = ();

    fn handle(&mut self, msg: WaitingChanged, _: &mut Context<Self>) {
        self.waiting = msg.waiting;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::SamplingParams;
    use crate::tokenizer::ChatMessage;

    fn request(max_tokens: Option<usize>, ignore_eos: bool) -> GenerateRequest {
        GenerateRequest {
            prompt: PromptInput::Ids(vec![1, 2, 3]),
            sampling: SamplingParams::greedy(),
            max_tokens,
            stop: vec!["END".into()],
            ignore_eos,
            logprobs: Some(2),
            keep_special: true,
            reasoning_effort: None,
        }
    }

    fn rules() -> SplitRules {
        SplitRules {
            stop_ids: vec![2],
            max_model_len: 64,
            reasoning: Some(ReasoningFormat::Harmony),
        }
    }

    fn split_of(r: GenerateRequest, prompt: Vec<u32>) -> (SeqRequest, OutputSpec) {
        split(r, prompt, &rules(), mpsc::unbounded_channel().0)
    }

    #[test]
    fn max_tokens_defaults_to_the_rest_of_the_context() {
        let (r, _) = split_of(request(None, false), vec![5; 10]);
        assert_eq!(r.max_tokens, 54);
        assert_eq!(r.prompt, vec![5; 10]);
        assert_eq!(r.stop_ids, vec![2]);
        assert_eq!(r.logprobs, Some(2));
        assert_eq!(r.sampling, SamplingParams::greedy());
        let (r, _) = split_of(request(Some(7), true), vec![5; 10]);
        assert_eq!(r.max_tokens, 7);
        assert!(r.ignore_eos);
        // A prompt filling the context asks for nothing (the core refuses it
        // with the numbers).
        assert_eq!(split_of(request(None, false), vec![5; 70]).0.max_tokens, 0);
    }

    #[test]
    fn the_output_side_gets_stop_strings_and_reasoning_only_for_chats() {
        let (_, out) = split_of(request(None, false), vec![5]);
        assert_eq!(out.stop, vec!["END".to_string()]);
        assert!(out.keep_special);
        // A completion's text is all answer, even on a reasoning model.
        assert_eq!(out.reasoning, None);
        let chat = GenerateRequest {
            prompt: PromptInput::Chat(vec![ChatMessage::new("user", "hi")]),
            ..request(None, false)
        };
        let (_, out) = split_of(chat, vec![5]);
        assert_eq!(out.reasoning, Some(ReasoningFormat::Harmony));
    }
}
