//! The text completion shape (`/v1/completions`): `text_completion`
//! objects, whole and streamed (the same object name), no opening chunk,
//! no reasoning field, and the legacy logprobs: parallel arrays with each
//! token's character offset in its choice's text.

use super::shape::{to_json, Delta, Head, Shape};
use crate::api::types::{
    ChunkUsage, CompletionLogprobs, TextChoice, TextCompletion, TokenMap, Usage,
};
use crate::backend::Logprobs;

/// One choice of a whole response, accumulated from its deltas.
#[derive(Default)]
struct Choice {
    text: String,
    token_ids: Vec<u32>,
    logprobs: Option<CompletionLogprobs>,
}

pub struct Text {
    choices: Vec<Choice>,
    /// Characters of token text shown so far per choice (`text_offset`),
    /// streamed or not.
    offsets: Vec<usize>,
}

impl Text {
    pub fn new(num_choices: usize) -> Self {
        Self {
            choices: (0..num_choices).map(|_| Choice::default()).collect(),
            offsets: vec![0; num_choices],
        }
    }

    fn object(head: &Head, choices: Vec<TextChoice>, usage: ChunkUsage) -> String {
        to_json(&TextCompletion {
            id: &head.id,
            object: "text_completion",
            created: head.created,
            model: &head.model,
            system_fingerprint: &head.fingerprint,
            choices,
            usage,
        })
    }

    /// The logprobs of choice `index`'s next tokens, moving its offset on.
    fn logprobs(&mut self, index: usize, lps: Vec<Logprobs>) -> CompletionLogprobs {
        let mut out = CompletionLogprobs::default();
        for lp in lps {
            let token = lp.token.text;
            let mut top = TokenMap::default();
            for alt in lp.top {
                top.insert(alt.text, alt.logprob);
            }
            if top.0.is_empty() {
                // logprobs=0 still shows the chosen token, as OpenAI does.
                top.insert(token.clone(), lp.token.logprob);
            }
            out.text_offset.push(self.offsets[index]);
            self.offsets[index] += token.chars().count();
            out.tokens.push(token);
            out.token_logprobs.push(lp.token.logprob);
            out.top_logprobs.push(top);
        }
        out
    }
}

impl Shape for Text {
    fn id_prefix(&self) -> &'static str {
        "cmpl-"
    }

    fn shows_reasoning(&self) -> bool {
        false
    }

    fn opening(&self, _head: &Head, _index: usize) -> Option<String> {
        None
    }

    fn delta_chunk(&mut self, head: &Head, index: usize, d: Delta) -> String {
        let choice = TextChoice {
            index,
            text: d.text,
            logprobs: d.logprobs.map(|lps| self.logprobs(index, lps)),
            finish_reason: None,
            token_ids: d.token_ids,
        };
        Self::object(head, vec![choice], head.chunk_usage())
    }

    fn finish_chunk(&self, head: &Head, index: usize, reason: &'static str) -> String {
        let choice = TextChoice {
            index,
            text: String::new(),
            logprobs: None,
            finish_reason: Some(reason),
            token_ids: None,
        };
        Self::object(head, vec![choice], head.chunk_usage())
    }

    fn usage_chunk(&self, head: &Head, usage: Usage) -> String {
        Self::object(head, Vec::new(), Some(Some(usage)))
    }

    fn accumulate(&mut self, index: usize, d: Delta) {
        let logprobs = d.logprobs.map(|lps| self.logprobs(index, lps));
        let choice = &mut self.choices[index];
        choice.text.push_str(&d.text);
        choice.token_ids.extend(d.token_ids.unwrap_or_default());
        if let Some(lp) = logprobs {
            choice
                .logprobs
                .get_or_insert_with(Default::default)
                .extend(lp);
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
            .map(|(index, (c, finish_reason))| TextChoice {
                index,
                text: c.text,
                logprobs: c
                    .logprobs
                    .or_else(|| head.logprobs.then(CompletionLogprobs::default)),
                finish_reason,
                token_ids: head.return_token_ids.then_some(c.token_ids),
            })
            .collect();
        Self::object(head, choices, Some(Some(usage)))
    }
}
