//! OpenAI's response objects as serde types: chat completions and their
//! stream chunks, text completions, usage, and both logprobs shapes. Field
//! order and names follow OpenAI's API reference, so clients written for it
//! parse ours unchanged. Construction lives in `encode`.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// Token counts of a whole request (all its choices).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptTokensDetails,
    pub completion_tokens_details: CompletionTokensDetails,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose KV came from the prefix cache.
    pub cached_tokens: usize,
}

/// Always present, as OpenAI sends it for every model: `reasoning_tokens`
/// is 0 for a model that does not reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CompletionTokensDetails {
    /// Completion tokens spent on reasoning (`reasoning_content`), which
    /// are part of `completion_tokens`.
    pub reasoning_tokens: usize,
}

/// `usage` on a stream chunk: absent without `include_usage`; with it,
/// `null` on every chunk but the last, which carries the counts.
pub type ChunkUsage = Option<Option<Usage>>;

/// `/v1/chat/completions` without streaming.
#[derive(Debug, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    /// The server build and model that answered (`ModelCard::system_fingerprint`).
    pub system_fingerprint: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

#[derive(Debug, Serialize)]
pub struct ChatChoice {
    pub index: usize,
    pub message: AssistantMessage,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
    /// The generated token ids (`return_token_ids`, as vLLM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ids: Option<Vec<u32>>,
}

#[derive(Debug, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
    /// A reasoning model's thinking (vLLM's and DeepSeek's field name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

/// One streamed piece of a chat completion.
#[derive(Debug, Serialize)]
pub struct ChatChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    /// The server build and model that answered (`ModelCard::system_fingerprint`).
    pub system_fingerprint: &'a str,
    pub choices: Vec<ChatChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: ChunkUsage,
}

#[derive(Debug, Serialize)]
pub struct ChatChunkChoice {
    pub index: usize,
    pub delta: ChatDelta,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
    /// The generated token ids (`return_token_ids`, as vLLM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ids: Option<Vec<u32>>,
}

/// The first delta of a choice carries the role; the last is empty.
#[derive(Debug, Default, Serialize)]
pub struct ChatDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

/// Chat logprobs: `{"content": [...]}`.
#[derive(Debug, Default, Serialize)]
pub struct ChatLogprobs {
    pub content: Vec<ChatTokenLogprob>,
}

#[derive(Debug, Serialize)]
pub struct ChatTokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Debug, Serialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// `/v1/completions`, both whole and as a stream chunk (same object name).
#[derive(Debug, Serialize)]
pub struct TextCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    /// The server build and model that answered (`ModelCard::system_fingerprint`).
    pub system_fingerprint: &'a str,
    pub choices: Vec<TextChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: ChunkUsage,
}

#[derive(Debug, Serialize)]
pub struct TextChoice {
    pub index: usize,
    pub text: String,
    pub logprobs: Option<CompletionLogprobs>,
    pub finish_reason: Option<&'static str>,
    /// The generated token ids (`return_token_ids`, as vLLM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ids: Option<Vec<u32>>,
}

/// The legacy completions logprobs: parallel arrays, one entry per token.
#[derive(Debug, Default, Serialize)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    pub top_logprobs: Vec<TokenMap>,
    /// Character offset of each token in the choice's text.
    pub text_offset: Vec<usize>,
}

impl CompletionLogprobs {
    pub fn extend(&mut self, other: CompletionLogprobs) {
        self.tokens.extend(other.tokens);
        self.token_logprobs.extend(other.token_logprobs);
        self.top_logprobs.extend(other.top_logprobs);
        self.text_offset.extend(other.text_offset);
    }
}

/// `{token: logprob}` in the order given (most likely first), each token
/// once: pieces of two ids can decode to the same text, and a JSON object
/// may not repeat a key.
#[derive(Debug, Default)]
pub struct TokenMap(pub Vec<(String, f32)>);

impl TokenMap {
    pub fn insert(&mut self, token: String, logprob: f32) {
        if !self.0.iter().any(|(t, _)| *t == token) {
            self.0.push((token, logprob));
        }
    }
}

impl Serialize for TokenMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (token, logprob) in &self.0 {
            map.serialize_entry(token, logprob)?;
        }
        map.end()
    }
}
