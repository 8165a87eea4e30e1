//! Text to token ids and back. This module owns [`Tokenizer`]: a HuggingFace
//! `tokenizers::Tokenizer` built either from the vocabulary a GGUF embeds
//! (`tokenizer.ggml.*`: byte-level BPE for `gpt2`, SentencePiece-style BPE
//! for `llama`) or from a `tokenizer.json`, together with what serving needs
//! beside encode/decode: BOS/EOS and the end-of-generation ids, the chat
//! template source, and the raw bytes of every token so the detokenizer can
//! decode a stream without splitting a UTF-8 character ([`IncrementalDecoder`]).
//! It reads GGUF metadata through `crate::gguf` and never touches tensors.
//!
//! Encoding always parses special tokens in the text (`<|im_start|>` becomes
//! one id), like llama.cpp's `parse_special=true` and HF's default: chat
//! templates write them as text.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::normalizers::{
    NormalizerWrapper, Prepend, Replace, Sequence as NormalizerSequence,
};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::gguf::error::GgufError;
use crate::gguf::metadata::Metadata;

/// SentencePiece's visible space, U+2581.
const SPM_SPACE: &str = "\u{2581}";

/// The `tokenizer.ggml.pre` names [`Tokenizer::from_gguf`] understands.
pub const SUPPORTED_PRE_TOKENIZERS: &[&str] = &[
    "default",
    "gpt2",
    "smollm",
    "starcoder",
    "refact",
    "llama-bpe",
    "llama3",
    "llama-v3",
    "qwen2",
    "deepseek-r1-qwen",
    "gpt-4o",
];

/// Llama 3's split regex (HF tokenizer.json `Split` before a regex-less ByteLevel).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: Llama 3's with single digits.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// o200k (gpt-4o, gpt-oss): case-aware words with attached contractions.
const O200K_REGEX: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);

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
        SUPPORTED_PRE_TOKENIZERS.join(", ")
    )]
    UnsupportedPreTokenizer { pre: String },

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

fn build_err(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Build {
        message: e.to_string(),
    }
}

fn invalid(reason: impl Into<String>) -> TokenizerError {
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

/// The tokenizer part of a GGUF's metadata as plain values: what
/// [`Tokenizer::from_vocab`] builds from. [`GgufVocab::from_metadata`] reads
/// it; tests and converters can fill it by hand.
#[derive(Debug, Clone, Default)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `gpt2` or `llama`.
    pub model: String,
    /// `tokenizer.ggml.pre` (gpt2 only); absent reads as `default`.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`; empty means every token is normal.
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.scores` (llama only); empty means lower ids rank first.
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.merges` (gpt2 only), `"left right"` in rank order.
    pub merges: Vec<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub eot_id: Option<u32>,
    pub eom_id: Option<u32>,
    pub unk_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`; absent: true for llama, false for gpt2
    /// (llama.cpp's defaults).
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix` (llama only); absent: true.
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
}

impl GgufVocab {
    /// Reads the `tokenizer.*` keys; a missing required key or a value of the
    /// wrong type is a [`GgufError`] naming it.
    pub fn from_metadata(meta: &Metadata) -> Result<Self, TokenizerError> {
        let owned = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect::<Vec<_>>();
        Ok(GgufVocab {
            model: meta.str("tokenizer.ggml.model")?.to_owned(),
            pre: meta.opt_str("tokenizer.ggml.pre")?.map(str::to_owned),
            tokens: owned(meta.str_array("tokenizer.ggml.tokens")?),
            token_types: meta
                .opt_i32_array("tokenizer.ggml.token_type")?
                .unwrap_or_default(),
            scores: meta
                .opt_f32_array("tokenizer.ggml.scores")?
                .unwrap_or_default(),
            merges: meta
                .opt_str_array("tokenizer.ggml.merges")?
                .map(owned)
                .unwrap_or_default(),
            bos_id: meta.opt_u32("tokenizer.ggml.bos_token_id")?,
            eos_id: meta.opt_u32("tokenizer.ggml.eos_token_id")?,
            eot_id: meta.opt_u32("tokenizer.ggml.eot_token_id")?,
            eom_id: meta.opt_u32("tokenizer.ggml.eom_token_id")?,
            unk_id: meta.opt_u32("tokenizer.ggml.unknown_token_id")?,
            add_bos: meta.opt_bool("tokenizer.ggml.add_bos_token")?,
            add_eos: meta.opt_bool("tokenizer.ggml.add_eos_token")?,
            add_space_prefix: meta.opt_bool("tokenizer.ggml.add_space_prefix")?,
            chat_template: meta.opt_str("tokenizer.chat_template")?.map(str::to_owned),
        })
    }
}

/// How a token's vocabulary string maps to the bytes it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PieceStyle {
    /// GPT-2 byte-to-unicode alphabet (`Ġ` is a space, `Ċ` a newline).
    ByteLevel,
    /// `▁` is a space, `<0xXX>` a raw byte.
    SentencePiece,
    /// Whatever the tokenizer.json decoder makes of the token on its own.
    Generic,
}

/// A text tokenizer for one model. Cheap to share (`Arc`) between threads.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Vocabulary strings by id (empty where a tokenizer.json leaves a gap).
    tokens: Vec<String>,
    types: Vec<TokenType>,
    /// The bytes each token decodes to on its own (see [`Tokenizer::token_bytes`]).
    pieces: Vec<Vec<u8>>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    stop_ids: Vec<u32>,
    /// Whether `encode(.., true)` prepends BOS / appends EOS itself; false
    /// for a tokenizer.json, whose post-processor does it.
    add_bos: bool,
    add_eos: bool,
    chat_template: Option<String>,
    description: String,
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
    /// Builds the tokenizer a GGUF embeds (`tokenizer.ggml.*`).
    pub fn from_gguf(meta: &Metadata) -> Result<Self, TokenizerError> {
        Self::from_vocab(GgufVocab::from_metadata(meta)?)
    }

    /// Builds from plain vocabulary values (what [`Self::from_gguf`] reads).
    pub fn from_vocab(v: GgufVocab) -> Result<Self, TokenizerError> {
        let n = v.tokens.len();
        if n == 0 {
            return Err(invalid("tokenizer.ggml.tokens is empty"));
        }
        if u32::try_from(n).is_err() {
            return Err(invalid(format!("{n} tokens do not fit u32 ids")));
        }
        if !v.token_types.is_empty() && v.token_types.len() != n {
            return Err(invalid(format!(
                "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {n}",
                v.token_types.len()
            )));
        }
        if !v.scores.is_empty() && v.scores.len() != n {
            return Err(invalid(format!(
                "tokenizer.ggml.scores has {} entries but tokenizer.ggml.tokens has {n}",
                v.scores.len()
            )));
        }
        for (key, id) in [
            ("bos_token_id", v.bos_id),
            ("eos_token_id", v.eos_id),
            ("eot_token_id", v.eot_id),
            ("eom_token_id", v.eom_id),
            ("unknown_token_id", v.unk_id),
        ] {
            if let Some(id) = id.filter(|&id| id as usize >= n) {
                return Err(invalid(format!(
                    "tokenizer.ggml.{key} is {id} but the vocabulary has only {n} tokens"
                )));
            }
        }
        let types: Vec<TokenType> = if v.token_types.is_empty() {
            vec![TokenType::Normal; n]
        } else {
            v.token_types
                .iter()
                .map(|&t| TokenType::from_gguf(t))
                .collect()
        };

        // First occurrence wins where a converter left duplicate strings.
        let mut vocab = Vocab::default();
        for (id, tok) in v.tokens.iter().enumerate() {
            vocab.entry(tok.clone()).or_insert(id as u32);
        }

        let (mut inner, style, add_bos, description) = match v.model.as_str() {
            "gpt2" => {
                let pre = v.pre.as_deref().unwrap_or("default");
                let (pre_tokenizer, ignore_merges) = byte_level_pre_tokenizer(pre)?;
                if v.merges.is_empty() {
                    return Err(invalid(
                        "tokenizer.ggml.model is gpt2 but tokenizer.ggml.merges is missing or empty",
                    ));
                }
                let merges = parse_merges(&v.merges)?;
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .ignore_merges(ignore_merges)
                    .build()
                    .map_err(build_err)?;
                let mut inner = tokenizers::Tokenizer::new(bpe);
                inner.with_pre_tokenizer(Some(pre_tokenizer));
                inner.with_decoder(Some(ByteLevel::new(false, true, true)));
                (
                    inner,
                    PieceStyle::ByteLevel,
                    v.add_bos.unwrap_or(false),
                    format!("byte-level BPE (pre-tokenizer {pre})"),
                )
            }
            "llama" => {
                let merges = sentencepiece_merges(&v.tokens, &v.scores, &vocab);
                let mut builder = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .byte_fallback(true)
                    .fuse_unk(true);
                if let Some(unk) = v.unk_id {
                    builder = builder.unk_token(v.tokens[unk as usize].clone());
                }
                let bpe = builder.build().map_err(build_err)?;
                let add_space_prefix = v.add_space_prefix.unwrap_or(true);
                let mut inner = tokenizers::Tokenizer::new(bpe);
                let replace = Replace::new(" ", SPM_SPACE).map_err(build_err)?;
                let normalizer: NormalizerWrapper = if add_space_prefix {
                    // The prefix lands on every run of text between special
                    // tokens, as llama.cpp does after each special token.
                    NormalizerSequence::new(vec![
                        Prepend::new(SPM_SPACE.to_owned()).into(),
                        replace.into(),
                    ])
                    .into()
                } else {
                    replace.into()
                };
                inner.with_normalizer(Some(normalizer));
                let mut decoders: Vec<DecoderWrapper> = vec![
                    Replace::new(SPM_SPACE, " ").map_err(build_err)?.into(),
                    ByteFallback::new().into(),
                    Fuse::new().into(),
                ];
                if add_space_prefix {
                    decoders.push(Strip::new(' ', 1, 0).into());
                }
                inner.with_decoder(Some(DecoderSequence::new(decoders)));
                (
                    inner,
                    PieceStyle::SentencePiece,
                    v.add_bos.unwrap_or(true),
                    "SentencePiece BPE".to_owned(),
                )
            }
            other => {
                return Err(TokenizerError::UnsupportedModel {
                    model: other.to_owned(),
                })
            }
        };

        let added: Vec<AddedToken> = v
            .tokens
            .iter()
            .zip(&types)
            .filter(|(tok, _)| !tok.is_empty())
            .filter_map(|(tok, ty)| match ty {
                // `<unk>` too, as HF's Llama tokenizers list it among the specials.
                TokenType::Control | TokenType::Unknown => {
                    Some(AddedToken::from(tok.clone(), true).normalized(false))
                }
                TokenType::UserDefined => {
                    Some(AddedToken::from(tok.clone(), false).normalized(false))
                }
                _ => None,
            })
            .collect();
        inner.add_special_tokens(&added);

        let pieces = v
            .tokens
            .iter()
            .zip(&types)
            .map(|(tok, &ty)| piece_bytes(style, tok, ty))
            .collect();
        let stop_ids = stop_ids(
            &v.tokens,
            &types,
            [v.eos_id, v.eot_id, v.eom_id].into_iter().flatten(),
        );
        Ok(Tokenizer {
            inner,
            tokens: v.tokens,
            types,
            pieces,
            bos_id: v.bos_id,
            eos_id: v.eos_id,
            stop_ids,
            add_bos,
            add_eos: v.add_eos.unwrap_or(false),
            chat_template: v.chat_template,
            description,
        })
    }

    /// Loads a HuggingFace `tokenizer.json`. A `tokenizer_config.json` in the
    /// same folder, when present, supplies the BOS/EOS tokens and the chat
    /// template (else `chat_template.jinja` does). BOS is added by the tokenizer.json's own post-processor.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let load_err = |message: String| TokenizerError::Load {
            path: path.to_path_buf(),
            message,
        };
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| load_err(e.to_string()))?;
        let config = match path.parent().map(|d| d.join("tokenizer_config.json")) {
            Some(p) if p.is_file() => Some(read_json(&p)?),
            _ => None,
        };

        let vocab = inner.get_vocab(true);
        let n = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
        if n == 0 {
            return Err(load_err("the vocabulary is empty".into()));
        }
        // Ids index a table: refuse one mostly made of holes.
        if n > 2 * vocab.len() + 1024 {
            return Err(load_err(format!(
                "token ids go up to {} for only {} tokens; the file is corrupt",
                n - 1,
                vocab.len()
            )));
        }
        let mut tokens = vec![String::new(); n];
        for (tok, id) in vocab {
            tokens[id as usize] = tok;
        }
        let style = decoder_style(inner.get_decoder());
        let added = inner.get_added_tokens_decoder();
        let types: Vec<TokenType> = tokens
            .iter()
            .enumerate()
            .map(|(id, tok)| match added.get(&(id as u32)) {
                Some(a) if a.special => TokenType::Control,
                Some(_) => TokenType::UserDefined,
                None if style == PieceStyle::SentencePiece && parse_byte_token(tok).is_some() => {
                    TokenType::Byte
                }
                None => TokenType::Normal,
            })
            .collect();
        let pieces = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .map(|(id, (tok, &ty))| match style {
                PieceStyle::Generic => inner
                    .decode(&[id as u32], false)
                    .map(String::into_bytes)
                    .unwrap_or_default(),
                _ => piece_bytes(style, tok, ty),
            })
            .collect();

        let special_id = |key: &str| -> Option<u32> {
            let v = config.as_ref()?.get(key)?;
            let text = v.as_str().or_else(|| v.get("content")?.as_str())?;
            inner.token_to_id(text)
        };
        let bos_id = special_id("bos_token");
        let eos_id = special_id("eos_token");
        let chat_template = config
            .as_ref()
            .and_then(|c| c.get("chat_template"))
            .and_then(|t| match t {
                serde_json::Value::String(s) => Some(s.clone()),
                // A list of named templates: take "default".
                serde_json::Value::Array(list) => list
                    .iter()
                    .find(|e| e.get("name").and_then(|n| n.as_str()) == Some("default"))
                    .and_then(|e| e.get("template")?.as_str().map(str::to_owned)),
                _ => None,
            });
        // Newer checkpoints ship the template as its own file.
        let chat_template = chat_template.or_else(|| {
            let p = path.parent()?.join("chat_template.jinja");
            std::fs::read_to_string(p).ok()
        });
        let stop_ids = stop_ids(&tokens, &types, eos_id);
        Ok(Tokenizer {
            inner,
            tokens,
            types,
            pieces,
            bos_id,
            eos_id,
            stop_ids,
            add_bos: false,
            add_eos: false,
            chat_template,
            description: format!("tokenizer.json ({})", path.display()),
        })
    }

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
    /// incremental decoding builds on (see [`IncrementalDecoder`]). The result
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

/// Decodes a stream of token ids to text without ever emitting half of a
/// UTF-8 character: bytes of an incomplete character are held until the
/// token that completes them arrives. Byte sequences that can never be valid
/// become one U+FFFD each, so the concatenated output always equals
/// `String::from_utf8_lossy` of all the bytes.
#[derive(Debug, Clone, Default)]
pub struct IncrementalDecoder {
    pending: Vec<u8>,
    skip_special_tokens: bool,
}

impl IncrementalDecoder {
    pub fn new(skip_special_tokens: bool) -> Self {
        Self {
            pending: Vec::new(),
            skip_special_tokens,
        }
    }

    /// Adds one token; returns the text it completes (often empty while a
    /// multi-byte character is split across tokens).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, TokenizerError> {
        let bytes = tokenizer.decode_bytes(&[id], self.skip_special_tokens)?;
        Ok(self.push_bytes(&bytes))
    }

    /// Adds raw bytes; returns the complete characters now available.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut start = 0;
        while start < self.pending.len() {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                }
                Err(e) => {
                    let valid_end = start + e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[start..valid_end]));
                    start = valid_end;
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            start += bad;
                        }
                        // An incomplete character at the end: wait for more.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }

    /// Bytes held back waiting for the rest of a character.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Ends the stream: an incomplete character left over becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// The pre-tokenizer `tokenizer.ggml.pre` names, and whether BPE should take
/// a pre-token found whole in the vocabulary without merging (Llama 3's
/// `ignore_merges`).
fn byte_level_pre_tokenizer(pre: &str) -> Result<(PreTokenizerWrapper, bool), TokenizerError> {
    let split = |regex: &str| -> Result<PreTokenizerWrapper, TokenizerError> {
        Ok(Split::new(
            SplitPattern::Regex(regex.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(build_err)?
        .into())
    };
    // After a Split the ByteLevel step only maps bytes; with its own regex it
    // also splits GPT-2 style.
    let byte_level_only: PreTokenizerWrapper = ByteLevel::new(false, true, false).into();
    let byte_level_gpt2: PreTokenizerWrapper = ByteLevel::new(false, true, true).into();
    Ok(match pre {
        "default" | "gpt2" => (byte_level_gpt2, false),
        "smollm" | "starcoder" | "refact" => (
            PreSequence::new(vec![Digits::new(true).into(), byte_level_gpt2]).into(),
            false,
        ),
        "llama-bpe" | "llama3" | "llama-v3" => (
            PreSequence::new(vec![split(LLAMA3_REGEX)?, byte_level_only]).into(),
            true,
        ),
        "qwen2" | "deepseek-r1-qwen" => (
            PreSequence::new(vec![split(QWEN2_REGEX)?, byte_level_only]).into(),
            false,
        ),
        "gpt-4o" => (
            PreSequence::new(vec![split(O200K_REGEX)?, byte_level_only]).into(),
            false,
        ),
        other => {
            return Err(TokenizerError::UnsupportedPreTokenizer {
                pre: other.to_owned(),
            })
        }
    })
}

/// `"left right"` merge lines to pairs. The separator is the first space
/// after the first character, as llama.cpp reads them.
fn parse_merges(lines: &[String]) -> Result<Merges, TokenizerError> {
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let first_len = line.chars().next().map_or(0, char::len_utf8);
            match line[first_len..].find(' ') {
                Some(pos) => {
                    let split = first_len + pos;
                    Ok((line[..split].to_owned(), line[split + 1..].to_owned()))
                }
                None => Err(invalid(format!(
                    "tokenizer.ggml.merges[{i}] is {line:?}, expected two tokens separated by a space"
                ))),
            }
        })
        .collect()
}

/// BPE merges that reproduce SentencePiece's score-driven merging: every way
/// to split a vocabulary token into two vocabulary tokens is a merge, ranked
/// by the merged token's score (highest first), ties by the pieces' ids.
/// The same construction as HF's converter for Llama tokenizers; llama.cpp's
/// tokenizer merges the adjacent pair whose result scores highest, which is
/// what these ranks make BPE do.
fn sentencepiece_merges(tokens: &[String], scores: &[f32], vocab: &Vocab) -> Merges {
    let score = |id: usize| scores.get(id).copied().unwrap_or(-(id as f32));
    let mut ranked: Vec<(f32, u32, u32, usize, usize)> = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        let mut local: Vec<(u32, u32, usize)> = tok
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let l = *vocab.get(&tok[..at])?;
                let r = *vocab.get(&tok[at..])?;
                Some((l, r, at))
            })
            .collect();
        local.sort_by_key(|&(l, r, _)| (l, r));
        ranked.extend(
            local
                .into_iter()
                .map(|(l, r, at)| (score(id), l, r, id, at)),
        );
    }
    // Stable: equal scores keep the (token, left id, right id) order.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked
        .into_iter()
        .map(|(_, _, _, id, at)| (tokens[id][..at].to_owned(), tokens[id][at..].to_owned()))
        .collect()
}

/// GPT-2's byte-to-unicode alphabet: printable Latin-1 bytes stand for
/// themselves, the other 68 are shifted to U+0100.. in byte order.
static BYTE_TO_CHAR: LazyLock<[char; 256]> = LazyLock::new(|| {
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
fn parse_byte_token(tok: &str) -> Option<u8> {
    let hex = tok.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

fn piece_bytes(style: PieceStyle, tok: &str, ty: TokenType) -> Vec<u8> {
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

fn decoder_style(decoder: Option<&DecoderWrapper>) -> PieceStyle {
    fn style_of(d: &DecoderWrapper) -> Option<PieceStyle> {
        match d {
            DecoderWrapper::ByteLevel(_) => Some(PieceStyle::ByteLevel),
            DecoderWrapper::ByteFallback(_)
            | DecoderWrapper::Metaspace(_)
            | DecoderWrapper::Replace(_) => Some(PieceStyle::SentencePiece),
            DecoderWrapper::Sequence(seq) => {
                let styles: Vec<_> = seq.get_decoders().iter().filter_map(style_of).collect();
                if styles.contains(&PieceStyle::ByteLevel) {
                    Some(PieceStyle::ByteLevel)
                } else {
                    styles.first().copied()
                }
            }
            _ => None,
        }
    }
    decoder.and_then(style_of).unwrap_or(PieceStyle::Generic)
}

fn stop_ids(
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

fn read_json(path: &Path) -> Result<serde_json::Value, TokenizerError> {
    let err = |message: String| TokenizerError::Load {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(format!("not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::metadata::MetaValue;

    const UNK: u32 = 0;
    const BOS: u32 = 1;
    const EOS: u32 = 2;
    const BYTE0: u32 = 3;

    /// A SentencePiece vocabulary: `<unk> <s> </s>`, the 256 byte tokens,
    /// then `normal` with their scores.
    fn spm_meta(normal: &[(&str, f32)], extra: &[(&str, i32)]) -> Metadata {
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        let mut types = vec![2, 3, 3];
        tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
        types.extend(std::iter::repeat_n(6, 256));
        let mut scores = vec![0.0f32; tokens.len()];
        for (t, s) in normal {
            tokens.push((*t).to_owned());
            types.push(1);
            scores.push(*s);
        }
        for (t, ty) in extra {
            tokens.push((*t).to_owned());
            types.push(*ty);
            scores.push(0.0);
        }
        let mut m = Metadata::new("spm-test.gguf");
        m.insert("tokenizer.ggml.model", "llama".into());
        m.insert("tokenizer.ggml.tokens", MetaValue::str_array(&tokens));
        m.insert("tokenizer.ggml.token_type", types.into());
        m.insert("tokenizer.ggml.scores", scores.into());
        m.insert("tokenizer.ggml.bos_token_id", MetaValue::U32(BOS));
        m.insert("tokenizer.ggml.eos_token_id", MetaValue::U32(EOS));
        m.insert("tokenizer.ggml.unknown_token_id", MetaValue::U32(UNK));
        m
    }

    fn ids_of(tok: &Tokenizer, pieces: &[&str]) -> Vec<u32> {
        pieces
            .iter()
            .map(|p| tok.token_to_id(p).unwrap_or_else(|| panic!("{p} in vocab")))
            .collect()
    }

    const SPM_NORMAL: &[(&str, f32)] = &[
        ("\u{2581}", -1.0),
        ("a", -2.0),
        ("b", -2.0),
        ("c", -2.0),
        ("ab", -3.0),
        ("bc", -4.0),
        ("\u{2581}c", -5.0),
    ];

    #[test]
    fn sentencepiece_merges_follow_scores() {
        let tok = Tokenizer::from_gguf(&spm_meta(SPM_NORMAL, &[])).unwrap();
        // "ab" outscores "bc", so the middle b goes left.
        assert_eq!(
            tok.encode("abc", false).unwrap(),
            ids_of(&tok, &["\u{2581}", "ab", "c"])
        );
        let mut flipped = SPM_NORMAL.to_vec();
        flipped[5].1 = -2.5;
        let tok = Tokenizer::from_gguf(&spm_meta(&flipped, &[])).unwrap();
        assert_eq!(
            tok.encode("abc", false).unwrap(),
            ids_of(&tok, &["\u{2581}", "a", "bc"])
        );
    }

    #[test]
    fn sentencepiece_byte_fallback_bos_and_space_handling() {
        let tok = Tokenizer::from_gguf(&spm_meta(SPM_NORMAL, &[("<|user|>", 4)])).unwrap();
        assert!(tok.adds_bos(), "llama's add_bos_token defaults to true");
        // "é" is not in the vocabulary: its two UTF-8 bytes are.
        let ids = tok.encode("ab cé", true).unwrap();
        let mut want = vec![BOS];
        want.extend(ids_of(&tok, &["\u{2581}", "ab", "\u{2581}c"]));
        want.extend([BYTE0 + 0xC3, BYTE0 + 0xA9]);
        assert_eq!(ids, want);
        assert_eq!(tok.decode(&ids, true).unwrap(), "ab cé");
        // As HF's Llama tokenizer: the prefix space is stripped only at the start.
        assert_eq!(tok.decode(&ids, false).unwrap(), "<s> ab cé");
        // Raw bytes keep the prefix space; the text decode strips it as HF does.
        assert_eq!(tok.decode_bytes(&ids, true).unwrap(), " ab cé".as_bytes());
        assert_eq!(tok.token_bytes(BYTE0 + 0xC3), Some(&[0xC3u8][..]));

        // Special and user-defined tokens are parsed out of the text, and the
        // text after each one gets its own space prefix (as in llama.cpp).
        let ids = tok.encode("<s>a<|user|>c", false).unwrap();
        let mut want = vec![BOS];
        want.extend(ids_of(&tok, &["\u{2581}", "a", "<|user|>", "\u{2581}c"]));
        assert_eq!(ids, want);
        assert_eq!(tok.stop_ids(), &[EOS]);
        assert_eq!(tok.encode("<unk>", false).unwrap(), vec![UNK]);
        assert!(tok.is_special(UNK));
        assert_eq!(tok.token_type(BYTE0), Some(TokenType::Byte));
        assert!(tok.is_special(BOS) && !tok.is_special(ids[3]));
    }

    #[test]
    fn sentencepiece_without_space_prefix_or_bos() {
        let mut m = spm_meta(SPM_NORMAL, &[]);
        m.insert("tokenizer.ggml.add_space_prefix", MetaValue::Bool(false));
        m.insert("tokenizer.ggml.add_bos_token", MetaValue::Bool(false));
        let tok = Tokenizer::from_gguf(&m).unwrap();
        let ids = tok.encode("abc c", true).unwrap();
        assert_eq!(ids, ids_of(&tok, &["ab", "c", "\u{2581}c"]));
        assert_eq!(tok.decode(&ids, false).unwrap(), "abc c");
    }

    /// A byte-level vocabulary: the 256 byte characters, then merges building
    /// "1234", and a control token.
    fn bpe_meta(pre: &str) -> Metadata {
        let mut tokens: Vec<String> = BYTE_TO_CHAR.iter().map(|c| c.to_string()).collect();
        tokens.extend(["12", "123", "1234", "Ġa"].map(String::from));
        tokens.push("<|x|>".into());
        let mut types = vec![1i32; tokens.len()];
        *types.last_mut().unwrap() = 3;
        let mut m = Metadata::new("bpe-test.gguf");
        m.insert("tokenizer.ggml.model", "gpt2".into());
        m.insert("tokenizer.ggml.pre", pre.into());
        m.insert("tokenizer.ggml.tokens", MetaValue::str_array(&tokens));
        m.insert("tokenizer.ggml.token_type", types.into());
        m.insert(
            "tokenizer.ggml.merges",
            MetaValue::str_array(&["1 2", "12 3", "123 4", "Ġ a"]),
        );
        m.insert("tokenizer.ggml.eos_token_id", MetaValue::U32(260));
        m
    }

    #[test]
    fn byte_level_pre_tokenizers_split_digits_as_their_models_do() {
        let cases: &[(&str, &[&str])] = &[
            ("default", &["1234"]),
            ("gpt2", &["1234"]),
            ("smollm", &["1", "2", "3", "4"]),
            ("qwen2", &["1", "2", "3", "4"]),
            ("llama-bpe", &["123", "4"]),
            ("gpt-4o", &["123", "4"]),
        ];
        for (pre, pieces) in cases {
            let tok = Tokenizer::from_gguf(&bpe_meta(pre)).unwrap();
            let mut want = ids_of(&tok, pieces);
            want.insert(0, 260);
            want.extend(ids_of(&tok, &["Ġa"]));
            let ids = tok.encode("<|x|>1234 a", true).unwrap();
            assert_eq!(ids, want, "pre-tokenizer {pre}");
            assert_eq!(tok.decode(&ids, true).unwrap(), "1234 a");
            assert!(!tok.adds_bos(), "gpt2's add_bos_token defaults to false");
        }
    }

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
    fn unsupported_model_and_pre_tokenizer_are_named() {
        let mut m = bpe_meta("jais");
        let err = Tokenizer::from_gguf(&m).unwrap_err();
        assert!(matches!(&err, TokenizerError::UnsupportedPreTokenizer { pre } if pre == "jais"));
        let msg = err.to_string();
        assert!(msg.contains("\"jais\"") && msg.contains("smollm") && msg.contains("llama-bpe"));

        m.insert("tokenizer.ggml.model", "bert".into());
        let err = Tokenizer::from_gguf(&m).unwrap_err();
        assert!(matches!(&err, TokenizerError::UnsupportedModel { model } if model == "bert"));
        assert!(err.to_string().contains("\"bert\""));
    }

    #[test]
    fn inconsistent_vocabularies_are_errors() {
        let mut m = bpe_meta("gpt2");
        m.insert("tokenizer.ggml.token_type", vec![1i32; 3].into());
        assert!(matches!(
            Tokenizer::from_gguf(&m).unwrap_err(),
            TokenizerError::InvalidVocab { .. }
        ));

        let mut m = bpe_meta("gpt2");
        m.insert("tokenizer.ggml.bos_token_id", MetaValue::U32(100_000));
        let err = Tokenizer::from_gguf(&m).unwrap_err();
        assert!(err.to_string().contains("bos_token_id is 100000"), "{err}");

        let mut m = bpe_meta("gpt2");
        m.insert("tokenizer.ggml.merges", MetaValue::str_array(&["12"]));
        let err = Tokenizer::from_gguf(&m).unwrap_err();
        assert!(err.to_string().contains("merges[0]"), "{err}");

        let mut m = Metadata::new("empty.gguf");
        m.insert("tokenizer.ggml.model", "gpt2".into());
        assert!(matches!(
            Tokenizer::from_gguf(&m).unwrap_err(),
            TokenizerError::Gguf(GgufError::MissingKey { .. })
        ));
    }

    #[test]
    fn merges_split_at_the_first_space_after_the_first_character() {
        let lines = ["Ġ t", "  Ġ", "a bc d"].map(String::from);
        let merges = parse_merges(&lines).unwrap();
        assert_eq!(merges[0], ("Ġ".into(), "t".into()));
        assert_eq!(merges[1], (" ".into(), "Ġ".into()));
        assert_eq!(merges[2], ("a".into(), "bc d".into()));
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
