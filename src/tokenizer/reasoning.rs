//! Reasoning apart from the answer, for the models that write it inline:
//! `<think> ... </think>` (Qwen 3, DeepSeek-R1 and its distillations,
//! SmolLM 3), and gpt-oss's harmony channels ([`super::harmony`]). The
//! Detokenizer runs one [`ReasoningParser`] per chat; the API sends what it
//! splits off as `reasoning_content`.

use super::harmony::{HarmonyDelta, HarmonyParser};

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// How a model's chat output carries its reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningFormat {
    /// gpt-oss: `analysis` channel vs `final` channel.
    Harmony,
    /// `<think>...</think>` before the answer. `starts_inside`: the chat
    /// template already wrote `<think>` at the end of the prompt (DeepSeek-R1
    /// style), so the output begins inside the reasoning.
    Think { starts_inside: bool },
}

/// A streaming splitter for one output.
#[derive(Debug)]
pub enum ReasoningParser {
    Harmony(HarmonyParser),
    Think(ThinkParser),
}

impl ReasoningParser {
    pub fn new(format: ReasoningFormat) -> Self {
        match format {
            ReasoningFormat::Harmony => Self::Harmony(HarmonyParser::new()),
            ReasoningFormat::Think { starts_inside } => {
                Self::Think(ThinkParser::new(starts_inside))
            }
        }
    }

    pub fn push(&mut self, text: &str) -> HarmonyDelta {
        match self {
            Self::Harmony(p) => p.push(text),
            Self::Think(p) => p.push(text),
        }
    }

    pub fn finish(&mut self) -> HarmonyDelta {
        match self {
            Self::Harmony(p) => p.finish(),
            Self::Think(p) => p.finish(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet: the output may still open with `<think>`.
    Start,
    Reasoning,
    Answer,
}

/// Splits `<think>reasoning</think>answer`. Reasoning is only recognised at
/// the start of the output (after whitespace); a `<think>` later on is
/// ordinary answer text. The whitespace between `</think>` and the answer is
/// dropped. Text that may be the start of a tag is held back until the next
/// piece decides, so the split never depends on where pieces end.
#[derive(Debug)]
pub struct ThinkParser {
    state: State,
    held: String,
    /// The answer has not started: leading whitespace is still dropped.
    answer_fresh: bool,
}

impl ThinkParser {
    pub fn new(starts_inside: bool) -> Self {
        Self {
            state: if starts_inside {
                State::Reasoning
            } else {
                State::Start
            },
            held: String::new(),
            answer_fresh: true,
        }
    }

    pub fn push(&mut self, text: &str) -> HarmonyDelta {
        let mut out = HarmonyDelta::default();
        self.held.push_str(text);
        loop {
            match self.state {
                State::Start => {
                    let trimmed = self.held.trim_start();
                    if trimmed.is_empty() {
                        break;
                    }
                    if let Some(rest) = trimmed.strip_prefix(OPEN) {
                        self.held = rest.to_string();
                        self.state = State::Reasoning;
                    } else if OPEN.starts_with(trimmed) {
                        break; // may still become `<think>`
                    } else {
                        self.state = State::Answer;
                    }
                }
                State::Reasoning => match self.held.find(CLOSE) {
                    Some(at) => {
                        out.reasoning.push_str(&self.held[..at]);
                        self.held.drain(..at + CLOSE.len());
                        self.state = State::Answer;
                    }
                    None => {
                        let keep = partial_suffix(&self.held, CLOSE);
                        let emit = self.held.len() - keep;
                        out.reasoning.push_str(&self.held[..emit]);
                        self.held.drain(..emit);
                        break;
                    }
                },
                State::Answer => {
                    let text = std::mem::take(&mut self.held);
                    let text = if self.answer_fresh {
                        text.trim_start()
                    } else {
                        &text
                    };
                    if !text.is_empty() {
                        self.answer_fresh = false;
                        out.content.push_str(text);
                    }
                    break;
                }
            }
        }
        out
    }

    /// Ends the output: held-back text was not a tag after all.
    pub fn finish(&mut self) -> HarmonyDelta {
        let mut out = HarmonyDelta::default();
        let held = std::mem::take(&mut self.held);
        match self.state {
            State::Reasoning => out.reasoning = held,
            State::Start | State::Answer => {
                let text = if self.answer_fresh {
                    held.trim_start()
                } else {
                    &held
                };
                out.content = text.to_string();
            }
        }
        out
    }
}

/// Length of the longest proper prefix of `tag` that `text` ends with.
fn partial_suffix(text: &str, tag: &str) -> usize {
    (1..tag.len())
        .rev()
        .find(|&n| text.ends_with(&tag[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(starts_inside: bool, text: &str) -> (String, String) {
        let mut p = ThinkParser::new(starts_inside);
        let mut d = p.push(text);
        d.merge(p.finish());
        (d.reasoning, d.content)
    }

    fn pieces(starts_inside: bool, parts: &[&str]) -> (String, String) {
        let mut p = ThinkParser::new(starts_inside);
        let mut d = HarmonyDelta::default();
        for part in parts {
            d.merge(p.push(part));
        }
        d.merge(p.finish());
        (d.reasoning, d.content)
    }

    const CASES: &[(bool, &str, &str, &str)] = &[
        (
            false,
            "<think>\nLet me see: 2+2.\n</think>\n\nIt is 4.",
            "\nLet me see: 2+2.\n",
            "It is 4.",
        ),
        (false, "  \n<think>a</think>b", "a", "b"),
        (
            false,
            "No thinking, <think> is just text.",
            "",
            "No thinking, <think> is just text.",
        ),
        (
            false,
            "<thinking> is not the tag",
            "",
            "<thinking> is not the tag",
        ),
        (false, "<think>cut off mid-thou", "cut off mid-thou", ""),
        (false, "<think>a</thin", "a</thin", ""),
        (
            true,
            "reasoning first</think>answer</think>",
            "reasoning first",
            "answer</think>",
        ),
        (true, "never closed", "never closed", ""),
        (false, "<", "", "<"),
        (false, "", "", ""),
        (false, "<think></think>", "", ""),
        (false, "<think>x</think>\n\n  ", "x", ""),
    ];

    #[test]
    fn splits_whole_outputs() {
        for &(inside, text, reasoning, content) in CASES {
            assert_eq!(
                whole(inside, text),
                (reasoning.to_string(), content.to_string()),
                "{text:?}"
            );
        }
    }

    /// Any split into pieces (every pair of cut points, and char by char)
    /// gives what the whole text gives.
    #[test]
    fn piece_boundaries_never_change_the_split() {
        for &(inside, text, _, _) in CASES {
            let want = whole(inside, text);
            let cuts: Vec<usize> = (0..=text.len())
                .filter(|&i| text.is_char_boundary(i))
                .collect();
            for &a in &cuts {
                for &b in cuts.iter().filter(|&&b| b >= a) {
                    let got = pieces(inside, &[&text[..a], &text[a..b], &text[b..]]);
                    assert_eq!(got, want, "{text:?} cut at {a}, {b}");
                }
            }
            let chars: Vec<String> = text.chars().map(String::from).collect();
            let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
            assert_eq!(pieces(inside, &refs), want, "{text:?} char by char");
        }
    }

    #[test]
    fn reasoning_streams_without_waiting_for_the_close_tag() {
        let mut p = ThinkParser::new(false);
        assert_eq!(p.push("<think>step one").reasoning, "step one");
        assert_eq!(p.push(", two </th").reasoning, ", two ");
        let d = p.push("ink>Answer");
        assert_eq!((d.reasoning.as_str(), d.content.as_str()), ("", "Answer"));
    }
}
