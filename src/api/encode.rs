//! Backend events to OpenAI JSON: the stream chunks (shared by SSE and the
//! WebSocket, which only wrap them differently) and the whole, non-streamed
//! response. Owns the per-request bookkeeping this needs: the response id
//! and system fingerprint, the usage of each choice, token texts for logprobs, text offsets.

use std::sync::Arc;

use super::error::ApiError;
use super::generation::{Generation, TokenTexts};
use super::params::{CompletionJob, Endpoint};
use super::types::{
    AssistantMessage, ChatChoice, ChatChunk, ChatChunkChoice, ChatCompletion, ChatDelta,
    ChatLogprobs, ChatTokenLogprob, ChunkUsage, CompletionLogprobs, TextChoice, TextCompletion,
    TokenMap, TopLogprob, Usage,
};
use crate::backend::{Backend, Event};
use crate::scheduler::{FinishReason, TokenLogprobs};

/// Seconds since the Unix epoch, for `created`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh response id such as `chatcmpl-5f0c...`.
pub fn response_id(endpoint: Endpoint) -> String {
    format!("{}{:032x}", endpoint.id_prefix(), rand::random::<u128>())
}

fn finish_reason(reason: FinishReason) -> &'static str {
    reason.as_openai()
}

/// Turns one request's events into OpenAI objects.
pub struct Encoder {
    endpoint: Endpoint,
    id: String,
    created: u64,
    model: String,
    /// `system_fingerprint`, the same on the response and every chunk.
    fingerprint: String,
    /// Choices per prompt: usage counts each prompt once, not `n` times.
    n: usize,
    num_choices: usize,
    include_usage: bool,
    return_token_ids: bool,
    /// `Some(k)`: logprobs asked, with `k` alternatives.
    logprobs: Option<usize>,
    usages: Vec<Option<crate::scheduler::Usage>>,
    /// Characters of token text emitted so far per choice (`text_offset`).
    offsets: Vec<usize>,
    texts: TokenTexts,
    backend: Arc<dyn Backend>,
}

/// One choice of a whole response, accumulated from its events.
#[derive(Default)]
struct Accumulated {
    text: String,
    reasoning: String,
    token_ids: Vec<u32>,
    chat_logprobs: Option<ChatLogprobs>,
    completion_logprobs: Option<CompletionLogprobs>,
    finish_reason: Option<&'static str>,
}

impl Encoder {
    pub fn new(job: &CompletionJob, model: String, backend: Arc<dyn Backend>) -> Self {
        let num_choices = job.num_choices();
        Self {
            endpoint: job.endpoint,
            id: response_id(job.endpoint),
            created: unix_now(),
            model,
            fingerprint: backend.model().system_fingerprint(),
            n: job.n,
            num_choices,
            include_usage: job.include_usage,
            return_token_ids: job.return_token_ids,
            logprobs: job.request.logprobs,
            usages: vec![None; num_choices],
            offsets: vec![0; num_choices],
            texts: TokenTexts::default(),
            backend,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
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

    fn chunk_usage(&self) -> ChunkUsage {
        self.include_usage.then_some(None)
    }

    fn chat_chunk(&self, choices: Vec<ChatChunkChoice>, usage: ChunkUsage) -> String {
        to_json(&ChatChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: &self.fingerprint,
            choices,
            usage,
        })
    }

    fn text_chunk(&self, choices: Vec<TextChoice>, usage: ChunkUsage) -> String {
        to_json(&TextCompletion {
            id: &self.id,
            object: "text_completion",
            created: self.created,
            model: &self.model,
            system_fingerprint: &self.fingerprint,
            choices,
            usage,
        })
    }

    /// The chunks sent before any event: the assistant role of each chat
    /// choice (completions have none).
    pub fn opening(&self) -> Vec<String> {
        match self.endpoint {
            Endpoint::Chat => (0..self.num_choices)
                .map(|index| {
                    let delta = ChatDelta {
                        role: Some("assistant"),
                        content: Some(String::new()),
                        reasoning_content: None,
                    };
                    self.chat_chunk(
                        vec![ChatChunkChoice {
                            index,
                            delta,
                            logprobs: None,
                            finish_reason: None,
                            token_ids: None,
                        }],
                        self.chunk_usage(),
                    )
                })
                .collect(),
            Endpoint::Completion => Vec::new(),
        }
    }

    /// The chunk for one event, if it shows anything (an empty delta with no
    /// logprobs does not). An `Event::Error` comes back as `Err`.
    pub async fn chunk(&mut self, index: usize, event: Event) -> Result<Option<String>, ApiError> {
        match event {
            Event::Delta {
                text,
                reasoning,
                token_ids,
                logprobs,
            } => {
                let want_logprobs = self.logprobs.is_some() && !token_ids.is_empty();
                let chat = self.endpoint == Endpoint::Chat;
                let shows_reasoning = chat && !reasoning.is_empty();
                let shows_ids = self.return_token_ids && !token_ids.is_empty();
                let ids = self.return_token_ids.then(|| token_ids.clone());
                if text.is_empty() && !want_logprobs && !shows_reasoning && !shows_ids {
                    return Ok(None);
                }
                Ok(Some(match self.endpoint {
                    Endpoint::Chat => {
                        let logprobs = self.chat_logprobs(&token_ids, &logprobs).await?;
                        let delta = ChatDelta {
                            role: None,
                            content: (!text.is_empty() || reasoning.is_empty()).then_some(text),
                            reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                        };
                        self.chat_chunk(
                            vec![ChatChunkChoice {
                                index,
                                delta,
                                logprobs,
                                finish_reason: None,
                                token_ids: ids.clone(),
                            }],
                            self.chunk_usage(),
                        )
                    }
                    Endpoint::Completion => {
                        let logprobs = self
                            .completion_logprobs(index, &token_ids, &logprobs)
                            .await?;
                        self.text_chunk(
                            vec![TextChoice {
                                index,
                                text,
                                logprobs,
                                finish_reason: None,
                                token_ids: ids.clone(),
                            }],
                            self.chunk_usage(),
                        )
                    }
                }))
            }
            Event::Finished { reason, usage } => {
                self.usages[index] = Some(usage);
                let finish_reason = Some(finish_reason(reason));
                Ok(Some(match self.endpoint {
                    Endpoint::Chat => self.chat_chunk(
                        vec![ChatChunkChoice {
                            index,
                            delta: ChatDelta::default(),
                            logprobs: None,
                            finish_reason,
                            token_ids: None,
                        }],
                        self.chunk_usage(),
                    ),
                    Endpoint::Completion => self.text_chunk(
                        vec![TextChoice {
                            index,
                            text: String::new(),
                            logprobs: None,
                            finish_reason,
                            token_ids: None,
                        }],
                        self.chunk_usage(),
                    ),
                }))
            }
            Event::Error(e) => Err(e.into()),
        }
    }

    /// The usage chunk (`choices: []`) sent after every choice finished,
    /// when `stream_options.include_usage` asked for it.
    pub fn closing(&self) -> Option<String> {
        if !self.include_usage {
            return None;
        }
        let usage = Some(Some(self.usage()));
        Some(match self.endpoint {
            Endpoint::Chat => self.chat_chunk(Vec::new(), usage),
            Endpoint::Completion => self.text_chunk(Vec::new(), usage),
        })
    }

    /// Runs the request to its end and returns the whole response's JSON.
    pub async fn collect(mut self, mut generation: Generation) -> Result<String, ApiError> {
        let mut choices: Vec<Accumulated> = (0..self.num_choices)
            .map(|_| Accumulated::default())
            .collect();
        while let Some((index, event)) = generation.next().await {
            match event {
                Event::Delta {
                    text,
                    reasoning,
                    token_ids,
                    logprobs,
                } => {
                    let choice_lp = match self.endpoint {
                        Endpoint::Chat => (self.chat_logprobs(&token_ids, &logprobs).await?, None),
                        Endpoint::Completion => (
                            None,
                            self.completion_logprobs(index, &token_ids, &logprobs)
                                .await?,
                        ),
                    };
                    let acc = &mut choices[index];
                    acc.text.push_str(&text);
                    acc.token_ids.extend(&token_ids);
                    acc.reasoning.push_str(&reasoning);
                    if let Some(lp) = choice_lp.0 {
                        acc.chat_logprobs
                            .get_or_insert_with(Default::default)
                            .content
                            .extend(lp.content);
                    }
                    if let Some(lp) = choice_lp.1 {
                        acc.completion_logprobs
                            .get_or_insert_with(Default::default)
                            .extend(lp);
                    }
                }
                Event::Finished { reason, usage } => {
                    self.usages[index] = Some(usage);
                    choices[index].finish_reason = Some(finish_reason(reason));
                }
                Event::Error(e) => return Err(e.into()),
            }
        }
        let logprobs_on = self.logprobs.is_some();
        let return_ids = self.return_token_ids;
        Ok(match self.endpoint {
            Endpoint::Chat => to_json(&ChatCompletion {
                id: self.id.clone(),
                object: "chat.completion",
                created: self.created,
                model: self.model.clone(),
                system_fingerprint: self.fingerprint.clone(),
                choices: choices
                    .into_iter()
                    .enumerate()
                    .map(|(index, acc)| ChatChoice {
                        index,
                        message: AssistantMessage {
                            role: "assistant",
                            content: acc.text,
                            reasoning_content: (!acc.reasoning.is_empty()).then_some(acc.reasoning),
                        },
                        logprobs: acc
                            .chat_logprobs
                            .or_else(|| logprobs_on.then(ChatLogprobs::default)),
                        finish_reason: acc.finish_reason,
                        token_ids: return_ids.then_some(acc.token_ids),
                    })
                    .collect(),
                usage: self.usage(),
            }),
            Endpoint::Completion => to_json(&TextCompletion {
                id: &self.id,
                object: "text_completion",
                created: self.created,
                model: &self.model,
                system_fingerprint: &self.fingerprint,
                choices: choices
                    .into_iter()
                    .enumerate()
                    .map(|(index, acc)| TextChoice {
                        index,
                        text: acc.text,
                        logprobs: acc
                            .completion_logprobs
                            .or_else(|| logprobs_on.then(CompletionLogprobs::default)),
                        finish_reason: acc.finish_reason,
                        token_ids: return_ids.then_some(acc.token_ids),
                    })
                    .collect(),
                usage: Some(Some(self.usage())),
            }),
        })
    }

    async fn chat_logprobs(
        &mut self,
        token_ids: &[u32],
        logprobs: &[TokenLogprobs],
    ) -> Result<Option<ChatLogprobs>, ApiError> {
        let Some(k) = self.logprobs else {
            return Ok(None);
        };
        let mut content = Vec::with_capacity(token_ids.len());
        for (&id, lp) in token_ids.iter().zip(logprobs) {
            let token = self.texts.get(&*self.backend, id).await?;
            let mut top_logprobs = Vec::with_capacity(k);
            for &(alt, alt_lp) in lp.top.iter().take(k) {
                let alt_token = self.texts.get(&*self.backend, alt).await?;
                top_logprobs.push(TopLogprob {
                    bytes: alt_token.as_bytes().to_vec(),
                    token: alt_token,
                    logprob: alt_lp,
                });
            }
            content.push(ChatTokenLogprob {
                bytes: token.as_bytes().to_vec(),
                token,
                logprob: lp.logprob,
                top_logprobs,
            });
        }
        Ok(Some(ChatLogprobs { content }))
    }

    async fn completion_logprobs(
        &mut self,
        index: usize,
        token_ids: &[u32],
        logprobs: &[TokenLogprobs],
    ) -> Result<Option<CompletionLogprobs>, ApiError> {
        let Some(k) = self.logprobs else {
            return Ok(None);
        };
        let mut out = CompletionLogprobs::default();
        for (&id, lp) in token_ids.iter().zip(logprobs) {
            let token = self.texts.get(&*self.backend, id).await?;
            let mut top = TokenMap::default();
            for &(alt, alt_lp) in lp.top.iter().take(k) {
                top.insert(self.texts.get(&*self.backend, alt).await?, alt_lp);
            }
            if top.0.is_empty() {
                // logprobs=0 still shows the chosen token, as OpenAI does.
                top.insert(token.clone(), lp.logprob);
            }
            out.text_offset.push(self.offsets[index]);
            self.offsets[index] += token.chars().count();
            out.tokens.push(token);
            out.token_logprobs.push(lp.logprob);
            out.top_logprobs.push(top);
        }
        Ok(Some(out))
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("response types always serialize")
}
