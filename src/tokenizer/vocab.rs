//! The [`Tokenizer`] type: a HuggingFace `tokenizers::Tokenizer` together
//! with what serving needs beside encode/decode: BOS/EOS and the
//! end-of-generation ids, the chat template source, each token's type, and
//! the raw bytes of every token so a stream decodes without splitting a UTF-8
//! character (see [`super::incremental`]). Also the helpers both loaders
//! share: the GPT-2 byte alphabet, how a vocabulary string maps to bytes,
//! and the choice of stop ids. It builds nothing itself: a GGUF vocabulary
//! becomes a `Tokenizer` in [`super::gguf_vocab`], a `tokenizer.json` in
//! [`super::tokenizer_json`]. It reads no file and touches no tensor.
//!
//! Encoding always parses special tokens in the text (`<|im_start|>` becomes
//! one id), like llama.cpp's `parse_special=true` and HF's default: chat
//! templates write them as text.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::LazyLock;

use crate::gguf::error::GgufError;

/// SentencePiece's visible space, U+2581.
pub(super) const SPM_SPACE: &str = "\u{2581}";

/// Texts of control tokens that end a turn or a document. Like llama.cpp, a
/// model that declares only `eos` still stops on these (SmolLM2 declares
/// `<|im_end|>` as EOS but a base-style completion ends with `<|endoftext|>`).
const END_OF_GENERATION_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "<end_of_utterance>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
];

/// Everything that can go wrong building or using a [`Tokenizer`].
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),

    #[error(
        "tokenizer.ggml.model is \"{model}\", a tokenizer type wgserve does not implement; \
         supported: \"gpt2\" (byte-level BPE: SmolLM2, Llama 3, Qwen2, gpt-oss) and \"llama\" \
         (SentencePiece BPE: Llama 2, Mistral); serve the model's tokenizer.json instead"
    )]
    UnsupportedModel { model: String },

    #[error(
        "tokenizer.ggml.pre is \"{pre}\", a pre-tokenizer wgserve does not implement; \
         supported: {}; serve the model's tokenizer.json instead",
        .supported.join(", ")
    )]
    UnsupportedPreTokenizer {
        pre: String,
        /// The names the GGUF vocabulary builder understands.
        supported: &'static [&'static str],
    },

    #[error("the model's vocabulary is invalid: {reason}")]
    InvalidVocab { reason: String },

    #[error("cannot load the tokenizer from {}: {message}", .path.display())]
    Load { path: PathBuf, message: String },

    #[error("cannot build the tokenizer: {message}")]
    Build { message: String },

    #[error("cannot encode the text: {message}")]
    Encode { message: String },

    #[error("cannot decode the ids: {message}")]
    Decode { message: String },

    #[error("token id {id} is out of range: the vocabulary has {vocab_size} tokens (ids 0..{vocab_size})")]
    UnknownTokenId { id: u32, vocab_size: usize },
}

pub(super) fn build_err(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Build {
        message: e.to_string(),
    }
}

pub(super) fn invalid(reason: impl Into<String>) -> TokenizerError {
    TokenizerError::InvalidVocab {
        reason: reason.into(),
    }
}

/// GGUF's `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenType {
    Normal,
    Unknown,
    /// BOS, EOS, `<|im_start|>`...: parsed in text, skipped by
    /// `skip_special_tokens` (as is `Unknown`).
    Control,
    /// Added tokens that are text (parsed in text, always printed).
    UserDefined,
    Unused,
    /// SentencePiece byte fallback `<0xXX>`.
    Byte,
}

impl TokenType {
    /// Unknown or undefined codes (0) read as `Normal`, as llama.cpp does.
    pub fn from_gguf(code: i32) -> Self {
        match code {
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Normal,
        }
    }

    pub fn to_gguf(self) -> i32 {
        match self {
            TokenType::Normal => 1,
            TokenType::Unknown => 2,
            TokenType::Control => 3,
            TokenType::UserDefined => 4,
            TokenType::Unused => 5,
            TokenType::Byte => 6,
        }
    }
}

/// How a token's vocabulary string maps to the bytes it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PieceStyle {
    /// GPT-2 byte-to-unicode alphabet (`Ġ` is a space, `Ċ` a newline).
    ByteLevel,
    /// `▁` is a space, `<0xXX>` a raw byte.
    SentencePiece,
    /// Whatever the tokenizer.json decoder makes of the token on its own.
    Generic,
}

/// A text tokenizer for one model. Cheap to share (`Arc`) between threads.
/// The fields are filled by the two loaders beside this file
/// ([`super::gguf_vocab`], [`super::tokenizer_json`]) and read only here.
pub struct Tokenizer {
    pub(super) inner: tokenizers::Tokenizer,
    /// Vocabulary strings by id (empty where a tokenizer.json leaves a gap).
    pub(super) tokens: Vec<String>,
    pub(super) types: Vec<TokenType>,
    /// The bytes each token decodes to on its own (see [`Tokenizer::token_bytes`]).
    pub(super) pieces: Vec<Vec<u8>>,
    pub(super) bos_id: Option<u32>,
    pub(super) eos_id: Option<u32>,
    pub(super) stop_ids: Vec<u32>,
    /// Whether `encode(.., true)` prepends BOS / appends EOS itself; false
    /// for a tokenizer.json, whose post-processor does it.
    pub(super) add_bos: bool,
    pub(super) add_eos: bool,
    pub(super) chat_template: Option<String>,
    pub(super) description: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.description)
            .field("vocab_size", &self.tokens.len())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("stop_ids", &self.stop_ids)
            .field("add_bos", &self.add_bos)
            .finish()
    }
}

impl Tokenizer {
    /// Token ids of `text`. Special tokens written in the text are parsed.
    /// With `add_special_tokens`, BOS is prepended when the model asks for
    /// it (`tokenizer.ggml.add_bos_token`; SmolLM2's is false).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(|e| TokenizerError::Encode {
                message: e.to_string(),
            })?;
        let ids = enc.get_ids();
        let bos = self.bos_id.filter(|_| add_special_tokens && self.add_bos);
        let eos = self.eos_id.filter(|_| add_special_tokens && self.add_eos);
        let mut out = Vec::with_capacity(ids.len() + 2);
        out.extend(bos);
        out.extend_from_slice(ids);
        out.extend(eos);
        Ok(out)
    }

    /// The text of `ids`, as HF's `decode` gives it (a SentencePiece model's
    /// leading space is stripped). Bytes that are not UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.check_ids(ids)?;
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Decode {
                message: e.to_string(),
            })
    }

    /// The raw bytes of `ids` concatenated: each token's [`Self::token_bytes`]
    /// (control tokens left out with `skip_special_tokens`). Unlike
    /// [`Self::decode`] nothing is stripped or replaced, so the bytes of
    /// consecutive calls concatenate to the bytes of one call: this is what
    /// incremental decoding builds on (see [`super::IncrementalDecoder`]). The result
    /// may end inside a multi-byte UTF-8 character.
    pub fn decode_bytes(
        &self,
        ids: &[u32],
        skip_special_tokens: bool,
    ) -> Result<Vec<u8>, TokenizerError> {
        self.check_ids(ids)?;
        let mut out = Vec::new();
        for &id in ids {
            if !(skip_special_tokens && self.is_special(id)) {
                out.extend_from_slice(&self.pieces[id as usize]);
            }
        }
        Ok(out)
    }

    /// The bytes token `id` stands for on its own: byte-level characters
    /// mapped back to bytes, `<0xXX>` to its byte, `▁` to a space, a control
    /// token to its text. A byte-level token may hold part of a character.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.pieces.get(id as usize).map(Vec::as_slice)
    }

    /// The text token `id` stands for on its own (` Paris` for `ĠParis`),
    /// U+FFFD where it holds only part of a UTF-8 character.
    pub fn token_to_piece(&self, id: u32) -> Option<String> {
        self.token_bytes(id)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// The vocabulary string of `id` (`ĠParis`, `<0x0A>`, `<|im_start|>`).
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.tokens
            .get(id as usize)
            .map(String::as_str)
            .filter(|t| !t.is_empty())
    }

    /// The id of a vocabulary string (including added/special tokens).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// Control tokens and `<unk>`: the ones `skip_special_tokens` leaves out.
    pub fn is_special(&self, id: u32) -> bool {
        matches!(
            self.token_type(id),
            Some(TokenType::Control | TokenType::Unknown)
        )
    }

    /// Number of ids (the highest id + 1); the model's logits are this wide
    /// or wider.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// The text of BOS / EOS, for the chat template's `bos_token`/`eos_token`.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_id.and_then(|id| self.id_to_token(id))
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_id.and_then(|id| self.id_to_token(id))
    }

    /// Ids that end generation: EOS, the declared EOT and EOM, and every
    /// control token whose text is a known end-of-turn marker (`<|im_end|>`,
    /// `<|eot_id|>`, `<|endoftext|>`, ...), as llama.cpp does. For harmony
    /// (gpt-oss) `<|end|>` is left out: it ends a channel, not the answer.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    pub fn is_stop(&self, id: u32) -> bool {
        self.stop_ids.contains(&id)
    }

    /// Whether `encode(.., true)` prepends BOS.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// The Jinja chat template the model ships (`tokenizer.chat_template`).
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// A one-line description for logs (`byte-level BPE (pre-tokenizer smollm)`).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The wrapped HF tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    fn check_ids(&self, ids: &[u32]) -> Result<(), TokenizerError> {
        match ids.iter().find(|&&id| id as usize >= self.tokens.len()) {
            Some(&id) => Err(TokenizerError::UnknownTokenId {
                id,
                vocab_size: self.tokens.len(),
            }),
            None => Ok(()),
        }
    }
}

/// GPT-2's byte-to-unicode alphabet: printable Latin-1 bytes stand for
/// themselves, the other 68 are shifted to U+0100.. in byte order.
pub(super) static BYTE_TO_CHAR: LazyLock<[char; 256]> = LazyLock::new(|| {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or('\0');
            next += 1;
            c
        };
    }
    table
});

static CHAR_TO_BYTE: LazyLock<HashMap<char, u8>> = LazyLock::new(|| {
    BYTE_TO_CHAR
        .iter()
        .enumerate()
        .map(|(b, &c)| (c, b as u8))
        .collect()
});

/// `<0xXX>` to its byte.
pub(super) fn parse_byte_token(tok: &str) -> Option<u8> {
    let hex = tok.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

pub(super) fn piece_bytes(style: PieceStyle, tok: &str, ty: TokenType) -> Vec<u8> {
    match style {
        PieceStyle::ByteLevel => {
            if matches!(
                ty,
                TokenType::Control | TokenType::UserDefined | TokenType::Unknown
            ) {
                return tok.as_bytes().to_vec();
            }
            // A string outside the byte alphabet is taken as plain text, as
            // HF's ByteLevel decoder does.
            tok.chars()
                .map(|c| CHAR_TO_BYTE.get(&c).copied())
                .collect::<Option<Vec<u8>>>()
                .unwrap_or_else(|| tok.as_bytes().to_vec())
        }
        PieceStyle::SentencePiece => match (ty, parse_byte_token(tok)) {
            (TokenType::Byte, Some(b)) => vec![b],
            _ => tok.replace(SPM_SPACE, " ").into_bytes(),
        },
        PieceStyle::Generic => tok.as_bytes().to_vec(),
    }
}

pub(super) fn stop_ids(
    tokens: &[String],
    types: &[TokenType],
    declared: impl IntoIterator<Item = u32>,
) -> Vec<u32> {
    let mut ids: Vec<u32> = declared.into_iter().collect();
    for (id, (tok, ty)) in tokens.iter().zip(types).enumerate() {
        if matches!(ty, TokenType::Control | TokenType::UserDefined)
            && END_OF_GENERATION_TEXTS.contains(&tok.as_str())
        {
            ids.push(id as u32);
        }
    }
    let has = |text: &str| tokens.iter().any(|t| t == text);
    if has("<|return|>") && has("<|call|>") {
        ids.retain(|&id| tokens[id as usize] != "<|end|>");
    }
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(*id));
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_alphabet_is_gpt2s() {
        assert_eq!(BYTE_TO_CHAR[b' ' as usize], 'Ġ');
        assert_eq!(BYTE_TO_CHAR[b'\n' as usize], 'Ċ');
        assert_eq!(BYTE_TO_CHAR[b'A' as usize], 'A');
        assert_eq!(BYTE_TO_CHAR[0xAD], 'Ń');
        assert_eq!(BYTE_TO_CHAR[0x7F], 'ġ');
        assert_eq!(BYTE_TO_CHAR[0], 'Ā');
        assert_eq!(CHAR_TO_BYTE.len(), 256);
    }

    #[test]
    fn harmony_end_is_not_a_stop_token() {
        let tokens: Vec<String> = ["<|return|>", "<|call|>", "<|end|>", "x"]
            .map(String::from)
            .to_vec();
        let types = vec![TokenType::Control; 4];
        assert_eq!(stop_ids(&tokens, &types, [0]), vec![0, 1]);
        let chatml: Vec<String> = ["<|end|>", "<|im_end|>"].map(String::from).to_vec();
        assert_eq!(stop_ids(&chatml, &types[..2], None), vec![0, 1]);
    }
}
