//! Backend events to OpenAI JSON: the stream chunks (shared by SSE and the
//! WebSocket, which only wrap them differently) and the whole, non-streamed
//! response. [`Encoder`] owns the per-request bookkeeping (the response id
//! and system fingerprint, each choice's usage and finish reason) and turns
//! each event, once, into a [`Delta`] cut to what the request asked; the
//! response shape (`chat.rs`, `text.rs`, behind the [`Shape`] trait of
//! `shape.rs`) then either emits it as a chunk or accumulates it into the
//! whole response. Token texts arrive with the events (the Detokenizer
//! names them), so encoding never waits on the backend.

mod chat;
mod shape;
mod text;

use shape::{Delta, Head, Shape};

use super::error::ApiError;
use super::generation::Generation;
use super::params::{CompletionJob, Endpoint};
use super::types::Usage;
use crate::backend::{Event, ModelCard, Usage as ChoiceUsage};

/// Seconds since the Unix epoch, for `created`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh response id such as `chatcmpl-5f0c...`.
pub fn response_id(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
}

/// What one event means for its choice.
enum Update {
    /// Something to show.
    Delta(Delta),
    /// The choice ended for this reason.
    Finish(&'static str),
}

/// Turns one request's events into OpenAI objects.
pub struct Encoder {
    head: Head,
    shape: Box<dyn Shape>,
    /// Choices per prompt: usage counts each prompt once, not `n` times.
    n: usize,
    /// `Some(k)`: logprobs asked, with `k` alternatives.
    logprobs: Option<usize>,
    usages: Vec<Option<ChoiceUsage>>,
    finish_reasons: Vec<Option<&'static str>>,
}

impl Encoder {
    pub fn new(job: &CompletionJob, card: &ModelCard) -> Self {
        let num_choices = job.num_choices();
        let shape: Box<dyn Shape> = match job.endpoint {
            Endpoint::Chat => Box::new(chat::Chat::new(num_choices)),
            Endpoint::Completion => Box::new(text::Text::new(num_choices)),
        };
        let head = Head {
            id: response_id(shape.id_prefix()),
            created: unix_now(),
            model: card.id.clone(),
            fingerprint: card.system_fingerprint(),
            include_usage: job.include_usage,
            logprobs: job.request.logprobs.is_some(),
            return_token_ids: job.return_token_ids,
        };
        Self {
            head,
            shape,
            n: job.n,
            logprobs: job.request.logprobs,
            usages: vec![None; num_choices],
            finish_reasons: vec![None; num_choices],
        }
    }

    pub fn id(&self) -> &str {
        &self.head.id
    }

    /// The whole request's usage so far.
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for (index, u) in self.usages.iter().enumerate() {
            let Some(u) = u else { continue };
            if index % self.n == 0 {
                usage.prompt_tokens += u.prompt_tokens;
                usage.prompt_tokens_details.cached_tokens += u.cached_tokens;
            }
            usage.completion_tokens += u.completion_tokens;
            usage.completion_tokens_details.reasoning_tokens += u.reasoning_tokens;
        }
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
        usage
    }

    /// The one reading of an event: records a finish, and cuts a delta to
    /// what the request asked to see. `None`: the event shows nothing (an
    /// empty delta with no logprobs or ids to show). An `Event::Error`
    /// comes back as `Err`.
    fn update(&mut self, index: usize, event: Event) -> Result<Option<Update>, ApiError> {
        match event {
            Event::Delta {
                text,
                reasoning,
                token_ids,
                mut logprobs,
            } => {
                let reasoning = if self.shape.shows_reasoning() {
                    reasoning
                } else {
                    String::new()
                };
                let shows_logprobs = self.logprobs.is_some() && !token_ids.is_empty();
                let shows_ids = self.head.return_token_ids && !token_ids.is_empty();
                if text.is_empty() && reasoning.is_empty() && !shows_logprobs && !shows_ids {
                    return Ok(None);
                }
                let logprobs = self.logprobs.map(|k| {
                    // One entry per token id, each with the alternatives asked.
                    logprobs.truncate(token_ids.len());
                    for lp in &mut logprobs {
                        lp.top.truncate(k);
                    }
                    logprobs
                });
                Ok(Some(Update::Delta(Delta {
                    text,
                    reasoning,
                    token_ids: self.head.return_token_ids.then_some(token_ids),
                    logprobs,
                })))
            }
            Event::Finished { reason, usage } => {
                let reason = reason.as_openai();
                self.usages[index] = Some(usage);
                self.finish_reasons[index] = Some(reason);
                Ok(Some(Update::Finish(reason)))
            }
            Event::Error(e) => Err(e.into()),
        }
    }

    /// The chunks sent before any event (a chat's assistant role, one per
    /// choice).
    pub fn opening(&self) -> Vec<String> {
        (0..self.finish_reasons.len())
            .filter_map(|index| self.shape.opening(&self.head, index))
            .collect()
    }

    /// The chunk for one event, if it shows anything. An `Event::Error`
    /// comes back as `Err`.
    pub fn chunk(&mut self, index: usize, event: Event) -> Result<Option<String>, ApiError> {
        Ok(match self.update(index, event)? {
            None => None,
            Some(Update::Delta(delta)) => Some(self.shape.delta_chunk(&self.head, index, delta)),
            Some(Update::Finish(reason)) => {
                Some(self.shape.finish_chunk(&self.head, index, reason))
            }
        })
    }

    /// The usage chunk (`choices: []`) sent after every choice finished,
    /// when `stream_options.include_usage` asked for it.
    pub fn closing(&self) -> Option<String> {
        self.head
            .include_usage
            .then(|| self.shape.usage_chunk(&self.head, self.usage()))
    }

    /// Runs the request to its end and returns the whole response's JSON.
    pub async fn collect(mut self, mut generation: Generation) -> Result<String, ApiError> {
        while let Some((index, event)) = generation.next().await {
            if let Some(Update::Delta(delta)) = self.update(index, event)? {
                self.shape.accumulate(index, delta);
            }
        }
        let usage = self.usage();
        Ok(self.shape.whole(&self.head, self.finish_reasons, usage))
    }
}
