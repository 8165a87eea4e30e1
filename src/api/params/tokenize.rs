//! The bodies of `/tokenize` (a prompt or a chat) and `/detokenize`
//! (token ids).

use serde_json::{Map, Value};

use super::chat::parse_messages;
use super::fields::{check_model, token_ids, Fields};
use crate::api::error::ApiError;
use crate::backend::PromptInput;

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

    fn user() -> Value {
        json!([{"role": "user", "content": "Hi"}])
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
