//! The API's one error type, [`ApiError`], rendered as OpenAI's error JSON
//! `{"error":{"message","type","param","code"}}` with the matching HTTP
//! status. Every failure a client can see (bad JSON, bad parameter, unknown
//! model, auth, size, queue, backend) goes through here, so clients get one
//! shape whatever went wrong.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::backend::BackendError;

/// Seconds a client should wait after a 429 before retrying.
pub const RETRY_AFTER_SECS: u64 = 1;

/// A failed request: status, OpenAI error type, message, and the parameter
/// at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`...
    pub kind: &'static str,
    pub message: String,
    /// The request field at fault, e.g. `temperature` or `messages[1].content`.
    pub param: Option<String>,
    /// A machine-readable reason, e.g. `model_not_found`.
    pub code: Option<&'static str>,
}

/// The JSON object inside `{"error": ...}`.
#[derive(Debug, Serialize)]
pub struct ErrorObject<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub param: Option<&'a str>,
    pub code: Option<&'a str>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorObject<'a>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// 400 about one parameter.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.into()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    /// 400 about the request as a whole (unparsable JSON, bad prompt).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 for a parameter this server deliberately does not implement.
    pub fn unsupported(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: Some("unsupported_parameter"),
            ..Self::invalid(param, message)
        }
    }

    pub fn model_not_found(asked: &str, served: &str) -> Self {
        Self {
            param: Some("model".into()),
            code: Some("model_not_found"),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("The model `{asked}` does not exist; this server serves `{served}`."),
            )
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            code: Some("invalid_api_key"),
            ..Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
        }
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self {
            code: Some("request_too_large"),
            ..Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!(
                    "The request body is larger than this server's limit of {limit} bytes \
                     (max_body_bytes)."
                ),
            )
        }
    }

    pub fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("There is nothing at {path}; see /v1/models, /v1/chat/completions, /v1/completions."),
        )
    }

    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            format!("{method} is not allowed on {path}."),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    pub fn object(&self) -> ErrorObject<'_> {
        ErrorObject {
            message: &self.message,
            kind: self.kind,
            param: self.param.as_deref(),
            code: self.code,
        }
    }

    /// `{"error":{...}}` as a JSON string (for SSE and WebSocket frames).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&ErrorBody {
            error: self.object(),
        })
        .expect("an error object always serializes")
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        let message = e.to_string();
        match e {
            BackendError::InvalidRequest(_) => Self::bad_request(message),
            BackendError::TooManyChoices { .. } => Self {
                code: Some("too_many_choices"),
                ..Self::bad_request(message)
            },
            BackendError::QueueFull(_) => Self {
                code: Some("queue_full"),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
            },
            BackendError::Unavailable(_) => Self {
                code: Some("unavailable"),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
            },
            BackendError::Engine(_) => Self {
                code: Some("engine_error"),
                ..Self::internal(message)
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        builder.content_type("application/json");
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            builder.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            builder.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        builder.body(self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_errors_map_to_their_status_and_openai_type() {
        let cases = [
            (
                BackendError::InvalidRequest("too long".into()),
                400,
                "invalid_request_error",
            ),
            (BackendError::QueueFull(64), 429, "rate_limit_error"),
            (
                BackendError::Unavailable("loading".into()),
                503,
                "server_error",
            ),
            (BackendError::Engine("boom".into()), 500, "server_error"),
            (
                BackendError::TooManyChoices {
                    choices: 512,
                    max_queue: 64,
                },
                400,
                "invalid_request_error",
            ),
        ];
        for (e, status, kind) in cases {
            assert_eq!(e.status(), status);
            let api = ApiError::from(e);
            assert_eq!(api.status.as_u16(), status);
            assert_eq!(api.kind, kind);
        }
    }

    #[test]
    fn the_body_is_openai_shaped_with_retry_after_on_429() {
        let e = ApiError::from(BackendError::QueueFull(3));
        let resp = e.error_response();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "1");
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert!(v["error"]["message"].as_str().unwrap().contains('3'));
        assert!(v["error"]["param"].is_null());

        let v: serde_json::Value =
            serde_json::from_str(&ApiError::invalid("top_p", "bad").to_json()).unwrap();
        assert_eq!(v["error"]["param"], "top_p");
        assert_eq!(v["error"]["code"], serde_json::Value::Null);
    }
}
