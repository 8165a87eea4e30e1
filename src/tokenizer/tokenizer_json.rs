//! Loading a HuggingFace `tokenizer.json` as a [`Tokenizer`], with the BOS/EOS
//! tokens and chat template of a `tokenizer_config.json` (or a
//! `chat_template.jinja`) beside it. It owns only the reading of those files
//! and the mapping of their contents onto the `Tokenizer`'s tables; encoding
//! and decoding live in [`super::vocab`].

use std::path::Path;

use tokenizers::decoders::DecoderWrapper;

use super::vocab::{
    parse_byte_token, piece_bytes, stop_ids, PieceStyle, TokenType, Tokenizer, TokenizerError,
};

impl Tokenizer {
    /// Loads a HuggingFace `tokenizer.json`. A `tokenizer_config.json` in the
    /// same folder, when present, supplies the BOS/EOS tokens and the chat
    /// template (else `chat_template.jinja` does). BOS is added by the
    /// tokenizer.json's own post-processor.
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
        let tokens = tokens_by_id(&inner).map_err(load_err)?;
        let style = decoder_style(inner.get_decoder());
        let types = token_types(&inner, &tokens, style);
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
        let chat_template = chat_template(config.as_ref(), path);
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
}

/// The vocabulary (added tokens included) as a table indexed by id; a gap
/// is an empty string.
fn tokens_by_id(inner: &tokenizers::Tokenizer) -> Result<Vec<String>, String> {
    let vocab = inner.get_vocab(true);
    let n = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
    if n == 0 {
        return Err("the vocabulary is empty".into());
    }
    // Ids index a table: refuse one mostly made of holes.
    if n > 2 * vocab.len() + 1024 {
        return Err(format!(
            "token ids go up to {} for only {} tokens; the file is corrupt",
            n - 1,
            vocab.len()
        ));
    }
    let mut tokens = vec![String::new(); n];
    for (tok, id) in vocab {
        tokens[id as usize] = tok;
    }
    Ok(tokens)
}

/// Added tokens are control (special) or user-defined; a SentencePiece
/// model's `<0xXX>` tokens are bytes; the rest are normal.
fn token_types(
    inner: &tokenizers::Tokenizer,
    tokens: &[String],
    style: PieceStyle,
) -> Vec<TokenType> {
    let added = inner.get_added_tokens_decoder();
    tokens
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
        .collect()
}

/// `tokenizer_config.json`'s `chat_template` (a string, or a list of named
/// templates of which "default"), else a `chat_template.jinja` beside the
/// tokenizer (newer checkpoints ship the template as its own file).
fn chat_template(config: Option<&serde_json::Value>, path: &Path) -> Option<String> {
    let from_config = config
        .and_then(|c| c.get("chat_template"))
        .and_then(|t| match t {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(list) => list
                .iter()
                .find(|e| e.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|e| e.get("template")?.as_str().map(str::to_owned)),
            _ => None,
        });
    from_config.or_else(|| {
        let p = path.parent()?.join("chat_template.jinja");
        std::fs::read_to_string(p).ok()
    })
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

fn read_json(path: &Path) -> Result<serde_json::Value, TokenizerError> {
    let err = |message: String| TokenizerError::Load {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(format!("not valid JSON: {e}")))
}
