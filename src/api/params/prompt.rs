//! The completions `prompt` in its four shapes: a string, strings (one
//! choice set each), token ids, or arrays of token ids.

use serde_json::Value;

use super::fields::{token_ids, type_name};
use super::MAX_PROMPTS;
use crate::api::error::ApiError;
use crate::backend::PromptInput;

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
