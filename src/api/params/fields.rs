//! Taking a JSON object apart field by field: [`Fields`] removes each key a
//! parser understands, checks its type and range with an error that names
//! the parameter, and rejects whatever is left (with the reason for the
//! fields we know but do not implement). Also the small value readers every
//! parser shares: integers, token ids, the `model` check.

use serde_json::{Map, Value};

use crate::api::error::ApiError;

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
pub(super) struct Fields {
    pub(super) map: Map<String, Value>,
    /// Prefix of parameter names in errors, e.g. `messages[2].`.
    prefix: String,
}

impl Fields {
    pub(super) fn new(map: Map<String, Value>, prefix: impl Into<String>) -> Self {
        Self {
            map,
            prefix: prefix.into(),
        }
    }

    pub(super) fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Removes `key`; `null` counts as absent.
    pub(super) fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    pub(super) fn wrong_type(&self, key: &str, want: &str, got: &Value) -> ApiError {
        let name = self.name(key);
        ApiError::invalid(
            name.clone(),
            format!("`{name}` must be {want}, not {}.", type_name(got)),
        )
    }

    pub(super) fn bool(&mut self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(v) => Err(self.wrong_type(key, "a boolean", &v)),
        }
    }

    pub(super) fn string(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong_type(key, "a string", &v)),
        }
    }

    /// A finite number inside `[lo, hi]`; `lo_open` excludes `lo`.
    pub(super) fn number(
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
    pub(super) fn integer(&mut self, key: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
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
    pub(super) fn drop_if_harmless(&mut self, key: &str, harmless: impl Fn(&Value) -> bool) {
        if self.map.get(key).is_some_and(&harmless) {
            self.map.remove(key);
        }
    }

    /// Rejects every key left, naming it.
    pub(super) fn finish(mut self) -> Result<(), ApiError> {
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
pub(super) fn integer_value(v: &Value) -> Option<i64> {
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
pub(super) fn check_model(f: &mut Fields, served: &str) -> Result<(), ApiError> {
    if let Some(model) = f.string("model")? {
        if model != served {
            return Err(ApiError::model_not_found(&model, served));
        }
    }
    Ok(())
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

/// How an error message names a JSON value's type.
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
