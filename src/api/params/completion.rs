//! The parameters of the two generation endpoints, `/v1/chat/completions`
//! and `/v1/completions`, into a [`CompletionJob`]: one function per group
//! of fields (prompts, streaming, choices, length, sampling, stop, output,
//! logprobs, the harmless "off" values), read in a fixed order so the first
//! mistake reported is always the same one.

use serde_json::{Map, Value};

use super::chat::parse_messages;
use super::fields::{check_model, integer_value, type_name, Fields};
use super::prompt::parse_prompt;
use super::{
    CompletionJob, Endpoint, COMPLETIONS_DEFAULT_MAX_TOKENS, MAX_COMPLETION_LOGPROBS, MAX_N,
    MAX_PROMPTS, MAX_STOP, MAX_TOP_LOGPROBS,
};
use crate::api::error::ApiError;
use crate::backend::{GenerateRequest, PromptInput, ReasoningEffort, SamplingParams};

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
    let prompts = parse_prompts(endpoint, &mut f)?;
    let (stream, include_usage) = parse_streaming(&mut f, force_stream)?;
    let n = parse_n(&mut f, prompts.len())?;
    let max_tokens = parse_max_tokens(endpoint, &mut f)?;
    let sampling = parse_sampling(&mut f)?;
    let stop = parse_stop(f.take("stop"))?;
    let ignore_eos = f.bool("ignore_eos")?.unwrap_or(false);
    let return_token_ids = f.bool("return_token_ids")?.unwrap_or(false);
    let reasoning_effort = parse_reasoning_effort(endpoint, &mut f)?;
    let keep_special = !f.bool("skip_special_tokens")?.unwrap_or(true);
    let logprobs = parse_logprobs(endpoint, &mut f)?;
    drop_harmless(endpoint, &mut f)?;
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

/// Chat's `messages` (one prompt) or completions' `prompt` (one or more).
fn parse_prompts(endpoint: Endpoint, f: &mut Fields) -> Result<Vec<PromptInput>, ApiError> {
    Ok(match endpoint {
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
    })
}

/// `stream` and `stream_options.include_usage`.
fn parse_streaming(f: &mut Fields, force_stream: bool) -> Result<(bool, bool), ApiError> {
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
    Ok((stream, include_usage))
}

/// `n`, the choices per prompt.
fn parse_n(f: &mut Fields, num_prompts: usize) -> Result<usize, ApiError> {
    let n = f.integer("n", 1, MAX_N as i64)?.unwrap_or(1) as usize;
    if num_prompts * n > MAX_PROMPTS * MAX_N {
        return Err(ApiError::invalid("n", "Too many choices in one request."));
    }
    Ok(n)
}

/// `max_tokens`, or chat's `max_completion_tokens` (OpenAI's newer name,
/// which wins when both are given); completions default to OpenAI's 16.
fn parse_max_tokens(endpoint: Endpoint, f: &mut Fields) -> Result<Option<usize>, ApiError> {
    let max_tokens = f.integer("max_tokens", 1, i64::MAX)?;
    let max_completion_tokens = match endpoint {
        Endpoint::Chat => f.integer("max_completion_tokens", 1, i64::MAX)?,
        Endpoint::Completion => None,
    };
    Ok(max_completion_tokens
        .or(max_tokens)
        .map(|m| m as usize)
        .or(match endpoint {
            Endpoint::Chat => None,
            Endpoint::Completion => Some(COMPLETIONS_DEFAULT_MAX_TOKENS),
        }))
}

/// The sampling parameters, each defaulting to [`SamplingParams::default`].
fn parse_sampling(f: &mut Fields) -> Result<SamplingParams, ApiError> {
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
    Ok(SamplingParams {
        temperature: temperature.map_or(defaults.temperature, |t| t as f32),
        top_p: top_p.map_or(defaults.top_p, |p| p as f32),
        top_k: top_k.map_or(defaults.top_k, |k| k.max(0) as usize),
        min_p: min_p.map_or(defaults.min_p, |p| p as f32),
        repetition_penalty: repetition_penalty.map_or(defaults.repetition_penalty, |p| p as f32),
        presence_penalty: presence_penalty.map_or(defaults.presence_penalty, |p| p as f32),
        frequency_penalty: frequency_penalty.map_or(defaults.frequency_penalty, |p| p as f32),
        seed,
    })
}

/// Chat's `reasoning_effort`: the harmony models' `Reasoning:` level; other
/// models ignore it, as vLLM does.
fn parse_reasoning_effort(
    endpoint: Endpoint,
    f: &mut Fields,
) -> Result<Option<ReasoningEffort>, ApiError> {
    match endpoint {
        Endpoint::Chat => match f.string("reasoning_effort")? {
            None => Ok(None),
            Some(s) => s
                .parse::<ReasoningEffort>()
                .map(Some)
                .map_err(|e| ApiError::invalid("reasoning_effort", e.to_string())),
        },
        Endpoint::Completion => Ok(None),
    }
}

/// How many alternatives logprobs show, if asked: chat's `logprobs` and
/// `top_logprobs`, or completions' `logprobs`.
fn parse_logprobs(endpoint: Endpoint, f: &mut Fields) -> Result<Option<usize>, ApiError> {
    Ok(match endpoint {
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
    })
}

/// Removes the fields that are harmless as sent: identifiers for the
/// caller's own bookkeeping, and the "off" values of features we lack.
fn drop_harmless(endpoint: Endpoint, f: &mut Fields) -> Result<(), ApiError> {
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
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ChatMessage;
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
}
