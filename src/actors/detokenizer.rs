//! The Detokenizer: turns each sequence's sampled tokens into the text
//! deltas of its response stream. It owns, per sequence, an incremental
//! UTF-8-safe decoder (a character split across tokens is sent whole, once
//! its last byte arrives), the stop-string matcher and the response sender.
//! It sees tokens only as the Scheduler reports them and may not touch the
//! Scheduler's state: when it sees a stop string it asks the Scheduler to
//! finish the sequence, and sends the final event when the Scheduler says the
//! sequence is done, with the count of tokens that went to reasoning added to
//! the usage. It also names the tokens of each logprob (the chosen one and
//! its alternatives) by their text, since it holds the tokenizer: the API
//! only shapes what it gets.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Actor, Context, Handler, Recipient};
use tokio::sync::mpsc::UnboundedSender;

use super::messages::{Emit, Fail, Forget, Register, StopSequence};
use crate::backend::{Event, Logprobs, ScoredToken};
use crate::scheduler::{FinishReason, SeqEvent, SeqId, TokenLogprobs};
use crate::tokenizer::{IncrementalDecoder, ReasoningFormat, ReasoningParser, Tokenizer};

/// What [`StopMatcher::push`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopScan {
    /// No stop string yet: send this text (possibly empty; the end of the
    /// input may be held back).
    Continue(String),
    /// A stop string starts right after this text: send it and end the
    /// sequence. Nothing after it may be sent.
    Stopped(String),
}

/// Finds the first stop string in text that arrives in pieces. Text that
/// could be the start of a stop string is held back until the next piece
/// shows whether it is one, so a client never sees any part of a stop string.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Received, not yet sent: always a proper prefix of some stop string.
    held: String,
}

impl StopMatcher {
    /// Empty stop strings are ignored (they would match before any text).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Adds a piece of text; returns what may be sent now.
    pub fn push(&mut self, text: &str) -> StopScan {
        if self.stops.is_empty() {
            return StopScan::Continue(text.to_owned());
        }
        self.held.push_str(text);
        // The earliest occurrence of any stop string wins.
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let out = self.held[..at].to_owned();
            self.held.clear();
            return StopScan::Stopped(out);
        }
        // Hold back the longest tail that is a proper prefix of a stop string:
        // any earlier start cannot begin a match, whatever comes next.
        let split = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let out = self.held[..split].to_owned();
        self.held.drain(..split);
        StopScan::Continue(out)
    }

    /// The stream ended without a stop string: the held-back text is text.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Text held back now.
    pub fn held(&self) -> &str {
        &self.held
    }
}

/// Counts the tokens of one output that went to reasoning, from what the
/// reasoning parser made of each token's text: reasoning, answer, or
/// nothing yet (markup such as `<think>` or harmony's channel headers, half
/// a character, text held back while it may be a tag). A token that shows
/// nothing counts as reasoning when reasoning comes right before or right
/// after it, so everything a model writes before its answer starts, markup
/// included, is reasoning, and `completion_tokens - reasoning_tokens` is the
/// answer (with its end token).
#[derive(Debug, Clone, Default)]
pub struct ReasoningTally {
    reasoning: usize,
    /// Tokens since the last one that showed text.
    pending: usize,
    /// Whether the last text shown was reasoning.
    after_reasoning: bool,
}

impl ReasoningTally {
    /// One token's share of the output: whether the parser gave reasoning
    /// and whether it gave answer text for it.
    pub fn token(&mut self, reasoning: bool, answer: bool) {
        self.shown(reasoning, answer);
        if reasoning {
            self.reasoning += 1;
        } else if !answer {
            self.pending += 1;
        }
    }

    /// Text the parser let out (for a token, or at the end of the output,
    /// what it held back): settles the tokens that showed nothing before it.
    pub fn shown(&mut self, reasoning: bool, answer: bool) {
        if reasoning || (answer && self.after_reasoning) {
            self.reasoning += self.pending;
        }
        if reasoning || answer {
            self.pending = 0;
            // A piece with both ends the reasoning.
            self.after_reasoning = reasoning && !answer;
        }
    }

    /// The count once the output ended.
    pub fn total(&self) -> usize {
        self.reasoning
            + if self.after_reasoning {
                self.pending
            } else {
                0
            }
    }
}

/// The text of one token on its own, as logprobs show it: what
/// `/detokenize` gives for that id alone (special tokens included). A model
/// without a tokenizer, or an id past the tokenizer's vocabulary, has no
/// text for it: it is named by id, as vLLM's `token_id:N`.
pub fn token_text(tokenizer: Option<&Tokenizer>, id: u32) -> String {
    tokenizer
        .and_then(|tok| tok.decode(&[id], false).ok())
        .unwrap_or_else(|| format!("token_id:{id}"))
}

/// The scheduler's logprobs of `token` (ids only) with every token named.
fn named_logprobs(tokenizer: Option<&Tokenizer>, token: u32, lp: TokenLogprobs) -> Logprobs {
    let scored = |id: u32, logprob: f32| ScoredToken {
        id,
        text: token_text(tokenizer, id),
        logprob,
    };
    Logprobs {
        token: scored(token, lp.logprob),
        top: lp.top.into_iter().map(|(id, l)| scored(id, l)).collect(),
    }
}

/// One sequence's output side.
struct Stream {
    decoder: IncrementalDecoder,
    /// A reasoning model's chat: splits reasoning from the answer (and, for
    /// harmony, removes the channel markup) before stop strings are sought.
    reasoning: Option<ReasoningParser>,
    /// Tokens that went to reasoning (stays 0 without a parser).
    tally: ReasoningTally,
    matcher: StopMatcher,
    sender: UnboundedSender<Event>,
    /// Tokens whose text was sent (up to and including the one that
    /// completed a stop string).
    tokens: usize,
    /// A stop string was seen; later tokens (already in flight) are dropped.
    stopped: bool,
}

impl Stream {
    fn send(&self, event: Event) {
        // A closed channel means the client left; the Scheduler notices it
        // on its own and cancels the sequence.
        let _ = self.sender.send(event);
    }
}

pub struct Detokenizer {
    /// `None` for a model without a vocabulary: events carry ids, no text.
    tokenizer: Option<Arc<Tokenizer>>,
    scheduler: Recipient<StopSequence>,
    streams: HashMap<SeqId, Stream>,
}

impl Detokenizer {
    pub fn new(tokenizer: Option<Arc<Tokenizer>>, scheduler: Recipient<StopSequence>) -> Self {
        Self {
            tokenizer,
            scheduler,
            streams: HashMap::new(),
        }
    }

    fn on_token(&mut self, id: SeqId, token: u32, logprobs: Option<TokenLogprobs>) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.stopped {
            return;
        }
        let piece = match &self.tokenizer {
            Some(tok) => stream.decoder.push(tok, token).unwrap_or_else(|e| {
                // The model's vocabulary can be wider than the tokenizer's:
                // such an id has no text.
                tracing::warn!("sequence {id}: token {token} has no text: {e}");
                String::new()
            }),
            None => String::new(),
        };
        stream.tokens += 1;
        let (piece, reasoning) = match &mut stream.reasoning {
            Some(parser) => {
                let d = parser.push(&piece);
                stream
                    .tally
                    .token(!d.reasoning.is_empty(), !d.content.is_empty());
                (d.content, d.reasoning)
            }
            None => (piece, String::new()),
        };
        let text = match stream.matcher.push(&piece) {
            StopScan::Continue(text) => text,
            StopScan::Stopped(text) => {
                stream.stopped = true;
                self.scheduler.do_send(StopSequence { id });
                text
            }
        };
        let tokenizer = self.tokenizer.as_deref();
        stream.send(Event::Delta {
            text,
            reasoning,
            token_ids: vec![token],
            logprobs: logprobs
                .map(|lp| named_logprobs(tokenizer, token, lp))
                .into_iter()
                .collect(),
        });
    }

    fn on_finished(&mut self, id: SeqId, reason: FinishReason, mut usage: crate::scheduler::Usage) {
        let Some(mut stream) = self.streams.remove(&id) else {
            return;
        };
        if !stream.stopped {
            let mut tail = stream.decoder.finish();
            let mut reasoning = String::new();
            if let Some(parser) = &mut stream.reasoning {
                let mut d = parser.push(&tail);
                d.merge(parser.finish());
                stream
                    .tally
                    .shown(!d.reasoning.is_empty(), !d.content.is_empty());
                tail = d.content;
                reasoning = d.reasoning;
            }
            let text = match stream.matcher.push(&tail) {
                StopScan::Continue(mut text) => {
                    text.push_str(&stream.matcher.flush());
                    text
                }
                StopScan::Stopped(text) => {
                    stream.stopped = true;
                    text
                }
            };
            if !text.is_empty() || !reasoning.is_empty() {
                stream.send(Event::Delta {
                    text,
                    reasoning,
                    token_ids: Vec::new(),
                    logprobs: Vec::new(),
                });
            }
        }
        let reason = if stream.stopped {
            // Tokens sampled after the stop string were never sent.
            usage.completion_tokens = stream.tokens;
            FinishReason::Stop
        } else {
            reason
        };
        usage.reasoning_tokens = stream.tally.total();
        stream.send(Event::Finished { reason, usage });
    }
}

impl Actor for Detokenizer {
    type Context = Context<Self>;
}

impl Handler<Register> for Detokenizer {
    type Result = ();

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) {
        let out = msg.output;
        self.streams.insert(
            msg.id,
            Stream {
                // Harmony's markup is special tokens: keep them for the parser.
                decoder: IncrementalDecoder::new(
                    !out.keep_special && out.reasoning != Some(ReasoningFormat::Harmony),
                ),
                reasoning: out.reasoning.map(ReasoningParser::new),
                tally: ReasoningTally::default(),
                matcher: StopMatcher::new(&out.stop),
                sender: out.sender,
                tokens: 0,
                stopped: false,
            },
        );
    }
}

impl Handler<Emit> for Detokenizer {
    type Result = ();

    fn handle(&mut self, msg: Emit, _: &mut Context<Self>) {
        for event in msg.events {
            match event {
                SeqEvent::Token {
                    id,
                    token,
                    logprobs,
                } => self.on_token(id, token, logprobs),
                SeqEvent::Finished { id, reason, usage } => self.on_finished(id, reason, usage),
            }
        }
    }
}

impl Handler<Fail> for Detokenizer {
    type Result = ();

    fn handle(&mut self, msg: Fail, _: &mut Context<Self>) {
        for id in msg.ids {
            if let Some(stream) = self.streams.remove(&id) {
                stream.send(Event::Error(msg.error.clone()));
            }
        }
    }
}

impl Handler<Forget> for Detokenizer {
    type Result = ();

    fn handle(&mut self, msg: Forget, _: &mut Context<Self>) {
        self.streams.remove(&msg.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    /// Feeds pieces; returns the text sent and whether a stop string ended it.
    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = matcher(stops);
        let mut out = String::new();
        for p in pieces {
            match m.push(p) {
                StopScan::Continue(t) => out.push_str(&t),
                StopScan::Stopped(t) => {
                    out.push_str(&t);
                    return (out, true);
                }
            }
        }
        out.push_str(&m.flush());
        (out, false)
    }

    /// Feeds one output's tokens as (reasoning?, answer?) pairs, then what
    /// the parser let out at the end; returns the reasoning count.
    fn tally(tokens: &[(bool, bool)], end: (bool, bool)) -> usize {
        let mut t = ReasoningTally::default();
        for &(r, a) in tokens {
            t.token(r, a);
        }
        t.shown(end.0, end.1);
        t.total()
    }

    const R: (bool, bool) = (true, false);
    const A: (bool, bool) = (false, true);
    const NONE: (bool, bool) = (false, false);
    const BOTH: (bool, bool) = (true, true);

    #[test]
    fn reasoning_count_covers_everything_before_the_answer() {
        // `<think>` a b `</think>` `\n\n` Answer end-token
        assert_eq!(tally(&[NONE, R, R, NONE, NONE, A, NONE], NONE), 5);
        // harmony: `<|channel|>` analysis `<|message|>` a `<|end|>` `<|start|>`
        // assistant `<|channel|>` final `<|message|>` Answer `<|return|>`
        let harmony = [
            NONE, NONE, NONE, R, NONE, NONE, NONE, NONE, NONE, NONE, A, NONE,
        ];
        assert_eq!(tally(&harmony, NONE), 10);
        // A token whose text both ends the reasoning and starts the answer.
        assert_eq!(tally(&[R, BOTH, A], NONE), 2);
    }

    #[test]
    fn reasoning_count_is_zero_without_reasoning() {
        assert_eq!(tally(&[NONE, A, A, NONE], NONE), 0);
        assert_eq!(tally(&[NONE, NONE], A), 0);
        assert_eq!(tally(&[], NONE), 0);
    }

    #[test]
    fn reasoning_cut_short_counts_every_token() {
        // Stopped at max_tokens inside the reasoning; the last tokens' text
        // is only let out at the end (`</thi` might have been a tag).
        assert_eq!(tally(&[NONE, R, R, NONE, NONE], R), 5);
        assert_eq!(tally(&[R, NONE], NONE), 2);
        // Held-back text that turned out to be answer text.
        assert_eq!(tally(&[R, NONE], A), 2);
        assert_eq!(tally(&[A, NONE], A), 0);
    }

    #[test]
    fn logprob_tokens_of_a_model_without_a_tokenizer_are_named_by_id() {
        let lp = TokenLogprobs {
            logprob: -0.5,
            top: vec![(7, -0.5), (300, -1.5)],
        };
        let named = named_logprobs(None, 7, lp);
        assert_eq!(
            named.token,
            ScoredToken {
                id: 7,
                text: "token_id:7".into(),
                logprob: -0.5
            }
        );
        let top: Vec<_> = named
            .top
            .iter()
            .map(|t| (t.id, t.text.as_str(), t.logprob))
            .collect();
        assert_eq!(top, [(7, "token_id:7", -0.5), (300, "token_id:300", -1.5)]);
    }

    #[test]
    fn no_stop_strings_passes_everything_through() {
        let mut m = matcher(&[]);
        assert_eq!(m.push("abc"), StopScan::Continue("abc".into()));
        assert_eq!(m.held(), "");
        assert_eq!(run(&[""], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn stop_inside_one_piece_cuts_before_it() {
        assert_eq!(
            run(&["STOP"], &["hello STOP world"]),
            ("hello ".into(), true)
        );
    }

    #[test]
    fn stop_split_across_pieces_is_never_sent() {
        let mut m = matcher(&["</end>"]);
        assert_eq!(m.push("text </"), StopScan::Continue("text ".into()));
        assert_eq!(m.held(), "</");
        assert_eq!(m.push("en"), StopScan::Continue(String::new()));
        assert_eq!(m.held(), "</en");
        assert_eq!(m.push("d> more"), StopScan::Stopped(String::new()));
    }

    #[test]
    fn a_false_start_is_released_when_it_cannot_match() {
        let mut m = matcher(&["abc"]);
        assert_eq!(m.push("xab"), StopScan::Continue("x".into()));
        assert_eq!(m.push("d"), StopScan::Continue("abd".into()));
        assert_eq!(m.held(), "");
        // "aab": the tail "ab" may still start "abc", the first "a" may not.
        assert_eq!(m.push("aab"), StopScan::Continue("a".into()));
        assert_eq!(m.held(), "ab");
        assert_eq!(m.flush(), "ab");
    }

    #[test]
    fn overlapping_prefix_is_found() {
        // "aab" + "c": the match starts at the second 'a'.
        assert_eq!(
            run(&["abc"], &["a", "a", "b", "c", "z"]),
            ("a".into(), true)
        );
    }

    #[test]
    fn earliest_of_several_stop_strings_wins() {
        assert_eq!(
            run(&["world", "lo w"], &["hel", "lo wor", "ld"]),
            ("hel".into(), true)
        );
        assert_eq!(run(&["xyz", "b"], &["abc"]), ("a".into(), true));
    }

    #[test]
    fn held_text_is_flushed_at_the_end() {
        assert_eq!(
            run(&["STOP"], &["the end S", "T"]),
            ("the end ST".into(), false)
        );
    }

    #[test]
    fn multibyte_text_is_split_on_char_boundaries() {
        // The stop string starts with the same character as the text's end.
        let mut m = matcher(&["é!"]);
        assert_eq!(m.push("café"), StopScan::Continue("caf".into()));
        assert_eq!(m.held(), "é");
        assert_eq!(m.push("?"), StopScan::Continue("é?".into()));
        assert_eq!(
            run(&["日本"], &["今日は日", "本語"]),
            ("今日は".into(), true)
        );
    }

    #[test]
    fn every_split_of_a_text_gives_the_same_result() {
        let text = "one two <stop> three";
        let stops = ["<stop>", "zzz"];
        for a in 0..=text.len() {
            for b in a..=text.len() {
                let pieces = [&text[..a], &text[a..b], &text[b..]];
                assert_eq!(
                    run(&stops, &pieces),
                    ("one two ".into(), true),
                    "split at {a}, {b}"
                );
            }
        }
    }
}
