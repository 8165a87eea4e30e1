//! What the encoder and the response shapes share: [`Head`] (the facts of
//! one response every object repeats, and what the request asked to see),
//! [`Delta`] (one event's share of a choice, already cut to what the request
//! asked) and the [`Shape`] trait each OpenAI response shape implements.
//! No JSON is built here.

use crate::api::types::{ChunkUsage, Usage};
use crate::backend::Logprobs;

/// The facts of one response, the same on every object it sends.
pub struct Head {
    pub id: String,
    pub created: u64,
    pub model: String,
    /// `system_fingerprint`, the same on the response and every chunk.
    pub fingerprint: String,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// Whether logprobs were asked (a whole response then shows an empty
    /// list for a choice that produced none).
    pub logprobs: bool,
    /// `return_token_ids`.
    pub return_token_ids: bool,
}

impl Head {
    /// `usage` on every chunk but the usage chunk: absent, or `null` when
    /// the usage chunk will follow.
    pub fn chunk_usage(&self) -> ChunkUsage {
        self.include_usage.then_some(None)
    }
}

/// One event's share of a choice, in the form every shape reads.
#[derive(Debug, Default)]
pub struct Delta {
    pub text: String,
    /// Reasoning text; always empty for a shape without a place for it.
    pub reasoning: String,
    /// The token ids, when `return_token_ids` asked.
    pub token_ids: Option<Vec<u32>>,
    /// One entry per token, when logprobs were asked, with the alternatives
    /// cut to the number asked.
    pub logprobs: Option<Vec<Logprobs>>,
}

/// One OpenAI response shape (a chat completion, a text completion): its
/// stream chunks, and its whole response accumulated from the same deltas.
pub trait Shape: Send {
    /// The prefix of the response id (`chatcmpl-`, `cmpl-`).
    fn id_prefix(&self) -> &'static str;

    /// Whether reasoning is shown apart from the answer (else it is dropped).
    fn shows_reasoning(&self) -> bool;

    /// The chunk that opens choice `index`'s stream, if the shape has one.
    fn opening(&self, head: &Head, index: usize) -> Option<String>;

    /// The chunk of one delta of choice `index`.
    fn delta_chunk(&mut self, head: &Head, index: usize, delta: Delta) -> String;

    /// The chunk that ends choice `index`.
    fn finish_chunk(&self, head: &Head, index: usize, reason: &'static str) -> String;

    /// The last chunk (`choices: []`) with the whole request's usage.
    fn usage_chunk(&self, head: &Head, usage: Usage) -> String;

    /// Adds one delta of choice `index` to the whole response.
    fn accumulate(&mut self, index: usize, delta: Delta);

    /// The whole response, from what was accumulated.
    fn whole(
        self: Box<Self>,
        head: &Head,
        finish_reasons: Vec<Option<&'static str>>,
        usage: Usage,
    ) -> String;
}

pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("response types always serialize")
}
