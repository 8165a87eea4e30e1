//! A request body to a JSON object: read under the size limit (413 past
//! it), then parsed, with a 400 that says what was wrong with it.

use actix_web::{http::header, web, HttpRequest};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::fields::type_name;
use crate::api::error::ApiError;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_must_be_objects() {
        assert!(parse_object(b"{\"a\":1}").is_ok());
        for bad in [&b""[..], b"  ", b"{", b"[1]", b"null"] {
            assert_eq!(parse_object(bad).unwrap_err().status, 400);
        }
    }
}
