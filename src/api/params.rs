//! Request bodies in, validated jobs out: reads a body under the size limit,
//! parses it as a JSON object, and checks every field of a chat or text
//! completion request by hand against OpenAI's schema, so each mistake is a
//! 400 naming its parameter. A field we do not implement is rejected, never
//! ignored; a field set to `null` counts as absent (SDKs send nulls).
//!
//! This module knows nothing of HTTP responses or streaming; it only turns
//! JSON into a [`CompletionJob`] (or a [`PromptInput`] for `/tokenize`).

use actix_web::{http::header, web, HttpRequest};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::backend::{GenerateRequest, PromptInput};
use crate::sampling::SamplingParams;
use crate::tokenizer::ChatMessage;

/// Most choices one request may ask for (`n`).
pub const MAX_N: usize = 8;
/// Most prompts in one `/v1/completions` request.
pub const MAX_PROMPTS: usize = 64;
/// Most stop strings.
pub const MAX_STOP: usize = 16;
/// Most `top_logprobs` for chat (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;
/// Most `logprobs` alternatives for text completions (OpenAI's limit).
pub const MAX_COMPLETION_LOGPROBS: usize = 5;
/// OpenAI's default `max_tokens` for `/v1/completions` (chat has none).
pub const COMPLETIONS_DEFAULT_MAX_TOKENS: usize = 16;

/// Which OpenAI endpoint a request came to; it decides the response shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

impl Endpoint {
    /// The `id` prefix OpenAI uses.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Endpoint::Chat => "chatcmpl-",
            Endpoint::Completion => "cmpl-",
        }
    }
}

/// A validated completion request: what to submit to the backend and how to
/// shape the answer.
#[derive(Debug, Clone)]
pub struct CompletionJob {
    pub endpoint: Endpoint,
    /// One entry per prompt; each is generated `n` times. Choice `i` comes
    /// from prompt `i / n` (OpenAI's order).
    pub prompts: Vec<PromptInput>,
    pub n: usize,
    /// Everything but the prompt, shared by every choice (the seed is offset
    /// per choice).
    pub request: GenerateRequest,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// `return_token_ids` (vLLM's extension): each choice also carries the
    /// generated token ids, so a client can read ids even from a model
    /// without a tokenizer.
    pub return_token_ids: bool,
}

impl CompletionJob {
    /// The backend request of choice `index`.
    pub fn choice_request(&self, index: usize) -> GenerateRequest {
        let mut request = self.request.clone();
        request.prompt = self.prompts[index / self.n].clone();
        if let Some(seed) = request.sampling.seed {
            // Distinct but reproducible streams for the n choices.
            request.sampling.seed = Some(seed.wrapping_add(index as u64));
        }
        request
    }

    pub fn num_choices(&self) -> usize {
        self.prompts.len() * self.n
    }
}

/// Reads the whole body, failing with 413 past `limit` bytes (checked on the
/// declared length first, so an oversized upload is refused before it is read).
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::payload_too_large(limit));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("Could not read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses a body that must be a JSON object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty; send a JSON object (Content-Type: application/json).",
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::bad_request(format!(
            "The request body must be a JSON object, not {}.",
            type_name(&other)
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "We could not parse the JSON body of your request: {e}."
        ))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Why a field we know of is not accepted; anything not listed here (and
/// not consumed by a parser) is rejected as unknown.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("tools", "tool calling is not supported by this server"),
    (
        "tool_choice",
        "tool calling is not supported by this server",
    ),
    (
        "functions",
        "function calling is not supported by this server",
    ),
    (
        "function_call",
        "function calling is not supported by this server",
    ),
    (
        "parallel_tool_calls",
        "tool calling is not supported by this server",
    ),
    ("response_format", "only {\"type\": \"text\"} is supported"),
    ("logit_bias", "logit_bias is not supported"),
    ("suffix", "suffix (insertion) is not supported"),
    ("echo", "echo is not supported"),
    ("best_of", "best_of greater than 1 is not supported"),
    ("audio", "audio output is not supported"),
    ("modalities", "only the \"text\" modality is supported"),
    ("prediction", "predicted outputs are not supported"),
    ("store", "storing completions is not supported"),
    ("service_tier", "service tiers are not supported"),
    ("web_search_options", "web search is not supported"),
];

/// A request object being taken apart: each parser removes the keys it
/// understands, and [`Fields::finish`] rejects whatever is left.
struct Fields {
    map: Map<String, Value>,
    /// Prefix of parameter names in errors, e.g. `messages[2].`.
    prefix: String,
}

impl Fields {
    fn new(map: Map<String, Value>, prefix: impl Into<String>) -> Self {
        Self {
            map,
            prefix: prefix.into(),
        }
    }

    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Removes `key`; `null` counts as absent.
    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    fn wrong_type(&self, key: &str, want: &str, got: &Value) -> ApiError {
        let name = self.name(key);
        ApiError::invalid(
            name.clone(),
            format!("`{name}` must be {want}, not {}.", type_name(got)),
        )
    }

    fn bool(&mut self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(v) => Err(self.wrong_type(key, "a boolean", &v)),
        }
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong_type(key, "a string", &v)),
        }
    }

    /// A finite number inside `[lo, hi]`; `lo_open` excludes `lo`.
    fn number(
        &mut self,
        key: &str,
        lo: f64,
        lo_open: bool,
        hi: f64,
    ) -> Result<Option<f64>, ApiError> {
        let v = match self.take(key) {
            None => return Ok(None),
            Some(v) => v,
        };
        let x = v
            .as_f64()
            .ok_or_else(|| self.wrong_type(key, "a number", &v))?;
        let low_ok = if lo_open { x > lo } else { x >= lo };
        if !(low_ok && x <= hi) {
            let name = self.name(key);
            let range = match (lo_open, hi.is_finite()) {
                (true, true) => format!("greater than {lo} and at most {hi}"),
                (false, true) => format!("between {lo} and {hi}"),
                (true, false) => format!("greater than {lo}"),
                (false, false) => format!("at least {lo}"),
            };
            return Err(ApiError::invalid(
                name.clone(),
                format!("`{name}` must be {range}; got {x}."),
            ));
        }
        Ok(Some(x))
    }

    /// An integer inside `[lo, hi]`.
    fn integer(&mut self, key: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
        let v = match self.take(key) {
            None => return Ok(None),
            Some(v) => v,
        };
        let x = integer_value(&v).ok_or_else(|| self.wrong_type(key, "an integer", &v))?;
        if x < lo || x > hi {
            let name = self.name(key);
            let range = if hi == i64::MAX {
                format!("at least {lo}")
            } else {
                format!("between {lo} and {hi}")
            };
            return Err(ApiError::invalid(
                name.clone(),
                format!("`{name}` must be {range}; got {x}."),
            ));
        }
        Ok(Some(x))
    }

    /// Drops `key` when its value is one that changes nothing (`[]`, `{}`,
    /// `false`, a listed string...), so `finish` only sees the ones that
    /// would need a feature we lack.
    fn drop_if_harmless(&mut self, key: &str, harmless: impl Fn(&Value) -> bool) {
        if self.map.get(key).is_some_and(&harmless) {
            self.map.remove(key);
        }
    }

    /// Rejects every key left, naming it.
    fn finish(mut self) -> Result<(), ApiError> {
        self.map.retain(|_, v| !v.is_null());
        let Some(key) = self.map.keys().next().cloned() else {
            return Ok(());
        };
        let name = self.name(&key);
        let why = UNSUPPORTED
            .iter()
            .find(|(k, _)| *k == key && self.prefix.is_empty())
            .map(|(_, why)| why.to_string())
            .unwrap_or_else(|| "it is not a parameter this server knows".to_string());
        Err(ApiError::unsupported(
            name.clone(),
            format!("Unsupported parameter `{name}`: {why}. Remove it and retry."),
        ))
    }
}

/// A JSON integer (also `3.0`), as i64.
fn integer_value(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    if let Some(u) = v.as_u64() {
        return Some(i64::try_from(u).unwrap_or(i64::MAX));
    }
    v.as_f64()
        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
        .map(|f| f as i64)
}

/// Checks the optional `model` field against the served name.
fn check_model(f: &mut Fields, served: &str) -> Result<(), ApiError> {
    if let Some(model) = f.string("model")? {
        if model != served {
            return Err(ApiError::model_not_found(&model, served));
        }
    }
    Ok(())
}

/// Parses a `/v1/chat/completions` or `/v1/completions` body.
///
/// `force_stream` is for the WebSocket, where every answer streams.
pub fn parse_completion_request(
    endpoint: Endpoint,
    map: Map<String, Value>,
    served_model: &str,
    force_stream: bool,
) -> Result<CompletionJob, ApiError> {
    let mut f = Fields::new(map, "");
    check_model(&mut f, served_model)?;

    let prompts = match endpoint {
        Endpoint::Chat => {
            let messages = f
                .take("messages")
                .ok_or_else(|| ApiError::invalid("messages", "`messages` is required."))?;
            vec![PromptInput::Chat(parse_messages(messages)?)]
        }
        Endpoint::Completion => {
            let prompt = f
                .take("prompt")
                .ok_or_else(|| ApiError::invalid("prompt", "`prompt` is required."))?;
            parse_prompt(prompt)?
        }
    };

    let stream = f.bool("stream")?.unwrap_or(false) || force_stream;
    let mut include_usage = false;
    if let Some(options) = f.take("stream_options") {
        if !stream {
            return Err(ApiError::invalid(
                "stream_options",
                "`stream_options` is only allowed when `stream` is true.",
            ));
        }
        let Value::Object(options) = options else {
            return Err(f.wrong_type("stream_options", "an object", &options));
        };
        let mut o = Fields::new(options, "stream_options.");
        include_usage = o.bool("include_usage")?.unwrap_or(false);
        o.finish()?;
    }

    let n = f.integer("n", 1, MAX_N as i64)?.unwrap_or(1) as usize;
    if prompts.len() * n > MAX_PROMPTS * MAX_N {
        return Err(ApiError::invalid("n", "Too many choices in one request."));
    }

    // `max_completion_tokens` is OpenAI's newer name; it wins when both are given.
    let max_tokens = f.integer("max_tokens", 1, i64::MAX)?;
    let max_completion_tokens = match endpoint {
        Endpoint::Chat => f.integer("max_completion_tokens", 1, i64::MAX)?,
        Endpoint::Completion => None,
    };
    let max_tokens = max_completion_tokens
        .or(max_tokens)
        .map(|m| m as usize)
        .or(match endpoint {
            Endpoint::Chat => None,
            Endpoint::Completion => Some(COMPLETIONS_DEFAULT_MAX_TOKENS),
        });

    let defaults = SamplingParams::default();
    let temperature = f.number("temperature", 0.0, false, 2.0)?;
    let top_p = f.number("top_p", 0.0, true, 1.0)?;
    let top_k = f.integer("top_k", -1, i64::from(u32::MAX))?;
    let min_p = f.number("min_p", 0.0, false, 1.0)?;
    let presence_penalty = f.number("presence_penalty", -2.0, false, 2.0)?;
    let frequency_penalty = f.number("frequency_penalty", -2.0, false, 2.0)?;
    let repetition_penalty = f.number("repetition_penalty", 0.0, true, f64::INFINITY)?;
    let seed = match f.take("seed") {
        None => None,
        // Negative seeds are valid in OpenAI's API (int64): keep their bits.
        Some(v) => {
            Some(integer_value(&v).ok_or_else(|| f.wrong_type("seed", "an integer", &v))? as u64)
        }
    };
    let sampling = SamplingParams {
        temperature: temperature.map_or(defaults.temperature, |t| t as f32),
        top_p: top_p.map_or(defaults.top_p, |p| p as f32),
        top_k: top_k.map_or(defaults.top_k, |k| k.max(0) as usize),
        min_p: min_p.map_or(defaults.min_p, |p| p as f32),
        repetition_penalty: repetition_penalty.map_or(defaults.repetition_penalty, |p| p as f32),
        presence_penalty: presence_penalty.map_or(defaults.presence_penalty, |p| p as f32),
        frequency_penalty: frequency_penalty.map_or(defaults.frequency_penalty, |p| p as f32),
        seed,
    };

    let stop = parse_stop(f.take("stop"))?;
    let ignore_eos = f.bool("ignore_eos")?.unwrap_or(false);
    let return_token_ids = f.bool("return_token_ids")?.unwrap_or(false);
    // The harmony models' `Reasoning:` level; other models ignore it, as
    // vLLM does.
    let reasoning_effort = match endpoint {
        Endpoint::Chat => match f.string("reasoning_effort")? {
            None => None,
            Some(s) => Some(s.parse().map_err(|e: crate::tokenizer::HarmonyError| {
                ApiError::invalid("reasoning_effort", e.to_string())
            })?),
        },
        Endpoint::Completion => None,
    };
    let keep_special = !f.bool("skip_special_tokens")?.unwrap_or(true);

    let logprobs = match endpoint {
        Endpoint::Chat => {
            let wanted = f.bool("logprobs")?.unwrap_or(false);
            let top = f.integer("top_logprobs", 0, MAX_TOP_LOGPROBS as i64)?;
            if top.is_some() && !wanted {
                return Err(ApiError::invalid(
                    "top_logprobs",
                    "`top_logprobs` needs `logprobs` set to true.",
                ));
            }
            wanted.then(|| top.unwrap_or(0) as usize)
        }
        Endpoint::Completion => f
            .integer("logprobs", 0, MAX_COMPLETION_LOGPROBS as i64)?
            .map(|k| k as usize),
    };

    // Harmless as sent: identifiers for the caller's own bookkeeping, and
    // the "off" values of features we lack.
    f.string("user")?;
    if let Some(v) = f.take("metadata") {
        if !v.is_object() {
            return Err(f.wrong_type("metadata", "an object", &v));
        }
    }
    f.drop_if_harmless("store", |v| v == &Value::Bool(false));
    f.drop_if_harmless("tools", |v| v.as_array().is_some_and(Vec::is_empty));
    f.drop_if_harmless("functions", |v| v.as_array().is_some_and(Vec::is_empty));
    f.drop_if_harmless("tool_choice", |v| v == "none");
    f.drop_if_harmless("function_call", |v| v == "none");
    f.drop_if_harmless("parallel_tool_calls", Value::is_boolean);
    f.drop_if_harmless("logit_bias", |v| v.as_object().is_some_and(Map::is_empty));
    f.drop_if_harmless("response_format", |v| {
        v.as_object()
            .is_some_and(|o| o.len() == 1 && o.get("type").is_some_and(|t| t == "text"))
    });
    f.drop_if_harmless("modalities", |v| {
        v.as_array().is_some_and(|a| a.iter().all(|m| m == "text"))
    });
    if endpoint == Endpoint::Completion {
        f.drop_if_harmless("echo", |v| v == &Value::Bool(false));
        f.drop_if_harmless("suffix", |v| v == "");
        f.drop_if_harmless("best_of", |v| integer_value(v) == Some(1));
    }
    f.finish()?;

    Ok(CompletionJob {
        endpoint,
        prompts,
        n,
        request: GenerateRequest {
            prompt: PromptInput::Text(String::new()),
            sampling,
            max_tokens,
            stop,
            ignore_eos,
            logprobs,
            keep_special,
            reasoning_effort,
        },
        stream,
        include_usage,
        return_token_ids,
    })
}

fn parse_stop(v: Option<Value>) -> Result<Vec<String>, ApiError> {
    let stops = match v {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => {
            if items.len() > MAX_STOP {
                return Err(ApiError::invalid(
                    "stop",
                    format!(
                        "`stop` may hold at most {MAX_STOP} strings; got {}.",
                        items.len()
                    ),
                ));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s),
                    other => Err(ApiError::invalid(
                        format!("stop[{i}]"),
                        format!("`stop[{i}]` must be a string, not {}.", type_name(&other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        Some(other) => {
            return Err(ApiError::invalid(
                "stop",
                format!(
                    "`stop` must be a string or an array of strings, not {}.",
                    type_name(&other)
                ),
            ))
        }
    };
    if stops.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", "Stop strings must not be empty."));
    }
    Ok(stops)
}

/// Parses chat `messages`: roles system (or developer), user, assistant;
/// content a string or an array of text parts (an assistant's may be null
/// or absent: empty); an optional participant `name`.
pub fn parse_messages(v: Value) -> Result<Vec<ChatMessage>, ApiError> {
    let Value::Array(items) = v else {
        return Err(ApiError::invalid(
            "messages",
            format!("`messages` must be an array, not {}.", type_name(&v)),
        ));
    };
    if items.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must not be empty.",
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| parse_message(i, item))
        .collect()
}

fn parse_message(i: usize, item: Value) -> Result<ChatMessage, ApiError> {
    let at = format!("messages[{i}]");
    let Value::Object(map) = item else {
        return Err(ApiError::invalid(
            at.clone(),
            format!(
                "`{at}` must be an object with `role` and `content`, not {}.",
                type_name(&item)
            ),
        ));
    };
    let mut f = Fields::new(map, format!("{at}."));
    let role = f.string("role")?.ok_or_else(|| {
        ApiError::invalid(format!("{at}.role"), format!("`{at}.role` is required."))
    })?;
    let role = match role.as_str() {
        "system" | "user" | "assistant" => role,
        // OpenAI's newer name for the system role.
        "developer" => "system".to_string(),
        "tool" | "function" => {
            return Err(ApiError::unsupported(
                format!("{at}.role"),
                format!("`{at}.role` is `{role}`: tool calling is not supported by this server."),
            ))
        }
        _ => {
            return Err(ApiError::invalid(
                format!("{at}.role"),
                format!("`{at}.role` must be `system`, `user` or `assistant`; got `{role}`."),
            ))
        }
    };
    let content = match f.map.remove("content") {
        // OpenAI's clients send `content: null` for an assistant turn that
        // only called tools, and some for an empty turn: it is empty text.
        None | Some(Value::Null) if role == "assistant" => String::new(),
        None => {
            return Err(ApiError::invalid(
                format!("{at}.content"),
                format!("`{at}.content` is required."),
            ))
        }
        Some(Value::Null) => {
            return Err(ApiError::invalid(
                format!("{at}.content"),
                format!(
                    "`{at}.content` must be a string or an array of text parts, not null \
                     (only assistant messages may leave it empty)."
                ),
            ))
        }
        Some(Value::String(s)) => s,
        Some(Value::Array(parts)) => parse_content_parts(&at, parts)?,
        Some(other) => {
            return Err(f.wrong_type("content", "a string or an array of text parts", &other))
        }
    };
    // A participant name, allowed on every role; templates may use it.
    let name = f.string("name")?;
    f.drop_if_harmless("tool_calls", |v| v.as_array().is_some_and(Vec::is_empty));
    f.finish()?;
    Ok(ChatMessage {
        role,
        content,
        name,
    })
}

/// Joins `[{"type":"text","text":...}]` parts with newlines (vLLM's rule).
fn parse_content_parts(at: &str, parts: Vec<Value>) -> Result<String, ApiError> {
    let mut texts = Vec::with_capacity(parts.len());
    for (j, part) in parts.into_iter().enumerate() {
        let here = format!("{at}.content[{j}]");
        let Value::Object(map) = part else {
            return Err(ApiError::invalid(
                here.clone(),
                format!(
                    "`{here}` must be an object like {{\"type\": \"text\", \"text\": \"...\"}}."
                ),
            ));
        };
        let mut f = Fields::new(map, format!("{here}."));
        let kind = f.string("type")?.unwrap_or_default();
        if kind != "text" {
            return Err(ApiError::unsupported(
                format!("{here}.type"),
                format!("`{here}.type` is `{kind}`: only text content parts are supported."),
            ));
        }
        let text = f.string("text")?.ok_or_else(|| {
            ApiError::invalid(
                format!("{here}.text"),
                format!("`{here}.text` is required."),
            )
        })?;
        f.finish()?;
        texts.push(text);
    }
    Ok(texts.join("\n"))
}

/// Parses a completions `prompt`: a string, an array of strings (one choice
/// set each), an array of token ids, or an array of arrays of token ids.
pub fn parse_prompt(v: Value) -> Result<Vec<PromptInput>, ApiError> {
    let prompts = match v {
        Value::String(s) => vec![PromptInput::Text(s)],
        Value::Array(items) if items.is_empty() => {
            return Err(ApiError::invalid("prompt", "`prompt` must not be empty."))
        }
        Value::Array(items) => {
            if items.iter().all(Value::is_string) {
                items
                    .into_iter()
                    .map(|s| PromptInput::Text(s.as_str().unwrap_or_default().to_string()))
                    .collect()
            } else if items.iter().all(Value::is_number) {
                vec![PromptInput::Ids(token_ids(&items, "prompt")?)]
            } else if items.iter().all(Value::is_array) {
                items
                    .iter()
                    .enumerate()
                    .map(|(i, ids)| {
                        let ids = ids.as_array().map(Vec::as_slice).unwrap_or_default();
                        if ids.is_empty() {
                            return Err(ApiError::invalid(
                                format!("prompt[{i}]"),
                                format!("`prompt[{i}]` must not be empty."),
                            ));
                        }
                        token_ids(ids, &format!("prompt[{i}]")).map(PromptInput::Ids)
                    })
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                return Err(ApiError::invalid(
                    "prompt",
                    "`prompt` must be a string, an array of strings, an array of token ids, \
                     or an array of arrays of token ids (not a mix).",
                ));
            }
        }
        other => {
            return Err(ApiError::invalid(
                "prompt",
                format!(
                    "`prompt` must be a string or an array, not {}.",
                    type_name(&other)
                ),
            ))
        }
    };
    if prompts.len() > MAX_PROMPTS {
        return Err(ApiError::invalid(
            "prompt",
            format!(
                "At most {MAX_PROMPTS} prompts per request; got {}.",
                prompts.len()
            ),
        ));
    }
    Ok(prompts)
}

/// Token ids as u32, naming the first bad one.
pub fn token_ids(items: &[Value], param: &str) -> Result<Vec<u32>, ApiError> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or_else(|| {
                ApiError::invalid(
                    format!("{param}[{i}]"),
                    format!("`{param}[{i}]` must be a token id (an integer from 0 to 4294967295); got {v}."),
                )
            })
        })
        .collect()
}

/// What `/tokenize` accepts: `{"prompt": "..."}` or `{"messages": [...]}`
/// (plus an optional `model`).
pub fn parse_tokenize_request(
    map: Map<String, Value>,
    served_model: &str,
) -> Result<PromptInput, ApiError> {
    let mut f = Fields::new(map, "");
    check_model(&mut f, served_model)?;
    let prompt = f.string("prompt")?;
    let messages = f.take("messages");
    let input = match (prompt, messages) {
        (Some(p), None) => PromptInput::Text(p),
        (None, Some(m)) => PromptInput::Chat(parse_messages(m)?),
        _ => {
            return Err(ApiError::bad_request(
                "Send exactly one of `prompt` (a string) or `messages` (a chat).",
            ))
        }
    };
    f.finish()?;
    Ok(input)
}

/// What `/detokenize` accepts: `{"tokens": [ids]}` (plus an optional `model`).
pub fn parse_detokenize_request(
    map: Map<String, Value>,
    served_model: &str,
) -> Result<Vec<u32>, ApiError> {
    let mut f = Fields::new(map, "");
    check_model(&mut f, served_model)?;
    let ids = match f.take("tokens") {
        Some(Value::Array(items)) => token_ids(&items, "tokens")?,
        Some(other) => return Err(f.wrong_type("tokens", "an array of token ids", &other)),
        None => return Err(ApiError::invalid("tokens", "`tokens` is required.")),
    };
    f.finish()?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(body: Value) -> Result<CompletionJob, ApiError> {
        parse_completion_request(
            Endpoint::Chat,
            body.as_object().unwrap().clone(),
            "smol",
            false,
        )
    }

    fn completion(body: Value) -> Result<CompletionJob, ApiError> {
        parse_completion_request(
            Endpoint::Completion,
            body.as_object().unwrap().clone(),
            "smol",
            false,
        )
    }

    fn user() -> Value {
        json!([{"role": "user", "content": "Hi"}])
    }

    #[test]
    fn a_full_chat_request_maps_every_field() {
        let job = chat(json!({
            "model": "smol", "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            ],
            "max_completion_tokens": 7, "max_tokens": 99, "temperature": 0.5, "top_p": 0.9,
            "top_k": 40, "min_p": 0.05, "presence_penalty": 0.5, "frequency_penalty": -0.5,
            "repetition_penalty": 1.1, "seed": -1, "stop": ["\n\n", "END"], "n": 2,
            "logprobs": true, "top_logprobs": 3, "stream": true,
            "stream_options": {"include_usage": true}, "user": "u1", "ignore_eos": true,
            "tools": null, "response_format": {"type": "text"}, "store": false,
        }))
        .unwrap();
        let PromptInput::Chat(msgs) = &job.prompts[0] else {
            panic!()
        };
        assert_eq!(msgs[0], ChatMessage::new("system", "Be brief."));
        assert_eq!(msgs[1], ChatMessage::new("user", "a\nb"));
        let r = &job.request;
        assert_eq!(r.max_tokens, Some(7));
        assert_eq!(r.sampling.temperature, 0.5);
        assert_eq!(r.sampling.top_p, 0.9);
        assert_eq!(r.sampling.top_k, 40);
        assert_eq!(r.sampling.min_p, 0.05);
        assert_eq!(r.sampling.presence_penalty, 0.5);
        assert_eq!(r.sampling.frequency_penalty, -0.5);
        assert_eq!(r.sampling.repetition_penalty, 1.1);
        assert_eq!(r.sampling.seed, Some(u64::MAX));
        assert_eq!(r.stop, ["\n\n", "END"]);
        assert_eq!(r.logprobs, Some(3));
        assert!(r.ignore_eos && !r.keep_special);
        assert!(job.stream && job.include_usage);
        assert_eq!(job.n, 2);
        // Seeds are offset per choice so the n choices differ.
        assert_eq!(job.choice_request(1).sampling.seed, Some(0));
    }

    #[test]
    fn defaults_follow_openai() {
        let job = chat(json!({"messages": user()})).unwrap();
        assert_eq!(job.request.max_tokens, None);
        assert_eq!(job.request.sampling, SamplingParams::default());
        assert_eq!(job.request.logprobs, None);
        let job = completion(json!({"prompt": "x"})).unwrap();
        assert_eq!(job.request.max_tokens, Some(COMPLETIONS_DEFAULT_MAX_TOKENS));
        assert_eq!(
            chat(json!({"messages": user(), "top_k": -1}))
                .unwrap()
                .request
                .sampling
                .top_k,
            0
        );
    }

    #[test]
    fn completion_prompts_in_all_four_shapes() {
        let p = |v: Value| completion(json!({"prompt": v})).unwrap().prompts;
        assert_eq!(p(json!("a")), [PromptInput::Text("a".into())]);
        assert_eq!(p(json!(["a", "b"])).len(), 2);
        assert_eq!(p(json!([1, 2, 3])), [PromptInput::Ids(vec![1, 2, 3])]);
        assert_eq!(
            p(json!([[1], [2, 3]])),
            [PromptInput::Ids(vec![1]), PromptInput::Ids(vec![2, 3])]
        );
        let job = completion(json!({"prompt": ["a", "b"], "n": 2, "logprobs": 2})).unwrap();
        assert_eq!(job.num_choices(), 4);
        assert_eq!(job.choice_request(2).prompt, PromptInput::Text("b".into()));
        assert_eq!(job.request.logprobs, Some(2));
        for bad in [
            json!([]),
            json!([1, "a"]),
            json!([-1]),
            json!([[]]),
            json!(3),
        ] {
            assert_eq!(completion(json!({"prompt": bad})).unwrap_err().status, 400);
        }
    }

    /// Each bad value names its parameter.
    #[test]
    fn out_of_range_and_wrong_types_name_the_parameter() {
        let cases = [
            (json!({"temperature": -1}), "temperature"),
            (json!({"temperature": 2.5}), "temperature"),
            (json!({"temperature": "hot"}), "temperature"),
            (json!({"top_p": 0}), "top_p"),
            (json!({"top_p": 1.5}), "top_p"),
            (json!({"top_k": -2}), "top_k"),
            (json!({"min_p": 1.1}), "min_p"),
            (json!({"presence_penalty": 3}), "presence_penalty"),
            (json!({"frequency_penalty": -2.1}), "frequency_penalty"),
            (json!({"repetition_penalty": 0}), "repetition_penalty"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"max_completion_tokens": 0}), "max_completion_tokens"),
            (json!({"max_tokens": 1.5}), "max_tokens"),
            (json!({"n": 0}), "n"),
            (json!({"n": 9}), "n"),
            (json!({"stop": 5}), "stop"),
            (json!({"stop": [""]}), "stop"),
            (json!({"stop": ["a", 1]}), "stop[1]"),
            (json!({"seed": "x"}), "seed"),
            (json!({"stream": "yes"}), "stream"),
            (json!({"top_logprobs": 2}), "top_logprobs"),
            (
                json!({"logprobs": true, "top_logprobs": 21}),
                "top_logprobs",
            ),
            (
                json!({"stream_options": {"include_usage": true}}),
                "stream_options",
            ),
            (
                json!({"stream": true, "stream_options": {"x": 1}}),
                "stream_options.x",
            ),
            (json!({"tools": [{"type": "function"}]}), "tools"),
            (json!({"tool_choice": "auto"}), "tool_choice"),
            (
                json!({"response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (json!({"logit_bias": {"1": 5}}), "logit_bias"),
            (json!({"audio": {}}), "audio"),
            (json!({"modalities": ["text", "audio"]}), "modalities"),
            (json!({"prediction": {}}), "prediction"),
            (json!({"store": true}), "store"),
            (json!({"frobnicate": 1}), "frobnicate"),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"messages": [{"role": "bot", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"messages": [{"role": "user"}]}),
                "messages[0].content",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x", "name": 5}]}),
                "messages[0].name",
            ),
            (
                json!({"messages": [{"role": "user", "content": null}]}),
                "messages[0].content",
            ),
            (
                json!({"messages": [{"role": "system", "content": null}]}),
                "messages[0].content",
            ),
            (
                json!({"messages": [{"role": "assistant", "content": null,
                                     "tool_calls": [{"id": "c", "type": "function"}]}]}),
                "messages[0].tool_calls",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}),
                "messages[0].content[0].type",
            ),
            (json!({"messages": []}), "messages"),
        ];
        for (patch, param) in cases {
            let mut body = json!({"messages": user()});
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            let err = chat(body.clone()).expect_err(&body.to_string());
            assert_eq!(err.status, 400, "{body}");
            assert_eq!(err.param.as_deref(), Some(param), "{body}: {}", err.message);
        }
    }

    /// OpenAI accepts `name` on any message and `content: null` on an
    /// assistant turn (what its clients send back after a tool call).
    #[test]
    fn names_and_an_assistant_without_content_are_accepted() {
        let job = chat(json!({"messages": [
            {"role": "system", "content": "Be brief.", "name": "rules"},
            {"role": "user", "content": "Hi", "name": "alice"},
            {"role": "assistant", "content": null, "name": "bot", "tool_calls": []},
            {"role": "assistant"},
            {"role": "user", "content": "Again", "name": null},
        ]}))
        .unwrap();
        let PromptInput::Chat(msgs) = &job.prompts[0] else {
            panic!()
        };
        assert_eq!(
            msgs[..],
            [
                ChatMessage::new("system", "Be brief.").with_name("rules"),
                ChatMessage::new("user", "Hi").with_name("alice"),
                ChatMessage::new("assistant", "").with_name("bot"),
                ChatMessage::new("assistant", ""),
                ChatMessage::new("user", "Again"),
            ]
        );
        let err = chat(json!({"messages": [{"role": "user", "content": null}]})).unwrap_err();
        assert!(err.message.contains("not null"), "{}", err.message);
    }

    #[test]
    fn completion_only_features_are_rejected_when_on() {
        for (body, param) in [
            (json!({"prompt": "x", "echo": true}), "echo"),
            (json!({"prompt": "x", "suffix": "y"}), "suffix"),
            (json!({"prompt": "x", "best_of": 2}), "best_of"),
            (json!({"prompt": "x", "logprobs": 6}), "logprobs"),
            (
                json!({"prompt": "x", "max_completion_tokens": 5}),
                "max_completion_tokens",
            ),
        ] {
            assert_eq!(completion(body).unwrap_err().param.as_deref(), Some(param));
        }
        completion(json!({"prompt": "x", "echo": false, "suffix": "", "best_of": 1})).unwrap();
    }

    #[test]
    fn a_wrong_model_is_404_and_an_absent_one_is_fine() {
        let err = chat(json!({"model": "gpt-4", "messages": user()})).unwrap_err();
        assert_eq!(err.status, 404);
        assert_eq!(err.code, Some("model_not_found"));
        assert!(chat(json!({"messages": user()})).is_ok());
    }

    #[test]
    fn json_bodies_must_be_objects() {
        assert!(parse_object(b"{\"a\":1}").is_ok());
        for bad in [&b""[..], b"  ", b"{", b"[1]", b"null"] {
            assert_eq!(parse_object(bad).unwrap_err().status, 400);
        }
    }

    #[test]
    fn tokenize_and_detokenize_bodies() {
        let m = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            parse_tokenize_request(m(json!({"prompt": "hi"})), "smol").unwrap(),
            PromptInput::Text("hi".into())
        );
        assert!(matches!(
            parse_tokenize_request(m(json!({"messages": user()})), "smol").unwrap(),
            PromptInput::Chat(_)
        ));
        assert!(parse_tokenize_request(m(json!({})), "smol").is_err());
        assert_eq!(
            parse_detokenize_request(m(json!({"tokens": [1, 2]})), "smol").unwrap(),
            [1, 2]
        );
        assert!(parse_detokenize_request(m(json!({"tokens": [1.5]})), "smol").is_err());
    }
}
