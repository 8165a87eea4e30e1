//! Chat `messages`: roles, content as text or text parts, participant
//! names, each mistake named by its path (`messages[2].content[0].type`).

use serde_json::Value;

use super::fields::{type_name, Fields};
use crate::api::error::ApiError;
use crate::backend::ChatMessage;

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
