//! The model's chat template: a Jinja program (from the GGUF's
//! `tokenizer.chat_template` or a `tokenizer_config.json`) that turns a list of
//! chat messages into the prompt text the model was trained on. This module
//! owns compiling it once with minijinja in an environment that behaves like
//! HuggingFace's `apply_chat_template` (trim_blocks, lstrip_blocks, Python
//! string methods, `raise_exception`, a Python-compatible `tojson`,
//! `strftime_now`) and rendering it; it knows nothing of token ids.

use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

/// The name the one template is registered under inside its environment;
/// minijinja's error messages cite it (`(in chat_template:3)`).
const TEMPLATE_NAME: &str = "chat_template";

/// ChatML, the format of SmolLM2, Qwen and many fine-tunes: used for a model
/// whose files carry no template of their own.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}\
{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A chat template that could not be compiled or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The Jinja source itself is invalid; the model's template needs fixing
    /// (or a template given explicitly in the configuration).
    #[error("the chat template does not compile: {0}")]
    Compile(#[source] Error),
    /// Rendering failed. Usually the messages do not fit what the template
    /// accepts (templates call `raise_exception` for, e.g., roles that do not
    /// alternate); the message is the template's own.
    #[error("the chat template failed to render these messages: {0}")]
    Render(#[source] Error),
    /// The harmony renderer (gpt-oss) refused the messages.
    #[error(transparent)]
    Harmony(#[from] super::harmony::HarmonyError),
}

/// One message of a chat: `role` is `system`, `user`, `assistant` (or
/// whatever else the template accepts), `content` its text, `name` the
/// optional participant name OpenAI allows on any message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// Absent from the template's message dict when `None`, as in
    /// HuggingFace's `apply_chat_template`, so `message.name is defined`
    /// tests work; templates that never look at it are unaffected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            name: None,
        }
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// A compiled chat template, cheap to render many times (share it behind an
/// `Arc` between tokenizer workers).
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    is_fallback: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .field("is_fallback", &self.is_fallback)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`; a syntax error is reported now, not at the first
    /// request.
    pub fn new(source: &str) -> Result<Self, TemplateError> {
        Self::build(source, false)
    }

    /// The ChatML fallback ([`CHATML_TEMPLATE`]).
    pub fn chatml() -> Self {
        Self::build(CHATML_TEMPLATE, true).expect("the built-in ChatML template compiles")
    }

    /// The model's own template when it has one, else ChatML with a warning
    /// in the log (a model trained on another format will answer poorly).
    pub fn from_model(source: Option<&str>) -> Result<Self, TemplateError> {
        match source {
            Some(src) if !src.trim().is_empty() => Self::new(src),
            _ => {
                tracing::warn!(
                    "the model carries no chat template; using the ChatML fallback \
                     (<|im_start|>role ... <|im_end|>)"
                );
                Ok(Self::chatml())
            }
        }
    }

    /// The Jinja source this template was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when this is the ChatML fallback rather than the model's own.
    pub fn is_fallback(&self) -> bool {
        self.is_fallback
    }

    /// Renders `messages` into prompt text with the variables HuggingFace's
    /// `apply_chat_template` passes: `messages`, `add_generation_prompt`,
    /// `bos_token`, `eos_token`, and `tools`/`documents` as none. The text
    /// still holds special tokens as text (`<|im_start|>`): encode it with
    /// special-token parsing, without adding a BOS the template already wrote.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String, TemplateError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(TemplateError::Render)?;
        let ctx = minijinja::context! {
            messages => Value::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token,
            eos_token => eos_token,
            tools => Value::from(()),
            documents => Value::from(()),
        };
        template.render(ctx).map_err(TemplateError::Render)
    }

    fn build(source: &str, is_fallback: bool) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        // Jinja2 as HuggingFace configures it: block tags eat their newline
        // and leading indentation, a single trailing newline is dropped.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(TemplateError::Compile)?;
        Ok(Self {
            env,
            source: source.to_owned(),
            is_fallback,
        })
    }
}

/// `raise_exception(msg)`: how HF templates reject a conversation.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `x | tojson(indent=None)` as HF defines it: Python's `json.dumps` with
/// `ensure_ascii=False`, i.e. `", "` and `": "` separators when compact, and
/// no HTML escaping (minijinja's built-in escapes `<` `>` `&` `'`, which would
/// change the prompt the model sees).
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    // Accepted for compatibility: minijinja maps already iterate in key order.
    let _sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => Some(usize::try_from(v).map_err(|_| {
            Error::new(
                ErrorKind::InvalidOperation,
                "tojson: indent must be a non-negative integer or none",
            )
        })?),
    };
    let mut out = Vec::new();
    let result = match indent {
        Some(n) => {
            let pad = " ".repeat(n);
            let fmt = serde_json::ser::PrettyFormatter::with_indent(pad.as_bytes());
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            serde::Serialize::serialize(value, &mut ser)
        }
        None => {
            let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonCompact);
            serde::Serialize::serialize(value, &mut ser)
        }
    };
    result.map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            "tojson: cannot serialize value",
        )
        .with_source(e)
    })?;
    let mut text = String::from_utf8(out).map_err(|e| {
        Error::new(ErrorKind::InvalidOperation, "tojson: invalid UTF-8").with_source(e)
    })?;
    if ensure_ascii == Some(true) {
        text = escape_non_ascii(&text);
    }
    Ok(Value::from_safe_string(text))
}

/// `\uXXXX` escapes (UTF-16 surrogate pairs above the BMP) like Python's
/// `ensure_ascii=True`.
fn escape_non_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// serde_json formatter with Python's default `json.dumps` separators.
struct PythonCompact;

impl serde_json::ser::Formatter for PythonCompact {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// `strftime_now(format)`: the current UTC time, as HF provides it (Llama 3
/// and gpt-oss templates print today's date). Supports the conversions those
/// templates use: `%Y %y %m %d %e %b %B %a %A %H %M %S %j %%`.
fn strftime_now(format: String) -> Result<Value, Error> {
    strftime_utc(&format, unix_now()).map(Value::from)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Today's date in UTC as `YYYY-MM-DD`.
pub fn today_utc() -> String {
    strftime_utc("%Y-%m-%d", unix_now()).expect("a fixed, valid format")
}

fn strftime_utc(format: &str, unix_secs: i64) -> Result<String, Error> {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = unix_secs.div_euclid(86_400);
    let secs_of_day = unix_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let spec = chars.next().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                "strftime_now: format ends with a lone '%'",
            )
        })?;
        match spec {
            'Y' => out.push_str(&year.to_string()),
            'y' => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            'm' => out.push_str(&format!("{month:02}")),
            'd' => out.push_str(&format!("{day:02}")),
            'e' => out.push_str(&format!("{day:2}")),
            'b' => out.push_str(&MONTHS[month as usize - 1][..3]),
            'B' => out.push_str(MONTHS[month as usize - 1]),
            'a' => out.push_str(&DAYS[weekday][..3]),
            'A' => out.push_str(DAYS[weekday]),
            'H' => out.push_str(&format!("{:02}", secs_of_day / 3600)),
            'M' => out.push_str(&format!("{:02}", secs_of_day / 60 % 60)),
            'S' => out.push_str(&format!("{:02}", secs_of_day % 60)),
            'j' => out.push_str(&format!("{day_of_year:03}")),
            '%' => out.push('%'),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: unsupported conversion %{other}"),
                ))
            }
        }
    }
    Ok(out)
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic
/// Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> ChatMessage {
        ChatMessage::new("user", text)
    }

    #[test]
    fn chatml_fallback_renders_turns_and_generation_prompt() {
        let t = ChatTemplate::chatml();
        assert!(t.is_fallback());
        let msgs = [ChatMessage::new("system", "Be brief."), user("Hi")];
        let text = t.render(&msgs, true, "", "").unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\n"
        );
        let text = t.render(&msgs[1..], false, "", "").unwrap();
        assert_eq!(text, "<|im_start|>user\nHi<|im_end|>\n");
    }

    #[test]
    fn trim_and_lstrip_blocks_match_jinja2_as_hf_configures_it() {
        // With trim_blocks the newline after each block tag goes; with
        // lstrip_blocks the indentation before it goes too.
        let src = "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}\n";
        let t = ChatTemplate::new(src).unwrap();
        let text = t.render(&[user("a"), user("b")], false, "", "").unwrap();
        assert_eq!(text, "[a]\n[b]\n");
    }

    #[test]
    fn python_string_methods_and_context_variables_work() {
        let src =
            "{{ bos_token }}{% for m in messages %}{% if m['content'].strip().startswith('x') %}\
                   {{ m['content'].strip().upper() }}{% endif %}{% endfor %}\
                   {% if add_generation_prompt %}{{ eos_token }}{% endif %}\
                   {% if tools is none %}|no tools{% endif %}";
        let t = ChatTemplate::new(src).unwrap();
        let text = t
            .render(&[user("  xyz "), user("abc")], true, "<s>", "</s>")
            .unwrap();
        assert_eq!(text, "<s>XYZ</s>|no tools");
    }

    #[test]
    fn raise_exception_becomes_a_render_error_with_the_message() {
        let src = "{% if messages[0]['role'] != 'system' %}{{ raise_exception('System first!') }}{% endif %}";
        let t = ChatTemplate::new(src).unwrap();
        let err = t.render(&[user("hi")], false, "", "").unwrap_err();
        assert!(matches!(err, TemplateError::Render(_)));
        assert!(err.to_string().contains("System first!"), "{err}");
    }

    #[test]
    fn a_syntax_error_fails_at_compile_time() {
        let err = ChatTemplate::new("{% for m in messages %}{{ m.content }}").unwrap_err();
        assert!(matches!(err, TemplateError::Compile(_)), "{err}");
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let t = ChatTemplate::new(
            "{{ {'b': [1, 2], 'a': 'é<x>'} | tojson }}|{{ [1, {'k': none}] | tojson(indent=2) }}|{{ 'é' | tojson(ensure_ascii=true) }}",
        )
        .unwrap();
        let text = t.render(&[], false, "", "").unwrap();
        assert_eq!(
            text,
            // Insertion order, as Python dicts keep it (minijinja's preserve_order).
            "{\"b\": [1, 2], \"a\": \"é<x>\"}|[\n  1,\n  {\n    \"k\": null\n  }\n]|\"\\u00e9\""
        );
    }

    #[test]
    fn strftime_formats_known_dates() {
        // 2024-07-26 13:05:09 UTC, a Friday, day 208 of a leap year.
        let t = 1_721_999_109;
        assert_eq!(
            strftime_utc("%Y-%m-%d %H:%M:%S %a %A %b %B %j %y %%", t).unwrap(),
            "2024-07-26 13:05:09 Fri Friday Jul July 208 24 %"
        );
        assert_eq!(strftime_utc("%d %b %Y", 0).unwrap(), "01 Jan 1970");
        assert_eq!(strftime_utc("%Y-%m-%d", 951_782_400).unwrap(), "2000-02-29");
        assert!(strftime_utc("%Q", 0).is_err());
        let t = ChatTemplate::new("{{ strftime_now('%Y') }}").unwrap();
        let year: i64 = t.render(&[], false, "", "").unwrap().parse().unwrap();
        assert!(year >= 2024);
    }

    /// A message's `name` reaches the template only when it was given; the
    /// ChatML fallback, like most templates, ignores it.
    #[test]
    fn name_is_passed_to_the_template_when_given() {
        let src = "{% for m in messages %}{{ m.role }}\
                   {% if m.name is defined %}({{ m.name }}){% endif %}: {{ m.content }}\n{% endfor %}";
        let t = ChatTemplate::new(src).unwrap();
        let msgs = [user("hi").with_name("alice"), user("yo")];
        assert_eq!(
            t.render(&msgs, false, "", "").unwrap(),
            "user(alice): hi\nuser: yo\n"
        );
        assert_eq!(
            ChatTemplate::chatml()
                .render(&msgs[..1], false, "", "")
                .unwrap(),
            "<|im_start|>user\nhi<|im_end|>\n"
        );
    }

    #[test]
    fn from_model_without_a_template_falls_back_to_chatml() {
        assert!(ChatTemplate::from_model(None).unwrap().is_fallback());
        assert!(ChatTemplate::from_model(Some("  ")).unwrap().is_fallback());
        let own = ChatTemplate::from_model(Some("{{ messages[0].content }}")).unwrap();
        assert!(!own.is_fallback());
        assert_eq!(own.render(&[user("q")], false, "", "").unwrap(), "q");
    }
}
