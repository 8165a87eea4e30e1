//! The Tokenizer pool: a few `SyncArbiter` threads that turn prompts into
//! token ids (chat template, then encoding) and ids back into text, so this
//! CPU work never runs on the scheduler's thread. Each worker holds only
//! shared immutable data (the tokenizer, the template, the context size); it
//! keeps no per-request state and talks to no other actor.

use std::sync::Arc;

use actix::{Actor, Handler, SyncContext};

use super::error::TokenizeError;
use super::messages::{Detokenize, Tokenize};
use crate::backend::PromptInput;
use crate::tokenizer::{ChatFormat, Prompt, PromptEncoder, ReasoningEffort, Tokenizer};

pub struct TokenizerWorker {
    /// `None`: the model has no vocabulary and takes token ids only.
    tokenizer: Option<Arc<Tokenizer>>,
    chat_format: Arc<ChatFormat>,
    /// Token ids must be below this (the model's embedding rows).
    vocab_size: usize,
    /// The context window: a prompt must leave room for one generated token.
    max_model_len: usize,
}

impl TokenizerWorker {
    pub fn new(
        tokenizer: Option<Arc<Tokenizer>>,
        chat_format: Arc<ChatFormat>,
        vocab_size: usize,
        max_model_len: usize,
    ) -> Self {
        Self {
            tokenizer,
            chat_format,
            vocab_size,
            max_model_len,
        }
    }

    /// The tokenizer, or the error a text prompt gets from a model without one.
    fn tokenizer(&self) -> Result<&Tokenizer, TokenizeError> {
        self.tokenizer.as_deref().ok_or(TokenizeError::NoTokenizer)
    }

    /// The token ids of `prompt`; with `check_context`, refuses a prompt
    /// that leaves no room for output (it is never cut).
    pub fn encode(
        &self,
        prompt: &PromptInput,
        check_context: bool,
        reasoning_effort: Option<ReasoningEffort>,
    ) -> Result<Vec<u32>, TokenizeError> {
        let encoder = PromptEncoder {
            tokenizer: self.tokenizer.as_deref(),
            chat_format: &self.chat_format,
            vocab_size: self.vocab_size,
            max_model_len: self.max_model_len,
        };
        let prompt = match prompt {
            PromptInput::Chat(messages) => Prompt::Chat(messages),
            PromptInput::Text(text) => Prompt::Text(text),
            PromptInput::Ids(ids) => Prompt::Ids(ids),
        };
        Ok(encoder.encode(prompt, check_context, reasoning_effort)?)
    }
}

impl Actor for TokenizerWorker {
    type Context = SyncContext<Self>;
}

impl Handler<Tokenize> for TokenizerWorker {
    type Result = Result<Vec<u32>, TokenizeError>;

    fn handle(&mut self, msg: Tokenize, _: &mut SyncContext<Self>) -> Self::Result {
        self.encode(&msg.prompt, msg.check_context, msg.reasoning_effort)
    }
}

impl Handler<Detokenize> for TokenizerWorker {
    type Result = Result<String, TokenizeError>;

    fn handle(&mut self, msg: Detokenize, _: &mut SyncContext<Self>) -> Self::Result {
        Ok(self.tokenizer()?.decode(&msg.ids, false)?)
    }
}
