//! What every handler shares, at the bottom of `src/api/`'s imports:
//! [`ApiState`] (the backend handle and the read-only config), the
//! readiness check that answers 503 while the model loads, and the JSON
//! 404/405 answers for paths and methods no route takes. Handlers import
//! from here, never from `server.rs`, which only assembles the app.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, ResponseError};

use super::config::ServerConfig;
use super::error::ApiError;
use crate::backend::{Backend, BackendError};

/// What every handler gets: the runtime and the settings.
#[derive(Clone)]
pub struct ApiState {
    pub backend: Arc<dyn Backend>,
    pub config: Arc<ServerConfig>,
}

impl ApiState {
    pub fn new(config: ServerConfig, backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            config: Arc::new(config),
        }
    }

    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.config.keepalive_secs.max(1))
    }
}

/// 503 while the model loads (checked after validation, so a malformed
/// request learns what is wrong with it even then).
pub fn ensure_ready(state: &ApiState) -> Result<(), ApiError> {
    if state.backend.ready() {
        Ok(())
    } else {
        Err(BackendError::Unavailable("The model is not loaded yet; retry shortly.".into()).into())
    }
}

/// OpenAI's 404 for a path no route takes.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::not_found(req.path()).error_response()
}

/// A JSON 405 for a known path asked with another method.
pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::method_not_allowed(req.method().as_str(), req.path()).error_response()
}
