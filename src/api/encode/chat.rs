//! The chat completion shape (`/v1/chat/completions`): `chat.completion`
//! objects and their `chat.completion.chunk` stream, with the assistant
//! role opening each choice, reasoning as `reasoning_content`, and logprobs
//! as `{"content": [...]}`.

use super::shape::{to_json, Delta, Head, Shape};
use crate::api::types::{
    AssistantMessage, ChatChoice, ChatChunk, ChatChunkChoice, ChatCompletion, ChatDelta,
    ChatLogprobs, ChatTokenLogprob, ChunkUsage, TopLogprob, Usage,
};
use crate::backend::Logprobs;

/// One choice of a whole response, accumulated from its deltas.
#[derive(Default)]
struct Choice {
    text: String,
    reasoning: String,
    token_ids: Vec<u32>,
    logprobs: Option<ChatLogprobs>,
}

pub struct Chat {
    choices: Vec<Choice>,
}

impl Chat {
    pub fn new(num_choices: usize) -> Self {
        Self {
            choices: (0..num_choices).map(|_| Choice::default()).collect(),
        }
    }

    fn chunk(head: &Head, choices: Vec<ChatChunkChoice>, usage: ChunkUsage) -> String {
        to_json(&ChatChunk {
            id: &head.id,
            object: "chat.completion.chunk",
            created: head.created,
            model: &head.model,
            system_fingerprint: &head.fingerprint,
            choices,
            usage,
        })
    }
}

fn logprobs(lps: Vec<Logprobs>) -> ChatLogprobs {
    let content = lps
        .into_iter()
        .map(|lp| ChatTokenLogprob {
            bytes: lp.token.text.as_bytes().to_vec(),
            token: lp.token.text,
            logprob: lp.token.logprob,
            top_logprobs: lp
                .top
                .into_iter()
                .map(|alt| TopLogprob {
                    bytes: alt.text.as_bytes().to_vec(),
                    token: alt.text,
                    logprob: alt.logprob,
                })
                .collect(),
        })
        .collect();
    ChatLogprobs { content }
}

impl Shape for Chat {
    fn id_prefix(&self) -> &'static str {
        "chatcmpl-"
    }

    fn shows_reasoning(&self) -> bool {
        true
    }

    fn opening(&self, head: &Head, index: usize) -> Option<String> {
        let delta = ChatDelta {
            role: Some("assistant"),
            content: Some(String::new()),
            reasoning_content: None,
        };
        let choice = ChatChunkChoice {
            index,
            delta,
            logprobs: None,
            finish_reason: None,
            token_ids: None,
        };
        Some(Self::chunk(head, vec![choice], head.chunk_usage()))
    }

    fn delta_chunk(&mut self, head: &Head, index: usize, d: Delta) -> String {
        let delta = ChatDelta {
            role: None,
            // A reasoning-only delta leaves `content` out; any other shows it.
            content: (!d.text.is_empty() || d.reasoning.is_empty()).then_some(d.text),
            reasoning_content: (!d.reasoning.is_empty()).then_some(d.reasoning),
        };
        let choice = ChatChunkChoice {
            index,
            delta,
            logprobs: d.logprobs.map(logprobs),
            finish_reason: None,
            token_ids: d.token_ids,
        };
        Self::chunk(head, vec![choice], head.chunk_usage())
    }

    fn finish_chunk(&self, head: &Head, index: usize, reason: &'static str) -> String {
        let choice = ChatChunkChoice {
            index,
            delta: ChatDelta::default(),
            logprobs: None,
            finish_reason: Some(reason),
            token_ids: None,
        };
        Self::chunk(head, vec![choice], head.chunk_usage())
    }

    fn usage_chunk(&self, head: &Head, usage: Usage) -> String {
        Self::chunk(head, Vec::new(), Some(Some(usage)))
    }

    fn accumulate(&mut self, index: usize, d: Delta) {
        let choice = &mut self.choices[index];
        choice.text.push_str(&d.text);
        choice.reasoning.push_str(&d.reasoning);
        choice.token_ids.extend(d.token_ids.unwrap_or_default());
        if let Some(lps) = d.logprobs {
            choice
                .logprobs
                .get_or_insert_with(Default::default)
                .content
                .extend(logprobs(lps).content);
        }
    }

    fn whole(
        self: Box<Self>,
        head: &Head,
        finish_reasons: Vec<Option<&'static str>>,
        usage: Usage,
    ) -> String {
        let choices = self
            .choices
            .into_iter()
            .zip(finish_reasons)
            .enumerate()
            .map(|(index, (c, finish_reason))| ChatChoice {
                index,
                message: AssistantMessage {
                    role: "assistant",
                    content: c.text,
                    reasoning_content: (!c.reasoning.is_empty()).then_some(c.reasoning),
                },
                logprobs: c
                    .logprobs
                    .or_else(|| head.logprobs.then(ChatLogprobs::default)),
                finish_reason,
                token_ids: head.return_token_ids.then_some(c.token_ids),
            })
            .collect();
        to_json(&ChatCompletion {
            id: head.id.clone(),
            object: "chat.completion",
            created: head.created,
            model: head.model.clone(),
            system_fingerprint: head.fingerprint.clone(),
            choices,
            usage,
        })
    }
}
