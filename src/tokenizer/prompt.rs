//! One prompt to the token ids the model sees: chat messages through the
//! model's chat format, raw text, or token ids checked against the
//! vocabulary; then, where asked, the context check (never a cut). The
//! server's Tokenizer pool and `wgserve generate` both encode through
//! [`PromptEncoder`], so a prompt gives the same ids on either path. It owns
//! only these rules; it holds no state and knows nothing of HTTP or actors.

use super::chat_format::ChatFormat;
use super::chat_template::{ChatMessage, TemplateError};
use super::harmony::ReasoningEffort;
use super::vocab::{Tokenizer, TokenizerError};

/// A prompt as the caller has it.
#[derive(Debug, Clone, Copy)]
pub enum Prompt<'a> {
    /// Rendered with the chat format and a generation prompt.
    Chat(&'a [ChatMessage]),
    /// Encoded as is (special tokens written in it are parsed).
    Text(&'a str),
    /// Used as is once every id is inside the vocabulary.
    Ids(&'a [u32]),
}

/// Why a prompt has no ids. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// A text or chat prompt for a model without a vocabulary; callers say
    /// how their user passes token ids instead.
    #[error("this model has no tokenizer, so it takes token ids only")]
    NoTokenizer,

    #[error(transparent)]
    Template(#[from] TemplateError),

    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),

    #[error("token id {id} is outside the vocabulary (ids must be below {vocab_size})")]
    IdOutsideVocab { id: u32, vocab_size: usize },

    #[error("the prompt is empty; send at least one token")]
    Empty,

    #[error(
        "the prompt has {len} tokens but this model's context window is {max_model_len} tokens \
         (the prompt and at least one generated token must fit); shorten the prompt"
    )]
    TooLong { len: usize, max_model_len: usize },
}

/// What encoding a prompt needs to know of the model. Borrowed: the caller
/// keeps the tokenizer and chat format.
#[derive(Debug, Clone, Copy)]
pub struct PromptEncoder<'a> {
    /// `None`: the model has no vocabulary and takes token ids only.
    pub tokenizer: Option<&'a Tokenizer>,
    pub chat_format: &'a ChatFormat,
    /// Token ids must be below this (the model's embedding rows) and below
    /// the tokenizer's vocabulary size.
    pub vocab_size: usize,
    /// The context window: a checked prompt leaves room for one generated token.
    pub max_model_len: usize,
}

impl PromptEncoder<'_> {
    /// The token ids of `prompt`; with `check_context`, refuses an empty
    /// prompt or one that leaves no room for output (it is never cut).
    /// `reasoning_effort` reaches harmony's `Reasoning:` line only.
    pub fn encode(
        &self,
        prompt: Prompt<'_>,
        check_context: bool,
        reasoning_effort: Option<ReasoningEffort>,
    ) -> Result<Vec<u32>, PromptError> {
        let ids = match prompt {
            Prompt::Chat(messages) => self.encode_chat(messages, reasoning_effort)?,
            Prompt::Text(text) => self.tokenizer()?.encode(text, true)?,
            Prompt::Ids(ids) => self.checked_ids(ids)?,
        };
        if check_context {
            if ids.is_empty() {
                return Err(PromptError::Empty);
            }
            if ids.len() >= self.max_model_len {
                return Err(PromptError::TooLong {
                    len: ids.len(),
                    max_model_len: self.max_model_len,
                });
            }
        }
        Ok(ids)
    }

    fn tokenizer(&self) -> Result<&Tokenizer, PromptError> {
        self.tokenizer.ok_or(PromptError::NoTokenizer)
    }

    /// The rendered chat, encoded with the model's BOS rule.
    fn encode_chat(
        &self,
        messages: &[ChatMessage],
        reasoning_effort: Option<ReasoningEffort>,
    ) -> Result<Vec<u32>, PromptError> {
        let tok = self.tokenizer()?;
        let text = self.chat_format.render(
            messages,
            true,
            tok.bos_token().unwrap_or(""),
            tok.eos_token().unwrap_or(""),
            reasoning_effort,
        )?;
        let mut ids = tok.encode(&text, true)?;
        // A template that writes BOS itself, on a model whose encoder also
        // adds one, would give two: the model never saw that. (Raw text is
        // left as written: its author chose its BOS.)
        if let Some(bos) = tok.bos_id() {
            if ids.len() >= 2 && ids[0] == bos && ids[1] == bos {
                ids.remove(0);
            }
        }
        Ok(ids)
    }

    fn checked_ids(&self, ids: &[u32]) -> Result<Vec<u32>, PromptError> {
        let vocab_size = match self.tokenizer {
            Some(t) => t.vocab_size().min(self.vocab_size),
            None => self.vocab_size,
        };
        match ids.iter().find(|&&id| id as usize >= vocab_size) {
            Some(&id) => Err(PromptError::IdOutsideVocab { id, vocab_size }),
            None => Ok(ids.to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::chat_template::ChatTemplate;
    use crate::tokenizer::gguf_vocab::GgufVocab;

    const BOS: u32 = 1;

    /// A SentencePiece vocabulary, whose encoder adds BOS (llama's default).
    fn spm_tokenizer() -> Tokenizer {
        let tokens = [
            "<unk>",
            "<s>",
            "</s>",
            "\u{2581}",
            "h",
            "i",
            "\u{2581}hi",
            "hi",
        ];
        Tokenizer::from_vocab(GgufVocab {
            model: "llama".into(),
            tokens: tokens.map(String::from).to_vec(),
            token_types: vec![2, 3, 3, 1, 1, 1, 1, 1],
            scores: vec![0.0, 0.0, 0.0, -1.0, -2.0, -2.0, -3.0, -4.0],
            bos_id: Some(BOS),
            eos_id: Some(2),
            unk_id: Some(0),
            ..Default::default()
        })
        .unwrap()
    }

    fn template(source: &str) -> ChatFormat {
        ChatFormat::Template(Box::new(ChatTemplate::new(source).unwrap()))
    }

    fn encoder<'a>(tok: Option<&'a Tokenizer>, format: &'a ChatFormat) -> PromptEncoder<'a> {
        PromptEncoder {
            tokenizer: tok,
            chat_format: format,
            vocab_size: 8,
            max_model_len: 5,
        }
    }

    const WITH_BOS: &str = "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}";
    const WITHOUT_BOS: &str = "{% for m in messages %}{{ m.content }}{% endfor %}";

    #[test]
    fn a_template_that_writes_bos_gets_exactly_one() {
        let tok = spm_tokenizer();
        assert!(tok.adds_bos());
        let messages = [ChatMessage::new("user", "hi")];
        for source in [WITH_BOS, WITHOUT_BOS] {
            let format = template(source);
            let ids = encoder(Some(&tok), &format)
                .encode(Prompt::Chat(&messages), true, None)
                .unwrap();
            assert_eq!(ids, vec![BOS, 6], "template {source:?}");
        }
        // Raw text is encoded as written, its own BOS included.
        let format = template(WITHOUT_BOS);
        let ids = encoder(Some(&tok), &format)
            .encode(Prompt::Text("<s>hi"), true, None)
            .unwrap();
        assert_eq!(ids, vec![BOS, BOS, 6]);
    }

    #[test]
    fn ids_are_checked_against_the_smaller_vocabulary() {
        let tok = spm_tokenizer();
        let format = template(WITHOUT_BOS);
        let mut enc = encoder(Some(&tok), &format);
        assert_eq!(
            enc.encode(Prompt::Ids(&[7, 0]), true, None).unwrap(),
            [7, 0]
        );
        enc.vocab_size = 7;
        let err = enc.encode(Prompt::Ids(&[7]), true, None).unwrap_err();
        assert!(matches!(
            err,
            PromptError::IdOutsideVocab {
                id: 7,
                vocab_size: 7
            }
        ));
        // Without a tokenizer only the model's width counts.
        let enc = PromptEncoder {
            vocab_size: 100,
            ..encoder(None, &format)
        };
        assert_eq!(enc.encode(Prompt::Ids(&[99]), true, None).unwrap(), [99]);
        assert!(matches!(
            enc.encode(Prompt::Text("hi"), true, None),
            Err(PromptError::NoTokenizer)
        ));
    }

    #[test]
    fn the_context_check_refuses_empty_and_full_prompts() {
        let tok = spm_tokenizer();
        let format = template(WITHOUT_BOS);
        let enc = encoder(Some(&tok), &format);
        assert!(matches!(
            enc.encode(Prompt::Ids(&[]), true, None),
            Err(PromptError::Empty)
        ));
        assert!(enc
            .encode(Prompt::Ids(&[]), false, None)
            .unwrap()
            .is_empty());
        assert_eq!(
            enc.encode(Prompt::Ids(&[3; 4]), true, None).unwrap().len(),
            4
        );
        let err = enc.encode(Prompt::Ids(&[3; 5]), true, None).unwrap_err();
        assert!(matches!(
            err,
            PromptError::TooLong {
                len: 5,
                max_model_len: 5
            }
        ));
        assert!(
            err.to_string().contains("context window is 5 tokens"),
            "{err}"
        );
        assert_eq!(
            enc.encode(Prompt::Ids(&[3; 5]), false, None).unwrap().len(),
            5
        );
    }
}
