//! Request bodies in, validated jobs out: reads a body under the size limit,
//! parses it as a JSON object, and checks every field of a chat or text
//! completion request by hand against OpenAI's schema, so each mistake is a
//! 400 naming its parameter. A field we do not implement is rejected, never
//! ignored; a field set to `null` counts as absent (SDKs send nulls).
//!
//! This module knows nothing of HTTP responses or streaming; it only turns
//! JSON into a [`CompletionJob`] (or a [`PromptInput`] for `/tokenize`).
//! Its files, one job each: `body.rs` (bytes to a JSON object), `fields.rs`
//! (taking an object apart field by field), `completion.rs` (the two
//! generation endpoints' parameters), `chat.rs` (chat `messages`),
//! `prompt.rs` (completions `prompt`), `tokenize.rs` (`/tokenize` and
//! `/detokenize` bodies). This file holds the limits and the job they build.

mod body;
mod chat;
mod completion;
mod fields;
mod prompt;
mod tokenize;

pub use body::{parse_object, read_body};
pub use chat::parse_messages;
pub use completion::parse_completion_request;
pub use fields::token_ids;
pub use prompt::parse_prompt;
pub use tokenize::{parse_detokenize_request, parse_tokenize_request};

use crate::backend::{GenerateRequest, PromptInput};

/// Most choices one request may ask for (`n`).
pub const MAX_N: usize = 8;
/// Most prompts in one `/v1/completions` request.
pub const MAX_PROMPTS: usize = 64;
/// Most stop strings.
pub const MAX_STOP: usize = 16;
/// Most `top_logprobs` for chat (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;
/// Most `logprobs` alternatives for text completions (OpenAI's limit).
pub const MAX_COMPLETION_LOGPROBS: usize = 5;
/// OpenAI's default `max_tokens` for `/v1/completions` (chat has none).
pub const COMPLETIONS_DEFAULT_MAX_TOKENS: usize = 16;

/// Which OpenAI endpoint a request came to; it decides the response shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

/// A validated completion request: what to submit to the backend and how to
/// shape the answer.
#[derive(Debug, Clone)]
pub struct CompletionJob {
    pub endpoint: Endpoint,
    /// One entry per prompt; each is generated `n` times. Choice `i` comes
    /// from prompt `i / n` (OpenAI's order).
    pub prompts: Vec<PromptInput>,
    pub n: usize,
    /// Everything but the prompt, shared by every choice (the seed is offset
    /// per choice).
    pub request: GenerateRequest,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// `return_token_ids` (vLLM's extension): each choice also carries the
    /// generated token ids, so a client can read ids even from a model
    /// without a tokenizer.
    pub return_token_ids: bool,
}

impl CompletionJob {
    /// The backend request of choice `index`.
    pub fn choice_request(&self, index: usize) -> GenerateRequest {
        let mut request = self.request.clone();
        request.prompt = self.prompts[index / self.n].clone();
        if let Some(seed) = request.sampling.seed {
            // Distinct but reproducible streams for the n choices.
            request.sampling.seed = Some(seed.wrapping_add(index as u64));
        }
        request
    }

    pub fn num_choices(&self) -> usize {
        self.prompts.len() * self.n
    }
}
