//! Building a [`Tokenizer`] from the vocabulary a GGUF embeds
//! (`tokenizer.ggml.*`): [`GgufVocab`] reads the metadata into plain values,
//! then each step has its own function: checking the values, the model
//! (byte-level BPE for `gpt2` with the pre-tokenizer `tokenizer.ggml.pre`
//! names, SentencePiece-style BPE for `llama` with merges ranked by score),
//! the special and added tokens, the stop ids. It reads GGUF metadata through
//! `crate::gguf` and never touches tensors; encoding and decoding live in
//! [`super::vocab`].

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

use crate::gguf::metadata::Metadata;

use super::vocab::{
    build_err, invalid, piece_bytes, stop_ids, PieceStyle, TokenType, Tokenizer, TokenizerError,
    SPM_SPACE,
};

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
    /// wrong type is a [`GgufError`](crate::gguf::error::GgufError) naming it.
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

/// The tokenizer model [`Tokenizer::from_vocab`] builds for one
/// `tokenizer.ggml.model`, before the special tokens are added.
struct BuiltModel {
    inner: tokenizers::Tokenizer,
    style: PieceStyle,
    /// `tokenizer.ggml.add_bos_token`, or the model type's default.
    add_bos: bool,
    description: String,
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF embeds (`tokenizer.ggml.*`).
    pub fn from_gguf(meta: &Metadata) -> Result<Self, TokenizerError> {
        Self::from_vocab(GgufVocab::from_metadata(meta)?)
    }

    /// Builds from plain vocabulary values (what [`Self::from_gguf`] reads).
    pub fn from_vocab(v: GgufVocab) -> Result<Self, TokenizerError> {
        let types = v.token_types_checked()?;
        let vocab = v.vocab_map();
        let BuiltModel {
            mut inner,
            style,
            add_bos,
            description,
        } = match v.model.as_str() {
            "gpt2" => byte_level_bpe(&v, vocab)?,
            "llama" => sentencepiece_bpe(&v, vocab)?,
            other => {
                return Err(TokenizerError::UnsupportedModel {
                    model: other.to_owned(),
                })
            }
        };
        inner.add_special_tokens(&added_tokens(&v.tokens, &types));

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
}

impl GgufVocab {
    /// Checks that the tables agree with each other and the declared ids
    /// lie inside the vocabulary; returns each token's type.
    fn token_types_checked(&self) -> Result<Vec<TokenType>, TokenizerError> {
        let n = self.tokens.len();
        if n == 0 {
            return Err(invalid("tokenizer.ggml.tokens is empty"));
        }
        if u32::try_from(n).is_err() {
            return Err(invalid(format!("{n} tokens do not fit u32 ids")));
        }
        if !self.token_types.is_empty() && self.token_types.len() != n {
            return Err(invalid(format!(
                "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {n}",
                self.token_types.len()
            )));
        }
        if !self.scores.is_empty() && self.scores.len() != n {
            return Err(invalid(format!(
                "tokenizer.ggml.scores has {} entries but tokenizer.ggml.tokens has {n}",
                self.scores.len()
            )));
        }
        for (key, id) in [
            ("bos_token_id", self.bos_id),
            ("eos_token_id", self.eos_id),
            ("eot_token_id", self.eot_id),
            ("eom_token_id", self.eom_id),
            ("unknown_token_id", self.unk_id),
        ] {
            if let Some(id) = id.filter(|&id| id as usize >= n) {
                return Err(invalid(format!(
                    "tokenizer.ggml.{key} is {id} but the vocabulary has only {n} tokens"
                )));
            }
        }
        Ok(if self.token_types.is_empty() {
            vec![TokenType::Normal; n]
        } else {
            self.token_types
                .iter()
                .map(|&t| TokenType::from_gguf(t))
                .collect()
        })
    }

    /// Token string to id. First occurrence wins where a converter left
    /// duplicate strings.
    fn vocab_map(&self) -> Vocab {
        let mut vocab = Vocab::default();
        for (id, tok) in self.tokens.iter().enumerate() {
            vocab.entry(tok.clone()).or_insert(id as u32);
        }
        vocab
    }
}

/// `gpt2`: byte-level BPE with the listed merges and the pre-tokenizer
/// `tokenizer.ggml.pre` names.
fn byte_level_bpe(v: &GgufVocab, vocab: Vocab) -> Result<BuiltModel, TokenizerError> {
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
    Ok(BuiltModel {
        inner,
        style: PieceStyle::ByteLevel,
        add_bos: v.add_bos.unwrap_or(false),
        description: format!("byte-level BPE (pre-tokenizer {pre})"),
    })
}

/// `llama`: SentencePiece-style BPE (merges ranked by score, byte
/// fallback, `▁` for a space and, unless the GGUF says otherwise, a space
/// prefix).
fn sentencepiece_bpe(v: &GgufVocab, vocab: Vocab) -> Result<BuiltModel, TokenizerError> {
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
    Ok(BuiltModel {
        inner,
        style: PieceStyle::SentencePiece,
        add_bos: v.add_bos.unwrap_or(true),
        description: "SentencePiece BPE".to_owned(),
    })
}

/// The tokens parsed out of text as whole pieces: control tokens (special,
/// left out by `skip_special_tokens`) and user-defined ones (plain text).
fn added_tokens(tokens: &[String], types: &[TokenType]) -> Vec<AddedToken> {
    tokens
        .iter()
        .zip(types)
        .filter(|(tok, _)| !tok.is_empty())
        .filter_map(|(tok, ty)| match ty {
            // `<unk>` too, as HF's Llama tokenizers list it among the specials.
            TokenType::Control | TokenType::Unknown => {
                Some(AddedToken::from(tok.clone(), true).normalized(false))
            }
            TokenType::UserDefined => Some(AddedToken::from(tok.clone(), false).normalized(false)),
            _ => None,
        })
        .collect()
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
                supported: SUPPORTED_PRE_TOKENIZERS,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::error::GgufError;
    use crate::gguf::metadata::MetaValue;
    use crate::tokenizer::vocab::BYTE_TO_CHAR;

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
    fn unsupported_model_and_pre_tokenizer_are_named() {
        let mut m = bpe_meta("jais");
        let err = Tokenizer::from_gguf(&m).unwrap_err();
        assert!(
            matches!(&err, TokenizerError::UnsupportedPreTokenizer { pre, .. } if pre == "jais")
        );
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
}
