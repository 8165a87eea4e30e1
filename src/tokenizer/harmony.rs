//! OpenAI's "harmony" chat format, used by the gpt-oss models.
//!
//! Two halves, both pure string work (no tokenizer needed):
//!
//! * [`render`] turns an OpenAI-style conversation into a harmony prompt, the
//!   way gpt-oss's own chat template does: a fixed system message (model
//!   identity, knowledge cutoff, optional date, reasoning effort, channels),
//!   then the caller's `system`/`developer` messages folded into one
//!   developer message, then the user and assistant turns.
//! * [`HarmonyParser`] splits the model's streamed output text (special tokens
//!   decoded literally, e.g. `<|channel|>`) into reasoning and visible content.
//!
//! A harmony message is `<|start|>{header}<|message|>{body}<|end|>`, where the
//! header holds the role and optionally `<|channel|>{name}`, a recipient
//! ` to={name}` and a content type (`<|constrain|>json`). The assistant ends
//! its turn with `<|return|>`, or with `<|call|>` after a tool call.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use super::ChatMessage;

/// Roles [`render`] accepts.
const SUPPORTED_ROLES: [&str; 4] = ["system", "developer", "user", "assistant"];

/// The model identity line of gpt-oss's system message.
const MODEL_IDENTITY: &str = "You are ChatGPT, a large language model trained by OpenAI.";

/// Errors of the harmony format.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HarmonyError {
    /// A message has a role the harmony renderer does not handle.
    #[error(
        "role `{0}` is not supported by the harmony chat format; \
         supported roles are: system, developer, user, assistant"
    )]
    UnsupportedRole(String),
    /// A reasoning effort that is none of the known levels.
    #[error("unknown reasoning effort `{0}`; expected one of: low, medium, high")]
    InvalidReasoningEffort(String),
}

/// How much the model should think before answering (the `Reasoning:` line
/// of the system message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReasoningEffort {
    Low,
    #[default]
    Medium,
    High,
}

impl ReasoningEffort {
    /// The lowercase name used in the prompt.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

impl fmt::Display for ReasoningEffort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReasoningEffort {
    type Err = HarmonyError;

    /// Parses `low`, `medium` or `high`, ignoring ASCII case and surrounding
    /// whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            _ => Err(HarmonyError::InvalidReasoningEffort(s.to_owned())),
        }
    }
}

/// Settings of the harmony system message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HarmonyOptions {
    /// The `Reasoning:` level.
    pub reasoning_effort: ReasoningEffort,
    /// The `Knowledge cutoff:` value; gpt-oss was trained with `2024-06`.
    pub knowledge_cutoff: String,
    /// The `Current date:` value (`YYYY-MM-DD`); `None` omits the line.
    pub current_date: Option<String>,
}

impl Default for HarmonyOptions {
    fn default() -> Self {
        Self {
            reasoning_effort: ReasoningEffort::default(),
            knowledge_cutoff: "2024-06".to_owned(),
            current_date: None,
        }
    }
}

/// Renders `messages` as a harmony prompt.
///
/// `system` and `developer` messages, wherever they are, are joined (blank
/// line between) into one developer message right after the system message;
/// empty ones are skipped. Assistant turns are rendered on the `final`
/// channel. When the conversation ends with an assistant message and no
/// generation prompt is asked for, that message ends with `<|return|>`
/// instead of `<|end|>`, as in gpt-oss's template. With
/// `add_generation_prompt`, `<|start|>assistant` is appended.
///
/// Any other role (e.g. `tool`) is an error.
pub fn render(
    messages: &[ChatMessage],
    opts: &HarmonyOptions,
    add_generation_prompt: bool,
) -> Result<String, HarmonyError> {
    if let Some(bad) = messages
        .iter()
        .find(|m| !SUPPORTED_ROLES.contains(&m.role.as_str()))
    {
        return Err(HarmonyError::UnsupportedRole(bad.role.clone()));
    }

    let date_line = opts
        .current_date
        .as_ref()
        .map(|date| format!("Current date: {date}\n"))
        .unwrap_or_default();
    let mut out = format!(
        "<|start|>system<|message|>{MODEL_IDENTITY}\n\
         Knowledge cutoff: {cutoff}\n\
         {date_line}\n\
         Reasoning: {effort}\n\n\
         # Valid channels: analysis, commentary, final. \
         Channel must be included for every message.<|end|>",
        cutoff = opts.knowledge_cutoff,
        effort = opts.reasoning_effort,
    );

    let instructions: Vec<&str> = messages
        .iter()
        .filter(|m| matches!(m.role.as_str(), "system" | "developer"))
        .map(|m| m.content.as_str())
        .filter(|c| !c.is_empty())
        .collect();
    if !instructions.is_empty() {
        out.push_str("<|start|>developer<|message|># Instructions\n\n");
        out.push_str(&instructions.join("\n\n"));
        out.push_str("\n\n<|end|>");
    }

    let last = messages.len().checked_sub(1);
    for (i, message) in messages.iter().enumerate() {
        match message.role.as_str() {
            "user" => {
                out.push_str("<|start|>user<|message|>");
                out.push_str(&message.content);
                out.push_str("<|end|>");
            }
            "assistant" => {
                out.push_str("<|start|>assistant<|channel|>final<|message|>");
                out.push_str(&message.content);
                let ends_turn = !add_generation_prompt && Some(i) == last;
                out.push_str(if ends_turn { "<|return|>" } else { "<|end|>" });
            }
            // `system` and `developer` went into the developer message.
            _ => {}
        }
    }

    if add_generation_prompt {
        out.push_str("<|start|>assistant");
    }
    Ok(out)
}

/// The special tokens the parser recognises in the output text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Start,
    End,
    Message,
    Channel,
    Constrain,
    Return,
    Call,
}

impl Marker {
    const ALL: [Marker; 7] = [
        Marker::Start,
        Marker::End,
        Marker::Message,
        Marker::Channel,
        Marker::Constrain,
        Marker::Return,
        Marker::Call,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Marker::Start => "<|start|>",
            Marker::End => "<|end|>",
            Marker::Message => "<|message|>",
            Marker::Channel => "<|channel|>",
            Marker::Constrain => "<|constrain|>",
            Marker::Return => "<|return|>",
            Marker::Call => "<|call|>",
        }
    }

    /// The marker `text` begins with, if any.
    fn at_start_of(text: &str) -> Option<Marker> {
        Self::ALL.into_iter().find(|m| text.starts_with(m.as_str()))
    }

    /// Whether `text` could still grow into a marker (it is a proper prefix
    /// of one).
    fn could_begin(text: &str) -> bool {
        Self::ALL
            .into_iter()
            .any(|m| m.as_str().len() > text.len() && m.as_str().starts_with(text))
    }
}

/// Where the text of a message body goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Reasoning,
    Content,
}

impl Sink {
    /// Routes a body by its header: `analysis` and unknown channels, and
    /// `commentary` addressed to a recipient (a tool call), are reasoning;
    /// `final`, plain `commentary` and no channel at all are content.
    fn for_header(header: &str) -> Sink {
        let channel = header
            .split_once(Marker::Channel.as_str())
            .and_then(|(_, after)| {
                let segment = after.find("<|").map_or(after, |i| &after[..i]);
                segment.split_whitespace().next()
            });
        let has_recipient = header
            .replace(Marker::Channel.as_str(), " ")
            .replace(Marker::Constrain.as_str(), " ")
            .split_whitespace()
            .any(|word| word.starts_with("to="));
        match channel {
            None | Some("final") => Sink::Content,
            Some("commentary") if !has_recipient => Sink::Content,
            Some(_) => Sink::Reasoning,
        }
    }
}

/// Where the parser is in the output.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Inside a message header; the text seen so far (markers included).
    Header(String),
    /// Inside a message body.
    Body(Sink),
    /// After `<|end|>`, before the next `<|start|>`: text is dropped.
    Between,
    /// After `<|return|>` or `<|call|>`: everything is ignored.
    Done,
}

/// What one [`HarmonyParser::push`] (or [`HarmonyParser::finish`]) yields.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HarmonyDelta {
    /// New chain-of-thought text (analysis channel, tool-call bodies, ...).
    pub reasoning: String,
    /// New user-visible text (final channel, plain commentary).
    pub content: String,
    /// The model ended its turn (`<|return|>` or `<|call|>`); stays true for
    /// every later delta.
    pub done: bool,
}

impl HarmonyDelta {
    /// Whether the delta carries no text.
    pub fn is_empty(&self) -> bool {
        self.reasoning.is_empty() && self.content.is_empty()
    }

    /// Appends `other`'s text to this delta; `done` if either is.
    pub fn merge(&mut self, other: HarmonyDelta) {
        self.reasoning.push_str(&other.reasoning);
        self.content.push_str(&other.content);
        self.done |= other.done;
    }
}

/// Streaming parser of a gpt-oss completion.
///
/// The prompt ends with `<|start|>assistant`, so the parser starts inside a
/// message header. Feed decoded text with [`push`](Self::push) as it comes
/// (chunks may split markers anywhere), then call [`finish`](Self::finish)
/// once at the end of the stream. Header text and markers are never emitted;
/// text that might be the start of a marker is held back until the next
/// chunk decides.
#[derive(Debug, Clone)]
pub struct HarmonyParser {
    state: State,
    /// A held-back tail of the input that may be the start of a marker.
    pending: String,
}

impl Default for HarmonyParser {
    fn default() -> Self {
        Self::new()
    }
}

impl HarmonyParser {
    /// A parser positioned right after `<|start|>assistant`.
    pub fn new() -> Self {
        Self {
            state: State::Header(String::new()),
            pending: String::new(),
        }
    }

    /// Whether the model ended its turn with `<|return|>` or `<|call|>`.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds the next piece of output text and returns what it reveals.
    pub fn push(&mut self, text: &str) -> HarmonyDelta {
        let mut delta = HarmonyDelta::default();
        if !self.is_done() {
            let mut buffer = std::mem::take(&mut self.pending);
            buffer.push_str(text);
            self.scan(&buffer, &mut delta);
        }
        delta.done = self.is_done();
        delta
    }

    /// Ends the stream: text held back as a possible marker start was not a
    /// marker after all, so it goes to the current body (or is dropped when
    /// in a header).
    pub fn finish(&mut self) -> HarmonyDelta {
        let mut delta = HarmonyDelta::default();
        let held = std::mem::take(&mut self.pending);
        self.text(&held, &mut delta);
        delta.done = self.is_done();
        delta
    }

    /// Processes `input`, holding back a trailing possible marker start.
    fn scan(&mut self, mut input: &str, delta: &mut HarmonyDelta) {
        while !input.is_empty() && !self.is_done() {
            let Some(at) = input.find('<') else {
                self.text(input, delta);
                return;
            };
            self.text(&input[..at], delta);
            let tail = &input[at..];
            if let Some(marker) = Marker::at_start_of(tail) {
                self.marker(marker);
                input = &tail[marker.as_str().len()..];
            } else if Marker::could_begin(tail) {
                self.pending = tail.to_owned();
                return;
            } else {
                // A `<` that starts no marker is ordinary text.
                self.text("<", delta);
                input = &tail[1..];
            }
        }
    }

    /// Routes ordinary text according to the current state.
    fn text(&mut self, text: &str, delta: &mut HarmonyDelta) {
        match &mut self.state {
            State::Header(header) => header.push_str(text),
            State::Body(Sink::Reasoning) => delta.reasoning.push_str(text),
            State::Body(Sink::Content) => delta.content.push_str(text),
            State::Between | State::Done => {}
        }
    }

    /// Applies a marker to the state.
    fn marker(&mut self, marker: Marker) {
        let state = std::mem::replace(&mut self.state, State::Done);
        self.state = match (marker, state) {
            (Marker::Return | Marker::Call, _) | (_, State::Done) => State::Done,
            (Marker::Start, _) => State::Header(String::new()),
            (Marker::End, _) => State::Between,
            (Marker::Message, State::Header(header)) => State::Body(Sink::for_header(&header)),
            // A stray `<|message|>` inside a body is dropped.
            (Marker::Message, State::Body(sink)) => State::Body(sink),
            // A header marker without `<|start|>` implies one.
            (Marker::Message, State::Between) => State::Body(Sink::for_header("")),
            (Marker::Channel | Marker::Constrain, State::Header(mut header)) => {
                header.push_str(marker.as_str());
                State::Header(header)
            }
            (Marker::Channel | Marker::Constrain, State::Body(_) | State::Between) => {
                State::Header(marker.as_str().to_owned())
            }
        };
    }
}

/// Parses a complete output at once (`push` then `finish`).
pub fn parse(text: &str) -> HarmonyDelta {
    let mut parser = HarmonyParser::new();
    let mut delta = parser.push(text);
    delta.merge(parser.finish());
    delta
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage::new(role, content)
    }

    fn conversation() -> Vec<ChatMessage> {
        vec![
            msg("system", "Be brief."),
            msg("user", "Hi"),
            msg("assistant", "Hello!"),
            msg("user", "What is 2+2?"),
        ]
    }

    fn high(date: Option<&str>) -> HarmonyOptions {
        HarmonyOptions {
            reasoning_effort: ReasoningEffort::High,
            current_date: date.map(str::to_owned),
            ..HarmonyOptions::default()
        }
    }

    #[test]
    fn render_with_date() {
        let got = render(&conversation(), &high(Some("2025-08-05")), true).unwrap();
        let want = "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n\
                    Knowledge cutoff: 2024-06\n\
                    Current date: 2025-08-05\n\
                    \n\
                    Reasoning: high\n\
                    \n\
                    # Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>\
                    <|start|>developer<|message|># Instructions\n\nBe brief.\n\n<|end|>\
                    <|start|>user<|message|>Hi<|end|>\
                    <|start|>assistant<|channel|>final<|message|>Hello!<|end|>\
                    <|start|>user<|message|>What is 2+2?<|end|>\
                    <|start|>assistant";
        assert_eq!(got, want);
    }

    #[test]
    fn render_without_date() {
        let got = render(&conversation(), &high(None), true).unwrap();
        let want = "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n\
                    Knowledge cutoff: 2024-06\n\
                    \n\
                    Reasoning: high\n\
                    \n\
                    # Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>\
                    <|start|>developer<|message|># Instructions\n\nBe brief.\n\n<|end|>\
                    <|start|>user<|message|>Hi<|end|>\
                    <|start|>assistant<|channel|>final<|message|>Hello!<|end|>\
                    <|start|>user<|message|>What is 2+2?<|end|>\
                    <|start|>assistant";
        assert_eq!(got, want);
    }

    #[test]
    fn render_defaults_and_no_developer_message() {
        let got = render(&[msg("user", "Hi")], &HarmonyOptions::default(), false).unwrap();
        assert!(got.contains("Knowledge cutoff: 2024-06\n\nReasoning: medium\n\n"));
        assert!(!got.contains("developer"));
        assert!(got.ends_with("<|end|><|start|>user<|message|>Hi<|end|>"));
    }

    #[test]
    fn render_merges_system_and_developer_messages() {
        let messages = [
            msg("system", "Rule one."),
            msg("user", "Hi"),
            msg("developer", "Rule two."),
            msg("system", ""),
        ];
        let got = render(&messages, &HarmonyOptions::default(), true).unwrap();
        assert_eq!(
            got.matches("<|start|>developer").count(),
            1,
            "one developer message: {got}"
        );
        assert!(got.contains(
            "<|end|><|start|>developer<|message|># Instructions\n\nRule one.\n\nRule two.\n\n<|end|>\
             <|start|>user<|message|>Hi<|end|><|start|>assistant"
        ));
        assert!(got.ends_with("<|start|>user<|message|>Hi<|end|><|start|>assistant"));
    }

    #[test]
    fn render_last_assistant_without_generation_prompt_returns() {
        let messages = [msg("user", "Hi"), msg("assistant", "Hello!")];
        let got = render(&messages, &HarmonyOptions::default(), false).unwrap();
        assert!(got.ends_with("<|start|>assistant<|channel|>final<|message|>Hello!<|return|>"));
        let got = render(&messages, &HarmonyOptions::default(), true).unwrap();
        assert!(got.ends_with("Hello!<|end|><|start|>assistant"));
    }

    #[test]
    fn render_rejects_tool_role() {
        let messages = [msg("user", "Weather?"), msg("tool", "{\"temp\": 20}")];
        let err = render(&messages, &HarmonyOptions::default(), true).unwrap_err();
        assert_eq!(err, HarmonyError::UnsupportedRole("tool".to_owned()));
        let text = err.to_string();
        assert!(text.contains("`tool`"), "{text}");
        assert!(
            text.contains("system, developer, user, assistant"),
            "{text}"
        );
    }

    #[test]
    fn reasoning_effort_parses_case_insensitively() {
        assert_eq!("low".parse::<ReasoningEffort>(), Ok(ReasoningEffort::Low));
        assert_eq!(
            "Medium".parse::<ReasoningEffort>(),
            Ok(ReasoningEffort::Medium)
        );
        assert_eq!(
            " HIGH ".parse::<ReasoningEffort>(),
            Ok(ReasoningEffort::High)
        );
        assert_eq!(ReasoningEffort::default(), ReasoningEffort::Medium);
        assert_eq!(ReasoningEffort::High.as_str(), "high");
        let err = "extreme".parse::<ReasoningEffort>().unwrap_err();
        assert!(err.to_string().contains("low, medium, high"), "{err}");
    }

    /// Realistic and awkward outputs with their expected (reasoning,
    /// content, done) when parsed whole.
    const CASES: &[(&str, &str, &str, bool)] = &[
        (
            "<|channel|>analysis<|message|>User asks 2+2. Answer 4.<|end|>\
             <|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>",
            "User asks 2+2. Answer 4.",
            "2 + 2 = 4.",
            true,
        ),
        (
            "<|channel|>final<|message|>Use a <| b, x <|y|> and <|endless <<|end|>",
            "",
            "Use a <| b, x <|y|> and <|endless <",
            false,
        ),
        (
            "<|channel|>analysis<|message|>Café → thinking about <|me",
            "Café → thinking about <|me",
            "",
            false,
        ),
        (
            "<|channel|>analysis<|message|>Hmm.<|end|><|start|>assistant<|chan",
            "Hmm.",
            "",
            false,
        ),
        (
            "<|channel|>analysis<|message|>Need the weather.<|end|>\
             <|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json\
             <|message|>{\"city\":\"Paris\"}<|call|>",
            "Need the weather.{\"city\":\"Paris\"}",
            "",
            true,
        ),
        (
            "<|channel|>commentary<|message|>Let me check.<|end|>",
            "",
            "Let me check.",
            false,
        ),
        (
            "<|channel|>final<|message|>Bye.<|return|>ignored <|start|>assistant\
             <|channel|>final<|message|>more",
            "",
            "Bye.",
            true,
        ),
        (
            "<|message|>plain<|end|><|start|>assistant<|channel|>scratch<|message|>hidden<|end|>",
            "hidden",
            "plain",
            false,
        ),
        (
            "<|channel|>analysis<|message|>think<|channel|>final<|message|>answer é→ok",
            "think",
            "answer é→ok",
            false,
        ),
        (
            "<|channel|>analysis<|message|>a<|start|>assistant<|channel|>final<|message|>b<|message|>c",
            "a",
            "bc",
            false,
        ),
        (
            "<|channel|>analysis<|message|>r<|end|>junk <|st<|start|>assistant\
             <|channel|>final<|message|>1 < 2 <",
            "r",
            "1 < 2 <",
            false,
        ),
    ];

    fn marker_strings() -> impl Iterator<Item = &'static str> {
        Marker::ALL.into_iter().map(Marker::as_str)
    }

    /// Feeds `chunks` to a fresh parser, checking each delta, and returns the
    /// merged result.
    fn feed<'a>(chunks: impl IntoIterator<Item = &'a str>) -> HarmonyDelta {
        let mut parser = HarmonyParser::new();
        let mut total = HarmonyDelta::default();
        for chunk in chunks {
            let delta = parser.push(chunk);
            assert_eq!(delta.done, parser.is_done());
            total.merge(delta);
        }
        total.merge(parser.finish());
        total
    }

    fn assert_marker_free(delta: &HarmonyDelta, input: &str) {
        for marker in marker_strings() {
            assert!(
                !delta.content.contains(marker) && !delta.reasoning.contains(marker),
                "marker {marker} leaked from {input:?}: {delta:?}"
            );
        }
    }

    #[test]
    fn parses_whole_outputs() {
        for &(input, reasoning, content, done) in CASES {
            let got = parse(input);
            let want = HarmonyDelta {
                reasoning: reasoning.to_owned(),
                content: content.to_owned(),
                done,
            };
            assert_eq!(got, want, "input {input:?}");
            assert_marker_free(&got, input);
        }
    }

    #[test]
    fn chunking_never_changes_the_result() {
        for &(input, ..) in CASES {
            let whole = feed([input]);
            assert_marker_free(&whole, input);

            let boundaries = input.char_indices().map(|(i, _)| i).chain([input.len()]);
            for at in boundaries {
                let (a, b) = input.split_at(at);
                let got = feed([a, b]);
                assert_eq!(got, whole, "input {input:?} split at {at}");
            }

            let chars: Vec<String> = input.chars().map(String::from).collect();
            let got = feed(chars.iter().map(String::as_str));
            assert_eq!(got, whole, "input {input:?} fed char by char");
        }
    }

    #[test]
    fn emits_text_as_soon_as_it_cannot_be_a_marker() {
        let mut parser = HarmonyParser::new();
        assert!(parser.push("<|channel|>final<|mess").is_empty());
        let delta = parser.push("age|>Hello <");
        assert_eq!(delta.content, "Hello ");
        assert_eq!(parser.push("|").content, "");
        assert_eq!(parser.push("x").content, "<|x");
        assert_eq!(parser.push(" <|en").content, " ");
        assert_eq!(parser.push("d|>tail").content, "");
        assert_eq!(parser.finish(), HarmonyDelta::default());
    }

    #[test]
    fn finish_flushes_body_but_drops_header() {
        let mut parser = HarmonyParser::new();
        parser.push("<|channel|>final<|message|>x <|ret");
        assert_eq!(parser.finish().content, "<|ret");

        let mut parser = HarmonyParser::new();
        parser.push("<|channel|>fin");
        assert_eq!(parser.finish(), HarmonyDelta::default());
    }

    #[test]
    fn done_is_sticky_and_later_input_ignored() {
        let mut parser = HarmonyParser::new();
        let delta = parser.push("<|channel|>final<|message|>ok<|ret");
        assert!(!delta.done && !parser.is_done());
        let delta = parser.push("urn|>");
        assert!(delta.done && parser.is_done());
        let delta = parser.push("<|start|>assistant<|channel|>final<|message|>more");
        assert_eq!(
            delta,
            HarmonyDelta {
                done: true,
                ..HarmonyDelta::default()
            }
        );
        assert!(parser.finish().done);
    }

    #[test]
    fn commentary_routing_depends_on_recipient() {
        assert_eq!(Sink::for_header("<|channel|>commentary"), Sink::Content);
        assert_eq!(
            Sink::for_header("<|channel|>commentary to=functions.x <|constrain|>json"),
            Sink::Reasoning
        );
        assert_eq!(
            Sink::for_header(" to=functions.x<|channel|>commentary json"),
            Sink::Reasoning
        );
        assert_eq!(Sink::for_header("<|channel|>analysis"), Sink::Reasoning);
        assert_eq!(Sink::for_header("<|channel|>final "), Sink::Content);
        assert_eq!(Sink::for_header(""), Sink::Content);
        assert_eq!(Sink::for_header("<|channel|>other"), Sink::Reasoning);
    }
}
