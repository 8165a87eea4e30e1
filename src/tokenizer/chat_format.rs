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
                    current_date: Some(super::chat_template::today_utc()),
                    ..Default::default()
                };
                Ok(harmony::render(messages, &opts, add_generation_prompt)?)
            }
        }
    }
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
