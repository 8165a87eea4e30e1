//! How a model's chat is written out: its own Jinja template, or, for
//! gpt-oss, the harmony format rendered by [`super::harmony`] (whose output
//! the Detokenizer then parses into reasoning and answer).

use super::chat_template::{ChatMessage, ChatTemplate, TemplateError};
use super::harmony::{self, HarmonyOptions, ReasoningEffort};
use super::reasoning::ReasoningFormat;

pub enum ChatFormat {
    Template(Box<ChatTemplate>),
    Harmony,
}

impl std::fmt::Debug for ChatFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChatFormat::Template(t) => f.debug_tuple("Template").field(t).finish(),
            ChatFormat::Harmony => f.write_str("Harmony"),
        }
    }
}

impl ChatFormat {
    pub fn is_harmony(&self) -> bool {
        matches!(self, ChatFormat::Harmony)
    }

    /// How this model's chat answers carry reasoning, if they do: harmony's
    /// channels, or `<think>` tags when the template speaks of them (and
    /// whether the template itself opens the tag at the end of the prompt,
    /// as DeepSeek-R1's does).
    pub fn reasoning_format(&self) -> Option<ReasoningFormat> {
        match self {
            ChatFormat::Harmony => Some(ReasoningFormat::Harmony),
            ChatFormat::Template(t) if t.source().contains("<think>") => {
                let probe = [ChatMessage::new("user", "hi")];
                let starts_inside = t
                    .render(&probe, true, "", "")
                    .is_ok_and(|p| p.trim_end().ends_with("<think>"));
                Some(ReasoningFormat::Think { starts_inside })
            }
            ChatFormat::Template(_) => None,
        }
    }

    /// The prompt text for `messages`. `reasoning_effort` sets harmony's
    /// `Reasoning:` level (medium when `None`); templates ignore it.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
        reasoning_effort: Option<ReasoningEffort>,
    ) -> Result<String, TemplateError> {
        match self {
            ChatFormat::Template(t) => {
                t.as_ref()
                    .render(messages, add_generation_prompt, bos_token, eos_token)
            }
            ChatFormat::Harmony => {
                let opts = HarmonyOptions {
                    reasoning_effort: reasoning_effort.unwrap_or_default(),
                    current_date: Some(today_utc()),
                    ..Default::default()
                };
                Ok(harmony::render(messages, &opts, add_generation_prompt)?)
            }
        }
    }
}

/// Today's date in UTC as `YYYY-MM-DD` (harmony's `Current date:`).
fn today_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_format_follows_the_template() {
        let t = |src: &str| ChatFormat::Template(Box::new(ChatTemplate::new(src).unwrap()));
        assert_eq!(
            ChatFormat::Harmony.reasoning_format(),
            Some(ReasoningFormat::Harmony)
        );
        let plain = "{% for m in messages %}{{ m.content }}{% endfor %}";
        assert_eq!(t(plain).reasoning_format(), None);
        // Qwen 3: the model opens <think> itself.
        let qwen3 = "{% for m in messages %}{{ m.content | replace('<think>', '') }}{% endfor %}\
                     {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        assert_eq!(
            t(qwen3).reasoning_format(),
            Some(ReasoningFormat::Think {
                starts_inside: false
            })
        );
        // DeepSeek-R1: the prompt ends inside the reasoning.
        let r1 = "{% for m in messages %}{{ m.content }}{% endfor %}\
                  {% if add_generation_prompt %}<|Assistant|><think>\n{% endif %}";
        assert_eq!(
            t(r1).reasoning_format(),
            Some(ReasoningFormat::Think {
                starts_inside: true
            })
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        // 2000-02-29 (a leap day of a century year divisible by 400).
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn harmony_format_renders_the_effort_and_a_generation_prompt() {
        let msgs = [ChatMessage::new("user", "hi")];
        let text = ChatFormat::Harmony
            .render(&msgs, true, "", "", Some(ReasoningEffort::High))
            .unwrap();
        assert!(text.contains("Reasoning: high"), "{text}");
        assert!(text.contains("Current date: 20"), "{text}");
        assert!(text.ends_with("<|start|>user<|message|>hi<|end|><|start|>assistant"));
        let err = ChatFormat::Harmony
            .render(&[ChatMessage::new("tool", "x")], true, "", "", None)
            .unwrap_err();
        assert!(err.to_string().contains("tool"), "{err}");
    }
}
