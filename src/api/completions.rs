//! The two OpenAI generation endpoints, `POST /v1/chat/completions` and
//! `POST /v1/completions`: read and validate the body, submit the choices,
//! then answer with one JSON object or an SSE stream.

use actix_web::{web, HttpRequest, HttpResponse};

use super::encode::Encoder;
use super::error::ApiError;
use super::generation::Generation;
use super::params::{parse_completion_request, parse_object, read_body, Endpoint};
use super::server::ApiState;
use super::sse;
use crate::backend::BackendError;

pub async fn chat_completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    complete(Endpoint::Chat, req, payload, state).await
}

pub async fn completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    complete(Endpoint::Completion, req, payload, state).await
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

async fn complete(
    endpoint: Endpoint,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload, state.config.max_body_bytes).await?;
    let map = parse_object(&body)?;
    let model = state.backend.model().id;
    let job = parse_completion_request(endpoint, map, &model, false)?;
    ensure_ready(&state)?;
    let generation = Generation::start(state.backend.clone(), &job).await?;
    let encoder = Encoder::new(&job, model, state.backend.clone());
    tracing::debug!(
        id = encoder.id(),
        choices = job.num_choices(),
        stream = job.stream,
        "request accepted"
    );
    if job.stream {
        Ok(sse::response(generation, encoder, state.keepalive()))
    } else {
        let json = encoder.collect(generation).await?;
        Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(json))
    }
}
