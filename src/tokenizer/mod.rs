//! Text to token ids and back: a HuggingFace `tokenizers::Tokenizer` built
//! from a GGUF's embedded vocabulary (or a `tokenizer.json`), and the model's
//! Jinja chat template rendered with minijinja, or (gpt-oss) the harmony
//! format with its streaming output parser; and the one prompt encoder
//! (chat, text or ids to ids, with the BOS and context rules) that the
//! server and `wgserve generate` share.

pub mod chat_format;
pub mod chat_template;
pub mod gguf_vocab;
pub mod harmony;
pub mod incremental;
pub mod prompt;
pub mod reasoning;
pub mod tokenizer_json;
pub mod vocab;

pub use chat_format::ChatFormat;
pub use chat_template::{ChatMessage, ChatTemplate, TemplateError, CHATML_TEMPLATE};
pub use gguf_vocab::{GgufVocab, SUPPORTED_PRE_TOKENIZERS};
pub use harmony::{HarmonyDelta, HarmonyError, HarmonyOptions, HarmonyParser, ReasoningEffort};
pub use incremental::IncrementalDecoder;
pub use prompt::{Prompt, PromptEncoder, PromptError};
pub use reasoning::{ReasoningFormat, ReasoningParser};
pub use vocab::{TokenType, Tokenizer, TokenizerError};
